"""Fits whose optimiser (or Newton steps) starts at another fit's end or on a bound end
at the optimum, or say they did not."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import NegBinGLMM, PoissonGLMM


def _fit(est, x, y, g):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(pd.DataFrame({"x": x}), np.array(y), groups=np.array(g))


@pytest.mark.parametrize(
    "est, y, x, g, optimum",
    [
        # ZIP on five groups of four rows: SD 0 with pi 0.77 (-2 log L 31.9251) and the
        # optimum at SD 2.36 with pi 0.27 (glmmTMB from its own start: 30.4564); the
        # profile over the SD is above its value at zero up to an SD of 1 (32.22) and
        # below it from 2 (30.52)
        (
            PoissonGLMM(zero_inflation=True),
            [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 2, 5, 0],
            [-0.1973, 1.245, 1.7488, -0.5161, 1.2952, -0.5668, 0.0539, 1.073, -0.3285,
             2.3726, -2.5348, -0.298, -0.8106, -0.2342, 0.0736, -1.607, 1.1319, -1.2351,
             0.5736, 0.9793],
            np.repeat(np.arange(5), 4),
            30.4564,
        ),
        # hurdle NB2 on eight groups of three rows: SD 0 (116.9991) and the optimum at
        # SD 2.13 (glmmTMB from its own start: 115.2207)
        (
            NegBinGLMM(hurdle=True),
            [0, 0, 0, 0, 0, 2, 0, 0, 38, 66, 44, 48, 0, 0, 1, 108, 26, 56, 0, 0, 0, 0, 0, 0],
            [-1.1866, -1.0936, -0.1446, 1.2079, 0.6325, 1.6889, 0.7307, 0.5869, -0.5518,
             2.0746, 0.9317, 0.0232, 1.8142, -2.6091, 1.5009, 0.4734, -0.0076, -0.24,
             1.2426, -2.1153, -1.1047, -0.3652, -0.0822, -0.0467],
            np.repeat(np.arange(8), 3),
            115.2207,
        ),
    ],
)  # fmt: skip
def test_a_zero_sd_of_a_zero_inflated_fit_is_probed_past_the_grid(est, y, x, g, optimum):
    m = _fit(est, x, y, g)
    assert m.converged_
    assert -2 * m.loglik_ <= optimum + 1e-3
