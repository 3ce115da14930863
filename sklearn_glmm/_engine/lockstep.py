"""Schedulers of batched refits: many replicates' optimisers, their evaluations computed
together.

Each replicate runs the single fit's optimiser as a task of its own (a plain function
call whose objective, a :class:`~sklearn_glmm._engine.batch_member.BatchMember`, asks the
scheduler for its evaluations through :meth:`Lockstep.request`). When every task still
running waits for an evaluation, the scheduler computes all of them in one pass
(:meth:`~sklearn_glmm._engine.batched.BatchedLaplace.evaluate`) and resumes each with its
own result. Which evaluations share a pass depends on the tasks' own logic only, never
on timing, and a replicate's arithmetic does not depend on the others in its pass: the
results are the same, bit for bit, whichever scheduler runs the tasks.

Two schedulers:

- :class:`GreenletLockstep` runs each task in a greenlet (the optional ``greenlet``
  package): a task waiting for its evaluation switches to the scheduler and back, in
  one operating-system thread. A switch costs about a microsecond.
- :class:`Lockstep` runs each task in a thread of its own, waiting on a lock, the tasks
  resumed one at a time. Every hand-over is a wake-up of a thread by the operating
  system and a transfer of the interpreter lock. On a bootstrap of 1,000 replicates
  that costs about a third of the time (app-logins, 1,500 rows: a median of 7.84 s
  against 4.84 s with greenlets, the same replicates).

:func:`new_lockstep` takes greenlets where the package is installed (and numpy 2 or
later, whose floating-point error state is a context variable: each greenlet has its
own, as each thread has), threads otherwise.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import NamedTuple

import numpy as np


def _greenlet_module():
    """The ``greenlet`` module where greenlets can run the tasks, else None."""
    try:
        import greenlet
    except ImportError:
        return None
    # numpy 1.x keeps np.errstate per thread, not per context: a task's errstate
    # would be the other tasks' too
    if int(np.__version__.split(".")[0]) < 2:
        return None
    return greenlet


def new_lockstep(engine) -> Scheduler:
    """The scheduler for batched refits of ``engine``: greenlets where available
    (:class:`GreenletLockstep`), else threads (:class:`Lockstep`). Same results."""
    if USE_GREENLETS and _greenlet_module() is not None:
        return GreenletLockstep(engine)
    return Lockstep(engine)


#: whether :func:`new_lockstep` may use greenlets (False: threads, as without the package)
USE_GREENLETS = True


class HessianAt(NamedTuple):
    """A request for the closed-form Hessian at ``params`` (the replicate's last point
    evaluated) from its modes there, ``u`` (not an evaluation): answered by ``(H,
    top)``, the Hessian and the largest curvature at the modes, or None
    (:meth:`~sklearn_glmm._engine.batched.BatchedLaplace.hessians`)."""

    params: np.ndarray
    u: np.ndarray


def _closed_lock() -> threading.Lock:
    """A lock held from the start: ``acquire`` waits until another thread releases it."""
    lock = threading.Lock()
    lock.acquire()
    return lock


class Scheduler:
    """What both schedulers share: the engine, and one pass over the waiting tasks'
    requests (:meth:`_compute`)."""

    def __init__(self, engine):
        self.engine = engine

    def request(self, index, points):
        """For each of ``points``, ``(params, start, with_scale)``, the batched ``(value,
        gradient, modes, mode derivatives, Gauss-Newton diagonal or None)``, or None;
        for a :class:`HessianAt`, ``(H, top)`` or None. ``index`` is the task's position
        in :meth:`run`'s list."""
        raise NotImplementedError

    def run(self, tasks) -> list:
        """Run ``tasks`` (callables); their results, or the exception each raised."""
        raise NotImplementedError

    def _compute(self, batch) -> dict:
        """Every task's points in one pass (a task's points side by side: each
        replicate's arithmetic reads its own rows only), the Hessians asked for in
        another."""
        kinds = {i: [isinstance(pt, HessianAt) for pt in pts] for i, pts in batch.items()}
        if not any(any(k) for k in kinds.values()):
            return self._evaluations(batch)
        points = {i: [pt for pt, h in zip(batch[i], k) if not h] for i, k in kinds.items()}
        hessians = {i: [pt for pt, h in zip(batch[i], k) if h] for i, k in kinds.items()}
        evaluated, hessian = self._evaluations(points), self._hessians(hessians)
        out = {}
        for i, pts in batch.items():
            # (False, True): the task's evaluations, then its Hessians, in its order
            got = (iter(evaluated[i]), iter(hessian[i]))
            out[i] = [next(got[isinstance(pt, HessianAt)]) for pt in pts]
        return out

    def _hessians(self, batch) -> dict:
        """The Hessians of the :class:`HessianAt` requests ``batch`` in one pass."""
        order = [(i, point) for i in sorted(batch) for point in batch[i]]
        out = {i: [] for i in batch}
        if not order:
            return out
        idx = [i for i, _ in order]
        params = np.stack([point.params for _, point in order])
        U0 = np.stack([point.u for _, point in order])
        try:
            with np.errstate(all="ignore"):
                ok, H, top = self.engine.hessians(idx, params, U0)
        except (np.linalg.LinAlgError, ValueError, ArithmeticError):
            return {i: [None] * len(batch[i]) for i in batch}
        for k, i in enumerate(idx):
            out[i].append((H[k].copy(), float(top[k])) if ok[k] else None)
        return out

    def _evaluations(self, batch) -> dict:
        """The evaluations of the points ``batch`` in one pass."""
        order = [(i, point) for i in sorted(batch) for point in batch[i]]
        if not order:
            return {i: [] for i in batch}
        idx = [i for i, _ in order]
        params = np.stack([point[0] for _, point in order])
        U0 = np.stack([point[1] for _, point in order])
        scale = [point[2] for _, point in order]
        out = {i: [] for i in batch}
        try:
            with np.errstate(all="ignore"):
                ok, val, grad, U, J, *gn = self.engine.evaluate(idx, params, U0, any(scale))
        except (np.linalg.LinAlgError, ValueError, ArithmeticError):
            return {i: [None] * len(batch[i]) for i in batch}
        for k, i in enumerate(idx):
            out[i].append(
                (
                    val[k],
                    grad[k].copy(),
                    U[k].copy(),
                    J[k].copy(),
                    gn[0][k].copy() if scale[k] else None,
                )
                if ok[k]
                else None
            )
        return out


