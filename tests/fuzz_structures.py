"""Seeded generator of data sets with richer random-effects structures, for the fuzz tests.

``make_structure_case(seed)`` returns a case in the form of ``fuzz_cases.make_case``
(the same keys; ``checkable`` is False: no brute-force integral) for models whose
random effects share rows across factors or have several terms per level, fitted by
Laplace and checked against ``truth_dense.py``:

- ``crossed_slopes``: crossed factors, a correlated random slope on the first;
- ``nested_slopes``: a factor nested in another, a random slope on one of them;
- ``three_factors``: two crossed factors and a third nested in the first;
- ``wide``: one factor with an intercept and two slopes, unstructured or ``diag``;
- ``ar1``, ``cs``, ``toep``: one factor with a covariance structure over 3-5 times (a
  column ``t`` of ``X``, also a fixed effect: a linear trend);
- ``intercept_ar1``: a random intercept and an AR(1) process over the times for the
  same factor (glmmTMB's ``(1 | id) + ar1(0 + factor(t) | id)``: the column twice).

``make_blocks_case(seed)`` (a generator of its own): one factor with several correlated
terms uncorrelated with each other (lme4's ``(1 + x0 | g) + (0 + x1 + x2 | g)``, a
block-diagonal covariance), sometimes beside a crossed random intercept; its
``dense_terms`` give a factor's blocks, each a ``truth_dense.Term`` of its own on the
factor's levels.

Each case also carries ``dense_terms``: for each factor the names of its columns (as
``random_effects_cov_`` names them), the columns themselves and the structure, which
``truth_dense.Term`` takes. Binomial (binary or with trials), Poisson and NB2 outcomes;
offsets and prior weights drawn on top; no zero inflation (zero-inflated and hurdle models
with these structures are ``fuzz_zero_part_structure_cases.py``'s).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fuzz_harness import add_offset, add_weights
from scipy.special import expit

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM

STRUCTURE_SCENARIOS = {
    "crossed_slopes": 0.16,
    "nested_slopes": 0.14,
    "three_factors": 0.12,
    "wide": 0.14,
    "ar1": 0.14,
    "cs": 0.1,
    "toep": 0.08,
    "intercept_ar1": 0.12,
}
ESTIMATORS = {"binomial": BinomialGLMM, "poisson": PoissonGLMM, "negbin": NegBinGLMM}


def _random_cov(rng, k, diagonal=False, sds=(0.0, 0.2, 0.5, 1.0)):
    """A covariance (k, k): SDs drawn from ``sds`` (with probabilities 0.1, 0.3, 0.4,
    0.2), a random correlation unless ``diagonal``."""
    sd = rng.choice(sds, size=k, p=[0.1, 0.3, 0.4, 0.2])
    if diagonal or k == 1:
        return np.diag(sd**2)
    A = rng.normal(size=(k, k))
    C = np.corrcoef(A @ A.T + 0.5 * np.eye(k))
    return C * np.outer(sd, sd)


def _draw(rng, cov, n_levels):
    """Random effects (n_levels, k) with covariance ``cov``."""
    w, V = np.linalg.eigh(cov)
    return rng.normal(size=(n_levels, len(w))) @ (V * np.sqrt(np.clip(w, 0.0, None))).T


def _structured_cov(rng, kind, q):
    pos = np.arange(q)
    if kind == "ar1":
        sd = float(rng.choice([0.3, 0.7, 1.2]))
        rho = float(rng.uniform(-0.5, 0.95))
        return sd**2 * rho ** np.abs(pos[:, None] - pos[None, :])
    sd = rng.choice([0.3, 0.6, 1.0], size=q)
    if kind == "cs":
        rho = float(rng.uniform(-0.8 / (q - 1), 0.9))
        R = np.full((q, q), rho)
    else:  # toep: one correlation per lag, a valid matrix from an AR(1) with noise
        r = float(rng.uniform(0.0, 0.8)) ** pos
        R = r[np.abs(pos[:, None] - pos[None, :])]
    np.fill_diagonal(R, 1.0)
    return R * np.outer(sd, sd)


def _outcome(rng, family, eta, fit_params, notes, p_trials, top_trials, count_shift=0.0):
    """The outcome for the linear predictor ``eta``: binary, or successes out of 1 to
    ``top_trials - 1`` trials with probability ``p_trials``; Poisson or NB2 counts (the
    linear predictor shifted by ``count_shift``), NB overdispersed with probability 0.75.
    Trials and notes are added to ``fit_params`` and ``notes``."""
    n = len(eta)
    if family == "binomial":
        if rng.random() < p_trials:
            trials = rng.integers(1, top_trials, n).astype(float)
            y = rng.binomial(trials.astype(int), expit(eta)).astype(float)
            fit_params["trials"] = trials
            notes.append("trials")
        else:
            y = (rng.random(n) < expit(eta)).astype(int)
            if y.min() == y.max():
                y[0] = 1 - y[0]
        return y
    mu = np.exp(eta + count_shift)
    if family == "negbin" and rng.random() < 0.75:
        theta = float(rng.choice([0.5, 2.0, 10.0]))
        mu = rng.gamma(theta, mu / theta)
        notes.append(f"theta={theta}")
    # counts up to 1e12 (a predictor's scale of 10 under a random slope reaches further:
    # beyond Poisson sampling)
    y = rng.poisson(np.minimum(mu, 1e12)).astype(float)
    if np.all(y == 0):
        y[0] = 1.0
    return y


def make_structure_case(seed: int) -> dict:
    """The data set and model of one seed (see the module docstring)."""
    rng = np.random.default_rng([20_261_204, seed])
    scenario = str(rng.choice(list(STRUCTURE_SCENARIOS), p=list(STRUCTURE_SCENARIOS.values())))
    family = str(rng.choice(["binomial", "poisson", "negbin"], p=[0.4, 0.3, 0.3]))
    notes = []
    n_groups = int(rng.integers(5, 30))
    timed = scenario in ("ar1", "cs", "toep", "intercept_ar1")
    if timed:
        q = int(rng.integers(3, 6))
        per = int(rng.integers(1, 3))  # rows per person and time
        codes = np.repeat(np.arange(n_groups), q * per)
        t = np.tile(np.repeat(np.arange(q), per), n_groups).astype(float)
        keep = rng.random(len(codes)) > rng.choice([0.0, 0.15])  # some visits missed
        keep[: q * per] = True  # every time seen
        codes, t = codes[keep], t[keep]
        n = len(codes)
    else:
        n = int(rng.integers(80, 300))
        codes = rng.integers(0, n_groups, n)
        codes[:n_groups] = np.arange(n_groups)
    x0 = rng.normal(size=n) * rng.choice([1.0, 1.0, 10.0]) + rng.choice([0.0, 0.0, 5.0])
    x1 = rng.integers(0, 2, n).astype(float)
    X = pd.DataFrame({"x0": x0, "x1": x1})
    if timed:
        X["t"] = t
    z0 = (x0 - x0.mean()) / x0.std()
    eta = float(rng.normal(0.0, 0.7)) + 0.3 * z0 - 0.4 * x1
    if family != "binomial":
        eta = eta + np.log(3.0)
    ones = np.ones(n)
    dense = {}
    if scenario in ("crossed_slopes", "nested_slopes", "three_factors"):
        n_other = int(rng.integers(3, 12))
        if scenario == "nested_slopes":
            sub = rng.integers(0, int(rng.integers(2, 5)), n)
            other = codes * 10 + sub
            other = pd.factorize(other)[0]
        else:
            other = rng.integers(0, n_other, n)
            other[:n_other] = np.arange(n_other)
        slope_on = "subject" if rng.random() < 0.5 else "other"
        terms = {"subject": "1", "other": "1"}
        if scenario != "three_factors":
            terms[slope_on] = "1 + x0"
        groups = {"subject": codes, "other": other}
        if scenario == "three_factors":
            inner = pd.factorize(codes * 10 + rng.integers(0, 3, n))[0]
            groups["inner"] = inner
            terms["inner"] = "1"
        for name, term in terms.items():
            k = 2 if term == "1 + x0" else 1
            cov = _random_cov(rng, k)
            b = _draw(rng, cov, int(groups[name].max()) + 1)
            cols = np.column_stack([ones, x0][:k])
            eta = eta + np.sum(b[groups[name]] * cols, axis=1)
            names = ["(Intercept)", "x0"][:k]
            dense[name] = {"names": names, "columns": cols, "structure": None}
        groups = pd.DataFrame({k: [f"{k[0]}{v}" for v in codes_] for k, codes_ in groups.items()})
        random_effects = terms
    elif scenario == "wide":
        diagonal = rng.random() < 0.3
        cov = _random_cov(rng, 3, diagonal)
        cols = np.column_stack([ones, x0, x1])
        eta = eta + np.sum(_draw(rng, cov, n_groups)[codes] * cols, axis=1)
        random_effects = "diag(1 + x0 + x1)" if diagonal else "1 + x0 + x1"
        groups = pd.Series(codes, name="g")
        dense["g"] = {
            "names": ["(Intercept)", "x0", "x1"],
            "columns": cols,
            "structure": "diagonal" if diagonal else None,
        }
    else:
        kind = "ar1" if scenario == "intercept_ar1" else scenario
        cov = _structured_cov(rng, kind, q)
        ti = t.astype(int)
        indicators = (ti[:, None] == np.arange(q)[None, :]).astype(float)
        eta = eta + _draw(rng, cov, n_groups)[codes, ti] - 0.1 * t
        names = [f"t{j}" for j in range(q)]
        dense["id"] = {"names": names, "columns": indicators, "structure": kind}
        if scenario == "intercept_ar1":
            eta = eta + rng.normal(size=n_groups)[codes] * float(rng.choice([0.0, 0.5, 1.0]))
            random_effects = {"id": "1", "id.1": "ar1(t)"}
            groups = pd.DataFrame({"id": codes, "id.1": codes})
            dense = {
                "id": {"names": ["(Intercept)"], "columns": ones[:, None], "structure": None},
                "id.1": dense["id"],
            }
        else:
            random_effects = f"{kind}(t)"
            groups = pd.Series(codes, name="id")

    fit_params = {}
    if rng.random() < 0.15:
        eta = add_offset(eta, rng.normal(0.0, 0.3, n), fit_params, notes)
    add_weights(rng, n, fit_params, notes, 0.12, values=(0.5, 1.0, 2.0))
    y = _outcome(rng, family, eta, fit_params, notes, p_trials=0.35, top_trials=20)
    return _case(seed, scenario, family, X, y, groups, random_effects, fit_params, dense, notes)


def _case(seed, scenario, family, X, y, groups, random_effects, fit_params, dense, notes):
    """A case of the form of ``fuzz_cases.make_case`` (``dense``: its ``dense_terms``)."""
    n_groups = len(np.unique(np.asarray(groups if np.ndim(groups) == 1 else groups.iloc[:, 0])))
    notes = [*notes, f"random_effects={random_effects!r}"]
    return {
        "seed": seed,
        "scenario": scenario,
        "family": family,
        "zero_inflation": False,
        "X": X,
        "y": y,
        "groups": groups,
        "estimator": ESTIMATORS[family],
        "params": {"random_effects": random_effects},
        "fit_params": fit_params,
        "checkable": False,
        "dense_terms": dense,
        "description": f"{scenario} {family} n={len(y)} groups={n_groups} " + " ".join(notes),
    }


def _one_factor(rng, terms, n_groups, n):
    """A family, one of ``terms``, the numbers of levels and rows (drawn from the ranges
    ``n_groups`` and ``n``) and each row's level (every level used)."""
    family = str(rng.choice(["binomial", "poisson", "negbin"], p=[0.4, 0.3, 0.3]))
    term = str(rng.choice(list(terms)))
    n_groups = int(rng.integers(*n_groups))
    n = int(rng.integers(*n))
    codes = rng.integers(0, n_groups, n)
    codes[:n_groups] = np.arange(n_groups)
    return family, term, n_groups, n, codes


