"""Family parameters on a flat ridge (NB theta running to the Poisson limit, zero
inflation to none): the optimiser stopped while it drifts, the parameter settled on its
bound where that is no worse, and blocks of parameters moved off their ridge."""

from __future__ import annotations

import numpy as np

from .lbfgsb import _run_lbfgsb
from .objective import Objective
from .stage import _laplace_stage
from .start import _interior_extras


def _ridge_stop(obj, bounds):
    """A ``stop`` rule for L-BFGS-B: a family parameter is drifting on its flat ridge
    (past the flat side's threshold, see :func:`_settle_flat_extra`) with less than
    ``RIDGE_GAIN`` of the objective left to gain along it; None for families without
    such a side.

    On the ridge the objective approaches its value at the bound like ``A e^(-x)`` (NB2
    in log theta: the terms in 1/theta), so what is left to gain is about the
    gradient's component towards the bound; L-BFGS-B would otherwise take a step of
    about one unit per iteration all the way there. The rule also asks that the last
    iteration gained less than ``RIDGE_GAIN`` (while the other parameters still move,
    the ridge's gradient, coupled to them, says little) and moved the parameter towards
    its bound by at least ``RIDGE_STEP`` (walking the ridge: at an interior optimum
    past the threshold the gradient is small too, but the iterates stand still). Read
    at iterates the objective has just evaluated only (no evaluation of its own).
    """
    sides = _flat_sides(obj)
    if not sides or not isinstance(obj, Objective):  # (a GLM's evaluations are cheap)
        return None

    last = [np.inf, None]  # the previous iterate's value and point

    def stop(x):
        val = obj.remembered(x)
        (prev_val, prev_x), last[:] = last, [np.inf if val is None else val, np.copy(x)]
        if val is None or prev_x is None or not prev_val - val < RIDGE_GAIN:
            return False
        return any(
            (bound - x[k]) * (x[k] - prev_x[k]) > 0 and abs(x[k] - prev_x[k]) >= RIDGE_STEP
            for k, bound in _ridge_ends(obj, x, sides, bounds)
        )

    return stop


FLAT_TOL = 1e-3  # of -2 log L: a bound no worse than this is settled on
RIDGE_GAIN = FLAT_TOL  # of -2 log L: what is left to gain on a ridge when it is left
RIDGE_STEP = 0.25  # on the parameter's own scale (log theta, logit of zero inflation)


def _flat_sides(obj):
    """``(k, (direction, threshold))`` of each parameter with a flat side."""
    start = obj.data.n_beta + obj.data.n_theta
    return [(start + j, side) for j, side in enumerate(obj.data.extra_flat_side) if side]


def _drift_bound(x, k, side, bounds):
    """The bound on the flat side of parameter ``x[k]`` when it is past the side's
    threshold and not yet on that bound, else None."""
    direction, threshold = side
    bound = _side_bound(k, side, bounds)
    past = x[k] > threshold if direction == "upper" else x[k] < threshold
    return bound if past and bound is not None and abs(x[k] - bound) >= 1e-6 else None


def _side_bound(k, side, bounds):
    """The bound of parameter ``k`` on its flat side (``side``: direction, threshold)."""
    return bounds[k][1] if side[0] == "upper" else bounds[k][0]


def _on_flat_bound(x, k, side, bounds) -> bool:
    """Whether parameter ``x[k]`` is on the bound of its flat side."""
    bound = _side_bound(k, side, bounds)
    return bound is not None and abs(x[k] - bound) < 1e-6


def _drifting(x, sides, bounds) -> list:
    """``(k, bound)`` of each parameter drifting on its flat side (:func:`_drift_bound`)."""
    out = [(k, _drift_bound(x, k, side, bounds)) for k, side in sides]
    return [(k, b) for k, b in out if b is not None]


def _ridge_ends(obj, x, sides, bounds) -> list:
    """``(k, bound)`` of the drifting parameters with less than ``RIDGE_GAIN`` of the
    objective left to gain towards their bound (its decrease per unit moved there)."""
    drifting = _drifting(x, sides, bounds)
    if not drifting:
        return []
    g = obj.value_and_grad(x)[1]
    return [(k, b) for k, b in drifting if 0.0 <= np.sign(b - x[k]) * -g[k] < RIDGE_GAIN]


