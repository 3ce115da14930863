"""Adaptive quadrature for one factor with two or three random effects (product rules).

- the exact gradient (nodes moving with the mode and the Cholesky factor of the
  level's Hessian) against central differences of the value, for every family;
- one node per dimension is the Laplace objective;
- the value against the marginal likelihood integrated by brute force
  (``truth_vector``: a tensor trapezoid rule, numpy and scipy only), converging as
  the number of nodes grows; the brute force itself against the scalar truth;
- fits: the log-likelihood at the optimum against the brute force at the reported
  estimates, estimates converging with ``n_agq``, standard errors from the
  objective's curvature, several factors and q > 3 refused by name.

GLMMadaptive (the R package doing adaptive product rules) has no Debian package, so
the reference is the brute-force integral only.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import truth
from objectives import numeric_gradient
from scipy.special import expit
from truth_vector import marginal_loglik_vector

from sklearn_glmm import BinomialGLMM, OrdinalGLMM, PoissonGLMM
from sklearn_glmm._design import theta_layout
from sklearn_glmm._engine import quadrature as _agq
from sklearn_glmm._engine import quadrature_vector as _agqv
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import ModelData, Objective, make_factor_data
from sklearn_glmm.exceptions import ConvergenceWarning, SingularFitWarning

_FIXTURES = Path(__file__).parent / "fixtures" / "agq_vector"
_L3 = np.array([[1.2, 0.0, 0.0], [-0.6, 1.0, 0.0], [0.3, 0.2, 0.7]])


def _small_data(seed=5, G=20, family="binomial"):
    """Level codes, X = [1, x], Z = [1, t, v] and outcomes with random effects L3 u."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(G), rng.integers(4, 8, G))
    n = len(codes)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z = np.column_stack([np.ones(n), rng.uniform(0, 1, n), rng.normal(size=n)])
    b = (rng.normal(size=(G, 3)) @ _L3.T)[codes]
    eta = X @ [-0.3, 0.6] + np.einsum("na,na->n", Z, b)
    if family == "binomial":
        y = rng.binomial(1, expit(eta)).astype(float)
    else:
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
    return codes, X, Z, y


def _objective(codes, X, Z, y, q, n_agq, family="binomial", zi=False, diagonal=False, **kw):
    fam = make_family(family, zi)
    n, G = len(y), int(codes.max()) + 1
    factors = make_factor_data([codes], [Z[:, :q]], [G], [theta_layout(q, diagonal)])
    weights = kw.get("weights", np.ones(n))
    offset = kw.get("offset", np.zeros(n))
    trials = kw.get("trials", np.ones(n))
    return Objective(ModelData(X, y, trials, weights, offset, fam, factors), n_agq)


def _params(q, beta, L, diagonal=False, extra=()):
    rows, cols = theta_layout(q, diagonal)
    return np.concatenate([beta, L[:q, :q][rows, cols], extra])


_GRAD_CASES = [
    ("binomial", False, 2, False),
    ("binomial", False, 3, False),
    ("binomial", False, 2, True),
    ("binomial", False, 3, True),
    ("poisson", False, 2, False),
    ("poisson", False, 3, False),
    ("negbin", False, 2, False),
    ("negbin", False, 3, True),
    ("poisson", True, 2, False),
    ("negbin", True, 3, False),
]


@pytest.mark.parametrize("family,zi,q,diagonal", _GRAD_CASES)
@pytest.mark.parametrize("layout", ["sorted", "shuffled"])
def test_gradient_is_the_derivative_of_the_quadrature(family, zi, q, diagonal, layout):
    """Large random-effect SDs, unequal weights, an offset: the nodes' movement with the
    mode and with the Cholesky factor is a large part of the gradient."""
    codes, X, Z, y = _small_data(family="binomial" if family == "binomial" else "poisson")
    rng = np.random.default_rng(11)
    if layout == "shuffled":
        perm = rng.permutation(len(y))
        codes, X, Z, y = codes[perm], X[perm], Z[perm], y[perm]
    n = len(y)
    fam = make_family(family, zi)
    obj = _objective(
        codes, X, Z, y, q, 5, family, zi, diagonal,
        weights=rng.uniform(0.5, 2.0, n), offset=rng.normal(0.0, 0.1, n),
    )  # fmt: skip
    params = _params(q, [-0.2, 0.5], 2.0 * _L3, diagonal, fam.default_extra() + 0.3)
    if layout == "shuffled":
        assert not obj.groups[0].contiguous
    _, grad = obj.value_and_grad(params)
    num = numeric_gradient(obj, params)
    assert obj.pirls_failures == 0
    scale = np.abs(num).max()
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6 * scale)
    # the same gradient with the nodes in blocks, their derivatives evaluated again
    obj2 = _objective(
        codes, X, Z, y, q, 5, family, zi, diagonal,
        weights=obj.data.weights, offset=obj.data.offset,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_agq, "_BLOCK_ELEMENTS", 7 * n)
        mp.setattr(_agq, "_KEEP_ELEMENTS", 0)
        v2, g2 = obj2.value_and_grad(params)
    assert v2 == pytest.approx(obj.evaluate(params), rel=1e-13)
    np.testing.assert_allclose(g2, grad, rtol=1e-10, atol=1e-10 * scale)


