"""Crossed factors whose Schur complement has thousands of levels (users x items).

:class:`CrossedSolver` is the blocked factorisation of :class:`~.block.BlockedSolver`
(one factor eliminated level by level, the others through the Schur complement
``S = C - B' A^{-1} B``), organised for a large ``S``:

* **One factorisation per evaluation.** ``factorize`` only forms the sparse blocks.
  The Newton steps of the conditional-mode search solve with ``S`` by conjugate
  gradients, preconditioned by the Cholesky factor of the last exact ``S`` (an earlier
  step's or evaluation's, close to the current one; before the first factorisation,
  by the diagonal of ``S``). The dense Cholesky factor of ``S``
  is computed when the log-determinant, the gradient or a solve with many right-hand
  sides asks for it: once per evaluation, at the mode. Nothing is approximate: the
  value and the gradient come from that exact factorisation, and a conjugate-gradient
  solve that does not reach its tolerance is done by the factorisation instead.
* **Sparse where the coupling is sparse, dense BLAS where it is not.** ``B' A^{-1} B``
  sums an outer product per level of the eliminated factor (a user's items). Levels
  with few partners are summed as sparse products (in blocks of rows of ``S``, one per
  core); levels with many partners (a heavy user rates a large share of the items) go
  through one dense matrix product, where BLAS is faster than the sparse product's
  bookkeeping.
* **Selected inversion on the coupling's pattern.** The gradient needs ``H^{-1}`` only
  on the entries rows touch: ``S^{-1}`` (LAPACK potri, its lower triangle mirrored
  into the upper one so that an entry is read wherever it is), and
  ``P = A^{-1} B S^{-1}`` on the nonzero pattern of ``B`` (a user's items), by
  gathering ``S^{-1}`` on each level's pattern (dense products again for the heavy
  levels), never ``P`` in full.
* **BLAS on every core** for the dense factorisation and inversion of a large ``S``
  (the fit otherwise runs BLAS on one thread, which suits many small blocks).
* **The cheaper elimination order.** With two factors, the factor eliminated level by
  level is the one that leaves the smaller Schur complement (items x users of a
  subsample: the users' side).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from .block import BlockSolver, NotPositiveDefinite

# Schur complements at least this large use this solver (make_solver)
LARGE_SCHUR = 500
# a level of the eliminated factor whose partners exceed this share of the Schur
# complement's size is summed by dense BLAS, the others as sparse products
DENSE_SHARE = 0.08
# conjugate gradients: relative residual, and the iterations before the exact factor
CG_RTOL = 1e-11
CG_MAX_ITER = 40
CG_MAX_ITER_JACOBI = 200  # before the first factorisation: S's diagonal as preconditioner
# BLAS on every core for a dense Schur complement at least this large
THREADED_SCHUR = 1500
# entries of S^{-1} gathered at once in the selected inversion
_GATHER_CELLS = 2_000_000

_CONTROLLER = None


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _all_cores(Q2: int):
    """BLAS on every available core for a large dense factorisation, else as is."""
    global _CONTROLLER
    if Q2 < THREADED_SCHUR:
        return nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=_cores(), user_api="blas")


def elimination_order(blocks: list[tuple[int, int, int]]) -> int:
    """The factor to eliminate level by level: with two factors the one leaving the
    smaller Schur complement, else the first (the largest)."""
    if len(blocks) != 2:
        return 0
    sizes = [G * q for _, G, q in blocks]
    return 1 if sizes[0] < sizes[1] else 0


def _mirror_lower(A: np.ndarray, block: int = 256) -> np.ndarray:
    """``A`` symmetric from its lower triangle: the upper one overwritten by it, in
    place, a block at a time (each block's copy stays in cache)."""
    n = A.shape[0]
    for i in range(0, n, block):
        i1 = min(n, i + block)
        diag = A[i:i1, i:i1]
        upper = np.triu_indices(i1 - i, 1)
        diag[upper] = diag.T[upper]
        for j in range(i1, n, block):
            A[i:i1, j : j + block] = A[j : j + block, i:i1].T
    return A


def _pattern(rows: np.ndarray, cols: np.ndarray, shape):
    """A CSR pattern from (row, col) pairs with repeats: ``indptr``, ``indices`` and the
    position in the data array of every pair."""
    key = rows.astype(np.int64) * shape[1] + cols
    uniq, pos = np.unique(key, return_inverse=True)
    r = uniq // shape[1]
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=shape[0]), out=indptr[1:])
    return indptr, (uniq % shape[1]).astype(np.int64), pos.reshape(rows.shape)


