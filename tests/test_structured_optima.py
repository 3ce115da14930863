"""Structured covariances (ar1, cs) beside other factors: fits that reach the optimum of
their own objective, or say why their estimate cannot be trusted.

Small simulated data sets on which a fit used to stop converged at a local optimum (each
checked against restarts of its own objective from many starts: every SD jointly off
zero, correlations of both signs, the other factors' SDs at 0 and 0.5).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm.exceptions import SeparationWarning
from sklearn_glmm.formula import glmmTMB


def _frame(x, y, ids, sites, nt, n=None):
    d = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "t": np.tile(np.arange(1, nt + 1), len(x) // nt),
            "id": [str(i) for i in ids],
            "site": [str(s) for s in sites],
        }
    )
    if n is not None:
        d["n"] = n
    return d


def _fit(formula, d, family):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = glmmTMB(formula, d, family=family)
    return m, w


def _estimates(m):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Wald intervals of SDs at zero)
        return m.confint()["estimate"]


# Poisson counts of 8 people x 4 times in 4 sites
AR1_SITE = _frame(
    x=[0.0571, 0.7953, -1.0468, 0.4605, 1.4224, -0.7073, 0.6659, 0.4814, -0.0647, -1.2515,
       0.2831, -0.2703, 0.602, 0.7789, 1.5345, -0.8366, 0.865, 0.7008, 0.0754, 0.6118, 0.1317,
       0.6713, 0.392, -0.5626, 0.1068, 0.6644, -0.8515, -0.3983, 1.3147, 0.3248, -0.6186,
       -0.5611],
    y=[4, 4, 4, 2, 2, 0, 1, 3, 1, 1, 0, 1, 3, 2, 4, 1, 2, 1, 3, 3, 2, 3, 4, 2, 1, 2, 0, 2, 3,
       0, 5, 1],
    ids=np.repeat(np.arange(8), 4),
    sites=np.repeat(np.arange(8) % 4, 4),
    nt=4,
)  # fmt: skip


def test_ar1_reaches_the_optimum_at_a_correlation_near_minus_one():
    # the fit stopped at rho = +0.9999 (its SD 0.074), 0.035 in -2 log L above the
    # optimum at rho = -0.9999 (SD 0.11), converged: a basin next to -1 as narrow as the
    # one next to +1, which only a start near it reaches (restart_correlations -0.95)
    m, _ = _fit("y ~ x + ar1(0 + factor(t)|id) + (1|site)", AR1_SITE, "poisson")
    rho = _estimates(m)["rho_ar1|id"]
    assert -2 * m.loglik_ == pytest.approx(106.6843, abs=2e-3)
    assert rho < -0.99
    assert m.converged_


# binomial counts (1-6 trials) of 8 people x 6 times in 3 sites
CS_TRIALS_SITE = _frame(
    x=[-1.4584, 1.047, -0.0215, 0.3935, 1.7461, 0.6548, -0.0176, -1.1651, 0.7928, 0.4648,
       1.0444, -0.1573, -0.4068, -2.1891, 0.5451, -1.6285, -0.5519, 0.4634, 0.0202, -0.1522,
       0.4064, -1.8935, -0.0082, 1.244, 1.1388, -1.6114, 0.9176, 0.3899, -1.0824, -1.4712,
       -0.2169, 1.372, 0.4339, -1.0445, 0.0441, 1.022, -0.1569, -0.5435, 0.4144, -2.2251,
       0.3885, -1.48, -0.156, 0.3055, -0.2145, -0.8434, -0.4653, 0.7768],
    y=[1, 0, 0, 0, 1, 1, 1, 2, 1, 2, 2, 2, 1, 2, 0, 1, 4, 2, 2, 5, 2, 1, 5, 2, 1, 1, 5, 1, 2,
       0, 3, 2, 3, 3, 4, 4, 2, 2, 5, 1, 1, 3, 2, 1, 5, 3, 2, 0],
    n=[2, 1, 2, 3, 3, 6, 5, 4, 2, 3, 2, 3, 1, 2, 1, 4, 5, 2, 3, 6, 3, 3, 6, 4, 1, 1, 6, 3, 4,
       1, 5, 2, 3, 4, 4, 4, 4, 4, 5, 2, 2, 6, 6, 5, 6, 4, 2, 3],
    ids=np.repeat(np.arange(8), 6),
    sites=np.repeat(np.arange(8) % 3, 6),
    nt=6,
)  # fmt: skip


def test_cs_small_sd_restart_lifts_the_other_factors_variances():
    # the fit stopped with the site SD at 0 and rho 0.89, 0.21 in -2 log L above the
    # optimum at rho = 0.9999 with a site SD of 0.67, converged: the site's variance
    # lowers the objective only beside a different pattern of the structure's SDs, which
    # a start with them all small (and the site's SD off zero) reaches
    m, _ = _fit("cbind(y, n - y) ~ x + cs(0 + factor(t)|id) + (1|site)", CS_TRIALS_SITE, "binomial")
    assert -2 * m.loglik_ == pytest.approx(118.9474, abs=2e-3)
    assert _estimates(m)["sd_(Intercept)|site"] > 0.5
    assert m.converged_


# one binary outcome per person and time: 8 people x 3 times in 4 sites
CS_BINARY = _frame(
    x=[0.4146, 0.1521, 0.5786, -1.6596, 0.5913, -0.6735, 0.7858, -0.0212, -0.9982, -0.0721,
       -1.0071, 1.0127, -0.0286, 0.8531, -1.1151, 1.6194, -0.3011, 1.3653, 0.8541, -1.1009,
       0.3232, -0.5425, 0.4094, 1.4325],
    y=[1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1],
    ids=np.repeat(np.arange(8), 3),
    sites=np.repeat(np.arange(8) % 4, 3),
    nt=3,
)  # fmt: skip


def test_binary_structure_on_separated_cells_is_warned_of():
    # each (person, time) cell has a random effect of its own and one binary outcome: the
    # time SDs run off (85.8 for the first), and the Laplace objective is lower still
    # (by 1.2) at SDs in the thousands, where it is not the likelihood; the fit said only
    # that the site's SD is zero
    m, w = _fit("y ~ x + cs(0 + factor(t)|id) + (1|site)", CS_BINARY, "binomial")
    sep = [str(x.message) for x in w if issubclass(x.category, SeparationWarning)]
    assert len(sep) == 1
    assert "'id'" in sep[0] and "24 of its 24 cells" in sep[0]


# binomial counts (1-6 trials) of 7 people x 6 times in 5 sites
CS_TRIALS_SITE_2 = _frame(
    x=[0.1313, -1.2349, -0.1754, 1.0082, 0.9295, -0.6527, 0.6071, -0.589, -1.0297, 0.7479,
       1.4992, 0.0696, -1.0738, 1.7555, 0.2098, -0.0185, 0.9514, -0.0894, -1.666, -0.4705,
       0.0443, 0.9933, -0.2608, -0.3025, -0.7147, -0.8405, 0.1114, 0.4236, -0.7924, 0.6614,
       -0.7919, 0.997, -1.4871, -2.0545, -0.729, 1.4949, 0.1762, 1.5948, -0.3271, -0.1946,
       -0.2816, 0.77],
    y=[1, 0, 5, 1, 6, 0, 1, 2, 1, 1, 6, 3, 2, 3, 2, 3, 2, 2, 1, 2, 2, 2, 2, 1, 1, 2, 0, 2, 0,
       2, 5, 3, 1, 2, 3, 2, 1, 3, 4, 1, 1, 3],
    n=[1, 3, 5, 1, 6, 2, 5, 2, 2, 1, 6, 4, 3, 6, 4, 5, 2, 5, 2, 4, 6, 5, 4, 1, 6, 4, 1, 4, 1,
       6, 5, 3, 1, 5, 5, 2, 3, 5, 6, 1, 2, 5],
    ids=np.repeat(np.arange(7), 6),
    sites=np.repeat(np.arange(7) % 5, 6),
    nt=6,
)  # fmt: skip


def test_cs_restart_with_every_sd_at_its_start():
    # the fit stopped converged at rho -0.2 with two SDs near 0, 1.21 in -2 log L above
    # the optimum at rho 0.98 with another pattern of SDs; the restarts from the fit's own
    # SDs (and from all of them small) stayed, a start with every SD at its start value
    # and rho 0.95 reaches it
    m, _ = _fit(
        "cbind(y, n - y) ~ x + cs(0 + factor(t)|id) + (1|site)", CS_TRIALS_SITE_2, "binomial"
    )
    assert -2 * m.loglik_ == pytest.approx(102.4068, abs=2e-3)
    assert _estimates(m)["rho_cs|id"] > 0.9
    assert m.converged_
