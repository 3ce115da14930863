"""What a fit with adaptive quadrature (``n_agq > 1``) reports downstream is read from
the fit, not from the estimator's current ``n_agq`` parameter, and likelihoods of
different approximations are not compared silently."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM
from sklearn_glmm.inference import anova
from sklearn_glmm.model_selection import compare_structures
from sklearn_glmm.performance import r2


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(40), 4)  # few rows per group: Laplace and AGQ differ
    x = rng.normal(size=len(g))
    eta = -0.4 + 0.8 * x + rng.normal(0, 1.5, 40)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"x": x}), y, g


def _fit(data, **params):
    X, y, g = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BinomialGLMM(random_effects="1", **params).fit(X, y, groups=g)


def test_reports_name_the_fitted_approximation_after_set_params(binary):
    laplace, agq = _fit(binary), _fit(binary, n_agq=9)
    assert abs(laplace.loglik_ - agq.loglik_) > 0.05
    laplace.set_params(n_agq=9)
    agq.set_params(n_agq=1)
    assert "Laplace Approximation" in str(laplace.summary())
    assert "nAGQ = 9" in str(agq.summary())
    assert "the Laplace approximation" in laplace.report()
    assert "quadrature (9 nodes)" in agq.report()


def test_refits_use_the_fitted_approximation(binary):
    agq = _fit(binary, n_agq=9)
    a = agq.confint(method="bootstrap", n_boot=6, random_state=2)
    r2_before = r2(agq)
    agq.set_params(n_agq=1)
    b = agq.confint(method="bootstrap", n_boot=6, random_state=2)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_series_equal(r2(agq), r2_before)


def test_anova_warns_by_the_fitted_approximations(binary):
    X, y, g = binary
    full = _fit(binary, n_agq=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        null = BinomialGLMM(random_effects="1").fit(X[[]].assign(c=1.0), y, groups=g)
    null.set_params(n_agq=9)  # fitted with Laplace: the comparison mixes them
    with pytest.warns(UserWarning, match=r"different likelihood approximations \(n_agq differs"):
        anova(null, full)
    # a model without random effects has an exact likelihood: comparable with any
    glm = BinomialGLMM().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        table = anova(glm, full)
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (full.loglik_ - glm.loglik_))


def test_compare_structures_refuses_mixed_approximations(binary):
    X, y, g = binary
    with pytest.raises(ValueError, match=r"different n_agq \(n_agq=1: \[.*\]; n_agq=5"):
        compare_structures(BinomialGLMM(random_effects="1"), {"n_agq": [1, 5]}, X, y, groups=g)
    # one approximation for every candidate
    cmp = compare_structures(BinomialGLMM(n_agq=5), ["1", "1 + x"], X, y, groups=g)
    assert set(cmp.table.index) == {"1", "1 + x"}


def test_quadrature_messages_name_the_reason(binary):
    X, y, g = binary
    # a model without random effects has an exact likelihood: n_agq does not apply
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = BinomialGLMM(n_agq=5).fit(X, y)
    assert glm.loglik_ == pytest.approx(BinomialGLMM().fit(X, y).loglik_, abs=1e-9)
    waves = X.assign(wave=np.tile(np.arange(4), 40))
    with pytest.raises(ValueError, match="not available with the covariance structure 'ar1'"):
        BinomialGLMM(random_effects="ar1(wave)", n_agq=5).fit(waves, y, groups=g)
    from sklearn_glmm.formula import glmer

    with pytest.raises(ValueError, match="nAGQ=0 .* is not available"):
        glmer("y ~ x + (1 | g)", X.assign(y=y, g=g), family="binomial", nAGQ=0)


def test_ordinal_reports_name_the_fitted_link_and_thresholds():
    from sklearn_glmm import OrdinalGLMM

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 6)
    x = rng.normal(size=180)
    y = np.digitize(0.8 * x + rng.normal(0, 1, 30)[g] + rng.logistic(size=180), [-1, 0.5, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = OrdinalGLMM(link="probit", n_agq=5).fit(pd.DataFrame({"x": x}), y, groups=g)
    m.set_params(link="logit", threshold="symmetric", n_agq=1)
    text = str(m.summary())
    assert "probit" in text and "symmetric" not in text and "5 quadrature points" in text
    assert "probit link, flexible thresholds" in m.report()
