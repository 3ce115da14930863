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
from scipy import special
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM, formula
from sklearn_glmm._base import NoRandomEffectsWarning
from sklearn_glmm.datasets import make_longitudinal
from sklearn_glmm.exceptions import SingularFitWarning
from sklearn_glmm.model_selection import pointwise_log_likelihood

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:boundary \\(singular\\) fit"),
]


def _quiet(fun, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kwargs)


# -- a small data set fitted with lme4 ------------------------------------------------------
# 30 patients x 4 visits, 0/1 outcome from a simulated logistic model. In R:
#
#   library(lme4)
#   bits <- paste0(
#     "011101110110000010000011010101110101010101001001011001010001101100101101000000110000",
#     "100100100111111100110000000100001110"
#   )
#   d <- data.frame(pid = rep(1:30, each = 4), time = rep(0:3, 30))
#   d$treatment <- ifelse(d$pid %% 2 == 0, "drug", "control")
#   levs <- c("none or mild", "moderate or severe")
#   d$outcome <- factor(levs[as.integer(strsplit(bits, "")[[1]]) + 1], levels = levs)
BITS = (
    "011101110110000010000011010101110101010101001001011001010001101100101101000000110000"
    "100100100111111100110000000100001110"
)
LEVELS = ["none or mild", "moderate or severe"]


@pytest.fixture(scope="module")
def visits():
    d = pd.DataFrame({"pid": np.repeat(np.arange(1, 31), 4), "time": np.tile(np.arange(4), 30)})
    d["treatment"] = np.where(d["pid"] % 2 == 0, "drug", "control")
    bit = np.array([int(b) for b in BITS])
    d["outcome"] = pd.Categorical([LEVELS[b] for b in bit], categories=LEVELS)
    d["answer"] = np.where(bit == 1, "Yes", "no")
    d["severe"] = bit == 1
    return d


@pytest.fixture(scope="module")
def binary():
    df, _ = make_longitudinal("binomial", n_groups=40, random_state=0)
    return df[["time", "treatment"]], df["y"], df["id"], df


# =========================================================================================
# 1. R's formula operators
# =========================================================================================


@pytest.fixture()
def small():
    return pd.DataFrame(
        {
            "y": [0, 1, 1, 0, 1, 0, 1, 1, 0, 1],
            "time": [0, 1, 2, 3, 4] * 2,
            "b": [1.0, 2, 3, 4, 5] * 2,
            "n": np.arange(1, 11),
            "a": list("abcab") * 2,
            "g": list("xxyyx") * 2,
            "id": np.repeat([1, 2], 5),
        }
    )


def test_caret_inside_I_is_a_power_not_xor(small):
    design = formula.parse_glmm_formula("y ~ time + I(time^2) + (1 | id)", small)
    assert list(design.X.columns) == ["time", "I(time^2)"]  # R's name
    # Python's ^ gave 2, 3, 0, 1, 6 (time XOR 2)
    np.testing.assert_array_equal(design.X["I(time^2)"][:5], [0, 1, 4, 9, 16])
    python_style = formula.parse_glmm_formula("y ~ time + I(time**2) + (1 | id)", small)
    pd.testing.assert_frame_equal(python_style.X, design.X)


def test_caret_is_a_power_in_every_evaluated_expression(small):
    design = formula.parse_glmm_formula(
        "I(y^2) ~ time + I(time^2) + log(b^2) + offset(log(n^2)) + (I(time^2) | id)", small
    )
    np.testing.assert_allclose(design.X["log(b^2)"], 2 * np.log(small["b"]))
    np.testing.assert_allclose(design.offset, 2 * np.log(small["n"]))
    assert design.random_effects == {"id": "1 + I(time^2)"}
    np.testing.assert_array_equal(design.y, small["y"])


def test_caret_outside_I_crosses_terms_as_in_r(small):
    # R: colnames(model.matrix(~ (time + b)^2)) is time, b, time:b
    design = formula.parse_glmm_formula("y ~ (time + b)^2 + (1 | id)", small)
    assert list(design.X.columns) == ["time", "b", "time:b"]
    np.testing.assert_array_equal(design.X["time:b"], small["time"] * small["b"])
    # a single variable crossed with itself is itself (R too); it warns
    with pytest.warns(UserWarning, match=r"write I\(time\^2\) for the power"):
        single = formula.parse_glmm_formula("y ~ time^2 + (1 | id)", small)
    assert list(single.X.columns) == ["time"]


def test_poly_is_r_poly_on_the_data_and_on_new_data():
    # x <- c(0.5, 1.3, 2.0, 2.2, 3.7, 4.1, 5.9, 7.4); p <- poly(x, 3)
    # print(unclass(p)[, ], digits = 15); print(predict(p, c(1, 6, 10)), digits = 15)
    r_fit = np.array(
        [
            [-0.4620813334726667, 0.535324748815587, -0.4820405903298863],
            [-0.3340587995235298, 0.144120200598582, 0.1634103258009893],
            [-0.2220390823180347, -0.113800772259587, 0.3594837448018937],
            [-0.1900334488307504, -0.173026820476485, 0.3658322571960489],
            [0.0500088023238817, -0.412292022654778, -0.0195954095715296],
            [0.1140200692984502, -0.415018852576514, -0.1808577451770705],
            [0.4020707706840087, -0.109045104316156, -0.5632861993070033],
            [0.6421130218386409, 0.543738622869350, 0.3570536165865583],
        ]
    )
    r_new = np.array(
        [
            [-0.382067249754456, 0.278767190918286, -0.0193292706594772],
            [0.418073587427651, -0.076777256748017, -0.5487371110460778],
            [1.058186257173336, 2.531918847920453, 7.4020376866270841],
        ]
    )
    x = np.array([0.5, 1.3, 2.0, 2.2, 3.7, 4.1, 5.9, 7.4])
    df = pd.DataFrame({"x": x, "y": [0, 1, 1, 0, 1, 0, 1, 1], "id": [1, 1, 2, 2, 3, 3, 4, 4]})
    design = formula.parse_glmm_formula("y ~ poly(x, 3) + (1 | id)", df)
    assert list(design.X.columns) == ["poly(x, 3)1", "poly(x, 3)2", "poly(x, 3)3"]
    np.testing.assert_allclose(design.X, r_fit, rtol=1e-12, atol=1e-14)
    new = formula.design_matrix(design.model_spec, pd.DataFrame({"x": [1.0, 6.0, 10.0]}))
    np.testing.assert_allclose(new, r_new, rtol=1e-12, atol=1e-14)
    # poly(x, 2, raw = TRUE): powers, columns numbered 1 and 2 as in R
    raw = formula.parse_glmm_formula("y ~ poly(x, 2, raw=TRUE) + (1 | id)", df)
    assert [c[-1] for c in raw.X.columns] == ["1", "2"]
    np.testing.assert_allclose(raw.X, np.column_stack([x, x**2]))


def test_log_scale_and_factor_mean_what_r_means(small):
    # R: model.matrix(~ log(b, 2) + scale(b) + scale(b, center = FALSE), df)[1:5, -1]
    design = formula.parse_glmm_formula(
        "y ~ log(b, 2) + scale(b) + scale(b, center=FALSE) + (1 | id)", small
    )
    np.testing.assert_allclose(design.X.iloc[:5, 0], [0, 1, 1.584963, 2, 2.321928], atol=1e-6)
    np.testing.assert_allclose(
        design.X.iloc[:5, 1], [-1.3416408, -0.6708204, 0, 0.6708204, 1.3416408], atol=1e-7
    )
    np.testing.assert_allclose(
        design.X.iloc[:5, 2], [0.2860388, 0.5720776, 0.8581163, 1.1441551, 1.4301939], atol=1e-7
    )
    # factor(a, levels = c("c", "a", "b")): "c" is the reference level
    ref = formula.parse_glmm_formula("y ~ factor(a, levels=c('c', 'a', 'b')) + (1 | id)", small)
    assert [c[-1] for c in ref.X.columns] == ["a", "b"]
    no_intercept = formula.parse_glmm_formula("y ~ time + 0 + (1 | id)", small)
    assert not no_intercept.fit_intercept and list(no_intercept.X.columns) == ["time"]


@pytest.mark.parametrize(
    "rhs, match",
    [
        (".", r"R's '\.' \(every other column of data\)"),
        ("time + .", r"R's '\.'"),
    ],
)
def test_r_operators_formulaic_reads_differently_raise(small, rhs, match):
    with pytest.raises(ValueError, match=match):
        formula.parse_glmm_formula(f"y ~ {rhs} + (1 | id)", small)


