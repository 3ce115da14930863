"""Profile-likelihood intervals of the reported parameters (their map and Wald intervals
are :mod:`._param_map`'s).

The optimiser works on ``x = [beta_internal, theta, extra]``; intervals are
reported for ``phi``, the parameters people read:

* fixed effects in original units (``beta = J beta_internal``, a linear map);
* per grouping factor, in lme4's theta order (column-major lower triangle):
  a standard deviation for each diagonal element and a correlation for each
  off-diagonal one (lme4's ``sd_(Intercept)|id``, ``cor_time.(Intercept)|id``);
* the family's extra parameters on their internal scale (``log_theta`` of the
  negative binomial, ``logit_zi``), shown transformed (``nb_theta``, ``zi_prob``).

A profile fixes one coordinate of ``phi`` and minimises ``F = -2 log L`` over
the others (L-BFGS-B), on the internal scale where the map is linear (:class:`_Slice`:
the reported fixed effects of a predictor far from zero are nearly collinear with the
intercept, the internal ones are not). Its signed root
``zeta = sign(phi_k - phi_k_hat) sqrt(F_profile - F_hat)`` crosses
``+-z_(1 - alpha/2)`` at the interval limits (lme4's ``profile``/``confint``).
Order of calls in :func:`profile_limit`: Wald step from the estimate, secant
extrapolation until the cutoff is bracketed (or a bound is reached: a
standard deviation whose profile at 0 stays inside the cutoff has lower limit
exactly 0), then Illinois regula falsi inside the bracket.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ._config import with_config
from ._engine.blas import single_threaded_blas
from ._engine.curvature import _unit_diagonal, at_bound
from ._engine.lbfgsb import _run_lbfgsb, bound_arrays
from ._fit_result import objective_lock
from ._param_map import ParamMap, wald_table
from ._profile_slice import (
    _COR_STEP,
    _Slice,
)
from ._state import carrying_data
from ._warn import quiet, user_stacklevel, warn
from .exceptions import ProfileWarning, StandardErrorWarning

_ZETA_TOL = 5e-4  # accuracy of |zeta| at a limit (a 1e-4 fraction of a 95% interval)
# |zeta| of a profile point may fall below a point nearer the estimate by this much before
# the profile counts as not monotone (near the cutoff, a tenth of a unit of deviance)
_MONOTONE_TOL = 0.05
# a reported parameter that moves less than this per unit of every internal one has no
# direction to constrain (:meth:`Profiler._constrained_point`)
_FLAT_CONSTRAINT = 1e-6


# -- profiles ----------------------------------------------------------------------
class Profiler:
    """Profiles of ``F = -2 log L`` along each reported parameter of a fitted model."""

    def __init__(self, est, pmap: ParamMap, max_iter=500, tol=1e-10):
        self.est = est
        self.obj = est.fit_result_.objective
        self.pmap = pmap
        self.max_iter = max_iter
        self.tol = tol
        self.bounds_x = [tuple(b) for b in est.fit_result_.bounds]
        self.x_hat = est.fit_result_.params.copy()
        self.phi_hat = pmap.to_phi(self.x_hat)
        self.u_keep = self.obj.u.copy()
        self.obj.u = self.u_keep.copy()
        self.F_hat = float(self.obj.evaluate(self.x_hat))
        self.lower_found = None  # (parameter, deviance) if profiling found a better fit
        # whether the side being profiled passed a point below the fit's deviance
        self.dipped = False
        # the side's points (distance from the estimate, value, |zeta|) and the first pair
        # that shows the profile not monotone there
        self.side_points = []
        self.non_monotone = None
        self.hessian = getattr(est.fit_result_, "hessian", None)
        self._slices = {}
        self._warned = set()
        self.coupled = pmap.correlations_coupled  # the constrained search too (point)

    def restore(self):
        self.obj.u = self.u_keep.copy()
        self.obj.evaluate(self.x_hat)

    def _slice(self, k) -> _Slice:
        if k not in self._slices:
            self._slices[k] = _Slice(self.pmap, k, self.bounds_x, self.x_hat)
        return self._slices[k]

    def point(self, k, value, start, keep_zero=False):
        """Minimum of F with ``phi_k = value``, started at internal ``start``; (F, x).
        ``keep_zero``: the start's SDs at zero stay there (:meth:`_Slice.start`)."""
        F, x, left = self._slice_point(k, value, start, keep_zero)
        if left is None:  # no point of the domain from the start or the estimate
            if self.coupled:
                F, x = self._constrained_point(k, value, self.x_hat)
            if not np.isfinite(F):
                self._unresolved(k, value)
            return F, x
        if self.coupled and (left or not np.isfinite(F)):
            # the slice's L-BFGS-B stops where a step leaves the correlations' domain (an
            # infinite objective); the minimum over the internal parameters, whose
            # bounds are the domain, with phi_k = value as a constraint, may be lower.
            # Where no step left it, the slice's minimum is the constrained problem's
            # (on 296 points of coupled profiles, SLSQP found a lower one only where a
            # step had left the domain or no point was found)
            F2, x2 = self._constrained_point(k, value, x if np.isfinite(F) else start)
            if F2 < F:
                F, x = F2, x2
                # SLSQP ends on a Cholesky diagonal's bound of 0 (a singular block of
                # correlations) where the profile's minimum may lie inside: F is even in
                # that diagonal, so neither it nor a search started there sees the way
                # in (a Poisson fit's profile of a fixed effect stopped at 3.84 where the
                # minimum is 3.20). The slice's search from there starts inside
                F3, x3, _left = self._slice_point(k, value, x2)
                if F3 < F:
                    F, x = F3, x3
        return F, x

    def _slice_point(self, k, value, start, keep_zero=False):
        """(F, x, left) of the slice's L-BFGS-B from ``start`` (or the estimate); ``left``:
        whether a trial point left the domain, None (with F infinite) where neither
        start gives a point of it."""
        sl = self._slice(k)
        u0, bounds = sl.start(np.asarray(start, dtype=float), value, keep_zero)
        if sl.to_x(u0, value) is None and not keep_zero:
            # (with keep_zero the start's zeros are the point: moved inside from there)
            u0, bounds = sl.start(self.x_hat, value)
        # the other correlations at the start and at the estimate may be of no positive
        # definite covariance with phi_k = value (Toeplitz lags, a block of three or more)
        inside = sl.inside(u0, value)
        if inside is None:
            return np.inf, self.x_hat, None
        u0 = sl.off_singular(inside)
        scale = sl.preconditioner(u0, self.hessian)
        left = []  # whether a trial point left the domain (or the objective failed there)

        def fun(u):
            x = sl.to_x(u, value)
            if x is None:
                left.append(True)
                return np.inf, np.zeros(len(u))
            # the analytic gradient of the objective in use (Laplace or AGQ)
            val, g = self.obj.value_and_grad(x)
            if not np.isfinite(val):
                left.append(True)
                return np.inf, np.zeros(len(u))
            gu = sl.gradient(u, g)
            for j, side in sl.correlations_at_one(u):
                # the chain rule reads 0 x inf there (F's derivative in the Cholesky
                # diagonal the correlation empties is 0 at 0, that diagonal's in the
                # correlation infinite); F's own difference, inwards, is finite
                step = u.copy()
                step[j] -= side * _COR_STEP
                x2 = sl.to_x(step, value)
                val2 = np.inf if x2 is None else self.obj.evaluate(x2)
                if np.isfinite(val2):
                    gu[j] = side * (val - val2) / _COR_STEP
            return val, gu

        # a trial point whose likelihood overflows is worth +inf, not a message
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            res = _run_lbfgsb(fun, u0, bounds, self.max_iter, self.tol, scale)
            if not np.isfinite(res.fun):
                # restart from the estimate when the warm start led into trouble
                self.obj.u = self.u_keep.copy()
                u0, bounds = sl.start(self.x_hat, value)
                res = _run_lbfgsb(fun, u0, bounds, self.max_iter, self.tol, scale)
            for x_alt in self._flat_correlation_starts(k, start):
                self.obj.u = self.u_keep.copy()
                u_alt = sl.inside(sl.start(x_alt, value)[0], value)
                if u_alt is not None:
                    alt = _run_lbfgsb(fun, u_alt, bounds, self.max_iter, self.tol, scale)
                    if alt.fun < res.fun:
                        res = alt
        x = sl.to_x(res.x, value)
        return float(res.fun), (self.x_hat if x is None else x), bool(left)

    def _flat_correlation_starts(self, k, start) -> list:
        """``start`` with the correlation of a structure (``ar1``, ``cs``) whose SDs are
        all zero there put at each of its restart values (as a fit's
        ``_structure_restarts``). Where the SDs are zero the correlation is flat, and
        the value it keeps is arbitrary; a point started from it (its SDs moved off
        zero) returns to the basin of that sign, where the profile's minimum can have
        left for one on the other side (a Poisson ``ar1`` fit with its SD at 0 and
        rho 0.13: at the lower limit -0.073 of a fixed effect the deviance 3.84 on the
        SD's zero, 3.60 at SD 0.18 and rho -0.9999, no warning)."""
        out = []
        start = np.asarray(start, dtype=float)
        for first, st in self.pmap.structured:
            values = getattr(st, "restart_correlations", ())
            n_sd = st.n_sd
            if st.n_params - n_sd != 1 or not values or first + n_sd == k:
                continue
            if np.any(start[first : first + n_sd] >= 1e-4):
                continue
            for rho in values:
                c = st.cor_params([rho])
                if c is not None:
                    x_alt = start.copy()
                    x_alt[first + n_sd] = c[0]
                    out.append(x_alt)
        return out

    def _unresolved(self, k, value):
        """Warn (once per parameter) that the profile at ``value`` found no point of the
        covariance's domain: counted as beyond the limit, which may then be too near."""
        name = self.pmap.names[k]
        if name in self._warned or value in self.pmap.bounds[k]:
            return  # (a correlation of +-1: no positive definite covariance has it)
        self._warned.add(name)
        warn(
            f"the profile of {name} found no positive definite covariance with it at "
            f"{value:.6g}; that value counts as beyond the interval's limit, which may "
            "therefore be too near the estimate. Compare with method='bootstrap'.",
            ProfileWarning,
            stacklevel=user_stacklevel(),
        )

    def _constrained_point(self, k, value, start):
        """(F, x): SLSQP over the internal parameters with ``phi_k = value``; (inf, x)
        when it does not meet the constraint, or where the constraint has no direction
        at the start (a standard deviation held at 0: its Cholesky row is 0 whichever way
        it leaves, so ``phi_k``'s gradient is 0 there; SLSQP's linear model of the
        constraint is then empty, and its steps went out to internal values of 1e9 in
        thousands of evaluations; the slice holds that point exactly), and at a bound no
        covariance attains (:meth:`_open_bound`).

        SLSQP works on ``x * s``, ``s`` the square roots of the fit's Hessian's diagonal:
        its first step is the gradient, which unscaled is many standard errors long."""
        from scipy import optimize

        pm, obj = self.pmap, self.obj
        lower, upper = bound_arrays(self.bounds_x)
        x0 = np.clip(np.asarray(start, dtype=float), lower, upper)
        if self._open_bound(k, value):
            return np.inf, x0
        if not np.any(np.abs(_phi_gradient(pm, k, x0)) > _FLAT_CONSTRAINT):
            return np.inf, x0
        s = _curvature_scale(self.hessian, len(x0))

        def fun(z):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                val, g = obj.value_and_grad(z / s)
            if not np.isfinite(val):
                return 1e300, np.zeros(len(z))
            return float(val), np.asarray(g, dtype=float) / s

        def gap(z):
            return pm.to_phi(z / s)[k] - value

        def gap_jac(z):
            return _phi_gradient(pm, k, z / s) / s

        res = optimize.minimize(
            fun,
            x0 * s,
            jac=True,
            method="SLSQP",
            bounds=list(zip(lower * s, upper * s)),
            constraints=[{"type": "eq", "fun": gap, "jac": gap_jac}],
            options={"maxiter": self.max_iter, "ftol": 1e-12},
        )
        x = np.asarray(res.x, dtype=float) / s
        if abs(pm.to_phi(x)[k] - value) > 1e-8 * max(1.0, abs(value)):
            return np.inf, x
        F = float(obj.evaluate(x))
        return (F if np.isfinite(F) else np.inf), x

    def _open_bound(self, k, value) -> bool:
        """Whether ``value`` is a bound of a structured factor's parameter ``k`` that no
        covariance of the structure attains (a Toeplitz lag correlation of +-1: SLSQP
        looked for one in about 5,000 evaluations, 6 s, each time the profile reached
        it)."""
        pm = self.pmap
        if value not in pm.bounds[k]:
            return False
        for first, st in pm.structured:
            if first <= k < first + st.n_params:
                vals = np.array(self.phi_hat[first : first + st.n_params], dtype=float)
                vals[k - first] = value
                return st.from_reported(vals) is None
        return False

    def zeta(self, k, value, start, keep_zero=False):
        F, x = self.point(k, value, start, keep_zero)
        dev = F - self.F_hat
        if dev < -1e-3:
            self.dipped = True
            if self.lower_found is None or F < self.lower_found[1]:
                self.lower_found = (self.pmap.names[k], F)
        return np.sign(value - self.phi_hat[k]) * np.sqrt(max(dev, 0.0)), x


