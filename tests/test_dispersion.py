"""A dispersion that depends on predictors (glmmTMB's ``dispformula = ~ x``).

Reference fits: ``tests/fixtures/dispersion/dispersion.json``, written by
``make_dispersion.R`` (glmmTMB 1.1.5) from ``dispersion.csv``
(``make_dispersion_data.py``).
"""

from __future__ import annotations

import pickle
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from glmmtmb_cases import (
    assert_caller_data_unchanged,
    assert_free_of_units,
    assert_within_se,
    designed_objective,
    fixture_csv,
    fixture_json,
    quiet_fit,
    refit,
)
from reference import REFERENCE_SE_REL
from scipy import special, stats
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import GLMObjective
from sklearn_glmm.exceptions import OverdispersionWarning
from sklearn_glmm.formula import glmmTMB


def reference() -> dict:
    return fixture_json("dispersion", "dispersion.json")


def disp_data() -> pd.DataFrame:
    return fixture_csv("dispersion", "dispersion.csv")


# the Python side of each call in make_dispersion.R
CASES = {
    "nb2": ("ynb2 ~ x + w + (1 | id)", "nbinom2", "~ x", None),
    "nb2_w": ("ynb2 ~ x + w + (1 | id)", "nbinom2", "~ x + w", None),
    "nb1": ("ynb1 ~ x + w + (1 | id)", "nbinom1", "~ x", None),
    "bb": ("cbind(ybb, trials - ybb) ~ x + w + (1 | id)", "betabinomial", "~ w", None),
    "zinb2": ("ynb2 ~ x + w + (1 | id)", "nbinom2", "~ x", "~ w"),
}


@cache
def fitted(case: str):
    formula, family, disp, zi = CASES[case]
    return quiet_fit(glmmTMB, formula, disp_data(), family=family, dispformula=disp, ziformula=zi)


@pytest.mark.parametrize("case", list(CASES))
def test_reference_fits(case):
    # R: see the call in dispersion.json for each case (glmmTMB 1.1.5, make_dispersion.R)
    ref = reference()[case]
    m = fitted(case)
    assert m.converged_
    assert abs(m.loglik_ - ref["loglik"]) < 0.01
    fe, disp = m.fixed_effects_, m.dispersion_effects_
    assert list(disp.index) == list(ref["disp"])  # R's names: fixef(m)$disp
    assert_within_se(fe["estimate"], ref["fixef"], ref["se"])
    disp_se = {k.removeprefix("d~"): v for k, v in ref["disp_se"].items()}  # vcov(m)$disp
    assert_within_se(disp["estimate"], ref["disp"], disp_se)
    for name, se in ref["se"].items():
        assert fe.loc[name, "std_error"] == pytest.approx(se, rel=REFERENCE_SE_REL)
    for name, se in disp_se.items():
        assert disp.loc[name, "std_error"] == pytest.approx(se, rel=REFERENCE_SE_REL)
    sd = m.random_effects_cov_[m.fit_result_.factor_order[0]].to_numpy()[0, 0] ** 0.5
    assert sd == pytest.approx(ref["sd"], rel=0.02)
    if "zi" in ref:
        zi_se = {k.removeprefix("zi~"): v for k, v in ref["zi_se"].items()}
        assert_within_se(m.zero_inflation_effects_["estimate"], ref["zi"], zi_se)
        for name, se in zi_se.items():
            assert m.zero_inflation_effects_.loc[name, "std_error"] == pytest.approx(
                se, rel=REFERENCE_SE_REL
            )


@pytest.mark.parametrize("case", ["nb2", "nb1", "bb"])
def test_predictions_match_glmmtmb(case):
    # R: predict(m, type = "disp")[1:6] and predict(m, type = "response")[1:6]
    ref = reference()[case]
    m = fitted(case)
    rows = disp_data().head(6)
    np.testing.assert_allclose(m.predict(rows, type="disp"), ref["sigma_rows"], rtol=5e-3)
    mean = m.predict_mean(rows) if case == "bb" else m.predict(rows)
    np.testing.assert_allclose(mean, ref["predict"], rtol=2e-3)


