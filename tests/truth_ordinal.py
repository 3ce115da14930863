"""Reference log-likelihoods of cumulative link mixed models, without the library's engine.

One grouping factor with a scalar random intercept ``b_g ~ N(0, sigma^2)`` and ``K``
ordered classes ``0 .. K-1``:

.. math::

    P(Y_i \\le k \\mid b) = F(\\alpha_k - x_i^\\top \\beta - b), \\qquad
    \\log L = \\sum_g \\log \\int \\prod_{i \\in g} P(Y_i = y_i \\mid b) \\,
        \\phi(b; 0, \\sigma^2) \\, db

with the thresholds ``alpha`` at ``x = 0`` and ``F`` one of ordinal's links (logit,
probit, cloglog, loglog, cauchit). Only numpy and scipy are used: nothing here imports
``sklearn_glmm``.

- :func:`row_logp`: ``log P(Y = y)`` from ``log F`` and ``log(1 - F)`` of both ends of the
  class, the difference taken where it does not cancel;
- :func:`laplace_loglik`: the Laplace approximation at each group's highest mode (damped
  Newton steps on finite differences from the best points of a grid), with the
  curvature by a five-point difference;
- :func:`agq_loglik`: adaptive Gauss-Hermite quadrature with a given number of nodes at
  the same modes;
- :func:`marginal_loglik`: the integral by the trapezoid rule over +-14 curvature SDs
  around each mode and +-12 prior SDs.

``params`` is a dict: ``beta`` (coefficients of the columns of ``X``; no intercept),
``alpha`` (the ``K - 1`` increasing thresholds) and ``sigma`` (0 allowed).
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite import hermgauss
from scipy import integrate, special

LINKS = ("logit", "probit", "cloglog", "loglog", "cauchit")
_LOG_2PI = float(np.log(2.0 * np.pi))


def _log1mexp(a):
    """``log(1 - exp(a))`` for ``a < 0``."""
    a = np.minimum(a, -1e-300)
    return np.where(a > -np.log(2.0), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def log_cdf(x, link):
    """``log F(x)``."""
    x = np.asarray(x, dtype=float)
    if link == "logit":
        return -np.logaddexp(0.0, -x)
    if link == "probit":
        return special.log_ndtr(x)
    if link == "cloglog":  # F = 1 - exp(-exp(x))
        return _log1mexp(-np.exp(np.minimum(x, 700.0)))
    if link == "loglog":  # F = exp(-exp(-x))
        return -np.exp(np.minimum(-x, 700.0))
    if link == "cauchit":  # F = 1/2 + atan(x) / pi
        neg = np.arctan(-1.0 / np.minimum(x, -1e-300)) / np.pi
        pos = -np.arctan(1.0 / np.maximum(x, 1e-300)) / np.pi
        return np.where(x < 0, np.log(neg), np.log1p(pos))
    raise ValueError(link)


def log_sf(x, link):
    """``log(1 - F(x))``."""
    x = np.asarray(x, dtype=float)
    if link == "logit":
        return -np.logaddexp(0.0, x)
    if link == "probit":
        return special.log_ndtr(-x)
    if link == "cloglog":
        return -np.exp(np.minimum(x, 700.0))
    if link == "loglog":
        return _log1mexp(-np.exp(np.minimum(-x, 700.0)))
    if link == "cauchit":  # symmetric: 1 - F(x) = F(-x)
        return log_cdf(-x, link)
    raise ValueError(link)


def row_logp(y, eta, alpha, link):
    """``log P(Y = y)`` for class indices ``y`` at linear predictors ``eta`` (any shape
    that broadcasts with ``y``)."""
    y = np.asarray(y, dtype=int)
    K = len(alpha) + 1
    pad = np.concatenate([[-np.inf], alpha, [np.inf]])
    upper = pad[y + 1] - eta
    lower = pad[y] - eta
    with np.errstate(all="ignore"):
        Fu, Fl = log_cdf(upper, link), log_cdf(lower, link)
        Su, Sl = log_sf(upper, link), log_sf(lower, link)
        # F(u) - F(l) where both are small, S(l) - S(u) where both are near 1
        mid = np.where(lower <= 0, Fu + _log1mexp(Fl - Fu), Sl + _log1mexp(Su - Sl))
        return np.where(y == 0, Fu, np.where(y == K - 1, Sl, mid))


class OrdinalData:
    """Outcomes (class indices), design without intercept, level codes ``0 .. G-1``."""

    def __init__(self, X, y, groups, link):
        self.X = np.asarray(X, dtype=float)
        self.y = np.asarray(y, dtype=int)
        self.groups = np.asarray(groups, dtype=int)
        self.link = link
        self.G = int(self.groups.max()) + 1
        # the last modes, a start for the next search when keep_warm is set
        self.keep_warm, self.warm = False, None

    def level_sums(self, v):
        """Per level sums of ``v`` (rows, or rows by points)."""
        if v.ndim == 1:
            return np.bincount(self.groups, v, self.G)
        out = np.zeros((self.G, v.shape[1]))
        np.add.at(out, self.groups, v)
        return out


def _h(data, eta0, alpha, sigma, b):
    """Each level's ``log prod p(y | b) - b^2 / (2 sigma^2)`` at ``b`` (G,) or (G, M)."""
    if b.ndim == 1:
        ll = data.level_sums(row_logp(data.y, eta0 + b[data.groups], alpha, data.link))
    else:
        rows = row_logp(data.y[:, None], eta0[:, None] + b[data.groups], alpha, data.link)
        ll = data.level_sums(rows)
    return ll - b**2 / (2.0 * sigma**2)


