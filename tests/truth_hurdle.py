"""Zero-truncated counts, hurdle models and zero parts or NB2 dispersions with predictors,
for ``truth.py``: the truncation's term and the count families' zero rates, with their
first two derivatives in the linear predictor, from numpy and scipy alone (nothing here
imports ``sklearn_glmm``).

A zero-truncated count has the density of a count family ``f`` given ``Y > 0``; a hurdle
model adds ``P(Y = 0) = pi`` (glmmTMB's ``truncated_*`` families with a ``ziformula``):

.. math::

    \\log P(Y = y) = \\log(1 - \\pi) + \\log f(y \\mid \\mu) - \\log(1 - f(0 \\mid \\mu)),
    \\quad y \\ge 1; \\qquad \\log P(Y = 0) = \\log \\pi,

with the random effect in ``mu = exp(eta)`` alone (a zero's density does not read
``eta``), and ``logit pi`` a constant or one value per row (``Z gamma``). Zero inflation
with predictors mixes a per-row point mass at zero into ``f``.

The truncation's term is written with the zero rate ``s = -log f(0 | mu)`` (``mu`` for
the Poisson, ``theta log(1 + mu / theta)`` for NB2, ``mu log(1 + phi) / phi`` for NB1):
``log(1 - f(0)) = log(1 - e^{-s})``, taken as ``log s + log((1 - e^{-s}) / s)`` for
``s <= 1`` and ``log1p(-e^{-s})`` above, from ``log s`` (given by each family in closed
form, free of underflow as ``mu -> 0``, where the truncated count tends to 1 and its
log-density to a finite limit). With ``r = s / expm1(s)`` and ``l1``, ``l2`` the
``eta``-derivatives of ``log s``:

.. math::

    \\frac{d}{d\\eta} \\log(1 - e^{-s}) = l_1 r, \\qquad
    \\frac{d^2}{d\\eta^2} \\log(1 - e^{-s}) = l_2 r + l_1^2 r (1 - s - r).

(The library computes the same term from a Bernoulli series of ``R(s) = -log((1 -
e^{-s}) / s)``; the two are compared in ``test_fuzz_truth_hurdle.py``, and with
``scipy.stats`` there.)
"""

from __future__ import annotations

import numpy as np
from scipy import special