def _ridge_dip(obj, x, fun, k, threshold):
    """A point back on parameter ``k``'s ridge lower than ``fun`` (its value on the
    bound, at ``x``), or None.

    The ridge need not fall all the way to the bound: the likelihood may peak at a
    large but finite NB theta (a dispersion that only a few counts resolve, or counts
    of 1e4 and more, for which theta of 1e7 is still overdispersion) and come back
    down towards the Poisson limit, so that the optimiser, stopped anywhere beyond the
    peak, sees a flat side. The objective is read at every ``RIDGE_SCAN_STEP`` from
    the threshold to the bound, the other parameters as fitted on the bound (the ridge
    barely moves them); when the lowest is lower by more than ``FLAT_TOL``, the vertex
    of the parabola through it and its neighbours is returned.
    """
    at_bound = obj.snapshot()
    bound = x[k]
    n = max(1, int(np.ceil(abs(bound - threshold) / RIDGE_SCAN_STEP)))
    grid = np.linspace(threshold, bound, n + 1)
    vals = np.empty(n + 1)
    vals[-1] = fun
    for i, v in enumerate(grid[:-1]):
        p = x.copy()
        p[k] = v
        vals[i] = obj.evaluate(p)
    obj.restore(at_bound)
    i = int(np.argmin(np.where(np.isfinite(vals), vals, np.inf)))
    if not vals[i] < fun - FLAT_TOL:
        return None
    best = x.copy()
    best[k] = grid[i]
    if 0 < i < n:  # the vertex of the parabola through the lowest point and its neighbours
        a, b, c = vals[i - 1 : i + 2]
        if a + c - 2.0 * b > 0.0:
            best[k] += 0.5 * (grid[1] - grid[0]) * (a - c) / (a + c - 2.0 * b)
    return best


RIDGE_SCAN_STEP = 3.0  # on the parameter's own scale (log theta, logit of zero inflation)


def _held(x, bounds, on):
    """``x`` and ``bounds`` with each parameter ``k`` of ``on`` (``(k, value)``) held at
    ``value``."""
    x, bounds = np.array(x, dtype=float), list(bounds)
    for k, value in on:
        x[k], bounds[k] = value, (value, value)
    return x, bounds


def _fit_from_dip(obj, dip, bounds, max_iter, tol, diag_idx, stages):
    """The Laplace stage from a dip of a ridge (:func:`_ridge_dip`), scaled by the family
    parameters' curvature too (the unscaled run is what stepped over it); recorded as
    the stage ``"ridge dip"`` of ``stages``."""
    res = _laplace_stage(obj, dip, bounds, max_iter, tol, diag_idx, scale_extras=True)
    stages.append(("ridge dip", float(res.fun), int(res.nit), str(res.message)))
    return res


def _settle_after_ridge_stop(obj, res, bounds, max_iter, tol, diag_idx):
    """After a :func:`_ridge_stop`: ``(fit, None, False)`` with the parameters at a
    ridge's end on their bounds, or ``(None, x, dip)``: the fit goes on from ``x``, the
    stopping point or (``dip``) a dip of the ridge.

    The fit is a whole Laplace stage (scaled, restarted, zero variances probed) with
    those parameters held on their bounds: the others need not have converged where
    the run stopped. It is kept when it is no worse than the stopping point and the
    ridge has no dip below it (:func:`_ridge_dip`); otherwise the fit goes on from the
    stopping point, or from the dip.
    """
    sides = dict(_flat_sides(obj))
    ends = _ridge_ends(obj, res.x, list(sides.items()), bounds)
    if not ends:
        return None, res.x, False
    at_stop = obj.snapshot()
    r = _laplace_stage(obj, *_held(res.x, bounds, ends), max_iter, tol, diag_idx)
    if r.fun <= res.fun:
        for k, _ in ends:
            dip = _ridge_dip(obj, r.x, r.fun, k, sides[k][1])
            if dip is not None:
                return None, dip, True
        return r, None, False
    obj.restore(at_stop)
    return None, res.x, False


