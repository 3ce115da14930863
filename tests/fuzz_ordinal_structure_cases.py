"""Seeded data sets of ordered outcomes with random slopes, crossed and nested factors.

``make_ordinal_structure_case(seed)`` returns one data set and ``OrdinalGLMM`` model,
checked in ``test_fuzz_truth_ordinal_structures.py`` against
``truth_ordinal_dense.py``. Scenarios:

- ``slope``: one factor, a correlated random intercept and slope (``1 + x0``);
- ``diag_slope``: the same uncorrelated (``diag(1 + x0)``);
- ``crossed``: two crossed factors' random intercepts, in some a correlated slope on
  one or both of them;
- ``nested``: a factor nested in another (``g`` and ``h`` within it), intercepts, in
  some a correlated slope on either or both;
- ``tiny``: a slope model on 20-40 rows;
- ``few_groups``: a slope model with 3-4 groups;
- ``rare_class``: a slope model with one class (the top one or one in the middle) of
  one or two rows;
- ``raw_scale``: the slope's predictor uncentred and in large units (calendar days
  near 19,000, or values times 1e3 around 5e3); also in 12% of the other data sets;
- ``agq``: one factor's intercept and slope (correlated or ``diag``) by adaptive
  quadrature with 25 nodes per dimension (the library's product rule).

3-6 classes cut from a latent variable drawn with the link's own error, the links
logit, probit, cloglog and loglog (the cauchit is not taken: see
``truth_ordinal_dense``), flexible thresholds (equidistant or symmetric in a quarter of
the data sets with 3+ classes), random-effect SDs up to 1.2 (3 in a fifth of the data
sets, up to 5 by quadrature), prior weights (integers 1-3, some 0) in about one data set
in six and an offset in one in ten.

Each case has ``dense_terms``: per factor the names ``random_effects_cov_`` gives its
columns, the columns themselves and the structure (``None`` or ``"diagonal"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fuzz_structures import _draw
from fuzz_structures import _random_cov as _structure_cov
from test_ordinal_truth import _noise

LINKS = ("logit", "probit", "cloglog", "loglog")
SCENARIOS = {
    "slope": 0.16,
    "diag_slope": 0.12,
    "crossed": 0.16,
    "nested": 0.14,
    "tiny": 0.08,
    "few_groups": 0.08,
    "rare_class": 0.08,
    "raw_scale": 0.08,
    "agq": 0.10,
}


def _random_cov(rng, k, diagonal=False, scale=1.0):
    return _structure_cov(rng, k, diagonal, np.array([0.0, 0.3, 0.7, 1.2]) * scale)


def _codes(rng, n, n_levels):
    c = rng.integers(0, n_levels, n)
    c[:n_levels] = np.arange(n_levels)
    return rng.permutation(c)


def make_ordinal_structure_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_261_206, seed])
    scenario = str(rng.choice(list(SCENARIOS), p=list(SCENARIOS.values())))
    link = LINKS[seed % len(LINKS)]
    K = int(rng.integers(3, 7))
    n_groups = int(rng.integers(8, 30))
    n = int(rng.integers(120, 320))
    if scenario == "tiny":
        n, n_groups = int(rng.integers(20, 41)), int(rng.integers(4, 8))
    elif scenario == "few_groups":
        n_groups = int(rng.integers(3, 5))
    codes = _codes(rng, n, n_groups)
    x0 = rng.normal(size=n)
    notes = []
    raw = scenario == "raw_scale" or rng.random() < 0.12
    if raw:
        if rng.random() < 0.5:
            x0 = 19_000.0 + 300.0 * x0  # calendar days
            notes.append("x0 days near 19000")
        else:
            x0 = 5e3 + 1e3 * x0
            notes.append("x0 near 5e3 in units of 1e3")
    x1 = rng.integers(0, 2, n).astype(float)
    X = pd.DataFrame({"x0": x0, "x1": x1})
    z0 = (x0 - x0.mean()) / x0.std()
    latent = 0.5 * z0 - 0.4 * x1
    ones = np.ones(n)
    dense = {}
    x0_sd = float(x0.std())
    big = rng.random() < 0.2  # SDs up to 3 on the latent scale
    if big:
        notes.append("large SDs")

    def add_term(name, term, group_codes, diagonal=False, scale=1.0):
        nonlocal latent
        k = 1 if term == "1" else 2
        cov = _random_cov(rng, k, diagonal, scale * (2.5 if big else 1.0))
        # effects on the scale of z0, then per unit of x0 (the slope's column is x0)
        b = _draw(rng, cov, int(group_codes.max()) + 1)
        if k == 2:
            b[:, 1] /= x0_sd
        cols = np.column_stack([ones, x0][:k])
        latent = latent + np.sum(b[group_codes] * cols, axis=1)
        dense[name] = {
            "names": ["(Intercept)", "x0"][:k],
            "columns": cols,
            "structure": "diagonal" if diagonal else None,
        }

    n_agq = 1
    if scenario in ("crossed", "nested"):
        if scenario == "crossed":
            n_other = int(rng.integers(3, 12))
            other = _codes(rng, n, n_other)
        else:
            sub = rng.integers(0, int(rng.integers(2, 5)), n)
            other = pd.factorize(codes * 10 + sub)[0]
        slope_on = str(rng.choice(["none", "g", "h", "both"], p=[0.4, 0.3, 0.15, 0.15]))
        terms = {"g": "1", "h": "1"}
        for name in ("g", "h"):
            if slope_on in (name, "both"):
                terms[name] = "1 + x0"
        add_term("g", terms["g"], codes)
        add_term("h", terms["h"], other)
        groups = pd.DataFrame({"g": [f"g{v}" for v in codes], "h": [f"h{v}" for v in other]})
        random_effects = terms
    else:
        diagonal = scenario == "diag_slope" or (scenario == "agq" and rng.random() < 0.4)
        term = "diag(1 + x0)" if diagonal else "1 + x0"
        scale = float(rng.choice([1.0, 1.6])) if scenario == "agq" else 1.0
        add_term("g", "1 + x0", codes, diagonal, scale)
        groups = pd.Series(codes, name="g")
        random_effects = term
        if scenario == "agq":
            n_agq = 25
    latent = latent + _noise(link, rng, n)
    cuts = np.quantile(latent, np.sort(rng.uniform(0.1, 0.9, K - 1)))
    y = np.searchsorted(np.unique(cuts), latent)
    if scenario == "rare_class":  # one class (the top or one in the middle) of 1-2 rows
        y = np.unique(y, return_inverse=True)[1]
        top = int(y.max())
        which = top if top < 2 or rng.random() < 0.5 else int(rng.integers(1, top))
        members = np.flatnonzero(y == which)
        rare = rng.choice(members, size=min(len(members), int(rng.integers(1, 3))), replace=False)
        y[y == which] = which - 1
        y[rare] = which
        notes.append(f"class {which} of {len(rare)} rows")
    y = np.unique(y, return_inverse=True)[1]
    K = int(y.max()) + 1
    threshold = "flexible"
    if K >= 3 and rng.random() < 0.25:
        threshold = str(rng.choice(["equidistant", "symmetric"]))
    fit_params = {}
    if rng.random() < 1 / 6:
        w = rng.integers(1, 4, n).astype(float)
        w[rng.random(n) < 0.05] = 0.0
        for k in range(K):  # every class keeps a row of positive weight
            if not np.any(w[y == k] > 0):
                w[np.flatnonzero(y == k)[0]] = 1.0
        fit_params["sample_weight"] = w
        notes.append("weights")
    if rng.random() < 0.1:
        fit_params["offset"] = rng.normal(0.0, 0.5, n)
        notes.append("offset")
    params = dict(link=link, threshold=threshold, random_effects=random_effects, n_agq=n_agq)
    return {
        "seed": seed,
        "scenario": scenario,
        "X": X,
        "y": y,
        "K": K,
        "groups": groups,
        "params": params,
        "fit_params": fit_params,
        "dense_terms": dense,
        "description": f"{scenario} {link} K={K} n={n} groups={n_groups} "
        f"threshold={threshold} random_effects={random_effects!r} n_agq={n_agq} " + " ".join(notes),
    }


def make_ordinal_wide_case(seed: int) -> dict:
    """One factor with three effects per level (``1 + x0 + x1``, correlated or
    ``diag``), fitted by Laplace or by adaptive quadrature with 5 or 7 nodes per
    dimension (the library's product rule of 125 or 343 nodes); the keys of
    :func:`make_ordinal_structure_case`."""
    rng = np.random.default_rng([20_261_207, seed])
    link = LINKS[seed % len(LINKS)]
    K = int(rng.integers(3, 6))
    n_groups = int(rng.integers(8, 26))
    n = int(rng.integers(150, 300))
    codes = _codes(rng, n, n_groups)
    x0 = rng.normal(size=n)
    x1 = rng.integers(0, 2, n).astype(float)
    X = pd.DataFrame({"x0": x0, "x1": x1})
    diagonal = rng.random() < 0.4
    cov = _random_cov(rng, 3, diagonal, float(rng.choice([1.0, 1.6])))
    cols = np.column_stack([np.ones(n), x0, x1])
    latent = 0.5 * x0 - 0.4 * x1 + np.sum(_draw(rng, cov, n_groups)[codes] * cols, axis=1)
    latent = latent + _noise(link, rng, n)
    cuts = np.quantile(latent, np.sort(rng.uniform(0.1, 0.9, K - 1)))
    y = np.unique(np.searchsorted(np.unique(cuts), latent), return_inverse=True)[1]
    K = int(y.max()) + 1
    n_agq = int(rng.choice([1, 1, 5, 7]))
    term = "diag(1 + x0 + x1)" if diagonal else "1 + x0 + x1"
    params = dict(link=link, threshold="flexible", random_effects=term, n_agq=n_agq)
    dense = {
        "g": {
            "names": ["(Intercept)", "x0", "x1"],
            "columns": cols,
            "structure": "diagonal" if diagonal else None,
        }
    }
    return {
        "seed": seed,
        "scenario": "wide",
        "X": X,
        "y": y,
        "K": K,
        "groups": pd.Series(codes, name="g"),
        "params": params,
        "fit_params": {},
        "dense_terms": dense,
        "description": f"wide {link} K={K} n={n} groups={n_groups} random_effects={term!r} "
        f"n_agq={n_agq}",
    }
