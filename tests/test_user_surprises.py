"""Inputs that used to give a wrong answer without an error.

Each block pins one behaviour: R's formula operators (``^`` inside ``I()`` is a
power, ``poly`` is R's), random effects asked for without groups, the class a
binomial model describes, group labels of another type at predict time,
duplicated column names, the null model and scikit-learn's parameter validation.
R's numbers come from R 4 with lme4 1.1-31; the R code is in the comments.
"""

import warnings

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
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
