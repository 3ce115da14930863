"""The objective of one grouping factor whose levels are split over partitions.

With a single grouping factor every level is its own problem: the conditional modes,
the Laplace (or AGQ) value of ``-2 log L`` and its gradient in ``(beta, theta, phi)``
are sums over levels. When each level's rows sit in one partition, each partition
holds the library's own :class:`~sklearn_glmm._engine.objective.Objective` on its
rows (:class:`PartitionModel`, built once where the rows are), and one evaluation is
one map-reduce: the outer parameters travel to every partition, a value and a
gradient come back and are summed.

:class:`PartitionedObjective` presents that sum with the interface the optimiser and
the checks at the optimum use (``evaluate``, ``value_and_grad``, ``snapshot`` /
``restore``, ``gauss_newton_diagonal``, the nested GLM), so that
:func:`~sklearn_glmm._engine.optimize.fit_objective` and
:func:`~sklearn_glmm._engine.converge.check_optimum` run unchanged on it. How the
partitions are reached is the caller's: ``call(method, *args)`` runs a method of
every partition's :class:`PartitionModel` and returns the results in partition
order (``sklearn_glmm.dask`` does it with Dask actors).

Order of calls of one evaluation: ``PartitionedObjective.value_and_grad(params)`` →
every ``PartitionModel.value_and_grad(params)`` (its own conditional modes, warm
started from its last ones) → values and gradients summed. A partition whose modes
cannot be found makes the evaluation fail (``inf``), as a level does in memory.
"""

from __future__ import annotations

import time
import weakref

import numpy as np

from .blas import single_threaded_blas
from .lbfgsb import _run_lbfgsb
from .objective import GLMObjective, ModelData, Objective

# snapshots a partition keeps at most. It keeps those the driver still holds (each
# :class:`_Snapshot` the optimiser and its checks keep in a local variable while they
# try other points; released when it is freed); each holds the mode and, on up to
# ``Objective.lazy_state_rows`` rows, the state of the rows' size. A bound on memory:
# the fits hold three or four at a time
_MAX_SNAPSHOTS = 16


class _Snapshot:
    """A partitioned objective's snapshot: its key in the partitions and the driver's
    own state (while one is alive, the partitions keep theirs)."""

    __slots__ = ("key", "memo", "params", "state", "__weakref__")

    def __init__(self, key, memo, params, state):
        self.key, self.memo, self.params, self.state = key, memo, params, state


