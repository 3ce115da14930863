"""Zero inflation that depends on predictors (glmmTMB's ``ziformula = ~ x``).

Reference fits: ``tests/fixtures/zi_predictors/zi.json``, written by ``make_zi.R``
(glmmTMB 1.1.5) from ``zi.csv`` (``make_zi_data.py``) and glmmTMB's Salamanders
(exported to ``salamanders.csv`` by the same script).
"""

from __future__ import annotations

import dataclasses
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
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.objective import GLMObjective
from sklearn_glmm.exceptions import TrainingDataError
from sklearn_glmm.formula import glmmTMB


def reference() -> dict:
    return fixture_json("zi_predictors", "zi.json")


def zi_data() -> pd.DataFrame:
    return fixture_csv("zi_predictors", "zi.csv")


@cache
def salamanders() -> pd.DataFrame:
    df = fixture_csv("zi_predictors", "salamanders.csv").copy()
    for col, levels in reference()["salamanders_levels"].items():
        df[col] = pd.Categorical(df[col], categories=levels)  # R's levels, in R's order
    return df


# the Python side of each call in make_zi.R
CASES = {
    "zip": ("ypois ~ x + w + (1 | id)", "poisson", "~ x", zi_data),
    "zinb2": ("ynb2 ~ x + w + (1 | id)", "nbinom2", "~ x + w", zi_data),
    "zinb1": ("ynb1 ~ x + w + (1 | id)", "nbinom1", "~ x", zi_data),
    "sal_zip": ("count ~ spp + mined + (1 | site)", "poisson", "~ mined", salamanders),
    "sal_zinb2": ("count ~ spp + mined + (1 | site)", "nbinom2", "~ mined", salamanders),
}


# sal_zinb2's zero inflation is near-separated by `mined` (zi~minedno -3.48, SE 3.0):
# along that flat direction the two optima differ by 1.9e-4 (log-likelihoods 4e-9
# apart), and the curvature there moves the SE by 4.3e-4 relative; ours is the same to
# 1e-8 with halved and quartered difference steps, so the difference is the point's
FLAT_ZI_SE_REL = {"sal_zinb2": 1e-3}


@cache
def fitted(case: str):
    formula, family, zi, data = CASES[case]
    return quiet_fit(glmmTMB, formula, data(), family=family, ziformula=zi)


@pytest.mark.parametrize("case", list(CASES))
def test_reference_fits(case):
    # R: see the call in zi.json for each case (glmmTMB 1.1.5, make_zi.R)
    ref = reference()[case]
    m = fitted(case)
    assert m.converged_
    assert abs(m.loglik_ - ref["loglik"]) < 0.01
    fe, zi = m.fixed_effects_, m.zero_inflation_effects_
    assert list(zi.index) == list(ref["zi"])  # R's names: fixef(m)$zi
    assert_within_se(fe["estimate"], ref["fixef"], ref["se"])
    zi_se = {k.removeprefix("zi~"): v for k, v in ref["zi_se"].items()}  # vcov(m)$zi names
    assert_within_se(zi["estimate"], ref["zi"], zi_se)
    for name, se in ref["se"].items():
        assert fe.loc[name, "std_error"] == pytest.approx(se, rel=REFERENCE_SE_REL)
    for name, se in zi_se.items():
        rel = FLAT_ZI_SE_REL.get(case, REFERENCE_SE_REL)
        assert zi.loc[name, "std_error"] == pytest.approx(se, rel=rel)
    sd = m.random_effects_cov_[m.fit_result_.factor_order[0]].to_numpy()[0, 0] ** 0.5
    assert sd == pytest.approx(ref["sd"], rel=0.02)
    if "sigma" in ref:  # NB2 theta, NB1 phi: glmmTMB's sigma(m)
        value = m.theta_ if CASES[case][1] == "nbinom2" else m.phi_
        assert value == pytest.approx(ref["sigma"], rel=0.02)


@pytest.mark.parametrize("case", ["zip", "sal_zinb2"])
def test_wald_intervals_carry_glmmtmb_names(case):
    # R: confint(m, method = "wald")[grep("^zi~", rownames(.)), ]
    m = fitted(case)
    ci = quiet_fit(m.confint)
    for name, (lo, hi) in reference()[case]["zi_confint"].items():
        se = reference()[case]["zi_se"][name]
        assert abs(ci.loc[name, "lower"] - lo) < 0.05 * se
        assert abs(ci.loc[name, "upper"] - hi) < 0.05 * se


