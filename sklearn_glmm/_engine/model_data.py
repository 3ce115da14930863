"""The internal model a fit evaluates: design, outcome and grouping factors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from . import blocks as _blocks
from .equal_likelihood import aliased_groups
from .groups import (
    GroupIndex,
    constant_within_levels,
    level_constant_from_spread,
    level_spread,
    used_rows,
)


@dataclass(frozen=True)
class FactorData:
    """Fixed inputs of one grouping factor on the internal scale."""

    codes: np.ndarray  # (n,) level index
    Z: np.ndarray  # (n, q) scaled Z columns
    n_levels: int
    theta_rows: np.ndarray
    theta_cols: np.ndarray
    offset: int  # start of this factor in u
    local: int  # start of this factor in a row's local entries
    # a structured covariance (``covariance.CorrelationStructure``): the optimiser sees
    # its parameters, which map to the Cholesky entries at theta_rows/theta_cols;
    # None: the parameters are those entries (lme4's unstructured or diagonal factor)
    structure: object = None
    # the columns' :func:`.groups.level_spread` where the rows are elsewhere (a
    # partitioned fit's layout, pooled from its partitions); None: read from Z
    spread: np.ndarray | None = None
    # the mask of the rows with weight above 0 where some have none (what the spread
    # reads: :func:`.groups.used_rows`); None: every row
    used_rows: np.ndarray | None = None
    # whether a slope variable (on the user's columns, before the internal Z mixes a
    # nearly collinear pair) is a predictor of the level itself (:attr:`level_constant`)
    level_slopes: bool = False

    @cached_property
    def q(self) -> int:
        return self.Z.shape[1]

    @cached_property
    def level_spread(self) -> np.ndarray:
        """The columns' :func:`.groups.level_spread` (given, or read from ``Z`` on the
        rows with weight above 0)."""
        if self.spread is not None:
            return self.spread
        return level_spread(self.codes, self.Z, self.used_rows)

    @cached_property
    def level_constant(self) -> bool:
        """Whether a column of ``Z`` varies between levels but not (or hardly) within
        them (:func:`.groups.level_constant_columns`), or a slope variable does
        (``level_slopes``: the internal Z mixes a nearly collinear pair of slopes, one
        of which varies within levels): a random slope of a predictor of the level
        itself, whose variance only the spread between levels identifies (weakly: its
        likelihood can have several optima)."""
        return self.level_slopes or bool(level_constant_from_spread(self.level_spread).any())

    @cached_property
    def rows_alike_within_levels(self) -> bool:
        """Whether every column of ``Z`` is constant (or nearly) within each level
        (:func:`.groups.constant_within_levels`): each level's random effects then act
        through one row ``t_j`` of ``Z``, as one scalar effect of variance
        ``t_j' Sigma t_j``."""
        return bool(constant_within_levels(self.level_spread).all())

    @cached_property
    def mapped(self) -> bool:
        """Whether the optimiser's parameters differ from the Cholesky entries (a
        structure other than lme4's own parametrisation)."""
        return self.structure is not None and not self.structure.identity

    @cached_property
    def n_params(self) -> int:
        """Covariance parameters the optimiser sees for this factor."""
        return self.structure.n_params if self.mapped else len(self.theta_rows)

    @cached_property
    def group_index(self) -> GroupIndex:
        """Level sums and expansions over the rows: made once, shared by every
        objective and solver on this factor (refits of other outcomes included)."""
        return GroupIndex(self.codes, self.n_levels)

    def cholesky_entries(self, p: np.ndarray) -> np.ndarray:
        """The entries of Lambda (at theta_rows/theta_cols) for the parameters ``p``."""
        return self.structure.theta(p) if self.mapped else p


