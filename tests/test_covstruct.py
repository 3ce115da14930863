"""Structured covariances of a factor's block (ar1, cs, ou): properties of the
structures, the objective through them, the syntax, and glmmTMB's fits.

The references come from glmmTMB 1.1.5 (``tests/fixtures/covstruct/make_fixtures.R`` on
the data written by ``generate.py`` there).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm._design import parse_term, theta_layout
from sklearn_glmm._engine.covariance import (
    AR1,
    CompoundSymmetry,
    OrnsteinUhlenbeck,
    Toeplitz,
    Unstructured,
    _durbin_levinson,
)
from sklearn_glmm._engine.families import make_family
from sklearn_glmm._engine.objective import ModelData, Objective, make_factor_data
from sklearn_glmm._engine.optimize import fit_objective
from sklearn_glmm._engine.start import parameter_bounds, starting_point
from sklearn_glmm.exceptions import SingularFitWarning

HERE = Path(__file__).parent / "fixtures" / "covstruct"


def _data():
    return pd.read_csv(HERE / "covstruct.csv")


STRUCTURES = [
    AR1(6),
    AR1(2),
    CompoundSymmetry(5),
    CompoundSymmetry(2),
    Toeplitz(5),
    Toeplitz(2),
    OrnsteinUhlenbeck([0.0, 0.7, 1.9, 2.0, 5.5]),
]


def _random_params(st, rng):
    """Parameters inside the structure's bounds, the correlation ones up to the bounds."""
    p = []
    for lo, hi in st.bounds():
        lo = -30.0 if lo is None else lo
        hi = 30.0 if hi is None else hi
        p.append(rng.uniform(lo, hi) if hi - lo < 60 else rng.uniform(0.0, 3.0))
    return np.array(p)


@pytest.mark.parametrize("st", STRUCTURES, ids=lambda s: f"{s.name}{s.q}")
def test_positive_definite_over_bounds(st):
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = _random_params(st, rng)
        p[: st.n_sd] = np.maximum(p[: st.n_sd], 0.05)
        S = st.covariance(p)
        assert np.linalg.eigvalsh(S).min() > 0
        np.testing.assert_allclose(np.sqrt(np.diag(S)), st.sds(p), rtol=1e-10)
    # at the correlation parameters' bounds too
    for k, (lo, hi) in enumerate(st.cor_bounds()):
        for edge in (lo, hi):
            p = st.start(0.7)
            p[st.n_sd + k] = edge
            assert np.linalg.eigvalsh(st.correlation(p[st.n_sd :])).min() > 0


@pytest.mark.parametrize("st", STRUCTURES, ids=lambda s: f"{s.name}{s.q}")
def test_jacobian_against_finite_differences(st):
    rng = np.random.default_rng(2)
    for _ in range(5):
        p = _random_params(st, rng)
        p[st.n_sd :] *= 0.5  # away from the bounds: room for the differences
        J = st.jacobian(p)
        num = np.zeros_like(J)
        for k in range(len(p)):
            e = np.zeros(len(p))
            e[k] = 1e-6
            num[:, k] = (st.theta(p + e) - st.theta(p - e)) / 2e-6
        np.testing.assert_allclose(J, num, atol=1e-7 * max(1.0, np.abs(J).max()))