def test_profile_interval_of_a_zero_inflation_coefficient():
    m = fitted("zip")
    wald = m.confint(parm=["zi~x"])
    prof = m.confint(parm=["zi~x"], method="profile")
    est = m.zero_inflation_effects_.loc["x", "estimate"]
    lo, hi = prof.loc["zi~x", ["lower", "upper"]]
    assert lo < est < hi
    # a likelihood interval, close to the Wald one for a well-determined coefficient
    width = wald.loc["zi~x", "upper"] - wald.loc["zi~x", "lower"]
    assert abs((hi - lo) - width) < 0.25 * width


def test_summary_prints_the_zero_inflation_table():
    m = fitted("sal_zinb2")
    text = str(m.summary())
    assert " Zero inflation: ~mined\n" in text  # the formula, as glmmTMB prints it
    X, y, g = _xy()
    assert " Zero inflation: ~x\n" in str(nb_model().summary())  # the estimator's columns
    block = text.split("Zero-inflation model")[1]
    for name, value in reference()["sal_zinb2"]["zi"].items():
        assert name in block
        row = [ln for ln in block.splitlines() if ln.startswith(name)][0]
        assert float(row.split()[1]) == pytest.approx(value, abs=0.01)
    assert m.summary().zero_inflation.shape == (2, 4)


# -- the estimator interface -------------------------------------------------------
def _xy():
    d = zi_data()
    return d[["x", "w"]], d["ynb2"], d["id"]


@cache
def nb_model(zi="1 + x"):
    X, y, g = _xy()
    return quiet_fit(NegBinGLMM(zero_inflation=zi).fit, X, y, groups=g)


def test_estimator_matches_the_formula_front_end():
    m = nb_model("1 + x + w")
    f = fitted("zinb2")
    assert m.loglik_ == pytest.approx(f.loglik_, abs=1e-6)
    np.testing.assert_allclose(
        m.zero_inflation_effects_.to_numpy(), f.zero_inflation_effects_.to_numpy(), rtol=1e-4
    )


def test_predictions_use_each_rows_probability():
    m = nb_model()
    X, _, g = _xy()
    gamma = m.zero_inflation_effects_["estimate"].to_numpy()
    pi = 1.0 / (1.0 + np.exp(-(gamma[0] + gamma[1] * X["x"].to_numpy())))
    eta, _ = m._linear_predictor(X, g, None, "marginal")
    count_mean = np.exp(eta)
    np.testing.assert_allclose(m.predict(X, groups=g), (1 - pi) * count_mean, rtol=1e-10)
    proba = m.predict_proba(X, groups=g)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-10)
    # P(Y = 0) = pi + (1 - pi) (theta / (theta + mu))^theta
    th = m.theta_
    p0 = pi + (1 - pi) * (th / (th + count_mean)) ** th
    np.testing.assert_allclose(proba[:, 0], p0, rtol=1e-8)
    np.testing.assert_allclose(m.fitted(), m.predict(X, groups=g), rtol=1e-8)
    # zero_inflation_: the mean of the rows' probabilities
    assert m.zero_inflation_ == pytest.approx(pi.mean(), rel=1e-10)
    assert not m.zero_inflation_at_boundary_


def test_simulation_and_residuals_follow_the_rows_probability():
    m = nb_model()
    X, y, g = _xy()
    sims = m.simulate(400, random_state=0, new_random_effects=False)
    gamma = m.zero_inflation_effects_["estimate"].to_numpy()
    pi = 1.0 / (1.0 + np.exp(-(gamma[0] + gamma[1] * X["x"].to_numpy())))
    high, low = pi > np.quantile(pi, 0.8), pi < np.quantile(pi, 0.2)
    p0 = m.predict_proba(X, groups=g)[:, 0]
    # simulated zero frequencies follow the per-row P(Y = 0)
    for rows in (high, low):
        assert np.mean(sims[rows] == 0) == pytest.approx(p0[rows].mean(), abs=0.02)
    res = m.residuals("response")
    np.testing.assert_allclose(res, y - m.fitted(), rtol=1e-12)
    assert np.isfinite(m.residuals("pearson")).all()