def test_gradient_without_mode_derivatives_is_the_same_gradient():
    """The product rule's gradient inside ``without_mode_derivatives`` (the Hessian's
    shifted points): the same gradient bit for bit, no mode derivatives made."""
    codes, X, Z, y = _small_data()
    obj = _objective(codes, X, Z, y, 2, 3)
    ref = _objective(codes, X, Z, y, 2, 3)
    params = _params(2, [-0.2, 0.5], _L3)
    g_ref = ref.value_and_grad(params)[1]
    with obj.without_mode_derivatives():
        g = obj.value_and_grad(params)[1]
        assert not obj.has_mode_derivatives
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(obj.gradient(params), g_ref)
    np.testing.assert_array_equal(obj._predictor[2], ref._predictor[2])


def test_gradient_with_the_nodes_held_would_be_wrong():
    """The movement of the nodes is not negligible: dropping the Cholesky factor's
    derivative (E = -H^{-1}/2 only) changes the gradient by far more than its error."""
    codes, X, Z, y = _small_data()
    obj = _objective(codes, X, Z, y, 2, 3)
    params = _params(2, [-0.2, 0.5], 2.0 * _L3)
    _, grad = obj.value_and_grad(params)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_agqv, "_curvature_weight", lambda lev, SZ: -0.5 * lev.hinv)
        obj._last_grad = None
        held = obj.gradient(params)
    num = numeric_gradient(obj, params)
    assert np.abs(held - num).max() > 100 * np.abs(grad - num).max()
    assert np.abs(held - num).max() > 1e-3 * np.abs(num).max()


@pytest.mark.parametrize("family,zi,q", [("binomial", False, 2), ("negbin", True, 3)])
def test_one_node_per_dimension_is_the_laplace_objective(family, zi, q):
    codes, X, Z, y = _small_data(family="binomial" if family == "binomial" else "poisson")
    fam = make_family(family, zi)
    obj = _objective(codes, X, Z, y, q, 1, family, zi)
    params = _params(q, [-0.2, 0.5], 1.5 * _L3, extra=fam.default_extra() + 0.3)
    lap, lap_grad = obj.value_and_grad(params)
    assert _agqv.agq_deviance_vector(obj) == pytest.approx(lap, rel=1e-12)
    np.testing.assert_allclose(
        _agqv.agq_gradient_vector(obj), lap_grad, rtol=1e-8, atol=1e-8 * np.abs(lap_grad).max()
    )


def test_product_rule_integrates_gaussian_moments():
    z, log_w = _agqv.product_rule(5, 3)
    w = np.exp(log_w)
    assert z.shape == (125, 3) and w.sum() == pytest.approx(1.0, rel=1e-13)
    np.testing.assert_allclose(z.T @ (w[:, None] * z), np.eye(3), atol=1e-13)
    assert np.sum(w * z[:, 0] ** 4 * z[:, 1] ** 2) == pytest.approx(3.0, rel=1e-12)


