"""Negative binomial counts with linear variance (NB1: Var = mu (1 + phi)), log link.

glmmTMB's ``nbinom1``: size ``k = mu / phi`` and probability ``1 / (1 + phi)``, so

.. math::

    \\log p(y \\mid \\eta) = \\log\\Gamma(y + k) - \\log\\Gamma(k) - \\log y!
        - k \\log(1 + \\phi) + y \\log\\frac{\\phi}{1 + \\phi},
    \\qquad k = e^{\\eta} / \\phi.

The mean enters through ``k`` inside the log-gamma terms, so the derivatives in
``eta`` involve the digamma function and its derivatives; the log-density need not
be concave in ``eta``. ``log phi`` on its lower bound is phi = 0, the Poisson limit
(reported as ``phi_ = 0``), taken exactly: its density and derivatives, probabilities,
variance and draws.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ..blocks import NB1_PHI
from ..links import LogLink
from .base import (
    _ETA_MAX,
    _SMALL_SIZE,
    Family,
    _exp_mean,
    _polygamma_differences,
    _weighted,
    array_on_bound,
    limit_or,
    on_lower_bound,
    second_with_first,
    size_sum_fourth,
    size_sums,
)
from .poisson import Poisson

# log phi on its lower bound is phi = 0, the Poisson limit
_LOWER = NB1_PHI.bounds[0]
_POISSON = Poisson()


def _size_terms(y, k, with_log=False):
    """``_polygamma_differences(y, k)`` where ``k`` is at least ``base._SMALL_SIZE`` (at 1
    elsewhere: finite values the caller replaces), the rows below it and their
    :func:`~.base.size_sums` (None where there is none): below it the differences
    overflow (``psi_2(k) ~ -2 / k^3``) and the curvature's terms cancel. With
    ``with_log``, the log-gamma ratio ``log Gamma(y + k) - log Gamma(k)`` of every row
    fourth (made with the differences' sums)."""
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    small = k < _SMALL_SIZE
    p0, p1, p2, *lg = _polygamma_differences(y, np.where(small, 1.0, k), with_log)
    sums = None
    if small.any():
        got = size_sums(y[small], k[small], with_log)
        sums = got[:3]
        if with_log:  # (at the size itself, not the 1 the differences took)
            lg[0][small] = got[3]
    return (p0, p1, p2), small, sums, *lg


# above this size k^3 overflows: k^2 a1 and k^3 a2 are taken as nested products there
_NESTED_SIZE = 1e100


def _scaled_terms(k, a1, a2):
    """``k^2 a1`` and ``k^3 a2`` (``a_m`` falls as ``k^-m``); nested products above
    :data:`_NESTED_SIZE`, where ``k^3`` overflows (means no fit reaches, but line
    searches may try)."""
    with np.errstate(over="ignore", invalid="ignore"):  # (replaced below where huge)
        k2a1, k3a2 = k * k * a1, k**3 * a2
    huge = k > _NESTED_SIZE
    if huge.any():
        kh = k[huge]
        k2a1[huge] = kh * (kh * a1[huge])
        k3a2[huge] = kh * (kh * (kh * a2[huge]))
    return k2a1, k3a2


def _like(v, k):
    """``v`` (a scalar or per-row values) in the shape of ``k``."""
    return np.broadcast_to(np.asarray(v, dtype=float), np.shape(k))


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
        # phi on its bound is phi = 0: the Poisson limit, exactly (the fit reports phi_ =
        # 0 there; where the Laplace value is steep in phi, phi = e^-15 was 2e-3 from it)
        limit = on_lower_bound(
            extra[0],
            _LOWER,
            lambda: _POISSON.derivs(y, eta, trials, weights),
            lambda lp: self.derivs(y, eta, trials, weights, (lp,), const),
        )
        if limit is not None:
            return limit
        phi = np.exp(extra[0])
        k = np.exp(np.minimum(eta, _ETA_MAX)) / phi
        neg_log_fact = self.constant(y, trials) if const is None else const
        log1p_phi = np.log1p(phi)
        # A(k) = psi(y + k) - psi(k) - log(1 + phi) and its k-derivatives, and the
        # log-gamma ratio of the log-density
        (p0, p1, p2), small, sums, lg_ratio = _size_terms(y, k, with_log=True)
        loglik = lg_ratio + neg_log_fact - k * log1p_phi + y * (extra[0] - log1p_phi)
        a0, a1, a2 = p0 - log1p_phi, p1, p2
        d1 = k * a0
        k2a1, k3a2 = _scaled_terms(k, a1, a2)
        d2 = k * a0 + k2a1
        d3 = k * a0 + 3.0 * k2a1 + k3a2
        if sums is not None:  # tiny sizes: k a0 = s1 - k log(1 + phi), ...
            kl = k[small] * _like(log1p_phi, k)[small]
            d1[small], d2[small], d3[small] = (v - kl for v in sums)
        return _weighted(weights, loglik, d1, -d2, -d3)

    has_fourth_derivative = True

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4 = -(s4 - k log(1 + phi))``: with ``k = mu / phi`` moving as ``dk / d eta =
        k``, the fourth eta-derivative of ``log Gamma(y + k) - log Gamma(k) - k log(1 +
        phi)`` (:func:`~.base.size_sum_fourth`: ``k D0 + 7 k^2 D1 + 6 k^3 D2 + k^4 D3``,
        ``D_m = psi_m(y + k) - psi_m(k)``); the Poisson limit's on the bound."""
        limit = array_on_bound(
            extra[0],
            _LOWER,
            lambda: _POISSON.fourth_derivative(y, eta, trials, weights),
            lambda lp: self.fourth_derivative(y, eta, trials, weights, (lp,)),
            upper=False,
        )
        if limit is not None:
            return limit
        phi = np.exp(extra[0])
        k = np.exp(np.minimum(eta, _ETA_MAX)) / phi
        w4 = k * np.log1p(phi) - size_sum_fourth(y, k)
        return w4 if weights is None else weights * w4

    def extra_derivs(self, y, eta, trials, weights, extra, const=None):
        """Derivatives in ``log phi`` of ``loglik``, ``d1`` and ``w``, each (1, n).

        With ``nu = log phi``, ``k`` moves as ``dk/dnu = -k`` and ``log(1 + phi)`` as
        ``phi / (1 + phi)``; with ``a_m`` the k-derivatives of
        ``A(k) = psi(y + k) - psi(k) - log(1 + phi)`` (as in :meth:`derivs`)::

            d loglik / dnu = -k a0 - k phi / (1 + phi) + y / (1 + phi)
            d d1 / dnu     = -k a0 - k^2 a1 - k phi / (1 + phi)
            d w / dnu      =  k a0 + 3 k^2 a1 + k^3 a2 + k phi / (1 + phi)

        Zero on the bound (the Poisson limit).
        """
        limit = on_lower_bound(
            extra[0],
            _LOWER,
            lambda: (np.zeros((1, len(eta))),) * 3,
            lambda lp: self.extra_derivs(y, eta, trials, weights, (lp,), const),
        )
        if limit is not None:
            return limit
        phi = np.exp(extra[0])
        k = np.exp(np.minimum(eta, _ETA_MAX)) / phi
        share = phi / (1.0 + phi)  # d log(1 + phi) / d nu
        (p0, p1, p2), small, sums = _size_terms(y, k)
        a0 = p0 - np.log1p(phi)
        (k2a1, k3a2), ka0, kshare = _scaled_terms(k, p1, p2), k * a0, k * share
        dl = -ka0 - kshare + y / (1.0 + phi)
        dd1 = -ka0 - k2a1 - kshare
        dw = ka0 + 3.0 * k2a1 + k3a2 + kshare
        if sums is not None:  # tiny sizes (see derivs)
            kl = k[small] * _like(np.log1p(phi), k)[small]
            s1, s2, s3 = (v - kl for v in sums)
            dl[small] = -s1 - kshare[small] + _like(y / (1.0 + phi), k)[small]
            dd1[small] = -s2 - kshare[small]
            dw[small] = s3 + kshare[small]
        if weights is not None:
            dl, dd1, dw = weights * dl, weights * dd1, weights * dw
        return dl[None], dd1[None], dw[None]

    def extra_second_derivs(self, y, eta, trials, weights, extra, const=None, with_first=False):
        """Second derivatives in ``nu = log phi`` for the closed-form Hessian's row and column
        (:func:`~sklearn_glmm._engine.laplace_hessian.extra_column`): of ``loglik``, ``d1``
        and ``w``, and the derivative of ``w3`` in ``nu``, each (n,), weighted as
        :meth:`derivs`; elementwise in a phi per row (a dispersion model); None where phi is
        on the bound (the Poisson limit), for any row. ``k`` moves as ``dk / dnu = -k``, so
        on a function of ``k`` the ``nu``-derivative is ``-(k d/dk)``, which takes the size
        sum ``s_m`` to ``-s_{m+1}`` (:func:`~.base.size_sums`,
        :func:`~.base.size_sum_fourth`); with ``c = log(1 + phi)`` and ``sigma = phi / (1 +
        phi)`` (``dc / dnu = sigma``, ``dsigma / dnu = sigma (1 - sigma)``): ``loglik_nn =
        s2 - k c + k sigma + k sigma^2 - y sigma (1 - sigma)``, ``d1_nn = s3 - k c + k sigma
        + k sigma^2``, ``w_nn = -s4 + k c - k sigma - k sigma^2``, ``w3_n = s4 - k c + k
        sigma``. With ``with_first``, ``(first, second)``: ``first`` :meth:`extra_derivs`'
        rows, each (n,)."""
        lp = extra[0]
        if np.any(np.asarray(lp) <= _LOWER):  # (the bound)
            return None
        phi = np.exp(lp)
        k = np.exp(np.minimum(eta, _ETA_MAX)) / phi
        c, sigma = np.log1p(phi), phi / (1.0 + phi)
        _, s2, s3 = size_sums(y, k)
        s4 = size_sum_fourth(y, k)
        kc, ks = k * c, k * sigma
        kss = ks * sigma
        second = (
            s2 - kc + ks + kss - y * (sigma * (1.0 - sigma)),
            s3 - kc + ks + kss,
            -s4 + kc - ks - kss,
            s4 - kc + ks,
        )
        args = (y, eta, trials, weights, extra, const)
        return second_with_first(self, second, args, weights, with_first)

    def log_p0(self, eta, extra):
        """log P(Y = 0 | eta) = -k log(1 + phi) and its eta-derivatives (all equal)."""
        limit = on_lower_bound(
            extra[0], _LOWER, lambda: _POISSON.log_p0(eta), lambda lp: self.log_p0(eta, (lp,))
        )
        if limit is not None:
            return limit
        phi = np.exp(extra[0])
        a = -np.exp(np.minimum(eta, _ETA_MAX)) / phi * np.log1p(phi)
        return a, a, a, a

    def log_p0_fourth(self, eta, extra):
        """The fourth eta-derivative of :meth:`log_p0` (a zero-inflated model's fourth
        derivative reads it): ``a`` itself."""
        return self.log_p0(eta, extra)[0]

    def log_p0_extra_derivs(self, eta, extra):
        """Derivatives in ``log phi`` of :meth:`log_p0`'s first three arrays (all equal),
        each (1, n): with ``a = -mu log(1 + phi) / phi``,
        ``da / d log phi = -mu (1 / (1 + phi) - log(1 + phi) / phi)`` (for phi below 1e-2
        by the series of the bracket, the sum over ``n >= 1`` of ``(-phi)^n n / (n + 1)``
        to ten terms: the difference cancels). Zero on the bound (the Poisson limit). A
        zero-inflated NB1 took these by central differences of the whole density: the
        curvature's derivative then carried its rounding over the step (1e-6 in the
        gradient in ``log phi``, the Hessian's entry by differences of that gradient 0.2 %
        off)."""
        limit = on_lower_bound(
            extra[0],
            _LOWER,
            lambda: (np.zeros((1,) + np.shape(eta)),) * 3,
            lambda lp: self.log_p0_extra_derivs(eta, (lp,)),
        )
        if limit is not None:
            return limit
        phi = np.exp(extra[0])
        mu = np.exp(np.minimum(eta, _ETA_MAX))
        with np.errstate(divide="ignore", invalid="ignore"):
            direct = 1.0 / (1.0 + phi) - np.log1p(phi) / phi
        series = 0.0
        for n in range(10, 0, -1):  # the sum over n >= 1 of (-phi)^n n / (n + 1), Horner
            series = phi * ((-1.0) ** n * n / (n + 1.0) + series)
        da = -mu * np.where(phi < 1e-2, series, direct)
        return da[None], da[None], da[None]

    def log_p0_second_extra(self, eta, extra):
        """The derivatives of :meth:`log_p0` a zero-inflated model's Hessian in ``log
        phi`` reads beyond :meth:`log_p0_extra_derivs`: with ``a = -mu g``, ``g = log(1 +
        phi) / phi`` and ``B = g' = 1 / (1 + phi) - g`` (its derivative in ``t = log
        phi``), every eta-derivative of ``a`` is ``a``, so ``d^4 a / d eta^3 dt = da/dt =
        -mu B`` and ``d^(2+k) a / d eta^k dt^2 = -mu g'' = mu (phi / (1 + phi)^2 + B)``
        (``k = 0, 1, 2``), each (n,); None for a phi per row or on the bound (the Poisson
        limit)."""
        lp = extra[0]
        if type(lp) is np.ndarray or lp <= _LOWER:
            return None
        phi = np.exp(lp)
        mu = np.exp(np.minimum(eta, _ETA_MAX))
        da = self.log_p0_extra_derivs(eta, extra)[0][0]  # -mu B
        dtt = mu * phi / (1.0 + phi) ** 2 - da
        return da, dtt, dtt, dtt

    def log_zero_rate(self, eta, extra):
        """``log s`` for ``s = -log P(Y = 0) = mu log(1 + phi) / phi`` and its
        eta-derivatives (zero-truncation)."""
        limit = on_lower_bound(
            extra[0],
            _LOWER,
            lambda: _POISSON.log_zero_rate(eta),
            lambda lp: self.log_zero_rate(eta, (lp,)),
        )
        if limit is not None:
            return limit
        eta = np.asarray(eta, dtype=float)
        phi = np.exp(extra[0])
        log_s = eta + np.log(np.log1p(phi) / phi)
        return log_s, np.ones_like(eta), np.zeros_like(eta), np.zeros_like(eta)

    def log_zero_rate_extra(self, eta, extra, second=False):
        """:meth:`log_zero_rate` and the derivatives in ``t = log phi`` of its ``L = log s
        = eta + log g`` (``g = log(1 + phi) / phi``) and first two eta-derivatives, each
        (n,): ``(rate, partials)``. Only ``L_t = B / g`` (``B = dg/dt = 1 / (1 + phi) -
        g``, from its series for small phi: :meth:`log_p0_extra_derivs`) and, with
        ``second``, ``L_tt = (dB/dt) / g - (B / g)^2`` (``dB/dt = -phi / (1 + phi)^2 - B``)
        are not 0. On the bound the Poisson limit's rate and partials 0."""
        zeros = np.zeros(np.shape(eta))
        n_out = 7 if second else 3
        limit = on_lower_bound(
            extra[0],
            _LOWER,
            lambda: _POISSON.log_zero_rate(eta) + (zeros,) * n_out,
            lambda lp: sum(self.log_zero_rate_extra(eta, (lp,), second), ()),
        )
        if limit is not None:
            return tuple(limit[:4]), tuple(limit[4:])
        phi = np.exp(extra[0])
        g = np.log1p(phi) / phi
        # log_p0_extra_derivs' da / d log phi is -mu B (at eta = 0: -B)
        B = -self.log_p0_extra_derivs(zeros, extra)[0][0]
        rate = self.log_zero_rate(eta, extra)
        L_t = B / g + zeros
        if not second:
            return rate, (L_t, zeros, zeros)
        L_tt = (-phi / (1.0 + phi) ** 2 - B) / g - (B / g) ** 2 + zeros
        return rate, (L_t, zeros, zeros, zeros, L_tt, zeros, zeros)

    def log_zero_rate_fourth(self, eta, extra):
        """The fourth eta-derivative of :meth:`log_zero_rate`'s ``log s`` (``eta`` plus a
        constant): 0."""
        return np.zeros(np.shape(eta))

    def mean(self, eta, extra=()):
        return _exp_mean(eta)

    def variance(self, mu, trials, extra):
        return _poisson_or(extra, lambda: mu * 1.0, lambda phi: mu * (1.0 + phi))

    def unit_deviance(self, y, mu, trials, extra):
        eta_sat = np.log(np.where(y > 0, y, 1.0))
        sat = self.derivs(y, eta_sat, trials, None, extra).loglik
        fit = self.derivs(y, np.log(mu), trials, None, extra).loglik
        return 2.0 * np.where(y > 0, sat - fit, -fit)

    def sample(self, mu, trials, extra, rng):
        at = np.asarray(extra[0]) <= _LOWER
        if np.all(at):  # phi = 0: Poisson draws
            return _POISSON.sample(mu, trials, (), rng)
        phi = np.exp(np.where(at, 0.0, extra[0]))
        # rows on the bound (a dispersion model's) draw Poisson counts at mu: a phi below
        # e^-745 is 0, which the gamma draws refuse
        lam = np.where(at, mu, rng.gamma(mu / phi, phi))
        return rng.poisson(lam).astype(float)

    def pmf(self, k, mu, extra):
        return _poisson_or(
            extra,
            lambda: stats.poisson.pmf(k, mu),
            lambda phi: stats.nbinom.pmf(k, mu / phi, 1.0 / (1.0 + phi)),
        )

    def cdf(self, y, mu, trials, extra):
        return _poisson_or(
            extra,
            lambda: stats.poisson.cdf(y, mu),
            lambda phi: stats.nbinom.cdf(y, mu / phi, 1.0 / (1.0 + phi)),
        )

    def sf(self, y, mu, extra):
        """P(Y > y)."""
        return _poisson_or(
            extra,
            lambda: stats.poisson.sf(y, mu),
            lambda phi: stats.nbinom.sf(y, mu / phi, 1.0 / (1.0 + phi)),
        )


def _poisson_or(extra, poisson, nb1):
    """``poisson()`` where ``log phi`` (``extra[0]``) is on its lower bound (phi = 0, the
    Poisson limit: ``nbinom(mu / phi, ...)``'s pmf at phi = e^-15 is 2e-4 off Poisson's in
    the tail at mu = 300), ``nb1(phi)`` elsewhere (:func:`~.base.limit_or`)."""
    at = np.asarray(extra[0]) <= _LOWER
    return limit_or(at, poisson, lambda lp: nb1(np.exp(lp)), extra[0])
