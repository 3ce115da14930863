"""The highest conditional mode where there may be several: a level's penalised
log-density of a family that is not log-concave (zero inflation) can have two modes, and
the Laplace approximation is taken at the higher one. A mixin of
:class:`~sklearn_glmm._engine.objective.Objective` (through
:class:`~sklearn_glmm._engine.modes.ModeSearch`): a second search from a grid of starts,
and at the optimum a scan of each level's density on a fine grid, which also finds the
levels with two comparable modes."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .groups import GroupIndex
from .linalg import InnerSolveFailure
from .quadrature import _rule, agq_deviance, level_log_integrals
from .rows import const_rows, rows_or_none

# starting values of a second mode search for families that are not log-concave:
# spherical random effects from -8 to 8 prior SDs
_MODE_GRID = np.linspace(-8.0, 8.0, 9)
# the scan at the optimum (Objective.scan_modes): quarter prior SDs; rows x grid
# points evaluated at once
_SCAN_GRID = np.linspace(-8.0, 8.0, 65)
_SCAN_CELLS = 2_000_000
_FLAT_MODE = 1e-3
# a quadrature fit's level with two modes: its integral on a uniform grid of this many
# points over the scan's range (spacing 0.005 prior SDs; the trapezoidal rule on a
# smooth integrand is accurate to about exp(-2 pi^2 (sd / spacing)^2), e^-20 at a spacing
# of the mode's own SD, which bounds the levels checked) ...
_INTEGRAL_POINTS = 3201
# ... and the difference from the quadrature's value of that level (log-likelihood
# units) above which the rule, centred at one mode, misses mass at the other
QUADRATURE_MISS_TOL = 0.01

# outcome values and linear-predictor grid of Objective._convexity_bounds: the largest
# convex curvature of each outcome value's log-density
_CONVEXITY_OUTCOMES = 60
_CONVEXITY_GRID = np.linspace(-30.0, 30.0, 601)


def _competing(h, top, gap):
    """Levels (columns of ``h``) whose values on the grid dip and rise again.

    A point lower than the highest points on both sides of it, by more than the
    rounding of the log-density, with both within ``gap`` of the level's top
    ``top``: two separate modes, both carrying mass.
    """
    left = np.maximum.accumulate(h, axis=0)[:-2]
    right = np.maximum.accumulate(h[::-1], axis=0)[::-1][2:]
    rim = np.minimum(left, right)
    dip = (rim - h[1:-1] > 1e-6 * (1.0 + np.abs(top))) & (rim > top - gap)
    return np.flatnonzero(dip.any(axis=0))


def _level_subset(g: GroupIndex, levels):
    """The rows of ``levels`` (indices) and a :class:`GroupIndex` of those rows, the
    levels numbered in the order given."""
    rank = np.full(g.n_levels, -1)
    rank[levels] = np.arange(len(levels))
    sub = rank[g.codes]
    rows = sub >= 0
    return GroupIndex(sub[rows], len(levels)), rows


class ModeScan:
    """The search for the highest of several conditional modes (a mixin of
    :class:`~sklearn_glmm._engine.modes.ModeSearch`: it reads the objective's data,
    groups, state and mode search)."""

    def _highest_modes(self, beta, theta, extra):
        """For a family that is not log-concave (zero inflation), the highest mode.

        A level whose outcomes are all zero can have two modes (the zeros explained
        by the count part or by the inflation); the Laplace approximation is taken
        at the higher one. The search from the warm start is compared with one from
        ``u = 0``, unit by unit, and the higher mode of each kept.
        """
        first_u, first_obj = self.u.copy(), self._unit_objective()
        start = self._grid_start(first_u, first_obj, extra)
        if start is not None:  # else no point of the grid beats the modes found
            self._keep_higher(beta, theta, extra, start, first_u, first_obj)

    def _keep_higher(self, beta, theta, extra, start, first_u, first_obj) -> bool:
        """Search the modes again from ``start`` and keep, unit by unit, the higher of
        these and the modes ``first_u`` (penalised log-densities ``first_obj``).

        Returns whether any unit moved to a higher mode.
        """
        try:
            self.pirls(beta, theta, extra, u0=start)
        except InnerSolveFailure:
            self.pirls(beta, theta, extra, u0=first_u)
            return False
        second = self._unit_objective()
        better_first = first_obj > second + 1e-10 * (1.0 + np.abs(second))
        if better_first.any():
            u = np.where(better_first[self.u_unit], first_u, self.u)
            self.pirls(beta, theta, extra, u0=u)
        gain = self._unit_objective() - first_obj
        return bool(np.any(gain > 1e-10 * (1.0 + np.abs(first_obj))))

    def scan_modes(self, params, gap: float = 3.0):
        """The objective at each level's highest mode, and the levels with two modes.

        At ``params``, each level's penalised log-density is computed on a grid of
        quarter prior SDs from -8 to 8 (scalar random effects). Where a point of the
        grid beats the mode found, the search restarts there and the higher mode is
        kept. A level whose density on the grid dips and rises again to within
        ``gap`` of its top (a second mode holding more than about e^-3 of the mass)
        makes the Laplace approximation, taken at one mode, unreliable there; so does
        a mode whose curvature is below 1e-3 of the prior's (a nearly flat top).

        With adaptive quadrature, whose nodes centred at one mode may or may not reach
        the other, a level with two comparable modes counts only where its quadrature
        value differs from its integral on a fine grid (:meth:`quadrature_misses`) by
        more than :data:`QUADRATURE_MISS_TOL`; a flat top does not count.

        Returns ``(value, levels, misses)``: the objective (``-2 log L``) at the highest
        modes, the indices of the levels with competing modes (none when the random
        effect is not scalar) and, with quadrature, each such level's quadrature value
        less its integral (log-likelihood units; None with the Laplace approximation).
        """
        val = self.evaluate(params)
        none = np.zeros(0, dtype=np.intp)
        if not self._scalar or self.state is None or not np.isfinite(val):
            return val, none, None
        beta, theta, extra = self._unpack(np.asarray(params, dtype=float))
        # levels whose log-density is concave have one mode, the one found: not scanned
        levels = np.flatnonzero(~self._concave_levels(extra))
        top = self._unit_objective()
        h = self._grid_objective(_SCAN_GRID, extra, levels)
        # a gain below 1e-7 is the flat top of one mode, not another mode
        higher = h.max(axis=0) > top[levels] + 1e-7 * (1.0 + np.abs(top[levels]))
        if higher.any():
            start = self.u.copy()
            start[levels] = np.where(higher, self._refine_top(h, extra, levels), self.u[levels])
            if self._keep_higher(beta, theta, extra, start, self.u.copy(), top):
                val = agq_deviance(self, theta) if self.n_agq > 1 else self.laplace()
                val = val if np.isfinite(val) else np.inf
                self._last_key, self._last_grad, self._predictor = None, None, None
                top = self._unit_objective()
        competing = levels[_competing(h, top[levels], gap)]
        if self.n_agq > 1:  # quadrature integrates over both modes where it has the nodes
            misses = self.quadrature_misses(competing, extra)
            missed = np.abs(misses) > QUADRATURE_MISS_TOL  # (NaN: not checked)
            return val, competing[missed], misses[missed]
        # a curvature at the mode below 1e-3 of the prior's: a nearly flat top, where the
        # Laplace value moves with the mode's last digits (-log(H) / 2)
        curv = self.mode_curvatures()
        flat = np.flatnonzero(curv < _FLAT_MODE)
        return val, np.union1d(competing, flat).astype(np.intp), None

    def quadrature_misses(self, levels, extra) -> np.ndarray:
        """For each of ``levels`` (indices, levels with two modes), how far the
        objective's quadrature, centred at either mode, is from the level's integral,
        at the last point evaluated: the quadrature's log integral less the integral on
        a uniform grid of :data:`_INTEGRAL_POINTS` points over the scan's range (the
        trapezoidal rule), the larger in size of the two centrings'.

        The rule is centred at the higher mode; where the modes swap as the parameters
        move, it moves to the other, and the objective jumps by the difference of the
        two centrings' errors: an optimum can sit at such a jump. The other mode is the
        highest other local maximum of the level's density on the grid, its curvature
        the grid's second difference there. NaN for a level whose mode is narrower than
        twice the grid's spacing (the grid cannot certify it).
        """
        levels = np.asarray(levels, dtype=np.intp)
        if not len(levels):
            return np.zeros(0)
        grid = np.linspace(_SCAN_GRID[0], _SCAN_GRID[-1], _INTEGRAL_POINTS)
        step = grid[1] - grid[0]
        h = self._grid_objective(grid, extra, levels)
        top = h.max(axis=0)
        # h's ends carry e^-32 of the prior: the sum is the trapezoidal rule
        integral = np.log(np.exp(h - top).sum(axis=0) * step) + top - 0.5 * np.log(2.0 * np.pi)
        quad, sd = level_log_integrals(self)
        miss = quad[levels] - integral
        other = self._other_mode_integrals(h, grid, levels, extra) - integral
        worse = np.abs(other) > np.abs(miss)  # (False where NaN: no other mode)
        miss[worse] = other[worse]
        miss[sd[levels] < 2.0 * step] = np.nan
        return miss

    def _other_mode_integrals(self, h, grid, levels, extra) -> np.ndarray:
        """Each level's log integral by the objective's rule centred at its other mode:
        the highest local maximum of ``h`` (the levels' densities on ``grid``, columns)
        away from the mode found, its curvature the second difference there; NaN where
        there is none, or it is narrower than twice the grid's spacing."""
        step = grid[1] - grid[0]
        z, log_w = _rule(self.n_agq)
        out = np.full(len(levels), np.nan)
        inner = h[1:-1]
        peak = (inner > h[:-2]) & (inner >= h[2:])
        for col, j in enumerate(levels):
            idx = np.flatnonzero(peak[:, col]) + 1
            idx = idx[np.abs(grid[idx] - self.u[j]) > 2.0 * step]
            if not len(idx):
                continue
            i = idx[np.argmax(h[idx, col])]
            a, b, c = h[i - 1 : i + 2, col]
            curv = (2.0 * b - a - c) / step**2
            if not curv > 0.0 or 1.0 / np.sqrt(curv) < 2.0 * step:
                continue
            centre = grid[i] + 0.5 * step * (a - c) / (a + c - 2.0 * b)
            scale = 1.0 / np.sqrt(curv)
            nodes = centre + z * scale
            hn = self._grid_objective(nodes[:, None], extra, np.array([j]))[:, 0]
            out[col] = np.log(scale) + logsumexp(log_w + hn + 0.5 * z * z)
        return out

    def mode_curvatures(self):
        """Each level's curvature at its mode relative to the prior's (1 for a level
        without data; below 1 only where the log-density is convex in ``eta``), at the
        last point evaluated; None where the random effect is not scalar or there is no
        state."""
        st = self.state
        if not self._scalar or st is None:
            return None
        return 1.0 + self.groups[0].sum(st["der"].w * st["a_vals"][:, 0] ** 2)

    def _concave_levels(self, extra) -> np.ndarray:
        """Levels whose penalised log-density is strictly concave in their (scalar)
        random effect: one mode, so the mode found is the highest.

        The second derivative of level j's penalised log-density is
        ``sum_i a_i^2 l_i''(eta_i) - 1``. Each row's ``l''`` is bounded above by the
        largest value it takes over the linear predictor, for the row's outcome
        (:meth:`_convexity_bounds`); a level with ``sum_i a_i^2 max(l_i'', 0) < 1``
        (less 1 % for the bounds' own error) is therefore concave everywhere. Where no
        such bound is computed (binomial trials, per-row family parameters, many
        distinct outcomes), no level is.
        """
        g = self.groups[0]
        bound = self._convexity_bounds(extra)
        if bound is None:
            return np.zeros(g.n_levels, dtype=bool)
        a = self.state["a_vals"][:, 0]
        return g.sum(a * a * bound) < 0.99

    def _convexity_bounds(self, extra):
        """Each row's largest ``l''(eta)`` over eta (0 where its log-density is concave),
        times its prior weight; None where not computed (see :meth:`_concave_levels`)."""
        d = self.data
        if self._trials is not None or d.extra_designs is not None:
            return None
        y_vals, inverse = np.unique(d.y, return_inverse=True)
        if len(y_vals) > _CONVEXITY_OUTCOMES:
            return None
        const_cache = {}

        def curvature(eta):  # l'' of each outcome value (rows) at each eta (columns)
            k = eta.shape[1]
            y = np.repeat(y_vals, k)
            if k not in const_cache:
                const_cache[k] = d.family.constant(y, None)
            eta = np.broadcast_to(eta, (len(y_vals), k)).ravel()
            with np.errstate(all="ignore"):
                der = d.family.derivs(y, eta, None, None, extra, const_cache[k])
            return -der.w.reshape(len(y_vals), k)

        coarse = _CONVEXITY_GRID
        c = curvature(coarse[None, :])
        if not np.all(np.isfinite(c)):
            return None
        # refined around each outcome's largest value (the grid's step, 0.1, leaves it
        # within about 1e-3 of the true maximum for a smooth l''; the refinement, 1e-5)
        centre = coarse[np.argmax(c, axis=1)][:, None]
        fine = centre + np.linspace(-0.1, 0.1, 41)[None, :]
        c_fine = curvature(fine)
        if not np.all(np.isfinite(c_fine)):
            return None
        top = np.maximum(c.max(axis=1), c_fine.max(axis=1))
        bound = np.maximum(top, 0.0)[inverse]
        return bound if self._w is None else bound * self._w

    def _grid_start(self, u, obj, extra):
        """A second start for the mode search: ``u = 0``, or for a scalar random effect
        the best of a grid of values per level (where its penalised log-density beats
        the mode found), so that a mode far from both starts is found too."""
        if not self._scalar:
            return np.zeros(self.Q)
        h = self._grid_objective(_MODE_GRID, extra)
        best_u, best = _MODE_GRID[np.argmax(h, axis=0)], h.max(axis=0)
        higher = best > obj + 1e-10 * (1.0 + np.abs(obj))
        return np.where(higher, best_u, u) if higher.any() else None

    def _grid_objective(self, grid, extra, levels=None) -> np.ndarray:
        """Each level's penalised log-density at every value of ``grid`` for its
        (scalar) spherical random effect, shape (len(grid), n_levels).

        ``grid`` is one grid for every level, shape (K,), or one per level, (K, n_levels).
        With ``levels`` (indices), only those levels' rows are computed: shape
        (K, len(levels)), a per-level grid then (K, len(levels)).
        """
        if levels is not None and not len(levels):
            return np.empty((len(grid), 0))
        s, g = self.state, self.groups[0]
        a, eta_fix = s["a_vals"][:, 0], s["eta_fix"]
        d = self.data
        y, trials, w, const = d.y, self._trials, self._w, self._const
        if levels is not None and len(levels) < g.n_levels:
            g, rows = _level_subset(g, levels)
            a, eta_fix, y = a[rows], eta_fix[rows], y[rows]
            trials, w = rows_or_none(trials, rows), rows_or_none(w, rows)
            const = const_rows(const, rows)
        grid = np.broadcast_to(grid.reshape(len(grid), -1), (len(grid), g.n_levels))
        chunk = max(1, _SCAN_CELLS // max(len(eta_fix), 1))
        h = np.empty((len(grid), g.n_levels))
        for k in range(0, len(grid), chunk):
            v = grid[k : k + chunk]
            eta = eta_fix + a * g.expand(v.T).T
            loglik = d.family.loglik(y, eta, trials, w, extra, const)
            h[k : k + chunk] = g.sum(loglik.T).T - 0.5 * v * v
        return h

    def _refine_top(self, h, extra, levels=None, rounds: int = 3) -> np.ndarray:
        """Each level's highest point of ``h`` (on ``_SCAN_GRID``), refined by finer grids
        around it: a start from which the search reaches the highest of two modes
        that are close together. ``levels``: the levels of ``h``'s columns (all by
        default)."""
        cols = np.arange(h.shape[1])
        top = np.argmax(h, axis=0)
        best, width = _SCAN_GRID[top], _SCAN_GRID[1] - _SCAN_GRID[0]
        for _ in range(rounds):
            grid = best + width * np.linspace(-1.0, 1.0, 17)[:, None]
            hr = self._grid_objective(grid, extra, levels)
            best, width = grid[np.argmax(hr, axis=0), cols], width / 8.0
        return best
