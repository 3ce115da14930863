"""The compiled kernels (``set_config(compiled=True)``, numba) give the numpy code's fits
of Poisson, binomial and NB2 models (the scalar mode search and gradient; the whole
Laplace evaluation of one or two random effects per level): the same estimates, standard
errors, log-likelihoods, evaluations, checks and warnings, to rounding."""

import importlib.util
import warnings

import numpy as np
import pandas as pd
import pytest
from reference import COMPILED_CASES, case_data, make_estimator

import sklearn_glmm
from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM, config_context
from sklearn_glmm._engine import compiled
from sklearn_glmm._engine.compiled_objective import CompiledObjective
from sklearn_glmm._engine.linalg import InnerSolveFailure

pytest.importorskip("numba")


@pytest.fixture
def count_kernel(monkeypatch):
    """The kernels' calls (a list of their names, appended to per call)."""
    calls = []
    for name in ("scalar_modes", "scalar_gradient_rows", "batched_laplace"):
        inner = getattr(compiled, name)

        def counted(*args, inner=inner, name=name):
            calls.append(name)
            return inner(*args)

        monkeypatch.setattr(compiled, name, counted)
    return calls


def _fit(make, X, y, groups, compiled_on, **kw):
    with config_context(compiled=compiled_on), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        est = make().fit(X, y, groups=groups, **kw)
    return est, sorted({(x.category.__name__, str(x.message)) for x in w})


def _same_fit(a, b, warn_a, warn_b, rtol=1e-9, ranef_atol=1e-10):
    np.testing.assert_allclose(b.fit_result_.params, a.fit_result_.params, rtol=rtol, atol=1e-12)
    assert abs(b.loglik_ - a.loglik_) < 1e-9
    np.testing.assert_allclose(
        b.fixed_effects_["std_error"], a.fixed_effects_["std_error"], rtol=1e-7
    )
    for name, cov in a.random_effects_cov_.items():
        # a variance is the square of a parameter compared to rtol: twice its difference
        cov_rtol = max(1e-8, 2.0 * rtol)
        np.testing.assert_allclose(b.random_effects_cov_[name], cov, rtol=cov_rtol, atol=1e-14)
        np.testing.assert_allclose(
            b.ranef_[name].to_numpy(), a.ranef_[name].to_numpy(), rtol=1e-7, atol=ranef_atol
        )
    assert b.fit_record_.n_evaluations == a.fit_record_.n_evaluations
    assert b.converged_ == a.converged_
    # the Laplace approximation's check against quadrature ran on both (or neither)
    qa, qb = a.fit_record_.quadrature_shift, b.fit_record_.quadrature_shift
    assert (qa is None) == (qb is None)
    if qa is not None:
        np.testing.assert_allclose(qb, qa, rtol=1e-5, atol=1e-8)
    assert warn_b == warn_a


# tut_nb's log theta walks up a flat ridge to its bound (the Poisson limit), where
# L-BFGS-B's path magnifies rounding about 1e7-fold: the numpy code's own estimates move
# by 1.2e-8 relative when only its exp is replaced by the C library's (the kernels'). Its
# estimates (5.8e-9 apart between the two settings; 1.7e-8 in the variance with numpy
# 2.4) and modes (1.2e-9) are compared to 1e-7 and 1e-8, the variance to twice the
# estimates' tolerance; every other criterion as for the other cases.
_ROUNDING_MAGNIFIED = {"tut_nb": dict(rtol=1e-7, ranef_atol=1e-8)}


