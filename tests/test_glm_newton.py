"""The GLM's optimum in the fixed effects and NB2's log theta by Newton's method
(``_engine/glm_newton.py``), which the mixed model starts from and checks its end
against.

The optimum is compared with an independent one: the NB2 log-likelihood written with
``scipy.stats.nbinom`` and maximised by BFGS from another start. Where Newton's method
does not apply, or leaves the parameter's bounds, it says so and the start falls back
to L-BFGS-B.
"""

import numpy as np
import pytest
from scipy import optimize, stats

from sklearn_glmm._engine.blocks import interior_coefficients
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.glm_newton import applies, newton_optimum
from sklearn_glmm._engine.model_data import ModelData
from sklearn_glmm._engine.objective import GLMObjective
from sklearn_glmm._engine.start import _glm_with_extras, glm_start


def _data(seed, theta=2.0, weights=False, offset=False, zero_inflation=False, n=300):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(0, 3, n)])
    off = rng.normal(0.0, 0.5, n) if offset else np.zeros(n)
    mu = np.exp(X @ [0.5, 0.4, -0.3] + off)
    y = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    w = rng.choice([0.5, 1.0, 3.0], n) if weights else np.ones(n)
    fam = make_family("negbin", zero_inflation)
    return ModelData(X, y, np.ones(n), w, off, fam, ())


def _independent_optimum(d):
    """(beta, log theta) maximising the weighted NB2 log-likelihood, by BFGS from the
    Poisson-free start beta = 0, log theta = 1."""

    def nll(x):
        beta, lt = x[:-1], x[-1]
        mu = np.exp(d.X @ beta + d.offset)
        theta = np.exp(lt)
        return -2.0 * np.sum(d.weights * stats.nbinom.logpmf(d.y, theta, theta / (theta + mu)))

    x0 = np.zeros(d.n_beta + 1)
    x0[-1] = 1.0
    res = optimize.minimize(nll, x0, method="BFGS", options={"gtol": 1e-7})
    res = optimize.minimize(
        nll, res.x, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11}
    )
    return res.x, res.fun


def _start(d):
    obj = GLMObjective(d)
    extra0 = d.default_extra()
    return obj, np.concatenate([glm_start(obj, extra0), extra0])


@pytest.mark.parametrize(
    "kw",
    [{}, {"weights": True}, {"offset": True}, {"theta": 0.4}, {"theta": 30.0, "n": 800}],
    ids=["plain", "weights", "offset", "small_theta", "large_theta"],
)
def test_newton_reaches_the_independent_optimum(kw):
    d = _data(1, **kw)
    obj, x0 = _start(d)
    x, value, _ = newton_optimum(obj, x0)
    assert x is not None, "Newton's method stopped short"
    ref_x, ref_value = _independent_optimum(d)
    # no lower than the independent optimum (to its rounding), and at the same point
    assert value <= ref_value + 1e-8 * abs(ref_value)
    np.testing.assert_allclose(x, ref_x, atol=2e-5)
    # the library's own objective agrees, and its gradient vanishes there (the stop is
    # on Newton's decrement, a gain below 1e-13 |log L|: along a flat log theta that
    # leaves a gradient of order 1e-5)
    v, g = GLMObjective(d).value_and_grad(x)
    assert v == pytest.approx(value, rel=1e-14)
    assert np.max(np.abs(g)) < 1e-4
    # the evaluations counted, each a step or a halving (L-BFGS-B took 9-11 on the
    # reference cases; from theta = 1 to theta = 30 Newton's steps in log theta are
    # about half a unit each until near the optimum)
    assert obj.n_evals <= 15


