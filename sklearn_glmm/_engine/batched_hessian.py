"""The closed-form Laplace Hessian for one grouping factor with several random effects
per level, of many replicates at once.

:func:`laplace_hessians` computes the formulas of
:mod:`~sklearn_glmm._engine.laplace_hessian` (its module docstring, with ``a_i`` and
``U_jp`` vectors and ``h_j`` the matrix ``H_j``) with a leading axis of replicates and
the rows last, and the row and column of a family's one own parameter (NB2's ``log
theta``) with them (:func:`extra_columns` alone). The replicates share the design ``X``,
``Z`` and the grouping factor; each has its own parameters (so its own ``a_i = Lambda'
z_i``), modes, curvatures and level inverses. Every sum runs over one replicate's own
rows and levels (products of stacked matrices are one product per replicate), so a
replicate's Hessian does not depend on the others in its batch. The formulas hold for
one random effect per level too.

A single fit's objective runs it for one replicate (``laplace_hessian._vector_hessian``);
a batch of refits (:meth:`~sklearn_glmm._engine.batched.BatchedLaplace.hessians`) for
the replicates whose curvature checks wait for their Hessians, in one pass, where each
would otherwise make its per-row state again (a mode search) to compute its own.
"""

from __future__ import annotations

import numpy as np

# cells of the largest per-row array, (replicates, rows, P, q, q), in one pass: a batch
# of more is computed in parts (the single objective's limit, laplace_hessian.MAX_CELLS)
MAX_CELLS = 4_000_000


def rows_last_design(X, factor) -> tuple:
    """``(Xt, Zu, rr, cc)`` of :func:`laplace_hessians` for the design ``X`` (n, p) and
    the grouping factor ``factor`` (its ``Z`` and covariance parameters' entries)."""
    n, q = len(X), factor.q
    used, rr = np.unique(np.asarray(factor.theta_rows), return_inverse=True)
    Zt = np.ascontiguousarray(np.broadcast_to(factor.Z, (n, q)).T)
    return np.ascontiguousarray(X.T), Zt[used], rr, np.asarray(factor.theta_cols)


def covers_family(data) -> bool:
    """Whether the Hessians here hold every parameter of ``data``'s family: none of its
    own, or one whose second derivatives it gives (``extra_second_derivs``: NB2)."""
    return data.n_extra == 0 or (data.n_extra == 1 and hasattr(data.family, "extra_second_derivs"))


