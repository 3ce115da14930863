"""Ours against every peer on the reference cases, in one run, at one thread and at the default.

Usage (from the repository root; the peers are optional extras of the benchmarks,
``python -m pip install -r benchmarks/requirements-peers.txt``)::

    python benchmarks/run_peers.py                          # every case, both thread settings
    python benchmarks/run_peers.py --cases pois_ri bin_rs --n 5
    python benchmarks/run_peers.py --threads 1 --json peers1.json --markdown
    python benchmarks/run_peers.py --sections throughput --threads 1

Engines, each on the same rows of ``tests/fixtures/<case>.csv``:

``ours``
    this library (the estimator ``tests/reference.py`` builds for the case), with the
    evaluations of its objective per fit and the optimisation's time per evaluation
    (``fit_record_.n_evaluations`` and ``fit_record_.seconds``).
``R``
    the case's lme4 / glmmTMB call (``benchmarks/time_r.R --default``).
``glmm``
    the Rust engine ``glmm.fit(data, formula, family, nagq=...)``: binomial (with
    trials as ``cbind(successes, failures)``), Poisson and negative binomial, random
    intercepts and correlated slopes, any grouping factors, ``nagq`` > 1 for one
    grouping factor; no zero inflation and no uncorrelated ``||`` slopes.
    ``anova_test="Wald"``: its default also refits every Poisson model without each
    term for likelihood-ratio tables, work our fit does not do.
``GPBoost``
    ``GPModel(group_data=..., likelihood=...)`` + ``fit(y, X)`` with its default
    optimiser: the Laplace approximation only, random intercepts (one or several
    factors) and uncorrelated random slopes; binary, binomial with trials
    (``binomial_logit``: proportions with the trials as weights), Poisson, NB2
    (``negative_binomial``), offsets; no zero inflation.

Every time is the median wall-clock seconds of ``--n`` fits after one warm-up fit,
data already in memory; construction of the peer's model is included (our ``fit``
builds its design too). A case a peer cannot fit is ``-`` with the reason; a peer
that raises or warns is reported, not dropped. ``dLL`` is our log-likelihood minus the
peer's (every constant included by every engine here).

``--compiled`` also times ours with ``set_config(compiled=True)`` (numba's kernels, an
optional extra; loaded in the untimed first fit), column ``ours c ms``. The summary gives
each engine's median time on the cases it fits beside ours on the same cases, and the
median over the cases of the fastest peer's time.

``--threads 1`` runs the engines with one thread each: ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``RAYON_NUM_THREADS`` (glmm's thread
pool) set to 1 in a fresh process, ``threadpoolctl`` limits and GPBoost's
``num_parallel_threads=1``; ``--threads default`` leaves every engine at its own
default. Each setting runs in its own Python process (a Rust or OpenMP thread pool is
sized once per process) and its own Rscript.

The ``throughput`` section (one process per thread setting too) times refits per
second: ``confint(method="bootstrap")`` with ``--n-boot`` replicates of the app-logins
random-slope model ``logins ~ day_centered + (day_centered | user_id)`` (1,500 rows)
and a ``power_curve`` of the power tutorial's binary model
(``y ~ time + treatment + (1 | id)``, intercept -0.5, time -0.2, OR 0.6, SD 1) at
``--power-groups`` people x 5 waves, ``--n-sim`` studies each. The bootstrap's line
gives its failed refits (dropped: not converged, or failing the gradient check) and
how many of its evaluations were batched (``sklearn_glmm._engine.batched``). The batched
refits run in greenlets where the ``greenlet`` package is installed (the library's
default), or in threads with ``--scheduler threads``: the same results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# time the library of this checkout, not whatever copy happens to be installed
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")
PEERS = ("R", "glmm", "GPBoost")
BOOT_TARGET_S = 5.0
POWER_TARGET_S = 30.0


# ---- the engines ----------------------------------------------------------------------


def _timed(fit, n):
    """Median seconds of ``n`` calls of ``fit`` after one untimed call, and the last result."""
    times, out = [], None
    for rep in range(n + 1):
        t0 = time.perf_counter()
        out = fit()
        if rep:
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), times, out


def time_ours(case: str, n: int, compiled: bool = False) -> dict:
    """Our fit of ``case``; ``compiled``: with ``set_config(compiled=True)`` (numba's
    kernels, loaded in the untimed first fit)."""
    from reference import case_data, make_estimator

    from sklearn_glmm import config_context

    spec, X, y, groups, kw = case_data(case)

    def fit():
        est = make_estimator(spec)
        with warnings.catch_warnings(), config_context(compiled=compiled):
            warnings.simplefilter("ignore")
            est.fit(X, y, groups=groups, **kw)
        return est

    med, times, est = _timed(fit, n)
    rec = est.fit_record_
    opt_s = float(getattr(rec, "seconds", float("nan")))
    return {
        "s": med,
        "times": times,
        "loglik": float(est.loglik_),
        "n_evaluations": int(rec.n_evaluations),
        "optimise_s": opt_s,
        "s_per_evaluation": opt_s / max(int(rec.n_evaluations), 1),
        "converged": bool(rec.converged),
    }


def glmm_model(spec) -> tuple[str | None, str]:
    """glmm's formula for a case, or None and the reason it cannot fit it."""
    if spec.get("zero_inflation"):
        return None, "no zero inflation"
    re_terms = spec["random_effects"]
    if any(t.startswith("diag(") for t in re_terms.values()):
        return None, "no uncorrelated slopes (|| or (0 + x | g))"
    if int(spec.get("n_agq") or 1) > 1 and len(re_terms) > 1:
        return None, "nagq > 1 needs one grouping factor"
    lhs = f"cbind({spec['y']}, failures__)" if spec.get("trials") else spec["y"]
    fixed = " + ".join(spec["X"])
    random = " + ".join(f"({t} | {g})" for g, t in re_terms.items())
    return f"{lhs} ~ {fixed} + {random}", ""


