"""Tier 1: adaptive Gauss-Hermite quadrature against a node-by-node evaluation.

The library evaluates every node at once (a linear predictor of shape
``(n_agq, n)``) and shares the nodes between the value and the gradient. The
reference here sums one node at a time with one-dimensional family calls,
``np.bincount`` level sums and scipy's ``logsumexp``, and assembles the exact
gradient (nodes moving with the mode and the curvature) directly. The gradient
is also checked against finite differences of the objective, and the standard
errors of a fit against a finite-difference Hessian of the objective's value.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial.hermite_e import hermegauss
from objectives import numeric_gradient
from scipy.special import expit, logsumexp

from sklearn_glmm import BinomialGLMM
from sklearn_glmm._design import theta_layout
from sklearn_glmm._engine import quadrature as _agq
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import ModelData, Objective, make_factor_data
from sklearn_glmm.exceptions import ConvergenceWarning

_N_LEVELS = 25


def _codes(layout, rng):
    """Level codes: every level present, rows shuffled, in level runs, or in runs out of order."""
    codes = np.repeat(np.arange(_N_LEVELS), rng.integers(1, 20, _N_LEVELS))
    if layout == "shuffled":
        return rng.permutation(codes)
    if layout == "runs":
        return rng.permutation(_N_LEVELS)[codes]
    return codes


def _agq_objective(
    fam_name,
    zi=False,
    layout="sorted",
    large=False,
    n_agq=7,
    seed=3,
    re_sd=0.8,
    theta=0.6,
    binary=False,
):
    """An AGQ objective with unequal weights, an offset and (binomial) several trials
    (one each with ``binary``), random intercepts of SD ``re_sd``; a parameter vector
    with ``theta`` to evaluate it at."""
    rng = np.random.default_rng(seed)
    codes = _codes(layout, rng)
    n = len(codes)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    shift = np.log(5000.0) if large else 0.0  # counts above 1e3: the large-count branch
    eta = X @ [0.3 + shift, 0.5, -0.2] + re_sd * rng.normal(size=_N_LEVELS)[codes]
    trials = np.ones(n)
    if fam_name == "binomial":
        trials = np.ones(n) if binary else rng.integers(1, 6, n).astype(float)
        y = rng.binomial(trials.astype(int), expit(eta)).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
        if zi:
            y[rng.random(n) < 0.2] = 0.0
    fam = make_family(fam_name, zi)
    factors = make_factor_data([codes], [X[:, :1]], [_N_LEVELS], [theta_layout(1, False)])
    weights = rng.uniform(0.5, 2.0, n)
    data = ModelData(X, y, trials, weights, rng.normal(0.0, 0.1, n), fam, factors)
    params = np.concatenate([[0.2 + shift, 0.4, -0.1, theta], fam.default_extra() + 0.3])
    return Objective(data, n_agq), params


def _level_sum(f, v):
    """Sums over each level's rows of ``v`` (n,) or (n, k)."""
    if v.ndim == 1:
        return np.bincount(f.codes, v, minlength=f.n_levels)
    out = np.zeros((f.n_levels, v.shape[1]))
    for k in range(v.shape[1]):
        out[:, k] = _level_sum(f, v[:, k])
    return out


