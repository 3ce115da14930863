"""The passes over rows written for memory (in place, column by column) give the values
of the plain formulas they replace."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from objectives import simulated_objective

from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm._engine.families import binomial as binomial_module
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.families.binomial import _logit_derivs
from sklearn_glmm._engine.groups import GroupIndex
from sklearn_glmm._engine.objective import GLMObjective, Objective
from sklearn_glmm._validation import as_float_vector, check_weights


def _objective(fam, qs, levels=(40,), n=600, seed=3):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, g, n) for g in levels]
    return simulated_objective(fam, False, codes, qs, rng, 0.7)


def _logit_inputs(seed, n_trials, with_trials, weighted, more=()):
    """A binomial family and its inputs: 2,000 linear predictors with the extremes
    (+-800, +-0 and ``more``) appended, outcomes, trials, weights and the constant."""
    fam = make_family("binomial", False)
    rng = np.random.default_rng(seed)
    eta = np.r_[rng.normal(0.0, 6.0, 2000), 800.0, -800.0, 0.0, -0.0, more]
    n = len(eta)
    trials = np.full(n, n_trials) if with_trials else None
    y = rng.integers(0, int(n_trials) + 1 if with_trials else 2, n).astype(float)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    return fam, y, eta, trials, w, fam.constant(y, trials)


@pytest.mark.parametrize("with_trials", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_logit_derivs_in_place_are_the_plain_formulas_bit_for_bit(
    with_trials, weighted, monkeypatch
):
    # every size in place (small arrays take the plain formulas themselves)
    monkeypatch.setattr(binomial_module, "_IN_PLACE_SIZE", 0)
    fam, y, eta, trials, w, const = _logit_inputs(0, 4.0, with_trials, weighted, (1e-300,))
    got = fam.derivs(y, eta, trials, w, (), const)
    want = _logit_derivs(y, eta, trials, w, const)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)
    # a scalar linear predictor takes the plain formulas
    s = fam.derivs(1.0, 0.3, None, None, (), 0.0)
    assert s.loglik == pytest.approx(0.3 - np.log1p(np.exp(0.3)))


@pytest.mark.parametrize("with_trials", [False, True])
@pytest.mark.parametrize("third", [False, True])
def test_logit_derivs_in_eta_memory_are_the_same_bit_for_bit(with_trials, third, monkeypatch):
    """``scratch=True`` makes some derivatives in ``eta``'s memory: the same values."""
    monkeypatch.setattr(binomial_module, "_IN_PLACE_SIZE", 0)
    fam, y, eta, trials, w, const = _logit_inputs(4, 3.0, with_trials, False, (1e-300,))
    want = fam.derivs(y, eta, trials, w, (), const, third=third)
    scratch = eta.copy()
    got = fam.derivs(y, scratch, trials, w, (), const, third=third, scratch=True)
    for a, b in zip(got, want):
        assert (a is None and b is None) or np.array_equal(a, b)
    assert np.shares_memory(got.loglik, scratch)  # eta's memory was used
    assert fam.scratch_eta


def test_poisson_derivs_in_place_keep_the_plain_loglik():
    fam = make_family("poisson", False)
    rng = np.random.default_rng(1)
    eta = rng.normal(0.0, 1.0, 3000)
    y = rng.poisson(np.exp(eta)).astype(float)
    const = fam.constant(y, None)
    assert const[2] is None and const[1] is None  # small counts: no zeros, no log y
    got = fam.derivs(y, eta, None, None, (), const).loglik
    assert np.array_equal(got, y * eta - np.exp(eta) + const[0])


@pytest.mark.parametrize("contiguous", [True, False])
def test_matrix_sums_onto_random_effects_column_by_column(contiguous):
    obj, params = _objective("binomial", (2,))
    obj.evaluate(params)
    a_vals = obj.state["a_vals"]
    v = np.random.default_rng(2).normal(size=(len(a_vals), 5))
    g = obj.groups[0]
    if contiguous:  # rows sorted by level: the reduceat path
        order = np.argsort(obj.data.factors[0].codes, kind="stable")
        g = GroupIndex(obj.data.factors[0].codes[order], obj.data.factors[0].n_levels)
        assert g.contiguous
        obj.groups = [g]
        a_vals, v = a_vals[order], v[order]
    want = g.sum(a_vals[:, :, None] * v[:, None, :]).reshape(-1, v.shape[1])
    assert np.array_equal(obj._Atv(a_vals, v), want)
    for j in range(v.shape[1]):
        np.testing.assert_array_equal(obj._Atv(a_vals, v[:, j]), want[:, j])


