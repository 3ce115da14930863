"""Factorisations of the Laplace Hessian ``H = Lambda'Z'WZLambda + I``.

:mod:`.block` holds the block-diagonal solver of one factor and the blocked
(Schur-complement) solvers of several; :mod:`.nested` eliminates nested factors
level by level. :func:`make_solver` chooses among them for several factors.
"""

from __future__ import annotations

import numpy as np

from .block import (
    SPARSE_COUPLING_DENSITY,
    SPARSE_COUPLING_MIN,
    BlockedSolver,
    BlockSolver,
    InnerSolveFailure,
    NotPositiveDefinite,
    PaddedBlockSolver,
    SparseCoupledSolver,
)
from .crossed import LARGE_SCHUR, CrossedSolver, elimination_order
from .nested import NestedSolver, elimination_costs, factor_codes, nesting_chain

__all__ = [
    "SPARSE_COUPLING_DENSITY",
    "SPARSE_COUPLING_MIN",
    "BlockSolver",
    "BlockedSolver",
    "CrossedSolver",
    "InnerSolveFailure",
    "LARGE_SCHUR",
    "NestedSolver",
    "NotPositiveDefinite",
    "PaddedBlockSolver",
    "SparseCoupledSolver",
    "make_solver",
]


def make_solver(cols: np.ndarray, Q: int, blocks: list[tuple[int, int, int]]):
    """The solver for several factors.

    Elimination along nested factors when the first factor is nested in
    another (unless the factors crossed with the nesting make it the costlier
    way); otherwise the Schur complement over every factor after the first,
    with the coupling block kept sparse when it would be mostly zeros. A Schur
    complement of :data:`LARGE_SCHUR` rows or more (thousands of items crossed
    with users) goes to :class:`CrossedSolver`: one dense factorisation per
    evaluation, and with two factors the cheaper of the two elimination orders.
    """
    codes = factor_codes(cols, blocks)
    chain = nesting_chain(codes, blocks)
    if len(chain) > 1:
        along_chain, schur = elimination_costs(codes, blocks, chain)
        if along_chain <= schur:
            return NestedSolver(cols, Q, blocks, chain)
    _, Ge, qe = blocks[elimination_order(blocks)]
    if Q - Ge * qe >= LARGE_SCHUR:
        return CrossedSolver(cols, Q, blocks)
    _, G1, q1 = blocks[0]
    Q2 = Q - G1 * q1
    dense_size = G1 * q1 * Q2
    nnz_bound = cols.shape[0] * q1 * (cols.shape[1] - q1)
    if dense_size > SPARSE_COUPLING_MIN and nnz_bound < SPARSE_COUPLING_DENSITY * dense_size:
        return SparseCoupledSolver(cols, Q, blocks)
    return BlockedSolver(cols, Q, blocks)
