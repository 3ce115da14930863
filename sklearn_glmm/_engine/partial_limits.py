"""A family block's limit on the rows of one value of a two-valued predictor (a check
of :func:`.converge.check_optimum`, after the nested block models).

A family parameter with a design (``dispersion="1 + x"``, ``zero_inflation="1 + x"``)
has, for a predictor of two values (a treatment, a sex), a nested model at each value:
the rows of that value at the block's limit (NB2's Poisson limit, no zero inflation),
those of the other value free. A fit that ended with the block past its flat side on
its rows can lie in the basin of the limit on all of them while a higher optimum has
one value's rows off it: a zero-truncated NB2 with ``dispersion="1 + x0"`` ended with
every row near the Poisson limit (log theta 14 and 15), converged, 0.083 below the
point where the rows of ``x0 = 0`` have theta 32 and those of ``x0 = 1`` the Poisson
limit (by the Laplace value; 0.086 by the integral). The check fits each such nested
model (the predictor's coefficient held where one value's rows lie past the block's
bound whatever the other's, a stage ``"limit at one value of coefficient k"``) from
the fit's point with the free value's rows at the block's start; where it is better
by more than ``FLAT_TOL``, the full model is fitted from its optimum and the better
point kept (:func:`.nested_models._via_nested`). Up to two stages per two-valued column
of such a block, on fits that ended with some of its rows past its flat side (one where
those rows are the ones of one value: the fit's own configuration is not fitted again).

The rows past the flat side can also be those of several values at once (levels of a
factor), of which one holds a higher optimum off the limit: a zero-inflated Poisson fit
with ``ziformula = ~ x1:f + f`` (``f`` of three levels) ended with two levels' rows at
no zero inflation, converged, 1.25 log-likelihood units below glmmTMB's optimum, where
one of them has zero inflation on its rows of small ``x1`` (a logit slope of -5.3). The
fit does not leave the limit on those rows (the gradient vanishes there), nor do the
nested models above (each holds or frees one value's rows whatever the others'). So
each value of a two-valued column whose rows all lie past the flat side, where other
rows do too, is released: the full model is fitted from the fit's point with the
block's coefficients moved (by least squares in its design) to put that value's rows at
the block's start and leave the other rows' values where they are (a stage ``"rows of
one value of coefficient k released"``), and the better point kept where it is better
by more than ``FLAT_TOL``. One stage per such value, on the fits that end in such a
configuration.
"""

from __future__ import annotations

import numpy as np

from .nested_models import _settled, _via_nested
from .ridge import FLAT_TOL
from .stage import _laplace_stage


def block_partial_limits(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """The better of ``(x, fun)`` and the fits from the partial limits of the module
    docstring."""
    data = obj.data
    if data.extra_designs is None or not data.n_extra or not np.isfinite(fun):
        return x, fun
    starts = _partial_limit_starts(data, np.asarray(x, dtype=float), bounds)
    released = _released_starts(data, np.asarray(x, dtype=float), bounds)
    if not starts and not released:
        return x, fun
    at_x, x0 = obj.snapshot(), x
    stage_args = (bounds, max_iter, tol, diag_idx, record)
    for start, held in starts:
        k = held[0][0]
        names = (f"limit at one value of coefficient {k}", f"from the limit at coefficient {k}")
        x, fun = _via_nested(obj, start, held, [], fun, (x, fun), names, stage_args, FLAT_TOL)
    if x is not x0:  # (from the best point so far: the rows past the flat side are its own)
        released = _released_starts(data, np.asarray(x, dtype=float), bounds)
    for start, k in released:
        res = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx)
        name = f"rows of one value of coefficient {k} released"
        record.stages.append((name, float(res.fun), int(res.nit), str(res.message)))
        if res.fun < fun - FLAT_TOL and np.all(np.isfinite(res.x)):
            x, fun = res.x, float(res.fun)
    return _settled(obj, at_x, x0, x), fun


def _usable(block, D) -> bool:
    """Whether block ``block`` of design ``D`` has an intercept, slopes and a flat side
    between finite bounds (the blocks these checks read)."""
    lo, hi = block.bounds
    return (
        D is not None
        and D.shape[1] > 1
        and block.flat_side is not None
        and np.isfinite(lo)
        and np.isfinite(hi)
        and bool(np.all(D[:, 0] == 1.0))
    )


def _clipped(value, bound) -> float:
    """``value`` within ``bound`` (``(lo, hi)``, None for no bound)."""
    lo, hi = bound
    return float(np.clip(value, -np.inf if lo is None else lo, np.inf if hi is None else hi))


def _partial_limit_starts(data, x, bounds) -> list:
    """``(start, [(k, value)])`` per value of each two-valued column ``k`` of a block with
    an intercept and a flat side, past which some of the block's rows lie at ``x``:
    ``value`` puts that value's rows past the block's bound wherever the others' lie
    within it, the intercept puts the others at the block's start. A value whose rows
    are the ones past the flat side at ``x`` is the fit's own basin, and left out."""
    out = []
    k = len(x) - data.n_extra
    for block, D in zip(data.family.blocks, data.extra_designs):
        width = 1 if D is None else D.shape[1]
        past = block.past_flat_side(D @ x[k : k + width]) if _usable(block, D) else None
        if past is not None and np.any(past):
            lo, hi = block.bounds
            towards = 1.0 if block.flat_side[0] == "upper" else -1.0
            for j in range(1, width):
                values = np.unique(D[:, j])
                if len(values) != 2:
                    continue
                for limit, free in (values, values[::-1]):
                    if np.array_equal(past, D[:, j] == limit):
                        continue  # the fit's own configuration: that value's rows past
                    slope = towards * (hi - lo) / (limit - free)
                    start = np.array(x, dtype=float)
                    start[k : k + width] = 0.0
                    start[k] = _clipped(block.start - slope * free, bounds[k])
                    start[k + j] = slope
                    out.append((start, [(k + j, slope)]))
        k += width
    return out


def _released_starts(data, x, bounds) -> list:
    """``(start, k)`` per value of each two-valued column ``k`` of a block of the module
    docstring's kind whose rows all lie past the flat side at ``x`` while other rows do
    too: ``x`` with the block's coefficients moved to put that value's rows at the
    block's start and keep the others' values (least squares in the block's design;
    each coefficient within its bounds). Where every row of the block is past its flat
    side, a value's rows free are the partial limits' own nested models."""
    out = []
    k = len(x) - data.n_extra
    for block, D in zip(data.family.blocks, data.extra_designs):
        width = 1 if D is None else D.shape[1]
        if _usable(block, D):
            coefs = x[k : k + width]
            eta = D @ coefs
            past = block.past_flat_side(eta)
            for j in range(1, width) if np.any(past) and not np.all(past) else ():
                values = np.unique(D[:, j])
                if len(values) != 2:
                    continue
                for value in values:
                    rows = D[:, j] == value
                    if not np.all(past[rows]) or np.array_equal(rows, past):
                        continue  # (the second: the fit's own configuration, all others free)
                    target = np.where(rows, block.start - eta, 0.0)
                    move = np.linalg.lstsq(D, target, rcond=None)[0]
                    start = np.array(x, dtype=float)
                    for i in range(width):
                        start[k + i] = _clipped(coefs[i] + move[i], bounds[k + i])
                    out.append((start, k + j))
        k += width
    return out