@pytest.mark.parametrize("seed", range(6))
def test_newton_no_lower_than_lbfgsb(seed):
    """The start's optimum by Newton's method against the quasi-Newton one it replaces."""
    from sklearn_glmm._engine.lbfgsb import _run_lbfgsb

    d = _data(seed, theta=[0.3, 1.0, 5.0][seed % 3], weights=seed % 2 == 1, offset=seed >= 3)
    obj, x0 = _start(d)
    bounds = [(None, None)] * d.n_beta + list(d.extra_bounds)
    res = _run_lbfgsb(GLMObjective(d).value_and_grad, x0, bounds, 200, 1e-9)
    x, value = _glm_with_extras(d, x0[:-1], x0[-1:])
    assert value <= res.fun + 1e-10 * abs(res.fun)
    np.testing.assert_allclose(x, res.x, atol=1e-3)


def test_underdispersed_counts_run_up_the_flat_ridge():
    """Counts less dispersed than Poisson's: log L rises towards theta's upper bound,
    ever more slowly. Newton's steps go up the ridge until a step gains nothing (or
    leaves the bound, where L-BFGS-B takes over); either way the start's optimum is
    past NB2's flat side (there the mixed model starts at the default theta), as high
    as the bound's to rounding."""
    rng = np.random.default_rng(3)
    n = 500
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.binomial(20, 0.2, n).astype(float)
    d = ModelData(X, y, np.ones(n), np.ones(n), np.zeros(n), make_family("negbin"), ())
    obj, x0 = _start(d)
    _, _, last = newton_optimum(obj, x0)
    flat = d.family.blocks[0].flat_side[1]
    assert last[-1] > flat
    x_glm, value_glm = _glm_with_extras(d, x0[:-1], x0[-1:])
    assert x_glm[-1] > flat
    at_bound = x_glm.copy()
    at_bound[-1] = d.extra_bounds[0][1]
    assert GLMObjective(d).evaluate(at_bound) >= value_glm - 1e-8
    assert interior_coefficients(d.family.blocks, None, x_glm[-1:])[0] == d.default_extra()[0]


def test_families_without_second_derivatives_are_left_to_lbfgsb():
    d = _data(2, zero_inflation=True)  # NB2's theta and logit pi: two own parameters
    assert not applies(d)
    obj = GLMObjective(d)
    x0 = np.concatenate([np.zeros(d.n_beta), d.default_extra()])
    x, value, last = newton_optimum(obj, x0)
    assert x is None and np.isnan(value) and last is x0
    assert obj.n_evals == 0
    assert applies(_data(2))


def test_steps_converge_quadratically():
    """Near the optimum each step squares the error (the Hessian is exact): from a
    point 1e-3 away the optimum is reached in two steps at most."""
    d = _data(4, weights=True, offset=True)
    obj, x0 = _start(d)
    x, _, _ = newton_optimum(obj, x0)
    near = x + 1e-3 * np.array([1.0, -1.0, 1.0, -1.0])
    obj = GLMObjective(d)
    again, _, _ = newton_optimum(obj, near)
    np.testing.assert_allclose(again, x, atol=1e-7)
    assert obj.n_evals <= 3  # the start's and two steps'


def test_the_convergence_checks_glm_on_large_data(monkeypatch):
    """Above the subsampling size the start's GLM reads a subset of rows, and the
    checks at the optimum fit the GLM on every row (from the mixed model's optimum, NB2
    by Newton's method): its -2 log L is the GLM's own fit's."""
    import pandas as pd

    from sklearn_glmm import NegBinGLMM
    from sklearn_glmm._engine import glm_newton, start
    from sklearn_glmm.exceptions import NoRandomEffectsWarning

    monkeypatch.setattr(start, "_SUBSAMPLE_ROWS", 1_000)
    monkeypatch.setattr(start, "_SUBSAMPLE_TARGET", 300)
    rng = np.random.default_rng(7)
    n, G = 3_000, 60
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    mu = np.exp(0.4 + 0.3 * x + rng.normal(0.0, 0.5, G)[g])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    X = pd.DataFrame({"x": x})
    used = []
    real = glm_newton.newton_optimum

    def spy(obj, x0):
        out = real(obj, x0)
        used.append((len(obj.data.y), out[0] is not None))
        return out

    monkeypatch.setattr(start, "newton_optimum", spy)
    m = NegBinGLMM().fit(X, y, groups=g)
    assert (n, True) in used  # the GLM on every row, by Newton's method
    with pytest.warns(NoRandomEffectsWarning):
        glm = NegBinGLMM().fit(X, y)
    assert m.fit_record_.glm_objective == pytest.approx(-2.0 * glm.loglik_, abs=1e-6)
    assert m.loglik_ >= glm.loglik_


