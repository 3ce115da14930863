"""The GLM's optimum over the fixed effects and a family's own parameters by Newton's
method, where the family gives those parameters' second derivatives.

The mixed model's start and the check that it ends no lower read the GLM's optimum in
``(beta, l)`` (``l``: NB2's ``log theta``). With the exact Hessian of ``log L``,

    -d2 log L / d beta2 = X' W X,  -d2 log L / d beta dl = -X' d1_l,
    -d2 log L / dl2 = -sum_i loglik_ll,

(the family's ``derivs``, ``extra_derivs`` and ``extra_second_derivs``; with several
parameters, ``extra_hessian_derivs``' first and second derivatives in each: an ordinal
model's thresholds), Newton's method from the GLM's fixed effects at the family's
default ``l`` takes a few steps where a quasi-Newton method takes about ten (an ordinal
model's twenty to thirty) evaluations. :func:`newton_optimum` returns None
where it does not apply or does not reach the optimum (a Hessian that is not positive
definite, a step that leaves the parameter's bounds, a line search that fails): the
caller then runs its general optimiser, from the last point reached.
"""

from __future__ import annotations

import numpy as np

from .batched_hessian import covers_family

# Newton's decrement g' H^-1 g (twice the quadratic model's gain in log L) at which the
# point is the optimum: the next step would gain less than this relative to |log L|
_DECREMENT_TOL = 1e-13
_MAX_STEPS = 30
_MAX_HALVINGS = 30


def applies(data) -> bool:
    """Whether the family's own parameters have their second derivatives here (NB2's
    ``log theta``, the same for every row: ``extra_second_derivs``; an ordinal model's
    thresholds: ``extra_hessian_derivs``) and its log-density is concave in ``eta``
    (a zero-inflated Poisson's ``logit pi`` has them too, but its GLM's Hessian at the
    start is not positive definite on ordinary data: L-BFGS-B). A cumulative link
    model with a log-concave latent distribution is concave in its coefficients and
    thresholds together (they enter as ``alpha_j - eta``)."""
    if not data.n_extra or data.extra_designs is not None or not data.family.log_concave:
        return False
    return bool(_one_parameter(data) or hasattr(data.family, "extra_hessian_derivs"))


def _one_parameter(data) -> bool:
    """One own parameter with ``extra_second_derivs`` (NB2, NB1, the beta-binomial)."""
    return data.n_extra == 1 and covers_family(data)


def _gradient_and_hessian(obj, point):
    """The gradient of ``log L`` and minus its Hessian in ``(beta, the family's
    parameters)`` at ``point`` (:func:`_point`'s), or None where the family does not give
    them there (NB2's Poisson limit, thresholds out of order)."""
    d = obj.data
    fam, p = d.family, d.n_beta
    eta, extra, der, ll = point
    args = (d.y, eta, obj._trials, obj._w, extra, obj._const)
    if _one_parameter(d):
        both = fam.extra_second_derivs(*args, with_first=True)
        if both is None:  # on the bound (the Poisson limit)
            return None
        (dl, d1_l, _), second = both
        g_own, cross, own = [dl.sum()], -(d.X.T @ d1_l)[:, None], -second[0].sum()
    else:
        glm_derivs = getattr(fam, "extra_glm_derivs", None)
        if glm_derivs is not None:  # what is read here, without the rest
            found = glm_derivs(*args)
        else:
            found = fam.extra_hessian_derivs(*args)
            found = None if found is None else (found[0][0], found[0][1], found[2][0])
        if found is None:
            return None
        l_e, d_e, l_ef = found
        g_own, cross, own = l_e.sum(axis=1), -(d.X.T @ d_e.T), -l_ef.sum(axis=2)
    E = cross.shape[1]
    g = np.concatenate([d.X.T @ der.d1, g_own])
    H = np.empty((p + E, p + E))
    H[:p, :p] = d.X.T @ (der.w[:, None] * d.X)
    H[:p, p:] = cross
    H[p:, :p] = cross.T
    H[p:, p:] = own
    return g, H


def newton_optimum(obj, x0):
    """``(x, -2 log L, x_last)`` of the GLM ``obj`` (a :class:`~.objective.GLMObjective`)
    from ``x0 = (beta, l)``: ``x`` its optimum, or None where Newton's method did not
    reach it (``x_last``: its last accepted point, where a general optimiser goes on)."""
    d = obj.data
    if not applies(d):
        return None, np.nan, x0
    p = d.n_beta
    lo = np.array([-np.inf if b[0] is None else b[0] for b in d.extra_bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in d.extra_bounds])
    x = np.asarray(x0, dtype=float).copy()
    point = _point(obj, x)
    if point is None:
        return None, np.nan, x
    for _ in range(_MAX_STEPS):
        ll = point[3]
        found = _gradient_and_hessian(obj, point)
        if found is None:
            return None, np.nan, x
        g, H = found
        try:
            chol = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:  # not a maximum's curvature here
            return None, np.nan, x
        step = np.linalg.solve(chol.T, np.linalg.solve(chol, g))
        decrement = float(g @ step)
        if not np.isfinite(decrement):
            return None, np.nan, x
        if decrement <= _DECREMENT_TOL * max(1.0, abs(ll)):
            return x, -2.0 * ll, x
        t = 1.0
        for _h in range(_MAX_HALVINGS):
            cand = x + t * step
            if np.any(cand[p:] < lo) or np.any(cand[p:] > hi):
                return None, np.nan, x  # the optimum at (or past) a bound
            new = _point(obj, cand)
            # Armijo's rule on the step's predicted gain (t * decrement)
            if new is not None and new[3] >= ll + 1e-4 * t * decrement:
                break
            t *= 0.5
        else:
            return None, np.nan, x
        x, point = cand, new
    return None, np.nan, x


def _point(obj, x):
    """``(eta, the family's values of its parameter, derivs, log L)`` at ``x``; None
    where log L is not finite."""
    d = obj.data
    p = d.n_beta
    eta = d.X @ x[:p] + d.offset
    extra = d.extra_values(x[p:])
    der = obj._derivs(eta, extra, third=False)
    ll = float(der.loglik.sum())
    obj.n_evals += 1
    return (eta, extra, der, ll) if np.isfinite(ll) else None
