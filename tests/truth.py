"""Reference log-likelihoods of GLMMs, computed without the library's engine.

A GLMM with ONE grouping factor and a scalar random intercept ``b_g ~ N(0, sigma^2)``:

.. math::

    \\log L = \\sum_g \\log \\int \\prod_{i \\in g} p(y_i \\mid x_i^\\top \\beta + o_i + b)^{w_i}
        \\, \\phi(b; 0, \\sigma^2) \\, db

for binomial (binary, or successes out of ``trials``) and Poisson outcomes, NB2 with size
``theta`` (log link), each optionally zero-inflated with a constant probability ``zi``; and
NB1 (``"negbin1"``, Var = mu (1 + phi), optionally zero-inflated) and the beta-binomial
(``"betabinomial"``, logit link, dispersion ``phi``), whose densities are in
``truth_families.py``.
Every constant is included (log binomial coefficients, ``-log y!``), as in the library's
``loglik_``. Only numpy and scipy are used: nothing here imports ``sklearn_glmm``.

- :func:`marginal_loglik`: the integral by brute force, a trapezoid rule on a
  ``sinh``-stretched grid around each group's mode that reaches out until the integrand
  has fallen by ``exp(-45)`` (for a smooth, decaying integrand the trapezoid rule
  converges geometrically; ``test_fuzz_truth.py`` compares it with
  ``scipy.integrate.quad``, closed forms and a 200-node Gauss-Hermite sum);
- :func:`laplace_loglik`: the Laplace approximation at each group's highest mode (a grid
  of starts, then damped Newton steps) with its exact curvature;
- :func:`agq_loglik`: adaptive Gauss-Hermite quadrature with a given number of nodes,
  centred at the same modes;
- :func:`glm_loglik`: the maximised log-likelihood of the nested GLM (no random effect;
  NB's theta and the zero-inflation probability free);
- :func:`best_nearby`: Nelder-Mead (then Powell, when that improved anything) from a
  given point, to see whether a better maximum lies next to a fit's;
- :func:`fixed_effect_standard_errors`: the fixed effects' standard errors from the
  Hessian of any of these log-likelihoods at its maximum, by central second differences
  extrapolated over a ladder of steps (Richardson), with an estimate of their error.
  For those differences the NB2 log-density keeps its terms in ``y`` free of rounding
  that grows with ``y`` (log-Gamma ratios by Stirling's series for large counts).

``params`` is a dict: ``beta`` (coefficients of the columns of ``data.X``, the intercept
column included), ``sigma`` (the random intercept's SD, 0 allowed), ``theta`` (NB only;
``inf`` is the Poisson limit), ``phi`` (NB1: 0 is the Poisson limit; beta-binomial:
``inf`` is the binomial limit) and ``zi`` (zero-inflated models only).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import truth_families
import truth_hurdle
from numpy.polynomial.hermite_e import hermegauss
from scipy import optimize, special

FAMILIES = ("binomial", "poisson", "negbin", "negbin1", "betabinomial")
BINOMIAL_FAMILIES = ("binomial", "betabinomial")  # successes out of trials
_LOG_2PI = float(np.log(2.0 * np.pi))
_DROP = 45.0  # the integrand is followed until it falls below exp(-_DROP) of its peak
_DV = 0.04  # largest step of the trapezoid rule in the stretched variable


@dataclass
class GLMMData:
    """Outcomes, design (intercept column included) and one grouping factor.

    ``groups`` holds level codes ``0 .. G-1`` (every level present). ``trials`` is for the
    binomial family (``None``: one trial per row); ``weights`` multiply each row's
    log-density; ``offset`` is added to the linear predictor.
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    family: str
    trials: np.ndarray | None = None
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    zero_inflation: bool = False
    # the models of truth_hurdle.py: a zero-truncated count part (``truncated``), a hurdle
    # (``hurdle``: P(Y = 0) = pi, the count part truncated), the design of the zero part's
    # logit (``zi_design``, hurdle or zero inflation; params ``zi_beta``) and of NB2's log
    # theta (``disp_design``; params ``disp_beta``)
    truncated: bool = False
    hurdle: bool = False
    zi_design: np.ndarray | None = None
    disp_design: np.ndarray | None = None
    # derived: rows sorted by group for the level sums
    _order: np.ndarray = field(init=False, repr=False)
    _starts: np.ndarray = field(init=False, repr=False)
    _row_group: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.zero_inflation and self.family in BINOMIAL_FAMILIES:
            raise ValueError("zero inflation is for the count families")
        self.X = np.asarray(self.X, dtype=float)
        if self.X.ndim == 1:
            self.X = self.X[:, None]
        n = self.X.shape[0]
        self.y = np.asarray(self.y, dtype=float)
        codes = np.asarray(self.groups)
        if codes.dtype.kind not in "iu":
            codes = np.unique(codes, return_inverse=True)[1]
        self.groups = codes.astype(np.int64)
        if self.groups.min() < 0 or set(np.unique(self.groups)) != set(range(self.n_groups)):
            raise ValueError("groups must be codes 0 .. G-1 with every level present")
        self.trials = np.ones(n) if self.trials is None else np.asarray(self.trials, float)
        self.weights = np.ones(n) if self.weights is None else np.asarray(self.weights, float)
        self.offset = np.zeros(n) if self.offset is None else np.asarray(self.offset, float)
        self._order = np.argsort(self.groups, kind="stable")
        sorted_codes = self.groups[self._order]
        self._starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        self._row_group = sorted_codes
        for name in ("zi_design", "disp_design"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=float).reshape(n, -1))

    @property
    def extended(self) -> bool:
        """A model of ``truth_hurdle.py`` (truncation, hurdle, designs of the zero part or
        the dispersion)."""
        return (
            self.truncated
            or self.hurdle
            or self.zi_design is not None
            or self.disp_design is not None
        )

    @property
    def zero_part(self) -> bool:
        """A zero part with its own probability (zero inflation or a hurdle)."""
        return self.zero_inflation or self.hurdle

    def subset(self, rows) -> GLMMData:
        """The rows ``rows`` (a boolean mask) as one group, every field kept."""
        return GLMMData(
            self.X[rows],
            self.y[rows],
            np.zeros(int(np.sum(rows)), dtype=int),
            self.family,
            self.trials[rows],
            self.weights[rows],
            self.offset[rows],
            self.zero_inflation,
            self.truncated,
            self.hurdle,
            None if self.zi_design is None else self.zi_design[rows],
            None if self.disp_design is None else self.disp_design[rows],
        )

    def with_X(self, X) -> GLMMData:
        """The same data with the design ``X``."""
        return GLMMData(
            X,
            self.y,
            self.groups,
            self.family,
            self.trials,
            self.weights,
            self.offset,
            self.zero_inflation,
            self.truncated,
            self.hurdle,
            self.zi_design,
            self.disp_design,
        )

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1

    def group_sums(self, v: np.ndarray) -> np.ndarray:
        """Sums over each group's rows of ``v`` (n,) or (n, K): shape (G,) or (G, K)."""
        return np.add.reduceat(v[self._order], self._starts, axis=0)

    def eta(self, beta) -> np.ndarray:
        return self.X @ np.asarray(beta, dtype=float) + self.offset


