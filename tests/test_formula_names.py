"""Coefficient names of formula fits are R's (``tests/fixtures/coefficient_names``: the
R script beside the fixture), and models of earlier versions keep theirs."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn_glmm._formula_names import r_column_name, r_deparse  # noqa: E402
from sklearn_glmm.formula import design_matrix, glmer  # noqa: E402

HERE = Path(__file__).parent / "fixtures" / "coefficient_names"


def _fit(rhs, d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmer(f"y ~ {rhs} + (1 | g)", d, family="binomial")


@pytest.mark.parametrize("rhs", list(json.loads((HERE / "names.json").read_text())))
def test_coefficient_names_are_r_s(rhs):
    d = pd.read_csv(HERE / "names.csv")
    expected = json.loads((HERE / "names.json").read_text())[rhs]
    m = _fit(rhs, d)
    assert list(m.fixed_effects_.index) == expected
    # and R's names select them
    assert list(m.confint(parm=expected[1:]).index) == expected[1:]


def test_deparse_keeps_what_r_keeps():
    assert r_deparse("I((a + b) * c)") == "I((a + b) * c)"
    assert r_deparse("I(a - (b - c))") == "I(a - (b - c))"
    assert r_deparse("I(a ** b ** c)") == "I(a^b^c)"
    assert r_deparse("I((a ** b) ** c)") == "I((a^b)^c)"
    assert r_deparse("log(`x y`)") == "log(`x y`)"
    assert r_deparse("log(`x.1`)") == "log(x.1)"
    assert r_column_name("f[T.a:b]:x") == "fa:b:x"
    assert r_column_name("g[T.O'Brien]:x") == "gO'Brien:x"


def test_models_of_the_earlier_naming_keep_their_names():
    # a spec made before R's names (its materializer PYTHON_NAMES): new data get the
    # names its model was fitted with
    import formulaic

    from sklearn_glmm import _formula_functions as formula_module
    from sklearn_glmm._formula_coding import PYTHON_NAMES, PythonNamesMaterializer

    d = pd.read_csv(HERE / "names.csv")
    rhs = "ns(x, df=3) + factor(f, levels=c('b', 'a', 'c')) + I(1 / x)"
    spec = formulaic.ModelSpec(formula=rhs, materializer=PythonNamesMaterializer)
    fitted = formulaic.model_matrix(spec, d, context=formula_module._context())
    assert fitted.model_spec.materializer == PYTHON_NAMES
    got = design_matrix(fitted.model_spec, d.iloc[:4])
    assert list(got.columns) == [
        "ns(x, df=3)1",
        "ns(x, df=3)2",
        "ns(x, df=3)3",
        "factor(f, levels=c('b', 'a', 'c'))a",
        "factor(f, levels=c('b', 'a', 'c'))c",
        "I(1 / x)",
    ]
    np.testing.assert_allclose(got.to_numpy(), np.asarray(fitted)[:4, 1:])


def test_factor_of_numbers_equal_to_fifteen_digits_is_one_level():
    # R's factor() labels numbers by as.character (15 significant digits): 0.3 and
    # 0.1 * 3, which differ in their last bit, are the level "0.3"
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 10)
    k = np.where(rng.random(200) < 0.5, 0.3, 0.1 * 3)
    k[:50] = 0.7
    d = pd.DataFrame({"k": k, "g": g, "y": rng.binomial(1, 0.4, 200)})
    m = _fit("factor(k)", d)
    assert list(m.fixed_effects_.index) == ["(Intercept)", "factor(k)0.7"]
    p = m.predict(pd.DataFrame({"k": [0.3, 0.1 * 3], "g": [0, 0]}), type="link")
    assert p[0] == p[1]