@pytest.mark.parametrize("case", COMPILED_CASES)
def test_reference_cases_as_numpy(case, count_kernel):
    spec, X, y, groups, kw = case_data(case)
    a, wa = _fit(lambda: make_estimator(spec), X, y, groups, False, **kw)
    assert not count_kernel
    b, wb = _fit(lambda: make_estimator(spec), X, y, groups, True, **kw)
    # the kernels ran: a Laplace fit of a Poisson or binomial model, or of an NB2 model
    # with two random effects per level, is evaluated by the batched kernel (a batch of
    # one), the others' mode search and gradient by the scalar kernels (quadrature fits
    # start with a Laplace stage)
    whole = isinstance(b.fit_result_.objective, CompiledObjective)
    factors = b.fit_result_.objective.data.factors
    nb_scalar = spec["family"] == "nbinom2" and factors[0].q == 1
    assert whole == (int(spec.get("n_agq") or 1) == 1 and not nb_scalar)
    if whole and spec["random_effects"] == "1":
        assert b.fit_record_.quadrature_shift is not None  # checked against quadrature
    kernels = {"batched_laplace"} if whole else {"scalar_modes", "scalar_gradient_rows"}
    assert kernels <= set(count_kernel)
    _same_fit(a, b, wa, wb, **_ROUNDING_MAGNIFIED.get(case, {}))


def _data(seed, n_groups=30, per=12, family="binomial"):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=len(g))
    b = rng.normal(0, 0.9, n_groups)[g]
    eta = -0.4 + 0.7 * x + b
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    elif family == "negbin":  # theta = 2
        y = rng.poisson(rng.gamma(2.0, np.exp(eta) / 2.0))
    else:
        y = rng.poisson(np.exp(eta))
    return pd.DataFrame(dict(x=x, g=g, y=y))


@pytest.mark.parametrize("seed", range(4))
def test_weights_offsets_trials_and_shuffled_rows(seed, count_kernel):
    # per-row weights, an offset, trials and rows whose groups are not contiguous (the
    # level sums then go by codes, not runs)
    rng = np.random.default_rng(100 + seed)
    df = _data(seed).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    wts = rng.uniform(0.5, 2.0, len(df))
    off = rng.normal(0, 0.2, len(df))
    for make, y, kw in [
        (BinomialGLMM, df["y"], dict(sample_weight=wts)),
        (PoissonGLMM, _data(seed, family="poisson")["y"], dict(offset=off, sample_weight=wts)),
        (BinomialGLMM, rng.binomial(8, 0.4, len(df)), dict(trials=np.full(len(df), 8))),
        (NegBinGLMM, _data(seed, family="negbin")["y"], dict(offset=off, sample_weight=wts)),
        (NegBinGLMM, _data(seed, family="negbin")["y"], dict(offset=off)),
    ]:
        a, wa = _fit(make, df[["x"]], y, df["g"], False, **kw)
        n = len(count_kernel)
        b, wb = _fit(make, df[["x"]], y, df["g"], True, **kw)
        assert len(count_kernel) > n
        _same_fit(a, b, wa, wb)


def test_slope_without_intercept_and_separated_groups(count_kernel):
    # a scalar random slope (one value of Z Lambda per row), and groups whose outcomes
    # are all 1 or all 0 (modes far from zero, step halving)
    df = _data(7, n_groups=25, per=8)
    df.loc[df["g"] < 3, "y"] = 1
    df.loc[df["g"].between(3, 5), "y"] = 0
    for re in ["1", "0 + x"]:
        fits = [
            _fit(lambda re=re: BinomialGLMM(random_effects=re), df[["x"]], df["y"], df["g"], on)
            for on in (False, True)
        ]
        _same_fit(fits[0][0], fits[1][0], fits[0][1], fits[1][1])
    assert count_kernel


