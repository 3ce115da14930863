"""Outer optimisation over (beta, theta, extra) and the record of how a fit ran.

Order of calls in :func:`fit_objective`:

1. ``starting_point`` — the GLM without random effects (``glm_start``, its optimum
   kept on the objective for the GLM bound) gives starting fixed effects;
2. L-BFGS-B on the Laplace objective with its analytic gradient (bounds keep
   the Cholesky diagonals of theta non-negative, as lme4 does); zero diagonals
   are probed and the fit resumed (``_laplace_stage``); extra parameters drifting
   on a flat ridge are settled on their bound (``_settle_flat_extra``);
3. for ``n_agq > 1``, L-BFGS-B again on the AGQ objective started at the
   Laplace optimum, with the exact AGQ gradient.

:func:`sklearn_glmm._engine.converge.check_optimum` then checks the optimum (the GLM
bound, a Newton polish, the Hessian for the standard errors and the convergence
checks).
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import ThreadpoolController

from .blocks import interior_coefficients
from .lbfgsb import minimize_lbfgsb
from .modes import _PROBE_SCALES
from .objective import GLMObjective, Objective, subset_rows


@dataclass
class FitRecord:
    """How one fit ran (like MixedModels.jl's OptSummary)."""

    initial: np.ndarray
    final: np.ndarray = None
    objective: float = np.nan
    n_evaluations: int = 0
    n_iter: int = 0
    optimizer: str = "L-BFGS-B"
    message: str = ""
    converged: bool = False
    hit_max: bool = False  # a stage stopped at max_iter iterations
    max_grad: float = np.nan
    max_scaled_grad: float = np.nan
    gradient_ok: bool = True
    hessian_pd: bool = True
    flat_directions: bool = False
    negative_curvature: bool = False
    # Cholesky diagonals at zero along which the objective still falls (indices)
    rising_off_zero: tuple = ()
    glm_objective: float = np.nan  # -2 log L of the nested GLM (no random effects)
    # directions of the parameters along which the likelihood is constant by
    # construction (``equal_likelihood.unidentified_directions``: columns), or None
    unidentified: np.ndarray = field(default=None, repr=False)
    # the covariance over the identified directions (``converge.identified_covariance``)
    identified_covariance: np.ndarray = field(default=None, repr=False)
    # parameters the levels do not identify, from the design (``equal_likelihood.
    # design_count``), and points of their set of equal likelihood around the fit
    # (rows: ``equal_likelihood.points_on_the_set``), or None
    n_unidentified: int = 0
    set_points: np.ndarray = field(default=None, repr=False)
    # groups of factors (indices) that group the rows identically and whose covariances
    # the likelihood reads only together (``equal_likelihood.aliased_groups``)
    aliased: tuple = ()
    competing_modes: np.ndarray = field(default=None, repr=False)  # levels, two modes
    hessian: np.ndarray = field(default=None, repr=False)
    covariance: np.ndarray = field(default=None, repr=False)
    # a separated fit's limit model: (its covariance on the complement of the
    # separating directions, without NaN, and those directions as columns)
    limit_covariance: tuple = field(default=None, repr=False)
    # a Laplace fit's distance, in standard errors, from a Newton step of the adaptive
    # quadrature objective (``quadrature_check``); None where not computed
    quadrature_shift: float = None
    seconds: float = 0.0
    stages: list = field(default_factory=list)

    def __repr__(self):
        return (
            f"FitRecord(objective={self.objective:.6f}, converged={self.converged}, "
            f"n_iter={self.n_iter}, n_evaluations={self.n_evaluations}, "
            f"max_scaled_grad={self.max_scaled_grad:.3g}, message={self.message!r})"
        )


def _glm_rows(obj):
    """The objective itself (its ``_derivs`` serve a GLM), or a GLM on an evenly strided
    subset of the rows of large data."""
    d = obj.data
    n = len(d.y)
    if n <= _SUBSAMPLE_ROWS:
        return obj
    mask = np.zeros(n, dtype=bool)
    mask[:: n // _SUBSAMPLE_TARGET + 1] = True
    return GLMObjective(subset_rows(d, mask))


def glm_start(obj, extra0: np.ndarray, max_iter: int = 50, with_value: bool = False):
    """Fixed effects of the model without random effects (Newton/IRLS, step-halving).

    With ``with_value``, returns ``(beta, F)`` where ``F = -2 log L`` of the GLM at its
    optimum when Newton converged there (NaN otherwise: not converged, or clipped).
    """
    d = obj.data
    extra0 = d.extra_values(extra0)  # the family's values of its blocks' coefficients
    beta = np.zeros(d.n_beta)
    # Start the intercept at the link of the mean outcome, as R's glm does: from
    # eta = 0 the first Newton step for counts of 1e3 or more overshoots into overflow.
    has_intercept = d.n_beta > 0 and np.all(d.X[:, 0] == d.X[0, 0]) and d.X[0, 0] != 0
    wsum = np.sum(d.weights)
    shift = 0.0  # the intercept that takes out the offset's weighted mean
    if has_intercept and wsum > 0:
        ybar = np.sum(d.weights * d.y) / wsum
        off = np.sum(d.weights * d.offset) / wsum
        if not d.family.has_trials:
            eta0 = d.family.link.link(max(ybar, 1e-8))
        else:
            tbar = np.sum(d.weights * d.trials) / wsum
            p = min(max(ybar / tbar, 1e-8), 1 - 1e-8) if tbar > 0 else 0.5
            eta0 = d.family.link.link(p)
        beta[0] = (eta0 - off) / d.X[0, 0]
        shift = -off / d.X[0, 0]
    beta_start = beta.copy()
    ll_old = -np.inf
    der = None
    for _ in range(max_iter):
        if der is None:  # else the derivatives at the point the line search accepted
            der = obj._derivs(d.X @ beta + d.offset, extra0)
        # |w|: where the log-density is convex in eta (zero-truncated NB, zero-inflated, NB1
        # counts) a Newton step on the signed curvature can head for a minimum
        H = d.X.T @ (np.abs(der.w)[:, None] * d.X) + 1e-8 * np.eye(d.n_beta)
        try:
            step = np.linalg.solve(H, d.X.T @ der.d1)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        for _h in range(30):
            cand = beta + t * step
            der = obj._derivs(d.X @ cand + d.offset, extra0)
            ll = der.loglik.sum()
            if np.isfinite(ll) and ll >= ll_old - 1e-10:
                break
            t *= 0.5
        beta, done = cand, abs(ll - ll_old) < 1e-10 * (1 + abs(ll))
        ll_old = ll
        if done:
            break
    converged = bool(d.n_beta == 0 or done)
    if d.n_beta == 0:
        ll_old = obj._derivs(d.offset, extra0).loglik.sum()
    if not np.all(np.isfinite(beta)):
        beta, converged = beta_start, False
    # keep starting values moderate (separation would push them to infinity): |x beta| <= 15
    # for a typical row, the intercept's window around the one that takes out the offset's
    # mean (a constant added to the offset moves it, as it moves the optimum's); a log-link
    # intercept may be large (counts of 1e8: 18.4) and cannot diverge upwards
    lim = 15.0 / np.maximum(np.sqrt(np.mean(d.X**2, axis=0)), 1e-12)
    lo, hi = -lim, lim.copy()
    if has_intercept:
        lo[0], hi[0] = shift - lim[0], shift + lim[0]
    if has_intercept and not d.family.has_trials:
        hi[0] = max(hi[0], beta_start[0] + lim[0])
    clipped = np.clip(beta, lo, hi)
    if not with_value:
        return clipped
    exact = converged and np.array_equal(clipped, beta) and np.isfinite(ll_old)
    return clipped, (-2.0 * float(ll_old) if exact else np.nan)


def starting_point(obj, glm_fit=None) -> np.ndarray:
    """GLM fixed effects and family parameters, moment-based Cholesky diagonals.

    The diagonals start at a method-of-moments estimate from the GLM's scores
    (:func:`_moment_theta`), or at 0.5 for families with extra parameters (lme4
    starts at 1): fewer evaluations, and fewer first steps that overshoot onto
    a zero variance. The family's own parameters start at the GLM's optimum
    (:func:`_glm_with_extras`), or at their defaults on large data (where the GLM
    is fitted to a subset of rows). ``glm_fit``: :func:`glm_start`'s ``(beta, F)`` on
    every row when made elsewhere (a batch of replicates).
    """
    data = obj.data
    extra0 = data.default_extra()
    theta0 = [
        _structure_start(f, np.where(f.theta_rows == f.theta_cols, 0.5, 0.0)) for f in data.factors
    ]
    # the GLM's trial steps may overflow (worth -inf to its line search, not a warning)
    with single_threaded_blas(), _quiet_trial_points():
        glm = _glm_rows(obj) if glm_fit is None else obj
        beta0, value = glm_start(glm, extra0, with_value=True) if glm_fit is None else glm_fit
        if not data.n_extra and glm.data is data:
            # the GLM's optimum, kept for the check that the mixed model ends no lower
            # (on a subset of rows, the check fits it)
            obj.glm_optimum = (np.concatenate([beta0, extra0]), value)
        if data.n_extra and data.factors and glm.data is data:
            x_glm, value = _glm_with_extras(data, beta0, extra0)
            obj.glm_optimum = (x_glm, value)
            beta0, extra0 = (
                x_glm[: data.n_beta],
                _interior_extras(data, x_glm[data.n_beta :]),
            )
        # with extra parameters (NB theta, zero inflation) at their defaults the GLM's
        # curvatures are a poor guide: the plain start there
        if data.factors and data.family.n_extra == 0:
            der = obj._derivs(data.X @ beta0 + data.offset, extra0)
            theta0 = [_structure_start(f, _moment_theta(f, der)) for f in data.factors]
    theta0 = np.concatenate(theta0) if theta0 else np.zeros(0)
    return np.concatenate([beta0, theta0, extra0])


def _glm_with_extras(data, beta0, extra0):
    """The GLM's optimum over the fixed effects and the family's own parameters.

    Kept for the check that the mixed model ends no lower, and the mixed model's start:
    from there it takes fewer evaluations, and NB theta does not start where it would
    absorb the variation between groups (a zero variance the optimiser cannot leave).
    """
    bounds = [(None, None)] * data.n_beta + list(data.extra_bounds)
    x0 = np.concatenate([beta0, extra0])
    res = _run_lbfgsb(GLMObjective(data).value_and_grad, x0, bounds, 200, 1e-9)
    return res.x, float(res.fun)


def _interior_extras(data, coefs):
    """The family's parameters, each block past its flat side (no overdispersion, no zero
    inflation; for a block with a design, on some of its rows) put back at its default
    start: a start on the ridge stays there (:func:`~.blocks.interior_coefficients`)."""
    return interior_coefficients(data.family.blocks, data.extra_designs, coefs)


def _structure_start(f, theta) -> np.ndarray:
    """A structured factor's start: its SDs at the mean of the Cholesky diagonals
    ``theta`` suggests, its correlations at the structure's own start."""
    if not f.mapped:
        return theta
    diag = theta[f.theta_rows == f.theta_cols]
    return f.structure.start(float(np.mean(diag)) if len(diag) else 0.5)


def _moment_theta(f, der) -> np.ndarray:
    """Cholesky diagonals from the spread of one-step level effects around the GLM.

    For each Z column, every level's one-step estimate ``b_j = sum z d1 / sum w z^2``
    varies with the random effect's variance plus its own sampling variance
    ``1 / sum w z^2``; their difference estimates the variance (method of moments).
    Kept within [0.1, 2] so that a poor estimate is only a poorer start.
    """
    theta = np.zeros(len(f.theta_rows))
    for k, (r, c) in enumerate(zip(f.theta_rows, f.theta_cols)):
        if r != c:
            continue
        z = f.Z[:, r]
        info = np.bincount(f.codes, der.w * z * z, minlength=f.n_levels)
        score = np.bincount(f.codes, der.d1 * z, minlength=f.n_levels)
        ok = info > 1e-8
        if ok.sum() < 2:
            theta[k] = 0.5
            continue
        b = score[ok] / info[ok]
        var = np.mean(b * b) - np.mean(1.0 / info[ok])
        theta[k] = np.clip(np.sqrt(max(var, 0.0)), 0.1, 2.0)
    return theta


def parameter_bounds(data) -> list:
    """L-BFGS-B bounds: Cholesky diagonals >= 0 (as lme4), a structured factor's own
    bounds (its SDs >= 0), the family's extra bounds."""
    theta = []
    for f in data.factors:
        if f.mapped:
            theta += list(f.structure.bounds())
            continue
        theta += [
            (0.0, None) if r == c else (None, None) for r, c in zip(f.theta_rows, f.theta_cols)
        ]
    extra = list(data.extra_bounds)
    return [(None, None)] * data.n_beta + theta + extra


def hessian(obj: Objective, x: np.ndarray) -> np.ndarray:
    """Hessian of the objective at ``x``: in closed form where the objective has it,
    otherwise by central differences of its gradient."""
    with single_threaded_blas(), _quiet_trial_points():
        return _hessian(obj, x)


@contextmanager
def single_threaded_blas():
    """BLAS limited to one thread: the matrices here are small, and idle BLAS
    threads spinning against other work cost more than the arithmetic (3x on
    a busy two-core machine, with scipy's L-BFGS-B calling BLAS every step).

    The limit is process-wide state: fits running in several threads at once
    share one limit, set by the first to enter and restored by the last to
    leave, so that the process ends with the BLAS threads it started with. One
    controller is kept for the process: building a new one rescans the loaded
    libraries, about 6 ms, which is a third of a small fit.
    """
    global _BLAS_CONTROLLER, _BLAS_LIMITER, _BLAS_DEPTH
    with _BLAS_LOCK:
        if _BLAS_CONTROLLER is None:
            _BLAS_CONTROLLER = ThreadpoolController()
        if _BLAS_DEPTH == 0:
            _BLAS_LIMITER = _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
        _BLAS_DEPTH += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


_BLAS_CONTROLLER = None
_BLAS_LIMITER = None
_BLAS_DEPTH = 0
_BLAS_LOCK = threading.Lock()


# a curvature at the modes (a row's -l'': a Poisson row's mean, a binomial row's
# n p (1 - p)) from which the Hessian is taken by differences of the gradient, not in
# closed form: the closed form's sums over rows cancel (terms of the fourth derivative,
# the curvature, times the modes' derivatives), and with means up to 1.1e6 and
# random-slope SDs near 2 its entries moved by 1-4 % between points 1e-13 apart (the
# slope's standard error 0.2775 to 0.2809 with the predictor's units, where differences
# give 0.27687-0.27690 in every unit and glmmTMB 0.276893); at means of 1e5 the move is
# 6e-5
CLOSED_FORM_MAX_CURVATURE = 1e5


def _closed_form_cancels(obj) -> bool:
    """Whether the last point evaluated has a curvature of
    :data:`CLOSED_FORM_MAX_CURVATURE` or more at its modes, in memory or over a
    partitioned fit's partitions (the closed-form Hessian would be rounding there)."""
    top = getattr(obj, "max_curvature", lambda: None)()
    return top is not None and top >= CLOSED_FORM_MAX_CURVATURE


def _hessian(obj: Objective, x: np.ndarray) -> np.ndarray:
    n = len(x)
    # the gradient of the objective in use: Laplace, or the exact AGQ one
    val, g0 = obj.value_and_grad(x)
    block = None
    if np.isfinite(val) and hasattr(obj, "exact_hessian_block") and not _closed_form_cancels(obj):
        # one grouping factor, a family with its fourth derivative: the block in
        # (beta, theta) in closed form at the state just evaluated (no other point;
        # exact where differences are not); the family's own parameters by differences
        block = obj.exact_hessian_block()
        if block is not None and len(block) == n:
            return block
        # a family's one own parameter (NB2's log theta) in closed form too, where given
        col = None
        if block is not None and len(block) == n - 1 and hasattr(obj, "exact_extra_column"):
            col = obj.exact_extra_column()
        if col is not None:
            H = np.empty((n, n))
            H[: n - 1, : n - 1] = block
            H[n - 1, :] = col
            H[:, n - 1] = col
            return H
    m = 0 if block is None else len(block)
    Hm = np.zeros((n, n))
    steps = _hessian_steps(obj, x)
    if hasattr(obj, "compact_mode_derivatives"):
        obj.compact_mode_derivatives()
    at_x = obj.snapshot()
    # central differences of the analytic gradient: two gradients per parameter,
    # with an O(h^2) error (forward differences' O(h) put standard errors 1e-3 off
    # where a parameter's curvature changes over its step); one-sided, inside the
    # bounds, for a parameter within a step of one. Each starts from the modes at x
    # (moved by their derivatives at x); no evaluation starts from the shifted
    # points, so their gradients leave the modes' derivatives out.
    bounds = parameter_bounds(obj.data)
    with getattr(obj, "without_mode_derivatives", nullcontext)():
        for k in range(m, n):
            Hm[:, k] = _difference_column(obj, x, g0, at_x, k, steps[k], bounds[k])
    obj.restore(at_x)  # the fitted state (mode, factorisation) without a new evaluation
    if block is not None:
        Hm[:m, :m] = block
        Hm[m:, :m] = Hm[:m, m:].T
    return 0.5 * (Hm + Hm.T)


def _difference_column(obj, x, g0, at_x, k, h, bound) -> np.ndarray:
    """Column ``k`` of the Hessian by differences of the gradient: central where both
    points lie within ``bound``, otherwise the one-sided difference that does."""
    lo, hi = bound
    up = hi is None or x[k] + h <= hi
    down = lo is None or x[k] - h >= lo
    e = np.zeros(len(x))
    e[k] = h

    def grad(point):
        obj.restore(at_x)
        return obj.value_and_grad(point)[1]

    if up and down:
        return (grad(x + e) - grad(x - e)) / (2.0 * h)
    if up or not down:
        return (grad(x + e) - g0) / h
    return (g0 - grad(x - e)) / h


def _hessian_steps(obj, x) -> np.ndarray:
    """Difference steps at ``x`` (just evaluated with its gradient).

    1e-4 of each parameter's size, at least 1e-4; but at most a tenth of the
    parameter's standard error as its Gauss-Newton curvature puts it, where the data
    are so informative (counts or trials in the thousands to millions) that 1e-4 of a
    coefficient moves the linear predictor by many standard errors, and the
    gradient's change over the step is then not its derivative. A Cholesky diagonal or
    a structure's SD below :data:`_SMALL_DIAGONAL` (not zero) also at most a hundredth
    of its value: the curvature in a small standard deviation changes on the scale of
    the value.
    """
    steps = 1e-4 * np.maximum(1.0, np.abs(x))
    try:
        gn = obj.gauss_newton_diagonal() if getattr(obj, "has_mode_derivatives", False) else None
    except (AttributeError, KeyError, TypeError):  # no state to read it from
        gn = None
    if gn is not None:
        m = len(gn)
        with np.errstate(divide="ignore"):
            se = np.where(gn > 0.0, np.sqrt(2.0 / gn), np.inf)
        steps[:m] = np.minimum(steps[:m], 0.1 * se)
    for k in _sd_parameters(obj.data):
        if 0.0 < x[k] < _SMALL_DIAGONAL:
            steps[k] = min(steps[k], 1e-2 * x[k])
    return steps


def _sd_parameters(data) -> list:
    """Indices of the parameters that are standard deviations: Cholesky diagonals, and
    a structure's SD parameters."""
    first = data.n_beta
    return [k for k in range(first, first + data.n_theta) if len(data.sd_columns(k))]


_SMALL_DIAGONAL = 1e-2


class _BestPoint:
    """The objective, remembering the best finite point it was evaluated at.

    A failed evaluation is worth ``inf`` to L-BFGS-B; its line search may still end
    on such a point (or stop with a worse one than it saw). The result is then the
    best point evaluated, never the failed one.
    """

    def __init__(self, fun):
        self.fun = fun
        self.val, self.x = np.inf, None

    def __call__(self, x):
        val, g = self.fun(x)
        if val < self.val:
            self.val, self.x = val, np.array(x, dtype=float)
        return val, g

    def settle(self, res):
        if self.x is not None and not res.fun <= self.val:
            val, g = self.fun(self.x)
            res.x, res.fun, res.jac = self.x, val, g
            res.message = f"{res.message} (best point evaluated kept)"
        return res


def _run_lbfgsb(fun, x0, bounds, max_iter, tol, scale=None, stop=None):
    """L-BFGS-B; with ``scale`` it works on ``z = scale * x`` (a diagonal preconditioner).

    ``stop(x)``, asked at every iterate, ends the run early when it says so
    (``res.stopped`` is then True).
    """
    best = _BestPoint(fun)
    stopped = []

    def callback(intermediate_result):
        x = intermediate_result.x
        if stop(x if scale is None else x / scale):
            stopped.append(True)
            raise StopIteration

    callback = None if stop is None else callback
    if scale is None:
        res = minimize_lbfgsb(best, x0, bounds, max_iter, tol, 1e-6, 20, callback)
        res = best.settle(res)
        res.stopped = bool(stopped)
        return res
    fun = best
    x0 = np.asarray(x0, dtype=float)
    z0 = x0 * scale

    def fun_z(z):
        # the start as given, not a rounding away from it (``z0 / scale`` need not be
        # ``x0``): the objective remembers its last point, and a new one costs an evaluation
        val, g = fun(x0 if np.array_equal(z, z0) else z / scale)
        return val, g / scale

    zb = [
        (None if lo is None else lo * sc, None if hi is None else hi * sc)
        for (lo, hi), sc in zip(bounds, scale)
    ]
    # |g_z| <= gtol / max(scale) keeps |g_x| <= gtol, the unscaled criterion
    res = minimize_lbfgsb(fun_z, z0, zb, max_iter, tol, 1e-6 / np.max(scale), 20, callback)
    res.x = res.x / scale
    res.jac = res.jac * scale
    res = best.settle(res)
    res.scale = scale
    res.stopped = bool(stopped)
    return res


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
    the better optimum is kept. ``stop`` (see :func:`_ridge_stop`) may end the
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
    for k in [k for k in diag_idx if res.x[k] < 1e-3 and not res.stopped]:
        best_x = _probe_zero_diagonal(obj, res, k, bounds)
        if best_x is not None:
            # a value below the grid (data that resolve tiny SDs): the curvature there is
            # far from the start's, and the run is scaled by its own
            sc = _optimiser_scale(obj, best_x) if best_x[k] < _PROBE_GRID[0] else scale
            res3 = _run_lbfgsb(obj.value_and_grad, best_x, bounds, max_iter, tol, sc)
            nit += res3.nit
            if res3.fun < res.fun - 1e-8 and _probed_basin_holds(obj, res3.x, bounds):
                res = res3
            else:
                obj.evaluate(res.x)
    res.nit = nit
    res.scale = scale
    return _snap_to_zero(obj, res, diag_idx)


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
    from .converge import at_bound  # (converge builds on this module)

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
        for t in _PROBE_WIDE if obj.data.family.log_concave else ():
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


# SDs past the probe grid at which a zero SD of a log-concave family with its own
# parameters (NB2) is probed too, theta and the fixed effects re-fitted: the trade-off
# between an SD and the dispersion can put the better basin there (six groups of three
# rows: -31.195 at SD 0, -31.269 at 1, -30.667 at 2.7). Not for zero inflation: where
# a level's counts are all zero its conditional density can be nearly flat at the mode,
# and the Laplace objective is far too high in places away from the fit (a ZINB fit
# moved there, 4.2 units "higher", its true likelihood lower)
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
        return _column_partners(data).get(k, []), None
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


def _column_partners(data) -> dict:
    """For each Cholesky diagonal's index in the parameters, the indices below it in its column."""
    out, k = {}, data.n_beta
    for f in data.factors:
        if f.mapped:  # an SD of a structure: no entries below it
            k += f.n_params
            continue
        rows, cols = np.asarray(f.theta_rows), np.asarray(f.theta_cols)
        for j, (r, c) in enumerate(zip(rows, cols)):
            if r == c:
                out[k + j] = [k + i for i in np.flatnonzero((cols == c) & (rows > c))]
        k += len(rows)
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


def fit_objective(
    obj: Objective,
    x0: np.ndarray,
    bounds,
    max_iter: int,
    tol: float,
    diag_idx=None,
    refit_base=None,
):
    """Minimise ``obj`` from ``x0``; return the optimum and its :class:`FitRecord`.

    ``diag_idx`` (default: every parameter bounded below at 0) lists the
    Cholesky diagonals that are moved off zero and retried (``_laplace_stage``).
    ``refit_base``: for a refit from another point than a fresh fit's start (see
    :func:`_level_slope_restarts`).
    """
    if diag_idx is None:
        n_cov = obj.data.n_beta + obj.data.n_theta
        diag_idx = [k for k, b in enumerate(bounds[:n_cov]) if b[0] == 0.0]
    with single_threaded_blas(), _quiet_trial_points():
        return _fit_objective(obj, x0, bounds, max_iter, tol, diag_idx, refit_base)


def _quiet_trial_points():
    """Floating-point warnings off while the optimiser probes: a trial point whose
    likelihood overflows is worth +inf to it (the objective says so), not a message to
    the user. The final estimates are checked for finiteness separately."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _subsample_start(obj, x0, bounds, max_iter, tol, diag_idx):
    """Starting values from a fit to a random subset of the first factor's levels.

    On large data most outer iterations only travel from the GLM start to the
    neighbourhood of the optimum; a fit to ~50,000 rows (fixed seed, so fits
    stay reproducible) gets there at a fraction of the cost.
    """
    data = obj.data
    n = len(data.y)
    if n < _SUBSAMPLE_ROWS or not data.factors or not isinstance(obj, Objective):
        return x0
    f0 = data.factors[0]
    n_pick = min(f0.n_levels, max(500, int(f0.n_levels * _SUBSAMPLE_TARGET / n)))
    if n_pick >= f0.n_levels:
        return x0
    chosen = np.random.default_rng(0).choice(f0.n_levels, size=n_pick, replace=False)
    sub = Objective(subset_rows(data, np.isin(f0.codes, chosen)), 1)
    res = _laplace_stage(sub, x0, bounds, max_iter, tol, diag_idx)
    # its state refers back to it (a reference cycle): released now, the subset's
    # arrays go with the objective instead of waiting for the garbage collector
    sub.release_state()
    return res.x if np.isfinite(res.fun) else x0


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
_SUBSAMPLE_ROWS = 200_000
_SUBSAMPLE_TARGET = 50_000


def _fit_objective(obj, x0, bounds, max_iter, tol, diag_idx, refit_base=None):
    x0 = _subsample_start(obj, x0, bounds, max_iter, tol, diag_idx)
    t0 = time.perf_counter()
    record = FitRecord(initial=np.array(x0, dtype=float))
    n_agq = obj.n_agq
    obj.n_agq = 1
    x0 = _finite_start(obj, x0, diag_idx)
    res = _laplace_stage(obj, x0, bounds, max_iter, tol, diag_idx, _ridge_stop(obj, bounds))
    record.stages.append(("laplace", float(res.fun), int(res.nit), str(res.message)))
    if res.stopped:
        # left a ridge early: its bound, or on to the run's own end (from where it
        # stopped, or from a dip of the ridge below the bound)
        settled, x, dip = _settle_after_ridge_stop(obj, res, bounds, max_iter, tol, diag_idx)
        if dip:
            res = _fit_from_dip(obj, x, bounds, max_iter, tol, diag_idx, record.stages)
        else:
            res, name = settled, "ridge bound"
            if settled is None:
                res, name = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx), "laplace"
            record.stages.append((name, float(res.fun), int(res.nit), str(res.message)))
    x = _settle_flat_extra(
        obj,
        res.x,
        res.fun,
        bounds,
        max_iter,
        tol,
        diag_idx,
        record.stages,
        scanned=record.stages[-1][0] == "ridge bound",
    )
    x = _off_block_ridges(obj, x, bounds, max_iter, tol, diag_idx, record.stages)
    settled = x
    x = _structure_restarts(obj, x, bounds, max_iter, tol, diag_idx, record)
    x, restart_nit = _level_slope_restarts(
        obj, x, bounds, max_iter, tol, diag_idx, record, refit_base
    )
    if not np.array_equal(x, settled):
        # a restart's end: a family parameter it left drifting on its flat side (NB2's
        # theta towards the Poisson limit) settled as the first stage's was
        x = _settle_flat_extra(
            obj, x, float(obj.evaluate(x)), bounds, max_iter, tol, diag_idx, record.stages
        )
    # (the iterations of the stage whose end is kept: a restart's where one was)
    hit_max = (res.nit if restart_nit is None else restart_nit) >= max_iter
    if n_agq > 1:
        res = _agq_stage(obj, x, n_agq, bounds, max_iter, tol, res.scale, diag_idx, record.stages)
        x = res.x
        hit_max = hit_max or res.nit >= max_iter
    record.objective = float(obj.evaluate(x))
    record.final = x
    record.n_iter = int(sum(s[2] for s in record.stages))
    record.n_evaluations = obj.n_evals
    record.message = str(res.message)
    record.hit_max = bool(hit_max)
    record.converged = bool(np.isfinite(record.objective) and not hit_max)
    record.seconds = time.perf_counter() - t0
    return x, record


def _agq_stage(obj, x, n_agq, bounds, max_iter, tol, scale, diag_idx, stages):
    """The quadrature objective (``n_agq`` nodes) minimised from the Laplace optimum ``x``
    (``obj`` still on Laplace); ``obj`` is left on the quadrature.

    The two optima are near and so are their curvatures: where the Laplace Hessian at
    ``x`` is at hand in closed form and positive definite, with no parameter on a bound,
    L-BFGS-B runs on coordinates whitened by it (:func:`.refit.whitened_run`: its first
    step the Newton step with that curvature; about half the iterations of the scaled run
    on the reference cases); else on the Laplace stage's scaling.
    """
    from .refit import whitened_run, whitening  # (it builds on this module)

    A = None
    if np.isfinite(obj.evaluate(x)):
        H = obj.exact_hessian_block()
        A = whitening(obj.data, x, H, bounds) if H is not None else None
    obj.n_agq = n_agq
    if A is not None:
        return whitened_run(
            obj, x, A, bounds, max_iter, tol, diag_idx, stages, "agq", "agq", newton_stop=True
        )
    # the Laplace stage's scaling serves the (nearby) AGQ objective too
    res = _run_lbfgsb(obj.value_and_grad, x, bounds, max_iter, tol, scale)
    stages.append(("agq", float(res.fun), int(res.nit), str(res.message)))
    return res


def _structure_restarts(obj, x, bounds, max_iter, tol, diag_idx, record):
    """``x``, or a lower optimum found by starting a covariance structure's correlation
    from its ``restart_correlations`` (its SDs from at least their start).

    A correlation's likelihood can have a local optimum on each side: an ``ar1`` fit
    started at rho = 0.3 stopped there (or with its SD at 0, where the correlation is
    flat) up to 0.9 in log-likelihood below the optimum at a negative rho, and a ``cs``
    fit on its lower bound 0.08 below one at rho = 0.9999, both converged. A restart
    that ends lower by more than 1e-6 is kept (a stage ``"structure restart"``).
    """
    data = obj.data
    if not getattr(data, "structured", False):
        return x
    fun = float(obj.evaluate(x))
    first = data.n_beta
    for f in data.factors:
        st, n = f.structure, f.n_params
        starts = getattr(st, "restart_correlations", ()) if f.mapped else ()
        if starts and st.n_cor == 1:
            sd = slice(first, first + st.n_sd)
            cor = first + st.n_sd
            rho0 = float(st.cor_values(x[cor : cor + 1])[0])
            for rho in starts:
                c = st.cor_params([rho])
                if c is None or abs(rho - rho0) < 0.2:
                    continue
                xs = np.array(x, dtype=float)
                xs[cor] = c[0]
                xs[sd] = np.maximum(xs[sd], record.initial[sd])
                res = _laplace_stage(obj, xs, bounds, max_iter, tol, diag_idx)
                if np.isfinite(res.fun) and res.fun < fun - 1e-6:
                    x, fun = res.x, float(res.fun)
                    record.stages.append(("structure restart", fun, int(res.nit), str(res.message)))
        first += n
    obj.evaluate(x)
    return x


# starts of a factor's Cholesky entries tried where one of its slopes is of a predictor
# of the level itself: the plain start, a small one, a large one, (two random effects)
# each sign of the correlation with a small intercept, and where every column is alike
# within levels the moment estimate of the covariance from the levels' effects and
# (with correlations) its rank-one version (:func:`_level_variance_thetas`), and last,
# for three random effects or more, the best optimum so far put on the rank-one
# boundary (:func:`_rank_one_version`). On 10
# Poisson data sets with such slopes (counts 20 to 6e4) the moment start ended 0.2-39.4
# below the best of these on 8; each start alone found the best on 3 to 6 of them. The
# large one (2) is the only start that reached the optimum on a binomial and a negative
# binomial data set of 8 levels, some without any success or count (SDs near 5 there;
# the others ended 0.71 and 2.09 below, converged). With a slope of time beside the
# level predictor's (binomial, 12 levels), every start but the rank-one version of the
# optimum reached ended converged at a local optimum 0.0105 below the rank-one one
# glmer's Nelder-Mead reaches
_LEVEL_SLOPE_DIAGONALS = (0.5, 0.05, 2.0)
_LEVEL_SLOPE_SIGNED = ((0.1, 0.5, 0.1), (0.1, -0.5, 0.1))


def _level_variance_thetas(f, effects) -> list:
    """Starts of the Cholesky entries of factor ``f`` whose rows of ``Z`` are alike
    within each level (``t_j``, :attr:`FactorData.rows_alike_within_levels`), by the
    method of moments from the levels' own effects ``c_j`` around the model without
    random effects (a few Newton steps of each level's shift of the linear predictor,
    ``effects(shifts)`` -> ``(t, w, d1)``, :meth:`level_effects`): each level's effect
    is one scalar of variance ``t_j' S t_j``, so ``c_j^2 - 1 / w_j`` (the square less
    its sampling variance) regressed on the products ``t_j t_j'`` estimates ``S``
    (levels weighted by their information, those whose shift runs away left out),
    which is put on the positive definite side and factored; and, for a term with
    correlations, its rank-one version on the boundary: the same SDs, every
    correlation +-1. A diagonal covariance's SDs alone (one start). Empty where too
    few levels are left, or no variance."""
    shifts = np.zeros(f.n_levels)
    for _ in range(_LEVEL_EFFECT_STEPS):
        t, w, d1 = effects(shifts)
        step = np.where(w > 0.0, d1 / np.where(w > 0.0, w, 1.0), 0.0)
        step = np.clip(np.nan_to_num(step), -1.0, 1.0)  # (a step of e in the log: damped)
        shifts = np.clip(shifts + step, -_LEVEL_EFFECT_LIMIT, _LEVEL_EFFECT_LIMIT)
        if np.max(np.abs(step), initial=0.0) < 1e-8:
            break
    t, w, _ = effects(shifts)
    ok = (w > 1e-8) & (np.abs(shifts) < _LEVEL_EFFECT_LIMIT)
    # a diagonal covariance (lme4's ``||``, ``diag()``): its variances alone
    diagonal = bool(np.all(f.theta_rows == f.theta_cols))
    pairs = [(a, b) for a in range(f.q) for b in range(a + 1) if a == b or not diagonal]
    if ok.sum() <= len(pairs):
        return []
    c, tt, sampling = shifts[ok], t[ok], 1.0 / w[ok]
    # c^2 - 1/w has a variance of about 2 (v + 1/w)^2: levels of little information
    # weigh less (v taken as 1)
    sw = 1.0 / (1.0 + sampling)
    # the fixed effects without random effects are off along t (a log-link intercept
    # absorbs E exp(b)): the effects' part linear in t taken out first
    c = c - tt @ np.linalg.lstsq(tt * sw[:, None], c * sw, rcond=None)[0]
    F = np.stack([tt[:, a] * tt[:, b] * (1.0 if a == b else 2.0) for a, b in pairs], axis=1)
    coef = np.linalg.lstsq(F * sw[:, None], (c * c - sampling) * sw, rcond=None)[0]
    S = np.zeros((f.q, f.q))
    for (a, b), v in zip(pairs, coef):
        S[a, b] = S[b, a] = v
    vals, vecs = np.linalg.eigh(S)
    if not np.all(np.isfinite(vals)) or vals[-1] <= 0.0:
        return []
    S = (vecs * np.maximum(vals, 1e-4 * vals[-1])) @ vecs.T
    if diagonal:  # (the Cholesky factor of a diagonal S: its SDs)
        return [np.sqrt(np.diag(S))[f.theta_rows]]
    # and on the boundary: the same SDs, every correlation +-1 with the signs of the
    # leading eigenvector (a level's variance the square of a line in t_j, where such
    # fits often end)
    edge = _rank_one_cholesky(S, vecs[:, -1])
    return [L[f.theta_rows, f.theta_cols] for L in (np.linalg.cholesky(S), edge)]


def _rank_one_cholesky(S, lead) -> np.ndarray:
    """The Cholesky factor (q, q) of the covariance with the SDs of ``S`` and every
    correlation +-1 with the signs of ``lead`` (its leading eigenvector): a first column
    of SDs, first entry at least 0, the others 0."""
    top = np.where(lead < 0.0, -1.0, 1.0) * np.sqrt(np.maximum(np.diag(S), 0.0))
    edge = np.zeros_like(S)
    edge[:, 0] = top if top[0] >= 0.0 else -top
    return edge


def _rank_one_version(x, parts):
    """``x`` with the covariance of each factor of three random effects or more
    (unstructured) among ``parts`` put on the boundary: the same SDs, every correlation
    +-1 with the signs of its leading eigenvector (:func:`_rank_one_cholesky`); None
    where that changes nothing (no such factor, or each already of rank one). Two
    random effects have a start for each sign of their correlation instead
    (:data:`_LEVEL_SLOPE_SIGNED`); three have four patterns of signs, of which the
    optimum reached picks one."""
    xs = np.array(x, dtype=float)
    for f, part in parts:
        if f.q < 3 or f.n_params != f.q * (f.q + 1) // 2:
            continue
        L = np.zeros((f.q, f.q))
        L[f.theta_rows, f.theta_cols] = x[part]
        S = L @ L.T
        xs[part] = _rank_one_cholesky(S, np.linalg.eigh(S)[1][:, -1])[f.theta_rows, f.theta_cols]
    return None if np.allclose(xs, x, rtol=1e-6, atol=1e-8) else xs


_LEVEL_EFFECT_STEPS = 20
_LEVEL_EFFECT_LIMIT = 10.0


def _level_slope_restarts(obj, x, bounds, max_iter, tol, diag_idx, record, refit_base=None):
    """``x``, or a lower optimum from other starts of the factors with several random
    effects (lme4's unstructured or diagonal covariance) one of whose slopes is of a
    predictor of the level itself (:attr:`FactorData.level_constant`).

    The variance of such a slope rests on how the spread between levels changes with
    the predictor, and its likelihood can have several optima: a Poisson fit of counts
    near 6e4 (102 rows, 40 groups) started at the moment estimates (slope SD 2) ended
    converged and singular, correlation -1, 39.4 in log-likelihood below the optimum
    with SDs near 0.1 and 0.005 that glmmTMB and the plain start reach; others ended at
    interior optima 4.9 below. Each start (:data:`_LEVEL_SLOPE_DIAGONALS`, and for two
    random effects :data:`_LEVEL_SLOPE_SIGNED`; where every column of the factor is
    alike within levels, the moment estimates of :func:`_level_variance_thetas`: on a
    Poisson data set the only start that reached lme4's optimum, 1.05 above the
    others; last, for three random effects or more, the best optimum so far with every
    correlation +-1, :func:`_rank_one_version`) is a whole Laplace stage; one that
    ends lower by more than 1e-6 is kept (a stage ``"level slope restart"``; the others
    ``"level slope restart, not kept"``).
    ``refit_base()``, for a refit from another point (a bootstrap replicate's, from the
    fitted estimate): a fresh fit's start, from which the starts are then made, and
    tried itself. Returns ``(x, nit)``: ``nit`` the iterations of the restart kept (to
    be read against ``max_iter``), None where none was.
    """
    data = obj.data
    first, parts = data.n_beta, []
    for f in data.factors:
        if f.q > 1 and not f.mapped and f.level_constant:
            parts.append((f, np.arange(first, first + f.n_params)))
        first += f.n_params
    if not parts:
        return x, None
    # a refit's starts are a fresh fit's (its start, and the others made from it):
    # from the fitted estimate alone, bootstrap replicates ended up to 3.7 in -2 log L
    # above a fresh fit of their outcome (and others below: neither reaches the lowest
    # optimum every time, both are tried)
    base = refit_base() if refit_base is not None else None
    initial = record.initial if base is None else base
    starts = []
    for value in _LEVEL_SLOPE_DIAGONALS:
        xs = np.array(initial, dtype=float)
        for f, part in parts:
            xs[part] = np.where(f.theta_rows == f.theta_cols, value, 0.0)
        starts.append(xs)
    if all(f.q == 2 and f.n_params == 3 for f, _ in parts):
        for entries in _LEVEL_SLOPE_SIGNED:
            xs = np.array(initial, dtype=float)
            for _, part in parts:
                xs[part] = entries
            starts.append(xs)
    moments = [np.array(initial, dtype=float) for _ in range(2)]
    for k, f in enumerate(data.factors):
        part = next((p for g, p in parts if g is f), None)
        if part is not None and f.rows_alike_within_levels:
            effects = functools.partial(obj.level_effects, k, initial)
            for xs, theta in zip(moments, _level_variance_thetas(f, effects)):
                xs[part] = theta
    starts += [xs for xs in moments if not np.array_equal(xs, initial)]
    if base is not None:  # a refit: also from the fresh fit's own start itself
        starts.append(base)
    fun = float(obj.evaluate(x))
    at_x, best, nit = obj.snapshot(), None, None
    for xs in [*starts, None]:
        if xs is None:  # last: the best optimum so far, of rank one
            xs = _rank_one_version(x, parts)
            if xs is None:
                break
        # (where it is infinite, as a fit's own start: diagonals shrunk until finite)
        res = _laplace_stage(obj, _finite_start(obj, xs, diag_idx), bounds, max_iter, tol, diag_idx)
        kept = bool(np.isfinite(res.fun) and res.fun < fun - 1e-6)
        name = "level slope restart" if kept else "level slope restart, not kept"
        record.stages.append((name, float(res.fun), int(res.nit), str(res.message)))
        if kept:
            obj.evaluate(res.x)  # (its state, kept to be put back)
            x, fun, best, nit = res.x, float(res.fun), obj.snapshot(), int(res.nit)
    obj.restore(at_x if best is None else best)
    return x, nit


def projected_gradient(g: np.ndarray, x: np.ndarray, bounds) -> np.ndarray:
    """Gradient with components pushing against an active bound set to zero."""
    g = g.copy()
    for k, (lo, hi) in enumerate(bounds):
        if lo is not None and x[k] <= lo + 1e-8 and g[k] > 0:
            g[k] = 0.0
        if hi is not None and x[k] >= hi - 1e-8 and g[k] < 0:
            g[k] = 0.0
    return g
