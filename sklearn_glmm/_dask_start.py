"""Starting values of a partitioned fit as the in-memory fit finds them
(``start.starting_point``, and for large data the GLM on a subset of rows, the variances
from per-level sums and the first stage on a subset of levels), from rows gathered from
the partitions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._dask_load import _gather
from ._engine import start as _start
from ._engine.lbfgsb import _quiet_trial_points
from ._engine.objective import ModelData, Objective, make_factor_data
from ._engine.stage import _laplace_stage
from ._engine.start import glm_start, starting_point


def _layout(n_beta, family, f, n_levels, spread=None, level_slopes=False) -> ModelData:
    """The model's layout with zero rows (what the optimiser reads from ``data``); the
    spread of the rows' Z columns (:func:`~._engine.groups.level_spread`) and whether a
    slope variable is the level's own (:attr:`~._engine.model_data.FactorData.
    level_slopes`) as given."""
    fdata = make_factor_data(
        [np.zeros(0, dtype=np.intp)],
        [np.zeros((0, f.q))],
        [n_levels],
        [(f.theta_rows, f.theta_cols)],
        [None],
    )
    fdata = (dataclasses.replace(fdata[0], spread=spread, level_slopes=level_slopes),)
    e = np.zeros(0)
    return ModelData(np.zeros((0, n_beta)), e, e, e, e, family, fdata, None)


def _rows_data(pieces, family, layout, renumber: bool) -> ModelData:
    """A ModelData of rows gathered from the partitions (partition order = row order)."""
    pieces = [p for p in pieces if p is not None]
    cat = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    order = np.argsort(cat.pop("rows"), kind="stable")  # the rows in the data's order
    cat = {k: v[order] for k, v in cat.items()}
    codes = cat["codes"].astype(np.intp)
    n_levels = layout.factors[0].n_levels
    if renumber:
        uniq, codes = np.unique(codes, return_inverse=True)
        n_levels = len(uniq)
    f = layout.factors[0]
    fdata = make_factor_data(
        [codes.astype(np.intp)], [cat["Z"]], [n_levels], [(f.theta_rows, f.theta_cols)], [None]
    )
    X = np.asfortranarray(cat["X"])
    return ModelData(X, cat["y"], cat["trials"], cat["w"], cat["off"], family, fdata, None)


def _partitioned_start(obj, actors, n, bounds, est):
    """Starting values as the in-memory fit finds them (``start.starting_point`` and
    the first stage on a subset of levels for large data)."""
    layout, family = obj.data, obj.data.family
    if n <= _start._SUBSAMPLE_ROWS:
        # small data: the start on every row, gathered (at most a few hundred thousand)
        full = _rows_data(_gather([a.rows(1, None) for a in actors]), family, layout, False)
        inner = Objective(full, 1)
        x0 = starting_point(inner)
        if hasattr(inner, "glm_optimum"):
            obj.glm_optimum = inner.glm_optimum
        del full, inner
    else:
        x0 = _large_start(obj, actors, n, layout, family)
    if n < _start._SUBSAMPLE_ROWS:
        return x0
    return _subset_stage(obj, actors, n, x0, bounds, est)


def _large_start(obj, actors, n, layout, family):
    """``starting_point`` for data above its subsampling size: the GLM on every
    ``step``-th row, the variances from per-level sums over every row."""
    step = n // _start._SUBSAMPLE_TARGET + 1
    sub = _rows_data(_gather([a.rows(step, None) for a in actors]), family, layout, True)
    extra0 = layout.default_extra()
    f = layout.factors[0]
    theta0 = np.where(f.theta_rows == f.theta_cols, 0.5, 0.0)
    with _quiet_trial_points():
        from ._engine.objective import GLMObjective

        beta0 = glm_start(GLMObjective(sub), extra0)
        if family.n_extra == 0:
            sums = _gather([a.level_sums(beta0, extra0) for a in actors])
            theta0 = _moment_start(f, sums, obj.level_maps)
    return np.concatenate([beta0, theta0, extra0])


def _moment_start(f, sums, level_maps) -> np.ndarray:
    """``start._moment_theta`` from per-level sums: one row per level carrying its
    sums reproduces the per-level sums it takes over the rows."""
    from types import SimpleNamespace

    from ._engine.start import _moment_theta

    info = np.zeros((f.n_levels, f.q))
    score = np.zeros((f.n_levels, f.q))
    for idx, s in zip(level_maps, sums):
        info[idx], score[idx] = s[0], s[1]
    theta = np.zeros(len(f.theta_rows))
    for k, (r, c) in enumerate(zip(f.theta_rows, f.theta_cols)):
        if r != c:
            continue
        one = SimpleNamespace(
            theta_rows=np.array([0]),
            theta_cols=np.array([0]),
            Z=np.ones((f.n_levels, 1)),
            codes=np.arange(f.n_levels),
            n_levels=f.n_levels,
        )
        der = SimpleNamespace(w=info[:, r], d1=score[:, r])
        theta[k] = _moment_theta(one, der)[0]
    return theta


def _subset_stage(obj, actors, n, x0, bounds, est):
    """``optimize._subsample_start``: the first stage on the same subset of levels."""
    f = obj.data.factors[0]
    n_pick = min(f.n_levels, max(500, int(f.n_levels * _start._SUBSAMPLE_TARGET / n)))
    if n_pick >= f.n_levels:
        return x0
    chosen = np.random.default_rng(0).choice(f.n_levels, size=n_pick, replace=False)
    pieces = _gather([a.rows(0, chosen) for a in actors])
    sub = Objective(_rows_data(pieces, obj.data.family, obj.data, True), 1)
    n_cov = obj.data.n_beta + obj.data.n_theta
    diag_idx = [k for k, b in enumerate(bounds[:n_cov]) if b[0] == 0.0]
    with _quiet_trial_points():
        res = _laplace_stage(sub, x0, bounds, est.max_iter, est.tol, diag_idx)
    sub.release_state()  # as there: the subset's arrays go with its objective
    return res.x if np.isfinite(res.fun) else x0