def test_brute_force_reduces_to_the_scalar_truth():
    """With the slope's row of L zero, the two-dimensional integral is the random
    intercept's (the independent scalar brute force of ``truth``)."""
    codes, X, Z, y = _small_data()
    beta = np.array([-0.2, 0.5])
    L = np.array([[1.3, 0.0], [0.0, 0.0]])
    ref = truth.marginal_loglik(
        {"beta": beta, "sigma": 1.3}, truth.GLMMData(X, y, codes, "binomial")
    )
    assert marginal_loglik_vector(X, Z[:, :2], y, codes, beta, L) == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_quadrature_converges_to_the_brute_force_integral(q, family):
    codes, X, Z, y = _small_data(family=family)
    beta = np.array([-0.2, 0.5])
    L = _L3[:q, :q] * (1.0 if family == "binomial" else 0.5)
    n_grid = 129 if q == 2 else 73
    ref = marginal_loglik_vector(X, Z[:, :q], y, codes, beta, L, family=family, n_grid=n_grid)
    errors = {}
    for k in (1, 3, 7, 15):
        obj = _objective(codes, X, Z, y, q, k, family)
        errors[k] = abs(-0.5 * obj.evaluate(_params(q, beta, L)) - ref)
    assert errors[15] < 1e-5
    assert errors[15] < errors[7] < errors[3]
    assert errors[7] < 1e-3


def _binary_slopes(G=100, T=6, seed=2):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(G), T)
    t = np.tile(np.arange(T), G) / (T - 1.0)
    x = rng.normal(size=G * T)
    b = rng.multivariate_normal([0, 0], [[1.5, 0.4], [0.4, 1.0]], G)
    y = rng.binomial(1, expit(-0.4 + 0.8 * t + 0.5 * x + b[ids, 0] + b[ids, 1] * t))
    return pd.DataFrame({"t": t, "x": x}), y, ids


def _fit(n_agq, data=None, random_effects="1 + t"):
    X, y, ids = data if data is not None else _binary_slopes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return BinomialGLMM(random_effects=random_effects, n_agq=n_agq).fit(X, y, groups=ids)


def _brute_force_at_estimates(m, X, y, ids, zcols):
    # any square root of the covariance gives the same integral (a singular one too)
    vals, vecs = np.linalg.eigh(m.random_effects_cov_["group"].to_numpy())
    L = vecs * np.sqrt(np.maximum(vals, 0.0))
    Xd = np.column_stack([np.ones(len(y)), X.to_numpy()])
    beta = np.concatenate([[m.intercept_], m.coef_])
    Z = np.column_stack([np.ones(len(y))] + [X[c].to_numpy() for c in zcols])
    return marginal_loglik_vector(Xd, Z, y, ids, beta, L, n_grid=129 if len(zcols) == 1 else 49)


def test_fit_loglik_is_the_brute_force_integral_at_its_estimates():
    X, y, ids = data = _binary_slopes()
    m = _fit(15, data)
    assert m.converged_ and not m.is_singular_
    ref = _brute_force_at_estimates(m, X, y, ids, ["t"])
    assert m.loglik_ == pytest.approx(ref, abs=1e-3)
    lap = _fit(1, data)
    # the quadrature's optimum is higher than the Laplace estimates' true likelihood
    assert m.loglik_ >= _brute_force_at_estimates(lap, X, y, ids, ["t"]) - 1e-6


def test_fit_with_three_random_effects():
    X, y, ids = data = _binary_slopes(G=150, T=7, seed=3)
    m = _fit(7, data, "1 + t + x")
    assert m.converged_ and not m.is_singular_
    # 7^3 nodes: within 0.01 of the integral here (0.006); 15^3 within 1e-3
    ref = _brute_force_at_estimates(m, X, y, ids, ["t", "x"])
    assert m.loglik_ == pytest.approx(ref, abs=1e-2)


def test_estimates_converge_with_the_number_of_nodes():
    data = _binary_slopes()
    fits = {k: _fit(k, data) for k in (3, 7, 15)}
    x = {k: fits[k].fit_result_.params for k in fits}
    assert np.abs(x[15] - x[7]).max() < 0.2 * np.abs(x[15] - x[3]).max()
    ll = {k: fits[k].loglik_ for k in fits}
    assert abs(ll[15] - ll[7]) < min(0.2 * abs(ll[15] - ll[3]), 0.01)


def _value_hessian(obj, x):
    n = len(x)
    h = 1e-3 * np.maximum(1.0, np.abs(x))
    f0 = obj.evaluate(x)
    H = np.zeros((n, n))
    for k in range(n):
        ek = np.zeros(n)
        ek[k] = h[k]
        H[k, k] = (obj.evaluate(x + ek) - 2.0 * f0 + obj.evaluate(x - ek)) / h[k] ** 2
        for j in range(k):
            ej = np.zeros(n)
            ej[j] = h[j]
            pp, mm = obj.evaluate(x + ek + ej), obj.evaluate(x - ek - ej)
            pm, mp = obj.evaluate(x + ek - ej), obj.evaluate(x - ek + ej)
            H[k, j] = H[j, k] = (pp - pm - mp + mm) / (4.0 * h[k] * h[j])
    return H


