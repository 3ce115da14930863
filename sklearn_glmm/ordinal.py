"""OrdinalGLMM: the cumulative link mixed model of ``ordinal::clmm`` as a classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import _BaseGLMM
from ._engine.families import make_family
from ._engine.families.base import _NODE_CELLS, normal_rule
from ._engine.families.ordinal_links import ORDINAL_LINKS, make_ordinal_link
from ._engine.families.thresholds import THRESHOLDS
from ._engine.ordinal_separation import ordinal_separation
from ._estimator_params import (
    _COMMON_ATTRS,
    _NOTES,
    _PARAMETER_CONSTRAINTS,
)
from ._fit_result import centring_offset, unrotated
from ._frames import as_pandas
from ._ordinal_classes import _unique, category_order, ordinal_classes
from ._ordinal_scale import scale_design, scale_term
from ._ordinal_tables import threshold_tables
from ._scores import _n_rows
from ._tables import block_effects, fitted_table
from ._validation import (
    aliased_columns,
    check_weights,
    check_y_finite,
)
from ._validation_rows import check_rows_aligned
from ._warn import user_stacklevel, warn
from .exceptions import RankDeficiencyWarning, SeparationWarning

_ORDINAL_PARAMS = """
    random_effects : str, dict or None, default=None
        Random-effect terms in lme4's syntax over feature names, as for the other
        estimators (``"1"``, ``"1 + time"``, ``"diag(1 + time)"``, a dict per
        factor). ``None`` is a random intercept for every factor when ``fit`` gets
        groups, and a cumulative link model without random effects (``ordinal::clm``,
        with a ``NoRandomEffectsWarning``) when it gets none.
    link : {"logit", "probit", "cloglog", "loglog", "cauchit"}, default="logit"
        The latent distribution ``F`` of ``P(Y <= j) = F(alpha_j - eta)``, as
        ``ordinal::clm`` defines it: ``cloglog`` is ``1 - exp(-exp(x))``, ``loglog``
        is ``exp(-exp(-x))``.
    threshold : {"flexible", "equidistant", "symmetric"}, default="flexible"
        clm's threshold structures: one free threshold per cut, equally spaced
        thresholds (``threshold.1``, ``spacing``), or thresholds symmetric around a
        centre (``central``, ``spacing.k``).
    scale : str or None, default=None
        Scale effects (``ordinal::clmm2``'s ``scale = ~ x``): feature names of ``X``
        in the term syntax of ``random_effects`` (``"temp"``, ``"x1 + x2"``) whose
        values set each row's latent scale, ``P(Y <= j) = F((alpha_j - eta) /
        exp(s' zeta))``. The scale model has no intercept (clmm2 fixes it at 0), so
        ``"x"``, ``"1 + x"`` and ``"0 + x"`` are one model; its predictors are
        features of ``X`` and so also location effects, except those named in
        ``scale_only_columns``. ``None``: one scale for every row.
    scale_only_columns : str or list of str, default=None
        Columns of a DataFrame ``X`` that enter the scale model only (clmm2's
        ``rating ~ contact, scale = ~ temp``): taken out of the location model's
        features (``feature_names_in_`` lists the location columns only), and needed
        in ``X`` for predictions too. Each must be named in ``scale``.
    n_agq : int, default=1
        1 uses the Laplace approximation; more uses adaptive Gauss-Hermite
        quadrature (one grouping factor with a scalar random effect, as clmm, or
        with two or three random effects: a product rule of ``n_agq**q`` nodes).
    group_columns : str or list of str, default=None
        Columns of a DataFrame ``X`` holding the grouping factors.
    max_iter : int, default=1000
    tol : float, default=1e-10
    keep_data : bool, default=False
        Whether pickles carry the training data (see :class:`BinomialGLMM`).
"""


class OrdinalGLMM(ClassifierMixin, _BaseGLMM):
    __doc__ = (
        """Cumulative link mixed model for ordered outcomes (``ordinal::clmm``).

    .. math::

        P(Y_{ij} \\le k \\mid b_i) = F\\bigl(\\alpha_k - x_{ij}^\\top \\beta
            - z_{ij}^\\top b_i\\bigr), \\qquad b_i \\sim N(0, \\Sigma)

    with thresholds ``alpha_1 < ... < alpha_{K-1}`` and ``F`` the inverse link.
    A positive coefficient moves the outcome towards higher classes. ``X`` has
    no intercept column: the thresholds play its role. A constant column of ``X``
    is dropped with a ``RankDeficiencyWarning`` (its coefficient is not
    identified beside the thresholds); its row of ``fixed_effects_`` is NaN.

    Parameters
    ----------
    """
        + _ORDINAL_PARAMS
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels sorted (``np.unique`` order), as scikit-learn requires:
        the columns of ``predict_proba`` and ``decision_function``, the order every
        scikit-learn metric assumes.
    class_order_ : ndarray of shape (n_classes,)
        The model's order of the classes, lowest first (the thresholds' order): the
        categories' order of a pandas Categorical ``y`` (ordered or not; categories
        never observed dropped) or of a polars ``Enum``, the sorted labels otherwise.
        Equal to ``classes_`` when the sorted order is the model's (integer labels).
    thresholds_ : DataFrame
        The thresholds ``alpha_k`` indexed by clm's names (``"1|2"``, ``"2|3"``,
        ... from the class labels), columns ``estimate`` and ``std_error``.
    threshold_coefficients_ : DataFrame
        The threshold parameters as clmm reports them (``threshold.1`` and
        ``spacing`` for equidistant thresholds; the thresholds themselves for
        flexible ones), with ``std_error``, ``z_value``, ``p_value``.
    scale_effects_ : DataFrame
        With ``scale``: the scale coefficients ``zeta`` (log scale) indexed by the
        predictors' names, with ``std_error``, ``z_value``, ``p_value`` (clmm2's
        "Scale coefficients").
    """
        + _COMMON_ATTRS
        + _NOTES
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_glmm import OrdinalGLMM
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(40), 8)
    >>> x = rng.normal(size=(320, 1))
    >>> latent = x[:, 0] + rng.normal(size=40)[g] + rng.logistic(size=320)
    >>> y = np.digitize(latent, [-1.0, 0.5, 2.0])
    >>> m = OrdinalGLMM(random_effects="1").fit(x, y, groups=g)
    >>> m.predict_proba(x).shape
    (320, 4)
    """
    )

    _family_name = "ordinal"
    fit_intercept = False  # the thresholds are the intercepts
    _parameter_constraints = {
        **{k: v for k, v in _PARAMETER_CONSTRAINTS.items() if k != "fit_intercept"},
        "link": [StrOptions(set(ORDINAL_LINKS))],
        "threshold": [StrOptions(set(THRESHOLDS))],
        "scale": [str, None],
        "scale_only_columns": [str, list, None],
    }
    __metadata_request__score = {"groups": False}
    scale_effects_ = fitted_table(block_effects("scale_effects_"))

    def __init__(
        self,
        random_effects=None,
        *,
        link="logit",
        threshold="flexible",
        scale=None,
        scale_only_columns=None,
        n_agq=1,
        group_columns=None,
        max_iter=1000,
        tol=1e-10,
        keep_data=False,
    ):
        self.random_effects = random_effects
        self.link = link
        self.threshold = threshold
        self.scale = scale
        self.scale_only_columns = scale_only_columns
        self.n_agq = n_agq
        self.group_columns = group_columns
        self.max_iter = max_iter
        self.tol = tol
        self.keep_data = keep_data

    # -- fit ----------------------------------------------------------------------
    def fit(self, X, y, groups=None, *, sample_weight=None, offset=None):
        """Fit by maximum likelihood (Laplace, or AGQ with ``n_agq > 1``).

        ``y`` holds the ordered outcome. A pandas Categorical (ordered or not, as
        R's factor levels) or a polars ``Enum`` gives the order of the classes, its
        categories' (categories never observed are dropped, with a warning); other
        labels are sorted, with a ``UserWarning`` for three or more labels that are
        not numbers (text sorts alphabetically: "fair" < "good" < "poor"). The order
        used is ``class_order_``. The caller's data are not modified.

        scikit-learn's ``cross_val_predict(method="predict_proba")``,
        ``VotingClassifier``, ``StackingClassifier`` and ``CalibratedClassifierCV``
        pass ``y`` label-encoded in sorted order, which the model cannot tell from
        the order of the scale: give them integer codes in the model's order (e.g.
        ``pd.Categorical(y, categories=order).codes``).
        """
        self._category_order = category_order(y)
        return super().fit(X, y, groups=groups, sample_weight=sample_weight, offset=offset)

    def _prepare_y(self, y, n):
        class_order, classes, codes = ordinal_classes(y, self._category_order)
        if len(classes) < 2:
            raise ValueError(
                "OrdinalGLMM needs samples of at least 2 classes in y; only one class "
                f"{classes.tolist()[0]!r} is present."
            )
        w = getattr(self, "_fit_weights", None)
        if w is not None and len(w) == len(codes):
            class_order, classes, codes = _without_unweighted_classes(
                class_order, classes, codes, w
            )
            if len(classes) < 2:
                raise ValueError(
                    "OrdinalGLMM needs samples of at least 2 classes in y among the rows of "
                    f"positive sample_weight; only {classes.tolist()} is there."
                )
        self.class_order_ = class_order
        self.classes_ = classes
        self._y_codes = codes.astype(float)
        return codes.astype(float), np.ones(n)

    def _family(self):
        y, w = self._y_codes, self._fit_weights
        K = len(self.class_order_)
        counts = np.bincount(y.astype(np.intp), weights=w, minlength=K)
        cum = np.cumsum(counts)[:-1] / max(counts.sum(), 1e-300)
        link = make_ordinal_link(self.link)
        start = link.link(np.clip(cum, 1e-4, 1.0 - 1e-4))
        if not np.all(np.diff(start) > 0):  # classes of (nearly) zero weight
            start = np.linspace(-1.0, 1.0, K - 1)
        # P(Y <= j) = F(threshold_j - eta): with the offset in eta, the thresholds start
        # by its (weighted) centre, so that a constant added to it only moves the start
        off = getattr(self, "_start_offset", None)
        if off is not None and np.size(off) and np.sum(w) > 0:
            start = start + float(np.sum(w * off) / np.sum(w))
        return make_family(
            "ordinal",
            link=self.link,
            n_classes=K,
            threshold=self.threshold,
            labels=list(self.class_order_),
            start=start,
            scale=scale_term(self.scale) is not None,
        )

    def _fit_inputs(self, X, y, groups, sample_weight, offset):
        X_raw, y_raw, groups, w, off = super()._fit_inputs(X, y, groups, sample_weight, offset)
        self._fit_weights, self._start_offset = w, off
        # the scale model's design from the user's columns (predictions see them too),
        # before the location model drops those aliased with its thresholds
        slopes = scale_term(self.scale)
        only = self._scale_only()
        named = set(slopes or ()) | {s[1:-1] for s in slopes or () if s[:1] == s[-1:] == "`"}
        unused = [c for c in only if c not in named]
        if unused:
            raise ValueError(
                f"scale_only_columns {unused} are not named in scale={self.scale!r}: a column "
                "that enters the scale model only must be one of its predictors."
            )
        self._scale_design = None
        if slopes is not None:
            rows = self._with_scale_only(X_raw, X)
            self._scale_design = scale_design(slopes, rows, list(self._fixed_names) + only)
            self._scale_rows = rows  # the user's columns, for _block_designs_of only
        return _drop_constant_columns(X_raw, self._fixed_names), y_raw, groups, w, off

    # -- columns of the scale model only --------------------------------------------
    def _scale_only(self) -> list:
        cols = self.scale_only_columns
        if cols is None:
            return []
        return [cols] if isinstance(cols, str) else [str(c) for c in cols]

    def _validate_X(self, X, reset: bool, with_groups: bool = False):
        """The location model's columns: ``X`` without ``scale_only_columns``."""
        only = self._scale_only()
        if only:
            X = _scale_only_frame(X, only).drop(columns=only)
        return super()._validate_X(X, reset, with_groups)

    def _with_scale_only(self, Xa, X):
        """The location columns ``Xa`` followed by the scale-only columns of ``X``."""
        only = self._scale_only()
        if not only:
            return Xa
        values = _scale_only_frame(X, only)[only].to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"scale_only_columns {only} have non-finite values (NaN or inf).")
        return np.column_stack([Xa, values])

    def _family_values(self, X=None, column: bool = False):
        """The family's values for the rows of ``X``, scale-only columns included."""
        if X is None or not self._scale_only() or getattr(self, "_scale_design", None) is None:
            return super()._family_values(X, column)
        rows = self._with_scale_only(self._validate_X(X, reset=False)[0], X)
        return self.fit_result_.family_values(rows, column)

    def _model_data(self, X_raw, yv, trials, w, off, groups):
        if self.threshold != "flexible" and len(self.classes_) < 3:
            raise ValueError(
                f"threshold={self.threshold!r} needs an outcome with 3 or more classes (got "
                f"{len(self.classes_)}); use threshold='flexible'."
            )
        return super()._model_data(X_raw, yv, trials, w, off, groups)

    def _block_designs_of(self, family, zi_term, disp_term, X_raw, names, pending):
        """The scale model's design (``scale``) for the family's ``log_scale`` block."""
        designs = super()._block_designs_of(family, zi_term, disp_term, X_raw, names, pending)
        rows = self.__dict__.pop("_scale_rows", None)
        if self._scale_design is None:
            return designs
        per_block = tuple(
            self._scale_design if b.prefix == "scale" else None for b in family.blocks
        )
        pending["block_designs"] = per_block
        return tuple(None if d is None else d.internal(rows) for d in per_block)

    def _learn_support(self, y, eta, weights):
        (self.thresholds_, self.threshold_coefficients_) = threshold_tables(self)
        # only the starting thresholds needed them
        self._y_codes = self._fit_weights = self._start_offset = None
        self._check_ordinal_separation(y, weights)

    def _check_ordinal_separation(self, y, weights):
        """Warn, naming the predictors, when some fixed effects have an infinite MLE."""
        res = self.fit_result_
        d = res.objective.data
        beta = res.beta
        # along a separating direction the optimiser drives the linear predictor far out
        if d.n_beta == 0 or np.max(np.abs(d.X @ beta)) <= 5.0:
            return
        X, _ = unrotated(res.scaling, d.X)  # one column per predictor
        cols = ordinal_separation(X, y, weights, len(self.classes_))
        if cols is None:
            return
        names = [res.fixed_names[res.scaling["kept"][j]] for j in cols]
        warn(
            f"complete or quasi-complete separation: predictor(s) {names} order the classes "
            "perfectly for some rows. Their estimates diverge (the maximum-likelihood values "
            "are infinite) and the reported values, standard errors and p-values for them are "
            "not meaningful. Merge sparse classes or drop those predictors.",
            SeparationWarning,
            stacklevel=user_stacklevel(),
        )

    # -- predictions --------------------------------------------------------------
    def linear_predictor(self, X, groups=None, *, offset=None):
        """The linear predictor ``eta = X beta (+ Z b)``; unknown levels get b = 0.

        Larger values mean higher classes: ``P(Y <= k) = F(alpha_k - eta)`` for the
        ``thresholds_`` and ``class_order_[k]``, the ``k``-th class from the lowest.
        One score along the ordered scale; :meth:`decision_function` gives
        scikit-learn's per-class scores.
        """
        eta, _ = self._linear_predictor(X, groups, offset, "zero")
        # the fit's linear predictor is that of the internally centred design, whose
        # thresholds are thresholds_ less the shift: back to X beta
        return eta - centring_offset(self.fit_result_.scaling, self.coef_)

    def decision_function(self, X, groups=None, *, offset=None):
        """scikit-learn's class scores: the log-probabilities ``predict`` compares.

        With three or more classes, ``log P(Y = k)``, shape (n_samples, n_classes), in
        ``classes_`` order: the row-wise argmax is ``predict``. With two classes,
        ``log(P(classes_[1]) / P(classes_[0]))``, shape (n_samples,): positive where
        ``predict`` gives ``classes_[1]``. The probabilities are ``predict_proba``'s
        (population-averaged for new groups); probabilities below the smallest normal
        float count as that value, so the scores are finite. The model's linear
        predictor is :meth:`linear_predictor`.
        """
        return class_scores(self.predict_proba(X, groups, offset=offset))

    def predict_proba(self, X, groups=None, *, offset=None, population="marginal"):
        """``P(Y = k)`` for every class, shape (n_samples, n_classes), in ``classes_`` order.

        ``classes_`` are the sorted labels, the order scikit-learn's metrics assume;
        ``class_order_`` is the model's order, lowest class first (the columns in that
        order: ``proba[:, [list(m.classes_).index(c) for c in m.class_order_]]``).
        Rows of known groups use their conditional modes.
        For other rows ``population="marginal"`` (default) averages the probabilities
        over the random-effect distribution (the population-averaged prediction for a
        new group); ``population="zero"`` sets the random effect to zero.
        """
        eta, var = self._linear_predictor(X, groups, offset, population)
        return self._class_probabilities(eta, var, X)[:, self._sorted_columns()]

    def _sorted_columns(self) -> np.ndarray:
        """Positions in ``class_order_`` of ``classes_``: ``p[:, this]`` reorders columns
        in the model's order into scikit-learn's."""
        return pd.Index(self.class_order_).get_indexer(self.classes_)

    def _ordinal_columns(self) -> np.ndarray:
        """Positions in ``classes_`` of ``class_order_``: ``p[:, this]`` reorders
        ``predict_proba``'s columns into the model's order, lowest class first."""
        return pd.Index(self.classes_).get_indexer(self.class_order_)

    def _class_probabilities(self, eta, var, X=None):
        """Class probabilities at linear predictors with mean ``eta`` and variance ``var``
        (averaged over a normal); ``X``: the rows, for their scale (with ``scale``)."""
        fam = self.fit_result_.family
        if np.all(var == 0):
            return fam.class_probabilities(eta, self._row_values(X))
        sd = np.sqrt(var)
        # the family's rule for means over a normal: Gauss-Hermite for small SDs, the
        # trapezoidal rule on the link scale for large ones (a fixed rule errs by 1e-2
        # in a probability at SD 9)
        z, w = normal_rule(float(sd.max()))
        extra = self._row_values(X, column=True)
        out = np.empty((len(eta), len(self.classes_)))
        # rows at once; with scale effects (per-row values in ``extra``) all in one pass
        step = max(1, _NODE_CELLS // (len(z) * len(self.classes_)))
        if getattr(self, "_scale_design", None) is not None:
            step = max(1, len(eta))
        for i in range(0, len(eta), step):
            rows = slice(i, i + step)
            nodes = eta[rows, None] + sd[rows, None] * z[None, :]
            out[rows] = np.einsum("nzk,z->nk", fam.class_probabilities(nodes, extra), w)
        return out

    def _row_values(self, X, column=False):
        """The family's values for the rows of ``X``; without scale effects the fitted
        thresholds serve any rows."""
        if getattr(self, "_scale_design", None) is None:
            return self.fit_result_.extra
        if X is None:
            raise ValueError("the rows' predictors X are needed for their scale (scale=...).")
        return self._family_values(X, column=column)

    def predict(self, X, groups=None, *, offset=None):
        """The most probable class."""
        p = self.predict_proba(X, groups, offset=offset)
        return self.classes_[np.argmax(p, axis=1)]

    def predict_mean(self, X, groups=None, *, offset=None, population="marginal"):
        """Expected class index ``E[Y] = sum_k k P(Y = class_order_[k])`` (the classes
        indexed 0, 1, ... from the lowest, as in ``class_order_``)."""
        p = self.predict_proba(X, groups, offset=offset, population=population)
        p = np.asarray(p)[:, self._ordinal_columns()]
        return p @ np.arange(p.shape[1], dtype=float)

    def score(self, X, y, groups=None, sample_weight=None, *, offset=None):
        """Accuracy of ``predict``; known ``groups`` are predicted conditionally."""
        check_rows_aligned(X, {"y": y, "sample_weight": sample_weight})
        y = check_y_finite(y, _n_rows(X))
        w = None if sample_weight is None else check_weights(sample_weight, len(y))
        return accuracy_score(y, self.predict(X, groups, offset=offset), sample_weight=w)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def _encode_outcome(self, y) -> np.ndarray:
        """Indices of labels ``y`` in ``class_order_`` (for the scorers)."""
        check_is_fitted(self, "coef_")
        y = np.asarray(y)
        idx = pd.Index(self.class_order_).get_indexer(y)
        if np.any(idx < 0):
            bad = sorted({str(v) for v in y[idx < 0]})[:5]
            raise ValueError(
                f"y has {int(np.sum(idx < 0))} value(s) that are not classes seen in fit "
                f"({list(self.classes_)}): {bad}."
            )
        return idx.astype(float)

    # -- on the training rows -----------------------------------------------------
    def _train_probabilities(self):
        check_is_fitted(self, "coef_")
        res = self.fit_result_
        return res.family.class_probabilities(res.train["eta"], res.family_values())

    def fitted(self):
        """Expected class index ``E[Y]`` on the training rows (random effects at their
        modes); ``predict_proba(X, groups)`` gives the class probabilities."""
        p = self._train_probabilities()
        return p @ np.arange(p.shape[1], dtype=float)

    def residuals(self, type="response"):
        """Residuals of the class index on the training rows, conditional on the modes.

        ``"response"``: ``y - E[Y]`` with classes indexed 0, 1, ...; ``"pearson"``:
        divided by the standard deviation of the index; ``"deviance"``:
        ``sign(y - E[Y]) sqrt(-2 log p(y))``. With ``sample_weight``, the Pearson and
        deviance residuals carry ``sqrt(w)``, as the other estimators'.
        """
        p = self._train_probabilities()
        res = self.fit_result_
        y = res.train["y"]
        w = np.sqrt(res.train["w"])
        mean = p @ np.arange(p.shape[1], dtype=float)
        if type == "response":
            return y - mean
        if type == "pearson":
            var = res.family.variance_eta(res.train["eta"], None, res.family_values())
            return w * (y - mean) / np.sqrt(var)
        if type == "deviance":
            py = np.clip(p[np.arange(len(y)), y.astype(np.intp)], 1e-300, 1.0)
            return w * np.sign(y - mean) * np.sqrt(-2.0 * np.log(py))
        raise ValueError(f"type must be 'response', 'pearson' or 'deviance', got {type!r}.")

    def simulate(self, n_sim=1, random_state=None, *, new_random_effects=True):
        """Class indices simulated for the training rows, shape (n_samples, n_sim).

        ``new_random_effects=True`` draws new random effects (clmm's population
        view); ``False`` keeps the conditional modes. ``class_order_[k]`` (the
        ``k``-th class from the lowest) is the label of index ``k``.
        """
        from ._simulate import simulate_response

        check_is_fitted(self, "coef_")
        return simulate_response(self, n_sim, random_state, new_random_effects)

    # -- tools of the other estimators that do not describe an ordinal outcome ----------
    def _not_for_ordinal(self, what, instead):
        raise NotImplementedError(f"{what} is not available for OrdinalGLMM: {instead}")

    def predict_interval(self, X, groups=None, **kwargs):
        """Not available: the class probabilities depend on the thresholds as well as on
        the fixed effects; use ``predict_proba`` (and ``confint`` for the parameters)."""
        self._not_for_ordinal(
            "predict_interval",
            "use predict_proba for the class probabilities, and confint "
            "(e.g. method='bootstrap') for the parameters.",
        )

    def marginal_means(self, X, **kwargs):
        """Not available; ``predict_proba(X)`` without groups gives the population-averaged
        class probabilities."""
        self._not_for_ordinal(
            "marginal_means",
            "predict_proba(X) without groups gives the population-averaged "
            "class probabilities, with groups the conditional ones.",
        )

    def contrast(self, X1, X0, **kwargs):
        """Not available; compare ``predict_proba`` of the two designs."""
        self._not_for_ordinal(
            "contrast",
            "compare predict_proba(X1) and predict_proba(X0), or read the "
            "coefficients as cumulative odds ratios (confint(exponentiate=True)).",
        )

    def overdispersion(self):
        """Not available: an ordinal outcome has no variance beyond its class probabilities."""
        self._not_for_ordinal(
            "overdispersion",
            "the class probabilities determine the whole distribution; check "
            "the model with the uniformity of scaled_residuals() or "
            "plotting.plot_category_proportions.",
        )

    def report(self, **kwargs):
        """A results paragraph: cumulative odds ratios, random-effect SDs, thresholds.

        Keyword arguments ``level``, ``method``, ``outcome``, ``compare``, ``digits`` as
        :func:`sklearn_glmm._ordinal_report.ordinal_report` describes them.
        """
        from ._ordinal_report import ordinal_report

        return ordinal_report(self, **kwargs)

    def summary(self):
        """A clmm-like summary: random effects, coefficients, threshold coefficients."""
        from ._ordinal_summary import OrdinalSummary

        check_is_fitted(self, "coef_")
        return OrdinalSummary(self)


def class_scores(proba) -> np.ndarray:
    """scikit-learn's ``decision_function`` from class probabilities (columns in
    ``classes_`` order): their logs, or for two classes ``log(p1 / p0)``; NaN rows
    (a formula model's incomplete rows) stay NaN."""
    logp = np.log(np.maximum(np.asarray(proba, dtype=float), _TINY))
    if logp.shape[1] == 2:
        return logp[:, 1] - logp[:, 0]
    return logp


_TINY = np.finfo(float).tiny


def _scale_only_frame(X, only) -> pd.DataFrame:
    """``X`` as a DataFrame holding the columns ``only`` (``scale_only_columns``)."""
    frame = as_pandas(X)
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(
            "scale_only_columns names columns of X, so X must be a DataFrame (got "
            f"{type(X).__name__})."
        )
    missing = [c for c in only if c not in frame.columns]
    if missing:
        raise ValueError(
            f"scale_only_columns {missing} are not columns of X; available: "
            f"{list(map(str, frame.columns))}."
        )
    return frame


def _centred(X) -> np.ndarray:
    """Columns of ``X`` centred and scaled to unit standard deviation, for the rank check
    with a constant: the check then does not depend on where a column's zero is (on the
    raw ``[1, X]`` a column of SD 1 shifted by 3e7 is within the relative tolerance of a
    constant). A column whose spread is rounding-level against its size (a constant
    whose mean is off by an ulp) is zero."""
    Xc = X - X.mean(axis=0)
    spread = np.sqrt(np.mean(Xc * Xc, axis=0))
    size = np.max(np.abs(X), axis=0)
    live = spread > _ROUNDING_SPREAD * size
    Xc[:, ~live] = 0.0
    Xc[:, live] /= spread[live]
    return Xc


# a column's standard deviation at most this share of its largest magnitude is rounding
# (about a thousand units in the last place of float64)
_ROUNDING_SPREAD = 1e3 * np.finfo(float).eps


def _without_unweighted_classes(class_order, classes, codes, w):
    """``(class_order, classes, codes)`` without the classes whose rows all have weight 0,
    as ``ordinal::clm`` drops them (the levels of ``y[weights > 0]``): the thresholds next
    to a class without observations are not identified. Their rows (of weight 0, outside
    the likelihood) take the code of the class below them (above, for the lowest)."""
    weight = np.bincount(codes, weights=w, minlength=len(class_order))
    kept = weight > 0
    if kept.all():
        return class_order, classes, codes
    warn(
        f"classes {class_order[~kept].tolist()} of y occur only in rows of sample_weight 0 "
        "and are dropped (as clm drops them): a threshold next to a class without "
        "observations is not identified.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    new = np.cumsum(kept) - 1  # each class's code among the kept ones
    below = np.maximum(new, 0)  # (a dropped class: the kept one below it, or the lowest)
    order = class_order[kept]
    return order, _unique(order), below[codes]


def _drop_constant_columns(X, names):
    """``X`` with columns aliased with a constant set to 0 (then dropped as aliased).

    The thresholds are the model's intercepts, so a constant column (or one that is
    constant up to other columns) is not identified. The caller's array is not
    modified.
    """
    if X.shape[1] == 0 or X.shape[0] == 0:
        return X
    # (centred columns: one aliased with the constant is zero, or a combination of others)
    const = aliased_columns(_centred(X))
    if not const:
        return X
    warn(
        f"column(s) {[names[k] for k in const]} of X are constant (alone or with other "
        "columns, as a full set of dummy columns): an ordinal model has no intercept (the "
        "thresholds play its role), so their coefficients are not identified and they are "
        "dropped. Remove them from X.",
        RankDeficiencyWarning,
        stacklevel=user_stacklevel(),
    )
    X = X.copy()
    X[:, const] = 0.0
    return X