def _lower_found_message(est, name, deviance) -> str:
    """The warning for a profile point below the fit's deviance. For a family that is
    not log-concave (zero inflation, hurdle, NB1, beta-binomial) that point may be the
    Laplace approximation's failure, not a better fit: where a level's counts are all
    zero its conditional density can be nearly flat at the mode, and the Laplace
    objective there tens of units above the true likelihood (a zero-inflated NB2 fit that
    matched glmmTMB and the true integral: a profile point 6 units "better", its true
    likelihood 3 units worse)."""
    found = (
        f"profiling {name} found a deviance {deviance:.4f} below the fit's "
        f"{-2 * est.loglik_:.4f} (its limit on each side where the profile went below the "
        "fit's deviance is not reported: NaN)"
    )
    if est.fit_result_.family.log_concave:
        return (
            f"{found}: the fit is not at the optimum; refit (e.g. with a smaller tol) before "
            "trusting these intervals."
        )
    return (
        f"{found}. For this family the Laplace approximation can be far too high away from "
        "the fit (where a group's counts are all zero), so that point need not be a better "
        "fit, and the profile there is not the likelihood's: these intervals are unreliable. "
        "Use method='bootstrap'; compare a refit from another start with the reported one."
    )


def _initial_step(pmap, k, se_k, phi_k):
    if np.isfinite(se_k) and se_k > 0:
        return se_k
    kind = pmap.kinds[k]
    if kind == "cor":
        return 0.3
    if kind == "sd":
        return 0.2 * max(phi_k, 0.5)
    return 0.5 * max(abs(phi_k), 1.0)