@pytest.mark.parametrize("case", ["nb2", "bb"])
def test_wald_intervals_carry_glmmtmb_names(case):
    # R: confint(m, method = "wald")[grep("^disp", rownames(.)), ] ("disp.x" -> "disp~x")
    m = fitted(case)
    ci = quiet_fit(m.confint)
    for name, (lo, hi) in reference()[case]["disp_confint"].items():
        se = reference()[case]["disp_se"][name.replace("disp~", "d~")]
        assert abs(ci.loc[name, "lower"] - lo) < 0.05 * se
        assert abs(ci.loc[name, "upper"] - hi) < 0.05 * se


def test_profile_interval_of_a_dispersion_coefficient():
    m = fitted("nb2")
    wald = m.confint(parm=["disp~x"])
    prof = m.confint(parm=["disp~x"], method="profile")
    est = m.dispersion_effects_.loc["x", "estimate"]
    lo, hi = prof.loc["disp~x", ["lower", "upper"]]
    assert lo < est < hi
    width = wald.loc["disp~x", "upper"] - wald.loc["disp~x", "lower"]
    assert abs((hi - lo) - width) < 0.25 * width


def test_summary_prints_the_dispersion_model():
    m = fitted("nb2")
    text = str(m.summary())
    assert " Dispersion: ~x\n" in text  # as glmmTMB's header
    assert "Dispersion parameter for nbinom2 family" not in text
    block = text.split("Dispersion model:")[1]
    for name, value in reference()["nb2"]["disp"].items():
        row = [ln for ln in block.splitlines() if ln.startswith(name)][0]
        assert float(row.split()[1]) == pytest.approx(value, abs=0.01)
    assert m.summary().dispersion_model.shape == (2, 4)
    assert "modelled on the log scale" in m.report()
    # a constant dispersion keeps glmmTMB's one line
    const = quiet_fit(NegBinGLMM().fit, *_xy()[:2], groups=_xy()[2])
    assert "Dispersion parameter for nbinom2 family" in str(const.summary())
    assert "Dispersion model:" not in str(const.summary())


# -- the estimator interface -------------------------------------------------------
def _xy(outcome="ynb2"):
    d = disp_data()
    return d[["x", "w"]], d[outcome], d["id"]


@cache
def nb_model(disp="1 + x", family="nbinom2"):
    X, y, g = _xy("ynb2" if family == "nbinom2" else "ynb1")
    return quiet_fit(NegBinGLMM(dispersion=disp, family=family).fit, X, y, groups=g)


def test_estimator_matches_the_formula_front_end():
    m = nb_model("1 + x + w")
    f = fitted("nb2_w")
    assert m.loglik_ == pytest.approx(f.loglik_, abs=1e-6)
    np.testing.assert_allclose(
        m.dispersion_effects_.to_numpy(), f.dispersion_effects_.to_numpy(), rtol=1e-4
    )


def test_theta_and_predictions_use_each_rows_dispersion():
    m = nb_model()
    X, _, g = _xy()
    delta = m.dispersion_effects_["estimate"].to_numpy()
    theta = np.exp(delta[0] + delta[1] * X["x"].to_numpy())
    np.testing.assert_allclose(m.predict_dispersion(X), theta, rtol=1e-10)
    assert m.theta_ == pytest.approx(theta.mean(), rel=1e-10)  # the mean over the rows
    assert not m.theta_at_boundary_
    eta, _ = m._linear_predictor(X, g, None, "marginal")
    mu = np.exp(eta)
    proba = m.predict_proba(X, groups=g, max_count=60)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-10)
    for k in (0, 1, 4):
        expected = stats.nbinom.pmf(k, theta, theta / (theta + mu))
        np.testing.assert_allclose(proba[:, k], expected, rtol=1e-8)


