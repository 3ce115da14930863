"""Restarts of a fit from other starts, kept where they end lower: a covariance
structure's correlations from their own restart values, and the variances of random
slopes on a level predictor (whose likelihood can have several optima)."""

from __future__ import annotations

import functools

import numpy as np

from .stage import _finite_start, _laplace_stage

# the SDs (internal scale) of a structure's restarts from ``small_sd_restarts``
_SMALL_SD = 0.1


def _structure_restarts(obj, x, bounds, max_iter, tol, diag_idx, record):
    """``x``, or a lower optimum found by starting a covariance structure's correlation
    from its ``restart_correlations`` (its SDs from at least their start).

    A correlation's likelihood can have a local optimum on each side: an ``ar1`` fit
    started at rho = 0.3 stopped there (or with its SD at 0, where the correlation is
    flat) up to 0.9 in log-likelihood below the optimum at a negative rho, and a ``cs``
    fit on its lower bound 0.08 below one at rho = 0.9999, both converged. The restarts
    with every SD small (``small_sd_restarts``) also put the other factors' variances at
    least at their start: a binomial ``cs`` fit with a ``(1 | site)`` term (8 people x 6
    times) stopped with the site's SD at 0 and rho 0.89, 0.21 in -2 log L above the
    optimum at rho = 0.9999 with a site SD of 0.67. Those with every SD at its start
    value (``start_sd_restarts``) leave the pattern of SDs the fit reached: another
    such fit (7 people) stopped at rho -0.2 with two SDs near 0, 1.21 above the optimum
    at rho 0.98 with other SDs near 0. A restart that ends lower by more than 1e-6 is
    kept (a stage ``"structure restart"``).
    """
    data = obj.data
    if not getattr(data, "structured", False):
        return x
    fun = float(obj.evaluate(x))
    first = data.n_beta
    for f in data.factors:
        st, n = f.structure, f.n_params
        starts = getattr(st, "restart_correlations", ()) if f.mapped else ()
        if starts and st.n_cor == 1:
            sd = slice(first, first + st.n_sd)
            # the other factors' variances (an SD, a Cholesky diagonal)
            others = [k for k in diag_idx if not first <= k < first + n]
            cor = first + st.n_sd
            rho0 = float(st.cor_values(x[cor : cor + 1])[0])
            tries = [(r, None) for r in starts]
            tries += [(r, "small") for r in getattr(st, "small_sd_restarts", ())]
            tries += [(r, "start") for r in getattr(st, "start_sd_restarts", ())]
            for rho, sds in tries:
                c = st.cor_params([rho])
                if c is None or (sds is None and abs(rho - rho0) < 0.2):
                    continue
                xs = np.array(x, dtype=float)
                xs[cor] = c[0]
                if sds is None:
                    xs[sd] = np.maximum(xs[sd], record.initial[sd])
                else:
                    # the other factors' variances at least at their start too: one at
                    # zero may lower the objective only beside another pattern of this
                    # structure's SDs (a zero's own probe does not see it)
                    xs[sd] = _SMALL_SD if sds == "small" else record.initial[sd]
                    xs[others] = np.maximum(xs[others], record.initial[others])
                res = _laplace_stage(obj, xs, bounds, max_iter, tol, diag_idx)
                if np.isfinite(res.fun) and res.fun < fun - 1e-6:
                    x, fun = res.x, float(res.fun)
                    record.stages.append(("structure restart", fun, int(res.nit), str(res.message)))
        first += n
    obj.evaluate(x)
    return x


# starts of a factor's Cholesky entries tried where one of its slopes is of a predictor
# of the level itself: the plain start, a small one, a large one, (two random effects)
# each sign of the correlation with a small intercept, and where every column is alike
# within levels the moment estimate of the covariance from the levels' effects and
# (with correlations) its rank-one version (:func:`_level_variance_thetas`), and last,
# for three random effects or more, the best optimum so far put on the rank-one
# boundary (:func:`_rank_one_version`). On 10
# Poisson data sets with such slopes (counts 20 to 6e4) the moment start ended 0.2-39.4
# below the best of these on 8; each start alone found the best on 3 to 6 of them. The
# large one (2) is the only start that reached the optimum on a binomial and a negative
# binomial data set of 8 levels, some without any success or count (SDs near 5 there;
# the others ended 0.71 and 2.09 below, converged). With a slope of time beside the
# level predictor's (binomial, 12 levels), every start but the rank-one version of the
# optimum reached ended converged at a local optimum 0.0105 below the rank-one one
# glmer's Nelder-Mead reaches
_LEVEL_SLOPE_DIAGONALS = (0.5, 0.05, 2.0)
_LEVEL_SLOPE_SIGNED = ((0.1, 0.5, 0.1), (0.1, -0.5, 0.1))


