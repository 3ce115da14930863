"""Beta-binomial outcomes: successes out of trials with overdispersion (glmmTMB's
``betabinomial``).

The success probability of each row is Beta(``mu phi``, ``(1 - mu) phi``) around its
mean ``mu = g^{-1}(eta)``:

.. math::

    \\log p(y \\mid \\eta) = \\log \\binom{t}{y} + \\log B(y + \\mu\\phi, t - y + (1 - \\mu)\\phi)
        - \\log B(\\mu\\phi, (1 - \\mu)\\phi),

so that Var(Y) = t mu (1 - mu) (1 + (t - 1) / (phi + 1)); as phi -> infinity it is the
binomial. With one trial per row phi is not identified (every Beta mixture of a
Bernoulli is a Bernoulli), and fitting refuses such data.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ..blocks import BETABINOMIAL_PHI
from ..links import LogitLink
from .base import (
    Family,
    _lgamma_ratio,
    _log_choose,
    _polygamma_differences,
    _weighted,
    array_on_bound,
    on_upper_bound,
    second_with_first,
    size_sum_fourth,
    size_sums,
)
from .binomial import Binomial

# log phi on its upper bound is phi = infinity, the binomial limit
_UPPER = BETABINOMIAL_PHI.bounds[1]
_BINOMIAL = Binomial()


def _phi(extra):
    """phi from ``log phi``: infinity on the upper bound (the binomial limit)."""
    lt = np.asarray(extra[0], dtype=float)
    return np.where(lt >= _UPPER, np.inf, np.exp(lt))


def _shapes(eta, phi):
    """``(mu, 1 - mu, a, b)``: the mean, its complement (``expit(-eta)``, exact where
    ``mu`` rounds to 1) and the Beta shapes ``a = mu phi``, ``b = (1 - mu) phi``."""
    mu, q = special.expit(eta), special.expit(-np.asarray(eta, dtype=float))
    return mu, q, mu * phi, q * phi


def _fourth_of_a_shape(n, a, mu, q):
    """The fourth eta-derivative of ``log Gamma(n + a) - log Gamma(a)`` for a shape ``a``
    moving as ``da / d eta = a q`` (``dq / d eta = -mu q``): from the size sums of ``(n,
    a)`` (see :meth:`BetaBinomial.fourth_derivative`)."""
    s1, s2, s3 = size_sums(n, a)
    s4 = size_sum_fourth(n, a)
    mq = mu * q
    return (
        q**4 * s4
        - 6.0 * mq * q * q * s3
        + mq * q * (11.0 * mu - 4.0) * s2
        + mq * (6.0 * mq - 1.0) * s1
    )


class BetaBinomial(Family):
    """Beta-binomial outcome with a logit link; extra = [log phi]."""

    name = "betabinomial"
    r_name = "betabinomial"
    long_name = "beta-binomial"
    link = LogitLink()
    has_trials = True
    log_concave = False
    blocks = (BETABINOMIAL_PHI,)

    # the binomial's typical curvature, trials p (1 - p), scales the design as well
    mean_curvature = Binomial.mean_curvature

    def constant(self, y, trials):
        if trials is None:
            return 0.0
        return _log_choose(trials, y)

    def derivs(self, y, eta, trials, weights, extra, const=None):
        lt = extra[0]
        # phi on its bound is phi = infinity: the binomial limit, exactly (with a million
        # trials phi = e^20 still inflates the variance by 2e-3)
        limit = on_upper_bound(
            lt,
            _UPPER,
            lambda: _BINOMIAL.derivs(y, eta, trials, weights, (), const),
            lambda lt: self.derivs(y, eta, trials, weights, (lt,), const),
        )
        if limit is not None:
            return limit
        phi = np.exp(lt)
        t = np.ones_like(y) if trials is None else trials
        const = self.constant(y, trials) if const is None else const
        mu, q, a, b = _shapes(eta, phi)
        f = t - y
        # log B(y + a, f + b) - log B(a, b) as three ratios log Gamma(n + s) - log Gamma(s)
        # (a + b = phi, y + f = t): accurate however large phi, where the difference of
        # two betaln loses 1e-6 per row (phi = e^20, the bound: the binomial limit)
        # the eta-derivatives of the two ratios in a and b (a' = a q, b' = -b mu) from the
        # size sums s1..s3 of (y, a) and (f, b): finite and accurate however small a or b
        # (and the ratios themselves, made with those sums)
        s1a, s2a, s3a, lga = size_sums(y, a, with_log=True)
        s1b, s2b, s3b, lgb = size_sums(f, b, with_log=True)
        loglik = const + lga + lgb - _lgamma_ratio(t, phi)
        d1 = q * s1a - mu * s1b
        d2 = q * (q * s2a - mu * s1a) + mu * (mu * s2b - q * s1b)
        d3 = (q**3 * s3a - 3.0 * mu * q * q * s2a + mu * q * (2.0 * mu - 1.0) * s1a) - (
            mu**3 * s3b - 3.0 * mu * mu * q * s2b + mu * q * (1.0 - 2.0 * mu) * s1b
        )
        return _weighted(weights, loglik, d1, -d2, -d3)

    has_fourth_derivative = True

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4 = -(d4_a + d4_b)``: on a function of ``a = mu phi`` the eta-derivative is
        ``q (a d/da)`` (``a' = a q``, ``q = 1 - mu``, ``mu' = mu q``), so with the size
        sums ``s_n`` of ``(y, a)`` (:func:`~.base.size_sums`, and
        :func:`~.base.size_sum_fourth`) ``d4_a = q^4 s4 - 6 mu q^3 s3 + mu q^2 (11 mu - 4)
        s2 + mu q (6 mu q - 1) s1``, the next of :meth:`derivs`' ``d1 .. d3``; ``d4_b`` the
        same with ``mu`` and ``q`` exchanged on the sums of ``(t - y, b)`` (the mirror
        ``eta -> -eta``, an even order). The binomial's on the bound."""
        lt = extra[0]
        limit = array_on_bound(
            lt,
            _UPPER,
            lambda: _BINOMIAL.fourth_derivative(y, eta, trials, weights),
            lambda lt: self.fourth_derivative(y, eta, trials, weights, (lt,)),
        )
        if limit is not None:
            return limit
        t = np.ones_like(y) if trials is None else trials
        mu, q, a, b = _shapes(eta, np.exp(lt))
        w4 = -(_fourth_of_a_shape(y, a, mu, q) + _fourth_of_a_shape(t - y, b, q, mu))
        return w4 if weights is None else weights * w4

    def extra_second_derivs(self, y, eta, trials, weights, extra, const=None, with_first=False):
        """Second derivatives in ``nu = log phi`` for the closed-form Hessian's row and
        column (:func:`~sklearn_glmm._engine.laplace_hessian.extra_column`): of
        ``loglik``, ``d1`` and ``w``, and the derivative of ``w3`` in ``nu``, each (n,),
        weighted as :meth:`derivs`; None for a phi per row or on the bound (the binomial
        limit). The shapes move as ``da / dnu = a``, ``db / dnu = b`` (and ``phi`` itself),
        so the ``nu``-derivative takes each size sum ``s_m`` to ``s_{m+1}`` with ``mu`` and
        ``q = 1 - mu`` fixed: :meth:`derivs`' ``d1 .. d3`` (and :meth:`extra_derivs`' first
        ones) with every sum one order up, twice for ``loglik``, ``d1`` and ``w`` (``w =
        -d2``), once for ``w3``; the log-gamma ratio of ``(t, phi)`` likewise. With
        ``with_first``, ``(first, second)``: ``first`` :meth:`extra_derivs`' rows."""
        lt = extra[0]
        if (type(lt) is np.ndarray and np.ndim(lt)) or lt >= _UPPER:  # (per row; the bound)
            return None
        phi = np.exp(lt)
        t = np.ones_like(y) if trials is None else trials
        mu, q, a, b = _shapes(eta, phi)
        f = t - y
        sa = (*size_sums(y, a), size_sum_fourth(y, a))
        sb = (*size_sums(f, b), size_sum_fourth(f, b))
        s2t = size_sums(t, phi)[1]

        def d2(m):  # derivs' d2 with the sums m orders up
            return q * (q * sa[m + 1] - mu * sa[m]) + mu * (mu * sb[m + 1] - q * sb[m])

        mq = mu * q
        d3_up = (q**3 * sa[3] - 3.0 * mq * q * sa[2] + mq * (2.0 * mu - 1.0) * sa[1]) - (
            mu**3 * sb[3] - 3.0 * mu * mq * sb[2] + mq * (1.0 - 2.0 * mu) * sb[1]
        )
        second = (sa[1] + sb[1] - s2t, q * sa[2] - mu * sb[2], -d2(2), -d3_up)
        args = (y, eta, trials, weights, extra, const)
        return second_with_first(self, second, args, weights, with_first)

    def extra_derivs(self, y, eta, trials, weights, extra, const=None):
        """Derivatives in ``log phi`` of ``loglik``, ``d1`` and ``w``, each (1, n).

        ``a = mu phi`` and ``b = (1 - mu) phi`` move as ``a`` and ``b`` with
        ``nu = log phi``; with the differences of :meth:`derivs`::

            d loglik / dnu = a D_a + b D_b - phi (psi(t + phi) - psi(phi))
            d d1 / dnu     = phi v (D + a D'_a - b D'_b)
            d d2 / dnu     = phi v1 (D + a D'_a - b D'_b) + phi^2 v^2 (2 E + a E'_a + b E'_b)

        (``D_a = psi(y + a) - psi(a)``, ``D = D_a - D_b``, ``E = D'_a + D'_b``, primes
        the next polygamma's differences; ``w = -d2``).
        """
        lt = extra[0]
        limit = on_upper_bound(  # the binomial limit: no dependence on phi
            lt,
            _UPPER,
            lambda: (np.zeros((1, len(eta))),) * 3,
            lambda lt: self.extra_derivs(y, eta, trials, weights, (lt,), const),
        )
        if limit is not None:
            return limit
        phi = np.exp(lt)
        t = np.ones_like(y) if trials is None else trials
        mu, q, a, b = _shapes(eta, phi)
        f = t - y
        s1a, s2a, s3a = size_sums(y, a)
        s1b, s2b, s3b = size_sums(f, b)
        tp0 = _polygamma_differences(t, phi)[0]
        # (the docstring's terms in the size sums: phi v D = q s1a - mu s1b, ...)
        moved = q * s2a - mu * s2b
        dl = s1a + s1b - phi * tp0
        dd1 = moved
        dd2 = (q - mu) * moved + q * q * (s3a - s2a) + mu * mu * (s3b - s2b)
        dw = -dd2
        if weights is not None:
            dl, dd1, dw = weights * dl, weights * dd1, weights * dw
        return dl[None], dd1[None], dw[None]

    def mean(self, eta, extra=()):
        return special.expit(eta)

    def variance(self, mu, trials, extra):
        phi = _phi(extra)
        return trials * mu * (1.0 - mu) * (1.0 + (trials - 1.0) / (phi + 1.0))

    def unit_deviance(self, y, mu, trials, extra):
        # deviance against the saturated binomial (used for D^2 only)
        p = np.divide(y, trials, out=np.zeros_like(mu), where=trials > 0)
        a = special.xlogy(y, np.divide(p, mu, out=np.ones_like(mu), where=p > 0))
        b = special.xlogy(trials - y, np.divide(1 - p, 1 - mu, out=np.ones_like(mu), where=p < 1))
        return 2.0 * (a + b)

    def sample(self, mu, trials, extra, rng):
        if np.all(np.asarray(extra[0]) >= _UPPER):  # phi = infinity: binomial draws
            return _BINOMIAL.sample(mu, trials, (), rng)
        phi = _phi(extra)
        m = np.clip(mu, 1e-12, 1 - 1e-12)
        limit = np.isinf(phi)  # the binomial limit
        finite = np.where(limit, 1.0, phi)
        p = np.where(limit, m, rng.beta(m * finite, (1.0 - m) * finite))
        return rng.binomial(trials.astype(np.int64), p).astype(float)

    def cdf(self, y, mu, trials, extra):
        phi = _phi(extra)
        finite = np.where(np.isinf(phi), 1.0, phi)
        bb = stats.betabinom.cdf(y, trials, mu * finite, (1.0 - mu) * finite)
        return np.where(np.isinf(phi), stats.binom.cdf(y, trials, mu), bb)
