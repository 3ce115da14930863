"""Fits that stopped where the optimiser could not leave, against lme4
(``tests/fixtures/saddle``, the R script beside the data).

``saddle``: L-BFGS-B stopped with the internal intercept's Cholesky diagonal at 4e-4 and
the correlation at -1, a saddle point 0.0029 below lme4's optimum (a rank-one covariance
written one way, the optimum writing it the other), reported not converged; resumed from
a point along the direction of negative curvature (``_engine/saddle.py``, a stage ``"off
a saddle point"``) the fit reaches lme4's optimum.

``rank_one``: the fit stopped with the second Cholesky diagonal at 0 (a correlation of
-1), converged, 0.026 below lme4's optimum at a correlation of -0.65: a local minimum on
the boundary (the objective rises along that diagonal alone), which the probes of a zero
diagonal (the diagonal moved alone) did not leave; re-fitted from off it
(``stage._off_rank_one``) the fit reaches lme4's optimum.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn_glmm.formula import glmer  # noqa: E402

HERE = Path(__file__).parent / "fixtures" / "saddle"


@pytest.mark.parametrize("name, family", [("saddle", "binomial"), ("rank_one", "poisson")])
def test_a_fit_stopped_where_the_optimiser_could_not_leave_reaches_lme4s_optimum(name, family):
    ref = json.loads((HERE / f"{name}.json").read_text())
    d = pd.read_csv(HERE / f"{name}.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer(ref["formula"], d, family=family)
    if name == "saddle":
        assert "off a saddle point" in [s[0] for s in m.fit_record_.stages]
    else:
        assert not m.is_singular_
    assert m.converged_
    assert m.loglik_ > ref["loglik"] - 1e-5
    fe = m.fixed_effects_["estimate"]
    assert list(fe.index) == ref["names"]
    np.testing.assert_allclose(fe, ref["fixef"], atol=5e-3)
    cov = m.random_effects_cov_["g"].to_numpy()
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(sd, ref["sd"], rtol=0.02)
    assert cov[0, 1] / (sd[0] * sd[1]) == pytest.approx(ref["corr"], abs=0.02)
