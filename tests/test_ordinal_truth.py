"""OrdinalGLMM against the truth: fits checked against an independent likelihood.

Data sets come from :func:`make_ordinal_case` (2-5 classes, the five links, 6-30 groups
of 2-10 rows, random-intercept SDs from 0 to 3, predictors standard, shifted far from
zero, in large or small units, or binary; Laplace and adaptive quadrature with 5 and 25
nodes; flexible and equidistant thresholds). Each fit is checked against
``truth_ordinal.py`` (numpy and scipy only), at the reported parameters (the
thresholds at ``X = 0``, the coefficients and the SD, so the map from the engine's
internal, centred scale is checked too):

- ``loglik_value``: ``loglik_`` differs from the independent Laplace (or AGQ with the
  fit's nodes) log-likelihood at the reported parameters by more than 1e-4 (levels with
  a nearly flat conditional density, curvature below 1e-3 of the prior's, excepted);
- ``loglik_vs_integral``: with 25 nodes and no warning, ``loglik_`` differs from the
  integral itself by more than 1e-3 (a level whose outcomes all sit in an end class has
  a plateau as wide as the prior, which no 25-node rule integrates: the fit warns then,
  the SD is not identified). Not for the cauchit, whose heavy-tailed, skewed conditional
  densities leave 25 nodes up to 1.2e-3 from the integral in these data sets: the
  rule's own error, not the implementation's, which the comparison with an independent
  AGQ of the same nodes checks;
- ``not_optimal``: the fit reports ``converged_ = True`` without a warning, yet
  Nelder-Mead started from it finds a log-likelihood higher by more than 0.01;
- ``below_clm``: the same kind of fit is more than 0.01 below the maximised
  log-likelihood of the model without the random intercept (clm's);
- ``nonfinite``: a NaN or infinite estimate or log-likelihood without a warning.

Run ``python -m pytest -m slow tests/test_ordinal_truth.py`` for 80 data sets (seeds
100-179; 160 were run when it was written, none failing).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import truth
import truth_ordinal as T
from scipy import optimize

from sklearn_glmm import OrdinalGLMM

TOL_OPTIMUM = 0.01
TOL_INTEGRAL = 1e-3
TOL_SAME_APPROX = 1e-4
FLAT = 1e-3
NOT_ABOUT_THE_FIT = (RuntimeWarning, DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _noise(link, rng, n):
    """Draws of the latent error whose CDF is the link's ``F``."""
    u = rng.uniform(size=n)
    if link == "logit":
        return np.log(u) - np.log1p(-u)
    if link == "probit":
        return rng.normal(size=n)
    if link == "cloglog":
        return np.log(-np.log1p(-u))
    if link == "loglog":
        return -np.log(-np.log(u))
    return np.tan(np.pi * (u - 0.5))  # cauchit


