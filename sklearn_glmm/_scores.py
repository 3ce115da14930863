"""What the estimators' outcomes and scores share: one trial per row, the rows of X, the
outcome as ``score`` reads it and the deviance explained against the null model's
means.
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    check_y_finite,
    numeric_outcome,
)


def _one_trial(n: int) -> np.ndarray:
    """One trial in each of ``n`` rows: a read-only view of one number (no memory per row)."""
    return np.broadcast_to(1.0, (n,))


def _n_rows(X) -> int:
    """The number of rows of ``X`` (an array, a frame or a sparse matrix)."""
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _score_outcome(y, n: int) -> np.ndarray:
    """``score``'s numeric outcome, checked as ``fit`` checks it: one value per row of
    ``X``, finite, a number."""
    return numeric_outcome(check_y_finite(y, n))


def _deviance_explained(est, X, y, mu, trials, sample_weight, offset=None) -> float:
    """D^2: 1 - deviance(mu) / deviance of the null model, the score of the count models
    and of a binomial model with trials. The null model is R's: an intercept alone (the
    weighted mean, per trial), and with an ``offset`` the intercept plus the offset
    (else the exposure alone would count as deviance explained)."""
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
    fam, extra = est.fit_result_.family, est._family_values(X)
    dev = np.sum(w * fam.unit_deviance(y, mu, trials, extra))
    null = _null_means(fam, extra, y, trials, w, offset)
    dev0 = np.sum(w * fam.unit_deviance(y, null, trials, extra))
    return 1.0 - dev / dev0 if dev0 > 0 else 0.0


def _null_means(fam, extra, y, trials, w, offset) -> np.ndarray:
    """The null model's means: the weighted mean (per trial); with a non-zero offset,
    ``mean(c + offset)`` at the intercept ``c`` of least deviance. Where the family's
    mean also reads its own parameters (zero inflation, a hurdle, truncation: per row,
    with predictors), the null is the weighted mean per unit of exposure,
    ``exp(offset)`` times ``sum(w y) / sum(w exp(offset))``, which no parameter of the
    model enters (a constant offset then changes nothing, as it changes no fit)."""
    ybar = np.sum(w * y) / np.sum(w * trials)
    off = None if offset is None else np.broadcast_to(np.asarray(offset, float), y.shape)
    top = 1.0 if fam.has_trials else np.inf
    if off is None or not np.any(off != 0.0) or not 0.0 < ybar < top:
        # without an offset; or every outcome on a bound (all zero, all successes), where
        # the null mean is on it whatever the offset
        return np.full_like(y, ybar)
    probe = np.resize([-1.0, 0.0, 1.0], y.shape)  # (the family's values may be per row)
    if not np.array_equal(fam.mean(probe, extra), fam.link.inverse(probe)):
        exposure = fam.link.inverse(off)
        return exposure * (np.sum(w * y) / np.sum(w * exposure))
    from scipy.optimize import minimize_scalar

    def deviance(c):
        return float(np.sum(w * fam.unit_deviance(y, fam.mean(c + off, extra), trials, extra)))

    c0 = float(fam.link.link(ybar)) - float(np.average(off, weights=w))
    res = minimize_scalar(deviance, bracket=(c0 - 1.0, c0 + 1.0), tol=1e-12)
    return fam.mean(res.x + off, extra)
