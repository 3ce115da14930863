"""Fitted attributes and input checks of ``fit``, whichever path makes them.

The result tables (``fixed_effects_``, ``ranef_``, ``random_effects_cov_``) are
made from the fit's arrays when first read; here they behave as attributes that
``fit`` sets: absent before a fit, renewed by a refit, kept by pickles and copies.
Plain numeric DataFrames, string group labels and integer binary outcomes take
shortcuts through the checks; they must give what the general checks give.
"""

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted, validate_data

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._design import build_factors
from sklearn_glmm.exceptions import NoRandomEffectsWarning

TABLES = ["fixed_effects_", "ranef_", "random_effects_cov_"]


def _data(seed=0, n_groups=25, per=8):
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{k:02d}" for k in range(n_groups)], per)
    n = len(ids)
    X = pd.DataFrame({"time": np.tile(np.arange(per, dtype=float), n_groups)})
    X["dose"] = rng.integers(0, 3, n)
    u = rng.normal(scale=0.5, size=n_groups).repeat(per)
    y = rng.poisson(np.exp(0.2 + 0.1 * X["time"] - 0.2 * X["dose"] + u))
    return X, pd.Series(y, name="count"), pd.Series(ids, name="person")


def _fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args, **kwargs)


def _assert_tables_equal(a, b):
    pd.testing.assert_frame_equal(a.fixed_effects_, b.fixed_effects_, check_exact=True)
    pd.testing.assert_frame_equal(
        a.fit_result_.vcov_fixed, b.fit_result_.vcov_fixed, check_exact=True
    )
    for name in ("ranef_", "random_effects_cov_"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert list(ta) == list(tb)
        for k in ta:
            pd.testing.assert_frame_equal(ta[k], tb[k], check_exact=True)


@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM, NegBinGLMM])
def test_tables_absent_before_fit(Est):
    est = Est()
    for name in TABLES:
        assert not hasattr(est, name)
        with pytest.raises(AttributeError, match=f"'{Est.__name__}' object has no attribute"):
            getattr(est, name)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert not any(name in vars(est) for name in TABLES)


def test_tables_match_the_estimates():
    X, y, g = _data()
    m = _fit(PoissonGLMM("1 + time"), X, y, groups=g)
    check_is_fitted(m)
    fe = m.fixed_effects_
    assert isinstance(fe, pd.DataFrame)
    assert fe.index.name == "term"
    assert fe.index.tolist() == ["(Intercept)", "time", "dose"]
    assert fe.columns.tolist() == ["estimate", "std_error", "z_value", "p_value"]
    np.testing.assert_array_equal(fe["estimate"], np.r_[m.intercept_, m.coef_])
    np.testing.assert_allclose(np.diag(m.fit_result_.vcov_fixed), fe["std_error"] ** 2, rtol=1e-12)
    np.testing.assert_array_equal(fe["z_value"], fe["estimate"] / fe["std_error"])
    assert list(m.ranef_) == ["person"] and list(m.random_effects_cov_) == ["person"]
    modes, cov = m.ranef_["person"], m.random_effects_cov_["person"]
    assert modes.shape == (25, 2) and modes.columns.tolist() == ["(Intercept)", "time"]
    assert modes.index.tolist() == sorted(set(g)) and modes.index.dtype == object
    assert cov.index.tolist() == cov.columns.tolist() == ["(Intercept)", "time"]
    np.testing.assert_allclose(cov.to_numpy(), cov.to_numpy().T)
    # read once, the same objects are kept (and can be edited or replaced as any attribute)
    assert m.fixed_effects_ is fe and m.ranef_ is m.ranef_
    m.fixed_effects_ = "replaced"
    assert m.fixed_effects_ == "replaced"


def test_glm_without_groups_has_empty_random_effect_tables():
    X, y, _ = _data()
    with pytest.warns(NoRandomEffectsWarning):
        m = PoissonGLMM().fit(X, y)
    assert m.ranef_ == {} and m.random_effects_cov_ == {}
    assert m.fixed_effects_.index.tolist() == ["(Intercept)", "time", "dose"]


def test_refit_renews_tables_read_before():
    X, y, g = _data()
    m = _fit(PoissonGLMM(), X, y, groups=g)
    old_fe, old_re = m.fixed_effects_, m.ranef_
    _fit(m, X[["time"]], y, groups=g.rename("subject"))
    assert m.fixed_effects_ is not old_fe
    assert m.fixed_effects_.index.tolist() == ["(Intercept)", "time"]
    assert list(m.ranef_) == ["subject"] and old_re is not m.ranef_
    assert m.fit_result_.vcov_fixed.shape == (2, 2)
    _assert_tables_equal(m, _fit(PoissonGLMM(), X[["time"]], y, groups=g.rename("subject")))


