"""Standard errors of a separated fit's limit model (``_fit_checks._limit_covariance``).

A count coefficient that runs to -inf (every ``x2 = 1`` row is 0) leaves the other
coefficients determined by the other rows: the count intercept (internally centred, so
the internal intercept moves with ``x2``), ``x1`` and, with zero inflation, the
zero-inflation intercept, whose ``x2`` coefficient the separated rows no longer see.
Reference: glmmTMB (``fixtures/zi_separation/make.R``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from sklearn_glmm import PoissonGLMM
from sklearn_glmm.exceptions import SeparationWarning, StandardErrorWarning

HERE = Path(__file__).parent / "fixtures" / "zi_separation"


@pytest.fixture(scope="module")
def data():
    d = pd.read_csv(HERE / "data.csv")
    ref = json.loads((HERE / "ref.json").read_text())
    return d, {k: {n: v[0] for n, v in t.items()} if isinstance(t, dict) else t
               for k, t in ref.items()}  # fmt: skip


def _fit(d, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = PoissonGLMM(random_effects="1", **kw).fit(d[["x1", "x2"]], d.y, groups=d.g)
    se_warnings = [str(w.message) for w in caught if w.category is StandardErrorWarning]
    return m, se_warnings


def test_a_separated_count_models_intercept_has_its_standard_error(data):
    # the intercept's SE was NaN (the internal intercept moves with x2, the reported one,
    # the x2 = 0 rows' level, does not)
    d, ref = data
    m, msgs = _fit(d)
    se = m.fixed_effects_["std_error"]
    for term in ("(Intercept)", "x1"):
        assert se[term] == pytest.approx(ref["poisson_cond_se"][term], rel=1e-3)
    assert np.isnan(se["x2"])
    assert len(msgs) == 1 and "['x2']" in msgs[0]


def test_zero_inflation_beside_a_separated_count_model(data):
    # every SE was NaN but x1's: the zero-inflation coefficient of x2 is flat in the limit
    # and made the rest of the Hessian singular
    d, ref = data
    m, msgs = _fit(d, zero_inflation="1 + x2")
    se = m.fixed_effects_["std_error"]
    for term in ("(Intercept)", "x1"):
        assert m.fixed_effects_.loc[term, "estimate"] == pytest.approx(ref["cond"][term], abs=1e-4)
        assert se[term] == pytest.approx(ref["cond_se"][term], rel=1e-3)
    zi = m.zero_inflation_effects_
    assert zi.loc["(Intercept)", "estimate"] == pytest.approx(ref["zi"]["(Intercept)"], abs=1e-4)
    assert zi.loc["(Intercept)", "std_error"] == pytest.approx(
        ref["zi_se"]["(Intercept)"], rel=1e-3
    )
    assert np.isnan(se["x2"]) and np.isnan(zi.loc["x2", "std_error"])
    assert len(msgs) == 1 and "['x2', 'zi~x2']" in msgs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = m.confint(method="wald")
    for name, se_ref in (("(Intercept)", ref["cond_se"]["(Intercept)"]),
                         ("zi~(Intercept)", ref["zi_se"]["(Intercept)"])):  # fmt: skip
        half = 0.5 * (ci.loc[name, "upper"] - ci.loc[name, "lower"])
        assert half == pytest.approx(1.959964 * se_ref, rel=1e-3)
    assert ci.loc[["x2", "zi~x2"], ["lower", "upper"]].isna().all().all()


def test_decorrelated_columns_beside_a_separating_one_keep_their_errors():
    # x and z nearly collinear (decorrelated internally: every internal coefficient moves
    # along the separating direction of grp); every SE was NaN. The limit model is the
    # fit of the other rows without grp
    from sklearn_glmm import BinomialGLMM

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(20), 15)
    x = rng.normal(size=len(g))
    z = x + 0.002 * rng.normal(size=len(g))
    grp = (rng.random(len(g)) < 0.3).astype(float)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.7, 20)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    y[grp == 1] = 1
    X = pd.DataFrame({"x": x, "z": z, "grp": grp})
    keep = grp == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = BinomialGLMM().fit(X, y, groups=g)
        limit = BinomialGLMM().fit(X.loc[keep, ["x", "z"]], y[keep], groups=g[keep])
    assert "rotation" in m.fit_result_.scaling
    se, se_limit = m.fixed_effects_["std_error"], limit.fixed_effects_["std_error"]
    for term in ("(Intercept)", "x", "z"):
        assert se[term] == pytest.approx(se_limit[term], rel=1e-3)
    assert np.isnan(se["grp"])


def test_a_separated_poisson_fit_is_judged_on_its_limit_model(data):
    # the Hessian's numerically flat direction along the separation read as negative
    # curvature (-6e-7 on the unit-diagonal scale): "a saddle point", converged_ False,
    # though the limit model's optimum is reached (glmmTMB's estimates and SEs)
    d, ref = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = PoissonGLMM(random_effects="1").fit(d[["x1", "x2"]], d.y, groups=d.g)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert m.converged_ and not m.fit_record_.negative_curvature
    for term in ("(Intercept)", "x1"):
        est = m.fixed_effects_.loc[term, "estimate"]
        assert est == pytest.approx(ref["poisson_cond"][term], abs=1e-4)


INTERACTION = Path(__file__).parent / "fixtures" / "sep_interaction"


@pytest.mark.parametrize("k", [1, 2])
def test_an_interaction_with_the_separating_predictor(k):
    # y ~ x * grp + (1 + x | g), every grp = 1 row a success: grp and x:grp run off
    # together. The linear programme's direction held one grp = 1 row still (a vertex),
    # so that row was kept in the limit model, x:grp looked determined, and the SEs of
    # (Intercept) and x came out 0.6 % off (data1) or NaN (data2). The limit model is
    # y ~ x + (1 + x | g) on the grp = 0 rows (glmmTMB; lme4's log-likelihood there is
    # lower on data2, -196.2472 against -196.2456)
    from sklearn_glmm import BinomialGLMM

    d = pd.read_csv(INTERACTION / f"data{k}.csv")
    ref = json.loads((INTERACTION / "ref.json").read_text())[f"data{k}"]
    X = pd.DataFrame({"x": d.x, "grp": d.grp, "x:grp": d.x * d.grp})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = BinomialGLMM(random_effects="1 + x").fit(X, d.y, groups=d.g)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert [w for w in caught if issubclass(w.category, SeparationWarning)]
    fe = m.fixed_effects_
    for term in ("(Intercept)", "x"):
        assert fe.loc[term, "estimate"] == pytest.approx(ref["limit"][term], abs=2e-4)
        assert fe.loc[term, "std_error"] == pytest.approx(ref["limit_se"][term], rel=2e-4)
    assert fe.loc[["grp", "x:grp"], "std_error"].isna().all()
    assert m.loglik_ == pytest.approx(ref["limit_loglik_glmmTMB"], abs=1e-5)


def test_every_row_a_direction_can_move_is_separated():
    # a vertex of the linear programme holds a row still that another direction moves;
    # the rows moved by some separating direction are found (the cone's sum)
    from sklearn_glmm._engine.separation import separated_rows, separating_directions

    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    grp = (rng.random(200) < 0.3).astype(float)
    y = rng.binomial(1, 0.5, 200).astype(float)
    y[grp == 1] = 1
    X = np.column_stack([np.ones(200), x, grp, x * grp])
    directions, _ = separating_directions(X, y, np.ones(200), np.ones(200), True)
    assert np.array_equal(separated_rows(X, directions), grp == 1)


def test_the_limit_models_checks_do_not_clear_another_verdict(data):
    # the checks at a separated fit's limit model clear its negative curvature; a record
    # not converged for another reason (a refit's restart stopped at its iteration limit,
    # which its fields do not show) stays not converged
    import copy

    from sklearn_glmm._engine.curvature import curvature
    from sklearn_glmm._fit_checks import separation_with_limit

    d, _ = data
    m, _ = _fit(d)
    res = m.fit_result_
    obj, x = res.objective, res.params
    for before in (True, False):
        rec = copy.copy(res.record)
        rec.covariance, rec.flat_directions, rec.negative_curvature = curvature(
            rec.hessian, x, res.bounds
        )
        rec.limit_covariance = None
        if not before:  # not converged for a reason its fields do not show
            rec.converged, rec.negative_curvature = False, False
        separation_with_limit(rec, x, res.bounds, obj.data, res.scaling, obj)
        assert rec.limit_covariance is not None and not rec.negative_curvature
        assert rec.converged is before
