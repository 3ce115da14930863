"""One simulated study of a power analysis: draw data from a specification, refit, test.

Every study gets its own seed (a child of the run's ``SeedSequence`` keyed by the
design cell and the study's number), so results do not depend on ``n_jobs`` or on
the order in which studies run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import stats

from ._design import INTERCEPT
from ._engine.batched import can_batch
from ._fit_checks import separation_with_limit
from ._power_spec import _covariance, longitudinal_design
from ._results import fixed_effect_arrays, singular_columns
from ._simulate import fit_many
from ._warn import quiet


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


def simulate_data(spec, X, groups, rng: np.random.Generator, n: int | None = None, term=False):
    """Outcomes for the rows ``X`` (with ``groups``) drawn from ``spec``; ``X`` a
    DataFrame, or a dict of its columns with ``n`` rows. ``term``: ``spec.term`` where
    the caller has it already."""

    def col(name):
        return np.asarray(X[name], dtype=float)

    n = len(X) if n is None else n
    eta = np.full(n, spec.fixed_effects.get(INTERCEPT, 0.0))
    for name in spec.features:
        eta = eta + spec.fixed_effects[name] * col(name)
    if term is False:
        term = spec.term
    if term is not None:
        levels, codes = np.unique(np.asarray(groups), return_inverse=True)
        S = _covariance(spec.random_cov, term.names)
        # eigen-factor: works for a singular (e.g. zero-variance) covariance too
        vals, vecs = np.linalg.eigh(S)
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))
        B = rng.standard_normal((len(levels), len(term.names))) @ root.T
        Z = np.column_stack(
            ([np.ones(n)] if term.intercept else []) + [col(s) for s in term.slopes]
        )
        eta = eta + np.einsum("nq,nq->n", Z, B[codes])
    if spec.offset is not None:
        eta = eta + col(spec.offset)
    fam, extra = spec.family, spec.extra
    mu = fam.mean(eta, extra)
    trials = np.full(n, float(spec.trials))
    return fam.sample(mu, trials, extra, rng)


def _fit(spec, X, y, groups, offset):
    est = spec.refit_estimator()
    kw = {} if offset is None else {"offset": offset}
    if spec.trials > 1:
        kw["trials"] = np.full(len(y), spec.trials)
    with quiet():  # (each study's fit: this thread's warnings alone)
        if spec.term is None:
            return est.fit(X, y, **kw)
        return est.fit(X, y, groups=groups, **kw)


def _wald(est, tests):
    """(estimate, standard error, p-value) of the Wald test of ``tests`` (a list).

    Read from the fit's arrays, not its tables: the numbers of ``fixed_effects_`` and
    ``vcov_fixed`` without making a data frame per simulated study.
    """
    return _wald_arrays(est.fit_result_.arrays, tests)


def _wald_arrays(a, tests):
    """:func:`_wald` from a fit's fixed-effect arrays (``FitArrays``)."""
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


@dataclass
class Study:
    """The data of one simulated study."""

    columns: dict  # the specification's columns, as float arrays
    groups: object  # as the design gave them
    y: np.ndarray
    features: list
    offset_name: str | None

    @property
    def X(self) -> pd.DataFrame:
        return pd.DataFrame({c: self.columns[c] for c in self.features})

    @property
    def offset(self):
        return None if self.offset_name is None else self.columns[self.offset_name]


def _design_rows(out):
    """``(X, groups)`` of a design's return value, or a clear error."""
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], pd.DataFrame)):
        got = type(out).__name__ + (f" of length {len(out)}" if isinstance(out, tuple) else "")
        if isinstance(out, tuple) and len(out) == 2:
            got = f"pair whose X is a {type(out[0]).__name__}, not a DataFrame"
        raise TypeError(
            "design(n_groups, n_per_group, rng) must return a pair (X, groups): a DataFrame "
            f"with the model's columns and one group label per row; it returned a {got}. "
            "A DataFrame with an id column: return (df.drop(columns='id'), df['id'])."
        )
    X, groups = out
    if len(groups) != len(X):
        raise ValueError(
            f"design(...) returned {len(X)} rows of X and {len(groups)} group labels; "
            "give one group label per row."
        )
    return X, np.asarray(groups)