def _level_variance_thetas(f, effects) -> list:
    """Starts of the Cholesky entries of factor ``f`` whose rows of ``Z`` are alike
    within each level (``t_j``, :attr:`FactorData.rows_alike_within_levels`), by the
    method of moments from the levels' own effects ``c_j`` around the model without
    random effects (a few Newton steps of each level's shift of the linear predictor,
    ``effects(shifts)`` -> ``(t, w, d1)``, :meth:`level_effects`): each level's effect
    is one scalar of variance ``t_j' S t_j``, so ``c_j^2 - 1 / w_j`` (the square less
    its sampling variance) regressed on the products ``t_j t_j'`` estimates ``S``
    (levels weighted by their information, those whose shift runs away left out),
    which is put on the positive definite side and factored; and, for a term with
    correlations, its rank-one version on the boundary: the same SDs, every
    correlation +-1. A diagonal covariance's SDs alone (one start). Empty where too
    few levels are left, or no variance."""
    shifts = np.zeros(f.n_levels)
    for _ in range(_LEVEL_EFFECT_STEPS):
        t, w, d1 = effects(shifts)
        step = np.where(w > 0.0, d1 / np.where(w > 0.0, w, 1.0), 0.0)
        step = np.clip(np.nan_to_num(step), -1.0, 1.0)  # (a step of e in the log: damped)
        shifts = np.clip(shifts + step, -_LEVEL_EFFECT_LIMIT, _LEVEL_EFFECT_LIMIT)
        if np.max(np.abs(step), initial=0.0) < 1e-8:
            break
    t, w, _ = effects(shifts)
    ok = (w > 1e-8) & (np.abs(shifts) < _LEVEL_EFFECT_LIMIT)
    # a diagonal covariance (lme4's ``||``, ``diag()``): its variances alone
    diagonal = bool(np.all(f.theta_rows == f.theta_cols))
    pairs = [(a, b) for a in range(f.q) for b in range(a + 1) if a == b or not diagonal]
    if ok.sum() <= len(pairs):
        return []
    c, tt, sampling = shifts[ok], t[ok], 1.0 / w[ok]
    # c^2 - 1/w has a variance of about 2 (v + 1/w)^2: levels of little information
    # weigh less (v taken as 1)
    sw = 1.0 / (1.0 + sampling)
    # the fixed effects without random effects are off along t (a log-link intercept
    # absorbs E exp(b)): the effects' part linear in t taken out first
    c = c - tt @ np.linalg.lstsq(tt * sw[:, None], c * sw, rcond=None)[0]
    F = np.stack([tt[:, a] * tt[:, b] * (1.0 if a == b else 2.0) for a, b in pairs], axis=1)
    coef = np.linalg.lstsq(F * sw[:, None], (c * c - sampling) * sw, rcond=None)[0]
    S = np.zeros((f.q, f.q))
    for (a, b), v in zip(pairs, coef):
        S[a, b] = S[b, a] = v
    vals, vecs = np.linalg.eigh(S)
    if not np.all(np.isfinite(vals)) or vals[-1] <= 0.0:
        return []
    S = (vecs * np.maximum(vals, 1e-4 * vals[-1])) @ vecs.T
    if diagonal:  # (the Cholesky factor of a diagonal S: its SDs)
        return [np.sqrt(np.diag(S))[f.theta_rows]]
    # and on the boundary: the same SDs, every correlation +-1 with the signs of the
    # leading eigenvector (a level's variance the square of a line in t_j, where such
    # fits often end)
    edge = _rank_one_cholesky(S, vecs[:, -1])
    return [L[f.theta_rows, f.theta_cols] for L in (np.linalg.cholesky(S), edge)]


def _rank_one_cholesky(S, lead) -> np.ndarray:
    """The Cholesky factor (q, q) of the covariance with the SDs of ``S`` and every
    correlation +-1 with the signs of ``lead`` (its leading eigenvector): a first column
    of SDs, first entry at least 0, the others 0."""
    top = np.where(lead < 0.0, -1.0, 1.0) * np.sqrt(np.maximum(np.diag(S), 0.0))
    edge = np.zeros_like(S)
    edge[:, 0] = top if top[0] >= 0.0 else -top
    return edge


def _rank_one_version(x, parts):
    """``x`` with the covariance of each factor of three random effects or more
    (unstructured) among ``parts`` put on the boundary: the same SDs, every correlation
    +-1 with the signs of its leading eigenvector (:func:`_rank_one_cholesky`); None
    where that changes nothing (no such factor, or each already of rank one). Two
    random effects have a start for each sign of their correlation instead
    (:data:`_LEVEL_SLOPE_SIGNED`); three have four patterns of signs, of which the
    optimum reached picks one."""
    xs = np.array(x, dtype=float)
    for f, part in parts:
        if f.q < 3 or f.n_params != f.q * (f.q + 1) // 2:
            continue
        L = np.zeros((f.q, f.q))
        L[f.theta_rows, f.theta_cols] = x[part]
        S = L @ L.T
        xs[part] = _rank_one_cholesky(S, np.linalg.eigh(S)[1][:, -1])[f.theta_rows, f.theta_cols]
    return None if np.allclose(xs, x, rtol=1e-6, atol=1e-8) else xs


