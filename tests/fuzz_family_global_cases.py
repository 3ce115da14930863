"""Seeded generator of hard data sets for the fuzz of family-parameter fits against the
truth's global optimum (``test_fuzz_truth_family_global.py``).

``make_family_global_case(seed)`` returns one data set and its model as a dict, in the form
of ``fuzz_hurdle_cases.make_hurdle_case`` (``X``, ``y``, ``groups``, ``estimator``,
``params``, ``fit_params``, ``family``, ``zero_inflation``, ``zero_terms``,
``disp_terms``, ``count_columns``, ``checkable``, ``scenario``, ``description``) and
``model``, one of:

- ``"zi"``: zero inflation with one probability (``zero_inflation=True``) of a Poisson
  (``PoissonGLMM``), NB2 (``NegBinGLMM``) or NB1 (``NegBinGLMM(family="nbinom1")``)
  count part; ``"zi(z)"``: the same with a predictor (``zero_inflation="1 + z"``);
- ``"plain"``: NB1, NB2 or the beta-binomial (``BinomialGLMM(family="betabinomial")``,
  the successes out of ``trials`` given to ``fit``);
- ``"disp"``: NB2 with a dispersion model (``dispersion="1 + z"``), in a quarter of them
  with constant zero inflation too.

``family`` is ``"poisson"``, ``"negbin"`` (NB2), ``"negbin1"`` or ``"betabinomial"``.
One grouping factor with a scalar random intercept, so every data set is checkable by
brute force. The data are drawn to be hard for the family's own parameters: small means
(0.02-0.4), many zeros (a zero part of 0.5-0.9 or means of 0.05-0.3), Poisson or binomial
data fitted by NB, NB1, zero inflation or the beta-binomial (no overdispersion, no excess
zeros), strong overdispersion, 2-5 groups, groups of one or two rows, tiny data (10-30
rows), near-separation (a binary predictor with an effect of 5-8 on the link scale:
nearly all zeros, or all successes, on one side), binary-like beta-binomial (2-3 trials,
many rows of one trial), rare successes and raw-scale predictors (calendar time, values
times 1e6, uncentred). Adaptive quadrature (5-15 nodes), offsets and prior weights on
top.
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
    zero_part_predictor,
)
from scipy.special import expit

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM

# (model, family): probability
MODELS = {
    ("zi", "poisson"): 0.12,
    ("zi", "negbin"): 0.12,
    ("zi", "negbin1"): 0.1,
    ("zi(z)", "poisson"): 0.04,
    ("zi(z)", "negbin"): 0.04,
    ("zi(z)", "negbin1"): 0.04,
    ("plain", "negbin1"): 0.14,
    ("plain", "negbin"): 0.12,
    ("disp", "negbin"): 0.1,
    ("plain", "betabinomial"): 0.18,
}
COUNT_SCENARIOS = {
    "ordinary": 0.06,
    "small_means": 0.14,
    "many_zeros": 0.12,
    "poisson_like": 0.14,
    "strong_overdispersion": 0.1,
    "few_groups": 0.1,
    "tiny_groups": 0.08,
    "tiny": 0.08,
    "near_separation": 0.1,
    "raw_scale": 0.08,
}
BETABINOMIAL_SCENARIOS = {
    "ordinary": 0.06,
    "binary_like": 0.18,
    "binomial_like": 0.14,
    "strong_overdispersion": 0.1,
    "few_groups": 0.1,
    "tiny_groups": 0.08,
    "tiny": 0.08,
    "near_separation": 0.1,
    "rare": 0.08,
    "raw_scale": 0.08,
}
ESTIMATORS = {
    "poisson": PoissonGLMM,
    "negbin": NegBinGLMM,
    "negbin1": NegBinGLMM,
    "betabinomial": BinomialGLMM,
}


def _sizes(rng, scenario):
    """Rows and groups of a scenario."""
    n, n_groups = group_sizes(rng, scenario, (40, 200), (5, 30), (15, 120), (2, 6))
    if scenario == "tiny_groups":  # most groups of one or two rows
        n = int(rng.integers(30, 120))
        n_groups = int(n / rng.choice([1.2, 1.5, 2.0]))
    return n, min(n_groups, n)


def _dispersion(rng, family, scenario):
    """The family parameter the data are drawn with: NB2 log theta, NB1 phi, the
    beta-binomial's phi (``inf``, NB1's 0 and NB2's ``inf``: no overdispersion)."""
    if family == "poisson":
        return None
    if family == "negbin":
        if scenario == "poisson_like":
            return float(rng.choice([np.inf, np.inf, np.log(1e3)]))
        if scenario == "strong_overdispersion":
            return float(np.log(rng.choice([0.1, 0.2, 0.4])))
        return float(np.log(rng.choice([0.7, 2.0, 5.0, 20.0])))
    if family == "negbin1":
        if scenario == "poisson_like":
            return float(rng.choice([0.0, 0.0, 1e-3]))
        if scenario == "strong_overdispersion":
            return float(rng.choice([10.0, 30.0, 100.0]))
        return float(rng.choice([0.2, 0.7, 2.0, 5.0]))
    if scenario == "binomial_like":
        return float(rng.choice([np.inf, np.inf, 1e4]))
    if scenario == "strong_overdispersion":
        return float(rng.choice([0.1, 0.3, 0.8]))
    return float(rng.choice([1.5, 4.0, 15.0, 60.0]))


