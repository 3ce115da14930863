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


def test_profile_points_try_the_correlation_of_a_structure_whose_sd_is_zero():
    # an ar1 fit with its SD at 0, where its correlation is flat (left at 0.13): the
    # profile of x started each point at that correlation, its SD moved off zero, and
    # went back to the SD's zero; at its lower limit -0.0735 the deviance there is on
    # the cutoff, but 3.60 (0.24 below it) at SD 0.18 and rho -0.9999. A profile point
    # now also starts from the structure's restart correlations where its SDs are zero
    from sklearn_glmm.formula import glmmTMB

    rng = np.random.default_rng(27)
    ids, t = np.repeat(np.arange(8), 4), np.tile(np.arange(1, 5), 8)
    lag = np.abs(np.subtract.outer(np.arange(4), np.arange(4)))
    B = rng.multivariate_normal(np.zeros(4), 0.09 * 0.6**lag, size=8)
    x = rng.normal(size=32)
    site = ids % 4
    eta = 0.3 + 0.4 * x + B[ids, t - 1] + 0.1 * rng.normal(size=4)[site]
    d = pd.DataFrame({"x": x, "t": t, "id": ids.astype(str), "site": site.astype(str)})
    d["y"] = rng.poisson(np.exp(eta))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a singular fit)
        m = glmmTMB("y ~ x + ar1(0 + factor(t) | id) + (1 | site)", d, family="poisson")
    pm = ParamMap(m)
    sd, rho = pm.names.index("sd_t|id"), pm.names.index("rho_ar1|id")
    assert pm.to_phi(m.fit_result_.params)[sd] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = m.confint(parm=["x"], method="profile")
    lower = ci.loc["x", "lower"]
    assert lower < -0.084
    # held there, the minimum from SD 0.18 and rho -0.99 (a = rho / sqrt(1 - rho^2)) is
    # on the cutoff, not below it
    a = -0.99 / np.sqrt(1 - 0.99**2)
    held = _held_minimum(m, pm.names.index("x"), lower, {sd: 0.18, rho: a})
    assert held + 2 * m.loglik_ > ZC2 - 5e-3
