"""Time OrdinalGLMM against ordinal::clmm on the same rows, in the same run.

Usage (from the repository root)::

    python benchmarks/run_ordinal.py [--n 5] [--no-r]

Cases: the wine data (72 rows, 9 judges; Laplace and nAGQ = 10) and simulated
longitudinal Likert data (5 classes; 2,000 and 20,000 rows with 200 and 2,000 people).
Prints each fit's median time over ``--n`` timed fits (after one untimed fit), the log-
likelihoods of both, and the ratio clmm / ours. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from sklearn_glmm import OrdinalGLMM  # noqa: E402
from sklearn_glmm._engine.families import make_family  # noqa: E402


def _likert(n_people, waves, seed):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_people), waves)
    time_ = np.tile(np.arange(waves), n_people).astype(float)
    treat = (g % 2).astype(float)
    eta = 0.3 * time_ + 0.8 * treat * time_ / waves + rng.normal(scale=1.0, size=n_people)[g]
    fam = make_family("ordinal", n_classes=5)
    y = fam.sample_eta(eta, None, np.array([-1.0, 0.5, 2.0, 3.5]), rng).astype(int)
    return pd.DataFrame({"y": y + 1, "time": time_, "treat": treat, "g": g})


def _cases(tmp):
    wine = pd.read_csv(ROOT / "tests" / "fixtures" / "ordinal" / "wine.csv")
    wine = pd.DataFrame(
        {
            "y": wine["rating"],
            "tempwarm": (wine["temp"] == "warm") * 1.0,
            "contactyes": (wine["contact"] == "yes") * 1.0,
            "g": wine["judge"],
        }
    )
    small, large = _likert(200, 10, 0), _likert(2000, 10, 1)
    out = {}
    for name, d, cols, r_rhs, kw in [
        ("wine", wine, ["tempwarm", "contactyes"], "tempwarm + contactyes", {}),
        ("wine_agq10", wine, ["tempwarm", "contactyes"], "tempwarm + contactyes", {"n_agq": 10}),
        ("likert_2k", small, ["time", "treat"], "time + treat", {}),
        ("likert_20k", large, ["time", "treat"], "time + treat", {}),
    ]:
        csv = Path(tmp) / f"{name}.csv"
        d.to_csv(csv, index=False)
        nagq = f", nAGQ = {kw['n_agq']}" if kw else ""
        call = f"clmm(y ~ {r_rhs} + (1 | g), data = d{nagq})"
        out[name] = dict(data=d, cols=cols, kw=kw, csv=str(csv), call=call)
    return out


def _time_ours(case, n):
    d = case["data"]
    X, y, g = d[case["cols"]], pd.Categorical(d["y"], ordered=True), d["g"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = OrdinalGLMM(random_effects="1", **case["kw"]).fit(X, y, groups=g)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            OrdinalGLMM(random_effects="1", **case["kw"]).fit(X, y, groups=g)
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), m.loglik_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(tmp)
        r_times = {}
        if not args.no_r:
            spec = Path(tmp) / "cases.json"
            spec.write_text(
                json.dumps({k: {"csv": c["csv"], "call": c["call"]} for k, c in cases.items()})
            )
            res = subprocess.run(
                ["Rscript", str(ROOT / "benchmarks" / "time_ordinal.R"), str(spec), str(args.n)],
                capture_output=True,
                text=True,
            )
            r_times = json.loads(res.stdout) if res.returncode == 0 else {}
            if res.returncode:
                print("R failed:", res.stderr[-2000:])
        print(f"{'case':<12}{'rows':>8}{'ours (s)':>11}{'clmm (s)':>11}{'clmm / ours':>13}")
        for name, case in cases.items():
            ours, _ = _time_ours(case, args.n)
            r = r_times.get(name)
            ratio = f"{r / ours:>13.1f}" if r else f"{'-':>13}"
            rs = f"{r:>11.3f}" if r else f"{'-':>11}"
            print(f"{name:<12}{len(case['data']):>8}{ours:>11.3f}{rs}{ratio}")


if __name__ == "__main__":
    main()
