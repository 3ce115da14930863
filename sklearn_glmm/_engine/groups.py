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

    def expand(self, u: np.ndarray) -> np.ndarray:
        """``u[codes]``: each row's level value(s), shape (n,) or (n, k)."""
        if not self.contiguous:
            return u[self.codes]
        return np.repeat(u if self.in_order else u[self.run_codes], self.lengths, axis=0)


# a column whose pooled within-level SD is at most this fraction of its SD is a
# predictor of the level itself, or nearly (values jittered by 1e-4 of their SD behaved
# as constant ones: several optima, fits ending up to 39 in log-likelihood low)
LEVEL_CONSTANT_SHARE = 1e-3


def level_constant_columns(codes: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """For each column of ``Z`` (n, q): whether it varies between levels but not (or
    hardly: :data:`LEVEL_CONSTANT_SHARE`) within them. False for every column where no
    level has two rows, and for a constant column (an intercept's)."""
    Z = np.asarray(Z, dtype=float)
    Z = Z[:, None] if Z.ndim == 1 else Z
    out = np.zeros(Z.shape[1], dtype=bool)
    counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.intp)
    if not (counts > 1).any():
        return out
    n_levels = len(counts)
    for j, z in enumerate(Z.T):
        total = float(np.std(z))
        if total == 0.0:
            continue
        mean = np.bincount(codes, z, minlength=n_levels) / np.maximum(counts, 1)
        within = float(np.sqrt(np.mean((z - mean[codes]) ** 2)))
        out[j] = within <= LEVEL_CONSTANT_SHARE * total
    return out