def draw_study(spec, design, n_groups, n_per_group, seed) -> Study:
    """The rows of one study (``design``) and its outcomes drawn from ``spec``."""
    rng = np.random.default_rng(seed)
    if design is longitudinal_design:  # draws nothing: the same rows for every study
        X, groups = _longitudinal_rows(n_groups, n_per_group)  # (a dict of its columns)
    else:
        X, groups = _design_rows(design(n_groups, n_per_group, rng))
    term = spec.term
    needed = list(
        dict.fromkeys(
            spec.features
            + (list(term.slopes) if term is not None else [])
            + ([spec.offset] if spec.offset is not None else [])
        )
    )
    missing = [c for c in needed if c not in X]
    if missing:
        raise ValueError(
            f"the design's data have no column(s) {missing}, which the specification names; "
            f"it gave {list(X)}."
        )
    if isinstance(X, dict):
        cols = {c: X[c] for c in needed}
    else:
        cols = {c: X[c].to_numpy(dtype=float) for c in needed}
    y = simulate_data(spec, cols, groups, rng, n=len(groups), term=term)
    return Study(cols, groups, y, list(spec.features), spec.offset)


@lru_cache(maxsize=16)
def _longitudinal_rows(n_groups, n_per_group):
    """:func:`~sklearn_glmm.power.longitudinal_design`'s columns (a dict of float arrays)
    and groups, made once per size (it reads nothing from its generator), read-only:
    every study of a size shares them."""
    X, groups = _design_rows(longitudinal_design(n_groups, n_per_group, None))
    cols = {c: X[c].to_numpy(dtype=float, copy=True) for c in X.columns}
    for a in (*cols.values(), groups):
        a.setflags(write=False)
    return cols, groups


def _same_design(a: Study, b: Study) -> bool:
    """Whether two studies have the same rows (columns, groups, offset)."""
    ga, gb = np.asarray(a.groups), np.asarray(b.groups)
    if ga.shape != gb.shape or not np.array_equal(ga, gb):
        return False
    return a.columns.keys() == b.columns.keys() and all(
        np.array_equal(a.columns[c], b.columns[c]) for c in a.columns
    )


def _finish(out: Outcome, tests) -> Outcome:
    """The outcome's error when the test gave no p-value."""
    if out.error is None and not np.isfinite(out.p_value):
        what = tests[0] if len(tests) == 1 else tests
        out.error = (
            f"no p-value for {what!r} (estimate {out.estimate:.3g}, standard error "
            f"{out.std_error:.3g}): a column was aliased or the fit had no standard error"
        )
    return out


def _failed(out: Outcome, exc: BaseException) -> Outcome:
    out.error = f"{type(exc).__name__}: {exc}"
    return out


def run_study(spec, tests, method, study: Study):
    """Refit one study's data and test the coefficients ``tests`` (a list).

    Returns ``(outcome, (full, null))``: the fitted estimators (None where a fit
    failed; ``null`` only for ``method="lrt"``), which a batch of studies on the same
    rows refits the others with (:func:`run_batch`).
    """
    X, y, groups, off = study.X, study.y, study.groups, study.offset
    out = Outcome(n_obs=len(y))
    full = null = None
    try:
        full = _fit(spec, X, y, groups, off)
        out.estimate, out.std_error, out.p_value = _wald(full, tests)
        out.converged = bool(full.converged_)
        out.singular = bool(getattr(full, "is_singular_", False))
        if method == "lrt":
            null = _fit(spec, X.drop(columns=tests), y, groups, off)
            out.converged = out.converged and bool(null.converged_)
            lr = max(2.0 * (full.loglik_ - null.loglik_), 0.0)
            estimable = np.all(np.isfinite(full.fixed_effects_.loc[tests, "estimate"]))
            out.p_value = float(stats.chi2.sf(lr, len(tests))) if estimable else np.nan
    except Exception as exc:  # noqa: BLE001 - every failed refit is counted and named
        return _failed(out, exc), (None, None)
    return _finish(out, tests), (full, null)


def _batchable(est) -> bool:
    res = getattr(est, "fit_result_", None)
    data = getattr(getattr(res, "objective", None), "data", None)
    return bool(data is not None and data.factors and can_batch(data, est.n_agq))


