"""Links as objects, and binomial models with probit and cloglog links.

References: ``tests/fixtures/links/links.json``, made by ``make_links.R`` (glmmTMB
1.1.5 and lme4 1.1-31) on ``links.csv`` (``make_links_data.py``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference import REFERENCE_SE_REL

from sklearn_glmm import BinomialGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.links import LINKS, make_link

FIXTURES = Path(__file__).parent / "fixtures" / "links"
REF = json.loads((FIXTURES / "links.json").read_text())
DATA = pd.read_csv(FIXTURES / "links.csv")


@pytest.mark.parametrize("name", sorted(LINKS))
def test_link_round_trip_and_derivative(name):
    link = make_link(name)
    eta = np.linspace(-4, 2.5, 27)
    mu = link.inverse(eta)
    np.testing.assert_allclose(link.link(mu), eta, rtol=1e-9, atol=1e-9)
    h = 1e-6
    num = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.inverse_derivative(eta), num, rtol=1e-6, atol=1e-12)


def test_unknown_link_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown link 'identity'"):
        make_link("identity")
    with pytest.raises(ValueError, match="logit, probit or cloglog"):
        make_family("binomial", link="log")


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
@pytest.mark.parametrize("with_trials", [False, True])
def test_binomial_derivatives_match_finite_differences(link, with_trials):
    fam = make_family("binomial", link=link)
    eta = np.array([-30.0, -6.0, -3.0, -0.5, 0.2, 2.5, 8.0, 25.0])
    if with_trials:
        trials = np.full(len(eta), 6.0)
        y = np.array([0.0, 1, 6, 2, 3, 6, 0, 5])
    else:
        trials = None
        y = np.array([0.0, 1, 0, 1, 1, 0, 1, 1])
    d = fam.derivs(y, eta, trials, None)
    assert np.all(np.isfinite(d.loglik)) and np.all(d.w >= 0)  # log-concave
    # h = 1e-4: truncation error ~1e-9, while rounding at h = 1e-6 already shows in the
    # probit tail (w3 ~ 1e-4 at eta = 25, checked against 50-digit arithmetic)
    h = 1e-4
    dp, dm = fam.derivs(y, eta + h, trials, None), fam.derivs(y, eta - h, trials, None)
    for got, num in (
        (d.d1, (dp.loglik - dm.loglik) / (2 * h)),
        (d.w, -(dp.d1 - dm.d1) / (2 * h)),
        (d.w3, (dp.w - dm.w) / (2 * h)),
    ):
        # atol: at eta = 25 the probit tail's w is resolved to ~1e-11 (log_ndtr of
        # -315), which a difference quotient magnifies to ~1e-7
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_probabilities_sum_to_one_over_the_outcomes(link):
    fam = make_family("binomial", link=link)
    eta = np.linspace(-3, 3, 7)
    trials = np.full(7, 4.0)
    total = sum(np.exp(fam.derivs(np.full(7, k), eta, trials, None).loglik) for k in range(5))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def _fit(link, n_agq):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = BinomialGLMM(link=link, n_agq=n_agq).fit(
            DATA[["week", "drug"]], DATA["y"], groups=DATA["id"]
        )
    return m, [w.category.__name__ for w in caught]


def _check(m, ref, se=True):
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=0.01), ref["call"]
    est = m.fixed_effects_["estimate"]
    ses = m.fixed_effects_["std_error"]
    for name, value in ref["fixef"].items():
        assert est[name] == pytest.approx(value, abs=0.05 * ses[name]), (ref["call"], name)
        if se:
            assert ses[name] == pytest.approx(ref["se"][name], rel=REFERENCE_SE_REL), (
                ref["call"],
                name,
            )
    sd = float(np.sqrt(m.random_effects_cov_["id"].iloc[0, 0]))
    assert sd == pytest.approx(ref["sd"], rel=0.02), ref["call"]


@pytest.mark.parametrize("link", ["probit", "cloglog", "logit"])
def test_laplace_matches_glmmtmb_exact_curvature(link):
    # glmmTMB(y ~ week + drug + (1 | id), d, family = binomial(link = <link>))
    m, caught = _fit(link, 1)
    assert m.converged_ and "ConvergenceWarning" not in caught
    _check(m, REF[link]["glmmTMB"])


@pytest.mark.parametrize("link", ["probit", "cloglog", "logit"])
def test_quadrature_matches_lme4_nagq25(link):
    # glmer(y ~ week + drug + (1 | id), d, family = binomial(link = <link>), nAGQ = 25)
    m, caught = _fit(link, 25)
    assert m.converged_ and "ConvergenceWarning" not in caught
    _check(m, REF[link]["lme4_agq25"])


@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_lme4_fisher_weight_laplace_is_a_different_approximation(link):
    # lme4's Laplace uses Fisher weights for non-canonical links: its log-likelihood
    # is below both the exact-curvature Laplace and the 25-node integral here
    lap, agq = REF[link]["lme4_laplace"], REF[link]["lme4_agq25"]
    assert lap["loglik"] < REF[link]["glmmTMB"]["loglik"] - 1.0
    assert lap["loglik"] < agq["loglik"] - 1.0


def test_link_is_reported_and_grid_searchable():
    m, _ = _fit("probit", 1)
    assert "binomial  ( probit )" in str(m.summary())
    assert m.get_params()["link"] == "probit"
    probs = m.predict_proba(DATA[["week", "drug"]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="link"):
        BinomialGLMM(link="identity").fit(DATA[["week"]], DATA["y"], groups=DATA["id"])


def test_report_and_confint_follow_the_link():
    probit, _ = _fit("probit", 1)
    cloglog, _ = _fit("cloglog", 1)
    assert "HR = " in cloglog.report() and "hazard" in cloglog.report()
    text = probit.report()
    assert "probit scale" in text and "OR = " not in text
    with pytest.raises(ValueError, match="no reading for the probit link"):
        probit.confint(exponentiate=True)
    ci = cloglog.confint(exponentiate=True)
    assert ci.loc["week", "estimate"] == pytest.approx(np.exp(cloglog.coef_[0]))


def test_latent_variance_follows_the_link():
    # insight::get_variance: pi^2 / 3 (logit), 1 (probit), pi^2 / 6 (cloglog)
    from sklearn_glmm.performance import variance_components

    for link, expected in (("logit", np.pi**2 / 3), ("probit", 1.0), ("cloglog", np.pi**2 / 6)):
        m, _ = _fit(link, 1)
        assert variance_components(m).distribution == pytest.approx(expected)


def test_formula_front_end_reads_the_link():
    # glmer(y ~ week + drug + (1 | id), d, family = binomial(link = "probit"))
    from sklearn_glmm.formula import glmer

    m = glmer("y ~ week + drug + (1 | id)", DATA, family="binomial(link = 'probit')")
    assert m.link == "probit"
    assert m.loglik_ == pytest.approx(REF["probit"]["glmmTMB"]["loglik"], abs=0.01)
    with pytest.raises(ValueError, match="not available"):
        glmer("y ~ week + (1 | id)", DATA, family="poisson(link = 'identity')")