def test_simulation_and_residuals_follow_the_rows_dispersion():
    m = nb_model()
    X, y, g = _xy()
    sims = m.simulate(400, random_state=0, new_random_effects=False)
    theta = m.predict_dispersion(X)
    mu = m.fitted()
    # the simulated variance of each row follows mu + mu^2 / theta_i
    var = sims.var(axis=1)
    model_var = mu + mu**2 / theta
    for rows in (theta < np.quantile(theta, 0.2), theta > np.quantile(theta, 0.8)):
        assert var[rows].mean() == pytest.approx(model_var[rows].mean(), rel=0.1)
    pearson = m.residuals("pearson")
    np.testing.assert_allclose(pearson, (y - mu) / np.sqrt(model_var), rtol=1e-10)


def test_beta_binomial_dispersion_model():
    d = disp_data()
    X = d[["x", "w"]]
    m = quiet_fit(
        BinomialGLMM(family="betabinomial", dispersion="1 + w").fit,
        X,
        d["ybb"],
        groups=d["id"],
        trials=d["trials"],
    )
    f = fitted("bb")
    assert m.loglik_ == pytest.approx(f.loglik_, abs=1e-6)
    phi = m.predict_dispersion(X)
    delta = m.dispersion_effects_["estimate"].to_numpy()
    np.testing.assert_allclose(phi, np.exp(delta[0] + delta[1] * d["w"]), rtol=1e-10)
    sims = m.simulate(300, random_state=1, new_random_effects=False)
    assert np.all(sims <= d["trials"].to_numpy()[:, None])


def test_grid_search_over_the_dispersion_model():
    X, y, g = _xy()
    search = GridSearchCV(
        NegBinGLMM(),
        {"dispersion": [None, "1 + x"]},
        cv=GroupKFold(3),
        scoring="neg_mean_poisson_deviance",
    )
    quiet_fit(search.fit, X, y, groups=g)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    ll = search.cv_results_["mean_test_score"]
    assert len(ll) == 2


def test_anova_nests_dispersion_models_by_their_columns():
    from sklearn_glmm.inference import anova

    X, y, g = _xy()
    const = quiet_fit(NegBinGLMM().fit, X, y, groups=g)
    table = quiet_fit(anova, const, nb_model())
    assert table["Df"].iloc[1] == 1
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (nb_model().loglik_ - const.loglik_))
    other = quiet_fit(NegBinGLMM(dispersion="1 + w").fit, X, y, groups=g)
    with pytest.raises(ValueError, match="dispersion model is not a subset"):
        quiet_fit(anova, nb_model(), other)


def test_pickle_without_data_keeps_the_rows_dispersion():
    m = nb_model()
    X, _, g = _xy()
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(back.predict_dispersion(X), m.predict_dispersion(X))
    np.testing.assert_allclose(back.predict_proba(X, groups=g), m.predict_proba(X, groups=g))


def test_caller_data_is_not_modified():
    def use(m, X, g):
        m.predict_proba(X, groups=g)

    assert_caller_data_unchanged(lambda: NegBinGLMM(dispersion="1 + x"), *_xy(), use)


def test_results_do_not_depend_on_the_units_of_a_dispersion_predictor():
    m1 = nb_model("1 + x + w")
    make = lambda: NegBinGLMM(dispersion="1 + x + w")  # noqa: E731
    assert_free_of_units(make, "dispersion_effects_", *_xy(), m1)


def test_an_intercept_alone_is_the_constant_model():
    X, y, g = _xy()
    m_none = quiet_fit(NegBinGLMM().fit, X, y, groups=g)
    m_one = quiet_fit(NegBinGLMM(dispersion="1").fit, X, y, groups=g)
    assert m_one.loglik_ == m_none.loglik_
    assert list(m_none.dispersion_effects_.index) == ["(Intercept)"]
    log_theta = m_none.dispersion_effects_.loc["(Intercept)", "estimate"]
    assert np.exp(log_theta) == pytest.approx(m_none.theta_, rel=1e-10)
    # a refit with predictors replaces the table; a family without a dispersion has none
    est = NegBinGLMM().fit(X, y, groups=g)
    assert len(est.dispersion_effects_) == 1
    quiet_fit(est.set_params(dispersion="1 + x").fit, X, y, groups=g)
    assert list(est.dispersion_effects_.index) == ["(Intercept)", "x"]
    pois = quiet_fit(PoissonGLMM().fit, X, y, groups=g)
    assert not hasattr(pois, "dispersion_effects_")
    assert not hasattr(pois, "zero_inflation_effects_")


