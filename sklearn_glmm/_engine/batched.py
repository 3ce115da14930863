"""Batched refits: many outcome vectors on one design, evaluated in one vectorised pass.

Bootstrap replicates share the design ``X``, the grouping factor and ``Z``; only the
outcome differs. Each replicate keeps its own optimiser (the single fit's
:func:`~sklearn_glmm._engine.optimize.fit_objective`: the same L-BFGS-B stages, zero
probes and stopping rules), running as a task of its own (a greenlet, or a thread
without the ``greenlet`` package: :mod:`~sklearn_glmm._engine.lockstep`); its objective
is a :class:`~sklearn_glmm._engine.batch_member.BatchMember`, whose evaluations are not
computed one by one but handed to a :class:`~sklearn_glmm._engine.lockstep.Lockstep`
scheduler. When every replicate
still running waits for an evaluation, the scheduler computes all of them at once with
:class:`BatchedLaplace` — arrays of shape (replicates, rows) and (replicates, levels,
q) — and hands each its value, gradient and conditional modes.

Order of calls for one batched evaluation (:meth:`BatchedLaplace.evaluate`):

1. ``Lambda`` and ``Z Lambda`` of every replicate, its fixed part ``X beta + offset``;
2. penalised IRLS for the conditional modes of every replicate from its own start
   (its last modes moved by the first-order predictor, unless that moves a random
   effect by more than ``batch_member._PREDICTOR_REACH`` prior SDs), with the single objective's
   step halving level by level and its stopping rule per replicate;
3. the Laplace value and its analytic gradient (the single objective's formulas),
   the derivative of the modes in the parameters (the next start) and, at a
   replicate's first point, the Gauss-Newton diagonal (the optimiser's scaling).

A replicate that reads the closed-form Hessian at its last point (the curvature check
at the end of a bootstrap refit, ``converge.check_curvature``; the checks at the optimum
of a power study's fit) asks the batch for it, which computes those of the replicates
asking in one pass too (:meth:`BatchedLaplace.hessians`: the mode search from the
replicate's modes, which takes no step or a last one, then
:func:`~sklearn_glmm._engine.batched_hessian.laplace_hessians`).

The arithmetic of one replicate does not depend on the others in its batch, and a
replicate whose batched evaluation does not succeed (no modes found, a non-finite
value) is evaluated by the single objective instead, from its last modes, with its
fallbacks. The mode is unique (a log-concave family), so the start changes the cost
of an evaluation, never its value. Batched: one grouping factor with an unstructured (or diagonal)
covariance, the Laplace approximation, a log-concave family without parameters of
its own (Poisson, binomial) or whose parameters batch (``Family.batches_extras``:
NB2's log theta, each replicate's own, passed to the family as a value per row and
differentiated by its exact ``extra_derivs``); other models refit one by one.
"""

from __future__ import annotations

import numpy as np

from .._config import compiled_on
from . import batched_hessian, compiled
from .batched_arrays import (
    _concat_const,
    _const_take,
    _form,
    _modes_found_rows,
    _put_inverses,
    _rows_times,
    _spd_inverse,
    _take,
)
from .families import Binomial, Poisson
from .families.base import _lgamma_ratio
from .families.negbin import NegativeBinomial2, digamma_part
from .groups import GroupIndex
from .links import LogitLink, LogLink
from .model_data import ModelData, _fixed_terms
from .modes import _NEAR_MODE, _per_row


def can_batch(data: ModelData, n_agq: int) -> bool:
    """Whether refits of the model described by ``data`` can be batched."""
    fam = data.family
    return bool(
        n_agq == 1
        and len(data.factors) == 1
        and not data.factors[0].mapped
        and getattr(fam, "log_concave", False)
        and (data.n_extra == 0 or getattr(fam, "batches_extras", False))
        and data.extra_designs is None
    )