GLMM_FAMILY = {"binomial": "binomial", "poisson": "poisson", "nbinom2": "negativebinomial"}


def time_glmm(case: str, n: int) -> dict:
    import glmm
    from reference import case_data

    spec, X, y, groups, kw = case_data(case)
    formula, why = glmm_model(spec)
    if formula is None:
        return {"unsupported": why}
    data = {c: X[c].to_numpy(dtype=float) for c in X.columns}
    data[spec["y"]] = y.to_numpy(dtype=float)
    if "trials" in kw:
        data["failures__"] = kw["trials"].to_numpy(dtype=float) - data[spec["y"]]
    for g in groups.columns:
        data[g] = groups[g].to_numpy()
    offset = kw["offset"].to_numpy(dtype=float) if "offset" in kw else None
    family = GLMM_FAMILY[spec["family"]]
    nagq = int(spec.get("n_agq") or 1)
    caught = []

    def fit():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m = glmm.fit(data, formula, family, offset=offset, nagq=nagq, anova_test="Wald")
        caught[:] = sorted({f"{x.category.__name__}: {str(x.message)[:160]}" for x in w})
        return m

    try:
        med, times, m = _timed(fit, n)
    except Exception as exc:  # a peer's failure is a result
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        "s": med,
        "times": times,
        "loglik": float(m.loglik),
        "converged": bool(m.converged),
        "n_eval": int(m.n_eval) if m.n_eval is not None else None,
        "nagq": int(m.nagq),
        "warnings": caught,
        "formula": formula,
    }


def gpboost_model(spec) -> tuple[dict | None, str]:
    """GPBoost's model for a case, or None and the reason it cannot fit it."""
    if spec.get("zero_inflation"):
        return None, "no zero inflation"
    if int(spec.get("n_agq") or 1) > 1:
        return None, "Laplace only"
    re_terms = spec["random_effects"]
    slopes = []
    for g, t in re_terms.items():
        if t == "1":
            continue
        inner = t[5:-1] if t.startswith("diag(") else None
        parts = [p.strip() for p in (inner or "").split("+")]
        if inner is None or parts[0] != "1" or len(parts) != 2:
            return None, "no correlated random slopes"
        slopes.append((g, parts[1]))
    if spec["family"] == "binomial":
        likelihood = "binomial_logit" if spec.get("trials") else "bernoulli_logit"
    else:
        likelihood = {"poisson": "poisson", "nbinom2": "negative_binomial"}[spec["family"]]
    return {"likelihood": likelihood, "slopes": slopes}, ""