@pytest.mark.parametrize("st", STRUCTURES, ids=lambda s: f"{s.name}{s.q}")
def test_reported_values_map_back_to_the_parameters(st):
    """``from_reported`` inverts ``reported`` inside the bounds (profiles move along the
    reported values), and says None outside the structure's domain."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = _random_params(st, rng)
        back = st.from_reported(st.reported(p))
        np.testing.assert_allclose(back, p, rtol=1e-7, atol=1e-9)
        for v, (lo, hi) in zip(st.reported(p), st.reported_bounds()):
            assert (lo is None or v >= lo - 1e-12) and (hi is None or v <= hi + 1e-12)
    bad = st.reported(st.start(0.5))
    bad[0] = -0.1  # a negative SD
    assert st.from_reported(bad) is None
    bad = st.reported(st.start(0.5))
    bad[st.n_sd] = 1.5 if st.cor_kinds[0] == "cor" else -1.0  # no correlation / rate
    assert st.from_reported(bad) is None


def test_toeplitz_lag_correlations_of_no_correlation_matrix_are_refused():
    st = Toeplitz(4)
    ok = st.reported(st.start(0.5))
    assert st.from_reported(ok) is not None
    ok[4:] = [0.9, 0.0, 0.9]  # each in (-1, 1), but the matrix is not positive definite
    assert st.from_reported(ok) is None


def test_ar1_correlations_and_names():
    st = AR1(4)
    p = np.array([0.5, 1.0])  # rho = 1 / sqrt(2)
    rho = 1 / np.sqrt(2)
    S = st.covariance(p)
    np.testing.assert_allclose(S[0], 0.25 * rho ** np.arange(4), rtol=1e-12)
    assert st.reported(p) == pytest.approx([0.5, rho])


def test_toeplitz_lag_correlations_have_the_partial_autocorrelations():
    """Durbin-Levinson: the AR(k) fit to the lag correlations (Yule-Walker) ends in the
    k-th partial autocorrelation, and the correlation matrix is positive definite."""
    from scipy.linalg import solve_toeplitz, toeplitz

    phi = np.array([0.6, -0.3, 0.2, 0.5, -0.8])
    r = _durbin_levinson(phi)
    assert np.linalg.eigvalsh(toeplitz(np.r_[1.0, r])).min() > 0
    for k in range(1, len(phi) + 1):
        a = solve_toeplitz(np.r_[1.0, r[: k - 1]], r[:k])
        assert a[-1] == pytest.approx(phi[k - 1], abs=1e-12)


def _objective(structure=None, q=3, seed=3, fam="poisson"):
    """A Poisson objective with a q-level time factor within 40 people."""
    rng = np.random.default_rng(seed)
    n_people = 40
    codes = np.repeat(np.arange(n_people), q)
    day = np.tile(np.arange(q), n_people)
    Z = np.eye(q)[day]
    X = np.column_stack([np.ones(len(codes)), rng.normal(size=len(codes))])
    b = rng.normal(scale=0.7, size=(n_people, q))
    eta = X @ [0.4, 0.3] + b[codes, day]
    y = rng.poisson(np.exp(eta)).astype(float)
    diagonal = structure == "diag"
    st = None if structure in (None, "diag") else structure
    factors = make_factor_data([codes], [Z], [n_people], [theta_layout(q, diagonal)], [st])
    n = len(y)
    data = ModelData(X, y, np.ones(n), np.ones(n), np.zeros(n), make_family(fam), factors)
    return Objective(data)


def test_objective_gradient_in_structure_parameters():
    for st, p in [(AR1(4), [0.6, 0.8]), (CompoundSymmetry(4), [0.5, 0.7, 0.6, 0.4, 0.3])]:
        obj = _objective(st, q=4)
        x = np.concatenate([[0.3, 0.2], p])
        _val, g = obj.value_and_grad(x)
        num = np.zeros_like(x)
        for k in range(len(x)):
            e = np.zeros(len(x))
            e[k] = 1e-5
            num[k] = (obj.evaluate(x + e) - obj.evaluate(x - e)) / 2e-5
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shuffle", [False, True])
def test_time_indicator_shortcuts_match_the_general_products(monkeypatch, shuffle):
    """A structured factor's Z is a time indicator: the gradient's products use it
    (O(n q) per parameter, sums per level and time). They give what the general dense
    products give, rows in order or shuffled (levels not contiguous)."""
    from sklearn_glmm._engine import objective as objective_module

    x = np.concatenate([[0.3, 0.2], [0.5, 0.7, 0.6, 0.4, 0.3]])
    out = []
    for general in (False, True):
        if general:
            monkeypatch.setattr(objective_module, "_indicator_columns", lambda Z: None)
        obj = _objective(CompoundSymmetry(4), q=4)
        if shuffle:
            perm = np.random.default_rng(0).permutation(len(obj.data.y))
            d = obj.data
            f = d.factors[0]
            f2 = dataclasses.replace(f, codes=f.codes[perm], Z=f.Z[perm])
            d = dataclasses.replace(
                d, X=d.X[perm], y=d.y[perm], trials=d.trials[perm], weights=d.weights[perm],
                offset=d.offset[perm], factors=(f2,),
            )  # fmt: skip
            obj = Objective(d)
        assert (obj._indicator_cells(obj.data.factors[0]) is None) == general
        val, g = obj.value_and_grad(x)
        out.append((val, g, obj._predictor[2]))
    assert out[0][0] == out[1][0]
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out[0][2], out[1][2], rtol=1e-10, atol=1e-12)


def test_unstructured_through_the_structure_path_is_identical():
    """lme4's Cholesky parametrisation as a structure object: the same objective,
    gradient and fit, bit for bit."""
    plain = _objective(None, q=3)
    via = _objective(Unstructured(3), q=3)
    x = np.concatenate([[0.3, 0.2], [0.6, 0.1, -0.2, 0.5, 0.05, 0.4]])
    v0, g0 = plain.value_and_grad(x)
    v1, g1 = via.value_and_grad(x)
    assert v0 == v1
    np.testing.assert_array_equal(g0, g1)
    fits = []
    for obj in (_objective(None, q=3), _objective(Unstructured(3), q=3)):
        x0 = starting_point(obj)
        fits.append(fit_objective(obj, x0, parameter_bounds(obj.data), 500, 1e-10)[0])
    np.testing.assert_array_equal(fits[0], fits[1])


def test_ar1_with_zero_correlation_is_the_equal_variance_diagonal():
    ar1 = _objective(AR1(4), q=4)
    diag = _objective("diag", q=4)
    s = 0.55
    v_ar1 = ar1.evaluate(np.array([0.3, 0.2, s, 0.0]))
    v_diag = diag.evaluate(np.array([0.3, 0.2, s, s, s, s]))
    assert v_ar1 == pytest.approx(v_diag, rel=1e-12)
    # a correlation near 0 is near it, and moves the value smoothly
    v_near = ar1.evaluate(np.array([0.3, 0.2, s, 1e-6]))
    assert abs(v_near - v_diag) < 1e-4


def test_parse_structured_terms():
    t = parse_term("ar1(day)")
    assert (t.structure, t.time, t.intercept, t.slopes) == ("ar1", "day", False, ())
    assert parse_term("cs( 0 + wave )").time == "wave"
    assert parse_term("ou(time)").structure == "ou"
    assert parse_term("us(1 + time)") == parse_term("1 + time")
    for bad in ("ar1(1 + day)", "ar1(day + x)", "ar1()"):
        with pytest.raises(ValueError, match="one time variable"):
            parse_term(bad)
    assert parse_term("toep(day)").structure == "toep"
    with pytest.raises(ValueError, match="exp"):
        parse_term("exp(day)")


def test_structured_fit_attributes_and_errors():
    df = _data()
    X = df[["day", "x"]]
    before = X.copy()
    m = PoissonGLMM(random_effects="ar1(day)").fit(X, df["count"], groups=df["id"])
    pd.testing.assert_frame_equal(X, before)  # the caller's data untouched
    S = m.random_effects_cov_["id"]
    assert list(S.columns) == [f"day{d}" for d in range(1, 7)]
    sd, rho = m.confint().loc[["sd_day|id", "rho_ar1|id"], "estimate"]
    np.testing.assert_allclose(S.to_numpy()[0], sd**2 * rho ** np.arange(6), rtol=1e-10)
    ci = m.confint().loc["rho_ar1|id"]
    assert ci["lower"] < rho < ci["upper"] and -1 < ci["lower"] and ci["upper"] < 1
    assert m.converged_ and not m.is_singular_
    text = str(m.summary())
    assert "(ar1)" in text and "ar1(0 + factor(day) | id)" in text
    new = df.head(3).astype({"day": float})
    new.loc[0, "day"] = 6.5
    with pytest.raises(ValueError, match="not on that grid"):
        m.predict(new[["day", "x"]], groups=new["id"])
    with pytest.raises(ValueError, match="not a feature"):
        PoissonGLMM(random_effects="ar1(week)").fit(X, df["count"], groups=df["id"])
    one = df.assign(day=1)
    with pytest.warns(Warning), pytest.raises(ValueError, match="at least two distinct"):
        PoissonGLMM(random_effects="ar1(day)").fit(
            one[["day", "x"]], one["count"], groups=one["id"]
        )


def test_time_variable_only_in_the_random_part():
    """random_only_columns: the time variable read by the structure but not a fixed
    effect, through fit, predict (raw data for the formula model), pickles and clones."""
    import pickle

    from sklearn.base import clone

    from sklearn_glmm.formula import glmmTMB

    df = _data()
    est = PoissonGLMM(random_effects="ar1(day)", random_only_columns="day", group_columns="id")
    m = est.fit(df[["id", "day", "x"]], df["count"])
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x"] and m.coef_.shape == (1,)
    trend = PoissonGLMM(random_effects="ar1(day)").fit(
        df[["day", "x"]], df["count"], groups=df["id"]
    )
    assert m.loglik_ != pytest.approx(trend.loglik_, abs=1.0)  # another model
    assert "count ~ x + ar1(0 + factor(day) | id)" in str(m.summary())
    f = glmmTMB("count ~ x + ar1(0 + factor(day) | id)", df, family="poisson")
    assert f.random_only_columns == ["day"]
    assert f.loglik_ == pytest.approx(m.loglik_, abs=1e-8)
    rows = df.head(5)
    np.testing.assert_allclose(f.predict(rows), m.predict(rows[["id", "day", "x"]]), rtol=1e-8)
    np.testing.assert_allclose(m.predict(rows[["id", "day", "x"]]), m.fitted()[:5], rtol=1e-8)
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(again.predict(rows[["id", "day", "x"]]), m.fitted()[:5], rtol=1e-8)
    assert clone(est).get_params()["random_only_columns"] == "day"
    with pytest.raises(ValueError, match=r"\['day'\] are not columns of X"):
        m.predict(rows[["id", "x"]])  # predictions read it again
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        PoissonGLMM(random_effects="ar1(x1)", random_only_columns="x1").fit(
            df[["day", "x"]].to_numpy(), df["count"], groups=df["id"]
        )
    with pytest.raises(ValueError, match="not columns of X"):
        PoissonGLMM(random_effects="ar1(week)", random_only_columns="week").fit(
            df[["day", "x"]], df["count"], groups=df["id"]
        )
    # only the random part: no fixed-effect column at all (y ~ 1 + ar1(...))
    null = PoissonGLMM(random_effects="ar1(day)", random_only_columns="day").fit(
        df[["day"]], df["count"], groups=df["id"]
    )
    assert list(null.fixed_effects_.index) == ["(Intercept)"]
    assert null.loglik_ < m.loglik_


def test_formula_front_end_matches_the_estimator():
    from sklearn_glmm.formula import glmmTMB

    df = _data()
    m = glmmTMB("count ~ day + x + ar1(0 + factor(day) | id)", df, family="poisson")
    ref = PoissonGLMM(random_effects="ar1(day)").fit(df[["day", "x"]], df["count"], groups=df["id"])
    assert m.random_effects == {"id": "ar1(day)"}
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-8)
    m = glmmTMB("count ~ t + x + ou(numFactor(t) + 0 | id)", df, family="poisson")
    assert m.random_effects == {"id": "ou(t)"}
    with pytest.raises(ValueError, match="numeric or date column of the data"):
        glmmTMB("count ~ x + cs(0 + factor(week) | id)", df.assign(week="a"), family="poisson")


# -- glmmTMB 1.1.5 references ---------------------------------------------------------
# On covstruct.csv (one binary outcome per person and day) glmmTMB's own binomial cs fit
# stops with false convergence (NA log-likelihood) and its binomial toep fit fails (an
# error), so they are no references there; binary_repeated.csv (four binary outcomes per
# person and day) is the binary cs and toep reference, where glmmTMB converges.
FITS = {
    "pois_ar1": (PoissonGLMM, "count", ["day", "x"], "ar1(day)"),
    "pois_cs": (PoissonGLMM, "count", ["day", "x"], "cs(day)"),
    "pois_toep": (PoissonGLMM, "count", ["day", "x"], "toep(day)"),
    "pois_ou": (PoissonGLMM, "count", ["t", "x"], "ou(t)"),
    "bin_ar1": (BinomialGLMM, "bin", ["day", "x"], "ar1(day)"),
    "bin_ou": (BinomialGLMM, "bin", ["t", "x"], "ou(t)"),
    "binrep_cs": (BinomialGLMM, "bin", ["day", "x"], "cs(day)"),
    "binrep_toep": (BinomialGLMM, "bin", ["day", "x"], "toep(day)"),
    # glmmTMB's y ~ x + ar1(0 + factor(day) | id): the time variable not a fixed effect
    "pois_ar1_notrend": (PoissonGLMM, "count", ["day", "x"], "ar1(day)"),
    "bin_ou_notrend": (BinomialGLMM, "bin", ["t", "x"], "ou(t)"),
    # lme4's y ~ x + (0 + day | id): a random slope without its fixed slope
    "pois_slope_notrend": (PoissonGLMM, "count", ["day", "x"], "0 + day"),
}


def _glmmtmb_reported(kind, theta, q):
    """glmmTMB's theta (log SDs, then its correlation parameters) on the reported scale."""
    if kind == "ou":  # log SD, log rate
        return np.array([np.exp(theta[0]), np.exp(theta[1])])
    n_sd = q if kind in ("cs", "toep") else 1
    sds, a = np.exp(theta[:n_sd]), theta[n_sd:]
    if kind == "cs":  # glmmTMB's cs: rho = lo + (1 - lo) plogis(a), lo = -1 / (q - 1)
        lo = -1.0 / (len(sds) - 1)
        return np.concatenate([sds, lo + (1 - lo) / (1 + np.exp(-a))])
    # ar1's correlation and toep's lag correlations: a / sqrt(1 + a^2)
    return np.concatenate([sds, a / np.sqrt(1 + a * a)])


