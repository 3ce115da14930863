"""The marginal log-likelihood of a GLMM: conditional modes, Laplace and AGQ.

Model (all arrays on the internal, scaled design)::

    eta = X beta + offset + Z Lambda(theta) u,    u ~ N(0, I)

The objective is the deviance-like quantity ``F = -2 log L``:

.. math::

    F(\\beta, \\theta, \\phi) \\approx -2 \\sum_i \\log p(y_i \\mid \\tilde\\eta_i)
        + \\lVert \\tilde u \\rVert^2 + \\log\\lvert H \\rvert,
    \\qquad H = \\Lambda^\\top Z^\\top W Z \\Lambda + I

at the conditional mode ``u~`` (Laplace). ``W`` holds the exact curvatures of
the log-density. Its gradient in ``(beta, theta, phi)`` is analytic: the
envelope theorem for the first two terms and an adjoint solve for the mode's
dependence in ``log|H|`` (see :meth:`Objective.gradient`).

A factor with a covariance structure (``covariance.py``: ar1, cs, toep, ou) has its own
parameters in ``params`` in place of Lambda's entries: ``_unpack`` maps them to the
entries, and the gradient is taken along each parameter's ``d Lambda / d p``.

Order of calls: ``Objective.evaluate(params)`` → ``_unpack`` → ``pirls``
(sets the mode, curvatures and factorisation) → value; ``gradient`` reuses
that state. Adaptive Gauss-Hermite quadrature (``n_agq > 1``) adds
:func:`agq_deviance` on top of the same mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import blocks as _blocks
from .groups import GroupIndex
from .linalg import (
    BlockSolver,
    InnerSolveFailure,
    NotPositiveDefinite,
    PaddedBlockSolver,
    make_solver,
)
from .linalg.block import ZLambda, congruence
from .quadrature import agq_deviance, agq_gradient

_LOG_2PI = np.log(2.0 * np.pi)


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

    @cached_property
    def q(self) -> int:
        return self.Z.shape[1]

    @cached_property
    def mapped(self) -> bool:
        """Whether the optimiser's parameters differ from the Cholesky entries (a
        structure other than lme4's own parametrisation)."""
        return self.structure is not None and not self.structure.identity

    @cached_property
    def n_params(self) -> int:
        """Covariance parameters the optimiser sees for this factor."""
        return self.structure.n_params if self.mapped else len(self.theta_rows)

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

    @cached_property
    def n_theta(self) -> int:
        """Covariance parameters the optimiser sees (theta, or a structure's)."""
        return sum(f.n_params for f in self.factors)

    @cached_property
    def structured(self) -> bool:
        return any(f.mapped for f in self.factors)

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

    def default_extra(self) -> np.ndarray:
        return _blocks.coefficient_starts(self.family.blocks, self.extra_designs)

    @cached_property
    def fixed_terms(self) -> tuple:
        """Prior weights and binomial trials (None when all one) and the family's
        parameter-free log-density terms: made once, shared by every objective of these
        data (the mixed model's and its nested GLM's)."""
        return _fixed_terms(self)

    @cached_property
    def n_u(self) -> int:
        return sum(f.n_levels * f.q for f in self.factors)


def make_factor_data(
    codes_list, Z_list, n_levels_list, layouts, structures=None
) -> tuple[FactorData, ...]:
    """Assemble :class:`FactorData` for every factor, assigning u offsets."""
    out, off, loc = [], 0, 0
    structures = [None] * len(codes_list) if structures is None else structures
    for codes, Z, G, (rows, cols), st in zip(
        codes_list, Z_list, n_levels_list, layouts, structures
    ):
        Z = _ones_view(Z)
        if Z.ndim == 2 and Z.shape[1] > 1 and not Z.flags.f_contiguous:
            Z = np.asfortranarray(Z)  # read column by column
        out.append(FactorData(codes, Z, G, rows, cols, off, loc, st))
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
        make_factor_data(codes, Zs, levels, layouts, structures),
        None
        if data.extra_designs is None
        else tuple(None if D is None else D[mask] for D in data.extra_designs),
    )


# starting values of a second mode search for families that are not log-concave:
# spherical random effects from -8 to 8 prior SDs
_MODE_GRID = np.linspace(-8.0, 8.0, 9)
# the scan at the optimum (Objective.scan_modes): quarter prior SDs; rows x grid
# points evaluated at once
_SCAN_GRID = np.linspace(-8.0, 8.0, 65)
_SCAN_CELLS = 2_000_000
_FLAT_MODE = 1e-3


def _competing(h, top, gap):
    """Levels (columns of ``h``) whose values on the grid dip and rise again.

    A point lower than the highest points on both sides of it, by more than the
    rounding of the log-density, with both within ``gap`` of the level's top
    ``top``: two separate modes, both carrying mass.
    """
    left = np.maximum.accumulate(h, axis=0)[:-2]
    right = np.maximum.accumulate(h[::-1], axis=0)[::-1][2:]
    rim = np.minimum(left, right)
    dip = (rim - h[1:-1] > 1e-6 * (1.0 + np.abs(top))) & (rim > top - gap)
    return np.flatnonzero(dip.any(axis=0))


def _level_subset(g: GroupIndex, levels):
    """The rows of ``levels`` (indices) and a :class:`GroupIndex` of those rows, the
    levels numbered in the order given."""
    rank = np.full(g.n_levels, -1)
    rank[levels] = np.arange(len(levels))
    sub = rank[g.codes]
    rows = sub >= 0
    return GroupIndex(sub[rows], len(levels)), rows


def _rows_or_none(v, rows):
    return None if v is None else v[rows]


def _const_rows(const, rows):
    """The family's parameter-free terms (an array, a tuple of arrays or None entries)
    on some rows."""
    if isinstance(const, tuple):
        return tuple(_const_rows(c, rows) for c in const)
    if isinstance(const, np.ndarray) and const.ndim and len(const) == len(rows):
        return const[rows]
    return const


def _const_tiled(const, k: int):
    """The family's parameter-free terms for ``k`` copies of the rows, one after another."""
    if isinstance(const, tuple):
        return tuple(_const_tiled(c, k) for c in const)
    if isinstance(const, np.ndarray) and const.ndim:
        return np.tile(const, k)
    return const


# Cholesky values of a zero diagonal tried by the optimiser's probe (link-scale SDs of
# the internal, standardised columns): small ones matter for large counts
_PROBE_SCALES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# rows times values up to which they are probed in one pass (the fixed cost per
# evaluation matters on small data; on large data one pass would hold many copies)
_PROBE_CELLS = 500_000