class Lockstep(Scheduler):
    """Runs one task per replicate in its own thread and batches their evaluations.

    A task's objective calls :meth:`request`, which waits; when every live task is
    waiting, the pending evaluations are computed in one pass
    (:meth:`BatchedLaplace.evaluate`) and each task resumes with its own result. Which
    evaluations share a pass depends on the tasks' own logic only, not on timing.
    Each task waits on a gate of its own (a lock), and the scheduler on one: plain
    locks, no condition variables, so no task is woken for another's result and a
    hand-over is one C call. The tasks run one at a time, in their order: the scheduler
    opens the first task's gate, and a task that posts its request (or ends) opens the
    next one's, the last the scheduler's. Woken all at once they would contend for the
    interpreter lock (about 7 % of a bootstrap's time).
    """

    def __init__(self, engine):
        super().__init__(engine)
        self._lock = threading.Lock()  # guards _requests and _live
        self._wake = _closed_lock()  # released when every live task waits, or none is left
        self._requests = {}
        self._results = {}
        self._gates = {}
        self._live = 0
        self._turns = []  # tasks still to resume in this round, the next last

    def _post(self):
        """(Under ``_lock``.) Hand on: to the next task to resume, else to the scheduler
        once every live task waits or none is left (once per pass)."""
        if self._turns:
            self._gates[self._turns.pop()].release()
        elif self._live == 0 or len(self._requests) == self._live:
            self._wake.release()

    def _resume(self, tasks):
        """(Under ``_lock``.) Resume ``tasks`` one after another, in their order."""
        self._turns = sorted(tasks, reverse=True)
        self._gates[self._turns.pop()].release()

    def request(self, index, points):
        gate = self._gates[index]
        points = _own(points)
        with self._lock:
            self._requests[index] = points
            self._post()
        gate.acquire()
        return self._results.pop(index)

    def run(self, tasks) -> list:
        out = [None] * len(tasks)
        if not tasks:
            return out
        self._live = len(tasks)
        self._gates = {k: _closed_lock() for k in range(len(tasks))}

        def body(k):
            self._gates[k].acquire()  # its turn to start
            try:
                out[k] = _outcome(tasks[k])
            finally:
                with self._lock:
                    self._live -= 1
                    self._post()

        threads = [threading.Thread(target=body, args=(k,), daemon=True) for k in range(len(tasks))]
        for t in threads:
            t.start()
        with self._lock:
            self._resume(range(len(tasks)))
        while True:
            self._wake.acquire()
            with self._lock:
                if self._live == 0:
                    break
                batch, self._requests = self._requests, {}
            self._results.update(self._compute(batch))
            with self._lock:
                self._resume(batch)
        for t in threads:
            t.join()
        return out


def _outcome(task):
    """``task()``, or the exception it raised (the caller decides what fails)."""
    try:
        return task()
    except BaseException as exc:  # noqa: BLE001 - handed to the caller
        return exc


def _own(points) -> list:
    """The points of a request, each's parameters a float array of its own."""
    return [
        HessianAt(np.array(pt.params, dtype=float), pt.u)
        if isinstance(pt, HessianAt)
        else (np.array(pt[0], dtype=float), pt[1], pt[2])
        for pt in points
    ]


class GreenletLockstep(Scheduler):
    """:class:`Lockstep` with each task in a greenlet instead of a thread: the same
    passes (every live task's next request, computed when all of them wait) in the
    order of the tasks, with a switch to the scheduler and back for a hand-over."""

    def __init__(self, engine):
        super().__init__(engine)
        self._hub = None

    def request(self, index, points):
        # to the scheduler's greenlet, which switches back with this task's results
        return self._hub.switch((index, _own(points)))

    def run(self, tasks) -> list:
        greenlet = _greenlet_module()
        out = [None] * len(tasks)
        if not tasks:
            return out

        def body(k):
            out[k] = _outcome(tasks[k])

        hub = self._hub = greenlet.getcurrent()
        lets = [greenlet.greenlet(partial(body, k), parent=hub) for k in range(len(tasks))]
        resume = [(k, ()) for k in range(len(tasks))]  # a task's first switch starts it
        while resume:
            batch = {}
            for k, args in resume:
                asked = lets[k].switch(*args)
                if not lets[k].dead:
                    index, points = asked
                    batch[index] = points
            if not batch:
                break
            results = self._compute(batch)
            resume = [(i, (results[i],)) for i in sorted(batch)]
        return out
