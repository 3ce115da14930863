"""The compiled kernel of :meth:`BatchedLaplace.evaluate
<sklearn_glmm._engine.batched.BatchedLaplace.evaluate>` (``compiled.batched_laplace``):
replicate by replicate, the rows of ``X beta`` and ``Z Lambda``, the mode search, the Laplace
value, its gradient (NB2's in log theta too), the modes' derivatives and the Gauss-Newton
diagonal, each a function compiled with the kernel (:data:`_SHARED`).
"""

from __future__ import annotations

import math

import numpy as np

from .compiled import (
    _ETA_MAX,
    NEGBIN2_LOG,
    POISSON_LOG,
    _level_inverse,
    _log1p_minus,
    _modes_found,
    _row_terms,
)
from .families.negbin import _SERIES_THETA

# the functions the kernel calls, compiled with it (``compiled._compiled``)
_SHARED = (
    "_row_terms",
    "_modes_found",
    "_level_inverse",
    "_log1p_minus",
    "_rows_at",
    "_replicate_rows",
    "_search_modes",
    "_laplace_value",
    "_laplace_gradient",
    "_log_theta_gradient",
    "_modes_out",
    "_gauss_newton_row",
)


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

    for r in range(R):
        y = Y[r]
        cst = const[r]
        theta = thetas[r] if nb2 else 0.0
        cth = const_theta[r] if nb2 else no_rows
        # theta on its upper bound (infinite here): the Poisson limit's rows, as
        # NegativeBinomial2.derivs takes them, and no gradient in log theta
        limit = nb2 and theta == math.inf
        fam_r = POISSON_LOG if limit else family
        _replicate_rows(r, params, X, offset, Z, theta_rows, theta_cols, eta_fix, lam, A)
        for g in range(G):
            for k in range(q):
                U[g, k] = U0[r, g * q + k]
        rows = (codes, eta_fix, A, trials, weights, ll, d1, w, w3)
        work = (U_try, obj_try, score, H, Hinv, step, dec, floor, t, worse)
        _rows_at(fam_r, y, cst, theta, cth, U, obj, score, H, rows)
        found, logdet = _search_modes(fam_r, y, cst, theta, cth, max_iter, near, rows, U, obj, work)
        if not found:
            continue
        val = _laplace_value(ll, U, logdet)
        gr, m, rhs = _laplace_gradient(X, Z, theta_rows, theta_cols, Hinv, U, rows)
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
            ge = _log_theta_gradient(y, eta_fix, A, U, m, Hinv, codes, theta, digammas[r], weights)
            grad[r, P] = ge
            good = good and math.isfinite(ge)
        _modes_out(r, U, Hinv, rhs, U_out, J_out)
        ok[r] = good
        if with_scale:
            _gauss_newton_row(r, X, Z, codes, theta_rows, theta_cols, A, U, w, J_out, gn)
    return ok, value, grad, U_out, J_out, gn


def _rows_at(fam_r, y, cst, theta, cth, V, level_obj, score, H, rows):
    """Rows' derivatives at modes ``V`` (G, q), per-level penalised log-densities and,
    in the same pass, the levels' sums of the Newton step (``A'd1`` and ``A'WA``); ``rows``
    the rows' inputs and the arrays of their terms (:func:`_batched_laplace`'s)."""
    codes, eta_fix, A, trials, weights, ll, d1, w, w3 = rows
    G, q = V.shape
    n = eta_fix.shape[0]
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


def _replicate_rows(r, params, X, offset, Z, theta_rows, theta_cols, eta_fix, lam, A):
    """Replicate ``r``'s ``X beta + offset`` (``eta_fix``) and the rows of ``Z Lambda``
    (``A``, (q, n)), ``Lambda`` made in ``lam``."""
    n, p = X.shape
    q = Z.shape[1]
    T = theta_rows.shape[0]
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


def _search_modes(fam_r, y, cst, theta, cth, max_iter, near, rows, U, obj, work):
    """The modes ``U`` (G, q) of one replicate by penalised IRLS from ``U`` (the rows'
    terms there made by :func:`_rows_at`, ``obj`` the levels' penalised
    log-densities): the same Newton steps, step halving level by level and stopping
    rule as the numpy code; ``(found, log-determinant)``, with ``Hinv`` (in ``work``,
    the search's scratch arrays) the levels' inverses at the modes and the rows' terms
    there."""
    U_try, obj_try, score, H, Hinv, step, dec, floor, t, worse = work
    G, q = U.shape
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
                _rows_at(fam_r, y, cst, theta, cth, U_try, obj_try, score, H, rows)
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
                    _rows_at(fam_r, y, cst, theta, cth, U, obj, score, H, rows)
            break
        for g in range(G):
            floor[g] = obj[g] - 1e-12 * (1.0 + abs(obj[g]))
            t[g] = 1.0
        accepted = False
        for _half in range(40):
            for g in range(G):
                for k in range(q):
                    U_try[g, k] = U[g, k] + t[g] * step[g, k]
            _rows_at(fam_r, y, cst, theta, cth, U_try, obj_try, score, H, rows)
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
            _rows_at(fam_r, y, cst, theta, cth, U_try, obj_try, score, H, rows)
        for g in range(G):
            obj[g] = obj_try[g]
            for k in range(q):
                U[g, k] = U_try[g, k]
    return found, logdet


def _laplace_value(ll, U, logdet):
    """The Laplace value ``-2 sum ll + log|H| + |U|^2`` at the modes."""
    G, q = U.shape
    n = ll.shape[0]
    total = 0.0
    for i in range(n):
        total += ll[i]
    val = -2.0 * total + logdet
    for k in range(q):
        for g in range(G):
            val += U[g, k] * U[g, k]
    return val


def _laplace_gradient(X, Z, theta_rows, theta_cols, Hinv, U, rows):
    """The analytic gradient at the modes (``BatchedLaplace._gradient``), ``H^-1``
    blocks symmetric: ``(gradient, m, rhs)``, ``m`` the levels' ``H^-1 A'(w3 c)`` and
    ``rhs`` the right-hand sides of the modes' derivatives (``rows``' ``ll`` is
    overwritten)."""
    codes, eta_fix, A, trials, weights, ll, d1, w, w3 = rows
    n, p = X.shape
    G, q = U.shape
    T = theta_rows.shape[0]
    P = p + T
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
    return gr, m, rhs


def _log_theta_gradient(y, eta_fix, A, U, m, Hinv, codes, theta, dig, weights):
    """NB2's gradient in log theta at the modes (``BatchedLaplace._extra_gradient``): -2 dl
    + c dw + (A m) dd1 over the rows, ``NegativeBinomial2.extra_derivs``'s terms."""
    q = U.shape[1]
    n = eta_fix.shape[0]
    ge = 0.0
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
    return ge


def _modes_out(r, U, Hinv, rhs, U_out, J_out):
    """Replicate ``r``'s modes into ``U_out`` and their derivatives ``H^-1 rhs`` into
    ``J_out``."""
    G, q = U.shape
    P = rhs.shape[2]
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


def _gauss_newton_row(r, X, Z, codes, theta_rows, theta_cols, A, U, w, J_out, gn):
    """Replicate ``r``'s Gauss-Newton diagonal (the optimiser's scaling) into ``gn``."""
    n, p = X.shape
    G, q = U.shape
    P = gn.shape[1]
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
