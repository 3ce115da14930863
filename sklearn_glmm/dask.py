"""Fit one model from Dask collections partitioned by group (one grouping factor).

With a single grouping factor the likelihood, its gradient and the conditional modes
are sums over levels. :func:`fit_partitioned` keeps each partition's rows on the
worker that holds them, builds the library's own objective there once (a Dask actor,
:class:`~sklearn_glmm._engine.partitioned.PartitionModel`), and runs every outer
evaluation as one map-reduce: the outer parameters (``beta``, ``theta``, the family's
parameters) travel to the partitions, a value and a gradient come back. The optimiser
and every check at the optimum are the in-memory fit's
(:func:`~sklearn_glmm._engine.optimize.fit_objective`,
:func:`~sklearn_glmm._engine.converge.check_optimum`), run on their sum.

Order of calls:

1. every partition becomes an actor holding its rows (``_partitioned_worker.Partition``);
2. ``describe``: rows, column sums, the partition's group labels and outcome values
   (one pass); the model's levels are their union, and a level seen in two partitions
   is refused or the data shuffled by group (``split_groups``);
3. ``moments``: the outcome coded, the centred columns' R factor (a tall-skinny QR)
   and the sums of the outcome: the in-memory fit's internal centring and scaling,
   its aliased-column test, its decorrelation of nearly collinear columns and the
   scaling of the random-effect columns, computed
   from them exactly (``_summary_rows``);
4. ``build``: each partition's internal rows and its objective;
5. starting values as the in-memory fit finds them (``_dask_start._partitioned_start``: the GLM
   on every row of small data, or on the same strided subset of rows, the
   moment-based variances from per-level sums, the same subset of levels for the
   first stage on large data);
6. ``fit_objective`` and ``check_optimum`` on the
   :class:`~sklearn_glmm._engine.partitioned.PartitionedObjective`;
7. the fitted attributes (``_set_attributes``), the conditional modes of every level
   gathered, and the data checks from per-level summaries.

Dask is imported only by the loading of the collections (``_dask_load``), when a
partitioned fit runs.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import _partitioned_results as _pres
from ._dask_load import (
    _client,
    _collections,
    _gather,
    _load,
    _release,
    _shuffle,
    _unshufflable,
)
from ._dask_start import (
    _layout,
    _partitioned_start,
    _rows_data,
)
from ._design import (
    build_factors,
    check_slope_variables,
    has_level_slopes,
    parse_term,
)
from ._engine.blas import single_threaded_blas
from ._engine.fit_checked import fit_checked
from ._engine.groups import pooled_spread
from ._engine.partitioned import PartitionedObjective
from ._engine.quadrature_vector import check_quadrature_structure
from ._engine.start import parameter_bounds
from ._labels import check_distinct_labels
from ._scaling import scale_design, z_transform
from ._validation import check_offset_scale
from ._validation_rows import warn_labels_column
from ._warn import user_stacklevel, warn

__all__ = ["fit_partitioned"]

_SPLIT_CHOICES = ("raise", "shuffle")


# -- the client's side ---------------------------------------------------------------
def fit_partitioned(
    est,
    X,
    y,
    groups,
    *,
    sample_weight=None,
    offset=None,
    client=None,
    split_groups: str = "raise",
    **fit_params,
):
    """Fit ``est`` to Dask collections whose partitions each hold whole groups.

    Parameters
    ----------
    est : BinomialGLMM, PoissonGLMM or NegBinGLMM
        An estimator of a log-concave family with one grouping factor (random
        intercept or random slopes of that factor, Laplace or ``n_agq > 1``); its
        parameters are used as for ``est.fit``.
    X : dask.dataframe.DataFrame or dask.array.Array of shape (n_samples, n_features)
        Fixed-effect predictors.
    y : dask.dataframe.Series or dask.array.Array of shape (n_samples,)
        Outcome (binary for ``BinomialGLMM``, counts otherwise).
    groups : dask.dataframe.Series, dask.array.Array or str
        The grouping factor, or the name of its column in ``X``; aligned with ``X``
        partition by partition.
    sample_weight, offset : dask collection of shape (n_samples,), default=None
        Prior weights and a known term of the linear predictor, partitioned as ``X``.
    client : distributed.Client, default=None
        The cluster to run on; the current client (``distributed.get_client()``) when
        None.
    split_groups : {"raise", "shuffle"}, default="raise"
        What to do when a group's rows are in several partitions: raise a
        ``ValueError``, or shuffle the rows by group first (a full pass of data
        movement over the cluster).

    Returns
    -------
    est : the same estimator, fitted
        With the fitted attributes of an in-memory fit (``fixed_effects_``,
        ``random_effects_cov_``, ``ranef_``, ``loglik_``, ``converged_``,
        ``fit_record_``, ...). The training rows stay on the cluster: methods that need
        them (residuals, simulation, profiles, bootstrap) raise
        ``TrainingDataError``, as for a model unpickled without its data.

    Examples
    --------
    >>> import dask.dataframe as dd                        # doctest: +SKIP
    >>> from distributed import Client                    # doctest: +SKIP
    >>> from sklearn_glmm import PoissonGLMM              # doctest: +SKIP
    >>> from sklearn_glmm.dask import fit_partitioned     # doctest: +SKIP
    >>> client = Client()                                 # doctest: +SKIP
    >>> ddf = dd.read_parquet("visits/")                  # doctest: +SKIP
    >>> m = fit_partitioned(PoissonGLMM(), ddf[["age"]], ddf["visits"],
    ...                     groups=ddf["clinic"])         # doctest: +SKIP
    """
    fit_params = {k: v for k, v in fit_params.items() if v is not None}
    if fit_params:
        raise NotImplementedError(
            f"{sorted(fit_params)}: not available in a partitioned fit (a binary outcome for "
            "BinomialGLMM, counts otherwise)."
        )
    if split_groups not in _SPLIT_CHOICES:
        raise ValueError(f"split_groups must be one of {_SPLIT_CHOICES}, got {split_groups!r}.")
    est._check_params()
    family = _check_supported(est)
    client = _client(client)
    if groups is None and getattr(est, "group_columns", None) is not None:
        cols = [est.group_columns] if isinstance(est.group_columns, str) else est.group_columns
        if len(cols) != 1:
            raise NotImplementedError(
                f"a partitioned fit supports one grouping factor; group_columns={cols}."
            )
        groups = cols[0]
    y_name = getattr(y, "name", None)
    named_column = isinstance(groups, str)
    # (read before the arrays become frames of their own index)
    unshufflable = _unshufflable(X, y, groups, sample_weight, offset)
    X, y, groups, sample_weight, offset, gname, columns = _collections(
        X, y, groups, sample_weight, offset
    )
    t_load = time.perf_counter()
    parts, actors, info = _load(client, X, y, groups, sample_weight, offset, gname)
    if info["split"]:
        if split_groups == "raise":
            _release(client, parts)
            raise ValueError(
                f"{info['split']} group(s) of {gname!r} have rows in more than one partition "
                f"(e.g. {info['split_examples']}); each group's rows must be in one "
                "partition. Repartition by group (ddf.shuffle(on=...), or set_index on the "
                "grouping column), or pass split_groups='shuffle'."
            )
        _release(client, parts)
        if unshufflable:
            raise ValueError(
                f"{info['split']} group(s) of {gname!r} have rows in more than one partition, "
                "and split_groups='shuffle' moves rows by their index: it needs X as a Dask "
                "DataFrame and y, groups, sample_weight and offset as Dask Series of the same "
                f"frame (got {', '.join(unshufflable)} as another type). Pass columns of one "
                "Dask DataFrame (ddf[cols], ddf['y'], ddf['id']), or shuffle it yourself "
                "(ddf.shuffle(on='id'))."
            )
        X, y, groups, sample_weight, offset = _shuffle(X, y, groups, sample_weight, offset)
        parts, actors, info = _load(client, X, y, groups, sample_weight, offset, gname)
    try:
        _input_warnings(
            info["descs"], [str(c) for c in X.columns], gname, info.get("fresh_index", False)
        )
        est._y_name = "y" if y_name is None else str(y_name)
        _feature_attributes(est, [str(c) for c in X.columns], columns, gname, named_column)
        # (as an in-memory fit notes it: the power tools ask for the offset again)
        est._fit_offset = any(
            r is not None and (r[0] != 0.0 or r[1] != 0.0)
            for r in (d.get("off_range") for d in info["descs"])
        )
        return _fit(est, family, X, gname, actors, info, t_load)
    finally:
        _release(client, parts)


def _input_warnings(descs, columns, gname, fresh=False) -> None:
    """The in-memory fit's warnings on its inputs, from the partitions' descriptions: an
    offset that looks like an exposure without its logarithm (values spanning more than
    ``OFFSET_SPAN``, or whole numbers of at least 1), a column of X that holds the
    grouping factor's labels on every partition, a partition whose ``y``, ``groups``,
    ``sample_weight`` or ``offset`` holds ``X``'s row labels in another order (compared
    partition by partition: the pieces are paired by position; not where X's index is a
    fresh ``0..n-1``, ``fresh``, as in memory)."""
    order = next((m for d in descs for m in d.get("order_warnings", ())), None)
    if order is not None and not fresh:
        warn(
            f"in a partition: {order} (Columns of X's own Dask DataFrame, ddf['y'], are "
            "partitioned and ordered as X.)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    given = [d for d in descs if d.get("off_range") is not None]
    if given:
        ranges = [d["off_range"] for d in given]
        check_offset_scale(
            np.array([min(r[0] for r in ranges), max(r[1] for r in ranges)]),
            whole=all(d["off_whole"] for d in given),
        )
    flags = [d.get("label_columns") for d in descs if d["n"]]
    if flags and all(f is not None for f in flags):
        for column, same in zip(columns, np.logical_and.reduce([np.asarray(f) for f in flags])):
            if same:
                warn_labels_column(column, gname)


def _check_supported(est):
    if getattr(est, "keep_data", False):
        warn(
            "keep_data=True has no effect on a partitioned fit: its training rows stay on "
            "the cluster's workers, and the methods that need them raise (fit in memory "
            "for them).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if est._family_name not in ("binomial", "poisson", "negbin"):
        # (an ordinal model's family needs the classes of y, which fit has not read yet)
        raise NotImplementedError(
            f"a partitioned fit supports BinomialGLMM, PoissonGLMM and NegBinGLMM, not "
            f"{type(est).__name__}. Fit it in memory with est.fit(X.compute(), y.compute(), "
            "groups=...)."
        )
    family = est._family()
    unsupported = [
        name
        for name in ("zero_inflation", "dispersion", "hurdle", "truncated", "random_only_columns")
        if getattr(est, name, None) not in (None, False)
    ]
    if (
        unsupported
        or not family.log_concave
        or family.name not in ("binomial", "poisson", "negbin")
    ):
        raise NotImplementedError(
            f"a partitioned fit supports BinomialGLMM (binary outcome), PoissonGLMM and "
            f"NegBinGLMM without zero inflation, hurdle, truncation, a dispersion model or "
            f"random_only_columns; "
            f"got {type(est).__name__} ({family.sentence_name()}"
            + (f", {', '.join(unsupported)}" if unsupported else "")
            + "). Fit it in memory with est.fit(X.compute(), y.compute(), groups=...)."
        )
    return family


def _fit(est, family, X, gname, actors, info, t_load):
    t_begin = time.perf_counter()
    descs, levels = info["descs"], info["levels"]
    n = int(sum(d["n"] for d in descs))
    _check_finite(descs, n)
    names = [str(c) for c in X.columns]
    moms, X_syn, scaling = _design_scaling(est, family, descs, actors, names, n)
    f, factors, pending, level_maps, spreads, raw = _factor_built(
        est, family, gname, levels, names, X_syn, scaling, actors, info
    )
    t_built = time.perf_counter()

    def call(method, *args):
        return _gather([a.call(method, *args) for a in actors])

    n_beta = len(scaling["kept"]) + int(est.fit_intercept)
    # (the layout has no rows: the restarts of a level predictor's slope read the
    # spread of the partitions' Z)
    spread = pooled_spread([s[1] for s in spreads])
    shell = _layout(n_beta, family, f, len(levels), spread, has_level_slopes(raw))
    obj = PartitionedObjective(shell, est.n_agq, call, level_maps)
    obj.glm_max_iter = est.max_iter
    bounds = parameter_bounds(shell)
    with single_threaded_blas():
        x0 = _partitioned_start(obj, actors, n, bounds, est)
        t_start = time.perf_counter()
        x, record = fit_checked(obj, x0, bounds, est.max_iter, est.tol)
    t_opt = time.perf_counter()
    # where the time went: loading and preprocessing, the start, the optimisation and
    # checks (their evaluations: one map-reduce each)
    record.partitioned = dict(
        n_partitions=len(actors),
        load_seconds=t_begin - t_load,
        preprocess_seconds=t_built - t_begin,
        start_seconds=t_start - t_built,
        optimise_seconds=t_opt - t_start,
        evaluations=obj.n_evals,
        map_reduce_calls=obj.map_reduce_calls,
        map_reduce_seconds=obj.map_reduce_seconds,
    )
    obj.evaluate(x)
    obj.collect_modes()
    p, T = shell.n_beta, shell.n_theta
    sums = _gather([a.summaries(x[:p], x[p + T :]) for a in actors])

    def gather_rows():
        return _rows_data(_gather([a.rows(1, None) for a in actors]), family, shell, False)

    _pres.set_attributes(
        est, obj, x, record, shell, factors, bounds, pending, sums, moms, gather_rows
    )
    return est


def _design_scaling(est, family, descs, actors, names, n):
    """``(moms, X_syn, scaling)``: the partitions' moments of the columns and the
    outcome, the summary rows that have the data's means and correlations, and the
    in-memory fit's internal scaling of the design made from them."""
    pos = _outcome(est, family, descs)
    means = np.sum([d["x_sum"] for d in descs], axis=0) / max(n, 1)
    moms = _gather([a.moments(means, pos, family.has_trials) for a in actors])
    _check_counts(family, moms)
    if not sum(m["n_used"] for m in moms):
        raise ValueError("sample_weight is zero for every row; at least one row needs weight > 0.")
    curvature = family.mean_curvature(
        np.array([sum(m["wy"] for m in moms) / max(sum(m["wsum"] for m in moms), 1e-300)]),
        np.array([sum(m["wt"] for m in moms) / max(sum(m["wsum"] for m in moms), 1e-300)]),
        np.array([sum(m["wsum"] for m in moms)]),
    )
    X_syn, shift = _summary_rows(moms, n, est.fit_intercept)
    # the summary rows have the data's correlations: the same decorrelation as in memory
    _, scaling = scale_design(X_syn, names, est.fit_intercept, curvature, decorrelate=True)
    if est.fit_intercept:
        # the rows are centred (their means 0): the centring is the data's means
        scaling["means"] = np.asarray(means, dtype=float) + shift
    return moms, X_syn, scaling


