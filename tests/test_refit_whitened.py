"""Refits from the fitted point on coordinates whitened by its Hessian (_engine.refit)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.model_data import lambda_matrices
from sklearn_glmm._engine.optimize import fit_objective
from sklearn_glmm._engine.refit import canonical_factors, whitened_refit, whitening
from sklearn_glmm._simulate import _objective, refit_many, simulate_response


def _fit(est, seed=0, n_groups=30, n_per=10, sd_slope=0.3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.standard_normal(len(g))
    b0, b1 = rng.normal(0, 0.6, n_groups)[g], rng.normal(0, sd_slope, n_groups)[g]
    eta = 0.3 + 0.5 * x + b0 + b1 * x
    if isinstance(est, BinomialGLMM):
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(eta))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(pd.DataFrame({"x": x}), y, groups=g)


def _setup(est):
    res = est.fit_result_
    d = res.objective.data
    diag_idx = [k for k, b in enumerate(res.bounds[: d.n_beta + d.n_theta]) if b[0] == 0.0]
    return res, d, diag_idx


@pytest.mark.parametrize(
    "est", [PoissonGLMM(random_effects="1 + x"), BinomialGLMM(random_effects="1 + x")]
)
def test_a_whitened_refit_reaches_the_ordinary_refits_optimum(est):
    est = _fit(est, n_per=20, sd_slope=0.6)
    res, d, diag_idx = _setup(est)
    A = whitening(d, res.params, res.record.hessian, res.bounds)
    assert A is not None
    np.testing.assert_allclose(A.T @ res.record.hessian @ A, np.eye(len(A)), atol=1e-8)
    Y = simulate_response(est, 12, random_state=3)
    n_white = n_plain = 0
    for r in range(Y.shape[1]):
        o1, o2 = _objective(est, Y[:, r]), _objective(est, Y[:, r])
        x1, rec1 = whitened_refit(o1, res.params, A, res.bounds, 1000, est.tol, diag_idx)
        x2, rec2 = fit_objective(o2, res.params.copy(), res.bounds, 1000, est.tol, diag_idx)
        assert rec1.converged and rec2.converged
        # the same optimum within L-BFGS-B's tolerance, neither lower by more
        assert abs(rec1.objective - rec2.objective) < 2e-6
        assert np.all(x1[diag_idx] >= 0.0)
        n_white += rec1.n_evaluations
        n_plain += rec2.n_evaluations
    assert n_white < n_plain  # what it is for: fewer evaluations per refit


def test_canonical_factors_keep_the_covariance():
    est = _fit(PoissonGLMM(random_effects="1 + x"))
    res, d, _ = _setup(est)
    x = res.params.copy()
    p = d.n_beta
    x[p : p + d.n_theta] *= -1.0  # every column of the factor flipped
    y = canonical_factors(d, x)
    (L,) = lambda_matrices(d, y[p : p + d.n_theta])
    (M,) = lambda_matrices(d, x[p : p + d.n_theta])
    assert np.all(np.diag(L) >= 0)
    np.testing.assert_allclose(L @ L.T, M @ M.T, rtol=1e-14)
    np.testing.assert_array_equal(canonical_factors(d, res.params), res.params)


def test_a_refit_whose_variance_crosses_zero_ends_on_the_bound():
    # a slope SD of 0.05 (fitted 0.1): replicates put it at or near zero; the whitened
    # run, without bounds, crosses it and comes back on the canonical factor
    est = _fit(PoissonGLMM(random_effects="1 + x"), seed=8, sd_slope=0.05)
    res, d, diag_idx = _setup(est)
    assert not est.is_singular_
    out = refit_many(est, simulate_response(est, 30, random_state=1))
    xs = np.array([x for x, rec in out])
    assert all(rec.converged for _, rec in out)
    assert np.all(xs[:, diag_idx] >= 0.0)
    assert np.any(xs[:, diag_idx] == 0.0)  # some on the bound, as lme4 reports them


def test_whitening_applies_only_where_the_run_needs_no_bounds():
    pois = _fit(PoissonGLMM(random_effects="1 + x"))
    res, d, _ = _setup(pois)
    H = res.record.hessian
    assert whitening(d, res.params, None, res.bounds) is None
    assert whitening(d, res.params, -H, res.bounds) is None  # not positive definite
    on_bound = res.params.copy()
    on_bound[d.n_beta] = 0.0  # a zero variance
    assert whitening(d, on_bound, H, res.bounds) is None
    nb = _fit(NegBinGLMM(random_effects="1"))  # theta has bounds of its own
    r2, d2, _ = _setup(nb)
    assert whitening(d2, r2.params, r2.record.hessian, r2.bounds) is None


def _level_slope_refits(n_groups, per, sds, intercept, n_sim, columns, **refit):
    """A Poisson fit of ``1 + z``, z constant within groups (drawn with fixed seeds),
    and its refits of the ``columns`` of ``n_sim`` simulated outcomes against fresh
    fits of them:
    ``(refit's -2 log L, fresh fit's, refit's stages)`` for each."""
    from sklearn.base import clone

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.standard_normal(n_groups * per)
    z = np.repeat(rng.standard_normal(n_groups), per)
    b = rng.standard_normal((n_groups, 2)) * sds
    slope_x, slope_z = (0.2, 0.3) if intercept < 10 else (0.1, 0.2)
    y = rng.poisson(np.exp(intercept + slope_x * x + slope_z * z + b[g, 0] + b[g, 1] * z))
    X = pd.DataFrame({"x": x, "z": z})
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = PoissonGLMM("1 + z").fit(X, y, groups=g)
        Y = simulate_response(est, n_sim, random_state=1001)[:, columns]
        for r, (_, record) in enumerate(refit_many(est, Y, **refit)):
            fresh = clone(est).fit(X, Y[:, r], groups=g)
            out.append((record.objective, -2.0 * fresh.loglik_, record.stages))
    return out


def test_refits_of_a_level_predictors_slope_reach_a_fresh_fits_optimum():
    # a random slope of z, constant within groups: its likelihood can have several
    # optima, and a fit tries other starts for it; the bootstrap's whitened refits did
    # not, and one of these 20 replicates ended 0.54 in -2 log L above a fresh fit of
    # its outcome, converged
    for refit, fresh, stages in _level_slope_refits(30, 4, [0.3, 0.1], 5.0, 20, list(range(20))):
        assert refit <= fresh + 1e-3
        assert any(s[0].startswith("level slope restart") for s in stages)


def test_refits_from_a_bound_of_a_level_predictors_slope_try_a_fresh_fits_starts():
    # counts near e^10.5, the slope's variance on its bound at the fit: refitted the
    # ordinary way, with the further starts made from the fitted estimate one replicate
    # ended 3.7 in -2 log L above a fresh fit of its outcome (two others below it); the
    # starts are now a fresh fit's own, and its start itself is tried
    cases = _level_slope_refits(40, 3, [0.1, 0.01], 10.5, 60, [5, 16, 46], batched=False)
    for refit, fresh, _ in cases:
        assert refit <= fresh + 1e-3
