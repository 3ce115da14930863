"""NB1 (linear variance) negative binomial models: the family and glmmTMB references.

References: ``tests/fixtures/nb1/nb1.json``, made by ``make_nb1.R`` (glmmTMB 1.1.5)
on ``nb1.csv`` (``make_nb1_data.py``).
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference import REFERENCE_SE_REL
from scipy import special, stats

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm.exceptions import ConvergenceWarning, OverdispersionWarning

FIXTURES = Path(__file__).parent / "fixtures" / "nb1"
REF = json.loads((FIXTURES / "nb1.json").read_text())
DATA = pd.read_csv(FIXTURES / "nb1.csv")


def test_log_density_is_the_nbinom1_pmf_and_sums_to_one():
    fam = make_family("negbin1")
    eta = np.array([-2.0, 0.1, 1.0, 2.0, 3.1, 5.0])
    extra = np.array([0.4])
    phi = np.exp(0.4)
    mu = np.exp(eta)
    for k in (0, 1, 7, 150):
        y = np.full(len(eta), float(k))
        got = np.exp(fam.derivs(y, eta, None, None, extra).loglik)
        np.testing.assert_allclose(got, stats.nbinom.pmf(k, mu / phi, 1 / (1 + phi)), rtol=1e-10)
    total = sum(
        np.exp(fam.derivs(np.full(len(eta), float(k)), eta, None, None, extra).loglik)
        for k in range(3000)
    )
    np.testing.assert_allclose(total, 1.0, rtol=1e-10)


def test_derivatives_match_finite_differences():
    fam = make_family("negbin1")
    y = np.array([0.0, 1, 3, 7, 20, 150, 0, 2])
    eta = np.array([-2.0, 0.1, 1.0, 2.0, 3.1, 5.0, 3.0, -5.0])
    extra = np.array([0.4])
    d = fam.derivs(y, eta, None, None, extra)
    h = 1e-4
    dp = fam.derivs(y, eta + h, None, None, extra)
    dm = fam.derivs(y, eta - h, None, None, extra)
    np.testing.assert_allclose(d.d1, (dp.loglik - dm.loglik) / (2 * h), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.w, -(dp.d1 - dm.d1) / (2 * h), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.w3, (dp.w - dm.w) / (2 * h), rtol=1e-6, atol=1e-6)


def _fit(y, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = NegBinGLMM(family="nbinom1", **kw).fit(DATA[["x"]], DATA[y], groups=DATA["id"])
    return m, [w.category for w in caught]


def _check(m, ref):
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=0.01), ref["call"]
    fe = m.fixed_effects_
    for name, value in ref["fixef"].items():
        assert fe.loc[name, "estimate"] == pytest.approx(value, abs=0.05 * ref["se"][name])
        assert fe.loc[name, "std_error"] == pytest.approx(ref["se"][name], rel=REFERENCE_SE_REL)
    assert m.phi_ == pytest.approx(ref["phi"], rel=0.02)
    sd = float(np.sqrt(m.random_effects_cov_["id"].iloc[0, 0]))
    assert sd == pytest.approx(ref["sd"], rel=0.02)


def test_nbinom1_matches_glmmtmb():
    # glmmTMB(y ~ x + (1 | id), data = d, family = nbinom1)
    m, caught = _fit("y")
    assert m.converged_ and ConvergenceWarning not in caught
    _check(m, REF["nb1"])
    assert "Dispersion parameter for nbinom1 family ()" in str(m.summary())


def test_zero_inflated_nbinom1_matches_glmmtmb():
    # glmmTMB(yzi ~ x + (1 | id), data = d, family = nbinom1, ziformula = ~1)
    m, caught = _fit("yzi", zero_inflation=True)
    ref = REF["zinb1"]
    assert m.converged_ and ConvergenceWarning not in caught
    _check(m, ref)
    assert m.zero_inflation_ == pytest.approx(special.expit(ref["zi_logit"]), abs=0.01)
    assert m.fit_result_.block_se["logit_zi"] == pytest.approx(ref["zi_se_logit"], rel=0.02)


def test_nbinom1_without_overdispersion_settles_at_phi_zero():
    # binomial counts are less variable than Poisson ones: phi runs to its boundary
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(40), 10)
    x = rng.normal(size=400)
    p = special.expit(-1.5 + 0.3 * x + rng.normal(0, 0.4, 40)[g])
    y = rng.binomial(30, p)
    X = pd.DataFrame({"x": x})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = NegBinGLMM(family="nbinom1").fit(X, y, groups=g)
    pois = PoissonGLMM().fit(X, y, groups=g)
    cats = [w.category for w in caught]
    assert OverdispersionWarning in cats and ConvergenceWarning not in cats
    assert m.phi_ == 0.0 and m.phi_at_boundary_
    # phi_ = 0 is the Poisson limit itself: the Poisson fit's log-likelihood (it was
    # 8.8e-6 below it, NB1's at phi = e^-15, the bound of log phi)
    assert m.loglik_ == pytest.approx(pois.loglik_, abs=1e-8)


def test_the_bound_is_the_poisson_limit():
    # log phi on its lower bound is phi = 0: the Poisson log-density and derivatives
    # exactly (what phi_ = 0 reports), with no dependence on phi, row by row for a
    # dispersion model's per-row values
    fam, pois = make_family("negbin1"), make_family("poisson")
    rng = np.random.default_rng(6)
    eta = rng.normal(1.0, 1.5, 40)
    y = rng.poisson(np.exp(eta)).astype(float)
    const = fam.constant(y, None)
    for log_phi in (-15.0, np.full(40, -15.0)):
        got = fam.derivs(y, eta, None, None, (log_phi,), const)
        for a, b in zip(got, pois.derivs(y, eta, None, None)):
            np.testing.assert_array_equal(a, b)
        assert not np.any(fam.extra_derivs(y, eta, None, None, (log_phi,), const))
        for a, b in zip(fam.log_p0(eta, (log_phi,)), pois.log_p0(eta)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(fam.log_zero_rate(eta, (log_phi,)), pois.log_zero_rate(eta)):
            np.testing.assert_array_equal(a, b)
    mixed = np.where(np.arange(40) < 20, -15.0, -3.0)
    got = fam.derivs(y, eta, None, None, (mixed,), const).loglik
    np.testing.assert_array_equal(got[:20], pois.derivs(y, eta, None, None).loglik[:20])
    above = fam.derivs(y, eta, None, None, (np.array(-3.0),), const).loglik
    np.testing.assert_allclose(got[20:], above[20:], rtol=1e-13)
    # just above the bound: NB1 itself, within O(phi) of the limit
    near = fam.derivs(y, eta, None, None, (-14.9,), const).loglik
    assert 0 < np.max(np.abs(near - pois.derivs(y, eta, None, None).loglik)) < 1e-4


def test_the_bound_predicts_and_simulates_as_poisson():
    # phi_ = 0 reported: probabilities, variance and draws are the Poisson limit's too
    # (nbinom(mu / phi, ...) at phi = e^-15 put the pmf 2e-4 off Poisson's in the tail
    # at mu = 300), row by row for a dispersion model's per-row values
    fam, pois = make_family("negbin1"), make_family("poisson")
    k, mu = np.arange(0, 420), 300.0
    for log_phi in (-15.0, np.full(len(k), -15.0)):
        np.testing.assert_array_equal(fam.pmf(k, mu, (log_phi,)), stats.poisson.pmf(k, mu))
        np.testing.assert_array_equal(fam.cdf(k, mu, None, (log_phi,)), stats.poisson.cdf(k, mu))
        np.testing.assert_array_equal(fam.sf(k, mu, (log_phi,)), stats.poisson.sf(k, mu))
        np.testing.assert_array_equal(fam.variance(k + 1.0, None, (log_phi,)), k + 1.0)
    mus = np.full((30, 4), 3.0)
    draws = fam.sample(mus, None, (-15.0,), np.random.default_rng(1))
    np.testing.assert_array_equal(draws, pois.sample(mus, None, (), np.random.default_rng(1)))
    # rows beyond the bound (a dispersion model's free slope): phi = e^-800 was 0, and the
    # gamma draws raised an error
    rows = np.array([-1.0, -800.0, -15.0])[:, None] * np.ones((1, 4000))
    draws = fam.sample(np.full((3, 4000), 3.0), None, (rows,), np.random.default_rng(1))
    assert np.isfinite(draws).all()
    assert draws[1:].var() == pytest.approx(3.0, rel=0.05)
    mixed = np.where(k < 200, -15.0, -1.0)
    got = fam.pmf(k, mu, (mixed,))
    np.testing.assert_array_equal(got[:200], stats.poisson.pmf(k[:200], mu))
    np.testing.assert_allclose(got[200:], fam.pmf(k[200:], mu, (-1.0,)), rtol=1e-12)
    assert fam.variance(2.0, None, (-1.0,)) == pytest.approx(2.0 * (1 + np.exp(-1.0)))


def test_formula_front_end_reads_nbinom1():
    # glmmTMB(y ~ x + (1 | id), data = d, family = nbinom1)
    from sklearn_glmm.formula import glmmTMB

    m = glmmTMB("y ~ x + (1 | id)", DATA, family="nbinom1")
    assert m.family == "nbinom1"
    assert m.loglik_ == pytest.approx(REF["nb1"]["loglik"], abs=0.01)


@pytest.mark.parametrize("log_phi", [-6.0, -3.0, 0.2, 2.0])
def test_extra_derivatives_are_analytic(log_phi):
    """d/d log(phi) of the log-density, d1 and w against Richardson-extrapolated central
    differences, scalar and per-row phi, with a count in the thousands."""
    fam = make_family("negbin1")
    rng = np.random.default_rng(0)
    y = np.r_[rng.integers(1, 30, 10), 0.0, 5000.0]
    eta = np.r_[rng.normal(1.0, 1.0, 11), np.log(4000.0)]
    const = fam.constant(y, None)
    for extra in (np.array([log_phi]), (np.full(len(y), log_phi),)):
        exact = fam.extra_derivs(y, eta, None, None, extra, const)

        def central(h):
            up = fam.derivs(y, eta, None, None, np.array([log_phi + h]), const)
            down = fam.derivs(y, eta, None, None, np.array([log_phi - h]), const)
            return [(getattr(up, f) - getattr(down, f)) / (2 * h) for f in ("loglik", "d1", "w")]

        coarse, fine = central(2e-3), central(1e-3)
        for got, a, b in zip(exact, coarse, fine):
            ref = (4.0 * b - a) / 3.0
            np.testing.assert_allclose(got[0], ref, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("log_phi", [-14.0, -6.0, -4.6, -1.3, 0.5, 3.0])
def test_log_p0_derivative_in_log_phi_is_exact(log_phi):
    # d/d log phi of log P(Y = 0) = -mu log(1 + phi) / phi, against 40-digit arithmetic,
    # across the switch to the bracket's series (phi = 1e-2) and near the Poisson bound
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    fam = make_family("negbin1")
    eta = np.array([-3.0, 0.0, 1.5, 4.0])
    got = fam.log_p0_extra_derivs(eta, (log_phi,))
    want = [
        float(mp.diff(lambda v, e=e: -(mp.e ** mp.mpf(e)) / mp.e**v * mp.log1p(mp.e**v), log_phi))
        for e in eta
    ]
    for d in got:  # (log P(0) and its eta-derivatives are equal, and so are these)
        np.testing.assert_allclose(d[0], want, rtol=1e-13)


def test_zero_inflated_nb1_gradient_in_log_phi_has_no_difference_noise():
    # a zero-inflated NB1 took the derivatives of P(0)'s terms in log phi by central
    # differences of the whole density, whose rounding over the step put noise of 1e-6
    # into the Laplace gradient in log phi: the Hessian's entry by differences of that
    # gradient was 4.9184 with a step of 1e-4 and 4.9106 with 1e-3 (the objective's own
    # second differences: 4.9101), and the Wald SE of log phi 1.2e-3 (relative) off the
    # independent Hessian's (tests/test_fuzz_truth_hurdle.py, seed 199)
    from fuzz_hurdle_cases import make_hurdle_case

    from sklearn_glmm._param_map import ParamMap

    case = make_hurdle_case(199)
    est = case["estimator"](**case["params"])
    est.fit(case["X"], case["y"], groups=case["groups"], **case["fit_params"])
    obj, x = est.fit_result_.objective, np.asarray(est.fit_result_.params, float)
    k = ParamMap(est).names.index("nb1_phi")
    at_x = obj.snapshot()
    column = []
    for h in (1e-4, 1e-3):
        e = np.zeros(len(x))
        e[k] = h
        obj.restore(at_x)
        up = obj.value_and_grad(x + e)[1][k]
        obj.restore(at_x)
        down = obj.value_and_grad(x - e)[1][k]
        column.append((up - down) / (2 * h))
    obj.restore(at_x)
    assert column[0] == pytest.approx(column[1], rel=1e-5)


def test_polygamma_differences_at_huge_sizes_do_not_overflow():
    # psi_m(y + k) - psi_m(k) for k up to 1e300 (NB1's k = mu / phi as phi -> 0): the
    # series in 1 / k once formed k^4 and overflowed from k = 1e77 on; against 700-digit
    # arithmetic (y + k must be exact in it)
    mp = pytest.importorskip("mpmath")
    from sklearn_glmm._engine.families.base import _polygamma_differences

    mp.mp.dps = 700
    y = np.array([0.0, 1.0, 3.0, 1e4, 1e7])
    for k in (1.2e5, 1e10, 1e40, 1e80, 1e150, 1e300):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            got = _polygamma_differences(y, np.full_like(y, k))
        for m, d in enumerate(got):
            for yi, v in zip(y, d):
                want = mp.psi(m, mp.mpf(yi) + mp.mpf(k)) - mp.psi(m, mp.mpf(k))
                if abs(want) < mp.mpf("1e-300"):  # below the smallest normal double
                    assert abs(v) < 1e-290
                else:
                    assert float(abs((mp.mpf(float(v)) - want) / want)) < 1e-13, (m, yi, k)


def test_log_gamma_ratio_at_huge_sizes_does_not_overflow():
    # log Gamma(y + t) - log Gamma(t) for t up to 1e300 (NB1's k = mu / phi at large mu
    # or tiny phi): Stirling's differenced terms once formed t^5 and gave NaN from about
    # t = 1e61 on; against 700-digit arithmetic
    mp = pytest.importorskip("mpmath")
    from sklearn_glmm._engine.families.base import _lgamma_ratio_rows

    mp.mp.dps = 700
    y = np.array([0.0, 1.0, 3.0, 1e4, 1e7])
    for t in (1.2e5, 1e10, 1e40, 1e65, 1e80, 1e150, 1e300):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            got = _lgamma_ratio_rows(y, np.full_like(y, t))
        for yi, v in zip(y, got):
            want = mp.loggamma(mp.mpf(yi) + mp.mpf(t)) - mp.loggamma(mp.mpf(t))
            assert float(abs(mp.mpf(float(v)) - want) / max(abs(want), 1)) < 1e-14, (yi, t)


def test_nb1_log_density_and_derivatives_are_finite_at_extreme_means():
    # eta up to the library's cap of 700, k = mu / phi up to 1e300 (beyond, k itself is
    # not a double)
    fam = make_family("negbin1")
    y = np.array([0.0, 1.0, 5.0, 1e6])
    for eta0, log_phi in itertools.product((50.0, 300.0, 700.0), (-10.0, 0.0, 3.0)):
        if eta0 - log_phi < 700.0:
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                d = fam.derivs(y, np.full(4, eta0), None, None, (log_phi,), fam.constant(y, None))
            for name in ("loglik", "d1", "w"):
                assert np.all(np.isfinite(getattr(d, name))), (eta0, log_phi, name)
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                ex = fam.extra_derivs(y, np.full(4, eta0), None, None, (log_phi,))
            assert all(np.all(np.isfinite(v)) for v in ex), (eta0, log_phi)
