"""Seeded generator of hurdle, zero-truncated, zero-inflated-with-predictors and NB2
dispersion-model data sets for the fuzz tests against the truth.

``make_hurdle_case(seed)`` returns one data set and its model as a dict, in the form of
``fuzz_family_cases.make_family_case`` (``X``, ``y``, ``groups``, ``estimator``,
``params``, ``fit_params``, ``family``, ``zero_inflation``, ``checkable``, ``scenario``,
``description``), with:

- ``family``: ``"poisson"``, ``"negbin"`` (NB2) or ``"negbin1"``;
- ``model``: ``"hurdle"`` (``hurdle=True``, or ``hurdle="1 + z"`` when ``zero_terms``),
  ``"truncated"`` (``truncated=True``; ``y`` without zeros), ``"zi"``
  (``zero_inflation="1 + z"``) or ``None`` (NB2 with a dispersion model only);
- ``zero_terms`` / ``disp_terms``: the predictor of the zero part's logit / of NB2's
  ``log theta`` (``dispersion="1 + z"``), or ``None``; ``count_columns``: the columns of
  ``X`` in the count part (a predictor of the zero part or the dispersion alone is a
  column of ``X`` named in ``random_only_columns``).

One grouping factor with a scalar random intercept (in the count part: the hurdle's
zeros and the zero parts have no random effect), so every data set is checkable by brute
force. Scenarios: ordinary data; raw-scale predictors of the count part (calendar time,
values times 1e6, uncentred); tiny data (10-30 rows); 2-4 groups; many zeros (a zero part
of 0.85-0.98) and few (0.005-0.05, and hurdle data without any zero); small means
(0.02-0.4: truncated counts nearly all 1); large counts (means 1e3-1e5); near-Poisson NB
(theta 1e3-1e6 or Poisson data; NB1 phi 1e-3 or 0); strong overdispersion; a steep zero
part (its slope 3-6 on the logit scale). Adaptive quadrature (2-25 nodes), offsets and
prior weights on top.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fuzz_harness import (
    add_offset,
    add_weights,
    group_codes,
    group_labels,
    group_sizes,
    log_exposures,
    predictor_columns,
    predictor_kinds,
    zero_part_predictor,
)
from scipy.special import expit

from sklearn_glmm import NegBinGLMM, PoissonGLMM

SCENARIOS = {
    "ordinary": 0.16,
    "raw_scale": 0.1,
    "tiny": 0.1,
    "few_groups": 0.08,
    "many_zeros": 0.1,
    "few_zeros": 0.1,
    "small_means": 0.08,
    "large_counts": 0.06,
    "near_poisson": 0.08,
    "strong_overdispersion": 0.06,
    "steep_zero_part": 0.04,
    "agq": 0.04,
}
# (model, with a zero-part design): hurdle constant / with a predictor, zero-truncated,
# zero inflation with a predictor, none (NB2 with a dispersion model)
MODELS = {
    ("hurdle", False): 0.3,
    ("hurdle", True): 0.2,
    ("truncated", False): 0.25,
    ("zi", True): 0.15,
    (None, False): 0.1,
}


def _draw_counts(rng, family, mu, theta, phi):
    """Untruncated counts with mean ``mu`` (``theta`` per row for NB2)."""
    if family == "poisson" or (family == "negbin1" and phi == 0.0):
        return rng.poisson(mu).astype(float)
    if family == "negbin":
        finite = np.isfinite(theta)
        th = np.where(finite, theta, 1.0)
        lam = np.where(finite, rng.gamma(th, mu / th), mu)
        return rng.poisson(lam).astype(float)
    return rng.poisson(rng.gamma(mu / phi, phi)).astype(float)


def _positive(rng, family, mu, theta, phi):
    """Zero-truncated draws: zeros drawn again (up to 200 times; then 1)."""
    y = _draw_counts(rng, family, mu, theta, phi)
    for _ in range(200):
        zero = y == 0
        if not zero.any():
            break
        th = theta[zero] if np.ndim(theta) else theta
        y[zero] = _draw_counts(rng, family, mu[zero], th, phi)
    y[y == 0] = 1.0
    return y


def make_hurdle_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_260_402, seed])
    keys = list(MODELS)
    model, zero_design = keys[int(rng.choice(len(keys), p=list(MODELS.values())))]
    family = str(rng.choice(["poisson", "negbin", "negbin1"], p=[0.4, 0.45, 0.15]))
    if model is None:
        family = "negbin"
    disp_model = family == "negbin" and (model is None or rng.random() < 0.3)
    scenario = str(rng.choice(list(SCENARIOS), p=list(SCENARIOS.values())))
    notes = []

    n, n_groups = group_sizes(rng, scenario, (60, 250), (5, 35), (20, 150))
    n_groups = min(n_groups, n)
    codes = group_codes(rng, n, n_groups, balanced=rng.random() < 0.4)

    kinds = predictor_kinds(rng, 3, scenario == "raw_scale", 0.15)
    cols, std_cols = predictor_columns(rng, n, kinds, notes)
    count_columns = list(cols)
    # the predictor of the zero part / the dispersion: x0 when on a unit scale, or a
    # column of its own (random_only_columns)
    z_name, z = None, None
    if zero_design or disp_model:
        unit = kinds[0] in ("normal", "binary")
        z_name, z = zero_part_predictor(rng, n, cols, notes, unit, 0.4)
    X = pd.DataFrame(cols)
    gamma = rng.normal(0.0, 0.5, len(kinds))

    sigma = float(rng.choice([0.0, 0.3, 0.7, 1.2, 2.0], p=[0.1, 0.25, 0.3, 0.22, 0.13]))
    u = rng.normal(size=n_groups) * sigma
    groups = group_labels(rng, codes, "g")
    notes.append(f"groups={n_groups} sigma={sigma}")

    b0 = float(rng.normal(np.log(3.0), 0.8))
    if scenario == "small_means":
        b0 = float(np.log(rng.uniform(0.02, 0.4)))
    elif scenario == "large_counts":
        b0 = float(np.log(10 ** rng.uniform(3.0, 5.0)))
    eta = b0 + sum(g * c for g, c in zip(gamma, std_cols)) + u[codes]

    # the dispersion
    theta, phi = np.inf, 0.0
    if family == "negbin":
        if scenario == "near_poisson":
            log_theta = float(rng.choice([np.inf, np.log(1e3), np.log(1e6)]))
        elif scenario == "strong_overdispersion":
            log_theta = float(np.log(rng.choice([0.2, 0.5])))
        else:
            log_theta = float(np.log(rng.choice([0.8, 2.0, 5.0, 20.0])))
        theta = np.full(n, np.exp(log_theta))
        if disp_model and np.isfinite(log_theta):
            theta = np.exp(log_theta + rng.normal(0.0, 0.7) * (z - z.mean()))
        notes.append(f"log_theta={log_theta:.3g}" + (" +disp" if disp_model else ""))
    elif family == "negbin1":
        if scenario == "near_poisson":
            phi = float(rng.choice([0.0, 1e-3]))
        elif scenario == "strong_overdispersion":
            phi = float(rng.choice([10.0, 50.0]))
        else:
            phi = float(rng.choice([0.3, 1.0, 3.0]))
        notes.append(f"phi={phi:g}")

    # the zero part's probability
    level = rng.uniform(0.15, 0.6)
    if scenario == "many_zeros":
        level = rng.uniform(0.85, 0.98)
    elif scenario == "few_zeros":
        level = rng.choice([0.0, rng.uniform(0.005, 0.05)]) if model == "hurdle" else 0.02
    if model == "zi" and scenario != "many_zeros":
        level = min(level, 0.4)
    logit_pi = np.full(n, np.log(level) - np.log1p(-level) if level > 0 else -np.inf)
    if zero_design:
        slope = rng.choice([-1.0, 1.0]) * (
            rng.uniform(3.0, 6.0) if scenario == "steep_zero_part" else rng.uniform(0.0, 1.5)
        )
        logit_pi = logit_pi + slope * (z - z.mean()) / max(z.std(), 1e-12)
        notes.append(f"zero slope {slope:.2g}")
    pi = expit(logit_pi)
    notes.append(f"zero level {level:.3g}")

    fit_params = {}
    if rng.random() < 0.15:
        eta = add_offset(eta, log_exposures(rng, n, [0, 0, 2]), fit_params, notes, centred=True)
    mu = np.exp(eta)
    if model in ("hurdle", "truncated"):
        y = _positive(rng, family, mu, theta, phi)
        if model == "hurdle":
            y[rng.random(n) < pi] = 0.0
            if np.all(y == 0):
                y[int(rng.integers(n))] = 1.0
    else:
        y = _draw_counts(rng, family, mu, theta, phi)
        if model == "zi":
            y[rng.random(n) < pi] = 0.0
        if np.all(y == 0):
            y[int(rng.integers(n))] = 1.0
    add_weights(rng, n, fit_params, notes, 0.12, keep=np.flatnonzero(y > 0)[0])
    n_agq = 1
    if scenario == "agq" or rng.random() < 0.2:
        n_agq = 25 if rng.random() < 0.35 else int(rng.integers(2, 25))

    params = {"random_effects": "1"}
    zero_terms = f"1 + {z_name}" if zero_design else None
    if model == "hurdle":
        params["hurdle"] = zero_terms or True
    elif model == "truncated":
        params["truncated"] = True
    elif model == "zi":
        params["zero_inflation"] = zero_terms
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
    label = (model or "plain") + ("(z)" if zero_design else "")
    return {
        "seed": seed,
        "scenario": scenario,
        "family": family,
        "model": model,
        "zero_terms": [z_name] if zero_design else None,
        "disp_terms": [z_name] if disp_model else None,
        "count_columns": count_columns,
        "zero_inflation": model == "zi",
        "X": X,
        "y": y,
        "groups": groups,
        "estimator": estimator,
        "params": params,
        "fit_params": fit_params,
        "checkable": True,
        "description": f"{scenario} {label} {family} n={n} " + " ".join(notes),
    }
