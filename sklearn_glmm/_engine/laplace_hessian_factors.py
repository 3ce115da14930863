"""The exact Hessian of the Laplace objective for several grouping factors (crossed
or nested).

With several factors ``H = I + B'WB`` (``B = Z Lambda``, ``Q`` random effects) is not
block-diagonal, and the second derivative of ``log det H`` needs
``tr(H^-1 dH_p H^-1 dH_q)``, which reads ``H^-1`` far outside the entries the
solvers' selected inverses hold. With the first (largest) factor's part of ``H``
block-diagonal, ``H^-1`` is that part's inverse plus a correction of rank ``Q2`` (the
other factors' random effects, ``G G'`` with ``G`` of ``Q2`` columns,
:class:`_Inverse`), and every quantity below is a product with ``Q2`` columns: about
``(1 + P) Q Q2^2`` for the matrices and ``Q2`` per row and form for the rows. Where
that is small (:func:`applies`: a cost model against the ``2 P`` gradients of central
differences, each with its own mode search) it is cheaper than the differences, and
exact where they are not.

The formulas are :mod:`.laplace_hessian`'s (its docstring; its ``_vector_hessian`` is
this for one factor, level by level) with ``u`` all random effects and ``H`` one
matrix. ``A_p = dB/dp`` is zero for ``beta``; the Cholesky entry ``(r, c)`` of factor
``f``'s ``Lambda`` moves row ``i``'s entry in column ``(level of i, c)`` of ``f`` by
``z_ir`` (one entry per row). With ``E_p`` the move of ``eta`` with the modes held,
``U_p = H^-1 (A_p'd - B'W E_p)`` the modes' derivatives and ``D_p = E_p + B U_p``:

* ``d2 psi / dp dq = -E_p'W E_q + U_p' H U_q``;
* ``dH_p = A_p'WB + B'WA_p + B' diag(w3 D_p) B``;
* ``tr(H^-1 d2H_pq) = sum_i [w4 D_ip D_iq + w3 D_ipq] k_i + 2 sum_i w3 (D_iq m_ip +
  D_ip m_iq) + 2 sum_i w_i n_ipq`` with ``k_i = b_i'H^-1 b_i``, ``m_ip = a_ip'H^-1 b_i``,
  ``n_ipq = a_ip'H^-1 a_iq`` (rows of ``B`` and ``A_p``) and ``D_pq = A_p U_q + A_q U_p
  + B U_pq``, the modes' second derivatives entering through ``g = H^-1 B'(w3 k)``:
  ``g' H U_pq = -[(A_p g)'W D_q + (A_q g)'W D_p + (B g)'(w3 D_p D_q) + (B g)'W (A_p U_q
  + A_q U_p)]``;
* ``d2 log det H / dp dq = tr(H^-1 d2H_pq) - tr(H^-1 dH_p H^-1 dH_q)``,

and the Hessian of ``F = -2 log L`` is ``-2 d2 psi + d2 log det H``. A family's own
parameters are left to differences of the gradient (``hessian._hessian``).
``tests/test_laplace_hessian_factors.py`` compares it with extrapolated differences of
the analytic gradient and, for one factor, with :mod:`.laplace_hessian`.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .laplace_hessian import _derivatives
from .linalg.block import block_cholesky_inverse

# the per-parameter matrices (P of Q x Q2) and the per-row arrays (rows * (T + s) * P)
# at most this many cells each
MAX_CELLS = 4_000_000
ROW_CELLS = 10_000_000
# the rows' forms are taken in chunks of rows of at most this many cells of ``G'x_i``
ROW_CHUNK = 1 << 17
# The cost model of :func:`applies`, in seconds (this machine's order of magnitude): the
# closed form's dense products (at _DENSE_RATE), its sparse products (at _SPARSE_RATE),
# its rows' forms (rows times Q2 cells per form, at _FORM_RATE), its other per-row
# arrays (at _ROW_RATE) and a fixed cost, against the 2 P gradients of central
# differences (each a mode search and gradient: a fixed cost, the Schur complement's
# factorisations, the pattern's entries and the dense coupling of the first factor with
# the others). Fitted to generated crossed binary designs (500-40,000 rows, 10-800
# levels in the second factor, random intercepts and slopes) and ``crossed_40k``: each
# side within about 30 % of its time, the choice right on all but one (where the two
# were within 35 %).
_DENSE_RATE = 1.6e10
_SPARSE_RATE = 2.4e9
_FORM_RATE = 1.8e9
_ROW_RATE = 4.5e7
_CLOSED_FIXED = 9e-4
_EVAL_FIXED = 6.5e-4
_EVAL_SCHUR = 7e-11
_EVAL_PATTERN = 9e-9
_EVAL_COUPLING = 4e-8


def applies(obj) -> bool:
    """Whether :func:`factors_hessian` gives the Hessian of ``obj``'s objective: Laplace,
    two or more unstructured (or diagonal) factors, a family with its fourth derivative,
    and the cost model above in favour of it (few random effects outside the
    first factor for the rows)."""
    d = obj.data
    if obj.n_agq != 1 or len(d.factors) < 2 or not len(d.y):
        return False
    if any(f.mapped for f in d.factors):
        return False
    if not getattr(d.family, "has_fourth_derivative", False):
        return False
    n, Q, P, T = len(d.y), float(obj.Q), d.n_beta + d.n_theta, d.n_theta
    f0 = d.factors[0]
    Q1 = float(f0.n_levels * f0.q)
    Q2 = Q - Q1
    ns = sum(f.q for f in d.factors)
    if P * Q * Q2 > MAX_CELLS or n * (T + ns) * P > ROW_CELLS:
        return False
    nnz = len(layout(obj).indices)
    dense = Q1 * Q2 * (f0.q + Q2) + Q2**3 + (1 + P) * Q * Q2**2
    forms = n * Q2 * (ns + 2 * T + 1 + T * (T + 1) / 2)
    closed = dense / _DENSE_RATE + P * nnz * Q2 / _SPARSE_RATE + forms / _FORM_RATE
    closed += n * P * (ns + T) / _ROW_RATE + _CLOSED_FIXED
    gradient = _EVAL_FIXED + _EVAL_SCHUR * Q2**3 + _EVAL_PATTERN * nnz * ns
    gradient += _EVAL_COUPLING * Q1 * Q2
    return bool(closed < 2 * P * gradient)


class _Layout:
    """What the closed form reads of the objective's random-effect columns, which do not
    change: made once per objective (:func:`layout`) and let go with its state.

    * ``indptr``, ``indices``: the sparsity pattern of ``H = I + B'WB`` (CSR);
    * ``slot`` (n, s, s): for every row ``i`` and pair ``(a, b)`` of its columns, the
      place of the entry ``(cols_ia, cols_ib)`` in the pattern; :meth:`gather` makes
      the ``(nnz, n)`` sparse matrix that sums per-row values onto the places;
    * the pattern's entries in the first factor's diagonal blocks, the coupling block
      and the rest (:meth:`diagonal`, :meth:`coupling`, :meth:`rest` make them dense);
    * ``At_col`` (T, n): for each covariance parameter the column of ``A_t``'s entry in
      every row, and ``local``: which of the row's columns it is (``a_it`` is one of
      ``b_i``'s columns).
    """

    def __init__(self, obj):
        cols, Q = obj.cols, obj.Q
        n, ns = cols.shape
        lin = (cols[:, :, None] * Q + cols[:, None, :]).ravel()
        uniq, inv = np.unique(lin, return_inverse=True)
        self.indptr = np.zeros(Q + 1, dtype=np.intp)
        np.cumsum(np.bincount(uniq // Q, minlength=Q), out=self.indptr[1:])
        self.indices, self.slot = uniq % Q, inv.reshape(n, ns, ns)
        inv = inv.ravel()
        self._order = np.argsort(inv, kind="stable")  # the (row, a, b) entries by place
        self._gather_rows = self._order // (ns * ns)
        self._gather_ptr = np.zeros(len(uniq) + 1, dtype=np.intp)
        np.cumsum(np.bincount(inv, minlength=len(uniq)), out=self._gather_ptr[1:])
        rows, cols_ = uniq // Q, self.indices
        factors = obj.data.factors
        f0 = factors[0]
        q1, Q1 = f0.q, f0.n_levels * f0.q
        d = (rows < Q1) & (cols_ < Q1)
        cpl = (rows < Q1) & (cols_ >= Q1)
        rest = (rows >= Q1) & (cols_ >= Q1)
        self._d = (d, rows[d] // q1, rows[d] % q1, cols_[d] % q1)
        self._c = (cpl, rows[cpl], cols_[cpl] - Q1)
        self._r = (rest, rows[rest] - Q1, cols_[rest] - Q1)
        self.sizes = (f0.n_levels, q1, Q1, Q - Q1)
        self.At_col = np.array(
            [f.offset + f.codes * f.q + c for f in factors for c in f.theta_cols], dtype=np.intp
        ).reshape(-1, n)
        self.local = [f.local + c for f in factors for c in f.theta_cols]
        self._stack = None  # (P, indices, indptr) of :meth:`stacked`

    def gather(self, aa) -> sp.csr_matrix:
        """The ``(nnz, n)`` sparse matrix whose product with per-row values ``v`` puts
        ``sum_i v_i aa_iab`` on the place of every pair ``(cols_ia, cols_ib)`` (``aa``
        of shape (n, s, s) or (n, s * s))."""
        n = len(self.slot)
        data = aa.reshape(-1)[self._order]
        shape = (len(self.indices), n)
        return sp.csr_matrix((data, self._gather_rows, self._gather_ptr), shape=shape)

    def stacked(self, mats) -> sp.csr_matrix:
        """The ``(P Q, Q)`` sparse matrix of the ``(Q, Q)`` matrices with entries
        ``mats[p]`` on the pattern, one below the other."""
        Q, nnz, P = len(self.indptr) - 1, len(self.indices), len(mats)
        if self._stack is None or self._stack[0] != P:
            indptr = (self.indptr[None, :-1] + nnz * np.arange(P)[:, None]).ravel()
            indptr = np.append(indptr, P * nnz)
            # (in the index type SciPy would convert them to, once)
            kind = np.int32 if P * nnz < np.iinfo(np.int32).max else np.int64
            self._stack = P, np.tile(self.indices, P).astype(kind), indptr.astype(kind)
        _, indices, indptr = self._stack
        return sp.csr_matrix((np.concatenate(mats), indices, indptr), shape=(P * Q, Q))

    def diagonal(self, m) -> np.ndarray:
        G1, q1, _, _ = self.sizes
        return _scatter(m, self._d, (G1, q1, q1))

    def coupling(self, m) -> np.ndarray:
        _, _, Q1, Q2 = self.sizes
        return _scatter(m, self._c, (Q1, Q2))

    def rest(self, m) -> np.ndarray:
        Q2 = self.sizes[3]
        return _scatter(m, self._r, (Q2, Q2))


# the attribute of an objective that holds its _Layout (Objective.release_state drops it)
LAYOUT_KEY = "_hessian_layout"


def layout(obj) -> _Layout:
    """``obj``'s :class:`_Layout`, made on first use."""
    out = obj.__dict__.get(LAYOUT_KEY)
    if out is None:
        out = obj.__dict__[LAYOUT_KEY] = _Layout(obj)
    return out


