"""Scale effects of OrdinalGLMM (``ordinal::clmm2``'s ``scale = ~ x``).

References: ``tests/fixtures/ordinal/ordinal_scale.json``, made by
``make_ordinal_scale.R`` (ordinal 2022.11-16) from the ``wine`` and ``soup`` data saved
beside it. Adaptive quadrature fits are compared with ``clmm2(..., nAGQ = k)``. clmm2's
Laplace approximation with scale effects takes the curvature of the conditional
log-density with a factor ``1 / sigma`` where the exact one has ``1 / sigma^2``; the
Laplace fits are compared with the exact-curvature Laplace approximation that the R
script maximises from the model's likelihood (``laplace_*``), and the same R function
with clmm2's curvature reproduces clmm2's log-likelihood (``clmm2_laplace_check``).
Tolerances (issue 15): log-likelihood within 0.01; estimates within 5 % of their
standard error; standard errors and random-effect SDs within 2 %.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ordinal_data import wine
from scipy import special
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_glmm import OrdinalGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import Objective
from sklearn_glmm.exceptions import NoRandomEffectsWarning
from sklearn_glmm.formula import clmm
from sklearn_glmm.inference import anova, confint
from sklearn_glmm.model_selection import get_scorer

FIXTURES = Path(__file__).parent / "fixtures" / "ordinal"
REF = json.loads((FIXTURES / "ordinal_scale.json").read_text())


def _wine():
    X, y, frame = wine()
    return X, y, frame["judge"]


def _soup():
    soup = pd.read_csv(FIXTURES / "soup.csv")
    X = pd.DataFrame(
        {
            "PRODTest": (soup["PROD"] == "Test").astype(float),
            "DAY2": (soup["DAY"] == 2).astype(float),
            "GENDERFemale": (soup["GENDER"] == "Female").astype(float),
        }
    )
    y = pd.Series(pd.Categorical(soup["SURENESS"], ordered=True), name="SURENESS")
    return X, y, soup["RESP"]


# fixture key -> (data, location columns, scale, link, n_agq)
CASES = {
    # clmm2(rating ~ temp + contact, scale = ~ temp, random = judge, data = wine, nAGQ = 10)
    "wine_scale_temp_agq10": ("wine", ["tempwarm", "contactyes"], "tempwarm", "logit", 10),
    # clmm2(rating ~ temp + contact, scale = ~ contact, random = judge, data = wine,
    #       link = "probit", nAGQ = 10)
    "wine_probit_scale_contact_agq10": (
        "wine",
        ["tempwarm", "contactyes"],
        "contactyes",
        "probit",
        10,
    ),
    # clmm2(rating ~ contact, scale = ~ temp, random = judge, data = wine, nAGQ = 10):
    # temp in the scale model only
    "wine_contact_scale_temp_agq10": ("wine", ["contactyes"], "tempwarm", "logit", 10),
    # clmm2(SURENESS ~ PROD + DAY, scale = ~ DAY, random = RESP, data = soup, nAGQ = 7)
    "soup_scale_day_agq7": ("soup", ["PRODTest", "DAY2"], "DAY2", "logit", 7),
    # exact-curvature Laplace of the three models above (see the module docstring)
    "laplace_wine_scale_temp": ("wine", ["tempwarm", "contactyes"], "tempwarm", "logit", 1),
    "laplace_wine_probit_scale_contact": (
        "wine",
        ["tempwarm", "contactyes"],
        "contactyes",
        "probit",
        1,
    ),
    "laplace_soup_scale_day": ("soup", ["PRODTest", "DAY2"], "DAY2", "logit", 1),
    "laplace_wine_contact_scale_temp": ("wine", ["contactyes"], "tempwarm", "logit", 1),
}
# clmm2(SURENESS ~ PROD + GENDER, scale = ~ PROD + GENDER, random = RESP, data = soup,
#       link = "probit", nAGQ = 10): two scale effects (about 2 s)
SLOW_CASES = {
    "soup_probit_scale_prod_gender_agq10": (
        "soup",
        ["PRODTest", "GENDERFemale"],
        "PRODTest + GENDERFemale",
        "probit",
        10,
    ),
}


def _fit(case):
    """The fit of a case; scale predictors that are not location columns enter the
    scale model only (``scale_only_columns``)."""
    data, cols, scale, link, n_agq = case
    X, y, g = _wine() if data == "wine" else _soup()
    only = [c for c in scale.split(" + ") if c not in cols]
    m = OrdinalGLMM(
        random_effects="1",
        link=link,
        scale=scale,
        scale_only_columns=only or None,
        n_agq=n_agq,
    )
    return m.fit(X[cols + only], y, groups=g)


def _check_reference(m, ref):
    assert m.converged_
    assert abs(m.loglik_ - ref["loglik"]) < 0.01
    for table, names, est, se in (
        (m.threshold_coefficients_, "alpha_names", "alpha", "alpha_se"),
        (m.fixed_effects_, "beta_names", "beta", "beta_se"),
        (m.scale_effects_, "zeta_names", "zeta", "zeta_se"),
    ):
        assert list(table.index) == list(ref[names])
        r_est, r_se = np.asarray(ref[est]), np.asarray(ref[se])
        assert np.all(np.abs(table["estimate"].to_numpy() - r_est) < 0.05 * r_se)
        np.testing.assert_allclose(table["std_error"].to_numpy(), r_se, rtol=0.02)
    if "sd" in ref:
        sd = np.sqrt(next(iter(m.random_effects_cov_.values())).to_numpy()[0, 0])
        np.testing.assert_allclose(sd, ref["sd"], rtol=0.02)


@pytest.mark.parametrize("key", list(CASES))
def test_matches_clmm2(key):
    _check_reference(_fit(CASES[key]), REF[key])


@pytest.mark.slow
@pytest.mark.parametrize("key", list(SLOW_CASES))
def test_matches_clmm2_slow(key):
    _check_reference(_fit(SLOW_CASES[key]), REF[key])


@pytest.mark.parametrize(
    "key, params",
    [
        # clm(rating ~ temp + contact, scale = ~ temp, data = wine)
        ("clm_wine_scale_temp", dict(scale="tempwarm")),
        # clm(rating ~ contact, scale = ~ temp, data = wine): temp in the scale model only
        ("clm_wine_contact_scale_temp", dict(scale="tempwarm", scale_only_columns="tempwarm")),
        # clm(rating ~ temp + contact, scale = ~ contact, data = wine, link = "probit",
        #     threshold = "equidistant")
        (
            "clm_wine_probit_equidistant_scale_contact",
            dict(scale="contactyes", link="probit", threshold="equidistant"),
        ),
    ],
)
def test_without_groups_matches_clm(key, params):
    X, y, _ = _wine()
    with pytest.warns(NoRandomEffectsWarning):
        m = OrdinalGLMM(**params).fit(X, y)
    _check_reference(m, REF[key])


def test_clmm2_laplace_differs_by_its_curvature():
    # the R function with clmm2's curvature (1 / sigma) reproduces clmm2's Laplace
    # log-likelihood at its estimates; the exact curvature gives our optimum
    for key in ("laplace_wine_scale_temp", "laplace_soup_scale_day"):
        mine, theirs = REF[key]["clmm2_laplace_check"]
        assert abs(mine - theirs) < 1e-4
    assert abs(REF["laplace_wine_scale_temp"]["loglik"] - REF["wine_scale_temp"]["loglik"]) > 0.01


def test_formula_front_end_names_as_clmm2():
    wine = pd.read_csv(FIXTURES / "wine.csv")
    wine["rating"] = pd.Categorical(wine["rating"], ordered=True)
    # clmm2(rating ~ temp + contact, scale = ~ temp, random = judge, data = wine, nAGQ = 10)
    m = clmm("rating ~ temp + contact + (1 | judge)", wine, scale="~ temp", nAGQ=10)
    ref = REF["wine_scale_temp_agq10"]
    assert list(m.scale_effects_.index) == ref["zeta_names"] == ["tempwarm"]
    assert abs(m.loglik_ - ref["loglik"]) < 0.01
    assert m.scale_formula_ == "~temp"
    assert "Scale coefficients:" in str(m.summary())
    p = m.predict_proba(wine.head(4))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # clmm2(rating ~ contact, scale = ~ temp, random = judge, data = wine, nAGQ = 10)
    only = clmm("rating ~ contact + (1 | judge)", wine, scale="~ temp", nAGQ=10)
    ref = REF["wine_contact_scale_temp_agq10"]
    assert abs(only.loglik_ - ref["loglik"]) < 0.01
    assert list(only.fixed_effects_.index) == ["contactyes"]
    assert only.scale_only_columns == ["tempwarm"]
    # new data: the scale-only columns come from the scale formula, with the training levels
    p = only.predict_proba(wine.head(3))
    X = pd.DataFrame({"contactyes": (wine["contact"] == "yes") * 1.0})
    X["tempwarm"] = (wine["temp"] == "warm") * 1.0
    np.testing.assert_allclose(p, only.predict_proba(X.head(3), wine["judge"].head(3)), atol=1e-12)
    assert "scale:   ~temp" in str(only.summary())
    # rows with a missing value in a variable of the scale model are left out, as R does
    gaps = wine.copy()
    gaps.loc[[1, 5], "temp"] = None
    assert clmm("rating ~ contact + (1 | judge)", gaps, scale="~ temp").nobs_ == len(wine) - 2
    with pytest.raises(ValueError, match="random effects in the scale model"):
        clmm("rating ~ temp + (1 | judge)", wine, scale="~ (1 | judge)")


def test_scale_none_is_the_model_without():
    X, y, g = _wine()
    m0 = OrdinalGLMM(random_effects="1").fit(X, y, groups=g)
    for spec in (None, "1", "~ 1"):
        m = OrdinalGLMM(random_effects="1", scale=spec).fit(X, y, groups=g)
        assert m.loglik_ == pytest.approx(m0.loglik_, abs=1e-9)
        assert not hasattr(m, "scale_effects_")
    # "x", "1 + x", "0 + x" and "~ x" are one model (no intercept in the scale model)
    fits = [
        OrdinalGLMM(random_effects="1", scale=s).fit(X, y, groups=g)
        for s in ("tempwarm", "1 + tempwarm", "0 + tempwarm", "~ tempwarm")
    ]
    for m in fits[1:]:
        assert m.loglik_ == pytest.approx(fits[0].loglik_, abs=1e-8)


def test_zeta_zero_family_equals_family_without_scale():
    rng = np.random.default_rng(1)
    plain = make_family("ordinal", n_classes=4, link="probit")
    scaled = make_family("ordinal", n_classes=4, link="probit", scale=True)
    a = np.array([-1.0, 0.2, 1.5])
    y = rng.integers(0, 4, 50).astype(float)
    eta = rng.normal(size=50)
    d0 = plain.derivs(y, eta, None, None, a)
    d1 = scaled.derivs(y, eta, None, None, tuple(a) + (np.zeros(50),))
    for f in ("loglik", "d1", "w", "w3"):
        np.testing.assert_allclose(getattr(d1, f), getattr(d0, f), rtol=1e-12)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog", "loglog", "cauchit"])
def test_scale_derivatives_match_finite_differences(link):
    rng = np.random.default_rng(0)
    fam = make_family("ordinal", n_classes=5, link=link, threshold="equidistant", scale=True)
    K, n = 5, 400
    a = np.array([-1.3, 0.9])
    y = np.tile(np.arange(K), n // K).astype(float)
    # the middle and both tails of every class, out to |x| of about 25
    eta = np.concatenate([rng.normal(scale=2.0, size=n // 2), rng.uniform(-12, 12, n // 2)])
    s = rng.normal(scale=0.3, size=n)
    extra = (a[0], a[1], s)
    d = fam.derivs(y, eta, None, None, extra)
    assert np.all(np.isfinite(d.loglik)) and np.all(np.isfinite(d.w3))
    h = 1e-5

    def close(value, fd, atol=1e-6):
        np.testing.assert_allclose(value, fd, rtol=1e-4, atol=atol)

    up, dn = fam.derivs(y, eta + h, None, None, extra), fam.derivs(y, eta - h, None, None, extra)
    close(d.d1, (up.loglik - dn.loglik) / (2 * h))
    close(d.w, -(up.d1 - dn.d1) / (2 * h))
    close(d.w3, (up.w - dn.w) / (2 * h), atol=1e-5)
    dl, dd1, dw = fam.extra_derivs(y, eta, None, None, extra)
    assert dl.shape == (3, n)
    for k in range(3):
        ep = list(extra)
        em = list(extra)
        ep[k], em[k] = ep[k] + h, em[k] - h
        up = fam.derivs(y, eta, None, None, tuple(ep))
        dn = fam.derivs(y, eta, None, None, tuple(em))
        close(dl[k], (up.loglik - dn.loglik) / (2 * h))
        close(dd1[k], (up.d1 - dn.d1) / (2 * h))
        close(dw[k], (up.w - dn.w) / (2 * h), atol=1e-5)


def _simulate(n_groups, n_per, zeta, rng, sd=0.8, beta=1.0):
    g = np.repeat(np.arange(n_groups), n_per)
    n = len(g)
    x = rng.normal(size=n)
    s = rng.integers(0, 2, n).astype(float)
    latent = beta * x + rng.normal(scale=sd, size=n_groups)[g]
    latent = latent + np.exp(zeta * s) * rng.logistic(size=n)
    y = np.digitize(latent, [-1.5, 0.0, 1.5])
    return pd.DataFrame({"x": x, "s": s}), y, g


def test_zero_scale_effect_estimated_near_zero():
    rng = np.random.default_rng(3)
    X, y, g = _simulate(60, 10, 0.0, rng)
    m = OrdinalGLMM(random_effects="1", scale="s").fit(X, y, groups=g)
    row = m.scale_effects_.loc["s"]
    assert abs(row["estimate"]) < 2.5 * row["std_error"]
    assert abs(row["estimate"]) < 0.3


@pytest.mark.slow
def test_simulation_recovery():
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(20):
        X, y, g = _simulate(150, 10, 0.5, rng)
        m = OrdinalGLMM(random_effects="1", scale="s").fit(X, y, groups=g)
        estimates.append(
            [m.scale_effects_.loc["s", "estimate"], m.fixed_effects_.loc["x", "estimate"]]
        )
    mean = np.mean(estimates, axis=0)
    assert abs(mean[0] - 0.5) < 0.05
    assert abs(mean[1] - 1.0) < 0.06


def test_predictions_simulation_intervals_and_anova_use_the_scale():
    X, y, g = _wine()
    m = OrdinalGLMM(random_effects="1", scale="tempwarm").fit(X, y, groups=g)
    m0 = OrdinalGLMM(random_effects="1").fit(X, y, groups=g)
    p = m.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # probabilities by hand: F((alpha - eta) / exp(s zeta)), at b = 0
    fam_alpha = m.thresholds_["estimate"].to_numpy()
    zeta = m.scale_effects_.loc["tempwarm", "estimate"]
    eta = X.to_numpy() @ m.fixed_effects_["estimate"].to_numpy()
    sigma = np.exp(zeta * X["tempwarm"].to_numpy())
    cum = 1.0 / (1.0 + np.exp(-(fam_alpha[None, :] - eta[:, None]) / sigma[:, None]))
    by_hand = np.diff(np.column_stack([np.zeros(len(eta)), cum, np.ones(len(eta))]), axis=1)
    np.testing.assert_allclose(m.predict_proba(X, population="zero"), by_hand, atol=1e-12)
    sims = m.simulate(3, random_state=0)
    assert sims.shape == (len(y), 3) and set(np.unique(sims)) <= set(range(5))
    ci = confint(m)
    assert "scale~tempwarm" in ci.index
    row = m.scale_effects_.loc["tempwarm"]
    assert ci.loc["scale~tempwarm", "lower"] == pytest.approx(
        row["estimate"] - 1.959964 * row["std_error"], rel=1e-5
    )
    assert m.n_params_ == m0.n_params_ + 1
    table = anova(m0, m)
    assert table["Df"].iloc[1] == 1
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (m.loglik_ - m0.loglik_), abs=1e-6)
    assert m.aic_ == pytest.approx(-2 * m.loglik_ + 2 * m.n_params_)
    other = OrdinalGLMM(random_effects="1", scale="contactyes").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="scale model is not a subset"):
        anova(m, other)
    text = str(m.summary())
    assert "Scale coefficients:" in text and "scale:   ~tempwarm" in text
    assert "latent scale" in m.report()


def test_profile_and_bootstrap_intervals_of_the_scale_effect():
    X, y, g = _wine()
    m = OrdinalGLMM(random_effects="1", scale="tempwarm").fit(X, y, groups=g)
    z = m.scale_effects_.loc["tempwarm", "estimate"]
    for kwargs in (dict(method="profile"), dict(method="bootstrap", n_boot=20, random_state=0)):
        ci = confint(m, parm=["scale~tempwarm"], **kwargs)
        lower, upper = ci.loc["scale~tempwarm", ["lower", "upper"]]
        assert lower < z < upper and upper - lower < 3.0


@pytest.mark.parametrize("scoring", ["neg_ordinal_log_loss", "neg_mean_absolute_class_error"])
def test_grid_search_over_scale(scoring):
    X, y, g = _wine()
    Xg = X.assign(judge=g.to_numpy())
    search = GridSearchCV(
        OrdinalGLMM(random_effects="1", group_columns="judge"),
        {"scale": [None, "tempwarm"]},
        cv=GroupKFold(n_splits=3),
        scoring=get_scorer(scoring),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits on a third of the judges
        search.fit(Xg, y, groups=g)
    assert search.best_params_["scale"] in (None, "tempwarm")
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def _slope_data():
    rng = np.random.default_rng(11)
    n_groups, n_per = 60, 10
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.normal(size=len(g))
    s = rng.integers(0, 2, len(g)).astype(float)
    b0, b1 = rng.normal(scale=0.8, size=n_groups), rng.normal(scale=0.9, size=n_groups)
    latent = x + b0[g] + b1[g] * x + np.exp(0.4 * s) * rng.logistic(size=len(g))
    return pd.DataFrame({"x": x, "s": s}), np.digitize(latent, [-1.5, 0.0, 1.5]), g


def _brute_force_loglik(m, X, y, g, h=0.08):
    """The marginal log-likelihood of a random intercept and slope on ``x`` with scale
    effects on ``s``, by a tensor trapezoid rule over u in [-7, 7]^2 (b = L u)."""
    beta = m.fixed_effects_["estimate"].to_numpy()
    alpha = np.concatenate([[-np.inf], m.thresholds_["estimate"].to_numpy(), [np.inf]])
    zeta = m.scale_effects_.loc["s", "estimate"]
    L = np.linalg.cholesky(next(iter(m.random_effects_cov_.values())).to_numpy())
    grid = np.arange(-7.0, 7.0 + h / 2, h)
    U = np.stack([a.ravel() for a in np.meshgrid(grid, grid)])
    B = L @ U
    log_phi = -0.5 * np.sum(U**2, axis=0) - np.log(2 * np.pi)
    x, s = X["x"].to_numpy(), X["s"].to_numpy()
    total = 0.0
    for j in np.unique(g):
        r = g == j
        eta = (X.to_numpy()[r] @ beta)[:, None] + B[0] + x[r][:, None] * B[1]
        sigma = np.exp(zeta * s[r])[:, None]
        upper = special.expit((alpha[y[r] + 1][:, None] - eta) / sigma)
        lower = special.expit((alpha[y[r]][:, None] - eta) / sigma)
        total += special.logsumexp(np.log(upper - lower).sum(axis=0) + log_phi) + 2 * np.log(h)
    return total


def test_vector_random_effects_with_scale_against_brute_force():
    # no R package fits scale effects with more than a random intercept: the likelihood
    # (adaptive quadrature with 15^2 nodes at the Laplace optimum) is checked against the
    # brute-force integral, and the Laplace fit is a converged optimum near it
    X, y, g = _slope_data()
    m = OrdinalGLMM(random_effects="1 + x", scale="s").fit(X, y, groups=g)
    assert m.converged_ and np.isfinite(m.scale_effects_["std_error"]).all()
    agq = -0.5 * Objective(m.fit_result_.objective.data, 15).evaluate(m.fit_result_.params)
    assert agq == pytest.approx(_brute_force_loglik(m, X, y, g), abs=1e-4)
    assert abs(m.loglik_ - agq) < 2.0


@pytest.mark.slow
def test_vector_random_effects_with_scale_agq_fit():
    X, y, g = _slope_data()
    m = OrdinalGLMM(random_effects="1 + x", scale="s", n_agq=5).fit(X, y, groups=g)
    assert m.converged_
    # at its optimum, a finer rule and the brute-force integral agree with it
    fine = -0.5 * Objective(m.fit_result_.objective.data, 15).evaluate(m.fit_result_.params)
    assert fine == pytest.approx(_brute_force_loglik(m, X, y, g), abs=1e-4)
    assert abs(m.loglik_ - fine) < 0.02


def test_crossed_random_effects_with_scale():
    X, y, _ = _soup()
    soup = pd.read_csv(FIXTURES / "soup.csv")
    groups = soup[["RESP", "PRODID"]]
    m0 = OrdinalGLMM(random_effects="1").fit(X[["PRODTest", "DAY2"]], y, groups=groups)
    m = OrdinalGLMM(random_effects="1", scale="DAY2").fit(X[["PRODTest", "DAY2"]], y, groups=groups)
    assert m.converged_ and m.loglik_ >= m0.loglik_ - 1e-6
    assert np.isfinite(m.scale_effects_["std_error"]).all()


@pytest.mark.parametrize(
    "scale, match",
    [
        ("nothere", "not features of X"),
        ("(1 | judge)", "random effects in the scale model"),
        ("diag(tempwarm)", "random effects only"),
        ("const", "constant"),
        # with tempwarm, tempcold adds up to a constant: dropped from the location (with a
        # RankDeficiencyWarning) and refused in the scale
        ("tempwarm + tempcold", "rank deficient"),
        ("tempwarm + tw2", "rank deficient"),
        ("tempwarm + tempwarm", "repeated"),
    ],
)
def test_invalid_scale(scale, match):
    X, y, g = _wine()
    extras = {"const": 1.0, "tempcold": 1.0 - X["tempwarm"], "tw2": 2.0 * X["tempwarm"]}
    X = X.assign(**{k: v for k, v in extras.items() if k in scale})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=match):
            OrdinalGLMM(random_effects="1", scale=scale).fit(X, y, groups=g)


def test_scale_only_columns():
    X, y, g = _wine()
    m = OrdinalGLMM(random_effects="1", scale="tempwarm", scale_only_columns="tempwarm")
    m.fit(X, y, groups=g)
    assert list(m.fixed_effects_.index) == ["contactyes"] and list(m.feature_names_in_) == [
        "contactyes"
    ]
    # predictions need the column; the location model does not see it
    np.testing.assert_allclose(m.predict_proba(X).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="not columns of X"):
        m.predict_proba(X[["contactyes"]])
    with pytest.raises(ValueError, match="not named in scale"):
        OrdinalGLMM(random_effects="1", scale_only_columns="tempwarm").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="must be a DataFrame"):
        OrdinalGLMM(random_effects="1", scale="x1", scale_only_columns="x1").fit(
            X.to_numpy(), y, groups=g
        )
    # the same model as the location without the column and its values in the scale
    m_all = OrdinalGLMM(random_effects="1", scale="tempwarm").fit(X, y, groups=g)
    assert m_all.n_params_ == m.n_params_ + 1
    assert anova(m, m_all)["Df"].iloc[1] == 1


def test_scale_type_checked():
    X, y, g = _wine()
    with pytest.raises((TypeError, ValueError)):
        OrdinalGLMM(random_effects="1", scale=3).fit(X, y, groups=g)


def test_shifting_or_rescaling_a_scale_predictor_reparametrises_the_same_model():
    # a constant added to s multiplies every row's scale by one factor, which the
    # thresholds, coefficients and SD absorb (why the scale model has no intercept)
    X, y, g = _wine()
    m = OrdinalGLMM(random_effects="1", scale="tempwarm", n_agq=5).fit(X, y, groups=g)
    X2 = X.assign(tempwarm=3.0 * X["tempwarm"] - 2.0)
    m2 = OrdinalGLMM(random_effects="1", scale="tempwarm", n_agq=5).fit(X2, y, groups=g)
    assert m2.loglik_ == pytest.approx(m.loglik_, abs=1e-6)
    z, z2 = m.scale_effects_.loc["tempwarm"], m2.scale_effects_.loc["tempwarm"]
    assert z2["estimate"] == pytest.approx(z["estimate"] / 3.0, abs=1e-4)
    assert z2["z_value"] == pytest.approx(z["z_value"], abs=1e-3)


def test_weights_are_duplicated_rows_and_group_columns_work():
    X, y, g = _wine()
    rows = np.r_[np.arange(len(y)), np.arange(0, len(y), 2)]
    w = np.ones(len(y))
    w[::2] = 2.0
    m_dup = OrdinalGLMM(random_effects="1", scale="tempwarm").fit(
        X.iloc[rows], y.iloc[rows], groups=g.iloc[rows]
    )
    m_w = OrdinalGLMM(random_effects="1", scale="tempwarm").fit(X, y, groups=g, sample_weight=w)
    assert m_w.loglik_ == pytest.approx(m_dup.loglik_, abs=1e-6)
    np.testing.assert_allclose(
        m_w.scale_effects_["estimate"], m_dup.scale_effects_["estimate"], atol=1e-4
    )
    Xg = X.assign(judge=g.to_numpy())
    m_g = OrdinalGLMM(random_effects="1", scale="tempwarm", group_columns="judge").fit(Xg, y)
    m = OrdinalGLMM(random_effects="1", scale="tempwarm").fit(X, y, groups=g)
    assert m_g.loglik_ == pytest.approx(m.loglik_, abs=1e-8)
    np.testing.assert_allclose(m_g.predict_proba(Xg), m.predict_proba(X, g), atol=1e-10)


@pytest.mark.parametrize("n_agq", [1, 7])
def test_objective_gradient_in_the_scale_block(n_agq):
    # the Laplace and quadrature gradients (exact, through the modes) against central
    # differences of the objective, away from the optimum
    X, y, g = _wine()
    m = OrdinalGLMM(random_effects="1", scale="tempwarm", n_agq=n_agq).fit(X, y, groups=g)
    obj = Objective(m.fit_result_.objective.data, n_agq)
    p = m.fit_result_.params + 0.05 * np.random.default_rng(0).normal(
        size=len(m.fit_result_.params)
    )
    _, grad = obj.value_and_grad(p)
    h = 1e-6
    fd = [(obj.evaluate(p + e) - obj.evaluate(p - e)) / (2 * h) for e in h * np.eye(len(p))]
    np.testing.assert_allclose(grad, fd, atol=1e-6)


def test_location_predictor_far_from_zero_with_scale_effects():
    # the location design is centred internally (the thresholds take the shift); the
    # scale model, which has no intercept, is left as it is
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(30), 8)
    X = pd.DataFrame({"year": rng.normal(size=len(g)), "t": rng.uniform(0, 2, size=len(g))})
    lat = 0.5 * X["year"] - 0.4 * X["t"] + rng.normal(0, 0.7, 30)[g] + rng.logistic(size=len(g))
    y = np.digitize(lat, [-1, 0, 1, 2])
    fits = []
    for shift in (0.0, 1e4):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fits.append(OrdinalGLMM(scale="t").fit(X + [shift, 0.0], y, groups=g))
    base, moved = fits
    assert moved.loglik_ == pytest.approx(base.loglik_, abs=1e-7)
    np.testing.assert_allclose(moved.coef_, base.coef_, rtol=1e-6)
    np.testing.assert_allclose(
        moved.scale_effects_["estimate"], base.scale_effects_["estimate"], rtol=1e-5
    )
    np.testing.assert_allclose(
        moved.thresholds_["estimate"],
        base.thresholds_["estimate"] + 1e4 * base.coef_[0],
        rtol=1e-7,
    )
    np.testing.assert_allclose(
        moved.predict_proba(X.iloc[:8] + [1e4, 0.0], g[:8]),
        base.predict_proba(X.iloc[:8], g[:8]),
        atol=1e-8,
    )


def test_scale_predictor_far_from_zero_is_warned_about():
    # no intercept in the scale model: shifting its predictor by c multiplies the location
    # parameters by exp(zeta c); at c = 1e4 the fit ended 6.6 below the optimum, converged
    from sklearn_glmm.exceptions import IdentifiabilityWarning

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 8)
    X = pd.DataFrame({"x0": rng.normal(size=len(g)), "x1": rng.normal(size=len(g))})
    y = np.digitize(0.6 * X["x0"] + rng.normal(0, 0.7, 30)[g] + rng.logistic(size=len(g)), [-1, 1])
    msg = "'x1'.*far from zero.*short of the optimum.*standard errors.*Centre the column"
    with pytest.warns(IdentifiabilityWarning, match=msg):
        OrdinalGLMM(scale="x1").fit(X + [0.0, 1e4], y, groups=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        OrdinalGLMM(scale="x1").fit(X + [0.0, 3.0], y, groups=g)