# -- the conditional log-density and its derivatives in eta -------------------------


def _log_choose(n, k):
    return special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)


def _y_minus_mu(y, eta):
    """y - exp(eta), for large y as -y expm1(eta - log y) (no cancellation)."""
    ypos = np.where(y > 0, y, 1.0)
    with np.errstate(over="ignore"):
        return np.where(y > 0, -y * np.expm1(eta - np.log(ypos)), -np.exp(eta))


def _poisson(y, eta):
    """log p, d/deta, d2/deta2; log p = y (r - expm1 r) + log p(y | mu = y), r = eta - log y."""
    ypos = np.where(y > 0, y, 1.0)
    log_y = np.log(ypos)
    with np.errstate(over="ignore", invalid="ignore"):
        r = eta - log_y
        mu = np.exp(eta)
        dev = np.where(y > 0, y * (r - np.expm1(r)), -mu)
    sat = np.where(y > 0, y * log_y - y - special.gammaln(y + 1.0), 0.0)
    return dev + sat, _y_minus_mu(y, eta), -mu


def _lgamma_ratio(y, theta):
    """log Gamma(y + theta) - log Gamma(theta) - log y!, for y >= 0.

    Up to y = 1000 as log Gamma(y) - log B(y, theta) - log y!; above, whose log
    Gammas are large numbers (6e9 at y = 3e8) whose rounding would move with theta,
    from Stirling's series: with a = y + 1, c = theta - 1, log Gamma(a + c) - log Gamma(a)
    = (a - 1/2) log1p(c / a) + c log(a + c) - c + tail(a + c) - tail(a).
    """
    ypos = np.where(y > 0, y, 1.0)
    small = special.gammaln(ypos) - special.betaln(ypos, theta) - special.gammaln(ypos + 1.0)
    a = np.maximum(ypos, 1000.0) + 1.0
    c = theta - 1.0
    large = (
        (a - 0.5) * np.log1p(c / a)
        + c * np.log(a + c)
        - c
        + _stirling_tail(a + c)
        - _stirling_tail(a)
        - special.gammaln(theta)
    )
    return np.where(y > 0, np.where(y > 1000.0, large, small), 0.0)


def _stirling_tail(x):
    """log Gamma(x) - [(x - 1/2) log x - x + log(2 pi) / 2], for x >= 10 (error < 1e-10)."""
    x2 = x * x
    return (1.0 / 12.0 - (1.0 / 360.0 - 1.0 / (1260.0 * x2)) / x2) / x


def _negbin(y, eta, theta, branch=None):
    """NB2's log p and its two eta-derivatives. ``branch`` (``"small"``, ``"large"``) takes
    one of the two computations whatever ``theta`` (then an array, one per row, allowed);
    ``None``: the one for the number ``theta`` (theta below 1e4, or not)."""
    if branch is None and not np.isfinite(theta):
        return _poisson(y, eta)
    log_theta = np.log(theta)
    with np.errstate(over="ignore", invalid="ignore"):
        log_tm = np.logaddexp(log_theta, eta)  # log(theta + mu)
        s = np.exp(log_theta - log_tm)  # theta / (theta + mu)
        r = np.exp(eta - log_tm)  # mu / (theta + mu)
        ymm = _y_minus_mu(y, eta)
        # theta log(theta / (theta + mu)), free of the cancellation of two large logs
        size_term = -theta * np.log1p(np.exp(eta - log_theta))
        # the terms in y are computed without rounding of order y x 1e-16 that moves with
        # eta (1e-6 with counts of 1e8, enough to spoil second differences)
        ypos = np.where(y > 0, y, 1.0)
        if branch == "small" or (branch is None and theta < 1e4):
            logp = _lgamma_ratio(y, theta) + size_term
            # y log(mu / (theta + mu)) = -y log1p(theta / mu)
            logp = logp + np.where(y > 0, -y * np.logaddexp(0.0, log_theta - eta), 0.0)
        else:
            # Stirling's series for log Gamma(y + theta) - log Gamma(theta) - y log(theta + y)
            # + y, then y log((theta + y) / (theta + mu)) = y log1p((y - mu) / (theta + mu))
            ratio = (theta - 0.5) * np.log1p(y / theta) + _stirling_tail(theta + y)
            ratio = ratio - _stirling_tail(theta)
            # y log y - y - log y!, by Stirling's series from y = 1000 (no large terms)
            log_y = np.log(ypos)
            big = np.maximum(ypos, 1000.0)
            fact = np.where(
                y >= 1000.0,
                -0.5 * (_LOG_2PI + np.log(big)) - _stirling_tail(big),
                ypos * log_y - ypos - special.gammaln(ypos + 1.0),
            )
            in_y = y * np.log1p(ymm / np.exp(log_tm)) + y * (eta - log_y) + fact
            logp = ratio + np.where(y > 0, in_y, 0.0) + size_term
    d1 = s * ymm
    d2 = -s * r * (y + theta)
    return logp, d1, d2


def _negbin_rows(y, eta, theta):
    """NB2 with a theta per row (``theta`` broadcasting with ``eta``; ``inf`` the Poisson),
    each row by :func:`_negbin`'s computation for its theta."""
    theta = np.broadcast_to(np.asarray(theta, dtype=float), np.broadcast(y, eta).shape)
    small = theta < 1e4
    large = ~small & np.isfinite(theta)
    a = _negbin(y, eta, np.where(small, theta, 1.0), "small")
    b = _negbin(y, eta, np.where(large, theta, 1e4), "large")
    c = _poisson(y, eta)
    return tuple(np.where(small, u, np.where(large, v, w)) for u, v, w in zip(a, b, c))


def _binomial(y, eta, trials):
    e = np.exp(-np.abs(eta))
    p = np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    pq = e / (1.0 + e) ** 2  # p (1 - p) without cancellation
    logp = y * eta - trials * np.logaddexp(0.0, eta) + _log_choose(trials, y)
    return logp, y - trials * p, -trials * pq


