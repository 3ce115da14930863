"""Tests for sklearn_glmm.formula: designs built from lme4 formulas."""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from sklearn_glmm.datasets import make_longitudinal, make_vegetables  # noqa: E402
from sklearn_glmm.formula import (  # noqa: E402
    FormulaTransformer,
    GLMMDesign,
    design_matrix,
    glmer,
    glmmTMB,
    parse_glmm_formula,
)


@pytest.fixture(scope="module")
def veg():
    return make_vegetables(random_state=0, n_subjects=40, n_days=5)[0]


@pytest.fixture(scope="module")
def long():
    return make_longitudinal(n_groups=12, n_waves=4, random_state=0)[0]


@pytest.fixture()
def nested():
    return pd.DataFrame(
        {
            "y": [0, 1, 1, 0, 1, 0, 1, 1],
            "x": [0.1, 0.5, -0.3, 1.2, 0.0, 0.7, -1.1, 0.4],
            "school": [1, 1, 1, 1, 2, 2, 2, 2],
            "klass": [1, 1, 2, 2, 1, 1, 2, 2],
        }
    )


# ---------------------------------------------------------------------------
# fixed effects: R's names and treatment contrasts
# ---------------------------------------------------------------------------


def test_interaction_names_and_values(veg):
    design = parse_glmm_formula("y ~ trt * sex + (1 | id)", veg)
    assert isinstance(design, GLMMDesign)
    assert list(design.X.columns) == ["trttreat", "sexmale", "trttreat:sexmale"]
    assert design.fit_intercept
    treat = (veg["trt"] == "treat").astype(float)
    male = (veg["sex"] == "male").astype(float)
    np.testing.assert_array_equal(design.X["trttreat"], treat)
    np.testing.assert_array_equal(design.X["sexmale"], male)
    np.testing.assert_array_equal(design.X["trttreat:sexmale"], treat * male)
    pd.testing.assert_series_equal(design.y, veg["y"])
    assert design.trials is None and design.offset is None
    assert design.random_effects == {"id": "1"}
    pd.testing.assert_frame_equal(design.groups, veg[["id"]])
    assert len(design.dropped_rows) == 0


def test_three_level_factor_contrasts():
    df = pd.DataFrame(
        {"y": [0, 1, 0, 1, 1, 0], "g": ["b", "a", "c", "a", "b", "c"], "id": [1, 1, 2, 2, 3, 3]}
    )
    design = parse_glmm_formula("y ~ g + (1 | id)", df)
    assert list(design.X.columns) == ["gb", "gc"]  # base level "a", as R's contr.treatment
    np.testing.assert_array_equal(design.X["gb"], [1, 0, 0, 0, 1, 0])
    no_intercept = parse_glmm_formula("y ~ 0 + g + (1 | id)", df)
    assert list(no_intercept.X.columns) == ["ga", "gb", "gc"]
    assert not no_intercept.fit_intercept


def test_factor_of_numeric_column(long):
    design = parse_glmm_formula("y ~ factor(time) + (1 | id)", long)
    assert list(design.X.columns) == ["factor(time)1", "factor(time)2", "factor(time)3"]


@pytest.mark.parametrize(
    "formula",
    ["y ~ 0 + time + treatment + (1 | id)", "y ~ time + treatment - 1 + (1 | id)"],
)
def test_no_intercept(long, formula):
    design = parse_glmm_formula(formula, long)
    assert not design.fit_intercept
    assert list(design.X.columns) == ["time", "treatment"]


def test_intercept_only(long):
    design = parse_glmm_formula("y ~ 1 + (1 | id)", long)
    assert design.X.shape == (len(long), 0) and design.fit_intercept
    assert parse_glmm_formula("y ~ (1 | id)", long).X.shape == (len(long), 0)


# ---------------------------------------------------------------------------
# random-effect terms
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bar, term",
    [
        ("(1 | id)", "1"),
        ("(time | id)", "1 + time"),
        ("(1 + time | id)", "1 + time"),
        ("(0 + time | id)", "0 + time"),
        ("(-1 + time | id)", "0 + time"),
        ("(1 + time || id)", "diag(1 + time)"),
        ("(1 | id) + (0 + time | id)", "diag(1 + time)"),
        ("(time + treatment | id)", "1 + time + treatment"),
        ("diag(1 + time | id)", "diag(1 + time)"),  # glmmTMB's covariance structures
        ("us(1 + time | id)", "1 + time"),
        ("diag(1 | id)", "1"),
        ("ar1(0 + factor(time) | id)", "ar1(time)"),  # structures over a time variable
        ("cs(factor(time) + 0 | id)", "cs(time)"),
        ("toep(0 + factor(time) | id)", "toep(time)"),
        ("ou(numFactor(time) + 0 | id)", "ou(time)"),
        ("ar1(factor(time) - 1 | id)", "ar1(time)"),  # (with spaces it was refused)
        ("ou(time + 0 | id)", "ou(time)"),
    ],
)
def test_random_effect_terms(long, bar, term):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the usual spellings: no warning
        design = parse_glmm_formula(f"y ~ time + treatment + {bar}", long)
    assert design.random_effects == {"id": term}
    assert list(design.groups.columns) == ["id"]


@pytest.mark.parametrize(
    "bar", ["(1 + log(time + 1) | id)", "(log(time + 1) | id)", "diag(1 + log(time + 1) | id)"]
)
def test_random_slope_of_an_expression_holding_a_sum(long, bar):
    # the term's sum is split outside the call's parentheses (it named "log(time")
    fitted = glmmTMB(f"y ~ log(time + 1) + {bar}", long, family="binomial")
    plain = glmmTMB(
        f"y ~ lt + {bar.replace('log(time + 1)', 'lt')}",
        long.assign(lt=np.log(long["time"] + 1)),
        family="binomial",
    )
    assert list(fitted.random_effects.values())[0].count("log(time + 1)") == 1
    np.testing.assert_allclose(fitted.loglik_, plain.loglik_, rtol=1e-10)


def test_random_effects_term_sums_split_outside_parentheses():
    from sklearn_glmm._design import parse_term

    t = parse_term("1 + log(z + 1) + I(z - 2) - 1")
    assert (t.intercept, t.slopes) == (False, ("log(z + 1)", "I(z - 2)"))
    assert parse_term("diag(0 + log(z - 1))").slopes == ("log(z - 1)",)


@pytest.mark.parametrize(
    "bar, what",
    [
        ("ar1(factor(time) | id)", "without an intercept"),  # glmmTMB warns
        ("ar1(0 + time | id)", "as a factor of its values"),  # glmmTMB refuses
        ("cs(time | id)", r"none\) and with 'time' as a factor"),
    ],
)
def test_structures_read_other_than_written_are_warned_of(long, bar, what):
    with pytest.warns(UserWarning, match=what) as caught:
        design = parse_glmm_formula(f"y ~ time + treatment + {bar}", long)
    assert len(caught) == 1
    assert design.random_effects == {"id": bar[: bar.index("(")] + "(time)"}