def group_modes(data, params, max_iter=100):
    """``(modes, curvatures)``: each level's highest mode of ``h`` and ``-h''`` there.

    The Newton steps start at the last modes found for ``data`` when there are any
    (``data.warm``: many evaluations near one point, as a search for a better optimum
    makes), else at the best point of a grid; for the cauchit, whose ``h`` can have
    several modes, at each of the grid's three highest local maxima, the highest mode
    found kept."""
    beta, alpha, sigma = _unpacked(params)
    eta0 = data.X @ beta
    if data.warm is not None:
        starts = [data.warm.copy()]
    else:
        grid = np.linspace(-8.0, 8.0, 321) * max(sigma, 0.05)
        H = _h(data, eta0, alpha, sigma, np.broadcast_to(grid, (data.G, len(grid))).copy())
        peak = np.zeros_like(H, dtype=bool)
        peak[:, 1:-1] = (H[:, 1:-1] >= H[:, :-2]) & (H[:, 1:-1] >= H[:, 2:])
        peak[np.arange(data.G), np.argmax(H, axis=1)] = True
        ranked = np.argsort(np.where(peak, H, -np.inf), axis=1)[:, ::-1]
        n_starts = 3 if data.link == "cauchit" else 1
        starts = []
        for k in range(n_starts):
            idx = np.where(peak[np.arange(data.G), ranked[:, k]], ranked[:, k], ranked[:, 0])
            starts.append(grid[idx])
    best_b, best_h = None, None
    for b in starts:
        b = _newton(data, eta0, alpha, sigma, b, max_iter)
        h = _h(data, eta0, alpha, sigma, b)
        if best_b is None:
            best_b, best_h = b, h
        else:
            better = h > best_h
            best_b, best_h = np.where(better, b, best_b), np.where(better, h, best_h)
    b = best_b
    if data.keep_warm and np.all(np.isfinite(b)):
        data.warm = b.copy()
    dd = 1e-3 * min(max(sigma, 1e-2), 1.0)
    H5 = _h(data, eta0, alpha, sigma, b[:, None] + dd * np.arange(-2, 3)[None, :])
    c = -(-H5[:, 0] + 16 * H5[:, 1] - 30 * H5[:, 2] + 16 * H5[:, 3] - H5[:, 4]) / (12 * dd**2)
    return b, c


