"""Bad or unusual input gets a clear error (or a warning), never a silent result: score's
outcome and weights as fit's, True/False options, dates and complex numbers as numbers,
column labels that scikit-learn does not check, too few simulations or replicates, an
ordinal class without weight, a pickled model's trials and offset in the power tools."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, GLMMSpec, NegBinGLMM, OrdinalGLMM, PoissonGLMM


def _data(seed=0, G=20, per=10):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), per)
    X = pd.DataFrame({"x": rng.normal(size=len(g)), "z": rng.normal(size=len(g))})
    b = rng.normal(0, 0.5, G)[g]
    counts = rng.poisson(np.exp(0.5 + 0.3 * X["x"].to_numpy() + b))
    binary = rng.binomial(1, 1 / (1 + np.exp(-(0.2 + 0.5 * X["x"].to_numpy() + b))))
    ordinal = np.digitize(X["x"].to_numpy() + b + rng.logistic(size=len(g)), [-1, 0, 1])
    return X, g, counts, binary, ordinal


def _fit(est, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args, **kw)


@pytest.fixture(scope="module")
def data():
    return _data()


def test_score_checks_its_outcome_and_weights_as_fit_does(data):
    X, g, counts, binary, ordinal = data
    n = len(g)
    w = np.ones(n)
    nan_first = np.r_[np.nan, counts[1:]].astype(float)
    for est in (PoissonGLMM(), NegBinGLMM()):
        m = _fit(est, X, counts, groups=g)
        with pytest.raises(ValueError, match="y has non-finite"):
            m.score(X, nan_first, groups=g)
        with pytest.raises(ValueError, match="sample_weight has non-finite"):
            m.score(X, counts, groups=g, sample_weight=np.r_[np.nan, w[1:]])
        with pytest.raises(ValueError, match="negative value"):
            m.score(X, np.r_[-1, counts[1:]], groups=g)
        with pytest.raises(ValueError, match="sample_weight has 1 negative"):
            m.score(X, counts, groups=g, sample_weight=np.r_[-1.0, w[1:]])
        assert np.isfinite(m.score(X, counts, groups=g))
    t = np.full(n, 5)
    s = np.minimum(counts, 5)
    mt = _fit(BinomialGLMM(), X, s, groups=g, trials=t)
    with pytest.raises(ValueError, match="y has non-finite"):
        mt.score(X, np.r_[np.nan, s[1:]], groups=g, trials=t)
    with pytest.raises(ValueError, match="sample_weight has non-finite"):
        mt.score(X, s, groups=g, trials=t, sample_weight=np.r_[np.nan, w[1:]])
    mb = _fit(BinomialGLMM(), X, binary, groups=g)
    with pytest.raises(ValueError, match="sample_weight has 1 negative"):
        mb.score(X, binary, groups=g, sample_weight=np.r_[-5.0, w[1:]])
    mo = _fit(OrdinalGLMM(), X, ordinal, groups=g)
    with pytest.raises(ValueError, match="sample_weight has 1 negative"):
        mo.score(X, ordinal, groups=g, sample_weight=np.r_[-5.0, w[1:]])


def test_true_false_options_refuse_other_values(data):
    X, g, counts, *_ = data
    m = _fit(PoissonGLMM(), X, counts, groups=g)
    with pytest.raises(TypeError, match="include_random must be True or False"):
        m.predict_interval(X[:2], groups=g[:2], include_random="no")
    with pytest.raises(TypeError, match="exponentiate must be True or False"):
        m.confint(exponentiate="no")
    with pytest.raises(TypeError, match="cond_var must be True or False"):
        m.ranef(cond_var="no")
    with pytest.raises(TypeError, match="new_random_effects must be True or False"):
        m.simulate(2, new_random_effects="no")
    with pytest.raises(TypeError, match="average must be True or False"):
        m.marginal_means(X[:3], average="yes")
    with pytest.raises(ValueError, match="n_sim must be a positive integer"):
        m.simulate(True)
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        m.confint(method="bootstrap", n_boot=True)
    # numpy's booleans are booleans
    a = m.predict_interval(X[:2], groups=g[:2], include_random=np.False_)
    b = m.predict_interval(X[:2], groups=g[:2], include_random=False)
    pd.testing.assert_frame_equal(a, b)


def test_dates_time_spans_and_complex_numbers_are_not_numbers_here(data):
    X, g, counts, *_ = data
    n = len(g)
    dates = pd.to_datetime("2020-01-01") + pd.to_timedelta(counts, unit="D")
    with pytest.raises(ValueError, match="y holds dates or times"):
        PoissonGLMM().fit(X, dates, groups=g)
    with pytest.raises(ValueError, match="y holds complex numbers"):
        PoissonGLMM().fit(X, counts + 0j, groups=g)
    with pytest.raises(ValueError, match="sample_weight holds dates or times"):
        PoissonGLMM().fit(X, counts, groups=g, sample_weight=pd.Series(dates).to_numpy())
    with pytest.raises(ValueError, match="offset holds time spans"):
        PoissonGLMM().fit(X, counts, groups=g, offset=pd.to_timedelta(np.ones(n), unit="D"))
    with pytest.raises(ValueError, match=r"y must hold numbers \(counts\)"):
        PoissonGLMM().fit(X, np.array(["a"] * n, dtype=object), groups=g)


def test_fractional_trials_are_warned_of(data):
    X, g, counts, *_ = data
    t = np.full(len(g), 5.5)
    with pytest.warns(UserWarning, match="trials is not a whole number in 200 row"):
        _fit_quiet_but(BinomialGLMM(), X, np.minimum(counts, 5), g, trials=t)


def _fit_quiet_but(est, X, y, g, **kw):
    """The fit, its warnings raised to the caller's pytest.warns."""
    return est.fit(X, y, groups=g, **kw)


