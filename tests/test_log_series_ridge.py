"""The zero-truncated NB2's ridge to the logarithmic series, and the NB1 near its plateau.

As ``theta -> 0`` and ``mu -> 0`` with ``mu / theta`` held, the zero-truncated NB2 tends
to the logarithmic-series distribution. On positive counts that are nearly all 1 the
likelihood can rise along that ridge without end; a fit is then either drawn onto it
from a start near it while a higher optimum lies off it, or its supremum is the limit's.
The zero-truncated NB1 tends to the logarithmic distribution as ``mu -> 0`` at a fixed
``phi``: on the same counts its GLM had a limit at infinity (``mu -> 0`` on the rows below
some value of ``x``) that drew the start away from the optimum, and its derivatives were
NaN at the sizes ``k = mu / phi`` found there.

Reference fits: ``tests/fixtures/log_series_ridge/log_series_ridge.json``, written by
``make_log_series_ridge.R`` (glmmTMB 1.1.5) from ``log_series_ridge.csv``
(``make_log_series_ridge_data.py``).
"""

from __future__ import annotations

import warnings
from functools import cache

import mpmath
import numpy as np
import pytest
from glmmtmb_cases import fixture_csv, fixture_json
from scipy import stats

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.limit_ridge import (
    limit_gain,
    limit_model_directions,
    ridge_direction,
)
from sklearn_glmm._engine.ridge import FLAT_TOL
from sklearn_glmm.exceptions import StandardErrorWarning

MESSAGE = "ridge of the likelihood towards the logarithmic-series"


def reference(name: str) -> dict:
    return fixture_json("log_series_ridge", "log_series_ridge.json")[name]


def data(name: str):
    d = fixture_csv("log_series_ridge", "log_series_ridge.csv")
    return d[d["set"] == name].reset_index(drop=True)


# the Python side of each fit in make_log_series_ridge.R: estimator, its parameters, the
# data set and the columns of X
CASES = {
    "truncated": (NegBinGLMM, {"truncated": True}, "truncated", ["x"]),
    "truncated_poisson": (PoissonGLMM, {"truncated": True}, "truncated", ["x"]),
    "truncated_dispersion": (
        NegBinGLMM,
        {"truncated": True, "dispersion": "1 + w", "random_only_columns": None},
        "truncated",
        ["x", "w"],
    ),
    "hurdle": (NegBinGLMM, {"hurdle": True}, "hurdle", ["x"]),
    "interior": (NegBinGLMM, {"truncated": True}, "interior", ["x"]),
    "hurdle_nb1": (NegBinGLMM, {"hurdle": True, "family": "nbinom1"}, "hurdle", ["x"]),
    "truncated_nb1": (NegBinGLMM, {"truncated": True, "family": "nbinom1"}, "truncated", ["x"]),
    "truncated_nb1_agq": (
        NegBinGLMM,
        {"truncated": True, "family": "nbinom1", "n_agq": 25},
        "truncated",
        ["x"],
    ),
}