def positive_part(log_s, l1, l2):
    """``log(1 - e^{-s})`` (``log P(Y > 0)``) and its two ``eta``-derivatives, from ``log
    s`` and its derivatives ``l1``, ``l2`` (arrays of one shape)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        s = np.exp(log_s)
        small = s <= 1.0
        s_small = np.where(small & (s > 0), s, 1.0)
        s_big = np.where(small, 2.0, s)
        # log((1 - e^{-s}) / s), 0 in the limit s -> 0
        log_ratio = np.where(s > 0, np.log(-np.expm1(-s_small) / s_small), 0.0)
        g = np.where(small, log_s + log_ratio, np.log1p(-np.exp(-s_big)))
        # r = s / expm1(s): 1 at s = 0, 0 as s -> inf
        s_mid = np.minimum(s_big, 700.0)
        r_big = np.where(s_big < 700.0, s_mid / np.expm1(s_mid), 0.0)
        r = np.where(small, np.where(s > 0, s_small / np.expm1(s_small), 1.0), r_big)
        g1 = l1 * r
        # l1^2 r (1 - s - r): s r -> 0 as s -> inf (written as such, no inf * 0)
        g2 = l2 * r + l1 * l1 * (r * (1.0 - r) - np.where(r > 0, s * r, 0.0))
    return g, g1, g2


def poisson_zero_rate(eta):
    """``log s`` of the Poisson (``s = mu``) and its two derivatives."""
    eta = np.asarray(eta, dtype=float)
    return eta, np.ones_like(eta), np.zeros_like(eta)


def negbin1_zero_rate(eta, phi):
    """``log s`` of NB1 (``s = mu log(1 + phi) / phi``; ``phi = 0`` the Poisson)."""
    eta = np.asarray(eta, dtype=float)
    c = 0.0 if phi == 0.0 else np.log(np.log1p(phi) / phi)
    return eta + c, np.ones_like(eta), np.zeros_like(eta)


def _log1p_minus_x(x):
    """``log1p(x) - x`` for ``x >= 0`` without cancellation for small ``x``."""
    xs = np.where(x < 1e-3, x, 0.0)
    series = xs * xs * (-0.5 + xs * (1.0 / 3.0 + xs * (-0.25 + xs * 0.2)))
    return np.where(x < 1e-3, series, np.log1p(np.where(x < 1e-3, 1.0, x)) - x)


def negbin2_zero_rate(eta, theta):
    """``log s`` of NB2 (``s = theta log(1 + x)``, ``x = mu / theta``) and its two
    derivatives: ``l1 = x / ((1 + x) log1p(x))``, ``l2 = x (log1p(x) - x) / ((1 + x)
    log1p(x))^2``. ``theta`` a number or an array broadcasting with ``eta``; ``inf`` is
    the Poisson."""
    eta = np.asarray(eta, dtype=float)
    theta = np.broadcast_to(np.asarray(theta, dtype=float), eta.shape)
    finite = np.isfinite(theta)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        log_theta = np.log(np.where(finite, theta, 1.0))
        z = eta - log_theta  # log x
        x = np.exp(z)
        ell = np.logaddexp(0.0, z)  # log1p(x)
        # log1p(x) / x: 1 where x underflows
        ratio = np.where(x > 0, ell / np.where(x > 0, x, 1.0), 1.0)
        tiny = z < -30.0  # log(log1p(x)) = z + log(log1p(x) / x), x far below rounding
        log_s = log_theta + np.where(tiny, z + np.log(ratio), np.log(ell))
        p = special.expit(z)  # x / (1 + x)
        l1 = np.where(tiny, 1.0 / ((1.0 + x) * ratio), p / ell)
        # (log1p(x) - x) / (1 + x), then times x / ((1 + x) log1p(x)^2) (= 1 / ((1 + x) ell
        # ratio))
        diff = np.where(x < 1e-3, _log1p_minus_x(x) / (1.0 + x), ell * special.expit(-z) - p)
        l2 = np.where(x < 1e-3, diff / ((1.0 + x) * ell * ratio), p * diff / (ell * ell))
        l2 = np.where(x > 0, l2, 0.0)
    pois = poisson_zero_rate(eta)
    return tuple(np.where(finite, v, pv) for v, pv in zip((log_s, l1, l2), pois))


def truncate(count, zero_rate):
    """The zero-truncated log-density and its derivatives: the count family's ``(log f,
    d1, d2)`` less :func:`positive_part` of its zero rate."""
    g, g1, g2 = positive_part(*zero_rate)
    return count[0] - g, count[1] - g1, count[2] - g2


def hurdle(y, truncated, logit_pi):
    """The hurdle's log-density and derivatives: ``log pi`` for a zero (free of ``eta``),
    ``log(1 - pi)`` plus the truncated count's otherwise (``logit_pi`` a number or per
    row)."""
    log_pi = -np.logaddexp(0.0, -logit_pi)
    log_1m = -np.logaddexp(0.0, logit_pi)
    zero = y == 0
    logp = np.where(zero, log_pi, log_1m + truncated[0])
    return logp, np.where(zero, 0.0, truncated[1]), np.where(zero, 0.0, truncated[2])


def zero_inflate(y, count, zero_rate, logit_pi):
    """Zero inflation with a per-row probability: ``pi 1[y = 0] + (1 - pi) f(y)``, with
    ``log f(0) = -s`` from the zero rate."""
    log_s, l1, l2 = zero_rate
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        s = np.exp(log_s)
        a, a1, a2 = -s, -s * l1, -s * (l2 + l1 * l1)  # log f(0) and its derivatives
        log_pi = -np.logaddexp(0.0, -logit_pi)
        log_1m = -np.logaddexp(0.0, logit_pi)
        lz = np.logaddexp(log_pi, log_1m + a)
        r = np.exp(log_1m + a - lz)  # P(the zero came from the count part)
        zero = y == 0
        logp = np.where(zero, lz, log_1m + count[0])
        d1 = np.where(zero, r * a1, count[1])
        d2 = np.where(zero, r * a2 + r * (1.0 - r) * a1**2, count[2])
    return logp, d1, d2
