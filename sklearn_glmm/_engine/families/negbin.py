"""Negative binomial counts (NB2: Var = mu + mu^2 / theta) with a log link."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ..blocks import NB_THETA
from ..links import LogLink
from .base import (
    _ETA_MAX,
    Family,
    LimitRidge,
    NodeDerivs,
    _exp_mean,
    _large_count_zeros,
    _lgamma_ratio,
    _log_y,
    _mu_minus_y,
    _weighted,
    array_on_bound,
    by_count,
    by_count_in_runs,
    limit_or,
    log1p_exp,
    on_upper_bound,
    trigamma,
)
from .poisson import Poisson


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
    batches_extras = True  # log theta per row as a dispersion model's
    # truncated at zero (``hurdle.Truncated``), with theta -> 0 and mu -> 0, m = mu / theta
    # held: P(y) -> q^y / (-y log(1 - q)), q = m / (1 + m), the logarithmic series
    limit_truncated = LimitRidge(
        blocks=(0,),
        limit="the logarithmic-series distribution",
        identified="log(mu / theta) (the count part's intercept minus log(theta); with a "
        "dispersion model, also the differences of the two parts' coefficients of a "
        "predictor in both)",
    )

    def mean_curvature(self, y, trials, weights) -> float:
        """Typical Fisher weight of one row, mu theta / (mu + theta), at the starting
        theta: at most theta however large the counts (the scale of a count's
        information is its overdispersion, not its mean)."""
        wsum = np.sum(weights)
        if not wsum > 0:
            return 1.0
        mu = np.sum(weights * y) / wsum
        theta = np.exp(NB_THETA.start)
        return float(mu * theta / (mu + theta))

    def constant(self, y, trials):
        """Parameter-free terms: -log y!, log y and the zero indicator for large counts."""
        return -special.gammaln(y + 1.0), _log_y(y), _large_count_zeros(y)

    def __init__(self):
        # (log theta, const, y, log Gamma(y + theta) - log Gamma(theta)); log theta a
        # float, or a copy of the array of per-row values (a dispersion model, a batch
        # of replicates), compared by value. ``const`` is the tuple of parameter-free
        # terms the library made from ``y`` for one model (``constant``): a value is
        # reused only for that tuple and that ``y``, so a caller's array changed between
        # two calls is never read stale.
        self._memo = None
        self._saturated_memo = None

    def _lgamma_ratio(self, y, log_theta, theta, const):
        """:func:`_lgamma_ratio`, remembered for the last (log theta, const, y): it is
        the costliest term and the conditional-mode iterations ask for it many times at
        one theta (per-row values are one array throughout an evaluation)."""
        return self._remembered("_memo", _lgamma_ratio, y, log_theta, theta, const)

    def _saturated(self, y, log_theta, theta, const):
        """``log p(y | mu = y)`` of each row for large counts, without the cancellation
        of terms of order ``y log y`` (1e12 for counts of 1e11: rounding of 1e-4 that
        moved with theta): :func:`_saturated_rows`. Remembered as :meth:`_lgamma_ratio`
        is (the same key)."""
        return self._remembered("_saturated_memo", _saturated_rows, y, log_theta, theta, const)

    def _remembered(self, slot, fun, y, log_theta, theta, const):
        """``fun(y, theta)``, remembered in attribute ``slot`` for the last (log theta,
        const, y); computed afresh for terms not made by the library (``const`` None)."""
        if const is None:  # terms not made by the library for a model: nothing to key on
            return fun(y, theta)
        memo = getattr(self, slot)
        array = type(log_theta) is np.ndarray
        if memo is not None and memo[1] is const and memo[2] is y:
            key = memo[0]
            if (type(key) is np.ndarray) == array and (
                np.array_equal(key, log_theta) if array else key == log_theta
            ):
                return memo[3]
        val = fun(y, theta)
        setattr(self, slot, (log_theta.copy() if array else log_theta, const, y, val))
        return val

    def __getstate__(self):
        skip = ("_memo", "_saturated_memo")
        return {k: v for k, v in vars(self).items() if k not in skip} | dict.fromkeys(skip)

    def derivs(self, y, eta, trials, weights, extra, const=None):
        lt = extra[0]
        # theta on its bound is theta = infinity: the Poisson limit, exactly (the NB2
        # terms of order 1e7 would leave rounding of 1e-3 in a log-likelihood there)
        limit = on_upper_bound(
            lt,
            _UPPER,
            lambda: _POISSON.derivs(y, eta, trials, weights, (), const),
            lambda lt: self.derivs(y, eta, trials, weights, (lt,), const),
        )
        if limit is not None:
            return limit
        theta = np.exp(lt)
        eta = np.minimum(eta, _ETA_MAX)  # beyond it mu would overflow
        mu = np.exp(eta)
        tm = theta + mu
        neg_log_fact, log_y, zero = self.constant(y, trials) if const is None else const
        # the ratios s, r in [0, 1] keep every product finite however large mu is
        s, r = theta / tm, mu / tm
        if zero is None:
            with np.errstate(over="ignore"):
                loglik = (
                    self._lgamma_ratio(y, lt, theta, const)
                    + neg_log_fact
                    - theta * np.log1p(mu / theta)
                    + _xlog_ratio(y, r)
                )
        else:
            # large counts: log p(y | mu) - log p(y | y), free of cancellation, plus log p(y | y)
            loglik = _large_count_loglik(y, eta, log_y, zero, mu, theta, lt) + self._saturated(
                y, lt, theta, const
            )
        d1 = s * (y - mu)
        w = s * r * (y + theta)
        w3 = w * (s - r)
        return _weighted(weights, loglik, d1, w, w3)

    has_fourth_derivative = True

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4 = w (s^2 - 4 s r + r^2)`` (``s = theta / (mu + theta)``, ``r = 1 - s``: the
        derivative in ``eta`` of ``w3 = w (s - r)``, as ``ds / d eta = -s r``); the
        Poisson limit's on the bound."""
        lt = extra[0]
        limit = array_on_bound(
            lt,
            _UPPER,
            lambda: _POISSON.fourth_derivative(y, eta, trials, weights),
            lambda lt: self.fourth_derivative(y, eta, trials, weights, (lt,)),
        )
        if limit is not None:
            return limit
        theta, eta, mu, tm, s, r = _shares(eta, lt)
        w4 = s * r * (y + theta) * (s * s - 4.0 * s * r + r * r)
        return w4 if weights is None else weights * w4

    def extra_derivs(self, y, eta, trials, weights, extra, const=None):
        """Derivatives in ``log theta`` of ``loglik``, ``d1`` and ``w``, each (1, n).

        Analytic: a finite difference of a log-density of order 1e7 (counts in the
        millions) is lost in its rounding. Zero on the bound (the Poisson limit).
        """
        lt = extra[0]
        limit = on_upper_bound(
            lt,
            _UPPER,
            lambda: (np.zeros((1, len(eta))),) * 3,
            lambda lt: self.extra_derivs(y, eta, trials, weights, (lt,), const),
        )
        if limit is not None:
            return limit
        theta, mu, tm, s, r, mmy, dl = self._log_theta_terms(y, eta, trials, lt, const)
        dd1 = -s * r * mmy
        dw = s * r * (2.0 * theta * mu + y * mu - theta * y) / tm
        if weights is not None:
            dl, dd1, dw = weights * dl, weights * dd1, weights * dw
        return dl[None], dd1[None], dw[None]

    has_node_derivs = True

    def node_derivs(self, y, eta, trials, weights, extra, const=None, with_extra=False):
        """``loglik`` and ``d1`` of :meth:`derivs`; the partial in ``log theta`` of
        :meth:`extra_derivs` alone (not those of ``d1`` and ``w``), its digamma terms
        once per row, not per node (``y`` is the rows', ``eta`` the nodes' (k, n))."""
        der = self.derivs(y, eta, trials, weights, extra, const)
        if not with_extra:
            return NodeDerivs(der.loglik, der.d1, None, None)

        def partial(lt):  # the unweighted derivative of loglik in log theta
            return self._log_theta_terms(y, eta, trials, lt, const)[-1]

        def limit():  # on the bound, the Poisson limit
            return np.zeros(np.shape(der.d1))

        lt = extra[0]
        dl = array_on_bound(lt, _UPPER, limit, partial)
        dl = partial(lt) if dl is None else dl
        if weights is not None:
            dl = weights * dl
        return NodeDerivs(der.loglik, der.d1, dl[None], None)

    def _log_theta_terms(self, y, eta, trials, lt, const):
        """``theta, mu, theta + mu, s, r``, ``mu - y`` (without cancellation where mu is
        near a large y) and the unweighted derivative of ``loglik`` in ``log theta``
        ``lt`` (below the bound): what :meth:`extra_derivs` and
        :meth:`extra_second_derivs` share."""
        theta, eta, mu, tm, s, r = _shares(eta, lt)
        _, log_y, zero = self.constant(y, trials) if const is None else const
        mmy = mu - y if zero is None else _mu_minus_y(y, eta, log_y, zero, mu)
        # theta [psi(y + theta) - psi(theta) - log(1 + mu / theta) + (mu - y) / (theta +
        # mu)]: for large theta (near the Poisson limit) each term is of order y where the
        # sum is of order y / theta; there it is the digamma excess plus theta [log1p(u) -
        # u], u = (y - mu) / (theta + mu), both free of that cancellation
        part = digamma_part(y, theta)
        big = theta >= _SERIES_THETA
        if type(big) is np.ndarray:  # a theta per row
            any_big, all_big = bool(big.any()), bool(big.all())
        else:
            any_big = all_big = bool(big)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # log(1 + mu / theta), and log((theta + y) / (theta + mu)) as the difference of
            # logarithms (where mu is far above theta + y, 1 + u rounds)
            log_mu = log1p_exp(eta - lt)
            if any_big:
                ratio = np.log1p(y / theta) - log_mu
                near = part + theta * log1p_minus(-mmy / tm, ratio)
            if all_big:
                dl = near
            else:
                dl = part + theta * (mmy / tm - log_mu)
                if any_big:
                    dl = np.where(big, near, dl)
        return theta, mu, tm, s, r, mmy, dl

    def extra_second_derivs(self, y, eta, trials, weights, extra, const=None, with_first=False):
        """Second derivatives for the closed-form Hessian's ``log theta`` row and column
        (:func:`~sklearn_glmm._engine.laplace_hessian.extra_column`): in ``log theta``
        of ``loglik``, ``d1`` and ``w``, and the derivative of ``w3`` in ``log theta``,
        each (n,), weighted as :meth:`derivs`, row by row for a theta per row (a dispersion
        model); None on the bound (the Poisson limit, any row's: there the rows are taken
        by differences). With
        ``with_first``, ``(first, second)``: ``first`` the first derivatives
        :meth:`extra_derivs` gives, each (n,), made from the same terms. With
        ``s = theta / (theta + mu)`` and ``r = 1 - s``: ``d1_l = s r (y - mu)``,
        ``d1_ll = (r - s) d1_l``, ``w_l = s r (r - s)(y + theta) + s r theta``,
        ``w_ll = s r [(r - s)^2 - 2 s r](y + theta) + 2 s r (r - s) theta + s r theta``,
        ``w3_l = w_l (s - r) + 2 s r w`` and ``loglik_ll = loglik_l + theta^2
        [psi'(y + theta) - psi'(theta)] + theta r - s^2 (mu - y)``."""
        lt = extra[0]
        if np.any(np.asarray(lt) >= _UPPER):
            return None
        theta, mu, tm, s, r, mmy, dl = self._log_theta_terms(y, eta, trials, lt, const)
        sr = s * r
        # theta^2 [psi'(y + theta) - psi'(theta)] + theta r - s^2 (mu - y): for large theta
        # the trigamma excess plus s^2 (mu - y)^2 / (y + theta), without the cancellation
        # of terms of order y (the identity: theta r - s^2 (mu - y) - theta y / (y +
        # theta) = s^2 (mu - y)^2 / (y + theta))
        with np.errstate(over="ignore", invalid="ignore"):
            part = dl + trigamma_part(y, theta)
            if type(theta) is np.ndarray:  # a theta per row (a dispersion model)
                large = part + s * s * mmy * (mmy / (y + theta))
                dll = np.where(theta >= _SERIES_THETA, large, part + theta * r - s * s * mmy)
            elif theta >= _SERIES_THETA:
                dll = part + s * s * mmy * (mmy / (y + theta))
            else:
                dll = part + theta * r - s * s * mmy
        d1_l = -sr * mmy
        d1_ll = (r - s) * d1_l
        yt = y + theta
        w = sr * yt
        w_l = sr * (r - s) * yt + sr * theta
        w_ll = sr * ((r - s) ** 2 - 2.0 * sr) * yt + 2.0 * sr * (r - s) * theta + sr * theta
        w3_l = w_l * (s - r) + 2.0 * sr * w
        out = (dll, d1_ll, w_ll, w3_l)
        if with_first:  # extra_derivs' expressions
            out = (dl, d1_l, sr * (2.0 * theta * mu + y * mu - theta * y) / tm) + out
        if weights is not None:
            out = tuple(weights * v for v in out)
        return (out[:3], out[3:]) if with_first else out

    def log_p0(self, eta, extra):
        lt = extra[0]
        limit = on_upper_bound(
            lt, _UPPER, lambda: _POISSON.log_p0(eta), lambda lt: self.log_p0(eta, (lt,))
        )
        if limit is not None:
            return limit
        theta, eta, mu, tm, s, r = _shares(eta, lt)
        a = -theta * log1p_exp(eta - lt)  # -theta log(1 + mu / theta)
        a1 = -theta * r
        a2 = -theta * s * r
        a3 = a2 * (s - r)
        return a, a1, a2, a3

    def log_p0_fourth(self, eta, extra):
        """The fourth eta-derivative of :meth:`log_p0` (a zero-inflated model's fourth
        derivative reads it): ``a2 ((s - r)^2 - 2 s r)``, the derivative of ``a3 = a2 (s -
        r)`` as ``d(s - r) / d eta = -2 s r``; the Poisson limit's on the bound."""
        lt = extra[0]
        limit = array_on_bound(
            lt,
            _UPPER,
            lambda: _POISSON.log_p0_fourth(eta),
            lambda lt: self.log_p0_fourth(eta, (lt,)),
        )
        if limit is not None:
            return limit
        theta, eta, mu, tm, s, r = _shares(eta, lt)
        return -theta * s * r * ((s - r) ** 2 - 2.0 * s * r)

    def log_p0_extra_derivs(self, eta, extra):
        """Derivatives in ``log theta`` of :meth:`log_p0`'s first three arrays, each (1, n)."""
        lt = extra[0]
        limit = on_upper_bound(
            lt,
            _UPPER,
            lambda: (np.zeros((1,) + np.shape(eta)),) * 3,
            lambda lt: self.log_p0_extra_derivs(eta, (lt,)),
        )
        if limit is not None:
            return limit
        theta, eta, mu, tm, s, r = _shares(eta, lt)
        da = theta * (r - log1p_exp(eta - lt))
        da1 = -theta * r * r
        da2 = -2.0 * theta * s * r * r
        return da[None], da1[None], da2[None]

    def log_p0_second_extra(self, eta, extra):
        """The derivatives of :meth:`log_p0` a zero-inflated model's Hessian in ``log
        theta`` reads beyond :meth:`log_p0_extra_derivs`: with ``a = -theta log(1 + mu /
        theta)``, ``s = theta / (theta + mu)``, ``r = 1 - s`` and ``t = log theta``,
        ``d^4 a / d eta^3 dt = -2 theta s r^2 (2 s - r)``, ``d^2 a / dt^2 = da/dt + theta
        r^2``, ``d^3 a / d eta dt^2 = theta r^2 (s - r)`` and ``d^4 a / d eta^2 dt^2 = -2
        theta s r^2 (2 r - s)``, each (n,) (row by row for a theta per row); None on the
        bound (the Poisson limit, any row's)."""
        lt = extra[0]
        if np.any(np.asarray(lt) >= _UPPER):
            return None
        theta, eta, mu, tm, s, r = _shares(eta, lt)
        tr2 = theta * r * r
        da = theta * (r - log1p_exp(eta - lt))
        return (
            -2.0 * tr2 * s * (2.0 * s - r),
            da + tr2,
            tr2 * (s - r),
            -2.0 * tr2 * s * (2.0 * r - s),
        )

    def log_zero_rate(self, eta, extra):
        """``log s`` for ``s = -log P(Y = 0) = theta log(1 + mu / theta)`` and its
        eta-derivatives (zero-truncation), free of cancellation as ``mu / theta -> 0``."""
        log_theta = extra[0]
        limit = on_upper_bound(
            log_theta,
            _UPPER,
            lambda: _POISSON.log_zero_rate(eta),
            lambda lt: self.log_zero_rate(eta, (lt,)),
        )
        if limit is not None:
            return limit
        return _log_zero_rate(eta, log_theta)[:4]

    def log_zero_rate_extra(self, eta, extra, second=False):
        """:meth:`log_zero_rate` and the derivatives in ``t = log theta`` of its ``L = log
        s`` and first two eta-derivatives, each (n,): ``(rate, partials)``. ``L = t +
        ell(eta - t)`` with ``ell(z) = log log(1 + e^z)`` (``ell_k`` its k-th derivative),
        so ``L_t = 1 - ell_1`` (from the series as ``mu / theta -> 0``, where it is ``mu /
        (2 theta)``), ``L_et = -ell_2`` and ``L_eet = -ell_3``; with ``second`` also
        ``L_eeet = -ell_4``, ``L_tt = ell_2``, ``L_ett = ell_3`` and ``L_eett = ell_4``. On
        the bound the Poisson limit's rate, ``L = eta``, and partials 0."""
        log_theta = extra[0]
        n_out = 7 if second else 3
        limit = on_upper_bound(
            log_theta,
            _UPPER,
            lambda: _POISSON.log_zero_rate(eta) + (np.zeros(np.shape(eta)),) * n_out,
            lambda lt: sum(self.log_zero_rate_extra(eta, (lt,), second), ()),
        )
        if limit is not None:
            return tuple(limit[:4]), tuple(limit[4:])
        log_s, S1, S2, S3, one_minus_S1 = _log_zero_rate(eta, log_theta)
        partials = (one_minus_S1, -S2, -S3)
        if second:
            S4 = self.log_zero_rate_fourth(eta, extra)
            partials += (-S4, S2, S3, S4)
        return (log_s, S1, S2, S3), partials

    def log_zero_rate_fourth(self, eta, extra):
        """The fourth eta-derivative ``S4`` of :meth:`log_zero_rate`'s ``log s``: with
        ``ell = log(1 + x)``, ``x = e^z``, ``z = eta - log theta`` and ``e_k`` its k-th
        z-derivative over ``ell`` (``rho = expit(z)``, ``rho1 = rho (1 - rho)``, ``rho2 =
        rho1 (1 - 2 rho)``, ``rho3 = rho1 (1 - 6 rho + 6 rho^2)``), ``S4 = e4 - 4 e1 e3 - 3
        e2^2 + 12 e1^2 e2 - 6 e1^4``; for small ``x`` the series' ``sum_k c_k k^4 x^k``
        (the same terms as there). The Poisson limit's (0) on the bound."""
        log_theta = extra[0]
        limit = array_on_bound(
            log_theta,
            _UPPER,
            lambda: _POISSON.log_zero_rate_fourth(eta),
            lambda lt: self.log_zero_rate_fourth(eta, (lt,)),
        )
        if limit is not None:
            return limit
        _, small, xs, ell, rho, rho1 = _zero_rate_terms(eta, log_theta)
        p4 = np.zeros_like(xs)
        for k, c in enumerate(_LOG_LOG1P_SERIES, start=1):
            p4 = p4 + k**4 * (c * xs**k)
        with np.errstate(divide="ignore", invalid="ignore"):
            e1, e2 = rho / ell, rho1 / ell
            e3 = rho1 * (1.0 - 2.0 * rho) / ell
            e4 = rho1 * (1.0 - 6.0 * rho * (1.0 - rho)) / ell
            L4 = e4 - 4.0 * e1 * e3 - 3.0 * e2 * e2 + 12.0 * e1 * e1 * e2 - 6.0 * e1**4
        return np.where(small, p4, L4)

    def mean(self, eta, extra=()):
        return _exp_mean(eta)

    def variance(self, mu, trials, extra):
        return _poisson_or(extra, lambda: mu * 1.0, lambda theta: mu + mu**2 / theta)

    def unit_deviance(self, y, mu, trials, extra):
        """``2 [y log(y / mu) - (y + theta) log((y + theta) / (mu + theta))]``; the
        Poisson's on the bound (theta = infinity)."""
        return _poisson_or(
            extra,
            lambda: _POISSON.unit_deviance(y, mu, trials),
            lambda theta: _unit_deviance(y, mu, theta),
        )

    def sample(self, mu, trials, extra, rng):
        at = np.asarray(extra[0]) >= _UPPER
        if np.all(at):  # theta = infinity: Poisson draws
            return _POISSON.sample(mu, trials, (), rng)
        theta = np.exp(np.where(at, 0.0, extra[0]))
        # rows on the bound (a dispersion model's) draw Poisson counts at mu: a theta
        # beyond e^709 is inf, which the gamma draws refuse
        lam = np.where(at, mu, rng.gamma(theta, mu / theta))
        return rng.poisson(lam).astype(float)

    def pmf(self, k, mu, extra):
        return _poisson_or(
            extra, lambda: stats.poisson.pmf(k, mu), lambda theta: _pmf(k, mu, theta)
        )

    def cdf(self, y, mu, trials, extra):
        return _poisson_or(
            extra, lambda: stats.poisson.cdf(y, mu), lambda theta: _tail(y, mu, theta, False)
        )

    def sf(self, y, mu, extra):
        """P(Y > y)."""
        return _poisson_or(
            extra, lambda: stats.poisson.sf(y, mu), lambda theta: _tail(y, mu, theta, True)
        )


