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

# parameters estimated on their boundary are beside the point here (and tested elsewhere)
_BOUNDARY = [
    "ignore::sklearn_glmm.exceptions.OverdispersionWarning",
    "ignore::sklearn_glmm.exceptions.ZeroInflationWarning",
    "ignore::sklearn_glmm.exceptions.SingularFitWarning",
    "ignore::sklearn_glmm.exceptions.StandardErrorWarning",
]


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
            return super().fit(X, y, groups=groups, **kw)

    caught = _record(lambda: MyModel().fit(X0, YB0))
    assert [w.filename for w in caught] == [__file__]


def test_warnings_inside_scikit_learn_name_its_line():
    # called by cross_validate, the first frame outside the package is scikit-learn's
    from sklearn.model_selection import cross_validate

    caught = _record(lambda: cross_validate(BinomialGLMM(), X0, YB0, cv=2))
    names = {w.filename for w in caught if issubclass(w.category, NoRandomEffectsWarning)}
    assert names and all("sklearn_glmm" not in f for f in names)


# =========================================================================================
# 2. pandas columns a GLMM cannot read as numbers: errors that name the column and the fix
# =========================================================================================
def _frame_with(column):
    X = pd.DataFrame({"x": X0[:, 0]})
    X["c"] = column
    return X