# outcome values and linear-predictor grid of Objective._convexity_bounds: the largest
# convex curvature of each outcome value's log-density
_CONVEXITY_OUTCOMES = 60
_CONVEXITY_GRID = np.linspace(-30.0, 30.0, 601)


# Newton decrement (twice the expected gain) below which a step is taken without the
# decrease test: the quadratic model is exact there to far below the log-density's rounding
_NEAR_MODE = 1e-8
# per-row temporaries up to this many values (16 MB) are made at once: on small data
# the cost is per numpy call, and column-by-column passes (which keep large data to
# few arrays of the rows' size) only add calls
_AT_ONCE_CELLS = 2_000_000


def _modes_found(dec: np.ndarray, obj: np.ndarray, top=None) -> bool:
    """Whether every unit's Newton decrement ``dec`` says its mode is found.

    The decrement is twice the gain the next Newton step could bring: below 1e-20,
    or below 1e-22 of the penalised log-density ``obj`` when that is so large (a unit
    of a million rows) that its rounding cannot resolve 1e-20; the analytic gradient
    assumes a mode this exact.
    """
    top = dec.max() if top is None else top
    if top < 1e-20:
        return True
    if top > 1e-8:  # far from the mode for any log-density below 1e14
        return False
    return bool(np.all(dec < 1e-22 * np.abs(obj)))


class _State(dict):
    """The mode and per-row arrays at the last point evaluated (``u``, ``der``, ...).

    Entries the Laplace value and gradient do not read are not kept after the mode
    search, and made again (the same values) when first read: ``eta_fix = X beta +
    offset``, ``a_vals`` (``Z Lambda``, when the search went through ``rows``) and,
    for families without extra parameters and with the Laplace approximation, ``eta``.
    ``make(state, key)`` makes them.
    """

    lazy = ("eta_fix", "a_vals", "eta")

    def __init__(self, make, **entries):
        super().__init__(**entries)
        self._make = make

    def __missing__(self, key):
        if key not in self.lazy or (key == "a_vals" and "rows" not in self):
            raise KeyError(key)
        value = self[key] = self._make(self, key)
        return value