def _agq_by_node(obj, params):
    """-2 log L, its exact gradient and the gradient with the nodes held in place,
    one node at a time.

    The exact gradient is assembled directly: the modes' and curvatures'
    derivatives ``du~/dparam`` and ``dH/dparam`` as (levels, parameters) matrices,
    then every node's total derivative ``dt_jk/dparam``.
    """
    obj.evaluate(params)
    d, s = obj.data, obj.state
    f = d.factors[0]
    z, wts = hermegauss(obj.n_agq)
    extra, u = s["extra"], s["u"]
    a, zc = s["a_vals"][:, 0], f.Z[:, 0]
    H = 1.0 / obj.solver.hinv[:, 0, 0]
    sd = 1.0 / np.sqrt(H)
    p, n_par = d.n_beta, len(params)

    def extra_diff(eta, field):  # (n, n_extra) derivatives in the extra parameters
        exact = getattr(d.family, "extra_derivs", None)
        if exact is not None:  # the family's own (its central differences lose digits on
            # large counts; test_dispersion compares the two at the nodes)
            dl, dd1, dw = exact(d.y, eta, obj._trials, obj._w, extra, obj._const)
            return np.asarray({"loglik": dl, "d1": dd1, "w": dw}[field]).T
        cols = []
        for e in range(len(extra)):
            h = np.zeros(len(extra))
            h[e] = 1e-5
            hi = getattr(obj._derivs(eta, extra + h), field)
            lo = getattr(obj._derivs(eta, extra - h), field)
            cols.append((hi - lo) / 2e-5)
        return np.column_stack(cols) if cols else np.zeros((len(eta), 0))

    # the mode equation G_j = sum_i a_i d1_i - u_j = 0: du~/dparam = (dG/dparam) / H
    der = obj._derivs(s["eta_fix"] + a * u[f.codes], extra)
    deta = np.column_stack([d.X, zc * u[f.codes]])  # d eta / d(beta, theta), mode held
    dG = np.zeros((f.n_levels, n_par))
    dG[:, : p + 1] = -_level_sum(f, (der.w * a)[:, None] * deta)
    dG[:, p] += _level_sum(f, zc * der.d1)
    dG[:, p + 1 :] = _level_sum(f, a[:, None] * extra_diff(s["eta"], "d1"))
    du = dG / H[:, None]
    # H_j = 1 + sum_i w_i a_i^2 at the mode
    deta_total = np.zeros((len(a), n_par))
    deta_total[:, : p + 1] = deta
    deta_total += a[:, None] * du[f.codes]
    dH = _level_sum(f, (a * a * der.w3)[:, None] * deta_total)
    dH[:, p] += _level_sum(f, 2.0 * der.w * a * zc)
    dH[:, p + 1 :] += _level_sum(f, (a * a)[:, None] * extra_diff(s["eta"], "w"))
    dsd = -0.5 * sd[:, None] * dH / H[:, None]

    terms, partials, slopes, moves = [], [], [], []
    for zk, wk in zip(z, wts):
        uk = u + zk * sd
        eta = s["eta_fix"] + a * uk[f.codes]
        dk = obj._derivs(eta, extra)
        ll = np.bincount(f.codes, dk.loglik, minlength=f.n_levels)
        terms.append(np.log(wk / np.sqrt(2.0 * np.pi)) + ll - 0.5 * uk**2 + 0.5 * zk**2)
        dt = np.zeros((f.n_levels, n_par))  # d t_jk / dparam, node held
        dt[:, :p] = _level_sum(f, dk.d1[:, None] * d.X)
        dt[:, p] = _level_sum(f, dk.d1 * zc) * uk
        dt[:, p + 1 :] = _level_sum(f, extra_diff(eta, "loglik"))
        partials.append(dt)
        slopes.append(_level_sum(f, a * dk.d1) - uk)  # d t_jk / d u_jk
        moves.append(du + zk * dsd)  # d u_jk / dparam
    terms = np.array(terms)
    value = -2.0 * np.sum(np.log(sd) + logsumexp(terms, axis=0))
    post = np.exp(terms - logsumexp(terms, axis=0))
    fixed = sum(pk[:, None] * dt for pk, dt in zip(post, partials))
    total = -0.5 * dH / H[:, None] + sum(
        pk[:, None] * (dt + sk[:, None] * mk)
        for pk, dt, sk, mk in zip(post, partials, slopes, moves)
    )
    return value, -2.0 * total.sum(axis=0), -2.0 * fixed.sum(axis=0)


_CASES = [
    ("binomial", False, "sorted", False),
    ("binomial", False, "shuffled", False),
    ("binomial", False, "runs", False),
    ("poisson", False, "shuffled", False),
    ("poisson", False, "runs", True),
    ("negbin", False, "sorted", False),
    ("negbin", False, "shuffled", True),
    ("poisson", True, "runs", False),
    ("negbin", True, "sorted", False),
    ("negbin", True, "shuffled", True),
]


