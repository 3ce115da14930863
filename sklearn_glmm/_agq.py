"""Adaptive Gauss-Hermite quadrature (AGQ) for one factor with a scalar random effect.

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
and the rows' first derivatives at the nodes are computed once per conditional
mode: :func:`agq_deviance` and :func:`agq_gradient` share them through the
objective's ``_agq_cache``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

if TYPE_CHECKING:
    from ._groups import GroupIndex
    from ._laplace import Objective

# Most (node, row) pairs evaluated in one call of the family: the family's
# temporaries then stay in the processor's cache, and memory stays bounded.
_BLOCK_ELEMENTS = 1 << 15
# Most (node, row) pairs whose d1 is kept from the value for the gradient.
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
    d1: list | None  # per block, the rows' d log p / d eta (n_agq, n), kept for one gradient


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
    d1 = []
    for nodes in _blocks(obj.n_agq, n):
        b = _node_block(obj, nodes)
        der = obj._derivs(b.eta, obj.state["extra"])
        ll = _level_sums(obj.groups[0], der.loglik)
        terms[nodes] = log_w[nodes, None] + ll - 0.5 * b.uk**2 + 0.5 * z[nodes, None] ** 2
        d1.append(der.d1)
    log_sd = np.log(np.sqrt(obj.solver.hinv[:, 0, 0]))
    keep = d1 if obj.n_agq * n <= _KEEP_ELEMENTS else None
    q = _Quadrature(_inputs(obj), obj.n_agq, log_sd, terms, _logsumexp0(terms), keep)
    obj._agq_cache = q
    return q


def agq_deviance(obj: Objective, theta: np.ndarray) -> float:
    """-2 log L by adaptive Gauss-Hermite quadrature (one scalar random effect).

    Each level's integral is evaluated on ``n_agq`` nodes centred at its mode
    ``u~_j`` and scaled by ``1 / sqrt(H_j)``; weights are those of the
    probabilists' Hermite rule normalised for N(0, 1). Everything comes from the
    objective's state at the mode (``theta`` is not needed beyond it).
    """
    q = _quadrature(obj)
    log_l = q.log_sd + q.log_sum
    return float(-2.0 * log_l.sum())


def _gradient_blocks(obj: Objective, q: _Quadrature):
    """Each node block with its rows' d1: kept by the evaluation (used once), or anew."""
    kept, q.d1 = q.d1, None
    n = len(obj.state["eta_fix"])
    for i, nodes in enumerate(_blocks(obj.n_agq, n)):
        b = _node_block(obj, nodes)
        yield b, kept[i] if kept is not None else obj._derivs(b.eta, obj.state["extra"]).d1


def _extra_gradient(obj: Objective, eta: np.ndarray, P: np.ndarray) -> np.ndarray:
    """sum over nodes and rows of P d log p / d extra (central differences, h = 1e-5)."""
    extra = obj.state["extra"]
    out = np.zeros(len(extra))
    for e in range(len(extra)):
        h = np.zeros(len(extra))
        h[e] = 1e-5
        dl = obj._derivs(eta, extra + h).loglik - obj._derivs(eta, extra - h).loglik
        out[e] = np.sum(P * dl) / 2e-5
    return out


def agq_gradient(obj: Objective) -> np.ndarray:
    """Gradient of the AGQ objective with the quadrature nodes held in place.

    d log L_j / d param = E[d log p(y_j | u) / d param] under u's conditional
    distribution, evaluated with the quadrature's own weights. It differs from
    the derivative of the quadrature sum only through the nodes' movement with
    the mode, a term as small as the quadrature error itself.
    """
    d = obj.data
    q = _quadrature(obj)
    post = np.exp(q.terms - q.log_sum)  # (n_agq, n_levels) node weights
    p = d.n_beta
    g = np.zeros(p + 1 + d.n_extra)
    z_col = d.factors[0].Z[:, 0]
    for b, d1 in _gradient_blocks(obj, q):
        P = _expand_levels(obj.groups[0], post[b.nodes])
        D = d1 * P
        g[:p] += d.X.T @ D.sum(axis=0)
        g[p] += np.sum((D * b.U) @ z_col)
        if d.n_extra:
            g[p + 1 :] += _extra_gradient(obj, b.eta, P)
    return -2.0 * g