def _at_bound(pm, k, direction, bound):
    """The limit of a profile that stays inside the cutoff up to ``bound``: the bound
    itself, but for a family parameter whose bound stands for its flat side's end (a
    zero-inflation probability's logit bounded at -20 for 0, NB theta's log for the
    Poisson limit), that end, +-inf on the internal scale (reported as 0 or inf)."""
    if pm.kinds[k] == "extra":
        side = pm.blocks_extra[k - pm.p - pm.T].flat_side
        if side is not None and (side[0] == "upper") == (direction > 0):
            return direction * np.inf
    return bound


def profile_limit(prof: Profiler, k: int, direction: int, zc: float, step: float, trace):
    """Value of ``phi_k`` where the signed root reaches ``direction * zc`` (or a bound)."""
    pm = prof.pmap
    lo, hi = pm.bounds[k]
    bound = hi if direction > 0 else lo
    v_hat = prof.phi_hat[k]

    def clip(v):
        return v if bound is None else (min(v, bound) if direction > 0 else max(v, bound))

    inside = (v_hat, 0.0, prof.x_hat.copy())
    prev = inside
    v = clip(v_hat + direction * zc * step)
    outside = None
    for _ in range(40):
        if v == inside[0]:  # the estimate sits on the bound (a flat side's end: that end)
            return v if bound is None else _at_bound(pm, k, direction, bound)
        z, x = _verified_zeta(prof, k, v, inside[2], zc)
        trace.append((v, z))
        _note_monotone(prof, abs(v - v_hat), v, z)
        a = abs(z)
        if a >= zc:
            outside = (v, a, x)
            break
        prev, inside = inside, (v, a, x)
        if bound is not None and v == bound:
            return _at_bound(pm, k, direction, bound)
        slope = (a - prev[1]) / abs(v - prev[0])
        dist = abs(v - v_hat)
        dv = (zc - a) / slope * 1.05 if slope > 0 else 2.0 * dist
        v = clip(v + direction * float(np.clip(dv, 0.25 * dist, 4.0 * dist)))
    if outside is None:
        warn(
            f"profile for {pm.names[k]} did not reach the cutoff; its limit is unbounded.",
            ProfileWarning,
            stacklevel=user_stacklevel(),
        )
        return direction * np.inf
    # Illinois regula falsi on |zeta| - zc between inside and outside
    (v0, a0, p0), (v1, a1, _) = inside, outside
    g0, g1 = a0 - zc, a1 - zc
    true_g0, true_g1 = g0, g1  # (g0, g1: Illinois's scaled values)
    side = 0
    for _ in range(60):
        with np.errstate(invalid="ignore", divide="ignore"):  # an infinite zeta: bisect
            v = v1 - g1 * (v1 - v0) / (g1 - g0)
        if not (min(v0, v1) < v < max(v0, v1)):
            v = 0.5 * (v0 + v1)
        z, x = _verified_zeta(prof, k, v, p0, zc)
        trace.append((v, z))
        _note_monotone(prof, abs(v - v_hat), v, z)
        g = abs(z) - zc
        if abs(g) < _ZETA_TOL:
            return _checked_limit(prof, k, v, x)
        if abs(v1 - v0) < 1e-9 * max(1.0, abs(v)):
            # |zeta| jumps across the cutoff: no crossing (an infinite zeta is the
            # covariance's domain ending there, which _unresolved has said)
            if np.isfinite(true_g1) and np.isfinite(true_g0) and abs(true_g1 - true_g0) > 0.25:
                return _undetermined(
                    prof,
                    k,
                    v,
                    f"|zeta| jumps from {true_g0 + zc:.3g} to {true_g1 + zc:.3g} there",
                )
            return _checked_limit(prof, k, v, x)
        if g < 0:
            v0, g0, p0, true_g0 = v, g, x, g
            if side == -1:
                g1 *= 0.5
            side = -1
        else:
            v1, g1, true_g1 = v, g, g
            if side == 1:
                g0 *= 0.5
            side = 1
    return v


