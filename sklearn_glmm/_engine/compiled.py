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

from .families.negbin import _LOG1P_TERMS, _SERIES_THETA
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


def _batched_laplace(
    family,
    X,
    offset,
    Z,
    codes,
    n_levels,
    theta_rows,
    theta_cols,
    trials,
    weights,
    Y,
    const,
    params,
    U0,
    max_iter,
    near,
    with_scale,
    thetas,
    const_theta,
    digammas,
):
    """``BatchedLaplace.evaluate`` for one grouping factor with one or two random effects
    per level (``q`` columns of ``Z``), replicate by replicate: the modes by penalised
    IRLS (the same Newton steps, step halving and stopping rule), the Laplace value, its
    analytic gradient, the modes' derivatives ``J`` and, with ``with_scale``, the
    Gauss-Newton diagonal, each in one or two loops over the rows.

    ``Y`` and ``const`` (R, n): the replicates' outcomes and parameter-free terms;
    ``params`` (R, n_beta + n_theta [+ 1]), ``U0`` (R, G * q). For NB2, each
    replicate's ``theta`` (``thetas``, (R,)), its term ``log Gamma(y + theta) - log
    Gamma(theta)`` (``const_theta``) and the digamma term of the derivative in ``log
    theta`` (``digammas``, :func:`~sklearn_glmm._engine.families.negbin.digamma_part`),
    (R, n) each, made by the numpy code; the gradient then has a last
    entry in ``log theta`` (``BatchedLaplace._extra_gradient``). Returns ``(ok, value,
    grad, U, J, gn)`` as :meth:`BatchedLaplace.evaluate` (``gn`` zeros without
    ``with_scale``).
    """
    R = params.shape[0]
    n, p = X.shape
    q = Z.shape[1]
    G = n_levels
    T = theta_rows.shape[0]
    P = p + T
    nb2 = family == NEGBIN2_LOG
    ok = np.zeros(R, dtype=np.bool_)
    value = np.full(R, np.nan)
    grad = np.full((R, P + 1 if nb2 else P), np.nan)
    U_out = np.zeros((R, G * q))
    J_out = np.zeros((R, G * q, P))
    gn = np.zeros((R, P))
    no_rows = np.zeros(0)
    eta_fix = np.empty(n)
    A = np.empty((q, n))
    ll = np.empty(n)
    d1 = np.empty(n)
    w = np.empty(n)
    w3 = np.empty(n)
    U = np.empty((G, q))
    U_try = np.empty((G, q))
    obj = np.empty(G)
    obj_try = np.empty(G)
    score = np.empty((G, q))
    H = np.empty((G, 3))  # per level: entries (0, 0), (0, 1), (1, 1) of the Hessian
    Hinv = np.empty((G, 3))
    step = np.empty((G, q))
    dec = np.empty(G)
    floor = np.empty(G)
    t = np.empty(G)
    worse = np.zeros(G, dtype=np.bool_)
    lam = np.zeros((q, q))

    def at(fam_r, y, cst, theta, cth, V, level_obj, score, H):
        """Rows' derivatives at modes ``V`` (G, q), per-level penalised log-densities and,
        in the same pass, the levels' sums of the Newton step (``A'd1`` and ``A'WA``)."""
        for g in range(G):
            level_obj[g] = 0.0
            for k in range(q):
                score[g, k] = 0.0
            for k in range(3):
                H[g, k] = 0.0
        for i in range(n):
            j = codes[i]
            e = eta_fix[i]
            for k in range(q):
                e += A[k, i] * V[j, k]
            a0, a1, a2, a3 = _row_terms(fam_r, y[i], e, trials[i], cst[i], theta, cth, i)
            ll[i] = weights[i] * a0
            d1[i] = weights[i] * a1
            w[i] = weights[i] * a2
            w3[i] = weights[i] * a3
            level_obj[j] += ll[i]
            for k in range(q):
                score[j, k] += A[k, i] * d1[i]
            H[j, 0] += w[i] * (A[0, i] * A[0, i])
            if q == 2:
                H[j, 1] += w[i] * (A[0, i] * A[1, i])
                H[j, 2] += w[i] * (A[1, i] * A[1, i])
        for g in range(G):
            s = 0.0
            for k in range(q):
                s += V[g, k] * V[g, k]
            level_obj[g] -= 0.5 * s

    for r in range(R):
        y = Y[r]
        cst = const[r]
        theta = thetas[r] if nb2 else 0.0
        cth = const_theta[r] if nb2 else no_rows
        # theta on its upper bound (infinite here): the Poisson limit's rows, as
        # NegativeBinomial2.derivs takes them, and no gradient in log theta
        limit = nb2 and theta == math.inf
        fam_r = POISSON_LOG if limit else family
        # X beta + offset and the rows of Z Lambda
        for i in range(n):
            eta_fix[i] = 0.0
        for j in range(p):
            b = params[r, j]
            for i in range(n):
                eta_fix[i] += b * X[i, j]
        for i in range(n):
            eta_fix[i] += offset[i]
        lam[:, :] = 0.0
        for k in range(T):
            lam[theta_rows[k], theta_cols[k]] = params[r, p + k]
        for c in range(q):
            for i in range(n):
                s = 0.0
                for k in range(c, q):
                    s += Z[i, k] * lam[k, c]
                A[c, i] = s
        for g in range(G):
            for k in range(q):
                U[g, k] = U0[r, g * q + k]
        at(fam_r, y, cst, theta, cth, U, obj, score, H)
        found = False
        logdet = 0.0
        for _it in range(max_iter):
            pd = True
            logdet = 0.0
            for g in range(G):
                for k in range(q):
                    score[g, k] -= U[g, k]
                ld, level_pd = _level_inverse(H, g, q, Hinv)
                pd = pd and level_pd
                logdet += ld
                if q == 1:
                    step[g, 0] = Hinv[g, 0] * score[g, 0]
                    dec[g] = score[g, 0] * step[g, 0]
                else:
                    step[g, 0] = Hinv[g, 0] * score[g, 0] + Hinv[g, 1] * score[g, 1]
                    step[g, 1] = Hinv[g, 1] * score[g, 0] + Hinv[g, 2] * score[g, 1]
                    dec[g] = score[g, 0] * step[g, 0] + score[g, 1] * step[g, 1]
            if not pd:
                break
            finite = True
            top = -math.inf
            big = 0.0
            for g in range(G):
                if not math.isfinite(dec[g]):
                    finite = False
                top = max(top, dec[g])
                for k in range(q):
                    big = max(big, abs(step[g, k]))
            if not finite:
                break
            found = _modes_found(dec, obj, big, top)
            if found:
                if top > 1e-20:  # within the log-density's rounding: modes.ModeSearch._last_step
                    for g in range(G):
                        for k in range(q):
                            U_try[g, k] = U[g, k] + step[g, k]
                    at(fam_r, y, cst, theta, cth, U_try, obj_try, score, H)
                    kept = top < near
                    if not kept:
                        kept = True
                        for g in range(G):
                            kept = kept and obj_try[g] >= obj[g] - 1e-12 * (1.0 + abs(obj[g]))
                    if kept:  # the levels' inverses at the modes kept, as the gradient reads
                        logdet = 0.0
                        for g in range(G):
                            obj[g] = obj_try[g]
                            for k in range(q):
                                U[g, k] = U_try[g, k]
                            ld, level_pd = _level_inverse(H, g, q, Hinv)
                            pd = pd and level_pd
                            logdet += ld
                        found = pd
                    else:
                        at(fam_r, y, cst, theta, cth, U, obj, score, H)
                break
            for g in range(G):
                floor[g] = obj[g] - 1e-12 * (1.0 + abs(obj[g]))
                t[g] = 1.0
            accepted = False
            for _half in range(40):
                for g in range(G):
                    for k in range(q):
                        U_try[g, k] = U[g, k] + t[g] * step[g, k]
                at(fam_r, y, cst, theta, cth, U_try, obj_try, score, H)
                accepted = True
                for g in range(G):
                    worse[g] = not (obj_try[g] >= floor[g]) and not (dec[g] < near) and t[g] > 0.0
                    if worse[g]:
                        accepted = False
                if accepted:
                    break
                for g in range(G):
                    if worse[g]:
                        t[g] *= 0.5
            if not accepted:
                for g in range(G):
                    if worse[g]:
                        t[g] = 0.0
                    for k in range(q):
                        U_try[g, k] = U[g, k] + t[g] * step[g, k]
                at(fam_r, y, cst, theta, cth, U_try, obj_try, score, H)
            for g in range(G):
                obj[g] = obj_try[g]
                for k in range(q):
                    U[g, k] = U_try[g, k]
        if not found:
            continue
        # the Laplace value
        total = 0.0
        for i in range(n):
            total += ll[i]
        val = -2.0 * total + logdet
        for k in range(q):
            for g in range(G):
                val += U[g, k] * U[g, k]
        # the analytic gradient (BatchedLaplace._gradient), H^-1 blocks symmetric
        s_ = np.zeros((G, q))
        for i in range(n):
            j = codes[i]
            c = Hinv[j, 0] * (A[0, i] * A[0, i])
            if q == 2:
                c += 2.0 * (Hinv[j, 1] * (A[0, i] * A[1, i]))
                c += Hinv[j, 2] * (A[1, i] * A[1, i])
            v = w3[i] * c
            ll[i] = v  # (v kept in ll: the value is made)
            for k in range(q):
                s_[j, k] += A[k, i] * v
        m = np.empty((G, q))
        for g in range(G):
            if q == 1:
                m[g, 0] = Hinv[g, 0] * s_[g, 0]
            else:
                m[g, 0] = Hinv[g, 0] * s_[g, 0] + Hinv[g, 1] * s_[g, 1]
                m[g, 1] = Hinv[g, 1] * s_[g, 0] + Hinv[g, 2] * s_[g, 1]
        gr = np.zeros(P)
        rhs = np.zeros((G, q, P))
        pz = np.zeros((q, G))
        Dr = np.zeros((q, G))
        wza = np.zeros((q, q, G))
        for i in range(n):
            j = codes[i]
            psi = -2.0 * d1[i] + ll[i]
            for k in range(q):
                psi -= (w[i] * A[k, i]) * m[j, k]
            for b in range(p):
                gr[b] += psi * X[i, b]
                for k in range(q):
                    rhs[j, k, b] -= (w[i] * A[k, i]) * X[i, b]
            for rz in range(q):
                z = Z[i, rz]
                pz[rz, j] += psi * z
                Dr[rz, j] += d1[i] * z
                for k in range(q):
                    wza[rz, k, j] += (w[i] * z) * A[k, i]
        for kt in range(T):
            rz = theta_rows[kt]
            col = theta_cols[kt]
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for g in range(G):
                if q == 1:
                    hk = Hinv[g, 0] * wza[rz, 0, g]
                else:
                    hk = Hinv[g, col] * wza[rz, 0, g] + Hinv[g, col + 1] * wza[rz, 1, g]
                s1 += pz[rz, g] * U[g, col]
                s2 += m[g, col] * Dr[rz, g]
                s3 += hk
                for k in range(q):
                    rhs[g, k, p + kt] = -U[g, col] * wza[rz, k, g]
                rhs[g, col, p + kt] += Dr[rz, g]
            gr[p + kt] = s1 + s2 + 2.0 * s3
        good = math.isfinite(val)
        for k in range(P):
            good = good and math.isfinite(gr[k])
        value[r] = val
        for k in range(P):
            grad[r, k] = gr[k]
        if limit:
            grad[r, P] = 0.0
        elif nb2:
            # in log theta (BatchedLaplace._extra_gradient): -2 dl + c dw + (A m) dd1 over
            # the rows, NegativeBinomial2.extra_derivs's terms at the modes
            ge = 0.0
            dig = digammas[r]
            for i in range(n):
                j = codes[i]
                e = eta_fix[i]
                am = 0.0
                for k in range(q):
                    e += A[k, i] * U[j, k]
                    am += A[k, i] * m[j, k]
                c = Hinv[j, 0] * (A[0, i] * A[0, i])
                if q == 2:
                    c += 2.0 * (Hinv[j, 1] * (A[0, i] * A[1, i]))
                    c += Hinv[j, 2] * (A[1, i] * A[1, i])
                mu = math.exp(min(e, _ETA_MAX))
                tm = theta + mu
                s_r = (theta / tm) * (mu / tm)
                mmy = mu - y[i]
                if theta >= _SERIES_THETA:  # (NegativeBinomial2._log_theta_terms)
                    ratio = math.log1p(y[i] / theta) - math.log1p(mu / theta)
                    dl = dig[i] + theta * _log1p_minus(-mmy / tm, ratio)
                else:
                    dl = dig[i] + theta * (mmy / tm - math.log1p(mu / theta))
                dd1 = -s_r * mmy
                dw = s_r * (2.0 * theta * mu + y[i] * mu - theta * y[i]) / tm
                wt = weights[i]
                ge += -2.0 * (wt * dl) + c * (wt * dw) + am * (wt * dd1)
            grad[r, P] = ge
            good = good and math.isfinite(ge)
        for g in range(G):
            for k in range(q):
                U_out[r, g * q + k] = U[g, k]
                for b in range(P):
                    if q == 1:
                        J_out[r, g, b] = Hinv[g, 0] * rhs[g, 0, b]
                    else:
                        J_out[r, g * 2 + k, b] = (
                            Hinv[g, k] * rhs[g, 0, b] + Hinv[g, k + 1] * rhs[g, 1, b]
                        )
        ok[r] = good
        if with_scale:
            for b in range(P):
                s = 0.0
                for i in range(n):
                    j = codes[i]
                    if b < p:
                        D = X[i, b]
                    else:
                        D = Z[i, theta_rows[b - p]] * U[j, theta_cols[b - p]]
                    for k in range(q):
                        D += A[k, i] * J_out[r, j * q + k, b]
                    s += max(w[i], 0.0) * D * D
                s2 = 0.0
                for g in range(G * q):
                    s2 += J_out[r, g, b] * J_out[r, g, b]
                gn[r, b] = 2.0 * s + 2.0 * s2
    return ok, value, grad, U_out, J_out, gn


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
        for name in _SHARED:  # the kernels' shared functions, compiled first
            if not hasattr(globals()[name], "py_func"):  # (numba calls compiled code)
                globals()[name] = jit(globals()[name])
        kernel = _KERNELS[fn.__name__] = jit(fn)
    return kernel


def scalar_modes(*args):
    """:func:`_modes`, compiled."""
    return _compiled(_modes)(*args)


def scalar_gradient_rows(*args):
    """:func:`_gradient_rows`, compiled."""
    return _compiled(_gradient_rows)(*args)


def batched_laplace(*args):
    """:func:`_batched_laplace`, compiled."""
    return _compiled(_batched_laplace)(*args)
