"""Conditional modes: the penalised IRLS search (compiled where it can be), the modes at
several values of a zero variance in one pass; the search for the highest of several
modes is :mod:`.mode_scan`'s."""

from __future__ import annotations

import math

import numpy as np

from .._config import compiled_on
from . import compiled
from .families.base import Derivs
from .families.binomial import Binomial
from .families.negbin import _UPPER as _NB_UPPER
from .families.negbin import NegativeBinomial2
from .families.poisson import Poisson
from .groups import GroupIndex
from .linalg import InnerSolveFailure, NotPositiveDefinite
from .linalg.block import ZLambda
from .links import LogitLink, LogLink
from .mode_scan import ModeScan
from .rows import const_tiled

# the compiled kernel's per-row input a family does not read
_NO_ROWS = np.zeros(0)


# Cholesky values of a zero diagonal tried by the optimiser's probe (link-scale SDs of
# the internal, standardised columns): small ones matter for large counts
_PROBE_SCALES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# rows times values up to which they are probed in one pass (the fixed cost per
# evaluation matters on small data; on large data one pass would hold many copies)
_PROBE_CELLS = 500_000


# Newton decrement (twice the expected gain) below which a step is taken without the
# decrease test: the quadratic model is exact there to far below the log-density's rounding
_NEAR_MODE = 1e-8


def _scalar_curvature(g, w, a2, concave: bool):
    """Each level's ``h = 1 + sum w a^2`` and whether it is the exact curvature: for a
    family that is not log-concave, where some ``h`` is not positive, the negative
    curvatures are clipped (zero inflation: a descent step)."""
    h = 1.0 + g.sum(w * a2)
    if concave or h.min() > 0.0:
        return h, True
    return 1.0 + g.sum(np.maximum(w, 0.0) * a2), False


def _modes_found(dec: np.ndarray, obj: np.ndarray, top=None) -> bool:
    """Whether every unit's Newton decrement ``dec`` says its mode is found.

    The decrement is twice the gain the next Newton step could bring: below 1e-20,
    or below 1e-22 of the penalised log-density ``obj`` when that is so large (a unit
    of a million rows) that its rounding cannot resolve 1e-20; the analytic gradient
    assumes a mode this exact.
    """
    top = dec.max() if top is None else top
    if top < 1e-20:
        return True
    if top > 1e-8:  # far from the mode for any log-density below 1e14
        return False
    return bool(np.all(dec < 1e-22 * np.abs(obj)))


# a search whose largest Newton decrement is below this and stops falling (by at least
# a factor 4, twice in a row) is at the rounding floor of its derivatives: Newton's
# quadratic convergence would take a decrement of 1e-12 below 1e-20 in one step. Counts
# of 1e9 and more put it there: ``d1 = y - mu`` carries the rounding of ``eta`` times
# ``mu`` (a decrement of ~1e-19 at 1e9 that no step reduces), and the search would
# otherwise fail however close its modes are.
_FLOOR_DEC = 1e-12


def _stalled(top: float, prev: float | None, stalls: int) -> int:
    """The count of successive Newton steps that left the largest decrement ``top`` at
    the rounding floor (:data:`_FLOOR_DEC`; ``prev`` the previous step's)."""
    return stalls + 1 if prev is not None and 0.25 * prev <= top <= _FLOOR_DEC else 0


def _per_row(v, n: int) -> np.ndarray:
    """``v`` (a number: the same for every row) as a contiguous float array of ``n``
    values, for the compiled kernel: ``v`` itself when it is one."""
    if isinstance(v, np.ndarray) and v.shape == (n,) and v.dtype == np.float64:
        return np.ascontiguousarray(v)
    return np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=float), (n,)))


class _State(dict):
    """The mode and per-row arrays at the last point evaluated (``u``, ``der``, ...).

    Entries the Laplace value and gradient do not read are not kept after the mode
    search, and made again (the same values) when first read: ``eta_fix = X beta +
    offset``, ``a_vals`` (``Z Lambda``, when the search went through ``rows``) and,
    for families without extra parameters and with the Laplace approximation, ``eta``.
    ``make(state, key)`` makes them.
    """

    lazy = ("eta_fix", "a_vals", "eta")

    def __init__(self, make, **entries):
        super().__init__(**entries)
        self._make = make

    def _makes(self, key) -> bool:
        """Whether the state makes entry ``key`` when read (``a_vals`` only from ``rows``)."""
        return key in self.lazy and (key != "a_vals" or "rows" in self)

    def __missing__(self, key):
        if not self._makes(key):
            raise KeyError(key)
        value = self[key] = self._make(self, key)
        return value

    def fresh(self, key) -> np.ndarray:
        """A new array of entry ``key`` for the caller: a copy of a kept entry, or one
        made for it alone (and not kept) where the state makes it when read."""
        if key in self or not self._makes(key):
            return self[key].copy()  # kept, or not made by the state (a KeyError)
        return self._make(self, key)


