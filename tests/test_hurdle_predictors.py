"""Hurdle models whose zero part depends on predictors (glmmTMB's ``truncated_*``
families with ``ziformula = ~ x``), and hurdle / zero-truncated NB models whose
dispersion depends on predictors (``dispformula = ~ x``).

Reference fits: ``tests/fixtures/hurdle_predictors/hurdle_predictors.json``, written by
``make_hurdle_predictors.R`` (glmmTMB 1.1.5) from ``hurdle_predictors.csv``
(``make_hurdle_predictors_data.py``) and glmmTMB's Salamanders
(``tests/fixtures/hurdle/salamanders.csv``).
"""

from __future__ import annotations

import pickle
from functools import cache

import numpy as np
import pandas as pd
import pytest
from glmmtmb_cases import (
    assert_within_se,
    designed_objective,
    fixture_csv,
    fixture_json,
    quiet_fit,
)
from reference import REFERENCE_SE_REL
from scipy import special
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._compare import anova
from sklearn_glmm._engine.families import make_family
from sklearn_glmm.formula import glmmTMB


def reference() -> dict:
    return fixture_json("hurdle_predictors", "hurdle_predictors.json")


def hp_data() -> pd.DataFrame:
    return fixture_csv("hurdle_predictors", "hurdle_predictors.csv")


def salamanders() -> pd.DataFrame:
    return fixture_csv("hurdle", "salamanders.csv")


F = " ~ x + w + (1 | id)"
SAL = "count ~ minedno + DOY + (1 | site)"
# the Python side of each call in make_hurdle_predictors.R: formula, family, ziformula,
# dispformula, data
CASES = {
    "hp_zx": ("yhp" + F, "truncated_poisson", "~ x", None, hp_data),
    "hnb2_zw": ("yhnb2" + F, "truncated_nbinom2", "~ w", None, hp_data),
    "hnb1_zx": ("yhnb1" + F, "truncated_nbinom1", "~ x", None, hp_data),
    "hp_zxw": ("yhp" + F, "truncated_poisson", "~ x + w", None, hp_data),
    "hnb2_zw_dx": ("yhnb2" + F, "truncated_nbinom2", "~ w", "~ x", hp_data),
    "hnb2_dx": ("yhnb2" + F, "truncated_nbinom2", "~ 1", "~ x", hp_data),
    "hnb1_zx_dx": ("yhnb1" + F, "truncated_nbinom1", "~ x", "~ x", hp_data),
    "tnb2_dx": ("ytnb2" + F, "truncated_nbinom2", None, "~ x", hp_data),
    "tnb1_dx": ("ytnb1" + F, "truncated_nbinom1", None, "~ x", hp_data),
    "sal_hnb2_zmined": (SAL, "truncated_nbinom2", "~ minedno", None, salamanders),
    "sal_hp_zmined": (SAL, "truncated_poisson", "~ minedno + DOY", None, salamanders),
}


@cache
def fitted(case: str):
    formula, family, zi, disp, data = CASES[case]
    return quiet_fit(glmmTMB, formula, data(), family=family, ziformula=zi, dispformula=disp)


