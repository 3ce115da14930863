"""The constrained search of profile points (``Profiler._constrained_point``): SLSQP over
the internal parameters with the profiled reported parameter held, used where
correlations have a joint domain that is not a box (here a block-diagonal covariance
of three random effects). Where a standard deviation is held at 0 the constraint has no
direction; SLSQP's steps there went to internal values of 1e9 in thousands of
evaluations (two such calls were most of a confint's cost) and found nothing."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm._param_map import ParamMap
from sklearn_glmm._profile import Profiler, _phi_gradient

pytest.importorskip("formulaic")
HERE = Path(__file__).parent / "fixtures" / "term_blocks"


def _fit(data, formula):
    from sklearn_glmm.formula import glmer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmer(formula, pd.read_csv(HERE / data), family="poisson")


def _counting(obj):
    """Count the objective's evaluations (value, or value and gradient)."""
    n = [0]
    vg, ev = obj.value_and_grad, obj.evaluate

    def value_and_grad(x):
        n[0] += 1
        return vg(x)

    def evaluate(x):
        n[0] += 1
        return ev(x)

    obj.value_and_grad, obj.evaluate = value_and_grad, evaluate
    return n


def test_a_standard_deviation_held_at_zero_is_not_searched_by_slsqp():
    m = _fit("d6.csv", "y ~ x1 + (1 + x1 | g) + (0 + x2 | g)")
    pm = ParamMap(m)
    k = pm.names.index("sd_(Intercept)|g")
    prof = Profiler(m, pm)
    assert prof.coupled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F, x = prof.point(k, 0.0, prof.x_hat)
    assert np.isfinite(F) and pm.to_phi(x)[k] == pytest.approx(0.0, abs=1e-12)
    # no direction: phi_k's gradient in the internal parameters vanishes there
    assert np.max(np.abs(_phi_gradient(pm, k, x))) < 1e-6
    n = _counting(prof.obj)
    try:
        F2, _x2 = prof._constrained_point(k, 0.0, x)
    finally:
        del prof.obj.value_and_grad, prof.obj.evaluate
        prof.restore()
    assert F2 == np.inf and n[0] == 0


@pytest.mark.parametrize(
    "data, formula",
    [
        ("d6.csv", "y ~ x1 + (1 + x1 | g) + (0 + x2 | g)"),
        ("profile.csv", "y ~ x + z + (1 + x | g) + (0 + z | g)"),
    ],
)
def test_profile_of_a_standard_deviation_to_zero_stays_near_the_estimate(data, formula):
    """The intercept SD's profile reaches 0 on the lower side (d6: the limit is 0, as
    lme4's; profile.csv: its crossing is near 0). Every point the profile evaluates
    stays within 20 internal units of the estimate, and the whole profile takes under
    1,000 evaluations (it took 1,466 and 6,831, the constrained search's points out at
    1e6-1e12)."""
    m = _fit(data, formula)
    obj = m.fit_result_.objective
    x_hat = m.fit_result_.params.copy()
    far = [0.0]
    n = _counting(obj)
    vg = obj.value_and_grad

    def value_and_grad(x):
        far[0] = max(far[0], float(np.max(np.abs(np.asarray(x) - x_hat))))
        return vg(x)

    obj.value_and_grad = value_and_grad
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = m.confint(parm=["sd_(Intercept)|g"], method="profile")
    finally:
        del obj.value_and_grad, obj.evaluate
    assert n[0] < 1000 and far[0] < 20.0
    assert ci.iloc[0]["lower"] < ci.iloc[0]["estimate"] < ci.iloc[0]["upper"]


