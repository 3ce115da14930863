"""The parameters the estimators share: their constraints (scikit-learn's
``_parameter_constraints``) and the sections of the estimators' docstrings that
describe them, their fitted attributes and notes.
"""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import Interval

_COMMON_PARAMS = """
    random_effects : str, dict or None, default=None
        Random-effect terms in lme4's syntax over feature names (``x0``, ``x1``,
        ... for arrays): ``"1"`` random intercept; ``"1 + time"`` correlated
        intercept and slope(s); ``"0 + time"`` slope only; ``"diag(1 + time)"``
        (or ``"1 + time ||"``) uncorrelated; ``"(1 + time) + (0 + dose)"``
        correlated blocks uncorrelated with each other (lme4's ``(1 + time | g) +
        (0 + dose | g)``). A dict ``{factor name: term}`` gives
        one term per grouping factor; a string applies to every factor.
        ``None`` is a random intercept (``"1"``) for every factor when ``fit``
        gets groups, and a GLM without random effects (with a
        ``NoRandomEffectsWarning``) when it gets none. Any value set explicitly,
        ``"1"`` included, declares a mixed model: ``fit`` without groups then
        raises ``ValueError`` (as it does after ``set_fit_request(groups=True)``),
        so a search or pipeline that does not route ``groups`` fails instead of
        fitting GLMs.
    n_agq : int, default=1
        1 uses the Laplace approximation; more uses adaptive Gauss-Hermite
        quadrature with that many nodes per random effect: one grouping factor
        with a scalar random effect (as lme4) or with two or three (a product rule
        of ``n_agq**q`` nodes per level, as GLMMadaptive).
    fit_intercept : bool, default=True
        Whether to add a fixed intercept.
    group_columns : str or list of str, default=None
        Columns of a DataFrame ``X`` holding the grouping factors. They are
        taken out of the fixed effects and read again at predict time, so
        conditional predictions work inside cross-validation and pipelines.
    random_only_columns : str or list of str, default=None
        Columns of a DataFrame ``X`` that ``random_effects`` terms (or the
        zero-inflation, hurdle or dispersion model) read but that are not fixed
        effects: a structured term's time variable (``"ar1(day)"`` with
        ``random_only_columns="day"`` is glmmTMB's ``y ~ x + ar1(0 + factor(day) | id)``,
        without a linear trend in ``day``), a random slope without a fixed slope
        (lme4's ``y ~ x + (0 + z | id)``), or a predictor of the zero inflation alone
        (``zero_inflation="1 + z"``: glmmTMB's ``ziformula = ~ z``). They are read again
        at predict time. A column named here that no term reads is in no part of the
        model (a comparison of ``"1"`` with ``"ar1(day)"`` keeps ``day`` out of both
        models' fixed effects this way).
    max_iter : int, default=1000
        Maximum number of optimiser iterations; reaching it raises a
        ``ConvergenceWarning`` and sets ``converged_ = False``.
    tol : float, default=1e-10
        Relative tolerance on the objective for the optimiser to stop.
    keep_data : bool, default=False
        Whether pickles of the fitted model carry its training data. The model
        keeps them in memory after ``fit`` either way, so every method works in
        the session that fitted it. By default a pickle (``pickle``,
        ``joblib.dump``) carries only what ``predict``, ``predict_proba``,
        ``summary``, ``report``, the result tables, Wald intervals,
        ``predict_interval``, ``marginal_means`` and ``contrast`` need: its size
        no longer grows with the rows (a 100,000-row fit pickles to kilobytes,
        not megabytes). The methods that need the data (profile and bootstrap
        intervals, ``profile``, ``simulate``, ``residuals``, ``fitted``,
        ``scaled_residuals``, ``overdispersion``, ``anova``, the diagnostic
        plots) then raise ``TrainingDataError`` on the unpickled model; fit with
        ``keep_data=True`` to keep them available there. This default drops the
        data where they are least expected (a model saved for deployment) and
        keeps them where they are used (the session that fitted the model).
        ``copy.deepcopy`` keeps the data.
"""


_NOTES = """
    Notes
    -----
    ``fit`` checks the parameters against ``_parameter_constraints``, as
    scikit-learn's estimators do: invalid values (``fit_intercept="no"``,
    ``tol=-1``) raise ``InvalidParameterError`` (a ``ValueError``).
"""


_PARAMETER_CONSTRAINTS = {
    "random_effects": [str, dict, None],
    "n_agq": [Interval(Integral, 1, 50, closed="both")],
    "fit_intercept": ["boolean"],
    "group_columns": [str, "array-like", None],
    "random_only_columns": [str, "array-like", None],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="neither")],
    "keep_data": ["boolean"],
}