@pytest.mark.parametrize("fam,zi,layout,large", _CASES)
def test_agq_matches_node_by_node_evaluation(fam, zi, layout, large):
    obj, params = _agq_objective(fam, zi, layout, large)
    gi = obj.groups[0]
    assert gi.contiguous == (layout != "shuffled")
    if gi.contiguous:
        assert gi.in_order == (layout == "sorted")
    if large:
        assert obj._const[2] is not None  # the large-count branch of the family
    val, grad = obj.value_and_grad(params)
    ref_val, ref_grad, _ = _agq_by_node(obj, params)
    assert val == pytest.approx(ref_val, rel=1e-14)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * np.abs(ref_grad).max())


@pytest.mark.parametrize("fam,zi", [("binomial", False), ("negbin", True)])
@pytest.mark.parametrize("keep", [True, False])
def test_agq_in_blocks_of_nodes_equals_all_at_once(monkeypatch, fam, zi, keep):
    obj, params = _agq_objective(fam, zi, "runs", n_agq=9)
    val, grad = obj.value_and_grad(params)
    n = len(obj.data.y)
    monkeypatch.setattr(_agq, "_BLOCK_ELEMENTS", 2 * n)  # blocks of two nodes
    if not keep:  # the gradient evaluates the nodes' derivatives again
        monkeypatch.setattr(_agq, "_KEEP_ELEMENTS", 0)
    obj2, _ = _agq_objective(fam, zi, "runs", n_agq=9)
    val2, grad2 = obj2.value_and_grad(params)
    assert val2 == val
    np.testing.assert_allclose(grad2, grad, rtol=1e-12, atol=1e-12 * np.abs(grad).max())


def test_agq_gradient_follows_the_latest_evaluation():
    obj, params = _agq_objective("negbin", True, "shuffled")
    other = params + np.array([0.1, -0.05, 0.02, 0.2, -0.1, 0.1])
    obj.value_and_grad(params)
    obj.value_and_grad(other)
    # the gradient at a point evaluated before, after another one, and asked twice
    obj.evaluate(params)
    g1 = obj.gradient(params)
    g2 = obj.gradient(params)
    np.testing.assert_array_equal(g1, g2)
    fresh, _ = _agq_objective("negbin", True, "shuffled")
    val, grad = fresh.value_and_grad(params)
    assert obj.evaluate(params) == pytest.approx(val, rel=1e-12)
    np.testing.assert_allclose(g1, grad, rtol=1e-7, atol=1e-7 * np.abs(grad).max())
    # another number of nodes at the same mode is not served from the previous rule
    obj.evaluate(params)
    obj.n_agq = 3
    val3, grad3 = _agq.agq_deviance(obj, None), _agq.agq_gradient(obj)
    ref_val3, ref_grad3, _ = _agq_by_node(obj, params)
    assert val3 == pytest.approx(ref_val3, rel=1e-12)
    np.testing.assert_allclose(grad3, ref_grad3, rtol=1e-7, atol=1e-7 * np.abs(grad3).max())


@pytest.mark.parametrize("fam,zi", [("binomial", False), ("negbin", True)])
def test_agq_gradient_without_mode_derivatives_is_the_same_gradient(fam, zi):
    """Inside ``without_mode_derivatives`` (the Hessian's shifted points, the Laplace
    fit's quadrature check) the quadrature's gradient leaves the modes' derivatives
    out: the same gradient bit for bit, and the derivatives kept are the last ones
    made."""
    obj, params = _agq_objective(fam, zi, "shuffled")
    ref, _ = _agq_objective(fam, zi, "shuffled")
    g_ref = ref.value_and_grad(params)[1]
    with obj.without_mode_derivatives():
        g = obj.value_and_grad(params)[1]
        assert not obj.has_mode_derivatives
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(obj.gradient(params), g_ref)  # and now with them
    np.testing.assert_array_equal(obj._predictor[2], ref._predictor[2])


def test_laplace_quadrature_check_leaves_the_mode_derivatives_as_they_were():
    """The quadrature's value and gradient at a Laplace fit's modes (the check after a
    Laplace fit) keep the Laplace gradient's mode derivatives: the next evaluation
    starts from them."""
    obj, params = _agq_objective("poisson", n_agq=1)
    obj.value_and_grad(params)
    before = obj._predictor
    val, grad = obj.quadrature_at_modes(params, 9)
    assert np.isfinite(val) and np.all(np.isfinite(grad))
    assert obj._predictor is before and obj.n_agq == 1


