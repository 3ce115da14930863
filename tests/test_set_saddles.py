"""Negative curvature along a set of equal likelihood: the set's bend, or a saddle.

A random slope of arm indicators that are constant within each person, ``(1 + a1 + a2
| id)``, leaves only each arm's variance identified: the likelihood is constant on a
set of covariances that is linear in ``S`` but bends in the Cholesky entries. The
gradient left at an optimum (within lme4's tolerance) times that bend is negative
curvature in the Hessian along the set, which read as "a saddle point" at maxima. The
objective evaluated along it tells the bend from a saddle.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine import converge as C
from sklearn_glmm._engine.equal_likelihood import unidentified_directions
from sklearn_glmm._engine.hessian import hessian
from sklearn_glmm._engine.optimize import FitRecord

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _arms(seed, n_arms, variances, n_id, family):
    """Eight rows per person, one arm per person (indicators ``a1 ...``), a random
    intercept per person of its arm's variance."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_id), 8)
    arm = (np.arange(n_id) % n_arms)[g]
    sd = np.sqrt(np.asarray(variances))[np.arange(n_id) % n_arms]
    eta = -0.3 + 0.3 * (arm == 1) - 0.2 * (arm == 2) + (rng.normal(size=n_id) * sd)[g]
    X = pd.DataFrame({f"a{k}": (arm == k).astype(float) for k in range(1, n_arms)})
    if family == "poisson":
        y = rng.poisson(np.exp(eta + 0.5)).astype(float)
    else:
        mu = np.exp(eta + 1.0)
        y = rng.negative_binomial(2, 2 / (2 + mu)).astype(float)
    return X, y, g, arm


