"""How far adaptive quadrature would move a Laplace fit: a check after the fit.

The Laplace approximation of each level's integral is exact for a Gaussian
integrand and good where a level's data are informative; with few binary rows per
level, rare or nearly universal events, or a large random-effect SD (probit and
cloglog links above all) it can be far off, and its optimum far from the maximum
likelihood: on 400 groups of 5 probit rows with 0.5 % events the Laplace fit had an SD
of 2.83 and a log-likelihood 55 units too high, where adaptive Gauss-Hermite
quadrature gives 0.25. lme4 and glmmTMB report such fits without a word.

For a model that quadrature can fit (one grouping factor with up to three random effects
and no covariance structure, any family; on up to :data:`CHECK_MAX_ROWS` rows, with
three random effects within :data:`CHECK_ROW_NODES` rows times nodes), the gradient of
the quadrature objective (:data:`CHECK_NODES` nodes) at the Laplace optimum and the
Laplace Hessian there give a Newton step towards the quadrature's optimum. The step is a
first-order measure (on hard rare-event data 6.2 standard errors for a distance of 0.58;
where the curvatures differ much, less than the distance): a step longer than
:data:`SCREEN_TOL` standard errors is confirmed by fitting the quadrature objective from
the Laplace optimum, and a distance of more than :data:`SHIFT_TOL` (one standard error:
intervals and tests of the Laplace fit then mislead) is warned of. On 136 simulated data
sets of hard cases (binary logit, probit and cloglog, binomial with 5 trials, Poisson;
2-11 rows per level, SDs of 0.3-3, events from rare to nearly universal) it warned for
34 of the 36 whose quadrature fit (15 nodes) lay more than one standard error from the
Laplace fit and for none of the other 100; on 120 ordinary ones (3-19 rows per level,
SDs of 0.2-1.5, the quadrature fits at most 0.87 standard errors away) for none, its
measure within 0.03 of the distance (``benchmarks/laplace_check.py``). With the families
that have parameters of their own (``--own``: NB2, NB2 with a dispersion model, hurdle
and zero-truncated Poisson, ordinal; 126 hard data sets) it warned for 8 of the 9 NB2
fits more than one standard error from quadrature's (the ninth measured 0.89 for 1.60)
and for none of the other 117; on 120 ordinary ones for none, its measure within 0.02 of
the distance. With the families that are not log-concave (``--other``: zero-inflated
Poisson and NB2, NB1, the beta-binomial, the hurdle NB2; 143 hard data sets) it warned
for 5 of the 8 more than one standard error away and for none of the other 135; of 118
ordinary ones, for none (one zero-inflated NB2 lay 2.6 away, measured 0.38). The ones it
missed are zero-inflated NB2 fits whose quadrature optimum lies in another basin (13.0
standard errors away, measured 0.75): a first-order measure from the Laplace optimum
does not see another basin, nor does the quadrature fit started there. With the ordinal
cauchit model (``--cauchit``), whose Laplace fits are often poor, it warned for 11 of
the 13 of 62 hard data sets more than one standard error away and for 1 of the 2 of 59
ordinary ones, and for none of the others. (A level with two modes is the mode scan's,
:mod:`.mode_scan`.)

With two or three random effects per level (the product rule of :data:`CHECK_NODES` nodes
per effect) each evaluation costs ``CHECK_NODES**q`` nodes' arithmetic on the rows, so the
confirming fit is first made of Newton steps with the Laplace Hessian
(:func:`_newton_steps`; L-BFGS-B where they leave the bounds or do not settle). With a
random intercept and slope (``--slopes``: binary logit, probit and cloglog, binomial and
Poisson, at most 2,222 rows) it warned for 32 of the 33 of 149 hard data sets
more than one standard error from quadrature's fit (15 nodes) and for none of the other
116; of 120 ordinary ones (none more than one standard error away) for none, its
measure within 0.13 standard errors of the distance. Laplace underestimates the SDs of
binary random slopes with few rows per level, and that bias does not shrink with more
levels while the standard errors do (10 rows per level, SDs 1 and 0.5: the slope's SD
1.5 standard errors from quadrature's with 1,000 levels, 2.2 with 2,000): on 300-2,000
levels and up to 20,000 rows (``--large-slopes``) it warned for 74 of the 75 of 149 hard
data sets more than one standard error away and for none of the other 74, and for all 26
of the 120 ordinary ones more than one standard error away (all binary: SDs of 0.2-1.5
and 0.1-0.8, 4-19 rows per level) and none of the other 94, its measure within 0.1 of the
distance below one standard error.
"""