_N = len(YC0)
_BAD_COLUMNS = {
    "datetime": (pd.date_range("2024-01-01", periods=_N), "days since a fixed start"),
    "datetime with time zone": (
        pd.date_range("2024-01-01", periods=_N, tz="UTC"),
        "days since a fixed start",
    ),
    "period": (pd.period_range("2024-01", periods=_N, freq="M"), "to_timestamp"),
    "timedelta": (pd.to_timedelta(np.arange(_N), unit="D"), "pd.Timedelta(days=1)"),
    "text": (np.where(np.arange(_N) % 2, "north", "south").astype(object), "OneHotEncoder"),
    "string dtype": (
        pd.array(np.where(np.arange(_N) % 2, "north", "south"), dtype="string"),
        "OneHotEncoder",
    ),
    "categorical": (pd.Categorical(np.where(np.arange(_N) % 2, "a", "b")), "OneHotEncoder"),
    # numeric categories used to be fitted silently as numbers
    "numeric categories": (pd.Categorical(np.arange(_N) % 3), "astype(float)"),
    "numbers and text": (np.array([1, "a"] * (_N // 2), dtype=object), "OneHotEncoder"),
}


@pytest.mark.parametrize("case", list(_BAD_COLUMNS))
@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM])
def test_non_numeric_column_names_the_column_and_the_fix(Est, case):
    column, fix = _BAD_COLUMNS[case]
    y = YB0 if Est is BinomialGLMM else YC0
    with pytest.raises(ValueError, match=r"X column 'c'") as info:
        Est().fit(_frame_with(column), y, groups=G0)
    assert fix in str(info.value)


def test_text_column_error_mentions_formula_and_groups():
    with pytest.raises(ValueError) as info:
        PoissonGLMM().fit(_frame_with(np.array(["a", "b"] * 60, dtype=object)), YC0, groups=G0)
    msg = str(info.value)
    assert "sklearn_glmm.formula" in msg and "group_columns" in msg and "ColumnTransformer" in msg


def test_non_numeric_column_at_predict_names_the_column():
    m = PoissonGLMM().fit(_frame_with(X0[:, 1]), YC0, groups=G0)
    with pytest.raises(ValueError, match="X column 'c' holds dates"):
        m.predict(_frame_with(pd.date_range("2024-01-01", periods=_N)))


def test_grouping_columns_may_hold_text():
    X = _frame_with(np.array([f"id{k}" for k in G0], dtype=object)).rename(columns={"c": "id"})
    m = PoissonGLMM(group_columns="id").fit(X, YC0)
    assert list(m.ranef_) == ["id"] and m.ranef_["id"].index[0] == "id0"
    assert m.predict(X).shape == (_N,)


def test_numeric_boolean_and_nullable_columns_still_fit():
    X = pd.DataFrame(
        {
            "x": X0[:, 0],
            "flag": X0[:, 1] > 0,
            "n": pd.array(np.arange(_N) % 5, dtype="Int64"),
            "o": (np.arange(_N) % 4).astype(object),
        }
    )
    m = PoissonGLMM().fit(X, YC0, groups=G0)
    assert np.all(np.isfinite(m.coef_))


def test_datetime_converted_as_suggested_fits():
    dates = pd.Series(pd.date_range("2024-01-01", periods=_N))
    X = pd.DataFrame(
        {"x": X0[:, 0], "day": (dates - pd.Timestamp("2020-01-01")) / pd.Timedelta(days=1)}
    )
    PoissonGLMM().fit(X, YC0, groups=G0)


# =========================================================================================
# 3. polars (any DataFrame narwhals reads): X, y, groups and group_columns keep their names
# =========================================================================================
@pytest.fixture()
def pl():
    pytest.importorskip("narwhals")  # how other libraries' frames are read (scikit-learn's)
    return pytest.importorskip("polars")


def _polars_data(pl):
    frame = pl.DataFrame({"time": X0[:, 0], "dose": X0[:, 1], "id": G0, "visits": YC0})
    return frame


def test_polars_inputs_keep_their_names(pl):
    frame = _polars_data(pl)
    m = PoissonGLMM().fit(frame.select("time", "dose"), frame["visits"], groups=frame["id"])
    ref = PoissonGLMM().fit(pd.DataFrame(X0, columns=["time", "dose"]), YC0, groups=G0)
    assert list(m.ranef_) == ["id"]
    np.testing.assert_allclose(m.ranef_["id"].to_numpy(), ref.ranef_["group"].to_numpy())
    assert list(m.feature_names_in_) == ["time", "dose"]
    assert list(m.fixed_effects_.index) == ["(Intercept)", "time", "dose"]
    np.testing.assert_allclose(m.coef_, ref.coef_)
    assert "visits" in str(m.summary())
    pred = m.predict(frame.select("time", "dose"), frame["id"])
    np.testing.assert_allclose(pred, ref.predict(pd.DataFrame(X0, columns=["time", "dose"]), G0))


@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.SingularFitWarning")
def test_polars_groups_frame_and_group_columns(pl):
    frame = _polars_data(pl).with_columns((pl.col("id") % 3).alias("site"))
    X = frame.select("time", "dose")
    m = PoissonGLMM().fit(X, frame["visits"], groups=frame.select("id", "site"))
    assert sorted(m.ranef_) == ["id", "site"]
    m2 = PoissonGLMM(group_columns=["id", "site"]).fit(
        frame.select("time", "dose", "id", "site"), frame["visits"]
    )
    assert sorted(m2.ranef_) == ["id", "site"]
    assert list(m2.feature_names_in_) == ["time", "dose", "id", "site"]
    np.testing.assert_allclose(
        m2.predict(frame.select("time", "dose", "id", "site")),
        m.predict(X, frame.select("id", "site")),
    )


def test_polars_binomial_with_text_groups_and_labels(pl):
    frame = pl.DataFrame(
        {
            "time": X0[:, 0],
            "id": [f"p{k}" for k in G0],
            "answer": np.where(YB0 == 1, "yes", "no"),
        }
    )
    m = BinomialGLMM().fit(frame.select("time"), frame["answer"], groups=frame["id"])
    assert list(m.classes_) == ["no", "yes"] and list(m.ranef_) == ["id"]
    assert m.predict_proba(frame.select("time"), frame["id"]).shape == (_N, 2)
    assert 0 <= m.score(frame.select("time"), frame["answer"], groups=frame["id"]) <= 1


def test_polars_non_numeric_column_error(pl):
    frame = _polars_data(pl).with_columns(
        pl.Series("region", ["n", "s"] * (_N // 2), dtype=pl.Categorical)
    )
    with pytest.raises(ValueError, match="X column 'region' is categorical"):
        PoissonGLMM().fit(frame.select("time", "region"), frame["visits"], groups=frame["id"])


def test_polars_unnamed_series_is_unnamed(pl):
    m = PoissonGLMM().fit(X0, pl.Series(YC0), groups=pl.Series(G0))
    assert list(m.ranef_) == ["group"]


# =========================================================================================
# 4. sparse X (OneHotEncoder's default output): made dense when modest, else a clear error
# =========================================================================================
@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.SingularFitWarning")
@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "csr_array", "coo_array"])
@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM])
def test_sparse_X_fits_and_predicts_as_dense(Est, fmt):
    import scipy.sparse as sp

    y = YB0 if Est is BinomialGLMM else YC0
    Xs = getattr(sp, fmt)(X0)
    dense = Est(random_effects="1 + x0").fit(X0, y, groups=G0)
    sparse = Est(random_effects="1 + x0").fit(Xs, y, groups=G0)
    np.testing.assert_allclose(sparse.coef_, dense.coef_)
    np.testing.assert_allclose(sparse.predict(Xs, G0), dense.predict(X0, G0))
    np.testing.assert_allclose(sparse.predict(X0, G0), dense.predict(X0, G0))
    np.testing.assert_allclose(
        sparse.predict_proba(getattr(sp, fmt)(X0[:7]), G0[:7]), dense.predict_proba(X0[:7], G0[:7])
    )


