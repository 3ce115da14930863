"""What the tests of the families' blocks with predictors share: reading a frozen
glmmTMB fixture, fitting without warnings, comparing estimates within a fraction of
glmmTMB's standard errors, and the checks every block design must pass (the caller's
data untouched, results free of a predictor's units, a design of ones equal to the
scalar block)."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from sklearn_glmm._engine.converge import check_optimum
from sklearn_glmm._engine.objective import GLMObjective, Objective
from sklearn_glmm._engine.optimize import fit_objective
from sklearn_glmm._engine.start import parameter_bounds, starting_point

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def fixture_json(folder: str, name: str) -> dict:
    return json.loads((FIXTURES / folder / name).read_text())


@cache
def fixture_csv(folder: str, name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / folder / name)


def quiet_fit(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def assert_within_se(values: pd.Series, ref: dict, se_ref: dict, tol_se=0.05):
    """Each estimate within ``tol_se`` of glmmTMB's standard error of glmmTMB's."""
    for name, r in ref.items():
        assert abs(values[name] - r) <= tol_se * se_ref[name], (name, values[name], r)


def assert_caller_data_unchanged(make, X, y, g, use=lambda m, X, g: None):
    """Fitting ``make()`` to copies of ``X, y, g`` and ``use``-ing the model leaves them
    as they were."""
    X, y, g = X.copy(), y.copy(), g.copy()
    before = (X.copy(), y.copy(), g.copy())
    m = quiet_fit(make().fit, X, y, groups=g)
    use(m, X, g)
    pd.testing.assert_frame_equal(X, before[0])
    pd.testing.assert_series_equal(y, before[1])
    pd.testing.assert_series_equal(g, before[2])


def assert_free_of_units(make, table: str, X, y, g, m1):
    """Refitting ``make()`` with predictor ``w`` moved and rescaled (1000 + 100 w) gives
    ``m1``'s log-likelihood, ``w``'s coefficient in ``table`` divided by 100 and the same
    z value for ``x``."""
    X2 = X.assign(w=1000.0 + 100.0 * X["w"])
    m2 = quiet_fit(make().fit, X2, y, groups=g)
    assert m2.loglik_ == pytest.approx(m1.loglik_, abs=1e-6)
    t1, t2 = getattr(m1, table), getattr(m2, table)
    assert t2.loc["w", "estimate"] == pytest.approx(t1.loc["w", "estimate"] / 100.0, rel=1e-4)
    assert t2.loc["x", "z_value"] == pytest.approx(t1.loc["x", "z_value"], rel=1e-4)


def refit(data, n_agq=1):
    """A fit of the engine's model data alone (tight tolerance); ``(x, record)``."""
    obj = Objective(data, n_agq) if data.factors else GLMObjective(data)
    bounds = parameter_bounds(data)
    x, record = fit_objective(obj, starting_point(obj), bounds, 1000, 1e-10)
    x = check_optimum(obj, x, record, bounds, 1000, 1e-10)
    return x, record


def designed_objective(m, designs, abs_tol):
    """The objective of ``m``'s data with the family's blocks given ``designs`` (columns
    of ones: the constant blocks written as designs), whose value at the fitted
    parameters must be the scalar blocks' to ``abs_tol``."""
    res = m.fit_result_
    obj = Objective(replace(res.objective.data, extra_designs=designs))
    assert obj.evaluate(res.params) == pytest.approx(
        res.objective.evaluate(res.params), abs=abs_tol
    )
    return obj
