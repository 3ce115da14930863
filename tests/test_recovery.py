"""Tier 2: simulate with known parameters (sklearn_glmm.datasets) and recover them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm.datasets import make_longitudinal

CASES = {
    # name: (estimator, make_longitudinal arguments, fit columns)
    "binary_slopes": (
        BinomialGLMM("1 + time"),
        dict(family="binomial", n_groups=800, n_waves=8, re_sd=1.0, slope_sd=0.3, re_corr=0.3),
    ),
    "binomial_trials": (
        BinomialGLMM(),
        dict(family="binomial", n_groups=300, n_waves=5, re_sd=0.8, trials=10),
    ),
    "poisson_unbalanced": (
        PoissonGLMM(),
        dict(
            family="poisson",
            n_groups=600,
            n_waves=6,
            re_sd=0.5,
            sex=True,
            time_varying=True,
            unequal_spacing=True,
            missing_rate=0.2,
            dropout=0.2,
        ),
    ),
    "negbin_slopes": (
        NegBinGLMM("1 + time"),
        dict(family="negbin", n_groups=600, n_waves=6, re_sd=0.5, slope_sd=0.15, nb_theta=3.0),
    ),
    "zip": (
        PoissonGLMM(zero_inflation=True),
        dict(family="poisson", n_groups=500, n_waves=6, re_sd=0.5, zero_inflation=0.25),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recovers_true_parameters(name):
    est, kwargs = CASES[name]
    df, truth = make_longitudinal(**kwargs, random_state=2024)
    cols = [c for c in truth["fixed_effects"] if c != "(Intercept)"]
    fit_kw = {"trials": df["trials"]} if "trials" in df else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = est.fit(df[cols], df["y"], groups=df["id"], **fit_kw)
    assert m.converged_
    fe = m.fixed_effects_
    for term, value in truth["fixed_effects"].items():
        # within 3.5 standard errors (false alarm ~ 1 in 2000 per coefficient)
        assert abs(fe.loc[term, "estimate"] - value) < 3.5 * fe.loc[term, "std_error"], term
    cov = m.random_effects_cov_["id"].to_numpy()
    assert np.sqrt(cov[0, 0]) == pytest.approx(truth["re_sd"], rel=0.2)
    if kwargs.get("slope_sd"):
        assert np.sqrt(cov[1, 1]) == pytest.approx(truth["slope_sd"], rel=0.35)
    if kwargs.get("nb_theta"):
        assert m.theta_ == pytest.approx(truth["nb_theta"], rel=0.3)
    if kwargs.get("zero_inflation"):
        assert abs(m.zero_inflation_ - truth["zero_inflation"]) < 0.05
