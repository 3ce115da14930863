"""A family's ridge towards a limit distribution, and whether a fit lies on it.

The zero-truncated NB2 tends to the logarithmic series as ``theta -> 0`` and
``mu -> 0`` with ``mu / theta`` held (``Family.limit_ridge``). On counts that are
nearly all 1 the likelihood can rise along that ridge without end: the optimiser then
stops somewhere on it, and only the intercept minus ``log theta`` is determined. The
ridge is a direction in the parameters (the linear predictor's intercept and the
family's blocks, down together); the check evaluates the objective
:data:`LIMIT_STEP` further along it than the fit's point. No worse there (within
``ridge.FLAT_TOL`` of -2 log L) means the fit lies on the ridge: the results then read
the model at its end (``_fit_checks.ridge_end_covariance``), whose likelihood depends
on ``log(mu / theta)`` alone (:func:`limit_model_directions`).
"""

from __future__ import annotations

import numpy as np

from .lbfgsb import bound_arrays
from .ridge import FLAT_TOL
from .stage import _laplace_stage

# how far along the ridge (in the intercept and log theta) the check evaluates: the
# likelihood approaches its limit like theta (e^-20 = 2e-9 of the way left)
LIMIT_STEP = 20.0


def _constant_coefficients(D) -> np.ndarray | None:
    """Coefficients ``c`` with ``D @ c = 1`` on every row (a design's intercept, or its
    columns that sum to one), or None where the design has no such direction."""
    if D.shape[0] == 0 or D.shape[1] == 0:
        return None
    if D[0, 0] != 0.0 and np.all(D[:, 0] == D[0, 0]):  # an intercept column (no solve)
        c = np.zeros(D.shape[1])
        c[0] = 1.0 / D[0, 0]
        return c
    ones = np.ones(D.shape[0])
    c = np.linalg.lstsq(D, ones, rcond=None)[0]
    return c if np.allclose(D @ c, ones, rtol=0.0, atol=1e-8) else None


def _ridge_parts(data):
    """``(used, blocks)``: the used rows and, per ridge block, its position in the
    parameter vector, its width and its design on the used rows (a column of ones for a
    scalar); None where the family has no ridge to a limit or its data are not in
    memory."""
    ridge = getattr(data.family, "limit_ridge", None)
    X = getattr(data, "X", None)
    if ridge is None or X is None or np.ndim(X) != 2:
        return None
    used = np.asarray(data.weights) > 0
    designs = data.extra_designs or (None,) * len(data.family.blocks)
    out, k = [], data.n_beta + data.n_theta
    for j, D in enumerate(designs):
        width = 1 if D is None else D.shape[1]
        if j in ridge.blocks:
            out.append((k, width, np.ones((int(used.sum()), 1)) if D is None else D[used]))
        k += width
    return used, out


def ridge_direction(data) -> np.ndarray | None:
    """The direction of the family's ridge to its limit in the parameter vector (moving
    every row's linear predictor and the ridge's blocks down by one), or None where the
    family has no such ridge or the model cannot move along it (no intercept in the
    fixed effects or in a block's design, data not in memory)."""
    parts = _ridge_parts(data)
    if parts is None:
        return None
    used, blocks = parts
    beta = _constant_coefficients(np.asarray(data.X)[used])
    if beta is None:
        return None
    out = np.zeros(data.n_beta + data.n_theta + data.n_extra)
    out[: data.n_beta] = beta
    for k, width, D in blocks:
        c = _constant_coefficients(np.asarray(D))
        if c is None:
            return None
        out[k : k + width] = c
    return out


def limit_model_directions(data) -> np.ndarray | None:
    """The directions (columns, in the parameter vector) along which the limit model's
    likelihood is flat, for a family with a ridge to its limit (:func:`ridge_direction`,
    else None): those that leave ``log(mu / theta)`` unchanged on every row, the
    fixed effects' linear predictor minus the ridge blocks' designs' (the ridge's own
    direction among them; with a dispersion model, a predictor of both parts moving in
    both). Near the limit the likelihood is nearly flat along all of them."""
    if ridge_direction(data) is None:
        return None
    used, blocks = _ridge_parts(data)
    X = np.asarray(data.X)[used]
    M = np.hstack([X] + [-np.asarray(D) for _, _, D in blocks])
    # (from the columns' cross-products: no array of the rows' size squared)
    evals, evecs = np.linalg.eigh(M.T @ M)
    null = evecs[:, evals <= 1e-10 * max(float(evals[-1]), 1e-300)]
    out = np.zeros((data.n_beta + data.n_theta + data.n_extra, null.shape[1]))
    out[: data.n_beta] = null[: data.n_beta]
    at = data.n_beta
    for k, width, _ in blocks:
        out[k : k + width] = null[at : at + width]
        at += width
    return out


def limit_gain(obj, x, fun) -> float | None:
    """What -2 log L gains (``fun``, its value at ``x``, minus its value there) at
    :data:`LIMIT_STEP` further along the family's ridge to its limit, towards the limit
    (at half and a quarter of that step where the objective cannot be evaluated so far
    out; None where it cannot at any, or without such a ridge). The objective is left as
    it was at ``x``."""
    direction = ridge_direction(obj.data)
    if direction is None or not np.isfinite(fun) or not hasattr(obj, "snapshot"):
        return None
    snap = obj.snapshot()
    try:
        for step in (LIMIT_STEP, LIMIT_STEP / 2, LIMIT_STEP / 4):
            far = _value_at(obj, np.asarray(x, dtype=float) - step * direction)
            if np.isfinite(far):
                return float(fun - far)
    finally:
        obj.restore(snap)
    return None


def _value_at(obj, x) -> float:
    """The objective at ``x``; ``inf`` where it cannot be evaluated there."""
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return float(obj.evaluate(x))
    except (FloatingPointError, np.linalg.LinAlgError):
        return np.inf


# where the restart from a fit on the ridge starts: the ridge's point with its blocks at
# this value (log theta 0: theta 1)
RESTART_AT = 0.0


def _ridge_level(data, x) -> float:
    """The first ridge block's value at ``x``, averaged over the used rows (the scalar
    itself without a design): one step along :func:`ridge_direction` moves it by one."""
    used, blocks = _ridge_parts(data)
    k, width, D = blocks[0]
    return float(np.mean(np.asarray(D) @ x[k : k + width]))


def leave_limit_ridge(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """The better of ``x`` and a fit restarted off the family's ridge to its limit, for
    a fit on it (:func:`limit_gain` no worse further along): from the ridge's point with
    its blocks at :data:`RESTART_AT` (``theta`` 1, ``mu / theta`` held). A start near
    the ridge (the nested GLM's, whose own optimum can lie on it) is drawn along it,
    while an optimum off it can be higher (a simulated zero-truncated NB2 data set:
    0.0195 higher in log-likelihood, at ``theta`` 0.24). Returns ``(x, fun)``."""
    gain = limit_gain(obj, x, fun)
    if gain is None or gain < -FLAT_TOL:
        return x, fun
    direction = ridge_direction(obj.data)
    start = np.clip(x + (RESTART_AT - _ridge_level(obj.data, x)) * direction, *bound_arrays(bounds))
    r = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx)
    record.stages.append(("off the limit ridge", float(r.fun), int(r.nit), str(r.message)))
    if r.fun < fun:
        return r.x, float(r.fun)
    return x, fun