def test_the_constant_boundary_applies_to_the_constant_model_only():
    # Poisson data: the constant theta settles at infinity with its warning; with
    # predictors there is no flat side and no boundary estimate
    rng = np.random.default_rng(2)
    n, G = 600, 60
    g = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(1.0 + 0.3 * x + rng.normal(0, 0.3, G)[g]))
    X = pd.DataFrame({"x": x})
    with pytest.warns(OverdispersionWarning):
        m0 = NegBinGLMM().fit(X, y, groups=g)
    assert m0.theta_at_boundary_ and m0.theta_ == np.inf
    assert m0.dispersion_effects_.loc["(Intercept)", "estimate"] == np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverdispersionWarning)
        m = quiet_fit(NegBinGLMM(dispersion="1 + x").fit, X, y, groups=g)
    assert not m.theta_at_boundary_
    assert m.loglik_ >= m0.loglik_ - 1e-6  # nests the constant model


@pytest.mark.parametrize(
    "spec, match",
    [
        ("1 + (1 | id)", "not supported"),
        ("1 + nope", "not features of X"),
        ("0", "no intercept and no slope"),
        ("diag(1 + x)", "random effects only"),
    ],
)
def test_bad_dispersion_terms_raise_clear_errors(spec, match):
    X, y, g = _xy()
    with pytest.raises(ValueError, match=match):
        NegBinGLMM(dispersion=spec).fit(X, y, groups=g)


def test_a_family_without_dispersion_refuses_a_dispersion_model():
    d = disp_data()
    with pytest.raises(ValueError, match="no dispersion parameter"):
        BinomialGLMM(dispersion="1 + x").fit(d[["x"]], d["ybb"], groups=d["id"], trials=d["trials"])
    with pytest.raises(ValueError, match="no dispersion parameter"):
        glmmTMB("ynb2 ~ x + (1 | id)", d, family="poisson", dispformula="~ x")
    with pytest.raises(NotImplementedError, match="not supported"):
        glmmTMB("ynb2 ~ x + (1 | id)", d, family="nbinom2", dispformula="~ (1 | id)")
    with pytest.raises(ValueError, match="no dispersion parameter"):
        PoissonGLMM().fit(d[["x"]], d["ynb2"], groups=d["id"]).predict_dispersion(d[["x"]])


# -- the families with per-row dispersion -------------------------------------------
FAMILIES = ["negbin", "negbin1", "betabinomial"]


def _rows(name, n=7, seed=0):
    rng = np.random.default_rng(seed)
    eta = rng.normal(0.3, 1.0, n) if name != "betabinomial" else rng.normal(0, 1.2, n)
    log_disp = rng.normal(0.0, 1.5, n)
    trials = rng.integers(2, 15, n).astype(float)
    return eta, log_disp, trials


@pytest.mark.parametrize("name", FAMILIES)
def test_per_row_log_densities_sum_to_one(name):
    fam = make_family(name)
    eta, log_disp, trials = _rows(name)
    if name == "betabinomial":
        ys = np.arange(int(trials.max()) + 1)[:, None]
        ok = ys <= trials
        y = np.where(ok, ys, 0.0)
        ll = fam.derivs(
            y, np.broadcast_to(eta, y.shape), np.broadcast_to(trials, y.shape), None, (log_disp,)
        ).loglik
        total = np.sum(np.where(ok, np.exp(ll), 0.0), axis=0)
    else:
        y = np.arange(3000.0)[:, None] * np.ones(len(eta))
        ll = fam.derivs(y, np.broadcast_to(eta, y.shape), None, None, (log_disp,)).loglik
        total = np.exp(special.logsumexp(ll, axis=0))
    np.testing.assert_allclose(total, 1.0, atol=1e-10)


