"""A family's own parameters, declared as blocks beside the fixed effects and theta.

The negative binomial's ``theta`` and a zero-inflation probability are estimated
jointly with ``beta`` and ``theta``. Each is a :class:`ParameterBlock`: its name on
the optimiser's (unconstrained) scale, its bounds and start there, the map to the
scale it is reported on, and what happens at its bound. The optimiser, the
fitted attributes, Wald and profile intervals and the summary iterate over a
family's ``blocks`` and never ask which family it is.

Example
-------
>>> from sklearn_glmm._engine.families import make_family
>>> [b.reported for b in make_family("negbin", zero_inflation=True).blocks]
['nb_theta', 'zi_prob']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special


@dataclass(frozen=True)
class ParameterBlock:
    """One scalar parameter of a family.

    Attributes
    ----------
    name : str
        Name on the optimiser's scale (``"log_theta"``, ``"logit_zi"``).
    reported : str
        Name of the reported parameter (``"nb_theta"``, ``"zi_prob"``): a row of
        ``confint`` and of the summary.
    bounds : (float, float)
        Bounds on the optimiser's scale.
    start : float
        Starting value on the optimiser's scale.
    to_reported : callable
        Map from the optimiser's scale to the reported one (``np.exp``, ``expit``).
    attribute : str
        The estimator attribute holding the reported value (``"theta_"``).
    flat_side : ("upper" | "lower", float) or None
        Past this value towards that bound the likelihood is a flat ridge (no
        overdispersion, no zero inflation): a fit drifting there is settled on the
        bound, and the parameter is reported as a boundary estimate.
    at_bound_value : float
        The reported value of a boundary estimate (``inf`` for NB theta).
    at_bound_message : str
        What a boundary estimate means, for its warning.
    warning : str
        Name of the warning class (in :mod:`sklearn_glmm.exceptions`) for it.
    label : str
        The summary's words for the parameter.
    summary : {"dispersion", "logit table"}
        How the summary shows it: glmmTMB's one-line "Dispersion parameter for ...
        family ()", or a coefficient table on the logit scale under ``section``.
    section : str
        The title of its summary table ("logit table" blocks).
    sentence : str
        The report's sentence, with ``{value}`` (formatted) in it.
    at_bound_sentence : str
        The report's sentence for a boundary estimate.
    prefix : str
        glmmTMB's name of the model part the block is, when it may have its own
        predictors (``"zi"``, ``"disp"``): interval rows ``zi~x``, ``disp~x``.
    effects : str
        The estimator attribute tabling its coefficients (``zero_inflation_effects_``,
        ``dispersion_effects_``), on the optimiser's scale (logit, log).
    far_start : float or None
        For a block whose likelihood can have a second basin far from its flat side (zero
        inflation: the zeros explained by the inflation rather than by low counts), a
        start there: a fit that ends on the flat side's bound is fitted again from it
        (``ridge.leave_flat_bounds``).
    """

    name: str
    reported: str
    bounds: tuple[float, float]
    start: float
    to_reported: Callable[[float], float]
    attribute: str
    flat_side: tuple[str, float] | None
    at_bound_value: float
    at_bound_message: str
    warning: str
    label: str
    summary: str
    section: str
    sentence: str
    at_bound_sentence: str
    prefix: str = ""
    effects: str = ""
    far_start: float | None = None

    def bound(self) -> float:
        """The bound the flat side leads to."""
        return self.bounds[1] if self.flat_side[0] == "upper" else self.bounds[0]

    def past_flat_side(self, values):
        """Where ``values`` (the block's value, or its rows' values) are past its flat
        side's edge, on the ridge towards its bound (False for a block without one)."""
        if self.flat_side is None:
            return np.zeros(np.shape(values), dtype=bool)
        direction, edge = self.flat_side
        return values > edge if direction == "upper" else values < edge

    def is_at_bound(self, value: float, tol: float = 1e-6) -> bool:
        return self.flat_side is not None and abs(value - self.bound()) <= tol

    def reported_value(self, value: float) -> float:
        """The reported value; the declared boundary value on the bound."""
        if self.is_at_bound(value):
            return float(self.at_bound_value)
        return float(self.to_reported(value))