@cache
def fitted(case: str):
    """The fit of ``case`` and the warnings it gave."""
    estimator, params, name, columns = CASES[case]
    d = data(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = estimator(**params).fit(d[columns], d["y"], groups=d["g"])
    return m, [w for w in caught if issubclass(w.category, UserWarning)]


def _ridge_warnings(caught) -> list:
    return [w for w in caught if MESSAGE in str(w.message)]


@pytest.mark.parametrize("m_ratio", [0.05, 0.4, 3.0])
def test_truncated_nb2_tends_to_the_logarithmic_series(m_ratio):
    # the claim the ridge rests on, against scipy's logarithmic distribution
    fam = make_family("negbin", truncated=True)
    y = np.arange(1.0, 9.0)
    q = m_ratio / (1.0 + m_ratio)
    for log_theta, tol in [(-12.0, 1e-4), (-20.0, 1e-7)]:
        eta = np.full(len(y), np.log(m_ratio) + log_theta)
        ll = fam.derivs(y, eta, np.ones(len(y)), None, np.array([log_theta])).loglik
        np.testing.assert_allclose(ll, stats.logser.logpmf(y, q), rtol=0, atol=tol)


@pytest.mark.parametrize("case", ["truncated", "truncated_dispersion"])
def test_fits_off_the_ridge_match_glmmtmb(case):
    # ("truncated": the nested GLM's start lies on the ridge, the optimum off it)
    m, caught = fitted(case)
    ref = reference(case)
    assert m.converged_
    assert not _ridge_warnings(caught)
    assert m.loglik_ >= ref["loglik"] - 1e-6
    disp = getattr(m, "dispersion_effects_", None)
    if disp is None:
        disp = {"(Intercept)": np.log(m.theta_)}
    else:
        disp = disp["estimate"]
    for term, value in ref["disp"].items():
        assert disp[term] == pytest.approx(value, abs=1e-3)
    est = m.fixed_effects_
    for term, value in ref["fixef"].items():
        assert est.loc[term, "estimate"] == pytest.approx(value, abs=1e-3)
        assert est.loc[term, "std_error"] == pytest.approx(ref["se"][term], rel=1e-3)
    assert m.fit_record_.limit_gain < -FLAT_TOL


def test_a_fit_drawn_onto_the_ridge_leaves_it_for_the_higher_optimum():
    # the fit from the nested GLM's start ran onto the ridge and stopped there, 0.0195
    # below the optimum off it (converged, no warning); a restart off the ridge finds it
    m, _ = fitted("truncated")
    stages = dict((stage[0], stage[1]) for stage in m.fit_record_.stages)
    assert stages["off the limit ridge"] < stages["laplace"] - 0.03
    assert m.theta_ == pytest.approx(
        np.exp(reference("truncated")["disp"]["(Intercept)"]), rel=1e-3
    )


def test_a_fit_on_the_ridge_warns_and_reads_the_limit_model():
    m, caught = fitted("hurdle")
    ref = reference("hurdle")
    ridge = _ridge_warnings(caught)
    assert len(ridge) == 1 and ridge[0].category is StandardErrorWarning
    text = str(ridge[0].message)
    assert "['(Intercept)', 'nb_theta']" in text
    assert "within the optimiser's tolerance" in text
    # no second warning naming the same standard errors
    assert not [w for w in caught if "cannot be computed" in str(w.message)]
    assert m.converged_
    assert m.fit_record_.limit_gain >= -FLAT_TOL
    # glmmTMB stops further along the same ridge (theta 1.1e-7 against about 5e-5 here):
    # the log-likelihoods agree to the ridge's remaining rise
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=5e-5)
    assert m.theta_ < 1e-3
    est = m.fixed_effects_
    assert np.isnan(est.loc["(Intercept)", "std_error"])
    assert est.loc["x", "estimate"] == pytest.approx(ref["fixef"]["x"], abs=1e-3)
    assert est.loc["x", "std_error"] == pytest.approx(ref["se"]["x"], rel=1e-3)
    # what the data determine: the intercept minus log theta, the same on both fits
    identified = est.loc["(Intercept)", "estimate"] - np.log(m.theta_)
    ref_identified = ref["fixef"]["(Intercept)"] - ref["disp"]["(Intercept)"]
    assert identified == pytest.approx(ref_identified, abs=2e-3)
    wald = m.confint(method="wald")
    assert wald.loc["nb_theta", ["lower", "upper"]].isna().all()
    assert wald.loc["x"].notna().all()


def test_a_fit_off_the_ridge_is_left_alone():
    m, caught = fitted("interior")
    ref = reference("interior")
    assert not _ridge_warnings(caught)
    assert m.fit_record_.limit_gain < -FLAT_TOL
    assert not any(stage[0] == "off the limit ridge" for stage in m.fit_record_.stages)
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-6)
    assert np.all(np.isfinite(m.fixed_effects_["std_error"]))


def test_the_truncated_poisson_beside_them_matches_glmmtmb():
    m, _ = fitted("truncated_poisson")
    ref = reference("truncated_poisson")
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-6)
    assert m.fit_record_.limit_gain is None  # (no such ridge)


def test_the_check_leaves_the_objective_at_the_fit():
    m, _ = fitted("hurdle")
    obj, x = m.fit_result_.objective, np.asarray(m.fit_result_.params)
    fun = obj.evaluate(x)
    eta = obj.state["eta"].copy()
    gain = limit_gain(obj, x, fun)
    assert np.isfinite(gain)
    assert obj.remembered(x) == fun
    np.testing.assert_array_equal(obj.state["eta"], eta)


