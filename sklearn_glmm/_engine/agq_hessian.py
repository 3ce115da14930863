"""The exact Hessian of the adaptive quadrature objective for one scalar random effect.

The quadrature (:mod:`.quadrature`) puts level ``j``'s nodes at ``u_jk = u_j + z_k s_j``
around its conditional mode ``u_j`` with ``s_j = h_j^(-1/2)``; with
``t_jk = c_k + sum_i l_i(eta_ik) - u_jk^2 / 2`` (``eta_ik = f_i + a_i u_jk``, ``c_k`` the
rule's constants) the objective is ``F = -2 sum_j [log s_j + log sum_k exp(t_jk)]``.
Its Hessian in ``p = (beta, theta)`` needs, per level, the mode's first and second
derivatives ``U_jp, U_jpq`` and those of ``h_j`` (the Laplace Hessian's quantities,
:mod:`.laplace_hessian`), then, per node, with ``du_jkp = U_jp + z_k ds_jp`` and
``Dk_ip = E_ikp + a_i du_jkp`` the total derivative of ``eta_ik`` (``E_ikp``: ``x_i``
for beta, ``z_i u_jk`` for theta; ``A_ip = z_i`` for theta, else 0):

* ``dt_jkp = sum_i d_ik Dk_ip - u_jk du_jkp``;
* ``d2t_jkpq = -sum_i w_ik Dk_ip Dk_iq + sum_i d_ik (A_ip du_jkq + A_iq du_jkp)
  + (sum_i d_ik a_i - u_jk) d2u_jkpq - du_jkp du_jkq``, ``d2u_jkpq = U_jpq + z_k d2s_jpq``;
* with the node weights ``pi_jk`` (softmax of ``t_jk`` over ``k``) and ``m_j = sum_k
  pi_jk dt_jk``: ``d2 log sum_k exp(t_jk) = sum_k pi_jk (d2t_jk + dt_jk dt_jk') - m_j m_j'``;
* ``d2 log s_j = -(d2h_j / h_j - dh_j dh_j' / h_j^2) / 2``.

The nodes' derivatives ``d, w`` come from one call of the family on all the nodes, the
mode's ``d, w, w3, w4`` from the state (as for the Laplace Hessian). Arrays of (rows,
nodes, P) and (levels, nodes, P, P), the sums over rows one pass for every node; at most
:data:`MAX_CELLS` nodes x rows x P x P (:func:`applies`), above which the Hessian is
taken by differences of the gradient. ``tests/test_agq_hessian.py`` compares it with
Richardson-extrapolated differences of the exact quadrature gradient.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .laplace_hessian import _scalar_parts
from .quadrature import _rule

MAX_CELLS = 4_000_000


def applies(obj) -> bool:
    """Whether :func:`agq_hessian` gives the Hessian of ``obj``'s quadrature objective."""
    d = obj.data
    if obj.n_agq <= 1 or not obj._scalar or len(d.factors) != 1 or not len(d.y):
        return False
    if d.factors[0].mapped or not getattr(d.family, "has_fourth_derivative", False):
        return False
    P = d.n_beta + d.n_theta
    return bool(obj.n_agq * len(d.y) * P * P <= MAX_CELLS)


def _sym_theta(M, V, k):
    """``M`` with ``V`` (G, P) added to its row and column ``k`` (the entries where one
    of the two parameters is theta)."""
    M[..., k, :] += V
    M[..., :, k] += V
    return M


