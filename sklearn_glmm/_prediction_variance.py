"""Prediction variance of ``x'beta + z'b`` for rows of known groups.

At the fitted covariance parameters the Laplace approximation treats the fixed
effects and the spherical random effects ``u`` (``b = T Lambda u``, see
``_engine/objective.py``) as jointly normal with precision

.. math::

    H = \\begin{pmatrix} X^\\top W X & X^\\top W Z\\Lambda \\\\
        \\Lambda^\\top Z^\\top W X & \\Lambda^\\top Z^\\top W Z \\Lambda + I \\end{pmatrix}

(``W`` the family's curvature in ``eta`` at the conditional modes, prior weights and
trials included: what the Laplace approximation's ``log|H|`` reads). The prediction
error of ``c'(beta, u)`` with ``c = (x, Lambda'T'z)`` has variance ``c' H^{-1} c``;
with ``D`` the random-effects block and ``B = Lambda'Z'WX`` it is

.. math::

    (x - B^\\top D^{-1} c_u)^\\top V (x - B^\\top D^{-1} c_u) + c_u^\\top D^{-1} c_u

with ``V`` the inverse of the Schur complement ``X'WX - B'D^{-1}B`` (the exact
inverse of ``H``, ``vcov="schur"``). ``x - B'D^{-1}c_u`` is the derivative of the
prediction ``x'beta + z'b~(beta)`` in ``beta`` (the modes move with ``beta``).

The default (``vcov="full"``) is TMB's ``sdreport`` formula, which glmmTMB's
``predict(se.fit = TRUE)`` uses: the same conditional term plus ``a' V a``, with
``V`` the fit's covariance of all its parameters (the inverse Hessian of the Laplace
objective: fixed effects, covariance parameters, the family's parameters) and ``a``
the prediction's total derivative in them; in the covariance parameters and the
family's parameters that is ``z' d b~ / d(theta, phi)``, the modes' move, taken here
by central differences of the modes. It adds the covariance parameters'
uncertainty; ``vcov="fixed"`` leaves that out (``V`` the fixed effects' block only).

Working in ``u`` rather than ``b`` needs no ``Sigma^{-1}``: a singular fit (a
variance of zero) has ``c_u = 0`` for that term. One factor: ``D`` is block diagonal
(one ``q x q`` block per level). Several factors: ``D`` is a sparse matrix factorised
once (``scipy.sparse.linalg.splu``) unless it has more than :data:`MAX_SPARSE_U`
columns.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from ._fit_result import objective_lock

# random effects above which the exact variance for several factors is not attempted
# (the sparse factorisation of D could fill in): the per-factor formula instead
MAX_SPARSE_U = 50_000
# the largest fit (training rows; a tenth with several grouping factors) whose pickle
# makes the joint precision when predict_interval has not: the modes' derivatives
# cost two objective evaluations per covariance or family parameter. Above it an
# unpickled model falls back with a warning (keep_data=True keeps the rows instead)
MAX_PICKLE_ROWS = 1_000_000

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# one joint precision per fit, its modes' derivatives made once
_LOCK = threading.RLock()


class JointPrecision:
    """``D`` (factorised), ``B``, the Schur complement's inverse and the modes'
    derivatives of one fit, on the optimiser's (internal) scale; ``u`` and ``b`` are
    ordered factor by factor, level by level, term by term.

    Made from the fit's training data (:meth:`from_fit`), or from :meth:`state`, what
    a pickle without the data carries (``D`` sparse, ``B`` and the modes' derivatives:
    the size of the random effects times the parameters, not of the rows)."""

    def __init__(self, res, D, B, XWX, dmodes=None):
        self.p = res.layout.n_beta
        self.lams = res.internal_lambdas()
        self.qs = [int(f.q) for f in res.layout.factors]
        self.n_levels = [int(f.n_levels) for f in res.layout.factors]
        self.offsets = list(np.cumsum([0] + [q * g for q, g in zip(self.qs, self.n_levels)])[:-1])
        self.Q = int(sum(q * g for q, g in zip(self.qs, self.n_levels)))
        self.D, self.B, self.XWX = D.tocsc(), np.asarray(B, dtype=float), XWX
        if len(self.qs) == 1:  # block diagonal: each level's q x q block inverted
            q, g = self.qs[0], self.n_levels[0]
            Dc = self.D.tocoo()
            blocks = np.zeros((g, q, q))
            np.add.at(blocks, (Dc.row // q, Dc.row % q, Dc.col % q), Dc.data)
            inv = np.linalg.inv(blocks)
            r = (np.arange(g)[:, None, None] * q + np.arange(q)[None, :, None]).repeat(q, 2)
            c = (np.arange(g)[:, None, None] * q + np.arange(q)[None, None, :]).repeat(q, 1)
            self._Dinv = sparse.csr_matrix(
                (inv.ravel(), (r.ravel(), c.ravel())), shape=(self.Q, self.Q)
            )
            self._lu = None
        else:
            self._Dinv = None
            self._lu = splinalg.splu(self.D)
        self.DinvB = self.solve(self.B)
        self.V_schur = _inverse(XWX - self.B.T @ self.DinvB)
        self.V_all = np.asarray(res.vcov, dtype=float)
        self._res = weakref.ref(res)
        self._dmodes = dmodes

    @classmethod
    def from_fit(cls, res):
        obj = res.objective
        data = obj.data
        # W at the conditional modes: the family's curvature in eta (prior weights,
        # trials, offsets and the family's parameters in), as the Laplace objective's
        eta = np.asarray(res.train["eta"], dtype=float)
        der = obj._derivs(eta, data.extra_values(res.extra), third=False)
        w = np.asarray(der.w, dtype=float)
        X = np.asarray(data.X, dtype=float)
        A = _z_lambda(data, res.internal_lambdas())  # Z Lambda, internal columns (n, Q)
        D = A.T @ sparse.diags(w) @ A + sparse.identity(A.shape[1])
        return cls(res, D, A.T @ (w[:, None] * X), X.T @ (w[:, None] * X))

    @classmethod
    def from_state(cls, res, state):
        return cls(res, state["D"], state["B"], state["XWX"], state["dmodes"])

    def state(self) -> dict:
        """What a pickle without the training data carries to make this again."""
        return dict(D=self.D, B=self.B, XWX=self.XWX, dmodes=self.mode_derivatives())

    def solve(self, M):
        """``D^{-1} M`` for ``M`` of shape (Q, k), dense (sparse ``M``: one factor)."""
        if self._Dinv is not None:
            out = self._Dinv @ M
            return out.toarray() if sparse.issparse(out) else np.asarray(out)
        M = M.toarray() if sparse.issparse(M) else np.asarray(M, dtype=float)
        return self._lu.solve(M) if M.size else M.copy()

    def mode_derivatives(self) -> np.ndarray:
        """``d b~ / d(theta, phi)`` in the user's units, (Q, T + E), by central
        differences of the conditional modes (0 for a parameter on a bound, held there;
        NaN where the moved objective is not finite; the objective is returned to the
        fit's point afterwards)."""
        with _LOCK:
            if self._dmodes is None:
                self._dmodes = self._mode_derivatives()
            return self._dmodes

    def _mode_derivatives(self) -> np.ndarray:
        res = self._res()
        obj = res.objective
        with objective_lock(obj):  # a profile in another thread moves it too
            return self._moved_modes(res, obj)

    def _moved_modes(self, res, obj) -> np.ndarray:
        x, p = res.params, self.p
        moved = np.isfinite(np.diag(self.V_all)) | undetermined_covariance(res)
        snap = obj.snapshot()
        u0 = obj.u.copy()
        out = np.zeros((self.Q, len(x) - p))
        try:
            for j, k in enumerate(range(p, len(x))):
                if not moved[k]:
                    continue  # on a bound (held there): left out, as _delta does
                h = 1e-4 * max(1.0, abs(x[k]))
                lo, hi = _bound(res.bounds, k)
                # central, or one-sided next to a bound of the optimiser
                steps = [s for s in (h, -h) if lo <= x[k] + s <= hi] or [0.0]
                at = [x[k] + s for s in steps] if len(steps) == 2 else [x[k] + steps[0], x[k]]
                modes = []
                for v in at:
                    xk = x.copy()
                    xk[k] = v
                    obj.u = u0.copy()
                    if not np.isfinite(obj.evaluate(xk)):
                        break
                    modes.append(self._b_modes(res, xk, obj.u))
                if len(modes) == 2 and at[0] != at[1]:
                    out[:, j] = (modes[0] - modes[1]) / (at[0] - at[1])
                else:
                    out[:, j] = np.nan
        finally:
            obj.restore(snap)
        return out

    def _b_modes(self, res, x, u):
        parts = []
        for k, L in enumerate(res.internal_lambdas(x)):
            Lo = res.z_maps[k] @ L
            uf = u[self.offsets[k] : self.offsets[k] + self.n_levels[k] * self.qs[k]]
            parts.append((uf.reshape(-1, self.qs[k]) @ Lo.T).ravel())
        return np.concatenate(parts)

    def row_matrix(self, rows_z, codes, lambdas: bool):
        """The rows' ``c_u`` (``lambdas``: ``z'T Lambda`` at the levels' ``u``) or their
        ``z`` at the levels' ``b``, as a sparse (rows, Q) matrix; a level code of -1
        (not seen in the fit) contributes nothing."""
        m = len(codes[0]) if codes else 0
        r, c, v = [], [], []
        res = self._res()
        for k, (Z, cd) in enumerate(zip(rows_z, codes)):
            Z = np.asarray(Z, dtype=float)
            vals = Z @ (res.z_maps[k] @ self.lams[k]) if lambdas else Z
            known = np.flatnonzero(np.asarray(cd) >= 0)
            for j in range(self.qs[k]):
                r.append(known)
                c.append(self.offsets[k] + cd[known] * self.qs[k] + j)
                v.append(vals[known, j])
        if not r:
            return sparse.csr_matrix((m, self.Q))
        return sparse.csr_matrix(
            (np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(m, self.Q)
        )


def _z_lambda(data, lams):
    """``Z Lambda`` of the training rows on the internal columns, sparse (n, Q)."""
    rows, cols, vals = [], [], []
    n = len(data.y)
    for f, L in zip(data.factors, lams):
        ZL = np.asarray(f.Z, dtype=float) @ L  # (n, q)
        for k in range(f.q):
            rows.append(np.arange(n))
            cols.append(f.offset + f.codes * f.q + k)
            vals.append(ZL[:, k])
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, int(data.n_u)),
    )