def _factor_built(est, family, gname, levels, names, X_syn, scaling, actors, info):
    """The grouping factor from the levels of every partition, each partition's internal
    rows built, and the in-memory design's checks of the slopes on the partitions'
    pooled spreads: ``(factor, factors, pending, level_maps, spreads, raw spread)``,
    ``pending`` how the design was made, as the in-memory fit's ``_model_data`` leaves
    it."""
    terms = "1" if est.random_effects is None else est.random_effects
    for text in terms.values() if isinstance(terms, dict) else [terms]:
        # before the factor is built: a structure's levels would be read from X
        structure = parse_term(text).structure if isinstance(text, str) else None
        if structure is not None:
            raise NotImplementedError(
                f"the covariance structure {structure!r} is not available in a partitioned "
                "fit; use an unstructured or diagonal term."
            )
    factors = build_factors(pd.Series(levels, name=gname), terms, names, len(levels), None)
    f = factors[0]
    check_distinct_labels(f.name, f.levels)
    check_quadrature_structure(est.n_agq, [f.q])
    # how the design was made, as the in-memory fit's _model_data leaves it
    pending = dict(
        scaling=scaling,
        # the slopes' centring reads the rows' means: the data's
        z_maps=(z_transform(f, X_syn + scaling["means"] if est.fit_intercept else X_syn),),
        factor_order=[gname],
        zi_design=None,
        disp_design=None,
        block_designs=None,
    )
    level_maps = [levels.get_indexer(d["levels"]) for d in info["descs"]]
    worker_factor = _pres.light_factor(f)
    spec = dict(scaling=scaling, factor=worker_factor, T=pending["z_maps"][0], family=family)
    spec["n_agq"] = est.n_agq
    _gather(
        [
            a.build(dict(spec, row_offsets=off, level_map=lm))
            for a, lm, off in zip(actors, level_maps, info["row_offsets"])
        ]
    )
    # the in-memory design's checks of the slopes, on the partitions' pooled spreads
    spreads = _gather([a.level_spreads() for a in actors])
    raw = [s[0] for s in spreads]
    raw = None if raw[0] is None else pooled_spread(raw)
    check_slope_variables(f, raw)
    return f, factors, pending, level_maps, spreads, raw


