"""The Dask collections of a partitioned fit (:func:`sklearn_glmm.dask.fit_partitioned`)
read and loaded: their checks, the shuffle that puts each group in one partition, and the
rows of every partition in one actor per worker, with their description.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._group_columns import (
    _missing_labels_message,
    factor_names,
)
from ._optional import require
from ._partitioned_worker import Partition, bundle


def _fresh_index(descs, order) -> bool:
    """Whether X's partitions' indexes, in partition order, make ``0, 1, ..., n - 1``
    (a frame rebuilt from an array: its labels say nothing about which row is which,
    and the in-memory fit does not compare them either)."""
    ranges = {}
    for d, parts in zip(descs, order):
        for k, r in zip(parts, d.get("index_ranges", [None] * len(parts))):
            ranges[k] = r
    nxt = 0
    for k in sorted(ranges):
        r = ranges[k]
        if r is None or r[0] != nxt:
            return False
        nxt = r[1]
    return True


def _client(client):
    if client is not None:
        return client
    distributed = require(
        "distributed",
        "a partitioned fit runs on a Dask cluster: install the extra "
        "(pip install 'sklearn_glmm[dask]').",
    )
    try:
        return distributed.get_client()
    except ValueError as exc:
        raise ValueError(
            "no Dask client: start one first (from distributed import Client, LocalCluster; "
            "client = Client(LocalCluster())) or pass client=..."
        ) from exc


def _is_dask(obj) -> bool:
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr")


def _collections(X, y, groups, sample_weight, offset):
    """Dask DataFrames/Series for every argument, and the factor's name."""
    import dask.array as da
    import dask.dataframe as dd

    if not _is_dask(X):
        raise TypeError(
            f"X must be a Dask DataFrame or Dask array, got {type(X).__name__}; for data in "
            "memory use est.fit."
        )
    # how the in-memory fit would see X's columns: names (a frame, with its grouping
    # column when groups names one) or none (an array)
    columns = None
    if isinstance(X, da.Array):
        if X.ndim == 1:
            X = X[:, None]
        X = dd.from_dask_array(X.rechunk({1: -1}), columns=[f"x{k}" for k in range(X.shape[1])])
    else:
        columns = [str(c) for c in X.columns]
    if isinstance(groups, str):
        if groups not in X.columns:
            raise ValueError(f"groups={groups!r} names no column of X; columns: {list(X.columns)}.")
        gname = groups
        groups, X = X[groups], X.drop(columns=[groups])
    elif groups is None:
        raise ValueError("a partitioned fit needs groups: a Dask Series or a column name of X.")
    else:
        if isinstance(groups, dd.DataFrame):
            if len(groups.columns) != 1:
                raise NotImplementedError(
                    "a partitioned fit supports one grouping factor; crossed or nested "
                    f"factors ({list(groups.columns)}) need the in-memory fit."
                )
            groups = groups[groups.columns[0]]
        gname = None
    out = []
    for name, v in (
        ("y", y),
        ("groups", groups),
        ("sample_weight", sample_weight),
        ("offset", offset),
    ):
        if v is None:
            out.append(None)
            continue
        if not _is_dask(v):
            raise TypeError(
                f"{name} must be a Dask collection partitioned as X, got {type(v).__name__}."
            )
        if isinstance(v, da.Array):
            if v.ndim == 2 and v.shape[1] == 1:
                v = v[:, 0]
            v = dd.from_dask_array(v)
        if v.npartitions != X.npartitions:
            raise ValueError(
                f"{name} has {v.npartitions} partitions but X has {X.npartitions}; they must "
                "be partitioned alike (columns of one Dask DataFrame are)."
            )
        out.append(v)
    y, groups, sample_weight, offset = out
    if gname is None:
        gname = factor_names(pd.Series([], name=getattr(groups, "name", None)))[0]
    return X, y, groups, sample_weight, offset, gname, columns


def _unshufflable(X, y, groups, sample_weight, offset) -> list:
    """The inputs that ``split_groups='shuffle'`` cannot move: it moves rows by their
    index, and a Dask array becomes a frame of a fresh index, which does not line up
    with the others'."""
    import dask.dataframe as dd

    given = [("y", y), ("groups", groups), ("sample_weight", sample_weight), ("offset", offset)]
    frames = (str, dd.Series, dd.DataFrame)
    out = [nm for nm, v in given if v is not None and not isinstance(v, frames)]
    return (["X"] if not isinstance(X, dd.DataFrame) else []) + out


