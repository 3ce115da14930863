"""Seeded generator of zero-inflated and hurdle data sets with random slopes or several
grouping factors, for the fuzz tests against ``truth_dense.py``.

``make_zero_part_structure_case(seed)`` returns a case in the form of
``fuzz_structures.make_structure_case`` (``X``, ``y``, ``groups``, ``estimator``,
``params``, ``fit_params``, ``family``, ``zero_inflation``, ``checkable`` False,
``dense_terms``, ``scenario``, ``description``) with the keys of
``fuzz_hurdle_cases.make_hurdle_case`` for the zero part (``model``: ``"zi"`` or
``"hurdle"``; ``zero_terms``: the zero part's predictor or None; ``disp_terms`` None;
``count_columns``) and ``structure``:

- ``slope``: one factor with a correlated random intercept and slope (``"1 + x0"``);
- ``diag_slope``: the same, uncorrelated (``"diag(1 + x0)"``);
- ``crossed``: two crossed factors, a random intercept each;
- ``nested``: a factor nested in another (its labels unique across the outer levels),
  a random intercept each.

Models: zero-inflated Poisson, NB2 and NB1 (``zero_inflation=True``, or ``"1 + z"``)
and hurdle Poisson and NB2 (``hurdle=True`` or ``"1 + z"``); the random effects are in
the count part. Scenarios: ordinary data, tiny data (15-40 rows), few groups (2-4 levels
of the first factor), many zeros (a zero part of 0.8-0.95), few zeros (0.01-0.05; hurdle
data without any zero too), small means (0.05-0.5), raw-scale predictors (calendar time,
values times 1e6, uncentred; a random slope on a predictor of SD 10 and mean 5 too).
Offsets and prior weights on top.

``make_zero_part_agq_case(seed)``: one factor with a random intercept and slope
(correlated, ``diag`` or the slope alone), fitted by adaptive Gauss-Hermite quadrature
with 25 nodes per dimension, for ``truth_dense.integral_loglik``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fuzz_harness import (
    add_offset,
    add_weights,
    group_codes,
    log_exposures,
    predictor,
)
from fuzz_hurdle_cases import _draw_counts, _positive
from fuzz_structures import _draw, _random_cov
from scipy.special import expit

from sklearn_glmm import NegBinGLMM, PoissonGLMM

SCENARIOS = {
    "ordinary": 0.25,
    "tiny": 0.1,
    "few_groups": 0.1,
    "many_zeros": 0.15,
    "few_zeros": 0.12,
    "small_means": 0.1,
    "raw_scale": 0.18,
}
STRUCTURES = {"slope": 0.3, "diag_slope": 0.15, "crossed": 0.3, "nested": 0.25}
# (model, family): zero inflation of the three count families, hurdle Poisson and NB2
MODELS = {
    ("zi", "poisson"): 0.25,
    ("zi", "negbin"): 0.2,
    ("zi", "negbin1"): 0.15,
    ("hurdle", "poisson"): 0.2,
    ("hurdle", "negbin"): 0.2,
}


def _dispersion(rng, family, notes):
    """NB2's theta (inf: Poisson data) or NB1's phi (0: Poisson data)."""
    theta, phi = np.inf, 0.0
    if family == "negbin":
        theta = float(rng.choice([0.5, 1.5, 5.0, 30.0, np.inf], p=[0.2, 0.3, 0.25, 0.15, 0.1]))
        notes.append(f"theta={theta:g}")
    elif family == "negbin1":
        phi = float(rng.choice([0.0, 0.3, 1.0, 4.0], p=[0.1, 0.3, 0.35, 0.25]))
        notes.append(f"phi={phi:g}")
    return theta, phi


def _outcome(rng, model, family, mu, theta, phi, pi):
    """Zero-inflated or hurdle counts with means ``mu`` of the count part and zero part
    ``pi`` (a hurdle's counts zero-truncated); at least one positive count."""
    n = len(mu)
    if model == "hurdle":
        y = _positive(rng, family, mu, np.full(n, theta), phi)
    else:
        y = _draw_counts(rng, family, mu, np.full(n, theta), phi)
    y[rng.random(n) < pi] = 0.0
    if np.all(y == 0):
        y[int(rng.integers(n))] = 1.0
    return y


def _zero_part(rng, model, scenario, z, notes):
    """The zero part's probability per row, and whether it has the predictor ``z``."""
    level = rng.uniform(0.15, 0.5)
    if scenario == "many_zeros":
        level = rng.uniform(0.8, 0.95)
    elif scenario == "few_zeros":
        level = rng.choice([0.0, rng.uniform(0.01, 0.05)]) if model == "hurdle" else 0.03
    logit = np.full(len(z), np.log(level) - np.log1p(-level) if level > 0 else -np.inf)
    with_z = level > 0 and rng.random() < 0.3
    if with_z:
        slope = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.5))
        logit = logit + slope * (z - z.mean()) / z.std()
        notes.append(f"zero slope {slope:.2g}")
    notes.append(f"zero level {level:.3g}")
    return expit(logit), with_z


