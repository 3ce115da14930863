"""The estimators inside scikit-learn: routing, pipelines, cross-validation, searches, parallelism.

Every snippet of the scikit-learn integration issue runs here, plus the two
scoring regimes (population-level under GroupKFold, conditional under KFold via
``group_columns`` or a scorer that requests ``groups``), information-criterion
selection, ``n_jobs=2`` and a Dask ``LocalCluster``.
"""

import inspect
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.metrics import accuracy_score, log_loss, mean_poisson_deviance
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    RandomizedSearchCV,
    cross_val_predict,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import get_tags

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm.datasets import make_longitudinal
from sklearn_glmm.exceptions import NoRandomEffectsWarning
from sklearn_glmm.model_selection import (
    GLMMScorer,
    compare_structures,
    get_scorer,
    get_scorer_names,
    make_glmm_scorer,
    mean_deviance,
    mean_log_likelihood,
    pointwise_log_likelihood,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:boundary \\(singular\\) fit"),
]


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


@pytest.fixture(scope="module")
def binary():
    df, _ = make_longitudinal("binomial", n_groups=100, slope_sd=0.8, random_state=0)
    return df[["time", "treatment"]], df["y"], df["id"], df


@pytest.fixture(scope="module")
def counts():
    df, _ = make_longitudinal("poisson", n_groups=60, slope_sd=0.3, random_state=0)
    return df[["time", "treatment"]], df["y"], df["id"], df


# -- the issue's snippets -----------------------------------------------------------
def test_issue_snippet_pipeline_cross_validate(binary):
    X, y, ids, _ = binary
    with sklearn.config_context():
        sklearn.set_config(enable_metadata_routing=True)
        pipe = make_pipeline(StandardScaler(), BinomialGLMM().set_fit_request(groups=True))
        res = cross_validate(
            pipe, X, y, cv=GroupKFold(5), params={"groups": ids}, scoring="neg_log_loss"
        )
    scores = res["test_score"]
    assert np.all(np.isfinite(scores))
    # better than a coin flip, worse than certainty
    assert np.log(0.5) < scores.mean() < -0.3


def test_issue_snippet_grid_search(binary):
    X, y, ids, _ = binary
    with sklearn.config_context():
        sklearn.set_config(enable_metadata_routing=True)
        search = GridSearchCV(
            BinomialGLMM().set_fit_request(groups=True),
            {"random_effects": ["1", "1 + time", "0 + time"]},
            cv=GroupKFold(5),
        ).fit(X, y, groups=ids)
    assert search.best_params_["random_effects"] in ("1", "1 + time", "0 + time")
    acc = search.cv_results_["mean_test_score"]
    assert np.all((acc > 0.5) & (acc < 1.0))  # score is accuracy for the classifier
    assert search.best_estimator_.ranef_["id"].shape[0] == ids.nunique()


# -- structures found by search ---------------------------------------------------
def test_grid_search_picks_random_slope_population_level(routing, counts):
    X, y, ids, _ = counts
    search = GridSearchCV(
        PoissonGLMM().set_fit_request(groups=True),
        {"random_effects": ["1", "1 + time", "0 + time"]},
        cv=GroupKFold(5),
        scoring=get_scorer("mean_log_likelihood"),
    ).fit(X, y, groups=ids)
    assert search.best_params_ == {"random_effects": "1 + time"}
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_grid_search_picks_random_slope_conditional(counts):
    # no routing needed: the grouping column travels inside X
    _, y, _, df = counts
    search = GridSearchCV(
        PoissonGLMM(group_columns="id"),
        {"random_effects": ["1", "1 + time", "0 + time"]},
        cv=KFold(5, shuffle=True, random_state=0),
        scoring=get_scorer("mean_log_likelihood"),
    ).fit(df[["id", "time", "treatment"]], y)
    assert search.best_params_ == {"random_effects": "1 + time"}


def test_grid_over_n_agq_zero_inflation_and_estimators(routing, counts):
    X, y, ids, _ = counts
    small = ids % 2 == 0  # 30 people, both arms
    Xs, ys, gs = X[small], y[small], ids[small]
    cv = GroupKFold(2)
    agq = GridSearchCV(PoissonGLMM().set_fit_request(groups=True), {"n_agq": [1, 5]}, cv=cv).fit(
        Xs, ys, groups=gs
    )
    assert np.all(np.isfinite(agq.cv_results_["mean_test_score"]))
    zi = GridSearchCV(
        PoissonGLMM().set_fit_request(groups=True),
        {"zero_inflation": [False, True]},
        cv=cv,
        scoring=get_scorer("neg_mean_deviance"),
    ).fit(Xs, ys, groups=gs)
    assert np.all(np.isfinite(zi.cv_results_["mean_test_score"]))
    pipe = Pipeline(
        [
            ("scale", StandardScaler().set_output(transform="pandas")),
            ("glmm", PoissonGLMM().set_fit_request(groups=True)),
        ]
    )
    fam = GridSearchCV(
        pipe,
        {
            "glmm": [
                PoissonGLMM().set_fit_request(groups=True),
                NegBinGLMM().set_fit_request(groups=True),
            ]
        },
        cv=cv,
        scoring=get_scorer("mean_log_likelihood"),
    ).fit(Xs, ys, groups=gs)
    assert len(fam.cv_results_["params"]) == 2