_LARGE_SD_CASES = [
    ("binomial", False, True),  # binary outcomes
    ("binomial", False, False),  # several trials
    ("poisson", False, False),
    ("negbin", False, False),
    ("poisson", True, False),
]


@pytest.mark.parametrize("layout", ["sorted", "shuffled"])
@pytest.mark.parametrize("fam,zi,binary", _LARGE_SD_CASES)
def test_agq_gradient_is_the_derivative_of_the_objective(fam, zi, binary, layout):
    """With a random-effect SD of 3.5 the nodes' movement with the mode and the
    curvature is a large part of the gradient; the gradient includes it."""
    obj, params = _agq_objective(fam, zi, layout, re_sd=3.5, theta=3.5, binary=binary)
    _, grad = obj.value_and_grad(params)
    num = numeric_gradient(obj, params)
    assert obj.pirls_failures == 0
    scale = np.abs(num).max()
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6 * scale)
    # holding the nodes in place would miss by far more than that
    _, ref_grad, fixed_grad = _agq_by_node(obj, params)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * scale)
    assert np.abs(fixed_grad - num).max() > 0.05


@pytest.mark.parametrize("fam,zi", [("binomial", False), ("negbin", False), ("poisson", True)])
def test_agq_with_one_node_is_the_laplace_objective(fam, zi):
    obj, params = _agq_objective(fam, zi, "runs", re_sd=3.0, theta=3.0, n_agq=1)
    with np.errstate(over="ignore", invalid="ignore"):  # the first modes' trial steps
        lap, lap_grad = obj.value_and_grad(params)
    assert np.isfinite(lap) and obj.pirls_failures == 0
    assert _agq.agq_deviance(obj, None) == pytest.approx(lap, rel=1e-12)
    np.testing.assert_allclose(
        _agq.agq_gradient(obj), lap_grad, rtol=1e-8, atol=1e-8 * np.abs(lap_grad).max()
    )


def _large_sd_binary_data():
    """Binary outcomes, 300 subjects x 7 times, random intercepts of SD 4."""
    rng = np.random.default_rng(1)
    G, T = 300, 7
    g = np.repeat(np.arange(G), T)
    t = np.tile(np.arange(T), G) * 1.0
    trt = np.repeat(rng.integers(0, 2, G), T) * 1.0
    eta = -1.6 - 0.4 * t - 0.15 * trt + rng.normal(0, 4, G)[g]
    y = rng.binomial(1, expit(eta))
    return pd.DataFrame({"t": t, "trt": trt}), y, g


def _fit_without_convergence_warning(n_agq):
    X, y, g = _large_sd_binary_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return BinomialGLMM(n_agq=n_agq).fit(X, y, groups=g)


def test_agq_fit_with_a_large_random_effect_sd_reaches_the_optimum():
    m = _fit_without_convergence_warning(9)
    assert m.converged_
    # Nelder-Mead on the same objective: -740.756
    assert m.loglik_ >= -740.76


@pytest.mark.parametrize("n_agq", [2, 3, 5, 15])
def test_agq_fits_with_a_large_random_effect_sd_converge(n_agq):
    m = _fit_without_convergence_warning(n_agq)
    assert m.converged_


def _value_hessian(obj, x):
    """Central second differences of the objective's value."""
    n = len(x)
    h = 1e-3 * np.maximum(1.0, np.abs(x))
    f0 = obj.evaluate(x)
    H = np.zeros((n, n))
    for k in range(n):
        ek = np.zeros(n)
        ek[k] = h[k]
        H[k, k] = (obj.evaluate(x + ek) - 2.0 * f0 + obj.evaluate(x - ek)) / h[k] ** 2
        for m in range(k):
            em = np.zeros(n)
            em[m] = h[m]
            pp, mm = obj.evaluate(x + ek + em), obj.evaluate(x - ek - em)
            pm, mp = obj.evaluate(x + ek - em), obj.evaluate(x - ek + em)
            H[k, m] = H[m, k] = (pp - pm - mp + mm) / (4.0 * h[k] * h[m])
    return H


