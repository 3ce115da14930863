"""Outcome distributions on the linear-predictor scale.

Every family exposes the conditional log-density of ``y`` given the linear
predictor ``eta`` together with its first three derivatives in ``eta``. The
Laplace approximation needs the exact second derivative (the curvature ``w``)
and its analytic gradient needs the third (``w3 = dw/deta``).

A family holds its link by composition (:mod:`sklearn_glmm._links`) and declares
its own parameters as blocks (:mod:`sklearn_glmm._blocks`): ``log theta`` for the
negative binomial, ``logit pi`` for zero inflation, on an unconstrained scale and
optimised jointly with the fixed effects and covariance parameters. Code outside
the families asks the family (its link, its blocks, ``has_trials``, ``r_name``)
and never compares family names.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import special, stats

from ._blocks import NB_THETA, ZERO_INFLATION, ParameterBlock
from ._links import Link, LogitLink, LogLink

_ETA_MAX = 700.0  # exp(700) is finite in float64; beyond it mu overflows
_GH_Z, _GH_W = hermegauss(32)
_GH_W = _GH_W / _GH_W.sum()


class Derivs(NamedTuple):
    """Per-observation log-density and its derivatives in ``eta``.

    ``loglik`` is log p(y | eta); ``d1`` its first derivative; ``w`` minus the
    second derivative (the curvature entering the Laplace Hessian); ``w3`` the
    derivative of ``w``. All are already multiplied by the prior weights.
    """

    loglik: np.ndarray
    d1: np.ndarray
    w: np.ndarray
    w3: np.ndarray


def _weighted(weights, loglik, d1, w, w3) -> Derivs:
    """Apply prior weights (``None`` means all ones and skips the products)."""
    if weights is None:
        return Derivs(loglik, d1, w, w3)
    return Derivs(weights * loglik, weights * d1, weights * w, weights * w3)


def _exp(eta):
    # only overflow needs guarding: exp underflows to 0 gracefully
    return np.exp(np.minimum(eta, _ETA_MAX))


class Family:
    """What every family declares; the extra-parameter views are made from its blocks.

    Attributes
    ----------
    name : str
        Internal name (``"binomial"``, ``"poisson"``, ``"negbin"``, ``"zi_negbin"``).
    r_name : str
        The family's name in R (glmmTMB's ``nbinom2``, ``binomial``, ``poisson``).
    link : Link
        The link function object.
    blocks : tuple of ParameterBlock
        The family's own parameters, in the order the optimiser sees them.
    has_trials : bool
        Outcomes are successes out of trials (bounded): binomial.
    zero_inflated : bool
        A zero-inflation probability is part of the model.
    log_concave : bool
        The log-density is concave in ``eta`` everywhere (``w >= 0``).
    """

    name = ""
    r_name = ""
    link: Link = LogLink()
    blocks: tuple[ParameterBlock, ...] = ()
    has_trials = False
    zero_inflated = False
    log_concave = True

    @property
    def n_extra(self) -> int:
        return len(self.blocks)

    @property
    def extra_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    @property
    def extra_bounds(self) -> tuple[tuple[float, float], ...]:
        return tuple(b.bounds for b in self.blocks)

    @property
    def extra_flat_side(self) -> tuple:
        return tuple(b.flat_side for b in self.blocks)

    def default_extra(self) -> np.ndarray:
        return np.array([b.start for b in self.blocks], dtype=float)

    def mean_curvature(self, y, trials, weights) -> float:
        """Typical curvature of one row's log-density at the mean outcome (for scaling)."""
        wsum = np.sum(weights)
        if not wsum > 0:
            return 1.0
        return float(np.sum(weights * y) / wsum)

    long_name = ""

    def describe(self) -> str:
        """``binomial  ( logit )``, as R's summary prints the family."""
        return f"{self.r_name}  ( {self.link.name} )"

    def sentence_name(self) -> str:
        """The family in words, for reports: ``negative binomial (NB2, log link)``."""
        inner = self.long_name.partition(" (")
        detail = f"{inner[2][:-1]}, " if inner[1] else ""
        return f"{inner[0]} ({detail}{self.link.name} link)"

    def mean_derivative(self, eta, extra=()):
        """``d E[Y] / d eta`` per trial."""
        return self.link.inverse_derivative(eta)

    def mean_over_normal(self, eta, var, extra=()):
        """E[Y] per trial when ``eta`` is normal with mean ``eta`` and variance ``var``.

        Closed form for the log link (``exp(eta + var / 2)``), 32-node Gauss-Hermite
        otherwise.
        """
        eta = np.asarray(eta, dtype=float)
        var = np.broadcast_to(np.asarray(var, dtype=float), eta.shape)
        if isinstance(self.link, LogLink):
            return self.mean(eta + var / 2.0, extra)
        if np.all(var == 0):
            return self.mean(eta, extra)
        nodes = eta[..., None] + np.sqrt(var)[..., None] * _GH_Z
        return self.mean(nodes, extra) @ _GH_W


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


