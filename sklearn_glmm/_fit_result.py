"""The outcome of a fit, one frozen object (lme4's ``merMod`` from ``mkMerMod``).

``fit`` ends by building a :class:`FitResult`: the optimum on the optimiser's scale
and the map back to the user's units, the family, the fit record (MixedModels.jl's
``OptSummary``), the covariance of the estimates and the layout of the random
effects. The estimator keeps it as ``fit_result_`` and reads its public fitted
attributes from it; inference, summaries, plots and model selection take it instead
of the estimator's internals.

It lives beside the estimators rather than in ``_engine``: it holds the scikit-learn
layer's grouping factors (their labels and terms) and the designs of the family's
blocks (named by feature), and it raises the library's ``TrainingDataError``. The
maths it calls (``lambda_matrices``) is the engine's.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ._engine.blocks import rows_of
from ._engine.objective import lambda_matrices
from .exceptions import TrainingDataError


@dataclass(frozen=True)
class FactorLayout:
    """Where one factor's covariance parameters sit (what ``lambda_matrices`` reads)."""

    q: int
    n_levels: int
    theta_rows: np.ndarray
    theta_cols: np.ndarray
    structure: object = None


@dataclass(frozen=True)
class ParameterLayout:
    """The parameter vector's blocks, without the data: Wald intervals, ``summary`` and
    population-level predictions at other parameter values need only this."""

    n_beta: int
    n_theta: int
    n_extra: int
    factors: tuple


def parameter_layout(data) -> ParameterLayout:
    factors = tuple(
        FactorLayout(f.q, f.n_levels, f.theta_rows, f.theta_cols, f.structure) for f in data.factors
    )
    return ParameterLayout(data.n_beta, data.n_theta, data.n_extra, factors)


def beta_jacobian(scaling) -> np.ndarray:
    """J with beta_original = J beta_internal (intercept first when fitted)."""
    kept, means, scales = scaling["kept"], scaling["means"], scaling["scales"]
    k0 = int(scaling["intercept"])
    J = np.zeros((k0 + len(kept), k0 + len(kept)))
    if k0:
        J[0, 0] = 1.0 / scaling.get("intercept_scale", 1.0)
    for j, k in enumerate(kept):
        J[k0 + j, k0 + j] = 1.0 / scales[k]
        if k0:
            J[0, k0 + j] = -means[k] / scales[k]
    if "rotation" in scaling:  # decorrelated columns (_scaling._decorrelate)
        J[:, k0:] = J[:, k0:] @ scaling["rotation"]
    return J


def sandwich(A, V, B=None) -> np.ndarray:
    """``A V B'`` (``B`` defaults to ``A``) for a covariance ``V`` that is NaN on the
    rows and columns of some coordinates (parameters without a variance): the entries
    that weigh such a coordinate are NaN, the others the finite product (a plain
    product would spread NaN through zero weights, ``0 * NaN``)."""
    B = A if B is None else B
    bad = ~np.isfinite(np.diag(V))
    if not bad.any():
        return A @ V @ B.T
    out = A @ np.where(np.isfinite(V), V, 0.0) @ B.T
    out[np.any(A[:, bad] != 0, axis=1), :] = np.nan
    out[:, np.any(B[:, bad] != 0, axis=1)] = np.nan
    return out


def unrotated(scaling, X=None, beta=None):
    """The internal design's columns and coefficients before :func:`_decorrelate`
    (each column one of the user's, centred and scaled): ``(X, beta)``, either None
    when not given; the same arrays when the design was not decorrelated."""
    R = scaling.get("rotation_inverse")
    if R is None:
        return X, beta
    k0 = int(scaling["intercept"])
    if X is not None:
        X = np.array(X, dtype=float)
        X[:, k0:] = X[:, k0:] @ R
    if beta is not None:
        beta = np.array(beta, dtype=float)
        beta[k0:] = scaling["rotation"] @ beta[k0:]
    return X, beta


def extra_shift_matrix(scaling, n_beta: int, n_extra: int) -> np.ndarray:
    """``C`` (n_extra, n_beta): the family's coefficients in the user's units are
    ``extra + C beta_internal``.

    A design centred without an intercept (``scaling["centred"]``, an ordinal model)
    has the internal linear predictor ``eta - m'beta`` (``m`` the columns' means); the
    blocks that absorb a shift of ``eta`` (``extra_shift``, the thresholds) are
    reported moved by ``m'beta`` along it, which gives the same likelihood at the
    user's ``eta``. Zero otherwise.
    """
    C = np.zeros((n_extra, n_beta))
    if scaling.get("centred"):
        kept = scaling["kept"]
        ratio = scaling["means"][kept] / scaling["scales"][kept]
        if "rotation" in scaling:  # decorrelated columns (no intercept: all of them)
            ratio = ratio @ scaling["rotation"]
        C += np.outer(scaling["extra_shift"], ratio)
    return C


