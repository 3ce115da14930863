"""Compiled kernels (numba, an optional extra), switched on by
``sklearn_glmm.set_config(compiled=True)``.

:func:`scalar_modes` is :meth:`ModeSearch._pirls_scalar
<sklearn_glmm._engine.modes.ModeSearch._pirls_scalar>` for the Poisson family with the
log link, the binomial family with the logit link and the negative binomial family NB2
with the log link (one ``log theta`` for all rows), in one loop over the rows per step
instead of about ten numpy calls: the same Newton steps, step halving, stopping rule
and arithmetic (each row's log-density and derivatives in the order of
``Poisson.derivs``, ``_logit_derivs`` and ``NegativeBinomial2.derivs``, each level's
sums in row order), so the modes agree with the numpy code to rounding. NB2's
theta-dependent parameter-free term ``log Gamma(y + theta) - log Gamma(theta)`` is made
by the numpy code and passed in with theta at each call; theta on its upper bound (the
Poisson limit) runs the Poisson kernel, as the numpy code takes the Poisson
derivatives there. The caller makes the state at the modes with the numpy code.
:func:`scalar_gradient_rows` is the per-row part of the gradient (for any family: it
reads the rows' derivatives), with the rows' terms the gradient in the family's own
parameters reads. numba is imported on the first call, not with the library; the
kernels are compiled once and cached on disk.
"""

from __future__ import annotations

import math

import numpy as np

POISSON_LOG = 0
BINOMIAL_LOGIT = 1
NEGBIN2_LOG = 2
# (families.base._ETA_MAX) exp(700) is finite in float64
_ETA_MAX = 700.0

# status of a search: converged, the iteration limit reached, a non-finite Newton step
FOUND, NOT_FOUND, NOT_FINITE = 0, 1, 2


def _modes(
    eta_fix,
    a,
    codes,
    n_levels,
    y,
    trials,
    weights,
    const,
    family,
    u0,
    max_iter,
    near,
    theta,
    const_theta,
):
    """The scalar mode search (see the module docstring) from ``u0``. ``a`` holds one
    value (a random intercept) or one per row; ``y``, ``trials``, ``weights`` and
    ``const`` (the log-density's parameter-free part) one per row. For NB2, ``theta``
    and ``const_theta`` (``log Gamma(y + theta) - log Gamma(theta)``, one per row);
    unread (and ``const_theta`` empty) for the other families.

    Returns ``(u, iterations, status)``: the last modes, the Newton steps taken and
    :data:`FOUND`, :data:`NOT_FOUND` (the iteration limit) or :data:`NOT_FINITE`.
    """
    n = eta_fix.shape[0]
    one_a = a.shape[0] == 1
    u = u0.copy()
    eta = np.empty(n)
    ll_rows = np.empty(n)
    d1 = np.empty(n)
    w = np.empty(n)
    w3 = np.empty(n)
    level_ll = np.zeros(n_levels)

    def rows(v):
        level_ll[:] = 0.0
        for i in range(n):
            ai = a[0] if one_a else a[i]
            e = eta_fix[i] + ai * v[codes[i]]
            eta[i] = e
            if family == POISSON_LOG:
                mu = math.exp(min(e, _ETA_MAX))
                ll = y[i] * e - mu + const[i]
                g1 = y[i] - mu
                c2 = mu
                c3 = mu
            elif family == NEGBIN2_LOG:
                mu = math.exp(min(e, _ETA_MAX))
                tm = theta + mu
                s = theta / tm
                r = mu / tm
                ll = const_theta[i] + const[i] - theta * math.log1p(mu / theta)
                # scipy's xlogy(y, r): 0 for y == 0
                ll = ll + (y[i] * math.log(r) if y[i] != 0.0 else 0.0)
                g1 = s * (y[i] - mu)
                c2 = s * r * (y[i] + theta)
                c3 = c2 * (s - r)
            else:
                ex = math.exp(-abs(e))
                r = 1.0 / (1.0 + ex)
                m = r if e >= 0.0 else ex * r
                log1pexp = math.log1p(ex) + max(e, 0.0)
                ll = y[i] * e - trials[i] * log1pexp + const[i]
                g1 = y[i] - trials[i] * m
                c2 = trials[i] * (ex * r * r)
                c3 = c2 * (1.0 - 2.0 * m)
            ll_rows[i] = weights[i] * ll
            d1[i] = weights[i] * g1
            w[i] = weights[i] * c2
            w3[i] = weights[i] * c3
            level_ll[codes[i]] += ll_rows[i]

    rows(u)
    obj = level_ll - 0.5 * u * u
    h = np.ones(n_levels)
    status = NOT_FOUND
    it = 0
    for it in range(max_iter):
        curv = np.zeros(n_levels)
        score = np.zeros(n_levels)
        for i in range(n):
            ai = a[0] if one_a else a[i]
            curv[codes[i]] += w[i] * (ai * ai)
            score[codes[i]] += ai * d1[i]
        h = 1.0 + curv
        step = (score - u) / h
        dec = step * step * h
        big = 0.0
        top = 0.0
        for j in range(n_levels):
            if not math.isfinite(step[j]):
                return u, h, eta, ll_rows, d1, w, w3, level_ll, it + 1, NOT_FINITE
            big = max(big, abs(step[j]))
            # NaN propagates, as in numpy's max (no test below then passes)
            if not math.isnan(top) and (math.isnan(dec[j]) or dec[j] > top):
                top = dec[j]
        found = big < 1e-11 or top < 1e-20
        if not found and top < 1e-8:  # modes._modes_found
            found = True
            for j in range(n_levels):
                if not dec[j] < 1e-22 * abs(obj[j]):
                    found = False
                    break
        if found:
            status = FOUND
            break
        floor = obj - 1e-12 * (1.0 + np.abs(obj))
        t = np.ones(n_levels)
        u_try = u + step
        ok = np.zeros(n_levels, dtype=np.bool_)
        accepted = False
        for _half in range(40):
            rows(u_try)
            obj_try = level_ll - 0.5 * u_try * u_try
            accepted = True
            for j in range(n_levels):
                ok[j] = obj_try[j] >= floor[j] or dec[j] < near
                accepted = accepted and ok[j]
            if accepted:
                break
            for j in range(n_levels):
                if not ok[j]:
                    t[j] *= 0.5
            u_try = u + t * step
        if not accepted:
            # no decrease within 40 halvings: those levels stay where they were
            for j in range(n_levels):
                if not ok[j]:
                    u_try[j] = u[j]
            rows(u_try)
            obj_try = level_ll - 0.5 * u_try * u_try
        u = u_try
        obj = obj_try
    return u, h, eta, ll_rows, d1, w, w3, level_ll, it + 1, status


