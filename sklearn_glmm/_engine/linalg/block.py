"""Factorisations of the Laplace Hessian ``H = Lambda' Z' W Z Lambda + I``.

Three layouts share one interface:

* :class:`BlockSolver` — a single grouping factor. ``H`` is block-diagonal with
  one ``q x q`` block per level; every level is factorised at once as a batch.
  :class:`PaddedBlockSolver` does the same for the large blocks of a structured
  factor (one random effect per time point) with batched matrix products.
* :class:`BlockedSolver` — several crossed (or partially nested) factors. The
  largest factor's block stays block-diagonal; the others are eliminated
  through a dense Schur complement.
* :class:`~sklearn_glmm._engine.linalg.nested.NestedSolver` — the first factor nested in
  others (``_nested.py``): elimination level by level along the nesting.

All give ``solve`` (``H^{-1} r``), ``logdet`` and ``local_inverse`` — for every
row ``i`` the block of ``H^{-1}`` on the random effects row ``i`` touches, which
the analytic gradient needs.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..groups import GroupIndex


class InnerSolveFailure(np.linalg.LinAlgError):
    """The conditional modes could not be found at the current parameters.

    An evaluation whose inner solve fails has no value: the objective reports it
    as failed (``inf``), never as the finite number its last iterate would give.
    """


class NotPositiveDefinite(InnerSolveFailure):
    """The Laplace Hessian is not positive definite at the current point."""


# a block's pivot (a Schur complement of its diagonal entry) at or below this fraction
# of the entry has no digits left (the entry's rounding is 1.1e-16 of it):
# ``H = Lambda'Z'WZ Lambda + I`` with curvatures of 1e19 on rows of one level that share
# their slope value (a mode search started far from the mode) rounds to a singular
# block, whose "inverse" gave a Newton step of exactly 0 and a mode accepted at a point
# 1e19 from it. Above it the factorisation keeps some digits (blocks of counts near
# 1e11 on such rows, pivots near 1e-13 of their entries, gave log-likelihoods within
# 0.2 of exact values), and a failure there would hold a fit far from its optimum
ROUNDED_PIVOT = 1e-15


def _rounded_away(pivot: np.ndarray, entry: np.ndarray) -> bool:
    """Whether some pivot is within rounding of its diagonal entry's cancellation."""
    return bool(len(pivot) and np.any(pivot <= ROUNDED_PIVOT * entry))


_SINGULAR_TO_ROUNDING = (
    "a block of the Laplace Hessian is singular to rounding (its pivot cancelled to "
    "below 1e-15 of its diagonal)"
)


def cholesky_inverse(L: np.ndarray) -> np.ndarray:
    """``S^{-1}`` from the lower Cholesky factor ``L`` of ``S`` (LAPACK potri).

    A third of the work of inverting ``L`` and multiplying: potri fills one
    triangle, mirrored here.
    """
    inv, info = scipy.linalg.lapack.dpotri(L, lower=1)
    if info != 0:
        raise NotPositiveDefinite(f"cannot invert the Schur complement (LAPACK info {info})")
    return np.tril(inv) + np.tril(inv, -1).T


