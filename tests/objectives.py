"""Simulated Laplace objectives on the internal design, shared by the engine tests."""

from __future__ import annotations

import numpy as np

from sklearn_glmm._design import theta_layout
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import ModelData, Objective, make_factor_data


def simulated_objective(fam_name, zi, codes, qs, rng, re_sd, n_agq=1):
    """An :class:`Objective` on outcomes simulated with random intercepts for ``codes``
    (one array of level codes per factor), its ``q`` columns taken from
    ``[1, x1, x2]``, and a parameter vector to evaluate it at."""
    fam = make_family(fam_name, zi)
    n = len(codes[0])
    levels = [int(c.max()) + 1 for c in codes]
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    eta = X @ [0.3, 0.5, -0.2] + sum(rng.normal(size=g)[c] * re_sd for c, g in zip(codes, levels))
    if fam_name == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
        if zi:
            y[rng.random(n) < 0.2] = 0
    factors = make_factor_data(
        codes, [X[:, :q] for q in qs], levels, [theta_layout(q, False) for q in qs]
    )
    data = ModelData(X, y, np.ones(n), np.ones(n), np.zeros(n), fam, factors)
    T = data.n_theta
    params = np.concatenate([[0.2, 0.4, -0.1], rng.uniform(0.3, 0.8, T), fam.default_extra() + 0.3])
    return Objective(data, n_agq), params


def numeric_gradient(obj, params, h=1e-5):
    """Central differences of the objective, one parameter at a time."""
    num = np.zeros_like(params)
    for k in range(len(params)):
        e = np.zeros_like(params)
        e[k] = h
        num[k] = (obj.evaluate(params + e) - obj.evaluate(params - e)) / (2 * h)
    return num


def assert_same_objective(obj, ref, params):
    """Two objectives (other solvers) agree: value, gradient, conditional variances."""
    import pytest

    v_ref, g_ref = ref.value_and_grad(params)
    v, g = obj.value_and_grad(params)
    assert v == pytest.approx(v_ref, rel=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-8, atol=1e-8)
    for f in range(len(ref.data.factors)):
        np.testing.assert_allclose(
            obj.conditional_variances(f), ref.conditional_variances(f), atol=1e-12
        )