BLOCK_TERMS = {
    "(1 + x0) + (0 + x1)": [["(Intercept)", "x0"], ["x1"]],
    "(1) + (0 + x0 + x1)": [["(Intercept)"], ["x0", "x1"]],
    "(1 + x1) + (0 + x0 + x2)": [["(Intercept)", "x1"], ["x0", "x2"]],
    "(0 + x0 + x2) + (1 + x1)": [["(Intercept)", "x1"], ["x0", "x2"]],
}


def make_blocks_case(seed: int) -> dict:
    """One factor with a term of correlated blocks (:data:`BLOCK_TERMS`), sometimes
    beside a crossed random intercept. The keys of :func:`make_structure_case`."""
    rng = np.random.default_rng([20_261_206, seed])
    family, term, n_groups, n, codes = _one_factor(rng, BLOCK_TERMS, (6, 30), (80, 300))
    x0 = rng.normal(size=n) * rng.choice([1.0, 1.0, 10.0]) + rng.choice([0.0, 0.0, 5.0])
    x1 = rng.integers(0, 2, n).astype(float)
    x2 = rng.normal(size=n)
    X = pd.DataFrame({"x0": x0, "x1": x1, "x2": x2})
    z0 = (x0 - x0.mean()) / x0.std()
    eta = float(rng.normal(0.0, 0.7)) + 0.3 * z0 - 0.4 * x1
    if family != "binomial":
        eta = eta + np.log(3.0)
    column = {"(Intercept)": np.ones(n), "x0": z0, "x1": x1, "x2": x2}
    blocks = []
    for names in BLOCK_TERMS[term]:
        cov = _random_cov(rng, len(names), sds=(0.0, 0.2, 0.4, 0.7))
        b = _draw(rng, cov, n_groups)[codes]
        eta = eta + np.sum(b * np.column_stack([column[c] for c in names]), axis=1)
        raw = np.column_stack(
            [np.ones(n) if c == "(Intercept)" else X[c].to_numpy() for c in names]
        )
        blocks.append({"names": names, "columns": raw, "structure": None})
    dense = {"g": {"names": [c for names in BLOCK_TERMS[term] for c in names], "blocks": blocks}}
    random_effects, groups, notes = term, pd.Series(codes, name="g"), []
    if rng.random() < 0.3:  # a crossed random intercept beside it
        n_other = int(rng.integers(3, 10))
        other = rng.integers(0, n_other, n)
        other[:n_other] = np.arange(n_other)
        eta = eta + rng.normal(0.0, 0.5, n_other)[other]
        groups = pd.DataFrame({"g": codes, "h": other})
        random_effects = {"g": term, "h": "1"}
        dense["h"] = {"names": ["(Intercept)"], "columns": np.ones((n, 1)), "structure": None}
    fit_params = {}
    add_weights(rng, n, fit_params, notes, 0.12, values=(0.5, 1.0, 2.0))
    y = _outcome(rng, family, eta, fit_params, notes, p_trials=0.35, top_trials=20)
    return _case(seed, "blocks", family, X, y, groups, random_effects, fit_params, dense, notes)


