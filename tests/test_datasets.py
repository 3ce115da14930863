"""Tests for sklearn_glmm.datasets: shapes, determinism and simulated moments."""

from importlib import resources

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from sklearn_glmm.datasets import load_app_logins, make_longitudinal, make_vegetables

# ---------------------------------------------------------------------------
# make_longitudinal: structure
# ---------------------------------------------------------------------------


def test_default_binary_matches_tutorial_000():
    df, truth = make_longitudinal(random_state=0)
    assert df.shape == (1500, 4)
    assert list(df.columns) == ["id", "time", "treatment", "y"]
    assert set(df["y"].unique()) <= {0, 1}
    assert df["id"].nunique() == 300
    assert sorted(df["time"].unique()) == [0, 1, 2, 3, 4]
    # first half controls, as R's rep(c(0, 1), each = n / 2)
    person = df.groupby("id")["treatment"].first()
    assert (person.loc[:150] == 0).all() and (person.loc[151:] == 1).all()
    assert truth["fixed_effects"] == {"(Intercept)": -0.5, "time": -0.2, "treatment": -0.6}
    assert truth["re_sd"] == 1.0 and truth["nb_theta"] is None
    assert truth["family"] == "binomial"


@pytest.mark.parametrize("family", ["poisson", "negbin"])
def test_count_defaults(family):
    df, truth = make_longitudinal(family, n_groups=20, random_state=0)
    assert truth["fixed_effects"] == {"(Intercept)": 1.5, "time": 0.10, "treatment": -0.3}
    assert (df["y"] >= 0).all() and df["y"].dtype == np.int64
    assert truth["nb_theta"] == (2.0 if family == "negbin" else None)


def test_optional_columns_and_truth():
    df, truth = make_longitudinal(
        "poisson",
        n_groups=10,
        n_waves=4,
        sex=True,
        time_varying=True,
        treatment=False,
        slope_sd=0.2,
        random_state=1,
    )
    assert list(df.columns) == ["id", "time", "sex", "x_tv", "y"]
    assert (df.groupby("id")["sex"].nunique() == 1).all()  # person-level
    assert df.groupby("id")["x_tv"].nunique().min() > 1  # time-varying
    assert set(truth["fixed_effects"]) == {"(Intercept)", "time", "sex", "x_tv"}
    assert list(truth["random_effects"].columns) == ["(Intercept)", "time"]
    assert truth["random_effects"].shape == (10, 2)


def test_fixed_effects_override_and_interaction():
    df, truth = make_longitudinal(
        fixed_effects={"time": 0.0, "time:treatment": 0.5}, n_groups=4, random_state=0
    )
    assert truth["fixed_effects"]["time"] == 0.0
    assert truth["fixed_effects"]["time:treatment"] == 0.5
    assert truth["fixed_effects"]["(Intercept)"] == -0.5
    with pytest.raises(ValueError, match="not a column"):
        make_longitudinal(fixed_effects={"age": 1.0})


def test_binomial_trials():
    df, _ = make_longitudinal(trials=8, n_groups=10, random_state=0)
    assert list(df.columns) == ["id", "time", "treatment", "trials", "y"]
    assert (df["trials"] == 8).all() and df["y"].between(0, 8).all()
    df, _ = make_longitudinal(trials=(2, 5), n_groups=50, random_state=0)
    assert df["trials"].between(2, 5).all() and df["trials"].nunique() == 4
    assert (df["y"] <= df["trials"]).all()


def test_determinism():
    kwargs = dict(n_groups=30, slope_sd=0.3, missing_rate=0.1, dropout=0.2, unequal_spacing=True)
    a, ta = make_longitudinal("negbin", random_state=42, **kwargs)
    b, tb = make_longitudinal("negbin", random_state=42, **kwargs)
    c, _ = make_longitudinal("negbin", random_state=43, **kwargs)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ta["random_effects"], tb["random_effects"])
    assert not a.equals(c)
    gen, _ = make_longitudinal(random_state=np.random.default_rng(5), n_groups=5)
    assert gen.shape == (25, 4)
    legacy, _ = make_longitudinal(random_state=np.random.RandomState(5), n_groups=5)
    assert legacy.shape == (25, 4)


def test_unequal_spacing():
    df, _ = make_longitudinal(n_groups=50, unequal_spacing=True, random_state=0)
    wave = np.tile(np.arange(5), 50)
    assert (df["time"] >= 0).all()
    assert np.all(np.abs(df["time"] - wave) <= 0.3)
    assert not np.allclose(df["time"], wave)


