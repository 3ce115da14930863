"""The threshold tables of a fitted ordinal model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ._engine.families.thresholds import threshold_names


def _se(V) -> np.ndarray:
    var = np.diag(V)
    with np.errstate(invalid="ignore"):
        return np.where(var > 0, np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def threshold_tables(est) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(thresholds_, threshold_coefficients_)`` from the fit.

    The threshold parameters ``a`` are clmm's (its ``alpha`` for the threshold
    structure), at ``X = 0``: the optimiser's, of the internally centred design, moved
    by the centring's shift (``FitResult.reported``), with their covariance; the
    thresholds ``alpha = J a`` get theirs by the linear map, ``J V J'``.
    """
    res = est.fit_result_
    fam = res.family
    E = fam.J.shape[1]  # the threshold parameters (a scale block follows them)
    k = res.layout.n_beta + res.layout.n_theta
    # at X = 0 (the fit centres the design internally; the thresholds take the shift)
    x, V = res.reported()
    a = np.asarray(x[k : k + E], dtype=float)
    V = V[k : k + E, k : k + E]
    se_a = _se(V)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = a / se_a
    coefs = pd.DataFrame(
        {
            "estimate": a,
            "std_error": se_a,
            "z_value": z,
            "p_value": 2.0 * stats.norm.sf(np.abs(z)),
        },
        index=pd.Index(list(fam.extra_names[:E]), name="threshold"),
    )
    alpha = fam.J @ a
    se_alpha = _se(fam.J @ V @ fam.J.T)
    thresholds = pd.DataFrame(
        {"estimate": alpha, "std_error": se_alpha},
        index=pd.Index(threshold_names(est.class_order_), name="threshold"),
    )
    return thresholds, coefs