# -- routing of groups, trials, offset, sample_weight --------------------------------
def test_routing_off_says_so_and_does_not_fit_silently(binary):
    X, y, ids, _ = binary
    with sklearn.config_context(enable_metadata_routing=False):
        # random effects asked for: every fit fails, saying how to route groups
        search = GridSearchCV(BinomialGLMM(), {"random_effects": ["1"]}, cv=GroupKFold(2))
        with pytest.raises(ValueError, match="metadata routing, which is off"):
            search.fit(X, y, groups=ids)
        # the default estimator fits GLMs, with a warning
        search = GridSearchCV(BinomialGLMM(), {"max_iter": [1000]}, cv=GroupKFold(2))
        with pytest.warns(NoRandomEffectsWarning, match="metadata routing, which is off"):
            search.fit(X, y, groups=ids)
        assert search.best_estimator_.fit_result_.factors == []
        with pytest.raises(ValueError, match="does not accept the groups parameter"):
            make_pipeline(StandardScaler(), BinomialGLMM()).fit(X, y, groups=ids)
        with pytest.raises(RuntimeError, match="metadata routing is enabled"):
            BinomialGLMM().set_fit_request(groups=True)


def test_routing_on_but_groups_not_requested_raises(routing, binary):
    X, y, ids, _ = binary
    with pytest.raises(UnsetMetadataPassedError, match="set_fit_request"):
        cross_validate(BinomialGLMM(), X, y, cv=GroupKFold(2), params={"groups": ids})


def test_cross_val_score_predict_and_randomized_search(routing, binary):
    X, y, ids, _ = binary
    est = BinomialGLMM().set_fit_request(groups=True)
    scores = cross_val_score(est, X, y, cv=GroupKFold(3), params={"groups": ids})
    assert np.all((scores > 0.5) & (scores <= 1))
    proba = cross_val_predict(
        est, X, y, cv=GroupKFold(3), params={"groups": ids}, method="predict_proba"
    )
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    rs = RandomizedSearchCV(
        est, {"random_effects": ["1", "0 + time"]}, n_iter=2, cv=GroupKFold(3), random_state=0
    ).fit(X, y, groups=ids)
    assert rs.best_estimator_.ranef_["id"].shape[0] == ids.nunique()


def test_pipeline_routes_groups_offset_weights_like_a_direct_fit(routing, counts):
    X, y, ids, _ = counts
    rng = np.random.default_rng(0)
    offset = np.log(rng.uniform(0.5, 2.0, size=len(y)))
    w = rng.integers(1, 3, size=len(y)).astype(float)
    glmm = PoissonGLMM("1 + time").set_fit_request(groups=True, offset=True, sample_weight=True)
    pipe = make_pipeline(
        StandardScaler().set_output(transform="pandas").set_fit_request(sample_weight=False),
        glmm,
    )
    pipe.fit(X, y, groups=ids, offset=offset, sample_weight=w)
    Xs = StandardScaler().fit_transform(X)
    direct = PoissonGLMM("1 + time").fit(
        pd.DataFrame(Xs, columns=X.columns), y, groups=ids, offset=offset, sample_weight=w
    )
    np.testing.assert_allclose(pipe[-1].coef_, direct.coef_, rtol=1e-6)
    assert pipe[-1].fixed_effects_.index.tolist() == ["(Intercept)", "time", "treatment"]


def test_trials_and_offset_reach_fit_and_scorer(routing):
    df, _ = make_longitudinal("binomial", n_groups=40, trials=(2, 8), random_state=1)
    X, y, ids, trials = df[["time", "treatment"]], df["y"], df["id"], df["trials"]
    est = BinomialGLMM().set_fit_request(groups=True, trials=True)
    scorer = make_glmm_scorer().set_score_request(trials=True)
    cv = list(GroupKFold(3).split(X, y, ids))
    res = cross_validate(est, X, y, cv=cv, params={"groups": ids, "trials": trials}, scoring=scorer)
    manual = []
    for train, test in cv:
        m = BinomialGLMM().fit(
            X.iloc[train], y.iloc[train], groups=ids.iloc[train], trials=trials.iloc[train]
        )
        manual.append(mean_log_likelihood(m, X.iloc[test], y.iloc[test], trials=trials.iloc[test]))
    np.testing.assert_allclose(res["test_score"], manual, rtol=1e-10)
    with pytest.raises(ValueError, match="trials"):
        cross_validate(
            est,
            X,
            y,
            cv=cv,
            params={"groups": ids, "trials": trials},
            scoring=make_glmm_scorer(),
            error_score="raise",
        )


