"""The fitted attributes of a partitioned fit (``sklearn_glmm.dask``).

The in-memory fit's own helpers map the optimum to the user's units
(``_results``); what they read from the training rows comes here from per-partition
and per-level summaries instead:

- the number of observations, the identifiability check (rows per level) and the
  group-level separation check (successes and trials per level) — exact;
- the separation check: whether every outcome is the same, and whether the linear
  predictor went far out (the trigger of the in-memory test) — exact; the linear
  programme naming the separated predictors needs every row, and runs (the in-memory
  test itself) only when the rows are few enough to gather (``_SEPARATION_ROWS``);
- ``summary``'s numbers: the Pearson overdispersion statistic (exact) and the
  quartiles of the Pearson residuals (exact minimum and maximum; quartiles from a
  sample of up to 20,000 rows per partition);
- the support of the count predictions (the largest count and linear predictor).

The training rows stay on the cluster: the result is one without its data
(``FitResult.without_data``), so that methods needing them raise ``TrainingDataError``.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
from scipy import stats

from . import _fit_checks, _results
from ._diagnostics import OverdispersionResult
from ._engine.separation import separation_message
from ._warn import user_stacklevel, warn
from .exceptions import SeparationWarning

_QUANTILES = [0, 0.25, 0.5, 0.75, 1]


def light_factor(f):
    """The factor without its levels and codes: what a worker needs for Z."""
    return dataclasses.replace(f, levels=None, codes=None)


def set_attributes(est, obj, x, record, data, factors, bounds, pending, sums, moms, gather_rows):
    """The fit's :class:`~sklearn_glmm._fit_result.FitResult` and every fitted attribute
    of ``est`` from the optimum ``x`` (``_results.set_fitted_attributes`` with the data's
    summaries in place of its rows). ``gather_rows()`` returns every row as a
    ``ModelData`` (for the separation test on few rows)."""
    beta_s = x[: data.n_beta]
    separation = _gathered_separation(
        data.family,
        sums,
        gather_rows,
        lambda rows: _fit_checks.separation_with_limit(record, x, bounds, rows, pending["scaling"]),
    )
    parts = _results.fitted_parameters(est, obj, x, record, data, factors, pending)
    result = _results.make_result(
        est,
        x,
        record,
        data,
        factors,
        bounds,
        pending,
        parts,
        designs=(None, None, None),
        training=None,  # the rows stay on the cluster
    )
    result = dataclasses.replace(result, partitioned=True)
    names = est._fixed_names
    rows, se_all, idx = parts.rows, parts.arrays.std_error, parts.idx
    _results.publish(est, result, record, x, int(sum(s["n_used"] for s in sums)))
    level = _level_sums(result, obj, sums)
    _check_separation(est, sums, beta_s, separation)
    _check_levels(est, level)
    _fit_checks._check_convergence(est, record)
    _check_laplace(est, x, record, bounds, sums, gather_rows)
    _fit_checks._check_standard_errors(est, record, rows, se_all, idx)
    est.converged_ = bool(record.converged)
    _support(est, sums)
    est.fit_result_ = result.without_data(_summaries(est, sums, moms, names))


def _check_laplace(est, x, record, bounds, sums, gather_rows) -> None:
    """The in-memory check of the Laplace approximation (``_fit_checks._check_laplace``:
    how far adaptive quadrature would move the fit) on the rows gathered to the client,
    where it applies (at most ``quadrature_check.CHECK_MAX_ROWS`` rows, and
    ``quadrature_check.applicable``'s budget of rows times nodes)."""
    from ._engine import quadrature_check as qc
    from ._engine.objective import Objective

    if not record.converged or sum(s["rows"] for s in sums) > qc.CHECK_MAX_ROWS:
        return
    local = Objective(gather_rows(), 1)
    if not qc.applicable(local, est.n_agq):
        return
    local.evaluate(x)  # (the Laplace state at the optimum, which the check reads)
    _fit_checks._check_laplace(est, local, x, record, bounds)


def _level_sums(result, obj, sums) -> dict:
    """Rows, successes and trials of every level, in the model's level order."""
    G = result.factors[0].n_levels
    out = {k: np.zeros(G) for k in ("counts", "succ", "tot")}
    for idx, s in zip(obj.level_maps, sums):
        for k in out:
            out[k][idx] = s[k]
    out["zz"] = np.sum([s["zz"] for s in sums], axis=0)  # (summed over every row used)
    return out


def _check_levels(est, level) -> None:
    """The in-memory identifiability and group-separation checks, on one row per level
    carrying its sums (the checks read per-level sums only)."""
    res = est.fit_result_
    f = res.factors[0]
    binary = res.family.has_trials
    counts = np.minimum(level["counts"], 2).astype(np.intp)
    codes = np.repeat(np.arange(f.n_levels), counts)
    rows = SimpleNamespace(weights=np.ones(len(codes)), trials=np.ones(len(codes)))
    if not binary:
        rows.trials = np.full(len(codes), 2.0)
    twin_result = SimpleNamespace(
        family=res.family,
        factors=[dataclasses.replace(f, codes=codes)],
        arrays=res.arrays,
        internal_lambdas=res.internal_lambdas,
    )
    twin = SimpleNamespace(fit_result_=twin_result)
    _fit_checks._check_identifiable(twin, rows)
    G = f.n_levels
    per_level = SimpleNamespace(
        weights=(level["counts"] > 0).astype(float),
        y=level["succ"],
        trials=level["tot"],
        z_moments=level["zz"] / max(level["counts"].sum(), 1.0),
    )
    twin_result.factors = [dataclasses.replace(f, codes=np.arange(G))]
    _fit_checks._check_group_separation(twin, per_level)


# rows up to which the separation test's linear programme runs on the rows gathered
_SEPARATION_ROWS = 200_000


def _all_same(fam, sums) -> bool:
    if fam.has_trials:
        return not (any(s["any_success"] for s in sums) and any(s["any_failure"] for s in sums))
    return not any(s["any_success"] for s in sums)


def _far(fam, sums) -> bool:
    """Whether the fixed-effect linear predictor went far out somewhere (the sign of a
    separating direction, which the in-memory test then looks for)."""
    if fam.has_trials:
        return max(s["eta_abs_max"] for s in sums) > 5.0
    # the prior weights' mean outcome, as in memory (``_fit_checks._separation``)
    ybar = sum(s["wy"] for s in sums) / max(sum(s["wsum"] for s in sums), 1e-300)
    return min(s["eta_min"] for s in sums) < np.log(ybar) - 5.0


def _gathered_separation(fam, sums, gather_rows, test):
    """``(rows, found)``: the gathered rows and ``test(rows)``'s answer
    (``_fit_checks.separation_with_limit``) when the linear predictor went far out on few
    rows and the data are separated; None otherwise."""
    if _all_same(fam, sums) or not _far(fam, sums):
        return None
    if sum(s["rows"] for s in sums) > _SEPARATION_ROWS:
        return None
    rows = gather_rows()
    found = test(rows)
    return None if found is None or isinstance(found, str) else (rows, found)


def _check_separation(est, sums, beta_s, separation) -> None:
    """Separation: every outcome the same, or the linear predictor far out (then the
    in-memory test on the gathered rows when they are few: ``separation``,
    :func:`_gathered_separation`'s answer)."""
    fam = est.fit_result_.family
    if _all_same(fam, sums):
        warn(
            separation_message([], fam.has_trials, True),
            SeparationWarning,
            stacklevel=user_stacklevel(),
        )
        return
    if not _far(fam, sums):
        return
    if sum(s["rows"] for s in sums) <= _SEPARATION_ROWS:
        if separation is not None:
            _fit_checks._check_separation(est, separation[0], beta_s, separation[1])
        return
    warn(
        "the fixed-effect linear predictor reaches extreme values (|eta| > 5 on the "
        f"{fam.link.scale_name} scale): some fixed effects may be separated (an infinite "
        "estimate). The test that names them (a linear programme over every row) is not "
        "run on partitioned data of more than "
        f"{_SEPARATION_ROWS:,} rows; fit a sample of the groups in memory to find them.",
        SeparationWarning,
        stacklevel=user_stacklevel(),
    )


def _support(est, sums) -> None:
    """Count models: the largest count and linear predictor (``_learn_support``)."""
    if est.fit_result_.family.has_trials:
        return
    top = max(sums, key=lambda s: s["eta_top"])
    y_max = max(s["y_max"] for s in sums)
    est._learn_support(np.array([y_max, 0.0]), np.array([top["eta_top"], -np.inf]), np.ones(2))


def _pooled_quantiles(sums) -> np.ndarray:
    """Quantiles of the Pearson residuals of every worker's used rows. Exact where each
    worker sent all of them; otherwise each sampled value stands for its worker's
    ``n_used / len(sample)`` rows (pooled unweighted, a small worker's sample outweighed
    a large one's: the third quartile came out +0.09 instead of -0.16)."""
    parts = [s for s in sums if len(s["r_sample"])]
    if not parts:
        return np.full(len(_QUANTILES), np.nan)
    r = np.concatenate([s["r_sample"] for s in parts])
    if all(len(s["r_sample"]) == s["n_used"] for s in parts):
        return np.quantile(r, _QUANTILES)
    w = np.concatenate(
        [np.full(len(s["r_sample"]), s["n_used"] / len(s["r_sample"])) for s in parts]
    )
    order = np.argsort(r, kind="stable")
    r, w = r[order], w[order]
    # the weighted empirical distribution, at the midpoints of each value's weight
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(_QUANTILES, cum, r)


def _summaries(est, sums, moms, names) -> dict:
    """The numbers ``summary`` and ``report`` read from the training rows (``_state``)."""
    res = est.fit_result_
    binary = res.family.has_trials
    q = _pooled_quantiles(sums)
    q[0] = min(s["r_min"] for s in sums)
    q[-1] = max(s["r_max"] for s in sums)
    cols = np.all([m["binary_cols"][0] for m in moms], axis=0)
    cols &= np.any([m["binary_cols"][1] for m in moms], axis=0)
    cols &= np.any([m["binary_cols"][2] for m in moms], axis=0)
    kept = res.scaling["kept"]
    binary_columns = [nm for k, nm in enumerate(names) if k < len(cols) and cols[k] and k in kept]
    over = None
    if not binary:
        stat = float(sum(s["pearson"] for s in sums))
        df = int(est.df_resid_)
        pv = float(stats.chi2.sf(stat, df)) if df > 0 else np.nan
        over = OverdispersionResult(stat / df if df > 0 else np.nan, stat, df, pv)
    return {
        "pearson_quantiles": q,
        "binary_outcome": binary,
        "binary_columns": binary_columns,
        "overdispersion": over,
    }
