"""Newton steps at the end of a fit (steps 2, 2b, 2c and 3b of :mod:`.converge`).

The polish on the free parameters until lme4's gradient check passes, a rescaled restart
where it does not, a zero variance the steps put on its bound probed as the main stage
probes one, a zero variance with its partners at a saddle left along its direction of
negative curvature, and the move of a covariance the levels do not identify to its set's central
point, polished on the identified directions there.
"""

from __future__ import annotations

import numpy as np

from .curvature import GRAD_TOL, _flat_filled, at_bound, scaled_gradient
from .equal_likelihood import (
    central_covariances,
    unidentified_directions,
)
from .hessian import hessian
from .lbfgsb import bound_arrays
from .stage import _laplace_stage, _probe_partners, _probed_basin_holds, projected_gradient

_POLISH_STEPS = 8


RISE_TOL = 1e-6  # of -2 log L


def newton_polish(obj, x, bounds):
    """Newton steps from ``x`` until lme4's gradient check passes.

    Returns ``(x, H, (max |g|, max |scaled g|))`` at the end.
    """
    for step_no in range(_POLISH_STEPS + 1):
        val, g = obj.value_and_grad(x)
        H = hessian(obj, x)
        grads = scaled_gradient(g, H, x, bounds)
        if not np.isfinite(val) or grads[1] <= GRAD_TOL or step_no == _POLISH_STEPS:
            return x, H, grads
        x_new = _newton_step(obj, x, val, g, H, bounds)
        if x_new is None:
            return x, H, grads
        x = x_new


def _newton_step(obj, x, val, g, H, bounds):
    """A Newton step on the free parameters that lowers the objective, or None."""
    free = np.flatnonzero(~at_bound(x, bounds))
    gf = projected_gradient(g, x, bounds)[free]
    try:
        np.linalg.cholesky(H[np.ix_(free, free)])
        direction = np.linalg.solve(H[np.ix_(free, free)], -gf)
    except np.linalg.LinAlgError:
        return None
    lo, hi = bound_arrays(bounds)
    at_x = obj.snapshot()
    t = 1.0
    for _ in range(30):
        cand = x.copy()
        cand[free] += t * direction
        cand = np.clip(cand, lo, hi)
        obj.restore(at_x)
        if obj.evaluate(cand) < val:
            return cand
        t *= 0.5
    obj.restore(at_x)
    return None


def rescaled_restart(obj, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record):
    """The fit resumed from a point that fails the gradient check after the polish,
    with the optimiser scaled by every parameter's curvature there (the family's own
    parameters too: an unscaled run stalls where a standard deviation of 1e-3 and NB
    theta in the hundreds of thousands meet), then polished again. Kept when lower;
    a fit that passes the check never comes here."""
    res = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx, scale_extras=True)
    record.stages.append(("rescaled restart", float(res.fun), int(res.nit), str(res.message)))
    if not res.fun < fun:
        obj.evaluate(x)
        return x, fun, H, grads
    x2, H2, grads2 = newton_polish(obj, res.x, bounds)
    return x2, obj.evaluate(x2), H2, grads2


def probe_new_zeros(obj, before, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record):
    """A standard deviation the polish (or its restart) put on zero, probed as the main
    stage probes one it ends on (step 2b of the module docstring).

    A projected Newton step clips a Cholesky diagonal it would take below zero onto
    the bound; the objective is lower there than where the step started, but the
    optimum may still lie above zero, past a rise the step did not see (an optimiser
    stopped far from the optimum and polished from there). The zero is probed on the
    main stage's grid and the fit resumed from a better point; kept when lower, and
    polished again.
    """
    new = [k for k in diag_idx if x[k] == 0.0 and before[k] != 0.0]
    if not new or not np.isfinite(fun):
        return x, fun, H, grads
    res = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx)
    record.stages.append(("zero from the polish", float(res.fun), int(res.nit), str(res.message)))
    if not res.fun < fun - 1e-8 or not np.all(np.isfinite(res.x)):
        obj.evaluate(x)
        return x, fun, H, grads
    x2, H2, grads2 = newton_polish(obj, res.x, bounds)
    return x2, obj.evaluate(x2), H2, grads2


def zero_saddle_points(obj, x, fun, H, bounds, diag_idx) -> list:
    """``(k, point)`` for each zero Cholesky diagonal ``k`` off which the objective falls
    together with its partners (the entries below it in its column, a structure's
    correlation parameters; :func:`.stage._probe_partners`), by more than
    :data:`RISE_TOL` at ``point``.

    With a diagonal at zero its partners enter the covariance only at second order with
    it, and the gradient in both is nil there; the objective can fall along a direction
    that mixes them while it rises along each alone (``H[k, k]`` positive, the partner's
    curvature too): a whole block of covariance parameters at zero, the model without
    that factor, is then a saddle point. The curvature check reads only the free
    parameters and :func:`.converge.rising_off_zero` each diagonal alone, and neither
    sees it (a Poisson fit with a correlated random slope restarted from the GLM's
    optimum stayed there, 0.20 of -2 log L above the optimum, converged). Here the
    smallest eigenvalue of the Hessian over the diagonal and its free partners, where
    negative with a sizeable component on the diagonal (:data:`_SADDLE_COMPONENT`), is
    followed (the diagonal upwards) at the steps :data:`_SADDLE_STEPS`, ascending until
    the objective is lower by more than :data:`RISE_TOL` or higher by as much."""
    if H is None or not np.all(np.isfinite(H)):
        return []
    zeros = [k for k in diag_idx if x[k] == 0.0]
    if not zeros:
        return []
    free = ~at_bound(x, bounds)
    lo, hi = bound_arrays(bounds)
    found, at_x = [], None
    for k in zeros:
        S = [k] + [j for j in _probe_partners(obj.data, k)[0] if free[j]]
        if len(S) < 2:
            continue  # (the diagonal alone: rising_off_zero's)
        w, V = np.linalg.eigh(H[np.ix_(S, S)])
        v = V[:, 0] * np.sign(V[0, 0])
        if not w[0] < 0.0 or not abs(v[0]) >= _SADDLE_COMPONENT:
            continue
        if at_x is None:
            obj.value_and_grad(x)
            at_x = obj.snapshot()
        for h in _SADDLE_STEPS:
            point = x.copy()
            point[S] += h * v
            point = np.clip(point, lo, hi)
            obj.restore(at_x)
            val = float(obj.evaluate(point))
            if val < fun - RISE_TOL:
                found.append((k, point))
                break
            if not val <= fun + RISE_TOL:  # (rising, or a failed evaluation)
                break
    if at_x is not None:
        obj.restore(at_x)
    return found


