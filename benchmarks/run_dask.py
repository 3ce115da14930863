"""A random-intercept model fitted from a Dask DataFrame partitioned by group, against
the same model fitted in memory (``sklearn_glmm.dask``).

Data are generated with fixed seeds, partition by partition (each partition holds
whole groups of ~100 rows), on the workers themselves; the in-memory fit gets the
same rows, concatenated in partition order. Printed for each size: both fits' wall
time, their number of objective evaluations, the time per evaluation (value and
gradient: one map-reduce for the partitioned fit, one pass over the rows in memory),
their ratio, where the partitioned fit spent its time, and the largest relative
difference of the estimates.

    python benchmarks/run_dask.py --rows 2000000 5000000 --workers 4 --family poisson

Peak memory of the client is printed too (the workers' memory is on the cluster).
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
import warnings

import numpy as np
import pandas as pd

ROWS_PER_GROUP = 100


def partition(k: int, rows: int, family: str, slope: bool = False) -> pd.DataFrame:
    """Partition ``k``: ``rows`` rows of whole groups, seeded by ``k``."""
    rng = np.random.default_rng(1000 + k)
    n_groups = rows // ROWS_PER_GROUP
    g = np.repeat(np.arange(n_groups), ROWS_PER_GROUP) + k * n_groups
    x1 = rng.normal(size=len(g))
    x2 = rng.binomial(1, 0.4, size=len(g)).astype(float)
    b = rng.normal(0.0, 0.7, n_groups)[g - k * n_groups]
    eta = -0.5 + 0.4 * x1 - 0.3 * x2 + b
    if slope:  # a correlated random slope of x1
        b1 = 0.3 * rng.normal(size=n_groups) + 0.2 * (b / 0.7)[::ROWS_PER_GROUP]
        eta += b1[g - k * n_groups] * x1
    if family == "binomial":
        y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(eta))
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y, "id": g})


def _peak_rss_mb() -> float:
    """This process's peak resident memory (run on each worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _estimator(family, slope):
    from sklearn_glmm import BinomialGLMM, PoissonGLMM

    re = "1 + x1" if slope else None
    return (
        BinomialGLMM(random_effects=re) if family == "binomial" else PoissonGLMM(random_effects=re)
    )