def shifted(x, V, C, p: int, start: int):
    """Parameters ``x`` and their covariance ``V`` with the family's coefficients (from
    ``start``) moved to the user's units, ``extra + C beta`` (:func:`extra_shift_matrix`;
    ``beta`` the first ``p``). Entry by entry, so that a NaN in ``V`` reaches only the
    entries it enters."""
    pairs = list(zip(*np.nonzero(C)))
    if not pairs:
        return x, V
    x, V = np.array(x, dtype=float), np.array(V, dtype=float)
    for e, j in pairs:
        x[start + e] += C[e, j] * x[j]
        V[start + e] += C[e, j] * V[j]
    for e, j in pairs:
        V[:, start + e] += C[e, j] * V[:, j]
    return x, V


def centring_offset(scaling, coef) -> float:
    """What the internal centring adds to ``X coef``: ``-m'coef`` for a design centred
    without an intercept (an ordinal model), 0 otherwise."""
    if not scaling.get("centred"):
        return 0.0
    kept = scaling["kept"]
    return -float(scaling["means"][kept] @ np.asarray(coef)[kept])


def original_lambda(T: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Covariance factor in the user's units, ``T Lambda`` (``Sigma = Lo Lo'``)."""
    return T @ L


_NEEDS = (
    "(profile and bootstrap intervals, simulate, residuals, fitted, scaled_residuals, "
    "overdispersion, anova, compare_models, the performance checks and the diagnostic plots)"
)
_NO_DATA = (
    "this {owner} was unpickled without its training data, which this method needs "
    + _NEEDS
    + "; refit it, or fit it with keep_data=True so that its pickles keep the data."
)
_PARTITIONED = (
    "this {owner} was fitted by partitions (sklearn_glmm.dask): its training rows stay on "
    "the cluster's workers, and this method needs them "
    + _NEEDS
    + ". Fit the model in memory for it (est.fit(X.compute(), y.compute(), groups=...))."
)


@dataclass(frozen=True, eq=False)
class FitResult:
    """The outcome of one fit.

    Parameters are on the optimiser's scale: ``params = (beta, theta, extra)``
    with ``beta`` the coefficients of the centred and scaled fixed-effect design
    (``scaling``; ``beta_jacobian`` maps them to the user's units), ``theta`` the
    covariance parameters of the random effects of the scaled Z columns
    (``z_maps``: ``b = T b_internal``) and ``extra`` the coefficients of the
    family's parameter blocks. ``vcov`` is their covariance (the inverse
    Hessian of ``-log L``; NaN along flat or negative directions).

    The training data (``objective``, the optimiser's objective with its data,
    and ``train``, the conditional fit on the training rows) are kept in memory;
    a pickle carries them only with ``keep_data=True`` (``without_data``).
    """

    params: np.ndarray  # (n_beta + n_theta + n_extra,), the optimiser's scale
    layout: ParameterLayout
    family: object
    record: object  # the fit record, FitRecord (MixedModels.jl's OptSummary)
    scaling: dict  # the fixed-effect design's centring and scaling (scale_design)
    z_maps: tuple  # per factor, T with b = T b_internal (z_transform)
    vcov: np.ndarray  # covariance of params
    hessian: np.ndarray
    bounds: list  # the optimiser's bounds on params
    fixed_names: list  # the fixed-effect features
    factors: list  # the grouping factors (``_design.Factor``): names, levels, terms
    factor_order: list  # the grouping factors' names as passed to fit
    block_designs: tuple | None  # per family block, its design (or None); None: all scalar
    zi_design: object  # the zero-inflation design (``zero_inflation=``), or None
    disp_design: object  # the dispersion design (``dispersion=``), or None
    arrays: object  # the result tables' arrays in the user's units (``_tables.FitArrays``)
    ranef_condvar: dict  # per factor, (n_levels, q, q) conditional covariances of b
    lambdas: dict  # per factor, Lambda in the user's units (Sigma = Lo Lo')
    block_se: dict  # per scalar family block, its standard error on the optimiser's scale
    owner: str = "model"  # the estimator's class name, for messages
    training: dict | None = field(default=None, repr=False)  # objective, train
    data_summaries: dict | None = field(default=None, repr=False)  # when unpickled without data
    partitioned: bool = False  # fitted by partitions: the rows were never here
    # the quadrature nodes of the fit's likelihood (1: the Laplace approximation); None:
    # no random effects (an exact likelihood)
    n_agq: int | None = None

    def __repr__(self):
        return (
            f"FitResult(family={self.family.r_name!r}, n_params={len(self.params)}, "
            f"factors={[f.name for f in self.factors]}, objective={self.record.objective:.6f}, "
            f"converged={self.record.converged}, has_data={self.has_data})"
        )

    # -- the parameter vector's parts ----------------------------------------------
    @property
    def beta(self) -> np.ndarray:
        """Fixed effects on the optimiser's (scaled) design."""
        return self.params[: self.layout.n_beta]

    @property
    def theta(self) -> np.ndarray:
        """Covariance parameters of the random effects."""
        p = self.layout.n_beta
        return self.params[p : p + self.layout.n_theta]

    @property
    def extra(self) -> np.ndarray:
        """Coefficients of the family's parameter blocks (NB theta, zero inflation, ...)."""
        return self.params[self.layout.n_beta + self.layout.n_theta :]

    # -- the training data -----------------------------------------------------------
    @property
    def has_data(self) -> bool:
        return self.training is not None

    def _training(self, name):
        if self.training is None:
            message = _PARTITIONED if self.partitioned else _NO_DATA
            raise TrainingDataError(message.format(owner=self.owner))
        return self.training[name]

    @property
    def objective(self):
        """The objective of the fit with its data (``TrainingDataError`` without them)."""
        return self._training("objective")

    @property
    def train(self) -> dict:
        """The training rows' ``eta`` at the modes, ``y``, ``trials`` and weights ``w``."""
        return self._training("train")

    def without_data(self, summaries: dict) -> FitResult:
        """This result without its training data, with ``summaries`` of them instead
        (what a pickle carries without ``keep_data``)."""
        factors = [dataclasses.replace(f, codes=None) for f in self.factors]
        return dataclasses.replace(self, training=None, data_summaries=summaries, factors=factors)

    # -- from the optimiser's scale to the user's -------------------------------------
    def beta_jacobian(self) -> np.ndarray:
        """J with beta (user's units, estimated columns) = J beta (optimiser's scale)."""
        return beta_jacobian(self.scaling)

    def extra_shift_matrix(self) -> np.ndarray:
        """``C`` with the family's coefficients in the user's units ``extra + C beta``
        (``beta`` on the optimiser's scale): zero but for an ordinal model, whose
        thresholds absorb its internal centring of the design."""
        return extra_shift_matrix(self.scaling, self.layout.n_beta, self.layout.n_extra)

    def reported(self) -> tuple[np.ndarray, np.ndarray]:
        """``(params, vcov)`` with the family's coefficients in the user's units (an
        ordinal model's thresholds at ``X = 0``; :meth:`extra_shift_matrix`)."""
        p, T = self.layout.n_beta, self.layout.n_theta
        return shifted(self.params, self.vcov, self.extra_shift_matrix(), p, p + T)

    def fixed_design(self, Xa: np.ndarray) -> np.ndarray:
        """The estimated columns of validated rows ``Xa``, an intercept first when fitted
        (centred as in the fit when it centred them without one)."""
        sc = self.scaling
        if sc.get("centred"):
            cols = [Xa[:, k] - sc["means"][k] for k in sc["kept"]]
        else:
            cols = [Xa[:, k] for k in sc["kept"]]
        if sc["intercept"]:
            cols.insert(0, np.ones(Xa.shape[0]))
        return np.column_stack(cols) if cols else np.zeros((Xa.shape[0], 0))

    def internal_lambdas(self, params=None) -> list:
        """Each factor's ``Lambda`` of its internal (centred and scaled) Z columns at
        ``params`` (default: the fit): ``b = T Lambda u`` with ``T`` its ``z_maps``."""
        x = self.params if params is None else params
        p, T = self.layout.n_beta, self.layout.n_theta
        return lambda_matrices(self.layout, x[p : p + T])

    def random_lambdas(self, params=None) -> list:
        """Each factor's ``Lambda`` in the user's units at ``params`` (default: the fit)."""
        if not self.factors:
            return []
        return [original_lambda(Tf, L) for Tf, L in zip(self.z_maps, self.internal_lambdas(params))]

    def z_variance(self, k: int, Z: np.ndarray, L: np.ndarray) -> np.ndarray:
        """``z'Sz`` of factor ``k`` for rows ``Z`` (its columns in the user's units), as
        ``|z'T L|^2`` with its internal factor ``L`` (``S = T L L'T'``): ``z'T`` are the
        internal, centred columns, so a slope variable far from zero does not make it the
        difference of huge terms (a probability moved by 1e-4 at a shift of 1e7)."""
        return np.sum((Z @ self.z_maps[k] @ L) ** 2, axis=1)

    def block_values(self, Xa: np.ndarray, coefs=None):
        """The family's values of its blocks for rows ``Xa`` at internal coefficients
        ``coefs`` (default: the fit's): ``coefs`` itself when no block has a design,
        else a float per scalar block and each row's value per block with a design
        (``logit pi``, a dispersion's log scale)."""
        coefs = self.extra if coefs is None else coefs
        if self.block_designs is None:
            return coefs
        out, k = [], 0
        for design in self.block_designs:
            if design is None:
                out.append(float(coefs[k]))
                k += 1
            else:
                w = len(design.names)
                out.append(design.internal(Xa) @ coefs[k : k + w])
                k += w
        return tuple(out)

    def family_values(self, Xa: np.ndarray | None = None, column: bool = False, coefs=None):
        """The family's values of its blocks at the fit (or at internal coefficients
        ``coefs``) for rows ``Xa`` (the training rows when None): the coefficients when
        every block is a scalar, else each row's value of a block with a design;
        ``column`` shapes those (n, 1), to broadcast against (n, K) tables."""
        coefs = self.extra if coefs is None else coefs
        if self.block_designs is None:
            return coefs
        if Xa is None:  # the training rows (which pickles carry only with keep_data)
            values = self.objective.data.extra_values(coefs)
        else:
            values = self.block_values(Xa, coefs)
        return rows_of(values, column=column)

    def linear_predictor(self, Xa: np.ndarray, params=None, offset=0.0, population="zero"):
        """Mean and variance of the population-level linear predictor of rows ``Xa``
        at ``params``: the variance of the random effects with ``"marginal"``, none
        with ``"zero"``."""
        x = self.params if params is None else params
        eta = self.fixed_design(Xa) @ (self.beta_jacobian() @ x[: self.layout.n_beta]) + offset
        var = np.zeros(len(eta))
        if population == "marginal":
            for k, (f, L) in enumerate(zip(self.factors, self.internal_lambdas(x))):
                var += self.z_variance(k, f.z_matrix(Xa), L)
        return eta, var

    def population_means(self, Xa: np.ndarray, params=None, offset=0.0, population="marginal"):
        """Population-level means of rows ``Xa`` at ``params`` (default: the fit's):
        averaged over the random effects (``"marginal"``) or at zero (``"zero"``)."""
        x = self.params if params is None else params
        eta, var = self.linear_predictor(Xa, x, offset, population)
        extra = self.block_values(Xa, x[self.layout.n_beta + self.layout.n_theta :])
        return self.family.mean_over_normal(eta, var, extra)

    def undetermined(self) -> np.ndarray:
        """Mask of the parameters without a variance although off their bounds (they
        move along a flat direction of the likelihood: separation, parameters the data
        do not identify). A function of them has no standard error either; parameters on
        a bound (a zero variance) are held there, as the fit reports them."""
        from ._engine.curvature import at_bound

        missing = ~np.isfinite(np.diag(self.vcov))
        if not missing.any():
            return missing
        return missing & ~at_bound(self.params, self.bounds)

    def moves_on_set(self, fun) -> np.ndarray | None:
        """Mask of the elements of ``fun(params)`` (a vector function of the internal
        parameters) that change along the fit's set of equal likelihood (a covariance
        the levels do not identify: ``FitRecord.set_points``), or None without one. Read
        at points of the set, not from a gradient: a function can be stationary at the
        fit's point and still move along the set."""
        pts = getattr(self.record, "set_points", None)
        if pts is None or not len(pts):
            return None
        f0 = np.asarray(fun(self.params), dtype=float)
        moved = np.zeros(f0.shape, dtype=bool)
        for x in pts:
            f = np.asarray(fun(x), dtype=float)
            moved |= ~(np.abs(f - f0) <= 1e-6 * (1.0 + np.abs(f0)))
        return moved

    def delta_covariance(self, G: np.ndarray, diagonal: bool = False) -> np.ndarray:
        """Covariance ``G V G'`` of functions of the parameters whose gradients (internal
        scale) are the rows of ``G`` (``diagonal``: only its diagonal, the variances).

        Parameters on a bound (a zero variance) are held there. A function that moves
        with a parameter without a variance off its bounds (:meth:`undetermined`) has NaN
        rows and columns, except, for a fit with separated fixed effects, a function
        whose gradient is orthogonal to the separating directions (a linear predictor of
        rows that are not separated, a mean over them): it is determined by the limit
        model, and its variance is that model's (``FitRecord.limit_covariance``); for a
        covariance the levels do not identify, a function whose gradient is orthogonal to
        the directions of equal likelihood (``FitRecord.unidentified``) has the variance
        over the identified directions (``FitRecord.identified_covariance``).
        """
        limit = getattr(self.record, "limit_covariance", None)
        if limit is None:
            # a covariance the levels do not identify: a function orthogonal to its
            # directions of equal likelihood has the identified directions' variance
            Vi = getattr(self.record, "identified_covariance", None)
            N = getattr(self.record, "unidentified", None)
            if Vi is not None and N is not None:
                limit = (Vi, N)
        return limit_delta(G, self.vcov, limit, diagonal)

    @cached_property
    def vcov_fixed(self):
        """Covariance of the estimated fixed effects in the user's units (a DataFrame)."""
        from ._tables import vcov_fixed

        return vcov_fixed(self.arrays)


