"""OrdinalGLMM: the cumulative link mixed model against ``ordinal::clmm`` / ``clm``.

References: ``tests/fixtures/ordinal/ordinal.json``, made by ``make_ordinal.R`` (ordinal
2022.11-16) from the ``wine`` and ``soup`` data saved beside it. Tolerances (as issue
15 states them): log-likelihood within 0.01; thresholds and fixed effects within 5 % of
their standard error; standard errors and random-effect SDs within 2 %.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ordinal_data import wine as _wine
from scipy import stats
from sklearn import set_config
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_glmm import BinomialGLMM, OrdinalGLMM
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.families.ordinal_links import ORDINAL_LINKS
from sklearn_glmm.exceptions import NoRandomEffectsWarning, RankDeficiencyWarning, SeparationWarning

FIXTURES = Path(__file__).parent / "fixtures" / "ordinal"
REF = json.loads((FIXTURES / "ordinal.json").read_text())


def _soup():
    soup = pd.read_csv(FIXTURES / "soup.csv")
    soup["DAY:RESP"] = soup["DAY"].astype(str) + ":" + soup["RESP"].astype(str)  # (1 | RESP/DAY)
    X = pd.DataFrame({"PRODTest": (soup["PROD"] == "Test").astype(float)})
    y = pd.Series(pd.Categorical(soup["SURENESS"], ordered=True), name="SURENESS")
    return X, y, soup


# fixture key -> (data, estimator parameters, grouping columns)
CASES = {
    **{f"wine_{lk}": ("wine", dict(link=lk), ["judge"]) for lk in ORDINAL_LINKS},
    "wine_equidistant": ("wine", dict(threshold="equidistant"), ["judge"]),
    "wine_symmetric": ("wine", dict(threshold="symmetric"), ["judge"]),
    "wine_agq10": ("wine", dict(n_agq=10), ["judge"]),
    "wine_probit_agq7": ("wine", dict(link="probit", n_agq=7), ["judge"]),
    "wine_clm": ("wine", dict(), None),
    "wine_clm_probit_equidistant": ("wine", dict(link="probit", threshold="equidistant"), None),
    "wine_slope": ("wine", dict(random_effects="1 + tempwarm"), ["judge"]),
    "wine_null": ("wine", dict(), ["judge"]),  # no fixed effects: rating ~ 1 + (1 | judge)
    "soup_ri": ("soup", dict(), ["RESP"]),
    "soup_crossed": ("soup", dict(), ["RESP", "PRODID"]),
    "soup_nested": ("soup", dict(), ["DAY:RESP", "RESP"]),
    "soup_symmetric": ("soup", dict(threshold="symmetric"), ["RESP"]),
}


def _fit(key):
    data, params, groups = CASES[key]
    X, y, frame = _wine() if data == "wine" else _soup()
    if key == "wine_null":
        X = X.iloc[:, :0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoRandomEffectsWarning)
        g = None if groups is None else frame[groups]
        return OrdinalGLMM(**params).fit(X, y, groups=g)


@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.SingularFitWarning")
@pytest.mark.parametrize("key", list(CASES))
def test_matches_clmm(key):
    ref = REF[key]
    m = _fit(key)
    assert m.converged_
    # R: logLik(fit)
    assert abs(m.loglik_ - ref["loglik"]) < 0.01
    assert m.n_params_ == ref["df"]
    # R: coef(summary(fit)) for beta and clmm's threshold parameters
    fe = m.fixed_effects_.loc[ref["beta_names"]]
    se_b = np.array(ref["beta_se"])
    assert np.all(np.abs(fe["estimate"] - ref["beta"]) <= 0.05 * se_b)
    np.testing.assert_allclose(fe["std_error"], se_b, rtol=0.02)
    tc = m.threshold_coefficients_
    assert list(tc.index) == ref["alpha_names"]
    se_a = np.array(ref["alpha_se"])
    assert np.all(np.abs(tc["estimate"] - ref["alpha"]) <= 0.05 * se_a)
    np.testing.assert_allclose(tc["std_error"], se_a, rtol=0.02)
    # R: fit$Theta, the thresholds themselves, named from the class labels
    assert list(m.thresholds_.index) == [f"{k}|{k + 1}" for k in range(1, len(m.classes_))]
    th = m.thresholds_
    assert np.all(np.abs(th["estimate"] - np.ravel(ref["thresholds"])) <= 0.05 * th["std_error"])
    # R: VarCorr(fit)
    for name, re in (ref["ranef"] or {}).items():
        S = m.random_effects_cov_[name].to_numpy()
        sd = np.sqrt(np.diag(S))
        # within 2 %; an SD on its boundary (R: 2e-5 for DAY:RESP in soup) within 1e-3
        np.testing.assert_allclose(sd, re["sd"], rtol=0.02, atol=1e-3)
        if len(sd) > 1:
            corr = S / np.outer(sd, sd)
            np.testing.assert_allclose(corr.ravel(), re["corr"], atol=0.02)


def test_thresholds_standard_errors_by_the_linear_map():
    # equidistant: alpha_j = threshold.1 + (j - 1) spacing; its SEs follow J V J'
    m = _fit("wine_equidistant")
    tc = m.threshold_coefficients_
    alpha = tc.loc["threshold.1", "estimate"] + np.arange(4) * tc.loc["spacing", "estimate"]
    np.testing.assert_allclose(m.thresholds_["estimate"], alpha)
    np.testing.assert_allclose(
        m.thresholds_["std_error"].iloc[0], tc.loc["threshold.1", "std_error"]
    )
    assert m.thresholds_["std_error"].iloc[-1] != pytest.approx(tc["std_error"].iloc[0])


# -- the family: derivatives, probabilities --------------------------------------------
def _family(link, threshold, K=5):
    return make_family("ordinal", link=link, n_classes=K, threshold=threshold)


@pytest.mark.parametrize("threshold", ["flexible", "equidistant", "symmetric"])
@pytest.mark.parametrize("link", list(ORDINAL_LINKS))
def test_derivatives_match_finite_differences(link, threshold):
    rng = np.random.default_rng(0)
    fam = _family(link, threshold)
    a = fam.default_extra() + 0.2 * rng.normal(size=fam.n_extra)
    assert np.all(np.diff(fam.alpha(a)) > 0)
    K, n = 5, 600
    y = np.tile(np.arange(K), n // K).astype(float)
    # the middle and both tails of every class, up to 30 units out
    eta = np.concatenate([rng.normal(scale=2.0, size=n // 2), rng.uniform(-30, 30, n // 2)])
    d = fam.derivs(y, eta, None, None, a)
    assert np.all(np.isfinite(d.loglik)) and np.all(np.isfinite(d.w3))

    def close(value, fd, atol=1e-7):
        np.testing.assert_allclose(value, fd, rtol=2e-5, atol=atol)

    h = 1e-5
    up, dn = fam.derivs(y, eta + h, None, None, a), fam.derivs(y, eta - h, None, None, a)
    close(d.d1, (up.loglik - dn.loglik) / (2 * h))
    close(d.w, -(up.d1 - dn.d1) / (2 * h))
    # the third derivative in the far tails: log_ndtr's relative accuracy (~1e-13) there
    # limits it to ~1e-6 absolute against a curvature of ~1
    close(d.w3, (up.w - dn.w) / (2 * h), atol=1e-5)
    dl, dd1, dw = fam.extra_derivs(y, eta, None, None, a)
    for t in range(fam.n_extra):
        e = np.zeros(fam.n_extra)
        e[t] = h
        up, dn = fam.derivs(y, eta, None, None, a + e), fam.derivs(y, eta, None, None, a - e)
        close(dl[t], (up.loglik - dn.loglik) / (2 * h))
        close(dd1[t], (up.d1 - dn.d1) / (2 * h))
        close(dw[t], (up.w - dn.w) / (2 * h), atol=1e-5)
    if link != "cauchit":  # log-concave: the curvature is never negative
        assert d.w.min() >= -1e-12
    assert fam.log_concave == (link != "cauchit")


@pytest.mark.parametrize("link", list(ORDINAL_LINKS))
def test_probabilities_sum_to_one_and_match_the_log_density(link):
    fam = _family(link, "flexible", K=4)
    a = np.array([-1.5, 0.2, 2.5])
    eta = np.linspace(-12, 12, 97)
    p = fam.class_probabilities(eta, a)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    for k in range(4):
        ll = fam.derivs(np.full(len(eta), float(k)), eta, None, None, a).loglik
        ok = p[:, k] > 1e-300
        np.testing.assert_allclose(np.log(p[ok, k]), ll[ok], rtol=1e-9, atol=1e-12)
    # P(Y <= j) = F(alpha_j - eta): higher eta moves mass to higher classes
    assert np.all(np.diff(p[:, 0]) <= 1e-15) and np.all(np.diff(p[:, -1]) >= -1e-15)


def test_unordered_thresholds_are_a_failed_evaluation():
    fam = _family("logit", "flexible", K=4)
    d = fam.derivs(np.array([0.0, 1.0]), np.zeros(2), None, None, np.array([0.5, 0.2, 1.0]))
    assert np.all(d.loglik == -np.inf)
    X, y, wine = _wine()
    m = OrdinalGLMM().fit(X, y, groups=wine["judge"])
    x = m.fit_result_.params.copy()
    x[-4:] = x[-4:][[1, 0, 2, 3]]
    assert m.fit_result_.objective.evaluate(x) == np.inf


# -- properties of the fitted model ------------------------------------------------------
@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_two_classes_equal_the_binomial_model(link):
    # P(Y = high) = 1 - F(alpha - eta): for the symmetric logit and probit that is
    # F(eta - alpha), a binomial model of "high" with intercept -alpha and the same beta;
    # for clm's cloglog, P(Y = low) = 1 - exp(-exp(alpha - eta)) is the binomial cloglog
    # model of "low" with intercept alpha and coefficients -beta
    X, _, wine = _wine()
    y = np.where(wine["rating"] >= 3, "high", "low")
    order = pd.Series(pd.Categorical(y, categories=["low", "high"], ordered=True))
    m = OrdinalGLMM(link=link).fit(X, order, groups=wine["judge"])
    pos = "low" if link == "cloglog" else "high"
    b = BinomialGLMM(link=link, pos_label=pos).fit(X, y, groups=wine["judge"])
    assert m.loglik_ == pytest.approx(b.loglik_, abs=1e-5)
    sign = -1.0 if link == "cloglog" else 1.0
    np.testing.assert_allclose(m.coef_, sign * b.coef_, rtol=1e-4, atol=1e-6)
    alpha = m.thresholds_["estimate"].iloc[0]
    assert alpha == pytest.approx(-sign * b.intercept_, rel=1e-4)
    np.testing.assert_allclose(
        m.fixed_effects_["std_error"], b.fixed_effects_["std_error"].iloc[1:], rtol=1e-3
    )
    np.testing.assert_allclose(
        m.predict_proba(X, wine["judge"])[:, list(m.classes_).index(pos)],
        b.predict_mean(X, wine["judge"]),
        rtol=1e-5,
    )


def test_objective_at_zero_variance_equals_clm():
    # R: clm(rating ~ temp + contact, data = wine): its optimum, with the judge variance
    # set to zero in the mixed model's objective, gives clm's log-likelihood
    X, y, wine = _wine()
    m = OrdinalGLMM().fit(X, y, groups=wine["judge"])
    ref = REF["wine_clm"]
    sc = m.fit_result_.scaling
    beta_internal = np.array(ref["beta"]) * sc["scales"]
    # the design is centred internally: its thresholds are clm's less m'beta
    alpha_internal = np.array(ref["alpha"]) - sc["means"] @ np.array(ref["beta"])
    x = np.concatenate([beta_internal, [0.0], alpha_internal])
    assert -0.5 * m.fit_result_.objective.evaluate(x) == pytest.approx(ref["loglik"], abs=1e-6)
    assert m.loglik_ > ref["loglik"]


@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.SingularFitWarning")
def test_classes_keep_the_order_of_an_ordered_categorical():
    X, _, wine = _wine()
    labels = np.array(["poor", "fair", "good", "very good", "excellent"])[wine["rating"] - 1]
    scale = ["poor", "fair", "good", "very good", "excellent"]
    ordered = pd.Series(pd.Categorical(labels, categories=scale, ordered=True))
    m = OrdinalGLMM().fit(X, ordered, groups=wine["judge"])
    assert list(m.class_order_) == scale
    assert list(m.classes_) == sorted(scale)  # scikit-learn's order of the columns
    assert list(m.thresholds_.index) == [
        "poor|fair",
        "fair|good",
        "good|very good",
        "very good|excellent",
    ]
    ref = _fit("wine_logit")
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-8)
    # plain labels are sorted: here alphabetically, a different (wrong) order for a scale,
    # with a warning naming the order used
    with pytest.warns(UserWarning, match=r"\['excellent', 'fair', 'good', 'poor', 'very good'\]"):
        plain = OrdinalGLMM().fit(X, labels, groups=wine["judge"])
    assert list(plain.class_order_) == sorted(scale)
    assert plain.loglik_ < m.loglik_ - 1.0
    assert list(ordered.cat.categories)[0] == "poor"  # the caller's data unchanged


def test_unused_categories_are_dropped_with_a_warning():
    X, y, wine = _wine()
    y2 = y.cat.add_categories([0]).cat.reorder_categories([0, 1, 2, 3, 4, 5])
    with pytest.warns(UserWarning, match=r"categories \[0\]"):
        m = OrdinalGLMM().fit(X, y2, groups=wine["judge"])
    assert list(m.classes_) == [1, 2, 3, 4, 5]


@pytest.mark.filterwarnings("ignore:fixed-effect model matrix is rank deficient")
def test_constant_column_is_dropped_with_a_clear_warning():
    X, y, wine = _wine()
    Xc = X.assign(const=1.0)
    before = Xc.copy()
    with pytest.warns(RankDeficiencyWarning, match="thresholds play its role"):
        m = OrdinalGLMM().fit(Xc, y, groups=wine["judge"])
    pd.testing.assert_frame_equal(Xc, before)
    assert np.isnan(m.fixed_effects_.loc["const", "estimate"])
    assert m.loglik_ == pytest.approx(_fit("wine_logit").loglik_, abs=1e-6)


@pytest.mark.parametrize("shift", [3e7, 1e8])
def test_a_predictor_far_from_zero_is_not_taken_for_a_constant(shift):
    # the check for columns aliased with a constant reads centred columns: on the raw
    # [1, X] a dummy shifted by 3e7 is within the rank check's relative tolerance of a
    # constant, and was dropped with a RankDeficiencyWarning
    X, y, wine = _wine()
    col = X.columns[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficiencyWarning)
        m = OrdinalGLMM().fit(X.assign(**{col: X[col] + shift}), y, groups=wine["judge"])
    ref = _fit("wine_logit")
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:fixed-effect model matrix is rank deficient")
@pytest.mark.parametrize("value", [3e7, 0.1 * 3 / 3, 1e-12])
def test_a_constant_far_from_zero_or_tiny_is_still_dropped(value):
    X, y, wine = _wine()
    # (0.1 * 3 / 3's mean is off by an ulp: the centred column is rounding, not data)
    Xc = X.assign(const=np.full(len(X), value), tiny=np.full(len(X), 0.1))
    with pytest.warns(RankDeficiencyWarning, match="thresholds play its role"):
        m = OrdinalGLMM().fit(Xc, y, groups=wine["judge"])
    assert np.isnan(m.fixed_effects_.loc["const", "estimate"])
    assert np.isnan(m.fixed_effects_.loc["tiny", "estimate"])
    assert m.loglik_ == pytest.approx(_fit("wine_logit").loglik_, abs=1e-6)


def test_remembered_partials_follow_their_inputs():
    # the family remembers its last partial derivatives (the engine asks for the
    # derivatives in eta and in the thresholds at one point in turn): a changed input,
    # even the same array changed in place, or a caller writing to a result, never
    # returns stale values
    import pickle

    fam = make_family("ordinal", n_classes=5)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 50)
    eta, a = rng.normal(size=50), np.array([-1.0, 0.5, 0.6, 0.7])
    const = fam.constant(y, None)

    def fresh(*args):
        return make_family("ordinal", n_classes=5).derivs(*args)

    def same(got, want):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)

    fam.derivs(y, eta, None, None, a, const).loglik[:] = 0.0  # a caller writes to it
    same(fam.derivs(y, eta, None, None, a, const), fresh(y, eta, None, None, a, const))
    eta[3] += 1e-9  # in place
    same(fam.derivs(y, eta, None, None, a, const), fresh(y, eta, None, None, a, const))
    a2 = a + np.array([0.0, 0.0, 0.0, 1e-9])
    same(fam.derivs(y, eta, None, None, a2, const), fresh(y, eta, None, None, a2, const))
    y2 = np.where(y == 4, 3, y)
    c2 = fam.constant(y2, None)
    same(fam.derivs(y2, eta, None, None, a2, c2), fresh(y2, eta, None, None, a2, c2))
    ex = fam.extra_derivs(y2, eta, None, None, a2, c2)
    ex_fresh = make_family("ordinal", n_classes=5).extra_derivs(y2, eta, None, None, a2, c2)
    same(ex, ex_fresh)
    # a pickle leaves the remembered arrays out
    assert fam._memo is not None and pickle.loads(pickle.dumps(fam))._memo is None


def test_bad_input_is_a_clear_error():
    X, y, wine = _wine()
    with pytest.raises(ValueError, match="3 or more classes"):
        OrdinalGLMM(threshold="equidistant").fit(X, (wine["rating"] > 2).astype(int))
    with pytest.raises(ValueError, match="at least 2 classes"):
        OrdinalGLMM().fit(X, np.ones(len(X)), groups=wine["judge"])
    with pytest.raises(ValueError, match="continuous"):
        OrdinalGLMM().fit(X, np.linspace(0, 1, len(X)), groups=wine["judge"])
    with pytest.raises(ValueError, match="link"):
        OrdinalGLMM(link="log").fit(X, y, groups=wine["judge"])


def test_predictions():
    X, y, wine = _wine()
    g = wine["judge"]
    m = OrdinalGLMM().fit(X, y, groups=g)
    p = m.predict_proba(X, g)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_array_equal(m.predict(X, g), m.classes_[p.argmax(axis=1)])
    eta = m.linear_predictor(X, g)
    np.testing.assert_allclose(eta, X.to_numpy() @ m.coef_ + m.ranef_["judge"].to_numpy()[g - 1, 0])
    # new groups: averaged over the random-effect distribution, or at b = 0
    marg = m.predict_proba(X)
    zero = m.predict_proba(X, population="zero")
    np.testing.assert_allclose(marg.sum(axis=1), 1.0)
    cum0 = 1 / (
        1 + np.exp(-(m.thresholds_["estimate"].to_numpy() - (X.to_numpy() @ m.coef_)[:, None]))
    )
    np.testing.assert_allclose(np.cumsum(zero, axis=1)[:, :-1], cum0, rtol=1e-10)
    # averaging spreads the mass out to the extreme classes
    assert np.all(marg[:, 0] >= zero[:, 0] - 1e-12) and np.all(marg[:, -1] >= zero[:, -1] - 1e-12)
    assert 0.0 <= m.score(X, y, groups=g) <= 1.0
    assert m.score(X, y, groups=g) == pytest.approx(np.mean(m.predict(X, g) == y.to_numpy()))


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_population_probabilities_with_a_large_sd_match_the_integral(link):
    # the class probabilities of a new group are integrals over the random effect; with
    # an SD of several units a fixed 32-node Gauss-Hermite rule erred by up to 4e-2
    from scipy import integrate, stats

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(60), 12)
    x = rng.normal(size=len(g))
    latent = 0.8 * x + rng.normal(0, 6.0, 60)[g] + rng.logistic(size=len(g))
    y = np.digitize(latent, [-4.0, -1.0, 1.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = OrdinalGLMM(link=link).fit(x[:, None], y, groups=g)
    sd = float(np.sqrt(m.random_effects_cov_["group"].iloc[0, 0]))
    assert sd > 2.5  # where the fixed rule erred by more than 1e-4
    F = {"logit": stats.logistic.cdf, "probit": stats.norm.cdf,
         "cloglog": lambda t: -np.expm1(-np.exp(t))}[link]  # fmt: skip
    alpha = m.thresholds_["estimate"].to_numpy()
    rows = np.array([[-2.0], [0.0], [1.5]])
    p = m.predict_proba(rows)
    for i, eta in enumerate(rows[:, 0] * m.coef_[0]):
        cum = [
            integrate.quad(
                lambda b, a=a, eta=eta: F(a - eta - b) * stats.norm.pdf(b, 0, sd),
                -12 * sd, 12 * sd, points=[a - eta], limit=200, epsabs=1e-13,
            )[0]
            for a in alpha
        ]  # fmt: skip
        want = np.diff(np.concatenate([[0.0], cum, [1.0]]))
        np.testing.assert_allclose(p[i], want, atol=1e-9)


def test_population_probabilities_with_scale_effects():
    # per-row scales: a new group's probabilities are the average over the random
    # effect of those at b (population="zero" with the offset b), here by a fine grid
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(40), 10)
    x, s = rng.normal(size=400), rng.normal(size=400)
    latent = 0.5 * x + rng.normal(0, 3.0, 40)[g] + rng.logistic(size=400) * np.exp(0.3 * s)
    X = pd.DataFrame({"x": x, "s": s})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = OrdinalGLMM(scale="s").fit(X, np.digitize(latent, [-2, 0, 2]), groups=g)
    sd = float(np.sqrt(m.random_effects_cov_["group"].iloc[0, 0]))
    rows = X.iloc[:3]
    p = m.predict_proba(rows)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    b = np.linspace(-10 * sd, 10 * sd, 4001)
    wts = np.exp(-0.5 * (b / sd) ** 2)
    at_b = np.stack(
        [m.predict_proba(rows, population="zero", offset=np.full(3, v)) for v in b]
    )  # (grid, rows, classes)
    want = np.einsum("gnk,g->nk", at_b, wts / wts.sum())
    np.testing.assert_allclose(p, want, atol=1e-8)


def _ordinal_shift_data(seed=11):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 8)
    x = rng.normal(size=len(g))
    t = rng.uniform(0, 2, size=len(g))
    lat = 0.5 * x - 0.4 * t + rng.normal(0, 0.7, 30)[g] + rng.logistic(size=len(g))
    return pd.DataFrame({"year": x, "t": t}), np.digitize(lat, [-1, 0, 1, 2]), g


@pytest.mark.parametrize("threshold", ["flexible", "equidistant", "symmetric"])
def test_fit_does_not_depend_on_the_predictors_origin_or_units(threshold):
    # the design is centred internally and the thresholds moved back to X = 0: a
    # predictor far from zero (nearly collinear with the thresholds) once made fits stop
    # short of the optimum, some reported as converged
    X, y, g = _ordinal_shift_data()
    shift, units = np.array([1e4, -300.0]), np.array([1e3, 1e-2])
    fits = []
    for Xv in (X, X + shift, X * units):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fits.append(OrdinalGLMM(threshold=threshold).fit(Xv, y, groups=g))
    base, moved, rescaled = fits
    for m in (moved, rescaled):
        assert m.loglik_ == pytest.approx(base.loglik_, abs=1e-7)
        assert m.converged_
    fe, fe_s = base.fixed_effects_, rescaled.fixed_effects_
    np.testing.assert_allclose(moved.coef_, base.coef_, rtol=1e-6)
    np.testing.assert_allclose(rescaled.coef_ * units, base.coef_, rtol=1e-6)
    np.testing.assert_allclose(moved.fixed_effects_["std_error"], fe["std_error"], rtol=1e-5)
    np.testing.assert_allclose(fe_s["std_error"] * units, fe["std_error"], rtol=1e-5)
    # the thresholds at X = 0 move by the coefficients times the shift
    th = base.thresholds_["estimate"].to_numpy()
    np.testing.assert_allclose(
        moved.thresholds_["estimate"], th + shift @ base.coef_, rtol=1e-7, atol=1e-6
    )
    np.testing.assert_allclose(rescaled.thresholds_["estimate"], th, atol=1e-6)
    np.testing.assert_allclose(
        rescaled.thresholds_["std_error"], base.thresholds_["std_error"], rtol=1e-5
    )
    # their standard errors are those of alpha + shift'beta from the base fit's covariance
    res = base.fit_result_
    x, V = res.reported()
    p, k = res.layout.n_beta, res.layout.n_beta + res.layout.n_theta
    E = res.family.J.shape[1]
    Jb = res.beta_jacobian()
    for j in range(len(th)):
        grad = np.zeros(len(x))
        grad[k : k + E] = res.family.J[j]
        grad[:p] = Jb.T @ shift[res.scaling["kept"]]
        want = np.sqrt(grad @ V @ grad)
        assert moved.thresholds_["std_error"].iloc[j] == pytest.approx(want, rel=1e-4)
    # predictions and the linear predictor of the same rows
    new = X.iloc[:12]
    for groups in (g[:12], None):
        p0 = base.predict_proba(new, groups)
        np.testing.assert_allclose(moved.predict_proba(new + shift, groups), p0, atol=1e-8)
        np.testing.assert_allclose(rescaled.predict_proba(new * units, groups), p0, atol=1e-8)
    eta = base.linear_predictor(new, g[:12])
    np.testing.assert_allclose(
        moved.linear_predictor(new + shift, g[:12]), eta + shift @ base.coef_, rtol=1e-7
    )
    # P(Y <= k) = F(alpha_k - eta) with the reported thresholds and linear predictor
    cum = np.cumsum(moved.predict_proba(new + shift, g[:12]), axis=1)[:, :-1]
    eta_m = moved.linear_predictor(new + shift, g[:12])
    want = 1.0 / (1.0 + np.exp(-(moved.thresholds_["estimate"].to_numpy() - eta_m[:, None])))
    np.testing.assert_allclose(cum, want, atol=1e-8)


def test_profile_and_bootstrap_do_not_depend_on_the_predictors_origin():
    X, y, g = _ordinal_shift_data()
    shift = np.array([1e4, -300.0])
    base = OrdinalGLMM().fit(X, y, groups=g)
    moved = OrdinalGLMM().fit(X + shift, y, groups=g)
    rows = ["year", "t", "sd_(Intercept)|group"]
    ci0 = base.confint(rows, method="profile")
    ci1 = moved.confint(rows, method="profile")
    np.testing.assert_allclose(ci1.to_numpy(), ci0.to_numpy(), rtol=1e-5)
    # a threshold's interval moves with its estimate (it is the same parameter at X = 0)
    t0 = base.confint(["0|1"], method="profile")
    t1 = moved.confint(["0|1"], method="profile")
    assert t1["estimate"].iloc[0] == pytest.approx(
        t0["estimate"].iloc[0] + shift @ base.coef_, rel=1e-7
    )
    # (its interval is wider there: the threshold at X = 0, far from the data, carries the
    # coefficients' uncertainty times the shift)
    assert t1["upper"].iloc[0] - t1["lower"].iloc[0] > t0["upper"].iloc[0] - t0["lower"].iloc[0]
    with warnings.catch_warnings():
        # every refit converges (a fifth of them once stopped at the start: its first
        # step put the thresholds out of order, see test_refits_whose_first_step...)
        warnings.simplefilter("error")
        # (20 replicates: percentile limits at the extreme replicates, which is said)
        warnings.filterwarnings("ignore", message="extreme order statistics")
        b0 = base.confint(rows, method="bootstrap", n_boot=20, random_state=0)
        b1 = moved.confint(rows, method="bootstrap", n_boot=20, random_state=0)
    np.testing.assert_allclose(b1.to_numpy(), b0.to_numpy(), rtol=1e-4)


def test_threshold_profile_limits_are_where_the_deviance_reaches_the_cutoff():
    # a threshold's profile once stopped short (its upper limit -0.29 for -0.18): the
    # first step of unit length of each profile point's L-BFGS-B put the thresholds out
    # of order, where the objective is infinite, and the line search gave up; the runs
    # are preconditioned by the fit's curvature now
    from scipy import optimize

    from sklearn_glmm._param_map import ParamMap

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 14)[:400]
    x = rng.normal(size=400)
    lat = 0.2 + 0.5 * x + rng.normal(0, 0.7, 30)[g] + rng.logistic(size=400)
    m = OrdinalGLMM().fit(x[:, None], np.digitize(lat, [-0.5, 0.5, 1.5]), groups=g)
    ci = m.confint(["0|1"], method="profile")
    pm = ParamMap(m)
    obj, x_hat = m.fit_result_.objective, m.fit_result_.params
    F_hat, k = obj.evaluate(x_hat), pm.names.index("0|1")
    phi_hat = pm.to_phi(x_hat)
    others = [j for j in range(pm.n) if j != k]
    for limit in ci[["lower", "upper"]].to_numpy()[0]:
        # the deviance minimised over the other parameters by Nelder-Mead (an
        # independent search, on the reported scale) is the cutoff there

        def F(v, limit=limit):
            phi = phi_hat.copy()
            phi[k], phi[others] = limit, v
            x = pm.to_x(phi)
            return np.inf if x is None else obj.evaluate(x)

        best = optimize.minimize(
            F, phi_hat[others], method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-9}
        )
        assert best.fun - F_hat == pytest.approx(stats.chi2.ppf(0.95, 1), abs=0.02)


def test_refits_whose_first_step_crosses_the_thresholds_converge():
    # L-BFGS-B's first step has unit length; from the fitted estimate a refit to a
    # simulated outcome took the thresholds out of order there (an infinite objective),
    # its line search gave up and the refit stopped at the start, unconverged (5 of 20
    # bootstrap refits dropped). Steps scaled by the parameters' curvature do not.
    from sklearn_glmm._simulate import refit_many, simulate_response

    X, y, g = _ordinal_shift_data()
    m = OrdinalGLMM().fit(X, y, groups=g)
    Y = np.column_stack(
        [simulate_response(m, 1, np.random.default_rng(s))[:, 0] for s in (6, 8, 10)]
    )
    for batched in (False, True):
        for r, (_x, record) in enumerate(refit_many(m, Y, batched=batched)):
            assert record.converged
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = OrdinalGLMM().fit(X, Y[:, r].astype(int), groups=g)
            assert -0.5 * record.objective == pytest.approx(full.loglik_, abs=1e-6)


def test_a_laplace_stage_stuck_at_its_start_is_run_again_scaled(monkeypatch):
    # a family that does not scale its own parameters leaves L-BFGS-B unscaled; from the
    # fitted estimate its first step of unit length puts an ordinal model's thresholds out
    # of order on this simulated outcome (an infinite objective), and the line search
    # gives up at the start. _laplace_stage runs such a run again scaled by every
    # parameter's curvature (the ordinal family itself scales its thresholds from the
    # start, so its fits do not come here: the net is for families that do not)
    import dataclasses

    from sklearn_glmm._engine import lbfgsb, stage
    from sklearn_glmm._engine.families.ordinal import CumulativeLink
    from sklearn_glmm._engine.objective import Objective
    from sklearn_glmm._simulate import simulate_response

    X, y, g = _ordinal_shift_data()
    m = OrdinalGLMM().fit(X, y, groups=g)
    y_sim = simulate_response(m, 1, np.random.default_rng(25))[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = OrdinalGLMM().fit(X, y_sim.astype(int), groups=g)
    res = m.fit_result_
    data = dataclasses.replace(res.objective.data, y=y_sim.astype(float))
    x0, bounds = res.params.copy(), res.bounds
    monkeypatch.setattr(CumulativeLink, "scales_own_parameters", False)
    plain = lbfgsb._run_lbfgsb(Objective(data, 1).value_and_grad, x0, bounds, m.max_iter, m.tol)
    assert stage._stuck_at_start(plain, x0, bounds)  # the case the net is for
    staged = stage._laplace_stage(Objective(data, 1), x0, bounds, m.max_iter, m.tol, [])
    assert not np.array_equal(staged.x, x0)
    assert -0.5 * staged.fun == pytest.approx(full.loglik_, abs=1e-6)


def test_sample_weight_equals_repeated_rows():
    X, y, wine = _wine()
    w = np.random.default_rng(0).integers(1, 4, size=len(y))
    g = wine["judge"].to_numpy()
    weighted = OrdinalGLMM().fit(X, y, groups=g, sample_weight=w)
    rep = np.repeat(np.arange(len(y)), w)
    repeated = OrdinalGLMM().fit(X.iloc[rep], y.iloc[rep], groups=g[rep])
    assert weighted.loglik_ == pytest.approx(repeated.loglik_, rel=1e-8)
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-4)
    np.testing.assert_allclose(
        weighted.thresholds_["estimate"], repeated.thresholds_["estimate"], rtol=1e-4
    )
    # Pearson and deviance residuals carry sqrt(w): their squares sum as over the copies
    for kind in ("pearson", "deviance"):
        assert np.sum(weighted.residuals(kind) ** 2) == pytest.approx(
            np.sum(repeated.residuals(kind) ** 2), rel=1e-5
        )


def _simulated(n_groups=300, per=8, seed=0, link="logit"):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    X = pd.DataFrame(
        {"time": np.tile(np.arange(per), n_groups) / per, "treat": (g % 2).astype(float)}
    )
    eta = X.to_numpy() @ np.array([1.0, -0.8]) + rng.normal(scale=1.2, size=n_groups)[g]
    fam = make_family("ordinal", link=link, n_classes=4)
    y = fam.sample_eta(eta, None, np.array([-1.0, 0.3, 1.8]), rng).astype(int)
    return X, y, g


def test_simulation_recovery():
    X, y, g = _simulated()
    m = OrdinalGLMM(random_effects="1").fit(X, y, groups=g)
    fe, th = m.fixed_effects_, m.thresholds_
    assert np.all(np.abs(fe["estimate"] - [1.0, -0.8]) < 4 * fe["std_error"])
    assert np.all(np.abs(th["estimate"] - [-1.0, 0.3, 1.8]) < 4 * th["std_error"])
    (cov,) = m.random_effects_cov_.values()
    assert 0.9 < np.sqrt(cov.iloc[0, 0]) < 1.5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.StandardErrorWarning")
@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.SingularFitWarning")
def test_separation_is_reported():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(20), 6)
    x = rng.normal(size=120)
    y = np.digitize(x, [-0.5, 0.5])  # x orders the classes perfectly
    z = rng.normal(size=120)
    X = pd.DataFrame({"x": x, "z": z})
    with pytest.warns(SeparationWarning, match=r"\['x'\]"):
        OrdinalGLMM().fit(X, y, groups=g)
    # without separation: no warning
    X, y, wine = _wine()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        OrdinalGLMM().fit(X, y, groups=wine["judge"])


# -- scikit-learn's contract and tools ------------------------------------------------
_ILL_POSED_WEIGHTS = (
    "the check fits many features on few rows, where the unpenalised estimate does not exist "
    "(separation); test_sample_weight_equals_repeated_rows checks the property on "
    "well-posed data"
)


_NOMINAL = (
    "its three-class problem is three blobs in the plane, nominal classes that no single "
    "ordering direction separates, so an ordinal model's accuracy stays below the check's "
    "0.83 (and the check stops there, before its two-class problem; "
    "test_decision_function_follows_the_classifier_contract checks that one's assertions)"
)


def _expected_failed_checks(estimator):
    return {
        "check_classifiers_train": _NOMINAL,
        "check_sample_weight_equivalence_on_dense_data": _ILL_POSED_WEIGHTS,
        "check_sample_weight_equivalence_on_sparse_data": _ILL_POSED_WEIGHTS,
    }


@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.NoRandomEffectsWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@parametrize_with_checks([OrdinalGLMM()], expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_pipeline_cross_validation_and_grid_search():
    X, y, wine = _wine()
    g = wine["judge"].to_numpy()
    Xg = X.assign(judge=g)
    pipe = make_pipeline(StandardScaler(), OrdinalGLMM())
    with pytest.warns(NoRandomEffectsWarning):  # a pipeline without groups fits clm
        pipe.fit(X, y)
    assert pipe.predict_proba(X).shape == (len(y), 5)
    model = OrdinalGLMM(random_effects="1", group_columns="judge")
    scores = cross_val_score(model, Xg, y, cv=GroupKFold(3), groups=g)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits on a third of the judges
        search = GridSearchCV(
            model,
            {
                "link": ["logit", "probit"],
                "threshold": ["flexible", "equidistant"],
                "random_effects": ["1", "1 + tempwarm"],
            },
            cv=GroupKFold(3),
        ).fit(Xg, y, groups=g)
    assert set(search.best_params_) == {"link", "threshold", "random_effects"}
    assert len(search.cv_results_["params"]) == 8
    set_config(enable_metadata_routing=True)
    try:
        est = OrdinalGLMM(random_effects="1").set_fit_request(groups=True)
        s2 = cross_val_score(est, X, y, cv=GroupKFold(3), params={"groups": g})
        assert s2.shape == (3,)
    finally:
        set_config(enable_metadata_routing=False)


# -- tools on top: summary, intervals, comparisons, simulation, scorers ---------------
def test_summary_reads_like_clmm():
    m = _fit("wine_equidistant")
    text = str(m.summary())
    assert text.startswith("Cumulative Link Mixed Model fitted with the Laplace approximation")
    assert "formula: rating ~ tempwarm + contactyes + (1 | judge)" in text
    for part in ("Random effects:", "Number of groups:  judge 9", "Coefficients:"):
        assert part in text
    lines = text.splitlines()
    at = lines.index("Threshold coefficients:")
    assert lines[at + 2].split()[0] == "threshold.1" and lines[at + 3].split()[0] == "spacing"
    s = m.summary()
    assert s.fit_statistics["logLik"] == m.loglik_
    pd.testing.assert_series_equal(
        s.thresholds["Estimate"], m.threshold_coefficients_["estimate"], check_names=False
    )
    clm = _fit("wine_clm")
    assert str(clm.summary()).startswith("Cumulative Link Model\n")


def test_confint_odds_ratios_and_likelihood_ratio_test():
    from sklearn_glmm import anova

    m = _fit("wine_logit")
    ci = m.confint()
    assert list(ci.index[-4:]) == ["1|2", "2|3", "3|4", "4|5"]
    odds = m.confint(exponentiate=True)
    np.testing.assert_allclose(odds.loc["tempwarm", "estimate"], np.exp(m.coef_[0]))
    assert odds.loc["tempwarm", "lower"] == pytest.approx(np.exp(ci.loc["tempwarm", "lower"]))
    # profile intervals bracket the estimates
    prof = m.confint(parm=["tempwarm", "sd_(Intercept)|judge"], method="profile")
    assert np.all(prof["lower"] < prof["estimate"]) and np.all(prof["estimate"] < prof["upper"])
    # R: anova(clm(...), clmm(...)): LR statistic 2 * (-81.565 - -86.492)
    clm = _fit("wine_clm")
    table = anova(clm, m)
    stat = 2 * (REF["wine_logit"]["loglik"] - REF["wine_clm"]["loglik"])
    assert table["Chisq"].iloc[1] == pytest.approx(stat, abs=0.02)
    assert table["AIC"].iloc[1] < table["AIC"].iloc[0]


def test_simulate_and_residuals():
    m = _fit("wine_logit")
    sims = m.simulate(400, random_state=0)
    assert sims.shape == (72, 400) and set(np.unique(sims)) <= set(range(5))
    # the simulated class frequencies match the model's (population) probabilities
    freq = np.array([(sims == k).mean() for k in range(5)])
    g = np.zeros(72)  # new judges: the marginal probabilities of the rows, averaged
    X, _, _ = _wine()
    expected = m.predict_proba(X, groups=g + 100).mean(axis=0)
    np.testing.assert_allclose(freq, expected, atol=0.02)
    assert np.array_equal(m.simulate(2, random_state=1), m.simulate(2, random_state=1))
    r = m.residuals("response")
    X, y, wine = _wine()
    p = m.predict_proba(X, wine["judge"])
    np.testing.assert_allclose(m.fitted(), p @ np.arange(5))
    np.testing.assert_allclose(r, y.cat.codes.to_numpy() - p @ np.arange(5))
    # parametric bootstrap intervals refit simulated outcomes
    boot = m.confint(parm="fixed", method="bootstrap", n_boot=20, random_state=0)
    assert np.all(boot["lower"] < boot["estimate"]) and np.all(boot["estimate"] < boot["upper"])
    assert np.all(np.isfinite(m.residuals("pearson"))) and np.all(
        np.isfinite(m.residuals("deviance"))
    )
    with pytest.raises(ValueError, match="type"):
        m.residuals("working")


def test_ordinal_scorers():
    from sklearn_glmm.model_selection import (
        get_scorer,
        mean_absolute_class_error,
        ordinal_log_loss,
    )

    X, y, wine = _wine()
    g = wine["judge"]
    m = _fit("wine_logit")
    p = m.predict_proba(X, g)
    k = y.cat.codes.to_numpy()
    assert ordinal_log_loss(m, X, y, groups=g) == pytest.approx(
        -np.mean(np.log(p[np.arange(72), k]))
    )
    mae = mean_absolute_class_error(m, X, y, groups=g)
    assert mae == pytest.approx(np.mean(np.abs(p.argmax(axis=1) - k)))
    assert get_scorer("neg_mean_absolute_class_error")(m, X, y, groups=g) == pytest.approx(-mae)
    Xg = X.assign(judge=g)
    model = OrdinalGLMM(random_effects="1", group_columns="judge")
    scores = cross_val_score(
        model, Xg, y, cv=GroupKFold(3), groups=g, scoring=get_scorer("neg_ordinal_log_loss")
    )
    assert np.all(scores < 0)
    with pytest.raises(ValueError, match="not classes seen in fit"):
        ordinal_log_loss(m, X, np.full(72, 9), groups=g)
    with pytest.raises(TypeError, match="ordered outcomes"):
        b = BinomialGLMM().fit(X, (wine["rating"] > 2).astype(int), groups=g)
        ordinal_log_loss(b, X, (wine["rating"] > 2).astype(int), groups=g)


def test_clmm_formula_front_end():
    from sklearn_glmm.formula import clmm

    wine = pd.read_csv(FIXTURES / "wine.csv")
    wine["rating"] = pd.Categorical(wine["rating"], ordered=True)
    before = wine.copy()
    # R: clmm(rating ~ temp + contact + (1 | judge), data = wine, nAGQ = 10)
    m = clmm("rating ~ temp + contact + (1 | judge)", wine, nAGQ=10)
    pd.testing.assert_frame_equal(wine, before)
    ref = REF["wine_agq10"]
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=0.01)
    assert list(m.fixed_effects_.index) == ref["beta_names"]
    assert m.formula_ == "rating ~ temp + contact + (1 | judge)"
    # predictions from data holding the formula's variables (R's newdata)
    X, _, _ = _wine()
    np.testing.assert_allclose(
        m.predict_proba(wine.head(5)), m.predict_proba(X.head(5), wine["judge"].head(5))
    )
    at_zero = m.predict_proba(wine.head(5), re_form="NA")
    np.testing.assert_allclose(at_zero, m.predict_proba(X.head(5), population="zero"))
    assert m.predict(wine.head(5)).dtype.kind == "i"
    eq = clmm("rating ~ temp + contact + (1 | judge)", wine, link="probit", threshold="equidistant")
    assert list(eq.threshold_coefficients_.index) == ["threshold.1", "spacing"]
    with pytest.raises(TypeError, match="random_effects"):
        clmm("rating ~ temp + (1 | judge)", wine, random_effects="1")
    with pytest.raises(ValueError, match="non-adaptive"):
        clmm("rating ~ temp + (1 | judge)", wine, nAGQ=-5)


def test_report_reads_cumulative_odds_ratios():
    m = _fit("wine_logit")
    text = m.report(compare=[_fit("wine_clm")])
    assert "The odds of a higher rating were higher for tempwarm = 1" in text
    assert f"OR = {np.exp(m.coef_[0]):.2f}" in text
    assert "thresholds" in text and "1|2: -1.62" in text
    assert "overdispersion" not in text
    probit = _fit("wine_probit").report()
    assert "OR =" not in probit and "probit scale" in probit
    scaled = m.scaled_residuals(n_sim=50, random_state=0)
    assert scaled.residuals.shape == (72,)


def test_clmm_formula_on_other_data_matches_r():
    from sklearn_glmm.formula import clmm

    soup = pd.read_csv(FIXTURES / "soup.csv")
    soup["SURENESS"] = pd.Categorical(soup["SURENESS"], ordered=True)
    # R: clmm(SURENESS ~ PROD + (1 | RESP) + (1 | PRODID), data = soup)
    m = clmm("SURENESS ~ PROD + (1 | RESP) + (1 | PRODID)", soup)
    ref = REF["soup_crossed"]
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=0.01)
    fe = m.fixed_effects_.loc[ref["beta_names"]]
    assert np.all(np.abs(fe["estimate"] - ref["beta"]) <= 0.05 * np.array(ref["beta_se"]))
    for name, re in ref["ranef"].items():
        sd = np.sqrt(np.diag(m.random_effects_cov_[name].to_numpy()))
        np.testing.assert_allclose(sd, re["sd"], rtol=0.02)
    # R: clmm(SURENESS ~ PROD + (1 | RESP/DAY), data = soup): factors RESP and DAY:RESP
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DAY:RESP's variance is on its boundary
        nested = clmm("SURENESS ~ PROD + (1 | RESP/DAY)", soup)
    assert set(nested.random_effects_cov_) == {"RESP", "DAY:RESP"}
    assert nested.loglik_ == pytest.approx(REF["soup_nested"]["loglik"], abs=0.01)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tutorial_example_runs(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("matplotlib")
    pytest.importorskip("formulaic")
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, str(root / "examples" / "ordinal_likert.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Cumulative odds ratios" in res.stdout and "wave:treat" in res.stdout
    for name in ("probabilities", "people", "proportions"):
        assert (tmp_path / f"ordinal_{name}.png").exists()


def test_plots_and_category_proportions():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_glmm.plotting import (
        category_proportions,
        plot_category_probabilities,
        plot_category_proportions,
    )

    X, y, wine = _wine()
    m = _fit("wine_logit")
    frame = X.assign(rating=y.to_numpy(), bottle=wine["bottle"])
    table = category_proportions(m, frame, "rating", "bottle")
    np.testing.assert_allclose(table["observed"].sum(axis=1), 1.0)
    np.testing.assert_allclose(table["predicted"].sum(axis=1), 1.0)
    ax = plot_category_probabilities(m, frame, "bottle", groups=wine["judge"])
    assert ax.get_ylim() == (0.0, 1.0)
    plot_category_proportions(m, frame, "rating", "bottle")
    with pytest.raises(TypeError, match="OrdinalGLMM"):
        b = BinomialGLMM().fit(X, (wine["rating"] > 2).astype(int), groups=wine["judge"])
        plot_category_probabilities(b, frame, "bottle")
    matplotlib.pyplot.close("all")


def test_tools_that_do_not_apply_say_so():
    import pickle

    X, y, wine = _wine()
    m = _fit("wine_logit")
    from sklearn_glmm import inference
    from sklearn_glmm.marginal import marginal_coefs
    from sklearn_glmm.performance import check_zeroinflation

    for call in (
        lambda: m.predict_interval(X),
        lambda: m.marginal_means(X),
        lambda: m.contrast(X, X),
        lambda: m.overdispersion(),
        # the module's functions too (they returned NaN, or raised an unrelated error)
        lambda: inference.predict_interval(m, X),
        lambda: inference.marginal_means(m, X),
        lambda: inference.contrast(m, X, X),
        lambda: marginal_coefs(m),
    ):
        with pytest.raises(NotImplementedError, match="not available for OrdinalGLMM"):
            call()
    with pytest.raises(ValueError, match="must be a count model.*OrdinalGLMM"):
        check_zeroinflation(m)
    # a pickle without the training data predicts and summarises
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(
        m2.predict_proba(X, wine["judge"]), m.predict_proba(X, wine["judge"])
    )
    assert str(m2.summary()) == str(m.summary())
    # the derivative of E[Y] in eta
    fam, a = m.fit_result_.family, m.fit_result_.extra
    eta = np.linspace(-3, 8, 12)
    h = 1e-6
    np.testing.assert_allclose(
        fam.mean_derivative(eta, a),
        (fam.mean(eta + h, a) - fam.mean(eta - h, a)) / (2 * h),
        rtol=1e-6,
    )


def test_offset_row_order_and_units_invariances():
    X, y, wine = _wine()
    g = wine["judge"].to_numpy()
    m = _fit("wine_logit")
    # an offset c adds to eta: the thresholds move by c, nothing else changes
    shifted = OrdinalGLMM().fit(X, y, groups=g, offset=np.full(len(y), 0.7))
    assert shifted.loglik_ == pytest.approx(m.loglik_, abs=1e-7)
    np.testing.assert_allclose(shifted.coef_, m.coef_, rtol=1e-5)
    # (each threshold at X = 0 carries the coefficients' optimisation error times the
    # columns' means: 1e-4 is 2e-4 of its standard error)
    np.testing.assert_allclose(
        shifted.thresholds_["estimate"], m.thresholds_["estimate"] + 0.7, atol=1e-4
    )
    # rows in another order, predictors in other units
    perm = np.random.default_rng(0).permutation(len(y))
    Xs = X.iloc[perm] * [10.0, 0.01]
    other = OrdinalGLMM().fit(Xs, y.iloc[perm], groups=g[perm])
    assert other.loglik_ == pytest.approx(m.loglik_, abs=1e-7)
    np.testing.assert_allclose(other.coef_ * [10.0, 0.01], m.coef_, rtol=1e-5)
    np.testing.assert_allclose(
        other.fixed_effects_["std_error"] * [10.0, 0.01], m.fixed_effects_["std_error"], rtol=1e-3
    )


@pytest.mark.parametrize("link", ["logit", "cloglog", "cauchit"])
def test_quadrature_log_likelihood_equals_brute_force_integral(link):
    # the marginal log-likelihood at the fitted parameters, integrated over each judge's
    # random intercept on a fine grid (an independent computation of the same integral)
    X, y, wine = _wine()
    g = wine["judge"].to_numpy()
    m = OrdinalGLMM(link=link, n_agq=25).fit(X, y, groups=g)
    fam, a = m.fit_result_.family, m.thresholds_["estimate"].to_numpy()
    (cov,) = m.random_effects_cov_.values()
    sd = np.sqrt(cov.iloc[0, 0])
    z = np.linspace(-10, 10, 4001)
    w = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) * (z[1] - z[0])
    eta = X.to_numpy() @ m.coef_
    k = y.cat.codes.to_numpy().astype(float)
    total = 0.0
    for level in np.unique(g):
        rows = g == level
        ll = fam.derivs(k[rows], eta[rows][None, :] + sd * z[:, None], None, None, a).loglik
        total += np.log(np.sum(np.exp(ll.sum(axis=1)) * w))
    # 25 nodes centred on each mode: exact to 1e-6 for a log-concave density; the
    # cauchit's heavier-tailed, possibly skewed conditional density leaves ~1e-5
    assert m.loglik_ == pytest.approx(total, abs=1e-6 if link != "cauchit" else 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("link", ["probit", "loglog"])
def test_simulation_recovery_at_large_n(link):
    X, y, g = _simulated(n_groups=2500, per=8, seed=11, link=link)
    m = OrdinalGLMM(random_effects="1", link=link).fit(X, y, groups=g)
    fe, th = m.fixed_effects_, m.thresholds_
    assert np.all(np.abs(fe["estimate"] - [1.0, -0.8]) < 4 * fe["std_error"])
    assert np.all(np.abs(th["estimate"] - [-1.0, 0.3, 1.8]) < 4 * th["std_error"])
    assert np.all(th["std_error"] < 0.06)  # 20,000 rows: tight
    (cov,) = m.random_effects_cov_.values()
    assert np.sqrt(cov.iloc[0, 0]) == pytest.approx(1.2, rel=0.08)


def test_the_dispersion_test_holds_its_level_for_an_ordinal_model():
    # with the simulations at the fitted modes the test found overdispersion (p = 0) in
    # every data set drawn from the model; each simulated data set's statistic at its
    # own modes is the observed statistic's reference
    rejected, ratios = 0, []
    for seed in range(6):
        rng = np.random.default_rng(5 + seed)
        n, T = 150, 5
        pid = np.repeat(np.arange(n), T)
        time = np.tile(np.arange(T), n).astype(float)
        lat = 0.2 * time + rng.normal(0, 1.3, n)[pid] + rng.logistic(size=n * T)
        y = np.digitize(lat, [-1.0, 0.3, 1.5, 2.8])
        m = OrdinalGLMM().fit(time[:, None], y, groups=pid)
        t = m.scaled_residuals(n_sim=100, random_state=seed).tests()
        assert np.isfinite(t.loc["uniformity (KS)", "p_value"])
        rejected += t.loc["dispersion", "p_value"] < 0.05
        ratios.append(t.loc["dispersion", "statistic"])
    assert rejected <= 1
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.03)


def _offset_panel(seed, sd, offset_in_latent, burn=False):
    """40 groups of 10 ordinal answers (3 cut points) with a log-exposure offset ``lh``;
    ``burn``: count draws first (the random stream of the data set first found)."""
    rng = np.random.default_rng(seed)
    G, n = 40, 10
    g = np.repeat(np.arange(G), n)
    N = G * n
    b0 = rng.normal(0, sd, G)
    x = rng.normal(size=N)
    lh = np.log(rng.uniform(0.5, 5, N))
    if burn:
        mu = np.exp(0.3 + b0[g] + 0.3 * x + lh)
        rng.negative_binomial(2, 2 / (2 + mu))
        rng.poisson(mu)
    latent = b0[g] + 0.5 * x + offset_in_latent * lh + rng.logistic(size=N)
    r = np.digitize(latent, [-1, 0.5, 1.5])
    return pd.DataFrame(dict(r=pd.Categorical(r, ordered=True), x=x, g=g, lh=lh))


def test_a_constant_added_to_the_offset_only_moves_the_thresholds():
    # log exposure in other units: the same model. From the start the threshold
    # guesses give, the optimiser once stopped far from the optimum and the Newton
    # polish clipped the SD onto zero there, a converged singular fit 0.24 below the
    # optimum; a zero the polish makes is now probed as the main stage's end is
    from sklearn_glmm.formula import clmm

    d = _offset_panel(21, 0.6, 0.0, burn=True)
    fits = []
    for shift in (0.0, -10.0, 30.0):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither a singular fit nor any other warning
            fits.append(clmm("r ~ x + offset(lh) + (1 | g)", d.assign(lh=d.lh + shift)))
    ref = fits[0]
    assert ref.loglik_ == pytest.approx(-555.406164, abs=1e-5)  # clmm: -555.406181
    for m in fits[1:]:
        assert m.converged_ and not m.is_singular_
        assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
        sd = np.sqrt(m.random_effects_cov_["g"].to_numpy()[0, 0])
        assert sd == pytest.approx(0.23894, abs=2e-4)


@pytest.mark.parametrize("shift", [-24.0, 32.0])
def test_the_thresholds_start_from_the_offsets_centre(shift):
    # offsets far from zero: thresholds started from the class proportions alone were
    # tens of units from the optimum and the fits ended thousands of log-likelihood
    # units short (not converged)
    from sklearn_glmm.formula import clmm

    d = _offset_panel(300, 0.7, 0.5)
    ref = clmm("r ~ x + offset(lh) + (1 | g)", d)
    m = clmm("r ~ x + offset(lh) + (1 | g)", d.assign(lh=d.lh + shift))
    assert m.converged_
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
    a, b = m.thresholds_["estimate"].to_numpy(), ref.thresholds_["estimate"].to_numpy()
    np.testing.assert_allclose(a, b + shift, atol=1e-4)


@pytest.mark.parametrize("link", ["logit", "probit", "cauchit"])
@pytest.mark.parametrize("order", [1, 3])
def test_symmetric_links_partials_from_log_cdf_alone_are_the_same_to_the_bit(link, order):
    # S(x) = F(-x): B, D and every derivative from log F at half the arguments, equal
    # to those from log F and log S at both, in the middle and far in both tails
    from sklearn_glmm._engine.families.ordinal import _pieces, _symmetric_pieces
    from sklearn_glmm._engine.families.ordinal_links import make_ordinal_link

    ln = make_ordinal_link(link)
    assert ln.symmetric
    rng = np.random.default_rng(5)
    K, n = 5, 3000
    k = rng.integers(0, K, n)
    alpha = np.array([-40.0, -1.0, 0.5, 30.0])
    padded = np.concatenate([[0.0], alpha, [0.0]])
    eta = np.concatenate([rng.normal(scale=2.0, size=n // 2), rng.uniform(-60, 60, n - n // 2)])
    eta = np.stack([eta, eta[::-1]])  # nodes x rows, as quadrature asks
    xu, xl = padded[k + 1] - eta, padded[k] - eta
    top, bottom = k == K - 1, k == 0
    upper, middle = ~bottom & (top | (xl > 0)), ~top & ~bottom
    with np.errstate(all="ignore"):
        general = _pieces(ln, xu, xl, upper, middle, order)
        fast = _symmetric_pieces(ln, xu, xl, upper, middle, order)
    for name, a, b in zip(("B", "D", "bu", "bl", "du", "dl"), general, fast):
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
