"""The closed-form Hessian of the Laplace objective (one grouping factor)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, NegBinGLMM, OrdinalGLMM, PoissonGLMM
from sklearn_glmm._design import theta_layout
from sklearn_glmm._engine import laplace_hessian as lh
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.hessian import hessian
from sklearn_glmm._engine.objective import ModelData, Objective, make_factor_data


def _objective(
    family,
    rng,
    *,
    n_levels=25,
    per=6,
    slope=False,
    trials=False,
    weights=False,
    offset=False,
    shuffle=False,
    link="logit",
    sd=0.8,
    n_agq=1,
    zero_inflated=False,
):
    n = n_levels * per
    codes = np.repeat(np.arange(n_levels), per)
    if shuffle:  # levels' rows not contiguous: the sums go through bincount
        codes = rng.permutation(codes)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    z = X[:, [1]] if slope else np.ones((n, 1))
    eta = X @ [0.2, 0.5, -0.3] + sd * rng.normal(size=n_levels)[codes] * z[:, 0]
    t = rng.integers(1, 8, size=n).astype(float) if trials else np.ones(n)
    if family == "binomial":
        y = rng.binomial(t.astype(int), 1.0 / (1.0 + np.exp(-eta))).astype(float)
        fam = make_family("binomial", False, link=None if link == "logit" else link)
    elif family == "betabinomial":  # (its trials whatever ``trials`` says)
        t = rng.integers(2, 12, size=n).astype(float)
        p = rng.beta(4.0, 4.0, size=n) * 0.4 + 0.6 / (1.0 + np.exp(-eta))
        y = rng.binomial(t.astype(int), p).astype(float)
        fam = make_family("betabinomial", False)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
        fam = make_family(family, zero_inflated)
        if zero_inflated:  # structural zeros in about a third of the rows
            y[rng.random(n) < 0.3] = 0.0
    w = rng.uniform(0.5, 2.0, size=n) if weights else np.ones(n)
    o = rng.normal(scale=0.5, size=n) if offset else np.zeros(n)
    factors = make_factor_data([codes], [z], [n_levels], [theta_layout(1, False)])
    has_trials = family in ("binomial", "betabinomial")
    data = ModelData(X, y, t if has_trials else np.ones(n), w, o, fam, factors)
    return Objective(data, n_agq)


def _central_hessian(obj, x, h=1e-3):
    """Central differences of the analytic gradient, Richardson-extrapolated from steps
    h and h/2: error O(h^4), at most 3e-7 of the largest entry on these data (large
    counts); a smaller step lets the mode search's rounding (about 1e-9 in the gradient)
    in. Forward differences, which the fits took before, are off by about 1e-4."""

    def central(step):
        k = len(x)
        H = np.zeros((k, k))
        for j in range(k):
            e = np.zeros(k)
            e[j] = step * max(1.0, abs(x[j]))
            gp, gm = obj.value_and_grad(x + e)[1], obj.value_and_grad(x - e)[1]
            H[:, j] = (gp - gm) / (2 * e[j])
        return 0.5 * (H + H.T)

    return (4.0 * central(h / 2) - central(h)) / 3.0


CASES = [
    dict(family="poisson"),
    dict(family="poisson", offset=True, weights=True),
    dict(family="poisson", slope=True, shuffle=True),
    dict(family="binomial"),
    dict(family="binomial", trials=True, weights=True, offset=True),
    dict(family="binomial", slope=True, trials=True, shuffle=True),
    dict(family="binomial", per=2, sd=2.0),  # few binary rows per level, a large SD
    dict(family="binomial", link="probit", trials=True, weights=True),
    dict(family="binomial", link="cloglog", slope=True, offset=True),
    dict(family="binomial", link="probit", per=3, sd=2.0),
]


@pytest.mark.parametrize("k", range(len(CASES)))
@pytest.mark.parametrize("theta", [0.0, 0.05, 0.7, 1.6])
def test_matches_differences_of_the_gradient(k, theta):
    case = CASES[k]
    rng = np.random.default_rng([k, int(theta * 100)])
    obj = _objective(rng=rng, **case)
    assert lh.applies(obj)
    x = np.array([0.1, 0.4, -0.2, theta])
    obj.value_and_grad(x)
    H = lh.laplace_hessian(obj)
    ref = _central_hessian(obj, x)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(H, ref, atol=1e-6 * scale, rtol=0)
    assert np.array_equal(H, H.T)


@pytest.mark.parametrize("log_theta", [-0.5, 1.0, 4.0])
@pytest.mark.parametrize("slope", [False, True])
def test_negative_binomial_block_and_theta_column(log_theta, slope):
    """NB2: the (beta, theta) block in closed form at the fixed ``log theta``; its row
    and column by forward differences (the Hessian the fit takes)."""
    rng = np.random.default_rng([int(10 * log_theta) + 100, slope])
    obj = _objective("negbin", rng, slope=slope, weights=True, offset=True)
    assert lh.applies(obj)
    x = np.array([0.1, 0.4, -0.2, 0.6, log_theta])
    check_block_and_theta_column(obj, x, lh.laplace_hessian)


def check_block_and_theta_column(obj, x, closed_form):
    """The (beta, theta) block of ``closed_form`` at ``x`` against extrapolated
    differences, and the fit's Hessian: that block, log theta's row and column in closed
    form (Laplace, one scalar random effect: :func:`test_negative_binomial_theta_column`)
    or by forward differences."""
    obj.value_and_grad(x)
    block = closed_form(obj)
    H = hessian(obj, x)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(block, ref[:4, :4], atol=1e-6 * np.abs(ref[:4, :4]).max(), rtol=0)
    np.testing.assert_array_equal(H[:4, :4], block)
    np.testing.assert_allclose(H, ref, atol=1e-3 * np.abs(ref).max(), rtol=0)
    assert np.array_equal(H, H.T)


def check_closed_block(obj, x, closed_form, evals=None, tol=1e-5):
    """``closed_form``'s block at ``x`` against extrapolated differences of the gradient
    (1e-6 of its largest entry), and the fit's Hessian: that block, the family's own
    parameters' rows and columns within ``tol`` of the differences (1e-6 where they are
    in closed form too); ``evals``, the evaluations the Hessian took (None: not
    checked). Returns the Hessian."""
    obj.value_and_grad(x)
    block = closed_form(obj)
    m = len(block)
    assert np.array_equal(block, block.T)
    n_evals = obj.n_evals
    H = hessian(obj, x)
    if evals is not None:
        assert obj.n_evals - n_evals == evals
    np.testing.assert_array_equal(H[:m, :m], block)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(block, ref[:m, :m], atol=1e-6 * np.abs(ref[:m, :m]).max(), rtol=0)
    np.testing.assert_allclose(H, ref, atol=tol * np.abs(ref).max(), rtol=0)
    return H


def count_model(kind, base, rng, n_agq=1, **opts):
    """A zero-truncated or hurdle model (``kind``) of the count family ``base`` on the
    data of :func:`_objective`'s Poisson case: counts of at least 1, a hurdle's zeros in
    about a third of the rows."""
    d = _objective("poisson", rng, **opts).data
    y = np.maximum(d.y, 1.0)
    if kind == "hurdle":
        y[rng.random(len(y)) < 0.3] = 0.0
    fam = make_family(base, False, **{kind: True})
    return Objective(ModelData(d.X, y, d.trials, d.weights, d.offset, fam, d.factors), n_agq)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_large_data_state(family, monkeypatch):
    """On large data the state keeps fewer per-row arrays (``w3`` made again, a random
    intercept's ``a`` one number): the same Hessian."""
    rng = np.random.default_rng(8)
    small = _objective(family, rng, trials=family == "binomial")
    monkeypatch.setattr(Objective, "lazy_state_rows", 10)
    lean = Objective(small.data, 1)
    assert lean._lean and not small._lean
    x = np.array([0.1, 0.4, -0.2, 0.6])
    small.value_and_grad(x)
    lean.value_and_grad(x)
    np.testing.assert_allclose(
        lh.laplace_hessian(lean), lh.laplace_hessian(small), rtol=1e-12, atol=1e-12
    )


def _vector_objective(family, rng, diagonal=False, n_levels=30, per=7, shuffle=False):
    """Intercept and slope per level (correlated, or ``diagonal``)."""
    n = n_levels * per
    codes = np.repeat(np.arange(n_levels), per)
    if shuffle:
        codes = rng.permutation(codes)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    b = rng.normal(size=(n_levels, 2)) * [0.7, 0.4]
    eta = X @ [0.2, 0.5, -0.3] + b[codes, 0] + b[codes, 1] * X[:, 1]
    t = np.ones(n)
    if family == "binomial":
        t = rng.integers(1, 5, size=n).astype(float)
        y = rng.binomial(t.astype(int), 1.0 / (1.0 + np.exp(-eta))).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
    fam = make_family(family, False)
    factors = make_factor_data([codes], [X[:, :2]], [n_levels], [theta_layout(2, diagonal)])
    w = rng.uniform(0.5, 2.0, size=n)
    data = ModelData(X, y, t, w, rng.normal(scale=0.3, size=n), fam, factors)
    return Objective(data, 1)


@pytest.mark.parametrize("family", ["poisson", "binomial", "negbin"])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("cov", ["typical", "one zero", "strong correlation"])
def test_two_random_effects_per_level(family, diagonal, cov):
    """Intercept and slope: the modes' and ``H_j``'s vector and matrix forms."""
    rng = np.random.default_rng([len(family), diagonal, len(cov)])
    obj = _vector_objective(family, rng, diagonal=diagonal, shuffle=cov == "one zero")
    assert lh.applies(obj) and not obj._scalar
    theta = {
        "typical": [0.7, 0.2, 0.4],
        "one zero": [0.6, 0.3, 0.0],
        "strong correlation": [0.8, 0.75, 0.05],
    }[cov]
    if diagonal:
        theta = [theta[0], theta[2]]
    extra = [1.2] if family == "negbin" else []
    x = np.array([0.1, 0.4, -0.2, *theta, *extra])
    obj.value_and_grad(x)
    block = lh.laplace_hessian(obj)
    m = len(block)
    ref = _central_hessian(obj, x)[:m, :m]
    np.testing.assert_allclose(block, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
    assert np.array_equal(block, block.T)


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_scalar_form_is_the_vector_form_at_one_effect(family):
    """The scalar code is a specialisation (fewer arrays) of the vector one."""
    rng = np.random.default_rng(12)
    obj = _objective(family, rng, slope=True, weights=True, trials=family == "binomial")
    x = np.array([0.1, 0.4, -0.2, 0.6])
    obj.value_and_grad(x)
    H = lh._scalar_hessian(obj)
    np.testing.assert_allclose(lh._vector_hessian(obj), H, rtol=0, atol=1e-12 * np.abs(H).max())


def test_matches_second_differences_of_the_value():
    """Independent of the analytic gradient: second differences of -2 log L itself."""
    rng = np.random.default_rng(5)
    obj = _objective("binomial", rng, trials=True, slope=True)
    x = np.array([0.1, 0.4, -0.2, 0.6])
    obj.value_and_grad(x)
    H = lh.laplace_hessian(obj)
    k, h = len(x), 1e-4
    ref = np.zeros((k, k))
    f = obj.evaluate
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            ref[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4 * h * h
            )
    np.testing.assert_allclose(H, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)


@pytest.mark.parametrize("k", range(len(CASES)))
@pytest.mark.parametrize("theta", [0.05, 0.7, 1.6])
def test_differences_where_no_closed_form_agree_with_it(k, theta, monkeypatch):
    """The Hessian by differences of the gradient, which fits without a closed form
    (crossed or nested factors, structures, zero inflation, quadrature with slopes)
    use, is within 2e-6 of the largest entry of the closed form on these data: central
    differences, at most 4e-7 here; forward differences were up to 6e-4 off."""
    rng = np.random.default_rng([k, int(theta * 100)])
    obj = _objective(rng=rng, **CASES[k])
    x = np.array([0.1, 0.4, -0.2, theta])
    obj.value_and_grad(x)
    exact = lh.laplace_hessian(obj)
    monkeypatch.setattr(obj, "exact_hessian_block", lambda: None)
    obj.value_and_grad(x)
    n_evals = obj.n_evals
    H = hessian(obj, x)
    assert obj.n_evals - n_evals == 2 * len(x)  # two gradients per parameter
    np.testing.assert_allclose(H, exact, atol=2e-6 * np.abs(exact).max(), rtol=0)


def test_differences_stay_inside_the_bounds():
    """A parameter within a step of its bound gets the one-sided difference inside: an
    SD at zero, the boundary of a singular fit, is stepped up only."""
    rng = np.random.default_rng(3)
    obj = _objective("poisson", rng)
    obj.exact_hessian_block = lambda: None
    x = np.array([0.1, 0.4, -0.2, 0.0])
    obj.value_and_grad(x)
    seen = []
    evaluate = obj.value_and_grad

    def recording(point):
        seen.append(np.array(point))
        return evaluate(point)

    obj.value_and_grad = recording
    H = hessian(obj, x)
    assert min(p[3] for p in seen) == 0.0  # never below the bound
    assert sum(p[3] > 0.0 for p in seen) == 1  # its column: one step up
    assert sum(p[1] != x[1] for p in seen) == 2  # an interior one: central
    assert np.all(np.isfinite(H))


def test_applies_only_where_exact():
    rng = np.random.default_rng(1)
    assert lh.applies(_objective("poisson", rng))
    assert lh.applies(_objective("binomial", rng, link="probit"))
    assert lh.applies(_objective("negbin1", rng))  # not log-concave, its fourth derivative
    assert lh.applies(_objective("betabinomial", rng))
    assert lh.applies(_objective("negbin", rng))  # its (beta, theta) block
    assert not lh.applies(_objective("poisson", rng, n_agq=5))  # quadrature


def test_state_left_at_the_point():
    """The closed form reads the state and evaluates nowhere else."""
    rng = np.random.default_rng(2)
    obj = _objective("poisson", rng)
    x = np.array([0.1, 0.4, -0.2, 0.5])
    val, g = obj.value_and_grad(x)
    n_evals, u = obj.n_evals, obj.u.copy()
    H = hessian(obj, x)
    assert obj.n_evals == n_evals
    assert np.array_equal(obj.u, u)
    assert obj.value_and_grad(x)[0] == val
    np.testing.assert_array_equal(H, lh.laplace_hessian(obj))


@pytest.mark.parametrize(
    "make",
    [
        lambda: (PoissonGLMM(random_effects="1"), "poisson", False),
        lambda: (BinomialGLMM(random_effects="1"), "binomial", False),
        lambda: (BinomialGLMM(random_effects="0 + x1"), "binomial", True),
        lambda: (PoissonGLMM(random_effects="1 + x1"), "poisson", True),
        lambda: (NegBinGLMM(random_effects="1 + x1"), "negbin", True),
    ],
)
def test_fit_hessian_is_exact(make):
    """A fit's Hessian (standard errors, checks at the optimum) is the closed form: it
    agrees with extrapolated central differences to 1e-6, where forward differences
    were off by about 1e-4."""
    est, fam, slope = make()
    rng = np.random.default_rng(11)
    n_levels, per = 40, 8 if fam != "negbin" else 25
    g = np.repeat(np.arange(n_levels), per)
    X = rng.normal(size=(n_levels * per, 2))
    b = rng.normal(size=(n_levels, 2)) * [0.8, 0.5]
    eta = 0.3 + X @ [0.5, -0.4]
    if "0 +" in est.random_effects:
        eta += b[g, 1] * X[:, 0]
    else:
        eta += b[g, 0] + (b[g, 1] * X[:, 0] if slope else 0.0)
    if fam == "poisson":
        y = rng.poisson(np.exp(eta))
    elif fam == "negbin":  # theta = 2
        y = rng.negative_binomial(2, 2 / (2 + np.exp(eta)))
    else:
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    est.fit(pd.DataFrame(X, columns=["x1", "x2"]), y, groups=g)
    assert est.converged_
    obj = Objective(est.fit_result_.objective.data, 1)
    x = np.asarray(est.fit_record_.final, dtype=float)
    ref = _central_hessian(obj, x)
    if isinstance(est, NegBinGLMM):  # log theta's row and column: forward differences
        m = len(x) - 1
        ref, H = ref[:m, :m], est.fit_record_.hessian[:m, :m]
        np.testing.assert_allclose(H, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
        return
    np.testing.assert_allclose(est.fit_record_.hessian, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)


def check_fourth_derivative(fam, y, eta, trials, w, extra, rtol=1e-6):
    """``fam.fourth_derivative`` against Richardson-extrapolated central differences of
    its ``w3`` (steps 1e-3 and 5e-4 in ``eta``)."""

    def central(h):
        up = fam.derivs(y, eta + h, trials, w, extra)
        down = fam.derivs(y, eta - h, trials, w, extra)
        return (up.w3 - down.w3) / (2.0 * h)

    ref = (4.0 * central(5e-4) - central(1e-3)) / 3.0
    got = fam.fourth_derivative(y, eta, trials, w, extra)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize(
    "name, link, extra",
    [
        ("poisson", None, ()),
        ("binomial", None, ()),
        ("binomial", "probit", ()),
        ("binomial", "cloglog", ()),
        ("negbin", None, (0.7,)),
        ("negbin", None, (30.0,)),  # log theta on its bound: the Poisson limit
    ],
)
def test_fourth_derivative_is_that_of_w3(name, link, extra):
    """Every family's ``fourth_derivative`` against extrapolated central differences of
    its ``w3``, weighted, with trials for the binomial, in both tails."""
    fam = make_family(name, False, link=link)
    assert fam.has_fourth_derivative
    rng = np.random.default_rng(4)
    n = 300
    eta = np.concatenate([np.linspace(-8.0, 4.0, n // 2), rng.normal(size=n // 2)])
    w = rng.uniform(0.5, 2.0, size=n)
    if name == "binomial":
        t = rng.integers(1, 6, size=n).astype(float)
        y = rng.binomial(t.astype(int), 0.4).astype(float)
    else:
        t, y = None, rng.poisson(3.0, size=n).astype(float)

    def w3(e):
        return fam.derivs(y, e, t, w, extra).w3

    def central(h):
        return (w3(eta + h) - w3(eta - h)) / (2.0 * h)

    ref = (4.0 * central(5e-4) - central(1e-3)) / 3.0
    got = fam.fourth_derivative(y, eta, t, w, extra)
    # the probit's w3 in its far tail (eta = -8) carries rounding of about 1e-7 relative
    # (its inverse Mills ratio terms cancel), which the differences amplify to 3e-6
    rtol = 2e-5 if link == "probit" else 1e-6
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("base, extra", [("poisson", ()), ("negbin", (0.7,)), ("negbin", (30.0,))])
@pytest.mark.parametrize("logit_pi", [-3.0, 0.0, 2.5])
def test_zero_inflated_fourth_derivative_is_that_of_w3(base, extra, logit_pi):
    """A zero-inflated family's ``fourth_derivative``: a zero's from the mixture's
    derivatives (log f(0)'s up to the fourth), a count's the count family's; against
    extrapolated central differences of its ``w3``, weighted, from far below to far
    above the mean (NB2's log theta 30: on its bound, the Poisson limit)."""
    fam = make_family(base, True)
    assert fam.has_fourth_derivative
    rng = np.random.default_rng(6)
    n = 400
    eta = np.concatenate([np.linspace(-8.0, 6.0, n // 2), rng.normal(size=n // 2)])
    w = rng.uniform(0.5, 2.0, size=n)
    y = rng.poisson(3.0, size=n).astype(float)
    y[::2] = 0.0
    ex = np.array([*extra, logit_pi])
    check_fourth_derivative(fam, y, eta, None, w, ex)
    # a huge mean: a zero's terms vanish with r (no inf * 0)
    big = fam.fourth_derivative(np.zeros(2), np.array([200.0, 600.0]), None, None, ex)
    assert np.all(np.isfinite(big))


@pytest.mark.parametrize("family", ["poisson", "negbin"])
@pytest.mark.parametrize("opts", [{}, dict(weights=True, offset=True, slope=True, shuffle=True)])
def test_zero_inflated_block_in_closed_form(family, opts):
    """Zero inflation (not log-concave; the modes' curvature ``h_j`` the signed one,
    positive at a mode): the (beta, theta) block in closed form against extrapolated
    differences; the fit's Hessian takes no evaluation: the zero-inflated Poisson's
    ``logit pi`` and the zero-inflated NB2's two own parameters are in closed form too
    (their tests below)."""
    rng = np.random.default_rng([len(family), len(opts)])
    obj = _objective(family, rng, zero_inflated=True, **opts)
    assert lh.applies(obj)
    own = [0.8, -0.7] if family == "negbin" else [-0.7]
    x = np.array([0.1, 0.4, -0.2, 0.6, *own])
    check_closed_block(obj, x, lh.laplace_hessian, 0)


def test_families_without_a_fourth_derivative_say_so():
    from sklearn_glmm._engine.families.base import Family

    fam = Family()  # (a family that does not give it: the Hessian by differences)
    assert not fam.has_fourth_derivative
    with pytest.raises(NotImplementedError):
        fam.fourth_derivative(np.ones(2), np.zeros(2), None, None, ())


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog", "loglog", "cauchit"])
@pytest.mark.parametrize("threshold", ["flexible", "equidistant"])
def test_ordinal_fourth_derivative_and_threshold_derivatives(link, threshold):
    """The cumulative link's ``w4`` against extrapolated differences of its ``w3``, and
    its derivatives in the thresholds (``extra_hessian_derivs``) against differences of
    ``derivs`` and ``extra_derivs``: every class, the middle and both tails, weights."""
    fam = make_family("ordinal", n_classes=5, link=link, threshold=threshold)
    rng = np.random.default_rng(2)
    n = 400
    y = np.tile(np.arange(5), n // 5).astype(float)
    eta = np.concatenate([rng.normal(scale=2.0, size=n // 2), rng.uniform(-6, 6, n // 2)])
    E = fam.J.shape[1]
    a = fam.default_extra()[:E] + rng.normal(scale=0.05, size=E)
    w = rng.uniform(0.5, 2.0, n)
    # (the probit's w3 rounds at about 1e-12 where both cut points lie in its lower tail:
    # its differences are off by up to 1.4e-4 relative there, where the closed form
    # agrees with 50-digit differentiation of log p to 1e-7)
    check_fourth_derivative(fam, y, eta, None, w, a, rtol=2e-4 if link == "probit" else 1e-5)
    (l_e, d_e, w_e), w3_e, second = fam.extra_hessian_derivs(y, eta, None, w, a)
    for got, ref in zip((l_e, d_e, w_e), fam.extra_derivs(y, eta, None, w, a)):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)

    def central(f, h):  # derivatives of derivs' w3 and of extra_derivs' rows in a_f
        up, down = a.copy(), a.copy()
        up[f], down[f] = a[f] + h, a[f] - h
        w3 = (fam.derivs(y, eta, None, w, up).w3 - fam.derivs(y, eta, None, w, down).w3) / (2 * h)
        hi, lo = fam.extra_derivs(y, eta, None, w, up), fam.extra_derivs(y, eta, None, w, down)
        return [w3] + [(p - m) / (2 * h) for p, m in zip(hi, lo)]

    for f in range(E):
        ref = [(4.0 * p - m) / 3.0 for p, m in zip(central(f, 5e-4), central(f, 1e-3))]
        got = [w3_e[f]] + [v[:, f] for v in second]
        for g, r in zip(got, ref):  # (the probit's w3 in its far tails rounds at 1e-14:
            # its differences there carry about 5e-10 of the largest entry)
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-7 * np.abs(r).max())


def _ordinal_fit(link, re, classes=5, scale=False):
    rng = np.random.default_rng(6)
    n_levels, per = 40, 8
    g = np.repeat(np.arange(n_levels), per)
    X = pd.DataFrame(
        {"x1": rng.normal(size=n_levels * per), "s": rng.integers(0, 2, n_levels * per)}
    )
    b = rng.normal(size=(n_levels, 2)) * [0.9, 0.6]
    lat = 0.6 * X["x1"] + b[g, 0] + (b[g, 1] * X["x1"] if re != "1" else 0.0)
    lat = lat + np.exp(0.3 * X["s"]) * rng.logistic(size=len(g))
    cuts = [-1.5, -0.3, 0.6, 1.8][: classes - 1] if classes > 2 else [0.2]
    y = np.digitize(lat, cuts)
    kw = {"scale": "s"} if scale else {}
    Xf = X if scale else X[["x1"]]
    return OrdinalGLMM(random_effects=re, link=link, **kw).fit(Xf, y, groups=g)


@pytest.mark.parametrize(
    "link, re, classes, scale",
    [
        ("logit", "1", 5, False),
        ("probit", "1", 5, False),
        ("cloglog", "1 + x1", 5, False),
        ("logit", "1 + x1", 4, False),
        ("logit", "1", 2, False),  # one threshold: its column by differences
        ("probit", "1", 4, True),  # scale effects: the family's rows by differences
    ],
)
def test_ordinal_fit_hessian_is_exact(link, re, classes, scale):
    """An ordinal fit's Hessian (standard errors, checks at the optimum): in closed form
    in (beta, theta) and, without scale effects and with two thresholds or more, in the
    thresholds too; against extrapolated central differences of the gradient."""
    est = _ordinal_fit(link, re, classes, scale)
    assert est.converged_
    obj = Objective(est.fit_result_.objective.data, 1)
    x = np.asarray(est.fit_record_.final, dtype=float)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(est.fit_record_.hessian, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
    # where the closed form applies, the same point's Hessian without any difference
    obj.value_and_grad(x)
    block = obj.exact_hessian_block()
    assert block is not None and len(block) == est.fit_result_.objective.data.n_beta + len(
        est.fit_result_.objective.data.factors[0].theta_rows
    )
    rows = obj.exact_extra_rows()
    assert (rows is None) == (scale or classes == 2)


@pytest.mark.parametrize("zero_inflated", [False, True])
@pytest.mark.parametrize("log_phi", [-6.0, -0.5, 1.0, 3.0, -15.0])
def test_nb1_fourth_derivative_is_that_of_w3(zero_inflated, log_phi):
    """NB1's ``fourth_derivative`` (``k = mu / phi``: ``w4 = k log(1 + phi) - s4``, the
    size sums to the fourth; zero-inflated, a zero's from log f(0)'s) against
    extrapolated central differences of its ``w3``: small and large counts (the sums and
    SciPy's differences), sizes from below 1e-6 to above 1e5, log phi on its bound (the
    Poisson limit)."""
    fam = make_family("negbin1", zero_inflated)
    assert fam.has_fourth_derivative
    rng = np.random.default_rng([int(10 * log_phi) + 200, zero_inflated])
    n = 400
    eta = np.concatenate([np.linspace(-9.0, 7.0, n // 2), rng.normal(size=n // 2)])
    y = rng.poisson(3.0, size=n).astype(float)
    y[:20] = rng.integers(70, 600, 20)
    y[::3] = 0.0
    w = rng.uniform(0.5, 2.0, size=n)
    ex = np.array([log_phi, -0.5]) if zero_inflated else np.array([log_phi])
    check_fourth_derivative(fam, y, eta, None, w, ex)


@pytest.mark.parametrize("log_phi", [-3.0, 0.0, 2.0, 8.0, 30.0])
def test_betabinomial_fourth_derivative_is_that_of_w3(log_phi):
    """The beta-binomial's ``fourth_derivative`` (the size sums of both shapes to the
    fourth, the logit's chain rule) against extrapolated central differences of its
    ``w3``: trials from 1 to hundreds, means near 0 and 1, log phi on its bound (the
    binomial limit)."""
    fam = make_family("betabinomial", False)
    assert fam.has_fourth_derivative
    rng = np.random.default_rng([int(10 * log_phi) + 100])
    n = 400
    t = rng.integers(1, 30, n).astype(float)
    t[:10] = rng.integers(100, 500, 10)
    eta = np.concatenate([np.linspace(-8.0, 8.0, n // 2), rng.normal(size=n // 2)])
    y = rng.binomial(t.astype(int), 0.4).astype(float)
    w = rng.uniform(0.5, 2.0, n)

    def central(h):
        up, down = (
            fam.derivs(y, eta + h, t, w, (log_phi,)),
            fam.derivs(y, eta - h, t, w, (log_phi,)),
        )
        return (up.w3 - down.w3) / (2.0 * h)

    ref = (4.0 * central(5e-4) - central(1e-3)) / 3.0
    got = fam.fourth_derivative(y, eta, t, w, (log_phi,))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("family", ["negbin1", "betabinomial"])
@pytest.mark.parametrize("opts", [{}, dict(weights=True, offset=True, slope=True, shuffle=True)])
@pytest.mark.parametrize("log_phi", [-2.0, 0.7])
def test_nb1_and_betabinomial_hessian_in_closed_form(family, opts, log_phi):
    """NB1 and the beta-binomial (not log-concave): the (beta, theta) block in closed
    form against extrapolated differences of the gradient, and ``log phi``'s row and
    column too (``extra_second_derivs``): the Hessian takes no evaluation."""
    rng = np.random.default_rng([len(opts), int(10 * log_phi) + 30, len(family)])
    obj = _objective(family, rng, **opts)
    assert lh.applies(obj)
    check_closed_block(obj, np.array([0.1, 0.4, -0.2, 0.6, log_phi]), lh.laplace_hessian, 0)


@pytest.mark.parametrize("log_theta", [-0.5, 1.0, 4.0, 8.0])
@pytest.mark.parametrize(
    "opts", [{}, dict(weights=True, offset=True), dict(shuffle=True, per=3, sd=1.5, slope=True)]
)
def test_negative_binomial_theta_column(log_theta, opts):
    """NB2's ``log theta`` row and column in closed form (one scalar random effect):
    within 1e-6 of the largest entry of extrapolated differences of the gradient, and
    the fit's Hessian is made of it and the block, no difference taken."""
    rng = np.random.default_rng([int(10 * log_theta) + 200, len(opts)])
    obj = _objective("negbin", rng, **opts)
    x = np.array([0.1, 0.4, -0.2, 0.6, log_theta])
    obj.value_and_grad(x)
    col = lh.extra_column(obj)
    block = lh.laplace_hessian(obj)
    H = hessian(obj, x)
    np.testing.assert_array_equal(H[4], col)
    np.testing.assert_array_equal(H[:, 4], col)
    np.testing.assert_array_equal(H[:4, :4], block)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(col, ref[4], atol=1e-6 * np.abs(ref).max(), rtol=0)


@pytest.mark.parametrize("log_theta", [-0.5, 1.2, 4.0, 8.0])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("cov", ["typical", "one zero", "strong correlation"])
def test_negative_binomial_theta_column_with_random_slopes(log_theta, diagonal, cov):
    """NB2's ``log theta`` row and column in closed form with an intercept and a slope
    per level (the vector sums): within 1e-6 of the largest entry of extrapolated
    differences of the gradient, and the fit's Hessian is made of it and the block."""
    rng = np.random.default_rng([int(10 * log_theta) + 300, diagonal, len(cov)])
    obj = _vector_objective("negbin", rng, diagonal=diagonal, shuffle=cov == "one zero")
    theta = {
        "typical": [0.7, 0.2, 0.4],
        "one zero": [0.6, 0.3, 0.0],
        "strong correlation": [0.8, 0.75, 0.05],
    }[cov]
    if diagonal:
        theta = [theta[0], theta[2]]
    x = np.array([0.1, 0.4, -0.2, *theta, log_theta])
    obj.value_and_grad(x)
    col = lh.extra_column(obj)
    block = lh.laplace_hessian(obj)
    m = len(block)
    H = hessian(obj, x)
    np.testing.assert_array_equal(H[m], col)
    np.testing.assert_array_equal(H[:, m], col)
    np.testing.assert_array_equal(H[:m, :m], block)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(col, ref[m], atol=1e-6 * np.abs(ref).max(), rtol=0)


def test_negative_binomial_theta_column_on_the_bound():
    """Theta on its bound (the Poisson limit): no closed form, the row and column by
    differences as before."""
    from sklearn_glmm._engine.blocks import NB_THETA

    rng = np.random.default_rng(3)
    obj = _objective("negbin", rng)
    x = np.array([0.1, 0.4, -0.2, 0.6, NB_THETA.bounds[1]])
    obj.value_and_grad(x)
    assert lh.laplace_hessian(obj) is not None and lh.extra_column(obj) is None


@pytest.mark.parametrize("log_theta", [-1.0, 1.5, 6.0])
@pytest.mark.parametrize("large_counts", [False, True])
def test_negative_binomial_second_derivatives_in_log_theta(log_theta, large_counts):
    """``NegativeBinomial2.extra_second_derivs`` against central differences in log theta
    of ``extra_derivs`` (loglik, d1, w) and of ``derivs``' w3, weighted."""
    fam = make_family("negbin", False)
    rng = np.random.default_rng([int(10 * log_theta) + 50, large_counts])
    n = 300
    y = rng.poisson(4.0, n).astype(float)
    if large_counts:  # the cancellation-free branch for counts above 1,000
        y[:20] = rng.integers(2_000, 50_000, 20)
    eta = np.log(np.maximum(y, 0.5)) + rng.normal(0, 0.5, n)
    w = rng.uniform(0.5, 2.0, n)
    const = fam.constant(y, None)
    got = fam.extra_second_derivs(y, eta, None, w, (log_theta,), const)
    h = 1e-4

    def first(lt):
        dl, dd1, dw = fam.extra_derivs(y, eta, None, w, (lt,), const)
        return dl[0], dd1[0], dw[0], fam.derivs(y, eta, None, w, (lt,), const).w3

    up, down = first(log_theta + h), first(log_theta - h)
    for value, a, b in zip(got, up, down):
        ref = (a - b) / (2 * h)
        np.testing.assert_allclose(value, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("logit_pi", [-3.0, 0.2, 2.5])
def test_zero_inflated_poisson_second_derivatives_in_logit_pi(logit_pi):
    """``ZeroInflated.extra_second_derivs`` (Poisson counts: ``logit pi`` the one own
    parameter) against extrapolated central differences in ``logit pi`` of
    ``extra_derivs`` (loglik, d1, w) and of ``derivs``' w3, weighted, from far below to
    far above the mean; its first derivatives are ``extra_derivs``' own numbers."""
    fam = make_family("poisson", True)
    rng = np.random.default_rng([int(10 * logit_pi) + 60])
    n = 300
    y = rng.poisson(2.0, n).astype(float)
    y[::2] = 0.0
    eta = np.concatenate([np.linspace(-6.0, 5.0, n // 2), rng.normal(size=n // 2)])
    w = rng.uniform(0.5, 2.0, n)
    first, got = fam.extra_second_derivs(y, eta, None, w, np.array([logit_pi]), with_first=True)
    for a, b in zip(first, fam.extra_derivs(y, eta, None, w, np.array([logit_pi]))):
        np.testing.assert_array_equal(a, b[0])

    def rows(lp):
        dl, dd1, dw = fam.extra_derivs(y, eta, None, w, np.array([lp]))
        return dl[0], dd1[0], dw[0], fam.derivs(y, eta, None, w, np.array([lp])).w3

    def central(h):
        up, down = rows(logit_pi + h), rows(logit_pi - h)
        return [(a - b) / (2.0 * h) for a, b in zip(up, down)]

    for value, coarse, fine in zip(got, central(1e-3), central(5e-4)):
        ref = (4.0 * fine - coarse) / 3.0
        np.testing.assert_allclose(value, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


def test_zero_inflated_second_derivatives_only_for_one_parameter():
    """With the count family's own parameter (NB2's theta) no single parameter's closed
    form: None (``extra_hessian_derivs`` gives both); a probability per row (a
    zero-inflation design) gives each row's, the scalar's at that row's value."""
    y, eta = np.array([0.0, 1.0, 3.0, 0.0]), np.array([0.0, 0.5, -1.0, 1.5])
    zinb = make_family("negbin", True)
    assert zinb.extra_second_derivs(y, eta, None, None, np.array([0.5, -1.0])) is None
    zip_ = make_family("poisson", True)
    per_row = np.array([-1.0, 0.0, 1.0, 2.0])
    first, second = zip_.extra_second_derivs(y, eta, None, None, (per_row,), with_first=True)
    for i, lp in enumerate(per_row):
        one_first, one = zip_.extra_second_derivs(
            y, eta, None, None, np.array([lp]), with_first=True
        )
        for a, b in zip(first + second, one_first + one):
            assert a[i] == pytest.approx(b[i], rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("opts", [{}, dict(weights=True, offset=True, shuffle=True, per=3, sd=1.5)])
@pytest.mark.parametrize("logit_pi", [-2.0, 0.5])
def test_zero_inflated_poisson_logit_pi_column(opts, logit_pi):
    """A zero-inflated Poisson fit's Hessian wholly in closed form (its block and ``logit
    pi``'s row and column, one scalar random effect or a slope): no evaluation, within
    1e-6 of the largest entry of extrapolated differences of the gradient."""
    rng = np.random.default_rng([len(opts), int(10 * logit_pi) + 40])
    obj = _objective("poisson", rng, zero_inflated=True, **opts)
    x = np.array([0.1, 0.4, -0.2, 0.6, logit_pi])
    obj.value_and_grad(x)
    col = lh.extra_column(obj)
    block = lh.laplace_hessian(obj)
    n_evals = obj.n_evals
    H = hessian(obj, x)
    assert obj.n_evals == n_evals
    np.testing.assert_array_equal(H[4], col)
    np.testing.assert_array_equal(H[:4, :4], block)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(H, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)


def test_zero_inflated_poisson_logit_pi_column_with_random_slopes():
    """The vector sums of the ``logit pi`` column (an intercept and a slope per level)."""
    rng = np.random.default_rng(77)
    obj = _vector_objective("poisson", rng, diagonal=False, shuffle=True)
    d = obj.data
    y = d.y.copy()
    y[rng.random(len(y)) < 0.3] = 0.0
    zi = make_family("poisson", True)
    obj = Objective(ModelData(d.X, y, d.trials, d.weights, d.offset, zi, d.factors), 1)
    x = np.array([0.1, 0.4, -0.2, 0.7, 0.2, 0.4, -0.8])
    obj.value_and_grad(x)
    col = lh.extra_column(obj)
    m = len(lh.laplace_hessian(obj))
    H = hessian(obj, x)
    np.testing.assert_array_equal(H[m], col)
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(H, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)


@pytest.mark.parametrize("kind", ["truncated", "hurdle"])
@pytest.mark.parametrize(
    "base, extra",
    [("poisson", ()), ("negbin", (0.7,)), ("negbin", (-2.0,)), ("negbin", (30.0,))]
    + [("negbin1", (-1.0,)), ("negbin1", (1.5,))],
)
def test_truncated_and_hurdle_fourth_derivative_is_that_of_w3(kind, base, extra):
    """Zero-truncated and hurdle counts: the count family's ``w4`` plus the fourth
    eta-derivative of ``log(1 - f(0))`` (the zero rate's scaled ``h4`` and ``log s``'s
    fourth derivative; a hurdle's zero none), against extrapolated central differences
    of ``w3`` from far below to far above the mean (NB2's log theta 30: the Poisson
    limit)."""
    fam = make_family(base, False, **{kind: True})
    assert fam.has_fourth_derivative
    rng = np.random.default_rng([len(kind), len(base), int(10 * sum(extra)) + 100])
    n = 400
    eta = np.concatenate([np.linspace(-9.0, 7.0, n // 2), rng.normal(size=n // 2)])
    y = np.maximum(1, rng.poisson(3.0, size=n)).astype(float)
    if kind == "hurdle":
        y[::3] = 0.0
    w = rng.uniform(0.5, 2.0, size=n)
    ex = np.array([*extra, -0.3]) if kind == "hurdle" else np.array(extra)
    check_fourth_derivative(fam, y, eta, None, w, ex)


def test_zero_rate_fourth_against_high_precision():
    """``h4 = s^4 R''''(s)`` of ``R(s) = -log((1 - e^-s) / s)``, from its series below 0.5
    and its closed form above, against 40-digit arithmetic (tiny to huge zero rates)."""
    from sklearn_glmm._engine.families.hurdle import zero_rate_fourth

    mpmath = pytest.importorskip("mpmath")
    s = np.array([1e-8, 1e-3, 0.1, 0.4999, 0.5, 0.5001, 1.0, 3.0, 20.0, 700.0, 1e5])
    got = zero_rate_fourth(s, np.log(s))
    with mpmath.workdps(40):
        for si, gi in zip(s, got):
            x = mpmath.mpf(float(si))
            ref = x**4 * mpmath.diff(lambda v: -mpmath.log(-mpmath.expm1(-v) / v), x, 4)
            assert abs(gi - float(ref)) <= 1e-12 * max(1.0, abs(float(ref))), (si, gi, ref)


@pytest.mark.parametrize("kind, base", [("truncated", "poisson"), ("hurdle", "negbin")])
def test_truncated_and_hurdle_block_in_closed_form(kind, base):
    """A zero-truncated Poisson and a hurdle NB2 model: the (beta, theta) block in closed
    form against extrapolated differences of the gradient; the hurdle NB2's own
    parameters' rows and columns in closed form too (no evaluation)."""
    rng = np.random.default_rng([len(kind), len(base), 3])
    obj = count_model(kind, base, rng, weights=True, offset=True, slope=True)
    assert lh.applies(obj)
    own = {"truncated": [], "hurdle": [1.2, -0.8]}[kind]
    check_closed_block(obj, np.array([0.1, 0.4, -0.2, 0.6, *own]), lh.laplace_hessian, 0)


def test_hurdle_poisson_hessian_wholly_in_closed_form():
    """A hurdle Poisson model: ``logit pi`` is its one own parameter, moving neither
    ``d1`` nor ``w`` (the zero part does not read ``eta``): its row and column in closed
    form too (``Hurdle.extra_second_derivs``), so the Hessian takes no evaluation; within
    1e-6 of the largest entry of extrapolated differences of the gradient. Its second
    derivatives against differences of ``extra_derivs``; none with a count family's own
    parameter."""
    rng = np.random.default_rng(13)
    obj = count_model("hurdle", "poisson", rng, weights=True, offset=True)
    fam, d, y = obj.data.family, obj.data, obj.data.y
    x = np.array([0.1, 0.4, -0.2, 0.6, -0.8])
    obj.value_and_grad(x)
    n_evals = obj.n_evals
    H = hessian(obj, x)
    assert obj.n_evals == n_evals
    ref = _central_hessian(obj, x)
    np.testing.assert_allclose(H, ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
    eta, w = rng.normal(size=len(y)), d.weights
    second = fam.extra_second_derivs(y, eta, None, w, np.array([-0.8]))
    h = 1e-5
    up = fam.extra_derivs(y, eta, None, w, np.array([-0.8 + h]))
    down = fam.extra_derivs(y, eta, None, w, np.array([-0.8 - h]))
    for got, a, b in zip(second[:3], up, down):
        np.testing.assert_allclose(got, (a[0] - b[0]) / (2 * h), atol=1e-9)
    hnb = make_family("negbin", False, hurdle=True)
    assert hnb.extra_second_derivs(y, eta, None, None, np.array([0.5, -0.8])) is None


@pytest.mark.parametrize("family", ["negbin1", "betabinomial"])
@pytest.mark.parametrize("log_phi", [-6.0, -1.0, 0.7, 3.0, 8.0])
def test_nb1_and_betabinomial_second_derivatives_in_log_phi(family, log_phi):
    """``extra_second_derivs`` of NB1 and the beta-binomial (the size sums one and two
    orders up) against extrapolated central differences in ``log phi`` of
    ``extra_derivs`` (loglik, d1, w) and of ``derivs``' w3, weighted: small and large
    counts, sizes from tiny to large; its first derivatives are ``extra_derivs``' own
    numbers; None on the bound (the Poisson or binomial limit) and per row."""
    fam = make_family(family, False)
    rng = np.random.default_rng([int(10 * log_phi) + 100, len(family)])
    n = 300
    eta = np.concatenate([np.linspace(-7.0, 6.0, n // 2), rng.normal(size=n // 2)])
    if family == "betabinomial":
        t = rng.integers(1, 30, n).astype(float)
        y = rng.binomial(t.astype(int), 0.4).astype(float)
    else:
        t, y = None, rng.poisson(3.0, n).astype(float)
        y[:10] = rng.integers(70, 500, 10)
    w = rng.uniform(0.5, 2.0, n)
    first, got = fam.extra_second_derivs(y, eta, t, w, (log_phi,), with_first=True)
    for a, b in zip(first, fam.extra_derivs(y, eta, t, w, (log_phi,))):
        np.testing.assert_array_equal(a, b[0])

    def rows(lp):
        dl, dd1, dw = fam.extra_derivs(y, eta, t, w, (lp,))
        return dl[0], dd1[0], dw[0], fam.derivs(y, eta, t, w, (lp,)).w3

    def central(h):
        up, down = rows(log_phi + h), rows(log_phi - h)
        return [(a - b) / (2.0 * h) for a, b in zip(up, down)]

    # (the differences' own error: 1.3e-9 of the largest entry with the beta-binomial's
    # shapes near 1e-3 at log phi = -6, below 5e-11 elsewhere)
    for value, coarse, fine in zip(got, central(1e-3), central(5e-4)):
        ref = (4.0 * fine - coarse) / 3.0
        np.testing.assert_allclose(value, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    bound = fam.blocks[0].bounds[0 if family == "negbin1" else 1]
    assert fam.extra_second_derivs(y, eta, t, w, (bound,)) is None
    per_row = fam.extra_second_derivs(y, eta, t, w, (np.full(n, log_phi),))
    if family == "negbin1":  # elementwise in a phi per row (a dispersion model)
        for got, ref in zip(per_row, fam.extra_second_derivs(y, eta, t, w, (log_phi,))):
            np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-300)
    else:
        assert per_row is None


@pytest.mark.parametrize(
    "base, own",
    [("negbin", -1.0), ("negbin", 0.7), ("negbin", 4.0), ("negbin", 12.0),
     ("negbin1", -12.0), ("negbin1", -6.0), ("negbin1", -0.5), ("negbin1", 3.0)],
)  # fmt: skip
@pytest.mark.parametrize("logit_pi", [-3.0, 0.5, 2.5])
def test_zero_inflated_second_derivatives_in_both_parameters(base, own, logit_pi):
    """``ZeroInflated.extra_hessian_derivs`` (the count family's parameter and ``logit
    pi``) against extrapolated central differences of ``extra_derivs`` in each parameter
    (second derivatives and cross derivatives) and in ``eta`` (``w3_e``), weighted, from
    far below to far above the mean, counts in the thousands among them; its first
    derivatives are ``extra_derivs``' numbers."""
    fam = make_family(base, True)
    rng = np.random.default_rng([int(10 * own) + 200, int(10 * logit_pi) + 50])
    n = 300
    y = rng.poisson(2.0, n).astype(float)
    y[::2] = 0.0
    y[1:40:2] = rng.integers(1_000, 20_000, 20)
    eta = np.concatenate([np.linspace(-6.0, 5.0, n // 2), rng.normal(size=n // 2)])
    w = rng.uniform(0.5, 2.0, n)
    const = fam.constant(y, None)
    extra = np.array([own, logit_pi])
    first, w3_e, second = fam.extra_hessian_derivs(y, eta, None, w, extra, const)
    for a, b in zip(first, fam.extra_derivs(y, eta, None, w, extra, const)):
        # (the same quantities, summed in another order: rounding apart)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14 * np.abs(b).max())

    def extrapolated(shift):
        def central(h):
            up, down = shift(h), shift(-h)
            return [(a - b) / (2.0 * h) for a, b in zip(up, down)]

        return [(4.0 * f - c) / 3.0 for f, c in zip(central(5e-4), central(1e-3))]

    def along(j):
        step = np.eye(2)[j]
        return lambda h: fam.extra_derivs(y, eta, None, w, extra + h * step, const)

    for j in range(2):
        ref = extrapolated(along(j))
        for value, r in zip(second, ref):
            np.testing.assert_allclose(value[:, j], r, rtol=1e-6, atol=1e-8 * np.abs(r).max())
        assert np.array_equal(second[0][0, 1], second[0][1, 0])
    ref_w3 = extrapolated(lambda h: fam.extra_derivs(y, eta + h, None, w, extra, const))[2]
    np.testing.assert_allclose(w3_e, ref_w3, rtol=1e-6, atol=1e-8 * np.abs(ref_w3).max())


def test_zero_inflated_both_parameters_only_where_given():
    """No closed form (None) with the count family on its bound (the Poisson limit) or a
    count family without parameters of its own (zero-inflated Poisson:
    ``extra_second_derivs`` gives its one parameter)."""
    y, eta = np.array([0.0, 1.0, 3.0]), np.zeros(3)
    zinb, zinb1 = make_family("negbin", True), make_family("negbin1", True)
    assert zinb.extra_hessian_derivs(y, eta, None, None, np.array([30.0, -1.0])) is None
    assert zinb1.extra_hessian_derivs(y, eta, None, None, np.array([-15.0, -1.0])) is None
    # (a probability or a theta per row gives each row's: the per-row test below)
    zip_ = make_family("poisson", True)
    assert zip_.extra_hessian_derivs(y, eta, None, None, np.array([-1.0])) is None


@pytest.mark.parametrize("base", ["negbin", "negbin1"])
@pytest.mark.parametrize("opts", [{}, dict(weights=True, offset=True, shuffle=True, per=3, sd=1.5)])
@pytest.mark.parametrize("own, logit_pi", [(1.0, -1.0), (4.0, 0.5), (-0.5, -2.5)])
def test_zero_inflated_negative_binomial_hessian_wholly_in_closed_form(base, opts, own, logit_pi):
    """A zero-inflated NB2 or NB1 fit's Hessian (one scalar random effect) wholly in
    closed form: the block and both own parameters' rows and columns
    (:func:`~sklearn_glmm._engine.laplace_hessian.extra_rows`), no evaluation, within
    1e-6 of the largest entry of extrapolated differences of the gradient."""
    rng = np.random.default_rng([len(opts), int(10 * own) + 30, int(10 * logit_pi) + 40])
    obj = _objective("poisson", rng, zero_inflated=True, **opts)
    d = obj.data
    fam = make_family(base, True)
    obj = Objective(ModelData(d.X, d.y, d.trials, d.weights, d.offset, fam, d.factors), 1)
    x = np.array([0.1, 0.4, -0.2, 0.6, own, logit_pi])
    obj.value_and_grad(x)
    rows = lh.extra_rows(obj)
    H = check_closed_block(obj, x, lh.laplace_hessian, evals=0, tol=1e-6)
    np.testing.assert_array_equal(H[4:], rows)


@pytest.mark.parametrize(
    "family, own",
    [(dict(family="negbin", zero_inflated=True), [1.0, -0.8]),
     (dict(family="negbin1", zero_inflated=True), [-0.5, -0.8]),
     (dict(family="negbin", hurdle=True), [1.0, -0.8]),
     (dict(family="negbin1", truncated=True), [-0.5])],
)  # fmt: skip
@pytest.mark.parametrize("diagonal", [False, True])
def test_two_own_parameters_with_random_slopes_in_closed_form(family, own, diagonal):
    """Two random effects per level (an intercept and a slope, unstructured or
    diagonal): the family's own parameters' rows in closed form too
    (:func:`~sklearn_glmm._engine.batched_hessian.extra_rows`), no evaluation, within
    1e-6 of the largest entry of extrapolated differences of the gradient."""
    rng = np.random.default_rng([78, diagonal, len(own)])
    obj = _vector_objective("poisson", rng, diagonal=diagonal, shuffle=True)
    d = obj.data
    y = d.y.copy()
    if family.get("truncated"):
        y = np.maximum(y, 1.0)
    else:
        y[rng.random(len(y)) < 0.3] = 0.0
    name = family["family"]
    fam = make_family(
        name,
        family.get("zero_inflated", False),
        **{k: True for k in ("hurdle", "truncated") if family.get(k)},
    )
    obj = Objective(ModelData(d.X, y, d.trials, d.weights, d.offset, fam, d.factors), 1)
    theta = [0.7, 0.4] if diagonal else [0.7, 0.2, 0.4]
    x = np.array([0.1, 0.4, -0.2, *theta, *own])
    check_closed_block(obj, x, lh.laplace_hessian, evals=0, tol=1e-6)


def _log_zero_rate_precise(base, eta, t):
    """``L = log(-log f(0))`` of NB2 (``t = log theta``) or NB1 (``t = log phi``), a
    function of ``(eta, t)`` in mpmath's arithmetic (its caller sets 40 digits)."""
    import mpmath

    mu, k = mpmath.exp(eta), mpmath.exp(t)
    if base == "negbin":
        return mpmath.log(k * mpmath.log1p(mu / k))
    return mpmath.log(mu * mpmath.log1p(k) / k)


@pytest.mark.parametrize(
    "base, t", [("negbin", -2.0), ("negbin", 1.0), ("negbin", 9.0), ("negbin", 22.0),
                ("negbin1", -12.0), ("negbin1", -3.0), ("negbin1", 0.5), ("negbin1", 5.0)]
)  # fmt: skip
def test_zero_rate_derivatives_in_the_count_parameter(base, t):
    """``log_zero_rate_extra`` (the derivatives in ``log theta`` or ``log phi`` of ``L =
    log s`` and its eta-derivatives, which the zero-truncated and hurdle models' gradient
    and Hessian read) against 40-digit arithmetic, from a mean far below the size
    (``mu / theta`` of 3e-14, where ``L_t`` is ``mu / (2 theta)``) to far above; its
    ``rate`` is ``log_zero_rate``'s."""
    import mpmath

    fam = make_family(base, False)
    eta = np.array([-9.0, -4.0, -1.0, 0.0, 0.7, 3.0, 6.0])
    rate, partials = fam.log_zero_rate_extra(eta, (t,), second=True)
    for a, b in zip(rate, fam.log_zero_rate(eta, (t,))):
        np.testing.assert_array_equal(a, b)
    orders = [(0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (1, 2), (2, 2)]
    with mpmath.workdps(40):
        refs = [
            [float(mpmath.diff(lambda e, s: _log_zero_rate_precise(base, e, s), (e, t), ij))
             for e in eta]
            for ij in orders
        ]  # fmt: skip
    for got, ref in zip(partials, refs):
        # (relative to each value: L_t is mu / (2 theta) where that is 1e-14; NB1's
        # mixed partials are 0, the reference's about 1e-62)
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-40)


@pytest.mark.parametrize("base", ["negbin", "negbin1"])
@pytest.mark.parametrize("own", [-1.0, 0.7, 4.0])
@pytest.mark.parametrize("kind", ["truncated", "hurdle"])
def test_truncated_derivatives_in_the_count_parameter(base, own, kind):
    """The zero-truncated and hurdle models' derivatives in the count family's parameter,
    in closed form: ``extra_derivs`` against extrapolated central differences of
    ``derivs`` (they were taken by differences of the truncation's terms), and the
    second derivatives (``extra_second_derivs``; a hurdle's ``extra_hessian_derivs``,
    ``logit pi`` beside it) against differences of ``extra_derivs``, ``w3``'s against
    differences in ``eta``; weighted, means from tiny to large."""
    fam = make_family(base, False, **{kind: True})
    rng = np.random.default_rng([int(10 * own) + 20, len(base), len(kind)])
    n = 300
    y = rng.poisson(3.0, n).astype(float) + 1.0
    y[:20] = rng.integers(500, 5_000, 20)
    if kind == "hurdle":
        y[rng.random(n) < 0.3] = 0.0
    eta = np.concatenate([np.linspace(-8.0, 6.0, n // 2), rng.normal(size=n // 2)])
    w = rng.uniform(0.5, 2.0, n)
    const = fam.constant(y, None)
    extra = np.array([own, -0.6]) if kind == "hurdle" else np.array([own])
    E = len(extra)

    def extrapolated(shift):
        def central(h):
            up, down = shift(h), shift(-h)
            return [(a - b) / (2.0 * h) for a, b in zip(up, down)]

        return [(4.0 * f - c) / 3.0 for f, c in zip(central(5e-4), central(1e-3))]

    def along(j, what):
        step = np.eye(E)[j]
        return lambda h: what(extra + h * step)

    def dens(e):
        d = fam.derivs(y, eta, None, w, e, const)
        return d.loglik, d.d1, d.w

    first = fam.extra_derivs(y, eta, None, w, extra, const)
    for got, ref in zip(first, extrapolated(along(0, dens))):
        np.testing.assert_allclose(got[0], ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())
    if kind == "hurdle":
        f1, w3_e, second = fam.extra_hessian_derivs(y, eta, None, w, extra, const)
    else:
        (f1, second) = fam.extra_second_derivs(y, eta, None, w, extra, const, with_first=True)
        *second, w3_t = second
        f1, w3_e = tuple(v[None] for v in f1), w3_t[None]
        second = tuple(v[None, None] for v in second)
    for a, b in zip(f1, first):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14 * np.abs(b).max())
    for j in range(E):
        ref = extrapolated(along(j, lambda e: fam.extra_derivs(y, eta, None, w, e, const)))
        for value, r in zip(second, ref):
            np.testing.assert_allclose(value[:, j], r, rtol=1e-6, atol=1e-8 * np.abs(r).max())
    w_rows = extrapolated(lambda h: fam.extra_derivs(y, eta + h, None, w, extra, const))[2]
    np.testing.assert_allclose(w3_e, w_rows, rtol=1e-6, atol=1e-8 * np.abs(w_rows).max())


@pytest.mark.parametrize("kind", ["truncated", "hurdle"])
@pytest.mark.parametrize("base", ["negbin", "negbin1"])
@pytest.mark.parametrize("opts", [{}, dict(weights=True, offset=True, shuffle=True, per=3, sd=1.5)])
def test_truncated_and_hurdle_negative_binomial_hessian_wholly_in_closed_form(kind, base, opts):
    """A zero-truncated or hurdle NB2 or NB1 model with one scalar random effect: the
    Hessian wholly in closed form (no evaluation), within 1e-6 of the largest entry of
    extrapolated differences of the gradient."""
    rng = np.random.default_rng([len(kind), len(base), len(opts)])
    obj = count_model(kind, base, rng, **opts)
    own = {"truncated": [0.9], "hurdle": [0.9, -0.8]}[kind]
    x = np.array([0.1, 0.4, -0.2, 0.6, *own])
    check_closed_block(obj, x, lh.laplace_hessian, evals=0, tol=1e-6)


def test_truncated_second_derivatives_only_where_given():
    """None on the count family's bound (the Poisson limit, any row's) and for a
    zero-truncated Poisson (no parameter of its own)."""
    y, eta = np.array([1.0, 2.0, 5.0]), np.zeros(3)
    tnb = make_family("negbin", False, truncated=True)
    assert tnb.extra_second_derivs(y, eta, None, None, np.array([30.0])) is None
    hnb = make_family("negbin", False, hurdle=True)
    assert hnb.extra_hessian_derivs(y, eta, None, None, np.array([30.0, -1.0])) is None
    on_bound_somewhere = (np.array([0.1, 30.0, 0.3]), -1.0)
    assert hnb.extra_hessian_derivs(y, eta, None, None, on_bound_somewhere) is None
    tp = make_family("poisson", False, truncated=True)
    assert tp.extra_second_derivs(y, eta, None, None, np.array([])) is None


def _zero_part_design_fit(est):
    """``est`` fitted to counts with zeros whose probability moves with ``z`` (30
    groups of 8 rows, a random intercept and slope in ``x``)."""
    import warnings

    rng = np.random.default_rng(3)
    n_groups, per = 30, 8
    g = np.repeat(np.arange(n_groups), per)
    x, z = rng.normal(size=n_groups * per), rng.normal(size=n_groups * per)
    b0, b1 = rng.normal(0, 0.7, n_groups)[g], rng.normal(0, 0.4, n_groups)[g]
    mu = np.exp(0.3 + 0.5 * x + b0 + b1 * x)
    zero = rng.random(len(g)) < 1.0 / (1.0 + np.exp(1.0 - 0.8 * z))
    y = np.where(zero, 0, rng.poisson(mu)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(pd.DataFrame({"x": x, "z": z}), y, groups=g)


@pytest.mark.parametrize(
    "make",
    [
        lambda re: PoissonGLMM(zero_inflation="~ z", random_effects=re),
        lambda re: NegBinGLMM(zero_inflation="~ z", random_effects=re),
        lambda re: PoissonGLMM(hurdle="~ z", random_effects=re),
        lambda re: NegBinGLMM(hurdle="~ z", random_effects=re),
    ],
)
@pytest.mark.parametrize("random_effects", ["1", "1 + x"])
def test_a_zero_part_design_s_rows_in_closed_form(make, random_effects):
    """A zero-inflation or hurdle probability with a design (``zero_inflation="~ z"``):
    the family's derivatives in the block times the design's columns give each
    coefficient's row (:func:`~sklearn_glmm._engine.laplace_hessian._per_coefficient`),
    so the fit's Hessian takes no evaluation and is within 1e-6 of the largest entry of
    extrapolated differences of the gradient, at the optimum and beside it (an NB2
    ``log theta`` on its bound, the Poisson limit, whose row is taken by differences,
    moved to 2 first)."""
    m = _zero_part_design_fit(make(random_effects))
    assert m.converged_
    obj = m.fit_result_.objective
    d = obj.data
    assert d.extra_designs is not None
    final = np.array(m.fit_record_.final)
    k = d.n_beta + d.n_theta
    if isinstance(m, NegBinGLMM) and final[k] >= d.extra_bounds[0][1] - 1e-6:
        final[k] = 2.0
    for x in (final, final + 0.05):
        check_closed_block(obj, x, lh.laplace_hessian, evals=0, tol=1e-6)


@pytest.mark.parametrize(
    "kind", [dict(), dict(zero_inflated=True), dict(hurdle=True), dict(truncated=True)]
)
def test_a_theta_per_row_gives_each_row_s_derivatives(kind):
    """A dispersion model's theta per row: NB2's and the zero-inflated, hurdle and
    zero-truncated NB2's derivatives for the closed-form Hessian are, row by row, those
    of the scalar theta of that row (the large-theta branch chosen per row)."""
    zi = kind.get("zero_inflated", False)
    fam = make_family("negbin", zi, **{k: True for k in ("hurdle", "truncated") if kind.get(k)})
    rng = np.random.default_rng(41)
    n = 12
    y = rng.poisson(3.0, n).astype(float) + (1.0 if kind.get("truncated") else 0.0)
    y[:3] = [0.0, 0.0, 2_000.0] if not kind.get("truncated") else [1.0, 1.0, 2_000.0]
    eta = rng.normal(0.5, 1.5, n)
    lt = np.linspace(-2.0, 9.0, n)  # (theta from 0.14 to 8,100: both branches)
    lt[-1] = 25.0
    two = zi or kind.get("hurdle")

    def derivs(extra):
        if two:
            return fam.extra_hessian_derivs(y, eta, None, None, extra)
        first, second = fam.extra_second_derivs(y, eta, None, None, extra, with_first=True)
        return first + second

    per_row = derivs((lt, -0.7) if two else (lt,))
    flat = [np.ravel(v).reshape(-1, n) if np.ndim(v) > 1 else v[None] for v in _leaves(per_row)]
    for i in range(n):
        one = derivs(np.array([lt[i], -0.7]) if two else np.array([lt[i]]))
        for got, ref in zip(flat, _leaves(one)):
            ref = np.ravel(ref).reshape(-1, n) if np.ndim(ref) > 1 else ref[None]
            np.testing.assert_allclose(got[:, i], ref[:, i], rtol=1e-13, atol=1e-300)


def test_nb1_phi_per_row_gives_each_row_s_derivatives():
    """NB1's second derivatives in a ``log phi`` per row (a dispersion model) are, row by
    row, those of the scalar ``log phi`` of that row; with any row on the bound (the
    Poisson limit) none are given (differences)."""
    fam = make_family("negbin1")
    rng = np.random.default_rng(42)
    n = 12
    y = rng.poisson(3.0, n).astype(float)
    y[:3] = [0.0, 0.0, 2_000.0]
    eta = rng.normal(0.5, 1.5, n)
    lp = np.linspace(-6.0, 4.0, n)
    per_row = _leaves(fam.extra_second_derivs(y, eta, None, None, (lp,), with_first=True))
    for i in range(n):
        one = _leaves(fam.extra_second_derivs(y, eta, None, None, (lp[i],), with_first=True))
        for got, ref in zip(per_row, one):
            np.testing.assert_allclose(got[i], ref[i], rtol=1e-13, atol=1e-300)
    lp[4] = fam.blocks[0].bounds[0]
    assert fam.extra_second_derivs(y, eta, None, None, (lp,)) is None


def _leaves(nested):
    """The arrays of a nested tuple, in order."""
    out = []
    for v in nested:
        out.extend(_leaves(v) if isinstance(v, tuple) else [np.asarray(v, dtype=float)])
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: NegBinGLMM(dispersion="1 + z"),
        lambda: NegBinGLMM(dispersion="1 + z", zero_inflation=True),
        lambda: NegBinGLMM(dispersion="1 + z", hurdle=True),
        lambda: NegBinGLMM(dispersion="1 + z", zero_inflation="~ z", random_effects="1 + x"),
        lambda: NegBinGLMM(dispersion="1 + z", family="nbinom1"),
    ],
)
def test_a_dispersion_model_s_rows_in_closed_form(make):
    """NB2 with a dispersion model (a theta per row; with zero inflation, a hurdle, a
    zero-part design and a random slope), and NB1 with one (a phi per row): the rows of
    its coefficients in closed form
    (:func:`~sklearn_glmm._engine.laplace_hessian._per_coefficient`), no evaluation,
    within 1e-6 of the largest entry of extrapolated differences of the gradient."""
    import warnings

    rng = np.random.default_rng(5)
    n_groups, per = 40, 10
    g = np.repeat(np.arange(n_groups), per)
    x, z = rng.normal(size=n_groups * per), rng.normal(size=n_groups * per)
    mu = np.exp(0.8 + 0.5 * x + rng.normal(0, 0.6, n_groups)[g])
    theta = np.exp(0.5 + 0.7 * z)
    y = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    y[rng.random(len(y)) < 0.2] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = make().fit(pd.DataFrame({"x": x, "z": z}), y, groups=g)
    assert m.converged_
    obj = m.fit_result_.objective
    final = np.array(m.fit_record_.final)
    for x0 in (final, final + 0.03):
        check_closed_block(obj, x0, lh.laplace_hessian, evals=0, tol=1e-6)


@pytest.mark.parametrize("link", ["logit", "cloglog"])
def test_ordinal_quadrature_hessian_in_closed_form(link):
    """With one scalar random effect the quadrature's (beta, theta) block is in closed
    form for the ordinal family too (its thresholds by differences)."""
    from sklearn_glmm._engine import agq_hessian

    est = _ordinal_fit(link, "1")
    data = est.fit_result_.objective.data
    obj = Objective(data, 7)
    x = np.asarray(est.fit_record_.final, dtype=float) + 0.02
    obj.value_and_grad(x)
    assert agq_hessian.applies(obj)
    ref = _central_hessian(Objective(data, 7), x)
    np.testing.assert_allclose(hessian(obj, x), ref, atol=1e-6 * np.abs(ref).max(), rtol=0)
