"""BinomialGLMM, PoissonGLMM and NegBinGLMM: thin classes over the shared engine."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import _BaseGLMM
from ._engine.blocks import rows_of
from ._engine.families import make_family
from ._engine.families.base import log_odds_over_normal
from ._validation import (
    check_class_labels,
    check_counts,
    check_trials,
    check_weights,
    check_y_finite,
    numeric_outcome,
)
from ._validation_rows import check_rows_aligned
from ._warn import user_stacklevel, warn

_COMMON_PARAMS = """
    random_effects : str, dict or None, default=None
        Random-effect terms in lme4's syntax over feature names (``x0``, ``x1``,
        ... for arrays): ``"1"`` random intercept; ``"1 + time"`` correlated
        intercept and slope(s); ``"0 + time"`` slope only; ``"diag(1 + time)"``
        (or ``"1 + time ||"``) uncorrelated. A dict ``{factor name: term}`` gives
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


def _one_trial(n: int) -> np.ndarray:
    """One trial in each of ``n`` rows: a read-only view of one number (no memory per row)."""
    return np.broadcast_to(1.0, (n,))


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


class BinomialGLMM(ClassifierMixin, _BaseGLMM):
    __doc__ = (
        """Binomial mixed model (logistic by default; probit and cloglog links).

    .. math::

        g\\bigl(P(y_{ij} = \\text{pos\\_label\\_} \\mid b_i)\\bigr)
        = x_{ij}^\\top \\beta + z_{ij}^\\top b_i,
        \\qquad b_i \\sim N(0, \\Sigma)

    with ``g`` the logit (default), probit or complementary log-log link.

    Parameters
    ----------
    """
        + _COMMON_PARAMS
        + """
    pos_label : int, float, bool, str or None, default=None
        The class whose probability the model describes (the "success"): the
        linear predictor is the log-odds of ``y == pos_label``. ``None`` takes
        the larger of the two classes as scikit-learn orders them (``classes_[1]``):
        1 for 0/1 labels, ``True`` for booleans, the later string in Python's
        sort order (``"Yes" < "no"``: upper case sorts first, so ``{"Yes", "no"}``
        models ``"no"``; pass ``pos_label="Yes"``). ``summary()`` and ``report()``
        name the class modelled. With ``trials`` (y counts successes) the model
        describes a success: another value than None or 1 raises (pass
        ``trials - y`` to model failures).
    family : {"binomial", "betabinomial"}, default="binomial"
        ``"betabinomial"`` (glmmTMB's ``betabinomial``): each row's success
        probability varies around its mean as a Beta distribution with dispersion
        ``phi`` (``phi_``), Var = t mu (1 - mu) (1 + (t - 1) / (phi + 1)): the
        overdispersed counterpart of ``trials=``. Needs ``trials`` with more than one
        trial somewhere (with 0/1 outcomes ``phi`` is not identified); logit link.
    dispersion : str or None, default=None
        ``family="betabinomial"`` only. ``None``: one dispersion ``phi_`` for every
        row. A term string over feature names, in the syntax of ``random_effects``
        (``"1 + time"``), gives the dispersion its own linear predictor on the log
        scale (glmmTMB's ``dispformula = ~ time``): ``log phi_i = d_i' delta``.
        ``dispersion_effects_`` holds its coefficients, and predictions,
        ``predict_proba``, ``simulate`` and residuals use each row's dispersion.
        ``"1"`` is the constant model (``None``).
    link : {"logit", "probit", "cloglog"}, default="logit"
        The link function (lme4's ``binomial(link = ...)``). The Laplace
        approximation uses the exact curvature of the log-density for every link,
        as glmmTMB does (lme4's ``glmer`` uses the Fisher weights for the
        non-canonical probit and cloglog links, so its Laplace log-likelihood
        differs slightly; with ``n_agq > 1`` both approach the same integral).
        ``cloglog`` is the discrete-time survival model: ``exp(beta)`` is a hazard
        ratio.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two classes, sorted; ``predict_proba`` columns follow this order
        whatever ``pos_label`` is.
    pos_label_ : object
        The class modelled (``y == pos_label_`` is a success); ``1`` with ``trials``.
    phi_ : float
        Beta-binomial dispersion (``family="betabinomial"``); with a dispersion model,
        the mean of the rows' fitted ``phi_i`` over the training rows.
    dispersion_effects_ : DataFrame
        The dispersion model's coefficients on the log scale of phi
        (``family="betabinomial"``; ``estimate``, ``std_error``, ``z_value``,
        ``p_value``), indexed like glmmTMB's
        ``fixef(m)$disp``: ``"(Intercept)"``, then the predictors. A constant
        dispersion is its one row ``"(Intercept)"`` (``inf`` / ``-inf`` on a boundary).
    """
        + _COMMON_ATTRS
        + _NOTES
        + """
    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> df, truth = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> m.predict_proba(df[["time", "treatment"]]).shape
    (500, 2)
    """
    )

    _family_name = "binomial"
    _parameter_constraints = {
        **_PARAMETER_CONSTRAINTS,
        "pos_label": [Real, str, "boolean", None],
        "link": [StrOptions({"logit", "probit", "cloglog"})],
        "family": [StrOptions({"binomial", "betabinomial"})],
        "dispersion": [str, None],
    }
    # score predicts population-level unless asked: set_score_request(groups=True)
    __metadata_request__score = {"groups": False}

    def __init__(
        self,
        random_effects=None,
        *,
        n_agq=1,
        fit_intercept=True,
        group_columns=None,
        random_only_columns=None,
        max_iter=1000,
        tol=1e-10,
        pos_label=None,
        link="logit",
        family="binomial",
        keep_data=False,
        dispersion=None,
    ):
        self.random_effects = random_effects
        self.n_agq = n_agq
        self.fit_intercept = fit_intercept
        self.group_columns = group_columns
        self.random_only_columns = random_only_columns
        self.max_iter = max_iter
        self.tol = tol
        self.pos_label = pos_label
        self.link = link
        self.family = family
        self.keep_data = keep_data
        self.dispersion = dispersion

    def _family(self):
        if self.family == "betabinomial":
            if self.link != "logit":
                raise ValueError(
                    f"family='betabinomial' takes the logit link, not link={self.link!r}."
                )
            return make_family("betabinomial")
        return make_family("binomial", link=self.link)

    def fit(self, X, y, groups=None, *, sample_weight=None, offset=None, trials=None):
        """Fit by maximum likelihood.

        ``trials`` (array-like of shape (n_samples,)) makes ``y`` the number of
        successes out of ``trials`` (R's ``cbind(successes, failures)``).
        Otherwise ``y`` holds two classes of any type; ``pos_label`` says which
        one the model describes.
        """
        return super().fit(
            X, y, groups=groups, sample_weight=sample_weight, offset=offset, trials=trials
        )

    def _prepare_y(self, y, n, trials=None):
        self._with_trials = trials is not None
        self._several_trials = False
        if trials is not None:
            if self.pos_label is not None and not (
                isinstance(self.pos_label, (int, float, np.number)) and self.pos_label == 1
            ):
                raise ValueError(
                    f"pos_label={self.pos_label!r} does not apply with trials: y counts the "
                    "successes out of trials, and the model describes a success. To model "
                    "the other outcome, pass y = trials - y (leave pos_label=None)."
                )
            yv = numeric_outcome(y, "successes")
            t = check_trials(trials, yv, n)
            if self.family == "betabinomial" and np.all(t <= 1):
                raise ValueError(_BETABINOMIAL_TRIALS)
            # (kept without the data: the power tools read it from a pickled model)
            self._several_trials = bool(np.any(t > 1))
            self.classes_ = np.array([0, 1])
            self.pos_label_, self._pos_index = 1, 1
            return yv, t
        if self.family == "betabinomial":
            raise ValueError(_BETABINOMIAL_TRIALS)
        two = _two_numbers(y)
        if two is not None:  # numeric labels with two values: no sort of every row
            self.classes_ = two
            self._pos_index = _pos_index(two, self.pos_label)
            self.pos_label_ = two[self._pos_index]
            if two.tolist() != [0, 1]:
                self._warn_asymmetric_default()
            if y.dtype == np.float64 and two.tolist() == [0.0, 1.0] and self._pos_index == 1:
                return y, _one_trial(n)  # already the 0/1 outcome (read, never written)
            return (y == self.pos_label_).astype(float), _one_trial(n)
        check_class_labels(
            y,
            "BinomialGLMM needs a binary outcome (two classes). For proportions pass "
            "successes as y with trials=...",
        )
        classes, yi = np.unique(y, return_inverse=True)
        if len(classes) > 2:
            counts = classes.dtype.kind in "iuf" and bool(
                np.all(classes >= 0) and np.all(classes == np.round(classes))
            )
            hint = (
                " If y counts successes out of several trials per row, pass the trials: "
                "fit(X, y, groups=groups, trials=n) (lme4's cbind(successes, failures))."
                if counts
                else ""
            )
            raise ValueError(
                "Only binary classification is supported: BinomialGLMM needs exactly two classes "
                f"in y, got {len(classes)}: {classes[:5]}.{hint}"
            )
        if len(classes) < 2:
            raise ValueError(
                "BinomialGLMM needs samples of 2 classes in y; only one class "
                f"{classes.tolist()[0]!r} is present."
            )
        self.classes_ = classes
        self._pos_index = _pos_index(classes, self.pos_label)
        self.pos_label_ = classes[self._pos_index]
        self._warn_asymmetric_default()
        return (yi == self._pos_index).astype(float), _one_trial(n)

    def _warn_asymmetric_default(self):
        """Labels other than 0/1 with an asymmetric link and no ``pos_label``: which class
        is modelled changes the model (cloglog), so say which one it is."""
        link = self._family().link
        if self.pos_label is not None or link.symmetric:
            return
        labels = self.classes_.tolist()
        warn(
            f"with the {link.name} link, modelling one class or the other "
            f"gives two different models; this fit models {labels[self._pos_index]!r} "
            f"(classes_[1]) of {labels}. Pass pos_label= to choose.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

    def _proba_classes_1(self, p):
        """P(classes_[1]) from P(pos_label_)."""
        return p if getattr(self, "_pos_index", 1) == 1 else 1.0 - p

    def decision_function(self, X, groups=None, *, offset=None, population="marginal"):
        """Log-odds of ``classes_[1]`` (scikit-learn's convention): the log-odds of
        ``predict_proba``'s probability, so that it is positive exactly where ``predict``
        gives ``classes_[1]`` and ranks rows as the probabilities do.

        Rows of known groups: with the logit link the model's linear predictor when
        ``pos_label_`` is ``classes_[1]`` (the default) and its negative when it is
        ``classes_[0]``; with the probit and cloglog links the log-odds of the
        probability the linear predictor gives (not the linear predictor itself). Other
        rows: with ``population="marginal"`` (default) the log-odds of the probability
        averaged over the random-effect distribution (``predict_proba``'s); with
        ``population="zero"`` of the probability at a random effect of zero (lme4's
        ``re.form = NA``: the linear predictor itself with the logit link). The linear
        predictor of any link is ``predict_interval(..., scale="link")``'s ``fit``.
        """
        self._refuse_class_of_counts(
            "predict_interval(X, groups, scale='link')", "decision_function"
        )
        eta, var = self._linear_predictor(X, groups, offset, population)
        link = self.fit_result_.family.link
        odds = link.log_odds(eta)
        averaged = var > 0.0
        if averaged.any():
            extra = rows_of(self._family_values(X), averaged)
            family = self.fit_result_.family
            odds[averaged] = log_odds_over_normal(family, eta[averaged], var[averaged], extra)
        return odds if getattr(self, "_pos_index", 1) == 1 else -odds

    def predict_proba(self, X, groups=None, *, offset=None, population="marginal"):
        """Class probabilities, shape (n_samples, 2), columns ordered as ``classes_``.

        Rows of known groups use their conditional modes. For other rows
        ``population="marginal"`` (default) averages the probability over the
        random-effect distribution — the calibrated probability for a person not
        seen in training, which is what log-loss and cross-validation reward;
        ``population="zero"`` gives lme4's ``re.form = NA`` (a person with a
        random effect of exactly zero). ``predict_mean`` gives the probability
        of ``pos_label_``.
        """
        self._refuse_class_of_counts("predict_mean(X, groups)", "predict_proba")
        p = self.predict_mean(X, groups, offset=offset, population=population)
        p1 = self._proba_classes_1(p)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X, groups=None, *, offset=None):
        """Most probable class.

        A model fitted to successes out of ``trials`` predicts no class (its outcome is
        a count): this raises, naming what to use instead, so that a scorer comparing
        ``predict`` with the outcome (``accuracy``, ``neg_mean_squared_error``) does not
        compare 0/1 labels with counts.
        """
        self._refuse_class_of_counts("predict_mean(X, groups)", "predict")
        p1 = self._proba_classes_1(self.predict_mean(X, groups, offset=offset))
        return self.classes_[(p1 > 0.5).astype(int)]

    def _refuse_class_of_counts(self, probability: str, method: str) -> None:
        """Raise for a model fitted to successes out of trials, naming ``probability``
        (the call that gives its probability of success) instead of a class (``method``:
        ``predict``, ``predict_proba`` or ``decision_function``)."""
        if getattr(self, "_with_trials", False):
            compared = (
                "predict's 0/1 class would be compared with counts (scikit-learn's accuracy "
                "or squared-error scorers)"
                if method == "predict"
                else f"{method}'s two classes would be scored against counts read as 0/1 "
                "labels (scikit-learn's log-loss, ROC AUC or Brier scorers)"
            )
            raise ValueError(
                "this model was fitted to successes out of trials: its outcome is a count, "
                f"not a class, and {compared}. Use {probability} for the probability "
                "of success (times the rows' trials: the expected successes), and score "
                "(D^2, with trials) or the library's scorers (sklearn_glmm.model_selection) "
                "to score it."
            )

    def score(self, X, y, groups=None, sample_weight=None, *, offset=None, trials=None):
        """Accuracy of ``predict`` (the classifier convention); for a model fitted to
        successes out of ``trials``, D^2 (the fraction of binomial deviance explained,
        as the count models' ``score``), which needs the rows' ``trials``.

        Rows of known ``groups`` are predicted conditionally. Inside cross-validation
        ``groups`` (and ``trials``) reach ``score`` only on request:
        ``set_score_request(groups=True, trials=True)``.
        """
        check_is_fitted(self, "coef_")
        check_rows_aligned(X, {"y": y, "sample_weight": sample_weight, "trials": trials})
        if not getattr(self, "_with_trials", False):
            if trials is not None:
                raise ValueError(
                    "trials were given to score, but the model was fitted to 0/1 outcomes "
                    "without trials: score is the accuracy of its labels."
                )
            y = check_y_finite(y, _n_rows(X))
            w = None if sample_weight is None else check_weights(sample_weight, len(y))
            y_pred = self.predict(X, groups, offset=offset)
            return accuracy_score(y, y_pred, sample_weight=w)
        if trials is None:
            raise ValueError(
                "this model was fitted to successes out of trials: pass the rows' trials to "
                "score (in cross-validation, with metadata routing: "
                "set_score_request(trials=True)); score is then D^2, the fraction of "
                "binomial deviance explained. The accuracy of 0/1 predictions against counts "
                "of successes would mean nothing."
            )
        y = _score_outcome(y, _n_rows(X))
        t = check_trials(trials, y, len(y))
        w = None if sample_weight is None else check_weights(sample_weight, len(y))
        p = self.predict_mean(X, groups, offset=offset)
        return _deviance_explained(self, X, y, p, t, w, offset)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


