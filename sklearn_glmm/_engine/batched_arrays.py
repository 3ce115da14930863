"""Array helpers of :class:`~sklearn_glmm._engine.batched.BatchedLaplace`: the rows of
the replicates a step reads, the forms of the parameter-free terms, the small
symmetric positive definite inverses of the levels' blocks and the mode search's
stopping rule per replicate.
"""

from __future__ import annotations

import numpy as np

from .linalg.block import ROUNDED_PIVOT


def _take(x, rows):
    """Rows ``rows`` of ``x``; all of it (no copy) for None."""
    return x if rows is None else x[rows]


def _const_take(const, rows, R):
    """The family's parameter-free terms (R copies of the rows, one after another) of
    replicates ``rows`` (None: all)."""
    if rows is None:
        return const
    if isinstance(const, tuple):
        return tuple(_const_take(c, rows, R) for c in const)
    if isinstance(const, np.ndarray) and const.ndim:
        return const.reshape(R, -1)[rows].ravel()
    return const


def _rows_times(beta, X):
    """``X beta`` of every replicate, (R, n), column by column (no BLAS: a replicate's
    values do not depend on its batch)."""
    out = np.zeros((beta.shape[0], X.shape[0]))
    for j in range(X.shape[1]):
        out += beta[:, j, None] * X[:, j]
    return out


def _form(const) -> int:
    """Which of the family's parameter-free terms are made (a bit per term of a tuple):
    the form of its log-density for these outcomes."""
    if not isinstance(const, tuple):
        return 0
    return sum(1 << k for k, c in enumerate(const) if c is not None)


def _concat_const(parts):
    """The family's parameter-free terms of several replicates of one form, one after
    another."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(_concat_const([p[k] for p in parts]) for k in range(len(first)))
    if isinstance(first, np.ndarray) and first.ndim:
        return np.concatenate(parts)
    return first


def _spd_inverse(q, H):
    """Inverses of per-level blocks given by their entries ``H[(a, b)]`` (R, G), a <= b,
    the Laplace Hessian's ``I`` not yet added: ``(Hinv, logdet, pd)`` with ``Hinv[i][j]``
    (R, G), the summed log-determinants (R,) and whether each replicate's blocks are all
    positive definite (R,)."""
    if q == 1:
        h = 1.0 + H[(0, 0)]
        pd = np.all(h > 0, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return [[1.0 / h]], np.log(h).sum(axis=1), pd
    if q == 2:  # closed forms, as the single objective's BlockSolver
        a, b, c = 1.0 + H[(0, 0)], H[(0, 1)], 1.0 + H[(1, 1)]
        det = a * c - b * b
        # (a determinant cancelled to rounding is no factorisation: linalg.block's rule)
        pd = np.all(a > 0, axis=1) & np.all(det > ROUNDED_PIVOT * a * c, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            off = -b / det
            return [[c / det, off], [off, a / det]], np.log(det).sum(axis=1), pd
    R, G = H[(0, 0)].shape
    M = np.zeros((R, G, q, q))
    for (a, b), v in H.items():
        M[:, :, a, b] = M[:, :, b, a] = v
    M[:, :, range(q), range(q)] += 1.0
    eig_min = np.linalg.eigvalsh(M).min(axis=2)
    pd = np.all(eig_min > 0, axis=1)
    M = np.where(pd[:, None, None, None], M, np.eye(q))
    L = np.linalg.cholesky(M)
    pivots = np.diagonal(L, axis1=2, axis2=3) ** 2
    pd &= np.all(pivots > ROUNDED_PIVOT * np.diagonal(M, axis1=2, axis2=3), axis=(1, 2))
    Linv = np.linalg.inv(L)
    logdet = 2.0 * np.log(np.diagonal(L, axis1=2, axis2=3)).sum(axis=(1, 2))
    inv = np.einsum("rgki,rgkj->rgij", Linv, Linv)
    return [[inv[:, :, i, j] for j in range(q)] for i in range(q)], logdet, pd


def _put_inverses(Hinv, logdet, rows, Hi, ld, sel):
    """The level inverses ``Hi`` and log-determinants ``ld`` of the entries ``sel`` kept
    as those of the replicates ``rows``."""
    for i, row in enumerate(Hi):
        for j, block in enumerate(row):
            Hinv[i][j][rows] = block[sel]
    logdet[rows] = ld[sel]


def _modes_found_rows(dec, obj, step):
    """``objective._modes_found`` (or a negligible step) for every replicate (rows of
    ``dec``, ``obj`` (R, G) and ``step``, q arrays (R, G))."""
    top = dec.max(axis=1)
    small = np.max([np.abs(st).max(axis=1) for st in step], axis=0) < 1e-11
    exact = np.all(dec < 1e-22 * np.abs(obj), axis=1)
    return small | (top < 1e-20) | ((top <= 1e-8) & exact)
