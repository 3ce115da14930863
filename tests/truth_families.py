"""Row log-densities of NB1 and the beta-binomial for ``truth.py``, with their first two
derivatives in the linear predictor, from scipy's special functions alone (nothing here
imports ``sklearn_glmm``).

NB1 (glmmTMB's ``nbinom1``; Var = mu (1 + phi)) is scipy's ``nbinom(n = k, p = 1 / (1 +
phi))`` with ``k = mu / phi``, ``mu = exp(eta)``:

.. math::

    \\log p(y) = \\log\\Gamma(y + k) - \\log\\Gamma(k) - \\log y! - k \\log(1 + \\phi)
        - y \\log(1 + 1 / \\phi).

The beta-binomial (glmmTMB's ``betabinomial``) is scipy's ``betabinom(n = t, a = mu phi,
b = (1 - mu) phi)`` with ``mu = expit(eta)``:

.. math::

    \\log p(y) = \\log\\binom{t}{y} + \\log\\Gamma(y + a) - \\log\\Gamma(a)
        + \\log\\Gamma(t - y + b) - \\log\\Gamma(b) - \\log\\Gamma(t + \\phi) + \\log\\Gamma(\\phi).

The limits are the caller's: NB1's phi -> 0 is the Poisson, the beta-binomial's phi ->
infinity the binomial. Near them the shapes ``k``, ``a``, ``b`` and ``phi`` grow without
bound, and ``scipy.stats``' own formulas (differences of ``gammaln``) lose digits (1e-4 per
row at a shape of 1e12): each log-Gamma ratio ``log Gamma(n + s) - log Gamma(s)`` and each
polygamma difference ``psi_m(n + s) - psi_m(s)`` is taken from Stirling's and the
polygamma functions' asymptotic series above a shape of ``_SERIES_FROM``, differenced
term by term; below it from ``gammaln`` / ``digamma`` / ``polygamma`` directly. The tests
compare the values with ``scipy.stats`` where its formulas are accurate, with 50-digit
arithmetic at the extremes, and the derivatives with differences of the values.
"""

from __future__ import annotations

import numpy as np
from scipy import special

_SERIES_FROM = 1e3  # shapes from here on take the asymptotic series (error < 1e-25)


def _stirling_tail(x):
    """log Gamma(x) - [(x - 1/2) log x - x + log(2 pi) / 2], x >= _SERIES_FROM."""
    x2 = 1.0 / (x * x)
    return (1.0 / 12.0 + x2 * (-1.0 / 360.0 + x2 * (1.0 / 1260.0 - x2 / 1680.0))) / x


def lgamma_ratio(n, s):
    """log Gamma(n + s) - log Gamma(s) for counts ``n >= 0`` and shapes ``s > 0``."""
    n, s = np.broadcast_arrays(np.asarray(n, float), np.asarray(s, float))
    large = s >= _SERIES_FROM
    sd = np.where(large, 1.0, s)
    direct = special.gammaln(n + sd) - special.gammaln(sd)
    sl = np.where(large, s, _SERIES_FROM)
    # (n + s - 1/2) log(n + s) - (s - 1/2) log s - n, without its large cancellation
    series = (
        (sl - 0.5) * np.log1p(n / sl)
        + n * np.log(n + sl)
        - n
        + (_stirling_tail(n + sl) - _stirling_tail(sl))
    )
    return np.where(n == 0, 0.0, np.where(large, series, direct))