def agq_hessian(obj) -> np.ndarray:
    """The Hessian of the quadrature objective in ``(beta, theta)`` at the objective's
    current state (only where :func:`applies`)."""
    d, s, gi = obj.data, obj.state, obj.groups[0]
    n, p = d.X.shape
    P, k = p + 1, p  # theta's index
    G = gi.n_levels
    u = s["u"]
    # the mode's derivatives and those of h_j (laplace_hessian's docstring)
    d0, w0, w3, w4, a, z, hinv, _, _, U, D, dh = _scalar_parts(obj)

    if gi.contiguous:

        def sums(v):  # (n, ...) -> (G, ...)
            return gi.sum(v.reshape(n, -1)).reshape((G,) + v.shape[1:])

    else:  # levels' rows apart: one sparse product for every column, not a pass each
        S = sp.csr_matrix((np.ones(n), (gi.codes, np.arange(n))), shape=(G, n))

        def sums(v):
            return np.asarray(S @ v.reshape(n, -1)).reshape((G,) + v.shape[1:])

    DD = D[:, :, None] * D[:, None, :]
    c = gi.sum(a * w0 * z)
    U2 = sums((a * w3)[:, None, None] * DD)
    U2 = -_sym_theta(U2, sums((w0 * z)[:, None] * D) + c[:, None] * U, k)
    U2 *= hinv[:, None, None]
    d2h = sums((w4 * a * a)[:, None, None] * DD)
    _sym_theta(d2h, 2.0 * sums((w3 * a * z)[:, None] * D) + gi.sum(w3 * a * a * z)[:, None] * U, k)
    d2h += gi.sum(w3 * a**3)[:, None, None] * U2
    d2h[:, k, k] += 2.0 * gi.sum(w0 * z * z)
    del DD
    # the nodes' scale s_j = h_j^(-1/2) and its derivatives
    sd = np.sqrt(hinv)
    ds = -0.5 * (sd**3)[:, None] * dh
    d2s = -0.5 * (sd**3)[:, None, None] * d2h + 0.75 * (sd**5)[:, None, None] * (
        dh[:, :, None] * dh[:, None, :]
    )
    zk, _ = _rule(obj.n_agq)
    K = len(zk)
    # levels first, then nodes: every sum over a level's rows is one pass for all nodes
    uk = u[:, None] + sd[:, None] * zk[None, :]  # (G, K)
    du = U[:, None] + ds[:, None] * zk[None, :, None]  # (G, K, P)
    d2u = U2[:, None] + d2s[:, None] * zk[None, :, None, None]  # (G, K, P, P)
    Uk = gi.expand(uk)  # (n, K)
    eta = s["eta_fix"][None, :] + a[None, :] * Uk.T  # (K, n): the family's layout
    der = obj._derivs(eta, s["extra"], third=False)
    dk, wk = der.d1.T, der.w.T  # (n, K)
    del der, eta
    Dk = np.empty((n, K, P))
    Dk[:, :, :p] = d.X[:, None, :]
    Dk[:, :, k] = z[:, None] * Uk
    Dk += a[:, None, None] * gi.expand(du.reshape(G, K * P)).reshape(n, K, P)
    dt = sums(dk[:, :, None] * Dk) - uk[:, :, None] * du
    # -sum_i w_ik Dk_ip Dk_iq pair by pair: arrays of (rows, nodes), not (rows, nodes,
    # P, P) (on 1,500 rows a third of the time)
    d2t = np.empty((G, K, P, P))
    for i in range(P):
        wD = wk * Dk[:, :, i]
        for j in range(i, P):
            d2t[:, :, i, j] = d2t[:, :, j, i] = -sums(wD * Dk[:, :, j])
    del wD
    del Dk
    _sym_theta(d2t, sums(dk * z[:, None])[:, :, None] * du, k)
    d2t += (sums(dk * a[:, None]) - uk)[:, :, None, None] * d2u
    d2t -= du[:, :, :, None] * du[:, :, None, :]
    # the node weights: a softmax of the log integrand over the nodes
    q = _node_weights(obj)
    m = np.einsum("gk,gkp->gp", q, dt)
    d2lse = np.einsum("gk,gkpq->gpq", q, d2t + dt[:, :, :, None] * dt[:, :, None, :])
    d2lse -= m[:, :, None] * m[:, None, :]
    d2log_s = -0.5 * (
        d2h * hinv[:, None, None] - (dh[:, :, None] * dh[:, None, :]) * (hinv * hinv)[:, None, None]
    )
    H = -2.0 * np.sum(d2log_s + d2lse, axis=0)
    return 0.5 * (H + H.T)


def _node_weights(obj) -> np.ndarray:
    """``pi_jk``, each level's weights of its nodes (G, K): the quadrature's terms."""
    from .quadrature import _quadrature

    q = _quadrature(obj)
    return np.exp(q.terms - q.log_sum[None, :]).T
