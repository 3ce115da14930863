"""Profile points of fits on a boundary: a correlation of +-1 (a singular random slope)
or NB theta at its Poisson limit. The profile's other parameters start at the estimate's
values; where the profile's minimum comes off that boundary, a search that stays on it
puts the limits too near the estimate. Checked here against the minimum with the
parameter held found by SLSQP over the fit's own (Cholesky, log theta) parameters,
started off the boundary."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._param_map import ParamMap

ZC2 = stats.norm.ppf(0.975) ** 2


def _data(kind, seed, n_groups, sd0, sd1=0.0, rho=0.0, theta=50.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), 10)
    x = rng.normal(size=len(g))
    C = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    b = rng.multivariate_normal([0, 0], C, size=n_groups)
    eta = 0.5 * x + b[g, 0] + (b[g, 1] * x if kind != "nb" else 0)
    if kind == "binomial":
        y = rng.binomial(1, special.expit(eta))
    elif kind == "poisson":
        y = rng.poisson(np.exp(eta))
    else:
        mu = np.exp(eta)
        y = rng.negative_binomial(theta, theta / (theta + mu))
    return pd.DataFrame({"x": x}), y, g.astype(str)


def _held_minimum(m, k, value, off):
    """min of -2 log L with reported parameter k at value (linear in the internal ones),
    by SLSQP from the estimate with the internal coordinates ``off`` moved there."""
    res = m.fit_result_
    pm, obj = ParamMap(m), res.objective
    a = pm.linear_matrix()[list(pm.lin).index(k)]

    def fun(x):
        val, g = obj.value_and_grad(x)
        return (1e10, np.zeros(len(x))) if not np.isfinite(val) else (val, g)

    x0 = res.params.copy()
    for i, v in off.items():
        x0[i] = v
    cons = {"type": "eq", "fun": lambda x: a @ x[pm.lin] - value}
    bounds = [tuple(b) for b in res.bounds]
    best = np.inf
    for start in (x0, res.params):
        r = optimize.minimize(
            fun,
            start,
            jac=True,
            method="SLSQP",
            bounds=bounds,
            constraints=[cons],
            options={"maxiter": 500, "ftol": 1e-12},
        )
        best = min(best, obj.evaluate(r.x))
    obj.evaluate(res.params)
    return best


@pytest.mark.parametrize(
    "kind, seed, n_groups, sd0, sd1, rho, off",
    [
        # singular fits: correlation +1 (internal Cholesky diagonal of the slope 0)
        ("binomial", 8, 10, 0.3, 0.0, 0.0, {4: 0.3}),
        ("poisson", 23, 8, 1.0, 0.05, 0.8, {4: 0.1}),
        # NB theta on its upper bound (log theta 30): started at log theta 3
        ("nb", 29, 5, 0.1, 0.0, 0.0, {3: 3.0}),
    ],
)
def test_profile_limits_of_a_boundary_fit_are_not_too_near(
    kind, seed, n_groups, sd0, sd1, rho, off
):
    X, y, g = _data(kind, seed, n_groups, sd0, sd1, rho, theta=500.0)
    est = {
        "binomial": lambda: BinomialGLMM(random_effects="1 + x"),
        "poisson": lambda: PoissonGLMM(random_effects="1 + x"),
        "nb": NegBinGLMM,
    }[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = est.fit(X, y, groups=g)
    F_hat = -2 * m.loglik_
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the limits are reported as sure
        ci = m.confint(parm=["x"], method="profile")
    k = ParamMap(m).names.index("x")
    for v in ci.loc["x", ["lower", "upper"]]:
        # the minimum at the reported limit is on the cutoff, not below it
        assert _held_minimum(m, k, v, off) - F_hat > ZC2 - 5e-3
