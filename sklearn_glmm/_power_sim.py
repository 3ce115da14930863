"""One simulated study of a power analysis: draw data from a specification, refit, test.

Every study gets its own seed (a child of the run's ``SeedSequence`` keyed by the
design cell and the study's number), so results do not depend on ``n_jobs`` or on
the order in which studies run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._design import INTERCEPT


@dataclass
class Outcome:
    """What one simulated study gave."""

    p_value: float = np.nan
    estimate: float = np.nan
    std_error: float = np.nan
    converged: bool = True
    singular: bool = False
    error: str | None = None  # why no test was possible (failed refit, aliased column)
    n_obs: int = 0


def simulate_data(spec, X: pd.DataFrame, groups, rng: np.random.Generator):
    """Outcomes for the rows ``X`` (with ``groups``) drawn from ``spec``."""
    n = len(X)
    eta = np.full(n, spec.fixed_effects.get(INTERCEPT, 0.0))
    for name in spec.features:
        eta = eta + spec.fixed_effects[name] * X[name].to_numpy(dtype=float)
    term = spec.term
    if term is not None:
        levels, codes = np.unique(np.asarray(groups), return_inverse=True)
        S = spec.covariance
        # eigen-factor: works for a singular (e.g. zero-variance) covariance too
        vals, vecs = np.linalg.eigh(S)
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))
        B = rng.standard_normal((len(levels), len(term.names))) @ root.T
        Z = np.column_stack(
            ([np.ones(n)] if term.intercept else [])
            + [X[s].to_numpy(dtype=float) for s in term.slopes]
        )
        eta = eta + np.einsum("nq,nq->n", Z, B[codes])
    if spec.offset is not None:
        eta = eta + X[spec.offset].to_numpy(dtype=float)
    fam, extra = spec.family, spec.extra
    mu = fam.mean(eta, extra)
    trials = np.full(n, float(spec.trials))
    return fam.sample(mu, trials, extra, rng)


def _fit(spec, X, y, groups, offset):
    est = spec.refit_estimator()
    kw = {} if offset is None else {"offset": offset}
    if spec.trials > 1:
        kw["trials"] = np.full(len(y), spec.trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.term is None:
            return est.fit(X, y, **kw)
        return est.fit(X, y, groups=groups, **kw)


def _wald(est, tests):
    """(estimate, standard error, p-value) of the Wald test of ``tests`` (a list).

    Read from the fit's arrays, not its tables: the numbers of ``fixed_effects_`` and
    ``vcov_fixed`` without making a data frame per simulated study.
    """
    a = est.fit_result_.arrays
    rows = [a.terms.index(t) for t in tests]
    b = a.estimate[rows]
    if len(tests) == 1:
        se = float(a.std_error[rows[0]])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = b[0] / se if se > 0 else np.nan
        return float(b[0]), se, float(2 * stats.norm.sf(abs(z)))
    if not np.all(np.isfinite(b)):
        return np.nan, np.nan, np.nan
    at = [a.vcov_terms.index(t) for t in tests]
    V = a.vcov[np.ix_(at, at)]
    try:
        w = float(b @ np.linalg.solve(V, b))
    except np.linalg.LinAlgError:
        return np.nan, np.nan, np.nan
    return np.nan, np.nan, float(stats.chi2.sf(w, len(tests))) if np.isfinite(w) else np.nan


def run_study(spec, tests, method, design, n_groups, n_per_group, seed) -> Outcome:
    """Simulate one data set, refit, and test the coefficients ``tests`` (a list)."""
    rng = np.random.default_rng(seed)
    X, groups = design(n_groups, n_per_group, rng)
    needed = spec.features + ([spec.offset] if spec.offset is not None else [])
    missing = [c for c in needed if c not in X.columns]
    if missing:
        raise ValueError(
            f"the design's data have no column(s) {missing}, which the specification names; "
            f"it gave {list(X.columns)}."
        )
    Xf = X[spec.features]
    off = None if spec.offset is None else X[spec.offset].to_numpy(dtype=float)
    y = simulate_data(spec, X, groups, rng)
    out = Outcome(n_obs=len(y))
    try:
        full = _fit(spec, Xf, y, groups, off)
        out.estimate, out.std_error, out.p_value = _wald(full, tests)
        out.converged = bool(full.converged_)
        out.singular = bool(getattr(full, "is_singular_", False))
        if method == "lrt":
            null = _fit(spec, Xf.drop(columns=tests), y, groups, off)
            out.converged = out.converged and bool(null.converged_)
            lr = max(2.0 * (full.loglik_ - null.loglik_), 0.0)
            estimable = np.all(np.isfinite(full.fixed_effects_.loc[tests, "estimate"]))
            out.p_value = float(stats.chi2.sf(lr, len(tests))) if estimable else np.nan
    except Exception as exc:  # noqa: BLE001 - every failed refit is counted and named
        out.error = f"{type(exc).__name__}: {exc}"
        return out
    if not np.isfinite(out.p_value):
        what = tests[0] if len(tests) == 1 else tests
        out.error = (
            f"no p-value for {what!r} (estimate {out.estimate:.3g}, standard error "
            f"{out.std_error:.3g}): a column was aliased or the fit had no standard error"
        )
    return out


def run_chunk(spec, test, method, design, tasks):
    """Studies ``tasks`` = [(cell, n_groups, n_per_group, seed), ...], single-threaded BLAS."""
    from ._engine.optimize import single_threaded_blas

    with single_threaded_blas():
        return [
            (cell, run_study(spec, test, method, design, g, k, seed)) for cell, g, k, seed in tasks
        ]
