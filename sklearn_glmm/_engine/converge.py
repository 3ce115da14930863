"""Checks on the optimiser's answer: the nested GLM, a Newton polish, the Hessian.

Order of calls in :func:`check_optimum` (after
:func:`~sklearn_glmm._engine.optimize.fit_objective`):

0. ``highest_modes`` — for a family that is not log-concave (zero inflation) the
   conditional modes are searched for the highest from here on, and the fit resumed
   when that changes the objective;
1. ``glm_bound`` — the model without random effects is the mixed model with every
   covariance parameter at zero, so its maximised likelihood is a lower bound for
   the mixed model's. A fit that ends below it is restarted from the GLM's optimum
   (moving each zero variance off its boundary, as the main stage does) and the
   better point kept; 1b. ``limit_bounds`` — likewise the nested model at each
   family parameter's flat-side bound (NB2's Poisson limit, no zero inflation), where
   random effects of one or two rows each can take the variation that parameter
   takes: a fit below that model's maximum is fitted again from there; 1c.
   ``bound_from_start`` — for a family that is not log-concave (several basins) the
   nested model at each flat side's bound is fitted from the fit's start as well, and
   a fit below it, or below the full model's profile at its covariance where that is
   far from the fit's, is fitted again from there; then ``nested_blocks`` (a family
   block with a design against its intercept-only model and that model's limit) and
   ``block_partial_limits`` (:mod:`.partial_limits`: the block at its limit on the rows
   of one value of a two-valued predictor, the other value's rows free; and the rows of
   one value released from a limit they share with other rows);
1d. ``leave_limit_ridge`` — a fit on its family's ridge to a limit distribution
   (:mod:`.limit_ridge`: the zero-truncated NB2's logarithmic series) is fitted again
   from a point off it, and the better point kept; 1e. ``from_plain_start`` — a fit of a
   family that is not log-concave whose fixed effects' linear predictor spans more than
   40 (a limit at infinity: the nested GLM's optimum can lie there) is fitted again from
   the plain start, and the better point kept; 1f. ``leave_flat_bounds`` — a family
   parameter on its flat side's bound (zero inflation at 0) where the likelihood's slope
   on the parameter's natural scale rises off it (the gradient in the logit is e^-20
   times that slope: nil to the optimiser) is probed from inside, and the fit resumed
   from a better point; one whose block has a far start (zero inflation at 0: the
   zeros' other basin) is fitted again from there (:mod:`.ridge`); 1g.
   ``zero_part_thresholds`` — a zero part with a predictor whose rows past a value are
   all zeros has a limit at infinity (those zeros certain, no zero
   inflation elsewhere) whose likelihood, the count model's on the other rows, is
   computed and, where above the fit, recorded for a warning (:mod:`.threshold_limits`);
2. ``newton_polish`` — the Hessian (finite differences of the analytic gradient) is
   computed at the optimum for the standard errors anyway; when lme4's scaled
   gradient check fails there, Newton steps on the free parameters (with step
   halving) take the fit the rest of the way; 2b. ``probe_new_zeros`` — a standard
   deviation those steps put on zero is probed above zero, as the main stage's end
   is, and the fit resumed from a better point; 2c. ``leave_zero_saddles`` — a
   standard deviation at zero with partners (the entries below it in its column, a
   structure's correlations) where the Hessian over them has a direction of negative
   curvature: the objective is followed along it, and the fit resumed from a lower
   point (a covariance block all at zero, where a restart from the GLM starts, can be a
   saddle that rises along each parameter alone); 2d. ``leave_saddle`` — a fit whose
   Hessian over the free parameters has a direction of negative curvature is read along
   it and resumed from a lower point there (:mod:`.saddle`);
3. ``scan_modes`` — for a family that is not log-concave, each level's density is
   scanned on a fine grid at the optimum: a higher mode found there resumes the
   fit once; levels with two comparable modes are recorded (not converged) — with
   quadrature, those where the rule centred at either mode is off the level's integral;
3b. ``to_central_covariances`` — a covariance the levels do not identify (a random
   slope of a two-valued level predictor) has a set of equal likelihood: the fit is
   moved to its point of largest ``det S``
   (:func:`.equal_likelihood.central_covariances`), one point whatever the optimiser's
   path, and the Hessian taken there;
3c. ``limit_gain`` — for a family with a ridge to a limit distribution (the
   zero-truncated NB2's logarithmic series), the objective is evaluated further along
   it (:mod:`.limit_ridge`): no worse there, the fit lies on the ridge, and the results
   read the model at its end;
4. ``rising_off_zero`` — a variance on its zero bound has a zero gradient (the
   objective is even in its Cholesky diagonal), so the gradient check cannot see
   whether the likelihood rises just above it; where the Hessian's curvature there is
   negative, the objective is evaluated at a few steps above zero (from where that
   curvature predicts a fall of ten ``RISE_TOL``), and a fit that is better at one of
   them is not converged; so is one lower along a zero diagonal and its partners
   (step 2c's directions);
5. the record gets the gradient, the Hessian, its definiteness and ``converged``:
   finite, within the iteration limit, scaled gradient at most ``GRAD_TOL``, no
   direction of negative curvature and no zero variance below which the likelihood
   rises — for every fit, boundary (singular) or not; 5b. ``along_set_not_lower`` —
   where the fit has a set of equal likelihood and the Hessian's negative curvature
   lies in its directions' span, the objective is evaluated along it: the set bends
   in the Cholesky entries, and the gradient left at the optimum reads that bend as
   negative curvature; where nothing near is lower (by ``RISE_TOL``), those directions
   are taken out of the Hessian as the set's flat ones are (a stage ``"negative
   curvature along the set"``); fits without such a set evaluate nothing here.

Steps 1-1c and 1e live in :mod:`.nested_models`, 1d and 3c in :mod:`.limit_ridge`, 1f
in :mod:`.ridge`, 1g in :mod:`.threshold_limits`, 2, 2b, 2c and 3b in :mod:`.polish`,
2d in :mod:`.saddle`, and the reading of the Hessian (5: the scaled gradient, the
curvature, the covariance) in :mod:`.curvature`; this module keeps the order and the
checks of steps 0, 3, 4 and 5b.

A bootstrap refit (``_simulate._fit_and_check``: started from the fitted optimum, its
gradient checked with the fitted model's Hessian) gets steps 4, 5's curvature and 5b
with its own Hessian at its end (:func:`check_curvature`): a replicate the optimiser
left at a saddle is not converged, as a fit there is not.

A fit of a family that is not log-concave that these checks find not converged is
fitted again with the highest modes searched at every evaluation (step 0 from the
start: :mod:`.fit_checked`, which the estimator's fit calls in place of
``fit_objective`` and this module's :func:`check_optimum`).
"""

