"""Latent distributions of cumulative link models: ``P(Y <= j) = F(alpha_j - eta)``.

Each link gives, stably in both tails, ``log F``, ``log S`` (``S = 1 - F``),
``log f`` and the ratios ``f'/f`` and ``f''/f`` of its density; the ordinal family
builds every derivative of the log-density from these. The definitions are those
of R's ``ordinal::clm``: ``cloglog`` is ``F(x) = 1 - exp(-exp(x))`` and ``loglog``
is ``F(x) = exp(-exp(-x))``.

Example
-------
>>> import numpy as np
>>> from sklearn_glmm._engine.families.ordinal_links import make_ordinal_link
>>> link = make_ordinal_link("probit")
>>> round(float(np.exp(link.log_cdf(np.array(0.0)))), 3)
0.5
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..links import Link
from .base import log1p_exp

_X_MAX = 700.0  # exp(700) is finite in float64
_CAUCHIT_MAX = 1e150  # x^2 stays finite


class OrdinalLink(Link):
    """A latent distribution ``F``: link ``F^{-1}``, inverse ``F``, and the tail-stable pieces."""

    log_concave = True
    # F(-x) = S(x) (logit, probit, cauchit): ``log_sf(x)`` is ``log_cdf(-x)`` and its
    # k-th derivative ``(-1)^k`` times ``log_cdf``'s at ``-x``, to the bit
    symmetric = False

    def inverse(self, eta):
        return np.exp(self.log_cdf(np.asarray(eta, dtype=float)))

    def inverse_derivative(self, eta):
        return np.exp(self.log_pdf(np.asarray(eta, dtype=float)))

    def log_cdf(self, x):
        raise NotImplementedError

    def log_sf(self, x):
        raise NotImplementedError

    def log_pdf(self, x):
        raise NotImplementedError

    def dlog_pdf(self, x):
        """``f'(x) / f(x)``."""
        raise NotImplementedError

    def d2_over_pdf(self, x):
        """``f''(x) / f(x)``."""
        raise NotImplementedError

    def log_cdf_derivs(self, x):
        """First three derivatives of ``log F`` at ``x``.

        From ``r = f / F``, ``a = f'/f`` and ``b = f''/f``: ``r``, ``r (a - r)``,
        ``r (b - 3 a r + 2 r^2)``; links with exponential tails override this with
        closed forms free of cancellation.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            r = np.exp(self.log_pdf(x) - self.log_cdf(x))
        a, b = self.dlog_pdf(x), self.d2_over_pdf(x)
        return r, r * (a - r), r * (b - 3.0 * a * r + 2.0 * r * r)

    def log_sf_derivs(self, x):
        """First three derivatives of ``log S`` at ``x`` (``q = f / S``): ``-q``,
        ``-q (a + q)``, ``-q (b + 3 a q + 2 q^2)``."""
        with np.errstate(over="ignore", invalid="ignore"):
            q = np.exp(self.log_pdf(x) - self.log_sf(x))
        a, b = self.dlog_pdf(x), self.d2_over_pdf(x)
        return -q, -q * (a + q), -q * (b + 3.0 * a * q + 2.0 * q * q)

    def d3_over_pdf(self, x):
        """``f^(3)(x) / f(x)``."""
        raise NotImplementedError

    def log_cdf_d4(self, x):
        """The fourth derivative of ``log F`` at ``x``: ``r (c - 4 b r - 3 a^2 r + 12 a
        r^2 - 6 r^3)`` with ``c = f^(3) / f`` (:meth:`log_cdf_derivs`' ``r, a, b``)."""
        with np.errstate(over="ignore", invalid="ignore"):
            r = np.exp(self.log_pdf(x) - self.log_cdf(x))
        a, b, c = self.dlog_pdf(x), self.d2_over_pdf(x), self.d3_over_pdf(x)
        return r * (c - 4.0 * b * r - 3.0 * a * a * r + 12.0 * a * r * r - 6.0 * r**3)

    def log_sf_d4(self, x):
        """The fourth derivative of ``log S`` at ``x``: ``-q (c + 4 b q + 3 a^2 q + 12 a
        q^2 + 6 q^3)`` (``q = f / S``)."""
        with np.errstate(over="ignore", invalid="ignore"):
            q = np.exp(self.log_pdf(x) - self.log_sf(x))
        a, b, c = self.dlog_pdf(x), self.d2_over_pdf(x), self.d3_over_pdf(x)
        return -q * (c + 4.0 * b * q + 3.0 * a * a * q + 12.0 * a * q * q + 6.0 * q**3)

    def log_cdf_d1(self, x):
        """``d log F / dx = f / F`` alone (the first of :meth:`log_cdf_derivs`)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return np.exp(self.log_pdf(x) - self.log_cdf(x))

    def log_sf_d1(self, x):
        """``d log S / dx = -f / S`` alone (the first of :meth:`log_sf_derivs`)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return -np.exp(self.log_pdf(x) - self.log_sf(x))


class OrdinalLogit(OrdinalLink):
    symmetric = True
    name = "logit"
    scale_name = "log-odds"
    ratio_name = "odds ratio"  # of a higher class, the same at every cut
    latent_variance = float(np.pi**2 / 3.0)

    def link(self, mu):
        return special.logit(mu)

    def log_cdf(self, x):
        return -log1p_exp(-x)

    def log_sf(self, x):
        return -log1p_exp(x)

    def log_pdf(self, x):
        return -log1p_exp(-x) - log1p_exp(x)

    def dlog_pdf(self, x):
        return -np.tanh(0.5 * x)  # 1 - 2F

    def d2_over_pdf(self, x):
        t = np.tanh(0.5 * x)
        return t * t - 2.0 * np.exp(self.log_pdf(x))

    def log_cdf_derivs(self, x):
        F, S = special.expit(x), special.expit(-x)
        f = F * S
        return S, -f, -f * (S - F)

    def log_sf_derivs(self, x):
        F, S = special.expit(x), special.expit(-x)
        f = F * S
        return -F, -f, -f * (S - F)

    def d3_over_pdf(self, x):
        a = self.dlog_pdf(x)
        return a * (self.d2_over_pdf(x) - 6.0 * np.exp(self.log_pdf(x)))

    def log_cdf_d4(self, x):
        # d/dx of -f (S - F), with f' = f (S - F) and (S - F)' = -2 f
        F, S = special.expit(x), special.expit(-x)
        f = F * S
        return f * (2.0 * f - (S - F) ** 2)

    def log_sf_d4(self, x):
        return self.log_cdf_d4(-x)

    def log_cdf_d1(self, x):
        return special.expit(-x)

    def log_sf_d1(self, x):
        return -special.expit(x)


class OrdinalProbit(OrdinalLink):
    symmetric = True
    name = "probit"
    scale_name = "probit"
    ratio_name = None
    latent_variance = 1.0

    def link(self, mu):
        return special.ndtri(mu)

    def log_cdf(self, x):
        return special.log_ndtr(x)

    def log_sf(self, x):
        return special.log_ndtr(-x)

    def log_pdf(self, x):
        return -0.5 * x * x - 0.5 * np.log(2.0 * np.pi)

    def dlog_pdf(self, x):
        return -x

    def d2_over_pdf(self, x):
        return x * x - 1.0

    def log_cdf_derivs(self, x):
        # the inverse Mills ratio m = phi / Phi and its derivatives, as the binomial probit
        m = np.exp(self.log_pdf(x) - special.log_ndtr(x))
        d2 = -m * (x + m)
        return m, d2, -d2 * (x + m) - m * (1.0 + d2)

    def log_sf_derivs(self, x):
        d1, d2, d3 = self.log_cdf_derivs(-x)
        return -d1, d2, -d3

    def d3_over_pdf(self, x):
        return x * (3.0 - x * x)

    def log_cdf_d4(self, x):
        # one derivative past log_cdf_derivs' third (m' = d2)
        m, d2, d3 = self.log_cdf_derivs(x)
        return -d3 * (x + 2.0 * m) - 2.0 * d2 * (1.0 + d2)

    def log_sf_d4(self, x):
        return self.log_cdf_d4(-x)

    def log_cdf_d1(self, x):
        return np.exp(self.log_pdf(x) - special.log_ndtr(x))

    def log_sf_d1(self, x):
        return -self.log_cdf_d1(-x)


class OrdinalCloglog(OrdinalLink):
    """``F(x) = 1 - exp(-exp(x))`` (the Gumbel minimum; clm's ``cloglog``)."""

    name = "cloglog"
    scale_name = "complementary log-log"
    ratio_name = None
    latent_variance = float(np.pi**2 / 6.0)

    def link(self, mu):
        return np.log(-np.log1p(-np.asarray(mu)))

    def log_cdf(self, x):
        e = np.exp(np.minimum(x, _X_MAX))
        return np.log(-np.expm1(-e))

    def log_sf(self, x):
        return -np.exp(np.minimum(x, _X_MAX))

    def log_pdf(self, x):
        x = np.minimum(x, _X_MAX)
        return x - np.exp(x)

    def dlog_pdf(self, x):
        return 1.0 - np.exp(np.minimum(x, _X_MAX))

    def d2_over_pdf(self, x):
        e = np.exp(np.minimum(x, _X_MAX))
        return (1.0 - e) ** 2 - e

    def log_cdf_derivs(self, x):
        # g = u / expm1(u) = d log F / dx with u = exp(x); g' = g (1 - u - g)
        u = np.exp(np.minimum(x, _X_MAX))
        g = _cloglog_ratio(u)
        dg = g * (1.0 - u - g)
        return g, dg, dg * (1.0 - u - g) - g * (u + dg)

    def log_sf_derivs(self, x):
        u = -np.exp(np.minimum(x, _X_MAX))  # log S = -exp(x)
        return u, u, u

    def d3_over_pdf(self, x):
        u = np.exp(np.minimum(x, _X_MAX))
        a = 1.0 - u
        return a * ((1.0 - u) ** 2 - u) - u * (2.0 * a + 1.0)

    def log_cdf_d4(self, x):
        # one derivative past log_cdf_derivs' third, with u' = u and g' = dg
        u = np.exp(np.minimum(x, _X_MAX))
        g, dg, d3 = self.log_cdf_derivs(x)
        return d3 * (1.0 - u - 2.0 * g) - 2.0 * dg * (u + dg) - g * u

    def log_sf_d4(self, x):
        return -np.exp(np.minimum(x, _X_MAX))

    def log_cdf_d1(self, x):
        return _cloglog_ratio(np.exp(np.minimum(x, _X_MAX)))

    def log_sf_d1(self, x):
        return -np.exp(np.minimum(x, _X_MAX))


class OrdinalLoglog(OrdinalLink):
    """``F(x) = exp(-exp(-x))`` (the Gumbel maximum; clm's ``loglog``)."""

    name = "loglog"
    scale_name = "log-log"
    ratio_name = None
    latent_variance = float(np.pi**2 / 6.0)

    def link(self, mu):
        return -np.log(-np.log(np.asarray(mu)))

    def log_cdf(self, x):
        return -np.exp(np.minimum(-x, _X_MAX))

    def log_sf(self, x):
        e = np.exp(np.minimum(-x, _X_MAX))
        return np.log(-np.expm1(-e))

    def log_pdf(self, x):
        x = np.maximum(x, -_X_MAX)
        return -x - np.exp(-x)

    def dlog_pdf(self, x):
        return np.exp(np.minimum(-x, _X_MAX)) - 1.0

    def d2_over_pdf(self, x):
        e = np.exp(np.minimum(-x, _X_MAX))
        return (e - 1.0) ** 2 - e

    def log_cdf_derivs(self, x):
        e = np.exp(np.minimum(-x, _X_MAX))  # log F = -exp(-x)
        return e, -e, e

    def log_sf_derivs(self, x):
        # S(x) is the cloglog's F(-x)
        d1, d2, d3 = _CLOGLOG.log_cdf_derivs(-x)
        return -d1, d2, -d3

    def d3_over_pdf(self, x):
        e = np.exp(np.minimum(-x, _X_MAX))
        a = e - 1.0
        return a * ((e - 1.0) ** 2 - e) + e * (1.0 - 2.0 * a)

    def log_cdf_d4(self, x):
        return -np.exp(np.minimum(-x, _X_MAX))  # log F = -exp(-x)

    def log_sf_d4(self, x):
        return _CLOGLOG.log_cdf_d4(-x)

    def log_cdf_d1(self, x):
        return np.exp(np.minimum(-x, _X_MAX))

    def log_sf_d1(self, x):
        return -_CLOGLOG.log_cdf_d1(-x)


class OrdinalCauchit(OrdinalLink):
    """``F(x) = 1/2 + arctan(x) / pi``: heavy tails, not log-concave."""

    symmetric = True
    name = "cauchit"
    scale_name = "cauchit"
    ratio_name = None
    latent_variance = None
    log_concave = False

    def link(self, mu):
        return np.tan(np.pi * (np.asarray(mu) - 0.5))

    def log_cdf(self, x):
        # arctan2(1, -x) / pi is F(x) without cancellation in the lower tail
        return np.log(np.arctan2(1.0, -x) / np.pi)

    def log_sf(self, x):
        return np.log(np.arctan2(1.0, x) / np.pi)

    def log_pdf(self, x):
        x = np.clip(x, -_CAUCHIT_MAX, _CAUCHIT_MAX)
        return -np.log(np.pi) - np.log1p(x * x)

    def dlog_pdf(self, x):
        x = np.clip(x, -_CAUCHIT_MAX, _CAUCHIT_MAX)
        return -2.0 * x / (1.0 + x * x)

    def d2_over_pdf(self, x):
        x = np.clip(x, -_CAUCHIT_MAX, _CAUCHIT_MAX)
        s = 1.0 + x * x
        return (6.0 * x * x - 2.0) / s / s

    def d3_over_pdf(self, x):
        x = np.clip(x, -_CAUCHIT_MAX, _CAUCHIT_MAX)
        s = 1.0 + x * x
        return 24.0 * (x / s) * ((1.0 - x * x) / s) / s


def _cloglog_ratio(u):
    """``u / expm1(u)`` (1 as ``u`` goes to 0): the cloglog's ``d log F / dx`` at ``x =
    log u``."""
    with np.errstate(over="ignore"):
        return np.where(u > 1e-300, u / np.expm1(np.maximum(u, 1e-300)), 1.0)


_CLOGLOG = OrdinalCloglog()

ORDINAL_LINKS = {
    cls.name: cls
    for cls in (OrdinalLogit, OrdinalProbit, OrdinalCloglog, OrdinalLoglog, OrdinalCauchit)
}


def make_ordinal_link(name: str) -> OrdinalLink:
    """The latent distribution called ``name`` (clm's link names)."""
    try:
        return ORDINAL_LINKS[name]()
    except KeyError:
        raise ValueError(
            f"unknown link {name!r} for an ordinal model; choose one of {sorted(ORDINAL_LINKS)}."
        ) from None