def _log_p0(family, eta, theta, phi=None):
    """log P(Y = 0) of the count part and its first two eta-derivatives."""
    if family == "negbin1" and phi > 0.0:
        return truth_families.negbin1_log_p0(eta, phi)
    mu = np.exp(np.minimum(eta, 700.0))
    if family in ("poisson", "negbin1") or not np.isfinite(theta):
        return -mu, -mu, -mu
    log_theta = np.log(theta)
    log_tm = np.logaddexp(log_theta, eta)
    s, r = np.exp(log_theta - log_tm), np.exp(eta - log_tm)
    return -theta * np.log1p(np.exp(eta - log_theta)), -theta * r, -theta * s * r


def row_logpdf(data: GLMMData, eta: np.ndarray, params: dict, derivatives: bool = True):
    """Weighted log p(y_i | eta_i) and its first two eta-derivatives; eta (n,) or (n, K).

    Overflow far out in the tails gives infinite or NaN values, which the callers treat
    as a zero density. ``derivatives=False``: NB1's and the beta-binomial's derivatives
    (polygamma functions, the costly part) are not computed and come back as zeros.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _row_logpdf(data, eta, params, derivatives)


def _rows(data, v, eta):
    """A per-row vector shaped to broadcast with ``eta`` ((n,) or (n, K))."""
    return v if eta.ndim == 1 else v[:, None]


def _row_logpdf_extended(data, eta, params, derivatives=True):
    """The models of ``truth_hurdle.py``: the count part (NB2 with a theta per row from
    ``disp_design``), truncated for a hurdle or a zero-truncated model, then the zero
    part (a hurdle's pi, or zero inflation's, constant or per row from ``zi_design``)."""
    y = _rows(data, data.y, eta)
    fam = data.family
    if fam == "poisson":
        count, rate = _poisson(y, eta), truth_hurdle.poisson_zero_rate(eta)
    elif fam == "negbin":
        if data.disp_design is not None:
            theta = _rows(data, np.exp(data.disp_design @ np.asarray(params["disp_beta"])), eta)
            count = _negbin_rows(y, eta, theta)
        else:
            theta = float(params.get("theta") or np.inf)
            count = _negbin(y, eta, theta)
        rate = truth_hurdle.negbin2_zero_rate(eta, theta)
    elif fam == "negbin1":
        phi = float(params["phi"])
        count = _poisson(y, eta) if phi == 0.0 else truth_families.negbin1(y, eta, phi, derivatives)
        rate = truth_hurdle.negbin1_zero_rate(eta, phi)
    else:
        raise ValueError(f"no truncated or hurdle model of the {fam} family")
    if data.zero_part:
        if data.zi_design is not None:
            logit_pi = _rows(data, data.zi_design @ np.asarray(params["zi_beta"]), eta)
        else:
            zi = float(params["zi"])
            logit_pi = special.logit(zi) if 0.0 < zi < 1.0 else (-np.inf if zi == 0 else np.inf)
    if data.truncated or data.hurdle:
        count = truth_hurdle.truncate(count, rate)
        if data.truncated:
            # a zero has probability 0 under a zero-truncated model
            count = (np.where(y >= 1, count[0], -np.inf), count[1], count[2])
    if data.hurdle:
        return truth_hurdle.hurdle(y, count, logit_pi)
    if data.zero_inflation:
        return truth_hurdle.zero_inflate(y, count, rate, logit_pi)
    return count


def _row_logpdf(data, eta, params, derivatives=True):
    if data.extended:
        w = _rows(data, data.weights, eta)
        logp, d1, d2 = _row_logpdf_extended(data, eta, params, derivatives)
        return (
            np.where(w > 0, w * logp, 0.0),
            np.where(w > 0, w * d1, 0.0),
            np.where(w > 0, w * d2, 0.0),
        )
    y = data.y if eta.ndim == 1 else data.y[:, None]
    w = data.weights if eta.ndim == 1 else data.weights[:, None]
    fam = data.family
    theta = float(params.get("theta") or np.inf) if fam == "negbin" else np.inf
    phi = float(params["phi"]) if fam in ("negbin1", "betabinomial") else None
    t = data.trials if eta.ndim == 1 else data.trials[:, None]
    if fam == "binomial" or (fam == "betabinomial" and np.isposinf(phi)):
        logp, d1, d2 = _binomial(y, eta, t)
    elif fam == "betabinomial":
        logp, d1, d2 = truth_families.betabinomial(y, eta, t, phi, derivatives)
    elif fam == "poisson" or (fam == "negbin1" and phi == 0.0):
        logp, d1, d2 = _poisson(y, eta)
    elif fam == "negbin1":
        logp, d1, d2 = truth_families.negbin1(y, eta, phi, derivatives)
    else:
        logp, d1, d2 = _negbin(y, eta, theta)
    if data.zero_inflation:
        pi = float(params["zi"])
        log_pi, log_1m = np.log(pi), np.log1p(-pi)
        a, a1, a2 = _log_p0(fam, eta, theta, phi)
        lz = np.logaddexp(log_pi, log_1m + a)
        r = np.exp(log_1m + a - lz)  # P(the zero came from the count part)
        zero = y == 0
        logp = np.where(zero, lz, log_1m + logp)
        d1 = np.where(zero, r * a1, d1)
        d2 = np.where(zero, r * a2 + r * (1.0 - r) * a1**2, d2)
    # rows of zero weight contribute nothing, whatever their density
    return (
        np.where(w > 0, w * logp, 0.0),
        np.where(w > 0, w * d1, 0.0),
        np.where(w > 0, w * d2, 0.0),
    )


# -- each group's integrand h(b) = log p(y_g | b) - b^2 / (2 sigma^2) --------------------


def _h(data, eta0, params, b, sigma, derivatives=True):
    """h at each group's value b (G,) or (G, K), with h' and h'' (zeros without
    ``derivatives`` for NB1 and the beta-binomial)."""
    B = b[data.groups]
    eta = eta0 if B.ndim == 1 else eta0[:, None]
    s2 = sigma * sigma
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ll, d1, d2 = row_logpdf(data, eta + B, params, derivatives)
        return (
            data.group_sums(ll) - 0.5 * b**2 / s2,
            data.group_sums(d1) - b / s2,
            data.group_sums(d2) - 1.0 / s2,
        )


def group_modes(data: GLMMData, params: dict, max_iter: int = 100):
    """Each group's mode of h (a grid of starts, then damped Newton), h and h'' there."""
    sigma = abs(float(params["sigma"]))
    eta0 = data.eta(params["beta"])
    G = data.n_groups
    grid = sigma * np.r_[0.0, np.linspace(-8.0, 8.0, 33)]
    hv = _h(data, eta0, params, np.broadcast_to(grid, (G, len(grid))), sigma, False)[0]
    hv = np.where(np.isfinite(hv), hv, -np.inf)
    b = grid[np.argmax(hv, axis=1)]
    h, d1, d2 = _h(data, eta0, params, b, sigma)
    # the rounding error of h: its terms grow like y |eta| (up to 1e9 with large counts)
    size = data.y + (data.trials if data.family in BINOMIAL_FAMILIES else 0.0)
    slack = 1e-15 * data.group_sums(
        data.weights * (size * (np.abs(eta0) + np.log1p(size) + 2.0) + 1.0)
    )
    done = np.zeros(G, dtype=bool)
    for _ in range(max_iter):
        # Newton where h is concave, else a step of sigma / 2 uphill
        concave = d2 < 0
        step = np.where(concave, -d1 / np.where(concave, d2, -1.0), 0.5 * sigma * np.sign(d1))
        gain = np.where(concave, 0.5 * d1 * step, np.inf)  # Newton's predicted increase
        done |= (np.abs(step) <= 1e-13 * (1.0 + np.abs(b))) | (gain <= 1e-13)
        if done.all():
            break
        t = np.where(done, 0.0, 1.0)
        for _ in range(30):
            b_new = b + t * step
            h_new, d1_new, d2_new = _h(data, eta0, params, b_new, sigma)
            ok = done | (np.isfinite(h_new) & (h_new >= h))
            if ok.all():
                break
            t = np.where(ok, t, 0.5 * t)
        # no step uphill, or a gain at the rounding of h: the mode to rounding, which the
        # polish below refines
        done |= ~ok | (ok & (h_new - h <= slack))
        take = ok
        b = np.where(take, b_new, b)
        h = np.where(take, h_new, h)
        d1 = np.where(take, d1_new, d1)
        d2 = np.where(take, d2_new, d2)
    # polish: Newton steps on h' = 0 while they shrink |h'| (where h is nearly flat, a
    # mode found to h's rounding can still be far off in b, and h'' with it)
    for _ in range(8):
        step = np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), 0.0)
        b_new = b + step
        h_new, d1_new, d2_new = _h(data, eta0, params, b_new, sigma)
        take = (np.abs(d1_new) < np.abs(d1)) & (h_new >= h - slack)
        if not take.any():
            break
        b = np.where(take, b_new, b)
        h = np.where(take, h_new, h)
        d1 = np.where(take, d1_new, d1)
        d2 = np.where(take, d2_new, d2)
    return b, h, d2