def test_a_count_model_given_trials_says_where_they_belong(data):
    X, g, counts, *_ = data
    with pytest.raises(TypeError, match=r"PoissonGLMM.fit\(\) .* 'trials': trials belong"):
        PoissonGLMM().fit(X, counts, groups=g, trials=np.ones(len(g)))


def test_frames_with_labels_that_are_not_strings_keep_their_column_order(data):
    X, g, counts, *_ = data
    for columns in ([0, 1], pd.MultiIndex.from_tuples([("a", "x"), ("a", "z")])):
        Xi = X.copy()
        Xi.columns = columns
        m = _fit(PoissonGLMM(), Xi, counts, groups=g)
        swapped = Xi[list(Xi.columns)[::-1]]
        with pytest.raises(ValueError, match="in that order"):
            m.predict(swapped, groups=g)
        np.testing.assert_array_equal(m.predict(Xi, groups=g), m.predict(Xi.copy(), groups=g))
        m.predict(Xi.to_numpy(), groups=g)  # an array: read by position, as fitted


def test_an_ordinal_class_only_in_rows_of_weight_0_is_dropped_as_clm_drops_it(data):
    # its thresholds are not identified (one was reported at 22.5, SE 6313, silently):
    # the class is dropped with a warning, and the fit is that without its rows
    X, g, _, _, ordinal = data
    w = (ordinal != 3).astype(float)
    with pytest.warns(UserWarning, match=r"classes \[3\] of y occur only in rows of sample_weight"):
        m = _fit_quiet_but(OrdinalGLMM(), X, ordinal, g, sample_weight=w)
    keep = w > 0
    ref = _fit(OrdinalGLMM(), X[keep], ordinal[keep], groups=g[keep])
    assert list(m.classes_) == [0, 1, 2] == list(ref.classes_)
    assert m.loglik_ == pytest.approx(ref.loglik_, rel=1e-9)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-4, atol=1e-5)  # (optimisers)
    assert m.predict_proba(X[:3], groups=g[:3]).shape == (3, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        OrdinalGLMM().fit(X, ordinal, groups=g, sample_weight=(ordinal == 0).astype(float))


def test_bootstrap_limits_at_the_extreme_replicates_are_said(data):
    X, g, counts, *_ = data
    m = _fit(PoissonGLMM(), X, counts, groups=g)
    with pytest.warns(UserWarning, match="extreme order statistics used as endpoints"):
        m.confint(parm="fixed", method="bootstrap", n_boot=10, random_state=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="extreme order statistics")
        m.confint(parm="fixed", method="bootstrap", n_boot=40, random_state=0)


def test_scaled_residuals_need_enough_simulations(data):
    X, g, counts, *_ = data
    m = _fit(PoissonGLMM(), X, counts, groups=g)
    with pytest.raises(ValueError, match="n_sim=5 is too few"):
        m.scaled_residuals(n_sim=5)
    with pytest.warns(UserWarning, match="fewer than 100 simulations"):
        m.scaled_residuals(n_sim=20, random_state=0)
    with pytest.raises(ValueError, match="n_sim must be a positive integer"):
        m.scaled_residuals(n_sim=True)


def test_a_pickled_models_trials_and_offset_are_asked_for_by_the_power_tools(data):
    X, g, counts, *_ = data
    n = len(g)
    rng = np.random.default_rng(1)
    mt = _fit(BinomialGLMM(), X, rng.binomial(10, 0.3, n), groups=g, trials=np.full(n, 10))
    off = np.log(rng.integers(1, 20, n))
    mo = _fit(PoissonGLMM(), X, rng.poisson(np.exp(off)), groups=g, offset=off)
    for m, what in ((mt, "several trials per row"), (mo, "fitted with an offset")):
        with pytest.raises(ValueError, match=what):
            GLMMSpec.from_fitted(m)
        with pytest.raises(ValueError, match=what):
            GLMMSpec.from_fitted(pickle.loads(pickle.dumps(m)))
    assert GLMMSpec.from_fitted(pickle.loads(pickle.dumps(mt)), trials=10).trials == 10
    assert GLMMSpec.from_fitted(pickle.loads(pickle.dumps(mt)), trials=1).trials == 1
    # the same estimator refitted to 0/1 outcomes forgets the trials
    _fit(mt, X, (counts > 1).astype(int), groups=g)
    assert GLMMSpec.from_fitted(pickle.loads(pickle.dumps(mt))).trials == 1


def test_formula_data_that_cannot_be_read_is_said(data):
    pytest.importorskip("formulaic")
    from sklearn_glmm.formula import glmer

    X, g, _, binary, _ = data
    df = X.assign(yb=binary, id=g)
    with pytest.raises(ValueError, match="data has no rows"):
        glmer("yb ~ x + (1 | id)", df.iloc[:0])
    with pytest.raises(ValueError, match="every one of the 200 rows of data has a missing"):
        glmer("yb ~ w + (1 | id)", df.assign(w=np.nan))
    with pytest.raises(TypeError, match="data is a numpy array"):
        glmer("yb ~ x + (1 | id)", df.to_numpy())
    with pytest.raises(ValueError, match=r"repeated column names \['x'\]"):
        glmer("yb ~ x + (1 | id)", pd.concat([df, df[["x"]]], axis=1))
    # R's backquotes around a grouping column's name; nested, named as lme4 names it
    m = _fit_formula(glmer, "yb ~ x + (1 | `my id`)", df.rename(columns={"id": "my id"}))
    ref = _fit_formula(glmer, "yb ~ x + (1 | id)", df)
    assert m.loglik_ == pytest.approx(ref.loglik_, rel=1e-10)
    df2 = df.assign(site=g % 4).rename(columns={"id": "b c"})
    nested = _fit_formula(glmer, "yb ~ x + (1 | site/`b c`)", df2)
    assert sorted(nested.random_effects_cov_) == ["`b c`:site", "site"]
    # a record array has names: a frame
    rec = _fit_formula(glmer, "yb ~ x + (1 | id)", df.to_records(index=False))
    assert rec.loglik_ == pytest.approx(ref.loglik_, rel=1e-10)


def test_formula_slips_are_said_in_the_formula_s_terms(data):
    """An unknown response, unbalanced brackets in a ziformula or dispformula, and new
    data whose numeric column holds text (or True/False), or an array of text: clear
    errors, not formulaic's internal rewrites (I(nope), ANSI codes, generated columns)."""
    pytest.importorskip("formulaic")
    from sklearn_glmm.formula import glmer, glmmTMB

    X, g, counts, binary, _ = data
    df = X.assign(yb=binary, yc=counts, id=g, f=np.array(["a", "b", "c"])[g % 3])
    with pytest.raises(ValueError, match=r"the response 'nope' reads \['nope'\]"):
        glmer("nope ~ x + (1 | id)", df)
    with pytest.raises(ValueError, match=r"ziformula='~ \(x': its brackets"):
        glmmTMB("yc ~ x + (1 | id)", df, family="poisson", ziformula="~ (x")
    with pytest.raises(ValueError, match=r"dispformula='~ \(x': its brackets"):
        glmmTMB("yc ~ x + (1 | id)", df, family="nbinom2", dispformula="~ (x")
    m = _fit_formula(glmer, "yb ~ x + f + (1 | id)", df)
    for column in (df.x.astype(str), df.x.astype(object), df.x > 0):
        with pytest.raises(ValueError, match=r"column\(s\) \['x'\] were numbers at fit"):
            m.predict_proba(df.assign(x=column))
    with pytest.raises(TypeError, match="X is a numpy array of object values"):
        m.predict_proba(df.to_numpy())
    # numbers of another numeric dtype predict as before
    same = m.predict_proba(df.assign(x=df.x.astype("Float64")))
    np.testing.assert_allclose(same, m.predict_proba(df))


def test_fractional_weights_of_proportions_are_rs_trials_without_a_warning(data):
    # R's binomial weights with an outcome of proportions: whole successes are all it
    # asks (its warning is for successes that are not whole), whatever the weights
    pytest.importorskip("formulaic")
    from sklearn_glmm.formula import glmer

    X, g, counts, *_ = data
    w = np.full(len(g), 2.5)
    p = np.where(counts > 1, 0.4, 0.8)  # p * 2.5: 1 or 2 successes
    df = X.assign(p=p, w=w, id=g)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="trials is not a whole number")
        _fit_formula_quiet_but_trials(glmer, df)


