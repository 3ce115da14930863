"""Newton steps at the end of a fit (steps 2, 2b and 3b of :mod:`.converge`).

The polish on the free parameters until lme4's gradient check passes, a rescaled restart
where it does not, a zero variance the steps put on its bound probed as the main stage
probes one, and the move of a covariance the levels do not identify to its set's central
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
from .stage import _laplace_stage, projected_gradient

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
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
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
