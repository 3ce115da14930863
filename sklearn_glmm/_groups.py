"""Per-level sums and expansions over a grouping factor's rows.

Long-format data usually keeps each person's rows together. When every
level's rows form one contiguous run, sums use ``np.add.reduceat`` and
expansions ``np.repeat`` — several times faster than ``np.bincount`` with
weights and fancy indexing on large data. Other orders fall back to those.
"""

from __future__ import annotations

import re
from numbers import Integral, Real

import numpy as np
import pandas as pd


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


# -- matching group labels at predict time --------------------------------------------------
# A label not found among the fitted levels as it is matches by its text, numbers written the
# shortest way: 1, 1.0, np.int64(1), "1" and "1.0" are one label; "01", "1e0" and " 1" are not
# numbers' texts and match only themselves.
_NUMBER_TEXT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


def label_key(value) -> str:
    """The text a group label matches by when its type differs from the fitted levels'."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        return label_key(float(value))
    return str(value)


def _keys(values) -> pd.Index:
    return pd.Index([label_key(v) for v in values], dtype=object)


def check_distinct_labels(name: str, levels: pd.Index) -> None:
    """Labels of one grouping column must not differ only in type (1 and "1" in one column)."""
    if levels.dtype != object or levels.inferred_type == "string":
        return
    keys = _keys(levels)
    clash = keys.duplicated(keep=False)
    if clash.any():
        first = keys[clash][0]
        same = [v for v, k in zip(levels, keys) if k == first]
        raise ValueError(
            f"groups column {name!r} has labels {same!r} that differ only in type; they would be "
            "fitted as different groups. Give the column one type, e.g. groups.astype(str)."
        )


def match_levels(levels: pd.Index, values, name: str) -> np.ndarray:
    """Level codes of group labels at predict time; -1 for unseen or missing labels.

    Labels match their level as they are (``1`` and ``1.0`` are equal numbers); a label of
    another type matches by its text (see ``label_key``), in both directions: a model fitted
    with 1.0 finds ``"1"``, one fitted with ``"1"`` finds 1.0. A label whose text fits two
    fitted levels (``"1"`` and ``"1.0"`` fitted as strings) raises.
    """
    values = pd.Series(values, dtype=object)
    missing = np.asarray(pd.isna(values))
    codes = levels.get_indexer(values)
    retry = (codes < 0) & ~missing
    if retry.any():
        by_key: dict[str, int] = {}
        for code, key in enumerate(_keys(levels)):
            by_key[key] = -2 if key in by_key else code  # -2: two levels share the text
        asked = values[retry]
        alt = np.array([by_key.get(label_key(v), -1) for v in asked], dtype=np.intp)
        if (alt == -2).any():
            label = asked[alt == -2].iloc[0]
            same = [v for v in levels if label_key(v) == label_key(label)]
            raise ValueError(
                f"group label {label!r} of factor {name!r} matches the fitted levels {same!r}; "
                "pass the labels with the type they were fitted with."
            )
        codes[retry] = alt
    codes[missing] = -1
    return codes.astype(np.intp)