def _part_se(ref: dict, key: str) -> dict:
    # vcov(m)$zi names its rows "zi~x", vcov(m)$disp "d~x"; fixef(m) names them "x"
    se = ref[key]
    if not isinstance(se, dict):  # one coefficient: R drops the name of diag()'s 1 x 1
        return dict(zip(ref[key.removesuffix("_se")], np.atleast_1d(se)))
    return {k.split("~", 1)[1] if "~" in k else k: v for k, v in se.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_reference_fits(case):
    # R: the call in hurdle_predictors.json for each case (glmmTMB 1.1.5)
    ref = reference()[case]
    m = fitted(case)
    assert m.converged_
    assert abs(m.loglik_ - ref["loglik"]) < 0.01
    assert m.n_params_ == ref["df"]
    fe = m.fixed_effects_
    assert_within_se(fe["estimate"], ref["fixef"], ref["se"])
    for name, se in ref["se"].items():
        assert fe.loc[name, "std_error"] == pytest.approx(se, rel=REFERENCE_SE_REL)
    sd = m.random_effects_cov_[m.fit_result_.factor_order[0]].to_numpy()[0, 0] ** 0.5
    assert sd == pytest.approx(ref["sd"], rel=0.02)
    for part, attr in (("zi", "zero_inflation_effects_"), ("disp", "dispersion_effects_")):
        if part not in ref:
            continue
        table = getattr(m, attr)
        assert list(table.index) == list(ref[part])  # R's names: fixef(m)$zi, fixef(m)$disp
        se = _part_se(ref, part + "_se")
        if not se:  # vcov(m) leaves out a constant dispersion: its estimate alone
            assert table["estimate"].iloc[0] == pytest.approx(ref[part]["(Intercept)"], abs=1e-3)
            continue
        assert_within_se(table["estimate"], ref[part], se)
        for name, s in se.items():
            assert table.loc[name, "std_error"] == pytest.approx(s, rel=REFERENCE_SE_REL)


@pytest.mark.parametrize("case", ["hp_zx", "hnb2_zw_dx", "tnb1_dx", "sal_hnb2_zmined"])
def test_predictions_match_glmmtmb(case):
    # R: predict(m, type = "response" | "zprob" | "conditional" | "disp")[1:6]
    ref = reference()[case]
    m = fitted(case)
    data = CASES[case][4]().head(6)
    np.testing.assert_allclose(m.predict(data), ref["predict"], rtol=2e-3)
    # a hurdle's mean of the positive counts (a zero-truncated model's own mean)
    np.testing.assert_allclose(m.predict(data, type="conditional"), ref["conditional"], rtol=2e-3)
    if CASES[case][2] is not None:
        np.testing.assert_allclose(m.predict(data, type="zprob"), ref["zprob"], rtol=2e-3)
        # glmmTMB's type = "zlink": the zero part's linear predictor, qlogis(zprob)
        zl = np.log(np.asarray(ref["zprob"]) / (1 - np.asarray(ref["zprob"])))
        np.testing.assert_allclose(m.predict(data, type="zlink"), zl, rtol=5e-3, atol=2e-3)
    if "sigma_rows" in ref:
        np.testing.assert_allclose(m.predict(data, type="disp"), ref["sigma_rows"], rtol=2e-2)


@pytest.mark.parametrize("case", ["hp_zx", "hnb2_zw_dx"])
def test_wald_intervals_carry_glmmtmb_names(case):
    # R: confint(m, method = "wald") rows zi.x (disp.x), named zi~x (disp~x) here
    ref = reference()[case]
    ci = quiet_fit(fitted(case).confint)
    for part in ("zi", "disp"):
        se = _part_se(ref, part + "_se") if part + "_se" in ref else {}
        for name, (lo, hi) in ref.get(part + "_confint", {}).items():
            s = se[name.split("~", 1)[1]]
            assert abs(ci.loc[name, "lower"] - lo) < 0.05 * s, name
            assert abs(ci.loc[name, "upper"] - hi) < 0.05 * s, name


def test_estimator_matches_the_formula_front_end():
    d = hp_data()
    m = quiet_fit(PoissonGLMM(hurdle="1 + x").fit, d[["x", "w"]], d["yhp"], groups=d["id"])
    assert m.loglik_ == pytest.approx(fitted("hp_zx").loglik_, abs=1e-6)
    f = fitted("hp_zx").get_params()
    assert f["hurdle"] == "1 + x" and not f["truncated"] and not f["zero_inflation"]


def test_summary_prints_the_zero_part_and_dispersion_models():
    text = str(fitted("hnb2_zw_dx").summary())
    assert " Zero inflation: ~ w" in text or " Zero inflation: ~w" in text
    assert "Zero-inflation model (hurdle: P(Y = 0), logit scale):" in text
    assert "Dispersion model:" in text
    assert "mean over the training rows" in text


def _x():
    d = hp_data()
    return d[["x", "w"]], d["id"]


def test_a_constant_zero_part_is_todays_hurdle():
    # hurdle="1" (an intercept alone) and the design "a column of ones" are hurdle=True
    X, g = _x()
    y = hp_data()["yhnb2"]
    m = quiet_fit(NegBinGLMM(hurdle=True).fit, X, y, groups=g)
    m1 = quiet_fit(NegBinGLMM(hurdle="1").fit, X, y, groups=g)
    assert m1.loglik_ == m.loglik_
    ones = np.ones((len(m.fit_result_.objective.data.y), 1))
    obj = designed_objective(m, (None, ones), abs_tol=1e-9)
    _, g1 = obj.value_and_grad(m.fit_result_.params)
    _, g0 = m.fit_result_.objective.value_and_grad(m.fit_result_.params)
    np.testing.assert_allclose(g1, g0, atol=1e-8)


def test_a_constant_dispersion_design_is_the_scalar_block():
    X, g = _x()
    y = hp_data()["ytnb1"]
    m = quiet_fit(NegBinGLMM(truncated=True, family="nbinom1").fit, X, y, groups=g)
    ones = np.ones((len(m.fit_result_.objective.data.y), 1))
    obj = designed_objective(m, (ones,), abs_tol=1e-9)
    _, g1 = obj.value_and_grad(m.fit_result_.params)
    _, g0 = m.fit_result_.objective.value_and_grad(m.fit_result_.params)
    np.testing.assert_allclose(g1, g0, atol=1e-6)


@pytest.mark.parametrize(
    "kind, params, y",
    [
        ("hurdle", {"hurdle": "1 + x"}, "yhp"),
        ("hurdle_nb2", {"hurdle": "1 + w", "dispersion": "1 + x"}, "yhnb2"),
        ("hurdle_nb1", {"hurdle": "1 + x", "dispersion": "1 + x", "family": "nbinom1"}, "yhnb1"),
        ("truncated_nb2", {"truncated": True, "dispersion": "0 + x + w"}, "ytnb2"),
    ],
)
def test_gradient_in_the_block_coefficients(kind, params, y):
    X, g = _x()
    est = (PoissonGLMM if kind == "hurdle" else NegBinGLMM)(**params)
    m = quiet_fit(est.fit, X, hp_data()[y], groups=g)
    obj = m.fit_result_.objective
    x = m.fit_result_.params + np.random.default_rng(3).normal(0.0, 0.05, len(m.fit_result_.params))
    _, grad = obj.value_and_grad(x)
    for k in range(len(x)):
        h = 1e-5
        up, dn = x.copy(), x.copy()
        up[k] += h
        dn[k] -= h
        fd = (obj.evaluate(up) - obj.evaluate(dn)) / (2 * h)
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-5), k


