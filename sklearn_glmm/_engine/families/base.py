"""What every family declares, and the helpers the count families share.

Every family exposes the conditional log-density of ``y`` given the linear
predictor ``eta`` together with its first three derivatives in ``eta``. The
Laplace approximation needs the exact second derivative (the curvature ``w``)
and its analytic gradient needs the third (``w3 = dw/deta``).

A family holds its link by composition (:mod:`sklearn_glmm._links`) and declares
its own parameters as blocks (:mod:`sklearn_glmm._blocks`): ``log theta`` for the
negative binomial, ``logit pi`` for zero inflation, on an unconstrained scale and
optimised jointly with the fixed effects and covariance parameters. Code outside
the families asks the family (its link, its blocks, ``has_trials``, ``r_name``)
and never compares family names.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import special

from ..blocks import ParameterBlock, rows_of
from ..links import Link, LogLink
from .count_sums import polygamma_differences, psi3_differences, trigamma

_ETA_MAX = 700.0  # exp(700) is finite in float64; beyond it mu overflows
_GH_Z, _GH_W = hermegauss(32)
_GH_W = _GH_W / _GH_W.sum()


def log1p_exp(x):
    """``log(1 + exp(x))`` elementwise, as ``np.logaddexp(0, x)`` gives it (to a unit in
    the last place) in a fraction of its time: ``log1p(exp(x))``, exact wherever
    ``exp(x)`` is finite, and ``x`` itself beyond 700 (where ``log1p(exp(-x))`` is below
    1e-304). A scalar goes to ``np.logaddexp`` itself (no array to set up)."""
    if type(x) is not np.ndarray or not x.ndim:
        return np.logaddexp(0.0, x)
    if x.dtype.kind != "f":
        x = x.astype(float)
    with np.errstate(over="ignore"):
        v = np.log1p(np.exp(x))
    if not np.max(x, initial=-np.inf) <= _ETA_MAX:
        v = np.where(x > _ETA_MAX, x, v)
    return v


class Derivs(NamedTuple):
    """Per-observation log-density and its derivatives in ``eta``.

    ``loglik`` is log p(y | eta); ``d1`` its first derivative; ``w`` minus the
    second derivative (the curvature entering the Laplace Hessian); ``w3`` the
    derivative of ``w``. All are already multiplied by the prior weights.
    """

    loglik: np.ndarray
    d1: np.ndarray
    w: np.ndarray
    w3: np.ndarray


class NodeDerivs(NamedTuple):
    """What quadrature reads at its nodes (``eta`` of shape (k, n)), from one pass.

    ``loglik`` and ``d1`` (k, n), weighted as :class:`Derivs`. With the family's own
    parameters asked for, their partials of the log-density factored as
    ``d loglik_ki / d extra_e = sum_c rows[e, c, i] channels[c, k, i]``: ``channels``
    (C, k, n) vary with the node, ``rows`` (E, C, n) only with the row (an ordinal
    model's four thresholds move each row through its two cut points: C = 2), so a sum
    over the nodes is taken over the C channels, not the E parameters. ``rows`` None:
    the identity (C = E). ``channels`` None: not asked for.
    """

    loglik: np.ndarray
    d1: np.ndarray
    channels: np.ndarray | None
    rows: np.ndarray | None


def _weighted(weights, loglik, d1, w, w3) -> Derivs:
    """Apply prior weights (``None`` means all ones and skips the products)."""
    if weights is None:
        return Derivs(loglik, d1, w, w3)
    w3 = None if w3 is None else weights * w3  # None: left out (``third=False``)
    return Derivs(weights * loglik, weights * d1, weights * w, w3)


def _exp_mean(eta):
    """``exp(eta)`` for a model's mean (predictions, simulation, distributions): not
    capped, so a linear predictor beyond float64's range gives ``inf``, as R's
    ``exp``, never the finite ``exp(700)`` that the engine's derivatives use."""
    with np.errstate(over="ignore"):
        return np.exp(np.asarray(eta, dtype=float))


def _exp(eta):
    # only overflow needs guarding: exp underflows to 0 gracefully
    out = np.minimum(eta, _ETA_MAX)
    if isinstance(out, np.ndarray) and out.ndim:
        return np.exp(out, out=out)  # in place: one array of eta's size
    return np.exp(out)


class LimitRidge(NamedTuple):
    """A ridge on which a family tends to a limit distribution: the linear predictor's
    intercept and the blocks ``blocks`` (indices into the family's ``blocks``, each on
    the optimiser's scale) moving down together, one for one, without end.

    ``limit`` names the limit distribution and ``identified`` the combination of the
    parameters the data determine on the ridge (the warning's words)."""

    blocks: tuple[int, ...]
    limit: str
    identified: str


class Family:
    """What every family declares; the extra-parameter views are made from its blocks.

    Attributes
    ----------
    name : str
        Internal name (``"binomial"``, ``"poisson"``, ``"negbin"``, ``"zi_negbin"``).
    r_name : str
        The family's name in R (glmmTMB's ``nbinom2``, ``binomial``, ``poisson``).
    link : Link
        The link function object.
    blocks : tuple of ParameterBlock
        The family's own parameters, in the order the optimiser sees them.
    has_trials : bool
        Outcomes are successes out of trials (bounded): binomial.
    zero_inflated : bool
        A zero-inflation probability is part of the model.
    log_concave : bool
        The log-density is concave in ``eta`` everywhere (``w >= 0``).
    batches_extras : bool
        Refits of a model of this family with its own parameters (one value each,
        no design) can be batched (:mod:`~sklearn_glmm._engine.batched`): ``derivs``
        and ``extra_derivs`` take each parameter as an array of per-row values (one
        replicate's value on each of its rows), and ``extra_derivs`` is exact.
    latent_error : bool
        The outcome is a latent variable with an error of fixed variance cut into
        classes (ordinal): with one row per level, a random intercept is confounded
        with that error (as a binary outcome's is with the Bernoulli variance).
    limit_ridge : LimitRidge or None
        A ridge of the likelihood towards a limit distribution, along which the
        linear predictor's intercept and some of the family's own parameters move
        together (the zero-truncated NB2's, to the logarithmic series); None where
        the family has none.
    """

    name = ""
    r_name = ""
    link: Link = LogLink()
    blocks: tuple[ParameterBlock, ...] = ()
    has_trials = False
    zero_inflated = False
    log_concave = True
    batches_extras = False
    latent_error = False
    limit_ridge: LimitRidge | None = None
    # the ridge of this count family truncated at zero (``hurdle.Truncated``), if any
    limit_truncated: LimitRidge | None = None

    @property
    def n_extra(self) -> int:
        return len(self.blocks)

    @property
    def extra_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    @property
    def extra_bounds(self) -> tuple[tuple[float, float], ...]:
        return tuple(b.bounds for b in self.blocks)

    @property
    def extra_flat_side(self) -> tuple:
        return tuple(b.flat_side for b in self.blocks)

    def default_extra(self) -> np.ndarray:
        return np.array([b.start for b in self.blocks], dtype=float)

    # what a separated level's outcomes are, in words (see ``separated_levels``)
    separated_outcomes = "all outcomes 0 or all 1"

    def separated_levels(self, y, trials, codes, n_levels, use):
        """Per level, whether its outcomes (rows ``use``) sit at one end of what the
        family can observe, where its conditional mode runs off with the variance: for
        successes out of trials, all 0 or all successes; None for a family without
        such ends (counts)."""
        if not self.has_trials:
            return None
        succ = np.bincount(codes[use], y[use], minlength=n_levels)
        tot = np.bincount(codes[use], trials[use], minlength=n_levels)
        return (tot > 0) & ((succ <= 0) | (succ >= tot))

    def eta_shift(self):
        """Per block, ``d`` with the same likelihood at ``eta + c`` and the blocks'
        values plus ``c d``; None when no block absorbs a shift of ``eta`` (a design
        without an intercept is then not centred internally). A cumulative link
        model's thresholds do: its design, which has no intercept, is centred."""
        return None

    def mean_curvature(self, y, trials, weights) -> float:
        """Typical curvature of one row's log-density at the mean outcome (for scaling)."""
        wsum = np.sum(weights)
        if not wsum > 0:
            return 1.0
        return float(np.sum(weights * y) / wsum)

    long_name = ""

    def describe(self) -> str:
        """``binomial  ( logit )``, as R's summary prints the family."""
        return f"{self.r_name}  ( {self.link.name} )"

    def sentence_name(self) -> str:
        """The family in words, for reports: ``negative binomial (NB2, log link)``."""
        inner = self.long_name.partition(" (")
        detail = f"{inner[2][:-1]}, " if inner[1] else ""
        return f"{inner[0]} ({detail}{self.link.name} link)"

    # ``derivs`` takes ``third=False`` and then leaves ``w3`` out (None), to be made by
    # ``third_derivative`` where it is needed (the gradient, at the mode, not at every
    # trial point of the mode search)
    lazy_third = False
    # the optimiser is scaled by the curvature of the family's own parameters too from
    # the start (their curvature at the modes; else they leave the fit unscaled, see
    # stage._optimiser_scale): an ordinal model's thresholds, location parameters as
    # well-determined as the fixed effects
    scales_own_parameters = False
    # ``derivs(..., scratch=True)`` and ``third_derivative(..., scratch=True)`` may write
    # into ``eta``, which the caller then reads no more (the binomial's logit, in place)
    scratch_eta = False

    # ``fourth_derivative`` is made (the engine's exact Laplace Hessian reads it; see
    # ``laplace_hessian``); without it the Hessian is taken by differences of the gradient
    has_fourth_derivative = False

    # ``node_derivs`` is made (adaptive quadrature reads it at its nodes; without it the
    # nodes' values come from ``derivs`` and their partials in the family's own
    # parameters from ``extra_derivs``, or differences, in the gradient)
    has_node_derivs = False

    def node_derivs(self, y, eta, trials, weights, extra, const=None, with_extra=False):
        """:class:`NodeDerivs` at the nodes' ``eta`` (k, n), where :attr:`has_node_derivs`;
        ``with_extra``: with the partials in the family's own parameters."""
        raise NotImplementedError(f"the {self.name} family has no node derivatives")

    def fourth_derivative(self, y, eta, trials, weights, extra=()):
        """``w4 = d w3 / d eta`` at ``eta`` (weighted as :meth:`derivs`), where
        :attr:`has_fourth_derivative`."""
        raise NotImplementedError(f"the {self.name} family has no fourth derivative")

    def third_derivative(self, y, eta, trials, weights, extra, const, der, scratch=False):
        """``w3`` at ``eta``, for the derivatives ``der`` made there without it
        (``scratch=True``: the caller reads ``eta`` no more; a family may use its memory)."""
        return self.derivs(y, eta, trials, weights, extra, const).w3

    def loglik(self, y, eta, trials, weights, extra, const=None):
        """The log-density alone (families may compute it without the derivatives)."""
        return self.derivs(y, eta, trials, weights, extra, const).loglik

    def mean_derivative(self, eta, extra=()):
        """``d E[Y] / d eta`` per trial."""
        return self.link.inverse_derivative(eta)

    # the zero part's formula as R prints it ("~1"), or None without one
    zero_formula: str | None = None
    # the family takes one value per row for a block with a design (zero inflation or
    # dispersion with predictors); False where its methods assume scalars
    per_row_blocks = True
    # R's insight defines the family's latent-scale variance (ICC, Nakagawa's R2)
    latent_variance_defined = True
    # (subject, verb) of the report's sentences on exp(beta) when the link's reading
    # ("the expected count") is not the family's; None otherwise
    ratio_subject: tuple[str, str] | None = None
    # the same where the zero part has predictors (a zero-inflated family: exp(beta)
    # then multiplies the count part's mean, not the expected count (1 - pi) mu)
    varying_zero_subject: tuple[str, str] | None = None

    def check_outcome(self, y, weights) -> None:
        """Raise ``ValueError`` for outcomes the family cannot describe (none here)."""

    def log_concave_split(self, y, extra):
        """``(a, b, family, extra')`` with ``P(Y = y | eta) = a + b P'(Y = y | eta)`` for
        the outcomes ``y``: ``a``, ``b`` free of ``eta`` (None for 0 and 1) and ``P'`` the
        density of ``family`` with ``extra'``, log-concave in ``eta``; None when the family
        knows no such split. Averages of probabilities over a normal ``eta`` use it
        (:mod:`~sklearn_glmm._engine.normal_average`)."""
        return (None, None, self, extra) if self.log_concave else None

    def nested_at_bound(self, block: int):
        """The family of the model this one nests at the flat-side bound of its own
        parameter block ``block`` where that model is this family without the block (the
        other blocks' parameters in their order): a cheaper objective for the nested
        model's fit (:func:`~sklearn_glmm._engine.nested_models.bound_from_start`); None
        where there is none (a limit the family evaluates itself, as NB2's Poisson
        limit)."""
        return None

    # -- the distribution of Y given eta -------------------------------------
    # Callers holding a linear predictor ask these: a family whose distribution is
    # not a function of its mean alone (the hurdle) overrides them.
    def pmf_eta(self, k, eta, extra):
        """P(Y = k | eta) (count families)."""
        return self.pmf(k, self.mean(eta, extra), extra)

    def cdf_eta(self, y, eta, trials, extra):
        """P(Y <= y | eta)."""
        return self.cdf(y, self.mean(eta, extra), trials, extra)

    def variance_eta(self, eta, trials, extra):
        """Var(Y | eta), on the scale of ``mean`` (per trial for the binomial)."""
        return self.variance(self.mean(eta, extra), trials, extra)

    def sample_eta(self, eta, trials, extra, rng):
        """Draws of Y given eta (successes out of ``trials`` for the binomial)."""
        return self.sample(self.mean(eta, extra), trials, extra, rng)

    def mean_over_normal(self, eta, var, extra=()):
        """E[Y] per trial when ``eta`` is normal with mean ``eta`` and variance ``var``.

        Closed form for the log link (``exp(eta + var / 2)``). Otherwise 32-node
        Gauss-Hermite while every SD is at most ``_GH_MAX_SD`` (within about 1e-8 there
        for the logit and probit links; up to 4e-6 in a cloglog probability near the
        limit, its asymmetric tail), and beyond it the trapezoidal rule with nodes a
        quarter of a unit apart on the link scale: the inverse link's step is then narrow
        against the normal's spread, which a Gauss-Hermite rule of fixed size resolves
        poorly (1e-2 in a probability at SD 10), while the trapezoidal rule's error falls
        like ``exp(-2 pi d / h)`` for an integrand analytic in a strip of width ``d``.
        Per-row values of the family's parameters need a 1-D ``eta``; the rule is
        chosen for each element of a 1-D ``eta`` by its own SD (not by the largest SD
        of the elements computed with it).
        """
        eta = np.asarray(eta, dtype=float)
        var = np.broadcast_to(np.clip(np.asarray(var, dtype=float), 0.0, None), eta.shape)
        if isinstance(self.link, LogLink):
            return self.mean(eta + var / 2.0, extra)
        if np.all(var == 0):
            return self.mean(eta, extra)
        sd = np.sqrt(var)
        wide = sd > _GH_MAX_SD
        if wide.all() or not wide.any() or eta.ndim != 1:
            return over_nodes(self.mean, eta, sd, normal_rule(float(sd.max())), extra)
        # each row by its own SD's rule, whatever the other rows computed with it
        out = np.empty(eta.shape)
        for rows in (np.flatnonzero(~wide), np.flatnonzero(wide)):
            part = rows_of(extra, rows)
            rule = normal_rule(float(sd[rows].max()))
            out[rows] = over_nodes(self.mean, eta[rows], sd[rows], rule, part)
        return out


def over_nodes(fn, eta, sd, rule, extra):
    """``sum_k w_k fn(eta + sd z_k, extra)`` for every element, ``(z, w) = rule``, in
    chunks of rows (at most ``_NODE_CELLS`` rows x nodes at once); per-row values of
    the family's parameters in ``extra`` need a 1-D ``eta``."""
    z, w = rule
    flat_eta, flat_sd = eta.reshape(-1), sd.reshape(-1)
    out = np.empty(flat_eta.shape)
    step = max(1, _NODE_CELLS // len(z))
    for i in range(0, len(flat_eta), step):
        rows = slice(i, i + step)
        nodes = flat_eta[rows, None] + flat_sd[rows, None] * z
        values = fn(nodes, rows_of(extra, rows, column=True))
        # einsum's loop sums each row in the same order wherever the row sits, so rows
        # of equal eta and sd get equal values (a BLAS matrix-vector product's blocking
        # put 1e-16 between them, breaking the ties a rank-based score such as roc_auc
        # reads; einsum gave one value per repeated row at every row alignment tried,
        # and is faster)
        out[rows] = np.einsum("ij,j->i", values, w)
    return out.reshape(eta.shape)


def log_odds_over_normal(family, eta, var, extra=()) -> np.ndarray:
    """``log(p / (1 - p))`` of the probability ``p = E[mu(eta + sd z)]`` averaged over
    the normal ``z`` (a binary family's ``mu``), finite and accurate where ``p`` or
    ``1 - p`` rounds to 0 (a cloglog probability at a linear predictor of 9).

    ``p`` is :meth:`Family.mean_over_normal`'s, the probability predictions use (so the
    sign is that of ``p - 1/2``). Where ``p`` or ``1 - p`` is below ``_TAIL``, its
    integrand's mass lies far in the normal's tail, beyond that rule's nodes: each is
    then averaged on the log scale around its integrand's peak
    (:func:`_peak_log_mean`)."""
    eta = np.asarray(eta, dtype=float).reshape(-1)
    var = np.broadcast_to(np.clip(np.asarray(var, dtype=float), 0.0, None), eta.shape)
    p = family.mean_over_normal(eta, var, extra)
    # (p rounds to 0 or to just above 1 in the tails, which the tail rule recomputes)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(p) - np.log1p(-p)
    sd = np.sqrt(var)
    tail = np.flatnonzero((np.minimum(p, 1.0 - p) < _TAIL) & (sd > 0))
    if len(tail):
        link, e, s = family.link, eta[tail], sd[tail]
        out[tail] = _peak_log_mean(lambda x: link.log_probabilities(x)[0], e, s) - (
            _peak_log_mean(lambda x: link.log_probabilities(x)[1], e, s)
        )
    return out


_TAIL = 1e-8  # a probability below it is averaged on the log scale (log_odds_over_normal)
_PEAK_REACH = 12.0  # standard normal units either side of the peak (mass beyond: e^-72)


def _peak_log_mean(log_f, eta, sd) -> np.ndarray:
    """``log E[f(eta + sd z)]`` over the standard normal ``z`` for a log-concave ``f``
    given by ``log_f``, summed on the log scale: the trapezoidal rule over
    ``+-_PEAK_REACH`` around the peak ``z*`` of ``g(z) = log f(eta + sd z) - z^2 / 2``
    (found by Newton's method on central differences; ``g'' <= -1``, so the integrand
    falls at least as fast as a unit normal from it), nodes ``_NODE_SPACING`` apart on
    the link scale as :func:`normal_rule`'s (at most a quarter of a standard normal
    unit): a mean of 1e-40 whose mass lies 15 SDs out is found as exactly as one of
    0.5, and a link's steep step at a wide SD is resolved."""

    def g(z, e=eta, s=sd):
        return log_f(e[:, None] + s[:, None] * z) - 0.5 * z * z

    h = 1e-4
    z = np.zeros(len(eta))
    for _ in range(200):
        lo, mid, hi = g(np.column_stack([z - h, z, z + h])).T
        slope = (hi - lo) / (2.0 * h)
        curve = np.minimum((hi - 2.0 * mid + lo) / (h * h), -1.0)
        reach = 5.0 + np.abs(z)  # (a peak hundreds of SDs out is reached in a few steps)
        step = np.clip(-slope / curve, -reach, reach)
        z = z + step
        if np.all(np.abs(step) < 1e-8 * (1.0 + np.abs(z))):
            break
    spacing = np.minimum(0.25, _NODE_SPACING / sd)
    out = np.empty(len(eta))
    for rows in np.array_split(np.argsort(spacing), max(1, len(eta) // 256)):
        k = np.arange(
            -np.ceil(_PEAK_REACH / spacing[rows].min()),
            np.ceil(_PEAK_REACH / spacing[rows].min()) + 1,
        )
        step = max(1, _NODE_CELLS // len(k))
        for i in range(0, len(rows), step):
            part = rows[i : i + step]
            nodes = z[part, None] + spacing[part, None] * k
            vals = g(nodes, eta[part], sd[part])
            out[part] = np.log(spacing[part]) + special.logsumexp(vals, axis=1)
    return out - 0.5 * np.log(2.0 * np.pi)


def normal_rule(top_sd: float, growth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``z`` and weights ``w`` (summing to 1) of the rule that averages a function
    of ``eta + sd z`` over the standard normal ``z`` for every SD up to ``top_sd``
    (see :meth:`Family.mean_over_normal`): 32-node Gauss-Hermite up to
    ``_GH_MAX_SD``, beyond it the trapezoidal rule with nodes ``_NODE_SPACING`` apart
    on the link scale over +-``_Z_RANGE`` standard deviations, at most
    ``_MAX_NODES`` of them: for an SD above 2.8e3 on the link scale, where the inverse
    link is a step against the normal's spread, the nodes are then further apart and
    the rule errs by up to half a node's weight (4e-6 in a probability at an SD of 1e5,
    2e-5 at 1e8).

    ``growth > 0``: a function that grows like ``exp(growth * eta)`` at most and may
    have singularities nearer the real line than an inverse link's (the truncated
    count's excess over its mean, ``mu / expm1(mu)`` for the Poisson: poles at
    ``log(2 pi k) +- i pi / 2``). The trapezoidal rule is then used at every SD, with
    nodes at most ``_NODE_SPACING`` apart in ``z`` too, and its upper end moves out by
    ``growth * top_sd`` standard deviations, where the product with the normal
    density has its peak (``exp(g sd z)`` times the density is the density shifted by
    ``g sd``)."""
    if top_sd <= _GH_MAX_SD and growth == 0.0:
        return _GH_Z, _GH_W
    reach = growth * top_sd
    h = max(_NODE_SPACING / max(top_sd, 1.0), (2.0 * _Z_RANGE + reach) / _MAX_NODES)
    k = int(np.ceil(_Z_RANGE / h))
    z = np.arange(-k, k + 1 + int(np.ceil(reach / h))) * h
    w = np.exp(-0.5 * z * z)
    return z, w / w.sum()


def pmf_rule(family, top_sd: float, y, trials) -> tuple[np.ndarray, np.ndarray]:
    """The rule of :func:`normal_rule` for averaging probabilities ``P(Y = k | eta)``
    of the outcomes ``y`` (a count family's counts, successes out of ``trials``) over a
    normal ``eta`` with SDs up to ``top_sd``.

    As a function of ``eta`` (log link), ``P(Y = k | eta)`` is a bump of width about
    ``1 / sqrt(k)`` around ``log k`` (the curvature of ``k eta - exp(eta)``; for ``k``
    successes out of ``n`` trials it is at most ``n / 4``), not the unit-scale step of
    an inverse link: the rule is that for an SD ``sqrt(k)`` times larger, with nodes
    ``_NODE_SPACING / sqrt(k)`` apart on the link scale. (The rule of the bare SD put
    32 Gauss-Hermite nodes 0.3 SDs apart: at a random-intercept SD of 1.26 and a mean
    of 57, P(Y = 200) came out 0.045 of its value.) Families other than counts and
    trials (a binary outcome, an ordinal model's classes) keep the bare SD's rule.
    """
    top = 1.0
    if family.has_trials:
        top = float(np.max(trials, initial=1.0))
    elif hasattr(family, "log_zero_rate"):  # a count family
        top = float(np.max(np.nan_to_num(np.asarray(y, dtype=float)), initial=1.0))
    return normal_rule(top_sd * np.sqrt(max(top, 1.0)))


def on_upper_bound(log_value, upper, limit, below):
    """A family's arrays where its log-parameter sits on its upper bound, which stands
    for the parameter's infinite limit (NB2 theta, beta-binomial phi): ``limit()`` (the
    limit model's arrays, exactly) there and ``below(log_value)`` elsewhere, row by row
    for per-row values (a dispersion model); None when no value is on the bound."""
    if type(log_value) is not np.ndarray:  # a scalar (checked first: the common case)
        return limit() if log_value >= upper else None
    at = log_value >= upper
    if not at.any():
        return None
    parts_below = below(np.where(at, 0.0, log_value))
    parts = tuple(np.where(at, p, q) for p, q in zip(limit(), parts_below))
    return type(parts_below)(*parts) if hasattr(parts_below, "_fields") else parts


def limit_or(at, limit, other, log_value):
    """A distribution's values (probabilities, a variance) where a log-parameter stands for
    its limit model on a bound: ``limit()`` where ``at`` (the values on the bound),
    ``other(log_value)`` elsewhere, value by value for per-row values (``other`` is given
    0 where the value is on the bound)."""
    at = np.asarray(at)
    if not at.any():
        return other(log_value)
    if at.all():
        return limit()
    with np.errstate(all="ignore"):
        return np.where(at, limit(), other(np.where(at, 0.0, log_value)))


def array_on_bound(log_value, bound, limit, other, upper=True):
    """:func:`on_upper_bound` (or, with ``upper=False``, :func:`on_lower_bound`) for a
    method that gives one array: ``limit()`` on the bound, ``other(log_value)`` elsewhere,
    row by row; None when no value is on the bound."""
    at = on_upper_bound if upper else on_lower_bound
    out = at(log_value, bound, lambda: (limit(),), lambda v: (other(v),))
    return None if out is None else out[0]


def on_lower_bound(log_value, lower, limit, above):
    """As :func:`on_upper_bound`, for a log-parameter whose lower bound stands for the
    parameter's zero limit (NB1 phi = 0, the Poisson): ``limit()`` where ``log_value`` is
    on (or below) ``lower``, ``above(log_value)`` elsewhere; None when no value is there."""
    return on_upper_bound(-log_value, -lower, limit, lambda v: above(-v))


# the rules of Family.mean_over_normal (normal_rule)
_GH_MAX_SD = 1.5
_NODE_SPACING = 0.25  # on the link scale: resolves the inverse link's curvature
_Z_RANGE = 9.0  # standard normal mass beyond +-9: 2e-19
# the trapezoidal rule's nodes at most (an SD of 1e8 once asked for 7e9 of them: a
# MemoryError in predict_proba)
_MAX_NODES = 200_000
_NODE_CELLS = 2_000_000  # rows x nodes evaluated at once


def by_count(y, fn):
    """``fn(y)`` for an elementwise ``fn``, from its values at the counts 0, 1, ..., max(y).

    Count outcomes take few distinct values: where ``y`` holds whole numbers whose
    largest is well below the number of rows, ``fn`` runs once per count and its values
    are gathered by row. Each element is the same number ``fn`` gives for it directly.
    Otherwise (fractional or very large values, few rows), ``fn(y)`` itself.
    """
    n = len(y) if np.ndim(y) == 1 else 0
    if n < _COUNT_TABLE_ROWS:
        return fn(y)
    table = _table_codes(y, lambda top: top < n // 4)
    if table is None:
        return fn(y)
    idx, counts = table
    return fn(counts)[idx]


_COUNT_TABLE_ROWS = 64  # below it the table saves too little to pay for its checks


def _table_codes(y, small):
    """``(indices, counts)``: ``y`` as indices into a table of the counts 0, 1, ...,
    max(y), or None: where ``y`` holds whole numbers >= 0 whose largest passes ``small``
    (False for NaN)."""
    top = y.max()
    if not (small(top) and y.min() >= 0):
        return None
    idx = y.astype(np.intp)
    return (idx, np.arange(int(top) + 1, dtype=float)) if np.array_equal(idx, y) else None


def by_count_in_runs(y, v, fn):
    """``fn(y, v)`` for an elementwise ``fn`` of counts ``y`` and per-row values ``v``
    that stay the same over runs of rows (a batch of replicates, each with its own
    value on its rows, one replicate after another), from a table of ``fn`` at the
    counts 0, 1, ..., max(y) for each run's value, gathered by row. Each element is the
    same number ``fn`` gives for it directly. Otherwise (values that change from row
    to row, fractional or very large counts, few rows), ``fn(y, v)`` itself.
    """
    n = len(y) if np.ndim(y) == 1 and np.shape(v) == np.shape(y) else 0
    if n < _COUNT_TABLE_ROWS:
        return fn(y, v)
    starts = np.flatnonzero(v[1:] != v[:-1]) + 1  # (NaN values: a run each)
    table = _table_codes(y, lambda top: (len(starts) + 1) * (top + 1) < n // 4)
    if table is None:
        return fn(y, v)
    idx, counts = table
    first = np.concatenate([[0], starts])
    run = np.repeat(np.arange(len(first)), np.diff(np.append(first, n)))
    return fn(counts[None, :], v[first][:, None])[run, idx]


def _lgamma_ratio(y, theta):
    """log Gamma(y + theta) - log Gamma(theta), accurate for very large theta.

    For ``theta`` above ``_STIRLING_SIZE`` the difference of Stirling's series is
    taken term by term, each in closed form (scipy's ``betaln`` loses 1e-6 to 1e-4
    there with counts of 1e4 to 1e6, which summed over rows shows in a
    log-likelihood); below it, through ``betaln``. With one ``theta`` for all rows it
    is evaluated once per count (:func:`by_count`), and with one per run of rows once
    per count and run (:func:`by_count_in_runs`).
    """
    if np.ndim(theta) == 0:
        return by_count(y, lambda c: _lgamma_ratio_rows(c, theta))
    return by_count_in_runs(y, theta, _lgamma_ratio_rows)


def _lgamma_ratio_rows(y, theta):
    # either may have more dimensions (quadrature nodes x rows, rows x counts)
    y, theta = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(theta, dtype=float))
    ypos = np.where(y > 0, y, 1.0)
    small = theta <= _STIRLING_SIZE
    ts = np.where(small, theta, 1.0)
    out = np.where(small, special.gammaln(ypos) - special.betaln(ypos, ts), 0.0)
    if not small.all():
        tb = np.where(small, _STIRLING_SIZE + 1.0, theta)
        s = tb + y
        # (t + y - 1/2) log(t + y) - (t - 1/2) log t - y, without the large cancellation
        lead = (tb - 0.5) * np.log1p(y / tb) + y * np.log(s) - y
        # 1/(12x) - 1/(360x^3) + 1/(1260x^5), differenced: 1/s^n - 1/t^n = -(s^n - t^n)/(st)^n,
        # written in u = y / t and 1 / s so that no power of t is formed (t^5 overflows
        # from 1e61 on; the terms then underflow to 0, as they should)
        with np.errstate(under="ignore"):
            u, a = y / tb, 1.0 / s
            d1 = -u * a
            d3 = -u * (3.0 + u * (3.0 + u)) * a**3
            d5 = -u * (5.0 + u * (10.0 + u * (10.0 + u * (5.0 + u)))) * a**5
        big = lead + d1 / 12.0 - d3 / 360.0 + d5 / 1260.0
        out = np.where(small, out, big)
    return np.where(y > 0, out, 0.0)


_STIRLING_SIZE = 1e5


# Above this count, mu - y is computed as y expm1(eta - log y): exp(eta) rounds to
# ulp(mu) ~ 2e-16 mu, noise that would stall the conditional-mode iterations.
_LARGE_COUNT = 1e3


def _log_y(y):
    return np.log(np.where(y > 0, y, 1.0))


def _large_count_zeros(y):
    """Indicator of y == 0 when counts are large (the precise mu - y is needed), else None."""
    return (y == 0).astype(float) if len(y) and np.max(y) > _LARGE_COUNT else None


def _mu_minus_y(y, eta, log_y, zero, mu):
    """mu - y without the rounding of exp(eta) for large y (``zero``: 1.0 where y == 0)."""
    with np.errstate(over="ignore"):
        return y * np.expm1(np.minimum(eta, _ETA_MAX) - log_y) + zero * mu


def _log_choose(n, k):
    return special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)


# above this size the polygamma differences come from their asymptotic series
_LARGE_SIZE = 1e5


# below this size k the sums of :func:`size_sums` come from their series in k
_SMALL_SIZE = 1e-6


def size_sums(y, k, with_log=False):
    """``s1 = k D0``, ``s2 = k D0 + k^2 D1`` and ``s3 = k D0 + 3 k^2 D1 + k^3 D2`` with
    ``D_m = psi_m(y + k) - psi_m(k)`` (:func:`_polygamma_differences`): the terms of the
    eta-derivatives of ``log Gamma(y + k) - log Gamma(k)`` when ``k`` moves with
    ``e^eta`` (NB1's size, the beta-binomial's shapes); with ``with_log``, that
    log-gamma ratio itself fourth (:func:`_lgamma_ratio`'s value, made with the sums).

    Below :data:`_SMALL_SIZE` from their series in ``k``: each ``D_m`` grows like
    ``k^-(m+1)`` there (``psi_2(k) ~ -2 / k^3`` overflows below ``k = 1e-103`` while
    ``k^3`` underflows, and the direct product is NaN), while the sums are finite. With
    ``c0 = psi(y) + gamma`` and ``c1 = psi_1(y) - zeta(2)``, ``s1 = 1 + k c0 + k^2 c1``,
    ``s2 = k c0 + 2 k^2 c1`` and ``s3 = k c0 + 4 k^2 c1`` for ``y >= 1`` (the next terms
    are O(k^3)), all 0 for ``y = 0``; ``s2`` and ``s3`` so made keep the relative
    accuracy the direct sums lose to the cancellation of 1 and -1."""
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    small = k < _SMALL_SIZE
    ks = np.where(small, 1.0, k)
    d0, d1, d2, *lg = _polygamma_differences(y, ks, with_log)
    s1 = ks * d0
    s2 = s1 + ks * ks * d1
    s3 = s1 + 3.0 * ks * ks * d1 + ks**3 * d2
    if small.any():
        ys, kk = y[small], k[small]
        pos, c0, c1 = _small_size_coefficients(ys)
        s1[small] = np.where(pos, 1.0 + kk * (c0 + kk * c1), 0.0)
        s2[small] = np.where(pos, kk * (c0 + 2.0 * kk * c1), 0.0)
        s3[small] = np.where(pos, kk * (c0 + 4.0 * kk * c1), 0.0)
        if with_log:  # (at the size itself, not the 1 the differences took)
            lg[0][small] = _lgamma_ratio_rows(ys, kk)
    return (s1, s2, s3, *lg)


def chain_in_parameter(G, a_eta, a_t):
    """Derivatives of ``F(a(eta, t))`` in ``eta`` and a family parameter ``t`` from
    ``F``'s in ``a`` (``G = (G1, G2, G3)``, with ``G4`` for the second set) and ``a``'s
    partials: ``a_eta = (a_e, a_ee, a_eee)``, ``a_t = (a_t, a_et, a_eet)`` and for the
    second set also ``(a_eeet, a_tt, a_ett, a_eett)`` (subscripts: the variables
    differentiated in). Returns ``(F_t, F_et, F_eet)``, followed by ``(F_eeet, F_tt,
    F_ett, F_eett)`` where both ``G4`` and the second set are given (Faa di Bruno's
    formula; each product starts with the ``G_m``, which are 0 where ``a``'s powers are
    not: a zero-inflated zero at a huge mean). A zero-inflated zero (``F`` the mixture's
    log-density in ``a = log f(0)``) and a zero-truncated count (``F = log(1 - f(0))`` in
    ``L = log(-log f(0))``) read it."""
    G1, G2, G3 = G[:3]
    a1, a2, a3 = a_eta
    at, a1t, a2t = a_t[:3]
    first = (
        G1 * at,
        G2 * a1 * at + G1 * a1t,
        G3 * a1 * a1 * at + G2 * (a2 * at + 2.0 * a1 * a1t) + G1 * a2t,
    )
    if len(G) < 4 or len(a_t) < 7:
        return first
    G4 = G[3]
    a3t, att, a1tt, a2tt = a_t[3:]
    return first + (
        G4 * a1 * a1 * a1 * at
        + 3.0 * (G3 * a1) * (a2 * at + a1 * a1t)
        + G2 * (a3 * at + 3.0 * a2 * a1t + 3.0 * a1 * a2t)
        + G1 * a3t,
        G2 * at * at + G1 * att,
        G3 * a1 * at * at + G2 * (2.0 * a1t * at + a1 * att) + G1 * a1tt,
        G4 * a1 * a1 * at * at
        + G3 * (a2 * at * at + 4.0 * a1 * at * a1t + a1 * a1 * att)
        + G2 * (2.0 * a1t * a1t + 2.0 * at * a2t + a2 * att + 2.0 * a1 * a1tt)
        + G1 * a2tt,
    )


def second_with_first(family, second, args, weights, with_first):
    """``extra_second_derivs``' return (its contract in ``Family``): ``second`` weighted,
    and with ``with_first`` preceded by :meth:`extra_derivs`' rows at ``args`` (``y, eta,
    trials, weights, extra, const``), each (n,)."""
    if weights is not None:
        second = tuple(weights * v for v in second)
    if not with_first:
        return second
    return tuple(v[0] for v in family.extra_derivs(*args)), second


def size_sum_fourth(y, k):
    """``s4 = k D0 + 7 k^2 D1 + 6 k^3 D2 + k^4 D3`` (the fourth ``(k d/dk)``-derivative of
    ``log Gamma(y + k) - log Gamma(k)``, :func:`size_sums`' next one; a family's fourth
    derivative reads it), with ``D3 = psi_3(y + k) - psi_3(k)`` (:func:`_psi3_difference`).
    Below :data:`_SMALL_SIZE` from the series of :func:`size_sums`: ``s4 = k c0 + 8 k^2
    c1`` for ``y >= 1``, 0 for ``y = 0``; elsewhere in Horner's form (no power of ``k``
    formed: ``k^4`` overflows from ``1e77`` on)."""
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    small = k < _SMALL_SIZE
    ks = np.where(small, 1.0, k)
    d0, d1, d2 = _polygamma_differences(y, ks)
    d3 = _psi3_difference(y, ks)
    s4 = ks * (d0 + ks * (7.0 * d1 + ks * (6.0 * d2 + ks * d3)))
    if small.any():
        kk = k[small]
        pos, c0, c1 = _small_size_coefficients(y[small])
        s4[small] = np.where(pos, kk * (c0 + 8.0 * kk * c1), 0.0)
    return s4


def _small_size_coefficients(y):
    """``(y >= 1, c0, c1)`` of the size sums' series in ``k`` (:func:`size_sums`): ``c0 =
    psi(y) + gamma``, ``c1 = psi_1(y) - zeta(2)`` (at 1 where ``y`` is 0)."""
    pos = y >= 1
    yp = np.where(pos, y, 1.0)
    return pos, special.digamma(yp) + np.euler_gamma, trigamma(yp) - np.pi**2 / 6.0


def _psi3_difference(y, k):
    """``psi_3(y + k) - psi_3(k)``: as :func:`_polygamma_differences` makes the lower
    orders, the asymptotic series differenced term by term above :data:`_LARGE_SIZE`
    (``psi_3(x) ~ 2/x^3 + 3/x^4 + 2/x^5``), else
    :func:`~.count_sums.psi3_differences`."""
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    big = k > _LARGE_SIZE
    out = psi3_differences(y, np.where(big, _LARGE_SIZE, k))
    if big.any():
        kb, yb = k[big], y[big]
        with np.errstate(under="ignore"):
            t, a = yb / kb, 1.0 / (kb + yb)
            r3 = -t * (3.0 + t * (3.0 + t)) * a**3
            r4 = -t * (4.0 + t * (6.0 + t * (4.0 + t))) * a**4
            r5 = -t * (5.0 + t * (10.0 + t * (10.0 + t * (5.0 + t)))) * a**5
        out[big] = 2.0 * r3 + 3.0 * r4 + 2.0 * r5
    return out


def _polygamma_differences(y, k, with_log=False):
    """``psi_m(y + k) - psi_m(k)`` for m = 0, 1, 2, free of cancellation for large ``k``;
    with ``with_log``, also ``log Gamma(y + k) - log Gamma(k)`` (:func:`_lgamma_ratio`'s
    value: the same sums' logarithms where they are taken, else as there).

    When a shape parameter grows without bound (NB1 as phi -> 0, the beta-binomial as
    its dispersion grows) each difference is a small number computed from two large ones. There the
    asymptotic series of the polygamma functions are differenced term by term
    (each term's difference in closed form); elsewhere, for small whole counts, finite
    sums of terms of one sign, and scipy's functions for the rest
    (:func:`~.count_sums.polygamma_differences`).
    """
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    big = k > _LARGE_SIZE
    kd = np.where(big, _LARGE_SIZE, k)  # the direct formulas only where they are accurate
    d0, d1, d2, *lg = polygamma_differences(y, kd, _lgamma_ratio_rows if with_log else None)
    if big.any():
        kb, yb = k[big], y[big]
        if with_log:  # (at the size itself: Stirling's series)
            lg[0][big] = _lgamma_ratio_rows(yb, kb)
        # 1/s^n - 1/k^n = -(s^n - k^n) / (s k)^n with s = y + k, s^n - k^n expanded in y;
        # written in t = y / k and 1 / s, so that no power of k is formed (k^4 overflows
        # from 1e77 on; the terms of 1 / s^n then underflow to 0, as they should)
        with np.errstate(under="ignore"):
            t, a = yb / kb, 1.0 / (kb + yb)
            r1 = -t * a
            r2 = -t * (2.0 + t) * a * a
            r3 = -t * (3.0 + t * (3.0 + t)) * a**3
            r4 = -t * (4.0 + t * (6.0 + t * (4.0 + t))) * a**4
        # psi(x) ~ log x - 1/(2x) - 1/(12x^2) + 1/(120x^4)
        d0[big] = np.log1p(t) - r1 / 2.0 - r2 / 12.0 + r4 / 120.0
        # psi1(x) ~ 1/x + 1/(2x^2) + 1/(6x^3)
        d1[big] = r1 + r2 / 2.0 + r3 / 6.0
        # psi2(x) ~ -1/x^2 - 1/x^3 - 1/(2x^4)
        d2[big] = -r2 - r3 - r4 / 2.0
    return (d0, d1, d2, *lg)