def test_one_hot_encoder_pipeline_with_sparse_output():
    import scipy.sparse as sp
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    region = np.array([f"r{k}" for k in np.arange(_N) % 10], dtype=object)
    X = pd.DataFrame({"x": X0[:, 0], "region": region})
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(drop="first"), ["region"])], remainder="passthrough"
    )
    assert sp.issparse(encode.fit_transform(X))  # the default output here is sparse
    pipe = make_pipeline(encode, PoissonGLMM()).fit(X, YC0, poissonglmm__groups=G0)
    assert pipe.predict(X).shape == (_N,)
    assert pipe[-1].coef_.shape == (10,)


def test_huge_sparse_X_raises_naming_sparse_output():
    import scipy.sparse as sp

    Xs = sp.csr_matrix((20_000, 10_000))  # 2e8 entries once dense
    y = np.zeros(20_000)
    with pytest.raises(ValueError, match=r"sparse_output=False") as info:
        PoissonGLMM().fit(Xs, y, groups=np.arange(20_000) % 10)
    assert "(20000, 10000)" in str(info.value)


def test_huge_sparse_X_at_predict_raises():
    import scipy.sparse as sp

    m = PoissonGLMM().fit(X0, YC0, groups=G0)
    Xs = sp.csr_matrix((60_000_000, 2))
    with pytest.raises(ValueError, match="sparse_output=False"):
        m.predict(Xs)