NB_THETA = ParameterBlock(
    name="log_theta",
    reported="nb_theta",
    # bounded so that theta -> infinity (Poisson data) stays finite; at theta = e^30
    # the NB2 likelihood equals the Poisson one to ~1e-7 even for counts of 1e6
    bounds=(-10.0, 30.0),
    start=0.0,
    to_reported=np.exp,
    attribute="theta_",
    # past log theta = 7 (theta ~ 1100) the likelihood is a flat ridge towards the bound
    flat_side=("upper", 7.0),
    at_bound_value=float("inf"),
    at_bound_message=(
        "negative binomial theta ran to its upper limit (no overdispersion, or too little "
        "to estimate: a theta above about 1,100 raises the log-likelihood by less than 5e-4 "
        "over the limit's): the data are consistent with a Poisson model, which is adequate "
        "here."
    ),
    warning="OverdispersionWarning",
    label="Dispersion parameter (NB theta)",
    summary="dispersion",
    section="",
    sentence="The negative binomial dispersion parameter was theta = {value} "
    "(Var = mu + mu^2 / theta).",
    at_bound_sentence="The negative binomial dispersion parameter ran to infinity: the data "
    "show no overdispersion beyond a Poisson model.",
    prefix="disp",
    effects="dispersion_effects_",
)

NB1_PHI = ParameterBlock(
    name="log_phi",
    reported="nb1_phi",
    bounds=(-15.0, 10.0),
    start=0.0,
    to_reported=np.exp,
    attribute="phi_",
    # below log phi = -7 (phi ~ 1e-3) the likelihood is a flat ridge towards Poisson
    flat_side=("lower", -7.0),
    at_bound_value=0.0,
    at_bound_message=(
        "the NB1 dispersion phi ran to 0 (no overdispersion): the data are consistent with a "
        "Poisson model, which is adequate here."
    ),
    warning="OverdispersionWarning",
    label="Dispersion parameter (NB1 phi)",
    summary="dispersion",
    section="",
    sentence="The NB1 dispersion parameter was phi = {value} (Var = mu (1 + phi)).",
    at_bound_sentence="The NB1 dispersion parameter ran to 0: the data show no overdispersion "
    "beyond a Poisson model.",
    prefix="disp",
    effects="dispersion_effects_",
)

BETABINOMIAL_PHI = ParameterBlock(
    name="log_phi",
    reported="betabinomial_phi",
    # bounded so that phi -> infinity (binomial data) stays finite
    bounds=(-10.0, 20.0),
    start=1.0,
    to_reported=np.exp,
    attribute="phi_",
    # past log phi = 9 (phi ~ 8000) the likelihood is a flat ridge towards the binomial
    flat_side=("upper", 9.0),
    at_bound_value=float("inf"),
    at_bound_message=(
        "the beta-binomial dispersion phi ran to its upper limit (no overdispersion): the "
        "data are consistent with a binomial model, which is adequate here."
    ),
    warning="OverdispersionWarning",
    label="Dispersion parameter (beta-binomial phi)",
    summary="dispersion",
    section="",
    sentence="The beta-binomial dispersion parameter was phi = {value} "
    "(Var = t mu (1 - mu) (1 + (t - 1) / (phi + 1))).",
    at_bound_sentence="The beta-binomial dispersion parameter ran to infinity: the data show "
    "no overdispersion beyond a binomial model.",
    prefix="disp",
    effects="dispersion_effects_",
)