# block terms of three effects: adaptive quadrature's product rule takes 20 nodes each
AGQ_BLOCK_TERMS = {
    "(1 + x0) + (0 + x1)": [["(Intercept)", "x0"], ["x1"]],
    "(1) + (0 + x0 + x1)": [["(Intercept)"], ["x0", "x1"]],
    "(0 + x1) + (1 + x0)": [["(Intercept)", "x0"], ["x1"]],
}
AGQ_BLOCK_NODES = 20


def make_agq_blocks_case(seed: int) -> dict:
    """One factor with a term of correlated blocks of three effects
    (:data:`AGQ_BLOCK_TERMS`) fitted by adaptive Gauss-Hermite quadrature with
    :data:`AGQ_BLOCK_NODES` nodes per effect: its ``loglik_`` is checked against
    ``truth_dense.integral_loglik`` with the block-diagonal covariance, its optimum
    against that integral's. The keys of :func:`make_structure_case`, with ``n_agq``
    in ``params``."""
    rng = np.random.default_rng([20_261_207, seed])
    family, term, n_groups, n, codes = _one_factor(rng, AGQ_BLOCK_TERMS, (5, 25), (60, 220))
    x0 = rng.normal(size=n) * rng.choice([1.0, 3.0]) + rng.choice([0.0, 0.0, 2.0])
    x1 = rng.integers(0, 2, n).astype(float)
    X = pd.DataFrame({"x0": x0, "x1": x1})
    eta = float(rng.normal(0.0, 0.7)) + 0.3 * x0 / x0.std() - 0.4 * x1
    column = {"(Intercept)": np.ones(n), "x0": x0, "x1": x1}
    scale = float(rng.choice([1.0, 2.0]))  # SDs up to 1.4: the rule's nodes matter
    blocks = []
    for names in AGQ_BLOCK_TERMS[term]:
        cov = _random_cov(rng, len(names), sds=(0.0, 0.2, 0.4, 0.7)) * scale**2
        if "x0" in names:
            at = names.index("x0")  # the drawn SD is the slope's over one SD of x0
            cov[at, :] /= x0.std()
            cov[:, at] /= x0.std()
        cols = np.column_stack([column[c] for c in names])
        eta = eta + np.sum(_draw(rng, cov, n_groups)[codes] * cols, axis=1)
        blocks.append({"names": names, "columns": cols, "structure": None})
    names = [c for names in AGQ_BLOCK_TERMS[term] for c in names]
    fit_params, notes = {}, []
    y = _outcome(rng, family, eta, fit_params, notes, 0.4, 10, count_shift=np.log(2.0))
    groups = pd.Series(codes, name="g")
    dense = {"g": {"names": names, "blocks": blocks}}
    case = _case(seed, "blocks_agq", family, X, y, groups, term, fit_params, dense, notes)
    case["params"]["n_agq"] = AGQ_BLOCK_NODES
    return case