def time_gpboost(case: str, n: int, threads: int | None) -> dict:
    import gpboost as gpb
    from reference import case_data, fitted

    spec, X, y, groups, kw = case_data(case)
    model, why = gpboost_model(spec)
    if model is None:
        return {"unsupported": why}
    Xd = np.column_stack([np.ones(len(X)), X.to_numpy(dtype=float)])
    yd = y.to_numpy(dtype=float)
    gcols = list(groups.columns)
    args = {"likelihood": model["likelihood"], "num_parallel_threads": threads}
    if "trials" in kw:
        trials = kw["trials"].to_numpy(dtype=float)
        yd = yd / trials
        args["weights"] = trials
    if model["slopes"]:
        args["group_rand_coef_data"] = np.column_stack(
            [X[c].to_numpy(float) for _, c in model["slopes"]]
        )
        args["ind_effect_group_rand_coef"] = [gcols.index(g) + 1 for g, _ in model["slopes"]]
    gdata = groups.to_numpy()
    offset = kw["offset"].to_numpy(dtype=float) if "offset" in kw else None
    caught = []

    def fit():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            m = gpb.GPModel(group_data=gdata, **args)
            m.fit(y=yd, X=Xd, offset=offset)
        caught[:] = sorted({f"{x.category.__name__}: {str(x.message)[:160]}" for x in w})
        return m

    try:
        with _c_output() as printed:
            med, times, m = _timed(fit, n)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    caught += sorted(
        {line.strip()[:160] for line in printed if "Warning" in line or "Error" in line}
    )
    # its own objective at our estimates: tells a different optimum from a different value
    est = fitted(case)
    cov = est.random_effects_cov_
    cov_pars = [float(cov[g].iloc[0, 0]) for g in gcols]
    cov_pars += [float(cov[g].loc[c, c]) for g, c in model["slopes"]]
    eta = est.intercept_ + X.to_numpy(dtype=float) @ np.asarray(est.coef_, dtype=float)
    if offset is not None:
        eta = eta + offset
    aux = [float(est.theta_)] if model["likelihood"] == "negative_binomial" else None
    try:
        at_ours = -float(
            m.neg_log_likelihood(cov_pars=np.array(cov_pars), y=yd, fixed_effects=eta, aux_pars=aux)
        )
    except Exception:  # e.g. our NB shape is infinite (the Poisson limit, tut_nb)
        at_ours = float("nan")
    return {
        "s": med,
        "times": times,
        "loglik": -float(m.get_current_neg_log_likelihood()),
        "loglik_at_ours": at_ours,
        "warnings": caught,
        "likelihood": model["likelihood"],
        "threads": threads,
    }


@contextlib.contextmanager
def _c_output():
    """What compiled code prints to stdout / stderr meanwhile, as a list of lines."""
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            lines.extend(tmp.read().splitlines())


def time_r(cases: list[str], n: int, env: dict) -> dict:
    if shutil.which("Rscript") is None:
        return {}
    cmd = ["Rscript", str(ROOT / "benchmarks" / "time_r.R"), "--n", str(n), "--default", *cases]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def r_logliks(cases: list[str]) -> dict:
    """The fixture's log-likelihood of each case (the R engine's optimum, on our scale)."""
    from run import reference_loglik

    return {c: reference_loglik(c) for c in cases}


# ---- throughput -----------------------------------------------------------------------


@contextlib.contextmanager
def _counting_batches():
    """Counts of the batched passes and the replicate evaluations they held."""
    from sklearn_glmm._engine import batched

    counts = {"batches": 0, "evaluations": 0}
    real = batched.BatchedLaplace.evaluate

    def counted(self, idx, *args, **kwargs):
        counts["batches"] += 1
        counts["evaluations"] += len(idx)
        return real(self, idx, *args, **kwargs)

    batched.BatchedLaplace.evaluate = counted
    try:
        yield counts
    finally:
        batched.BatchedLaplace.evaluate = real


