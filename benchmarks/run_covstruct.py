"""Structured covariances with many time points per person: ours vs glmmTMB, same rows.

Simulates people x days with a latent AR(1) person-by-day effect (SD 0.6, rho 0.7),
writes the rows to a CSV, fits ``ar1(day)`` / ``cs(day)`` / ``ou(day)`` Poisson and
binary models here (median of ``--n`` fits) and the same models with glmmTMB through
``time_covstruct.R`` (median of its ``--n`` fits), and prints the times, the ratio and
the log-likelihoods of both.

    python benchmarks/run_covstruct.py                     # 200 people x 20 days
    python benchmarks/run_covstruct.py --people 500 --days 30 --n 3
    python benchmarks/run_covstruct.py --no-r
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sklearn_glmm import BinomialGLMM, PoissonGLMM

HERE = Path(__file__).parent
MODELS = {
    "pois_ar1": (PoissonGLMM, "count", "ar1(day)"),
    "bin_ar1": (BinomialGLMM, "bin", "ar1(day)"),
    "pois_cs": (PoissonGLMM, "count", "cs(day)"),
    "pois_ou": (PoissonGLMM, "count", "ou(day)"),
}


def simulate(people: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lag = np.abs(np.subtract.outer(np.arange(days), np.arange(days)))
    b = rng.multivariate_normal(np.zeros(days), 0.6**2 * 0.7**lag, size=people)
    df = pd.DataFrame(
        dict(
            id=np.repeat(np.arange(people), days),
            day=np.tile(np.arange(1, days + 1), people),
            x=rng.normal(size=people * days),
        )
    )
    eta = 0.2 + 0.3 * df["x"] - 0.01 * df["day"] + b.ravel()
    df["count"] = rng.poisson(np.exp(eta))
    df["bin"] = (rng.uniform(size=len(df)) < 1 / (1 + np.exp(-eta))).astype(int)
    return df


def time_ours(df, n):
    out = {}
    for name, (cls, y, term) in MODELS.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            m = cls(random_effects=term).fit(df[["day", "x"]], df[y], groups=df["id"])
            times.append(time.perf_counter() - t0)
        out[name] = dict(seconds=float(np.median(times)), loglik=m.loglik_, converged=m.converged_)
    return out


def time_r(csv: Path, n: int):
    cmd = ["Rscript", str(HERE / "time_covstruct.R"), str(csv), str(n)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()
    df = simulate(args.people, args.days)
    ours = time_ours(df, args.n)
    theirs = {}
    if not args.no_r:
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "covstruct.csv"
            df.to_csv(csv, index=False)
            theirs = time_r(csv, args.n)
    print(f"{args.people} people x {args.days} days ({len(df)} rows), median of {args.n} fits")
    print(
        f"{'model':<10}{'ours (s)':>10}{'glmmTMB (s)':>13}{'ratio':>8}{'logLik ours':>14}"
        f"{'logLik glmmTMB':>16}"
    )
    for name, r in ours.items():
        t = theirs.get(name, {})
        ts, ll = t.get("seconds", np.nan), t.get("loglik", np.nan)
        print(
            f"{name:<10}{r['seconds']:>10.2f}{ts:>13.2f}{ts / r['seconds']:>8.1f}"
            f"{r['loglik']:>14.2f}{ll:>16.2f}"
        )


if __name__ == "__main__":
    main()
