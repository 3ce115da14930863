"""One stage of the outer optimisation: L-BFGS-B on the Laplace objective, scaled by the
Gauss-Newton curvature at its start, with a zero variance it ends on probed and the fit
resumed from a better point (step 2 of :mod:`.optimize`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .hessian import hessian
from .lbfgsb import _run_lbfgsb
from .modes import _PROBE_SCALES
from .objective import Objective


def _optimiser_scale(obj, x0, extras=False):
    """sqrt of the Gauss-Newton curvature of each parameter at the start, or None.

    On ``z = scale * x`` the objective's Hessian is near the identity, so that
    L-BFGS-B's first steps have the right length in every direction.
    """
    # extra parameters (NB theta, zero inflation) have no Gauss-Newton curvature here,
    # and scaling the others around them unbalances the problem: no scaling then, but
    # with ``extras``, where their curvature at the modes scales them (a start near an
    # optimum the unscaled run could not reach, see _settle_flat_extra), or for a family
    # whose own parameters are always scaled so (an ordinal model's thresholds)
    if not isinstance(obj, Objective):
        return None
    extras = extras or getattr(obj.data.family, "scales_own_parameters", False)
    if obj.data.n_extra and not extras:
        return None
    val, _ = obj.value_and_grad(x0)
    if not np.isfinite(val) or not obj.has_mode_derivatives:
        return None
    h = obj.gauss_newton_diagonal()
    if obj.data.n_extra:
        curvature = obj.extra_curvature(x0[len(h) :])
        if curvature is None:  # (not made where the rows are elsewhere)
            return None
        h = np.concatenate([h, curvature])
    return np.sqrt(np.maximum(h, 1e-8 * max(float(np.max(h)), 1.0)))


def _laplace_stage(obj, x0, bounds, max_iter, tol, diag_idx, stop=None, scale_extras=False):
    """L-BFGS-B on the Laplace objective, restarted away from zero variances.

    A Cholesky diagonal of exactly zero is a stationary point of the objective
    (the objective is even in it), so an optimiser that reaches it cannot leave.
    Each one found at zero is moved back into the interior and the fit resumed;
    the better optimum is kept. ``stop`` (see :func:`.ridge._ridge_stop`) may end the
    L-BFGS-B run early; the result says so (``stopped``).
    """
    scale = _optimiser_scale(obj, x0, scale_extras)
    res = _run_lbfgsb(obj.value_and_grad, x0, bounds, max_iter, tol, scale, stop)
    nit = res.nit
    if scale is None and _stuck_at_start(res, x0, bounds):
        # the first step (of unit length) went where the objective is infinite (an
        # ordinal model's thresholds out of order) and the line search gave up: steps
        # scaled by every parameter's curvature, the family's included, go less far
        scale = _optimiser_scale(obj, x0, extras=True)
        if scale is not None:
            res = _run_lbfgsb(obj.value_and_grad, x0, bounds, max_iter, tol, scale, stop)
            nit += res.nit
    if not res.stopped and _predicted_decrease(res, bounds) > RESTART_MIN_DECREASE:
        # A restart clears L-BFGS-B's curvature memory; it moves further when the
        # first run stopped on the ftol test with its own model predicting more.
        res2 = _run_lbfgsb(obj.value_and_grad, res.x, bounds, max_iter, tol, scale, stop)
        nit += res2.nit
        if res2.fun <= res.fun:
            res = res2
    # (a run stopped early is taken further by the caller, which probes there)
    res, nit = _probe_zeros(obj, res, nit, bounds, max_iter, tol, diag_idx, scale)
    res.nit = nit
    res.scale = scale
    return _snap_to_zero(obj, res, diag_idx)


def _probe_zeros(obj, res, nit, bounds, max_iter, tol, diag_idx, scale):
    """Each zero diagonal of ``res`` probed (:func:`_probe_zero_diagonal`) and the run
    resumed from a better point; ``(res, nit)``. A diagonal is probed again after a
    probe of another has moved the fit: where two variances are both at zero (a refit
    from a fit with both small), the one probed first may lower the objective only
    beside the other's (crossed factors, binomial with trials: the first SD probed at
    zero while the second was, the second's probe then moved the fit, and the first
    stayed at zero, 0.11 above the optimum with it at 0.13, with a zero gradient
    there)."""
    probed = {}  # diagonal -> the result it was last probed at
    for _ in range(len(diag_idx) + 1):  # passes; each move lowers the objective
        todo = [k for k in diag_idx if res.x[k] < 1e-3 and not res.stopped]
        todo = [k for k in todo if probed.get(k) is not res]
        if not todo:
            break
        for k in todo:
            probed[k] = res
            best_x = _probe_zero_diagonal(obj, res, k, bounds)
            if best_x is None:
                best_x = _off_rank_one(obj.data, res.x, k)
            if best_x is not None:
                # a value below the grid (data that resolve tiny SDs): the curvature
                # there is far from the start's, and the run is scaled by its own
                sc = _optimiser_scale(obj, best_x) if best_x[k] < _PROBE_GRID[0] else scale
                res3 = _run_lbfgsb(obj.value_and_grad, best_x, bounds, max_iter, tol, sc)
                nit += res3.nit
                if res3.fun < res.fun - 1e-8 and _probed_basin_holds(obj, res3.x, bounds):
                    res = res3
                else:
                    obj.evaluate(res.x)
    return res, nit


def _off_rank_one(data, x, k):
    """Where no probe of the zero diagonal ``k`` improves on zero and entries left of it
    in its row are not all zero (a correlation of +-1: a covariance of lower rank, the
    last effects a combination of the first), ``x`` with that diagonal at
    :data:`_OFF_RANK_ONE` of the largest other diagonal of its factor, for the run that
    follows to re-fit every parameter from (else None). The probes move the diagonal
    alone; the optimum off the boundary can need the others to move with it. A Poisson
    fit of ``(1 + lg | g)`` had stopped at a correlation of -1 with the second diagonal
    at 0, converged (a local minimum on the boundary: the objective rises along that
    diagonal alone, from 0.01 to 0.3), 0.053 of -2 log L above lme4's optimum at a
    correlation of -0.65; runs started with that diagonal at 0.05 to 0.5 reach it."""
    entry = _cholesky_neighbours(data).get(k)
    if entry is None or not np.any(x[entry.left] != 0.0):
        return None
    own = [j for j in entry.diagonals if j != k]
    start = np.array(x, dtype=float)
    start[k] = _OFF_RANK_ONE * max(max((abs(x[j]) for j in own), default=1.0), 1e-3)
    return start


# of the factor's largest other diagonal (internal scale: the SD of a standardised effect)
_OFF_RANK_ONE = 0.3


def _probed_basin_holds(obj, x, bounds) -> bool:
    """Whether a point the optimiser reached from a zero variance's probe is a basin of
    the likelihood: always for a log-concave family; for one that is not (zero
    inflation, hurdle, NB1, beta-binomial), where the Hessian there has no direction of
    clearly negative curvature. The Laplace objective of a zero-inflated model is far too
    high away from the fit where a level's counts are all zero (its conditional density
    nearly flat at the mode): a probe took a ZINB fit there, 5.7 units "higher" at a
    saddle point (unit-diagonal eigenvalue -5.2), its true likelihood 3.5 units lower
    than the fit's at SD 0; a ZIP fit's probe that found the real optimum (2.0 SD, the
    true likelihood 1.3 higher) ends where the Hessian is positive definite."""
    if obj.data.family.log_concave:
        return True
    from .curvature import at_bound  # (curvature builds on this module)

    free = ~at_bound(x, bounds)
    H = hessian(obj, x)[np.ix_(free, free)]
    if not np.all(np.isfinite(H)):
        return False
    d = np.sqrt(np.clip(np.abs(np.diag(H)), 1e-300, None))
    return bool(np.min(np.linalg.eigvalsh(H / np.outer(d, d)), initial=0.0) > -_PROBED_NEGATIVE)


# a unit-diagonal eigenvalue below minus this at a probed point is negative curvature
# (a fit's own optimum has none beyond rounding, ~1e-6)
_PROBED_NEGATIVE = 1e-3


def _stuck_at_start(res, x0, bounds) -> bool:
    """Whether L-BFGS-B ended where it started with a gradient far from zero there."""
    if not np.isfinite(res.fun) or not np.array_equal(res.x, x0):
        return False
    return float(np.max(np.abs(projected_gradient(res.jac, res.x, bounds)), initial=0.0)) > 1e-3


# Cholesky diagonals tried when one is found at zero (link-scale SDs of the internal,
# standardised columns): small ones matter for large counts, whose data resolve them
_PROBE_GRID = _PROBE_SCALES
# below the grid, values down to this fraction of the smallest SD one level resolves
# (1 / sqrt of its information): with many levels their spread resolves a tenth of it
_PROBE_RESOLUTION = 0.03


def _probe_grid(obj, k) -> tuple:
    """The values tried for the zero diagonal ``k``: :data:`_PROBE_GRID`, preceded by
    smaller ones (a factor 3 apart) where the data resolve standard deviations below
    it. Counts or trials in the thousands give a level so much information that an
    SD of 1e-4 is a clear optimum while 1e-3 is already worse than zero, so a grid
    that starts at 1e-3 never sees it. Data that resolve only SDs above the grid's
    smallest value get the grid alone."""
    info = getattr(obj, "level_information", lambda k: None)(k)
    if info is None or not info > 0.0:
        return _PROBE_GRID
    floor = _PROBE_RESOLUTION / np.sqrt(info)
    small, t = [], _PROBE_GRID[0] / 3.0
    while t >= floor:
        small.append(t)
        t /= 3.0
    return tuple(reversed(small)) + tuple(_PROBE_GRID)


def _probe_zero_diagonal(obj, res, k, bounds):
    """A point below the boundary value along the zero diagonal ``k``, or None.

    Each probe sets the diagonal to a value of :func:`_probe_grid` with both
    signs of the entries below it in its column, or of a structure's correlation
    parameters (the correlations it would carry, undetermined while the SD is zero: an
    optimum at a negative correlation is not found from a positive one). Where no
    value improves on zero and the family has its own parameters (NB theta, zero
    inflation), which may have absorbed the variation between groups while the
    variance was zero, those and the fixed effects are re-fitted at the best and the
    largest value (:func:`_with_family_parameters`). Every probe starts from the modes
    at the optimum.
    """
    partners, fallback = _probe_partners(obj.data, k)
    lo = np.array([-np.inf if bounds[i][0] is None else bounds[i][0] for i in partners])
    hi = np.array([np.inf if bounds[i][1] is None else bounds[i][1] for i in partners])
    obj.value_and_grad(res.x)
    grid = _probe_grid(obj, k)
    at_x = obj.snapshot()
    scans = []
    batched = not partners and getattr(obj, "can_batch_scales", lambda n: False)(len(grid))
    if batched:  # one scalar random effect: every value in one vectorised mode search
        values = obj.laplace_at_scales(res.x, grid)
        scan = []
        for t, val in zip(grid, values):
            xt = res.x.copy()
            xt[k] = t
            scan.append((float(val), xt))
        scans.append(scan)
    signs = () if batched else (1.0, -1.0) if partners else (None,)
    points = []
    for sign in signs:
        for t in grid:
            xt = res.x.copy()
            xt[k] = t
            if sign is not None:
                cur = xt[partners]
                start = 0.5 * t if fallback is None else fallback
                xt[partners] = np.clip(sign * np.where(cur != 0.0, np.abs(cur), start), lo, hi)
            points.append(xt)
    values = _values_from(obj, points, at_x)
    for s in range(len(signs)):
        part = slice(s * len(grid), (s + 1) * len(grid))
        scans.append(list(zip(values[part], points[part])))
    # the best point of the scans; when it does not improve on the boundary and the
    # family has its own parameters, these and the fixed effects re-fitted there, at
    # the largest diagonal (of the better sign there), where they may have absorbed the
    # most, and beyond it (:data:`_PROBE_WIDE`), until one improves
    candidates = [min((p for scan in scans for p in scan), key=lambda p: p[0])]
    refit = obj.data.n_extra and not candidates[0][0] < res.fun - 1e-8
    if refit:
        largest = min((scan[-1] for scan in scans), key=lambda p: p[0])
        if largest[1] is not candidates[0][1]:
            candidates.append(largest)
        for t in _PROBE_WIDE:
            xt = largest[1].copy()
            xt[k] = t
            candidates.append((np.nan, xt))
    best_val, best_x = res.fun, None
    for val, xt in candidates:
        if refit:
            obj.restore(at_x)
            val, xt = _with_family_parameters(obj, xt, bounds)
        if val < best_val - 1e-8:
            best_val, best_x = val, xt
            if refit:
                break
    obj.restore(at_x)
    return best_x


# SDs past the probe grid at which a zero SD of a family with its own parameters is
# probed too, those and the fixed effects re-fitted: the trade-off between an SD and the
# dispersion or the zero inflation can put the better basin there (NB2, six groups of
# three rows: -31.195 at SD 0, -31.269 at 1, -30.667 at 2.7; ZIP, five groups of four:
# -2 log L 31.925 at SD 0, 32.219 at 1, 30.521 at 2, the optimum 30.456 at 2.36, where
# the fit ended at zero, converged; hurdle NB2 likewise 1.78 above its optimum at 2.13).
# For a family that is not log-concave, where a level's counts are all zero its
# conditional density can be nearly flat at the mode and the Laplace objective far too
# high in places away from the fit: the point reached from there is kept only where it
# is a basin (:func:`_probed_basin_holds`)
_PROBE_WIDE = (2.0, 4.0)


def _values_from(obj, points, at) -> list:
    """The objective at each of ``points``, each evaluated from the snapshot ``at``
    (its modes the search's start): the objective's own ``evaluate_points`` where it
    has one (a batched replicate hands them to its batch in one pass), else one
    evaluation after another."""
    many = getattr(obj, "evaluate_points", None)
    if many is not None:
        return many(points, at)
    values = []
    for x in points:
        obj.restore(at)
        values.append(obj.evaluate(x))
    return values


def _probe_partners(data, k):
    """The parameters a probe of the zero SD ``k`` tries with both signs, and their
    values where they are zero (None: half the probed SD): the entries below a Cholesky
    diagonal in its column, or the correlation parameters of a structure's SD (at
    their start)."""
    at = data.locate(k)
    if at is None:
        return [], None
    f = data.factors[at[0]]
    if not f.mapped:
        entry = _cholesky_neighbours(data).get(k)
        return ([] if entry is None else entry.below), None
    st, j = f.structure, at[1]
    n_sd = getattr(st, "n_sd", None)
    if n_sd is None or not len(st.sd_columns(j)):  # (empty for a correlation parameter)
        return [], None
    first = k - j
    return list(range(first + n_sd, first + st.n_params)), st.start(1.0)[n_sd:]


def _with_family_parameters(obj, x, bounds):
    """``(value, x)`` at ``x`` with the fixed effects and the family's extra parameters
    re-optimised (the covariance parameters held): the profile likelihood at the probed
    SD. The fixed effects move with it as well: the mean of ``exp(b0 + u)`` grows with
    the SD of ``u``, and on eight groups of three rows an NB2 fit whose probe re-fitted
    theta alone (the intercept where the SD of zero had it) missed the optimum at an SD
    of 1.5 (0.07 log-likelihood units higher), converged at zero."""
    d = obj.data
    n_fixed = d.n_beta + d.n_theta
    if not d.n_extra:
        return obj.evaluate(x), x
    held = list(bounds[: d.n_beta]) + [(v, v) for v in x[d.n_beta : n_fixed]]
    held += list(bounds[n_fixed:])
    # a probe: the main stage that follows polishes the point found
    r = _run_lbfgsb(obj.value_and_grad, x, held, 30, 1e-8)
    return float(r.fun), r.x


class _Neighbours(NamedTuple):
    """A Cholesky diagonal's neighbours, as indices into the parameters."""

    below: list  # the entries below it in its column
    left: list  # the entries left of it in its row
    diagonals: list  # every diagonal of its factor