def _check_finite(descs, n):
    if n < 2:
        raise ValueError(f"a model cannot be fitted to {n} row(s).")
    for key, what in (
        ("x_bad", "X has {} non-finite value(s) (NaN or inf); impute them or drop those rows."),
        ("y_bad", "y has {} missing or non-finite value(s) (NaN, None or inf); drop those rows."),
        ("w_bad", "sample_weight has {} negative or non-finite value(s); weights must be >= 0."),
        ("off_bad", "offset has {} non-finite value(s)."),
    ):
        bad = sum(d[key] for d in descs)
        if bad:
            raise ValueError("Input " + what.format(bad))


def _feature_attributes(est, names, columns, gname, named_column) -> None:
    """What ``_validate_X`` records at an in-memory fit: the frame's column names and
    width (its grouping column included when ``groups`` named it), none for an array."""
    if columns is None:
        est.__dict__.pop("feature_names_in_", None)
        est.n_features_in_ = len(names)
        est._fixed_names_in = None
    else:
        est.feature_names_in_ = np.asarray(columns, dtype=object)
        est.n_features_in_ = len(columns)
        est._fixed_names_in = names if len(columns) != len(names) else None
    est._fixed_names = names if columns is not None else [f"x{k}" for k in range(len(names))]
    own = getattr(est, "group_columns", None) is not None
    est._group_columns_fit = [gname] if named_column and not own else None


