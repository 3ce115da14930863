"""The family contract's ``node_derivs``: what adaptive quadrature reads at its nodes
(the log-density, ``d1`` and the partials in the family's own parameters) from one
pass, against ``derivs`` and ``extra_derivs``; and the quadrature gradient built from
them against central differences of the value, whether the value's pass keeps them,
keeps ``d1`` alone, or keeps nothing (nodes in blocks, made again)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from objectives import numeric_gradient

from sklearn_glmm import OrdinalGLMM
from sklearn_glmm._engine import quadrature as _agq
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import Objective

_LINKS = ["logit", "probit", "cloglog", "loglog", "cauchit"]


@pytest.mark.parametrize("link", _LINKS)
@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_ordinal_node_derivs_are_derivs_and_extra_derivs(link, scale, weighted):
    rng = np.random.default_rng(2)
    K, n, k_nodes = 5, 200, 3
    fam = make_family("ordinal", n_classes=K, link=link, scale=scale)
    y = np.tile(np.arange(K), n // K).astype(float)
    # the middle and both tails of every class
    eta = np.concatenate([rng.normal(scale=2.0, size=(k_nodes, n // 2)),
                          rng.uniform(-15, 15, size=(k_nodes, n // 2))], axis=1)  # fmt: skip
    a = fam.default_extra()[: fam.J.shape[1]] + rng.normal(scale=0.1, size=fam.J.shape[1])
    extra = tuple(a) + ((rng.normal(scale=0.3, size=n),) if scale else ())
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    const = fam.constant(y, None)
    nd = fam.node_derivs(y, eta, None, w, extra, const, with_extra=True)
    assert fam.node_derivs(y, eta, None, w, extra, const).channels is None
    for k in range(k_nodes):
        der = fam.derivs(y, eta[k], None, w, extra, const)
        dl, _, _ = fam.extra_derivs(y, eta[k], None, w, extra, const)
        np.testing.assert_allclose(nd.loglik[k], der.loglik, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(nd.d1[k], der.d1, rtol=1e-12, atol=1e-14)
        partials = np.einsum("ecn,cn->en", nd.rows, nd.channels[:, k])
        assert partials.shape == dl.shape
        np.testing.assert_allclose(partials, dl, rtol=1e-12, atol=1e-14)


def test_ordinal_node_derivs_with_thresholds_out_of_order_are_a_failed_value():
    fam = make_family("ordinal", n_classes=4)
    y = np.array([0.0, 1.0, 2.0, 3.0])
    extra = (1.0, -1.0, 0.5)  # the second threshold increment negative
    if np.all(np.diff(fam.alpha(extra)) > 0):
        extra = (1.0, -5.0, -5.0)
    assert not np.all(np.diff(fam.alpha(extra)) > 0)
    nd = fam.node_derivs(y, np.zeros((2, 4)), None, None, extra, with_extra=True)
    assert np.all(nd.loglik == -np.inf) and not np.any(nd.d1)


def _ordinal_fit(re, scale, n_agq):
    rng = np.random.default_rng(1)
    n, waves = 40, 5
    g = np.repeat(np.arange(n), waves)
    X = pd.DataFrame({"t": np.tile(np.arange(waves), n) / waves,
                      "s": rng.integers(0, 2, n * waves).astype(float)})  # fmt: skip
    lat = 0.6 * X["t"] + rng.normal(size=n)[g] + rng.normal(scale=1.5, size=n)[g] * X["t"]
    lat = lat + np.exp(0.3 * X["s"]) * rng.logistic(size=n * waves)
    y = np.digitize(lat, [-1.0, 0.0, 1.0, 2.0])
    w = rng.uniform(0.5, 2.0, n * waves)
    kw = {"scale": "s"} if scale else {}
    return OrdinalGLMM(random_effects=re, n_agq=n_agq, **kw).fit(X, y, groups=g, sample_weight=w)


def _away_from_the_optimum(m, n_agq, scale):
    """A fit's model data, a point near its optimum (a fixed random shift of each
    parameter by about ``scale``) and the quadrature objective's central differences
    there (steps of 1e-6)."""
    data = m.fit_result_.objective.data
    shift = np.random.default_rng(0).normal(size=len(m.fit_result_.params))
    p = m.fit_result_.params + scale * shift
    return data, p, numeric_gradient(Objective(data, n_agq), p, h=1e-6)


@pytest.mark.parametrize("re,n_agq", [("1", 7), ("1 + t", 5)])
@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("kept", ["all", "blocks", "none"])
def test_ordinal_quadrature_gradient_from_the_node_derivs(re, n_agq, scale, kept, monkeypatch):
    data, p, fd = _away_from_the_optimum(_ordinal_fit(re, scale, n_agq), n_agq, 0.05)
    fd_obj = Objective(data, n_agq)
    n = len(data.y)
    if kept != "all":  # the nodes in blocks of three
        monkeypatch.setattr(_agq, "_BLOCK_ELEMENTS", 3 * n)
    if kept == "none":  # nothing kept: the gradient makes the nodes' derivatives again
        monkeypatch.setattr(_agq, "_KEEP_ELEMENTS", 0)
    obj = Objective(data, n_agq)
    value = obj.evaluate(p)
    assert value == pytest.approx(fd_obj.evaluate(p), rel=1e-13)
    kept_nodes = obj._agq_cache.nodes
    if kept == "none":
        assert kept_nodes is None
    else:  # the value's pass kept the partials in the thresholds (and scale) too
        assert len(kept_nodes) == (1 if kept == "all" else -(-(n_agq ** (1 + (re != "1"))) // 3))
        assert all(nd.channels.shape[0] == 2 + scale for nd in kept_nodes)
    np.testing.assert_allclose(obj.gradient(p), fd, rtol=1e-6, atol=2e-6 * np.abs(fd).max())


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_nb2_node_derivs_are_derivs_and_extra_derivs(per_row, weighted):
    """Counts from 0 to the millions (the large-count terms), theta near the Poisson
    limit, and with per-row values (a dispersion model) some on the bound."""
    from sklearn_glmm._engine.families.negbin import _UPPER

    rng = np.random.default_rng(3)
    fam = make_family("negbin")
    n, k_nodes = 120, 3
    y = np.concatenate([rng.poisson(2.0, n - 20), rng.integers(10**5, 10**7, 20)]).astype(float)
    eta = np.log(y + 0.5) + rng.normal(scale=0.5, size=(k_nodes, n))
    lt = rng.uniform(-2.0, 20.0, n) if per_row else 1.3
    if per_row:
        lt[:5] = _UPPER
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    const = fam.constant(y, None)
    nd = fam.node_derivs(y, eta, None, w, (lt,), const, with_extra=True)
    assert nd.rows is None and nd.channels.shape == (1, k_nodes, n)
    for k in range(k_nodes):
        der = fam.derivs(y, eta[k], None, w, (lt,), const)
        dl, _, _ = fam.extra_derivs(y, eta[k], None, w, (lt,), const)
        np.testing.assert_array_equal(nd.loglik[k], der.loglik)
        np.testing.assert_array_equal(nd.d1[k], der.d1)
        np.testing.assert_allclose(nd.channels[:, k], dl, rtol=1e-13, atol=1e-300)
    at_bound = fam.node_derivs(y, eta, None, w, (_UPPER,), const, with_extra=True)
    assert not np.any(at_bound.channels)


@pytest.mark.parametrize("dispersion, re, n_agq", [("1 + x", "1", 5), ("1 + x", "1 + x", 3)])
@pytest.mark.parametrize("kept", [True, False])
def test_nb2_quadrature_gradient_with_a_dispersion_model(dispersion, re, n_agq, kept, monkeypatch):
    """A theta per row (a dispersion model): the nodes' partials in log theta, mapped
    to the dispersion's coefficients, against central differences of the value."""
    from sklearn_glmm import NegBinGLMM

    rng = np.random.default_rng(9)
    n, per = 60, 6
    g = np.repeat(np.arange(n), per)
    X = pd.DataFrame({"x": rng.normal(size=n * per)})
    b = rng.normal(size=(n, 2)) * [0.6, 0.6]
    mu = np.exp(0.8 + 0.3 * X["x"] + b[g, 0] + b[g, 1] * X["x"])
    theta = np.exp(0.5 + 0.4 * X["x"])
    y = rng.negative_binomial(theta, theta / (theta + mu))
    m = NegBinGLMM(random_effects=re, dispersion=dispersion, n_agq=n_agq).fit(X, y, groups=g)
    data, p, fd = _away_from_the_optimum(m, n_agq, 0.03)
    if not kept:
        monkeypatch.setattr(_agq, "_KEEP_ELEMENTS", 0)
    _, grad = Objective(data, n_agq).value_and_grad(p)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
