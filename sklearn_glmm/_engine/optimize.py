"""Outer optimisation over (beta, theta, extra) and the record of how a fit ran.

Order of calls in :func:`fit_objective`:

1. ``starting_point`` (:mod:`.start`) — the GLM without random effects (``glm_start``,
   its optimum kept on the objective for the GLM bound) gives starting fixed effects;
   on large data a first stage on a subset of levels (:func:`_subsample_start`);
2. L-BFGS-B on the Laplace objective with its analytic gradient (bounds keep
   the Cholesky diagonals of theta non-negative, as lme4 does); zero diagonals
   are probed and the fit resumed (``_laplace_stage``, :mod:`.stage`); extra
   parameters drifting on a flat ridge are settled on their bound
   (``_settle_flat_extra``, :mod:`.ridge`); covariance structures and level slopes
   are restarted from other starts (:mod:`.restarts`);
3. for ``n_agq > 1``, L-BFGS-B again on the AGQ objective started at the
   Laplace optimum, with the exact AGQ gradient.

:func:`sklearn_glmm._engine.converge.check_optimum` then checks the optimum (the GLM
bound, a Newton polish, the Hessian for the standard errors and the convergence
checks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import start as _start
from .blas import single_threaded_blas
from .lbfgsb import _quiet_trial_points, _run_lbfgsb
from .objective import Objective, subset_rows
from .restarts import _level_slope_restarts, _structure_restarts
from .ridge import (
    _fit_from_dip,
    _off_block_ridges,
    _ridge_stop,
    _settle_after_ridge_stop,
    _settle_flat_extra,
)
from .stage import _finite_start, _laplace_stage


@dataclass
class FitRecord:
    """How one fit ran (like MixedModels.jl's OptSummary)."""

    initial: np.ndarray
    final: np.ndarray = None
    objective: float = np.nan
    n_evaluations: int = 0
    n_iter: int = 0
    optimizer: str = "L-BFGS-B"
    message: str = ""
    converged: bool = False
    hit_max: bool = False  # a stage stopped at max_iter iterations
    max_grad: float = np.nan
    max_scaled_grad: float = np.nan
    gradient_ok: bool = True
    hessian_pd: bool = True
    flat_directions: bool = False
    negative_curvature: bool = False
    # Cholesky diagonals at zero along which the objective still falls (indices)
    rising_off_zero: tuple = ()
    glm_objective: float = np.nan  # -2 log L of the nested GLM (no random effects)
    # directions of the parameters along which the likelihood is constant by
    # construction (``equal_likelihood.unidentified_directions``: columns), or None
    unidentified: np.ndarray = field(default=None, repr=False)
    # the covariance over the identified directions (``curvature.identified_covariance``)
    identified_covariance: np.ndarray = field(default=None, repr=False)
    # parameters the levels do not identify, from the design (``equal_likelihood.
    # design_count``), and points of their set of equal likelihood around the fit
    # (rows: ``equal_likelihood.points_on_the_set``), or None
    n_unidentified: int = 0
    set_points: np.ndarray = field(default=None, repr=False)
    # groups of factors (indices) that group the rows identically and whose covariances
    # the likelihood reads only together (``equal_likelihood.aliased_groups``)
    aliased: tuple = ()
    competing_modes: np.ndarray = field(default=None, repr=False)  # levels, two modes
    # with quadrature, each such level's log integral by the rule (centred at the worse
    # of its two modes) less its integral on a fine grid
    # (``mode_scan.ModeScan.quadrature_misses``); None with Laplace
    quadrature_misses: np.ndarray = field(default=None, repr=False)
    # (level, curvature relative to the prior's) of the flattest conditional mode at the
    # optimum, for a Laplace fit of a family that is not log-concave (``scan_modes``)
    flattest_mode: tuple = None
    hessian: np.ndarray = field(default=None, repr=False)
    covariance: np.ndarray = field(default=None, repr=False)
    # a separated fit's limit model: (its covariance on the complement of the
    # separating directions, without NaN, and those directions as columns)
    limit_covariance: tuple = field(default=None, repr=False)
    # a Laplace fit's distance, in standard errors, from a Newton step of the adaptive
    # quadrature objective (``quadrature_check``); None where not computed
    quadrature_shift: float = None
    # -2 log L gained further along the family's ridge to a limit distribution
    # (``limit_ridge.limit_gain``; within ``ridge.FLAT_TOL`` or above: the fit is on
    # it), None where the family has none
    limit_gain: float = None
    # the parameters (indices) moving along that ridge, for a fit on it (their standard
    # errors and intervals are NaN; ``_fit_checks.limit_ridge_parameters``)
    limit_ridge_moving: tuple = ()
    # a zero part's limits at infinity above the fit (``threshold_limits``): per run of
    # zeros at an end of a predictor, ``(rows, +1 largest / -1 smallest, -2 log L, the
    # zero part's intercept's index, the predictor's)``
    threshold_limits: list = field(default_factory=list)
    seconds: float = 0.0
    stages: list = field(default_factory=list)

    def __repr__(self):
        return (
            f"FitRecord(objective={self.objective:.6f}, converged={self.converged}, "
            f"n_iter={self.n_iter}, n_evaluations={self.n_evaluations}, "
            f"max_scaled_grad={self.max_scaled_grad:.3g}, message={self.message!r})"
        )


def fit_objective(
    obj: Objective,
    x0: np.ndarray,
    bounds,
    max_iter: int,
    tol: float,
    diag_idx=None,
    refit_base=None,
):
    """Minimise ``obj`` from ``x0``; return the optimum and its :class:`FitRecord`.

    ``diag_idx`` (default: every parameter bounded below at 0) lists the
    Cholesky diagonals that are moved off zero and retried (``_laplace_stage``).
    ``refit_base``: for a refit from another point than a fresh fit's start (see
    :func:`_level_slope_restarts`).
    """
    if diag_idx is None:
        n_cov = obj.data.n_beta + obj.data.n_theta
        diag_idx = [k for k, b in enumerate(bounds[:n_cov]) if b[0] == 0.0]
    with single_threaded_blas(), _quiet_trial_points():
        return _fit_objective(obj, x0, bounds, max_iter, tol, diag_idx, refit_base)


def _subsample_start(obj, x0, bounds, max_iter, tol, diag_idx):
    """Starting values from a fit to a random subset of the first factor's levels.

    On large data most outer iterations only travel from the GLM start to the
    neighbourhood of the optimum; a fit to ~50,000 rows (fixed seed, so fits
    stay reproducible) gets there at a fraction of the cost.
    """
    data = obj.data
    n = len(data.y)
    if n < _start._SUBSAMPLE_ROWS or not data.factors or not isinstance(obj, Objective):
        return x0
    f0 = data.factors[0]
    n_pick = min(f0.n_levels, max(500, int(f0.n_levels * _start._SUBSAMPLE_TARGET / n)))
    if n_pick >= f0.n_levels:
        return x0
    chosen = np.random.default_rng(0).choice(f0.n_levels, size=n_pick, replace=False)
    sub = Objective(subset_rows(data, np.isin(f0.codes, chosen)), 1)
    res = _laplace_stage(sub, x0, bounds, max_iter, tol, diag_idx)
    # its state refers back to it (a reference cycle): released now, the subset's
    # arrays go with the objective instead of waiting for the garbage collector
    sub.release_state()
    return res.x if np.isfinite(res.fun) else x0


def _fit_objective(obj, x0, bounds, max_iter, tol, diag_idx, refit_base=None):
    x0 = _subsample_start(obj, x0, bounds, max_iter, tol, diag_idx)
    t0 = time.perf_counter()
    record = FitRecord(initial=np.array(x0, dtype=float))
    n_agq = obj.n_agq
    obj.n_agq = 1
    x0 = _finite_start(obj, x0, diag_idx)
    res = _laplace_stage(obj, x0, bounds, max_iter, tol, diag_idx, _ridge_stop(obj, bounds))
    record.stages.append(("laplace", float(res.fun), int(res.nit), str(res.message)))
    if res.stopped:
        # left a ridge early: its bound, or on to the run's own end (from where it
        # stopped, or from a dip of the ridge below the bound)
        settled, x, dip = _settle_after_ridge_stop(obj, res, bounds, max_iter, tol, diag_idx)
        if dip:
            res = _fit_from_dip(obj, x, bounds, max_iter, tol, diag_idx, record.stages)
        else:
            res, name = settled, "ridge bound"
            if settled is None:
                res, name = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx), "laplace"
            record.stages.append((name, float(res.fun), int(res.nit), str(res.message)))
    x = _settle_flat_extra(
        obj,
        res.x,
        res.fun,
        bounds,
        max_iter,
        tol,
        diag_idx,
        record.stages,
        scanned=record.stages[-1][0] == "ridge bound",
    )
    off = _off_block_ridges(obj, x, bounds, max_iter, tol, diag_idx, record.stages)
    if off is not x:
        # the block ridge's end: a family parameter it left drifting on its flat side
        # (NB2's theta past log 7 on data without overdispersion) settled as above
        off = _settle_flat_extra(
            obj, off, float(obj.evaluate(off)), bounds, max_iter, tol, diag_idx, record.stages
        )
    x = settled = off
    x = _structure_restarts(obj, x, bounds, max_iter, tol, diag_idx, record)
    x, restart_nit = _level_slope_restarts(
        obj, x, bounds, max_iter, tol, diag_idx, record, refit_base
    )
    if not np.array_equal(x, settled):
        # a restart's end: a family parameter it left drifting on its flat side (NB2's
        # theta towards the Poisson limit) settled as the first stage's was
        x = _settle_flat_extra(
            obj, x, float(obj.evaluate(x)), bounds, max_iter, tol, diag_idx, record.stages
        )
    # (the iterations of the stage whose end is kept: a restart's where one was)
    hit_max = (res.nit if restart_nit is None else restart_nit) >= max_iter
    if n_agq > 1:
        res = _agq_stage(obj, x, n_agq, bounds, max_iter, tol, res.scale, diag_idx, record.stages)
        x = res.x
        hit_max = hit_max or res.nit >= max_iter
    record.objective = float(obj.evaluate(x))
    record.final = x
    record.n_iter = int(sum(s[2] for s in record.stages))
    record.n_evaluations = obj.n_evals
    record.message = str(res.message)
    record.hit_max = bool(hit_max)
    record.converged = bool(np.isfinite(record.objective) and not hit_max)
    record.seconds = time.perf_counter() - t0
    return x, record


