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
dependence in ``log|H|`` (see :meth:`Objective.gradient`).

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
from .groups import GroupIndex
from .linalg import BlockSolver, PaddedBlockSolver, make_solver
from .linalg.block import ZLambda, congruence

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
from .quadrature import agq_deviance, agq_gradient

_LOG_2PI = np.log(2.0 * np.pi)


# per-row temporaries up to this many values (16 MB) are made at once: on small data
# the cost is per numpy call, and column-by-column passes (which keep large data to
# few arrays of the rows' size) only add calls
_AT_ONCE_CELLS = 2_000_000
# designs up to this many cells have their columns' level sums taken in one pass (the
# per-call cost dominates there; above it, column by column is as fast)
_ONE_PASS_CELLS = 8192


class Objective(ModeSearch):
    """Laplace / AGQ objective with warm-started conditional modes.

    Parameters are packed as ``[beta (p), theta (T), extra (E)]``.
    """

    def __init__(self, data: ModelData, n_agq: int = 1, pirls_max_iter: int = 60):
        self.data = data
        self.n_agq = n_agq
        self.pirls_max_iter = pirls_max_iter
        f0 = data.factors
        # one factor's solver needs no columns of H per row (``cols`` makes them if asked)
        self._cols = self._columns() if len(f0) > 1 else None
        self._single = len(f0) == 1
        self.groups = [GroupIndex(f.codes, f.n_levels) for f in f0]
        self.Q = data.n_u
        if len(f0) == 1:
            # a structured factor's blocks (one effect per time point) are large
            solver = PaddedBlockSolver if f0[0].mapped else BlockSolver
            self.solver = solver(f0[0].codes, f0[0].n_levels, f0[0].q)
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
                elif mat and a.size * v.shape[1] <= _AT_ONCE_CELLS:
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
        self._last_key, self._last_val, self._last_grad = self.memo_key(params), float(val), grad

    def gradient(self, params) -> np.ndarray:
        """Analytic gradient of the Laplace objective at the state set by ``evaluate``.

        With ``c_i = a_i' H^{-1} a_i`` (a_i: row i of Z Lambda), ``v = w3 c``,
        ``m = H^{-1} A'v`` and ``r = w (A m)``, every parameter's derivative is
        ``psi' d eta/d param`` with ``psi = -2 d1 + v - r``, plus the terms where
        Lambda itself moves (theta) or the density's extra parameters move.
        """
        self._third()
        if self.n_agq > 1:
            return agq_gradient(self)
        if self._scalar:
            return self._gradient_scalar()
        if self._zrows:
            return self._gradient_blocks()
        d = self.data
        s = self.state
        der, a_vals, u = s["der"], s["a_vals"], s["u"]
        if hasattr(self.solver, "row_solve"):  # large blocks: no (n, q, q) array
            K = self.solver.row_solve(a_vals)
        elif type(self.solver) is BlockSolver:  # one factor: no (n, q, q) array either
            K = self._row_solve_blocks(a_vals)
        else:
            K = np.einsum("nij,nj->ni", self.solver.local_inverse(), a_vals)
        c = K[:, 0] * a_vals[:, 0]  # einsum's "ni,ni->n", column by column
        for k in range(1, K.shape[1]):
            c += K[:, k] * a_vals[:, k]
        v = der.w3 * c
        m = self.solver.solve(self._Atv(a_vals, v))
        Am = self._Au(a_vals, m)
        # per-row arrays in place and let go when done with (the order of operations
        # kept): few arrays of the rows' size at once
        psi = -2.0 * der.d1
        psi += v
        del v
        psi -= der.w * Am
        g_extra = self._extra_gradient(s["eta"], s["extra"], c, Am)
        del c, Am
        g_beta = d.X.T @ psi
        g_theta = []
        # the mode equation G = Lambda'Z'd1 - u = 0 moves with (beta, theta) as
        # du = H^{-1} dG: dG/dbeta = -A'WX, dG/dtheta = (dA/dtheta)'d1 - A'W deta/dtheta;
        # its right-hand sides -A'W deta/dparam column by column, as each move is made
        want = self.mode_derivatives_wanted
        R = np.empty((self.Q, d.n_beta + d.n_theta)) if want else None
        # a structured factor's time-indicator sums take all the columns at once
        # (and one factor's small data, where one pass costs fewer calls than a pass per
        # column; with several factors, whose sums are not over runs of rows, it does not)
        small = len(d.factors) == 1 and a_vals.size * (d.n_beta + d.n_theta) <= _AT_ONCE_CELLS
        kept = None
        if want and (small or any(f.mapped for f in d.factors)):
            kept = np.empty((len(a_vals), d.n_beta + d.n_theta))
        for j in range(d.n_beta if want else 0):
            self._put_rhs(R, j, a_vals, der.w, d.X[:, j], kept)
        direct = np.zeros((self.Q, d.n_theta))
        for f, gi in zip(d.factors, self.groups):
            sl = slice(f.offset, f.offset + f.n_levels * f.q)
            Uc = gi.expand(u[sl].reshape(f.n_levels, f.q))
            mf = m[sl].reshape(f.n_levels, f.q)
            if f.mapped:
                k0 = len(g_theta)
                moves, dirs, gs = self._structure_terms(f, gi, Uc, mf, psi, der, K)
                for k, (mv, dr, g) in enumerate(zip(moves, dirs, gs)):
                    direct[sl, k0 + k] = dr.ravel()
                    if want:
                        self._put_rhs(R, d.n_beta + k0 + k, a_vals, der.w, mv, kept)
                    g_theta.append(g)
                continue
            for r, col in zip(f.theta_rows, f.theta_cols):
                zr = f.Z[:, r]
                Dr = gi.sum(der.d1 * zr)
                mv = zr * Uc[:, col]
                g = psi @ mv + mf[:, col] @ Dr
                g += 2.0 * np.sum(der.w * zr * K[:, f.local + col])
                direct[f.offset + col : sl.stop : f.q, len(g_theta)] = Dr
                if want:
                    self._put_rhs(R, d.n_beta + len(g_theta), a_vals, der.w, mv, kept)
                g_theta.append(g)
        if want:
            if kept is not None:
                kept *= der.w[:, None]
                R[:] = -self._Atv(a_vals, kept)
                del kept
            R[:, d.n_beta :] += direct
            self.keep_mode_derivatives(self.solver.solve(R))
        return np.concatenate([g_beta, np.array(g_theta), g_extra])

    def _third(self) -> None:
        """The state's ``w3`` (the derivative of the curvatures), made at the mode when
        the mode search left it out."""
        s = self.state
        der = s["der"]
        if der.w3 is None:
            d = self.data
            args = (self._trials, self._w, s["extra"], self._const, der)
            if self._eta_read_again:
                w3 = d.family.third_derivative(d.y, s["eta"], *args)
            else:  # eta's own array (let go by the state), for the family to use
                eta = s.pop("eta") if "eta" in s else s.fresh("eta")
                w3 = d.family.third_derivative(d.y, eta, *args, scratch=True)
            s["der"] = der._replace(w3=w3)

    @property
    def _eta_read_again(self) -> bool:
        """Whether the state's eta is read after the mode search: by the gradient of
        the family's own parameters, and by the quadrature."""
        return bool(self.data.n_extra or self.n_agq > 1)

    def _drop_third(self):
        """The state's derivatives without ``w3`` once the gradient has read it, where
        the family makes it apart, on large data (over ``lazy_state_rows`` rows; made
        again from ``eta`` if asked for)."""
        s = self.state
        large = len(self.data.y) > self.lazy_state_rows
        if large and getattr(self.data.family, "lazy_third", False):
            s["der"] = s["der"]._replace(w3=None)
        return s["der"]

    def _gradient_blocks(self) -> np.ndarray:
        """:meth:`gradient` for one unstructured factor of ``q >= 2`` random effects
        (``H`` block-diagonal), through ``Z`` and ``Lambda`` (``ZLambda``), with few
        arrays of the rows' size.

        ``c_i = a_i' H_j^{-1} a_i = z_i' C_j z_i`` with ``C_j = Lambda H_j^{-1}
        Lambda'``. The terms in theta need no per-row arrays: with ``S^r_j = sum_i w_i
        z_ir a_i = Lambda' (Z'WZ)_j e_r`` (the factorisation's ``Z'WZ`` at the mode),
        the derivative along the Cholesky entry ``(r, col)`` is ``P^r . u_col + m_col .
        D^r + 2 sum_j (H_j^{-1} S^r_j)_col`` (``P^r``, ``D^r`` the level sums of ``psi
        z_r`` and ``d1 z_r``) and its right-hand side of the mode equation ``-u_j,col
        S^r_j`` plus ``D^r`` at the entry ``col``.
        """
        d, s = self.data, self.state
        f = d.factors[0]
        der, rows, u = s["der"], s["rows"], s["u"]
        hinv, q, G, L = self.solver.hinv, f.q, f.n_levels, rows.L
        C = congruence(hinv, L.T)  # Lambda H_j^{-1} Lambda
        c = None
        for a in range(q):  # c = sum over pairs of C_ab z_a z_b, one pair at a time
            for b in range(a, q):
                t = self.groups[0].expand(C[:, a, b] if a == b else 2.0 * C[:, a, b])
                for r in {a, b}:
                    if not rows.ones[r]:
                        t *= f.Z[:, r]
                if a == b and not rows.ones[a]:
                    t *= f.Z[:, a]
                if c is None:
                    c = t
                else:
                    c += t
                del t
        v, c = (c.copy(), c) if d.n_extra else (c, None)  # c is read again with extras
        v *= der.w3
        der = self._drop_third()
        m = self.solver.solve(rows.sums(v))
        psi = -2.0 * der.d1
        psi += v
        del v
        Am = rows.times(m)
        g_extra = self._extra_gradient(s["eta"], s["extra"], c, Am) if d.n_extra else np.zeros(0)
        del c
        Am *= der.w
        psi -= Am
        del Am
        g_beta = d.X.T @ psi
        Uf, mf = u.reshape(G, q), m.reshape(G, q)
        D = rows.level_sums(der.d1)
        P = rows.level_sums(psi)
        del psi
        # the mode equation's right-hand sides (see gradient), in place of their solutions
        want = self.mode_derivatives_wanted
        R = np.empty((self.Q, d.n_beta + d.n_theta)) if want else None
        for j in range(d.n_beta if want else 0):
            R[:, j] = -rows.sums(der.w * d.X[:, j])
        M = self.solver.gram
        g_theta = np.empty(d.n_theta)
        for k, (r, col) in enumerate(zip(f.theta_rows, f.theta_cols)):
            S = M[:, :, r] @ L
            HS = np.einsum("gij,gj->gi", hinv, S)
            g_theta[k] = P[:, r] @ Uf[:, col] + mf[:, col] @ D[:, r] + 2.0 * HS[:, col].sum()
            if want:
                rhs = -(Uf[:, col, None] * S)
                rhs[:, col] += D[:, r]
                R[:, d.n_beta + k] = rhs.ravel()
        if want:
            for j in range(R.shape[1]):  # solved column by column, in place
                R[:, j] = self.solver.solve(R[:, j])
            self.keep_mode_derivatives(R)
        return np.concatenate([g_beta, g_theta, g_extra])

    def _ones_columns(self, f) -> tuple:
        """Whether each column of the factor's ``Z`` is all ones (an intercept): its
        products with them are left out (exact). Computed once per factor."""
        cache = self.__dict__.setdefault("_ones", {})
        if id(f) not in cache:
            cache[id(f)] = tuple(bool(np.all(f.Z[:, r] == 1.0)) for r in range(f.q))
        return cache[id(f)]

    def _put_rhs(self, R, j, a_vals, w, move, kept) -> None:
        """Column ``j`` of the mode equation's right-hand sides, ``-Lambda'Z'W move``:
        made now (one column at a time, no (n, k) arrays), or ``move`` kept as column
        ``j`` of ``kept`` for one pass over all of them."""
        if kept is None:
            R[:, j] = -self._Atv(a_vals, w * move)
        else:
            kept[:, j] = move

    def _row_solve_blocks(self, a_vals) -> np.ndarray:
        """``H_j^{-1} a_i`` for every row ``i`` (of level ``j``) of one factor's
        :class:`BlockSolver`, shape (n, q): the sums over ``j`` of
        ``einsum("nij,nj->ni", local_inverse(), a_vals)`` taken entry by entry."""
        hinv, g, q = self.solver.hinv, self.groups[0], a_vals.shape[1]
        if a_vals.size * q <= _AT_ONCE_CELLS:
            return np.einsum("nij,nj->ni", g.expand(hinv), a_vals)
        K = np.zeros_like(a_vals)
        for i in range(q):
            for j in range(q):
                t = g.expand(hinv[:, i, j])
                t *= a_vals[:, j]
                K[:, i] += t
        return K

    def _directions(self, f) -> np.ndarray:
        """``d Lambda / d p_k`` of a structured factor at the current parameters,
        shape (n_params, q, q)."""
        k = 0
        for g in self.data.factors:
            if g is f:
                break
            k += g.n_params
        p = self._cov[k : k + f.n_params]
        J = f.structure.jacobian(p)
        out = np.zeros((f.n_params, f.q, f.q))
        out[:, f.theta_rows, f.theta_cols] = J.T
        return out

    def _structure_terms(self, f, gi, Uc, mf, psi, der, K):
        """A structured factor's gradient pieces, one per parameter ``p_k``, along
        ``dL = d Lambda / d p_k`` (the Cholesky-entry terms summed with the Jacobian's
        weights, in O(n q) each): how eta moves (``z_i' dL u_j``), the direct part of
        the mode equation (``dL' Z'd1`` per level) and the derivative."""
        Z, Kf = f.Z, K[:, f.local : f.local + f.q]
        ZtD = gi.sum(der.d1[:, None] * Z)  # (levels, q)
        # sum_n w_n z_n' dL K_n = <dL, Z'WK>: one (q, q) product for every parameter
        S = (der.w[:, None] * Z).T @ Kf
        # a time-indicator Z (one 1 per row, at column t_n): z_n' dL u_n = (dL u_n)[t_n],
        # O(q) per row instead of O(q^2)
        cells = self._indicator_cells(f)
        t = None if cells is None else cells[0]
        moves, dirs, gs = [], [], []
        for dL in self._directions(f):
            if t is None:
                mv = np.einsum("nq,nq->n", Z, Uc @ dL.T)
            else:
                mv = np.einsum("nq,nq->n", dL[t], Uc)
            dr = ZtD @ dL
            g = psi @ mv + np.sum(mf * dr) + 2.0 * np.sum(dL * S)
            moves.append(mv)
            dirs.append(dr)
            gs.append(g)
        return moves, dirs, gs

    def _gradient_scalar(self) -> np.ndarray:
        """:meth:`gradient` for one factor with a scalar random effect (H diagonal).

        Per-row arrays are made in place where the order of operations allows, and let
        go when done with: besides the state, about three arrays of the rows' size at
        once. A random intercept (``Z`` a view of ones, ``a`` one number) makes no
        per-row arrays of ``a`` or ``Z``; its products with them are left out where
        they are exact (a product with 1).
        """
        d, s, g = self.data, self.state, self.groups[0]
        der, u = s["der"], s["u"]
        a_vals, Z = s["a_vals"], d.factors[0].Z
        a = a_vals[0, 0] if a_vals.strides[0] == 0 else a_vals[:, 0]
        unit = Z.strides[0] == 0 and Z[0, 0] == 1.0  # a view of ones
        zr = None if unit else Z[:, 0]
        hinv = self.solver.hinv[:, 0, 0]
        k = g.expand(hinv)
        k *= a  # H^{-1} a_i, the row's K
        v = k * a  # c, the row's a_i' H^{-1} a_i
        c = v.copy() if d.n_extra else None
        v *= der.w3
        der = self._drop_third()
        m = hinv * g.sum(a * v)
        psi = -2.0 * der.d1
        psi += v
        del v
        Am = g.expand(m)
        Am *= a
        g_extra = self._extra_gradient(s["eta"], s["extra"], c, Am) if d.n_extra else np.zeros(0)
        del c
        Am *= der.w
        psi -= Am
        del Am
        u_rows = g.expand(u)
        if unit:
            dz = g.sum(der.d1)
            g_theta = psi @ u_rows + m @ dz + 2.0 * der.w @ k
        else:
            dz = g.sum(der.d1 * zr)
            wz = der.w * zr
            g_theta = psi @ (zr * u_rows) + m @ dz + 2.0 * wz @ k
            del wz
        del k
        if not self.mode_derivatives_wanted:
            return np.concatenate([d.X.T @ psi, [g_theta], g_extra])
        # the implicit derivatives du/d(beta, theta) = H^{-1} dG/d(beta, theta) of the
        # mode equation G = Lambda'Z'd1 - u = 0 give the next evaluation's start
        wa = der.w * a
        J = np.empty((len(u), d.n_beta + 1))
        if unit:
            u_rows *= wa
        else:
            u_rows *= wa * zr
        J[:, -1] = hinv * (dz - g.sum(u_rows))
        del u_rows
        if d.X.size <= _ONE_PASS_CELLS:  # every column in one pass: per-call cost
            J[:, :-1] = g.sum(wa[:, None] * d.X) * -hinv[:, None]
        else:
            for j in range(d.n_beta):  # column by column: no (n, p) temporary
                J[:, j] = g.sum(wa * d.X[:, j]) * -hinv
        self.keep_mode_derivatives(J)
        return np.concatenate([d.X.T @ psi, [g_theta], g_extra])

    def gauss_newton_diagonal(self) -> np.ndarray:
        """Diagonal of a Gauss-Newton approximation of the Hessian in (beta, theta).

        With the modes following the parameters (``du = J dparam``, from the last
        gradient), the linear predictor moves by ``D = d eta / d param`` and the
        penalty by ``J``: ``2 D'WD + 2 J'J`` (curvatures clipped at 0). A scale for
        the optimiser, not a Hessian for inference.
        """
        d, s = self.data, self.state
        u, J = s["u"], self._predictor[2]
        w = s["der"].w
        if not getattr(d.family, "log_concave", False):  # else w >= 0 already
            w = np.maximum(w, 0.0)
        out = np.empty(d.n_beta + d.n_theta)
        # one column of D at a time: no (n, p + T) array
        for k, col in enumerate(self._eta_moves(u)):
            jk = np.asarray(J[:, k], dtype=np.float64)  # (kept in single precision?)
            col += self._Au(s["rows"] if "rows" in s else s["a_vals"], jk)
            col *= col
            out[k] = 2.0 * (w @ col) + 2.0 * (jk @ jk)
        return out

    def _eta_moves(self, u):
        """The columns of ``d eta / d (beta, theta)`` at fixed modes ``u``, one at a time
        (each a new array): the fixed-effect columns, then ``z_r u_col`` of each
        Cholesky entry, or ``Z dL u`` of each structure parameter."""
        d = self.data
        for j in range(d.n_beta):
            yield np.array(d.X[:, j])
        for f, gi in zip(d.factors, self.groups):
            Uf = u[f.offset : f.offset + f.n_levels * f.q].reshape(f.n_levels, f.q)
            if f.mapped:
                Uc = gi.expand(Uf)
                for dL in self._directions(f):
                    yield np.einsum("nq,nq->n", f.Z, Uc @ dL.T)
                continue
            for r, col in zip(f.theta_rows, f.theta_cols):
                m = gi.expand(Uf[:, col])
                m *= f.Z[:, r]
                yield m

    def _extra_gradient(self, eta, extra, c, Am):
        """Derivatives in the family's extra parameters: the family's own
        ``extra_derivs`` where it has them, elementwise central differences otherwise."""
        d = self.data
        if not d.n_extra:
            return np.zeros(0)
        exact = getattr(d.family, "extra_derivs", None)
        if exact is not None:
            dl, dd1, dw = exact(d.y, eta, self._trials, self._w, extra, self._const)
            return d.extra_gradient(-2.0 * dl + c * dw + Am * dd1)
        rows = np.zeros((len(extra), len(eta)))
        for k in range(len(extra)):
            h = 1e-5
            ep, em = _blocks.shift_block(extra, k, h), _blocks.shift_block(extra, k, -h)
            dp, dm = self._derivs(eta, ep), self._derivs(eta, em)
            dl = (dp.loglik - dm.loglik) / (2 * h)
            dw = (dp.w - dm.w) / (2 * h)
            dd1 = (dp.d1 - dm.d1) / (2 * h)
            rows[k] = -2.0 * dl + c * dw + Am * dd1
        return d.extra_gradient(rows)

    # the state at the last point evaluated; after :meth:`restore`, made again when read
    _state = None
    _pending = None  # (u, params) of a restored state not made yet

    @property
    def state(self):
        """The last evaluation's mode and per-row arrays (None after a failed one)."""
        if self._pending is not None:
            self._make_restored_state()
        return self._state

    @state.setter
    def state(self, value):
        self._pending = None
        self._state = value

    def _make_restored_state(self) -> None:
        """The state at a restored point, from its mode: the search from there takes no
        step, so the arrays are those of the evaluation that found the mode."""
        u, at = self._pending
        self._pending = None
        memo = (self._last_key, self._last_val, self._last_grad, self._predictor)
        solver, iterations = self.solver.snapshot(), self.pirls_iterations
        self.pirls(*self._unpack(at), u0=u)
        self._state["u"] = u  # the same values; the object the predictor refers to
        self.u, self.pirls_iterations = u, iterations
        self._last_key, self._last_val, self._last_grad, self._predictor = memo
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
        return self.u, (state, at), memo, self.solver.snapshot()

    def restore(self, snap) -> None:
        """Return to the point of :meth:`snapshot` without evaluating it again."""
        u, (state, at), memo, solver = snap
        self.state = state
        self.u = u
        self._last_key, self._last_val, self._last_grad, self._predictor = memo
        self.solver.restore(solver)
        if at is not None:
            self._pending = (u, at)

    def release_rows(self) -> None:
        """On large data (over ``lazy_state_rows`` rows), let the state's per-row arrays
        go: made again from the modes when read, as after :meth:`restore`; the memo and
        the modes stay."""
        if self._lean:
            self.restore(self.snapshot())

    def release_state(self) -> None:
        """Let the last evaluation's per-row arrays go (a fitted model keeps its
        objective): the next call evaluates again, from the modes kept in ``u``."""
        self.state = None
        self._last_key, self._last_grad = None, None
        self.release_predictor()

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

    # -- conditional distribution of u --------------------------------------
    def conditional_variances(self, f: int) -> np.ndarray:
        """Blocks of H^{-1} for factor ``f`` at the current mode, (n_levels, q, q)."""
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