@dataclass(frozen=True)
class ModelData:
    """Everything the objective needs that does not change during a fit."""

    X: np.ndarray  # (n, p)
    y: np.ndarray
    trials: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: object
    factors: tuple[FactorData, ...]
    # per family block, None (a scalar) or its design (n, p_b); None: every block scalar
    extra_designs: tuple | None = None

    @cached_property
    def n_beta(self) -> int:
        return self.X.shape[1]

    def own_outcome(self) -> None:
        """Replace ``y`` by a copy of it, for a fit that read the caller's array in place:
        the fitted model's data are then its own. (Only ``y`` changes, to the same
        values: whatever was made from it stays valid.)"""
        object.__setattr__(self, "y", np.array(self.y))

    @cached_property
    def n_theta(self) -> int:
        """Covariance parameters the optimiser sees (theta, or a structure's)."""
        return sum(f.n_params for f in self.factors)

    @cached_property
    def aliased(self) -> list:
        """``(group, count)`` for each group of factors that group the rows identically
        and whose covariances the likelihood reads only together
        (:func:`~.equal_likelihood.aliased_groups`): a property of the factors and the
        weights, found once per data (the design's warning and the engine read it)."""
        return aliased_groups(self.factors, self.weights)

    @cached_property
    def structured(self) -> bool:
        return any(f.mapped for f in self.factors)

    def locate(self, k: int):
        """``(factor index, index within its parameters)`` of the covariance parameter
        ``k`` (an index into the whole parameter vector), or None for another one."""
        j = k - self.n_beta
        if j < 0:
            return None
        for fi, f in enumerate(self.factors):
            if j < f.n_params:
                return fi, j
            j -= f.n_params
        return None

    def sd_columns(self, k: int) -> np.ndarray:
        """The columns of its factor's ``Z`` whose standard deviation is the parameter
        ``k``: a Cholesky diagonal's column, or those of a structure's SD parameter;
        empty for any other parameter."""
        at = self.locate(k)
        if at is None:
            return np.zeros(0, dtype=np.intp)
        f = self.factors[at[0]]
        if f.mapped:
            return f.structure.sd_columns(at[1])
        r = f.theta_rows[at[1]]
        return np.array([r] if r == f.theta_cols[at[1]] else [], dtype=np.intp)

    def cholesky_theta(self, params: np.ndarray) -> np.ndarray:
        """Cholesky entries of every factor for the covariance parameters ``params``."""
        if not self.structured:
            return params
        out, k = [], 0
        for f in self.factors:
            out.append(f.cholesky_entries(params[k : k + f.n_params]))
            k += f.n_params
        return np.concatenate(out)

    @cached_property
    def n_extra(self) -> int:
        """Coefficients of the family's blocks (one per scalar block)."""
        if self.extra_designs is None:
            return self.family.n_extra
        return _blocks.n_coefficients(self.family.blocks, self.extra_designs)

    def extra_values(self, coefs):
        """What the family receives for the blocks' coefficients (see ``blocks``)."""
        return _blocks.block_values(coefs, self.extra_designs)

    def extra_gradient(self, rows) -> np.ndarray:
        """Gradient in the blocks' coefficients from per-row derivatives (n_blocks, n)."""
        return _blocks.block_gradient(rows, self.extra_designs)

    @cached_property
    def extra_bounds(self) -> list:
        return _blocks.coefficient_bounds(self.family.blocks, self.extra_designs)

    @cached_property
    def extra_flat_side(self) -> tuple:
        return _blocks.coefficient_flat_sides(self.family.blocks, self.extra_designs)

    @cached_property
    def extra_far_start(self) -> tuple:
        return _blocks.coefficient_far_starts(self.family.blocks, self.extra_designs)

    def default_extra(self) -> np.ndarray:
        return _blocks.coefficient_starts(self.family.blocks, self.extra_designs)

    @cached_property
    def fixed_terms(self) -> tuple:
        """Prior weights and binomial trials (None when all one) and the family's
        parameter-free log-density terms: made once, shared by every objective of these
        data (the mixed model's and its nested GLM's)."""
        return _fixed_terms(self)

    def with_outcome(self, y: np.ndarray, constant=None) -> ModelData:
        """The same model with outcome ``y`` (a refit's); ``constant``, where given, is
        the family's parameter-free terms of ``y`` (``family.constant``), made already."""
        out = replace(self, y=y)
        if "aliased" in self.__dict__:  # (its factors and weights: the same groups)
            out.__dict__["aliased"] = self.__dict__["aliased"]
        if constant is not None:
            w, trials, _ = self.fixed_terms
            out.__dict__["fixed_terms"] = (w, trials, constant)  # (a cached property)
        return out

    @cached_property
    def n_u(self) -> int:
        return sum(f.n_levels * f.q for f in self.factors)


