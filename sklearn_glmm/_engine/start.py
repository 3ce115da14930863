"""Starting values of a fit and the bounds of its parameters.

The fixed effects and the family's own parameters start at the GLM's optimum (on an
evenly strided subset of rows for large data), the Cholesky diagonals at a
method-of-moments estimate from the GLM's scores; the bounds keep the diagonals
non-negative, as lme4 does.
"""

from __future__ import annotations

import numpy as np

from .blas import single_threaded_blas
from .blocks import interior_coefficients
from .glm_newton import newton_optimum
from .lbfgsb import _quiet_trial_points, _run_lbfgsb
from .objective import GLMObjective, subset_rows

# rows above which the GLM start (and the mixed model's first stage) reads a subset
_SUBSAMPLE_ROWS = 200_000
_SUBSAMPLE_TARGET = 50_000


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
    beta, shift, has_intercept = mean_start(d)
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


def mean_start(d):
    """``(beta, shift, has_intercept)``: fixed effects with the intercept at the link of
    the mean outcome (as R's glm starts: from ``eta = 0`` the first Newton step for counts
    of 1e3 or more overshoots into overflow) and every slope at 0; ``shift``, the
    intercept that takes out the offset's weighted mean."""
    beta = np.zeros(d.n_beta)
    has_intercept = d.n_beta > 0 and np.all(d.X[:, 0] == d.X[0, 0]) and d.X[0, 0] != 0
    wsum = np.sum(d.weights)
    shift = 0.0
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
    return beta, shift, has_intercept


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
        settled = np.isfinite(value)  # (Newton converged, nowhere clipped)
        if data.n_extra and glm.data is data and (data.factors or not settled):
            x_glm, value = _glm_with_extras(data, beta0, extra0)
            if not settled:
                # Newton on the family's default parameters went off towards infinity (a
                # zero-truncated NB1 running to a step in a predictor, where the counts
                # are near its plateau as mu -> 0): the GLM from the plain start as well
                x_glm, value = min(
                    (x_glm, value),
                    _glm_with_extras(data, mean_start(data)[0], extra0),
                    key=lambda fit: fit[1] if np.isfinite(fit[1]) else np.inf,
                )
            if data.factors:
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
    return glm_optimum(data, np.concatenate([beta0, extra0]))


def glm_optimum(data, x0, max_iter: int = 200) -> tuple:
    """``(x, -2 log L)`` at the GLM's optimum over ``(beta, the family's parameters)``
    from ``x0``: Newton's method where the family gives its parameter's second
    derivatives (NB2, :mod:`.glm_newton`), else (or where it stops short) L-BFGS-B
    (relative tolerance 1e-9) from its last point."""
    glm = GLMObjective(data)
    x, value, x0 = newton_optimum(glm, x0)
    if x is not None:
        return x, value
    bounds = [(None, None)] * data.n_beta + list(data.extra_bounds)
    res = _run_lbfgsb(glm.value_and_grad, x0, bounds, max_iter, 1e-9)
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