def test_compiled_objective_falls_back_and_pickles(count_kernel, monkeypatch):
    # an evaluation the kernel does not complete is the numpy objective's (the same
    # optimum); a pickle of the model with its data leaves the kernel's engine out and
    # makes it again for a profile
    import pickle

    from sklearn_glmm._engine import lockstep
    from sklearn_glmm.inference import confint

    df = _data(14, family="poisson")
    a, wa = _fit(lambda: PoissonGLMM(random_effects="1 + x"), df[["x"]], df["y"], df["g"], False)
    failed = []

    def fail_every_other(self, batch):
        failed.append(len(failed) % 2 == 0)
        if failed[-1]:
            return {i: [None] * len(batch[i]) for i in batch}
        return real(self, batch)

    real = lockstep.Scheduler._compute
    monkeypatch.setattr(lockstep.Scheduler, "_compute", fail_every_other)
    b, wb = _fit(lambda: PoissonGLMM(random_effects="1 + x"), df[["x"]], df["y"], df["g"], True)
    assert any(failed) and not all(failed)
    monkeypatch.setattr(lockstep.Scheduler, "_compute", real)
    np.testing.assert_allclose(b.fit_result_.params, a.fit_result_.params, rtol=1e-6)
    assert abs(b.loglik_ - a.loglik_) < 1e-8
    b.keep_data = True
    c = pickle.loads(pickle.dumps(b))
    assert c.fit_result_.objective._lockstep is None
    n = len(count_kernel)
    with config_context(compiled=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof_b = confint(b, method="profile", parm=["x"])
        prof_c = confint(c, method="profile", parm=["x"])
    assert len(count_kernel) > n
    pd.testing.assert_frame_equal(prof_b, prof_c)


def test_nb2_slope_without_intercept(count_kernel):
    # NB2 with a scalar random slope: the rows' terms of the gradient in log theta with
    # one value of Z Lambda per row, and zero counts in whole groups
    df = _data(12, n_groups=25, per=10, family="negbin")
    df.loc[df["g"] < 3, "y"] = 0
    fits = [
        _fit(lambda: NegBinGLMM(random_effects="0 + x"), df[["x"]], df["y"], df["g"], on)
        for on in (False, True)
    ]
    assert {"scalar_modes", "scalar_gradient_rows"} <= set(count_kernel)
    _same_fit(fits[0][0], fits[1][0], fits[0][1], fits[1][1])


def _value_and_gradient_both_ways(obj, x):
    """The objective's value and gradient at ``x`` from zero modes, numpy and compiled:
    the same to rounding."""
    out = []
    for on in (False, True):
        obj.release_state()
        obj.u = np.zeros_like(obj.u)
        with config_context(compiled=on):
            out.append(obj.value_and_grad(x))
    assert np.isfinite(out[0][0])
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-12)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-8, atol=1e-9)


def test_objective_values_and_gradients_as_numpy():
    # away from the optimum too: the value and gradient at points of the whole range
    df = _data(3, family="poisson")
    with config_context(compiled=False):
        est = PoissonGLMM().fit(df[["x"]], df["y"], groups=df["g"])
    obj, x0 = est.fit_result_.objective, np.asarray(est.fit_result_.params)
    rng = np.random.default_rng(0)
    for x in [x0, x0 + 0.3, np.r_[x0[:2] + rng.normal(0, 1, 2), 3.0], np.r_[x0[:2], 1e-4]]:
        _value_and_gradient_both_ways(obj, x)


@pytest.mark.parametrize("log_theta", [-3.0, 0.0, 2.0, 9.0, 17.0, 29.5])
def test_nb2_rows_as_numpy(log_theta):
    # each row's log-density and derivatives, as NegativeBinomial2.derivs makes them:
    # zero counts, means far below and above the counts, eta beyond the overflow guard
    from sklearn_glmm._engine.families.negbin import NegativeBinomial2

    rng = np.random.default_rng(11)
    n = 400
    y = rng.poisson(rng.gamma(1.5, 4.0, n)).astype(float)
    y[:40] = 0.0
    eta = rng.normal(1.0, 2.5, n)
    eta[:5] = [-40.0, -745.0, 30.0, 700.0, 720.0]
    weights = rng.uniform(0.5, 2.0, n)
    codes = rng.integers(0, 7, n).astype(np.intp)
    fam = NegativeBinomial2()
    const = fam.constant(y, None)
    theta = np.exp(log_theta)
    with np.errstate(all="ignore"):
        ref = fam.derivs(y, eta, None, weights, (log_theta,), const)
    out = compiled.scalar_modes(
        eta, np.array([1.0]), codes, 7, y, np.ones(n), weights, const[0],
        compiled.NEGBIN2_LOG, np.zeros(7), 0, 1e-8, float(theta),
        fam._lgamma_ratio(y, log_theta, theta, const),
    )  # fmt: skip
    for got, want in zip(out[3:7], ref):
        # the rows beyond the overflow guard exactly; the others to rounding, where a
        # derivative that cancels (w3 = 3.5e-4 from terms of the count's size, 17) is
        # held to its terms' rounding, not its own (NumPy 1.24's exp differs there)
        np.testing.assert_allclose(got[:5], want[:5], rtol=1e-13, atol=1e-300)
        scale = np.max(np.abs(want))
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15 * scale)
    np.testing.assert_allclose(out[7], np.bincount(codes, ref.loglik, 7), rtol=1e-12)


