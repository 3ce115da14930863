"""Inputs that used to give a wrong answer without an error.

Each block pins one behaviour: R's formula operators (``^`` inside ``I()`` is a
power, ``poly`` is R's), random effects asked for without groups, the class a
binomial model describes, group labels of another type at predict time,
duplicated column names, the null model and scikit-learn's parameter validation.
R's numbers come from R 4 with lme4 1.1-31; the R code is in the comments.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._base import NoRandomEffectsWarning
from sklearn_glmm.datasets import make_longitudinal

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:boundary \\(singular\\) fit"),
]


def _quiet(fun, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kwargs)


@pytest.fixture(scope="module")
def binary():
    df, _ = make_longitudinal("binomial", n_groups=40, random_state=0)
    return df[["time", "treatment"]], df["y"], df["id"], df


# =========================================================================================
# 2. random effects asked for, but no groups reach fit
# =========================================================================================
def test_grid_search_without_routing_raises_instead_of_fitting_glms(binary):
    X, y, ids, _ = binary
    search = GridSearchCV(BinomialGLMM(), {"random_effects": ["1", "1 + time"]}, cv=GroupKFold(2))
    with sklearn.config_context(enable_metadata_routing=False):
        with pytest.raises(ValueError, match="fit received no groups") as info:
            _quiet(search.fit, X, y, groups=ids)
    message = str(info.value)
    assert "sklearn.set_config(enable_metadata_routing=True)" in message
    assert "est.set_fit_request(groups=True)" in message and "group_columns" in message


def test_explicit_random_effects_need_groups_the_default_fits_a_glm(binary):
    X, y, _, _ = binary
    for est in (BinomialGLMM("1"), BinomialGLMM(random_effects="1 + time"), PoissonGLMM("1")):
        with pytest.raises(ValueError, match=r"random_effects='1.*' asks for a mixed model"):
            est.fit(X, (y > 0).astype(int))
    with pytest.warns(NoRandomEffectsWarning):
        glm = BinomialGLMM().fit(X, y)
    assert glm._factors == [] and glm.random_effects is None


def test_requested_groups_that_never_arrive_raise(binary):
    X, y, ids, _ = binary
    with sklearn.config_context(enable_metadata_routing=True):
        est = BinomialGLMM().set_fit_request(groups=True)
        with pytest.raises(ValueError, match=r"requested groups.*fit received no groups"):
            _quiet(cross_validate, est, X, y, cv=KFold(2))
        # with the groups passed the default estimator fits a random intercept
        res = _quiet(cross_validate, est, X, y, cv=GroupKFold(2), params={"groups": ids})
    assert np.all(np.isfinite(res["test_score"]))


def test_group_columns_need_no_routing(binary):
    _, y, _, df = binary
    search = GridSearchCV(
        BinomialGLMM(group_columns="id"), {"random_effects": ["1", "1 + time"]}, cv=GroupKFold(2)
    )
    _quiet(search.fit, df[["id", "time", "treatment"]], y, groups=df["id"])
    assert search.best_estimator_.ranef_["id"].shape[0] == df["id"].nunique()


# =========================================================================================
# 4. group labels of another type at predict time
# =========================================================================================
@pytest.fixture(scope="module")
def counts():
    df, _ = make_longitudinal("poisson", n_groups=12, random_state=0)
    return df[["time"]], df["y"], df["id"]


@pytest.mark.parametrize(
    "fit_as, predict_as",
    [
        (float, str),  # fitted 1.0, asked "1"
        (str, float),  # fitted "1", asked 1.0
        (int, str),
        (str, int),
        (float, lambda v: f"{v:.1f}"),  # fitted 1.0, asked "1.0"
    ],
    ids=["float-str", "str-float", "int-str", "str-int", "float-str.0"],
)
def test_labels_differing_only_in_type_match_in_both_directions(counts, fit_as, predict_as):
    X, y, ids = counts
    fitted_labels = ids.map(fit_as)
    asked = ids.map(predict_as)
    m = PoissonGLMM().fit(X, y, groups=fitted_labels)
    np.testing.assert_allclose(m.predict(X, groups=asked), m.predict(X, groups=fitted_labels))
    assert not np.allclose(m.predict(X, groups=asked), m.predict(X))  # not population-level
    np.testing.assert_allclose(
        m.predict_proba(X, groups=asked, max_count=20),
        m.predict_proba(X, groups=fitted_labels, max_count=20),
    )
    # predict_interval reads the conditional variances of the same levels
    pd.testing.assert_frame_equal(
        m.predict_interval(X, groups=asked), m.predict_interval(X, groups=fitted_labels)
    )


def test_binomial_predict_proba_matches_labels_of_another_type(binary):
    X, y, ids, _ = binary
    m = _quiet(BinomialGLMM().fit, X, y, groups=ids.astype(float))
    np.testing.assert_allclose(
        m.predict_proba(X, groups=ids.astype(str)), m.predict_proba(X, groups=ids)
    )


def test_labels_that_are_not_a_numbers_text_do_not_match(counts):
    X, y, ids = counts
    m = PoissonGLMM().fit(X, y, groups=ids)
    padded = ids.map(lambda v: f"0{v}")  # "01" is another label than 1
    np.testing.assert_allclose(m.predict(X, groups=padded), m.predict(X))


def test_labels_that_differ_only_in_type_raise_in_fit_and_when_ambiguous(counts):
    X, y, ids = counts
    mixed = ids.astype(object).copy()
    mixed.iloc[:2] = str(ids.iloc[0])  # "1" next to 1
    with pytest.raises(ValueError, match=r"labels \[1, '1'\] that differ only in type"):
        PoissonGLMM().fit(X, y, groups=mixed)
    two = ids.astype(str).where(ids != 2, "1.0")  # "1" and "1.0" are fitted as two groups
    m = PoissonGLMM().fit(X, y, groups=two)
    with pytest.raises(ValueError, match=r"group label 1 .* matches the fitted levels"):
        m.predict(X, groups=ids)


# =========================================================================================
# 5. duplicated column names
# =========================================================================================
def test_duplicated_columns_raise_naming_the_column(binary):
    X, y, ids, _ = binary
    dup = pd.concat([X, X[["time"]] * 2], axis=1)
    assert list(dup.columns) == ["time", "treatment", "time"]
    with pytest.raises(ValueError, match=r"duplicated column name\(s\) \['time'\]"):
        BinomialGLMM("1 + time").fit(dup, y, groups=ids)
    m = _quiet(BinomialGLMM().fit, X, y, groups=ids)
    with pytest.raises(ValueError, match=r"duplicated column name\(s\) \['time'\]"):
        m.predict(dup.iloc[:, [0, 2]])


# =========================================================================================
# 7. parameter validation
# =========================================================================================
@pytest.mark.parametrize(
    "est, match",
    [
        (BinomialGLMM(fit_intercept="no"), "'fit_intercept' parameter"),
        (PoissonGLMM(zero_inflation="yes"), "'zero_inflation' parameter"),
        (NegBinGLMM(zero_inflation=1), "'zero_inflation' parameter"),
        (BinomialGLMM(tol=-1.0), "'tol' parameter"),
        (BinomialGLMM(max_iter=0), "'max_iter' parameter"),
        (BinomialGLMM(n_agq=0), "'n_agq' parameter"),
        (BinomialGLMM(n_agq=51), "'n_agq' parameter"),
        (BinomialGLMM(n_agq=True), "'n_agq' parameter"),
        (BinomialGLMM(random_effects=1), "'random_effects' parameter"),
        (BinomialGLMM(group_columns=3), "'group_columns' parameter"),
    ],
)
def test_invalid_parameters_raise_scikit_learns_error(binary, est, match):
    X, y, ids, _ = binary
    with pytest.raises(InvalidParameterError, match=match):
        est.fit(X, y, groups=ids)


def test_numpy_scalars_are_valid_parameters(binary):
    X, y, ids, _ = binary
    m = _quiet(
        BinomialGLMM(tol=np.float32(1e-6), max_iter=np.int64(500), fit_intercept=np.True_).fit,
        X,
        y,
        groups=ids,
    )
    assert np.isfinite(m.loglik_)


@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM, NegBinGLMM])
def test_parameter_constraints_pass_scikit_learns_check(Est):
    _quiet(check_param_validation, Est.__name__, Est())
