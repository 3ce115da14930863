"""Zero-truncated counts and hurdle models (glmmTMB's ``truncated_*`` families).

A zero-truncated count has the density of a count family ``f`` given ``Y > 0``:

.. math::

    P(Y = y \\mid \\eta) = \\frac{f(y \\mid \\mu)}{1 - f(0 \\mid \\mu)}, \\qquad y \\ge 1.

A hurdle model adds a zero part: ``P(Y = 0) = pi`` and
``P(Y = y) = (1 - pi) f(y | mu) / (1 - f(0 | mu))`` for ``y > 0`` (glmmTMB's
``truncated_poisson`` / ``truncated_nbinom2`` / ``truncated_nbinom1`` with
``ziformula = ~1``). The random effects enter the count part; ``logit pi`` is a
parameter block, a constant or, with a design (glmmTMB's ``ziformula = ~ x``), one
value per row. The count family's own parameters (NB2 ``log theta``, NB1 ``log phi``)
may be per row too (a dispersion model, ``dispformula = ~ x``): every term is
elementwise in them. The two parts factorise: the zeros carry no information on the
count part.

Writing ``s = -log f(0 | mu)`` (the count family's "zero rate": ``mu`` for the
Poisson), ``log(1 - f(0)) = log s - R(s)`` with ``R(s) = -log((1 - e^{-s}) / s)``,
a function regular at ``s = 0``. The count family gives ``log s`` and its
``eta``-derivatives free of cancellation (:meth:`log_zero_rate`), and ``R`` and
its derivatives come from their Bernoulli series for small ``s`` and from closed
forms otherwise, scaled so that nothing overflows for very large means. So the
log-density and its three ``eta``-derivatives keep their relative accuracy as
``mu -> 0`` (where the truncated count tends to 1) and for large ``mu``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..blocks import HURDLE_ZERO, shift_block
from .base import (
    _ETA_MAX,
    Family,
    _weighted,
    chain_in_parameter,
    log1p_exp,
    normal_rule,
    over_nodes,
)

# below this zero rate R and its scaled derivatives come from their series
_SERIES_S = 0.5
_N_TERMS = 16
_B = special.bernoulli(_N_TERMS)
# s / expm1(s) = sum_n B_n s^n / n!; h1(s) = 1 - s / expm1(s) = sum_{n >= 1} a_n s^n
_A = np.array([-_B[n] / special.factorial(n) for n in range(1, _N_TERMS + 1)])
_N = np.arange(1, _N_TERMS + 1, dtype=float)
# central-difference step in the count family's extra parameters (log theta, log phi)
_EXTRA_STEP = 1e-5


# the four series' coefficients, one row each: R, h1, h2, h3
_COEFS = np.stack([_A / _N, _A, _A * (_N - 1.0), _A * (_N - 1.0) * (_N - 2.0)])


def _series(s):
    """``sum_n coef[n-1] s^n`` for n = 1..N of each row of :data:`_COEFS` (Horner, the
    four together): (4, *s.shape)."""
    out = np.zeros((4,) + s.shape)
    for c in _COEFS.T[::-1]:
        out += c.reshape((4,) + (1,) * s.ndim)
        out *= s
    return out


def zero_rate_terms(s, log_s):
    """``R(s)`` and the scaled derivatives ``h_k = s^k R^{(k)}(s)``, k = 1, 2, 3.

    ``R(s) = -log((1 - e^{-s}) / s)``: ``log(1 - f(0)) = log s - R(s)``. Each
    ``h_k`` is bounded (``h1`` in [0, 1)), so products with the derivatives of
    ``log s`` never overflow. Below :data:`_SERIES_S` from their series (on those rows
    only).
    """
    s = np.asarray(s, dtype=float)
    small = s < _SERIES_S
    if small.all():
        R, h1, h2, h3 = _series(s)
        return R, h1, h2, h3
    terms = np.empty((4,) + s.shape)
    if small.any():
        terms[:, small] = _series(s[small])
    big = ~small
    sb, lb = s[big], np.broadcast_to(log_s, s.shape)[big]
    e = np.exp(-sb)
    one_m = -np.expm1(-sb)  # 1 - e^{-s}
    q1 = np.exp(lb - sb) / one_m  # s q with q = 1 / expm1(s)
    q = e / one_m
    q2 = np.exp(2.0 * lb - sb) / one_m * (1.0 + q)  # s^2 q (1 + q)
    q3 = np.exp(3.0 * lb - sb) / one_m * (1.0 + q) * (1.0 + 2.0 * q)
    terms[:, big] = (lb - np.log(one_m), 1.0 - q1, -1.0 + q2, 2.0 - q3)
    R, h1, h2, h3 = terms
    return R, h1, h2, h3


# h4's series: the coefficients of sum_n a_n (n - 1)(n - 2)(n - 3) s^n
_COEFS4 = _A * (_N - 1.0) * (_N - 2.0) * (_N - 3.0)


def zero_rate_fourth(s, log_s):
    """``h4 = s^4 d^4 R / ds^4`` (:func:`zero_rate_terms`' next one; a fourth derivative
    reads it): ``-6 + s^4 q (1 + q)(1 + 6 q + 6 q^2)`` with ``q = 1 / expm1(s)``, from the
    series below :data:`_SERIES_S`."""
    s = np.asarray(s, dtype=float)
    small = s < _SERIES_S
    out = np.empty(s.shape)
    if small.any():
        ss, acc = s[small], np.zeros(int(small.sum()))
        for c in _COEFS4[::-1]:
            acc = (acc + c) * ss
        out[small] = acc
    big = ~small
    if big.any():
        sb, lb = s[big], np.broadcast_to(log_s, s.shape)[big]
        one_m = -np.expm1(-sb)
        q = np.exp(-sb) / one_m
        q4 = np.exp(4.0 * lb - sb) / one_m * (1.0 + q) * (1.0 + 6.0 * q * (1.0 + q))
        out[big] = q4 - 6.0
    return out


def log_positive_fourth(log_s, S1, S2, S3, S4):
    """The fourth ``eta``-derivative of ``log(1 - f(0)) = log s - R(s)`` (Faa di Bruno's
    formula with ``t_k = s^(k) / s``, the derivatives of ``s`` over ``s``, and the scaled
    ``h_k``): ``S4 - (h4 t1^4 + 6 h3 t1^2 t2 + h2 (3 t2^2 + 4 t1 t3) + h1 t4)``."""
    s = np.exp(log_s)
    _, h1, h2, h3 = zero_rate_terms(s, log_s)
    h4 = zero_rate_fourth(s, log_s)
    t1 = S1
    t2 = S2 + S1 * S1
    t3 = S3 + 3.0 * S1 * S2 + S1**3
    t4 = S4 + 4.0 * S1 * S3 + 3.0 * S2 * S2 + 6.0 * S1 * S1 * S2 + S1**4
    R4 = h4 * t1**4 + 6.0 * h3 * t1 * t1 * t2 + h2 * (3.0 * t2 * t2 + 4.0 * t1 * t3) + h1 * t4
    return S4 - R4


def log_positive(log_s, S1, S2, S3):
    """``log(1 - f(0))`` and its first three ``eta``-derivatives.

    ``log_s``, ``S1..S3``: ``log s`` and its ``eta``-derivatives, ``s = -log f(0)``.
    """
    s = np.exp(log_s)
    R, h1, h2, h3 = zero_rate_terms(s, log_s)
    # derivatives of s divided by s: s'/s, s''/s, s'''/s
    t1 = S1
    t2 = S2 + S1 * S1
    t3 = S3 + 3.0 * S1 * S2 + S1**3
    R1 = h1 * t1
    R2 = h2 * t1 * t1 + h1 * t2
    R3 = h3 * t1**3 + 3.0 * h2 * t1 * t2 + h1 * t3
    return log_s - R, S1 - R1, S2 - R2, S3 - R3


class Truncated(Family):
    """A count family truncated at zero (``y >= 1``); extra = the count family's.

    glmmTMB's ``truncated_poisson``, ``truncated_nbinom2``, ``truncated_nbinom1``
    without a zero part. ``mean`` is ``E[Y] = mu / (1 - f(0 | mu))``.
    """

    zero_formula = None
    latent_variance_defined = False
    # exp(beta) multiplies mu, the mean of the count family before truncation
    ratio_subject = ("The mean of the untruncated count part of {outcome}", "was")

    def __init__(self, base):
        self.base = base
        self.name = "truncated_" + base.name
        self.r_name = "truncated_" + base.r_name
        self.long_name = "zero-truncated " + base.long_name
        self.link = base.link
        self.blocks = tuple(base.blocks)
        # the truncated Poisson is an exponential family in eta: w = Var(Y) >= 0
        self.log_concave = base.name == "poisson"
        # the count family's ridge once truncated (NB2: the logarithmic series)
        self.limit_ridge = base.limit_truncated
        # the exact Laplace Hessian reads w4: the count family's and the truncation's
        self.has_fourth_derivative = bool(
            getattr(base, "has_fourth_derivative", False) and hasattr(base, "log_zero_rate_fourth")
        )

    # -- what the model is ---------------------------------------------------
    def sentence_name(self) -> str:
        return "zero-truncated " + self.base.sentence_name()

    def check_outcome(self, y, weights) -> None:
        """Zero counts have probability 0 under a zero-truncated model."""
        zeros = int(np.sum((y == 0) & (weights > 0)))
        if zeros:
            raise ValueError(
                f"y has {zeros} zero(s), but a zero-truncated count model ({self.r_name}) "
                "describes counts of at least 1. Fit the zeros too with a hurdle model "
                "(hurdle=True; glmmTMB's ziformula = ~1), or drop the zero rows if zeros "
                "cannot occur in these data."
            )

    def mean_curvature(self, y, trials, weights) -> float:
        return self.base.mean_curvature(y, trials, weights)

    def constant(self, y, trials):
        return self.base.constant(y, trials)

    def _count_extra(self, extra):
        """The count family's values: a slice of the vector, or of the tuple of per-block
        values (floats or per-row arrays) when a block has a design."""
        n_base = len(self.base.blocks)
        if isinstance(extra, tuple):
            return extra[:n_base]
        return np.asarray(extra, dtype=float)[:n_base]

    def _zero_prob(self, extra):
        return 0.0

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4``: the count family's plus the fourth eta-derivative of ``log(1 - f(0))``
        (:func:`log_positive_fourth`; the log-density is ``log f(y) - log(1 - f(0))``).
        Only where :attr:`has_fourth_derivative`."""
        w4 = self._truncated_fourth(y, eta, trials, extra)
        return w4 if weights is None else weights * w4

    def _truncated_fourth(self, y, eta, trials, extra):
        if not isinstance(extra, tuple):
            extra = np.asarray(extra, dtype=float)
        base_extra = self._count_extra(extra)
        eta = np.minimum(eta, _ETA_MAX)
        count = self.base.fourth_derivative(y, eta, trials, None, base_extra)
        rate = self.base.log_zero_rate(eta, base_extra)
        return count + log_positive_fourth(*rate, self.base.log_zero_rate_fourth(eta, base_extra))

    # -- log-density ----------------------------------------------------------
    def _truncated_derivs(self, y, eta, trials, base_extra, const):
        eta = np.minimum(eta, _ETA_MAX)
        d = self.base.derivs(y, eta, trials, None, base_extra, const)
        g0, g1, g2, g3 = log_positive(*self.base.log_zero_rate(eta, base_extra))
        return d.loglik - g0, d.d1 - g1, d.w + g2, d.w3 + g3

    def derivs(self, y, eta, trials, weights, extra, const=None):
        ll, d1, w, w3 = self._truncated_derivs(y, eta, trials, self._count_extra(extra), const)
        # a zero has probability 0 (rows of weight 0 contribute nothing)
        ll = np.where(y >= 1, ll, -np.inf)
        if weights is not None:
            ll = np.where(weights == 0, 0.0, ll)
        return _weighted(weights, ll, d1, w, w3)

    def extra_derivs(self, y, eta, trials, weights, extra, const=None):
        """Derivatives in the extra parameters of ``loglik``, ``d1`` and ``w``, each
        (n_extra, n).

        The count family's own terms come from its analytic ``extra_derivs`` where it
        has them (NB2: a finite difference of a log-density of order 1e7 would be lost
        in its rounding), from central differences otherwise; the truncation's terms
        ``log(1 - f(0))``, small and smooth, from central differences; ``logit pi``
        analytically. Every term is elementwise in the parameters' values, so with per-row
        values (a design) a shift of every row gives each row's derivative.
        """
        if not isinstance(extra, tuple):
            extra = np.asarray(extra, dtype=float)
        eta = np.minimum(eta, _ETA_MAX)
        base_extra = self._count_extra(extra)
        n_base = len(base_extra)
        dl, dd1, dw = (np.zeros((len(extra), len(eta))) for _ in range(3))
        exact = getattr(self.base, "extra_derivs", None)
        if n_base and exact is not None:
            dl[:n_base], dd1[:n_base], dw[:n_base] = exact(y, eta, trials, None, base_extra, const)
        analytic = self._truncation_in_parameter(eta, base_extra)
        for k in range(n_base):
            up = shift_block(base_extra, k, _EXTRA_STEP)
            down = shift_block(base_extra, k, -_EXTRA_STEP)
            if exact is None:
                dp = self.base.derivs(y, eta, trials, None, up, const)
                dm = self.base.derivs(y, eta, trials, None, down, const)
                dl[k] = (dp.loglik - dm.loglik) / (2 * _EXTRA_STEP)
                dd1[k] = (dp.d1 - dm.d1) / (2 * _EXTRA_STEP)
                dw[k] = (dp.w - dm.w) / (2 * _EXTRA_STEP)
            if analytic is not None:
                gp = analytic
            else:
                g_up, g_down = self._log_positive(eta, up), self._log_positive(eta, down)
                gp = [(g_up[j] - g_down[j]) / (2 * _EXTRA_STEP) for j in range(3)]
            # loglik - G0, d1 - G1, w + G2
            dl[k] -= gp[0]
            dd1[k] -= gp[1]
            dw[k] += gp[2]
        if len(extra) > n_base:  # the hurdle's logit pi
            zero = y == 0
            pi = self._zero_prob(extra)
            dl[:n_base, zero] = 0.0
            dd1[:n_base, zero] = 0.0
            dw[:n_base, zero] = 0.0
            dl[n_base] = np.where(zero, 1.0 - pi, -pi)
        if weights is not None:
            dl, dd1, dw = weights * dl, weights * dd1, weights * dw
        return dl, dd1, dw

    def _truncation_in_parameter(self, eta, base_extra, second=False):
        """The derivatives of ``G = log(1 - f(0))`` in the count family's one parameter
        ``t`` (NB2's ``log theta``, NB1's ``log phi``) and ``eta``: ``(G_t, G_et,
        G_eet)``, with ``second`` also ``(G_eeet, G_tt, G_ett, G_eett)``
        (:func:`~.base.chain_in_parameter`); None where the count family does not give
        ``log_zero_rate_extra`` (the derivatives of ``L = log s`` in ``t``) or has
        another number of parameters. ``G = L - R(e^L)``, whose derivatives in ``L`` are
        ``1 - h1``, ``-(h1 + h2)``, ``-(h1 + 3 h2 + h3)`` and ``-(h1 + 7 h2 + 6 h3 +
        h4)`` (``h_k = s^k R^(k)(s)``, :func:`zero_rate_terms`): bounded, as ``L``'s
        derivatives are, so every term keeps its accuracy for tiny and huge means."""
        more = getattr(self.base, "log_zero_rate_extra", None)
        if more is None or len(base_extra) != 1:
            return None
        (log_s, S1, S2, S3), L_t = more(eta, base_extra, second)
        s = np.exp(log_s)
        _, h1, h2, h3 = zero_rate_terms(s, log_s)
        G = (1.0 - h1, -(h1 + h2), -(h1 + 3.0 * h2 + h3))
        if second:
            h4 = zero_rate_fourth(s, log_s)
            G += (-(h1 + 7.0 * h2 + 6.0 * h3 + h4),)
        return chain_in_parameter(G, (S1, S2, S3), L_t)

    def _truncated_second(self, y, eta, trials, base_extra, const):
        """The zero-truncated count's derivatives in the count family's one parameter
        (a scalar, or one per row where the count family gives them so), unweighted:
        ``(first, second)`` as ``extra_second_derivs`` with ``with_first`` (the count
        family's minus the truncation's); None where the count family does not give them
        (on its bound, say)."""
        if len(base_extra) != 1:
            return None
        count = getattr(self.base, "extra_second_derivs", None)
        eta = np.minimum(eta, _ETA_MAX)
        count = None if count is None else count(y, eta, trials, None, base_extra, const, True)
        trunc = None if count is None else self._truncation_in_parameter(eta, base_extra, True)
        if trunc is None:
            return None
        (cl, cd, cw), (cll, cdd, cww, cw3) = count
        G_t, G_et, G_eet, G_eeet, G_tt, G_ett, G_eett = trunc
        return (cl - G_t, cd - G_et, cw + G_eet), (
            cll - G_tt,
            cdd - G_ett,
            cww + G_eett,
            cw3 + G_eeet,
        )

    def extra_second_derivs(self, y, eta, trials, weights, extra, const=None, with_first=False):
        """Second derivatives in the count family's one own parameter ``t`` (NB2's ``log
        theta``, NB1's ``log phi``; a scalar), each (n,), weighted as :meth:`derivs` (the
        contract of :func:`~sklearn_glmm._engine.laplace_hessian.extra_column`): the count
        family's ``extra_second_derivs`` minus the truncation's (``log(1 - f(0))``,
        :meth:`_truncation_in_parameter`); None where either is not given. With
        ``with_first``, ``(first, second)``: ``first`` :meth:`extra_derivs`' rows."""
        if not isinstance(extra, tuple):
            extra = np.asarray(extra, dtype=float)
        found = self._truncated_second(y, eta, trials, self._count_extra(extra), const)
        if found is None or len(extra) != 1:
            return None
        first, second = found
        if weights is not None:
            first = tuple(weights * v for v in first)
            second = tuple(weights * v for v in second)
        return (first, second) if with_first else second

    def _log_positive(self, eta, base_extra):
        eta = np.minimum(eta, _ETA_MAX)
        return log_positive(*self.base.log_zero_rate(eta, base_extra))

    # -- the distribution given eta --------------------------------------------
    def _truncated_mean(self, eta, base_extra):
        eta = np.asarray(eta, dtype=float)
        g0, g1, _, _ = self._log_positive(eta, base_extra)
        return np.exp(np.minimum(eta, _ETA_MAX) - g0), g1

    def mean(self, eta, extra=()):
        m, _ = self._truncated_mean(eta, self._count_extra(extra))
        return (1.0 - self._zero_prob(extra)) * m

    def mean_derivative(self, eta, extra=()):
        m, g1 = self._truncated_mean(eta, self._count_extra(extra))
        return (1.0 - self._zero_prob(extra)) * m * (1.0 - g1)

    def mean_over_normal(self, eta, var, extra=()):
        """E[Y] over a normal ``eta`` with mean ``eta`` and variance ``var``.

        The truncated mean is ``mu + c(eta)`` with ``c = mu / expm1(s)`` (``s`` the zero
        rate): ``mu``'s average is ``exp(eta + var / 2)``, exactly, and ``c`` (at most 1
        for the Poisson, growing like ``mu^(1 - theta)`` for NB2 with ``theta < 1``) is
        averaged by the rule of :func:`~.base.normal_rule` for a function growing at most
        like ``exp(eta)``. (A fixed Gauss-Hermite rule on the whole mean erred by up to
        1e-4 relative at an SD of 2-3 and 1e-3 at 8.) Per-row values of the family's
        parameters need a 1-D ``eta``.
        """
        eta = np.asarray(eta, dtype=float)
        var = np.broadcast_to(np.clip(np.asarray(var, dtype=float), 0.0, None), eta.shape)
        if np.all(var == 0):
            return self.mean(eta, extra)
        base_extra = self._count_extra(extra)
        sd = np.sqrt(var)
        rule = normal_rule(float(sd.max()), growth=1.0)
        excess = over_nodes(self._excess, eta, sd, rule, base_extra)
        mu = self.base.mean(eta + var / 2.0, base_extra)
        return (1.0 - self._zero_prob(extra)) * (mu + excess)

    def _excess(self, eta, base_extra):
        """``c = mu / expm1(s)``: the truncated mean's excess over the count family's
        ``mu`` (``s`` the zero rate), from ``log s`` without overflow."""
        eta = np.minimum(eta, _ETA_MAX)
        log_s = self.base.log_zero_rate(eta, base_extra)[0]
        s = np.exp(np.minimum(log_s, _ETA_MAX))
        # log expm1(s): s + log1p(-exp(-s)) for large s (expm1 overflows), and
        # log s + log(expm1(s) / s) for small s (s underflows to 0 before log s does)
        large = s > 1.0
        s_big, s_small = np.where(large, s, 1.0), np.where(large, 1.0, s)
        ratio = np.divide(np.expm1(s_small), s_small, out=np.ones_like(s_small), where=s_small > 0)
        log_em1 = np.where(large, s_big + np.log1p(-np.exp(-s_big)), log_s + np.log(ratio))
        return np.exp(eta - log_em1)

    def _truncated_variance(self, eta, base_extra):
        eta = np.minimum(np.asarray(eta, dtype=float), _ETA_MAX)
        m, _ = self._truncated_mean(eta, base_extra)
        mu = self.base.mean(eta)
        log_s = self.base.log_zero_rate(eta, base_extra)[0]
        s = np.exp(log_s)
        _, h1, _, _ = zero_rate_terms(s, log_s)
        # Var = m (V / mu - mu / expm1(s)), and mu / expm1(s) = (mu / s)(1 - h1)
        ratio = self.base.variance(mu, 1.0, base_extra) / np.where(mu > 0, mu, 1.0)
        mu_s = np.exp(np.minimum(eta, _ETA_MAX) - log_s)
        return m * np.maximum((ratio - mu_s) + mu_s * h1, 0.0), m

    def variance_eta(self, eta, trials, extra):
        pi = self._zero_prob(extra)
        v, m = self._truncated_variance(eta, self._count_extra(extra))
        return (1.0 - pi) * v + pi * (1.0 - pi) * m * m

    def pmf_eta(self, k, eta, extra):
        k, eta = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(eta, dtype=float))
        base_extra = self._count_extra(extra)
        kk = np.where(k >= 1, k, 1.0)
        ll = self._truncated_derivs(kk, eta, None, base_extra, None)[0]
        pi = self._zero_prob(extra)
        return np.where(k >= 1, (1.0 - pi) * np.exp(ll), pi * (k == 0))

    def cdf_eta(self, y, eta, trials, extra):
        y, eta = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(eta, dtype=float))
        base_extra = self._count_extra(extra)
        # P(Y > y | Y > 0) = S(y) / (1 - f(0)): no cancellation when f(0) is near 1
        mu = self.base.mean(np.minimum(eta, _ETA_MAX))
        with np.errstate(divide="ignore"):
            log_sf = np.log(self.base.sf(np.maximum(y, 0.0), mu, base_extra))
        upper = np.exp(np.minimum(log_sf - self._log_positive(eta, base_extra)[0], 0.0))
        pi = self._zero_prob(extra)
        return np.where(y >= 0, 1.0 - (1.0 - pi) * np.where(y >= 1, upper, 1.0), 0.0)

    def sample_eta(self, eta, trials, extra, rng):
        """Draws by inversion of the truncated survival function (exact however
        rarely the count part is positive)."""
        eta = np.minimum(np.asarray(eta, dtype=float), _ETA_MAX)
        base_extra = self._count_extra(extra)
        mu = self.base.mean(eta)
        # Y = min{y : S(y) <= V (1 - f(0))}, V uniform: S(0) = 1 - f(0) > target
        target = rng.random(eta.shape) * np.exp(self._log_positive(eta, base_extra)[0])

        def above(k):
            return self.base.sf(k, mu, base_extra) > target

        lo = np.zeros(eta.shape)
        hi = np.ones(eta.shape)
        for _ in range(64):  # doubling until S(hi) <= target
            up = above(hi)
            if not up.any():
                break
            lo = np.where(up, hi, lo)
            hi = np.where(up, 2.0 * hi, hi)
        while np.any(hi - lo > 1):
            mid = np.floor((lo + hi) / 2.0)
            up = above(mid)
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        pi = self._zero_prob(extra)
        if np.ndim(pi) == 0 and pi == 0.0:
            return hi
        return np.where(rng.random(eta.shape) < pi, 0.0, hi)

    # -- the distribution given the mean (for callers holding a mean) ----------
    def _eta_from_mean(self, mu, extra):
        """The ``eta`` whose mean is ``mu`` (the mean increases with ``eta``); NaN where
        ``mu`` is below the model's smallest mean ``1 - pi``."""
        mu = np.asarray(mu, dtype=float)
        lo = np.full(mu.shape, -50.0)
        hi = np.maximum(np.log(np.maximum(mu, 1e-300)) + 1.0, lo + 1.0)
        hi = np.minimum(hi, _ETA_MAX)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            below = self.mean(mid, extra) < mu
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            if np.all(hi - lo < 1e-13 * np.maximum(1.0, np.abs(hi))):
                break
        eta = 0.5 * (lo + hi)
        floor = (1.0 - self._zero_prob(extra)) * (1.0 + 1e-12)
        return np.where(mu >= floor, eta, np.nan)

    def variance(self, mu, trials, extra):
        return self.variance_eta(self._eta_from_mean(mu, extra), trials, extra)

    def pmf(self, k, mu, extra):
        return self.pmf_eta(k, self._eta_from_mean(mu, extra), extra)

    def cdf(self, y, mu, trials, extra):
        return self.cdf_eta(y, self._eta_from_mean(mu, extra), trials, extra)

    def sample(self, mu, trials, extra, rng):
        return self.sample_eta(self._eta_from_mean(mu, extra), trials, extra, rng)

    def unit_deviance(self, y, mu, trials, extra):
        """The count family's deviance of the mean ``mu`` (used for D^2 only)."""
        return self.base.unit_deviance(y, mu, trials, self._count_extra(extra))


