"""Poisson counts with a log link."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ..links import LogLink
from .base import Family, _exp, _exp_mean, _large_count_zeros, _log_y, _mu_minus_y, _weighted


class Poisson(Family):
    """Poisson outcome with a log link."""

    name = "poisson"
    r_name = "poisson"
    long_name = "Poisson"
    link = LogLink()
    log_concave = True  # w >= 0 everywhere

    def constant(self, y, trials):
        """Parameter-free terms: -log y!, log y and the zero indicator for large counts
        (``log y`` only with them: the log-density of small counts does not read it)."""
        zero = _large_count_zeros(y)
        return -special.gammaln(y + 1.0), None if zero is None else _log_y(y), zero

    def derivs(self, y, eta, trials, weights, extra=(), const=None):
        mu = _exp(eta)
        neg_log_fact, log_y, zero = self.constant(y, trials) if const is None else const
        if zero is None:
            loglik = y * eta  # in place, the same order of operations: few temporaries
            loglik -= mu
            loglik += neg_log_fact
        else:
            # large counts: y log(mu / y) - (mu - y) + log p(y | y), free of the cancellation
            # of y * eta and mu (each ~1e9 when y = 1e8, their difference O(1))
            sat = y * log_y - y + neg_log_fact
            loglik = y * (eta - log_y) - _mu_minus_y(y, eta, log_y, zero, mu) + sat
        return _weighted(weights, loglik, y - mu, mu, mu)

    has_fourth_derivative = True

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4 = mu`` (every derivative of ``mu = exp(eta)`` is ``mu``)."""
        mu = _exp(eta)
        return mu if weights is None else weights * mu

    def log_p0(self, eta, extra=()):
        """log P(Y = 0 | eta) and its first three eta-derivatives."""
        mu = _exp(eta)
        return -mu, -mu, -mu, -mu

    def log_p0_fourth(self, eta, extra=()):
        """The fourth eta-derivative of :meth:`log_p0` (a zero-inflated model's fourth
        derivative reads it): ``-mu``."""
        return -_exp(eta)

    def log_zero_rate(self, eta, extra=()):
        """``log s`` for ``s = -log P(Y = 0) = mu`` and its eta-derivatives (zero-truncation)."""
        eta = np.asarray(eta, dtype=float)
        return eta, np.ones_like(eta), np.zeros_like(eta), np.zeros_like(eta)

    def log_zero_rate_fourth(self, eta, extra=()):
        """The fourth eta-derivative of :meth:`log_zero_rate`'s ``log s = eta``: 0."""
        return np.zeros(np.shape(eta))

    def mean(self, eta, extra=()):
        return _exp_mean(eta)

    def variance(self, mu, trials, extra=()):
        return mu

    def unit_deviance(self, y, mu, trials, extra=()):
        return 2.0 * (
            special.xlogy(y, np.divide(y, mu, out=np.ones_like(mu), where=y > 0)) - (y - mu)
        )

    def sample(self, mu, trials, extra, rng):
        return rng.poisson(mu).astype(float)

    def pmf(self, k, mu, extra=()):
        return stats.poisson.pmf(k, mu)

    def cdf(self, y, mu, trials, extra=()):
        return stats.poisson.cdf(y, mu)

    def sf(self, y, mu, extra=()):
        """P(Y > y)."""
        return stats.poisson.sf(y, mu)