def _zip_data(seed, pi=0.3, n=400, weights=False, offset=False):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(0, 3, n)])
    off = rng.normal(0.0, 0.5, n) if offset else np.zeros(n)
    y = rng.poisson(np.exp(X @ [0.6, 0.4, -0.2] + off)).astype(float)
    y[rng.random(n) < pi] = 0.0
    w = rng.choice([0.5, 1.0, 3.0], n) if weights else np.ones(n)
    return ModelData(X, y, np.ones(n), w, off, make_family("poisson", True), ())


def _independent_zip_optimum(d):
    """(beta, logit pi) maximising the weighted zero-inflated Poisson log-likelihood
    written with ``scipy.stats.poisson``, by BFGS then Nelder-Mead from beta = 0, pi = 1/2."""

    def nll(x):
        beta, lp = x[:-1], x[-1]
        mu = np.exp(d.X @ beta + d.offset)
        pi = 1.0 / (1.0 + np.exp(-lp))
        p = (1.0 - pi) * stats.poisson.pmf(d.y, mu) + pi * (d.y == 0)
        return -2.0 * np.sum(d.weights * np.log(p))

    res = optimize.minimize(nll, np.zeros(d.n_beta + 1), method="BFGS", options={"gtol": 1e-7})
    res = optimize.minimize(
        nll, res.x, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11}
    )
    return res.x, res.fun


def test_zero_inflated_poisson_is_left_to_lbfgsb():
    """Zero-inflated Poisson counts: ``logit pi`` has its second derivatives
    (``ZeroInflated.extra_second_derivs``, for the Laplace Hessian's column), but the
    GLM's log-likelihood is not concave at the start (an indefinite Hessian there on
    ordinary data), so its optimum is L-BFGS-B's, which reaches the independent one."""
    d = _zip_data(5)
    assert not applies(d)
    obj, x0 = _start(d)
    x, value = _glm_with_extras(d, x0[:-1], x0[-1:])
    ref_x, ref_value = _independent_zip_optimum(d)
    assert value <= ref_value + 1e-6 * abs(ref_value)
    np.testing.assert_allclose(x, ref_x, atol=1e-3)


def test_hurdle_poisson_by_newton():
    """A hurdle Poisson GLM: the zero part's ``logit pi`` and the zero-truncated Poisson
    count part separate, each concave: Newton's method reaches the independent optimum
    (the zeros' share's logit; the truncated Poisson's log-likelihood maximised by BFGS
    and Nelder-Mead)."""
    rng = np.random.default_rng(9)
    n = 400
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = np.maximum(1, rng.poisson(np.exp(X @ [0.5, 0.4]))).astype(float)
    y[rng.random(n) < 0.35] = 0.0
    fam = make_family("poisson", False, hurdle=True)
    d = ModelData(X, y, np.ones(n), np.ones(n), np.zeros(n), fam, ())
    assert applies(d)
    obj, x0 = _start(d)
    x, value, _ = newton_optimum(obj, x0)
    assert x is not None, "Newton's method stopped short"
    pos = y > 0

    def nll(beta):
        mu = np.exp(X[pos] @ beta)
        return -np.sum(stats.poisson.logpmf(y[pos], mu) - np.log(-np.expm1(-mu)))

    res = optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-8})
    res = optimize.minimize(nll, res.x, method="Nelder-Mead", options={"xatol": 1e-10})
    share = np.mean(y == 0)
    np.testing.assert_allclose(x, [*res.x, np.log(share / (1 - share))], atol=2e-5)
    ref = 2.0 * res.fun - 2.0 * n * (share * np.log(share) + (1 - share) * np.log(1 - share))
    assert value <= ref + 1e-8 * abs(ref)