# =========================================================================================
# 1. count predict_proba: support fixed at fit (classes_), the tail in the last column
# =========================================================================================
def _counts(seed=0, n_groups=60, per=5, scale=1.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    X = rng.normal(size=(len(g), 2))
    mu = scale * np.exp(0.2 + 0.3 * X[:, 0] + rng.normal(0, 0.4, n_groups)[g])
    return X, rng.poisson(mu), g


@pytest.mark.filterwarnings(*_BOUNDARY)
@pytest.mark.parametrize(
    "make", [PoissonGLMM, NegBinGLMM, lambda: PoissonGLMM(zero_inflation=True)]
)
def test_count_support_is_learnt_at_fit(make):
    from scipy import stats

    X, y, g = _counts()
    m = make().fit(X, y, groups=g)
    assert m.max_count_ >= y.max()
    np.testing.assert_array_equal(m.classes_, np.arange(m.max_count_ + 1))
    if type(m) is PoissonGLMM and not m.zero_inflation:
        # the 0.999 quantile of the largest fitted (conditional) mean is covered
        mu_hi = m.predict(X, g).max()
        assert m.max_count_ >= stats.poisson.ppf(0.999, mu_hi)
    # the width does not depend on the rows predicted
    assert m.predict_proba(X[:3], g[:3]).shape == (3, m.max_count_ + 1)
    assert m.predict_proba(X).shape == (len(y), m.max_count_ + 1)
    np.testing.assert_allclose(m.predict_proba(X[:3], g[:3]), m.predict_proba(X, g)[:3])


@pytest.mark.filterwarnings(*_BOUNDARY)
@pytest.mark.parametrize("population", ["marginal", "zero"])
@pytest.mark.parametrize("make", [PoissonGLMM, NegBinGLMM, lambda: NegBinGLMM(zero_inflation=True)])
def test_count_proba_rows_sum_to_one_with_the_tail_last(make, population):
    X, y, g = _counts()
    m = make().fit(X, y, groups=g)
    for K in (0, 1, 3, None):
        proba = m.predict_proba(X, population=population, max_count=K)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
        assert np.all(proba >= 0)


def test_count_proba_of_a_new_group_with_a_large_sd_matches_the_integral():
    # a new group's predictive distribution integrates the pmf over the random effect;
    # a fixed 32-node Gauss-Hermite rule lost accuracy as the SD grew
    from scipy import integrate, stats

    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(80), 10)
    x = rng.normal(size=len(g))
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 2.5, 80)[g]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM().fit(x[:, None], y, groups=g)
    sd = float(np.sqrt(m.random_effects_cov_["group"].iloc[0, 0]))
    assert sd > 2.0
    rows = np.array([[-1.0], [0.5]])
    proba = m.predict_proba(rows, max_count=6)
    for i, eta in enumerate(m.intercept_ + rows[:, 0] * m.coef_[0]):

        def pmf(b, k, eta=eta):
            return stats.poisson.pmf(k, np.exp(eta + b)) * stats.norm.pdf(b, 0, sd)

        want = [integrate.quad(pmf, -12 * sd, 12 * sd, args=(k,), limit=400)[0] for k in range(6)]
        np.testing.assert_allclose(proba[i, :6], want, atol=1e-9)


def test_count_proba_last_column_is_the_tail():
    from scipy import stats

    X, y, g = _counts()
    m = PoissonGLMM().fit(X, y, groups=g)
    mu = m.predict(X, g)  # known groups: conditional on their modes
    proba = m.predict_proba(X, g, max_count=3)
    np.testing.assert_allclose(proba[:, :3], stats.poisson.pmf(np.arange(3)[None, :], mu[:, None]))
    np.testing.assert_allclose(proba[:, 3], stats.poisson.sf(2, mu), rtol=1e-10)


def test_count_max_count_constructor_parameter_fixes_the_support():
    X, y, g = _counts()
    m = PoissonGLMM(max_count=4).fit(X, y, groups=g)
    assert m.max_count_ == 4
    np.testing.assert_array_equal(m.classes_, np.arange(5))
    assert m.predict_proba(X).shape == (len(y), 5)
    # an explicit max_count at predict time wins
    assert m.predict_proba(X, max_count=7).shape == (len(y), 8)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_count_max_count_must_be_a_non_negative_integer(bad):
    X, y, g = _counts()
    m = PoissonGLMM().fit(X, y, groups=g)
    with pytest.raises(ValueError, match="max_count"):
        m.predict_proba(X, max_count=bad)
    with pytest.raises(ValueError, match="max_count"):
        PoissonGLMM(max_count=bad).fit(X, y, groups=g)


def test_count_proba_for_counts_in_the_millions_asks_for_max_count():
    X, y, g = _counts(scale=1e6)
    m = PoissonGLMM().fit(X, y, groups=g)
    # no support is learnt: a column per count would need millions of columns
    assert m.max_count_ is None and not hasattr(m, "classes_")
    with pytest.raises(ValueError, match=r"Pass max_count=\.\.\. to predict_proba"):
        m.predict_proba(X)
    proba = m.predict_proba(X[:2], g[:2], max_count=10)
    np.testing.assert_allclose(proba[:, -1], 1.0)  # all the mass is beyond 10
    # a refit on small counts learns a support again
    Xs, ys, gs = _counts()
    assert m.fit(Xs, ys, groups=gs).max_count_ >= ys.max() and hasattr(m, "classes_")


