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

``--json PATH`` also writes every time to a file and ``--markdown`` prints the table
as Markdown (docs/performance.md); both end with issue 7's targets for the reference
fixtures: median ratio <= 0.1, no case above 0.3, log-likelihood within 0.01 or higher.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
# time the library of this checkout, not whatever copy happens to be installed
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from reference import case_data, case_names, load_reference, make_estimator  # noqa: E402
from timing import fit_times  # noqa: E402  (benchmarks/timing.py, beside this script)


def time_ours(case: str, n: int) -> tuple[float, float]:
    times, est = fit_times(case, n, case_data, make_estimator)
    return float(np.median(times)), est.loglik_


def reference_loglik(case: str) -> float:
    """The fixture's log-likelihood on our scale (as tests/test_reference.py compares).

    lme4's nAGQ > 1 logLik for binomial data with trials is relative to the saturated
    model: the saturated log-likelihood is added back. When glmmTMB stopped without a
    logLik (tut_nb: "false convergence"), its objective at the stop is used.
    """
    spec, _, y, _, kw = case_data(case)
    ll = spec.get("loglik")
    if ll is None:
        ll = spec.get("loglik_objective")
        return float("nan") if ll is None else ll
    if spec["engine"] == "lme4" and int(spec.get("n_agq") or 1) > 1 and spec.get("trials"):
        n = kw["trials"].to_numpy(float)
        ll += stats.binom.logpmf(y.to_numpy(float), n, y.to_numpy(float) / n).sum()
    return ll


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
    ap.add_argument("--json", type=Path, help="write the measurements to this JSON file")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args(argv)
    ref = load_reference()
    cases = args.cases or case_names()
    r_times = {} if args.no_r else time_r(cases, args.n)
    rows = []
    for case in cases:
        spec = ref[case]
        ours, ll = time_ours(case, args.n)
        r = r_times.get(case)
        dll = ll - reference_loglik(case)
        rows.append(
            {
                "case": case,
                "engine": spec["engine"],
                "rows": spec.get("nobs") or 0,
                "ours_s": ours,
                "r_s": r,
                "ratio": ours / r if r else None,
                "dll": dll,
            }
        )
    print(render(rows, args.markdown))
    summary = summarise(rows)
    if summary:
        print(summary)
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "cases": rows}, indent=1))


def render(rows: list[dict], markdown: bool) -> str:
    def fmt(row):
        r_ms = f"{1000 * row['r_s']:.1f}" if row["r_s"] else "-"
        ratio = f"{row['ratio']:.3f}" if row["ratio"] else "-"
        ours = f"{1000 * row['ours_s']:.1f}"
        return [
            row["case"],
            row["engine"],
            str(row["rows"]),
            ours,
            r_ms,
            ratio,
            f"{row['dll']:+.4f}",
        ]

    if markdown:
        out = [
            "| case | engine | rows | ours ms | R ms | ours/R | dLL |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        out += ["| " + " | ".join(fmt(row)) + " |" for row in rows]
        return "\n".join(out)
    widths = [(18, "<"), (9, "<"), (8, ">"), (10, ">"), (10, ">"), (8, ">"), (10, ">")]
    heads = ["case", "engine", "rows", "ours ms", "R ms", "ratio", "dLL"]
    out = ["".join(f"{h:{a}{w}}" for h, (w, a) in zip(heads, widths))]
    out += ["".join(f"{c:{a}{w}}" for c, (w, a) in zip(fmt(row), widths)) for row in rows]
    return "\n".join(out)


def summarise(rows: list[dict]) -> str:
    ratios = [row["ratio"] for row in rows if row["ratio"]]
    if not ratios:
        return ""
    med, worst = float(np.median(ratios)), float(np.max(ratios))
    worst_case = max((row for row in rows if row["ratio"]), key=lambda row: row["ratio"])["case"]
    low = [row["case"] for row in rows if row["dll"] < -0.01]
    return (
        f"\nmedian ratio (ours / R): {med:.3f} "
        f"(target <= 0.1: {'met' if med <= 0.1 else 'NOT MET'})"
        f"\nworst ratio: {worst:.3f} ({worst_case}; target <= 0.3: "
        f"{'met' if worst <= 0.3 else 'NOT MET'})"
        f"\nlog-likelihood below the reference by more than 0.01: {', '.join(low) or 'none'}"
    )


if __name__ == "__main__":
    main()
