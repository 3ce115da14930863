"""Grouping factors that group the rows identically: only the sum of their variances is
identified (``(1 | school/class)`` with one class per school)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine.groups import aliased_factors
from sklearn_glmm.exceptions import IdentifiabilityWarning, StandardErrorWarning


def _schools(seed, family, n_schools=30, reps=8):
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_schools), reps)
    x = rng.normal(size=len(school))
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.7, n_schools)[school]
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
    X = pd.DataFrame({"x": x})
    # one class per school: the class factor relabels the schools
    groups = pd.DataFrame({"school": school, "class": 1000 + 7 * school})
    return X, y, groups


def _fit(Est, X, y, groups):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = Est().fit(X, y, groups=groups)
    return m, caught


@pytest.mark.parametrize(
    "Est, family, seed",
    [
        (PoissonGLMM, "poisson", 1),
        (PoissonGLMM, "poisson", 3),  # was a "saddle point" on this maximum
        (NegBinGLMM, "poisson", 1),  # SEs of 15.7 on log scale, finite, without a warning
        (BinomialGLMM, "binomial", 1),  # Wald interval (0, inf) for each SD
    ],
)
def test_aliased_factors_are_said_and_their_split_has_no_standard_errors(Est, family, seed):
    X, y, groups = _schools(seed, family)
    m, caught = _fit(Est, X, y, groups)
    said = [str(w.message) for w in caught if w.category is IdentifiabilityWarning]
    assert len(said) == 1 and "'school', 'class'" in said[0]
    assert "group the rows identically" in said[0]
    assert any(w.category is StandardErrorWarning for w in caught)
    assert m.converged_
    # the same maximum as the model with one of them
    m1, _ = _fit(Est, X, y, groups[["school"]])
    assert m.loglik_ == pytest.approx(m1.loglik_, abs=1e-6)
    total = sum(float(np.asarray(v)[0, 0]) for v in m.random_effects_cov_.values())
    alone = float(np.asarray(m1.random_effects_cov_["school"])[0, 0])
    assert total == pytest.approx(alone, rel=1e-3)
    ci = m.confint(method="wald")
    sds = [r for r in ci.index if r.startswith("sd_")]
    assert len(sds) == 2 and ci.loc[sds, ["lower", "upper"]].isna().all().all()
    # what the likelihood identifies keeps its standard errors
    se, se1 = m.fixed_effects_["std_error"], m1.fixed_effects_["std_error"]
    np.testing.assert_allclose(se.to_numpy(), se1.to_numpy(), rtol=1e-3)
    assert m.fit_record_.n_unidentified == 1


def test_factors_that_differ_on_one_level_are_not_aliased():
    X, y, groups = _schools(1, "poisson")
    groups = groups.copy()
    groups.loc[groups.index[:4], "class"] = -1  # a school with two classes
    m, caught = _fit(PoissonGLMM, X, y, groups)
    assert not any(w.category is IdentifiabilityWarning for w in caught)
    assert m.fit_record_.n_unidentified == 0


def test_aliased_factors_are_read_on_the_rows_that_carry_the_likelihood():
    a = np.repeat(np.arange(5), 4)
    b = a.copy()
    b[0] = 9  # a second level of b inside level 0 of a: not aliased
    assert aliased_factors([a, b]) == []
    used = np.ones(len(a), dtype=bool)
    used[0] = False  # unless that row has weight 0
    assert aliased_factors([a, b], used) == [(0, 1)]
    c = (a * 3 + 1) % 7  # a relabelling
    assert aliased_factors([a, c, b]) == [(0, 1)]
    assert aliased_factors([a, np.arange(len(a))]) == []


def test_two_terms_on_one_factor_that_the_levels_identify_are_not_aliased():
    # lme4's (1 + x || id): two terms on the same grouping, each variance identified
    # (x varies within id); the rows are grouped identically, the covariances are not
    # read only together
    from sklearn_glmm.formula import glmer

    rng = np.random.default_rng(2)
    ids = np.repeat(np.arange(25), 8)
    x = rng.normal(size=len(ids))
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.6, 25)[ids] + rng.normal(0, 0.4, 25)[ids] * x
    d = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "id": ids})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmer("y ~ x + (1 + x || id)", d, family="poisson")
    assert not any(w.category is IdentifiabilityWarning for w in caught)
    assert m.converged_ and m.fit_record_.n_unidentified == 0
    assert np.isfinite(m.confint(method="wald").filter(like="sd_", axis=0).to_numpy()).all()


def test_a_split_that_ends_with_a_singular_covariance_is_moved_to_the_central_point():
    # (1 + x | school) + (1 + z | cls), one class per school: the optimiser ended with
    # cls's correlation at -1 (a Cholesky diagonal on its bound), where the set of equal
    # likelihood has no first-order direction and both intercept SDs had finite Wald
    # intervals, (0.30, 0.96) and (0.0017, 16.9); the fit is moved to the set's point of
    # largest determinant, one point whatever the path
    from sklearn_glmm.formula import glmer

    rng = np.random.default_rng(1)
    n, reps = 30, 8
    s = np.repeat(np.arange(n), reps)
    x = rng.normal(size=len(s))
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.7, n)[s] + 0.4 * rng.normal(0, 1, n)[s] * x
    d = pd.DataFrame(dict(y=rng.poisson(np.exp(eta)), x=x, school=s, cls=1000 + 7 * s))
    d["z"] = np.random.default_rng(5).normal(size=len(d))
    formula = "y ~ x + z + (1 + x|school) + (1 + z|cls)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmer(formula, d, family="poisson")
    assert any(w.category is IdentifiabilityWarning for w in caught)
    assert m.converged_ and not m.is_singular_
    ci = m.confint(method="wald")
    for name in ("sd_(Intercept)|school", "sd_(Intercept)|cls", "cor_z.(Intercept)|cls"):
        assert ci.loc[name, ["lower", "upper"]].isna().all(), name
    assert np.isfinite(ci.loc["sd_x|school", ["lower", "upper"]]).all()
    # the same point from rows in another order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m2 = glmer(formula, d.sample(frac=1.0, random_state=3), family="poisson")
    assert m2.loglik_ == pytest.approx(m.loglik_, abs=1e-7)
    np.testing.assert_allclose(
        m2.random_effects_cov_["cls"], m.random_effects_cov_["cls"], rtol=1e-3, atol=1e-6
    )


def test_a_structured_covariance_elsewhere_leaves_the_aliased_pair_found():
    # (1 | id) + (1 | id2) + ar1(0 + factor(day) | id), id2 relabelling id: the ar1 term
    # switched the detection off for every factor ("a saddle point" at the maximum, the
    # split counted in likelihood-ratio tests)
    from sklearn_glmm.formula import glmmTMB

    rng = np.random.default_rng(4)
    ids = np.repeat(np.arange(30), 6)
    day = np.tile(np.arange(6), 30)
    x = rng.normal(size=len(ids))
    eta = 0.2 + 0.4 * x + rng.normal(0, 0.6, 30)[ids]
    d = pd.DataFrame(dict(y=rng.poisson(np.exp(eta)), x=x, id=ids, id2=ids + 500, day=day))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmmTMB("y ~ x + (1|id) + (1|id2) + ar1(0 + factor(day)|id)", d, family="poisson")
    said = [str(w.message) for w in caught if w.category is IdentifiabilityWarning]
    assert len(said) == 1 and "'id', 'id2'" in said[0]
    assert m.converged_ and m.fit_record_.n_unidentified == 1


def _two_slopes(seed, shift=0.0):
    rng = np.random.default_rng(seed)
    n, reps = 30, 8
    s = np.repeat(np.arange(n), reps)
    x = rng.normal(size=len(s))
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.7, n)[s] + 0.4 * rng.normal(0, 1, n)[s] * x
    d = pd.DataFrame(dict(y=rng.poisson(np.exp(eta)), x=x, school=s, cls=1000 + 7 * s))
    d["z"] = np.random.default_rng(seed + 4).normal(size=len(d)) + shift
    return d


def test_the_central_point_does_not_depend_on_a_slope_variables_centring():
    # the log-det search stalled between its stopping rule and the rounding of log det
    # (z + 100): the fit stayed at the set's edge, singular, with school's intercept
    # variance 0.291 for 0.175 and a finite interval for its SD
    from sklearn_glmm.formula import glmer

    fits = []
    for shift in (0.0, 100.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = glmer("y ~ x + z + (1 + x|school) + (1 + z|cls)", _two_slopes(1, shift), "poisson")
        fits.append(m)
        ci = m.confint(method="wald")
        assert ci.loc["sd_(Intercept)|school", ["lower", "upper"]].isna().all()
    a, b = (np.asarray(m.random_effects_cov_["school"]) for m in fits)
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_a_thin_set_still_leaves_the_split_without_intervals():
    # cls's z-slope variance near 0: every point of the set nearly singular (largest
    # smallest eigenvalue 5e-7 of the trace), taken for its face; the split's SDs had
    # Wald intervals of (1e-44, 2e43) and the summary no note
    from sklearn_glmm.formula import glmer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ x + z + (1 + x|school) + (1 + z|cls)", _two_slopes(8), family="poisson")
        ci = m.confint(method="wald")
    for name in ("sd_(Intercept)|school", "sd_(Intercept)|cls", "cor_x.(Intercept)|school"):
        assert ci.loc[name, ["lower", "upper"]].isna().all(), name
    assert "not identified by the data" in str(m.summary())


def test_a_prediction_that_reads_the_split_is_warned_of():
    # a new class in a known school (one class per school): its prediction reads how the
    # variance is split between school and class, which the data do not determine
    X, y, groups = _schools(1, "poisson")
    m, _ = _fit(PoissonGLMM, X, y, groups)
    new = pd.DataFrame({"school": groups["school"].iloc[:3], "class": [-1, -2, -3]})
    with pytest.warns(UserWarning, match="do not determine how the random effects"):
        m.predict(X.iloc[:3], groups=new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all known, or all new: identified
        m.predict(X.iloc[:3], groups=groups.iloc[:3])
        m.predict(X.iloc[:3], groups=pd.DataFrame({"school": [-1, -2, -3], "class": [-1] * 3}))


def test_the_largest_log_det_search_ends_at_its_maximum():
    # a concave problem with an interior maximum, from positive definite starts: the
    # search returned None on 55 of 2,000 (a Newton decrement stuck between 1e-20 and
    # the rounding of log det, the line search accepting steps that changed nothing)
    from sklearn_glmm._engine.equal_likelihood import _largest_log_det

    N = np.zeros((1, 4, 4))
    N[0, 0, 0], N[0, 2, 2] = 2**-0.5, -(2**-0.5)
    rng = np.random.default_rng(0)
    for _ in range(400):
        A = rng.normal(size=(2, 2)) * rng.uniform(0.05, 1)
        B = rng.normal(size=(2, 2)) * rng.uniform(0.05, 1)
        S = np.zeros((4, 4))
        S[:2, :2] = A @ A.T + 1e-3 * np.eye(2)
        S[2:, 2:] = B @ B.T + 1e-3 * np.eye(2)
        t = _largest_log_det(S, N, np.zeros(1))
        assert t is not None
        # the maximum: d/dt log det(S + t N) = tr((S + t N)^-1 N) = 0
        grad = np.trace(np.linalg.solve(S + t[0] * N[0], N[0]))
        assert abs(grad) < 1e-6 * np.linalg.norm(np.linalg.inv(S + t[0] * N[0]))
    # a two-arm fit's covariance; its maximum is where det(S + t N), a concave
    # quadratic, peaks
    S = np.array(
        [[0.2702936910664385, 0.3012555059096179], [0.3012555059096179, 0.34156017563291224]]
    )
    N = np.array([[[-(2**-0.5), 0.0], [0.0, 2**-0.5]]])
    t = _largest_log_det(S, N, np.zeros(1))
    # det(S + t N) = (a - t c)(b + t c) - off^2 with c = 2^-1/2: its peak
    c = 2**-0.5
    peak = (S[0, 0] - S[1, 1]) / (2 * c)
    assert t is not None and t[0] == pytest.approx(peak, abs=1e-9)