def _check_params(params):
    sigma = abs(float(params["sigma"]))
    if not np.all(np.isfinite(params["beta"])) or not np.isfinite(sigma):
        return None
    return sigma


def _no_random_effect(data, params):
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ll = row_logpdf(data, data.eta(params["beta"]), params)[0]
    return float(np.sum(ll))


def laplace_loglik(params: dict, data: GLMMData) -> float:
    """The Laplace approximation: sum_g h(b_g) - log(sigma^2 H_g) / 2, H = -h''(b_g)."""
    sigma = _check_params(params)
    if sigma is None:
        return np.nan
    if sigma == 0.0:
        return _no_random_effect(data, params)
    b, h, d2 = group_modes(data, params)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(h - 0.5 * np.log(-(sigma**2) * d2)))


def min_curvature(params: dict, data: GLMMData) -> float:
    """The smallest curvature of a group's penalised log-density at its mode, relative to
    the prior's (``-sigma^2 h''``; 1 for a group without data). ``inf`` without a random
    effect."""
    sigma = _check_params(params)
    if not sigma:
        return np.inf
    _, _, d2 = group_modes(data, params)
    return float(np.min(-(sigma**2) * d2))


def agq_loglik(params: dict, data: GLMMData, n_agq: int) -> float:
    """Adaptive Gauss-Hermite quadrature with ``n_agq`` nodes at each group's mode."""
    sigma = _check_params(params)
    if sigma is None:
        return np.nan
    if sigma == 0.0:
        return _no_random_effect(data, params)
    b, h, d2 = group_modes(data, params)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 1.0 / np.sqrt(-d2)
    z, w = hermegauss(n_agq)  # weights for exp(-z^2 / 2), summing to sqrt(2 pi)
    eta0 = data.eta(params["beta"])
    nodes = b[:, None] + s[:, None] * z[None, :]
    hk = _h(data, eta0, params, nodes, sigma, False)[0]
    terms = np.log(w)[None, :] + hk - h[:, None] + 0.5 * z[None, :] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        log_l = h - 0.5 * _LOG_2PI - np.log(sigma) + np.log(s) + special.logsumexp(terms, axis=1)
    return float(np.sum(log_l))


def _reach(data, eta0, params, b, h, scale, sigma, sign):
    """How far (in units of ``scale``) from the mode the integrand stays above exp(-_DROP)."""
    ladder = 2.0 ** np.arange(0, 27)  # up to 6.7e7 units
    pts = b[:, None] + sign * scale[:, None] * ladder[None, :]
    hv = _h(data, eta0, params, pts, sigma, False)[0]
    above = np.where(np.isfinite(hv), hv - h[:, None] > -_DROP, False)
    # the first ladder point beyond the last one still above the threshold
    last = np.where(above.any(axis=1), len(ladder) - 1 - np.argmax(above[:, ::-1], axis=1), -1)
    return ladder[np.minimum(last + 1, len(ladder) - 1)]


def log_integrals(data, params, sigma, modes, h_modes, d2_modes):
    """log of each group's integral of exp(h(b)) db (the brute-force trapezoid rule)."""
    eta0 = data.eta(params["beta"])
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 1.0 / np.sqrt(-d2_modes)
    s = np.where(np.isfinite(s) & (s > 0), s, sigma)
    # the grid's unit near the mode; at most 1 on the linear-predictor scale so that the
    # binomial integrand's complex singularities (distance pi) stay far in grid units
    unit = np.minimum(s, 1.0)
    hi = _reach(data, eta0, params, modes, h_modes, unit, sigma, +1.0)
    lo = _reach(data, eta0, params, modes, h_modes, unit, sigma, -1.0)
    v_lo, v_hi = -np.arcsinh(lo), np.arcsinh(hi)
    K = int(np.clip(np.ceil(np.max(v_hi - v_lo) / _DV), 64, 4000)) + 1
    frac = np.linspace(0.0, 1.0, K)
    v = v_lo[:, None] + (v_hi - v_lo)[:, None] * frac[None, :]
    dv = (v_hi - v_lo) / (K - 1)
    pts = modes[:, None] + unit[:, None] * np.sinh(v)
    hv = _h(data, eta0, params, pts, sigma, False)[0]
    log_jac = np.log(unit)[:, None] + np.log(np.cosh(v))
    terms = np.where(np.isfinite(hv), hv - h_modes[:, None], -np.inf) + log_jac
    terms[:, [0, -1]] -= np.log(2.0)  # trapezoid end weights
    return h_modes + np.log(dv) + special.logsumexp(terms, axis=1)


