"""Fits do not depend on the origin of a covariate that enters an interaction.

Centring and scaling each column leaves an uncentred covariate's interaction column
nearly collinear with the factor's dummies (``f * x`` with ``x + 1e4``); the optimiser
then stopped short of the optimum (0.8 below it) with a numerically singular Hessian
and every standard error NaN, while the fit said it converged. Such designs are now
decorrelated internally (``_scaling._decorrelate``): the same log-likelihood, estimates
and standard errors whatever the origin.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, NegBinGLMM, OrdinalGLMM, PoissonGLMM
from sklearn_glmm._state import binary_column
from sklearn_glmm.exceptions import SeparationWarning, StandardErrorWarning


def _data(seed=1, n_groups=40, per=15):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    n = len(g)
    f = rng.choice(["a", "b", "c"], n)
    h = rng.choice(["p", "q", "r", "s"], n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.5 * x + 0.6 * (f == "c") * x - 0.2 * (h == "r") + rng.normal(0, 0.7, n_groups)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"f": f, "h": h, "x": x, "y": y, "g": g})


def _design(d, shift):
    """f * x + h with treatment dummies, x moved by ``shift``."""
    xs = d["x"] + shift
    fb, fc = (d["f"] == "b") * 1.0, (d["f"] == "c") * 1.0
    cols = {"fb": fb, "fc": fc, "x": xs, "hq": (d["h"] == "q") * 1.0}
    cols.update({"hr": (d["h"] == "r") * 1.0, "hs": (d["h"] == "s") * 1.0})
    cols.update({"fb:x": fb * xs, "fc:x": fc * xs})
    return pd.DataFrame(cols)


def _fit(est, X, y, g):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y, groups=g)
    return est, [w for w in caught if issubclass(w.category, StandardErrorWarning)]


@pytest.mark.parametrize("shift", [1e3, 1e4, 1e6])
def test_a_far_origin_in_an_interaction_gives_the_same_fit(shift):
    d = _data()
    ref, _ = _fit(BinomialGLMM(), _design(d, 0.0), d["y"], d["g"])
    m, se_warnings = _fit(BinomialGLMM(), _design(d, shift), d["y"], d["g"])
    assert m.converged_ and not se_warnings
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
    slopes = ["x", "fb", "fc", "hq", "hr", "hs", "fb:x", "fc:x"][-5:]  # origin-free terms
    a, b = ref.fixed_effects_.loc[slopes], m.fixed_effects_.loc[slopes]
    # to the optimiser's tolerance (standard errors 0.1-0.3)
    np.testing.assert_allclose(b["estimate"], a["estimate"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b["std_error"], a["std_error"], rtol=1e-3)
    # the dummies' effects at x = 0 move with the origin, exactly as the model says
    b_fc = a.loc["fc:x", "estimate"]
    expected = ref.fixed_effects_.loc["fc", "estimate"] - shift * b_fc
    assert m.fixed_effects_.loc["fc", "estimate"] == pytest.approx(expected, rel=1e-4)
    assert binary_column(m, "fb") and not binary_column(m, "x")


def test_random_slope_and_poisson_far_origin():
    d = _data(seed=2)
    rng = np.random.default_rng(3)
    lam = np.exp(0.4 + 0.3 * d["x"] + 0.4 * (d["f"] == "b") * d["x"])
    y = rng.poisson(lam * np.exp(rng.normal(0, 0.3, 40)[d["g"]]))
    fits = []
    for shift in (0.0, 1e4):
        X = _design(d, shift)
        fits.append(_fit(PoissonGLMM(random_effects="1 + x"), X, y, d["g"])[0])
    a, b = fits
    assert b.converged_
    assert b.loglik_ == pytest.approx(a.loglik_, abs=1e-5)
    np.testing.assert_allclose(b.coef_[-2:], a.coef_[-2:], rtol=1e-4)


def test_separation_is_named_on_a_decorrelated_design():
    d = _data(seed=4)
    y = d["y"].where(d["h"] != "s", 1)  # every row of level s has the outcome
    with pytest.warns(SeparationWarning, match="predictor 'hs' perfectly"):
        BinomialGLMM().fit(_design(d, 1e4), y, groups=d["g"])


@pytest.mark.parametrize("shift", [500.0, 1e4])
def test_ordinal_far_origin(shift):
    d = _data(seed=5)
    rng = np.random.default_rng(6)
    latent = 0.8 * d["x"] + 0.5 * (d["f"] == "c") * d["x"] + rng.logistic(size=len(d))
    y = np.digitize(latent, [-1.0, 0.5, 2.0])
    fits = [
        _fit(OrdinalGLMM(), _design(d, s)[["fb", "fc", "x", "fb:x", "fc:x"]], y, d["g"])[0]
        for s in (0.0, shift)
    ]
    assert fits[1].converged_
    assert fits[1].loglik_ == pytest.approx(fits[0].loglik_, abs=1e-6)
    # the same estimates to a thousandth of their standard errors: each fit stops within
    # lme4's gradient check (a scaled gradient below 2e-3), a Newton step of up to 3e-8
    # in log L from the optimum, which moves the flattest coefficient by about 2e-4 of
    # its standard error (1.2e-4 relative here)
    se = fits[0].fixed_effects_["std_error"].to_numpy()[2:]
    assert np.all(np.abs(fits[1].coef_[2:] - fits[0].coef_[2:]) <= 1e-3 * se)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_raw_polynomial_far_from_zero_equals_the_centred_one(family):
    # x and x^2 with x near 500: the same column space as the centred polynomial; the
    # raw one stopped up to 0.13 below the optimum (some SEs NaN) without a word
    rng = np.random.default_rng(15)
    g = np.repeat(np.arange(30), 8)
    x = rng.normal(size=len(g)) + 500.0
    xc = x - x.mean()
    eta = 0.3 * xc - 0.2 * xc**2 + rng.normal(0, 0.6, 30)[g]
    if family == "binomial":
        y, est = rng.binomial(1, 1 / (1 + np.exp(-eta))), BinomialGLMM
    else:
        y, est = rng.poisson(np.exp(eta)), PoissonGLMM
    raw, _ = _fit(est(), pd.DataFrame({"x": x, "x2": x**2}), y, g)
    centred, _ = _fit(est(), pd.DataFrame({"x": xc, "x2": xc**2}), y, g)
    assert raw.converged_
    assert raw.loglik_ == pytest.approx(centred.loglik_, abs=1e-6)
    # the quadratic coefficient is the same in both parametrisations
    assert raw.coef_[1] == pytest.approx(centred.coef_[1], rel=1e-4)


def _blocks_data(seed=1, n=600, n_groups=30):
    """Counts with zero inflation and a dispersion that depend on f * x."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    x, f = rng.normal(size=n), rng.integers(0, 2, n)
    eta = 0.3 + 0.4 * f + 0.5 * x - 0.3 * f * x + rng.normal(0, 0.5, n_groups)[g]
    theta = np.exp(0.5 + 0.4 * x - 0.3 * f * x)
    y = rng.negative_binomial(theta, theta / (theta + np.exp(eta)))
    zero = rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.8 * f + 0.6 * x - 0.5 * f * x)))
    return x, f * 1.0, np.where(zero, 0, y), g


