"""Separation in a cumulative link model: fixed effects whose estimate is infinite.

Moving the fixed effects by ``d`` and the thresholds by ``c`` changes row ``i`` of
class ``k`` through ``c_k - x_i d`` (its upper threshold, which may only rise) and
``c_{k-1} - x_i d`` (its lower one, which may only fall). When a direction with
``x_i d <= c_k`` and ``x_i d >= c_{k-1}`` for every row, and some inequality strict,
exists, the log-likelihood rises along it without bound (the ordinal analogue of
Albert & Anderson's separation; trivial directions, thresholds alone or columns
aliased with them, leave every inequality an equality). Whether one exists is a
linear programme: maximise the total slack with every coordinate in ``[-1, 1]``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

_TOL = 1e-7


def ordinal_separation(X, y, weights, n_classes) -> np.ndarray | None:
    """Indices of the columns of ``X`` that separate, or None.

    ``y`` holds class indices ``0 .. n_classes - 1``. The columns named are those
    without which the data are no longer separated; when there are none (several
    separate on their own), the main components of one separating direction.
    """
    d = _direction(X, y, weights, n_classes)
    if d is None:
        return None
    cols = np.flatnonzero(np.abs(d) > 1e-6)
    if len(cols) > 1:
        needed = [
            j for j in cols if _direction(np.delete(X, j, axis=1), y, weights, n_classes) is None
        ]
        if needed:
            return np.array(needed)
        size = np.abs(d[cols])
        cols = cols[size >= 0.1 * size.max()]
    return cols if len(cols) else None


def _direction(X, y, weights, n_classes):
    """A separating direction of the fixed effects, or None."""
    use = weights > 0
    X, k = X[use], np.asarray(y[use], dtype=np.intp)
    n, p = X.shape
    if p == 0 or n == 0:
        return None
    nt = n_classes - 1
    up, lo = k < nt, k > 0
    # x d - c_k <= 0 (upper thresholds) and c_{k-1} - x d <= 0 (lower ones)
    Cu = np.zeros((int(up.sum()), nt))
    Cu[np.arange(len(Cu)), k[up]] = 1.0
    Cl = np.zeros((int(lo.sum()), nt))
    Cl[np.arange(len(Cl)), k[lo] - 1] = 1.0
    A = np.vstack([np.hstack([X[up], -Cu]), np.hstack([-X[lo], Cl])])
    # maximise the total slack -sum(A v), i.e. minimise sum(A v)
    res = linprog(
        A.sum(axis=0),
        A_ub=A,
        b_ub=np.zeros(len(A)),
        bounds=[(-1.0, 1.0)] * (p + nt),
        method="highs",
    )
    if res.status != 0 or -res.fun <= _TOL * max(1.0, np.abs(A).sum() / len(A)):
        return None
    return res.x[:p]