def test_missing_and_dropout_reduce_rows():
    full, _ = make_longitudinal(n_groups=400, random_state=0)
    missing, _ = make_longitudinal(n_groups=400, missing_rate=0.2, random_state=0)
    assert len(missing) < len(full)
    assert abs(len(missing) / len(full) - 0.8) < 0.03
    dropped, _ = make_longitudinal(n_groups=400, dropout=0.5, random_state=0)
    assert len(dropped) < len(full)
    # dropouts keep a contiguous run of waves from baseline
    for _, person in dropped.groupby("id"):
        assert list(person["time"]) == list(range(len(person)))
    n_waves_seen = dropped.groupby("id").size()
    assert n_waves_seen.min() >= 1
    assert abs((n_waves_seen < 5).mean() - 0.5) < 0.08


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(family="gaussian"), "family"),
        (dict(zero_inflation=0.2), "count families"),
        (dict(family="poisson", nb_theta=2.0), "nb_theta"),
        (dict(family="negbin", nb_theta=-1.0), "nb_theta"),
        (dict(family="poisson", trials=5), "trials"),
        (dict(missing_rate=1.0), "missing_rate"),
        (dict(re_corr=1.5, slope_sd=0.1), "re_corr"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_longitudinal(n_groups=5, **kwargs)


# ---------------------------------------------------------------------------
# make_longitudinal: simulated moments match the truth
# ---------------------------------------------------------------------------


def test_binary_mean_matches_linear_predictor():
    df, truth = make_longitudinal(n_groups=20000, re_sd=0.0, random_state=0)
    beta = truth["fixed_effects"]
    cell = df.groupby(["time", "treatment"])["y"].mean()
    for (t, trt), observed in cell.items():
        expected = expit(beta["(Intercept)"] + beta["time"] * t + beta["treatment"] * trt)
        assert abs(observed - expected) < 0.015


def test_poisson_mean_includes_random_intercept_variance():
    # E[y] = exp(eta + re_sd^2 / 2) for a normal random intercept on the log scale
    df, truth = make_longitudinal("poisson", n_groups=20000, re_sd=0.5, random_state=1)
    observed = df.loc[(df["time"] == 0) & (df["treatment"] == 0), "y"].mean()
    expected = np.exp(truth["fixed_effects"]["(Intercept)"] + 0.5**2 / 2)
    assert abs(observed / expected - 1) < 0.03


def test_negbin_variance_exceeds_poisson():
    kwargs = dict(n_groups=20000, n_waves=1, re_sd=0.0, treatment=False, random_state=2)
    pois, _ = make_longitudinal("poisson", **kwargs)
    nb, truth = make_longitudinal("negbin", nb_theta=2.0, **kwargs)
    mu = np.exp(truth["fixed_effects"]["(Intercept)"])
    assert abs(pois["y"].var() / mu - 1) < 0.05
    assert abs(nb["y"].mean() / mu - 1) < 0.03
    assert abs(nb["y"].var() / (mu + mu**2 / 2.0) - 1) < 0.08
    assert nb["y"].var() > 2 * pois["y"].var()


def test_zero_fraction_grows_with_zero_inflation():
    kwargs = dict(n_groups=5000, n_waves=2, re_sd=0.0, treatment=False)
    fractions = [
        (make_longitudinal("poisson", zero_inflation=pi, random_state=3, **kwargs)[0]["y"] == 0)
        for pi in (0.0, 0.2, 0.5)
    ]
    zero = [f.mean() for f in fractions]
    assert zero[0] < zero[1] < zero[2]
    # P(0) = pi + (1 - pi) exp(-mu) at time 0
    mu = np.exp(1.5)
    df, truth = make_longitudinal("poisson", zero_inflation=0.5, random_state=4, **kwargs)
    assert truth["zero_inflation"] == 0.5
    observed = (df.loc[df["time"] == 0, "y"] == 0).mean()
    assert abs(observed - (0.5 + 0.5 * np.exp(-mu))) < 0.03


def test_random_slope_correlation_recovered():
    _, truth = make_longitudinal(
        n_groups=20000, n_waves=1, re_sd=1.0, slope_sd=0.5, re_corr=-0.6, random_state=5
    )
    b = truth["random_effects"]
    assert abs(b["(Intercept)"].std() - 1.0) < 0.03
    assert abs(b["time"].std() - 0.5) < 0.02
    assert abs(b.corr().iloc[0, 1] + 0.6) < 0.03


# ---------------------------------------------------------------------------
# make_vegetables
# ---------------------------------------------------------------------------


def test_vegetables_structure():
    df, truth = make_vegetables(random_state=1)
    assert df.shape == (3500, 5)
    assert list(df.columns) == ["id", "day", "trt", "sex", "y"]
    assert set(df["trt"]) == {"control", "treat"} and set(df["sex"]) == {"female", "male"}
    assert (df.groupby("id")[["trt", "sex"]].nunique() == 1).all().all()
    assert list(truth["fixed_effects"]) == [
        "(Intercept)",
        "trttreat",
        "sexmale",
        "trttreat:sexmale",
    ]
    assert truth["re_sd"] == 0.03
    expected = {
        ("control", "female"): 0.40,
        ("treat", "female"): 0.85,
        ("control", "male"): 0.30,
        ("treat", "male"): 0.50,
    }
    for cell, p in expected.items():
        assert truth["probabilities"][cell] == pytest.approx(p, abs=1e-6)
    again, _ = make_vegetables(random_state=1)
    pd.testing.assert_frame_equal(df, again)


def test_vegetables_cell_proportions():
    df, truth = make_vegetables(random_state=2, n_subjects=3000)
    observed = df.groupby(["trt", "sex"])["y"].mean()
    for cell, p in truth["probabilities"].items():
        assert abs(observed[cell] - p) < 0.025


# ---------------------------------------------------------------------------
# load_app_logins
# ---------------------------------------------------------------------------


def _app_logins_present() -> bool:
    try:
        return resources.files("sklearn_glmm").joinpath("data", "app_logins.csv").is_file()
    except (ModuleNotFoundError, TypeError):
        return False


def test_load_app_logins():
    if not _app_logins_present():
        pytest.skip("sklearn_glmm/data/app_logins.csv has not been generated yet")
    df = load_app_logins()
    assert df.shape == (1500, 4)
    assert list(df.columns) == ["user_id", "day", "day_centered", "logins"]
    assert df["user_id"].nunique() == 50
    assert df["user_id"].dtype == np.int64
    assert sorted(df["day"].unique()) == list(range(1, 31))
    np.testing.assert_allclose(df["day_centered"], df["day"] - 15.5)
    assert (df["logins"] >= 0).all()
    # tutorial 002's summary(app_data): mean logins 2.296, max 11
    assert df["logins"].mean() == pytest.approx(2.296, abs=5e-4)
    assert df["logins"].max() == 11