class Objective:
    """Laplace / AGQ objective with warm-started conditional modes.

    Parameters are packed as ``[beta (p), theta (T), extra (E)]``.
    """

    def __init__(self, data: ModelData, n_agq: int = 1, pirls_max_iter: int = 60):
        self.data = data
        self.n_agq = n_agq
        self.pirls_max_iter = pirls_max_iter
        f0 = data.factors
        # one factor's solver needs no columns of H per row (``cols`` makes them if asked)
        self._cols = self._columns() if len(f0) > 1 else None
        self._single = len(f0) == 1
        self.groups = [GroupIndex(f.codes, f.n_levels) for f in f0]
        self.Q = data.n_u
        if len(f0) == 1:
            # a structured factor's blocks (one effect per time point) are large
            solver = PaddedBlockSolver if f0[0].mapped else BlockSolver
            self.solver = solver(f0[0].codes, f0[0].n_levels, f0[0].q)
            # Newton steps are damped level by level: each level is its own problem
            self.u_unit = np.repeat(np.arange(f0[0].n_levels), f0[0].q)
            self.n_units = f0[0].n_levels
        else:
            blocks = [(f.offset, f.n_levels, f.q) for f in f0]
            self.solver = make_solver(self.cols, self.Q, blocks)
            self.u_unit = np.zeros(self.Q, dtype=np.intp)
            self.n_units = 1
        # one factor with a scalar random effect (random intercepts): H is diagonal
        self._scalar = self._single and f0[0].q == 1
        # large data (over ``lazy_state_rows`` rows): per-row arrays made again rather
        # than kept, and products in fewer arrays (small data: fewer calls instead)
        self._lean = len(data.y) > self.lazy_state_rows
        # one unstructured factor of q >= 2 on large data: Z Lambda is not formed
        self._zrows = (
            self._lean and self._single and f0[0].q > 1 and type(self.solver) is BlockSolver
        )
        self._last_eta = None
        self.u = np.zeros(self.Q)
        self._cov = np.zeros(data.n_theta)  # the last covariance parameters evaluated
        self._structured = data.structured
        self.n_evals = 0
        self.pirls_failures = 0
        self.pirls_iterations = 0
        self._w, self._trials, self._const = data.fixed_terms
        self._last_key, self._last_val, self._last_grad = None, np.inf, None
        self._predictor = None
        # search for the highest of several modes (families that are not log-concave);
        # switched on by the convergence checks (see sklearn_glmm._engine.converge)
        self.global_modes = False

    @property
    def cols(self) -> np.ndarray:
        """Each row's columns of ``H`` (its random effects' indices), shape (n, s)."""
        if self._cols is None:
            self._cols = self._columns()
        return self._cols

    def _columns(self) -> np.ndarray:
        f0 = self.data.factors
        cols = [f.offset + f.codes[:, None] * f.q + np.arange(f.q)[None, :] for f in f0]
        return np.concatenate(cols, axis=1)

    # -- pieces -----------------------------------------------------------
    def _unpack(self, params):
        """``(beta, theta, extra)``: ``theta`` the Cholesky entries of Lambda (a
        structured factor's parameters mapped to them), ``extra`` the family's values of
        its blocks."""
        d = self.data
        p, T = d.n_beta, d.n_theta
        self._cov = params[p : p + T]
        theta = d.cholesky_theta(self._cov) if self._structured else self._cov
        return params[:p], theta, d.extra_values(params[p + T :])

    def _a_vals(self, theta):
        if self._scalar:
            Z = self.data.factors[0].Z
            if Z.strides[0] == 0:  # a view of one row (a random intercept): so is Z Lambda
                return np.broadcast_to(Z[:1] * theta[0], Z.shape)
            return Z * theta[0]
        lams = _cholesky_matrices(self.data, theta)
        if self._zrows:
            f = self.data.factors[0]
            return ZLambda(f.Z, lams[0], self._ones_columns(f), self.groups[0])
        return np.concatenate([f.Z @ L for f, L in zip(self.data.factors, lams)], axis=1)

    def _Au(self, a_vals, u):
        """``Z Lambda u``: each row's random-effect contribution, factor by factor."""
        if isinstance(a_vals, ZLambda):
            return a_vals.times(u)
        out = None
        for f, g in zip(self.data.factors, self.groups):
            uf = u[f.offset : f.offset + f.n_levels * f.q]
            if f.q == 1:
                term = a_vals[:, f.local] * g.expand(uf)
            elif not self._lean:
                a = a_vals[:, f.local : f.local + f.q]
                term = np.einsum("nq,nq->n", a, g.expand(uf.reshape(-1, f.q)))
            else:  # column by column (the sum of einsum's "nq,nq->n"): no (n, q) array
                uf = uf.reshape(-1, f.q)
                term = g.expand(uf[:, 0])
                term *= a_vals[:, f.local]
                for k in range(1, f.q):
                    t = g.expand(uf[:, k])
                    t *= a_vals[:, f.local + k]
                    term += t
                    del t
            out = term if out is None else out + term
        return out

    def _Atv(self, a_vals, v):
        """``Lambda' Z' v``: per-row values summed onto the random effects."""
        if isinstance(a_vals, ZLambda):
            if v.ndim == 1:
                return a_vals.sums(v)
            return np.column_stack([a_vals.sums(v[:, j]) for j in range(v.shape[1])])
        parts = []
        mat = v.ndim == 2  # several vectors at once, (n, k) -> (Q, k)
        for f, g in zip(self.data.factors, self.groups):
            if f.q == 1:
                a = a_vals[:, f.local]
                parts.append(g.sum(a[:, None] * v if mat else a * v))
            else:
                a = a_vals[:, f.local : f.local + f.q]
                cells = self._indicator_cells(f) if mat and f.mapped else None
                if cells is not None:
                    # a time-indicator Z: row n's a is Lambda's row t_n, so the sums are
                    # Lambda' (per level and time sums of v): O(n k + G q^2 k), not O(n q k)
                    t, first, gc = cells
                    C = gc.sum(v).reshape(f.n_levels, f.q, -1)
                    lam = np.zeros((f.q, f.q))
                    lam[first >= 0] = a[first[first >= 0]]  # absent times: no sums to carry
                    parts.append(np.matmul(lam.T, C).reshape(-1, v.shape[1]))
                elif mat and a.size * v.shape[1] <= _AT_ONCE_CELLS:
                    prod = (a[:, :, None] * v[:, None, :]).reshape(len(a), -1)
                    parts.append(g.sum(prod).reshape(-1, v.shape[1]))
                elif mat:  # column by column: no (n, q, k) temporary
                    out = np.empty((f.n_levels, f.q, v.shape[1]))
                    for j in range(v.shape[1]):
                        out[:, :, j] = g.sum(a * v[:, j, None])
                    parts.append(out.reshape(-1, v.shape[1]))
                elif not self._lean:
                    parts.append(g.sum(a * v[:, None]).ravel())
                else:  # column by column: no (n, q) array
                    out = np.empty((f.n_levels, f.q))
                    for k in range(f.q):
                        out[:, k] = g.sum(a[:, k] * v)
                    parts.append(out.ravel())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _indicator_cells(self, f):
        """For a factor whose Z is a time-indicator matrix: each row's time ``t``, a row
        at each time (-1 if none; every row at a time has the same row of Z Lambda) and
        the index of the (level, time) cells; None for other factors. Computed once per
        factor."""
        cache = self.__dict__.setdefault("_cells", {})
        if id(f) not in cache:
            t = _indicator_columns(f.Z)
            if t is None:
                cache[id(f)] = None
            else:
                first = np.full(f.q, -1)
                first[t] = np.arange(len(t))
                cache[id(f)] = (t, first, GroupIndex(f.codes * f.q + t, f.n_levels * f.q))
        return cache[id(f)]

    def _row_sum(self, v):
        """Sums of a per-row quantity over the units damped separately in PIRLS."""
        return self.groups[0].sum(v) if self._single else np.array([v.sum()])

    def _u_sum(self, v):
        """Sums of a per-random-effect quantity over the same units."""
        if self._single:
            return v.reshape(self.n_units, -1).sum(axis=1)
        return np.array([v.sum()])

    def _derivs(self, eta, extra, third=True):
        d = self.data
        if third or not getattr(d.family, "lazy_third", False):
            return d.family.derivs(d.y, eta, self._trials, self._w, extra, self._const)
        return d.family.derivs(d.y, eta, self._trials, self._w, extra, self._const, third=False)

    def _derivs_summed(self, eta, extra, row_sum):
        """The family's derivatives at ``eta`` without the per-row log-density, which
        only its sums are read for: over each unit (``row_sum``) and over all rows (the
        Laplace value's); ``w3`` only where the family makes it at no cost (else the
        gradient makes it, see :meth:`_third`). Returns ``(derivs, unit sums, total)``."""
        if not self._lean:  # small data: eta, w3 and the log-density kept (fewer calls)
            self._last_eta = eta
            der = self._derivs(eta, extra)
            return der, row_sum(der.loglik), None
        der = self._derivs(eta, extra, third=False)
        return der._replace(loglik=None), row_sum(der.loglik), der.loglik.sum()

    # -- conditional modes --------------------------------------------------
    def pirls(self, beta, theta, extra, u0=None):
        """Penalised IRLS (Newton with step-halving) for the conditional modes.

        1. eta, derivatives and the penalised log-density at the current u;
        2. factorise H and take the Newton step H^{-1}(Lambda'Z'd1 - u);
        3. halve the step, level by level, wherever the penalised log-density
           would decrease; stop when every Newton decrement is negligible.

        Sets ``self.state`` (u, eta, derivatives, a_vals) with the solver
        factorised at the returned mode.
        """
        d = self.data
        a_vals = self._a_vals(theta)
        eta_fix = d.X @ beta + d.offset
        u = (self.u if u0 is None else u0).copy()
        # the parameters the optimiser moves (a structure's own, when there is one): the
        # predictor below is a derivative in them
        bt = np.concatenate([beta, self._cov if self._structured else theta])
        if u0 is None and self._predictor is not None and self._predictor[0] is self.u:
            # first-order move of the modes with (beta, theta), from the last gradient
            _, ref, J = self._predictor
            u += J @ (bt - ref)
            del J  # (levels x parameters) let go with the predictor
        self._predictor = None
        if self._scalar:
            self._pirls_scalar(a_vals, eta_fix, extra, u)
            self.state["bt"], self.state["beta"] = bt, beta.copy() if self._lean else beta
            del eta_fix  # the state's, let go when settled
            self._settle_state()
            return self.u
        # eta itself is not kept: made again from the mode if read (``_State``)
        eta = self._Au(a_vals, u)
        eta += eta_fix
        der, ll, total = self._derivs_summed(eta, extra, self._row_sum)
        del eta
        units = self.n_units
        obj = ll - 0.5 * self._u_sum(u * u)
        converged = False
        for _it in range(self.pirls_max_iter):
            grad = self._Atv(a_vals, der.d1) - u
            exact = self._factorize(a_vals, der.w)
            step = self.solver.solve(grad)
            dec = self._u_sum(grad * step)
            if not np.all(np.isfinite(dec)):
                raise NotPositiveDefinite("non-finite Newton step")
            if _modes_found(dec, obj) or np.abs(step).max() < 1e-11:
                converged = True
                if not exact:  # the mode's own Hessian must be positive definite
                    self.solver.factorize(a_vals, der.w)
                break
            # the trials need only the step: the current point's per-row arrays go first
            der = None
            t = np.ones(units)
            near = dec < _NEAR_MODE  # full steps there (see _pirls_scalar)
            for _half in range(40):
                u_try = u + t[self.u_unit] * step
                der_try = None  # the last try's arrays go first
                eta_try = self._Au(a_vals, u_try)
                eta_try += eta_fix  # in place: eta_fix + Z Lambda u
                der_try, ll, total = self._derivs_summed(eta_try, extra, self._row_sum)
                del eta_try
                obj_try = ll - 0.5 * self._u_sum(u_try * u_try)
                worse = ~(obj_try >= obj - 1e-12 * (1.0 + np.abs(obj))) & ~near
                if not worse.any():
                    break
                t[worse] *= 0.5
            if worse.any():
                # no decrease within 40 halvings: those units stay where they were (the
                # solve then fails unless they are already at their modes)
                t[worse] = 0.0
                u_try = u + t[self.u_unit] * step
                der_try = None
                eta_try = self._Au(a_vals, u_try)
                eta_try += eta_fix  # in place: eta_fix + Z Lambda u
                der_try, ll, total = self._derivs_summed(eta_try, extra, self._row_sum)
                del eta_try
                obj_try = ll - 0.5 * self._u_sum(u_try * u_try)
            u, der, obj = u_try, der_try, obj_try
            der_try = None
        self.pirls_iterations += _it + 1
        if not converged:
            self.u = u  # the next start, though this solve failed
            raise InnerSolveFailure(
                f"conditional modes not found in {self.pirls_max_iter} Newton steps"
            )
        self.u = u
        # Z Lambda not formed: the state reads it as ``rows`` (``a_vals`` made if read)
        rows = dict(rows=a_vals) if isinstance(a_vals, ZLambda) else dict(a_vals=a_vals)
        self.state = _State(
            self._state_entry,
            u=u,
            der=der,
            **rows,
            eta_fix=eta_fix,
            beta=beta.copy() if self._lean else beta,
            extra=extra,
            bt=bt,
            ll=total,
            ll_units=ll,
        )
        del eta_fix  # the state's, let go when settled
        self._settle_state()
        return u

    def _unit_objective(self):
        """Penalised log-density of each unit (level) at the current modes."""
        s = self.state
        return s["ll_units"] - 0.5 * self._u_sum(s["u"] * s["u"])

    def _highest_modes(self, beta, theta, extra):
        """For a family that is not log-concave (zero inflation), the highest mode.

        A level whose outcomes are all zero can have two modes (the zeros explained
        by the count part or by the inflation); the Laplace approximation is taken
        at the higher one. The search from the warm start is compared with one from
        ``u = 0``, unit by unit, and the higher mode of each kept.
        """
        first_u, first_obj = self.u.copy(), self._unit_objective()
        start = self._grid_start(first_u, first_obj, extra)
        if start is not None:  # else no point of the grid beats the modes found
            self._keep_higher(beta, theta, extra, start, first_u, first_obj)

    def _keep_higher(self, beta, theta, extra, start, first_u, first_obj) -> bool:
        """Search the modes again from ``start`` and keep, unit by unit, the higher of
        these and the modes ``first_u`` (penalised log-densities ``first_obj``).

        Returns whether any unit moved to a higher mode.
        """
        try:
            self.pirls(beta, theta, extra, u0=start)
        except InnerSolveFailure:
            self.pirls(beta, theta, extra, u0=first_u)
            return False
        second = self._unit_objective()
        better_first = first_obj > second + 1e-10 * (1.0 + np.abs(second))
        if better_first.any():
            u = np.where(better_first[self.u_unit], first_u, self.u)
            self.pirls(beta, theta, extra, u0=u)
        gain = self._unit_objective() - first_obj
        return bool(np.any(gain > 1e-10 * (1.0 + np.abs(first_obj))))

    def scan_modes(self, params, gap: float = 3.0):
        """The objective at each level's highest mode, and the levels with two modes.

        At ``params``, each level's penalised log-density is computed on a grid of
        quarter prior SDs from -8 to 8 (scalar random effects). Where a point of the
        grid beats the mode found, the search restarts there and the higher mode is
        kept. A level whose density on the grid dips and rises again to within
        ``gap`` of its top (a second mode holding more than about e^-3 of the mass)
        makes the Laplace approximation, taken at one mode, unreliable there; so does
        a mode whose curvature is below 1e-3 of the prior's (a nearly flat top).

        Returns ``(value, levels)``: the objective (``-2 log L``) at the highest modes
        and the indices of the levels with competing modes (none when the random
        effect is not scalar, or with quadrature).
        """
        val = self.evaluate(params)
        none = np.zeros(0, dtype=np.intp)
        if not self._scalar or self.state is None or not np.isfinite(val):
            return val, none
        beta, theta, extra = self._unpack(np.asarray(params, dtype=float))
        # levels whose log-density is concave have one mode, the one found: not scanned
        levels = np.flatnonzero(~self._concave_levels(extra))
        top = self._unit_objective()
        h = self._grid_objective(_SCAN_GRID, extra, levels)
        # a gain below 1e-7 is the flat top of one mode, not another mode
        higher = h.max(axis=0) > top[levels] + 1e-7 * (1.0 + np.abs(top[levels]))
        if higher.any():
            start = self.u.copy()
            start[levels] = np.where(higher, self._refine_top(h, extra, levels), self.u[levels])
            if self._keep_higher(beta, theta, extra, start, self.u.copy(), top):
                val = agq_deviance(self, theta) if self.n_agq > 1 else self.laplace()
                val = val if np.isfinite(val) else np.inf
                self._last_key, self._last_grad, self._predictor = None, None, None
                top = self._unit_objective()
        if self.n_agq > 1:  # quadrature integrates over both modes where it has the nodes
            return val, none
        # a curvature at the mode below 1e-3 of the prior's: a nearly flat top, where the
        # Laplace value moves with the mode's last digits (-log(H) / 2)
        st = self.state
        curv = 1.0 + self.groups[0].sum(st["der"].w * st["a_vals"][:, 0] ** 2)
        flat = np.flatnonzero(curv < _FLAT_MODE)
        competing = levels[_competing(h, top[levels], gap)]
        return val, np.union1d(competing, flat).astype(np.intp)

    def can_batch_scales(self) -> bool:
        """Whether :meth:`laplace_at_scales` applies: one scalar random effect (not
        structured), a log-concave family, the Laplace approximation, and data small
        enough for a copy per value."""
        return bool(
            getattr(self, "_scalar", False)  # not a partitioned objective's
            and not self._structured
            and self.n_agq == 1
            and getattr(self.data.family, "log_concave", False)
            and len(self.data.y) * len(_PROBE_SCALES) <= _PROBE_CELLS
        )

    def laplace_at_scales(self, params, values) -> np.ndarray:
        """The Laplace objective at ``params`` with the random effect's Cholesky value
        replaced by each of ``values``: one vectorised mode search for all of them.

        Equals :meth:`evaluate` at each point (to rounding) and leaves the objective's
        state as it was. A point whose modes are not found is ``inf``, as in
        :meth:`evaluate`. Only where :meth:`can_batch_scales`.
        """
        params = np.asarray(params, dtype=float)
        values = np.asarray(values, dtype=float)
        cov = self._cov
        beta, _, extra = self._unpack(params)
        self._cov = cov  # the state's own (``_unpack`` sets it)
        d, g = self.data, self.groups[0]
        K, G = len(values), g.n_levels
        self.n_evals += K
        # K copies of the rows, one after another: each copy's levels are contiguous
        # runs again, so that one GroupIndex sums all of them
        big = GroupIndex(np.add.outer(np.arange(K) * G, g.codes).ravel(), K * G)
        y = np.tile(d.y, K)
        trials = None if self._trials is None else np.tile(self._trials, K)
        w = None if self._w is None else np.tile(self._w, K)
        const = _const_tiled(self._const, K)
        a = np.outer(values, d.factors[0].Z[:, 0]).ravel()
        a2 = a * a
        eta_fix = np.tile(d.X @ beta + d.offset, K)

        def at(u):
            der = d.family.derivs(y, eta_fix + a * big.expand(u), trials, w, extra, const)
            return der, big.sum(der.loglik) - 0.5 * u * u

        u = np.zeros(K * G)
        der, obj = at(u)
        ok = np.zeros(K * G, dtype=bool)
        for _it in range(4 * self.pirls_max_iter):
            h = 1.0 + big.sum(der.w * a2)
            step = (big.sum(a * der.d1) - u) / h
            dec = step * step * h
            finite = np.isfinite(dec)
            # as in _modes_found, level by level; a failed level stays failed
            ok = finite & (
                (dec < 1e-20)
                | (np.abs(step) < 1e-11)
                | ((dec < 1e-8) & (dec < 1e-22 * np.abs(obj)))
            )
            active = finite & ~ok
            if not active.any():
                break
            step = np.where(active, step, 0.0)
            floor = obj - 1e-12 * (1.0 + np.abs(obj))
            t = np.where(active, 1.0, 0.0)
            for _half in range(40):
                der_try, obj_try = at(u + t * step)
                bad = ~(obj_try >= floor) & (dec >= _NEAR_MODE) & (t > 0)
                if not bad.any():
                    break
                t[bad] *= 0.5
            else:
                t[bad] = 0.0
                der_try, obj_try = at(u + t * step)
            u, der, obj = u + t * step, der_try, obj_try
        dev = -2.0 * big.sum(der.loglik) + u * u + np.log(h)
        per_value = dev.reshape(K, G).sum(axis=1)
        found = ok.reshape(K, G).all(axis=1) & np.isfinite(per_value)
        return np.where(found, per_value, np.inf)

    def _concave_levels(self, extra) -> np.ndarray:
        """Levels whose penalised log-density is strictly concave in their (scalar)
        random effect: one mode, so the mode found is the highest.

        The second derivative of level j's penalised log-density is
        ``sum_i a_i^2 l_i''(eta_i) - 1``. Each row's ``l''`` is bounded above by the
        largest value it takes over the linear predictor, for the row's outcome
        (:meth:`_convexity_bounds`); a level with ``sum_i a_i^2 max(l_i'', 0) < 1``
        (less 1 % for the bounds' own error) is therefore concave everywhere. Where no
        such bound is computed (binomial trials, per-row family parameters, many
        distinct outcomes), no level is.
        """
        g = self.groups[0]
        bound = self._convexity_bounds(extra)
        if bound is None:
            return np.zeros(g.n_levels, dtype=bool)
        a = self.state["a_vals"][:, 0]
        return g.sum(a * a * bound) < 0.99

    def _convexity_bounds(self, extra):
        """Each row's largest ``l''(eta)`` over eta (0 where its log-density is concave),
        times its prior weight; None where not computed (see :meth:`_concave_levels`)."""
        d = self.data
        if self._trials is not None or d.extra_designs is not None:
            return None
        y_vals, inverse = np.unique(d.y, return_inverse=True)
        if len(y_vals) > _CONVEXITY_OUTCOMES:
            return None
        const_cache = {}

        def curvature(eta):  # l'' of each outcome value (rows) at each eta (columns)
            k = eta.shape[1]
            y = np.repeat(y_vals, k)
            if k not in const_cache:
                const_cache[k] = d.family.constant(y, None)
            eta = np.broadcast_to(eta, (len(y_vals), k)).ravel()
            with np.errstate(all="ignore"):
                der = d.family.derivs(y, eta, None, None, extra, const_cache[k])
            return -der.w.reshape(len(y_vals), k)

        coarse = _CONVEXITY_GRID
        c = curvature(coarse[None, :])
        if not np.all(np.isfinite(c)):
            return None
        # refined around each outcome's largest value (the grid's step, 0.1, leaves it
        # within about 1e-3 of the true maximum for a smooth l''; the refinement, 1e-5)
        centre = coarse[np.argmax(c, axis=1)][:, None]
        fine = centre + np.linspace(-0.1, 0.1, 41)[None, :]
        c_fine = curvature(fine)
        if not np.all(np.isfinite(c_fine)):
            return None
        top = np.maximum(c.max(axis=1), c_fine.max(axis=1))
        bound = np.maximum(top, 0.0)[inverse]
        return bound if self._w is None else bound * self._w

    def _grid_start(self, u, obj, extra):
        """A second start for the mode search: ``u = 0``, or for a scalar random effect
        the best of a grid of values per level (where its penalised log-density beats
        the mode found), so that a mode far from both starts is found too."""
        if not self._scalar:
            return np.zeros(self.Q)
        h = self._grid_objective(_MODE_GRID, extra)
        best_u, best = _MODE_GRID[np.argmax(h, axis=0)], h.max(axis=0)
        higher = best > obj + 1e-10 * (1.0 + np.abs(obj))
        return np.where(higher, best_u, u) if higher.any() else None

    def _grid_objective(self, grid, extra, levels=None) -> np.ndarray:
        """Each level's penalised log-density at every value of ``grid`` for its
        (scalar) spherical random effect, shape (len(grid), n_levels).

        ``grid`` is one grid for every level, shape (K,), or one per level, (K, n_levels).
        With ``levels`` (indices), only those levels' rows are computed: shape
        (K, len(levels)), a per-level grid then (K, len(levels)).
        """
        if levels is not None and not len(levels):
            return np.empty((len(grid), 0))
        s, g = self.state, self.groups[0]
        a, eta_fix = s["a_vals"][:, 0], s["eta_fix"]
        d = self.data
        y, trials, w, const = d.y, self._trials, self._w, self._const
        if levels is not None and len(levels) < g.n_levels:
            g, rows = _level_subset(g, levels)
            a, eta_fix, y = a[rows], eta_fix[rows], y[rows]
            trials, w = _rows_or_none(trials, rows), _rows_or_none(w, rows)
            const = _const_rows(const, rows)
        grid = np.broadcast_to(grid.reshape(len(grid), -1), (len(grid), g.n_levels))
        chunk = max(1, _SCAN_CELLS // max(len(eta_fix), 1))
        h = np.empty((len(grid), g.n_levels))
        for k in range(0, len(grid), chunk):
            v = grid[k : k + chunk]
            eta = eta_fix + a * g.expand(v.T).T
            loglik = d.family.loglik(y, eta, trials, w, extra, const)
            h[k : k + chunk] = g.sum(loglik.T).T - 0.5 * v * v
        return h

    def _refine_top(self, h, extra, levels=None, rounds: int = 3) -> np.ndarray:
        """Each level's highest point of ``h`` (on ``_SCAN_GRID``), refined by finer grids
        around it: a start from which the search reaches the highest of two modes
        that are close together. ``levels``: the levels of ``h``'s columns (all by
        default)."""
        cols = np.arange(h.shape[1])
        top = np.argmax(h, axis=0)
        best, width = _SCAN_GRID[top], _SCAN_GRID[1] - _SCAN_GRID[0]
        for _ in range(rounds):
            grid = best + width * np.linspace(-1.0, 1.0, 17)[:, None]
            hr = self._grid_objective(grid, extra, levels)
            best, width = grid[np.argmax(hr, axis=0), cols], width / 8.0
        return best

    def _pirls_scalar(self, a_vals, eta_fix, extra, u):
        """:meth:`pirls` for one factor with a scalar random effect.

        Every level is a one-dimensional problem: the Newton step is
        ``(sum_i a_i d1_i - u_j) / h_j`` with ``h_j = 1 + sum_i w_i a_i^2``,
        written with as few array passes as possible (small data spend their
        time in per-call overhead). A random intercept's ``a`` is one number
        (``a_vals`` a read-only view of it): no per-row arrays of it are made.
        """
        g = self.groups[0]
        a = a_vals[0, 0] if a_vals.strides[0] == 0 else a_vals[:, 0]
        a2 = a * a
        # eta itself is not kept: made again from the mode if read (``_State``)
        der, ll, total = self._derivs_summed(self._scalar_eta(eta_fix, a, u), extra, g.sum)
        obj = ll - 0.5 * u * u
        converged = False
        # a log-concave family has w >= 0: h >= 1 needs no check
        concave = getattr(self.data.family, "log_concave", False)
        exact = True
        for _it in range(self.pirls_max_iter):
            h = 1.0 + g.sum(der.w * a2)
            if not concave:
                exact = h.min() > 0.0
                if not exact:  # zero inflation: clip negative curvatures for a descent step
                    h = 1.0 + g.sum(np.maximum(der.w, 0.0) * a2)
            step = (g.sum(a * der.d1) - u) / h
            big = float(np.abs(step).max())
            if not math.isfinite(big):
                raise NotPositiveDefinite("non-finite Newton step")
            dec = step * step * h
            top = dec.max()
            if big < 1e-11 or top < 1e-20 or (top < 1e-8 and _modes_found(dec, obj, top)):
                converged = True
                break
            # the trials need only the step: the current point's per-row arrays go first
            der = None
            # the penalised log-density may not decrease in any level (within rounding);
            # a level within a tiny Newton decrement of its mode takes the full step, as
            # its change is below the rounding of the log-density there
            floor = obj - 1e-12 * (1.0 + np.abs(obj))
            u_try = u + step
            t = None
            accepted = False
            for _half in range(40):
                der_try = None  # the last try's arrays go first
                eta_try = self._scalar_eta(eta_fix, a, u_try)
                der_try, ll, total = self._derivs_summed(eta_try, extra, g.sum)
                del eta_try
                obj_try = ll - 0.5 * u_try * u_try
                ok = obj_try >= floor
                if ok.all():
                    accepted = True
                    break
                ok |= dec < _NEAR_MODE
                if ok.all():
                    accepted = True
                    break
                t = np.ones(len(u)) if t is None else t
                t[~ok] *= 0.5
                u_try = u + t * step
            if not accepted:
                # no decrease within 40 halvings: those levels stay where they were (the
                # solve then fails unless they are already at their modes)
                u_try = np.where(ok, u_try, u)
                der_try = None
                eta_try = self._scalar_eta(eta_fix, a, u_try)
                der_try, ll, total = self._derivs_summed(eta_try, extra, g.sum)
                del eta_try
                obj_try = ll - 0.5 * u_try * u_try
            u, der, obj = u_try, der_try, obj_try
            der_try = None
        self.pirls_iterations += _it + 1
        if not converged:
            self.u = u  # the next start, though this solve failed
            raise InnerSolveFailure(
                f"conditional modes not found in {self.pirls_max_iter} Newton steps"
            )
        if exact:
            self.solver.set_diagonal(h)
        else:  # the mode's own Hessian, which must be positive definite
            self.solver.factorize(a_vals, der.w)
        self.u = u
        self.state = _State(
            self._state_entry,
            u=u,
            der=der,
            a_vals=a_vals,
            eta_fix=eta_fix,
            extra=extra,
            ll=total,
            ll_units=ll,
        )
        return u

    def _state_entry(self, s, key):
        """An entry of the state ``s`` not kept by the mode search (see ``_State``),
        made again by the same operations as there: the same values."""
        d = self.data
        if key == "a_vals":
            return s["rows"].array()
        eta_fix = s.get("eta_fix")
        if eta_fix is None:  # not kept for eta's sake either
            eta_fix = d.X @ s["beta"] + d.offset
        if key == "eta_fix":
            return eta_fix
        if self._scalar:
            a = s["a_vals"]
            return self._scalar_eta(eta_fix, a[0, 0] if a.strides[0] == 0 else a[:, 0], s["u"])
        eta = self._Au(s["rows"] if "rows" in s else s["a_vals"], s["u"])
        eta += eta_fix  # eta_fix + Z Lambda u, as the search makes it
        return eta

    def _settle_state(self) -> None:
        """After the mode search: ``w3`` made at the mode where the search left it out
        (from ``eta``, made from the search's ``eta_fix``), then ``eta_fix`` let go, and
        ``eta`` where neither the gradient nor the value reads it (see ``_State``)."""
        s = self.state
        if not self._lean:  # small data: the search's eta and eta_fix kept
            s["eta"], self._last_eta = self._last_eta, None
            return
        if s["der"].w3 is None:
            s["eta"]  # made while eta_fix is at hand
        s.pop("eta_fix")
        self._third()
        if not (self.data.n_extra or self.n_agq > 1):
            s.pop("eta", None)

    def _scalar_eta(self, eta_fix, a, u):
        """``eta_fix + a * u[codes]`` with one array of the rows' size."""
        eta = self.groups[0].expand(u)
        eta *= a
        eta += eta_fix
        return eta

    def _factorize(self, a_vals, w) -> bool:
        """Factorise H with the exact curvatures, or with negative ones clipped.

        A zero-inflated log-density is not concave everywhere, so H can be
        indefinite away from the mode; a clipped H still gives a descent step.
        Returns whether the exact curvatures were used.
        """
        try:
            self.solver.factorize(a_vals, w)
            return True
        except NotPositiveDefinite:
            self.solver.factorize(a_vals, np.maximum(w, 0.0))
            return False

    # -- objective and gradient ---------------------------------------------
    def laplace(self) -> float:
        """-2 log L by the Laplace approximation at the current mode."""
        s = self.state
        ll = s["der"].loglik.sum() if s["ll"] is None else s["ll"]
        return float(-2.0 * ll + s["u"] @ s["u"] + self.solver.logdet)

    def evaluate(self, params) -> float:
        """Objective value at ``params`` (Laplace, or AGQ when ``n_agq > 1``).

        The last evaluation is remembered: asking again for the same point (as
        the optimiser, the Hessian and the convergence checks do) costs nothing.
        """
        params = np.asarray(params, dtype=float)
        key = (params.tobytes(), self.n_agq)
        if key == self._last_key:
            return self._last_val
        self._last_key, self._last_grad = None, None
        beta, theta, extra = self._unpack(params)
        self.n_evals += 1
        # the last point's per-row arrays are not read by the search (only its modes,
        # ``self.u``): let them go before the new ones are made (a snapshot keeps its own)
        self.state = None
        if not self._solve_modes(beta, theta, extra):
            return np.inf
        val = agq_deviance(self, theta) if self.n_agq > 1 else self.laplace()
        val = val if np.isfinite(val) else np.inf
        self._last_key, self._last_val = key, val
        return val

    def _solve_modes(self, beta, theta, extra) -> bool:
        """Conditional modes at the parameters, or ``False`` when none can be found.

        The mode of a log-concave family is unique, so where the search starts
        changes the cost, never the value: first from the last modes (moved by
        their derivative), then from ``u = 0`` with a longer Newton budget. When
        both fail the evaluation has failed; the caller reports ``inf``.
        """
        u_keep = self.u
        try:
            self.pirls(beta, theta, extra)
            if self.global_modes:
                self._highest_modes(beta, theta, extra)
            return True
        except InnerSolveFailure:
            pass
        max_iter = self.pirls_max_iter
        self.pirls_max_iter = 4 * max_iter
        try:
            self.pirls(beta, theta, extra, u0=np.zeros(self.Q))
            return True
        except InnerSolveFailure:
            # the last good modes stay as the next evaluation's start
            self.u, self.state, self._predictor = u_keep, None, None
            self.pirls_failures += 1
            return False
        finally:
            self.pirls_max_iter = max_iter

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
        c = np.einsum("ni,ni->n", K, a_vals)
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
        R = np.empty((self.Q, d.n_beta + d.n_theta))
        # a structured factor's time-indicator sums take all the columns at once
        # (and one factor's small data, where one pass costs fewer calls than a pass per
        # column; with several factors, whose sums are not over runs of rows, it does not)
        small = len(d.factors) == 1 and a_vals.size * (d.n_beta + d.n_theta) <= _AT_ONCE_CELLS
        kept = None
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
                self._put_rhs(R, d.n_beta + len(g_theta), a_vals, der.w, mv, kept)
                g_theta.append(g)
        if kept is not None:
            kept *= der.w[:, None]
            R[:] = -self._Atv(a_vals, kept)
            del kept
        R[:, d.n_beta :] += direct
        self._predictor = (u, s["bt"], self.solver.solve(R))
        return np.concatenate([g_beta, np.array(g_theta), g_extra])

    def _third(self) -> None:
        """The state's ``w3`` (the derivative of the curvatures), made at the mode when
        the mode search left it out."""
        s = self.state
        der = s["der"]
        if der.w3 is None:
            d = self.data
            w3 = d.family.third_derivative(
                d.y, s["eta"], self._trials, self._w, s["extra"], self._const, der
            )
            s["der"] = der._replace(w3=w3)

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
        R = np.empty((self.Q, d.n_beta + d.n_theta))
        for j in range(d.n_beta):
            R[:, j] = -rows.sums(der.w * d.X[:, j])
        M = self.solver.gram
        g_theta = np.empty(d.n_theta)
        for k, (r, col) in enumerate(zip(f.theta_rows, f.theta_cols)):
            S = M[:, :, r] @ L
            HS = np.einsum("gij,gj->gi", hinv, S)
            g_theta[k] = P[:, r] @ Uf[:, col] + mf[:, col] @ D[:, r] + 2.0 * HS[:, col].sum()
            rhs = -(Uf[:, col, None] * S)
            rhs[:, col] += D[:, r]
            R[:, d.n_beta + k] = rhs.ravel()
        for j in range(R.shape[1]):  # solved column by column, in place
            R[:, j] = self.solver.solve(R[:, j])
        self._predictor = (u, s["bt"], R)
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
        if a_vals.size * q <= _AT_ONCE_CELLS:
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
        # the implicit derivatives du/d(beta, theta) = H^{-1} dG/d(beta, theta) of the
        # mode equation G = Lambda'Z'd1 - u = 0 give the next evaluation's start
        wa = der.w * a
        J = np.empty((len(u), d.n_beta + 1))
        if unit:
            u_rows *= wa
        else:
            u_rows *= wa * zr
        J[:, -1] = hinv * (dz - g.sum(u_rows))
        del u_rows
        for j in range(d.n_beta):  # column by column: no (n, p) temporary
            J[:, j] = g.sum(wa * d.X[:, j]) * -hinv
        self._predictor = (u, s["bt"], J)
        return np.concatenate([d.X.T @ psi, [g_theta], g_extra])

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
            col += self._Au(s["rows"] if "rows" in s else s["a_vals"], J[:, k])
            col *= col
            out[k] = 2.0 * (w @ col) + 2.0 * (J[:, k] @ J[:, k])
        return out

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

    # the state at the last point evaluated; after :meth:`restore`, made again when read
    _state = None
    _pending = None  # (u, params) of a restored state not made yet

    @property
    def state(self):
        """The last evaluation's mode and per-row arrays (None after a failed one)."""
        if self._pending is not None:
            self._make_restored_state()
        return self._state

    @state.setter
    def state(self, value):
        self._pending = None
        self._state = value

    def _make_restored_state(self) -> None:
        """The state at a restored point, from its mode: the search from there takes no
        step, so the arrays are those of the evaluation that found the mode."""
        u, at = self._pending
        self._pending = None
        memo = (self._last_key, self._last_val, self._last_grad, self._predictor)
        solver, iterations = self.solver.snapshot(), self.pirls_iterations
        self.pirls(*self._unpack(at), u0=u)
        self._state["u"] = u  # the same values; the object the predictor refers to
        self.u, self.pirls_iterations = u, iterations
        self._last_key, self._last_val, self._last_grad, self._predictor = memo
        self.solver.restore(solver)

    # rows above which a snapshot leaves out the per-row arrays (below, keeping them
    # costs little memory, and making them again a mode search per restore)
    lazy_state_rows = 50_000

    def snapshot(self):
        """Everything an evaluation changes: the mode, its factorisation, the memo.

        On large data (over ``lazy_state_rows`` rows) not the per-row arrays of the
        state: after :meth:`restore` they are made again from the mode when first read.
        """
        memo = (self._last_key, self._last_val, self._last_grad, self._predictor)
        state, at = self._state, None
        lazy = len(self.data.y) > self.lazy_state_rows
        if self._pending is not None:
            at = self._pending[1]
        elif lazy and state is not None and self._last_key is not None:  # else kept
            state, at = None, np.frombuffer(self._last_key[0]).copy()
        return self.u, (state, at), memo, self.solver.snapshot()

    def restore(self, snap) -> None:
        """Return to the point of :meth:`snapshot` without evaluating it again."""
        u, (state, at), memo, solver = snap
        self.state = state
        self.u = u
        self._last_key, self._last_val, self._last_grad, self._predictor = memo
        self.solver.restore(solver)
        if at is not None:
            self._pending = (u, at)

    def release_state(self) -> None:
        """Let the last evaluation's per-row arrays go (a fitted model keeps its
        objective): the next call evaluates again, from the modes kept in ``u``."""
        self.state = None
        self._last_key, self._last_grad = None, None

    def value_and_grad(self, params):
        val = self.evaluate(params)
        if not np.isfinite(val):
            return np.inf, np.zeros(len(params))
        if self._last_grad is None:
            self._last_grad = self.gradient(params)
        return val, self._last_grad.copy()

    # -- conditional distribution of u --------------------------------------
    def conditional_variances(self, f: int) -> np.ndarray:
        """Blocks of H^{-1} for factor ``f`` at the current mode, (n_levels, q, q)."""
        return self.solver.level_inverse(f)


class GLMObjective:
    """The objective without random effects (``groups=None``): -2 log L of a GLM."""

    def __init__(self, data: ModelData):
        self.data = data
        self.n_agq = 1
        self.u = np.zeros(0)
        self.n_evals = 0
        self.pirls_failures = 0
        self._w, self._trials, self._const = data.fixed_terms

    def _derivs(self, eta, extra, third=True):
        d = self.data
        if third or not getattr(d.family, "lazy_third", False):
            return d.family.derivs(d.y, eta, self._trials, self._w, extra, self._const)
        return d.family.derivs(d.y, eta, self._trials, self._w, extra, self._const, third=False)

    def snapshot(self):
        return getattr(self, "state", None)

    def restore(self, snap) -> None:
        self.state = snap

    def _split(self, params):
        p = self.data.n_beta
        return params[:p], self.data.extra_values(params[p:])

    def evaluate(self, params) -> float:
        d = self.data
        beta, extra = self._split(np.asarray(params, dtype=float))
        self.n_evals += 1
        self.state = None  # the last point's per-row arrays go first
        eta = d.X @ beta + d.offset
        der = self._derivs(eta, extra, third=False)
        val = float(-2.0 * der.loglik.sum())
        # what the gradient reads: the first derivatives (and eta, for the extra blocks)
        self.state = dict(eta=eta, extra=extra, der=der._replace(loglik=None, w=None, w3=None))
        del der
        return val if np.isfinite(val) else np.inf

    def value_and_grad(self, params):
        val = self.evaluate(params)
        if not np.isfinite(val):
            return np.inf, np.zeros(len(params))
        d, s = self.data, self.state
        g_beta = -2.0 * d.X.T @ s["der"].d1
        extra = s["extra"]
        if not len(extra):
            return val, g_beta
        exact = getattr(d.family, "extra_derivs", None)
        if exact is not None:
            dl = exact(d.y, s["eta"], self._trials, self._w, extra, self._const)[0]
            return val, np.concatenate([g_beta, d.extra_gradient(-2.0 * dl)])
        rows = np.zeros((len(extra), len(s["eta"])))
        for k in range(len(extra)):
            lp = self._derivs(s["eta"], _blocks.shift_block(extra, k, 1e-5)).loglik
            lm = self._derivs(s["eta"], _blocks.shift_block(extra, k, -1e-5)).loglik
            rows[k] = -2.0 * (lp - lm) / 2e-5
        return val, np.concatenate([g_beta, d.extra_gradient(rows)])
