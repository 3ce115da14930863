"""Tier 1: properties of the numerics (derivatives, quadrature, invariances)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from objectives import assert_same_objective, numeric_gradient, simulated_objective

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._design import theta_layout
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import ModelData, Objective, agq_deviance, make_factor_data
from sklearn_glmm.datasets import make_longitudinal


def _objective(fam_name, zi=False, qs=(2,), levels=(30,), n=500, seed=0, n_agq=1):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, g, n) for g in levels]
    return simulated_objective(fam_name, zi, codes, qs, rng, 0.7, n_agq)


_numeric_gradient = numeric_gradient


@pytest.mark.parametrize(
    "fam,zi,qs,levels",
    [
        ("binomial", False, (1,), (30,)),
        ("binomial", False, (2,), (30,)),
        ("poisson", False, (2,), (30,)),
        ("negbin", False, (2,), (30,)),
        ("poisson", True, (1,), (30,)),
        ("negbin", True, (2,), (30,)),
        ("binomial", False, (2, 1), (30, 8)),
        ("negbin", True, (1, 1, 2), (40, 10, 5)),
    ],
)
def test_analytic_gradient_matches_finite_differences(fam, zi, qs, levels):
    obj, params = _objective(fam, zi, qs, levels)
    _, g = obj.value_and_grad(params)
    num = _numeric_gradient(obj, params)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-4)


def test_agq_with_one_node_equals_laplace():
    obj, params = _objective("binomial", qs=(1,), levels=(40,))
    lap = obj.evaluate(params)
    obj.n_agq = 1
    assert agq_deviance(obj, params[3:4]) == pytest.approx(lap, rel=1e-12)


def test_agq_gradient_matches_finite_differences():
    obj, params = _objective("negbin", qs=(1,), levels=(40,), n_agq=11)
    _, g = obj.value_and_grad(params)
    num = _numeric_gradient(obj, params)
    # the exact derivative of the quadrature sum (nodes moving with the mode)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-4)


def test_agq_converges_with_nodes():
    obj, params = _objective("binomial", qs=(1,), levels=(40,), n_agq=9)
    vals = []
    for k in (9, 15, 25):
        obj.n_agq = k
        vals.append(obj.evaluate(params))
    assert abs(vals[1] - vals[2]) < 1e-4
    assert abs(vals[0] - vals[2]) < 1e-2


@pytest.mark.parametrize("name", ["binomial", "poisson", "negbin"])
def test_family_derivatives(name):
    fam = make_family(name)
    rng = np.random.default_rng(1)
    eta = rng.normal(size=50)
    y = rng.integers(0, 2 if name == "binomial" else 6, 50).astype(float)
    extra = fam.default_extra() + 0.4
    t = np.ones(50)
    d = fam.derivs(y, eta, t, t, extra)
    h = 1e-6
    dp, dm = fam.derivs(y, eta + h, t, t, extra), fam.derivs(y, eta - h, t, t, extra)
    np.testing.assert_allclose(d.d1, (dp.loglik - dm.loglik) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d.w, -(dp.d1 - dm.d1) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d.w3, (dp.w - dm.w) / (2 * h), rtol=1e-5, atol=1e-7)


def test_binomial_log_density_matches_scipy_far_into_the_tails():
    from scipy import special, stats

    fam = make_family("binomial")
    eta = np.array([-745.0, -700.0, -40.0, -3.0, -1e-12, 0.0, 2.5, 38.0, 700.0, 745.0])
    n = np.array([1.0, 3.0, 1.0, 7.0, 2.0, 1.0, 5.0, 1.0, 4.0, 1.0])
    y = np.array([0.0, 1.0, 1.0, 2.0, 1.0, 0.0, 5.0, 0.0, 4.0, 1.0])
    mu = special.expit(eta)
    d = fam.derivs(y, eta, n, None)
    log_p = y * eta - n * np.logaddexp(0.0, eta) + fam.constant(y, n)
    np.testing.assert_allclose(d.loglik, log_p, rtol=1e-13)
    keep = np.abs(eta) < 30  # beyond, mu rounds to 0 or 1 for scipy
    np.testing.assert_allclose(d.loglik[keep], stats.binom.logpmf(y, n, mu)[keep], rtol=1e-9)
    np.testing.assert_allclose(d.d1, y - n * mu, rtol=1e-13, atol=1e-15)  # y - n mu cancels
    np.testing.assert_allclose(d.w, n * mu * special.expit(-eta), rtol=1e-12, atol=1e-300)
    # one trial per row may be given as None
    binary = n == 1.0
    d1 = fam.derivs(y[binary], eta[binary], None, None)
    for a, b in zip((d1.loglik, d1.d1, d1.w, d1.w3), (d.loglik, d.d1, d.w, d.w3)):
        np.testing.assert_array_equal(a, b[binary])


@pytest.mark.parametrize("name", ["poisson", "negbin"])
def test_pmf_sums_to_one_and_deviance_zero_at_y(name):
    fam = make_family(name, zero_inflation=True)
    extra = fam.default_extra()
    mu = np.array([0.5, 3.0, 12.0])
    p = fam.pmf(np.arange(2000)[None, :], mu[:, None], extra)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-10)
    y = np.array([1.0, 3.0, 7.0])
    base = make_family(name)
    np.testing.assert_allclose(base.unit_deviance(y, y, np.ones(3), base.default_extra()), 0.0)


@pytest.mark.parametrize("name, extra", [("poisson", (-1.0,)), ("negbin", (1.0, -1.0))])
def test_zero_inflated_derivatives_are_finite_at_huge_means(name, extra):
    # a zero at eta 700 (the cap): r = P(count part | 0) is 0 and a1 = d log f(0) / d eta
    # is -1e304 for the Poisson, so r a1^2 taken as r (a1^2) was NaN; it is 0. Below,
    # against the same terms at eta 30, where nothing overflows
    fam = make_family(name, zero_inflation=True)
    y = np.array([0.0, 0.0, 1.0, 5.0])
    const = fam.constant(y, None)
    for eta0 in (30.0, 700.0, 750.0):
        eta = np.full(4, eta0)
        with np.errstate(over="ignore"):
            d = fam.derivs(y, eta, None, None, extra, const)
            ex = fam.extra_derivs(y, eta, None, None, extra, const)
        for v in (d.loglik, d.d1, d.w, d.w3, *ex):
            assert np.all(np.isfinite(v)), (eta0, v)
        # the zeros come from the inflation alone (the NB's f(0) at eta 30 is e^-78): log
        # pi, and no curvature
        np.testing.assert_allclose(d.loglik[:2], -np.logaddexp(0.0, -extra[-1]), rtol=1e-12)
        assert np.all(np.abs(d.w[:2]) < 1e-30) and np.all(np.abs(d.w3[:2]) < 1e-30)


def _fit(est, df, cols=("time", "treatment"), **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(df[list(cols)], df["y"], groups=df["id"], **kw)


@pytest.fixture(scope="module")
def binary_df():
    df, _ = make_longitudinal("binomial", n_groups=120, n_waves=5, random_state=3)
    return df


def test_row_permutation_and_relabelling_invariance(binary_df):
    a = _fit(BinomialGLMM(), binary_df)
    perm = np.random.default_rng(0).permutation(len(binary_df))
    df2 = binary_df.iloc[perm].copy()
    df2["id"] = "person_" + df2["id"].astype(str)
    b = _fit(BinomialGLMM(), df2)
    assert b.loglik_ == pytest.approx(a.loglik_, abs=1e-6)
    np.testing.assert_allclose(b.coef_, a.coef_, atol=1e-5)


def test_duplicated_rows_equal_weight_two(binary_df):
    a = _fit(BinomialGLMM(), binary_df, sample_weight=np.full(len(binary_df), 2.0))
    b = _fit(BinomialGLMM(), pd.concat([binary_df, binary_df]))
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-5)
    assert a.loglik_ == pytest.approx(b.loglik_, abs=1e-5)


def test_rescaled_column_rescales_coefficient(binary_df):
    a = _fit(BinomialGLMM(), binary_df)
    df2 = binary_df.copy()
    df2["time"] = df2["time"] * 1000.0
    b = _fit(BinomialGLMM(), df2)
    assert b.coef_[0] * 1000.0 == pytest.approx(a.coef_[0], rel=1e-5)
    assert b.loglik_ == pytest.approx(a.loglik_, abs=1e-6)


def test_caller_data_unchanged_and_deterministic(binary_df):
    before = binary_df.copy()
    a = _fit(BinomialGLMM("1 + time"), binary_df)
    b = _fit(BinomialGLMM("1 + time"), binary_df)
    pd.testing.assert_frame_equal(binary_df, before)
    assert a.loglik_ == b.loglik_
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_recovers_known_parameters_at_large_n():
    df, truth = make_longitudinal(
        "poisson", n_groups=600, n_waves=6, re_sd=0.5, slope_sd=0.2, re_corr=0.3, random_state=7
    )
    m = _fit(PoissonGLMM("1 + time"), df)
    fe = m.fixed_effects_
    for name, value in truth["fixed_effects"].items():
        assert abs(fe.loc[name, "estimate"] - value) < 4 * fe.loc[name, "std_error"]
    cov = m.random_effects_cov_["id"].to_numpy()
    assert np.sqrt(cov[0, 0]) == pytest.approx(0.5, abs=0.06)
    assert np.sqrt(cov[1, 1]) == pytest.approx(0.2, abs=0.04)


def test_negbin_recovers_theta():
    df, truth = make_longitudinal(
        "negbin", n_groups=400, n_waves=6, re_sd=0.5, nb_theta=2.0, random_state=11
    )
    m = _fit(NegBinGLMM(), df)
    assert m.theta_ == pytest.approx(2.0, rel=0.15)


def test_perfectly_correlated_slope_is_reported_singular():
    # b_slope = 0.3 b_intercept exactly: the fit lands on |correlation| = 1, a boundary
    # even though no Cholesky diagonal is below lme4's 1e-4 in absolute terms
    rng = np.random.default_rng(5)
    n_groups, waves = 300, 8
    ids = np.repeat(np.arange(n_groups), waves)
    t = np.tile(np.arange(waves, dtype=float), n_groups)
    b0 = rng.normal(0, 0.6, n_groups)
    y = rng.poisson(np.exp(1.0 + 0.05 * t + b0[ids] + 0.3 * b0[ids] * t))
    X = pd.DataFrame({"time": t})
    with pytest.warns(UserWarning, match="singular"):
        m = PoissonGLMM("1 + time").fit(X, y, groups=ids)
    assert m.is_singular_
    cov = m.random_effects_cov_["group"].to_numpy()
    assert abs(cov[0, 1]) / np.sqrt(cov[0, 0] * cov[1, 1]) > 0.999


@pytest.mark.parametrize("qs,levels", [((2, 1), (60, 40)), ((1, 2, 1), (80, 30, 6))])
def test_sparse_coupling_solver_agrees_with_dense(monkeypatch, qs, levels):
    import sklearn_glmm._engine.linalg as linalg

    dense, params = _objective("poisson", qs=qs, levels=levels, n=800)
    monkeypatch.setattr(linalg, "SPARSE_COUPLING_MIN", 0)
    monkeypatch.setattr(linalg, "SPARSE_COUPLING_DENSITY", np.inf)
    sparse, _ = _objective("poisson", qs=qs, levels=levels, n=800)
    assert type(sparse.solver).__name__ == "SparseCoupledSolver"
    assert type(dense.solver).__name__ == "BlockedSolver"
    assert_same_objective(sparse, dense, params)


@pytest.mark.parametrize("order", ["runs_in_order", "runs_shuffled", "interleaved"])
def test_group_sums_of_matrices_match_a_direct_sum(order):
    from sklearn_glmm._engine.groups import GroupIndex

    rng = np.random.default_rng(3)
    codes = np.repeat(np.arange(7), rng.integers(1, 5, 7))
    if order == "runs_shuffled":
        codes = rng.permutation(7)[codes]
    elif order == "interleaved":
        codes = rng.permutation(codes)
    g = GroupIndex(codes, 7)
    assert g.contiguous == (order != "interleaved")
    V = rng.normal(size=(len(codes), 3))
    expected = np.array([V[codes == j].sum(axis=0) for j in range(7)])
    np.testing.assert_allclose(g.sum(V), expected)
    np.testing.assert_allclose(g.sum(V[:, 1]), expected[:, 1])
    # the level sums of the rows' outer products (laid out rows last where contiguous)
    W = rng.normal(size=(len(codes), 2))
    outer = np.array([V[codes == j].T @ W[codes == j] for j in range(7)])
    np.testing.assert_allclose(g.outer_sums(V, W), outer, rtol=1e-13, atol=1e-13)
    # rows last: (..., n) to the levels' sums (..., n_levels), and back to the rows
    B = rng.normal(size=(2, 3, len(codes)))
    last = np.stack([B[..., codes == j].sum(axis=-1) for j in range(7)], axis=-1)
    np.testing.assert_allclose(g.sum_last(B), last, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(g.expand_last(last), last[..., codes])


def test_rows_last_sums_leave_a_level_without_rows_at_zero():
    from sklearn_glmm._engine.groups import GroupIndex

    codes = np.array([2, 0, 2, 3, 0])  # level 1 has no rows, the others interleaved
    g = GroupIndex(codes, 4)
    v = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(g.sum_last(v), [[7.0, 0.0, 4.0, 4.0]])


@pytest.mark.parametrize(
    "fam,qs,levels",
    [
        ("binomial", (1,), (30,)),
        ("poisson", (1,), (30,)),
        ("negbin", (1,), (30,)),
        ("poisson", (2,), (30,)),
        ("binomial", (2, 1), (30, 8)),
        ("poisson", (1, 1, 2), (40, 10, 5)),
    ],
)
def test_mode_predictor_is_the_derivative_of_the_modes(fam, qs, levels):
    """Each evaluation starts from the last modes moved by du/d(beta, theta)."""
    obj, params = _objective(fam, qs=qs, levels=levels)
    obj.value_and_grad(params)
    u0, (_, ref, J) = obj.u.copy(), obj._predictor
    np.testing.assert_array_equal(ref, params[: len(ref)])
    h = 1e-6
    for k in range(J.shape[1]):
        e = np.zeros_like(params)
        e[k] = h
        obj.evaluate(params + e)
        np.testing.assert_allclose((obj.u - u0) / h, J[:, k], rtol=1e-3, atol=1e-5)
        obj.u = u0.copy()  # a start that is not the predictor's: predictor not used
        v_plain = obj.evaluate(params - e)
        obj.u, obj._last_key = np.zeros_like(u0), None  # from zero, not remembered
        assert obj.evaluate(params - e) == pytest.approx(v_plain, abs=1e-9)


def test_moment_start_is_near_the_random_effect_sd():
    """The starting Cholesky diagonal estimates the random-intercept SD from the GLM."""
    from sklearn_glmm._engine.start import starting_point

    rng = np.random.default_rng(11)
    G, m, sd = 300, 20, 0.8
    codes = np.repeat(np.arange(G), m)
    n = G * m
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.poisson(np.exp(0.5 + 0.3 * X[:, 1] + rng.normal(0, sd, G)[codes])).astype(float)
    factors = make_factor_data([codes], [np.ones((n, 1))], [G], [theta_layout(1, False)])
    data = ModelData(X, y, np.ones(n), np.ones(n), np.zeros(n), make_family("poisson"), factors)
    theta0 = starting_point(Objective(data))[2]
    assert theta0 == pytest.approx(sd, rel=0.25)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("qs,levels", [((2,), (30,)), ((2, 1), (60, 40)), ((1, 2, 1), (80, 30, 6))])
def test_solvers_solve_several_right_hand_sides_at_once(monkeypatch, sparse, qs, levels):
    import sklearn_glmm._engine.linalg as linalg

    if sparse:
        if len(qs) == 1:
            pytest.skip("one factor has no coupling block")
        monkeypatch.setattr(linalg, "SPARSE_COUPLING_MIN", 0)
        monkeypatch.setattr(linalg, "SPARSE_COUPLING_DENSITY", np.inf)
    obj, params = _objective("poisson", qs=qs, levels=levels, n=800)
    obj.evaluate(params)
    R = np.random.default_rng(5).normal(size=(obj.Q, 4))
    X = obj.solver.solve(R)
    assert X.shape == R.shape
    for k in range(4):
        np.testing.assert_allclose(X[:, k], obj.solver.solve(R[:, k]), rtol=1e-12, atol=1e-14)


def test_negbin_remembered_log_gamma_ratio_follows_theta_and_data():
    fam = make_family("negbin")
    rng = np.random.default_rng(2)
    y = rng.poisson(3.0, 40).astype(float)
    eta = rng.normal(1.0, 0.5, 40)
    t = np.ones(40)
    for log_theta in (0.3, 0.3, 1.7, 0.3):
        fresh = make_family("negbin").derivs(y, eta, t, None, np.array([log_theta]))
        np.testing.assert_array_equal(
            fam.derivs(y, eta, t, None, np.array([log_theta])).loglik, fresh.loglik
        )
    y2 = y.copy()
    y2[0] += 1.0  # other data at the same theta
    np.testing.assert_array_equal(
        fam.derivs(y2, eta, t, None, np.array([0.3])).loglik,
        make_family("negbin").derivs(y2, eta, t, None, np.array([0.3])).loglik,
    )
    import pickle

    assert pickle.loads(pickle.dumps(fam))._memo is None


def test_scaled_lbfgsb_finds_the_same_bounded_minimum():
    from sklearn_glmm._engine.lbfgsb import _run_lbfgsb

    A = np.array([[400.0, 30.0, 0.0], [30.0, 9.0, 0.5], [0.0, 0.5, 0.04]])
    b = np.array([10.0, -3.0, 0.2])

    def fun(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    bounds = [(None, None), (None, None), (0.0, None)]
    x0 = np.array([1.0, 1.0, 1.0])
    plain = _run_lbfgsb(fun, x0, bounds, 200, 1e-14)
    scaled = _run_lbfgsb(fun, x0, bounds, 200, 1e-14, np.sqrt(np.diag(A)))
    np.testing.assert_allclose(scaled.x, plain.x, atol=1e-6)
    assert scaled.fun == pytest.approx(plain.fun, abs=1e-10)
    np.testing.assert_allclose(scaled.jac, fun(scaled.x)[1], atol=1e-12)  # in x units


def test_singular_fit_reports_an_exact_zero_variance():
    rng = np.random.default_rng(4)
    n, G = 400, 40
    ids = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.2 + 0.5 * x)))).astype(int)  # no group effect
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM().fit(pd.DataFrame({"x": x}), y, groups=ids)
        glm = BinomialGLMM().fit(pd.DataFrame({"x": x}), y)
    if not m.is_singular_:
        pytest.skip("this draw has a positive variance estimate")
    assert m.random_effects_cov_["group"].to_numpy()[0, 0] == 0.0
    assert m.loglik_ == pytest.approx(glm.loglik_, abs=1e-6)
    assert np.isnan(m.confint(method="wald").iloc[-1]["upper"])  # on the bound: no Wald limit


# -- the level-constant test of random-slope columns ----------------------------------
@pytest.mark.parametrize("value", [0.3, 1 / 3, 1e-3 / 3, 2.9])
@pytest.mark.parametrize("n", [10, 57, 1000])
def test_a_constant_column_is_not_taken_for_a_predictor_of_the_level(value, n):
    # a constant's squares about its mean are the mean's rounding (0.3 over ten rows:
    # 3e-32, and 0 within each level): a constant column (an intercept's) is not a
    # column varying between levels only
    from sklearn_glmm._engine.groups import level_constant_columns

    codes = np.repeat(np.arange(n // 2 + 1), 2)[:n]
    assert not level_constant_columns(codes, np.full(n, value))[0]


def test_level_spreads_of_parts_pool_to_the_whole():
    # a partitioned fit pools its partitions' spreads (each level's rows in one part)
    from sklearn_glmm._engine.groups import (
        level_constant_columns,
        level_constant_from_spread,
        level_spread,
        pooled_spread,
    )

    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(40), 5)
    shifts = 1e6 + rng.normal(size=40)  # far from zero: a naive pooling cancels
    Z = np.c_[
        np.ones(200),
        shifts[codes],
        rng.normal(size=200),
        shifts[codes] + 1e-5 * rng.normal(size=200),
    ]
    whole = level_spread(codes, Z)
    parts = [
        level_spread(np.unique(codes[a:b], return_inverse=True)[1], Z[a:b])
        for a, b in [(0, 50), (50, 130), (130, 200), (200, 200)]
    ]
    np.testing.assert_allclose(pooled_spread(parts), whole, rtol=1e-9, atol=1e-12)
    # a constant column's SD is 0, not its mean's rounding (it read "far from zero")
    from sklearn_glmm._engine.groups import spread_sd

    assert spread_sd(level_spread(codes, np.full(200, 0.3)))[0] == 0.0
    expected = [False, True, False, True]
    assert list(level_constant_columns(codes, Z)) == expected
    assert list(level_constant_from_spread(pooled_spread(parts))) == expected


def test_level_variance_moments_recover_the_covariance_of_a_level_predictors_slope():
    # each level's effect acts through its one row t_j = (1, x_j): its variance is
    # t_j' S t_j, and the squared one-step effects around the model without random
    # effects, less their sampling variance, estimate S (the start of a restart);
    # checked against the S drawn from, with many levels and large counts
    from sklearn_glmm._engine.objective import ModelData, Objective, make_factor_data
    from sklearn_glmm._engine.restarts import _level_variance_thetas

    rng = np.random.default_rng(5)
    G, per = 4000, 3
    codes = np.repeat(np.arange(G), per)
    x = rng.normal(size=G)[codes]
    S = np.array([[0.25, -0.12], [-0.12, 0.16]])
    b = rng.multivariate_normal(np.zeros(2), S, size=G)
    eta = 5.0 + 0.3 * x + b[codes, 0] + b[codes, 1] * x
    y = rng.poisson(np.exp(eta)).astype(float)
    X = np.column_stack([np.ones(len(y)), x])
    Z = X.copy()
    factors = make_factor_data([codes], [Z], [G], [theta_layout(2, False)])
    ones = np.ones(len(y))
    data = ModelData(X, y, ones, ones, np.zeros(len(y)), make_family("poisson", False), factors)
    f = data.factors[0]
    assert f.level_constant and f.rows_alike_within_levels
    obj = Objective(data)
    glm = np.array([np.log(y.mean()), 0.0, 0.0, 0.0, 0.0])  # (off along t: taken out)
    full, edge = _level_variance_thetas(f, lambda shifts: obj.level_effects(0, glm, shifts))
    L = np.zeros((2, 2))
    L[f.theta_rows, f.theta_cols] = full
    np.testing.assert_allclose(L @ L.T, S, atol=0.04)
    # the rank-one start on the boundary: the same SDs, correlation -1 (S's sign)
    E = np.zeros((2, 2))
    E[f.theta_rows, f.theta_cols] = edge
    np.testing.assert_allclose(np.diag(E @ E.T), np.diag(L @ L.T), rtol=1e-12)
    assert E[1, 1] == 0.0 and E[1, 0] < 0.0 < E[0, 0]
    # a diagonal covariance (diag(1 + x)): its variances, one start
    S_diag = np.diag([0.25, 0.16])
    b = rng.multivariate_normal(np.zeros(2), S_diag, size=G)
    y = rng.poisson(np.exp(5.0 + 0.3 * x + b[codes, 0] + b[codes, 1] * x)).astype(float)
    diag_f = make_factor_data([codes], [Z], [G], [theta_layout(2, True)])
    data = ModelData(X, y, ones, ones, np.zeros(len(y)), make_family("poisson", False), diag_f)
    obj = Objective(data)
    glm = np.array([np.log(y.mean()), 0.0, 0.0, 0.0])
    (sds,) = _level_variance_thetas(data.factors[0], lambda s: obj.level_effects(0, glm, s))
    np.testing.assert_allclose(sds, [0.5, 0.4], atol=0.04)
    # a slope varying within levels: not alike
    Zw = np.column_stack([np.ones(len(y)), rng.normal(size=len(y))])
    other = make_factor_data([codes], [Zw], [G], [theta_layout(2, False)])[0]
    assert not other.rows_alike_within_levels


def test_log1p_exp_is_logaddexp_to_a_unit_in_the_last_place():
    from sklearn_glmm._engine.families.base import log1p_exp

    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    x = np.concatenate([np.linspace(-750.0, 750.0, 3001), [-36.7, -1e-300, 0.0, 1e-300, 36.7]])
    got = log1p_exp(x)
    want = np.array([float(mp.log1p(mp.exp(mp.mpf(float(v))))) for v in x])
    tiny = want < 1e-300  # below the smallest normal both round to 0 or a subnormal
    np.testing.assert_allclose(got[~tiny], want[~tiny], rtol=4e-16, atol=0.0)
    assert np.all(got[tiny] <= 1e-300)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(
            log1p_exp(np.array([np.inf, -np.inf, np.nan])), [np.inf, 0.0, np.nan]
        )
    # integers, a 0-d array and a scalar give what np.logaddexp gives
    np.testing.assert_allclose(log1p_exp(np.arange(3)), np.logaddexp(0.0, np.arange(3)), rtol=4e-16)
    assert log1p_exp(np.array(800.0)) == 800.0
    assert log1p_exp(-2.0) == np.logaddexp(0.0, -2.0)


def test_negbin_loglik_where_the_mean_underflows():
    # mu = exp(-800) is 0 in float64: a zero count has log p = 0 (theta log(theta / (theta
    # + 0))), a positive one -inf; the rows around them keep scipy's values
    from scipy import stats

    fam = make_family("negbin")
    y = np.array([0.0, 3.0, 0.0, 2.0, 5.0])
    eta = np.array([-800.0, -800.0, 0.3, -2.0, 1.5])
    with np.errstate(divide="ignore"):
        der = fam.derivs(y, eta, None, None, (np.log(1.7),))
        want = stats.nbinom.logpmf(y, 1.7, 1.7 / (1.7 + np.exp(eta)))
    assert der.loglik[0] == 0.0 and der.loglik[1] == -np.inf
    np.testing.assert_allclose(der.loglik[2:], want[2:], rtol=1e-13)