def _fb_x(x, fb, shift):
    xs = x + shift
    return pd.DataFrame({"fb": fb, "x": xs, "fbx": fb * xs})


@pytest.mark.parametrize(
    "make",
    [
        lambda: PoissonGLMM(zero_inflation="1 + fb + x + fbx"),
        lambda: PoissonGLMM(hurdle="1 + fb + x + fbx"),
        lambda: NegBinGLMM(dispersion="1 + fb + x + fbx"),
    ],
    ids=["zero_inflation", "hurdle", "dispersion"],
)
def test_far_origin_in_a_family_block_gives_the_same_fit(make):
    # the zero-inflation, hurdle and dispersion designs are decorrelated too: with
    # x + 1e4 their interaction stayed at its start, 0.4-8 below the optimum, converged
    x, fb, y, g = _blocks_data()
    ref, _ = _fit(make(), _fb_x(x, fb, 0.0), y, g)
    for shift in (1e4, 1e6):
        m, se_warnings = _fit(make(), _fb_x(x, fb, shift), y, g)
        assert m.converged_ and not se_warnings
        assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
        name = "dispersion_effects_" if "disp" in repr(m) else "zero_inflation_effects_"
        a, b = getattr(ref, name).loc["fbx"], getattr(m, name).loc["fbx"]
        assert b["estimate"] == pytest.approx(a["estimate"], rel=1e-4, abs=1e-5)
        assert b["std_error"] == pytest.approx(a["std_error"], rel=1e-3)