def undetermined_covariance(res) -> np.ndarray:
    """Mask of the covariance parameters without a variance off their bounds
    (:meth:`FitResult.undetermined`: a covariance the levels do not identify, a flat
    direction among them)."""
    out = res.undetermined().copy()
    p, T = res.layout.n_beta, res.layout.n_theta
    out[:p] = False
    out[p + T :] = False
    return out


def _bound(bounds, k):
    b = bounds[k] if bounds is not None and k < len(bounds) else (None, None)
    lo = -np.inf if b is None or b[0] is None else b[0]
    hi = np.inf if b is None or b[1] is None else b[1]
    return lo, hi


def _inverse(S: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(S)
    except np.linalg.LinAlgError:
        return np.full_like(S, np.nan)


def joint_precision(res) -> JointPrecision:
    """The fit's :class:`JointPrecision`, made once per fit result."""
    with _LOCK:
        jp = _CACHE.get(res)
        if jp is None:
            if res.has_data:
                jp = JointPrecision.from_fit(res)
            else:
                jp = JointPrecision.from_state(res, res.data_summaries["joint_precision"])
            _CACHE[res] = jp
    return jp


def pickled_summary(res):
    """What a pickle without the training data carries for :func:`joint_precision`
    (None when the exact variance is not available: see :func:`exact_unavailable`)."""
    if not res.factors or res.family.name == "ordinal" or exact_unavailable(res):
        return None
    if res.has_data and _CACHE.get(res) is None:
        rows = len(res.train["y"])
        if rows > (MAX_PICKLE_ROWS if len(res.factors) == 1 else MAX_PICKLE_ROWS // 10):
            return None  # not made for the pickle of a large fit (see MAX_PICKLE_ROWS)
    try:
        return joint_precision(res).state()
    except (ArithmeticError, ValueError, RuntimeError, np.linalg.LinAlgError):
        # a pickle is never refused for it: predict_interval then warns and falls back
        return None


def exact_unavailable(res) -> str | None:
    """None when the exact variance can be computed for ``res``, else why not."""
    if not res.has_data and (res.data_summaries or {}).get("joint_precision") is None:
        return (
            "the fit holds neither its training rows nor the joint precision of the fixed "
            "and random effects made from them (a partitioned fit keeps its rows on the "
            "cluster; the pickle of a fit of more than 1,000,000 rows, 100,000 with several "
            "grouping factors, does not carry it unless predict_interval ran before: fit "
            "with keep_data=True to keep the rows in pickles)"
        )
    Q = sum(f.q * len(f.levels) for f in res.factors)
    if len(res.factors) > 1 and Q > MAX_SPARSE_U:
        return (
            f"its {Q} random effects over {len(res.factors)} grouping factors exceed "
            f"{MAX_SPARSE_U}, the size up to which their joint precision is factorised"
        )
    return None


def known_group_variance(res, Xa, rows_z, codes, vcov: str = "full") -> np.ndarray:
    """Variance of the prediction error of ``x'beta + z'b`` for rows ``Xa``.

    ``rows_z[k]`` is factor ``k``'s Z rows (user's units) and ``codes[k]`` the rows'
    level codes (-1: a level not seen in the fit, whose random effect the row leaves
    out). ``vcov``: ``"full"`` (default; glmmTMB's), ``"fixed"`` or ``"schur"`` (the
    exact ``c' H^{-1} c`` at the fitted covariance parameters); see the module's
    docstring. A row of no known level has ``x' V_beta x``.
    """
    out = np.empty(Xa.shape[0])
    for rows, g, cond, G, Va in _row_gradients(res, Xa, rows_z, codes, vcov):
        if vcov == "schur":
            out[rows] = np.einsum("ni,ij,nj->n", g, joint_precision(res).V_schur, g) + cond
        elif vcov == "fixed":
            p = g.shape[1]
            out[rows] = np.einsum("ni,ij,nj->n", g, Va[:p, :p], g) + cond
        else:
            v = np.einsum("ni,ij,nj->n", G, Va, G)
            lost = ~np.isfinite(v)
            if lost.any():
                # rows that move with a parameter without a variance: those the fit
                # determines all the same (a separated fit's limit model, a covariance
                # the levels do not identify: FitResult.delta_covariance's rule) get
                # their variance, the others NaN
                v[lost] = res.delta_covariance(G[lost], diagonal=True)
            out[rows] = v + cond
    return out


def known_group_covariance(res, Xa, rows_z, codes) -> np.ndarray:
    """Covariance of the prediction ``x'beta^ + z'b^`` of rows ``Xa`` with every
    parameter (internal scale), (rows, n_params), as :func:`known_group_variance`'s
    ``"full"`` reads it: the fixed effects directly, the covariance and family
    parameters through the modes' derivatives."""
    out = np.empty((Xa.shape[0], len(res.params)))
    Vi = getattr(res.record, "identified_covariance", None)
    for rows, _g, _cond, G, Va in _row_gradients(res, Xa, rows_z, codes, "full"):
        c = G @ Va
        lost = ~np.all(np.isfinite(c), axis=1)
        if lost.any() and Vi is not None:
            # a covariance the levels do not identify: rows whose variance is over the
            # identified directions (delta_covariance) have their covariances there too
            fine = np.isfinite(res.delta_covariance(G[lost], diagonal=True))
            idx = np.flatnonzero(lost)[fine]
            c[idx] = G[idx] @ np.nan_to_num(Vi)
        out[rows] = c
    return out


def _row_gradients(res, Xa, rows_z, codes, vcov):
    """Chunks of rows ``(slice, g, cond, G, Va)``: ``g`` the prediction's derivative in
    the fixed effects after the modes follow them, ``cond`` the modes' conditional
    variance term, ``G`` (``"full"`` only) the derivative in every parameter and ``Va``
    the fit's covariance with the parameters outside it (on a bound) left out, as in the
    delta method of marginal_means (fixed effects never are)."""
    jp = joint_precision(res)
    p = jp.p
    m = Xa.shape[0]
    cb = res.fixed_design(Xa) @ res.beta_jacobian()  # (m, p) on the internal scale
    Cu = jp.row_matrix(rows_z, codes, lambdas=True)
    Zb = jp.row_matrix(rows_z, codes, lambdas=False) if vcov == "full" else None
    # held: the parameters on a bound (a zero variance) and the family's coefficients a
    # ridge took (held at the ridge's end, as the fit's limit model); a covariance
    # parameter without a variance off its bounds stays in, its NaN marking the rows
    # it moves
    act = np.isfinite(np.diag(jp.V_all)) | undetermined_covariance(res)
    act[:p] = True
    Va = np.where(np.outer(act, act), jp.V_all, 0.0)
    # several factors: D^{-1} c_u dense, in chunks of rows
    chunk = m if jp._lu is None else max(1, min(m, 4_000_000 // max(jp.Q, 1)))
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        CuT = Cu[s:e].T.tocsc()
        DinvC = jp.solve(CuT)  # (Q, rows)
        cond = np.asarray(CuT.multiply(DinvC).sum(axis=0)).ravel()
        g = cb[s:e] - (jp.B.T @ DinvC).T  # d prediction / d beta, (rows, p)
        G = None
        if vcov == "full":
            G = np.hstack([g, np.asarray(Zb[s:e] @ jp.mode_derivatives())])
            G[:, ~act] = 0.0
        yield slice(s, e), g, cond, G, Va
