"""Fit the reference cases of tests/fixtures/reference.json (produced by make_fixtures.R)."""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path

import pandas as pd

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "reference.json"
_NOT_CASES = {"anova", "meta", "versions", "anova_bin"}
# standard errors of the family fixtures (dispersion, zero-inflation and hurdle
# predictors, NB1, beta-binomial, links) against the reference engine's: glmmTMB's exact
# Hessian (automatic differentiation) at its own optimum, lme4's for the links' AGQ
# fits. The optima agree to within the optimisers' tolerance, which moves the SEs of
# the zero-inflated NB fits (`zinb2`, `sal_zinb2`) by up to 6.6e-5 relative (and a
# near-separated zero-inflation coefficient by 4.3e-4: test_zi_predictors.py); every
# other SE is within 5e-5 (they were compared to 2 % before the Hessian by central
# differences)
REFERENCE_SE_REL = 1e-4
# the cases the compiled kernels cover (tests/test_compiled.py, benchmarks/run_compiled.py):
# one scalar random effect of a Poisson (log), binomial (logit) or NB2 (log, one theta)
# model, and a Laplace fit of one or two random effects per level of a Poisson or
# binomial model, or of two of an NB2 model (the batched kernel); tut_nb's theta reaches
# its bound (the Poisson limit)
COMPILED_CASES = (
    "pois_ri",
    "pois_offset",
    "tut_pois",
    "bin_ri",
    "binom_trials",
    "singular_bin",
    "bin_ri_agq7",
    "binom_trials_agq",
    "nb_ri",
    "nb_offset",
    "nb_on_poisson",
    "tut_nb",
    "bin_rs",
    "pois_rs",
    "bin_diag",
    "nb_rs",
)


def load_reference() -> dict:
    if not REFERENCE.exists():
        return {}
    with open(REFERENCE) as fh:
        return json.load(fh)


def case_names(**filters) -> list[str]:
    ref = load_reference()
    out = []
    for name, spec in ref.items():
        if name in _NOT_CASES or not isinstance(spec, dict) or "family" not in spec:
            continue
        if all(spec.get(k) == v for k, v in filters.items()):
            out.append(name)
    return sorted(out)


def case_data(name: str):
    """X, y, groups and fit keyword arguments of a reference case."""
    spec = load_reference()[name]
    df = pd.read_csv(FIXTURES / spec["data"])
    X = df[list(spec["X"])]
    y = df[spec["y"]]
    groups = df[list(spec["groups"])].astype(str)
    kw = {}
    if spec.get("trials"):
        kw["trials"] = df[spec["trials"]]
    if spec.get("offset"):
        kw["offset"] = df[spec["offset"]]
    return spec, X, y, groups, kw


def make_estimator(spec):
    fam = spec["family"]
    re_terms = spec["random_effects"]
    common = dict(random_effects=re_terms, n_agq=int(spec.get("n_agq") or 1))
    if fam == "binomial":
        return BinomialGLMM(**common)
    zi = bool(spec.get("zero_inflation"))
    if fam == "poisson":
        return PoissonGLMM(zero_inflation=zi, **common)
    if fam == "nbinom2":
        return NegBinGLMM(zero_inflation=zi, **common)
    raise ValueError(f"unknown family {fam}")


@cache
def fitted(name: str):
    """The fitted estimator of a reference case (cached across tests)."""
    spec, X, y, groups, kw = case_data(name)
    est = make_estimator(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, groups=groups, **kw)
    return est
