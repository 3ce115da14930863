"""Negative binomial counts with linear variance (NB1: Var = mu (1 + phi)), log link.

glmmTMB's ``nbinom1``: size ``k = mu / phi`` and probability ``1 / (1 + phi)``, so

.. math::

    \\log p(y \\mid \\eta) = \\log\\Gamma(y + k) - \\log\\Gamma(k) - \\log y!
        - k \\log(1 + \\phi) + y \\log\\frac{\\phi}{1 + \\phi},
    \\qquad k = e^{\\eta} / \\phi.

The mean enters through ``k`` inside the log-gamma terms, so the derivatives in
``eta`` involve the digamma function and its derivatives; the log-density need not
be concave in ``eta``.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ..blocks import NB1_PHI
from ..links import LogLink
from .base import _ETA_MAX, Family, _exp, _lgamma_ratio, _weighted


class NegativeBinomial1(Family):
    """NB1 outcome (Var = mu (1 + phi)) with a log link; extra = [log phi]."""

    name = "negbin1"
    r_name = "nbinom1"
    long_name = "negative binomial (NB1)"
    link = LogLink()
    log_concave = False
    blocks = (NB1_PHI,)

    def constant(self, y, trials):
        return -special.gammaln(y + 1.0)

    def derivs(self, y, eta, trials, weights, extra, const=None):
        phi = np.exp(extra[0])
        k = np.exp(np.minimum(eta, _ETA_MAX)) / phi
        neg_log_fact = self.constant(y, trials) if const is None else const
        log1p_phi = np.log1p(phi)
        loglik = _lgamma_ratio(y, k) + neg_log_fact - k * log1p_phi + y * (extra[0] - log1p_phi)
        # A(k) = psi(y + k) - psi(k) - log(1 + phi) and its k-derivatives
        p0, p1, p2 = _polygamma_differences(y, k)
        a0, a1, a2 = p0 - log1p_phi, p1, p2
        d1 = k * a0
        d2 = k * a0 + k * k * a1
        d3 = k * a0 + 3.0 * k * k * a1 + k**3 * a2
        return _weighted(weights, loglik, d1, -d2, -d3)

    def log_p0(self, eta, extra):
        """log P(Y = 0 | eta) = -k log(1 + phi) and its eta-derivatives (all equal)."""
        phi = np.exp(extra[0])
        a = -np.exp(np.minimum(eta, _ETA_MAX)) / phi * np.log1p(phi)
        return a, a, a, a

    def mean(self, eta, extra=()):
        return _exp(eta)

    def variance(self, mu, trials, extra):
        return mu * (1.0 + np.exp(extra[0]))

    def unit_deviance(self, y, mu, trials, extra):
        eta_sat = np.log(np.where(y > 0, y, 1.0))
        sat = self.derivs(y, eta_sat, trials, None, extra).loglik
        fit = self.derivs(y, np.log(mu), trials, None, extra).loglik
        return 2.0 * np.where(y > 0, sat - fit, -fit)

    def sample(self, mu, trials, extra, rng):
        phi = np.exp(extra[0])
        lam = rng.gamma(mu / phi, phi)
        return rng.poisson(lam).astype(float)

    def pmf(self, k, mu, extra):
        phi = np.exp(extra[0])
        return stats.nbinom.pmf(k, mu / phi, 1.0 / (1.0 + phi))

    def cdf(self, y, mu, trials, extra):
        phi = np.exp(extra[0])
        return stats.nbinom.cdf(y, mu / phi, 1.0 / (1.0 + phi))


# above this size the polygamma differences come from their asymptotic series
_LARGE_SIZE = 1e5


def _polygamma_differences(y, k):
    """``psi_m(y + k) - psi_m(k)`` for m = 0, 1, 2, free of cancellation for large ``k``.

    As phi -> 0 (the Poisson limit) the size ``k = mu / phi`` grows without bound and
    each difference is a small number computed from two large ones. There the
    asymptotic series of the polygamma functions are differenced term by term
    (each term's difference in closed form); elsewhere scipy's functions are used.
    """
    k = np.asarray(k, dtype=float)
    y = np.broadcast_to(np.asarray(y, dtype=float), k.shape)
    big = k > _LARGE_SIZE
    kd = np.where(big, _LARGE_SIZE, k)  # the direct formulas only where they are accurate
    d0 = special.digamma(y + kd) - special.digamma(kd)
    d1 = special.polygamma(1, y + kd) - special.polygamma(1, kd)
    d2 = special.polygamma(2, y + kd) - special.polygamma(2, kd)
    if big.any():
        kb, yb = k[big], y[big]
        s = kb + yb
        # 1/s^n - 1/k^n = -(s^n - k^n) / (s k)^n, with s^n - k^n expanded in y
        r1 = -yb / (s * kb)
        r2 = -yb * (2.0 * kb + yb) / (s * kb) ** 2
        r3 = -yb * (3.0 * kb * kb + 3.0 * kb * yb + yb * yb) / (s * kb) ** 3
        c4 = 4.0 * kb**3 + 6.0 * kb * kb * yb + 4.0 * kb * yb * yb + yb**3
        r4 = -yb * c4 / (s * kb) ** 4
        # psi(x) ~ log x - 1/(2x) - 1/(12x^2) + 1/(120x^4)
        d0[big] = np.log1p(yb / kb) - r1 / 2.0 - r2 / 12.0 + r4 / 120.0
        # psi1(x) ~ 1/x + 1/(2x^2) + 1/(6x^3)
        d1[big] = r1 + r2 / 2.0 + r3 / 6.0
        # psi2(x) ~ -1/x^2 - 1/x^3 - 1/(2x^4)
        d2[big] = -r2 - r3 - r4 / 2.0
    return d0, d1, d2
