"""The formula front end on the reference fixtures: the same fit as the hand-built
estimator, with R's coefficient names (tests/fixtures/make_fixtures.R)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference import FIXTURES, case_names, fitted, load_reference

pytest.importorskip("formulaic")
from sklearn_glmm.formula import glmer, glmmTMB, parse_glmm_formula  # noqa: E402

REF = load_reference()
pytestmark = pytest.mark.skipif(not REF, reason="tests/fixtures/reference.json not generated")


def _formula(spec) -> tuple[str, pd.DataFrame]:
    df = pd.read_csv(FIXTURES / spec["data"])
    # R names such as `period2` or `trttreat:sexmale` become plain column names here
    rename = {c: re.sub(r"\W", "_", c) for c in spec["X"]}
    df = df.rename(columns=rename)
    lhs = spec["y"]
    if spec.get("trials"):
        df["failures_"] = df[spec["trials"]] - df[spec["y"]]
        lhs = f"cbind({spec['y']}, failures_)"
    rhs = [rename[c] for c in spec["X"]] or ["1"]
    if spec.get("offset"):
        rhs.append(f"offset({spec['offset']})")
    for g, term in spec["random_effects"].items():
        m = re.fullmatch(r"diag\((.*)\)", term)
        inner, bar = (m.group(1), "||") if m else (term, "|")
        df[g] = df[g].astype(str)
        rhs.append(f"({inner} {bar} {g})")
    return f"{lhs} ~ {' + '.join(rhs)}", df, rename


@pytest.mark.parametrize("case", case_names())
def test_formula_fit_matches_estimator_and_reference(case):
    spec = REF[case]
    formula, df, rename = _formula(spec)
    family = {"nbinom2": "negbin"}.get(spec["family"], spec["family"])
    front = glmmTMB if spec["engine"] == "glmmTMB" else glmer
    zi = "~1" if spec.get("zero_inflation") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = front(formula, df, family=family, n_agq=int(spec.get("n_agq") or 1), ziformula=zi)
    ref_est = fitted(case)
    assert m.loglik_ == pytest.approx(ref_est.loglik_, abs=1e-6), formula
    names = ["(Intercept)"] + [rename[c] for c in spec["X"]]
    assert list(m.fixed_effects_.index) == names
    np.testing.assert_allclose(
        m.fixed_effects_["estimate"], ref_est.fixed_effects_["estimate"], atol=1e-6
    )


def test_factor_predictor_gets_r_names_on_cbpp():
    # R: glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)
    spec = REF["binom_trials"]
    df = pd.read_csv(FIXTURES / spec["data"])
    dummies = df[["period2", "period3", "period4"]].to_numpy()
    df["period"] = np.where(dummies.any(axis=1), dummies.argmax(axis=1) + 2, 1).astype(str)
    df["herd"] = df["herd"].astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer(
            "cbind(incidence, trials - incidence) ~ period + (1 | herd)", df, family="binomial"
        )
    assert list(m.fixed_effects_.index) == list(spec["fixef"])  # (Intercept), period2, ...
    for name, value in spec["fixef"].items():
        assert abs(m.fixed_effects_.loc[name, "estimate"] - value) <= 0.05 * spec["se"][name]
    assert m.loglik_ == pytest.approx(spec["loglik"], abs=0.01)


_CODING = Path(__file__).parent / "fixtures" / "formula_coding"


@pytest.mark.parametrize(
    "formula",
    [k for k in json.loads((_CODING / "coding.json").read_text()) if not k.startswith("_")],
)
def test_interactions_are_coded_as_r_codes_them(formula):
    # tests/fixtures/formula_coding/make.R: R codes a factor of an interaction by its
    # contrasts only when the term without it is in the formula; with a margin missing
    # (f:s, x + x:f:lg, f + s + f:s:lg) the design is R's, rank deficient, and the
    # columns lme4 drops are dropped (their estimates NaN); before, formulaic's full-rank
    # coding gave the same likelihood with other coefficients under R's names
    ref = json.loads((_CODING / "coding.json").read_text())[formula]
    d = pd.read_csv(_CODING / "coding.csv")
    d["f"] = pd.Categorical(d["f"], categories=["c", "a", "b"])
    X = parse_glmm_formula(formula, d).X
    names = [n for n in ref["names"] if n != "(Intercept)"]
    np.testing.assert_allclose(X[names].to_numpy()[:12], np.asarray(ref["X"])[:, -len(names) :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer(formula, d, family="binomial")
    table = m.fixed_effects_["estimate"]
    kept = table[table.notna()]
    assert list(kept.index) == ref["names"]
    assert m.loglik_ >= ref["loglik"] - 1e-5
    np.testing.assert_allclose(kept.to_numpy(), ref["fixef"], rtol=2e-3, atol=2e-3)


_SPELLINGS = Path(__file__).parent / "fixtures" / "formula_spellings"


@pytest.mark.parametrize(
    "formula",
    [k for k in json.loads((_SPELLINGS / "spellings.json").read_text()) if not k.startswith("_")],
)
def test_formula_spellings_fit_r_s_models(formula):
    # tests/fixtures/formula_spellings/make.R. Each was another model before: I(w > 0.5)
    # a 0/1 number (R: a FALSE/TRUE factor, so 0 + I(..), I(..):z and I(..):f have a
    # column per level); x.1 read as x (its 15 missing values dropped rows); scale(z)
    # only in a random term learnt on the kept rows; an ordered factor treatment-coded
    # (R: contr.poly, which diag(o | g) reads); an unused level of factor(levels=) the
    # reference; relevel(ref = 2) the level 2 (R: the second level, "5")
    ref = json.loads((_SPELLINGS / "spellings.json").read_text())[formula]
    d = pd.read_csv(_SPELLINGS / "spellings.csv")
    d["o"] = pd.Categorical(d["o"], categories=["low", "mid", "high"], ordered=True)
    fit = glmer if ref["engine"] == "glmer" else glmmTMB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = fit(formula, d, family="binomial")
    table = m.fixed_effects_["estimate"]
    kept = table[table.notna()]
    if " = " not in formula:  # (R's deparsed names put spaces around an argument's =)
        assert list(kept.index) == ref["names"]
    assert m.nobs_ == ref["nobs"]
    # lme4 stops up to 4e-4 short of the optimum here; glmmTMB's is ours to 4e-8
    assert ref["loglik"] - 1e-5 <= m.loglik_ <= ref["loglik"] + 1e-3
    np.testing.assert_allclose(kept.to_numpy(), ref["fixef"], rtol=2e-3, atol=2e-3)
    cov = m.random_effects_cov_.values()
    sds = np.sqrt(np.concatenate([np.diag(np.atleast_2d(v)) for v in cov]))
    np.testing.assert_allclose(sds, np.atleast_1d(ref["sd"]), rtol=2e-3, atol=1e-3)
