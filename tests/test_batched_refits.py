"""Batched bootstrap refits: each replicate reaches the optimum of its own refit.

Refits in lock-step (``sklearn_glmm._engine.batched``) batch the evaluations of many
outcome vectors on one design; every replicate keeps the single fit's optimiser. The
batched value, gradient and modes equal the single objective's, the estimates equal
one-by-one refits, and failed or unconverged refits are reported as such.
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from test_lockstep import needs_greenlets

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM, config_context
from sklearn_glmm._engine.batched import BatchedLaplace, can_batch
from sklearn_glmm._engine.objective import Objective
from sklearn_glmm._engine.start import glm_start
from sklearn_glmm._simulate import bootstrap_params, refit, refit_many, simulate_response


def _data(kind, seed=0, n_groups=30, n_per=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.standard_normal(len(g))
    b0 = rng.normal(0, 0.6, n_groups)[g]
    b1 = rng.normal(0, 0.3, n_groups)[g]
    eta = 0.3 + 0.5 * x + b0
    if kind in ("pois_slope", "pois_slope_shuffled"):
        y = rng.poisson(np.exp(eta + b1 * x))
        est = PoissonGLMM(random_effects="1 + x")
        if kind == "pois_slope_shuffled":  # a level's rows not together
            order = rng.permutation(len(g))
            return est.fit(pd.DataFrame({"x": x[order]}), y[order], groups=g[order])
    elif kind == "bin_ri":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
        est = BinomialGLMM(random_effects="1")
    elif kind == "binom_trials_weights":
        trials = rng.integers(1, 8, len(g))
        y = rng.binomial(trials, 1 / (1 + np.exp(-eta)))
        w = rng.choice([1.0, 2.0], len(g))
        est = BinomialGLMM(random_effects="1 + x")
        X = pd.DataFrame({"x": x})
        return est.fit(X, y, groups=g, trials=trials, sample_weight=w)
    elif kind == "nb_slope":
        mu = np.exp(eta + b1 * x)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
        est = NegBinGLMM(random_effects="1 + x")
    else:
        mu = np.exp(eta)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
        est = NegBinGLMM(random_effects="1")
    X = pd.DataFrame({"x": x})
    return est.fit(X, y, groups=g)


@pytest.fixture(
    scope="module",
    params=[
        "pois_slope",
        "pois_slope_shuffled",
        "bin_ri",
        "binom_trials_weights",
        "nb_ri",
        "nb_slope",
    ],
)
def fitted(request):
    return request.param, _data(request.param)


@pytest.mark.parametrize("kind", ["pois_slope", "nb_slope"])
def test_batched_evaluation_equals_the_single_objective(kind):
    est = _data(kind)
    res = est.fit_result_
    d = res.objective.data
    assert can_batch(d, 1)
    Y = simulate_response(est, 4, np.random.default_rng(1)).T
    rng = np.random.default_rng(2)
    P = res.params + 0.05 * rng.standard_normal((4, len(res.params)))
    k_diag = [d.n_beta, d.n_beta + 2]
    P[:, k_diag] = np.abs(P[:, k_diag])
    if d.n_extra:  # NB2's log theta: one replicate on its bound (the Poisson limit)
        P[2, -1] = res.bounds[-1][1]
    engine = BatchedLaplace(d, Y)
    ok, val, grad, U, J = engine.evaluate([0, 1, 2, 3], P, np.zeros((4, d.n_u)))
    assert ok.all()
    for r in range(4):
        obj = Objective(replace(d, y=Y[r]), 1)
        v, g = obj.value_and_grad(P[r])
        assert val[r] == pytest.approx(v, rel=1e-12)
        np.testing.assert_allclose(grad[r], g, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(U[r], obj.u, atol=1e-10)
        np.testing.assert_allclose(J[r], obj._predictor[2], atol=1e-10)
    # a replicate's numbers do not depend on the others in its batch
    ok2, val2, grad2, U2, _ = engine.evaluate([3, 1], P[[3, 1]], np.zeros((2, d.n_u)))
    np.testing.assert_array_equal(val2, val[[3, 1]])
    np.testing.assert_array_equal(grad2, grad[[3, 1]])


@pytest.mark.parametrize("compiled_on", [False, True])
def test_an_adopted_evaluation_reads_its_own_factorisation(compiled_on):
    # a batched evaluation is adopted with its modes only: the state made from them
    # when read (the Hessian, the conditional variances, the gradient of a snapshot)
    # must come with that point's factorisation of H, not the one the objective last
    # made at another point (the Hessian read it: a saddle reported at a maximum)
    from sklearn_glmm._engine.compiled_objective import CompiledObjective, _engine

    if compiled_on:
        pytest.importorskip("numba")
    est = _data("pois_slope")
    d, x = est.fit_result_.objective.data, np.asarray(est.fit_result_.params)
    fresh = Objective(d, 1)
    fresh.value_and_grad(x)
    H, cv = fresh.exact_hessian_block(), fresh.conditional_variances(0)
    with config_context(compiled=compiled_on):
        obj = CompiledObjective(d, _engine(d))
        Objective.evaluate(obj, x * 1.3)  # the numpy code's factorisation, elsewhere
        obj.value_and_grad(x)  # adopted
        assert obj.n_batched == 1
        snap = obj.snapshot()
        Objective.evaluate(obj, x * 0.7)
        obj.restore(snap)
        np.testing.assert_allclose(obj.exact_hessian_block(), H, rtol=1e-7)
        obj.value_and_grad(x * 1.01)
        obj.value_and_grad(x)  # adopted again (the memo holds the last point only)
        np.testing.assert_allclose(obj.conditional_variances(0), cv, rtol=1e-8)
        # the per-row arrays let go (a fitted model's objective): the point stays pending
        Objective.evaluate(obj, x * 1.3)
        obj.value_and_grad(x)
        obj.release_state()
        np.testing.assert_allclose(obj.conditional_variances(0), cv, rtol=1e-8)


def test_batched_refits_reach_the_single_refits_optimum(fitted):
    kind, est = fitted
    Y = simulate_response(est, 12, np.random.default_rng(3))
    many = refit_many(est, Y)
    one = [refit(est, Y[:, r]) for r in range(Y.shape[1])]
    batched = can_batch(est.fit_result_.objective.data, est.n_agq)
    assert batched
    for (x_b, rec_b), (x_s, rec_s) in zip(many, one):
        assert rec_b.converged == rec_s.converged
        np.testing.assert_allclose(x_b, x_s, rtol=1e-6, atol=1e-7)
        assert rec_b.objective == pytest.approx(rec_s.objective, rel=1e-10)


def test_refit_records_the_gradient_check(fitted):
    _, est = fitted
    y = simulate_response(est, 1, np.random.default_rng(4))[:, 0]
    x, rec = refit(est, y)
    assert rec.converged and rec.gradient_ok
    assert np.isfinite(rec.max_scaled_grad) and rec.max_scaled_grad <= 0.002


def test_unconverged_refits_are_nan_rows(monkeypatch):
    est = _data("pois_slope")
    import sklearn_glmm._simulate as sim

    real = sim._fit_and_check
    calls = {"n": 0}

    def every_third_fails(est_, obj, setup):
        x, rec = real(est_, obj, setup)
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            rec.converged = False
        return x, rec

    monkeypatch.setattr(sim, "_fit_and_check", every_third_fails)
    reps, ok = bootstrap_params(est, 9, random_state=0)
    assert ok.sum() == 6
    assert np.all(np.isnan(reps[~ok]))
    assert np.all(np.isfinite(reps[ok]))


@pytest.mark.parametrize("kind", ["bin_ri", "pois_slope"])
def test_bootstrap_does_not_depend_on_n_jobs_or_batching(monkeypatch, kind):
    est = _data(kind)
    a, ok_a = bootstrap_params(est, 10, random_state=5)
    b, ok_b = bootstrap_params(est, 10, random_state=5, n_jobs=2)
    np.testing.assert_array_equal(ok_a, ok_b)
    np.testing.assert_array_equal(a, b)
    import sklearn_glmm._simulate as sim

    # nor on which replicates share a batch: a replicate's arithmetic is its own
    monkeypatch.setattr(sim, "_BOOT_CHUNK_SMALL", 2)  # five chunks, not four
    d, ok_d = bootstrap_params(est, 10, random_state=5)
    np.testing.assert_array_equal(ok_a, ok_d)
    np.testing.assert_array_equal(a, d)
    monkeypatch.undo()

    real = sim.refit_many
    monkeypatch.setattr(sim, "refit_many", lambda e, Y: real(e, Y, batched=False))
    c, ok_c = bootstrap_params(est, 10, random_state=5)
    np.testing.assert_array_equal(ok_a, ok_c)
    np.testing.assert_allclose(a[ok_a], c[ok_c], rtol=1e-6, atol=1e-7)


def test_failed_batched_evaluations_fall_back_to_the_single_objective(monkeypatch):
    est = _data("pois_slope")
    Y = simulate_response(est, 6, np.random.default_rng(6))
    one = [refit(est, Y[:, r]) for r in range(Y.shape[1])]
    real = BatchedLaplace.evaluate
    calls = {"n": 0}

    def odd_ones_fail(self, idx, params, U0, with_scale=False):
        out = list(real(self, idx, params, U0, with_scale))
        calls["n"] += 1
        out[0] = out[0] & (np.asarray(idx) % 2 == 0)  # not found: the single objective's
        return tuple(out)

    monkeypatch.setattr(BatchedLaplace, "evaluate", odd_ones_fail)
    many = refit_many(est, Y)
    assert calls["n"] > 0
    for (x_b, rec_b), (x_s, rec_s) in zip(many, one):
        assert rec_b.converged == rec_s.converged
        np.testing.assert_allclose(x_b, x_s, rtol=1e-6, atol=1e-7)


def test_an_error_in_one_refit_is_reported_not_swallowed(monkeypatch):
    est = _data("pois_slope")
    import sklearn_glmm._simulate as sim

    real = sim._fit_and_check

    def breaks_on_second(est_, obj, setup):
        if getattr(obj, "_index", None) == 1:
            raise RuntimeError("a bug")
        return real(est_, obj, setup)

    monkeypatch.setattr(sim, "_fit_and_check", breaks_on_second)
    Y = simulate_response(est, 3, np.random.default_rng(7))
    out = refit_many(est, Y)
    assert isinstance(out[1], RuntimeError)
    assert all(isinstance(o, tuple) for o in (out[0], out[2]))
    with pytest.raises(RuntimeError, match="a bug"):
        bootstrap_params(est, 8, random_state=0)  # chunks of two: batched


def test_gradient_sizes_scale_by_the_fitted_hessian():
    from sklearn_glmm._engine.curvature import scaled_gradient
    from sklearn_glmm._simulate import _gradient_sizes

    rng = np.random.default_rng(8)
    M = rng.standard_normal((4, 4))
    H = M @ M.T + 4 * np.eye(4)
    g = rng.standard_normal(4)
    x = np.array([0.3, -0.2, 0.5, 1.0])
    bounds = [(None, None)] * 2 + [(0.0, None)] * 2
    assert _gradient_sizes(g, H, x, bounds) == pytest.approx(scaled_gradient(g, H, x, bounds))
    # a parameter on its bound, pushed outwards: left out
    x0 = x.copy()
    x0[2] = 0.0
    g0 = g.copy()
    g0[2] = abs(g0[2]) + 10.0
    raw, _ = _gradient_sizes(g0, H, x0, bounds)
    assert raw == pytest.approx(np.max(np.abs(g0[[0, 1, 3]])))
    # not positive definite, or not finite: each component scaled by its diagonal
    Hbad = H.copy()
    Hbad[0, 1] = Hbad[1, 0] = 100.0
    expect = np.max(np.minimum(np.abs(g) / np.sqrt(np.diag(H)), np.abs(g)))
    assert _gradient_sizes(g, Hbad, x, bounds)[1] == pytest.approx(expect)
    Hnan = H.copy()
    Hnan[0, 1] = Hnan[1, 0] = np.nan
    assert _gradient_sizes(g, Hnan, x, bounds)[1] == pytest.approx(expect)
    assert _gradient_sizes(g, None, x, bounds) == (np.max(np.abs(g)), np.max(np.abs(g)))
    assert _gradient_sizes(np.r_[g[:3], np.nan], H, x, bounds) == (np.inf, np.inf)


def test_a_refit_stopped_away_from_its_optimum_is_not_converged(monkeypatch):
    import sklearn_glmm._simulate as sim

    est = _data("pois_slope")

    def stops_early(real):
        def run(obj, *args):
            x, rec = real(obj, *args)
            x = x.copy()
            x[0] += 0.05  # the intercept moved off the optimum, the record still "converged"
            rec.objective = obj.evaluate(x)
            return x, rec

        return run

    y = simulate_response(est, 1, np.random.default_rng(9))[:, 0]
    x_true, rec_true = refit(est, y)
    # (a refit from the fitted point runs on whitened coordinates, else the ordinary way)
    monkeypatch.setattr(sim, "fit_objective", stops_early(sim.fit_objective))
    monkeypatch.setattr(sim, "whitened_refit", stops_early(sim.whitened_refit))
    # the check catches it, and the refit is resumed (rescaled) to the optimum
    x, rec = refit(est, y)
    assert rec.stages[-1][0] == "rescaled restart" and rec.converged
    np.testing.assert_allclose(x, x_true, atol=1e-3)
    # when the resumed run cannot move either, the refit fails the check and is fitted
    # afresh as the estimator fits (whose checks at the optimum polish the intercept)
    monkeypatch.setattr(
        sim,
        "_laplace_stage",
        lambda obj, x, *a, **k: type("R", (), dict(fun=np.inf, x=x, nit=0, message=""))(),
    )
    x, rec = refit(est, y)
    assert rec.stages[0][0] == "refit not converged" and rec.converged
    np.testing.assert_allclose(x, x_true, atol=1e-3)
    # and where that fit does not converge either, the refit is not converged
    fresh_fit = sim._fresh_fit

    def not_converged(*args):
        x, record = fresh_fit(*args)
        record.converged = False
        return x, record

    monkeypatch.setattr(sim, "_fresh_fit", not_converged)
    x, rec = refit(est, y)
    assert not rec.converged and not rec.gradient_ok
    assert rec.max_scaled_grad > 0.002

    # nor where it converges above the refit's end (an optimum lower than it exists)
    def higher(*args):
        x, record = fresh_fit(*args)
        record.objective += 1.0
        return x, record

    monkeypatch.setattr(sim, "_fresh_fit", higher)
    x, rec = refit(est, y)
    assert not rec.converged and not rec.gradient_ok
    reps, ok = bootstrap_params(est, 4, random_state=0)
    assert not ok.any() and np.all(np.isnan(reps))


def test_a_refit_short_of_the_optimum_is_resumed_rescaled():
    # NB fitted to Poisson data: theta on a flat ridge towards its bound. L-BFGS-B stops
    # on the relative change of the objective; one replicate ended with a scaled gradient
    # above the check's tolerance and was dropped from the bootstrap. It is now resumed
    # with every parameter scaled by its curvature (as a fit's checks do) and converges
    # at the full fit's log-likelihood.
    import warnings

    from reference import case_data, make_estimator

    spec, X, y, groups, kw = case_data("nb_on_poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make_estimator(spec).fit(X, y, groups=groups, **kw)
    y35 = simulate_response(est, 1, np.random.default_rng(35))[:, 0]
    x, record = refit(est, y35)
    assert [s[0] for s in record.stages][-1] == "rescaled restart"
    assert record.converged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = make_estimator(spec).fit(X, y35, groups=groups, **kw)
    assert -0.5 * record.objective == pytest.approx(full.loglik_, abs=1e-6)


def _binary_slopes(seed):
    """Ten groups of 20 binary outcomes with a random intercept and slope of ``x`` (SDs
    0.8 and 0.5), fitted by ``(1 + x | g)``."""
    import warnings

    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(10), 20)
    x = rng.standard_normal(len(g))
    b0, b1 = rng.normal(0, 0.8, 10)[g], rng.normal(0, 0.5, 10)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.2 + 0.5 * x + b0 + b1 * x))))
    X = pd.DataFrame({"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return X, g, BinomialGLMM(random_effects="1 + x").fit(X, y, groups=g)


@pytest.mark.parametrize(
    "seed, failed, replicate, fresh_converged",
    [
        # a singular fit: replicate 5's refit stops with both Cholesky diagonals near 0.01
        # (a correlation near -1), 0.44 in -2 log L above the optimum a fresh fit of its
        # outcome reaches (53's: 0.074 above): both are fitted afresh and kept
        (77, [], 5, True),
        # replicate 10's refit ends 4e-6 below a fresh fit of its outcome, whose own
        # checks find negative curvature there too (the intercept's SD at zero): failed
        (78, [10], 10, False),
    ],
)
def test_a_refit_at_a_saddle_is_fitted_afresh(seed, failed, replicate, fresh_converged):
    # a refit's gradient was checked (with the fitted model's Hessian) but not its
    # curvature: these replicates, at saddles, were kept as converged. Each refit now
    # gets a fit's curvature check with its own Hessian; one that fails it is fitted
    # afresh as the estimator fits, and kept where that fit converges
    import warnings

    from sklearn_glmm._simulate import _fresh_fit, _objective, child_seeds

    X, g, est = _binary_slopes(seed)
    reps, ok = bootstrap_params(est, 60, random_state=seed)
    assert np.flatnonzero(~ok).tolist() == failed
    assert np.all(np.isnan(reps[~ok])) and np.all(np.isfinite(reps[ok]))

    rng = np.random.default_rng(child_seeds(seed, 60)[replicate])
    y = simulate_response(est, 1, rng)[:, 0]
    x, record = refit(est, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = BinomialGLMM(random_effects="1 + x").fit(X, y, groups=g)
    assert fresh.converged_ is fresh_converged
    assert fresh.fit_record_.negative_curvature is not fresh_converged
    if fresh_converged:  # the saddle is not the optimum: the fresh fit's is kept
        assert record.converged and record.stages[0][0] == "refit not converged"
        assert record.stages[0][1] > fresh.fit_record_.objective + 0.1
        assert record.objective == pytest.approx(fresh.fit_record_.objective, abs=1e-6)
        assert not record.negative_curvature
    else:  # the same point, judged alike: a failed refit
        assert record.gradient_ok and record.negative_curvature and not record.converged
        assert record.objective == pytest.approx(fresh.fit_record_.objective, abs=1e-4)
    # the fresh fit is the estimator's own (the same start, optimiser and checks)
    x_fresh, rec_fresh = _fresh_fit(est, _objective(est, y), est.fit_result_.bounds)
    assert rec_fresh.converged is fresh_converged
    assert rec_fresh.objective == pytest.approx(fresh.fit_record_.objective, abs=1e-6)


def test_batched_conditional_modes_equal_the_single_objective(fitted):
    # the dispersion test's searches at the fitted parameters: batched where the
    # family allows (NB has a parameter of its own: one by one), the same linear
    # predictors as one search at a time
    from sklearn_glmm._simulate import conditional_eta, conditional_etas

    _kind, est = fitted
    Y = simulate_response(est, 12, np.random.default_rng(3))
    batched = conditional_etas(est, Y)
    single = np.column_stack([conditional_eta(est, Y[:, k]) for k in range(12)])
    np.testing.assert_allclose(batched, single, rtol=1e-12, atol=1e-12)


def test_separated_bootstrap_replicates_count_as_infinite():
    # a replicate whose outcomes are 1 at every x = 1 has no finite slope: it was kept
    # at wherever its optimiser stopped (a finite upper limit of 181 for a slope of
    # 3.5 on other data) without a word; now +inf, with a warning, and its other
    # parameters are left out of their intervals
    import warnings

    from scipy.special import expit

    rng = np.random.default_rng(6)
    G = 20
    g = np.repeat(np.arange(G), 3)
    x = np.tile([0.0, 1.0, 1.0], G)
    y = rng.binomial(1, expit(-0.5 + 3.0 * x + rng.normal(0, 0.3, G)[g]))
    assert ((x == 1) & (y == 0)).any()  # the data themselves are not separated
    X = pd.DataFrame({"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = BinomialGLMM().fit(X, y, groups=g)
    with pytest.warns(UserWarning, match=r"replicates are separated: \['x'\]"):
        ci = est.confint(method="bootstrap", n_boot=60, random_state=0)
    reps = ci.attrs["replicates"]
    sep = np.isinf(reps["x"]).to_numpy()
    assert sep.any() and (reps["x"][sep] > 0).all()
    assert reps.loc[sep, "(Intercept)"].isna().all()  # left still: not a bound
    assert ci.loc["x", "upper"] == np.inf and np.isfinite(ci.loc["x", "lower"])
    assert np.isfinite(ci.loc["(Intercept)", ["lower", "upper"]]).all()


@pytest.mark.parametrize("scheduler", ["threads", pytest.param("greenlets", marks=needs_greenlets)])
def test_points_in_one_request_equal_one_evaluation_after_another(scheduler):
    # a zero variance's probe hands its points to the batch together: each point's value
    # is the one an evaluation from the same snapshot gives, and the state is left there
    from sklearn_glmm._engine.batch_member import BatchMember
    from sklearn_glmm._engine.lockstep import GreenletLockstep, Lockstep

    if scheduler == "greenlets":
        Lockstep = GreenletLockstep  # noqa: N806 - the scheduler under test

    est = _data("pois_slope")
    res = est.fit_result_
    d = res.objective.data
    Y = simulate_response(est, 3, np.random.default_rng(8))
    k = d.n_beta + 2  # the slope's Cholesky diagonal
    points = []
    for t in (0.001, 0.03, 1.0):
        x = res.params.copy()
        x[k] = t
        points.append(x)

    def run(together):
        lockstep = Lockstep(BatchedLaplace(d, Y.T))
        members = [BatchMember(replace(d, y=Y[:, r]), lockstep, r) for r in range(3)]

        def task(m):
            m.value_and_grad(res.params)
            at = m.snapshot()
            if together:
                values = m.evaluate_points(points, at)
            else:
                values = []
                for x in points:
                    m.restore(at)
                    values.append(m.evaluate(x))
                m.restore(at)
            return values, m.evaluate(res.params), m.n_evals

        passes = []
        real = lockstep._compute
        lockstep._compute = lambda batch: passes.append(len(batch)) or real(batch)
        return lockstep.run([lambda m=m: task(m) for m in members]), len(passes)

    (together, n_together), (apart, n_apart) = run(True), run(False)
    assert together == apart  # the same values, bit for bit, and the same evaluations
    assert n_together == 2 < n_apart == 4


def test_small_data_bootstraps_refit_twice_as_many_replicates_per_batch(monkeypatch):
    import sklearn_glmm._simulate as sim

    est = _data("bin_ri")  # 360 rows
    sizes = []
    real = sim.refit_many
    monkeypatch.setattr(sim, "refit_many", lambda e, Y: sizes.append(Y.shape[1]) or real(e, Y))
    monkeypatch.setattr(sim, "_BOOT_CHUNK_SMALL", 4)  # (64 and 32: as few replicates)
    monkeypatch.setattr(sim, "_BOOT_CHUNK", 2)
    bootstrap_params(est, 16, random_state=0)
    assert sizes == [4] * 4  # small data: the small-data batch
    sizes.clear()
    monkeypatch.setattr(sim, "_SMALL_ROWS", 100)  # large data: the other
    bootstrap_params(est, 16, random_state=0)
    assert sizes == [2] * 8


@pytest.mark.parametrize("compiled_kernel", [False, True])
def test_batched_gradient_does_not_depend_on_how_near_its_mode_search_starts(compiled_kernel):
    """The batched mode search (and its compiled kernel) takes the Newton step it has
    computed before it stops within the log-density's rounding of the modes, as the
    single objective's does: with 1e7 trials per row a replicate started within 3e-12
    of its modes stopped at once and its gradient was off by far more than its noise."""
    if compiled_kernel:
        pytest.importorskip("numba")
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 8)
    x = rng.normal(size=len(g))
    trials = np.full(len(g), 10**7)
    eta = -1.0 + 0.3 * x + rng.normal(0, 1.0, 12)[g]
    y = rng.binomial(trials, 1 / (1 + np.exp(-eta)))
    est = BinomialGLMM().fit(pd.DataFrame({"x": x}), y, groups=g, trials=trials)
    d = est.fit_result_.objective.data
    point = np.asarray(est.fit_record_.final, dtype=float)
    point[-1] *= 1.001  # not the optimum: a gradient of some size
    offsets = (0.0, 1e-10, 1e-11, 3e-12, 1e-12, 1e-13)
    R = len(offsets)
    engine = BatchedLaplace(d, np.tile(y, (R, 1)).astype(float))
    P = np.tile(point, (R, 1))
    with config_context(compiled=compiled_kernel):
        ok, _, grad, U, _ = engine.evaluate(np.arange(R), P, np.zeros((R, d.n_u)))
        assert ok.all()
        U0 = U[0] + np.array(offsets)[:, None] * rng.standard_normal((R, d.n_u))
        ok, _, grad_near, _, _ = engine.evaluate(np.arange(R), P, U0)
    assert ok.all()
    assert np.abs(grad[0]).max() > 1e-2  # a gradient of some size
    for r, offset in enumerate(offsets):
        np.testing.assert_allclose(
            grad_near[r], grad[0], rtol=0, atol=2e-6, err_msg=f"start {offset:g} off"
        )


def _as_single_objectives(d, Y, P, val, grad):
    """Each replicate's batched value and gradient are its single objective's."""
    for r in range(len(Y)):
        v, g1 = Objective(replace(d, y=Y[r]), 1).value_and_grad(P[r])
        assert val[r] == pytest.approx(v, rel=1e-12)
        np.testing.assert_allclose(grad[r], g1, rtol=1e-7, atol=1e-6)


def test_replicates_with_and_without_counts_above_1000_batch_together():
    # the family's terms of large counts take another form (mu - y without rounding):
    # a batch of replicates on either side of 1,000 evaluates each form's replicates
    # together, each in its own form, as the single objective does (their
    # concatenation failed, and every replicate fell back to the single objective);
    # a replicate's numbers do not depend on the others in its batch
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 5)
    x = rng.standard_normal(len(g))
    mu = np.exp(6.4 + 0.05 * x + rng.normal(0, 0.3, 20)[g])
    y = rng.negative_binomial(50.0, 50.0 / (50.0 + mu))
    est = NegBinGLMM().fit(pd.DataFrame({"x": x}), y, groups=g)
    d = est.fit_result_.objective.data
    Y = simulate_response(est, 6, np.random.default_rng(1)).T
    Y[1:4] = np.minimum(Y[1:4], 1000.0)
    Y[0, 0] = Y[4, 1] = 1500.0
    big = Y.max(axis=1) > 1000
    assert big[0] and not big.all()
    P = np.tile(est.fit_result_.params, (6, 1))
    engine = BatchedLaplace(d, Y)
    ok, val, grad, U, _ = engine.evaluate(np.arange(6), P, np.zeros((6, d.n_u)))
    assert ok.all()
    _as_single_objectives(d, Y, P, val, grad)
    small = int(np.flatnonzero(~big)[0])
    for idx in ([small], [small, 0], [0, small]):
        _, val2, grad2, _, _ = engine.evaluate(idx, P[idx], np.zeros((len(idx), d.n_u)))
        np.testing.assert_array_equal(val2, val[idx])
        np.testing.assert_array_equal(grad2, grad[idx])
        # and in a batch of those replicates only
        alone = BatchedLaplace(d, Y[idx]).evaluate(
            np.arange(len(idx)), P[idx], np.zeros((len(idx), d.n_u))
        )
        np.testing.assert_array_equal(alone[1], val[idx])
        np.testing.assert_array_equal(alone[2], grad[idx])
    beta, F = engine.glm_starts()
    for r in range(6):
        b1, f1 = glm_start(Objective(replace(d, y=Y[r]), 1), d.default_extra(), with_value=True)
        np.testing.assert_allclose(beta[r], b1, rtol=1e-9, atol=1e-9)
        assert F[r] == pytest.approx(f1, rel=1e-12)


def _crossed_trials_replicate():
    """Crossed ``(1 | a) + (1 | b)`` (binomial with trials, both SDs near zero at the
    fit): the fits of ``(1 | a)`` and of both factors, and a replicate simulated from
    the first whose optimum has the SD of ``a`` at 0.126 (its design, outcome, trials)."""
    import warnings

    from scipy.special import expit

    from sklearn_glmm._simulate import child_seeds

    rng = np.random.default_rng(4)
    a, b = np.repeat(np.arange(6), 16), np.tile(np.repeat(np.arange(4), 4), 6)
    x = rng.normal(size=len(a))
    eta = 0.3 + 0.5 * x + 0.8 * rng.normal(size=6)[a] + 0.05 * rng.normal(size=4)[b]
    trials = rng.integers(1, 7, size=len(a))
    y = rng.binomial(trials, expit(eta))
    X, groups = pd.DataFrame({"x": x}), pd.DataFrame({"a": a.astype(str), "b": b.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (singular fits)
        small = BinomialGLMM().fit(X, y, groups=groups["a"], trials=trials)
        large = BinomialGLMM().fit(X, y, groups=groups, trials=trials)
    rng_rep = np.random.default_rng(child_seeds(3, 60)[24])
    y_rep = simulate_response(small, 1, rng_rep)[:, 0]
    return small, large, (X, y_rep, groups, trials)


def test_a_refit_probes_a_zero_variance_again_after_another_has_moved():
    # crossed factors, both SDs near zero at the fit (binomial with trials): a refit's
    # first run put both at zero; the first SD's probe found nothing there (the
    # variation is the second factor's), the second's moved the fit, and the first
    # stayed at zero, where the objective is even in it (a zero gradient), 0.108 above
    # its outcome's optimum (that SD 0.126), kept as converged: the replicate's
    # likelihood ratio of (1 | a) + (1 | b) against (1 | a) came out 4.15, not 4.26.
    # A zero variance is now probed again at the point another's probe moved to
    import warnings

    from sklearn_glmm._param_map import ParamMap

    _, large, (X, y_rep, groups, trials) = _crossed_trials_replicate()
    x_rep, record = refit(large, y_rep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = BinomialGLMM().fit(X, y_rep, groups=groups, trials=trials)
    assert record.converged and fresh.converged_
    assert record.objective == pytest.approx(fresh.fit_record_.objective, abs=1e-6)
    sd = ParamMap(large).names.index("sd_(Intercept)|a")
    assert ParamMap(large).to_phi(x_rep)[sd] == pytest.approx(0.126, abs=2e-3)


def test_the_check_at_the_end_sees_a_gentle_fall_off_zero():
    # the point the refit above stopped at before the probes were repeated: the SD of
    # a at zero, the rest at their optimum given it, 0.108 in -2 log L above the
    # optimum. The Hessian's curvature in that SD there is -30.9: one difference step
    # (1e-4) above zero lowers the objective by 1.5e-7, under the check's tolerance,
    # and the check read the point as no zero the likelihood rises from. The check's
    # steps now start where the curvature predicts a fall of ten tolerances
    from sklearn_glmm._engine.converge import rising_off_zero
    from sklearn_glmm._engine.hessian import hessian
    from sklearn_glmm._engine.polish import RISE_TOL
    from sklearn_glmm._engine.stage import _laplace_stage
    from sklearn_glmm._param_map import ParamMap
    from sklearn_glmm._simulate import _objective

    _, large, (_, y_rep, _, _) = _crossed_trials_replicate()
    obj = _objective(large, y_rep)
    bounds = list(large.fit_result_.bounds)
    k = ParamMap(large).names.index("sd_(Intercept)|a")
    held = list(bounds)
    held[k] = (0.0, 0.0)
    x0 = large.fit_result_.params.copy()
    x0[k] = 0.0
    diag_idx = [j for j, b in enumerate(bounds) if b[0] == 0.0]
    stuck = _laplace_stage(obj, x0, held, 500, 1e-12, [j for j in diag_idx if j != k])
    H = hessian(obj, stuck.x)
    assert stuck.x[k] == 0.0 and -100.0 < H[k, k] < 0.0
    up = stuck.x.copy()
    up[k] = 1e-4
    assert stuck.fun - RISE_TOL < obj.evaluate(up) < stuck.fun  # (what one step saw)
    assert rising_off_zero(obj, stuck.x, stuck.fun, H, diag_idx) == (k,)
