"""From the optimum on the internal scale to the fitted attributes users read.

The optimiser works on a centred and scaled fixed-effect design and on Z
columns divided by their standard deviation; both are linear maps, so the
likelihood is unchanged and estimates map back exactly (the scaling is
:mod:`._scaling`'s). The checks each result gets before it is published, with their
warnings, are :mod:`._fit_checks`'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._design import INTERCEPT
from ._engine.curvature import (
    ridge_parameters,
    stopped_blocks,
    without_covariance,
)
from ._engine.objective import lambda_matrices
from ._engine.stage import SINGULAR_TOL
from ._fit_checks import (
    _check_block_ridge,
    _check_convergence,
    _check_group_separation,
    _check_identifiable,
    _check_laplace,
    _check_limit_ridge,
    _check_separation,
    _check_standard_errors,
    _check_threshold_limits,
    _mapped_limit,
    limit_ridge_parameters,
    ridge_end_covariance,
    separation_with_limit,
)
from ._fit_result import (  # noqa: F401 (re-exported: the tools import them from here)
    FactorLayout,
    FitResult,
    ParameterLayout,
    beta_jacobian,
    extra_shift_matrix,
    limit_delta,
    original_lambda,
    parameter_layout,
    sandwich,
    shifted,
    unrotated,
)
from ._tables import FactorArrays, FitArrays, drop_tables
from ._warn import user_stacklevel, warn
from .exceptions import (
    SingularFitWarning,
)


def _ensure_state(obj, x, record):
    """The objective's state at ``x``; re-solved from u = 0 when the last solve failed."""
    if getattr(obj, "state", None) is None or not np.isfinite(record.objective):
        obj.u = np.zeros_like(obj.u)
        obj._last_key = None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            record.objective = float(obj.evaluate(x))
    if getattr(obj, "state", None) is None or not np.isfinite(record.objective):
        raise FloatingPointError(
            "the model could not be evaluated at the optimiser's final point (the Laplace "
            "approximation broke down numerically). Check the data for extreme values, rescale "
            "predictors, or simplify random_effects."
        )


def fitted_eta(state) -> np.ndarray:
    """The fitted linear predictor, the result's own array: a copy of the state's, or
    (large data, where the state makes it when read) made for the result alone, so
    that the state does not hold a second one."""
    if hasattr(state, "fresh"):
        return state.fresh("eta")
    return state["eta"].copy()


def set_fitted_attributes(est, obj, x, record, data, factors, bounds, pending):
    """Build the fit's :class:`FitResult` from the optimum ``x`` (``pending``: how the
    design was made, ``_BaseGLMM._model_data``), keep it as ``est.fit_result_`` and
    set every public fitted attribute of ``est`` from it."""
    _ensure_state(obj, x, record)
    p = data.n_beta
    beta_s = x[:p]
    separation = separation_with_limit(record, x, bounds, data, pending["scaling"], obj)
    ridge_end_covariance(record, x, bounds, data, obj)
    stopped = stopped_blocks(data, np.asarray(x), bounds)
    if record.covariance is not None:
        # (a block stopped at its intercept's bound has no covariance, whatever the
        # ridge's end or a separation's limit model gave the others: ``curvature``)
        without_covariance(record.covariance, stopped)
    parts = fitted_parameters(est, obj, x, record, data, factors, pending)
    # the conditional fit on the training rows, for residuals and diagnostics
    train = dict(eta=fitted_eta(obj.state), y=data.y, trials=data.trials, w=data.weights)
    result = make_result(
        est,
        x,
        record,
        data,
        factors,
        bounds,
        pending,
        parts,
        designs=(pending["block_designs"], pending["zi_design"], pending["disp_design"]),
        # the objective stays with the model: profiles, refits and simulation need it
        # (in memory; pickles carry it only with keep_data=True, see _state)
        training=dict(objective=obj, train=train),
    )
    publish(est, result, record, x, int(np.sum(data.weights > 0)))
    rows, se_all, idx = parts.rows, parts.arrays.std_error, parts.idx
    _check_separation(est, data, beta_s, separation)
    _check_identifiable(est, data)
    _check_group_separation(est, data)
    _check_convergence(est, record)
    _check_laplace(est, obj, x, record, bounds)
    ridge = ridge_parameters(data, np.asarray(x))
    limit = limit_ridge_parameters(record, data)
    record.limit_ridge_moving = tuple(limit)
    _check_standard_errors(est, record, rows, se_all, idx, ridge + limit)
    _check_block_ridge(est, x, record, ridge, stopped)
    _check_limit_ridge(est, record, limit)
    _check_threshold_limits(est, record, stopped)
    est.converged_ = bool(record.converged)