class Poisson(Family):
    """Poisson outcome with a log link."""

    name = "poisson"
    r_name = "poisson"
    long_name = "Poisson"
    link = LogLink()
    log_concave = True  # w >= 0 everywhere

    def constant(self, y, trials):
        """Parameter-free terms: -log y!, log y and the zero indicator for large counts."""
        return -special.gammaln(y + 1.0), _log_y(y), _large_count_zeros(y)

    def derivs(self, y, eta, trials, weights, extra=(), const=None):
        mu = _exp(eta)
        neg_log_fact, log_y, zero = self.constant(y, trials) if const is None else const
        if zero is None:
            loglik = y * eta - mu + neg_log_fact
        else:
            # large counts: y log(mu / y) - (mu - y) + log p(y | y), free of the cancellation
            # of y * eta and mu (each ~1e9 when y = 1e8, their difference O(1))
            sat = y * log_y - y + neg_log_fact
            loglik = y * (eta - log_y) - _mu_minus_y(y, eta, log_y, zero, mu) + sat
        return _weighted(weights, loglik, y - mu, mu, mu)

    def log_p0(self, eta, extra=()):
        """log P(Y = 0 | eta) and its first three eta-derivatives."""
        mu = _exp(eta)
        return -mu, -mu, -mu, -mu

    def mean(self, eta, extra=()):
        return _exp(eta)

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


class NegativeBinomial2(Family):
    """NB2 outcome (Var = mu + mu^2 / theta) with a log link; extra = [log theta].

    The curvature ``w`` is the exact negative second derivative of the
    log-density (glmmTMB's choice), not the Fisher weight lme4 uses.
    """

    name = "negbin"
    r_name = "nbinom2"
    long_name = "negative binomial (NB2)"
    link = LogLink()
    log_concave = True  # w >= 0 everywhere
    blocks = (NB_THETA,)

    def constant(self, y, trials):
        """Parameter-free terms: -log y!, log y and the zero indicator for large counts."""
        return -special.gammaln(y + 1.0), _log_y(y), _large_count_zeros(y)

    def __init__(self):
        self._memo = None  # (theta, y, log Gamma(y + theta) - log Gamma(theta))

    def _lgamma_ratio(self, y, theta):
        """:func:`_lgamma_ratio`, remembered for the last (theta, y): it is the costliest
        term and the conditional-mode iterations ask for it many times at one theta."""
        memo = self._memo
        if memo is not None and memo[0] == theta and memo[1] is y:
            return memo[2]
        val = _lgamma_ratio(y, theta)
        self._memo = (theta, y, val)
        return val

    def __getstate__(self):
        return {k: v for k, v in vars(self).items() if k != "_memo"} | {"_memo": None}

    def derivs(self, y, eta, trials, weights, extra, const=None):
        theta = np.exp(extra[0])
        eta = np.minimum(eta, _ETA_MAX)  # beyond it mu would overflow
        mu = np.exp(eta)
        tm = theta + mu
        neg_log_fact, log_y, zero = self.constant(y, trials) if const is None else const
        # the ratios s, r in [0, 1] keep every product finite however large mu is
        s, r = theta / tm, mu / tm
        if zero is None:
            with np.errstate(over="ignore"):
                loglik = (
                    self._lgamma_ratio(y, theta)
                    + neg_log_fact
                    - theta * np.log1p(mu / theta)
                    + special.xlogy(y, r)
                )
        else:
            # large counts: log p(y | mu) - log p(y | y), free of cancellation, plus log p(y | y)
            with np.errstate(over="ignore"):
                mmy = _mu_minus_y(y, eta, log_y, zero, mu)
                dev = y * (eta - log_y) - (y + theta) * np.log1p(mmy / (theta + y))
            loglik = dev + (
                self._lgamma_ratio(y, theta)
                + neg_log_fact
                - theta * np.log1p(y / theta)
                + special.xlogy(y, y / (theta + y))
            )
        d1 = s * (y - mu)
        w = s * r * (y + theta)
        w3 = w * (s - r)
        return _weighted(weights, loglik, d1, w, w3)

    def extra_derivs(self, y, eta, trials, weights, extra, const=None):
        """Derivatives in ``log theta`` of ``loglik``, ``d1`` and ``w``, each (1, n).

        Analytic: a finite difference of a log-density of order 1e7 (counts in the
        millions) is lost in its rounding.
        """
        theta = np.exp(extra[0])
        eta = np.minimum(eta, _ETA_MAX)
        mu = np.exp(eta)
        tm = theta + mu
        s, r = theta / tm, mu / tm
        _, log_y, zero = self.constant(y, trials) if const is None else const
        # mu - y without cancellation where mu is near a large y
        mmy = mu - y if zero is None else _mu_minus_y(y, eta, log_y, zero, mu)
        with np.errstate(over="ignore"):
            dl = theta * (
                special.digamma(y + theta)
                - special.digamma(theta)
                - np.logaddexp(0.0, eta - extra[0])
                + mmy / tm
            )
        dd1 = -s * r * mmy
        dw = s * r * (2.0 * theta * mu + y * mu - theta * y) / tm
        if weights is not None:
            dl, dd1, dw = weights * dl, weights * dd1, weights * dw
        return dl[None], dd1[None], dw[None]

    def log_p0(self, eta, extra):
        theta = np.exp(extra[0])
        eta = np.minimum(eta, _ETA_MAX)
        mu = np.exp(eta)
        tm = theta + mu
        s, r = theta / tm, mu / tm
        a = -theta * np.logaddexp(0.0, eta - extra[0])  # -theta log(1 + mu / theta)
        a1 = -theta * r
        a2 = -theta * s * r
        a3 = a2 * (s - r)
        return a, a1, a2, a3

    def mean(self, eta, extra=()):
        return _exp(eta)

    def variance(self, mu, trials, extra):
        return mu + mu**2 / np.exp(extra[0])

    def unit_deviance(self, y, mu, trials, extra):
        theta = np.exp(extra[0])
        t1 = special.xlogy(y, np.divide(y, mu, out=np.ones_like(mu), where=y > 0))
        t2 = (y + theta) * np.log((y + theta) / (mu + theta))
        return 2.0 * (t1 - t2)

    def sample(self, mu, trials, extra, rng):
        theta = np.exp(extra[0])
        lam = rng.gamma(theta, mu / theta)
        return rng.poisson(lam).astype(float)

    def pmf(self, k, mu, extra):
        theta = np.exp(extra[0])
        return stats.nbinom.pmf(k, theta, theta / (theta + mu))

    def cdf(self, y, mu, trials, extra):
        theta = np.exp(extra[0])
        return stats.nbinom.cdf(y, theta, theta / (theta + mu))