@pytest.mark.parametrize("read_first", [False, True])
def test_tables_survive_pickle_and_copies(read_first):
    X, y, g = _data()
    m = _fit(NegBinGLMM(), X, y, groups=g)
    if read_first:
        m.ranef_  # noqa: B018 - made before pickling
    for twin in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m), copy.copy(m)):
        _assert_tables_equal(twin, m)
        np.testing.assert_array_equal(twin.predict(X, g), m.predict(X, g))


def test_clone_has_no_tables_until_fitted():
    X, y, g = _data()
    m = _fit(PoissonGLMM(), X, y, groups=g)
    m.fixed_effects_  # noqa: B018
    twin = clone(m)
    assert not any(hasattr(twin, name) for name in TABLES)
    _assert_tables_equal(_fit(twin, X, y, groups=g), m)


def test_tables_stored_as_plain_attributes_are_read_as_they_are():
    # the state of a model pickled when fit set the tables directly
    X, y, g = _data()
    m = _fit(PoissonGLMM(), X, y, groups=g)
    tables = {name: getattr(m, name) for name in TABLES}
    state = {k: v for k, v in m.__getstate__().items() if k not in TABLES and k != "_fit_arrays"}
    state.update(tables)
    old = PoissonGLMM()
    old.__setstate__(state)
    _assert_tables_equal(old, m)
    np.testing.assert_array_equal(old.predict(X, g), m.predict(X, g))


def test_predictions_do_not_depend_on_reading_tables_first():
    X, y, g = _data()
    a = _fit(PoissonGLMM("1 + time"), X, y, groups=g)
    b = _fit(PoissonGLMM("1 + time"), X, y, groups=g)
    b.ranef_, b.random_effects_cov_  # noqa: B018
    new = g.where(g != "p00", "unseen")
    np.testing.assert_array_equal(a.predict(X, new), b.predict(X, new))


# -- validation shortcuts agree with the general checks ---------------------------------


def _frames():
    rng = np.random.default_rng(1)
    n = 12
    f = rng.normal(size=n)
    yield pd.DataFrame({"a": f})
    yield pd.DataFrame({"a": f, "b": rng.integers(0, 5, n)})
    yield pd.DataFrame({"a": f.astype(np.float32), "b": rng.integers(0, 5, n).astype(np.uint8)})
    yield pd.DataFrame(rng.normal(size=(n, 3)), columns=["x", "y", "z"])
    yield pd.DataFrame(np.asfortranarray(rng.normal(size=(n, 2))), columns=["p", "q"])
    yield pd.DataFrame({"a": f, "flag": f > 0})  # bool: the general path
    yield pd.DataFrame({"a": f, "n": pd.array(rng.integers(0, 5, n), dtype="Int64")})
    yield pd.DataFrame(rng.normal(size=(n, 2)))  # integer column names
    yield pd.DataFrame(rng.normal(size=(n, 2)), columns=[np.str_("u"), np.str_("v")])


@pytest.mark.parametrize("X", list(_frames()), ids=lambda X: "-".join(map(str, X.dtypes)))
def test_frame_validation_matches_validate_data(X):
    ref = PoissonGLMM()
    expected = validate_data(
        ref, X, reset=True, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=2
    )
    est = PoissonGLMM()
    got, _ = est._validate_X(X, reset=True)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.flags["C_CONTIGUOUS"] == expected.flags["C_CONTIGUOUS"]
    assert got.flags["F_CONTIGUOUS"] == expected.flags["F_CONTIGUOUS"]
    np.testing.assert_array_equal(got, expected)
    assert est.n_features_in_ == ref.n_features_in_
    assert hasattr(est, "feature_names_in_") == hasattr(ref, "feature_names_in_")
    if hasattr(ref, "feature_names_in_"):
        assert est.feature_names_in_.dtype == ref.feature_names_in_.dtype == object
        assert [type(c) for c in est.feature_names_in_] == [type(c) for c in ref.feature_names_in_]
        np.testing.assert_array_equal(est.feature_names_in_, ref.feature_names_in_)


def test_group_columns_validation_names_the_whole_frame():
    X, y, g = _data()
    df = X.assign(person=g)
    m = _fit(PoissonGLMM(group_columns="person"), df, y)
    assert m.feature_names_in_.tolist() == ["time", "dose", "person"]
    assert m.feature_names_in_.dtype == object and m.n_features_in_ == 3
    assert m.fixed_effects_.index.tolist() == ["(Intercept)", "time", "dose"]
    direct = _fit(PoissonGLMM(), X, y, groups=g)
    np.testing.assert_array_equal(m.coef_, direct.coef_)


def test_feature_names_follow_the_latest_fit():
    X, y, g = _data()
    m = _fit(PoissonGLMM(), X, y, groups=g)
    assert m.feature_names_in_.tolist() == ["time", "dose"]
    _fit(m, X.to_numpy(), y, groups=g)
    assert not hasattr(m, "feature_names_in_") and m.n_features_in_ == 2
    _fit(m, X[["time"]], y, groups=g)
    assert m.feature_names_in_.tolist() == ["time"] and m.n_features_in_ == 1