@pytest.mark.parametrize(
    "term", ["exp(pos + 0 | id)", "rr(0 + factor(time) | id)", "homcs(0 + factor(time) | id)"]
)
def test_unavailable_covariance_structures_are_named(long, term):
    with pytest.raises(ValueError, match="covariance structure .* not available"):
        parse_glmm_formula(f"y ~ time + {term}", long)


def test_structure_needs_one_time_variable(long):
    with pytest.raises(ValueError, match="one time variable"):
        parse_glmm_formula("y ~ time + cs(1 + time | id)", long)


def test_factor_slope_uses_fixed_column_names(veg):
    design = parse_glmm_formula("y ~ trt + (trt | id)", veg)
    assert design.random_effects == {"id": "1 + trttreat"}


def test_crossed_factors(nested):
    design = parse_glmm_formula("y ~ x + (1 | school) + (1 | klass)", nested)
    assert design.random_effects == {"school": "1", "klass": "1"}
    pd.testing.assert_frame_equal(design.groups, nested[["school", "klass"]])


def test_nested_factors_named_as_lme4(nested):
    # lme4: (1 | school/klass) = (1 | school) + (1 | klass:school)
    design = parse_glmm_formula("y ~ x + (1 | school/klass)", nested)
    assert design.random_effects == {"school": "1", "klass:school": "1"}
    assert list(design.groups.columns) == ["school", "klass:school"]
    assert list(design.groups["klass:school"]) == ["1:1", "1:1", "2:1", "2:1"] + [
        "1:2",
        "1:2",
        "2:2",
        "2:2",
    ]
    assert design.groups["klass:school"].nunique() == 4


def test_interaction_grouping_factor(nested):
    design = parse_glmm_formula("y ~ x + (1 | school:klass)", nested)
    assert design.random_effects == {"school:klass": "1"}
    assert list(design.groups["school:klass"]) == ["1:1", "1:1", "1:2", "1:2"] + [
        "2:1",
        "2:1",
        "2:2",
        "2:2",
    ]


def test_float_group_labels_print_like_r(nested):
    df = nested.astype({"school": float, "klass": float})
    design = parse_glmm_formula("y ~ x + (1 | school:klass)", df)
    assert design.groups["school:klass"].iloc[0] == "1:1"


def test_a_slope_absent_from_the_fixed_part_is_a_random_only_column(long):
    # lme4 fits y ~ treatment + (1 + time | id) (a random slope without a fixed one)
    design = parse_glmm_formula("y ~ treatment + (1 + time | id)", long)
    assert design.random_only_columns == ("time",)
    assert design.random_effects == {"id": "1 + time"}
    np.testing.assert_array_equal(design.X["time"], long["time"])


# ---------------------------------------------------------------------------
# response, offset, missing values
# ---------------------------------------------------------------------------


def test_cbind_response():
    df, _ = make_longitudinal(trials=6, n_groups=5, random_state=0)
    df["failures"] = df["trials"] - df["y"]
    design = parse_glmm_formula("cbind(y, failures) ~ time + (1 | id)", df)
    pd.testing.assert_series_equal(design.y, df["y"])
    np.testing.assert_array_equal(design.trials, df["trials"])
    assert design.trials.name == "trials"


@pytest.mark.parametrize("offset", ["0.5 * log(n)", "log(n) / 2", "log(n) * 0.5 + 0"])
def test_an_offset_is_one_expression(long, offset):
    # a product with a number is R's arithmetic, not a scaled formula term
    df = long.assign(n=np.arange(1, len(long) + 1))
    design = parse_glmm_formula(f"y ~ time + offset({offset}) + (1 | id)", df)
    np.testing.assert_allclose(design.offset, 0.5 * np.log(df["n"]), rtol=1e-15)
    m = glmer(f"y ~ time + offset({offset}) + (1 | id)", df, family="binomial")
    np.testing.assert_allclose(
        m.predict(df.iloc[:4], type="link", re_form="NA"),
        m.fixed_effects_["estimate"].iloc[0]
        + m.fixed_effects_["estimate"].iloc[1] * df["time"].iloc[:4]
        + 0.5 * np.log(df["n"].iloc[:4]),
        rtol=1e-12,
    )


def test_offsets_are_summed(long):
    df = long.assign(n=np.arange(1, len(long) + 1), m=2.0)
    design = parse_glmm_formula("y ~ time + offset(log(n)) + offset(m) + (1 | id)", df)
    np.testing.assert_allclose(design.offset, np.log(df["n"]) + 2.0)
    assert list(design.X.columns) == ["time"]


def test_rows_with_missing_values_are_dropped(long):
    df = long.copy()
    df.index = df.index + 100  # labels, not positions, are recorded
    df.loc[101, "time"] = np.nan
    df.loc[105, "y"] = np.nan
    df.loc[110, "id"] = np.nan
    df["unused"] = 1.0
    df.loc[120, "unused"] = np.nan  # not in the formula: kept
    design = parse_glmm_formula("y ~ time + treatment + (1 | id)", df)
    assert list(design.dropped_rows) == [101, 105, 110]
    assert len(design.X) == len(design.y) == len(design.groups) == len(df) - 3
    assert 120 in design.X.index


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, match",
    [
        ("y ~ time + treatment", "no random-effect term"),
        ("~ time + (1 | id)", "response ~ terms"),
        ("y ~ time + (1 | id | treatment)", "Cannot read the random-effect term"),
        ("y ~ time + (1 | factor(id))", "must be column names"),
        ("y ~ time - (1 | id)", "Cannot subtract"),
        ("y ~ time + (1 | )", "both sides"),
        ("y ~ time + (1 | id", "Unbalanced"),
        ("y ~ time + (1 | nosuchcolumn)", "not columns of data"),
    ],
)
def test_unsupported_syntax(long, formula, match):
    with pytest.raises(ValueError, match=match):
        parse_glmm_formula(formula, long)


@pytest.mark.parametrize(
    "formula, repeated",
    [
        ("y ~ time + (1 + time | id) + (1 | id)", "repeat the intercept in"),
        ("y ~ time + (time | id) + (1 + time | id)", "repeat the intercept, 'time' in"),
        ("y ~ time + (1 | id) + (0 + time | id) + (0 + time | id)", "repeat 'time' in"),
    ],
)
def test_overlapping_terms_on_one_factor(long, formula, repeated):
    # (lme4 fits the column twice, two variances the data cannot tell apart); the
    # message names what is repeated
    with pytest.raises(ValueError, match=repeated):
        parse_glmm_formula(formula, long)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(family="gaussian"), ValueError),
        (dict(family="poisson", ziformula="~ (1 | id)"), NotImplementedError),
        (dict(family="binomial", ziformula="~1"), NotImplementedError),
    ],
)
def test_glmer_rejects_family_and_ziformula(long, kwargs, error):
    with pytest.raises(error):
        glmer("y ~ time + (1 | id)", long, **kwargs)


