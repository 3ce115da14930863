"""One replicate's objective in a batch of refits (:class:`BatchMember`): its
evaluations handed to a scheduler (:mod:`~sklearn_glmm._engine.lockstep`) that computes
the batch's together (:class:`~sklearn_glmm._engine.batched.BatchedLaplace`); everything
else the single objective's.
"""

from __future__ import annotations

import numpy as np

from . import batched_hessian, laplace_hessian
from .lockstep import HessianAt, Scheduler
from .model_data import ModelData
from .objective import Objective

# largest move of a spherical random effect (prior SDs) taken from the first-order
# predictor: beyond it (a zero variance probed at a large value) the linear
# extrapolation overshoots, and the search starts from the last modes instead
_PREDICTOR_REACH = 1.0


class BatchMember(Objective):
    """One replicate's objective: evaluations are batched by a scheduler
    (:mod:`~sklearn_glmm._engine.lockstep`).

    The closed-form Hessian at the last point evaluated (and the largest curvature at
    its modes, which decides whether the closed form is used) is the batch's too,
    computed with the other replicates asking (:meth:`_batch_hessian`). Everything
    else (the memo, snapshots, the Gauss-Newton scale, the zero probes) is the single
    :class:`~sklearn_glmm._engine.objective.Objective`'s; the per-row state of a
    batched point is made from its modes when first read. An evaluation or a Hessian
    the batch cannot complete is the single objective's.
    """

    def __init__(self, data: ModelData, lockstep: Scheduler, index: int):
        super().__init__(data, 1)
        self._lockstep = lockstep
        self._index = index
        self.n_batched = 0

    def evaluate(self, params) -> float:
        params = np.asarray(params, dtype=float)
        val = self.remembered(params)
        if val is not None:
            return val
        if self.n_agq != 1 or self.global_modes:
            return super().evaluate(params)
        start = self._start_at(params)
        # the first point's Gauss-Newton diagonal (the optimiser's scale) comes with it
        (out,) = self._lockstep.request(self._index, [(params, start, self.n_evals == 0)])
        if out is None:
            return super().evaluate(params)
        val, grad, u, J, gn = out
        self.adopt(params, val, grad, u, J)
        self.n_batched += 1
        self._scale_at = None if gn is None else (params.copy(), gn)
        return float(val)

    def _start_at(self, params) -> np.ndarray:
        """The mode search's start at ``params`` from the current modes: moved by the
        first-order predictor where that stays within ``_PREDICTOR_REACH``."""
        d = self.data
        start = self.u.copy()
        move = self.predicted_move(params[: d.n_beta + d.n_theta])
        if move is not None and np.abs(move).max() <= _PREDICTOR_REACH:
            start += move
        return start

    def evaluate_points(self, points, at) -> list:
        """The objective at each of ``points``, each from the snapshot ``at``: one
        request to the batch for all of them (the values one evaluation after another
        would give, each from ``at``'s modes). The state is left at ``at``."""
        points = [np.asarray(x, dtype=float) for x in points]
        self.restore(at)
        ask = [
            i
            for i, x in enumerate(points)
            if self.n_agq == 1 and not self.global_modes and self.remembered(x) is None
        ]
        outs = dict(
            zip(
                ask,
                self._lockstep.request(
                    self._index, [(points[i], self._start_at(points[i]), False) for i in ask]
                ),
            )
            if ask
            else ()
        )
        values = []
        for i, x in enumerate(points):
            out = outs.get(i)
            if out is None:  # remembered, or not batched: the single objective's
                self.restore(at)
                values.append(Objective.evaluate(self, x))
                continue
            self.n_evals += 1
            self.n_batched += 1
            values.append(float(out[0]))
        self.restore(at)
        return values

    # whether the closed-form Hessian is the batch's (False: the single objective's)
    batched_hessian = True
    _hessian_at = None  # (memo key, (H, top) or None) of the last Hessian asked for

    def _batch_hessian(self):
        """``(H, top)`` at the last point evaluated, computed by the batch with the
        other replicates' (``BatchedLaplace.hessians``): the closed-form Hessian and
        the largest curvature at the modes, where this replicate's per-row state there
        is not made (a batched point's), so that the single objective's formulas would
        first make it (a mode search). None where the state is made (the single
        objective's formulas on it cost less than a pass of the batch: asking the batch
        there too made the power curve 5 % slower), where the batch does not compute it (more
        than one family parameter, or one without its second derivatives; quadrature;
        several factors), or it did not complete (NB2's theta on its bound, the Poisson
        limit): the single objective's then."""
        key = self._last_key
        if (
            not self.batched_hessian
            or key is None
            or self._pending is None
            or self.n_agq != 1
            or self.global_modes
            or not batched_hessian.covers_family(self.data)
            or not laplace_hessian.applies(self)
        ):
            return None
        if self._hessian_at is None or self._hessian_at[0] != key:
            u, params = self._pending  # (the point's modes: those the state is made from)
            (out,) = self._lockstep.request(self._index, [HessianAt(params, u.copy())])
            self._hessian_at = (key, out)
        return self._hessian_at[1]

    def exact_hessian_block(self):
        out = self._batch_hessian()
        return out[0].copy() if out is not None else super().exact_hessian_block()

    def max_curvature(self):
        out = self._batch_hessian()
        return out[1] if out is not None else super().max_curvature()

    _scale_at = None

    def gauss_newton_diagonal(self) -> np.ndarray:
        at = self._scale_at
        if at is not None and self.remembered(at[0]) is not None:
            return at[1].copy()
        if self._pending is not None and self.n_agq == 1 and not self.global_modes:
            # a batched point whose per-row state is not made (the Hessian's steps
            # read the scale at the optimum): the batch makes it from the same modes,
            # instead of a mode search of this replicate alone
            u, params = self._pending
            (out,) = self._lockstep.request(self._index, [(params, u.copy(), True)])
            if out is not None and out[4] is not None:
                self._scale_at = (np.array(params, dtype=float), out[4])
                return out[4].copy()
        return super().gauss_newton_diagonal()
