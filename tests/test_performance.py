"""sklearn_glmm.performance against R's performance 0.10.2, insight 0.19.0 and car 3.1.1.

The reference numbers are in tests/fixtures/performance/reference.json, made by
make_performance.R beside it on the CSVs there; both sides fit the same rows with
the same formula. Tolerances: ICC and R² within 1e-3 (absolute); chi-square
statistics, p-values and VIFs within 1 % (relative).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm import performance as P

pytest.importorskip("formulaic")
from sklearn_glmm.formula import glmer, parse_glmm_formula  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "performance"
REF = json.loads((FIXTURES / "reference.json").read_text())

# the Python side of each R call in make_performance.R
MODELS = {
    "bin_ri": ("y ~ x1 + x2 + (1 | id)", "binomial", {}),
    "pois_rs": ("y ~ x + t + (1 + t | id)", "poisson", {}),
    "nb_ri": ("y ~ x + g + (1 | id)", "nbinom2", {}),
    "bin_factor": ("y ~ f * x + (1 | id)", "binomial", {}),
    "crossed_bin": ("y ~ x + (1 | a) + (1 | b)", "binomial", {}),
    "pois_olre": ("y ~ x + (1 | id) + (1 | obs)", "poisson", {}),
    "pois_offset": ("y ~ x + offset(log(expo)) + (1 | id)", "poisson", {}),
    "salamanders": ("count ~ mined + spp + (1 | site)", "poisson", {}),
    "salamanders_zip": ("count ~ mined + spp + (1 | site)", "poisson", {"ziformula": "~1"}),
    "salamanders_zinb": ("count ~ mined + spp + (1 | site)", "nbinom2", {"ziformula": "~1"}),
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", {}),
    "singular_bin": ("y ~ x + (1 | id)", "binomial", {}),
}


def cases_with(key: str) -> list[str]:
    return [name for name in MODELS if key in REF[name]]


@cache
def data(name: str) -> pd.DataFrame:
    df = pd.read_csv(FIXTURES / REF[name]["data"])
    for col in REF[name]["factors"]:
        df[col] = df[col].astype(str)
    return df


@cache
def fit(name: str, formula: str | None = None):
    text, family, kw = MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fit, zero inflation at its bound
        return glmer(formula or text, data(name), family=family, **kw)


def quiet(fn, *args, **kwargs):
    """Call a check without its informational warnings (small means, singular fits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


def na(values) -> np.ndarray:
    """R's NA (JSON null) as NaN."""
    return np.array([np.nan if v is None else v for v in np.atleast_1d(values)], dtype=float)


def assert_rel(actual, expected, rtol=0.01):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), na(expected), rtol=rtol)


def assert_p(actual, expected, rtol=0.01):
    """p-values within 1 %; below 1e-10 their logarithms within 1 %.

    Far in the tail a p-value's relative error is the statistic's absolute error
    over 2: chi-square statistics that agree to 1e-4 (200.87 vs 200.89) give
    p-values 1e-40 apart by 1.2 %.
    """
    actual, expected = np.asarray(actual, dtype=float), na(expected)
    tail = expected < 1e-10
    np.testing.assert_allclose(actual[~tail], expected[~tail], rtol=rtol)
    np.testing.assert_allclose(np.log(actual[tail]), np.log(expected[tail]), rtol=rtol)


def test_fits_match_r():
    """Both sides fit the same model: the log-likelihoods agree."""
    for name in MODELS:
        assert fit(name).loglik_ == pytest.approx(REF[name]["fit"]["loglik"], abs=2e-3), name


# ---------------------------------------------------------------------------
# variance components, ICC, R2
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_variance_components_match_insight(name):
    v = quiet(P.variance_components, fit(name))
    ref = REF[name]["variances"]
    assert v.fixed == pytest.approx(ref["var.fixed"][0], abs=1e-3)
    assert v.distribution == pytest.approx(ref["var.distribution"][0], abs=1e-3)
    assert v.dispersion == pytest.approx(ref["var.dispersion"][0], abs=1e-3)
    assert v.residual == pytest.approx(ref["var.residual"][0], abs=1e-3)
    if "var.random" in ref:
        assert v.random == pytest.approx(ref["var.random"][0], abs=1e-3)
    else:
        assert np.isnan(v.random) and v.singular
    for factor, value in ref["var.intercept"].items():
        assert v.intercept[factor] == pytest.approx(value, abs=1e-3)