def marginal_loglik(params: dict, data: GLMMData) -> float:
    """The exact marginal log-likelihood (the integrals by brute force)."""
    sigma = _check_params(params)
    if sigma is None:
        return np.nan
    if sigma == 0.0:
        return _no_random_effect(data, params)
    b, h, d2 = group_modes(data, params)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_l = log_integrals(data, params, sigma, b, h, d2) - 0.5 * _LOG_2PI - np.log(sigma)
    return float(np.sum(log_l))


def marginal_loglik_quad(params: dict, data: GLMMData) -> float:
    """The same integrals by ``scipy.integrate.quad``, one group at a time (slow; for tests)."""
    from scipy import integrate

    sigma = abs(float(params["sigma"]))
    if sigma == 0.0:
        return _no_random_effect(data, params)
    b, h, d2 = group_modes(data, params)
    eta0 = data.eta(params["beta"])
    total = 0.0
    for g in range(data.n_groups):
        rows = data.groups == g
        sub = data.subset(rows)
        e0 = eta0[rows]

        def f(x, sub=sub, e0=e0, g=g):
            ll = row_logpdf(sub, e0 + x, params)[0].sum() - 0.5 * x * x / sigma**2
            return np.exp(ll - h[g])

        s = 1.0 / np.sqrt(-d2[g])
        pts = b[g] + s * np.array([-8.0, -4.0, -1.0, 0.0, 1.0, 4.0, 8.0])
        mid, _ = integrate.quad(
            f, pts[0], pts[-1], points=pts[1:-1], epsabs=0, epsrel=1e-12, limit=500
        )
        left, _ = integrate.quad(f, -np.inf, pts[0], epsabs=1e-300, epsrel=1e-12, limit=500)
        right, _ = integrate.quad(f, pts[-1], np.inf, epsabs=1e-300, epsrel=1e-12, limit=500)
        total += h[g] + np.log(mid + left + right) - 0.5 * _LOG_2PI - np.log(sigma)
    return float(total)


# -- the nested GLM ----------------------------------------------------------------------


def _glm_beta(data, params, beta0, max_iter=200):
    """Maximise the GLM log-likelihood over beta at fixed theta / zi (damped Newton)."""
    X = data.X
    beta = np.array(beta0, dtype=float)

    def value(bt):
        ll = row_logpdf(data, data.eta(bt), params)[0]
        v = float(np.sum(ll))
        return v if np.isfinite(v) else -np.inf

    f = value(beta)
    for _ in range(max_iter):
        _, d1, d2 = row_logpdf(data, data.eta(beta), params)
        grad = X.T @ d1
        H = X.T @ (-d2[:, None] * X)
        if np.all(np.isfinite(H)) and np.all(np.isfinite(grad)):
            step = np.linalg.lstsq(H, grad, rcond=1e-12)[0]
        else:  # (far out in the other parameters): the gradient step below, if finite
            step = np.full(len(beta), np.nan)
        if not np.all(np.isfinite(step)) or np.dot(step, grad) <= 0:
            step = grad / max(np.linalg.norm(grad), 1.0)
        t, improved = 1.0, False
        for _ in range(50):
            f_new = value(beta + t * step)
            if f_new >= f:
                improved = f_new > f + 1e-13 * abs(f)
                beta, f = beta + t * step, f_new
                break
            t *= 0.5
        if not improved:
            break
    return beta, f


def _start_beta(data):
    beta = np.zeros(data.X.shape[1])
    ones = np.flatnonzero(np.all(data.X == 1.0, axis=0))
    if len(ones):
        w = data.weights
        if data.family in BINOMIAL_FAMILIES:
            p = np.sum(w * data.y) / max(np.sum(w * data.trials), 1e-300)
            beta[ones[0]] = special.logit(np.clip(p, 1e-6, 1 - 1e-6))
        else:
            beta[ones[0]] = np.log(np.sum(w * data.y) / max(np.sum(w), 1e-300) + 1e-3)
        beta[ones[0]] -= np.average(data.offset, weights=np.where(w > 0, w, 0) + 1e-300)
    return beta


