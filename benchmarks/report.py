"""Merge several runs of run_scale.py / run.py into the Markdown tables of docs/performance.md.

Usage (from the repository root)::

    python benchmarks/run_scale.py --json s1.json   # repeat: s2.json, s3.json
    python benchmarks/run.py --json f1.json         # repeat: f2.json, f3.json
    python benchmarks/report.py --scale s1.json s2.json s3.json --fixtures f1.json f2.json f3.json

Every time in the tables is the median over the runs of each run's median; every ratio is
the median over the runs of the ratio measured within one run; peak memory is the largest
of the runs. A second table lists the per-run times of the scale workloads, so that the
spread caused by other jobs on the machine is visible.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
import run_scale  # noqa: E402


def _med(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def merge_scale(runs: list[dict]) -> dict:
    """One results dict whose medians are medians over ``runs``; ratios as measured per run."""
    out = copy.deepcopy(runs[0])
    for name, res in out.get("scale", {}).items():
        per_run = [r["scale"][name] for r in runs if name in r.get("scale", {})]
        res["ours"]["median"] = _med([p["ours"]["median"] for p in per_run])
        res["ours"]["per_run"] = [p["ours"]["median"] for p in per_run]
        if res.get("gpboost"):
            res["gpboost"]["median"] = _med([p["gpboost"]["median"] for p in per_run])
            res["gpboost"]["per_run"] = [p["gpboost"]["median"] for p in per_run]
        for engine, r in res.get("r", {}).items():
            rs = [p["r"][engine] for p in per_run if engine in p.get("r", {})]
            r["median"] = _med([x["median"] for x in rs])
            r["per_run"] = [x["median"] for x in rs]
        if res.get("memory"):
            res["memory"]["peak_mb"] = max(p["memory"]["peak_mb"] for p in per_run if p["memory"])
    if "grid" in out:
        grids = [r["grid"] for r in runs if "grid" in r]
        out["grid"]["per_run"] = [g["median"] for g in grids]
        out["grid"]["median"] = _med(out["grid"]["per_run"])
        out["grid"]["times"] = [t for g in grids for t in g["times"]]
        for key in ("fit_s", "score_s"):
            out["grid"][key] = _med([g[key] for g in grids])
    for label, lat in out.get("latency", {}).items():
        lats = [r["latency"][label] for r in runs if label in r.get("latency", {})]
        lat["per_run"] = [x["median"] for x in lats]
        lat["median"] = _med(lat["per_run"])
        lat["p90"] = _med([x["p90"] for x in lats])
        lat["min"] = min(x["min"] for x in lats)
        lat["times"] = [t for x in lats for t in x["times"]]
    return out


def per_run_table(merged: dict) -> str:
    lines = ["| workload | ours s | R s | GPBoost s |", "|---|---|---|---|"]

    def fmt(values):
        return ", ".join(run_scale._secs(v) for v in values) if values else "-"

    for name, res in merged.get("scale", {}).items():
        for k, (engine, r) in enumerate(res.get("r", {}).items() or [(None, None)]):
            ours = fmt(res["ours"]["per_run"]) if k == 0 else ""
            gpb = fmt(res["gpboost"]["per_run"]) if res.get("gpboost") and k == 0 else "-"
            label = name if k == 0 else f"(vs {engine})"
            r_cell = f"{engine}: {fmt(r['per_run'])}" if r else "-"
            lines.append(f"| {label} | {ours} | {r_cell} | {gpb if k == 0 else ''} |")
    return "\n".join(lines)


def merge_fixtures(runs: list[dict]) -> list[dict]:
    rows = copy.deepcopy(runs[-1]["cases"])  # the latest run has the current dLL
    for row in rows:
        same = [c for r in runs for c in r["cases"] if c["case"] == row["case"]]
        row["ours_s"] = _med([c["ours_s"] for c in same])
        row["r_s"] = _med([c["r_s"] for c in same])
        row["ratio"] = _med([c["ratio"] for c in same])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", nargs="*", type=Path, default=[], help="run_scale.py --json files")
    ap.add_argument("--fixtures", nargs="*", type=Path, default=[], help="run.py --json files")
    args = ap.parse_args(argv)
    if args.scale:
        runs = [json.loads(p.read_text()) for p in args.scale]
        merged = merge_scale(runs)
        loads = ", ".join(
            f"{r['load_start'][0]:.1f}-{r['load_end'][0]:.1f}" for r in runs if "load_start" in r
        )
        print(f"<!-- {len(runs)} runs of run_scale.py; load average (start-end): {loads} -->\n")
        print(run_scale.report(merged, markdown=True))
        print("\nPer-run medians\n")
        print(per_run_table(merged))
        if "grid" in merged:
            print(f"\ngrid per run: {merged['grid']['per_run']}")
        for label, lat in merged.get("latency", {}).items():
            print(f"latency {label} per run (s): {lat['per_run']}")
    if args.fixtures:
        rows = merge_fixtures([json.loads(p.read_text()) for p in args.fixtures])
        print(f"\n<!-- {len(args.fixtures)} runs of run.py -->\n")
        print(run.render(rows, markdown=True))
        print(run.summarise(rows))


if __name__ == "__main__":
    main()