from __future__ import annotations

import numpy as np

from .curvature import at_bound
from .lbfgsb import _run_lbfgsb, bound_arrays
from .objective import Objective
from .quadrature_vector import MAX_Q

CHECK_NODES = 9
# the quadrature's gradient costs about CHECK_NODES Laplace evaluations' arithmetic on
# the rows: above this many rows it is not computed (a fit costs tens of evaluations)
CHECK_MAX_ROWS = 20_000
# q random effects per level: the product rule's CHECK_NODES**q nodes per row. With two,
# the check is made on up to CHECK_MAX_ROWS rows too (within one random effect's budget
# of rows times nodes, 2,222 rows, it left out binary random slopes of 10 rows per level
# on 1,000 and 2,000 levels, whose Laplace fits lay 1.65 and 2.3 standard errors from
# quadrature's); with three (729 nodes per row) within that budget of rows times nodes
# (246 rows: on 2,100 rows its confirming fit took 0.44 s, the Laplace fit 0.044 s)
CHECK_ROW_NODES = CHECK_MAX_ROWS * CHECK_NODES
SHIFT_TOL = 1.0  # standard errors
# a step above this is confirmed by fitting the quadrature objective from the Laplace
# optimum; the warning reads the distance to that fit (the step alone overstated it
# 10-fold on hard rare-event data, 6.2 standard errors for 0.58)
SCREEN_TOL = 0.5
# with two or three random effects per level each evaluation of the quadrature objective
# costs CHECK_NODES**q nodes' arithmetic on the rows (L-BFGS-B's confirming fit took 9-12
# of them, 6x a 1,600-row random-slope fit's time): the confirming fit there is first
# made of Newton steps with the Laplace Hessian (whose first step is the screen's), until
# the steps still to come are estimated below NEWTON_TOL standard errors in all, within
# NEWTON_STEPS evaluations (a stop at the first step below it left up to 0.015 of the
# way where the steps shrank by a ratio of 0.65)
NEWTON_TOL = 0.01
NEWTON_STEPS = 8


def applicable(obj, n_agq: int) -> bool:
    """Whether the check applies to the fit of ``obj`` with ``n_agq`` nodes: a Laplace
    fit that quadrature can fit (one grouping factor of at most ``MAX_Q`` random effects
    without a covariance structure) on at most ``CHECK_MAX_ROWS`` rows, and with three
    random effects at most ``CHECK_ROW_NODES`` rows times nodes."""
    d = obj.data
    if not (n_agq == 1 and isinstance(obj, Objective) and obj.holds_rows):
        return False
    if len(d.factors) != 1 or d.factors[0].mapped or d.factors[0].q > MAX_Q:
        return False
    rows, q = len(d.y), d.factors[0].q
    return rows <= CHECK_MAX_ROWS and (q <= 2 or rows * CHECK_NODES**q <= CHECK_ROW_NODES)


