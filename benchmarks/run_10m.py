"""Ten million rows on one machine: time, evaluations and peak memory of one fit.

Usage (from the repository root)::

    python benchmarks/run_10m.py                         # both models at 10M rows
    python benchmarks/run_10m.py --rows 2000000 --models pois_ri
    python benchmarks/run_10m.py --json out.json

Models (data generated in memory with fixed seeds, as numpy arrays):

``pois_ri``
    Poisson random intercept, 100,000 groups, two predictors (one continuous, one 0/1).
``bin_rs``
    Binary outcome, correlated random intercept + slope on ``time`` (10 waves per
    group, so rows / 10 groups), one more continuous predictor.

Each fit runs in a fresh subprocess. The input arrays are ``X`` (float64, n x 2),
``y`` (float64) and ``groups`` (int64): 32 bytes a row. Peak memory is the process's
resident high-water mark during the fit (``VmHWM`` after resetting it with
``/proc/self/clear_refs`` once the data are generated) minus the resident size at
that moment, so it is what the fit adds on top of the data; it is reported in MB and
as a multiple of the input arrays' bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from memory import status_kb  # benchmarks/memory.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the library of this checkout

MODELS = ("pois_ri", "bin_rs")


def make_data(model: str, n: int):
    """``X, y, groups`` of one model (fixed seed)."""
    rng = np.random.default_rng(20261201)
    if model == "pois_ri":
        n_groups = 100_000
        groups = rng.integers(0, n_groups, n)
        X = np.empty((n, 2))
        X[:, 0] = rng.standard_normal(n)
        X[:, 1] = rng.random(n) < 0.4
        b = 0.5 * rng.standard_normal(n_groups)
        eta = 0.3 + 0.25 * X[:, 0] - 0.2 * X[:, 1] + b[groups]
        y = rng.poisson(np.exp(eta)).astype(float)
        return X, y, groups
    if model == "bin_rs":
        waves = 10
        n_groups = n // waves
        groups = np.repeat(np.arange(n_groups), waves)
        X = np.empty((n, 2))
        X[:, 0] = np.tile(np.arange(waves) - (waves - 1) / 2, n_groups)
        X[:, 1] = rng.standard_normal(n)
        cov = np.array([[1.0, 0.1], [0.1, 0.09]])
        b = rng.standard_normal((n_groups, 2)) @ np.linalg.cholesky(cov).T
        eta = -0.4 + 0.15 * X[:, 0] + 0.5 * X[:, 1] + b[groups, 0] + b[groups, 1] * X[:, 0]
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
        return X, y, groups
    raise ValueError(model)


def make_estimator(model: str):
    from sklearn_glmm import BinomialGLMM, PoissonGLMM

    if model == "pois_ri":
        return PoissonGLMM()
    return BinomialGLMM(random_effects="1 + x0")


def one_fit(model: str, n: int) -> dict:
    """Generate, fit once and measure (run in a fresh process)."""
    X, y, groups = make_data(model, n)
    est = make_estimator(model)
    input_bytes = X.nbytes + y.nbytes + groups.nbytes
    import sklearn_glmm  # noqa: F401  (imports before the baseline)

    before = status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, groups=groups)
    seconds = time.perf_counter() - t0
    peak = status_kb("VmHWM")
    after = status_kb("VmRSS")
    rec = est.fit_record_
    extra = (peak - before) * 1024
    return {
        "model": model,
        "rows": n,
        "seconds": seconds,
        "evaluations": int(getattr(rec, "n_evaluations", -1) or -1),
        "loglik": float(est.loglik_),
        "converged": bool(est.converged_),
        "coef": np.r_[est.intercept_, est.coef_].tolist(),
        "input_mb": input_bytes / 2**20,
        "peak_extra_mb": extra / 2**20,
        "peak_extra_x": extra / input_bytes,
        "kept_after_fit_mb": (after - before) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_fit(args.one, args.rows)))
        return
    results = []
    for model in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", model, "--rows", str(args.rows)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(res)
        print(
            f"{model:8s} {res['rows']:>11,} rows  {res['seconds']:7.1f} s  "
            f"{res['evaluations']:3d} evals  input {res['input_mb']:6.0f} MB  "
            f"peak +{res['peak_extra_mb']:6.0f} MB = {res['peak_extra_x']:4.1f}x input  "
            f"kept {res['kept_after_fit_mb']:5.0f} MB  loglik {res['loglik']:.4f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