def _counts(rng, family, mu, log_theta_rows, phi):
    """Counts with mean ``mu`` (NB2's log theta per row)."""
    if family == "poisson" or (family == "negbin1" and phi == 0.0):
        return rng.poisson(mu).astype(float)
    if family == "negbin":
        finite = np.isfinite(log_theta_rows)
        th = np.exp(np.where(finite, log_theta_rows, 0.0))
        return rng.poisson(np.where(finite, rng.gamma(th, mu / th), mu)).astype(float)
    return rng.poisson(rng.gamma(mu / phi, phi)).astype(float)


def make_family_global_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_260_515, seed])
    keys = list(MODELS)
    model, family = keys[int(rng.choice(len(keys), p=list(MODELS.values())))]
    table = BETABINOMIAL_SCENARIOS if family == "betabinomial" else COUNT_SCENARIOS
    scenario = str(rng.choice(list(table), p=list(table.values())))
    zi_const = model == "zi" or (model == "disp" and rng.random() < 0.25)
    notes = []

    n, n_groups = _sizes(rng, scenario)
    codes = group_codes(rng, n, n_groups, balanced=rng.random() < 0.4)
    p = int(rng.integers(1, 3))
    kinds = list(rng.choice(["normal", "binary", "skewed"], size=p))
    if scenario == "near_separation":
        kinds[0] = "binary"
    elif scenario == "raw_scale" or rng.random() < 0.12:
        kinds[0] = str(rng.choice(["calendar", "times_1e6", "uncentred"]))
    cols, std_cols = predictor_columns(rng, n, kinds, notes)
    count_columns = list(cols)
    # the predictor of the zero part or the dispersion: x0 on a unit scale, or its own
    # column (random_only_columns)
    z_name, z = None, None
    if model in ("zi(z)", "disp"):
        unit = kinds[0] in ("normal", "binary")
        z_name, z = zero_part_predictor(rng, n, cols, notes, unit, 0.4)
    X = pd.DataFrame(cols)
    gamma = rng.normal(0.0, 0.5, p)

    sigma = float(rng.choice([0.0, 0.3, 0.7, 1.2, 2.0], p=[0.12, 0.25, 0.3, 0.2, 0.13]))
    u = rng.normal(size=n_groups) * sigma
    groups = group_labels(rng, codes, "g")
    notes.append(f"groups={n_groups} sigma={sigma}")

    disp = _dispersion(rng, family, scenario)
    if disp is not None:
        notes.append(f"{'log_theta' if family == 'negbin' else 'phi'}={disp:.3g}")

    if family == "betabinomial":
        b0 = float(rng.normal(0.0, 1.0))
        if scenario == "rare":
            b0 = float(np.log(rng.uniform(0.005, 0.05)))
    else:
        b0 = float(rng.normal(np.log(2.0), 0.8))
        if scenario == "small_means":
            b0 = float(np.log(rng.uniform(0.02, 0.4)))
        elif scenario == "many_zeros" and not zi_const and model != "zi(z)":
            b0 = float(np.log(rng.uniform(0.05, 0.3)))
    eta = b0 + sum(g * c for g, c in zip(gamma, std_cols)) + u[codes]
    if scenario == "near_separation":
        sep = float(rng.uniform(5.0, 8.0))
        sep = -sep if family != "betabinomial" or rng.random() < 0.5 else sep
        eta = eta + sep * cols["x0"]
        notes.append(f"separating effect {sep:.2g}")

    fit_params = {}
    if rng.random() < 0.15:
        if family == "betabinomial":
            off = rng.normal(0.0, 0.5, n)
        else:  # log exposures
            off = log_exposures(rng, n, [0, 0, 2])
        eta = add_offset(eta, off, fit_params, notes, centred=family != "betabinomial")

    if family == "betabinomial":
        if scenario == "binary_like":
            trials = rng.choice([1, 1, 2, 3], size=n)
        else:
            trials = rng.integers(1, int(rng.choice([3, 6, 15])) + 1, n)
        trials[int(rng.integers(n))] = max(2, trials.max())  # phi needs a row of 2 or more
        mu = expit(eta)
        prob = beta_binomial_probabilities(rng, mu, disp)
        y = rng.binomial(trials, prob).astype(float)
        fit_params["trials"] = trials.astype(float)
        notes.append(f"trials<={trials.max()}")
    else:
        log_theta_rows = np.full(n, disp if family == "negbin" else np.nan)
        if model == "disp" and np.isfinite(disp):
            log_theta_rows = disp + rng.normal(0.0, 0.8) * (z - z.mean()) / max(z.std(), 1e-12)
        y = _counts(rng, family, np.exp(eta), log_theta_rows, disp)
        if zi_const or model == "zi(z)":
            level = rng.uniform(0.1, 0.4)
            if scenario == "many_zeros":
                level = rng.uniform(0.5, 0.9)
            elif scenario == "poisson_like":
                level = float(rng.choice([0.0, 0.0, 0.03]))
            logit = np.full(n, np.log(level) - np.log1p(-level) if level > 0 else -np.inf)
            if model == "zi(z)" and level > 0:
                slope = rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 2.0)
                logit = logit + slope * (z - z.mean()) / max(z.std(), 1e-12)
                notes.append(f"zero slope {slope:.2g}")
            y[rng.random(n) < expit(logit)] = 0.0
            notes.append(f"zero level {level:.3g}")
        if np.all(y == 0):
            y[int(rng.integers(n))] = 1.0
    if family == "betabinomial":
        keep = [0, np.argmax(fit_params["trials"])]
    else:
        keep = np.flatnonzero(y > 0)[0]
    add_weights(rng, n, fit_params, notes, 0.15, keep=keep)
    n_agq = int(rng.integers(5, 16)) if rng.random() < 0.25 else 1

    params = {"random_effects": "1"}
    if family == "negbin1":
        params["family"] = "nbinom1"
    elif family == "betabinomial":
        params["family"] = "betabinomial"
    if model == "zi(z)":
        params["zero_inflation"] = f"1 + {z_name}"
    elif zi_const:
        params["zero_inflation"] = True
    if model == "disp":
        params["dispersion"] = f"1 + {z_name}"
    if z_name == "z":
        params["random_only_columns"] = ["z"]
    if n_agq > 1:
        params["n_agq"] = n_agq
        notes.append(f"n_agq={n_agq}")
    label = model + ("+zi" if model == "disp" and zi_const else "")
    return {
        "seed": seed,
        "scenario": scenario,
        "family": family,
        "model": label,
        "zero_inflation": zi_const or model == "zi(z)",
        "zero_terms": [z_name] if model == "zi(z)" else None,
        "disp_terms": [z_name] if model == "disp" else None,
        "count_columns": count_columns,
        "dispersion": disp,
        "X": X,
        "y": y,
        "groups": groups,
        "estimator": ESTIMATORS[family],
        "params": params,
        "fit_params": fit_params,
        "checkable": True,
        "description": f"{scenario} {label} {family} n={n} " + " ".join(notes),
    }
