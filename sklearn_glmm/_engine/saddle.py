"""A fit left at a saddle point along its direction of negative curvature (step 2d of
:mod:`.converge`).

L-BFGS-B can stop where the gradient is small but the Hessian over the free parameters
has a direction of negative curvature: the fit is then reported not converged (a saddle
point, not a maximum), though the optimum may be near. A binary GLMM with a correlated
random intercept and a slope of a binary predictor, ``(1 + cut_f | g)``, stopped so with
the internal intercept's Cholesky diagonal at 4e-4 and the correlation at -1: a rank-one
covariance written one way, where the optimum (lme4's, 0.0029 higher in the
log-likelihood) writes it the other way, the second diagonal at 0; a stage resumed at
the point stops at once (its gradient is 1e-4), one resumed a little along the
direction of negative curvature reaches lme4's optimum.

Here, where :func:`.curvature.curvature` finds negative curvature over the free
parameters, the objective is read along that direction (the most negative eigenvector
of the Hessian scaled to unit diagonal, both ways, at the steps of
:data:`.polish._SADDLE_STEPS` on a unit-length direction, smallest first, until it
rises again); from the lowest point, lower by more than :data:`.polish.RISE_TOL`, the
fit is resumed (a stage ``"off a saddle point"``), kept when lower (and, for a family
that is not log-concave, where its end is a basin, :func:`.stage._probed_basin_holds`)
and polished again. Fits without negative curvature evaluate nothing here.
"""

from __future__ import annotations

import numpy as np

from .curvature import _unit_diagonal, at_bound, curvature, ridge_parameters, stopped_blocks
from .lbfgsb import bound_arrays
from .polish import _SADDLE_STEPS, RISE_TOL, resumed_and_polished


def leave_saddle(obj, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record):
    """``(x, fun, H, grads)``: the fit resumed from a point below ``x`` along its
    direction of negative curvature where it has one (module docstring), else as given."""
    point = _lower_along_negative_curvature(obj, x, fun, H, bounds)
    if point is None:
        return x, fun, H, grads
    stage = (bounds, max_iter, tol, diag_idx, record)
    return resumed_and_polished(
        obj, point, x, fun, H, grads, stage, "off a saddle point", gain=RISE_TOL
    )


def _lower_along_negative_curvature(obj, x, fun, H, bounds):
    """The lowest point read along the direction of most negative curvature over the
    free parameters, where it is below ``fun`` by more than ``RISE_TOL``; else None."""
    if H is None or not np.all(np.isfinite(H)) or not np.isfinite(fun):
        return None
    data = obj.data
    ridge, stopped = ridge_parameters(data, x), stopped_blocks(data, x, bounds)
    if not curvature(H, x, bounds, ridge, stopped)[2]:
        return None
    free = np.flatnonzero(~at_bound(x, bounds))
    R, d, _ = _unit_diagonal(H[np.ix_(free, free)])
    evals, evecs = np.linalg.eigh(R)
    if not evals[0] < 0.0:
        return None  # (a diagonal that is not positive: the curvature check's alone)
    v = np.zeros(len(x))
    v[free] = evecs[:, 0] / d
    v /= np.linalg.norm(v)
    lo, hi = bound_arrays(bounds)
    obj.value_and_grad(x)
    at_x = obj.snapshot()
    best, best_val = None, fun - RISE_TOL
    for sign in (1.0, -1.0):
        prev = fun
        for h in _SADDLE_STEPS:
            point = np.clip(x + sign * h * v, lo, hi)
            obj.restore(at_x)
            val = float(obj.evaluate(point))
            if not (val <= fun + RISE_TOL and val <= prev + RISE_TOL):
                break  # rising again (or a failed evaluation)
            if val < best_val:
                best, best_val = point, val
            prev = val
    obj.restore(at_x)
    return best
