"""Inference, diagnostics and model comparison (issue 4).

Tier 3 tests compare with tests/fixtures/reference.json (written by
tests/fixtures/make_fixtures.R); the R call is quoted above each comparison.
Tiers 1-2: properties (delta-method identities, boundary limits, refusals)
and simulated truths (simulate moments, scaled-residual tests, coverage).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM, anova, compare_models
from sklearn_glmm import _prediction_variance as pv
from sklearn_glmm._param_map import ParamMap
from sklearn_glmm.datasets import make_longitudinal
from sklearn_glmm.exceptions import StandardErrorWarning

FIXTURES = Path(__file__).parent / "fixtures"
REF_PATH = FIXTURES / "reference.json"
_ESTIMATORS = {"binomial": BinomialGLMM, "poisson": PoissonGLMM, "nbinom2": NegBinGLMM}


def _reference():
    if not REF_PATH.exists():
        pytest.skip(
            "tests/fixtures/reference.json is missing: run `Rscript tests/fixtures/make_fixtures.R`"
        )
    with open(REF_PATH) as fh:
        return json.load(fh)


def _fit_case(case: str):
    """Fit the Python model of a fixture case on its CSV."""
    spec = _reference()[case]
    d = pd.read_csv(FIXTURES / spec["data"], dtype={g: str for g in spec["groups"]})
    kw = {"zero_inflation": True} if spec.get("zero_inflation") else {}
    est = _ESTIMATORS[spec["family"]](
        random_effects=spec["random_effects"], n_agq=spec["n_agq"], **kw
    )
    kw = {}
    if spec.get("trials"):
        kw["trials"] = d[spec["trials"]]
    if spec.get("offset"):
        kw["offset"] = d[spec["offset"]]
    groups = d[spec["groups"]] if len(spec["groups"]) > 1 else d[spec["groups"][0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(d[spec["X"]], d[spec["y"]], groups=groups, **kw)
    return est, spec, d


_FITS: dict = {}


def fitted(case):
    if case not in _FITS:
        _FITS[case] = _fit_case(case)
    return _FITS[case]


CONFINT_CASES = ["bin_ri", "pois_ri", "singular_bin", "binom_trials"]


# ---------------------------------------------------------------------------------
# Wald and profile intervals against lme4
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CONFINT_CASES)
def test_wald_confint_matches_lme4(case):
    # R: confint(fit, method = "Wald", parm = "beta_")
    est, spec, _ = fitted(case)
    ci = est.confint(method="wald")
    for name, (lo, hi) in spec["confint_wald"].items():
        tol = 0.05 * spec["se"][name]
        assert ci.loc[name, "lower"] == pytest.approx(lo, abs=tol)
        assert ci.loc[name, "upper"] == pytest.approx(hi, abs=tol)


@pytest.mark.parametrize("case", CONFINT_CASES)
def test_profile_confint_matches_lme4(case):
    # R: confint(fit, method = "profile", level = 0.95)   (rows .sig01, (Intercept), ...)
    est, spec, _ = fitted(case)
    ref = spec["confint_profile"]
    if ref is None:
        pytest.skip(f"lme4's profile failed for {case}: {spec['confint_messages']}")
    ci = est.confint(method="profile")
    ours = ci.rename(index=ci.attrs["lme4_names"])
    assert set(ref) <= set(ours.index)
    for name, (lo, hi) in ref.items():
        width = hi - lo
        assert ours.loc[name, "lower"] == pytest.approx(lo, abs=0.01 * width), name
        assert ours.loc[name, "upper"] == pytest.approx(hi, abs=0.01 * width), name


def test_profile_sd_lower_limit_is_exactly_zero_for_singular_fit():
    # R: confint(singular_fit, method = "profile")[".sig01", ] gives c(0, 0.7367)
    est, _, _ = fitted("singular_bin")
    assert est.is_singular_
    ci = est.confint(parm=".sig01", method="profile")
    assert ci.loc["sd_(Intercept)|id", "lower"] == 0.0
    assert ci.loc["sd_(Intercept)|id", "upper"] > 0.5


def test_profile_sd_lower_limit_zero_when_deviance_at_zero_within_cutoff():
    # a small true SD with few groups: the profile at SD = 0 rises by less than 3.84
    df, _ = make_longitudinal("binomial", n_groups=30, re_sd=0.3, random_state=3)
    m = _quiet_fit(BinomialGLMM(), df[["time", "treatment"]], df["y"], df["id"])
    assert not m.is_singular_
    ci = m.confint(parm="random", method="profile", level=0.95)
    lo, hi = ci.iloc[0][["lower", "upper"]]
    # deviance at sd = 0: the GLM without the random effect
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = BinomialGLMM().fit(df[["time", "treatment"]], df["y"])
    dev0 = 2 * (m.loglik_ - glm.loglik_)
    if dev0 < stats.chi2.ppf(0.95, 1):
        assert lo == 0.0
    else:  # pragma: no cover - depends on the draw
        assert lo > 0.0
    assert hi > m.random_effects_cov_["id"].iloc[0, 0] ** 0.5


@pytest.mark.parametrize("dip", [0.0, 0.6])
def test_a_profile_that_is_not_monotone_has_no_limit(monkeypatch, dip):
    # the profile points scripted: |zeta| = 0.8 |v - v^| / SE, less ``dip`` on the lower
    # side beyond 2.2 SE (inner minima in another basin: the search's first points there
    # are at 1.96 and 2.47 SE, |zeta| 1.57 and then 1.38); a monotone profile gives its
    # crossing, one that falls going outwards NaN with a warning that says why
    import sklearn_glmm._profile as profile
    from sklearn_glmm.exceptions import ProfileWarning

    df, _ = make_longitudinal("poisson", n_groups=30, re_sd=0.5, random_state=3)
    m = _quiet_fit(PoissonGLMM(), df[["time"]], df["y"], df["id"])
    est, se = m.fixed_effects_.loc["time", ["estimate", "std_error"]]

    def scripted(prof, k, value, start, zc):
        t = (value - est) / se
        a = 0.8 * abs(t) - (dip if t < -2.2 else 0.0)
        return np.sign(t) * a, np.asarray(start, dtype=float)

    monkeypatch.setattr(profile, "_verified_zeta", scripted)
    zc = stats.norm.ppf(0.975)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ci = m.confint(parm=["time"], method="profile")
    said = [str(w.message) for w in caught if w.category is ProfileWarning]
    lo, hi = ci.loc["time", ["lower", "upper"]]
    assert hi == pytest.approx(est + zc / 0.8 * se, abs=1e-3 * se)
    if dip == 0.0:
        assert lo == pytest.approx(est - zc / 0.8 * se, abs=1e-3 * se)
        assert not said
    else:
        assert np.isnan(lo)
        assert len(said) == 1 and "not monotone" in said[0] and "time" in said[0]


def _origin_data(seed=1, n=400, g=30):
    rng = np.random.default_rng(seed)
    grp = np.repeat(np.arange(g), n // g + 1)[:n]
    x, t = rng.normal(size=n), rng.uniform(0, 3, size=n)
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.7, g)[grp] + rng.normal(0, 0.3, g)[grp] * t
    return pd.DataFrame({"x": x, "t": t}), grp, eta, rng


@pytest.mark.parametrize("model", ["binomial", "poisson_slope"])
def test_profile_does_not_depend_on_the_predictors_origin_or_units(model):
    # the profile minimises over the internal (centred, scaled) parameters: over the
    # reported ones a predictor shifted by 1e4 is nearly collinear with the intercept,
    # and the binomial slope's interval came out at (0.589, 0.883) for (0.370, 0.891)
    X, grp, eta, rng = _origin_data()
    if model == "binomial":
        X, y = X[["x"]], rng.binomial(1, special.expit(eta))
        make, rows = BinomialGLMM, ["x", "sd_(Intercept)|group"]
    else:
        y = rng.poisson(np.exp(eta))
        make = lambda: PoissonGLMM(random_effects="1 + t")  # noqa: E731
        rows = ["x", "t", "sd_t|group"]
    shift = np.r_[1e4, -300.0][: X.shape[1]]
    units = np.r_[1e3, 1e-2][: X.shape[1]]
    cis = []
    for Xv in (X, X + shift, X * units):
        m = _quiet_fit(make(), Xv, y, grp)
        cis.append(m.confint(rows, method="profile"))
    base = cis[0].to_numpy()
    np.testing.assert_allclose(cis[1].to_numpy(), base, rtol=1e-5, atol=1e-8)
    per_unit = np.r_[units, np.ones(len(rows) - X.shape[1])]
    if model == "poisson_slope":
        per_unit[-1] = units[1]  # the SD of the slope of t
    np.testing.assert_allclose(cis[2].to_numpy() * per_unit[:, None], base, rtol=1e-5, atol=1e-8)
    if model == "poisson_slope":
        # the intercept's SD and its correlation with the slope do not depend on t's
        # units (only on its origin); they are profiled on the reported scale, each SD
        # relative to its estimate (t's SD of 3e-4 in units of 1e3 beside 0.7)
        rows = ["sd_(Intercept)|group", "cor_t.(Intercept)|group"]
        m0 = _quiet_fit(make(), X, y, grp)
        m2 = _quiet_fit(make(), X * units, y, grp)
        c0, c2 = (m.confint(rows, method="profile").to_numpy() for m in (m0, m2))
        np.testing.assert_allclose(c2, c0, rtol=1e-5, atol=1e-8)


def test_profile_of_an_intercept_sd_at_a_far_origin_is_warned_about():
    # the intercept's SD beside a slope is the SD where the slope variable is zero; far
    # outside the data its profile is optimised on a nearly collinear scale
    from sklearn_glmm.exceptions import ProfileWarning

    X, grp, eta, rng = _origin_data()
    y = rng.poisson(np.exp(eta))
    rows = ["sd_(Intercept)|group", "sd_t|group"]
    near = _quiet_fit(PoissonGLMM(random_effects="1 + t"), X, y, grp)
    far = _quiet_fit(PoissonGLMM(random_effects="1 + t"), X + [0.0, 1e4], y, grp)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileWarning)
        near.confint(rows, method="profile")
        far.confint(["sd_t|group"], method="profile")
    with pytest.warns(ProfileWarning, match=r"\['sd_\(Intercept\)\|group'\].*Centre"):
        far.confint(rows, method="profile")


def test_profile_trace_crosses_cutoff_and_names_map_to_lme4():
    est, _, _ = fitted("bin_ri")
    tr = est.profile(parm=["time"])
    assert set(tr["parameter"]) == {"time"}
    assert tr["zeta"].min() < -1.9 and tr["zeta"].max() > 1.9
    assert np.all(np.diff(tr.sort_values("value")["zeta"]) > 0)  # monotone profile
    ci = est.confint(parm=".sig01")
    assert list(ci.index) == ["sd_(Intercept)|id"]
    assert ci.attrs["lme4_names"] == {"sd_(Intercept)|id": ".sig01"}


def test_wald_exponentiate_and_random_rows():
    est, _, _ = fitted("bin_ri")
    ci = est.confint()
    ce = est.confint(exponentiate=True)
    fixed = list(est.fixed_effects_.index)
    np.testing.assert_allclose(ce.loc[fixed].to_numpy(), np.exp(ci.loc[fixed].to_numpy()))
    sd = ci.loc["sd_(Intercept)|id"]
    np.testing.assert_allclose(ce.loc["sd_(Intercept)|id"], sd)  # SDs stay on their scale
    assert sd["lower"] < sd["estimate"] < sd["upper"]
    assert sd["estimate"] == pytest.approx(est.random_effects_cov_["id"].iloc[0, 0] ** 0.5)


def test_param_map_round_trip_with_correlation():
    est, _, _ = fitted("pois_rs")
    pm = ParamMap(est)
    assert pm.names[-3:] == [
        "sd_(Intercept)|user_id",
        "cor_day_centered.(Intercept)|user_id",
        "sd_day_centered|user_id",
    ]
    assert pm.lme4_names[-3:] == [".sig01", ".sig02", ".sig03"]
    phi = pm.to_phi(est.fit_result_.params)
    np.testing.assert_allclose(pm.to_x(phi), est.fit_result_.params, atol=1e-12)
    S = est.random_effects_cov_["user_id"].to_numpy()
    assert phi[-1] == pytest.approx(np.sqrt(S[1, 1]))
    assert phi[-2] == pytest.approx(S[0, 1] / np.sqrt(S[0, 0] * S[1, 1]))
    # the analytic chain rule agrees with finite differences of F(phi)
    D = pm.dx_dphi(phi)
    for j in range(len(phi)):
        e = np.zeros(len(phi))
        e[j] = 1e-6
        fd = (pm.to_x(phi + e) - pm.to_x(phi - e)) / 2e-6
        np.testing.assert_allclose(D[:, j], fd, atol=1e-5)


def test_profile_nb_theta_and_correlation_rows():
    df, _ = make_longitudinal("negbin", n_groups=40, nb_theta=2.0, random_state=5)
    m = _quiet_fit(NegBinGLMM(), df[["time", "treatment"]], df["y"], df["id"])
    ci = m.confint(parm=["nb_theta"], method="profile")
    row = ci.loc["nb_theta"]
    assert row["estimate"] == pytest.approx(m.theta_)
    assert row["lower"] < row["estimate"] < row["upper"]
    wald = m.confint().loc["nb_theta"]
    # the profile and the log-scale Wald interval agree roughly for a well-determined theta
    assert row["lower"] == pytest.approx(wald["lower"], rel=0.25)


@pytest.mark.parametrize("case", ["zip", "nb_ri"])
def test_wald_rows_for_family_parameters_match_glmmtmb(case):
    # R (glmmTMB): plogis(fixef(fit)$zi +- qnorm(0.975) * sqrt(vcov(fit)$zi)); sigma(fit) for NB
    est, spec, _ = fitted(case)
    ci = est.confint()
    if spec["zero_inflation"]:
        zl, se = spec["zi_logit"], spec["zi_se_logit"]
        assert ci.loc["zi_prob", "estimate"] == pytest.approx(spec["zi_prob"], rel=1e-3)
        for col, sgn in (("lower", -1), ("upper", 1)):
            ref = special.expit(zl + sgn * stats.norm.ppf(0.975) * se)
            assert special.logit(ci.loc["zi_prob", col]) == pytest.approx(
                special.logit(ref), abs=0.05 * se
            )
    else:
        assert ci.loc["nb_theta", "estimate"] == pytest.approx(spec["nb_theta"], rel=1e-3)
        assert ci.loc["nb_theta", "lower"] < spec["nb_theta"] < ci.loc["nb_theta", "upper"]


def test_confint_argument_errors():
    est, _, _ = fitted("bin_ri")
    with pytest.raises(ValueError, match="method"):
        est.confint(method="exact")
    with pytest.raises(ValueError, match="level"):
        est.confint(level=95)
    with pytest.raises(ValueError, match="unknown parameter"):
        est.confint(parm=["nope"])


# ---------------------------------------------------------------------------------
# bootstrap
# ---------------------------------------------------------------------------------
def test_bootstrap_confint_reproducible_and_independent_of_n_jobs():
    est, _, _ = fitted("binom_trials")
    a = est.confint(method="bootstrap", n_boot=16, random_state=7)
    b = est.confint(method="bootstrap", n_boot=16, random_state=7, n_jobs=2)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["replicates"].shape == (16, len(a))
    assert (a["lower"] <= a["upper"]).all()
    # percentile intervals are roughly the Wald ones here (20% of the width)
    w = est.confint()
    width = w["upper"] - w["lower"]
    fixed = list(est.fixed_effects_.index)
    assert np.all(np.abs(a.loc[fixed, "lower"] - w.loc[fixed, "lower"]) < 0.35 * width[fixed])


def test_bootstrap_of_a_weighted_fit_is_refused():
    # a row of weight 2 would be one simulated draw counted twice: intervals about
    # sqrt(2) too wide (against the same model on duplicated rows); weights 0 and 1 (rows
    # left out or kept) are fine
    df, _ = make_longitudinal("poisson", n_groups=30, n_waves=4, random_state=1)
    X, y, g = df[["time", "treatment"]], df["y"], df["id"]
    m = PoissonGLMM().fit(X, y, groups=g, sample_weight=np.full(len(y), 2.0))
    with pytest.raises(ValueError, match="sample_weight other than 0 and 1.*profile"):
        m.confint(method="bootstrap", n_boot=4, random_state=0)
    w01 = (np.arange(len(y)) % 7 != 0).astype(float)
    m01 = PoissonGLMM().fit(X, y, groups=g, sample_weight=w01)
    ci = m01.confint(method="bootstrap", n_boot=4, random_state=0)
    assert np.isfinite(ci["lower"]).all()


def test_percentile_limits_are_boot_ci_perc():
    # R: boot:::norm.inter(t, alpha), boot.ci(type = "perc")'s rule, which lme4's
    # confint(method = "boot") uses (tests/fixtures/boot_percentile/make.R)
    from sklearn_glmm._confint import percentile_limits

    sets = json.loads((FIXTURES / "boot_percentile" / "limits.json").read_text())
    rng = np.random.default_rng(0)
    for s in sets:
        t = rng.permutation(np.asarray(s["t"]))  # any order
        got = percentile_limits(t, s["alpha"])
        np.testing.assert_allclose(got, s["limits"], rtol=1e-12, atol=1e-12)
        # not the interpolated quantile (type 7) inside the extreme order statistics
        inner = (np.asarray(s["alpha"]) * (len(t) + 1) > 1) & (
            np.asarray(s["alpha"]) * (len(t) + 1) < len(t)
        )
        assert not np.allclose(got[inner], np.quantile(t, np.asarray(s["alpha"])[inner]))


def test_bootstrap_limits_are_the_percentiles_of_the_reported_replicates():
    from sklearn_glmm._confint import percentile_limits

    est, _, _ = fitted("binom_trials")
    ci = est.confint(method="bootstrap", n_boot=40, level=0.9, random_state=3)
    reps = ci.attrs["replicates"]
    for name in ci.index:
        lo, hi = percentile_limits(reps[name].to_numpy(), [0.05, 0.95])
        assert ci.loc[name, "lower"] == pytest.approx(lo, rel=1e-12, abs=1e-14)
        assert ci.loc[name, "upper"] == pytest.approx(hi, rel=1e-12, abs=1e-14)


def test_bootstrap_warns_of_any_refit_it_drops(monkeypatch):
    # it warned only above 10 % of the refits: the failures are often the extreme draws,
    # and dropping them moves a percentile limit inwards without a word
    import sklearn_glmm._simulate as simulate

    est, _, _ = fitted("binom_trials")
    refit_many, calls = simulate.refit_many, []

    def one_fails(est, Y, *args, **kwargs):  # (called once per batch of replicates)
        out = list(refit_many(est, Y, *args, **kwargs))
        if not calls:
            out[0] = np.linalg.LinAlgError("a refit that failed")
        calls.append(len(out))
        return out

    monkeypatch.setattr(simulate, "refit_many", one_fails)
    with pytest.warns(UserWarning, match=r"1 of 20 bootstrap refits failed .* other 19"):
        ci = est.confint(method="bootstrap", n_boot=20, random_state=3)
    assert ci.attrs["n_failed"] == 1 and len(ci.attrs["replicates"]) == 19


# ---------------------------------------------------------------------------------
# anova and AIC tables
# ---------------------------------------------------------------------------------
def test_anova_matches_lme4():
    # R: anova(pois_ri_fit, pois_rs_fit)
    ref = _reference()["anova"]
    a, _, _ = fitted("pois_ri")
    b, _, _ = fitted("pois_rs")
    tab = anova(a, b, names=["pois_ri", "pois_rs"])
    assert list(tab.columns[:8]) == [
        "npar",
        "AIC",
        "BIC",
        "logLik",
        "deviance",
        "Chisq",
        "Df",
        "Pr(>Chisq)",
    ]
    assert list(tab.index) == ref["models"]
    np.testing.assert_array_equal(tab["npar"], ref["npar"])
    for col in ("AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(tab[col], ref[col], atol=2e-3)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], abs=2e-3)
    assert tab["Df"].iloc[1] == ref["Df"][1]
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"][1], rel=2e-3)
    # a random slope with its correlation: 0.5 chi2(1) + 0.5 chi2(2)
    chisq = tab["Chisq"].iloc[1]
    mix = 0.5 * stats.chi2.sf(chisq, 1) + 0.5 * stats.chi2.sf(chisq, 2)
    assert tab["Pr(>Chisq) chi-bar"].iloc[1] == pytest.approx(mix)
    assert tab["chi-bar mixture"].iloc[1] == "0.5*chi2(1) + 0.5*chi2(2)"


def test_anova_random_intercept_vs_glm_uses_chi_bar_square():
    # R: anova(bin_ri_fit, glm(binary ~ time + treatment, family = binomial))
    ref = _reference()["anova_bin_fixed"]
    est, spec, d = fitted("bin_ri")
    glm = _quiet_fit(BinomialGLMM(), d[spec["X"]], d[spec["y"]], None)
    tab = anova(est, glm, names=["bin_ri", "bin_fixed"])
    assert list(tab.index) == ["bin_fixed", "bin_ri"]  # sorted by npar, as R
    np.testing.assert_allclose(tab["logLik"], ref["logLik"], atol=2e-3)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], abs=2e-3)
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"][1], rel=2e-3)
    assert tab["Pr(>Chisq) chi-bar"].iloc[1] == pytest.approx(0.5 * ref["p"][1], rel=2e-3)
    assert "p-value" in tab.attrs["note"] or "Pr(>Chisq)" in tab.attrs["note"]


def _quiet(fun, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kwargs)


def _small_counts(sd=0.3, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(10), 10)
    x = rng.normal(size=100)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, sd, 10)[g]))
    return pd.DataFrame({"x": x}), y, g


def test_anova_parametric_bootstrap_statistics_are_fresh_fits_of_simulated_data():
    # the bootstrap's statistics: data simulated from the smaller model with each
    # replicate's seed, both models refitted (from their fits, batched); fresh fits of the
    # same data by new estimators give the same statistics
    from sklearn_glmm._simulate import child_seeds, simulate_response

    X, y, g = _small_counts()
    small = _quiet_fit(PoissonGLMM(), X, y, None)
    large = _quiet_fit(PoissonGLMM(), X, y, g)
    tab = _quiet(anova, small, large, n_boot=12, random_state=3)
    lr = tab.attrs["bootstrap"]["model2"]
    assert np.all(np.isfinite(lr))
    fresh = []
    for seed in child_seeds(3, 12):
        y_b = simulate_response(small, 1, np.random.default_rng(seed))[:, 0]
        a = _quiet_fit(PoissonGLMM(), X, y_b, None)
        b = _quiet_fit(PoissonGLMM(), X, y_b, g)
        fresh.append(max(2.0 * (b.loglik_ - a.loglik_), 0.0))
    np.testing.assert_allclose(lr, fresh, atol=1e-5)
    chisq = tab["Chisq"].iloc[1]
    expected = (1 + np.sum(np.asarray(fresh) >= chisq)) / 13
    assert tab["Pr(>Chisq) boot"].iloc[1] == pytest.approx(expected)
    # the same seed, the same table
    again = _quiet(anova, small, large, n_boot=12, random_state=3)
    np.testing.assert_array_equal(again.attrs["bootstrap"]["model2"], lr)


def test_anova_parametric_bootstrap_p_values_at_the_extremes():
    # a variance far from 0 (SD 1): no simulated statistic reaches it, p = 1 / (n + 1);
    # NB against Poisson where the data have no overdispersion (LR 0): p = 1
    X, y, g = _small_counts(sd=1.0)
    glm = _quiet_fit(PoissonGLMM(), X, y, None)
    ri = _quiet_fit(PoissonGLMM(), X, y, g)
    tab = _quiet(anova, glm, ri, n_boot=19, random_state=0)
    assert tab["Pr(>Chisq) boot"].iloc[1] == pytest.approx(1 / 20)
    X0, y0, g0 = _small_counts(sd=0.3)
    pois, nb = _quiet_fit(PoissonGLMM(), X0, y0, g0), _quiet_fit(NegBinGLMM(), X0, y0, g0)
    tab = _quiet(anova, pois, nb, n_boot=19, random_state=0)
    assert tab["Chisq"].iloc[1] < 1e-6 and tab["Pr(>Chisq) boot"].iloc[1] == 1.0
    assert "Pr(>Chisq) boot" not in anova(glm, ri).columns
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        anova(glm, ri, n_boot=0)


def test_anova_refuses_models_of_different_links():
    # a logit model is no special case of a probit one: the test was made (p = 0.002)
    b, spec, d = fitted("bin_ri")
    X, y, g = d[spec["X"]], d[spec["y"]], d[spec["groups"][0]]
    small = _quiet_fit(BinomialGLMM(), X.iloc[:, :1], y, g)
    big = _quiet_fit(BinomialGLMM(link="probit"), X, y, g)
    with pytest.raises(ValueError, match=r"its link \(logit\) is not the larger model's"):
        anova(small, big)
    assert np.isfinite(anova(small, b)["Pr(>Chisq)"].iloc[1])


def test_anova_refuses_non_nested_and_different_data():
    p, spec, d = fitted("pois_ri")
    prs, _, _ = fitted("pois_rs")
    X, y, g = d[spec["X"]], d[spec["y"]], d[spec["groups"][0]]
    nb = _quiet_fit(NegBinGLMM(), X, y, g)
    with pytest.raises(ValueError, match="not nested"):
        anova(nb, prs)  # NB random intercept vs Poisson random slope
    half = _quiet_fit(PoissonGLMM(), X.iloc[:900], y.iloc[:900], g.iloc[:900])
    with pytest.raises(ValueError, match="same data.*900 vs 1500 rows"):
        anova(half, p)
    order = np.random.default_rng(1).permutation(len(y))
    shuffled = _quiet_fit(PoissonGLMM(), X.iloc[order], y.iloc[order], g.iloc[order])
    with pytest.raises(ValueError, match="same rows in another order"):
        anova(shuffled, prs)
    b, _, _ = fitted("bin_ri")
    with pytest.raises(ValueError, match="kinds of outcome"):
        anova(p, b)
    # fixed effects are compared by column space, not by name
    rng = np.random.default_rng(0)
    X2 = X.assign(noise=rng.normal(size=len(X)))
    # same column name, different values: p (3 parameters) is not nested in `other` (3)
    renamed = X2[["noise"]].rename(columns={"noise": "day_centered"})
    other = _quiet_fit(PoissonGLMM(), renamed, y, g)
    with pytest.raises(ValueError, match="fixed effects"):
        anova(p, other)
    full = _quiet_fit(PoissonGLMM(), X2, y, g)
    tab = anova(p, full)
    assert tab["Df"].iloc[1] == 1 and np.isnan(tab["Pr(>Chisq) chi-bar"].iloc[1])
    # Poisson is a boundary case of NB: 0.5 chi2(0) + 0.5 chi2(1)
    tab = anova(p, nb)
    assert tab["chi-bar mixture"].iloc[1] == "0.5*chi2(0) + 0.5*chi2(1)"


def test_compare_models_table():
    p, spec, d = fitted("pois_ri")
    prs, _, _ = fitted("pois_rs")
    X, y, g = d[spec["X"]], d[spec["y"]], d[spec["groups"][0]]
    nb = _quiet_fit(NegBinGLMM(), X, y, g)
    tab = compare_models(p, prs, nb, names=["Poisson", "Poisson RS", "NB"])
    assert list(tab.columns) == ["npar", "logLik", "AIC", "dAIC", "AIC_weight", "BIC", "dBIC"]
    assert tab["AIC"].is_monotonic_increasing and tab["dAIC"].iloc[0] == 0
    assert tab["AIC_weight"].sum() == pytest.approx(1.0)
    assert tab.loc["NB", "AIC"] == pytest.approx(nb.aic_)
    b, _, _ = fitted("bin_ri")
    with pytest.raises(ValueError):
        compare_models(p, b)


# ---------------------------------------------------------------------------------
# random effects, simulation, diagnostics
# ---------------------------------------------------------------------------------
def test_ranef_condvar_matches_lme4():
    # R: ranef(fit, condVar = TRUE)
    est, spec, _ = fitted("bin_ri")
    ref = spec["ranef"]["id"]
    re = est.ranef(cond_var=True)["id"]
    assert sorted(re.index.astype(str)) == sorted(ref["levels"])
    order = pd.Index(re.index.astype(str)).get_indexer(ref["levels"])
    re = re.iloc[order]
    re.attrs["cond_var"] = est.ranef()["id"].attrs["cond_var"][order]
    np.testing.assert_allclose(re["(Intercept)"], np.asarray(ref["values"])[:, 0], atol=2e-3)
    np.testing.assert_allclose(
        re.attrs["cond_var"][:, 0, 0], np.asarray(ref["condvar"])[:, 0], rtol=2e-3
    )
    np.testing.assert_allclose(re["condsd_(Intercept)"] ** 2, re.attrs["cond_var"][:, 0, 0])
    long = est.ranef(format="long")
    assert list(long.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    assert len(long) == len(re)


def test_ranef_condvar_random_slopes_matches_lme4():
    est, spec, _ = fitted("pois_rs")
    ref = spec["ranef"]["user_id"]
    re = est.ranef()["user_id"]
    order = pd.Index(re.index.astype(str)).get_indexer(ref["levels"])
    cv = re.attrs["cond_var"][order].reshape(len(ref["levels"]), -1)
    np.testing.assert_allclose(cv, np.asarray(ref["condvar"]), rtol=5e-3, atol=1e-7)


def test_simulate_shape_and_reproducibility():
    est, _, d = fitted("bin_ri")
    s1 = est.simulate(3, random_state=0)
    s2 = est.simulate(3, random_state=0)
    assert s1.shape == (len(d), 3)
    np.testing.assert_array_equal(s1, s2)
    assert set(np.unique(s1)) <= {0.0, 1.0}
    with pytest.raises(ValueError):
        est.simulate(0)


def test_simulate_moments_new_random_effects_poisson():
    # Y = Poisson(exp(eta + b)), b ~ N(0, s^2): E Y = m = exp(eta + s^2/2),
    # Var Y = m + m^2 (exp(s^2) - 1)
    est, _, _ = fitted("pois_ri")
    sims = est.simulate(4000, random_state=1)
    d = est.fit_result_.objective.data
    eta = d.X @ est.fit_result_.params[: d.n_beta] + d.offset
    s2 = est.random_effects_cov_["user_id"].iloc[0, 0]
    m = np.exp(eta + s2 / 2)
    v = m + m**2 * np.expm1(s2)
    assert np.mean(sims.mean(axis=1) / m) == pytest.approx(1.0, abs=0.01)
    assert np.mean(sims.var(axis=1) / v) == pytest.approx(1.0, abs=0.03)
    # one row on its own: within 5 Monte-Carlo SEs
    i = 0
    assert abs(sims[i].mean() - m[i]) < 5 * np.sqrt(v[i] / sims.shape[1])


def test_simulate_moments_fixed_random_effects():
    est, _, _ = fitted("binom_trials")
    sims = est.simulate(5000, random_state=2, new_random_effects=False)
    p = est.fitted()  # conditional probabilities (R's fitted())
    t = est.fit_result_.train["trials"]
    fit = p * t  # expected successes
    se = np.sqrt(t * p * (1 - p) / sims.shape[1])
    assert np.all(np.abs(sims.mean(axis=1) - fit) < 5 * se + 1e-12)
    np.testing.assert_allclose(sims.var(axis=1), t * p * (1 - p), rtol=0.15, atol=0.05)


def test_simulate_moments_negbin():
    df, _ = make_longitudinal("negbin", n_groups=40, nb_theta=2.0, random_state=4)
    m = _quiet_fit(NegBinGLMM(), df[["time", "treatment"]], df["y"], df["id"])
    sims = m.simulate(4000, random_state=3, new_random_effects=False)
    mu = m.fitted()
    v = mu + mu**2 / m.theta_
    assert np.mean(sims.mean(axis=1) / mu) == pytest.approx(1.0, abs=0.01)
    assert np.mean(sims.var(axis=1) / v) == pytest.approx(1.0, abs=0.04)


def test_posterior_predictive_check_in_a_few_lines():
    est, spec, d = fitted("bin_ri")
    sims = est.simulate(100, random_state=0)
    cells = [d["time"], d["treatment"]]
    observed = d["binary"].groupby(cells).mean()
    simulated = pd.DataFrame(sims).groupby(cells).mean()
    lo, hi = simulated.quantile(0.005, axis=1), simulated.quantile(0.995, axis=1)
    assert ((observed >= lo) & (observed <= hi)).mean() >= 0.8


def test_overdispersion():
    df, _ = make_longitudinal("negbin", n_groups=60, nb_theta=1.0, random_state=8)
    X, y, g = df[["time", "treatment"]], df["y"], df["id"]
    pois = _quiet_fit(PoissonGLMM(), X, y, g)
    ratio, stat, dfree, p = pois.overdispersion()
    assert ratio > 1.5 and p < 1e-6
    assert dfree == pois.df_resid_
    assert stat == pytest.approx(np.sum(pois.residuals("pearson") ** 2))
    good, _, _ = fitted("pois_ri")
    assert 0.8 < good.overdispersion().ratio < 1.2
    b, _, _ = fitted("bin_ri")
    with pytest.warns(UserWarning, match="binary"):
        b.overdispersion()


def test_scaled_residuals_uniform_under_the_model():
    est, _, _ = fitted("pois_ri")
    sr = est.scaled_residuals(n_sim=250, random_state=0)
    assert sr.residuals.shape == (est.nobs_,)
    assert np.all((sr.residuals >= 0) & (sr.residuals <= 1))
    t = sr.tests()
    assert list(t.index) == ["uniformity (KS)", "dispersion", "zero-inflation"]
    assert (t["p_value"] > 0.01).all()


def test_scaled_residuals_detect_overdispersion_and_zero_inflation():
    df, _ = make_longitudinal("negbin", n_groups=60, nb_theta=1.0, random_state=8)
    pois = _quiet_fit(PoissonGLMM(), df[["time", "treatment"]], df["y"], df["id"])
    sr = pois.scaled_residuals(n_sim=200, random_state=1)
    assert sr.test_dispersion()["p_value"] < 0.01
    assert sr.test_dispersion()["statistic"] > 1
    assert sr.test_uniformity()["p_value"] < 0.01
    dz, _ = make_longitudinal("poisson", n_groups=60, zero_inflation=0.3, random_state=9)
    pz = _quiet_fit(PoissonGLMM(), dz[["time", "treatment"]], dz["y"], dz["id"])
    zt = pz.scaled_residuals(n_sim=200, random_state=2).test_zero_inflation()
    assert zt["statistic"] > 1 and zt["p_value"] < 0.01


def test_dispersion_test_holds_its_level_under_the_model():
    # 20 binary data sets drawn from the fitted model's class: centred at the
    # conditional means (modes fitted to y), the test found underdispersion in 86 % of
    # such data sets; centred at the population means (DHARMa's), in none
    from scipy.special import expit

    rejected = 0
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        g = np.repeat(np.arange(40), 10)
        x = rng.normal(size=len(g))
        y = rng.binomial(1, expit(-0.3 + 0.7 * x + rng.normal(0, 0.8, 40)[g]))
        m = _quiet_fit(BinomialGLMM(), pd.DataFrame({"x": x}), y, g)
        rejected += (
            m.scaled_residuals(n_sim=150, random_state=seed).test_dispersion()["p_value"] < 0.05
        )
    assert rejected <= 3  # 5 % of 20 is 1; binomial(20, 0.05) exceeds 3 with probability 1.6 %


def _poisson_data(seed, theta=None):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 10)
    x = rng.normal(size=len(g))
    mu = np.exp(0.8 + 0.4 * x + rng.normal(0, 0.8, 40)[g])
    y = rng.poisson(mu) if theta is None else rng.negative_binomial(theta, theta / (theta + mu))
    return _quiet_fit(PoissonGLMM(), pd.DataFrame({"x": x}), y, g)


def test_dispersion_statistic_is_one_under_a_poisson_model():
    # simulated at the fitted modes and centred at the population means, the ratio was
    # 1.03 on average on these data sets drawn from the model (the modes absorb part of
    # the observed variation, not of the simulated one) and the mean p-value 0.71 (no
    # power); each simulation at its own modes: 0.98 (the fitted fixed effects and
    # variance take a little more of the observed variation: 3 parameters on 400 rows)
    ratios, pvals = [], []
    for seed in range(24):
        t = _poisson_data(3000 + seed).scaled_residuals(n_sim=150, random_state=seed)
        d = t.test_dispersion()
        ratios.append(d["statistic"])
        pvals.append(d["p_value"])
    assert 0.95 < np.mean(ratios) < 1.015
    assert np.mean(np.array(pvals) < 0.05) <= 3 / 24
    assert 0.35 < np.mean(pvals) < 0.62


def test_dispersion_test_finds_mild_overdispersion():
    # negative-binomial counts (theta = 10) fitted as Poisson: the old test found it in
    # 40 % of such data sets, one with simulations drawn about the modes in 7 %
    found = sum(
        _poisson_data(7000 + seed, theta=10.0)
        .scaled_residuals(n_sim=150, random_state=seed)
        .test_dispersion()["p_value"]
        < 0.05
        for seed in range(8)
    )
    assert found >= 6


def test_dispersion_test_leaves_out_simulations_without_modes(monkeypatch):
    from sklearn_glmm import _diagnostics

    m = _poisson_data(1)
    real = _diagnostics.conditional_etas

    def some_fail(est, Y):  # every fifth simulation without modes
        eta = real(est, Y)
        eta[:, 4::5] = np.nan
        return eta

    monkeypatch.setattr(_diagnostics, "conditional_etas", some_fail)
    sr = m.scaled_residuals(n_sim=50, random_state=0)
    with pytest.warns(UserWarning, match="leaves out 10 of its 50 simulated data sets"):
        d = sr.test_dispersion()
    assert np.isfinite(d["statistic"])


# ---------------------------------------------------------------------------------
# predictions with uncertainty, marginal effects
# ---------------------------------------------------------------------------------
def test_predict_interval_delta_method():
    est, spec, d = fitted("bin_ri")
    X = d[spec["X"]].iloc[:5]
    link = est.predict_interval(X, scale="link", population="zero")
    D = np.column_stack([np.ones(5), X.to_numpy()])
    V = est.fit_result_.vcov_fixed.to_numpy()
    np.testing.assert_allclose(link["se"], np.sqrt(np.einsum("ni,ij,nj->n", D, V, D)))
    np.testing.assert_allclose(link["fit"], est.decision_function(X, population="zero"))
    resp = est.predict_interval(X, population="zero")
    np.testing.assert_allclose(resp["lower"], special.expit(link["lower"]))
    np.testing.assert_allclose(resp["upper"], special.expit(link["upper"]))
    p = special.expit(link["fit"])
    np.testing.assert_allclose(resp["se"], p * (1 - p) * link["se"], rtol=1e-4)
    # known groups: the prediction error of x'beta + b. At the fitted variance its two
    # parts are negatively correlated (the fixed intercept and a group's mode trade
    # off): less than the sum of their variances; the default adds the variance's own
    # uncertainty (5 binary rows per group: here more than that). Exact values against
    # glmmTMB and a dense inverse in test_prediction_variance.py
    known = est.predict_interval(X, d["id"].iloc[:5], scale="link")
    cv = est.ranef()["id"]["condsd_(Intercept)"].loc[d["id"].iloc[:5].astype(str)].to_numpy()
    res = est.fit_result_
    codes = [res.factors[0].codes[:5]]
    at_theta = pv.known_group_variance(res, X.to_numpy(float), [np.ones((5, 1))], codes, "schur")
    assert np.all(at_theta < link["se"] ** 2 + cv**2)
    assert np.all(known["se"] ** 2 > at_theta)
    np.testing.assert_allclose(known["se"] ** 2, link["se"] ** 2 + cv**2, rtol=0.1)
    marg = est.predict_interval(X)  # unknown groups, averaged over the random effect
    np.testing.assert_allclose(marg["fit"], est.predict_proba(X)[:, 1])


def test_predict_interval_reads_group_columns():
    est, spec, d = fitted("bin_ri")
    cols = d[["time", "treatment", "id"]]
    m = _quiet_fit(BinomialGLMM(group_columns="id"), cols, d["binary"], None)
    a = m.predict_interval(cols.iloc[:4])
    b = est.predict_interval(d[["time", "treatment"]].iloc[:4], d["id"].iloc[:4])
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-4)
    ci = m.confint(parm=["time"])
    assert list(ci.index) == ["time"]


def test_marginal_means_poisson_and_binomial():
    est, spec, d = fitted("pois_ri")
    grid = pd.DataFrame({"day_centered": [-10.0, 0.0, 10.0]})
    mm = est.marginal_means(grid)
    s2 = est.random_effects_cov_["user_id"].iloc[0, 0]
    np.testing.assert_allclose(mm["marginal"], mm["conditional"] * np.exp(s2 / 2), rtol=1e-9)
    assert (mm["conditional_lower"] < mm["conditional"]).all()
    assert (mm["marginal_upper"] > mm["marginal"]).all()
    b, bspec, bd = fitted("bin_ri")
    g = pd.DataFrame({"time": [0, 4], "treatment": [0, 0]})
    mb = b.marginal_means(g)
    # population-averaged probabilities are pulled towards 0.5
    assert np.all(np.abs(mb["marginal"] - 0.5) < np.abs(mb["conditional"] - 0.5))
    np.testing.assert_allclose(mb["marginal"], b.predict_proba(g)[:, 1])
    avg = b.marginal_means(g, average=True)
    assert len(avg) == 1 and avg["marginal"].iloc[0] == pytest.approx(mb["marginal"].mean())


def test_contrast_ratio_equals_exp_beta_for_log_link():
    df, _ = make_longitudinal("poisson", n_groups=50, random_state=11)
    X = df[["time", "treatment"]]
    m = _quiet_fit(PoissonGLMM(), X, df["y"], df["id"])
    c = m.contrast(X.assign(treatment=1), X.assign(treatment=0), kind="ratio")
    beta = m.fixed_effects_.loc["treatment"]
    for row in ("conditional", "marginal"):
        assert c.loc[row, "estimate"] == pytest.approx(np.exp(beta["estimate"]), rel=1e-8)
        assert c.loc[row, "p_value"] == pytest.approx(beta["p_value"], rel=1e-3)
    diff = m.contrast(X.assign(treatment=1), X.assign(treatment=0))
    assert np.sign(diff.loc["marginal", "estimate"]) == np.sign(beta["estimate"])
    with pytest.raises(ValueError, match="odds_ratio"):
        m.contrast(X, X, kind="odds_ratio")


@pytest.mark.parametrize("scale", ["link", "response"])
def test_predict_interval_without_random_effects_is_the_population_prediction(scale):
    # include_random=False kept the groups' modes in the fit but gave it the fixed
    # effects' standard error alone: an interval of no estimand (3x too narrow for the
    # group's prediction, off the population value)
    df, _ = make_longitudinal("binomial", n_groups=40, random_state=5)
    X = df[["time", "treatment"]]
    m = _quiet_fit(BinomialGLMM(), X, df["y"], df["id"])
    rows, g = X.head(6), df["id"].head(6)
    for population in ("zero", "marginal"):
        kw = dict(scale=scale, population=population)
        without = m.predict_interval(rows, g, include_random=False, **kw)
        pop = m.predict_interval(rows, **kw)
        pd.testing.assert_frame_equal(without, pop)
    with_re = m.predict_interval(rows, g, scale=scale)
    assert (with_re["se"] > without["se"]).all()


def test_a_contrast_without_uncertainty_has_no_test():
    # doubling every row's exposure in a log-link model makes the ratio exactly 2: its
    # standard error was finite-difference noise (2e-12) with z 7e11 and p 0; now 0 with
    # z and p NaN, as for identical X1 and X0
    df, _ = make_longitudinal("poisson", n_groups=40, random_state=3)
    X = df[["time", "treatment"]]
    expo = np.random.default_rng(0).uniform(1, 5, len(df))
    m = _quiet_fit(PoissonGLMM(), X, df["y"], df["id"], offset=np.log(expo))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = m.contrast(X, X, offset1=np.log(2 * expo), offset0=np.log(expo), kind="ratio")
        same = m.contrast(X, X, offset1=np.log(expo), offset0=np.log(expo))
    for table, value in ((c, 2.0), (same, 0.0)):
        np.testing.assert_allclose(table["estimate"], value, rtol=1e-12, atol=1e-15)
        assert (table["se"] == 0).all()
        assert table[["z", "p_value"]].isna().all().all()
    # a real difference keeps its test
    d = m.contrast(
        X.assign(treatment=1), X.assign(treatment=0), offset1=np.log(expo), offset0=np.log(expo)
    )
    assert (d["se"] > 1e-4).all() and d["p_value"].notna().all()


def test_means_of_a_model_fitted_with_an_offset_warn_without_one():
    # marginal_means and contrast took offset 0 without a word, where predict warns
    import warnings as w

    df, _ = make_longitudinal("poisson", n_groups=40, random_state=3)
    X = df[["time", "treatment"]]
    off = np.log(np.random.default_rng(0).uniform(1, 5, len(df)))
    m = _quiet_fit(PoissonGLMM(), X, df["y"], df["id"], offset=off)
    grid = X.head(3)
    calls = {
        "marginal_means": lambda **kw: m.marginal_means(grid, **kw),
        "contrast": lambda **kw: m.contrast(grid.assign(treatment=1), grid, **kw),
        "predict_interval": lambda **kw: m.predict_interval(grid, **kw),
    }
    for name, call in calls.items():
        with pytest.warns(UserWarning, match="fitted with an offset") as rec:
            call()
        # (contrast: once for each side; the same user line, shown once by Python)
        n = len([r for r in rec if "fitted with an offset" in str(r.message)])
        assert n == (2 if name == "contrast" else 1), name
    with w.catch_warnings():
        w.simplefilter("error")
        m.marginal_means(grid, offset=off[:3])
        m.contrast(grid.assign(treatment=1), grid, offset1=off[:3], offset0=off[:3])
        m.predict_interval(grid, offset=np.zeros(3))


# ---------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------
def test_report_binomial_and_poisson():
    est, _, _ = fitted("bin_ri")
    text = est.report(outcome="the outcome")
    ci = est.confint(exponentiate=True)
    assert "OR = 0.81 per unit" in text
    assert f"[{ci.loc['time', 'lower']:.2f}, {ci.loc['time', 'upper']:.2f}]" in text
    assert "p < .001" in text and "random-intercept SD was 0.69" in text
    assert "treatment (1 vs 0)" in text
    p, spec, d = fitted("pois_ri")
    nb = _quiet_fit(NegBinGLMM(), d[spec["X"]], d[spec["y"]], d[spec["groups"][0]])
    text = p.report(outcome="logins", compare=[nb])
    assert "IRR = " in text and "overdispersion ratio was" in text
    assert "likelihood-ratio test against the NegBinGLMM" in text


def test_report_reads_main_effects_in_interactions_where_the_others_are_zero():
    # "increased with time (OR per unit)" was time's effect at treatment = 0 only
    est, spec, d = fitted("bin_ri")
    X = d[spec["X"]].assign(**{"time:treatment": d["time"] * d["treatment"]})
    m = _quiet_fit(BinomialGLMM(), X, d[spec["y"]], d[spec["groups"][0]])
    text = m.report(outcome="the outcome")
    ci = m.confint(exponentiate=True)
    ratio = np.exp(m.fixed_effects_.loc["time:treatment", "estimate"])
    assert "The interaction time:treatment was" in text
    assert f"ratio of ORs = {ratio:.2f}, 95% CI [{ci.loc['time:treatment', 'lower']:.2f}" in text
    assert "with time (where treatment = 0; OR = " in text
    assert "treatment (1 vs 0) (where time = 0; OR = " in text or (
        "treatment = 0 (where time = 0; OR = " in text
    )


# ---------------------------------------------------------------------------------
# helpers and slow studies
# ---------------------------------------------------------------------------------
def _quiet_fit(est, X, y, groups, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, groups=groups, **kw)


@pytest.mark.slow
def test_wald_coverage_tutorial_design():
    """Wald 95% intervals cover the true fixed effects 93-97% of the time (400 data sets)."""
    truth = None
    hits = []
    for seed in range(400):
        df, info = make_longitudinal(random_state=1000 + seed)
        truth = info["fixed_effects"]
        m = _quiet_fit(BinomialGLMM(), df[["time", "treatment"]], df["y"], df["id"])
        ci = m.confint()
        hits.append([ci.loc[k, "lower"] <= v <= ci.loc[k, "upper"] for k, v in truth.items()])
    hits = np.asarray(hits)
    pooled = hits.mean()
    assert 0.93 <= pooled <= 0.97, (pooled, hits.mean(axis=0))
    assert np.all((hits.mean(axis=0) >= 0.92) & (hits.mean(axis=0) <= 0.98)), hits.mean(axis=0)


@pytest.mark.slow
def test_profile_coverage_random_intercept_sd():
    """Profile 95% intervals for the random-intercept SD cover the truth ~95% (200 data sets)."""
    hits = []
    for seed in range(200):
        df, info = make_longitudinal(random_state=5000 + seed, n_groups=100)
        m = _quiet_fit(BinomialGLMM(), df[["time", "treatment"]], df["y"], df["id"])
        ci = m.confint(parm="random", method="profile")
        hits.append(ci["lower"].iloc[0] <= info["re_sd"] <= ci["upper"].iloc[0])
    assert 0.91 <= np.mean(hits) <= 0.985


def test_chi_bar_p_value_of_a_statistic_at_zero_is_one():
    # the NB2 fit of Poisson data ends at theta's bound, its log-likelihood 1.6e-10 above
    # the Poisson one: the chi-bar p-value was 1 or 0.49999 by its sign
    rng = np.random.default_rng(14)
    g = np.repeat(np.arange(40), 10)
    X = pd.DataFrame({"x": rng.normal(size=len(g))})
    y = rng.poisson(np.exp(0.5 + 0.3 * X.x + rng.normal(0, 0.5, 40)[g]))
    pois = _quiet_fit(PoissonGLMM(), X, y, g)
    nb = _quiet_fit(NegBinGLMM(), X, y, g)
    t = anova(pois, nb)
    assert abs(t["Chisq"].iloc[1]) < 1e-6
    assert t["Pr(>Chisq) chi-bar"].iloc[1] == 1.0


def test_the_binomial_is_nested_in_the_beta_binomial():
    # the beta-binomial's binomial limit (phi to infinity), as Poisson in NB2: a boundary
    # test (it was refused as not nested)
    rng = np.random.default_rng(1)
    n, G = 400, 25
    g = rng.integers(0, G, n)
    X = pd.DataFrame({"x": rng.normal(size=n)})
    t = rng.integers(5, 15, n)
    p = 1 / (1 + np.exp(-(-0.3 + 0.5 * X["x"] + rng.normal(0, 0.5, G)[g])))
    y = rng.binomial(t, rng.beta(p * 4, (1 - p) * 4))
    binom = _quiet_fit(BinomialGLMM(), X, y, g, trials=t)
    beta = _quiet_fit(BinomialGLMM(family="betabinomial"), X, y, g, trials=t)
    table = anova(binom, beta)
    chisq = table["Chisq"].iloc[1]
    assert chisq == pytest.approx(2 * (beta.loglik_ - binom.loglik_)) and chisq > 100
    assert table["chi-bar mixture"].iloc[1] == "0.5*chi2(0) + 0.5*chi2(1)"


def test_a_profile_that_stays_inside_the_cutoff_to_zero_inflations_bound_ends_at_zero():
    # the zero-inflation probability's logit is bounded at -20 internally, for 0: a
    # profile still inside the cutoff there has lower limit 0, not expit(-20) = 2e-9
    rng = np.random.default_rng(2)
    n_groups, per = 20, 5
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=n_groups * per)
    y = rng.poisson(np.exp(0.2 + 0.4 * x + rng.normal(0, 0.4, n_groups)[g]))
    y = np.where(rng.uniform(size=len(y)) < 0.08, 0, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM(zero_inflation=True).fit(pd.DataFrame({"x": x}), y, groups=g)
        ci = m.confint(method="profile", parm=["zi_prob"])
    assert ci.loc["zi_prob", "lower"] == 0.0
    assert 0.0 < ci.loc["zi_prob", "estimate"] < ci.loc["zi_prob", "upper"] < 1.0


def test_a_zero_inflation_fitted_on_its_bound_has_profile_lower_limit_zero():
    # the estimate itself on the bound (data without zero inflation): the profile's lower
    # limit was the bound as it is, expit(-20) = 2e-9, not the 0 it stands for
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(20), 8)
    x = rng.normal(size=len(g))
    y = rng.poisson(np.exp(0.7 + 0.3 * x + rng.normal(0, 0.5, 20)[g]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM(zero_inflation=True).fit(pd.DataFrame({"x": x}), y, groups=g)
        ci = m.confint(method="profile", parm=["zi_prob"])
    assert ci.loc["zi_prob", "estimate"] < 1e-8  # (on the bound)
    assert ci.loc["zi_prob", "lower"] == 0.0
    assert 0.0 < ci.loc["zi_prob", "upper"] < 0.2


def test_profile_intervals_do_not_give_the_wald_warning():
    # a singular fit's SD has no Wald standard error; the profile's interval for it is
    # finite, and the Wald warning ("... Use method='profile'") is not the profile's
    X, y, g = _small_counts(sd=0.0, seed=3)
    m = _quiet_fit(PoissonGLMM(), X, y, g)
    with pytest.warns(StandardErrorWarning, match="Use method='profile'"):
        assert m.confint().isna().any(axis=None)  # (the Wald interval of the SD: NaN)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StandardErrorWarning)
        ci = m.confint(method="profile")
    assert np.isfinite(ci.to_numpy()).all()


@pytest.mark.slow
def test_anova_parametric_bootstrap_holds_its_level():
    """Random intercept against the GLM at variance 0, 10 groups of 10: the bootstrap
    p-value rejects about 5 % (chi-bar is right asymptotically; with few groups the
    bootstrap's reference distribution is the exact one up to the estimates)."""
    rejects, p_values = 0, []
    for seed in range(80):
        X, y, g = _small_counts(sd=0.0, seed=100 + seed)
        glm = _quiet_fit(PoissonGLMM(), X, y, None)
        ri = _quiet_fit(PoissonGLMM(), X, y, g)
        p = _quiet(anova, glm, ri, n_boot=99, random_state=seed)["Pr(>Chisq) boot"].iloc[1]
        p_values.append(p)
        rejects += p <= 0.05
    # 80 data sets at 5 %: a 99 % binomial band is 0-10 rejections
    assert rejects <= 10
    # and the p-values are spread (not all 1: the statistic's point mass at 0 is half)
    assert np.mean(np.asarray(p_values) < 0.5) > 0.15