@pytest.mark.parametrize("model", sorted(FITS))
def test_against_glmmtmb(model):
    ref = pd.read_csv(HERE / "glmmtmb_fits.csv")
    ref = ref[ref.model == model]
    assert ref.loc[ref.kind == "version", "value"].item() == 115  # glmmTMB 1.1.5
    assert ref.loc[ref.kind == "convergence", "value"].item() == 0  # glmmTMB converged
    cls, y, cols, term = FITS[model]
    df = pd.read_csv(HERE / "binary_repeated.csv") if model.startswith("binrep") else _data()
    # R: glmmTMB(<y> ~ <cols> + <structure>(0 + factor(day) | id), family = ...)
    random_only = cols[0] if model.endswith("_notrend") else None
    m = cls(random_effects=term, random_only_columns=random_only).fit(
        df[cols], df[y], groups=df["id"]
    )
    assert m.converged_ and not m.is_singular_
    assert list(m.fixed_effects_.index) == list(ref.loc[ref.kind == "fixed", "name"])
    assert m.loglik_ == pytest.approx(ref.loc[ref.kind == "loglik", "value"].item(), abs=0.01)
    fixed = ref[ref.kind == "fixed"].set_index("name")
    ours = m.fixed_effects_
    for name, row in fixed.iterrows():
        assert abs(ours.loc[name, "estimate"] - row["value"]) < 0.05 * row["se"], name
        # glmmTMB's SEs are from an exact (AD) Hessian, ours from central differences of
        # the gradient: within 1.2e-5 relative on these fits
        assert ours.loc[name, "std_error"] == pytest.approx(row["se"], rel=5e-5), name
    # the implied covariance (glmmTMB's VarCorr): SDs within 2 %, correlations within 0.02
    cov = ref[ref.kind == "cov"]
    S_ref = np.zeros(m.random_effects_cov_["id"].shape)
    for name, v in zip(cov["name"], cov["value"]):
        i, j = (int(k) - 1 for k in name.split("_"))
        S_ref[i, j] = S_ref[j, i] = v
    S = m.random_effects_cov_["id"].to_numpy()
    sd, sd_ref = np.sqrt(np.diag(S)), np.sqrt(np.diag(S_ref))
    np.testing.assert_allclose(sd, sd_ref, rtol=0.02)
    np.testing.assert_allclose(S / np.outer(sd, sd), S_ref / np.outer(sd_ref, sd_ref), atol=0.02)
    # glmmTMB's own parameters (its getME(m, "theta")) on the reported scale
    kind = term.split("(")[0]
    theta = ref.loc[ref.kind == "theta", "value"].to_numpy()
    want = _glmmtmb_reported(kind, theta, len(sd))
    ci = m.confint()
    got = ci.loc[[n for n in ci.index if "|id" in n], "estimate"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=0.02, atol=0.005)