from __future__ import annotations

import numpy as np

from .blas import single_threaded_blas
from .curvature import (
    GRAD_TOL,
    _aliased_removed,
    _negative_in_set,
    _without_flat,
    at_bound,
    curvature,
    identified_covariance,
    ridge_parameters,
    scaled_gradient,
    stopped_blocks,
)
from .equal_likelihood import (
    aliased_directions,
    aliased_factor_groups,
    design_count,
    joined,
    level_directions,
    points_on_the_set,
)
from .hessian import _hessian_steps, hessian
from .lbfgsb import _quiet_trial_points, bound_arrays
from .limit_ridge import leave_limit_ridge, limit_gain
from .nested_models import (
    bound_from_start,
    from_plain_start,
    glm_bound,
    limit_bounds,
    nested_blocks,
)
from .partial_limits import block_partial_limits
from .polish import (
    RISE_TOL,
    leave_zero_saddles,
    newton_polish,
    probe_new_zeros,
    rescaled_restart,
    to_central_covariances,
    zero_saddle_points,
)
from .ridge import _settle_flat_extra, leave_flat_bounds
from .saddle import leave_saddle
from .stage import _laplace_stage
from .threshold_limits import zero_part_thresholds


def highest_modes(obj, x, fun, bounds, max_iter, tol, diag_idx, record):
    """For a family that is not log-concave, the objective at the highest modes.

    A zero-inflated level can have two conditional modes; the Laplace
    approximation belongs at the higher. The optimiser runs with the cheaper
    search (from its warm start); here the search for the highest mode is switched
    on, and when it changes the objective at the optimum the fit is resumed from
    there with it (and it stays on); otherwise the optimiser's modes were the
    highest and the cheaper search serves the remaining evaluations. Levels with two
    comparable modes are recorded on ``record.competing_modes``.
    """
    if obj.data.family.log_concave or not hasattr(obj, "global_modes"):
        return x, fun
    obj.global_modes = True
    obj._last_key = None
    val = obj.evaluate(x)
    if abs(val - fun) > 1e-8 * (1.0 + abs(fun)):
        r = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx)
        record.stages.append(("highest modes", float(r.fun), int(r.nit), str(r.message)))
        x, val = r.x, float(r.fun)
        obj.evaluate(x)
    else:
        # the optimiser's modes were the highest: the Hessian's nearby evaluations
        # start from them, as the optimiser's did
        obj.global_modes = False
    return x, val


