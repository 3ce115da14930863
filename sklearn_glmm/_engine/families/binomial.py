"""Binomial outcomes: successes out of trials (binary when every row has one trial)."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ..links import LogitLink
from .base import Family, _log_choose, _weighted


class Binomial(Family):
    """Binomial outcome (successes out of ``trials``) with a logit link."""

    name = "binomial"
    r_name = "binomial"
    long_name = "binomial"
    link = LogitLink()
    has_trials = True
    log_concave = True  # w >= 0 everywhere

    def mean_curvature(self, y, trials, weights) -> float:
        """Typical curvature of one row's log-density: trials p (1 - p)."""
        wsum = np.sum(weights)
        if not wsum > 0:
            return 1.0
        p = np.sum(weights * y) / max(np.sum(weights * trials), 1e-300)
        return float(np.sum(weights * trials) / wsum * p * (1.0 - p))

    def constant(self, y, trials):
        """The part of log p(y | eta) free of parameters: log C(trials, y)."""
        if trials is None:  # one trial per row
            return 0.0
        return _log_choose(trials, y)

    def derivs(self, y, eta, trials, weights, extra=(), const=None):
        """``trials=None`` means one trial per row (binary outcomes)."""
        # with e = exp(-|eta|) in (0, 1]: expit, mu (1 - mu) and log(1 + exp(eta))
        # are free of overflow and cancellation on both sides of 0
        e = np.exp(-np.abs(eta))
        r = 1.0 / (1.0 + e)
        mu = np.where(eta >= 0.0, r, e * r)
        v = e * r * r
        log1pexp = np.log1p(e) + np.maximum(eta, 0.0)
        const = self.constant(y, trials) if const is None else const
        if trials is None:
            loglik = y * eta - log1pexp + const
            d1, w = y - mu, v
        else:
            loglik = y * eta - trials * log1pexp + const
            d1, w = y - trials * mu, trials * v
        w3 = w * (1.0 - 2.0 * mu)
        return _weighted(weights, loglik, d1, w, w3)

    def mean(self, eta, extra=()):
        return special.expit(eta)

    def variance(self, mu, trials, extra=()):
        return trials * mu * (1.0 - mu)

    def unit_deviance(self, y, mu, trials, extra=()):
        p = np.divide(y, trials, out=np.zeros_like(mu), where=trials > 0)
        a = special.xlogy(y, np.divide(p, mu, out=np.ones_like(mu), where=p > 0))
        b = special.xlogy(trials - y, np.divide(1 - p, 1 - mu, out=np.ones_like(mu), where=p < 1))
        return 2.0 * (a + b)

    def sample(self, mu, trials, extra, rng):
        return rng.binomial(trials.astype(np.int64), np.clip(mu, 0.0, 1.0)).astype(float)

    def cdf(self, y, mu, trials, extra=()):
        return stats.binom.cdf(y, trials, mu)
