"""Detect (quasi-)complete separation: fixed effects whose maximum-likelihood estimate is infinite.

The log-likelihood keeps increasing along a direction ``b`` of the fixed
effects when moving the linear predictor by ``d = X b`` never lowers any row's
log-density and raises at least one (Albert & Anderson 1984; Konis 2007). Per row:

- binomial: ``d <= 0`` where ``y = 0``, ``d >= 0`` where ``y = trials``,
  ``d = 0`` where ``0 < y < trials``;
- counts (Poisson, negative binomial): ``d <= 0`` where ``y = 0``, ``d = 0``
  where ``y > 0``: a mean pushed to zero wherever the outcome is zero.

Whether such a ``b != 0`` exists is a linear programme; which coefficients can
move along it, ``2 p`` more. The random effects are left out: their variance
already keeps the conditional modes finite.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

_TOL = 1e-7
_MAX_COEF_LPS = 60  # above this many fixed effects, name those of one direction only
_BATCH = 2000  # rows added per round of constraint generation
_MOVED = 1e-5  # |X b| above this (times the largest |X|): a row moves along b (well
# above the linear programme's tolerance, 1e-7)


def _constraints(X, y, trials, weights, bounded):
    """Rows with d <= 0 (A_ub) and with d = 0 (A_eq); ``bounded``: y out of trials."""
    use = weights > 0
    if bounded:
        use &= trials > 0
        low, high = y <= 0, y >= trials
        A_ub = np.vstack([X[use & low & ~high], -X[use & high & ~low]])
        A_eq = X[use & ~low & ~high]
    else:
        A_ub = X[use & (y <= 0)]
        A_eq = X[use & (y > 0)]
    return A_ub, A_eq


def _solve(c, A_ub, A_eq):
    res = linprog(
        c,
        A_ub=A_ub if len(A_ub) else None,
        b_ub=np.zeros(len(A_ub)) if len(A_ub) else None,
        A_eq=A_eq if len(A_eq) else None,
        b_eq=np.zeros(len(A_eq)) if len(A_eq) else None,
        bounds=[(-1.0, 1.0)] * len(c),
        method="highs",
    )
    return res.x if res.status == 0 else None


def _lp(c, A_ub, A_eq, tol):
    """min c'b subject to A_ub b <= 0, A_eq b = 0, |b| <= 1, by constraint generation.

    Only a few rows bind at the optimum: solve with a subset, add the rows the
    solution violates, repeat. Each programme stays small however many rows the
    data have; the final solution satisfies every row, so it solves the full problem.
    """
    ub = np.zeros(len(A_ub), dtype=bool)
    eq = np.zeros(len(A_eq), dtype=bool)
    ub[:: len(A_ub) // _BATCH + 1] = True
    eq[:: len(A_eq) // _BATCH + 1] = True
    for _ in range(100):
        b = _solve(c, A_ub[ub], A_eq[eq])
        if b is None:
            return None
        v_ub = A_ub @ b if len(A_ub) else np.zeros(0)
        v_eq = np.abs(A_eq @ b) if len(A_eq) else np.zeros(0)
        bad_ub = np.flatnonzero((v_ub > tol) & ~ub)
        bad_eq = np.flatnonzero((v_eq > tol) & ~eq)
        if len(bad_ub) == 0 and len(bad_eq) == 0:
            return b
        ub[bad_ub[np.argsort(-v_ub[bad_ub])][:_BATCH]] = True
        eq[bad_eq[np.argsort(-v_eq[bad_eq])][:_BATCH]] = True
    return _solve(c, A_ub, A_eq)


def _gain_floor(scale, n_rows) -> float:
    """The least gain ``-c'b`` of a separating direction over ``n_rows`` constraint rows:
    HiGHS allows each constraint a 1e-7 violation, a gain below that is no direction."""
    return min(_TOL * scale * n_rows, 1e-4)


def separating_directions(X, y, trials, weights, bounded):
    """Directions ``b`` of the fixed effects along which the log-likelihood keeps
    rising, and the columns that move along them: ``None`` when the data are not
    separated, otherwise ``(directions, columns)``: the direction of the largest gain
    and, for each column it leaves still, one moving that column if there is one
    (with at most ``_MAX_COEF_LPS`` columns)."""
    X = np.asarray(X, dtype=float)
    p = X.shape[1]
    if p == 0:
        return None
    A_ub, A_eq = _constraints(X, y, trials, weights, bounded)
    if len(A_ub) == 0:
        return None
    # d = 0 on rows spanning every column: only b = 0 is left
    if len(A_eq) >= p and np.linalg.matrix_rank(A_eq) == p:
        return None
    scale = max(1.0, float(np.max(np.abs(X))))
    tol = 1e-9 * scale
    c = A_ub.sum(axis=0)
    b = _lp(c, A_ub, A_eq, tol)
    if b is None or c @ b > -_gain_floor(scale, len(A_ub)):
        return None
    out = [b] + _directions_for_still_rows(A_ub, A_eq, b, scale, tol)
    moving = {int(j) for d in out for j in np.flatnonzero(np.abs(d) > 1e-6)}
    if p <= _MAX_COEF_LPS:
        for j in range(p):
            if j in moving:
                continue
            e = np.zeros(p)
            e[j] = 1.0
            for sign in (1.0, -1.0):
                bj = _lp(-sign * e, A_ub, A_eq, tol)
                if bj is not None and abs(bj[j]) > 1e-6:
                    out.append(bj)
                    moving.add(j)
                    break
    return out, sorted(moving)


def _directions_for_still_rows(A_ub, A_eq, b, scale, tol) -> list:
    """Directions that move the rows of ``A_ub`` the direction ``b`` leaves still but
    another direction can move.

    The linear programme's solution is a vertex: it can hold a row at ``d = 0`` that
    other separating directions move (with ``y ~ x * grp`` and every ``grp = 1`` row a
    success, the largest gain tilts the direction along ``x:grp`` until one such row is
    still). The set of separating directions is a convex cone, so the rows moved by
    some direction are those moved by the sum of the directions found here, one
    programme per round over the rows still left (each round moves at least one).
    """
    out = []
    moved = A_ub @ b < -_MOVED * scale
    while not moved.all():
        c = A_ub[~moved].sum(axis=0)
        d = _lp(c, A_ub, A_eq, tol)
        if d is None or c @ d > -_gain_floor(scale, np.count_nonzero(~moved)):
            break
        now = moved | (A_ub @ d < -_MOVED * scale)
        if now.sum() == moved.sum():
            break
        out.append(d)
        moved = now
    return out


def separated_coefficients(X, y, trials, weights, bounded) -> list[int] | None:
    """Columns of ``X`` whose coefficient can move along a separating direction.

    Returns ``None`` when the data are not separated, otherwise the indices of
    the columns (possibly empty when the direction is degenerate).
    """
    found = separating_directions(X, y, trials, weights, bounded)
    return None if found is None else found[1]


def separated_rows(X, directions) -> np.ndarray:
    """Rows whose linear predictor moves along one of ``directions`` (the rows the
    separation sends to a fitted probability of 0 or 1, or a mean of 0)."""
    X = np.asarray(X, dtype=float)
    scale = max(1.0, float(np.max(np.abs(X), initial=0.0)))
    moved = np.zeros(X.shape[0], dtype=bool)
    for b in directions:
        moved |= np.abs(X @ b) > _MOVED * scale
    return moved


def separation_message(names, bounded, all_degenerate) -> str:
    """The warning text naming the predictors involved."""
    if all_degenerate:
        what = (
            "y is 0 in every row"
            if not bounded
            else "every row has the same outcome (all failures or all successes)"
        )
        return (
            f"{what}: the intercept's estimate diverges (its maximum-likelihood value is "
            "infinite) and the reported estimates, standard errors and p-values are not "
            "meaningful. The data cannot support this model."
        )
    listed = ", ".join(repr(n) for n in names)
    who = f"predictor {listed}" if len(names) == 1 else f"predictors {listed} (together)"
    if bounded:
        head = (
            f"complete or quasi-complete separation: {who} perfectly predict(s) the outcome "
            "for some rows"
        )
        fix = (
            "Drop or merge sparse categories, or use a penalised fit "
            "(Firth/bias-reduced logistic regression; blme::bglmer in R)."
        )
    else:
        head = f"separation: the outcome is 0 in every row where {who} can push the mean to 0"
        fix = "Drop or merge the categories with only zero counts, or use a penalised fit."
    return (
        f"{head}. The estimate(s) diverge (the maximum-likelihood values are infinite): the "
        "reported values, standard errors and p-values for them are not meaningful. " + fix
    )