def _poisson_or(extra, poisson, nb2):
    """``poisson()`` where ``log theta`` (``extra[0]``) is on its upper bound (theta =
    infinity, the Poisson limit, which the fit reports as ``theta_ = inf``: scipy's
    ``nbinom`` at theta = e^30 puts P(Y = k) up to 0.5 % off Poisson's), ``nb2(theta)``
    elsewhere (:func:`~.base.limit_or`)."""
    at = np.asarray(extra[0]) >= _UPPER
    return limit_or(at, poisson, lambda lt: nb2(np.exp(lt)), extra[0])


_POISSON = Poisson()

# above this theta the probabilities are not scipy's ``nbinom``'s: its success
# probability theta / (theta + mu) rounds to 1 within 1e-16, and raised to the power
# theta that puts P(Y = k) 1e-3 off at theta = e^29 (4e-6 at e^25)
_LARGE_THETA = 1e5


def _pmf(k, mu, theta):
    """P(Y = k) of NB2, elementwise (broadcast): scipy's ``nbinom`` for theta up to
    :data:`_LARGE_THETA`, above it from the log-density in ``mu / (theta + mu)`` and
    ``log1p(mu / theta)`` (free of that rounding)."""
    k, mu, theta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (k, mu, theta)))
    large = theta > _LARGE_THETA
    th = np.where(large, 1.0, theta)
    out = np.array(stats.nbinom.pmf(k, th, th / (th + mu)), dtype=float)
    if large.any():
        kk, m, tb = k[large], mu[large], theta[large]
        whole = (kk >= 0) & (kk == np.floor(kk))
        kw = np.where(whole, kk, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = (
                _lgamma_ratio(kw, tb)
                - special.gammaln(kw + 1.0)
                - tb * np.log1p(m / tb)
                + special.xlogy(kw, m / (tb + m))
            )
        out[large] = np.where(whole, np.exp(log_p), 0.0)
    return out[()]


def _tail(y, mu, theta, upper):
    """P(Y > y) (``upper``) or P(Y <= y) of NB2, elementwise: scipy's ``nbinom`` for
    theta up to :data:`_LARGE_THETA`, above it the regularized incomplete beta function
    ``I_x(floor(y) + 1, theta)`` at ``x = mu / (theta + mu)`` (P(Y > y)) and its
    complement, with no success probability to round (see :func:`_pmf`)."""
    y, mu, theta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (y, mu, theta)))
    large = theta > _LARGE_THETA
    th = np.where(large, 1.0, theta)
    dist = stats.nbinom(th, th / (th + mu))
    out = np.array(dist.sf(y) if upper else dist.cdf(y), dtype=float)
    if large.any():
        yl, m, tb = np.floor(y[large]), mu[large], theta[large]
        a, x = np.maximum(yl, 0.0) + 1.0, m / (tb + m)
        tail = special.betainc(a, tb, x) if upper else special.betaincc(a, tb, x)
        below = (1.0 if upper else 0.0) * np.ones_like(yl)
        out[large] = np.where(yl >= 0, tail, below)
    return out[()]


