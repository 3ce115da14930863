"""Marginal (population-averaged) coefficients: sklearn_glmm.marginal.

Checks: exact results for the log link; the GLM case (no random-effect variance);
an independent brute-force integral over the random effects (tensor Gauss-Hermite
in the random effects' own dimension, or scipy's adaptive quadrature); Zeger's
attenuation for a logit random intercept; geepack's GEE at large n (fixture from R,
``tests/fixtures/marginal/make_marginal_fixtures.R``); the two standard-error
methods against each other; inputs.
"""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, special

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm.datasets import make_longitudinal
from sklearn_glmm.marginal import conditional_marginal_table, marginal_coefs

FIX = Path(__file__).parent / "fixtures" / "marginal"
FEATURES = ["time", "treatment"]


def _fit(est, df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(df[FEATURES], df["y"], groups=df["id"], **kw)


@pytest.fixture(scope="module")
def pois():
    df, _ = make_longitudinal("poisson", n_groups=80, re_sd=0.8, random_state=3)
    return df, _fit(PoissonGLMM(), df)


@pytest.fixture(scope="module")
def logit_slopes():
    df, _ = make_longitudinal(
        "binomial", n_groups=150, re_sd=1.5, slope_sd=0.4, re_corr=0.3, random_state=5
    )
    return df, _fit(BinomialGLMM(random_effects="1 + time"), df)


# ---------------------------------------------------------------------------
# exact answers
# ---------------------------------------------------------------------------
def test_poisson_random_intercept_is_exact(pois):
    # log link, random intercept: E exp(eta + b) = exp(eta + sigma^2 / 2)
    df, m = pois
    s2 = m.random_effects_cov_["id"].iloc[0, 0]
    assert s2 > 0.1
    mc = marginal_coefs(m)
    fe = m.fixed_effects_
    assert mc.loc["(Intercept)", "estimate"] == pytest.approx(
        fe.loc["(Intercept)", "estimate"] + s2 / 2, abs=1e-10
    )
    for t in FEATURES:
        assert mc.loc[t, "estimate"] == pytest.approx(fe.loc[t, "estimate"], abs=1e-10)
        # the slopes do not depend on sigma^2, so neither do their standard errors
        assert mc.loc[t, "std_error"] == pytest.approx(fe.loc[t, "std_error"], rel=1e-5)
    # the intercept's standard error includes the variance's uncertainty
    assert mc.loc["(Intercept)", "std_error"] > fe.loc["(Intercept)", "std_error"]
    assert list(mc.columns) == list(fe.columns) and list(mc.index) == list(fe.index)


def test_log_link_crossed_factors_and_offset():
    rng = np.random.default_rng(11)
    n_a, n_b = 40, 12
    a, b = np.repeat(np.arange(n_a), n_b), np.tile(np.arange(n_b), n_a)
    x = rng.normal(size=n_a * n_b)
    off = np.log(rng.uniform(0.5, 2.0, size=len(x)))
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.6, n_a)[a] + rng.normal(0, 0.4, n_b)[b] + off
    y = rng.poisson(np.exp(eta))
    groups = pd.DataFrame({"a": a, "b": b})
    X = pd.DataFrame({"x": x})
    m = PoissonGLMM().fit(X, y, groups=groups, offset=off)
    s2 = sum(m.random_effects_cov_[k].iloc[0, 0] for k in ("a", "b"))
    mc = marginal_coefs(m)
    assert mc.loc["(Intercept)", "estimate"] == pytest.approx(m.intercept_ + s2 / 2, abs=1e-10)
    assert mc.loc["x", "estimate"] == pytest.approx(m.coef_[0], abs=1e-10)
    # new rows with other offsets: the offset is not part of the marginal coefficients
    mc_new = marginal_coefs(m, X.iloc[:50], offset=np.zeros(50), std_errors=False)
    assert mc_new["estimate"].to_numpy() == pytest.approx(mc["estimate"].to_numpy(), abs=1e-10)
    assert mc_new["std_error"].isna().all()


