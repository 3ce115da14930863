"""Time sklearn_glmm against lme4 / glmmTMB on the reference cases, in one run.

Usage (from the repository root)::

    python benchmarks/run.py                 # every case in tests/fixtures/reference.json
    python benchmarks/run.py pois_ri bin_rs  # some cases
    python benchmarks/run.py --n 7 --no-r    # ours only

For each case the same CSV is fitted in-process by this library (median of
``--n`` fits after one warm-up) and, when ``Rscript`` is on the PATH, by the
R call stored with the case (``benchmarks/time_r.R``, median of ``--n``). The
table prints both times, their ratio (ours / R; below 1 means faster) and the
log-likelihood difference (ours - R; >= -0.01 expected).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reference import case_data, case_names, load_reference, make_estimator  # noqa: E402


def time_ours(case: str, n: int) -> tuple[float, float]:
    spec, X, y, groups, kw = case_data(case)
    times = []
    est = None
    for rep in range(n + 1):
        est = make_estimator(spec)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y, groups=groups, **kw)
        if rep:  # the first fit warms caches and imports
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), est.loglik_


def time_r(cases: list[str], n: int) -> dict:
    if shutil.which("Rscript") is None:
        return {}
    cmd = ["Rscript", str(ROOT / "benchmarks" / "time_r.R"), "--n", str(n), "--default", *cases]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--n", type=int, default=5, help="timed repetitions per case")
    ap.add_argument("--no-r", action="store_true", help="skip the R timings")
    args = ap.parse_args(argv)
    ref = load_reference()
    cases = args.cases or case_names()
    r_times = {} if args.no_r else time_r(cases, args.n)
    print(f"{'case':<18}{'engine':<9}{'rows':>8}{'ours ms':>10}{'R ms':>10}{'ratio':>8}{'dLL':>10}")
    ratios = []
    for case in cases:
        spec = ref[case]
        ours, ll = time_ours(case, args.n)
        r = r_times.get(case)
        ratio = ours / r if r else float("nan")
        if r:
            ratios.append(ratio)
        dll = ll - spec["loglik"] if spec.get("loglik") is not None else float("nan")
        rows = spec.get("nobs") or 0
        r_ms = f"{1000 * r:10.1f}" if r else f"{'-':>10}"
        head = f"{case:<18}{spec['engine']:<9}{rows:>8}"
        print(f"{head}{1000 * ours:10.1f}{r_ms}{ratio:8.3f}{dll:10.4f}")
    if ratios:
        print(f"\nmedian ratio (ours / R): {np.median(ratios):.3f}; worst: {np.max(ratios):.3f}")


if __name__ == "__main__":
    main()
