"""A model fitted from Dask collections partitioned by group equals the in-memory fit."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from sklearn_glmm import BinomialGLMM, NegBinGLMM, OrdinalGLMM, PoissonGLMM  # noqa: E402
from sklearn_glmm._engine import start  # noqa: E402
from sklearn_glmm.dask import fit_partitioned  # noqa: E402
from sklearn_glmm.exceptions import (  # noqa: E402
    OverdispersionWarning,
    SingularFitWarning,
    TrainingDataError,
)

RTOL = 1e-6


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        )
        c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _data(family, n_groups=200, per=15, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=len(g))
    t = rng.uniform(0, 3, len(g))
    b0 = rng.normal(0, 0.8, n_groups)[g]
    b1 = rng.normal(0, 0.3, n_groups)[g]
    eta = -0.3 + 0.5 * x + 0.2 * t + b0 + b1 * t
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    elif family == "negbin":
        mu = np.exp(0.5 * eta)
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    else:
        y = rng.poisson(np.exp(0.5 * eta))
    return pd.DataFrame(dict(x=x, t=t, y=y, id=g))


def _by_group(df, n_parts):
    """A Dask DataFrame of ``n_parts`` partitions, each holding whole groups."""
    per = int(df.groupby("id").size().iloc[0])
    n_groups = df["id"].nunique()
    return dd.from_pandas(df, chunksize=per * -(-n_groups // n_parts), sort=False)


def _model_warnings(records):
    """The model's own warnings (the library's and scikit-learn's), not the cluster's."""
    mine = [
        w for w in records if w.category.__module__.split(".")[0] in ("sklearn_glmm", "sklearn")
    ]
    return sorted(str(w.message) for w in mine)


def _same(m_mem, m_dask):
    """Estimates, standard errors, log-likelihood and modes to RTOL (relative)."""
    np.testing.assert_allclose(
        m_dask.fit_result_.params, m_mem.fit_result_.params, rtol=RTOL, atol=1e-9
    )
    np.testing.assert_allclose(m_dask.loglik_, m_mem.loglik_, rtol=1e-10)
    fe_m, fe_d = m_mem.fixed_effects_, m_dask.fixed_effects_
    np.testing.assert_allclose(fe_d["estimate"], fe_m["estimate"], rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(fe_d["std_error"], fe_m["std_error"], rtol=1e-4)
    for name, cov in m_mem.random_effects_cov_.items():
        np.testing.assert_allclose(m_dask.random_effects_cov_[name], cov, rtol=RTOL, atol=1e-9)
        np.testing.assert_allclose(
            m_dask.ranef_[name].to_numpy(), m_mem.ranef_[name].to_numpy(), rtol=1e-5, atol=1e-7
        )
        assert list(m_dask.ranef_[name].index) == list(m_mem.ranef_[name].index)
    assert m_dask.converged_ == m_mem.converged_
    assert m_dask.nobs_ == m_mem.nobs_
    np.testing.assert_allclose(m_dask.aic_, m_mem.aic_, rtol=1e-10)


@pytest.mark.parametrize(
    "est_cls, family, re",
    [
        (BinomialGLMM, "binomial", None),
        (BinomialGLMM, "binomial", "1 + t"),
        (PoissonGLMM, "poisson", None),
        (PoissonGLMM, "poisson", "1 + t"),
        (PoissonGLMM, "poisson", "(1 + t) + (0 + x)"),  # (blocks of correlated terms)
        (NegBinGLMM, "negbin", None),
        (NegBinGLMM, "negbin", "1 + t"),
    ],
)
def test_partitioned_equals_in_memory(client, est_cls, family, re):
    df = _data(family)
    ddf = _by_group(df, 3)
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        m_mem = est_cls(random_effects=re).fit(df[["x", "t"]], df["y"], groups=df["id"])
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        m_dask = fit_partitioned(est_cls(random_effects=re), ddf[["x", "t"]], ddf["y"], ddf["id"])
    _same(m_mem, m_dask)
    # the Hessian in closed form both ways: the partitions' blocks summed
    np.testing.assert_allclose(
        m_dask.fit_record_.hessian, m_mem.fit_record_.hessian, rtol=1e-7, atol=1e-9
    )
    # the same checks warn (here: a singular random slope for the binomial data)
    assert _model_warnings(w_dask) == _model_warnings(w_mem)
    # predictions read only the fitted attributes
    np.testing.assert_allclose(
        m_dask.predict(df[["x", "t"]].iloc[:50], groups=df["id"].iloc[:50]),
        m_mem.predict(df[["x", "t"]].iloc[:50], groups=df["id"].iloc[:50]),
        rtol=1e-6,
    )
    assert "Random effects" in str(m_dask.summary())


@pytest.mark.parametrize(
    "est", [PoissonGLMM(random_effects="1 + t"), NegBinGLMM()], ids=["poisson", "negbin"]
)
def test_large_data_path(client, monkeypatch, est):
    """Above the subsampling size the start comes from the same row and level subsets."""
    from sklearn_glmm import _dask_start

    monkeypatch.setattr(start, "_SUBSAMPLE_ROWS", 1_000)
    monkeypatch.setattr(start, "_SUBSAMPLE_TARGET", 400)
    # (both paths take their subsets: in memory the GLM's rows, partitioned the start's)
    subsets, glm_rows, large_start = [], start._glm_rows, _dask_start._large_start

    def spy_rows(obj):
        out = glm_rows(obj)
        subsets.append(("memory", out is not obj))
        return out

    def spy_start(*args):
        subsets.append(("partitioned", True))
        return large_start(*args)

    monkeypatch.setattr(start, "_glm_rows", spy_rows)
    monkeypatch.setattr(_dask_start, "_large_start", spy_start)
    df = _data("negbin" if isinstance(est, NegBinGLMM) else "poisson", 400, 10, seed=3)
    m_mem = clone(est).fit(df[["x", "t"]], df["y"], groups=df["id"])
    ddf = _by_group(df, 4)
    m_dask = fit_partitioned(clone(est), ddf[["x", "t", "id"]], ddf["y"], groups="id")
    assert ("memory", True) in subsets and ("partitioned", True) in subsets
    _same(m_mem, m_dask)
    # the grouping column named at fit is found in X at predict, as in memory
    new = df[["x", "t", "id"]].iloc[:20]
    np.testing.assert_allclose(
        m_dask.predict(new, groups="id"),
        m_mem.predict(new[["x", "t"]], groups=new["id"]),
        rtol=1e-6,
    )


def test_probit_link(client):
    df = _data("binomial", seed=12)
    df["y"] = np.where(df["y"] == 1, "yes", "no")  # any two classes
    m_mem = BinomialGLMM(link="probit").fit(df[["x", "t"]], df["y"], groups=df["id"])
    ddf = _by_group(df, 2)
    m_dask = fit_partitioned(BinomialGLMM(link="probit"), ddf[["x", "t"]], ddf["y"], ddf["id"])
    _same(m_mem, m_dask)
    assert list(m_dask.classes_) == list(m_mem.classes_) == ["no", "yes"]


def test_negbin_on_poisson_counts_leaves_the_theta_ridge_as_in_memory(client):
    # theta runs to the Poisson limit: the run leaves the ridge early, the model is fitted
    # on the bound and the ridge read back for a dip, each an evaluation of the partitions
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(150), 8)
    x = rng.normal(size=len(g))
    y = rng.poisson(np.exp(0.8 + 0.3 * x + rng.normal(0, 0.6, 150)[g]))
    df = pd.DataFrame(dict(x=x, y=y, id=g))
    with pytest.warns(OverdispersionWarning):
        m_mem = NegBinGLMM().fit(df[["x"]], df["y"], groups=df["id"])
    ddf = _by_group(df, 3)
    with pytest.warns(OverdispersionWarning):
        m_dask = fit_partitioned(NegBinGLMM(), ddf[["x", "id"]], ddf["y"], groups="id")
    assert [s[0] for s in m_mem.fit_record_.stages] == ["laplace", "ridge bound"]
    assert [s[0] for s in m_dask.fit_record_.stages] == ["laplace", "ridge bound"]
    assert m_mem.theta_at_boundary_ and m_dask.theta_at_boundary_
    _same(m_mem, m_dask)


def test_negbin_and_quadrature(client):
    df = _data("negbin", seed=5)
    ddf = _by_group(df, 2)
    for est in (NegBinGLMM(), BinomialGLMM(n_agq=5)):
        y = df["y"] if isinstance(est, NegBinGLMM) else (df["y"] > 0).astype(int)
        m_mem = est.fit(df[["x", "t"]], y, groups=df["id"])
        yd = ddf["y"] if isinstance(est, NegBinGLMM) else (ddf["y"] > 0).astype(int)
        m_dask = fit_partitioned(type(est)(**est.get_params()), ddf[["x", "t"]], yd, ddf["id"])
        _same(m_mem, m_dask)


def test_fit_accepts_dask_collections(client):
    """``est.fit`` hands Dask collections to the partitioned fit."""
    df = _data("binomial", seed=6)
    ddf = _by_group(df, 2)
    m_mem = BinomialGLMM(random_effects="1 + t").fit(df[["x", "t"]], df["y"], groups=df["id"])
    m_dask = BinomialGLMM(random_effects="1 + t").fit(ddf[["x", "t"]], ddf["y"], groups=ddf["id"])
    _same(m_mem, m_dask)
    assert "Model: y ~" in str(m_dask.summary())
    # grouping column named by the estimator
    m_cols = BinomialGLMM(random_effects="1 + t", group_columns="id").fit(
        ddf[["x", "t", "id"]], ddf["y"]
    )
    np.testing.assert_allclose(
        m_cols.fit_result_.params, m_mem.fit_result_.params, rtol=RTOL, atol=1e-9
    )
    with pytest.raises(NotImplementedError, match="trials"):
        BinomialGLMM().fit(ddf[["x", "t"]], ddf["y"], groups=ddf["id"], trials=ddf["y"] + 1)


def test_aliased_column_dropped_as_in_memory(client):
    """The aliased-column test reads the stacked partitions' R factor."""
    from sklearn_glmm.exceptions import RankDeficiencyWarning

    df = _data("binomial", seed=9)
    df["x2"] = 2.0 * df["x"] - df["t"]
    with pytest.warns(RankDeficiencyWarning):
        m_mem = BinomialGLMM().fit(df[["x", "t", "x2"]], df["y"], groups=df["id"])
    ddf = _by_group(df, 3)
    with pytest.warns(RankDeficiencyWarning, match="x2"):
        m_dask = fit_partitioned(BinomialGLMM(), ddf[["x", "t", "x2"]], ddf["y"], ddf["id"])
    _same(m_mem, m_dask)
    assert np.isnan(m_dask.fixed_effects_.loc["x2", "estimate"])


