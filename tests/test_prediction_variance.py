"""Standard errors of predictions for rows of known groups (``predict_interval``).

The variance of ``x'beta + z'b`` as a prediction: the joint precision of the fixed
and random effects at the fitted covariance parameters, with the covariance between
the fixed effects and the random effects' prediction errors and between grouping
factors (``sklearn_glmm/_prediction_variance.py``), plus the covariance parameters'
uncertainty carried through the modes, as glmmTMB's ``predict(se.fit = TRUE)``.
"""

import dataclasses
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from sklearn_glmm import _prediction_variance as pv
from sklearn_glmm.formula import glmer, glmmTMB

FIXTURES = Path(__file__).parent / "fixtures" / "predict_se"


def _fit(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


CASES = [
    "bin_ri",
    "bin_rs",
    "bin_crossed",
    "pois_olre",
    "nb2",
    "zip",
    "pois_ar1",
    "pois_offset",
    "nb2_disp",
]


@pytest.mark.parametrize("case", CASES)
def test_known_group_se_matches_glmmtmb(case):
    """Against glmmTMB 1.1.5's predict(se.fit = TRUE) (make.R next to the fixtures):
    random intercept, random slope, crossed factors, an observation-level factor, NB2,
    zero-inflated Poisson, an ar1 factor, an offset with prior weights and an NB2
    dispersion depending on x. The fits agree to the optimisers'
    tolerances (log-likelihoods to 5e-8, linear predictors to 2e-5) and the SEs were
    measured to agree to 7e-6 relative in every case; rtol 1e-4 leaves room for the
    optimisers' differences and still fails the former per-factor sum (1-84 % off at
    each case's worst row) and the exact inverse at the fitted variances alone (0.3-4 %
    smaller)."""
    ref = json.loads((FIXTURES / f"{case}.json").read_text())
    d = pd.read_csv(FIXTURES / f"{case}.csv")
    kw = {} if ref["ziformula"] == "~0" else {"ziformula": ref["ziformula"]}
    if ref["dispformula"] != "~1":
        kw["dispformula"] = ref["dispformula"]
    if ref["weights"]:
        kw["weights"] = d[ref["weights"]]
    m = _fit(glmmTMB, ref["formula"], d, family=ref["family"], **kw)
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-6)
    rows = d.iloc[:8]
    before = rows.copy()
    out = m.predict_interval(rows, scale="link")
    pd.testing.assert_frame_equal(rows, before)  # the caller's data are not modified
    np.testing.assert_allclose(out["fit"], ref["fit"], atol=1e-4)
    np.testing.assert_allclose(out["se"], ref["se"], rtol=1e-4)


def _dense_joint_variance(m, d, X, factors):
    """``c' H^{-1} c`` for every training row, H built densely in the user's units:
    ``[[X'WX, X'WZ], [Z'WX, Z'WZ + Sigma^{-1}]]`` with a Poisson ``W = w mu``."""
    res = m.fit_result_
    Zs, prec = [], []
    for name, cols in factors:
        lev = list(m.ranef_[name].index.astype(str))
        ind = (d[name].astype(str).to_numpy()[:, None] == np.array(lev)[None, :]).astype(float)
        zc = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in cols])
        # b ordered level by level, term by term
        Zs.append((ind[:, :, None] * zc[:, None, :]).reshape(len(d), -1))
        S = np.atleast_2d(m.random_effects_cov_[name].to_numpy())
        prec.append(np.kron(np.eye(len(lev)), np.linalg.inv(S)))
    Z = np.hstack(Zs)
    mu = np.asarray(m.fitted()) * res.train["w"]
    A = np.hstack([X, Z])
    H = A.T @ (mu[:, None] * A)
    p = X.shape[1]
    k = p
    for P in prec:
        H[k : k + len(P), k : k + len(P)] += P
        k += len(P)
    return np.einsum("ni,ij,nj->n", A, np.linalg.inv(H), A)