def glm_loglik(data: GLMMData) -> float:
    """The maximised log-likelihood of the GLM without random effects.

    beta by damped Newton at each NB theta, NB1 or beta-binomial phi / zero-inflation
    probability, those by a grid and then Brent (one of them) or Nelder-Mead (both), on
    the profile log-likelihood; the family's limit (Poisson, binomial) too.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _glm_loglik(data)


def _glm_loglik(data: GLMMData) -> float:
    centre, scale, _ = column_scaling(data)
    if data.extended:
        return _glm_loglik_extended(data.with_X((data.X - centre) / scale))
    data = GLMMData(
        (data.X - centre) / scale,
        data.y,
        data.groups,
        data.family,
        data.trials,
        data.weights,
        data.offset,
        data.zero_inflation,
    )
    beta0 = _start_beta(data)
    extras = []
    if data.family == "negbin":
        extras.append(("theta", np.linspace(-6.0, 24.0, 16)))
    elif data.family == "negbin1":  # log phi
        extras.append(("phi", np.linspace(-14.0, 8.0, 12)))
    elif data.family == "betabinomial":
        extras.append(("phi", np.linspace(-6.0, 18.0, 13)))
    if data.zero_inflation:
        extras.append(("zi", np.linspace(-8.0, 4.0, 9)))
    memo = {"beta": beta0}

    def to_params(z):
        p = {"beta": None, "sigma": 0.0}
        for (name, _), v in zip(extras, z):
            p[name] = float(np.exp(v)) if name in ("theta", "phi") else float(special.expit(v))
        return p

    def profile(z):
        p = to_params(z)
        beta, f = _glm_beta(data, p, memo["beta"])
        if np.isfinite(f):
            memo["beta"] = beta
        return f

    if not extras:
        return float(profile(()))
    grids = np.meshgrid(*[g for _, g in extras], indexing="ij")
    cands = np.column_stack([g.ravel() for g in grids])
    vals = np.array([profile(z) for z in cands])
    z0 = cands[int(np.argmax(vals))]
    best = float(np.max(vals))
    if len(extras) == 1:
        lo, hi = z0[0] - 2.0, z0[0] + 2.0
        res = optimize.minimize_scalar(
            lambda v: -profile([v]), bounds=(lo, hi), method="bounded", options={"xatol": 1e-7}
        )
        best = max(best, -float(res.fun))
    else:
        res = optimize.minimize(
            lambda z: -profile(z), z0, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-10}
        )
        best = max(best, -float(res.fun))
    if data.family == "negbin" and not data.zero_inflation:
        best = max(best, profile([np.inf]))  # the Poisson limit
    elif data.family in ("negbin1", "betabinomial") and not data.zero_inflation:
        # the Poisson (phi = 0) or binomial (phi = inf) limit
        best = max(best, profile([-np.inf if data.family == "negbin1" else np.inf]))
    return best


def _glm_loglik_extended(data: GLMMData) -> float:
    """:func:`glm_loglik` for the models of ``truth_hurdle.py`` (``X`` centred and
    scaled): beta by damped Newton at each value of the other coefficients (NB2's log theta
    or its design's, NB1's log phi, the zero part's logit or its design's), those by a
    grid of the dispersion's level, then Nelder-Mead; the family's limit too."""
    blocks = []  # (name, width, the column of ones of its design or None, start level)
    w = np.where(data.weights > 0, data.weights, 0.0)
    if data.family == "negbin":
        D = data.disp_design
        blocks.append(("disp", 1 if D is None else D.shape[1], _ones_column(D), None))
    elif data.family == "negbin1":
        blocks.append(("phi", 1, 0, None))
    if data.zero_part:
        share = np.sum(w * (data.y == 0)) / max(np.sum(w), 1e-300)
        level = special.logit(np.clip(share, 1e-9, 1 - 1e-9)) if data.hurdle else -1.0
        Z = data.zi_design
        blocks.append(("zi", 1 if Z is None else Z.shape[1], _ones_column(Z), level))
    memo = {"beta": _start_beta(data)}

    def to_params(z):
        p, k = {"beta": None, "sigma": 0.0}, 0
        for name, width, _, _ in blocks:
            v = np.asarray(z[k : k + width], float)
            k += width
            if name == "disp" and data.disp_design is not None:
                p["disp_beta"] = v
            elif name == "disp":
                p["theta"] = np.inf if v[0] >= 700.0 else float(np.exp(v[0]))
            elif name == "phi":
                p["phi"] = 0.0 if v[0] <= -700.0 else float(np.exp(min(v[0], 700.0)))
            elif data.zi_design is not None:
                p["zi_beta"] = v
            else:
                p["zi"] = float(special.expit(v[0]))
        return p

    def profile(z):
        beta, f = _glm_beta(data, to_params(z), memo["beta"])
        if np.isfinite(f):
            memo["beta"] = beta
        return f if np.isfinite(f) else -np.inf

    if not blocks:
        return float(profile(np.zeros(0)))

    def start(level0):
        z = []
        for _, width, ones, level in blocks:
            v = np.zeros(width)
            v[ones if ones is not None else 0] = level0 if level is None else level
            z.append(v)
        return np.concatenate(z)

    dispersion = blocks[0][0] in ("disp", "phi")
    levels = np.linspace(-4.0, 10.0, 8) if dispersion else [0.0]
    if blocks[0][0] == "phi":
        levels = np.linspace(-10.0, 4.0, 8)
    starts = [start(v) for v in levels]
    values = [profile(z) for z in starts]
    z0 = starts[int(np.argmax(values))]
    best = float(np.max(values))
    res = optimize.minimize(
        lambda z: -profile(z),
        z0,
        method="Nelder-Mead",
        options={"xatol": 1e-7, "fatol": 1e-10, "maxfev": 600 * len(z0)},
    )
    best = max(best, -float(res.fun))
    if dispersion and (blocks[0][0] == "phi" or data.disp_design is None):
        # the Poisson limit (theta = inf, phi = 0)
        limit = np.array(res.x, dtype=float)
        limit[0] = np.inf if blocks[0][0] == "disp" else -np.inf
        best = max(best, profile(limit))
    return best


def _ones_column(D):
    """The index of the column of ones of a design (0 without a design or such a column)."""
    if D is None:
        return 0
    ones = np.flatnonzero(np.all(D == 1.0, axis=0))
    return int(ones[0]) if len(ones) else 0


# -- parameters as one unconstrained vector, and polishing a maximum ---------------------


def column_scaling(data: GLMMData):
    """Centres and scales of the columns of X, and the intercept column (or ``None``).

    Non-constant columns are centred (when an intercept column, all ones, is there to
    take up the centres) and divided by their SD; constant columns are left as they are.
    """
    X = data.X
    sd = X.std(axis=0)
    const = sd == 0
    ones = np.flatnonzero(np.all(X == 1.0, axis=0))
    anchor = int(ones[0]) if len(ones) else None
    centre = np.where(const | (anchor is None), 0.0, X.mean(axis=0))
    return centre, np.where(const, 1.0, sd), anchor


def pack(params: dict, data: GLMMData) -> np.ndarray:
    """[beta of the centred and scaled columns, sigma, log theta (NB) or log phi (NB1,
    beta-binomial), logit zi (ZI)]."""
    centre, scale, anchor = column_scaling(data)
    beta = np.asarray(params["beta"], float)
    v = beta * scale
    if anchor is not None:  # the intercept becomes the linear predictor at the centres
        v[anchor] = beta[anchor] + np.sum(beta * centre)
    out = [v, [float(params["sigma"])]]
    if data.family == "negbin" and data.disp_design is not None:
        out.append(np.asarray(params["disp_beta"], float))  # raw log-theta coefficients
    elif data.family == "negbin":
        theta = params.get("theta")
        # the Poisson limit as a theta of 2e17: within rounding of it at counts of 1e7
        # (a theta of 5e8, log 20, was 0.011 below it on such data)
        out.append([40.0 if theta is None or not np.isfinite(theta) else np.log(theta)])
    elif data.family in ("negbin1", "betabinomial"):
        # the limits (NB1's phi = 0, the beta-binomial's phi = inf) as log phi = -+40,
        # within rounding of them
        with np.errstate(divide="ignore"):
            out.append([np.clip(np.log(float(params["phi"])), -40.0, 40.0)])
    if data.zero_part and data.zi_design is not None:
        out.append(np.asarray(params["zi_beta"], float))  # raw logit coefficients
    elif data.zero_part:
        # a hurdle's probability 0 (data without zeros) as logit -40
        with np.errstate(divide="ignore"):
            out.append([np.clip(special.logit(params["zi"]), -40.0, 40.0)])
    return np.concatenate(out)


def unpack(x: np.ndarray, data: GLMMData) -> dict:
    """The inverse of :func:`pack`."""
    centre, scale, anchor = column_scaling(data)
    p = data.X.shape[1]
    beta = np.asarray(x[:p], float) / scale
    if anchor is not None:
        beta[anchor] = x[anchor] - np.sum(np.delete(beta * centre, anchor))
    params = {"beta": beta, "sigma": abs(float(x[p]))}
    k = p + 1
    if data.family == "negbin" and data.disp_design is not None:
        width = data.disp_design.shape[1]
        params["disp_beta"] = np.asarray(x[k : k + width], float)
        k += width
    elif data.family == "negbin":
        params["theta"] = float(np.exp(min(x[k], 700.0)))
        k += 1
    elif data.family in ("negbin1", "betabinomial"):
        params["phi"] = float(np.exp(np.clip(x[k], -700.0, 700.0)))
        k += 1
    if data.zero_part and data.zi_design is not None:
        params["zi_beta"] = np.asarray(x[k : k + data.zi_design.shape[1]], float)
    elif data.zero_part:
        params["zi"] = float(special.expit(x[k]))
    return params


@dataclass
class Nearby:
    """What :func:`best_nearby` found: the best value and where (``x``), and the start's."""

    value: float
    x: np.ndarray
    start_value: float
    n_evaluations: int


