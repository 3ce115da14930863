"""The Laplace log-likelihood of a cumulative link mixed model with any random effects.

``truth_ordinal.py`` integrates one scalar random intercept level by level. This module
takes the other structures ``OrdinalGLMM`` fits: random slopes (correlated or ``diag``),
several effects per level, crossed and nested factors, whose random effects share rows
so that the integral no longer splits by level. With ``K`` ordered classes,

.. math::

    P(Y_i \\le k \\mid b) = F(\\alpha_k - x_i^\\top \\beta - o_i - z_i^\\top b),

``b = Lambda u`` and ``u ~ N(0, I)`` (``Lambda`` block-diagonal, each level of a factor
with the lower-triangular factor of its covariance, ``truth_dense.Structure``), the
Laplace approximation is lme4's

.. math::

    \\log L \\approx \\max_u \\Big[\\sum_i w_i \\log P(Y_i = y_i \\mid \\eta_i)
        - \\tfrac12 u^\\top u\\Big] - \\tfrac12 \\log\\det(I + A^\\top W A)

with ``A = Z Lambda`` and ``W`` the diagonal of ``-w_i d^2 log P / d eta^2`` at the mode
(the exact curvature). Only numpy and scipy (and ``truth_dense``'s structure, the same)
are used: nothing here imports ``sklearn_glmm``.

The row log-probabilities are ``truth_ordinal.row_logp``. Their first and second
derivatives in ``eta`` are analytic: with ``u = alpha_{y+1} - eta``, ``l = alpha_y - eta``,
``p = F(u) - F(l)``, the ratios ``r_u = f(u) / p`` and ``r_l = f(l) / p`` (taken as
``exp(log f - log p)``, so that neither over- nor underflows in the tails) and ``g =
f' / f`` (closed form per link),

.. math::

    \\frac{d \\log p}{d\\eta} = r_l - r_u, \\qquad
    \\frac{d^2 \\log p}{d\\eta^2} = r_u g(u) - r_l g(l) - (r_u - r_l)^2 .

Rounding: the terms are at most ``O(|u|^2)`` (probit tails) or ``O(1 / (u - l))``
(narrow classes) and cancel to ``O(1)``, so the curvature is off by about ``1e-16`` of
those, far below what the checks resolve; the self-tests compare both derivatives with
five-point differences of ``row_logp`` out to the far tails (``test_row_derivatives``).
Analytic derivatives are used because the mode search and the log-determinant need
``W`` at hundreds of thousands of points, and because a difference of ``row_logp`` far
in a tail (where ``log p`` is ``-1e3``) loses the digits the curvature needs.

Links: logit, probit, cloglog and loglog, whose ``F`` is log-concave: each row's
``log P(Y = y | eta)`` is then concave in ``eta`` (a log-concave density convolved with
an interval's indicator, Prekopa), the penalised log-density is strictly concave in
``u`` and the damped Newton search from ``u = 0`` finds its one mode. The cauchit is not
taken: its conditional density can have several modes, and with random effects that
share rows across factors no search of a few starts is sure to find the highest one.

- :func:`laplace_loglik` (and :class:`PackedLaplace`, the same on :func:`pack`'s
  vector, warm-started): the formula above;
- :func:`conditional_modes`: the random effects at the mode, per factor and level;
- :func:`pack` / :func:`unpack` / :func:`pack_caps`: ``[beta, threshold parameters,
  covariance parameters]`` for ``truth.best_nearby`` and
  ``truth.fixed_effect_standard_errors`` (``truth_dense``'s packing of a covariance);
- :func:`integral_loglik`: the marginal log-likelihood itself for ONE grouping factor
  with one to three effects per level, by a product Gauss-Hermite rule at each level's
  mode scaled by its curvature.

``params`` is a dict: ``beta`` (coefficients of the columns of ``X``, no intercept),
``alpha`` (the ``K - 1`` thresholds at ``X = 0``), ``cov`` (one covariance per factor of
the structure, in its order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import truth_dense
import truth_ordinal
from truth_dense import Structure, Term, psd_factor

LINKS = ("logit", "probit", "cloglog", "loglog")
THRESHOLDS = ("flexible", "equidistant", "symmetric")
_LOG_2PI = float(np.log(2.0 * np.pi))

__all__ = ["Structure", "Term", "OrdinalRows", "laplace_loglik", "integral_loglik"]


@dataclass
class OrdinalRows:
    """Outcomes (class indices ``0 .. K-1``), design without intercept, the link, prior
    weights (``None``: ones) and an offset (``None``: zeros)."""

    X: np.ndarray
    y: np.ndarray
    link: str
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None

    def __post_init__(self):
        if self.link not in LINKS:
            raise ValueError(f"link must be one of {LINKS} (see the module docstring)")
        self.X = np.asarray(self.X, dtype=float).reshape(len(self.y), -1)
        self.y = np.asarray(self.y, dtype=int)
        n = len(self.y)
        self.weights = np.ones(n) if self.weights is None else np.asarray(self.weights, float)
        self.offset = np.zeros(n) if self.offset is None else np.asarray(self.offset, float)

    def eta(self, beta) -> np.ndarray:
        return self.X @ np.asarray(beta, dtype=float) + self.offset


# -- the row log-probabilities and their derivatives in eta ------------------------------


def _link_pieces(x, link):
    """At finite ``x``: ``log f``, ``g = (log f)'``, the hazard ``h = f / (1 - F)`` and
    ``(log h)'``, the reversed hazard ``k = f / F`` and ``(log k)'``, each in a closed
    form that keeps its digits in the tail where it is used (the hazard where ``1 - F``
    is small, the reversed hazard where ``F`` is)."""
    from scipy import special

    if link == "logit":
        a = np.abs(x)
        F, S = special.expit(x), special.expit(-x)
        return -a - 2.0 * np.log1p(np.exp(-a)), -np.tanh(x / 2.0), F, S, S, -F
    if link == "probit":
        lf = -0.5 * x**2 - 0.5 * _LOG_2PI
        h = np.exp(lf - special.log_ndtr(-x))
        k = np.exp(lf - special.log_ndtr(x))
        return lf, -x, h, h - x, k, -x - k
    if link == "cloglog":  # F = 1 - exp(-e^x): h = e^x
        ex = np.exp(np.minimum(x, 700.0))
        small = ex < 1e-8  # k = e^x / expm1(e^x) -> 1 - e^x / 2 as x -> -inf
        k = np.where(small, 1.0 - ex / 2.0, ex / np.expm1(np.where(small, 1.0, ex)))
        dk = np.where(small, -ex / 2.0, 1.0 - ex / -np.expm1(-np.where(small, 1.0, ex)))
        return x - ex, 1.0 - ex, ex, np.ones_like(x), k, dk
    if link == "loglog":  # F = exp(-e^-x): k = e^-x
        emx = np.exp(np.minimum(-x, 700.0))
        small = emx < 1e-8  # the mirror image of cloglog's k
        h = np.where(small, 1.0 - emx / 2.0, emx / np.expm1(np.where(small, 1.0, emx)))
        dh = np.where(small, emx / 2.0, emx / -np.expm1(-np.where(small, 1.0, emx)) - 1.0)
        return -x - emx, emx - 1.0, h, dh, emx, -np.ones_like(x)
    raise ValueError(link)


def row_derivatives(y, eta, alpha, link):
    """``(log p, d log p / d eta, d^2 log p / d eta^2)`` for each row (see the module
    docstring).

    With ``r_u = f(u) / p``, ``r_l = f(l) / p``: ``d log p / d eta = r_l - r_u`` and
    ``d^2 = r_u g(u) - r_l g(l) - (r_u - r_l)^2``. Written that way the terms cancel in
    a tail (cloglog's ``e^{2l}`` for a class far above its thresholds), so each row is
    taken on the side where ``p`` is small, as ``row_logp`` takes it: where both ends
    are in ``F``'s upper tail (``l > 0``), ``p = S(l) (1 - rho)`` with ``rho = S(u) /
    S(l)``, ``r_l = h(l) / (1 - rho)``, ``r_u = h(u) rho / (1 - rho)`` and

        d^2 = -r_l [(log h)'(l) + h(l) rho / (1 - rho)] + r_u (g(u) - r_u + 2 r_l);

    elsewhere the mirror image with ``F``, the reversed hazard ``k`` and ``rho' = F(l) /
    F(u)``: ``r_u = k(u) / (1 - rho')``, ``r_l = k(l) rho' / (1 - rho')`` and

        d^2 = r_u [(log k)'(u) - k(u) rho' / (1 - rho')] + r_l (2 r_u - r_l - g(l)).

    The end classes have ``rho = 0``: ``d^2 = -h'(l)`` and ``k'(u)``.
    """
    y = np.asarray(y, dtype=int)
    alpha = np.asarray(alpha, dtype=float)
    logp = truth_ordinal.row_logp(y, eta, alpha, link)
    pad = np.concatenate([[-np.inf], alpha, [np.inf]])
    upper, lower = pad[y + 1] - eta, pad[y] - eta
    upper, lower = np.broadcast_arrays(upper, lower)
    fin_u, fin_l = np.isfinite(upper), np.isfinite(lower)
    with np.errstate(all="ignore"):
        _, gu, hu, _, ku, dku = _link_pieces(np.where(fin_u, upper, 0.0), link)
        _, gl, hl, dhl, kl, _ = _link_pieces(np.where(fin_l, lower, 0.0), link)
        Fu = np.where(fin_u, truth_ordinal.log_cdf(upper, link), 0.0)
        Fl = np.where(fin_l, truth_ordinal.log_cdf(lower, link), -np.inf)
        Su = np.where(fin_u, truth_ordinal.log_sf(upper, link), -np.inf)
        Sl = np.where(fin_l, truth_ordinal.log_sf(lower, link), 0.0)
        s_side = fin_l & (lower > 0)
        # upper tail: rho = S(u) / S(l)
        rho = np.exp(Su - Sl)
        odds = rho / -np.expm1(Su - Sl)  # rho / (1 - rho)
        rl = hl / -np.expm1(Su - Sl)
        ru = np.where(fin_u, hu * odds, 0.0)
        d1_s = rl - ru
        d2_s = -rl * (dhl + hl * odds) + np.where(fin_u, ru * (gu - ru + 2.0 * rl), 0.0)
        # lower tail: rho' = F(l) / F(u)
        odds_f = np.exp(Fl - Fu) / -np.expm1(Fl - Fu)
        ru_f = np.where(fin_u, ku / -np.expm1(Fl - Fu), 0.0)
        rl_f = np.where(fin_l, kl * odds_f, 0.0)
        d1_f = rl_f - ru_f
        d2_f = np.where(fin_u, ru_f * (dku - ku * odds_f), 0.0) + np.where(
            fin_l, rl_f * (2.0 * ru_f - rl_f - gl), 0.0
        )
    d1 = np.where(s_side, d1_s, d1_f)
    d2 = np.where(s_side, d2_s, d2_f)
    return logp, d1, d2


# -- the Laplace approximation ------------------------------------------------------------


def _ordered(alpha) -> bool:
    return bool(np.all(np.isfinite(alpha)) and np.all(np.diff(alpha) > 0))


def _penalised(data, eta0, alpha, A, u):
    ll, d1, d2 = row_derivatives(data.y, eta0 + A @ u, alpha, data.link)
    w = data.weights
    return float(np.sum(w * ll)) - 0.5 * float(u @ u), w * d1, w * d2


def laplace_loglik(params: dict, data: OrdinalRows, structure: Structure) -> float:
    """The Laplace approximation at ``params``: ``-inf`` for thresholds out of order, NaN
    where the parameters are not finite or a covariance is not positive semi-definite."""
    return _laplace(params, data, structure)[0]


def _design(params, structure):
    """``A = Z Lambda`` without its zero columns, or None for an invalid covariance."""
    covs = [np.asarray(c, dtype=float) for c in params["cov"]]
    if not all(np.all(np.isfinite(c)) for c in covs):
        return None
    for c in covs:
        if np.min(np.linalg.eigvalsh(c)) < -1e-10 * max(float(np.max(np.diag(c))), 1e-300):
            return None
    A = structure.design([psd_factor(c) for c in covs])
    return A[:, np.any(A != 0.0, axis=0)]


def find_mode(params, data, structure, start=None):
    """``(u, g, A, d2)``: the mode of the penalised log-density (its zero-variance
    columns left out), its value, the design ``A`` and the weighted row curvatures there;
    None where it cannot be found. Damped Newton steps from ``start`` (when of the right
    length) or zero, then full steps while they shrink the gradient."""
    beta = np.asarray(params["beta"], dtype=float)
    alpha = np.asarray(params["alpha"], dtype=float)
    if not np.all(np.isfinite(beta)):
        return None
    A = _design(params, structure)
    if A is None:
        return None
    eta0 = data.eta(beta)
    u = np.zeros(A.shape[1])
    if start is not None and len(start) == len(u):
        u = np.array(start, dtype=float)
    eye = np.eye(len(u))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        g, d1, d2 = _penalised(data, eta0, alpha, A, u)
        if not np.isfinite(g):
            if start is not None:
                return find_mode(params, data, structure)
            return None
        for _ in range(300):
            grad = A.T @ d1 - u
            H = A.T @ (-d2[:, None] * A) + eye
            try:
                step = np.linalg.solve(H, grad)
            except np.linalg.LinAlgError:
                return None
            decrement = float(grad @ step)
            if not np.isfinite(decrement):
                return None
            if decrement <= 1e-14 * max(1.0, abs(g)):
                break
            t = 1.0
            for _ in range(60):
                g_new, d1_new, d2_new = _penalised(data, eta0, alpha, A, u + t * step)
                if np.isfinite(g_new) and g_new >= g:
                    break
                t *= 0.5
            else:
                return None
            u = u + t * step
            stalled = t < 1.0 and g_new - g <= 1e-15 * max(1.0, abs(g))
            g, d1, d2 = g_new, d1_new, d2_new
            if stalled:
                break
        grad = A.T @ d1 - u
        for _ in range(8 if len(u) else 0):
            H = A.T @ (-d2[:, None] * A) + eye
            u_new = u + np.linalg.solve(H, grad)
            g_new, d1_new, d2_new = _penalised(data, eta0, alpha, A, u_new)
            grad_new = A.T @ d1_new - u_new
            if not (np.isfinite(g_new) and np.max(np.abs(grad_new)) < np.max(np.abs(grad))):
                break
            u, g, d1, d2, grad = u_new, g_new, d1_new, d2_new, grad_new
    return u, g, A, d2


def conditional_modes(params, data, structure) -> list | None:
    """The random effects ``b = Lambda u`` at the mode, one ``(levels, k)`` array per
    factor (levels in code order); None where the mode cannot be found."""
    found = find_mode(params, data, structure)
    if found is None:
        return None
    factors = [psd_factor(np.asarray(c, dtype=float)) for c in params["cov"]]
    A = structure.design(factors)
    u = np.zeros(A.shape[1])
    u[np.any(A != 0.0, axis=0)] = found[0]
    out, k0 = [], 0
    for term, L in zip(structure.terms, factors):
        m = term.n_levels * term.k
        out.append(u[k0 : k0 + m].reshape(term.n_levels, term.k) @ L.T)
        k0 += m
    return out


def _laplace(params, data, structure, start=None):
    alpha = np.asarray(params["alpha"], dtype=float)
    if not _ordered(alpha):
        return -np.inf, None
    found = find_mode(params, data, structure, start)
    if found is None:
        return np.nan, None
    u, g, A, d2 = found
    H = A.T @ (-d2[:, None] * A) + np.eye(len(u))
    sign, logdet = np.linalg.slogdet(H)
    if sign <= 0 or not np.isfinite(logdet):
        return np.nan, None
    return g - 0.5 * logdet, u


# -- packed parameters ----------------------------------------------------------------------


def threshold_map(threshold: str, K: int) -> np.ndarray:
    """clm's ``J``: ``alpha = J a`` for the free threshold parameters ``a`` (flexible:
    the thresholds; equidistant: first and spacing; symmetric: the centre(s) and the
    spacings, as ``ordinal`` builds them)."""
    m = K - 1
    if threshold == "flexible":
        return np.eye(m)
    if threshold == "equidistant":
        return np.column_stack([np.ones(m), np.arange(m, dtype=float)])
    if threshold == "symmetric":
        # ordinal's makeThresholds: for an odd number of thresholds, central and
        # spacing.k above and below; for an even one, central.1 and central.2 (or a
        # single centre for two thresholds) with the spacings outwards
        if m == 1:
            return np.ones((1, 1))
        if m % 2:  # odd: alpha_c = central, alpha_{c +- k} = central +- spacing.k
            c, n_sp = m // 2, m // 2
            J = np.zeros((m, 1 + n_sp))
            J[:, 0] = 1.0
            for k in range(1, n_sp + 1):
                J[c + k, k] = 1.0
                J[c - k, k] = -1.0
            return J
        half = m // 2
        n_sp = half - 1
        J = np.zeros((m, 2 + n_sp))
        J[half - 1, 0] = 1.0
        J[half, 1] = 1.0
        for k in range(1, n_sp + 1):
            J[half - 1 - k, 0] = 1.0
            J[half - 1 - k, 1 + k] = -1.0
            J[half + k, 1] = 1.0
            J[half + k, 1 + k] = 1.0
        return J
    raise ValueError(threshold)


def pack(params: dict, structure: Structure, J: np.ndarray) -> np.ndarray:
    """``[beta, a, each factor's covariance parameters]`` with ``alpha = J a``
    (``truth_dense``'s packing of a covariance: the Cholesky factor's lower triangle, the
    SDs for ``diag``)."""
    a = np.linalg.lstsq(J, np.asarray(params["alpha"], dtype=float), rcond=None)[0]
    cov_part = []
    for term, cov in zip(structure.terms, params["cov"]):
        cov_part += truth_dense._pack_term(term, np.asarray(cov, dtype=float))
    return np.concatenate([np.asarray(params["beta"], dtype=float), a, cov_part])


def unpack(x: np.ndarray, p: int, structure: Structure, J: np.ndarray) -> dict:
    """The inverse of :func:`pack` for ``p`` coefficients."""
    x = np.asarray(x, dtype=float)
    na = J.shape[1]
    k = p + na
    covs = []
    for term in structure.terms:
        m = truth_dense._n_packed(term)
        covs.append(truth_dense._unpack_term(term, x[k : k + m]))
        k += m
    return {"beta": x[:p], "alpha": J @ x[p : p + na], "cov": covs}


def pack_caps(params: dict, structure: Structure, J: np.ndarray) -> np.ndarray:
    """Each packed coordinate's largest scale for differences: an SD or a Cholesky
    diagonal entry its own size (the log-likelihood is even in it), others unbounded."""
    x = pack(params, structure, J)
    caps = np.full(len(x), np.inf)
    k = len(params["beta"]) + J.shape[1]
    for term in structure.terms:
        q = term.k
        if term.structure is None:
            diagonal = [i * (i + 1) // 2 + i for i in range(q)]
        else:
            diagonal = list(range(q))
        for j in diagonal:
            caps[k + j] = abs(x[k + j])
        k += truth_dense._n_packed(term)
    return caps


class PackedLaplace:
    """:func:`laplace_loglik` of :func:`pack`'s vector, each mode search started at the
    previous call's mode (one mode for these links: the start only saves steps)."""

    def __init__(self, data: OrdinalRows, structure: Structure, J: np.ndarray):
        self.data, self.structure, self.J = data, structure, J
        self.p = data.X.shape[1]
        self._u = None

    def params(self, x) -> dict:
        return unpack(x, self.p, self.structure, self.J)

    def __call__(self, x) -> float:
        value, u = _laplace(self.params(x), self.data, self.structure, self._u)
        if u is not None:
            self._u = u
        return value


# -- the integral itself, for one grouping factor -------------------------------------------


def integral_loglik(
    params: dict, data: OrdinalRows, term: Term, nodes: int = 40, basis=None
) -> float:
    """The marginal log-likelihood of a model with ONE grouping factor (``term``) with one
    to three effects per level: per level ``log int exp(g_j(u)) N(u; 0, I) du`` over the
    directions of positive variance by a product Gauss-Hermite rule of ``nodes`` per
    dimension at the level's mode, ``u = u_j + L_j^{-T} z`` with ``L_j L_j'`` the
    curvature of ``-g_j`` there (the integrand is then a Gaussian times a smooth factor).
    As ``truth_dense.integral_loglik`` for the count families.

    A product rule is not invariant to a rotation of ``u``: with few nodes the rule
    depends on the basis of the effects. ``basis`` (``T``, q x q) puts the nodes as a
    rule on the columns ``Z T`` does (effects ``b = T b'``, ``Lambda'`` the lower
    Cholesky factor of ``T^{-1} Sigma T^{-T}``); the integral itself does not depend
    on it."""
    alpha = np.asarray(params["alpha"], dtype=float)
    if not _ordered(alpha):
        return -np.inf
    cov = np.asarray(params["cov"][0], dtype=float)
    if not np.all(np.isfinite(cov)) or not np.all(np.isfinite(params["beta"])):
        return np.nan
    columns = term.columns
    if basis is not None:
        T = np.asarray(basis, dtype=float)
        cov = np.linalg.solve(T, np.linalg.solve(T, cov).T).T
        columns = columns @ T
    Lam = psd_factor(cov)
    keep = np.any(Lam != 0.0, axis=0)
    M = columns @ Lam[:, keep]  # (n, r)
    r = M.shape[1]
    eta0 = data.eta(params["beta"])
    w = data.weights
    with np.errstate(all="ignore"):
        if r == 0:
            return float(np.sum(w * truth_ordinal.row_logp(data.y, eta0, alpha, data.link)))
    codes = np.asarray(term.codes, dtype=int)
    G = int(codes.max()) + 1
    whitened = Structure([Term(codes, M)])
    found = find_mode({**params, "cov": [np.eye(r)]}, data, whitened)
    if found is None:
        return np.nan
    u_found, _, A_w, _ = found
    loaded = np.any(whitened.design([np.eye(r)]) != 0.0, axis=0)
    u = np.zeros(len(loaded))
    u[loaded] = u_found
    U = u.reshape(G, r)
    with np.errstate(all="ignore"):
        _, _, d2 = row_derivatives(data.y, eta0 + np.sum(M * U[codes], axis=1), alpha, data.link)
    H = np.tile(np.eye(r), (G, 1, 1))
    np.add.at(H, codes, (-w * d2)[:, None, None] * M[:, :, None] * M[:, None, :])
    L = np.linalg.cholesky(H)
    x, wts = np.polynomial.hermite_e.hermegauss(nodes)
    grids = np.meshgrid(*([x] * r), indexing="ij")
    Z = np.stack([gr.ravel() for gr in grids], axis=1)  # (Q, r)
    wgrids = np.meshgrid(*([wts] * r), indexing="ij")
    logw = np.sum(np.log(np.stack([gr.ravel() for gr in wgrids], axis=1)), axis=1)
    logw -= r * 0.5 * _LOG_2PI
    Linv_t = np.swapaxes(np.linalg.inv(L), 1, 2)
    UQ = U[:, None, :] + np.einsum("gab,qb->gqa", Linv_t, Z)  # (G, Q, r)
    log_f = np.zeros((G, len(Z)))
    with np.errstate(all="ignore"):
        # rows in chunks: (n, Q) can be large
        for s in range(0, len(codes), 256):
            rows = slice(s, s + 256)
            eta = eta0[rows, None] + np.einsum("na,nqa->nq", M[rows], UQ[codes[rows]])
            lp = w[rows, None] * truth_ordinal.row_logp(data.y[rows, None], eta, alpha, data.link)
            np.add.at(log_f, codes[rows], lp)
        log_f = log_f - 0.5 * np.sum(UQ**2, axis=2) + 0.5 * np.sum(Z**2, axis=1)[None, :]
        log_f = np.where(np.isfinite(log_f), log_f, -np.inf)
    logdet_L = np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
    top = np.max(log_f + logw[None, :], axis=1, keepdims=True)
    per_level = top[:, 0] + np.log(np.sum(np.exp(log_f + logw[None, :] - top), axis=1))
    return float(np.sum(per_level - logdet_L))