def _n_rows(X) -> int:
    """The number of rows of ``X`` (an array, a frame or a sparse matrix)."""
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _score_outcome(y, n: int) -> np.ndarray:
    """``score``'s numeric outcome, checked as ``fit`` checks it: one value per row of
    ``X``, finite, a number."""
    return numeric_outcome(check_y_finite(y, n))


def _two_numbers(y):
    """The two values of a numeric 1-D outcome with exactly two (sorted, as
    ``np.unique`` gives them), or None: other outcomes take the general path."""
    if not (isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "fiub" and len(y)):
        return None
    lo, hi = y.min(), y.max()
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
        return None
    if np.count_nonzero((y == lo) | (y == hi)) != len(y):
        return None
    return np.array([lo, hi], dtype=y.dtype)


def _deviance_explained(est, X, y, mu, trials, sample_weight, offset=None) -> float:
    """D^2: 1 - deviance(mu) / deviance of the null model, the score of the count models
    and of a binomial model with trials. The null model is R's: an intercept alone (the
    weighted mean, per trial), and with an ``offset`` the intercept plus the offset
    (else the exposure alone would count as deviance explained)."""
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
    fam, extra = est.fit_result_.family, est._family_values(X)
    dev = np.sum(w * fam.unit_deviance(y, mu, trials, extra))
    null = _null_means(fam, extra, y, trials, w, offset)
    dev0 = np.sum(w * fam.unit_deviance(y, null, trials, extra))
    return 1.0 - dev / dev0 if dev0 > 0 else 0.0