def test_grid_search_over_the_zero_inflation_model():
    X, y, g = _xy()
    search = GridSearchCV(
        NegBinGLMM(),
        {"zero_inflation": [False, True, "1 + x"]},
        cv=GroupKFold(3),
        scoring="neg_mean_poisson_deviance",
    )
    quiet_fit(search.fit, X, y, groups=g)
    assert search.best_params_["zero_inflation"] in (True, "1 + x")
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_caller_data_is_not_modified():
    def use(m, X, g):
        m.predict(X, groups=g)
        m.predict_proba(X, groups=g)

    assert_caller_data_unchanged(lambda: PoissonGLMM(zero_inflation="1 + x"), *_xy(), use)


def test_results_do_not_depend_on_the_units_of_a_zero_inflation_predictor():
    m1 = nb_model("1 + x + w")
    make = lambda: NegBinGLMM(zero_inflation="1 + x + w")  # noqa: E731
    assert_free_of_units(make, "zero_inflation_effects_", *_xy(), m1)


def test_an_intercept_alone_is_the_constant_model():
    X, y, g = _xy()
    m_true = quiet_fit(NegBinGLMM(zero_inflation=True).fit, X, y, groups=g)
    m_one = quiet_fit(NegBinGLMM(zero_inflation="1").fit, X, y, groups=g)
    assert m_one.loglik_ == m_true.loglik_
    assert list(m_true.zero_inflation_effects_.index) == ["(Intercept)"]
    logit = m_true.zero_inflation_effects_.loc["(Intercept)", "estimate"]
    assert 1.0 / (1.0 + np.exp(-logit)) == pytest.approx(m_true.zero_inflation_, rel=1e-10)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("1 + (1 | id)", "not supported"),
        ("1 + nope", "not features of X"),
        ("yes", r"\['yes'\], which are not features of X"),
        ("0", "no intercept and no slope"),
        ("diag(1 + x)", "random effects only"),
    ],
)
def test_bad_zero_inflation_terms_raise_clear_errors(spec, match):
    X, y, g = _xy()
    with pytest.raises(ValueError, match=match):
        NegBinGLMM(zero_inflation=spec).fit(X, y, groups=g)


@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.RankDeficiencyWarning")
def test_a_constant_zero_inflation_predictor_is_refused():
    X, y, g = _xy()
    with pytest.raises(ValueError, match="constant"):
        PoissonGLMM(zero_inflation="1 + c").fit(X.assign(c=1.0), y, groups=g)


def test_formula_refuses_a_random_effect_in_ziformula():
    with pytest.raises(NotImplementedError, match="not supported"):
        glmmTMB("ynb2 ~ x + (1 | id)", zi_data(), family="nbinom2", ziformula="~ (1 | id)")


# -- the engine ------------------------------------------------------------------------


@pytest.mark.parametrize("zi_family", ["poisson", "nbinom2", "nbinom1"])
def test_a_design_of_ones_is_the_constant_block(zi_family):
    # the block with the design "a column of ones" is today's scalar zero inflation
    d = zi_data()
    X, g = d[["x", "w"]], d["id"]
    if zi_family == "poisson":
        m = quiet_fit(PoissonGLMM(zero_inflation=True).fit, X, d["ypois"], groups=g)
    else:
        est = NegBinGLMM(zero_inflation=True, family=zi_family)
        m = quiet_fit(est.fit, X, d["ynb2" if zi_family == "nbinom2" else "ynb1"], groups=g)
    data = m.fit_result_.objective.data
    assert data.extra_designs is None
    ones = np.ones((len(data.y), 1))
    designs = (None,) * (data.n_extra - 1) + (ones,)
    # the same objective at the same point ...
    designed = designed_objective(m, designs, abs_tol=1e-10).data
    assert designed.n_extra == data.n_extra
    # ... and the same optimum from a fit
    x, record = quiet_fit(refit, designed)
    assert -0.5 * record.objective == pytest.approx(m.loglik_, abs=1e-8)
    np.testing.assert_allclose(x, m.fit_result_.params, atol=1e-4)


