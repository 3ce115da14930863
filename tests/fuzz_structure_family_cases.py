"""Seeded generator of NB1 and beta-binomial data sets with richer random-effects
structures, for the fuzz tests against the dense truth.

``make_structure_family_case(seed)`` returns a case in the form of
``fuzz_structures.make_structure_case`` (the same keys, ``dense_terms`` included;
``checkable`` False) with ``family`` ``"negbin1"`` (``NegBinGLMM(family="nbinom1")``) or
``"betabinomial"`` (``BinomialGLMM(family="betabinomial")``, with ``trials``), and
``dispersion``: the ``phi`` the data were drawn with (0: Poisson data for NB1; ``inf``:
binomial data for the beta-binomial).

Its ``scenario`` is ``structure/condition``. The structures:

- ``slopes``: one factor with a correlated random intercept and slope;
- ``diag``: one factor with ``diag(1 + x0)`` or ``diag(1 + x0 + x1)``;
- ``crossed``: two crossed factors, a correlated random slope on one of them;
- ``nested``: a factor nested in another, a correlated random slope on one of them;
- ``ar1``, ``cs``: one factor with a covariance structure over 3-4 times (a column
  ``t`` of ``X``, also a fixed effect);
- ``agq``: one factor with ``1 + x0``, ``diag(1 + x0)`` or ``0 + x0`` fitted by adaptive
  Gauss-Hermite quadrature with 25 nodes per dimension (a product rule over two effects),
  checked against ``truth_dense.integral_loglik``.

The conditions: ``ordinary``; ``tiny`` (15-40 rows); ``few_groups`` (2-4 levels of the
first factor); ``phi_bound`` (no or nearly no overdispersion: NB1 ``phi`` 0 or 1e-3, the
beta-binomial's infinite or 1e4, where the fit's ``phi_`` runs to its bound);
``strong_overdispersion`` (NB1 ``phi`` 10-300, the beta-binomial's 0.1-0.8); ``raw_scale``
(the slope's predictor on a raw scale: calendar days around 19,000, values times 1e6 or
uncentred, as in the model: the random slope is on the raw column). Offsets and prior
weights (zeros among them) drawn on top.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fuzz_harness import add_offset, add_weights, beta_binomial_probabilities, predictor
from fuzz_structures import _draw, _random_cov, _structured_cov
from scipy.special import expit

from sklearn_glmm import BinomialGLMM, NegBinGLMM

STRUCTURES = {
    "slopes": 0.18,
    "diag": 0.12,
    "crossed": 0.15,
    "nested": 0.13,
    "ar1": 0.14,
    "cs": 0.12,
    "agq": 0.16,
}
CONDITIONS = {
    "ordinary": 0.3,
    "tiny": 0.12,
    "few_groups": 0.12,
    "phi_bound": 0.16,
    "strong_overdispersion": 0.14,
    "raw_scale": 0.16,
}
ESTIMATORS = {"negbin1": NegBinGLMM, "betabinomial": BinomialGLMM}
TERM_COLUMNS = {
    "1 + x0": ["(Intercept)", "x0"],
    "1 + x0 + x1": ["(Intercept)", "x0", "x1"],
    "0 + x0": ["x0"],
}
FAMILY_PARAM = {"negbin1": "nbinom1", "betabinomial": "betabinomial"}


def _dispersion(rng, family, condition):
    """The ``phi`` the data are drawn with (0 / inf: the Poisson / binomial limit)."""
    if condition == "phi_bound":
        table = [0.0, 0.0, 1e-3] if family == "negbin1" else [np.inf, np.inf, 1e4]
    elif condition == "strong_overdispersion":
        table = [10.0, 50.0, 300.0] if family == "negbin1" else [0.1, 0.3, 0.8]
    else:
        table = [0.2, 0.7, 2.0, 5.0] if family == "negbin1" else [1.5, 4.0, 15.0, 60.0]
    return float(rng.choice(table))


def _outcome(rng, family, eta, phi, fit_params, notes, tiny):
    """NB1 counts (a gamma-Poisson mixture) or beta-binomial successes for ``eta``."""
    n = len(eta)
    if family == "negbin1":
        mu = np.exp(np.minimum(eta, 25.0))
        lam = mu if phi == 0.0 else rng.gamma(mu / phi, phi)
        y = rng.poisson(np.minimum(lam, 1e12)).astype(float)
        if np.all(y == 0):
            y[0] = 1.0
        return y
    top = int(rng.choice([3, 12, 40] if not tiny else [12, 40]))
    trials = rng.integers(1, top + 1, n)
    trials[0] = max(2, top)  # phi needs a row of 2 trials or more
    mu = expit(eta)
    prob = beta_binomial_probabilities(rng, mu, phi)
    y = rng.binomial(trials, prob).astype(float)
    if y.sum() == 0:
        y[0] = 1.0
    if np.all(y == trials):
        y[0] = trials[0] - 1.0
    fit_params["trials"] = trials.astype(float)
    notes.append(f"trials<={trials.max()}")
    return y


def _slope_predictor(rng, n, condition):
    """The predictor of the random slope (raw, as the model sees it) and its
    standardised values (the scale the effects are drawn on)."""
    kind = "normal"
    if condition == "raw_scale":
        kind = str(rng.choice(["calendar", "times_1e6", "uncentred"]))
    x, m, s = predictor(rng, n, kind)
    return x, (x - m) / s, kind


def make_structure_family_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_261_206, seed])
    family = "negbin1" if rng.random() < 0.5 else "betabinomial"
    structure = str(rng.choice(list(STRUCTURES), p=list(STRUCTURES.values())))
    condition = str(rng.choice(list(CONDITIONS), p=list(CONDITIONS.values())))
    notes = []
    tiny = condition == "tiny"
    n_groups = int(rng.integers(2, 5)) if condition == "few_groups" else int(rng.integers(5, 25))
    if tiny:
        n_groups = int(rng.integers(3, 7))
    timed = structure in ("ar1", "cs")
    if timed:
        q = int(rng.integers(3, 5))
        per = 1 if tiny else int(rng.integers(1, 3))  # rows per person and time
        codes = np.repeat(np.arange(n_groups), q * per)
        t = np.tile(np.repeat(np.arange(q), per), n_groups).astype(float)
        keep = rng.random(len(codes)) > rng.choice([0.0, 0.15])  # some visits missed
        keep[: q * per] = True  # every time seen
        codes, t = codes[keep], t[keep]
        n = len(codes)
    else:
        n = int(rng.integers(15, 41)) if tiny else int(rng.integers(60, 220))
        if structure == "agq":
            n = min(n, 100)
        codes = rng.integers(0, n_groups, n)
        codes[:n_groups] = np.arange(n_groups)
    x0, z0, kind = _slope_predictor(rng, n, condition)
    x1 = rng.integers(0, 2, n).astype(float)
    X = pd.DataFrame({"x0": x0, "x1": x1})
    if timed:
        X["t"] = t
    notes.append(f"x0={kind}")
    eta = float(rng.normal(0.0, 0.7)) + 0.3 * z0 - 0.4 * x1
    if family == "negbin1":
        eta = eta + np.log(3.0)
    ones = np.ones(n)
    # effects on the standardised z0: on the model's raw x0 an intercept and slope whose
    # correlation nears -+1 for an uncentred x0
    cols_std = {"(Intercept)": ones, "x0": z0, "x1": x1}
    cols_raw = {"(Intercept)": ones, "x0": x0, "x1": x1}
    dense, params = {}, {}
    if structure in ("crossed", "nested"):
        if structure == "nested":
            sub = rng.integers(0, int(rng.integers(2, 4)), n)
            other = pd.factorize(codes * 10 + sub)[0]
        else:
            n_other = int(rng.integers(3, 10))
            other = rng.integers(0, n_other, n)
            other[:n_other] = np.arange(n_other)
        slope_on = "subject" if rng.random() < 0.5 else "other"
        terms = {"subject": "1", "other": "1"}
        terms[slope_on] = "1 + x0"
        groups = {"subject": codes, "other": other}
        for name, term in terms.items():
            names = ["(Intercept)", "x0"] if term == "1 + x0" else ["(Intercept)"]
            cov = _random_cov(rng, len(names))
            b = _draw(rng, cov, int(groups[name].max()) + 1)
            std = np.column_stack([cols_std[c] for c in names])
            eta = eta + np.sum(b[groups[name]] * std, axis=1)
            raw = np.column_stack([cols_raw[c] for c in names])
            dense[name] = {"names": names, "columns": raw, "structure": None}
        groups = pd.DataFrame({k: [f"{k[0]}{v}" for v in c] for k, c in groups.items()})
        random_effects = terms
    elif structure in ("slopes", "diag", "agq"):
        if structure == "slopes":
            term = "1 + x0"
        elif structure == "diag":
            term = str(rng.choice(["diag(1 + x0)", "diag(1 + x0 + x1)"]))
        else:
            term = str(rng.choice(["1 + x0", "diag(1 + x0)", "0 + x0"], p=[0.5, 0.3, 0.2]))
            params["n_agq"] = 25
        names = TERM_COLUMNS[term.removeprefix("diag(").removesuffix(")")]
        diagonal = term.startswith("diag")
        cov = _random_cov(rng, len(names), diagonal)
        if structure == "agq":
            cov = cov * float(rng.choice([1.0, 4.0]))  # SDs up to 2: the rule's nodes matter
        std = np.column_stack([cols_std[c] for c in names])
        eta = eta + np.sum(_draw(rng, cov, n_groups)[codes] * std, axis=1)
        random_effects = term
        groups = pd.Series(codes, name="g")
        dense["g"] = {
            "names": names,
            "columns": np.column_stack([cols_raw[c] for c in names]),
            "structure": "diagonal" if diagonal else None,
        }
    else:
        cov = _structured_cov(rng, structure, q)
        ti = t.astype(int)
        indicators = (ti[:, None] == np.arange(q)[None, :]).astype(float)
        eta = eta + _draw(rng, cov, n_groups)[codes, ti] - 0.1 * t
        random_effects = f"{structure}(t)"
        groups = pd.Series(codes, name="id")
        dense["id"] = {
            "names": [f"t{j}" for j in range(q)],
            "columns": indicators,
            "structure": structure,
        }

    phi = _dispersion(rng, family, condition)
    notes.append(f"phi={phi:g}")
    fit_params = {}
    if rng.random() < 0.15:
        eta = add_offset(eta, rng.normal(0.0, 0.3, n), fit_params, notes)
    add_weights(rng, n, fit_params, notes, 0.12, keep=0, values=(0.5, 1.0, 2.0))
    y = _outcome(rng, family, eta, phi, fit_params, notes, tiny)
    notes.append(f"random_effects={random_effects!r}")
    if "n_agq" in params:
        notes.append("n_agq=25")
    return {
        "seed": seed,
        "scenario": f"{structure}/{condition}",
        "structure": structure,
        "condition": condition,
        "family": family,
        "zero_inflation": False,
        "dispersion": phi,
        "X": X,
        "y": y,
        "groups": groups,
        "estimator": ESTIMATORS[family],
        "params": {"family": FAMILY_PARAM[family], "random_effects": random_effects, **params},
        "fit_params": fit_params,
        "checkable": False,
        "dense_terms": dense,
        "description": f"{structure}/{condition} {family} n={n} groups={n_groups} "
        + " ".join(notes),
    }