def _gradient_rows(d1, w, w3, u, a, z, codes, hinv, mode_derivatives, extra_rows):
    """The per-row part of ``LaplaceGradient._gradient_scalar`` in two passes over the
    rows: ``psi`` (the rows' weights of the fixed effects' gradient ``X'psi``), the
    derivative in the Cholesky value ``g_theta``, with ``mode_derivatives`` the rows'
    ``w a`` and the modes' derivative in theta, and with ``extra_rows`` the rows' ``c``
    (``a' H^-1 a``) and ``A m`` the gradient in the family's own parameters reads (else
    empty arrays).

    ``a`` holds one value (a random intercept) or one per row; ``z`` the random
    effect's column of ``Z``, empty for a column of ones (its products are left out, as
    the numpy code leaves them out).
    """
    n = d1.shape[0]
    n_levels = hinv.shape[0]
    one_a = a.shape[0] == 1
    unit = z.shape[0] == 0
    psi = np.empty(n)
    av = np.zeros(n_levels)
    dz = np.zeros(n_levels)
    for i in range(n):
        j = codes[i]
        ai = a[0] if one_a else a[i]
        k = hinv[j] * ai
        v = k * ai * w3[i]
        psi[i] = v  # (v kept here until m is known)
        av[j] += ai * v
        dz[j] += d1[i] if unit else d1[i] * z[i]
    m = hinv * av
    g_theta = 0.0
    wk = 0.0
    wa = np.empty(n if mode_derivatives else 0)
    wau = np.zeros(n_levels)
    c = np.empty(n if extra_rows else 0)
    am = np.empty(n if extra_rows else 0)
    for i in range(n):
        j = codes[i]
        ai = a[0] if one_a else a[i]
        k = hinv[j] * ai
        p = -2.0 * d1[i] + psi[i] - m[j] * ai * w[i]
        psi[i] = p
        if extra_rows:
            c[i] = k * ai
            am[i] = m[j] * ai
        if unit:
            g_theta += p * u[j]
            wk += w[i] * k
        else:
            g_theta += p * (z[i] * u[j])
            wk += (w[i] * z[i]) * k
        if mode_derivatives:
            wa[i] = w[i] * ai
            wau[j] += u[j] * (wa[i] if unit else wa[i] * z[i])
    g_theta += np.sum(m * dz) + 2.0 * wk
    in_theta = hinv * (dz - wau) if mode_derivatives else np.zeros(0)
    return psi, g_theta, wa, in_theta, c, am


_KERNELS = {}


def _compiled(fn):
    """``fn`` compiled by numba on first use (cached on disk)."""
    kernel = _KERNELS.get(fn.__name__)
    if kernel is None:
        import numba

        kernel = _KERNELS[fn.__name__] = numba.njit(cache=True)(fn)
    return kernel


def scalar_modes(*args):
    """:func:`_modes`, compiled."""
    return _compiled(_modes)(*args)


def scalar_gradient_rows(*args):
    """:func:`_gradient_rows`, compiled."""
    return _compiled(_gradient_rows)(*args)