def test_metrics_of_a_trials_model_without_trials_raise():
    # rows of 0 or 1 successes out of several trials are not 0/1 labels: without the
    # trials the metrics raise (they were the Bernoulli log-likelihood, without a word)
    from sklearn_glmm.model_selection import mean_deviance, pointwise_log_likelihood

    df, _ = make_longitudinal("binomial", n_groups=40, trials=(5, 14), random_state=2)
    X, ids, trials = df[["time", "treatment"]], df["id"], df["trials"]
    y = df["y"].clip(upper=1)  # every row 0 or 1 successes
    m = BinomialGLMM().fit(X, y, groups=ids, trials=trials)
    for metric in (mean_log_likelihood, mean_deviance, pointwise_log_likelihood):
        with pytest.raises(ValueError, match="successes out of trials"):
            metric(m, X, y, groups=ids)
        assert np.all(np.isfinite(metric(m, X, y, groups=ids, trials=trials)))


# -- scoring: population-level and conditional regimes ---------------------------------
def test_conditional_scoring_beats_population_under_kfold(routing, counts):
    X, y, ids, df = counts
    cv = KFold(5, shuffle=True, random_state=0)
    ll = get_scorer("mean_log_likelihood")
    population = cross_val_score(
        PoissonGLMM("1 + time").set_fit_request(groups=True),
        X,
        y,
        cv=cv,
        params={"groups": ids},
        scoring=ll,
    )
    by_columns = cross_val_score(
        PoissonGLMM("1 + time", group_columns="id"),
        df[["id", "time", "treatment"]],
        y,
        cv=cv,
        scoring=ll,
    )
    by_routing = cross_val_score(
        PoissonGLMM("1 + time").set_fit_request(groups=True),
        X,
        y,
        cv=cv,
        params={"groups": ids},
        scoring=make_glmm_scorer().set_score_request(groups=True),
    )
    assert by_columns.mean() > population.mean() + 0.3
    np.testing.assert_allclose(by_routing, by_columns, rtol=1e-6)


def test_score_conventions(routing, binary, counts):
    X, y, ids, _ = binary
    m = BinomialGLMM().fit(X, y, groups=ids)
    assert m.score(X, y) == accuracy_score(y, m.predict(X))
    assert m.score(X, y, groups=ids) == accuracy_score(y, m.predict(X, ids))
    Xc, yc, idc, _ = counts
    p = PoissonGLMM("1 + time").fit(Xc, yc, groups=idc)
    assert p.score(Xc, yc, groups=idc) > p.score(Xc, yc)  # D^2, conditional vs population
    # default score ignores groups (population-level); requesting them scores conditionally
    cv = KFold(3, shuffle=True, random_state=0)
    base = PoissonGLMM("1 + time").set_fit_request(groups=True)
    default = cross_val_score(base, Xc, yc, cv=cv, params={"groups": idc})
    cond = cross_val_score(
        clone(base).set_score_request(groups=True), Xc, yc, cv=cv, params={"groups": idc}
    )
    assert cond.mean() > default.mean()