@pytest.mark.parametrize("n_agq", [1, 5])
@pytest.mark.parametrize("zi", ["1 + x", "0 + x + w"])
@pytest.mark.parametrize("family", ["nbinom2", "nbinom1"])
def test_gradient_in_the_zero_inflation_coefficients(n_agq, zi, family):
    X, y, g = _xy()
    est = NegBinGLMM(zero_inflation=zi, n_agq=n_agq, family=family)
    m = quiet_fit(est.fit, X, y, groups=g)
    obj = m.fit_result_.objective
    rng = np.random.default_rng(3)
    x = m.fit_result_.params + rng.normal(0.0, 0.05, len(m.fit_result_.params))
    _, grad = obj.value_and_grad(x)
    p0 = len(x) - obj.data.n_extra
    for k in range(p0 - 1, len(x)):  # NB log theta and the zi coefficients
        h = 1e-5
        up, dn = x.copy(), x.copy()
        up[k] += h
        dn[k] -= h
        fd = (obj.evaluate(up) - obj.evaluate(dn)) / (2 * h)
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-5), k


def test_gradient_without_random_effects():
    X, y, _ = _xy()
    m = quiet_fit(NegBinGLMM(zero_inflation="1 + x + w").fit, X, y)
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


def test_no_boundary_treatment_with_predictors():
    # zero inflation that is absent: with predictors the intercept may only reach its bound,
    # where its standard error is not computed; no ZeroInflationWarning is about a flat side
    rng = np.random.default_rng(5)
    n, G = 400, 40
    g = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(0.8 + 0.3 * x + rng.normal(0, 0.4, G)[g]))
    m = quiet_fit(PoissonGLMM(zero_inflation="1 + x").fit, pd.DataFrame({"x": x}), y, groups=g)
    assert not m.zero_inflation_at_boundary_
    assert m.zero_inflation_ < 0.05


def test_tools_on_top_use_the_rows_probability():
    import pickle

    m = nb_model()
    X, y, g = _xy()
    # population-level means from the parameters (marginal_means' delta method) agree
    # with predict for rows without a known group
    mm = m.marginal_means(X.head(5))
    np.testing.assert_allclose(
        mm["marginal"], m.predict(X.head(5), population="marginal"), rtol=1e-6
    )
    np.testing.assert_allclose(
        m.predict_interval(X.head(5), g.head(5))["fit"], m.predict(X.head(5), g.head(5))
    )
    text = m.report()
    assert "zero-inflation probability was modelled on the logit scale" in text
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(back.predict_proba(X, groups=g), m.predict_proba(X, groups=g))
    assert "Zero-inflation model" in str(back.summary())
    # the training rows' probabilities are training data: not in a pickle without it
    with pytest.raises(TrainingDataError):
        back.residuals()


@pytest.mark.parametrize("case", list(CASES))
def test_predictions_match_glmmtmb(case):
    # R: predict(m, newdata = data[1:6, ], type = "response" | "zprob" | "conditional"),
    # conditional on the rows' random effects
    m = fitted(case)
    new = CASES[case][3]().head(6)
    for kind, ref in reference()[case]["predict"].items():
        np.testing.assert_allclose(m.predict(new, type=kind), ref, rtol=2e-3, err_msg=kind)


def test_predict_zero_inflation():
    m = nb_model()
    X, _, _ = _xy()
    gamma = m.zero_inflation_effects_["estimate"].to_numpy()
    pi = 1.0 / (1.0 + np.exp(-(gamma[0] + gamma[1] * X["x"].to_numpy())))
    np.testing.assert_allclose(m.predict_zero_inflation(X), pi, rtol=1e-10)
    const = nb_model(True)
    np.testing.assert_allclose(const.predict_zero_inflation(X.head(3)), const.zero_inflation_)
    with pytest.raises(ValueError, match="no zero inflation"):
        nb_model(False).predict_zero_inflation(X)


def test_gradient_with_a_random_slope():
    # the general (non-scalar) Laplace gradient path
    X, y, g = _xy()
    m = quiet_fit(NegBinGLMM("1 + x", zero_inflation="1 + x + w").fit, X, y, groups=g)
    obj = m.fit_result_.objective
    x = m.fit_result_.params + np.random.default_rng(4).normal(0.0, 0.05, len(m.fit_result_.params))
    _, grad = obj.value_and_grad(x)
    for k in range(len(x)):
        up, dn = x.copy(), x.copy()
        up[k] += 1e-5
        dn[k] -= 1e-5
        fd = (obj.evaluate(up) - obj.evaluate(dn)) / 2e-5
        assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-5), k


