"""Hurdle and zero-truncated count models: the families and glmmTMB references.

References: ``tests/fixtures/hurdle/hurdle.json``, made by ``make_hurdle.R``
(glmmTMB 1.1.5) on glmmTMB's ``Salamanders`` (written to ``salamanders.csv`` by the
same script), on ``hurdle.csv`` (``make_hurdle_data.py``) and, fitted by formula as a
held-out check, on lme4's ``grouseticks`` (``tests/fixtures/grouseticks.csv``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest
from reference import REFERENCE_SE_REL
from scipy import integrate, special, stats

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.families.hurdle import zero_rate_terms
from sklearn_glmm.exceptions import ConvergenceWarning

FIXTURES = Path(__file__).parent / "fixtures" / "hurdle"
REF = json.loads((FIXTURES / "hurdle.json").read_text())
SAL = pd.read_csv(FIXTURES / "salamanders.csv")
SIM = pd.read_csv(FIXTURES / "hurdle.csv")

# (count family, its extra parameters)
BASES = [("poisson", []), ("negbin", [0.3]), ("negbin", [-1.5]), ("negbin1", [0.4])]


def _family(name, kind):
    return make_family(name, **{kind: True})


def _extra(base_extra, kind, logit_pi=0.3):
    return np.array(base_extra + ([logit_pi] if kind == "hurdle" else []), dtype=float)


def _loglik(fam, y, eta, extra):
    return fam.derivs(np.full(len(eta), float(y)), eta, None, None, extra).loglik


# -- the families ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["truncated", "hurdle"])
@pytest.mark.parametrize("name,base_extra", BASES)
def test_density_sums_to_one_with_its_mean_and_variance(name, base_extra, kind):
    fam, extra = _family(name, kind), _extra(base_extra, kind)
    eta = np.array([-9.0, -3.0, -0.5, 0.0, 1.0, 2.5])
    ks = np.arange(0, 3000.0) if kind == "hurdle" else np.arange(1, 3000.0)
    p = np.array([np.exp(_loglik(fam, k, eta, extra)) for k in ks])
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-10)
    mean = ks @ p
    np.testing.assert_allclose(fam.mean(eta, extra), mean, rtol=1e-10)
    var = (ks**2) @ p - mean**2
    np.testing.assert_allclose(fam.variance_eta(eta, None, extra), var, rtol=1e-7)
    # the probabilities asked for directly are the exponentiated log-density
    P = fam.pmf_eta(ks[:40, None], eta[None, :], extra)
    np.testing.assert_allclose(P, p[:40], rtol=1e-12, atol=1e-300)
    F = fam.cdf_eta(ks[:40, None], eta[None, :], None, extra)
    np.testing.assert_allclose(F, np.cumsum(p, axis=0)[:40], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("kind", ["truncated", "hurdle"])
@pytest.mark.parametrize("name,base_extra", BASES + [("negbin", [29.5]), ("negbin1", [-7.0])])
def test_derivatives_match_finite_differences_including_the_tails(name, base_extra, kind):
    fam, extra = _family(name, kind), _extra(base_extra, kind)
    # mu from 1e-5 to 3e3; around the NB2 series switch (mu / theta = 0.01) and
    # the zero rate's (s = 0.5); counts from 1 to 5000
    eta = np.array([-11.5, -6.0, -4.9, -4.3, -3.3, -0.7, -0.69, 0.0, 1.0, 4.0, 8.0])
    y = np.array([1.0, 1, 2, 1, 3, 1, 2, 7, 1, 60, 5000])
    if kind == "hurdle":
        y[2] = 0.0
    d = fam.derivs(y, eta, None, None, extra)
    h = 1e-5
    dp = fam.derivs(y, eta + h, None, None, extra)
    dm = fam.derivs(y, eta - h, None, None, extra)

    def close(analytic, numeric, scale):
        # differences of values of size `scale` carry rounding of 1e-16 scale / h
        err = np.abs(analytic - numeric)
        assert np.all(err <= 2e-6 * np.abs(numeric) + 1e-9 * (1 + scale)), err

    close(d.d1, (dp.loglik - dm.loglik) / (2 * h), np.abs(d.loglik) + np.abs(eta))
    close(d.w, -(dp.d1 - dm.d1) / (2 * h), np.abs(d.d1))
    close(d.w3, (dp.w - dm.w) / (2 * h), np.abs(d.w))


def _mp_truncated_poisson(y, eta):
    """log P(Y = y | Y > 0) of a Poisson and its three eta-derivatives, in 60 digits."""
    mpmath.mp.dps = 60

    def f(e):
        mu = mpmath.exp(e)
        return y * e - mu - mpmath.loggamma(y + 1) - mpmath.log(-mpmath.expm1(-mu))

    e = mpmath.mpf(eta)
    return [float(mpmath.diff(f, e, n)) for n in range(4)]


@pytest.mark.parametrize("eta", [-30.0, -12.0, -2.0, 0.3, 3.0, 40.0])
def test_truncated_poisson_keeps_relative_accuracy_as_mu_goes_to_zero(eta):
    # P(Y = 1 | Y > 0) -> 1 as mu -> 0: the log-density and its derivatives are of
    # the order of mu, and each is computed to its own relative accuracy
    fam = make_family("poisson", truncated=True)
    y = 1.0 if eta < 10 else 5e17
    d = fam.derivs(np.array([y]), np.array([eta]), None, None, np.array([]))
    ref = _mp_truncated_poisson(y, eta)
    # the curvature and its derivative to their relative accuracy; the log-density
    # and its slope to the rounding of their O(1) and O(eta) terms
    np.testing.assert_allclose([-d.w[0], -d.w3[0]], ref[2:], rtol=1e-12)
    np.testing.assert_allclose(d.d1[0], ref[1], rtol=1e-12, atol=4e-16)
    np.testing.assert_allclose(d.loglik[0], ref[0], rtol=1e-12, atol=4e-16 * (1 + abs(eta)))


def test_truncated_nbinom2_keeps_relative_accuracy_for_small_means():
    fam = make_family("negbin", truncated=True)
    log_theta = 0.5
    theta = mpmath.exp(log_theta)
    mpmath.mp.dps = 60

    def f(e):
        mu = mpmath.exp(e)
        p0 = (theta / (theta + mu)) ** theta
        lg = mpmath.loggamma(1 + theta) - mpmath.loggamma(theta)
        return (
            lg
            + theta * mpmath.log(theta / (theta + mu))
            + e
            - mpmath.log(theta + mu)
            - (mpmath.log(1 - p0))
        )

    for eta in (-25.0, -9.0, -4.0, 1.0):
        d = fam.derivs(np.ones(1), np.array([eta]), None, None, np.array([log_theta]))
        ref = [float(mpmath.diff(f, mpmath.mpf(eta), n)) for n in range(4)]
        np.testing.assert_allclose([-d.w[0], -d.w3[0]], ref[2:], rtol=1e-10)
        np.testing.assert_allclose(d.d1[0], ref[1], rtol=1e-10, atol=4e-16)
        np.testing.assert_allclose(d.loglik[0], ref[0], rtol=1e-10, atol=1e-15 * (1 + abs(eta)))


def test_zero_rate_series_and_closed_form_agree_at_the_switch():
    s = np.array([0.5 - 1e-12, 0.5 + 1e-12, 0.01, 3.0])
    R, h1, h2, h3 = zero_rate_terms(s, np.log(s))
    np.testing.assert_allclose(R[0], R[1], rtol=1e-11)
    for h in (h1, h2, h3):
        np.testing.assert_allclose(h[0], h[1], rtol=1e-9)
    # R(s) = -log((1 - e^-s) / s)
    np.testing.assert_allclose(R, -np.log(-np.expm1(-s) / s), rtol=1e-12)


def test_zero_rate_terms_row_by_row_in_any_shape():
    """Each side of the switch is computed on its own rows: every element is what it is
    alone, for (nodes, rows) arrays, all on one side, and a scalar."""
    rng = np.random.default_rng(5)
    for s in (
        10 ** rng.uniform(-3, 1.5, (3, 40)),
        10 ** rng.uniform(-3, -0.4, 30),
        10 ** rng.uniform(-0.2, 1.5, 30),
        np.array(0.2),
    ):
        got = zero_rate_terms(s, np.log(s))
        for idx in np.ndindex(s.shape):
            alone = zero_rate_terms(np.array([s[idx]]), np.log(np.array([s[idx]])))
            assert [g[idx] for g in got] == [a[0] for a in alone]
        np.testing.assert_allclose(got[0], -np.log(-np.expm1(-s) / s), rtol=1e-12)


def test_hurdle_is_its_zero_part_times_the_truncated_count():
    for name, base_extra in BASES:
        trunc = _family(name, "truncated")
        hurdle = _family(name, "hurdle")
        eta = np.linspace(-3, 3, 7)
        y = np.array([0.0, 1, 2, 0, 5, 3, 0])
        pos = y > 0
        logit_pi = -0.4
        h = hurdle.derivs(y, eta, None, None, np.array(base_extra + [logit_pi]))
        t = trunc.derivs(y, eta, None, None, np.array(base_extra))
        log_pi = np.log(special.expit(logit_pi))
        np.testing.assert_allclose(h.loglik[~pos], log_pi)
        np.testing.assert_allclose(h.loglik[pos], np.log1p(-np.exp(log_pi)) + t.loglik[pos])
        for a, b in ((h.d1, t.d1), (h.w, t.w), (h.w3, t.w3)):
            np.testing.assert_allclose(a[pos], b[pos])
            assert np.all(a[~pos] == 0.0)


def test_the_mean_based_methods_invert_the_mean():
    fam = make_family("negbin", hurdle=True)
    extra = np.array([0.2, -0.3])
    eta = np.array([-2.0, 0.0, 1.5])
    mu = fam.mean(eta, extra)
    np.testing.assert_allclose(
        fam.pmf(np.arange(6)[:, None], mu, extra),
        fam.pmf_eta(np.arange(6)[:, None], eta, extra),
        rtol=1e-8,
    )
    np.testing.assert_allclose(fam.variance(mu, None, extra), fam.variance_eta(eta, None, extra))


@pytest.mark.parametrize("kind", ["truncated", "hurdle"])
def test_draws_follow_the_distribution(kind):
    fam = make_family("negbin", **{kind: True})
    extra = _extra([0.1], kind, logit_pi=-0.5)
    rng = np.random.default_rng(3)
    eta = np.array([-8.0, -1.0, 1.5])
    draws = fam.sample_eta(np.repeat(eta[None, :], 40000, axis=0), None, extra, rng)
    for j in range(len(eta)):
        counts = np.bincount(draws[:, j].astype(int), minlength=6)[:6] / len(draws)
        expected = fam.pmf_eta(np.arange(6), np.full(6, eta[j]), extra)
        np.testing.assert_allclose(counts, expected, atol=0.01)
    if kind == "truncated":
        assert draws.min() >= 1


# -- estimators and glmmTMB references ---------------------------------------------


def _fit(cls, data, y, columns, groups, terms=None, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = cls(random_effects=terms, **kw).fit(data[columns], data[y], groups=data[groups])
    return m, [w.category for w in caught]


def _check(m, ref, sd_abs=None):
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=0.01), ref["call"]
    assert m.n_params_ == ref["df"]
    fe = m.fixed_effects_
    # an SD near zero (sd_abs): the optimum is flat along it and the estimates move with
    # it (hurdle_nbinom1: glmmTMB's log-likelihood 7e-7 above ours at an SD of 0.0086
    # against our 0.0100, the intercept's SE, 4.6, 5.9e-3 apart)
    se_rel = REFERENCE_SE_REL if sd_abs is None else 0.01
    for name, value in ref["fixef"].items():
        assert fe.loc[name, "estimate"] == pytest.approx(value, abs=0.05 * ref["se"][name])
        assert fe.loc[name, "std_error"] == pytest.approx(ref["se"][name], rel=se_rel)
    cov = m.random_effects_cov_[m.fit_result_.factor_order[0]].to_numpy()
    sd = np.sqrt(np.diag(cov))
    for k, value in enumerate(ref["sd"].values()):
        if sd_abs is None:
            assert sd[k] == pytest.approx(value, rel=0.02)
        else:  # an SD near zero: its optimum is flat
            assert sd[k] == pytest.approx(value, abs=sd_abs)
    if "corr" in ref:
        assert cov[0, 1] / (sd[0] * sd[1]) == pytest.approx(ref["corr"], abs=0.02)
    if "sigma" in ref:
        value = m.theta_ if m.family == "nbinom2" else m.phi_
        assert value == pytest.approx(ref["sigma"], rel=0.02)
    if "zi_logit" in ref:
        assert special.logit(m.zero_prob_) == pytest.approx(ref["zi_logit"], abs=1e-4)
        assert m.fit_result_.block_se["logit_zero"] == pytest.approx(ref["zi_se_logit"], rel=0.02)


SAL_X = ["minedno", "DOY"]


@pytest.mark.parametrize(
    "key,cls,kw,sd_abs",
    [
        # glmmTMB(count ~ minedno + DOY + (1 | site), data = s,
        #         family = truncated_poisson, ziformula = ~1)
        ("hurdle_poisson", PoissonGLMM, {}, None),
        # ... family = truncated_nbinom2, ziformula = ~1
        ("hurdle_nbinom2", NegBinGLMM, {}, None),
        # ... family = truncated_nbinom1, ziformula = ~1 (site SD 0.009: a flat optimum)
        ("hurdle_nbinom1", NegBinGLMM, {"family": "nbinom1"}, 0.01),
    ],
)
def test_salamanders_hurdles_match_glmmtmb(key, cls, kw, sd_abs):
    ref = REF[key]
    m, caught = _fit(cls, SAL, "count", SAL_X, "site", hurdle=True, **kw)
    assert m.converged_ and ConvergenceWarning not in caught
    _check(m, ref, sd_abs)
    # predict(m, type = "response"): (1 - pi) mu / (1 - f(0 | mu)), conditional on the modes
    pred = m.predict(SAL[SAL_X].iloc[:8], SAL["site"].iloc[:8])
    np.testing.assert_allclose(pred, ref["response"], rtol=2e-3)


@pytest.mark.parametrize(
    "key,cls", [("truncated_poisson", PoissonGLMM), ("truncated_nbinom2", NegBinGLMM)]
)
def test_salamanders_truncated_counts_match_glmmtmb(key, cls):
    # glmmTMB(count ~ minedno + DOY + (1 | site), data = s[s$count > 0, ],
    #         family = truncated_poisson)  (and truncated_nbinom2)
    pos = SAL[SAL["count"] > 0].reset_index(drop=True)
    m, caught = _fit(cls, pos, "count", SAL_X, "site", truncated=True)
    assert m.converged_ and ConvergenceWarning not in caught
    _check(m, REF[key])
    pred = m.predict(pos[SAL_X].iloc[:8], pos["site"].iloc[:8])
    np.testing.assert_allclose(pred, REF[key]["response"], rtol=2e-3)


def test_hurdle_nbinom2_with_a_random_slope_matches_glmmtmb():
    # glmmTMB(y ~ x + (1 + x | id), data = h, family = truncated_nbinom2, ziformula = ~1)
    ref = REF["hurdle_nbinom2_slope"]
    m, caught = _fit(NegBinGLMM, SIM, "y", ["x"], "id", terms="1 + x", hurdle=True)
    assert m.converged_ and ConvergenceWarning not in caught
    _check(m, ref)
    np.testing.assert_allclose(m.predict(SIM[["x"]].iloc[:8], SIM["id"].iloc[:8]),
                               ref["response"], rtol=2e-3)  # fmt: skip


def test_hurdle_nbinom1_matches_glmmtmb():
    # glmmTMB(y ~ x + (1 | id), data = h, family = truncated_nbinom1, ziformula = ~1)
    m, caught = _fit(NegBinGLMM, SIM, "y", ["x"], "id", hurdle=True, family="nbinom1")
    assert m.converged_ and ConvergenceWarning not in caught
    _check(m, REF["hurdle_nbinom1_sim"])


def test_hurdle_fit_is_the_truncated_fit_plus_the_share_of_zeros():
    # the two parts factorise: the count part is the zero-truncated model of the
    # positive counts, and P(Y = 0) the share of zeros
    hurdle, _ = _fit(NegBinGLMM, SIM, "y", ["x"], "id", hurdle=True)
    pos = SIM[SIM["y"] > 0].reset_index(drop=True)
    trunc, _ = _fit(NegBinGLMM, pos, "y", ["x"], "id", truncated=True)
    share = float(np.mean(SIM["y"] == 0))
    assert hurdle.zero_prob_ == pytest.approx(share, rel=1e-6)
    binary = stats.binom.logpmf(int((SIM["y"] == 0).sum()), len(SIM), share)
    binary -= np.log(special.comb(len(SIM), int((SIM["y"] == 0).sum())))
    assert hurdle.loglik_ == pytest.approx(trunc.loglik_ + binary, abs=1e-6)
    np.testing.assert_allclose(hurdle.coef_, trunc.coef_, rtol=1e-4)
    assert hurdle.theta_ == pytest.approx(trunc.theta_, rel=1e-4)


# -- predictions, simulation, diagnostics ----------------------------------------------


@pytest.fixture(scope="module")
def hurdle_nb():
    m, _ = _fit(NegBinGLMM, SAL, "count", SAL_X, "site", hurdle=True)
    return m


def test_predict_proba_is_the_hurdle_distribution(hurdle_nb):
    X, g = SAL[SAL_X].iloc[:20], SAL["site"].iloc[:20]
    P = hurdle_nb.predict_proba(X, g, max_count=400)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_allclose(P[:, 0], hurdle_nb.zero_prob_)
    np.testing.assert_allclose(P[:, :400] @ np.arange(400), hurdle_nb.predict(X, g), rtol=1e-6)
    # a new site: the distribution averaged over the random effect, its mean the mean
    Pm = hurdle_nb.predict_proba(X, max_count=400)
    np.testing.assert_allclose(Pm[:, :400] @ np.arange(400), hurdle_nb.predict(X), rtol=1e-6)


def test_simulations_have_the_fitted_means_and_zeros(hurdle_nb):
    sims = hurdle_nb.simulate(400, random_state=0, new_random_effects=False)
    assert np.mean(sims == 0) == pytest.approx(hurdle_nb.zero_prob_, abs=0.01)
    np.testing.assert_allclose(sims.mean(), hurdle_nb.fitted().mean(), rtol=0.03)
    res = hurdle_nb.scaled_residuals(n_sim=100, random_state=0)
    assert res.test_uniformity()["p_value"] > 0.01


def test_residuals_and_zero_check_use_the_hurdle_distribution(hurdle_nb):
    from sklearn_glmm.performance import check_zeroinflation

    fam, eta, extra = (
        hurdle_nb.fit_result_.family,
        hurdle_nb.fit_result_.train["eta"],
        hurdle_nb.fit_result_.extra,
    )
    pearson = hurdle_nb.residuals("pearson")
    y = hurdle_nb.fit_result_.train["y"]
    expected = (y - fam.mean(eta, extra)) / np.sqrt(fam.variance_eta(eta, None, extra))
    np.testing.assert_allclose(pearson, expected)
    table = check_zeroinflation(hurdle_nb)
    assert int(table["predicted_zeros"].iloc[0]) == round(hurdle_nb.zero_prob_ * len(SAL))


def test_rootogram_expects_the_hurdle_counts(hurdle_nb):
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_glmm.plotting import plot_rootogram

    ax = plot_rootogram(hurdle_nb, max_count=10)
    top = ax.lines[0].get_ydata()
    assert top[0] ** 2 == pytest.approx(hurdle_nb.zero_prob_ * len(SAL), rel=1e-6)


def test_summary_anova_and_intervals(hurdle_nb):
    from sklearn_glmm.inference import anova

    text = str(hurdle_nb.summary())
    assert "Family: truncated_nbinom2  ( log )" in text
    assert "Zero inflation: ~1" in text
    assert "Zero-inflation model (hurdle: P(Y = 0), logit scale):" in text
    pois, _ = _fit(PoissonGLMM, SAL, "count", SAL_X, "site", hurdle=True)
    table = anova(pois, hurdle_nb)  # the Poisson hurdle is NB2's at theta = infinity
    assert table["Df"].iloc[1] == 1
    ci = hurdle_nb.confint(parm=["zero_prob", "nb_theta"])
    assert ci.loc["zero_prob", "lower"] < hurdle_nb.zero_prob_ < ci.loc["zero_prob", "upper"]
    prof = hurdle_nb.confint(parm=["zero_prob"], method="profile")
    ref = special.expit(REF["hurdle_nbinom2"]["zi_logit"] + np.array([-1, 1]) * 1.96 * 0.0805)
    np.testing.assert_allclose(prof.loc["zero_prob", ["lower", "upper"]], ref, atol=0.003)


def test_latent_variance_is_refused(hurdle_nb):
    from sklearn_glmm.performance import icc

    with pytest.raises(ValueError, match="latent-scale variance"):
        icc(hurdle_nb)


def test_grid_search_over_the_hurdle():
    from sklearn.model_selection import GridSearchCV, GroupKFold

    search = GridSearchCV(PoissonGLMM(), {"hurdle": [False, True]}, cv=GroupKFold(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(SAL[SAL_X], SAL["count"], groups=SAL["site"])
    assert set(search.cv_results_["param_hurdle"]) == {False, True}
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


# -- bad input -----------------------------------------------------------------------------


def test_zero_truncated_model_refuses_zeros():
    with pytest.raises(ValueError, match=r"387 zero\(s\).*hurdle=True"):
        PoissonGLMM(truncated=True).fit(SAL[SAL_X], SAL["count"], groups=SAL["site"])


def test_hurdle_needs_positive_counts_and_settles_at_zero_without_zeros():
    from sklearn_glmm.exceptions import ZeroInflationWarning

    pos = SAL[SAL["count"] > 0]
    m, caught = _fit(PoissonGLMM, pos, "count", SAL_X, "site", hurdle=True)
    assert ZeroInflationWarning in caught and ConvergenceWarning not in caught
    assert m.zero_prob_ == 0.0 and m.zero_prob_at_boundary_ and m.converged_
    trunc, _ = _fit(PoissonGLMM, pos, "count", SAL_X, "site", truncated=True)
    assert m.loglik_ == pytest.approx(trunc.loglik_, abs=1e-5)
    np.testing.assert_allclose(m.coef_, trunc.coef_, rtol=1e-4)
    with pytest.raises(ValueError, match="only zeros"):
        PoissonGLMM(hurdle=True).fit(SAL[SAL_X], 0 * SAL["count"], groups=SAL["site"])


@pytest.mark.parametrize(
    "kw", [{"hurdle": True, "zero_inflation": True}, {"hurdle": True, "truncated": True}]
)
def test_zero_models_are_exclusive(kw):
    with pytest.raises(ValueError, match="different models of the zeros"):
        NegBinGLMM(**kw).fit(SAL[SAL_X], SAL["count"], groups=SAL["site"])


# -- formula front end ------------------------------------------------------------------


def test_formula_front_end_reads_the_truncated_families():
    from sklearn_glmm.formula import glmmTMB

    # glmmTMB(count ~ minedno + DOY + (1 | site), data = s, family = truncated_nbinom1,
    #         ziformula = ~1)
    m = glmmTMB("count ~ minedno + DOY + (1 | site)", SAL, family="truncated_nbinom1",
                ziformula="~1")  # fmt: skip
    assert m.hurdle and m.family == "nbinom1" and not m.zero_inflation
    assert m.loglik_ == pytest.approx(REF["hurdle_nbinom1"]["loglik"], abs=0.01)
    np.testing.assert_allclose(m.predict(SAL.head(8)), REF["hurdle_nbinom1"]["response"], rtol=2e-3)
    pos = SAL[SAL["count"] > 0]
    m = glmmTMB("count ~ minedno + DOY + (1 | site)", pos, family="truncated_poisson")
    assert m.truncated and not m.hurdle
    assert m.loglik_ == pytest.approx(REF["truncated_poisson"]["loglik"], abs=0.01)
    with pytest.raises(ValueError, match="zero-truncated"):
        glmmTMB("count ~ minedno + (1 | site)", SAL, family="truncated_nbinom2")


@pytest.mark.parametrize("kind", ["truncated", "hurdle"])
@pytest.mark.parametrize("name,base_extra", BASES)
def test_extra_derivatives_match_finite_differences(name, base_extra, kind):
    fam, extra = _family(name, kind), _extra(base_extra, kind)
    eta = np.array([-6.0, -1.0, 0.0, 1.0, 3.0])
    y = np.array([1.0, 0.0 if kind == "hurdle" else 1.0, 2.0, 5.0, 30.0])
    w = np.array([1.0, 2.0, 0.5, 1.0, 1.0])
    dl, dd1, dw = fam.extra_derivs(y, eta, None, w, extra)
    assert dl.shape == (len(extra), len(eta))
    h = 1e-6
    for k in range(len(extra)):
        step = np.zeros(len(extra))
        step[k] = h
        dp = fam.derivs(y, eta, None, w, extra + step)
        dm = fam.derivs(y, eta, None, w, extra - step)
        np.testing.assert_allclose(dl[k], (dp.loglik - dm.loglik) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dd1[k], (dp.d1 - dm.d1) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dw[k], (dp.w - dm.w) / (2 * h), rtol=1e-6, atol=1e-8)


def _brute_force_hurdle(y, eta_fixed, codes, sigma, pi, logpmf):
    """Marginal log-likelihood of a hurdle model with a random intercept: scipy's count
    pmf ``logpmf(y, mu)``, truncated by hand, integrated over a fine grid of b (trapezoid)."""
    b = np.linspace(-12 * sigma, 12 * sigma, 6001)
    log_phi = stats.norm.logpdf(b, scale=sigma)
    total = 0.0
    for g in np.unique(codes):
        rows = codes == g
        mu = np.exp(eta_fixed[rows][:, None] + b[None, :])
        yy = y[rows][:, None]
        log_p0 = logpmf(np.zeros_like(yy), mu)
        pos = logpmf(yy, mu) - np.log(-np.expm1(log_p0)) + np.log1p(-pi)
        ll = np.where(yy == 0, np.log(pi), pos).sum(axis=0) + log_phi
        top = ll.max()
        total += top + np.log(integrate.trapezoid(np.exp(ll - top), b))
    return total


# the NB1 integrand (not log-concave) needs more nodes: 15 give 7e-5, 25 give 8e-7
@pytest.mark.parametrize("family,n_agq", [("poisson", 15), ("nbinom1", 40)])
def test_quadrature_matches_the_brute_force_integral(family, n_agq):
    if family == "poisson":
        cls, kw, data, x, g, y = PoissonGLMM, {}, SAL, SAL_X, "site", "count"
    else:
        cls, kw, data, x, g, y = NegBinGLMM, {"family": "nbinom1"}, SIM, ["x"], "id", "y"
    m, caught = _fit(cls, data, y, x, g, hurdle=True, n_agq=n_agq, **kw)
    assert m.converged_ and ConvergenceWarning not in caught
    sigma = float(np.sqrt(m.random_effects_cov_[g].iloc[0, 0]))
    eta = data[x].to_numpy() @ m.coef_ + m.intercept_
    codes = pd.factorize(data[g])[0]
    if family == "poisson":

        def logpmf(k, mu):
            return stats.poisson.logpmf(k, mu)

    else:
        phi = m.phi_

        def logpmf(k, mu):
            return stats.nbinom.logpmf(k, mu / phi, 1 / (1 + phi))

    truth = _brute_force_hurdle(data[y].to_numpy(float), eta, codes, sigma, m.zero_prob_, logpmf)
    assert m.loglik_ == pytest.approx(truth, abs=1e-6)
    laplace, _ = _fit(cls, data, y, x, g, hurdle=True, **kw)
    assert laplace.loglik_ == pytest.approx(m.loglik_, abs=1.0)
    assert laplace.loglik_ <= m.loglik_ + 1.0


def test_zero_rows_of_weight_zero_leave_a_truncated_fit_unchanged():
    pos = SAL[SAL["count"] > 0]
    m1, _ = _fit(PoissonGLMM, pos, "count", SAL_X, "site", truncated=True)
    w = (SAL["count"] > 0).to_numpy(float)
    m2 = PoissonGLMM(truncated=True).fit(
        SAL[SAL_X], SAL["count"], groups=SAL["site"], sample_weight=w
    )
    assert m2.loglik_ == pytest.approx(m1.loglik_, abs=1e-8)
    np.testing.assert_allclose(m2.coef_, m1.coef_, rtol=1e-4)  # to the optimiser's tolerance


def test_held_out_log_likelihood_is_the_model_probability(hurdle_nb):
    from sklearn_glmm.model_selection import pointwise_log_likelihood

    X, y, g = SAL[SAL_X].head(30), SAL["count"].head(30), SAL["site"].head(30)
    ll = pointwise_log_likelihood(hurdle_nb, X, y, groups=g)
    eta = hurdle_nb.fit_result_.train["eta"][:30]
    expected = np.log(
        hurdle_nb.fit_result_.family.pmf_eta(y.to_numpy(float), eta, hurdle_nb.fit_result_.extra)
    )
    np.testing.assert_allclose(ll, expected, rtol=1e-10)
    # a zero is impossible under a zero-truncated model
    pos = SAL[SAL["count"] > 0]
    trunc, _ = _fit(PoissonGLMM, pos, "count", SAL_X, "site", truncated=True)
    ll = pointwise_log_likelihood(trunc, X, y, groups=g)
    assert np.all(np.isneginf(ll[y.to_numpy() == 0])) and np.all(np.isfinite(ll[y > 0]))


def test_aic_table_across_zero_models_and_anova_refuses_non_nested(hurdle_nb):
    from sklearn_glmm.inference import anova, compare_models

    zinb, _ = _fit(NegBinGLMM, SAL, "count", SAL_X, "site", zero_inflation=True)
    nb, _ = _fit(NegBinGLMM, SAL, "count", SAL_X, "site")
    table = compare_models(nb, zinb, hurdle_nb, names=["nb", "zinb", "hurdle"])
    assert table.loc["hurdle", "AIC"] == pytest.approx(-2 * hurdle_nb.loglik_ + 2 * 6)
    assert table.loc["hurdle", "AIC"] == pytest.approx(2 * 6 - 2 * REF["hurdle_nbinom2"]["loglik"],
                                                       abs=0.02)  # fmt: skip
    # a hurdle is not a special case of a zero-inflated model, nor the reverse
    with pytest.raises(ValueError, match="not a special case"):
        anova(zinb, hurdle_nb)


def test_estimator_clones_and_pickles(hurdle_nb):
    import pickle

    from sklearn.base import clone

    assert clone(hurdle_nb).get_params()["hurdle"] is True
    again = pickle.loads(pickle.dumps(hurdle_nb))
    X, g = SAL[SAL_X].head(5), SAL["site"].head(5)
    np.testing.assert_allclose(again.predict(X, g), hurdle_nb.predict(X, g))


GROUSE = pd.read_csv(Path(__file__).parent / "fixtures" / "grouseticks.csv")


@pytest.mark.parametrize(
    "key,formula,family",
    [
        # glmmTMB(TICKS ~ YEAR96 + YEAR97 + HEIGHT_s + (1 | LOCATION), data = g,
        #         family = truncated_nbinom2, ziformula = ~1)
        (
            "grouseticks_hurdle_nbinom2",
            "TICKS ~ YEAR96 + YEAR97 + HEIGHT_s + (1 | LOCATION)",
            "truncated_nbinom2",
        ),
        # ... + (1 | BROOD) + (1 | LOCATION), family = truncated_poisson, ziformula = ~1
        (
            "grouseticks_hurdle_poisson_crossed",
            "TICKS ~ YEAR96 + YEAR97 + HEIGHT_s + (1 | BROOD) + (1 | LOCATION)",
            "truncated_poisson",
        ),
    ],
)
def test_grouseticks_hurdles_by_formula_match_glmmtmb(key, formula, family):
    from sklearn_glmm.formula import glmmTMB

    ref = REF[key]
    data = GROUSE.astype({"BROOD": str, "LOCATION": str})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmmTMB(formula, data, family=family, ziformula="~1")
    assert m.converged_ and ConvergenceWarning not in [w.category for w in caught]
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=0.01)
    fe = m.fixed_effects_
    for name, value in ref["fixef"].items():
        assert fe.loc[name, "estimate"] == pytest.approx(value, abs=0.05 * ref["se"][name])
        assert fe.loc[name, "std_error"] == pytest.approx(ref["se"][name], rel=REFERENCE_SE_REL)
    for factor, sd in ref["sds"].items():
        got = float(np.sqrt(m.random_effects_cov_[factor].iloc[0, 0]))
        assert got == pytest.approx(sd, rel=0.02)
    assert special.logit(m.zero_prob_) == pytest.approx(ref["zi_logit"], abs=1e-4)
    np.testing.assert_allclose(m.predict(data.head(8)), ref["response"], rtol=2e-3)


def test_simulated_hurdle_recovers_its_parameters():
    # constructed solution: draws from the family itself, refitted
    rng = np.random.default_rng(8)
    G, T = 150, 12
    g = np.repeat(np.arange(G), T)
    x = rng.normal(size=G * T)
    eta = 0.4 + 0.5 * x + rng.normal(0, 0.6, G)[g]
    fam = make_family("negbin", hurdle=True)
    truth = np.array([np.log(2.0), special.logit(0.3)])
    y = fam.sample_eta(eta, None, truth, rng)
    m, caught = _fit(NegBinGLMM, pd.DataFrame({"x": x, "y": y, "g": g}), "y", ["x"], "g",
                     hurdle=True)  # fmt: skip
    assert m.converged_ and ConvergenceWarning not in caught
    fe = m.fixed_effects_
    for name, value in (("(Intercept)", 0.4), ("x", 0.5)):
        assert abs(fe.loc[name, "estimate"] - value) < 3.5 * fe.loc[name, "std_error"]
    ci = m.confint(parm=["nb_theta", "zero_prob", "sd_(Intercept)|g"], level=0.999)
    for name, value in (("nb_theta", 2.0), ("zero_prob", 0.3), ("sd_(Intercept)|g", 0.6)):
        assert ci.loc[name, "lower"] < value < ci.loc[name, "upper"], name


def test_nbinom1_quadrature_runs_on_its_own():
    # NB1's log-gamma ratio broadcasts over quadrature nodes x rows
    data = pd.read_csv(Path(__file__).parent / "fixtures" / "nb1" / "nb1.csv")
    lap, _ = _fit(NegBinGLMM, data, "y", ["x"], "id", family="nbinom1")
    agq, caught = _fit(NegBinGLMM, data, "y", ["x"], "id", family="nbinom1", n_agq=9)
    assert agq.converged_ and ConvergenceWarning not in caught
    assert agq.loglik_ == pytest.approx(lap.loglik_, abs=1.0)


@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.NoRandomEffectsWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("estimator", [PoissonGLMM(hurdle=True), NegBinGLMM(hurdle=True)])
def test_hurdle_estimators_keep_the_scikit_learn_contract(estimator):
    # the checks' outcomes have no zeros: the probability of a zero settles at 0
    from sklearn.utils.estimator_checks import check_estimator
    from test_estimator_checks import expected_failed_checks

    results = check_estimator(
        estimator, expected_failed_checks=expected_failed_checks(estimator), on_fail=None
    )
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed


@pytest.mark.parametrize("kind", ["hurdle", "truncated"])
def test_a_dispersion_model_fits_for_hurdle_and_truncated_models(kind):
    # glmmTMB's dispformula = ~ x with truncated_nbinom2 (references against glmmTMB:
    # tests/test_hurdle_predictors.py)
    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame({"x": rng.normal(size=n)})
    y = rng.poisson(2.0, n) + (1 if kind == "truncated" else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = NegBinGLMM(dispersion="1 + x", **{kind: True}).fit(X, y, groups=rng.integers(0, 10, n))
    assert list(m.dispersion_effects_.index) == ["(Intercept)", "x"]
    assert np.isfinite(m.loglik_)


def test_the_hurdle_zero_part_has_its_coefficient_table():
    # glmmTMB's fixef(m)$zi of a hurdle model: logit P(Y = 0)
    rng = np.random.default_rng(1)
    n = 300
    X = pd.DataFrame({"x": rng.normal(size=n)})
    y = rng.poisson(2.0, n) * (rng.uniform(size=n) > 0.3)
    m = PoissonGLMM(hurdle=True).fit(X, y, groups=rng.integers(0, 15, n))
    table = m.zero_inflation_effects_
    assert list(table.index) == ["(Intercept)"]
    assert table["estimate"].iloc[0] == pytest.approx(special.logit(m.zero_prob_), abs=1e-10)
    assert table["std_error"].iloc[0] > 0


def test_a_zero_probability_a_later_stage_left_drifting_settles_on_its_bound():
    # hurdle NB1 on counts without a zero: the fit's end came from a stage of the checks
    # at the optimum (the nested model from the start, then the full one from there),
    # which left logit pi at -16.9 on its flat ridge (zero_prob_ 5e-8, not a boundary
    # estimate); the fit's own stages settle such a parameter on its bound
    from fuzz_hurdle_cases import make_hurdle_case

    case = make_hurdle_case(172)
    assert not np.any(case["y"] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = case["estimator"](**case["params"]).fit(
            case["X"], case["y"], groups=case["groups"], **case["fit_params"]
        )
    assert m.zero_prob_at_boundary_ and m.zero_prob_ == 0.0
    assert m.converged_
