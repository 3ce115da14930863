"""Profile intervals of a correlated block of random effects against the truth.

``tests/test_fuzz_inference.py`` checks profile limits of scalar random intercepts;
here each reported parameter of a model with an intercept and two slopes per group
(``(1 + x + z | g)``: three fixed effects, three SDs, three correlations) is checked on
generated data (Poisson and binary). The profile of a correlation of such a block is
the coupled case: the correlations are positive definite together, not each within
(-1, 1), and the library's profile also searches with the held value as a constraint.

The truth is ``truth_dense``'s Laplace log-likelihood (nothing of the library's
engine). At each limit ``v`` the library reports, the deviance with that parameter held
at ``v`` is minimised over the others in the reported parameters themselves (fixed
effects, SDs, correlations; a correlation matrix that is not positive definite is
worth +inf), by BFGS with central differences from two starts: the estimate with the
parameter moved to ``v``, and the library's own profile point there (a start only; its
value is recomputed). The check: ``sqrt(D(v))`` is the cutoff ``z_0.975`` within
``TOL_ZETA``. A limit too near the estimate (the library's profile point above the held
minimum) shows as ``sqrt(D) < z``; one too far as ``sqrt(D) > z``. A limit on a bound
(an SD of 0, a correlation of +-1) is checked to be inside: the held deviance there is
at most the cutoff's square (within the tolerance). A limit reported as NaN passes only
with a ``ProfileWarning`` that names it (where the profile's points disagree, e.g.
|zeta| jumps, the library says the limit is not determined)."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import truth
import truth_dense
from scipy import optimize, stats

from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm._param_map import ParamMap
from sklearn_glmm._profile import Profiler
from sklearn_glmm.exceptions import ProfileWarning

ZC = stats.norm.ppf(0.975)
# the library stops within 5e-4 of the cutoff in |zeta|; the held minimum by BFGS with
# central differences is good to about 1e-6 in deviance
TOL_ZETA = 2e-3
EFFECTS = ("(Intercept)", "x", "z")


def make_case(seed):
    rng = np.random.default_rng(seed)
    G, per = 30, 8
    g = np.repeat(np.arange(G), per)
    n = G * per
    x, z = rng.normal(size=n), rng.normal(size=n)
    sd = np.array([0.6, 0.35, 0.3]) * rng.uniform(0.6, 1.4, 3)
    r = rng.uniform(-0.6, 0.6, 3)
    R = np.array([[1, r[0], r[1]], [r[0], 1, r[2]], [r[1], r[2], 1]])
    if np.linalg.eigvalsh(R).min() < 0.05:
        R = np.eye(3)
    b = rng.multivariate_normal(np.zeros(3), np.outer(sd, sd) * R, size=G)
    eta = 0.3 + 0.4 * x - 0.2 * z + b[g, 0] + b[g, 1] * x + b[g, 2] * z
    family = "poisson" if seed % 2 == 0 else "binomial"
    if family == "poisson":
        y = rng.poisson(np.exp(eta))
    else:
        y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"x": x, "z": z}), y.astype(float), g, family


class HeldTruth:
    """``-2 log L`` of truth's Laplace approximation, minimised with one reported
    parameter held. The free parameters: the fixed effects, the SDs and the correlation
    matrix by angles, ``R = L L'`` with unit rows ``(1, 0, 0)``, ``(cos a, sin a, 0)``,
    ``(cos b, sin b cos c, sin b sin c)`` (every positive semi-definite matrix, singular
    ones included, and only those); the effects ordered so that a held correlation is
    ``cos a``."""

    def __init__(self, X, y, g, family, names):
        Xd = np.column_stack([np.ones(len(y)), X.to_numpy()])
        self.data = truth.GLMMData(Xd, y, g, family)
        self.structure = truth_dense.Structure([truth_dense.Term(g, Xd.copy(), None)])
        self.names = names
        self.sd = [names.index(f"sd_{e}|g") for e in EFFECTS]
        self.cor = {}
        for i, a in enumerate(EFFECTS):
            for j, b in enumerate(EFFECTS):
                if f"cor_{b}.{a}|g" in names:
                    self.cor[(i, j)] = self.cor[(j, i)] = names.index(f"cor_{b}.{a}|g")

    def deviance(self, beta, sd, R):
        params = {"beta": np.asarray(beta, dtype=float), "cov": [np.outer(sd, sd) * R]}
        ll = truth_dense.laplace_loglik(params, self.data, self.structure)
        return -2.0 * ll if np.isfinite(ll) else np.inf

    def correlations(self, phi) -> np.ndarray:
        R = np.eye(3)
        for (i, j), k in self.cor.items():
            R[i, j] = phi[k]
        return R

    def at(self, phi):
        return self.deviance(phi[:3], np.abs(phi[self.sd]), self.correlations(phi))

    @staticmethod
    def _angles(R, order):
        """(a, b, c) of ``R`` with its effects in ``order``."""
        Rp = R[np.ix_(order, order)]
        a = np.arccos(np.clip(Rp[0, 1], -1, 1))
        b = np.arccos(np.clip(Rp[0, 2], -1, 1))
        den = np.sin(a) * np.sin(b)
        if den <= 1e-12:
            return np.array([a, b, 0.0])
        c = np.arccos(np.clip((Rp[1, 2] - np.cos(a) * np.cos(b)) / den, -1, 1))
        return np.array([a, b, c])

    @staticmethod
    def _matrix(angles, order):
        a, b, c = angles
        L = np.array(
            [
                [1.0, 0.0, 0.0],
                [np.cos(a), np.sin(a), 0.0],
                [np.cos(b), np.sin(b) * np.cos(c), np.sin(b) * np.sin(c)],
            ]
        )
        Rp = L @ L.T
        R = np.empty((3, 3))
        R[np.ix_(order, order)] = Rp
        return R

    def held_minimum(self, k, value, starts):
        held_pair = next((ij for ij, kk in self.cor.items() if kk == k), None)
        if held_pair is None:
            order = [0, 1, 2]
        else:
            i, j = held_pair
            order = [i, j, 3 - i - j]
        best = np.inf
        for start in starts:
            phi = np.asarray(start, dtype=float).copy()
            phi[k] = value
            beta, sd = phi[:3].copy(), np.abs(phi[self.sd])
            ang = self._angles(self.correlations(phi), order)
            if held_pair is not None:
                ang[0] = np.arccos(np.clip(value, -1, 1))
            # free: the fixed effects and SDs other than the held one, the angles other
            # than a held correlation's
            v0 = np.r_[beta, sd, ang]
            held = k if k < 3 else (3 + self.sd.index(k) if k in self.sd else 6)
            free = np.array([i for i in range(9) if i != held])

            def f(u, v0=v0, free=free, order=order):
                v = v0.copy()
                v[free] = u
                return self.deviance(v[:3], np.abs(v[3:6]), self._matrix(v[6:], order))

            if not np.isfinite(f(v0[free])):
                continue
            with np.errstate(invalid="ignore"):  # (differences across +inf)
                res = optimize.minimize(
                    f, v0[free], method="BFGS", options={"gtol": 1e-7, "eps": 1e-7}
                )
            best = min(best, float(res.fun))
        return best


def _check_case(seed, parm=None):
    X, y, g, family = make_case(seed)
    cls = PoissonGLMM if family == "poisson" else BinomialGLMM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cls(random_effects="1 + x + z").fit(X, y, groups=pd.Series(g, name="g"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ci = m.confint(method="profile", parm=parm)
    warned = " ".join(str(w.message) for w in caught if issubclass(w.category, ProfileWarning))
    pm = ParamMap(m)
    names = list(pm.names)
    assert set(ci.index) <= set(names)
    held = HeldTruth(X, y, g, family, names)
    phi_hat = pm.to_phi(m.fit_result_.params)
    D_hat = held.at(phi_hat)
    assert D_hat == pytest.approx(-2.0 * m.loglik_, abs=1e-5)
    prof = Profiler(m, pm)
    bad = []
    for name in ci.index:
        k = names.index(name)
        for side in ("lower", "upper"):
            v = float(ci.loc[name, side])
            if not np.isfinite(v):
                # NaN is an answer only with a warning that names the parameter
                if f"limit of {name} is not determined" not in warned:
                    bad.append((name, side, "NaN without a warning"))
                continue
            lo, hi = pm.bounds[k]
            on_bound = v in (lo, hi)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _F, x_lib = prof.point(k, v, prof.x_hat)
            prof.restore()
            D = held.held_minimum(k, v, [phi_hat, pm.to_phi(x_lib)]) - D_hat
            if on_bound:
                if not D <= ZC**2 + 2 * ZC * TOL_ZETA:
                    bad.append((name, side, v, "bound outside", D))
            elif not abs(np.sqrt(max(D, 0.0)) - ZC) <= TOL_ZETA:
                bad.append((name, side, v, np.sqrt(max(D, 0.0))))
    return bad


FAST = [0]
SLOW = range(int(os.environ.get("FUZZ_PROFILE_BLOCKS_CASES", "12")))


@pytest.mark.parametrize("seed", FAST)
def test_profile_limits_of_a_block_against_the_truth_fast_sample(seed):
    # a fixed effect and a correlation of a singular fit (in a profile of all its
    # parameters z's upper limit was -0.164, where the held deviance is 3.20; profiled
    # alone it was right: test_profile_constrained.py holds that point); the slow tier
    # profiles every parameter
    assert _check_case(seed, parm=["z", "cor_z.x|g"]) == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", list(SLOW))
def test_profile_limits_of_a_block_against_the_truth(seed):
    assert _check_case(seed) == []
