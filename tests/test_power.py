"""Power by simulation: sklearn_glmm.power.

Checks: the rejection rate at effect 0 is the test's level; the simulated power of
a GLM (no random effects) matches its closed form; power grows with the sample
size; results are reproducible and do not depend on n_jobs; failed refits are
counted and named; the specification's simulator draws the distribution it says.
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm.datasets import make_longitudinal
from sklearn_glmm.power import (
    GLMMSpec,
    longitudinal_design,
    power_curve,
    power_interval,
    resample_design,
)

OR = np.log(0.6)


@pytest.fixture(scope="module")
def spec():
    return GLMMSpec(
        BinomialGLMM(random_effects="1"),
        {"(Intercept)": -0.5, "time": -0.2, "treatment": OR},
        random_cov=1.0,
    )


# ---------------------------------------------------------------------------
# the statistics
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["wald", pytest.param("lrt", marks=pytest.mark.slow)])
def test_type_one_error_is_alpha(spec, method):
    pc = power_curve(
        spec,
        "treatment",
        n_groups=60,
        n_per_group=4,
        effect=0.0,
        method=method,
        n_sim=250,
        level=0.99,
        random_state=1,
    )
    row = pc.iloc[0]
    assert row["n_tested"] == 250 and row["n_failed"] == 0
    assert row["lower"] <= 0.05 <= row["upper"], row
    assert pc.attrs["effect"] == 0.0 and pc.attrs["method"] == method
    assert abs(row["mean_estimate"]) < 3 * row["mean_std_error"] / np.sqrt(250)


def _glm_wald_power(family, b0, b1, n_per_arm, alpha=0.05):
    """Closed-form power of the Wald test of a two-arm log odds / rate ratio (a GLM).

    ``Var(b1) = 1 / (n p0 q0) + 1 / (n p1 q1)`` (logistic) or
    ``1 / (n mu0) + 1 / (n mu1)`` (Poisson): the inverse Fisher information. A large-sample
    answer: the designs below have tens of events per arm at least.
    """
    if family == "binomial":
        p0, p1 = special.expit(b0), special.expit(b0 + b1)
        info0, info1 = p0 * (1 - p0), p1 * (1 - p1)
    else:
        info0, info1 = np.exp(b0), np.exp(b0 + b1)
    se = np.sqrt(1 / (n_per_arm * info0) + 1 / (n_per_arm * info1))
    z = stats.norm.ppf(1 - alpha / 2)
    return stats.norm.cdf(abs(b1) / se - z) + stats.norm.cdf(-abs(b1) / se - z)


@pytest.mark.parametrize(
    ("family", "est", "b0", "b1", "n_groups"),
    [
        ("binomial", BinomialGLMM(), -0.5, OR, [100, 300]),
        ("poisson", PoissonGLMM(), 0.0, np.log(0.8), [100, 250]),
    ],
)
def test_glm_power_matches_closed_form(family, est, b0, b1, n_groups):
    glm = GLMMSpec(est, {"(Intercept)": b0, "treatment": b1})  # no random effects: a GLM
    pc = power_curve(
        glm, "treatment", n_groups=n_groups, n_per_group=2, n_sim=300, level=0.99,
        random_state=2,
    )  # fmt: skip
    for _, row in pc.iterrows():
        rows_per_arm = row["n_groups"] * row["n_per_group"] / 2
        expected = _glm_wald_power(family, b0, b1, rows_per_arm)
        assert row["lower"] <= expected <= row["upper"], (row, expected)
    assert 0.2 < pc["power"].iloc[0] < pc["power"].iloc[1] < 0.95  # a discriminating range


@pytest.mark.filterwarnings("ignore:.*simulated studies gave no test")  # separation at n = 40
def test_power_increases_with_sample_size(spec):
    pc = power_curve(
        spec,
        "treatment",
        n_groups=[20, 160],
        n_per_group=[2, 6],
        effect=np.log(0.4),
        n_sim=60,
        random_state=3,
    )
    p = pc.set_index(["n_groups", "n_per_group"])["power"]
    assert p[(160, 6)] > p[(20, 6)] and p[(160, 2)] > p[(20, 2)]
    assert p[(160, 6)] > p[(160, 2)]
    small, large = pc.iloc[0], pc.iloc[-1]
    assert small["upper"] < large["lower"]
    assert list(pc["n_obs"]) == [40.0, 320.0, 120.0, 960.0]


def test_reproducible_and_seeded(spec):
    kw = dict(n_groups=[30], n_per_group=3, n_sim=15)
    a = power_curve(spec, "treatment", random_state=7, **kw)
    b = power_curve(spec, "treatment", random_state=7, **kw)
    c = power_curve(spec, "treatment", random_state=8, **kw)
    cols = ["power", "mean_estimate", "mean_std_error"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a["mean_estimate"].iloc[0] != c["mean_estimate"].iloc[0]
    assert a.attrs["refits_per_second"] > 0


@pytest.mark.slow
def test_n_jobs_gives_the_same_results(spec):
    kw = dict(n_groups=[30, 40], n_per_group=3, n_sim=20, random_state=5)
    a = power_curve(spec, "treatment", **kw)
    b = power_curve(spec, "treatment", n_jobs=2, **kw)
    cols = ["power", "n_rejected", "mean_estimate", "mean_std_error"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_failed_refits_are_counted_and_named(spec):
    def untreated(n_groups, n_per_group, rng):  # treatment never varies: no test possible
        X, ids = longitudinal_design(n_groups, n_per_group, rng)
        return X.assign(treatment=0.0), ids

    with pytest.warns(UserWarning, match="5 of 5 simulated studies gave no test"):
        pc = power_curve(
            spec, "treatment", n_groups=20, n_per_group=3, n_sim=5, design=untreated, random_state=0
        )
    row = pc.iloc[0]
    assert row["n_failed"] == 5 and row["n_tested"] == 0 and np.isnan(row["power"])
    assert np.isnan(row["lower"]) and "aliased" in pc.attrs["failures"][0]


def test_progress_line(spec, capsys):
    power_curve(
        spec, "treatment", n_groups=20, n_per_group=3, n_sim=3, progress=True, random_state=0
    )
    err = capsys.readouterr().err
    assert "3/3" in err or "100%" in err


# ---------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "scipy_name"), [("clopper-pearson", "exact"), ("wilson", "wilson")]
)
@pytest.mark.parametrize("k", [0, 3, 40, 50])
def test_power_interval_matches_scipy(method, scipy_name, k):
    lo, hi = power_interval(k, 50, 0.9, method)
    ci = stats.binomtest(k, 50).proportion_ci(0.9, method=scipy_name)
    assert lo == pytest.approx(ci.low, abs=1e-10) and hi == pytest.approx(ci.high, abs=1e-10)


# ---------------------------------------------------------------------------
# specifications and designs
# ---------------------------------------------------------------------------
def test_from_fitted_model_and_resampled_design():
    df, _ = make_longitudinal("negbin", n_groups=60, nb_theta=2.0, random_state=4)
    m = NegBinGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    s = GLMMSpec.from_fitted(m)
    assert s.fixed_effects == pytest.approx(m.fixed_effects_["estimate"].to_dict())
    assert s.family_params["nb_theta"] == pytest.approx(m.theta_)
    np.testing.assert_allclose(s.covariance, m.random_effects_cov_["id"].to_numpy())
    design = resample_design(df[["time", "treatment"]], df["id"])
    X, ids = design(10, 3, np.random.default_rng(0))
    assert len(X) == 30 and np.array_equal(np.bincount(ids), [3] * 10)
    pc = power_curve(
        m, "treatment", n_groups=[30], n_per_group=[None, 3], design=design, n_sim=4, random_state=0
    )
    assert list(pc["n_obs"]) == [150.0, 90.0] and (pc["n_failed"] == 0).all()
    with pytest.raises(ValueError, match="smallest group"):
        design(5, 6, np.random.default_rng(0))


@pytest.mark.parametrize("labels", ["zero_one", "text"])
def test_a_pilot_modelling_the_other_class_is_refitted_as_simulated(labels):
    # the simulated outcome is 1 for the pilot's modelled class: the refits model 1, so
    # the estimates keep the pilot's sign (they had the opposite one with pos_label=0,
    # and text labels failed every study)
    df, _ = make_longitudinal("binomial", n_groups=120, n_waves=4, random_state=0)
    y, pos = df["y"], 0
    if labels == "text":
        y, pos = df["y"].map({0: "yes", 1: "no"}), "yes"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pilot = BinomialGLMM(pos_label=pos).fit(df[["time", "treatment"]], y, groups=df["id"])
    b = pilot.fixed_effects_.loc["treatment", "estimate"]
    assert b > 0.2  # the pilot models y == 0: the treatment raises it
    pc = power_curve(pilot, "treatment", n_groups=120, n_per_group=4, n_sim=24, random_state=1)
    assert pc["n_failed"].iloc[0] == 0
    assert pc["mean_estimate"].iloc[0] == pytest.approx(b, abs=0.25)


def test_simulated_data_follow_the_specification():
    from sklearn_glmm._power_sim import simulate_data

    rng = np.random.default_rng(0)
    # negative binomial, no random effects: mean and NB2 variance
    nb = GLMMSpec(NegBinGLMM(), {"(Intercept)": np.log(4.0)}, family_params={"nb_theta": 2.0})
    X = pd.DataFrame(index=range(40000))
    y = simulate_data(nb, X, None, rng)
    assert y.mean() == pytest.approx(4.0, rel=0.02)
    assert y.var() == pytest.approx(4.0 + 16.0 / 2.0, rel=0.05)
    # correlated random intercept and slope: recovered by a fit
    S = np.array([[0.64, 0.12], [0.12, 0.09]])
    rs = GLMMSpec(
        PoissonGLMM(random_effects="1 + time"), {"(Intercept)": 1.0, "time": 0.1}, random_cov=S
    )
    X, ids = longitudinal_design(400, 6, rng)
    y = simulate_data(rs, X, ids, rng)
    m = PoissonGLMM(random_effects="1 + time").fit(X[["time"]], y, groups=ids)
    (fitted_cov,) = m.random_effects_cov_.values()
    np.testing.assert_allclose(fitted_cov.to_numpy(), S, atol=0.06)
    assert m.coef_[0] == pytest.approx(0.1, abs=0.04)


def test_specification_errors(spec):
    with pytest.raises(ValueError, match="not among the model's fixed effects"):
        power_curve(spec, "age")
    with pytest.raises(ValueError, match="cannot test the intercept"):
        power_curve(spec, "(Intercept)", method="lrt")
    with pytest.raises(ValueError, match="method"):
        power_curve(spec, "treatment", method="score")
    with pytest.raises(ValueError, match="n_groups"):
        power_curve(spec, "treatment", n_groups=[0])
    with pytest.raises(ValueError, match="n_sim"):
        power_curve(spec, "treatment", n_sim=0)
    with pytest.raises(ValueError, match="interval"):
        power_curve(spec, "treatment", interval="exact")
    with pytest.raises(ValueError, match="the model also needs"):
        power_curve(GLMMSpec(BinomialGLMM(), {"age": 1.0}), "age")
    with pytest.raises(ValueError, match="random slope"):
        slope = GLMMSpec(
            BinomialGLMM(random_effects="1 + time"),
            {"time": 0.1},
            random_cov={"(Intercept)": 1.0, "time": 0.2},
        )
        power_curve(slope, "time", method="lrt")
    with pytest.raises(ValueError, match="family_params"):
        GLMMSpec(NegBinGLMM(), {"(Intercept)": 0.0})
    with pytest.raises(ValueError, match="outside its range"):
        GLMMSpec(NegBinGLMM(), {"(Intercept)": 0.0}, family_params={"nb_theta": -1.0})
    with pytest.raises(ValueError, match="SD of one random effect"):
        GLMMSpec(BinomialGLMM(random_effects="1 + time"), {"time": 0.1}, random_cov=1.0)
    with pytest.raises(ValueError, match="positive semi-definite"):
        GLMMSpec(
            BinomialGLMM(random_effects="1 + time"),
            {"time": 0.1},
            random_cov=[[1.0, 2.0], [2.0, 1.0]],
        )
    with pytest.raises(ValueError, match="trials"):
        GLMMSpec(PoissonGLMM(), {"(Intercept)": 0.0}, trials=3)
    df, _ = make_longitudinal("binomial", n_groups=30, random_state=0)
    fitted = BinomialGLMM().fit(df[["time"]], df["y"], groups=df["id"])
    with pytest.raises(TypeError, match="unfitted"):
        GLMMSpec(fitted, {"time": 0.1})
    with pytest.raises(TypeError, match="GLMMSpec"):
        power_curve("model", "treatment")


def test_parameters_and_options_are_checked_by_name(spec):
    """Negative or missing SDs, text where a number belongs and True as a count are
    refused naming the argument (a negative SD was squared, True ran one study, a
    string grid was read character by character)."""
    ri = BinomialGLMM(random_effects="1")
    for bad in (-1.0, np.nan, {"(Intercept)": -2.0}):
        with pytest.raises(ValueError, match="random_cov.*standard deviation.*>= 0"):
            GLMMSpec(ri, {"(Intercept)": 0.0}, random_cov=bad)
    with pytest.raises(ValueError, match="random_cov must be a symmetric matrix"):
        GLMMSpec(
            BinomialGLMM(random_effects="1 + time"),
            {"time": 0.1},
            random_cov=[[1.0, 0.5], [0.2, 1.0]],
        )
    for bad in ("abc", True):
        with pytest.raises(TypeError, match=r"fixed_effects\['\(Intercept\)'\] must be a num"):
            GLMMSpec(ri, {"(Intercept)": bad}, random_cov=1.0)
    with pytest.raises(TypeError, match="random_cov must be a standard deviation"):
        GLMMSpec(ri, {"(Intercept)": 0.0}, random_cov=True)
    with pytest.raises(TypeError, match=r"family_params\['nb_theta'\] must be a number"):
        GLMMSpec(NegBinGLMM(), {"(Intercept)": 0.0}, family_params={"nb_theta": "two"})
    with pytest.raises(ValueError, match="n_sim"):
        power_curve(spec, "treatment", n_sim=True)
    with pytest.raises(ValueError, match="alpha must be a number"):
        power_curve(spec, "treatment", alpha="0.05", n_sim=1)
    with pytest.raises(ValueError, match="n_groups must hold positive integers, got '10'"):
        power_curve(spec, "treatment", n_groups="10", n_sim=1)
    with pytest.raises(ValueError, match="test must name a fixed effect"):
        power_curve(spec, 3, n_sim=1)


def test_resample_design_refuses_missing_group_labels():
    X = pd.DataFrame({"time": [1.0, 2, 3, 4], "treatment": [0.0, 1, 0, 1]})
    with pytest.raises(ValueError, match="groups has 1 missing label"):
        resample_design(X, [1, np.nan, 2, 2])


def test_design_missing_columns(spec):
    def bad(n_groups, n_per_group, rng):
        X, ids = longitudinal_design(n_groups, n_per_group, rng)
        return X.drop(columns=["time"]), ids

    with pytest.raises(ValueError, match=r"no column\(s\) \['time'\]"):
        power_curve(spec, "treatment", design=bad, n_sim=1)


def test_a_design_returning_one_data_frame_is_told_what_to_return(spec):
    def one_frame(n_groups, n_per_group, rng):
        X, ids = longitudinal_design(n_groups, n_per_group, rng)
        return X.assign(id=ids)

    with pytest.raises(TypeError, match=r"must return a pair \(X, groups\).*DataFrame"):
        power_curve(spec, "treatment", design=one_frame, n_sim=1)

    def short_groups(n_groups, n_per_group, rng):
        X, ids = longitudinal_design(n_groups, n_per_group, rng)
        return X, ids[:-1]

    with pytest.raises(ValueError, match="one group label per row"):
        power_curve(spec, "treatment", design=short_groups, n_sim=1)

    def array_X(n_groups, n_per_group, rng):
        X, ids = longitudinal_design(n_groups, n_per_group, rng)
        return X.to_numpy(), ids

    with pytest.raises(TypeError, match="a pair whose X is a ndarray, not a DataFrame"):
        power_curve(spec, "treatment", design=array_X, n_sim=1)


def test_binomial_trials(spec):
    s = GLMMSpec(
        BinomialGLMM(random_effects="1"),
        {"(Intercept)": 0.0, "treatment": 0.5},
        random_cov=0.5,
        trials=10,
    )
    pc = power_curve(s, "treatment", n_groups=40, n_per_group=3, n_sim=20, random_state=0)
    assert pc["n_failed"].iloc[0] == 0
    assert pc["mean_estimate"].iloc[0] == pytest.approx(0.5, abs=0.15)


def test_plot_power_curve(spec, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn_glmm.plotting import plot_power_curve

    pc = power_curve(
        spec, "treatment", n_groups=[20, 40], n_per_group=[2, 4], n_sim=4, random_state=0
    )
    ax = plot_power_curve(pc, target=0.9)
    assert len(ax.lines) == 3 and ax.get_ylim() == (0.0, 1.0)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), pc["power"].iloc[:2])
    assert "treatment" in ax.get_title()
    ax.figure.savefig(tmp_path / "p.png")
    ax2 = plot_power_curve(pc, x="n_per_group", target=None)
    assert len(ax2.lines) == 2 and ax2.get_xlabel() == "Observations per group"
    with pytest.raises(ValueError, match="x must be"):
        plot_power_curve(pc, x="n_obs")
    with pytest.raises(ValueError, match="result of power_curve"):
        plot_power_curve(pc.drop(columns="lower"))
    plt.close("all")


def _three_arms(n_groups, n_per_group, rng):
    """Three arms (dummy columns arm_b, arm_c), equal sizes, and waves."""
    X, ids = longitudinal_design(n_groups, n_per_group, rng)
    arm = ids % 3
    return X.assign(arm_b=(arm == 1).astype(float), arm_c=(arm == 2).astype(float)), ids


@pytest.mark.parametrize("method", ["wald", pytest.param("lrt", marks=pytest.mark.slow)])
def test_joint_test_of_several_coefficients(method):
    spec3 = GLMMSpec(
        PoissonGLMM(random_effects="1"),
        {"(Intercept)": 0.5, "time": 0.1, "arm_b": 0.0, "arm_c": 0.0},
        random_cov=0.5,
    )
    arms = ["arm_b", "arm_c"]
    null = power_curve(
        spec3,
        arms,
        n_groups=60,
        n_per_group=4,
        design=_three_arms,
        method=method,
        n_sim=150,
        level=0.99,
        random_state=4,
    )
    assert null["lower"].iloc[0] <= 0.05 <= null["upper"].iloc[0]
    assert null.attrs["effect"] is None and null.attrs["effects"] == {"arm_b": 0.0, "arm_c": 0.0}
    assert np.isnan(null["mean_estimate"].iloc[0])
    alt = power_curve(
        spec3,
        arms,
        effect={"arm_b": 0.4, "arm_c": -0.3},
        n_groups=60,
        n_per_group=4,
        design=_three_arms,
        method=method,
        n_sim=40,
        random_state=4,
    )
    assert alt["lower"].iloc[0] > null["upper"].iloc[0]
    with pytest.raises(ValueError, match="a dict"):
        power_curve(spec3, arms, effect=0.3, design=_three_arms)
    with pytest.raises(ValueError, match="expected keys"):
        power_curve(spec3, arms, effect={"arm_b": 0.3}, design=_three_arms)
    with pytest.raises(ValueError, match="distinct"):
        power_curve(spec3, ["arm_b", "arm_b"], design=_three_arms)


def test_sample_size_reads_the_table():
    from sklearn_glmm.power import sample_size

    t = pd.DataFrame(
        {
            "n_groups": [100, 200, 300, 400] * 2,
            "n_per_group": [3] * 4 + [5] * 4,
            "power": [0.3, 0.85, 0.7, 0.9, 0.4, 0.82, 0.86, 0.95],
            "lower": [0.25, 0.81, 0.65, 0.87, 0.35, 0.78, 0.82, 0.93],
            "upper": [0.35, 0.9, 0.75, 0.93, 0.45, 0.86, 0.9, 0.97],
        }
    )
    # 200 x 3 reaches 0.8 but 300 x 3 does not: 400 is the answer for 3 per group
    assert sample_size(t)["n_groups"].tolist() == [400, 300]
    assert sample_size(t, conservative=False)["n_groups"].tolist() == [400, 200]
    assert sample_size(t, 0.99)["n_groups"].isna().all()
    with pytest.raises(ValueError, match="target"):
        sample_size(t, 80)
    with pytest.raises(ValueError, match="power_curve"):
        sample_size(t.drop(columns="upper"))


def test_fitted_group_columns_model_is_refitted_with_explicit_groups():
    df, _ = make_longitudinal("binomial", n_groups=60, random_state=6)
    m = BinomialGLMM(group_columns="id").fit(df[["id", "time", "treatment"]], df["y"])
    s = GLMMSpec.from_fitted(m)
    assert s.refit_estimator().group_columns is None
    assert s.features == ["time", "treatment"]
    pc = power_curve(m, "treatment", n_groups=[40], n_per_group=3, n_sim=5, random_state=0)
    assert pc["n_tested"].iloc[0] == 5
    assert pc.attrs["effect"] == pytest.approx(m.fixed_effects_.loc["treatment", "estimate"])


def test_zero_inflation_with_predictors_is_refused():
    df, _ = make_longitudinal("poisson", n_groups=60, zero_inflation=0.2, random_state=1)
    m = PoissonGLMM(zero_inflation="1 + time").fit(
        df[["time", "treatment"]], df["y"], groups=df["id"]
    )
    with pytest.raises(ValueError, match="zero_inflation=True"):
        GLMMSpec.from_fitted(m)
    with pytest.raises(ValueError, match="zero_inflation=True"):
        GLMMSpec(
            PoissonGLMM(zero_inflation="1 + time"),
            {"(Intercept)": 1.0, "time": 0.1},
            family_params={"zi_prob": 0.2},
        )
    # a constant zero inflation is simulated and refitted
    s = GLMMSpec(
        PoissonGLMM(zero_inflation=True, random_effects="1"),
        {"(Intercept)": 1.0, "treatment": -0.4},
        random_cov=0.5,
        family_params={"zi_prob": 0.2},
    )
    pc = power_curve(s, "treatment", n_groups=40, n_per_group=4, n_sim=4, random_state=0)
    assert pc["n_failed"].iloc[0] == 0


def test_offsets_and_trials_of_a_fitted_model_must_be_given():
    from sklearn_glmm._power_sim import simulate_data

    df, _ = make_longitudinal("poisson", n_groups=80, random_state=3)
    rng = np.random.default_rng(3)
    df["log_exposure"] = np.log(rng.uniform(0.5, 3.0, len(df)))
    X = df[["time", "treatment"]]
    m = PoissonGLMM().fit(X, df["y"], groups=df["id"], offset=df["log_exposure"])
    with pytest.raises(ValueError, match="offset='<column>'"):
        GLMMSpec.from_fitted(m)
    s = GLMMSpec.from_fitted(m, offset="log_exposure")

    def exposed(n_groups, n_per_group, rng):
        X, ids = longitudinal_design(n_groups, n_per_group, rng)
        return X.assign(log_exposure=np.log(rng.uniform(0.5, 3.0, len(X)))), ids

    # the simulated counts scale with the exposure
    Xd, ids = exposed(3000, 2, np.random.default_rng(0))
    y = simulate_data(s.with_effect("time", 0.0).with_effect("treatment", 0.0), Xd, ids, rng)
    hi = Xd["log_exposure"].to_numpy() > np.log(2.0)
    assert y[hi].mean() > 2 * y[Xd["log_exposure"].to_numpy() < np.log(1.0)].mean()
    pc = power_curve(s, "treatment", design=exposed, n_groups=[60], n_per_group=5, n_sim=20,
                     random_state=0)  # fmt: skip
    est = pc["mean_estimate"].iloc[0]
    assert abs(est - s.fixed_effects["treatment"]) < 3 * pc["mean_std_error"].iloc[0] / np.sqrt(20)
    with pytest.raises(ValueError, match=r"no column\(s\) \['log_exposure'\]"):
        power_curve(s, "treatment", n_groups=[20], n_sim=1)

    bdf, _ = make_longitudinal("binomial", n_groups=60, trials=5, random_state=0)
    b = BinomialGLMM().fit(bdf[["time", "treatment"]], bdf["y"], groups=bdf["id"],
                           trials=bdf["trials"])  # fmt: skip
    with pytest.raises(ValueError, match="trials=<number"):
        GLMMSpec.from_fitted(b)
    assert GLMMSpec.from_fitted(b, trials=5).trials == 5


def test_failed_studies_warn_with_their_own_class():
    from sklearn_glmm.exceptions import PowerSimulationWarning

    assert issubclass(PowerSimulationWarning, UserWarning)


def test_covariance_structures_are_refused_by_name():
    df = pd.read_csv(Path(__file__).parent / "fixtures" / "covstruct" / "covstruct.csv")
    m = PoissonGLMM(random_effects="ar1(day)").fit(df[["day", "x"]], df["count"], groups=df["id"])
    with pytest.raises(NotImplementedError, match="covariance structure over time"):
        power_curve(m, "x", n_groups=[40], n_sim=2, random_state=0)
    with pytest.raises(NotImplementedError, match="covariance structure over time"):
        GLMMSpec(PoissonGLMM("ou(day)"), {"(Intercept)": 0.0, "day": 0.1}, random_cov=0.5)


def test_wald_reads_the_numbers_of_the_fitted_tables():
    # each simulated study's test reads the fit's arrays, not its tables: the same numbers
    from sklearn_glmm._power_sim import _wald

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    X["a2"] = 2.0 * X["a"]  # aliased: NaN in the tables
    g = np.repeat(np.arange(30), 10)
    y = rng.poisson(np.exp(0.3 + 0.2 * X["a"] + rng.normal(size=30)[g]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM().fit(X, y, groups=g)
    fe = m.fixed_effects_
    for t in ["(Intercept)", "a", "b", "a2"]:
        got = _wald(m, [t])
        want = fe.loc[t, ["estimate", "std_error", "p_value"]].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(
            np.array(got)[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-14
        )
    b = fe.loc[["a", "b"], "estimate"].to_numpy()
    V = m.fit_result_.vcov_fixed.loc[["a", "b"], ["a", "b"]].to_numpy()
    p = stats.chi2.sf(b @ np.linalg.solve(V, b), 2)
    assert _wald(m, ["a", "b"])[2] == pytest.approx(p, rel=1e-12)
    assert np.isnan(_wald(m, ["a", "a2"])[2])
