"""Seeded generator of ordinary and messy GLMM data sets for the fuzz tests against the truth.

``make_case(seed)`` returns one data set and the model to fit to it, as a dict:

- ``X`` (DataFrame of predictors), ``y``, ``groups`` (a Series for one grouping factor,
  a DataFrame for crossed or nested ones);
- ``estimator`` (the class) and ``params`` (its keyword arguments), ``fit_params``
  (``sample_weight``, ``offset``, ``trials`` when used);
- ``family`` (``"binomial"``, ``"poisson"``, ``"negbin"``), ``zero_inflation``;
- ``checkable``: one grouping factor with a scalar random intercept, so that the
  brute-force integral of ``truth.py`` applies;
- ``scenario`` and ``description``: what was drawn, for the reports.

Scenarios: ordinary data; raw-scale predictors (calendar time ~19,000, values x 1e6,
uncentred); tiny data (10-30 rows); few groups (2-4); rare events; large counts (means
1e4-1e7); groups that are all 0 or all 1 (separation); random slopes; crossed and nested
factors; adaptive Gauss-Hermite quadrature with 2-25 nodes; NB data with and without
overdispersion. Prior weights, offsets, zero inflation and AGQ are drawn on top of them.
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
)
from scipy.special import expit

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM

SCENARIOS = {
    # name: probability
    "ordinary": 0.14,
    "raw_scale": 0.12,
    "tiny": 0.10,
    "few_groups": 0.08,
    "rare": 0.08,
    "large_counts": 0.08,
    "separation": 0.08,
    "agq": 0.14,
    "negbin_dispersion": 0.06,
    "slopes": 0.05,
    "crossed": 0.04,
    "nested": 0.03,
}
ESTIMATORS = {"binomial": BinomialGLMM, "poisson": PoissonGLMM, "negbin": NegBinGLMM}


def make_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_250_601, seed])
    scenario = str(rng.choice(list(SCENARIOS), p=list(SCENARIOS.values())))
    family = str(rng.choice(["binomial", "poisson", "negbin"], p=[0.4, 0.3, 0.3]))
    if scenario == "negbin_dispersion":
        family = "negbin"
    # large binomial counts: successes out of 1e3-1e5 trials
    binomial_trials = family == "binomial" and (scenario == "large_counts" or rng.random() < 0.35)
    notes = []

    # size and groups
    n, n_groups = group_sizes(rng, scenario, (60, 300), (5, 40), (20, 200))
    if scenario == "rare":
        n = int(rng.integers(150, 400))
    n_groups = min(n_groups, n)
    codes = group_codes(rng, n, n_groups, balanced=rng.random() < 0.4)

    # predictors
    kinds = predictor_kinds(rng, 4, scenario == "raw_scale", 0.2)
    cols, std_cols = predictor_columns(rng, n, kinds, notes)
    X = pd.DataFrame(cols)
    gamma = rng.normal(0.0, 0.5, len(kinds))

    # random effects
    sigma = float(rng.choice([0.0, 0.3, 0.7, 1.2, 2.0, 3.0], p=[0.08, 0.2, 0.27, 0.22, 0.15, 0.08]))
    u = rng.normal(size=n_groups) * sigma
    random_effects = "1"
    groups = group_labels(rng, codes, "g")
    checkable = True
    eta_re = u[codes]
    if scenario == "slopes":
        random_effects = str(rng.choice(["1 + x0", "diag(1 + x0)", "0 + x0"]))
        eta_re = eta_re + rng.normal(size=n_groups)[codes] * 0.5 * std_cols[0]
        checkable = False
    elif scenario == "crossed":
        n_items = int(rng.integers(3, 15))
        items = rng.integers(0, n_items, n)
        items[:n_items] = np.arange(n_items)
        eta_re = eta_re + rng.normal(size=n_items)[items] * 0.6
        groups = pd.DataFrame({"subject": groups.to_numpy(), "item": items})
        checkable = False
    elif scenario == "nested":
        n_sub = int(rng.integers(2, 5))
        sub = rng.integers(0, n_sub, n)
        inner = codes * n_sub + sub
        eta_re = eta_re + rng.normal(size=n_groups * n_sub)[inner] * 0.5
        groups = pd.DataFrame({"school": codes, "class": [f"{c}:{s}" for c, s in zip(codes, sub)]})
        checkable = False
    notes.append(f"groups={n_groups} sigma={sigma}")

    # linear predictor on the scale of the family
    if family == "binomial":
        b0 = float(rng.normal(0.0, 1.0))
        if scenario == "rare":
            b0 = float(np.log(rng.uniform(0.002, 0.04)))
    else:
        b0 = float(rng.normal(np.log(3.0), 1.0))
        if scenario == "rare":
            b0 = float(np.log(rng.uniform(0.01, 0.1)))
        elif scenario == "large_counts":
            b0 = float(np.log(10 ** rng.uniform(4.0, 7.0)))
            if rng.random() < 0.5:  # and twice the random intercepts' SD
                eta_re = eta_re + u[codes]
                notes.append("sigma x2")
    eta = b0 + sum(g * c for g, c in zip(gamma, std_cols)) + eta_re

    # modifiers: offset, weights, zero inflation, AGQ
    fit_params = {}
    if rng.random() < 0.15:
        if family == "binomial":
            off = rng.normal(0, 0.5, n)
        else:  # log exposures, some of them large (person-days)
            off = log_exposures(rng, n, [0, 0, 3])
        eta = add_offset(eta, off, fit_params, notes, centred=family != "binomial")
    add_weights(rng, n, fit_params, notes, 0.12, keep=0)
    zero_inflation = family != "binomial" and scenario != "large_counts" and rng.random() < 0.08
    n_agq = 1
    if checkable and (scenario == "agq" or rng.random() < 0.15):
        n_agq = int(rng.integers(2, 26))

    # outcome
    if family == "binomial":
        mu = expit(eta)
        if binomial_trials:
            top = (
                10 ** rng.uniform(3.0, 5.0)
                if scenario == "large_counts"
                else rng.choice([3, 10, 50])
            )
            trials = rng.integers(1, int(top) + 1, n).astype(float)
            y = rng.binomial(trials.astype(int), mu).astype(float)
            fit_params["trials"] = trials
            notes.append("trials")
        else:
            trials = np.ones(n)
            y = (rng.random(n) < mu).astype(int)
        if scenario == "separation":
            # a few groups with every outcome 0 (or every outcome 1)
            for gsep in rng.choice(n_groups, size=min(n_groups - 1, int(rng.integers(1, 4)))):
                rows = codes == gsep
                y[rows] = trials[rows] if rng.random() < 0.5 else 0
        if not binomial_trials and y.min() == y.max():  # two classes are needed
            y[int(rng.integers(n))] = 1 - y[0]
    else:
        mu = np.exp(eta)
        theta = np.inf
        if family == "negbin":
            overdispersed = rng.random() < (0.5 if scenario == "negbin_dispersion" else 0.75)
            if overdispersed:
                theta = float(rng.choice([0.2, 0.5, 2.0, 10.0, 50.0]))
                mu = rng.gamma(theta, mu / theta)
            notes.append(f"theta={theta}")
        y = rng.poisson(mu).astype(float)
        if zero_inflation:
            y[rng.random(n) < rng.uniform(0.1, 0.4)] = 0.0
            notes.append("zero_inflation")
        if scenario == "separation":  # a count outcome: some groups all zero
            for gsep in rng.choice(n_groups, size=min(n_groups - 1, int(rng.integers(1, 3)))):
                y[codes == gsep] = 0.0
    if family != "binomial" and np.all(y == 0):
        y[int(rng.integers(n))] = 1.0

    params = {"random_effects": random_effects}
    if n_agq > 1:
        params["n_agq"] = n_agq
        notes.append(f"n_agq={n_agq}")
    if zero_inflation:
        params["zero_inflation"] = True
    if random_effects != "1":
        notes.append(f"random_effects={random_effects!r}")
    if isinstance(groups, pd.DataFrame):
        notes.append(f"factors={list(groups.columns)}")
    return {
        "seed": seed,
        "scenario": scenario,
        "family": family,
        "zero_inflation": zero_inflation,
        "X": X,
        "y": y,
        "groups": groups,
        "estimator": ESTIMATORS[family],
        "params": params,
        "fit_params": fit_params,
        "checkable": checkable,
        "description": f"{scenario} {family} n={n} " + " ".join(notes),
    }
