"""The Laplace log-likelihood of any random-effects structure, by dense linear algebra.

``truth.py`` integrates one scalar random intercept group by group. This module takes
the other models of the fuzz suite: random slopes (correlated, ``diag(...)``, slope
only) and several grouping factors (crossed or nested), where the random effects of
different factors share rows and the integral no longer splits by group. With the
random effects written ``b = Lambda u``, ``u ~ N(0, I)`` (``Lambda`` block-diagonal,
each level of factor ``f`` with the lower-triangular factor ``L_f`` of its covariance,
``L_f L_f' = Sigma_f``; a singular ``Sigma_f`` gives a column of zeros), the Laplace
approximation is lme4's

.. math::

    \\log L \\approx \\max_u \\Big[\\sum_i \\log p(y_i \\mid x_i^\\top \\beta + o_i
        + z_i^\\top \\Lambda u) - \\tfrac12 u^\\top u\\Big]
        - \\tfrac12 \\log\\det(I + \\Lambda^\\top Z^\\top W Z \\Lambda)

with ``W`` the negative second derivative of the row log-densities in the linear
predictor at the mode (the exact curvature, as the library's Laplace fits use). The
mode is found by damped Newton steps on the dense ``u`` (at most a few hundred entries
in the fuzz suite's data sets). Row densities are ``truth.row_logpdf``; nothing here
imports ``sklearn_glmm``.

Models with zero inflation are not taken: their conditional log-density need not be
concave in ``u``, and a dense search from ``u = 0`` could stop at another mode than the
highest.

``params`` is a dict as ``truth``'s (``beta``, ``theta`` for NB) with ``cov``: one
covariance matrix per factor of the :class:`Structure`, in its order.

- :func:`laplace_loglik` (and :class:`PackedLaplace`, the same on :func:`pack`'s
  vector, warm-started): the formula above;
- :func:`pack` / :func:`unpack` / :func:`pack_caps`: the parameters as a vector for
  ``truth.best_nearby`` and ``truth.fixed_effect_standard_errors`` (each covariance in
  its own parameters: Cholesky entries, SDs, ``ar1``'s SD and ``atanh(rho)``, ``cs``'s
  and ``toep``'s SDs and correlations);
- :func:`integral_loglik`: the marginal log-likelihood itself for one grouping factor
  with several effects per level, by a product Gauss-Hermite rule at each level's mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import truth

STRUCTURES = (None, "diagonal", "ar1", "cs", "toep")


@dataclass
class Term:
    """One grouping factor: its level codes, its columns (``(n, k)``: ones for an
    intercept, the predictor for a slope, indicators of the times of a structured term)
    and the structure of its covariance: ``None`` (unstructured), ``"diagonal"``, or over
    the ``k`` times, ``"ar1"`` (``s^2 rho^|i-j|``), ``"cs"`` (one SD per time, one
    correlation) and ``"toep"`` (one SD per time, one correlation per lag)."""

    codes: np.ndarray
    columns: np.ndarray
    structure: str | None = None

    def __post_init__(self):
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")

    @property
    def n_levels(self) -> int:
        return int(self.codes.max()) + 1

    @property
    def k(self) -> int:
        return self.columns.shape[1]


@dataclass
class Structure:
    """The random-effects terms of a model, one per grouping factor."""

    terms: list

    def design(self, factors) -> np.ndarray:
        """``Z Lambda`` (n, sum of levels x k) for the lower-triangular ``factors``."""
        blocks = []
        for term, L in zip(self.terms, factors):
            M = term.columns @ L  # (n, k): row i's loadings on its level's u
            A = np.zeros((len(term.codes), term.n_levels * term.k))
            rows = np.arange(len(term.codes))
            for s in range(term.k):
                A[rows, term.codes * term.k + s] = M[:, s]
            blocks.append(A)
        return np.hstack(blocks)


def psd_factor(S: np.ndarray) -> np.ndarray:
    """A lower-triangular ``L`` with ``L L' = S`` for a positive semi-definite ``S``
    (a pivot at zero, to the rounding of its own diagonal entry, gives a zero column:
    the variances of one matrix can be 1e12 apart)."""
    S = np.asarray(S, dtype=float)
    k = S.shape[0]
    L = np.zeros((k, k))
    for j in range(k):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-12 * S[j, j] or d <= 0.0:
            continue
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, k):
            L[i, j] = (S[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def _penalised(data, eta0, params, A, u):
    ll, d1, d2 = truth.row_logpdf(data, eta0 + A @ u, params)
    return float(np.sum(ll)) - 0.5 * float(u @ u), d1, d2


def laplace_loglik(params: dict, data: truth.GLMMData, structure: Structure) -> float:
    """The Laplace approximation of the log-likelihood at ``params`` (see the module
    docstring); NaN where the parameters are not finite or the mode search fails."""
    return _laplace(params, data, structure)[0]


def _laplace(params, data, structure, start=None):
    """The Laplace value and the mode ``u`` (its zero-variance columns left out); the
    search starts at ``start`` when given and of the mode's length, else at zero."""
    if data.zero_inflation:
        raise ValueError("zero-inflated models are not taken (see the module docstring)")
    beta = np.asarray(params["beta"], dtype=float)
    covs = [np.asarray(c, dtype=float) for c in params["cov"]]
    if not np.all(np.isfinite(beta)) or not all(np.all(np.isfinite(c)) for c in covs):
        return np.nan, None
    for c in covs:  # a covariance matrix is positive semi-definite
        if np.min(np.linalg.eigvalsh(c)) < -1e-10 * max(float(np.max(np.diag(c))), 1e-300):
            return np.nan, None
    A = structure.design([psd_factor(c) for c in covs])
    A = A[:, np.any(A != 0.0, axis=0)]  # columns of a zero variance carry nothing
    eta0 = data.eta(beta)
    u = np.zeros(A.shape[1])
    if start is not None and len(start) == len(u):
        u = start.copy()
    eye = np.eye(len(u))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        g, d1, d2 = _penalised(data, eta0, params, A, u)
        if not np.isfinite(g) and start is not None:
            return _laplace(params, data, structure)
        for _ in range(200):
            grad = A.T @ d1 - u
            H = A.T @ (-d2[:, None] * A) + eye
            try:
                step = np.linalg.solve(H, grad)
            except np.linalg.LinAlgError:
                return np.nan, None
            decrement = float(grad @ step)  # twice Newton's predicted increase
            if not np.isfinite(decrement):
                return np.nan, None
            if decrement <= 1e-13 * max(1.0, abs(g)):
                break
            t = 1.0
            for _ in range(60):
                g_new, d1_new, d2_new = _penalised(data, eta0, params, A, u + t * step)
                if np.isfinite(g_new) and g_new >= g:
                    break
                t *= 0.5
            else:
                return np.nan, None
            u = u + t * step
            stalled = t < 1.0 and g_new - g <= 1e-15 * max(1.0, abs(g))
            g, d1, d2 = g_new, d1_new, d2_new
            if stalled:  # a gain at the rounding of g: the mode to rounding
                break
        # polish: full Newton steps while they shrink the gradient (at a mode found to
        # the rounding of g, u can still be off by 1e-7, and log det H moves with it)
        grad = A.T @ d1 - u
        H = A.T @ (-d2[:, None] * A) + eye
        for _ in range(8 if len(u) else 0):
            u_new = u + np.linalg.solve(H, grad)
            g_new, d1_new, d2_new = _penalised(data, eta0, params, A, u_new)
            grad_new = A.T @ d1_new - u_new
            if not (np.max(np.abs(grad_new)) < np.max(np.abs(grad)) and np.isfinite(g_new)):
                break
            u, g, d1, d2, grad = u_new, g_new, d1_new, d2_new, grad_new
            H = A.T @ (-d2[:, None] * A) + eye
        sign, logdet = np.linalg.slogdet(H)
    if sign <= 0 or not np.isfinite(logdet):
        return np.nan, None
    return g - 0.5 * logdet, u


