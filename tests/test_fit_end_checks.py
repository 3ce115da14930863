"""Fits whose optimiser (or Newton steps) starts at another fit's end or on a bound end
at the optimum, or say they did not."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import NegBinGLMM, PoissonGLMM


def _fit(est, x, y, g):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(pd.DataFrame({"x": x}), np.array(y), groups=np.array(g))


@pytest.mark.parametrize(
    "est, y, x, g, optimum",
    [
        # ZIP on five groups of four rows: SD 0 with pi 0.77 (-2 log L 31.9251) and the
        # optimum at SD 2.36 with pi 0.27 (glmmTMB from its own start: 30.4564); the
        # profile over the SD is above its value at zero up to an SD of 1 (32.22) and
        # below it from 2 (30.52)
        (
            PoissonGLMM(zero_inflation=True),
            [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 2, 5, 0],
            [-0.1973, 1.245, 1.7488, -0.5161, 1.2952, -0.5668, 0.0539, 1.073, -0.3285,
             2.3726, -2.5348, -0.298, -0.8106, -0.2342, 0.0736, -1.607, 1.1319, -1.2351,
             0.5736, 0.9793],
            np.repeat(np.arange(5), 4),
            30.4564,
        ),
        # hurdle NB2 on eight groups of three rows: SD 0 (116.9991) and the optimum at
        # SD 2.13 (glmmTMB from its own start: 115.2207)
        (
            NegBinGLMM(hurdle=True),
            [0, 0, 0, 0, 0, 2, 0, 0, 38, 66, 44, 48, 0, 0, 1, 108, 26, 56, 0, 0, 0, 0, 0, 0],
            [-1.1866, -1.0936, -0.1446, 1.2079, 0.6325, 1.6889, 0.7307, 0.5869, -0.5518,
             2.0746, 0.9317, 0.0232, 1.8142, -2.6091, 1.5009, 0.4734, -0.0076, -0.24,
             1.2426, -2.1153, -1.1047, -0.3652, -0.0822, -0.0467],
            np.repeat(np.arange(8), 3),
            115.2207,
        ),
    ],
)  # fmt: skip
def test_a_zero_sd_of_a_zero_inflated_fit_is_probed_past_the_grid(est, y, x, g, optimum):
    m = _fit(est, x, y, g)
    assert m.converged_
    assert -2 * m.loglik_ <= optimum + 1e-3


# Poisson, a correlated random intercept and slope, four groups of four rows: the
# optimum at -2 log L 40.9113 (SDs 0.38 and 0.36, correlation -1; lme4's, from its
# start and from a covariance of 0); the covariance all zero (the GLM's optimum,
# 41.1146) is a saddle point: the objective falls along the intercept's SD and the entry
# below it together (Hessian eigenvalue -4.2), and rises along each alone
_SADDLE_Y = [2, 0, 0, 0, 3, 0, 0, 1, 1, 2, 2, 1, 0, 0, 3, 1]
_SADDLE_X = [-0.005, -0.5316, -2.2766, 0.0187, 0.9274, 1.0433, -0.5362, 2.2294, 1.9437,
             -0.2282, -0.1552, 0.959, -0.2548, 0.2248, 1.2199, 1.1897]  # fmt: skip
_SADDLE_G = np.repeat(np.arange(4), 4)
_SADDLE_OPTIMUM = 40.9113


def test_a_zero_covariance_block_at_a_saddle_is_left_by_the_checks():
    # the checks at the optimum started at the GLM's optimum (where a fit restarted from
    # the GLM stays: the gradient is nil there in every covariance parameter) go on to
    # the optimum; they had reported the saddle converged
    from sklearn_glmm._engine.converge import check_optimum
    from sklearn_glmm._engine.optimize import FitRecord

    m = _fit(PoissonGLMM(random_effects="1 + x"), _SADDLE_X, _SADDLE_Y, _SADDLE_G)
    assert -2 * m.loglik_ == pytest.approx(_SADDLE_OPTIMUM, abs=1e-4)
    obj, bounds = m.fit_result_.objective, m.fit_result_.bounds
    p, T = obj.data.n_beta, obj.data.n_theta
    x_glm, glm_fun = obj.glm_optimum
    x0 = np.zeros(len(bounds))
    x0[np.r_[np.arange(p), np.arange(p + T, len(bounds))]] = x_glm
    assert obj.evaluate(x0) == pytest.approx(glm_fun, abs=1e-6)
    record = FitRecord(initial=x0)
    check_optimum(obj, x0, record, bounds, 1000, 1e-10)
    assert record.converged
    assert record.objective == pytest.approx(_SADDLE_OPTIMUM, abs=1e-4)


def test_a_fit_left_at_a_zero_covariance_saddle_is_not_reported_converged():
    # with a loose tolerance the first stage stops above the GLM's optimum, and the
    # restart from there stays at its saddle (all three covariance parameters 0): the
    # fit was reported converged, 0.20 above the optimum
    est = PoissonGLMM(random_effects="1 + x", tol=1e-2)
    m = _fit(est, _SADDLE_X, _SADDLE_Y, _SADDLE_G)
    assert not m.converged_ or -2 * m.loglik_ <= _SADDLE_OPTIMUM + 1e-4


def test_a_zero_inflated_fit_is_resumed_from_the_nested_models_covariance():
    # ZIP on eight groups of three rows: the fit ended at SD 0.14 with a zero-inflation
    # probability of 0.52 (-2 log L 68.4609), converged; the model without zero inflation
    # (72.09) has SD 1.6, where the full model's profile is 67.62, and the optimum is at
    # SD 1.56 with a probability of 0.21 (glmmTMB from its own start: 67.6213; the true
    # likelihood, quadrature with 60 nodes, 67.387 there against 68.463 at the fit's)
    y = [5, 7, 0, 7, 6, 5, 0, 1, 1, 0, 0, 0, 3, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    x = [-0.2739, 1.0751, 0.298, 0.9407, 0.3368, 0.5161, 0.1178, 0.5782, -0.8888, 1.0718,
         -1.151, 0.1578, 0.0151, -0.6005, 0.3436, -2.1107, -0.9745, -0.1011, 0.753, 0.9272,
         -0.7339, -0.7768, -0.071, 1.0636]  # fmt: skip
    m = _fit(PoissonGLMM(zero_inflation=True), x, y, np.repeat(np.arange(8), 3))
    assert m.converged_
    assert -2 * m.loglik_ <= 67.6213 + 1e-3


def _zero_inflated_data(seed=3, n_groups=30, rows=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rows)
    x = rng.normal(size=len(g))
    mu = np.exp(0.3 + 0.5 * x + rng.normal(0, 0.7, n_groups)[g])
    y = np.where(rng.random(len(g)) < 0.25, 0, rng.poisson(mu))
    return x, y, g


@pytest.mark.parametrize("est", [PoissonGLMM, NegBinGLMM])
def test_the_model_without_zero_inflation_is_fitted_with_the_count_family(est):
    # the nested model at zero inflation's bound (probability 2e-9) is fitted with the
    # count family itself, its end evaluated by the zero-inflated objective: the same
    # optimum as the zero-inflated density held at the bound reaches
    from sklearn_glmm._engine import nested_models
    from sklearn_glmm._engine.ridge import _held

    x, y, g = _zero_inflated_data()
    m = _fit(est(zero_inflation=True), x, y, g)
    obj, bounds = m.fit_result_.objective, m.fit_result_.bounds
    k = len(bounds) - 1
    holds = [(k, bounds[k][0])]
    assert nested_models._nested_model(obj, holds).data.family is obj.data.family.base
    x1, held = _held(m.fit_record_.initial, bounds, holds)
    n_cov = obj.data.n_beta + obj.data.n_theta
    diag = [j for j, b in enumerate(bounds[:n_cov]) if b[0] == 0.0]
    before = obj.n_evals
    res = nested_models._held_stage(obj, x1, held, holds, 1000, 1e-10, diag)
    assert obj.n_evals - before >= res.nit  # the count model's evaluations are counted
    assert res.x[k] == bounds[k][0]
    assert res.fun == obj.evaluate(res.x)
    held_fit = nested_models._laplace_stage(obj, x1, held, 1000, 1e-10, diag)
    assert res.fun == pytest.approx(held_fit.fun, abs=1e-6)
    plain = _fit(est(), x, y, g)
    # (the zero-inflated density at the bound: n log(1 - 2e-9) and the zeros' share)
    assert res.fun == pytest.approx(-2 * plain.loglik_, abs=1e-5)


def test_only_zero_inflation_held_on_its_bound_is_fitted_with_the_count_family():
    from sklearn_glmm._engine import nested_models

    x, y, g = _zero_inflated_data()
    m = _fit(NegBinGLMM(zero_inflation=True), x, y, g)
    obj, bounds = m.fit_result_.objective, m.fit_result_.bounds
    k = len(bounds) - 1
    assert nested_models._nested_model(obj, [(k, bounds[k][0])]) is not None
    assert nested_models._nested_model(obj, [(k, bounds[k][0] + 1.0)]) is None
    assert nested_models._nested_model(obj, [(k - 1, bounds[k - 1][1])]) is None  # theta's
    for other in (NegBinGLMM(hurdle=True), PoissonGLMM(zero_inflation="~ x")):
        fitted = _fit(other, x, y, g)
        last = fitted.fit_result_.bounds[-1]
        held = [(len(fitted.fit_result_.bounds) - 1, last[0])]
        assert nested_models._nested_model(fitted.fit_result_.objective, held) is None


def _zip_slope_fit(data):
    """A zero-inflated Poisson model with a correlated random slope and a zero part in
    ``z`` fitted to ``data`` (columns x, z, y, g)."""
    est = PoissonGLMM(zero_inflation="~ z", random_effects="1 + x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(data[["x", "z"]], data["y"].to_numpy(), groups=data["g"].to_numpy())


def test_a_fit_that_followed_a_vanishing_mode_is_fitted_with_the_highest_modes():
    """tests/fixtures/two_modes: the optimiser, each level's mode searched from its warm
    start, followed one level's mode towards where it merges with the dip between its
    two modes and ended there not converged, 1.19 below glmmTMB's optimum; the second
    fit, with the highest modes searched at every evaluation, reaches that optimum and
    converges (``_engine/fit_checked.py``)."""
    import json
    from pathlib import Path

    from sklearn_glmm._engine.fit_checked import FIRST_FIT

    folder = Path(__file__).parent / "fixtures" / "two_modes"
    ref = json.loads((folder / "zip_slope.json").read_text())
    m = _zip_slope_fit(pd.read_csv(folder / "zip_slope.csv"))
    assert m.converged_
    first = m.fit_record_.stages[0]
    assert first[0] == FIRST_FIT and first[1] > -2 * ref["loglik"] + 2.0
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ref["fixef"], atol=2e-3)
    zi = m.zero_inflation_effects_["estimate"].to_numpy(dtype=float)
    np.testing.assert_allclose(zi, ref["zi"], atol=2e-3)
    cov = m.random_effects_cov_["group"].to_numpy(dtype=float)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), ref["sd"], atol=2e-3)


def test_a_second_fit_that_does_not_converge_leaves_the_first_as_it_was(monkeypatch):
    """Zero-inflated data on which neither fit converges (glmmTMB 1.1.5 does not either:
    its log-likelihood is NA): the first fit is kept, its modes, estimates, predictions
    and warnings those of the fit without a second (put back at its end), the second
    named among its stages and its evaluations counted."""
    from sklearn_glmm._engine import fit_checked

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 8)
    x, z = rng.normal(size=240), rng.normal(size=240)
    b0, b1 = rng.normal(0, 0.7, 30)[g], rng.normal(0, 0.3, 30)[g]
    mu = np.exp(0.3 + 0.5 * x + b0 + b1 * x)
    zero = rng.random(240) < 1.0 / (1.0 + np.exp(1.0 - 0.8 * z))
    data = pd.DataFrame({"x": x, "z": z, "y": np.where(zero, 0, rng.poisson(mu)), "g": g})
    both = _zip_slope_fit(data)
    monkeypatch.setattr(fit_checked, "_second_fit_possible", lambda obj: False)
    one = _zip_slope_fit(data)
    assert not one.converged_ and not both.converged_
    assert both.fit_record_.stages[-1][0] == fit_checked.SECOND_FIT
    assert both.fit_record_.stages[:-1] == one.fit_record_.stages
    assert both.fit_record_.n_evaluations > 1.5 * one.fit_record_.n_evaluations
    assert both.loglik_ == one.loglik_
    for name in ("coef_", "intercept_"):
        np.testing.assert_array_equal(getattr(both, name), getattr(one, name))
    pd.testing.assert_frame_equal(both.ranef_["group"], one.ranef_["group"])
    pd.testing.assert_frame_equal(both.fixed_effects_, one.fixed_effects_)
    pd.testing.assert_frame_equal(both.zero_inflation_effects_, one.zero_inflation_effects_)
    X = data[["x", "z"]]
    np.testing.assert_array_equal(both.predict(X, groups=g), one.predict(X, groups=g))
