"""Tier 1: adaptive Gauss-Hermite quadrature against a node-by-node evaluation.

The library evaluates every node at once (a linear predictor of shape
``(n_agq, n)``) and shares the nodes between the value and the gradient. The
reference here sums one node at a time with one-dimensional family calls,
``np.bincount`` level sums and scipy's ``logsumexp``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit, logsumexp

from sklearn_glmm import _agq
from sklearn_glmm._design import theta_layout
from sklearn_glmm._families import make_family
from sklearn_glmm._laplace import ModelData, Objective, make_factor_data

_N_LEVELS = 25


def _codes(layout, rng):
    """Level codes: every level present, rows shuffled, in level runs, or in runs out of order."""
    codes = np.repeat(np.arange(_N_LEVELS), rng.integers(1, 20, _N_LEVELS))
    if layout == "shuffled":
        return rng.permutation(codes)
    if layout == "runs":
        return rng.permutation(_N_LEVELS)[codes]
    return codes


def _agq_objective(fam_name, zi=False, layout="sorted", large=False, n_agq=7, seed=3):
    """An AGQ objective with unequal weights, an offset and (binomial) several trials."""
    rng = np.random.default_rng(seed)
    codes = _codes(layout, rng)
    n = len(codes)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    shift = np.log(5000.0) if large else 0.0  # counts above 1e3: the large-count branch
    eta = X @ [0.3 + shift, 0.5, -0.2] + 0.8 * rng.normal(size=_N_LEVELS)[codes]
    trials = np.ones(n)
    if fam_name == "binomial":
        trials = rng.integers(1, 6, n).astype(float)
        y = rng.binomial(trials.astype(int), expit(eta)).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
        if zi:
            y[rng.random(n) < 0.2] = 0.0
    fam = make_family(fam_name, zi)
    factors = make_factor_data([codes], [X[:, :1]], [_N_LEVELS], [theta_layout(1, False)])
    weights = rng.uniform(0.5, 2.0, n)
    data = ModelData(X, y, trials, weights, rng.normal(0.0, 0.1, n), fam, factors)
    params = np.concatenate([[0.2 + shift, 0.4, -0.1, 0.6], fam.default_extra() + 0.3])
    return Objective(data, n_agq), params


def _agq_by_node(obj, params):
    """-2 log L and its gradient (nodes held in place), one node at a time."""
    obj.evaluate(params)
    d, s = obj.data, obj.state
    f = d.factors[0]
    z, wts = hermegauss(obj.n_agq)
    sd = np.sqrt(obj.solver.hinv[:, 0, 0])
    extra = s["extra"]
    terms, etas, nodes = [], [], []
    for zk, wk in zip(z, wts):
        uk = s["u"] + zk * sd
        eta = s["eta_fix"] + s["a_vals"][:, 0] * uk[f.codes]
        ll = np.bincount(f.codes, obj._derivs(eta, extra).loglik, minlength=f.n_levels)
        terms.append(np.log(wk / np.sqrt(2.0 * np.pi)) + ll - 0.5 * uk**2 + 0.5 * zk**2)
        etas.append(eta)
        nodes.append(uk)
    terms = np.array(terms)
    value = -2.0 * np.sum(np.log(sd) + logsumexp(terms, axis=0))
    post = np.exp(terms - logsumexp(terms, axis=0))
    p = d.n_beta
    g = np.zeros(len(params))
    for k, (eta, uk) in enumerate(zip(etas, nodes)):
        pk = post[k][f.codes]
        d1 = obj._derivs(eta, extra).d1 * pk
        g[:p] += d.X.T @ d1
        g[p] += np.sum(d1 * f.Z[:, 0] * uk[f.codes])
        for e in range(len(extra)):
            h = np.zeros(len(extra))
            h[e] = 1e-5
            dl = obj._derivs(eta, extra + h).loglik - obj._derivs(eta, extra - h).loglik
            g[p + 1 + e] += np.sum(pk * dl) / 2e-5
    return value, -2.0 * g


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
    ref_val, ref_grad = _agq_by_node(obj, params)
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
    ref_val3, ref_grad3 = _agq_by_node(obj, params)
    assert val3 == pytest.approx(ref_val3, rel=1e-12)
    np.testing.assert_allclose(grad3, ref_grad3, rtol=1e-7, atol=1e-7 * np.abs(grad3).max())