def test_profile_intervals_of_structure_parameters():
    """Profile intervals of the SD and the correlation of ar1 and of the SD and rate of
    ou against glmmTMB's (``confint(m, method = "profile", parm = "theta_")``,
    ``make_profile_fixture.R``), and the deviance at ar1's limits refitted with the
    optimiser's own parameter held fixed is the chi-square cutoff."""
    from scipy import optimize, stats

    ref = pd.read_csv(HERE / "glmmtmb_profile.csv")
    df = _data()
    cutoff = stats.chi2.ppf(0.95, 1)
    for model, cols, names in [
        ("pois_ar1", ["day", "x"], ["sd_day|id", "rho_ar1|id"]),
        ("pois_ou", ["t", "x"], ["sd_t|id", "rate_ou|id"]),
    ]:
        term = "ar1(day)" if model == "pois_ar1" else "ou(t)"
        m = PoissonGLMM(random_effects=term).fit(df[cols], df["count"], groups=df["id"])
        ci = m.confint(method="profile")
        r = ref[ref.model == model]
        sd_lim = np.exp(r.loc[r.name == "theta1", ["lower", "upper"]].to_numpy()[0])
        np.testing.assert_allclose(ci.loc[names[0], ["lower", "upper"]], sd_lim, rtol=2e-3)
        a = r.loc[r.name == "theta2", ["lower", "upper"]].to_numpy()[0]
        want = a / np.sqrt(1 + a * a) if model == "pois_ar1" else np.exp(a)
        np.testing.assert_allclose(ci.loc[names[1], ["lower", "upper"]], want, rtol=5e-3)
        wald = m.confint()
        for nm in names:  # a likelihood-ratio interval, not the Wald one
            assert ci.loc[nm, "lower"] < ci.loc[nm, "estimate"] < ci.loc[nm, "upper"]
            assert not np.allclose(ci.loc[nm, ["lower", "upper"]], wald.loc[nm, ["lower", "upper"]])
    # ar1's correlation limits, checked on the optimiser's scale
    m = PoissonGLMM(random_effects="ar1(day)").fit(df[["day", "x"]], df["count"], groups=df["id"])
    lo, hi = m.confint(method="profile", parm=["rho_ar1|id"]).iloc[0, 1:]
    obj, x_hat = m.fit_result_.objective, m.fit_result_.params.copy()
    k = len(x_hat) - 1  # the ar1 parameter a, rho = a / sqrt(1 + a^2)
    F_hat = obj.evaluate(x_hat)
    for rho in (lo, hi):
        a = rho / np.sqrt(1 - rho * rho)
        bounds = list(m.fit_result_.bounds)
        bounds[k] = (a, a)
        x0 = x_hat.copy()
        x0[k] = a
        res = optimize.minimize(
            obj.value_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-13, "gtol": 1e-8},
        )  # fmt: skip
        assert res.fun - F_hat == pytest.approx(cutoff, abs=0.01)


def test_structured_factor_beside_a_crossed_factor():
    """A structured factor with a second, crossed factor (the general solver): the
    gradient in the structure's parameters against finite differences, and a fit."""
    df = _data()
    df["site"] = df["id"] % 7
    with warnings.catch_warnings():  # no site effect was simulated: a zero variance
        warnings.simplefilter("ignore", SingularFitWarning)
        m = PoissonGLMM(random_effects={"id": "ar1(day)", "site": "1"}).fit(
            df[["day", "x"]], df["count"], groups=df[["id", "site"]]
        )
    assert m.converged_
    assert set(m.random_effects_cov_) == {"id", "site"}
    assert m.random_effects_cov_["id"].shape == (6, 6)
    obj = m.fit_result_.objective
    x = m.fit_result_.params.copy() + 0.01
    _v, g = obj.value_and_grad(x)
    num = np.zeros_like(x)
    for k in range(len(x)):
        e = np.zeros(len(x))
        e[k] = 1e-5
        num[k] = (obj.evaluate(x + e) - obj.evaluate(x - e)) / 2e-5
    np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-4)


def _log_ratio(m, new, ids):
    """log of the predicted count of people ``ids`` over that of a new person, both
    with the random effect at its conditional mean (``population="zero"``)."""
    stranger = np.full(len(new), -1)
    return np.log(m.predict(new, groups=ids, population="zero")) - np.log(
        m.predict(new, groups=stranger, population="zero")
    )


def test_ar1_predicts_at_new_times_by_its_markov_property():
    """Days 8 and 10 after days 1..6: AR1 is Markov, so a person's effect k steps after
    the last day has mean rho^k b_6 and variance sigma^2 (1 - rho^(2k)) given the fitted
    effects (an independent closed form of the conditional normal the prediction uses)."""
    df = _data()
    m = PoissonGLMM(random_effects="ar1(day)").fit(df[["day", "x"]], df["count"], groups=df["id"])
    sd, rho = m.confint().loc[["sd_day|id", "rho_ar1|id"], "estimate"]
    B = m.ranef_["id"]
    ids = B.index[:5].to_numpy()
    for k in (2, 4):
        new = pd.DataFrame({"day": np.full(5, 6.0 + k), "x": 0.0})
        np.testing.assert_allclose(_log_ratio(m, new, ids), rho**k * B["day6"][ids], atol=1e-10)
        # population="marginal": the lognormal mean over what the fit leaves unknown
        eta0 = np.log(m.predict(new, groups=np.full(5, -1), population="zero"))
        v = sd**2 * (1 - rho ** (2 * k))
        want = np.exp(eta0 + rho**k * B["day6"][ids].to_numpy() + v / 2)
        np.testing.assert_allclose(m.predict(new, groups=ids), want, rtol=1e-10)
        new_person = m.predict(new, groups=np.full(5, -1))
        np.testing.assert_allclose(new_person, np.exp(eta0 + sd**2 / 2), rtol=1e-10)
    # seen days are predicted from their own effect, as before
    seen = pd.DataFrame({"day": [3.0], "x": [0.0]})
    assert _log_ratio(m, seen, ids[:1])[0] == pytest.approx(B["day3"][ids[0]], abs=1e-12)