def scan_modes(obj, x, bounds, max_iter, tol, diag_idx, record):
    """The objective at ``x`` with every level at its highest mode (a fine scan).

    The search during the fit starts from few points; here each level's density is
    scanned on a fine grid. When that finds a higher mode, the fit resumes from
    ``x`` with the wider search on and is polished again (once). Levels with two
    comparable modes are recorded on ``record.competing_modes``: the Laplace
    objective jumps between them, and its optimum cannot be certified; with
    quadrature, those where the rule centred at either mode is off the level's integral
    (``record.quadrature_misses``: the quadrature's log integral less the integral).

    Returns ``(x, value, H, grads)``; ``H`` and ``grads`` are ``None`` when ``x``
    did not change.
    """
    fun = obj.evaluate(x)
    val, record.competing_modes, record.quadrature_misses = obj.scan_modes(x)
    if not val < fun - 1e-8 * (1.0 + abs(fun)):
        record.flattest_mode = _flattest_mode(obj)
        return x, val, None, None
    obj.global_modes = True
    r = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx)
    record.stages.append(("modes from the scan", float(r.fun), int(r.nit), str(r.message)))
    x, H, grads = newton_polish(obj, r.x if r.fun < val else x, bounds)
    val, record.competing_modes, record.quadrature_misses = obj.scan_modes(x)
    record.flattest_mode = _flattest_mode(obj)
    return x, val, H, grads


def _flattest_mode(obj):
    """``(level, curvature)`` of the level whose conditional mode is the flattest at the
    last point evaluated (its curvature relative to the prior's), for a Laplace fit with a
    scalar random effect; None otherwise."""
    curv = obj.mode_curvatures() if obj.n_agq == 1 else None
    if curv is None or not len(curv):
        return None
    k = int(np.argmin(curv))
    return k, float(curv[k])


def rising_off_zero(obj, x, fun, H, diag_idx, bounds=None) -> tuple:
    """The Cholesky diagonals at zero along which the objective falls (step 4 of the
    module docstring): negative curvature in the Hessian there, and a lower value above
    zero (by more than :data:`RISE_TOL`) at one of the steps :func:`_rise_steps`; with
    ``bounds``, also those off which it falls together with their partners
    (:func:`.polish.zero_saddle_points`)."""
    candidates = [k for k in diag_idx if x[k] == 0.0 and H[k, k] < 0.0]
    found = []
    if candidates:
        obj.value_and_grad(x)  # (remembered) the state the steps are read from
        steps = _hessian_steps(obj, x)
        at_x = obj.snapshot()
        try:
            for k in candidates:
                if _lower_above_zero(obj, at_x, x, k, _rise_steps(steps[k], H[k, k]), fun):
                    found.append(k)
        finally:
            obj.restore(at_x)
    if bounds is not None:
        rest = [k for k in diag_idx if k not in found]
        found += [k for k, _ in zero_saddle_points(obj, x, fun, H, bounds, rest)]
    return tuple(sorted(found))


