"""Adaptive Gauss-Hermite quadrature for one factor with q = 2 or 3 random effects.

Level ``j``'s integral of ``p(y_j | u) phi_q(u)`` is evaluated on the product
rule of ``n_agq`` probabilists' Hermite nodes per dimension (``K = n_agq^q``
nodes ``z_k``), centred at the conditional mode and scaled by the Cholesky
factor of the level's Hessian ``H_j = R_j R_j'`` (as GLMMadaptive and
MixedModels.jl do):

.. math::

    u_{jk} = \\tilde u_j + S_j z_k, \\quad S_j = R_j^{-\\top}, \\qquad
    L_j \\approx |R_j|^{-1} \\sum_k \\exp(t_{jk}), \\qquad
    t_{jk} = \\log W_k + \\log p(y_j \\mid u_{jk})
        - \\tfrac12 \\lVert u_{jk} \\rVert^2 + \\tfrac12 \\lVert z_k \\rVert^2

with ``W_k`` the product of the one-dimensional weights normalised for N(0, 1).
With one node per dimension this is the Laplace approximation. The rule is
exact for a Gaussian integrand and, as ``S_j S_j' = H_j^{-1}``, follows the
integrand's scale and correlation in every direction.

The levels are evaluated together: one call of the family on a linear predictor
of shape ``(nodes, n)``, in blocks of nodes on large data. The gradient is the
exact derivative of the quadrature sum: the nodes move with the mode (implicit
function theorem on the mode equation) and with ``S_j`` (the derivative of the
Cholesky factor), see :func:`agq_gradient_vector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import product
from typing import TYPE_CHECKING

import numpy as np

from . import quadrature as _q

if TYPE_CHECKING:
    from .objective import Objective

# the largest number of random effects of a factor the product rule integrates over
MAX_Q = 3
# most nodes per level (n_agq^q): the (nodes, levels) arrays of the rule stay in memory
MAX_NODES = 8000


def check_quadrature_structure(n_agq: int, qs: list[int]) -> None:
    """Raise ``ValueError`` naming the limitation when ``n_agq > 1`` cannot be used.

    ``qs``: the number of random effects of every grouping factor; none: a model
    without random effects, whose likelihood is exact (``n_agq`` does not apply).
    """
    if n_agq <= 1 or not qs:
        return
    if len(qs) != 1:
        raise ValueError(
            f"n_agq={n_agq} (adaptive Gauss-Hermite quadrature) supports a single grouping "
            f"factor; this model has {len(qs)}. Use n_agq=1 (Laplace) for several grouping "
            "factors."
        )
    if qs[0] > MAX_Q:
        raise ValueError(
            f"n_agq={n_agq} (adaptive Gauss-Hermite quadrature) supports at most {MAX_Q} "
            f"random effects per level (a product rule of n_agq^q nodes); this factor has "
            f"{qs[0]}. Use n_agq=1 (Laplace), or fewer random-effect terms."
        )
    if n_agq ** qs[0] > MAX_NODES:
        top = int(np.floor(MAX_NODES ** (1.0 / qs[0]) + 1e-9))
        raise ValueError(
            f"n_agq={n_agq} with {qs[0]} random effects per level makes a product rule of "
            f"{n_agq ** qs[0]} nodes per level; at most {MAX_NODES} are supported "
            f"(n_agq <= {top} here)."
        )


@cache
def product_rule(n_agq: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``(n_agq^q, q)`` and log weights ``(n_agq^q,)`` of the product rule for N(0, I_q)."""
    z1, lw1 = _q._rule(n_agq)
    idx = np.array(list(product(range(n_agq), repeat=q)), dtype=np.intp)
    z = z1[idx]
    log_w = lw1[idx].sum(axis=1)
    z.flags.writeable = False
    log_w.flags.writeable = False
    return z, log_w


@cache
def node_squares(n_agq: int, q: int) -> np.ndarray:
    """``z_k z_k'`` of the product rule's nodes, flattened: ``(n_agq^q, q^2)``."""
    z, _ = product_rule(n_agq, q)
    zz = (z[:, :, None] * z[:, None, :]).reshape(len(z), q * q)
    zz.flags.writeable = False
    return zz


