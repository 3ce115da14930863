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
