"""A refit near a known optimum: L-BFGS-B in coordinates whitened by its Hessian.

A parametric bootstrap refits the model to outcomes simulated from the fit, starting
from the fitted parameters ``x0``, whose Hessian ``H`` (of the objective, -2 log L) is
known. On ``z`` with ``x = x0 + A z`` and ``A' H A = I`` (``A = L^-T``, ``H = L L'``)
the replicate's objective has a Hessian near the identity: L-BFGS-B's first step is
the Newton step with the fitted curvature (``z`` is also scaled by the length of the
first gradient, as L-BFGS-B's first step has unit length), and its later steps correct
the small difference. On the app-logins random-slope bootstrap this takes 35 % fewer
evaluations than the run on the diagonally scaled parameters (12.6 -> 8.2 per
replicate), to optima equal within L-BFGS-B's tolerance (objectives within 2e-6 of each
other, neither path systematically lower, on 300 replicates).

The whitened run has no bounds: a mixed coordinate cannot keep a box. That is exact
for the Cholesky entries of an unstructured covariance, where any real lower-triangular
factor is a covariance and flipping the sign of one of its columns leaves it
unchanged; the result is put back on the canonical factor (non-negative diagonal),
and a diagonal that ended a hair above zero on the bound, as the bounded run does
(:func:`~sklearn_glmm._engine.stage._snap_to_zero`). Other parameters have bounds
the whitened run could cross (a family's parameters, a structure's correlations):
such models, fits with a parameter on a bound (where ``H`` is not the curvature of
an interior optimum), AGQ fits and a Hessian that is not positive definite are refitted
the ordinary way (:func:`whitening` returns None for them; the caller checks the
quadrature and the Hessian's definiteness).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import linalg

from .blas import single_threaded_blas
from .lbfgsb import _BestPoint, minimize_lbfgsb
from .optimize import FitRecord
from .restarts import _level_slope_restarts
from .stage import RESTART_MIN_DECREASE, _laplace_stage, _snap_to_zero


def whitening(data, x0, H, bounds):
    """``A`` with ``A' H A = I`` for a refit of ``data``'s model from ``x0``, or None
    where the whitened run does not apply (the module docstring)."""
    x0 = np.asarray(x0, dtype=float)
    if H is None or data.n_extra or data.structured or not data.factors:
        return None
    if not np.all(np.isfinite(x0)) or not np.all(np.isfinite(H)) or H.shape != (len(x0),) * 2:
        return None
    for v, (lo, hi) in zip(x0, bounds):
        if (lo is not None and v <= lo + 1e-8) or (hi is not None and v >= hi - 1e-8):
            return None
    try:
        L = np.linalg.cholesky(0.5 * (H + H.T))
    except np.linalg.LinAlgError:
        return None
    return linalg.solve_triangular(L, np.eye(len(x0)), lower=True).T


def canonical_factors(data, x) -> np.ndarray:
    """``x`` with each factor's Cholesky factor's columns signed so that its diagonal
    is non-negative (the same covariance)."""
    x = np.array(x, dtype=float)
    k = data.n_beta
    for f in data.factors:
        nt = len(f.theta_rows)
        L = np.zeros((f.q, f.q))
        L[f.theta_rows, f.theta_cols] = x[k : k + nt]
        flip = np.diag(L) < 0
        if flip.any():
            L[:, flip] *= -1.0
            x[k : k + nt] = L[f.theta_rows, f.theta_cols]
        k += nt
    return x


def whitened_refit(obj, x0, A, bounds, max_iter, tol, diag_idx, refit_base=None):
    """Refit ``obj`` from ``x0`` on the whitened coordinates (``A``: :func:`whitening`);
    ``(x, FitRecord)`` as :func:`~sklearn_glmm._engine.optimize.fit_objective` returns.
    A factor with a random slope of a predictor of the level itself is fitted again
    from the starts a fit tries for it (``restarts._level_slope_restarts``, made from
    ``refit_base()``, a fresh fit's start: such a likelihood can have several optima,
    and the replicate's need not be the fit's)."""
    t0 = time.perf_counter()
    x0 = np.asarray(x0, dtype=float)
    record = FitRecord(initial=x0.copy())
    with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = whitened_run(obj, x0, A, bounds, max_iter, tol, diag_idx, record.stages)
        x, restart_nit = _level_slope_restarts(
            obj, res.x, bounds, max_iter, tol, diag_idx, record, refit_base
        )
        record.objective = float(obj.evaluate(x))
    record.final = x
    record.n_iter = int(sum(s[2] for s in record.stages))
    record.n_evaluations = obj.n_evals
    record.message = str(res.message)
    # (the iterations of the run whose end is kept: a restart's where one was)
    record.hit_max = bool((res.nit if restart_nit is None else restart_nit) >= max_iter)
    record.converged = bool(np.isfinite(record.objective) and not record.hit_max)
    record.seconds = time.perf_counter() - t0
    return x, record


def whitened_run(
    obj,
    x0,
    A,
    bounds,
    max_iter,
    tol,
    diag_idx,
    stages,
    name="whitened",
    bounded="laplace",
    newton_stop=False,
):
    """L-BFGS-B on ``obj`` from ``x0`` on the whitened coordinates ``z`` (``x = x0 + A
    z``); the result (``x``, ``fun``, ``nit``, ``message``) on the parameters, its stages
    appended to ``stages`` (``name``, then ``bounded`` for the bounded run below).

    Where L-BFGS-B's own model still expects a decrease at its stop (as
    :func:`~sklearn_glmm._engine.stage._laplace_stage` restarts), or its end is not
    finite, the fit goes on with the ordinary bounded stage from the better point.

    ``newton_stop``: the run also ends at an iterate where the decrease a Newton step
    with ``A``'s curvature predicts, ``g' A A' g / 2``, is below a hundredth of ``tol``
    relative to the objective (L-BFGS-B's own test asks for an iteration with less
    decrease than ``tol``; after a Newton step that lands, the next can only probe
    rounding, with up to 20 evaluations in its line search).
    """
    best = _BestPoint(obj.value_and_grad)
    last = {}

    def fun_z(z):
        val, g = best(x0 if not z.any() else x0 + A @ z)
        g_z = A.T @ g
        last.update(z=np.array(z), val=val, g=g_z)
        return val, g_z

    def callback(intermediate_result):
        z = intermediate_result.x
        if "z" not in last or not np.array_equal(z, last["z"]) or not np.isfinite(last["val"]):
            return
        # on z = A0^-1 (x - x0) / size, the Hessian is size^2 times the identity
        if 0.5 * float(last["g"] @ last["g"]) / scale2 <= 0.01 * tol * max(abs(last["val"]), 1.0):
            raise StopIteration

    n = len(x0)
    # L-BFGS-B's first step has unit length: on z scaled by the first gradient's
    # length it is the whole Newton step (the gradient at x0 is the run's own first
    # evaluation, remembered by the objective)
    size = float(np.linalg.norm(A.T @ obj.value_and_grad(x0)[1]))
    scale2 = 1.0
    if np.isfinite(size) and size > 0.0:
        A = A * size
        scale2 = size * size
    back = np.linalg.inv(A.T)  # g = A^-T g_z
    # |g|_inf <= |A^-T|_inf |g_z|_inf: the bounded run's criterion on the gradient
    gtol = 1e-6 / float(np.max(np.sum(np.abs(back), axis=1)))
    stop = callback if newton_stop else None
    res = minimize_lbfgsb(fun_z, np.zeros(n), [(None, None)] * n, max_iter, tol, gtol, 20, stop)
    if res.status == 99:  # (the callback's stop)
        res.message = "CONVERGENCE: PREDICTED NEWTON DECREASE <= TOL / 100"
    try:  # what L-BFGS-B's own model still expects to gain (on z)
        left = float(0.5 * res.jac @ res.hess_inv.matvec(res.jac))
    except (AttributeError, ValueError):
        left = np.inf
    if best.x is not None and not res.fun <= best.val:
        left = np.inf  # it ended on a worse point than it saw: the best is kept
    res.x, res.jac = x0 + A @ res.x, back @ res.jac
    res = best.settle(res)
    stages.append((name, float(res.fun), int(res.nit), str(res.message)))
    x = canonical_factors(obj.data, res.x)
    if not np.array_equal(x, res.x):
        res.x, res.fun = x, obj.evaluate(x)
    if not np.isfinite(res.fun) or not left <= RESTART_MIN_DECREASE:
        start = res.x if np.isfinite(res.fun) else x0
        res = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx)
        stages.append((bounded, float(res.fun), int(res.nit), str(res.message)))
        return res
    return _snap_to_zero(obj, res, diag_idx)