def test_cross_val_predict_proba_for_counts():
    # scikit-learn label-encodes y for method="predict_proba": exact when y holds every
    # count from 0 to its maximum, with that maximum as max_count (the same columns in
    # every fold)
    from sklearn.model_selection import KFold, cross_val_predict

    X, y, g = _counts(scale=0.5)
    assert set(np.unique(y)) == set(range(y.max() + 1))
    frame = pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "id": g})
    est = PoissonGLMM(group_columns="id", max_count=int(y.max()))
    cv = KFold(4, shuffle=True, random_state=0)
    out = cross_val_predict(est, frame, y, cv=cv, method="predict_proba")
    assert out.shape == (len(y), y.max() + 1)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    by_hand = np.empty_like(out)
    for train, test in cv.split(frame):
        fold = PoissonGLMM(group_columns="id", max_count=int(y.max()))
        by_hand[test] = fold.fit(frame.iloc[train], y[train]).predict_proba(frame.iloc[test])
    np.testing.assert_allclose(out, by_hand)


def test_log_loss_on_the_learnt_support():
    from sklearn.metrics import log_loss

    from sklearn_glmm.model_selection import mean_log_likelihood

    X, y, g = _counts()
    m = PoissonGLMM().fit(X, y, groups=g)
    proba = m.predict_proba(X, g)
    loss = log_loss(np.minimum(y, m.max_count_), proba, labels=m.classes_)
    # counts below max_count_ are exact: log_loss is minus the mean log predictive density
    below = y < m.max_count_
    ll = np.log(proba[np.arange(len(y)), np.minimum(y, m.max_count_)])
    assert loss == pytest.approx(-ll.mean())
    if below.all():
        assert loss == pytest.approx(-mean_log_likelihood(m, X, y, groups=g), rel=1e-8)


# =========================================================================================
# 6. pickles carry what prediction needs, not the training data
# =========================================================================================
def _pickled(m):
    import pickle

    return pickle.loads(pickle.dumps(m))


def _big_counts(n, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 200, n)
    X = rng.normal(size=(n, 3))
    y = rng.poisson(np.exp(0.2 + X @ [0.3, -0.2, 0.1] + rng.normal(0, 0.5, 200)[g]))
    return pd.DataFrame(X, columns=["a", "b", "c"]), y, g


def test_pickle_size_does_not_grow_with_the_rows():
    import pickle

    sizes = {}
    for n in (2_000, 40_000):
        X, y, g = _big_counts(n)
        sizes[n] = len(pickle.dumps(PoissonGLMM().fit(X, y, groups=g)))
    assert sizes[40_000] < 1.2 * sizes[2_000]  # the data (~7 MB at 40,000 rows) stay out
    X, y, g = _big_counts(40_000)
    kept = len(pickle.dumps(PoissonGLMM(keep_data=True).fit(X, y, groups=g)))
    assert kept > 20 * sizes[40_000]


@pytest.mark.filterwarnings(*_BOUNDARY)
@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM, NegBinGLMM])
def test_unpickled_model_predicts_and_summarises_without_the_data(Est):
    X = pd.DataFrame({"time": X0[:, 0], "flag": (X0[:, 1] > 0).astype(float)})
    y = YB0 if Est is BinomialGLMM else YC0
    m = Est(random_effects="1 + time").fit(X, y, groups=G0)
    u = _pickled(m)
    assert "_objective" not in vars(u) and "_train" not in vars(u)
    assert all(f.codes is None for f in u.fit_result_.factors)
    for method in ("predict", "predict_proba", "predict_mean"):
        np.testing.assert_allclose(getattr(u, method)(X, G0), getattr(m, method)(X, G0))
        np.testing.assert_allclose(getattr(u, method)(X), getattr(m, method)(X))
    assert u.score(X, y, groups=G0) == pytest.approx(m.score(X, y, groups=G0))
    pd.testing.assert_frame_equal(u.fixed_effects_, m.fixed_effects_)
    pd.testing.assert_frame_equal(u.ranef_["group"], m.ranef_["group"])
    pd.testing.assert_frame_equal(u.confint(method="wald"), m.confint(method="wald"))
    assert str(u.summary()) == str(m.summary())
    assert u.report() == m.report()
    pd.testing.assert_frame_equal(u.predict_interval(X, G0), m.predict_interval(X, G0))
    pd.testing.assert_frame_equal(u.marginal_means(X), m.marginal_means(X))
    pd.testing.assert_frame_equal(u.ranef()["group"], m.ranef()["group"])


