"""A partition's rows on its Dask worker (``sklearn_glmm.dask``): validated, described,
coded and scaled as the whole model's preprocessing says, then its objective.

Imports no Dask: the class runs as a Dask actor, one per partition.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ._design import slope_spread
from ._engine.groups import level_spread, used_rows
from ._engine.objective import ModelData, make_factor_data
from ._engine.partitioned import PartitionModel
from ._group_columns import (
    _factorize,
    _isinf,
    _isnull,
)
from ._validation import (
    check_numeric_columns,
    offset_is_whole,
)
from ._validation_rows import rows_misaligned


def bundle(*columns):
    """One partition's pieces (X, y, groups, weights, offset) as one object."""
    return columns


class Partition:
    """The rows of the partitions a worker holds, concatenated in partition order: raw
    first, then their objective (a Dask actor, one per worker)."""

    def __init__(self, pieces):
        Xs, ys, gs, ws, offs = [], [], [], [], []
        self.order_warnings, self.index_ranges = [], []
        for X, y, g, w, off in pieces:
            # (an X whose partitions' indexes make 0..n-1 is not compared: the driver
            # reads the ranges, :func:`sklearn_glmm.dask._input_warnings`)
            self.order_warnings += _order_warnings(X, y, g, w, off)
            self.index_ranges.append(_index_range(X))
            if isinstance(X, pd.DataFrame):
                check_numeric_columns(X)
            X = np.asarray(X, dtype=np.float64)
            X = X[:, None] if X.ndim == 1 else X
            n = len(X)
            others = [v for v in (y, g, w, off) if v is not None]
            if {len(v) for v in others} - {n}:
                raise ValueError(
                    f"a partition has {n} rows of X but {sorted({len(v) for v in others})} of "
                    "y, groups, sample_weight or offset: the collections must be partitioned "
                    "alike."
                )
            Xs.append(X)
            ys.append(np.asarray(y))
            gs.append(np.asarray(g))
            ws.append(np.ones(n) if w is None else np.asarray(w, dtype=np.float64))
            offs.append(np.zeros(n) if off is None else np.asarray(off, dtype=np.float64))
        self.piece_rows = [len(X) for X in Xs]
        self.piece_labels = [pd.unique(g) for g in gs]
        self.X = np.concatenate(Xs) if len(Xs) > 1 else Xs[0]
        self.y_raw = np.concatenate(ys) if len(ys) > 1 else ys[0]
        self.labels = np.concatenate(gs) if len(gs) > 1 else gs[0]
        self.w = np.concatenate(ws)
        self.off = np.concatenate(offs)
        self.model = None

    def describe(self, name: str) -> dict:
        """Rows, column sums, non-finite values, labels and outcome values."""
        n = len(self.X)
        # missing labels are counted here and reported by the driver, with the data's
        # number of rows (not this worker's)
        labels_bad = int(np.sum(_isnull(self.labels) | _isinf(self.labels))) if n else 0
        if n and not labels_bad:
            self.codes, levels = _factorize(name, self.labels, n)
        else:
            self.codes, levels = np.zeros(n, dtype=np.intp), []
        self.codes = self.codes.astype(np.intp)
        bad_w = int(np.sum(~np.isfinite(self.w) | (self.w < 0)))
        y_vals = None
        y_missing = 0
        if self.y_raw.dtype.kind not in "iuf" or n == 0:
            missing = np.asarray(pd.isna(pd.Series(self.y_raw, dtype=object)), dtype=bool)
            y_missing = int(missing.sum())
            y_vals = np.unique(self.y_raw[~missing]) if n else np.unique(self.y_raw)
        elif len(np.unique(self.y_raw[:1000])) <= 2:
            y_vals = np.unique(self.y_raw)
            y_vals = y_vals if len(y_vals) <= 2 else y_vals[:3]
        return dict(
            n=n,
            piece_rows=self.piece_rows,
            piece_levels=[len(v) for v in self.piece_labels],
            x_sum=self.X.sum(axis=0),
            x_bad=int(np.sum(~np.isfinite(self.X))),
            levels=pd.Index(levels),
            y_values=y_vals,
            y_kind=self.y_raw.dtype.kind,
            y_bad=int(np.sum(~np.isfinite(self.y_raw)))
            if self.y_raw.dtype.kind in "iuf"
            else y_missing,
            labels_bad=labels_bad,
            w_bad=bad_w,
            off_bad=int(np.sum(~np.isfinite(self.off))),
            off_range=_finite_range(self.off),
            off_whole=offset_is_whole(self.off),
            order_warnings=self.order_warnings[:1],
            index_ranges=self.index_ranges,
            # for each column of X, whether it holds the (numeric) labels: the driver
            # warns where it does on every worker (validation.check_groups_not_in_X)
            label_columns=[bool(np.array_equal(c, self.labels)) for c in self.X.T]
            if n and self.labels.dtype.kind in "iuf"
            else None,
        )

    def split_labels(self, known) -> list:
        """Labels of this worker's partitions that ``known`` (labels of the partitions
        before them) or an earlier partition here also holds: groups split over
        partitions."""
        seen = pd.Index(known)
        out = []
        for labels in self.piece_labels:
            out += list(pd.Index(labels).intersection(seen)[:5])
            seen = seen.union(pd.Index(labels))
        return out

    def moments(self, means, pos_label, has_trials: bool) -> dict:
        """The coded outcome, the centred columns' R factor and the outcome's sums."""
        if has_trials:
            self.y = (self.y_raw == pos_label).astype(np.float64)
        else:
            self.y = self.y_raw.astype(np.float64)
        self.trials = np.ones(len(self.y))
        # centred at this partition's own means, which the driver pools with the others'
        # (the global means it sent are a sum of the data's values: a column with a
        # large constant part, 1e9 + x, comes back off centre by more than its
        # variation's rounding, and the aliased-column test would see that offset)
        Xc = self.X - means
        d = Xc.mean(axis=0) if len(Xc) else np.zeros(Xc.shape[1])
        Xc -= d
        R = np.linalg.qr(Xc, mode="r") if Xc.shape[1] else np.zeros((0, 0))
        Xu = np.linalg.qr(self.X, mode="r") if self.X.shape[1] else np.zeros((0, 0))
        used = self.w > 0
        return dict(
            R=R,
            mean_shift=d,
            rows=len(Xc),
            R_raw=Xu,
            wsum=float(self.w.sum()),
            wy=float(self.w @ self.y),
            wt=float(self.w @ self.trials),
            y_neg=int(np.sum(self.y < 0)),
            y_nonint=int(np.sum(self.y != np.round(self.y))),
            n_used=int(used.sum()),
            binary_cols=_binary_columns(self.X),
        )

    def build(self, spec: dict) -> None:
        """This partition's internal rows and its objective."""
        sc, factor, T = spec["scaling"], spec["factor"], spec["T"]
        Xd = _internal_design(self.X, sc)
        Z = factor.z_matrix(self.X) @ T
        # what the driver's checks of the slopes read (each level's rows are here):
        # the slope variables' spread, raw, and the internal Z's (the restarts'), on
        # the rows with weight above 0
        used = used_rows(self.w)
        self.spreads = (
            slope_spread(dataclasses.replace(factor, codes=self.codes), self.X, used),
            level_spread(self.codes, Z, used),
        )
        self.row_index = np.concatenate(
            [off + np.arange(k) for off, k in zip(spec["row_offsets"], self.piece_rows)]
        )
        self.level_map = spec["level_map"]
        n_levels = len(self.level_map)
        fdata = make_factor_data(
            [self.codes], [Z], [n_levels], [(factor.theta_rows, factor.theta_cols)], [None]
        )
        data = ModelData(Xd, self.y, self.trials, self.w, self.off, spec["family"], fdata, None)
        self.model = PartitionModel(data, spec["n_agq"], self.level_map)
        # the internal rows replace the raw columns, outcome and labels
        self.X = self.y_raw = self.labels = self.piece_labels = None

    def level_spreads(self) -> tuple:
        """The slope variables' :func:`~sklearn_glmm._design.slope_spread` and the
        internal Z's :func:`~sklearn_glmm._engine.groups.level_spread` (after
        :meth:`build`)."""
        return self.spreads

    def call(self, method: str, *args):
        return getattr(self.model, method)(*args)

    def rows(self, step: int = 0, levels=None) -> dict | None:
        """Internal rows for the starting values on the client: every row (``step=1``),
        every ``step``-th row of the whole data, or the rows of some levels."""
        d = self.model.data
        if levels is not None:
            mask = np.isin(self.level_map[self.codes], levels)
        else:
            mask = self.row_index % step == 0
        if not mask.any():
            return None
        f = d.factors[0]
        return dict(
            X=d.X[mask],
            y=d.y[mask],
            trials=d.trials[mask],
            w=d.weights[mask],
            off=d.offset[mask],
            Z=f.Z[mask],
            codes=self.level_map[self.codes[mask]],
            rows=self.row_index[mask],
        )

    def level_sums(self, beta, extra) -> np.ndarray:
        """Per level and Z column: sum of ``w z^2`` and of ``d1 z`` at the GLM's start,
        shape (2, G_p, q)."""
        d = self.model.data
        obj = self.model.objective
        der = obj._derivs(d.X @ beta + d.offset, extra)
        f, g = d.factors[0], obj.groups[0]
        return np.stack([g.sum(der.w[:, None] * f.Z**2), g.sum(der.d1[:, None] * f.Z)])

    def summaries(self, beta_s, extra) -> dict:
        """What the checks and the summary read from the rows, at the optimum."""
        d, obj = self.model.data, self.model.objective
        fam = d.family
        used = d.weights > 0
        G = d.factors[0].n_levels
        eta_fix = d.X @ beta_s + d.offset
        eta = obj.state["eta"]
        extra_v = d.extra_values(extra)
        mu = fam.mean(eta, extra_v) * (d.trials if fam.has_trials else 1.0)
        # the Pearson residuals, with the prior weights' sqrt (as the estimator's)
        r = np.sqrt(d.weights) * (d.y - mu) / np.sqrt(fam.variance_eta(eta, d.trials, extra_v))
        rng = np.random.default_rng(0)
        sample = r[used]
        if len(sample) > 20_000:
            sample = rng.choice(sample, 20_000, replace=False)
        top = int(np.argmax(np.where(used, eta, -np.inf))) if used.any() else 0
        Zu = np.asarray(d.factors[0].Z, dtype=float)[used]
        return dict(
            zz=Zu.T @ Zu,  # (the random part's SD over the rows: _fit_checks.random_part_sd)
            wy=float(d.weights[used] @ d.y[used]),  # (the weighted mean outcome)
            wsum=float(d.weights[used].sum()),
            counts=np.bincount(self.codes[used], minlength=G),
            succ=np.bincount(self.codes[used], d.y[used], minlength=G),
            tot=np.bincount(self.codes[used], d.trials[used], minlength=G),
            any_success=bool(np.any(d.y[used] > 0)),
            any_failure=bool(np.any(d.y[used] < d.trials[used])),
            eta_abs_max=float(np.max(np.abs(eta_fix[used]), initial=0.0)),
            eta_min=float(np.min(eta_fix[used], initial=np.inf)),
            pearson=float(np.sum(r**2)),
            r_min=float(np.min(r[used], initial=np.inf)),
            r_max=float(np.max(r[used], initial=-np.inf)),
            r_sample=np.sort(sample),
            n_used=int(used.sum()),
            rows=len(used),
            y_max=float(np.max(d.y[used], initial=0.0)),
            eta_top=float(eta[top]) if used.any() else -np.inf,
        )