# -- the family with per-row values ---------------------------------------------------
FAMILIES = [("poisson", 0), ("negbin", 1), ("negbin1", 1)]


def _per_row(name, n_base, n, rng, hurdle=True):
    fam = make_family(name, hurdle=hurdle, truncated=not hurdle)
    values = tuple(rng.normal(0.3, 0.8, n) for _ in range(n_base))
    if hurdle:
        values += (rng.normal(0.0, 1.0, n),)
    return fam, values


@pytest.mark.parametrize("name, n_base", FAMILIES)
@pytest.mark.parametrize("hurdle", [True, False])
def test_per_row_derivatives_against_finite_differences(name, n_base, hurdle):
    rng = np.random.default_rng(1)
    n = 40
    fam, extra = _per_row(name, n_base, n, rng, hurdle)
    y = rng.poisson(2.0, n).astype(float) + (0.0 if hurdle else 1.0)
    eta = rng.normal(0.5, 1.0, n)
    d = fam.derivs(y, eta, None, None, extra)
    h = 1e-6
    dp, dm = fam.derivs(y, eta + h, None, None, extra), fam.derivs(y, eta - h, None, None, extra)
    np.testing.assert_allclose(d.d1, (dp.loglik - dm.loglik) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d.w, -(dp.d1 - dm.d1) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d.w3, (dp.w - dm.w) / (2 * h), rtol=1e-5, atol=1e-6)
    dl, dd1, dw = fam.extra_derivs(y, eta, None, None, extra)
    for k in range(len(extra)):
        up = tuple(v + h if j == k else v for j, v in enumerate(extra))
        dn = tuple(v - h if j == k else v for j, v in enumerate(extra))
        a, b = fam.derivs(y, eta, None, None, up), fam.derivs(y, eta, None, None, dn)
        np.testing.assert_allclose(dl[k], (a.loglik - b.loglik) / (2 * h), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dd1[k], (a.d1 - b.d1) / (2 * h), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(dw[k], (a.w - b.w) / (2 * h), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, n_base", FAMILIES)
@pytest.mark.parametrize("hurdle", [True, False])
def test_per_row_log_density_sums_to_one(name, n_base, hurdle):
    rng = np.random.default_rng(2)
    n = 12
    fam, extra = _per_row(name, n_base, n, rng, hurdle)
    eta = rng.normal(0.0, 1.0, n)
    k = np.arange(400.0)
    col = tuple(v[:, None] for v in extra)
    p = fam.pmf_eta(k[None, :], eta[:, None], col)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-10)
    # the log-density agrees with the probabilities
    y = np.ones(n) * 3.0
    np.testing.assert_allclose(
        np.exp(fam.derivs(y, eta, None, None, extra).loglik), fam.pmf_eta(y, eta, extra)
    )
    # and the mean with them
    np.testing.assert_allclose(fam.mean(eta, extra), (p * k).sum(axis=1), rtol=1e-8)
    if hurdle:
        np.testing.assert_allclose(p[:, 0], special.expit(extra[-1]), rtol=1e-12)


def test_predictions_and_simulation_use_each_rows_zero_probability():
    m = fitted("hp_zx")
    d = hp_data()
    pi = m.predict_zero_inflation(d[["x", "w"]])
    zi = m.zero_inflation_effects_["estimate"]
    np.testing.assert_allclose(pi, special.expit(zi["(Intercept)"] + zi["x"] * d["x"]))
    proba = m.predict_proba(d[["x", "w"]], d["id"])
    np.testing.assert_allclose(proba[:, 0], pi, rtol=1e-10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-10)
    share = (m.simulate(n_sim=200, random_state=0) == 0).mean(axis=1)
    assert np.corrcoef(share, pi)[0, 1] > 0.5
    assert abs(share.mean() - pi.mean()) < 0.02


def test_anova_nests_the_constant_zero_part():
    X, g = _x()
    y = hp_data()["yhp"]
    small = quiet_fit(PoissonGLMM(hurdle=True).fit, X, y, groups=g)
    big = quiet_fit(PoissonGLMM(hurdle="1 + x").fit, X, y, groups=g)
    table = anova(small, big)
    assert table.iloc[-1]["Chisq"] == pytest.approx(2 * (big.loglik_ - small.loglik_), rel=1e-6)
    assert table.iloc[-1]["Df"] == 1


def test_grid_search_over_the_zero_part():
    X, g = _x()
    y = hp_data()["yhp"]
    grid = GridSearchCV(
        PoissonGLMM(),
        {"hurdle": [True, "1 + x"]},
        cv=GroupKFold(3),
        scoring="neg_mean_poisson_deviance",
    )
    quiet_fit(grid.fit, X, y, groups=g)
    assert grid.best_params_["hurdle"] in (True, "1 + x")
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


def test_pickle_round_trip():
    m = fitted("hnb2_zw_dx")
    back = pickle.loads(pickle.dumps(m))
    d = hp_data().head(5)
    np.testing.assert_allclose(back.predict(d), m.predict(d))


def test_bad_hurdle_terms_raise_clear_errors():
    X, g = _x()
    y = hp_data()["yhp"]
    with pytest.raises(ValueError, match="hurdle=.*not supported"):
        PoissonGLMM(hurdle="1 + (1 | id)").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="hurdle names"):
        PoissonGLMM(hurdle="1 + nope").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="choose one"):
        PoissonGLMM(hurdle="1 + x", zero_inflation=True).fit(X, y, groups=g)