@pytest.mark.parametrize("name", FAMILIES)
def test_per_row_values_equal_the_scalar_family_row_by_row(name):
    fam = make_family(name)
    eta, log_disp, trials = _rows(name, seed=1)
    y = np.minimum(np.arange(len(eta)) * 2.0, trials)
    t = trials if name == "betabinomial" else None
    per_row = fam.derivs(y, eta, t, None, (log_disp,))
    for i in range(len(eta)):
        ti = None if t is None else t[i : i + 1]
        one = fam.derivs(y[i : i + 1], eta[i : i + 1], ti, None, np.array([log_disp[i]]))
        for a, b in zip(per_row, one):
            assert a[i] == pytest.approx(b[0], rel=1e-12, abs=1e-14)


def test_nb2_rows_on_the_bound_are_the_poisson_limit():
    fam = make_family("negbin")
    y = np.array([0.0, 3.0, 7.0])
    eta = np.array([0.1, 1.0, 2.0])
    lt = np.array([0.5, 40.0, 1.0])  # the middle row beyond the bound (theta = inf)
    d = fam.derivs(y, eta, None, None, (lt,))
    pois = make_family("poisson").derivs(y, eta, None, None)
    assert d.loglik[1] == pois.loglik[1]
    assert np.isfinite(d.loglik).all()
    dl = fam.extra_derivs(y, eta, None, None, (lt,))[0]
    assert dl[0, 1] == 0.0 and dl[0, 0] != 0.0


def test_nb2_on_the_bound_predicts_and_simulates_as_poisson():
    # theta_ = inf reported: scipy's nbinom at theta = e^30 (the bound of log theta) put
    # P(Y = k) up to 0.5 % off the Poisson probabilities; on the bound the limit's are used
    # for probabilities, variance and draws, value by value for per-row values
    fam, pois = make_family("negbin"), make_family("poisson")
    k, mu = np.arange(0, 12), 0.5
    for lt in (30.0, np.full(len(k), 30.0)):
        np.testing.assert_array_equal(fam.pmf(k, mu, (lt,)), stats.poisson.pmf(k, mu))
        np.testing.assert_array_equal(fam.cdf(k, mu, None, (lt,)), stats.poisson.cdf(k, mu))
        np.testing.assert_array_equal(fam.sf(k, mu, (lt,)), stats.poisson.sf(k, mu))
        np.testing.assert_array_equal(fam.variance(k + 1.0, None, (lt,)), k + 1.0)
    mus = np.full((20, 3), 2.0)
    draws = fam.sample(mus, None, (30.0,), np.random.default_rng(3))
    np.testing.assert_array_equal(draws, pois.sample(mus, None, (), np.random.default_rng(3)))
    # a dispersion model's rows beyond the bound (its slope is free) draw Poisson counts
    # too: theta = e^800 overflowed to inf, and the gamma draws raised an error
    rows = np.array([1.0, 800.0, 30.0])[:, None] * np.ones((1, 4000))
    draws = fam.sample(np.full((3, 4000), 3.0), None, (rows,), np.random.default_rng(1))
    assert np.isfinite(draws).all()
    assert draws[1:].var() == pytest.approx(3.0, rel=0.05)
    mixed = np.where(k < 6, 30.0, 1.0)
    got = fam.pmf(k, mu, (mixed,))
    np.testing.assert_array_equal(got[:6], stats.poisson.pmf(k[:6], mu))
    np.testing.assert_allclose(got[6:], fam.pmf(k[6:], mu, (1.0,)), rtol=1e-12)


