"""The count estimators' shared base class (PoissonGLMM, NegBinGLMM): counts as outcomes,
the support their probabilities cover (``max_count``), zero inflation's probability,
``predict_proba`` over the counts and ``score``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._base import _BaseGLMM
from ._engine.blocks import rows_of
from ._estimator_params import _PARAMETER_CONSTRAINTS
from ._scores import (
    _deviance_explained,
    _n_rows,
    _one_trial,
    _score_outcome,
)
from ._validation import (
    check_counts,
    check_weights,
    numeric_outcome,
)
from ._validation_rows import check_rows_aligned

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