def test_nb2_values_and_gradients_as_numpy(monkeypatch):
    # along log theta up to its bound, where the Poisson limit runs the Poisson kernel
    df = _data(6, family="negbin")
    with config_context(compiled=False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = NegBinGLMM().fit(df[["x"]], df["y"], groups=df["g"])
    obj, x0 = est.fit_result_.objective, np.asarray(est.fit_result_.params)
    families = []
    inner = compiled.scalar_modes
    monkeypatch.setattr(
        compiled, "scalar_modes", lambda *a: families.append(a[8]) or inner(*a)
    )  # fmt: skip
    for lt in [x0[-1], -2.0, 3.0, 9.0, 20.0, 29.9, 30.0]:
        x = np.r_[x0[:-1], lt]
        _value_and_gradient_both_ways(obj, x)
        # the bound is the Poisson limit: the Poisson kernel, as derivs takes Poisson's
        want = compiled.POISSON_LOG if lt >= 30.0 else compiled.NEGBIN2_LOG
        assert families and set(families) == {want}
        families.clear()


def test_failed_search_fails_as_in_numpy():
    # a Newton budget of one step from far away: not found, whichever code runs
    df = _data(4)
    with config_context(compiled=False):
        est = BinomialGLMM().fit(df[["x"]], df["y"], groups=df["g"])
    obj = est.fit_result_.objective
    beta, theta = np.asarray(est.fit_result_.params[:2]), np.array([2.0])
    obj.pirls_max_iter = 1
    for on in (False, True):
        with config_context(compiled=on), pytest.raises(InnerSolveFailure):
            obj.pirls(beta, theta, (), u0=np.full(obj.Q, 8.0))


def test_not_covered_models_run_the_numpy_code(count_kernel, monkeypatch):
    from sklearn_glmm._engine import nested_models

    # (a zero-inflated fit's checks fit the model without zero inflation, a covered
    # model, with the count family itself: left out here, the zero-inflated objective's
    # own evaluations are the numpy code's)
    monkeypatch.setattr(nested_models, "_nested_model", lambda obj, holds: None)
    rng = np.random.default_rng(5)
    df = _data(5, family="poisson")
    big = rng.poisson(2e5, len(df))  # large counts: the numpy code's cancellation-free form
    pos = np.maximum(df["y"], 1)
    with config_context(compiled=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw in [
            dict(family="nbinom1"),
            dict(zero_inflation=True),
            dict(hurdle=True),
            dict(dispersion="1 + x"),  # one theta per row
        ]:
            NegBinGLMM(**kw).fit(df[["x"]], df["y"], groups=df["g"])
        NegBinGLMM(truncated=True).fit(df[["x"]], pos, groups=df["g"])
        NegBinGLMM().fit(df[["x"]], big, groups=df["g"])
        PoissonGLMM().fit(df[["x"]], big, groups=df["g"])
        BinomialGLMM(link="probit").fit(df[["x"]], (df["y"] > 0).astype(int), groups=df["g"])
        # three random effects per level; two grouping factors
        three = df.assign(z=df["x"] ** 2)
        PoissonGLMM(random_effects="1 + x + z").fit(three[["x", "z"]], df["y"], groups=df["g"])
        two = pd.DataFrame({"g": df["g"], "h": np.arange(len(df)) % 7})
        PoissonGLMM(random_effects="1 + x").fit(df[["x"]], df["y"], groups=two)
    assert not count_kernel


def test_config():
    assert sklearn_glmm.get_config() == {"compiled": False}
    with config_context(compiled=True):
        assert sklearn_glmm.get_config()["compiled"] is True
    assert sklearn_glmm.get_config()["compiled"] is False
    with pytest.raises(TypeError, match="compiled must be True or False"):
        sklearn_glmm.set_config(compiled="yes")
    assert sklearn_glmm.get_config()["compiled"] is False


def test_without_numba_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"needs numba.*pip install"):
        sklearn_glmm.set_config(compiled=True)
    assert sklearn_glmm.get_config()["compiled"] is False


def test_outcome_read_at_each_search(count_kernel):
    # a fit reads the caller's outcome in place and the model then keeps its own copy
    # (data.own_outcome): the kernel reads the outcome the objective holds at each call,
    # so changing the caller's array after the fit changes nothing
    from sklearn_glmm.inference import confint

    df = _data(8, family="poisson")
    y = df["y"].to_numpy(dtype=float)
    with config_context(compiled=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM().fit(df[["x"]], y, groups=df["g"])
        before = confint(m, method="profile")
        y[:] = y[::-1]
        after = confint(m, method="profile")
    pd.testing.assert_frame_equal(before, after)
    assert count_kernel


def test_state_made_again_from_the_modes_agrees(count_kernel):
    # the kernel's state at its modes, and the numpy code's made again from them after a
    # restore (as on large data): the same values to rounding
    df = _data(9, family="poisson")
    with config_context(compiled=False):
        est = PoissonGLMM().fit(df[["x"]], df["y"], groups=df["g"])
    obj, x = est.fit_result_.objective, np.asarray(est.fit_result_.params)
    obj.release_state()
    with config_context(compiled=True):
        val, grad = obj.value_and_grad(x * 1.01)
    assert count_kernel
    before = obj.state
    der = before["der"]
    obj.lazy_state_rows = 0  # snapshots as on large data: no per-row arrays held
    snap = obj.snapshot()
    obj.value_and_grad(x)
    obj.restore(snap)
    after = obj.state
    np.testing.assert_array_equal(after["u"], before["u"])
    np.testing.assert_allclose(after["eta"], before["eta"], rtol=1e-15)
    for name in ("loglik", "d1", "w", "w3"):
        np.testing.assert_allclose(getattr(after["der"], name), getattr(der, name), rtol=1e-13)
    np.testing.assert_allclose(obj.gradient(x * 1.01), grad, rtol=1e-10, atol=1e-12)


def test_a_level_block_rounding_to_singular_is_not_an_exception(count_kernel):
    # a slope variable 1e4 from its zero: a level's 2 x 2 block (1 + A'WA) has entries
    # of 1e16 and more, and its determinant can round to zero or below at a profile's
    # far points. The kernel reads that as the numpy code does (not positive definite:
    # that evaluation is the numpy objective's), where numba's Python semantics raised
    # ZeroDivisionError out of the profile
    from test_inference import _origin_data

    from sklearn_glmm.exceptions import ProfileWarning

    X, grp, eta, rng = _origin_data()
    y = rng.poisson(np.exp(eta))
    rows = ["sd_(Intercept)|group", "sd_t|group"]
    with config_context(compiled=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        far = PoissonGLMM(random_effects="1 + t").fit(X + [0.0, 1e4], y, groups=grp)
    assert isinstance(far.fit_result_.objective, CompiledObjective)
    with config_context(compiled=True):
        with pytest.warns(ProfileWarning, match=r"\['sd_\(Intercept\)\|group'\].*Centre"):
            far.confint(rows, method="profile")
    assert "batched_laplace" in count_kernel