def test_zero_inflated_marginal_mean_includes_the_structural_zeros():
    df, _ = make_longitudinal(
        "negbin", n_groups=100, nb_theta=3.0, zero_inflation=0.2, re_sd=0.5, random_state=2
    )
    m = _fit(NegBinGLMM(zero_inflation=True), df)
    s2 = m.random_effects_cov_["id"].iloc[0, 0]
    mc = marginal_coefs(m, std_errors=False)
    expected = m.intercept_ + s2 / 2 + np.log1p(-m.zero_inflation_)
    assert mc.loc["(Intercept)", "estimate"] == pytest.approx(expected, abs=1e-8)
    assert mc.loc["time", "estimate"] == pytest.approx(m.coef_[0], abs=1e-10)


def test_no_random_effect_variance_gives_the_conditional_coefficients():
    df, _ = make_longitudinal("binomial", n_groups=60, re_sd=1.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = BinomialGLMM().fit(df[FEATURES], df["y"])  # no groups: a GLM
    mc = marginal_coefs(glm)
    fe = glm.fixed_effects_
    np.testing.assert_allclose(mc["estimate"], fe["estimate"], atol=1e-10)
    np.testing.assert_allclose(mc["std_error"], fe["std_error"], rtol=1e-5)
    # a GLMM whose variance is estimated at 0 (a singular fit) too
    df0, _ = make_longitudinal("binomial", n_groups=100, re_sd=0.0, random_state=2)
    singular = _fit(BinomialGLMM(), df0)
    assert singular.is_singular_ and singular.random_effects_cov_["id"].iloc[0, 0] == 0.0
    mc0, fe0 = marginal_coefs(singular), singular.fixed_effects_
    np.testing.assert_allclose(mc0["estimate"], fe0["estimate"], atol=1e-10)
    np.testing.assert_allclose(mc0["std_error"], fe0["std_error"], rtol=1e-6)


# ---------------------------------------------------------------------------
# independent integrals
# ---------------------------------------------------------------------------
def _tensor_marginal_means(eta, Z, S, inv_link, n_nodes=40):
    """E inv_link(eta + z'b), b ~ N(0, S) in its own dimension (tensor product rule)."""
    z1, w1 = hermegauss(n_nodes)
    w1 = w1 / w1.sum()
    q = S.shape[0]
    grids = np.meshgrid(*([z1] * q), indexing="ij")
    U = np.stack([g.ravel() for g in grids], axis=1)  # (n_nodes^q, q)
    W = np.prod(np.stack(np.meshgrid(*([w1] * q), indexing="ij")).reshape(q, -1), axis=0)
    B = U @ np.linalg.cholesky(S + 1e-300 * np.eye(q)).T
    return inv_link(eta[:, None] + Z @ B.T) @ W


def test_brute_force_integral_random_slopes(logit_slopes):
    df, m = logit_slopes
    S = m.random_effects_cov_["id"].to_numpy()
    D = np.column_stack([np.ones(len(df)), df[FEATURES].to_numpy(float)])
    beta = m.fixed_effects_["estimate"].to_numpy()
    Z = np.column_stack([np.ones(len(df)), df["time"].to_numpy(float)])
    mu = _tensor_marginal_means(D @ beta, Z, S, special.expit)
    expected = np.linalg.lstsq(D, special.logit(mu), rcond=None)[0]
    np.testing.assert_allclose(marginal_coefs(m)["estimate"], expected, atol=1e-7)
    # and over new rows given as a DataFrame (extra columns are ignored)
    grid = pd.DataFrame({"time": np.arange(8.0), "treatment": [0, 1] * 4, "other": 1.0})
    Dg = np.column_stack([np.ones(8), grid[FEATURES].to_numpy(float)])
    Zg = np.column_stack([np.ones(8), grid["time"].to_numpy(float)])
    mug = _tensor_marginal_means(Dg @ beta, Zg, S, special.expit)
    expected_g = np.linalg.lstsq(Dg, special.logit(mug), rcond=None)[0]
    np.testing.assert_allclose(marginal_coefs(m, grid)["estimate"], expected_g, atol=1e-7)


@pytest.mark.parametrize(("link", "re_sd"), [("probit", 1.2), ("cloglog", 1.2), ("logit", 5.0)])
def test_brute_force_integral_other_links_and_large_variance(link, re_sd):
    df, _ = make_longitudinal("binomial", n_groups=120, re_sd=re_sd, random_state=8)
    m = _fit(BinomialGLMM(link=link), df)
    if link == "logit":  # the large variance is estimated as such
        assert np.sqrt(m.random_effects_cov_["id"].iloc[0, 0]) > 0.8 * re_sd
    sd = float(np.sqrt(m.random_effects_cov_["id"].iloc[0, 0]))
    inv = {
        "logit": special.expit,
        "probit": special.ndtr,
        "cloglog": lambda e: -np.expm1(-np.exp(e)),
    }[link]
    fwd = {
        "logit": special.logit,
        "probit": special.ndtri,
        "cloglog": lambda p: np.log(-np.log1p(-p)),
    }[link]
    grid = df[FEATURES].drop_duplicates().reset_index(drop=True)
    D = np.column_stack([np.ones(len(grid)), grid.to_numpy(float)])
    eta = D @ m.fixed_effects_["estimate"].to_numpy()
    mu = np.array(
        [
            integrate.quad(
                lambda b, e=e: (
                    inv(e + b) * np.exp(-0.5 * (b / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
                ),
                -12 * sd,
                12 * sd,
                points=[-e],  # the inverse link's transition
                epsabs=1e-13,
                limit=200,
            )[0]
            for e in eta
        ]
    )
    expected = np.linalg.lstsq(D, fwd(mu), rcond=None)[0]
    got = marginal_coefs(m, grid, std_errors=False)["estimate"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-7)


# ---------------------------------------------------------------------------
# attenuation and GEE
# ---------------------------------------------------------------------------
def test_logit_attenuation_follows_zeger():
    df, _ = make_longitudinal(
        "binomial",
        n_groups=400,
        re_sd=2.0,
        fixed_effects={"time": -0.3, "treatment": 1.0},
        random_state=4,
    )
    m = _fit(BinomialGLMM(), df)
    s2 = m.random_effects_cov_["id"].iloc[0, 0]
    mc = marginal_coefs(m)
    for t in FEATURES:
        b = m.fixed_effects_.loc[t, "estimate"]
        zeger = b / np.sqrt(1 + 0.346 * s2)  # (16 sqrt(3) / (15 pi))^2 = 0.346
        assert abs(mc.loc[t, "estimate"]) < abs(b)
        assert mc.loc[t, "estimate"] == pytest.approx(zeger, rel=0.06)


def test_agrees_with_gee_at_large_n():
    ref = json.loads((FIX / "gee_reference.json").read_text())["logit_ri_large"]
    d = pd.read_csv(FIX / "logit_ri_large.csv")
    # glmer(y ~ time + treatment + (1 | id), family = binomial)
    m = BinomialGLMM().fit(d[FEATURES], d["y"], groups=d["id"])
    for t, v in ref["glmer_estimate"].items():
        assert m.fixed_effects_.loc[t, "estimate"] == pytest.approx(v, abs=2e-4)
    # geeglm(y ~ time + treatment, id = id, family = binomial, corstr = "exchangeable")
    mc = marginal_coefs(m)
    for t, v in ref["gee_estimate"].items():
        se = ref["gee_std_error"][t]
        assert abs(mc.loc[t, "estimate"] - v) < 0.6 * se, t
        assert mc.loc[t, "std_error"] == pytest.approx(se, rel=0.15), t
    for t in ("time", "treatment"):  # the conditional coefficients are far from GEE's
        se = ref["gee_std_error"][t]
        assert abs(m.fixed_effects_.loc[t, "estimate"] - ref["gee_estimate"][t]) > 3 * se


def test_recovers_the_true_marginal_coefficients():
    # constructed solution: the population's marginal coefficients, integrated from the
    # true parameters, are within the standard errors of the fitted model's
    fe = {"(Intercept)": -0.4, "time": -0.25, "treatment": 0.7}
    S = np.array([[1.8**2, 0.3 * 1.8 * 0.4], [0.3 * 1.8 * 0.4, 0.4**2]])
    df, _ = make_longitudinal(
        "binomial", n_groups=1500, fixed_effects=fe, re_sd=1.8, slope_sd=0.4, re_corr=0.3,
        random_state=21,
    )  # fmt: skip
    m = _fit(BinomialGLMM(random_effects="1 + time"), df)
    D = np.column_stack([np.ones(len(df)), df[FEATURES].to_numpy(float)])
    Z = np.column_stack([np.ones(len(df)), df["time"].to_numpy(float)])
    beta = np.array([fe["(Intercept)"], fe["time"], fe["treatment"]])
    mu = _tensor_marginal_means(D @ beta, Z, S, special.expit, n_nodes=30)
    truth = np.linalg.lstsq(D, special.logit(mu), rcond=None)[0]
    mc = marginal_coefs(m)
    z = (mc["estimate"].to_numpy() - truth) / mc["std_error"].to_numpy()
    assert np.all(np.abs(z) < 3), z
    # while the conditional truth is far from the marginal one
    assert np.all(np.abs(beta[1:] - truth[1:]) > 4 * mc["std_error"].to_numpy()[1:])


# ---------------------------------------------------------------------------
# standard errors
# ---------------------------------------------------------------------------
def test_delta_and_simulation_standard_errors_agree(logit_slopes):
    _, m = logit_slopes
    delta = marginal_coefs(m)
    sim = marginal_coefs(m, se_method="simulation", n_draws=600, random_state=0)
    np.testing.assert_allclose(sim["estimate"], delta["estimate"])
    np.testing.assert_allclose(sim["std_error"], delta["std_error"], rtol=0.15)
    again = marginal_coefs(m, se_method="simulation", n_draws=600, random_state=0)
    np.testing.assert_array_equal(sim["std_error"], again["std_error"])
    V = delta.attrs["vcov"]
    assert list(V.index) == list(delta.index)
    np.testing.assert_allclose(np.sqrt(np.diag(V)), delta["std_error"])


# ---------------------------------------------------------------------------
# rows, weights and inputs
# ---------------------------------------------------------------------------
def test_training_rows_equal_the_same_rows_passed_as_X(logit_slopes):
    df, m = logit_slopes
    a = marginal_coefs(m)
    b = marginal_coefs(m, df)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-8)


def test_duplicated_rows_equal_weight_two(logit_slopes):
    df, m = logit_slopes
    rows = df[FEATURES].iloc[:40]
    w = np.where(np.arange(40) < 10, 2.0, 1.0)
    dup = pd.concat([rows, rows.iloc[:10]])
    a = marginal_coefs(m, rows, sample_weight=w, std_errors=False)["estimate"]
    b = marginal_coefs(m, dup, std_errors=False)["estimate"]
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_caller_data_unchanged(logit_slopes):
    df, m = logit_slopes
    X = df[FEATURES].copy()
    before = X.copy()
    w = np.ones(len(X))
    marginal_coefs(m, X, sample_weight=w)
    pd.testing.assert_frame_equal(X, before)
    assert np.all(w == 1)


def test_bad_inputs(logit_slopes):
    df, m = logit_slopes
    with pytest.raises(ValueError, match="se_method"):
        marginal_coefs(m, se_method="bootstrap")
    with pytest.raises(ValueError, match="n_draws"):
        marginal_coefs(m, se_method="simulation", n_draws=1)
    with pytest.raises(ValueError, match="sample_weight"):
        marginal_coefs(m, df, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):
        marginal_coefs(m, df, sample_weight=-np.ones(len(df)))
    with pytest.raises(ValueError, match="offset"):
        marginal_coefs(m, offset=np.zeros(len(df)))
    with pytest.raises(ValueError, match="0 sample"):
        marginal_coefs(m, df.iloc[:0])
    with pytest.raises(Exception, match="not fitted"):
        marginal_coefs(BinomialGLMM())
    with pytest.raises(TypeError, match="BinomialGLMM"):
        from sklearn.linear_model import LogisticRegression

        marginal_coefs(LogisticRegression().fit(df[FEATURES], df["y"]))


def test_unpickled_without_data(pois):
    from sklearn_glmm.exceptions import TrainingDataError

    df, m = pois
    m2 = pickle.loads(pickle.dumps(m))
    with pytest.raises(TrainingDataError):
        marginal_coefs(m2)
    a = marginal_coefs(m2, df)
    np.testing.assert_allclose(a.to_numpy(), marginal_coefs(m).to_numpy(), rtol=1e-8)


def test_conditional_marginal_table(logit_slopes, pois):
    _, m = logit_slopes
    t = conditional_marginal_table(m)
    assert t.attrs["scale"] == "odds ratio"
    fe = m.fixed_effects_
    assert t.loc["time", "conditional"] == pytest.approx(np.exp(fe.loc["time", "estimate"]))
    assert (t["conditional_lower"] < t["conditional"]).all()
    assert (t["marginal_lower"] < t["marginal"]).all() and (
        t["marginal"] < t["marginal_upper"]
    ).all()
    link = conditional_marginal_table(m, exponentiate=False, level=0.9)
    assert link.attrs["scale"] == "log-odds"
    assert link.loc["time", "marginal"] == pytest.approx(np.log(t.loc["time", "marginal"]))
    with pytest.raises(ValueError, match="level"):
        conditional_marginal_table(m, level=95)
    assert conditional_marginal_table(pois[1]).attrs["scale"] == "rate ratio"


# ---------------------------------------------------------------------------
# summary, report and plot
# ---------------------------------------------------------------------------
def test_summary_and_report_show_the_marginal_coefficients(logit_slopes):
    _, m = logit_slopes
    mc = marginal_coefs(m)
    text = m.summary().marginal()
    assert text.startswith("Marginal (population-averaged) fixed effects:")
    line = next(ln for ln in text.splitlines() if ln.startswith("treatment"))
    assert f"{mc.loc['treatment', 'estimate']:.6f}" in line
    assert f"{mc.loc['treatment', 'std_error']:.6f}" in line
    plain = m.report()
    with_marginal = m.report(marginal=True)
    assert "population-averaged" not in plain
    sentence = with_marginal[len(plain.split(" Across")[0]) :]
    assert f"time OR = {np.exp(mc.loc['time', 'estimate']):.2f}, 95% CI" in sentence


def test_plot_marginal_coefs(logit_slopes, pois, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn_glmm.plotting import plot_marginal_coefs

    _, m = logit_slopes
    ax = plot_marginal_coefs(m)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["time", "treatment"]
    assert ax.get_xscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert labels[0].startswith("conditional") and labels[1].startswith("marginal")
    # the markers sit at the table's ratios, the intercept left out
    t = conditional_marginal_table(m).drop(index="(Intercept)")
    for container, kind in zip(ax.containers, ("conditional", "marginal")):
        np.testing.assert_allclose(container.lines[0].get_xdata(), t[kind])
    ax.figure.savefig(tmp_path / "m.png")
    ax2 = plot_marginal_coefs(pois[1], exponentiate=False, intercept=True)
    assert ax2.get_xscale() == "linear" and len(ax2.get_yticklabels()) == 3
    plt.close("all")


def test_formula_and_group_columns_models():
    pytest.importorskip("formulaic")
    from sklearn_glmm.formula import glmer

    df, _ = make_longitudinal("binomial", n_groups=100, re_sd=1.5, random_state=0)
    df["arm"] = np.where(df["treatment"] == 1, "b", "a")
    plain = _fit(BinomialGLMM(), df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formula = glmer("y ~ time + arm + (1 | id)", df, family="binomial")
        by_column = BinomialGLMM(group_columns="id").fit(df[["id", *FEATURES]], df["y"])
    expected = marginal_coefs(plain)["estimate"].to_numpy()
    # glmer's model matrix is rebuilt from the data frame's columns
    np.testing.assert_allclose(marginal_coefs(formula, df)["estimate"], expected, atol=1e-5)
    np.testing.assert_allclose(marginal_coefs(formula)["estimate"], expected, atol=1e-5)
    assert list(marginal_coefs(formula).index) == list(formula.fixed_effects_.index)
    # group_columns: the labels in X are not used by the marginal mean
    np.testing.assert_allclose(marginal_coefs(by_column)["estimate"], expected, atol=1e-6)
    np.testing.assert_allclose(
        marginal_coefs(by_column, df[["id", *FEATURES]])["estimate"], expected, atol=1e-6
    )


@pytest.mark.slow
def test_delta_method_intervals_cover_the_true_marginal_coefficients():
    # 200 data sets from one model: the 95% intervals of the marginal coefficients
    # cover the population's (integrated from the true parameters) about 95% of the time
    fe = {"(Intercept)": -0.5, "time": -0.3, "treatment": 0.8}
    hits, n_rep = np.zeros(3), 200
    truth = None
    for rep in range(n_rep):
        df, _ = make_longitudinal("binomial", n_groups=150, fixed_effects=fe, re_sd=2.0,
                                  random_state=1000 + rep)  # fmt: skip
        if truth is None:  # the same rows in every data set (a fixed design)
            D = np.column_stack([np.ones(len(df)), df[FEATURES].to_numpy(float)])
            Z = np.ones((len(df), 1))
            mu = _tensor_marginal_means(D @ np.array(list(fe.values())), Z, np.eye(1) * 4.0,
                                        special.expit, n_nodes=60)  # fmt: skip
            truth = np.linalg.lstsq(D, special.logit(mu), rcond=None)[0]
        mc = marginal_coefs(_fit(BinomialGLMM(), df))
        lo = mc["estimate"] - 1.96 * mc["std_error"]
        hi = mc["estimate"] + 1.96 * mc["std_error"]
        hits += (lo.to_numpy() <= truth) & (truth <= hi.to_numpy())
    coverage = hits / n_rep
    # binomial(200, 0.95): 99% of coverages lie within 0.95 +- 0.04
    assert np.all(np.abs(coverage - 0.95) < 0.045), coverage


def test_zero_inflation_with_predictors_uses_each_rows_probability():
    df, _ = make_longitudinal("poisson", n_groups=120, re_sd=0.6, random_state=9)
    rng = np.random.default_rng(9)
    pi = special.expit(-1.5 + 0.4 * df["time"].to_numpy())
    df["y"] = np.where(rng.random(len(df)) < pi, 0, df["y"])
    m = _fit(PoissonGLMM(zero_inflation="1 + time"), df)
    s2 = m.random_effects_cov_["id"].iloc[0, 0]
    X = df[FEATURES]
    D = np.column_stack([np.ones(len(df)), X.to_numpy(float)])
    # log E y = log(1 - pi_i) + x'beta + sigma^2 / 2, regressed on x
    target = np.log1p(-m.predict_zero_inflation(X)) + D @ m.fixed_effects_["estimate"] + s2 / 2
    expected = np.linalg.lstsq(D, target, rcond=None)[0]
    np.testing.assert_allclose(marginal_coefs(m)["estimate"], expected, atol=1e-10)
    np.testing.assert_allclose(marginal_coefs(m, X)["estimate"], expected, atol=1e-10)
    # the zero inflation's slope on time pulls the marginal time coefficient down
    assert marginal_coefs(m).loc["time", "estimate"] < m.fixed_effects_.loc["time", "estimate"]


def test_marginal_coefs_of_rows_that_do_not_identify_a_coefficient_are_nan():
    # rows without a factor level (or a grid with x constant) cannot identify its
    # coefficients: least squares gave the minimum-norm solution, which moved with the
    # units of x (fc 0.182 here, 0.169 in other units; p = 0.0006 for a slope from three
    # rows at x = 0); R's lm gives NA
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(60), 6)
    f = rng.choice(["a", "b", "c"], len(g))
    x = rng.normal(size=len(g))
    eta = -0.4 + 0.8 * (f == "b") - 0.6 * (f == "c") + x + rng.normal(0, 1.2, 60)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    X = pd.DataFrame({"fb": (f == "b") * 1.0, "fc": (f == "c") * 1.0, "x": x})
    X["fb:x"], X["fc:x"] = X["fb"] * x, X["fc"] * x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM().fit(X, y, groups=g)
    sub = X[f != "c"]
    with pytest.warns(UserWarning, match=r"do not identify \['fc', 'fc:x'\]"):
        mc = marginal_coefs(m, sub)
    assert mc.loc[["fc", "fc:x"]].isna().all().all()
    # the identified ones are the least squares without them (R's lm on the same targets)
    full = marginal_coefs(m, sub[["fb", "x", "fb:x"]].assign(fc=0.0, **{"fc:x": 0.0})[X.columns])
    assert np.isfinite(mc.loc[["(Intercept)", "fb", "x", "fb:x"], "estimate"]).all()
    np.testing.assert_allclose(
        mc.loc[["(Intercept)", "fb", "x", "fb:x"], "estimate"],
        full.loc[["(Intercept)", "fb", "x", "fb:x"], "estimate"],
        rtol=1e-10,
    )
    grid = pd.DataFrame({"fb": [0.0, 1, 0], "fc": [0.0, 0, 1], "x": 0.0, "fb:x": 0.0, "fc:x": 0.0})
    with pytest.warns(UserWarning, match=r"do not identify \['x', 'fb:x', 'fc:x'\]"):
        assert marginal_coefs(m, grid).loc[["x", "fb:x", "fc:x"], "estimate"].isna().all()
    w = np.where(f == "c", 0.0, 1.0)
    with pytest.warns(UserWarning, match="do not identify"):
        assert np.isnan(marginal_coefs(m, sample_weight=w).loc["fc", "estimate"])


def test_interval_levels_are_checked():
    df, _ = make_longitudinal("binomial", n_groups=40, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    X = df[["time", "treatment"]].head(4)
    for bad in (95, 0, 1.0, -0.5, "0.95"):
        with pytest.raises(ValueError, match="level must be"):
            m.marginal_means(X, level=bad)
        with pytest.raises(ValueError, match="level must be"):
            m.contrast(X.assign(treatment=1), X.assign(treatment=0), level=bad)
        with pytest.raises(ValueError, match="level must be"):
            m.predict_interval(X, level=bad)


def test_marginal_coefs_read_a_formula_offset_from_the_rows():
    formula = pytest.importorskip("sklearn_glmm.formula")
    df, _ = make_longitudinal("binomial", n_groups=60, random_state=3)
    df["off"] = 0.8 * np.sin(3 * df["time"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = formula.glmer("y ~ time + treatment + offset(off) + (1 | id)", df, family="binomial")
    np.testing.assert_allclose(marginal_coefs(m, df)["estimate"], marginal_coefs(m)["estimate"])
    # without the offset's variable the rows were taken at offset 0 (other coefficients)
    with pytest.raises(ValueError, match=r"X lacks \['off'\], used by the model's offset"):
        marginal_coefs(m, df.drop(columns="off"))
    with pytest.raises(ValueError, match="do not pass offset= as well"):
        marginal_coefs(m, df, offset=np.zeros(len(df)))


def test_population_tools_of_a_group_columns_model_need_no_labels():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from sklearn_glmm.plotting import plot_conditional_marginal

    df, _ = make_longitudinal("binomial", n_groups=50, random_state=4)
    X = df[["time", "treatment", "id"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM(random_effects="1 + time", group_columns="id").fit(X, df["y"])
    pd.testing.assert_frame_equal(marginal_coefs(m, X[["time", "treatment"]]), marginal_coefs(m, X))
    grid = pd.DataFrame({"time": [0.0, 1, 2, 3], "treatment": 1.0})
    lines = []
    for data in (grid, grid.assign(id=X["id"].iloc[0])):  # labels or none: the same curves
        ax = plot_conditional_marginal(m, data, time="time")
        lines.append([line.get_ydata() for line in ax.get_lines()])
        matplotlib.pyplot.close("all")
    for a, b in zip(*lines):
        np.testing.assert_allclose(a, b)


def test_exponentiated_probit_coefficients_are_refused():
    df, _ = make_longitudinal("binomial", n_groups=40, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM(link="probit").fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    assert conditional_marginal_table(m).attrs["scale"] == "probit"
    with pytest.raises(ValueError, match="is no ratio"):
        conditional_marginal_table(m, exponentiate=True)
