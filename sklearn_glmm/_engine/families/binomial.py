"""Binomial outcomes: successes out of trials (binary when every row has one trial)."""

from __future__ import annotations

from functools import cached_property

import numpy as np
from scipy import special, stats

from ..links import CLogLogLink, Link, LogitLink, ProbitLink, make_link
from .base import _ETA_MAX, Family, _log_choose, _weighted

# above this many elements the logit's derivatives are made in place (few temporaries of
# the data's size); below it the plain formulas make fewer numpy calls (the same values)
_IN_PLACE_SIZE = 1 << 14


class Binomial(Family):
    """Binomial outcome (successes out of ``trials``); logit, probit or cloglog link.

    .. math::

        \\log p(y \\mid \\eta) = y \\log F(\\eta) + (t - y) \\log(1 - F(\\eta))
            + \\log \\binom{t}{y}

    with ``F`` the inverse link. The logit link is canonical (its curvature is the
    Fisher weight); for probit and cloglog ``w`` is the exact (observed) curvature,
    as glmmTMB uses, not lme4's Fisher weight. All three are log-concave in ``eta``.
    """

    name = "binomial"
    r_name = "binomial"
    long_name = "binomial"
    link: Link = LogitLink()
    has_trials = True
    log_concave = True  # w >= 0 everywhere, for each of the three links

    def __init__(self, link: str | Link = "logit"):
        link = make_link(link) if isinstance(link, str) else link
        if not isinstance(link, (LogitLink, ProbitLink, CLogLogLink)):
            raise ValueError(
                f"binomial models take the logit, probit or cloglog link, not {link.name!r}."
            )
        self.link = link

    @cached_property
    def _other_link(self):
        """The probit's or cloglog's derivatives, or None for the logit's (looked up
        once: the derivatives are called many times per fit)."""
        if isinstance(self.link, ProbitLink):
            return _probit_derivs
        if isinstance(self.link, CLogLogLink):
            return _cloglog_derivs
        return None

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

    lazy_third = True

    scratch_eta = True  # (see derivs and third_derivative)

    def derivs(self, y, eta, trials, weights, extra=(), const=None, third=True, scratch=False):
        """``trials=None`` means one trial per row (binary outcomes); ``third=False``
        leaves ``w3`` out of the logit link's (None; see :meth:`third_derivative`).
        ``scratch=True``: the caller reads ``eta`` no more, and the logit link's
        derivatives on large data are made partly in its memory (one array of the
        rows' size fewer at once; the same values)."""
        if const is None:
            const = self.constant(y, trials)
        if self._other_link is not None:
            return self._other_link(y, eta, trials, weights, const)
        if not (
            isinstance(eta, np.ndarray) and eta.dtype == np.float64 and eta.size > _IN_PLACE_SIZE
        ):
            return _logit_derivs(y, eta, trials, weights, const, third)
        # (computed in place, in the same order of operations as _logit_derivs: large
        # data make few temporaries of their size)
        e = np.abs(eta)
        np.negative(e, out=e)
        np.exp(e, out=e)
        r = 1.0 + e
        np.divide(1.0, r, out=r)
        v = e * r
        v *= r
        if scratch:  # mu in r's memory: e r below zero, r itself above
            mu = np.multiply(e, r, out=r, where=eta < 0.0)
        else:
            mu = e * r
            np.copyto(mu, r, where=eta >= 0.0)
        log1pexp = np.log1p(e, out=e)
        # + max(eta, 0), without an array of it (adding 0 changes nothing)
        np.add(log1pexp, eta, out=log1pexp, where=eta > 0.0)
        # in memory that is read no more (r's, or eta's with scratch): on large data a
        # new array of the rows' size costs as much again as the product (its pages
        # are zeroed first)
        fits = isinstance(y, np.ndarray) and y.shape == eta.shape
        loglik = np.multiply(y, eta, out=(eta if scratch else r) if fits else None)
        del r
        if trials is None:
            loglik -= log1pexp
            # without w3, mu is not read again: d1 is made in its place
            d1 = y - mu if third else np.subtract(y, mu, out=mu)
            w = v
        else:
            loglik -= trials * log1pexp
            if third:
                d1 = y - trials * mu
            else:
                d1 = np.subtract(y, np.multiply(trials, mu, out=mu), out=mu)
            w = trials * v
        del log1pexp, e
        loglik += const
        if not third:
            return _weighted(weights, loglik, d1, w, None)
        t = np.multiply(mu, 2.0, out=mu)
        np.subtract(1.0, t, out=t)
        w3 = w * t
        return _weighted(weights, loglik, d1, w, w3)

    has_fourth_derivative = True

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4 = d w3 / d eta``: the logit's ``t v (1 - 6 v)`` (``v = mu (1 - mu)``, from
        ``e = exp(-|eta|)`` as :meth:`derivs` makes ``v``); the probit's and cloglog's
        one derivative past their ``w3`` (:func:`_probit_w4`, :func:`_cloglog_w4`)."""
        if isinstance(self.link, ProbitLink):
            return _probit_w4(y, eta, trials, weights)
        if isinstance(self.link, CLogLogLink):
            return _cloglog_w4(y, eta, trials, weights)
        e = np.exp(-np.abs(eta))
        r = 1.0 / (1.0 + e)
        v = e * r * r
        w4 = v * (1.0 - 6.0 * v)
        if trials is not None:
            w4 = trials * w4
        return w4 if weights is None else weights * w4

    def third_derivative(self, y, eta, trials, weights, extra, const, der, scratch=False):
        """``w3 = w (1 - 2 mu)`` at ``eta`` for the derivatives ``der`` (their ``w``)
        made without it: the values of :meth:`derivs`, in place (``scratch=True``: in
        ``eta``'s memory, which the caller reads no more)."""
        if not (
            weights is None
            and isinstance(self.link, LogitLink)
            and isinstance(eta, np.ndarray)
            and eta.ndim
            and eta.dtype == np.float64
        ):
            return self.derivs(y, eta, trials, weights, extra, const).w3
        nonneg = eta >= 0.0
        e = np.abs(eta, out=eta if scratch else None)
        np.negative(e, out=e)
        np.exp(e, out=e)
        r = 1.0 + e
        np.divide(1.0, r, out=r)
        e *= r  # mu, as in derivs
        np.copyto(e, r, where=nonneg)
        del r, nonneg
        t = np.multiply(e, 2.0, out=e)
        np.subtract(1.0, t, out=t)
        t *= der.w
        return t

    def mean(self, eta, extra=()):
        return self.link.inverse(eta)

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


def _logit_derivs(y, eta, trials, weights, const, third=True):
    """The logit link's derivatives of :meth:`Binomial.derivs` for any ``eta`` (a
    scalar too): with e = exp(-|eta|) in (0, 1], expit, mu (1 - mu) and
    log(1 + exp(eta)) are free of overflow and cancellation on both sides of 0."""
    e = np.exp(-np.abs(eta))
    r = 1.0 / (1.0 + e)
    mu = np.where(eta >= 0.0, r, e * r)
    v = e * r * r
    log1pexp = np.log1p(e) + np.maximum(eta, 0.0)
    if trials is None:
        loglik = y * eta - log1pexp + const
        d1, w = y - mu, v
    else:
        loglik = y * eta - trials * log1pexp + const
        d1, w = y - trials * mu, trials * v
    w3 = w * (1.0 - 2.0 * mu) if third else None
    return _weighted(weights, loglik, d1, w, w3)


def _failures(y, trials):
    return 1.0 - y if trials is None else trials - y


def _probit_derivs(y, eta, trials, weights, const):
    """Probit: ``log Phi(eta)`` and ``log Phi(-eta)`` with the inverse Mills ratio
    ``m(x) = phi(x) / Phi(x)``, all through ``log_ndtr`` (no cancellation in the tails)."""
    f = _failures(y, trials)
    lp, lq = special.log_ndtr(eta), special.log_ndtr(-eta)
    log_phi = -0.5 * eta * eta - 0.5 * np.log(2.0 * np.pi)
    mp, mq = np.exp(log_phi - lp), np.exp(log_phi - lq)  # m(eta), m(-eta)
    # m'(x) = -m (x + m); m''(x) = -m' (x + m) - m (1 + m')
    dmp = -mp * (eta + mp)
    dmq = -mq * (-eta + mq)
    ddmp = -dmp * (eta + mp) - mp * (1.0 + dmp)
    ddmq = -dmq * (-eta + mq) - mq * (1.0 + dmq)
    loglik = y * lp + f * lq + const
    d1 = y * mp - f * mq
    w = -(y * dmp + f * dmq)
    w3 = -(y * ddmp - f * ddmq)
    return _weighted(weights, loglik, d1, w, w3)


def _cloglog_derivs(y, eta, trials, weights, const):
    """Complementary log-log: ``F = 1 - exp(-u)``, ``u = exp(eta)``; with
    ``g = u / expm1(u)`` (``d log F / d eta``), ``g' = g (1 - u - g)``."""
    f = _failures(y, trials)
    eta = np.minimum(eta, _ETA_MAX)  # exp(700) is finite; exp(-u) underflows to 0 gracefully
    u = np.exp(eta)
    with np.errstate(over="ignore"):
        g = np.where(u > 1e-300, u / np.expm1(u), 1.0)
    dg = g * (1.0 - u - g)
    ddg = dg * (1.0 - u - g) - g * (u + dg)
    log_f = np.log(-np.expm1(-u))
    loglik = y * log_f - f * u + const
    d1 = y * g - f * u
    w = f * u - y * dg
    w3 = f * u - y * ddg
    return _weighted(weights, loglik, d1, w, w3)


def _probit_w4(y, eta, trials, weights):
    """The probit's ``w4 = -(y m3(eta) + f m3(-eta))`` (``f`` the failures, ``m`` the
    inverse Mills ratio and ``m1, m2`` its derivatives as in :func:`_probit_derivs`,
    ``m3 = -m2 (x + m) - 2 m1 (1 + m1) - m m2``)."""
    f = _failures(y, trials)

    def m3(x):
        m = np.exp(-0.5 * x * x - 0.5 * np.log(2.0 * np.pi) - special.log_ndtr(x))
        m1 = -m * (x + m)
        m2 = -m1 * (x + m) - m * (1.0 + m1)
        return -m2 * (x + m) - 2.0 * m1 * (1.0 + m1) - m * m2

    w4 = -(y * m3(eta) + f * m3(-eta))
    return w4 if weights is None else weights * w4


def _cloglog_w4(y, eta, trials, weights):
    """The cloglog's ``w4 = f u - y g3``, ``g3`` one derivative past the ``g2`` of
    :func:`_cloglog_derivs`: ``g3 = g2 (1 - u - g) - 2 g1 (u + g1) - g (u + g2)``."""
    f = _failures(y, trials)
    eta = np.minimum(eta, _ETA_MAX)
    u = np.exp(eta)
    with np.errstate(over="ignore"):
        g = np.where(u > 1e-300, u / np.expm1(u), 1.0)
    g1 = g * (1.0 - u - g)
    g2 = g1 * (1.0 - u - g) - g * (u + g1)
    g3 = g2 * (1.0 - u - g) - 2.0 * g1 * (u + g1) - g * (u + g2)
    w4 = f * u - y * g3
    return w4 if weights is None else weights * w4
