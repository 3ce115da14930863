"""Cost of adaptive quadrature with a vector random effect (issue 16, item 2).

A binary outcome, 300 people x 7 visits, random intercept and slope in time (and a
third random effect for the q = 3 rows): seconds per fit (median of ``--n`` fits after
one warm-up) and the ratio to the Laplace fit of the same model, beside the random
intercept model (q = 1) with Laplace and scalar quadrature. ``--ordinal``: instead, a
five-class ordinal outcome, 1,000 people x 8 rows, random intercept and slope with SDs
1 and 0.5 (the case of docs/ordinal.md), Laplace against ``n_agq`` 5 and 9.

    python benchmarks/run_agq_vector.py [--n 5] [--ordinal]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy.special import expit

from sklearn_glmm import BinomialGLMM, OrdinalGLMM
from sklearn_glmm._engine.families import make_family


def data(seed=0, G=300, T=7):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(G), T)
    t = np.tile(np.arange(T), G) / (T - 1.0)
    x = rng.normal(size=G * T)
    trt = np.repeat(rng.integers(0, 2, G), T) * 1.0
    b = rng.multivariate_normal([0, 0, 0], np.diag([1.5, 0.8, 0.3]), G)
    eta = -0.4 + 0.8 * t - 0.5 * trt * t + 0.5 * x + b[ids, 0] + b[ids, 1] * t + b[ids, 2] * x
    y = rng.binomial(1, expit(eta))
    return pd.DataFrame({"t": t, "x": x, "trt": trt}), y, ids


def ordinal_data(seed=0, G=1000, T=8):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(G), T)
    t = np.tile(np.arange(T), G) / (T - 1.0)
    b = rng.normal(size=(G, 2)) * [1.0, 0.5]
    eta = 0.5 * t + b[ids, 0] + b[ids, 1] * t
    cuts = np.array([-1.0, 0.0, 1.0, 2.0])
    y = make_family("ordinal", n_classes=5).sample_eta(eta, None, cuts, rng).astype(int)
    return pd.DataFrame({"t": t}), pd.Categorical(y + 1, ordered=True), ids


def seconds(model, X, y, ids, n):
    times = []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        m = model.fit(X, y, groups=ids)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:])), m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--ordinal", action="store_true")
    args = ap.parse_args()
    n = args.n
    X, y, ids = ordinal_data() if args.ordinal else data()
    rows = []
    models = (("1", "q=1: 1"), ("1 + t", "q=2: 1 + t"), ("1 + t + x", "q=3: 1 + t + x"))
    for re, label in models[1:2] if args.ordinal else models:
        agqs = (
            (1, 9, 15, 25) if re == "1" else (1, 3, 5, 7, 9, 15) if re == "1 + t" else (1, 3, 5, 7)
        )
        agqs = (1, 5, 9) if args.ordinal else agqs
        estimator = OrdinalGLMM if args.ordinal else BinomialGLMM
        base = None
        for k in agqs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s, m = seconds(estimator(random_effects=re, n_agq=k), X, y, ids, n)
            base = s if k == 1 else base
            nodes = k ** {"1": 1, "1 + t": 2, "1 + t + x": 3}[re]
            rows.append((label, k, nodes, s, s / base, m.loglik_, m.fit_record_.n_evaluations))
    print(
        "| model | n_agq | nodes per level | seconds per fit | vs Laplace | logLik | evaluations |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, k, nodes, s, r, ll, ev in rows:
        print(f"| {label} | {k} | {nodes} | {s:.3f} | {r:.1f}x | {ll:.4f} | {ev} |")


if __name__ == "__main__":
    main()