def replicates_per_pass(n: int, P: int, q: int) -> int:
    """How many replicates of ``n`` rows, ``P`` parameters and ``q`` random effects per
    level one pass of :func:`laplace_hessians` takes (at least one)."""
    return max(1, MAX_CELLS // max(1, n * P * q * q))


def _gram(X, c, Y):
    """``sum_i X[r, :, i] c[r, i] Y[r, :, i]'`` of every replicate ``r``: (R, a, b)."""
    return np.matmul(X * c[:, None], np.swapaxes(Y, 1, 2))


def laplace_hessians(
    Xt, Zu, rr, cc, level_sums, rows, a, u, Hinv, d1, w, w3, w4, extra=None
) -> np.ndarray:
    """Hessians of ``-2 log L`` (Laplace) in ``(beta, theta)`` of ``R`` replicates: (R, P, P);
    with ``extra``, in ``(beta, theta, l)`` for a family's one own parameter ``l`` (NB2's
    ``log theta``): (R, P + 1, P + 1).

    Per-row arrays have the rows last (their sums over a level's rows run along
    contiguous memory): ``Xt`` (p, n) the fixed-effect design; ``Zu`` the columns of
    ``Z`` the covariance parameters' Cholesky entries read, as rows (u, n), and ``rr``
    (T,) each parameter's among them, ``cc`` (T,) its entry's column
    (:func:`rows_last_design`); ``level_sums`` maps (..., n) to the levels' sums (..., G),
    ``rows`` (..., G) to each row's level value (..., n). Per replicate: ``a`` (R, q, n)
    the rows of ``Z Lambda``, ``u`` (R, G, q) the modes, ``Hinv`` (R, G, q, q) the
    levels' ``(I + A' W A)^-1`` at them, and the family's ``d1, w, w3, w4`` (R, n) there;
    ``extra`` its derivatives in ``l`` there (``Family.extra_derivs``' ``d_l, w_l`` and
    ``extra_second_derivs``' ``loglik_ll, d_ll, w_ll, w3_l``, each (R, n)).
    """
    v = _Parts(Xt, Zu, rr, cc, level_sums, rows, a, u, Hinv, d1, w, w3, w4)
    H = _block(v)
    if extra is None:
        return H
    col = _extra_columns(v, extra)
    P = v.P
    out = np.empty((len(a), P + 1, P + 1))
    out[:, :P, :P] = H
    out[:, P, :] = col
    out[:, :, P] = col
    return out


def extra_columns(Xt, Zu, rr, cc, level_sums, rows, a, u, Hinv, d1, w, w3, w4, extra):
    """The row and column of the family's parameter ``l`` alone of
    :func:`laplace_hessians` with ``extra``: (R, P + 1), the entries with ``(beta,
    theta)`` then with itself (the ``(beta, theta)`` block's own sums left out)."""
    return _extra_columns(
        _Parts(Xt, Zu, rr, cc, level_sums, rows, a, u, Hinv, d1, w, w3, w4), extra
    )


def extra_rows(Xt, Zu, rr, cc, level_sums, rows, a, u, Hinv, d1, w, w3, w4, first, w3_e, second):
    """The rows of a family's several own parameters (``first``: the family's
    derivatives of ``loglik``, ``d1`` and ``w`` in each, each (R, E, n), the first
    unread; ``w3_e`` those of ``w3``, (R, E, n); ``second``: the second derivatives of
    ``loglik``, ``d1`` and ``w``, each (R, E, E, n)): (R, E, P + E), each parameter's
    entries with ``(beta, theta)`` then with the family's parameters."""
    v = _Parts(Xt, Zu, rr, cc, level_sums, rows, a, u, Hinv, d1, w, w3, w4)
    return _extra_rows(v, first[1], first[2], w3_e, *second)


class _Parts:
    """What the block and the family parameter's row and column share: the modes'
    derivatives ``U`` (R, G, P, q), eta's derivatives with the modes held ``E`` and in
    total ``D`` (R, P, n), ``M = H_j^-1 dH_j/dp`` (R, G, P, q, q), each row's ``k = H_j^-1
    a_i`` (R, q, n) and ``c = a_i' H_j^-1 a_i`` (R, n)."""

    def __init__(self, Xt, Zu, rr, cc, level_sums, rows, a, u, Hinv, d1, w, w3, w4):
        R, q, n = a.shape
        p, T = Xt.shape[0], len(rr)
        P = self.P = p + T
        self.p, self.t, self.cc, self.rr, self.Zu = p, np.arange(T), cc, rr, Zu
        self.level_sums, self.rows = level_sums, rows
        self.a, self.Hinv, self.w, self.w3, self.w4 = a, Hinv, w, w3, w4
        t = self.t
        Zr = self.Zr = Zu[rr]  # (T, n)
        E = self.E = np.empty((R, P, n))  # d eta_i / dp with the modes held
        E[:, :p] = Xt
        E[:, p:] = Zr * rows(np.swapaxes(u, 1, 2))[:, cc]
        # the modes' derivatives U and eta's total derivatives D
        rhs = -np.moveaxis(level_sums(E[:, :, None] * (w[:, None] * a)[:, None]), -1, 1)
        rhs[:, :, p + t, cc] += np.swapaxes(level_sums(Zr * d1[:, None]), 1, 2)
        U = self.U = np.matmul(rhs, Hinv)
        U_rows = rows(np.moveaxis(U, 1, -1))  # (R, P, q, n)
        D = self.D = E.copy()
        for k in range(q):
            D += a[:, None, k] * U_rows[:, :, k]
        # dH_j/dp (R, G, P, q, q): sum_i w3_i D_ip a_i a_i' (its entries on and above the
        # diagonal), and the theta entries' w_i (A_it a_i' + a_i A_it'): row and column
        # cc_t of sum_i w_i z_it a_i'
        r_, c_ = np.triu_indices(q)
        upper = level_sums((w3[:, None] * D)[:, :, None] * (a[:, r_] * a[:, c_])[:, None])
        dH = np.empty((R, upper.shape[-1], P, q, q))
        dH[..., r_, c_] = dH[..., c_, r_] = np.moveaxis(upper, -1, 1)
        self.wz = w[:, None] * Zu  # (R, u, n)
        wza = np.moveaxis(level_sums(self.wz[:, :, None] * a[:, None]), -1, 1)[:, :, rr]
        dH[:, :, p + t, cc, :] += wza  # (R, G, T, q)
        dH[:, :, p + t, :, cc] += wza.transpose(2, 0, 1, 3)  # (advanced indices first)
        self.M = np.matmul(Hinv[:, :, None], dH)
        Hinv_rows = rows(np.moveaxis(Hinv, 1, -1))  # (R, q, q, n)
        self.k = np.einsum("rabn,rbn->ran", Hinv_rows, a)
        self.c = np.einsum("ran,ran->rn", a, self.k)


def _block(v: _Parts) -> np.ndarray:
    """The ``(beta, theta)`` block of every replicate: (R, P, P)."""
    p, Zr, cc, rr, level_sums, rows = v.p, v.Zr, v.cc, v.rr, v.level_sums, v.rows
    a, Hinv, w, w3, w4, E, U, D, k, c = v.a, v.Hinv, v.w, v.w3, v.w4, v.E, v.U, v.D, v.k, v.c
    H_psi = -_gram(E, w, E) + np.einsum("rgpa,rgqa->rpq", np.matmul(U, np.linalg.inv(Hinv)), U)
    tr_MM = np.einsum("rgpab,rgqba->rpq", v.M, v.M)
    # sum_j tr(H_j^-1 d2H_j/dp dq), the modes' second derivatives folded in through
    # beta_j = H_j^-1 sum_i w3_i c_i a_i
    s3 = np.swapaxes(level_sums((w3 * c)[:, None] * a), 1, 2)  # (R, G, q)
    b_rows = rows(np.swapaxes(np.einsum("rgab,rgb->rga", Hinv, s3), 1, 2))  # (R, q, n)
    rho = np.einsum("ran,ran->rn", b_rows, a)
    gamma = Zr * b_rows[:, cc]  # beta_j' A_i, theta's columns (R, T, n)
    alpha = Zr * k[:, cc]  # a_i' H_j^-1 A_i
    tr = _gram(D, w4 * c - rho * w3, D)
    zs = level_sums(Zr * (w3 * c - rho * w)[:, None])  # (R, T, G)
    AU = np.einsum("rtg,rgpt->rtp", zs, U[..., cc])  # sum_i s_i A_i' U_jp: (R, T, P)
    AU += 2.0 * _gram(alpha, w3, D) - _gram(gamma, w, D)
    tr[:, p:] += AU
    tr[:, :, p:] += np.swapaxes(AU, 1, 2)
    # sum_i w_i A_it' H_j^-1 A_is = sum_j H_j^-1[c_t, c_s] sum_i w_i z_it z_is
    wzz = level_sums(v.wz[:, :, None] * v.Zu[None, None])[:, rr][:, :, rr]  # (R, T, T, G)
    tr[:, p:, p:] += 2.0 * np.einsum("rtsg,rgts->rts", wzz, Hinv[:, :, cc][:, :, :, cc])
    H = -2.0 * (H_psi - 0.5 * (tr - tr_MM))
    return 0.5 * (H + np.swapaxes(H, 1, 2))


def _extra_columns(v: _Parts, extra) -> np.ndarray:
    """The Hessians' row and column of a family's one own parameter ``l``: (R, P + 1),
    the entries with ``(beta, theta)`` then with itself (:func:`_extra_rows` of one
    parameter; ``extra``: ``d_l, w_l, loglik_ll, d_ll, w_ll, w3_l``, each (R, n))."""
    d_l, w_l, l_ll, d_ll, w_ll, w3_l = extra
    one, pair = (lambda x: x[:, None]), (lambda x: x[:, None, None])
    return _extra_rows(v, one(d_l), one(w_l), one(w3_l), pair(l_ll), pair(d_ll), pair(w_ll))[:, 0]


def pair_terms(w_e, w_f, w3_e, w3_f, D_e, D_f, same):
    """``w_e D_if + w_f D_ie`` and ``w3_e D_if + w3_f D_ie``, the terms of two family
    parameters' second derivatives that mix them (in the forms of one parameter's column,
    ``2 w_l D_il``, where ``same``: bit for bit as that column was)."""
    if same:
        return 2.0 * w_e * D_e, 2.0 * w3_e * D_e
    return w_e * D_f + w_f * D_e, w3_e * D_f + w3_f * D_e


def _extra_rows(v: _Parts, d_e, w_e, w3_e, l_ef, d_ef, w_ef) -> np.ndarray:
    """The Hessians' rows of a family's own parameters ``e`` (``d_e, w_e, w3_e``: the
    family's derivatives in each of ``d1``, ``w`` and ``w3``, each (R, E, n); ``l_ef,
    d_ef, w_ef``: the second derivatives of ``loglik``, ``d1`` and ``w``, each (R, E, E,
    n)): (R, E, P + E), each parameter's entries with ``(beta, theta)`` then with the
    family's parameters. The module docstring's formulas of
    :mod:`~sklearn_glmm._engine.laplace_hessian`'s ``extra_column``, with ``a_i``,
    ``U_l`` and ``U_jq`` vectors and ``h_j`` the matrix ``H_j`` (``S_l = sum_i a_i d_l =
    H_j U_l``; ``d2 psi / dl dq = sum_i d_l E_iq + U_jq' S_l``; ``H_j U_lq = sum_i A_iq
    (d_l - w D_il) - sum_i a_i (w_l + w3 D_il) D_iq - sum_i w_i a_i A_iq' U_l``; ``dH_l =
    sum_i (w_l + w3 D_il) a_i a_i'``; the traces as the block's), and between two
    parameters ``e`` and ``f`` (``e = f`` included): ``d2 psi / de df = sum_i loglik_ef
    + U_e' S_f``, ``H_j U_ef = sum_i a_i (d_ef - w_e D_if - w_f D_ie - w3 D_ie D_if)``,
    ``tr(H_j^-1 d2H_j / de df) = sum_i c_i (w_ef + w3_e D_if + w3_f D_ie + w4 D_ie D_if)
    + sum_i c_i w3_i a_i' U_ef`` (``c_i = a_i' H_j^-1 a_i``)."""
    p, t, Zr, cc, level_sums, rows = v.p, v.t, v.Zr, v.cc, v.level_sums, v.rows
    a, Hinv, w, w3, w4 = v.a, v.Hinv, v.w, v.w3, v.w4
    E, U, D, M, k, c = v.E, v.U, v.D, v.M, v.k, v.c
    P, q, n_e = E.shape[1], a.shape[1], d_e.shape[1]
    r_, c_ = np.triu_indices(q)
    cw3a = np.swapaxes(level_sums((c * w3)[:, None] * a), 1, 2)  # (R, G, q)
    alpha = Zr * k[:, cc]  # A_iq' H_j^-1 a_i
    out = np.empty((len(a), n_e, P + n_e))
    S_e, U_e, D_e, M_e = [], [], [], []
    for e in range(n_e):
        d_l, w_l, w3_l = d_e[:, e], w_e[:, e], w3_e[:, e]
        S_l = np.swapaxes(level_sums(a * d_l[:, None]), 1, 2)  # (R, G, q): H_j U_l
        U_l = np.einsum("rgab,rgb->rga", Hinv, S_l)
        U_l_rows = rows(np.swapaxes(U_l, 1, 2))  # (R, q, n)
        D_l = np.einsum("ran,ran->rn", a, U_l_rows)
        col = np.einsum("rpn,rn->rp", E, d_l) + np.einsum("rgpa,rga->rp", U, S_l)
        wl = w_l + w3 * D_l
        AU_l = Zr * U_l_rows[:, cc]  # A_iq' U_l, theta's columns (R, T, n)
        rhs = -np.moveaxis(level_sums(D[:, :, None] * (wl[:, None] * a)[:, None]), -1, 1)
        rhs[:, :, p + t, cc] += np.swapaxes(level_sums(Zr * (d_l - w * D_l)[:, None]), 1, 2)
        rhs[:, :, p:] -= np.moveaxis(
            level_sums(AU_l[:, :, None] * (w[:, None] * a)[:, None]), -1, 1
        )
        U_lq = np.matmul(rhs, Hinv)  # (R, G, P, q)
        # tr(H_j^-1 d2H_j/dl dq), summed over the levels
        tr = np.einsum("rpn,rn->rp", D, c * (w3_l + w4 * D_l))
        tr += np.einsum("rga,rgpa->rp", cw3a, U_lq)
        tr[:, p:] += np.einsum("rtn,rn->rt", AU_l, c * w3) + 2.0 * np.einsum(
            "rtn,rn->rt", alpha, wl
        )
        # tr(H_j^-1 dH_j/dq H_j^-1 dH_j/dl)
        upper = np.moveaxis(level_sums(wl[:, None] * (a[:, r_] * a[:, c_])), -1, 1)
        dH_l = np.empty(upper.shape[:2] + (q, q))
        dH_l[..., r_, c_] = dH_l[..., c_, r_] = upper
        M_l = np.matmul(Hinv, dH_l)  # (R, G, q, q)
        tr_MM = np.einsum("rgpab,rgba->rp", M, M_l)
        out[:, e, :P] = -2.0 * (col - 0.5 * (tr - tr_MM))
        S_e.append(S_l)
        U_e.append(U_l)
        D_e.append(D_l)
        M_e.append(M_l)
    for e in range(n_e):
        for f in range(e, n_e):
            De, Df = D_e[e], D_e[f]
            dw, dw3 = pair_terms(w_e[:, e], w_e[:, f], w3_e[:, e], w3_e[:, f], De, Df, e == f)
            s_ef = np.swapaxes(level_sums(a * (d_ef[:, e, f] - dw - w3 * De * Df)[:, None]), 1, 2)
            U_ef = np.einsum("rgab,rgb->rga", Hinv, s_ef)
            col = l_ef[:, e, f].sum(axis=1) + np.einsum("rga,rga->r", U_e[e], S_e[f])
            tr = np.einsum("rn,rn->r", c, w_ef[:, e, f] + dw3 + w4 * De * Df)
            tr += np.einsum("rga,rga->r", cw3a, U_ef)
            tr_MM = np.einsum("rgab,rgba->r", M_e[e], M_e[f])
            out[:, e, P + f] = out[:, f, P + e] = -2.0 * (col - 0.5 * (tr - tr_MM))
    return out
