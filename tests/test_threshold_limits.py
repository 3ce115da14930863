"""A zero part that separates zeros at an end of its predictor
(``_engine/threshold_limits.py``): the fit says it is a local maximum below the limit,
whose value is the count model's fitted to the other rows."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import NegBinGLMM, PoissonGLMM
from sklearn_glmm.exceptions import SeparationWarning


def _zero_inflated_counts(seed, negbin=False, groups=(15, 30, 60), zero_x=0.0):
    """Counts with zeros whose probability rises with ``z`` (and moves with ``x`` by
    ``zero_x``): ``groups`` choices of groups of 4-12 rows, a random intercept and slope
    in ``x`` (SDs drawn), Poisson or NB2 counts."""
    rng = np.random.default_rng(seed)
    n_groups, per = int(rng.choice(groups)), int(rng.choice([4, 8, 12]))
    g = np.repeat(np.arange(n_groups), per)
    n = n_groups * per
    x, z = rng.normal(size=n), rng.normal(size=n)
    sd0, sd1 = rng.choice([0.3, 0.7, 1.2]), rng.choice([0.0, 0.2, 0.5])
    b0, b1 = rng.normal(0, sd0, n_groups)[g], rng.normal(0, sd1, n_groups)[g]
    mu = np.exp(rng.choice([-0.5, 0.3, 1.0]) + 0.5 * x + b0 + b1 * x)
    logit = rng.choice([0.0, 1.0, 2.0]) - 0.8 * z + zero_x * x
    zero = rng.random(n) < 1.0 / (1.0 + np.exp(logit))
    if negbin:
        theta = rng.choice([0.7, 2.0, 8.0])
        counts = rng.negative_binomial(theta, theta / (theta + mu))
    else:
        counts = rng.poisson(mu)
    return pd.DataFrame({"x": x, "z": z}), np.where(zero, 0, counts).astype(float), g


def _fit(est, X, y, g):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y, groups=g)
    return est, [w for w in caught if issubclass(w.category, SeparationWarning)]


def test_a_zero_part_that_separates_zeros_is_reported_below_its_limit():
    """A random intercept on 30 groups of 4 rows, 59 % zeros, the three rows of the
    largest ``z`` zeros: the fit ends at an interior maximum (-118.944; glmmTMB 1.1.5
    at another, -118.916),
    while the zero part's limit (probability 1 on those rows, 0 on the others) is at
    -118.731: the Poisson GLMM of the other rows, fitted here through the public API."""
    X, y, g = _zero_inflated_counts(1019)
    m, sep = _fit(PoissonGLMM(zero_inflation="~ z"), X, y, g)
    assert len(sep) == 1
    text = str(sep[0].message)
    assert "the 3 rows of the largest values of 'z' are all zeros" in text
    (n_rows, sign, value, k0, k), *_ = m.fit_record_.threshold_limits
    assert (n_rows, sign) == (3, 1)
    names = list(m.zero_inflation_effects_.index)
    assert (k0, k) == (len(m.fit_result_.params) - 2, len(m.fit_result_.params) - 1)
    assert names == ["(Intercept)", "z"]
    run = X["z"].to_numpy() > np.sort(X["z"].to_numpy())[-4]
    assert np.all(y[run] == 0) and y[~run][np.argmax(X["z"].to_numpy()[~run])] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rest = PoissonGLMM().fit(X[~run], y[~run], groups=g[~run])
    assert -2.0 * rest.loglik_ == pytest.approx(value, abs=1e-4)
    assert rest.loglik_ > m.loglik_ + 0.2
    assert f"{rest.loglik_ - m.loglik_:.3g} above loglik_" in text


def test_no_report_where_the_limit_is_below_the_fit():
    """Data whose largest ``z`` rows are zeros too, but where zero inflation on the other
    rows is worth more than those zeros' certainty: a run is checked, nothing is
    reported."""
    X, y, g = _zero_inflated_counts(1000)
    m, sep = _fit(PoissonGLMM(zero_inflation="~ z"), X, y, g)
    stages = [s[0] for s in m.fit_record_.stages]
    assert "count model outside the zeros past a threshold" in stages
    assert not sep and not m.fit_record_.threshold_limits


def test_a_fit_that_followed_the_ridge_to_the_bound_says_so_once():
    """A zero-inflated NB2 whose zero part ran along that ridge to its intercept's bound
    (-20): the warning that the log-likelihood is a lower bound there, with the limit's
    value (the count model of the other rows), not a second warning for the same limit."""
    X, y, g = _zero_inflated_counts(1034, negbin=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = NegBinGLMM(zero_inflation="~ z").fit(X, y, groups=g)
    texts = [
        str(w.message) for w in caught if "to the bound of ['zi~(Intercept)']" in str(w.message)
    ]
    assert len(texts) == 1
    assert not any(issubclass(w.category, SeparationWarning) for w in caught)
    # the warning gives the limit along the ridge, the NB2 GLMM of the other rows
    (n_rows, sign, value, _, _), *_ = m.fit_record_.threshold_limits
    z = X["z"].to_numpy()
    run = z >= np.sort(z)[-n_rows] if sign > 0 else z <= np.sort(z)[n_rows - 1]
    assert np.all(y[run] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rest = NegBinGLMM().fit(X[~run], y[~run], groups=g[~run])
    assert -2.0 * rest.loglik_ == pytest.approx(value, abs=1e-4)
    assert rest.loglik_ > m.loglik_ + 1e-3
    assert (
        f"the likelihood tends to {rest.loglik_:.6g}, {rest.loglik_ - m.loglik_:.3g} above"
        in texts[0]
    )


def test_a_zero_part_of_several_predictors_is_checked_predictor_by_predictor():
    """``zero_inflation="~ x + z"`` (NB2 counts, a random intercept and slope): along one
    predictor the limit is the same (the other predictors' terms stay finite, so every
    row before the threshold has no zero inflation); here the row of the largest ``z``
    is a zero, and the limit, the NB2 GLMM of the other rows fitted through the public
    API, is 0.32 above the fit."""
    X, y, g = _zero_inflated_counts(7022, negbin=True, groups=(12, 25, 50), zero_x=0.5)
    n, z = len(y), X["z"].to_numpy()
    m, sep = _fit(NegBinGLMM(random_effects="1 + x", zero_inflation="~ x + z"), X, y, g)
    assert len(sep) == 1
    assert "the row of the largest value of 'z' is a zero" in str(sep[0].message)
    # (the highest of the limits recorded: here also the 2 rows of the smallest x)
    n_rows, sign, value, k0, k = min(m.fit_record_.threshold_limits, key=lambda t: t[2])
    p = len(m.fit_result_.params)
    assert (n_rows, sign, k0, k) == (1, 1, p - 3, p - 1)
    run = np.arange(n) == np.argmax(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rest = NegBinGLMM(random_effects="1 + x").fit(X[~run], y[~run], groups=g[~run])
    assert -2.0 * rest.loglik_ == pytest.approx(value, abs=1e-4)
    assert rest.loglik_ > m.loglik_ + 0.3