class Hurdle(Truncated):
    """A hurdle model: P(Y = 0) = pi, and the zero-truncated count family above zero.

    extra = [count family's..., logit pi], or a tuple of per-block values (floats
    or per-row arrays) when a block has a design: ``logit pi`` per row with
    ``ziformula = ~ x``. The zeros' log-density ``log pi`` does not depend on ``eta``;
    a positive count's is ``log(1 - pi)`` plus the truncated count's.
    """

    zero_formula = "~1"

    def __init__(self, base):
        super().__init__(base)
        self.name = "hurdle_" + base.name
        self.long_name = "hurdle " + base.long_name
        self.blocks = tuple(base.blocks) + (HURDLE_ZERO,)

    @staticmethod
    def rows_reading_eta(y):
        """The rows whose log-density reads the linear predictor (and with it the random
        effects): the positive counts; a zero's is ``log pi`` alone."""
        return np.asarray(y) > 0

    def sentence_name(self) -> str:
        return "hurdle " + self.base.sentence_name()

    def check_outcome(self, y, weights) -> None:
        """Without positive counts the count part is not identified (without zeros the
        probability of a zero is a boundary estimate, 0)."""
        used = weights > 0
        zeros = int(np.sum((y == 0) & used))
        if zeros == int(np.sum(used)):
            raise ValueError(
                "y has only zeros: the count part of a hurdle model is not identified. "
                "A hurdle model needs some positive counts."
            )

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4``: 0 for a zero (``log pi`` does not read ``eta``), the truncated count's
        for a positive count."""
        w4 = np.where(np.asarray(y) == 0, 0.0, self._truncated_fourth(y, eta, trials, extra))
        return w4 if weights is None else weights * w4

    def extra_second_derivs(self, y, eta, trials, weights, extra, const=None, with_first=False):
        """Second derivatives in ``l = logit pi`` where it is the family's one own
        parameter (a count family without parameters of its own; None otherwise; a
        probability per row, with a zero-part design, row by row), each (n,), weighted as
        :meth:`derivs` (the contract of
        :func:`~sklearn_glmm._engine.laplace_hessian.extra_column`): ``l`` moves neither
        ``d1`` nor ``w`` (the zero part does not read ``eta``), and ``loglik_ll = -pi (1 -
        pi)`` for every row (``log pi`` and ``log(1 - pi)`` alike). With ``with_first``,
        ``(first, second)``: ``first`` :meth:`extra_derivs`' rows, ``1 - pi`` or ``-pi``,
        0, 0."""
        if not isinstance(extra, tuple):
            extra = np.asarray(extra, dtype=float)
        if len(self._count_extra(extra)):
            return None
        pi = self._zero_prob(extra)
        n = np.shape(y)
        zeros = np.zeros(n)
        second = (zeros - pi * (1.0 - pi), zeros, zeros, zeros)
        if with_first:
            second = (np.where(np.asarray(y) == 0, 1.0 - pi, -pi), zeros, zeros) + second
        if weights is not None:
            second = tuple(weights * v for v in second)
        return (second[:3], second[3:]) if with_first else second

    def extra_hessian_derivs(self, y, eta, trials, weights, extra, const=None):
        """The derivatives the closed-form Hessian's rows of the count family's one
        parameter ``t`` (a scalar) and ``l = logit pi`` (a scalar, or one per row with a
        zero-part design) read (None otherwise), in the
        contract of :meth:`ZeroInflated.extra_hessian_derivs`: a positive count's in ``t``
        are the zero-truncated count's (:meth:`Truncated._truncated_second`), a zero's 0;
        in ``l`` only ``loglik`` moves (``1 - pi`` or ``-pi``, and ``-pi (1 - pi)``); the
        two parts separate, so the cross derivatives are 0."""
        if not isinstance(extra, tuple):
            extra = np.asarray(extra, dtype=float)
        base_extra = self._count_extra(extra)
        if len(extra) != 2:
            return None
        found = self._truncated_second(y, eta, trials, base_extra, const)
        if found is None:
            return None
        (tl, td, tw), (tll, tdd, tww, tw3) = found
        zero = np.asarray(y) == 0
        pi = self._zero_prob(extra)
        nil = np.zeros(np.shape(y))

        def count(v):
            return np.where(zero, 0.0, v)

        first = (
            np.stack([count(tl), np.where(zero, 1.0 - pi, -pi)]),
            np.stack([count(td), nil]),
            np.stack([count(tw), nil]),
        )
        w3_e = np.stack([count(tw3), nil])
        second = (
            np.stack([np.stack([count(tll), nil]), np.stack([nil, nil - pi * (1.0 - pi)])]),
            np.stack([np.stack([count(tdd), nil]), np.stack([nil, nil])]),
            np.stack([np.stack([count(tww), nil]), np.stack([nil, nil])]),
        )
        if weights is not None:
            first = tuple(weights * v for v in first)
            w3_e = weights * w3_e
            second = tuple(weights * v for v in second)
        return first, w3_e, second

    def _zero_prob(self, extra):
        """pi: a float, or one per row (``extra`` a tuple whose last entry is an array)."""
        logit = extra[-1]
        if np.ndim(logit):
            return special.expit(np.asarray(logit, dtype=float))
        return float(special.expit(logit))

    def derivs(self, y, eta, trials, weights, extra, const=None):
        if not isinstance(extra, tuple):
            extra = np.asarray(extra, dtype=float)
        ll, d1, w, w3 = self._truncated_derivs(y, eta, trials, self._count_extra(extra), const)
        logit_pi = extra[-1]
        log_pi = -log1p_exp(-logit_pi)
        log1m_pi = -log1p_exp(logit_pi)
        zero = y == 0
        loglik = np.where(zero, log_pi, log1m_pi + ll)
        d1 = np.where(zero, 0.0, d1)
        w = np.where(zero, 0.0, w)
        w3 = np.where(zero, 0.0, w3)
        return _weighted(weights, loglik, d1, w, w3)
