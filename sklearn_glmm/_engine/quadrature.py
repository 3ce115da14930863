"""Adaptive Gauss-Hermite quadrature (AGQ) for one factor with a scalar random effect.

(Two or three random effects: the product rules of :mod:`.quadrature_vector`, which
:func:`agq_deviance` and :func:`agq_gradient` hand such a factor to.)

Level ``j``'s integral of ``p(y_j | u) phi(u)`` is evaluated on ``n_agq`` nodes
``u_jk = u~_j + z_k sd_j`` centred at its conditional mode and scaled by
``sd_j = 1 / sqrt(H_j)``:

.. math::

    L_j \\approx sd_j \\sum_k \\exp(t_{jk}), \\qquad
    t_{jk} = \\log \\frac{w_k}{\\sqrt{2\\pi}} + \\log p(y_j \\mid u_{jk})
        - \\tfrac12 u_{jk}^2 + \\tfrac12 z_k^2

with ``(z_k, w_k)`` the probabilists' Hermite rule. The nodes are evaluated
together, one call of the family's derivatives on a linear predictor of shape
``(n_agq, n)`` (on large data, one call per block of nodes). The log-densities
and the rows' first derivatives at the nodes (with a family that makes them in the
same pass, ``node_derivs``, also the partials in its own parameters) are computed
once per conditional mode: :func:`agq_deviance` and :func:`agq_gradient` share them
through the objective's ``_agq_cache``. The gradient is the exact derivative of the
quadrature sum, the nodes moving with the mode and the curvature.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from .blocks import shift_block
from .families.base import NodeDerivs
from .rows import const_tiled, tiled

if TYPE_CHECKING:
    from .groups import GroupIndex
    from .objective import Objective

# Most (node, row) pairs evaluated in one call of the family: the family's
# temporaries then stay in the processor's cache, and memory stays bounded.
_BLOCK_ELEMENTS = 1 << 15
# Most (node, row) pairs whose derivatives (d1 and, where made in the same pass, the
# partials in the family's own parameters) are kept from the value for the gradient.
_KEEP_ELEMENTS = 1 << 21


@cache
def _rule(n_agq: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z_k and log weights log(w_k / sqrt(2 pi)) of the n-point Hermite rule."""
    z, wts = hermegauss(n_agq)
    log_w = np.log(wts / np.sqrt(2.0 * np.pi))
    z.flags.writeable = False
    log_w.flags.writeable = False
    return z, log_w


def _logsumexp0(a: np.ndarray) -> np.ndarray:
    """log sum exp over axis 0, the largest terms kept out of the sum (as scipy's logsumexp).

    Columns that are all ``-inf`` give ``-inf``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        a_max = a.max(axis=0)
        top = a == a_max
        m = top.sum(axis=0).astype(float)
        e = np.exp(a - a_max)
        e[top] = 0.0
        return np.log1p(e.sum(axis=0) / m) + np.log(m) + a_max


def _level_sums(gi: GroupIndex, v: np.ndarray) -> np.ndarray:
    """Sums of every row of ``v`` (k, n) over each level's rows, shape (k, n_levels)."""
    if not gi.contiguous:
        k, L = v.shape[0], gi.n_levels
        idx = gi.codes + L * np.arange(k)[:, None]
        return np.bincount(idx.ravel(), v.ravel(), minlength=k * L).reshape(k, L)
    s = np.add.reduceat(v, gi.starts, axis=1)
    if gi.in_order:
        return s
    out = np.empty_like(s)
    out[:, gi.run_codes] = s
    return out


def _expand_levels(gi: GroupIndex, u: np.ndarray) -> np.ndarray:
    """Each row's level value for every row of ``u`` (k, n_levels), shape (k, n)."""
    if not gi.contiguous:
        return u[:, gi.codes]
    return np.repeat(u if gi.in_order else u[:, gi.run_codes], gi.lengths, axis=1)