def _note_monotone(prof: Profiler, dist: float, v: float, z: float) -> None:
    """Record a profile point; the first pair of the side's points whose |zeta| falls by
    more than :data:`_MONOTONE_TOL` going outwards is kept in ``prof.non_monotone``. A
    profile of a likelihood with one maximum rises on each side; one that falls has
    inner minima in different basins (a zero-inflated NB2 fit whose profile met the
    Laplace approximation's false region: |zeta| 1.79, then 1.09 further out, and a limit
    put where |zeta| changed by 0.23 within 0.003) or a likelihood with several maxima,
    and its crossing of the cutoff is not the interval's limit."""
    a = abs(z)
    if prof.non_monotone is None:
        for d0, v0, a0 in prof.side_points:
            if (d0 < dist and a0 > a + _MONOTONE_TOL) or (d0 > dist and a0 < a - _MONOTONE_TOL):
                near, far = ((v0, a0), (v, a)) if d0 < dist else ((v, a), (v0, a0))
                prof.non_monotone = near + far
                break
    prof.side_points.append((dist, v, a))


def _verified_zeta(prof: Profiler, k: int, value: float, start, zc: float):
    """:meth:`Profiler.zeta` from the warm ``start``; a point it puts at or beyond the
    cutoff is minimised again from the start with its SDs at zero kept there (where it
    has any), from where that stopped and, if still more than a unit
    beyond, from the estimate (modes and parameters), the lowest kept. A warm start from
    the previous profile point can stop far above the minimum (a Poisson fit of 4
    groups, the intercept's profile 10 SDs out: a deviance of 173.2 where the minimum is
    39.76, which a new search from there found): taken as the bracket's outer end, it
    put the limit at a point whose |zeta| is 1.90, short of the cutoff of 1.96, without
    a warning. Points inside the cutoff need no check: a minimum found too high only
    moves them outwards, which an outside point then brackets. The check costs 10-30 %
    more evaluations of a profile (on six reference fits; searching every outside point
    again from the estimate cost 60-70 %)."""
    z, x = prof.zeta(k, value, start)
    if not abs(z) >= zc:
        return z, x
    if prof._slice(k).has_zero_sd(start):
        # the warm start's SDs at zero were moved off it (F is even in an SD: a search
        # started on 0 stays); the minimum may lie on that zero, in the other basin (a
        # Poisson fit whose slope SD goes to 0 along a correlation's profile: started
        # off it, points stopped at |zeta| 1.90-2.06 where the minimum, the SD at 0, is
        # 1.775, and the limit came out at 0.503 where the profile never reaches the
        # cutoff). From the start as it is too
        z0, x0 = prof.zeta(k, value, start, keep_zero=True)
        if abs(z0) < abs(z):
            z, x = z0, x0
        if not abs(z) >= zc:
            return z, x
    # again from where it stopped (L-BFGS-B's memory cleared: a few evaluations where
    # that was the minimum), and from the estimate too where it is beyond the cutoff
    # by more than a unit
    z2, x2 = prof.zeta(k, value, x)
    if abs(z2) < abs(z):
        z, x = z2, x2
    if not abs(z) >= zc + 1.0:
        return z, x
    keep_u = prof.obj.u
    prof.obj.u = prof.u_keep.copy()
    z_cold, x_cold = prof.zeta(k, value, prof.x_hat)
    if abs(z_cold) < abs(z):
        return z_cold, x_cold
    prof.obj.u = keep_u
    return z, x