def test_glmer_squared_term_matches_lme4(visits):
    # m <- glmer(outcome ~ treatment + I(time^2) + (1 | pid), data = d, family = binomial)
    # fixef(m): -1.2510673002 0.9783086946 0.1421605450; VarCorr: 0.150198969
    # logLik: -76.22345672
    m = _quiet(formula.glmer, "outcome ~ treatment + I(time^2) + (1 | pid)", visits)
    fe = m.fixed_effects_["estimate"]
    assert list(fe.index) == ["(Intercept)", "treatmentdrug", "I(time^2)"]
    np.testing.assert_allclose(fe, [-1.2510673002, 0.9783086946, 0.1421605450], atol=2e-4)
    assert m.random_effects_cov_["pid"].iloc[0, 0] == pytest.approx(0.150198969, abs=2e-4)
    assert m.loglik_ == pytest.approx(-76.22345672, abs=1e-4)


def test_glmer_poly_term_matches_lme4(visits):
    # d$tf <- d$time + 0.5
    # m <- glmer(outcome ~ treatment + poly(tf, 2) + (1 | pid), data = d, family = binomial)
    # fixef(m): -0.7826255487 1.0004128637 6.3135169644 -1.4497518609
    df = visits.assign(tf=visits["time"] + 0.5)
    m = _quiet(formula.glmer, "outcome ~ treatment + poly(tf, 2) + (1 | pid)", df)
    fe = m.fixed_effects_["estimate"]
    assert list(fe.index) == ["(Intercept)", "treatmentdrug", "poly(tf, 2)1", "poly(tf, 2)2"]
    np.testing.assert_allclose(
        fe, [-0.7826255487, 1.0004128637, 6.3135169644, -1.4497518609], atol=2e-3
    )


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
    assert glm.fit_result_.factors == [] and glm.random_effects is None


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
# 3. the class a binomial model describes
# =========================================================================================
def test_pos_label_default_is_classes_1_and_is_named(binary):
    X, y, ids, _ = binary
    labels = np.where(y == 1, "Yes", "no")  # "Yes" < "no": upper case sorts first
    m = _quiet(BinomialGLMM().fit, X, labels, groups=ids)
    assert m.classes_.tolist() == ["Yes", "no"] and m.pos_label_ == "no"
    assert " Modelled: P(y = 'no')" in str(m.summary())
    assert "The model describes P(y = 'no')." in m.report()
    ci = m.confint()
    assert ci.attrs["modelled"] == "P(y = 'no')"
    assert "Modelled: P(y = 'no')" in str(ci)
    for yy, pos in [(y.to_numpy(), 1), (y.to_numpy() == 1, True)]:
        fitted = _quiet(BinomialGLMM().fit, X, yy, groups=ids)
        assert fitted.pos_label_ == pos and fitted.pos_label_ == fitted.classes_[1]
        assert f"P(y = {pos!r})" in str(fitted.summary())


