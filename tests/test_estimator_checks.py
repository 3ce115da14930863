"""scikit-learn's estimator contract (``parametrize_with_checks``) for the three estimators.

The checks call ``fit(X, y)`` without ``groups``: each estimator then fits a GLM
without random effects (warning ``NoRandomEffectsWarning``), which is what the
contract exercises. Every check expected to fail is listed below with the
reason; the properties behind the ill-posed ones are tested on well-posed data
further down.
"""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM

_ILL_POSED_WEIGHTS = (
    "the check fits 30 features on 15 rows: the unpenalised maximum-likelihood estimate does "
    "not exist uniquely (the design is rank deficient and, for 0/1 outcomes, separable), and "
    "which columns are aliased depends on the rows that carry weight, so weighted and repeated "
    "fits legitimately differ; test_sample_weight_equals_repeated_rows checks the property on "
    "well-posed data"
)
_COUNT_DISTRIBUTION = (
    "scikit-learn's contract says a regressor has no predict_proba; the count models keep "
    "theirs, the predictive distribution over the counts classes_ = 0..max_count_ (the last "
    "column P(Y >= max_count_)), a deliberate extension: fixed at fit, it passes the "
    "batch-invariance check and serves cross_val_predict(method='predict_proba') and log_loss"
)
_SPARSE_PROBA = (
    "the check calls predict_proba on the sparse data and reads its shape through "
    "classifier_tags, which a regressor does not have (AttributeError); fit, predict and "
    "predict_proba on sparse X are tested in test_estimator_inputs.py"
)
_POISSON_N_ITER = (
    "without groups the Poisson model starts at its GLM optimum (found by IRLS), so the outer "
    "quasi-Newton optimiser can stop after 0 iterations, and n_iter_ says so"
)


def expected_failed_checks(estimator):
    """Checks each estimator is expected to fail, with the reason (see module docstring)."""
    failed = {
        "check_sample_weight_equivalence_on_dense_data": _ILL_POSED_WEIGHTS,
        "check_sample_weight_equivalence_on_sparse_data": _ILL_POSED_WEIGHTS,
    }
    if isinstance(estimator, (PoissonGLMM, NegBinGLMM)):
        failed["check_estimator_sparse_array"] = _SPARSE_PROBA
        failed["check_estimator_sparse_matrix"] = _SPARSE_PROBA
        failed["check_regressors_no_decision_function"] = _COUNT_DISTRIBUTION
    if isinstance(estimator, PoissonGLMM):
        failed["check_non_transformer_estimators_n_iter"] = _POISSON_N_ITER
    return failed


@pytest.mark.filterwarnings("ignore::sklearn_glmm.exceptions.NoRandomEffectsWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@parametrize_with_checks(
    [BinomialGLMM(), PoissonGLMM(), NegBinGLMM()],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _grouped_data(family, seed=0):
    rng = np.random.default_rng(seed)
    n_groups, per = 30, 6
    g = np.repeat(np.arange(n_groups), per)
    X = rng.normal(size=(n_groups * per, 2))
    eta = 0.3 + X @ np.array([0.5, -0.4]) + rng.normal(scale=0.8, size=n_groups)[g]
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(eta))
    return X, y, g, rng.integers(0, 4, size=len(y))


@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM])
def test_sample_weight_equals_repeated_rows(Est):
    # the property check_sample_weight_equivalence_on_dense_data tests, on well-posed data
    X, y, g, w = _grouped_data("binomial" if Est is BinomialGLMM else "poisson")
    weighted = Est().fit(X, y, groups=g, sample_weight=w)
    repeated = Est().fit(X.repeat(w, axis=0), y.repeat(w), groups=g.repeat(w))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(weighted.loglik_, repeated.loglik_, rtol=1e-8)
    np.testing.assert_allclose(
        weighted.predict(X, groups=g), repeated.predict(X, groups=g), rtol=1e-4, atol=1e-6
    )


def test_rows_of_weight_zero_are_not_observations():
    # as R's glm (lme4 and glmmTMB count them): nobs_, and so BIC, are those of the
    # fit without the rows, as are the likelihood and the estimates
    X, y, g, w = _grouped_data("poisson")
    assert np.any(w == 0)
    weighted = PoissonGLMM().fit(X, y, groups=g, sample_weight=w)
    keep = w > 0
    subset = PoissonGLMM().fit(X[keep], y[keep], groups=g[keep], sample_weight=w[keep])
    assert weighted.nobs_ == subset.nobs_ == np.count_nonzero(w)
    assert weighted.loglik_ == pytest.approx(subset.loglik_, rel=1e-10)
    assert weighted.bic_ == pytest.approx(subset.bic_, rel=1e-10)


@pytest.mark.parametrize("Est", [BinomialGLMM, PoissonGLMM])
@pytest.mark.parametrize("kind", ["pearson", "deviance"])
def test_weighted_residuals_are_those_of_the_repeated_rows(Est, kind):
    # lme4 and glmmTMB: a row of prior weight w has sqrt(w) times the residual of one
    # of its copies, so that the squares sum as over the repeated rows (the Pearson
    # statistic, the deviance); the response residuals carry no weight
    X, y, g, w = _grouped_data("binomial" if Est is BinomialGLMM else "poisson")
    weighted = Est().fit(X, y, groups=g, sample_weight=w)
    repeated = Est().fit(X.repeat(w, axis=0), y.repeat(w), groups=g.repeat(w))
    r_w, r_rep = weighted.residuals(kind), repeated.residuals(kind)
    np.testing.assert_allclose(r_w, np.sqrt(w) * _first_copies(r_rep, w), rtol=1e-4, atol=1e-6)
    assert np.sum(r_w**2) == pytest.approx(np.sum(r_rep**2), rel=1e-4)
    resp = repeated.residuals("response")
    np.testing.assert_allclose(
        weighted.residuals("response")[w > 0], _first_copies(resp, w)[w > 0], rtol=1e-4, atol=1e-6
    )


def _first_copies(values, w):
    """The value of each row's first copy in ``X.repeat(w)`` (0 where ``w`` is 0)."""
    start = np.concatenate([[0], np.cumsum(w)[:-1]])
    return np.where(w > 0, values[np.minimum(start, len(values) - 1)], 0.0)


@pytest.mark.parametrize("Est", [PoissonGLMM, NegBinGLMM])
def test_count_predictions_are_row_wise(Est):
    X, y, g, _ = _grouped_data("poisson", seed=1)
    m = Est().fit(X, y, groups=g)
    idx = np.arange(0, len(y), 3)
    np.testing.assert_allclose(m.predict(X[idx], g[idx]), m.predict(X, g)[idx])
    full = m.predict_proba(X, g, max_count=40)
    np.testing.assert_allclose(m.predict_proba(X[idx], g[idx], max_count=40), full[idx])