_COMMON_ATTRS = """
    coef_ : ndarray of shape (n_features,)
        Fixed effects (0 for columns dropped as aliased).
    intercept_ : float
    fixed_effects_ : DataFrame
        ``estimate``, ``std_error``, ``z_value``, ``p_value`` (Wald), indexed by
        ``"(Intercept)"`` then the feature names.
    random_effects_cov_ : dict of DataFrame
        Per factor, the q x q covariance matrix of its random effects.
    ranef_ : dict of DataFrame
        Per factor, conditional modes (levels x terms).
    loglik_, aic_, bic_ : float
        Full marginal log-likelihood (every constant included) and criteria.
    n_iter_ : int
    converged_ : bool
    is_singular_ : bool
    fit_record_ : FitRecord
        How the optimisation ran.
    fit_result_ : FitResult
        The outcome of the fit, which the attributes above are read from: the
        parameters on the optimiser's scale (``params``; ``beta``, ``theta``,
        ``extra``) and their covariance (``vcov``), the family, the fit record,
        how the design was scaled (``scaling``, ``z_maps``; ``beta_jacobian``
        maps back), the random effects' layout (``factors``, ``layout``) and,
        in memory, the training data (``objective``, ``train``). Inference,
        summaries and plots read it.
"""


_COUNT_PARAMS = """\
    zero_inflation : bool or str, default=False
        ``True`` adds a constant zero-inflation probability (glmmTMB's
        ``ziformula = ~1``). A term string over feature names, in the syntax of
        ``random_effects`` (``"1 + time"``, ``"0 + dose"``), gives it its own
        linear predictor on the logit scale (glmmTMB's ``ziformula = ~ time``):
        ``zero_inflation_effects_`` holds its coefficients, and predictions use
        each row's probability. ``"1"`` is the constant model (``True``).
        Random effects in the zero-inflation model are not supported.
    hurdle : bool or str, default=False
        A hurdle model: a probability of a zero, and above zero the count
        family truncated at zero, with the random effects (glmmTMB's
        ``truncated_poisson`` / ``truncated_nbinom2`` / ``truncated_nbinom1``
        with ``ziformula``). ``True`` is a constant probability
        (``ziformula = ~1``); a term string over feature names, as for
        ``zero_inflation`` (``"1 + time"``), gives it its own linear predictor on
        the logit scale (``ziformula = ~ time``), tabled in
        ``zero_inflation_effects_``. Not with ``zero_inflation`` or ``truncated``.
    truncated : bool, default=False
        The zero-truncated count model, for counts of at least 1 (glmmTMB's
        ``truncated_*`` families without ``ziformula``); zeros in ``y`` are an
        error.
    max_count : int or None, default=None
        The support of ``predict_proba``: its columns are the counts
        0, ..., ``max_count``, the last one holding P(Y >= ``max_count``).
        ``None`` learns ``max_count_`` at fit (see Attributes). Set it for the
        same columns in every fit, e.g. across the folds of ``cross_val_predict``.
"""


_COUNT_ATTRS = """\
    max_count_ : int or None
        The last column of ``predict_proba``: ``max_count`` when given;
        otherwise the larger of the training maximum and the 0.999 quantile of
        the predictive distribution with the largest fitted mean (conditional
        on the random-effect modes). ``None`` when that would pass 10000 counts
        (counts in the thousands or more): ``predict_proba`` then asks for
        ``max_count=``.
    classes_ : ndarray of shape (n_counts,)
        ``np.arange(max_count_ + 1)``, the counts labelling the columns of
        ``predict_proba`` (absent when ``max_count_`` is None).
"""


_COUNT_NOTES = """
    ``predict_proba`` returns the predictive distribution over the counts
    ``classes_``, P(Y = k) for k < ``max_count_`` and the tail
    P(Y >= ``max_count_``) in the last column, so that rows sum to 1 and every
    call returns the same columns. scikit-learn's tools for probabilities are
    written for classifiers; for a count model:

    * ``sklearn.metrics.log_loss(np.minimum(y, m.max_count_), m.predict_proba(X),
      labels=m.classes_)`` is the log-loss on this support; the scorer
      ``make_glmm_scorer("mean_log_likelihood")`` (``sklearn_glmm.model_selection``)
      scores the whole distribution, no cut, and takes ``groups``.
    * ``cross_val_predict(..., method="predict_proba")`` label-encodes ``y``
      before fitting the folds, as for classes. It is exact when ``y`` holds
      every count from 0 to ``y.max()`` and ``max_count=int(y.max())`` is set
      (the same columns in every fold); with gaps in ``y`` the folds would be
      fitted on ranks: loop over the folds instead.
    * The scorers ``"neg_log_loss"`` and ``"neg_brier_score"`` infer the
      classes from each test fold's ``y`` and fail unless every fold holds
      every count; ``"roc_auc"``, ``CalibratedClassifierCV``,
      ``VotingClassifier``, ``StackingClassifier`` and the classification
      displays are for classifiers and do not apply.
    * ``Pipeline.predict_proba(X, max_count=..., groups=...)`` passes its
      keyword arguments on to the model.
"""
