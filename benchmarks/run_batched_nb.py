"""Parametric bootstrap of the NB2 reference models: refits one by one, batched, and batched
with the compiled kernel (``set_config(compiled=True)``, numba).

Usage (from the repository root)::

    python benchmarks/run_batched_nb.py                     # nb_ri and nb_rs, 1,000 replicates
    python benchmarks/run_batched_nb.py --cases nb_rs --n-boot 300 --rounds 2

Each setting refits the same ``--n-boot`` replicates (``bootstrap_params`` with one seed,
one process, greenlets where installed); the settings alternate for ``--rounds`` rounds
after a warm-up of 8 replicates each, so that they see the same load of the machine. One
by one is the same code with batching switched off (``_simulate.can_batch`` returning
False: every replicate refitted by its own objective, as before NB2 was batched). Prints
each setting's wall-clock seconds per round, the replicates kept, and the largest
difference of the kept replicates' parameters from the one-by-one refits.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from reference import case_data, make_estimator  # noqa: E402

from sklearn_glmm import _simulate, config_context  # noqa: E402
from sklearn_glmm._simulate import bootstrap_params  # noqa: E402


def _boot(est, n_boot, setting):
    saved = _simulate.can_batch
    if setting == "one by one":
        _simulate.can_batch = lambda data, n_agq: False
    try:
        with config_context(compiled=setting == "compiled"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            reps, ok = bootstrap_params(est, n_boot, random_state=0)
            return time.perf_counter() - t0, reps, ok
    finally:
        _simulate.can_batch = saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="nb_ri,nb_rs")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    settings = ["one by one", "batched"]
    if importlib.util.find_spec("numba") is not None:
        settings.append("compiled")
    for case in args.cases.split(","):
        spec, X, y, groups, kw = case_data(case)
        est = make_estimator(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y, groups=groups, **kw)
        for s in settings:
            _boot(est, 8, s)  # warm-up (numba loads its kernel here)
        times = {s: [] for s in settings}
        out = {}
        for _ in range(args.rounds):
            for s in settings:
                dt, reps, ok = _boot(est, args.n_boot, s)
                times[s].append(dt)
                out[s] = (reps, ok)
        ref, ok_ref = out["one by one"]
        print(f"{case} ({len(y)} rows), {args.n_boot} replicates:")
        for s in settings:
            reps, ok = out[s]
            both = ok & ok_ref
            diff = np.max(np.abs(reps[both] - ref[both]) / (1 + np.abs(ref[both])))
            secs = ", ".join(f"{t:.2f}" for t in times[s])
            print(f"  {s:11s} {secs} s  kept {int(ok.sum())}  max rel. diff {diff:.1e}")


if __name__ == "__main__":
    main()