def _null_means(fam, extra, y, trials, w, offset) -> np.ndarray:
    """The null model's means: the weighted mean (per trial); with a non-zero offset,
    ``mean(c + offset)`` at the intercept ``c`` of least deviance. Where the family's
    mean also reads its own parameters (zero inflation, a hurdle, truncation: per row,
    with predictors), the null is the weighted mean per unit of exposure,
    ``exp(offset)`` times ``sum(w y) / sum(w exp(offset))``, which no parameter of the
    model enters (a constant offset then changes nothing, as it changes no fit)."""
    ybar = np.sum(w * y) / np.sum(w * trials)
    off = None if offset is None else np.broadcast_to(np.asarray(offset, float), y.shape)
    top = 1.0 if fam.has_trials else np.inf
    if off is None or not np.any(off != 0.0) or not 0.0 < ybar < top:
        # without an offset; or every outcome on a bound (all zero, all successes), where
        # the null mean is on it whatever the offset
        return np.full_like(y, ybar)
    probe = np.resize([-1.0, 0.0, 1.0], y.shape)  # (the family's values may be per row)
    if not np.array_equal(fam.mean(probe, extra), fam.link.inverse(probe)):
        exposure = fam.link.inverse(off)
        return exposure * (np.sum(w * y) / np.sum(w * exposure))
    from scipy.optimize import minimize_scalar

    def deviance(c):
        return float(np.sum(w * fam.unit_deviance(y, fam.mean(c + off, extra), trials, extra)))

    c0 = float(fam.link.link(ybar)) - float(np.average(off, weights=w))
    res = minimize_scalar(deviance, bracket=(c0 - 1.0, c0 + 1.0), tol=1e-12)
    return fam.mean(res.x + off, extra)