def test_formula_refuses_a_random_effect_in_a_hurdles_ziformula():
    with pytest.raises((ValueError, NotImplementedError), match="not supported"):
        glmmTMB("yhp ~ x + (1 | id)", hp_data(), family="truncated_poisson", ziformula="~ (1 | id)")


def test_bootstrap_intervals_cover_the_zero_part_and_dispersion_rows():
    m = fitted("hnb2_zw_dx")
    ci = quiet_fit(m.confint, method="bootstrap", n_boot=10, random_state=0)
    for name in ["zi~(Intercept)", "zi~w", "disp~(Intercept)", "disp~x"]:
        lo, hi = ci.loc[name, ["lower", "upper"]]
        assert np.isfinite(lo) and np.isfinite(hi) and lo < hi, name


def test_profile_interval_of_a_zero_part_coefficient():
    m = fitted("hp_zx")
    wald = m.confint(parm=["zi~x"])
    prof = m.confint(parm=["zi~x"], method="profile")
    lo, hi = prof.loc["zi~x", ["lower", "upper"]]
    assert lo < m.zero_inflation_effects_.loc["x", "estimate"] < hi
    width = wald.loc["zi~x", "upper"] - wald.loc["zi~x", "lower"]
    assert abs((hi - lo) - width) < 0.25 * width


def test_gradient_with_quadrature():
    # adaptive Gauss-Hermite quadrature with per-row zero part and dispersion values
    X, g = _x()
    est = NegBinGLMM(hurdle="1 + w", dispersion="1 + x", n_agq=5)
    m = quiet_fit(est.fit, X, hp_data()["yhnb2"], groups=g)
    assert m.converged_
    obj = m.fit_result_.objective
    x = m.fit_result_.params + np.random.default_rng(4).normal(0.0, 0.05, len(m.fit_result_.params))
    _, grad = obj.value_and_grad(x)
    for k in range(len(x)):
        up, dn = x.copy(), x.copy()
        up[k] += 1e-5
        dn[k] -= 1e-5
        fd = (obj.evaluate(up) - obj.evaluate(dn)) / 2e-5
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-5), k