def _shuffle(X, y, groups, sample_weight, offset):
    """The collections shuffled so that each group's rows are in one partition."""
    import dask.dataframe as dd

    names = ["__y", "__g", "__w", "__o"]
    extra = [v for v in (y, groups, sample_weight, offset)]
    cols = [v.rename(nm) for v, nm in zip(extra, names) if v is not None]
    frame = dd.concat([X, *cols], axis=1).shuffle(on="__g")
    out = [frame[list(X.columns)]]
    for v, nm in zip(extra, names):
        out.append(None if v is None else frame[nm])
    return tuple(out)


def _load(client, X, y, groups, sample_weight, offset, gname):
    """The rows of every partition in one actor per worker, where they were computed;
    their description.

    One actor per worker (its partitions concatenated in partition order) keeps a
    worker's evaluations in one thread and one round trip.
    """
    import dask
    from distributed import wait

    cols = [
        c.to_delayed() if c is not None else None for c in (X, y, groups, sample_weight, offset)
    ]
    n_parts = len(cols[0])
    per = [c if c is not None else [None] * n_parts for c in cols]
    futures = client.compute([dask.delayed(bundle)(*args) for args in zip(*per)])
    wait(futures)
    who = client.who_has(futures)
    by_worker: dict = {}
    for k, f in enumerate(futures):
        holders = who.get(f.key) or ["any"]
        by_worker.setdefault(holders[0], []).append(k)
    actor_futures, order = [], []
    for addr, ks in by_worker.items():
        where = {} if addr == "any" else {"workers": [addr]}
        pieces = [futures[k] for k in ks]
        actor_futures.append(client.submit(Partition, pieces, actor=True, pure=False, **where))
        order.append(ks)
    actors = [f.result() for f in actor_futures]
    # the actors hold the rows now: the partitions' own copies can go
    _release(client, futures)
    descs = _gather([a.describe(gname) for a in actors])
    labels_bad = sum(d["labels_bad"] for d in descs)
    if labels_bad:  # with the data's number of rows, not a worker's
        raise ValueError(_missing_labels_message(gname, labels_bad, sum(d["n"] for d in descs)))
    info = _combine(descs, order)
    info["fresh_index"] = _fresh_index(descs, order)
    # a worker whose partitions are all empty takes no part in the fit
    keep = [k for k, d in enumerate(descs) if d["n"] > 0]
    actors = [actors[k] for k in keep]
    info["descs"] = [descs[k] for k in keep]
    info["row_offsets"] = [info["row_offsets"][k] for k in keep]
    if not actors:
        raise ValueError("the collections have no rows.")
    if info["split"]:
        info["split_examples"] = _split_examples(actors, info["descs"])
    return actor_futures, actors, info


def _gather(actor_futures):
    return [f.result() for f in actor_futures]


def _release(client, futures) -> None:
    for f in futures:
        f.release()


def _combine(descs, order) -> dict:
    """The model's levels (sorted, as the in-memory fit orders them), groups split over
    partitions, and where each partition's rows start in the whole data."""
    levels = descs[0]["levels"]
    for d in descs[1:]:
        levels = levels.union(d["levels"], sort=False)
    levels = levels.sort_values() if len(levels) else levels
    n_split = sum(sum(d["piece_levels"]) for d in descs) - len(levels)
    n_rows = np.zeros(sum(len(ks) for ks in order), dtype=np.int64)
    for d, ks in zip(descs, order):
        n_rows[ks] = d["piece_rows"]
    starts = np.concatenate([[0], np.cumsum(n_rows)[:-1]])
    row_offsets = [starts[ks] for ks in order]
    return dict(descs=descs, levels=levels, split=n_split, row_offsets=row_offsets)


def _split_examples(actors, descs) -> list:
    """A few labels of groups split over partitions (for the error message)."""
    out, known = [], pd.Index([])
    for a, d in zip(actors, descs):
        out += [str(v) for v in a.split_labels(known).result()]
        known = known.union(d["levels"])
        if len(out) >= 5:
            break
    return out[:5]
