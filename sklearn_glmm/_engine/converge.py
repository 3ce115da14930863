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
   a fit below it is fitted again from there;
2. ``newton_polish`` — the Hessian (finite differences of the analytic gradient) is
   computed at the optimum for the standard errors anyway; when lme4's scaled
   gradient check fails there, Newton steps on the free parameters (with step
   halving) take the fit the rest of the way; 2b. ``probe_new_zeros`` — a standard
   deviation those steps put on zero is probed above zero, as the main stage's end
   is, and the fit resumed from a better point;
3. ``scan_modes`` — for a family that is not log-concave, each level's density is
   scanned on a fine grid at the optimum: a higher mode found there resumes the
   fit once; levels with two comparable modes are recorded (not converged);
3b. ``to_central_covariances`` — a covariance the levels do not identify (a random
   slope of a two-valued level predictor) has a set of equal likelihood: the fit is
   moved to its point of largest ``det S`` (:func:`central_covariances`), one point
   whatever the optimiser's path, and the Hessian taken there;
4. ``rising_off_zero`` — a variance on its zero bound has a zero gradient (the
   objective is even in its Cholesky diagonal), so the gradient check cannot see
   whether the likelihood rises just above it; where the Hessian's curvature there is
   negative, the objective is evaluated one difference step above zero, and a fit
   that is better there is not converged;
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
"""

from __future__ import annotations

import numpy as np

from .blas import single_threaded_blas
from .equal_likelihood import (
    aliased_directions,
    aliased_factor_groups,
    central_covariances,
    design_count,
    joined,
    level_directions,
    points_on_the_set,
    unidentified_directions,
)
from .hessian import _hessian_steps, hessian
from .lbfgsb import _quiet_trial_points, _run_lbfgsb
from .objective import GLMObjective
from .ridge import FLAT_TOL, _flat_sides, _held, _on_flat_bound, _side_bound
from .stage import _laplace_stage, projected_gradient

GRAD_TOL = 0.002  # lme4's check.conv.grad tolerance
_POLISH_STEPS = 8
# eigenvalues of the unit-diagonal Hessian below this fraction of its largest are flat
# directions (finite differences of the gradient resolve curvature to ~1e-4 of the largest)
_FLAT = 1e-7


def at_bound(x, bounds, tol=1e-6) -> np.ndarray:
    """Parameters sitting on a bound (zero variances, NB theta at infinity, ...)."""
    out = np.zeros(len(x), dtype=bool)
    for k, (lo, hi) in enumerate(bounds):
        out[k] = (lo is not None and x[k] <= lo + tol) or (hi is not None and x[k] >= hi - tol)
    return out


def scaled_gradient(g, H, x, bounds, unidentified=None, along_set=False) -> tuple[float, float]:
    """(max |gradient|, max |scaled gradient|) over the parameters off their bounds.

    The scaled gradient is lme4's ``solve(chol(H), g)`` (each component no larger
    than the raw one); where H is not positive definite the raw gradient stands.
    ``unidentified``, ``along_set``: the directions :func:`curvature` takes out, whose
    curvature is filled here (:func:`_flat_filled`).
    """
    free = ~at_bound(x, bounds)
    gf = projected_gradient(g, x, bounds)[free]
    if not len(gf):
        return 0.0, 0.0
    raw = float(np.max(np.abs(gf)))
    Hf = H[np.ix_(free, free)]
    if unidentified is not None:
        Hf = _flat_filled(Hf, unidentified[free], along_set)
    try:
        sg = np.linalg.solve(np.linalg.cholesky(Hf), gf)
    except np.linalg.LinAlgError:
        return raw, raw
    return raw, float(np.max(np.minimum(np.abs(sg), np.abs(gf))))


def curvature(H, x, bounds, ridge=(), stopped=(), unidentified=None, along_set=False):
    """Eigen-analysis of the Hessian over the free parameters.

    Returns ``(V, flat, negative)``: ``V = 2 H^{-1}`` on the free parameters (the
    covariance of the estimates, a pseudo-inverse over the well-determined
    directions, NaN for every parameter with a component along a flat or negative
    direction and for parameters on a bound), and whether flat / negative
    directions exist. ``ridge``: parameters of a family block the fit left on its
    ridge (a zero-inflation probability run to 0 on some rows, see
    :func:`ridge_parameters`); a flat direction led by one of them leaves out only the
    parameters with a sizeable component along it (:data:`_RIDGE_COMPONENT`).
    ``stopped``: the coefficients of each block whose ridge the fit followed to a box
    bound (:func:`stopped_blocks`), which have no covariance (see below).
    ``unidentified``: directions along which the likelihood is constant by construction
    (:func:`unidentified_directions`): taken out of the Hessian (flat, not negative).
    ``along_set``: the Hessian's directions of negative curvature in their span
    (:func:`_negative_in_set`) were found to be the set's bend, not a saddle
    (:func:`along_set_not_lower`): taken out as well.
    """
    n = len(x)
    free = ~at_bound(x, bounds)
    V = np.full((n, n), np.nan)
    if not free.any():
        return V, False, False
    Hf = H[np.ix_(free, free)]
    if not np.all(np.isfinite(Hf)):
        return V, True, False
    if unidentified is not None:
        Hf = _set_projection(Hf, unidentified[free], along_set)[0]
    on_ridge = np.isin(np.flatnonzero(free), np.asarray(ridge, dtype=int))
    Vf, flat, negative = _pseudo_inverse(Hf, on_ridge)
    V[np.ix_(free, free)] = 2.0 * Vf
    # a ridge the optimiser followed to a coefficient's box bound (a zero-inflation
    # intercept at logit -20) goes on past it: the block's coefficients have no
    # covariance, whose value at the bound would be conditional on the bound alone (a
    # slope beside it looked decisive on data without any zero inflation)
    without_covariance(V, stopped)
    return V, flat, negative


def identified_covariance(H, x, bounds, unidentified, along_set=False):
    """``2 H^-1`` over the directions the likelihood identifies, where it is constant
    along ``unidentified`` (:func:`unidentified_directions`) and curved along every
    other direction of the free parameters; NaN for parameters on a bound; None
    otherwise. A function of the parameters whose gradient is orthogonal to
    ``unidentified`` (a prediction, a mean, each arm's variance) has its variance from
    it (:meth:`FitResult.delta_covariance`). ``along_set``: as :func:`curvature`'s."""
    if unidentified is None or H is None or not np.all(np.isfinite(H)):
        return None
    free = ~at_bound(x, bounds)
    Hf = H[np.ix_(free, free)]
    Hp, taken = _set_projection(Hf, unidentified[free], along_set)
    if sum(F.shape[1] for F, _ in taken) != unidentified.shape[1]:
        return None  # (only some of them flat: not the covariance it describes)
    inv, evals, _, good, level = _eigen_inverse(*_unit_diagonal(Hp)[:2])
    if np.any(evals < -level) or good.sum() != len(Hp) - unidentified.shape[1]:
        return None
    V = np.full(H.shape, np.nan)
    V[np.ix_(free, free)] = 2.0 * inv
    return V


def _aliased_removed(H, x, bounds, N):
    """``H`` with the directions ``N`` (columns) taken out on the free parameters, on
    the unit-diagonal scale: directions of equal likelihood by the design (factors that
    group the rows identically, :func:`~.equal_likelihood.aliased_directions`), along
    which its own curvature is the optimiser's tolerance."""
    free = ~at_bound(x, bounds)
    Hf = H[np.ix_(free, free)]
    d = _unit_diagonal(Hf)[1]
    H = H.copy()
    H[np.ix_(free, free)] = _removed(Hf, np.linalg.qr(d[:, None] * N[free])[0], d)
    return H


def _flat_filled(Hf, N, along_set=False):
    """``Hf`` with its curvature along directions of equal likelihood ``N`` (nil:
    :func:`_without_flat`; with ``along_set``, the set's bend too: :func:`_bend_projection`)
    set to 1 on the unit-diagonal scale, for the scaled gradient: divided by their
    curvature of 0 (the Hessian's rounding), the gradient's rounding along them read as
    a failed check."""
    out, taken = _set_projection(Hf, N, along_set)
    for F, d in taken:
        out = out + (F @ F.T) * np.outer(d, d)
    return out


def _without_flat(Hf, N):
    """``Hf`` with the directions in the span of ``N`` (columns) along which its
    curvature is nil to the Hessian's accuracy taken out (:func:`_flat_projection`), or
    ``Hf`` itself where there is none."""
    return _set_projection(Hf, N, False)[0]


def _set_projection(Hf, N, along_set):
    """``(Hp, taken)``: ``Hf`` with the directions of the set of equal likelihood ``N``
    (columns) taken out where its curvature along them is nil (:func:`_flat_projection`)
    and, with ``along_set``, its bend (:func:`_bend_projection`); ``taken`` the ``(F,
    d)`` of each taken out (orthonormal columns on the unit-diagonal scale ``d``)."""
    taken = []
    got = _flat_projection(Hf, N)
    if got is not None:
        Hf = got[0]
        taken.append(got[1:])
    bent = _bend_projection(Hf, N) if along_set else None
    if bent is not None:
        Hf = bent[0]
        taken.append(bent[1:])
    return Hf, taken


def _flat_projection(Hf, N):
    """``(Hp, F, d)``: ``Hf`` with the directions ``F`` (columns, orthonormal on the
    unit-diagonal scale ``d``) taken out, ``F`` those in the span of ``N`` along which
    its curvature is nil to the Hessian's accuracy (:data:`_FLAT_ALONG`, on the
    unit-diagonal scale); None where there is none. A direction of equal likelihood at
    an optimum has none; one that is not (a parameter near its bound, a saddle beside
    the line, a direction that leaves the set at second order on its face) keeps its
    own."""
    # (a diagonal not above zero is left unscaled: the flat direction's own, where it
    # leads, is its rounding, 0 or just below; the curvature along it decides)
    R, d, _ = _unit_diagonal(Hf)
    Ns = np.linalg.qr(d[:, None] * N)[0]  # the directions on the unit-diagonal scale
    along = Ns.T @ R @ Ns
    scale = max(float(np.max(np.abs(np.linalg.eigvalsh(R)))), 1e-300)
    w, V = np.linalg.eigh(0.5 * (along + along.T))
    # flat: nil curvature along it and nil coupling to the other directions (a coupling
    # c beside a curvature of 1 hides a saddle of c^2: at most the flatness threshold)
    coupling = np.linalg.norm(R @ (Ns @ V), axis=0)
    flat = (np.abs(w) <= _FLAT_ALONG * scale) & (coupling <= np.sqrt(_FLAT_ALONG) * scale)
    if not flat.any():
        return None
    F = Ns @ V[:, flat]
    return _taken_out(R, F, d, scale), F, d


def _taken_out(R, F, d, scale):
    """``P R P`` (``P = I - F F'``: the directions ``F``, orthonormal columns, taken out
    of ``R``, the Hessian on its unit-diagonal scale ``d``; ``scale`` its largest
    eigenvalue's size) on the Hessian's own scale."""
    P = np.eye(len(R)) - F @ F.T
    out = P @ R @ P
    out = 0.5 * (out + out.T)
    # (a parameter wholly along them: its diagonal is nil, not a rounding below zero)
    diag = np.diag(out).copy()
    diag[np.abs(diag) <= 1e-12 * scale] = 0.0
    np.fill_diagonal(out, diag)
    return out * np.outer(d, d)


def _negative_in_set(Hp, N):
    """``(W, d, F)``: the eigen-directions of negative curvature of ``Hp`` (columns ``W``,
    on its unit-diagonal scale ``d``), where each lies in the span of the directions of
    equal likelihood ``N`` to all but :data:`_FLAT_ALONG` of its square, and ``F`` an
    orthonormal basis of their parts in that span (what is taken out of the Hessian:
    none of it on an identified parameter, a fixed effect, whose standard error it would
    take); None where there is none, or one leaves the span (a coupling to an identified
    direction, a saddle off the set). ``Hp``: the free parameters' Hessian with the set's
    flat directions taken out (:func:`_without_flat`)."""
    R, d, _ = _unit_diagonal(Hp)
    evals, evecs = np.linalg.eigh(R)
    W = evecs[:, evals < -_flat_level(evals)]
    if not W.shape[1]:
        return None
    Ns = np.linalg.qr(d[:, None] * N)[0]
    inside = Ns @ (Ns.T @ W)
    if np.any(np.sum((W - inside) ** 2, axis=0) > _FLAT_ALONG):
        return None
    return W, d, np.linalg.qr(inside)[0]


def _bend_projection(Hp, N):
    """``(Hb, F, d)``: ``Hp`` with :func:`_negative_in_set`'s directions ``F`` (columns,
    orthonormal on ``Hp``'s unit-diagonal scale ``d``, in the span of ``N``) taken out,
    as :func:`_flat_projection` takes out the flat ones; None where there is none (or
    one leaves the span)."""
    got = _negative_in_set(Hp, N)
    if got is None:
        return None
    _, d, F = got
    return _removed(Hp, F, d), F, d


def _removed(Hf, F, d):
    """:func:`_taken_out` of ``Hf`` on its unit-diagonal scale ``d``."""
    R = Hf / np.outer(d, d)
    return _taken_out(R, F, d, max(float(np.max(np.abs(np.linalg.eigvalsh(R)))), 1e-300))


# the largest curvature, relative to the Hessian's largest (unit-diagonal scale), along
# directions of equal likelihood taken as the Hessian's inaccuracy (a two-valued arm's
# line read 4e-8 to 5e-6 of the largest on 24 binary fits, with or without a slope of
# time beside it, past the flatness threshold :data:`_FLAT`; a direction that leaves
# the covariances near a bound curved 1e-2 and more)
_FLAT_ALONG = 1e-4


# a flat direction led by a block's ridge parameter: the others' components along it
# are the coupling at the fit's point, which fades further along the ridge (the others
# converge there); below this they keep their standard errors (of the model at the
# ridge's end), above it they are NaN as along any flat direction
_RIDGE_COMPONENT = 1e-2


def ridge_parameters(data, x) -> list:
    """Indices (into the parameter vector) of the coefficients of the family's blocks
    that the fit left past their flat side on some rows: a zero-inflation probability
    run to 0 where a binary predictor takes one value (its coefficients off along a
    ridge on which the likelihood keeps rising ever more slowly)."""
    from .blocks import interior_coefficients

    if data.extra_designs is None or not data.n_extra:
        return []
    first = len(x) - data.n_extra
    inside = interior_coefficients(data.family.blocks, data.extra_designs, x[first:])
    return [first + k for k in np.flatnonzero(inside != x[first:])]


def stopped_blocks(data, x, bounds) -> list:
    """The coefficients (indices) of each family block with a design whose intercept
    the fit left on its box bound (a zero-inflation intercept at logit -20, a
    dispersion's at log theta 30) beside slopes: the block ran along a ridge that goes
    on past the bound (on some rows its value ran to the block's limit), and the fit
    stopped there."""
    if data.extra_designs is None or not data.n_extra:
        return []
    k, out = len(x) - data.n_extra, []
    used = np.asarray(data.weights) > 0
    for block, D in zip(data.family.blocks, data.extra_designs):
        width = 1 if D is None else D.shape[1]
        if (
            width > 1
            and _near_flat_bound(x[k], block.flat_side, bounds[k])
            and not _ridge_has_an_end(block, D, x[k : k + width], used)
        ):
            out.append(list(range(k, k + width)))
        k += width
    return out


def ridge_end_null(block, D, coefs, used):
    """``(past, N)``: the used rows whose value of the block (design ``D``, coefficients
    ``coefs``) is past its flat side, and the directions of the coefficients that move
    no other used row (columns of ``N``, the null space of ``D`` on those rows; None
    where no other row is left): the block's ridge, along which only the past rows'
    values move."""
    past = block.past_flat_side(D @ coefs) & used
    rest = used & ~past
    if not rest.any():
        return past, None
    K = D[rest]
    evals, evecs = np.linalg.eigh(K.T @ K)
    return past, evecs[:, evals <= 1e-10 * max(float(evals[-1]), 1e-300)]


def _ridge_has_an_end(block, D, coefs, used) -> bool:
    """Whether a block's ridge has a model at its end: the rows past the flat side are
    those where some direction of the coefficients moves nothing else (one value of a
    binary predictor), the other rows' values then determined (the centred intercept
    can reach its bound along it; the results read that end model, as glmmTMB's
    numbers). Not so where the past rows lie beyond a boundary in a continuous
    predictor, whose limit is a step, not a model of this block."""
    past, N = ridge_end_null(block, D, coefs, used)
    return bool(past.any() and N is not None and N.shape[1] > 0)


def without_covariance(V, blocks) -> None:
    """``V`` (in place) with no covariance for the coefficients of ``blocks``."""
    for block in blocks:
        block = np.asarray(block, dtype=int)
        V[block, :] = np.nan
        V[:, block] = np.nan


# how near its box bound, as a share of the bound's distance from the flat side's edge,
# a block's intercept stopped on the ridge (L-BFGS-B can stop a little short of it where
# the likelihood no longer moves: log theta 29.98 of 30)
_STOP_SHARE = 0.01


def _near_flat_bound(value, side, bound) -> bool:
    """Whether a block's intercept ``value`` is at (or within :data:`_STOP_SHARE` of)
    the box bound on its flat side ``side`` (direction, edge)."""
    if side is None:
        return False
    direction, edge = side
    end = bound[1] if direction == "upper" else bound[0]
    if end is None:
        return False
    return abs(value - end) <= max(1e-6, _STOP_SHARE * abs(end - edge))


def flat_leaders(H, x, bounds) -> list:
    """Indices of the parameters that lead the Hessian's flat directions (the largest
    component of each, on the unit-diagonal scale of :func:`_pseudo_inverse`)."""
    free = np.flatnonzero(~at_bound(x, bounds))
    Hf = H[np.ix_(free, free)]
    if not len(free) or not np.all(np.isfinite(Hf)):
        return []
    R, _, _ = _unit_diagonal(Hf)
    evals, evecs = np.linalg.eigh(R)
    flat = np.flatnonzero(np.abs(evals) <= _flat_level(evals))
    return sorted({int(free[np.argmax(np.abs(evecs[:, k]))]) for k in flat})


def _unit_diagonal(Hf):
    """``(R, d, pos)``: ``Hf`` scaled to unit diagonal, ``R = Hf / (d d')``, so that
    flatness does not depend on the parameters' units (a diagonal that is not positive
    is left unscaled: ``pos`` says where it is)."""
    pos = np.diag(Hf) > 0
    d = np.sqrt(np.where(pos, np.diag(Hf), 1.0))
    return Hf / np.outer(d, d), d, pos


def _flat_level(evals) -> float:
    """Eigenvalues of the unit-diagonal Hessian at most this in size are flat."""
    return _FLAT * max(float(np.max(np.abs(evals))), 1e-300)


def _eigen_inverse(R, d):
    """``(inv, evals, evecs, good, level)``: the inverse of ``R d d'`` (``R`` at unit
    diagonal, :func:`_unit_diagonal`) over the eigen-directions of ``R`` above the
    flatness level (``good``), from its eigen-decomposition."""
    evals, evecs = np.linalg.eigh(R)
    level = _flat_level(evals)
    good = evals > level
    inv = (evecs[:, good] / evals[good]) @ evecs[:, good].T / np.outer(d, d)
    return inv, evals, evecs, good, level


def _pseudo_inverse(Hf, on_ridge=None):
    """``Hf^{-1}`` over its well-determined directions; NaN rows along the others.

    The eigen-analysis is of the matrix scaled to unit diagonal, so that flatness
    does not depend on the parameters' units; a diagonal that is not positive is
    itself a flat or negative direction. ``on_ridge`` (a mask): see :func:`curvature`.
    """
    R, d, pos = _unit_diagonal(Hf)
    if pos.all():
        # the common case, without an eigen-decomposition: R positive definite with
        # lambda_min(R) >= 1 / trace(R^-1) above the flatness threshold
        try:
            inv = np.linalg.inv(np.linalg.cholesky(R))
            r_inv = inv.T @ inv
            if 1.0 / np.trace(r_inv) > _FLAT * len(R):
                return r_inv / np.outer(d, d), False, False
        except np.linalg.LinAlgError:
            pass
    inv, evals, evecs, good, level = _eigen_inverse(R, d)
    negative = bool(np.any(evals < -level) or np.any(np.diag(Hf) < 0))
    bad = evecs[:, ~good]
    limit = np.full(bad.shape[1], 1e-6)
    if on_ridge is not None and on_ridge.any():
        led = on_ridge[np.argmax(np.abs(bad), axis=0)] & (evals[~good] > -level)
        limit[led] = _RIDGE_COMPONENT
    undetermined = np.any(np.abs(bad) > limit, axis=1) | ~pos
    inv[undetermined, :] = np.nan
    inv[:, undetermined] = np.nan
    return inv, bool(np.any(~good) or np.any(~pos)), negative


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
    objective jumps between them, and its optimum cannot be certified.

    Returns ``(x, value, H, grads)``; ``H`` and ``grads`` are ``None`` when ``x``
    did not change.
    """
    fun = obj.evaluate(x)
    val, record.competing_modes = obj.scan_modes(x)
    if not val < fun - 1e-8 * (1.0 + abs(fun)):
        return x, val, None, None
    obj.global_modes = True
    r = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx)
    record.stages.append(("modes from the scan", float(r.fun), int(r.nit), str(r.message)))
    x, H, grads = newton_polish(obj, r.x if r.fun < val else x, bounds)
    val, record.competing_modes = obj.scan_modes(x)
    return x, val, H, grads


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
        # Newton did not settle: fitted on every row from the mixed model's optimum (a
        # relative tolerance of 1e-9 leaves the bound within ~1e-6 of the GLM's optimum)
        # the mixed model's per-row arrays go first on large data (made again from the
        # modes when read): they and the GLM's own would otherwise be held at once
        obj.release_rows()
        glm = GLMObjective(d)
        gb = [bounds[k] for k in keep]
        res = _run_lbfgsb(glm.value_and_grad, x[keep], gb, max_iter, 1e-9)
        x_glm, glm_fun = res.x, float(res.fun)
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


def _via_nested(obj, origin, holds, back, fun0, best, names, stage_args, gain=1e-6):
    """The best of ``best`` (``(x, fun)``), the nested model with each parameter ``k`` of
    ``holds`` (``(k, value)``) held at its value fitted from ``origin``, and, where that
    is below ``fun0`` by more than ``gain``, the full model fitted from its optimum with
    the parameters of ``back`` (``(k, value)``) put at their values (stages ``names``)."""
    bounds, max_iter, tol, diag_idx, record = stage_args
    x1, held = _held(origin, bounds, holds)
    res = _laplace_stage(obj, x1, held, max_iter, tol, diag_idx)
    record.stages.append((names[0], float(res.fun), int(res.nit), str(res.message)))
    if not res.fun < fun0 - gain or not np.all(np.isfinite(res.x)):
        return best
    start = res.x.copy()
    for k, value in back:
        start[k] = value
    full = _laplace_stage(obj, start, bounds, max_iter, tol, diag_idx)
    record.stages.append((names[1], float(full.fun), int(full.nit), str(full.message)))
    x, fun = best
    for cand, val in ((res.x, float(res.fun)), (full.x, float(full.fun))):
        if val < fun and np.all(np.isfinite(cand)):
            x, fun = cand, val
    return x, fun


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
    This costs a stage per flat side on every fit of these families (about twice the
    evaluations of a zero-inflated reference fit).
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
        x, fun = _via_nested(
            obj, start, [(k, bound)], [(k, start[k])], fun0, (x, fun), names, stage_args
        )
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


def newton_polish(obj, x, bounds):
    """Newton steps from ``x`` until lme4's gradient check passes.

    Returns ``(x, H, (max |g|, max |scaled g|))`` at the end.
    """
    for step_no in range(_POLISH_STEPS + 1):
        val, g = obj.value_and_grad(x)
        H = hessian(obj, x)
        grads = scaled_gradient(g, H, x, bounds)
        if not np.isfinite(val) or grads[1] <= GRAD_TOL or step_no == _POLISH_STEPS:
            return x, H, grads
        x_new = _newton_step(obj, x, val, g, H, bounds)
        if x_new is None:
            return x, H, grads
        x = x_new


def _newton_step(obj, x, val, g, H, bounds):
    """A Newton step on the free parameters that lowers the objective, or None."""
    free = np.flatnonzero(~at_bound(x, bounds))
    gf = projected_gradient(g, x, bounds)[free]
    try:
        np.linalg.cholesky(H[np.ix_(free, free)])
        direction = np.linalg.solve(H[np.ix_(free, free)], -gf)
    except np.linalg.LinAlgError:
        return None
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    at_x = obj.snapshot()
    t = 1.0
    for _ in range(30):
        cand = x.copy()
        cand[free] += t * direction
        cand = np.clip(cand, lo, hi)
        obj.restore(at_x)
        if obj.evaluate(cand) < val:
            return cand
        t *= 0.5
    obj.restore(at_x)
    return None


def rescaled_restart(obj, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record):
    """The fit resumed from a point that fails the gradient check after the polish,
    with the optimiser scaled by every parameter's curvature there (the family's own
    parameters too: an unscaled run stalls where a standard deviation of 1e-3 and NB
    theta in the hundreds of thousands meet), then polished again. Kept when lower;
    a fit that passes the check never comes here."""
    res = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx, scale_extras=True)
    record.stages.append(("rescaled restart", float(res.fun), int(res.nit), str(res.message)))
    if not res.fun < fun:
        obj.evaluate(x)
        return x, fun, H, grads
    x2, H2, grads2 = newton_polish(obj, res.x, bounds)
    return x2, obj.evaluate(x2), H2, grads2


def probe_new_zeros(obj, before, x, fun, H, grads, bounds, max_iter, tol, diag_idx, record):
    """A standard deviation the polish (or its restart) put on zero, probed as the main
    stage probes one it ends on (step 2b of the module docstring).

    A projected Newton step clips a Cholesky diagonal it would take below zero onto
    the bound; the objective is lower there than where the step started, but the
    optimum may still lie above zero, past a rise the step did not see (an optimiser
    stopped far from the optimum and polished from there). The zero is probed on the
    main stage's grid and the fit resumed from a better point; kept when lower, and
    polished again.
    """
    new = [k for k in diag_idx if x[k] == 0.0 and before[k] != 0.0]
    if not new or not np.isfinite(fun):
        return x, fun, H, grads
    res = _laplace_stage(obj, x, bounds, max_iter, tol, diag_idx)
    record.stages.append(("zero from the polish", float(res.fun), int(res.nit), str(res.message)))
    if not res.fun < fun - 1e-8 or not np.all(np.isfinite(res.x)):
        obj.evaluate(x)
        return x, fun, H, grads
    x2, H2, grads2 = newton_polish(obj, res.x, bounds)
    return x2, obj.evaluate(x2), H2, grads2


def to_central_covariances(obj, x, fun, H, grads, bounds, record):
    """The fit moved to :func:`central_covariances`' point of its set of equal
    likelihood (kept when the objective there is the same, to :data:`RISE_TOL` or
    :data:`_CENTRAL_TOL` of it) and polished on the identified directions there
    (:func:`_identified_polish`), with its Hessian and gradient."""
    # (the polish's Newton steps can take a covariance back to its set's edge, a
    # Cholesky diagonal clipped at 0 where the identified directions still had a little
    # to gain: the move is then made again from there, a few times at most)
    for _ in range(_CENTRAL_ROUNDS):
        x2 = central_covariances(obj, x, bounds)
        if x2 is x or not np.isfinite(fun):
            return x, fun, H, grads
        at_x = obj.snapshot()
        fun2 = obj.evaluate(x2)
        record.stages.append(("central point of an unidentified covariance", float(fun2), 0, ""))
        # (the same likelihood to the conditional modes' tolerance: 1e-5 of -2 log L of
        # 8,000 by where the modes' iterations start; a guard, not a test)
        if not fun2 <= fun + max(RISE_TOL, _CENTRAL_TOL * abs(fun)):
            obj.restore(at_x)
            return x, fun, H, grads
        x, fun, H, grads = _identified_polish(obj, x2, bounds)
    return x, fun, H, grads


_CENTRAL_ROUNDS = 3


def _identified_polish(obj, x, bounds):
    """Newton steps from ``x`` on the directions the likelihood identifies (the
    Hessian's nil curvature along :func:`unidentified_directions` filled,
    :func:`_flat_filled`) until lme4's gradient check passes there; ``(x, objective, H,
    (max |g|, max |scaled g|))`` at the end. The plain polish's Newton steps need a
    positive definite Hessian, which such a fit does not have."""
    for step_no in range(_POLISH_STEPS + 1):
        val, g = obj.value_and_grad(x)
        H = hessian(obj, x)
        N = unidentified_directions(obj, x, bounds)
        grads = scaled_gradient(g, H, x, bounds, N)
        if N is None or not np.isfinite(val) or grads[1] <= GRAD_TOL or step_no == _POLISH_STEPS:
            return x, val, H, grads
        free = ~at_bound(x, bounds)
        Hn = H.copy()
        Hn[np.ix_(free, free)] = _flat_filled(H[np.ix_(free, free)], N[free])
        x_new = _newton_step(obj, x, val, g, Hn, bounds)
        if x_new is None:
            obj.evaluate(x)
            return x, val, H, grads
        x = x_new


_CENTRAL_TOL = 1e-8


def rising_off_zero(obj, x, fun, H, diag_idx) -> tuple:
    """The Cholesky diagonals at zero along which the objective falls (step 4 of the
    module docstring): negative curvature in the Hessian there, and a lower value one
    difference step above zero (by more than :data:`RISE_TOL`)."""
    candidates = [k for k in diag_idx if x[k] == 0.0 and H[k, k] < 0.0]
    if not candidates:
        return ()
    obj.value_and_grad(x)  # (remembered) the state the steps are read from
    steps = _hessian_steps(obj, x)
    at_x = obj.snapshot()
    found = []
    for k in candidates:
        up = x.copy()
        up[k] = steps[k]
        obj.restore(at_x)
        if obj.evaluate(up) < fun - RISE_TOL:
            found.append(k)
    obj.restore(at_x)
    return tuple(found)


RISE_TOL = 1e-6  # of -2 log L

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
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
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


def _curvature_and_gradient(obj, x, H, bounds, record) -> None:
    """The record's covariance, flat and negative directions, gradient check on the
    identified directions and covariance over them, at ``x`` with the Hessian ``H``:
    the set's flat directions taken out (:func:`curvature`), and its bend where the
    objective is nowhere lower along it (step 5b of the module docstring)."""
    N = record.unidentified
    args = (H, x, bounds, ridge_parameters(obj.data, x), stopped_blocks(obj.data, x, bounds), N)
    record.covariance, record.flat_directions, record.negative_curvature = curvature(*args)
    along_set = record.negative_curvature and _set_bend(obj, x, H, bounds, record)
    if along_set:
        record.covariance, record.flat_directions, record.negative_curvature = curvature(
            *args, along_set=True
        )
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
        x, fun = highest_modes(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = glm_bound(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = limit_bounds(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = bound_from_start(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
        x, fun = nested_blocks(obj, x, fun, bounds, max_iter, tol, diag_idx, record)
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
        if not obj.data.family.log_concave and hasattr(obj, "scan_modes"):
            x, fun, H_scan, grads_scan = scan_modes(obj, x, bounds, max_iter, tol, diag_idx, record)
            if H_scan is not None:
                H, grads = H_scan, grads_scan
        x, fun, H, grads = to_central_covariances(obj, x, fun, H, grads, bounds, record)
        record.objective = float(fun)
        record.max_grad, record.max_scaled_grad = grads
        record.rising_off_zero = rising_off_zero(obj, x, fun, H, diag_idx)
    record.final = x
    record.hessian = H
    aliased = aliased_directions(obj, x, bounds)
    record.unidentified = joined(level_directions(obj, x, bounds), aliased)
    if aliased is not None and np.all(np.isfinite(H)):
        # flat by the design whatever the Hessian reads along them (its curvature there
        # is the gradient's along the sum of the variances, the optimiser's tolerance)
        H = _aliased_removed(H, x, bounds, aliased)
    _curvature_and_gradient(obj, x, H, bounds, record)
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
