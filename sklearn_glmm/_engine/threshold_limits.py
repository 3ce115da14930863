"""A zero-inflation probability run to 1 past a threshold of a predictor (a check of
:func:`.converge.check_optimum`, after the partial limits).

A zero part ``logit pi = g0 + g1 z`` has, where the rows of the largest (or smallest)
values of ``z`` are all zeros, a limit at infinity: ``g1 -> +inf`` (``-inf``) with the
threshold ``-g0 / g1`` between those rows and the others puts ``pi`` at 1 on them (each
of their zeros then has probability 1) and at 0 on every other row (the count model
without zero inflation there): the zero part separates those zeros. The limit's
likelihood is that of the count model fitted to the other rows alone (a level whose rows
are all in the run contributes 1). A fit can end at an interior maximum below it,
converged: a zero-inflated Poisson model with a random intercept and
``zero_inflation="~ z"`` (30 groups of 4 rows, 59 % zeros, the three rows of the largest
``z`` zeros) ended at ``loglik_`` -118.944 with a zero part of -3.18 - 1.47 z, while the
limit is at -118.731 (glmmTMB 1.1.5 stops at another interior maximum, -118.916).

The zero part's intercept is bounded (``blocks.ZERO_INFLATION``, -20 on the logit scale),
so a limit whose threshold lies far from the predictor's centre is outside the
parameters the fit can take (a fit that follows such a ridge stops on that bound, and
says so); the check therefore reports the limit rather than fitting towards it. With
other predictors in the zero part the limit along one of them is the same (their terms
stay finite, so every row before the threshold still has no zero inflation). So for
each predictor of the zero part with more than two values (two-valued ones:
:mod:`.partial_limits`), beside an intercept, where such a run of zeros exists at either
end, the count model is fitted to the rows outside the run (a stage ``"count model outside
the zeros past a threshold"``, its evaluations counted in the fit's); where it is above
the fit by more than ``FLAT_TOL`` in ``-2 log L``, the run is recorded
(``record.threshold_limits``) and the fit warns (``SeparationWarning``). The largest run
at each end is the one to try: each zero's contribution to the likelihood is at most 0,
so the count model on fewer rows is at least as high. A hyperplane of several predictors
that separates zeros is not looked for.
"""

from __future__ import annotations

import numpy as np

from .model_data import subset_rows
from .nested_models import without_last_block
from .ridge import FLAT_TOL
from .stage import _laplace_stage


def zero_part_thresholds(obj, x, fun, bounds, max_iter, tol, diag_idx, record) -> None:
    """Record on ``record.threshold_limits`` each limit of the module docstring above
    the fit's ``fun`` (at ``x``); ``obj`` is left at ``x``."""
    runs = _zero_runs(obj.data) if np.isfinite(fun) and getattr(obj, "holds_rows", False) else []
    # (the zero part's coefficients are the last: its intercept first)
    first = len(x) - obj.data.extra_designs[-1].shape[1] if runs else 0
    for run, sign, j in runs:
        value = _count_model_outside(obj, x, run, bounds, max_iter, tol, diag_idx)
        record.stages.append(("count model outside the zeros past a threshold", value, 0, ""))
        if value < fun - FLAT_TOL:
            record.threshold_limits.append((int(np.sum(run)), sign, value, first, first + j))


def _zero_design(data):
    """The zero part's design where it has an intercept column and another, for a
    zero-inflated family (None otherwise)."""
    fam = data.family
    if data.extra_designs is None or fam.nested_at_bound(len(fam.blocks) - 1) is None:
        return None
    D = data.extra_designs[-1]
    if D is None or D.shape[1] < 2 or not np.all(D[:, 0] == 1.0):
        return None
    return D


def _zero_runs(data) -> list:
    """``(run, sign, j)`` for each end of each predictor ``j`` (a column of more than two
    values) of the zero part whose rows (those of positive weight) past some value are
    all zeros, with other rows before it: the rows of the run (a mask) and ``+1`` for
    the largest values (``-1``, the smallest); the same rows once."""
    D = _zero_design(data)
    if D is None:
        return []
    used = data.weights > 0
    zero = data.y[used] == 0
    out, seen = [], []
    for j in range(1, D.shape[1]):
        values, codes = np.unique(D[used, j], return_inverse=True)
        if len(values) <= 2:
            continue
        # the values all of whose rows are zeros
        all_zero = np.bincount(codes, (~zero).astype(float), minlength=len(values)) == 0
        for sign, flags, order in ((1, all_zero[::-1], values[::-1]), (-1, all_zero, values)):
            k = len(flags) if np.all(flags) else int(np.argmin(flags))
            if not 0 < k < len(values):
                continue
            cut = 0.5 * (order[k - 1] + order[k])
            run = used & (sign * (D[:, j] - cut) > 0)
            if not any(np.array_equal(run, r) for r in seen):
                seen.append(run)
                out.append((run, sign, j))
    return out


def _count_model_outside(obj, x, run, bounds, max_iter, tol, diag_idx) -> float:
    """``-2 log L`` of the count model (the family without zero inflation) fitted to the
    rows outside ``run`` from ``x``'s count parameters; its evaluations count in
    ``obj.n_evals``, and ``obj`` stays at ``x``."""
    data = obj.data
    nested = without_last_block(subset_rows(data, ~run), obj.n_agq)
    keep = len(x) - data.extra_designs[-1].shape[1]
    x1 = np.asarray(x, dtype=float)[:keep]
    res = _laplace_stage(nested, x1, list(bounds[:keep]), max_iter, tol, diag_idx)
    obj.n_evals += nested.n_evals
    if hasattr(nested, "release_state"):
        nested.release_state()
    return float(res.fun)