class ModeSearch(ModeScan):
    """The conditional-mode search of :class:`~sklearn_glmm._engine.objective.Objective`
    (a mixin: it reads the objective's data, groups, solver and state)."""

    # -- conditional modes --------------------------------------------------
    def pirls(self, beta, theta, extra, u0=None):
        """Penalised IRLS (Newton with step-halving) for the conditional modes.

        1. eta, derivatives and the penalised log-density at the current u;
        2. factorise H and take the Newton step H^{-1}(Lambda'Z'd1 - u);
        3. halve the step, level by level, wherever the penalised log-density
           would decrease; stop when every Newton decrement is negligible.

        Sets ``self.state`` (u, eta, derivatives, a_vals) with the solver
        factorised at the returned mode.
        """
        d = self.data
        a_vals = self._a_vals(theta)
        eta_fix = d.X @ beta + d.offset
        u = (self.u if u0 is None else u0).copy()
        # the parameters the optimiser moves (a structure's own, when there is one): the
        # predictor below is a derivative in them
        bt = np.concatenate([beta, self._cov if self._structured else theta])
        move = self.predicted_move(bt) if u0 is None else None
        if move is not None:  # first-order move of the modes with (beta, theta)
            u += move
        self._predictor = None  # (levels x parameters) let go
        if self._scalar:
            self._pirls_scalar(a_vals, eta_fix, extra, u)
            self.state["bt"], self.state["beta"] = bt, beta.copy() if self._lean else beta
            del eta_fix  # the state's, let go when settled
            self._settle_state()
            return self.u
        der, ll, obj, total = self._at_modes(a_vals, eta_fix, extra, u)
        converged = False
        prev, stalls = None, 0
        for _it in range(self.pirls_max_iter):
            grad = self._Atv(a_vals, der.d1) - u
            exact = self._factorize(a_vals, der.w)
            step = self.solver.solve(grad)
            dec = self._u_sum(grad * step)
            if not np.all(np.isfinite(dec)):
                raise NotPositiveDefinite("non-finite Newton step")
            top = float(dec.max())
            stalls, prev = _stalled(top, prev, stalls), top
            if _modes_found(dec, obj) or np.abs(step).max() < 1e-11 or stalls >= 2:
                converged = True
                if top > 1e-20:  # found within the log-density's rounding: see _last_step
                    args = (a_vals, eta_fix, extra)
                    moved, der, ll, obj, total = self._last_step(
                        u, step, dec, der, ll, obj, total, self._at_modes, args
                    )
                    if moved is not u:  # the factorisation at the modes the state holds
                        exact = self._factorize(a_vals, der.w)
                    u = moved
                if not exact:  # the mode's own Hessian must be positive definite
                    self.solver.factorize(a_vals, der.w)
                break
            # the trials need only the step: the current point's per-row arrays go first
            der = None
            u, der, ll, obj, total = self._halved_step(a_vals, eta_fix, extra, u, step, dec, obj)
        self.pirls_iterations += _it + 1
        if not converged:
            self._search_failed(u)
        self.u = u
        # Z Lambda not formed: the state reads it as ``rows`` (``a_vals`` made if read)
        rows = dict(rows=a_vals) if isinstance(a_vals, ZLambda) else dict(a_vals=a_vals)
        self.state = _State(
            self._state_entry,
            u=u,
            der=der,
            **rows,
            eta_fix=eta_fix,
            beta=beta.copy() if self._lean else beta,
            extra=extra,
            bt=bt,
            ll=total,
            ll_units=ll,
        )
        del eta_fix  # the state's, let go when settled
        self._settle_state()
        return u

    def _halved_step(self, a_vals, eta_fix, extra, u, step, dec, obj):
        """The Newton ``step`` from ``u``, halved unit by unit wherever the penalised
        log-density ``obj`` would decrease (full steps where the decrement ``dec`` is
        below ``_NEAR_MODE``, see ``_pirls_scalar``); ``(u, der, ll, obj, total)`` at the
        point taken."""
        t = np.ones(self.n_units)
        near = dec < _NEAR_MODE
        for _half in range(40):
            u_try = u + t[self.u_unit] * step
            der_try = None  # the last try's arrays go first
            der_try, ll, obj_try, total = self._at_modes(a_vals, eta_fix, extra, u_try)
            worse = ~(obj_try >= obj - 1e-12 * (1.0 + np.abs(obj))) & ~near
            if not worse.any():
                break
            t[worse] *= 0.5
        if worse.any():
            # no decrease within 40 halvings: those units stay where they were (the
            # solve then fails unless they are already at their modes)
            t[worse] = 0.0
            u_try = u + t[self.u_unit] * step
            der_try = None
            der_try, ll, obj_try, total = self._at_modes(a_vals, eta_fix, extra, u_try)
        return u_try, der_try, ll, obj_try, total

    def _at_modes(self, a_vals, eta_fix, extra, u):
        """The family's derivatives at modes ``u``, each unit's log-density and penalised
        log-density, and the rows' total log-density. eta itself is not kept: made
        again from the mode if read (``_State``)."""
        eta = self._Au(a_vals, u)
        eta += eta_fix  # in place: eta_fix + Z Lambda u
        der, ll, total = self._derivs_summed(eta, extra, self._row_sum)
        del eta
        return der, ll, ll - 0.5 * self._u_sum(u * u), total

    def _at_scalar_modes(self, eta_fix, a, extra, u):
        """:meth:`_at_modes` for one factor with a scalar random effect."""
        eta = self._scalar_eta(eta_fix, a, u)
        der, ll, total = self._derivs_summed(eta, extra, self.groups[0].sum)
        del eta
        return der, ll, ll - 0.5 * u * u, total

    def _search_failed(self, u):
        self.u = u  # the next start, though this solve failed
        raise InnerSolveFailure(
            f"conditional modes not found in {self.pirls_max_iter} Newton steps"
        )

    def _unit_objective(self):
        """Penalised log-density of each unit (level) at the current modes."""
        s = self.state
        return s["ll_units"] - 0.5 * self._u_sum(s["u"] * s["u"])

    def can_batch_scales(self, n_values: int = len(_PROBE_SCALES)) -> bool:
        """Whether :meth:`laplace_at_scales` applies to ``n_values`` values: one scalar
        random effect (not structured), a log-concave family with one value of each
        of its own parameters for all rows (not a dispersion model's per-row values),
        the Laplace approximation, and data small enough for a copy per value."""
        return bool(
            getattr(self, "_scalar", False)  # not a partitioned objective's
            and not self._structured
            and self.n_agq == 1
            and getattr(self.data.family, "log_concave", False)
            and self.data.extra_designs is None
            and len(self.data.y) * n_values <= _PROBE_CELLS
        )

    def laplace_at_scales(self, params, values) -> np.ndarray:
        """The Laplace objective at ``params`` with the random effect's Cholesky value
        replaced by each of ``values``: one vectorised mode search for all of them.

        Equals :meth:`evaluate` at each point (to rounding) and leaves the objective's
        state as it was. A point whose modes are not found is ``inf``, as in
        :meth:`evaluate`. Only where :meth:`can_batch_scales`.
        """
        params = np.asarray(params, dtype=float)
        values = np.asarray(values, dtype=float)
        cov = self._cov
        beta, _, extra = self._unpack(params)
        self._cov = cov  # the state's own (``_unpack`` sets it)
        d, g = self.data, self.groups[0]
        K, G = len(values), g.n_levels
        self.n_evals += K
        # K copies of the rows, one after another: each copy's levels are contiguous
        # runs again, so that one GroupIndex sums all of them
        big = GroupIndex(np.add.outer(np.arange(K) * G, g.codes).ravel(), K * G)
        y = np.tile(d.y, K)
        trials = None if self._trials is None else np.tile(self._trials, K)
        w = None if self._w is None else np.tile(self._w, K)
        const = const_tiled(self._const, K)
        a = np.outer(values, d.factors[0].Z[:, 0]).ravel()
        a2 = a * a
        eta_fix = np.tile(d.X @ beta + d.offset, K)

        def at(u):
            der = d.family.derivs(y, eta_fix + a * big.expand(u), trials, w, extra, const)
            return der, big.sum(der.loglik) - 0.5 * u * u

        u = np.zeros(K * G)
        der, obj = at(u)
        ok = np.zeros(K * G, dtype=bool)
        for _it in range(4 * self.pirls_max_iter):
            h = 1.0 + big.sum(der.w * a2)
            step = (big.sum(a * der.d1) - u) / h
            dec = step * step * h
            finite = np.isfinite(dec)
            # as in _modes_found, level by level; a failed level stays failed
            ok = finite & (
                (dec < 1e-20)
                | (np.abs(step) < 1e-11)
                | ((dec < 1e-8) & (dec < 1e-22 * np.abs(obj)))
            )
            active = finite & ~ok
            if not active.any():
                break
            step = np.where(active, step, 0.0)
            floor = obj - 1e-12 * (1.0 + np.abs(obj))
            t = np.where(active, 1.0, 0.0)
            for _half in range(40):
                der_try, obj_try = at(u + t * step)
                bad = ~(obj_try >= floor) & (dec >= _NEAR_MODE) & (t > 0)
                if not bad.any():
                    break
                t[bad] *= 0.5
            else:
                t[bad] = 0.0
                der_try, obj_try = at(u + t * step)
            u, der, obj = u + t * step, der_try, obj_try
        dev = -2.0 * big.sum(der.loglik) + u * u + np.log(h)
        per_value = dev.reshape(K, G).sum(axis=1)
        found = ok.reshape(K, G).all(axis=1) & np.isfinite(per_value)
        return np.where(found, per_value, np.inf)

    def _last_step(self, u, step, dec, der, ll, obj, total, at_modes, args):
        """The Newton step just computed, taken at a point the search accepts as the mode
        (a decrement within the log-density's rounding, or no progress left) where it
        does not lower the penalised log-density beyond rounding, or where every
        decrement ``dec`` is below :data:`_NEAR_MODE` (the search's own rule for a step).

        The acceptance reads the value, which is flat at the mode; the gradient reads
        the mode's stationarity, which is not: with counts of 1e7 a start 3e-12 from the
        mode, accepted without a step, put the gradient 4e-4 off (1e-7 after the step).
        The callers then factorise again at the new modes: the closed-form Hessian
        and the gradient read the curvature ``h`` beside the rows' derivatives, and
        their sums cancel (counts to 9.5e7 on a predictor of raw scale: the ``h`` of the
        point before the step put the Hessian's entry for the SD 3.5 % off). Near the
        mode the step is taken whatever the value does, as in the search: the value's
        rounding is that of the rows' terms before their constants cancel (with 1e7
        binomial trials a row's terms are ~1e7, and a level's value of ~70 moved by
        -5e-9 over a step of 6e-12, beyond ``1e-12 * |value|``), while the quadratic
        model is exact there.
        """
        u_try = u + step
        der_try, ll_try, obj_try, total_try = at_modes(*args, u_try)
        if dec.max() < _NEAR_MODE or np.all(obj_try >= obj - 1e-12 * (1.0 + np.abs(obj))):
            return u_try, der_try, ll_try, obj_try, total_try
        return u, der, ll, obj, total

    def _pirls_scalar(self, a_vals, eta_fix, extra, u):
        """:meth:`pirls` for one factor with a scalar random effect.

        Every level is a one-dimensional problem: the Newton step is
        ``(sum_i a_i d1_i - u_j) / h_j`` with ``h_j = 1 + sum_i w_i a_i^2``,
        written with as few array passes as possible (small data spend their
        time in per-call overhead). A random intercept's ``a`` is one number
        (``a_vals`` a read-only view of it): no per-row arrays of it are made.
        """
        g = self.groups[0]
        a = a_vals[0, 0] if a_vals.strides[0] == 0 else a_vals[:, 0]
        if compiled_on() and self._compiled_modes(a_vals, a, eta_fix, extra, u):
            return self.u
        a2 = a * a
        der, ll, obj, total = self._at_scalar_modes(eta_fix, a, extra, u)
        converged = False
        # a log-concave family has w >= 0: h >= 1 needs no check
        concave = getattr(self.data.family, "log_concave", False)
        prev, stalls = None, 0
        for _it in range(self.pirls_max_iter):
            h, exact = _scalar_curvature(g, der.w, a2, concave)
            step = (g.sum(a * der.d1) - u) / h
            big = float(np.abs(step).max())
            if not math.isfinite(big):
                raise NotPositiveDefinite("non-finite Newton step")
            dec = step * step * h
            top = dec.max()
            stalls, prev = _stalled(top, prev, stalls), top
            found = big < 1e-11 or top < 1e-20 or (top < 1e-8 and _modes_found(dec, obj, top))
            if found or stalls >= 2:  # (stalled: at the rounding floor, see _FLOOR_DEC)
                converged = True
                if top > 1e-20:  # found within the log-density's rounding: see _last_step
                    args = (eta_fix, a, extra)
                    moved, der, ll, obj, total = self._last_step(
                        u, step, dec, der, ll, obj, total, self._at_scalar_modes, args
                    )
                    if moved is not u:  # the curvature at the modes the state holds
                        h, exact = _scalar_curvature(g, der.w, a2, concave)
                    u = moved
                break
            # the trials need only the step: the current point's per-row arrays go first
            der = None
            u, der, ll, obj, total = self._halved_scalar_step(eta_fix, a, extra, u, step, dec, obj)
        self.pirls_iterations += _it + 1
        if not converged:
            self._search_failed(u)
        if exact:
            self.solver.set_diagonal(h)
        else:  # the mode's own Hessian, which must be positive definite
            self.solver.factorize(a_vals, der.w)
        self.u = u
        self.state = _State(
            self._state_entry,
            u=u,
            der=der,
            a_vals=a_vals,
            eta_fix=eta_fix,
            extra=extra,
            ll=total,
            ll_units=ll,
        )
        return u

    def _halved_scalar_step(self, eta_fix, a, extra, u, step, dec, obj):
        """:meth:`_halved_step` for one factor with a scalar random effect: the penalised
        log-density may not decrease in any level (within rounding); a level within a
        tiny Newton decrement of its mode takes the full step, as its change is below the
        rounding of the log-density there. ``(u, der, ll, obj, total)``."""
        floor = obj - 1e-12 * (1.0 + np.abs(obj))
        u_try = u + step
        t = None
        accepted = False
        for _half in range(40):
            der_try = None  # the last try's arrays go first
            der_try, ll, obj_try, total = self._at_scalar_modes(eta_fix, a, extra, u_try)
            ok = obj_try >= floor
            if ok.all():
                accepted = True
                break
            ok |= dec < _NEAR_MODE
            if ok.all():
                accepted = True
                break
            t = np.ones(len(u)) if t is None else t
            t[~ok] *= 0.5
            u_try = u + t * step
        if not accepted:
            # no decrease within 40 halvings: those levels stay where they were (the
            # solve then fails unless they are already at their modes)
            u_try = np.where(ok, u_try, u)
            der_try = None
            der_try, ll, obj_try, total = self._at_scalar_modes(eta_fix, a, extra, u_try)
        return u_try, der_try, ll, obj_try, total

    def _compiled_modes(self, a_vals, a, eta_fix, extra, u) -> bool:
        """:meth:`_pirls_scalar` by the compiled kernel (``set_config(compiled=True)``),
        where it applies (:meth:`_compiled_rows`). Returns whether it ran.

        The state is the kernel's: the rows' derivatives at the modes it found (the
        numpy code's values to rounding; a state made again from the modes, after a
        snapshot is restored, is made by the numpy code)."""
        rows = self._compiled_rows()
        if rows is None:
            return False
        family, codes, trials, weights, const = rows
        n = len(codes)
        # the outcome read at each call: the fitted model replaces it by its own copy
        # (ModelData.own_outcome) after a fit that read the caller's array in place
        y = self.data.y
        theta, const_theta = 0.0, _NO_ROWS
        if family == compiled.NEGBIN2_LOG:
            lt = extra[0]
            if type(lt) is np.ndarray:  # per-row values: the numpy code
                return False
            if lt >= _NB_UPPER:
                # theta = infinity: the Poisson limit, as NegativeBinomial2.derivs takes it
                family = compiled.POISSON_LOG
            else:
                # theta and its parameter-free term, as NegativeBinomial2.derivs makes
                # them (the term remembered by the family for this theta)
                theta = np.exp(lt)
                const_theta = _per_row(self.data.family._lgamma_ratio(y, lt, theta, self._const), n)
                theta = float(theta)
        one_a = a_vals.strides[0] == 0
        u, h, eta, loglik, d1, w, w3, ll, its, status = compiled.scalar_modes(
            _per_row(eta_fix, n),
            np.array([a], dtype=float) if one_a else _per_row(a, n),
            codes,
            self.groups[0].n_levels,
            _per_row(y, n),
            trials,
            weights,
            const,
            family,
            u,
            self.pirls_max_iter,
            _NEAR_MODE,
            theta,
            const_theta,
        )
        self.pirls_iterations += its
        if status == compiled.NOT_FINITE:
            raise NotPositiveDefinite("non-finite Newton step")
        if status != compiled.FOUND:
            self._search_failed(u)
        self.solver.set_diagonal(h)
        self._last_eta = eta  # (small data keep it, see _derivs_summed)
        self.u = u
        self.state = _State(
            self._state_entry,
            u=u,
            der=Derivs(loglik, d1, w, w3),
            a_vals=a_vals,
            eta_fix=eta_fix,
            extra=extra,
            ll=None,
            ll_units=ll,
        )
        return True

    def _compiled_rows(self):
        """The kernel's family code and the rows' fixed inputs (level codes, trials,
        weights, the log-density's parameter-free part), made once; None where the
        kernel does not apply: it covers the Poisson family with the log link and the
        negative binomial family NB2 with the log link and one ``log theta`` for all
        rows (no dispersion design), both with counts below the large-count form, and
        the binomial family with the logit link, on data small enough to keep their
        per-row arrays. NB2's theta and its theta-dependent term are inputs of each
        call (:meth:`_compiled_modes`), not made here."""
        if self._compiled is False:
            self._compiled = None
            d = self.data
            fam, n = d.family, len(d.y)
            if self._lean:
                return None
            nb2 = type(fam) is NegativeBinomial2 and d.extra_designs is None
            if d.n_extra and not (nb2 and d.n_extra == 1):
                return None
            if type(fam) in (Poisson, NegativeBinomial2) and isinstance(fam.link, LogLink):
                neg_log_factorial, _log_y, zero = self._const
                if zero is not None:  # large counts: numpy's cancellation-free form
                    return None
                family = compiled.NEGBIN2_LOG if nb2 else compiled.POISSON_LOG
                const = neg_log_factorial
            elif type(fam) is Binomial and isinstance(fam.link, LogitLink):
                family, const = compiled.BINOMIAL_LOGIT, self._const
            else:
                return None
            self._compiled = (
                family,
                np.ascontiguousarray(self.groups[0].codes, dtype=np.intp),
                _per_row(1.0 if self._trials is None else self._trials, n).copy(),
                _per_row(1.0 if self._w is None else self._w, n).copy(),
                _per_row(const, n).copy(),
            )
        return self._compiled

    def _scalar_eta(self, eta_fix, a, u):
        """``eta_fix + a * u[codes]`` with one array of the rows' size."""
        eta = self.groups[0].expand(u)
        eta *= a
        eta += eta_fix
        return eta

    def _factorize(self, a_vals, w) -> bool:
        """Factorise H with the exact curvatures, or with negative ones clipped.

        A zero-inflated log-density is not concave everywhere, so H can be
        indefinite away from the mode; a clipped H still gives a descent step.
        Returns whether the exact curvatures were used.
        """
        try:
            self.solver.factorize(a_vals, w)
            return True
        except NotPositiveDefinite:
            self.solver.factorize(a_vals, np.maximum(w, 0.0))
            return False

    def _solve_modes(self, beta, theta, extra) -> bool:
        """Conditional modes at the parameters, or ``False`` when none can be found.

        The mode of a log-concave family is unique, so where the search starts
        changes the cost, never the value: first from the last modes (moved by
        their derivative), then from ``u = 0`` with a longer Newton budget. When
        both fail the evaluation has failed; the caller reports ``inf``.
        """
        u_keep = self.u
        try:
            self.pirls(beta, theta, extra)
            if self.global_modes:
                self._highest_modes(beta, theta, extra)
            return True
        except InnerSolveFailure:
            pass
        max_iter = self.pirls_max_iter
        self.pirls_max_iter = 4 * max_iter
        try:
            self.pirls(beta, theta, extra, u0=np.zeros(self.Q))
            return True
        except InnerSolveFailure:
            # the last good modes stay as the next evaluation's start
            self.u, self.state, self._predictor = u_keep, None, None
            self.pirls_failures += 1
            return False
        finally:
            self.pirls_max_iter = max_iter