def test_a_toeplitz_correlation_of_one_is_not_searched():
    """No positive definite Toeplitz covariance has a lag correlation of +-1 (its bound):
    the constrained search there returns at once (it took about 5,000 evaluations, 6 s,
    each of the six times a 95 % profile of that model reached such a bound; the
    profile counts the bound as beyond the limit either way)."""
    from sklearn_glmm import PoissonGLMM

    d = pd.read_csv(Path(__file__).parent / "fixtures" / "toep_profile" / "data.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM(random_effects="toep(day)", random_only_columns="day").fit(
            d[["day", "x"]], d["y"], groups=d["id"].astype(str)
        )
    pm = ParamMap(m)
    prof = Profiler(m, pm)
    assert prof.coupled
    n = _counting(prof.obj)
    try:
        for name in ("rho_lag1|id", "rho_lag3|id"):
            k = pm.names.index(name)
            for value in (-1.0, 1.0):
                F, _x = prof._constrained_point(k, value, prof.x_hat)
                assert F == np.inf
        # an inner value is searched
        k = pm.names.index("rho_lag1|id")
        F, x = prof._constrained_point(k, 0.7, prof.x_hat)
    finally:
        del prof.obj.value_and_grad, prof.obj.evaluate
        prof.restore()
    assert np.isfinite(F) and pm.to_phi(x)[k] == pytest.approx(0.7, abs=1e-8)
    assert 0 < n[0] < 500


def _block_correlations(pm, sl, u):
    """The 3 x 3 correlation matrix of the block at the slice's vector ``u``."""
    nf_nb = len(u) - len(sl.theta)
    phi_t = u[nf_nb:] * sl.tscale
    (start, q, rows, cols, _T) = next(b for b in pm.blocks if b[1] == 3)
    R = np.eye(q)
    for i, (r, c) in enumerate(zip(rows, cols)):
        if r != c:
            R[r, c] = R[c, r] = phi_t[start - pm.p + i]
    return R


def test_a_start_on_a_singular_block_is_moved_inside():
    """A start whose block of three random effects has a Cholesky diagonal at 0 (as
    SLSQP's points end, on that diagonal's bound) and no correlation at +-1: the point
    starts inside (the correlations a twentieth of the way to 0, a held one kept)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_fuzz_profile_blocks import make_case

    from sklearn_glmm import PoissonGLMM

    X, y, g, family = make_case(0)
    assert family == "poisson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM(random_effects="1 + x + z").fit(X, y, groups=pd.Series(g, name="g"))
    pm = ParamMap(m)
    prof = Profiler(m, pm)
    start, q, rows, cols, _T = next(b for b in pm.blocks if b[1] == 3)
    x = prof.x_hat.copy()
    x[start + len(rows) - 1] = 0.0  # the last Cholesky diagonal (lme4's theta order)
    assert (rows[-1], cols[-1]) == (2, 2)
    for name in ("z", "cor_z.x|g"):
        k = pm.names.index(name)
        sl = prof._slice(k)
        value = pm.to_phi(x)[k]
        u0 = sl.inside(sl.start(x, value)[0], value)
        R0 = _block_correlations(pm, sl, u0)
        assert np.linalg.eigvalsh(R0)[0] < 1e-6  # the estimate's block is singular
        assert np.all(np.abs(R0[np.tril_indices(3, -1)]) < 0.99)
        R1 = _block_correlations(pm, sl, sl.off_singular(u0))
        assert np.linalg.eigvalsh(R1)[0] > 1e-3
        moved = R1 != R0
        if name.startswith("cor"):
            i, j = 2, 1  # z, x in the block's order (Intercept), x, z
            assert R1[i, j] == R0[i, j] and not moved[i, j]
        else:
            assert np.allclose(R1 - np.eye(3), 0.95 * (R0 - np.eye(3)))


def test_a_profile_point_of_a_singular_block_reaches_the_held_minimum():
    """``z`` held at -0.1643 on the singular Poisson fit of ``(1 + x + z | g)`` (fuzz
    seed 0): the held minimum of the deviance is 3.204 above the fit's (the independent
    dense Laplace likelihood's, minimised in ``tests/test_fuzz_profile_blocks.py``); the
    point from the estimate stopped at 3.839 (started on the block's singular boundary,
    the profile's upper limit of ``z`` came out there, at -0.164 instead of -0.150)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_fuzz_profile_blocks import make_case

    from sklearn_glmm import PoissonGLMM

    X, y, g, _family = make_case(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM(random_effects="1 + x + z").fit(X, y, groups=pd.Series(g, name="g"))
    pm = ParamMap(m)
    prof = Profiler(m, pm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F, _x = prof.point(pm.names.index("z"), -0.1643, prof.x_hat)
    prof.restore()
    assert F - prof.F_hat == pytest.approx(3.204, abs=0.01)