class ZeroInflated(Family):
    """Constant zero-inflation around a count family; extra = [base..., logit pi].

    P(Y = 0) = pi + (1 - pi) f(0), P(Y = k) = (1 - pi) f(k) for k > 0.
    The log-density of a zero need not be concave in ``eta``; the Laplace
    Hessian uses its exact curvature all the same, as glmmTMB does.
    """

    zero_inflated = True
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


def _lgamma_ratio(y, theta):
    """log Gamma(y + theta) - log Gamma(theta), accurate for very large theta.

    Written through betaln, whose large-argument expansion avoids the
    cancellation of two huge log-gamma values when theta -> infinity.
    """
    ypos = np.where(y > 0, y, 1.0)
    return np.where(y > 0, special.gammaln(ypos) - special.betaln(ypos, theta), 0.0)


# Above this count, mu - y is computed as y expm1(eta - log y): exp(eta) rounds to
# ulp(mu) ~ 2e-16 mu, noise that would stall the conditional-mode iterations.
_LARGE_COUNT = 1e3


def _log_y(y):
    return np.log(np.where(y > 0, y, 1.0))


def _large_count_zeros(y):
    """Indicator of y == 0 when counts are large (the precise mu - y is needed), else None."""
    return (y == 0).astype(float) if len(y) and np.max(y) > _LARGE_COUNT else None


def _mu_minus_y(y, eta, log_y, zero, mu):
    """mu - y without the rounding of exp(eta) for large y (``zero``: 1.0 where y == 0)."""
    with np.errstate(over="ignore"):
        return y * np.expm1(np.minimum(eta, _ETA_MAX) - log_y) + zero * mu


def _log_choose(n, k):
    return special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)


def make_family(name: str, zero_inflation: bool = False):
    """Return the family object for ``name`` ("binomial", "poisson", "negbin")."""
    base = {"binomial": Binomial, "poisson": Poisson, "negbin": NegativeBinomial2}[name]()
    if zero_inflation:
        if name == "binomial":
            raise ValueError("zero_inflation is only available for count families.")
        return ZeroInflated(base)
    return base