# the smallest component on the zero diagonal of a direction of negative curvature
# followed by :func:`zero_saddle_points` (one mostly along a partner, a free parameter,
# is the curvature check's), and its steps (on unit-length directions), smallest first
_SADDLE_COMPONENT = 0.1
_SADDLE_STEPS = 2.0 ** -np.arange(12, -1, -1)


def leave_zero_saddles(obj, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record):
    """The fit resumed from a point below ``x`` along a zero diagonal and its partners
    (:func:`zero_saddle_points`, step 2c of :mod:`.converge`); kept when lower (for a
    family that is not log-concave, where its end is a basin of the likelihood,
    :func:`.stage._probed_basin_holds`), and polished again."""
    found = zero_saddle_points(obj, x, fun, H, bounds, diag_idx)
    if not found or not np.isfinite(fun):
        return x, fun, H, grads
    stage = (bounds, max_iter, tol, diag_idx, record)
    return resumed_and_polished(obj, found[0][1], x, fun, H, grads, stage, "off a zero block")


def resumed_and_polished(obj, start, x, fun, H, grads, stage, label, gain=1e-8):
    """``(x, fun, H, grads)`` of the Laplace stage from ``start`` (recorded as ``label``;
    ``stage``: its bounds, iteration limit, tolerance, diagonals and record) polished
    again where it ends below ``fun`` by more than ``gain`` (for a family that is not
    log-concave, where its end is a basin of the likelihood,
    :func:`.stage._probed_basin_holds`); else the fit as given."""
    bounds, max_iter, tol, diag_idx, record = stage
    res = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx)
    record.stages.append((label, float(res.fun), int(res.nit), str(res.message)))
    if (
        not res.fun < fun - gain
        or not np.all(np.isfinite(res.x))
        or not _probed_basin_holds(obj, res.x, bounds)
    ):
        obj.evaluate(x)
        return x, fun, H, grads
    x2, H2, grads2 = newton_polish(obj, res.x, bounds)
    return x2, obj.evaluate(x2), H2, grads2


def to_central_covariances(obj, x, fun, H, grads, bounds, record):
    """The fit moved to :func:`central_covariances`' point of its set of equal
    likelihood (kept when the objective there is the same, to :data:`RISE_TOL` or
    :data:`_CENTRAL_TOL` of it) and polished on the identified directions there
    (:func:`_identified_polish`), with its Hessian and gradient."""
    # (the polish's Newton steps can take a covariance back to its set's edge, a
    # Cholesky diagonal clipped at 0 where the identified directions still had a little
    # to gain: the move is then made again from there, a few times at most)
    for _ in range(_CENTRAL_ROUNDS):
        x2 = central_covariances(obj, x, bounds)
        if x2 is x or not np.isfinite(fun):
            return x, fun, H, grads
        at_x = obj.snapshot()
        fun2 = obj.evaluate(x2)
        record.stages.append(("central point of an unidentified covariance", float(fun2), 0, ""))
        # (the same likelihood to the conditional modes' tolerance: 1e-5 of -2 log L of
        # 8,000 by where the modes' iterations start; a guard, not a test)
        if not fun2 <= fun + max(RISE_TOL, _CENTRAL_TOL * abs(fun)):
            obj.restore(at_x)
            return x, fun, H, grads
        x, fun, H, grads = _identified_polish(obj, x2, bounds)
    return x, fun, H, grads


_CENTRAL_ROUNDS = 3


def _identified_polish(obj, x, bounds):
    """Newton steps from ``x`` on the directions the likelihood identifies (the
    Hessian's nil curvature along :func:`unidentified_directions` filled,
    :func:`_flat_filled`) until lme4's gradient check passes there; ``(x, objective, H,
    (max |g|, max |scaled g|))`` at the end. The plain polish's Newton steps need a
    positive definite Hessian, which such a fit does not have."""
    for step_no in range(_POLISH_STEPS + 1):
        val, g = obj.value_and_grad(x)
        H = hessian(obj, x)
        N = unidentified_directions(obj, x, bounds)
        grads = scaled_gradient(g, H, x, bounds, N)
        if N is None or not np.isfinite(val) or grads[1] <= GRAD_TOL or step_no == _POLISH_STEPS:
            return x, val, H, grads
        free = ~at_bound(x, bounds)
        Hn = H.copy()
        Hn[np.ix_(free, free)] = _flat_filled(H[np.ix_(free, free)], N[free])
        x_new = _newton_step(obj, x, val, g, Hn, bounds)
        if x_new is None:
            obj.evaluate(x)
            return x, val, H, grads
        x = x_new


_CENTRAL_TOL = 1e-8
