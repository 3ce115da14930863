"""Refits per second of a power simulation, against lme4 refits (simr's engine).

The design is the docs' worked example at one size: 100 people x 5 waves, a 0/1
outcome, a random intercept (SD 1), a two-arm treatment with odds ratio 0.6.
``power_curve`` simulates, refits and tests ``n_sim`` studies (single process, then
``n_jobs=2``); R's side refits the same model to ``simulate``d outcomes with
``lme4::refit`` (what ``simr::powerSim`` does). Run from the repository root:

    python benchmarks/power_throughput.py [--n-sim 1000] [--no-r]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from sklearn_glmm import BinomialGLMM
from sklearn_glmm.power import GLMMSpec, power_curve

HERE = Path(__file__).resolve().parent


def ours(n_id, n_wave, n_sim, n_jobs):
    spec = GLMMSpec(
        BinomialGLMM(random_effects="1"),
        {"(Intercept)": -0.5, "time": -0.2, "treatment": np.log(0.6)},
        random_cov=1.0,
    )
    pc = power_curve(
        spec, "treatment", n_groups=n_id, n_per_group=n_wave, n_sim=n_sim,
        random_state=0, n_jobs=n_jobs,
    )  # fmt: skip
    return pc.attrs["seconds"], float(pc["power"].iloc[0]), int(pc["n_failed"].iloc[0])


def r_side(n_id, n_wave, n_rep):
    out = subprocess.run(
        ["Rscript", str(HERE / "time_power.R"), str(n_id), str(n_wave), str(n_rep)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sim", type=int, default=1000)
    ap.add_argument("--n-id", type=int, default=100)
    ap.add_argument("--n-wave", type=int, default=5)
    ap.add_argument("--r-refits", type=int, default=100)
    ap.add_argument("--no-r", action="store_true")
    a = ap.parse_args()
    print(f"design: {a.n_id} people x {a.n_wave} waves, binomial random intercept")
    rates = {}
    for n_jobs in (1, 2):
        sec, power, failed = ours(a.n_id, a.n_wave, a.n_sim, n_jobs)
        rates[n_jobs] = a.n_sim / sec
        print(
            f"sklearn_glmm n_jobs={n_jobs}: {a.n_sim} simulate+refit+test in {sec:.2f} s "
            f"= {rates[n_jobs]:.0f} refits/s (power {power:.3f}, {failed} failed)"
        )
    if a.no_r or shutil.which("Rscript") is None:
        print("lme4: -")
        return
    r = r_side(a.n_id, a.n_wave, a.r_refits)
    r_rate = r["refits"] / r["seconds"]
    print(
        f"lme4::refit (simr's engine): {r['refits']} refits in {r['seconds']:.2f} s = "
        f"{r_rate:.1f} refits/s; ratio (ours, one process / lme4): {rates[1] / r_rate:.0f}x"
    )


if __name__ == "__main__":
    main()