def test_the_ridge_directions_in_the_parameters():
    m, _ = fitted("truncated_dispersion")
    d = m.fit_result_.objective.data
    direction = ridge_direction(d)
    p, T = d.n_beta, d.n_theta
    X = np.asarray(d.X)
    D = np.asarray(d.extra_designs[0])
    # every row's linear predictor and log theta move by one
    np.testing.assert_allclose(X @ direction[:p], 1.0, atol=1e-10)
    np.testing.assert_allclose(D @ direction[p + T :], 1.0, atol=1e-10)
    assert not direction[p : p + T].any()
    # the limit model's flat directions: log(mu / theta) unchanged on every row, the
    # intercepts' and w's (in both parts)
    N = limit_model_directions(d)
    assert N.shape[1] == 2
    np.testing.assert_allclose(X @ N[:p] - D @ N[p + T :], 0.0, atol=1e-10)
    inside = N @ np.linalg.lstsq(N, direction, rcond=None)[0]
    np.testing.assert_allclose(inside, direction, atol=1e-10)


def test_no_ridge_without_an_intercept():
    m, caught = fitted("truncated")
    d = m.fit_result_.objective.data
    assert ridge_direction(d) is not None
    dd = data("truncated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0 = NegBinGLMM(truncated=True, fit_intercept=False).fit(dd[["x"]], dd["y"], groups=dd["g"])
    assert ridge_direction(m0.fit_result_.objective.data) is None
    assert m0.fit_record_.limit_gain is None


def test_profile_and_bootstrap_intervals_of_the_ridge_parameters_are_nan():
    # a profile stopped by log theta's box bound had read (-13.2, -1.5) for the intercept
    # and a bootstrap (4.6e-5, inf) for theta: neither bounds a parameter on the ridge
    m, _ = fitted("hurdle")
    for method, extra in [("profile", {}), ("bootstrap", {"n_boot": 10, "random_state": 0})]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ci = m.confint(method=method, **extra)
        said = [w for w in caught if "run along a ridge of the likelihood" in str(w.message)]
        assert len(said) == 1, method
        assert "['(Intercept)', 'nb_theta']" in str(said[0].message)
        assert ci.loc[["(Intercept)", "nb_theta"], ["lower", "upper"]].isna().all().all()
        assert ci.loc[["x", "zero_prob"], ["lower", "upper"]].notna().all().all()
    # a selection without them: no warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ci = m.confint(method="profile", parm=["x"])
    assert not [w for w in caught if "run along a ridge" in str(w.message)]
    assert ci.loc["x", ["lower", "upper"]].notna().all()


def test_the_summary_says_the_fit_is_on_the_ridge():
    text = str(fitted("hurdle")[0].summary())
    assert "on a ridge towards the logarithmic-series distribution: (Intercept), nb_theta" in text
    assert "on a ridge" not in str(fitted("interior")[0].summary())


def _nb1_terms(y, eta, log_phi):
    """The NB1 log-density, its first three eta-derivatives and the log phi-derivatives
    of the first two and of the curvature ``w``, from the polygamma functions in 450 digits
    (enough for the cancellations at ``k = mu / phi`` down to 1e-175)."""
    with mpmath.workdps(450):
        phi = mpmath.exp(mpmath.mpf(log_phi))
        k = mpmath.exp(mpmath.mpf(eta)) / phi
        big_l, share = mpmath.log1p(phi), phi / (1 + phi)
        a0 = mpmath.psi(0, y + k) - mpmath.psi(0, k) - big_l
        a1 = mpmath.psi(1, y + k) - mpmath.psi(1, k)
        a2 = mpmath.psi(2, y + k) - mpmath.psi(2, k)
        ll = (
            mpmath.loggamma(y + k)
            - mpmath.loggamma(k)
            - mpmath.loggamma(y + 1)
            - k * big_l
            + y * mpmath.log(phi / (1 + phi))
        )
        d1 = k * a0
        d2 = k * a0 + k**2 * a1
        d3 = k * a0 + 3 * k**2 * a1 + k**3 * a2
        dl = -k * a0 - k * share + y / (1 + phi)
        dd1 = -k * a0 - k**2 * a1 - k * share
        dw = k * a0 + 3 * k**2 * a1 + k**3 * a2 + k * share
        return [float(v) for v in (ll, d1, d2, d3, dl, dd1, dw)]


@pytest.mark.parametrize("eta", [-10.0, -16.0, -40.0, -250.0, -400.0])
def test_nb1_derivatives_at_tiny_sizes(eta):
    # below k = 1e-103 psi_2(k) overflowed and the curvature's derivative was NaN (the
    # start above sat at eta near -300); at k below 1e-6 the sums come from their series
    fam = make_family("negbin1")
    y = np.array([0.0, 1.0, 2.0, 3.0, 7.0])
    ones = np.ones(len(y))
    for log_phi in (-2.0, 0.5):
        extra = np.array([log_phi])
        d = fam.derivs(y, np.full(len(y), eta), ones, None, extra)
        dl, dd1, dw = fam.extra_derivs(y, np.full(len(y), eta), ones, None, extra)
        got = np.array([d.loglik, d.d1, -d.w, -d.w3, dl[0], dd1[0], dw[0]]).T
        for j, yj in enumerate(y):
            want = _nb1_terms(yj, eta, log_phi)
            np.testing.assert_allclose(got[j], want, rtol=1e-9, atol=0, err_msg=f"y={yj}")


def test_hurdle_nb1_starts_off_its_limit_at_infinity():
    # Newton on the default phi ran the GLM's start to (-15, 15), from where the GLM with
    # phi ran on towards an intercept of -160 and a slope of 80 (every row below x = 2
    # near mu = 0); the fit stopped there, 0.39 below the GLM's optimum and 0.61 below
    # glmmTMB's, with NaN derivatives
    m, caught = fitted("hurdle_nb1")
    ref = reference("hurdle_nb1")
    assert m.converged_
    assert not [w for w in caught if "failed to converge" in str(w.message)]
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-6)
    est = m.fixed_effects_
    for term, value in ref["fixef"].items():
        assert est.loc[term, "estimate"] == pytest.approx(value, abs=1e-3)
    assert np.log(m.phi_) == pytest.approx(ref["disp"]["(Intercept)"], abs=1e-3)
    assert m.fit_record_.glm_objective == pytest.approx(
        -2.0 * reference("hurdle_nb1_glm")["loglik"], abs=1e-6
    )
    d = data("hurdle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = NegBinGLMM(hurdle=True, family="nbinom1").fit(d[["x"]], d["y"])
    assert glm.loglik_ == pytest.approx(reference("hurdle_nb1_glm")["loglik"], abs=1e-6)


def test_a_laplace_fit_drawn_to_a_flat_conditional_mode_names_it():
    # the Laplace objective of a zero-truncated NB1 rises towards points where a level's
    # conditional mode flattens (its -log(curvature) / 2): the fit stops there, not
    # converged, and the warning now names the level and points to quadrature, whose fit
    # converges (glmmTMB's Laplace fit stops with an error on these data)
    m, caught = fitted("truncated_nb1")
    assert not m.converged_
    said = [str(w.message) for w in caught if "failed to converge" in str(w.message)]
    assert len(said) == 1
    assert "is nearly flat at its mode" in said[0] and "n_agq of 10 to 25" in said[0]
    level, curvature = m.fit_record_.flattest_mode
    assert curvature < 0.1 and f"level '{m.fit_result_.factors[0].levels[level]}'" in said[0]
    agq, caught = fitted("truncated_nb1_agq")
    assert agq.converged_
    assert not [w for w in caught if "failed to converge" in str(w.message)]
    assert agq.loglik_ < m.loglik_  # (the Laplace value there is inflated)


def test_a_fit_on_the_ridge_does_not_depend_on_the_predictors_units():
    # in other units the fit stopped with log theta on its box bound of -10 (the ridge
    # goes on past it); held there as a bounded parameter, the slope's standard error
    # came out 11 % small
    m, _ = fitted("hurdle")
    d = data("hurdle")
    X = d[["x"]] * 1000.0 + 5e4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m2 = NegBinGLMM(hurdle=True).fit(X, d["y"], groups=d["g"])
    assert len(_ridge_warnings(caught)) == 1
    assert m2.loglik_ == pytest.approx(m.loglik_, abs=1e-5)
    est, est2 = m.fixed_effects_, m2.fixed_effects_
    assert 1000.0 * est2.loc["x", "estimate"] == pytest.approx(est.loc["x", "estimate"], rel=1e-3)
    assert 1000.0 * est2.loc["x", "std_error"] == pytest.approx(est.loc["x", "std_error"], rel=1e-3)
    assert np.isnan(est2.loc["(Intercept)", "std_error"])