def _poisson_data(seed=3, n=240):
    rng = np.random.default_rng(seed)
    d = pd.DataFrame(
        {
            "g": rng.integers(0, 12, n).astype(str),
            "h": rng.integers(0, 7, n).astype(str),
            "x": rng.normal(size=n),
            "logE": rng.normal(0.0, 0.3, n),
            "wt": rng.choice([0.5, 1.0, 2.0], n),
        }
    )
    ug = dict(zip(map(str, range(12)), rng.normal(0, 0.6, 12)))
    sg = dict(zip(map(str, range(12)), rng.normal(0, 0.3, 12)))
    uh = dict(zip(map(str, range(7)), rng.normal(0, 0.4, 7)))
    eta = 0.5 + 0.3 * d.x + d.g.map(ug) + d.g.map(sg) * d.x + d.h.map(uh) + d.logE
    d["y"] = rng.poisson(np.exp(eta))
    return d


@pytest.mark.parametrize(
    "formula, factors",
    [
        ("y ~ x + (1 | g)", [("g", [])]),
        ("y ~ x + (1 + x | g)", [("g", ["x"])]),
        ("y ~ x + (1 + x | g) + (1 | h)", [("g", ["x"]), ("h", [])]),
    ],
)
def test_exact_joint_inverse_equals_dense(formula, factors):
    """The exact inverse of the joint precision at the fitted covariance parameters
    (``vcov="schur"``) equals a dense inverse built here from the fitted values, with an
    offset and prior weights (W = w mu), to 1e-10: one factor (block-diagonal D) and
    crossed factors (sparse LU of D)."""
    d = _poisson_data()
    m = _fit(
        glmer, formula.replace("x +", "x + offset(logE) +"), d, family="poisson", weights=d["wt"]
    )
    X = np.column_stack([np.ones(len(d)), d.x])
    want = _dense_joint_variance(m, d, X, factors)
    res = m.fit_result_
    codes = [f.codes for f in res.factors]
    Zs = [f.z_matrix(X[:, 1:]) for f in res.factors]
    got = pv.known_group_variance(res, X[:, 1:], Zs, codes, vcov="schur")
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # the default's extra pieces: a different, not a rescaled, variance
    full = pv.known_group_variance(res, X[:, 1:], Zs, codes)
    assert np.all(np.isfinite(full)) and not np.allclose(full, got, rtol=1e-4)
    # the same W as ranef(cond_var=True): the random effects' block of the inverse
    jp = pv.joint_precision(res)
    for k, f in enumerate(res.factors):
        q = jp.qs[k]
        Lo = res.z_maps[k] @ jp.lams[k]
        E = np.zeros((jp.Q, q))
        E[jp.offsets[k] : jp.offsets[k] + q] = np.eye(q)
        Ci = jp.solve(E)[jp.offsets[k] : jp.offsets[k] + q]
        np.testing.assert_allclose(Lo @ Ci @ Lo.T, res.ranef_condvar[f.name][0], rtol=1e-8)