@pytest.mark.parametrize("name", cases_with("icc"))
def test_icc_matches_performance(name):
    out = quiet(P.icc, fit(name))
    ref = REF[name]["icc"]
    np.testing.assert_allclose(out["ICC_adjusted"], na(ref["adjusted"])[0], atol=1e-3)
    np.testing.assert_allclose(out["ICC_conditional"], na(ref["conditional"])[0], atol=1e-3)


@pytest.mark.parametrize("name", cases_with("icc_by_group"))
def test_icc_by_group_matches_performance(name):
    out = P.icc(fit(name), by_group=True)
    ref = REF[name]["icc_by_group"]
    assert list(out["Group"]) == list(ref["group"])
    np.testing.assert_allclose(out["ICC"], ref["icc"], atol=1e-3)


@pytest.mark.parametrize("name", cases_with("r2"))
def test_r2_nakagawa_matches_performance(name):
    out = quiet(P.r2, fit(name))
    ref = REF[name]["r2"]
    np.testing.assert_allclose(out["R2_marginal"], na(ref["marginal"])[0], atol=1e-3)
    np.testing.assert_allclose(out["R2_conditional"], na(ref["conditional"])[0], atol=1e-3)


def test_singular_fit_gives_na_as_performance():
    m = fit("singular_bin")
    with pytest.warns(UserWarning, match="singularity"):
        assert np.isnan(P.icc(m)).all()
    with pytest.warns(UserWarning, match="Random effect variances not available"):
        out = P.r2(m)
    assert np.isnan(out["R2_conditional"]) and out["R2_marginal"] > 0


def test_small_count_means_warn_as_performance():
    with pytest.warns(UserWarning, match="too close to zero"):
        P.icc(fit("pois_offset"))


def test_random_slopes_warn_for_icc_by_group():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = P.icc(fit("pois_rs"), by_group=True)
    assert any("random slopes" in str(w.message) for w in caught)
    assert list(out["Group"]) == ["id"]


