"""The compiled batched evaluation (``set_config(compiled=True)``, numba) of many outcome
vectors on one design gives the numpy code's numbers: the same modes, Laplace values,
gradients, mode derivatives and Gauss-Newton diagonals to rounding, the same bootstrap
replicates; models it does not cover run the numpy code; the library's parallel work
runs under the caller's setting."""

import numpy as np
import pandas as pd
import pytest
from joblib import Parallel, delayed
from test_batched_refits import _data

from sklearn_glmm import BinomialGLMM, PoissonGLMM, config_context, get_config
from sklearn_glmm._config import with_config
from sklearn_glmm._engine import compiled
from sklearn_glmm._engine.batched import BatchedLaplace, can_batch
from sklearn_glmm._simulate import bootstrap_params, simulate_response

pytest.importorskip("numba")


def _fit(kind, seed=0, n_groups=25, n_per=10):
    if kind in ("pois_slope", "bin_ri", "binom_trials_weights", "nb_ri", "nb_slope"):
        return _data(kind, seed)  # test_batched_refits'
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.standard_normal(len(g))
    b1 = rng.normal(0, 0.3, n_groups)[g]
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.6, n_groups)[g]
    X = pd.DataFrame({"x": x})
    if kind == "pois_offset_shuffled":  # a level's rows not together, an exposure
        t = rng.uniform(0.5, 3.0, len(g))
        y = rng.poisson(t * np.exp(eta))
        o = rng.permutation(len(g))
        est = PoissonGLMM(random_effects="1")
        return est.fit(X.iloc[o], y[o], groups=g[o], offset=np.log(t[o]))
    if kind == "probit":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
        return BinomialGLMM(link="probit", random_effects="1").fit(X, y, groups=g)
    if kind == "pois_three":  # three random effects per level
        X["z"] = rng.standard_normal(len(g))
        y = rng.poisson(np.exp(eta + b1 * x))
        return PoissonGLMM(random_effects="1 + x + z").fit(X, y, groups=g)
    raise ValueError(kind)


@pytest.fixture
def kernel_calls(monkeypatch):
    calls = []
    inner = compiled.batched_laplace

    def counted(*args):
        calls.append(len(args[12]))  # replicates in the call
        return inner(*args)

    monkeypatch.setattr(compiled, "batched_laplace", counted)
    return calls


def _evaluate_both(est, R=6, seed=1, scale=0.05):
    res = est.fit_result_
    d = res.objective.data
    Y = simulate_response(est, R, np.random.default_rng(seed)).T
    rng = np.random.default_rng(seed + 1)
    P = res.params * (1.0 + scale * rng.standard_normal((R, len(res.params))))
    if d.n_extra:  # NB2's log theta: one replicate on its bound (the Poisson limit)
        P[2, -1] = res.bounds[-1][1]
    U0 = 0.3 * rng.standard_normal((R, d.n_u))
    engine = BatchedLaplace(d, Y)
    out = {}
    for on in (False, True):
        with config_context(compiled=on):
            out[on] = engine.evaluate(np.arange(R), P, U0, True)
    return engine, P, U0, out