def test_frame_checks_still_reject_bad_frames():
    X, y, g = _data()
    with pytest.raises(ValueError, match=r"1 sample.*minimum of 2"):
        PoissonGLMM().fit(X.iloc[:1], y.iloc[:1], groups=g.iloc[:1])
    bad = X.copy()
    bad.loc[3, "time"] = np.nan
    with pytest.raises(ValueError, match="1 non-finite value"):
        PoissonGLMM().fit(bad, y, groups=g)
    # no fixed-effect column: the null model needs groups (with them it fits)
    with pytest.raises(ValueError, match=r"0 feature\(s\).*pass groups"):
        PoissonGLMM().fit(X[[]], y)


# -- group labels --------------------------------------------------------------------------


def test_a_categorical_grouping_columns_levels_keep_its_order():
    # an R factor's levels order ranef's rows; sorted as text the levels of a categorical
    # of "1".."12" came 1, 10, 11, 12, 2, ... (the fit itself the same)
    labels = pd.Categorical(["b", "a", "c", "a", "b", "c"], categories=["c", "z", "a", "b"])
    (factor,) = build_factors(pd.Series(labels, name="id"), "1", [], len(labels))
    assert list(factor.levels) == ["c", "a", "b"]  # the categories present, in order
    assert factor.levels.dtype == object
    np.testing.assert_array_equal(factor.codes, [2, 1, 0, 1, 2, 0])
    (plain,) = build_factors(np.asarray(labels), "1", [], len(labels))
    assert list(plain.levels) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["b", "a", "c", "a", "b", "c"], dtype=object),
        pd.Series(["b", "a", "c", "a", "b", "c"], dtype="str", name="group"),
        pd.Series(pd.Categorical(["b", "a", "c", "a", "b", "c"]), name="group"),
        np.array(["b", 1, "c", 1, "b", "c"], dtype=object),
        np.array([2.0, 1.0, 3.0, 1.0, 2.0, 3.0]),
        np.array(["b", "a", "c", "a", "b", "c"]),
    ],
    ids=["object-str", "pandas-str", "categorical", "mixed", "float", "numpy-str"],
)
def test_group_labels_factorise_as_the_general_path(labels):
    values = np.asarray(labels)
    native = values.dtype.kind in "iufbUS"
    codes, levels = pd.factorize(values if native else pd.Series(values, dtype=object), sort=True)
    levels = pd.Index(levels)
    (factor,) = build_factors(labels, "1", [], len(values))
    np.testing.assert_array_equal(factor.codes, codes)
    assert factor.levels.equals(levels) and factor.levels.dtype == levels.dtype
    assert [type(v) for v in factor.levels] == [type(v) for v in levels]


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["a", None, "b", "a"], dtype=object),
        np.array(["a", np.nan, "b", "a"], dtype=object),
        np.array(["a", float("inf"), "b", "a"], dtype=object),
        np.array([1.0, np.nan, 2.0, 1.0]),
        np.array([1.0, -np.inf, 2.0, 1.0]),
        pd.Series(["a", None, "b", "a"], dtype="str"),
    ],
    ids=["none", "nan", "inf", "float-nan", "float-inf", "pandas-str-na"],
)
def test_missing_group_labels_raise(labels):
    with pytest.raises(ValueError, match="missing or infinite labels in 1 of 4 row"):
        build_factors(labels, "1", [], 4)


# -- binary outcomes -----------------------------------------------------------------------


def test_binary_outcome_checks():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 1))
    g = np.repeat(np.arange(8), 5)
    y = rng.integers(0, 2, 40)
    for yy, classes in [(y, [0, 1]), (y.astype(bool), [False, True]), (y + 3, [3, 4])]:
        m = _fit(BinomialGLMM(), X, yy, groups=g)
        assert m.classes_.tolist() == classes and m.classes_.dtype == yy.dtype
    with pytest.raises(ValueError, match="Only binary classification.*got 3"):
        BinomialGLMM().fit(X, np.arange(40) % 3, groups=g)
    # counts of successes without their trials: the message says where the trials go
    with pytest.raises(
        ValueError, match=r"got 5: .* pass the trials: fit\(X, y, groups=groups, trials="
    ):
        BinomialGLMM().fit(X, np.arange(40) % 5, groups=g)
    with pytest.raises(ValueError, match=r"got 3: \['a' 'b' 'c'\]\.$"):  # labels: no hint
        BinomialGLMM().fit(X, np.array(["a", "b", "c"])[np.arange(40) % 3], groups=g)
    with pytest.raises(ValueError, match="only one class"):
        BinomialGLMM().fit(X, np.ones(40, dtype=int), groups=g)
    with pytest.raises(ValueError, match="Unknown label type 'continuous'"):
        BinomialGLMM().fit(X, rng.random(40), groups=g)
