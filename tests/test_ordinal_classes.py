"""OrdinalGLMM and scikit-learn's classifier contract: ``classes_`` sorted, the model's
order in ``class_order_``, ``decision_function`` per-class scores, and the order of the
classes taken from the data.

The checks compare scikit-learn's metrics with values computed by hand from the fitted
thresholds and linear predictor (``P(Y <= k) = expit(alpha_k - eta)``), with a class
order that is not alphabetical (low < medium < high).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import get_scorer, log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from sklearn_glmm import OrdinalGLMM
from sklearn_glmm._plot_common import link_predictions
from sklearn_glmm.model_selection import mean_absolute_class_error, ordinal_log_loss

sklearn_version = np.lib.NumpyVersion(sklearn.__version__)

ORDER = ["low", "medium", "high"]


def _data(n_groups=40, n_per=10, cuts=(-1.0, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.normal(size=len(g))
    latent = 1.5 * x + rng.normal(0, 1, n_groups)[g] + rng.logistic(size=len(g))
    codes = np.digitize(latent, cuts)
    X = pd.DataFrame({"x": x, "wave": np.tile(np.arange(n_per), n_groups), "id": g})
    return X, codes


def _hand_probabilities(m, X):
    """Class probabilities in the model's order from the thresholds and the linear
    predictor (known groups: at their modes), by the logit link's formula."""
    alpha = m.thresholds_["estimate"].to_numpy()
    eta = m.linear_predictor(X)
    cum = expit(alpha[None, :] - eta[:, None])
    cum = np.column_stack([np.zeros(len(eta)), cum, np.ones(len(eta))])
    return np.diff(cum, axis=1)


@pytest.fixture(scope="module")
def three():
    X, codes = _data()
    y = pd.Series(pd.Categorical.from_codes(codes, categories=ORDER, ordered=True), name="y")
    m = OrdinalGLMM(group_columns="id").fit(X, y)
    return m, X, y, codes


@pytest.fixture(scope="module")
def two():
    X, codes = _data(cuts=(1.0,))
    y = pd.Series(pd.Categorical.from_codes(codes, categories=["low", "high"], ordered=True))
    return OrdinalGLMM(group_columns="id").fit(X, y), X, y, codes


# -- classes_ sorted, class_order_ the model's ---------------------------------------
def test_classes_are_sorted_and_the_model_order_is_class_order(three):
    m, X, y, _ = three
    assert list(m.classes_) == sorted(ORDER)
    assert list(m.class_order_) == ORDER
    assert list(m.thresholds_.index) == ["low|medium", "medium|high"]
    hand = _hand_probabilities(m, X)
    p = m.predict_proba(X)
    for k, label in enumerate(ORDER):
        np.testing.assert_allclose(p[:, list(m.classes_).index(label)], hand[:, k], atol=1e-10)
    np.testing.assert_array_equal(m.predict(X), np.array(ORDER)[hand.argmax(axis=1)])


def test_sklearn_probability_metrics_equal_the_hand_values(three):
    m, X, y, codes = three
    hand = _hand_probabilities(m, X)
    n = len(codes)
    want = -np.mean(np.log(hand[np.arange(n), codes]))
    assert log_loss(y, m.predict_proba(X)) == pytest.approx(want, rel=1e-9)
    assert log_loss(np.asarray(y), m.predict_proba(X), labels=m.classes_) == pytest.approx(
        want, rel=1e-9
    )
    assert -get_scorer("neg_log_loss")(m, X, y) == pytest.approx(want, rel=1e-9)
    assert ordinal_log_loss(m, X, y) == pytest.approx(want, rel=1e-9)
    # one-vs-rest AUC: the mean over the classes of the AUC of P(class)
    ovr = np.mean([roc_auc_score(codes == k, hand[:, k]) for k in range(3)])
    assert get_scorer("roc_auc_ovr")(m, X, y) == pytest.approx(ovr, rel=1e-9)
    if sklearn_version >= "1.7.0":  # (binary outcomes only before)
        brier = np.mean(np.sum((hand - np.eye(3)[codes]) ** 2, axis=1))
        assert -get_scorer("neg_brier_score")(m, X, y) == pytest.approx(brier, rel=1e-9)


