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
    rho = m.confint().loc["rho_ar1|id", "estimate"]
    assert -2 * m.loglik_ == pytest.approx(106.6843, abs=2e-3)
    assert rho < -0.99
    assert m.converged_
