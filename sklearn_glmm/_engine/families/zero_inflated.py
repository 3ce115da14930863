"""Zero inflation around a count family: a constant probability or one per row."""

from __future__ import annotations

import numpy as np
from scipy import special

from ..blocks import ZERO_INFLATION, shift_block
from .base import Family, _weighted, chain_in_parameter, log1p_exp


class ZeroInflated(Family):
    """Zero-inflation around a count family; extra = [base..., logit pi].

    P(Y = 0) = pi + (1 - pi) f(0), P(Y = k) = (1 - pi) f(k) for k > 0.
    ``logit pi`` is a scalar (a constant probability) or, when the zero-inflation
    block has a design (``ziformula = ~ x``), one value per row: ``extra`` is then a
    tuple whose last entry is an array broadcasting against ``eta``
    (:func:`~sklearn_glmm._engine.blocks.block_values`); the count family's own
    parameters are scalars, or per-row arrays too with a dispersion model.
    The log-density of a zero need not be concave in ``eta``; the Laplace
    Hessian uses its exact curvature all the same, as glmmTMB does.
    """

    zero_inflated = True
    zero_formula = "~1"
    varying_zero_subject = (
        "The mean of the count part of {outcome} (its non-structural zeros)",
        "was",
    )
    log_concave = False  # a zero's log-density is not concave in eta

    def __init__(self, base):
        self.base = base
        self.name = "zi_" + base.name
        self.r_name = base.r_name
        self.link = base.link
        self.blocks = tuple(base.blocks) + (ZERO_INFLATION,)
        # the exact Laplace Hessian reads w4: a zero's from log f(0)'s fourth derivative
        self.has_fourth_derivative = bool(
            getattr(base, "has_fourth_derivative", False) and hasattr(base, "log_p0_fourth")
        )

    def mean_curvature(self, y, trials, weights) -> float:
        return self.base.mean_curvature(y, trials, weights)

    def sentence_name(self) -> str:
        return "zero-inflated " + self.base.sentence_name()

    def mean_derivative(self, eta, extra=()):
        _, pi, _ = self._split(extra)
        return (1.0 - pi) * self.base.mean_derivative(eta)

    def mixture_variance(self, mu_rows, extra) -> float:
        """Mean over rows of the variance R's ``insight::get_variance`` uses for a
        zero-inflated count model (its ``mu_rows``: conditional count means)."""
        base_extra, p, _ = self._split(extra)
        if self.base.name == "poisson":
            pvar = (1.0 - p) * (mu_rows + p * mu_rows**2)
        elif self.base.name == "negbin":
            inv_theta = 1.0 / np.exp(base_extra[0])
            pvar = (1.0 - p) * mu_rows * (1.0 + mu_rows * inv_theta) + mu_rows**2 * (p**2 + p)
        else:
            raise ValueError(
                f"the latent-scale variance of a zero-inflated {self.base.r_name} model is not "
                "available: the library gives insight's zero-inflated variances for Poisson "
                "and NB2 counts only (insight's formula for zero-inflated NB1 is its own "
                "approximation, not implemented here)."
            )
        return float(np.mean(pvar))

    def _split(self, extra):
        """``(count family's parameters, pi, logit pi)``; pi scalar or per row."""
        if isinstance(extra, tuple):
            logit = np.asarray(extra[-1], dtype=float)
            # the count family's values stay a tuple: with a dispersion model, per row
            return extra[:-1], special.expit(logit), logit
        extra = np.asarray(extra, dtype=float)
        return extra[:-1], special.expit(extra[-1]), extra[-1]

    def constant(self, y, trials):
        return self.base.constant(y, trials)

    def log_concave_split(self, y, extra):
        """``pi [y = 0] + (1 - pi) f(y | eta)``: the count family's density is the
        log-concave part (when it is log-concave)."""
        if not self.base.log_concave:
            return None
        base_extra, pi, _ = self._split(extra)
        return np.where(np.asarray(y) == 0, pi, 0.0), 1.0 - pi, self.base, base_extra

    def nested_at_bound(self, block: int):
        """The count family at the zero-inflation probability's bound (the last block):
        the model without zero inflation (the bound itself is a probability of 2e-9,
        which the zero-inflated density keeps)."""
        return self.base if block == len(self.blocks) - 1 else None

    def derivs(self, y, eta, trials, weights, extra, const=None):
        base_extra, pi, logit_pi = self._split(extra)
        d = self.base.derivs(y, eta, trials, None, base_extra, const)
        log1m_pi = -log1p_exp(logit_pi)
        log_pi = -log1p_exp(-logit_pi)
        a, a1, a2, a3 = self.base.log_p0(eta, base_extra)
        zero = y == 0
        lz = np.logaddexp(log_pi, log1m_pi + a)
        # r: posterior probability that a zero came from the count part
        r = np.exp(log1m_pi + a - lz)
        # products with r taken before the squares of a1: at a huge mean r is 0 and a1^2
        # infinite (Poisson: a1 = -mu), where r a1^2 is 0
        d1z = r * a1
        r1 = d1z * (1.0 - r)
        r1a1 = r1 * a1
        d2z = r * a2 + r1a1
        d3z = r1 * a2 + r * a3 + r1a1 * (1.0 - 2.0 * r) * a1 + 2.0 * d1z * (1.0 - r) * a2
        loglik = np.where(zero, lz, log1m_pi + d.loglik)
        d1 = np.where(zero, d1z, d.d1)
        w = np.where(zero, -d2z, d.w)
        w3 = np.where(zero, -d3z, d.w3)
        return _weighted(weights, loglik, d1, w, w3)

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4 = d w3 / d eta``: the count family's for a count; for a zero, with ``g =
        log(pi + (1 - pi) e^a)`` (``a = log f(0)``, ``a1 .. a4`` its eta-derivatives),
        ``r`` the posterior probability that the zero came from the count part, ``q =
        r (1 - r)`` and ``c = 1 - 2 r`` (``dr / d eta = q a1``, ``dq / d eta = q c a1``),
        ``w4 = -g4``, ``g4 = r a4 + 4 q a1 a3 + 3 q a2^2 + 6 q c a1^2 a2 + q (c^2 - 2 q)
        a1^4`` (the fourth derivative of ``g``), the products with ``q`` taken first as in
        :meth:`derivs` (at a huge mean ``q`` is 0 and ``a1^4`` overflows). Only where
        :attr:`has_fourth_derivative`."""
        base_extra, _, logit_pi = self._split(extra)
        eta = np.broadcast_to(np.asarray(eta, dtype=float), np.shape(y))
        count = self.base.fourth_derivative(y, eta, trials, None, base_extra)
        a, a1, a2, a3 = self.base.log_p0(eta, base_extra)
        a4 = self.base.log_p0_fourth(eta, base_extra)
        r = _count_share(a, logit_pi)
        q = r * (1.0 - r)
        c = 1.0 - 2.0 * r
        qa1 = q * a1
        g4 = (
            r * a4
            + 4.0 * qa1 * a3
            + 3.0 * (q * a2) * a2
            + 6.0 * (qa1 * c) * a1 * a2
            + ((qa1 * (c * c - 2.0 * q)) * a1) * a1 * a1
        )
        w4 = np.where(y == 0, -g4, count)
        return w4 if weights is None else weights * w4

    def loglik(self, y, eta, trials, weights, extra, const=None):
        """The log-density alone (for scans over many linear predictors, shape (..., n)):
        the mixture where ``y == 0``, the count family's density elsewhere, each
        computed on its own rows."""
        base_extra, _, logit_pi = self._split(extra)
        log1m_pi = -log1p_exp(logit_pi)
        log_pi = -log1p_exp(-logit_pi)
        eta = np.asarray(eta, dtype=float)
        out = np.empty(np.broadcast_shapes(eta.shape, np.shape(y)))
        zero = y == 0
        if zero.any():
            a = self.base.log_p0(eta[..., zero], _rows_each(base_extra, zero))[0]
            out[..., zero] = np.logaddexp(_rows(log_pi, zero), _rows(log1m_pi, zero) + a)
        if not zero.all():
            rows = ~zero
            sub = tuple(_rows(c, rows) for c in const) if isinstance(const, tuple) else None
            sub = _rows(const, rows) if isinstance(const, np.ndarray) else sub
            own = _rows_each(base_extra, rows)
            count = self.base.loglik(y[rows], eta[..., rows], _rows(trials, rows), None, own, sub)
            out[..., rows] = _rows(log1m_pi, rows) + count
        return out if weights is None else weights * out

    def extra_derivs(self, y, eta, trials, weights, extra, const=None):
        """Derivatives in the extra parameters of ``loglik``, ``d1`` and ``w``, each (E, n).

        Analytic in ``logit pi``: with ``r`` the posterior probability that a zero came
        from the count part, a zero's derivatives are ``1 - r - pi``, ``-r (1 - r) a1``
        and ``r (1 - r) (a2 + (1 - 2r) a1^2)`` (``a``: log f(0) and its eta-derivatives);
        a count's ``-pi``, 0, 0. In the count family's own parameters: analytic where it
        has ``extra_derivs`` and ``log_p0_extra_derivs``, central differences otherwise.
        """
        base_extra, pi, logit_pi = self._split(extra)
        eta = np.broadcast_to(eta, np.shape(y))
        a, a1, a2, _ = self.base.log_p0(eta, base_extra)
        zero = y == 0
        r = _count_share(a, logit_pi)
        rr = r * (1.0 - r)
        dl = np.where(zero, 1.0 - r - pi, -pi)
        dd1 = np.where(zero, -rr * a1, 0.0)
        dw = np.where(zero, rr * a2 + rr * a1 * (1.0 - 2.0 * r) * a1, 0.0)  # (as in derivs)
        out_l, out_d1, out_w = [dl], [dd1], [dw]
        if len(base_extra):
            own = self._base_extra_derivs(y, eta, trials, extra, const, zero, r, a1, a2)
            out_l[:0], out_d1[:0], out_w[:0] = own
        dl, dd1, dw = np.vstack(out_l), np.vstack(out_d1), np.vstack(out_w)
        if weights is not None:
            dl, dd1, dw = weights * dl, weights * dd1, weights * dw
        return dl, dd1, dw

    def extra_second_derivs(self, y, eta, trials, weights, extra, const=None, with_first=False):
        """Second derivatives in ``l = logit pi`` where it is the family's one own
        parameter (a count family without parameters of its own; None otherwise; a
        probability per row, with a zero-inflation design, row by row): of ``loglik``,
        ``d1`` and ``w``, and the derivative of
        ``w3`` in ``l``, each (n,), weighted as :meth:`derivs` (the contract of
        :func:`~sklearn_glmm._engine.laplace_hessian.extra_column`). With ``r`` the
        posterior probability that a zero came from the count part, ``logit r = a - l``:
        ``dr / dl = -q`` (``q = r (1 - r)``, ``c = 1 - 2 r``, ``dq / dl = -c q``); a zero's
        ``loglik_ll = q - pi (1 - pi)``, ``d1_ll = c q a1``, ``w_ll = -c q a2 - q (c^2 -
        2 q) a1^2``, ``w3_l = q a3 + 3 c q a1 a2 + q (c^2 - 2 q) a1^3``; a count's
        ``-pi (1 - pi)``, 0, 0, 0. With ``with_first``, ``(first, second)``: ``first``
        the three rows :meth:`extra_derivs` gives, each (n,)."""
        base_extra, pi, logit_pi = self._split(extra)
        if len(base_extra):
            return None
        eta = np.broadcast_to(eta, np.shape(y))
        a, a1, a2, a3 = self.base.log_p0(eta, base_extra)
        zero = y == 0
        r = _count_share(a, logit_pi)
        q = r * (1.0 - r)
        c = 1.0 - 2.0 * r
        qa1 = q * a1
        spread = (qa1 * (c * c - 2.0 * q)) * a1  # q (c^2 - 2 q) a1^2
        vpi = pi * (1.0 - pi)
        second = (
            np.where(zero, q - vpi, -vpi),
            np.where(zero, c * qa1, 0.0),
            np.where(zero, -c * (q * a2) - spread, 0.0),
            np.where(zero, q * a3 + 3.0 * c * qa1 * a2 + spread * a1, 0.0),
        )
        if with_first:  # extra_derivs' expressions (q is its rr)
            second = (
                np.where(zero, 1.0 - r - pi, -pi),
                np.where(zero, -q * a1, 0.0),
                np.where(zero, q * a2 + q * a1 * (1.0 - 2.0 * r) * a1, 0.0),
            ) + second
        if weights is not None:
            second = tuple(weights * v for v in second)
        return (second[:3], second[3:]) if with_first else second

    def extra_hessian_derivs(self, y, eta, trials, weights, extra, const=None):
        """The derivatives the closed-form Hessian's rows of two own parameters read
        (:func:`~sklearn_glmm._engine.laplace_hessian.extra_rows`): the count family's
        one parameter ``t`` (NB2's ``log theta``, a scalar) and ``l = logit pi`` (a scalar,
        or one per row with a zero-inflation design); None otherwise (and where the count
        family does not give them: on its bound).
        Returns ``(first, w3_e, second)``: ``first`` the derivatives of ``loglik``,
        ``d1`` and ``w`` in each parameter (each (2, n), :meth:`extra_derivs`' rows),
        ``w3_e`` those of ``w3`` (2, n), and ``second`` the second derivatives of
        ``loglik``, ``d1`` and ``w`` (each (2, 2, n)), weighted as :meth:`derivs`.

        A count's are the count family's in ``t`` (``extra_second_derivs``) and
        ``log(1 - pi)``'s in ``l``. A zero's log-density is ``F(a, l) = l + softplus(a -
        l) - softplus(l)`` of ``a = log f(0)``, whose derivatives in ``a`` are ``S_m``
        (``S_1 = r``, the share of the count part; ``S_2 = q = r (1 - r)``, ``S_3 = q
        c``, ``S_4 = q (c^2 - 2 q)``, ``c = 1 - 2 r``) and change sign with each
        derivative in ``l``; those in ``eta`` and ``t`` follow by the chain rule from
        ``a``'s (:meth:`log_p0`, ``log_p0_extra_derivs``, ``log_p0_second_extra``)."""
        base_extra, pi, logit_pi = self._split(extra)
        p0_second = getattr(self.base, "log_p0_second_extra", None)
        if len(base_extra) != 1 or p0_second is None:
            return None
        count = self.base.extra_second_derivs(y, eta, trials, None, base_extra, const, True)
        beyond = None if count is None else p0_second(eta, base_extra)
        if beyond is None:
            return None
        (cl, cd, cw), (cll, cdd, cww, cw3) = count
        eta = np.broadcast_to(eta, np.shape(y))
        a, a1, a2, a3 = self.base.log_p0(eta, base_extra)
        at, a1t, a2t = (v[0] for v in self.base.log_p0_extra_derivs(eta, base_extra))
        a3t, att, a1tt, a2tt = beyond
        zero = y == 0
        s1 = _count_share(a, logit_pi)
        s2 = s1 * (1.0 - s1)
        c = 1.0 - 2.0 * s1
        s3, s4 = s2 * c, s2 * (c * c - 2.0 * s2)
        vpi = pi * (1.0 - pi)
        a_eta, a_t = (a1, a2, a3), (at, a1t, a2t, a3t, att, a1tt, a2tt)
        F_t, F_et, F_eet, F_eeet, F_tt, F_ett, F_eett = chain_in_parameter(
            (s1, s2, s3, s4), a_eta, a_t
        )
        t_rows, w3_t, tt = (F_t, F_et, -F_eet), -F_eeet, (F_tt, F_ett, -F_eett)
        l_rows = (1.0 - s1 - pi, -s2 * a1, (s3 * a1) * a1 + s2 * a2)
        w3_l = ((s4 * a1) * a1) * a1 + 3.0 * (s3 * a1) * a2 + s2 * a3
        # (in l: each derivative in l turns S_m into -S_(m+1))
        F_t, F_et, F_eet = chain_in_parameter((-s2, -s3, -s4), a_eta, a_t[:3])
        tl = (F_t, F_et, -F_eet)
        ll = (s2 - vpi, s3 * a1, -((s4 * a1) * a1 + s3 * a2))
        counts = ((cl, cd, cw), (-pi, 0.0, 0.0), (cll, cdd, cww), (0.0, 0.0, 0.0), (-vpi, 0.0, 0.0))
        zeros = (t_rows, l_rows, tt, tl, ll)
        t_rows, l_rows, tt, tl, ll = (
            tuple(np.where(zero, z, k) for z, k in zip(zs, ks)) for zs, ks in zip(zeros, counts)
        )
        w3_e = np.stack([np.where(zero, w3_t, cw3), np.where(zero, w3_l, 0.0)])
        first = tuple(np.stack([t, l]) for t, l in zip(t_rows, l_rows))
        second = tuple(
            np.stack([np.stack([v, u]), np.stack([u, w])]) for v, u, w in zip(tt, tl, ll)
        )
        if weights is not None:
            first = tuple(weights * v for v in first)
            w3_e = weights * w3_e
            second = tuple(weights * v for v in second)
        return first, w3_e, second

    def _base_extra_derivs(self, y, eta, trials, extra, const, zero, r, a1, a2):
        """Rows of ``extra_derivs`` for the count family's own parameters."""
        base_extra = self._split(extra)[0]
        exact = getattr(self.base, "extra_derivs", None)
        p0 = getattr(self.base, "log_p0_extra_derivs", None)
        if exact is None or p0 is None:
            rows = ([], [], [])
            for k in range(len(base_extra)):
                h = 1e-5
                ep, em = shift_block(extra, k, h), shift_block(extra, k, -h)
                dp = self.derivs(y, eta, trials, None, ep, const)
                dm = self.derivs(y, eta, trials, None, em, const)
                for out, up, down in zip(rows, (dp.loglik, dp.d1, dp.w), (dm.loglik, dm.d1, dm.w)):
                    out.append((up - down) / (2.0 * h))
            return rows
        cl, cd1, cw = exact(y, eta, trials, None, base_extra, const)
        da, da1, da2 = p0(eta, base_extra)
        dr = r * (1.0 - r) * da
        zl = r * da
        zd1 = dr * a1 + r * da1
        zw = -(
            dr * a2 + r * da2 + dr * a1 * (1.0 - 2.0 * r) * a1 + 2.0 * (r * a1) * (1.0 - r) * da1
        )
        return (
            list(np.where(zero, zl, cl)),
            list(np.where(zero, zd1, cd1)),
            list(np.where(zero, zw, cw)),
        )

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


def _count_share(a, logit_pi):
    """``r``: the posterior probability that a zero came from the count part, ``(1 - pi)
    f(0) / (pi + (1 - pi) f(0))`` with ``a = log f(0)``."""
    log1m_pi = -log1p_exp(logit_pi)
    log_pi = -log1p_exp(-logit_pi)
    return np.exp(log1m_pi + a - np.logaddexp(log_pi, log1m_pi + a))


def _rows(v, rows):
    """The rows of a per-row array (scalars and ``None`` as they are)."""
    return v[rows] if isinstance(v, np.ndarray) and v.ndim else v


def _rows_each(values, rows):
    """The count family's values for some rows: per-row entries of a tuple subset."""
    return tuple(_rows(v, rows) for v in values) if isinstance(values, tuple) else values
