"""Interaction columns in R's order and under R's names, and R's nesting operator
``%in%``, against lme4 and glmmTMB (``tests/fixtures/formula_terms``: the R script
beside the fixture).

R orders the variables of an interaction term as they first appear in the formula
(``y ~ f:x2 + x1:f`` has the columns ``fctrl:x1``, ...; ``y ~ lg:x2 + f * x2`` the
columns ``x2:fctrl``, ...), and a factor-by-factor term's columns with the first of
them varying fastest. glmmTMB counts the first appearances again in the formula R's
``update()`` rebuilds from the terms (``~ lg:x1 + cut_f * lg``: lme4's ``lgTRUE:cut_flo``
is glmmTMB's ``cut_flo:lgTRUE``). ``a %in% b`` is ``a:b``.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn_glmm.formula import glmer, glmmTMB, parse_glmm_formula  # noqa: E402

HERE = Path(__file__).parent / "fixtures" / "formula_terms"
FITS = {k: v for k, v in json.loads((HERE / "terms.json").read_text()).items() if k != "_meta"}


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(HERE / "terms.csv")


@pytest.mark.parametrize("formula", list(FITS))
def test_interaction_columns_and_nesting_as_lme4(formula, data):
    ref = FITS[formula]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        front = glmmTMB if ref["engine"] == "glmmTMB" else glmer
        m = front(formula, data, family=ref["family"])
    fe = m.fixed_effects_
    # lme4 drops an aliased column (x1:f beside scale(x1)); the fit keeps it as NaN, as
    # R's glm does: the same column
    kept = fe[fe["estimate"].notna()]
    assert list(kept.index) == ref["names"]
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=0.01)
    assert m.loglik_ > ref["loglik"] - 1e-3
    # within 5 % of a standard error (lme4 stops where bobyqa's tolerance lets it)
    np.testing.assert_allclose(kept["estimate"], ref["fixef"], atol=0.05 * min(ref["se"]))
    # glmmTMB's standard errors come from its exact Hessian; lme4's from a
    # finite-difference one (up to 0.6 % from the closed-form ones here)
    rtol = 1e-3 if ref["engine"] == "glmmTMB" else 0.01
    np.testing.assert_allclose(kept["std_error"], ref["se"], rtol=rtol)
    sd = np.sqrt(np.diag(m.random_effects_cov_["g"]))
    np.testing.assert_allclose(sd, ref["sd"], rtol=0.02, atol=1e-3)


def test_new_data_coded_in_the_fitted_order(data):
    # the model spec keeps the reordered terms: shuffled new rows give the same
    # predictions row for row, and so does the pickled model
    import pickle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ f:x2 + x1:f + x1 + x2 %in% cut_f + (1 | g)", data, family="binomial")
    assert list(m.fixed_effects_.index)[-4:] == ["fctrl:x1", "fdose:x1", "fmid:x1", "x2:cut_flo"]
    p = m.predict_proba(data)[:, 1]
    order = np.random.default_rng(0).permutation(len(data))
    np.testing.assert_array_equal(m.predict_proba(data.iloc[order])[:, 1], p[order])
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict_proba(data)[:, 1], p)


@pytest.mark.parametrize(
    "nested, crossed",
    [
        ("x2 %in% f", "x2:f"),
        ("f + x2 %in% f", "f + f:x2"),
        ("(x2 + x1) %in% f", "(x2 + x1):f"),
        ("x1 * x2 %in% f", "x1 * x2:f"),
        ("lg:x2 %in% f", "lg:x2:f"),
        ("x1 + I(x2 > 1) %in% cut_f", "x1 + I(x2 > 1):cut_f"),
    ],
)
def test_nesting_operator_is_r_s_interaction(data, nested, crossed):
    a = parse_glmm_formula(f"y ~ {nested} + (1 | g)", data)
    b = parse_glmm_formula(f"y ~ {crossed} + (1 | g)", data)
    pd.testing.assert_frame_equal(a.X, b.X)


def test_lme4_and_glmmtmb_orders_differ_where_r_s_do(data):
    # lme4: lg first appears before cut_f; glmmTMB reads ~ cut_f + lg + lg:x1 + lg:cut_f
    # (as lme4 1.1-31 and glmmTMB 1.1.5 name them; terms.json holds glmmTMB's fit)
    rhs = "lg:x1 + cut_f * lg + (1 | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = glmer(f"cnt ~ {rhs}", data, family="poisson")
        b = glmmTMB(f"cnt ~ {rhs}", data, family="poisson")
        # a zero-inflation formula is glmmTMB's, in its order (no zero inflation here:
        # its coefficients run along a ridge, which is not what is tested)
        z = glmmTMB("cnt ~ x1 + (1 | g)", data, family="poisson", ziformula=f"~ {rhs[:-10]}")
    assert list(a.fixed_effects_.index)[-1] == "lgTRUE:cut_flo"
    assert list(b.fixed_effects_.index)[-1] == "cut_flo:lgTRUE"
    assert a.loglik_ == pytest.approx(b.loglik_, abs=1e-8)
    assert list(z.zero_inflation_effects_.index)[-1].endswith("cut_flo:lgTRUE")