def test_agq_standard_errors_match_the_objectives_curvature():
    """The standard errors come from differences of the gradient; differences of
    the value itself give the same ones."""
    m = _fit_without_convergence_warning(9)
    obj, x = m.fit_result_.objective, m.fit_result_.params
    se = np.sqrt(np.diag(m.fit_result_.vcov))
    H = _value_hessian(obj, x)
    se_value = np.sqrt(np.diag(2.0 * np.linalg.inv(H)))
    np.testing.assert_allclose(se, se_value, rtol=0.02)


def _agq_fit(est, X, y, g, whitened, monkeypatch, **kw):
    from sklearn_glmm._engine import refit

    with monkeypatch.context() as mp:
        if not whitened:
            mp.setattr(refit, "whitening", lambda *a, **k: None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est.fit(X, y, groups=g, **kw)


def _random_slope_binary(seed, G=60, n=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    eta = -0.4 + 0.6 * x + rng.normal(0, 1.0, G)[g] + rng.normal(0, 0.5, G)[g] * x
    return pd.DataFrame({"x": x}), rng.binomial(1, expit(eta)), g


@pytest.mark.parametrize(
    "case",
    ["intercept", "trials", "poisson", "slope"],
)
def test_agq_stage_on_coordinates_whitened_by_the_laplace_hessian(case, monkeypatch):
    # the quadrature stage starts at the Laplace optimum on coordinates whitened by the
    # Laplace Hessian there: the optimum of the diagonally scaled run it replaces (an
    # objective no higher, the same estimates to the optimiser's tolerance), in fewer
    # evaluations
    from sklearn.base import clone

    from sklearn_glmm import PoissonGLMM

    rng = np.random.default_rng(11)
    G, n = 50, 4
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    eta = -0.5 + 0.5 * x + rng.normal(0, 1.5, G)[g]
    X, kw = pd.DataFrame({"x": x}), {}
    if case == "intercept":
        est, y = BinomialGLMM(n_agq=11), rng.binomial(1, expit(eta))
    elif case == "trials":
        trials = rng.integers(1, 6, G * n)
        est, y, kw = BinomialGLMM(n_agq=15), rng.binomial(trials, expit(eta)), {"trials": trials}
    elif case == "poisson":
        est, y = PoissonGLMM(n_agq=9), rng.poisson(np.exp(eta))
    else:
        X, y, g = _random_slope_binary(3)
        est = BinomialGLMM(random_effects="1 + x", n_agq=3)
    new = _agq_fit(clone(est), X, y, g, True, monkeypatch, **kw)
    old = _agq_fit(clone(est), X, y, g, False, monkeypatch, **kw)
    assert new.converged_ and old.converged_
    assert new.fit_record_.stages[-1][0] == "agq"
    assert new.fit_record_.objective <= old.fit_record_.objective + 1e-9
    np.testing.assert_allclose(new.coef_, old.coef_, rtol=1e-4, atol=1e-6)
    S_new = list(new.random_effects_cov_.values())[0].to_numpy()
    S_old = list(old.random_effects_cov_.values())[0].to_numpy()
    np.testing.assert_allclose(S_new, S_old, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        new.fixed_effects_["std_error"], old.fixed_effects_["std_error"], rtol=1e-4
    )
    assert new.fit_record_.n_evaluations < old.fit_record_.n_evaluations


def test_agq_stage_from_a_zero_variance_runs_scaled(monkeypatch):
    # a Laplace optimum with its SD on zero has no interior curvature to whiten by: the
    # quadrature stage runs as before (the same fit whether whitening is offered or not)
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 5)
    x = rng.normal(size=150)
    y = rng.binomial(1, expit(0.2 + 0.5 * x))
    X = pd.DataFrame({"x": x})
    new = _agq_fit(BinomialGLMM(n_agq=7), X, y, g, True, monkeypatch)
    old = _agq_fit(BinomialGLMM(n_agq=7), X, y, g, False, monkeypatch)
    assert new.fit_record_.stages[0][1] == old.fit_record_.stages[0][1]
    assert new.fit_record_.n_evaluations == old.fit_record_.n_evaluations
    np.testing.assert_array_equal(new.coef_, old.coef_)