def test_score_with_an_offset_compares_with_the_intercept_plus_offset_null():
    # R's null deviance with an offset: the intercept plus the offset. Counts that follow
    # the exposure alone explain nothing (D^2 was 0.86 against a constant-mean null)
    from scipy import optimize, special

    rng = np.random.default_rng(1)
    n = 600
    g = np.repeat(np.arange(60), 10)
    X = pd.DataFrame({"x": rng.normal(size=n)})
    E = rng.uniform(0.5, 20, n)
    y = rng.poisson(2.0 * E)
    m = PoissonGLMM().fit(X, y, groups=g, offset=np.log(E))
    mu = m.predict(X, g, offset=np.log(E))

    def pois_dev(mu0):
        return 2 * np.sum(special.xlogy(y, y / mu0) - (y - mu0))

    mu0 = E * y.sum() / E.sum()  # the Poisson null with an offset, in closed form
    assert m.score(X, y, groups=g, offset=np.log(E)) == pytest.approx(
        1 - pois_dev(mu) / pois_dev(mu0), rel=1e-9
    )
    assert abs(m.score(X, y, groups=g, offset=np.log(E))) < 0.02
    # binomial with trials: the null intercept solves its score equation
    t = rng.integers(1, 9, n)
    off = rng.normal(0, 0.8, n)
    s = rng.binomial(t, special.expit(-0.3 + off + 0.4 * X["x"]))
    b = BinomialGLMM().fit(X, s, groups=g, trials=t, offset=off)
    c = optimize.brentq(lambda c: np.sum(s - t * special.expit(c + off)), -10, 10, xtol=1e-14)
    p0, p = special.expit(c + off), b.predict_mean(X, g, offset=off)

    def bin_dev(pr):
        return 2 * np.sum(
            special.xlogy(s, s / (t * pr)) + special.xlogy(t - s, (t - s) / (t - t * pr))
        )

    got = b.score(X, s, groups=g, offset=off, trials=t)
    assert got == pytest.approx(1 - bin_dev(p) / bin_dev(p0), rel=1e-7)
    # predict's 0/1 class of a model of counts: scikit-learn's accuracy and squared-error
    # scorers compared them with the counts (accuracy 0.3, MSE -2.6, silently)
    with pytest.raises(ValueError, match="successes out of trials.*predict_mean"):
        b.predict(X, g, offset=off)
    # and the two classes of predict_proba / decision_function: log-loss and ROC AUC read
    # the counts as 0/1 labels (where y held two values, silently)
    with pytest.raises(ValueError, match="successes out of trials.*log-loss, ROC AUC"):
        b.predict_proba(X, g, offset=off)
    with pytest.raises(ValueError, match="successes out of trials.*scale='link'"):
        b.decision_function(X, g, offset=off)
    from sklearn.model_selection import GroupKFold, cross_validate

    with sklearn.config_context(enable_metadata_routing=True):
        est = BinomialGLMM().set_fit_request(groups=True, trials=True)
        s01 = np.minimum(s, 1)  # counts of 0 and 1 only: read as labels without an error
        for scoring in ("accuracy", "neg_mean_squared_error", "neg_log_loss", "roc_auc"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = cross_validate(
                    est,
                    X,
                    s01,
                    cv=GroupKFold(3),
                    params={"groups": g, "trials": t},
                    scoring=scoring,
                    error_score=np.nan,
                )
            assert np.all(np.isnan(out["test_score"]))


def test_score_with_an_offset_of_a_zero_inflated_model():
    # the mean reads the zero part (per row, with predictors): the null is the mean per
    # unit of exposure, so a constant offset, which changes no fit, changes no score (the
    # null had carried the fitted zero-inflation probabilities: 0.242 vs 0.315)
    from scipy import special

    rng = np.random.default_rng(5)
    n = 500
    g = np.repeat(np.arange(50), 10)
    X = pd.DataFrame({"x": rng.normal(size=n), "w": rng.integers(0, 2, n).astype(float)})
    off = np.log(rng.uniform(0.5, 4, n))
    mu = np.exp(0.3 + 0.4 * X["x"] + off + rng.normal(0, 0.5, 50)[g])
    zero = rng.random(n) < special.expit(-1 + 0.8 * X["x"])
    y = np.where(zero, 0, rng.poisson(mu))
    a = PoissonGLMM(zero_inflation="1 + x").fit(X, y, groups=g)
    b = PoissonGLMM(zero_inflation="1 + x").fit(X, y, groups=g, offset=np.full(n, 0.5))
    shifted = b.score(X, y, groups=g, offset=np.full(n, 0.5))
    assert a.score(X, y, groups=g) == pytest.approx(shifted, rel=1e-5)
    m = PoissonGLMM(zero_inflation="1 + x").fit(X, y, groups=g, offset=off)

    def dev(mu0):
        return 2 * np.sum(special.xlogy(y, y / mu0) - (y - mu0))

    rate = np.exp(off) * y.sum() / np.exp(off).sum()
    want = 1 - dev(m.predict(X, g, offset=off)) / dev(rate)
    assert m.score(X, y, groups=g, offset=off) == pytest.approx(want, rel=1e-9)


def test_scorers_agree_with_sklearn_metrics(binary, counts):
    X, y, ids, _ = binary
    m = BinomialGLMM().fit(X, y, groups=ids)
    for g in (None, ids):
        expected = -log_loss(y, m.predict_proba(X, g))
        assert mean_log_likelihood(m, X, y, groups=g) == pytest.approx(expected, rel=1e-9)
    Xc, yc, idc, _ = counts
    p = PoissonGLMM().fit(Xc, yc, groups=idc)
    for g in (None, idc):
        dev = mean_poisson_deviance(yc, p.predict(Xc, g))
        assert mean_deviance(p, Xc, yc, groups=g) == pytest.approx(dev, rel=1e-9)
        assert get_scorer("neg_mean_deviance")(p, Xc, yc, groups=g) == pytest.approx(-dev)
    # the marginal predictive density integrates the random effect, as predict_proba does
    ll = pointwise_log_likelihood(p, Xc, yc)
    pk = p.predict_proba(Xc, max_count=int(yc.max()) + 1)  # the last column is P(Y >= K)
    np.testing.assert_allclose(ll, np.log(pk[np.arange(len(yc)), yc]), rtol=1e-8)
    nb = NegBinGLMM().fit(Xc, yc, groups=idc)
    assert np.isfinite(get_scorer("mean_log_likelihood")(nb, Xc, yc))


def test_scorer_names_and_errors(binary):
    X, y, ids, _ = binary
    names = get_scorer_names()
    assert {"mean_log_likelihood", "neg_mean_deviance", "neg_log_loss"} <= set(names)
    assert isinstance(get_scorer("mean_log_likelihood"), GLMMScorer)
    assert get_scorer("neg_log_loss") is not None
    assert repr(make_glmm_scorer(population="zero")) == (
        "make_glmm_scorer('mean_log_likelihood', population='zero')"
    )
    with pytest.raises(ValueError, match="metric"):
        make_glmm_scorer("accuracy")
    with pytest.raises(TypeError, match="fitted BinomialGLMM"):
        get_scorer("mean_log_likelihood")(StandardScaler().fit(X), X, y)
    with pytest.raises(RuntimeError, match="metadata routing"):
        make_glmm_scorer().set_score_request(groups=True)
    m = BinomialGLMM().fit(X, y, groups=ids)
    with pytest.raises(ValueError, match="not classes seen in fit"):
        mean_log_likelihood(m, X, y + 5)


# -- information-criterion selection --------------------------------------------------
def test_compare_structures_ranks_slope_first_with_nested_lrts(counts):
    X, y, ids, _ = counts
    cands = ["1", "0 + time", "diag(1 + time)", "1 + time"]
    cmp = compare_structures(PoissonGLMM(), cands, X, y, groups=ids, criterion="aic")
    t = cmp.table
    assert set(t.index) == set(cands)
    assert "time" in cmp.best_label_ and "1" in cmp.best_label_
    assert cmp.best_params_["random_effects"] == cmp.best_label_
    assert t["delta"].iloc[0] == 0 and np.isclose(t["weight"].sum(), 1.0)
    np.testing.assert_allclose(t["AIC"], t["deviance"] + 2 * t["npar"])
    assert t.loc["1 + time", "lrt_vs"] == "diag(1 + time)"
    assert t.loc["diag(1 + time)", "lrt_vs"] in ("1", "0 + time")
    assert t.loc["diag(1 + time)", "p_value"] < 1e-6
    assert pd.isna(t.loc["1", "lrt_vs"])  # nothing nested below a random intercept
    # the same test as anova() on the pair, chi-bar-square included
    from sklearn_glmm.inference import anova

    for big in ("1 + time", "diag(1 + time)"):
        small = t.loc[big, "lrt_vs"]
        a = anova(cmp.estimators_[small], cmp.estimators_[big], names=[small, big])
        assert t.loc[big, "Chisq"] == pytest.approx(a.loc[big, "Chisq"], abs=1e-9)
        assert t.loc[big, "p_value"] == pytest.approx(a.loc[big, "Pr(>Chisq)"], rel=1e-9)
        assert t.loc[big, "p_value_chibar"] == pytest.approx(
            a.loc[big, "Pr(>Chisq) chi-bar"], rel=1e-9, nan_ok=True
        )
    assert np.isfinite(t.loc["diag(1 + time)", "p_value_chibar"])  # one variance added
    assert "Candidates ranked by AIC" in repr(cmp)
    assert cmp.best_estimator_.random_effects == cmp.best_label_


def test_compare_structures_estimators_and_failures(counts):
    X, y, ids, _ = counts
    models = {
        "poisson": PoissonGLMM(),
        "negbin": NegBinGLMM(),
        "zip": PoissonGLMM(zero_inflation=True),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = compare_structures(models, None, X, y, groups=ids)
    t = cmp.table
    assert t.loc["negbin", "lrt_vs"] == "poisson" and t.loc["zip", "lrt_vs"] == "poisson"
    assert t.loc["negbin", "Df"] == 1
    with pytest.warns(UserWarning, match="failed to fit"):
        grid = compare_structures(
            PoissonGLMM(),
            {"random_effects": ["1", "1 + time"], "n_agq": [1, 51]},
            X,
            y,
            groups=ids,
        )
    assert len(grid.table) == 2  # n_agq=51 (over 50 nodes) is refused
    assert grid.best_params_ == {"n_agq": 1, "random_effects": "1 + time"}


def test_compare_structures_docstring_example():
    df, _ = make_longitudinal("poisson", n_groups=80, slope_sd=0.3, random_state=0)
    cmp = compare_structures(
        PoissonGLMM(), ["1", "1 + time"], df[["time", "treatment"]], df["y"], groups=df["id"]
    )
    assert cmp.best_params_ == {"random_effects": "1 + time"}


# -- parallel and distributed ---------------------------------------------------------
def test_n_jobs_2_matches_serial(routing, counts):
    X, y, ids, _ = counts
    grid = {"random_effects": ["1", "1 + time"]}
    est = PoissonGLMM().set_fit_request(groups=True)
    serial = GridSearchCV(est, grid, cv=GroupKFold(3)).fit(X, y, groups=ids)
    parallel = GridSearchCV(est, grid, cv=GroupKFold(3), n_jobs=2).fit(X, y, groups=ids)
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-10
    )
    res = cross_validate(
        est, X, y, cv=GroupKFold(3), params={"groups": ids}, n_jobs=2, return_estimator=True
    )
    assert all(m.converged_ for m in res["estimator"])
    cands = ["1", "1 + time"]
    cmp1 = compare_structures(PoissonGLMM(), cands, X, y, groups=ids)
    cmp2 = compare_structures(PoissonGLMM(), cands, X, y, groups=ids, n_jobs=2)
    pd.testing.assert_frame_equal(cmp1.table, cmp2.table)


def _dask_grid_search(X, y, ids):
    import joblib
    from distributed import Client, LocalCluster

    est = PoissonGLMM().set_fit_request(groups=True)
    grid = {"random_effects": ["1", "1 + time"]}
    scoring = get_scorer("mean_log_likelihood")
    # one thread per worker process; distributed's nanny also sets OMP/MKL/OPENBLAS threads to 1
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        with joblib.parallel_config(backend="dask"):
            search = GridSearchCV(est, grid, cv=GroupKFold(3), scoring=scoring, n_jobs=-1)
            return search.fit(X, y, groups=ids)


def test_dask_local_cluster_grid_search(routing, counts):
    pytest.importorskip("dask")
    pytest.importorskip("distributed")
    X, y, ids, _ = counts
    search = _dask_grid_search(X, y, ids)
    serial = GridSearchCV(
        PoissonGLMM().set_fit_request(groups=True),
        {"random_effects": ["1", "1 + time"]},
        cv=GroupKFold(3),
        scoring=get_scorer("mean_log_likelihood"),
    ).fit(X, y, groups=ids)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-10
    )
    assert search.best_params_ == {"random_effects": "1 + time"}