def test_far_origin_in_random_slopes_gives_the_same_fit():
    # (1 + fb + x + fb:x | g) with x + 1e4: the centred slopes fb:x and fb are nearly
    # collinear; the fit stopped 0.13 below the optimum with a slope SD 4 % low
    rng = np.random.default_rng(7)
    n_groups, n = 60, 1500
    g = rng.integers(0, n_groups, n)
    x, fb = rng.normal(size=n), rng.integers(0, 2, n) * 1.0
    b = rng.multivariate_normal(np.zeros(4), np.diag([0.4, 0.3, 0.3, 0.3]) ** 2, n_groups)[g]
    eta = 0.5 + 0.3 * fb + 0.4 * x - 0.2 * fb * x
    eta = eta + b[:, 0] + b[:, 1] * fb + b[:, 2] * x + b[:, 3] * fb * x
    y = rng.poisson(np.exp(eta))
    re = "1 + fb + x + fbx"
    ref, _ = _fit(PoissonGLMM(random_effects=re), _fb_x(x, fb, 0.0), y, g)
    m, _ = _fit(PoissonGLMM(random_effects=re), _fb_x(x, fb, 1e4), y, g)
    assert m.converged_
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
    sd = [np.sqrt(np.diag(e.random_effects_cov_["group"].to_numpy()))[1:] for e in (ref, m)]
    # the SDs of the slopes of x and fb:x (the intercept's and fb's are effects at x = 0,
    # which move with its origin)
    np.testing.assert_allclose(sd[1][1:], sd[0][1:], rtol=1e-4)


def test_random_raw_polynomial_far_from_zero_equals_the_centred_one():
    # (1 + x + x^2 | g) with x near 500: the quadratic slope's SD was a third of the
    # centred fit's, 2.5 below the optimum, converged
    rng = np.random.default_rng(8)
    n_groups, n = 30, 900
    g = rng.integers(0, n_groups, n)
    xc = rng.normal(size=n)
    b = rng.normal(0, [0.4, 0.2, 0.1], (n_groups, 3))[g]
    eta = 0.3 + b[:, 0] + (0.3 + b[:, 1]) * xc + (0.2 + b[:, 2]) * xc**2
    y = rng.poisson(np.exp(eta))
    fits = []
    for shift in (0.0, 500.0):
        X = pd.DataFrame({"x": xc + shift, "x2": (xc + shift) ** 2})
        fits.append(_fit(PoissonGLMM(random_effects="1 + x + x2"), X, y, g)[0])
    ref, m = fits
    assert m.converged_
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
    sd = [np.sqrt(e.random_effects_cov_["group"].to_numpy()[2, 2]) for e in fits]
    assert sd[1] == pytest.approx(sd[0], rel=1e-4)


def test_moderately_collinear_design_is_decorrelated():
    # x + I(x^2) with x + 100 (X'X conditioned about 1e5): the standard error of the
    # quadratic term drifted by 1e-3 with the origin below the old threshold (1e6)
    rng = np.random.default_rng(9)
    g = np.repeat(np.arange(30), 20)
    xc = rng.normal(size=len(g))
    y = rng.poisson(np.exp(0.3 + 0.5 * xc + 0.2 * xc**2 + rng.normal(0, 0.5, 30)[g]))
    fits = [
        _fit(PoissonGLMM(), pd.DataFrame({"x": xc + s, "x2": (xc + s) ** 2}), y, g)[0]
        for s in (0.0, 100.0)
    ]
    assert "rotation" in fits[1].fit_result_.scaling
    a, b = (f.fixed_effects_.loc["x2"] for f in fits)
    assert b["std_error"] == pytest.approx(a["std_error"], rel=5e-5)
    assert b["estimate"] == pytest.approx(a["estimate"], rel=1e-5)


def test_a_dummy_stays_binary_after_decorrelation():
    # x + x^2 + fb with x near 100: undoing the decorrelation left rounding on fb's
    # values, and report() described the dummy as a continuous predictor ("per unit")
    rng = np.random.default_rng(10)
    g = np.repeat(np.arange(30), 20)
    xc, fb = rng.normal(size=len(g)), rng.integers(0, 2, len(g)) * 1.0
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.3 * xc + 0.5 * fb + rng.normal(0, 0.5, 30)[g]))))
    X = pd.DataFrame({"x": xc + 100, "x2": (xc + 100) ** 2, "fb": fb})
    m, _ = _fit(BinomialGLMM(), X, y, g)
    assert "rotation" in m.fit_result_.scaling
    assert binary_column(m, "fb") and not binary_column(m, "x")


def test_report_of_effects_at_a_far_origin_is_quiet():
    # a dummy's effect at x = 0 with x near 1e4 overflows its odds ratio: numpy's
    # RuntimeWarning leaked from report()
    d = _data()
    m, _ = _fit(BinomialGLMM(), _design(d, 1e4), d["y"], d["g"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        text = str(m.report())
    assert "fc" in text