def _agq_stage(obj, x, n_agq, bounds, max_iter, tol, scale, diag_idx, stages):
    """The quadrature objective (``n_agq`` nodes) minimised from the Laplace optimum ``x``
    (``obj`` still on Laplace); ``obj`` is left on the quadrature.

    The two optima are near and so are their curvatures: where the Laplace Hessian at
    ``x`` is at hand in closed form and positive definite, with no parameter on a bound,
    L-BFGS-B runs on coordinates whitened by it (:func:`.refit.whitened_run`: its first
    step the Newton step with that curvature; about half the iterations of the scaled run
    on the reference cases); else on the Laplace stage's scaling.
    """
    from .refit import whitened_run, whitening  # (it builds on this module)

    A = None
    if np.isfinite(obj.evaluate(x)):
        H = obj.exact_hessian_block()
        A = whitening(obj.data, x, H, bounds) if H is not None else None
    obj.n_agq = n_agq
    if A is not None:
        return whitened_run(
            obj, x, A, bounds, max_iter, tol, diag_idx, stages, "agq", "agq", newton_stop=True
        )
    # the Laplace stage's scaling serves the (nearby) AGQ objective too
    res = _run_lbfgsb(obj.value_and_grad, x, bounds, max_iter, tol, scale)
    stages.append(("agq", float(res.fun), int(res.nit), str(res.message)))
    return res
