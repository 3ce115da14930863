"""``fit(X, y, groups="id")`` with ``"id"`` a column of the DataFrame ``X``: the grouping
column for that fit, as ``group_columns="id"``."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import KFold, cross_validate

from sklearn_glmm import BinomialGLMM
from sklearn_glmm.datasets import make_longitudinal


@pytest.fixture(scope="module")
def df():
    return make_longitudinal(n_groups=40, n_waves=5, random_state=0)[0]


def test_groups_naming_a_column_is_group_columns_for_that_fit(df):
    X = df[["time", "treatment", "id"]]
    named = BinomialGLMM().fit(X, df["y"], groups="id")
    by_value = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    as_param = BinomialGLMM(group_columns="id").fit(X, df["y"])
    np.testing.assert_allclose(named.coef_, by_value.coef_, rtol=1e-10)
    np.testing.assert_allclose(named.coef_, as_param.coef_, rtol=1e-10)
    assert list(named.fixed_effects_.index) == ["(Intercept)", "time", "treatment"]
    assert named.group_columns is None  # the parameter is not changed
    # predict reads the column from X, or takes its name again
    expected = by_value.predict_proba(df[["time", "treatment"]], df["id"])
    np.testing.assert_allclose(named.predict_proba(X), expected)
    np.testing.assert_allclose(named.predict_proba(X, groups="id"), expected)
    with pytest.raises(ValueError, match=r"grouping column\(s\) \['id'\]"):
        named.predict(df[["time", "treatment"]])


def test_refit_with_labels_forgets_the_column(df):
    m = BinomialGLMM().fit(df[["time", "id"]], df["y"], groups="id")
    m.fit(df[["time"]], df["y"], groups=df["id"])
    assert m.predict(df[["time"]]).shape == (len(df),)


def test_clear_errors(df):
    with pytest.raises(ValueError, match="groups='person' names no column of X"):
        BinomialGLMM().fit(df[["time", "id"]], df["y"], groups="person")
    with pytest.raises(ValueError, match="groups='id' names no column of X"):
        BinomialGLMM().fit(df[["time", "id"]].to_numpy(), df["y"], groups="id")
    with pytest.raises(ValueError, match="not both"):
        BinomialGLMM(group_columns="id").fit(df[["time", "id"]], df["y"], groups="id")


def test_routed_through_cross_validate(df):
    X = df[["time", "treatment", "id"]]
    with sklearn.config_context(enable_metadata_routing=True):
        est = BinomialGLMM(random_effects="1").set_fit_request(groups=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = cross_validate(est, X, df["y"], cv=KFold(3), params={"groups": "id"})
    assert np.all(np.isfinite(out["test_score"]))