def test_missing_formulaic_says_how_to_install(monkeypatch, long):
    monkeypatch.setitem(sys.modules, "formulaic", None)
    with pytest.raises(ImportError, match=r"pip install sklearn_glmm\[formula\]"):
        parse_glmm_formula("y ~ time + (1 | id)", long)


# ---------------------------------------------------------------------------
# FormulaTransformer and design_matrix
# ---------------------------------------------------------------------------


def test_formula_transformer(veg):
    transformer = FormulaTransformer("y ~ trt * sex + (1 | id)").fit(veg)
    names = ["trttreat", "sexmale", "trttreat:sexmale"]
    assert list(transformer.get_feature_names_out()) == names
    assert transformer.fit_intercept_
    # levels learnt in fit: a new frame with one level still gets every column
    new = veg[veg["trt"] == "control"].head(3)
    out = transformer.transform(new)
    assert list(out.columns) == names and (out["trttreat"] == 0).all()
    assert list(out.index) == list(new.index)
    rhs_only = FormulaTransformer("trt * sex").fit(veg)
    pd.testing.assert_frame_equal(rhs_only.transform(veg), transformer.transform(veg))
    assert clone(transformer).get_params() == {"formula": "y ~ trt * sex + (1 | id)"}
    with pytest.raises(TypeError, match="DataFrame"):
        transformer.transform(veg.to_numpy())


def test_formula_transformer_refuses_an_offset_it_cannot_pass_on():
    from sklearn_glmm import PoissonGLMM

    rng = np.random.default_rng(8)
    df = pd.DataFrame({"x": rng.normal(size=300), "g": rng.integers(0, 20, 300)})
    df["expo"] = rng.uniform(1, 9, 300)
    df["y"] = rng.poisson(df["expo"] * np.exp(-1.2 + 0.3 * df["x"]))
    formula = "y ~ x + offset(log(expo)) + (1 | g)"
    with pytest.raises(ValueError, match=r"offset\(log\(expo\)\) cannot reach the estimator"):
        FormulaTransformer(formula).fit(df)
    # what the message says: the offset to the estimator's fit, as glmer reads it
    pipe = make_pipeline(FormulaTransformer("y ~ x + (1 | g)"), PoissonGLMM())
    pipe.fit(df, df["y"], poissonglmm__groups=df["g"], poissonglmm__offset=np.log(df["expo"]))
    ref = glmer(formula, df, family="poisson")
    np.testing.assert_allclose(pipe[-1].coef_, ref.coef_, rtol=1e-6)


def test_a_formula_without_intercept_needs_the_estimator_without_one():
    """make_pipeline(FormulaTransformer('y ~ x - 1 ...'), PoissonGLMM()) fitted an
    intercept the formula leaves out (another model, silently); now refused until the
    estimator's fit_intercept follows, and then it is glmer's model."""
    from sklearn_glmm import PoissonGLMM

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.normal(size=300), "g": rng.integers(0, 20, 300)})
    df["y"] = rng.poisson(np.exp(0.8 + 0.3 * df["x"]))
    formula = "y ~ x - 1 + (1 | g)"
    pipe = make_pipeline(FormulaTransformer(formula), PoissonGLMM())
    with pytest.raises(ValueError, match="formula has no intercept.*fit_intercept=False"):
        pipe.fit(df, df["y"], poissonglmm__groups=df["g"])
    pipe.set_params(poissonglmm__fit_intercept=False)
    pipe.fit(df, df["y"], poissonglmm__groups=df["g"])
    ref = glmer(formula, df, family="poisson")
    np.testing.assert_allclose(pipe[-1].coef_, ref.coef_, rtol=1e-6)
    assert pipe[-1].intercept_ == 0.0
    # with the intercept in the formula, either setting of the estimator is the caller's
    make_pipeline(FormulaTransformer("y ~ x + (1 | g)"), PoissonGLMM(fit_intercept=False)).fit(
        df, df["y"], poissonglmm__groups=df["g"]
    )


def test_formula_transformer_in_pipeline(veg):
    pipe = make_pipeline(FormulaTransformer("trt * sex"), LogisticRegression())
    pipe.fit(veg, veg["y"])
    assert pipe.predict_proba(veg.head(4)).shape == (4, 2)
    assert list(pipe[:-1].get_feature_names_out()) == ["trttreat", "sexmale", "trttreat:sexmale"]
    as_pandas = FormulaTransformer("trt * sex").set_output(transform="pandas").fit(veg)
    assert list(as_pandas.transform(veg).columns) == list(pipe[:-1].get_feature_names_out())


def test_design_matrix_new_level_raises(veg):
    design = parse_glmm_formula("y ~ trt * sex + (1 | id)", veg)
    new = veg.head(2).assign(trt=["treat", "placebo"])
    with pytest.raises(ValueError, match=r"\{'placebo'\} not seen in fit"):
        design_matrix(design.model_spec, new)


def test_missing_values_inside_stateful_transforms_drop_rows(long):
    df = long.copy()
    df.loc[[1, 4], "time"] = np.nan
    design = parse_glmm_formula("y ~ poly(time, 2) + center(treatment) + (1 | id)", df)
    assert list(design.dropped_rows) == [1, 4]
    df.loc[7, "treatment"] = np.nan
    assert list(
        parse_glmm_formula("y ~ poly(time, 2) + center(treatment) + (1 | id)", df).dropped_rows
    ) == [1, 4, 7]


@pytest.mark.parametrize(
    "rhs",
    ["time + treatment - treatment", "time - treatment", "time + time:treatment - time:treatment"],
)
def test_variables_of_removed_terms_drop_their_missing_rows(long, rhs):
    # R's model frame reads every variable the formula writes (lme4: nobs 46 of 48)
    df = long.copy()
    df.loc[[2, 9], "treatment"] = np.nan
    design = parse_glmm_formula(f"y ~ {rhs} + (1 | id)", df)
    assert list(design.dropped_rows) == [2, 9]
    assert "treatment" not in design.X.columns


def test_a_column_named_as_a_called_function(long):
    df = long.assign(log=np.arange(len(long)) % 3, time1=long["time"] + 1.0)
    # read as a variable where no call has its name, as R reads it
    design = parse_glmm_formula("y ~ log + I(log * 2) + (1 | id)", df)
    assert list(design.X.columns) == ["log", "I(log * 2)"]
    # R reads log() as the function, and a column of that name the formula does not
    # read is left aside (formulaic read the column: "not callable")
    for rhs in ["log(time1)", "treatment:log(time1)", "factor(treatment, levels = c(1, 0))"]:
        with_column = parse_glmm_formula(f"y ~ {rhs} + (1 | id)", df.assign(c=1.0))
        without = parse_glmm_formula(f"y ~ {rhs} + (1 | id)", df.drop(columns="log"))
        pd.testing.assert_frame_equal(with_column.X, without.X)
    # a name both read as a variable and called: a clear error
    with pytest.raises(ValueError, match="column named 'log'.*reads as a variable and also"):
        parse_glmm_formula("y ~ log + log(time1) + (1 | id)", df)
    # a fitted model given new data with such a column (not a variable of the model)
    design = parse_glmm_formula("y ~ log(time1) + (1 | id)", df.drop(columns="log"))
    new = df.iloc[[0, 5]]
    pd.testing.assert_frame_equal(design_matrix(design.model_spec, new), design.X.loc[new.index])
    # and the offset() terms' functions
    m = glmer("y ~ time + offset(log(time1)) + (1 | id)", df.drop(columns="log"), family="binomial")
    new = df.iloc[:6].drop(columns="log")
    expected = m.predict(new, type="link")
    shadows = new.assign(log=2.0, I=3.0)
    np.testing.assert_array_equal(m.predict(shadows, type="link"), expected)