def _cholesky_neighbours(data) -> dict:
    """For each Cholesky diagonal's index in the parameters (of a factor without a
    structure), its :class:`_Neighbours`."""
    out, k = {}, data.n_beta
    for f in data.factors:
        if not f.mapped:  # (a structure's SD has no Cholesky entries beside it)
            rows, cols = np.asarray(f.theta_rows), np.asarray(f.theta_cols)
            on = np.flatnonzero(rows == cols)
            diagonals = [k + j for j in on]
            for j in on:
                r = rows[j]
                below = [k + i for i in np.flatnonzero((cols == r) & (rows > r))]
                left = [k + i for i in np.flatnonzero((rows == r) & (cols < r))]
                out[k + j] = _Neighbours(below, left, diagonals)
        k += f.n_params
    return out


def _snap_to_zero(obj, res, diag_idx):
    """Put Cholesky diagonals that stopped just above zero exactly on the bound.

    The objective is flat and even around a zero variance, so the optimiser may
    stop a hair above it (1e-6, say); lme4 reports such a fit with an exact
    zero. Kept only when the objective is no worse (within 1e-6, a
    log-likelihood change of 5e-7).
    """
    tiny = [k for k in diag_idx if 0.0 < res.x[k] < SINGULAR_TOL]
    if not tiny:
        return res
    obj.value_and_grad(res.x)
    at_x = obj.snapshot()
    x0 = res.x.copy()
    x0[tiny] = 0.0
    val = obj.evaluate(x0)
    if val <= res.fun + 1e-6:
        res.x, res.fun = x0, val
    else:
        obj.restore(at_x)
    return res


SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on the Cholesky diagonals


RESTART_MIN_DECREASE = 1e-4  # of -2 log L: a log-likelihood gain of 5e-5


def _predicted_decrease(res, bounds) -> float:
    """Decrease of the objective L-BFGS-B's quadratic model still expects at its stop."""
    if not np.isfinite(res.fun) or getattr(res, "jac", None) is None:
        return np.inf
    g = projected_gradient(np.asarray(res.jac, dtype=float), res.x, bounds)
    if getattr(res, "scale", None) is not None:
        g = g / res.scale  # L-BFGS-B's model is in the scaled variables
    try:
        return float(0.5 * g @ res.hess_inv.matvec(g))
    except (AttributeError, ValueError):
        return np.inf


def _finite_start(obj, x0, diag_idx):
    """``x0``, or where the objective is infinite there (no conditional modes: counts in
    the hundreds of thousands with a start of SD 0.5, say) the first of its Cholesky
    diagonals shrunk by 10, 100, ... 1e4 at which it is finite (else ``x0`` itself: the
    checks at the optimum restart from the GLM). A finite start is evaluated here with
    its gradient, the optimiser's first evaluation, which the objective remembers (a
    partitioned one too: no second map-reduce)."""
    if not diag_idx or np.isfinite(obj.value_and_grad(x0)[0]):
        return x0
    for shrink in _START_SHRINK:
        x = np.array(x0, dtype=float)
        x[diag_idx] *= shrink
        if np.isfinite(obj.value_and_grad(x)[0]):
            return x
    return x0


_START_SHRINK = (1e-1, 1e-2, 1e-3, 1e-4)


def projected_gradient(g: np.ndarray, x: np.ndarray, bounds) -> np.ndarray:
    """Gradient with components pushing against an active bound set to zero."""
    g = g.copy()
    for k, (lo, hi) in enumerate(bounds):
        if lo is not None and x[k] <= lo + 1e-8 and g[k] > 0:
            g[k] = 0.0
        if hi is not None and x[k] >= hi - 1e-8 and g[k] < 0:
            g[k] = 0.0
    return g