def test_standard_errors_match_the_quadrature_objectives_curvature():
    m = _fit(9)
    obj, x = m.fit_result_.objective, m.fit_result_.params
    assert obj.n_agq == 9
    se = np.sqrt(np.diag(m.fit_result_.vcov))
    se_value = np.sqrt(np.diag(2.0 * np.linalg.inv(_value_hessian(obj, x))))
    np.testing.assert_allclose(se, se_value, rtol=0.02)


def test_counts_and_ordinal_outcomes_fit_with_quadrature():
    codes, X, Z, y = _small_data(G=40, family="poisson")
    df = pd.DataFrame({"x": X[:, 1], "t": Z[:, 1]})
    m = PoissonGLMM(random_effects="1 + t", n_agq=7).fit(df, y, groups=codes)
    assert m.converged_ and m.fit_record_.stages[-1][0] == "agq"
    lap = PoissonGLMM(random_effects="1 + t").fit(df, y, groups=codes)
    assert abs(m.loglik_ - lap.loglik_) < 1.0
    rng = np.random.default_rng(0)
    b = rng.normal(size=(40, 2))[codes]
    latent = X[:, 1] + b[:, 0] + 1.5 * b[:, 1] * Z[:, 1] + rng.logistic(size=len(y))
    score = np.digitize(latent, [-1.0, 0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)  # 40 judges: a correlation of 1
        o = OrdinalGLMM(random_effects="1 + t", n_agq=5).fit(df, score, groups=codes)
    assert o.converged_ and o.fit_result_.objective.n_agq == 5
    # the thresholds' derivatives too: the gradient near the optimum, against the value's
    obj, x = o.fit_result_.objective, o.fit_result_.params + 0.05
    _, grad = obj.value_and_grad(x)
    num = numeric_gradient(obj, x)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())


def test_unsupported_structures_are_refused_by_name():
    X, y, ids = _binary_slopes()
    X = X.assign(w=np.random.default_rng(0).normal(size=len(y)), v=1.0 * (ids % 3))
    with pytest.raises(ValueError, match="at most 3 random effects per level"):
        BinomialGLMM(random_effects="1 + t + x + w", n_agq=3).fit(X, y, groups=ids)
    with pytest.raises(ValueError, match=r"8000 are supported \(n_agq <= 20 here\)"):
        BinomialGLMM(random_effects="1 + t + x", n_agq=21).fit(X, y, groups=ids)
    groups = pd.DataFrame({"id": ids, "site": ids % 5})
    with pytest.raises(ValueError, match="single grouping factor"):
        BinomialGLMM(random_effects="1 + t", n_agq=3).fit(X, y, groups=groups)
    # Laplace still fits both
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular fit: w has no random slope
        assert BinomialGLMM(random_effects="1 + t + x + w").fit(X, y, groups=ids).converged_
        assert BinomialGLMM(random_effects="1 + t").fit(X, y, groups=groups).converged_


def test_fixture_loglik_against_the_committed_brute_force():
    """Held-out data (``fixtures/agq_vector``) with the brute-force log-likelihood at
    fixed parameters computed by ``make_reference.py``."""
    ref = json.loads((_FIXTURES / "reference.json").read_text())
    df = pd.read_csv(_FIXTURES / "binary_slopes.csv")
    for case in ref["cases"]:
        q = len(case["z_columns"]) + 1
        Z = np.column_stack([np.ones(len(df))] + [df[c].to_numpy() for c in case["z_columns"]])
        X = np.column_stack([np.ones(len(df))] + [df[c].to_numpy() for c in case["x_columns"]])
        codes = df["id"].to_numpy()
        obj = _objective(codes, X, np.asarray(Z, float), df["y"].to_numpy(float), q, case["n_agq"])
        L = np.asarray(case["L"], float)
        val = -0.5 * obj.evaluate(_params(q, case["beta"], L))
        assert val == pytest.approx(case["loglik"], abs=case["tolerance"])