def make_ordinal_case(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    link = T.LINKS[seed % len(T.LINKS)]
    n_groups = int(rng.choice([6, 15, 30]))
    per = int(rng.choice([2, 5, 10]))
    p = int(rng.choice([1, 2]))
    sd = float(rng.choice([0.0, 0.2, 1.0, 3.0]))
    K = int(rng.choice([2, 3, 4, 5]))
    groups = np.repeat(np.arange(n_groups), per)
    n = len(groups)
    X = np.empty((n, p))
    kinds = []
    for j in range(p):
        kind = str(rng.choice(["standard", "shifted", "units", "binary"]))
        col = rng.normal(size=n)
        if kind == "shifted":
            col = col + float(rng.choice([1e3, -50.0]))
        elif kind == "units":
            col = col * float(rng.choice([1e3, 1e-3]))
        elif kind == "binary":
            col = (rng.uniform(size=n) < 0.4).astype(float)
        X[:, j] = col
        kinds.append(kind)
    beta = rng.normal(0.0, 0.8, p) / np.maximum(X.std(axis=0), 1e-12)
    latent = X @ beta + rng.normal(0.0, sd, n_groups)[groups] + _noise(link, rng, n)
    cuts = np.quantile(latent, np.sort(rng.uniform(0.15, 0.85, K - 1)))
    y = np.searchsorted(np.unique(cuts), latent)
    y = np.unique(y, return_inverse=True)[1]  # classes 0 .. K'-1, every one seen
    K = int(y.max()) + 1
    n_agq = int(rng.choice([1, 1, 1, 5, 25]))
    threshold = "equidistant" if K >= 3 and rng.uniform() < 0.25 else "flexible"
    return dict(
        X=X, y=y, groups=groups, link=link, n_agq=n_agq, threshold=threshold, K=K, kinds=kinds
    )


def _fit(case):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = OrdinalGLMM(link=case["link"], n_agq=case["n_agq"], threshold=case["threshold"])
        m.fit(case["X"], case["y"], groups=case["groups"])
    about_fit = [w for w in caught if not issubclass(w.category, NOT_ABOUT_THE_FIT)]
    return m, about_fit


def _params_of(m):
    sd = float(np.sqrt(next(iter(m.random_effects_cov_.values())).iloc[0, 0]))
    return dict(beta=m.coef_, alpha=m.thresholds_["estimate"].to_numpy(), sigma=sd)


def _vector_map(case, p):
    """``(to_params, vector of params)``: the free parameters of the fit's threshold
    structure (clm's ``alpha = J a``) in a flat vector, with the SD last."""
    K = case["K"]
    steps = np.arange(K - 1, dtype=float)

    def to_params(v):
        a = v[p:-1]
        alpha = a if case["threshold"] == "flexible" else a[0] + a[1] * steps
        return dict(beta=v[:p], alpha=alpha, sigma=abs(v[-1]))

    def to_vector(params):
        alpha = params["alpha"]
        a = alpha if case["threshold"] == "flexible" else [alpha[0], alpha[1] - alpha[0]]
        return np.r_[params["beta"], a, params["sigma"]]

    return to_params, to_vector


def check_case(seed: int) -> dict:
    """The failures of one data set (kind -> detail) and what was computed."""
    case = make_ordinal_case(seed)
    m, warned = _fit(case)
    data = T.OrdinalData(case["X"], case["y"], case["groups"], case["link"])
    params = _params_of(m)
    failures, info = {}, dict(seed=seed, warned=[w.category.__name__ for w in warned])
    finite = np.isfinite(m.loglik_) and np.all(np.isfinite(m.coef_))
    finite = finite and np.all(np.isfinite(params["alpha"])) and np.isfinite(params["sigma"])
    if not finite:
        if not warned:
            failures["nonfinite"] = "non-finite estimates without a warning"
        return dict(failures=failures, **info)
    n_agq = case["n_agq"]
    value = T.agq_loglik(params, data, n_agq)
    info.update(loglik=m.loglik_, truth=value)
    flat = params["sigma"] > 0 and T.min_curvature(params, data) < FLAT
    if not flat and not abs(m.loglik_ - value) <= TOL_SAME_APPROX:
        failures["loglik_value"] = f"loglik_ {m.loglik_:.8f} vs independent {value:.8f}"
    if n_agq >= 25 and params["sigma"] > 0 and not warned and case["link"] != "cauchit":
        integral = T.marginal_loglik(params, data)
        if not abs(m.loglik_ - integral) <= TOL_INTEGRAL:
            failures["loglik_vs_integral"] = f"{m.loglik_:.6f} vs integral {integral:.6f}"
    if not (m.converged_ and not warned):
        return dict(failures=failures, **info)
    p = case["X"].shape[1]
    to_params, to_vector = _vector_map(case, p)
    data.keep_warm = True
    near = truth.best_nearby(
        lambda v: T.agq_loglik(to_params(v), data, n_agq),
        to_vector(params),
        max_evaluations=400,
    )
    info["nearby"] = near.value
    if near.value > m.loglik_ + TOL_OPTIMUM:
        failures["not_optimal"] = f"{near.value:.6f} nearby vs loglik_ {m.loglik_:.6f}"
    # the model without the random intercept (clm), from the fit's fixed part
    data.keep_warm, data.warm = False, None

    def clm(v):
        q = to_params(np.r_[v, 0.0])
        with np.errstate(all="ignore"):
            val = T.agq_loglik(q, data, 1)
        return -val if np.isfinite(val) else 1e300

    v0 = to_vector(params)[:-1]
    best = optimize.minimize(clm, v0, method="Nelder-Mead", options={"maxfev": 2000})
    info["clm"] = -best.fun
    if -best.fun > m.loglik_ + TOL_OPTIMUM:
        failures["below_clm"] = f"clm {-best.fun:.6f} vs loglik_ {m.loglik_:.6f}"
    return dict(failures=failures, **info)


FAST_SEEDS = list(range(8))
SLOW_SEEDS = list(range(100, 180))
# data sets of the slow run that failed at first, with what they showed: tests now
FAILED_BEFORE = {
    116: "probit, 6 groups of 2 rows, 5 in an end class: SD 118, converged, no warning",
    142: "cloglog, 3 of 6 groups in an end class: SD 17.6 and a coefficient of -1.5e4 "
    "per SD, converged without a warning, 0.22 below a nearby point",
    157: "cloglog, 5 of 6 groups in an end class: SD 144, converged, no warning",
}


@pytest.mark.parametrize("seed", sorted(FAILED_BEFORE))
def test_ordinal_group_separation_is_warned_about(seed):
    from sklearn_glmm.exceptions import SeparationWarning

    m, warned = _fit(make_ordinal_case(seed))
    found = [str(w.message) for w in warned if issubclass(w.category, SeparationWarning)]
    assert found and "all in the highest" in found[0], FAILED_BEFORE[seed]
    assert not check_case(seed)["failures"]


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_ordinal_fit_against_the_truth(seed):
    out = check_case(seed)
    assert not out["failures"], out


@pytest.mark.slow
def test_ordinal_fuzz_against_the_truth():
    bad = {}
    for seed in SLOW_SEEDS:
        out = check_case(seed)
        if out["failures"]:
            bad[seed] = out
    assert not bad, bad


if __name__ == "__main__":  # one data set, with what its checks computed
    import sys

    print(check_case(int(sys.argv[1])))
