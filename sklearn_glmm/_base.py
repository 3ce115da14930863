"""The estimator shared by every family: its parameters, fit, predictions, pickles.

Its inputs' validation (:mod:`._estimator_inputs`), the linear predictor and means of new
data (:mod:`._estimator_predict`) and the methods that hand over to the tools
(:mod:`._estimator_tools`) are mixins it inherits."""

from __future__ import annotations

import copy
import functools
import inspect

import numpy as np
import pandas as pd
from sklearn import get_config
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import column_or_1d

from . import _dispersion as _disp
from . import _random_only, _results, _scaling, _state, _tables
from . import _zero_inflation as _zi
from ._design import (
    build_factors,
    check_aliased_factors,
    check_slope_variables,
    has_level_slopes,
    slope_spread,
)
from ._engine.blas import single_threaded_blas
from ._engine.blocks import rows_of
from ._engine.compiled_objective import make_objective
from ._engine.families import make_family
from ._engine.families.base import pmf_rule
from ._engine.fit_checked import fit_checked
from ._engine.groups import used_rows
from ._engine.normal_average import log_mean_density
from ._engine.objective import GLMObjective, ModelData, make_factor_data
from ._engine.quadrature_vector import check_quadrature_structure
from ._engine.start import parameter_bounds, starting_point
from ._estimator_inputs import _Inputs
from ._estimator_predict import _Predictions
from ._estimator_tools import _FitTools
from ._frames import as_pandas
from ._group_columns import factor_names
from ._labels import check_distinct_labels
from ._validation import (
    as_float_vector,
    check_offset_scale,
    check_weights,
    check_y_finite,
)
from ._validation_rows import (
    check_group_names,
    check_groups_look_like_groups,
    check_groups_not_in_X,
    check_outcome_not_in_X,
    check_rows_aligned,
)
from ._warn import at_user_line, user_stacklevel, warn
from .exceptions import NoRandomEffectsWarning

# the largest linear predictor of a count's predictive distribution (a mean of 1e300)
_ETA_TOP = float(np.log(1e300))


def _no_groups_message() -> str:
    msg = (
        "fit was called without groups: fitting a GLM without random effects. Pass "
        "groups=... or name the grouping column(s) of a DataFrame X with group_columns=... "
        "to fit the mixed model."
    )
    if not get_config()["enable_metadata_routing"]:
        msg += (
            " Inside Pipeline, cross_validate or GridSearchCV, groups reach fit only through "
            "metadata routing, which is off: call sklearn.set_config(enable_metadata_routing=True)"
            " and est.set_fit_request(groups=True), or use group_columns."
        )
    return msg


def _groups_required_message(est) -> str:
    routing = get_config()["enable_metadata_routing"]
    if est.random_effects is not None:
        why = f"random_effects={est.random_effects!r} asks for a mixed model"
    else:
        why = "the estimator requested groups (set_fit_request(groups=True))"
    msg = (
        f"{why} but fit received no groups. Pass groups=... to fit, or name the grouping "
        "column(s) of a DataFrame X with group_columns=.... Inside Pipeline, cross_validate or "
        "GridSearchCV, groups reach fit only through metadata routing"
    )
    if not routing:
        msg += (
            ", which is off: call sklearn.set_config(enable_metadata_routing=True) and "
            "est.set_fit_request(groups=True), or use group_columns."
        )
    else:
        msg += (
            ": request them with est.set_fit_request(groups=True) and pass groups to the "
            "meta-estimator's fit (or params={'groups': ...} for cross_validate)."
        )
    return msg + " Leave random_effects unset (None) to fit a GLM without random effects."


