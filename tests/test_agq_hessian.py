"""The closed-form Hessian of the adaptive quadrature objective (one scalar random
effect): against Richardson-extrapolated central differences of the exact quadrature
gradient (itself checked against the value in ``test_agq.py``), and second differences
of the value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from test_laplace_hessian import (
    CASES,
    _central_hessian,
    _objective,
    check_block_and_theta_column,
    check_closed_block,
    count_model,
)

from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm._engine import agq_hessian as ah
from sklearn_glmm._engine.hessian import hessian


@pytest.mark.parametrize("k", range(len(CASES)))
@pytest.mark.parametrize("theta", [0.0, 0.05, 0.7, 1.6])
@pytest.mark.parametrize("n_agq", [2, 9])
def test_matches_differences_of_the_gradient(k, theta, n_agq):
    rng = np.random.default_rng([k, int(theta * 100), n_agq])
    obj = _objective(rng=rng, n_agq=n_agq, **CASES[k])
    if not obj._scalar:  # (the cases with a random slope: one scalar effect too)
        pytest.skip("not a scalar random effect")
    assert ah.applies(obj)
    x = np.array([0.1, 0.4, -0.2, theta])
    obj.value_and_grad(x)
    H = ah.agq_hessian(obj)
    # the objective's Hessian (the fit's) is this one, no difference taken
    assert np.array_equal(hessian(obj, x), H)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(H, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
    assert np.array_equal(H, H.T)


def test_matches_second_differences_of_the_value():
    rng = np.random.default_rng(21)
    obj = _objective("binomial", rng, trials=True, slope=True, n_agq=7)
    x = np.array([0.1, 0.4, -0.2, 0.6])
    obj.value_and_grad(x)
    H = ah.agq_hessian(obj)
    h = 2e-3
    ref = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            ei, ej = np.eye(4)[i] * h, np.eye(4)[j] * h
            f = [obj.evaluate(x + si * ei + sj * ej) for si in (1, -1) for sj in (1, -1)]
            ref[i, j] = (f[0] - f[1] - f[2] + f[3]) / (4 * h * h)
    np.testing.assert_allclose(H, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)


def test_negative_binomial_block_and_theta_column():
    """NB2 with quadrature: the (beta, theta) block in closed form, log theta's row and
    column by differences of the gradient."""
    rng = np.random.default_rng(4)
    obj = _objective("negbin", rng, weights=True, offset=True, n_agq=5)
    assert ah.applies(obj)
    check_block_and_theta_column(obj, np.array([0.1, 0.4, -0.2, 0.6, 1.0]), ah.agq_hessian)


@pytest.mark.parametrize(
    "family, zero_inflated",
    [("poisson", True), ("negbin", True), ("negbin1", False), ("betabinomial", False)],
)
def test_block_in_closed_form_for_families_not_log_concave(family, zero_inflated):
    """Zero inflation, NB1 and the beta-binomial with quadrature: the (beta, theta) block
    in closed form (the family's fourth derivative), the family's parameters by
    differences."""
    rng = np.random.default_rng([len(family), 7])
    kw = dict(weights=True, offset=True, n_agq=7, zero_inflated=zero_inflated)
    obj = _objective(family, rng, **kw)
    assert ah.applies(obj)
    own = {"negbin": [0.8, -0.7], "poisson": [-0.7], "negbin1": [-0.4], "betabinomial": [1.5]}
    check_closed_block(obj, np.array([0.1, 0.4, -0.2, 0.6, *own[family]]), ah.agq_hessian)


@pytest.mark.parametrize("kind, base", [("truncated", "poisson"), ("hurdle", "negbin")])
def test_truncated_and_hurdle_block_in_closed_form(kind, base):
    """Zero-truncated and hurdle counts with quadrature: the (beta, theta) block in
    closed form (the truncation's fourth derivative), against extrapolated differences."""
    obj = count_model(
        kind, base, np.random.default_rng([len(kind), 5]), 7, weights=True, offset=True
    )
    assert ah.applies(obj)
    own = {"truncated": [], "hurdle": [1.2, -0.8]}[kind]
    check_closed_block(obj, np.array([0.1, 0.4, -0.2, 0.6, *own]), ah.agq_hessian)


def test_large_data_blocks(monkeypatch):
    """Above MAX_CELLS the fit's Hessian is taken by differences again."""
    rng = np.random.default_rng(3)
    obj = _objective("poisson", rng, n_agq=9)
    assert ah.applies(obj)
    monkeypatch.setattr(ah, "MAX_CELLS", 10)
    assert not ah.applies(obj)
    x = np.array([0.1, 0.4, -0.2, 0.6])
    obj.value_and_grad(x)
    assert obj.exact_hessian_block() is None


@pytest.mark.parametrize("family", ["binary", "poisson"])
def test_fitted_standard_errors_are_the_exact_curvature(family):
    """A quadrature fit's standard errors come from the closed form: within 1e-6 of
    those of the extrapolated differences at the optimum (forward differences were off
    by about 1e-4)."""
    rng = np.random.default_rng(9)
    G, n = 40, 4
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    eta = -0.2 + 0.5 * x + rng.normal(0, 1.3, G)[g]
    if family == "binary":
        est, y = BinomialGLMM(n_agq=12), rng.binomial(1, expit(eta))
    else:
        est, y = PoissonGLMM(n_agq=12), rng.poisson(np.exp(eta))
    m = est.fit(pd.DataFrame({"x": x}), y, groups=g)
    obj, xh = m.fit_result_.objective, m.fit_result_.params
    obj.value_and_grad(xh)
    ref = _central_hessian(obj, xh)
    np.testing.assert_allclose(m.fit_record_.hessian, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