# studies of more rows are fitted one after another: the batch saves numpy's per-call
# cost and the hand-overs, which the per-row arithmetic outweighs on larger studies (a
# binary random-intercept model's 200 studies per size, greenlets scheduling the batch,
# median of three alternating runs: 0.71x the time of one by one at 1,500 rows, 0.82x at
# 2,000, 0.87x at 2,500, 1.0x at 3,000; with threads the batch was no faster above
# 1,000 rows)
_BATCH_MAX_ROWS = 3000


def run_batch(spec, tests, method, studies: list) -> list:
    """Outcomes of studies on the same rows: the first fitted as :func:`run_study`
    does, the others from its model (:func:`~._simulate.fit_many`: each from its own
    start, with a fit's checks; the estimator's validation, design and tables made
    once), their evaluations batched where the model allows and the studies are small,
    else one after another; a model the batch does not take, each by the estimator."""
    first, (full, null) = run_study(spec, tests, method, studies[0])
    rest = studies[1:]
    templates = [full] + ([null] if method == "lrt" else [])
    small = len(studies[0].y) <= _BATCH_MAX_ROWS
    if not rest or not all(t is not None and _batchable(t) for t in templates):
        return [first] + [run_study(spec, tests, method, st)[0] for st in rest]
    Y = np.column_stack([st.y for st in rest])
    fits = [fit_many(t, Y, batched=small) for t in templates]
    return [first] + [
        _batched_outcome(templates, [f[r] for f in fits], tests, method, st.y)
        for r, st in enumerate(rest)
    ]


def _batched_outcome(templates, fitted, tests, method, y) -> Outcome:
    """A study's outcome from the ``(x, FitRecord)`` of its fits (full model, and the
    null model for ``method="lrt"``) on the models ``templates``; ``y`` its outcome."""
    out = Outcome(n_obs=len(y))
    for f in fitted:
        if isinstance(f, BaseException):
            return _failed(out, f)
    full = templates[0]
    x, record = fitted[0]
    res = full.fit_result_
    d = res.objective.data
    p = d.n_beta
    # a separated study's other coefficients keep their standard errors, as the
    # estimator's fit (``_fit_checks._limit_covariance``)
    rows = SimpleNamespace(
        X=d.X,
        y=np.asarray(y, dtype=float),
        trials=d.trials,
        weights=d.weights,
        offset=d.offset,
        family=d.family,
        n_beta=p,
    )
    found = separation_with_limit(record, x, res.bounds, rows, res.scaling)
    limit = getattr(record, "limit_covariance", None)
    arrays, _ = fixed_effect_arrays(res.scaling, full._fixed_names, x[:p], record.covariance, limit)
    out.estimate, out.std_error, out.p_value = _wald_arrays(arrays, tests)
    if isinstance(found, str):  # every outcome the same: no estimate means anything
        out.std_error, out.p_value = np.nan, np.nan
    out.converged = bool(record.converged)
    # the fit's singular test (unstructured covariances: a batch has no other)
    out.singular = any(singular_columns(L) for L in res.internal_lambdas(x))
    if method == "lrt":
        null_record = fitted[1][1]
        out.converged = out.converged and bool(null_record.converged)
        lr = max(null_record.objective - record.objective, 0.0)
        estimable = np.all(np.isfinite(arrays.estimate[[arrays.terms.index(t) for t in tests]]))
        out.p_value = float(stats.chi2.sf(lr, len(tests))) if estimable else np.nan
    return _finish(out, tests)


def run_chunk(spec, test, method, design, tasks):
    """Studies ``tasks`` = [(cell, n_groups, n_per_group, seed), ...], single-threaded BLAS.

    Consecutive studies on the same rows (a design that does not draw them, such as
    :func:`~sklearn_glmm.power.longitudinal_design`) are refitted as one batch
    (:func:`run_batch`); which studies share a batch depends on ``tasks`` only.
    """
    from ._engine.blas import single_threaded_blas

    with single_threaded_blas():
        drawn = [(cell, draw_study(spec, design, g, k, seed)) for cell, g, k, seed in tasks]
        out, k = [], 0
        while k < len(drawn):
            cell, first = drawn[k]
            end = k + 1
            while end < len(drawn) and drawn[end][0] == cell and _same_design(first, drawn[end][1]):
                end += 1
            studies = [st for _, st in drawn[k:end]]
            out += [(cell, o) for o in run_batch(spec, test, method, studies)]
            k = end
        return out
