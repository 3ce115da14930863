"""The schedulers of batched refits: greenlets and threads give the same refits.

``sklearn_glmm._engine.lockstep`` runs each replicate's optimiser as a task (a greenlet
where the ``greenlet`` package is installed, else a thread) and computes the tasks'
evaluations together when all of them wait. Which evaluations share a pass depends on
the tasks alone, so both schedulers give the same passes and the same numbers, bit for
bit; an error in one task is that task's result, not the others'.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm._engine import lockstep
from sklearn_glmm._engine.batched import BatchedLaplace
from sklearn_glmm._simulate import fit_many, refit_many, simulate_response

# (with NumPy 1.x greenlets are not used: its floating-point error state is per thread)
needs_greenlets = pytest.mark.skipif(
    lockstep._greenlet_module() is None,
    reason="greenlets not used: greenlet not installed, or NumPy before 2",
)
pytestmark = needs_greenlets


def _fit(kind, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(25), 8)
    x = rng.standard_normal(len(g))
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.7, 25)[g]
    if kind == "pois_slope":
        y = rng.poisson(np.exp(eta + rng.normal(0, 0.3, 25)[g] * x))
        est = PoissonGLMM(random_effects="1 + x")
    else:
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
        est = BinomialGLMM(random_effects="1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(pd.DataFrame({"x": x}), y, groups=g)


def _counting_passes(monkeypatch):
    sizes = []
    real = BatchedLaplace.evaluate

    def counted(self, idx, *args, **kwargs):
        sizes.append(len(idx))
        return real(self, idx, *args, **kwargs)

    monkeypatch.setattr(BatchedLaplace, "evaluate", counted)
    return sizes


def _same(a, b):
    (xa, ra), (xb, rb) = a, b
    np.testing.assert_array_equal(xa, xb)
    assert (ra.objective, ra.converged, ra.n_evaluations, ra.n_iter) == (
        rb.objective,
        rb.converged,
        rb.n_evaluations,
        rb.n_iter,
    )
    assert ra.stages == rb.stages


@pytest.mark.parametrize("kind", ["pois_slope", "bin_ri"])
@pytest.mark.parametrize("how", ["refit_many", "fit_many"])
def test_greenlets_and_threads_give_the_same_refits_and_passes(monkeypatch, kind, how):
    est = _fit(kind)
    Y = simulate_response(est, 12, np.random.default_rng(3))
    run = refit_many if how == "refit_many" else fit_many
    out = {}
    for greenlets in (True, False):
        monkeypatch.setattr(lockstep, "USE_GREENLETS", greenlets)
        sizes = _counting_passes(monkeypatch)
        out[greenlets] = run(est, Y), sizes
        monkeypatch.undo()
    (with_g, passes_g), (with_t, passes_t) = out[True], out[False]
    assert passes_g == passes_t and len(passes_g) > 1  # the same passes, same sizes
    for a, b in zip(with_g, with_t):
        _same(a, b)


def test_the_scheduler_is_greenlets_where_installed_threads_otherwise(monkeypatch):
    engine = object()
    assert type(lockstep.new_lockstep(engine)) is lockstep.GreenletLockstep
    monkeypatch.setattr(lockstep, "_greenlet_module", lambda: None)  # not installed
    assert type(lockstep.new_lockstep(engine)) is lockstep.Lockstep
    monkeypatch.undo()
    monkeypatch.setattr(lockstep, "USE_GREENLETS", False)
    assert type(lockstep.new_lockstep(engine)) is lockstep.Lockstep


@pytest.mark.parametrize("scheduler", [lockstep.Lockstep, lockstep.GreenletLockstep])
def test_a_task_that_raises_or_asks_nothing_leaves_the_others_their_results(scheduler):
    est = _fit("pois_slope")
    d = est.fit_result_.objective.data
    x0 = est.fit_result_.params
    Y = simulate_response(est, 4, np.random.default_rng(4)).T
    engine = BatchedLaplace(d, Y)
    lock = scheduler(engine)
    start = np.zeros(d.n_u)

    def point(t):
        return x0 + 0.01 * t

    def asks(k, n):  # a task's index is its position in the list
        def task():
            values = []
            for t in range(n):
                (out,) = lock.request(k, [(point(t), start, False)])
                values.append(out[0])
            if k == 1:
                raise RuntimeError("a bug in task 1")
            return values

        return task

    got = lock.run([asks(0, 3), asks(1, 2), lambda: "no evaluation", asks(3, 1)])
    assert isinstance(got[1], RuntimeError) and got[2] == "no evaluation"
    for k, n in ((0, 3), (3, 1)):
        alone = [
            BatchedLaplace(d, Y).evaluate([k], point(t)[None], start[None])[1][0] for t in range(n)
        ]
        assert got[k] == alone  # each replicate's own values, whoever shared its passes


@pytest.mark.parametrize("scheduler", [lockstep.Lockstep, lockstep.GreenletLockstep])
def test_tasks_resume_one_at_a_time_in_their_order(scheduler):
    # after each pass the tasks run one after another, in the order of the list: never
    # two at once (threads woken together would contend for the interpreter lock)
    est = _fit("pois_slope")
    d = est.fit_result_.objective.data
    x0 = est.fit_result_.params
    n = 8
    Y = simulate_response(est, n, np.random.default_rng(5)).T
    lock = scheduler(BatchedLaplace(d, Y))
    start = np.zeros(d.n_u)
    order, running = [], []

    def task(k):
        def run():
            for t in range(3):
                running.append(k)
                assert running == [k]  # no other task is running now
                order.append((t, k))
                running.remove(k)
                lock.request(k, [(x0 + 0.01 * t, start, False)])
            return k

        return run

    assert lock.run([task(k) for k in range(n)]) == list(range(n))
    assert order == [(t, k) for t in range(3) for k in range(n)]