def test_ou_predicts_between_and_after_the_fitted_times():
    """OU is Markov in continuous time: between two fitted times its conditional mean is
    the bridge of those two alone, after the last one ``exp(-rate dt) b_last``."""
    df = _data()
    m = PoissonGLMM(random_effects="ou(t)").fit(df[["t", "x"]], df["count"], groups=df["id"])
    rate = m.confint().loc["rate_ou|id", "estimate"]
    B = m.ranef_["id"]
    times = np.sort(df["t"].unique())
    ids = B.index[:4].to_numpy()
    ta, tb, ts = times[3], times[4], 0.5 * (times[3] + times[4]) + 0.1
    ra, rb, rab = np.exp(-rate * (ts - ta)), np.exp(-rate * (tb - ts)), np.exp(-rate * (tb - ta))
    ba, bb = B.iloc[:4, 3].to_numpy(), B.iloc[:4, 4].to_numpy()
    bridge = (ba * (ra - rb * rab) + bb * (rb - ra * rab)) / (1 - rab**2)
    new = pd.DataFrame({"t": np.full(4, ts), "x": 0.0})
    np.testing.assert_allclose(_log_ratio(m, new, ids), bridge, atol=1e-9)
    after = pd.DataFrame({"t": np.full(4, times[-1] + 1.7), "x": 0.0})
    np.testing.assert_allclose(
        _log_ratio(m, after, ids), np.exp(-rate * 1.7) * B.iloc[:4, -1].to_numpy(), atol=1e-9
    )


def test_new_times_that_the_structure_cannot_extend_raise():
    df = _data()
    X = df[["day", "x"]]
    new = pd.DataFrame({"day": [7.0], "x": [0.0]})
    for term in ("cs(day)", "toep(day)"):
        m = PoissonGLMM(random_effects=term).fit(X, df["count"], groups=df["id"])
        with pytest.raises(ValueError, match="no covariance for a new time"):
            m.predict(new, groups=[1])
        np.testing.assert_allclose(  # seen times still predict
            m.predict(X.head(4), groups=df["id"].head(4)), m.fitted()[:4], rtol=1e-10
        )
    # ar1 over unequally spaced days has no position for a new day
    uneven = df[df["day"] != 3]
    m = PoissonGLMM(random_effects="ar1(day)").fit(
        uneven[["day", "x"]], uneven["count"], groups=uneven["id"]
    )
    with pytest.raises(ValueError, match="not equally spaced"):
        m.predict(new, groups=[1])


def test_ou_on_unit_spaced_times_is_ar1():
    """With times 1, 2, ..., q an OU correlation exp(-rate |i - j|) is AR1's rho^|i - j|
    with rho = exp(-rate): the same optimum."""
    df = _data()
    X = df[["day", "x"]]
    ar1 = PoissonGLMM(random_effects="ar1(day)").fit(X, df["count"], groups=df["id"])
    ou = PoissonGLMM(random_effects="ou(day)").fit(X, df["count"], groups=df["id"])
    assert ou.loglik_ == pytest.approx(ar1.loglik_, abs=1e-5)
    rho = ar1.confint().loc["rho_ar1|id", "estimate"]
    rate = ou.confint().loc["rate_ou|id", "estimate"]
    assert np.exp(-rate) == pytest.approx(rho, rel=1e-3)


@pytest.mark.parametrize("term", ["ar1(day)", "cs(day)", "ou(t)"])
def test_row_order_and_time_origin_do_not_matter(term):
    """Shuffled rows, and the time variable shifted (a new origin), give the same fit."""
    df = _data()
    col = "t" if term.startswith("ou") else "day"
    ref = PoissonGLMM(random_effects=term).fit(df[[col, "x"]], df["count"], groups=df["id"])
    sh = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    sh[col] = sh[col] + 100.0
    m = PoissonGLMM(random_effects=term).fit(sh[[col, "x"]], sh["count"], groups=sh["id"])
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
    np.testing.assert_allclose(
        m.random_effects_cov_["id"].to_numpy(), ref.random_effects_cov_["id"].to_numpy(), atol=1e-5
    )


@pytest.mark.parametrize("term", ["ar1(day)", "cs(day)"])
def test_quadrature_with_a_structure_is_refused_by_name(term):
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(30), 3)
    X = pd.DataFrame({"day": np.tile([1.0, 2.0, 3.0], 30)})
    y = rng.poisson(2.0, len(ids))
    with pytest.raises(ValueError, match="not available with the covariance structure"):
        PoissonGLMM(term, n_agq=5).fit(X, y, groups=ids)


def test_intercept_free_random_slope_keeps_its_variance():
    """``"0 + z"``: the internal scaling of an intercept-free term keeps its column (a
    simulated slope SD of 0.5 is recovered; an SD of 0 would mean the column was lost)."""
    rng = np.random.default_rng(8)
    ids = np.repeat(np.arange(300), 6)
    z = rng.normal(size=len(ids)) + 2.0
    b = rng.normal(scale=0.5, size=300)
    y = rng.poisson(np.exp(0.2 + b[ids] * z))
    X = pd.DataFrame({"z": z})
    m = PoissonGLMM(random_effects="0 + z").fit(X, y, groups=ids)
    sd = np.sqrt(m.random_effects_cov_["group"].iloc[0, 0])
    assert sd == pytest.approx(0.5, abs=0.08)
    # the same model on another scale of z: the same fit
    m10 = PoissonGLMM(random_effects="0 + z").fit(X * 10, y, groups=ids)
    assert m10.loglik_ == pytest.approx(m.loglik_, abs=1e-6)


def _toep_profile_fit():
    d = pd.read_csv(Path(__file__).parent / "fixtures" / "toep_profile" / "data.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PoissonGLMM(random_effects="toep(day)", random_only_columns="day").fit(
            d[["day", "x"]], d["y"], groups=d["id"].astype(str)
        )