_LEVEL_EFFECT_STEPS = 20
_LEVEL_EFFECT_LIMIT = 10.0


def _level_slope_restarts(obj, x, bounds, max_iter, tol, diag_idx, record, refit_base=None):
    """``x``, or a lower optimum from other starts of the factors with several random
    effects (lme4's unstructured or diagonal covariance) one of whose slopes is of a
    predictor of the level itself (:attr:`FactorData.level_constant`).

    The variance of such a slope rests on how the spread between levels changes with
    the predictor, and its likelihood can have several optima: a Poisson fit of counts
    near 6e4 (102 rows, 40 groups) started at the moment estimates (slope SD 2) ended
    converged and singular, correlation -1, 39.4 in log-likelihood below the optimum
    with SDs near 0.1 and 0.005 that glmmTMB and the plain start reach; others ended at
    interior optima 4.9 below. Each start (:data:`_LEVEL_SLOPE_DIAGONALS`, and for two
    random effects :data:`_LEVEL_SLOPE_SIGNED`; where every column of the factor is
    alike within levels, the moment estimates of :func:`_level_variance_thetas`: on a
    Poisson data set the only start that reached lme4's optimum, 1.05 above the
    others; last, for three random effects or more, the best optimum so far with every
    correlation +-1, :func:`_rank_one_version`) is a whole Laplace stage; one that
    ends lower by more than 1e-6 is kept (a stage ``"level slope restart"``; the others
    ``"level slope restart, not kept"``).
    ``refit_base()``, for a refit from another point (a bootstrap replicate's, from the
    fitted estimate): a fresh fit's start, from which the starts are then made, and
    tried itself. Returns ``(x, nit)``: ``nit`` the iterations of the restart kept (to
    be read against ``max_iter``), None where none was.
    """
    data = obj.data
    first, parts = data.n_beta, []
    for f in data.factors:
        if f.q > 1 and not f.mapped and f.level_constant:
            parts.append((f, np.arange(first, first + f.n_params)))
        first += f.n_params
    if not parts:
        return x, None
    # a refit's starts are a fresh fit's (its start, and the others made from it):
    # from the fitted estimate alone, bootstrap replicates ended up to 3.7 in -2 log L
    # above a fresh fit of their outcome (and others below: neither reaches the lowest
    # optimum every time, both are tried)
    base = refit_base() if refit_base is not None else None
    initial = record.initial if base is None else base
    starts = []
    for value in _LEVEL_SLOPE_DIAGONALS:
        xs = np.array(initial, dtype=float)
        for f, part in parts:
            xs[part] = np.where(f.theta_rows == f.theta_cols, value, 0.0)
        starts.append(xs)
    if all(f.q == 2 and f.n_params == 3 for f, _ in parts):
        for entries in _LEVEL_SLOPE_SIGNED:
            xs = np.array(initial, dtype=float)
            for _, part in parts:
                xs[part] = entries
            starts.append(xs)
    moments = [np.array(initial, dtype=float) for _ in range(2)]
    for k, f in enumerate(data.factors):
        part = next((p for g, p in parts if g is f), None)
        if part is not None and f.rows_alike_within_levels:
            effects = functools.partial(obj.level_effects, k, initial)
            for xs, theta in zip(moments, _level_variance_thetas(f, effects)):
                xs[part] = theta
    starts += [xs for xs in moments if not np.array_equal(xs, initial)]
    if base is not None:  # a refit: also from the fresh fit's own start itself
        starts.append(base)
    fun = float(obj.evaluate(x))
    at_x, best, nit = obj.snapshot(), None, None
    for xs in [*starts, None]:
        if xs is None:  # last: the best optimum so far, of rank one
            xs = _rank_one_version(x, parts)
            if xs is None:
                break
        # (where it is infinite, as a fit's own start: diagonals shrunk until finite)
        res = _laplace_stage(obj, _finite_start(obj, xs, diag_idx), bounds, max_iter, tol, diag_idx)
        kept = bool(np.isfinite(res.fun) and res.fun < fun - 1e-6)
        name = "level slope restart" if kept else "level slope restart, not kept"
        record.stages.append((name, float(res.fun), int(res.nit), str(res.message)))
        if kept:
            obj.evaluate(res.x)  # (its state, kept to be put back)
            x, fun, best, nit = res.x, float(res.fun), obj.snapshot(), int(res.nit)
    obj.restore(at_x if best is None else best)
    return x, nit
