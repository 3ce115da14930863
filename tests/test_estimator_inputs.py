"""Inputs people pass and what they get back.

Each block pins one behaviour: the warnings name the user's line, pandas columns the
model cannot use get errors that say what to do, polars (any narwhals-supported)
frames keep their names, sparse X is accepted, count ``predict_proba`` has a support
fixed at fit (``classes_``) with the tail in its last column, and pickles carry what
prediction needs rather than the training data.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm.exceptions import (
    IdentifiabilityWarning,
    NoRandomEffectsWarning,
    OverdispersionWarning,
    RankDeficiencyWarning,
    SeparationWarning,
    SingularFitWarning,
)


def _data(n_groups=30, per=4, seed=0):
    rng = np.random.default_rng(seed)
    n = n_groups * per
    X = rng.normal(size=(n, 2))
    g = np.repeat(np.arange(n_groups), per)
    b = rng.normal(scale=0.5, size=n_groups)[g]
    y_bin = rng.binomial(1, 1 / (1 + np.exp(-(0.2 + X[:, 0] + b))))
    y_cnt = rng.poisson(np.exp(0.3 + 0.4 * X[:, 0] + b))
    return X, y_bin, y_cnt, g


def _record(fun):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fun()
    return caught


# =========================================================================================
# 5. warnings point at the line that called fit / predict
# =========================================================================================
X0, YB0, YC0, G0 = _data()
_SEPARATED = (X0[:, 0] > 0).astype(int)


def _fit_frame():
    return pd.DataFrame(X0, columns=["a", "b"])


_WARNING_CASES = {
    "no groups (binomial)": (lambda: BinomialGLMM().fit(X0, YB0), NoRandomEffectsWarning),
    "no groups (poisson)": (lambda: PoissonGLMM().fit(X0, YC0), NoRandomEffectsWarning),
    "max_iter (binomial)": (
        lambda: BinomialGLMM(max_iter=1).fit(X0, YB0, groups=G0),
        ConvergenceWarning,
    ),
    "max_iter (poisson)": (
        lambda: PoissonGLMM(max_iter=1).fit(X0, YC0, groups=G0),
        ConvergenceWarning,
    ),
    "aliased column": (
        lambda: BinomialGLMM().fit(np.column_stack([X0[:, 0], 2 * X0[:, 0]]), YB0, groups=G0),
        RankDeficiencyWarning,
    ),
    "separation": (lambda: BinomialGLMM().fit(X0, _SEPARATED, groups=G0), SeparationWarning),
    "single level": (
        lambda: PoissonGLMM().fit(X0, YC0, groups=np.zeros(len(YC0))),
        IdentifiabilityWarning,
    ),
    "singular": (
        lambda: PoissonGLMM().fit(X0, YC0, groups=np.zeros(len(YC0))),
        SingularFitWarning,
    ),
    "non-integer counts": (lambda: PoissonGLMM().fit(X0, YC0 + 0.5, groups=G0), UserWarning),
    "underdispersed counts": (
        lambda: NegBinGLMM().fit(X0, np.tile([1, 2, 2, 3], 30), groups=G0),
        OverdispersionWarning,
    ),
    "column y": (
        lambda: PoissonGLMM().fit(X0, YC0[:, None], groups=G0),
        DataConversionWarning,
    ),
    "array at predict after a frame at fit": (
        lambda: PoissonGLMM().fit(_fit_frame(), YC0, groups=G0).predict(X0),
        UserWarning,
    ),
    "array at predict_proba (binomial)": (
        lambda: BinomialGLMM().fit(_fit_frame(), YB0, groups=G0).predict_proba(X0),
        UserWarning,
    ),
}


@pytest.mark.parametrize("case", list(_WARNING_CASES))
def test_warnings_name_the_callers_line(case):
    fun, category = _WARNING_CASES[case]
    caught = [w for w in _record(fun) if issubclass(w.category, category)]
    assert caught, f"no {category.__name__} for {case}"
    for w in caught:
        assert w.filename == __file__, (w.category.__name__, w.filename, w.lineno)


def test_warnings_through_a_subclass_fit_name_the_callers_line():
    # a user's subclass that wraps fit: the warning names the user's code, not the package
    class MyModel(BinomialGLMM):
        def fit(self, X, y, groups=None, **kw):
            return super().fit(X, y, groups, **kw)

    caught = _record(lambda: MyModel().fit(X0, YB0))
    assert [w.filename for w in caught] == [__file__]


def test_warnings_inside_scikit_learn_name_its_line():
    # called by cross_validate, the first frame outside the package is scikit-learn's
    from sklearn.model_selection import cross_validate

    caught = _record(lambda: cross_validate(BinomialGLMM(), X0, YB0, cv=2))
    names = {w.filename for w in caught if issubclass(w.category, NoRandomEffectsWarning)}
    assert names and all("sklearn_glmm" not in f for f in names)
