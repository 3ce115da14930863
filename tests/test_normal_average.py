"""Probabilities of outcomes averaged over a normal linear predictor, element by element
(sklearn_glmm._engine.normal_average), against adaptive quadrature from scipy."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import sklearn_glmm._engine.families as F
from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.normal_average import log_mean_density


def _reference(fam, y, eta, sd, trials, extra, likely):
    """log of the integral of p(y | u) N(u; eta, sd^2) du by scipy's adaptive quadrature,
    on a range covering the normal and ``likely`` (where p(y | u) is largest), split at
    the integrand's largest value on a fine grid."""
    lo, hi = min(eta - 14 * sd, likely - 4), max(eta + 14 * sd, likely + 4)

    def log_f(u):
        u = np.atleast_1d(np.asarray(u, dtype=float))
        ll = fam.loglik(np.full(u.shape, y), u, np.full(u.shape, trials), None, extra)
        return ll - 0.5 * ((u - eta) / sd) ** 2

    grid = np.linspace(lo, hi, 20_001)
    values = log_f(grid)
    top, peak = values.max(), grid[values.argmax()]
    val, _ = integrate.quad(
        lambda u: np.exp(log_f(u)[0] - top),
        lo,
        hi,
        points=[peak],
        epsabs=0,
        epsrel=1e-13,
        limit=2000,
    )
    return np.log(val) + top - np.log(sd * np.sqrt(2 * np.pi))


FAMILIES = {
    "poisson": (F.Poisson(), (), 1.0),
    "nb2 theta 0.5": (F.NegativeBinomial2(), (np.log(0.5),), 1.0),
    "binary logit": (F.Binomial(), (), 1.0),
    "binary probit": (F.Binomial(link="probit"), (), 1.0),
    "cloglog, 20 trials": (F.Binomial(link="cloglog"), (), 20.0),
    "500 trials": (F.Binomial(), (), 500.0),
    "hurdle poisson": (F.Hurdle(F.Poisson()), (0.4,), 1.0),
    "zero-inflated nb2": (F.ZeroInflated(F.NegativeBinomial2()), (0.3, -0.5), 1.0),
}


def _check_against_reference(name, etas, sds):
    fam, extra, trials = FAMILIES[name]
    if trials > 1:
        outcomes = [0, 1, trials // 3, trials - 1, trials]
    elif fam.has_trials:
        outcomes = [0, 1]
    else:
        outcomes = [0, 1, 5, 57, 200, 3000]
    cases = [(y, eta, sd) for y in outcomes for eta in etas for sd in sds]
    y, eta, sd = (np.array(c, dtype=float) for c in zip(*cases))
    ours = log_mean_density(fam, y, eta, sd, np.full(len(y), trials), extra)
    for k, (yk, ek, sk) in enumerate(cases):
        if fam.has_trials:
            likely = np.log((yk + 0.3) / (trials - yk + 0.3))
        else:
            likely = np.log(max(yk, 0.3))
        ref = _reference(fam, yk, ek, sk, trials, extra, likely)
        if ref < -600:  # beyond what the reference resolves
            continue
        assert ours[k] == pytest.approx(ref, abs=1e-9, rel=1e-12), (yk, ek, sk)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_agrees_with_adaptive_quadrature(name):
    # counts up to 3000, successes out of 500, a narrow and a wide normal
    _check_against_reference(name, etas=(-3.0, 4.0), sds=(0.3, 6.0))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_agrees_with_adaptive_quadrature_over_a_wide_range(name):
    # SDs from 0.02 to 12 on the link scale
    _check_against_reference(name, etas=(-6.0, 0.0, 4.0), sds=(0.02, 0.3, 1.5, 6.0, 12.0))


def test_elementwise_and_exact_where_the_sd_is_zero():
    fam, extra = F.NegativeBinomial2(), (np.log(2.0),)
    y = np.array([0.0, 3.0, 40.0, 7.0])
    eta = np.array([0.5, 1.0, 3.0, 2.0])
    sd = np.array([0.0, 0.7, 1.2, 0.0])
    both = log_mean_density(fam, y, eta, sd, np.ones(4), extra)
    one_by_one = [
        log_mean_density(fam, y[[k]], eta[[k]], sd[[k]], np.ones(1), extra)[0] for k in range(4)
    ]
    np.testing.assert_allclose(both, one_by_one, rtol=1e-13)
    exact = stats.nbinom.logpmf(y, 2.0, 2.0 / (2.0 + np.exp(eta)))
    np.testing.assert_allclose(both[sd == 0], exact[sd == 0], rtol=1e-12)


def test_impossible_outcome_and_families_without_a_split():
    # a zero-truncated family's zero has probability 0 at every linear predictor
    out = log_mean_density(
        F.Truncated(F.Poisson()), np.array([0.0, 2.0]), np.zeros(2), np.ones(2), np.ones(2), ()
    )
    assert out[0] == -np.inf and np.isfinite(out[1])
    # NB1's density is not log-concave: no adaptive rule (callers use the fixed one)
    assert (
        log_mean_density(
            F.NegativeBinomial1(), np.ones(1), np.zeros(1), np.ones(1), np.ones(1), (0.0,)
        )
        is None
    )


def _new_group_data(seed, n_groups=120, per=6, b0=3.0, sd=1.2):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=len(g))
    mu = np.exp(b0 + 0.3 * x + rng.normal(0, sd, n_groups)[g])
    return pd.DataFrame({"g": g, "x": x}), mu, rng