def _finite_range(v) -> tuple | None:
    """The smallest and largest finite value of ``v``, or None."""
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if len(v) else None


def _binary_columns(X) -> np.ndarray:
    """Per column: (only 0/1, has a 0, has a 1)."""
    if not X.shape[1]:
        return np.zeros((3, 0), dtype=bool)
    zero, one = X == 0.0, X == 1.0
    return np.stack([(zero | one).all(axis=0), zero.any(axis=0), one.any(axis=0)])


def _internal_design(X, sc) -> np.ndarray:
    """The rows of ``X`` on the internal scale ``scale_design`` chose (the same map)."""
    cols = [(X[:, k] - sc["means"][k]) / sc["scales"][k] for k in sc["kept"]]
    if cols and "rotation" in sc:  # decorrelated columns (_scaling._decorrelate)
        cols = list((np.column_stack(cols) @ sc["rotation"]).T)
    if sc["intercept"]:
        cols.insert(0, np.full(len(X), 1.0 / sc.get("intercept_scale", 1.0)))
    if not cols:
        return np.asfortranarray(np.zeros((len(X), 0)))
    return np.asfortranarray(np.column_stack(cols))


def _order_warnings(X, y, g, w, off) -> list[str]:
    """The in-memory fit's row-order warnings for one partition's pieces, as messages
    for the driver to give (the worker's threads do not touch the warnings' state)."""
    others = {"y": y, "groups": g, "sample_weight": w, "offset": off}
    return rows_misaligned(X, {k: v for k, v in others.items() if v is not None})


def _index_range(X):
    """``(start, stop)`` of a partition's index that is a run of consecutive integers
    (a RangeIndex of step 1), else None."""
    index = getattr(X, "index", None)
    if isinstance(index, pd.RangeIndex) and index.step == 1:
        return (int(index.start), int(index.stop))
    return None