def test_two_class_roc_auc_equals_the_hand_value(two):
    m, X, y, codes = two
    assert list(m.classes_) == ["high", "low"] and list(m.class_order_) == ["low", "high"]
    p_high = 1.0 - expit(m.thresholds_["estimate"].iloc[0] - m.linear_predictor(X))
    want = roc_auc_score(codes == 1, p_high)
    assert want > 0.8  # the model ranks the rows well: an inverted AUC would be < 0.2
    assert roc_auc_score(y, m.predict_proba(X)[:, 1]) == pytest.approx(want, rel=1e-12)
    assert get_scorer("roc_auc")(m, X, y) == pytest.approx(want, rel=1e-12)


# -- decision_function ---------------------------------------------------------------
def test_decision_function_follows_the_classifier_contract(three, two):
    m, X, y, _ = three
    dec = m.decision_function(X)
    assert dec.shape == (len(X), 3)
    np.testing.assert_array_equal(m.classes_[dec.argmax(axis=1)], m.predict(X))
    hand = _hand_probabilities(m, X)[:, [ORDER.index(c) for c in m.classes_]]
    np.testing.assert_allclose(np.exp(dec), hand, atol=1e-10)
    # two classes: 1-D, log(P(classes_[1]) / P(classes_[0])), positive for classes_[1]
    m2, X2, y2, _ = two
    dec2 = m2.decision_function(X2)
    assert dec2.shape == (len(X2),)
    np.testing.assert_array_equal(m2.classes_[(dec2 > 0).astype(int)], m2.predict(X2))
    # classes_ = [high, low]: log(P(low) / P(high)) = alpha - eta for the logit link
    alpha = m2.thresholds_["estimate"].iloc[0]
    np.testing.assert_allclose(dec2, alpha - m2.linear_predictor(X2), atol=1e-8)
    assert np.mean(dec2 > 0) not in (0.0, 1.0)
    # scikit-learn's binary checks (check_classifiers_train's two-class assertions)
    p2 = m2.predict_proba(X2)
    np.testing.assert_array_equal(np.argsort(dec2), np.argsort(p2[:, 1]))


def test_decision_function_scores_stay_finite():
    X, codes = _data(seed=1)
    X = X.assign(x=X["x"] * 40.0)  # probabilities far below 1e-300 at the extremes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = OrdinalGLMM().fit(X[["x"]], codes)
    dec = m.decision_function(X[["x"]])
    assert np.all(np.isfinite(dec))
    np.testing.assert_array_equal(m.classes_[dec.argmax(axis=1)], m.predict(X[["x"]]))


def test_meta_estimators_reading_decision_function(three):
    m, X, _, codes = three
    # top-k accuracy: the share of rows whose class is among the two most probable
    p = m.predict_proba(X)
    top2 = np.argsort(-p, axis=1)[:, :2]
    want = np.mean([c in row for c, row in zip(codes, top2)])
    assert get_scorer("top_k_accuracy")(m, X, codes) == pytest.approx(want)
    # CalibratedClassifierCV prefers decision_function: its probabilities follow the
    # classes (it used to give [1, 0, 0] for every row)
    cal = CalibratedClassifierCV(OrdinalGLMM(group_columns="id"), cv=3).fit(X, codes)
    pc = cal.predict_proba(X)
    freq = np.bincount(codes) / len(codes)
    np.testing.assert_allclose(pc.mean(axis=0), freq, atol=0.03)
    assert np.mean(cal.predict(X) == codes) > np.mean(m.predict(X) == codes) - 0.05


