"""Crossed designs with thousands of levels (issue 17): time, evaluations, peak memory.

Usage (from the repository root)::

    python benchmarks/run_crossed.py                           # lme4 and GPBoost capped
    python benchmarks/run_crossed.py --before ../old-checkout  # and another checkout, same run
    python benchmarks/run_crossed.py insteval_bin --no-r --n 3
    python benchmarks/run_crossed.py --json out.json --markdown
    python benchmarks/run_crossed.py --no-ours --no-r          # GPBoost only

Workloads (``benchmarks/workloads.py``, generated with fixed seeds and cached as CSV):
``recommender_1m`` (1,000,000 rows, 6,040 users x 3,706 items), ``insteval_bin`` (lme4's
InstEval, 2,972 students x 1,128 lecturers) and ``crossed_40k`` (1,000 subjects x 800
items), each a binary outcome with crossed random intercepts.

Each fit of ours runs in a fresh Python process with the library of this checkout (or of
``--before DIR``, for a before/after comparison in one run) first on ``sys.path``: the
child reads the CSV, fits ``--n`` times and reports the wall-clock seconds of each fit
call, the log-likelihood, the outer evaluations (``fit_record_.n_evaluations``) and the
peak resident memory of the fits (``VmHWM`` after resetting it once the data are read).
lme4 fits the same rows through ``benchmarks/time_scale.R``, one fit per workload, stopped
after ``--r-cap`` seconds ("did not finish in N s"). GPBoost (when installed; ``--no-gpboost``
skips it) fits the same model, ``GPModel(group_data=..., likelihood="bernoulli_logit")`` +
``fit(y, X)`` with its default optimiser (the Laplace approximation; construction included,
as our ``fit`` builds its design too), in a fresh process with its default threads: ``--n``
fits (``--n-large`` for ``recommender_1m``), the process stopped after ``--gpboost-cap``
seconds; its log-likelihood is ``-get_current_neg_log_likelihood()``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from memory import status_kb  # benchmarks/memory.py, beside this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT = ("recommender_1m", "insteval_bin", "crossed_40k")
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _workloads():
    from workloads import CROSSED_WORKLOADS, WORKLOADS

    return {**WORKLOADS, **CROSSED_WORKLOADS}


def child(name: str, n: int, cache: Path | None) -> dict:
    """Fit one workload ``n`` times in this process (the library first on sys.path)."""
    from workloads import load, make_estimator

    import sklearn_glmm

    w = _workloads()[name]
    X, y, groups = load(w, cache)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    times, est = [], None
    for _ in range(n):
        est = make_estimator(w)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y, groups=groups)
        times.append(time.perf_counter() - t0)
    try:
        peak = status_kb("VmHWM") / 1024
    except (OSError, KeyError):
        peak = None
    return {
        "times": times,
        "median": sorted(times)[len(times) // 2],
        "loglik": float(est.loglik_),
        "evaluations": int(est.fit_record_.n_evaluations),
        "converged": bool(est.converged_),
        "rows": len(y),
        "peak_mb": peak,
        "library": str(Path(sklearn_glmm.__file__).parent),
    }


def time_ours(name: str, n: int, library: Path, cache: Path | None) -> dict | None:
    cmd = [sys.executable, __file__, "--child", name, "--n", str(n)]
    if cache:
        cmd += ["--cache-dir", str(cache)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(library), str(HERE)]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_lme4(name: str, cap: float, cache: Path | None) -> dict:
    """One lme4 fit of the workload, stopped after ``cap`` seconds."""
    from workloads import csv_path

    if shutil.which("Rscript") is None:
        return {"status": "Rscript not found"}
    w = _workloads()[name]
    job = {
        "name": name,
        "engine": "lme4",
        "csv": str(csv_path(w, cache)),
        "groups": list(w.groups),
        "call": w.r_calls["lme4"],
        "n": 1,
        "warmup": 0,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump([job], fh)
    try:
        out = subprocess.run(
            ["Rscript", str(HERE / "time_scale.R"), fh.name],
            capture_output=True,
            text=True,
            timeout=cap,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"did not finish in {cap:.0f} s"}
    finally:
        os.unlink(fh.name)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"status": "failed: " + out.stderr.strip()[-200:]}
    res = json.loads(lines[-1])
    return {"status": "ok", "seconds": float(res["median"]), "loglik": float(res["loglik"])}


def gpboost_child(name: str, n: int, cache: Path | None) -> dict:
    """Fit one workload ``n`` times with GPBoost in this process."""
    import gpboost as gpb
    import numpy as np
    from workloads import load

    w = _workloads()[name]
    if w.family != "binomial" or not all(t == "1" for t in w.random_effects.values()):
        raise ValueError(f"{name}: not a binary model with random intercepts")
    X, y, groups = load(w, cache)
    Xd = np.column_stack([np.ones(len(X)), X.to_numpy(dtype=float)])
    yd, gdata = y.to_numpy(dtype=float), groups.to_numpy()
    times, model = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        model = gpb.GPModel(group_data=gdata, likelihood="bernoulli_logit")
        model.fit(y=yd, X=Xd)
        times.append(time.perf_counter() - t0)
    return {
        "status": "ok",
        "times": times,
        "median": sorted(times)[len(times) // 2],
        "loglik": -float(model.get_current_neg_log_likelihood()),
        "version": gpb.__version__,
    }


def time_gpboost(name: str, n: int, cap: float, cache: Path | None) -> dict:
    """GPBoost's fits of the workload in a fresh process, stopped after ``cap`` seconds."""
    try:
        import gpboost  # noqa: F401
    except ImportError:
        return {"status": "gpboost not installed"}
    cmd = [sys.executable, __file__, "--gpboost-child", name, "--n", str(n)]
    if cache:
        cmd += ["--cache-dir", str(cache)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"status": f"did not finish in {cap:.0f} s"}
    if out.returncode != 0:
        return {"status": "failed: " + out.stderr.strip()[-200:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(name, label, res):
    if res is None:
        return f"| {name} | {label} | failed | | | | |"
    return (
        f"| {name} | {label} | {res['median']:.2f} | {res['evaluations']} | "
        f"{res['peak_mb']:.0f} | {res['loglik']:.4f} | {res['rows']:,} |"
    )


def report(results: dict) -> str:
    lines = [
        "| workload | engine | seconds | outer evaluations | peak MB | log-likelihood | rows |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        if "before" in res:
            lines.append(_row(name, "ours, before", res["before"]))
        if "ours" in res:
            lines.append(_row(name, "ours", res["ours"]))
        r = res.get("lme4")
        if r is not None and r["status"] == "ok":
            lines.append(f"| {name} | lme4 | {r['seconds']:.1f} | | | {r['loglik']:.4f} | |")
        elif r is not None:
            lines.append(f"| {name} | lme4 | {r['status']} | | | | |")
        g = res.get("gpboost")
        if g is not None and g["status"] == "ok":
            lines.append(f"| {name} | GPBoost | {g['median']:.1f} | | | {g['loglik']:.4f} | |")
        elif g is not None:
            lines.append(f"| {name} | GPBoost | {g['status']} | | | | |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("workloads", nargs="*", help=f"default: {', '.join(DEFAULT)}")
    ap.add_argument("--n", type=int, default=3, help="timed fits per workload (in one process)")
    ap.add_argument("--n-large", type=int, default=1, help="timed fits of recommender_1m")
    ap.add_argument("--before", type=Path, help="another checkout to time in the same run")
    ap.add_argument("--no-r", action="store_true", help="skip lme4")
    ap.add_argument("--r-cap", type=float, default=600.0, help="seconds before lme4 is stopped")
    ap.add_argument("--no-ours", action="store_true", help="skip our fits (the peers only)")
    ap.add_argument("--no-gpboost", action="store_true", help="skip GPBoost")
    ap.add_argument(
        "--gpboost-cap", type=float, default=300.0, help="seconds before GPBoost is stopped"
    )
    ap.add_argument("--cache-dir", type=Path, help="where the CSVs go")
    ap.add_argument("--json", type=Path, help="write all measurements to this JSON file")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--gpboost-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n, args.cache_dir)))
        return
    if args.gpboost_child:
        print(json.dumps(gpboost_child(args.gpboost_child, args.n, args.cache_dir)))
        return
    results = {}
    for name in args.workloads or DEFAULT:
        n = args.n_large if name == "recommender_1m" else args.n
        res = {}
        if args.before:
            res["before"] = time_ours(name, n, args.before.resolve(), args.cache_dir)
        if not args.no_ours:
            res["ours"] = time_ours(name, n, ROOT, args.cache_dir)
        if not args.no_r:
            res["lme4"] = time_lme4(name, args.r_cap, args.cache_dir)
        if not args.no_gpboost:
            res["gpboost"] = time_gpboost(name, n, args.gpboost_cap, args.cache_dir)
        results[name] = res
        print(f"{name}: {json.dumps(res)}", file=sys.stderr, flush=True)
    text = report(results)
    print(text if args.markdown else text.replace("|", " "))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