def limit_delta(G, V, limit, diagonal: bool = False) -> np.ndarray:
    """``G V G'`` (its diagonal when ``diagonal``) for the gradients ``G`` (rows, in the
    parameter vector) of functions of the parameters: NaN for a function that moves with
    a parameter without a variance in ``V``, except, when ``limit`` (a separated fit's
    ``FitRecord.limit_covariance``: the limit model's covariance and the separating
    directions ``F``) is given, a function whose gradient is orthogonal to ``F``, which
    gets the limit model's variance (see :meth:`FitResult.delta_covariance`)."""
    bad = np.any(G[:, ~np.isfinite(np.diag(V))] != 0, axis=1)
    fine = np.zeros(len(G), dtype=bool)
    if bad.any() and limit is not None:
        Vl, F = limit
        held = ~np.isfinite(np.diag(Vl))  # on a bound: held as in V
        along = np.max(np.abs(G @ (F / np.linalg.norm(F, axis=0))), axis=1, initial=0.0)
        fine = bad & (along <= _ORTHOGONAL * np.linalg.norm(G, axis=1))
        fine &= ~np.any(G[:, held] != 0, axis=1)
        bad &= ~fine
    out = _quadratic(G, V, diagonal)
    if fine.any():
        lim = _quadratic(G, Vl, diagonal)
        out = np.where(fine if diagonal else np.outer(fine, fine), lim, out)
    if diagonal:
        return np.where(bad, np.nan, out)
    out[bad, :] = np.nan
    out[:, bad] = np.nan
    return out