def test_linear_predictor_is_x_beta_plus_the_mode(three):
    m, X, _, _ = three
    b = m.ranef_["id"].iloc[:, 0].to_numpy()
    np.testing.assert_allclose(
        m.linear_predictor(X), X[["x", "wave"]].to_numpy() @ m.coef_ + b[X["id"]], atol=1e-10
    )
    np.testing.assert_allclose(link_predictions(m, X, None), m.linear_predictor(X))


# -- everything in the model's order --------------------------------------------------
def test_ordinal_tools_use_the_model_order(three):
    m, X, y, codes = three
    hand = _hand_probabilities(m, X)
    index = np.arange(3.0)
    np.testing.assert_allclose(m.predict_mean(X), hand @ index, atol=1e-10)
    np.testing.assert_allclose(m.fitted(), hand @ index, atol=1e-10)
    np.testing.assert_allclose(m.residuals(), codes - hand @ index, atol=1e-10)
    want = np.mean(np.abs(codes - hand.argmax(axis=1)))
    assert mean_absolute_class_error(m, X, y) == pytest.approx(want)
    # simulated indices are positions in class_order_: their frequencies are the
    # model's probabilities in that order (at the modes)
    sims = m.simulate(400, random_state=0, new_random_effects=False)
    freq = np.array([np.mean(sims == k) for k in range(3)])
    se = np.sqrt(0.25 / sims.size) * 4
    np.testing.assert_allclose(freq, hand.mean(axis=0), atol=max(se, 0.01))
    text = str(m.summary())
    assert "low|medium" in text and "medium|high" in text


def test_category_proportions_and_plot_follow_the_model_order(three):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_glmm.plotting import category_proportions, plot_category_probabilities

    m, X, y, codes = three
    data = X.assign(y=np.asarray(y))
    table = category_proportions(m, data.drop(columns="y"), np.asarray(y), "wave")
    assert list(table["observed"].columns) == ORDER
    hand = _hand_probabilities(m, X)
    want = pd.DataFrame(hand, columns=ORDER).groupby(X["wave"].to_numpy()).mean()
    np.testing.assert_allclose(table["predicted"].to_numpy(), want.to_numpy(), atol=1e-10)
    obs = pd.DataFrame(np.eye(3)[codes], columns=ORDER).groupby(X["wave"].to_numpy()).mean()
    np.testing.assert_allclose(table["observed"].to_numpy(), obs.to_numpy())
    ax = plot_category_probabilities(m, X[X["id"] == 0], "wave", kind="line")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ORDER
    np.testing.assert_allclose(ax.lines[0].get_ydata(), hand[X["id"] == 0][:, 0], atol=1e-10)