def test_row_solve_of_one_factor_equals_the_local_inverse_product():
    obj, params = _objective("poisson", (2,))
    obj.evaluate(params)
    a_vals = obj.state["a_vals"]
    want = np.einsum("nij,nj->ni", obj.solver.local_inverse(), a_vals)
    np.testing.assert_allclose(obj._row_solve_blocks(a_vals), want, rtol=1e-15, atol=1e-300)


def test_gradient_and_gauss_newton_diagonal_are_unchanged_by_the_column_passes():
    """The gradient's and the Gauss-Newton diagonal's column-by-column products against
    the (n, k) formulas they replace."""
    obj, params = _objective("binomial", (2,))
    obj.value_and_grad(params)
    s, d, gi = obj.state, obj.data, obj.groups[0]
    u, J = s["u"], obj._predictor[2]
    f = d.factors[0]
    Uc = gi.expand(u.reshape(f.n_levels, f.q))
    cols = [d.X] + [(f.Z[:, r] * Uc[:, c])[:, None] for r, c in zip(f.theta_rows, f.theta_cols)]
    D = np.hstack(cols)
    Jf = J.reshape(f.n_levels, f.q, -1)
    D = D + np.einsum("nq,nqk->nk", s["a_vals"], gi.expand(Jf))
    w = np.maximum(s["der"].w, 0.0)
    want = 2.0 * (w @ (D * D)) + 2.0 * np.einsum("qk,qk->k", J, J)
    np.testing.assert_allclose(obj.gauss_newton_diagonal(), want, rtol=1e-13)


def test_default_weights_and_offset_are_read_only_views():
    w = check_weights(None, 5)
    off = as_float_vector(None, "offset", 5, default=0.0)
    assert w.strides == (0,) and not w.flags.writeable and np.all(w == 1.0)
    assert off.strides == (0,) and np.all(off == 0.0)
    assert as_float_vector(None, "trials", 5) is None


@pytest.mark.parametrize("est", [PoissonGLMM(), BinomialGLMM(random_effects="1 + x0")])
def test_explicit_unit_weights_and_zero_offset_fit_the_same(est):
    rng = np.random.default_rng(4)
    n, g = 1200, rng.integers(0, 60, 1200)
    X = rng.normal(size=(n, 2))
    eta = 0.2 + 0.4 * X[:, 0] + rng.normal(0, 0.6, 60)[g]
    if isinstance(est, PoissonGLMM):
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = type(est)(**est.get_params()).fit(X, y, groups=g)
        b = type(est)(**est.get_params()).fit(
            X, y, groups=g, sample_weight=np.ones(n), offset=np.zeros(n)
        )
    assert a.loglik_ == b.loglik_
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_fitted_objective_keeps_no_state_and_evaluates_again():
    rng = np.random.default_rng(5)
    n, g = 1500, rng.integers(0, 80, 1500)
    X = rng.normal(size=(n, 1))
    y = rng.poisson(np.exp(0.3 + 0.2 * X[:, 0] + rng.normal(0, 0.5, 80)[g])).astype(float)
    m = PoissonGLMM().fit(X, y, groups=g)
    obj = m.fit_result_.objective
    assert obj.state is None
    assert obj.evaluate(m.fit_result_.params) == pytest.approx(-2.0 * m.loglik_, rel=1e-12)
    assert obj.state is not None
    # the columns of H per row of a single factor are made only when asked for
    assert obj._cols is None or obj._cols.shape == (n, 1)
    assert obj.cols.shape == (n, 1)