def _quadratic(G, V, diagonal):
    """``G V G'`` (or its diagonal) over the parameters with a variance in ``V``."""
    act = np.isfinite(np.diag(V))
    Ga, Va = G[:, act], V[np.ix_(act, act)]
    return np.einsum("ni,ij,nj->n", Ga, Va, Ga) if diagonal else Ga @ Va @ Ga.T


# a gradient whose component along each separating direction is at most this fraction
# of its length is orthogonal to them (finite differences of the delta method: ~1e-10)
_ORTHOGONAL = 1e-6

_OBJECTIVE_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def fitted_n_agq(est) -> int | None:
    """The quadrature nodes ``est`` was fitted with (1: the Laplace approximation), not
    its ``n_agq`` parameter (``set_params`` changes that before the next fit); None for a
    model without random effects, whose likelihood is exact."""
    res = est.fit_result_
    if not res.factors:
        return None
    return est.n_agq if res.n_agq is None else res.n_agq


def objective_lock(obj) -> threading.RLock:
    """The lock of a fitted model's objective.

    Profiles and ``predict_interval``'s modes' derivatives move the fit's objective
    off the optimum and put it back; each holds this lock meanwhile, so that two of
    them in threads of one process do not read each other's state (an evaluation's
    modes, a gradient). Kept beside the objective, not on it: a pickle carries no lock.
    """
    with _LOCKS_GUARD:
        lock = _OBJECTIVE_LOCKS.get(obj)
        if lock is None:
            lock = _OBJECTIVE_LOCKS[obj] = threading.RLock()
        return lock
