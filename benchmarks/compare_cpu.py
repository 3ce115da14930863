"""Our side only: CPU time of every reference case, this checkout against another.

Usage (from the repository root)::

    git worktree add --detach ../before <commit>
    python benchmarks/compare_cpu.py ../before                  # every case, 6 rounds
    python benchmarks/compare_cpu.py ../before --rounds 4 --cases pois_ri,bin_rs

Single cases of a few milliseconds move by about 10 % between runs of the same code
on a shared two-core machine, which is the size of the change a speed criterion asks
about. This comparison is built to be steadier than wall-clock medians:

* process CPU time (``time.process_time``), not wall time;
* each round times both checkouts, each in a fresh process (``--n`` fits per case
  after one warm-up, the 10th percentile of them), alternating which goes first;
* the best round of each checkout is kept (the run least disturbed by other work).

Prints per case the two times, their ratio (after / before), the difference in
log-likelihood, and the median and largest ratios. ``--json PATH`` writes them.
The R engines are not run: for ratios against lme4/glmmTMB use ``run.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def time_checkout(root: str, n: int, cases: list[str]) -> dict:
    """CPU times of ``cases`` for the library of the checkout at ``root`` (run in a child
    process whose path starts with that checkout)."""
    sys.path[:0] = [root, str(Path(root) / "tests")]
    from reference import case_data, case_names, make_estimator
    from timing import fit_times  # benchmarks/timing.py, beside this script

    import sklearn_glmm

    if not str(Path(sklearn_glmm.__file__).resolve()).startswith(str(Path(root).resolve())):
        raise RuntimeError(f"imported {sklearn_glmm.__file__}, not the checkout at {root}")
    out = {}
    for case in cases or case_names():
        times, est = fit_times(case, n, case_data, make_estimator, time.process_time)
        out[case] = {"seconds": float(np.percentile(times, 10)), "loglik": float(est.loglik_)}
    return out


def _child(root: str, n: int, cases: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        cmd = [sys.executable, __file__, "--child", root, "--n", str(n), "--out", fh.name]
        subprocess.run(cmd + ["--cases", ",".join(cases)], check=True)
        return json.loads(Path(fh.name).read_text())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("before", nargs="?", help="the other checkout's root directory")
    ap.add_argument("--cases", default="", help="comma-separated cases (default: all)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of both checkouts")
    ap.add_argument("--n", type=int, default=7, help="timed fits per case and round")
    ap.add_argument("--json", type=Path, help="write the comparison to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if args.child:
        Path(args.out).write_text(json.dumps(time_checkout(args.child, args.n, cases)))
        return
    if not args.before:
        ap.error("give the other checkout's root directory")
    roots = {"before": str(Path(args.before).resolve()), "after": str(ROOT)}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for which in order:
            runs[which].append(_child(roots[which], args.n, cases))
    rows = []
    for case in runs["after"][0]:
        b = min(run[case]["seconds"] for run in runs["before"])
        a = min(run[case]["seconds"] for run in runs["after"])
        dll = runs["after"][0][case]["loglik"] - runs["before"][0][case]["loglik"]
        rows.append({"case": case, "before_s": b, "after_s": a, "ratio": a / b, "dll": dll})
        print(f"{case:18s} {b * 1e3:8.2f} ms {a * 1e3:8.2f} ms  x{a / b:5.2f}  dLL {dll:+.1e}")
    ratios = [r["ratio"] for r in rows]
    print(
        f"median x{np.median(ratios):.3f}, geometric mean x{np.exp(np.mean(np.log(ratios))):.3f}, "
        f"largest x{max(ratios):.3f}, cases above x1.10: {sum(r > 1.10 for r in ratios)} "
        f"of {len(ratios)}"
    )
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "n": args.n, "cases": rows}))


if __name__ == "__main__":
    main()