def _pos_index(classes: np.ndarray, pos_label) -> int:
    """Position in ``classes`` of the class modelled (``classes_[1]`` for None)."""
    if pos_label is None:
        return 1
    for k, c in enumerate(classes.tolist()):
        if c == pos_label:
            return k
    hint = ""
    if isinstance(pos_label, str) and classes.dtype.kind in "iu" and classes.tolist() == [0, 1]:
        hint = (
            " scikit-learn's cross_val_predict, CalibratedClassifierCV and StackingClassifier "
            "pass y label-encoded as 0, 1: leave pos_label=None there (with the logit and "
            "probit links the probabilities of classes_[1] are the same)."
        )
    raise ValueError(
        f"pos_label={pos_label!r} is not one of the classes in y: {classes.tolist()}.{hint}"
    )


# the support of a count model's predict_proba: learnt at fit up to this count
MAX_AUTO_COUNT = 10_000
# ... as the training maximum and this quantile of the largest fitted mean's distribution
SUPPORT_QUANTILE = 0.999


def _quantile_up_to(fam, eta: float, extra, q: float, cap: int):
    """Smallest count k <= cap with P(Y <= k) >= q at linear predictor ``eta``; None
    beyond ``cap``."""

    def cdf(k):
        return float(fam.cdf_eta(np.array([float(k)]), np.array([eta]), np.ones(1), extra)[0])

    if not np.isfinite(fam.mean(np.array([eta]), extra)[0]) or cdf(cap) < q:
        return None
    lo, hi = -1, cap  # P(Y <= lo) < q <= P(Y <= hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cdf(mid) >= q:
            hi = mid
        else:
            lo = mid
    return hi