class PartitionModel:
    """One partition's rows and their objective, built once and kept where the rows are.

    Parameters
    ----------
    data : ModelData
        The partition's rows on the internal (scaled) scale; its factor's codes are
        the partition's own levels, ``0 .. G_p - 1``.
    n_agq : int
        Quadrature nodes (1: Laplace).
    level_map : ndarray, optional
        The partition's levels as indices into the model's levels (default: the same).
    """

    def __init__(self, data: ModelData, n_agq: int = 1, level_map=None):
        self.data = data
        # this partition's levels as indices into the model's levels
        n_levels = data.factors[0].n_levels if data.factors else 0
        self.level_map = np.arange(n_levels) if level_map is None else np.asarray(level_map)
        self.objective = Objective(data, n_agq)
        self._glm = None
        self._snapshots: dict = {}

    def set_n_agq(self, n_agq: int) -> None:
        self.objective.n_agq = n_agq

    def evaluate(self, params) -> float:
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return float(self.objective.evaluate(params))

    def value_and_grad(self, params):
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            val, g = self.objective.value_and_grad(params)
        return float(val), g

    def glm_value_and_grad(self, params):
        """``-2 log L`` of the model without random effects and its gradient."""
        if self._glm is None:
            self._glm = GLMObjective(self.data)
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            val, g = self._glm.value_and_grad(params)
        return float(val), g

    def gauss_newton_diagonal(self) -> np.ndarray:
        return self.objective.gauss_newton_diagonal()

    def exact_hessian_block(self, params):
        """This partition's closed-form Hessian block at ``params`` (its levels' sums),
        or None where it does not apply."""
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            val, _ = self.objective.value_and_grad(params)
            return self.objective.exact_hessian_block() if np.isfinite(val) else None

    def max_curvature(self, params):
        """This partition's largest curvature at the modes at ``params``, or None."""
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            val, _ = self.objective.value_and_grad(params)
            return self.objective.max_curvature() if np.isfinite(val) else None

    def exact_extra_column(self, params):
        """This partition's closed-form row and column of the family's own parameter at
        ``params`` (its levels' sums), or None where it does not apply."""
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            val, _ = self.objective.value_and_grad(params)
            return self.objective.exact_extra_column() if np.isfinite(val) else None

    def level_information(self, k: int):
        return self.objective.level_information(k)

    def rows_reading_effects(self) -> int:
        return self.objective.rows_reading_effects()

    def level_gram_products(self, k: int):
        """As in memory, over this partition's levels."""
        return self.objective.level_gram_products(k)

    def level_effects(self, k: int, params, shifts):
        """As in memory, for this partition's levels (``shifts`` of every level of the
        model, read at :attr:`level_map`)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self.objective.level_effects(k, params, np.asarray(shifts)[self.level_map])

    def snapshot(self, key: int, released=()) -> None:
        """Keep the objective's state as ``key``; forget the snapshots ``released`` (the
        driver holds them no more)."""
        for old in released:
            self._snapshots.pop(old, None)
        self._snapshots[key] = self.objective.snapshot()
        for old in sorted(self._snapshots)[:-_MAX_SNAPSHOTS]:
            del self._snapshots[old]

    def restore(self, key: int) -> None:
        if key not in self._snapshots:
            raise KeyError(
                f"snapshot {key} is no longer kept (at most {_MAX_SNAPSHOTS} are held at "
                "once): a partitioned objective restores only snapshots its driver holds"
            )
        self.objective.restore(self._snapshots[key])

    def counters(self) -> tuple[int, int]:
        """PIRLS failures and Newton iterations so far."""
        return self.objective.pirls_failures, self.objective.pirls_iterations

    def modes(self):
        """The conditional modes ``u`` (G_p, q) and the blocks of ``H^{-1}`` (G_p, q, q)
        at the last evaluation."""
        f = self.data.factors[0]
        u = self.objective.u.reshape(f.n_levels, f.q)
        return u, self.objective.conditional_variances(0)


class PartitionedObjective(Objective):
    """The sum over partitions of their objectives, as one :class:`Objective`.

    A subclass so that the optimiser treats it as the mixed model's objective (its
    Gauss-Newton scaling included); it holds no rows. ``data`` is the model's layout
    with zero rows (the parameter blocks, the factor's levels and its covariance
    layout), which is all the optimiser and the checks read from it.

    Parameters
    ----------
    data : ModelData
        The layout (zero rows; ``factors[0].n_levels`` the total number of levels).
    n_agq : int
    call : callable
        ``call(method, *args) -> list``: runs ``PartitionModel.method(*args)`` on every
        partition, results in partition order.
    level_maps : list of ndarray
        Each partition's levels as indices into the model's levels.
    """

    holds_rows = False

    def __init__(self, data: ModelData, n_agq: int, call, level_maps):
        self.data = data
        self._call = call
        self._n_agq = n_agq
        self.level_maps = level_maps
        self.n_evals = 0
        self.pirls_failures = 0
        self.global_modes = False
        self._structured = False
        self._single = True
        self._last_key, self._last_val, self._last_grad = None, np.inf, None
        self._predictor = None
        self._snap_no = 0
        self._rows_reading = None  # (rows_reading_effects, counted once)
        self._released: list = []  # keys of snapshots freed here, to tell the partitions
        self._glm_optimum = None
        self.glm_max_iter = 200
        self._last_params = None
        self._modes = None
        self.state = None
        # wall time of the evaluations sent to the partitions, and their number
        self.map_reduce_seconds = 0.0
        self.map_reduce_calls = 0

    # n_agq is changed by the optimiser between its stages: every partition follows
    @property
    def n_agq(self) -> int:
        return self._n_agq

    @n_agq.setter
    def n_agq(self, value: int) -> None:
        if value != self._n_agq:
            self._call("set_n_agq", value)
            self._n_agq = value
            self._last_key, self._last_grad, self._predictor = None, None, None

    def _start(self, params):
        key = (params.tobytes(), self._n_agq)
        if key != self._last_key:
            self._last_key, self._last_grad, self._predictor = None, None, None
            self._modes = None
            self.n_evals += 1
        return key

    def evaluate(self, params) -> float:
        params = np.asarray(params, dtype=float)
        key = self._start(params)
        if key == self._last_key:
            return self._last_val
        vals = self._timed("evaluate", params)
        self._remember(key, params, vals)
        return self._last_val

    def value_and_grad(self, params):
        params = np.asarray(params, dtype=float)
        key = self._start(params)
        if key == self._last_key and self._last_grad is not None:
            return self._last_val, self._last_grad.copy()
        if key == self._last_key and not np.isfinite(self._last_val):
            return np.inf, np.zeros(len(params))
        out = self._timed("value_and_grad", params)
        self._remember(key, params, [v for v, _ in out])
        if not np.isfinite(self._last_val):
            return np.inf, np.zeros(len(params))
        self._last_grad = np.sum([g for _, g in out], axis=0)
        self._predictor = True  # every partition has its modes' derivatives
        return self._last_val, self._last_grad.copy()

    def _timed(self, method, params):
        t0 = time.perf_counter()
        out = self._call(method, params)
        self.map_reduce_seconds += time.perf_counter() - t0
        self.map_reduce_calls += 1
        return out

    def _remember(self, key, params, vals):
        val = float(np.sum(vals))
        self._last_key, self._last_val = key, val if np.isfinite(val) else np.inf
        self._last_params = params.copy()
        self.state = {} if np.isfinite(val) else None

    def gradient(self, params) -> np.ndarray:
        return self.value_and_grad(params)[1]

    def gauss_newton_diagonal(self) -> np.ndarray:
        return np.sum(self._call("gauss_newton_diagonal"), axis=0)

    def exact_hessian_block(self):
        """The closed-form Hessian block at the last point evaluated: the sum of the
        partitions' (every term is a sum over levels), or None where one has none."""
        return self._summed("exact_hessian_block")

    def max_curvature(self):
        """The largest curvature at the modes of the last point evaluated, over every
        partition's rows (one map-reduce), or None."""
        if self._last_params is None:
            return None
        found = [v for v in self._timed("max_curvature", self._last_params) if v is not None]
        return max(found) if found else None

    def exact_extra_column(self):
        """The closed-form row and column of the family's own parameter at the last
        point evaluated: the sum of the partitions', or None where one has none."""
        return self._summed("exact_extra_column")

    def _summed(self, method):
        """The partitions' ``method`` at the last point evaluated, summed (every term is
        a sum over levels), or None where one has none."""
        if self._last_params is None:
            return None
        parts = self._timed(method, self._last_params)
        if any(v is None for v in parts):
            return None
        return np.sum(parts, axis=0)

    def level_information(self, k: int):
        """As in memory: the largest over every partition's levels."""
        found = [v for v in self._call("level_information", k) if v is not None]
        return max(found) if found else None

    def rows_reading_effects(self) -> int:
        """As in memory: the partitions' rows (the layout has none)."""
        if self._rows_reading is None:
            self._rows_reading = int(sum(self._call("rows_reading_effects")))
        return self._rows_reading

    def level_gram_products(self, k: int):
        """As in memory: the partitions' sums over their levels, added."""
        return sum(self._call("level_gram_products", k))

    def level_effects(self, k: int, params, shifts):
        """As in memory, each partition's levels put in their places."""
        f = self.data.factors[k]
        t, w, d1 = np.zeros((f.n_levels, f.q)), np.zeros(f.n_levels), np.zeros(f.n_levels)
        parts = self._call("level_effects", k, params, np.asarray(shifts, dtype=float))
        for idx, (t_p, w_p, d1_p) in zip(self.level_maps, parts):
            t[idx], w[idx], d1[idx] = t_p, w_p, d1_p
        return t, w, d1

    def extra_curvature(self, coefs):
        """None: the partitions hold the rows (the optimiser then runs unscaled)."""
        return None

    def release_rows(self) -> None:
        """Nothing here: the partitions hold the rows."""

    def compact_mode_derivatives(self) -> None:
        """Nothing here: the partitions hold the modes' derivatives."""

    def snapshot(self):
        """The state at the last point: each partition keeps its own under a key until
        the returned snapshot is freed (told with the next snapshot)."""
        self._snap_no += 1
        released = []
        while self._released:  # (one by one: a finalizer may append meanwhile)
            released.append(self._released.pop())
        self._call("snapshot", self._snap_no, released)
        memo = (self._last_key, self._last_val, self._last_grad, self._predictor)
        snap = _Snapshot(self._snap_no, memo, self._last_params, self.state)
        weakref.finalize(snap, self._released.append, self._snap_no)
        return snap

    def restore(self, snap) -> None:
        key, memo, params, state = snap.key, snap.memo, snap.params, snap.state
        self._call("restore", key)
        self._last_key, self._last_val, self._last_grad, self._predictor = memo
        self._last_params, self.state, self._modes = params, state, None

    # -- the nested GLM ---------------------------------------------------------
    def glm_value_and_grad(self, params):
        out = self._call("glm_value_and_grad", np.asarray(params, dtype=float))
        val = float(np.sum([v for v, _ in out]))
        if not np.isfinite(val):
            return np.inf, np.zeros(len(params))
        return val, np.sum([g for _, g in out], axis=0)

    @property
    def glm_optimum(self):
        """The model without random effects at its optimum, ``(x, -2 log L)``.

        Set from the starting values when the GLM was fitted there on every row;
        otherwise fitted here on every partition (L-BFGS-B to a relative tolerance of
        1e-9, as the in-memory check does) from the fixed effects and family
        parameters of the last point evaluated: the mixed model's optimum when the
        checks at the optimum ask.
        """
        if self._glm_optimum is not None and np.isfinite(self._glm_optimum[1]):
            return self._glm_optimum
        from .start import parameter_bounds

        d = self.data
        p, T = d.n_beta, d.n_theta
        bounds = parameter_bounds(d)
        keep = np.r_[np.arange(p), np.arange(p + T, len(bounds))]
        if self._last_params is not None:
            x0 = self._last_params[keep]
        elif self._glm_optimum is not None:
            x0 = self._glm_optimum[0]
        else:
            x0 = np.concatenate([np.zeros(p), d.default_extra()])
        gb = [bounds[k] for k in keep]
        res = _run_lbfgsb(self.glm_value_and_grad, x0, gb, self.glm_max_iter, 1e-9)
        self._glm_optimum = (res.x, float(res.fun))
        return self._glm_optimum

    @glm_optimum.setter
    def glm_optimum(self, value) -> None:
        self._glm_optimum = value

    # -- the fitted modes ---------------------------------------------------------
    def collect_modes(self) -> None:
        """Gather every partition's conditional modes into the model's level order."""
        f = self.data.factors[0]
        u = np.zeros((f.n_levels, f.q))
        cv = np.zeros((f.n_levels, f.q, f.q))
        for idx, (uk, ck) in zip(self.level_maps, self._call("modes")):
            u[idx], cv[idx] = uk, ck
        self._modes = (u.ravel(), cv)
        fails = self._call("counters")
        self.pirls_failures = int(sum(a for a, _ in fails))
        self.pirls_iterations = int(sum(b for _, b in fails))

    @property
    def u(self) -> np.ndarray:
        if self._modes is None:
            self.collect_modes()
        return self._modes[0]

    def conditional_variances(self, f: int) -> np.ndarray:
        if self._modes is None:
            self.collect_modes()
        return self._modes[1]

    def scan_modes(self, params, gap: float = 3.0):  # pragma: no cover - log-concave only
        raise NotImplementedError("a partitioned fit supports log-concave families only")
