"""Issue 7's speed-and-scale benchmark: ours vs lme4/glmmTMB vs GPBoost, in one run.

Usage (from the repository root)::

    python benchmarks/run_scale.py                      # everything (~10 min; R ~7 of them)
    python benchmarks/run_scale.py --quick              # no minute-long R fits, fewer repeats
    python benchmarks/run_scale.py --no-r pois_ri_1m    # one workload, ours and GPBoost only
    python benchmarks/run_scale.py --sections grid,latency
    python benchmarks/run_scale.py --json out.json --markdown

Sections:

``scale``
    Each workload of ``benchmarks/workloads.py`` (data generated with a fixed seed and
    cached as CSV) is fitted by this library in-process (median of ``--n`` fits after
    one warm-up fit), by lme4/glmmTMB through ``Rscript benchmarks/time_scale.R``
    (median of ``--r-n``; one run for the minute-long fits) and by GPBoost when it is
    installed and can fit the model (median of ``--n``, after a warm-up). Our peak
    memory is measured in a fresh subprocess that reads the CSV and fits once.
``grid``
    ``GridSearchCV`` over 3 random-effect structures x 5 ``GroupKFold`` folds on the
    1,500-row app-logins data, ``n_jobs=1`` (16 fits with the refit), median of runs.
``latency``
    Single 1,500-row random-intercept fits (Poisson app logins; the binary ``bin_ri``
    reference fixture): median and 90th percentile of many fits.

Every time is wall-clock seconds of the fit call alone (data already in memory). The
targets of issue 7 are checked at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from memory import status_kb  # benchmarks/memory.py, beside this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# time the library of this checkout, not whatever copy happens to be installed
sys.path[:0] = [str(ROOT), str(HERE)]

from workloads import DEFAULT_CACHE, WORKLOADS, Workload, csv_path, load, make_estimator  # noqa: E402

SECTIONS = ("scale", "grid", "latency")
GRID_STRUCTURES = ["1", "1 + day_centered", "diag(1 + day_centered)"]


# ---- ours -------------------------------------------------------------------------------


def _fit_quietly(est, X, y, groups):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, groups=groups)


def time_ours(w: Workload, n: int, cache: Path) -> dict:
    X, y, groups = load(w, cache)
    times, est = [], None
    for rep in range(n + 1):
        est = make_estimator(w)
        t0 = time.perf_counter()
        _fit_quietly(est, X, y, groups)
        if rep:  # the first fit warms caches
            times.append(time.perf_counter() - t0)
    return {
        "times": times,
        "median": float(np.median(times)),
        "loglik": float(est.loglik_),
        "converged": bool(est.converged_),
        "rows": len(y),
    }


def measure_memory(name: str, cache: Path) -> dict:
    """Peak resident memory of one fit: run in a fresh process (``--memory-of``)."""
    w = WORKLOADS[name]
    X, y, groups = load(w, cache)
    before = status_kb("VmRSS")
    try:  # reset the high-water mark, so the peak is the fit's and not the CSV reader's
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        how = "VmHWM after clear_refs"
    except OSError:
        how = "ru_maxrss (includes reading the CSV)"
    _fit_quietly(make_estimator(w), X, y, groups)
    try:
        peak = status_kb("VmHWM")
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": peak / 1024, "before_fit_mb": before / 1024, "how": how}


def memory_subprocess(name: str, cache: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--memory-of", name, "--cache-dir", str(cache)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- GPBoost ----------------------------------------------------------------------------


def gpboost_version() -> str | None:
    try:
        import gpboost
    except ImportError:
        return None
    return gpboost.__version__


def time_gpboost(w: Workload, n: int, cache: Path, threads: int) -> dict | None:
    """GPModel construction + fit (its default optimiser), like our fit call."""
    import gpboost as gpb

    spec = w.gpboost
    X, y, groups = load(w, cache)
    Xd = np.column_stack([np.ones(len(X)), X.to_numpy(dtype=float)])
    yd = y.to_numpy(dtype=float)
    gdata = groups.to_numpy()
    kw = {"likelihood": spec.likelihood, "num_parallel_threads": threads}
    if spec.slope is not None:
        kw["group_rand_coef_data"] = X[spec.slope].to_numpy(dtype=float)
        kw["ind_effect_group_rand_coef"] = [1]
    times, model = [], None
    for rep in range(n + 1):
        t0 = time.perf_counter()
        model = gpb.GPModel(group_data=gdata, **kw)
        model.fit(y=yd, X=Xd)
        if rep:
            times.append(time.perf_counter() - t0)
    return {
        "times": times,
        "median": float(np.median(times)),
        "loglik": -float(model.get_current_neg_log_likelihood()),
        "threads": threads,
    }


# ---- R ----------------------------------------------------------------------------------


def r_versions() -> dict:
    if shutil.which("Rscript") is None:
        return {}
    code = (
        'cat(R.version$major, ".", R.version$minor, " ", as.character(packageVersion("lme4")),'
        ' " ", as.character(packageVersion("glmmTMB")), sep = "")'
    )
    out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {}
    r, lme4, tmb = out.stdout.split()
    return {"R": r, "lme4": lme4, "glmmTMB": tmb}


def time_r(workloads: list[Workload], args, cache: Path) -> dict:
    """{(workload, engine): result} from one Rscript run (progress on stderr)."""
    if shutil.which("Rscript") is None:
        print("Rscript not found: skipping lme4/glmmTMB", file=sys.stderr)
        return {}
    jobs = []
    for w in workloads:
        if w.large and args.quick:
            continue
        for engine, call in w.r_calls.items():
            n = args.r_n_large if w.large else args.r_n
            jobs.append(
                {
                    "name": w.name,
                    "engine": engine,
                    "csv": str(csv_path(w, cache)),
                    "groups": list(w.groups),
                    "call": call,
                    "n": n,
                    "warmup": 0 if w.large else 1,
                }
            )
    if not jobs:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(jobs, fh)
    results = {}
    cmd = ["Rscript", str(HERE / "time_scale.R"), fh.name]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                res = json.loads(line)
                res["times"] = np.atleast_1d(res["times"]).tolist()
                res["messages"] = np.atleast_1d(res.get("messages") or []).tolist()
                results[(res["name"], res["engine"])] = res
    os.unlink(fh.name)
    return results


# ---- grid search and latency -----------------------------------------------------------


def time_grid(n: int) -> dict:
    import sklearn
    from sklearn.model_selection import GridSearchCV, GroupKFold

    from sklearn_glmm import PoissonGLMM
    from sklearn_glmm.datasets import load_app_logins

    df = load_app_logins()
    X, y, users = df[["day_centered"]], df["logins"], df["user_id"]
    times, gs = [], None
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rep in range(n + 1):
            gs = GridSearchCV(
                PoissonGLMM().set_fit_request(groups=True),
                {"random_effects": GRID_STRUCTURES},
                cv=GroupKFold(5),
                n_jobs=1,
            )
            t0 = time.perf_counter()
            gs.fit(X, y, groups=users)
            if rep:
                times.append(time.perf_counter() - t0)
    res = gs.cv_results_
    return {
        "times": times,
        "median": float(np.median(times)),
        "fits": len(GRID_STRUCTURES) * 5 + 1,
        "fit_s": float(np.sum(res["mean_fit_time"]) * 5),
        "score_s": float(np.sum(res["mean_score_time"]) * 5),
        "mean_fit_time": dict(zip(GRID_STRUCTURES, map(float, res["mean_fit_time"]))),
        "best": gs.best_params_["random_effects"],
    }


def time_latency(n: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from reference import case_data
    from reference import make_estimator as ref_estimator

    out = {}
    cases = {"app_logins (Poisson)": None, "bin_ri (binary)": "bin_ri"}
    for label, case in cases.items():
        if case is None:
            w = WORKLOADS["app_logins"]
            X, y, groups = load(w)
            kw, new = {}, lambda w=w: make_estimator(w)
        else:
            spec, X, y, groups, kw = case_data(case)
            new = lambda spec=spec: ref_estimator(spec)  # noqa: E731
        times = []
        for rep in range(n + 1):
            est = new()
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, y, groups=groups, **kw)
            if rep:
                times.append(time.perf_counter() - t0)
        out[label] = {
            "times": times,
            "median": float(np.median(times)),
            "p90": float(np.percentile(times, 90)),
            "min": float(np.min(times)),
            "rows": len(y),
        }
    return out


# ---- machine ----------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import pandas
    import scipy
    import sklearn

    import sklearn_glmm

    git = ["git", "--no-optional-locks", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "sklearn_glmm"], capture_output=True, text=True
    )
    return {
        "sklearn_glmm_path": str(Path(sklearn_glmm.__file__).parent),
        "commit": commit.stdout.strip() or None,
        "library_modified": bool(dirty.stdout.strip()) if commit.returncode == 0 else None,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_gb, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": sklearn.__version__,
        "sklearn_glmm": getattr(sklearn_glmm, "__version__", "?"),
        "gpboost": gpboost_version(),
        **r_versions(),
    }


# ---- tables -----------------------------------------------------------------------------


def _fmt(x, spec=".3f", none="-"):
    return none if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def _secs(x):
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def scale_rows(results: dict) -> list[dict]:
    rows = []
    for name, res in results["scale"].items():
        w = WORKLOADS[name]
        ours, gpb, mem = res["ours"], res.get("gpboost"), res.get("memory")
        engines = list(w.r_calls) or [None]
        for k, engine in enumerate(engines):
            r = res.get("r", {}).get(engine)
            first = k == 0
            rows.append(
                {
                    "workload": name if first else f"  (vs {engine})",
                    "rows": ours["rows"] if first else None,
                    "ours": ours["median"] if first else None,
                    "engine": engine,
                    "r": r["median"] if r else None,
                    "ratio_r": ours["median"] / r["median"] if r else None,
                    "dll_r": ours["loglik"] - r["loglik"] if r else None,
                    "gpb": gpb["median"] if gpb and first else None,
                    "ratio_gpb": ours["median"] / gpb["median"] if gpb and first else None,
                    "dll_gpb": ours["loglik"] - gpb["loglik"] if gpb and first else None,
                    "peak_mb": mem["peak_mb"] if mem and first else None,
                }
            )
    return rows


COLUMNS = [
    ("workload", "workload", "<", 18, str),
    ("rows", "rows", ">", 9, lambda v: f"{v:,}"),
    ("ours", "ours s", ">", 8, _secs),
    ("engine", "R engine", "<", 9, str),
    ("r", "R s", ">", 8, _secs),
    ("ratio_r", "ours/R", ">", 7, lambda v: f"{v:.3f}"),
    ("gpb", "GPBoost s", ">", 10, _secs),
    ("ratio_gpb", "ours/GPB", ">", 9, lambda v: f"{v:.2f}"),
    ("peak_mb", "peak MB", ">", 8, lambda v: f"{v:.0f}"),
    ("dll_r", "dLL R", ">", 9, lambda v: f"{v:+.4f}"),
    ("dll_gpb", "dLL GPB", ">", 9, lambda v: f"{v:+.4f}"),
]


def render_scale(rows: list[dict], markdown: bool) -> str:
    def cell(row, key, fn):
        v = row.get(key)
        return "-" if v is None else fn(v)

    if markdown:
        lines = ["| " + " | ".join(c[1] for c in COLUMNS) + " |"]
        lines.append("|" + "|".join("---" if c[2] == "<" else "---:" for c in COLUMNS) + "|")
        for row in rows:
            cells = [cell(row, key, fn).strip() for key, _, _, _, fn in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
    head = " ".join(f"{title:{al}{wd}}" for _, title, al, wd, _ in COLUMNS)
    body = [" ".join(f"{cell(r, k, fn):{al}{wd}}" for k, _, al, wd, fn in COLUMNS) for r in rows]
    return "\n".join([head, *body])


def check_targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for issue 7's targets covered by this runner."""
    out = []
    scale = results.get("scale", {})

    def get(name):
        return scale.get(name, {})

    for name, limit in (("bin_rs_200k", 3.0), ("pois_ri_1m", 2.5)):
        res = get(name)
        if not res:
            continue
        t = res["ours"]["median"]
        out.append((f"{name}: fit < {limit:g} s", f"{t:.2f} s", t < limit))
        r = res.get("r", {}).get("lme4")
        if r:
            d = res["ours"]["loglik"] - r["loglik"]
            out.append((f"{name}: logLik within 0.05 of lme4", f"{d:+.4f}", abs(d) < 0.05))
    mem = get("pois_ri_1m").get("memory")
    if mem:
        peak = mem["peak_mb"]
        out.append(("pois_ri_1m: peak memory < 2 GB", f"{peak:.0f} MB", peak < 2048))
    for name in ("crossed_bin", "verbagg", "crossed_40k", "nested3_40k"):
        r = get(name).get("r", {}).get("lme4")
        if r:
            ratio = get(name)["ours"]["median"] / r["median"]
            out.append((f"{name}: ours <= 0.1 x lme4", f"{ratio:.3f} x", ratio <= 0.1))
    for name, res in scale.items():
        if res.get("gpboost"):
            ratio = res["ours"]["median"] / res["gpboost"]["median"]
            out.append((f"{name}: ours <= 1.5 x GPBoost", f"{ratio:.2f} x", ratio <= 1.5))
    nb = get("nb_rs_3k").get("r", {}).get("glmmTMB")
    if nb:
        ratio = get("nb_rs_3k")["ours"]["median"] / nb["median"]
        out.append(("nb_rs_3k: ours <= 0.1 x glmmTMB", f"{ratio:.3f} x", ratio <= 0.1))
    if "grid" in results:
        t = results["grid"]["median"]
        out.append(("GridSearchCV 3 x 5 folds < 3 s", f"{t:.2f} s", t < 3.0))
    for label, res in results.get("latency", {}).items():
        t = res["median"]
        out.append((f"latency {label} < 30 ms", f"{1000 * t:.1f} ms", t < 0.030))
    return out


