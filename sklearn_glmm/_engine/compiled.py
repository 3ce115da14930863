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
parameters reads. :func:`batched_laplace` is
:meth:`BatchedLaplace.evaluate <sklearn_glmm._engine.batched.BatchedLaplace.evaluate>`
(the bootstrap's and the power analysis's batched refits) for one or two random effects
per level, Poisson or NB2 with the log link or binomial with the logit link (NB2's theta
terms made by the numpy code for each replicate's theta, as for the scalar kernel, and
its gradient in log theta in the kernel; a replicate's theta on its bound is the Poisson
limit's rows): each replicate's
mode search, Laplace value, gradient, mode derivatives and Gauss-Newton diagonal in
loops over its rows, the same steps and formulas. Each row's terms are one function,
:func:`_row_terms`, for all kernels. numba is imported on the first call, not with the
library; the kernels are compiled once and cached on disk.
"""

from __future__ import annotations

import math

import numpy as np

from .families.negbin import _LOG1P_TERMS
from .linalg.block import ROUNDED_PIVOT

POISSON_LOG = 0
BINOMIAL_LOGIT = 1
NEGBIN2_LOG = 2
# (families.base._ETA_MAX) exp(700) is finite in float64
_ETA_MAX = 700.0

# status of a search: converged, the iteration limit reached, a non-finite Newton step
FOUND, NOT_FOUND, NOT_FINITE = 0, 1, 2


def _row_terms(family, y, e, trials, const, theta, const_theta, i):
    """One row's log-density and its first three derivatives in ``eta`` (before prior
    weights), in the order of ``Poisson.derivs``, ``_logit_derivs`` and
    ``NegativeBinomial2.derivs``: ``(loglik, d1, w, w3)``. ``const`` is the row's
    parameter-free term; NB2 reads ``theta`` and ``const_theta[i]``."""
    if family == POISSON_LOG:
        mu = math.exp(min(e, _ETA_MAX))
        return y * e - mu + const, y - mu, mu, mu
    if family == NEGBIN2_LOG:
        mu = math.exp(min(e, _ETA_MAX))
        tm = theta + mu
        s = theta / tm
        r = mu / tm
        ll = const_theta[i] + const - theta * math.log1p(mu / theta)
        # scipy's xlogy(y, r): 0 for y == 0
        ll = ll + (y * math.log(r) if y != 0.0 else 0.0)
        c2 = s * r * (y + theta)
        return ll, s * (y - mu), c2, c2 * (s - r)
    ex = math.exp(-abs(e))
    r = 1.0 / (1.0 + ex)
    m = r if e >= 0.0 else ex * r
    log1pexp = math.log1p(ex) + max(e, 0.0)
    c2 = trials * (ex * r * r)
    return y * e - trials * log1pexp + const, y - trials * m, c2, c2 * (1.0 - 2.0 * m)


def _modes_found(dec, obj, big, top):
    """``modes._modes_found`` (or a step below 1e-11) for one search's levels: Newton
    decrements ``dec``, penalised log-densities ``obj``, the largest step ``big`` and
    the largest decrement ``top`` (NaN: not found)."""
    if big < 1e-11 or top < 1e-20:
        return True
    if not top <= 1e-8:
        return False
    for j in range(dec.shape[0]):
        if not dec[j] < 1e-22 * abs(obj[j]):
            return False
    return True


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
            ll, g1, c2, c3 = _row_terms(family, y[i], e, trials[i], const[i], theta, const_theta, i)
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
        if _modes_found(dec, obj, big, top):
            status = FOUND
            if top > 1e-20:  # within the log-density's rounding: modes.ModeSearch._last_step
                u_try = u + step
                rows(u_try)
                obj_try = level_ll - 0.5 * u_try * u_try
                kept = top < near
                if not kept:
                    kept = True
                    for j in range(n_levels):
                        kept = kept and obj_try[j] >= obj[j] - 1e-12 * (1.0 + abs(obj[j]))
                if kept:  # the curvature at the modes returned, as the gradient reads it
                    u = u_try
                    curv = np.zeros(n_levels)
                    for i in range(n):
                        ai = a[0] if one_a else a[i]
                        curv[codes[i]] += w[i] * (ai * ai)
                    h = 1.0 + curv
                else:
                    rows(u)
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


def _level_inverse(H, g, q, Hinv):
    """Level ``g``'s ``(1 + H)^-1`` into ``Hinv[g]`` (one or two random effects: the
    entries (0, 0), (0, 1), (1, 1) of ``H``); returns its log-determinant and whether it
    is positive definite."""
    if q == 1:
        h = 1.0 + H[g, 0]
        if not h > 0.0:
            Hinv[g, 0] = math.nan
            return math.nan, False
        Hinv[g, 0] = 1.0 / h
        return (math.log(h) if h > 0.0 else math.nan), h > 0.0
    a_ = 1.0 + H[g, 0]
    b_ = H[g, 1]
    c_ = 1.0 + H[g, 2]
    det = a_ * c_ - b_ * b_
    # rounding (entries of 1e16 and more: a determinant cancelled to below ROUNDED_PIVOT
    # of its terms, linalg.block's rule), or NaN: not positive definite
    if not det > ROUNDED_PIVOT * a_ * c_:
        Hinv[g, 0] = Hinv[g, 1] = Hinv[g, 2] = math.nan
        return math.nan, False
    Hinv[g, 0] = c_ / det
    Hinv[g, 1] = -b_ / det
    Hinv[g, 2] = a_ / det
    return (math.log(det) if det > 0.0 else math.nan), a_ > 0.0 and det > 0.0


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


def _log1p_minus(u, log1p_u):
    """:func:`~sklearn_glmm._engine.families.negbin.log1p_minus` of one value: ``log1p(u)
    - u`` by the same series for ``|u| < 1/4``, elsewhere ``log1p_u - u`` (``log1p_u``
    made without rounding ``1 + u``)."""
    if abs(u) >= 0.25:
        return log1p_u - u
    v = u / (2.0 + u)
    v2 = v * v
    acc = 0.0
    for k in range(_LOG1P_TERMS - 1, -1, -1):
        acc = acc * v2 + 1.0 / (2 * k + 3)
    return -u * u / (2.0 + u) + 2.0 * v * v2 * acc


_KERNELS = {}
# the kernels' shared functions (each kernel module lists those its kernels call)
_SHARED = ("_row_terms", "_modes_found", "_level_inverse", "_log1p_minus")


def _compiled(fn):
    """``fn`` compiled by numba on first use (cached on disk). A division by zero gives
    numpy's inf or NaN (``error_model="numpy"``), which the kernels' checks of finite
    steps and values read as the numpy code's do, instead of raising
    ``ZeroDivisionError`` (numba's default, Python's semantics)."""
    kernel = _KERNELS.get(fn.__name__)
    if kernel is None:
        import numba

        jit = numba.njit(cache=True, error_model="numpy")
        space = fn.__globals__  # the kernel's module
        for name in space["_SHARED"]:  # the kernels' shared functions, compiled first
            if not hasattr(space[name], "py_func"):  # (numba calls compiled code)
                space[name] = jit(space[name])
        kernel = _KERNELS[fn.__name__] = jit(fn)
    return kernel


def scalar_modes(*args):
    """:func:`_modes`, compiled."""
    return _compiled(_modes)(*args)


def scalar_gradient_rows(*args):
    """:func:`_gradient_rows`, compiled."""
    return _compiled(_gradient_rows)(*args)


def batched_laplace(*args):
    """:func:`~sklearn_glmm._engine.compiled_batched._batched_laplace`, compiled."""
    from .compiled_batched import _batched_laplace  # (it reads this module's functions)

    return _compiled(_batched_laplace)(*args)