def _checked_limit(prof: Profiler, k: int, v: float, x) -> float:
    """``v``, unless the profile's other parameters sit on an internal bound there that
    they were off at the estimate: the minimum over them is then held by the bound, the
    deviance there too large and the limit too near (a zero-inflation coefficient whose
    intercept ran to its bound reported -41.4 where the profile stays flat to -inf)."""
    bounds = prof.bounds_x
    held = at_bound(np.asarray(x, dtype=float), bounds) & ~at_bound(prof.x_hat, bounds)
    # the bounds of a zero-inflation or dispersion block with predictors hold its
    # centred coordinates, which a moving slope drags; the others are the domain's
    # edges (a variance of 0, theta at its Poisson limit), where the minimum is the
    # profile's
    held &= _design_block_coordinates(prof.est, len(bounds))
    if not held.any():
        return v
    held &= _phi_gradient(prof.pmap, k, x) == 0.0  # not the coordinates that move it
    if not held.any():
        return v
    return _undetermined(prof, k, v, "the other parameters reach an internal bound there")


def _design_block_coordinates(est, n: int) -> np.ndarray:
    """The internal coordinates of the family blocks that have a design."""
    res = est.fit_result_
    out = np.zeros(n, dtype=bool)
    designs = res.block_designs
    if designs is None:
        return out
    j = res.layout.n_beta + res.layout.n_theta
    for D in designs:
        width = 1 if D is None else len(D.names)
        if D is not None:
            out[j : j + width] = True
        j += width
    return out


