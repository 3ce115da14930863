"""Negative binomial fits whose shape runs to the Poisson limit (a flat ridge in log theta).

Generated panels (fixed seeds): counts with no overdispersion or very little (theta of
500 or 5,000, at these sizes often estimated as infinite) and, for comparison, theta = 50;
every third one fitted with zero inflation. Each is fitted twice: as the library does
(L-BFGS-B leaves the ridge once less than ``RIDGE_GAIN`` is left to gain along it,
``ridge._ridge_stop``) and with the ridge followed to L-BFGS-B's own stop (the rule
switched off on ``optimize``, where ``fit_objective`` reads it). Reported per data set
and in total: outer evaluations (``fit_record_.n_evaluations``), CPU seconds, the
log-likelihood difference and whether both converged.

    python benchmarks/run_flat_ridge.py [--sets 40] [--json out.json]

``--families`` instead fits 60 panels of the other families with a flat side (NB1,
beta-binomial, zero-truncated NB2, hurdle NB2, zero-inflated Poisson; counts without the
extra dispersion or zeros) once each and prints evaluations, log-likelihood, convergence
and warnings: run it in two checkouts to compare them.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM
from sklearn_glmm._engine import optimize

THETAS = (np.inf, 500.0, 50.0, 5000.0)


def _panel(rng, groups, times):
    """A balanced panel: the number of groups, each row's group and time."""
    G, T = int(rng.integers(*groups)), int(rng.integers(*times))
    return G, np.repeat(np.arange(G), T), np.tile(np.arange(T, dtype=float), G)


def data(seed):
    rng = np.random.default_rng(100 + seed)
    G, g, t = _panel(rng, (20, 200), (3, 10))
    theta = THETAS[seed % len(THETAS)]
    mu = np.exp(rng.normal(0.5, 1) + 0.1 * t + rng.normal(0, rng.uniform(0.1, 1), G)[g])
    y = rng.poisson(mu if np.isinf(theta) else rng.gamma(theta, mu / theta))
    return pd.DataFrame({"t": t}), y, g, theta, seed % 3 == 0


def fit(X, y, g, zi, ridge_stop):
    saved = optimize._ridge_stop
    if not ridge_stop:
        optimize._ridge_stop = lambda obj, bounds: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.process_time()
            m = NegBinGLMM(zero_inflation=zi).fit(X, y, groups=g)
            return m, time.process_time() - t0
    finally:
        optimize._ridge_stop = saved


FAMILIES = ("nb1", "betabinomial", "hurdle_nb2", "truncated_nb2", "zip")


def family_panel(seed):
    """One panel of ``--families``: the estimator, X, y, groups and fit keywords."""
    rng = np.random.default_rng(500 + seed)
    G, g, t = _panel(rng, (20, 120), (3, 9))
    kind = FAMILIES[seed % len(FAMILIES)]
    eta = rng.normal(0.5, 0.7) + 0.1 * t + rng.normal(0, rng.uniform(0.1, 1), G)[g]
    X, kw = pd.DataFrame({"t": t}), {}
    if kind == "betabinomial":
        n = rng.integers(5, 20, len(g))
        y = rng.binomial(n, 1 / (1 + np.exp(-eta)))
        return kind, BinomialGLMM(family="betabinomial"), X, y, g, dict(trials=n)
    y = rng.poisson(np.exp(eta))
    if kind == "truncated_nb2":
        keep = y > 0
        return kind, NegBinGLMM(truncated=True), X[keep], y[keep], g[keep], kw
    est = {
        "nb1": NegBinGLMM(family="nbinom1"),
        "hurdle_nb2": NegBinGLMM(hurdle=True),
        "zip": PoissonGLMM(zero_inflation=True),
    }[kind]
    return kind, est, X, y, g, kw


def families(n_sets=60):
    total = 0
    print("set  family          evaluations  loglik            converged  warnings")
    for seed in range(n_sets):
        kind, est, X, y, g, kw = family_panel(seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X, y, groups=g, **kw)
        names = sorted({w.category.__name__ for w in caught})
        total += est.fit_record_.n_evaluations
        print(
            f"{seed:3d}  {kind:14s} {est.fit_record_.n_evaluations:6d}   {est.loglik_:16.8f}  "
            f"{str(bool(est.converged_)):9s}  {', '.join(names)}"
        )
    print(f"evaluations in all: {total}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=40)
    ap.add_argument("--json", default=None)
    ap.add_argument("--families", action="store_true")
    args = ap.parse_args()
    if args.families:
        families()
        return
    rows = []
    print("set   rows  theta  zi  evaluations  CPU ms (ridge followed -> left)  dLL  converged")
    for seed in range(args.sets):
        X, y, g, theta, zi = data(seed)
        fit(X, y, g, zi, True)  # warm-up
        old, t_old = fit(X, y, g, zi, False)
        new, t_new = fit(X, y, g, zi, True)
        r = dict(
            set=seed,
            rows=len(y),
            theta=theta,
            zero_inflation=zi,
            evals_followed=old.fit_record_.n_evaluations,
            evals_left=new.fit_record_.n_evaluations,
            cpu_followed=t_old,
            cpu_left=t_new,
            dll=new.loglik_ - old.loglik_,
            converged=(bool(old.converged_), bool(new.converged_)),
            theta_hat=(float(old.theta_), float(new.theta_)),
        )
        rows.append(r)
        print(
            f"{seed:3d} {len(y):6d} {theta:6.0f} {int(zi):3d}  {r['evals_followed']:4d} -> "
            f"{r['evals_left']:4d}   {1e3 * t_old:7.1f} -> {1e3 * t_new:7.1f}   "
            f"{r['dll']:+.1e}  {r['converged']}"
        )
    ridge = [r for r in rows if np.isinf(r["theta_hat"][0])]
    for label, sel in (("all", rows), ("fits ending on the bound", ridge)):
        e0 = sum(r["evals_followed"] for r in sel)
        e1 = sum(r["evals_left"] for r in sel)
        c0 = sum(r["cpu_followed"] for r in sel)
        c1 = sum(r["cpu_left"] for r in sel)
        print(
            f"{label} ({len(sel)}): evaluations {e0} -> {e1} ({e1 / e0:.2f}x), "
            f"CPU {c0:.2f} -> {c1:.2f} s ({c1 / c0:.2f}x)"
        )
    print(f"largest |dLL|: {max(abs(r['dll']) for r in rows):.1e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