def test_full_variance_equals_dense_delta_method():
    """The default: TMB's formula built densely here for a random intercept. The
    prediction's derivative in beta is ``x - H_bb^{-1} H_bbeta`` applied to z; in the
    covariance parameter ``theta`` (``Sigma = (T theta)^2``) the modes move by
    ``H_bb^{-1} (2 / (T^2 theta^3)) b~`` (the implicit function theorem on the
    penalised score); with the fit's covariance of (beta, theta) mapped to the user's
    beta, plus ``z' H_bb^{-1} z``. The library takes the modes' move by central
    differences: 1e-7 relative."""
    d = _poisson_data()
    m = _fit(glmer, "y ~ x + offset(logE) + (1 | g)", d, family="poisson", weights=d["wt"])
    res = m.fit_result_
    X = np.column_stack([np.ones(len(d)), d.x])
    lev = list(m.ranef_["g"].index.astype(str))
    Z = (d.g.to_numpy()[:, None] == np.array(lev)[None, :]).astype(float)
    b = m.ranef_["g"].iloc[:, 0].to_numpy()
    T, theta = float(res.z_maps[0][0, 0]), float(res.theta[0])
    s2 = (T * theta) ** 2
    assert s2 == pytest.approx(float(m.random_effects_cov_["g"].iloc[0, 0]), rel=1e-12)
    mu = np.asarray(m.fitted()) * res.train["w"]
    Hbb = Z.T @ (mu[:, None] * Z) + np.eye(len(lev)) / s2
    Hbx = Z.T @ (mu[:, None] * X)
    Hinv = np.linalg.inv(Hbb)
    db_dtheta = Hinv @ (2.0 / (T**2 * theta**3) * b)
    G = np.hstack([X - Z @ Hinv @ Hbx, (Z @ db_dtheta)[:, None]])
    J = res.beta_jacobian()
    V = res.vcov
    Vu = np.block([[J @ V[:2, :2] @ J.T, J @ V[:2, 2:]], [V[2:, :2] @ J.T, V[2:, 2:]]])
    want = np.einsum("ni,ij,nj->n", G, Vu, G) + np.einsum("ni,ij,nj->n", Z, Hinv, Z)
    se = m.predict_interval(d, scale="link")["se"].to_numpy()
    np.testing.assert_allclose(se**2, want, rtol=1e-7)


def test_known_group_se_binomial_trials_and_new_rows():
    """Binomial with trials: W = n p (1 - p); a row of a new group keeps the fixed
    effects' variance alone; the prediction of a known group is more precise than the
    per-factor sum (which adds the fixed effects' and the mode's variances)."""
    rng = np.random.default_rng(5)
    n = 200
    d = pd.DataFrame({"g": rng.integers(0, 15, n).astype(str), "x": rng.normal(size=n)})
    d["n"] = rng.integers(1, 9, n)
    u = dict(zip(map(str, range(15)), rng.normal(0, 0.7, 15)))
    d["s"] = rng.binomial(d.n, 1 / (1 + np.exp(-(0.2 + 0.5 * d.x + d.g.map(u)))))
    d["fl"] = d.n - d.s
    m = _fit(glmer, "cbind(s, fl) ~ x + (1 | g)", d, family="binomial")
    res = m.fit_result_
    X = np.column_stack([np.ones(n), d.x])
    p = special.expit(res.train["eta"])
    lev = list(m.ranef_["g"].index.astype(str))
    Z = (d.g.to_numpy()[:, None] == np.array(lev)[None, :]).astype(float)
    A = np.hstack([X, Z])
    H = A.T @ ((d.n.to_numpy() * p * (1 - p))[:, None] * A)
    H[2:, 2:] += np.eye(len(lev)) / float(m.random_effects_cov_["g"].iloc[0, 0])
    want = np.einsum("ni,ij,nj->n", A, np.linalg.inv(H), A)
    got = pv.known_group_variance(res, X[:, 1:], [np.ones((n, 1))], [res.factors[0].codes], "schur")
    np.testing.assert_allclose(got, want, rtol=1e-9)
    new = d.iloc[:3].assign(g="new")
    se_new = m.predict_interval(new, scale="link", population="zero")["se"].to_numpy()
    V = m.fit_result_.vcov_fixed.to_numpy()
    Xn = X[:3]
    np.testing.assert_allclose(se_new**2, np.einsum("ni,ij,nj->n", Xn, V, Xn), rtol=1e-10)
    se = m.predict_interval(d.iloc[:3], scale="link")["se"].to_numpy()
    cv = res.ranef_condvar["g"][res.factors[0].codes[:3], 0, 0]
    assert np.all(se**2 < se_new**2 + cv)