def _unit_deviance(y, mu, theta):
    """NB2's unit deviance below the bound. With ``u = (y - mu) / (mu + theta)``, where
    ``|u| < 1/4`` it is ``2 [d - (y - mu) u - (y + theta)(log1p(u) - u)]``, ``d = y
    log(y / mu) - (y - mu)`` (half the Poisson's): its terms of order ``y`` cancel in
    closed form, where the direct form's ``(y + theta) log(...)`` carries theta's
    rounding (1e-3 in a unit deviance at theta = e^29)."""
    y, mu, theta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (y, mu, theta)))
    t1 = special.xlogy(y, np.divide(y, mu, out=np.ones_like(mu), where=y > 0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = (y - mu) / (mu + theta)
        direct = t1 - (y + theta) * np.log1p(u)
        near = (t1 - (y - mu)) - (y - mu) * u - (y + theta) * log1p_minus(u)
    return 2.0 * np.where(np.abs(u) < 0.25, near, direct)


# below this mu / theta the zero rate's log comes from a series
_SMALL_RATIO = 0.01


# log(log1p(x) / x) = sum_k c_k x^k
def _shares(eta, log_theta):
    """``theta``, ``eta`` (at most ``_ETA_MAX``: beyond it ``mu`` overflows), ``mu``,
    ``theta + mu`` and the shares ``s = theta / (theta + mu)`` and ``r = mu / (theta +
    mu)``, in [0, 1], which keep every product with them finite however large ``mu``
    is."""
    theta = np.exp(log_theta)
    eta = np.minimum(eta, _ETA_MAX)
    mu = np.exp(eta)
    tm = theta + mu
    return theta, eta, mu, tm, theta / tm, mu / tm


def _log_zero_rate(eta, log_theta):
    """:meth:`NegativeBinomial2.log_zero_rate`'s ``log s, S1, S2, S3`` below the bound, and
    ``1 - S1`` (from the series where ``S1`` is near 1: ``-p'``)."""
    # log s = log theta + log log(1 + x); for small x it is z + p(x) with
    # p(x) = log(log1p(x) / x) from its series, and x^k p^(k)(x) term by term
    z, small, xs, ell, rho, rho1 = _zero_rate_terms(eta, log_theta)
    p0 = p1 = p2 = p3 = np.zeros_like(xs)
    for k, c in enumerate(_LOG_LOG1P_SERIES, start=1):
        xk = c * xs**k
        p0 = p0 + xk
        p1 = p1 + k * xk
        p2 = p2 + k * (k - 1) * xk
        p3 = p3 + k * (k - 1) * (k - 2) * xk
    rho2 = rho1 * (1.0 - 2.0 * rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        L1 = rho / ell
        L2 = rho1 / ell - L1 * L1
        L3 = rho2 / ell - 3.0 * L1 * rho1 / ell + 2.0 * L1**3
        log_ell = np.log(ell)
    log_s = log_theta + np.where(small, z + p0, log_ell)
    S1 = np.where(small, 1.0 + p1, L1)
    S2 = np.where(small, p1 + p2, L2)
    S3 = np.where(small, p1 + 3.0 * p2 + p3, L3)
    return log_s, S1, S2, S3, np.where(small, -p1, 1.0 - L1)


def _zero_rate_terms(eta, log_theta):
    """What :meth:`NegativeBinomial2.log_zero_rate` and its fourth derivative share: ``z =
    eta - log theta``, where ``x = e^z`` takes the series (``small``), ``x`` there (0
    elsewhere), ``ell = log(1 + x)`` (also for large ``z``), ``rho = expit(z)`` and ``rho
    (1 - rho)``."""
    z = np.minimum(np.asarray(eta, dtype=float), _ETA_MAX) - log_theta
    x = np.exp(np.minimum(z, _ETA_MAX))
    small = x < _SMALL_RATIO
    rho = special.expit(z)
    return z, small, np.where(small, x, 0.0), log1p_exp(z), rho, rho * (1.0 - rho)


_LOG_LOG1P_SERIES = (
    -1.0 / 2.0,
    5.0 / 24.0,
    -1.0 / 8.0,
    251.0 / 2880.0,
    -19.0 / 288.0,
    19087.0 / 362880.0,
    -751.0 / 17280.0,
    1070017.0 / 29030400.0,
)
# log theta on its upper bound is theta = infinity, the Poisson limit
_UPPER = NB_THETA.bounds[1]


def _large_count_loglik(y, eta, log_y, zero, mu, theta, log_theta):
    """``log p(y | mu) - log p(y | y)`` of NB2 rows, free of cancellation for large
    counts. With ``t = eta - log y`` and ``rho = theta / (theta + y)`` it is ``-theta t -
    (y + theta) log1p(rho expm1(-t))``: each term of order theta, where ``y t`` and
    ``(y + theta) log((theta + mu) / (theta + y))`` are each of order ``y`` (rounding of
    1e-5 a row for counts of 1e11, which made the objective rough). Rows with ``y = 0``:
    ``-theta log1p(mu / theta)``; rows where ``expm1(-t)`` overflows (``mu`` below
    ``y`` by more than e^700) or ``theta`` exceeds ``y``: the direct form."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        t = np.minimum(eta, _ETA_MAX) - log_y
        rho = theta / (theta + y)
        em = np.expm1(-t)
        stable = -theta * t - (y + theta) * np.log1p(rho * em)
        mmy = _mu_minus_y(y, eta, log_y, zero, mu)
        direct = y * t - (y + theta) * np.log1p(mmy / (theta + y))
    # (theta above y: the stable form's terms are of order theta, the direct form's y)
    use = (y > 0) & (theta <= y) & np.isfinite(stable)
    return np.where(use, stable, direct)


def _saturated_rows(y, theta):
    """:meth:`NegativeBinomial2._saturated` without the memo: with Stirling's remainder
    ``delta(z) = log Gamma(z) - (z - 1/2) log z + z - log(2 pi) / 2``, ``log p(y | mu =
    y) = log(theta / (2 pi y (y + theta))) / 2 + delta(y + theta) - delta(theta) -
    delta(y)`` exactly, every term small whatever ``y`` and ``theta`` (the terms of order
    ``y log y`` and ``theta log theta`` cancel in closed form)."""
    y = np.asarray(y, dtype=float)
    theta = np.broadcast_to(np.asarray(theta, dtype=float), y.shape)
    pos = y > 0
    yp = np.where(pos, y, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        out = (
            -0.5 * (np.log1p(yp / theta) + np.log(yp))
            - _HALF_LOG_2PI
            + _stirling_remainder(yp + theta)
            - _stirling_remainder(theta)
            - _stirling_remainder(yp)
        )
    return np.where(pos, out, 0.0)


_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def _stirling_remainder(z):
    """``log Gamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2)``: from ``gammaln`` below
    20 (terms below 60, rounding of 1e-14), from Stirling's series above (its first five
    terms; the sixth is below 1e-17 there)."""
    z = np.asarray(z, dtype=float)
    big = z >= 20.0
    r = 1.0 / np.where(big, z, 20.0)
    r2 = r * r
    series = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 / 1188))))
    zs = np.where(big, 1.0, z)
    direct = special.gammaln(zs) - (zs - 0.5) * np.log(zs) + zs - _HALF_LOG_2PI
    return np.where(big, series, direct)


def _xlog_ratio(y, r):
    """``y log r`` for ratios ``r`` in [0, 1], 0 where ``y`` is 0 (``special.xlogy``,
    whose own call costs three times this where no ``r`` is 0)."""
    if np.min(r, initial=1.0) > 0.0:
        return y * np.log(r)
    return special.xlogy(y, r)


def digamma_part(y, theta):
    """Each row's digamma term of the derivative in ``log theta``: for ``theta`` of at
    least :data:`_SERIES_THETA` the excess ``theta [psi(y + theta) - psi(theta) - log1p(y
    / theta)]`` (of order ``y / theta``, where the digamma difference and the logarithm
    are each of order ``y / theta`` more), below it ``theta [psi(y + theta) -
    psi(theta)]``. With one theta for all rows (or per run of rows), once per count (and
    run)."""
    if np.ndim(theta) == 0:
        return by_count(y, lambda c: _digamma_part_rows(c, theta))
    return by_count_in_runs(y, theta, _digamma_part_rows)


def trigamma_part(y, theta):
    """As :func:`digamma_part`, of the second derivative: the excess ``theta^2 [psi'(y
    + theta) - psi'(theta) + y / (theta (y + theta))]`` (of order ``y / theta``) for
    large theta, ``theta^2 [psi'(y + theta) - psi'(theta)]`` below."""
    if np.ndim(theta) == 0:
        return by_count(y, lambda c: _trigamma_part_rows(c, theta))
    return by_count_in_runs(y, theta, _trigamma_part_rows)


# from this theta on, the polygamma terms are the excesses, from the asymptotic series
# (their truncation below 1e-15 of the value); below it the direct differences
_SERIES_THETA = 100.0


def _digamma_part_rows(y, theta):
    return _part_rows(y, theta, _digamma_series, _digamma_direct)


def _trigamma_part_rows(y, theta):
    return _part_rows(y, theta, _trigamma_series, _trigamma_direct)


def _part_rows(y, theta, series, direct):
    """``series(y, theta)`` where theta is at least :data:`_SERIES_THETA`, else
    ``direct(y, theta)``: for one theta one branch, for theta per row (or broadcast
    against ``y``) both, each where it applies."""
    if np.ndim(theta) == 0:
        y = np.asarray(y, dtype=float)
        return series(y, theta) if theta >= _SERIES_THETA else direct(y, theta)
    y, theta = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(theta, dtype=float))
    big = theta >= _SERIES_THETA
    with np.errstate(divide="ignore", invalid="ignore"):
        small = direct(y, np.where(big, 1.0, theta))
    return np.where(big, series(y, np.where(big, theta, _SERIES_THETA)), small)


def _digamma_direct(y, theta):
    return theta * (special.digamma(y + theta) - special.digamma(theta))


def _trigamma_direct(y, theta):
    return theta * theta * (trigamma(y + theta) - trigamma(theta))


def _series_parts(y, theta):
    """``(y / s, t, 1 / theta)`` with ``s = y + theta``, ``t = theta / s``: the
    excesses' series in powers of ``1 / theta`` read ``(s^n - theta^n) / (s theta)^n =
    (y / s) (1 + t + ... + t^(n-1)) / theta^n``, free of overflow."""
    s = theta + y
    return y / s, theta / s, 1.0 / theta


def _digamma_series(y, theta):
    # psi(x) ~ log x - 1/(2x) - 1/(12x^2) + 1/(120x^4) - 1/(252x^6), differenced
    ys, t, inv = _series_parts(y, theta)
    p2 = 1.0 + t
    p4 = p2 * (1.0 + t * t)
    p6 = p2 * (1.0 + t * t * (1.0 + t * t))
    return ys * (0.5 + inv * (p2 / 12.0 - inv * inv * (p4 / 120.0 - inv * inv * p6 / 252.0)))


def _trigamma_series(y, theta):
    # psi'(x) ~ 1/x + 1/(2x^2) + 1/(6x^3) - 1/(30x^5) + 1/(42x^7), differenced
    ys, t, inv = _series_parts(y, theta)
    p2 = 1.0 + t
    p3 = 1.0 + t * p2
    p5 = 1.0 + t * (1.0 + t * p3)
    p7 = 1.0 + t * (1.0 + t * p5)
    return -ys * (p2 / 2.0 + inv * (p3 / 6.0 - inv * inv * (p5 / 30.0 - inv * inv * p7 / 42.0)))


def log1p_minus(u, log1p_u=None):
    """``log1p(u) - u`` for ``u > -1``, free of the cancellation near 0: with ``v = u /
    (2 + u)`` it is ``-u^2 / (2 + u) + 2 v^3 (1/3 + v^2/5 + v^4/7 + ...)`` for ``|u| <
    1/4`` (``|v| < 1/7``: twelve terms), the direct difference elsewhere, from
    ``log1p_u`` where given (``log(1 + u)`` made without rounding ``1 + u``: near ``u =
    -1`` it is all in that rounding)."""
    u = np.asarray(u, dtype=float)
    small = np.abs(u) < 0.25
    us = np.where(small, u, 0.0)
    v = us / (2.0 + us)
    v2 = v * v
    acc = np.zeros_like(v)
    for k in range(_LOG1P_TERMS - 1, -1, -1):
        acc = acc * v2 + 1.0 / (2 * k + 3)
    series = -us * us / (2.0 + us) + 2.0 * v * v2 * acc
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = (np.log1p(u) if log1p_u is None else log1p_u) - u
    return np.where(small, series, direct)


_LOG1P_TERMS = 12
