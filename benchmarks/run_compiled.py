"""The compiled mode search (``set_config(compiled=True)``, numba) against the numpy
code: CPU time per fit of the reference cases it covers, and the power curve's refits.

Usage (from the repository root; needs numba)::

    python benchmarks/run_compiled.py                    # the covered cases, 8 rounds
    python benchmarks/run_compiled.py --rounds 4 --power 100

Both settings run in one process, alternating fit by fit (``--n`` fits of a case with
one setting, then with the other, then again, for ``--rounds`` rounds), so that both
see the same load of the machine; the time of a case is the 10th percentile of its
fits' process CPU times under each setting. The first fit of each setting is a warm-up
(numba loads the compiled kernel there: about 0.4 s, or a few seconds when it compiles
it for the first time, reported separately). Prints each case's two times, their ratio
(compiled / numpy) and the largest difference of the estimates; ``--json PATH`` writes
them. ``--power N`` also times ``power_curve`` (the power tutorial's binary model, 6
sample sizes x ``N`` simulations) under each setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from reference import COMPILED_CASES, case_data, make_estimator  # noqa: E402

from sklearn_glmm import config_context  # noqa: E402


def _fit(case, compiled):
    spec, X, y, groups, kw = case_data(case)
    est = make_estimator(spec)
    with config_context(compiled=compiled), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.process_time()
        est.fit(X, y, groups=groups, **kw)
        return time.process_time() - t0, est


def first_fits() -> dict:
    """Wall time of the first fit with each setting (the numba import and the kernel's
    load, or its compilation, fall in the compiled one)."""
    out = {}
    for compiled in (False, True):
        t0 = time.perf_counter()
        _fit("binom_trials", compiled)
        out["compiled" if compiled else "numpy"] = time.perf_counter() - t0
    return out


def time_cases(cases, n, rounds) -> dict:
    times = {c: {False: [], True: []} for c in cases}
    last = {}
    for r in range(rounds):
        for case in cases:
            for compiled in (False, True) if r % 2 == 0 else (True, False):
                for _ in range(n):
                    t, est = _fit(case, compiled)
                    times[case][compiled].append(t)
                last[case, compiled] = est
    out = {}
    for case in cases:
        a, b = last[case, False], last[case, True]
        t0 = float(np.percentile(times[case][False], 10))
        t1 = float(np.percentile(times[case][True], 10))
        out[case] = {
            "numpy_ms": 1e3 * t0,
            "compiled_ms": 1e3 * t1,
            "ratio": t1 / t0,
            "max_param_diff": float(np.max(np.abs(a.fit_result_.params - b.fit_result_.params))),
            "loglik_diff": float(b.loglik_ - a.loglik_),
            "evaluations": [a.fit_record_.n_evaluations, b.fit_record_.n_evaluations],
        }
    return out


def time_power(n_sim: int) -> dict:
    """``power_curve`` of the power tutorial's binary model (100-600 people x 5 waves,
    as ``run_peers.py --sections throughput``) under each setting."""
    from sklearn_glmm import BinomialGLMM
    from sklearn_glmm.power import GLMMSpec, power_curve

    spec = GLMMSpec(
        BinomialGLMM(random_effects="1"),
        {"(Intercept)": -0.5, "time": -0.2, "treatment": np.log(0.6)},
        random_cov=1.0,
    )
    out = {}
    for compiled in (False, True) if n_sim else ():
        with config_context(compiled=compiled), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            power_curve(spec, "treatment", n_groups=[50], n_per_group=5, n_sim=5, random_state=1)
            t0 = time.perf_counter()
            pc = power_curve(
                spec,
                "treatment",
                n_groups=[100, 200, 300, 400, 500, 600],
                n_per_group=5,
                n_sim=n_sim,
                random_state=0,
            )
            out["compiled" if compiled else "numpy"] = {
                "seconds": time.perf_counter() - t0,
                "power": [round(float(p), 3) for p in pc["power"]],
            }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", default=",".join(COMPILED_CASES))
    ap.add_argument("--n", type=int, default=5, help="fits per case, setting and round")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--power", type=int, default=0, help="simulations per size (0: none)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    first = first_fits()
    print(
        f"first fit of a process: numpy {first['numpy']:.3f} s, "
        f"compiled {first['compiled']:.3f} s (numba's import and the kernel's load)"
    )
    res = time_cases(args.cases.split(","), args.n, args.rounds)
    print(f"{'case':18s} {'numpy ms':>9s} {'compiled ms':>12s} {'ratio':>6s} {'d param':>8s}")
    for case, r in res.items():
        print(
            f"{case:18s} {r['numpy_ms']:9.2f} {r['compiled_ms']:12.2f} {r['ratio']:6.2f} "
            f"{r['max_param_diff']:8.1e}"
        )
    ratios = [r["ratio"] for r in res.values()]
    print(f"median ratio {np.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}")
    power = time_power(args.power)
    for name, p in power.items():
        print(f"power_curve ({args.power} simulations per size), {name}: {p['seconds']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(first=first, cases=res, power=power), indent=1))


if __name__ == "__main__":
    main()
