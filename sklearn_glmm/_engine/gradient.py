"""The analytic gradient of the Laplace objective, a mixin of
:class:`~sklearn_glmm._engine.objective.Objective` (it reads the objective's data,
groups, solver and state, as the mode search does).

With ``c_i = a_i' H^{-1} a_i`` (``a_i``: row ``i`` of ``Z Lambda``), every parameter's
derivative is ``psi' d eta / d param`` plus the terms where ``Lambda`` itself moves or
the family's own parameters move. ``gradient`` computes it for any factors, and hands
one scalar random effect to ``_gradient_scalar`` and, on large data, one factor of
several random effects to ``_gradient_blocks`` (through ``Z`` and ``Lambda``, without
``Z Lambda`` formed); each makes few arrays of the rows' size.
A gradient also leaves the modes' derivatives in the parameters (the next
evaluation's start) unless the objective is inside ``without_mode_derivatives``.
"""

from __future__ import annotations

import numpy as np

from .._config import compiled_on
from . import blocks as _blocks
from . import compiled
from . import rows as _rows
from .groups import gram_products
from .linalg import BlockSolver
from .linalg.block import congruence
from .quadrature import agq_gradient

# designs up to this many cells have their columns' level sums taken in one pass (the
# per-call cost dominates there; above it, column by column is as fast)
_ONE_PASS_CELLS = 8192