def _newton(data, eta0, alpha, sigma, b, max_iter):
    """Damped Newton steps on finite differences from ``b`` (every level at once)."""
    # difference steps on the scale of the data's features (a unit of the latent scale)
    # or of the prior when that is narrower
    d = 1e-5 * min(max(sigma, 1e-2), 1.0)
    for _ in range(max_iter):
        H3 = _h(data, eta0, alpha, sigma, np.stack([b - d, b, b + d], axis=1))
        g1 = (H3[:, 2] - H3[:, 0]) / (2.0 * d)
        g2 = (H3[:, 2] - 2.0 * H3[:, 1] + H3[:, 0]) / d**2
        step = np.where(g2 < 0, -g1 / np.minimum(g2, -1e-12), np.sign(g1) * 0.1 * sigma)
        step = np.clip(step, -2.0 * sigma - 1.0, 2.0 * sigma + 1.0)
        h0 = H3[:, 1]
        for _ in range(40):  # halve where h does not rise
            worse = ~(_h(data, eta0, alpha, sigma, b + step) >= h0 - 1e-13)
            if not worse.any():
                break
            step = np.where(worse, 0.5 * step, step)
        b = b + step
        if np.max(np.abs(step)) < 1e-11 * max(sigma, 1.0):
            break
    return b


def _unpacked(params):
    beta = np.asarray(params["beta"], dtype=float)
    alpha = np.asarray(params["alpha"], dtype=float)
    return beta, alpha, float(params["sigma"])


def _ordered(alpha) -> bool:
    return bool(np.all(np.isfinite(alpha)) and np.all(np.diff(alpha) > 0))


def _without_integral(params, data):
    """The log-likelihood where no integral is needed: ``-inf`` for thresholds out of
    order, the model without the random intercept at ``sigma = 0``; else None."""
    beta, alpha, sigma = _unpacked(params)
    if not _ordered(alpha):
        return -np.inf
    if sigma <= 0.0:
        return float(np.sum(row_logp(data.y, data.X @ beta, alpha, data.link)))
    return None


def agq_loglik(params, data, n_agq: int) -> float:
    """Adaptive Gauss-Hermite quadrature with ``n_agq`` nodes (1: the Laplace value)."""
    trivial = _without_integral(params, data)
    if trivial is not None:
        return trivial
    beta, alpha, sigma = _unpacked(params)
    b, c = group_modes(data, params)
    if np.any(~(c > 0)):
        return -np.inf
    z, w = hermgauss(n_agq)
    scale = np.sqrt(2.0 / c)
    H = _h(data, data.X @ beta, alpha, sigma, b[:, None] + scale[:, None] * z[None, :])
    top = H.max(axis=1)
    inner = np.log(np.sum(w * np.exp(z**2) * np.exp(H - top[:, None]), axis=1))
    log_int = top + inner + np.log(scale) - 0.5 * (_LOG_2PI + 2.0 * np.log(sigma))
    return float(np.sum(log_int))


def laplace_loglik(params, data) -> float:
    """The Laplace approximation of the marginal log-likelihood."""
    return agq_loglik(params, data, 1)


def min_curvature(params, data) -> float:
    """The smallest ``sigma^2 (-h'')`` over the levels (1 for a level without data)."""
    _, _, sigma = _unpacked(params)
    if sigma <= 0.0:
        return 1.0
    _, c = group_modes(data, params)
    return float(np.min(c) * sigma**2)


def marginal_loglik(params, data) -> float:
    """The integral itself: the trapezoid rule on 4,001 points over +-14 curvature SDs
    around each mode merged with 4,001 over +-12 prior SDs (a level whose outcomes all
    sit in an end class has a plateau as wide as the prior)."""
    trivial = _without_integral(params, data)
    if trivial is not None:
        return trivial
    beta, alpha, sigma = _unpacked(params)
    b, c = group_modes(data, params)
    t = np.linspace(-14.0, 14.0, 4001)
    half = 1.0 / np.sqrt(np.maximum(c, 1e-12))
    near = b[:, None] + half[:, None] * t[None, :]
    wide = np.broadcast_to(np.linspace(-12.0, 12.0, 4001) * sigma, near.shape)
    pts = np.sort(np.concatenate([near, wide], axis=1), axis=1)
    H = _h(data, data.X @ beta, alpha, sigma, pts)
    top = H.max(axis=1)
    integral = integrate.trapezoid(np.exp(H - top[:, None]), pts, axis=1)
    log_int = top + np.log(integral) - 0.5 * (_LOG_2PI + 2.0 * np.log(sigma))
    return float(np.sum(log_int))
