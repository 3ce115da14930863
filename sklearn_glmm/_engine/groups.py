"""Per-level sums and expansions over a grouping factor's rows.

Long-format data usually keeps each person's rows together. When every
level's rows form one contiguous run, sums use ``np.add.reduceat`` and
expansions ``np.repeat`` — several times faster than ``np.bincount`` with
weights and fancy indexing on large data. Other orders fall back to those.
"""

from __future__ import annotations

import numpy as np


class GroupIndex:
    """Level codes of every row with fast ``sum`` (rows -> levels) and ``expand``."""

    def __init__(self, codes: np.ndarray, n_levels: int):
        self.codes = codes
        self.n_levels = n_levels
        n = len(codes)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if n else np.zeros(0, int)
        self.contiguous = len(starts) == n_levels and n > 0
        if self.contiguous:
            self.starts = starts
            self.run_codes = codes[starts]
            self.lengths = np.diff(np.r_[starts, n])
            self.in_order = bool(np.all(self.run_codes == np.arange(n_levels)))

    def sum(self, v: np.ndarray) -> np.ndarray:
        """Sum of ``v`` over each level's rows, shape (n_levels,) or (n_levels, k)."""
        if not self.contiguous:
            if v.ndim == 1:
                return np.bincount(self.codes, v, minlength=self.n_levels)
            # one bincount per column: several times faster than np.add.at
            flat = v.reshape(len(v), -1)
            out = np.empty((self.n_levels, flat.shape[1]))
            for j in range(flat.shape[1]):
                out[:, j] = np.bincount(self.codes, flat[:, j], minlength=self.n_levels)
            return out.reshape((self.n_levels,) + v.shape[1:])
        s = np.add.reduceat(v, self.starts)
        if self.in_order:
            return s
        out = np.empty_like(s)
        out[self.run_codes] = s
        return out

    def outer_sums(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``sum`` of the rows' outer products ``X_i Y_i'``: ``(n_levels, a, b)`` from
        ``X`` (n, a) and ``Y`` (n, b). With contiguous levels the products are laid out
        rows last, so that every elementwise pass and sum runs along the rows (passes
        along a trailing axis of two or three entries cost several times more)."""
        if not self.contiguous:
            n, a, b = len(X), X.shape[1], Y.shape[1]
            return self.sum((X[:, :, None] * Y[:, None, :]).reshape(n, a * b)).reshape(-1, a, b)
        prod = np.ascontiguousarray(X.T)[:, None, :] * np.ascontiguousarray(Y.T)[None, :, :]
        s = np.add.reduceat(prod, self.starts, axis=2).transpose(2, 0, 1)
        if self.in_order:
            return s
        out = np.empty_like(s)
        out[self.run_codes] = s
        return out

    def expand(self, u: np.ndarray) -> np.ndarray:
        """``u[codes]``: each row's level value(s), shape (n,) or (n, k)."""
        if not self.contiguous:
            return u[self.codes]
        return np.repeat(u if self.in_order else u[self.run_codes], self.lengths, axis=0)

    def sum_last(self, v: np.ndarray) -> np.ndarray:
        """Sums over each level's rows along the last axis: (..., n) to (..., n_levels)
        (rows last, each level's sum along contiguous memory). Levels whose rows are
        not together are gathered in level order first."""
        if self.contiguous:
            s = np.add.reduceat(v, self.starts, axis=-1)
            if self.in_order:
                return s
            out = np.empty_like(s)
            out[..., self.run_codes] = s
            return out
        order, present, starts = self._level_order()
        s = np.add.reduceat(v[..., order], starts, axis=-1)
        if len(present) == self.n_levels:
            return s
        out = np.zeros(v.shape[:-1] + (self.n_levels,))
        out[..., present] = s
        return out

    def expand_last(self, u: np.ndarray) -> np.ndarray:
        """Each row's level value along the last axis: (..., n_levels) to (..., n)."""
        if not self.contiguous:
            return u[..., self.codes]
        return np.repeat(u if self.in_order else u[..., self.run_codes], self.lengths, axis=-1)

    _order = None

    def _level_order(self):
        """The rows in level order, the levels that have rows and where each one's rows
        start in that order (made once)."""
        if self._order is None:
            order = np.argsort(self.codes, kind="stable")
            counts = np.bincount(self.codes, minlength=self.n_levels)
            present = np.flatnonzero(counts)
            self._order = (order, present, (np.cumsum(counts) - counts)[present])
        return self._order


# a column whose pooled within-level SD is at most this fraction of its SD is a
# predictor of the level itself, or nearly (values jittered by 1e-4 of their SD behaved
# as constant ones: several optima, fits ending up to 39 in log-likelihood low)
LEVEL_CONSTANT_SHARE = 1e-3


def level_spread(codes: np.ndarray, Z: np.ndarray, rows=None) -> np.ndarray:
    """Per column of ``Z`` (n, q): what :func:`level_constant_columns` reads, shape
    (6, q): the rows, their mean, the squares about that mean, the squares about each
    level's mean, the levels with two rows or more, and the levels whose mean of this
    column and of another are both nonzero (0 for every column: each level reads one
    column, an arm's indicator in ``diag(0 + arm0 + arm1)``). Two sets of rows with no level
    in common combine exactly (:func:`pooled_spread`): a partitioned fit sums its
    partitions'. ``rows``: a mask of the rows to read (those that carry the likelihood,
    weight above 0: a row of weight 0 says nothing of how a variable varies within its
    level in the model, :func:`used_rows`); None, every row."""
    Z = np.asarray(Z, dtype=float)
    Z = Z[:, None] if Z.ndim == 1 else Z
    if rows is not None:
        codes, Z = np.asarray(codes)[rows], Z[rows]
    out = np.zeros((6, Z.shape[1]))
    n = len(codes)
    if not n:
        return out
    counts = np.bincount(codes)
    out[0] = n
    out[4] = np.count_nonzero(counts > 1)
    nonzero = np.zeros((len(counts), Z.shape[1]), dtype=bool)
    for j, z in enumerate(Z.T):
        mean = float(np.mean(z))
        level_mean = np.bincount(codes, z, minlength=len(counts)) / np.maximum(counts, 1)
        out[1, j] = mean
        out[2, j] = float(np.sum((z - mean) ** 2))
        out[3, j] = float(np.sum((z - level_mean[codes]) ** 2))
        nonzero[:, j] = (counts > 0) & (np.abs(level_mean) > 1e-13 * np.max(np.abs(z)))
    others = nonzero.sum(axis=1)[:, None] - nonzero
    out[5] = np.count_nonzero(nonzero & (others > 0), axis=0)
    return out


def used_rows(weights) -> np.ndarray | None:
    """The mask of the rows with weight above 0 where some have none, else None (every
    row): the rows :func:`level_spread` reads."""
    used = np.asarray(weights) > 0.0
    return None if used.all() else used


def pooled_spread(parts) -> np.ndarray:
    """:func:`level_spread` of the rows of several parts, from theirs (each level's rows
    in one part): the squares about the overall mean pooled as Chan et al.'s."""
    parts = [np.asarray(p, dtype=float) for p in parts if p is not None and p[0, 0] > 0]
    if not parts:
        return np.zeros((6, 0))
    out = np.zeros_like(parts[0])
    n = sum(p[0, 0] for p in parts)
    mean = sum(p[0] * p[1] for p in parts) / n
    out[0], out[1] = n, mean
    out[2] = sum(p[2] + p[0] * (p[1] - mean) ** 2 for p in parts)
    out[3] = sum(p[3] for p in parts)
    out[4] = sum(p[4] for p in parts)
    out[5] = sum(p[5] for p in parts)
    return out


def _sds(spread: np.ndarray):
    """``(total, within, rounding)``: each column's SD, its SD within levels, and the
    spread its mean's rounding makes (a constant column's squares about its mean are
    that rounding, 1e-17 of 0.3 over ten rows, not a spread: up to 1e-13 of the mean)."""
    n = np.maximum(spread[0], 1.0)
    rounding = _CONSTANT_ROUNDING * np.abs(spread[1])
    return np.sqrt(spread[2] / n), np.sqrt(spread[3] / n), rounding


_CONSTANT_ROUNDING = 1e-13


def spread_sd(spread: np.ndarray) -> np.ndarray:
    """Each column's standard deviation (population, as ``np.std``) from its spread; 0
    for a constant column."""
    total, _, rounding = _sds(spread)
    return np.where(total > rounding, total, 0.0)


def level_constant_from_spread(spread: np.ndarray) -> np.ndarray:
    """:func:`level_constant_columns` from the columns' :func:`level_spread`."""
    total, within, rounding = _sds(spread)
    return (spread[4] > 0) & (total > rounding) & (within <= LEVEL_CONSTANT_SHARE * total)


def constant_within_levels(spread: np.ndarray) -> np.ndarray:
    """Per column of its :func:`level_spread`: whether it is constant, or nearly
    (:data:`LEVEL_CONSTANT_SHARE`), within every level: a level predictor's column, or a
    constant one."""
    total, within, rounding = _sds(spread)
    return (within <= LEVEL_CONSTANT_SHARE * total) | (within <= rounding)


def level_constant_columns(codes: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """For each column of ``Z`` (n, q): whether it varies between levels but not (or
    hardly: :data:`LEVEL_CONSTANT_SHARE`) within them. False for every column where no
    level has two rows, and for a constant column (an intercept's)."""
    return level_constant_from_spread(level_spread(codes, Z))


def aliased_factors(codes_list, used=None) -> list[tuple[int, ...]]:
    """Groups (two or more, indices into ``codes_list``) of grouping factors whose levels
    group the rows with weight above 0 (``used``, :func:`used_rows`; None: every row)
    identically: each level of one is one level of each other (``(1 | school/class)``
    with one class per school, two columns that relabel one factor). Their random
    effects' covariances are then read by the likelihood only through their sum."""
    if len(codes_list) < 2:
        return []
    cols = [np.asarray(c)[used] if used is not None else np.asarray(c) for c in codes_list]
    if not len(cols[0]):
        return []
    # each factor's levels on these rows as 0..K-1 (once per factor)
    inverse = [np.unique(c, return_inverse=True)[1].ravel() for c in cols]
    count = [int(u.max()) + 1 for u in inverse]
    groups, seen = [], set()
    for a in range(len(cols)):
        if a in seen:
            continue
        group = [a]
        for b in range(a + 1, len(cols)):
            if b not in seen and count[b] == count[a] and _one_to_one(inverse[a], inverse[b]):
                group.append(b)
        if len(group) > 1:
            seen.update(group)
            groups.append(tuple(group))
    return groups


def _one_to_one(ua, ub) -> bool:
    """Whether level codes ``ua`` and ``ub`` (0..K-1 each, K levels both) map each level
    of one to one level of the other: ``ub`` a function of ``ua`` (O(rows))."""
    image = np.empty(int(ua.max()) + 1, dtype=ub.dtype)
    image[ua] = ub
    return bool(np.array_equal(image[ua], ub))


def gram_products(G) -> np.ndarray:
    """``sum_j (G_j G_j) kron (G_j G_j)`` over the levels' Gram matrices ``G`` ((levels,
    q, q)), each at unit size (its largest entry; a level without rows left out), shape
    (q^2, q^2): its null space holds ``vec(D)`` of every change ``D`` that no level's
    compression sees (``G_j D G_j = 0``)."""
    q = G.shape[1]
    size = np.max(np.abs(G), axis=(1, 2)) if len(G) else np.zeros(0)
    G = G[size > 0] / size[size > 0, None, None]
    G2 = G @ G
    return np.einsum("jac,jbd->abcd", G2, G2).reshape(q * q, q * q)