def render_targets(targets, markdown: bool) -> str:
    if markdown:
        lines = ["| target | measured | met |", "|---|---:|---|"]
        lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets]
        return "\n".join(lines)
    return "\n".join(f"{t:<40}{m:>12}  {'met' if ok else 'NOT MET'}" for t, m, ok in targets)


def report(results: dict, markdown: bool) -> str:
    parts = []
    if results.get("scale"):
        parts += ["Scale workloads", render_scale(scale_rows(results), markdown)]
    if "grid" in results:
        g = results["grid"]
        parts += [
            "GridSearchCV (3 structures x 5 GroupKFold folds + refit, n_jobs=1, app logins)",
            f"median {g['median']:.3f} s over {len(g['times'])} runs "
            f"({', '.join(f'{t:.3f}' for t in g['times'])}); "
            f"fits {g['fit_s']:.3f} s, scoring {g['score_s']:.3f} s; best {g['best']!r}",
        ]
    if results.get("latency"):
        lines = []
        for label, r in results["latency"].items():
            lines.append(
                f"{label:<22} median {1000 * r['median']:.1f} ms, "
                f"p90 {1000 * r['p90']:.1f} ms, min {1000 * r['min']:.1f} ms "
                f"({len(r['times'])} fits)"
            )
        parts += ["Small-model latency (1,500 rows, random intercept)", "\n".join(lines)]
    parts += ["Targets", render_targets(check_targets(results), markdown)]
    return "\n\n".join(parts)