@dataclass
class FittedParameters:
    """The optimum in the user's units: the fixed effects' table arrays, the random
    effects' conditional variances and covariance factors, the family's blocks' SEs."""

    rows: list
    idx: list
    arrays: FitArrays
    condvar: object
    lambdas: object
    block_se: object


def fitted_parameters(est, obj, x, record, data, factors, pending) -> FittedParameters:
    """Map the internal optimum ``x`` back to the user's units; sets ``coef_``,
    ``intercept_``, the singular flag and the family's parameters on ``est`` (shared by
    the in-memory and the partitioned fits)."""
    p, T = data.n_beta, data.n_theta
    theta_s, extra = x[p : p + T], x[p + T :]
    V = record.covariance
    sc = pending["scaling"]
    # fixed_effects_, ranef_, ... are made from these arrays when first read
    limit = getattr(record, "limit_covariance", None)
    arrays, idx = fixed_effect_arrays(sc, est._fixed_names, x[:p], V, limit)
    rows, beta = arrays.terms, arrays.estimate[idx]
    k0 = int(sc["intercept"])
    coef = np.zeros(sc["p"])
    coef[sc["kept"]] = beta[k0:]
    est.coef_ = coef
    est.intercept_ = float(beta[0]) if k0 else 0.0
    condvar, lambdas, singular = _random_effects(obj, theta_s, data, factors, pending, arrays)
    _set_singular(est, singular)
    # the family's blocks in the user's units: an ordinal model's thresholds at X = 0
    C = extra_shift_matrix(sc, p, len(extra))
    xr, Vr = shifted(x, V, C, p, p + T)
    block_se = _set_family_params(est, xr[p + T :], Vr, p + T, data, pending, arrays, limit)
    return FittedParameters(rows, idx, arrays, condvar, lambdas, block_se)


def fixed_effect_arrays(scaling, names, beta_s, V, limit=None) -> tuple[FitArrays, list]:
    """The fixed effects in the user's units from the internal ``beta_s`` and the
    covariance ``V`` of the parameters (the fixed effects first): ``(arrays, idx)``,
    ``arrays`` without factors (NaN rows for aliased columns), ``idx`` the rows of the
    estimated columns. ``limit``: a separated fit's limit model (``FitRecord.
    limit_covariance``), whose variance a coefficient the separation does not move
    gets (:func:`limit_delta`: the intercept of a predictor's other level, centred
    internally, is such a coefficient)."""
    J = beta_jacobian(scaling)
    beta = J @ beta_s
    p = len(beta_s)
    Vb = sandwich(J, V[:p, :p]) if limit is None else _mapped_limit(J, 0, V, limit)
    k0 = int(scaling["intercept"])
    rows = ([INTERCEPT] if k0 else []) + list(names)
    est_all = np.full(len(rows), np.nan)
    se_all = np.full(len(rows), np.nan)
    idx = ([0] if k0 else []) + [k0 + k for k in scaling["kept"]]
    est_all[idx] = beta
    se_all[idx] = _standard_errors(Vb)
    return FitArrays(rows, est_all, se_all, Vb, [rows[i] for i in idx]), idx


def make_result(est, x, record, data, factors, bounds, pending, parts, designs, training):
    """The :class:`FitResult` of a fit; ``designs``: the family's blocks' designs
    ``(block_designs, zi_design, disp_design)``."""
    block_designs, zi_design, disp_design = designs
    return FitResult(
        params=x.copy(),
        layout=parameter_layout(data),
        family=data.family,
        record=record,
        scaling=pending["scaling"],
        z_maps=pending["z_maps"],
        vcov=record.covariance,
        hessian=record.hessian,
        bounds=bounds,
        fixed_names=list(est._fixed_names),
        factors=list(factors),
        factor_order=list(pending["factor_order"]),
        block_designs=block_designs,
        zi_design=zi_design,
        disp_design=disp_design,
        arrays=parts.arrays,
        ranef_condvar=parts.condvar,
        lambdas=parts.lambdas,
        block_se=parts.block_se,
        owner=type(est).__name__,
        training=training,
        n_agq=int(est.n_agq) if factors else None,
    )