def _fit(Est, X, y, g, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", RuntimeWarning)
        m = Est(**kw).fit(X, y, groups=g)
    return m, {w.category for w in caught}


@pytest.mark.parametrize(
    "Est,args",
    [
        # 4 arms, one variance 0 (its Cholesky diagonal on the bound): -5.6e-4 along the
        # set on the unit-diagonal scale, past the flatness threshold of 3.5e-4
        (PoissonGLMM, (2, 4, [1.0, 0.5, 2.0, 0.0], 80, "poisson")),
        # 3 arms, every entry free: -2.2e-3 and -4.3e-4, from a scaled gradient of 1.6e-3
        (NegBinGLMM, (0, 3, [1.0, 0.0, 1.5], 60, "negbin")),
        # and the gradient check, which divides by the Hessian only where it is positive
        # definite: a raw gradient of 3.6e-3 failed it, 2.2e-4 on the identified directions
        (PoissonGLMM, (21, 4, [1.0, 0.5, 2.0, 0.0], 80, "poisson")),
    ],
)
def test_negative_curvature_from_the_sets_bend_is_not_a_saddle(Est, args):
    # "Model failed to converge ... a saddle point" at these maxima: along the Hessian's
    # negative direction the objective falls by 2e-8 at most, then rises, and an
    # L-BFGS-B polish from the fit gains less than 1e-7 of -2 log L
    X, y, g, arm = _arms(*args)
    m, caught = _fit(Est, X, y, g, random_effects="1 + " + " + ".join(X.columns))
    record = m.fit_record_
    assert m.converged_ and ConvergenceWarning not in caught
    assert not record.negative_curvature and record.max_scaled_grad < 1e-3
    assert ("negative curvature along the set", "not lower: the set's bend") in {
        (s[0], s[3]) for s in record.stages
    }
    # the covariance over the identified directions: the fixed effects' standard errors
    # are those of the model of the arms' variances, diag(0 + a0 + a1 + ...)
    assert record.identified_covariance is not None
    arms = [f"a{k}" for k in range(args[1])]
    X0 = X.assign(a0=(arm == 0).astype(float))
    d, _ = _fit(
        Est, X0, y, g, random_effects=f"diag(0 + {' + '.join(arms)})", random_only_columns=["a0"]
    )
    assert m.loglik_ == pytest.approx(d.loglik_, abs=1e-6)
    np.testing.assert_allclose(
        m.fixed_effects_["std_error"], d.fixed_effects_["std_error"], rtol=1e-3
    )


class _Objective:
    """An objective of three parameters, ``value(x)``, with the calls the check makes."""

    def __init__(self, value):
        self.value = value
        self.n_evals = 0

    def evaluate(self, x):
        self.n_evals += 1
        return float(self.value(np.asarray(x, dtype=float)))

    def value_and_grad(self, x):
        return self.evaluate(x), None

    def snapshot(self):
        return None

    def restore(self, snap):
        pass


def _check(value, H, unidentified):
    """``(negative before, negative after the check, evaluations)`` at 0 with the
    Hessian ``H``, the objective ``value`` and the directions of equal likelihood."""
    x, bounds = np.zeros(3), [(None, None)] * 3
    obj = _Objective(value)
    record = FitRecord(initial=x, objective=value(x), unidentified=unidentified)
    negative = C.curvature(H, x, bounds, unidentified=unidentified)[2]
    bend = negative and C._set_bend(obj, x, H, bounds, record)
    after = C.curvature(H, x, bounds, unidentified=unidentified, along_set=bend)[2]
    return negative, after, obj.n_evals


# curvature -0.01 along e0, a direction of the set
_H = np.diag([-0.01, 1.0, 1.0])
_N = np.eye(3)[:, :1]


def test_a_saddle_along_the_set_is_still_reported():
    # the objective the Hessian describes: lower along its negative direction (by 1e-6
    # at a step of 0.014)
    negative, after, n = _check(lambda x: 0.5 * x @ _H @ x, _H, _N)
    assert negative and after and n > 0


def test_the_sets_bend_is_taken_out_of_the_hessian():
    # an objective constant on the bent set x2 = 5 x0^2, whose gradient there (1e-3
    # along x2) times the bend (-10) is the Hessian's -0.01 along x0: along x0 it falls
    # by the gradient's Newton decrement, 5e-7 at most, then rises
    def bent(x):
        u = x[2] - 5.0 * x[0] ** 2
        return 1e-3 * u + 0.5 * u**2 + 0.5 * x[1] ** 2

    steps = 1e-4 * np.eye(3)
    fd = [[bent(a + b) - bent(a - b) - bent(b - a) + bent(-a - b) for b in steps] for a in steps]
    np.testing.assert_allclose(np.array(fd) / 4e-8, _H, atol=1e-6)
    negative, after, n = _check(bent, _H, _N)
    assert negative and not after and n > 0


def test_a_negative_direction_off_the_set_is_not_evaluated():
    # a flat direction of the set coupled by 0.3 to an identified one (a saddle along
    # (1, 0, -0.3)): its negative direction leaves the set's span, and no evaluation is
    # spent on it; no set, no evaluation either
    H = np.array([[0.0, 0.0, 0.3], [0.0, 1.0, 0.0], [0.3, 0.0, 1.0]])
    for N in (np.eye(3)[:, :2], None):
        negative, after, n = _check(lambda x: 0.0, H, N)
        assert negative and after and n == 0


def test_a_saddle_on_the_sets_face_is_still_reported():
    # 3 arms, all of variance above 0, held at a stationary point with arm 2's variance
    # 0 (L' z = 0 for its row z of Z: a face of the set, the last Cholesky diagonal on
    # its bound), where the likelihood rises with that variance: its directions that
    # leave the face at second order are in the set's span at first order, with
    # negative curvature coupled to the identified ones, and the fit is a saddle
    X, y, g, arm = _arms(1, 3, [1.0, 0.5, 2.0], 60, "poisson")
    m, _ = _fit(PoissonGLMM, X, y, g, random_effects="1 + a1 + a2")
    res = m.fit_result_
    obj, bounds = res.objective, res.bounds
    f, p = obj.data.factors[0], obj.data.n_beta
    z = f.Z[np.flatnonzero(arm == 2)[0]]

    def point(v):  # (beta, L11, L21, L22) -> parameters with arm 2's variance 0
        L = np.zeros((3, 3))
        L[0, 0], L[1, 0], L[1, 1] = v[p:]
        L[2, :2] = -(z[0] * L[0, :2] + z[1] * L[1, :2]) / z[2]
        return np.concatenate([v[:p], L[f.theta_rows, f.theta_cols]])

    J = np.column_stack([point(e) - point(0 * e) for e in np.eye(p + 3)])
    L0 = np.zeros((3, 3))
    L0[f.theta_rows, f.theta_cols] = res.params[p:]
    v0 = np.r_[res.params[:p], L0[0, 0], L0[1, 0], L0[1, 1]]

    def held(v):
        val, grad = obj.value_and_grad(point(v))
        return val, J.T @ grad

    r = minimize(held, v0, jac=True, method="L-BFGS-B", options=dict(ftol=1e-14, gtol=1e-9))
    x = point(r.x)
    fun, grad = obj.value_and_grad(x)
    assert np.max(np.abs(grad)) < 1e-3 and fun > res.record.objective + 10  # stationary, lower
    H = hessian(obj, x)
    N = unidentified_directions(obj, x, bounds)
    assert N is not None
    record = FitRecord(initial=x, objective=fun, unidentified=N)
    assert C.curvature(H, x, bounds, unidentified=N)[2]
    assert not C._set_bend(obj, x, H, bounds, record)