def _groups_by_keyword(method):
    """``fit`` or ``score`` warning where a third positional argument is given: it is
    read as ``groups``, where scikit-learn's estimators read ``sample_weight``
    (``score(X, y, w)`` conditioned rows on the groups whose labels equal their
    weights, and scored unweighted, silently). The signature is ``method``'s
    (scikit-learn's metadata routing reads it)."""

    @functools.wraps(method)
    def checked(self, X, y=None, *args, **kwargs):
        if args and args[0] is not None:
            warn(
                f"{type(self).__name__}.{method.__name__}: the third positional argument is "
                "read as groups (the grouping factor), where scikit-learn's estimators read "
                "sample_weight. Pass groups=... by keyword (or sample_weight=... for weights).",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        return method(self, X, y, *args, **kwargs)

    checked.__groups_checked__ = True
    return checked


class _BaseGLMM(_Inputs, _Predictions, _FitTools, BaseEstimator):
    """Generalized linear mixed model fitted by maximum likelihood (see subclasses)."""

    _family_name = "binomial"

    # result tables, made from the fit's arrays when first read
    fixed_effects_ = _tables.fitted_table(_tables.fixed_effects)
    random_effects_cov_ = _tables.fitted_table(_tables.random_effects_cov)
    ranef_ = _tables.fitted_table(_tables.ranef)
    zero_inflation_effects_ = _tables.fitted_table(_tables.block_effects("zero_inflation_effects_"))
    dispersion_effects_ = _tables.fitted_table(_tables.block_effects("dispersion_effects_"))

    # -- pickles and copies -----------------------------------------------------
    def __getstate__(self):
        # a copy: BaseEstimator's state may be the instance __dict__ itself
        return _state.pickled_state(self, dict(super().__getstate__()))

    def __setstate__(self, state):
        if "fit_result_" not in state and _state.fitted_before_result(state):
            # nothing of such a fit is readable here: say so at load, not at first use
            raise ValueError(
                f"this {type(self).__name__} was pickled by an earlier version of sklearn_glmm, "
                "which stored its fit in a form this version does not read; fit the model "
                "again with this version and pickle it anew."
            )
        super().__setstate__(state)

    def __copy__(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        # a copy in memory keeps the training data, whatever keep_data says
        new = object.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        return new

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # made dense (see _validation.densify)
        return tags

    # -- input handling -------------------------------------------------------
    def _family(self):
        return make_family(
            self._family_name,
            getattr(self, "zero_inflation", False),
            hurdle=getattr(self, "hurdle", False),
            truncated=getattr(self, "truncated", False),
        )

    def _check_params(self):
        """scikit-learn's parameter validation (``_parameter_constraints``), then what it allows
        but the model does not: ``True``/``False`` for the integer parameters.

        Parameter sets already found valid for this class are remembered (by type and
        value, for plain values only): refits in cross-validation, bootstrap and power
        loops then skip the validation, a tenth of a small fit.
        """
        key = _valid_params_key(self)
        if key is not None and key in _VALID_PARAMS:
            return
        self._validate_params()
        for name in ("n_agq", "max_iter", "max_count"):
            value = getattr(self, name, None)
            if isinstance(value, (bool, np.bool_)):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be an int, "
                    f"got {value!r} (a bool)."
                )
        if key is not None:
            if len(_VALID_PARAMS) > 256:
                _VALID_PARAMS.clear()
            _VALID_PARAMS.add(key)

    def __init_subclass__(cls, **kwargs):
        # every class's own fit and score (or a mixin's) whose third parameter is groups
        super().__init_subclass__(**kwargs)
        for name in ("fit", "score"):
            method = getattr(cls, name, None)
            if method is None or getattr(method, "__groups_checked__", False):
                continue
            params = list(inspect.signature(method).parameters)
            if params[3:4] == ["groups"]:  # (self, X, y, groups, ...)
                setattr(cls, name, _groups_by_keyword(method))

    # -- fit --------------------------------------------------------------------
    @_groups_by_keyword
    def fit(self, X, y, groups=None, *, sample_weight=None, offset=None, **fit_params):
        """Fit the model by maximum likelihood (Laplace or adaptive Gauss-Hermite).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Fixed-effect predictors (no intercept column; see ``fit_intercept``).
            With ``groups``, X may have no columns (the null model
            ``y ~ 1 + (1 | id)``). A DataFrame's column names must be unique.
        y : array-like of shape (n_samples,)
            Outcome.
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Grouping factor(s). A DataFrame names its factors by its columns.
            ``None`` fits the model without random effects (with a
            ``NoRandomEffectsWarning``) when ``random_effects`` is left at None;
            with ``random_effects`` set, or after ``set_fit_request(groups=True)``,
            it raises ``ValueError``.
        sample_weight : array-like of shape (n_samples,), default=None
            Prior weights multiplying each row's log-likelihood.
        offset : array-like of shape (n_samples,), default=None
            Known term added to the linear predictor (e.g. ``log(exposure)``).

        Returns
        -------
        self : object

        Notes
        -----
        Dask collections partitioned by group (``X`` a Dask DataFrame or array) are
        fitted on their cluster without gathering the rows:
        :func:`sklearn_glmm.dask.fit_partitioned`.
        """
        if type(X).__module__.split(".")[0] == "dask":  # without importing Dask
            from .dask import fit_partitioned

            return fit_partitioned(
                self, X, y, groups, sample_weight=sample_weight, offset=offset, **fit_params
            )
        # a fit that raises leaves the estimator as it was: the inputs are read (new
        # classes_, pos_label_, feature names) before a later check can refuse them, and
        # a previous fit's coefficients would then predict under the new labels
        before = dict(self.__dict__)
        try:
            return self._fit(X, y, groups, sample_weight, offset, fit_params)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _fit(self, X, y, groups, sample_weight, offset, fit_params):
        self._check_params()
        # other libraries' series (polars, pyarrow, ...) as pandas: their names are kept
        y, groups = as_pandas(y), as_pandas(groups)
        sample_weight, offset = as_pandas(sample_weight), as_pandas(offset)
        X_raw, y_raw, groups, w, off = self._fit_inputs(X, y, groups, sample_weight, offset)
        if fit_params.get("trials") is not None:
            check_rows_aligned(X, {"trials": fit_params["trials"]})
        yv, trials = self._prepare_y(y_raw, X_raw.shape[0], **fit_params)
        if trials is not None and np.any(trials == 0):
            # a row of 0 trials has no likelihood: it counts as a row of weight 0 (not
            # among the observations, their residual df, BIC or the diagnostics)
            w = np.where(trials > 0, w, 0.0)
            if not np.any(w > 0):
                raise ValueError(
                    "every row has trials = 0 or sample_weight = 0: no row carries a "
                    "likelihood. Give rows with at least one trial."
                )
        in_place = np.may_share_memory(yv, y_raw)
        if in_place:  # the caller's array, read in place: never written
            yv = yv.view()
            yv.flags.writeable = False
        data, factors = self._model_data(X_raw, yv, trials, w, off, groups)
        pending = self.__dict__.pop("_pending_result")  # how the design was made
        obj = make_objective(data, self.n_agq) if factors else GLMObjective(data)

        # optimisation (one BLAS thread throughout: many small products)
        with single_threaded_blas():
            x0 = starting_point(obj)
            bounds = parameter_bounds(data)
            x, record = fit_checked(obj, x0, bounds, self.max_iter, self.tol)
        if hasattr(obj, "release_predictor"):  # the optimiser is done with it
            obj.release_predictor()

        # the result (fit_result_), the fitted attributes (unscaled), checks and warnings
        _results.set_fitted_attributes(self, obj, x, record, data, factors, bounds, pending)
        self._learn_support(yv, self.fit_result_.train["eta"], data.weights)
        if hasattr(obj, "release_state"):  # the fitted model keeps the data, not the state
            obj.release_state()
        if in_place:
            # the fit read the caller's outcome in place (no copy of the rows' size while
            # it ran); the model keeps its own, which later changes to the caller's array
            # (a simulation reusing it, say) do not reach: profiles, refits and residuals
            # read it
            data.own_outcome()
            self.fit_result_.train["y"] = data.y
        return self

    def _fit_inputs(self, X, y, groups, sample_weight, offset):
        """Validated ``X`` (float array), ``y``, grouping factors, weights and offset."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        self._y_name = str(y.name) if getattr(y, "name", None) is not None else "y"
        check_outcome_not_in_X(X, y)
        y_arr = np.asarray(y)
        if y_arr.ndim == 2:
            with at_user_line():  # DataConversionWarning, as scikit-learn estimators
                y_arr = column_or_1d(y, warn=True)
        # groups="id" naming a column of a DataFrame X: group_columns="id" for this fit
        self._group_columns_fit = None
        if isinstance(groups, str) and self.group_columns is None:
            if not (isinstance(X, pd.DataFrame) and groups in X.columns):
                raise ValueError(f"groups={groups!r} names no column of X (a DataFrame).")
            self._group_columns_fit, groups = [groups], None
        check_group_names(groups)
        check_groups_look_like_groups(groups, X, y)
        others = {"y": y, "groups": groups, "sample_weight": sample_weight, "offset": offset}
        check_rows_aligned(X, others)
        check_groups_not_in_X(X, groups)
        _check_formula_intercept(self, X)
        X_raw, groups_from_X = self._validate_X(X, reset=True, with_groups=groups is not None)
        if groups_from_X is not None:
            if groups is not None:
                raise ValueError("Pass either groups or group_columns, not both.")
            groups = groups_from_X
        n = X_raw.shape[0]
        y_raw = check_y_finite(y_arr, n)
        w = check_weights(sample_weight, n)
        off = as_float_vector(offset, "offset", n, default=0.0)
        check_offset_scale(off)
        self._fit_offset = bool(np.any(off != 0.0))
        self._fixed_names = self._feature_names(X_raw.shape[1])
        return X_raw, y_raw, groups, w, off

    def _model_data(self, X_raw, yv, trials, w, off, groups):
        """The internal (scaled) model: fixed-effect design and random-effect factors.

        1. the fixed-effect design is scaled internally, aliased columns dropped;
        2. the grouping factors and their Z columns (also scaled) are built.

        How the design was made (the scaling, the Z maps, the factors' names and the
        designs of the family's blocks) is left in ``_pending_result``, which ``fit``
        hands to the result.
        """
        zi_term, zi_what = self._zero_part_term()
        disp_term = _disp.dispersion_term(getattr(self, "dispersion", None))
        family = self._family()
        family.check_outcome(yv, w)
        names = self._fixed_names
        curvature = family.mean_curvature(yv, trials, w)
        # without an intercept a family whose blocks absorb a shift of eta (an ordinal
        # model's thresholds) still has its design centred: a column far from zero is
        # otherwise nearly collinear with those blocks
        shift = None if self.fit_intercept else family.eta_shift()
        Xd, scaling = _scaling.scale_design(
            X_raw[:, : len(names)],
            names,
            self.fit_intercept,
            curvature,
            shift is not None,
            decorrelate=True,
        )
        # the rows that carry the likelihood, where some do not (what the slopes'
        # spreads read), and per factor whether a slope variable is the level's own
        used, level_slopes = used_rows(w), []
        if groups is None:
            if self._groups_requested():
                raise ValueError(_groups_required_message(self))
            warn(_no_groups_message(), NoRandomEffectsWarning, stacklevel=user_stacklevel())
            factors = []
        else:
            terms = "1" if self.random_effects is None else self.random_effects
            re_names = _random_only.names(self, names)  # X_raw: fixed, then random-only
            factors = build_factors(groups, terms, re_names, X_raw.shape[0], X_raw)
            for f in factors:
                check_distinct_labels(f.name, f.levels)
                spread = slope_spread(f, X_raw, used)
                check_slope_variables(f, spread)
                level_slopes.append(has_level_slopes(spread))
        factor_order = factor_names(groups) if groups is not None else []
        structured = [f.structure.name for f in factors if not _identity(f.structure)]
        if self.n_agq > 1 and structured:
            raise ValueError(
                f"n_agq={self.n_agq} (adaptive Gauss-Hermite quadrature) is not available with "
                f"the covariance structure {structured[0]!r}; use n_agq=1 (Laplace)."
            )
        check_quadrature_structure(self.n_agq, [f.q for f in factors])
        z_maps, z_internal = [], []
        # (the Laplace approximation is the same in any basis: weighted only for AGQ)
        row_w = _centring_weights(w, trials) if self.n_agq > 1 else None
        for f in factors:
            view = _scaling.design_view(f, scaling, Xd) if row_w is None else None
            T, Z = view or _internal_z(f, X_raw, row_w)
            z_maps.append(T)
            z_internal.append(Z)
        fdata = make_factor_data(
            [f.codes for f in factors],
            z_internal,
            [f.n_levels for f in factors],
            [(f.theta_rows, f.theta_cols) for f in factors],
            [f.structure for f in factors],
            used,
            level_slopes,
        )
        pending = dict(scaling=scaling, z_maps=tuple(z_maps), factor_order=factor_order)
        designs = self._block_designs_of(  # (they may read the random-only columns too)
            family, (zi_term, zi_what), disp_term, X_raw, _random_only.names(self, names), pending
        )
        if shift is not None:
            scaling["extra_shift"] = _scaling.coefficient_shift(shift, designs)
        self._pending_result = pending
        data = ModelData(Xd, yv, trials, w, off, family, fdata, designs)
        check_aliased_factors(factors, data.aliased)
        return data, factors

    def _zero_part_term(self):
        """The zero part's term and the parameter that gave it: ``zero_inflation``'s, or
        a hurdle's (``hurdle="1 + x"``: glmmTMB's ``truncated_*`` family with
        ``ziformula = ~ x``; ``hurdle=True`` is the constant)."""
        hurdle = getattr(self, "hurdle", False)
        if isinstance(hurdle, str):
            return _zi.zero_inflation_term(hurdle, what="hurdle"), "hurdle"
        return _zi.zero_inflation_term(getattr(self, "zero_inflation", None)), "zero_inflation"

    def _block_designs_of(self, family, zi_part, disp_term, X_raw, names, pending):
        """The designs of the family's blocks with their own predictors (the
        zero-inflation and dispersion models), put in ``pending``: ``zi_design``,
        ``disp_design`` and ``block_designs`` (one design or None per block; None when
        every block is a scalar). Returns the internal matrices the engine gets."""
        zi_term, zi_what = zi_part
        zi_design = None if zi_term is None else _zi.make_design(zi_term, X_raw, names, zi_what)
        disp_design = None
        if disp_term is not None:
            if not any(b.prefix == "disp" for b in family.blocks):
                raise ValueError(
                    f"dispersion={self.dispersion!r}: the {family.r_name} family has no "
                    "dispersion parameter to model; a dispersion model needs "
                    "NegBinGLMM or BinomialGLMM(family='betabinomial')."
                )
            if not family.per_row_blocks:
                raise NotImplementedError(
                    f"dispersion={self.dispersion!r}: a dispersion model is not available for "
                    f"the {family.sentence_name()}; use a constant dispersion (dispersion=None)."
                )
            disp_design = _disp.dispersion_design(disp_term, X_raw, names)
        by_prefix = {"zi": zi_design, "disp": disp_design}
        per_block = tuple(by_prefix.get(b.prefix) for b in family.blocks)
        pending.update(zi_design=zi_design, disp_design=disp_design, block_designs=None)
        if all(d is None for d in per_block):
            return None
        pending["block_designs"] = per_block
        return tuple(None if d is None else d.internal(X_raw) for d in per_block)

    def _prepare_y(self, y, n, **fit_params):
        raise NotImplementedError

    def _learn_support(self, y, eta, weights):
        """Fitted attributes that depend on the outcome's support (count models)."""

    def _count_proba(self, X, groups, offset, max_count, population):
        """P(Y = k) for k < K and P(Y >= K) in the last column, K = ``max_count``."""
        eta, var = self._linear_predictor(X, groups, offset, population)
        fam, extra = self.fit_result_.family, self._family_values(X, column=True)
        K = max_count
        ks = np.arange(K)[None, :]

        def table(eta):
            # linear predictors overflowing the mean put all the mass in the tail column
            eta = _predictive_eta(eta)[:, None]
            out = np.empty((len(eta), K + 1))
            out[:, :K] = fam.pmf_eta(ks, eta, extra)
            tail = 1.0 - fam.cdf_eta(np.full((1, 1), K - 1.0), eta, np.ones((1, 1)), extra)
            out[:, K] = np.clip(tail[:, 0], 0.0, 1.0) if K > 0 else 1.0
            return out

        if np.all(var == 0):
            return table(eta)
        adaptive = _class_probabilities(fam, eta, np.sqrt(var), K, self._family_values(X))
        if adaptive is not None:
            return adaptive
        # families whose probabilities are not log-concave (NB1, beta-binomial): one
        # rule for every count, as fine as the largest asks
        out = np.zeros((len(eta), K + 1))
        for z, wt in zip(*pmf_rule(fam, float(np.sqrt(np.max(var))), K, 1.0)):
            out += wt * table(eta + np.sqrt(var) * z)
        return out