def test_pos_label_flips_the_coefficients_not_the_predictions(binary):
    X, y, ids, _ = binary
    labels = np.where(y == 1, "Yes", "no")
    no = _quiet(BinomialGLMM().fit, X, labels, groups=ids)
    yes = _quiet(BinomialGLMM(pos_label="Yes").fit, X, labels, groups=ids)
    reference = _quiet(BinomialGLMM().fit, X, y, groups=ids)  # 1 = "Yes"
    assert yes.pos_label_ == "Yes" and yes.classes_.tolist() == ["Yes", "no"]
    np.testing.assert_allclose(yes.coef_, reference.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(no.coef_, -reference.coef_, rtol=1e-5, atol=1e-7)
    assert "Modelled: P(y = 'Yes')" in str(yes.summary())
    # predictions follow classes_, whichever class is modelled
    np.testing.assert_allclose(yes.predict_proba(X), no.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(yes.decision_function(X), no.decision_function(X), atol=1e-5)
    np.testing.assert_array_equal(yes.predict(X), no.predict(X))
    np.testing.assert_allclose(yes.predict_mean(X), 1 - no.predict_mean(X), atol=1e-6)
    for name in ("neg_log_loss", "roc_auc", "accuracy"):
        scorer = get_scorer(name)
        assert scorer(yes, X, labels) == pytest.approx(scorer(no, X, labels), abs=1e-6)
    np.testing.assert_allclose(
        pointwise_log_likelihood(yes, X, labels, groups=ids),
        pointwise_log_likelihood(no, X, labels, groups=ids),
        atol=1e-6,
    )


def test_pos_label_must_be_a_class(binary):
    X, y, ids, _ = binary
    with pytest.raises(ValueError, match=r"pos_label='yes' is not one of the classes"):
        BinomialGLMM(pos_label="yes").fit(X, np.where(y == 1, "Yes", "no"), groups=ids)


def test_glmer_categorical_outcome_models_the_second_level_as_lme4(visits):
    # m <- glmer(outcome ~ treatment * time + (1 | pid), data = d, family = binomial)
    # fixef(m): -1.1212528867 0.2143205899 0.2538834471 0.5130244817
    # VarCorr(m)$pid: 0.2018326506; logLik(m): -74.4380602
    # lme4 models P(outcome = "moderate or severe"), every level but the first.
    m = _quiet(formula.glmer, "outcome ~ treatment * time + (1 | pid)", visits)
    assert m.pos_label_ == "moderate or severe"
    assert m.classes_.tolist() == ["moderate or severe", "none or mild"]  # sorted
    fe = m.fixed_effects_["estimate"]
    lme4 = [-1.1212528867, 0.2143205899, 0.2538834471, 0.5130244817]
    assert list(fe.index) == ["(Intercept)", "treatmentdrug", "time", "treatmentdrug:time"]
    assert np.array_equal(np.sign(fe), np.sign(lme4))
    np.testing.assert_allclose(fe, lme4, atol=2e-4)
    assert m.random_effects_cov_["pid"].iloc[0, 0] == pytest.approx(0.2018326506, abs=2e-4)
    assert m.loglik_ == pytest.approx(-74.4380602, abs=1e-4)
    assert "Modelled: P(outcome = 'moderate or severe')" in str(m.summary())


def test_glmer_string_and_logical_outcomes(visits):
    # String levels sorted as R sorts them (its collation, even in C.UTF-8; Python's
    # order, upper case first, is R's only under LC_COLLATE = "C"):
    # d$answer <- ifelse(bits == 1, "Yes", "no"); levels(factor(d$answer)): "no" "Yes"
    # fixef(glmer(factor(answer) ~ treatment * time + (1 | pid), d, family = binomial)):
    # those of the categorical outcome above (the same rows are successes); under
    # LC_COLLATE = "C" R models "no": 1.1212396075 -0.2142943055 -0.2538812974 ...
    m = _quiet(formula.glmer, "answer ~ treatment * time + (1 | pid)", visits)
    assert m.pos_label_ == "Yes"
    np.testing.assert_allclose(
        m.fixed_effects_["estimate"],
        [-1.1212528867, 0.2143205899, 0.2538834471, 0.5130244817],
        atol=2e-4,
    )
    assert "Modelled: P(answer = 'Yes')" in str(m.summary())
    # a logical outcome models TRUE (R too)
    logical = _quiet(formula.glmer, "severe ~ treatment * time + (1 | pid)", visits)
    assert logical.pos_label_ is np.True_ or logical.pos_label_ is True
    np.testing.assert_allclose(
        logical.fixed_effects_["estimate"],
        [-1.1212528867, 0.2143205899, 0.2538834471, 0.5130244817],
        atol=2e-4,
    )
    # an explicit pos_label wins over the level order
    yes = _quiet(formula.glmer, "outcome ~ time + (1 | pid)", visits, pos_label="none or mild")
    assert yes.pos_label_ == "none or mild"


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
    with pytest.warns(UserWarning, match=r"12 group label\(s\) .* written another way"):
        np.testing.assert_allclose(m.predict(X, groups=padded), m.predict(X))
    # new groups of the fitted kind (cross-validation's) are not warned of
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(X, groups=ids + 100)


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
# 6. the null model
# =========================================================================================
def test_glmer_null_model_matches_lme4(visits):
    # m0 <- glmer(outcome ~ 1 + (1 | pid), data = d, family = binomial)
    # fixef(m0): -0.2484285698; VarCorr(m0)$pid: 0.235030812; logLik: -82.07830093
    m = _quiet(formula.glmer, "outcome ~ 1 + (1 | pid)", visits)
    assert m.coef_.shape == (0,) and list(m.fixed_effects_.index) == ["(Intercept)"]
    assert m.intercept_ == pytest.approx(-0.2484285698, abs=2e-4)
    assert m.random_effects_cov_["pid"].iloc[0, 0] == pytest.approx(0.235030812, abs=2e-4)
    assert m.loglik_ == pytest.approx(-82.07830093, abs=1e-4)
    new = formula.design_matrix(m.design_info_, visits.iloc[:3])
    assert new.shape == (3, 0)
    assert m.predict_proba(new, groups=visits["pid"].iloc[:3]).shape == (3, 2)


@pytest.mark.parametrize("empty", ["frame", "array"])
def test_estimator_without_feature_columns_fits_an_intercept(visits, empty):
    X = visits[[]] if empty == "frame" else np.empty((len(visits), 0))
    y = visits["outcome"].cat.codes
    m = _quiet(BinomialGLMM().fit, X, y, groups=visits["pid"])
    assert m.intercept_ == pytest.approx(-0.2484285698, abs=2e-4)
    assert m.n_features_in_ == 0
    assert m.predict_proba(X[:4], groups=visits["pid"][:4]).shape == (4, 2)
    by_column = _quiet(BinomialGLMM(group_columns="pid").fit, visits[["pid"]], y)
    assert by_column.intercept_ == pytest.approx(m.intercept_, abs=1e-8)
    # without groups, no feature column is scikit-learn's error
    with pytest.raises(ValueError, match=r"0 feature\(s\).*pass groups"):
        BinomialGLMM().fit(X, y)


# =========================================================================================
# 7. parameter validation
# =========================================================================================
@pytest.mark.parametrize(
    "est, match",
    [
        (BinomialGLMM(fit_intercept="no"), "'fit_intercept' parameter"),
        (PoissonGLMM(zero_inflation=0.5), "'zero_inflation' parameter"),
        (NegBinGLMM(zero_inflation=1), "'zero_inflation' parameter"),
        (BinomialGLMM(tol=-1.0), "'tol' parameter"),
        (BinomialGLMM(max_iter=0), "'max_iter' parameter"),
        (BinomialGLMM(n_agq=0), "'n_agq' parameter"),
        (BinomialGLMM(n_agq=51), "'n_agq' parameter"),
        (BinomialGLMM(n_agq=True), "'n_agq' parameter"),
        (BinomialGLMM(random_effects=1), "'random_effects' parameter"),
        (BinomialGLMM(group_columns=3), "'group_columns' parameter"),
        (BinomialGLMM(pos_label=[1]), "'pos_label' parameter"),
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


# -- the fitted model's training outcome is its own ----------------------------------------
# A float outcome is read in place while fitting (no copy of the rows' size); the fitted
# model then keeps a copy, so that reusing the array afterwards (a simulation loop
# writing each replicate into one buffer, say) does not change the fitted model's
# profiles, refits or residuals.


@pytest.mark.parametrize("Est", [PoissonGLMM, BinomialGLMM])
def test_changing_the_callers_outcome_after_fit_changes_nothing(Est):
    from sklearn_glmm.inference import confint

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(25), 8)
    X = rng.normal(size=(200, 1))
    eta = 0.3 * X[:, 0] + rng.normal(0, 0.6, 25)[g]
    if Est is PoissonGLMM:
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(200) < 1 / (1 + np.exp(-eta))).astype(float)
    original = y.copy()
    m = _quiet(Est().fit, X, y, groups=g)
    np.testing.assert_array_equal(y, original)  # not written while fitting
    assert y.flags.writeable
    assert not np.shares_memory(m.fit_result_.train["y"], y)
    assert not np.shares_memory(m.fit_result_.objective.data.y, y)
    before = _quiet(confint, m, method="profile")
    y[:] = y[::-1]  # the caller reuses its array
    after = _quiet(confint, m, method="profile")
    pd.testing.assert_frame_equal(before, after)


def test_binary_outcome_read_in_place_only_when_it_is_the_0_1_outcome():
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(25), 8)
    X = rng.normal(size=(200, 1))
    y = (rng.random(200) < 1 / (1 + np.exp(-X[:, 0] - rng.normal(0, 0.5, 25)[g]))).astype(float)
    ref = _quiet(BinomialGLMM().fit, X, y, groups=g)
    for labels, pos_label, sign in [(2.0 * y, None, 1.0), (y, 0.0, -1.0), (y - 1.0, None, 1.0)]:
        m = _quiet(BinomialGLMM(pos_label=pos_label).fit, X, labels, groups=g)
        assert m.loglik_ == pytest.approx(ref.loglik_, rel=1e-10)
        np.testing.assert_allclose(m.coef_, sign * ref.coef_, rtol=1e-7)
        assert set(np.unique(m.fit_result_.train["y"])) == {0.0, 1.0}


def test_uncorrelated_slope_of_an_uncentred_variable_is_warned_about():
    # diag(1 + year): the slope column is nearly collinear with the intercept's, and an
    # uncorrelated pair is not the same model once the variable is shifted; the fit can
    # end at a local optimum far below the best one, so the specification is named
    from sklearn_glmm.exceptions import IdentifiabilityWarning

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 10)
    year = np.tile(np.arange(2010, 2020), 30).astype(float)
    y = rng.poisson(np.exp(0.5 + 0.05 * (year - 2015) + rng.normal(0, 0.3, 30)[g]))
    X = pd.DataFrame({"year": year})
    with pytest.warns(IdentifiabilityWarning, match="'year'.*far from zero.*Centre"):
        PoissonGLMM(random_effects="diag(1 + year)").fit(X, y, groups=g)
    for re, Xc in (("diag(1 + year)", X - X.mean()), ("1 + year", X)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", IdentifiabilityWarning)
            PoissonGLMM(random_effects=re).fit(Xc, y, groups=g)


# -- several grouping factors at predict time: matched by name -----------------------------
def _two_factor_fit():
    rng = np.random.default_rng(3)
    n = 400
    school, rater = rng.integers(0, 8, n), rng.integers(0, 8, n)  # shared label sets
    x = rng.normal(size=n)
    eta = 0.5 + 0.3 * x + rng.normal(0, 0.8, 8)[school] + rng.normal(0, 0.5, 8)[rater]
    y = rng.poisson(np.exp(eta))
    G = pd.DataFrame({"school": school, "rater": rater})
    X = pd.DataFrame({"x": x})
    return PoissonGLMM().fit(X, y, groups=G), X, G, y


def test_group_columns_at_predict_are_matched_by_name_not_position():
    # the columns in another order gave each row the other factor's random effect
    m, X, G, _ = _two_factor_fit()
    new = X.head(6)
    expected = np.exp(
        m.intercept_
        + new["x"].to_numpy() * m.coef_[0]
        + m.ranef_["school"].to_numpy()[G["school"].head(6), 0]
        + m.ranef_["rater"].to_numpy()[G["rater"].head(6), 0]
    )
    np.testing.assert_allclose(m.predict(new, G.head(6)), expected, rtol=1e-12)
    np.testing.assert_allclose(m.predict(new, G.head(6)[["rater", "school"]]), expected, rtol=1e-12)
    # arrays are read by position, as documented
    np.testing.assert_allclose(m.predict(new, G.head(6).to_numpy()), expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"not the fitted grouping factors \['school', 'rater'\]"):
        m.predict(new, G.head(6).rename(columns={"school": "a", "rater": "b"}))


def test_named_groups_at_predict_of_a_model_fitted_unnamed_warn():
    # fitted from an array (factors g0, g1): a named frame in another order was read by
    # position without a word, each row getting the other factor's random effects
    m, X, G, y = _two_factor_fit()
    ma = PoissonGLMM().fit(X, y, groups=G.to_numpy())
    new, g6 = X.head(6), G.head(6)
    expected = m.predict(new, g6)
    with pytest.warns(UserWarning, match=r"fitted from an array.*matched by position"):
        got = ma.predict(new, g6)
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # in the fit's order: right
    with pytest.warns(UserWarning, match="matched by position"):
        ma.predict(new, g6[["rater", "school"]])  # the silent case now warned about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(ma.predict(new, g6.to_numpy()), expected, rtol=1e-6)
        named = g6.set_axis(["g0", "g1"], axis=1)[["g1", "g0"]]  # the fit's names, reordered
        np.testing.assert_allclose(ma.predict(new, named), expected, rtol=1e-6)


def test_groups_and_group_columns_at_predict_raise_as_at_fit():
    _, X, G, y = _two_factor_fit()
    both = X.assign(school=G["school"], rater=G["rater"])
    mc = PoissonGLMM(group_columns=["school", "rater"]).fit(both, y)
    with pytest.raises(ValueError, match="either groups or group_columns"):
        mc.predict(both.head(3), G.head(3) + 100)


# -- binary links, trials and the score -----------------------------------------------------
def _binary_link_data(seed=4, n_groups=40, per=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=len(g))
    p = 1 - np.exp(-np.exp(-0.4 + 0.8 * x + rng.normal(0, 0.7, n_groups)[g]))
    return pd.DataFrame({"x": x}), rng.random(len(g)) < p, g


@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_decision_function_is_the_log_odds_for_every_link(link):
    # it was the linear predictor: with cloglog its sign disagreed with predict on a
    # fifth of the rows (eta = 0 is P = 0.632)
    X, y, g = _binary_link_data()
    m = _quiet(BinomialGLMM(link=link).fit, X, y, groups=g)
    p1 = m.predict_proba(X, g)[:, 1]
    d = m.decision_function(X, g)
    np.testing.assert_allclose(d, np.log(p1) - np.log1p(-p1), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(d > 0, m.predict(X, g) == m.classes_[1])


@pytest.mark.parametrize("link", ["logit", "cloglog"])
def test_decision_function_agrees_with_predict_on_new_groups(link):
    # it was the linear predictor at a random effect of zero, while predict and
    # predict_proba average over the random effects: with cloglog their signs disagreed
    # on new groups, and with random slopes roc_auc (which reads decision_function)
    # ranked new groups' rows otherwise than the probabilities
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(60), 10)
    t = rng.uniform(-2, 2, len(g))
    eta = -0.5 + 0.8 * t + rng.normal(0, 2, 60)[g] + rng.normal(0, 0.8, 60)[g] * t
    p = 1 - np.exp(-np.exp(eta)) if link == "cloglog" else special.expit(eta)
    y = rng.binomial(1, p)
    m = _quiet(
        BinomialGLMM(link=link, random_effects="1 + time").fit,
        pd.DataFrame({"time": t}),
        y,
        groups=g,
    )
    new = pd.DataFrame({"time": np.linspace(-6, 6, 121)})
    for groups in (None, np.full(121, 999)):
        d = m.decision_function(new, groups)
        p1 = m.predict_proba(new, groups)[:, 1]
        np.testing.assert_allclose(d, np.log(p1) - np.log1p(-p1), rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(d > 0, m.predict(new, groups) == m.classes_[1])
    # population="zero": lme4's re.form = NA, the log-odds at a random effect of zero
    eta0 = m.predict_interval(new, scale="link", population="zero")["fit"].to_numpy()
    zero = m.decision_function(new, population="zero")
    np.testing.assert_allclose(zero, m.fit_result_.family.link.log_odds(eta0), rtol=1e-12)
    if link == "cloglog":  # the case that disagreed: some rows change sign
        assert np.any((zero > 0) != (m.decision_function(new) > 0))


def test_new_groups_log_odds_stay_finite_and_exact_in_the_tails():
    # the averaged probability of a cloglog model rounds to 1 where the linear predictor
    # passes ~9: log(p) - log(1 - p) was +inf there (roc_auc then raised); in the tails
    # each of p and 1 - p is now averaged on the log scale, checked here by quadrature of
    # each integrand scaled by its peak (SDs narrow and wide: an adaptive rule for the
    # first, the wide rule's own nodes for the second, which a first version got wrong)
    from scipy import integrate, optimize

    from sklearn_glmm._engine.families import make_family
    from sklearn_glmm._engine.families.base import log_odds_over_normal

    def log_mean(log_f, eta, sd):
        def g(z):
            return log_f(eta + sd * z) - 0.5 * z * z

        peak = optimize.minimize_scalar(lambda z: -g(z), bounds=(-60, 60), method="bounded")
        top, at = -peak.fun, peak.x
        val, _ = integrate.quad(
            lambda z: np.exp(g(z) - top), -60, 60, points=sorted({0.0, at, -eta / sd}), limit=800
        )
        return top + np.log(val / np.sqrt(2 * np.pi))

    cases = [(-3.0, 0.7), (2.0, 1.0), (9.0, 2.0), (15.0, 1.0), (30.0, 3.0), (-60.0, 10.0)]
    for name in ("cloglog", "logit", "probit"):
        family = make_family("binomial", link=name)
        link = family.link
        for eta, sd in cases + [(-45.0, 5.0), (57.0, 10.0)]:
            with warnings.catch_warnings():
                # (p rounding to just above 1 made log1p(-p) warn, its row then recomputed)
                warnings.simplefilter("error", RuntimeWarning)
                got = log_odds_over_normal(family, np.array([eta]), np.array([sd * sd]))[0]
            want = log_mean(lambda e, k=link: k.log_probabilities(e)[0], eta, sd) - log_mean(
                lambda e, k=link: k.log_probabilities(e)[1], eta, sd
            )
            assert np.isfinite(got)
            assert got == pytest.approx(want, rel=1e-6, abs=1e-6), (name, eta, sd)
        # increasing in the linear predictor across the switch to the log scale
        grid = np.linspace(-70.0, -40.0, 301)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            scores = log_odds_over_normal(family, grid, np.full(301, 100.0))
        assert np.all(np.diff(scores) > 0), name


def test_cloglog_with_labels_says_which_class_it_models():
    X, y, g = _binary_link_data()
    labels = np.where(y, "event", "none")
    with pytest.warns(UserWarning, match=r"this fit models 'none'"):
        m = BinomialGLMM(link="cloglog").fit(X, labels, groups=g)
    assert m.pos_label_ == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        BinomialGLMM(link="cloglog", pos_label="event").fit(X, labels, groups=g)
        BinomialGLMM(link="logit").fit(X, labels, groups=g)  # symmetric: no warning
        BinomialGLMM(link="cloglog").fit(X, y.astype(int), groups=g)  # 0/1: no warning


def _trials_data(seed=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 6)
    x = rng.normal(size=len(g))
    t = rng.integers(1, 12, len(g)).astype(float)
    y = rng.binomial(t.astype(int), 1 / (1 + np.exp(-(0.2 + 0.6 * x + rng.normal(0, 0.8, 30)[g]))))
    return pd.DataFrame({"x": x}), y.astype(float), g, t


def test_proportions_with_trials_raise_and_fractional_successes_warn():
    X, y, g, t = _trials_data()
    with pytest.raises(ValueError, match="looks like proportions"):
        BinomialGLMM().fit(X, y / t, groups=g, trials=t)
    with pytest.warns(UserWarning, match="not a whole number"):
        _y = y.copy()
        _y[0] = min(t[0], _y[0] + 0.5) if _y[0] < t[0] else _y[0] - 0.5
        BinomialGLMM().fit(X, _y, groups=g, trials=t)


def test_score_of_a_trials_model_is_its_deviance_explained():
    # it was the accuracy of 0/1 labels against counts of successes
    X, y, g, t = _trials_data()
    m = BinomialGLMM().fit(X, y, groups=g, trials=t)
    with pytest.raises(ValueError, match="pass the rows' trials to score"):
        m.score(X, y, groups=g)
    p = m.predict_mean(X, g)
    from scipy import stats

    def deviance(q):
        ll = stats.binom.logpmf(y, t, q)
        sat = stats.binom.logpmf(y, t, y / t)
        return 2 * np.sum(sat - ll)

    expected = 1 - deviance(p) / deviance(np.full_like(p, y.sum() / t.sum()))
    assert m.score(X, y, groups=g, trials=t) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="fitted to 0/1 outcomes"):
        BinomialGLMM().fit(X, (y > 0).astype(int), groups=g).score(X, y > 0, groups=g, trials=t)


def test_the_outcome_as_a_column_of_x_raises():
    # a clone of a glmer() model is the plain estimator: cross-validating it on the raw
    # data frame fitted the outcome itself as a predictor
    from sklearn.base import clone

    df, _ = make_longitudinal("poisson", n_groups=20, random_state=2)
    m = _quiet(formula.glmer, "y ~ time + treatment + (1 | id)", df, family="poisson")
    with pytest.raises(ValueError, match="X holds the outcome column 'y'"):
        clone(m).fit(df, df["y"], groups=df["id"])
    with pytest.raises(ValueError, match="X holds the outcome column 'y'"):
        PoissonGLMM().fit(df[["time", "y"]], df["y"].astype(float), groups=df["id"])
    # a column that only shares the name is not the outcome
    other = df[["time"]].assign(y=np.arange(len(df)))
    _quiet(PoissonGLMM().fit, other, df["y"], groups=df["id"])


def test_predicting_without_the_offset_of_the_fit_warns():
    # cross-validation with routing off passes an offset to fit but not to score: the
    # scores were of predictions at exposure 1, silently
    df, _ = make_longitudinal("poisson", n_groups=20, random_state=5)
    off = np.log(np.random.default_rng(5).uniform(0.2, 20.0, len(df)))
    X = df[["time", "treatment"]]
    m = PoissonGLMM().fit(X, df["y"], groups=df["id"], offset=off)
    with pytest.warns(UserWarning, match="fitted with an offset, and these predictions have none"):
        m.predict(X, df["id"])
    with pytest.warns(UserWarning, match="fitted with an offset"):
        m.score(X, df["y"], groups=df["id"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        m.predict(X, df["id"], offset=off)
        m.predict(X, df["id"], offset=np.zeros(len(df)))  # said explicitly
        PoissonGLMM().fit(X, df["y"], groups=df["id"]).predict(X, df["id"])


def test_fitted_and_response_residuals_with_trials_are_rs_proportions():
    # R's fitted() of a cbind() model is the probability, its response residuals
    # y / n - p; they were the expected successes and y - n p
    X, y, g, t = _trials_data()
    m = BinomialGLMM().fit(X, y, groups=g, trials=t)
    p = m.predict_mean(X, g)
    np.testing.assert_allclose(m.fitted(), p, rtol=1e-12)
    np.testing.assert_allclose(m.residuals("response"), y / t - p, rtol=1e-12, atol=1e-15)
    pearson = (y - t * p) / np.sqrt(t * p * (1 - p))  # the same on either scale
    np.testing.assert_allclose(m.residuals("pearson"), pearson, rtol=1e-10)


def test_slips_in_groups_get_clear_messages():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "x": rng.normal(size=200),
            "id": np.repeat(np.arange(20), 10),
            "site": np.repeat(range(4), 50),
        }
    )
    y = rng.poisson(2, 200)
    with pytest.raises(
        ValueError, match=r"names columns of X: pass group_columns=\['id', 'site'\]"
    ):
        PoissonGLMM().fit(X, y, groups=["id", "site"])
    # fit(X, y, w) as scikit-learn's estimators take it: w were read as group labels
    with pytest.warns(UserWarning, match="fit's third argument is groups"):
        _quiet_but(UserWarning, PoissonGLMM().fit, X[["x"]], y, rng.uniform(0.5, 2.0, 200))
    with pytest.raises(ValueError, match="label-encoded as 0, 1"):
        BinomialGLMM(pos_label="yes").fit(X[["x"]], (y > 2).astype(int), groups=X["id"])


def _quiet_but(category, fun, *args, **kwargs):
    """``fun`` with every warning silenced except ``category``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", category)
        return fun(*args, **kwargs)


def _binary_frame(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 8)
    x = rng.normal(size=len(g))
    p = 1 / (1 + np.exp(-(0.2 + 0.8 * x + rng.normal(0, 1, 40)[g])))
    y = np.where(rng.random(len(g)) < p, "yes", "no")
    return pd.DataFrame({"x": x}), y, g


def test_a_fit_that_raises_leaves_the_estimator_as_it_was():
    # the new pos_label_ was set before the missing groups raised, and the old
    # coefficients then predicted the other class (P(yes) 0.44 -> 0.56)
    X, y, g = _binary_frame()
    m = BinomialGLMM().fit(X, y, groups=g)
    before = m.predict_proba(X, groups=g)
    with pytest.raises(ValueError, match="no groups"):
        m.set_params(pos_label="no", random_effects="1").fit(X, y)
    assert m.pos_label_ == "yes"
    np.testing.assert_array_equal(m.predict_proba(X, groups=g), before)


def test_a_refit_drops_the_family_parameters_of_the_previous_fit():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 10)
    X = pd.DataFrame({"x": rng.normal(size=len(g))})
    y = rng.negative_binomial(3, 3 / (3 + np.exp(0.5 + 0.3 * X.x + rng.normal(0, 0.4, 30)[g])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = NegBinGLMM().fit(X, y, groups=g)
        assert hasattr(m, "theta_")
        m.set_params(family="nbinom1").fit(X, y, groups=g)
    assert hasattr(m, "phi_") and not hasattr(m, "theta_")
    assert not hasattr(m, "theta_at_boundary_")


def test_one_grouping_factor_named_otherwise_at_predict_raises():
    # a frame of 'site' was read as the fitted 'id' (the sites' labels put on people)
    X, y, g = _binary_frame(2)
    G = pd.DataFrame({"id": g, "site": g % 7})
    m = BinomialGLMM().fit(X, y, groups=G[["id"]])
    with pytest.raises(ValueError, match="'site' is not the fitted grouping factor 'id'"):
        m.predict_proba(X, groups=G[["site"]])
    np.testing.assert_array_equal(
        m.predict_proba(X, groups=G[["id"]]), m.predict_proba(X, groups=G["id"])
    )
    unnamed = BinomialGLMM().fit(X, y, groups=g)  # fitted unnamed: read by position
    np.testing.assert_array_equal(
        unnamed.predict_proba(X, groups=G[["id"]]), unnamed.predict_proba(X, groups=g)
    )


def test_scorers_of_a_label_model_read_labels_whatever_trials_of_one_say():
    # with pos_label=0, trials of one made y successes of the other class (-1.22 for -0.50)
    from sklearn_glmm.model_selection import mean_log_likelihood

    X, y, g = _binary_frame(3)
    y01 = (y == "yes").astype(int)
    m = BinomialGLMM(pos_label=0).fit(X, y01, groups=g)
    plain = mean_log_likelihood(m, X, y01, groups=g)
    assert mean_log_likelihood(m, X, y01, groups=g, trials=np.ones(len(y01))) == plain
    with pytest.raises(ValueError, match="fitted to 0/1 outcomes without trials"):
        mean_log_likelihood(m, X, y01, groups=g, trials=np.full(len(y01), 2.0))


# =========================================================================================
# messy data frames in the formula front end
# =========================================================================================
def test_pandas_arguments_in_another_row_order_than_X_are_warned_of():
    # rows are read by position (as scikit-learn reads them): a frame sorted while y or
    # groups were not paired every row with another row's outcome or group, silently
    rng = np.random.default_rng(7)
    d = pd.DataFrame({"x": rng.normal(size=200), "id": rng.integers(0, 20, 200)})
    d["y"] = rng.poisson(np.exp(0.3 + 0.4 * d.x + 0.3 * (d.id % 3)))
    m = PoissonGLMM().fit(d[["x"]], d.y, groups=d.id)
    X_sorted = d[["x"]].sort_values("x")
    for name, call in (
        ("y", lambda: PoissonGLMM().fit(X_sorted, d.y, groups=d.id.loc[X_sorted.index])),
        ("groups", lambda: PoissonGLMM().fit(X_sorted, d.y.loc[X_sorted.index], groups=d.id)),
        ("groups", lambda: m.predict(X_sorted, groups=d.id)),
        ("offset", lambda: m.predict(X_sorted, groups=d.id.loc[X_sorted.index], offset=d.x)),
    ):
        with pytest.warns(UserWarning, match=rf"X and {name} hold the same row labels in another"):
            _quiet_but(UserWarning, call)
    with pytest.warns(UserWarning, match="X and y hold the same row labels"):  # score too
        m.score(X_sorted, d.y, groups=d.id.loc[X_sorted.index])
    # X an array: y, the first pandas argument, takes its place
    y_sorted = d.y.loc[X_sorted.index]
    with pytest.warns(UserWarning, match="y and groups hold the same row labels"):
        _quiet_but(UserWarning, PoissonGLMM().fit, X_sorted.to_numpy(), y_sorted, groups=d.id)
    # in X's order, as arrays, or with labels of their own (read by position): no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(X_sorted, groups=d.id.loc[X_sorted.index])
        m.predict(X_sorted, groups=d.id.to_numpy())
        m.predict(X_sorted, groups=d.id.set_axis(np.arange(1000, 1200)))
        # an X rebuilt with a fresh index 0, 1, ... (a transformer's array) says nothing
        # about which row is which: the data sorted by id, then X rebuilt, is in order
        s = d.sort_values("id")
        rebuilt = pd.DataFrame(s[["x"]].to_numpy() * 2.0, columns=["x"])
        m.score(rebuilt, s.y, groups=s.id)
    # such an X leaves y and groups to be compared with each other, as for an array
    with pytest.warns(UserWarning, match="y and groups hold the same row labels"):
        _quiet_but(UserWarning, PoissonGLMM().fit, rebuilt, s.y, groups=d.id)
    # repeated labels (two frames concatenated without ignore_index), X shuffled with y
    both = pd.concat([d.iloc[:100], d.iloc[100:].set_axis(np.arange(100))])
    mixed = both.sample(frac=1.0, random_state=0)
    with pytest.warns(UserWarning, match="X and groups hold the same row labels.*labels repeat"):
        _quiet_but(UserWarning, PoissonGLMM().fit, mixed[["x"]], mixed.y, groups=both.id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        PoissonGLMM().fit(mixed[["x"]], mixed.y, groups=mixed.id)


def test_a_formulas_weights_and_offset_in_another_row_order_are_warned_of():
    # glmer(weights=Series) and predict(newdata, offset=Series) pair rows by position
    # (as R's vectors): a Series in another order than the data gave other weights
    # (coefficient 0.42 against 0.39), silently; data's own index 0, 1, ... counts too
    d = _messy()
    w = pd.Series(np.where(d.x > 0, 2.0, 1.0), index=d.index)
    with pytest.warns(UserWarning, match="data and weights hold the same row labels"):
        _quiet_but(UserWarning, formula.glmer, "cnt ~ x + (1 | g)", d, "poisson", weights=w[::-1])
    m = _quiet(formula.glmer, "cnt ~ x + (1 | g)", d, family="poisson")
    new = d.sample(frac=1, random_state=1)
    with pytest.warns(UserWarning, match="data and offset hold the same row labels"):
        m.predict(new, offset=np.log(1.0 + d.x.abs()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _quiet_but(UserWarning, formula.glmer, "cnt ~ x + (1 | g)", d, "poisson", weights=w)
        m.predict(new, offset=np.log(1.0 + new.x.abs()))


def _scaled_x_passthrough():
    """``x`` scaled, the other columns passed through (as an array), then the model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["x"])], remainder="passthrough"),
        PoissonGLMM(),
    )