def test_large_data_fit_makes_the_fitted_eta_once_and_lets_the_predictor_go(monkeypatch):
    """Above lazy_state_rows the result's fitted eta is made for it alone (the state holds
    no second one) and the modes' derivatives go once the optimum is checked: the same
    fit, eta and evaluation of the fitted objective as on small data."""
    rng = np.random.default_rng(8)
    n, G = 2000, 100
    g = np.repeat(np.arange(G), n // G)
    t = np.tile(np.arange(n // G) - 9.5, G)
    X = np.column_stack([t, rng.normal(size=n)])
    b = rng.normal(0, [1.0, 0.2], (G, 2))
    eta = -0.3 + 0.1 * t + 0.4 * X[:, 1] + b[g, 0] + b[g, 1] * t
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    small = BinomialGLMM(random_effects="1 + x0").fit(X, y, groups=g)
    monkeypatch.setattr(Objective, "lazy_state_rows", 0)
    lean = BinomialGLMM(random_effects="1 + x0").fit(X, y, groups=g)
    assert lean.loglik_ == pytest.approx(small.loglik_, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(
        lean.fit_result_.train["eta"], small.fit_result_.train["eta"], rtol=1e-9, atol=1e-9
    )
    obj = lean.fit_result_.objective
    assert obj.state is None and obj._predictor is None
    assert small.fit_result_.objective._predictor is not None  # small data keep it
    assert obj.evaluate(lean.fit_result_.params) == pytest.approx(-2.0 * lean.loglik_, rel=1e-12)


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("fam,qs", [("poisson", (1,)), ("binomial", (2,)), ("poisson", (2, 1))])
def test_restore_makes_the_same_state_from_the_mode(fam, qs, lean, monkeypatch):
    levels = (40,) if len(qs) == 1 else (40, 7)
    if lean:  # the per-row arrays of large data: made again, not kept
        monkeypatch.setattr(Objective, "lazy_state_rows", 0)
    obj, params = _objective(fam, qs, levels=levels)
    assert obj._lean == lean
    obj.lazy_state_rows = 0  # snapshots as on large data
    val, grad = obj.value_and_grad(params)
    keys = ("u", "eta", "a_vals", "eta_fix")
    state = obj.state
    before = {k: state[k] for k in keys}  # a_vals and eta_fix made when read
    before_der = state["der"]
    snap = obj.snapshot()
    assert snap[1][0] is None  # the snapshot holds no per-row arrays
    obj.value_and_grad(params * 1.1)
    obj.restore(snap)
    assert obj._state is None  # made when read
    after = obj.state
    for key in keys:
        np.testing.assert_array_equal(after[key], before[key])
    if lean:  # its sums only
        assert after["der"].loglik is None and before_der.loglik is None
    else:
        np.testing.assert_array_equal(after["der"].loglik, before_der.loglik)
    np.testing.assert_array_equal(after["der"].d1, before_der.d1)
    np.testing.assert_array_equal(after["der"].w, before_der.w)
    # w3 made at the mode, the family's plain formula at the mode's eta
    d = obj.data
    want = d.family.derivs(d.y, before["eta"], obj._trials, obj._w, after["extra"], obj._const)
    np.testing.assert_array_equal(after["der"].w3, want.w3)
    assert after["u"] is obj.u
    v2, g2 = obj.value_and_grad(params)  # the memo, as before
    assert v2 == val
    np.testing.assert_array_equal(g2, grad)
    np.testing.assert_array_equal(obj.gradient(params), grad)  # w3 made again if let go


def test_small_data_snapshots_keep_the_state():
    # below lazy_state_rows a restore returns the evaluated state itself (no new search)
    obj, params = _objective("poisson", (1,), levels=(40,))
    assert len(obj.data.y) <= obj.lazy_state_rows
    obj.value_and_grad(params)
    state = obj.state
    snap = obj.snapshot()
    obj.value_and_grad(params * 1.1)
    obj.restore(snap)
    assert obj._state is state and obj._pending is None


@pytest.mark.parametrize("with_trials", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_binomial_w3_made_apart_is_the_plain_one_bit_for_bit(
    with_trials, weighted, in_place, monkeypatch
):
    if in_place:
        monkeypatch.setattr(binomial_module, "_IN_PLACE_SIZE", 0)
    fam, y, eta, trials, w, const = _logit_inputs(6, 3.0, with_trials, weighted)
    full = fam.derivs(y, eta, trials, w, (), const)
    part = fam.derivs(y, eta, trials, w, (), const, third=False)
    assert part.w3 is None
    for a, b in zip(part[:3], full[:3]):
        assert np.array_equal(a, b)
    assert np.array_equal(fam.third_derivative(y, eta, trials, w, (), const, part), full.w3)


@pytest.mark.parametrize("lean", [False, True])
def test_random_intercept_as_a_view_of_ones_gives_the_same_objective_bit_for_bit(lean, monkeypatch):
    if lean:
        monkeypatch.setattr(Objective, "lazy_state_rows", 0)
    obj, params = _objective("binomial", (1,))
    f = obj.data.factors[0]
    assert f.Z.strides == (0, 0) and np.all(f.Z == 1.0)  # a view, not an array of ones
    full = replace(obj.data, factors=(replace(f, Z=np.ones(f.Z.shape)),))
    ref = Objective(full)
    v, g = obj.value_and_grad(params)
    v_ref, g_ref = ref.value_and_grad(params)
    assert v == v_ref
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(obj.gauss_newton_diagonal(), ref.gauss_newton_diagonal())
    # Z Lambda too is a view on large data; small data read a plain column
    assert (obj.state["a_vals"].strides[0] == 0) == lean


@pytest.mark.parametrize("fam,qs", [("binomial", (2,)), ("poisson", (3,))])
def test_blocks_through_z_and_lambda_match_the_formed_z_lambda(fam, qs, monkeypatch):
    """One factor of q >= 2 without Z Lambda formed (``ZLambda``, large data) against
    the products with the formed (n, q) array (small data)."""
    ref, _ = _objective(fam, qs)
    assert not ref._zrows
    monkeypatch.setattr(Objective, "lazy_state_rows", 0)
    obj, params = _objective(fam, qs)
    assert obj._zrows
    v, g = obj.value_and_grad(params)
    v_ref, g_ref = ref.value_and_grad(params)
    assert v == pytest.approx(v_ref, rel=1e-13)
    np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-9 * np.abs(g_ref).max())
    np.testing.assert_allclose(obj._predictor[2], ref._predictor[2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(obj.gauss_newton_diagonal(), ref.gauss_newton_diagonal(), rtol=1e-12)
    rows = obj.state["rows"]
    np.testing.assert_allclose(obj.state["a_vals"], ref.state["a_vals"], rtol=1e-15)
    u = obj.state["u"]
    np.testing.assert_allclose(rows.times(u), ref._Au(ref.state["a_vals"], u), rtol=1e-12)
    np.testing.assert_allclose(
        rows.sums(obj.state["der"].d1),
        ref._Atv(ref.state["a_vals"], ref.state["der"].d1),
        rtol=1e-12,
        atol=1e-12,
    )
    assert "eta" not in obj.state and "eta_fix" not in obj.state  # made when read
    np.testing.assert_allclose(obj.state["eta"], ref.state["eta"], rtol=1e-12, atol=1e-12)


def test_nested_glm_state_keeps_first_derivatives_only():
    obj, params = _objective("poisson", (1,))
    glm = GLMObjective(obj.data)
    glm.value_and_grad(params[:3])
    der = glm.state["der"]
    assert der.loglik is None and der.w is None and der.w3 is None and der.d1 is not None
    assert glm._const is obj._const  # the parameter-free terms made once


@pytest.mark.parametrize("fam,qs", [("poisson", (1,)), ("binomial", (2,)), ("poisson", (2, 1))])
@pytest.mark.parametrize("lean", [False, True])
def test_gradient_without_mode_derivatives_is_the_same_gradient(fam, qs, lean, monkeypatch):
    """The Hessian's shifted gradients leave the modes' derivatives out: the gradient
    itself is the same, bit for bit, and the derivatives kept are the last ones made."""
    if lean:
        monkeypatch.setattr(Objective, "lazy_state_rows", 0)
    levels = (40,) if len(qs) == 1 else (40, 7)
    obj, params = _objective(fam, qs, levels=levels)
    ref, _ = _objective(fam, qs, levels=levels)
    g_ref = ref.value_and_grad(params)[1]
    with obj.without_mode_derivatives():
        g = obj.value_and_grad(params)[1]
        assert not obj.has_mode_derivatives
    assert obj.mode_derivatives_wanted
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(obj.gradient(params), g_ref)  # and now with them
    np.testing.assert_array_equal(obj._predictor[2], ref._predictor[2])


def test_hessian_on_large_data_keeps_single_precision_mode_derivatives(monkeypatch):
    from sklearn_glmm._engine.hessian import hessian

    # the differences of the gradient (models without the closed form: crossed factors,
    # quadrature, other families)
    monkeypatch.setattr(Objective, "exact_hessian_block", lambda self: None)
    obj, params = _objective("binomial", (2,))
    H_small = hessian(obj, params)
    assert obj._predictor[2].dtype == np.float64  # small data: as made
    monkeypatch.setattr(Objective, "lazy_state_rows", 0)
    lean, _ = _objective("binomial", (2,))
    H = hessian(lean, params)
    J = lean._predictor[2]
    assert J.dtype == np.float32
    np.testing.assert_allclose(J, obj._predictor[2], rtol=1e-6, atol=1e-6 * np.abs(J).max())
    np.testing.assert_allclose(H, H_small, rtol=1e-6, atol=1e-8 * np.abs(H).max())
    # the predicted start from them, in double precision
    bt = params[: lean.data.n_beta + lean.data.n_theta] * 1.01
    move = lean.predicted_move(bt)
    assert move.dtype == np.float64
    np.testing.assert_allclose(move, obj.predicted_move(bt), rtol=1e-5, atol=1e-9)
    assert np.all(np.isfinite(lean.gauss_newton_diagonal()))


def test_release_rows_keeps_the_memo_and_lets_the_rows_go(monkeypatch):
    monkeypatch.setattr(Objective, "lazy_state_rows", 0)
    obj, params = _objective("binomial", (2,))
    val, grad = obj.value_and_grad(params)
    d1 = obj.state["der"].d1
    obj.release_rows()
    assert obj._state is None  # made again when read
    assert obj.value_and_grad(params)[0] == val  # the memo, not a new evaluation
    np.testing.assert_array_equal(obj.state["der"].d1, d1)


def test_random_slope_columns_are_a_view_of_the_design(monkeypatch):
    """A correlated ``"1 + x0"`` term next to a fixed intercept and x0: its internal Z is
    the design's first two columns, and the fit is the one with Z made apart."""
    from sklearn_glmm import _scaling

    rng = np.random.default_rng(11)
    G, k = 60, 8
    g = np.repeat(np.arange(G), k)
    t = np.tile(np.arange(k) + 2000.0, G)  # calendar-like values: centring matters
    X = np.column_stack([t, rng.normal(size=G * k)])
    b = rng.normal(0, [0.8, 0.3], (G, 2))
    eta = 0.2 + 0.1 * (t - 2003.5) + 0.5 * X[:, 1] + b[g, 0] + b[g, 1] * (t - 2003.5)
    y = rng.poisson(np.exp(eta)).astype(float)
    shared = PoissonGLMM(random_effects="1 + x0").fit(X, y, groups=g)
    d = shared.fit_result_.objective.data
    assert np.shares_memory(d.factors[0].Z, d.X) and d.factors[0].Z.flags.f_contiguous
    monkeypatch.setattr(_scaling, "design_view", lambda *a: None)
    apart = PoissonGLMM(random_effects="1 + x0").fit(X, y, groups=g)
    d2 = apart.fit_result_.objective.data
    assert not np.shares_memory(d2.factors[0].Z, d2.X)
    np.testing.assert_allclose(d.factors[0].Z, d2.factors[0].Z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        shared.fit_result_.z_maps[0], apart.fit_result_.z_maps[0], rtol=1e-12
    )
    assert shared.loglik_ == pytest.approx(apart.loglik_, rel=1e-10)
    np.testing.assert_allclose(shared.coef_, apart.coef_, rtol=1e-6)
    np.testing.assert_allclose(
        shared.random_effects_cov_["group"].to_numpy(),
        apart.random_effects_cov_["group"].to_numpy(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(shared.predict(X, groups=g), apart.predict(X, groups=g), rtol=1e-7)


@pytest.mark.parametrize(
    "terms,fit_intercept,shared",
    [
        ("1 + x1", True, False),
        ("0 + x0", True, False),
        ("1 + x0", False, False),
        ("x0", True, True),
        ("diag(1 + x0)", True, False),
    ],
)
def test_random_slope_columns_made_apart_where_the_design_has_other_columns(
    terms, fit_intercept, shared
):
    """Z is a view only of side-by-side columns scaled alike: ``1 + x1`` (x1 not next to
    the intercept), an intercept-free term and an uncorrelated one (neither centred)
    and a model without a fixed intercept take their own Z."""
    rng = np.random.default_rng(12)
    G, k = 30, 6
    g = np.repeat(np.arange(G), k)
    X = np.column_stack([rng.normal(size=G * k), rng.normal(size=G * k)])
    y = rng.poisson(np.exp(0.3 + 0.2 * X[:, 0] + rng.normal(0, 0.5, G)[g])).astype(float)
    m = _quiet_fit(PoissonGLMM(random_effects=terms, fit_intercept=fit_intercept), X, y, g)
    d = m.fit_result_.objective.data
    assert np.shares_memory(d.factors[0].Z, d.X) == shared


def test_large_binary_slope_fit_equals_the_plain_paths(monkeypatch):
    """60,000 rows take every large-data path at once (the state's lazy per-row arrays,
    the logit's derivatives in place and in eta's memory, Z a view of the design, the
    Hessian's shifted gradients without the modes' derivatives and single-precision
    derivatives at the optimum): the fit of the plain paths, to rounding."""
    from sklearn_glmm import _scaling

    rng = np.random.default_rng(21)
    G, k = 6000, 10
    g = np.repeat(np.arange(G), k)
    t = np.tile(np.arange(k) - 4.5, G)
    X = np.column_stack([t, rng.normal(size=G * k)])
    b = rng.normal(0, [1.0, 0.3], (G, 2))
    eta = -0.4 + 0.15 * t + 0.5 * X[:, 1] + b[g, 0] + b[g, 1] * t
    y = (rng.random(G * k) < 1 / (1 + np.exp(-eta))).astype(float)
    assert len(y) > Objective.lazy_state_rows
    large = _quiet_fit(BinomialGLMM(random_effects="1 + x0"), X, y, g)
    assert np.shares_memory(
        large.fit_result_.objective.data.factors[0].Z, large.fit_result_.objective.data.X
    )
    monkeypatch.setattr(Objective, "lazy_state_rows", 10**9)
    monkeypatch.setattr(binomial_module, "_IN_PLACE_SIZE", 10**9)
    monkeypatch.setattr(_scaling, "design_view", lambda *a: None)
    plain = _quiet_fit(BinomialGLMM(random_effects="1 + x0"), X, y, g)
    assert large.converged_ and plain.converged_
    assert large.loglik_ == pytest.approx(plain.loglik_, rel=1e-11)
    np.testing.assert_allclose(large.coef_, plain.coef_, rtol=1e-6)
    np.testing.assert_allclose(large.intercept_, plain.intercept_, rtol=1e-6)
    np.testing.assert_allclose(
        large.fit_result_.vcov, plain.fit_result_.vcov, rtol=1e-4, atol=1e-10
    )


def _quiet_fit(est, X, y, g):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, groups=g)


def test_subsample_objective_goes_with_its_stage(monkeypatch):
    # the objective of the subsample start is let go when its stage ends, without
    # waiting for the garbage collector (its state refers back to it)
    import gc
    import weakref

    from sklearn_glmm._engine import objective as objective_module
    from sklearn_glmm._engine import start

    monkeypatch.setattr(start, "_SUBSAMPLE_ROWS", 2_000)
    monkeypatch.setattr(start, "_SUBSAMPLE_TARGET", 500)
    made = []
    init = objective_module.Objective.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(objective_module.Objective, "__init__", spy)
    rng = np.random.default_rng(0)
    n, G = 8_000, 2_000
    g = rng.integers(0, G, n)
    X = rng.normal(size=(n, 1))
    y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.5 * rng.normal(size=G)[g]))
    gc.collect()
    gc.disable()
    try:
        est = PoissonGLMM().fit(X, y, groups=g)
        alive = [r() for r in made if r() is not None]
    finally:
        gc.enable()
    # the subsample's and the fit's (the Laplace check reads the fit's own state)
    assert len(made) == 2
    assert len(alive) == 1 and len(alive[0].data.y) == n  # the fitted model's only
    assert est.converged_