def test_nb2_deviance_on_and_near_the_bound():
    # on the bound (theta_ = inf) the unit deviance is the Poisson's; the direct form at
    # theta = e^30 put it 1 % off (deviance residuals 0.05 off, D^2 score 2e-3 off), and
    # at theta = e^22, where a dispersion model's rows end, a deviance residual 2 % off
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    fam, pois = make_family("negbin"), make_family("poisson")
    y = np.array([0.0, 1.0, 2.0, 5.0, 12.0, 40.0, 300.0, 3.0])
    mu = np.array([0.3, 1.2, 2.5, 4.0, 8.0, 30.0, 280.0, 40.0])
    for lt in (30.0, np.full(len(y), 30.0)):
        np.testing.assert_array_equal(
            fam.unit_deviance(y, mu, None, (lt,)), pois.unit_deviance(y, mu, None)
        )

    def reference(k, m, theta):
        k, m, theta = mpmath.mpf(k), mpmath.mpf(m), mpmath.mpf(theta)
        t1 = k * mpmath.log(k / m) if k > 0 else 0
        return float(2 * (t1 - (k + theta) * mpmath.log((k + theta) / (m + theta))))

    for lt in (29.0, 22.0, 5.0, -3.0):
        expected = [reference(k, m, np.exp(lt)) for k, m in zip(y, mu)]
        np.testing.assert_allclose(fam.unit_deviance(y, mu, None, (lt,)), expected, rtol=1e-9)


def test_nb2_probabilities_just_inside_the_bound():
    # scipy's nbinom takes theta / (theta + mu), which rounds to 1 within 1e-16: at theta
    # = e^29 (a dispersion model's rows end anywhere on the ridge towards the bound)
    # P(Y = k) came out 1e-3 off and P(Y <= k) 1e-4 off
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    fam = make_family("negbin")
    k = np.array([0.0, 1.0, 3.0, 8.0, 40.0, 300.0])
    mu = np.array([0.3, 1.0, 3.0, 10.0, 30.0, 280.0])

    def pmf(j, m, theta):
        j, m, theta = mpmath.mpf(j), mpmath.mpf(m), mpmath.mpf(theta)
        log_p = (
            mpmath.loggamma(j + theta)
            - mpmath.loggamma(theta)
            - mpmath.loggamma(j + 1)
            + theta * mpmath.log(theta / (theta + m))
            + j * mpmath.log(m / (theta + m))
        )
        return mpmath.exp(log_p)

    for lt in (29.0, 25.0):
        theta = np.exp(lt)
        p = [float(pmf(j, m, theta)) for j, m in zip(k, mu)]
        c = [mpmath.fsum(pmf(i, m, theta) for i in range(int(j) + 1)) for j, m in zip(k, mu)]
        np.testing.assert_allclose(fam.pmf(k, mu, (lt,)), p, rtol=1e-10)
        np.testing.assert_allclose(fam.cdf(k, mu, None, (lt,)), [float(v) for v in c], rtol=1e-10)
        np.testing.assert_allclose(fam.sf(k, mu, (lt,)), [float(1 - v) for v in c], rtol=1e-10)
    # the same numbers as scipy's where its theta is moderate, and none off the support
    for lt in (2.0, 11.0):
        t = np.exp(lt)
        np.testing.assert_allclose(
            fam.pmf(k, mu, (lt,)), stats.nbinom.pmf(k, t, t / (t + mu)), rtol=1e-12
        )
    kk = np.array([-1.0, 2.5, 2.0])
    np.testing.assert_array_equal(fam.pmf(kk, 3.0, (29.0,))[:2], 0.0)
    np.testing.assert_array_equal(
        fam.cdf(kk, 3.0, None, (29.0,))[1], fam.cdf(2.0, 3.0, None, (29.0,))
    )
    assert fam.cdf(kk, 3.0, None, (29.0,))[0] == 0.0 and fam.sf(kk, 3.0, (29.0,))[0] == 1.0