def test_r_elementwise_functions(long):
    from scipy.special import expit, logit, ndtr, ndtri

    df = long.assign(u=np.linspace(0.05, 0.95, len(long)), v=np.linspace(-2.5, 3.5, len(long)))
    rhs = (
        "pmin(v, 1) + pmax(v, 0, u) + floor(v) + ceiling(v) + round(v) + round(v, 1) + "
        "trunc(v) + sign(v) + plogis(v) + qlogis(u) + pnorm(v) + qnorm(u) + expm1(u) + cos(v)"
    )
    X = parse_glmm_formula(f"y ~ {rhs} + (1 | id)", df).X
    v, u = df["v"].to_numpy(), df["u"].to_numpy()
    expected = [
        np.minimum(v, 1),
        np.maximum(np.maximum(v, 0), u),
        np.floor(v),
        np.ceil(v),
        np.round(v),
        np.round(v, 1),
        np.trunc(v),
        np.sign(v),
        expit(v),
        logit(u),
        ndtr(v),
        ndtri(u),
        np.expm1(u),
        np.cos(v),
    ]
    assert list(X.columns)[:2] == ["pmin(v, 1)", "pmax(v, 0, u)"]
    np.testing.assert_allclose(X.to_numpy(), np.column_stack(expected), rtol=1e-15)
    # R rounds halves to even (IEC 60559); with digits, the nearer decimal
    from sklearn_glmm._formula_functions import _round

    r = pd.read_csv(Path(__file__).parent / "fixtures" / "r_round" / "round.csv", dtype=str)
    x = r["x"].astype(float).to_numpy()
    for d in (0, 1, 2, 3, -1, -2):
        np.testing.assert_array_equal(_round(x, d), r[f"d{d}"].astype(float).to_numpy())
    half = long.assign(h=np.resize([0.5, 1.5, 2.5, -0.5], len(long)))
    h = parse_glmm_formula("y ~ round(h) + (1 | id)", half).X["round(h)"]
    np.testing.assert_array_equal(h.to_numpy()[:4], [0.0, 2.0, 2.0, -0.0])


def test_design_matrix_on_new_data(veg):
    design = parse_glmm_formula("y ~ trt * sex + (1 | id)", veg)
    new = veg.iloc[[3, 0, 17]]
    pd.testing.assert_frame_equal(design_matrix(design.model_spec, new), design.X.loc[new.index])


# ---------------------------------------------------------------------------
# glmer: arguments handed to the estimator (a stand-in records them)
# ---------------------------------------------------------------------------


class _Recorder:
    """Stands in for an estimator class and records how it is built and fitted."""

    def __init__(self, **params):
        self.params = params

    def fit(self, X, y, groups=None, **fit_params):
        self.fit_args = dict(X=X, y=y, groups=groups, **fit_params)
        return self


@pytest.fixture()
def recorder(monkeypatch):
    # glmer builds the classes of sklearn_glmm._formula_model
    from sklearn_glmm import _formula_model

    for name in ("BinomialGLMM", "PoissonGLMM", "NegBinGLMM"):
        monkeypatch.setattr(_formula_model, name, type(name, (_Recorder,), {}))
    return _formula_model


def test_glmer_builds_and_fits_estimator(recorder, long):
    df = long.assign(w=np.linspace(1, 2, len(long)))
    df.loc[2, "time"] = np.nan
    est = glmer("y ~ time + treatment + (1 + time | id)", df, n_agq=1, weights="w", max_iter=50)
    assert type(est).__name__ == "BinomialGLMM"
    assert est.params == {
        "random_effects": {"id": "1 + time"},
        "n_agq": 1,
        "fit_intercept": True,
        "max_iter": 50,
    }
    assert list(est.fit_args["X"].columns) == ["time", "treatment"]
    assert len(est.fit_args["y"]) == len(df) - 1
    np.testing.assert_allclose(est.fit_args["sample_weight"], df["w"].drop(index=2))
    assert est.fit_args["offset"] is None and "trials" not in est.fit_args
    assert est.formula_ == "y ~ time + treatment + (1 + time | id)"
    assert est.design_info_ is not None


def test_glmmtmb_zero_inflated_negbin(recorder, long):
    est = glmmTMB("y ~ time + offset(log(time + 1)) + (1 | id)", long, "nbinom2", ziformula="~1")
    assert type(est).__name__ == "NegBinGLMM"
    assert est.params["zero_inflation"] is True
    np.testing.assert_allclose(est.fit_args["offset"], np.log(long["time"] + 1))


def test_glmer_cbind_passes_trials(recorder):
    df, _ = make_longitudinal(trials=4, n_groups=6, random_state=0)
    df["fail"] = df["trials"] - df["y"]
    est = glmer("cbind(y, fail) ~ time + (1 | id)", df, weights=np.ones(len(df)))
    np.testing.assert_array_equal(est.fit_args["trials"], df["trials"])
    with pytest.raises(ValueError, match="family='binomial'"):
        glmer("cbind(y, fail) ~ time + (1 | id)", df, family="poisson")


# ---------------------------------------------------------------------------
# glmer with the real estimators (skipped until they exist)
# ---------------------------------------------------------------------------


def test_glmer_matches_hand_built_estimator():
    est_mod = pytest.importorskip("sklearn_glmm.estimators")
    df, _ = make_longitudinal(n_groups=80, random_state=3)
    fitted = glmer("y ~ time + treatment + (1 | id)", df, family="binomial")
    manual = est_mod.BinomialGLMM(random_effects={"id": "1"}).fit(
        df[["time", "treatment"]], df["y"], groups=df[["id"]]
    )
    np.testing.assert_allclose(fitted.coef_, manual.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fitted.intercept_, manual.intercept_, rtol=1e-6, atol=1e-8)


def test_glmer_coefficients_carry_r_names():
    pytest.importorskip("sklearn_glmm.estimators")
    df, _ = make_vegetables(random_state=0, n_subjects=120)
    fitted = glmer("y ~ trt * sex + (1 | id)", df, family="binomial")
    assert list(fitted.fixed_effects_.index) == [
        "(Intercept)",
        "trttreat",
        "sexmale",
        "trttreat:sexmale",
    ]
    assert list(fitted.feature_names_in_) == ["trttreat", "sexmale", "trttreat:sexmale"]
    X_new = design_matrix(fitted.design_info_, df.head(4))
    assert list(X_new.columns) == list(fitted.feature_names_in_)