class _Inverse:
    """``H^-1`` of ``H = [[D1, C], [C', D2]]``, ``D1`` the first (largest) factor's
    block-diagonal part (``G1`` blocks of ``q1``, ``Q1`` random effects) and ``Q2`` the
    others': ``H^-1 = Delta + V S^-1 V' = Delta + G G'`` with ``Delta = diag(D1^-1, 0)``,
    ``V = [-D1^-1 C; I]``, the Schur complement ``S = D2 - C' D1^-1 C = L L'`` (formed
    through the blocks' Cholesky factors, as the solvers do) and ``G = V L^-T`` (Q, Q2).
    ``H``'s entries are ``data`` on the pattern of :class:`_Layout`."""

    def __init__(self, obj, data):
        f0 = obj.data.factors[0]
        Q, q1, G1 = obj.Q, f0.q, f0.n_levels
        Q1 = G1 * q1
        self.Q, self.q1, self.Q1 = Q, q1, Q1
        self.layout = layout(obj)
        D1 = self.layout.diagonal(data)
        D1[:, np.arange(q1), np.arange(q1)] += 1.0
        C = self.layout.coupling(data)  # (Q1, Q2)
        D2 = self.layout.rest(data)
        D2[np.diag_indices(Q - Q1)] += 1.0
        Linv, _ = block_cholesky_inverse(D1)
        K = np.matmul(Linv, C.reshape(G1, q1, -1))  # L_j^-1 C_j
        self.D1inv = np.matmul(np.swapaxes(Linv, 1, 2), Linv)
        Kf = K.reshape(Q1, -1)
        S = D2 - Kf.T @ Kf
        V = np.empty((Q - Q1, Q))  # V' (Q2, Q)
        V[:, :Q1] = -np.matmul(np.swapaxes(Linv, 1, 2), K).reshape(Q1, -1).T
        V[:, Q1:] = np.eye(Q - Q1)
        # (one factor, as the tests compare it with the level-by-level form: no Schur part)
        if len(S):
            L = np.linalg.cholesky(S)
            V = scipy.linalg.solve_triangular(L, V, lower=True, check_finite=False)
        self.G = np.ascontiguousarray(V.T)

    def apply(self, X) -> np.ndarray:
        """``H^-1 X`` for ``X`` of shape (Q,) or (Q, k)."""
        out = self.G @ (self.G.T @ X)
        G1, q1 = self.D1inv.shape[0], self.q1
        Xb = X[: self.Q1].reshape(G1, q1, -1)
        out[: self.Q1] += np.matmul(self.D1inv, Xb).reshape((self.Q1,) + X.shape[1:])
        return out

    def rows(self, cols, vals):
        """Rows ``x_i`` (one per data row, entries ``vals`` in columns ``cols``, (n, m))
        in the form :meth:`forms` reads: the entries in the first factor's block of the
        row's level (n, q1) and ``G'x_i`` (n, Q2), the sum of the rows of ``G`` the
        entries select: the cancellation between them happens there, row by row, on
        vectors (sums of entries of ``G G'`` would cancel far larger terms)."""
        n, q1, Q1 = len(cols), self.q1, self.Q1
        first = np.zeros((n, q1))
        rows = np.arange(n)
        Gx = np.take(self.G, cols[:, 0], axis=0)
        Gx *= vals[:, :1]
        for j in range(cols.shape[1]):
            c, v = cols[:, j], vals[:, j]
            mine = c < Q1
            first[rows[mine], c[mine] % q1] += v[mine]
            if j:
                term = np.take(self.G, c, axis=0)
                term *= v[:, None]
                Gx += term
        return first, Gx

    def forms(self, x, y, level) -> np.ndarray:
        """``x_i' H^-1 y_i`` for every row (``x``, ``y`` from :meth:`rows`; ``level``
        each row's level of the first factor)."""
        out = np.einsum("nk,nk->n", x[1], y[1])
        out += np.einsum("nk,nkl,nl->n", x[0], self.D1inv[level], y[0])
        return out

    def row_forms(self, cols, a, At_col, At_val, level):
        """``k_i = b_i'H^-1 b_i`` (n,), ``m_it = a_it'H^-1 b_i`` (n, T) and ``n_itu =
        a_it'H^-1 a_iu`` (T, T, n) for the rows ``b_i`` of ``B`` (entries ``a`` in columns
        ``cols``) and ``a_it`` of ``A_t`` (one entry ``At_val[t]`` in column
        ``At_col[t]``), by chunks of rows (the chunk's ``G'x_i`` of ``ROW_CHUNK`` cells
        at most)."""
        n, T = len(cols), len(At_col)
        k, m, nn = np.empty(n), np.empty((n, T)), np.empty((T, T, n))
        step = max(64, ROW_CHUNK // max(1, self.G.shape[1]))
        for lo in range(0, n, step):
            sl = slice(lo, lo + step)
            lv = level[sl]
            rb = self.rows(cols[sl], a[sl])
            ra = [self.rows(At_col[t, sl, None], At_val[t, sl, None]) for t in range(T)]
            k[sl] = self.forms(rb, rb, lv)
            for t in range(T):
                m[sl, t] = self.forms(ra[t], rb, lv)
                for u in range(t + 1):
                    nn[t, u, sl] = nn[u, t, sl] = self.forms(ra[t], ra[u], lv)
        return k, m, nn

    def trace_products(self, mats) -> np.ndarray:
        """``tr(H^-1 A_p H^-1 A_q)`` for symmetric ``A_p`` (their entries on the pattern
        of :class:`_Layout`): ``(P, P)``. With ``Y_p = A_p G``: ``tr(Delta A_p Delta
        A_q) + 2 tr(Y_q' Delta Y_p) + tr(M_p M_q)``, ``M_p = G' Y_p``; ``Delta A_p
        Delta`` reads ``A_p``'s diagonal blocks of the first factor alone."""
        P, Q1, q1 = len(mats), self.Q1, self.q1
        G1 = self.D1inv.shape[0]
        Y = (self.layout.stacked(mats) @ self.G).reshape(P, self.Q, -1)  # (P, Q, Q2)
        X1 = np.matmul(self.D1inv[None], Y[:, :Q1].reshape(P, G1, q1, -1)).reshape(P, Q1, -1)
        M = np.matmul(self.G.T[None], Y)
        Gb = np.matmul(self.D1inv[None], np.stack([self.layout.diagonal(m) for m in mats]))
        out = _pairs(Gb.reshape(P, G1, q1, q1), np.swapaxes(Gb, 2, 3).reshape(P, G1, q1, q1))
        out += 2.0 * _pairs(X1, Y[:, :Q1])
        out += _pairs(M, np.swapaxes(M, 1, 2))
        return 0.5 * (out + out.T)


def _pairs(X, Y) -> np.ndarray:
    """``<X_p, Y_q>`` (sums of elementwise products) for every ``p, q``: ``(P, P)``."""
    P = len(X)
    return X.reshape(P, -1) @ Y.reshape(P, -1).T


def _scatter(m, where, shape) -> np.ndarray:
    """A dense array of ``shape`` with the pattern's entries ``m[sel]`` at ``idx``
    (``where = (sel, *idx)``), zeros elsewhere."""
    sel, *idx = where
    out = np.zeros(shape)
    out[tuple(idx)] = m[sel]
    return out


def factors_hessian(obj) -> np.ndarray:
    """The Hessian of ``-2 log L`` (Laplace) in ``(beta, theta)`` at the objective's
    current state (its modes at the point last evaluated). Only where :func:`applies`;
    raises ``numpy.linalg.LinAlgError`` where ``H`` is not positive definite there."""
    d, s = obj.data, obj.state
    _, w, w3, w4 = _derivatives(obj)
    d1 = s["der"].d1
    a = np.asarray(s["a_vals"], dtype=float)  # (n, s): row i's entries of B
    cols = obj.cols  # (n, s): their columns
    n, ns = a.shape
    Q, p, T = obj.Q, d.n_beta, d.n_theta
    P = p + T
    u = np.asarray(s["u"], dtype=float)

    # A_t (one entry per row: column At_col, value At_val) and E (n, P)
    lay = layout(obj)
    At_col, local = lay.At_col, lay.local
    At_val = np.empty((T, n))
    t = 0
    for f in d.factors:
        Z = np.broadcast_to(f.Z, (n, f.q))
        for r in f.theta_rows:
            At_val[t] = Z[:, r]
            t += 1
    E = np.empty((n, P))
    E[:, :p] = d.X
    E[:, p:] = (At_val * u[At_col]).T

    # H = I + B'WB on B'B's pattern, and its inverse
    slot, nnz = lay.slot, len(lay.indices)
    Bt_B = lay.gather(a[:, :, None] * a[:, None, :])  # B'diag(v)B = Bt_B @ v on the pattern
    Hinv = _Inverse(obj, Bt_B @ w)

    # the modes' derivatives U (Q, P) and eta's total derivatives D (n, P)
    B = sp.csr_matrix((a.ravel(), cols.ravel(), np.arange(0, n * ns + 1, ns)), shape=(n, Q))
    R = -(B.T @ (w[:, None] * E))
    for t in range(T):
        R[:, p + t] += np.bincount(At_col[t], At_val[t] * d1, minlength=Q)
    U = Hinv.apply(R)
    D = E + B @ U

    # d2 psi / dp dq (U' H U = U' R)
    H_psi = -(E * w[:, None]).T @ E + U.T @ R

    # k_i = b_i'H^-1 b_i, m_it = a_it'H^-1 b_i, n_itu = a_it'H^-1 a_iu (b_i, a_it: rows
    # of B and A_t)
    level = d.factors[0].codes
    k, m, nn = Hinv.row_forms(cols, a, At_col, At_val, level)

    # tr(H^-1 d2H_pq), the modes' second derivatives through g
    g = Hinv.apply(B.T @ (w3 * k))
    bg = B @ g
    ag = (At_val * g[At_col]).T  # (n, T): A_t g
    AU = At_val[:, :, None] * U[At_col]  # (T, n, P): A_t U_q
    tr = (D * (w4 * k - w3 * bg)[:, None]).T @ D
    Y = np.einsum("tnq,n->tq", AU, w3 * k - w * bg)
    Y += (2.0 * w3[:, None] * m - w[:, None] * ag).T @ D
    tr[p:] += Y
    tr[:, p:] += Y.T
    tr[p:, p:] += 2.0 * np.einsum("tun,n->tu", nn, w)

    # tr(H^-1 dH_p H^-1 dH_q), dH_p sparse (the pattern of B'B; A_t'B lies in it)
    mats = (Bt_B @ (w3[:, None] * D)).T
    for t in range(T):  # A_t'WB + B'WA_t
        wa = ((w * At_val[t])[:, None] * a).ravel()
        mats[p + t] += np.bincount(slot[:, local[t], :].ravel(), wa, minlength=nnz)
        mats[p + t] += np.bincount(slot[:, :, local[t]].ravel(), wa, minlength=nnz)
    tr_CC = Hinv.trace_products(mats)

    out = -2.0 * H_psi + (tr - tr_CC)
    return 0.5 * (out + out.T)
