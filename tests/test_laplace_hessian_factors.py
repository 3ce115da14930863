"""The closed-form Hessian of the Laplace objective for several grouping factors
(crossed or nested)."""

from __future__ import annotations

import numpy as np
import pytest
from test_laplace_hessian import (
    _central_hessian,
    _objective,
    _vector_objective,
    check_closed_block,
)

from sklearn_glmm._design import theta_layout
from sklearn_glmm._engine import laplace_hessian as lh
from sklearn_glmm._engine import laplace_hessian_factors as lf
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.hessian import hessian
from sklearn_glmm._engine.objective import ModelData, Objective, make_factor_data


def _two_factors(
    family,
    rng,
    *,
    design="crossed",
    slope=False,
    diagonal=False,
    trials=False,
    weights=False,
    offset=False,
    link="logit",
    n_a=20,
    n_b=8,
    per=5,
):
    """Two grouping factors: ``a`` (``n_a`` levels, an intercept, or intercept and
    slope) crossed with ``b`` (``n_b`` levels) or with ``a`` nested in ``b``."""
    n = n_a * per
    a = rng.permutation(np.repeat(np.arange(n_a), per))
    if design == "crossed":
        b = rng.integers(0, n_b, size=n)
    else:  # a nested in b: each level of a in one level of b
        b = (a * n_b) // n_a
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    ua, ub = rng.normal(size=(n_a, 2)) * [0.7, 0.4], rng.normal(size=n_b) * 0.5
    eta = X @ [0.2, 0.5, -0.3] + ua[a, 0] + ub[b] + (ua[a, 1] * X[:, 1] if slope else 0.0)
    t = np.ones(n)
    if family == "binomial":
        if trials:
            t = rng.integers(1, 6, size=n).astype(float)
        y = rng.binomial(t.astype(int), 1.0 / (1.0 + np.exp(-eta))).astype(float)
        fam = make_family("binomial", False, link=None if link == "logit" else link)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
        fam = make_family(family, False)
    Za = X[:, :2] if slope else np.ones((n, 1))
    qa = Za.shape[1]
    layouts = [theta_layout(qa, diagonal), theta_layout(1, False)]
    factors = make_factor_data([a, b], [Za, np.ones((n, 1))], [n_a, n_b], layouts)
    w = rng.uniform(0.5, 2.0, size=n) if weights else np.ones(n)
    o = rng.normal(scale=0.4, size=n) if offset else np.zeros(n)
    return Objective(ModelData(X, y, t, w, o, fam, factors), 1)


CASES = [
    dict(family="poisson"),
    dict(family="poisson", design="nested", weights=True, offset=True),
    dict(family="binomial"),
    dict(family="binomial", trials=True, weights=True, offset=True),
    dict(family="binomial", design="nested", link="probit", trials=True),
    dict(family="binomial", link="cloglog", per=3),
    dict(family="poisson", slope=True),
    dict(family="binomial", slope=True, diagonal=True, trials=True, design="nested"),
]


def _theta(case, values):
    """``values``: the first factor's SDs (and correlation's Cholesky entry), then the
    second's SD."""
    first, second = values
    if not case.get("slope"):
        return [first[0], second]
    if case.get("diagonal"):
        return [first[0], first[2], second]
    return [*first, second]