def test_glmmtmb_poisson_matches_hand_built_estimator():
    est_mod = pytest.importorskip("sklearn_glmm.estimators")
    df, _ = make_longitudinal("poisson", n_groups=60, re_sd=0.5, random_state=4)
    fitted = glmmTMB("y ~ time + treatment + (1 | id)", df, family="poisson")
    manual = est_mod.PoissonGLMM(random_effects={"id": "1"}).fit(
        df[["time", "treatment"]], df["y"], groups=df[["id"]]
    )
    np.testing.assert_allclose(fitted.coef_, manual.coef_, rtol=1e-6, atol=1e-8)


def _r_frame_data(seed=7, n_groups=30, per=12):
    """Binary outcomes with a three-level factor, a logical and a numeric predictor."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    n = len(g)
    f = rng.choice(["lo", "mid", "hi"], n)
    b = rng.random(n) < 0.5
    x = rng.normal(size=n)
    eta = -0.3 + 0.5 * (f == "mid") - 0.4 * (f == "hi") + 0.6 * x - 0.5 * b * x
    eta = eta + rng.normal(0, 0.7, n_groups)[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "f": f, "b": b, "x": x, "g": g})


def _quiet_glmer(formula, data, **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmer(formula, data, family="binomial", **kw)


def test_factor_with_levels_raises_for_values_outside_them():
    # R turns a value outside factor(x, levels = ...) into NA and drops its row; the
    # rows were kept here, coded as the reference level
    d = _r_frame_data()
    with pytest.raises(ValueError, match=r"values \['hi'\] that are not among the levels"):
        glmer("y ~ factor(f, levels = c('mid', 'lo')) + (1 | g)", d, family="binomial")
    kept = d[d["f"] != "hi"]
    m = _quiet_glmer("y ~ factor(f, levels = c('mid', 'lo')) + (1 | g)", kept)
    assert m.nobs_ == len(kept)


def test_relevel_sets_the_reference_level_as_r():
    # relevel(f, ref = "mid"): the levels in their order with "mid" first (R's model)
    d = _r_frame_data()
    a = _quiet_glmer("y ~ relevel(f, ref = 'mid') + x + (1 | g)", d)
    b = _quiet_glmer("y ~ factor(f, levels = c('mid', 'hi', 'lo')) + x + (1 | g)", d)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.fixed_effects_.index[1:3].str.endswith(("hi", "lo")).all()
    # the levels are the fitting data's: new data with one level predicts as the fit
    one = d[d["f"] == "lo"].head(3)
    np.testing.assert_allclose(a.predict_proba(one), b.predict_proba(one))
    # a numeric factor's level given as text, and a categorical's order kept
    h = _quiet_glmer("y ~ relevel(factor(k), ref = '3') + (1 | g)", d.assign(k=d["x"].gt(0) + 2))
    assert list(h.fixed_effects_.index)[1].endswith("2")
    cat = pd.Categorical(d["f"], categories=["mid", "lo", "hi"])
    c = _quiet_glmer("y ~ relevel(fc, ref = 'hi') + x + (1 | g)", d.assign(fc=cat))
    assert [n.split(")")[-1] for n in c.fixed_effects_.index[1:3]] == ["mid", "lo"]
    with pytest.raises(ValueError, match=r"'placebo' is not a level of the factor"):
        glmer("y ~ relevel(f, ref = 'placebo') + (1 | g)", d, family="binomial")


def test_unused_categories_are_dropped_as_r_drops_unused_levels():
    # an unused first category was the reference level (other contrasts under R's
    # names), an unused one an all-zero column (aliased; a variance for a random slope)
    d = _r_frame_data()
    used = pd.Categorical(d["f"], categories=["lo", "mid", "hi"])
    unused = pd.Categorical(d["f"], categories=["none", "lo", "mid", "never", "hi"])
    a = _quiet_glmer("y ~ fc + x + (1 | g)", d.assign(fc=used))
    b = _quiet_glmer("y ~ fc + x + (1 | g)", d.assign(fc=unused))
    assert list(b.fixed_effects_.index) == ["(Intercept)", "fcmid", "fchi", "x"]
    pd.testing.assert_frame_equal(a.fixed_effects_, b.fixed_effects_)
    a = _quiet_glmer("y ~ fc + diag(fc | g)", d.assign(fc=used))
    b = _quiet_glmer("y ~ fc + diag(fc | g)", d.assign(fc=unused))
    assert b.random_effects == a.random_effects
    assert b.aic_ == pytest.approx(a.aic_, abs=1e-8)
    # the caller's data keep their categories
    frame = d.assign(fc=unused)
    _quiet_glmer("y ~ fc + x + (1 | g)", frame)
    assert list(frame["fc"].cat.categories) == ["none", "lo", "mid", "never", "hi"]


@pytest.mark.parametrize("lhs", ["f", "b", "x + f"])
def test_double_bar_with_a_factor_is_lme4s_model_in_glmer_and_glmmtmbs_in_glmmtmb(lhs):
    # lme4 reads (f || g) of a factor as (1 | g) + (0 + f | g), a correlated block over
    # every level; glmer fitted glmmTMB's diag(f | g) under lme4's formula (2-3 fewer
    # covariance parameters, log-likelihood 0.4-1.2 below lme4's), then raised; now it
    # fits lme4's blocks (tests/test_term_blocks.py has them against lme4). glmmTMB's
    # reading is diag(f | g), and glmmTMB() fits it; a numeric slope is the same in both
    d = _r_frame_data()
    m = _quiet_glmer(f"y ~ x + f + b + ({lhs} || g)", d)
    expanded = " + ".join(["(1 | g)"] + [f"(0 + {t.strip()} | g)" for t in lhs.split("+")])
    assert m.random_effects == _quiet_glmer(f"y ~ x + f + b + {expanded}", d).random_effects
    assert m.fit_result_.factors[0].term.blocks  # (a factor's levels: a block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = glmmTMB(f"y ~ x + f + b + ({lhs} || g)", d, family="binomial")
    d_ = _quiet_glmer(f"y ~ x + f + b + diag({lhs} | g)", d)
    assert t.random_effects == d_.random_effects
    assert t.loglik_ == d_.loglik_
    assert _quiet_glmer("y ~ x + (x || g)", d).random_effects == {"g": "diag(1 + x)"}


def test_logical_columns_are_factors_with_levels_false_and_true():
    # R's model matrix codes a logical as a factor: 0 + b has a column per level and
    # b:x a slope per level; as a 0/1 number they gave other models
    d = _r_frame_data()
    s = d.assign(b=np.where(d["b"], "TRUE", "FALSE"))  # the same factor as strings
    for formula, names in [
        ("y ~ 0 + b + x + (1 | g)", ["bFALSE", "bTRUE", "x"]),
        ("y ~ b:x + (1 | g)", ["(Intercept)", "bFALSE:x", "bTRUE:x"]),
        ("y ~ x * b + (1 | g)", ["(Intercept)", "x", "bTRUE", "x:bTRUE"]),
    ]:
        m = _quiet_glmer(formula, d)
        ref = _quiet_glmer(formula, s)
        assert list(m.fixed_effects_.index) == names
        pd.testing.assert_frame_equal(m.fixed_effects_, ref.fixed_effects_)
        new = d.head(8).assign(b=d["b"].head(8).astype("boolean"))  # nullable logical
        np.testing.assert_allclose(m.predict_proba(new), ref.predict_proba(s.head(8)))
    assert d["b"].dtype == bool  # the caller's column is unchanged


def test_formula_transformer_reads_factors_as_glmer():
    # fit and transform code logicals and unused categories as glmer does
    X = pd.DataFrame(
        {
            "b": [True, False, True, False],
            "x": [1.0, 2.0, 3.0, 4.0],
            "fc": pd.Categorical(["a", "b", "a", "b"], categories=["z", "a", "b"]),
        }
    )
    t = FormulaTransformer("0 + b + x + fc").fit(X)
    assert list(t.get_feature_names_out()) == ["bFALSE", "bTRUE", "x", "fcb"]
    np.testing.assert_array_equal(t.transform(X)["bTRUE"], [1.0, 0.0, 1.0, 0.0])


def test_factor_slopes_without_intercept_beside_the_fixed_contrasts():
    # (0 + f | g) has a column per level; the fixed part's contrasts leave the reference
    # level's out, which the term reads as its own (it raised, naming y ~ 0 + f + ...,
    # the same model with the fixed part reparametrised)
    d = _r_frame_data()
    m = _quiet_glmer("y ~ f + (0 + f | g)", d)
    assert m.random_effects == {"g": "0 + fhi + flo + fmid"}
    assert m.random_only_columns == ["fhi"]
    same = _quiet_glmer("y ~ 0 + f + (0 + f | g)", d)
    assert same.random_effects == {"g": "0 + fhi + flo + fmid"}
    assert m.loglik_ == pytest.approx(same.loglik_, abs=1e-6)


def test_r_coercions_raise_with_what_to_write():
    # as.factor(k) was a bare SyntaxError from formulaic (as is a Python keyword)
    d = _r_frame_data().assign(k=lambda f: f["g"] % 3)
    with pytest.raises(ValueError, match=r"as\.factor\(\).*write factor\(x\)"):
        glmer("y ~ as.factor(k) + (1 | g)", d, family="binomial")
    with pytest.raises(ValueError, match=r"as\.numeric\(\)"):
        glmer("y ~ as.numeric(b) + (1 | g)", d, family="binomial")


def test_contrasts_named_as_in_r_c_function():
    # C(f, sum) was an IndexError (formulaic read `sum` as Python's builtin) and
    # C(f, helmert) a NameError; R's C() reads a bare name as contr.<name>
    import pickle

    from sklearn_glmm import BinomialGLMM

    d = _r_frame_data()
    short = _quiet_glmer("y ~ C(f, sum) + x + (1 | g)", d)
    full = _quiet_glmer("y ~ C(f, contr.sum) + x + (1 | g)", d)
    assert list(short.fixed_effects_.index) == [
        "(Intercept)",
        "C(f, contr.sum)1",
        "C(f, contr.sum)2",
        "x",
    ]
    np.testing.assert_array_equal(short.fixed_effects_["estimate"], full.fixed_effects_["estimate"])
    # R's codings, built by hand (levels hi < lo < mid): sum-to-zero and Helmert
    levels = ["hi", "lo", "mid"]
    codings = {
        "sum": np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]),
        "helmert": np.array([[-1.0, -1.0], [1.0, -1.0], [0.0, 2.0]]),
    }
    for name, coding in codings.items():
        m = _quiet_glmer(f"y ~ C(f, {name}) + x + (1 | g)", d)
        hand = coding[d["f"].map(levels.index).to_numpy()]
        X = pd.DataFrame({"c1": hand[:, 0], "c2": hand[:, 1], "x": d["x"]})
        ref = BinomialGLMM().fit(X, d["y"], groups=d["g"])
        np.testing.assert_allclose(
            m.fixed_effects_["estimate"].to_numpy(),
            ref.fixed_effects_["estimate"].to_numpy(),
            rtol=1e-6,
            atol=1e-8,
        )
        assert m.fixed_effects_.index[1:3].tolist() == [
            f"C(f, contr.{name})1",
            f"C(f, contr.{name})2",
        ]
    for name, first in [("poly", "C(f, contr.poly).L"), ("SAS", "C(f, contr.SAS)hi")]:
        assert _quiet_glmer(f"y ~ C(f, {name}) + (1 | g)", d).fixed_effects_.index[1] == first
    # a fitted model with R-named contrasts pickles and predicts the same
    again = pickle.loads(pickle.dumps(short))
    np.testing.assert_array_equal(
        again.predict(d.head(20), type="link"), short.predict(d.head(20), type="link")
    )


def test_r_contrast_names_rewrites_only_c_calls():
    from sklearn_glmm._formula_text import _r_contrast_names

    assert _r_contrast_names("x + C(f,sum):x + C(h, helmert)") == (
        "x + C(f, contr.sum):x + C(h, contr.helmert)"
    )
    assert _r_contrast_names("C(factor(f, levels=c('a', 'b')), poly)") == (
        "C(factor(f, levels=c('a', 'b')), contr.poly)"
    )
    for text in ["C(f)", "C(f, contr.sum)", "xC(f, sum)", "sum + C(f, other)"]:
        assert _r_contrast_names(text) == text


def test_polars_data_fit_and_predict_as_pandas(long):
    # pd.DataFrame(polars_frame) lost the column names: glmer and clmm failed on polars
    pl = pytest.importorskip("polars")
    from sklearn_glmm.formula import clmm

    pdf = pl.from_pandas(long)
    m_pl = _quiet_glmer("y ~ time + treatment + (1 | id)", pdf)
    m_pd = _quiet_glmer("y ~ time + treatment + (1 | id)", long)
    np.testing.assert_array_equal(m_pl.coef_, m_pd.coef_)
    np.testing.assert_array_equal(
        m_pl.predict_proba(pl.from_pandas(long.head(5))), m_pd.predict_proba(long.head(5))
    )
    ordered = long.assign(
        r=pd.Categorical(
            np.where(long["y"] > 0, "yes", "no"), categories=["yes", "no"], ordered=True
        )
    )
    # polars' own ordered categorical is the Enum (from_pandas makes an unordered one)
    enum = pl.from_pandas(ordered).with_columns(pl.col("r").cast(pl.Enum(["yes", "no"])))
    o_pl = _quiet(clmm, "r ~ time + (1 | id)", enum)
    o_pd = _quiet(clmm, "r ~ time + (1 | id)", ordered)
    assert list(o_pl.class_order_) == list(o_pd.class_order_) == ["yes", "no"]
    np.testing.assert_array_equal(o_pl.coef_, o_pd.coef_)
    ft = FormulaTransformer("time * treatment")
    pd.testing.assert_frame_equal(ft.fit(pdf).transform(pdf), ft.fit(long).transform(long))


def _quiet(fun, *args, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kwargs)


RANDOM_ONLY = Path(__file__).parent / "fixtures" / "random_only_terms"


@pytest.fixture(scope="module")
def random_only_terms():
    return pd.read_csv(RANDOM_ONLY / "data.csv"), json.loads((RANDOM_ONLY / "ref.json").read_text())


def test_a_factors_own_columns_in_a_random_term_beside_the_fixed_contrasts(random_only_terms):
    # y ~ x + fr + (0 + fr | g), lme4's usual per-level effects: the term needs the
    # reference level's column, which the fixed part (intercept and contrasts) has not;
    # it raised "must also appear as fixed effects" with a rewrite as 0 + fr
    d, ref = random_only_terms
    m = _quiet(glmer, "y ~ x + fr + (0 + fr | g)", d, family="binomial")
    r = ref["m1"]
    assert m.random_only_columns == ["frapple"]
    assert m.loglik_ >= r["loglik"] - 1e-6  # lme4's; glmmTMB's Hessian not positive definite
    fe = m.fixed_effects_["estimate"]
    assert list(fe.index) == list(r["fixef"])
    np.testing.assert_allclose(fe, list(r["fixef"].values()), atol=5e-3)
    sd = np.sqrt(np.diag(m.random_effects_cov_["g"].to_numpy()))
    np.testing.assert_allclose(sd, r["sd"], atol=5e-3)
    # new data: the term's columns rebuilt from the fitted levels (R's predict)
    np.testing.assert_allclose(m.predict(d.head(5), type="response"), r["predict"], atol=2e-3)
    np.testing.assert_allclose(
        m.predict(d.iloc[::-1], type="response")[::-1], m.predict(d, type="response")
    )


@pytest.mark.parametrize("case", ["m2", "m3"])
def test_random_terms_reading_columns_the_fixed_part_lacks(random_only_terms, case):
    # m2: a random slope of x without a fixed x (lme4); m3: glmmTMB's diag(0 + f | g)
    # beside the fixed intercept and contrasts of f
    d, ref = random_only_terms
    if case == "m2":
        m = _quiet(glmer, "y ~ fr + (1 + x | g)", d, family="binomial")
    else:
        m = _quiet(glmmTMB, "cnt ~ x + f + diag(0 + f | g)", d, family="poisson")
    r = ref[case]
    assert m.loglik_ == pytest.approx(r["loglik"], abs=1e-5)
    np.testing.assert_allclose(m.fixed_effects_["estimate"], list(r["fixef"].values()), atol=1e-3)
    sd = np.sqrt(np.diag(m.random_effects_cov_["g"].to_numpy()))
    np.testing.assert_allclose(sd, r["sd"], atol=1e-3)


def test_clmm_refuses_random_only_columns(random_only_terms):
    from sklearn_glmm.formula import clmm

    d, _ = random_only_terms
    d = d.assign(r=pd.Categorical(d.cnt.clip(0, 3)))
    with pytest.raises(NotImplementedError, match=r"clmm: .*\(\['x'\]\)"):
        clmm("r ~ fr + (1 + x | g)", d)


def test_population_predictions_do_without_what_only_random_effects_read():
    # cnt ~ f + (1 + x | g): with re_form=NA a row missing x was NaN and data without x
    # raised; lme4's predict(m, new, type = "response", re.form = NA) on these data
    # (x of the first row NA): 1.742072 1.742072 1.475221 1.446368
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"g": np.repeat(np.arange(15), 12), "x": rng.normal(size=180)})
    d["f"] = rng.choice(["a", "b", "c"], 180)
    u = rng.normal(0, 0.4, 15)[d.g]
    d["cnt"] = rng.poisson(np.exp(0.3 + 0.3 * (d.f == "b") + u * (1 + 0.5 * d.x)))
    m = _quiet(glmer, "cnt ~ f + (1 + x | g)", d, family="poisson")
    new = d.head(4).copy()
    new.loc[new.index[0], "x"] = np.nan
    lme4 = [1.742072, 1.742072, 1.475221, 1.446368]
    np.testing.assert_allclose(m.predict(new, type="response", re_form="NA"), lme4, rtol=5e-4)
    np.testing.assert_allclose(
        m.predict(new.drop(columns="x"), type="response", re_form="NA"), lme4, rtol=5e-4
    )
    # conditional on the groups x is needed: NaN for its row (R: na.pass), as before
    assert np.isnan(m.predict(new, type="response")[0])
    with pytest.raises(ValueError, match=r"lack the formula's variable\(s\) \['x'\]"):
        m.predict(new.drop(columns="x"), type="response")


def test_factor_levels_holding_plus_or_minus_in_terms():
    # level columns such as "age18-30" and "trtdrug+" are one name each in random-effect,
    # zero-inflation and dispersion terms (they were split at "-" and "+"); the same model
    # as with levels renamed
    rng = np.random.default_rng(11)
    n = 400
    df = pd.DataFrame(
        {
            "age": rng.choice(["18-30", "31-40", "41+"], n),
            "g": rng.integers(0, 20, n),
            "x": rng.normal(size=n),
        }
    )
    mu = np.exp(0.5 + 0.3 * df["x"] + df["age"].map({"18-30": 0.0, "31-40": 0.4, "41+": -0.3}))
    df["y"] = rng.poisson(mu) * (rng.uniform(size=n) > 0.2)
    plain = df.assign(age=df["age"].map({"18-30": "a", "31-40": "b", "41+": "c"}))
    for call in [
        lambda d: glmer("y ~ x + age + (age | g)", d, family="poisson"),
        lambda d: glmmTMB("y ~ x + age + (1 | g)", d, family="poisson", ziformula="~age"),
        lambda d: glmmTMB("y ~ x + age + (1 | g)", d, family="nbinom2", dispformula="~age"),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            odd, ref = call(df), call(plain)
        np.testing.assert_allclose(odd.loglik_, ref.loglik_, rtol=1e-9)
    # the estimators read R's backquotes around such a name
    from sklearn_glmm import PoissonGLMM

    X = pd.get_dummies(df[["x", "age"]], drop_first=True, dtype=float)
    quoted = PoissonGLMM(random_effects="1 + `age_41+`", zero_inflation="1 + `age_31-40`")
    named = PoissonGLMM(random_effects="1 + age_41+", zero_inflation="1 + age_31-40")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quoted.fit(X, df["y"], groups=df["g"])
    assert list(quoted.random_effects_cov_["g"].columns) == ["(Intercept)", "age_41+"]
    with pytest.raises(ValueError):
        named.fit(X, df["y"], groups=df["g"])
    # and clmm's scale formula
    from sklearn_glmm.formula import clmm

    lat = 0.5 * df["x"] + rng.normal(0, 1, 20)[df["g"]] + rng.logistic(size=n)
    df["r"] = pd.Categorical(np.digitize(lat * np.where(df["age"] == "41+", 2.0, 1.0), [-1, 0, 1]))
    plain["r"] = df["r"]
    odd = _quiet_fit(clmm, "r ~ x + (1 | g)", df, scale="~age")
    ref = _quiet_fit(clmm, "r ~ x + (1 | g)", plain, scale="~age")
    np.testing.assert_allclose(odd.loglik_, ref.loglik_, rtol=1e-9)


def _quiet_fit(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("lhs", ["I(y > 5)", "y > 5", "I((y > 5) & (x > -9))"])
def test_a_logical_outcome_is_true_for_success(lhs):
    # R's glmer(I(y > 5) ~ ...): TRUE is a success (a predictor's I(x > 5) is a factor)
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"x": rng.normal(size=300), "g": rng.integers(0, 15, 300)})
    df["y"] = rng.poisson(np.exp(1.6 + 0.4 * df["x"]))
    m = _quiet_fit(glmer, f"{lhs} ~ x + (1 | g)", df, family="binomial")
    ref = _quiet_fit(
        glmer, "hi ~ x + (1 | g)", df.assign(hi=(df["y"] > 5).astype(int)), family="binomial"
    )
    np.testing.assert_allclose(m.loglik_, ref.loglik_, rtol=1e-12)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-10)


def test_ifelse_as_r():
    rng = np.random.default_rng(6)
    df = pd.DataFrame({"x": rng.uniform(1, 5, 300), "g": rng.integers(0, 15, 300)})
    df["y"] = rng.binomial(1, 1 / (1 + np.exp(-(df["x"] - 3))))
    numeric = _quiet_fit(glmer, "y ~ ifelse(x > 3, 1, 0) + (1 | g)", df, family="binomial")
    ref = _quiet_fit(
        glmer, "y ~ hi + (1 | g)", df.assign(hi=(df["x"] > 3) * 1.0), family="binomial"
    )
    np.testing.assert_allclose(numeric.loglik_, ref.loglik_, rtol=1e-12)
    # text values are a factor with R's levels ("old" the reference)
    text = _quiet_fit(glmer, "y ~ ifelse(x > 3, 'young', 'old') + (1 | g)", df, family="binomial")
    assert text.fixed_effects_.index[-1].endswith("young")
    np.testing.assert_allclose(text.loglik_, ref.loglik_, rtol=1e-9)
    # new data holding one of the two values
    full = text.predict(df, type="link")
    few = df["x"] > 3
    np.testing.assert_allclose(text.predict(df[few], type="link"), full[few.to_numpy()], rtol=1e-12)


def test_r_spellings_of_the_elementwise_functions():
    # (lme4 on these data: the same log-likelihoods and names; checked in R 4.2.2)
    rng = np.random.default_rng(9)
    df = pd.DataFrame({"x": rng.uniform(1, 5, 300), "g": rng.integers(0, 15, 300)})
    df["y"] = rng.binomial(1, 1 / (1 + np.exp(-(df["x"] - 3))))
    X = parse_glmm_formula(
        "y ~ sin(2*pi*x/12) + pnorm(x, 3, 2) + plogis(x, location=1) + "
        "qnorm(pnorm(x, mean=3, sd=2)) + (1 | g)",
        df,
    ).X
    x = df["x"].to_numpy()
    from scipy.special import expit, ndtr

    np.testing.assert_allclose(X["sin(2 * pi * x/12)"], np.sin(2 * np.pi * x / 12), rtol=1e-15)
    np.testing.assert_allclose(X["pnorm(x, 3, 2)"], ndtr((x - 3) / 2), rtol=1e-15)
    np.testing.assert_allclose(X["plogis(x, location = 1)"], expit(x - 1), rtol=1e-15)
    np.testing.assert_allclose(X["qnorm(pnorm(x, mean = 3, sd = 2))"], (x - 3) / 2, rtol=1e-12)
    # ifelse() of TRUE/FALSE is logical (a FALSE/TRUE factor), of text and numbers text
    hi = df.assign(hi=df["x"] > 3)
    ref = _quiet_fit(glmer, "y ~ hi + (1 | g)", hi, family="binomial")
    for rhs, name in [
        ("ifelse(x > 3, TRUE, FALSE)", "ifelse(x > 3, TRUE, FALSE)TRUE"),
        ("ifelse(x > 3, 'a', 1)", 'ifelse(x > 3, "a", 1)a'),
    ]:
        m = _quiet_fit(glmer, f"y ~ {rhs} + (1 | g)", df, family="binomial")
        assert list(m.fixed_effects_.index) == ["(Intercept)", name]
        np.testing.assert_allclose(m.loglik_, ref.loglik_, rtol=1e-10)


@pytest.mark.parametrize(
    "levels",
    [
        ["a", "O'Neil", "Zed"],
        ["a", "don't", "zed"],
        ["a", "x)", "z"],
        ["a", "b(", "c"],
        ["a", "b`c", "d"],
    ],
)
def test_factor_levels_with_quotes_or_brackets_in_terms(levels):
    # a level's apostrophe, bracket or backquote is part of one name in a term's sum (the
    # sum was cut there: "fO'Neil + fZed" read as one name)
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame(
        {"f": rng.choice(levels, n), "g": rng.integers(0, 15, n), "x": rng.normal(size=n)}
    )
    df["y"] = rng.poisson(np.exp(0.3 + 0.3 * df["x"]))
    plain = df.assign(f=df["f"].map(dict(zip(levels, ["a", "b", "c"]))))
    for call in [
        lambda d: glmer("y ~ x + f + (f | g)", d, family="poisson"),
        lambda d: glmmTMB("y ~ x + f + (1 | g)", d, family="poisson", ziformula="~f + x"),
    ]:
        np.testing.assert_allclose(
            _quiet_fit(call, df).loglik_, _quiet_fit(call, plain).loglik_, rtol=1e-9
        )


def test_r_precedence_of_and_against_comparisons():
    # R: x > 0 & k > 1 is (x > 0) & (k > 1); Python read x > (0 & k) > 1 (an error), and
    # with integers a == (1 & b), another column
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=200),
            "k": rng.integers(0, 4, 200),
            "b": rng.integers(0, 2, 200),
            "g": rng.integers(0, 10, 200),
            "y": rng.integers(0, 2, 200),
        }
    )
    X = parse_glmm_formula("y ~ I(x > 0 & k > 1) + I(k == 1 & b) + (1 | g)", df).X
    assert list(X.columns) == ["I(x > 0 & k > 1)TRUE", "I(k == 1 & b)TRUE"]
    np.testing.assert_array_equal(X.iloc[:, 0], ((df["x"] > 0) & (df["k"] > 1)).astype(float))
    np.testing.assert_array_equal(X.iloc[:, 1], ((df["k"] == 1) & (df["b"] != 0)).astype(float))