# -- conventions ------------------------------------------------------------------------
def test_set_output_pandas_names_flow_to_random_effects(routing, binary):
    X, y, ids, _ = binary
    pipe = make_pipeline(
        StandardScaler().set_output(transform="pandas"),
        BinomialGLMM("1 + time").set_fit_request(groups=True),
    ).fit(X, y, groups=ids)
    assert list(pipe.feature_names_in_) == ["time", "treatment"]
    assert list(pipe[-1].feature_names_in_) == ["time", "treatment"]
    assert list(pipe[-1].random_effects_cov_["id"].columns) == ["(Intercept)", "time"]
    assert pipe.predict_proba(X).shape == (len(y), 2)


def _arms(df):
    arm = np.where(df["id"] % 3 == 0, "a", np.where(df["id"] % 3 == 1, "b", "c"))
    return df.assign(arm=pd.Categorical(arm))


@pytest.mark.parametrize("verbose", [False, True])
def test_column_transformer_one_hot_and_group_columns(counts, verbose):
    _, y, _, df = counts
    data = _arms(df)[["id", "time", "arm"]]
    ct = ColumnTransformer(
        [
            ("num", StandardScaler(), ["time"]),
            ("cat", OneHotEncoder(drop="first", sparse_output=False), ["arm"]),
            ("grp", "passthrough", ["id"]),
        ],
        verbose_feature_names_out=verbose,
    ).set_output(transform="pandas")
    time, grp = ("num__time", "grp__id") if verbose else ("time", "id")
    pipe = make_pipeline(ct, PoissonGLMM(f"1 + {time}", group_columns=grp))
    res = cross_validate(pipe, data, y, cv=KFold(3, shuffle=True, random_state=0))
    assert np.all(np.isfinite(res["test_score"]))
    pipe.fit(data, y)
    glmm = pipe[-1]
    names = [
        "(Intercept)",
        time,
        f"{'cat__' if verbose else ''}arm_b",
        f"{'cat__' if verbose else ''}arm_c",
    ]
    assert glmm.fixed_effects_.index.tolist() == names
    assert list(glmm.ranef_) == [grp]
    cond = pipe.predict(data)  # ids read from X: conditional
    new = pipe.predict(data.assign(id=data["id"] + 10_000))
    assert not np.allclose(cond, new)


