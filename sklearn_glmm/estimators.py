"""BinomialGLMM, PoissonGLMM and NegBinGLMM: thin classes over the shared engine."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import _BaseGLMM
from ._count_glmm import _CountGLMM
from ._engine.blocks import rows_of
from ._engine.families import make_family
from ._engine.families.base import log_odds_over_normal
from ._estimator_params import (
    _COMMON_ATTRS,
    _COMMON_PARAMS,
    _COUNT_ATTRS,
    _COUNT_NOTES,
    _COUNT_PARAMS,
    _NOTES,
    _PARAMETER_CONSTRAINTS,
)
from ._scores import (
    _deviance_explained,
    _n_rows,
    _one_trial,
    _score_outcome,
)
from ._validation import (
    check_class_labels,
    check_trials,
    check_weights,
    check_y_finite,
    numeric_outcome,
)
from ._validation_rows import check_rows_aligned
from ._warn import user_stacklevel, warn


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