# the first step above zero is where the Hessian's curvature there predicts a fall of
# this many RISE_TOL (the objective is even in the diagonal: its Taylor series there has
# no odd terms); then steps this many times longer, at most so many, none beyond 1
_RISE_PREDICTED = 10.0
_RISE_GROWTH = 4.0
_RISE_N = 4


def _rise_steps(difference_step, curvature) -> np.ndarray:
    """Steps above zero for a Cholesky diagonal whose Hessian there is ``curvature``
    (negative): from the longer of its ``difference_step`` and the step where the
    curvature predicts a fall of :data:`_RISE_PREDICTED` times :data:`RISE_TOL`,
    :data:`_RISE_N` steps growing by :data:`_RISE_GROWTH`, none beyond 1.

    One difference step alone (1e-4) sees a fall past ``RISE_TOL`` only where the
    curvature is below about -200: a crossed binomial fit (trials) with one SD at zero,
    0.108 in -2 log L above its optimum there (that SD 0.126) with a curvature of -30.9,
    fell 1.5e-7 over it."""
    predicted = np.sqrt(2.0 * _RISE_PREDICTED * RISE_TOL / abs(curvature))
    first = max(float(difference_step), float(predicted))
    return np.unique(np.minimum(first * _RISE_GROWTH ** np.arange(_RISE_N), 1.0))


def _lower_above_zero(obj, at_x, x, k, steps, fun) -> bool:
    """Whether the objective at ``x`` with its diagonal ``k`` at one of the ascending
    ``steps`` is below ``fun`` by more than :data:`RISE_TOL`; the steps end once it has
    risen past ``RISE_TOL`` above ``fun`` (farther is not near) or failed to evaluate
    (not a confirmation). Each evaluation from ``x``'s state ``at_x``."""
    for h in steps:
        up = x.copy()
        up[k] = h
        obj.restore(at_x)
        val = float(obj.evaluate(up))
        if val < fun - RISE_TOL:
            return True
        if not val <= fun + RISE_TOL:
            return False
    return False


# steps (unit-diagonal scale: about a standard error at 1) along a direction of negative
# curvature in the set's span, smallest first (below the first, 2.4e-4, a curvature of
# the unit-diagonal Hessian's size, under 30, lowers the objective by less than RISE_TOL)
_SET_STEPS = 2.0 ** -np.arange(12, -1, -1)


def along_set_not_lower(obj, x, fun, H, bounds, unidentified) -> tuple:
    """``(not_lower, lowest)``: whether the Hessian's negative curvature at ``x`` lies
    in the span of the directions of equal likelihood ``unidentified`` (each direction
    of it: :func:`_negative_in_set`) with the objective nowhere lower along it, by more
    than :data:`RISE_TOL`, at the steps :data:`_SET_STEPS` on either side; and the lowest
    value evaluated (None where nothing was, NaN at a failed evaluation).

    The set is linear in the covariance ``S`` but bends in its Cholesky entries, and
    the curvature of the objective along a curve of the set is nil: the Hessian's along
    its tangent ``v`` is then ``v'Hv = -g . theta''(v, v)``, the gradient ``g`` left at
    the optimum (within lme4's tolerance, nil only at an exact optimum) times the set's
    bend ``theta''``. Along the straight line the objective falls by about the
    gradient's own Newton decrement (2e-8 of -2 log L on arm fits that read as
    saddles), then rises as the line leaves the set. A saddle on the set (a direction
    that leaves its face at second order into a variance the likelihood wants larger)
    falls by more. Each step is evaluated from ``x``'s state, the steps of one side
    ascending until the objective has risen past :data:`RISE_TOL` (farther is not
    near); a failed evaluation is not a confirmation.
    """
    free = ~at_bound(x, bounds)
    Hf = H[np.ix_(free, free)]
    got = _negative_in_set(_without_flat(Hf, unidentified[free]), unidentified[free])
    if got is None:
        return False, None
    W, d, _ = got
    lo, hi = bound_arrays(bounds)
    obj.value_and_grad(x)  # (remembered) the state the steps are read from
    at_x = obj.snapshot()
    lowest = np.inf
    try:
        for w in W.T:
            v = np.zeros(len(x))
            v[free] = w / d
            for side in (v, -v):
                low = _lowest_on_line(obj, at_x, x, side, fun, lo, hi)
                lowest = min(lowest, low)
                if not low >= fun - RISE_TOL:  # (NaN: a failed evaluation)
                    return False, low
    finally:
        obj.restore(at_x)
    return True, lowest