def _ordinal_data(seed, link, threshold="flexible", n_classes=5, weights=False, n=400):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.uniform(0, 2, n)])
    X = X - X.mean(axis=0)
    lat = X @ [0.8, -0.5] + rng.logistic(size=n)
    cuts = np.linspace(-1.5, 1.5, n_classes - 1)
    y = np.digitize(lat, cuts).astype(float)
    w = rng.choice([0.5, 1.0, 2.0], n) if weights else np.ones(n)
    fam = make_family("ordinal", link=link, n_classes=n_classes, threshold=threshold)
    return ModelData(X, y, np.ones(n), w, np.zeros(n), fam, ())


_CDF = {"logit": stats.logistic.cdf, "probit": stats.norm.cdf}


def _independent_ordinal_optimum(d, link):
    """(beta, threshold parameters) maximising the weighted cumulative link likelihood
    written with scipy's distribution functions, by BFGS then Nelder-Mead."""
    J = d.family.J
    k = d.y.astype(int)

    def nll(x):
        beta, a = x[: d.n_beta], x[d.n_beta :]
        alpha = np.concatenate([[-np.inf], J @ a, [np.inf]])
        if np.any(np.diff(alpha) <= 0):
            return np.inf
        eta = d.X @ beta
        p = _CDF[link](alpha[k + 1] - eta) - _CDF[link](alpha[k] - eta)
        return -2.0 * np.sum(d.weights * np.log(p))

    x0 = np.concatenate([np.zeros(d.n_beta), d.default_extra()])
    with np.errstate(invalid="ignore"):  # (BFGS's differences across an order's edge)
        res = optimize.minimize(nll, x0, method="BFGS", options={"gtol": 1e-8})
    options = {"xatol": 1e-9, "fatol": 1e-11}
    res = optimize.minimize(nll, res.x, method="Nelder-Mead", options=options)
    return res.x, res.fun


@pytest.mark.parametrize("link", ["logit", "probit"])
@pytest.mark.parametrize(
    "threshold, n_classes, weights",
    [
        ("flexible", 5, False),
        ("flexible", 2, True),
        ("equidistant", 5, True),
        ("symmetric", 4, False),
    ],
)
def test_ordinal_newton_reaches_the_independent_optimum(link, threshold, n_classes, weights):
    """A cumulative link model's coefficients and thresholds by Newton's method (the
    thresholds' derivatives, ``extra_glm_derivs``), against scipy's distribution
    functions maximised by BFGS and Nelder-Mead; in a few steps."""
    d = _ordinal_data(4, link, threshold, n_classes, weights)
    assert applies(d)
    obj = GLMObjective(d)
    x0 = np.concatenate([np.zeros(d.n_beta), d.default_extra()])
    x, value, _ = newton_optimum(obj, x0)
    assert x is not None, "Newton's method stopped short"
    ref_x, ref_value = _independent_ordinal_optimum(d, link)
    assert value <= ref_value + 1e-9 * abs(ref_value)
    np.testing.assert_allclose(x, ref_x, atol=1e-5)
    v, g = GLMObjective(d).value_and_grad(x)
    # (the stop is on Newton's decrement, a gain below 1e-13 |log L|, as for NB2)
    assert v == pytest.approx(value, rel=1e-13) and np.max(np.abs(g)) < 1e-4
    assert obj.n_evals <= 8


def test_ordinal_models_newton_does_not_take():
    """A latent distribution that is not log-concave (cauchit) and scale effects (a
    block with a design) stay with L-BFGS-B."""
    assert not applies(_ordinal_data(1, "cauchit"))
    d = _ordinal_data(1, "logit")
    fam = make_family("ordinal", n_classes=5, scale=True)
    designs = (None,) * (len(fam.blocks) - 1) + (np.ones((len(d.y), 1)),)
    scaled = ModelData(d.X, d.y, d.trials, d.weights, d.offset, fam, (), extra_designs=designs)
    assert not applies(scaled)
