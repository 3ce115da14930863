"""Seeded generator of hard zero-truncated and hurdle data sets, for the fuzz of their fits
against the truth's global optimum (``test_fuzz_truth_hurdle_global.py``).

``make_global_case(seed)`` returns one data set and its model as a dict, in the form of
``fuzz_hurdle_cases.make_hurdle_case`` (``X``, ``y``, ``groups``, ``estimator``,
``params``, ``fit_params``, ``family``, ``model``, ``zero_terms``, ``disp_terms``,
``count_columns``, ``zero_inflation``, ``checkable``, ``scenario``, ``description``), so
that module's ``truth_data`` and ``fitted_params`` read it:

- ``model``: ``"truncated"`` (``truncated=True``; ``y`` without zeros) or ``"hurdle"``
  (``hurdle=True``, or ``hurdle="1 + z"`` with ``zero_terms``);
- ``family``: ``"poisson"``, ``"negbin"`` (NB2) or ``"negbin1"`` (``family="nbinom1"``);
  NB2 with ``dispersion="1 + x"`` in a quarter of its data sets (``disp_terms``: a
  column of the count part, or one of its own named in ``random_only_columns``).

One grouping factor with a scalar random intercept in the count part, Laplace in most
data sets and AGQ with 3-9 nodes in some, so the truth's objective is the library's.
The data are those where the likelihood of such a model has more than one hill or a
ridge to a limit: small means (a mean before truncation of 0.02-0.5: positive counts
nearly all 1), Poisson-like counts fitted by NB2 or NB1 (theta infinite or 1e3-1e5, phi
0 or 1e-3), strong overdispersion (theta 0.05-0.3, phi 10-80), few groups (2-5), tiny
groups (one to three rows each), many zeros in the hurdle (a zero part of 0.85-0.97:
a handful of positive counts), and ordinary data beside them; prior weights and offsets
on top of any of them (a fifth each).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fuzz_harness import (
    add_offset,
    add_weights,
    group_codes,
    group_labels,
    log_exposures,
    predictor_columns,
    zero_part_predictor,
)
from fuzz_hurdle_cases import _positive
from scipy.special import expit

from sklearn_glmm import NegBinGLMM, PoissonGLMM

SCENARIOS = {
    "small_means": 0.22,
    "poisson_like": 0.16,
    "strong_overdispersion": 0.14,
    "few_groups": 0.12,
    "tiny_groups": 0.12,
    "many_zeros": 0.12,
    "ordinary": 0.12,
}
# (model, with a zero-part design)
MODELS = {
    ("truncated", False): 0.45,
    ("hurdle", False): 0.35,
    ("hurdle", True): 0.2,
}
FAMILIES = {"poisson": 0.2, "negbin": 0.55, "negbin1": 0.25}


def _dispersion(rng, family, scenario, notes):
    """NB2's log theta or NB1's phi for the scenario."""
    theta, phi = np.inf, 0.0
    if family == "negbin":
        if scenario == "poisson_like":
            log_theta = float(rng.choice([np.inf, np.log(1e3), np.log(1e5)]))
        elif scenario == "strong_overdispersion":
            log_theta = float(np.log(rng.choice([0.05, 0.1, 0.3])))
        else:
            log_theta = float(np.log(rng.choice([0.5, 1.0, 3.0, 10.0])))
        theta = np.exp(log_theta)
        notes.append(f"log_theta={log_theta:.3g}")
    elif family == "negbin1":
        if scenario == "poisson_like":
            phi = float(rng.choice([0.0, 1e-3]))
        elif scenario == "strong_overdispersion":
            phi = float(rng.choice([10.0, 30.0, 80.0]))
        else:
            phi = float(rng.choice([0.3, 1.0, 3.0]))
        notes.append(f"phi={phi:g}")
    return theta, phi


def make_global_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_261_206, seed])
    keys = list(MODELS)
    model, zero_design = keys[int(rng.choice(len(keys), p=list(MODELS.values())))]
    family = str(rng.choice(list(FAMILIES), p=list(FAMILIES.values())))
    scenario = str(rng.choice(list(SCENARIOS), p=list(SCENARIOS.values())))
    if scenario == "many_zeros" and model == "truncated":
        scenario = "small_means"  # (no zeros to have many of)
    disp_model = family == "negbin" and rng.random() < 0.25
    notes = []

    n = int(rng.integers(30, 160))
    n_groups = int(rng.integers(5, 25))
    if scenario == "few_groups":
        n_groups = int(rng.integers(2, 6))
    elif scenario == "tiny_groups":
        n_groups = int(rng.integers(n // 3, n + 1))
    n_groups = max(2, min(n_groups, n))
    codes = group_codes(rng, n, n_groups, balanced=scenario == "tiny_groups" or rng.random() < 0.4)

    p = int(rng.integers(1, 3))
    kinds = [str(k) for k in rng.choice(["normal", "binary", "skewed"], size=p)]
    cols, std_cols = predictor_columns(rng, n, kinds, notes)
    count_columns = list(cols)
    # the predictor of the zero part / the dispersion: x0 (a column of the count part) or
    # a column of its own (random_only_columns)
    z_name, z = None, None
    if zero_design or disp_model:
        z_name, z = zero_part_predictor(rng, n, cols, notes, True, 0.5)
    X = pd.DataFrame(cols)
    gamma = rng.normal(0.0, 0.5, p)

    sigma = float(rng.choice([0.0, 0.3, 0.7, 1.2, 2.0], p=[0.15, 0.25, 0.3, 0.2, 0.1]))
    u = rng.normal(size=n_groups) * sigma
    groups = group_labels(rng, codes, "g")
    notes.append(f"groups={n_groups} sigma={sigma}")

    b0 = float(rng.normal(np.log(2.5), 0.7))
    if scenario == "small_means":
        b0 = float(np.log(rng.uniform(0.02, 0.5)))
    elif rng.random() < 0.2:  # small means beside another scenario
        b0 = float(np.log(rng.uniform(0.05, 0.5)))
        notes.append("small means")
    eta = b0 + sum(g * c for g, c in zip(gamma, std_cols)) + u[codes]

    theta, phi = _dispersion(rng, family, scenario, notes)
    theta = np.full(n, theta)
    if disp_model and np.isfinite(theta[0]):
        theta = theta * np.exp(rng.normal(0.0, 0.7) * (z - z.mean()) / max(z.std(), 1e-12))
    if disp_model:
        notes.append("+disp")

    level = rng.uniform(0.15, 0.6)
    if scenario == "many_zeros":
        level = rng.uniform(0.85, 0.97)
    logit_pi = np.full(n, np.log(level) - np.log1p(-level))
    if zero_design:
        slope = rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 2.0)
        logit_pi = logit_pi + slope * (z - z.mean()) / max(z.std(), 1e-12)
        notes.append(f"zero slope {slope:.2g}")
    if model == "hurdle":
        notes.append(f"zero level {level:.3g}")

    fit_params = {}
    if rng.random() < 0.2:
        eta = add_offset(eta, log_exposures(rng, n), fit_params, notes, centred=True)
    mu = np.exp(eta)
    y = _positive(rng, family, mu, theta, phi)
    if model == "hurdle":
        y[rng.random(n) < expit(logit_pi)] = 0.0
        positive = np.flatnonzero(y > 0)
        if len(positive) < 2:  # at least two positive counts
            y[rng.choice(np.flatnonzero(y == 0), 2 - len(positive), replace=False)] = 1.0
    add_weights(rng, n, fit_params, notes, 0.2, keep=np.flatnonzero(y > 0)[:2])
    n_agq = int(rng.choice([3, 5, 9])) if rng.random() < 0.12 else 1

    params = {"random_effects": "1"}
    zero_terms = f"1 + {z_name}" if zero_design else None
    if model == "hurdle":
        params["hurdle"] = zero_terms or True
    else:
        params["truncated"] = True
    if disp_model:
        params["dispersion"] = f"1 + {z_name}"
    if family == "negbin1":
        params["family"] = "nbinom1"
    if z_name == "z":
        params["random_only_columns"] = ["z"]
    if n_agq > 1:
        params["n_agq"] = n_agq
        notes.append(f"n_agq={n_agq}")
    estimator = PoissonGLMM if family == "poisson" else NegBinGLMM
    label = model + ("(z)" if zero_design else "")
    share_ones = float(np.mean(y[y > 0] == 1))
    notes.append(f"positives={int(np.sum(y > 0))} ones={share_ones:.2f}")
    return {
        "seed": seed,
        "scenario": scenario,
        "family": family,
        "model": model,
        "zero_terms": [z_name] if zero_design else None,
        "disp_terms": [z_name] if disp_model else None,
        "count_columns": count_columns,
        "zero_inflation": False,
        "X": X,
        "y": y,
        "groups": groups,
        "estimator": estimator,
        "params": params,
        "fit_params": fit_params,
        "checkable": True,
        "description": f"{scenario} {label} {family} n={n} " + " ".join(notes),
    }