def _settle_flat_extra(obj, x, fun, bounds, max_iter, tol, diag_idx, stages, scanned=False):
    """Move extra parameters drifting on a flat ridge to their bound.

    Without overdispersion the NB2 likelihood keeps rising, ever more slowly, as
    theta grows; without zero inflation the zero-inflation probability drifts
    towards 0. The optimiser stops somewhere on such a ridge, where the Hessian
    is nearly singular and the other standard errors would be wrong. When the
    bound is no worse (within ``FLAT_TOL`` = 1e-3 in the objective), the fit is
    settled there: an honest boundary estimate, reported as such, with the other
    parameters' standard errors from the model without it. Unless the ridge dips
    below the bound's value on the way there (:func:`_ridge_dip`, also read for a
    parameter the optimiser itself took to the bound, unless ``scanned``): the fit
    then goes on from the dip, to the optimum the optimiser stepped over (a stage
    ``"ridge dip"`` of ``stages``).
    """
    for k, side in _flat_sides(obj):
        bound = _drift_bound(x, k, side, bounds)
        on_bound = bound is None and not scanned and _on_flat_bound(x, k, side, bounds)
        if bound is None and not on_bound:
            continue
        at_x = obj.snapshot()
        if on_bound:  # the optimiser took it there itself
            cand, cand_fun = x, fun
        else:
            x1, held = _held(x, bounds, [(k, bound)])
            res = _run_lbfgsb(obj.value_and_grad, x1, held, max_iter, tol)
            cand, cand_fun = res.x, float(res.fun)
            if not cand_fun <= fun + FLAT_TOL:
                obj.restore(at_x)
                continue
        dip = _ridge_dip(obj, cand, cand_fun, k, side[1])
        if dip is not None:
            res = _fit_from_dip(obj, dip, bounds, max_iter, tol, diag_idx, stages)
            if not res.fun < fun:
                obj.restore(at_x)
                continue
            cand, cand_fun = res.x, float(res.fun)
        x, fun = cand, cand_fun
    obj.evaluate(x)
    return x


def _off_block_ridges(obj, x, bounds, max_iter, tol, diag_idx, stages):
    """``x``, or a lower optimum found from its blocks' starts where the fit ended with a
    block past its flat side on some rows (:func:`~.blocks.interior_coefficients`).

    A zero-inflation model with a binary predictor has a ridge where the probability
    for one of its values runs to 0 (its intercept and slope off together); the
    gradient vanishes along it, so a fit that drifts onto it stays, below an interior
    optimum. Resumed from the block's start with the other parameters where they are,
    the better of the two is kept (a stage ``"block ridge"``); where the ridge is the
    optimum (no zero inflation there), the fit returns to it.
    """
    if obj.data.extra_designs is None:
        return x
    p = obj.data.n_beta + obj.data.n_theta
    inside = _interior_extras(obj.data, x[p:])
    if np.array_equal(inside, x[p:]):
        return x
    fun = obj.evaluate(x)
    at_x = obj.snapshot()
    x1 = np.concatenate([x[:p], inside])
    res = _laplace_stage(obj, x1, bounds, max_iter, tol, diag_idx)
    stages.append(("block ridge", float(res.fun), int(res.nit), str(res.message)))
    if res.fun < fun - RISE_TOL_RIDGE:
        obj.evaluate(res.x)
        return res.x
    obj.restore(at_x)
    return x


# a restart off a block's ridge is kept when lower by more than this (-2 log L)
RISE_TOL_RIDGE = 1e-6


# the objective's slope (-2 log L) off a flat side's bound, per unit of the parameter's
# natural scale there (the zero-inflation probability, 1 / theta, phi), below which the
# bound is probed from inside (:func:`leave_flat_bounds`)
BOUND_SLOPE_TOL = -1e-2
# the probes: from the flat side's threshold inward, on the parameter's own scale
_OFF_BOUND_STEPS = (0.0, 2.0, 4.0, 6.0)


