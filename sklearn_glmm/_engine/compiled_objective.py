"""A single fit's objective evaluated by the compiled batched kernel (one replicate).

Under ``set_config(compiled=True)``, a model the batched refits' compiled kernel covers
(:func:`~sklearn_glmm._engine.compiled.batched_laplace`: one grouping factor with one
or two random effects per level, unstructured or diagonal, Poisson or NB2 with the log
link or binomial with the logit link, the Laplace approximation; NB2 with one random
effect per level keeps the single objective's own compiled search) is fitted with the
objective of a batch of one replicate: each evaluation, with its gradient, its modes'
derivatives in the parameters and (at the first point) the Gauss-Newton diagonal, is
one call of the kernel instead of the numpy code's passes over the rows. It is the
bootstrap's :class:`~sklearn_glmm._engine.batch_member.BatchMember`: the same formulas,
steps and stopping rules (so the same optimum to rounding), and an evaluation the
kernel does not complete (no modes found, a non-finite value) is the numpy
objective's, with its fallbacks. Everything else (the memo, snapshots, the Hessian,
the checks of the optimum, the profiles) is the numpy objective's.
"""

from __future__ import annotations

import numpy as np

from .._config import compiled_on
from .batch_member import BatchMember
from .batched import (
    BatchedLaplace,
    can_batch,
)
from .lockstep import Scheduler, _own
from .objective import Objective

# rows up to which the compiled kernels are used (``set_config``'s documented scope)
MAX_ROWS = 50_000


class _AtOnce(Scheduler):
    """Computes each request when it is made: one replicate, no other task to wait for."""

    def request(self, index, points):
        return self._compute({index: _own(points)})[index]

    def run(self, tasks) -> list:  # pragma: no cover - a batch of one runs no tasks
        raise NotImplementedError


class CompiledObjective(BatchMember):
    """A single fit's :class:`~sklearn_glmm._engine.batch_member.BatchMember`, its
    evaluations made by the compiled kernel at once.

    The engine keeps its own copy of the outcome (a fit may read the caller's array
    in place). A pickle leaves the engine out (its arrays repeat the data's); it is made
    again when first needed.
    """

    # (the Hessian is the numpy objective's, from its own state)
    batched_hessian = False

    def __init__(self, data, engine: BatchedLaplace):
        super().__init__(data, _AtOnce(engine), 0)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_lockstep"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _scheduler(self):
        if self._lockstep is None:
            self._lockstep = _AtOnce(_engine(self.data))
        return self._lockstep

    def evaluate(self, params) -> float:
        self._scheduler()
        return super().evaluate(params)

    def evaluate_points(self, points, at) -> list:
        self._scheduler()
        return super().evaluate_points(points, at)

    def gauss_newton_diagonal(self) -> np.ndarray:
        self._scheduler()
        return super().gauss_newton_diagonal()


def _engine(data) -> BatchedLaplace:
    """The batched engine of one replicate: ``data``'s outcome (a copy)."""
    return BatchedLaplace(data, np.array(data.y, dtype=float)[None, :])


def make_objective(data, n_agq: int) -> Objective:
    """The objective of a fit of ``data``'s model: :class:`CompiledObjective` where
    ``set_config(compiled=True)`` is on and its kernel covers the model (up to
    ``MAX_ROWS`` rows), else :class:`~sklearn_glmm._engine.objective.Objective`."""
    if compiled_on() and n_agq == 1 and len(data.y) <= MAX_ROWS and can_batch(data, n_agq):
        engine = _engine(data)
        # (NB2 with one random effect per level: the single objective's own compiled
        # search is faster, its theta terms made once per theta)
        if engine.compiled_for([0]) is not None and not (data.n_extra and engine.q == 1):
            return CompiledObjective(data, engine)
    return Objective(data, n_agq)