def test_weights_and_offset(client):
    df = _data("poisson", seed=10)
    df["id"] = "g" + df["id"].astype(str)  # text labels: sorted as text ("g10" < "g2")
    rng = np.random.default_rng(0)
    df["w"] = rng.uniform(0.5, 2.0, len(df))
    df["off"] = rng.normal(0.0, 0.2, len(df))
    m_mem = PoissonGLMM(random_effects="1 + t").fit(
        df[["x", "t"]], df["y"], groups=df["id"], sample_weight=df["w"], offset=df["off"]
    )
    ddf = _by_group(df, 2)
    m_dask = fit_partitioned(
        PoissonGLMM(random_effects="1 + t"),
        ddf[["x", "t"]],
        ddf["y"],
        ddf["id"],
        sample_weight=ddf["w"],
        offset=ddf["off"],
    )
    _same(m_mem, m_dask)
    # the power tools ask for the offset again, as of the in-memory fit
    from sklearn_glmm import GLMMSpec

    assert m_dask._fit_offset and m_mem._fit_offset
    with pytest.raises(ValueError, match="fitted with an offset"):
        GLMMSpec.from_fitted(m_dask)
    with pytest.raises(ValueError, match="zero for every row"):
        fit_partitioned(
            PoissonGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"], sample_weight=ddf["w"] * 0
        )


