"""The check of a Laplace fit against adaptive quadrature (``_engine.quadrature_check``).

Truth: ``tests/truth.py``'s adaptive quadrature with 60 nodes per level, an independent
implementation of the marginal likelihood.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import truth

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm.exceptions import ApproximationWarning


def _binary(seed, G=200, n=5, b0=-3.0, sd=3.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"x": x}), y, g


def _params(m):
    (S,) = m.random_effects_cov_.values()
    return dict(beta=np.r_[m.intercept_, m.coef_], sigma=float(np.sqrt(S.iloc[0, 0])))


def _fit(est, X, y, g):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = est.fit(X, y, groups=g)
    return m, [w for w in caught if w.category is ApproximationWarning]


def _distance(lap, agq):
    """The largest difference of ``lap``'s and ``agq``'s parameters in ``lap``'s standard
    errors (the objective is -2 log L: the covariance is twice its inverse Hessian)."""
    se = np.sqrt(2.0 * np.diag(np.linalg.inv(lap.fit_record_.hessian)))
    return np.max(np.abs(lap.fit_result_.params - agq.fit_result_.params) / se)


def test_a_poor_laplace_fit_is_warned_of():
    # rare events in groups of five with an SD of 3: the Laplace optimum (SD 3.78) is
    # 2.3 units of the true log-likelihood below quadrature's (SD 3.09), converged and
    # without a word (lme4 the same)
    X, y, g = _binary(1)
    m, warned = _fit(BinomialGLMM(), X, y, g)
    assert m.converged_ and len(warned) == 1
    assert "n_agq" in str(warned[0].message)
    assert m.fit_record_.quadrature_shift > 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agq = BinomialGLMM(n_agq=25).fit(X, y, groups=g)
    td = truth.GLMMData(np.c_[np.ones(len(y)), X["x"]], y, g, "binomial")
    gap = truth.agq_loglik(_params(agq), td, 60) - truth.agq_loglik(_params(m), td, 60)
    assert gap > 1.0
    assert agq.fit_record_.quadrature_shift is None  # a quadrature fit is not checked


def test_a_good_laplace_fit_is_not_warned_of():
    # the same design with an SD of 0.5 and common events: the two agree to a third of
    # a standard error
    X, y, g = _binary(2, b0=0.0, sd=0.5)
    m, warned = _fit(BinomialGLMM(), X, y, g)
    assert not warned
    assert 0.0 <= m.fit_record_.quadrature_shift < 0.5


@pytest.mark.parametrize("seed", [0, 3])
def test_the_check_measures_the_distance_to_the_quadrature_fit(seed):
    # below the threshold the step is a close measure of the distance (in standard
    # errors) between the Laplace fit and the quadrature fit
    X, y, g = _binary(seed)
    m, warned = _fit(BinomialGLMM(), X, y, g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agq = BinomialGLMM(n_agq=25).fit(X, y, groups=g)
    true = _distance(m, agq)
    assert not warned
    assert m.fit_record_.quadrature_shift == pytest.approx(true, abs=0.1)


def _nb_counts(seed, G=60, n=6, b0=-3.5, sd=3.0, theta=0.3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    y = rng.negative_binomial(theta, theta / (theta + np.exp(eta)))
    return pd.DataFrame({"x": x}), y, g


@pytest.mark.parametrize("seed, warned_of", [(0, True), (4, False), (5, False)])
def test_a_negative_binomial_laplace_fit_is_checked_too(seed, warned_of):
    # sparse overdispersed counts (mean e^-3.5, theta 0.3, SD 3) in groups of six: the
    # Laplace fit of seed 0 lies 2.0 standard errors from quadrature's (15 nodes), in
    # theta too; seeds 4 and 5 lie 0.96 and 0.19 from it. The measure is that distance
    X, y, g = _nb_counts(seed)
    m, warned = _fit(NegBinGLMM(), X, y, g)
    assert m.converged_ and len(warned) == int(warned_of)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agq = NegBinGLMM(n_agq=15).fit(X, y, groups=g)
    true = _distance(m, agq)
    assert (true > 1.0) == warned_of
    assert m.fit_record_.quadrature_shift == pytest.approx(true, abs=0.1)


def _zip_counts(seed, G=150, n=6, b0=-3.0, sd=3.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    y = rng.poisson(np.exp(eta)) * (rng.random(len(g)) > 0.3)
    return pd.DataFrame({"x": x}), y, g


@pytest.mark.parametrize("seed, warned_of", [(0, True), (5, False), (7, False)])
def test_a_zero_inflated_laplace_fit_is_checked_too(seed, warned_of):
    # a family that is not log-concave: sparse counts with 30 % extra zeros and an SD of
    # 3; the Laplace fit of seed 0 lies 1.62 standard errors from quadrature's (15
    # nodes), seeds 5 and 7 0.39 and 0.73
    X, y, g = _zip_counts(seed)
    m, warned = _fit(PoissonGLMM(zero_inflation=True), X, y, g)
    assert m.converged_ and len(warned) == int(warned_of)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agq = PoissonGLMM(zero_inflation=True, n_agq=15).fit(X, y, groups=g)
    true = _distance(m, agq)
    assert (true > 1.0) == warned_of
    assert m.fit_record_.quadrature_shift == pytest.approx(true, abs=0.1)


def test_models_quadrature_cannot_fit_are_not_checked():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(40), 6)
    h = np.tile(np.arange(6), 40)
    x = rng.normal(size=len(g))
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.5, 40)[g]))
    X = pd.DataFrame({"x": x, "day": h})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crossed = PoissonGLMM().fit(X[["x"]], y, groups=pd.DataFrame({"g": g, "h": h}))
        structured = PoissonGLMM(random_effects="ar1(day)", random_only_columns="day").fit(
            X, y, groups=g
        )
        one = PoissonGLMM().fit(X[["x"]], y, groups=g)
    assert crossed.fit_record_.quadrature_shift is None
    assert structured.fit_record_.quadrature_shift is None
    assert one.fit_record_.quadrature_shift is not None


def test_random_slopes_are_checked_within_the_budget_of_rows_times_nodes():
    # a factor of q random effects has CHECK_NODES**q nodes per row: checked up to
    # CHECK_MAX_ROWS rows (one or two effects: 20,000), with three up to CHECK_ROW_NODES
    # rows times nodes (246 rows)
    from sklearn_glmm._engine.quadrature_check import CHECK_MAX_ROWS, CHECK_NODES, CHECK_ROW_NODES

    def fit(G, n, terms):
        rng = np.random.default_rng(5)
        g = np.repeat(np.arange(G), n)
        X = pd.DataFrame({"x": rng.normal(size=G * n), "z": rng.normal(size=G * n)})
        y = rng.poisson(np.exp(0.3 + 0.3 * X["x"] + rng.normal(0, 0.5, G)[g]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return PoissonGLMM(random_effects=terms).fit(X, y, groups=g)

    assert CHECK_MAX_ROWS == 20_000 and CHECK_ROW_NODES // CHECK_NODES**3 == 246
    for G, n, terms, checked in [
        (40, 6, "1 + x", True),
        (40, 6, "diag(1 + x)", True),
        (10_000, 2, "1 + x", True),
        (6_667, 3, "1 + x", False),
        (41, 6, "1 + x + z", True),
        (42, 6, "1 + x + z", False),
    ]:
        assert (fit(G, n, terms).fit_record_.quadrature_shift is not None) == checked, (G, n, terms)


def _binary_slopes(seed, G, n, b0, sd0, sd1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd0, G)[g] + rng.normal(0, sd1, G)[g] * x
    return pd.DataFrame({"x": x}), rng.binomial(1, 1 / (1 + np.exp(-eta))), g


@pytest.mark.parametrize(
    "args, warned_of",
    [((0, 200, 5, 0.0, 3.0, 2.0), True), ((0, 100, 8, -2.0, 2.0, 1.0), False)],
)
def test_a_random_slope_laplace_fit_is_checked_too(args, warned_of):
    # binary outcomes, a correlated random intercept and slope: with five rows per level
    # and SDs of 3 and 2 the Laplace fit underestimates both SDs (3.24 and 2.39 against
    # quadrature's 3.70 and 2.85), 1.3 standard errors away, and the marginal likelihood
    # by a 40-node product rule (tests/truth_dense.py) is 0.93 higher at quadrature's
    # optimum; with eight rows and SDs of 2 and 1 the two lie 0.33 apart
    X, y, g = _binary_slopes(*args)
    m, warned = _fit(BinomialGLMM(random_effects="1 + x"), X, y, g)
    assert m.converged_ and len(warned) == int(warned_of)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agq = BinomialGLMM(random_effects="1 + x", n_agq=25).fit(X, y, groups=g)
    true = _distance(m, agq)
    assert (true > 1.0) == warned_of
    assert m.fit_record_.quadrature_shift == pytest.approx(true, abs=0.1)
    if warned_of:
        import truth_dense

        design = np.c_[np.ones(len(y)), X["x"]]
        td = truth.GLMMData(design, y, g, "binomial")
        term = truth_dense.Term(g, design)

        def integral(fit):
            (S,) = fit.random_effects_cov_.values()
            params = dict(beta=np.r_[fit.intercept_, fit.coef_], cov=[np.asarray(S, float)])
            return truth_dense.integral_loglik(params, td, term)

        assert integral(agq) - integral(m) > 0.5


def test_a_long_step_is_confirmed_by_the_quadrature_fit():
    # rare events with a large SD: the Newton step of the quadrature objective measured
    # 6.2 standard errors and was warned of, while the quadrature fit (9, 15 and 25
    # nodes alike) lies 0.58 standard errors away; the step is now confirmed by that fit
    rng = np.random.default_rng(30)
    G, n = int(rng.integers(50, 400)), int(rng.integers(2, 8))
    sd, b0 = float(rng.uniform(1.5, 3.5)), float(rng.uniform(-5, -1.5))
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    X = pd.DataFrame({"x": x})
    m, warned = _fit(BinomialGLMM(), X, y, g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agq = BinomialGLMM(n_agq=15).fit(X, y, groups=g)
    true = _distance(m, agq)
    assert not warned and true < 1.0
    assert m.fit_record_.quadrature_shift == pytest.approx(true, abs=0.05)


@pytest.mark.parametrize("family", ["binary", "poisson", "trials", "negbin", "zip"])
def test_the_check_reads_the_laplace_state_as_a_quadrature_objective_would(family):
    # the check's quadrature value and gradient come from the Laplace fit's own state
    # (its modes and curvatures): the same numbers as a quadrature objective of its own
    # that searches the modes again from the fit's, and the Laplace objective's state,
    # memo and modes' derivatives are left as they were
    from sklearn_glmm._engine.objective import Objective
    from sklearn_glmm._engine.quadrature_check import CHECK_NODES, _quadrature_objective

    rng = np.random.default_rng(7)
    G, n = 40, 6
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    eta = -0.3 + 0.4 * x + rng.normal(0, 0.8, G)[g]
    kw = {}
    if family == "poisson":
        est, y = PoissonGLMM(), rng.poisson(np.exp(eta))
    elif family == "negbin":
        est, y = NegBinGLMM(), rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(eta)))
    elif family == "zip":
        y = rng.poisson(np.exp(eta)) * (rng.random(G * n) > 0.3)
        est = PoissonGLMM(zero_inflation=True)
    elif family == "binary":
        est, y = BinomialGLMM(), rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        trials = rng.integers(1, 8, G * n)
        est, y = BinomialGLMM(), rng.binomial(trials, 1 / (1 + np.exp(-eta)))
        kw = {"trials": trials}
    m = est.fit(pd.DataFrame({"x": x}), y, groups=g, **kw)
    obj, x_hat = m.fit_result_.objective, m.fit_result_.params
    assert isinstance(obj, Objective)  # (under set_config(compiled=True) its subclass)
    obj.value_and_grad(x_hat)
    state, grad = obj.state, obj.value_and_grad(x_hat)[1]
    obj.keep_mode_derivatives(np.ones((len(obj.u), len(x_hat) - 1)))
    predictor = obj._predictor
    val, g_q = obj.quadrature_at_modes(x_hat, CHECK_NODES)
    quad = _quadrature_objective(obj)
    ref_val, ref_g = quad.value_and_grad(x_hat)
    np.testing.assert_allclose(val, ref_val, rtol=1e-14)
    np.testing.assert_allclose(g_q, ref_g, rtol=1e-10, atol=1e-10 * np.max(np.abs(ref_g)))
    assert not np.allclose(g_q, grad)  # (a quadrature gradient, not the Laplace one)
    assert obj.n_agq == 1 and obj.state is state and obj._predictor is predictor
    assert obj.remembered(x_hat) is not None
    np.testing.assert_array_equal(obj.value_and_grad(x_hat)[1], grad)
    # a point other than the last evaluated: not from the state
    assert obj.quadrature_at_modes(x_hat + 0.01, CHECK_NODES) is None


def test_the_newton_steps_of_a_random_slope_check_end_where_lbfgsb_does(monkeypatch):
    # the confirming fit of a check with two random effects per level is made of Newton
    # steps with the Laplace Hessian: the same distance as L-BFGS-B's fit (to which it
    # falls back where they do not settle within NEWTON_STEPS; here forced by 0 steps)
    from sklearn_glmm._engine import quadrature_check as qc

    X, y, g = _binary_slopes(0, 200, 5, 0.0, 3.0, 2.0)
    calls = []
    real = qc._newton_steps
    monkeypatch.setattr(qc, "_newton_steps", lambda *a: calls.append(1) or real(*a))
    newton, _ = _fit(BinomialGLMM(random_effects="1 + x"), X, y, g)
    assert calls
    monkeypatch.setattr(qc, "NEWTON_STEPS", 0)
    lbfgsb, _ = _fit(BinomialGLMM(random_effects="1 + x"), X, y, g)
    a, b = newton.fit_record_.quadrature_shift, lbfgsb.fit_record_.quadrature_shift
    assert a > 1.0 and a == pytest.approx(b, abs=0.01)


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.6, 0.75])
def test_the_newton_steps_stop_once_the_steps_to_come_are_short(rate):
    # with a fixed Hessian the steps shrink by a constant ratio; a stop at the first step
    # below NEWTON_TOL left up to step * rate / (1 - rate) of the way (0.014 standard
    # errors at a ratio of 0.6, a binary cloglog fit's measure 0.015 short of its
    # quadrature optimum): the point returned is within NEWTON_TOL of the optimum, or,
    # where the steps do not settle within NEWTON_STEPS evaluations, the last point
    # reached (L-BFGS-B goes on from there)
    from sklearn_glmm._engine import quadrature_check as qc

    c = np.array([0.3, -0.2])  # the optimum of a quadratic whose curvature is the
    A = np.diag([(1.0 - rate) * 2.0, 2.0 - rate])  # Hessian's times (1 - rate), (1 - rate/2)
    Hf = np.diag([2.0, 2.0])
    evaluated = []

    def fun(z):
        v = 0.5 * (z - c) @ A @ (z - c)
        evaluated.append((z, v))
        return v, A @ (z - c)

    x0, se = np.zeros(2), np.ones(2)
    val, g = fun(x0)
    end, value, settled = qc._newton_steps(
        fun, x0, val, g, Hf, np.ones(2, bool), [(None, None)] * 2, se
    )
    steps = len(evaluated) - 1
    assert value == evaluated[-1][1] and steps <= qc.NEWTON_STEPS
    if settled:
        assert np.max(np.abs(end - c) / se) < qc.NEWTON_TOL
    else:
        assert rate == 0.75 and steps == qc.NEWTON_STEPS and np.all(end == evaluated[-1][0])


def test_binary_random_slopes_on_many_people_are_checked():
    # ten binary rows per person, SDs of 1 and 0.5: the Laplace bias of the SDs does not
    # shrink with more people while their standard errors do; on 1,000 people (10,000
    # rows, beyond the former budget of 2,222 rows with two random effects) the Laplace
    # fit lies more than one standard error from quadrature's (15 nodes: 1.65), and the
    # check measures that distance
    X, y, g = _binary_slopes(1, 1000, 10, 0.0, 1.0, 0.5)
    m, warned = _fit(BinomialGLMM(random_effects="1 + x"), X, y, g)
    assert m.converged_ and len(warned) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agq = BinomialGLMM(random_effects="1 + x", n_agq=15).fit(X, y, groups=g)
    true = _distance(m, agq)
    assert true > 1.0
    assert m.fit_record_.quadrature_shift == pytest.approx(true, abs=0.1)