def make_agq_case(seed: int) -> dict:
    """One factor with a random intercept and slope (correlated, ``diag`` or the slope
    alone) fitted by adaptive Gauss-Hermite quadrature with 25 nodes per dimension (a
    product rule): its ``loglik_`` is checked against ``truth_dense.integral_loglik``.
    The keys of :func:`make_structure_case`, with ``n_agq`` in ``params``."""
    rng = np.random.default_rng([20_261_205, seed])
    family = str(rng.choice(["binomial", "poisson", "negbin"], p=[0.4, 0.3, 0.3]))
    term = str(rng.choice(["1 + x0", "diag(1 + x0)", "0 + x0"], p=[0.5, 0.3, 0.2]))
    n_groups = int(rng.integers(4, 25))
    n = int(rng.integers(40, 200))
    codes = rng.integers(0, n_groups, n)
    codes[:n_groups] = np.arange(n_groups)
    x0 = rng.normal(size=n) * rng.choice([1.0, 3.0])
    x1 = rng.integers(0, 2, n).astype(float)
    X = pd.DataFrame({"x0": x0, "x1": x1})
    k = 1 if term == "0 + x0" else 2
    cov = _random_cov(rng, k, diagonal=term.startswith("diag"))
    cov = cov * float(rng.choice([1.0, 4.0]))  # SDs up to 2: the rule's nodes matter
    cols = np.column_stack([np.ones(n), x0][2 - k :])
    eta = float(rng.normal(0.0, 0.7)) + 0.3 * x0 / x0.std() - 0.4 * x1
    eta = eta + np.sum(_draw(rng, cov, n_groups)[codes] * cols, axis=1)
    fit_params, notes = {}, []
    y = _outcome(rng, family, eta, fit_params, notes, 0.4, 10, count_shift=np.log(2.0))
    names = ["(Intercept)", "x0"][2 - k :]
    structure = "diagonal" if term.startswith("diag") else None
    return {
        "seed": seed,
        "scenario": "slopes_agq",
        "family": family,
        "zero_inflation": False,
        "X": X,
        "y": y,
        "groups": pd.Series(codes, name="g"),
        "estimator": ESTIMATORS[family],
        "params": {"random_effects": term, "n_agq": 25},
        "fit_params": fit_params,
        "checkable": False,
        "dense_terms": {"g": {"names": names, "columns": cols, "structure": structure}},
        "description": f"slopes_agq {family} n={n} groups={n_groups} random_effects={term!r} "
        + " ".join(notes),
    }