_DATA_HUNGRY = {
    "profile intervals": lambda m: m.confint(method="profile"),
    "bootstrap intervals": lambda m: m.confint(method="bootstrap", n_boot=2),
    "profile": lambda m: m.profile(),
    "simulate": lambda m: m.simulate(),
    "residuals": lambda m: m.residuals(),
    "fitted": lambda m: m.fitted(),
    "scaled residuals": lambda m: m.scaled_residuals(n_sim=100),
    "overdispersion": lambda m: m.overdispersion(),
}


@pytest.mark.parametrize("case", list(_DATA_HUNGRY))
def test_unpickled_model_says_how_to_get_the_data_hungry_methods(case):
    from sklearn_glmm.exceptions import TrainingDataError

    m = PoissonGLMM().fit(X0, YC0, groups=G0)
    with pytest.raises(TrainingDataError, match="keep_data=True"):
        _DATA_HUNGRY[case](_pickled(m))
    _DATA_HUNGRY[case](m)  # the fitted model keeps its data in memory


def test_anova_on_unpickled_models_says_how_to_get_it():
    from sklearn_glmm.exceptions import TrainingDataError
    from sklearn_glmm.inference import anova

    small = PoissonGLMM().fit(X0[:, :1], YC0, groups=G0)
    big = PoissonGLMM().fit(X0, YC0, groups=G0)
    with pytest.raises(TrainingDataError, match="refit it"):
        anova(_pickled(small), _pickled(big))


def test_keep_data_pickles_the_training_data():
    m = PoissonGLMM(keep_data=True).fit(X0, YC0, groups=G0)
    u = _pickled(m)
    np.testing.assert_allclose(u.residuals(), m.residuals())
    np.testing.assert_allclose(u.simulate(random_state=0), m.simulate(random_state=0))
    pd.testing.assert_frame_equal(
        u.confint(method="profile", parm="fixed"), m.confint(method="profile", parm="fixed")
    )
    assert "keep_data=True" in repr(m) and u.get_params()["keep_data"] is True


def test_deepcopy_keeps_the_data_and_a_refit_restores_them():
    import copy

    m = PoissonGLMM().fit(X0, YC0, groups=G0)
    np.testing.assert_allclose(copy.deepcopy(m).residuals(), m.residuals())
    u = _pickled(m)
    u.fit(X0, YC0, groups=G0)
    np.testing.assert_allclose(u.residuals(), m.residuals())
    assert "_data_dropped" not in vars(u)


def test_parallel_profile_and_bootstrap_ship_the_data_to_their_workers():
    m = PoissonGLMM().fit(X0, YC0, groups=G0)
    one = m.confint(method="profile", parm="fixed")
    two = m.confint(method="profile", parm="fixed", n_jobs=2)
    pd.testing.assert_frame_equal(one, two)
    b1 = m.confint(method="bootstrap", n_boot=8, random_state=0)
    b2 = m.confint(method="bootstrap", n_boot=8, random_state=0, n_jobs=2)
    pd.testing.assert_frame_equal(b1, b2)


@pytest.mark.filterwarnings(*_BOUNDARY)
def test_compare_structures_in_parallel_keeps_the_fits_data():
    from sklearn_glmm.model_selection import compare_structures

    X = pd.DataFrame(X0, columns=["a", "b"])
    result = compare_structures(PoissonGLMM(), ["1", "1 + a"], X, YC0, groups=G0, n_jobs=2)
    for m in result.estimators_.values():
        assert m.fit_result_.has_data and "_pickle_with_data" not in vars(m)
        m.residuals()
    assert result.table["p_value"].notna().any()  # the likelihood-ratio test read the data