def _blocks(n_agq: int, n: int) -> list[slice]:
    """Consecutive blocks of nodes with at most ``_BLOCK_ELEMENTS`` (node, row) pairs."""
    size = max(1, _BLOCK_ELEMENTS // max(n, 1))
    return [slice(k, min(k + size, n_agq)) for k in range(0, n_agq, size)]


@dataclass
class _NodeBlock:
    """Some consecutive nodes: their values per level and per row, the rows' eta."""

    nodes: slice
    uk: np.ndarray  # (k, n_levels) node values u_jk
    U: np.ndarray  # (k, n) each row's node value
    eta: np.ndarray  # (k, n)


def _node_block(obj: Objective, nodes: slice) -> _NodeBlock:
    s = obj.state
    z, _ = _rule(obj.n_agq)
    sd = np.sqrt(obj.solver.hinv[:, 0, 0])
    uk = s["u"] + z[nodes, None] * sd
    U = _expand_levels(obj.groups[0], uk)
    return _NodeBlock(nodes, uk, U, s["eta_fix"] + s["a_vals"][:, 0] * U)


@dataclass
class _Quadrature:
    """The quadrature at one conditional mode (the inputs it was computed from)."""

    inputs: tuple
    n_agq: int
    log_sd: np.ndarray  # (n_levels,)
    terms: np.ndarray  # (n_agq, n_levels) log integrand t_jk
    log_sum: np.ndarray  # (n_levels,) log sum_k exp(t_jk)
    nodes: list | None  # per block, the nodes' NodeDerivs (d1 and more), kept for one gradient
    blocks: list | None = None  # the node blocks themselves, kept with them


def _inputs(obj: Objective) -> tuple:
    """The arrays the quadrature depends on; every PIRLS solution makes new ones."""
    s = obj.state
    return (s["u"], s["eta_fix"], s["a_vals"], s["extra"], obj.solver.hinv)


def _is_current(q: _Quadrature | None, obj: Objective) -> bool:
    if q is None or q.n_agq != obj.n_agq:
        return False
    return all(a is b for a, b in zip(q.inputs, _inputs(obj)))


def _quadrature(obj: Objective) -> _Quadrature:
    """The quadrature at the objective's current state, computed once per state."""
    q = getattr(obj, "_agq_cache", None)
    if _is_current(q, obj):
        return q
    z, log_w = _rule(obj.n_agq)
    n = len(obj.state["eta_fix"])
    terms = np.empty((obj.n_agq, obj.groups[0].n_levels))
    kept, blocks = [], []
    # kept for the gradient: the nodes' d1 and, where the family makes them in the same
    # pass, its partials in its own parameters (a few channels, each within d1's memory)
    keep = obj.n_agq * n <= _KEEP_ELEMENTS
    for nodes in _blocks(obj.n_agq, n):
        b = _node_block(obj, nodes)
        der = node_derivs(obj, b.eta, keep)
        ll = _level_sums(obj.groups[0], der.loglik)
        terms[nodes] = log_w[nodes, None] + ll - 0.5 * b.uk**2 + 0.5 * z[nodes, None] ** 2
        kept.append(der)
        blocks.append(b)
    log_sd = np.log(np.sqrt(obj.solver.hinv[:, 0, 0]))
    q = _Quadrature(
        _inputs(obj),
        obj.n_agq,
        log_sd,
        terms,
        _logsumexp0(terms),
        kept if keep else None,
        blocks if keep else None,
    )
    obj._agq_cache = q
    return q


def agq_deviance(obj: Objective, theta: np.ndarray) -> float:
    """-2 log L by adaptive Gauss-Hermite quadrature (one scalar random effect).

    Each level's integral is evaluated on ``n_agq`` nodes centred at its mode
    ``u~_j`` and scaled by ``1 / sqrt(H_j)``; weights are those of the
    probabilists' Hermite rule normalised for N(0, 1). Everything comes from the
    objective's state at the mode (``theta`` is not needed beyond it). A factor
    with two or three random effects goes to the product rule of
    :mod:`.quadrature_vector`.
    """
    if not obj._scalar:
        from .quadrature_vector import agq_deviance_vector

        return agq_deviance_vector(obj)
    q = _quadrature(obj)
    log_l = q.log_sd + q.log_sum
    return float(-2.0 * log_l.sum())


def level_log_integrals(obj: Objective) -> tuple[np.ndarray, np.ndarray]:
    """Each level's log integral by the quadrature at the objective's current state (one
    scalar random effect), and the scale of its nodes (``1 / sqrt(H_j)``, prior SDs)."""
    q = _quadrature(obj)
    return q.log_sd + q.log_sum, np.exp(q.log_sd)


def _gradient_blocks(obj: Objective, q: _Quadrature):
    """Each node block with its rows' :class:`NodeDerivs`: kept by the evaluation (used
    once), or anew."""
    kept, blocks, q.nodes, q.blocks = q.nodes, q.blocks, None, None
    if kept is not None:
        yield from zip(blocks, kept)
        return
    n = len(obj.state["eta_fix"])
    for nodes in _blocks(obj.n_agq, n):
        b = _node_block(obj, nodes)
        yield b, node_derivs(obj, b.eta, True)


def node_derivs(obj: Objective, eta: np.ndarray, with_extra: bool) -> NodeDerivs:
    """The log-density and ``d1`` at the nodes' ``eta`` (k, n) and, ``with_extra``
    where the family makes them in the same pass, its partials in its own parameters
    (:class:`~.families.base.NodeDerivs`; else ``channels`` None)."""
    d, extra = obj.data, obj.state["extra"]
    if d.family.has_node_derivs:
        with_extra = with_extra and len(extra) > 0
        return d.family.node_derivs(
            d.y, eta, obj._trials, obj._w, extra, obj._const, with_extra=with_extra
        )
    der = obj._derivs(eta, extra, third=False)  # loglik and d1 only
    return NodeDerivs(der.loglik, der.d1, None, None)


def extra_node_sums(obj: Objective, eta: np.ndarray, P: np.ndarray, nd: NodeDerivs):
    """Per extra parameter and row, ``sum_k P_ki d log p_ki / d extra`` (n_blocks, n):
    from ``nd``'s channels where the family made them, else from :func:`_extra_partials`."""
    if nd.channels is None:
        parts = _extra_partials(obj, eta, ("loglik",))
        return np.array([np.sum(P * dl, axis=0) for (dl,) in parts])
    S = np.einsum("ckn,kn->cn", nd.channels, P)
    return S if nd.rows is None else np.einsum("ecn,cn->en", nd.rows, S)


def _extra_partials(obj: Objective, eta: np.ndarray, fields: tuple[str, ...]) -> list[list]:
    """For every extra parameter, the derivatives of the family's ``fields`` at ``eta``
    (the rows' linear predictors, or those at every node, (k, n)): ``out[e][f]`` has the
    shape of ``eta``. The family's analytic ``extra_derivs`` where it has them (a
    difference of log-densities of large counts is lost in their rounding), central
    differences (h = 1e-5) otherwise."""
    extra = obj.state["extra"]
    exact = getattr(obj.data.family, "extra_derivs", None)
    if exact is not None:
        return _exact_extra_partials(obj, exact, eta, fields)
    out = []
    for e in range(len(extra)):
        dp = obj._derivs(eta, shift_block(extra, e, 1e-5))
        dm = obj._derivs(eta, shift_block(extra, e, -1e-5))
        out.append([(getattr(dp, f) - getattr(dm, f)) / 2e-5 for f in fields])
    return out


def _exact_extra_partials(obj, exact, eta, fields) -> list[list]:
    """:func:`_extra_partials` from the family's ``extra_derivs``, which take one linear
    predictor per row: the nodes' rows go one block after another, with the rows'
    outcomes, trials, weights, parameter-free terms and per-row parameters repeated."""
    d, extra = obj.data, obj.state["extra"]
    n = eta.shape[-1]
    k = eta.size // max(n, 1)
    dl, dd1, dw = exact(
        tiled(d.y, k),
        eta.reshape(-1),
        tiled(obj._trials, k),
        tiled(obj._w, k),
        tuple(tiled(v, k) for v in extra),
        const_tiled(obj._const, k),
    )
    parts = {"loglik": dl, "d1": dd1, "w": dw}
    return [[np.reshape(parts[f][e], eta.shape) for f in fields] for e in range(len(extra))]


def agq_gradient(obj: Objective) -> np.ndarray:
    """Exact gradient of :func:`agq_deviance`, the nodes following the mode and curvature.

    The value ``F = -2 sum_j log L_j`` depends on a parameter ``p`` (beta, theta
    or an extra parameter) directly, through the level's mode ``u~_j`` and
    through its curvature ``H_j = 1 + sum_i w_i a_i^2`` (``a_i = z_i theta``,
    ``w`` at the mode), which fix the nodes ``u_jk = u~_j + z_k H_j^{-1/2}``.
    With ``pi_jk`` the nodes' normalised terms ``exp(t_jk) / sum_k exp(t_jk)``
    and ``s_jk = dt_jk / du_jk = sum_i a_i d1_i(u_jk) - u_jk``:

    .. math::

        -\\tfrac12 \\frac{dF}{dp} = \\sum_j \\Big[ \\sum_k \\pi_{jk}
            \\frac{\\partial t_{jk}}{\\partial p} + S_{1j} \\frac{d\\tilde u_j}{dp}
            - \\frac{1 + sd_j S_{2j}}{2 H_j} \\frac{dH_j}{dp} \\Big],
        \\qquad S_{1j} = \\sum_k \\pi_{jk} s_{jk}, \\quad
        S_{2j} = \\sum_k \\pi_{jk} z_k s_{jk}

    where ``dt/dp`` holds the node in place. The mode equation
    ``G_j = sum_i a_i d1_i - u~_j = 0`` gives ``du~_j/dp = (dG_j/dp) / H_j``
    (implicit function theorem), and ``H_j`` moves with the rows' linear
    predictors at the mode (through ``w3``), with ``a_i`` (theta) and with the
    family's extra parameters:

    .. math::

        \\frac{dH_j}{dp} = \\sum_i a_i^2 \\Big( w_{3i} \\frac{d\\eta_i}{dp}
            + \\frac{\\partial w_i}{\\partial p} \\Big)
            + 2 \\sum_i w_i a_i \\frac{\\partial a_i}{\\partial p}, \\qquad
        \\frac{d\\eta_i}{dp} = \\frac{\\partial \\eta_i}{\\partial p}
            + a_i \\frac{d\\tilde u_j}{dp}.

    Collecting the terms in ``du~_j/dp`` into ``r_j`` and those in
    ``d eta_i/dp`` (mode held) into the row weights ``psi_i``, every parameter
    costs one product with per-row vectors. Derivatives in the extra parameters
    are the family's own (:func:`_extra_partials`). With
    one node (``z = 0``, ``s = G = 0``) this is the Laplace gradient. As the
    Laplace gradient does, it leaves ``du~/d(beta, theta)`` on the objective as
    the next evaluation's starting modes (not inside ``without_mode_derivatives``).
    """
    if not obj._scalar:
        from .quadrature_vector import agq_gradient_vector

        return agq_gradient_vector(obj)
    d, s = obj.data, obj.state
    gi = obj.groups[0]
    q = _quadrature(obj)
    post = np.exp(q.terms - q.log_sum)  # (n_agq, n_levels) node weights pi_jk
    z, _ = _rule(obj.n_agq)
    p = d.n_beta
    n = len(s["eta_fix"])
    # node sums per row: sum_k pi_jk d1_ik and sum_k pi_jk z_k d1_ik
    d1_sum = np.zeros(n)
    d1_z = np.zeros(n)
    # per block of the family, each row's derivative of the nodes' terms in its value
    n_blocks = len(s["extra"])
    g_extra = np.zeros((n_blocks, n))
    for b, nd in _gradient_blocks(obj, q):
        P = _expand_levels(gi, post[b.nodes])
        D = nd.d1 * P
        d1_sum += D.sum(axis=0)
        d1_z += z[b.nodes] @ D
        if n_blocks:
            g_extra += extra_node_sums(obj, b.eta, P, nd)
    der, u = s["der"], s["u"]
    a, zr = s["a_vals"][:, 0], d.factors[0].Z[:, 0]
    hinv = obj.solver.hinv[:, 0, 0]
    sd = np.sqrt(hinv)
    pz = z @ post  # sum_k pi_jk z_k
    pz2 = (z * z) @ post
    u_rows = gi.expand(u)
    # S1 = sum_k pi (sum_i a_i d1_ik - u_jk), S2 the same weighted by z_k
    S1 = gi.sum(a * d1_sum) - (u + sd * pz)
    S2 = gi.sum(a * d1_z) - (u * pz + sd * pz2)
    e_h = -0.5 * (1.0 + sd * S2) * hinv  # coefficient of dH_j/dp
    a2w3 = a * a * der.w3
    r = (S1 + e_h * gi.sum(a * a2w3)) * hinv  # coefficient of dG_j/dp
    r_rows, e_rows = gi.expand(r), gi.expand(e_h)
    # each row's weight on d eta_i/dp with the mode held: the nodes' own d1 and the
    # mode's and curvature's dependence on eta
    psi = d1_sum - der.w * a * r_rows + e_rows * a2w3
    g = np.zeros(p + 1 + d.n_extra)
    g[:p] = d.X.T @ psi
    # theta: eta_ik moves by z_i u_jk at the nodes (z_i u~_j at the mode, in psi),
    # G_j by sum_i z_i d1_i and H_j by 2 sum_i w_i a_i z_i
    g[p] = zr @ (psi * u_rows + gi.expand(sd) * d1_z + r_rows * der.d1 + 2.0 * e_rows * der.w * a)
    if obj.mode_derivatives_wanted:
        # du~/d(beta, theta) = H^{-1} dG/d(beta, theta): the next evaluation's start
        wa = der.w * a
        J = np.empty((len(u), p + 1))
        J[:, :p] = gi.sum(wa[:, None] * d.X) * -hinv[:, None]
        J[:, p] = hinv * (gi.sum(der.d1 * zr) - gi.sum(wa * zr * u_rows))
        obj.keep_mode_derivatives(J)
    if n_blocks:
        partials = _extra_partials(obj, s["eta"], ("d1", "w"))
        for e, (dd1, dw) in enumerate(partials):
            g_extra[e] += a * (r_rows * dd1 + e_rows * a * dw)
        g[p + 1 :] = d.extra_gradient(g_extra)
    return -2.0 * g