def test_pickle_without_data_keeps_the_variance():
    """A pickle without the training data carries the joint precision (sparse D, B and
    the modes' derivatives): the same standard errors, one factor and crossed."""
    for case, formula in (
        ("bin_ri", "y ~ x + f + (1 | g)"),
        ("bin_crossed", "y ~ x + f + (1 | g) + (1 | h)"),
    ):
        d = pd.read_csv(FIXTURES / f"{case}.csv")
        m = _fit(glmer, formula, d, family="binomial")
        u = pickle.loads(pickle.dumps(m))
        assert not u.fit_result_.has_data
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pd.testing.assert_frame_equal(
                u.predict_interval(d.iloc[:6]), m.predict_interval(d.iloc[:6])
            )


def test_without_the_joint_precision_falls_back_with_warning():
    """A fit that holds neither its rows nor their joint precision (a partitioned fit)
    falls back to the per-factor sum, with a warning saying so."""
    d = pd.read_csv(FIXTURES / "bin_ri.csv")
    m = _fit(glmer, "y ~ x + f + (1 | g)", d, family="binomial")
    res = m.fit_result_
    u = pickle.loads(pickle.dumps(m))
    summaries = dict(u.fit_result_.data_summaries, joint_precision=None)
    u.fit_result_ = dataclasses.replace(u.fit_result_, data_summaries=summaries)
    with pytest.warns(UserWarning, match="neither its training rows"):
        out = u.predict_interval(d.iloc[:4], scale="link")
    V = res.vcov_fixed.to_numpy()
    D = np.column_stack([np.ones(4), d.x[:4], d.f[:4] == "b", d.f[:4] == "c"]).astype(float)
    cv = res.ranef_condvar["g"][res.factors[0].codes[:4], 0, 0]
    np.testing.assert_allclose(out["se"] ** 2, np.einsum("ni,ij,nj->n", D, V, D) + cv, rtol=1e-10)
    exact = m.predict_interval(d.iloc[:4], scale="link")["se"]
    assert np.all(out["se"] > exact)


def test_uncomputable_se_is_nan_with_warning():
    d = pd.read_csv(FIXTURES / "bin_ri.csv")
    m = _fit(glmer, "y ~ x + f + (1 | g)", d, family="binomial")
    V = m.fit_result_.vcov.copy()
    V[1, :] = V[:, 1] = np.nan
    m.fit_result_ = dataclasses.replace(m.fit_result_, vcov=V)
    with pytest.warns(UserWarning, match="cannot be computed"):
        out = m.predict_interval(d.iloc[:3], scale="link")
    assert out["se"].isna().all() and out["lower"].isna().all()
    assert np.isfinite(out["fit"]).all()


def test_rows_of_a_new_level_leave_that_factor_out():
    """Crossed factors, rows whose h level is new: the prediction of x'beta + b_g, its
    variance ``c' H^{-1} c`` with c's h part zero (dense inverse, 1e-10)."""
    d = _poisson_data()
    m = _fit(glmer, "y ~ x + offset(logE) + (1 + x | g) + (1 | h)", d, family="poisson")
    res = m.fit_result_
    X = np.column_stack([np.ones(len(d)), d.x])
    codes = [res.factors[0].codes, np.full(len(d), -1)]
    Zs = [f.z_matrix(X[:, 1:]) for f in res.factors]
    got = pv.known_group_variance(res, X[:, 1:], Zs, codes, vcov="schur")
    # dense: as _dense_joint_variance, with the h columns of the rows' c set to zero
    lev = list(m.ranef_["g"].index.astype(str))
    ind = (d.g.to_numpy()[:, None] == np.array(lev)[None, :]).astype(float)
    Zg = (ind[:, :, None] * X[:, None, :]).reshape(len(d), -1)
    levh = list(m.ranef_["h"].index.astype(str))
    Zh = (d.h.to_numpy()[:, None] == np.array(levh)[None, :]).astype(float)
    mu = np.exp(res.train["eta"])
    A = np.hstack([X, Zg, Zh])
    H = A.T @ (mu[:, None] * A)
    Sg = np.linalg.inv(m.random_effects_cov_["g"].to_numpy())
    k = 2 + Zg.shape[1]
    H[2:k, 2:k] += np.kron(np.eye(len(lev)), Sg)
    H[k:, k:] += np.eye(len(levh)) / float(m.random_effects_cov_["h"].iloc[0, 0])
    C = A.copy()
    C[:, k:] = 0.0
    want = np.einsum("ni,ij,nj->n", C, np.linalg.inv(H), C)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # and through predict_interval: a new h level, the same variance (the default's)
    new = d.iloc[:5].assign(h="new")
    se = m.predict_interval(new, scale="link")["se"].to_numpy()
    full = pv.known_group_variance(res, X[:5, 1:], [Z[:5] for Z in Zs], [c[:5] for c in codes])
    np.testing.assert_allclose(se**2, full, rtol=1e-12)


