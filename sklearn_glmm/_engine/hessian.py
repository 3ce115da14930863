"""The Hessian of the objective at a point: in closed form where the objective has it
(one grouping factor, crossed and nested factors within their cost, quadrature), else by
central differences of its analytic gradient."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from .blas import single_threaded_blas
from .lbfgsb import _quiet_trial_points
from .objective import Objective
from .start import parameter_bounds


def hessian(obj: Objective, x: np.ndarray) -> np.ndarray:
    """Hessian of the objective at ``x``: in closed form where the objective has it,
    otherwise by central differences of its gradient."""
    with single_threaded_blas(), _quiet_trial_points():
        return _hessian(obj, x)


# a curvature at the modes (a row's -l'': a Poisson row's mean, a binomial row's
# n p (1 - p)) from which the Hessian is taken by differences of the gradient, not in
# closed form: the closed form's sums over rows cancel (terms of the fourth derivative,
# the curvature, times the modes' derivatives), and with means up to 1.1e6 and
# random-slope SDs near 2 its entries moved by 1-4 % between points 1e-13 apart (the
# slope's standard error 0.2775 to 0.2809 with the predictor's units, where differences
# give 0.27687-0.27690 in every unit and glmmTMB 0.276893); at means of 1e5 the move is
# 6e-5
CLOSED_FORM_MAX_CURVATURE = 1e5


def _closed_form_cancels(obj) -> bool:
    """Whether the last point evaluated has a curvature of
    :data:`CLOSED_FORM_MAX_CURVATURE` or more at its modes, in memory or over a
    partitioned fit's partitions (the closed-form Hessian would be rounding there), with
    several random effects per level. One random effect per level is exempt: its closed
    form does not cancel so, and differences of the gradient are the ones rounding there
    (the gradient's own rounding over their steps). Poisson fits of counts near 1e6 with
    an SD of 2 (curvatures 4e8-1e9) had the SD's standard error 1.0-1.3e-3 (relative) off
    the independent truth's by differences, and within 1e-6 of it in closed form."""
    factors = getattr(getattr(obj, "data", None), "factors", None)
    if factors is not None and len(factors) == 1 and factors[0].q == 1:
        return False
    top = getattr(obj, "max_curvature", lambda: None)()
    return top is not None and top >= CLOSED_FORM_MAX_CURVATURE


def _hessian(obj: Objective, x: np.ndarray) -> np.ndarray:
    n = len(x)
    # the gradient of the objective in use: Laplace, or the exact AGQ one
    val, g0 = obj.value_and_grad(x)
    block = None
    if np.isfinite(val) and hasattr(obj, "exact_hessian_block") and not _closed_form_cancels(obj):
        # one grouping factor, a family with its fourth derivative: the block in
        # (beta, theta) in closed form at the state just evaluated (no other point;
        # exact where differences are not); the family's own parameters by differences
        block = obj.exact_hessian_block()
        if block is not None and len(block) == n:
            return block
        # a family's own parameters (NB2's log theta; a zero-inflated NB2's log theta and
        # logit pi) in closed form too, where given
        rows = None if block is None else _extra_rows(obj, n - len(block))
        if rows is not None:
            m = len(block)
            H = np.empty((n, n))
            H[:m, :m] = block
            H[m:, :] = rows
            H[:, m:] = rows.T
            return H
    m = 0 if block is None else len(block)
    Hm = np.zeros((n, n))
    steps = _hessian_steps(obj, x)
    if hasattr(obj, "compact_mode_derivatives"):
        obj.compact_mode_derivatives()
    at_x = obj.snapshot()
    # central differences of the analytic gradient: two gradients per parameter,
    # with an O(h^2) error (forward differences' O(h) put standard errors 1e-3 off
    # where a parameter's curvature changes over its step); one-sided, inside the
    # bounds, for a parameter within a step of one. Each starts from the modes at x
    # (moved by their derivatives at x); no evaluation starts from the shifted
    # points, so their gradients leave the modes' derivatives out.
    bounds = parameter_bounds(obj.data)
    with getattr(obj, "without_mode_derivatives", nullcontext)():
        for k in range(m, n):
            Hm[:, k] = _difference_column(obj, x, g0, at_x, k, steps[k], bounds[k])
    obj.restore(at_x)  # the fitted state (mode, factorisation) without a new evaluation
    if block is not None:
        Hm[:m, :m] = block
        Hm[m:, :m] = Hm[:m, m:].T
    return 0.5 * (Hm + Hm.T)


def _extra_rows(obj, n_extra):
    """The Hessian's rows of the family's ``n_extra`` own parameters in closed form at
    the state just evaluated, ``(n_extra, n)``, or None: one parameter's row and column
    (``exact_extra_column``, an objective in memory or partitioned), several or those of a
    block with a design (``exact_extra_rows``)."""
    if n_extra == 1 and hasattr(obj, "exact_extra_column"):
        col = obj.exact_extra_column()
        if col is not None:
            return col[None]
    if n_extra and hasattr(obj, "exact_extra_rows"):
        return obj.exact_extra_rows()
    return None


def _difference_column(obj, x, g0, at_x, k, h, bound) -> np.ndarray:
    """Column ``k`` of the Hessian by differences of the gradient: central where both
    points lie within ``bound``, otherwise the one-sided difference that does."""
    lo, hi = bound
    up = hi is None or x[k] + h <= hi
    down = lo is None or x[k] - h >= lo
    e = np.zeros(len(x))
    e[k] = h

    def grad(point):
        obj.restore(at_x)
        return obj.value_and_grad(point)[1]

    if up and down:
        return (grad(x + e) - grad(x - e)) / (2.0 * h)
    if up or not down:
        return (grad(x + e) - g0) / h
    return (g0 - grad(x - e)) / h


def _hessian_steps(obj, x) -> np.ndarray:
    """Difference steps at ``x`` (just evaluated with its gradient).

    1e-4 of each parameter's size, at least 1e-4; but at most a tenth of the
    parameter's standard error as its Gauss-Newton curvature puts it, where the data
    are so informative (counts or trials in the thousands to millions) that 1e-4 of a
    coefficient moves the linear predictor by many standard errors, and the
    gradient's change over the step is then not its derivative. A Cholesky diagonal or
    a structure's SD below :data:`_SMALL_DIAGONAL` (not zero) also at most a hundredth
    of its value: the curvature in a small standard deviation changes on the scale of
    the value.
    """
    steps = 1e-4 * np.maximum(1.0, np.abs(x))
    try:
        gn = obj.gauss_newton_diagonal() if getattr(obj, "has_mode_derivatives", False) else None
    except (AttributeError, KeyError, TypeError):  # no state to read it from
        gn = None
    if gn is not None:
        m = len(gn)
        with np.errstate(divide="ignore"):
            se = np.where(gn > 0.0, np.sqrt(2.0 / gn), np.inf)
        steps[:m] = np.minimum(steps[:m], 0.1 * se)
    for k in _sd_parameters(obj.data):
        if 0.0 < x[k] < _SMALL_DIAGONAL:
            steps[k] = min(steps[k], 1e-2 * x[k])
    return steps


def _sd_parameters(data) -> list:
    """Indices of the parameters that are standard deviations: Cholesky diagonals, and
    a structure's SD parameters."""
    first = data.n_beta
    return [k for k in range(first, first + data.n_theta) if len(data.sd_columns(k))]


_SMALL_DIAGONAL = 1e-2