# -- the order of the classes from the data -------------------------------------------
def _quiet_fit(X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return OrdinalGLMM(group_columns="id").fit(X, y)


def test_an_unordered_categorical_keeps_its_categories_order(three):
    m, X, y, codes = three
    unordered = pd.Series(pd.Categorical.from_codes(codes, categories=ORDER))
    before = unordered.copy()
    u = _quiet_fit(X, unordered)
    assert list(u.class_order_) == ORDER and list(u.classes_) == sorted(ORDER)
    assert u.loglik_ == pytest.approx(m.loglik_, abs=1e-8)
    np.testing.assert_allclose(u.coef_, m.coef_, rtol=1e-6)
    pd.testing.assert_series_equal(unordered, before)  # the caller's data unchanged


def test_a_polars_enum_keeps_its_order(three):
    pl = pytest.importorskip("polars")
    m, X, y, codes = three
    enum = pl.Series("y", np.array(ORDER)[codes], dtype=pl.Enum(ORDER))
    e = _quiet_fit(X, enum)
    assert list(e.class_order_) == ORDER
    assert e.loglik_ == pytest.approx(m.loglik_, abs=1e-8)
    # a polars Categorical has no order of its own: sorted, with the warning
    with pytest.warns(UserWarning, match="are sorted"):
        c = OrdinalGLMM(group_columns="id").fit(X, enum.cast(pl.Categorical))
    assert list(c.class_order_) == sorted(ORDER)


def test_text_labels_are_sorted_with_one_warning(three):
    m, X, y, codes = three
    labels = np.array(ORDER)[codes]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = OrdinalGLMM(group_columns="id").fit(X, labels)
    sorted_warnings = [w for w in caught if "are sorted" in str(w.message)]
    assert len(sorted_warnings) == 1
    message = str(sorted_warnings[0].message)
    assert "['high', 'low', 'medium']" in message
    assert "pd.Categorical(y, categories=[...], ordered=True)" in message
    assert sorted_warnings[0].filename == __file__  # points at the caller's line
    assert list(s.class_order_) == sorted(ORDER)
    assert s.loglik_ < m.loglik_ - 10.0  # the alphabetical order is another model


def test_no_warning_for_numbers_booleans_and_two_text_classes(three):
    _, X, _, codes = three
    _quiet_fit(X, codes + 1)
    _quiet_fit(X, (codes + 1).astype(float))
    _quiet_fit(X, codes > 0)
    two_text = np.where(codes > 0, "yes", "no")
    assert list(_quiet_fit(X, two_text).class_order_) == ["no", "yes"]
    # integer labels: the sorted order is the model's, nothing changes
    m = _quiet_fit(X, codes + 1)
    np.testing.assert_array_equal(m.classes_, m.class_order_)


def test_labels_that_cannot_be_sorted_get_a_clear_error(three):
    _, X, _, codes = three
    mixed = np.array([1, "a", 2.5], dtype=object)[codes]
    with pytest.raises(ValueError, match="mix types"):
        OrdinalGLMM(group_columns="id").fit(X, mixed)


def test_cross_val_predict_with_codes_in_the_model_order(three):
    # the documented recipe: scikit-learn label-encodes y (sorted) before fitting the
    # folds, so give it integer codes in the model's order
    m, X, y, _ = three
    codes = pd.Categorical(np.asarray(y), categories=ORDER).codes
    cv = GroupKFold(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fits on a part of the groups
        proba = cross_val_predict(
            OrdinalGLMM(group_columns="id"), X, codes, cv=cv, groups=X["id"], method="predict_proba"
        )
        want = np.empty_like(proba)
        for train, test in cv.split(X, codes, X["id"]):
            f = OrdinalGLMM(group_columns="id").fit(X.iloc[train], y.iloc[train])
            assert list(f.class_order_) == ORDER
            p = f.predict_proba(X.iloc[test])
            want[test] = p[:, [list(f.classes_).index(c) for c in ORDER]]
    np.testing.assert_allclose(proba, want, atol=1e-8)


# -- the formula front end ------------------------------------------------------------
def test_clmm_keeps_the_order_and_sorts_the_columns(three):
    from sklearn_glmm.formula import clmm

    m, X, y, codes = three
    data = X.assign(y=pd.Categorical.from_codes(codes, categories=ORDER))
    f = clmm("y ~ x + wave + (1 | id)", data)
    assert list(f.class_order_) == ORDER and list(f.classes_) == sorted(ORDER)
    assert f.loglik_ == pytest.approx(m.loglik_, abs=1e-6)
    new = data.iloc[:6].copy()
    new.loc[new.index[2], "x"] = np.nan
    p = f.predict_proba(new)
    assert np.all(np.isnan(p[2]))
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(p[keep], m.predict_proba(X.iloc[keep]), atol=1e-6)
    dec = f.decision_function(new)
    assert dec.shape == (6, 3) and np.all(np.isnan(dec[2]))
    np.testing.assert_allclose(np.exp(dec[keep]), p[keep], atol=1e-12)
    eta = f.linear_predictor(new)
    assert np.isnan(eta[2])
    np.testing.assert_allclose(eta[keep], m.linear_predictor(X.iloc[keep]), atol=1e-5)