def _lowest_on_line(obj, at_x, x, v, fun, lo, hi) -> float:
    """The lowest objective at ``x + h v`` (clipped to the bounds ``lo``, ``hi``) over
    the steps ``h`` of :data:`_SET_STEPS`, ascending until one is farther than
    :data:`RISE_TOL` from ``fun``; NaN at a failed evaluation."""
    lowest = np.inf
    for h in _SET_STEPS:
        obj.restore(at_x)
        val = float(obj.evaluate(np.clip(x + h * v, lo, hi)))
        if not np.isfinite(val):
            return np.nan
        lowest = min(lowest, val)
        if abs(val - fun) > RISE_TOL:
            break
    return lowest


def judge(record) -> None:
    """``record.converged`` from its checks at the optimum: within ``max_iter``, a
    finite objective, the scaled gradient, no negative curvature, no variance that
    rises off zero."""
    record.converged = bool(
        not record.hit_max
        and np.isfinite(record.objective)
        and record.gradient_ok
        and not record.negative_curvature
        and not record.rising_off_zero
    )


def _set_bend(obj, x, H, bounds, record) -> bool:
    """Step 5b of the module docstring: whether a fit with a set of equal likelihood
    has its negative curvature from the set's bend alone (:func:`along_set_not_lower`),
    recorded as a stage with the lowest value evaluated; False without evaluating
    anything where it has no such set."""
    if record.unidentified is None or not np.all(np.isfinite(H)):
        return False
    with single_threaded_blas(), _quiet_trial_points():
        bend, lowest = along_set_not_lower(obj, x, record.objective, H, bounds, record.unidentified)
    if lowest is not None:
        verdict = "not lower: the set's bend" if bend else "lower, or a failed evaluation"
        record.stages.append(("negative curvature along the set", float(lowest), 0, verdict))
    return bend


def _with_unidentified(obj, x, H, bounds, record):
    """``record.unidentified`` at ``x`` (the directions of equal likelihood: the levels'
    and those of factors that group the rows alike), and ``H`` with the latter taken
    out (flat by the design whatever the Hessian reads along them: its curvature there
    is the gradient's along the sum of the variances, the optimiser's tolerance)."""
    aliased = aliased_directions(obj, x, bounds)
    record.unidentified = joined(level_directions(obj, x, bounds), aliased)
    if aliased is not None and np.all(np.isfinite(H)):
        H = _aliased_removed(H, x, bounds, aliased)
    return H


def _curvature_verdict(obj, x, H, bounds, record) -> bool:
    """The record's covariance, flat and negative directions at ``x`` with the Hessian
    ``H`` (``record.unidentified`` set): the set's flat directions taken out
    (:func:`curvature`), and its bend where the objective is nowhere lower along it
    (step 5b of the module docstring); whether that bend was taken out."""
    args = (
        H,
        x,
        bounds,
        ridge_parameters(obj.data, x),
        stopped_blocks(obj.data, x, bounds),
        record.unidentified,
    )
    record.covariance, record.flat_directions, record.negative_curvature = curvature(*args)
    along_set = record.negative_curvature and _set_bend(obj, x, H, bounds, record)
    if along_set:
        record.covariance, record.flat_directions, record.negative_curvature = curvature(
            *args, along_set=True
        )
    return along_set


def _curvature_and_gradient(obj, x, H, bounds, record) -> None:
    """The record's covariance, flat and negative directions, gradient check on the
    identified directions and covariance over them, at ``x`` with the Hessian ``H``
    (:func:`_curvature_verdict`)."""
    N = record.unidentified
    along_set = _curvature_verdict(obj, x, H, bounds, record)
    if N is not None and np.all(np.isfinite(H)):
        # the gradient check on the identified directions (the scale of the others is nil)
        _, g = obj.value_and_grad(x)
        grads = scaled_gradient(g, H, x, bounds, N, along_set)
        record.max_grad, record.max_scaled_grad = grads
    record.identified_covariance = identified_covariance(H, x, bounds, N, along_set)