def test_a_grouping_factors_labels_among_the_predictors_are_warned_of():
    # X = df.drop(columns="y") with groups=df["id"]: the id's numbers were fitted as a
    # predictor (a slope on the labels), silently
    rng = np.random.default_rng(8)
    d = pd.DataFrame({"x": rng.normal(size=200), "id": rng.integers(0, 20, 200)})
    d["y"] = rng.poisson(np.exp(0.3 + 0.4 * d.x + 0.3 * (d.id % 3)))
    with pytest.warns(UserWarning, match="X's column 'id' holds the labels of the grouping"):
        _quiet_but(UserWarning, PoissonGLMM().fit, d[["x", "id"]], d.y, groups=d.id)
    with pytest.warns(UserWarning, match="grouping factor 'groups'"):  # an array: by values
        _quiet_but(UserWarning, PoissonGLMM().fit, d[["x", "id"]], d.y, groups=d.id.to_numpy())
    # an array X (df.to_numpy(), a ColumnTransformer's passthrough): by position
    with pytest.warns(UserWarning, match="X's column 'x1' holds the labels.*column 1 of the"):
        _quiet_but(UserWarning, PoissonGLMM().fit, d[["x", "id"]].to_numpy(), d.y, groups=d.id)
    pipe = _scaled_x_passthrough()
    with pytest.warns(UserWarning, match="holds the labels of the grouping factor 'id'"):
        _quiet_but(UserWarning, pipe.fit, d[["x", "id"]], d.y, poissonglmm__groups=d.id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        PoissonGLMM().fit(d[["x"]], d.y, groups=d.id)
        PoissonGLMM().fit(d[["x"]].to_numpy(), d.y, groups=d.id)
        PoissonGLMM(group_columns="id").fit(d[["x", "id"]], d.y)  # taken out of X
        # written in a formula, a numeric trend beside its own random effects is meant
        formula.glmer("y ~ x + id + (1 | id)", d, family="poisson")


@pytest.mark.parametrize(
    "low, high, match",
    [
        # offset=df["days"] instead of np.log(days): a mean multiplied by exp(days),
        # fitted without a word (converged, the intercept absorbing what it can)
        (20.0, 200.0, r"offset spans 2\d to 19\d: .* offset=np.log\(exp"),
        # days 1..14: a span under OFFSET_SPAN, whole numbers (a column of integers)
        (1, 15, r"offset holds whole numbers from 1 to 14: .*np.log"),
    ],
)
def test_an_exposure_passed_as_the_offset_is_warned_of(low, high, match):
    rng = np.random.default_rng(9)
    d = pd.DataFrame({"x": rng.normal(size=300), "id": rng.integers(0, 30, 300)})
    d["days"] = rng.integers(low, high, 300)
    d["y"] = rng.poisson(d.days * np.exp(-2 + 0.3 * d.x))
    with pytest.warns(UserWarning, match=match):
        m = _quiet_but(UserWarning, PoissonGLMM().fit, d[["x"]], d.y, groups=d.id, offset=d.days)
    with pytest.warns(UserWarning, match=match):
        m.predict(d[["x"]], groups=d.id, offset=d.days)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        logged = PoissonGLMM().fit(d[["x"]], d.y, groups=d.id, offset=np.log(d.days))
        logged.predict(d[["x"]], groups=d.id, offset=np.log(d.days))
        # a log exposure in other units (a constant added): the same model, no warning
        PoissonGLMM().fit(d[["x"]], d.y, groups=d.id, offset=np.log(d.days) + 40.0)
        # one exposure for every row (a constant), 0/1 indicators, and log exposures of
        # whole numbers of days (a log is whole only at an exposure of 1) are not exposures
        PoissonGLMM().fit(d[["x"]], d.y, groups=d.id, offset=np.full(300, 3.0))
        PoissonGLMM().fit(d[["x"]], d.y, groups=d.id, offset=(d.x > 0).astype(float))
        PoissonGLMM().fit(d[["x"]], d.y, groups=d.id, offset=np.log(d.days + 1.0))
    assert logged.coef_[0] == pytest.approx(0.3, abs=0.1)


def _messy(seed=0, n_g=12, n_per=15):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(1, n_g + 1), n_per)
    x = rng.normal(size=len(g))
    f = rng.choice(["a", "b", "c"], size=len(g))
    b = rng.normal(scale=0.8, size=n_g)[g - 1]
    eta = -0.3 + 0.7 * x + np.where(f == "b", 0.5, 0) + np.where(f == "c", -0.6, 0) + b
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    cnt = rng.poisson(np.exp(0.2 + 0.4 * x + 0.7 * b))
    return pd.DataFrame(dict(y=y, cnt=cnt, x=x, f=f, g=g))


