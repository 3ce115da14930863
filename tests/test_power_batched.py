"""Batched fits of many outcomes on one design: the power analysis's refits.

``fit_many`` fits every column of an outcome matrix as the estimator would (its own
starting point, the same optimiser, every check at the optimum), the evaluations of
all of them computed together where the model allows. Checked against estimator
fits of each column, and the power analysis against its one-by-one refits.
"""

import warnings
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import pytest
from test_lockstep import needs_greenlets

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM, _power_sim
from sklearn_glmm._engine.batch_member import BatchMember
from sklearn_glmm._engine.batched import BatchedLaplace, can_batch
from sklearn_glmm._engine.lockstep import GreenletLockstep, Lockstep
from sklearn_glmm._engine.objective import Objective
from sklearn_glmm._engine.start import glm_start
from sklearn_glmm._results import fixed_effect_arrays
from sklearn_glmm._simulate import fit_many, simulate_response
from sklearn_glmm.power import GLMMSpec, longitudinal_design, power_curve


def _case(kind, seed=0, n_groups=25, n_per=8):
    """A fitted model and how to fit it again: ``(est, X, groups, fit_kw)``."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.standard_normal(len(g)) * 3.0 + 10.0  # off-centre, not unit scale
    X = pd.DataFrame({"x": x})
    b0 = rng.normal(0, 0.7, n_groups)[g]
    b1 = rng.normal(0, 0.3, n_groups)[g]
    eta = 0.2 + 0.15 * (x - 10.0) + b0
    kw = {}
    if kind == "pois_slope":
        y = rng.poisson(np.exp(eta + b1 * (x - 10.0) / 3.0))
        est = PoissonGLMM(random_effects="1 + x")
        kw["offset"] = rng.uniform(-0.2, 0.2, len(g))
    elif kind == "bin_ri":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
        est = BinomialGLMM()
    elif kind == "binom_trials_weights":
        trials = rng.integers(1, 8, len(g))
        y = rng.binomial(trials, 1 / (1 + np.exp(-eta)))
        est = BinomialGLMM(random_effects="1 + x")
        kw.update(trials=trials, sample_weight=rng.choice([1.0, 2.0], len(g)))
    elif kind == "nb_slope":  # NB2's own parameter, batched too
        mu = np.exp(eta + b1 * (x - 10.0) / 3.0)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
        est = NegBinGLMM(random_effects="1 + x")
    else:
        mu = np.exp(eta)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
        est = NegBinGLMM()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, groups=g, **kw)
    return est, X, g, kw


@pytest.mark.parametrize(
    "kind", ["pois_slope", "bin_ri", "binom_trials_weights", "nb_ri", "nb_slope"]
)
def test_fit_many_equals_the_estimators_fits(kind):
    est, X, g, kw = _case(kind)
    assert can_batch(est.fit_result_.objective.data, 1)
    Y = simulate_response(est, 6, np.random.default_rng(1))
    fits = fit_many(est, Y)
    res = est.fit_result_
    p = res.objective.data.n_beta
    for r, (x, record) in enumerate(fits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = type(est)(**est.get_params()).fit(X, Y[:, r], groups=g, **kw)
        a, _ = fixed_effect_arrays(res.scaling, est._fixed_names, x[:p], record.covariance[:p, :p])
        b = one.fit_result_.arrays
        assert -0.5 * record.objective == pytest.approx(one.loglik_, abs=1e-7)
        np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a.std_error, b.std_error, rtol=1e-4)
        assert record.converged == one.converged_
        # the random effects' SDs, in the user's units
        (S,) = one.random_effects_cov_.values()
        Lo = res.random_lambdas(x)[0]
        sd = np.sqrt(np.diag(np.atleast_2d(S)))
        np.testing.assert_allclose(np.sqrt(np.diag(Lo @ Lo.T)), sd, rtol=1e-4, atol=1e-6)


def test_glm_starts_equal_glm_start():
    # every replicate's GLM start as glm_start makes it: weights, trials, an offset, a
    # separated replicate (its start clipped, no value) and one of all zeros
    est, X, g, kw = _case("binom_trials_weights")
    d = est.fit_result_.objective.data
    Y = simulate_response(est, 5, np.random.default_rng(4)).T
    x = d.X[:, 1]
    Y[3] = np.where(x > 0, d.trials, 0.0)  # separated by x
    Y[4] = 0.0
    d = replace(d, offset=np.linspace(-0.3, 0.3, len(d.y)))
    beta, F = BatchedLaplace(d, Y).glm_starts()
    for r in range(len(Y)):
        obj = Objective(replace(d, y=Y[r]), 1)
        b1, f1 = glm_start(obj, d.default_extra(), with_value=True)
        np.testing.assert_allclose(beta[r], b1, rtol=1e-9, atol=1e-9)
        assert np.isnan(F[r]) == np.isnan(f1)
        if np.isfinite(f1):
            assert F[r] == pytest.approx(f1, rel=1e-12)
    assert np.isnan(F[3]) and np.isnan(F[4])


@pytest.mark.parametrize("scheduler", [Lockstep, pytest.param("greenlets", marks=needs_greenlets)])
def test_batched_scale_at_a_batched_point_equals_the_single_objectives(scheduler):
    # the Gauss-Newton scale at a point whose per-row state was not made (the Hessian's
    # steps read it at the optimum) is made by the batch from the same modes
    if scheduler == "greenlets":
        scheduler = GreenletLockstep
    est, X, g, kw = _case("pois_slope")
    res = est.fit_result_
    d = res.objective.data
    Y = simulate_response(est, 3, np.random.default_rng(2)).T
    engine = BatchedLaplace(d, Y)
    lock = scheduler(engine)
    members = [BatchMember(replace(d, y=Y[r]), lock, r) for r in range(3)]
    x0 = res.params.copy()
    x1 = x0 + 0.02

    def task(m):
        m.value_and_grad(x0)  # the first point: its scale comes with it
        m.value_and_grad(x1)
        return m.gauss_newton_diagonal()

    got = lock.run([partial(task, m) for m in members])
    for r in range(3):
        obj = Objective(replace(d, y=Y[r]), 1)
        obj.value_and_grad(x0)
        obj.value_and_grad(x1)
        np.testing.assert_allclose(got[r], obj.gauss_newton_diagonal(), rtol=1e-7)
    assert engine.n_batches == 3  # x0, x1 and the scale at x1: no single mode search


@pytest.fixture(scope="module")
def spec():
    return GLMMSpec(
        BinomialGLMM(random_effects="1"),
        {"(Intercept)": -0.5, "time": -0.2, "treatment": np.log(0.6)},
        random_cov=1.0,
    )


@pytest.mark.parametrize("method", ["wald", "lrt"])
def test_power_with_batched_refits_equals_one_by_one(spec, method, monkeypatch):
    # n_groups 8: small studies, where some refits end singular
    kw = dict(n_groups=[8, 40], n_per_group=3, n_sim=12, method=method, random_state=3)
    calls = []
    real = _power_sim.fit_many
    monkeypatch.setattr(_power_sim, "fit_many", lambda *a, **k: calls.append(1) or real(*a, **k))
    batched = power_curve(spec, "treatment", **kw)
    assert calls  # the default design draws the same rows for every study of a size
    monkeypatch.setattr(_power_sim, "_batchable", lambda est: False)
    one = power_curve(spec, "treatment", **kw)
    exact = ["power", "n_rejected", "n_tested", "n_failed", "n_nonconverged", "n_singular"]
    pd.testing.assert_frame_equal(batched[exact], one[exact])
    assert batched["n_singular"].sum() > 0
    close = ["mean_estimate", "mean_std_error"]
    np.testing.assert_allclose(batched[close].to_numpy(), one[close].to_numpy(), rtol=1e-6)


def test_studies_on_drawn_rows_are_fitted_one_by_one(spec, monkeypatch):
    # a design that draws its rows gives every study other rows: no batch
    def drawn(n_groups, n_per_group, rng):
        X, ids = longitudinal_design(n_groups, n_per_group, rng)
        return X.assign(treatment=rng.permutation(X["treatment"].to_numpy())), ids

    calls = []
    monkeypatch.setattr(_power_sim, "fit_many", lambda *a: calls.append(1))
    pc = power_curve(
        spec, "treatment", n_groups=20, n_per_group=3, n_sim=6, design=drawn, random_state=0
    )
    assert not calls and pc["n_tested"].iloc[0] == 6


@pytest.mark.parametrize("method", ["wald", "lrt"])
def test_large_studies_are_fitted_one_by_one(spec, method, monkeypatch):
    # above _BATCH_MAX_ROWS the per-row arithmetic outweighs what a batch saves: the
    # studies are fitted one after another from the first's model (without the
    # estimator's validation, design and tables), with the estimator's outcomes
    calls = []
    real = _power_sim.fit_many
    monkeypatch.setattr(
        _power_sim, "fit_many", lambda *a, **k: calls.append(k["batched"]) or real(*a, **k)
    )
    n = _power_sim._BATCH_MAX_ROWS // 5 + 1
    kw = dict(n_groups=n, n_per_group=5, n_sim=12, method=method, random_state=0)
    pc = power_curve(spec, "treatment", **kw)
    assert calls and not any(calls) and pc["n_tested"].iloc[0] == 12
    monkeypatch.setattr(_power_sim, "_batchable", lambda est: False)  # the estimator's fits
    one = power_curve(spec, "treatment", **kw)
    pd.testing.assert_frame_equal(pc, one)


def test_studies_of_up_to_3000_rows_are_batched(spec, monkeypatch):
    # the batch of a size's studies pays up to 3,000 rows (performance notes: 0.71x the
    # time of one by one at 1,500 rows, with greenlets)
    calls = []
    real = _power_sim.fit_many
    monkeypatch.setattr(
        _power_sim, "fit_many", lambda *a, **k: calls.append(k["batched"]) or real(*a, **k)
    )
    pc = power_curve(spec, "treatment", n_groups=600, n_per_group=5, n_sim=12, random_state=0)
    assert calls and all(calls) and pc["n_tested"].iloc[0] == 12


def test_a_failed_fit_in_a_batch_is_counted_with_its_message(spec, monkeypatch):
    real = _power_sim.fit_many

    calls = []

    def one_fails(est, Y, **kw):
        out = real(est, Y, **kw)
        if not calls:  # the second study of the first batch
            out[0] = np.linalg.LinAlgError("no Cholesky factor")
        calls.append(1)
        return out

    monkeypatch.setattr(_power_sim, "fit_many", one_fails)
    with pytest.warns(UserWarning, match="1 of 40 simulated studies gave no test"):
        pc = power_curve(spec, "treatment", n_groups=30, n_per_group=3, n_sim=40, random_state=0)
    assert pc["n_failed"].iloc[0] == 1 and pc["n_tested"].iloc[0] == 39
    assert "LinAlgError: no Cholesky factor" in pc.attrs["failures"][0]


def test_separated_studies_count_alike_batched_and_one_by_one(monkeypatch):
    # tiny studies with rare events: many are separated; the estimator's fit keeps the
    # unaffected coefficients' standard errors (the limit model's), and so must a batch
    rare = GLMMSpec(
        BinomialGLMM(random_effects="1"),
        {"(Intercept)": -2.0, "time": -0.3, "treatment": np.log(0.6)},
        random_cov=0.5,
    )
    kw = dict(n_groups=[6], n_per_group=3, n_sim=40, random_state=5)
    batched = power_curve(rare, "treatment", **kw)
    monkeypatch.setattr(_power_sim, "_batchable", lambda est: False)
    one = power_curve(rare, "treatment", **kw)
    exact = ["power", "n_rejected", "n_tested", "n_failed", "n_nonconverged", "n_singular"]
    pd.testing.assert_frame_equal(batched[exact], one[exact])
    np.testing.assert_allclose(
        batched["mean_std_error"].to_numpy(), one["mean_std_error"].to_numpy(), rtol=1e-5
    )


def test_the_default_designs_rows_made_once_give_the_same_studies(spec):
    # longitudinal_design reads nothing from its generator: its rows are made once per
    # size and shared (read-only), and each study's outcome is the one a design called
    # afresh gives
    from sklearn_glmm._power_sim import draw_study

    def afresh(n_groups, n_per_group, rng):  # not the default design: called per study
        return longitudinal_design(n_groups, n_per_group, rng)

    for seed in (0, 1):
        a = draw_study(spec, longitudinal_design, 40, 5, seed)
        b = draw_study(spec, afresh, 40, 5, seed)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.groups, b.groups)
        assert a.columns.keys() == b.columns.keys()
        for c in a.columns:
            np.testing.assert_array_equal(a.columns[c], b.columns[c])
            assert not a.columns[c].flags.writeable
    kw = dict(n_groups=[30, 40], n_per_group=4, n_sim=6, random_state=3)
    pd.testing.assert_frame_equal(
        power_curve(spec, "treatment", **kw), power_curve(spec, "treatment", design=afresh, **kw)
    )