def _outcome(est, family, descs):
    """The positive class of a binary outcome (``est.classes_`` set as ``fit`` does)."""
    if not family.has_trials:
        kinds = {d["y_kind"] for d in descs}
        if not kinds <= set("iufb"):
            raise ValueError(f"a count outcome must be numeric; y has dtype kind(s) {kinds}.")
        return None
    vals = [d["y_values"] for d in descs]
    if any(v is None for v in vals):
        raise ValueError(
            "BinomialGLMM in a partitioned fit needs a binary outcome (two classes); y has "
            "more than two values (successes out of trials are not supported here)."
        )
    classes = np.unique(np.concatenate(vals))
    est._prepare_y(classes, len(classes))
    return est.classes_[est._pos_index]


def _check_counts(family, moms):
    if family.has_trials:
        return
    neg = sum(m["y_neg"] for m in moms)
    if neg:
        raise ValueError(f"y has {neg} negative value(s); count models need counts >= 0.")
    if sum(m["y_nonint"] for m in moms):
        warn(
            "y has non-integer values; the count log-likelihood is evaluated as if they were "
            "counts (quasi-likelihood). Round y if it holds counts.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _summary_rows(moms, n, fit_intercept) -> tuple[np.ndarray, np.ndarray]:
    """A few rows with the data's column standard deviations, root mean squares and
    Gram matrix geometry: what the internal scaling and its aliased-column test read;
    and the correction to the means the partitions were centred at.

    Each partition sends ``R`` of its columns centred at its own means (``d`` away from
    the global means it was sent, over ``m`` rows); stacked with the rows
    ``sqrt(m) (d - dbar)``, their QR gives ``R`` of the columns centred at the data's
    means (``means + dbar``: Chan's pooling of partial moments). The rows
    ``+- sqrt(p / n) R`` have the data's covariance and means 0: the caller sets the
    centring. Added back onto these rows, or centred at means summed from the raw
    values, a column with a large constant part (1e9 + x) lost its variation to
    rounding and escaped the aliased-column test. Without an intercept the uncentred
    ``R`` gives the data's second moments.
    """
    key = "R" if fit_intercept else "R_raw"
    p = moms[0][key].shape[1] if moms else 0
    if p == 0:
        return np.zeros((2, 0)), np.zeros(0)
    shift = np.zeros(p)
    blocks = [m[key] for m in moms]
    if fit_intercept:
        rows = np.array([m["rows"] for m in moms], dtype=float)
        d = np.array([m["mean_shift"] for m in moms])
        shift = rows @ d / rows.sum()
        blocks.append(np.sqrt(rows)[:, None] * (d - shift))
    R = np.linalg.qr(np.vstack(blocks), mode="r")
    if R.shape[0] < p:
        R = np.vstack([R, np.zeros((p - R.shape[0], p))])
    A = np.sqrt(p / n) * R
    return np.vstack([A, -A]), shift