ZERO_INFLATION = ParameterBlock(
    name="logit_zi",
    reported="zi_prob",
    bounds=(-20.0, 10.0),
    start=-2.0,
    to_reported=special.expit,
    attribute="zero_inflation_",
    # a zero-inflation probability below 1e-3 drifting towards 0 (no zero inflation)
    flat_side=("lower", -7.0),
    at_bound_value=float(special.expit(-20.0)),
    at_bound_message=(
        "the zero-inflation probability ran to 0 (its boundary): these data have no more "
        "zeros than the count model itself predicts, and a model without zero inflation is "
        "adequate here. Standard errors are those of the other parameters with the zero "
        "inflation at 0."
    ),
    warning="ZeroInflationWarning",
    # most zeros from the inflation (0.73)
    far_start=1.0,
    label="Zero-inflation probability",
    summary="logit table",
    section="Zero-inflation model (logit scale):",
    sentence="The estimated zero-inflation probability was {value}.",
    at_bound_sentence="The zero-inflation probability was estimated at 0 (its boundary): "
    "the data have no more zeros than the count model predicts.",
    prefix="zi",
    effects="zero_inflation_effects_",
)

HURDLE_ZERO = ParameterBlock(
    name="logit_zero",
    reported="zero_prob",
    # its estimate is the share of zeros (the hurdle's parts factorise); without zeros it
    # runs to 0 (a data set without positive counts is refused before fitting)
    bounds=(-20.0, 20.0),
    start=0.0,
    to_reported=special.expit,
    attribute="zero_prob_",
    # below a probability of 3e-7, only data without zeros: settled on the bound
    flat_side=("lower", -15.0),
    at_bound_value=0.0,
    at_bound_message=(
        "the hurdle's probability of a zero ran to 0 (its boundary): y has no zeros, and the "
        "model is the zero-truncated count model (truncated=True; glmmTMB's truncated family "
        "without ziformula). Standard errors are those of the count part."
    ),
    warning="ZeroInflationWarning",
    label="Probability of a zero (hurdle)",
    summary="logit table",
    section="Zero-inflation model (hurdle: P(Y = 0), logit scale):",
    # glmmTMB models the hurdle's zero part with ziformula: rows zi~x, fixef(m)$zi
    prefix="zi",
    effects="zero_inflation_effects_",
    sentence="The estimated probability of a zero (the hurdle) was {value}.",
    at_bound_sentence="The probability of a zero was estimated at 0 (its boundary): the data "
    "have no zeros.",
)


# -- blocks with a linear predictor ----------------------------------------------------
#
# A block may have a design ``D`` (n x p_b): the optimiser then sees its p_b
# coefficients and the family receives the per-row values ``D @ coef`` in place of
# the scalar (glmmTMB's ``ziformula = ~ x``). A scalar block is the design "a column
# of ones" without the column: its value stays a float and no per-row array is made.
# With every block scalar (``designs is None``) the family receives the coefficient
# vector itself, as it always has; with designs it receives a tuple with one entry
# per block, a float or an (n,) array.


def n_coefficients(blocks, designs) -> int:
    """How many coefficients the optimiser sees for the blocks."""
    if designs is None:
        return len(blocks)
    return sum(1 if D is None else D.shape[1] for D in designs)


def block_values(coefs, designs):
    """The family's values of the blocks: ``coefs`` itself when every block is scalar,
    else a tuple with a float per scalar block and ``D @ coef`` per block with a design."""
    if designs is None:
        return coefs
    out, k = [], 0
    for D in designs:
        if D is None:
            out.append(float(coefs[k]))
            k += 1
        else:
            out.append(D @ coefs[k : k + D.shape[1]])
            k += D.shape[1]
    return tuple(out)


def block_gradient(rows, designs) -> np.ndarray:
    """The gradient in the coefficients from per-row derivatives in the blocks' values.

    ``rows`` (n_blocks, n) holds, per block, each row's derivative in its value; a
    scalar block's is their sum, a block with a design ``D`` gets ``D' row``.
    """
    if designs is None:
        return np.sum(rows, axis=1)
    parts = [np.atleast_1d(np.sum(r)) if D is None else D.T @ r for r, D in zip(rows, designs)]
    return np.concatenate(parts)