def make_factor_data(
    codes_list, Z_list, n_levels_list, layouts, structures=None, used=None, level_slopes=None
) -> tuple[FactorData, ...]:
    """Assemble :class:`FactorData` for every factor, assigning u offsets. ``used``: the
    rows with weight above 0 (:func:`.groups.used_rows`); ``level_slopes``: per factor,
    whether a slope variable is a predictor of the level (:attr:`FactorData.
    level_constant`)."""
    out, off, loc = [], 0, 0
    structures = [None] * len(codes_list) if structures is None else structures
    level_slopes = [False] * len(codes_list) if level_slopes is None else level_slopes
    for codes, Z, G, (rows, cols), st, flat in zip(
        codes_list, Z_list, n_levels_list, layouts, structures, level_slopes
    ):
        Z = _ones_view(Z)
        if Z.ndim == 2 and Z.shape[1] > 1 and not Z.flags.f_contiguous:
            Z = np.asfortranarray(Z)  # read column by column
        out.append(
            FactorData(
                codes, Z, G, rows, cols, off, loc, st, used_rows=used, level_slopes=bool(flat)
            )
        )
        off += G * Z.shape[1]
        loc += Z.shape[1]
    return tuple(out)


def _ones_view(Z: np.ndarray) -> np.ndarray:
    """``Z`` itself, or for a single column of ones (a random intercept) a read-only view
    of one number: the same values without an array of the rows' size."""
    if Z.ndim != 2 or Z.shape[1] != 1 or not len(Z) or Z.strides[0] == 0:
        return Z
    if not np.all(Z == 1.0):
        return Z
    return np.broadcast_to(np.ones((1, 1)), Z.shape)


def _indicator_columns(Z: np.ndarray) -> np.ndarray | None:
    """The column of each row's single 1 when ``Z`` is an indicator matrix (a structured
    factor's time levels), else None."""
    t = np.argmax(Z, axis=1)
    rows = np.arange(Z.shape[0])
    if not np.all(Z[rows, t] == 1.0) or np.count_nonzero(Z) != Z.shape[0]:
        return None
    return t


def lambda_matrices(data, theta: np.ndarray) -> list[np.ndarray]:
    """Lower-triangular relative covariance factor of every factor.

    ``theta`` holds the optimiser's covariance parameters (``data.n_theta``): the
    Cholesky entries, or a structured factor's own parameters.
    """
    mats, k = [], 0
    for f in data.factors:
        L = np.zeros((f.q, f.q))
        structure = getattr(f, "structure", None)
        structure = None if structure is None or structure.identity else structure
        nt = len(f.theta_rows) if structure is None else structure.n_params
        pf = theta[k : k + nt]
        L[f.theta_rows, f.theta_cols] = pf if structure is None else structure.theta(pf)
        mats.append(L)
        k += nt
    return mats


def _cholesky_matrices(data: ModelData, chol: np.ndarray) -> list[np.ndarray]:
    """Lambda of every factor from its Cholesky entries."""
    mats, k = [], 0
    for f in data.factors:
        L = np.zeros((f.q, f.q))
        nt = len(f.theta_rows)
        L[f.theta_rows, f.theta_cols] = chol[k : k + nt]
        mats.append(L)
        k += nt
    return mats


def _fixed_terms(data: ModelData):
    """Prior weights and binomial trials (None when all one), and the parameter-free
    log-density terms."""
    w = None if np.all(data.weights == 1.0) else data.weights
    trials = None if np.all(data.trials == 1.0) else data.trials
    return w, trials, data.family.constant(data.y, trials)


def subset_rows(data: ModelData, mask: np.ndarray) -> ModelData:
    """The model restricted to some rows, levels renumbered (for starting values)."""
    codes, Zs, levels, layouts = [], [], [], []
    structures = [f.structure for f in data.factors]
    for f in data.factors:
        uniq, new = np.unique(f.codes[mask], return_inverse=True)
        codes.append(new.astype(np.intp))
        Zs.append(f.Z[mask])
        levels.append(len(uniq))
        layouts.append((f.theta_rows, f.theta_cols))
    return ModelData(
        np.asfortranarray(data.X[mask]),
        data.y[mask],
        data.trials[mask],
        data.weights[mask],
        data.offset[mask],
        data.family,
        make_factor_data(
            codes,
            Zs,
            levels,
            layouts,
            structures,
            used_rows(data.weights[mask]),
            [f.level_slopes for f in data.factors],
        ),
        None
        if data.extra_designs is None
        else tuple(None if D is None else D[mask] for D in data.extra_designs),
    )