class CrossedSolver:
    """Blocked factorisation of ``H`` for a large Schur complement (module docstring).

    Parameters are those of :class:`~.block.BlockedSolver`: ``cols`` (n, s) the entries
    of ``u`` each row touches, ``Q`` their number and ``blocks`` ``(offset, levels, q)``
    per factor.
    """

    def __init__(self, cols: np.ndarray, Q: int, blocks: list[tuple[int, int, int]]):
        self.Q, self.blocks = Q, blocks
        e = elimination_order(blocks)
        self.elim = e
        off, G1, q1 = blocks[e]
        self.G1, self.q1, self.Q1 = G1, q1, G1 * q1
        self.Q2 = Q - self.Q1
        # internal order of u: the eliminated factor first; of a row's entries likewise
        to_int = np.empty(Q, dtype=np.intp)
        first = np.arange(off, off + self.Q1)
        rest = np.setdiff1d(np.arange(Q), first)
        # the most frequent entries first: the gathers from S^{-1} then mostly read its
        # leading block, which stays in cache
        counts = np.bincount(cols.ravel(), minlength=Q)[rest]
        rest = rest[np.argsort(-counts, kind="stable")]
        self.perm = np.concatenate([first, rest])  # internal -> original
        to_int[self.perm] = np.arange(Q)
        loc = np.cumsum([0] + [b[2] for b in blocks])
        mine = np.arange(loc[e], loc[e + 1])
        self.loc_perm = np.concatenate([mine, np.setdiff1d(np.arange(loc[-1]), mine)])
        self.loc_back = np.argsort(self.loc_perm)
        c = to_int[cols[:, self.loc_perm]]
        self.code1 = c[:, 0] // q1
        self.col2 = c[:, q1:] - self.Q1
        self.first = BlockSolver(self.code1, G1, q1)
        self.first.keep_factor = q1 > 1
        self._init_patterns()
        self._precond = None  # Cholesky factor of an earlier exact S
        self._reset()

    def _init_patterns(self) -> None:
        q1, Q2, col2 = self.q1, self.Q2, self.col2
        n, s2 = col2.shape
        rows1 = self.code1[:, None] * q1 + np.arange(q1)[None, :]
        rb = np.broadcast_to(rows1[:, :, None], (n, q1, s2))
        cb = np.broadcast_to(col2[:, None, :], (n, q1, s2))
        self._b_ptr, self._b_ind, self._b_pos = _pattern(rb, cb, (self.Q1, Q2))
        ra = np.broadcast_to(col2[:, :, None], (n, s2, s2))
        ca = np.broadcast_to(col2[:, None, :], (n, s2, s2))
        rows_c = np.concatenate([ra.ravel(), np.arange(Q2)])
        cols_c = np.concatenate([ca.ravel(), np.arange(Q2)])
        ptr, ind, pos = _pattern(rows_c, cols_c, (Q2, Q2))
        self._c_ptr, self._c_ind = ptr, ind
        self._c_rows = np.repeat(np.arange(Q2), np.diff(ptr))
        self._c_pos, self._c_diag = pos[: ra.size].reshape(ra.shape), pos[ra.size :]
        # every row (level, a) of B shares its level's pattern: the entry of (level, b)
        # in the same column is ``(b - a) * nnz`` positions away
        nnz = np.diff(self._b_ptr)
        self._row_of = np.repeat(np.arange(self.Q1), nnz)
        a_of = self._row_of % q1
        self._twins = [
            np.arange(len(self._b_ind)) + (b - a_of) * nnz[self._row_of] for b in range(q1)
        ]
        heavy = nnz > DENSE_SHARE * Q2
        self._heavy = np.flatnonzero(heavy)
        light = np.flatnonzero(~heavy)
        self._light = light[np.argsort(nnz[light], kind="stable")]
        self._nnz = nnz
        # rows of S in blocks of equal work for the light levels' sparse product: row k
        # costs the partners of every light level that has k
        work = np.bincount(self._b_ind, nnz[self._row_of] * ~heavy[self._row_of], minlength=Q2)
        workers = _cores() if Q2 >= THREADED_SCHUR else 1
        cum = np.cumsum(work)
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, workers) / workers) if Q2 else []
        self._schur_rows = np.unique(np.concatenate([[0], cuts, [Q2]]).astype(np.int64))

    def _reset(self) -> None:
        self._L = self._Sinv = self._P = self._g11_cache = self._diag = None
        self._logdet = None

    # -- forming H ------------------------------------------------------------
    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        """Form the blocks of ``H`` from row values ``a_vals`` (n, s) and curvatures ``w``.

        The dense factorisation of ``S`` waits until it is needed; with a negative
        curvature (``H`` possibly indefinite) it is done now, to raise
        :class:`NotPositiveDefinite` where the blocked solver would.
        """
        q1, Q2 = self.q1, self.Q2
        a = a_vals[:, self.loc_perm]
        a1, a2 = a[:, :q1], a[:, q1:]
        self.first.factorize(a1, w)
        wb = (w[:, None] * a1)[:, :, None] * a2[:, None, :]
        bdata = np.bincount(self._b_pos.ravel(), wb.ravel(), minlength=len(self._b_ind))
        wc = (w[:, None] * a2)[:, :, None] * a2[:, None, :]
        cdata = np.bincount(self._c_pos.ravel(), wc.ravel(), minlength=len(self._c_ind))
        cdata[self._c_diag] += 1.0
        self.B = sp.csr_matrix((bdata, self._b_ind, self._b_ptr), shape=(self.Q1, Q2))
        self.C = sp.csr_matrix((cdata, self._c_ind, self._c_ptr), shape=(Q2, Q2))
        lev = self._row_of // q1
        a_of = self._row_of % q1
        self.M = self._level_times(self.first.hinv, bdata, lev, a_of)
        # S = C - K'K with K = L^{-1} B for blocks of several effects (the Cholesky
        # arithmetic: see block_cholesky_inverse); B'M for scalar ones
        self.K = self._level_times(self.first.linv, bdata, lev, a_of) if q1 > 1 else None
        self._reset()
        if w.min() < 0.0:
            self._factor()

    def _level_times(self, blocks, bdata, lev, a_of) -> sp.csr_matrix:
        """``blockdiag(blocks) @ B`` on B's pattern (every row of a level shares it)."""
        out = np.zeros_like(bdata)
        for b in range(self.q1):
            out += blocks[lev, a_of, b] * bdata[self._twins[b]]
        return sp.csr_matrix((out, self._b_ind, self._b_ptr), shape=(self.Q1, self.Q2))

    def _schur(self) -> np.ndarray:
        """``S = C - B' A^{-1} B`` as a dense array (module docstring: sparse and dense
        parts). Complete in the lower triangle of ``S.T`` (the triangle LAPACK reads
        there); with a scalar eliminated factor the heavy levels' part is subtracted
        from that triangle only (BLAS syrk), in place."""
        light, heavy, Q2 = self._light, self._heavy, self.Q2
        S = np.empty((Q2, Q2))
        if len(light):
            self._light_schur(S)
        else:
            S.fill(0.0)
        S[self._c_rows, self._c_ind] += self.C.data
        if len(heavy):
            with _all_cores(Q2):
                if self.q1 == 1:  # A^{-1} diagonal: a symmetric product
                    R = self.B[heavy].toarray()
                    R *= np.sqrt(self.first.hinv[heavy, 0, 0])[:, None]
                    St = scipy.linalg.blas.dsyrk(-1.0, R.T, beta=1.0, c=S.T, lower=1, overwrite_c=1)
                    S = St.T
                else:
                    Kh = self.K[heavy].toarray()
                    S -= Kh.T @ Kh
        return S

    def _light_schur(self, S: np.ndarray) -> None:
        """``S = -B_l' A_l^{-1} B_l`` over the light levels ``l``, by sparse products,
        in blocks of rows of ``S`` of equal work (one per core: the products release
        the interpreter lock)."""
        light = self._light
        left, right = (self.B, self.M) if self.K is None else (self.K, self.K)
        Bt = left[light].T.tocsr()
        Mn = right[light]
        Mn.data *= -1.0

        def rows(k):
            r0, r1 = self._schur_rows[k], self._schur_rows[k + 1]
            (Bt[r0:r1] @ Mn).toarray(out=S[r0:r1])

        blocks = range(len(self._schur_rows) - 1)
        if len(blocks) > 1:
            with ThreadPoolExecutor(len(blocks)) as pool:
                list(pool.map(rows, blocks))
        else:
            rows(0)

    def _factor(self) -> None:
        """The dense Cholesky factor of ``S`` and the log-determinant of ``H``."""
        S = self._schur()
        # S.T: the same symmetric matrix, factorised in place; the upper triangle of the
        # factor is left as it was (never read: every use of L is of its lower triangle)
        with _all_cores(self.Q2):
            L, info = scipy.linalg.lapack.dpotrf(S.T, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            raise NotPositiveDefinite(f"Schur complement not positive definite (info {info})")
        self._L = self._precond = L
        self._logdet = self.first.logdet + float(2.0 * np.sum(np.log(np.diag(L))))

    @property
    def logdet(self) -> float:
        if self._L is None:
            self._factor()
        return self._logdet

    # -- solves -----------------------------------------------------------------
    def _Ainv(self, x):
        return self.first.solve(x)

    def _S_mul(self, v):
        return self.C @ v - self.B.T @ self._Ainv(self.B @ v)

    def _jacobi(self) -> np.ndarray:
        """The diagonal of ``S``: the preconditioner before any factorisation."""
        if self._diag is None:
            diag = self.C.diagonal() - np.bincount(
                self._b_ind, self.B.data * self.M.data, minlength=self.Q2
            )
            self._diag = np.maximum(diag, 1e-12)
        return self._diag

    def _precond_solve(self, r):
        L = self._precond
        if L is None:
            return r / self._jacobi()
        y = scipy.linalg.solve_triangular(L, r, lower=True, check_finite=False)
        return scipy.linalg.solve_triangular(L, y, lower=True, trans=1, check_finite=False)

    def _cg(self, r2: np.ndarray):
        """``S^{-1} r2`` by preconditioned conjugate gradients, or None when the
        tolerance is not reached in :data:`CG_MAX_ITER` iterations."""
        norm0 = np.linalg.norm(r2)
        x = np.zeros_like(r2)
        if norm0 == 0.0:
            return x
        r = r2.copy()
        z = self._precond_solve(r)
        p, rz = z.copy(), r @ z
        for _ in range(CG_MAX_ITER if self._precond is not None else CG_MAX_ITER_JACOBI):
            Sp = self._S_mul(p)
            pSp = p @ Sp
            if not pSp > 0.0:
                return None
            alpha = rz / pSp
            x += alpha * p
            r -= alpha * Sp
            if np.linalg.norm(r) <= CG_RTOL * norm0:
                return x
            z = self._precond_solve(r)
            rz, rz_old = r @ z, rz
            p = z + (rz / rz_old) * p
        return None

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``H^{-1} rhs`` for ``rhs`` of shape (Q,) or (Q, k)."""
        r = rhs[self.perm]
        x1 = self._Ainv(r[: self.Q1])
        r2 = r[self.Q1 :] - self.B.T @ x1
        x2 = None
        if self._L is None and rhs.ndim == 1:
            x2 = self._cg(r2)
        if x2 is None:
            if self._L is None:
                self._factor()
            x2 = scipy.linalg.cho_solve((self._L, True), r2, check_finite=False)
        x = np.concatenate([x1 - self.M @ x2, x2])
        out = np.empty_like(x)
        out[self.perm] = x
        return out

    # -- selected inversion -----------------------------------------------------
    @property
    def Sinv(self) -> np.ndarray:
        """``S^{-1}`` in full: LAPACK potri's lower triangle, mirrored into the upper one
        (so that an entry is read at ``(r, c)`` whichever side it is on)."""
        if self._Sinv is None:
            if self._L is None:
                self._factor()
            with _all_cores(self.Q2):
                inv, info = scipy.linalg.lapack.dpotri(self._L, lower=1)
            if info != 0:
                raise NotPositiveDefinite(f"cannot invert the Schur complement (info {info})")
            self._Sinv = _mirror_lower(inv)
        return self._Sinv

    def _sinv_at(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Entries ``S^{-1}[r, c]`` (broadcast)."""
        return self.Sinv[r, c]

    def _pattern_P(self) -> np.ndarray:
        """``P = A^{-1} B S^{-1}`` on the pattern of ``B`` (aligned with its data)."""
        if self._P is not None:
            return self._P
        Sinv, M, Q2 = self.Sinv, self.M, self.Q2
        out = np.empty(len(self._b_ind))
        ptr, ind, nnz = self._b_ptr, self._b_ind, self._nnz
        if len(self._heavy):
            h = self._heavy
            with _all_cores(Q2):  # S^{-1} M_h' from the lower triangle (BLAS symm)
                PhT = scipy.linalg.blas.dsymm(1.0, Sinv, M[h].toarray().T, lower=1)
            pos = np.concatenate([np.arange(ptr[r], ptr[r + 1]) for r in h])
            out[pos] = PhT[ind[pos], np.repeat(np.arange(len(h)), nnz[h])]
        rows, k, chunks = self._light, 0, []
        while k < len(rows):
            cost = nnz[rows[k:]].astype(np.int64) ** 2 * np.arange(1, len(rows) - k + 1)
            chunks.append(rows[k : k + max(1, int(np.searchsorted(cost, _GATHER_CELLS, "right")))])
            k += len(chunks[-1])

        def fill(chunk):
            out_pos, t = self._light_products(chunk, Sinv)
            out[out_pos] = t

        # the gathers wait on memory, not arithmetic: a thread per core overlaps them
        workers = _cores() if Q2 >= THREADED_SCHUR else 1
        if workers > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fill, chunks))
        else:
            for chunk in chunks:
                fill(chunk)
        self._P = out
        return out

    def _light_products(self, chunk: np.ndarray, Sinv: np.ndarray):
        """``S^{-1}[J, J] m_J`` for the rows ``chunk`` of ``M`` (pattern ``J`` each),
        padded to the longest row; returns the data positions and the values."""
        ptr, ind, nnz, Q2 = self._b_ptr, self._b_ind, self._nnz, self.Q2
        dmax = int(nnz[chunk].max())
        valid = np.arange(dmax)[None, :] < nnz[chunk][:, None]
        pos = np.where(valid, ptr[chunk][:, None] + np.arange(dmax)[None, :], 0)
        J = np.where(valid, ind[pos], 0)
        mv = np.where(valid, self.M.data[pos], 0.0)
        # the entry (J[a], J[b]) of the symmetric S^{-1}, at J[a] * Q2 + J[b] of its
        # flat array in either memory order
        flat = (J * Q2)[:, :, None] + J[:, None, :]
        block = np.take(Sinv.T if Sinv.flags.f_contiguous else Sinv, flat)
        t = np.matmul(block, mv[:, :, None])[:, :, 0]
        return pos[valid], t[valid]

    def _g11(self) -> np.ndarray:
        """Blocks of ``H^{-1}`` of the eliminated factor's levels, (G1, q1, q1)."""
        if self._g11_cache is None:
            q1, P, mdata = self.q1, self._pattern_P(), self.M.data
            lev = self._row_of // q1
            out = self.first.hinv.copy()
            for a in range(q1):
                sel = self._row_of % q1 == a
                for b in range(q1):
                    prod = mdata[self._twins[b][sel]] * P[sel]
                    out[:, a, b] += np.bincount(lev[sel], prod, minlength=self.G1)
            self._g11_cache = out
        return self._g11_cache

    def local_inverse(self) -> np.ndarray:
        """Blocks of ``H^{-1}`` seen by each row, shape (n, s, s), in the rows' order of
        entries."""
        q1 = self.q1
        n, s2 = self.col2.shape
        P = self._pattern_P()
        out = np.empty((n, q1 + s2, q1 + s2))
        out[:, :q1, :q1] = self._g11()[self.code1]
        g12 = -P[self._b_pos]
        out[:, :q1, q1:] = g12
        out[:, q1:, :q1] = np.swapaxes(g12, 1, 2)
        out[:, q1:, q1:] = self._sinv_at(self.col2[:, :, None], self.col2[:, None, :])
        back = self.loc_back
        return out[:, back][:, :, back]

    def level_inverse(self, f: int) -> np.ndarray:
        """Conditional covariance blocks of ``u`` for factor ``f``, (levels, q, q)."""
        if f == self.elim:
            return self._g11()
        off, G, q = self.blocks[f]
        to_int = np.empty(self.Q, dtype=np.intp)
        to_int[self.perm] = np.arange(self.Q)
        idx = to_int[off + np.arange(G)[:, None] * q + np.arange(q)[None, :]] - self.Q1
        return self._sinv_at(idx[:, :, None], idx[:, None, :])

    def snapshot(self):
        return dict(vars(self)), self.first.snapshot()

    def restore(self, snap) -> None:
        vars(self).update(snap[0])
        self.first.restore(snap[1])