def coefficient_bounds(blocks, designs) -> list:
    """Optimiser bounds per coefficient: a scalar block's own; a design's first column
    (its intercept) the block's, the other columns free."""
    if designs is None:
        return [b.bounds for b in blocks]
    out = []
    for b, D in zip(blocks, designs):
        if D is None:
            out.append(b.bounds)
        else:
            out.append(b.bounds if _is_ones(D[:, 0]) else (None, None))
            out.extend([(None, None)] * (D.shape[1] - 1))
    return out


def coefficient_starts(blocks, designs) -> np.ndarray:
    """Starting coefficients: a scalar block's start; for a design, its intercept column
    at the block's start and the other columns at 0."""
    if designs is None:
        return np.array([b.start for b in blocks], dtype=float)
    out = []
    for b, D in zip(blocks, designs):
        if D is None:
            out.append(b.start)
        else:
            out.extend([b.start if _is_ones(D[:, 0]) else 0.0] + [0.0] * (D.shape[1] - 1))
    return np.array(out, dtype=float)


def interior_coefficients(blocks, designs, coefs) -> np.ndarray:
    """``coefs`` with each block that is past its flat side put back at its start.

    A scalar block past its edge (no overdispersion, no zero inflation); a block with a
    design any of whose rows' values is past it (the GLM's optimum on a ridge for some
    rows: no zero inflation at all where a binary predictor is 0, its intercept and
    slope running off together), all its coefficients. A start on a ridge stays there:
    the gradient along it vanishes."""
    out = np.array(coefs, dtype=float)
    start = coefficient_starts(blocks, designs)
    j = 0
    for k, b in enumerate(blocks):
        D = None if designs is None else designs[k]
        w = 1 if D is None else D.shape[1]
        if b.flat_side is not None:
            values = out[j] if D is None else D @ out[j : j + w]
            if np.any(b.past_flat_side(values)):
                out[j : j + w] = start[j : j + w]
        j += w
    return out


def coefficient_flat_sides(blocks, designs) -> tuple:
    """The flat side of each coefficient: a scalar block's own; none with a design (the
    probability varies over the rows, and no value of one coefficient ends a ridge)."""
    return _per_coefficient(blocks, designs, "flat_side")


def coefficient_far_starts(blocks, designs) -> tuple:
    """Each coefficient's far start (:class:`ParameterBlock`): a scalar block's own; none
    with a design."""
    return _per_coefficient(blocks, designs, "far_start")


def _per_coefficient(blocks, designs, attribute) -> tuple:
    """Each scalar block's ``attribute``, None for each coefficient of a block with a
    design."""
    if designs is None:
        return tuple(getattr(b, attribute) for b in blocks)
    out = []
    for b, D in zip(blocks, designs):
        out.extend([getattr(b, attribute)] if D is None else [None] * D.shape[1])
    return tuple(out)


def _is_ones(col) -> bool:
    return bool(len(col)) and bool(np.all(col == 1.0))


def shift_block(extra, k: int, h: float):
    """The blocks' values with block ``k`` moved by ``h`` (every row of it)."""
    if isinstance(extra, tuple):
        out = list(extra)
        out[k] = extra[k] + h
        return tuple(out)
    out = np.array(extra, dtype=float)
    out[k] += h
    return out


def rows_of(extra, index=None, column: bool = False):
    """The blocks' values for some rows (``index``), per-row values as a column (n, 1)
    with ``column`` (to broadcast against an (n, K) table); scalar values unchanged."""
    if not isinstance(extra, tuple):
        return extra
    out = []
    for v in extra:
        if np.ndim(v):
            v = v if index is None else v[index]
            v = v[:, None] if column else v
        out.append(v)
    return tuple(out)