def test_multimetric_scoring_dict(routing, binary):
    X, y, ids, _ = binary
    res = cross_validate(
        BinomialGLMM().set_fit_request(groups=True),
        X,
        y,
        cv=GroupKFold(3),
        params={"groups": ids},
        scoring={
            "ll": get_scorer("mean_log_likelihood"),
            "dev": get_scorer("neg_mean_deviance"),
            "nll": "neg_log_loss",
            "acc": "accuracy",
        },
    )
    np.testing.assert_allclose(res["test_ll"], res["test_nll"], rtol=1e-9)
    np.testing.assert_allclose(res["test_dev"], 2 * res["test_nll"], rtol=1e-9)


@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM, NegBinGLMM])
def test_get_set_params_clone_round_trip(Est):
    est = Est(random_effects={"id": "1 + time"}, n_agq=1, group_columns=["id"], max_iter=50)
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params and twin is not est
    twin.set_params(random_effects="1", tol=1e-8)
    assert twin.random_effects == "1" and twin.tol == 1e-8
    assert est.random_effects == {"id": "1 + time"}
    if Est is not BinomialGLMM:
        assert Est(zero_inflation=True).get_params()["zero_inflation"] is True


@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM, NegBinGLMM])
def test_pickled_models_predict_identically(Est, counts, binary):
    X, y, ids, df = binary if Est is BinomialGLMM else counts
    m = Est("1 + time", group_columns="id").fit(df[["id", "time", "treatment"]], y)
    m2 = pickle.loads(pickle.dumps(m))
    Xg = df[["id", "time", "treatment"]]
    np.testing.assert_array_equal(m2.predict(Xg), m.predict(Xg))
    np.testing.assert_array_equal(m2.predict_proba(Xg), m.predict_proba(Xg))
    assert m2.score(Xg, y) == m.score(Xg, y)
    new = Xg.assign(id=-1)
    np.testing.assert_array_equal(m2.predict(new), m.predict(new))