def check_optimum(obj, x, record, bounds, max_iter, tol):
    """Steps 1–3 of the module docstring; returns the final ``x`` (record updated)."""
    n_cov = obj.data.n_beta + obj.data.n_theta
    diag_idx = [k for k, b in enumerate(bounds[:n_cov]) if b[0] == 0.0]
    with single_threaded_blas(), _quiet_trial_points():
        fun = obj.evaluate(x)
        fitted = x
        x, fun = highest_modes(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = glm_bound(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = limit_bounds(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = bound_from_start(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = nested_blocks(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = block_partial_limits(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = leave_limit_ridge(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = from_plain_start(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = leave_flat_bounds(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        if x is not fitted:
            # a family parameter a later stage left drifting past its flat side (a
            # hurdle's zero probability at 5e-8 on data without zeros) settled on its
            # bound, as the fit's own stages' ends are (``ridge._settle_flat_extra``)
            x = _settle_flat_extra(obj, x, fun, bounds, max_iter, tol, diag_idx, record.stages)
            fun = obj.evaluate(x)
        zero_part_thresholds(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        before_polish = x
        x, H, grads = newton_polish(obj, x, bounds)
        fun = obj.evaluate(x)
        if not grads[1] <= GRAD_TOL and np.isfinite(fun):
            x, fun, H, grads = rescaled_restart(
                obj, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record
            )
        x, fun, H, grads = probe_new_zeros(
            obj, before_polish, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record
        )
        x, fun, H, grads = leave_zero_saddles(
            obj, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record
        )
        x, fun, H, grads = leave_saddle(
            obj, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record
        )
        if not obj.data.family.log_concave and hasattr(obj, "scan_modes"):
            x, fun, H_scan, grads_scan = scan_modes(obj, x, bounds, max_iter, tol, diag_idx, record)
            if H_scan is not None:
                H, grads = H_scan, grads_scan
        x, fun, H, grads = to_central_covariances(obj, x, fun, H, grads, bounds, record)
        record.limit_gain = limit_gain(obj, x, fun)
        record.objective = float(fun)
        record.max_grad, record.max_scaled_grad = grads
        record.rising_off_zero = rising_off_zero(obj, x, fun, H, diag_idx, bounds)
    record.final = x
    record.hessian = H
    _curvature_and_gradient(obj, x, _with_unidentified(obj, x, H, bounds, record), bounds, record)
    record.n_unidentified = design_count(obj)
    record.aliased = aliased_factor_groups(obj)
    if record.n_unidentified:
        record.set_points = points_on_the_set(obj, x, bounds)
    record.hessian_pd = not (record.flat_directions or record.negative_curvature)
    record.gradient_ok = record.max_scaled_grad <= GRAD_TOL
    # (the optimisation's own end point may have been infinite where a later stage here,
    # a restart from the GLM, found the optimum: finiteness is that of the final point)
    judge(record)
    record.n_evaluations = obj.n_evals
    return x


def check_curvature(obj, x, record, bounds, diag_idx) -> None:
    """Steps 4, 5 (the curvature) and 5b of the module docstring at the end ``x`` of a
    refit that :func:`check_optimum` does not check (a bootstrap replicate's, started
    from the fitted optimum: ``_simulate._fit_and_check``), with the refit's own Hessian
    there (the fitted model's cannot show a replicate's saddle): the record's
    ``negative_curvature``, ``rising_off_zero`` and ``converged`` without either, as
    :func:`judge` reads a fit's; its gradient check as it was. ``record.objective`` is
    the value at ``x``."""
    with single_threaded_blas(), _quiet_trial_points():
        H = hessian(obj, x)
        record.rising_off_zero = rising_off_zero(obj, x, record.objective, H, diag_idx, bounds)
    _curvature_verdict(obj, x, _with_unidentified(obj, x, H, bounds, record), bounds, record)
    record.hessian_pd = not (record.flat_directions or record.negative_curvature)
    record.converged = bool(
        record.converged and not record.negative_curvature and not record.rising_off_zero
    )