def quadrature_shift(obj, x, H, bounds) -> tuple[float | None, float | None]:
    """``(step, distance)``: the largest component, in standard errors, of the Newton
    step of the quadrature objective from the Laplace optimum ``x`` with the Laplace
    Hessian ``H`` (the parameters off their bounds), and, where that exceeds
    :data:`SCREEN_TOL`, of the difference between the quadrature's own optimum (fitted
    from ``x``) and ``x``; None where ``H`` is not positive definite there or the
    quadrature's value is not finite."""
    free = ~at_bound(x, bounds)
    if H is None or not free.any():
        return None, None
    Hf = H[np.ix_(free, free)]
    if not np.all(np.isfinite(Hf)):
        return None, None
    try:
        L = np.linalg.cholesky(Hf)
    except np.linalg.LinAlgError:
        return None, None
    # standard errors: the objective is -2 log L, so the covariance is 2 H^-1
    Linv = np.linalg.solve(L, np.eye(len(L)))
    se = np.sqrt(2.0 * np.sum(Linv * Linv, axis=0))
    x = np.asarray(x, dtype=float)
    quad = None
    try:
        with np.errstate(all="ignore"):
            # the quadrature's value and gradient from the Laplace fit's state at x (its
            # modes and curvatures), else from an objective of its own
            vg = obj.quadrature_at_modes(x, CHECK_NODES)
            if vg is None:
                quad = _quadrature_objective(obj)
                vg = quad.value_and_grad(x)
            val, g = vg
            if not np.isfinite(val) or not np.all(np.isfinite(g)):
                return None, None
            step = float(np.max(np.abs(np.linalg.solve(Hf, g[free])) / se))
            if not step > SCREEN_TOL:
                return step, None
            if quad is None:
                quad = _quadrature_objective(obj)
            if obj.data.factors[0].q == 1:
                res = _run_lbfgsb(quad.value_and_grad, x, bounds, 200, 1e-10)
                end = (res.x, float(res.fun))
            else:
                *end, settled = _newton_steps(quad.value_and_grad, x, val, g, Hf, free, bounds, se)
                if not settled:
                    # from the lowest point the steps reached, in standard errors (a unit
                    # first step there had gone 1,200 units of -2 log L uphill)
                    scale = np.ones(len(x))
                    scale[free] = 1.0 / se
                    res = _run_lbfgsb(quad.value_and_grad, end[0], bounds, 200, 1e-10, scale)
                    end = (res.x, float(res.fun))
    finally:
        # its state refers back to it (a cycle): its arrays of the rows' size go now
        if quad is not None:
            quad.release_state()
    if not np.isfinite(end[1]) or not end[1] <= val:
        return step, None
    return step, float(np.max(np.abs(end[0][free] - x[free]) / se))


def _newton_steps(fun, x, val, g, Hf, free, bounds, se):
    """``(x, value, settled)`` at the end of Newton steps on ``fun`` (value and gradient)
    from ``x`` (its ``val`` and ``g``) with the fixed Hessian ``Hf`` of the ``free``
    parameters. Settled: the point a step leads to once the steps still to come are
    estimated below :data:`NEWTON_TOL` standard errors ``se`` in all, and the last value
    evaluated, before that step (the last step is not evaluated: the distance reads the
    point only, the value serves to compare with the Laplace optimum's). With a fixed
    Hessian the steps shrink by a roughly constant ratio ``r`` (the larger of the last
    two), so the rest from a step of length ``d`` on is about ``d / (1 - r)``. Not
    settled, where a step leaves ``bounds``, does not lower the value or is not finite,
    or the steps do not settle within :data:`NEWTON_STEPS` evaluations: the lowest point
    reached and its value."""
    lo, hi = (b[free] for b in bound_arrays(bounds))
    x = np.array(x, dtype=float)
    length, ratios = None, []
    for evaluated in range(NEWTON_STEPS + 1):
        d = np.linalg.solve(Hf, g[free])
        z = x.copy()
        z[free] -= d
        if np.any(z[free] < lo) or np.any(z[free] > hi):
            return x, val, False
        length, previous = float(np.max(np.abs(d) / se)), length
        if previous is not None:
            ratios.append(length / previous)
            r = max(ratios[-2:])
            if r < 1.0 and length / (1.0 - r) < NEWTON_TOL:
                return z, val, True
        if evaluated == NEWTON_STEPS:
            break
        v, g = fun(z)
        if not np.isfinite(v) or not v < val or not np.all(np.isfinite(g)):
            break
        x, val = z, float(v)
    return x, val, False


def _quadrature_objective(obj):
    """The quadrature objective of ``obj``'s data, its modes started from ``obj``'s."""
    quad = Objective(obj.data, CHECK_NODES)
    u = getattr(obj, "u", None)
    if u is not None and np.shape(u) == np.shape(quad.u):
        # the same conditional modes (quadrature is centred at them): its search starts
        # from the Laplace fit's (a third of the check's time)
        quad.u = np.array(u, dtype=float)
    return quad