def _curvature_scale(H, n: int) -> np.ndarray:
    """Square roots of the Hessian's diagonal, 1 where ``H`` is missing or a diagonal
    entry is not finite and positive: a unit step in ``x * scale`` is about one
    standard error."""
    if H is None:
        return np.ones(n)
    d = np.diag(np.asarray(H, dtype=float))
    return _unit_diagonal(np.diag(np.where(np.isfinite(d), d, 0.0)))[1]


def _phi_gradient(pm, k: int, x) -> np.ndarray:
    """Central differences of the reported parameter ``k`` in the internal ones (exactly
    0 for a coordinate that does not move it)."""
    x = np.asarray(x, dtype=float)
    h = 1e-7 * np.maximum(1.0, np.abs(x))
    out = np.empty(len(x))
    for i in range(len(x)):
        up, dn = x.copy(), x.copy()
        up[i] += h[i]
        dn[i] -= h[i]
        out[i] = (pm.to_phi(up)[k] - pm.to_phi(dn)[k]) / (2 * h[i])
    return out


def _undetermined(prof: Profiler, k: int, v: float, why: str) -> float:
    """NaN with a warning: the profile does not cross its cutoff cleanly near ``v``."""
    warn(
        f"the profile limit of {prof.pmap.names[k]} is not determined (NaN): near "
        f"{v:.6g} {why}, so the profile there is not the likelihood's. Its Wald interval, "
        "or method='bootstrap', gives an interval; a profile that levels off below the "
        "cutoff means an unbounded limit.",
        ProfileWarning,
        stacklevel=user_stacklevel(),
    )
    return np.nan