# ---- main -------------------------------------------------------------------------------


def run_scale(names: list[str], args, cache: Path) -> dict:
    workloads = [WORKLOADS[n] for n in names]
    out = {}
    for w in workloads:
        csv_path(w, cache)  # generate before anything is timed
    have_gpb = gpboost_version() is not None and not args.no_gpboost
    if gpboost_version() is None and not args.no_gpboost:
        print("gpboost is not installed (pip install gpboost): skipping it", file=sys.stderr)
    for w in workloads:
        n = args.n_large if w.large else args.n
        print(f"[ours] {w.name} ...", file=sys.stderr, flush=True)
        res = {"ours": time_ours(w, n, cache), "r": {}}
        if have_gpb and w.gpboost is not None:
            print(f"[gpboost] {w.name} ...", file=sys.stderr, flush=True)
            res["gpboost"] = time_gpboost(w, n, cache, args.gpboost_threads)
        if not args.no_memory:
            res["memory"] = memory_subprocess(w.name, cache)
        out[w.name] = res
    if not args.no_r:
        print("[R] lme4 / glmmTMB ...", file=sys.stderr, flush=True)
        for (name, engine), r in time_r(workloads, args, cache).items():
            out[name]["r"][engine] = r
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("workloads", nargs="*", help=f"default: all of {', '.join(WORKLOADS)}")
    ap.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated: scale,grid,latency"
    )
    ap.add_argument("--quick", action="store_true", help="no minute-long R fits; fewer repeats")
    ap.add_argument("--no-r", action="store_true", help="skip lme4/glmmTMB")
    ap.add_argument("--no-gpboost", action="store_true", help="skip GPBoost")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--n", type=int, default=5, help="timed fits per small workload")
    ap.add_argument("--n-large", type=int, default=3, help="timed fits per large workload")
    ap.add_argument("--r-n", type=int, default=3, help="timed R fits per small workload")
    ap.add_argument("--r-n-large", type=int, default=1, help="timed R fits per large workload")
    ap.add_argument("--gpboost-threads", type=int, default=1, help="GPBoost num_parallel_threads")
    ap.add_argument("--grid-n", type=int, default=5, help="timed GridSearchCV runs")
    ap.add_argument("--latency-n", type=int, default=30, help="timed fits per latency case")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the CSVs go")
    ap.add_argument("--json", type=Path, help="write all measurements to this JSON file")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    args.sections = args.sections.split(",")
    if set(args.sections) - set(SECTIONS):
        ap.error(f"--sections takes a comma-separated subset of {','.join(SECTIONS)}")
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, args.cache_dir)))
        return
    if args.quick:
        args.n, args.n_large, args.r_n, args.grid_n, args.latency_n = 3, 1, 1, 3, 15
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workload(s) {sorted(unknown)}; known: {list(WORKLOADS)}")

    results = {"machine": machine(), "load_start": os.getloadavg(), "started": time.ctime()}
    if "scale" in args.sections:
        results["scale"] = run_scale(args.workloads or list(WORKLOADS), args, args.cache_dir)
    if "grid" in args.sections:
        print("[ours] GridSearchCV ...", file=sys.stderr, flush=True)
        results["grid"] = time_grid(args.grid_n)
    if "latency" in args.sections:
        print("[ours] latency ...", file=sys.stderr, flush=True)
        results["latency"] = time_latency(args.latency_n)
    results["load_end"] = os.getloadavg()

    m = results["machine"]
    print(f"\nsklearn_glmm from {m['sklearn_glmm_path']} (commit {m['commit']})")
    print(
        f"{m['nproc']} cores, {m['cpu']}, {m['memory_gb']} GB; load average "
        f"{results['load_start'][0]:.2f} at start, {results['load_end'][0]:.2f} at end"
    )
    print(report(results, args.markdown))
    if args.json:
        results["targets"] = check_targets(results)
        args.json.write_text(json.dumps(results, indent=1, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
