"""Profile-likelihood intervals of the coefficients of a zero-inflation or dispersion
model, intercepts included, against glmmTMB's (``fixtures/block_profile``: the data
generator and the R script beside the fixture).

The designs of these models are centred internally; a block's reported intercept is a
combination of its internal coefficients, held at each profile point while they move.
"""

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from sklearn_glmm import NegBinGLMM

FIXTURES = Path(__file__).parent / "fixtures" / "block_profile"


def _reference():
    return json.loads((FIXTURES / "block_profile.json").read_text())


def _fit(case):
    d = pd.read_csv(FIXTURES / "block_profile.csv")
    X = d[["x", "w"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "nb2_disp":
            return NegBinGLMM(dispersion="1 + w").fit(X, d["y_disp"], groups=d["g"])
        return NegBinGLMM(zero_inflation="1 + z").fit(d[["x", "w", "z"]], d["y_zi"], groups=d["g"])


@pytest.mark.parametrize("case", ["nb2_disp", "zinb2_z"])
def test_profile_intervals_of_a_blocks_coefficients_match_glmmtmb(case):
    ref = _reference()[case]
    m = _fit(case)
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    ci = m.confint(parm=list(ref["profile"]), method="profile")
    for name, (lo, hi) in ref["profile"].items():
        # glmmTMB interpolates its profile by a spline (measured: 1e-4 apart at most)
        assert ci.loc[name, "lower"] == pytest.approx(lo, abs=5e-4), name
        assert ci.loc[name, "upper"] == pytest.approx(hi, abs=5e-4), name
