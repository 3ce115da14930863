"""A fit's optimum and its convergence verdict do not depend on a predictor's units."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import NegBinGLMM
from sklearn_glmm._engine.families.negbin import NegativeBinomial2

FIXTURES = Path(__file__).parent / "fixtures" / "units"


def _fit(d, terms):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = NegBinGLMM(random_effects="1 + " + " + ".join(terms)).fit(
            d[terms], d["y"], groups=d["id"]
        )
    return m, [w for w in caught if "Convergence" in w.category.__name__]


def test_negative_binomial_log_density_of_large_counts_is_exact():
    # log p(y | mu, theta) of counts up to 4e11: the large-count form summed terms of
    # order y log y (2.5e12) whose rounding (up to 8e-4 a row; 2e-4 to 8 for theta above
    # 1e5, its Poisson side) moved with theta and mu, and made the objective rough at
    # 1e-3 (a convergence verdict that changed with the units of a predictor, NB fits of
    # such counts not converged). Against exact arithmetic
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50

    def exact(y, eta, theta):
        y, mu, th = mpmath.mpf(y), mpmath.exp(mpmath.mpf(eta)), mpmath.mpf(theta)
        out = mpmath.loggamma(y + th) - mpmath.loggamma(th) - mpmath.loggamma(y + 1)
        out += th * mpmath.log(th / (th + mu))
        return float(out + (y * mpmath.log(mu / (th + mu)) if y > 0 else 0))

    fam = NegativeBinomial2()
    y = np.array([0.0, 1.0, 5.0, 1e3, 12345.0, 1e5, 7e7, 2e9, 1e11, 3.7e11])
    eta = np.log(np.maximum(y, 1.0)) + np.random.default_rng(0).normal(size=len(y)) * 2.0
    for theta in (1e-3, 0.3, 1.73, 50.0, 1e4, 1e6, 1e8):
        der = fam.derivs(y, eta, None, None, (np.log(theta),), fam.constant(y, None))
        truth = np.array([exact(a, b, theta) for a, b in zip(y, eta)])
        # (the rounding of the value itself where mu is far from y: 1e-16 of it)
        np.testing.assert_allclose(der.loglik, truth, rtol=1e-14, atol=1e-9)


def test_negative_binomial_derivatives_in_log_theta_are_exact():
    # the first and second derivatives of log p(y | mu, theta) in log theta, which the
    # gradient, the closed-form Hessian and the bootstrap's batched kernel read: towards
    # the Poisson limit each was a sum of terms of order y for a value of order y /
    # theta (3e-8 of it lost at theta = 1e3, 0.1 at 1e6, all of it at 1e8). Against
    # derivatives of the log-density in exact arithmetic
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60

    def loglik(y, lt, mu):
        th = mpmath.exp(lt)
        out = mpmath.loggamma(y + th) - mpmath.loggamma(th) + th * mpmath.log(th / (th + mu))
        return out + (y * mpmath.log(mu / (th + mu)) if y > 0 else 0)

    fam = NegativeBinomial2()
    y = np.array([0.0, 1.0, 5.0, 30.0, 1e3, 1e5, 2e7])
    for theta in (0.3, 3.0, 1e3, 1e5, 1e6, 1e8, 1e12):
        lt = float(np.log(theta))
        for shift in (-3.0, -0.2, 0.0, 0.5, 2.0, 40.0):  # (mu far above theta + y)
            eta = np.log(np.maximum(y, 1.0)) + shift
            const = fam.constant(y, None)  # (counts above 1e3: the large-count forms)
            dl = fam.extra_derivs(y, eta, None, None, (lt,), const)[0][0]
            dll = fam.extra_second_derivs(y, eta, None, None, (lt,), const)[0]
            for k in range(len(y)):
                at = (mpmath.mpf(y[k]), mpmath.exp(mpmath.mpf(eta[k])))
                d1 = float(mpmath.diff(lambda v, at=at: loglik(at[0], v, at[1]), lt))
                d2 = float(mpmath.diff(lambda v, at=at: loglik(at[0], v, at[1]), lt, 2))
                assert dl[k] == pytest.approx(d1, rel=1e-12, abs=1e-300), (theta, shift, y[k])
                assert dll[k] == pytest.approx(d2, rel=1e-12, abs=1e-300), (theta, shift, y[k])


@pytest.mark.parametrize(
    "name, terms",
    [("nb_poisson_limit_level_slope", ["v"]), ("nb_large_counts_arm_time", ["v", "time"])],
)
def test_the_convergence_verdict_does_not_depend_on_a_predictors_units(name, terms):
    # the same model with v in other units: each fit converged, at the same optimum.
    # The first ended with theta drifting towards its Poisson limit after a restart
    # (curvature -6e-5 along it: "negative curvature" with v x 1000); the second was
    # rough (above) and ended 3.8e-4 low with v x 1000, a failed gradient check
    d0 = pd.read_csv(FIXTURES / f"{name}.csv")
    fits = []
    for scale in (1.0, 1000.0, 0.001):
        d = d0.assign(v=d0["v"] * scale)
        m, warned = _fit(d, terms)
        assert m.converged_ and not warned, (scale, [str(w.message)[:80] for w in warned])
        fits.append(m)
    for m in fits[1:]:
        assert m.loglik_ == pytest.approx(fits[0].loglik_, abs=2e-6)
        assert m.fixed_effects_.loc["(Intercept)", "estimate"] == pytest.approx(
            fits[0].fixed_effects_.loc["(Intercept)", "estimate"], abs=1e-3
        )


def test_a_fit_of_large_counts_on_the_poisson_side_converges_on_a_smooth_objective():
    # counts near 1e11, theta near 1e6: the saturated term's rounding (2e-4 a row) made
    # the objective rough along log theta (a central difference of 37.8 against an
    # analytic derivative of 0.03) and the fit ended not converged
    d = pd.read_csv(FIXTURES / "nb_large_counts_poisson_side.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = NegBinGLMM().fit(d[["x"]], d["y"], groups=d["g"])
    assert m.converged_
    assert not [w for w in caught if "Convergence" in w.category.__name__]
    res = m.fit_result_
    obj, x = res.objective, np.array(res.params, dtype=float)
    g = obj.value_and_grad(x)[1]
    e = np.zeros_like(x)
    e[-1] = 1e-5
    central = (obj.evaluate(x + e) - obj.evaluate(x - e)) / 2e-5
    assert central == pytest.approx(g[-1], abs=1e-4)