def _predictive_eta(eta):
    """Linear predictors of a count's predictive distribution: those overflowing the
    mean (and NaN) at the top, which puts all the mass in the tail column."""
    return np.minimum(np.nan_to_num(eta, nan=np.inf), _ETA_TOP)


def _class_probabilities(fam, eta, sd, K, extra):
    """P(Y = k) for k < K, each averaged over its row's normal linear predictor by its
    own rule (:mod:`~sklearn_glmm._engine.normal_average`), and P(Y >= K) as 1 minus
    their sum; None for a family without a log-concave split."""
    n = len(eta)
    rows = np.repeat(np.arange(n), K)
    eta = _predictive_eta(eta)
    log_p = log_mean_density(
        fam,
        np.tile(np.arange(K, dtype=float), n),
        eta[rows],
        sd[rows],
        np.ones(n * K),
        rows_of(extra, rows),
    )
    if log_p is None:
        return None
    out = np.empty((n, K + 1))
    out[:, :K] = np.exp(log_p).reshape(n, K)
    out[:, K] = np.clip(1.0 - out[:, :K].sum(axis=1), 0.0, 1.0)
    return out


# a design frame's ``attrs`` key: whether the formula that made it (FormulaTransformer)
# keeps the intercept, which the estimator's fit_intercept must follow
FORMULA_INTERCEPT = "sklearn_glmm_formula_intercept"


