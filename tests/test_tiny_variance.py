"""Random-intercept SDs that only large counts or trials resolve (a few 1e-4 on the link
scale), checked against lme4/glmmTMB (tests/fixtures/tiny_sd, the R script beside it)
and against the brute-force Laplace likelihood of ``truth.py``.

At such an SD an SD of 1e-3 is already worse than zero, so a search for a better point
that starts at 1e-3 reports the boundary. The probe of a zero variance goes down to the
smallest SD the data resolve in one level; the check at the optimum refuses a zero that
the likelihood rises from."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import truth
from sklearn.exceptions import ConvergenceWarning

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine import stage

HERE = Path(__file__).parent / "fixtures" / "tiny_sd"
REF = json.loads((HERE / "tiny_sd.json").read_text())
sys.path.insert(0, str(HERE))
from make_tiny_sd_data import CASES  # noqa: E402
from test_fuzz_truth import _term_magnitude  # noqa: E402


def _data(name):
    return pd.read_csv(HERE / f"{name}.csv")


def _fit(name, **kw):
    d = _data(name)
    if name == "poisson_tiny":
        est, fit_kw = PoissonGLMM(random_effects="1", **kw), {}
    elif name == "nb2_tiny":
        est, fit_kw = NegBinGLMM(random_effects="1", **kw), {}
    else:
        est, fit_kw = BinomialGLMM(random_effects="1", **kw), {"trials": d["t"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(d[["x"]], d["y"], groups=d["g"], **fit_kw)
    return est, [w.category for w in caught]


def _sd(est):
    (cov,) = est.random_effects_cov_.values()
    return float(np.sqrt(cov.iloc[0, 0]))


def test_the_fixtures_are_the_generators_data():
    for name, make in CASES.items():
        pd.testing.assert_frame_equal(make(), _data(name), check_exact=False, rtol=1e-15)


@pytest.mark.parametrize("name", ["poisson_tiny", "nb2_tiny", "binomial_tiny"])
def test_a_tiny_sd_is_found_as_lme4_and_glmmtmb_find_it(name):
    ref = REF[name][REF[name]["reference"]]
    est, caught = _fit(name)
    assert ConvergenceWarning not in caught
    assert est.converged_ and not est.is_singular_
    # the reference engines' optimum, not the boundary 2.5 to 14.6 log-likelihood units below
    assert est.loglik_ == pytest.approx(ref["loglik"], abs=2e-4)
    assert _sd(est) == pytest.approx(ref["sd"], rel=2e-3)
    np.testing.assert_allclose(np.r_[est.intercept_, est.coef_], ref["coef"], rtol=1e-6)
    if name == "nb2_tiny":
        assert est.theta_ == pytest.approx(ref["theta"], rel=2e-3)


@pytest.mark.parametrize("name", ["poisson_tiny", "nb2_tiny"])
def test_a_tiny_sd_is_the_brute_force_laplace_optimum(name):
    est, _ = _fit(name)
    d = _data(name)
    family = "poisson" if name == "poisson_tiny" else "negbin"
    data = truth.GLMMData(
        np.column_stack([np.ones(len(d)), d["x"]]),
        d["y"].to_numpy(float),
        d["g"].to_numpy(),
        family,
    )
    # one rounding unit of the log-likelihood's terms (counts of 5e5: terms of 3e10 in
    # all, a unit of 6e-6), within which the two implementations' values differ from
    # one point to the next (by up to 1.4e-6 around the NB2 fit)
    tol = np.finfo(float).eps * _term_magnitude(data)
    _assert_brute_force_optimum(est, data, tol=max(tol, 1e-6), gain=1e-4)


def _assert_brute_force_optimum(est, data, tol, gain):
    """The library's log-likelihood is truth's Laplace value at its estimates (within
    ``tol``), and nothing better than ``gain`` lies next to them."""
    params = {"beta": np.r_[est.intercept_, est.coef_], "sigma": _sd(est)}
    if data.family == "negbin":
        params["theta"] = float(est.theta_)
    assert truth.laplace_loglik(params, data) == pytest.approx(est.loglik_, abs=tol)
    near = truth.best_nearby(
        lambda v: truth.laplace_loglik(truth.unpack(v, data), data),
        truth.pack(params, data),
        max_evaluations=300,
    )
    assert near.value < est.loglik_ + gain


def test_a_zero_the_likelihood_rises_from_is_not_reported_as_converged(monkeypatch):
    # the probe without its values below the grid (as before it had them): the fit ends
    # on the boundary, and the check at the optimum says that it is not the maximum
    monkeypatch.setattr(stage, "_PROBE_RESOLUTION", np.inf)
    est, caught = _fit("poisson_tiny")
    assert _sd(est) == 0.0
    assert ConvergenceWarning in caught
    assert not est.converged_
    assert est.fit_record_.rising_off_zero == (2,)
    assert est.loglik_ < REF["poisson_tiny"]["glmmTMB"]["loglik"] - 10.0


def test_a_true_zero_is_still_a_converged_singular_fit():
    # the same design with no random effect and ordinary counts (a seed whose optimum
    # is on the boundary): zero is the maximum, and the fit says so without a warning
    rng = np.random.default_rng(0)
    d = _data("poisson_tiny")
    y = rng.poisson(np.exp(1.0 + 0.3 * d["x"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = PoissonGLMM(random_effects="1").fit(d[["x"]], y, groups=d["g"])
    assert _sd(est) == 0.0 and est.is_singular_
    assert est.converged_ and est.fit_record_.rising_off_zero == ()
    assert ConvergenceWarning not in [w.category for w in caught]


def test_probe_values_below_the_grid_only_for_data_that_resolve_them():
    class Obj:
        def __init__(self, info):
            self.info = info

        def level_information(self, k):
            return self.info

    assert stage._probe_grid(Obj(None), 2) == tuple(stage._PROBE_GRID)
    assert stage._probe_grid(Obj(300.0), 2) == tuple(stage._PROBE_GRID)  # SD 0.06
    grid = stage._probe_grid(Obj(2e7), 2)  # one level resolves an SD of 2.2e-4
    small = grid[: len(grid) - len(stage._PROBE_GRID)]
    assert small and min(small) >= stage._PROBE_RESOLUTION / np.sqrt(2e7)
    assert np.all(np.diff(grid) > 0) and max(small) < stage._PROBE_GRID[0]


def test_a_dispersion_model_whose_variance_reaches_zero_fits():
    # per-row NB theta: the zero-variance probe evaluates one point at a time (the
    # vectorised probe stacks the rows, not the per-row parameters)
    rng = np.random.default_rng(0)
    n, G = 600, 30
    g = rng.integers(0, G, n)
    x, w = rng.normal(size=n), rng.normal(size=n)
    mu = np.exp(1.0 + 0.3 * x)
    theta = np.exp(1.0 + 0.5 * w)
    y = rng.negative_binomial(theta, theta / (theta + mu))
    X = pd.DataFrame({"x": x, "w": w})
    est = NegBinGLMM(random_effects="1", dispersion="1 + w").fit(X, y, groups=g)
    assert np.isfinite(est.loglik_) and est.converged_


def test_units_of_a_predictor_do_not_change_a_hard_negative_binomial_fit():
    # SD 1e-3 and NB theta 2.5e5 with counts of 2e5: an unscaled run can stall far
    # from the optimum on one scaling of the predictor and not on another; a fit that
    # fails the gradient check is resumed with the optimiser scaled by every
    # parameter's curvature (its own theta too), so that all of them end at one optimum
    d = _data("nb2_units")
    fits = []
    for scale in (1.0, 1e-3, None):
        x = d["x"] * scale if scale is not None else (d["x"] - d["x"].mean()) / d["x"].std()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = NegBinGLMM(random_effects="1").fit(x.to_frame(), d["y"], groups=d["g"])
        assert ConvergenceWarning not in [w.category for w in caught]
        assert est.converged_
        fits.append(est)
    lls = [est.loglik_ for est in fits]
    assert max(lls) - min(lls) < 1e-6 * abs(lls[0])
    sds = [_sd(est) for est in fits]
    np.testing.assert_allclose(sds, sds[0], rtol=1e-3)
    np.testing.assert_allclose(fits[1].coef_ * 1e-3, fits[0].coef_, rtol=1e-4)


def test_a_point_that_fails_the_gradient_check_is_resumed_rescaled():
    from sklearn_glmm._engine import curvature, polish
    from sklearn_glmm._engine.optimize import FitRecord
    from sklearn_glmm._engine.start import parameter_bounds

    est, _ = _fit("nb2_tiny")
    obj, x_opt = est.fit_result_.objective, np.array(est.fit_result_.params)
    bounds = parameter_bounds(obj.data)
    n_cov = obj.data.n_beta + obj.data.n_theta
    diag_idx = [k for k, b in enumerate(bounds[:n_cov]) if b[0] == 0.0]
    # away from the optimum: the SD five times too large, log theta one unit off
    x = x_opt.copy()
    x[2] *= 5.0
    x[3] -= 1.0
    at_optimum = obj.evaluate(x_opt)
    fun = obj.evaluate(x)
    x2, fun2, H2, grads2 = polish.rescaled_restart(
        obj, x, fun, None, (np.inf, np.inf), bounds, 200, 1e-9, diag_idx, FitRecord(x)
    )
    assert fun2 < fun
    assert fun2 == pytest.approx(at_optimum, abs=1e-5)
    assert grads2[1] <= curvature.GRAD_TOL


def test_a_structure_whose_tiny_sd_needs_a_negative_correlation():
    # AR1 over 4 waves, counts of 6e4: at a zero SD the correlation is undetermined and
    # was left near +1, where no SD above zero is better; the optimum pairs an SD of
    # 8e-4 with a correlation of -0.996. glmmTMB stops near zero (0.09 lower); its own
    # likelihood at that point (fixed effects re-fitted) is the reference
    d = _data("ar1_tiny")
    ref = REF["ar1_tiny"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = PoissonGLMM(random_effects="ar1(day)", random_only_columns="day").fit(
            d[["x", "day"]], d["y"], groups=d["g"]
        )
    assert ConvergenceWarning not in [w.category for w in caught] and est.converged_
    # at least the likelihood there (the correlation's restarts reach 3e-4 higher; the
    # likelihood keeps rising, by 1.5e-3 more, as rho runs to its bound -0.9999)
    assert est.loglik_ >= ref["glmmTMB_at_sd_8e_4"]["loglik"] - 1e-6
    assert est.loglik_ > ref["glmmTMB"]["loglik"] + 0.05
    (cov,) = est.random_effects_cov_.values()
    assert np.sqrt(cov.iloc[0, 0]) == pytest.approx(8.06e-4, rel=2e-2)
    assert cov.iloc[0, 1] / cov.iloc[0, 0] < -0.99


@pytest.mark.parametrize("log_mean", [20.7, 23.0])
def test_counts_of_a_billion_with_a_tiny_sd_reach_the_brute_force_optimum(log_mean):
    # counts of 1e9 and 1e10 with an SD of 1e-4: the modes' Newton decrement stopped at
    # ~1e-19, the rounding floor of y - mu there, every search at the optimum failed, and
    # the fit ended 14-16 log-likelihood units short (ConvergenceWarning; glmmTMB: -5343.41
    # and -5895.45)
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(30), 15)
    x = rng.normal(size=len(g))
    b = rng.normal(0, 1e-4, 30)
    y = rng.poisson(np.exp(log_mean + 0.1 * x + b[g])).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = PoissonGLMM(random_effects="1").fit(pd.DataFrame({"x": x}), y, groups=g)
    assert est.converged_
    data = truth.GLMMData(np.column_stack([np.ones(len(g)), x]), y, g, "poisson")
    # (1e-3: each row's log-density is a difference of terms of 2e10, rounded to ~1e-5)
    _assert_brute_force_optimum(est, data, tol=1e-3, gain=1e-3)