def _fit_formula_quiet_but_trials(glmer, df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("error", message="trials is not a whole number")
        return glmer("p ~ x + (1 | id)", df, family="binomial", weights="w")


def _fit_formula(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def test_arguments_that_cannot_be_read_name_themselves(data):
    X, g, counts, *_ = data
    G = pd.DataFrame({"a": g, "b": g % 3})
    with pytest.raises(ValueError, match=r"groups has repeated column names \['a'\]"):
        PoissonGLMM().fit(X, counts, groups=pd.concat([G["a"], G["a"]], axis=1))
    with pytest.raises(ValueError, match="cannot be group labels"):
        PoissonGLMM().fit(X, counts, groups=pd.Series([[v] for v in g]))
    with pytest.raises(ValueError, match=r"random_only_columns names \['x'\] more than once"):
        PoissonGLMM(random_only_columns=["x", "x"]).fit(X, counts, groups=g)
    m = _fit(PoissonGLMM(), X, counts, groups=g)
    with pytest.raises(ValueError, match="level must be a number in"):
        m.confint(level="0.95")
    pd.testing.assert_frame_equal(m.confint(level=np.array(0.9)), m.confint(level=0.9))
    with pytest.raises(TypeError, match="parm must be None"):
        m.confint(parm=1)
    with pytest.raises(ValueError, match="digits must be a whole number"):
        m.report(digits=-1)
    with pytest.raises(ValueError, match=r"y has 199 rows but X has 200"):
        m.score(X, counts[:-1], groups=g)


@pytest.mark.parametrize("term", ["1 +", "1 + x -", "diag(1 + x +)"])
def test_a_term_that_ends_with_its_operator_is_refused(data, term):
    # "1 +" was read as "1": a slope meant there left out without a word
    X, g, counts, *_ = data
    with pytest.raises(ValueError, match="a term is missing after it"):
        PoissonGLMM(random_effects=term).fit(X, counts, groups=g)
    with pytest.raises(ValueError, match="a term is missing after it"):
        PoissonGLMM(zero_inflation=term).fit(X, counts, groups=g)