def _curvature_steps(f, x0, f0):
    """Per coordinate, a step over which f falls by about 1/2 (second differences)."""
    steps = np.empty(len(x0))
    for k in range(len(x0)):
        h = 1e-3 * max(1.0, abs(x0[k]))
        for _ in range(8):
            e = np.zeros(len(x0))
            e[k] = h
            c = -(f(x0 + e) + f(x0 - e) - 2.0 * f0) / h**2
            if np.isfinite(c) and c * h * h < 1.0:
                break
            h /= 10.0
        steps[k] = 1.0 / np.sqrt(c) if np.isfinite(c) and c > 0 else 0.1 * max(1.0, abs(x0[k]))
        steps[k] = min(steps[k], 1.0 * max(1.0, abs(x0[k])))
    return steps


def best_nearby(fun, params, *, max_evaluations: int | None = None) -> Nearby:
    """Maximise ``fun`` (a function of a vector) from ``params`` by Nelder-Mead, then Powell.

    Coordinates are scaled by the function's curvature at the start, so that one unit
    of every coordinate costs about 1/2 in log-likelihood. Powell runs after
    Nelder-Mead only when Nelder-Mead improved on the start by more than 1e-4 (there
    is then a better point, which Powell may push further). Non-finite values count
    as ``-inf``.
    """
    x0 = np.asarray(params, dtype=float)
    count = [0]

    def f(x):
        count[0] += 1
        with np.errstate(all="ignore"):
            v = fun(x)
        return float(v) if np.isfinite(v) else -np.inf

    f0 = f(x0)
    steps = _curvature_steps(f, x0, f0)
    d = len(x0)
    maxfev = max_evaluations or 200 * d
    best = [f0, x0.copy()]

    def negf(z):
        x = x0 + steps * z
        v = f(x)
        if v > best[0]:
            best[0], best[1] = v, x
        return -v if np.isfinite(v) else np.inf

    # a non-finite value is +inf to the minimisers; Powell's line search then does
    # arithmetic on it (RuntimeWarnings, the search goes on)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _minimise(negf, d, maxfev, best, f0, count)


def _minimise(negf, d, maxfev, best, f0, count):
    """:func:`best_nearby`'s searches: Nelder-Mead, then Powell if that found better."""
    res = optimize.minimize(
        negf,
        np.zeros(d),
        method="Nelder-Mead",
        options={
            "initial_simplex": np.vstack([np.zeros(d), np.eye(d)]),
            "xatol": 1e-5,
            "fatol": 1e-9,
            "maxfev": maxfev,
        },
    )
    if best[0] > f0 + 1e-4:
        optimize.minimize(
            negf,
            res.x,
            method="Powell",
            options={"xtol": 1e-5, "ftol": 1e-11, "maxfev": maxfev},
        )
    return Nearby(best[0], best[1], f0, count[0])


# -- standard errors: the curvature of the log-likelihood at its maximum ------------------


@dataclass
class StandardErrors:
    """What :func:`fixed_effect_standard_errors` found.

    ``se``: the standard errors of ``beta`` (the columns of ``data.X``), ``None`` when not
    computed (``reason`` says why); ``error``: their estimated relative error (the
    largest over the coefficients); ``step``: the smallest of the steps behind the
    estimate, in units of each coordinate's ``scale``. ``other_se``: from the same
    Hessian, the standard errors of the other packed coordinates (``sigma``, then ``log
    theta`` for NB, ``logit zi`` with zero inflation), each with its own estimated
    relative error in ``other_error``.
    """

    se: np.ndarray | None
    error: float = np.nan
    other_se: np.ndarray | None = None
    other_error: np.ndarray | None = None
    step: float = np.nan
    scale: np.ndarray | None = None
    reason: str = ""
    n_evaluations: int = 0


def _coordinate_scales(f, x0, f0, cap):
    """Per coordinate, the distance over which ``f`` falls by about 1/2 (its curvature
    ``c`` by a second difference with ``c h^2`` between 1e-3 and 1, so that neither the
    rounding of ``f`` nor its higher derivatives dominate), at most ``cap``; ``None``
    where a coordinate's curvature is not positive."""
    d = len(x0)
    scale = np.empty(d)
    for k in range(d):
        h = 1e-3 * max(1.0, abs(x0[k]))
        if np.isfinite(cap[k]):
            h = min(h, 0.1 * cap[k])
        c = np.nan
        for _ in range(6):
            e = np.zeros(d)
            e[k] = h
            c = -(f(x0 + e) + f(x0 - e) - 2.0 * f0) / h**2
            if not (np.isfinite(c) and c > 0.0):
                h *= 10.0  # rounding (or a curvature of the wrong sign): a longer step
            elif c * h * h > 1.0:
                h = 0.3 / np.sqrt(c)
            elif c * h * h < 1e-3:
                h = 0.1 / np.sqrt(c)
            else:
                break
        if not (np.isfinite(c) and c > 0.0):
            return None
        scale[k] = min(1.0 / np.sqrt(c), cap[k])
    return scale


