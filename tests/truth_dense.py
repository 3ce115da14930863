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

Models with a zero part (zero inflation, a hurdle; constant or with a design) and
zero-truncated counts (:func:`not_log_concave`) have a conditional log-density that need
not be concave in ``u``: a level whose outcomes are all zero, say, can have a mode near
``u = 0`` (its zeros from the zero part) and another far below (from the count part),
and a Newton search from ``u = 0`` stops at the nearer. There the Laplace approximation
is taken at the HIGHEST mode, found by :func:`_highest_mode`. From each start (``u =
0``, the warm start, and a fit's conditional modes where given): a damped Newton ascent
(Levenberg's shift where the Hessian is not negative definite); then, in turn, a scan of
each factor's levels, each level's spherical random effects over a grid of -8 to 8 prior
SDs (65 points for one effect per level, 25 x 25 for two; the other factors held), and
an ascent from the scanned point whenever a level's grid holds a point above its value
at the mode. Each round ends higher than the last, a start's search stops when no
level's grid beats its mode, and the highest of the starts' modes is taken.

Why that is the highest mode: with ONE grouping factor the penalised log-density is a
sum over the levels, each a function of its own ``u_j`` alone, so the scan is each
level's whole grid, and the mode returned is at least as high as every grid point of
every level. A higher mode would have to rise above all of them: lie beyond 8 prior SDs
(where the prior alone costs 32 log units, and the grid's edge points, from which the
ascent would start, lead outward to it), or be a peak narrower than the grid's step
(2/3 of a prior SD for two effects) between points that all lie below the mode found.
With several factors (crossed, nested; one effect per level in the fuzz suite) the scan
is by coordinates: each start ends at a mode that no single level's move to a grid point
improves, which is what a second mode of one level (the source of the multimodality of
these models) needs, and the highest of the starts' is taken. Two modes that differ in
levels of two factors together (a level and those nested in it), close in height, can
need a start near each: the fuzz passes a fit's conditional modes as one more start
(a crossed ZINB1 fit of the fuzz had two modes 5.5e-7 apart in height, 0.33 apart in
their Laplace values, and the truth's own starts reached the lower).
``test_fuzz_truth_zero_part_structures.py`` tests both on constructed bimodal levels (a
fine grid, random starts) and against ``truth.py``'s own search (a grid of starts per
level) for one intercept.
The library's search (``_engine/mode_scan.py``) differs: a second start from a grid for
scalar random effects, and a scan at the optimum; none of it is used here.

``params`` is a dict as ``truth``'s (``beta``, ``theta`` for NB) with ``cov``: one
covariance matrix per factor of the :class:`Structure`, in its order.

- :func:`laplace_loglik` (and :class:`PackedLaplace`, the same on :func:`pack`'s
  vector, warm-started): the formula above; :func:`min_curvature`: the smallest
  eigenvalue of its ``I + Lambda' Z' W Z Lambda`` at the mode;
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


def laplace_loglik(params: dict, data: truth.GLMMData, structure: Structure, modes=None) -> float:
    """The Laplace approximation of the log-likelihood at ``params`` (see the module
    docstring); NaN where the parameters are not finite or the mode search fails.

    ``modes`` (models with a zero part): one more start of the search for the highest
    mode, the random effects ``b`` of each factor as an array (levels in code order,
    effects), e.g. a fit's conditional modes; the search still takes the highest mode
    it reaches, from this start or its own."""
    return _laplace(params, data, structure, modes=modes)[0]


def _laplace(params, data, structure, start=None, modes=None):
    """The Laplace value and the mode ``u`` (its zero-variance columns left out); the
    search starts at ``start`` when given and of the mode's length, else at zero (for a
    model with a zero part, :func:`_highest_mode`'s search, ``modes`` one more start)."""
    beta = np.asarray(params["beta"], dtype=float)
    covs = [np.asarray(c, dtype=float) for c in params["cov"]]
    if not np.all(np.isfinite(beta)) or not all(np.all(np.isfinite(c)) for c in covs):
        return np.nan, None
    for c in covs:  # a covariance matrix is positive semi-definite
        if np.min(np.linalg.eigvalsh(c)) < -1e-10 * max(float(np.max(np.diag(c))), 1e-300):
            return np.nan, None
    factors = [psd_factor(c) for c in covs]
    A = structure.design(factors)
    loaded = np.any(A != 0.0, axis=0)
    A = A[:, loaded]  # columns of a zero variance carry nothing
    eta0 = data.eta(beta)
    if not_log_concave(data):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            found = _highest_mode(data, eta0, params, structure, factors, loaded, start, modes)
        if found is None:
            return np.nan, None
        return _at_mode(data, eta0, params, A, *found)
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
    return _at_mode(data, eta0, params, A, u, g, d1, d2)


def _at_mode(data, eta0, params, A, u, g, d1, d2):
    """The Laplace value at the mode ``u`` (``g`` and the rows' derivatives there), after
    a polish of the mode, and the mode."""
    eye = np.eye(len(u))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # polish: full Newton steps while they shrink the gradient (at a mode found to
        # the rounding of g, u can still be off by 1e-7, and log det H moves with it)
        grad = A.T @ d1 - u
        H = A.T @ (-d2[:, None] * A) + eye
        for _ in range(8 if len(u) else 0):
            try:
                u_new = u + np.linalg.solve(H, grad)
            except np.linalg.LinAlgError:
                break
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


# -- the highest mode, for models whose conditional density is not log-concave ----------

# the scan's grids of each level's spherical random effects: quarter prior SDs for one
# effect per level, two thirds of one for two, from -8 to 8 prior SDs
SCAN_REACH = 8.0
SCAN_POINTS = {1: 65, 2: 25}
# the smallest curvature (relative to the prior's) that scales integral_loglik's rule
RULE_CURVATURE_FLOOR = 0.1


def not_log_concave(data) -> bool:
    """A zero part (zero inflation, a hurdle) or a zero-truncated count: the conditional
    log-density need not be concave in the random effects, and may have several modes."""
    return bool(data.zero_part or data.truncated)


def _ascend(data, eta0, params, A, u):
    """Damped Newton ascent of the penalised log-density from ``u`` to a mode: where its
    Hessian is not negative definite, Levenberg's shift makes the step an ascent
    direction. ``(u, g, d1, d2)`` at the mode, or None where the start is not finite."""
    eye = np.eye(len(u))
    g, d1, d2 = _penalised(data, eta0, params, A, u)
    if not np.isfinite(g):
        return None
    for _ in range(300):
        grad = A.T @ d1 - u
        H = A.T @ (-d2[:, None] * A) + eye  # minus the Hessian
        if not np.all(np.isfinite(H)) or not np.all(np.isfinite(grad)):
            return None
        shift = 0.0
        while True:
            try:
                C = np.linalg.cholesky(H + shift * eye)
                break
            except np.linalg.LinAlgError:
                shift = max(2.0 * shift, 1e-6 * (1.0 + float(np.max(np.abs(np.diag(H))))))
        step = np.linalg.solve(C.T, np.linalg.solve(C, grad))
        decrement = float(grad @ step)
        if decrement <= 1e-13 * max(1.0, abs(g)):
            break
        t = 1.0
        for _ in range(60):
            g_new, d1_new, d2_new = _penalised(data, eta0, params, A, u + t * step)
            if np.isfinite(g_new) and g_new >= g:
                break
            t *= 0.5
        else:
            break
        u = u + t * step
        stalled = g_new - g <= 1e-15 * max(1.0, abs(g)) and (t < 1.0 or shift > 0.0)
        g, d1, d2 = g_new, d1_new, d2_new
        if stalled:
            break
    return u, g, d1, d2


def _level_sums(codes, n_levels, v):
    """Sums of the rows' ``v`` (n, K) over each level: (n_levels, K); ``-inf`` where a
    row's value is not finite."""
    ind = np.zeros((n_levels, len(codes)))
    ind[codes, np.arange(len(codes))] = 1.0
    finite = np.isfinite(v)
    out = ind @ np.where(finite, v, 0.0)
    return np.where(ind @ (~finite).astype(float) > 0, -np.inf, out)


def _scan_grid(k):
    axis = np.linspace(-SCAN_REACH, SCAN_REACH, SCAN_POINTS[k])
    mesh = np.meshgrid(*([axis] * k), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)  # (K, k)


def _scan(data, eta0, params, blocks, u):
    """One sweep over the factors: each level's spherical random effects moved to the
    best point of a grid where that beats their value, the other factors' held (the
    penalised log-density splits over the levels of one factor given the others).
    The new ``u`` and whether anything moved."""
    moved = False
    # the rows whose density reads the random effects: not those of weight 0, nor a
    # hurdle's zeros (their sums over a level are the same at every grid point)
    rows = data.weights > 0
    if data.hurdle:
        rows &= data.y > 0
    sub = data.subset(rows)
    for start, codes, M in blocks:
        n_levels, k = int(codes.max()) + 1, M.shape[1]
        if k not in SCAN_POINTS:
            continue
        U = u[start : start + n_levels * k].reshape(n_levels, k)
        eta_u = (eta0 + _linear(blocks, u))[rows]
        rest = eta_u - np.sum(M * U[codes], axis=1)[rows]
        V = _scan_grid(k)
        ll = truth.row_logpdf(sub, rest[:, None] + M[rows] @ V.T, params, False)[0]
        h = _level_sums(codes[rows], n_levels, ll) - 0.5 * np.sum(V * V, axis=1)[None, :]
        now = truth.row_logpdf(sub, eta_u[:, None], params, False)[0]
        now = _level_sums(codes[rows], n_levels, now)[:, 0] - 0.5 * np.sum(U * U, axis=1)
        top = np.argmax(h, axis=1)
        best = h[np.arange(n_levels), top]
        better = best > now + 1e-8 * (1.0 + np.abs(now))
        better |= ~np.isfinite(now) & np.isfinite(best)
        if better.any():
            U = np.where(better[:, None], V[top], U)
            u = u.copy()
            u[start : start + n_levels * k] = U.ravel()
            moved = True
    return u, moved


def _linear(blocks, u):
    """``Z Lambda u`` from the factors' blocks."""
    out = 0.0
    for start, codes, M in blocks:
        k = M.shape[1]
        U = u[start : start + (int(codes.max()) + 1) * k].reshape(-1, k)
        out = out + np.sum(M * U[codes], axis=1)
    return out


def _spherical(structure, factors, modes):
    """The random effects ``b`` of each factor (``modes``) as the spherical ``u`` of
    ``b = Lambda u`` (least squares over the directions of positive variance)."""
    parts = []
    for term, L, b in zip(structure.terms, factors, modes):
        b = np.asarray(b, dtype=float).reshape(term.n_levels, term.k)
        keep = np.any(L != 0.0, axis=0)
        U = np.zeros_like(b)
        if keep.any():
            U[:, keep] = np.linalg.lstsq(L[:, keep], b.T, rcond=None)[0].T
        parts.append(U.ravel())
    return np.concatenate(parts)


def _highest_mode(data, eta0, params, structure, factors, loaded, start, modes=None):
    """The highest mode of the penalised log-density (its value and the rows'
    derivatives there), over the loaded columns, or None.

    From each start, ``u = 0``, ``start`` and ``modes`` (as :func:`laplace_loglik`
    takes them): an ascent (:func:`_ascend`), then, while a sweep of :func:`_scan`
    finds a level whose grid holds a point above its value at the mode, an ascent from
    the scanned point (each round climbs higher than the last); the highest of the
    modes so reached. With one grouping factor the levels are independent and the scan
    is each level's whole grid: the mode returned is at least as high as every point of
    every level's grid (see the module docstring for what that leaves out). With
    several, the scan moves one factor's levels at a time, and modes that differ in
    levels of two factors together (a level and those nested in it) are told apart by
    the starts.
    """
    full = structure.design(factors)
    blocks, start_col = [], 0
    for term, L in zip(structure.terms, factors):
        blocks.append((start_col, term.codes, term.columns @ L))
        start_col += term.n_levels * term.k
    starts = [np.zeros(full.shape[1])]
    if start is not None and len(start) == int(np.sum(loaded)):
        u0 = np.zeros(full.shape[1])
        u0[loaded] = start
        starts.append(u0)
    if modes is not None:
        starts.append(_spherical(structure, factors, modes))
    best, reached = None, []
    for s in starts:
        found = _ascend(data, eta0, params, full, s)
        if found is None or any(np.max(np.abs(found[0] - r), initial=0.0) < 1e-6 for r in reached):
            continue  # (a mode another start reached: its scans are done)
        reached.append(found[0])
        for _ in range(50):
            scanned, moved = _scan(data, eta0, params, blocks, found[0])
            if not moved:
                break
            further = _ascend(data, eta0, params, full, scanned)
            if further is None or not further[1] > found[1]:
                break
            found = further
        if best is None or found[1] > best[1]:
            best = found
    if best is None:
        return None
    u, g, d1, d2 = best
    return u[loaded], g, d1, d2


def min_curvature(params: dict, data: truth.GLMMData, structure: Structure, modes=None) -> float:
    """The smallest eigenvalue of ``I + Lambda' Z' W Z Lambda`` (the curvature of the
    penalised log-density, relative to the prior's) at the mode :func:`laplace_loglik`
    takes: near 0 a nearly flat top, where the Laplace value moves with the mode's last
    digits (``-log det / 2``); NaN where the mode search fails. ``modes`` as
    :func:`laplace_loglik` takes them."""
    value, u = _laplace(params, data, structure, modes=modes)
    return np.nan if u is None else _curvature_at(params, data, structure, u)


def _curvature_at(params, data, structure, u):
    """The smallest eigenvalue of ``I + Lambda' Z' W Z Lambda`` at the mode ``u``."""
    A = structure.design([psd_factor(np.asarray(c, dtype=float)) for c in params["cov"]])
    A = A[:, np.any(A != 0.0, axis=0)]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        d2 = truth.row_logpdf(data, data.eta(params["beta"]) + A @ u, params)[2]
    H = A.T @ (-d2[:, None] * A) + np.eye(len(u))
    if not np.all(np.isfinite(H)):
        return np.nan
    return float(np.linalg.eigvalsh(H)[0]) if len(u) else 1.0


class PackedLaplace:
    """:func:`laplace_loglik` as a function of :func:`pack`'s vector, each mode search
    started from the mode of the previous call (a concave log-density has one mode,
    whatever the start: the searches of a Nelder-Mead run, at nearby points, then take a
    step or two; with a zero part the warm start is one more start of
    :func:`_highest_mode`, whose scan runs at every call). ``flat``: NaN where the
    mode's curvature (:func:`min_curvature`) is below it, the Laplace value being
    ill-conditioned there (a search for a better optimum is then kept off such
    points)."""

    def __init__(self, data: truth.GLMMData, structure: Structure, flat: float | None = None):
        self.data, self.structure, self.flat = data, structure, flat
        self._u = None

    def __call__(self, x: np.ndarray) -> float:
        params = unpack(x, self.data, self.structure)
        value, u = _laplace(params, self.data, self.structure, self._u)
        if u is not None:
            self._u = u
            if self.flat is not None:
                curvature = _curvature_at(params, self.data, self.structure, u)
                if not curvature >= self.flat:
                    return np.nan
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
    an SD of 3 and 1e-9 with 100 nodes; a slope, 40 against 60 nodes). With a zero part
    the rule is centred at each level's highest mode (within 1.1e-5 of
    ``truth.marginal_loglik`` for one effect at SDs up to 2.5, hurdle and zero-inflated),
    its scale that of a curvature of at least :data:`RULE_CURVATURE_FLOOR` (a nearly
    flat top, curvature 6e-7 in a fuzz data set, spread the rule's nodes over thousands
    of prior SDs: 40 nodes were 4e4 off; with the floor 40, 80 and 120 nodes agree to
    3.5e-4 there, a level whose density is far from normal); a
    second mode beyond the rule's reach (about 9 of its SDs from the first) would be
    left out.
    """
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
    if not_log_concave(data):
        # a nearly flat top (a curvature near 0, where the density is not log-concave)
        # would spread the rule far beyond the prior's reach: its scale at most that of
        # a curvature of RULE_CURVATURE_FLOOR (the prior keeps the mass within a few
        # prior SDs)
        w_h, V_h = np.linalg.eigh(H)
        H = np.einsum("gab,gb,gcb->gac", V_h, np.maximum(w_h, RULE_CURVATURE_FLOOR), V_h)
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