def _constrained_deviance(m, name, value):
    """min F with the reported parameter ``name`` at ``value``: SLSQP over the internal
    parameters from the estimate (the profile's own search starts from its last point)."""
    from scipy import optimize

    from sklearn_glmm._param_map import ParamMap

    pm, obj = ParamMap(m), m.fit_result_.objective
    k = pm.names.index(name)

    def F(x):
        v = obj.evaluate(x)
        return v if np.isfinite(v) else 1e10

    r = optimize.minimize(
        F,
        m.fit_result_.params.copy(),
        method="SLSQP",
        bounds=[tuple(b) for b in m.fit_result_.bounds],
        constraints=[{"type": "eq", "fun": lambda x: pm.to_phi(x)[k] - value}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    assert abs(pm.to_phi(r.x)[k] - value) < 1e-6
    return r.fun - obj.evaluate(m.fit_result_.params)


def test_profile_of_a_toeplitz_lag_correlation_searches_the_whole_domain():
    # the lag correlations' joint domain is not a box: with rho_lag2 held, the other
    # lags at the start (and at the estimate) were of no positive definite matrix, and
    # the profile raised a TypeError; where it ran, a search that stops at the domain's
    # edge gave too high a deviance (a lower limit of 0.140 where the deviance is 3.10)
    m = _toep_profile_fit()
    ci = m.confint(method="profile", parm=["rho_lag2|id"])
    lo, hi = ci.loc["rho_lag2|id", ["lower", "upper"]]
    assert lo < ci.loc["rho_lag2|id", "estimate"] < hi
    cut = stats.norm.ppf(0.975) ** 2
    for v in (lo, hi):
        assert _constrained_deviance(m, "rho_lag2|id", v) == pytest.approx(cut, abs=5e-3)


@pytest.mark.slow
def test_profiles_of_a_toeplitz_structure():
    from sklearn_glmm.exceptions import ProfileWarning

    m = _toep_profile_fit()
    with warnings.catch_warnings():
        # (rho_lag1's profile reaches 1, where no covariance is positive definite: no alarm)
        warnings.simplefilter("error", ProfileWarning)
        ci = m.confint(method="profile", parm="random")
    assert np.all(np.isfinite(ci[["lower", "upper"]].to_numpy()))
    cut = stats.norm.ppf(0.975) ** 2
    for name in ci.index:
        for side in ("lower", "upper"):
            v = ci.loc[name, side]
            if name.startswith("rho") and abs(v) > 0.999:  # the domain's edge
                continue
            assert _constrained_deviance(m, name, v) == pytest.approx(cut, abs=5e-3), (name, side)


@pytest.fixture(scope="module")
def structure_fits():
    df = _data()
    for d in range(1, 7):
        df[f"d{d}"] = (df["day"] == d).astype(float)
    X = df[["day", "x"] + [f"d{d}" for d in range(1, 7)]]
    terms = {
        "1": "1",
        "1 + day": "1 + day",
        "ar1": "ar1(day)",
        "cs": "cs(day)",
        "toep": "toep(day)",
        "diag": "diag(0 + d1 + d2 + d3 + d4 + d5 + d6)",
        "us": "0 + d1 + d2 + d3 + d4 + d5 + d6",
    }
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, term in terms.items():
            est = PoissonGLMM(
                random_effects=term, random_only_columns=[f"d{d}" for d in range(1, 7)]
            )
            fits[name] = est.fit(X, df["count"], groups=df["id"])
    return fits


@pytest.mark.parametrize(
    "small, big",
    [("ar1", "cs"), ("1 + day", "cs"), ("1 + day", "toep"), ("1", "diag"), ("diag", "ar1")],
)
def test_a_structure_is_not_tested_against_one_that_does_not_contain_it(structure_fits, small, big):
    # the columns of each pair span the same space, but the smaller covariance is not a
    # special case of the larger (ar1's log-likelihood, -1158.10 as glmmTMB's, is above
    # cs's -1167.94 with 5 more parameters); the test was made (Chisq -19.7, p = 1)
    from sklearn_glmm import anova
    from sklearn_glmm._compare import nested_in

    s, b = structure_fits[small], structure_fits[big]
    assert not nested_in(s, b)
    with pytest.raises(ValueError, match="not a special case|not a subset"):
        anova(s, b)


@pytest.mark.parametrize(
    "small, big",
    [("1", "ar1"), ("1", "cs"), ("1", "toep"), ("cs", "toep"), ("ar1", "toep"), ("diag", "cs")]
    + [("ar1", "us"), ("cs", "us"), ("1 + day", "us"), ("1", "us")],
)
def test_special_cases_of_a_structure_are_tested_against_it(structure_fits, small, big):
    from sklearn_glmm import anova

    s, b = structure_fits[small], structure_fits[big]
    t = anova(s, b)
    assert t["Df"].iloc[1] == b.n_params_ - s.n_params_
    assert t["Chisq"].iloc[1] > -1e-3
    # a structured block nests the random intercept at correlation 1, not at a zero
    # variance: no 50:50 boundary mixture
    if big != "us":
        assert np.isnan(t["Pr(>Chisq) chi-bar"].iloc[1])


def test_compare_structures_pairs_only_nested_structures():
    from sklearn_glmm.model_selection import compare_structures

    df = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare_structures(
            PoissonGLMM(),
            ["1", "1 + day", "ar1(day)", "cs(day)", "toep(day)"],
            df[["day", "x"]],
            df["count"],
            groups=df["id"],
        ).table
    vs = table["lrt_vs"].to_dict()
    # cs(day) was tested against "1 + day" (p = 2.8e-14), which it does not contain
    assert vs["cs(day)"] == "1" and vs["ar1(day)"] == "1" and vs["1 + day"] == "1"
    assert vs["toep(day)"] == "cs(day)"


def test_time_levels_are_named_in_full():
    # six significant digits named every day of a yyyymmdd date 'date2.02301e+07':
    # identical rows in every table, and ranef(format="long"), report() and
    # confint(parm=) failed
    df = _data()
    df["date"] = 20230100 + df["day"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM(random_effects="cs(date)", random_only_columns="date").fit(
            df[["date", "x"]], df["count"], groups=df["id"]
        )
    names = [f"date{20230100 + d}" for d in range(1, 7)]
    assert list(m.random_effects_cov_["id"].index) == names
    assert list(m.ranef_["id"].columns) == names
    ci = m.confint(parm=["sd_date20230103|id"])
    assert len(ci) == 1
    assert len(m.ranef(format="long")) == 6 * 120
    assert "date20230106" in str(m.summary())


def _restart_case(seed):
    """The data of a structure fit with a local optimum of its correlation."""
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    T = int(rng.choice([3, 4, 5, 6]))
    N = int(rng.choice([30, 75, 150]))
    sd = float(rng.choice([0.0, 0.0, 0.2]))
    ids, day = np.repeat(np.arange(N), T), np.tile(np.arange(T), N)
    x = rng.normal(size=N * T)
    eta = 0.5 + 0.3 * x + rng.normal(0, sd, N)[ids]
    if seed % 2:
        y, est = (rng.random(N * T) < expit(eta)).astype(int), BinomialGLMM
    else:
        y, est = rng.poisson(np.exp(eta)), PoissonGLMM
    return pd.DataFrame({"x": x, "day": day}), y, pd.DataFrame({"g": ids}), est


@pytest.mark.parametrize(
    "structure, seed", [("ar1", 13), ("ar1", 129), ("ar1", 2), ("ar1", 8), ("cs", 5)]
)
def test_a_correlation_on_the_far_side_of_its_start_is_found(structure, seed):
    # an ar1 fit started at rho = 0.3 stopped at a local optimum (or with its SD at 0)
    # up to 0.9 below the optimum at a negative rho; a cs fit on its lower bound 0.08
    # below one at rho = 0.9999; both converged, one without a warning
    from scipy.optimize import minimize

    X, y, g, est = _restart_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = est(random_effects=f"{structure}(day)", random_only_columns="day").fit(X, y, groups=g)
    res = m.fit_result_
    obj, x0 = res.objective, np.array(res.params)
    best = obj.evaluate(x0)
    k = len(x0) - 1  # the correlation parameter
    for a in (-5.0, -1.0, 1.0, 5.0):
        xs = x0.copy()
        xs[k], xs[k - 1] = a, max(xs[k - 1], 0.3)
        r = minimize(obj.value_and_grad, xs, jac=True, method="L-BFGS-B", bounds=res.bounds)
        best = min(best, obj.evaluate(r.x))
    assert m.converged_
    assert -0.5 * best - m.loglik_ < 1e-6


def test_a_random_intercept_beside_ar1_on_the_same_grouping():
    # (1 | id) + ar1(0 + factor(day) | id) raised NotImplementedError: the structured
    # term gets a factor of its own with the same levels, named as glmmTMB's VarCorr
    # names it (id.1); its effects add to the intercept's. Reference: glmmTMB
    import json

    from sklearn_glmm.formula import glmmTMB

    here = Path(__file__).parent / "fixtures" / "ri_ar1"
    d = pd.read_csv(here / "data.csv")
    raw = json.loads((here / "ref.json").read_text())
    ref = {k: v[0] if isinstance(v, list) else v for k, v in raw.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = glmmTMB("count ~ x + (1 | id) + ar1(0 + factor(day) | id)", d, family="poisson")
    assert m.random_effects == {"id": "1", "id.1": "ar1(day)"}
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-6)
    fe = m.fixed_effects_
    for term in ("(Intercept)", "x"):
        assert fe.loc[term, "estimate"] == pytest.approx(ref["fixef"][term][0], abs=1e-4)
        assert fe.loc[term, "std_error"] == pytest.approx(ref["se"][term][0], rel=1e-3)
    cov = m.random_effects_cov_
    assert np.sqrt(cov["id"].iloc[0, 0]) == pytest.approx(ref["sd_intercept"], rel=1e-3)
    S = cov["id.1"].to_numpy()
    assert np.sqrt(S[0, 0]) == pytest.approx(ref["sd_ar1"], rel=1e-3)
    assert S[0, 1] / S[0, 0] == pytest.approx(ref["rho"], abs=1e-3)
    # new rows: the factor of its own is made from the same column
    np.testing.assert_allclose(m.predict(d.head(8)), m.predict(d)[:8], rtol=1e-12)


def test_times_equal_to_fifteen_digits_are_one_time_point():
    # 0.3 and 0.1 * 3 differ in their last bit: R's factor() and glmmTMB's numFactor()
    # label both "0.3", one time point; as two, ar1 had one more step in its chain
    # (log-likelihood 0.35 below glmmTMB's on an audit's data) and ou a correlation of 1
    rng = np.random.default_rng(3)
    n_id, days = 60, np.arange(1, 7)
    ids = np.repeat(np.arange(n_id), len(days))
    day = np.tile(days, n_id)
    b = rng.multivariate_normal(np.zeros(6), 0.5 * 0.8 ** np.abs(days[:, None] - days), n_id)
    y = rng.poisson(np.exp(0.2 + b[ids, day - 1]))
    t = day / 10.0
    t_mixed = t.copy()
    third = np.flatnonzero(day == 3)
    t_mixed[third[::2]] = 0.1 * 3  # 0.30000000000000004
    assert len(np.unique(t_mixed)) == 7
    fits = {}
    for name, tt in [("clean", t), ("mixed", t_mixed)]:
        X = pd.DataFrame({"t": tt, "x": rng.normal(size=len(tt)) * 0})
        for st in ("ar1", "ou"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = PoissonGLMM(random_effects=f"{st}(t)", random_only_columns="t").fit(
                    X[["t"]], y, groups=ids
                )
            fits[name, st] = m
    for st in ("ar1", "ou"):
        a, b_ = fits["clean", st], fits["mixed", st]
        cols = list(b_.random_effects_cov_["group"].columns)
        assert len(cols) == 6 and "t0.3" in cols
        assert cols == list(a.random_effects_cov_["group"].columns)
        assert b_.loglik_ == pytest.approx(a.loglik_, abs=1e-8)
        # new data at either spelling are the same time point
        new = pd.DataFrame({"t": [0.3, 0.1 * 3]})
        p = b_.predict(new, groups=np.array([0, 0]))
        assert p[0] == p[1]


def test_ou_at_a_new_time_reads_its_rate_where_it_is_precise():
    # the first two times 1e-11 apart: their correlation is 1 - 5e-12, from which the
    # rate has only about five digits; another pair's correlation gives it to rounding
    levels = np.array([0.0, 1e-11, 1.0, 2.0, 3.0])
    rate, var = 0.4, 0.64
    S = var * np.exp(-rate * np.abs(levels[:, None] - levels[None, :]))
    st = OrnsteinUhlenbeck(levels)
    C, v = st.new_time_covariance(S, levels, np.array([0.5, 7.0]))
    exact = var * np.exp(-rate * np.abs(np.array([0.5, 7.0])[:, None] - levels[None, :]))
    np.testing.assert_allclose(C, exact, rtol=1e-12)
    np.testing.assert_allclose(v, var)


def test_times_of_sixteen_digits_and_models_pickled_before_the_rounding_predict():
    # times k / 3 need 16-17 digits: the levels are kept to 15, and the data's own
    # values find them; a model pickled before the levels were rounded (its levels the
    # exact values) finds its rows as before, in predictions and their intervals
    import dataclasses

    rng = np.random.default_rng(4)
    ids = np.repeat(np.arange(40), 5)
    t = np.tile(np.arange(1, 6) / 3.0, 40)
    y = rng.poisson(np.exp(0.3 + rng.normal(0, 0.6, 40)[ids]))
    X = pd.DataFrame({"t": t})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM(random_effects="ou(t)", random_only_columns="t").fit(X, y, groups=ids)
    before = m.predict_interval(X.iloc[:10], groups=ids[:10])
    assert np.all(np.isfinite(np.asarray(before, dtype=float)))
    res = m.fit_result_
    f = res.factors[0]
    assert not np.array_equal(f.time_levels, np.unique(t))  # rounded to 15 digits
    old = dataclasses.replace(f, time_levels=np.unique(t))  # as a pickle made before
    res.factors[0] = old
    try:
        after = m.predict_interval(X.iloc[:10], groups=ids[:10])
    finally:
        res.factors[0] = f
    np.testing.assert_allclose(
        np.asarray(after, dtype=float), np.asarray(before, dtype=float), rtol=1e-9
    )


@pytest.mark.parametrize("term", ["cs(day)", "toep(day)"])
def test_an_sd_of_a_time_no_row_has_is_said_to_be_undetermined(term):
    # every row of day 3 at weight 0: the structure's SD of day 3 has no data, the
    # likelihood is flat in it, and its value is where the optimiser stopped; the fit
    # says so (its Wald interval is NaN) and, for cs, the rest is the fit without them
    from sklearn_glmm.exceptions import StandardErrorWarning

    df = pd.read_csv(Path(__file__).parent / "fixtures" / "covstruct" / "covstruct.csv")
    w = (df["day"] != 3).astype(float).to_numpy()
    with pytest.warns(StandardErrorWarning, match=r"sd_day3\|id") as caught:
        m = PoissonGLMM(random_effects=term).fit(
            df[["day", "x"]], df["count"], groups=df["id"], sample_weight=w
        )
    said = [str(c.message) for c in caught if issubclass(c.category, StandardErrorWarning)]
    assert all("sd_day1|id" not in s for s in said)
    ci = m.confint(parm="random")
    assert np.isnan(ci.loc["sd_day3|id", ["lower", "upper"]].to_numpy()).all()
    assert np.isfinite(ci.loc["sd_day1|id", ["lower", "upper"]].to_numpy()).all()
    if term.startswith("toep"):
        return  # (deleting the rows drops the level: days 2 and 4 one lag apart there)
    keep = w > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dropped = PoissonGLMM(random_effects=term).fit(
            df[["day", "x"]][keep], df["count"][keep], groups=df["id"][keep]
        )
    assert m.loglik_ == pytest.approx(dropped.loglik_, abs=1e-5)


@pytest.mark.parametrize("term", ["cs(x)", "ar1(x)"])
def test_a_continuous_time_variable_is_told_of_its_cost(term):
    """A continuous column as a structure's time gives every group one random effect per
    distinct value (200 here, 10 per group): said before the fit (which takes minutes),
    not after; a diary's shared days are not."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 10)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    y = rng.poisson(2.0, size=200)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*distinct values but no group")
        with pytest.raises(UserWarning, match=r"'x' has 200 distinct values.*more than 10"):
            PoissonGLMM(random_effects=term).fit(X, y, groups=g)
    # 60 shared days, each group observed on 40 of them: no such warning
    days = np.concatenate([np.sort(rng.choice(60, 40, replace=False)) for _ in range(5)])
    gd = np.repeat(np.arange(5), 40)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*distinct values but no group")
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        PoissonGLMM(random_effects="ar1(day)").fit(
            pd.DataFrame({"day": days}), rng.poisson(2.0, size=200), groups=gd
        )


def _cs_series(seed):
    """Poisson counts of 5-9 people x 4 times with a cs random effect per time."""
    rng = np.random.default_rng(seed)
    rho, sd, n_id = rng.uniform(-0.5, 0.99), rng.uniform(0.05, 0.8), int(rng.integers(5, 10))
    rng = np.random.default_rng(seed)
    idx, t = np.repeat(np.arange(n_id), 4), np.tile(np.arange(4), n_id)
    C = sd**2 * (rho * np.ones((4, 4)) + (1 - rho) * np.eye(4))
    B = rng.multivariate_normal(np.zeros(4), C, size=n_id)
    x = rng.normal(size=len(idx))
    rng.normal(size=4)  # (the draws of a site effect the data do not use)
    y = rng.poisson(np.exp(0.3 + 0.4 * x + B[idx, t]))
    return pd.DataFrame({"x": x, "t": t + 1, "id": idx.astype(str), "y": y})


@pytest.mark.parametrize("seed", [170, 239])
def test_a_cs_fit_reaches_the_optimum_near_a_correlation_of_one(seed):
    # the optimum lies at rho near 1 with an SD at 0, in a narrow basin the restarts with
    # the SDs at least their start missed: converged 4.6 (seed 170) and 0.17 (239) in
    # -2 log L above it; a restart from rho = 0.99 with the SDs small reaches it
    from sklearn_glmm._engine.stage import _laplace_stage
    from sklearn_glmm.formula import glmmTMB

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmmTMB("y ~ x + cs(0 + factor(t) | id)", _cs_series(seed), family="poisson")
    assert m.converged_
    obj, bounds = m.fit_result_.objective, m.fit_result_.bounds
    data, st = obj.data, obj.data.factors[0].structure
    cor, sds = data.n_beta + st.n_sd, slice(data.n_beta, data.n_beta + st.n_sd)
    diag = [k for k, b in enumerate(bounds[: data.n_beta + data.n_theta]) if b[0] == 0.0]
    best = np.inf
    for rho in (-0.3, 0.0, 0.3, 0.6, 0.9, 0.99):  # the fit's objective from many starts
        for sd in (0.1, 0.5):
            xs = m.fit_result_.params.copy()
            xs[cor], xs[sds] = st.cor_params([rho])[0], sd
            best = min(best, _laplace_stage(obj, xs, bounds, 500, 1e-10, diag).fun)
    assert -2.0 * m.loglik_ <= best + 1e-6
