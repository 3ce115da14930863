"""The outcome of a fit as one frozen object: ``fit_result_``."""

import dataclasses
import pickle
import warnings

import numpy as np
import pytest

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm._fit_result import FitResult
from sklearn_glmm.exceptions import TrainingDataError

_RNG = np.random.default_rng(3)
_N, _G = 240, 30
GROUPS = np.repeat(np.arange(_G), _N // _G)
X = np.column_stack([_RNG.normal(size=_N), _RNG.normal(size=_N) * 10 + 50])
ETA = 0.3 + 0.4 * X[:, 0] - 0.02 * (X[:, 1] - 50) + _RNG.normal(0, 0.5, _G)[GROUPS]
Y = _RNG.poisson(np.exp(ETA))


def _fit(est=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (est or PoissonGLMM(**kwargs)).fit(X, Y, groups=GROUPS)


def test_the_result_is_one_frozen_object_that_the_attributes_come_from():
    m = _fit()
    res = m.fit_result_
    assert isinstance(res, FitResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.params = res.params * 0
    np.testing.assert_array_equal(np.r_[res.beta, res.theta, res.extra], res.params)
    beta = res.beta_jacobian() @ res.beta  # the user's units
    np.testing.assert_allclose(beta, np.r_[m.intercept_, m.coef_], rtol=1e-12)
    assert res.record is m.fit_record_
    assert np.isclose(-0.5 * res.record.objective, m.loglik_)
    assert res.vcov.shape == (len(res.params),) * 2
    np.testing.assert_allclose(
        np.sqrt(np.diag(res.vcov_fixed.to_numpy())), m.fixed_effects_["std_error"], rtol=1e-12
    )
    assert [f.name for f in res.factors] == list(m.ranef_)
    assert "FitResult(family='poisson'" in repr(res)


def test_the_estimator_keeps_no_private_copy_of_the_fit():
    m = _fit()
    former = {"_params", "_family_obj", "_objective", "_train", "_scaling", "_z_maps"}
    assert not former & set(vars(m)) and "_pending_result" not in vars(m)
    # the fit is read from its result, which cannot be written
    assert not any(hasattr(m, name) for name in former)
    with pytest.raises(AttributeError):
        m.fit_result_.params = np.zeros(3)
    with pytest.raises(AttributeError):
        getattr(PoissonGLMM(), "fit_result_")  # noqa: B009


def test_population_means_are_the_marginal_predictions_of_new_groups():
    m = _fit()
    res = m.fit_result_
    for population in ("marginal", "zero"):
        np.testing.assert_allclose(
            res.population_means(X, population=population),
            m.predict_mean(X, population=population),
            rtol=1e-10,
        )
    eta, var = res.linear_predictor(X, population="zero")
    np.testing.assert_allclose(eta, X @ m.coef_ + m.intercept_, rtol=1e-12)
    assert np.all(var == 0)


def test_family_values_with_a_design_are_per_row():
    m = _fit(NegBinGLMM(dispersion="1 + x0"))
    res = m.fit_result_
    train = res.family_values()
    new = res.family_values(X)
    assert len(new[0]) == len(Y)
    np.testing.assert_allclose(new[0], train[0])
    assert res.family_values(X, column=True)[0].shape == (len(Y), 1)
    assert _fit().fit_result_.family_values() is not None


def test_a_pickle_without_keep_data_carries_the_result_without_its_data():
    m = _fit()
    u = pickle.loads(pickle.dumps(m))
    assert m.fit_result_.has_data and not u.fit_result_.has_data
    assert all(f.codes is None for f in u.fit_result_.factors)
    with pytest.raises(TrainingDataError, match="keep_data=True"):
        getattr(u.fit_result_, "objective")  # noqa: B009
    with pytest.raises(TrainingDataError):
        getattr(u.fit_result_, "train")  # noqa: B009
    np.testing.assert_allclose(u.predict(X), m.predict(X))
    assert str(u.summary()) == str(m.summary())
    kept = pickle.loads(pickle.dumps(_fit(keep_data=True)))
    assert kept.fit_result_.has_data
    kept.residuals()


def test_a_refit_replaces_the_result_and_its_tables():
    m = _fit()
    first = m.fit_result_
    table = m.fixed_effects_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(X[:, :1], Y, groups=GROUPS)
    assert m.fit_result_ is not first
    assert list(m.fixed_effects_.index) != list(table.index)


def test_pickle_of_the_format_before_the_result_is_refused_at_load():
    """A fitted model pickled before ``fit_result_`` kept its fit in private attributes
    (``_params``, ``_family_obj``, ...): loading one raises, saying to refit, instead of
    a model whose every method fails."""
    old_state = {"random_effects": "1", "_params": np.zeros(3), "_family_obj": None}
    est = PoissonGLMM.__new__(PoissonGLMM)
    with pytest.raises(ValueError, match="earlier version of sklearn_glmm"):
        est.__setstate__(old_state)
    # an unfitted estimator's state, or a fitted one of this version, loads
    PoissonGLMM.__new__(PoissonGLMM).__setstate__({"random_effects": "1"})
