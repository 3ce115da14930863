"""Beta-binomial mixed models: the family and a glmmTMB reference.

Reference: ``tests/fixtures/betabinomial/betabinomial.json``, made by
``make_betabinomial.R`` (glmmTMB 1.1.5) on ``betabinomial.csv``
(``make_betabinomial_data.py``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference import REFERENCE_SE_REL
from scipy import special, stats

from sklearn_glmm import BinomialGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm.exceptions import ConvergenceWarning, OverdispersionWarning

FIXTURES = Path(__file__).parent / "fixtures" / "betabinomial"
REF = json.loads((FIXTURES / "betabinomial.json").read_text())
DATA = pd.read_csv(FIXTURES / "betabinomial.csv")


def test_log_density_is_the_betabinomial_pmf_and_sums_to_one():
    fam = make_family("betabinomial")
    eta = np.array([-2.0, -0.3, 0.0, 1.0, 4.0])
    extra = np.array([1.3])
    phi, mu = np.exp(1.3), special.expit(eta)
    t = np.full(5, 12.0)
    total = 0.0
    for k in range(13):
        y = np.full(5, float(k))
        p = np.exp(fam.derivs(y, eta, t, None, extra).loglik)
        np.testing.assert_allclose(
            p, stats.betabinom.pmf(k, 12, mu * phi, (1 - mu) * phi), rtol=1e-10
        )
        total = total + p
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


@pytest.mark.parametrize("log_phi", [2.0, 9.0, 15.0, 19.9])
def test_log_density_is_exact_up_to_the_binomial_limit(log_phi):
    # against 50-digit log-gamma functions: the difference of two betaln lost 1e-6 per
    # row near phi = e^20 (the bound, which is the binomial limit itself)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    fam = make_family("betabinomial")
    rng = np.random.default_rng(3)
    t = rng.integers(1, 30, 60).astype(float)
    eta = rng.normal(0.3, 1.2, 60)
    y = np.array([rng.integers(0, k + 1) for k in t.astype(int)], dtype=float)
    ll = fam.derivs(y, eta, t, None, np.array([log_phi])).loglik
    phi = mpmath.e ** mpmath.mpf(log_phi)
    L = mpmath.loggamma
    for i in range(len(y)):
        mu = 1 / (1 + mpmath.e ** -mpmath.mpf(eta[i]))
        a, b, yi, fi = mu * phi, (1 - mu) * phi, int(y[i]), int(t[i] - y[i])
        exact = (
            L(yi + fi + 1)
            - L(yi + 1)
            - L(fi + 1)
            + L(yi + a)
            + L(fi + b)
            - L(yi + fi + phi)
            - L(a)
            - L(b)
            + L(phi)
        )
        assert ll[i] == pytest.approx(float(exact), abs=1e-10)  # (betaln: 2e-11 at e^9)
    if log_phi == 19.9:  # within O(t^2 / phi) of the binomial limit, row by row
        binom = stats.binom.logpmf(y, t, special.expit(eta))
        np.testing.assert_allclose(ll, binom, atol=1e-6)


def test_the_bound_is_the_binomial_limit():
    # log phi on its upper bound is phi = infinity: the binomial log-density and
    # derivatives exactly, and no dependence on phi (with a million trials phi = e^20
    # still inflates the variance by 2e-3)
    fam, binom = make_family("betabinomial"), make_family("binomial")
    rng = np.random.default_rng(4)
    t = np.full(40, 1e6)
    eta = rng.normal(0.3, 0.5, 40)
    y = rng.binomial(t.astype(np.int64), special.expit(eta)).astype(float)
    const = fam.constant(y, t)
    for log_phi in (20.0, np.full(40, 20.0)):
        got = fam.derivs(y, eta, t, None, (log_phi,), const)
        want = binom.derivs(y, eta, t, None, (), const)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        assert not np.any(fam.extra_derivs(y, eta, t, None, (log_phi,), const)[0])
    mixed = np.where(np.arange(40) < 20, 20.0, 3.0)  # a dispersion model: row by row
    got = fam.derivs(y, eta, t, None, (mixed,), const).loglik
    np.testing.assert_array_equal(got[:20], binom.derivs(y, eta, t, None, (), const).loglik[:20])
    below = fam.derivs(y, eta, t, None, (np.array(3.0),), const).loglik
    np.testing.assert_allclose(got[20:], below[20:], rtol=1e-13)
    mu = special.expit(eta)
    np.testing.assert_allclose(fam.variance(mu, t, (20.0,)), t * mu * (1 - mu))
    np.testing.assert_allclose(fam.cdf(y, mu, t, (20.0,)), stats.binom.cdf(y, t, mu))
    # draws are the binomial's, the same for the same seed (a Beta draw per row was
    # taken and dropped: simulate and scaled residuals differed from the binomial fit's)
    for log_phi in (20.0, np.full(40, 20.0)):
        draws = fam.sample(mu, t, (log_phi,), np.random.default_rng(2))
        np.testing.assert_array_equal(draws, binom.sample(mu, t, (), np.random.default_rng(2)))


@pytest.mark.parametrize("log_phi", [-1.0, 1.3, 12.0])
def test_derivatives_match_finite_differences(log_phi):
    # log phi = 12: shapes of 1e5 and more, where the polygamma differences come
    # from their series
    fam = make_family("betabinomial")
    t = np.array([5.0, 5, 10, 10, 20, 3, 8])
    y = np.array([0.0, 5, 3, 10, 7, 1, 8])
    eta = np.array([-2.0, 1.0, 0.3, 3.0, -0.5, 0.0, 6.0])
    extra = np.array([log_phi])
    d = fam.derivs(y, eta, t, None, extra)
    h = 1e-4
    dp, dm = fam.derivs(y, eta + h, t, None, extra), fam.derivs(y, eta - h, t, None, extra)
    if log_phi < 10:
        # at log phi = 12 the log-density is a difference of log-beta values of order
        # 1e6 whose rounding a difference quotient magnifies (d1 checked there against
        # 40-digit arithmetic: -0.5507354379 at row 4, as computed)
        np.testing.assert_allclose(d.d1, (dp.loglik - dm.loglik) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d.w, -(dp.d1 - dm.d1) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d.w3, (dp.w - dm.w) / (2 * h), rtol=1e-6, atol=1e-7)


def test_betabinomial_matches_glmmtmb():
    # glmmTMB(cbind(y, n - y) ~ x + (1 | id), data = d, family = betabinomial)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = BinomialGLMM(family="betabinomial").fit(
            DATA[["x"]], DATA["y"], groups=DATA["id"], trials=DATA["n"]
        )
    assert m.converged_ and ConvergenceWarning not in [w.category for w in caught]
    assert m.loglik_ == pytest.approx(REF["loglik"], abs=0.01)
    fe = m.fixed_effects_
    for name, value in REF["fixef"].items():
        assert fe.loc[name, "estimate"] == pytest.approx(value, abs=0.05 * REF["se"][name])
        assert fe.loc[name, "std_error"] == pytest.approx(REF["se"][name], rel=REFERENCE_SE_REL)
    assert m.phi_ == pytest.approx(REF["phi"], rel=0.02)
    sd = float(np.sqrt(m.random_effects_cov_["id"].iloc[0, 0]))
    assert sd == pytest.approx(REF["sd"], rel=0.02)
    assert "Dispersion parameter for betabinomial family ()" in str(m.summary())


def test_binomial_data_settle_at_phi_infinity():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(30), 8)
    x = rng.normal(size=240)
    n = np.full(240, 15)
    y = rng.binomial(n, special.expit(-0.2 + 0.5 * x + rng.normal(0, 0.4, 30)[g]))
    X = pd.DataFrame({"x": x})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bb = BinomialGLMM(family="betabinomial").fit(X, y, groups=g, trials=n)
    binom = BinomialGLMM().fit(X, y, groups=g, trials=n)
    cats = [w.category for w in caught]
    assert OverdispersionWarning in cats and ConvergenceWarning not in cats
    assert bb.phi_ == np.inf and bb.phi_at_boundary_
    assert bb.loglik_ == pytest.approx(binom.loglik_, abs=1e-6)


def test_binomial_data_with_a_million_trials_reach_the_binomial_limit():
    # phi = e^20 inflates the variance by (t - 1) / (phi + 1) = 2e-3 here: a fit reported
    # at phi = inf must have the limit's log-likelihood (it was 0.01-0.04 below it)
    rng = np.random.default_rng(505)
    g = np.repeat(np.arange(20), 8)
    x = rng.normal(size=len(g))
    n = np.full(len(g), 1_000_000)
    y = rng.binomial(n, special.expit(0.3 + 0.2 * x + rng.normal(0, 3e-4, 20)[g]))
    X = pd.DataFrame({"x": x})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bb = BinomialGLMM(family="betabinomial").fit(X, y, groups=g, trials=n)
    binom = BinomialGLMM().fit(X, y, groups=g, trials=n)
    assert ConvergenceWarning not in [w.category for w in caught]
    assert bb.phi_ == np.inf and bb.converged_
    assert bb.loglik_ == pytest.approx(binom.loglik_, abs=1e-6)


def test_binary_outcomes_are_refused():
    with pytest.raises(ValueError, match="not identified"):
        BinomialGLMM(family="betabinomial").fit(
            DATA[["x"]], (DATA["y"] > 5).astype(int), groups=DATA["id"]
        )
    with pytest.raises(ValueError, match="logit link"):
        BinomialGLMM(family="betabinomial", link="probit").fit(
            DATA[["x"]], DATA["y"], groups=DATA["id"], trials=DATA["n"]
        )


def test_formula_front_end_reads_betabinomial():
    # glmmTMB(cbind(y, n - y) ~ x + (1 | id), data = d, family = betabinomial)
    from sklearn_glmm.formula import glmmTMB

    m = glmmTMB("cbind(y, n - y) ~ x + (1 | id)", DATA, family="betabinomial")
    assert m.family == "betabinomial"
    assert m.loglik_ == pytest.approx(REF["loglik"], abs=0.01)


@pytest.mark.parametrize("log_phi", [-4.0, 0.0, 3.0, 9.0])
def test_extra_derivatives_are_analytic(log_phi):
    """d/d log(phi) of the log-density, d1 and w against Richardson-extrapolated central
    differences, scalar and per-row phi, with all-or-none rows and 3,000 trials."""
    fam = make_family("betabinomial")
    rng = np.random.default_rng(0)
    t = np.r_[rng.integers(2, 40, 13), 3000].astype(float)
    y = np.floor(t * rng.uniform(0, 1, len(t)))
    y[0], y[1] = 0.0, t[1]
    eta = rng.normal(0.0, 1.5, len(t))
    const = fam.constant(y, t)
    for extra in (np.array([log_phi]), (np.full(len(y), log_phi),)):
        exact = fam.extra_derivs(y, eta, t, None, extra, const)

        def central(h):
            up = fam.derivs(y, eta, t, None, np.array([log_phi + h]), const)
            down = fam.derivs(y, eta, t, None, np.array([log_phi - h]), const)
            return [(getattr(up, f) - getattr(down, f)) / (2 * h) for f in ("loglik", "d1", "w")]

        coarse, fine = central(2e-3), central(1e-3)
        for got, a, b in zip(exact, coarse, fine):
            ref = (4.0 * b - a) / 3.0
            np.testing.assert_allclose(got[0], ref, rtol=1e-6, atol=1e-6)


def _terms_in_450_digits(y, t, eta, log_phi):
    """The log-density, its three eta-derivatives and the log phi-derivatives of the
    first two and of ``w``, from the polygamma functions in 450 digits (the shapes
    ``a = mu phi``, ``b = (1 - mu) phi`` down to 1e-175)."""
    import mpmath

    with mpmath.workdps(450):
        y, t = mpmath.mpf(y), mpmath.mpf(t)
        phi = mpmath.exp(mpmath.mpf(log_phi))
        e = mpmath.mpf(eta)
        mu, q = 1 / (1 + mpmath.exp(-e)), 1 / (1 + mpmath.exp(e))
        a, b, f = mu * phi, q * phi, t - y
        lg = mpmath.loggamma
        ll = (
            lg(t + 1)
            - lg(y + 1)
            - lg(f + 1)
            + lg(y + a)
            - lg(a)
            + lg(f + b)
            - lg(b)
            - lg(t + phi)
            + lg(phi)
        )

        def dif(m, n, s):
            return mpmath.psi(m, n + s) - mpmath.psi(m, s)

        dd = dif(0, y, a) - dif(0, f, b)
        ee = dif(1, y, a) + dif(1, f, b)
        ff = dif(2, y, a) - dif(2, f, b)
        v = mu * q
        v1 = v * (1 - 2 * mu)
        v2 = v1 * (1 - 2 * mu) - 2 * v * v
        d1 = phi * v * dd
        d2 = phi * v1 * dd + phi**2 * v**2 * ee
        d3 = phi * v2 * dd + 3 * phi**2 * v * v1 * ee + phi**3 * v**3 * ff
        moved = dd + a * dif(1, y, a) - b * dif(1, f, b)
        dl = a * dif(0, y, a) + b * dif(0, f, b) - phi * dif(0, t, phi)
        dd1 = phi * v * moved
        dd2 = phi * v1 * moved + phi**2 * v**2 * (2 * ee + a * dif(2, y, a) + b * dif(2, f, b))
        return [float(x) for x in (ll, d1, d2, d3, dl, dd1, -dd2)]


@pytest.mark.parametrize("eta", [-400.0, -250.0, -40.0, -16.0, 0.7, 16.0, 40.0, 250.0])
def test_derivatives_at_extreme_means(eta):
    # a shape a = mu phi or b = (1 - mu) phi below 1e-103 made psi_2 overflow and the
    # derivatives NaN; 1 - mu taken as 1 - expit(eta) was 0 above eta = 37, and the
    # log-density of a row with a failure -inf there; the curvature lost its relative
    # accuracy to a cancellation from shapes of 1e-7 down
    fam = make_family("betabinomial")
    t = np.array([5.0, 5.0, 5.0, 5.0, 1.0])
    y = np.array([0.0, 1.0, 3.0, 5.0, 1.0])
    for log_phi in (-1.0, 2.0):
        extra = np.array([log_phi])
        e = np.full(len(y), eta)
        d = fam.derivs(y, e, t, None, extra)
        dl, dd1, dw = fam.extra_derivs(y, e, t, None, extra)
        got = np.array([d.loglik, d.d1, -d.w, -d.w3, dl[0], dd1[0], dw[0]]).T
        # the log-density and its log phi-derivative absolutely (a sum's terms: a value
        # of -3e-174 computed as a difference of log-gamma ratios is 0), the eta-derivatives
        # relatively however small; the log phi-derivatives of d1 and w of the one-trial
        # row are 0 (phi does not enter), computed as the rounding residue of terms of
        # order v = mu (1 - mu)
        v = max(special.expit(eta) * special.expit(-eta), 1e-300)
        atol = np.array([1e-13, 1e-300, 1e-300, 1e-300, 1e-13, 1e-14 * v, 1e-14 * v])
        for j in range(len(y)):
            want = np.array(_terms_in_450_digits(y[j], t[j], eta, log_phi))
            assert np.all(np.abs(got[j] - want) <= atol + 1e-9 * np.abs(want)), (j, got[j], want)
