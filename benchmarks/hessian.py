"""The Hessian at the optimum: the closed form against differences of the gradient.

Usage (from the repository root)::

    python benchmarks/hessian.py                  # every reference case the closed form covers
    python benchmarks/hessian.py pois_ri bin_rs --repeats 100

For each reference case, the fitted model's objective is rebuilt at its optimum and the
Hessian the checks at the optimum compute (``hessian._hessian``) is timed both ways,
alternating call by call in one process under one BLAS thread (as the fits): as the
fits compute it (in closed form, ``_engine/laplace_hessian.py``, where it applies, or
``_engine/laplace_hessian_factors.py`` for crossed and nested factors where its cost model
takes it; a family parameter's row and column by a difference; for a quadrature fit
with one scalar random effect, ``_engine/agq_hessian.py``) and by central differences
of the gradient alone (the closed form switched off). Prints the medians of process CPU
time, their ratio and the largest difference between the two Hessians relative to
their largest entry (the differences' error, about 1e-7). Cases the closed form does
not cover are listed as such.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from reference import case_data, case_names, make_estimator  # noqa: E402

from sklearn_glmm._engine.blas import single_threaded_blas  # noqa: E402
from sklearn_glmm._engine.hessian import _hessian  # noqa: E402
from sklearn_glmm._engine.objective import Objective  # noqa: E402


def _differences_only(obj, x):
    """``obj``'s Hessian at ``x`` by differences of the gradient (the closed form
    declined)."""
    obj.exact_hessian_block = lambda: None
    try:
        return _hessian(obj, x)
    finally:
        del obj.exact_hessian_block


def time_case(name: str, repeats: int):
    spec, X, y, groups, kw = case_data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make_estimator(spec).fit(X, y, groups=groups, **kw)
    # the fitted approximation's objective: Laplace, or the quadrature's
    obj = Objective(est.fit_result_.objective.data, int(spec.get("n_agq") or 1))
    x = np.asarray(est.fit_record_.final, dtype=float)
    obj.value_and_grad(x)
    if obj.exact_hessian_block() is None:
        return None
    closed, diff = [], []
    with single_threaded_blas():  # as the fits compute it
        for _ in range(repeats):
            closed_one, diff_one = _time_pair(obj, x)
            closed.append(closed_one)
            diff.append(diff_one)
    H, H_diff = _hessian(obj, x), _differences_only(obj, x)
    gap = float(np.abs(H - H_diff).max() / np.abs(H).max())
    return len(y), len(x), float(np.median(closed)), float(np.median(diff)), gap


def _time_pair(obj, x):
    """Process CPU time of the Hessian as the fits take it, then by differences."""
    t = time.process_time()
    _hessian(obj, x)
    closed = time.process_time() - t
    t = time.process_time()
    _differences_only(obj, x)
    return closed, time.process_time() - t


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="reference cases (default: all)")
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args(argv)
    names = args.cases or case_names()
    print(
        f"{'case':18s} {'rows':>6s} {'params':>6s} {'closed ms':>10s} {'diff ms':>9s} "
        f"{'ratio':>6s} {'|gap|':>8s}"
    )
    for name in names:
        out = time_case(name, args.repeats)
        if out is None:
            print(f"{name:18s} (differences: not covered by the closed form)")
            continue
        n, k, tc, td, gap = out
        print(
            f"{name:18s} {n:6d} {k:6d} {1e3 * tc:10.2f} {1e3 * td:9.2f} {tc / td:6.2f} {gap:8.1e}"
        )


if __name__ == "__main__":
    main()