def _simulated_people(seed, G=200, T=5, sd=(2.0, 1.0)):
    """Binary outcomes, G people x T visits, independent random intercept and slope."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(G), T)
    t = np.tile(np.arange(T), G) / (T - 1.0)
    trt = np.repeat(rng.integers(0, 2, G), T) * 1.0
    b = rng.normal(size=(G, 2)) * sd
    y = rng.binomial(1, expit(-0.5 + 0.5 * t + 0.5 * trt + b[ids, 0] + b[ids, 1] * t))
    return pd.DataFrame({"t": t, "trt": trt}), y, ids


def variance_component_study(n_rep=200, n_agq=(1, 7)):
    """Mean estimated SDs (intercept, slope) over simulated data sets, and their paired
    differences from Laplace: ``{n_agq: (n_rep, 2) array}``."""
    out = {k: [] for k in n_agq}
    for seed in range(n_rep):
        X, y, ids = _simulated_people(seed)
        for k in n_agq:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = BinomialGLMM(random_effects="1 + t", n_agq=k).fit(X, y, groups=ids)
            out[k].append(np.sqrt(np.diag(m.random_effects_cov_["group"].to_numpy())))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.slow
def test_quadrature_reduces_the_laplace_bias_of_the_variance_components():
    """Binary outcomes with 5 visits per person (true SDs 2 and 1): the Laplace estimates
    of both SDs are lower than the quadrature's, by many Monte-Carlo standard errors,
    and the quadrature's intercept SD is closer to the truth (docs/lme4_users.md)."""
    est = variance_component_study()
    diff = est[7] - est[1]
    se = diff.std(axis=0, ddof=1) / np.sqrt(len(diff))
    assert np.all(diff.mean(axis=0) > 4.0 * se)
    assert abs(est[7][:, 0].mean() - 2.0) < abs(est[1][:, 0].mean() - 2.0)


def test_a_failed_level_factorisation_is_a_failed_evaluation(monkeypatch):
    codes, X, Z, y = _small_data()
    obj = _objective(codes, X, Z, y, 2, 5)

    def fail(obj):
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(_agqv, "_level_factors", fail)
    val, grad = obj.value_and_grad(_params(2, [-0.2, 0.5], _L3))
    assert val == np.inf and not grad.any()


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_quadrature_of_slopes_ignores_zero_weights_and_counts_integer_weights(family):
    # the random effects' centring is a basis of the product rule: made from every row
    # unweighted, 40 rows of weight 0 at x = 8 moved an AGQ-3 fit by 0.014-0.031 in
    # log-likelihood, and integer weights were not that many copies of their rows
    # (2.2e-3 at n_agq = 3); weighted, both are the same fit (Laplace always was)
    rng = np.random.default_rng(36)
    G, n = 40, 10
    g = np.repeat(np.arange(G), n)
    x1 = rng.normal(size=G * n)
    eta = -0.3 + 0.6 * x1 + rng.normal(0, 0.8, G)[g] + rng.normal(0, 0.5, G)[g] * x1
    if family == "binomial":
        y, cls = rng.binomial(1, expit(eta)), BinomialGLMM
    else:
        y, cls = rng.poisson(np.exp(0.5 + 0.5 * eta)), PoissonGLMM
    w = rng.integers(1, 4, G * n).astype(float)
    X = pd.DataFrame({"x1": x1})
    rep = np.repeat(np.arange(G * n), w.astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = cls(random_effects="1 + x1", n_agq=3).fit(X, y, groups=g, sample_weight=w)
        copies = cls(random_effects="1 + x1", n_agq=3).fit(X.iloc[rep], y[rep], groups=g[rep])
        plain = cls(random_effects="1 + x1", n_agq=3).fit(X, y, groups=g)
        Xz = pd.concat([X, pd.DataFrame({"x1": np.full(40, 8.0)})], ignore_index=True)
        padded = cls(random_effects="1 + x1", n_agq=3).fit(
            Xz,
            np.r_[y, np.ones(40, int)],
            groups=np.r_[g, np.arange(40)],
            sample_weight=np.r_[np.ones(G * n), np.zeros(40)],
        )
    assert weighted.loglik_ == pytest.approx(copies.loglik_, abs=1e-7)
    np.testing.assert_allclose(weighted.coef_, copies.coef_, rtol=1e-5, atol=1e-6)
    assert padded.loglik_ == pytest.approx(plain.loglik_, abs=1e-7)
    np.testing.assert_allclose(padded.coef_, plain.coef_, rtol=1e-5, atol=1e-6)