@pytest.mark.parametrize(
    "kind",
    ["pois_slope", "pois_offset_shuffled", "bin_ri", "binom_trials_weights", "nb_ri", "nb_slope"],
)
def test_batched_evaluation_as_numpy(kind, kernel_calls):
    est = _fit(kind)
    assert can_batch(est.fit_result_.objective.data, 1)
    engine, P, U0, out = _evaluate_both(est)
    assert kernel_calls == [6]
    (ok_a, val_a, grad_a, U_a, J_a, gn_a), (ok_b, val_b, grad_b, U_b, J_b, gn_b) = (
        out[False],
        out[True],
    )
    assert ok_a.all()
    np.testing.assert_array_equal(ok_b, ok_a)
    np.testing.assert_allclose(val_b, val_a, rtol=1e-12)
    np.testing.assert_allclose(grad_b, grad_a, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(U_b, U_a, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(J_b, J_a, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gn_b, gn_a, rtol=1e-10)
    # a replicate's numbers do not depend on the others in its call
    with config_context(compiled=True):
        sub = engine.evaluate([4, 1], P[[4, 1]], U0[[4, 1]])
    np.testing.assert_array_equal(sub[1], val_b[[4, 1]])
    np.testing.assert_array_equal(sub[2], grad_b[[4, 1]])
    np.testing.assert_array_equal(sub[4], J_b[[4, 1]])


def test_failed_replicates_fail_as_in_numpy():
    est = _fit("pois_slope")
    d = est.fit_result_.objective.data
    Y = simulate_response(est, 3, np.random.default_rng(0)).T
    P = np.tile(est.fit_result_.params, (3, 1))
    P[1, 0] = 800.0  # exp overflows on every row: no finite value
    engine = BatchedLaplace(d, Y)
    for on in (False, True):
        with config_context(compiled=on), np.errstate(all="ignore"):
            ok = engine.evaluate([0, 1, 2], P, np.zeros((3, d.n_u)))[0]
        assert ok.tolist() == [True, False, True]


@pytest.mark.parametrize("kind", ["probit", "pois_three"])
def test_models_not_covered_run_the_numpy_code(kind, kernel_calls):
    est = _fit(kind)
    assert can_batch(est.fit_result_.objective.data, 1)
    _, _, _, out = _evaluate_both(est, R=3)
    assert kernel_calls == []
    np.testing.assert_array_equal(out[True][1], out[False][1])


def test_large_counts_run_the_numpy_code(kernel_calls):
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(20), 8)
    y = rng.poisson(np.exp(7.5 + rng.normal(0, 0.5, 20)[g]))  # counts above 1,000
    est = PoissonGLMM(random_effects="1").fit(np.zeros((len(g), 0)), y, groups=g)
    _, _, _, out = _evaluate_both(est, R=3, scale=0.001)
    assert kernel_calls == []
    np.testing.assert_array_equal(out[True][1], out[False][1])


@pytest.mark.parametrize("kind", ["pois_slope", "bin_ri", "nb_slope"])
def test_bootstrap_as_numpy(kind, kernel_calls):
    est = _fit(kind)
    a, ok_a = bootstrap_params(est, 12, random_state=3)
    assert not kernel_calls
    with config_context(compiled=True):
        b, ok_b = bootstrap_params(est, 12, random_state=3)
    assert kernel_calls
    np.testing.assert_array_equal(ok_b, ok_a)
    assert ok_a.sum() >= 10
    np.testing.assert_allclose(b[ok_b], a[ok_a], rtol=1e-6, atol=1e-7)


def test_parallel_work_runs_under_the_callers_settings():
    def setting():
        return get_config()["compiled"]

    with config_context(compiled=True):
        task = with_config(setting)
    assert not get_config()["compiled"]
    assert task()  # the captured setting, not the current one
    assert Parallel(n_jobs=2)(delayed(task)() for _ in range(2)) == [True, True]
    assert not get_config()["compiled"]


def test_replicates_below_the_large_count_form_run_the_kernel_in_a_mixed_batch(kernel_calls):
    # replicates whose counts pass 1,000 take the numpy code's cancellation-free form;
    # the others of the same batch run the kernel, each with the numbers it has alone
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(20), 8)
    y = rng.poisson(np.exp(6.3 + rng.normal(0, 0.2, 20)[g]))
    est = PoissonGLMM(random_effects="1").fit(np.zeros((len(g), 0)), y, groups=g)
    d = est.fit_result_.objective.data
    Y = simulate_response(est, 4, np.random.default_rng(1)).T
    Y[:2] = np.minimum(Y[:2], 1000.0)
    Y[2:, 0] = 1500.0
    P = np.tile(est.fit_result_.params, (4, 1))
    U0 = np.zeros((4, d.n_u))
    with config_context(compiled=True):
        both = BatchedLaplace(d, Y).evaluate(np.arange(4), P, U0)
        assert kernel_calls == [2]  # the two below 1,000
        alone = BatchedLaplace(d, Y[:2]).evaluate(np.arange(2), P[:2], U0[:2])
    np.testing.assert_array_equal(both[1][:2], alone[1])
    numpy = BatchedLaplace(d, Y).evaluate(np.arange(4), P, U0)
    np.testing.assert_array_equal(both[1][2:], numpy[1][2:])
    np.testing.assert_allclose(both[1], numpy[1], rtol=1e-12)