def _estimator_params(model, family, with_z, random_effects):
    params = {"random_effects": random_effects}
    params["hurdle" if model == "hurdle" else "zero_inflation"] = "1 + z" if with_z else True
    if with_z:
        params["random_only_columns"] = ["z"]
    if family == "negbin1":
        params["family"] = "nbinom1"
    return params


def make_zero_part_structure_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_261_210, seed])
    keys = list(MODELS)
    model, family = keys[int(rng.choice(len(keys), p=list(MODELS.values())))]
    structure = str(rng.choice(list(STRUCTURES), p=list(STRUCTURES.values())))
    scenario = str(rng.choice(list(SCENARIOS), p=list(SCENARIOS.values())))
    notes = []
    n = int(rng.integers(80, 260))
    n_groups = int(rng.integers(5, 25))
    if scenario == "tiny":
        n = int(rng.integers(15, 41))
        n_groups = int(rng.integers(2, max(3, n // 4)))
    elif scenario == "few_groups":
        n_groups = int(rng.integers(2, 5))
    codes = group_codes(rng, n, n_groups, balanced=rng.random() < 0.4)

    # x0: the slope's predictor (unit scale, or SD 10 and mean 5); x1: a fixed effect
    scale0, shift0 = (10.0, 5.0) if scenario == "raw_scale" and rng.random() < 0.5 else (1.0, 0.0)
    x0 = rng.normal(size=n) * scale0 + shift0
    kind1 = "binary"
    if scenario == "raw_scale":
        kind1 = str(rng.choice(["calendar", "times_1e6", "uncentred"]))
    x1, m1, s1 = predictor(rng, n, kind1)
    z = rng.normal(size=n)
    X = pd.DataFrame({"x0": x0, "x1": x1, "z": z})
    notes.append(f"x0 scale {scale0:g} x1 {kind1}")
    z0 = (x0 - x0.mean()) / x0.std()
    b0 = float(rng.normal(np.log(2.5), 0.5))
    if scenario == "small_means":
        b0 = float(np.log(rng.uniform(0.05, 0.5)))
    eta = b0 + 0.3 * z0 - 0.4 * (x1 - m1) / s1

    ones = np.ones(n)
    dense = {}
    if structure in ("slope", "diag_slope"):
        diagonal = structure == "diag_slope"
        cov = _random_cov(rng, 2, diagonal) * float(rng.choice([1.0, 2.0]))
        cols = np.column_stack([ones, x0 / scale0])  # effects on x0's unit scale
        eta = eta + np.sum(_draw(rng, cov, n_groups)[codes] * cols, axis=1)
        random_effects = "diag(1 + x0)" if diagonal else "1 + x0"
        groups = pd.Series(codes, name="g")
        dense["g"] = {
            "names": ["(Intercept)", "x0"],
            "columns": np.column_stack([ones, x0]),
            "structure": "diagonal" if diagonal else None,
        }
    else:
        if structure == "crossed":
            n_other = int(rng.integers(3, 10)) if scenario != "tiny" else 2
            other = rng.integers(0, n_other, n)
            other[:n_other] = np.arange(n_other)
        else:
            sub = rng.integers(0, int(rng.integers(2, 4)), n)
            other = pd.factorize(codes * 10 + sub)[0]
        factor_codes = {"g": codes, "h": other}
        for name, c in factor_codes.items():
            sd = float(rng.choice([0.0, 0.3, 0.7, 1.2], p=[0.1, 0.3, 0.4, 0.2]))
            eta = eta + rng.normal(size=int(c.max()) + 1)[c] * sd
            dense[name] = {"names": ["(Intercept)"], "columns": ones[:, None], "structure": None}
            notes.append(f"sd_{name}={sd}")
        random_effects = {"g": "1", "h": "1"}
        groups = pd.DataFrame({k: [f"{k}{v}" for v in c] for k, c in factor_codes.items()})

    theta, phi = _dispersion(rng, family, notes)
    pi, with_z = _zero_part(rng, model, scenario, z, notes)
    fit_params = {}
    if rng.random() < 0.15:
        eta = add_offset(eta, log_exposures(rng, n), fit_params, notes, centred=True)
    y = _outcome(rng, model, family, np.exp(np.minimum(eta, 20.0)), theta, phi, pi)
    add_weights(rng, n, fit_params, notes, 0.12, keep=np.flatnonzero(y > 0)[0])
    params = _estimator_params(model, family, with_z, random_effects)
    notes.append(f"random_effects={random_effects!r}")
    label = model + ("(z)" if with_z else "")
    return {
        "seed": seed,
        "scenario": scenario,
        "structure": structure,
        "family": family,
        "model": model,
        "zero_terms": ["z"] if with_z else None,
        "disp_terms": None,
        "count_columns": ["x0", "x1"],
        "zero_inflation": model == "zi",
        "X": X if with_z else X[["x0", "x1"]],
        "y": y,
        "groups": groups,
        "estimator": PoissonGLMM if family == "poisson" else NegBinGLMM,
        "params": params,
        "fit_params": fit_params,
        "checkable": False,
        "dense_terms": dense,
        "description": f"{scenario} {structure} {label} {family} n={n} groups={n_groups} "
        + " ".join(notes),
    }


def make_zero_part_agq_case(seed: int) -> dict:
    """One factor with a random intercept and slope (correlated, ``diag`` or the slope
    alone), a zero-inflated or hurdle count model fitted by AGQ with 25 nodes per
    dimension: the keys of :func:`make_zero_part_structure_case`, ``n_agq`` in
    ``params``."""
    rng = np.random.default_rng([20_261_211, seed])
    keys = list(MODELS)
    model, family = keys[int(rng.choice(len(keys), p=list(MODELS.values())))]
    term = str(rng.choice(["1 + x0", "diag(1 + x0)", "0 + x0"], p=[0.5, 0.3, 0.2]))
    n_groups = int(rng.integers(4, 16))
    n = int(rng.integers(40, 150))
    codes = rng.integers(0, n_groups, n)
    codes[:n_groups] = np.arange(n_groups)
    x0 = rng.normal(size=n) * rng.choice([1.0, 2.0])
    x1 = rng.integers(0, 2, n).astype(float)
    X = pd.DataFrame({"x0": x0, "x1": x1})
    k = 1 if term == "0 + x0" else 2
    cov = _random_cov(rng, k, diagonal=term.startswith("diag")) * float(rng.choice([1.0, 3.0]))
    cols = np.column_stack([np.ones(n), x0])[:, 2 - k :]
    eta = float(rng.normal(np.log(2.5), 0.5)) + 0.3 * x0 / x0.std() - 0.4 * x1
    eta = eta + np.sum(_draw(rng, cov, n_groups)[codes] * cols, axis=1)
    notes = []
    theta, phi = _dispersion(rng, family, notes)
    pi, _ = _zero_part(rng, model, "ordinary", np.ones(n) + rng.normal(size=n), [])
    pi = np.full(n, float(np.mean(pi)))  # a constant zero part
    y = _outcome(rng, model, family, np.exp(np.minimum(eta, 20.0)), theta, phi, pi)
    structure = "diagonal" if term.startswith("diag") else None
    names = ["(Intercept)", "x0"][2 - k :]
    label = f"{model} {family}"
    return {
        "seed": seed,
        "scenario": "slopes_agq",
        "structure": "slope_agq",
        "family": family,
        "model": model,
        "zero_terms": None,
        "disp_terms": None,
        "count_columns": ["x0", "x1"],
        "zero_inflation": model == "zi",
        "X": X,
        "y": y,
        "groups": pd.Series(codes, name="g"),
        "estimator": PoissonGLMM if family == "poisson" else NegBinGLMM,
        "params": {**_estimator_params(model, family, False, term), "n_agq": 25},
        "fit_params": {},
        "checkable": False,
        "dense_terms": {"g": {"names": names, "columns": cols, "structure": structure}},
        "description": f"slopes_agq {label} n={n} groups={n_groups} random_effects={term!r} "
        f"zero part {float(pi[0]):.3g} " + " ".join(notes),
    }