def leave_flat_bounds(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """``(x, fun)``, or a lower optimum found off a flat side's bound where the objective
    falls away from it.

    On its bound (a logit of -20, a log theta of 20) a flat side's parameter moves its
    natural scale (the zero-inflation probability, 1 / theta) by about e^-20 per unit:
    the gradient there is nil to the optimiser's tests whatever the likelihood does, so
    a fit that reached the bound in one stage (the Laplace objective's optimum there)
    stays in the next (quadrature's) even where the likelihood rises off it. A
    zero-inflated NB2 with a dispersion model stopped so at zero inflation 0, 2.5 in
    log-likelihood below the optimum with zero inflation 0.21, the slope there +2.25
    per unit of probability. For each parameter on its flat side's bound, the slope on
    the natural scale (the gradient over ``e^-|x_k|``) is read, or, where the family is its
    limit model on the bound (NB2 or the beta-binomial at theta or phi infinite, NB1 at
    phi 0: a derivative of exactly 0 there), the difference between the bound and the
    side's threshold over that span of the natural scale (a beta-binomial fit with AGQ
    stayed so at the binomial limit, 0.0028 below the optimum at phi 422); below
    :data:`BOUND_SLOPE_TOL` the objective is evaluated with the parameter at points
    from the side's threshold inward (:data:`_OFF_BOUND_STEPS`), and where one is lower
    by more than ``FLAT_TOL`` the fit resumes from it (a stage ``"off the bound of
    parameter k"``); the better of the two is kept.

    A parameter on its bound whose block has a far start (zero inflation: logit 1, most
    zeros from the inflation) is then fitted again from there (a stage ``"far start of
    parameter k"``): the zeros explained by low counts or by the inflation are two
    basins, and a fit started in one ends there. A zero-inflated NB1 ended so at zero
    inflation 0 with a ``ZeroInflationWarning`` calling the model without it adequate,
    0.0048 below the optimum with zero inflation 0.69.
    """
    on = [(k, side) for k, side in _flat_sides(obj) if _on_flat_bound(x, k, side, bounds)]
    if not on or not np.isfinite(fun):
        return x, fun
    at_x = obj.snapshot()
    stage_args = (bounds, max_iter, tol, diag_idx, record)
    _, grad = obj.value_and_grad(x)
    for k, (direction, threshold) in on:
        inward = 1.0 if direction == "lower" else -1.0
        probes = []
        if grad[k] == 0.0:
            # the family's limit model on the bound (NB2 theta or the beta-binomial's phi
            # infinite, NB1 phi 0): its derivative there is exactly 0, so the slope is read
            # between the bound and the side's threshold, the first probe
            p = np.array(x, dtype=float)
            p[k] = threshold
            probes.append((obj.evaluate(p), p))
            span = np.exp(-abs(threshold)) - np.exp(-abs(x[k]))
            slope = (probes[0][0] - fun) / span
        else:
            slope = inward * grad[k] / np.exp(-abs(x[k]))
        if not slope < BOUND_SLOPE_TOL:
            continue
        for step in _OFF_BOUND_STEPS[len(probes) :]:
            p = np.array(x, dtype=float)
            p[k] = threshold + inward * step
            probes.append((obj.evaluate(p), p))
        best_val, best = min(probes, key=lambda t: t[0] if np.isfinite(t[0]) else np.inf)
        if not best_val < fun - FLAT_TOL:
            continue
        found = _resumed(obj, best, fun, f"off the bound of parameter {k}", stage_args)
        if found is not None:
            return found
    p0 = obj.data.n_beta + obj.data.n_theta
    for k, _ in on:
        far = obj.data.extra_far_start[k - p0]
        if far is None:
            continue
        start = np.array(x, dtype=float)
        start[k] = far
        found = _resumed(obj, start, fun, f"far start of parameter {k}", stage_args)
        if found is not None:
            return found
    obj.restore(at_x)
    return x, fun


def _resumed(obj, start, fun, label, stage_args):
    """``(x, value)`` of the fit resumed from ``start`` (a stage ``label``; the other
    parameters on their bounds free) where it ends below ``fun``, else None."""
    bounds, max_iter, tol, diag_idx, record = stage_args
    res = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx, scale_extras=True)
    record.stages.append((label, float(res.fun), int(res.nit), str(res.message)))
    if not res.fun < fun - RISE_TOL_RIDGE:
        return None
    obj.evaluate(res.x)
    return res.x, float(res.fun)