def test_input_warnings_as_in_memory(client):
    """An id column left in X and an exposure passed as the offset are warned of as in
    memory (the partitions describe them; the driver warns)."""
    df = _data("poisson", seed=12)
    df["days"] = np.random.default_rng(1).integers(20, 200, len(df)).astype(float)
    ddf = _by_group(df, 2)
    with pytest.warns(UserWarning) as seen:
        fit_partitioned(PoissonGLMM(), ddf[["x", "id"]], ddf["y"], ddf["id"], offset=ddf["days"])
    messages = [str(w.message) for w in seen]
    assert any(
        "X's column 'id' holds the labels of the grouping factor 'id'" in m for m in messages
    )
    assert any(m.startswith("offset spans 2") for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        fit_partitioned(PoissonGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"])
    # an exposure of a narrow span (whole numbers of days, 1 to 14): whole on every part
    df["days"] = np.random.default_rng(2).integers(1, 15, len(df))
    ddf = _by_group(df, 2)
    with pytest.warns(UserWarning, match="offset holds whole numbers from 1 to 14"):
        fit_partitioned(PoissonGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"], offset=ddf["days"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        off = np.log(ddf["days"])
        fit_partitioned(PoissonGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"], offset=off)


def test_row_order_compared_partition_by_partition(client):
    """y holding X's row labels in another order (each partition's rows shuffled) is
    warned of as in memory; columns of X's own frame are not."""
    df = _data("binomial", n_groups=60, per=6, seed=4)
    df.index = df.index + 1000  # (labels of their own: X's index is not 0..n-1)
    ddf = _by_group(df, 2)
    shuffled = ddf["y"].map_partitions(lambda s: s.sample(frac=1.0, random_state=0))
    with pytest.warns(UserWarning, match="in a partition: X and y hold the same row labels"):
        fit_partitioned(BinomialGLMM(), ddf[["x", "t"]], shuffled, ddf["id"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        fit_partitioned(BinomialGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"])
        # X rebuilt from an array (its partitions' indexes make 0..n-1) beside a y of
        # other labels in the same positions: not compared, as in memory
        base = df.reset_index(drop=True)  # (ordered by id: its labels 0..n-1)
        sorted_df = base.sample(frac=1.0, random_state=1).sort_values("id", kind="stable")
        rebuilt = pd.DataFrame(sorted_df[["x", "t"]].to_numpy(), columns=["x", "t"])
        X = dd.from_pandas(rebuilt, chunksize=len(df) // 2, sort=False)
        y = dd.from_pandas(sorted_df["y"], chunksize=len(df) // 2, sort=False)
        g = dd.from_pandas(sorted_df["id"], chunksize=len(df) // 2, sort=False)
        BinomialGLMM().fit(rebuilt, sorted_df["y"], groups=sorted_df["id"])  # (silent)
        fit_partitioned(BinomialGLMM(), X, y, g)


def test_separation_warns_as_in_memory(client):
    """A separated predictor: the in-memory test runs on the gathered rows (few here)."""
    df = _data("binomial", seed=11)
    rng = np.random.default_rng(1)
    df["sep"] = ((df["y"] == 1) & (rng.uniform(size=len(df)) < 0.3)).astype(float)
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        BinomialGLMM().fit(df[["x", "sep"]], df["y"], groups=df["id"])
    ddf = _by_group(df, 2)
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        fit_partitioned(BinomialGLMM(), ddf[["x", "sep"]], ddf["y"], ddf["id"])
    assert any("sep" in m for m in _model_warnings(w_mem))
    assert _model_warnings(w_dask) == _model_warnings(w_mem)


def test_empty_partitions(client):
    """Partitions left empty by a filter take no part."""
    df = _data("poisson", seed=8)
    ddf = _by_group(df, 4)
    keep = ddf[ddf["id"] >= 150]
    m_mem = PoissonGLMM().fit(
        df.loc[df["id"] >= 150, ["x", "t"]],
        df.loc[df["id"] >= 150, "y"],
        groups=df.loc[df["id"] >= 150, "id"],
    )
    m_dask = fit_partitioned(PoissonGLMM(), keep[["x", "t"]], keep["y"], keep["id"])
    _same(m_mem, m_dask)


def test_dask_arrays(client):
    da = pytest.importorskip("dask.array")
    df = _data("binomial", seed=2)
    m_mem = BinomialGLMM().fit(df[["x", "t"]].to_numpy(), df["y"].to_numpy(), groups=df["id"])
    X = da.from_array(df[["x", "t"]].to_numpy(), chunks=(1500, 2))
    y = da.from_array(df["y"].to_numpy(), chunks=1500)
    g = da.from_array(df["id"].to_numpy(), chunks=1500)
    m_dask = fit_partitioned(BinomialGLMM(), X, y, g)
    np.testing.assert_allclose(
        m_dask.fit_result_.params, m_mem.fit_result_.params, rtol=RTOL, atol=1e-9
    )
    assert not hasattr(m_dask, "feature_names_in_") and m_dask.n_features_in_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = m_dask.predict_proba(df[["x", "t"]].to_numpy()[:5], groups=df["id"].to_numpy()[:5])
    assert p.shape == (5, 2)


def test_split_groups_refused_or_shuffled(client):
    df = _data("binomial", seed=1).sample(frac=1.0, random_state=0).reset_index(drop=True)
    ddf = _by_group(df, 3)
    with pytest.raises(ValueError, match="more than one partition"):
        fit_partitioned(BinomialGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"])
    m_mem = BinomialGLMM().fit(df[["x", "t"]], df["y"], groups=df["id"])
    m_dask = fit_partitioned(
        BinomialGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"], split_groups="shuffle"
    )
    _same(m_mem, m_dask)


def test_training_rows_stay_on_the_cluster(client):
    df = _data("poisson", seed=4)
    ddf = _by_group(df, 2)
    m = fit_partitioned(PoissonGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"])
    with pytest.raises(TrainingDataError):
        m.residuals()
    # summary's numbers come from per-partition sums: the Pearson statistic is exact
    m_mem = PoissonGLMM().fit(df[["x", "t"]], df["y"], groups=df["id"])
    ratio = m.fit_result_.data_summaries["overdispersion"].ratio
    np.testing.assert_allclose(ratio, m_mem.overdispersion().ratio, rtol=1e-6)
    assert m.predict_proba(df[["x", "t"]].iloc[:3]).shape[0] == 3
    assert not m.fit_result_.has_data
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(
        m2.predict(df[["x", "t"]].iloc[:5]), m.predict(df[["x", "t"]].iloc[:5])
    )
    assert "Random effects" in str(m2.summary())


def test_bad_input(client):
    df = _data("binomial")
    ddf = _by_group(df, 2)
    X, y, g = ddf[["x", "t"]], ddf["y"], ddf["id"]
    with pytest.raises(TypeError, match="Dask"):
        fit_partitioned(BinomialGLMM(), df[["x", "t"]], y, g)
    with pytest.raises(NotImplementedError, match="zero_inflation"):
        fit_partitioned(PoissonGLMM(zero_inflation=True), X, y, g)
    with pytest.raises(NotImplementedError, match="random_only_columns"):
        fit_partitioned(BinomialGLMM(random_effects="0 + t", random_only_columns="t"), X, y, g)
    with pytest.raises(NotImplementedError, match="not OrdinalGLMM"):  # not an AttributeError
        fit_partitioned(OrdinalGLMM(), X, y, g)
    with pytest.raises(ValueError, match="partitions"):
        fit_partitioned(BinomialGLMM(), X, dd.from_pandas(df["y"], npartitions=3), g)
    with pytest.raises(ValueError, match="split_groups"):
        fit_partitioned(BinomialGLMM(), X, y, g, split_groups="merge")
    with pytest.raises(ValueError, match="two classes|only one class"):
        fit_partitioned(BinomialGLMM(), X, y * 0, g)
    bad = df.copy()
    bad.loc[3, "x"] = np.nan
    bdd = _by_group(bad, 2)
    with pytest.raises(ValueError, match="non-finite"):
        fit_partitioned(BinomialGLMM(), bdd[["x", "t"]], bdd["y"], bdd["id"])
    with pytest.raises(ValueError, match="negative"):
        fit_partitioned(PoissonGLMM(), X, y - 1, g)
    with pytest.raises(ValueError, match="not a feature"):
        fit_partitioned(BinomialGLMM(random_effects="1 + z"), X, y, g)


@pytest.mark.slow
def test_process_workers():
    """Workers in their own processes: the objects travel by pickle."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    with cluster, distributed.Client(cluster) as c:
        df = _data("binomial", n_groups=500, per=20, seed=7)
        m_mem = BinomialGLMM(random_effects="1 + t").fit(df[["x", "t"]], df["y"], groups=df["id"])
        ddf = _by_group(df, 4)
        m_dask = fit_partitioned(
            BinomialGLMM(random_effects="1 + t"), ddf[["x", "t"]], ddf["y"], ddf["id"], client=c
        )
        _same(m_mem, m_dask)


def test_tiny_sd_of_large_counts_as_in_memory(client):
    # the zero-variance probe below 1e-3 reads the levels' information from every
    # partition: the same SD of 2.3e-4 as in memory (tests/fixtures/tiny_sd)
    from pathlib import Path

    df = pd.read_csv(Path(__file__).parent / "fixtures" / "tiny_sd" / "poisson_tiny.csv")
    df = df.rename(columns={"g": "id"}).sort_values("id", kind="stable")
    m_mem = PoissonGLMM().fit(df[["x"]], df["y"], groups=df["id"])
    ddf = dd.from_pandas(df.set_index("id", drop=False), npartitions=3, sort=True)
    m_dask = fit_partitioned(PoissonGLMM(), ddf[["x", "id"]], ddf["y"], groups="id")
    sd = float(np.sqrt(m_mem.random_effects_cov_["id"].iloc[0, 0]))
    assert 2e-4 < sd < 3e-4 and m_mem.converged_ and m_dask.converged_
    _same(m_mem, m_dask)


def test_large_curvatures_take_the_hessian_by_differences_as_in_memory(client):
    # trust case 9 (counts to 1.1e6): the partitions' largest curvature, one map-reduce,
    # sends the partitioned fit's Hessian to differences as the in-memory fit's (its
    # closed form gave SE(x1) 0.2859, 0.2755, 0.2821 in three units of x1)
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "trust" / "case9_large_count_slopes.csv"
    df = pd.read_csv(path).sort_values("id", kind="stable").reset_index(drop=True)
    est = PoissonGLMM(random_effects="1 + x1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m_mem = clone(est).fit(df[["x1"]], df["y"], groups=df["id"])
        ddf = dd.from_pandas(df.set_index("id", drop=False), npartitions=2, sort=True)
        m_dask = fit_partitioned(clone(est), ddf[["x1", "id"]], ddf["y"], groups="id")
    se = m_mem.fixed_effects_.loc["x1", "std_error"]
    # differences of the gradient round at about 1e-4 relative here, in an order of sums
    # that the partitions change (1.1e-4 apart with NumPy 1.24); the closed form was
    # 0.5-3 % off
    assert m_dask.fixed_effects_.loc["x1", "std_error"] == pytest.approx(se, rel=2e-4)
    assert se == pytest.approx(0.276893, rel=1e-3)  # glmmTMB's (trust.json)


def _fit_in_memory_and_partitioned(est, df, column):
    """``est`` fitted to ``df``'s ``y`` on ``column`` grouped by ``id``, in memory and from
    three partitions by id: ``(in memory, its warnings, partitioned, its warnings)``."""
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        m_mem = clone(est).fit(df[[column]], df["y"], groups=df["id"])
    ddf = dd.from_pandas(df.set_index("id", drop=False), npartitions=3, sort=True)
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        m_dask = fit_partitioned(clone(est), ddf[[column, "id"]], ddf["y"], groups="id")
    return m_mem, list(w_mem), m_dask, list(w_dask)


@pytest.mark.parametrize(
    "case, loglik", [("case8_slope_basin", -830.8657), ("case10_level_slope_moments", -815.0073)]
)
def test_a_slope_of_a_level_predictor_is_warned_of_and_restarted_as_in_memory(client, case, loglik):
    # trust cases 8 and 10 (x1 constant or nearly within ids, counts near 6e4 and 2e5):
    # the in-memory fit warns and restarts from other starts to the better optimum (case
    # 10: from the moment estimate of the covariance, from the levels' effects); the
    # partitioned fit's layout has no rows, so it reads the partitions' pooled spreads
    # of x1 and their levels' effects
    from pathlib import Path

    from sklearn_glmm.exceptions import IdentifiabilityWarning

    path = Path(__file__).parent / "fixtures" / "trust" / f"{case}.csv"
    df = pd.read_csv(path).sort_values("id", kind="stable").reset_index(drop=True)
    m_mem, w_mem, m_dask, w_dask = _fit_in_memory_and_partitioned(
        PoissonGLMM(random_effects="1 + x1"), df, "x1"
    )
    for caught in (w_mem, w_dask):
        msgs = [str(w.message) for w in caught if w.category is IdentifiabilityWarning]
        assert any("random slope of 'x1'" in m for m in msgs), msgs
    for m in (m_mem, m_dask):
        assert any(stage[0] == "level slope restart" for stage in m.fit_record_.stages)
    assert m_dask.loglik_ == pytest.approx(m_mem.loglik_, abs=1e-6)
    assert m_mem.loglik_ == pytest.approx(loglik, abs=1e-3)  # glmmTMB's (trust.json)
    # a slope varying within ids: neither the warning nor the restarts
    df["x2"] = np.random.default_rng(0).normal(size=len(df))
    ddf = dd.from_pandas(df.set_index("id", drop=False), npartitions=3, sort=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = fit_partitioned(
            PoissonGLMM(random_effects="1 + x2"), ddf[["x2", "id"]], ddf["y"], groups="id"
        )
    assert not any("random slope of" in str(w.message) for w in caught)
    assert not any("level slope" in stage[0] for stage in m.fit_record_.stages)


def test_rows_of_weight_0_do_not_decide_a_level_predictors_slope_partitioned(client):
    # trust case 10 with one more row per id of weight 0 and x1 = 0: the partitions'
    # spreads read the rows with weight above 0, as in memory (on every row, x1 varied
    # within ids: no warning, no restart, a fit 1.05 below)
    from pathlib import Path

    from sklearn_glmm.exceptions import IdentifiabilityWarning

    path = Path(__file__).parent / "fixtures" / "trust" / "case10_level_slope_moments.csv"
    df = pd.read_csv(path)
    extra = df.groupby("id", as_index=False).first().assign(x1=0.0, y=0)
    df = pd.concat([df.assign(w=1.0), extra.assign(w=0.0)], ignore_index=True)
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    ddf = dd.from_pandas(df.set_index("id", drop=False), npartitions=3, sort=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = fit_partitioned(
            PoissonGLMM(random_effects="1 + x1"),
            ddf[["x1", "id"]],
            ddf["y"],
            groups="id",
            sample_weight=ddf["w"],
        )
    assert any(w.category is IdentifiabilityWarning for w in caught)
    assert any(stage[0] == "level slope restart" for stage in m.fit_record_.stages)
    assert m.loglik_ == pytest.approx(-815.0073, abs=1e-3)  # glmmTMB's (trust.json)


def test_a_slope_of_a_two_valued_level_predictor_is_flat_partitioned_as_in_memory(client):
    # the arms' variances alone are identified: the line of equal likelihood is taken
    # out of the curvature from the partitions' sums over their levels, as in memory (a
    # rounding-negative curvature along it read as a saddle)
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(40), 8)
    arm = (np.arange(40) % 2)[g].astype(float)
    b = rng.multivariate_normal([0, 0], [[1.0, -0.5], [-0.5, 1.0]], size=40)
    y = rng.binomial(1, 1 / (1 + np.exp(-(-1.0 + 0.5 * arm + b[g, 0] + b[g, 1] * arm))))
    df = pd.DataFrame({"arm": arm, "y": y, "id": g})
    m_mem, w_mem, m, caught = _fit_in_memory_and_partitioned(
        BinomialGLMM(random_effects="1 + arm"), df, "arm"
    )
    assert not any(w.category is ConvergenceWarning for w in w_mem + caught)
    assert m.converged_ and m_mem.converged_
    assert m.fit_record_.unidentified.shape[1] == m_mem.fit_record_.unidentified.shape[1] == 1
    assert m.loglik_ == pytest.approx(m_mem.loglik_, abs=1e-6)


def test_an_uncorrelated_slope_far_from_zero_is_warned_of_as_in_memory(client):
    from sklearn_glmm.exceptions import IdentifiabilityWarning

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 10)
    year = np.tile(np.arange(2010, 2020), 30).astype(float)
    y = rng.poisson(np.exp(0.5 + 0.05 * (year - 2015) + rng.normal(0, 0.3, 30)[g]))
    df = pd.DataFrame({"year": year, "y": y, "id": g})
    ddf = dd.from_pandas(df, npartitions=3, sort=False)
    est = PoissonGLMM(random_effects="diag(1 + year)")
    with pytest.warns(IdentifiabilityWarning, match="'year'.*far from zero .mean 2014, SD 2.87"):
        fit_partitioned(clone(est), ddf[["year"]], ddf["y"], ddf["id"])


def test_a_negative_binomial_slope_on_few_groups_runs_the_in_memory_checks(client):
    # the check of a family parameter's limit runs where random effects have two rows
    # or fewer each: it counted the rows of the partitioned layout (none) and ran on
    # every partitioned NB fit, restoring a snapshot the partitions no longer kept
    # (KeyError); the partitions now keep the snapshots the driver holds
    rng = np.random.default_rng(32)
    g = np.repeat(np.arange(3), 20)
    x = rng.normal(size=60)
    t = rng.integers(2000, 2021, 60).astype(float)
    tc = (t - t.mean()) / t.std()
    eta = -0.3 + 0.5 * x + 0.2 * tc + rng.normal(0, 0.05, 3)[g] + rng.normal(0, 0.5, 3)[g] * tc
    mu = 1e4 * np.exp(0.5 * eta)
    df = pd.DataFrame(dict(x=x, t=t, y=rng.negative_binomial(2.0, 2.0 / (2.0 + mu)), id=g))
    parts = [df[df["id"].isin(ids)] for ids in ([0, 1], [2])]
    ddf = dd.concat([dd.from_pandas(p, npartitions=1, sort=False) for p in parts])
    est = NegBinGLMM(random_effects="1 + t")
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        m_mem = clone(est).fit(df[["x", "t"]], df["y"], groups=df["id"])
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        m_dask = fit_partitioned(clone(est), ddf[["x", "t"]], ddf["y"], ddf["id"])
    stages = [[s[0] for s in m.fit_record_.stages] for m in (m_mem, m_dask)]
    assert stages[0] == stages[1]
    assert m_dask.loglik_ == pytest.approx(m_mem.loglik_, abs=1e-6)
    assert _model_warnings(w_dask) == _model_warnings(w_mem)


def test_partitions_keep_the_snapshots_their_driver_holds():
    # a snapshot taken before many later ones (a whole optimisation's) is restored as
    # taken; one the driver freed is forgotten by the partitions (partitions in this
    # process, their calls made in turn)
    import gc

    from sklearn_glmm._design import theta_layout
    from sklearn_glmm._engine.families import make_family
    from sklearn_glmm._engine.objective import ModelData, make_factor_data
    from sklearn_glmm._engine.partitioned import PartitionedObjective, PartitionModel

    rng = np.random.default_rng(0)
    fam = make_family("poisson", False)

    def rows(n_levels, per):
        codes = np.repeat(np.arange(n_levels), per)
        X = np.column_stack([np.ones(len(codes)), rng.normal(size=len(codes))])
        y = rng.poisson(np.exp(0.3 + 0.5 * X[:, 1] + rng.normal(0, 0.5, n_levels)[codes]))
        f = make_factor_data([codes], [X[:, :1]], [n_levels], [theta_layout(1, False)])
        ones = np.ones(len(y))
        return ModelData(X, y.astype(float), ones, ones, np.zeros(len(y)), fam, f)

    maps = [np.arange(0, 10), np.arange(10, 25)]
    parts = [PartitionModel(rows(10, 4), 1, maps[0]), PartitionModel(rows(15, 3), 1, maps[1])]
    layout_f = make_factor_data(
        [np.zeros(0, np.intp)], [np.zeros((0, 1))], [25], [theta_layout(1, False)]
    )
    e = np.zeros(0)
    layout = ModelData(np.zeros((0, 2)), e, e, e, e, fam, layout_f)

    def call(method, *args):
        return [getattr(p, method)(*args) for p in parts]

    obj = PartitionedObjective(layout, 1, call, maps)
    x = np.array([0.3, 0.5, 0.6])
    value = obj.evaluate(x)
    modes = [p.objective.u.copy() for p in parts]
    early = obj.snapshot()
    for k in range(30):
        obj.evaluate(x * (1.0 + 1e-2 * (k + 1)))
        obj.snapshot()  # freed at once: forgotten with the next one
    gc.collect()
    obj.snapshot()
    assert all(len(p._snapshots) <= 3 for p in parts)
    obj.restore(early)  # (it was the KeyError of a snapshot the partitions had dropped)
    for p, u in zip(parts, modes):
        assert np.array_equal(p.objective.u, u)
    assert obj.evaluate(x) == value


@pytest.mark.parametrize(
    "seed, sd, re, weighted", [(38, 4.0, "1 + t + x", False), (603, 5.0, "1 + t", True)]
)
def test_group_level_separation_reads_the_random_parts_sd_over_the_rows(
    client, seed, sd, re, weighted
):
    # the partitioned check read |Lambda|_F for the SD of the random part, which is the
    # rows' sqrt(mean z'Sz) only for orthonormal internal columns: with correlated
    # slopes it warned where the in-memory fit does not (an SD of 6 for one below 5),
    # and with rows of weight 0 it printed another SD (8.64 for 8.74)
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 12)
    x = rng.normal(size=480)
    t = 0.8 * x + 0.6 * rng.normal(size=480) + 1.0
    y = rng.binomial(1, 1 / (1 + np.exp(-(rng.normal(0, sd, 40)[g] + 0.5 * x))))
    df = pd.DataFrame(dict(x=x, t=t, y=y, id=g))
    kw_mem, kw_dask = {}, {}
    if weighted:
        df["w"] = np.where(rng.random(480) < 0.3, 0.0, 1.0) * (1 + 4 * (t > 1.5))
    ddf = _by_group(df, 3)
    if weighted:
        kw_mem, kw_dask = dict(sample_weight=df["w"]), dict(sample_weight=ddf["w"])
    est = BinomialGLMM(random_effects=re)
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        clone(est).fit(df[["x", "t"]], df["y"], groups=df["id"], **kw_mem)
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        fit_partitioned(clone(est), ddf[["x", "t"]], ddf["y"], ddf["id"], **kw_dask)
    assert _model_warnings(w_dask) == _model_warnings(w_mem)
    assert weighted == any("group-level separation" in m for m in _model_warnings(w_mem))


def test_a_poor_laplace_approximation_is_warned_of_as_in_memory(client):
    # rare events, random-intercept SD 3: quadrature's optimum lies 2.9 SEs from the
    # Laplace fit; the check (in memory only) now runs on the rows gathered to the
    # client (at most 20,000 rows)
    from sklearn_glmm.exceptions import ApproximationWarning

    rng = np.random.default_rng(42)
    g = np.repeat(np.arange(150), 4)
    x = rng.normal(size=600)
    eta = -4.0 + 0.5 * x + rng.normal(0, 3.0, 150)[g]
    df = pd.DataFrame(dict(x=x, y=rng.binomial(1, 1 / (1 + np.exp(-eta))), id=g))
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        m_mem = BinomialGLMM().fit(df[["x"]], df["y"], groups=df["id"])
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        m_dask = fit_partitioned(BinomialGLMM(), *_split(_by_group(df, 2), ["x"]))
    assert ApproximationWarning in {w.category for w in w_dask}
    assert _model_warnings(w_dask) == _model_warnings(w_mem)
    shifts = [m.fit_record_.quadrature_shift for m in (m_mem, m_dask)]
    assert shifts[1] == pytest.approx(shifts[0], rel=1e-8) and shifts[0] > 1.0


def test_the_separation_trigger_reads_the_weighted_mean_outcome_as_in_memory():
    # Poisson rows of counts near 500 weighted 0.02 beside counts near 0.3 weighted 50:
    # the in-memory trigger (a linear predictor 5 below the log of the weighted mean
    # outcome, 0.39) is at -5.9; the partitioned one read the unweighted mean (150), 0
    from sklearn_glmm._engine.families import make_family
    from sklearn_glmm._partitioned_results import _far

    fam = make_family("poisson", False)
    y = np.r_[np.full(30, 500.0), np.full(70, 0.3)]
    w = np.r_[np.full(30, 0.02), np.full(70, 50.0)]
    sums = [
        dict(
            eta_min=-2.0,
            wy=float(w[:50] @ y[:50]),
            wsum=float(w[:50].sum()),
            n_used=50,
            succ=np.array([y[:50].sum()]),
        ),
        dict(
            eta_min=-1.0,
            wy=float(w[50:] @ y[50:]),
            wsum=float(w[50:].sum()),
            n_used=50,
            succ=np.array([y[50:].sum()]),
        ),
    ]
    in_memory = -2.0 < np.log(np.average(y, weights=w)) - 5.0
    assert _far(fam, sums) == in_memory == False  # noqa: E712
    sums[0]["eta_min"] = -6.5
    assert _far(fam, sums)


def _split(ddf, columns):
    return ddf[columns], ddf["y"], ddf["id"]


def test_a_column_with_a_large_constant_part_is_found_aliased(client):
    # big = 1e9 + x: its centring at means summed from the raw values was off by more
    # than its variation's rounding; the partitioned fit kept it (intercept -1.5e10, x
    # -15.2, every standard error NaN) where the in-memory fit drops it
    df = _data("poisson", n_groups=150, per=12, seed=4)
    df["big"] = 1e9 + df["x"]
    cols = ["x", "t", "big"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m_mem = PoissonGLMM().fit(df[cols], df["y"], groups=df["id"])
        ddf = _by_group(df, 3)
        m_dask = fit_partitioned(PoissonGLMM(), ddf[cols], ddf["y"], ddf["id"])
    assert np.isnan(m_mem.fixed_effects_.loc["big", "estimate"])
    assert np.isnan(m_dask.fixed_effects_.loc["big", "estimate"])
    np.testing.assert_allclose(
        m_dask.fixed_effects_.loc[["(Intercept)", "x", "t"]].to_numpy(),
        m_mem.fixed_effects_.loc[["(Intercept)", "x", "t"]].to_numpy(),
        rtol=1e-5,
    )


def _quartiles(m):
    from sklearn_glmm._state import pearson_quantiles

    return pearson_quantiles(m)


def test_residual_quartiles_of_unequal_workers_and_zero_weights(client, monkeypatch):
    # the workers' samples were pooled unweighted (a small worker's counted as much as a
    # large one's), and the in-memory quartiles counted rows of weight 0 (residual 0)
    from sklearn_glmm import _partitioned_results

    df = _data("poisson", n_groups=200, per=10, seed=5)
    rng = np.random.default_rng(0)
    df["w"] = np.where(rng.random(len(df)) < 0.25, 0.0, 1.0)
    m_mem = PoissonGLMM().fit(df[["x", "t"]], df["y"], groups=df["id"], sample_weight=df["w"])
    used = df["w"].to_numpy() > 0
    exact = np.quantile(m_mem.residuals("pearson")[used], [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(_quartiles(m_mem), exact)
    big = df[df["id"] < 180]
    small = df[df["id"] >= 180]
    ddf = dd.concat([dd.from_pandas(big, npartitions=1), dd.from_pandas(small, npartitions=1)])
    m_dask = fit_partitioned(
        PoissonGLMM(), ddf[["x", "t"]], ddf["y"], ddf["id"], sample_weight=ddf["w"]
    )
    np.testing.assert_allclose(_quartiles(m_dask), exact, rtol=1e-10)  # every row sent
    # samples of 300 rows per worker: each stands for its worker's rows
    sums = [
        dict(r_sample=np.sort(rng.normal(0, 1, 300)), n_used=9000, r_min=-5, r_max=5),
        dict(r_sample=np.sort(rng.normal(3, 1, 300)), n_used=1000, r_min=-5, r_max=5),
    ]
    q = _partitioned_results._pooled_quantiles(sums)
    assert q[2] < 0.5  # the median of 9,000 rows around 0 and 1,000 around 3 (unweighted: 1.5)


def test_partitioned_fit_errors_say_what_is_wrong(client):
    df = _data("poisson", n_groups=60, per=8, seed=6)
    ddf = _by_group(df, 2)
    with pytest.warns(UserWarning, match="keep_data=True has no effect"):
        m = fit_partitioned(PoissonGLMM(keep_data=True), ddf[["x", "t"]], ddf["y"], ddf["id"])
    # not "unpickled without its training data ... fit it with keep_data=True"
    with pytest.raises(TrainingDataError, match="fitted by partitions"):
        m.residuals()
    # a missing group label: counted over the data's rows, not one worker's
    bad = df.astype({"id": float})
    bad.loc[bad.index[-1], "id"] = np.nan
    bddf = _by_group(bad, 2)
    with pytest.raises(ValueError, match=f"missing or infinite labels in 1 of {len(df)} row"):
        fit_partitioned(PoissonGLMM(), bddf[["x", "t"]], bddf["y"], bddf["id"])
    # a missing value in a text outcome (was a bare TypeError from sorting)
    txt = df.assign(y=np.where(df["y"] > 0, "yes", "no").astype(object))
    txt.loc[txt.index[3], "y"] = None
    tddf = _by_group(txt, 2)
    with pytest.raises(ValueError, match="y has 1 missing or non-finite"):
        fit_partitioned(BinomialGLMM(), tddf[["x", "t"]], tddf["y"], tddf["id"])
    # a covariance structure: the documented NotImplementedError (was "needs the data X")
    with pytest.raises(NotImplementedError, match="structure 'ar1' is not available"):
        fit_partitioned(PoissonGLMM(random_effects="ar1(t)"), ddf[["x", "t"]], ddf["y"], ddf["id"])


def test_shuffle_of_dask_arrays_says_what_it_needs(client):
    # Dask arrays get an index of their own: the shuffle failed with dask's "Unable to
    # concatenate DataFrame with unknown division"
    df = _data("poisson", n_groups=60, per=8, seed=7).sample(frac=1, random_state=0)
    ddf = dd.from_pandas(df, npartitions=3, sort=False)  # groups split over partitions
    y = ddf["y"].to_dask_array(lengths=True)
    g = ddf["id"].to_dask_array(lengths=True)
    with pytest.raises(ValueError, match="needs X as a Dask DataFrame and y, groups"):
        fit_partitioned(PoissonGLMM(), ddf[["x", "t"]], y, g, split_groups="shuffle")


@pytest.mark.parametrize("shift", [0.0, 1e4])
def test_far_origin_in_an_interaction_as_in_memory(client, shift):
    # y ~ f * x + h with x + 1e4: the centred fb:x is nearly fb; the in-memory fit
    # decorrelates such a design, and so does the partitioned fit (it had stopped short
    # of the optimum with NaN standard errors, reported as converged)
    rng = np.random.default_rng(1)
    n_groups, per = 60, 15
    g = np.repeat(np.arange(n_groups), per)
    n = len(g)
    f = rng.choice(["a", "b", "c"], n)
    h = rng.choice(["p", "q", "r", "s"], n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.5 * x + 0.6 * (f == "c") * x - 0.2 * (h == "r")
    y = rng.binomial(1, 1 / (1 + np.exp(-(eta + rng.normal(0, 0.7, n_groups)[g]))))
    xs = x + shift
    fb, fc = (f == "b") * 1.0, (f == "c") * 1.0
    df = pd.DataFrame({"fb": fb, "fc": fc, "x": xs, "hq": (h == "q") * 1.0, "hr": (h == "r") * 1.0})
    df["fb:x"], df["fc:x"] = fb * xs, fc * xs
    cols = list(df.columns)
    df["y"], df["id"] = y, g
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        m_mem = BinomialGLMM().fit(df[cols], df["y"], groups=df["id"])
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        ddf = _by_group(df, 3)
        m_dask = fit_partitioned(BinomialGLMM(), ddf[cols], ddf["y"], ddf["id"])
    assert ("rotation" in m_dask.fit_result_.scaling) == (shift > 0)
    assert m_dask.converged_ and not _model_warnings(w_dask) and not _model_warnings(w_mem)
    assert m_dask.loglik_ == pytest.approx(m_mem.loglik_, abs=1e-7)
    fe_m, fe_d = m_mem.fixed_effects_, m_dask.fixed_effects_
    np.testing.assert_allclose(fe_d["estimate"], fe_m["estimate"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fe_d["std_error"], fe_m["std_error"], rtol=1e-4)


def test_a_covariance_the_levels_do_not_identify_is_reported_at_the_same_point(client):
    # (1 + arm | id) with a two-valued arm: a line of equal likelihood, each fit moved to
    # its point of largest det S (the partitions' sums of the levels' Gram products):
    # in memory and partitioned at the same point, whatever the optimisers' paths
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 8)
    arm = (np.arange(40) % 2)[g].astype(float)
    b = rng.multivariate_normal([0, 0], [[1.0, -0.5], [-0.5, 1.0]], size=40)
    eta = -1.0 + 0.5 * arm + b[g, 0] + b[g, 1] * arm
    df = pd.DataFrame({"arm": arm, "id": g, "y": rng.binomial(1, 1 / (1 + np.exp(-eta)))})
    est = BinomialGLMM(random_effects="1 + arm")
    m_mem, _, m_dask, _ = _fit_in_memory_and_partitioned(est, df, "arm")
    assert m_mem.fit_record_.unidentified is not None
    assert m_dask.fit_record_.unidentified is not None
    np.testing.assert_allclose(
        m_dask.random_effects_cov_["id"].to_numpy(),
        m_mem.random_effects_cov_["id"].to_numpy(),
        atol=1e-4,
    )
    arms = np.array([[1.0, 0.0], [1.0, 1.0]]) @ m_mem.random_effects_cov_["id"].to_numpy()
    assert abs((arms @ np.array([[1.0, 1.0], [0.0, 1.0]]))[0, 1]) < 1e-4  # uncorrelated arms