class BatchedLaplace:
    """Laplace objective of many outcome vectors ``Y`` (R, n) on one model's design.

    ``evaluate`` takes a subset of the replicates, each with its own parameters and
    starting modes.
    """

    def __init__(self, data: ModelData, Y: np.ndarray, pirls_max_iter: int = 60):
        self.data = data
        self.Y = np.asarray(Y, dtype=float)
        f = data.factors[0]
        self.f, self.q, self.G = f, f.q, f.n_levels
        self.codes = f.codes
        self._rows = f.group_index
        self.pirls_max_iter = pirls_max_iter
        w, trials, _ = _fixed_terms(data)
        self._w, self._trials = w, trials
        # the family's parameter-free terms of every replicate's outcome (its single
        # objective's) and their form: a family's depends on the outcome (counts above
        # 1,000 take a cancellation-free one), and replicates of one form are
        # evaluated together, each in its own
        self._const = [data.family.constant(y, trials) for y in self.Y]
        self._forms = np.array([_form(c) for c in self._const])
        self._groups = {}
        self.n_batches = 0

    def _expand(self, v: np.ndarray) -> np.ndarray:
        """Per-level values (R, G) to each row's level value (R, n)."""
        g = self._rows
        if not g.contiguous:
            return v[:, g.codes]
        return np.repeat(v if g.in_order else v[:, g.run_codes], g.lengths, axis=1)

    def _index(self, R: int) -> GroupIndex:
        """Level sums over R copies of the rows, one after another (replicate-major)."""
        if R not in self._groups:
            codes = np.add.outer(np.arange(R) * self.G, self.codes).ravel()
            self._groups[R] = GroupIndex(codes, R * self.G)
        return self._groups[R]

    def member_data(self, r: int) -> ModelData:
        """The model data of replicate ``r`` (its outcome, and the family's terms of it
        made here already)."""
        return self.data.with_outcome(self.Y[r], self._const[r])

    def _by_form(self, idx):
        """The positions in ``idx`` of each form of the family's terms, or None where
        the replicates ``idx`` share one."""
        forms = self._forms[np.asarray(idx, dtype=np.intp)]
        if len(forms) == 0 or np.all(forms == forms[0]):
            return None
        return [np.flatnonzero(forms == f) for f in np.unique(forms)]

    def _tiled(self, v, R):
        return None if v is None else np.tile(v, R)

    def glm_starts(self, max_iter: int = 50):
        """:func:`~sklearn_glmm._engine.start.glm_start` of every replicate (the
        fixed effects of the model without random effects, on every row), vectorised:
        the same Newton steps with step halving and stopping rule, replicate by
        replicate. Returns ``(beta, F)``: (R, n_beta) clipped starts and (R,) ``-2 log
        L`` at the GLM's optimum (NaN where Newton did not converge, or was clipped)."""
        parts = self._by_form(np.arange(self.Y.shape[0]))
        if parts is not None:  # each form's replicates on their own
            beta, F = np.empty((self.Y.shape[0], self.data.n_beta)), np.empty(self.Y.shape[0])
            for sel in parts:
                part = BatchedLaplace(self.data, self.Y[sel], self.pirls_max_iter)
                beta[sel], F[sel] = part.glm_starts(max_iter)
            return beta, F
        beta, shift, has_intercept = self._glm_first_betas()
        beta_start = beta.copy()
        ll_old, done = self._glm_newton(beta, max_iter)
        bad = ~np.all(np.isfinite(beta), axis=1)
        beta[bad], done[bad] = beta_start[bad], False
        X, p, R = self.data.X, self.data.n_beta, self.Y.shape[0]
        lim = 15.0 / np.maximum(np.sqrt(np.mean(X**2, axis=0)), 1e-12)
        lo, hi = np.broadcast_to(-lim, (R, p)).copy(), np.broadcast_to(lim, (R, p)).copy()
        if has_intercept:
            lo[:, 0], hi[:, 0] = shift - lim[0], shift + lim[0]
        if has_intercept and not self.data.family.has_trials:
            hi[:, 0] = np.maximum(hi[:, 0], beta_start[:, 0] + lim[0])
        clipped = np.clip(beta, lo, hi)
        exact = done & np.all(clipped == beta, axis=1) & np.isfinite(ll_old)
        return clipped, np.where(exact, -2.0 * ll_old, np.nan)

    def _glm_first_betas(self):
        """``glm_start``'s first point of every replicate: the intercept at the link of
        the outcome's weighted mean (less the mean offset), the other coefficients 0;
        ``(beta, shift, has_intercept)``, ``shift`` the intercept's window centre."""
        d = self.data
        X, fam = d.X, d.family
        R, p = self.Y.shape[0], d.n_beta
        beta = np.zeros((R, p))
        has_intercept = p > 0 and np.all(X[:, 0] == X[0, 0]) and X[0, 0] != 0
        wsum = np.sum(d.weights)
        shift = 0.0  # (glm_start's window for the intercept)
        if has_intercept and wsum > 0:
            ybar = np.sum(self.Y * d.weights, axis=1) / wsum
            off = np.sum(d.weights * d.offset) / wsum
            if not fam.has_trials:
                eta0 = fam.link.link(np.maximum(ybar, 1e-8))
            else:
                tbar = np.sum(d.weights * d.trials) / wsum
                pr = np.clip(ybar / tbar, 1e-8, 1 - 1e-8) if tbar > 0 else np.full(R, 0.5)
                eta0 = fam.link.link(pr)
            beta[:, 0] = (eta0 - off) / X[0, 0]
            shift = -off / X[0, 0]
        return beta, shift, has_intercept

    def _glm_derivs(self):
        """``derivs(rows, b)``: the GLM's log-likelihood (rows,), ``d1`` and ``w`` (rows,
        n) of replicates ``rows`` at coefficients ``b``."""
        d = self.data
        X, fam = d.X, d.family
        R, n = self.Y.shape
        extra = d.extra_values(d.default_extra())
        const_all = _concat_const(self._const)

        def derivs(rows, b):
            m = len(rows)
            eta = _rows_times(b, X) + d.offset
            const = _const_take(const_all, rows, R)
            der = fam.derivs(
                self.Y[rows].ravel(),
                eta.ravel(),
                self._tiled(self._trials, m),
                self._tiled(self._w, m),
                extra,
                const,
            )
            return der.loglik.reshape(m, n).sum(axis=1), der.d1.reshape(m, n), der.w.reshape(m, n)

        return derivs

    def _glm_newton(self, beta, max_iter):
        """``glm_start``'s Newton steps with step halving from ``beta`` (R, p), updated
        in place, replicate by replicate; ``(ll, done)``: each one's last log-likelihood
        and whether its steps met the stopping rule."""
        X, p = self.data.X, self.data.n_beta
        R = self.Y.shape[0]
        derivs = self._glm_derivs()
        ll_old = np.full(R, -np.inf)
        done = np.zeros(R, dtype=bool)
        live = np.ones(R, dtype=bool)  # still iterating
        ll_b, d1, w = derivs(np.arange(R), beta)
        for _ in range(max_iter if p else 0):
            act = np.flatnonzero(live)
            if not len(act):
                break
            # row by row sums (no BLAS): a replicate's numbers do not depend on its batch
            aw = np.abs(w[act])
            H = np.empty((len(act), p, p))
            for i in range(p):
                for j in range(i, p):
                    H[:, i, j] = H[:, j, i] = np.sum(aw * (X[:, i] * X[:, j]), axis=1)
            H += 1e-8 * np.eye(p)
            g = np.stack([np.sum(d1[act] * X[:, j], axis=1) for j in range(p)], axis=1)
            step = np.full((len(act), p), np.nan)
            for k in range(len(act)):  # a singular system stops that replicate, as glm_start
                try:
                    step[k] = np.linalg.solve(H[k], g[k])
                except np.linalg.LinAlgError:
                    live[act[k]] = False
            ok = live[act]
            act, step = act[ok], step[ok]
            if not len(act):
                break
            t = np.ones(len(act))
            cand = beta[act] + step
            ll, d1a, wa = derivs(act, cand)
            for _h in range(29):  # 30 tries, the last kept (as glm_start)
                worse = ~(np.isfinite(ll) & (ll >= ll_old[act] - 1e-10))
                if not worse.any():
                    break
                t[worse] *= 0.5
                rows = act[worse]
                cand[worse] = beta[rows] + t[worse, None] * step[worse]
                ll[worse], d1a[worse], wa[worse] = derivs(rows, cand[worse])
            beta[act], d1[act], w[act] = cand, d1a, wa
            fin = np.abs(ll - ll_old[act]) < 1e-10 * (1 + np.abs(ll))
            ll_old[act] = ll
            done[act[fin]] = True
            live[act[fin]] = False
        if not p:
            ll_old, done[:] = ll_b, True
        return ll_old, done

    def evaluate(self, idx, params, U0, with_scale: bool = False):
        """Value, gradient, modes and mode derivatives of replicates ``idx``.

        ``params`` (R, n_params), ``U0`` (R, G * q) starting modes. Returns
        ``(ok, value, grad, U, J)``: ``ok`` (R,) whether the replicate's modes were
        found and its value and gradient are finite (the others' entries are
        meaningless), ``U`` (R, G * q) and ``J`` (R, G * q, n_beta + n_theta) laid out
        as the single objective's ``u`` and predictor. With ``with_scale``, a sixth
        item: the diagonal of the Gauss-Newton Hessian of every replicate (R, n_params),
        ``Objective.gauss_newton_diagonal``'s (the optimiser's scale at its start).

        Arrays are kept per random-effect column (lists of (R, n) or (R, G) arrays):
        ``q`` is small, and elementwise passes over them beat products over tiny axes.
        Every sum runs along one replicate's own rows, so that its value does not
        depend on the other replicates in the batch.
        """
        parts = self._by_form(idx)
        if parts is not None:  # each form's replicates on their own
            return self._merged(self.evaluate, parts, idx, params, U0, with_scale)
        self.n_batches += 1
        if compiled_on():
            rows = self.compiled_for(idx)
            if rows is not None:
                return self._compiled_evaluate(rows, idx, params, U0, with_scale)
        d = self.data
        A, AA, eta_fix, inputs, found = self._search(idx, params, U0)
        U, (LL, D1, W, W3), Hinv, logdet, ok = found
        R, G, q = len(idx), self.G, self.q
        value = -2.0 * LL.sum(axis=1) + logdet
        for u in U:
            value += np.sum(u * u, axis=1)
        ok &= np.isfinite(value)
        grad, J, Am_c = self._gradient(A, AA, U, (D1, W, W3), Hinv)
        if d.n_extra:
            grad = np.concatenate([grad, self._extra_gradient(inputs, eta_fix, A, U, Am_c)], 1)
        ok &= np.all(np.isfinite(grad), axis=1)
        out = (ok, value, grad, np.stack(U, axis=2).reshape(R, G * q), J.reshape(R, G * q, -1))
        return out + (self._gauss_newton(A, U, W, J),) if with_scale else out

    @staticmethod
    def _merged(method, parts, idx, params, U0, *args):
        """``method`` (:meth:`evaluate`, :meth:`hessians`) of each of ``parts`` (positions
        in ``idx`` of one form of the family's terms) on its own, the outputs put
        together in ``idx``'s order."""
        idx, params, U0 = np.asarray(idx, dtype=np.intp), np.asarray(params), np.asarray(U0)
        outs = [method(idx[sel], params[sel], U0[sel], *args) for sel in parts]
        merged = []
        for k, first in enumerate(outs[0]):
            full = np.empty((len(idx),) + first.shape[1:], dtype=first.dtype)
            for sel, out in zip(parts, outs):
                full[sel] = out[k]
            merged.append(full)
        return tuple(merged)

    def _search(self, idx, params, U0):
        """The mode search of replicates ``idx`` at ``params`` from ``U0`` (one form of
        the family's terms): ``(A, AA, eta_fix, inputs, found)``, the rows of ``Z
        Lambda`` and their products, ``X beta + offset``, the family's inputs
        (:meth:`_row_inputs`) and :meth:`_modes`' result."""
        d, q, G = self.data, self.q, self.G
        R, n = len(idx), len(d.y)
        A, eta_fix = self._linear_parts(params)
        inputs = self._row_inputs(idx, params)
        fam, expand = d.family, self._expand

        def at(rows, U):
            """Derivatives and per-level penalised log-densities of replicates ``rows``
            (indices into the batch, None: all) at modes ``U`` (q arrays (rows, G))."""
            m = R if rows is None else len(rows)
            eta = _take(eta_fix, rows).copy()
            for k in range(q):
                eta += _take(A[k], rows) * expand(U[k])
            der = fam.derivs(*inputs(rows, eta.ravel()))
            parts = [x.reshape(m, n) for x in (der.loglik, der.d1, der.w, der.w3)]
            obj = self._index(m).sum(der.loglik).reshape(m, G) - 0.5 * sum(u * u for u in U)
            return parts, obj

        pairs = [(a, b) for a in range(q) for b in range(a, q)]
        AA = {(a, b): A[a] * A[b] for a, b in pairs}
        U = [np.array(u) for u in np.asarray(U0, dtype=float).reshape(R, G, q).transpose(2, 0, 1)]
        return A, AA, eta_fix, inputs, self._modes(at, A, AA, U)

    def hessians(self, idx, params, U0):
        """Closed-form Laplace Hessians in ``(beta, theta)`` of replicates ``idx`` at
        ``params`` (R, n_params), their modes searched from ``U0`` (R, G * q): a
        replicate's modes at ``params``, where the search takes no step or a last one
        (the single objective's state made again from its modes). Returns ``(ok, H,
        top)``: (R,) whether the modes were found and the Hessian is finite, (R, P, P)
        the Hessians (:func:`~sklearn_glmm._engine.batched_hessian.laplace_hessians`)
        and (R,) the largest curvature at the modes (``Objective.max_curvature``).
        For a family that gives its fourth derivative in ``eta``; with one parameter of
        its own (NB2's ``log theta``), its row and column too (P = n_params), where the
        family gives its second derivatives in it (not on its bound: there ``ok`` is
        False)."""
        parts = self._by_form(idx)
        if parts is not None:  # each form's replicates on their own
            return self._merged(self.hessians, parts, idx, params, U0)
        idx, params, U0 = np.asarray(idx, dtype=np.intp), np.asarray(params), np.asarray(U0)
        d, q, n = self.data, self.q, len(self.data.y)
        if not batched_hessian.covers_family(d):
            raise ValueError("the batch's Hessians hold at most one family parameter")
        step = batched_hessian.replicates_per_pass(n, d.n_beta + d.n_theta, q)
        if len(idx) > step:
            chunks = [slice(lo, lo + step) for lo in range(0, len(idx), step)]
            outs = [self.hessians(idx[c], params[c], U0[c]) for c in chunks]
            return tuple(np.concatenate([o[k] for o in outs]) for k in range(3))
        A, _AA, eta_fix, inputs, found = self._search(idx, params, U0)
        U, (_LL, D1, W, W3), Hinv, _logdet, ok = found
        R, G = len(idx), self.G
        eta = eta_fix.copy()
        for k in range(q):
            eta += A[k] * self._expand(U[k])
        y, eta_flat, trials, w, extra, _ = inputs(None, eta.ravel())
        W4 = d.family.fourth_derivative(y, eta_flat, trials, w, extra).reshape(R, n)
        own = None
        if d.n_extra:  # the family's derivatives in its parameter, replicate by replicate
            own, done = self._extra_second(idx, params[:, -1], eta)
            ok &= done
        Hi = np.empty((R, G, q, q))
        for i in range(q):
            for j in range(q):
                Hi[:, :, i, j] = Hinv[min(i, j)][max(i, j)]
        a = np.empty((R, q, n))
        for k in range(q):
            a[:, k] = A[k]
        with np.errstate(all="ignore"):
            H = batched_hessian.laplace_hessians(
                *self._rows_last_design(),
                self._rows.sum_last,
                self._rows.expand_last,
                a,
                np.stack(U, axis=2),
                Hi,
                D1,
                W,
                W3,
                W4,
                own,
            )
        ok &= np.all(np.isfinite(H), axis=(1, 2))
        return ok, H, W.max(axis=1)

    def _extra_second(self, idx, own, eta):
        """The family's first and second derivatives in its one own parameter of the
        replicates ``idx`` at their values ``own`` (R,) and linear predictors ``eta`` (R,
        n), as the single objective's :func:`~sklearn_glmm._engine.laplace_hessian.
        extra_column` reads them (one value for all of a replicate's rows): ``(d_l,
        w_l, loglik_ll, d_ll, w_ll, w3_l)``, each (R, n), and (R,) whether the family
        gives them (not on the parameter's bound)."""
        fam, R = self.data.family, len(idx)
        out = np.zeros((6, R, eta.shape[1]))
        done = np.zeros(R, dtype=bool)
        for r, i in enumerate(idx):
            args = (self.Y[i], eta[r], self._trials, self._w, (float(own[r]),), self._const[i])
            both = fam.extra_second_derivs(*args, with_first=True)
            if both is None:
                continue
            (_, d_l, w_l), second = both
            out[:, r] = (d_l, w_l) + tuple(second)
            done[r] = True
        return tuple(out), done

    _layout = None

    def _rows_last_design(self) -> tuple:
        """:func:`~sklearn_glmm._engine.batched_hessian.rows_last_design` (made once)."""
        if self._layout is None:
            self._layout = batched_hessian.rows_last_design(self.data.X, self.f)
        return self._layout

    def _row_inputs(self, idx, params):
        """``inputs(rows, eta)``: the family's ``derivs`` arguments for replicates
        ``rows`` (indices into the batch ``idx``, None: all) at linear predictors ``eta``
        (their rows one replicate after another). The outcome, trials, weights, the
        family's own parameters (each replicate's value on each of its rows) and its
        parameter-free terms are made once per set of replicates: the same arrays on
        every call, as a family remembers its costliest terms by them (NB2's
        log-gamma ratio, for one theta per replicate throughout an evaluation)."""
        d = self.data
        R, n = len(idx), len(d.y)
        Y = self.Y[idx]
        const_all = _concat_const([self._const[i] for i in idx])
        own = np.asarray(params, dtype=float)[:, d.n_beta + d.n_theta :]
        made = [None]  # the last set's (rows, arrays): rows held, so never another's id

        def inputs(rows, eta):
            if made[0] is None or made[0][0] is not rows:
                m = R if rows is None else len(rows)
                extra = tuple(np.repeat(_take(own[:, k], rows), n) for k in range(own.shape[1]))
                made[0] = (
                    rows,
                    _take(Y, rows).ravel(),
                    self._tiled(self._trials, m),
                    self._tiled(self._w, m),
                    extra,
                    _const_take(const_all, rows, R),
                )
            _, y, trials, w, extra, const = made[0]
            return y, eta, trials, w, extra, const

        return inputs

    def _extra_gradient(self, inputs, eta_fix, A, U, Am_c):
        """The gradient in the family's own parameters of every replicate (R, E): the
        single objective's (``LaplaceGradient._extra_gradient``), ``-2 dl + c dw + (A m)
        dd1`` summed over a replicate's rows, with ``c`` and ``A m`` (``Am_c``) those of
        :meth:`_gradient`, the family's exact derivatives at the modes."""
        R, n = eta_fix.shape
        eta = eta_fix.copy()
        for k in range(self.q):
            eta += A[k] * self._expand(U[k])
        Am, c = Am_c
        dl, dd1, dw = self.data.family.extra_derivs(*inputs(None, eta.ravel()))
        out = np.empty((R, len(dl)))
        for k in range(len(dl)):
            rows = -2.0 * dl[k].reshape(R, n) + c * dw[k].reshape(R, n) + Am * dd1[k].reshape(R, n)
            out[:, k] = np.sum(rows, axis=1)
        return out

    _compiled = False

    def compiled_for(self, idx):
        """The compiled kernel's inputs (:meth:`_compiled_rows`) where it covers the
        replicates ``idx``, else None: their counts below the large-count form (a
        family's other form of its log-density, which the kernel does not have)."""
        rows = self._compiled_rows()
        if rows is None or self._large[np.asarray(idx, dtype=np.intp)].any():
            return None
        return rows

    def _compiled_rows(self):
        """The compiled kernel's family code and fixed per-row inputs (made once), or
        None where it does not apply: it covers one or two random effects per level,
        the Poisson family and NB2 with the log link and the binomial family with the
        logit link. (Which replicates it covers: :meth:`compiled_for`.)"""
        if self._compiled is False:
            self._compiled = None
            d, n = self.data, len(self.data.y)
            fam = d.family
            self._large = np.zeros(len(self._const), dtype=bool)
            if type(fam) in (Poisson, NegativeBinomial2) and isinstance(fam.link, LogLink):
                # counts in the large-count form (mu - y without rounding)
                self._large = np.array([c[2] is not None for c in self._const])
                nb2 = type(fam) is NegativeBinomial2
                family = compiled.NEGBIN2_LOG if nb2 else compiled.POISSON_LOG
                const = np.stack([c[0] for c in self._const])
            elif type(fam) is Binomial and isinstance(fam.link, LogitLink):
                family = compiled.BINOMIAL_LOGIT
                const = np.stack([np.broadcast_to(c, (n,)) for c in self._const])
            else:
                return None
            if self.q > 2:
                return None
            f = self.f
            self._compiled = (
                family,
                np.ascontiguousarray(d.X, dtype=float),
                _per_row(d.offset, n),
                np.ascontiguousarray(f.Z, dtype=float),
                np.ascontiguousarray(f.codes, dtype=np.intp),
                np.ascontiguousarray(f.theta_rows, dtype=np.intp),
                np.ascontiguousarray(f.theta_cols, dtype=np.intp),
                _per_row(1.0 if self._trials is None else self._trials, n),
                _per_row(1.0 if self._w is None else self._w, n),
                np.ascontiguousarray(const, dtype=float),
            )
        return self._compiled

    def _compiled_evaluate(self, rows, idx, params, U0, with_scale):
        """:meth:`evaluate` by the compiled kernel (``set_config(compiled=True)``): the
        same steps and formulas, replicate by replicate in loops over the rows."""
        family, X, offset, Z, codes, t_rows, t_cols, trials, w, const = rows
        idx = np.asarray(idx, dtype=np.intp)
        params = np.asarray(params, dtype=float)
        R, n = len(idx), len(self.data.y)
        thetas, const_theta, digammas = np.zeros(R), np.zeros((R, 0)), np.zeros((R, 0))
        if family == compiled.NEGBIN2_LOG:
            # theta's terms of each replicate, as NegativeBinomial2.derivs and
            # extra_derivs make them (one theta per replicate: tabled by count and run);
            # theta on its upper bound is infinite: the Poisson limit's rows
            lt = params[:, -1]
            limit = lt >= self.data.extra_bounds[0][1]
            thetas = np.where(limit, np.inf, np.exp(np.where(limit, 0.0, lt)))
            const_theta, digammas = np.zeros((R, n)), np.zeros((R, n))
            if not limit.all():
                y = self.Y[idx[~limit]].ravel()
                theta_rows = np.repeat(thetas[~limit], n)
                const_theta[~limit] = _lgamma_ratio(y, theta_rows).reshape(-1, n)
                digammas[~limit] = digamma_part(y, theta_rows).reshape(-1, n)
        ok, value, grad, U, J, gn = compiled.batched_laplace(
            family,
            X,
            offset,
            Z,
            codes,
            self.G,
            t_rows,
            t_cols,
            trials,
            w,
            np.ascontiguousarray(self.Y[idx]),
            np.ascontiguousarray(const[idx]),
            np.ascontiguousarray(params, dtype=float),
            np.ascontiguousarray(U0, dtype=float),
            self.pirls_max_iter,
            _NEAR_MODE,
            bool(with_scale),
            thetas,
            np.ascontiguousarray(const_theta),
            np.ascontiguousarray(digammas),
        )
        out = (ok, value, grad, U, J)
        return out + (gn,) if with_scale else out

    def _linear_parts(self, params):
        """The rows of ``Z Lambda`` (one (R, n) array per random-effect column) and
        ``X beta + offset`` (R, n) of every replicate's parameters (R, n_params)."""
        d, f, q = self.data, self.f, self.q
        p, T = d.n_beta, d.n_theta
        beta, theta = params[:, :p], params[:, p : p + T]
        lam = np.zeros((len(params), q, q))
        lam[:, f.theta_rows, f.theta_cols] = theta
        A = [sum(f.Z[:, k] * lam[:, k, col, None] for k in range(col, q)) for col in range(q)]
        return A, _rows_times(beta, d.X) + d.offset

    def conditional_etas(self, params):
        """Linear predictors of every replicate at its conditional modes, all at the
        same parameters ``params``: ``(ok, eta)``, (R,) whether the modes were found
        and (R, n). The modes are unique (a log-concave family): the single
        objective's, whatever the start."""
        R = self.Y.shape[0]
        P = np.tile(np.asarray(params, dtype=float), (R, 1))
        ok, _value, _grad, U, _J = self.evaluate(np.arange(R), P, np.zeros((R, self.G * self.q)))
        A, eta = self._linear_parts(P)
        U = U.reshape(R, self.G, self.q)
        for k in range(self.q):
            eta += A[k] * self._expand(U[:, :, k])
        return ok, eta

    def _modes(self, at, A, AA, U):
        """Penalised IRLS for the modes of every replicate (``Objective.pirls``): each
        from its own start ``U`` (q arrays (R, G)), with the single objective's Newton
        steps, step halving level by level and stopping rule, replicate by replicate.

        Returns ``(U, (loglik, d1, w, w3), Hinv, logdet, ok)`` at the modes, ``ok`` (R,)
        whether each replicate's were found.
        """
        q, G = self.q, self.G
        R = U[0].shape[0]
        every = np.arange(R)
        (LL, D1, W, W3), obj = at(None, U)
        Hinv = [[np.empty((R, G)) for _ in range(q)] for _ in range(q)]
        logdet = np.full(R, np.nan)
        done = np.zeros(R, dtype=bool)
        failed = np.zeros(R, dtype=bool)
        act = every
        # each replicate's own iterations: the arrays shrink to the replicates still
        # searching, so that one slow replicate costs its own work only
        for _it in range(self.pirls_max_iter):
            m = len(act)
            gs = self._index(m)
            sub = None if m == R else act  # no copies while every replicate searches

            def lsum(v, gs=gs, m=m):
                return gs.sum(v.ravel()).reshape(m, G)

            d1, wr, Ua = _take(D1, sub), _take(W, sub), [_take(u, sub) for u in U]
            grad = [lsum(_take(A[k], sub) * d1) - Ua[k] for k in range(q)]
            Hi, ld, pd = self._level_inverses(wr, AA, sub, m)
            step = [sum(Hi[i][j] * grad[j] for j in range(q)) for i in range(q)]
            dec = sum(grad[i] * step[i] for i in range(q))
            bad = ~pd | ~np.all(np.isfinite(dec), axis=1)
            found = ~bad & _modes_found_rows(dec, obj[act], step)
            failed[act[bad]] = True
            done[act[found]] = True
            _put_inverses(Hinv, logdet, act[found], Hi, ld, found)
            last = found & (dec.max(axis=1) > 1e-20)
            if last.any():  # within the log-density's rounding: ModeSearch._last_step
                steps = [st[last] for st in step]
                moved = self._last_step(at, act[last], steps, dec[last], U, (LL, D1, W, W3), obj)
                if len(moved):  # the factorisation at the modes kept, as the gradient reads it
                    Hm, ldm, pdm = self._level_inverses(W[moved], AA, moved, len(moved))
                    _put_inverses(Hinv, logdet, moved, Hm, ldm, slice(None))
                    failed[moved[~pdm]] = True
            keep = ~(bad | found)
            if not keep.any():
                break
            if not keep.all():
                act = act[keep]
                step = [st[keep] for st in step]
                dec, Ua = dec[keep], [u[keep] for u in Ua]
            sub = None if len(act) == R else act
            obj_a = _take(obj, sub)
            # step halving level by level, as the single objective's
            near = dec < _NEAR_MODE
            floor = obj_a - 1e-12 * (1.0 + np.abs(obj_a))
            t = np.ones((len(act), G))
            for _half in range(40):
                U_try = [Ua[k] + t * step[k] for k in range(q)]
                parts, obj_try = at(sub, U_try)
                worse = ~(obj_try >= floor) & ~near & (t > 0)
                if not worse.any():
                    break
                t[worse] *= 0.5
            else:
                t[worse] = 0.0
                U_try = [Ua[k] + t * step[k] for k in range(q)]
                parts, obj_try = at(sub, U_try)
            if sub is None:
                U, (LL, D1, W, W3), obj = U_try, parts, obj_try
                continue
            for k in range(q):
                U[k][act] = U_try[k]
            for full, new in zip((LL, D1, W, W3), parts):
                full[act] = new
            obj[act] = obj_try
        return U, (LL, D1, W, W3), Hinv, logdet, done & ~failed

    def _level_inverses(self, w, AA, rows, m):
        """``_spd_inverse`` of every level's ``I + A'WA`` for the ``m`` replicates
        ``rows`` (None: all), ``w`` their rows' curvatures (m, n)."""
        gs = self._index(m)
        sums = {ab: gs.sum((w * _take(v, rows)).ravel()).reshape(m, self.G) for ab, v in AA.items()}
        return _spd_inverse(self.q, sums)

    @staticmethod
    def _last_step(at, rows, step, dec, U, parts, obj):
        """``ModeSearch._last_step`` for the replicates ``rows`` whose search accepts
        their modes within the log-density's rounding: the Newton step just computed
        (``step``, q arrays (rows, G); decrements ``dec`` (rows, G)) taken where every
        decrement is below ``_NEAR_MODE`` or it lowers no level's penalised log-density
        beyond rounding; ``U``, ``parts`` and ``obj`` updated in place. Returns the
        replicates that moved."""
        U_try = [U[k][rows] + step[k] for k in range(len(U))]
        parts_try, obj_try = at(rows, U_try)
        old = obj[rows]
        kept = np.all(obj_try >= old - 1e-12 * (1.0 + np.abs(old)), axis=1)
        kept |= dec.max(axis=1) < _NEAR_MODE
        if not kept.any():
            return rows[kept]
        rows = rows[kept]
        for k in range(len(U)):
            U[k][rows] = U_try[k][kept]
        for full, new in zip(parts, parts_try):
            full[rows] = new[kept]
        obj[rows] = obj_try[kept]
        return rows

    def _gauss_newton(self, A, U, W, J):
        """``Objective.gauss_newton_diagonal`` of every replicate: ``2 D'WD + 2 J'J`` with
        ``D = d eta / d(beta, theta)`` as the modes follow (``J``, (R, G, q, P))."""
        d, f, q = self.data, self.f, self.q
        p, expand = d.n_beta, self._expand
        w = np.maximum(W, 0.0)
        P = J.shape[3]
        out = np.empty((W.shape[0], P))
        thetas = list(zip(f.theta_rows, f.theta_cols))
        for k in range(P):
            if k < p:
                D = np.broadcast_to(d.X[:, k], W.shape).copy()
            else:
                r_, col = thetas[k - p]
                D = f.Z[:, r_] * expand(U[col])
            for i in range(q):
                D += A[i] * expand(J[:, :, i, k])
            out[:, k] = 2.0 * np.sum(w * D * D, axis=1) + 2.0 * np.sum(J[..., k] ** 2, axis=(1, 2))
        return out

    def _gradient(self, A, AA, U, der, Hinv):
        """The single objective's analytic gradient (``Objective.gradient``) and mode
        derivatives ``J = H^{-1} dG/d(beta, theta)``, replicate by replicate."""
        d, f, q, G = self.data, self.f, self.q, self.G
        R, n = A[0].shape
        p, expand = d.n_beta, self._expand
        g = self._index(R)

        def lsum(v):  # (R, n[, k]) -> (R, G[, k])
            return g.sum(v.reshape((R * n,) + v.shape[2:])).reshape((R, G) + v.shape[2:])

        d1, w, w3 = der
        H = {(i, j): Hinv[i][j] for i in range(q) for j in range(i, q)}  # symmetric blocks
        # c_n = a_n' H^{-1} a_n of every row
        c = sum((1.0 if i == j else 2.0) * (expand(Hij) * AA[i, j]) for (i, j), Hij in H.items())
        v = w3 * c
        s = [lsum(A[j] * v) for j in range(q)]
        m = [sum(Hinv[i][j] * s[j] for j in range(q)) for i in range(q)]
        wA = [w * A[i] for i in range(q)]
        psi = -2.0 * d1 + v
        Am = sum(A[i] * expand(m[i]) for i in range(q)) if d.n_extra else None
        for i in range(q):
            psi -= wA[i] * expand(m[i])
        n_t = len(f.theta_rows)
        grad = np.empty((R, p + n_t))
        # the mode equation's derivative, -Lambda'Z'W d eta / d param (+ the direct part
        # for theta), per level and random-effect column
        rhs = np.zeros((q, R, G, p + n_t))
        for j in range(p):
            grad[:, j] = np.sum(psi * d.X[:, j], axis=1)
            for i in range(q):
                rhs[i, :, :, j] = -lsum(wA[i] * d.X[:, j])
        # a theta entry moves eta by z_r u_col of its level: the row sums it enters are
        # per-level sums times u_col (u is constant over a level's rows)
        sums = {}
        for r_ in sorted(set(int(r) for r in f.theta_rows)):
            zr = f.Z[:, r_]
            wz = w * zr
            sums[r_] = (
                lsum(psi * zr),  # psi'z_r per level
                lsum(d1 * zr),  # the direct part, Z_r'd1 per level
                [lsum(wz * A[j]) for j in range(q)],  # Z_r'W a_j per level
            )
        for k, (r_, col) in enumerate(zip(f.theta_rows, f.theta_cols)):
            pz, Dr, wza = sums[int(r_)]
            uc = U[col]
            # sum_n w_n z_rn (H^{-1} a_n)_col = sum_levels sum_j Hinv[col][j] Z_r'W a_j
            hk = sum(Hinv[col][j] * wza[j] for j in range(q))
            grad[:, p + k] = (
                np.sum(pz * uc, axis=1) + np.sum(m[col] * Dr, axis=1) + 2.0 * np.sum(hk, axis=1)
            )
            for i in range(q):
                rhs[i, :, :, p + k] = -uc * wza[i]
            rhs[col, :, :, p + k] += Dr
        J = np.empty((R, G, q, p + n_t))
        for i in range(q):
            J[:, :, i] = sum(Hinv[i][j][:, :, None] * rhs[j] for j in range(q))
        return grad, J, (Am, c)
