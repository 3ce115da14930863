"""The per-row inputs of a family's derivatives on some of the rows, or repeated.

The mode search evaluates the family on subsets of the rows (some levels) and on
copies of them (several values of a parameter at once), the quadrature on the rows
of every node one block after another, and large data in blocks of rows. The
inputs: the outcome, the trials and weights (``None`` when all one), the
parameter-free terms (an array, a number, ``None`` or a tuple of those) and the
family's per-row parameters.
"""

from __future__ import annotations

import numpy as np

# per-row temporaries up to this many values (16 MB) are made at once: on small data
# the cost is per numpy call, and column-by-column passes (which keep large data to
# few arrays of the rows' size) only add calls
AT_ONCE_CELLS = 2_000_000


def rows_or_none(v, rows):
    """``v[rows]``, or None for None."""
    return None if v is None else v[rows]


def const_rows(const, rows):
    """The family's parameter-free terms on some rows (a mask, or a slice)."""
    if isinstance(const, tuple):
        return tuple(const_rows(c, rows) for c in const)
    if (
        isinstance(const, np.ndarray)
        and const.ndim
        and (isinstance(rows, slice) or len(const) == len(rows))
    ):
        return const[rows]
    return const


def const_tiled(const, k: int):
    """The family's parameter-free terms for ``k`` copies of the rows, one after another."""
    if isinstance(const, tuple):
        return tuple(const_tiled(c, k) for c in const)
    return tiled(const, k)


def tiled(v, k: int):
    """A per-row array repeated for ``k`` copies of the rows; anything else as it is."""
    if isinstance(v, np.ndarray) and v.ndim and k > 1:
        return np.tile(v, k)
    return v