def test_many_random_effects_over_several_factors_fall_back(monkeypatch):
    d = pd.read_csv(FIXTURES / "bin_crossed.csv")
    m = _fit(glmer, "y ~ x + f + (1 | g) + (1 | h)", d, family="binomial")
    exact = m.predict_interval(d.iloc[:4], scale="link")["se"]
    monkeypatch.setattr(pv, "MAX_SPARSE_U", 10)
    with pytest.warns(UserWarning, match="exceed 10"):
        out = m.predict_interval(d.iloc[:4], scale="link")["se"]
    assert np.all(out > exact)


def test_agq_fit_uses_the_laplace_precision():
    """An AGQ fit: the same joint precision (W at the modes), its own covariance of the
    parameters: close to the Laplace fit's SEs, not equal."""
    d = pd.read_csv(FIXTURES / "bin_ri.csv")
    lap = _fit(glmer, "y ~ x + f + (1 | g)", d, family="binomial")
    agq = _fit(glmer, "y ~ x + f + (1 | g)", d, family="binomial", nAGQ=9)
    a = agq.predict_interval(d.iloc[:6], scale="link")["se"].to_numpy()
    b = lap.predict_interval(d.iloc[:6], scale="link")["se"].to_numpy()
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=0.05)
    assert not np.allclose(a, b, rtol=1e-6)


def test_mode_derivatives_one_sided_at_a_bound():
    """A parameter on an optimiser's bound: the modes' derivative by a one-sided
    difference inside it (never an evaluation outside), close to the central one."""
    d = pd.read_csv(FIXTURES / "nb2.csv")
    m = _fit(glmmTMB, "y ~ x + f + (1 | g)", d, family="nbinom2")
    res = m.fit_result_
    central = pv.joint_precision(res).mode_derivatives()
    bounds = [(lo, hi) for lo, hi in res.bounds]
    p = res.layout.n_beta
    for k in range(p, len(res.params)):
        bounds[k] = (bounds[k][0], float(res.params[k]))  # upper bound at the estimate
    at_bound = dataclasses.replace(res, bounds=bounds)
    one_sided = pv.joint_precision(at_bound).mode_derivatives()
    assert np.all(np.isfinite(one_sided))
    np.testing.assert_allclose(one_sided, central, rtol=1e-2, atol=1e-3 * np.abs(central).max())
    assert not np.allclose(one_sided, central, rtol=1e-9, atol=0)


