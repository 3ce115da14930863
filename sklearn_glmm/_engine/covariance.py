"""Covariance structures of one grouping factor's block of random effects.

A structure maps its parameters ``p`` (the optimiser's scale) to the covariance
``Sigma(p)`` of the factor's ``q`` random effects, and from there to the relative
Cholesky factor the objective works on: ``theta(p)``, the lower-triangular entries
of ``Lambda`` column by column (lme4's order), with its Jacobian ``d theta / d p``.
The optimiser sees ``p``; the gradient in ``p`` is ``J' g_theta``.

The structured ones here factor as ``Lambda = D(p) chol(R(p))``: standard
deviations ``D`` (bounded below by 0, like a Cholesky diagonal, so a zero variance
is a reachable boundary that the optimiser probes) times the Cholesky factor of a
correlation matrix ``R``. Their derivatives are exact: for the correlation part,
``d chol(R) = L Phi(L^{-1} dR L^{-T})`` with ``Phi`` the lower triangle and half
the diagonal.

To add a structure, subclass :class:`CorrelationStructure` with ``n_sd``,
``sd_index``, ``correlation`` / ``dcorrelation`` of its correlation parameters,
``cor_bounds``, ``cor_start``, its reported values (``cor_values``) and their inverse
(``cor_params``, for profiles), and register it in :data:`STRUCTURES`. A covariance
that extends to new times (``ar1``, ``ou``) also gives ``new_time_covariance``.
"""

from __future__ import annotations

import numpy as np


