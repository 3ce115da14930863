"""The marginal log-likelihood of a GLMM: conditional modes, Laplace and AGQ.

Model (all arrays on the internal, scaled design)::

    eta = X beta + offset + Z Lambda(theta) u,    u ~ N(0, I)

The objective is the deviance-like quantity ``F = -2 log L``:

.. math::

    F(\\beta, \\theta, \\phi) \\approx -2 \\sum_i \\log p(y_i \\mid \\tilde\\eta_i)
        + \\lVert \\tilde u \\rVert^2 + \\log\\lvert H \\rvert,
    \\qquad H = \\Lambda^\\top Z^\\top W Z \\Lambda + I

at the conditional mode ``u~`` (Laplace). ``W`` holds the exact curvatures of
the log-density. Its gradient in ``(beta, theta, phi)`` is analytic: the
envelope theorem for the first two terms and an adjoint solve for the mode's
dependence in ``log|H|`` (``gradient.py``: :meth:`Objective.gradient`).

A factor with a covariance structure (``covariance.py``: ar1, cs, toep, ou) has its own
parameters in ``params`` in place of Lambda's entries: ``_unpack`` maps them to the
entries, and the gradient is taken along each parameter's ``d Lambda / d p``.

Order of calls: ``Objective.evaluate(params)`` → ``_unpack`` → ``pirls``
(sets the mode, curvatures and factorisation) → value; ``gradient`` reuses
that state. Adaptive Gauss-Hermite quadrature (``n_agq > 1``) adds
:func:`agq_deviance` on top of the same mode.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from . import blocks as _blocks
from . import laplace_hessian_factors
from . import rows as _rows
from .gradient import LaplaceGradient
from .groups import GroupIndex
from .linalg import BlockSolver, PaddedBlockSolver, make_solver
from .linalg.block import ZLambda

# the model data and the mode search live in their own modules; their names are
# imported from here by the rest of the library
from .model_data import (  # noqa: F401
    FactorData,
    ModelData,
    _cholesky_matrices,
    _fixed_terms,
    _indicator_columns,
    lambda_matrices,
    make_factor_data,
    subset_rows,
)
from .modes import ModeSearch
from .quadrature import agq_deviance

_LOG_2PI = np.log(2.0 * np.pi)


class Objective(ModeSearch, LaplaceGradient):
    """Laplace / AGQ objective with warm-started conditional modes.

    Parameters are packed as ``[beta (p), theta (T), extra (E)]``.
    """

    # whether the objective holds its rows (a partitioned one does not): checks that
    # evaluate another objective on the same rows apply to it
    holds_rows = True

    def __init__(self, data: ModelData, n_agq: int = 1, pirls_max_iter: int = 60):
        self.data = data
        self.n_agq = n_agq
        self.pirls_max_iter = pirls_max_iter
        f0 = data.factors
        # one factor's solver needs no columns of H per row (``cols`` makes them if asked)
        self._cols = self._columns() if len(f0) > 1 else None
        self._single = len(f0) == 1
        self.groups = [f.group_index for f in f0]
        self.Q = data.n_u
        if len(f0) == 1:
            # a structured factor's blocks (one effect per time point) are large
            solver = PaddedBlockSolver if f0[0].mapped else BlockSolver
            self.solver = solver(f0[0].codes, f0[0].n_levels, f0[0].q, f0[0].group_index)
            # Newton steps are damped level by level: each level is its own problem
            self.u_unit = np.repeat(np.arange(f0[0].n_levels), f0[0].q)
            self.n_units = f0[0].n_levels
        else:
            blocks = [(f.offset, f.n_levels, f.q) for f in f0]
            self.solver = make_solver(self.cols, self.Q, blocks)
            self.u_unit = np.zeros(self.Q, dtype=np.intp)
            self.n_units = 1
        # one factor with a scalar random effect (random intercepts): H is diagonal
        self._scalar = self._single and f0[0].q == 1
        # large data (over ``lazy_state_rows`` rows): per-row arrays made again rather
        # than kept, and products in fewer arrays (small data: fewer calls instead)
        self._lean = len(data.y) > self.lazy_state_rows
        # one unstructured factor of q >= 2 on large data: Z Lambda is not formed
        self._zrows = (
            self._lean and self._single and f0[0].q > 1 and type(self.solver) is BlockSolver
        )
        self._last_eta = None
        self._compiled = False  # (ModeSearch._compiled_rows: not looked at yet)
        self.u = np.zeros(self.Q)
        self._cov = np.zeros(data.n_theta)  # the last covariance parameters evaluated
        self._structured = data.structured
        self.n_evals = 0
        self.pirls_failures = 0
        self.pirls_iterations = 0
        self._w, self._trials, self._const = data.fixed_terms
        self._last_key, self._last_val, self._last_grad = None, np.inf, None
        self._predictor = None
        # search for the highest of several modes (families that are not log-concave);
        # switched on by the convergence checks (see sklearn_glmm._engine.converge)
        self.global_modes = False

    @property
    def cols(self) -> np.ndarray:
        """Each row's columns of ``H`` (its random effects' indices), shape (n, s)."""
        if self._cols is None:
            self._cols = self._columns()
        return self._cols

    def _columns(self) -> np.ndarray:
        f0 = self.data.factors
        cols = [f.offset + f.codes[:, None] * f.q + np.arange(f.q)[None, :] for f in f0]
        return np.concatenate(cols, axis=1)

    # -- pieces -----------------------------------------------------------
    def _unpack(self, params):
        """``(beta, theta, extra)``: ``theta`` the Cholesky entries of Lambda (a
        structured factor's parameters mapped to them), ``extra`` the family's values of
        its blocks."""
        d = self.data
        p, T = d.n_beta, d.n_theta
        self._cov = params[p : p + T]
        theta = d.cholesky_theta(self._cov) if self._structured else self._cov
        return params[:p], theta, d.extra_values(params[p + T :])

    def _a_vals(self, theta):
        if self._scalar:
            Z = self.data.factors[0].Z
            if Z.strides[0] == 0 and self._lean:
                # a view of one row (a random intercept on large data): so is Z Lambda
                return np.broadcast_to(Z[:1] * theta[0], Z.shape)
            return Z * theta[0]
        lams = _cholesky_matrices(self.data, theta)
        if self._zrows:
            f = self.data.factors[0]
            return ZLambda(f.Z, lams[0], self._ones_columns(f), self.groups[0])
        return np.concatenate([f.Z @ L for f, L in zip(self.data.factors, lams)], axis=1)

    def _Au(self, a_vals, u):
        """``Z Lambda u``: each row's random-effect contribution, factor by factor."""
        if isinstance(a_vals, ZLambda):
            return a_vals.times(u)
        out = None
        for f, g in zip(self.data.factors, self.groups):
            uf = u[f.offset : f.offset + f.n_levels * f.q]
            if f.q == 1:
                term = a_vals[:, f.local] * g.expand(uf)
            elif not self._lean:
                # the sum over q of einsum's "nq,nq->n", column by column: the same
                # operations, without einsum's per-call cost on small data
                U = g.expand(uf.reshape(-1, f.q))
                term = a_vals[:, f.local] * U[:, 0]
                for k in range(1, f.q):
                    term += a_vals[:, f.local + k] * U[:, k]
            else:  # column by column (the sum of einsum's "nq,nq->n"): no (n, q) array
                uf = uf.reshape(-1, f.q)
                term = g.expand(uf[:, 0])
                term *= a_vals[:, f.local]
                for k in range(1, f.q):
                    t = g.expand(uf[:, k])
                    t *= a_vals[:, f.local + k]
                    term += t
                    del t
            out = term if out is None else out + term
        return out

    def _Atv(self, a_vals, v):
        """``Lambda' Z' v``: per-row values summed onto the random effects."""
        if isinstance(a_vals, ZLambda):
            if v.ndim == 1:
                return a_vals.sums(v)
            return np.column_stack([a_vals.sums(v[:, j]) for j in range(v.shape[1])])
        parts = []
        mat = v.ndim == 2  # several vectors at once, (n, k) -> (Q, k)
        for f, g in zip(self.data.factors, self.groups):
            if f.q == 1:
                a = a_vals[:, f.local]
                parts.append(g.sum(a[:, None] * v if mat else a * v))
            else:
                a = a_vals[:, f.local : f.local + f.q]
                cells = self._indicator_cells(f) if mat and f.mapped else None
                if cells is not None:
                    # a time-indicator Z: row n's a is Lambda's row t_n, so the sums are
                    # Lambda' (per level and time sums of v): O(n k + G q^2 k), not O(n q k)
                    t, first, gc = cells
                    C = gc.sum(v).reshape(f.n_levels, f.q, -1)
                    lam = np.zeros((f.q, f.q))
                    lam[first >= 0] = a[first[first >= 0]]  # absent times: no sums to carry
                    parts.append(np.matmul(lam.T, C).reshape(-1, v.shape[1]))
                elif mat and a.size * v.shape[1] <= _rows.AT_ONCE_CELLS:
                    prod = (a[:, :, None] * v[:, None, :]).reshape(len(a), -1)
                    parts.append(g.sum(prod).reshape(-1, v.shape[1]))
                elif mat:  # column by column: no (n, q, k) temporary
                    out = np.empty((f.n_levels, f.q, v.shape[1]))
                    for j in range(v.shape[1]):
                        out[:, :, j] = g.sum(a * v[:, j, None])
                    parts.append(out.reshape(-1, v.shape[1]))
                elif not self._lean:
                    parts.append(g.sum(a * v[:, None]).ravel())
                else:  # column by column: no (n, q) array
                    out = np.empty((f.n_levels, f.q))
                    for k in range(f.q):
                        out[:, k] = g.sum(a[:, k] * v)
                    parts.append(out.ravel())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _indicator_cells(self, f):
        """For a factor whose Z is a time-indicator matrix: each row's time ``t``, a row
        at each time (-1 if none; every row at a time has the same row of Z Lambda) and
        the index of the (level, time) cells; None for other factors. Computed once per
        factor."""
        cache = self.__dict__.setdefault("_cells", {})
        if id(f) not in cache:
            t = _indicator_columns(f.Z)
            if t is None:
                cache[id(f)] = None
            else:
                first = np.full(f.q, -1)
                first[t] = np.arange(len(t))
                cache[id(f)] = (t, first, GroupIndex(f.codes * f.q + t, f.n_levels * f.q))
        return cache[id(f)]

    def _row_sum(self, v):
        """Sums of a per-row quantity over the units damped separately in PIRLS."""
        return self.groups[0].sum(v) if self._single else np.array([v.sum()])

    def _u_sum(self, v):
        """Sums of a per-random-effect quantity over the same units."""
        if self._single:
            return v.reshape(self.n_units, -1).sum(axis=1)
        return np.array([v.sum()])

    def _derivs(self, eta, extra, third=True, scratch=False):
        """The family's derivatives at ``eta``; ``scratch``: ``eta`` is read no more,
        and a family that can makes some of them in its memory."""
        d = self.data
        if third or not getattr(d.family, "lazy_third", False):
            return d.family.derivs(d.y, eta, self._trials, self._w, extra, self._const)
        args = (d.y, eta, self._trials, self._w, extra, self._const)
        if scratch and getattr(d.family, "scratch_eta", False):
            return d.family.derivs(*args, third=False, scratch=True)
        return d.family.derivs(*args, third=False)

    def _derivs_summed(self, eta, extra, row_sum):
        """The family's derivatives at ``eta`` without the per-row log-density, which
        only its sums are read for: over each unit (``row_sum``) and over all rows (the
        Laplace value's); ``w3`` only where the family makes it at no cost (else the
        gradient makes it, see :meth:`_third`). Returns ``(derivs, unit sums, total)``."""
        if not self._lean:  # small data: eta, w3 and the log-density kept (fewer calls)
            self._last_eta = eta
            der = self._derivs(eta, extra)
            return der, row_sum(der.loglik), None
        der = self._derivs(eta, extra, third=False, scratch=True)  # callers drop eta
        return der._replace(loglik=None), row_sum(der.loglik), der.loglik.sum()

    def _state_entry(self, s, key):
        """An entry of the state ``s`` not kept by the mode search (see ``_State``),
        made again by the same operations as there: the same values."""
        d = self.data
        if key == "a_vals":
            return s["rows"].array()
        eta_fix = s.get("eta_fix")
        if eta_fix is None:  # not kept for eta's sake either
            eta_fix = d.X @ s["beta"] + d.offset
        if key == "eta_fix":
            return eta_fix
        if self._scalar:
            a = s["a_vals"]
            return self._scalar_eta(eta_fix, a[0, 0] if a.strides[0] == 0 else a[:, 0], s["u"])
        eta = self._Au(s["rows"] if "rows" in s else s["a_vals"], s["u"])
        eta += eta_fix  # eta_fix + Z Lambda u, as the search makes it
        return eta

    def _settle_state(self) -> None:
        """After the mode search: ``w3`` made at the mode where the search left it out
        (from ``eta``, made from the search's ``eta_fix``), then ``eta_fix`` let go, and
        ``eta`` where neither the gradient nor the value reads it (see ``_State``)."""
        s = self.state
        if not self._lean:  # small data: the search's eta and eta_fix kept
            s["eta"], self._last_eta = self._last_eta, None
            return
        if s["der"].w3 is None:
            s["eta"]  # made while eta_fix is at hand
        s.pop("eta_fix")
        self._third()  # (eta let go there, when read no more)
        if not self._eta_read_again:
            s.pop("eta", None)

    # -- objective and gradient ---------------------------------------------
    def laplace(self) -> float:
        """-2 log L by the Laplace approximation at the current mode."""
        s = self.state
        ll = s["der"].loglik.sum() if s["ll"] is None else s["ll"]
        return float(-2.0 * ll + s["u"] @ s["u"] + self.solver.logdet)

    def evaluate(self, params) -> float:
        """Objective value at ``params`` (Laplace, or AGQ when ``n_agq > 1``).

        The last evaluation is remembered: asking again for the same point (as
        the optimiser, the Hessian and the convergence checks do) costs nothing.
        """
        params = np.asarray(params, dtype=float)
        key = self.memo_key(params)
        if key == self._last_key:
            return self._last_val
        self._last_key, self._last_grad = None, None
        beta, theta, extra = self._unpack(params)
        self.n_evals += 1
        # the last point's per-row arrays are not read by the search (only its modes,
        # ``self.u``): let them go before the new ones are made (a snapshot keeps its own)
        self.state = None
        if not self._solve_modes(beta, theta, extra):
            return np.inf
        val = agq_deviance(self, theta) if self.n_agq > 1 else self.laplace()
        val = val if np.isfinite(val) else np.inf
        self._last_key, self._last_val = key, val
        return val

    def memo_key(self, params: np.ndarray) -> tuple:
        """What identifies an evaluation: the parameters' bytes and the quadrature."""
        return (params.tobytes(), self.n_agq)

    def remembered(self, params: np.ndarray):
        """The value at ``params`` when it is the last point evaluated, else None."""
        return self._last_val if self.memo_key(params) == self._last_key else None

    def predicted_move(self, bt: np.ndarray):
        """The modes' first-order move from the last point evaluated to ``bt`` (its
        fixed effects and covariance parameters), from the modes' derivatives that the
        last gradient left, or None when there are none for the current modes."""
        if self._predictor is None or self._predictor[0] is not self.u:
            return None
        _, ref, J = self._predictor
        if J.dtype != np.float64:  # kept in single precision (compact_mode_derivatives)
            return (J @ (bt - ref).astype(J.dtype)).astype(np.float64)
        return J @ (bt - ref)

    def keep_mode_derivatives(self, J: np.ndarray) -> None:
        """Keep ``J = du/d(beta, theta)`` at the current modes (from a gradient): the
        next evaluation's start, and the Gauss-Newton scale's input."""
        s = self.state
        self._predictor = (s["u"], s["bt"], J)

    def compact_mode_derivatives(self) -> None:
        """On large data, keep the modes' derivatives (levels x parameters) in single
        precision from here on: they only set where a mode search starts, and the
        Hessian's differences hold them beside a whole evaluation."""
        if self._lean and self._predictor is not None:
            u, ref, J = self._predictor
            if J.dtype == np.float64:
                self._predictor = (u, ref, J.astype(np.float32))

    # whether a gradient also makes the modes' derivatives in the parameters (the next
    # evaluation's start); off (:meth:`without_mode_derivatives`) where no next
    # evaluation starts from the point, such as the Hessian's differences
    mode_derivatives_wanted = True

    @contextmanager
    def without_mode_derivatives(self):
        """Gradients inside leave the modes' derivatives out (a Laplace gradient's value
        does not read them): less work, and no (levels x parameters) array."""
        before = self.mode_derivatives_wanted
        self.mode_derivatives_wanted = False
        try:
            yield
        finally:
            self.mode_derivatives_wanted = before

    @property
    def has_mode_derivatives(self) -> bool:
        """Whether the last gradient left the modes' derivatives in the parameters."""
        return self._predictor is not None

    def adopt(self, params, val, grad, u, J) -> None:
        """Take an evaluation made elsewhere (a batch of replicates): its value,
        gradient, modes and the modes' derivatives ``J``. The per-row state is made
        from the modes when first read, as after :meth:`restore`."""
        params = np.array(params, dtype=float)
        d = self.data
        self._unpack(params)  # the covariance parameters, as an evaluation sets them
        self.n_evals += 1
        self.state = None
        self.u = u
        self._predictor = (u, params[: d.n_beta + d.n_theta].copy(), J)
        self._pending = (u, params)
        # the solver holds another point's factorisation (or none): the state's is made
        # with it, and kept
        self._solver_stale = True
        self._last_key, self._last_val, self._last_grad = self.memo_key(params), float(val), grad

    # the state at the last point evaluated; after :meth:`restore`, made again when read
    _state = None
    _pending = None  # (u, params) of a restored state not made yet
    # whether the solver's factorisation is not the pending point's (an adopted
    # evaluation): set until the state is made
    _solver_stale = False

    @property
    def state(self):
        """The last evaluation's mode and per-row arrays (None after a failed one)."""
        if self._pending is not None:
            self._make_restored_state()
        return self._state

    @state.setter
    def state(self, value):
        self._pending = None
        self._solver_stale = False
        self._state = value

    def _make_restored_state(self) -> None:
        """The state at a restored point, from its mode: the search from there takes no
        step, so the arrays are those of the evaluation that found the mode."""
        u, at = self._pending
        stale = self._solver_stale
        self._pending = None
        memo = (self._last_key, self._last_val, self._last_grad, self._predictor)
        solver, iterations = self.solver.snapshot(), self.pirls_iterations
        self.pirls(*self._unpack(at), u0=u)
        self._state["u"] = u  # the same values; the object the predictor refers to
        self.u, self.pirls_iterations = u, iterations
        self._last_key, self._last_val, self._last_grad, self._predictor = memo
        if not stale:  # the point's own factorisation, put back (else the search's)
            self.solver.restore(solver)

    # rows above which a snapshot leaves out the per-row arrays (below, keeping them
    # costs little memory, and making them again a mode search per restore)
    lazy_state_rows = 50_000

    def snapshot(self):
        """Everything an evaluation changes: the mode, its factorisation, the memo.

        On large data (over ``lazy_state_rows`` rows) not the per-row arrays of the
        state: after :meth:`restore` they are made again from the mode when first read.
        """
        memo = (self._last_key, self._last_val, self._last_grad, self._predictor)
        state, at = self._state, None
        lazy = len(self.data.y) > self.lazy_state_rows
        if self._pending is not None:
            at = self._pending[1]
        elif lazy and state is not None and self._last_key is not None:  # else kept
            state, at = None, np.frombuffer(self._last_key[0]).copy()
        # (an adopted point's factorisation is not made yet: None, made with the state)
        solver = None if self._solver_stale else self.solver.snapshot()
        return self.u, (state, at), memo, solver

    def restore(self, snap) -> None:
        """Return to the point of :meth:`snapshot` without evaluating it again."""
        u, (state, at), memo, solver = snap
        self.state = state
        self.u = u
        self._last_key, self._last_val, self._last_grad, self._predictor = memo
        if solver is not None:
            self.solver.restore(solver)
        if at is not None:
            self._pending = (u, at)
            self._solver_stale = solver is None

    def release_rows(self) -> None:
        """On large data (over ``lazy_state_rows`` rows), let the state's per-row arrays
        go: made again from the modes when read, as after :meth:`restore`; the memo and
        the modes stay."""
        if self._lean:
            self.restore(self.snapshot())

    def release_state(self) -> None:
        """Let the last evaluation's per-row arrays go (a fitted model keeps its
        objective): the next call evaluates again, from the modes kept in ``u``. An
        adopted point whose state is not made yet stays pending: the solver holds no
        factorisation of it, and its readers make it with the state."""
        pending = self._pending if self._solver_stale else None
        self.state = None
        if pending is not None:
            self._pending, self._solver_stale = pending, True
        self._last_key, self._last_grad = None, None
        self.release_predictor()
        # the closed-form Hessian's layout of several factors (made again if asked)
        self.__dict__.pop(laplace_hessian_factors.LAYOUT_KEY, None)

    def release_predictor(self) -> None:
        """On large data, let the modes' derivatives in the parameters go (levels x
        parameters: the next evaluation's start, which the optimiser no longer needs
        once the optimum is checked); the next evaluation starts from ``u`` itself."""
        if self._lean:
            self._predictor = None

    def value_and_grad(self, params):
        val = self.evaluate(params)
        if not np.isfinite(val):
            return np.inf, np.zeros(len(params))
        if self._last_grad is None:
            self._last_grad = self.gradient(params)
        return val, self._last_grad.copy()

    def quadrature_at_modes(self, params, n_agq: int):
        """``(value, gradient)`` of the ``n_agq``-node quadrature objective at ``params``,
        the last point this Laplace objective evaluated, made from its state there: the
        quadrature is centred at the same conditional modes and curvatures, so no mode
        search (one from these modes stops where it starts). None where the state is not
        at ``params`` (then evaluate a quadrature objective of its own). The Laplace
        state, its memo and the optimiser's predictor are left as they were."""
        if self.n_agq != 1 or self.state is None or self.remembered(params) is None:
            return None
        predictor = self._predictor
        self.n_agq = n_agq
        try:
            _, theta, _ = self._unpack(np.asarray(params, dtype=float))
            val = agq_deviance(self, theta)
            if not np.isfinite(val):
                return np.inf, np.zeros(len(params))
            with self.without_mode_derivatives():  # no evaluation starts from them
                return val, self.gradient(params)
        finally:
            self.n_agq = 1
            self._predictor = predictor
            self._agq_cache = None  # its (nodes x rows) arrays go now

    def max_curvature(self):
        """The largest curvature (a row's ``-l''`` in ``eta``) at the modes of the last
        point evaluated, or None (no state)."""
        try:
            w = self.state["der"].w
        except (TypeError, KeyError, AttributeError):
            return None
        return float(np.max(w)) if np.size(w) else None

    def exact_hessian_block(self):
        """The Hessian in ``(beta, theta)`` in closed form at the state of the last
        point evaluated (:mod:`.laplace_hessian`; :mod:`.laplace_hessian_factors` for
        several factors where it is cheaper than differences; :mod:`.agq_hessian` for the
        quadrature), or None where it does not apply."""
        from . import agq_hessian, laplace_hessian

        if self.state is None:  # (a failed evaluation)
            return None
        if self.n_agq > 1:
            return agq_hessian.agq_hessian(self) if agq_hessian.applies(self) else None
        if laplace_hessian.applies(self):
            return laplace_hessian.laplace_hessian(self)
        if laplace_hessian_factors.applies(self):
            try:
                return laplace_hessian_factors.factors_hessian(self)
            except np.linalg.LinAlgError:  # H not positive definite: differences
                return None
        return None

    def exact_extra_column(self):
        """The Hessian's row and column of the family's one own parameter (NB2's ``log
        theta``) in closed form at the state of the last point evaluated, beside
        :meth:`exact_hessian_block` (:func:`.laplace_hessian.extra_column`: Laplace, one
        grouping factor), or None where it does not apply."""
        from . import laplace_hessian

        if self.state is None or self.n_agq != 1:
            return None
        if not laplace_hessian.applies(self):
            return None
        return laplace_hessian.extra_column(self)

    def exact_extra_rows(self):
        """The Hessian's rows of the family's several own parameters (a zero-inflated
        NB2's ``log theta`` and ``logit pi``) in closed form at the state of the last
        point evaluated, beside :meth:`exact_hessian_block`
        (:func:`.laplace_hessian.extra_rows`: Laplace, one scalar random effect), or None
        where it does not apply."""
        from . import laplace_hessian

        if self.state is None or self.n_agq != 1 or not laplace_hessian.applies(self):
            return None
        return laplace_hessian.extra_rows(self)

    # -- conditional distribution of u --------------------------------------
    def conditional_variances(self, f: int) -> np.ndarray:
        """Blocks of H^{-1} for factor ``f`` at the current mode, (n_levels, q, q)."""
        self.state  # noqa: B018 - a pending point's factorisation is made with its state
        return self.solver.level_inverse(f)


class GLMObjective:
    """The objective without random effects (``groups=None``): -2 log L of a GLM."""

    def __init__(self, data: ModelData):
        self.data = data
        self.n_agq = 1
        self.u = np.zeros(0)
        self.n_evals = 0
        self.pirls_failures = 0
        self._w, self._trials, self._const = data.fixed_terms

    _derivs = Objective._derivs  # the same inputs: data, trials, weights, constant

    def snapshot(self):
        return getattr(self, "state", None)

    def restore(self, snap) -> None:
        self.state = snap

    def _split(self, params):
        p = self.data.n_beta
        return params[:p], self.data.extra_values(params[p:])

    def evaluate(self, params) -> float:
        d = self.data
        beta, extra = self._split(np.asarray(params, dtype=float))
        self.n_evals += 1
        self.state = None  # the last point's per-row arrays go first
        eta = d.X @ beta + d.offset
        der = self._derivs(eta, extra, third=False)
        val = float(-2.0 * der.loglik.sum())
        # what the gradient reads: the first derivatives (and eta, for the extra blocks)
        self.state = dict(eta=eta, extra=extra, der=der._replace(loglik=None, w=None, w3=None))
        del der
        return val if np.isfinite(val) else np.inf

    def value_and_grad(self, params):
        val = self.evaluate(params)
        if not np.isfinite(val):
            return np.inf, np.zeros(len(params))
        d, s = self.data, self.state
        g_beta = -2.0 * d.X.T @ s["der"].d1
        extra = s["extra"]
        if not len(extra):
            return val, g_beta
        exact = getattr(d.family, "extra_derivs", None)
        if exact is not None:
            dl = exact(d.y, s["eta"], self._trials, self._w, extra, self._const)[0]
            return val, np.concatenate([g_beta, d.extra_gradient(-2.0 * dl)])
        rows = np.zeros((len(extra), len(s["eta"])))
        for k in range(len(extra)):
            lp = self._derivs(s["eta"], _blocks.shift_block(extra, k, 1e-5)).loglik
            lm = self._derivs(s["eta"], _blocks.shift_block(extra, k, -1e-5)).loglik
            rows[k] = -2.0 * (lp - lm) / 2e-5
        return val, np.concatenate([g_beta, d.extra_gradient(rows)])