def congruence(M: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``L' M_g L`` for a batch of symmetric blocks ``M`` (G, q, q): two products on
    (G q, q) views (BLAS), not a batched loop over the levels."""
    G, q = M.shape[0], L.shape[0]
    T = (M.reshape(-1, q) @ L).reshape(G, q, q)  # M_g L
    # (M_g L)' L = L' M_g L, M_g symmetric
    return (np.swapaxes(T, 1, 2).reshape(-1, q) @ L).reshape(G, q, q)


def block_inverse(H: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverses of a batch of SPD blocks ``H`` (G, q, q) and the sum of their log-determinants.

    Raises :class:`NotPositiveDefinite` when some block is not positive definite.
    """
    q = H.shape[1]
    if q == 1:
        h = H[:, 0, 0]
        if not (len(h) == 0 or h.min() > 0.0):
            raise NotPositiveDefinite("Laplace Hessian is not positive definite")
        return 1.0 / H, float(np.log(h).sum())
    if q == 2:  # closed forms: batched LAPACK calls cost more than the arithmetic here
        a, b, c = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        det = a * c - b * b
        if len(det) and not (a.min() > 0 and det.min() > 0):
            raise NotPositiveDefinite("Laplace Hessian is not positive definite")
        if _rounded_away(det, a * c):
            raise NotPositiveDefinite(_SINGULAR_TO_ROUNDING)
        # [c, -b; -b, a] / det in one division
        hinv = np.stack([c, -b, -b, a], axis=1).reshape(-1, 2, 2)
        hinv /= det[:, None, None]
        return hinv, float(np.sum(np.log(det)))
    L = _checked_cholesky(H)
    Linv = np.linalg.inv(L)
    logdet = float(2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
    return np.einsum("gki,gkj->gij", Linv, Linv), logdet


def _checked_cholesky(H: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a batch of blocks ``H`` (G, q, q); raises
    :class:`NotPositiveDefinite` where a block is not positive definite, or is singular
    to rounding (:data:`ROUNDED_PIVOT`)."""
    try:
        L = np.linalg.cholesky(H)
    except np.linalg.LinAlgError as exc:
        raise NotPositiveDefinite(str(exc)) from exc
    pivots = np.diagonal(L, axis1=1, axis2=2) ** 2
    if _rounded_away(pivots.ravel(), np.diagonal(H, axis1=1, axis2=2).ravel()):
        raise NotPositiveDefinite(_SINGULAR_TO_ROUNDING)
    return L


def block_cholesky_inverse(H: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverses ``L^{-1}`` of the lower Cholesky factors of a batch of SPD blocks ``H``
    (G, q, q), and the sum of their log-determinants.

    Eliminating a block (a Schur complement ``C - E' H^{-1} E``) goes through them as
    ``C - K'K`` with ``K = L^{-1} E``: that is Cholesky's own arithmetic, accurate to
    rounding relative to ``C``. Formed with an explicit ``H^{-1}``, the product loses
    the digits that ``det H`` loses to cancellation: with curvatures of 1e10 (counts in
    the billions) and nearly collinear columns, a log-determinant 0.4 off.
    Raises :class:`NotPositiveDefinite` when some block is not positive definite.
    """
    G, q = H.shape[0], H.shape[1]
    if q == 2:  # closed forms, as block_inverse's
        a, b, c = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        if len(a) and not a.min() > 0:
            raise NotPositiveDefinite("Laplace Hessian is not positive definite")
        l11 = np.sqrt(a)
        l21 = b / l11
        d = c - l21 * l21
        if len(d) and not d.min() > 0:
            raise NotPositiveDefinite("Laplace Hessian is not positive definite")
        if _rounded_away(d, c):
            raise NotPositiveDefinite(_SINGULAR_TO_ROUNDING)
        l22 = np.sqrt(d)
        Linv = np.zeros((G, 2, 2))
        Linv[:, 0, 0] = 1.0 / l11
        Linv[:, 1, 1] = 1.0 / l22
        Linv[:, 1, 0] = -l21 / (l11 * l22)
        return Linv, float(2.0 * np.sum(np.log(l11) + np.log(l22)))
    L = _checked_cholesky(H)
    logdet = float(2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
    return np.linalg.inv(L), logdet


class ZLambda:
    """``Z Lambda`` of one factor (``q >= 2``), not formed: its products with the
    random effects and the per-level sums through ``Z`` and ``Lambda`` (``L``), so that
    no (n, q) array of it is made; a column of ``Z`` of ones multiplies nothing."""

    def __init__(self, Z, L, ones, groups):
        self.Z, self.L, self.ones, self.groups = Z, L, ones, groups

    @property
    def shape(self):
        return self.Z.shape

    def array(self) -> np.ndarray:
        return self.Z @ self.L

    def _column(self, values, m):
        """``values[codes] * z_m`` (``values`` per level)."""
        t = self.groups.expand(values)
        if not self.ones[m]:
            t *= self.Z[:, m]
        return t

    def rowdot(self, V) -> np.ndarray:
        """Each row's ``z_i' V_j`` for per-level vectors ``V`` (n_levels, q)."""
        out = self._column(V[:, 0], 0)
        for m in range(1, V.shape[1]):
            t = self._column(V[:, m], m)
            out += t
            del t
        return out

    def times(self, u) -> np.ndarray:
        """Each row's ``z_i' Lambda u_j``, from ``(Lambda u_j)`` per level."""
        return self.rowdot(u.reshape(-1, self.L.shape[0]) @ self.L.T)

    def level_sums(self, v) -> np.ndarray:
        """``Z'v`` per level, (n_levels, q)."""
        g, q = self.groups, self.L.shape[0]
        out = np.empty((g.n_levels, q))
        for m in range(q):
            out[:, m] = g.sum(v) if self.ones[m] else g.sum(self.Z[:, m] * v)
        return out

    def sums(self, v) -> np.ndarray:
        """``Lambda' Z' v`` per level, flattened (n_levels * q,)."""
        return (self.level_sums(v) @ self.L).ravel()

    def gram(self, w) -> np.ndarray:
        """``Z' W Z`` per level, (n_levels, q, q)."""
        g, q, Z = self.groups, self.L.shape[0], self.Z
        M = np.empty((g.n_levels, q, q))
        for a in range(q):
            wa = w if self.ones[a] else w * Z[:, a]
            for b in range(a, q):
                if self.ones[b]:
                    s = g.sum(wa)
                elif b == q - 1 and wa is not w:  # wa's last use: the product in its place
                    s = g.sum(np.multiply(wa, Z[:, b], out=wa))
                else:
                    s = g.sum(wa * Z[:, b])
                M[:, a, b] = s
                M[:, b, a] = s
            del wa
        return M


class BlockSolver:
    """Batched factorisation for one factor: ``n_levels`` independent ``q x q`` blocks."""

    # whether factorize keeps ``linv`` (the blocks' inverse Cholesky factors, q >= 2): a
    # solver that eliminates these blocks from others' asks for them
    keep_factor = False

    def __init__(self, codes: np.ndarray, n_levels: int, q: int, groups: GroupIndex | None = None):
        self.codes = codes
        self.groups = GroupIndex(codes, n_levels) if groups is None else groups
        self.n_levels = n_levels
        self.q = q
        self._pairs = [(a, b) for a in range(q) for b in range(a, q)]
        self._pair_columns = tuple(np.array(c, dtype=np.intp) for c in zip(*self._pairs))

    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        """Form and factorise H from row values ``a_vals`` (n, q) and curvatures ``w`` (n,).

        ``a_vals`` may also be ``Z Lambda`` not formed (an object with ``gram(w)``, the
        levels' ``Z'WZ``, and ``L``, Lambda): ``H = Lambda' Z'WZ Lambda + I``, with
        ``Z'WZ`` kept as ``gram`` (the gradient reads it).
        """
        G, q = self.n_levels, self.q
        if hasattr(a_vals, "gram"):
            L = a_vals.L
            self.gram = self.hinv = None  # the last point's go first (a snapshot keeps its own)
            self.gram = a_vals.gram(w)
            H = congruence(self.gram, L)
            H.reshape(G, q * q)[:, :: q + 1] += 1.0
            self.hinv, self.logdet = block_inverse(H)
            return
        if q == 1:
            self.set_diagonal(1.0 + self.groups.sum(w * a_vals[:, 0] ** 2))
            return
        # every pair's w a_a a_b in one (n, pairs) array and one pass of sums
        first, second = self._pair_columns
        S = self.groups.sum(w[:, None] * a_vals[:, first] * a_vals[:, second])
        H = np.empty((G, q, q))
        H[:, first, second] = S
        H[:, second, first] = S
        H.reshape(G, q * q)[:, :: q + 1] += 1.0
        if self.keep_factor:
            self.linv, self.logdet = block_cholesky_inverse(H)
            self.hinv = np.matmul(np.swapaxes(self.linv, 1, 2), self.linv)
            return
        self.hinv, self.logdet = block_inverse(H)

    def set_diagonal(self, h: np.ndarray) -> None:
        """Take ``H = diag(h)`` (a scalar random effect), already formed by the caller."""
        self.hinv, self.logdet = block_inverse(h[:, None, None])

    def snapshot(self):
        """The current factorisation, to be put back by :meth:`restore`."""
        return dict(vars(self))

    def restore(self, snap) -> None:
        vars(self).update(snap)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``H^{-1} rhs`` for ``rhs`` of shape (n_levels * q,) or (n_levels * q, k)."""
        if rhs.ndim == 2:
            r = rhs.reshape(self.n_levels, self.q, -1)
            return np.einsum("gij,gjk->gik", self.hinv, r).reshape(rhs.shape)
        r = rhs.reshape(self.n_levels, self.q)
        return np.einsum("gij,gj->gi", self.hinv, r).ravel()

    def local_inverse(self) -> np.ndarray:
        """Blocks of ``H^{-1}`` seen by each row, shape (n, q, q)."""
        return self.groups.expand(self.hinv)

    def level_inverse(self, f: int = 0) -> np.ndarray:
        """Conditional covariance blocks of ``u`` for factor ``f``, shape (n_levels, q, q)."""
        return self.hinv


class PaddedBlockSolver(BlockSolver):
    """:class:`BlockSolver` for large blocks (a structured factor: one random effect per
    time point, q of tens).

    Each level's rows are laid out in a (n_levels, m, q) array, padded with zeros to
    the largest level's m rows, so that forming ``H`` and every row's ``H^{-1} a_i``
    are batched matrix products: O(n q^2) arithmetic in a few calls, instead of one
    pass over the rows per pair of random effects and an (n, q, q) array of inverse
    blocks.
    """

    def __init__(self, codes: np.ndarray, n_levels: int, q: int, groups: GroupIndex | None = None):
        super().__init__(codes, n_levels, q, groups)
        counts = np.bincount(codes, minlength=n_levels)
        self._rows = np.argsort(codes, kind="stable")
        self._lev = codes[self._rows]
        starts = np.cumsum(counts) - counts
        self._pos = np.arange(len(codes)) - np.repeat(starts, counts)
        self._m = int(counts.max()) if len(counts) else 0

    def _pad(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n_levels, self._m) + v.shape[1:])
        out[self._lev, self._pos] = v[self._rows]
        return out

    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        A = self._pad(a_vals)
        H = np.matmul(np.swapaxes(A * self._pad(w)[:, :, None], 1, 2), A)
        H[:, range(self.q), range(self.q)] += 1.0
        L = _checked_cholesky(H)
        Linv = np.linalg.inv(L)
        self.logdet = float(2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
        self.hinv = np.matmul(np.swapaxes(Linv, 1, 2), Linv)

    def row_solve(self, a_vals: np.ndarray) -> np.ndarray:
        """``H_j^{-1} a_i`` for every row ``i`` (of level ``j``), shape (n, q)."""
        K = np.matmul(self._pad(a_vals), self.hinv)  # the blocks are symmetric
        out = np.empty_like(a_vals)
        out[self._rows] = K[self._lev, self._pos]
        return out


class BlockedSolver:
    """Blocked Cholesky for several factors (MixedModels.jl's layout).

    The first (largest) factor's block ``A`` is block-diagonal and factorised
    level by level; the other factors form a dense block ``C``. With ``B`` the
    coupling block, everything goes through the Schur complement
    ``S = C - B' A^{-1} B``: ``log|H| = log|A| + log|S|``.
    """

    def __init__(self, cols: np.ndarray, Q: int, blocks: list[tuple[int, int, int]]):
        self.cols = cols
        self.Q = Q
        self.blocks = blocks
        _, G1, q1 = blocks[0]
        self.G1, self.q1, self.Q1 = G1, q1, G1 * q1
        self.Q2 = Q - self.Q1
        self.first = BlockSolver(cols[:, 0] // q1, G1, q1)
        self.first.keep_factor = q1 > 1
        self.code1 = cols[:, 0] // q1
        self.col2 = cols[:, q1:] - self.Q1  # (n, s2) indices into the dense block
        # flat indices of B (G1, q1, Q2) and C (Q2, Q2) touched by each row, in the
        # order of the products a1[:, a] a2[:, b] and a2[:, a] a2[:, b] laid out (n, ., .)
        rows1 = self.code1[:, None] * q1 + np.arange(q1)[None, :]  # (n, q1)
        self._b_flat = (rows1[:, :, None] * self.Q2 + self.col2[:, None, :]).ravel()
        self._c_flat = (self.col2[:, :, None] * self.Q2 + self.col2[:, None, :]).ravel()

    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        q1, Q2, G1 = self.q1, self.Q2, self.G1
        a1, a2 = a_vals[:, :q1], a_vals[:, q1:]
        self.first.factorize(a1, w)
        wb = ((w[:, None] * a1)[:, :, None] * a2[:, None, :]).ravel()
        B = np.bincount(self._b_flat, wb, minlength=G1 * q1 * Q2).reshape(G1, q1, Q2)
        C = self._dense_block(a2, w)
        self.B = B
        if q1 == 1:
            self.M = np.matmul(self.first.hinv, B)  # A^{-1} B, level by level
            # the O(levels x Q2^2) products go through BLAS on 2-D views
            self._factor_schur(C - B.reshape(-1, Q2).T @ self.M.reshape(-1, Q2))
            return
        # B' A^{-1} B as K'K, K = L^{-1} B (see block_cholesky_inverse)
        K = np.matmul(self.first.linv, B)
        self.M = np.matmul(np.swapaxes(self.first.linv, 1, 2), K)
        K2 = K.reshape(-1, Q2)
        self._factor_schur(C - K2.T @ K2)

    def snapshot(self):
        return dict(vars(self)), self.first.snapshot()

    def restore(self, snap) -> None:
        vars(self).update(snap[0])
        self.first.restore(snap[1])

    def _dense_block(self, a2: np.ndarray, w: np.ndarray) -> np.ndarray:
        """C = I + Z2' W Z2 over the factors after the first, (Q2, Q2)."""
        Q2 = self.Q2
        wc = ((w[:, None] * a2)[:, :, None] * a2[:, None, :]).ravel()
        C = np.bincount(self._c_flat, wc, minlength=Q2 * Q2).reshape(Q2, Q2)
        C[np.diag_indices(Q2)] += 1.0
        return C

    def _factor_schur(self, S: np.ndarray) -> None:
        """Cholesky of the Schur complement and the log-determinant of H."""
        try:
            self._L = np.linalg.cholesky(S)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefinite(str(exc)) from exc
        self.logdet = self.first.logdet + float(2.0 * np.sum(np.log(np.diag(self._L))))
        # S^{-1} and P = A^{-1} B S^{-1} are needed only by the gradient, once per
        # evaluation: PIRLS steps use triangular solves with the factor
        self._Sinv = self._P = None

    @property
    def Sinv(self) -> np.ndarray:
        if self._Sinv is None:
            self._Sinv = cholesky_inverse(self._L)
        return self._Sinv

    @property
    def P(self) -> np.ndarray:
        if self._P is None:
            self._P = (self.M.reshape(-1, self.Q2) @ self.Sinv).reshape(self.M.shape)
        return self._P

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``H^{-1} rhs`` for ``rhs`` of shape (Q,) or (Q, k)."""
        r = rhs.reshape(self.Q, -1)
        x1 = self.first.solve(r[: self.Q1])
        r2 = r[self.Q1 :] - self._Bt(x1)
        x2 = scipy.linalg.cho_solve((self._L, True), r2, check_finite=False)
        x1 = x1 - self._M(x2)
        return np.concatenate([x1, x2]).reshape(rhs.shape)

    def _Bt(self, x):
        return self.B.reshape(-1, self.Q2).T @ x

    def _M(self, x):
        return self.M.reshape(-1, self.Q2) @ x

    def _g11(self) -> np.ndarray:
        return self.first.hinv + np.matmul(self.P, np.swapaxes(self.M, 1, 2))

    def local_inverse(self) -> np.ndarray:
        q1 = self.q1
        n, s = self.cols.shape
        out = np.empty((n, s, s))
        out[:, :q1, :q1] = self._g11()[self.code1]
        g12 = -self.P[
            self.code1[:, None, None], np.arange(q1)[None, :, None], self.col2[:, None, :]
        ]
        out[:, :q1, q1:] = g12
        out[:, q1:, :q1] = np.swapaxes(g12, 1, 2)
        out[:, q1:, q1:] = self.Sinv[self.col2[:, :, None], self.col2[:, None, :]]
        return out

    def level_inverse(self, f: int) -> np.ndarray:
        if f == 0:
            return self._g11()
        off, G, q = self.blocks[f]
        idx = off - self.Q1 + np.arange(G)[:, None] * q + np.arange(q)[None, :]
        return self.Sinv[idx[:, :, None], idx[:, None, :]]


class SparseCoupledSolver(BlockedSolver):
    """:class:`BlockedSolver` with the coupling block ``B`` kept sparse.

    When each level of the first factor meets few levels of the others (crossed
    subjects x items, nested designs), ``B`` is mostly zeros: the Schur product
    ``B' A^{-1} B`` then costs the sum over levels of their squared number of
    partners instead of ``levels x Q2^2``.
    """

    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        q1, Q2, G1 = self.q1, self.Q2, self.G1
        a1, a2 = a_vals[:, :q1], a_vals[:, q1:]
        self.first.factorize(a1, w)
        s2 = a2.shape[1]
        rows, cols, vals = [], [], []
        for a in range(q1):
            for b in range(s2):
                rows.append(self.code1 * q1 + a)
                cols.append(self.col2[:, b])
                vals.append(w * a1[:, a] * a2[:, b])
        B = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(G1 * q1, Q2),
        )
        C = self._dense_block(a2, w)
        self.B = B
        if q1 == 1:
            self.M = (self._level_blocks(self.first.hinv) @ B).tocsr()  # A^{-1} B
            self._factor_schur(C - (B.T @ self.M).toarray())
            return
        # B' A^{-1} B as K'K, K = L^{-1} B (see block_cholesky_inverse); same patterns
        linv = self.first.linv
        K = (self._level_blocks(linv) @ B).tocsr()
        self.M = (self._level_blocks(np.swapaxes(linv, 1, 2)) @ K).tocsr()
        self._factor_schur(C - (K.T @ K).toarray())

    def _level_blocks(self, blocks: np.ndarray) -> sp.bsr_matrix:
        """The block-diagonal matrix of per-level blocks (G1, q1, q1)."""
        G1, q1 = self.G1, self.q1
        return sp.bsr_matrix((blocks, np.arange(G1), np.arange(G1 + 1)), shape=(G1 * q1, G1 * q1))

    @property
    def P(self) -> np.ndarray:
        if self._P is None:
            self._P = np.asarray(self.M @ self.Sinv).reshape(self.G1, self.q1, self.Q2)
        return self._P

    def _Bt(self, x):
        return self.B.T @ x

    def _M(self, x):
        return self.M @ x

    def _g11(self) -> np.ndarray:
        q1, P = self.q1, self.P.reshape(self.G1 * self.q1, self.Q2)
        out = self.first.hinv.copy()
        for a in range(q1):
            for b in range(q1):
                prod = self.M[b::q1].multiply(P[a::q1])
                out[:, a, b] += np.asarray(prod.sum(axis=1)).ravel()
        return out


SPARSE_COUPLING_MIN = 200_000  # entries of a dense B below which dense BLAS wins
SPARSE_COUPLING_DENSITY = 0.25  # most B can be filled for the sparse products to pay