def _tril_columns(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the lower triangle, column by column (lme4's order)."""
    rows, cols = [], []
    for c in range(q):
        for r in range(c, q):
            rows.append(r)
            cols.append(c)
    return np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)


class CovarianceStructure:
    """A parametrisation of one factor's ``q x q`` covariance block.

    Attributes
    ----------
    name : str
        Its name in ``random_effects`` and in glmmTMB (``"ar1"``).
    q : int
        Number of random effects of a level.
    n_params : int
        Parameters the optimiser sees.
    identity : bool
        ``theta(p) = p`` (the unstructured and diagonal Cholesky parametrisations,
        which the objective reads directly).
    nests : frozenset
        The smaller blocks over the same columns that are special cases of this
        structure (likelihood-ratio tests against it are made for them):
        ``"intercept"`` (one random intercept: every correlation 1, equal variances),
        ``"diagonal"`` (uncorrelated effects with their own variances) and the names of
        other structures.
    """

    name = ""
    identity = False
    nests: frozenset = frozenset()

    def __init__(self, q: int):
        self.q = int(q)
        self.rows, self.cols = _tril_columns(self.q)

    # the optimiser's view
    def bounds(self) -> list:
        raise NotImplementedError

    def start(self, sd0: float) -> np.ndarray:
        raise NotImplementedError

    def theta(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def jacobian(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def zero_sd(self) -> list:
        """Indices (in ``p``) of the parameters whose value 0 is a zero variance."""
        return [k for k, (lo, _hi) in enumerate(self.bounds()) if lo == 0.0]

    def sd_columns(self, k: int) -> np.ndarray:
        """The random effects (indices into ``q``) whose standard deviation is the
        parameter ``k``; empty for a parameter that is not a standard deviation."""
        return np.zeros(0, dtype=np.intp)

    def lambda_matrix(self, p: np.ndarray) -> np.ndarray:
        L = np.zeros((self.q, self.q))
        L[self.rows, self.cols] = self.theta(p)
        return L

    def covariance(self, p: np.ndarray) -> np.ndarray:
        L = self.lambda_matrix(p)
        return L @ L.T


class CorrelationStructure(CovarianceStructure):
    """``Sigma = D R D``: standard deviations ``D`` and a correlation matrix ``R``.

    Parameters ``p = [sd parameters (n_sd), correlation parameters]``; every random
    effect ``i`` has the SD ``p[sd_index[i]]``.
    """

    n_sd = 1
    n_cor = 1
    cor_names: tuple = ()
    #: correlations the fit also starts from (``restarts._structure_restarts``): a
    #: correlation can have a local optimum on the other side of its start (an ``ar1``
    #: fit stopped at a positive rho, 0.9 below the optimum at a negative one)
    restart_correlations: tuple = ()
    #: correlations the fit also starts from with every SD small (``_SMALL_SD`` in
    #: ``restarts``), whatever the fit's correlation: a basin near a correlation of 1
    #: with an SD at 0 is narrow, and starts with the SDs at least their start miss it
    small_sd_restarts: tuple = ()
    #: correlations the fit also starts from with every SD at its start value (the
    #: pattern of SDs the fit reached left behind)
    start_sd_restarts: tuple = ()

    @property
    def n_params(self) -> int:
        return self.n_sd + self.n_cor

    @property
    def sd_index(self) -> np.ndarray:
        return np.zeros(self.q, dtype=np.intp) if self.n_sd == 1 else np.arange(self.q)

    def sd_columns(self, k: int) -> np.ndarray:
        if k >= self.n_sd:
            return np.zeros(0, dtype=np.intp)
        return np.flatnonzero(self.sd_index == k)

    def correlation(self, c: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def dcorrelation(self, c: np.ndarray) -> np.ndarray:
        """``dR / dc_k``, shape (n_cor, q, q)."""
        raise NotImplementedError

    def cor_bounds(self) -> list:
        raise NotImplementedError

    def cor_start(self) -> np.ndarray:
        raise NotImplementedError

    def bounds(self) -> list:
        return [(0.0, None)] * self.n_sd + list(self.cor_bounds())

    def start(self, sd0: float) -> np.ndarray:
        return np.concatenate([np.full(self.n_sd, float(sd0)), self.cor_start()])

    def _parts(self, p):
        p = np.asarray(p, dtype=float)
        d = p[: self.n_sd][self.sd_index]
        LR = np.linalg.cholesky(self.correlation(p[self.n_sd :]))
        return d, LR

    def theta(self, p) -> np.ndarray:
        d, LR = self._parts(p)
        return (d[:, None] * LR)[self.rows, self.cols]

    def jacobian(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        d, LR = self._parts(p)
        J = np.zeros((len(self.rows), self.n_params))
        for k in range(self.n_sd):
            # d Lambda / d sd_k: the rows of chol(R) that carry this SD
            M = np.where((self.sd_index == k)[:, None], LR, 0.0)
            J[:, k] = M[self.rows, self.cols]
        Linv = np.linalg.inv(LR)
        for k, dR in enumerate(self.dcorrelation(p[self.n_sd :])):
            S = Linv @ dR @ Linv.T
            Phi = np.tril(S) - 0.5 * np.diag(np.diag(S))
            dL = d[:, None] * (LR @ Phi)
            J[:, self.n_sd + k] = dL[self.rows, self.cols]
        return J

    # what users read
    def sds(self, p) -> np.ndarray:
        return np.asarray(p, dtype=float)[: self.n_sd][self.sd_index]

    def reported(self, p) -> np.ndarray:
        """The reported parameters: SDs, then the correlation parameters' values."""
        p = np.asarray(p, dtype=float)
        return np.concatenate([p[: self.n_sd], self.cor_values(p[self.n_sd :])])

    def cor_values(self, c) -> np.ndarray:
        raise NotImplementedError

    def reported_kinds(self) -> list:
        return ["sd"] * self.n_sd + list(self.cor_kinds)

    def cor_params(self, values) -> np.ndarray | None:
        """The correlation parameters with these reported values (the inverse of
        :meth:`cor_values`); None when no parameters inside the bounds give them."""
        raise NotImplementedError

    def from_reported(self, values) -> np.ndarray | None:
        """Parameters ``p`` with these reported values (the inverse of :meth:`reported`);
        None outside the structure's domain (a negative SD, a correlation beyond its
        bound, lag correlations of no positive definite matrix)."""
        values = np.asarray(values, dtype=float)
        sds = values[: self.n_sd]
        if np.any(sds < 0):
            return None
        c = self.cor_params(values[self.n_sd :])
        return None if c is None else np.concatenate([sds, c])

    #: the covariance extends to times not seen in fit (``ar1``, ``ou``)
    extends_in_time = False

    def new_time_covariance(self, S, levels, t):
        """Covariances of the random effects at new times ``t`` with those at the fitted
        ``levels`` (shape (len(t), q)) and their variances (len(t),), read from the
        fitted covariance ``S`` of the levels."""
        raise NotImplementedError(
            f"{self.name}: the covariance has no value at a time not seen in fit"
        )

    def reported_bounds(self) -> list:
        """Bounds of the reported parameters: the images of the optimiser's bounds."""
        out = [(0.0, None)] * self.n_sd
        for lo, hi in self.cor_bounds():
            v_lo, v_hi = (self.cor_values(np.array([v]))[0] for v in (lo, hi))
            out.append((float(min(v_lo, v_hi)), float(max(v_lo, v_hi))))
        return out

    def at_boundary(self, p) -> bool:
        """A correlation parameter on its bound (|correlation| near 1)."""
        c = np.asarray(p, dtype=float)[self.n_sd :]
        return any(
            (lo is not None and v <= lo + 1e-6) or (hi is not None and v >= hi - 1e-6)
            for v, (lo, hi) in zip(c, self.cor_bounds())
        )


def _rho(a):
    """glmmTMB's correlation transform ``a / sqrt(1 + a^2)`` and its derivative."""
    a = np.asarray(a, dtype=float)
    s = np.sqrt(1.0 + a * a)
    return a / s, 1.0 / (s * s * s)


def _a_of_rho(r: float) -> float:
    return r / np.sqrt(1.0 - r * r)


def _bounded_a(values, bounds) -> np.ndarray | None:
    """``a`` of correlations ``values`` (``rho = a / sqrt(1 + a^2)``), None when one is
    outside its bounds on the ``a`` scale (a little slack for rounding)."""
    r = np.asarray(values, dtype=float)
    if np.any(np.abs(r) >= 1.0):
        return None
    a = r / np.sqrt(1.0 - r * r)
    for v, (lo, hi) in zip(a, bounds):
        if v < lo * (1 + 1e-9) - 1e-12 or v > hi * (1 + 1e-9) + 1e-12:
            return None
    return np.clip(a, [lo for lo, _ in bounds], [hi for _, hi in bounds])


# |correlation| at most 0.9999: beyond it chol(R) loses most of its digits
_RHO_MAX = 0.9999


class AR1(CorrelationStructure):
    """First-order autoregressive: one SD, ``corr(b_i, b_j) = rho^|i - j|``.

    ``i, j`` are the positions of the time factor's sorted levels (glmmTMB's ``ar1``:
    unit-spaced levels), ``rho = a / sqrt(1 + a^2)`` of the parameter ``a``.
    """

    name = "ar1"
    nests = frozenset({"intercept"})
    cor_kinds = ("cor",)
    extends_in_time = True
    # (-0.95: beside a (1 | site) term a Poisson fit of 8 people x 4 times stopped at
    # rho = +0.9999, 0.035 in -2 log L above the optimum at -0.9999, whose basin is as
    # narrow as the one next to +1; last, so that the others run as they did)
    restart_correlations = (-0.6, 0.6, 0.95, -0.95)

    def __init__(self, q: int):
        super().__init__(q)
        idx = np.arange(self.q)
        self.lag = np.abs(idx[:, None] - idx[None, :])

    def correlation(self, c):
        rho = _rho(c[0])[0]
        return rho**self.lag

    def dcorrelation(self, c):
        rho, dr = _rho(c[0])
        lag = self.lag
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(lag > 0, lag * rho ** np.maximum(lag - 1, 0), 0.0)
        return (d * dr)[None]

    def cor_bounds(self):
        a = _a_of_rho(_RHO_MAX)
        return [(-a, a)]

    def cor_start(self):
        return np.array([_a_of_rho(0.3)])

    def cor_values(self, c):
        return np.array([_rho(c[0])[0]])

    def cor_params(self, values):
        return _bounded_a(values, self.cor_bounds())

    def new_time_covariance(self, S, levels, t):
        """The levels are positions 0, 1, ... one step apart; a new time extends them
        when the levels are equally spaced and it falls on their grid (day 8 after days
        1..6 is position 7): ``sigma^2 rho^|position - i|``."""
        levels = np.asarray(levels, dtype=float)
        steps = np.diff(levels)
        h = steps[0]
        if not np.allclose(steps, h, rtol=1e-9, atol=0.0):
            raise ValueError(
                "ar1 takes the fitted time values as consecutive steps; they are not equally "
                f"spaced ({levels.tolist()}), so a new time has no position among them (ou "
                "uses the times themselves)"
            )
        pos = (np.asarray(t, dtype=float) - levels[0]) / h
        off = np.abs(pos - np.round(pos)) > 1e-9 * np.maximum(1.0, np.abs(pos))
        if off.any():
            raise ValueError(
                f"ar1 over time values {levels[0]:g}, {levels[0] + h:g}, ... (steps of {h:g}): "
                f"the new time {float(np.asarray(t)[off][0])!r} is not on that grid (ou takes "
                "continuous times)"
            )
        var = S[0, 0]
        rho = S[0, 1] / var if var > 0 else 0.0
        lag = np.abs(np.round(pos)[:, None] - np.arange(len(levels))[None, :])
        return var * rho**lag, np.full(len(pos), var)


class CompoundSymmetry(CorrelationStructure):
    """Heterogeneous compound symmetry (glmmTMB's ``cs``): one SD per random effect and
    one correlation ``rho`` between every pair, ``rho > -1 / (q - 1)``."""

    name = "cs"
    nests = frozenset({"intercept", "diagonal"})
    cor_kinds = ("cor",)
    restart_correlations = (-0.2, 0.6, 0.95)  # (those below -1 / (q - 1) are skipped)
    # (Poisson cs fits of 5-9 levels x 4 times: 7 of 300 converged 0.06-4.6 in -2 log L
    # above the optimum at rho near 1 with an SD at 0, which a start at 0.99 with the
    # SDs at 0.1 reached in each; none from the other starts in 2 of them)
    small_sd_restarts = (0.99,)
    # (a binomial cs fit with a (1 | site) term, 7 people x 6 times, stopped converged at
    # rho -0.2, 1.21 in -2 log L above the optimum at 0.98 with another pattern of SDs,
    # which neither the fit's own SDs nor small ones reach from any correlation)
    start_sd_restarts = (0.95,)

    @property
    def n_sd(self) -> int:
        return self.q

    def correlation(self, c):
        rho = _rho(c[0])[0]
        return (1.0 - rho) * np.eye(self.q) + rho

    def dcorrelation(self, c):
        dr = _rho(c[0])[1]
        return ((1.0 - np.eye(self.q)) * dr)[None]

    def cor_bounds(self):
        lo = max(-1.0 / (self.q - 1), -1.0) * _RHO_MAX
        return [(_a_of_rho(lo), _a_of_rho(_RHO_MAX))]

    def cor_start(self):
        return np.array([_a_of_rho(0.3)])

    def cor_values(self, c):
        return np.array([_rho(c[0])[0]])

    def cor_params(self, values):
        return _bounded_a(values, self.cor_bounds())


class OrnsteinUhlenbeck(CorrelationStructure):
    """Ornstein-Uhlenbeck over continuous times (glmmTMB's ``ou``): one SD and
    ``corr(b_i, b_j) = exp(-rate |t_i - t_j|)`` with ``rate = exp(c)``; the random
    effects are one per distinct time ``t``."""

    name = "ou"
    nests = frozenset({"intercept"})
    # a rate is positive: reported, and given Wald intervals, as an SD is (log scale)
    cor_kinds = ("sd",)
    extends_in_time = True

    def __init__(self, times):
        times = np.asarray(times, dtype=float)
        super().__init__(len(times))
        self.times = times
        self.dist = np.abs(times[:, None] - times[None, :])
        gaps = np.diff(np.sort(times))
        self._gap = float(np.median(gaps)) if len(gaps) else 1.0

    def correlation(self, c):
        return np.exp(-np.exp(c[0]) * self.dist)

    def dcorrelation(self, c):
        rate = np.exp(c[0])
        return (-rate * self.dist * np.exp(-rate * self.dist))[None]

    def cor_bounds(self):
        # correlations between neighbouring times from 1 - 1e-4 to exp(-50)
        g = self._gap if self._gap > 0 else 1.0
        return [(float(np.log(1e-4 / g)), float(np.log(50.0 / g)))]

    def cor_start(self):
        # a correlation of 0.5 between neighbouring times
        return np.array([np.log(np.log(2.0) / (self._gap if self._gap > 0 else 1.0))])

    def cor_values(self, c):
        return np.array([np.exp(c[0])])

    def cor_params(self, values):
        (lo, hi), rate = self.cor_bounds()[0], float(np.asarray(values, dtype=float)[0])
        if not rate > 0:
            return None
        c = np.log(rate)
        if c < lo - 1e-9 * abs(lo) - 1e-12 or c > hi + 1e-9 * abs(hi) + 1e-12:
            return None
        return np.array([min(max(c, lo), hi)])

    def new_time_covariance(self, S, levels, t):
        """``sigma^2 exp(-rate |t - t_i|)``, the rate read from the correlation of the
        first time with the one where it is nearest ``exp(-1)`` (``rate`` times their
        gap near 1: the first two times can be so close that their correlation rounds
        to 1 in its last digits, and ``rate`` read from it is then imprecise)."""
        levels = np.asarray(levels, dtype=float)
        var = S[0, 0]
        r = S[0, 1:] / var if var > 0 else np.zeros(len(levels) - 1)  # exp(-rate gap)
        gaps = levels[1:] - levels[0]
        inside = np.flatnonzero((r > 0.0) & (r < 1.0))
        k = inside[np.argmin(np.abs(np.log(-np.log(r[inside]))))] if len(inside) else 0
        d = np.abs(np.asarray(t, dtype=float)[:, None] - levels[None, :])
        with np.errstate(divide="ignore"):
            cor = np.power(max(r[k], 0.0), d / gaps[k])
        return var * cor, np.full(d.shape[0], var)


def _durbin_levinson(phi: np.ndarray) -> np.ndarray:
    """Autocorrelations ``r_1 .. r_m`` of a stationary process from its partial
    autocorrelations ``phi`` (each in (-1, 1)): every such ``phi`` gives a positive
    definite Toeplitz correlation matrix."""
    m = len(phi)
    r = np.zeros(m + 1)
    r[0] = 1.0
    a = np.zeros(0)  # AR coefficients of the current order
    v = 1.0  # innovation variance of the current order
    for k in range(1, m + 1):
        p = phi[k - 1]
        r[k] = p * v + (a @ r[k - 1 : 0 : -1] if k > 1 else 0.0)
        a = np.concatenate([a - p * a[::-1], [p]])
        v *= 1.0 - p * p
    return r[1:]


def _partial_autocorrelations(r: np.ndarray) -> np.ndarray | None:
    """The inverse of :func:`_durbin_levinson` (Levinson's recursion): partial
    autocorrelations of the lag correlations ``r_1 .. r_m``; None when they are the
    correlations of no positive definite Toeplitz matrix."""
    r = np.r_[1.0, np.asarray(r, dtype=float)]
    m = len(r) - 1
    phi = np.zeros(m)
    a = np.zeros(0)
    v = 1.0
    for k in range(1, m + 1):
        num = r[k] - (a @ r[k - 1 : 0 : -1] if k > 1 else 0.0)
        if v <= 0:
            return None
        p = num / v
        if abs(p) >= 1.0:
            return None
        phi[k - 1] = p
        a = np.concatenate([a - p * a[::-1], [p]])
        v *= 1.0 - p * p
    return phi


class Toeplitz(CorrelationStructure):
    """Heterogeneous Toeplitz (glmmTMB's ``toep``): one SD per random effect and one
    correlation per lag, ``corr(b_i, b_j) = r_{|i - j|}``, over the sorted levels.

    The correlation parameters are the partial autocorrelations
    ``phi_k = a_k / sqrt(1 + a_k^2)``, mapped to the lag correlations by the
    Durbin-Levinson recursion: every value inside the bounds is positive definite.
    Their derivatives are central differences (relative error ~1e-9).
    """

    name = "toep"
    nests = frozenset({"intercept", "diagonal", "cs", "ar1"})

    def __init__(self, q: int):
        super().__init__(q)
        idx = np.arange(self.q)
        self.lag = np.abs(idx[:, None] - idx[None, :])
        self.cor_kinds = ("cor",) * (self.q - 1)

    @property
    def n_sd(self) -> int:
        return self.q

    @property
    def n_cor(self) -> int:
        return self.q - 1

    def cor_values(self, c):
        return _durbin_levinson(_rho(np.asarray(c, dtype=float))[0])

    def cor_params(self, values):
        phi = _partial_autocorrelations(values)
        return None if phi is None else _bounded_a(phi, self.cor_bounds())

    def reported_bounds(self):
        # the lag correlations' joint domain is not a box: (-1, 1) each, and
        # from_reported says None outside it
        return [(0.0, None)] * self.n_sd + [(-1.0, 1.0)] * self.n_cor

    def correlation(self, c):
        return np.r_[1.0, self.cor_values(c)][self.lag]

    def dcorrelation(self, c):
        c = np.asarray(c, dtype=float)
        out = np.zeros((len(c), self.q, self.q))
        for k in range(len(c)):
            h = 1e-6 * max(1.0, abs(c[k]))
            up, dn = c.copy(), c.copy()
            up[k] += h
            dn[k] -= h
            out[k] = (self.correlation(up) - self.correlation(dn)) / (2 * h)
        return out

    def cor_bounds(self):
        a = _a_of_rho(_RHO_MAX)
        return [(-a, a)] * (self.q - 1)

    def cor_start(self):
        # AR(1)-like: 0.3 at lag 1, partial autocorrelations 0 beyond
        return np.r_[_a_of_rho(0.3), np.zeros(self.q - 2)]


class Unstructured(CovarianceStructure):
    """lme4's relative Cholesky factor, every lower-triangular entry a parameter
    (``us``), or only its diagonal (``diag``): ``theta(p) = p``."""

    identity = True

    def __init__(self, q: int, diagonal: bool = False):
        super().__init__(q)
        self.name = "diag" if diagonal else "us"
        if diagonal:
            self.rows = self.cols = np.arange(self.q)
        self.n_params = len(self.rows)

    def bounds(self):
        return [(0.0, None) if r == c else (None, None) for r, c in zip(self.rows, self.cols)]

    def start(self, sd0: float) -> np.ndarray:
        return np.where(self.rows == self.cols, float(sd0), 0.0)

    def theta(self, p):
        return np.asarray(p, dtype=float)

    def jacobian(self, p):
        return np.eye(self.n_params)

    def sd_columns(self, k: int) -> np.ndarray:
        if self.rows[k] != self.cols[k]:
            return np.zeros(0, dtype=np.intp)
        return np.array([self.rows[k]], dtype=np.intp)


#: structures selected by name in ``random_effects`` (``"ar1(day)"``); ``ou`` reads
#: the time values, the others the number of levels
STRUCTURES = {"ar1": AR1, "cs": CompoundSymmetry, "toep": Toeplitz, "ou": OrnsteinUhlenbeck}


def make_structure(name: str, levels) -> CorrelationStructure:
    """The structure ``name`` over the sorted distinct ``levels`` of the time variable."""
    if name == "ou":
        return OrnsteinUhlenbeck(np.asarray(levels, dtype=float))
    return STRUCTURES[name](len(levels))