def publish(est, result, record, x, n_obs: int) -> None:
    """Keep ``result`` as ``est.fit_result_`` and set the fit's summary attributes
    (log-likelihood, AIC, BIC, residual degrees of freedom, iterations)."""
    drop_tables(est)
    est.fit_result_ = result
    npar = len(x)
    est.loglik_ = float(-0.5 * record.objective)
    est.n_params_ = npar
    est.nobs_ = n_obs
    est.aic_ = -2.0 * est.loglik_ + 2.0 * npar
    est.bic_ = -2.0 * est.loglik_ + np.log(n_obs) * npar
    est.df_resid_ = n_obs - npar
    est.n_iter_ = record.n_iter
    est.fit_record_ = record


def _standard_errors(V) -> np.ndarray:
    """Square roots of the variances; NaN (never 0) where one is not positive."""
    var = np.diag(V)
    with np.errstate(invalid="ignore"):
        return np.where(var > 0, np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def _one_se(V, k) -> float:
    return float(_standard_errors(V[k : k + 1, k : k + 1])[0])


def _random_effects(obj, theta_s, data, factors, pending, arrays):
    """Each factor's covariance and modes in the user's units (added to ``arrays``);
    the conditional covariances and Lambdas by factor, and the terms on a boundary."""
    condvar, lambdas, singular = {}, {}, []
    lams = lambda_matrices(data, theta_s)
    z_maps = pending["z_maps"]
    for fi, (f, T, L, fd) in enumerate(zip(factors, z_maps, lams, data.factors)):
        Lo = original_lambda(T, L)  # b = T Lambda u in the user's units
        S = Lo @ Lo.T
        names = f.term.names
        U = obj.u[fd.offset : fd.offset + fd.n_levels * fd.q].reshape(fd.n_levels, fd.q)
        B = U @ Lo.T
        arrays.factors.append(FactorArrays(f.name, f.levels, names, S, B))
        Ci = obj.conditional_variances(fi)
        if fd.structure is None:
            condvar[f.name] = np.einsum("ij,gjk,lk->gil", Lo, Ci, Lo)
        else:  # large blocks: matrix products, not einsum's O(q^4) loop
            condvar[f.name] = np.matmul(np.matmul(Lo, Ci), Lo.T)
        lambdas[f.name] = Lo
        if fd.structure is not None:
            singular += _structure_singular(f, fd.structure, theta_s, data, fi)
            continue
        singular += [f"{f.name}: {names[k]}" for k in singular_columns(L)]
    return condvar, lambdas, singular


def singular_columns(L) -> list:
    """Columns of an unstructured factor's internal Cholesky factor ``L`` on the boundary.

    The test reads the internal factor, whose columns are centred and scaled: it does
    not depend on the units or origin of the predictors. lme4's test (a Cholesky
    diagonal below 1e-4), plus a diagonal that is negligible against its row: that term
    is perfectly correlated with the earlier ones (|correlation| = 1) whatever its scale.
    """
    diag = np.abs(np.diag(L))
    row_norm = np.linalg.norm(L, axis=1)
    return [k for k in range(len(diag)) if diag[k] < SINGULAR_TOL or diag[k] < 1e-3 * row_norm[k]]


def _set_singular(est, singular):
    est.is_singular_ = bool(singular)
    if singular:
        warn(
            "boundary (singular) fit: the random-effect variance or correlation of "
            f"{', '.join(singular)} is estimated at or next to its boundary (a variance "
            "of zero or within lme4's tolerance of it, 1e-4 on the internal Cholesky "
            "factor, or |correlation| = 1). Consider simplifying random_effects.",
            SingularFitWarning,
            stacklevel=user_stacklevel(),
        )


def _structure_singular(f, structure, theta_s, data, fi) -> list:
    """A structured factor on its boundary: an SD below lme4's tolerance, or a
    correlation parameter on its bound (|correlation| near 1)."""
    k = sum(g.n_params for g in data.factors[:fi])
    p = theta_s[k : k + structure.n_params]
    out = []
    sd = p[: structure.n_sd]
    names = f.term.names if structure.n_sd > 1 else [f.term.time]
    out += [f"{f.name}: sd {nm}" for nm, v in zip(names, sd) if v < SINGULAR_TOL]
    if structure.at_boundary(p):
        out.append(f"{f.name}: {structure.name} correlation")
    return out


def _set_family_params(est, extra, V, start, data, pending, arrays, limit=None):
    """Each of the family's parameter blocks: its reported value, standard error on the
    optimiser's scale and whether it is on its boundary (with the block's warning).

    A block with a design (zero inflation or a dispersion with predictors) has no single
    value: its attribute holds the mean of its reported values over the training rows,
    and its coefficients are tabled (``zero_inflation_effects_``,
    ``dispersion_effects_``); it has no boundary. A scalar block that may have a design
    is tabled too, as its intercept (glmmTMB's ``fixef(m)$zi``, ``fixef(m)$disp``).
    Returns each scalar block's standard error by name. ``limit``: as for
    :func:`fixed_effect_arrays`, for the coefficients of a block with a design.
    """
    from . import exceptions

    block_se = {}
    blocks = data.family.blocks
    # a previous fit's family parameters go (theta_ of an NB2 fit is no estimate of a
    # refit as NB1 or Poisson)
    for name in est.__dict__.pop("_family_attributes", ()):
        est.__dict__.pop(name, None)
    est._family_attributes = [
        name for b in blocks for name in (b.attribute, b.attribute[:-1] + "_at_boundary_")
    ]
    designs = data.extra_designs or (None,) * len(blocks)
    effects = _BlockEffects(pending["block_designs"], blocks, arrays, limit)
    j = 0
    for block, D in zip(blocks, designs):
        if D is not None:
            width = D.shape[1]
            values = block.to_reported(D @ extra[j : j + width])
            used = data.weights > 0
            setattr(est, block.attribute, float(np.mean(values[used])) if used.any() else np.nan)
            setattr(est, block.attribute[:-1] + "_at_boundary_", False)
            block_se[block.name] = np.nan
            effects.add(block, extra[j : j + width], V, start + j, width)
            j += width
            continue
        at_bound = block.is_at_bound(extra[j])
        setattr(est, block.attribute, block.reported_value(extra[j]))
        setattr(est, block.attribute[:-1] + "_at_boundary_", at_bound)
        block_se[block.name] = _one_se(V, start + j)
        if block.effects:
            effects.add(block, extra[j : j + 1], V, start + j, 1, at_bound)
        j += 1
        if at_bound:
            category = getattr(exceptions, block.warning)
            warn(block.at_bound_message, category, stacklevel=user_stacklevel())
    return block_se


class _BlockEffects:
    """Puts the family's coefficient tables' parts in ``arrays.blocks``."""

    def __init__(self, designs, blocks, arrays, limit=None):
        self.designs, self.blocks, self.arrays, self.limit = designs, blocks, arrays, limit

    def add(self, block, coefs, V, k, width, at_bound=False):
        """A block's coefficients on its optimiser's scale (logit for zero inflation, log
        for a dispersion) in the user's units: ``block.effects``, a table made when first
        read. A constant dispersion on its boundary is the boundary's value on that scale
        (log theta = inf), without a standard error; a zero inflation at 0 keeps its
        internal bound."""
        from ._zero_inflation import constant_design

        design = None if self.designs is None else self.designs[self.blocks.index(block)]
        edge = None
        if at_bound and block.prefix == "disp":  # theta = inf, phi = 0: log scale +-inf
            edge = _on_scale(block, block.at_bound_value)
        design = design or constant_design()
        user_V = None  # (the table's own product of the design's map and V)
        if self.limit is not None:
            user_V = _mapped_limit(design.J, k, V, self.limit)
        parts = (design, coefs.copy(), V[k : k + width, k : k + width], edge, user_V)
        self.arrays.blocks[block.effects] = parts


def _on_scale(block, value):
    """A reported value on the block's optimiser scale (log or logit)."""
    with np.errstate(divide="ignore"):
        if block.to_reported is np.exp:
            return float(np.log(value))
        return float(np.log(value) - np.log1p(-value))