class LaplaceGradient:
    """The gradient methods of :class:`~sklearn_glmm._engine.objective.Objective`."""

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
        # a structured factor's time-indicator sums take all the columns at once
        # (and one factor's small data, where one pass costs fewer calls than a pass per
        # column; with several factors, whose sums are not over runs of rows, it does not)
        small = len(d.factors) == 1 and a_vals.size * (d.n_beta + d.n_theta) <= _rows.AT_ONCE_CELLS
        R = kept = None
        if want:
            R = np.empty((self.Q, d.n_beta + d.n_theta))
            if small or any(f.mapped for f in d.factors):
                kept = np.empty((len(a_vals), d.n_beta + d.n_theta))
            for j in range(d.n_beta):
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
        R = None
        if want:
            R = np.empty((self.Q, d.n_beta + d.n_theta))
            for j in range(d.n_beta):
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
        if a_vals.size * q <= _rows.AT_ONCE_CELLS:
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
        if compiled_on() and self._compiled_rows() is not None:
            return self._compiled_gradient(der, u, a_vals, a, zr, hinv)
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
        grad = np.concatenate([d.X.T @ psi, [g_theta], g_extra])
        if self.mode_derivatives_wanted:
            # the implicit derivatives du/d(beta, theta) = H^{-1} dG/d(beta, theta) of
            # the mode equation G = Lambda'Z'd1 - u = 0 give the next evaluation's start
            wa = der.w * a
            u_rows *= wa if unit else wa * zr
            in_theta = hinv * (dz - g.sum(u_rows))
            del u_rows
            self.keep_mode_derivatives(self._scalar_mode_derivatives(wa, hinv, in_theta))
        return grad

    def _compiled_gradient(self, der, u, a_vals, a, zr, hinv) -> np.ndarray:
        """:meth:`_gradient_scalar` with its per-row work by the compiled kernel
        (``set_config(compiled=True)``; the models of ``ModeSearch._compiled_rows``).
        The gradient in the family's own parameters is the numpy code's, from the rows'
        ``c`` and ``A m`` the kernel makes."""
        d = self.data
        one_a = a_vals.strides[0] == 0
        psi, g_theta, wa, in_theta, c, am = compiled.scalar_gradient_rows(
            der.d1,
            der.w,
            der.w3,
            np.ascontiguousarray(u, dtype=float),
            np.array([a], dtype=float) if one_a else np.ascontiguousarray(a, dtype=float),
            np.zeros(0) if zr is None else np.ascontiguousarray(zr, dtype=float),
            self._compiled[1],
            np.ascontiguousarray(hinv, dtype=float),
            self.mode_derivatives_wanted,
            bool(d.n_extra),
        )
        s = self.state
        g_extra = self._extra_gradient(s["eta"], s["extra"], c, am) if d.n_extra else np.zeros(0)
        del c, am
        grad = np.concatenate([d.X.T @ psi, [g_theta], g_extra])
        if self.mode_derivatives_wanted:
            self.keep_mode_derivatives(self._scalar_mode_derivatives(wa, hinv, in_theta))
        return grad

    def _scalar_mode_derivatives(self, wa, hinv, in_theta) -> np.ndarray:
        """The modes' derivatives of one scalar random effect: in the fixed effects,
        ``-H^{-1}`` times the levels' sums of ``w a x_j`` (``wa``: each row's ``w a``),
        then the one in theta, ``in_theta``."""
        d, g = self.data, self.groups[0]
        J = np.empty((len(hinv), d.n_beta + 1))
        J[:, -1] = in_theta
        if d.X.size <= _ONE_PASS_CELLS:  # every column in one pass: per-call cost
            J[:, :-1] = g.sum(wa[:, None] * d.X) * -hinv[:, None]
        else:
            for j in range(d.n_beta):  # column by column: no (n, p) temporary
                J[:, j] = g.sum(wa * d.X[:, j]) * -hinv
        return J

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

    def rows_reading_effects(self) -> int:
        """The rows in the likelihood (weight above 0) that read the random effects (a
        hurdle's zeros do not)."""
        d = self.data
        use = d.weights > 0
        eta_rows = getattr(d.family, "rows_reading_eta", None)
        if eta_rows is not None:
            use &= eta_rows(d.y)
        return int(np.count_nonzero(use))

    def level_effects(self, k: int, params: np.ndarray, shifts: np.ndarray):
        """Per level of factor ``k``: the mean of its rows of ``Z`` (G, q) with weight
        above 0, and the sums of the rows' curvatures ``w`` and scores ``d1`` (G,) at the
        fixed effects (and family parameters) of ``params`` with each level's linear
        predictor moved by its ``shifts`` (G,): a Newton step of each level's own effect
        is ``d1 / w``."""
        d = self.data
        f, gi = d.factors[k], self.groups[k]
        beta, extra = params[: d.n_beta], d.extra_values(params[d.n_beta + d.n_theta :])
        eta = d.X @ beta + d.offset + gi.expand(np.asarray(shifts, dtype=float))
        der = self._derivs(eta, extra, third=False)
        used = _used(d)
        counts = gi.sum(used)
        t = gi.sum(np.asarray(f.Z, dtype=float) * used[:, None]) / np.maximum(counts, 1.0)[:, None]
        return t, gi.sum(der.w), gi.sum(der.d1)

    def level_gram_products(self, k: int) -> np.ndarray:
        """``sum_j (G_j G_j) kron (G_j G_j)`` over the levels of factor ``k``, shape (q^2,
        q^2): ``G_j`` the Gram matrix ``Z_j' Z_j`` of level ``j``'s rows of Z (with weight
        above 0), each at unit size (its largest entry). Its null space holds ``vec(D)``
        of every change ``D`` of the factor's covariance that no level's compression
        ``Z_j S Z_j'`` sees (``G_j D G_j = 0``: ``equal_likelihood.unidentified_directions``).
        Sums over levels: a partitioned objective adds its partitions'."""
        d = self.data
        f, gi, q = d.factors[k], self.groups[k], d.factors[k].q
        used = _used(d)
        Z = np.asarray(f.Z, dtype=float)
        G = np.empty((f.n_levels, q, q))
        for a in range(q):
            for b in range(a + 1):
                G[:, a, b] = G[:, b, a] = gi.sum(Z[:, a] * Z[:, b] * used)
        return gram_products(G)

    def level_information(self, k: int) -> float | None:
        """The largest information one level holds about the random effects whose
        standard deviation is the parameter ``k`` (a Cholesky diagonal, or a structure's
        SD), at the last point evaluated: ``max_j sum_{i in j} w_i sum_r z_ir^2`` over
        those effects' columns ``r`` of ``Z``, ``w`` the rows' curvatures. ``1 / sqrt``
        of it is the smallest standard deviation the data resolve in one level. None for
        a parameter that is not an SD, or where the state holds no curvatures."""
        d = self.data
        cols = d.sd_columns(k)
        der = self.state.get("der") if self.state is not None else None
        w = getattr(der, "w", None)
        if not len(cols) or w is None or np.ndim(w) != 1:
            return None
        fi = d.locate(k)[0]
        f, gi = d.factors[fi], self.groups[fi]
        if not gi.n_levels:
            return None
        w = np.maximum(w, 0.0)
        info = sum(gi.sum(w * f.Z[:, r] ** 2) for r in cols)
        return float(np.max(info))

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

    def extra_curvature(self, coefs: np.ndarray) -> np.ndarray:
        """Curvature of -2 log p(y | modes) in each of the family's own coefficients at
        the current modes (central differences of the log-density): a scale for the
        optimiser, like :meth:`gauss_newton_diagonal`."""
        d, s = self.data, self.state
        eta = s["eta"]

        def value(c):
            return -2.0 * self._derivs(eta, d.extra_values(c), third=False).loglik.sum()

        mid, out, h = value(coefs), np.empty(len(coefs)), 1e-3
        for k in range(len(coefs)):
            step = np.zeros(len(coefs))
            step[k] = h
            out[k] = abs(value(coefs + step) + value(coefs - step) - 2.0 * mid) / (h * h)
        return out

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


def _used(data) -> np.ndarray:
    """1 for the rows with weight above 0 (those that carry the likelihood), else 0."""
    return (np.asarray(data.weights) > 0.0).astype(float)