@pytest.mark.parametrize("k", range(len(CASES)))
@pytest.mark.parametrize(
    "values",
    [((0.7, 0.2, 0.4), 0.5), ((0.05, 0.3, 0.2), 1.2), ((1.5, -0.4, 0.0), 0.0)],
    ids=["typical", "small", "zeros"],
)
def test_matches_differences_of_the_gradient(k, values):
    case = CASES[k]
    rng = np.random.default_rng([k, int(100 * values[1])])
    obj = _two_factors(rng=rng, **case)
    assert lf.applies(obj) and not lh.applies(obj)
    x = np.array([0.1, 0.4, -0.2, *_theta(case, values)])
    obj.value_and_grad(x)
    H = lf.factors_hessian(obj)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(H, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
    assert np.array_equal(H, H.T)


@pytest.mark.parametrize("family", ["poisson", "binomial"])
@pytest.mark.parametrize("slope", [False, True])
def test_one_factor_is_the_level_by_level_form(family, slope):
    """With one factor the form for several is :mod:`.laplace_hessian`'s, computed
    another way (the traces as products over all random effects)."""
    rng = np.random.default_rng([len(family), slope])
    if slope:
        obj = _vector_objective(family, rng, shuffle=True)
        x = np.array([0.1, 0.4, -0.2, 0.7, 0.2, 0.4])
    else:
        obj = _objective(family, rng, weights=True, trials=family == "binomial", shuffle=True)
        x = np.array([0.1, 0.4, -0.2, 0.6])
    obj.value_and_grad(x)
    ref = lh.laplace_hessian(obj)
    obj._cols = obj._columns()  # (one factor's objective makes its columns on request)
    H = lf.factors_hessian(obj)
    np.testing.assert_allclose(H, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_negative_binomial_block_and_theta_column():
    """NB2 with two factors: the (beta, theta) block in closed form, ``log theta``'s row
    and column by differences of the gradient (the Hessian the fit takes)."""
    rng = np.random.default_rng(5)
    obj = _two_factors("negbin", rng, weights=True)
    assert lf.applies(obj)
    x = np.array([0.1, 0.4, -0.2, 0.6, 0.4, 1.3])
    obj.value_and_grad(x)
    block = lf.factors_hessian(obj)
    H = hessian(obj, x)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(block, ref[:5, :5], atol=1e-6 * np.abs(ref[:5, :5]).max(), rtol=0)
    # (the fit's under one BLAS thread: the same to rounding)
    np.testing.assert_allclose(H[:5, :5], block, rtol=1e-12, atol=0)
    np.testing.assert_allclose(H, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)


def test_fit_uses_it_where_it_applies_and_differences_above(monkeypatch):
    """``hessian.hessian`` takes the closed form for a small crossed model, and
    central differences once its matrices exceed :data:`MAX_CELLS`: the two agree."""
    rng = np.random.default_rng(9)
    obj = _two_factors("binomial", rng, trials=True)
    x = np.array([0.1, 0.4, -0.2, 0.6, 0.4])
    exact = hessian(obj, x)
    evals = obj.n_evals
    f0 = obj.data.factors[0]
    Q2 = obj.Q - f0.n_levels * f0.q  # the random effects outside the first factor
    monkeypatch.setattr(lf, "MAX_CELLS", len(x) * obj.Q * Q2 - 1)
    differences = hessian(obj, x)
    assert obj.n_evals - evals >= 2 * len(x)  # central differences did run
    np.testing.assert_allclose(differences, exact, atol=1e-5 * np.abs(exact).max(), rtol=0)


def test_rows_in_chunks_give_the_same_hessian(monkeypatch):
    """The rows' forms are taken in chunks of rows (:data:`ROW_CHUNK` cells of ``G'x_i``
    each): chunks of 64 rows give the Hessian of one chunk, slopes and both factors'
    covariance parameters included."""
    rng = np.random.default_rng(12)
    obj = _two_factors("poisson", rng, slope=True, n_a=30, per=9)
    x = np.array([0.1, 0.4, -0.2, 0.6, 0.2, 0.3, 0.5])
    obj.value_and_grad(x)
    whole = lf.factors_hessian(obj)
    monkeypatch.setattr(lf, "ROW_CHUNK", 1)
    assert len(obj.data.y) > 4 * 64  # (at least 64 rows a chunk)
    chunked = lf.factors_hessian(obj)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12 * np.abs(whole).max())


@pytest.mark.parametrize(
    "n, n_a, n_b, expected",
    [(2_000, 100, 20, True), (40_000, 1_000, 800, False)],
    ids=["small", "crossed_40k"],
)
def test_the_cost_model_takes_the_cheaper_side(n, n_a, n_b, expected):
    """Timed on this machine: 2,000 rows of 100 x 20 crossed random intercepts take
    1.6 ms in closed form against 6 ms of differences; 40,000 rows of 1,000 x 800
    (``crossed_40k``'s shape) 0.8 s against 0.5 s."""
    rng = np.random.default_rng(13)
    obj = _two_factors("binomial", rng, n_a=n_a, n_b=n_b, per=n // n_a)
    assert lf.applies(obj) is expected


def test_three_nested_factors():
    """Classrooms in schools in regions: two factors outside the first, their Schur
    complement coupled."""
    rng = np.random.default_rng(11)
    n_c, per = 24, 6
    n = n_c * per
    c = rng.permutation(np.repeat(np.arange(n_c), per))
    s, r = c // 4, c // 12  # 6 schools, 2 regions
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    eta = X @ [0.3, 0.4] + 0.5 * rng.normal(size=n_c)[c] + 0.4 * rng.normal(size=6)[s]
    y = rng.poisson(np.exp(eta + 0.3 * rng.normal(size=2)[r])).astype(float)
    one = theta_layout(1, False)
    ones = np.ones((n, 1))
    factors = make_factor_data([c, s, r], [ones, ones, ones], [n_c, 6, 2], [one, one, one])
    fam = make_family("poisson", False)
    obj = Objective(ModelData(X, y, np.ones(n), np.ones(n), np.zeros(n), fam, factors), 1)
    assert lf.applies(obj)
    x = np.array([0.3, 0.4, 0.5, 0.4, 0.3])
    obj.value_and_grad(x)
    H = lf.factors_hessian(obj)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(H, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)


def test_does_not_apply_to_one_factor_or_without_a_fourth_derivative(monkeypatch):
    rng = np.random.default_rng(3)
    obj = _two_factors("poisson", rng)
    assert lf.applies(obj)
    one = _objective("poisson", rng)
    assert not lf.applies(one)
    monkeypatch.setattr(obj.data.family, "has_fourth_derivative", False)
    assert not lf.applies(obj)


@pytest.mark.parametrize("base", ["poisson", "negbin"])
def test_zero_inflated_block_in_closed_form(base):
    """Zero inflation (not log-concave, its fourth derivative at hand): the (beta,
    theta) block of two crossed factors in closed form against extrapolated differences;
    the family's parameters by differences of the gradient."""
    rng = np.random.default_rng([len(base), 11])
    obj = _two_factors("poisson", rng, weights=True, offset=True)
    y = obj.data.y.copy()
    y[rng.random(len(y)) < 0.3] = 0.0
    d = obj.data
    zi = make_family(base, True)
    obj = Objective(ModelData(d.X, y, d.trials, d.weights, d.offset, zi, d.factors), 1)
    assert lf.applies(obj)
    own = [0.8, -0.7] if base == "negbin" else [-0.7]
    check_closed_block(obj, np.array([0.1, 0.4, -0.2, 0.7, 0.5, *own]), lf.factors_hessian)


def test_large_data_state(monkeypatch):
    """On large data the state keeps fewer per-row arrays (``w3`` made again): the same
    Hessian."""
    rng = np.random.default_rng(8)
    small = _two_factors("binomial", rng, trials=True, slope=True)
    monkeypatch.setattr(Objective, "lazy_state_rows", 10)
    lean = Objective(small.data, 1)
    assert lean._lean and not small._lean
    x = np.array([0.1, 0.4, -0.2, 0.7, 0.2, 0.4, 0.5])
    small.value_and_grad(x)
    lean.value_and_grad(x)
    H = lf.factors_hessian(small)
    np.testing.assert_allclose(lf.factors_hessian(lean), H, rtol=0, atol=1e-12 * np.abs(H).max())


def test_large_curvatures_of_an_uncentred_slope():
    """Counts in the thousands on an uncentred slope (the structures fuzz's data set 75:
    an intercept near 144, curvatures of ``H`` near 1e6): ``H^-1`` through the first
    factor's Cholesky blocks and the Schur complement, as the solvers form it, keeps the
    Hessian within 5e-5 of the differences; one explicit inverse of the whole ``H`` put
    it 4.5e-4 off (a standard error 5e-3 off)."""
    from fuzz_structures import make_structure_case

    case = make_structure_case(75)
    est = case["estimator"](**case["params"])
    est.fit(case["X"], case["y"], groups=case["groups"], **case["fit_params"])
    obj = Objective(est.fit_result_.objective.data, 1)
    x = np.asarray(est.fit_record_.final, dtype=float)
    obj.value_and_grad(x)
    assert lf.applies(obj)
    exact = lf.factors_hessian(obj)
    obj.exact_hessian_block = lambda: None
    differences = hessian(obj, x)
    np.testing.assert_allclose(exact, differences, atol=5e-5 * np.abs(differences).max(), rtol=0)


def test_a_fitted_model_keeps_no_patterns():
    """The patterns made for the Hessian go with the state when the fit is done (a
    fitted model keeps its objective; its pickle stays the size it was)."""
    import pandas as pd

    from sklearn_glmm import PoissonGLMM

    rng = np.random.default_rng(4)
    obj = _two_factors("poisson", rng)
    d = obj.data
    groups = pd.DataFrame({"a": d.factors[0].codes, "b": d.factors[1].codes})
    X = pd.DataFrame({"x1": d.X[:, 1], "x2": d.X[:, 2]})
    est = PoissonGLMM(random_effects="1").fit(X, d.y, groups=groups)
    fitted = est.fit_result_.objective
    assert not any(k.startswith("_hessian") for k in vars(fitted))
    assert lf.applies(fitted)  # (so the fit's Hessian was the closed form)