def test_zero_inflated_class_probabilities_of_a_new_group():
    # pi [k = 0] + (1 - pi) times the NB2 probability averaged over the random effect
    X, mu, rng = _new_group_data(3)
    y = np.where(rng.random(len(mu)) < 0.2, 0, rng.negative_binomial(3.0, 3.0 / (3.0 + mu)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = NegBinGLMM(zero_inflation=True, max_count=150).fit(X[["x"]], y, groups=X["g"])
    P = m.predict_proba(pd.DataFrame({"x": [0.4]}))[0]
    sd = float(np.sqrt(m.random_effects_cov_["g"].iloc[0, 0]))
    eta = m.intercept_ + 0.4 * m.coef_[0]
    theta, pi = m.theta_, m.zero_inflation_
    base = F.NegativeBinomial2()
    for k in (0, 1, 10, 60, 149):
        ref = np.exp(_reference(base, k, eta, sd, 1.0, (np.log(theta),), np.log(max(k, 0.3))))
        ref = (1 - pi) * ref + (pi if k == 0 else 0.0)
        assert P[k] == pytest.approx(ref, rel=1e-8, abs=1e-300)
    assert P.sum() == pytest.approx(1.0, abs=1e-12)


def test_large_counts_of_a_new_group_are_cheap_and_right():
    # each count's probability gets its own rule: a new group's probabilities up to
    # count 3000 (the fixed rule's nodes grew with the square root of the largest count)
    X, mu, rng = _new_group_data(8, b0=6.0, sd=0.9)
    y = rng.poisson(mu)
    m = PoissonGLMM(max_count=3000).fit(X[["x"]], y, groups=X["g"])
    P = m.predict_proba(pd.DataFrame({"x": [0.0, 1.0]}))
    sd = float(np.sqrt(m.random_effects_cov_["g"].iloc[0, 0]))
    for row, x in enumerate([0.0, 1.0]):
        eta = m.intercept_ + x * m.coef_[0]
        for k in (0, 30, 400, 2999):
            ref = np.exp(_reference(F.Poisson(), k, eta, sd, 1.0, (), np.log(max(k, 0.3))))
            assert P[row, k] == pytest.approx(ref, rel=1e-8, abs=1e-300)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)


def test_a_rule_that_does_not_settle_warns(monkeypatch):
    import sklearn_glmm._engine.normal_average as na
    from sklearn_glmm.exceptions import ConvergenceWarning

    monkeypatch.setattr(na, "_MAX_INTERVALS", 16)  # no room to refine
    with pytest.warns(ConvergenceWarning, match="did not settle"):
        na.log_mean_density(F.Poisson(), np.array([3.0]), np.zeros(1), np.ones(1), np.ones(1), ())


def test_far_linear_predictors_settle_without_warnings():
    # P(Y = 0) of a binary outcome at a linear predictor far above 0: 1 - expit(u) is
    # exp(-u) to 1e-22, so its average over N(eta, sd^2) is exp(-eta + sd^2 / 2). The
    # mode search moves about one unit per step there (exp(u) rules the curvature)
    eta = np.array([50.0, 300.0, 50.0, 300.0])
    sd = np.array([0.5, 0.5, 1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = log_mean_density(F.Binomial(), np.zeros(4), eta, sd, np.ones(4), ())
        counts = log_mean_density(
            F.Poisson(), np.arange(4.0), np.full(4, 690.0), np.ones(4), np.ones(4), ()
        )
    np.testing.assert_allclose(out, -eta + sd**2 / 2, rtol=1e-12)
    assert np.all(np.isfinite(counts)) and np.all(counts < -1e5)
