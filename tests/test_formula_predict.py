"""Predicting from raw data with a formula fit, as R's ``predict(m, newdata, re.form, type)``.

The R numbers come from lme4 1.1-31 (R 4.2) on the data built here; each test shows the
R call.
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn.base import clone  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

import sklearn_glmm  # noqa: E402
from sklearn_glmm.datasets import load_app_logins, make_longitudinal  # noqa: E402
from sklearn_glmm.formula import FormulaTransformer, design_matrix, glmer  # noqa: E402


def _quiet(fun, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kwargs)


@pytest.fixture(scope="module")
def binary():
    """Binary outcome with string and numeric factors and a polynomial in time."""
    df, _ = make_longitudinal("binomial", n_groups=80, n_waves=6, sex=True, random_state=11)
    df["arm"] = np.where(df["treatment"] == 1, "drug", "placebo")
    df["site"] = np.array(["north", "south", "east"])[df["id"] % 3]
    return df


@pytest.fixture(scope="module")
def binary_fit(binary):
    formula = "y ~ arm * factor(sex) + poly(time, 2) + site + (1 | id)"
    return _quiet(glmer, formula, binary, family="binomial")


@pytest.fixture(scope="module")
def newdata():
    return pd.DataFrame(
        {
            "arm": ["placebo", "drug", "drug", "placebo"],
            "sex": [0, 1, 0, 1],
            "time": [0, 2.5, 5, 1],
            "site": ["east", "north", "south", "south"],
            "id": [1, 7, 999, 40],  # 999 was not seen in fit
        }
    )


@pytest.fixture(scope="module")
def counts():
    df, _ = make_longitudinal("poisson", n_groups=40, n_waves=5, re_sd=0.5, random_state=12)
    df["exposure"] = 1.0 + (df["id"] % 4) * 0.5
    return df


# ---------------------------------------------------------------------------
# the numbers R's predict gives
# ---------------------------------------------------------------------------


def test_matches_lme4_predict_on_newdata(binary_fit, newdata):
    # R: m <- glmer(y ~ arm * factor(sex) + poly(time, 2) + site + (1 | id), d, binomial,
    #               control = glmerControl(optimizer = "bobyqa"))
    # predict(m, newdata = nd, type = "response", allow.new.levels = TRUE)
    r_response = [0.41293030131, 0.20689379786, 0.09597712612, 0.85358621223]
    # predict(m, newdata = nd, type = "link", allow.new.levels = TRUE)
    r_link = [-0.3518647331, -1.3437515294, -2.2427447696, 1.7630097715]
    # predict(m, newdata = nd, type = "response", re.form = NA)
    r_population = [0.32160243081, 0.22823838962, 0.09597712612, 0.40307760638]
    m = binary_fit
    # lme4 gives an unseen level (id 999) a random effect of zero: population="zero"
    got = m.predict(newdata, type="response", population="zero")
    np.testing.assert_allclose(got, r_response, atol=2e-5)
    np.testing.assert_allclose(m.predict(newdata, type="link"), r_link, atol=2e-5)
    np.testing.assert_allclose(
        m.predict(newdata, type="response", re_form=np.nan), r_population, atol=2e-5
    )


def test_missing_predictor_gives_nan_as_r(binary_fit, newdata):
    # R: nd$time[2] <- NA; predict(m, newdata = nd, type = "response", re.form = NA)
    # 0.32160243081 NA 0.09597712612 0.40307760638
    nd = newdata.copy()
    nd.loc[1, "time"] = np.nan
    got = binary_fit.predict(nd, type="response", re_form="NA")
    assert np.isnan(got[1])
    np.testing.assert_allclose(
        got[[0, 2, 3]], [0.32160243081, 0.09597712612, 0.40307760638], atol=2e-5
    )
    proba = binary_fit.predict_proba(nd)
    assert np.isnan(proba[1]).all() and np.isfinite(proba[[0, 2, 3]]).all()
    assert np.isnan(binary_fit.decision_function(nd)[1])
    with pytest.raises(ValueError, match=r"row position\(s\) \[1\]"):
        binary_fit.predict(nd)  # classes have no NaN


def test_a_transform_out_of_its_domain_on_a_new_row_gives_nan_there(counts):
    # R: log(z) with z <= 0, or offset(log(exposure)) with exposure 0, on one new row:
    # NaN (or -Inf) for that row only; it raised for the whole frame
    m = _quiet(
        glmer,
        "y ~ log(time + 1) + treatment + offset(log(exposure)) + (1 | id)",
        counts,
        "poisson",
    )
    new = counts.iloc[:5].reset_index(drop=True)
    full = m.predict(new, type="response")
    for column, value in [("time", -1.0), ("time", -3.0), ("exposure", 0.0)]:
        bad = new.assign(**{column: new[column].where(new.index != 2, value)})
        with pytest.warns(UserWarning, match=r"1 row\(s\) of the data \(e.g. \[2\]\)"):
            got = m.predict(bad, type="response")
        assert np.isnan(got[2])
        np.testing.assert_allclose(got[[0, 1, 3, 4]], full[[0, 1, 3, 4]], rtol=1e-12)
    with pytest.raises(ValueError, match="transform of the formula makes not finite"):
        _quiet(m.predict_interval, bad)


def test_formula_offset_read_from_newdata(counts):
    # R: p <- glmer(y ~ time + treatment + offset(log(exposure)) + (1 | id), d, poisson,
    #               control = glmerControl(optimizer = "bobyqa"))
    # (logLik -477.61461; ours -477.61455: the likelihood is flat there, hence rtol 1e-4)
    m = _quiet(glmer, "y ~ time + treatment + offset(log(exposure)) + (1 | id)", counts, "poisson")
    new = pd.DataFrame(
        {"time": [0, 4, 2], "treatment": [1, 0, 1], "exposure": [1, 2.5, 0.5], "id": [3, 10, 1000]}
    )
    # predict(p, newdata = nd, type = "response", allow.new.levels = TRUE)
    np.testing.assert_allclose(
        m.predict(new, type="response", population="zero"),
        [3.199089003, 8.933847884, 1.353281570],
        rtol=1e-4,
    )
    # predict(p, newdata = nd, type = "link", re.form = NA)
    np.testing.assert_allclose(
        m.predict(new, type="link", re_form="~0"),
        [0.7865978378, 2.2622243042, 0.3025324353],
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="exposure"):
        m.predict(new.drop(columns="exposure"))
    with pytest.raises(ValueError, match="offset= as well"):
        m.predict(new, offset=np.zeros(3))
    # without the offset's variable and the groups, the rest are the design's columns:
    # read as the design, its offset was silently 0 (R: object 'exposure' not found)
    design_only = new[["time", "treatment"]]
    with pytest.raises(ValueError, match=r"offset \['log\(exposure\)'\].*\['exposure'\]"):
        m.predict(design_only, type="link", re_form="~0")
    np.testing.assert_allclose(
        m.predict(design_only, type="link", re_form="~0", offset=np.log(new["exposure"])),
        m.predict(new, type="link", re_form="~0"),
    )


def test_app_logins_predictions_of_tutorial_002():
    # R (tutorial 002): glmer(logins ~ day_centered + (1 | user_id), app_data,
    #                         family = poisson(link = "log"))
    df = load_app_logins()
    m = glmer("logins ~ day_centered + (1 | user_id)", df, family='poisson(link = "log")')
    # new_data <- data.frame(day_centered = c(-14.5, 0, 14.5), user_id = NA)
    # predict(glmm_model, newdata = new_data, re.form = NA, type = "response")
    average = pd.DataFrame({"day_centered": [-14.5, 0, 14.5], "user_id": np.nan})
    np.testing.assert_allclose(
        m.predict(average, re_form=np.nan, type="response"),
        [2.386654, 2.091631, 1.833078],
        rtol=1e-5,
    )
    # user_specific <- data.frame(day_centered = 0, user_id = factor(c(1, 10, 20, 30, 40)))
    # predict(glmm_model, newdata = user_specific, type = "response")
    users = pd.DataFrame({"day_centered": 0.0, "user_id": [1, 10, 20, 30, 40]})
    np.testing.assert_allclose(
        m.predict(users, type="response"),
        [3.182189, 3.529369, 1.728530, 1.971098, 2.837006],
        rtol=1e-5,
    )
    # labels as strings (R's factor) find the same users
    as_text = users.assign(user_id=users["user_id"].astype(str))
    np.testing.assert_allclose(m.predict(as_text), m.predict(users))


# ---------------------------------------------------------------------------
# raw data = the hand-built design
# ---------------------------------------------------------------------------


def test_raw_data_equals_hand_built_design(binary_fit, binary):
    m = binary_fit
    rows = binary.iloc[[0, 7, 100, 333, 479]]
    X = design_matrix(m.design_info_, rows)
    g = rows[["id"]]
    np.testing.assert_allclose(m.predict_proba(rows), m.predict_proba(X, g))
    np.testing.assert_allclose(m.decision_function(rows), m.decision_function(X, g))
    np.testing.assert_array_equal(m.predict(rows), m.predict(X, g))
    np.testing.assert_allclose(m.predict_mean(rows), m.predict_mean(X, g))
    np.testing.assert_allclose(m.predict(rows, type="response"), m.predict_mean(X, g))
    np.testing.assert_allclose(
        m.predict(rows, type="link"), m._linear_predictor(X, g, None, "zero")[0]
    )
    # the design path is unchanged: numeric X with groups, and X without groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # X without feature names
        np.testing.assert_allclose(m.predict_proba(X.to_numpy(), g), m.predict_proba(X, g))
    without = m.predict_proba(rows.drop(columns="id"), population="marginal")
    np.testing.assert_allclose(m.predict_proba(X), without)
    table = m.predict_interval(rows)
    pd.testing.assert_frame_equal(
        table, m.predict_interval(X, g).set_axis(rows.index), check_exact=False
    )
    # the training frame itself: the fitted values
    np.testing.assert_allclose(m.predict(binary, type="response"), m.fitted(), rtol=1e-10)


@pytest.mark.parametrize(
    "rhs, equal, other",
    [
        ("x + (x | g)", ["~(1 + x | g)", "~(x|g)"], ["~(1 | g)", "~(x || g)"]),
        ("x + (x || g)", ["~(1 | g) + (0 + x | g)", "~diag(1 + x | g)"], ["~(1 + x | g)"]),
        (
            "x + (1 | g1/g2)",
            ["~(1 | g1) + (1 | g2:g1)", "~(1 | g2:g1) + (1 | g1)", "~(1 | g1) + (1 | g1:g2)"],
            ["~(1 | g1)", "~(1 | g2)"],
        ),
    ],
)
def test_re_form_naming_every_term_in_another_spelling(rhs, equal, other):
    # R's predict reads a re.form holding every random-effect term as re.form = NULL
    rng = np.random.default_rng(5)
    n = 240
    df = pd.DataFrame(
        {"x": rng.normal(size=n), "g": rng.integers(0, 12, n), "g1": rng.integers(0, 6, n)}
    )
    df["g2"] = rng.integers(0, 4, n)
    df["y"] = rng.binomial(1, 1 / (1 + np.exp(-(0.3 + df["x"] + rng.normal(0, 1, 12)[df["g"]]))))
    m = _quiet(glmer, f"y ~ {rhs}", df, family="binomial")
    conditional = m.predict(df.iloc[:20], type="link")
    for re_form in equal:
        np.testing.assert_array_equal(
            m.predict(df.iloc[:20], type="link", re_form=re_form), conditional
        )
    for re_form in other:
        with pytest.raises(NotImplementedError, match="only some of the random-effect terms"):
            m.predict(df.iloc[:20], type="link", re_form=re_form)


def test_re_form_spellings(binary_fit, newdata):
    m = binary_fit
    zero = m.predict_proba(newdata.drop(columns="id"), population="zero")
    for na in (np.nan, pd.NA, "NA", "~0", " ~ 0 "):
        np.testing.assert_allclose(m.predict_proba(newdata, re_form=na), zero)
    # NULL and a formula with every random-effect term: conditional on the groups
    conditional = m.predict_proba(newdata)
    np.testing.assert_allclose(m.predict_proba(newdata, re_form="~(1 | id)"), conditional)
    np.testing.assert_allclose(m.predict_proba(newdata, re_form="NULL"), conditional)
    with pytest.raises(NotImplementedError, match="re.form = NA"):
        m.predict(newdata, re_form="~(1 | site)")
    with pytest.raises(ValueError, match="population='marginal'"):
        m.predict_proba(newdata, re_form=np.nan, population="marginal")
    with pytest.raises(ValueError, match="type must be"):
        m.predict(newdata, type="probability")


def test_unseen_and_absent_groups(binary_fit, newdata):
    m = binary_fit
    X = design_matrix(m.design_info_, newdata)
    # unseen id 999: population level as the estimator gives it (marginal by default)
    np.testing.assert_allclose(m.predict_proba(newdata)[2], m.predict_proba(X.iloc[[2]])[0])
    # no grouping column: every row at the population level, said unless asked for (lme4
    # raises: "object 'id' not found")
    with pytest.warns(UserWarning, match=r"none of the grouping column\(s\) \['id'\]"):
        without = m.predict_proba(newdata.drop(columns="id"))
    np.testing.assert_allclose(without, m.predict_proba(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asked = m.predict_proba(newdata.drop(columns="id"), population="marginal")
    np.testing.assert_allclose(asked, without)
    # groups= with a frame lacking the grouping column
    np.testing.assert_allclose(
        m.predict_proba(newdata.drop(columns="id"), groups=newdata[["id"]]),
        m.predict_proba(newdata),
    )
    with pytest.raises(ValueError, match="pass one of them"):
        m.predict_proba(newdata, groups=newdata[["id"]])


def test_levels_poly_and_scale_state_from_training(binary):
    formula = "y ~ factor(site, levels = c('south', 'north', 'east')) + scale(time) + (1 | id)"
    m = _quiet(glmer, formula, binary)
    one = binary.iloc[[5]]  # one row: its own mean and SD would be meaningless
    X_train = design_matrix(m.design_info_, binary).iloc[[5]]
    np.testing.assert_allclose(m.predict_proba(one), m.predict_proba(X_train, one[["id"]]))
    # a value outside factor(levels = ...) is not a level of the model
    with pytest.raises(ValueError, match="not among the levels"):
        m.predict(binary.head(2).assign(site=["west", "east"]))


def test_new_factor_level_raises_in_design_matrix(binary_fit, newdata):
    with pytest.raises(ValueError, match=r"\{'placebo2'\}.*not seen in fit"):
        design_matrix(binary_fit.design_info_, newdata.assign(arm="placebo2"))


def test_missing_variables_and_partial_groups():
    df = pd.DataFrame(
        {
            "y": [0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0],
            "x": np.linspace(-1, 1, 12),
            "school": [1] * 6 + [2] * 6,
            "klass": [1, 1, 2, 2, 3, 3] * 2,
        }
    )
    m = _quiet(glmer, "y ~ x + (1 | school/klass)", df)
    groups = pd.DataFrame(
        {
            "school": df["school"],
            "klass:school": df["klass"].astype(str) + ":" + df["school"].astype(str),
        }
    )
    np.testing.assert_allclose(m.predict_proba(df), m.predict_proba(df[["x"]], groups))
    with pytest.raises(ValueError, match=r"but not \['klass'\]"):
        m.predict(df.drop(columns="klass"))
    with pytest.raises(ValueError, match=r"lack the formula's variable\(s\) \['x'\]"):
        m.predict(df.drop(columns="x").assign(z=1.0))


def test_null_model_reads_groups_from_raw_data(binary):
    m = _quiet(glmer, "y ~ 1 + (1 | id)", binary)
    rows = binary.iloc[[0, 50, 100]]
    X = design_matrix(m.design_info_, rows)
    assert X.shape == (3, 0)
    np.testing.assert_allclose(m.predict_proba(rows), m.predict_proba(X, rows["id"]))
    np.testing.assert_allclose(m.predict_proba(rows[[]]), m.predict_proba(X))


def test_offset_column_and_offset_array(counts):
    df = counts.assign(log_exposure=np.log(counts["exposure"]))
    by_name = _quiet(glmer, "y ~ time + (1 | id)", df, "poisson", offset="log_exposure")
    in_formula = _quiet(glmer, "y ~ time + offset(log_exposure) + (1 | id)", df, "poisson")
    np.testing.assert_allclose(by_name.coef_, in_formula.coef_, rtol=1e-8)
    new = df.iloc[[0, 11, 23]]
    np.testing.assert_allclose(by_name.predict(new), in_formula.predict(new), rtol=1e-8)
    by_array = _quiet(
        glmer, "y ~ time + (1 | id)", df, "poisson", offset=df["log_exposure"].to_numpy()
    )
    with pytest.warns(UserWarning, match="offset given as an array"):
        no_offset = by_array.predict(new)
    np.testing.assert_allclose(
        by_array.predict(new, offset=new["log_exposure"]), in_formula.predict(new), rtol=1e-8
    )
    assert not np.allclose(no_offset, in_formula.predict(new))


# ---------------------------------------------------------------------------
# the same object as an estimator
# ---------------------------------------------------------------------------


def test_is_the_estimator_and_works_in_pipelines(binary_fit, binary):
    m = binary_fit
    assert isinstance(m, sklearn_glmm.BinomialGLMM)
    assert type(m).__name__ == "BinomialGLMM"
    assert "[BinomialGLMM]" in str(m.summary())
    # clone: the plain estimator with the same parameters, fitted on the design
    X = design_matrix(m.design_info_, binary)
    twin = clone(m).fit(X, binary["y"], groups=binary[["id"]])
    np.testing.assert_allclose(twin.coef_, m.coef_, rtol=1e-6)
    assert twin._formula is None
    pipe = make_pipeline(FormulaTransformer(m.formula_), clone(m))
    pipe.fit(binary, binary["y"], **{f"{type(m).__name__.lower()}__groups": binary[["id"]]})
    np.testing.assert_allclose(pipe.predict_proba(binary.head()), m.predict_proba(X.head()))


def test_refit_forgets_the_formula(binary):
    m = _quiet(glmer, "y ~ time + (1 | id)", binary)
    m.fit(binary[["time", "treatment"]], binary["y"], groups=binary["id"])
    assert not hasattr(m, "formula_") and m._formula is None
    # a frame with more columns than the fitted ones is the estimator's error again
    with pytest.raises(ValueError):
        m.predict(binary[["time", "treatment", "sex"]])


def test_pickle_keeps_raw_data_predictions(binary_fit, newdata):
    again = pickle.loads(pickle.dumps(binary_fit))
    np.testing.assert_allclose(again.predict_proba(newdata), binary_fit.predict_proba(newdata))


def test_count_predict_proba_and_score_on_raw_data(counts):
    m = _quiet(glmer, "y ~ time + treatment + (1 | id)", counts, family="poisson")
    rows = counts.iloc[:7]
    X = rows[["time", "treatment"]]
    proba = m.predict_proba(rows)
    np.testing.assert_allclose(proba, m.predict_proba(X, rows[["id"]]))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert m.score(rows, rows["y"]) == pytest.approx(m.score(X, rows["y"], groups=rows[["id"]]))


def test_nested_labels_of_new_data_with_a_missing_code():
    # a missing g2 makes the integer codes float; the g2:g labels were then "1.0:1"
    # for every row, which matched no fitted level: every row lost its g2:g effect
    r = np.random.default_rng(7)
    g = np.repeat(np.arange(1, 21), 30)
    g2 = np.tile(np.repeat([1, 2, 3], 10), 20)
    x = r.normal(size=600)
    eta = 0.3 + 0.5 * x + r.normal(0, 0.6, 21)[g] + r.normal(0, 0.8, (21, 4))[g, g2]
    d = pd.DataFrame({"cnt": r.poisson(np.exp(eta)), "x": x, "g": g, "g2": g2})
    m = _quiet(glmer, "cnt ~ x + (1|g/g2)", d, "poisson")
    nd = pd.DataFrame({"x": 0.0, "g": [1, 2, 3, 4], "g2": [1, 2, 3, 1]})
    full = m.predict(nd, type="link")
    nd.loc[3, "g2"] = np.nan
    with pytest.warns(UserWarning, match=r"1 row\(s\) of the data have no value of .*\['g2'\]"):
        part = m.predict(nd, type="link")
    np.testing.assert_allclose(part[:3], full[:3], rtol=1e-12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.predict(nd, type="link")
    # said once, by the front end (the estimator does not say it again of its groups)
    assert len([w for w in caught if "missing labels" in str(w.message)]) == 0
    assert len([w for w in caught if "no value of" in str(w.message)]) == 1
    with warnings.catch_warnings():  # the population level asked for: nothing to say
        warnings.simplefilter("error")
        m.predict(nd.iloc[:3], type="link", re_form="NA")
    # the row without its sub-group keeps the group's effect alone
    only_g = m.predict(nd.iloc[[3]].drop(columns="g2").assign(g2=99), type="link")
    np.testing.assert_allclose(part[3], only_g[0], rtol=1e-12)


def _factor_data(seed=0):
    rng = np.random.default_rng(seed)
    n = 300
    d = pd.DataFrame(
        {
            "h": rng.integers(1, 4, n),
            "x": rng.normal(size=n),
            "g": np.repeat(np.arange(30), 10),
            "t": rng.uniform(1, 5, n),
        }
    )
    eta = 0.3 + 0.4 * (d.h == 2) + 0.1 * (d.h == 3) + 0.1 * d.x + rng.normal(0, 0.5, 30)[d.g]
    d["yc"] = rng.poisson(np.exp(eta + np.log(d.t)))
    return d


def test_a_factor_given_as_numbers_in_new_data():
    # formulaic copied the number into every dummy column (hs2 = hs3 = value), without a
    # word: predictions up to 1.6 off on the link scale, contrast(d.assign(hs=3),
    # d.assign(hs=1)) a rate ratio of 3.28 for exp(hs3) = 1.15
    from sklearn_glmm.formula import glmer

    d = _factor_data()
    text = d.assign(hs=d.h.astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("yc ~ hs + x + (1 | g)", text, family="poisson")
    with pytest.raises(ValueError, match="'hs' was a factor in fit"):
        m.predict(text.assign(hs=d.h))
    spec_before = repr(m.design_info_.encoder_state)
    with pytest.raises(ValueError):
        m.predict(text.assign(hs=d.h.astype(float)))
    assert repr(m.design_info_.encoder_state) == spec_before  # the fitted spec untouched
    cat = d.assign(hs=pd.Categorical(d.h))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mc = glmer("yc ~ hs + x + (1 | g)", cat, family="poisson")
    # numbers that are the fitted levels (a Categorical of ints) are those levels
    np.testing.assert_allclose(mc.predict(cat.assign(hs=d.h)), mc.predict(cat), rtol=1e-12)
    ratio = mc.contrast(cat.assign(hs=3), cat.assign(hs=1), kind="ratio")
    want = np.exp(mc.fixed_effects_.loc["hs3", "estimate"])
    assert ratio.loc["conditional", "estimate"] == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("dtype", ["string", "string[pyarrow]"])
def test_pandas_string_columns_are_factors(dtype):
    # read as numbers by the formula parser: "1", "2", "3" fitted as one numeric
    # covariate (logLik -661.10 where R's factor fit has -648.22)
    pytest.importorskip("pyarrow") if "pyarrow" in dtype else None
    from sklearn_glmm.formula import glmer

    d = _factor_data(1)
    text = d.assign(hs=d.h.astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = glmer("yc ~ hs + x + (1 | g)", text, family="poisson")
        m = glmer("yc ~ hs + x + (1 | g)", text.astype({"hs": dtype}), family="poisson")
    assert list(m.fixed_effects_.index) == ["(Intercept)", "hs2", "hs3", "x"]
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-8)
    np.testing.assert_allclose(ref.predict(text.astype({"hs": dtype})), ref.predict(text))


def test_plots_and_marginal_coefs_read_nested_groups_and_formula_offsets():
    # nested (g/h) factors are no data columns: the plots' "conditional" predictions
    # were population-averaged; a formula's offset() was dropped (marginal_coefs at
    # exposure 1 with a warning, the plots raised although the data held t)
    from sklearn_glmm import plotting as P
    from sklearn_glmm.formula import glmer
    from sklearn_glmm.marginal import marginal_coefs

    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = _factor_data(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("yc ~ x + offset(log(t)) + (1 | g/h)", d, family="poisson")
    want = pd.Series(m.predict(d)).groupby(d.h.to_numpy()).mean().to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = P.plot_predicted_vs_observed(m, d, time="h", y="yc")
        np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), want, rtol=1e-10)
        mc = marginal_coefs(m, d)
    plt.close("all")
    # the rows' own offset, as for the training rows (offset= beside it raises)
    np.testing.assert_allclose(mc["estimate"], marginal_coefs(m)["estimate"], rtol=1e-10)
    with pytest.raises(ValueError, match="do not pass offset= as well"):
        marginal_coefs(m, d, offset=np.log(d.t))


def test_a_logical_column_with_missing_values_is_a_factor():
    # pandas stores a logical column with NA as object: it was not coded as R's
    # FALSE/TRUE factor (coefficient bTrue, predictions refused as new levels)
    d = _factor_data(3)
    d["b"] = (d.x > 0).astype(object)
    d.loc[d.index[5], "b"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("yc ~ b + x + (1 | g)", d, family="poisson")
    assert "bTRUE" in m.fixed_effects_.index
    new = d.head(4).copy()
    new.loc[new.index[1], "b"] = None
    p = m.predict(new, type="link")
    assert np.isnan(p[1]) and np.all(np.isfinite(p[[0, 2, 3]]))
    clean = d.head(4).assign(b=(d.x.head(4) > 0))
    np.testing.assert_allclose(p[[0, 2, 3]], m.predict(clean, type="link")[[0, 2, 3]])


def test_tools_reading_every_row_name_the_missing_values():
    # plots and marginal_coefs rebuild the design from every row given: a row the fit
    # left out (a missing predictor) raised formulaic's null error
    from sklearn_glmm import plotting
    from sklearn_glmm.marginal import marginal_coefs

    rng = np.random.default_rng(0)
    d = pd.DataFrame(
        {
            "id": np.repeat(np.arange(30), 6),
            "t": np.tile(np.arange(6), 30),
            "x": rng.normal(size=180),
        }
    )
    d["y"] = rng.binomial(1, 1 / (1 + np.exp(-(0.2 * d["t"] + 0.5 * d["x"]))))
    d.loc[[3, 17], "x"] = np.nan
    m = _quiet(glmer, "y ~ t + x + (1 | id)", d)
    assert m.nobs_ == 178
    calls = [
        lambda: plotting.plot_predicted_vs_observed(m, d, time="t", y="y"),
        lambda: plotting.plot_trajectories(m, d, time="t"),
        lambda: marginal_coefs(m, d),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"2 row\(s\) of data have a missing value in \['x'\]"):
            call()
    assert np.isfinite(marginal_coefs(m, d.dropna())["estimate"]).all()


def test_bs_extends_beyond_the_fitting_range_as_r():
    # R's predict extrapolates a bs() basis on new data outside the fitting data's
    # range; formulaic raises there unless asked to extend
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"x": rng.uniform(0, 4, 200), "g": np.repeat(np.arange(20), 10)})
    d["y"] = rng.poisson(np.exp(0.5 + np.sin(d["x"])))
    a = _quiet(glmer, "y ~ bs(x, df=4) + (1 | g)", d, "poisson")
    b = _quiet(glmer, "y ~ bs(x, df=4, extrapolation='extend') + (1 | g)", d, "poisson")
    c = _quiet(glmer, "y ~ bs(x, df=4, extrapolation='raise') + (1 | g)", d, "poisson")
    np.testing.assert_array_equal(a.coef_, c.coef_)  # the fitting rows' basis is formulaic's
    q = pd.DataFrame({"x": [-0.5, 2.0, 4.5], "g": [0, 0, 0]})
    pa = a.predict(q, type="link", re_form="NA")
    assert np.all(np.isfinite(pa))
    np.testing.assert_allclose(pa, b.predict(q, type="link", re_form="NA"), rtol=1e-10)
    with pytest.raises(Exception, match="extend beyond upper and/or lower bounds"):
        c.predict(q, type="link", re_form="NA")


def test_ns_is_rs_natural_spline_basis():
    # tests/fixtures/splines/make.R: R's ns() on the data and beyond its range, and a
    # glmer fit with it
    import json
    from pathlib import Path

    from sklearn_glmm._formula_splines import natural_spline_basis, natural_spline_knots

    here = Path(__file__).parent / "fixtures" / "splines"
    ref = json.loads((here / "ns.json").read_text())
    d = pd.read_csv(here / "ns.csv")
    age = d["age"].to_numpy()
    inner, bounds = natural_spline_knots(age, df=3)
    np.testing.assert_allclose(
        natural_spline_basis(age[:5], inner, bounds), ref["basis_first"], atol=1e-14
    )
    new = np.array([10, 18.5, 45, 79.9, 95])  # below, at and beyond the boundary knots
    np.testing.assert_allclose(
        natural_spline_basis(new, inner, bounds), ref["basis_new"], atol=1e-13
    )
    inner, bounds = natural_spline_knots(age, df=4, intercept=True)
    np.testing.assert_allclose(
        natural_spline_basis(age[:5], inner, bounds, intercept=True), ref["basis_int"], atol=1e-14
    )
    inner, bounds = natural_spline_knots(age, knots=[30, 50, 65])
    np.testing.assert_allclose(
        natural_spline_basis(age[:5], inner, bounds), ref["basis_knots"], atol=1e-14
    )
    m = _quiet(glmer, "y ~ ns(age, df=3) + (1 | g)", d, "poisson")
    # glmer stops 2e-4 below the optimum glmmTMB and this fit reach: glmmTMB's is the
    # reference
    assert ref["loglik"][0] < ref["tmb_loglik"][0] - 1e-4
    assert m.loglik_ == pytest.approx(ref["tmb_loglik"][0], abs=1e-6)
    np.testing.assert_allclose(m.coef_, ref["tmb_fixef"][1:], rtol=1e-4)
    assert list(m.fixed_effects_.index[1:]) == [  # R's names
        "ns(age, df = 3)1",
        "ns(age, df = 3)2",
        "ns(age, df = 3)3",
    ]
    q = pd.DataFrame({"age": new, "g": np.nan})
    np.testing.assert_allclose(
        m.predict(q, type="link", re_form="NA"), ref["tmb_new_link"], atol=1e-5
    )


@pytest.mark.parametrize("kind", ["ns", "bs", "poly", "scale"])
def test_basis_transforms_learn_from_every_row_as_r_does(kind):
    # tests/fixtures/splines/na_rows.R: rows missing another variable (z, y), among them
    # the extremes of age; R evaluates ns/bs/poly/scale on every row before na.omit, so
    # the knots (a different model for ns and bs), polynomial coefficients, centre and
    # scale come from all 240 rows, not from the 225 the model keeps
    import json
    from pathlib import Path

    here = Path(__file__).parent / "fixtures" / "splines"
    ref = json.loads((here / "na_rows.json").read_text())[kind]
    d = pd.read_csv(here / "na_rows.csv")
    m = _quiet(glmer, ref["formula"], d, "poisson")
    assert m.nobs_ == ref["n_rows"]
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=2e-5)
    np.testing.assert_allclose(m.intercept_, ref["fixef"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.coef_, ref["fixef"][1:], rtol=1e-4, atol=1e-5)
    # new ages below and inside the range: the fitted state's basis (1e-4: the
    # coefficients' agreement with R's optimiser, times the basis' size)
    q = pd.DataFrame({"age": [15.0, 30.0, 55.0, 79.0], "z": 0.0, "g": np.nan})
    np.testing.assert_allclose(m.predict(q, type="link", re_form="NA"), ref["new_link"], atol=1e-4)


def _spellings():
    from pathlib import Path

    d = pd.read_csv(Path(__file__).parent / "fixtures" / "formula_spellings" / "spellings.csv")
    d["o"] = pd.Categorical(d["o"], categories=["low", "mid", "high"], ordered=True)
    return d


def test_new_data_read_as_the_fit_read_r_spellings():
    # tests/fixtures/formula_spellings: the fits are R's; new data are coded as the fit's
    d = _spellings()
    new = d.head(8).copy()
    # a name with a dot reads that column alone: new data need no column x, and its
    # missing values do not make predictions missing
    m = _quiet(glmer, "y ~ log(z.2) + poly(x.1, 2) + (1 | g)", d, family="binomial")
    p = m.predict(new.drop(columns="x"), type="link", re_form="NA")
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, m.predict(new, type="link", re_form="NA"))
    # an ordered factor: polynomial contrasts in new data too, one level or all
    m = _quiet(glmer, "y ~ w + o + (1 | g)", d, family="binomial")
    one = new.assign(o=pd.Categorical(["mid"] * 8, categories=["low", "mid", "high"], ordered=True))
    X = design_matrix(m._formula.model_spec, one)
    np.testing.assert_allclose(
        X[["o.L", "o.Q"]].to_numpy(), [[0.0, -np.sqrt(2 / 3)]] * 8, atol=1e-12
    )
    # a logical expression: both levels known, whatever new data hold
    m = _quiet(glmer, "y ~ 0 + I(w > 0.5) + (1 | g)", d, family="binomial")
    low = new.assign(w=-1.0)
    b = m.fixed_effects_["estimate"]
    np.testing.assert_allclose(m.predict(low, type="link", re_form="NA"), b["I(w > 0.5)FALSE"])


def test_factor_levels_unused_at_fit_and_relevel_positions():
    d = _spellings()
    m = _quiet(
        glmer, "y ~ w + factor(f, levels = c('Z', 'a', 'b', 'c')) + (1 | g)", d, family="binomial"
    )
    names = list(m.fixed_effects_.index)
    assert names[2:] == [
        'factor(f, levels = c("Z", "a", "b", "c"))b',
        'factor(f, levels = c("Z", "a", "b", "c"))c',
    ]
    # a level no row of the fit held is none of the model's: new data with it raise, as R's
    with pytest.raises(
        ValueError, match=r"level\(s\) \['Z'\], listed in levels but held by no row"
    ):
        m.predict(d.head(3).assign(f="Z"), re_form="NA")
    # relevel(ref = <number>) is the level at that position (k's levels 2, 5, 7: "5")
    two = _quiet(glmer, "y ~ w + relevel(factor(k), ref = 2) + (1 | g)", d, family="binomial")
    five = _quiet(glmer, "y ~ w + relevel(factor(k), ref = '5') + (1 | g)", d, family="binomial")
    np.testing.assert_allclose(two.fixed_effects_["estimate"], five.fixed_effects_["estimate"])
    with pytest.raises(ValueError, match="a number is a level's position, as in R"):
        glmer("y ~ w + relevel(factor(k), ref = 7) + (1 | g)", d, family="binomial")


def test_factor_of_an_ordered_factor_is_ordered_and_new_data_take_the_fit_s_kind():
    # R's factor() keeps an ordered factor ordered: polynomial contrasts, which glmmTMB's
    # diag() reads (it was treatment-coded: another model there)
    from sklearn_glmm.formula import glmmTMB

    d = _spellings()
    bare = _quiet(glmmTMB, "y ~ w + diag(o | g)", d, family="binomial")
    called = _quiet(glmmTMB, "y ~ w + diag(factor(o) | g)", d, family="binomial")
    assert called.loglik_ == pytest.approx(bare.loglik_, abs=1e-8)
    m = _quiet(glmer, "y ~ w + factor(o) + (1 | g)", d, family="binomial")
    assert list(m.fixed_effects_.index)[2:] == ["factor(o).L", "factor(o).Q"]
    # new data give the factor as text (read from a file) or unordered: coded as fitted
    new = d.head(12)
    as_text = new.assign(o=new["o"].astype(str))
    unordered = new.assign(o=new["o"].cat.as_unordered())
    for model in (m, _quiet(glmer, "y ~ w + o + (1 | g)", d, family="binomial")):
        want = model.predict(new, type="link", re_form="NA")
        for other in (as_text, unordered):
            np.testing.assert_allclose(model.predict(other, type="link", re_form="NA"), want)
    # fitted from text, given an ordered factor: treatment-coded as fitted
    text = _quiet(glmer, "y ~ w + o + (1 | g)", d.assign(o=d["o"].astype(str)), family="binomial")
    np.testing.assert_allclose(
        text.predict(new, type="link", re_form="NA"),
        text.predict(as_text, type="link", re_form="NA"),
    )


def test_factor_levels_are_matched_by_their_text_as_r_does():
    d = _spellings()
    by_number = _quiet(
        glmer, "y ~ w + factor(k, levels = c(7, 5, 2)) + (1 | g)", d, family="binomial"
    )
    by_text = _quiet(
        glmer, "y ~ w + factor(k, levels = c('7', '5', '2')) + (1 | g)", d, family="binomial"
    )
    np.testing.assert_allclose(
        by_text.fixed_effects_["estimate"].to_numpy(),
        by_number.fixed_effects_["estimate"].to_numpy(),
    )
    with pytest.raises(ValueError, match="no row holds any of the levels"):
        glmer("y ~ w + factor(k, levels = c('x', 'y')) + (1 | g)", d, family="binomial")
    with pytest.warns(UserWarning, match="reads a number as a position, as R does"):
        glmer("y ~ w + relevel(factor(k), ref = 2) + (1 | g)", d, family="binomial")


def test_model_specs_of_earlier_versions_predict_as_they_were_fitted():
    # a spec recorded under the earlier materializer's name (a model pickled before
    # ordered factors took polynomial contrasts and factor(levels=) dropped unused levels)
    # is applied with that version's coding: the same columns as when it was fitted
    import formulaic

    from sklearn_glmm import _formula_functions as formula_module
    from sklearn_glmm._formula_coding import LEGACY_CODING, InteractionCodingMaterializer

    d = _spellings().assign(b=lambda t: t["w"] > 0.5)
    rhs = "w + o + factor(f, levels=c('Z', 'a', 'b', 'c')) + I(w > 0.5)"
    spec = formulaic.ModelSpec(formula=rhs, materializer=InteractionCodingMaterializer)
    fitted = formulaic.model_matrix(spec, d, context=formula_module._context(legacy=True))
    assert fitted.model_spec.materializer == LEGACY_CODING
    new = d.iloc[[3, 1, 4, 1, 5]]
    got = design_matrix(fitted.model_spec, new)
    want = formulaic.model_matrix(
        fitted.model_spec, new, context=formula_module._context(legacy=True)
    )
    assert list(got.columns) == [
        "w",
        "omid",
        "ohigh",
        "factor(f, levels=c('Z', 'a', 'b', 'c'))a",
        "factor(f, levels=c('Z', 'a', 'b', 'c'))b",
        "factor(f, levels=c('Z', 'a', 'b', 'c'))c",
        "I(w > 0.5)",
    ]
    np.testing.assert_allclose(got.to_numpy(), np.asarray(want)[:, 1:])


def test_data_without_the_grouping_column_are_said_also_when_they_are_the_design():
    # a model with numeric predictors only: new data of its variables are its design
    # columns, which took the estimator's path, predicted at the population level without
    # the warning data of other models get (lme4 raises there: "object not found")
    d = _spellings()
    m = _quiet(glmer, "y ~ w + (1 | g)", d, family="binomial")
    new = pd.DataFrame({"w": [-1.0, 0.0, 1.0]})
    with pytest.warns(UserWarning, match=r"none of the grouping column\(s\) \['g'\]"):
        marginal = m.predict(new, type="response")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        np.testing.assert_allclose(m.predict(new, type="response", population="marginal"), marginal)
        zero = m.predict(new, type="response", re_form="NA")
        m.marginal_means(new)  # (population level by definition: nothing to say)
        # the estimator's calls on its design (scorers: predict_proba, decision_function)
        # without groups: the population level, as the estimator documents
        np.testing.assert_allclose(m.predict_proba(new)[:, 1], marginal)
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        m.decision_function(new.to_numpy())  # (an array: it raised on its columns)
    assert not np.allclose(zero, marginal)


def test_ordinal_formula_models_keep_their_messages_for_group_free_methods():
    # the ordinal model's own _newdata did not take the new keyword: marginal_means,
    # contrast and predict_dispersion raised a TypeError instead of their messages
    from sklearn_glmm.formula import clmm

    d = _spellings()
    d["r"] = pd.Categorical(pd.qcut(d["w"], 3, labels=["lo", "mid", "hi"]), ordered=True)
    m = _quiet(clmm, "r ~ x.1 + (1 | g)", d)
    with pytest.raises(NotImplementedError, match="marginal_means is not available"):
        m.marginal_means(d)
    with pytest.raises(ValueError, match="has no dispersion parameter"):
        m.predict_dispersion(d)


def test_a_refitted_formula_model_predicts_with_type_without_groups():
    # a refit forgets the formula: predict(X, type=...) without groups is the estimator's
    # population level (the no-groups check read the forgotten formula's variables)
    d = _spellings()
    m = _quiet(glmer, "y ~ w + (1 | g)", d, family="binomial")
    _quiet(m.fit, d[["w"]], d["y"], groups=d["g"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        p = m.predict(d[["w"]].head(3), type="response")
    np.testing.assert_allclose(p, m.predict_mean(d[["w"]].head(3)))


def test_population_interval_of_a_structured_model_at_new_times():
    # re_form=NA reads no random effect, so times not seen in fit are not needed (glmmTMB's
    # predict(re.form = NA, se.fit = TRUE)); the fixed effects' variance alone
    from sklearn_glmm.formula import glmmTMB

    df, _ = make_longitudinal("poisson", n_groups=30, n_waves=5, re_sd=0.5, random_state=3)
    m = _quiet(glmmTMB, "y ~ time + ar1(factor(time) + 0 | id)", df, family="poisson")
    new = df.iloc[:6].assign(time=df["time"].iloc[:6] + 0.5)
    table = m.predict_interval(new, scale="link", re_form="NA")
    np.testing.assert_allclose(table["fit"], m.predict(new, type="link", re_form="NA"))
    D = np.column_stack([np.ones(6), new["time"]])
    beta = m.fixed_effects_["estimate"].to_numpy()
    np.testing.assert_allclose(m.predict(new, type="link", re_form="NA"), D @ beta)
    V = m.fit_result_.vcov_fixed.to_numpy()
    np.testing.assert_allclose(table["se"], np.sqrt(np.einsum("ni,ij,nj->n", D, V, D)))
    # rows of known groups at times seen in fit still read their random effects
    assert m.predict_interval(df.iloc[:6], scale="link")["se"].gt(0).all()


def test_cbind_model_refuses_predicts_class():
    # a model of successes out of trials: predict's 0/1 class compared with counts by
    # scikit-learn's accuracy scorer gave a number, silently
    from sklearn.metrics import get_scorer

    rng = np.random.default_rng(5)
    d = pd.DataFrame({"id": np.repeat(np.arange(20), 5), "x": rng.normal(size=100)})
    d["n"] = rng.integers(2, 9, 100)
    d["y"] = rng.binomial(d["n"], 0.4)
    d["f"] = d["n"] - d["y"]
    m = _quiet(glmer, "cbind(y, f) ~ x + (1|id)", d, "binomial")
    with pytest.raises(ValueError, match="successes out of trials.*type='response'"):
        m.predict(d)
    with pytest.raises(ValueError, match="successes out of trials"):
        get_scorer("accuracy")(m, d, d["y"])
    p = m.predict(d, type="response")
    assert np.all((p > 0) & (p < 1))