class PackedLaplace:
    """:func:`laplace_loglik` as a function of :func:`pack`'s vector, each mode search
    started from the mode of the previous call (the log-density is concave in ``u``:
    one mode, whatever the start; the searches of a Nelder-Mead run, at nearby points,
    then take a step or two)."""

    def __init__(self, data: truth.GLMMData, structure: Structure):
        self.data, self.structure = data, structure
        self._u = None

    def __call__(self, x: np.ndarray) -> float:
        params = unpack(x, self.data, self.structure)
        value, u = _laplace(params, self.data, self.structure, self._u)
        if u is not None:
            self._u = u
        return value


# -- packed parameters, for a search near a fit ----------------------------------------


def _sds_and_correlations(cov):
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    outer = np.outer(sd, sd)
    R = np.divide(cov, outer, out=np.zeros_like(cov), where=outer > 0)
    return sd, R


def _pack_term(term: Term, cov: np.ndarray) -> list:
    k = term.k
    if term.structure is None:
        L = psd_factor(cov)
        return [L[i, j] for i in range(k) for j in range(i + 1)]
    sd, R = _sds_and_correlations(cov)
    if term.structure == "diagonal":
        return list(sd)
    lags = [_lag_correlation(R, sd, lag) for lag in range(1, k)]
    if term.structure == "ar1":
        return [sd.max(), float(np.arctanh(np.clip(lags[0], -1 + 1e-15, 1 - 1e-15)))]
    if term.structure == "cs":  # one correlation: any pair of positive SDs has it
        pairs = [R[i, j] for i in range(k) for j in range(i + 1, k) if sd[i] > 0 and sd[j] > 0]
        return [*sd, float(pairs[0]) if pairs else 0.0]
    return [*sd, *lags]  # toep