def test_icc_and_r2_need_random_effects():
    X = data("bin_ri")[["x1", "x2"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = BinomialGLMM().fit(X, data("bin_ri")["y"])
    with pytest.raises(ValueError, match="no random effects"):
        P.icc(glm)


# ---------------------------------------------------------------------------
# check_overdispersion, check_zeroinflation, check_singularity
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases_with("overdispersion"))
def test_check_overdispersion_matches_performance(name):
    out = P.check_overdispersion(fit(name)).iloc[0]
    ref = REF[name]["overdispersion"]
    assert out["residual_df"] == ref["rdf"]
    assert_rel(out["chisq_statistic"], ref["chisq"])
    assert_rel(out["dispersion_ratio"], ref["ratio"])
    assert_p([out["p_value"]], ref["p_value"])


def test_check_overdispersion_reproduces_performance_unit_test():
    """performance's tests/testthat/test-check_overdispersion.R, glmmTMB model m2."""
    out = P.check_overdispersion(fit("salamanders"))
    row = out.iloc[0]
    assert row["chisq_statistic"] == pytest.approx(1475.87512547128, rel=1e-3)
    assert row["dispersion_ratio"] == pytest.approx(2.32421279601777, rel=1e-3)
    assert row["residual_df"] == 635
    assert row["p_value"] == pytest.approx(8.41489530177729e-69, rel=1e-2)
    assert out.detected
    assert "Overdispersion detected." in repr(out)
    assert "dispersion ratio =" in repr(out) and "< 0.001" in repr(out)


def test_check_overdispersion_refuses_bernoulli():
    with pytest.raises(ValueError, match="Bernoulli"):
        P.check_overdispersion(fit("bin_ri"))


@pytest.mark.parametrize("name", cases_with("zeroinflation"))
def test_check_zeroinflation_matches_performance(name):
    out = P.check_zeroinflation(fit(name)).iloc[0]
    ref = REF[name]["zeroinflation"]
    assert out["observed_zeros"] == ref["observed"]
    # zero-inflated fits: the model's own P(0), which performance 0.10 leaves out
    expected = ref.get("predicted_model", ref["predicted"])
    assert abs(out["predicted_zeros"] - expected) <= 1
    assert out["tolerance"] == ref["tolerance"]


def test_check_zeroinflation_verdicts():
    poisson = P.check_zeroinflation(fit("salamanders"))
    assert poisson.detected and "underfitting zeros" in repr(poisson)
    zinb = P.check_zeroinflation(fit("salamanders_zinb"))
    assert not zinb.detected and "Model seems ok" in repr(zinb)
    with pytest.raises(ValueError, match="count model"):
        P.check_zeroinflation(fit("bin_ri"))


@pytest.mark.parametrize("name", list(MODELS))
def test_check_singularity_matches_performance(name):
    out = P.check_singularity(fit(name))
    assert out.detected is REF[name]["singular"]
    cols = ["Group", "Term", "Variance", "Cholesky_diagonal", "Scaled_diagonal", "Singular"]
    assert list(out.columns) == cols


def test_check_singularity_table():
    out = P.check_singularity(fit("pois_rs"))
    assert list(out["Term"]) == ["(Intercept)", "t"]
    cov = fit("pois_rs").random_effects_cov_["id"].to_numpy()
    L = np.linalg.cholesky(cov)
    np.testing.assert_allclose(out["Cholesky_diagonal"], np.diag(L), rtol=1e-8)
    assert "No singular fit detected." in repr(out)
    assert "Singular fit" in repr(P.check_singularity(fit("singular_bin")))


def test_singularity_verdict_and_variance_components_do_not_depend_on_units():
    # lme4's theta is in the predictors' units: a slope in large units (or far from
    # zero) has a tiny Cholesky diagonal there, which performance's rule calls singular
    # (ICC and R2 then NaN); the verdict reads the internal, scaled factor instead
    rng = np.random.default_rng(0)
    n, G = 400, 30
    g = rng.integers(0, G, n)
    x0, x1 = rng.normal(size=n), rng.normal(size=n) * 2 + 1
    b0, b1 = rng.normal(0, 0.7, G), rng.normal(0, 0.3, G)
    y = rng.poisson(np.exp(-0.3 + 0.3 * x0 + (0.2 + 0.5 * b1[g]) * x1 + b0[g]))
    out = []
    for x in (x1, x1 * 1e5, x1 + 1e6):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m = PoissonGLMM(random_effects="1 + x1").fit(
                pd.DataFrame({"x0": x0, "x1": x}), y, groups=g
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out.append((P.check_singularity(m), P.icc(m), P.r2(m)))
        assert not [w for w in caught if "singular" in str(w.message).lower()]
    for chk, icc, r2 in out:
        assert not chk.detected
        np.testing.assert_allclose(chk["Scaled_diagonal"], out[0][0]["Scaled_diagonal"], rtol=1e-5)
        np.testing.assert_allclose(icc.to_numpy(), out[0][1].to_numpy(), rtol=1e-5)
        np.testing.assert_allclose(r2.to_numpy(), out[0][2].to_numpy(), rtol=1e-5)
    assert out[1][0]["Cholesky_diagonal"].iloc[1] < 1e-5  # lme4's theta in those units


# ---------------------------------------------------------------------------
# check_collinearity, binned_residuals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases_with("vif"))
def test_check_collinearity_matches_performance(name):
    out = P.check_collinearity(fit(name))
    ref = REF[name]["vif"]
    assert list(out["Term"]) == list(ref["term"])
    assert_rel(out["VIF"], ref["vif"])
    assert_rel(out["SE_factor"], ref["se_factor"])
    assert_rel(out["VIF_CI_low"], ref["vif_ci_low"])
    finite = ~np.isnan(na(ref["vif_ci_high"]))  # R's Inf is stored as null
    assert_rel(out["VIF_CI_high"][finite], na(ref["vif_ci_high"])[finite])
    assert np.all(np.isinf(out["VIF_CI_high"][~finite]))


def test_vif_interval_of_uncorrelated_terms():
    """A VIF of 1, or a rounding unit below it (the covariance's arithmetic), has
    performance's interval [1, Inf], not NaN; other VIFs keep theirs."""
    from sklearn_glmm._performance_terms import vif_interval

    vif = np.array([1.0, 1.0 - 1.1e-16, 2.5])
    lo, hi = vif_interval(vif, 200, 3, 0.95)
    np.testing.assert_array_equal(lo[:2], 1.0)
    assert np.all(np.isposinf(hi[:2]))
    assert 1.0 < lo[2] < 2.5 < hi[2] < np.inf


def test_check_collinearity_layout_and_errors():
    out = P.check_collinearity(fit("bin_factor"))
    text = repr(out)
    assert "Check for Multicollinearity" in text and "Low Correlation" in text
    assert not out.detected
    with pytest.raises(ValueError, match="at least two"):
        P.check_collinearity(fit("crossed_bin"))


@pytest.mark.parametrize("name", cases_with("binned"))
def test_binned_residuals_match_performance(name):
    out = P.binned_residuals(fit(name))
    ref = REF[name]["binned"]
    np.testing.assert_array_equal(out["n"], ref["n"])
    np.testing.assert_allclose(out["xbar"], ref["xbar"], atol=1e-3)
    np.testing.assert_allclose(out["ybar"], ref["ybar"], atol=1e-3)
    np.testing.assert_allclose(out["CI_low"], ref["ci_low"], atol=1e-3)
    np.testing.assert_allclose(out["CI_high"], ref["ci_high"], atol=1e-3)
    assert out["inside"].mean() == pytest.approx(ref["resid_ok"], abs=1e-9)


def test_binned_residuals_keep_rows_of_one_fitted_value_together(monkeypatch):
    # rows with the same covariates and group have one fitted probability, which two
    # computations may round 3e-17 apart: they were then split between two bins
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 10)  # per person 2 conditions x 5 replicates: ties
    x = np.tile(np.repeat([0.0, 1.0], 5), 40)
    y = rng.binomial(1, 1 / (1 + np.exp(-(-0.3 + 0.8 * x + rng.normal(0, 1, 40)[g]))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM().fit(pd.DataFrame({"x": x}), y, groups=g)
    exact = P.binned_residuals(m)
    p = np.asarray(m.fitted(), dtype=float)
    jitter = np.where(np.arange(len(p)) % 2 == 0, np.nextafter(p, 2.0), np.nextafter(p, -1.0))
    monkeypatch.setattr(type(m), "fitted", lambda self: jitter)
    noisy = P.binned_residuals(m)
    np.testing.assert_array_equal(noisy["n"].to_numpy(), exact["n"].to_numpy())
    np.testing.assert_allclose(noisy["ybar"].to_numpy(), exact["ybar"].to_numpy(), atol=1e-12)
    # ties up to rounding are relative: distinct probabilities of 1e-15 stay distinct
    from sklearn_glmm.performance import _ties_merged

    tiny = np.array([3e-15, 1e-15, 2e-15, np.nextafter(1e-15, 1.0)])
    np.testing.assert_array_equal(_ties_merged(tiny), [3e-15, 1e-15, 2e-15, 1e-15])


def test_binned_residuals_need_binomial():
    with pytest.raises(ValueError, match="binomial"):
        P.binned_residuals(fit("pois_rs"))


# ---------------------------------------------------------------------------
# Anova (car)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [2, 3])
@pytest.mark.parametrize("name", cases_with("anova2"))
def test_anova_matches_car(name, kind):
    out = P.Anova(fit(name), type=kind)
    ref = REF[name][f"anova{kind}"]
    assert list(out.index) == list(ref["term"])
    np.testing.assert_array_equal(out["Df"], ref["df"])
    assert_rel(out["Chisq"], ref["chisq"])
    assert_p(out["Pr(>Chisq)"], ref["p_value"])


def test_anova_type3_with_sum_contrasts_matches_car():
    m = fit("bin_factor", "y ~ C(f, contr.sum) * x + (1 | id)")
    out = P.Anova(m, type="III")
    ref = REF["bin_factor"]["anova3_sum"]
    assert list(out.index) == ["(Intercept)", "C(f, contr.sum)", "x", "C(f, contr.sum):x"]
    assert_rel(out["Chisq"], ref["chisq"])
    assert_p(out["Pr(>Chisq)"], ref["p_value"])
    # sum-coded: no reference-level caveat, but the factor's test is at x = 0
    assert "origin of the covariates" in out.note
    # type II does not depend on the contrasts
    assert_rel(P.Anova(m, type=2)["Chisq"], REF["bin_factor"]["anova2"]["chisq"])


def test_anova_plain_estimator_with_terms_matches_formula_fit():
    design = parse_glmm_formula("y ~ f * x + (1 | id)", data("bin_factor"))
    m = BinomialGLMM().fit(design.X, design.y, groups=design.groups["id"])
    terms = {"f": ["fb", "fc"], "f:x": ["fb:x", "fc:x"]}
    for kind in (2, 3):
        out = P.Anova(m, type=kind, terms=terms)
        ref = REF["bin_factor"][f"anova{kind}"]
        assert list(out.index) == list(ref["term"])
        assert_rel(out["Chisq"], ref["chisq"])
    vif = P.check_collinearity(m, terms=terms)
    assert_rel(vif["VIF"], REF["bin_factor"]["vif"]["vif"])


def test_anova_plain_estimator_tests_each_column():
    df = data("pois_rs")
    m = PoissonGLMM(random_effects="1 + t").fit(df[["x", "t"]], df["y"], groups=df["id"])
    out = P.Anova(m)
    assert list(out.index) == ["x", "t"]
    assert_rel(out["Chisq"], REF["pois_rs"]["anova2"]["chisq"])
    z = m.fixed_effects_["z_value"]
    np.testing.assert_allclose(out["Chisq"], z.loc[["x", "t"]] ** 2, rtol=1e-10)


def test_anova_print_and_errors():
    out = P.Anova(fit("bin_factor"), type=3)
    text = repr(out)
    assert "Type III Wald chisquare tests" in text and "Response: y" in text
    assert "sum-to-zero contrasts" in text
    assert "Type II Wald" in repr(P.Anova(fit("bin_factor")))
    with pytest.raises(ValueError, match="type must be"):
        P.Anova(fit("bin_factor"), type=1)
    with pytest.raises(ValueError, match="not fixed-effect columns"):
        P.Anova(fit("bin_factor"), terms={"g": ["nope"]})


# ---------------------------------------------------------------------------
# results as pandas objects; check_model
# ---------------------------------------------------------------------------


def test_results_are_pandas_and_print_like_performance():
    res = P.icc(fit("bin_ri"))
    assert isinstance(res, pd.Series)
    assert "Intraclass Correlation Coefficient" in repr(res) and "Adjusted ICC" in repr(res)
    assert type(res * 2) is pd.Series  # derived objects are plain pandas
    r2 = P.r2(fit("bin_ri"))
    assert "R2 for Mixed Models" in repr(r2) and "<pre>" in r2._repr_html_()
    table = P.check_overdispersion(fit("pois_rs"))
    assert isinstance(table, pd.DataFrame) and type(table.copy()) is pd.DataFrame
    assert "No overdispersion detected." in repr(table)
    assert "Overdispersion test" in table._repr_html_()


@pytest.fixture
def agg():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_the_verdicts_say_how_the_checks_hold_their_level_in_mixed_models():
    # a Poisson mixed model's data, fitted by it: "No overdispersion detected." is the
    # verdict almost always (residuals at the modes) and "probable zero-inflation" often
    # (zeros at the modes' means); the verdicts say so, a fit without random effects not
    rng = np.random.default_rng(1011)
    g = np.repeat(np.arange(100), 5)
    X = pd.DataFrame({"x": rng.normal(size=len(g))})
    y = rng.poisson(np.exp(0.3 + rng.normal(0, 0.7, 100)[g]))
    mixed = PoissonGLMM().fit(X, y, groups=g)
    od = P.check_overdispersion(mixed)
    assert od["dispersion_ratio"].iloc[0] < 0.95 and od.detected is False
    assert "conservative" in repr(od) and "test_dispersion()" in repr(od)
    zi = P.check_zeroinflation(mixed)
    assert zi.detected and "also flags data without zero inflation" in repr(zi)
    glm = PoissonGLMM(random_effects=None).fit(X, y)
    assert "conservative" not in repr(P.check_overdispersion(glm))


def _titles(fig) -> list[str]:
    return [ax.get_title(loc="left").split("\n")[0] for ax in fig.axes if ax.get_visible()]


def test_check_model_binomial_panels(agg, tmp_path):
    fig = P.check_model(fit("bin_factor"), n_sim=10, random_state=0)
    titles = _titles(fig)
    assert titles[:2] == ["Posterior Predictive Check", "Binned Residuals"]
    assert any(t.startswith("Normality of Random Effects") for t in titles)
    assert titles[-1] == "Collinearity"
    fig.savefig(tmp_path / "bin.png")


def test_check_model_count_panels(agg, tmp_path):
    fig = P.check_model(fit("pois_rs"), n_sim=10, random_state=0)
    titles = _titles(fig)
    assert "Overdispersion" in titles and "Zero-Inflation (rootogram)" in titles
    # one QQ panel per random-effect term (intercept and slope)
    assert sum(t.startswith("Normality of Random Effects") for t in titles) == 2
    fig.savefig(tmp_path / "pois.png")


def test_check_model_selected_panels(agg):
    fig = P.check_model(fit("crossed_bin"), check=["reqq"])
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2  # factors a and b
    with pytest.raises(ValueError, match="do not apply"):
        P.check_model(fit("crossed_bin"), check="vif")  # a single term
    with pytest.raises(ValueError, match="unknown check"):
        P.check_model(fit("crossed_bin"), check="normality")


def test_example_script_runs(tmp_path):
    """examples/model_checks.py, as a user runs it; it draws the figure of the docs page."""
    pytest.importorskip("matplotlib")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, str(root / "examples" / "model_checks.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=root,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for text in ["No overdispersion detected.", "Type III Wald", "C(trt, contr.sum)"]:
        assert text in run.stdout
    assert (tmp_path / "model_checks_counts.png").exists()
    assert (tmp_path / "model_checks_binary.png").exists()


# ---------------------------------------------------------------------------
# verdicts where a check has nothing to judge; labels; shares that are no shares
# ---------------------------------------------------------------------------


def test_binned_residuals_without_a_bin_give_no_verdict():
    m = fit("bin_factor")
    n = len(data("bin_factor"))
    out = P.binned_residuals(m, n_bins=n)  # one row per bin: every bin dropped
    assert len(out) == 0 and out.detected is None
    assert out.note.startswith("No bin holds two or more rows")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_bins must be a positive integer"):
            P.binned_residuals(m, n_bins=bad)


def test_overdispersion_without_residual_df_gives_no_verdict(monkeypatch):
    from sklearn_glmm._diagnostics import OverdispersionResult

    m = fit("pois_rs")
    monkeypatch.setattr(
        type(m), "overdispersion", lambda self: OverdispersionResult(np.nan, 3.2, 0, np.nan)
    )
    out = P.check_overdispersion(m)
    assert out.detected is None
    assert out.note == (
        "Overdispersion cannot be tested: 0 residual degrees of freedom (rows minus parameters)."
    )


@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_check_model_labels_cells_with_the_models_link(agg, link):
    from sklearn_glmm._performance_plot import _fixed_predictor, _pp_binomial

    d = data("bin_factor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ f + (1 | id)", d, family=f"binomial(link = '{link}')")
    fig, ax = agg.subplots()
    _pp_binomial(ax, m, np.asarray(m.simulate(5, 0), dtype=float))
    shown = sorted(t.get_text() for t in ax.get_xticklabels())
    eta = np.unique(np.round(_fixed_predictor(m), 8))
    p = m.fit_result_.family.link.inverse(eta)
    assert shown == sorted(f"{x:.2f}" for x in p)
    assert shown != sorted(f"{x:.2f}" for x in 1 / (1 + np.exp(-eta)))  # not the logit's


def test_icc_by_group_above_one_warns():
    d = data("pois_rs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        far = glmer("y ~ x + t + (1 + t | id)", d.assign(t=d["t"] + 100), family="poisson")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = P.icc(far, by_group=True)
    assert out["ICC"].iloc[0] > 1
    assert any("above 1" in str(w.message) for w in caught)
    # the random variance itself does not depend on the slope variable's origin
    near = P.variance_components(fit("pois_rs"))
    assert quiet(P.variance_components, far).random == pytest.approx(near.random, rel=1e-3)


def test_icc_of_observation_level_effects_only_is_nan():
    rng = np.random.default_rng(5)
    d = pd.DataFrame({"x": rng.normal(size=200), "obs": np.arange(200)})
    d["y"] = rng.poisson(np.exp(1.5 + 0.3 * d["x"] + rng.normal(0, 0.5, 200)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ x + (1 | obs)", d, family="poisson")
    with pytest.warns(UserWarning, match="all observation-level"):
        out = P.icc(m)
    assert np.isnan(out).all()
    with pytest.warns(UserWarning, match="all observation-level"):
        assert np.isnan(P.icc(m, by_group=True)["ICC"]).all()


def _split_design():
    from sklearn_glmm.formula import FormulaTransformer

    d = data("bin_factor")
    X = FormulaTransformer("f * x").fit_transform(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM().fit(X, d["y"], groups=d["id"])
    return d, X, m


def test_anova_reads_containment_from_the_columns_names():
    # terms named without "a:b": the interaction's columns fb:x, fc:x still contain the
    # factor's fb, fc and x (a type II test of f was a type III one: 11.6 for 4.5)
    _, X, m = _split_design()
    inter = [c for c in X.columns if ":" in c]
    dummies = [c for c in X.columns if c not in inter and c != "x"]
    named = P.Anova(m, terms={"f": dummies, "f:x": inter})
    other = P.Anova(m, terms={"grp": dummies, "grp_by_x": inter})
    np.testing.assert_allclose(other["Chisq"].to_numpy(), named["Chisq"].to_numpy())
    ref = P.Anova(fit("bin_factor"))  # the formula's own terms
    np.testing.assert_allclose(named["Chisq"].to_numpy(), ref["Chisq"].to_numpy(), rtol=1e-6)
    # an interaction split over terms cannot be set aside: said
    with pytest.warns(UserWarning, match="are not one term that contains it"):
        P.Anova(m, terms={"f": dummies})


def test_anova_without_a_finite_covariance_gives_nan_rows():
    d = data("bin_factor")
    y = d["y"].where(d["f"] != "c", 1)  # level c separates: every standard error NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ f * x + (1 | id)", d.assign(y=y), family="binomial")
    assert m.fixed_effects_["std_error"].isna().any()
    for kind in (2, 3):
        with pytest.warns(UserWarning, match="cannot be tested"):
            out = P.Anova(m, type=kind)
        nan = out["Chisq"].isna()
        assert nan.any() and out["Pr(>Chisq)"][nan].isna().all()
        assert (out["Df"][nan] > 0).all()


def test_anova_labels_and_the_conditional_model():
    from sklearn_glmm.formula import glmmTMB

    d = data("bin_factor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ x + I(x^2) + f + (1 | id)", d, family="binomial")
    assert "I(x^2)" in P.Anova(m).index  # as the coefficient is named (and R names it)
    rng = np.random.default_rng(0)
    counts = d.assign(c=rng.poisson(2, len(d)) * rng.binomial(1, 0.7, len(d)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zi = glmmTMB("c ~ x + f + (1 | id)", counts, family="poisson", ziformula="~x")
    out = P.Anova(zi)
    assert out.title.endswith("of the conditional model") and "zero-inflation" in out.note


def test_type3_note_for_interactions_with_covariates():
    d = data("bin_factor")
    rng = np.random.default_rng(2)
    d = d.assign(z=rng.normal(size=len(d)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xz = glmer("y ~ x * z + f + (1 | id)", d, family="binomial")
        nested = glmer("y ~ f + x:f + (1 | id)", d, family="binomial")
        plain = glmer("y ~ x + z + f + (1 | id)", d, family="binomial")
    # x's type III test in x * z is its effect at z = 0: the note says so
    assert "origin of the covariates" in P.Anova(xz, type=3).note
    assert "origin of the covariates" in P.Anova(nested, type=3).note
    assert P.Anova(plain, type=3).note == ""


def test_anova_of_a_raw_polynomial_far_from_zero_is_quiet_and_invariant():
    # the Wald matrix of x and x^2 with x near 1e4 (coefficients of very different units)
    # raised scipy's LinAlgWarning; the statistic does not depend on x's origin
    import scipy.linalg

    rng = np.random.default_rng(12)
    g = np.repeat(np.arange(30), 20)
    xc = rng.normal(size=len(g))
    y = rng.poisson(np.exp(0.3 + 0.5 * xc + 0.2 * xc**2 + rng.normal(0, 0.5, 30)[g]))
    stats = []
    for shift in (0.0, 1e4):
        X = pd.DataFrame({"x": xc + shift, "x2": (xc + shift) ** 2})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = PoissonGLMM().fit(X, y, groups=g)
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
            table = P.Anova(m, terms={"poly": ["x", "x2"]})
        stats.append(float(table.loc["poly", "Chisq"]))
    assert stats[1] == pytest.approx(stats[0], rel=1e-5)


def _with_padding(family, n_pad=60, seed=5):
    """Data, and the same data with ``n_pad`` rows that carry no likelihood (weight 0,
    or 0 binomial trials) at extreme predictors in their own groups."""
    rng = np.random.default_rng(seed)
    G, n = 40, 10
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    eta = -0.2 + 0.7 * x + rng.normal(0, 0.7, G)[g]
    t = rng.integers(1, 6, G * n).astype(float)
    y = (
        rng.binomial(t.astype(int), 1 / (1 + np.exp(-eta)))
        if family == "binomial"
        else (rng.poisson(np.exp(eta)))
    )
    pad_x = np.full(n_pad, 5.0)
    X, Xp = pd.DataFrame({"x": x}), pd.DataFrame({"x": np.r_[x, pad_x]})
    gp = np.r_[g, G + np.arange(n_pad) % 7]
    yp = np.r_[y, np.zeros(n_pad)]
    return X, y, g, t, Xp, yp, gp


@pytest.mark.parametrize("how", ["weight", "trials"])
def test_rows_without_likelihood_leave_r2_icc_and_residual_checks_as_they_are(how):
    # rows of weight 0 (and binomial rows of 0 trials, which now count as such) are not
    # the model's observations: R2 and ICC read var(X beta) and z'Sigma z over every
    # training row (0.56 for 0.15 on a Poisson fit), binned and scaled residuals kept
    # them, and rows of 0 trials were counted in nobs, df and BIC and made the
    # overdispersion check NaN
    family = "binomial" if how == "trials" else "poisson"
    X, y, g, t, Xp, yp, gp = _with_padding(family)
    cls = BinomialGLMM if family == "binomial" else PoissonGLMM
    pad = len(yp) - len(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "trials":
            plain = cls().fit(X, y, groups=g, trials=t)
            padded = cls().fit(Xp, yp, groups=gp, trials=np.r_[t, np.zeros(pad)])
        else:
            plain = cls().fit(X, y, groups=g)
            padded = cls().fit(
                Xp, yp, groups=gp, sample_weight=np.r_[np.ones(len(y)), np.zeros(pad)]
            )
    assert padded.loglik_ == pytest.approx(plain.loglik_, abs=1e-8)
    assert (padded.nobs_, padded.df_resid_) == (plain.nobs_, plain.df_resid_)
    assert padded.bic_ == pytest.approx(plain.bic_, abs=1e-6)
    for name in ("r2", "icc"):
        a, b = dict(getattr(P, name)(plain).items()), dict(getattr(P, name)(padded).items())
        assert a.keys() == b.keys()
        for key in a:  # (the two fits agree to the optimiser's tolerance, ~1e-6)
            assert b[key] == pytest.approx(a[key], rel=1e-4), (name, key)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        od_a, od_b = plain.overdispersion(), padded.overdispersion()
    assert od_b.ratio == pytest.approx(od_a.ratio, rel=1e-4)
    sr = padded.scaled_residuals(n_sim=50, random_state=0)
    assert len(sr.residuals) == len(y)
    if family == "binomial":
        pd.testing.assert_frame_equal(
            pd.DataFrame(P.binned_residuals(padded)),
            pd.DataFrame(P.binned_residuals(plain)),
            rtol=1e-4,
            atol=1e-5,
        )


def test_pos_label_with_trials_raises():
    # with trials y counts successes; pos_label=0 was ignored without a word
    X, y, g, t, *_ = _with_padding("binomial")
    with pytest.raises(ValueError, match="does not apply with trials"):
        BinomialGLMM(pos_label=0).fit(X, y, groups=g, trials=t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = BinomialGLMM(pos_label=1).fit(X, y, groups=g, trials=t)
        none = BinomialGLMM().fit(X, y, groups=g, trials=t)
    np.testing.assert_array_equal(one.coef_, none.coef_)