def test_a_profile_held_by_a_centred_bound_gives_no_limit():
    # the w = 1 rows have few structural zeros: the profile of zi~w levels off (-0.52)
    # towards -inf, as glmmTMB's; past -40 the zero part's centred intercept was held
    # at its internal bound, the deviance climbed and -41.4 was reported as the limit
    from sklearn_glmm.exceptions import ProfileWarning
    from sklearn_glmm.formula import glmmTMB

    rng = np.random.default_rng(3)
    G, m = 30, 10
    g = np.repeat(np.arange(G), m)
    n = G * m
    x = rng.normal(size=n)
    w = rng.integers(0, 2, n).astype(float)
    b = rng.normal(0, 0.5, G)[g]
    mu = np.exp(0.8 + 0.4 * x + b)
    pz = np.where(w == 1, 0.03, 0.3)
    y = np.where(rng.random(n) < pz, 0, rng.negative_binomial(3.0, 3.0 / (3.0 + mu)))
    d = pd.DataFrame(dict(g=g.astype(str), x=x, w=w, y=y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm = glmmTMB("y ~ x + w + (1|g)", d, family="nbinom2", ziformula="~w")
    with pytest.warns(ProfileWarning, match="limit of zi~w is not determined"):
        ci = mm.confint(method="profile", parm=["zi~w"])
    assert np.isnan(ci.loc["zi~w", "lower"])
    assert -1.0 < ci.loc["zi~w", "upper"] < -0.85  # glmmTMB: -0.926


def test_nan_standard_errors_of_the_zero_inflation_design_are_warned():
    # the check named NaN standard errors of the fixed effects only: a zero-inflation
    # coefficient without one (off its bounds) went unreported
    from sklearn_glmm import _fit_checks
    from sklearn_glmm.exceptions import StandardErrorWarning

    df = zi_data()
    m = quiet_fit(
        PoissonGLMM(zero_inflation="1 + x").fit, df[["x", "w"]], df["ypois"], groups=df["id"]
    )
    res, record = m.fit_result_, m.fit_record_
    k = len(res.params) - 1  # the zero inflation's slope
    V = record.covariance.copy()
    V[k, :] = V[:, k] = np.nan
    record.covariance = V
    m.fit_result_ = dataclasses.replace(res, vcov=V)
    fe = m.fixed_effects_
    idx = list(range(len(fe)))
    with pytest.warns(StandardErrorWarning, match=r"zi~x"):
        _fit_checks._check_standard_errors(
            m, record, list(fe.index), fe["std_error"].to_numpy(), idx
        )
    # a parameter on the block's ridge is named by the ridge's own warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit_checks._check_standard_errors(
            m, record, list(fe.index), fe["std_error"].to_numpy(), idx, ridge=[k]
        )


def test_ziformula_columns_in_another_order_offsets_and_zi_only_predictors():
    # x:fb in the ziformula is the conditional model's fb:x (it was refused, naming a
    # column that is there); offset() there raised formulaic's NameError; a predictor
    # of the zero part alone is refused saying that adding it elsewhere is another model
    from sklearn_glmm.formula import glmmTMB

    rng = np.random.default_rng(2)
    n = 400
    d = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "f": rng.choice(["a", "b"], n),
            "w": rng.choice(["lo", "hi"], n),
            "g": rng.integers(0, 20, n),
            "off": rng.normal(0, 0.1, n),
        }
    )
    d["y"] = rng.poisson(np.exp(0.3 + 0.5 * d["x"])) * (rng.random(n) > 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = glmmTMB("y ~ f + x + f:x + (1 | g)", d, family="poisson", ziformula="~ x * f")
        b = glmmTMB("y ~ f + x + f:x + (1 | g)", d, family="poisson", ziformula="~ f * x")
    # the same model: the two fits' paths differ by rounding (their parameters by 1e-12),
    # so the log-likelihoods agree to that, not bit for bit
    assert a.loglik_ == pytest.approx(b.loglik_, rel=1e-12)
    # each named as glmmTMB names fixef(m)$zi: by its own formula's order (x:fb for
    # ~ x * f beside the conditional model's fb:x)
    assert list(a.zero_inflation_effects_.index) == ["(Intercept)", "x", "fb", "x:fb"]
    assert list(b.zero_inflation_effects_.index) == ["(Intercept)", "fb", "x", "fb:x"]
    za, zb = a.zero_inflation_effects_, b.zero_inflation_effects_
    zb = zb.rename({"fb:x": "x:fb"})
    np.testing.assert_allclose(za["estimate"], zb.loc[za.index, "estimate"], rtol=1e-7)
    with pytest.raises(NotImplementedError, match=r"offset\(\) in a ziformula is not available"):
        glmmTMB("y ~ x + (1 | g)", d, family="poisson", ziformula="~ x + offset(off)")
    # a predictor of the zero part alone (it was refused): a random-only column of X
    zi_only = _quiet(glmmTMB, "y ~ x + (1 | g)", d, family="poisson", ziformula="~ w")
    assert zi_only.random_only_columns == ["wlo"]
    assert list(zi_only.fixed_effects_.index) == ["(Intercept)", "x"]


ZI_ONLY = "zi_only_predictors"


def _quiet(fun, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kwargs)


@pytest.mark.parametrize(
    "case, formula, kw",
    [
        ("zi", "y ~ x + (1 | g)", dict(family="poisson", ziformula="~ z")),
        ("zi_f", "y ~ x + (1 | g)", dict(family="poisson", ziformula="~ z + f")),
        ("disp", "c ~ x + (1 | g)", dict(family="nbinom2", dispformula="~ w")),
    ],
)
def test_predictors_of_the_zero_inflation_or_dispersion_alone(case, formula, kw):
    # glmmTMB's ziformula = ~ z / dispformula = ~ w with z, w absent from the
    # conditional model: refused before ("not columns of the conditional model")
    d = fixture_csv(ZI_ONLY, "data.csv")
    ref = fixture_json(ZI_ONLY, "ref.json")[case]
    m = _quiet(glmmTMB, formula, d, **kw)
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-5)
    part = m.zero_inflation_effects_ if "ziformula" in kw else m.dispersion_effects_
    name = "zi" if "ziformula" in kw else "disp"
    for table, r in ((m.fixed_effects_, ref["cond"]), (part, ref[name])):
        assert list(table.index) == list(r["estimate"])
        np.testing.assert_allclose(table["estimate"], list(r["estimate"].values()), atol=2e-4)
        np.testing.assert_allclose(table["std_error"], list(r["se"].values()), rtol=2e-3)
    if "predict" in ref:  # new data: the zero part's own columns rebuilt
        np.testing.assert_allclose(m.predict(d.head(5), type="response"), ref["predict"], rtol=1e-4)
    # the estimator: the column named in random_only_columns (read by the zero part only)
    if case == "zi":
        est = _quiet(
            PoissonGLMM(zero_inflation="1 + z", random_only_columns="z").fit,
            d[["x", "z"]],
            d["y"],
            groups=d["g"],
        )
        assert est.loglik_ == pytest.approx(m.loglik_, abs=1e-8)
        assert list(est.fixed_effects_.index) == ["(Intercept)", "x"]


def test_population_predictions_keep_a_zero_inflation_predictor_a_random_term_reads():
    # day is the ar1 term's time (not a fixed effect) and the zero inflation's predictor:
    # with re_form="NA" it was set to 0 as if only the random effects read it (every
    # row's zprob the intercept's); glmmTMB's zprob does not depend on re.form here
    rng = np.random.default_rng(3)
    ids, days = 40, 5
    d = pd.DataFrame({"id": np.repeat(np.arange(ids), days), "day": np.tile(np.arange(days), ids)})
    d["x"] = rng.normal(size=len(d))
    d["y"] = rng.poisson(np.exp(0.8 + 0.3 * d.x)) * (rng.random(len(d)) > 0.1 + 0.15 * d.day)
    m = _quiet(glmmTMB, "y ~ x + ar1(0 + factor(day) | id)", d, family="poisson", ziformula="~ day")
    conditional = m.predict(d.head(5), type="zprob")
    assert np.ptp(conditional) > 0.5
    np.testing.assert_allclose(m.predict(d.head(5), type="zprob", re_form="NA"), conditional)