def throughput(n_boot: int, power_groups: list[int], n_sim: int, scheduler: str = "auto") -> dict:
    from sklearn_glmm import BinomialGLMM, PoissonGLMM
    from sklearn_glmm._engine import lockstep
    from sklearn_glmm.datasets import load_app_logins
    from sklearn_glmm.power import GLMMSpec, power_curve

    lockstep.USE_GREENLETS = scheduler != "threads"
    used = type(lockstep.new_lockstep(None)).__name__
    df = load_app_logins()
    est = PoissonGLMM(random_effects="1 + day_centered")
    est.fit(df[["day_centered"]], df["logins"], groups=df["user_id"])
    est.confint(method="bootstrap", n_boot=20, random_state=1)  # warm-up
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as w, _counting_batches() as batched:
        warnings.simplefilter("always")
        ci = est.confint(method="bootstrap", n_boot=n_boot, random_state=0)
    boot_s = time.perf_counter() - t0
    boot_warn = sorted({str(x.message)[:160] for x in w})

    spec = GLMMSpec(
        BinomialGLMM(random_effects="1"),
        {"(Intercept)": -0.5, "time": -0.2, "treatment": np.log(0.6)},
        random_cov=1.0,
    )
    power_curve(spec, "treatment", n_groups=[50], n_per_group=5, n_sim=10, random_state=1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = power_curve(
            spec, "treatment", n_groups=power_groups, n_per_group=5, n_sim=n_sim, random_state=0
        )
    power_s = time.perf_counter() - t0
    n_fits = n_sim * len(power_groups)
    return {
        "scheduler": used,
        "bootstrap": {
            "n_boot": n_boot,
            "rows": len(df),
            "s": boot_s,
            "refits_per_s": n_boot / boot_s,
            "target_s": BOOT_TARGET_S,
            "warnings": boot_warn,
            "n_failed": int(ci.attrs.get("n_failed", 0)),
            "batched_evaluations": batched["evaluations"],
            "batches": batched["batches"],
        },
        "power": {
            "n_groups": power_groups,
            "n_per_group": 5,
            "n_sim": n_sim,
            "s": power_s,
            "refits_per_s": n_fits / power_s,
            "target_s": POWER_TARGET_S,
            "power": [round(float(p), 3) for p in pc["power"]],
            "n_failed": int(pc["n_failed"].sum()),
        },
    }


# ---- one thread setting, in its own process -----------------------------------------------


def thread_env(threads: str) -> dict:
    env = dict(os.environ)
    for var in THREAD_VARS:
        env.pop(var, None)
        if threads == "1":
            env[var] = "1"
    return env


def worker(args) -> dict:
    """Everything of one thread setting, in this process (its environment already set)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    limiter = threadpool_limits(limits=1) if args.threads == "1" else None
    gpb_threads = 1 if args.threads == "1" else None
    out = {"threads": args.threads, "threadpools": _pools(threadpool_info()), "cases": {}}
    if "fits" in args.sections:
        for case in args.cases:
            row = {"ours": time_ours(case, args.n)}
            if args.compiled:
                row["ours_compiled"] = time_ours(case, args.n, compiled=True)
            if not args.no_glmm and _has("glmm"):
                row["glmm"] = time_glmm(case, args.n)
            if not args.no_gpboost and _has("gpboost"):
                row["GPBoost"] = time_gpboost(case, args.n, gpb_threads)
            out["cases"][case] = row
            print(
                f"  [{args.threads}] {case}: ours {1000 * row['ours']['s']:.1f} ms", file=sys.stderr
            )
    if "throughput" in args.sections:
        out["throughput"] = throughput(args.n_boot, args.power_groups, args.n_sim, args.scheduler)
    if limiter is not None:
        limiter.restore_original_limits()
    return out


def _pools(info) -> list[str]:
    return sorted({f"{p['user_api']}:{p['internal_api']}:{p['num_threads']}" for p in info})


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_setting(args, threads: str) -> dict:
    env = thread_env(threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        cmd = [sys.executable, __file__, "--worker", str(path), "--threads", threads]
        cmd += ["--n", str(args.n), "--n-boot", str(args.n_boot), "--n-sim", str(args.n_sim)]
        cmd += [
            "--sections",
            ",".join(args.sections),
            "--power-groups",
            *map(str, args.power_groups),
        ]
        cmd += ["--cases", *args.cases, "--scheduler", args.scheduler]
        cmd += ["--no-glmm"] * args.no_glmm + ["--no-gpboost"] * args.no_gpboost
        cmd += ["--compiled"] * args.compiled
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        out = json.loads(path.read_text())
    if "fits" in args.sections and not args.no_r:
        t0 = time.perf_counter()
        out["r"] = time_r(args.cases, args.n, env)
        print(f"  [{threads}] R: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


# ---- versions and the machine ---------------------------------------------------------------


def versions() -> dict:
    import numpy
    import scipy

    import sklearn_glmm

    out = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "sklearn_glmm": getattr(sklearn_glmm, "__version__", "?"),
    }
    for mod in ("glmm", "gpboost"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:
            out[mod] = None
    if shutil.which("Rscript"):
        code = (
            'cat(R.version$major, ".", R.version$minor, " ", '
            'as.character(packageVersion("lme4")), " ", '
            'as.character(packageVersion("glmmTMB")), sep="")'
        )
        r = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True)
        if r.returncode == 0:
            rv, lme4, tmb = r.stdout.split()
            out.update({"R": rv, "lme4": lme4, "glmmTMB": tmb})
    return out


def machine() -> dict:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "sklearn_glmm"], capture_output=True, text=True, cwd=ROOT
    )
    return {
        "nproc": os.cpu_count(),
        "commit": commit.stdout.strip(),
        "library_modified": bool(dirty.stdout.strip()),
        "load_start": os.getloadavg(),
    }


# ---- tables -----------------------------------------------------------------------------------


def rows_of(setting: dict, ref_ll: dict) -> list[dict]:
    from reference import load_reference

    ref = load_reference()
    rows = []
    for case, res in setting["cases"].items():
        ours = res["ours"]
        row = {
            "case": case,
            "rows": ref[case].get("nobs") or 0,
            "ours_ms": 1000 * ours["s"],
            "evals": ours["n_evaluations"],
            "ms_per_eval": 1000 * ours["s_per_evaluation"],
            "optimise_ms": 1000 * ours["optimise_s"],
        }
        if "ours_compiled" in res:
            row["compiled_ms"] = 1000 * res["ours_compiled"]["s"]
        r_s = (setting.get("r") or {}).get(case)
        row["R"] = {
            "engine": ref[case]["engine"],
            "ms": 1000 * r_s if r_s else None,
            "ratio": r_s / ours["s"] if r_s else None,
            "dll": ours["loglik"] - ref_ll[case],
        }
        for peer in ("glmm", "GPBoost"):
            p = res.get(peer)
            if p is None:
                row[peer] = {"note": "not installed"}
            elif "s" not in p:
                row[peer] = {"note": p.get("unsupported") or p.get("error")}
            else:
                row[peer] = {
                    "ms": 1000 * p["s"],
                    "ratio": p["s"] / ours["s"],
                    "dll": ours["loglik"] - p["loglik"],
                    "warnings": p.get("warnings", []),
                    "converged": p.get("converged", True),
                }
                if "loglik_at_ours" in p:
                    # > 0: the peer's optimum is above its own value at our estimates
                    row[peer]["own_gain"] = p["loglik"] - p["loglik_at_ours"]
        rows.append(row)
    return rows


def _f(x, spec):
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def render(rows: list[dict], markdown: bool) -> str:
    compiled = any("compiled_ms" in r for r in rows)
    heads = ["case", "rows", "ours ms"] + ["ours c ms"] * compiled
    heads += ["evals", "ms/eval", "rest ms"]
    heads += ["R", "R ms", "R/ours", "dLL R"]
    heads += ["glmm ms", "glmm/ours", "dLL glmm", "GPB ms", "GPB/ours", "dLL GPB"]
    notes: list[str] = []

    def cell(peer):
        if "ms" not in peer or peer["ms"] is None:
            return ["-", "-", "-"]
        return [_f(peer["ms"], ".1f"), _f(peer["ratio"], ".2f"), _f(peer["dll"], "+.4f")]

    table = []
    for row in rows:
        line = [row["case"], str(row["rows"]), _f(row["ours_ms"], ".1f")]
        line += [_f(row.get("compiled_ms"), ".1f")] * compiled + [str(row["evals"])]
        line += [_f(row["ms_per_eval"], ".2f"), _f(row["ours_ms"] - row["optimise_ms"], ".1f")]
        line += [row["R"]["engine"]]
        line += cell(row["R"]) + cell(row["glmm"]) + cell(row["GPBoost"])
        table.append(line)
        for peer in ("glmm", "GPBoost"):
            p = row[peer]
            if p.get("note"):
                notes.append(f"{row['case']}, {peer}: {p['note']}")
            for w in p.get("warnings", []):
                notes.append(f"{row['case']}, {peer} warned: {w}")
            if p.get("converged") is False:
                notes.append(f"{row['case']}, {peer}: not converged")
            if "own_gain" in p and not np.isfinite(p["own_gain"]) and abs(p["dll"]) > 0.01:
                notes.append(
                    f"{row['case']}, {peer}: dLL {p['dll']:+.4f}; its value at our estimates "
                    "is not available (our NB shape is infinite: the Poisson limit)"
                )
            elif "own_gain" in p and abs(p["dll"]) > 0.01:
                gap = p["own_gain"] + p["dll"]  # ours minus the peer's value, at our estimates
                why = (
                    f"at our estimates its log-likelihood is {-gap:+.4f} from ours: "
                    "a different approximation"
                    if abs(gap) > 0.01
                    else f"the same objective at our estimates (to {abs(gap):.4f}); its optimum is "
                    f"{p['own_gain']:+.4f} from its value at ours: it stopped elsewhere"
                )
                notes.append(f"{row['case']}, {peer}: dLL {p['dll']:+.4f}; {why}")
            elif "dll" in p and abs(p["dll"]) > 0.01:
                notes.append(f"{row['case']}, {peer}: a different optimum, dLL {p['dll']:+.4f}")
    notes = list(dict.fromkeys(notes))
    if markdown:
        out = ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
        out += ["| " + " | ".join(line) + " |" for line in table]
    else:
        widths = [17, 6, 9] + [10] * compiled + [6, 9, 9, 9, 9, 8, 9, 9, 10, 10, 9, 9, 10]
        out = [
            "".join(
                f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(zip(heads, widths))
            )
        ]
        for line in table:
            out.append(
                "".join(
                    f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(line, widths))
                )
            )
    summary = summarise(rows)
    return "\n".join(out + [""] + summary + [""] + [f"- {n}" for n in notes])


def summarise(rows: list[dict]) -> list[str]:
    out = [
        f"median ours: {np.median([r['ours_ms'] for r in rows]):.1f} ms; "
        f"median evaluations per fit: {np.median([r['evals'] for r in rows]):.0f}; "
        f"median ms per evaluation: {np.median([r['ms_per_eval'] for r in rows]):.2f}"
    ]
    if any("compiled_ms" in r for r in rows):
        ratios = [r["compiled_ms"] / r["ours_ms"] for r in rows if "compiled_ms" in r]
        out.append(
            f"median ours compiled (set_config(compiled=True)): "
            f"{np.median([r['compiled_ms'] for r in rows if 'compiled_ms' in r]):.1f} ms; "
            f"compiled/numpy median {np.median(ratios):.2f}, range "
            f"{min(ratios):.2f}-{max(ratios):.2f}"
        )
    for peer in ("R", "glmm", "GPBoost"):
        ratios = [r[peer]["ratio"] for r in rows if r[peer].get("ratio")]
        if ratios:
            faster = sum(x < 1 for x in ratios)
            out.append(
                f"{peer}/ours: median {np.median(ratios):.2f}, "
                f"range {min(ratios):.2f}-{max(ratios):.2f}, "
                f"peer faster on {faster} of {len(ratios)} cases"
            )
    # each engine's median time on the cases it fits, beside ours on the same cases: the
    # level a median-time target can be read against on this machine
    for peer in ("R", "glmm", "GPBoost"):
        both = [(r[peer]["ms"], r["ours_ms"]) for r in rows if r[peer].get("ms")]
        if both:
            theirs, ours = zip(*both)
            out.append(
                f"{peer} median: {np.median(theirs):.1f} ms on the {len(both)} cases it fits "
                f"(ours {np.median(ours):.1f} ms on the same cases)"
            )
    fastest, best = [], []
    for r in rows:
        peers = [(r[p]["ms"], p) for p in PEERS if r[p].get("ms")]
        if peers:
            ms, p = min(peers)
            best.append((ms, r["ours_ms"]))
            if ms < r["ours_ms"]:
                fastest.append(f"{r['case']} ({p} {ms / r['ours_ms']:.2f}x)")
    if best:
        peer_ms, ours_ms = zip(*best)
        out.append(
            f"fastest peer per case, median: {np.median(peer_ms):.1f} ms on {len(best)} cases "
            f"(ours {np.median(ours_ms):.1f} ms on the same cases)"
        )
    out.append(f"cases where a peer is faster than ours: {', '.join(fastest) or 'none'}")
    return out


def render_throughput(tp: dict, threads: str) -> str:
    b, p = tp["bootstrap"], tp["power"]
    met = {True: "met", False: "NOT met"}
    return "\n".join(
        [
            f"threads={threads}: batched refits scheduled by {tp.get('scheduler', '?')}",
            f"threads={threads}: bootstrap {b['n_boot']} replicates of the app-logins random-slope "
            f"model: {b['s']:.2f} s = {b['refits_per_s']:.0f} refits/s "
            f"(target < {b['target_s']:.0f} s: {met[b['s'] < b['target_s']]}); "
            f"{b['n_failed']} failed; {b['batched_evaluations']} evaluations in "
            f"{b['batches']} batched passes",
            f"threads={threads}: power curve {len(p['n_groups'])} sizes "
            f"({p['n_groups']} x 5 waves) "
            f"x {p['n_sim']} simulations: {p['s']:.1f} s = {p['refits_per_s']:.0f} refits/s "
            f"(target < {p['target_s']:.0f} s: {met[p['s'] < p['target_s']]}); "
            f"power {p['power']}, {p['n_failed']} failed",
        ]
    )


# ---- main --------------------------------------------------------------------------------------


def main(argv=None):
    from reference import case_names

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=None, help="reference cases (default: all)")
    ap.add_argument(
        "--n", type=int, default=5, help="timed fits per engine and case, after a warm-up"
    )
    ap.add_argument("--threads", nargs="+", choices=["1", "default"], default=["1", "default"])
    ap.add_argument(
        "--sections", type=lambda s: s.split(","), default=["fits"], help="fits,throughput"
    )
    ap.add_argument(
        "--scheduler",
        choices=["auto", "threads"],
        default="auto",
        help="batched refits in greenlets where installed (auto) or in threads",
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-sim", type=int, default=500)
    ap.add_argument("--power-groups", type=int, nargs="+", default=[100, 200, 300, 400, 500, 600])
    ap.add_argument("--no-r", action="store_true", help="skip lme4 / glmmTMB")
    ap.add_argument("--no-glmm", action="store_true")
    ap.add_argument("--no-gpboost", action="store_true")
    ap.add_argument(
        "--compiled",
        action="store_true",
        help="also time ours with set_config(compiled=True) (needs numba): column 'ours c ms'",
    )
    ap.add_argument("--json", type=Path, help="write every measurement to this JSON file")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.cases = args.cases or case_names()
    if args.worker:
        args.threads = args.threads[0]
        args.worker.write_text(json.dumps(worker(args)))
        return
    meta = {"machine": machine(), "versions": versions(), "n": args.n}
    settings = {}
    for threads in args.threads:
        settings[threads] = run_setting(args, threads)
    meta["machine"]["load_end"] = os.getloadavg()
    ref_ll = r_logliks(args.cases)
    print(f"versions: {meta['versions']}")
    print(
        f"load average at start {meta['machine']['load_start']}, "
        f"at end {meta['machine']['load_end']}"
    )
    for threads, setting in settings.items():
        print(f"\nthreads={threads} ({', '.join(setting['threadpools'])})")
        if setting["cases"]:
            rows = rows_of(setting, ref_ll)
            setting["rows"] = rows
            print(render(rows, args.markdown))
        if "throughput" in setting:
            print(render_throughput(setting["throughput"], threads))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "settings": settings}, indent=1))


if __name__ == "__main__":
    main()