def _check_formula_intercept(est, X) -> None:
    """Raise where ``X`` is a :class:`~sklearn_glmm.formula.FormulaTransformer`'s output
    whose formula has no intercept (``- 1``, ``0 +``) and the estimator fits one: the
    pipeline would fit another model than the formula's, silently."""
    attrs = getattr(X, "attrs", None)
    if not isinstance(attrs, dict) or attrs.get(FORMULA_INTERCEPT) is not False:
        return
    if getattr(est, "fit_intercept", False):
        raise ValueError(
            "X comes from a FormulaTransformer whose formula has no intercept ('- 1' or "
            f"'0 +'), but {type(est).__name__} has fit_intercept=True and would add one (a "
            "model other than the formula's). Set fit_intercept=False on the estimator, e.g. "
            f"{type(est).__name__}(fit_intercept=False), or keep the intercept in the formula."
        )


def _internal_z(factor, X_raw, row_weights=None):
    """``(T, Z T)``: the factor's internal Z columns made from the raw predictors."""
    T = _scaling.z_transform(factor, X_raw, row_weights)
    return T, factor.z_matrix(X_raw) @ T


def _centring_weights(w, trials):
    """The rows' weights in the random effects' centring (``z_transform``): prior
    weights times binomial trials, or None where they are all equal (every row counts
    the same; the design's own centring is then the random effects' too)."""
    row_w = np.asarray(w, dtype=float)
    if trials is not None:
        row_w = row_w * np.asarray(trials, dtype=float)
    if not len(row_w) or np.all(row_w == row_w[0]):
        return None
    return row_w


def _identity(structure) -> bool:
    """An unstructured or diagonal factor (no structure object, or an identity one)."""
    return structure is None or getattr(structure, "identity", False)


# parameter sets already validated, per class (see ``_BaseGLMM._check_params``)
_VALID_PARAMS: set = set()
_PARAM_NAMES: dict = {}
_PLAIN = (str, int, float, bool, type(None))


def _plain(value):
    """``(type, value)`` of a plain parameter value (a dict of plain values as a sorted
    tuple), or None for anything else (arrays, estimators, callables)."""
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if isinstance(value, dict):
        items = [(_plain(k), _plain(v)) for k, v in value.items()]
        if all(a is not None and b is not None for a, b in items):
            return (dict, tuple(sorted(items, key=repr)))
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        if all(v is not None for v in items):
            return (type(value), tuple(items))
    return None


def _valid_params_key(est):
    """A hashable key of ``est``'s class and parameter values, or None when a value is
    not plain (then it is validated every time)."""
    cls = type(est)
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = tuple(cls._get_param_names())
    parts = []
    for name in names:
        v = _plain(getattr(est, name, None))
        if v is None and getattr(est, name, None) is not None:
            return None
        parts.append(v)
    return (cls, tuple(parts))