def _lag_correlation(R, sd, lag):
    """The correlation at ``lag``, read where both SDs are positive (0 where none is)."""
    for i in range(len(sd) - lag):
        if sd[i] > 0 and sd[i + lag] > 0:
            return float(R[i, i + lag])
    return 0.0


def _n_packed(term: Term) -> int:
    k = term.k
    return {None: k * (k + 1) // 2, "diagonal": k, "ar1": 2, "cs": k + 1, "toep": 2 * k - 1}[
        term.structure
    ]


def _unpack_term(term: Term, v: np.ndarray) -> np.ndarray:
    k = term.k
    lag = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :])
    if term.structure is None:
        L = np.zeros((k, k))
        L[np.tril_indices(k)] = v
        return L @ L.T
    if term.structure == "diagonal":
        return np.diag(np.asarray(v) ** 2)
    if term.structure == "ar1":
        return v[0] ** 2 * np.tanh(v[1]) ** lag
    sd = np.abs(np.asarray(v[:k]))
    if term.structure == "cs":
        R = np.where(lag == 0, 1.0, v[k])
    else:  # toep
        R = np.r_[1.0, v[k:]][lag]
    return R * np.outer(sd, sd)


def pack_caps(params: dict, data: truth.GLMMData, structure: Structure) -> np.ndarray:
    """The largest scale of each coordinate of :func:`pack` for differences: the value
    itself where the log-likelihood is even in it (an SD, a Cholesky diagonal entry: a
    step beyond zero comes back), unbounded elsewhere."""
    x = pack(params, data, structure)
    caps = np.full(len(x), np.inf)
    k = data.X.shape[1]
    for term in structure.terms:
        q = term.k
        if term.structure is None:
            diagonal = [i * (i + 1) // 2 + i for i in range(q)]  # (i, i) in row-major tril
        elif term.structure == "ar1":
            diagonal = [0]
        else:  # diag, cs, toep: the SDs first
            diagonal = list(range(q))
        for j in diagonal:
            caps[k + j] = abs(x[k + j])
        k += _n_packed(term)
    return caps


def pack(params: dict, data: truth.GLMMData, structure: Structure) -> np.ndarray:
    """[truth's scaled beta, each factor's covariance parameters, log theta (NB)]: the
    free entries of the Cholesky factor (unstructured), the SDs (diagonal), the SD and
    ``atanh(rho)`` (ar1), the SDs and the correlation (cs) or the lag correlations
    (toep)."""
    base = truth.pack({**params, "sigma": 0.0}, data)
    p = data.X.shape[1]
    cov_part = []
    for term, cov in zip(structure.terms, params["cov"]):
        cov_part += _pack_term(term, np.asarray(cov, dtype=float))
    return np.concatenate([base[:p], cov_part, base[p + 1 :]])


def unpack(x: np.ndarray, data: truth.GLMMData, structure: Structure) -> dict:
    """The inverse of :func:`pack` (a cs or toep matrix that is not positive
    semi-definite is returned as it is: :func:`laplace_loglik` gives NaN there)."""
    p = data.X.shape[1]
    k = p
    covs = []
    for term in structure.terms:
        m = _n_packed(term)
        covs.append(_unpack_term(term, np.asarray(x[k : k + m], dtype=float)))
        k += m
    rest = np.concatenate([x[:p], [0.0], x[k:]])
    params = truth.unpack(rest, data)
    params.pop("sigma")
    params["cov"] = covs
    return params


# -- the integral itself, for one grouping factor ------------------------------------------


def integral_loglik(params: dict, data: truth.GLMMData, term: Term, nodes: int = 40) -> float:
    """The marginal log-likelihood of a model with ONE grouping factor (``term``; its level
    codes must be ``data.groups``) whose levels carry ``k`` random effects, by a product
    Gauss-Hermite rule of ``nodes`` per dimension centred at each level's mode and scaled
    by its curvature there: per level ``log int exp(g_j(u)) N(u; 0, I) du`` with ``u``
    over the directions of positive variance (``u = u_j + L_j^{-T} z``, ``L_j L_j'`` the
    curvature of ``-g_j`` at the mode ``u_j``). The integrand is a Gaussian times a smooth
    factor there; 40 ``nodes`` make the rule's own error negligible beside the 1e-3 the
    checks allow (its tests: one effect against ``truth.marginal_loglik``, within 2e-6 at
    an SD of 3 and 1e-9 with 100 nodes; a slope, 40 against 60 nodes).
    """
    if data.zero_inflation:
        raise ValueError("zero-inflated models are not taken (see the module docstring)")
    if not np.array_equal(term.codes, data.groups):
        raise ValueError("the term's level codes must be data.groups")
    cov = np.asarray(params["cov"][0], dtype=float)
    if not np.all(np.isfinite(cov)) or not np.all(np.isfinite(params["beta"])):
        return np.nan
    Lam = psd_factor(cov)
    keep = np.any(Lam != 0.0, axis=0)
    M = term.columns @ Lam[:, keep]  # (n, r): each row's loadings on its level's u
    r = M.shape[1]
    eta0 = data.eta(params["beta"])
    if r == 0:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return float(np.sum(truth.row_logpdf(data, eta0, params)[0]))
    # the modes, by _laplace on the loadings with an identity covariance; a level's
    # direction that no row loads on stays at 0 (its integral is the prior's, 1)
    whitened = Structure([Term(term.codes, M)])
    value, u = _laplace({**params, "cov": [np.eye(r)]}, data, whitened)
    if not np.isfinite(value):
        return np.nan
    loaded = np.any(whitened.design([np.eye(r)]) != 0.0, axis=0)
    u_all = np.zeros(len(loaded))
    u_all[loaded] = u
    u = u_all
    G = data.n_groups
    U = u.reshape(G, r)  # the modes (levels in code order, then effects)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _, d1, d2 = truth.row_logpdf(data, eta0 + np.sum(M * U[data.groups], axis=1), params)
    # each level's curvature of -g at its mode: I + sum over its rows of -d2 m m'
    H = np.eye(r) + data.group_sums((-d2)[:, None, None] * M[:, :, None] * M[:, None, :])
    L = np.linalg.cholesky(H)  # (G, r, r)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    grids = np.meshgrid(*([x] * r), indexing="ij")
    Z = np.stack([g.ravel() for g in grids], axis=1)  # (K, r)
    logw = np.sum(
        np.log(np.stack([g.ravel() for g in np.meshgrid(*([w] * r), indexing="ij")], axis=1)),
        axis=1,
    )
    logw -= r * 0.5 * np.log(2.0 * np.pi)  # weights of N(0, I)
    # u_jK = U_j + L_j^{-T} z_K for every level and node
    Linv_t = np.swapaxes(np.linalg.inv(L), 1, 2)  # (G, r, r)
    UK = U[:, None, :] + np.einsum("gab,kb->gka", Linv_t, Z)  # (G, K, r)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        eta = eta0[:, None] + np.einsum("na,nka->nk", M, UK[data.groups])
        ll = data.group_sums(truth.row_logpdf(data, eta, params)[0])  # (G, K)
        log_f = ll - 0.5 * np.sum(UK**2, axis=2) + 0.5 * np.sum(Z**2, axis=1)[None, :]
        log_f = np.where(np.isfinite(log_f), log_f, -np.inf)
    logdet_L = np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
    top = np.max(log_f + logw[None, :], axis=1, keepdims=True)
    per_level = top[:, 0] + np.log(np.sum(np.exp(log_f + logw[None, :] - top), axis=1))
    return float(np.sum(per_level - logdet_L))
