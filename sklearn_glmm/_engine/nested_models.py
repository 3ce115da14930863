"""The nested models as lower bounds of a fit (steps 1, 1b and 1c of :mod:`.converge`).

The model without random effects (the GLM) is the mixed model with every covariance
parameter at zero, and the model at a family parameter's flat-side bound (NB2's Poisson
limit, no zero inflation) is the mixed model there: a fit ending below either's maximum
is fitted again from it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .compiled_objective import make_objective
from .objective import Objective
from .ridge import FLAT_TOL, _flat_sides, _held, _on_flat_bound, _side_bound
from .stage import _laplace_stage, _probed_basin_holds, _with_family_parameters
from .start import glm_optimum


def glm_bound(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """The better of ``x`` and a fit restarted from the nested GLM's optimum.

    Returns ``(x, fun)``. The GLM's own maximum (fixed effects and the family's
    extra parameters free, every covariance parameter zero) is stored on the record.
    """
    d = obj.data
    p, T = d.n_beta, d.n_theta
    if not T:
        return x, fun
    keep = np.r_[np.arange(p), np.arange(p + T, len(x))]
    x_glm, glm_fun = getattr(obj, "glm_optimum", (None, np.nan))
    if not np.isfinite(glm_fun):
        # with the family's extra parameters, on a subset of rows (large data) or when
        # Newton did not settle: fitted on every row from the mixed model's optimum (NB2
        # by Newton's method; L-BFGS-B's relative tolerance of 1e-9 leaves the bound
        # within ~1e-6 of the GLM's optimum)
        # the mixed model's per-row arrays go first on large data (made again from the
        # modes when read): they and the GLM's own would otherwise be held at once
        obj.release_rows()
        x_glm, glm_fun = glm_optimum(d, x[keep], max_iter)
    record.glm_objective = float(glm_fun)
    if not np.isfinite(glm_fun) or fun <= glm_fun + 1e-6:
        return x, fun
    # below the model without random effects: start again from the GLM's optimum,
    # every variance at zero (the stage moves them off the boundary itself)
    x0 = np.zeros(len(x))
    x0[keep] = x_glm
    r = _laplace_stage(obj, x0, bounds, max_iter, tol, diag_idx)
    record.stages.append(("glm restart", float(r.fun), int(r.nit), str(r.message)))
    if r.fun < fun:
        return r.x, float(r.fun)
    return x, fun


def limit_bounds(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """The better of ``x`` and the optima found from the nested models at the family's
    flat-side bounds (step 1b of the module docstring).

    A family parameter with a flat side ends, at its bound, in a nested model: NB2 at
    theta = inf is the Poisson model, a zero-inflated model at probability 0 the model
    without it, the beta-binomial at phi = inf the binomial. That model's maximum
    (the same random effects, the rest of the parameters free) is a lower bound for the
    full model's, as the GLM's is. Where a grouping factor has random effects of one
    or two rows each (:data:`ROW_LEVEL_ROWS`: an observation-level effect, a
    structure over time points with one row per person and time), they can take the
    row-level variation the family's parameter takes, and the likelihood has two
    basins; a fit that starts in the family's (from the GLM's theta) ended there up to
    3.4 log-likelihood units below the optimum, converged by every other check. For
    such models each such parameter not on its bound is held there and the model
    fitted (a stage ``"limit of ..."``); where that is better, the full model is fitted
    again from there and the better of the two kept. (With three or more rows per
    random effect no generated data set had the second basin, and the check would
    cost a whole stage per fit.)
    """
    if not row_level_effects(obj):
        return x, fun
    at_x, x0, fun0 = obj.snapshot(), x, fun
    stage_args = (bounds, max_iter, tol, diag_idx, record)
    for k, side in _flat_sides(obj):  # each limit from the fit's own point
        if _on_flat_bound(x0, k, side, bounds):
            continue
        bound = _side_bound(k, side, bounds)
        if bound is None:
            continue
        # the full model from the limit's optimum with the parameter back where the fit
        # had it: on its bound the gradient along a flat side is nil, and a run from
        # there stays (a limit better than a fit that had not converged is not the
        # optimum for that)
        names = (f"limit of parameter {k}", "from the limit")
        x, fun = _via_nested(obj, x0, [(k, bound)], [(k, x0[k])], fun0, (x, fun), names, stage_args)
    return _settled(obj, at_x, x0, x), fun


def _via_nested(obj, origin, holds, back, fun0, best, names, stage_args, gain=1e-6, profile=False):
    """The best of ``best`` (``(x, fun)``), the nested model with each parameter ``k`` of
    ``holds`` (``(k, value)``) held at its value fitted from ``origin``, and, where that
    is below ``fun0`` by more than ``gain``, the full model fitted from its optimum with
    the parameters of ``back`` (``(k, value)``) put at their values (stages ``names``).
    With ``profile``, also where the nested model is not below ``fun0`` but its
    covariance is far from the fit's (:func:`_covariance_moved`) and the full model's
    profile there is below ``fun0`` (the fixed effects and the family's parameters
    re-fitted from it, :func:`.stage._with_family_parameters`): the full model is then
    fitted from that point, and its end kept only where it is a basin
    (:func:`.stage._probed_basin_holds`)."""
    bounds, max_iter, tol, diag_idx, record = stage_args
    x1, held = _held(origin, bounds, holds)
    res = _held_stage(obj, x1, held, holds, max_iter, tol, diag_idx)
    record.stages.append((names[0], float(res.fun), int(res.nit), str(res.message)))
    if not np.all(np.isfinite(res.x)):
        return best
    start = res.x.copy()
    for k, value in back:
        start[k] = value
    if not res.fun < fun0 - gain:
        if not profile or not _covariance_moved(obj.data, res.x, best[0]):
            return best
        val, start = _with_family_parameters(obj, start, bounds)
        if not val < fun0 - gain or not np.all(np.isfinite(start)):
            return best
    full = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx)
    record.stages.append((names[1], float(full.fun), int(full.nit), str(full.message)))
    x, fun = best
    for cand, val in ((res.x, float(res.fun)), (full.x, float(full.fun))):
        if val < fun and np.all(np.isfinite(cand)):
            # (reached from the profile: kept where a basin, as a probe's end is)
            if res.fun < fun0 - gain or _probed_basin_holds(obj, cand, bounds):
                x, fun = cand, val
    return x, fun


def _held_stage(obj, x1, held, holds, max_iter, tol, diag_idx):
    """The Laplace stage of the nested model with the parameters of ``holds`` held (at
    ``x1``, within ``held``). Where the one parameter held is the family's last, on its
    flat side's bound, and the model there is the family without it (a zero-inflation
    probability: the count model, ``Family.nested_at_bound``), that model is fitted with
    its own family (:func:`_nested_model`; the zero-inflated density at the bound's
    probability, 2e-9, costs about twice as much per evaluation and is the count model
    but for a zero's ``log(1 + 2e-9 / f(0))``), and its optimum, the held parameter put
    back, is evaluated by the full objective, whose value the caller compares."""
    nested = _nested_model(obj, holds)
    if nested is None:
        return _laplace_stage(obj, x1, held, max_iter, tol, diag_idx)
    keep = np.arange(len(x1) - 1)
    res = _laplace_stage(nested, x1[keep], [held[j] for j in keep], max_iter, tol, diag_idx)
    obj.n_evals += nested.n_evals
    nested.release_state()
    x = np.array(x1, dtype=float)
    x[keep] = res.x
    res.x, res.fun = x, float(obj.evaluate(x))
    return res


def _nested_model(obj, holds):
    """The objective of ``obj``'s model without the family's last parameter, where
    ``holds`` holds that parameter (a scalar block's) on its flat side's bound, the
    family names the model there (``Family.nested_at_bound``) and ``obj`` holds its
    rows; else None. (Laplace or quadrature as ``obj`` is at the time.)"""
    d = obj.data
    last = d.n_beta + d.n_theta + d.n_extra - 1
    if not (isinstance(obj, Objective) and obj.holds_rows) or len(holds) != 1:
        return None
    side = d.extra_flat_side[-1] if d.n_extra else None
    if holds[0][0] != last or side is None:
        return None
    lo, hi = d.extra_bounds[-1]
    if holds[0][1] != (hi if side[0] == "upper" else lo):
        return None
    if d.family.nested_at_bound(len(d.family.blocks) - 1) is None:
        return None
    return without_last_block(d, obj.n_agq)


def without_last_block(data, n_agq):
    """The objective of ``data``'s model with the family the last block's bound names
    (``Family.nested_at_bound``: a zero-inflated model's count family), the last block's
    design dropped."""
    family = data.family.nested_at_bound(len(data.family.blocks) - 1)
    designs = None if data.extra_designs is None else tuple(data.extra_designs[:-1])
    if designs is not None and all(D is None for D in designs):
        designs = None
    return make_objective(replace(data, family=family, extra_designs=designs), n_agq)


# a covariance parameter (the internal scale's Cholesky entries: link-scale SDs of
# standardised columns) this far from the fit's, relative to its size where above 1,
# puts a nested model's optimum past the fit's neighbourhood (see bound_from_start)
_NESTED_MOVE = 0.25


def _covariance_moved(data, x, fitted) -> bool:
    """Whether a covariance parameter of ``x`` is :data:`_NESTED_MOVE` from ``fitted``'s."""
    c = slice(data.n_beta, data.n_beta + data.n_theta)
    move = np.abs(x[c] - fitted[c]) / np.maximum(1.0, np.abs(fitted[c]))
    return bool(np.max(move, initial=0.0) > _NESTED_MOVE)


def _settled(obj, at_x, x0, x):
    """``x``, the objective's state put back at ``x0``'s (``at_x``) when it is ``x0``."""
    if x is x0:
        obj.restore(at_x)
    else:
        obj.evaluate(x)
    return x


def bound_from_start(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """The better of ``x`` and the nested models fitted from the fit's start, for a
    family that is not log-concave (step 1c of the module docstring).

    At each flat side's bound the model is a nested one (NB2's theta = inf: the
    Poisson model, zero-inflated or hurdle as the full one; NB1's phi = 0; the
    beta-binomial's binomial limit; no zero inflation), whose maximum is a lower bound
    for the full model's. The Laplace objective of these families can have several
    basins, and the full model's path ended in a lower one: on the bound (a
    zero-inflated NB2 at theta = inf, 0.08 log-likelihood units below the zero-inflated
    Poisson fit), or inside (zero-inflated NB2 and NB1, hurdle NB2 on small data, 0.03
    to 0.8 below the nested fit), converged by every other check. Each nested model is
    fitted from the full model's start with the parameter held on its bound (a stage
    ``"bound ... from the start"``; not when the start is on the bound, a bootstrap
    replicate's of such a fit); where that is better, the full model is fitted again
    from there with the parameter at its start value, and the better of the two kept.
    Where it is not better but its covariance is far from the fit's (a parameter by
    :data:`_NESTED_MOVE`), the full model's profile at the nested model's covariance
    (the fixed effects and the family's parameters re-fitted from there, the parameter
    from its start value) may still be: the nested model's random effects take the
    variation the parameter took in the fit, and the full model has a basin there (a
    zero-inflated Poisson fit on eight groups of three rows ended at SD 0.14 with a
    zero-inflation probability of 0.52, -2 log L 68.461, converged; the model without
    zero inflation, 72.09, at SD 1.6, and the full model's profile there, 67.62; its
    optimum 67.621 at SD 1.56, glmmTMB's): the full model is then fitted from that
    point (a stage ``"from the bound"``), its end kept where it is a basin of the
    likelihood, as a probe's is (the Laplace approximation of these families is far too
    high in places where a level's counts are all zero). This costs a stage per flat
    side on every fit of these families (about twice the evaluations of a zero-inflated
    reference fit), and the profile, where made, a short run; the model without zero
    inflation runs with the count family itself (:func:`_held_stage`).
    """
    if obj.data.family.log_concave or record.initial is None:
        return x, fun
    at_x, x0, fun0 = obj.snapshot(), x, fun
    stage_args = (bounds, max_iter, tol, diag_idx, record)
    for k, side in _flat_sides(obj):
        bound = _side_bound(k, side, bounds)
        if bound is None or _on_flat_bound(record.initial, k, side, bounds):
            continue  # (a start on the bound: the path was the nested model's own)
        names = (f"bound of parameter {k} from the start", "from the bound")
        start = record.initial
        nested = (obj, start, [(k, bound)], [(k, start[k])], fun0, (x, fun), names, stage_args)
        x, fun = _via_nested(*nested, profile=True)
    return _settled(obj, at_x, x0, x), fun


def nested_blocks(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """The better of ``x`` and the model whose family blocks' designs keep their
    intercepts alone (``zi ~ 1`` for ``zi ~ x``), fitted from ``x`` with the blocks'
    slopes held at 0, and, where that is better, the full model fitted again from it;
    where a block's intercept is then past its flat side, the same with the intercept on
    that side's bound too (the block's limit: no zero inflation).

    The nested models' maxima are lower bounds of the full model's; a fit of
    ``ziformula = ~poly(x, 2)`` on data with constant zero inflation ended 0.14
    log-likelihood units below the ``zi ~ 1`` fit (a likelihood-ratio statistic of
    -0.29), converged by every other check, and fits along a block's ridge up to 0.04
    below it (1 of 300 and 3 of 500 generated data sets). A stage ``"block slopes at
    0"`` on every fit with such a design (its columns centred, the held model is the
    intercept-only block)."""
    data = obj.data
    if data.extra_designs is None or not data.n_extra:
        return x, fun
    held_idx, ends, k = [], [], len(x) - data.n_extra
    origin = np.array(x, dtype=float)
    for block, D in zip(data.family.blocks, data.extra_designs):
        width = 1 if D is None else D.shape[1]
        if width > 1 and bool(np.all(D[:, 0] == 1.0)):
            held_idx += list(range(k + 1, k + width))
            # (from the block's own start: a fit left on a ridge is where the gradient
            # of the nested model vanishes too)
            origin[k] = block.start
            if block.flat_side is not None:
                ends.append((k, block.flat_side))
        k += width
    if not held_idx:
        return x, fun
    at_x, x0 = obj.snapshot(), x
    stage_args = (bounds, max_iter, tol, diag_idx, record)
    slopes_at_0 = [(j, 0.0) for j in held_idx]
    # (kept where better by FLAT_TOL of -2 log L at least: less is a ridge's own slow
    # rise, which the checks at the optimum read off the ridge)
    names = ("block slopes at 0", "from block slopes at 0")
    x, fun = _via_nested(obj, origin, slopes_at_0, [], fun, (x, fun), names, stage_args, FLAT_TOL)
    # an intercept past its block's flat side (no zero inflation at the centre): the
    # block's limit, its intercept on that bound as well (the zi ~ 1 fit's own check)
    at_limit = []
    for j, side in ends:
        end = _side_bound(j, side, bounds)
        past = x[j] < side[1] if side[0] == "lower" else x[j] > side[1]
        if end is not None and past:
            at_limit.append((j, end))
    if at_limit:
        names = ("block at its limit", "from block at its limit")
        holds = slopes_at_0 + at_limit
        x, fun = _via_nested(obj, x, holds, [], fun, (x, fun), names, stage_args, FLAT_TOL)
    return _settled(obj, at_x, x0, x), fun


# rows per random effect (a factor's rows over its levels times its effects per level)
# up to which the effects are row-level, and a flat side's limit model is checked
ROW_LEVEL_ROWS = 2.0


def row_level_effects(obj) -> bool:
    """Whether some grouping factor has at most :data:`ROW_LEVEL_ROWS` rows (in the
    likelihood, reading the random effects: :meth:`rows_reading_effects`) per random
    effect."""
    if not obj.data.factors:
        return False
    n = float(obj.rows_reading_effects())
    return any(n <= ROW_LEVEL_ROWS * f.n_levels * f.q for f in obj.data.factors)


# a spread of the fixed effects' linear predictor over the used rows beyond this (e^40
# between the largest and smallest mean) is a limit at infinity, not a model of counts
# (a zero-truncated NB1 with a binary predictor ran to an intercept of -96 and a slope of
# 49: every row with the predictor at 0 at the count's limit as mu -> 0)
DEGENERATE_SPAN = 40.0


def from_plain_start(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """The better of ``x`` and the fit from the plain start (the intercept at the link of
    the mean outcome, every slope 0, the family's parameters at their defaults, the
    covariance parameters at the fit's start), for a family that is not log-concave
    whose fit has a fixed-effects linear predictor spread over more than
    :data:`DEGENERATE_SPAN` (step 1e of :mod:`.converge`): the nested GLM's optimum,
    the fit's start, can lie at such a limit at infinity (on some rows the count part
    at its limit as mu -> 0), from where the fit did not leave it while a higher optimum
    lay elsewhere (8.7 higher by Laplace, 4.1 by the integral, with a random-intercept
    SD of 2.5 where the fit had 0)."""
    from .start import mean_start

    data = obj.data
    if data.family.log_concave or record.initial is None or not data.n_beta:
        return x, fun
    used = np.asarray(data.weights) > 0
    eta = np.asarray(data.X)[used] @ x[: data.n_beta]
    if not eta.size or not np.ptp(eta) > DEGENERATE_SPAN:
        return x, fun
    start = np.array(record.initial, dtype=float)
    start[: data.n_beta] = mean_start(data)[0]
    start[data.n_beta + data.n_theta :] = data.default_extra()
    res = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx)
    record.stages.append(("from the plain start", float(res.fun), int(res.nit), str(res.message)))
    if res.fun < fun and np.all(np.isfinite(res.x)):
        return res.x, float(res.fun)
    obj.evaluate(x)
    return x, fun
