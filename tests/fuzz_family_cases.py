"""Seeded generator of NB1 and beta-binomial data sets for the fuzz tests against the truth.

``make_family_case(seed)`` returns one data set and its model as a dict, in the form of
``fuzz_cases.make_case`` (``X``, ``y``, ``groups``, ``estimator``, ``params``,
``fit_params``, ``family``, ``zero_inflation``, ``checkable``, ``scenario``,
``description``), with ``family`` ``"negbin1"`` (``NegBinGLMM(family="nbinom1")``) or
``"betabinomial"`` (``BinomialGLMM(family="betabinomial")``, with ``trials``) and
``dispersion``, the ``phi`` the data were drawn with (0: Poisson data for NB1; ``inf``:
binomial data for the beta-binomial). One grouping factor with a scalar random
intercept, so every data set is checkable by brute force.

Scenarios, for both families: ordinary data; raw-scale predictors (calendar time around
19,000, values times 1e6, uncentred); tiny data (10-30 rows); 2-4 groups; no or nearly no
overdispersion (``phi`` on its bound: 0 for NB1, infinity for the beta-binomial) and strong
overdispersion; for NB1 many zeros (means of 0.02-0.3), large counts (means 1e3-1e5) and
zero inflation; for the beta-binomial small trials (2-3, with rows of one trial), large
trials (100-10,000) and rare successes. Adaptive quadrature (2-25 nodes, 25 in a third of
them), offsets and prior weights on top.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fuzz_harness import (
    add_offset,
    add_weights,
    beta_binomial_probabilities,
    group_codes,
    group_labels,
    group_sizes,
    log_exposures,
    predictor_columns,
    predictor_kinds,
)
from scipy.special import expit

from sklearn_glmm import BinomialGLMM, NegBinGLMM

NB1_SCENARIOS = {
    "ordinary": 0.16,
    "raw_scale": 0.12,
    "tiny": 0.1,
    "few_groups": 0.08,
    "many_zeros": 0.1,
    "no_overdispersion": 0.12,
    "strong_overdispersion": 0.1,
    "large_counts": 0.08,
    "zero_inflation": 0.06,
    "agq": 0.08,
}
BETABINOMIAL_SCENARIOS = {
    "ordinary": 0.16,
    "raw_scale": 0.1,
    "tiny": 0.1,
    "few_groups": 0.08,
    "small_trials": 0.12,
    "large_trials": 0.1,
    "no_overdispersion": 0.12,
    "strong_overdispersion": 0.1,
    "rare": 0.06,
    "agq": 0.06,
}


def make_family_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_260_301, seed])
    family = "negbin1" if rng.random() < 0.5 else "betabinomial"
    table = NB1_SCENARIOS if family == "negbin1" else BETABINOMIAL_SCENARIOS
    scenario = str(rng.choice(list(table), p=list(table.values())))
    notes = []

    n, n_groups = group_sizes(rng, scenario, (60, 250), (5, 35), (20, 150))
    n_groups = min(n_groups, n)
    codes = group_codes(rng, n, n_groups, balanced=rng.random() < 0.4)

    kinds = predictor_kinds(rng, 3, scenario == "raw_scale", 0.15)
    cols, std_cols = predictor_columns(rng, n, kinds, notes)
    X = pd.DataFrame(cols)
    gamma = rng.normal(0.0, 0.5, len(kinds))

    sigma = float(rng.choice([0.0, 0.3, 0.7, 1.2, 2.0], p=[0.1, 0.25, 0.3, 0.22, 0.13]))
    u = rng.normal(size=n_groups) * sigma
    groups = group_labels(rng, codes, "g")
    notes.append(f"groups={n_groups} sigma={sigma}")

    # the dispersion the data are drawn with
    if scenario == "no_overdispersion":
        phi = float(rng.choice([0.0, 0.0, 1e-3] if family == "negbin1" else [np.inf, np.inf, 1e4]))
    elif scenario == "strong_overdispersion":
        phi = float(rng.choice([10.0, 50.0, 300.0] if family == "negbin1" else [0.1, 0.3, 0.8]))
    elif family == "negbin1":
        phi = float(rng.choice([0.2, 0.7, 2.0, 5.0]))
    else:
        phi = float(rng.choice([1.5, 4.0, 15.0, 60.0]))
    notes.append(f"phi={phi:g}")

    if family == "negbin1":
        b0 = float(rng.normal(np.log(3.0), 0.8))
        if scenario == "many_zeros":
            b0 = float(np.log(rng.uniform(0.02, 0.3)))
        elif scenario == "large_counts":
            b0 = float(np.log(10 ** rng.uniform(3.0, 5.0)))
    else:
        b0 = float(rng.normal(0.0, 1.0))
        if scenario == "rare":
            b0 = float(np.log(rng.uniform(0.005, 0.05)))
    eta = b0 + sum(g * c for g, c in zip(gamma, std_cols)) + u[codes]

    fit_params = {}
    if rng.random() < 0.15:
        if family == "negbin1":  # log exposures
            off = log_exposures(rng, n, [0, 0, 2])
        else:
            off = rng.normal(0.0, 0.5, n)
        eta = add_offset(eta, off, fit_params, notes, centred=family == "negbin1")
    add_weights(rng, n, fit_params, notes, 0.12, keep=0)
    n_agq = 1
    if scenario == "agq" or rng.random() < 0.2:
        # 25 nodes (checked against the integral itself) in a third of them
        n_agq = 25 if rng.random() < 0.35 else int(rng.integers(2, 25))
    zero_inflation = scenario == "zero_inflation"

    if family == "negbin1":
        mu = np.exp(eta)
        lam = mu if phi == 0.0 else rng.gamma(mu / phi, phi)
        y = rng.poisson(lam).astype(float)
        if zero_inflation:
            y[rng.random(n) < rng.uniform(0.1, 0.4)] = 0.0
            notes.append("zero_inflation")
        if np.all(y == 0):
            y[int(rng.integers(n))] = 1.0
        estimator, params = NegBinGLMM, {"family": "nbinom1"}
    else:
        if scenario == "small_trials":
            trials = rng.choice([1, 2, 2, 3], size=n)
        elif scenario == "large_trials":
            trials = rng.integers(100, int(10 ** rng.uniform(2.5, 4.0)) + 1, n)
        else:
            trials = rng.integers(1, int(rng.choice([5, 12, 40])) + 1, n)
        trials[int(rng.integers(n))] = max(2, trials.max())  # phi needs a row of 2 or more
        mu = expit(eta)
        prob = beta_binomial_probabilities(rng, mu, phi)
        y = rng.binomial(trials, prob).astype(float)
        fit_params["trials"] = trials.astype(float)
        notes.append(f"trials<={trials.max()}")
        estimator, params = BinomialGLMM, {"family": "betabinomial"}

    params["random_effects"] = "1"
    if n_agq > 1:
        params["n_agq"] = n_agq
        notes.append(f"n_agq={n_agq}")
    if zero_inflation:
        params["zero_inflation"] = True
    return {
        "seed": seed,
        "scenario": scenario,
        "family": family,
        "zero_inflation": zero_inflation,
        "dispersion": phi,
        "X": X,
        "y": y,
        "groups": groups,
        "estimator": estimator,
        "params": params,
        "fit_params": fit_params,
        "checkable": True,
        "description": f"{scenario} {family} n={n} " + " ".join(notes),
    }