def profile_parameter(est, k: int, level: float, se_k: float, max_iter=500, tol=1e-10):
    """Lower and upper profile limits of reported parameter ``k`` and its trace."""
    pmap = ParamMap(est)
    # the profile moves the fit's objective and puts it back: one user at a time
    with objective_lock(est.fit_result_.objective):
        prof = Profiler(est, pmap, max_iter, tol)
        zc = stats.norm.ppf(0.5 + level / 2.0)
        step = _initial_step(pmap, k, se_k, prof.phi_hat[k])
        trace = [(prof.phi_hat[k], 0.0)]
        try:
            lower = _side_limit(prof, k, -1, zc, step, trace)
            prof.obj.u = prof.u_keep.copy()
            upper = _side_limit(prof, k, +1, zc, step, trace)
        finally:
            prof.restore()
    return lower, upper, sorted(trace), prof.lower_found


def _side_limit(prof: Profiler, k: int, direction: int, zc: float, step: float, trace):
    """:func:`profile_limit`, NaN where the search on that side passed a point below the
    fit's deviance: the signed root is not defined there, and a crossing found beyond it
    belongs to a profile that is not the likelihood's around the fit (a zero-inflated
    Poisson fit's upper limit came out 0.58 SE beyond the crossing of the profile that
    stays near the fit). The warning of :func:`profile_table` says why."""
    prof.dipped = False
    prof.side_points, prof.non_monotone = [], None
    limit = profile_limit(prof, k, direction, zc, step, trace)
    if prof.dipped:
        return np.nan
    if prof.non_monotone is not None and np.isfinite(limit):
        v0, a0, v1, a1 = prof.non_monotone
        return _undetermined(
            prof,
            k,
            limit,
            f"the profile is not monotone (|zeta| {a0:.3g} at {v0:.6g}, {a1:.3g} at {v1:.6g} "
            "further out: its points lie in different basins, or the likelihood has "
            "several maxima)",
        )
    return limit


def profile_table(est, level, parm=None, n_jobs=None, skip=()):
    """Profile-likelihood intervals (rows as :func:`wald_table`) and the profile traces;
    the parameters named in ``skip`` are not profiled (their limits NaN)."""
    from joblib import Parallel, delayed

    pmap = ParamMap(est)
    # (the Wald standard errors only size the profiles' first steps here: their
    # warning, which points to the profile, is not this method's)
    with quiet(StandardErrorWarning):
        wald = wald_table(est, pmap, level)
    idx = [k for k, nm in enumerate(pmap.names) if parm is None or nm in parm]
    tol = min(float(getattr(est, "tol", 1e-10)), 1e-9)
    shipped = carrying_data(est)  # joblib workers receive the training data
    task = with_config(profile_parameter)
    run = [k for k in idx if pmap.names[k] not in set(skip)]
    jobs = [delayed(task)(shipped, k, level, wald["std_error"].iloc[k], 500, tol) for k in run]
    # tiny BLAS calls inside L-BFGS-B are ~10x slower with OpenBLAS threads spinning
    with single_threaded_blas():
        if n_jobs in (None, 1):
            out = [j[0](*j[1], **j[2]) for j in jobs]
        else:
            out = Parallel(n_jobs=n_jobs)(jobs)
    table = wald[["estimate"]].copy()
    table["lower"], table["upper"] = np.nan, np.nan
    traces = []
    for k, (lo, hi, trace, lower_found) in zip(run, out):
        table.iloc[k, 1] = pmap.display(k, lo)
        table.iloc[k, 2] = pmap.display(k, hi)
        tr = np.asarray(trace, dtype=float)
        traces.append(
            pd.DataFrame(
                {
                    "parameter": pmap.names[k],
                    "value": pmap.display(k, tr[:, 0]),
                    "zeta": tr[:, 1],
                }
            )
        )
        if lower_found is not None:
            warn(
                _lower_found_message(est, *lower_found),
                ProfileWarning,
                stacklevel=user_stacklevel(),
            )
    far = [pmap.names[k] for k in idx if pmap.far_origin(k)]
    if far:
        warn(
            f"the profiles of {far} describe the random effects where a slope variable is "
            "zero, more than 10 SDs outside its data: the other parameters are then "
            "optimised on the reported scale, nearly collinear there, and these limits are "
            "unreliable. Centre the slope variable (or measure it from a meaningful origin) "
            "to profile them; the other rows do not depend on the origin.",
            ProfileWarning,
            stacklevel=user_stacklevel(),
        )
    table = table.iloc[idx]
    trace_df = pd.concat(traces, ignore_index=True) if traces else pd.DataFrame()
    return table, trace_df