def _in_memory(n_rows, n_parts, family, slope):
    from sklearn_glmm._engine import objective

    df = pd.concat([partition(k, n_rows // n_parts, family, slope) for k in range(n_parts)])
    n_total = len(df)
    timing = {"seconds": 0.0, "evals": 0}
    evaluate, gradient = objective.Objective.evaluate, objective.Objective.gradient

    # the time of the evaluations on every row (the first stage runs on a subset)
    def timed_evaluate(self, params):
        t0 = time.perf_counter()
        out = evaluate(self, params)
        if len(self.data.y) == n_total:
            timing["seconds"] += time.perf_counter() - t0
        return out

    def timed_gradient(self, params):
        t0 = time.perf_counter()
        out = gradient(self, params)
        if len(self.data.y) == n_total:
            timing["seconds"] += time.perf_counter() - t0
        return out

    objective.Objective.evaluate, objective.Objective.gradient = timed_evaluate, timed_gradient
    try:
        t0 = time.perf_counter()
        m = _estimator(family, slope).fit(df[["x1", "x2"]], df["y"], groups=df["id"])
        seconds = time.perf_counter() - t0
    finally:
        objective.Objective.evaluate, objective.Objective.gradient = evaluate, gradient
    del df
    return m, seconds, timing


def _partitioned(n_rows, n_parts, family, slope, client):
    import dask.dataframe as dd

    from sklearn_glmm.dask import fit_partitioned

    per = n_rows // n_parts
    meta = partition(0, ROWS_PER_GROUP, family).iloc[:0]
    ddf = dd.from_map(partition, range(n_parts), rows=per, family=family, slope=slope, meta=meta)
    t0 = time.perf_counter()
    est = _estimator(family, slope)
    m = fit_partitioned(est, ddf[["x1", "x2"]], ddf["y"], ddf["id"], client=client)
    seconds = time.perf_counter() - t0
    peaks = client.run(_peak_rss_mb)
    return m, seconds, peaks


class _Echo:
    """A stand-in partition: returns a gradient-sized array at once."""

    def value_and_grad(self, params):
        return 0.0, params


def _echo(state, params):
    return 0.0, params


def round_trips(client, n_calls: int = 200) -> dict:
    """Milliseconds per evaluation of the cluster's machinery alone (no rows): an actor
    per worker called directly, against a task per worker on a persisted object."""
    workers = list(client.scheduler_info()["workers"])
    actors = [client.submit(_Echo, actor=True, workers=[w], pure=False) for w in workers]
    handles = [a.result() for a in actors]
    states = [client.submit(dict, workers=[w], pure=False) for w in workers]
    params = np.zeros(6)
    out = {}
    t0 = time.perf_counter()
    for _ in range(n_calls):
        [f.result() for f in [h.value_and_grad(params) for h in handles]]
    out["actors"] = (time.perf_counter() - t0) / n_calls * 1e3
    t0 = time.perf_counter()
    for k in range(n_calls):
        futs = [
            client.submit(_echo, s, params + k, workers=[w], pure=False)
            for s, w in zip(states, workers)
        ]
        client.gather(futs)
    out["tasks"] = (time.perf_counter() - t0) / n_calls * 1e3
    for f in actors + states:
        f.release()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[2_000_000])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--partitions-per-worker", type=int, default=2)
    ap.add_argument("--family", choices=["poisson", "binomial"], default="poisson")
    ap.add_argument("--slope", action="store_true", help="random intercept and slope of x1")
    ap.add_argument("--threads", action="store_true", help="workers as threads (processes=False)")
    ap.add_argument("--skip-memory", action="store_true", help="no in-memory fit")
    args = ap.parse_args(argv)
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=not args.threads,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # workers' heartbeats failing at shutdown
        )
    n_parts = args.workers * args.partitions_per_worker
    with cluster, Client(cluster) as client:
        print(
            f"{args.family} random {'intercept and slope' if args.slope else 'intercept'}, "
            f"{ROWS_PER_GROUP} rows per group; "
            f"{args.workers} workers ({'threads' if args.threads else 'processes'}), "
            f"{n_parts} partitions"
        )
        trips = round_trips(client)
        print(
            "round trip of one evaluation without rows: actors {actors:.2f} ms, "
            "tasks on persisted objects {tasks:.2f} ms".format(**trips)
        )
        for n in args.rows:
            md, td, peaks = _partitioned(n, n_parts, args.family, args.slope, client)
            rec = md.fit_record_
            part = rec.partitioned
            # per point evaluated (its value, and its gradient when the optimiser asks)
            per_eval_d = part["map_reduce_seconds"] / max(part["evaluations"], 1)
            print(
                f"\n{n:,} rows, {md.random_effects_cov_['id'].shape} | partitioned: "
                f"{td:.1f} s total, {rec.n_evaluations} evaluations, "
                f"{per_eval_d * 1e3:.0f} ms per evaluation"
            )
            print(
                "  load {load_seconds:.1f} s, preprocess {preprocess_seconds:.1f} s, start "
                "{start_seconds:.1f} s, optimise + checks {optimise_seconds:.1f} s "
                "({map_reduce_calls} map-reduce calls, {map_reduce_seconds:.1f} s)".format(**part)
            )
            print(
                f"  workers' peak RSS (since they started) {sum(peaks.values()):.0f} MB in all, "
                f"input arrays {n * 4 * 8 / 2**20:.0f} MB"
            )
            if args.skip_memory:
                continue
            mm, tm, timing = _in_memory(n, n_parts, args.family, args.slope)
            per_eval_m = timing["seconds"] / max(mm.fit_record_.n_evaluations, 1)
            rel = np.max(
                np.abs(md.fit_result_.params - mm.fit_result_.params)
                / np.maximum(np.abs(mm.fit_result_.params), 1e-12)
            )
            print(
                f"  in memory: {tm:.1f} s total, {mm.fit_record_.n_evaluations} evaluations, "
                f"{per_eval_m * 1e3:.0f} ms per evaluation ({timing['seconds']:.1f} s in "
                f"evaluations on every row)"
            )
            print(
                f"  ratio per evaluation (partitioned / in memory): {per_eval_d / per_eval_m:.2f}; "
                f"max relative difference of the estimates {rel:.1e}; "
                f"loglik {md.loglik_:.4f} vs {mm.loglik_:.4f}"
            )
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  client peak RSS so far {peak:.0f} MB")


if __name__ == "__main__":
    main()