def test_nb2_fit_at_the_poisson_limit_predicts_poisson_probabilities():
    # binomial counts (less variable than Poisson): theta runs to its bound, theta_ = inf;
    # its probabilities at the fixed effects are the Poisson ones at its means
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(40), 10)
    x = rng.normal(size=400)
    y = rng.binomial(30, special.expit(-3.5 + 0.3 * x + rng.normal(0, 0.4, 40)[g]))
    X = pd.DataFrame({"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = NegBinGLMM().fit(X, y, groups=g)
    assert m.theta_ == np.inf
    P = m.predict_proba(X.iloc[:5], groups=g[:5], population="zero")
    mu = m.predict(X.iloc[:5], groups=g[:5], population="zero")
    Q = stats.poisson.pmf(np.arange(P.shape[1] - 1)[None, :], mu[:, None])
    np.testing.assert_allclose(P[:, :-1], Q, rtol=1e-12)
    # its deviance residuals are the Poisson ones at its fitted means
    f = m.fitted()
    dev = 2.0 * (special.xlogy(y, np.where(y > 0, y / f, 1.0)) - (y - f))
    expected = np.sign(y - f) * np.sqrt(np.clip(dev, 0.0, None))
    np.testing.assert_allclose(m.residuals("deviance"), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["negbin"])
def test_per_row_extra_derivatives_against_finite_differences(name):
    fam = make_family(name)
    eta, log_disp, _ = _rows(name, seed=2)
    y = np.array([0.0, 1.0, 3.0, 8.0, 0.0, 2.0, 15.0])
    got = fam.extra_derivs(y, eta, None, None, (log_disp,))
    h = 1e-6
    up = fam.derivs(y, eta, None, None, (log_disp + h,))
    dn = fam.derivs(y, eta, None, None, (log_disp - h,))
    for g_, field in zip(got, ("loglik", "d1", "w")):
        fd = (getattr(up, field) - getattr(dn, field)) / (2 * h)
        np.testing.assert_allclose(g_[0], fd, rtol=1e-6, atol=1e-8)


# -- the engine ------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["nbinom2", "nbinom1", "betabinomial"])
def test_a_design_of_ones_is_the_constant_dispersion(family):
    d = disp_data()
    X, g = d[["x", "w"]], d["id"]
    if family == "betabinomial":
        est = BinomialGLMM(family="betabinomial")
        m = quiet_fit(est.fit, X, d["ybb"], groups=g, trials=d["trials"])
    else:
        est = NegBinGLMM(family=family)
        m = quiet_fit(est.fit, X, d["ynb2" if family == "nbinom2" else "ynb1"], groups=g)
    data = m.fit_result_.objective.data
    assert data.extra_designs is None
    ones = np.ones((len(data.y), 1))
    designed = designed_objective(m, (ones,), abs_tol=1e-10).data
    x, record = quiet_fit(refit, designed)
    assert -0.5 * record.objective == pytest.approx(m.loglik_, abs=1e-8)
    np.testing.assert_allclose(x, m.fit_result_.params, atol=1e-4)


@pytest.mark.parametrize(
    "family, disp, zi, n_agq",
    [
        ("nbinom2", "1 + x", False, 1),
        ("nbinom2", "0 + x + w", False, 5),
        ("nbinom1", "1 + x", False, 1),
        ("nbinom1", "1 + x", False, 5),
        ("nbinom2", "1 + x", "1 + w", 1),
        ("nbinom1", "1 + w", True, 1),
    ],
)
def test_gradient_in_the_dispersion_coefficients(family, disp, zi, n_agq):
    X, y, g = _xy("ynb2" if family == "nbinom2" else "ynb1")
    est = NegBinGLMM(dispersion=disp, family=family, zero_inflation=zi, n_agq=n_agq)
    m = quiet_fit(est.fit, X, y, groups=g)
    obj = m.fit_result_.objective
    rng = np.random.default_rng(3)
    x = m.fit_result_.params + rng.normal(0.0, 0.05, len(m.fit_result_.params))
    _, grad = obj.value_and_grad(x)
    p0 = len(x) - obj.data.n_extra
    for k in range(p0, len(x)):
        h = 1e-5
        up, dn = x.copy(), x.copy()
        up[k] += h
        dn[k] -= h
        fd = (obj.evaluate(up) - obj.evaluate(dn)) / (2 * h)
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-5), k


def test_gradient_of_a_beta_binomial_dispersion_model():
    d = disp_data()
    est = BinomialGLMM(family="betabinomial", dispersion="1 + w")
    m = quiet_fit(est.fit, d[["x", "w"]], d["ybb"], groups=d["id"], trials=d["trials"])
    obj = m.fit_result_.objective
    x = m.fit_result_.params + 0.03
    _, grad = obj.value_and_grad(x)
    for k in range(len(x) - 2, len(x)):
        up, dn = x.copy(), x.copy()
        up[k] += 1e-5
        dn[k] -= 1e-5
        fd = (obj.evaluate(up) - obj.evaluate(dn)) / 2e-5
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-5)


