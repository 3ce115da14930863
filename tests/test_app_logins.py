"""The app-logins tutorial (shared/tutorials/002): lme4's printed output, reproduced.

R: glmer(logins ~ day_centered + (1 | user_id), family = poisson, data = app_data)
   glmer(logins ~ day_centered + (day_centered | user_id), family = poisson,
         data = app_data, control = glmerControl(optimizer = "bobyqa"))
"""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_glmm import PoissonGLMM
from sklearn_glmm.datasets import load_app_logins


@pytest.fixture(scope="module")
def data():
    df = load_app_logins()
    return df[["day_centered"]], df["logins"], df["user_id"]


def test_random_intercept_model_matches_lme4_output(data):
    X, y, g = data
    m = PoissonGLMM().fit(X, y, groups=g)
    assert round(m.aic_, 1) == 5290.3
    assert round(m.bic_, 1) == 5306.2
    assert round(m.loglik_, 1) == -2642.1
    assert m.df_resid_ == 1497
    fe = m.fixed_effects_
    # estimates within 5% of their SE, SEs within 2% (the reference tolerances)
    assert abs(fe.loc["(Intercept)", "estimate"] - 0.737944) < 0.05 * 0.064045
    assert abs(fe.loc["day_centered", "estimate"] - -0.009100) < 0.05 * 0.001966
    assert fe.loc["(Intercept)", "std_error"] == pytest.approx(0.064045, rel=0.02)
    assert fe.loc["day_centered", "std_error"] == pytest.approx(0.001966, rel=0.02)
    sd = np.sqrt(m.random_effects_cov_["user_id"].iloc[0, 0])
    assert round(sd, 3) == 0.433
    # ranef(glmm_model)$user_id, first users
    np.testing.assert_allclose(
        m.ranef_["user_id"]["(Intercept)"].iloc[:3],
        [0.41962493, -1.02921534, 0.02970535],
        atol=2e-4,
    )
    # predict(glmm_model, newdata, re.form = NA, type = "response") at days 1, 15.5, 30
    pop = m.predict(np.array([[-14.5], [0.0], [14.5]]), population="zero")
    np.testing.assert_allclose(pop, [2.386654, 2.091631, 1.833078], rtol=1e-4)
    # user-specific predictions at day 15 for users 1, 10, 20, 30, 40
    users = m.predict(np.zeros((5, 1)), groups=np.array([1, 10, 20, 30, 40]))
    np.testing.assert_allclose(users, [3.182189, 3.529369, 1.728530, 1.971098, 2.837006], rtol=1e-4)
    # Scaled residuals quantiles of summary()
    r = m.summary().scaled_residuals
    np.testing.assert_allclose(r, [-2.1126, -0.6950, -0.1269, 0.5945, 4.5797], atol=1e-3)


def test_random_slope_model_aic(data):
    X, y, g = data
    m = PoissonGLMM("1 + day_centered").fit(X, y, groups=g)
    assert m.aic_ == pytest.approx(5292.065, abs=0.01)
    cov = m.random_effects_cov_["user_id"].to_numpy()
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(sd, [0.434503, 0.007148], rtol=0.02)
    assert cov[0, 1] / sd.prod() == pytest.approx(0.27, abs=0.02)
