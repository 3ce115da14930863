"""The closed-form Laplace Hessian of many replicates at once (one grouping factor).

:func:`laplace_hessians` is :func:`~sklearn_glmm._engine.laplace_hessian._vector_hessian`
with a leading axis of replicates: the same formulas (the module docstring of
:mod:`~sklearn_glmm._engine.laplace_hessian`), for one random effect per level as well
as several (the vector formulas hold for ``q = 1``). The replicates share the design
``X``, ``Z`` and the grouping factor; each has its own parameters (so its own ``a_i =
Lambda' z_i``), modes, curvatures and level inverses. Every sum runs over one
replicate's own rows and levels (products of stacked matrices are one product per
replicate), so a replicate's Hessian does not depend on the others in its batch.

It is what a batch of refits (:meth:`~sklearn_glmm._engine.batched.BatchedLaplace.
hessians`) computes for its replicates' curvature checks in one pass, where each
replicate's own would make its per-row state again (a mode search) and then run the
single objective's formulas on it.
"""

from __future__ import annotations

import numpy as np

# cells of the largest per-row array, (replicates, rows, P, q, q), in one pass: a batch
# of more is computed in parts (the single objective's limit, laplace_hessian.MAX_CELLS)
MAX_CELLS = 4_000_000


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
    (T,) each parameter's among them, ``cc`` (T,) its entry's column; ``level_sums``
    maps (..., n) to the levels' sums (..., G), ``rows`` (..., G) to each row's level
    value (..., n). Per replicate: ``a`` (R, q, n) the rows of ``Z Lambda``, ``u`` (R, G,
    q) the modes, ``Hinv`` (R, G, q, q) the levels' ``(I + A' W A)^-1`` at them, and the
    family's ``d1, w, w3, w4`` (R, n) there; ``extra`` its derivatives in ``l`` there
    (``Family.extra_derivs``' ``d_l, w_l`` and ``extra_second_derivs``' ``loglik_ll,
    d_ll, w_ll, w3_l``, each (R, n)), whose row and column are
    :func:`~sklearn_glmm._engine.laplace_hessian._vector_extra_column`'s.
    """
    R, q, n = a.shape
    p, T = Xt.shape[0], len(rr)
    P = p + T
    t = np.arange(T)
    Zr = Zu[rr]  # (T, n)
    E = np.empty((R, P, n))  # d eta_i / dp with the modes held
    E[:, :p] = Xt
    E[:, p:] = Zr * rows(np.swapaxes(u, 1, 2))[:, cc]
    # the modes' derivatives U (R, G, P, q) and eta's total derivatives D (R, P, n)
    rhs = -np.moveaxis(level_sums(E[:, :, None] * (w[:, None] * a)[:, None]), -1, 1)
    rhs[:, :, p + t, cc] += np.swapaxes(level_sums(Zr * d1[:, None]), 1, 2)
    U = np.matmul(rhs, Hinv)
    U_rows = rows(np.moveaxis(U, 1, -1))  # (R, P, q, n)
    D = E.copy()
    for k in range(q):
        D += a[:, None, k] * U_rows[:, :, k]
    # dH_j/dp (R, G, P, q, q): sum_i w3_i D_ip a_i a_i' (its entries on and above the
    # diagonal), and the theta entries' w_i (A_it a_i' + a_i A_it'): row and column
    # cc_t of sum_i w_i z_it a_i'
    r_, c_ = np.triu_indices(q)
    upper = level_sums((w3[:, None] * D)[:, :, None] * (a[:, r_] * a[:, c_])[:, None])
    dH = np.empty((R, upper.shape[-1], P, q, q))
    dH[..., r_, c_] = dH[..., c_, r_] = np.moveaxis(upper, -1, 1)
    wz = w[:, None] * Zu  # (R, u, n)
    wza = np.moveaxis(level_sums(wz[:, :, None] * a[:, None]), -1, 1)[:, :, rr]  # (R, G, T, q)
    dH[:, :, p + t, cc, :] += wza
    dH[:, :, p + t, :, cc] += wza.transpose(2, 0, 1, 3)  # (advanced indices first)
    M = np.matmul(Hinv[:, :, None], dH)  # H_j^-1 dH_j/dp
    Hinv_rows = rows(np.moveaxis(Hinv, 1, -1))  # (R, q, q, n)
    k = np.einsum("rabn,rbn->ran", Hinv_rows, a)  # H_j^-1 a_i
    c = np.einsum("ran,ran->rn", a, k)  # a_i' H_j^-1 a_i
    H_psi = -_gram(E, w, E) + np.einsum("rgpa,rgqa->rpq", np.matmul(U, np.linalg.inv(Hinv)), U)
    tr_MM = np.einsum("rgpab,rgqba->rpq", M, M)
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
    wzz = level_sums(wz[:, :, None] * Zu[None, None])[:, rr][:, :, rr]  # (R, T, T, G)
    tr[:, p:, p:] += 2.0 * np.einsum("rtsg,rgts->rts", wzz, Hinv[:, :, cc][:, :, :, cc])
    H = -2.0 * (H_psi - 0.5 * (tr - tr_MM))
    H = 0.5 * (H + np.swapaxes(H, 1, 2))
    if extra is None:
        return H
    col = _extra_columns(
        (p, t, Zr, cc, level_sums, rows), (a, Hinv, w, w3, w4), (E, U, D, M, k, c), extra
    )
    out = np.empty((R, P + 1, P + 1))
    out[:, :P, :P] = H
    out[:, P, :] = col
    out[:, :, P] = col
    return out


def _extra_columns(layout, state, parts, extra) -> np.ndarray:
    """The Hessians' row and column of a family's one own parameter ``l``: (R, P + 1),
    the entries with ``(beta, theta)`` then with itself (the formulas of
    :func:`~sklearn_glmm._engine.laplace_hessian._vector_extra_column`, a replicate
    axis first and the rows last)."""
    p, t, Zr, cc, level_sums, rows = layout
    a, Hinv, w, w3, w4 = state
    E, U, D, M, k, c = parts
    d_l, w_l, l_ll, d_ll, w_ll, w3_l = extra
    S_l = np.swapaxes(level_sums(a * d_l[:, None]), 1, 2)  # (R, G, q): H_j U_l
    U_l = np.einsum("rgab,rgb->rga", Hinv, S_l)
    U_l_rows = rows(np.swapaxes(U_l, 1, 2))  # (R, q, n)
    D_l = np.einsum("ran,ran->rn", a, U_l_rows)
    P = E.shape[1]
    col = np.empty((len(a), P + 1))
    col[:, :P] = np.einsum("rpn,rn->rp", E, d_l) + np.einsum("rgpa,rga->rp", U, S_l)
    col[:, P] = l_ll.sum(axis=1) + np.einsum("rga,rga->r", U_l, S_l)
    wl = w_l + w3 * D_l
    AU_l = Zr * U_l_rows[:, cc]  # A_iq' U_l, theta's columns (R, T, n)
    rhs = -np.moveaxis(level_sums(D[:, :, None] * (wl[:, None] * a)[:, None]), -1, 1)
    rhs[:, :, p + t, cc] += np.swapaxes(level_sums(Zr * (d_l - w * D_l)[:, None]), 1, 2)
    rhs[:, :, p:] -= np.moveaxis(level_sums(AU_l[:, :, None] * (w[:, None] * a)[:, None]), -1, 1)
    U_lq = np.matmul(rhs, Hinv)  # (R, G, P, q)
    s_ll = np.swapaxes(level_sums(a * (d_ll - 2.0 * w_l * D_l - w3 * D_l * D_l)[:, None]), 1, 2)
    U_ll = np.einsum("rgab,rgb->rga", Hinv, s_ll)
    # tr(H_j^-1 d2H_j/dl dq) and tr(H_j^-1 d2H_j/dl2), summed over the levels
    cw3a = np.swapaxes(level_sums((c * w3)[:, None] * a), 1, 2)  # (R, G, q)
    tr = np.einsum("rpn,rn->rp", D, c * (w3_l + w4 * D_l))
    tr += np.einsum("rga,rgpa->rp", cw3a, U_lq)
    alpha = Zr * k[:, cc]  # A_iq' H_j^-1 a_i
    tr[:, p:] += np.einsum("rtn,rn->rt", AU_l, c * w3) + 2.0 * np.einsum("rtn,rn->rt", alpha, wl)
    tr_ll = np.einsum("rn,rn->r", c, w_ll + 2.0 * w3_l * D_l + w4 * D_l * D_l)
    tr_ll += np.einsum("rga,rga->r", cw3a, U_ll)
    # tr(H_j^-1 dH_j/dq H_j^-1 dH_j/dl)
    q = a.shape[1]
    r_, c_ = np.triu_indices(q)
    upper = np.moveaxis(level_sums(wl[:, None] * (a[:, r_] * a[:, c_])), -1, 1)  # (R, G, .)
    dH_l = np.empty(upper.shape[:2] + (q, q))
    dH_l[..., r_, c_] = dH_l[..., c_, r_] = upper
    M_l = np.matmul(Hinv, dH_l)  # (R, G, q, q)
    tr_MM = np.einsum("rgpab,rgba->rp", M, M_l)
    tr_MM_ll = np.einsum("rgab,rgba->r", M_l, M_l)
    d2logdet = np.concatenate([tr - tr_MM, (tr_ll - tr_MM_ll)[:, None]], axis=1)
    return -2.0 * (col - 0.5 * d2logdet)