@pytest.mark.parametrize("kind", ["glmer", "glmmTMB", "clmm"])
def test_fitted_and_residuals_of_a_formula_fit_carry_the_rows_index(kind):
    from sklearn.base import clone

    # a formula fit drops the rows with a missing value; fitted() and residuals() were
    # arrays of the fitted rows alone (R: a vector named by the rows), which a frame of
    # all the rows could not take as a column
    d = _messy()
    d.index = pd.Index([f"r{k}" for k in range(len(d))])
    d.loc[["r3", "r40"], "x"] = np.nan
    d["r"] = pd.Categorical(np.clip(d.cnt, 0, 3), ordered=True)
    if kind == "clmm":
        m = _quiet(formula.clmm, "r ~ x + (1 | g)", d)
    else:
        fit = getattr(formula, kind)
        m = _quiet(fit, "cnt ~ x + (1 | g)", d, family="poisson")
    kept = d.index.drop(["r3", "r40"])
    for out, name in ((m.fitted(), "fitted"), (m.residuals(), "residuals")):
        assert isinstance(out, pd.Series) and out.name == name
        assert out.index.equals(kept)
    d["fit"] = m.fitted()
    assert d.fit.isna().sum() == 2 and d.fit.notna().loc[kept].all()
    # a clone fitted to the kept rows is the plain estimator (the formula forgotten):
    # arrays, as any estimator's, of the same numbers
    rows = d.loc[kept]
    plain = _quiet(clone(m).fit, rows[["x"]], rows.r if kind == "clmm" else rows.cnt, groups=rows.g)
    assert isinstance(plain.fitted(), np.ndarray)
    np.testing.assert_allclose(m.fitted().to_numpy(), plain.fitted(), rtol=1e-6)
    np.testing.assert_allclose(m.residuals().to_numpy(), plain.residuals(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("values", [(0.2, 0.8), (0.0, 0.5), (0.2, 0.5, 0.8)])
def test_proportions_without_weights_raise(values):
    # two distinct proportions were read as two classes (the fit of the 0/1 outcome,
    # R: -0.6154, 0.6251 with "non-integer #successes"); three raised "Unknown label type"
    d = _messy()
    d["p"] = np.asarray(values)[d.y.to_numpy() % len(values)]
    with pytest.raises(ValueError, match=r"outcome 'p' holds proportions .* weights="):
        formula.glmer("p ~ x + (1 | g)", d, family="binomial")


def test_date_group_labels_match_as_r_writes_them():
    # a date grouping factor fitted from Timestamps: the same dates read back from a file
    # (text), as datetime.date, or time-zone aware were new groups (every row at the
    # population level, 0.32 off); R's levels are the text "2024-01-02"
    d = _messy()
    start = pd.Timestamp("2024-01-01")
    d["day"] = start + pd.to_timedelta(d["g"], unit="D")
    m = _quiet(formula.glmer, "y ~ x + (1 | day)", d, family="binomial")
    p0 = m.predict(d, type="response")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for day in (d.day.astype(str), d.day.dt.date, d.day.dt.strftime("%Y-%m-%dT00:00")):
            np.testing.assert_allclose(m.predict(d.assign(day=day), type="response"), p0)
    slashes = d.assign(day=d.day.dt.strftime("%Y/%m/%d"))  # another file's writing
    np.testing.assert_allclose(m.predict(slashes, type="response"), p0)
    # other writings of the same dates are not matched, but warned of (not silently new);
    # pandas 2.0 reads such texts as the dates themselves when matching them to
    # the fitted date-times: the same predictions, nothing to warn of
    for fmt in ("%Y%m%d", "%Y.%m.%d"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = m.predict(d.assign(day=d.day.dt.strftime(fmt)), type="response")
        warned = any("look like them written another way" in str(w.message) for w in caught)
        assert warned or np.allclose(p, p0, rtol=0, atol=1e-12)
    zoned = d.assign(day=d.day.dt.tz_localize("Europe/Berlin"))
    mz = _quiet(formula.glmer, "y ~ x + (1 | day)", zoned, family="binomial")
    as_text = zoned.assign(day=zoned.day.astype(str))  # "2024-01-02 00:00:00+01:00"
    np.testing.assert_allclose(mz.predict(as_text), mz.predict(zoned))
    np.testing.assert_allclose(mz.predict(d), mz.predict(zoned))


@pytest.mark.parametrize("freq", ["D", "h"])
def test_a_time_zone_aware_groups_numpy_values(freq):
    # pandas gives a time-zone-aware column's ``.values`` as UTC instants without the
    # zone (2024-01-01 00:00+01:00 becomes 2023-12-31 23:00): by their text daily levels
    # were new groups (population-level predictions, 0.58 off) and hourly ones the level
    # an hour away (0.64 off). NumPy date-times are read as UTC instants; where a label
    # is one level that way and another by its local time (hourly levels), it raises;
    # where it is a level only by its local time, it is warned of and a new group
    rng = np.random.default_rng(3)
    stamps = pd.date_range("2024-01-01", periods=12, freq=freq, tz="Europe/Berlin")
    level = rng.integers(0, 12, 240)
    g = pd.Series(stamps[level], name="t")
    x = rng.normal(size=240)
    y = rng.poisson(np.exp(0.3 + 0.4 * x + 0.6 * (level % 3 - 1)))
    X = pd.DataFrame({"x": x})
    m = PoissonGLMM().fit(X, y, groups=g)
    fitted = m.predict(X, groups=g)
    new = m.predict(X, groups=["new"] * 240)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # (pandas on .values of such a column)
        as_numpy = np.asarray(g.values)
    assert as_numpy.dtype.kind == "M"
    # local times without the zone in a pandas column: by their text, as R's levels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(m.predict(X, groups=g.dt.tz_localize(None)), fitted)
    if freq == "h":
        with pytest.raises(ValueError, match="as an instant in UTC .* by its local time"):
            m.predict(X, groups=as_numpy)
        with pytest.raises(ValueError, match="Pass the labels with their time zone"):
            m.predict(X, groups=g.dt.tz_localize(None).to_numpy())  # as ambiguous
        # the hour after the last level: the last level by its text, none as an instant
        after = np.asarray(pd.Series([stamps[-1] + pd.Timedelta(hours=1)] * 240).values)
        with pytest.warns(UserWarning, match=r"no fitted level as instants in UTC .* local"):
            np.testing.assert_allclose(m.predict(X, groups=after), new)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(m.predict(X, groups=as_numpy), fitted, rtol=1e-12)
        # an instant no level has is a new group (the population level), as any new label
        later = as_numpy + np.timedelta64(1, "m")
        np.testing.assert_allclose(m.predict(X, groups=later), new)
    # the other way: fitted from the .values (UTC, no zone), asked with the column itself
    # or with the .values in a pandas column: every label was a new group (3.0 off),
    # silently; they are warned of now
    m_numpy = PoissonGLMM().fit(X, y, groups=as_numpy)
    with pytest.warns(UserWarning, match=r"240 date-time label\(s\) .* by their local time"):
        m_numpy.predict(X, groups=g)
    with pytest.warns(UserWarning, match=r"by their local time, but are the levels .* in UTC"):
        m.predict(X, groups=pd.Series(as_numpy))
    np.testing.assert_allclose(m_numpy.predict(X, groups=g.dt.tz_convert(None)), fitted)


def test_time_zone_aware_labels_across_a_clock_change_and_with_offsets():
    # hourly levels where clocks go back: 02:00+02:00 and 02:00+01:00 are two groups (the
    # fit raised that they "differ only in type"); text with a UTC offset of its own is
    # its instant ("05:00Z" is 06:00 in Berlin, not 05:00 by its text)
    rng = np.random.default_rng(4)
    stamps = pd.date_range("2024-10-27 00:00", periods=6, freq="h", tz="Europe/Berlin")
    level = np.repeat(np.arange(6), 30)
    X = pd.DataFrame({"x": rng.normal(size=180)})
    y = rng.poisson(np.exp(0.3 + 0.7 * (level % 3 - 1)))
    m = _quiet(PoissonGLMM().fit, X, y, groups=pd.Series(stamps[level], name="t"))
    assert len(m.ranef_["t"]) == 6
    one = X.iloc[:1]
    for k in (2, 3):  # the two 02:00s
        as_utc = stamps[k].tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        expected = m.predict(one, groups=pd.Series([stamps[k]]))
        assert expected != m.predict(one, groups=pd.Series([stamps[5 - k]]))
        np.testing.assert_allclose(m.predict(one, groups=[as_utc]), expected)
        in_utc = pd.Series([stamps[k].tz_convert("UTC")])  # aware, in another zone
        np.testing.assert_allclose(m.predict(one, groups=in_utc), expected)
    with pytest.raises(ValueError, match="matches the fitted levels"):  # a local 02:00
        m.predict(one, groups=pd.Series([pd.Timestamp("2024-10-27 02:00")]))


def test_a_missing_zero_inflation_variable_drops_its_row():
    # formulaic's "z contains null values after evaluation" was raised; glmmTMB drops the row
    d = _messy()
    d["z"] = np.random.default_rng(5).normal(size=len(d))
    d.loc[[2, 17], "z"] = np.nan
    m = _quiet(formula.glmmTMB, "cnt ~ x + z + (1 | g)", d, family="poisson", ziformula="~z")
    hand = _quiet(
        formula.glmmTMB, "cnt ~ x + z + (1 | g)", d.dropna(), family="poisson", ziformula="~z"
    )
    assert m.nobs_ == len(d) - 2
    assert m.loglik_ == pytest.approx(hand.loglik_, abs=1e-8)
    # a predictor of the zero part alone: its missing rows dropped too
    zi_only = _quiet(formula.glmmTMB, "cnt ~ x + (1 | g)", d, family="poisson", ziformula="~z")
    assert zi_only.nobs_ == len(d) - 2


@pytest.mark.parametrize("kind", ["time", "span"])
def test_date_and_time_span_predictors_raise_clearly(kind):
    # numpy's "ufunc 'multiply' cannot use operands with types int64 and <M8[us]"
    d = _messy()
    if kind == "time":
        d["t"] = pd.date_range("2020-01-01", periods=len(d))
    else:
        d["t"] = pd.to_timedelta(np.abs(d.x), unit="D")
    with pytest.raises(ValueError, match=r"Data column 't' holds .*pd.Timedelta\(days=1\)"):
        formula.glmer("y ~ t + (1 | g)", d, family="binomial")


def test_text_levels_in_rs_order():
    # R sorts text case-insensitively, lower case first on ties, punctuation before digits
    # before letters (ICU's collation, in C.UTF-8 too): fixtures/collation/make.R
    from pathlib import Path

    from sklearn_glmm._collation import r_sorted

    here = Path(__file__).parent / "fixtures" / "collation"
    for stem in ("", "_latin"):  # ASCII; Latin letters with accents, strokes, ligatures
        labels = (here / f"labels{stem}.txt").read_text(encoding="utf-8").split("\n")[:-1]
        ref = (here / f"sorted{stem}.txt").read_text(encoding="utf-8").split("\n")[1:-1]
        assert len(labels) == 300 and r_sorted(labels) == ref
    # letters R sorts as another with an accent (ð, ħ) or as a letter of their own (ı, ŧ):
    # sort(c("Gardur", "Garðabær", "Hz", "Ħamrun", "ıslak", "Iz", "iz", "ŧa", "tz")) in R
    assert r_sorted(["Gardur", "Garðabær", "Hz", "Ħamrun", "ıslak", "Iz", "iz", "ŧa", "tz"]) == [
        "Garðabær", "Gardur", "Ħamrun", "Hz", "iz", "Iz", "ıslak", "tz", "ŧa"
    ]  # fmt: skip


def test_a_text_predictors_reference_level_is_rs():
    # "apple"/"Banana"/"cherry": Python's order made "Banana" the reference level, R's is
    # "apple" (the model is the same; its coefficients are other contrasts)
    d = _messy()
    d["fr"] = d.f.map({"a": "apple", "b": "Banana", "c": "cherry"})
    m = _quiet(formula.glmer, "y ~ x + fr + (1 | g)", d, family="binomial")
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x", "frBanana", "frcherry"]
    d["fc"] = pd.Categorical(d.fr, categories=["apple", "Banana", "cherry"])
    by_category = _quiet(formula.glmer, "y ~ x + fc + (1 | g)", d, family="binomial")
    np.testing.assert_allclose(m.fixed_effects_["estimate"], by_category.fixed_effects_["estimate"])
    # new data: a subset of the levels, and the levels as a categorical in another order
    p0 = m.predict(d, type="response")
    rest = d.fr.to_numpy() != "apple"
    np.testing.assert_allclose(m.predict(d[rest], type="response"), p0[rest])
    other = pd.Categorical(d.fr, categories=["cherry", "Banana", "apple"])
    np.testing.assert_allclose(m.predict(d.assign(fr=other), type="response"), p0)


def test_a_factor_of_numbers_finds_their_text_in_new_data():
    # factor(k) fitted from 1, 2, 10 refused "1", "2", "10" (a column read from a file);
    # R's factor levels are text, and match
    d = _messy()
    d["k"] = np.tile([1, 2, 10], len(d) // 3)
    m = _quiet(formula.glmer, "y ~ factor(k) + (1 | g)", d, family="binomial")
    as_text = d.assign(k=d.k.astype(str))
    np.testing.assert_allclose(m.predict(as_text, type="response"), m.predict(d, type="response"))
    with pytest.raises(ValueError, match="not seen in fit"):
        m.predict(as_text.assign(k=as_text.k.replace("10", "11")), type="response")


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_an_infinite_design_value_names_its_column():
    # "Input X has 1 non-finite value(s) ... SimpleImputer": the formula user passed no X
    d = _messy()
    d["t"] = np.where(np.arange(len(d)) == 4, 0.0, 1.5)
    with pytest.raises(ValueError, match=r"design column\(s\) \['log\(t\)'\] have 1 infinite"):
        formula.glmer("cnt ~ log(t) + (1 | g)", d, family="poisson")


def test_a_01_outcome_made_float_by_a_missing_value_is_named_as_1():
    d = _messy().astype({"y": float})
    d.loc[3, "y"] = np.nan
    m = _quiet(formula.glmer, "y ~ x + (1 | g)", d, family="binomial")
    assert "Modelled: P(y = 1)" in str(m.summary())


def test_glmmtmb_fits_the_glm_without_random_effects():
    # glmmTMB("y ~ x") raised "no random-effect term"; glmmTMB fits the GLM, the null
    # model of the likelihood-ratio test for the random intercept
    from sklearn_glmm.inference import anova

    d = _messy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NoRandomEffectsWarning: the GLM was asked for
        m0 = formula.glmmTMB("cnt ~ x", d, family="poisson")
    ref = _quiet(PoissonGLMM().fit, d[["x"]], d.cnt)
    assert m0.loglik_ == pytest.approx(ref.loglik_, abs=1e-10)
    m1 = _quiet(formula.glmmTMB, "cnt ~ x + (1 | g)", d, family="poisson")
    table = anova(m0, m1)
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (m1.loglik_ - m0.loglik_), rel=1e-10)
    assert m0.predict(d.head(3), type="response") == pytest.approx(ref.predict(d[["x"]].head(3)))
    assert str(m0.summary()).startswith("Generalized linear model fit by maximum likelihood")
    with pytest.raises(ValueError, match=r"glmmTMB\(formula, data, family=\.\.\.\) fits the GLM"):
        formula.glmer("cnt ~ x", d, family="poisson")


def test_clmm_sorts_a_text_outcome_as_r_does():
    # "mild" / "Moderate" / "severe": Python's order put "Moderate" lowest (upper case
    # first), R's factor() has mild < Moderate < severe. R:
    # d$r <- factor(d$r); coef(clmm(r ~ x + (1 | g), data = d)):
    # mild|Moderate -0.2700764, Moderate|severe 1.0139144, x 0.5566363; logLik -247.9431
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(30), 8)
    x = rng.normal(size=240)
    eta = 0.8 * x + rng.normal(0, 0.7, 30)[g] + rng.logistic(size=240)
    lab = np.array(["mild", "Moderate", "severe"])[np.digitize(eta, [-0.5, 0.8])]
    d = pd.DataFrame(dict(r=lab, x=x, g=g))
    with pytest.warns(UserWarning, match=r"sorted as R sorts them.*'mild', 'Moderate', 'severe'"):
        m = formula.clmm("r ~ x + (1 | g)", d)
    assert list(m.class_order_) == ["mild", "Moderate", "severe"]
    assert m.loglik_ == pytest.approx(-247.9431, abs=1e-4)
    np.testing.assert_allclose(np.asarray(m.thresholds_)[:, 0], [-0.2700764, 1.0139144], atol=2e-4)
    assert m.fixed_effects_.loc["x", "estimate"] == pytest.approx(0.5566363, abs=2e-4)


def test_a_date_column_as_a_factor():
    # factor(day) of a date column raised with the date-predictor check; R fits it, its
    # levels the dates' text: lme4's glmer(cnt ~ x + factor(day) + (1 | g), poisson) on
    # these data (day as.Date): logLik -301.4544, terms factor(day)2024-01-02, ...
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"g": np.repeat(np.arange(12), 15), "x": rng.normal(size=180)})
    d["h"] = np.arange(180) % 7
    d["cnt"] = rng.poisson(np.exp(0.3 + 0.4 * d.x + 0.1 * d.h))
    d["day"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(d.h, unit="D")
    m = _quiet(formula.glmer, "cnt ~ x + factor(day) + (1 | g)", d, family="poisson")
    assert m.loglik_ == pytest.approx(-301.4544, abs=1e-4)
    assert list(m.fixed_effects_.index)[2:4] == ["factor(day)2024-01-02", "factor(day)2024-01-03"]
    p0 = m.predict(d, type="response")
    np.testing.assert_allclose(m.predict(d.assign(day=d.day.astype(str)), type="response"), p0)
    with pytest.raises(ValueError, match=r"Data column 'day' holds dates"):
        formula.glmer("cnt ~ x + day + factor(day) + (1 | g)", d, family="poisson")


def test_a_text_predictor_that_is_also_a_grouping_variable_has_rs_levels():
    # y ~ fr + (1 | fr:g): fr was left in Python's order (its labels are the groups'),
    # so the fixed part's reference level was "Banana"; lme4 (R's order, apple first):
    # logLik -119.0175, fixef -0.2559334 0.1818254 -0.5448444
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"g": np.repeat(np.arange(12), 15)})
    d["fr"] = rng.choice(["apple", "Banana", "cherry"], 180)
    d["y"] = (rng.random(180) < np.where(d.fr == "cherry", 0.25, 0.45)).astype(int)
    m = _quiet(formula.glmer, "y ~ fr + (1 | fr:g)", d, family="binomial")
    assert list(m.fixed_effects_.index) == ["(Intercept)", "frBanana", "frcherry"]
    np.testing.assert_allclose(
        m.fixed_effects_["estimate"], [-0.2559334, 0.1818254, -0.5448444], atol=2e-4
    )
    p0 = m.predict(d, type="response")
    np.testing.assert_allclose(m.predict(d.iloc[::-1], type="response")[::-1], p0)