def test_refit_without_group_columns_forgets_them(counts):
    _, y, ids, df = counts
    m = PoissonGLMM(group_columns="id").fit(df[["id", "time"]], y)
    assert list(m.feature_names_in_) == ["id", "time"]
    m.set_params(group_columns=None).fit(df[["time", "treatment"]], y, groups=ids)
    assert m.fixed_effects_.index.tolist() == ["(Intercept)", "time", "treatment"]
    assert list(m.feature_names_in_) == ["time", "treatment"]


def test_tags_describe_the_estimators():
    assert is_classifier(BinomialGLMM())
    tags = get_tags(BinomialGLMM())
    assert tags.classifier_tags.multi_class is False
    for Est in (PoissonGLMM, NegBinGLMM):
        assert is_regressor(Est())
        assert get_tags(Est()).target_tags.positive_only
    with pytest.raises(ValueError, match="Only binary classification"):
        BinomialGLMM().fit(np.zeros((6, 1)), [0, 1, 2, 0, 1, 2], groups=[0, 0, 1, 1, 2, 2])


def test_metadata_requests_declared(routing):
    fit = BinomialGLMM().get_metadata_routing().fit.requests
    assert set(fit) == {"groups", "sample_weight", "offset", "trials"}
    score = PoissonGLMM().get_metadata_routing().score.requests
    assert score["groups"] is False  # score is population-level unless asked


