"""Short scripts as newcomers write them, checking what they would check.

Two kinds of users:

- an R user following the tutorials in ``/work/shared/tutorials`` (000: binary and count
  GLMMs over waves; 002: app logins; 003: vegetables): formulas, ``glmer``, ``summary``,
  ``predict(newdata)``, ``confint``, ``anova`` between two fits. Where an R number is at
  hand it was computed with lme4 1.1-31 / glmmTMB 1.1.5 (R 4.2) on the same data (the
  simulators below, written to CSV), and the R call is in a comment.
- a scikit-learn user: Pipeline with ColumnTransformer and StandardScaler,
  ``cross_validate`` with GroupKFold and metadata routing, GridSearchCV over
  ``random_effects``, ``predict_proba``.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import sklearn_glmm
from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm.datasets import load_app_logins, make_longitudinal, make_vegetables

pytest.importorskip("formulaic")
from sklearn_glmm.formula import design_matrix, glmer, glmmTMB  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet():
    # singular fits and convergence notes are not what these scripts check
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------
# R user, tutorial 000: 300 people x 5 waves, binary and count outcomes
# (data: make_longitudinal(family, random_state=2024), re_sd=0.5 for the counts)
# ---------------------------------------------------------------------------


def test_tutorial_000_binary_glmm():
    df, _ = make_longitudinal("binomial", random_state=2024)
    # R: fit_bin <- glmer(binary ~ time + treatment + (1 | id), data = df, family = binomial)
    fit_bin = glmer("y ~ time + treatment + (1 | id)", df, family="binomial")
    text = str(fit_bin.summary())
    assert "y ~ time + treatment + (1 | id)" in text and "treatment" in text
    # R: fixef(fit_bin) -> -0.3187091505 -0.2402261584 -0.6187547969; logLik -852.7382257
    fixef = fit_bin.fixed_effects_["estimate"]
    np.testing.assert_allclose(fixef, [-0.3187091505, -0.2402261584, -0.6187547969], atol=2e-5)
    assert fit_bin.loglik_ == pytest.approx(-852.7382257, abs=1e-5)
    # R: VarCorr(fit_bin) -> Std.Dev. 0.7985345094
    sd = fit_bin.summary().random_effects["Std.Dev."].iloc[0]
    assert sd == pytest.approx(0.7985345094, abs=1e-4)
    # R: exp(confint(fit_bin, method = "Wald", parm = "beta_"))
    ci = fit_bin.confint(parm="fixed", method="wald", exponentiate=True)
    np.testing.assert_allclose(
        ci[["lower", "upper"]].to_numpy(),
        [[0.5581300609, 0.9471905030], [0.7204751689, 0.8584661841], [0.3955888082, 0.7333518905]],
        atol=1e-4,
    )
    # R: glmer(..., nAGQ = 7) -> -0.3201698536 -0.2422352147 -0.6242008054; logLik -851.2615086
    fit_agq = glmer("y ~ time + treatment + (1 | id)", df, family="binomial", nAGQ=7)
    np.testing.assert_allclose(
        fit_agq.fixed_effects_["estimate"], [-0.3201698536, -0.2422352147, -0.6242008054], atol=2e-5
    )
    assert fit_agq.loglik_ == pytest.approx(-851.2615086, abs=1e-5)
    # "differences > 5% would suggest Laplace is insufficient"
    assert np.all(np.abs(fit_agq.coef_ / fit_bin.coef_ - 1) < 0.05)

    # R: pred_grid <- expand.grid(time = 0:4, treatment = c(0, 1))
    #    predict(fit_bin, newdata = pred_grid, type = "response", re.form = NA)
    grid = pd.DataFrame([(t, a) for a in (0, 1) for t in range(5)], columns=["time", "treatment"])
    prob = fit_bin.predict(grid, type="response", re_form=np.nan)
    r_prob = [0.4209903699, 0.3637938445, 0.3102049177, 0.2612681692, 0.2176159732,
              0.2814128979, 0.2354677755, 0.1949884555, 0.1600115122, 0.1302932302]  # fmt: skip
    np.testing.assert_allclose(prob, r_prob, atol=1e-5)
    by_hand = expit(
        fixef["(Intercept)"] + fixef["time"] * grid["time"] + fixef["treatment"] * grid["treatment"]
    )
    np.testing.assert_allclose(prob, by_hand)

    # R: df$pred_prob <- predict(fit_bin, type = "response"); type = "link" on the data
    pred_prob = fit_bin.predict(df, type="response")
    np.testing.assert_allclose(pred_prob, fit_bin.fitted())
    np.testing.assert_allclose(expit(fit_bin.predict(df, type="link")), pred_prob)

    # R: fit2 <- glmer(... + (time | id)); anova(fit_bin, fit2)
    #    Chisq 0.72438, Df 2, Pr(>Chisq) 0.69615
    fit2 = glmer("y ~ time + treatment + (time | id)", df, family="binomial")
    table = sklearn_glmm.anova(fit_bin, fit2)
    assert table["Chisq"].iloc[1] == pytest.approx(0.72438, abs=1e-4)
    assert table["Df"].iloc[1] == 2
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(0.69615, abs=1e-4)


def test_tutorial_000_count_glmms():
    df, _ = make_longitudinal("poisson", re_sd=0.5, random_state=2024)
    # R: fit_pois <- glmmTMB(count ~ time + treatment + (1 | id), data = df, family = poisson)
    fit_pois = glmmTMB("y ~ time + treatment + (1 | id)", df, family="poisson")
    # R: fixef(fit_pois)$cond -> 1.50295911917 0.09711518675 -0.28933487665
    np.testing.assert_allclose(
        fit_pois.fixed_effects_["estimate"],
        [1.50295911917, 0.09711518675, -0.28933487665],
        atol=2e-5,
    )
    # R: sum(residuals(fit_pois, type = "pearson")^2) / df.residual(fit_pois) -> 0.8342560615
    assert fit_pois.overdispersion().ratio == pytest.approx(0.8342560615, abs=1e-5)
    # R: fit_nb <- glmmTMB(..., family = nbinom2); AIC(fit_pois, fit_nb) -> 7101.810169 7102.290541
    fit_nb = glmmTMB("y ~ time + treatment + (1 | id)", df, family="nbinom2")
    table = sklearn_glmm.compare_models(fit_pois, fit_nb, names=["pois", "nb"], sort=False)
    np.testing.assert_allclose(table["AIC"], [7101.810169, 7102.290541], atol=1e-3)
    # R: sigma(fit_nb) -> 122.0057855 (large: no overdispersion); a flat likelihood in theta
    assert fit_nb.theta_ == pytest.approx(122.0057855, rel=1e-3)
    # rate ratios
    irr = np.exp(fit_pois.fixed_effects_["estimate"])
    assert irr["time"] == pytest.approx(np.exp(0.09711518675), rel=1e-4)
    # R: predict(fit_pois, type = "response") on the data: the fitted counts
    np.testing.assert_allclose(fit_pois.predict(df, type="response"), fit_pois.fitted())


# ---------------------------------------------------------------------------
# R user, tutorial 002: app logins (the tutorial's own R output)
# ---------------------------------------------------------------------------


def test_tutorial_002_app_logins():
    app_data = load_app_logins()
    # R: glmm_model <- glmer(logins ~ day_centered + (1 | user_id),
    #                        family = poisson(link = "log"), data = app_data)
    glmm_model = glmer(
        "logins ~ day_centered + (1 | user_id)", app_data, family='poisson(link = "log")'
    )
    # fixef: 0.737944364 -0.009099868; random intercept SD 0.4330186; AIC 5290.259
    np.testing.assert_allclose(
        glmm_model.fixed_effects_["estimate"], [0.737944364, -0.009099868], atol=1e-5
    )
    assert glmm_model.summary().random_effects["Std.Dev."].iloc[0] == pytest.approx(
        0.4330186, abs=1e-4
    )
    assert glmm_model.aic_ == pytest.approx(5290.259, abs=1e-3)
    assert np.exp(glmm_model.fixed_effects_["estimate"]["day_centered"]) == pytest.approx(
        0.9909, abs=1e-4
    )

    # new_data <- data.frame(day_centered = c(-14.5, 0, 14.5), user_id = NA)
    # predict(glmm_model, newdata = new_data, re.form = NA, type = "response")
    new_data = pd.DataFrame({"day_centered": [-14.5, 0, 14.5], "user_id": np.nan})
    np.testing.assert_allclose(
        glmm_model.predict(new_data, re_form="NA", type="response"),
        [2.386654, 2.091631, 1.833078],
        rtol=1e-5,
    )
    # user_specific <- data.frame(day_centered = rep(0, 5), user_id = factor(c(1, 10, 20, 30, 40)))
    # predict(glmm_model, newdata = user_specific, type = "response")
    user_specific = pd.DataFrame(
        {"day_centered": [0.0] * 5, "user_id": ["1", "10", "20", "30", "40"]}
    )
    np.testing.assert_allclose(
        glmm_model.predict(user_specific, type="response"),
        [3.182189, 3.529369, 1.728530, 1.971098, 2.837006],
        rtol=1e-5,
    )

    # The tutorial's random-slope fit passes control = glmerControl(optimizer = "bobyqa"):
    # typed here it says what to do instead, and the fit without it is R's.
    with pytest.raises(TypeError, match="max_iter= and tol="):
        glmer(
            "logins ~ day_centered + (day_centered | user_id)",
            app_data,
            family="poisson",
            control="glmerControl(optimizer = 'bobyqa')",
        )
    glmm_slopes = glmer(
        "logins ~ day_centered + (day_centered | user_id)", app_data, family="poisson"
    )
    # R: AIC(glmm_slopes) -> 5292.065; anova(glmm_model, glmm_slopes) -> Chisq 2.19375, Df 2,
    #    Pr(>Chisq) 0.33391
    assert glmm_slopes.aic_ == pytest.approx(5292.065, abs=1e-3)
    table = sklearn_glmm.anova(glmm_model, glmm_slopes)
    assert table["Chisq"].iloc[1] == pytest.approx(2.19375, abs=1e-4)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(0.33391, abs=1e-4)

    # overdispersion as the tutorial computes it: sum(pearson^2) / (n - p) -> 0.928
    pearson = glmm_model.residuals("pearson")
    ratio = np.sum(pearson**2) / (len(app_data) - len(glmm_model.fixed_effects_))
    assert round(ratio, 3) == 0.928


# ---------------------------------------------------------------------------
# R user, tutorial 003: vegetables (data: make_vegetables(random_state=0))
# ---------------------------------------------------------------------------


def test_tutorial_003_vegetables():
    d, _ = make_vegetables(random_state=0)
    # R: m <- glmer(y ~ trt * sex + (1 | id), data = d, family = binomial)
    m = glmer("y ~ trt * sex + (1 | id)", d, family="binomial")
    # fixef: -0.4841912528 2.2325027761 -0.4183650165 -1.3413517864; logLik -2098.03332
    b = m.fixed_effects_["estimate"]
    assert list(b.index) == ["(Intercept)", "trttreat", "sexmale", "trttreat:sexmale"]
    np.testing.assert_allclose(
        b, [-0.4841912528, 2.2325027761, -0.4183650165, -1.3413517864], atol=2e-5
    )
    assert m.loglik_ == pytest.approx(-2098.03332, abs=1e-4)
    # R: predict(m, type = "response", re.form = NA,
    #            newdata = data.frame(sex = c("female", "female", "male", "male"),
    #                                 trt = c("control", "treat", "control", "treat")))
    newdata = pd.DataFrame(
        {
            "sex": ["female", "female", "male", "male"],
            "trt": ["control", "treat", "control", "treat"],
        }
    )
    prob = m.predict(newdata, type="response", re_form=np.nan)
    np.testing.assert_allclose(
        prob, [0.3812629116, 0.8517397091, 0.2885254667, 0.4971487110], atol=1e-5
    )
    # the same numbers "by hand" (plogis of sums of coefficients) and from the design
    by_hand = expit([b.iloc[0], b.iloc[0] + b.iloc[1], b.iloc[0] + b.iloc[2], b.sum()])
    np.testing.assert_allclose(prob, by_hand)
    X_new = design_matrix(m.design_info_, newdata)
    np.testing.assert_allclose(prob, m.predict_proba(X_new, population="zero")[:, 1])
    np.testing.assert_allclose(m.predict_proba(newdata, re_form="NA")[:, 1], prob)
    # R: exp(confint(m, parm = "trttreat")) -> 7.247936489 12.11370771 (profile)
    ci = m.confint(parm="trttreat", method="profile", exponentiate=True)
    np.testing.assert_allclose(
        ci.loc["trttreat", ["lower", "upper"]], [7.247936489, 12.11370771], rtol=2e-4
    )
    # R: simulate(m, nsim = 100): 0/1 outcomes, one column per simulation
    sims = m.simulate(100, random_state=0)
    assert sims.shape == (len(d), 100) and set(np.unique(sims)) <= {0, 1}


def test_r_user_first_mistakes_get_clear_messages():
    df, _ = make_longitudinal("poisson", n_groups=20, random_state=0)
    # R's argument order swapped
    with pytest.raises(TypeError, match="formula first"):
        glmer(df, "y ~ time + (1 | id)", family="poisson")
    # counts with the default family
    with pytest.raises(ValueError, match="the default family is binomial; pass family='poisson'"):
        glmer("y ~ time + treatment + (1 | id)", df)
    # a link this library does not fit
    with pytest.raises(ValueError, match="available: 'log'"):
        glmer("y ~ time + (1 | id)", df, family="poisson(link = 'sqrt')")


# ---------------------------------------------------------------------------
# scikit-learn user
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def visits():
    df, _ = make_longitudinal("poisson", n_groups=60, slope_sd=0.3, re_sd=0.5, random_state=7)
    df["arm"] = np.array(["a", "b", "c"])[df["id"] % 3]
    return df


def test_pipeline_with_column_transformer(visits):
    ct = ColumnTransformer(
        [
            ("num", StandardScaler(), ["time"]),
            ("cat", OneHotEncoder(drop="first", sparse_output=False), ["arm"]),
            ("grp", "passthrough", ["id"]),
        ],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    pipe = make_pipeline(ct, PoissonGLMM("1 + time", group_columns="id"))
    pipe.fit(visits[["time", "arm", "id"]], visits["y"])
    glmm = pipe[-1]
    assert list(glmm.fixed_effects_.index) == ["(Intercept)", "time", "arm_b", "arm_c"]
    mean = pipe.predict(visits[["time", "arm", "id"]])
    assert mean.shape == (len(visits),) and np.all(mean > 0)
    proba = pipe.predict_proba(visits[["time", "arm", "id"]].head(10))
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # the same model as a formula (time standardised by hand): the same fit
    scaled = visits.assign(
        time=(visits["time"] - visits["time"].mean()) / visits["time"].std(ddof=0)
    )
    m = glmer("y ~ time + arm + (1 + time | id)", scaled, family="poisson")
    np.testing.assert_allclose(m.coef_, glmm.coef_, rtol=1e-4, atol=1e-6)


def test_cross_validate_with_group_kfold_and_routing():
    df, _ = make_longitudinal("binomial", n_groups=100, slope_sd=0.8, random_state=0)
    X, y, ids = df[["time", "treatment"]], df["y"], df["id"]
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), BinomialGLMM().set_fit_request(groups=True))
        out = cross_validate(
            pipe, X, y, cv=GroupKFold(5), params={"groups": ids}, scoring="neg_log_loss"
        )
        search = GridSearchCV(
            BinomialGLMM().set_fit_request(groups=True),
            {"random_effects": ["1", "1 + time"]},
            cv=GroupKFold(4),
            scoring="neg_log_loss",
        ).fit(X, y, groups=ids)
    assert np.all(np.isfinite(out["test_score"])) and np.all(out["test_score"] < 0)
    assert search.best_params_["random_effects"] in ("1", "1 + time")
    proba = search.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_groups_by_column_name_as_people_type_it():
    df, _ = make_longitudinal("binomial", n_groups=50, random_state=1)
    X = df[["time", "treatment", "id"]]
    est = BinomialGLMM().fit(X, df["y"], groups="id")
    same = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    np.testing.assert_allclose(est.coef_, same.coef_, rtol=1e-10)
    np.testing.assert_allclose(
        est.predict_proba(X), same.predict_proba(df[["time", "treatment"]], df["id"])
    )


def test_formula_fit_on_raw_newdata_equals_the_hand_built_design(visits):
    m = glmer("y ~ poly(time, 2) + arm + (1 | id)", visits, family="poisson")
    newdata = visits.sample(15, random_state=0)
    X_new = design_matrix(m.design_info_, newdata)
    np.testing.assert_allclose(m.predict(newdata), m.predict(X_new, groups=newdata[["id"]]))
    np.testing.assert_allclose(
        m.predict(newdata, re_form=np.nan), m.predict(X_new, population="zero")
    )
    proba = m.predict_proba(newdata)
    np.testing.assert_allclose(proba, m.predict_proba(X_new, groups=newdata[["id"]]))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