@dataclass
class _Level:
    """Each level's Cholesky pieces at the mode: ``S = R^{-T}``, ``H^{-1} = S S'``; and
    each row's ``b_i = S_j' a_i``, with which a node moves the row's linear predictor by
    ``a_i' S_j z_k = b_i' z_k``."""

    S: np.ndarray  # (G, q, q) upper triangular
    hinv: np.ndarray  # (G, q, q)
    log_det_r: np.ndarray  # (G,) log |R_j| = log|H_j| / 2
    b: np.ndarray  # (n, q)


def _level_factors(obj: Objective) -> _Level:
    s, gi = obj.state, obj.groups[0]
    a, w = s["a_vals"], s["der"].w
    q = a.shape[1]
    H = gi.sum(w[:, None, None] * a[:, :, None] * a[:, None, :])
    H[:, range(q), range(q)] += 1.0
    R = np.linalg.cholesky(H)  # positive definite: the mode search checked it
    S = np.swapaxes(np.linalg.inv(R), 1, 2)
    log_det = np.log(np.diagonal(R, axis1=1, axis2=2)).sum(axis=1)
    b = np.einsum("na,nab->nb", a, gi.expand(S))
    return _Level(S, S @ np.swapaxes(S, 1, 2), log_det, b)


def _blocks(K: int, n: int) -> list[slice]:
    size = max(1, _q._BLOCK_ELEMENTS // max(n, 1))
    return [slice(k, min(k + size, K)) for k in range(0, K, size)]


def _node_eta(obj: Objective, lev: _Level, nodes: slice) -> np.ndarray:
    """The rows' linear predictor at some nodes, ``(k, n)``: the mode's plus ``b_i' z_k``
    (one product of the nodes with the rows' ``b``)."""
    s = obj.state
    z, _ = product_rule(obj.n_agq, s["a_vals"].shape[1])
    eta = z[nodes] @ lev.b.T
    eta += s["eta"]
    return eta


@dataclass
class _VectorQuadrature:
    inputs: tuple
    n_agq: int
    level: _Level
    terms: np.ndarray  # (K, G)
    log_sum: np.ndarray  # (G,)
    nodes: list | None  # per block, the nodes' NodeDerivs, kept for one gradient


def _quadrature(obj: Objective) -> _VectorQuadrature:
    """The quadrature at the objective's current state, computed once per state."""
    cached = getattr(obj, "_agq_cache", None)
    inputs = _q._inputs(obj)
    if (
        isinstance(cached, _VectorQuadrature)
        and cached.n_agq == obj.n_agq
        and all(a is b for a, b in zip(cached.inputs, inputs))
    ):
        return cached
    s, gi = obj.state, obj.groups[0]
    q = s["a_vals"].shape[1]
    z, log_w = product_rule(obj.n_agq, q)
    lev = _level_factors(obj)
    u = s["u"].reshape(gi.n_levels, q)
    n = len(s["eta"])
    # log W_k - |u_jk|^2 / 2 + |z_k|^2 / 2 with u_jk = u_j + S_j z_k, as products of the
    # nodes (K, q) and their squares (K, q^2) with per-level vectors and matrices
    StS = np.swapaxes(lev.S, 1, 2) @ lev.S
    StS[:, range(q), range(q)] -= 1.0
    zz = node_squares(obj.n_agq, q)
    terms = (
        log_w[:, None]
        - 0.5 * np.einsum("ga,ga->g", u, u)
        - z @ np.einsum("gba,gb->ga", lev.S, u).T
        - 0.5 * (zz @ StS.reshape(gi.n_levels, q * q).T)
    )
    kept = []
    keep = len(z) * n <= _q._KEEP_ELEMENTS  # (as the scalar rule's)
    for nodes in _blocks(len(z), n):
        der = _q.node_derivs(obj, _node_eta(obj, lev, nodes), keep)
        terms[nodes] += _q._level_sums(gi, der.loglik)
        kept.append(der)
    kept = kept if keep else None
    out = _VectorQuadrature(inputs, obj.n_agq, lev, terms, _q._logsumexp0(terms), kept)
    obj._agq_cache = out
    return out


def agq_deviance_vector(obj: Objective) -> float:
    """-2 log L by the adaptive product rule (one factor, q = 2 or 3 random effects).

    A level Hessian that is not positive definite to rounding (the mode search
    checked it) makes the evaluation fail: ``inf``, never a finite value.
    """
    try:
        qd = _quadrature(obj)
    except np.linalg.LinAlgError:
        return np.inf
    return float(-2.0 * np.sum(qd.log_sum - qd.level.log_det_r))


def _node_sums(obj: Objective, qd: _VectorQuadrature, post: np.ndarray):
    """Per row, ``sum_k pi_jk d1_ik`` (n,) and ``sum_k pi_jk z_k d1_ik`` (n, q); per
    extra parameter and row, ``sum_k pi_jk d log p_ik / d extra`` (n_blocks, n)."""
    s, gi = obj.state, obj.groups[0]
    z, _ = product_rule(obj.n_agq, s["a_vals"].shape[1])
    n = len(s["eta"])
    kept, qd.nodes = qd.nodes, None
    d1_sum, d1_z = np.zeros(n), np.zeros((n, z.shape[1]))
    g_extra = np.zeros((len(s["extra"]), n))
    for i, nodes in enumerate(_blocks(len(z), n)):
        eta = _node_eta(obj, qd.level, nodes)
        nd = kept[i] if kept is not None else _q.node_derivs(obj, eta, True)
        P = _q._expand_levels(gi, post[nodes])
        D = nd.d1 * P
        d1_sum += D.sum(axis=0)
        d1_z += D.T @ z[nodes]
        if len(g_extra):
            g_extra += _q.extra_node_sums(obj, eta, P, nd)
    return d1_sum, d1_z, g_extra


def _curvature_weight(lev: _Level, SZ: np.ndarray) -> np.ndarray:
    """``E_j`` with ``d log L_j = tr(E_j dH_j)`` for the terms in ``dH_j`` (nodes held
    at their ``z_k``): ``-H^{-1}/2`` from ``|R|^{-1}`` and ``-S C S'`` from the
    movement of ``S = R^{-T}``, with ``dR = R Phi(S' dH S)`` (``Phi``: the lower
    triangle, half the diagonal) and ``C`` the symmetric part of the matrix that
    pairs with ``Phi``: ``M = S' sum_k pi_k s_k z_k'``."""
    M = np.swapaxes(lev.S, 1, 2) @ SZ
    Mt = np.swapaxes(M, 1, 2)
    C = np.tril(Mt, -1) + 0.5 * np.eye(M.shape[1]) * M
    C = 0.5 * (C + np.swapaxes(C, 1, 2))
    return -0.5 * lev.hinv - lev.S @ C @ np.swapaxes(lev.S, 1, 2)


def agq_gradient_vector(obj: Objective) -> np.ndarray:
    """Exact gradient of :func:`agq_deviance_vector`.

    With ``pi_jk`` the nodes' normalised terms, ``s_jk = sum_i a_i d1_i(u_jk) - u_jk``
    the gradient of ``t`` in ``u`` at node ``k``, the derivative in a parameter ``p``
    (beta, theta, a family parameter) is

    .. math::

        \\frac{d \\log L_j}{dp} = \\sum_k \\pi_{jk} \\frac{\\partial t_{jk}}{\\partial p}
            + \\bar s_j^\\top \\frac{d\\tilde u_j}{dp}
            + \\operatorname{tr}\\Big(E_j \\frac{dH_j}{dp}\\Big),
        \\qquad \\bar s_j = \\sum_k \\pi_{jk} s_{jk}

    where ``E_j`` (:func:`_curvature_weight`) carries the determinant and the
    movement of the nodes with the Cholesky factor. The mode equation
    ``G_j = sum_i a_i d1_i - u~_j = 0`` gives ``du~_j/dp = H_j^{-1} dG_j/dp``, and
    ``dH_j/dp = sum_i [w3_i deta_i/dp a_i a_i' + w_i d(a_i a_i')/dp + dw_i/dp a_i a_i']``
    with ``deta_i/dp`` including ``a_i' du~_j/dp``. Collecting the coefficients of
    ``dG_j/dp`` into ``rho_j = H_j^{-1}(s_bar_j + sum_i w3_i c_i a_i)``
    (``c_i = a_i' E_j a_i``) and those of the rows' ``deta_i/dp`` (mode held) into
    ``psi_i``, each parameter costs one product with per-row vectors. As the
    Laplace gradient does, it leaves ``du~/d(beta, theta)`` for the next
    evaluation's starting modes (not inside ``without_mode_derivatives``).
    """
    d, s, gi = obj.data, obj.state, obj.groups[0]
    qd = _quadrature(obj)
    lev = qd.level
    post = np.exp(qd.terms - qd.log_sum)  # (K, G)
    a, der = s["a_vals"], s["der"]
    G, q = gi.n_levels, a.shape[1]
    z, _ = product_rule(obj.n_agq, q)
    u = s["u"].reshape(G, q)
    d1_sum, d1_z, g_extra = _node_sums(obj, qd, post)
    pz = post.T @ z  # (G, q) sum_k pi z_k
    pzz = (post.T @ node_squares(obj.n_agq, q)).reshape(G, q, q)
    # sum_k pi s_k and sum_k pi s_k z_k'
    s_bar = gi.sum(a * d1_sum[:, None]) - u - np.einsum("gab,gb->ga", lev.S, pz)
    SZ = gi.sum(a[:, :, None] * d1_z[:, None, :]) - (u[:, :, None] * pz[:, None, :] + lev.S @ pzz)
    E = _curvature_weight(lev, SZ)
    E_rows = gi.expand(E)
    Ea = np.einsum("nab,nb->na", E_rows, a)
    c = np.einsum("na,na->n", Ea, a)
    rho = np.einsum("gab,gb->ga", lev.hinv, s_bar + gi.sum((der.w3 * c)[:, None] * a))
    rho_rows = gi.expand(rho)
    rho_a = np.einsum("na,na->n", rho_rows, a)
    psi = d1_sum - der.w * rho_a + der.w3 * c
    # theta: row i's a_i moves by z_ir e_c: at the nodes (the mode's part is in psi),
    # in G_j through d1 and in c_i
    u_rows = gi.expand(u)
    Sd = np.einsum("nab,nb->na", gi.expand(lev.S), d1_z)
    f = d.factors[0]
    g_theta = np.empty(len(f.theta_rows))
    for k, (r, col) in enumerate(zip(f.theta_rows, f.theta_cols)):
        per_row = psi * u_rows[:, col] + Sd[:, col] + rho_rows[:, col] * der.d1
        g_theta[k] = f.Z[:, r] @ (per_row + 2.0 * der.w * Ea[:, col])
    g = [d.X.T @ psi, g_theta]
    if obj.mode_derivatives_wanted:  # the next evaluation's start
        obj.keep_mode_derivatives(_mode_derivative(obj, lev))
    if len(s["extra"]):
        partials = _q._extra_partials(obj, s["eta"], ("d1", "w"))
        for e, (dd1, dw) in enumerate(partials):
            g_extra[e] += rho_a * dd1 + c * dw
        g.append(d.extra_gradient(g_extra))
    return -2.0 * np.concatenate(g)


def _mode_derivative(obj: Objective, lev: _Level) -> np.ndarray:
    """``du~/d(beta, theta) = H^{-1} dG/d(beta, theta)``, (G q, p + T): the next start."""
    d, s, gi = obj.data, obj.state, obj.groups[0]
    f, der = d.factors[0], s["der"]
    G, q = gi.n_levels, f.q
    u_rows = gi.expand(s["u"].reshape(G, q))
    moves = [d.X] + [
        (f.Z[:, r] * u_rows[:, c])[:, None] for r, c in zip(f.theta_rows, f.theta_cols)
    ]
    dG = -obj._Atv(s["a_vals"], der.w[:, None] * np.hstack(moves)).reshape(G, q, -1)
    p = d.n_beta
    for k, (r, c) in enumerate(zip(f.theta_rows, f.theta_cols)):
        dG[:, c, p + k] += gi.sum(der.d1 * f.Z[:, r])
    return np.einsum("gab,gbk->gak", lev.hinv, dG).reshape(G * q, -1)