def difference_hessian(f, x0, f0, scale, h):
    """The Hessian of ``f`` at ``x0`` in the coordinates ``u`` of ``x = x0 + scale * u``
    by central second differences with step ``h`` in ``u``: the diagonal from
    ``f(x0 +- h e_i)``, the off-diagonal from ``f(x0 +- h (e_i + e_j))`` less the diagonal
    (``d (d + 1)`` evaluations, error ``O(h^2)`` in even powers of ``h``)."""
    d = len(x0)
    H = np.empty((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h * scale[i]
        H[i, i] = (f(x0 + e) + f(x0 - e) - 2.0 * f0) / h**2
    for i in range(d):
        for j in range(i + 1, d):
            e = np.zeros(d)
            e[i], e[j] = h * scale[i], h * scale[j]
            both = (f(x0 + e) + f(x0 - e) - 2.0 * f0) / h**2
            H[i, j] = H[j, i] = 0.5 * (both - H[i, i] - H[j, j])
    return H


def _rounding(f, x0, f0, scale, tau=1e-7):
    """The rounding error of ``f`` near ``x0``: half the largest symmetric second
    difference over ``tau`` scale units along two directions (where ``f`` itself moves
    by ``tau^2 / 2`` ~ 5e-15 at a maximum, the gradient's part cancelling)."""
    out = 0.0
    for v in (np.ones(len(x0)), (-1.0) ** np.arange(len(x0))):
        e = tau * scale * v
        out = max(out, 0.5 * abs(f(x0 + e) + f(x0 - e) - 2.0 * f0))
    return out


def fixed_effect_standard_errors(
    fun, params: dict, data: GLMMData, *, max_error=5e-4, packing=None, cap=None
):
    """Standard errors of ``beta`` from the Hessian of the log-likelihood ``fun`` (a
    function of :func:`pack`'s vector) at its maximum ``params``, by differences.

    The covariance of the estimates is the inverse of the negative Hessian over every
    parameter (``beta``, ``sigma``, ``log theta``, ``logit zi``); at a maximum its
    ``beta`` block does not depend on how the others are parametrised. Each coordinate
    is measured in its own scale (about one conditional standard error; ``sigma``'s at
    most ``sigma`` itself, the log-likelihood being even in ``sigma``). Hessians by
    central differences with steps ``h_k = 0.05 x 2^k`` scale units are extrapolated in
    pairs (Richardson: ``E_k = (4 H(h_k) - H(h_{k+1})) / 3``, error ``O(h^4)``).

    The error of the standard errors from ``E_k`` is estimated as the larger of two
    bounds. Truncation: their largest relative difference from those of ``H(h_k)``
    (whose truncation error is ``O(h^2)``, far above ``E_k``'s), or, where that is too
    large, from those of ``E_{k+1}`` (about 16 times ``E_k``'s). Rounding: with the
    rounding error ``eps`` of ``fun`` (:func:`_rounding`), each entry of ``E_k`` is off
    by at most about ``8.5 eps / h_k^2``, and a relative standard error by at most half
    the Hessian's error (Frobenius) times the norm of its inverse. ``E_0`` (steps 0.05
    and 0.1) is taken when its error is below ``max_error``; otherwise the pairs of
    extrapolations ``E_0`` and ``E_1`` (step 0.2 too), then also ``E_-1`` and ``E_1``
    (0.025, 0.4), then one step further on the side that did best, and the
    extrapolation with the smallest error. The steps are chosen for ``beta``'s standard
    errors; those of the other coordinates come from the same extrapolation, each with
    its own error estimate (the same two bounds).

    ``packing`` (``(pack, unpack)``, functions of ``params`` and of a vector; default
    this module's) and ``cap`` (each coordinate's largest scale; default ``sigma`` for
    the SD, unbounded elsewhere) let other parametrisations in (``truth_dense``'s).
    """
    pack_, unpack_ = packing or (lambda q: pack(q, data), lambda x: unpack(x, data))
    x0 = pack_(params)
    d, p = len(x0), data.X.shape[1]
    count = [0]

    def f(x):
        count[0] += 1
        with np.errstate(all="ignore"):
            return float(fun(x))

    f0 = f(x0)
    if cap is None:
        cap = np.full(d, np.inf)
        cap[p] = abs(float(params["sigma"]))
    scale = _coordinate_scales(f, x0, f0, np.asarray(cap, dtype=float))
    if scale is None:
        return StandardErrors(None, reason="not negative definite", n_evaluations=count[0])
    eps = _rounding(f, x0, f0, scale)
    # beta is linear in the packed coefficients: beta = J v
    J = np.column_stack([unpack_(np.eye(d)[k])["beta"] for k in range(p)])
    hessians, extrapolated = {}, {}

    def hessian(k):
        if k not in hessians:
            hessians[k] = difference_hessian(f, x0, f0, scale, 0.05 * 2.0**k)
        return hessians[k]

    def standard_errors(M):
        """Of beta, then of the other coordinates, from the Hessian ``M`` in scale units,
        and the norm of its inverse (None, inf unless negative definite)."""
        if not np.all(np.isfinite(M)):
            return None, np.inf
        lowest = np.linalg.eigvalsh(-M).min()
        if not lowest > 0.0:
            return None, np.inf
        cov = np.linalg.inv(-M) * np.outer(scale, scale)
        se_beta = np.sqrt(np.diag(J @ cov[:p, :p] @ J.T))
        return np.concatenate([se_beta, np.sqrt(np.diag(cov)[p:])]), 1.0 / lowest

    def se_at(k):
        """From the extrapolation ``E_k``, with its rounding bound."""
        if k not in extrapolated:
            se, norm = standard_errors((4.0 * hessian(k) - hessian(k + 1)) / 3.0)
            rounding = 0.5 * d * 8.5 * eps / (0.05 * 2.0**k) ** 2 * norm
            extrapolated[k] = se, rounding
        return extrapolated[k]

    def differ(a, b):
        if a is None or b is None:
            return np.full(d, np.inf)
        return np.abs(a / b - 1.0)

    def error(k, against):
        """E_k's error per coordinate (beta's, then the others'), its truncation judged
        against ``against``'s standard errors."""
        se, rounding = se_at(k)
        return np.maximum(differ(against, se), rounding)

    # the steps are chosen for beta's standard errors (the largest of their errors)
    errors = {0: error(0, standard_errors(hessian(0))[0])}
    if errors[0][:p].max() > max_error:
        errors = {0: error(0, se_at(1)[0])}
    if errors[0][:p].max() > max_error:
        errors[-1], errors[1] = error(-1, se_at(0)[0]), error(1, se_at(2)[0])
        best = min(errors, key=lambda j: errors[j][:p].max())
        if errors[best][:p].max() > max_error and best != 0:  # one step further that side
            errors[2 * best] = error(2 * best, se_at(2 * best + 1)[0])
    best = min(errors, key=lambda j: errors[j][:p].max())
    if not np.isfinite(errors[best][:p].max()):
        return StandardErrors(
            None, scale=scale, reason="not negative definite", n_evaluations=count[0]
        )
    se = se_at(best)[0]
    return StandardErrors(
        se[:p],
        float(errors[best][:p].max()),
        se[p:],
        errors[best][p:],
        0.05 * 2.0**best,
        scale,
        n_evaluations=count[0],
    )