# -- the example --------------------------------------------------------------------------
def test_example_forecasts_better_conditionally():
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    )
    result = subprocess.run(
        [sys.executable, str(root / "examples" / "sklearn_workflows.py")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    rows = {
        line.rsplit(maxsplit=2)[0].strip(): float(line.split()[-2])
        for line in out.split("origins 5, 6, 7)")[1].splitlines()[2:5]
    }
    conditional = rows["GLMM, conditional (group_columns='id')"]
    assert conditional < rows["GLMM, population-level"] - 0.05  # log-loss
    assert "best: {'random_effects': '1 + time'}" in out


def test_rows_of_equal_inputs_get_equal_population_probabilities():
    # the average over the random effect's nodes was a matrix-vector product, whose
    # blocking put 1e-16 between equal rows depending on their position: ties broken at
    # random, which a rank-based score (roc_auc) reads, and differently per pos_label
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(50), 20)
    x = rng.integers(0, 3, 1000).astype(float)
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.3 * x + rng.normal(0, 1, 50)[g]))))
    m = BinomialGLMM().fit(pd.DataFrame({"x": x}), y, groups=g)
    X = pd.DataFrame({"x": np.tile([0.0, 1.0, 2.0], 40000)})  # several chunks of rows
    p = m.predict_proba(X)[:, 1]
    d = m.decision_function(X)
    for v in (0.0, 1.0, 2.0):
        rows = X["x"].to_numpy() == v
        assert len(np.unique(p[rows])) == 1 and len(np.unique(d[rows])) == 1


def test_a_positional_third_argument_is_groups_and_says_so():
    # scikit-learn's fit(X, y, sample_weight) and score(X, y, sample_weight): weights
    # given there were read as group labels, silently (rows conditioned on the groups
    # whose labels equal their weights; the score unweighted)
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(1, 41), 10)
    X = pd.DataFrame({"x": rng.normal(size=400)})
    y = rng.poisson(np.exp(0.3 * X["x"] + rng.normal(0, 0.5, 41)[ids]))
    w = rng.integers(1, 4, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = PoissonGLMM().fit(X, y, groups=ids)
        m.score(X, y, groups=ids, sample_weight=w)
        m.score(X, y, None, w)  # (None in the third place reads nothing)
    for call in (lambda: PoissonGLMM().fit(X, y, ids), lambda: m.score(X, y, w)):
        with pytest.warns(UserWarning, match="third positional argument is read as groups"):
            call()
    # the signatures scikit-learn's metadata routing reads are the methods' own
    assert "groups" in inspect.signature(PoissonGLMM.fit).parameters
    assert "sample_weight" in inspect.signature(BinomialGLMM.score).parameters
    with sklearn.config_context(enable_metadata_routing=True):
        est = PoissonGLMM().set_fit_request(groups=True).set_score_request(groups=True)
        assert est.get_metadata_routing().fit.requests["groups"] is True


def test_model_checks_take_a_fitted_pipeline_or_search():
    """performance.*, anova and compare_models read the fitted model alone: a fitted
    Pipeline or search stands for the model at its end (they said 'not fitted yet');
    functions that also read data refuse a Pipeline, naming what to pass."""
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_glmm import anova, compare_models, inference, performance
    from sklearn_glmm.datasets import make_longitudinal
    from sklearn_glmm.marginal import marginal_coefs

    df, _ = make_longitudinal("poisson", n_groups=40, n_waves=6, random_state=14)
    X, y, g = df[["time", "treatment"]], df["y"], df["id"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(StandardScaler(), PoissonGLMM()).fit(X, y, poissonglmm__groups=g)
        search = GridSearchCV(
            PoissonGLMM(group_columns="id"), {"n_agq": [1, 3]}, cv=GroupKFold(3)
        ).fit(df[["id", "time", "treatment"]], y, groups=g)
    m = pipe[-1]
    assert performance.icc(pipe).equals(performance.icc(m))
    assert performance.r2(pipe).equals(performance.r2(m))
    assert performance.icc(search).equals(performance.icc(search.best_estimator_))
    assert performance.check_singularity(model=pipe).equals(performance.check_singularity(m))
    pd.testing.assert_frame_equal(compare_models(pipe, m), compare_models(m, m))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.testing.assert_frame_equal(anova(pipe, m), anova(m, m))
    pd.testing.assert_frame_equal(marginal_coefs(pipe), marginal_coefs(m))
    Xt = pipe[:-1].transform(X)
    with pytest.raises(TypeError, match=r"got a Pipeline.*predict_interval\(pipe\[-1\]"):
        inference.predict_interval(pipe, X)
    with pytest.raises(TypeError, match="got a Pipeline"):
        marginal_coefs(pipe, X)
    pd.testing.assert_frame_equal(
        inference.marginal_means(search, df[["id", "time", "treatment"]]),
        inference.marginal_means(search.best_estimator_, df[["id", "time", "treatment"]]),
    )
    assert inference.predict_interval(m, Xt).shape[0] == len(X)
    # a search fitted with refit=False holds no model: said, not "not fitted yet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unrefitted = GridSearchCV(
            PoissonGLMM(group_columns="id"), {"n_agq": [1]}, cv=GroupKFold(3), refit=False
        ).fit(df[["id", "time", "treatment"]], y, groups=g)
    with pytest.raises(TypeError, match="refit=False, so it holds no fitted model"):
        performance.icc(unrefitted)
