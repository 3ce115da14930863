"""Factorisation of the Laplace Hessian for nested grouping factors.

When the first factor is nested in a later one, that one in a third, and so on
(a *chain*: measurements in students in classes in schools), eliminating a
level of a chain factor only touches the one level of each later chain factor
that contains it. Block Gaussian elimination then runs factor by factor, every
level at once as a batch of small matrices, in time linear in the number of
levels (the elimination tree of lme4's and MixedModels.jl's sparse Cholesky).
The factors outside the chain (crossed with it) form the *tail*, eliminated
last through a dense Cholesky factor; the chain's coupling to it is sparse.

Notation, for chain factors ``a < b`` (in elimination order), a level ``j``
of ``a`` and ``anc[a][b][j]``, the level of ``b`` containing it:

* ``D[a][j]``: the diagonal block of level ``j`` once the factors before
  ``a`` are eliminated, (q_a, q_a);
* ``E[a][b][j]``: its coupling to level ``anc[a][b][j]`` of ``b``, (q_a, q_b);
* ``F[a][j]``: its coupling to the tail, (q_a, QT), stored as one sparse
  (G_a q_a, QT) matrix; ``T``: the tail block, dense.

With ``M[a][b] = D[a]^{-1} E[a][b]`` and ``N[a] = D[a]^{-1} F[a]``, eliminating
``a`` subtracts ``E[a][b]' M[a][c]`` and ``E[a][b]' N[a]`` from the blocks of
the containing levels, and ``F[a]' N[a]`` from ``T``;
``log|H| = sum log|D| + log|T|``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..groups import GroupIndex
from .block import NotPositiveDefinite, block_cholesky_inverse, block_inverse, cholesky_inverse


def containing_levels(codes_a: np.ndarray, n_levels_a: int, codes_b: np.ndarray):
    """For every level of factor ``a``, the one level of ``b`` it occurs with.

    None when some level of ``a`` occurs with several levels of ``b`` (``a`` is
    not nested in ``b``).
    """
    parent = np.zeros(n_levels_a, dtype=np.intp)
    parent[codes_a] = codes_b
    return parent if np.array_equal(parent[codes_a], codes_b) else None


def factor_codes(cols: np.ndarray, blocks: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Level codes of every factor from the rows' random-effect indices."""
    out, loc = [], 0
    for off, _, q in blocks:
        out.append((cols[:, loc] - off) // q)
        loc += q
    return out


def nesting_chain(codes: list[np.ndarray], blocks: list[tuple[int, int, int]]) -> list[int]:
    """Factors forming a chain from the first: each one nested in the next.

    Factors are scanned in order (largest first); one joins the chain when the
    chain's last factor is nested in it.
    """
    chain = [0]
    for f in range(1, len(blocks)):
        last = chain[-1]
        if containing_levels(codes[last], blocks[last][1], codes[f]) is not None:
            chain.append(f)
    return chain


def elimination_costs(
    codes: list[np.ndarray], blocks: list[tuple[int, int, int]], chain: list[int]
) -> tuple[float, float]:
    """Leading flop counts: elimination along ``chain``, and the Schur complement.

    Along the chain, a level meeting ``p`` random effects of the tail (the
    factors outside the chain, ``QT`` effects; ``p`` at most its rows times
    their tail effects) costs ``q p^2`` in the tail's update and ``q p QT`` in
    the inverse's blocks, and the tail's dense Cholesky ``QT^3 / 3``. The Schur
    complement over all factors after the first costs its dense Cholesky.
    """
    sizes = [G * q for _, G, q in blocks]
    schur = sum(sizes[1:]) ** 3 / 3.0
    tail = [f for f in range(len(blocks)) if f not in chain]
    QT = sum(sizes[f] for f in tail)
    s_tail = sum(blocks[f][2] for f in tail)
    along = QT**3 / 3.0
    for f in chain if QT else ():
        _, G, q = blocks[f]
        p = np.minimum(QT, np.bincount(codes[f], minlength=G) * s_tail).astype(float)
        along += q * float(np.sum(p * (p + QT)))
    return along, schur


def _csr_pattern(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]):
    """CSR structure of the entries at (rows, cols), and each entry's slot in it.

    Entries sharing a position share a slot: a CSR matrix with values ``v`` at
    those entries (duplicates summed) has data ``bincount(slot, v)``.
    """
    flat = rows.astype(np.int64) * shape[1] + cols
    uniq, slot = np.unique(flat, return_inverse=True)
    indptr = np.searchsorted(uniq // shape[1], np.arange(shape[0] + 1))
    return (uniq % shape[1]).astype(np.int32), indptr.astype(np.int32), slot.ravel()


def _csr(pattern, vals: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """The CSR matrix of ``pattern`` (:func:`_csr_pattern`) with values ``vals``."""
    indices, indptr, slot = pattern
    data = np.bincount(slot, vals, minlength=len(indices))
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def _block_diagonal_times(blocks: np.ndarray, X: sp.csr_matrix) -> sp.csr_matrix:
    """``blockdiag(blocks) @ X`` for blocks (G, q, q) and a sparse X (G q, k)."""
    G, q, _ = blocks.shape
    if q == 1:
        return sp.csr_matrix(X.multiply(blocks[:, 0, :]))
    bd = sp.bsr_matrix((blocks, np.arange(G), np.arange(G + 1)), shape=(G * q, G * q))
    return sp.csr_matrix(bd @ X)


def _level_products(N: sp.csr_matrix, V: np.ndarray) -> np.ndarray:
    """For every level ``j``: its rows of the sparse ``N`` times ``V[j]'``.

    ``N`` is (G q, QT) with level ``j`` on rows ``j q .. j q + q - 1``, ``V`` is
    dense (G, r, QT); returns (G, q, r).
    """
    G, r, _ = V.shape
    coo = N.tocoo()
    q = N.shape[0] // G
    vals = coo.data[:, None] * V[coo.row // q, :, coo.col]  # (nnz, r)
    out = np.empty((G * q, r))
    for c in range(r):
        out[:, c] = np.bincount(coo.row, vals[:, c], minlength=G * q)
    return out.reshape(G, q, r)


class _ChildSum:
    """Sums of per-level arrays of a factor over the levels of a factor containing it."""

    def __init__(self, parent: np.ndarray, n_parent: int):
        order = np.argsort(parent, kind="stable")
        p = parent[order]
        self.order = None if np.all(order == np.arange(len(order))) else order
        self.starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
        self.targets = None if len(self.starts) == n_parent else p[self.starts]
        self.n_parent = n_parent

    def __call__(self, v: np.ndarray) -> np.ndarray:
        if self.order is not None:
            v = v[self.order]
        s = np.add.reduceat(v, self.starts, axis=0)
        if self.targets is None:
            return s
        out = np.zeros((self.n_parent,) + v.shape[1:])
        out[self.targets] = s
        return out


def _t(x: np.ndarray) -> np.ndarray:
    """Transpose of every matrix of a batch."""
    return np.swapaxes(x, -1, -2)


class NestedSolver:
    """Block elimination along a chain of nested factors, then a dense tail.

    ``chain`` lists the factor indices of the chain (starting with factor 0,
    each nested in the next), every other factor goes to the tail.
    """

    def __init__(
        self, cols: np.ndarray, Q: int, blocks: list[tuple[int, int, int]], chain: list[int]
    ):
        self.cols, self.Q, self.blocks, self.chain = cols, Q, blocks, chain
        codes = factor_codes(cols, blocks)
        starts = np.cumsum([0] + [q for _, _, q in blocks])
        self.local = [np.arange(starts[f], starts[f + 1]) for f in range(len(blocks))]
        m = len(chain)
        self.G = [blocks[f][1] for f in chain]
        self.q = [blocks[f][2] for f in chain]
        self.groups = [GroupIndex(codes[f], blocks[f][1]) for f in chain]
        self.anc = [[None] * m for _ in range(m)]
        self.up = [[None] * m for _ in range(m)]
        for a in range(m):
            for b in range(a + 1, m):
                fa, fb = chain[a], chain[b]
                self.anc[a][b] = containing_levels(codes[fa], blocks[fa][1], codes[fb])
                self.up[a][b] = _ChildSum(self.anc[a][b], blocks[fb][1])
        # columns of a_vals for chain factors a..m-1, in chain order
        self._later = [np.concatenate([self.local[f] for f in chain[a:]]) for a in range(m)]
        self._init_tail(cols, blocks, codes)

    def _init_tail(self, cols, blocks, codes) -> None:
        """Index maps of the tail (the factors outside the chain) and of its couplings."""
        self.tail = [f for f in range(len(blocks)) if f not in self.chain]
        self.tail_offset, QT = {}, 0
        for f in self.tail:
            self.tail_offset[f] = QT
            QT += blocks[f][1] * blocks[f][2]
        self.QT = QT
        if not QT:
            return
        self.tail_local = np.concatenate([self.local[f] for f in self.tail])
        self.tail_cols = np.concatenate(
            [cols[:, self.local[f]] - blocks[f][0] + self.tail_offset[f] for f in self.tail],
            axis=1,
        )  # (n, sT) indices into the tail block
        tc = self.tail_cols
        self._t_flat = (tc[:, :, None] * QT + tc[:, None, :]).ravel()
        self._f_pattern = []  # sparse structure of F[a]: rows (level, effect), tail columns
        for f, q, G in zip(self.chain, self.q, self.G):
            rows = codes[f][:, None] * q + np.arange(q)[None, :]  # (n, q)
            r, c = np.broadcast_arrays(rows[:, :, None], tc[:, None, :])
            self._f_pattern.append(_csr_pattern(r.ravel(), c.ravel(), (G * q, QT)))
        m = len(self.chain)
        self._up_pattern = [[None] * m for _ in range(m)]
        for a in range(m):
            for b in range(a + 1, m):
                self._up_pattern[a][b] = self._child_sum_pattern(a, b)

    def _child_sum_pattern(self, a: int, b: int):
        """CSR structure of the sum over children as a (G_b q_b, G_a q_a) matrix.

        Level ``j`` of ``a`` contributes a (q_b, q_a) block at its containing
        level of ``b``: its values are the blocks ``E[a][b]'`` raveled.
        """
        qa, qb = self.q[a], self.q[b]
        r = self.anc[a][b][:, None, None] * qb + np.arange(qb)[None, :, None]
        c = np.arange(self.G[a])[:, None, None] * qa + np.arange(qa)[None, None, :]
        r, c = np.broadcast_arrays(r, c)
        return _csr_pattern(r.ravel(), c.ravel(), (self.G[b] * qb, self.G[a] * qa))

    # -- factorisation -------------------------------------------------------
    def _assemble(self, a_vals: np.ndarray, w: np.ndarray):
        """The blocks D, E, F of H = A'WA + I and the tail block T."""
        m, QT = len(self.chain), self.QT
        n = len(w)
        D, E, F = [], [[None] * m for _ in range(m)], []
        a_tail = a_vals[:, self.tail_local] if QT else None
        for a in range(m):
            qa = self.q[a]
            wa = w[:, None] * a_vals[:, self.local[self.chain[a]]]
            later = a_vals[:, self._later[a]]
            prod = (wa[:, :, None] * later[:, None, :]).reshape(n, -1)
            S = self.groups[a].sum(prod).reshape(self.G[a], qa, -1)
            D.append(S[:, :, :qa] + np.eye(qa))
            k = qa
            for b in range(a + 1, m):
                E[a][b] = S[:, :, k : k + self.q[b]]
                k += self.q[b]
            if QT:
                vals = (wa[:, :, None] * a_tail[:, None, :]).ravel()
                F.append(_csr(self._f_pattern[a], vals, (self.G[a] * qa, QT)))
        T = None
        if QT:
            vals = ((w[:, None] * a_tail)[:, :, None] * a_tail[:, None, :]).ravel()
            T = np.bincount(self._t_flat, vals, minlength=QT * QT).reshape(QT, QT)
            T[np.diag_indices(QT)] += 1.0
        return D, E, F, T

    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        """Form and factorise H from row values ``a_vals`` (n, s) and curvatures ``w`` (n,)."""
        m = len(self.chain)
        D, E, F, T = self._assemble(a_vals, w)
        Dinv, M, N = [], [[None] * m for _ in range(m)], []
        logdet = 0.0
        for a in range(m):
            if self.q[a] == 1:
                linv = None
                hinv, ld = block_inverse(D[a])
            else:  # eliminated through the Cholesky factors (see _eliminate)
                linv, ld = block_cholesky_inverse(D[a])
                hinv = _t(linv) @ linv
            Dinv.append(hinv)
            logdet += ld
            for b in range(a + 1, m):
                M[a][b] = hinv @ E[a][b]
            N.append(_block_diagonal_times(hinv, F[a]) if self.QT else None)
            T = self._eliminate(a, D, E, F, T, M[a], N[a], linv)
        self._L = None
        if self.QT:
            try:
                self._L = np.linalg.cholesky(T)
            except np.linalg.LinAlgError as exc:
                raise NotPositiveDefinite(str(exc)) from exc
            logdet += float(2.0 * np.sum(np.log(np.diag(self._L))))
        self.Dinv, self.M, self.N, self.logdet = Dinv, M, N, logdet
        self._sel = None  # the selected inverse, computed when first needed

    def _eliminate(self, a: int, D, E, F, T, Ma, Na, linv=None):
        """Subtract chain factor ``a``'s contributions from the later blocks; returns the new T.

        ``D``, ``E``, ``F`` (lists of the blocks, updated in place) of every
        level containing a level ``j`` of ``a`` lose ``E_j' D_j^{-1} E_j``,
        ``E_j' D_j^{-1} F_j``; the tail block loses ``F_j' D_j^{-1} F_j``: each
        ``X' D_j^{-1} Y`` as ``X' (D_j^{-1} Y)`` (``Ma``, ``Na``), or with ``linv`` (the
        inverse Cholesky factors of the ``D_j``, blocks of several effects) as
        ``(L_j^{-1} X)' (L_j^{-1} Y)``: Cholesky's arithmetic, accurate where an explicit
        ``D_j^{-1}`` loses digits (``block_cholesky_inverse``).
        """
        m, QT = len(self.chain), self.QT
        if linv is None:
            left, right = E[a], Ma
            f_left, f_right = (F[a], Na) if QT else (None, None)
        else:
            left = right = [None] * (a + 1) + [linv @ E[a][b] for b in range(a + 1, m)]
            f_left = f_right = _block_diagonal_times(linv, F[a]) if QT else None
        for b in range(a + 1, m):
            up, Lt = self.up[a][b], _t(left[b])
            D[b] = D[b] - up(Lt @ right[b])
            for c in range(b + 1, m):
                E[b][c] = E[b][c] - up(Lt @ right[c])
            if QT:
                shape = (self.G[b] * self.q[b], self.G[a] * self.q[a])
                F[b] = F[b] - _csr(self._up_pattern[a][b], Lt.ravel(), shape) @ f_right
        if QT:
            T = T - (f_left.T @ f_right).toarray()
        return T

    def snapshot(self):
        """The current factorisation, to be put back by :meth:`restore`."""
        return dict(vars(self))

    def restore(self, snap) -> None:
        vars(self).update(snap)

    # -- solves --------------------------------------------------------------
    def _segment(self, r: np.ndarray, f: int) -> np.ndarray:
        off, G, q = self.blocks[f]
        return r[off : off + G * q].reshape(G, q, -1)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``H^{-1} rhs`` for ``rhs`` of shape (Q,) or (Q, k)."""
        m, QT = len(self.chain), self.QT
        r = rhs.reshape(self.Q, -1)
        k = r.shape[1]
        z = [self._segment(r, f).copy() for f in self.chain]
        zt = np.concatenate([self._segment(r, f).reshape(-1, k) for f in self.tail]) if QT else None
        for a in range(m):  # forward: z = L^{-1} r
            for b in range(a + 1, m):
                z[b] -= self.up[a][b](_t(self.M[a][b]) @ z[a])
            if QT:
                zt = zt - self.N[a].T @ z[a].reshape(-1, k)
        x = [None] * m
        xt = scipy.linalg.cho_solve((self._L, True), zt, check_finite=False) if QT else None
        for a in reversed(range(m)):  # backward: x = L^{-T} D^{-1} z
            xa = self.Dinv[a] @ z[a]
            for b in range(a + 1, m):
                xa -= self.M[a][b] @ x[b][self.anc[a][b]]
            if QT:
                xa -= (self.N[a] @ xt).reshape(xa.shape)
            x[a] = xa
        out = np.empty(r.shape)
        for f, xa in zip(self.chain, x):
            off, G, q = self.blocks[f]
            out[off : off + G * q] = xa.reshape(G * q, k)
        for f in self.tail:
            off, G, q = self.blocks[f]
            t0 = self.tail_offset[f]
            out[off : off + G * q] = xt[t0 : t0 + G * q]
        return out.reshape(rhs.shape)

    # -- blocks of the inverse -----------------------------------------------
    def _selected_inverse(self):
        """Blocks of ``H^{-1}`` on the pattern of the factorisation (Takahashi's equations).

        Returns ``S``, ``ST``, ``STT``: ``S[a][a]`` (G_a, q_a, q_a) the diagonal
        blocks of chain factor ``a``; ``S[a][b]`` (G_a, q_a, q_b) for ``b > a``
        the block between each level and its containing level of ``b``;
        ``ST[a]`` (G_a, q_a, QT) the block between each level and the tail;
        ``STT`` (QT, QT) the tail's block. Levels are visited from the last
        chain factor down: with ``K`` the levels containing level ``j`` and the
        tail, ``H^{-1}[j, K] = -D_j^{-1} E_j H^{-1}[K, K]`` and
        ``H^{-1}[j, j] = D_j^{-1} - D_j^{-1} E_j H^{-1}[K, j]``.
        """
        if self._sel is not None:
            return self._sel
        m, QT = len(self.chain), self.QT
        STT = None
        if QT:
            STT = cholesky_inverse(self._L)
        S, ST = [[None] * m for _ in range(m)], [None] * m
        for a in reversed(range(m)):
            Ma, Na, anc = self.M[a], self.N[a], self.anc[a]
            for k in range(a + 1, m):
                acc = _level_products(Na, ST[k][anc[k]]) if QT else 0.0
                for b in range(a + 1, m):
                    acc = acc + Ma[b] @ self._between(S, a, b, k)
                S[a][k] = -acc
            if QT:
                acc = np.asarray(Na @ STT).reshape(self.G[a], self.q[a], QT)
                for b in range(a + 1, m):
                    acc += Ma[b] @ ST[b][anc[b]]
                ST[a] = -acc
            Saa = self.Dinv[a].copy()
            for k in range(a + 1, m):
                Saa -= Ma[k] @ _t(S[a][k])
            if QT:
                Saa -= _level_products(Na, ST[a])
            S[a][a] = 0.5 * (Saa + _t(Saa))
        self._sel = S, ST, STT
        return self._sel

    def _between(self, S, a: int, b: int, k: int) -> np.ndarray:
        """``H^{-1}`` between the levels of ``b`` and of ``k`` containing each level of ``a``."""
        anc = self.anc[a]
        if b == k:
            return S[k][k][anc[k]]
        if b < k:
            return S[b][k][anc[b]]
        return _t(S[k][b][anc[k]])

    def local_inverse(self) -> np.ndarray:
        """Blocks of ``H^{-1}`` on the random effects each row touches, (n, s, s)."""
        S, ST, STT = self._selected_inverse()
        m, QT = len(self.chain), self.QT
        n, s = self.cols.shape
        out = np.empty((n, s, s))
        for a in range(m):
            la, g = self.local[self.chain[a]], self.groups[a]
            out[:, la[:, None], la[None, :]] = g.expand(S[a][a])
            for b in range(a + 1, m):
                lb = self.local[self.chain[b]]
                blk = g.expand(S[a][b])
                out[:, la[:, None], lb[None, :]] = blk
                out[:, lb[:, None], la[None, :]] = _t(blk)
            if QT:
                tl = self.tail_local
                qi = np.arange(self.q[a])[None, :, None]
                blk = ST[a][g.codes[:, None, None], qi, self.tail_cols[:, None, :]]
                out[:, la[:, None], tl[None, :]] = blk
                out[:, tl[:, None], la[None, :]] = _t(blk)
        if QT:
            tl, tc = self.tail_local, self.tail_cols
            out[:, tl[:, None], tl[None, :]] = STT[tc[:, :, None], tc[:, None, :]]
        return out

    def level_inverse(self, f: int) -> np.ndarray:
        """Conditional covariance blocks of ``u`` for factor ``f``, (n_levels, q, q)."""
        S, _, STT = self._selected_inverse()
        if f in self.chain:
            a = self.chain.index(f)
            return S[a][a]
        _, G, q = self.blocks[f]
        idx = self.tail_offset[f] + np.arange(G)[:, None] * q + np.arange(q)[None, :]
        return STT[idx[:, :, None], idx[:, None, :]]