def test_the_pickle_of_a_large_fit_does_not_make_the_joint_precision(monkeypatch):
    """Above MAX_PICKLE_ROWS a pickle carries the joint precision only when it was made
    already; without it the unpickled model falls back, with the warning saying why."""
    import sklearn_glmm._prediction_variance as pv

    d = pd.read_csv(FIXTURES / "bin_ri.csv")
    monkeypatch.setattr(pv, "MAX_PICKLE_ROWS", 10)
    m = _fit(glmer, "y ~ x + f + (1 | g)", d, family="binomial")
    u = pickle.loads(pickle.dumps(m))
    with pytest.warns(UserWarning, match="does not carry it unless predict_interval ran"):
        u.predict_interval(d.iloc[:3])
    exact = m.predict_interval(d.iloc[:3])  # made now: the next pickle carries it
    again = pickle.loads(pickle.dumps(m))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(again.predict_interval(d.iloc[:3]), exact)


@pytest.mark.parametrize("tool", ["profile", "mode_derivatives"])
def test_tools_that_move_the_objective_wait_for_its_lock(tool):
    """Profiles and the modes' derivatives move the fit's objective and put it back:
    each waits while another holds the objective's lock (threads of one process would
    otherwise read each other's modes and gradients), and gives the same numbers."""
    import threading

    from sklearn_glmm._fit_result import objective_lock

    d = _poisson_data()
    m = _fit(glmer, "y ~ x + (1 | g)", d, family="poisson")
    res = m.fit_result_

    def run():
        if tool == "profile":
            return m.confint(method="profile", parm=["sd_(Intercept)|g"]).to_numpy()
        pv._CACHE.pop(res, None)
        return pv.joint_precision(res).mode_derivatives()

    alone = run()
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("value", run()))
    with objective_lock(res.objective):
        worker.start()
        worker.join(1.0)
        assert worker.is_alive()  # waiting for the lock, not moving the objective
    worker.join(60)
    assert not worker.is_alive()
    np.testing.assert_allclose(out["value"], alone, rtol=1e-10)