def test_gradient_without_random_effects():
    X, y, _ = _xy()
    m = quiet_fit(NegBinGLMM(dispersion="1 + x + w").fit, X, y)
    obj = m.fit_result_.objective
    assert isinstance(obj, GLMObjective)
    x = m.fit_result_.params + 0.03
    _, grad = obj.value_and_grad(x)
    for k in range(len(x)):
        up, dn = x.copy(), x.copy()
        up[k] += 1e-5
        dn[k] -= 1e-5
        fd = (obj.evaluate(up) - obj.evaluate(dn)) / 2e-5
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize(
    "family, disp, zi",
    [("nbinom2", None, False), ("nbinom1", "1 + x", False), ("nbinom2", "1 + x", "1 + w")],
)
def test_quadrature_extra_partials_are_the_family_derivatives_at_every_node(family, disp, zi):
    """The quadrature's derivatives in the family's parameters at the nodes' linear
    predictors, (nodes, rows), come from the family's analytic ``extra_derivs`` on the
    nodes' rows one block after another: the central differences they replace, to
    their accuracy."""
    from sklearn_glmm._engine import blocks, quadrature

    X, y, g = _xy("ynb2" if family == "nbinom2" else "ynb1")
    est = NegBinGLMM(dispersion=disp, family=family, zero_inflation=zi, n_agq=5)
    m = quiet_fit(est.fit, X, y, groups=g)
    obj = m.fit_result_.objective
    obj.evaluate(m.fit_result_.params)
    s = obj.state
    eta = s["eta"] + np.linspace(-0.5, 0.5, 3)[:, None]  # three nodes' predictors
    got = quadrature._extra_partials(obj, eta, ("loglik", "d1", "w"))
    assert len(got) == len(s["extra"])
    for e in range(len(s["extra"])):
        up = obj._derivs(eta, blocks.shift_block(s["extra"], e, 1e-5))
        dn = obj._derivs(eta, blocks.shift_block(s["extra"], e, -1e-5))
        for k, field in enumerate(("loglik", "d1", "w")):
            fd = (getattr(up, field) - getattr(dn, field)) / 2e-5
            assert got[e][k].shape == eta.shape
            np.testing.assert_allclose(got[e][k], fd, rtol=1e-6, atol=1e-7)


def test_formula_model_predicts_the_dispersion_from_its_variables():
    # predict_dispersion of a formula fit refused the formula's variables (a text factor)
    # where predict, predict_mean and predict_interval read them
    rng = np.random.default_rng(4)
    n = 300
    d = pd.DataFrame({"x": rng.normal(size=n), "f": rng.choice(["a", "b"], n)})
    d["g"] = rng.integers(0, 20, n)
    theta = np.exp(0.5 + 0.6 * (d["f"] == "b"))
    mu = np.exp(0.8 + 0.3 * d["x"])
    d["y"] = rng.negative_binomial(theta, theta / (theta + mu))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmmTMB("y ~ x + f + (1 | g)", d, family="nbinom2", dispformula="~ f")
    got = m.predict_dispersion(d.head(5))
    delta = m.dispersion_effects_["estimate"].to_numpy()
    np.testing.assert_allclose(got, np.exp(delta[0] + delta[1] * (d["f"].head(5) == "b")))
    with_na = d.head(3).assign(f=["a", None, "b"])
    assert np.isnan(m.predict_dispersion(with_na)[1])