def psi_differences(n, s):
    """``psi(n + s) - psi(s)`` and ``psi_1(n + s) - psi_1(s)`` (digamma, trigamma)."""
    n, s = np.broadcast_arrays(np.asarray(n, float), np.asarray(s, float))
    large = s >= _SERIES_FROM
    sd = np.where(large, 1.0, s)
    d0 = special.digamma(n + sd) - special.digamma(sd)
    d1 = special.polygamma(1, n + sd) - special.polygamma(1, sd)
    sl = np.where(large, s, _SERIES_FROM)
    u = n + sl
    # psi(x) ~ log x - 1/(2x) - 1/(12 x^2) + 1/(120 x^4) - 1/(252 x^6)
    # psi_1(x) ~ 1/x + 1/(2 x^2) + 1/(6 x^3) - 1/(30 x^5) + 1/(42 x^7)
    # differences of 1/x and 1/x^2 in closed form; the higher terms are below rounding
    inv1 = -n / (u * sl)  # 1/u - 1/s
    inv2 = -n * (u + sl) / (u * sl) ** 2  # 1/u^2 - 1/s^2
    inv3 = u**-3 - sl**-3
    inv4 = u**-4 - sl**-4
    inv5 = u**-5 - sl**-5
    inv6 = u**-6 - sl**-6
    inv7 = u**-7 - sl**-7
    s0 = np.log1p(n / sl) - inv1 / 2.0 - inv2 / 12.0 + inv4 / 120.0 - inv6 / 252.0
    s1 = inv1 + inv2 / 2.0 + inv3 / 6.0 - inv5 / 30.0 + inv7 / 42.0
    zero = n == 0
    return (
        np.where(zero, 0.0, np.where(large, s0, d0)),
        np.where(zero, 0.0, np.where(large, s1, d1)),
    )


def negbin1(y, eta, phi, derivatives=True):
    """NB1 log p(y | eta) and its first two eta-derivatives (zeros without
    ``derivatives``), for ``0 < phi < inf``.

    With ``k = exp(eta) / phi`` (``dk / deta = k``) and ``A = psi(y + k) - psi(k) -
    log(1 + phi)``: ``d1 = k A`` and ``d2 = k A + k^2 (psi_1(y + k) - psi_1(k))``.
    """
    log_phi = np.log(phi)
    log1p_phi = np.log1p(phi)
    k = np.exp(eta - log_phi)
    logp = (
        lgamma_ratio(y, k)
        - special.gammaln(y + 1.0)
        - k * log1p_phi
        - y * (log1p_phi - log_phi)  # y log(phi / (1 + phi))
    )
    if not derivatives:
        return logp, np.zeros_like(logp), np.zeros_like(logp)
    d0, d1 = psi_differences(y, k)
    # k log(1 + phi) is mu log(1 + phi) / phi: exp(eta) times a factor near 1 for small phi
    first = k * d0 - np.exp(eta) * (log1p_phi / phi)
    return logp, first, first + k * k * d1


def negbin1_log_p0(eta, phi):
    """log P(Y = 0) = -mu log(1 + phi) / phi, and its two eta-derivatives (all equal)."""
    a = -np.exp(eta) * (np.log1p(phi) / phi)
    return a, a, a


def betabinomial(y, eta, trials, phi, derivatives=True):
    """Beta-binomial log p(y | eta) and its first two eta-derivatives (zeros without
    ``derivatives``), for ``0 < phi < inf``.

    With ``v = mu (1 - mu)`` (``da / deta = phi v = -db / deta``), ``D = [psi(y + a) -
    psi(a)] - [psi(t - y + b) - psi(b)]`` and ``E`` the same with ``psi_1`` and a plus
    sign: ``d1 = phi v D`` and ``d2 = phi v (1 - 2 mu) D + (phi v)^2 E``.
    """
    mu = special.expit(eta)
    one_minus = special.expit(-eta)
    a, b = mu * phi, one_minus * phi
    f = trials - y
    log_choose = special.gammaln(trials + 1.0) - special.gammaln(y + 1.0) - special.gammaln(f + 1.0)
    logp = log_choose + lgamma_ratio(y, a) + lgamma_ratio(f, b) - lgamma_ratio(trials, phi)
    if not derivatives:
        return logp, np.zeros_like(logp), np.zeros_like(logp)
    a0, a1 = psi_differences(y, a)
    b0, b1 = psi_differences(f, b)
    pv = phi * mu * one_minus
    D = a0 - b0
    d1 = pv * D
    d2 = -np.tanh(0.5 * eta) * d1 + pv * pv * (a1 + b1)  # 1 - 2 mu = -tanh(eta / 2)
    return logp, d1, d2