@pytest.mark.parametrize("case", ["zip", "hurdle_pois", "trunc_nb1"])
def test_response_se_of_means_that_read_the_family_parameters_match_glmmtmb(case):
    """glmmTMB's predict(type = "response", se.fit = TRUE) of zero-inflated, hurdle and
    truncated models (tests/fixtures/predict_se_response/make.R): the mean reads the
    zero part's coefficients (and a truncated count's dispersion), whose uncertainty and
    covariance with the prediction the response-scale SE includes (it was left out: up
    to 45 % too small)."""
    from sklearn_glmm import NegBinGLMM, PoissonGLMM

    base = FIXTURES.parent / "predict_se_response"
    ref = json.loads((base / "se.json").read_text())[case]
    files = {"zip": "zip.csv", "hurdle_pois": "hurdle_pois.csv", "trunc_nb1": "trunc_nb1.csv"}
    d = pd.read_csv(base / files[case])
    est = {
        "zip": PoissonGLMM(zero_inflation="1 + x"),
        "hurdle_pois": PoissonGLMM(hurdle="1 + x"),
        "trunc_nb1": NegBinGLMM(truncated=True, family="nbinom1"),
    }[case]
    X = d[["x", "w"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = est.fit(X, d["y"], groups=d["g"], offset=d["logE"])
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    known = m.predict_interval(X.iloc[:8], d["g"].iloc[:8], offset=d["logE"].to_numpy()[:8])
    np.testing.assert_allclose(known["fit"], ref["known_fit"], rtol=1e-4)
    np.testing.assert_allclose(known["se"], ref["known_se"], rtol=2e-4)
    grid = pd.DataFrame({"x": [0.0, 0.5], "w": [0.0, 1.0]})
    pop = m.predict_interval(grid, offset=np.zeros(2), population="zero")
    np.testing.assert_allclose(pop["fit"], ref["grid_fit"], rtol=1e-4)
    np.testing.assert_allclose(pop["se"], ref["grid_se"], rtol=2e-4)
    # the interval: symmetric on the log scale of the mean, and marginal_means agrees
    np.testing.assert_allclose(
        np.log(known["upper"] / known["fit"]), np.log(known["fit"] / known["lower"]), rtol=1e-9
    )
    mm = m.marginal_means(grid, offset=np.zeros(2))
    np.testing.assert_allclose(mm["conditional_se"], pop["se"], rtol=1e-3)


@pytest.mark.parametrize("family", ["poisson", "nbinom2"])
def test_means_beyond_float64_are_inf_with_nan_se(family):
    # a linear predictor of 705 has the mean exp(705) (finite), one of 900 overflows:
    # inf with a NaN standard error and a warning, never the capped exp(700) with SE 0
    from sklearn_glmm import NegBinGLMM, PoissonGLMM

    rng = np.random.default_rng(0)
    g = rng.integers(0, 30, 600)
    x = rng.normal(size=600)
    y = rng.poisson(np.exp(0.5 + 0.8 * x + rng.normal(0, 0.5, 30)[g]))
    est = (PoissonGLMM() if family == "poisson" else NegBinGLMM()).fit(
        pd.DataFrame({"x": x}), y, groups=g
    )
    Xn = pd.DataFrame({"x": [(705.0 - est.intercept_) / est.coef_[0]]})
    Xn = pd.DataFrame({"x": [Xn["x"].iloc[0], 2.0 * Xn["x"].iloc[0]]})
    eta = est.predict_interval(Xn, groups=[0, 0], scale="link")["fit"].to_numpy()
    assert 700.0 < eta[0] < 709.0 and eta[1] > 710.0
    mean = est.predict(Xn, groups=[0, 0])
    np.testing.assert_allclose(mean[0], np.exp(eta[0]), rtol=1e-12)
    assert mean[1] == np.inf
    with pytest.warns(UserWarning, match="beyond float64's range"):
        tab = est.predict_interval(Xn, groups=[0, 0])
    assert np.isfinite(tab["se"].iloc[0]) and tab["se"].iloc[0] > 0
    assert tab["fit"].iloc[1] == np.inf and np.isnan(tab["se"].iloc[1])


SEPARATION = Path(__file__).parent / "fixtures" / "separation_predict"


def test_a_separated_fit_predicts_its_identified_rows():
    # every g3 == "hi" row has y = 1: intercept and g3lo run apart and have no standard
    # errors, but intercept + g3lo (the g3 == "lo" rows' linear predictor) is determined;
    # its standard errors were NaN for every row (glmmTMB: 0.26, 0.25, 0.31)
    d = pd.read_csv(SEPARATION / "data.csv")
    ref = json.loads((SEPARATION / "predict.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ x + g3 + (1 | school)", d, family="binomial")
    assert m.loglik_ == pytest.approx(ref["loglik"][0], abs=1e-3)
    assert np.isnan(m.fixed_effects_.loc["g3lo", "std_error"])
    rows = d.iloc[ref["rows"]]
    lo = np.arange(3)  # the "lo" rows; the last two are separated
    cases = [
        ({"scale": "link", "re_form": "NA"}, "population_link"),
        ({"scale": "response", "re_form": "NA"}, "population_response"),
        ({"scale": "link"}, "conditional_link"),
    ]
    for kwargs, key in cases:
        with pytest.warns(UserWarning, match="2 of 5 rows"):
            table = m.predict_interval(rows, **kwargs)
        np.testing.assert_allclose(table["fit"].to_numpy()[lo], ref[key][:3], rtol=1e-4)
        np.testing.assert_allclose(table["se"].to_numpy()[lo], ref[key + "_se"][:3], rtol=1e-3)
        assert table["se"].iloc[3:].isna().all()
    means = m.marginal_means(rows)
    np.testing.assert_allclose(
        means["conditional_se"].to_numpy()[lo], ref["population_response_se"][:3], rtol=1e-3
    )
    assert means["conditional_se"].iloc[3:].isna().all()
    diff = m.contrast(rows.iloc[[0]], rows.iloc[[1]])
    assert np.all(np.isfinite(diff["se"])) and np.all(diff["se"] > 0)
