"""Factorisations of the Laplace Hessian ``H = Lambda' Z' W Z Lambda + I``.

Two layouts share one interface:

* :class:`BlockSolver` — a single grouping factor. ``H`` is block-diagonal with
  one ``q x q`` block per level; every level is factorised at once as a batch.
* :class:`DenseSolver` — several (nested or crossed) factors. ``H`` is built as a
  sparse product and factorised densely (``Q`` = total random-effect count).

Both give ``solve`` (``H^{-1} r``), ``logdet`` and ``local_inverse`` — for every
row ``i`` the block of ``H^{-1}`` on the random effects row ``i`` touches, which
the analytic gradient needs.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp


class NotPositiveDefinite(np.linalg.LinAlgError):
    """The Laplace Hessian is not positive definite at the current point."""


class BlockSolver:
    """Batched factorisation for one factor: ``n_levels`` independent ``q x q`` blocks."""

    def __init__(self, codes: np.ndarray, n_levels: int, q: int):
        self.codes = codes
        self.n_levels = n_levels
        self.q = q
        self._pairs = [(a, b) for a in range(q) for b in range(a, q)]

    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        """Form and factorise H from row values ``a_vals`` (n, q) and curvatures ``w`` (n,)."""
        G, q = self.n_levels, self.q
        if q == 1:
            h = 1.0 + np.bincount(self.codes, w * a_vals[:, 0] ** 2, minlength=G)
            if not np.all(h > 0):
                raise NotPositiveDefinite("Laplace Hessian is not positive definite")
            self.hinv = (1.0 / h)[:, None, None]
            self.logdet = float(np.sum(np.log(h)))
            return
        H = np.zeros((G, q, q))
        for a, b in self._pairs:
            s = np.bincount(self.codes, w * a_vals[:, a] * a_vals[:, b], minlength=G)
            H[:, a, b] = s
            H[:, b, a] = s
        H[:, range(q), range(q)] += 1.0
        try:
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefinite(str(exc)) from exc
        self.logdet = float(2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
        Linv = np.linalg.inv(L)
        self.hinv = np.einsum("gki,gkj->gij", Linv, Linv)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``H^{-1} rhs`` for ``rhs`` of shape (n_levels * q,)."""
        r = rhs.reshape(self.n_levels, self.q)
        return np.einsum("gij,gj->gi", self.hinv, r).ravel()

    def local_inverse(self) -> np.ndarray:
        """Blocks of ``H^{-1}`` seen by each row, shape (n, q, q)."""
        return self.hinv[self.codes]

    def level_inverse(self, f: int = 0) -> np.ndarray:
        """Conditional covariance blocks of ``u`` for factor ``f``, shape (n_levels, q, q)."""
        return self.hinv


class DenseSolver:
    """Dense factorisation of the full ``Q x Q`` Hessian for several factors."""

    def __init__(self, cols: np.ndarray, Q: int, blocks: list[tuple[int, int, int]]):
        # cols: (n, s) global random-effect index touched by each row's local entries
        self.cols = cols
        self.Q = Q
        self.blocks = blocks  # per factor: (offset, n_levels, q)
        n, s = cols.shape
        self._indptr = np.arange(0, n * s + 1, s)

    def factorize(self, a_vals: np.ndarray, w: np.ndarray) -> None:
        n, s = self.cols.shape
        A = sp.csr_matrix((a_vals.ravel(), self.cols.ravel(), self._indptr), shape=(n, self.Q))
        H = (A.T @ sp.diags(w) @ A).toarray()
        H[np.diag_indices_from(H)] += 1.0
        try:
            self._cho = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefinite(str(exc)) from exc
        self.logdet = float(2.0 * np.sum(np.log(np.diag(self._cho[0]))))
        self.hinv = scipy.linalg.cho_solve(self._cho, np.eye(self.Q), check_finite=False)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return scipy.linalg.cho_solve(self._cho, rhs, check_finite=False)

    def local_inverse(self) -> np.ndarray:
        c = self.cols
        return self.hinv[c[:, :, None], c[:, None, :]]

    def level_inverse(self, f: int) -> np.ndarray:
        off, G, q = self.blocks[f]
        idx = off + np.arange(G)[:, None] * q + np.arange(q)[None, :]
        return self.hinv[idx[:, :, None], idx[:, None, :]]
