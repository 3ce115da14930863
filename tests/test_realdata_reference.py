"""Published datasets fitted from their R formulas, against lme4 / glmmTMB.

The fits come from tests/fixtures/realdata/make_realdata.R (lme4 with a tight
PIRLS tolerance and optimiser, glmmTMB with its defaults): binary outcomes with
random intercepts and correlated slopes (Contraception, bacteria, ohio), nested
factors with many small levels (guImmun: children in mothers in communities),
Poisson and NB2 counts with slopes (epil), a Poisson rate with an offset and
nested factors (Mmmec), zero-inflated NB2 (Owls), binomial trials with an
observation-level random effect (cbpp), and adaptive quadrature (nAGQ 12, 20).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")
from sklearn_glmm.formula import glmer, glmmTMB  # noqa: E402

HERE = Path(__file__).parent / "fixtures" / "realdata"
REF = json.loads((HERE / "realdata.json").read_text())
CASES = [name for name in REF if not name.startswith("_")]
DATASETS = ("contra", "guimmun", "epil", "bacteria", "ohio", "mmmec", "owls", "cbpp")


def _data(case: str) -> pd.DataFrame:
    stem = next(d for d in DATASETS if case.startswith(d))
    df = pd.read_csv(HERE / f"{stem}.csv")
    text = df.select_dtypes(include=["object", "string"]).columns
    df[text] = df[text].astype(str)  # R's factors
    return df


def _fit(case: str):
    spec = REF[case]
    kw = {"n_agq": spec["n_agq"]} if spec.get("n_agq") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec["engine"] == "lme4":
            return glmer(spec["formula"], _data(case), family=spec["family"], **kw)
        zi = "~1" if spec.get("zi") else None
        return glmmTMB(spec["formula"], _data(case), family=spec["family"], ziformula=zi)


@pytest.fixture(scope="module", params=CASES)
def fitted_case(request):
    return request.param, _fit(request.param)


def test_loglik_matches(fitted_case):
    case, m = fitted_case
    # the same maximum: never lower than the reference beyond its own stopping noise
    assert m.loglik_ == pytest.approx(REF[case]["loglik"], abs=1e-3)
    assert m.loglik_ >= REF[case]["loglik"] - 1e-4
    assert m.converged_


def test_fixed_effects_match(fitted_case):
    case, m = fitted_case
    fe = m.fixed_effects_
    ref = REF[case]["fixef"]
    assert set(ref) <= set(fe.index), f"coefficient names differ: {sorted(ref)}"
    for name, value in ref.items():
        assert fe.loc[name, "estimate"] == pytest.approx(value, abs=5e-4, rel=1e-3), name


def test_standard_errors_match(fitted_case):
    case, m = fitted_case
    fe = m.fixed_effects_
    # both engines differentiate numerically for the Hessian: 0.2 % between them
    for name, value in REF[case]["se"].items():
        assert fe.loc[name, "std_error"] == pytest.approx(value, rel=2e-3), name


def test_random_effect_covariances_match(fitted_case):
    case, m = fitted_case
    for group, ref in REF[case]["vc"].items():
        ours = m.random_effects_cov_[group]
        ref_m = np.array(ref["m"], dtype=float).reshape(ours.shape)
        np.testing.assert_allclose(ours.to_numpy(), ref_m, atol=5e-4, rtol=1e-3)


def test_negbin_theta_matches():
    m = _fit("epil_nb")
    assert m.theta_ == pytest.approx(REF["epil_nb"]["theta"], rel=1e-3)


@pytest.mark.parametrize("case", [c for c in CASES if REF[c].get("confint_profile")])
def test_profile_confint_of_agq_fits_matches_lme4(case):
    # R: confint(fit, method = "profile") on the nAGQ > 1 fit
    m = _fit(case)
    ci = m.confint(method="profile")
    ours = ci.rename(index=ci.attrs["lme4_names"])
    for name, (lo, hi) in REF[case]["confint_profile"].items():
        width = hi - lo
        assert ours.loc[name, "lower"] == pytest.approx(lo, abs=0.01 * width), name
        assert ours.loc[name, "upper"] == pytest.approx(hi, abs=0.01 * width), name