def test_a_structured_terms_time_given_as_dates():
    # ar1(0 + factor(date) | id) with a date column raised "must be a numeric column";
    # glmmTMB fits it as the same model as with the weeks' index (logLik -158.866)
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"id": np.repeat(np.arange(20), 5), "day": np.tile(np.arange(5), 20)})
    d["x"] = rng.normal(size=len(d))
    d["y"] = rng.poisson(np.exp(0.3 + 0.3 * d.x + rng.normal(0, 0.4, len(d))))
    d["date"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(d.day * 7, unit="D")
    by_day = _quiet(formula.glmmTMB, "y ~ x + ar1(0 + factor(day) | id)", d, family="poisson")
    by_date = _quiet(formula.glmmTMB, "y ~ x + ar1(0 + factor(date) | id)", d, family="poisson")
    assert by_date.loglik_ == pytest.approx(-158.866, abs=1e-3)
    assert by_date.loglik_ == pytest.approx(by_day.loglik_, abs=1e-8)
    p_day = by_day.predict(d, type="response")
    np.testing.assert_allclose(by_date.predict(d, type="response"), p_day)


def test_one_value_as_groups_and_arrays_for_named_columns_are_told_the_fix():
    rng = np.random.default_rng(8)
    d = pd.DataFrame({"x": rng.normal(size=100), "id": rng.integers(0, 10, 100)})
    y = rng.poisson(2.0, size=100)
    for one in (5, np.int64(3)):
        with pytest.raises(ValueError, match="groups must be array-like.*got the single value"):
            PoissonGLMM().fit(d[["x"]], y, groups=one)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), PoissonGLMM(group_columns="id"))
    with pytest.raises(ValueError, match=r"must be a pandas DataFrame.*set_output\(transform="):
        pipe.fit(d, y)
    pipe[0].set_output(transform="pandas")
    _quiet(pipe.fit, d, y)


def test_the_outcome_in_an_array_X_is_warned_of():
    # a ColumnTransformer's passthrough kept y's column: fitted as a predictor, silently
    rng = np.random.default_rng(8)
    d = pd.DataFrame({"x": rng.normal(size=200), "id": rng.integers(0, 20, 200)})
    d["y"] = rng.poisson(np.exp(0.3 + 0.4 * d.x))
    with pytest.warns(UserWarning, match="column 1 of X .* holds the same values as y"):
        _quiet_but(UserWarning, PoissonGLMM().fit, d[["x", "y"]].to_numpy(), d.y, groups=d.id)
    pipe = _scaled_x_passthrough()
    with pytest.warns(UserWarning, match="holds the same values as y"):
        _quiet_but(UserWarning, pipe.fit, d[["x", "y"]], d.y, poissonglmm__groups=d.id)
