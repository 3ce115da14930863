"""Constant zero inflation around a count family."""

from __future__ import annotations

import numpy as np
from scipy import special

from ..blocks import ZERO_INFLATION
from .base import Family, _weighted


class ZeroInflated(Family):
    """Constant zero-inflation around a count family; extra = [base..., logit pi].

    P(Y = 0) = pi + (1 - pi) f(0), P(Y = k) = (1 - pi) f(k) for k > 0.
    The log-density of a zero need not be concave in ``eta``; the Laplace
    Hessian uses its exact curvature all the same, as glmmTMB does.
    """

    zero_inflated = True
    zero_formula = "~1"
    log_concave = False  # a zero's log-density is not concave in eta

    def __init__(self, base):
        self.base = base
        self.name = "zi_" + base.name
        self.r_name = base.r_name
        self.link = base.link
        self.blocks = tuple(base.blocks) + (ZERO_INFLATION,)

    def mean_curvature(self, y, trials, weights) -> float:
        return self.base.mean_curvature(y, trials, weights)

    def sentence_name(self) -> str:
        return "zero-inflated " + self.base.sentence_name()

    def mean_derivative(self, eta, extra=()):
        _, pi, _ = self._split(extra)
        return (1.0 - pi) * self.base.mean_derivative(eta)

    def mixture_variance(self, mu_rows, extra) -> float:
        """Mean over rows of the variance R's ``insight::get_variance`` uses for a
        zero-inflated count model (its ``mu_rows``: conditional count means)."""
        base_extra, p, _ = self._split(extra)
        if self.base.name == "poisson":
            pvar = (1.0 - p) * (mu_rows + p * mu_rows**2)
        elif self.base.name == "negbin":
            inv_theta = 1.0 / np.exp(base_extra[0])
            pvar = (1.0 - p) * mu_rows * (1.0 + mu_rows * inv_theta) + mu_rows**2 * (p**2 + p)
        else:
            raise ValueError(
                f"the latent-scale variance of a zero-inflated {self.base.r_name} model is not "
                "available (R's insight defines it for Poisson and nbinom2)."
            )
        return float(np.mean(pvar))

    def _split(self, extra):
        extra = np.asarray(extra, dtype=float)
        return extra[:-1], special.expit(extra[-1]), extra[-1]

    def constant(self, y, trials):
        return self.base.constant(y, trials)

    def derivs(self, y, eta, trials, weights, extra, const=None):
        base_extra, pi, logit_pi = self._split(extra)
        d = self.base.derivs(y, eta, trials, None, base_extra, const)
        log1m_pi = -np.logaddexp(0.0, logit_pi)
        log_pi = -np.logaddexp(0.0, -logit_pi)
        a, a1, a2, a3 = self.base.log_p0(eta, base_extra)
        zero = y == 0
        lz = np.logaddexp(log_pi, log1m_pi + a)
        # r: posterior probability that a zero came from the count part
        r = np.exp(log1m_pi + a - lz)
        r1 = r * (1.0 - r) * a1
        d1z = r * a1
        d2z = r * a2 + r * (1.0 - r) * a1**2
        d3z = r1 * a2 + r * a3 + r1 * (1.0 - 2.0 * r) * a1**2 + 2.0 * r * (1.0 - r) * a1 * a2
        loglik = np.where(zero, lz, log1m_pi + d.loglik)
        d1 = np.where(zero, d1z, d.d1)
        w = np.where(zero, -d2z, d.w)
        w3 = np.where(zero, -d3z, d.w3)
        return _weighted(weights, loglik, d1, w, w3)

    def mean(self, eta, extra):
        _, pi, _ = self._split(extra)
        return (1.0 - pi) * self.base.mean(eta)

    def count_mean(self, eta, extra):
        return self.base.mean(eta)

    def variance(self, mu, trials, extra):
        base_extra, pi, _ = self._split(extra)
        m = mu / (1.0 - pi)
        vb = self.base.variance(m, trials, base_extra)
        return (1.0 - pi) * (vb + m**2) - mu**2

    def unit_deviance(self, y, mu, trials, extra):
        # deviance against the saturated count model (used for D^2 only)
        base_extra, pi, _ = self._split(extra)
        return self.base.unit_deviance(y, mu, trials, base_extra)

    def sample(self, mu, trials, extra, rng):
        base_extra, pi, _ = self._split(extra)
        m = mu / (1.0 - pi)
        draw = self.base.sample(m, trials, base_extra, rng)
        return np.where(rng.random(np.shape(mu)) < pi, 0.0, draw)

    def pmf(self, k, mu, extra):
        base_extra, pi, _ = self._split(extra)
        m = mu / (1.0 - pi)
        p = (1.0 - pi) * self.base.pmf(k, m, base_extra)
        return p + pi * (np.asarray(k) == 0)

    def cdf(self, y, mu, trials, extra):
        base_extra, pi, _ = self._split(extra)
        m = mu / (1.0 - pi)
        return pi + (1.0 - pi) * self.base.cdf(y, m, trials, base_extra)