def _check_max_count(value, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{where} must be a non-negative integer, got {value!r}.")
    return int(value)


class _CountGLMM(RegressorMixin, _BaseGLMM):
    _parameter_constraints = {
        **_PARAMETER_CONSTRAINTS,
        "zero_inflation": ["boolean", str],
        "hurdle": ["boolean", str],
        "truncated": ["boolean"],
        "max_count": [Interval(Integral, 0, None, closed="left"), None],
    }

    def __init__(
        self,
        random_effects=None,
        *,
        n_agq=1,
        zero_inflation=False,
        fit_intercept=True,
        group_columns=None,
        random_only_columns=None,
        max_iter=1000,
        tol=1e-10,
        max_count=None,
        keep_data=False,
        hurdle=False,
        truncated=False,
    ):
        self.random_effects = random_effects
        self.n_agq = n_agq
        self.zero_inflation = zero_inflation
        self.hurdle = hurdle
        self.truncated = truncated
        self.fit_intercept = fit_intercept
        self.group_columns = group_columns
        self.random_only_columns = random_only_columns
        self.max_iter = max_iter
        self.tol = tol
        self.max_count = max_count
        self.keep_data = keep_data

    # score predicts population-level unless asked: set_score_request(groups=True)
    __metadata_request__score = {"groups": False}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True  # y holds counts
        return tags

    def _prepare_y(self, y, n, **fit_params):
        if fit_params:
            name = next(iter(fit_params))
            hint = (
                ": trials belong to BinomialGLMM (successes out of trials); a count "
                "model's exposure goes in offset=np.log(exposure)"
                if name == "trials"
                else ""
            )
            raise TypeError(
                f"{type(self).__name__}.fit() got an unexpected keyword argument {name!r}{hint}."
            )
        return check_counts(numeric_outcome(y)), _one_trial(n)

    def _learn_support(self, y, eta, weights):
        """Keep what ``max_count_`` and ``classes_`` are made from, when first read.

        ``max_count`` when given; otherwise the larger of the training maximum and the
        0.999 quantile of the distribution with the largest fitted mean (conditional on
        the random-effect modes), unless that passes ``MAX_AUTO_COUNT``. The quantile
        is computed on first use: a fit that never predicts probabilities does not
        pay for it.
        """
        # filled on first read; a container made at fit, so that reading the support
        # (predict_proba) leaves the estimator's attributes as they were
        self._support = {}
        used = weights > 0
        y_max = int(np.ceil(np.max(y[used]))) if used.any() else 0
        # the largest mean is at the largest linear predictor (the mean increases with
        # it), with that row's values of the family's parameters (its zero inflation)
        values = self.fit_result_.family_values()
        if not used.any():
            self._support_inputs = (y_max, -np.inf, values)
            return
        rows = np.flatnonzero(used)
        top = rows[int(np.argmax(eta[rows]))]
        self._support_inputs = (y_max, float(eta[top]), rows_of(values, [top]))

    def _resolved_support(self):
        """``(max_count_, note)``: the support of ``predict_proba`` (see ``_learn_support``)."""
        check_is_fitted(self, "coef_")
        if "value" not in self._support:
            y_max, eta_hi, extra_hi = self._support_inputs
            fam = self.fit_result_.family
            mu_hi = float(fam.mean(np.array([eta_hi]), extra_hi)[0])
            note = None
            if self.max_count is not None:
                K = int(self.max_count)
            else:
                q = _quantile_up_to(fam, eta_hi, extra_hi, SUPPORT_QUANTILE, MAX_AUTO_COUNT)
                if q is None or y_max > MAX_AUTO_COUNT:
                    K, note = None, (mu_hi, y_max)
                else:
                    K = max(1, y_max, q)
            self._support["value"] = (K, note)
        return self._support["value"]

    @property
    def max_count_(self):
        return self._resolved_support()[0]

    @property
    def _support_note(self):
        return self._resolved_support()[1]

    @property
    def classes_(self):
        K = self.max_count_
        if K is None:
            raise AttributeError(
                f"{type(self).__name__} has no classes_: its count support would pass "
                f"{MAX_AUTO_COUNT} counts; pass max_count= to fix it."
            )
        return np.arange(K + 1)

    def predict(self, X, groups=None, *, offset=None, population="marginal"):
        """Expected count (see ``predict_mean`` for ``population``)."""
        return self.predict_mean(X, groups, offset=offset, population=population)

    def predict_zero_inflation(self, X):
        """Each row's probability of a structural zero (glmmTMB's ``type = "zprob"``).

        The zero-inflation model's probability for the rows of ``X``: the constant
        ``zero_inflation_`` for ``zero_inflation=True``, each row's own with predictors.
        For a hurdle model, the probability of a zero (``zero_prob_``, or each row's
        with ``hurdle="1 + x"``).
        It does not depend on the random effects.

        Returns
        -------
        pi : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "coef_")
        block = next((b for b in self.fit_result_.family.blocks if b.prefix == "zi"), None)
        if block is None:
            raise ValueError(
                f"this {type(self).__name__} has no zero inflation (zero_inflation=False)."
            )
        if self.fit_result_.zi_design is None:
            value = getattr(self, block.attribute)
            return np.full(self._validate_X(X, reset=False)[0].shape[0], value)
        logit = self._family_values(X)[-1]
        return 1.0 / (1.0 + np.exp(-logit))

    def predict_proba(self, X, groups=None, *, offset=None, max_count=None, population="marginal"):
        """Predictive distribution of the count: P(Y = k) for k < K, and P(Y >= K).

        Parameters
        ----------
        X : array-like, sparse matrix or DataFrame of shape (n_samples, n_features)
            Fixed-effect predictors, as in ``fit`` (with the ``group_columns``
            when the model was fitted with them).
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Grouping factor(s) of the rows. Rows of levels seen in training are
            predicted conditionally on their random-effect modes; unseen levels
            and ``None`` follow ``population``. A DataFrame's columns are matched to
            the fitted factors by name (in any order); an array's by position.
        offset : array-like of shape (n_samples,), default=None
            Known term added to the linear predictor (e.g. ``log(exposure)``),
            as in ``fit``.
        max_count : int, default=None
            The last column's count ``K``: the result has ``K + 1`` columns,
            P(Y = 0), ..., P(Y = K - 1) and P(Y >= K). ``None`` uses
            ``max_count_``, fixed at fit, so that every call returns the
            columns ``classes_`` whatever the rows.
        population : {"marginal", "zero"}, default="marginal"
            For rows without a known level: ``"marginal"`` averages the
            distribution over the random effects (the calibrated prediction
            for a new group); ``"zero"`` sets the random effect to zero
            (lme4's ``re.form = NA``).

        Returns
        -------
        proba : ndarray of shape (n_samples, K + 1)
            Rows sum to 1: the last column holds the tail P(Y >= K). Columns
            are the counts ``classes_`` (``np.arange(K + 1)``) when
            ``max_count`` is None.

        Notes
        -----
        scikit-learn treats ``predict_proba`` as a classifier's method; for a
        count model the tools that apply are listed in the class docstring.
        """
        check_is_fitted(self, "coef_")
        if max_count is None:
            if self.max_count_ is None:
                mu_hi, y_max = self._support_note
                raise ValueError(
                    f"{type(self).__name__} was fitted on counts too large for a column per "
                    f"count: the largest fitted mean is {mu_hi:.4g} (training maximum "
                    f"{y_max}), so the support would pass {MAX_AUTO_COUNT} counts. Pass "
                    "max_count=... to predict_proba (or to the constructor) for the counts you "
                    "need: the columns are then P(Y = k) for k < max_count and P(Y >= "
                    "max_count). Use predict for the mean."
                )
            K = self.max_count_
        else:
            K = _check_max_count(max_count, "max_count")
        return self._count_proba(X, groups, offset, K, population)

    def score(self, X, y, groups=None, sample_weight=None, *, offset=None):
        """D^2, the fraction of deviance explained (as scikit-learn's PoissonRegressor),
        against R's null model: an intercept, with the ``offset`` when one is given.

        Rows of known ``groups`` are predicted conditionally. Inside cross-validation
        ``groups`` reach ``score`` only on request: ``set_score_request(groups=True)``.
        """
        check_rows_aligned(X, {"y": y, "sample_weight": sample_weight})
        y = check_counts(_score_outcome(y, _n_rows(X)))
        w = None if sample_weight is None else check_weights(sample_weight, len(y))
        mu = self.predict(X, groups, offset=offset)
        return _deviance_explained(self, X, y, mu, np.ones_like(y), w, offset)


class PoissonGLMM(_CountGLMM):
    __doc__ = (
        """Poisson mixed model (log link), optionally zero-inflated or hurdle.

    .. math::

        \\log E(y_{ij} \\mid b_i) = x_{ij}^\\top \\beta + z_{ij}^\\top b_i + \\text{offset}_{ij}

    Parameters
    ----------
    """
        + _COMMON_PARAMS
        + _COUNT_PARAMS
        + """
    Attributes
    ----------
    """
        + _COMMON_ATTRS
        + _COUNT_ATTRS
        + """
    zero_inflation_ : float
        Estimated zero-inflation probability (``zero_inflation=True``); with
        predictors (``zero_inflation="1 + time"``), the mean of the rows' fitted
        probabilities over the training rows.
    zero_inflation_effects_ : DataFrame
        The zero-inflation model's coefficients on the logit scale (``estimate``,
        ``std_error``, ``z_value``, ``p_value``), indexed like glmmTMB's
        ``fixef(m)$zi``: ``"(Intercept)"``, then the predictors.
    zero_prob_ : float
        Estimated probability of a zero of the hurdle model (``hurdle=True``
        only); the summary shows its logit, glmmTMB's ``fixef(m)$zi``.
    """
        + _NOTES
        + _COUNT_NOTES
        + """
    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMM
    >>> from sklearn_glmm.datasets import load_app_logins
    >>> df = load_app_logins()
    >>> m = PoissonGLMM().fit(df[["day_centered"]], df["logins"], groups=df["user_id"])
    >>> round(m.aic_, 1)
    5290.3
    """
    )

    _family_name = "poisson"


_BETABINOMIAL_TRIALS = (
    "family='betabinomial' needs successes out of trials with more than one trial in some "
    "rows (fit(X, successes, trials=...)): with one trial per row the Beta dispersion is not "
    "identified. Use family='binomial' for 0/1 outcomes."
)


class NegBinGLMM(_CountGLMM):
    __doc__ = (
        """Negative binomial mixed model (NB2 or NB1, log link), optionally zero-inflated or hurdle.

    ``family="nbinom2"`` (default): Var(Y | b) = mu + mu^2 / theta, ``theta``
    estimated jointly (glmmTMB's ``nbinom2``). ``family="nbinom1"``: Var(Y | b) =
    mu (1 + phi), linear in the mean (glmmTMB's ``nbinom1``). The Laplace
    approximation uses the exact curvature of the log-density, as glmmTMB does
    (lme4's ``glmer.nb`` uses Fisher weights, which give a slightly different
    log-likelihood).

    Parameters
    ----------
    """
        + _COMMON_PARAMS
        + _COUNT_PARAMS
        + """
    family : {"nbinom2", "nbinom1"}, default="nbinom2"
        The variance function: quadratic (NB2) or linear (NB1) in the mean.
    dispersion : str or None, default=None
        ``None``: one dispersion for every row (``theta_`` or ``phi_``). A term
        string over feature names, in the syntax of ``random_effects``
        (``"1 + time"``), gives the dispersion its own linear predictor on the log
        scale (glmmTMB's ``dispformula = ~ time``): ``log theta_i = d_i' delta``
        (NB2) or ``log phi_i = d_i' delta`` (NB1).
        ``dispersion_effects_`` holds its coefficients, and predictions,
        ``predict_proba``, ``simulate`` and residuals use each row's dispersion.
        ``"1"`` is the constant model (``None``).

    Attributes
    ----------
    """
        + _COMMON_ATTRS
        + _COUNT_ATTRS
        + """
    theta_ : float
        NB2 dispersion; ``inf`` when the data show no overdispersion
        (``family="nbinom2"``). With a dispersion model, the mean of the rows'
        fitted ``theta_i`` over the training rows (a summary, not a parameter).
    phi_ : float
        NB1 dispersion, Var = mu (1 + phi); ``0`` when the data show no
        overdispersion (``family="nbinom1"``); with a dispersion model, the mean of
        the rows' fitted ``phi_i``.
    dispersion_effects_ : DataFrame
        The dispersion model's coefficients on the log scale of theta (NB2) or phi
        (NB1; ``estimate``, ``std_error``, ``z_value``, ``p_value``), indexed like glmmTMB's
        ``fixef(m)$disp``: ``"(Intercept)"``, then the predictors. A constant
        dispersion is its one row ``"(Intercept)"`` (``inf`` / ``-inf`` on a boundary).
    zero_inflation_ : float
        Estimated zero-inflation probability (``zero_inflation=True``); with
        predictors (``zero_inflation="1 + time"``), the mean of the rows' fitted
        probabilities over the training rows.
    zero_inflation_effects_ : DataFrame
        The zero-inflation model's coefficients on the logit scale (``estimate``,
        ``std_error``, ``z_value``, ``p_value``), indexed like glmmTMB's
        ``fixef(m)$zi``: ``"(Intercept)"``, then the predictors.
    zero_prob_ : float
        Estimated probability of a zero of the hurdle model (``hurdle=True``
        only); the summary shows its logit, glmmTMB's ``fixef(m)$zi``.
    """
        + _NOTES
        + _COUNT_NOTES
    )

    _family_name = "negbin"
    _parameter_constraints = {
        **_CountGLMM._parameter_constraints,
        "family": [StrOptions({"nbinom2", "nbinom1"})],
        "dispersion": [str, None],
    }

    def __init__(
        self,
        random_effects=None,
        *,
        n_agq=1,
        zero_inflation=False,
        fit_intercept=True,
        group_columns=None,
        random_only_columns=None,
        max_iter=1000,
        tol=1e-10,
        max_count=None,
        keep_data=False,
        hurdle=False,
        truncated=False,
        family="nbinom2",
        dispersion=None,
    ):
        super().__init__(
            random_effects,
            n_agq=n_agq,
            zero_inflation=zero_inflation,
            fit_intercept=fit_intercept,
            group_columns=group_columns,
            random_only_columns=random_only_columns,
            max_iter=max_iter,
            tol=tol,
            max_count=max_count,
            keep_data=keep_data,
            hurdle=hurdle,
            truncated=truncated,
        )
        self.family = family
        self.dispersion = dispersion

    def _family(self):
        name = "negbin1" if self.family == "nbinom1" else "negbin"
        return make_family(name, self.zero_inflation, hurdle=self.hurdle, truncated=self.truncated)
