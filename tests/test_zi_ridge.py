"""Zero inflation that depends on a binary predictor, against glmmTMB
(``fixtures/zi_ridge``: the data generator and the R script beside the fixture).

Such a model has a ridge where the zero-inflation probability for one value of the
predictor runs to 0 (its intercept and slope off together): the likelihood rises, ever
more slowly, along it, and the gradient vanishes. The GLM that gives the starting values
often ends there; a fit started on the ridge stayed on it, below the interior optimum
(6 of 20 generated data sets of this design), reporting convergence on 4 of them.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import NegBinGLMM

FIXTURES = Path(__file__).parent / "fixtures" / "zi_ridge"
SEEDS = ["2", "6", "11"]


def _reference():
    return json.loads((FIXTURES / "zi_ridge.json").read_text())


def _data(seed):
    d = pd.read_csv(FIXTURES / "zi_ridge.csv")
    return d[d["seed"] == int(seed)].reset_index(drop=True)


def _fit(seed):
    d = _data(seed)
    return NegBinGLMM(zero_inflation="1 + w").fit(d[["x", "w"]], d["y"], groups=d["g"])


@pytest.mark.parametrize("seed", SEEDS)
def test_the_fit_reaches_glmmtmbs_optimum(seed):
    ref = _reference()[seed]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged, every standard error computed
        m = _fit(seed)
    assert m.converged_
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    zi = m.zero_inflation_effects_["estimate"]
    for name, value in ref["zi"].items():
        assert zi[name] == pytest.approx(value, abs=5e-3)
    for name, value in ref["fixef"].items():
        assert m.fixed_effects_.loc[name, "estimate"] == pytest.approx(value, abs=1e-3)
    assert m.theta_ == pytest.approx(ref["theta"], rel=1e-2)


def test_a_fit_started_on_the_ridge_leaves_it(monkeypatch):
    # the start's zero-inflation coefficients put on the ridge (probability 1e-7 where
    # w = 0), as the GLM's optimum was: the optimiser stays there, and the check at the
    # end of the optimisation resumes from the block's start
    import sklearn_glmm._base as base

    start = base.starting_point

    def on_the_ridge(obj):
        x0 = start(obj)
        d = obj.data
        k = d.n_beta + d.n_theta
        for block, D in zip(d.family.blocks, d.extra_designs):
            width = 1 if D is None else D.shape[1]
            if block.prefix == "zi":
                target = np.where(_data("6")["w"].to_numpy() > 0.5, -1.5, -16.0)
                x0[k : k + width] = np.linalg.lstsq(D, target, rcond=None)[0]
            k += width
        return x0

    monkeypatch.setattr(base, "starting_point", on_the_ridge)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _fit("6")
    assert "block ridge" in [stage[0] for stage in m.fit_record_.stages]
    assert m.loglik_ == pytest.approx(_reference()["6"]["loglik"], abs=1e-4)


def test_a_fit_whose_optimum_is_on_the_ridge_keeps_the_other_standard_errors():
    # no excess zeros where w = 1: zi~w runs along the ridge (the likelihood's supremum
    # is at its end). The flat direction's coupling to the other parameters (~1e-4 at
    # the fit's point) made every standard error NaN; now only the zero part's are, with
    # a warning naming them, and the others are those of the model at the ridge's end
    from sklearn_glmm.exceptions import StandardErrorWarning

    rng = np.random.default_rng(0)
    n, G = 600, 40
    g = rng.integers(0, G, n)
    X = pd.DataFrame({"x": rng.normal(size=n), "w": rng.integers(0, 2, n).astype(float)})
    mu = np.exp(0.5 + 0.25 * X["x"] - 0.4 * X["w"] + rng.normal(0, 0.3, G)[g])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    y = np.where((X["w"] == 0) & (rng.random(n) < 0.4), 0, y)
    ridge = r"the coefficients \['zi~w'\] run along a ridge"
    with pytest.warns(StandardErrorWarning, match=ridge):
        m = NegBinGLMM(zero_inflation="1 + w").fit(X, y, groups=g)
    assert m.zero_inflation_effects_.loc["w", "estimate"] < -10
    se = m.fixed_effects_["std_error"]
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    ci = m.confint()
    assert np.isfinite(ci.loc["sd_(Intercept)|group", ["lower", "upper"]]).all()
    # the others' standard errors: the model at the ridge's end (no zero inflation where
    # w = 1), i.e. with the slope held at its value
    res = m.fit_result_
    H = res.record.hessian
    keep = [k for k in range(len(res.params)) if k != len(res.params) - 1]
    V = 2.0 * np.linalg.inv(H[np.ix_(keep, keep)])
    J = res.beta_jacobian()
    p = res.layout.n_beta
    se_held = np.sqrt(np.diag(J @ V[:p, :p] @ J.T))
    np.testing.assert_allclose(se.to_numpy(), se_held, rtol=1e-2)
    # the zero part's intercept (the probability where w = 0, which stays inside) too
    # (it was NaN with the slope): its internal parameter with the slope held
    zi_se = m.zero_inflation_effects_["std_error"]
    assert zi_se["(Intercept)"] == pytest.approx(np.sqrt(V[-1, -1]), rel=1e-2)
    assert np.isnan(zi_se["w"])


@pytest.mark.parametrize("case", ["nb2_b", "nb2_w", "nb1_b"])
def test_the_ridges_end_gives_glmmtmbs_standard_errors_and_converges(case):
    # tests/fixtures/zi_ridge/make_ends.R: the zero-inflation probability of some
    # values of its predictor runs to 0. The Hessian there still coupled the other
    # parameters with the direction along the ridge: standard errors up to 10 % above
    # glmmTMB's without a word (nb2_b), or all NaN with a "saddle point"
    # ConvergenceWarning (nb2_w, nb1_b); the ridge's end is the model they belong to
    from sklearn_glmm.exceptions import ConvergenceWarning, StandardErrorWarning
    from sklearn_glmm.formula import glmmTMB

    here = Path(__file__).parent / "fixtures" / "zi_ridge"
    ref = json.loads((here / "ends.json").read_text())[case]
    d = pd.read_csv(here / "ends.csv")
    y, family = ("y_p3", "nbinom1") if case == "nb1_b" else ("y_nb", "nbinom2")
    zi = "~w" if case == "nb2_w" else "~b"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmmTMB(f"{y} ~ x + b + w + (1 | g)", d, family=family, ziformula=zi)
    kinds = [w.category for w in caught]
    assert ConvergenceWarning not in kinds and m.converged_
    assert StandardErrorWarning in kinds  # the block's coefficients: NaN, named
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(m.fixed_effects_["std_error"], ref["se"], rtol=2e-3)
    zi_se = m.zero_inflation_effects_["std_error"]
    if case == "nb2_w":  # every level's probability off along the ridge (glmmTMB: 2566)
        assert zi_se.isna().all()
    else:
        # the intercept (the probability where b is False, which does not run to 0) has
        # the ridge's end model's standard error (it was NaN), the slope none
        assert zi_se.iloc[0] == pytest.approx(ref["zi_se"][0], rel=2e-3)
        assert np.isnan(zi_se.iloc[1])
        msgs = [str(w.message) for w in caught if w.category is StandardErrorWarning]
        assert any("['zi~bTRUE'] run along a ridge" in msg for msg in msgs), msgs


def test_a_ridge_stopped_by_the_intercepts_bound_leaves_no_standard_errors():
    # counts without any zero inflation, zi ~ x: the probability runs to 0 on most rows
    # and the intercept stops at its bound (logit -20) with the slope beside it; the
    # slope's standard error there was conditional on the bound (z = -8.3 on data
    # without zero inflation): now NaN with the block's other coefficients, and said
    from sklearn_glmm.exceptions import StandardErrorWarning
    from sklearn_glmm.formula import glmmTMB

    rng = np.random.default_rng(27)
    n, G = 300, 20
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    rng.choice(["a", "b"], n)  # (the draws of the generator the case came from)
    mu = np.exp(0.4 + 0.5 * x + rng.normal(0, 0.5, G)[g])
    d = pd.DataFrame({"y": rng.negative_binomial(2, 2 / (2 + mu)), "x": x, "g": g})
    with pytest.warns(StandardErrorWarning, match=r"to the bound of \['zi~\(Intercept\)'\]"):
        m = glmmTMB("y ~ x + (1 | g)", d, family="nbinom2", ziformula="~x")
    zi = m.zero_inflation_effects_
    assert zi["estimate"].iloc[0] < -15  # (on the ridge)
    assert zi["std_error"].isna().all() and zi["p_value"].isna().all()
    assert np.isfinite(m.fixed_effects_["std_error"]).all()
    assert m.converged_
    # the mean's interval reads those coefficients: NaN, said
    with pytest.warns(UserWarning, match="response scale cannot be computed"):
        table = m.predict_interval(d.head(3))
    assert table["se"].isna().all()
    assert np.isfinite(m.predict_interval(d.head(3), scale="link")["se"]).all()


def test_a_stopped_ridge_is_said_block_by_block():
    # a dispersion ridge (theta to its Poisson limit where w = 0) beside a zero-inflation
    # ridge stopped at its intercept's bound: each block is said on its own terms
    from sklearn_glmm.exceptions import StandardErrorWarning
    from sklearn_glmm.formula import glmmTMB

    rng = np.random.default_rng(0)
    n, G = 800, 30
    g = rng.integers(0, G, n)
    d = pd.DataFrame({"x": rng.normal(size=n), "w": rng.integers(0, 2, n), "g": g})
    mu = np.exp(1.5 + 0.3 * d["x"] + rng.normal(0, 0.3, G)[g])
    d["y"] = np.where(d["w"] == 0, rng.poisson(mu), rng.negative_binomial(1.0, 1.0 / (1.0 + mu)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmmTMB("y ~ x + (1 | g)", d, family="nbinom2", dispformula="~w", ziformula="~w")
    said = [str(w.message) for w in caught if w.category is StandardErrorWarning]
    stopped = [msg for msg in said if "to the bound of" in msg]
    assert len(stopped) == 1 and "disp~" not in stopped[0] and "'zi~w'" in stopped[0]
    assert m.zero_inflation_effects_["std_error"].isna().all()
    # the dispersion block is said on its own ridge's terms (log theta of the rows with
    # w = 0 runs to the Poisson limit, the coefficient of w with it), not by the zero
    # part's bound
    ridge = [msg for msg in said if "run along a ridge" in msg]
    assert len(ridge) == 1 and "'disp~w'" in ridge[0] and "zi~" not in ridge[0]


def test_a_dispersion_stopped_near_its_bound_leaves_no_standard_errors():
    # NB2 with dispersion ~x on Poisson counts: the block's intercept stops at log theta
    # 29.98 of its bound 30 with the slope beside it; the slope had SE 0.91 (z = 12.3)
    # without a warning, where the likelihood-ratio test against Poisson is 0.32
    from sklearn_glmm.exceptions import StandardErrorWarning

    rng = np.random.default_rng(5101)
    n, G = 300, 30
    g = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    b = rng.normal(0, 0.5, G)
    w = (rng.random(n) < 0.5) * 1.0
    y = rng.poisson(np.exp(0.5 + 0.3 * x + b[g]))
    X = pd.DataFrame({"x": x, "w": w})
    with pytest.warns(StandardErrorWarning, match=r"to the bound of \['disp~\(Intercept\)'\]"):
        m = NegBinGLMM(dispersion="1 + x", random_only_columns=["w"]).fit(X, y, groups=g)
    assert m.dispersion_effects_["estimate"].iloc[0] > 20
    assert m.dispersion_effects_["std_error"].isna().all()
    assert m.confint().filter(like="disp~", axis=0)[["lower", "upper"]].isna().all().all()


def _zi_null_data(family, pi0, seed, n=300, G=30):
    """Counts with constant (or no) zero inflation; x and two orthonormal columns."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    b = rng.normal(0, 0.5, G)
    mu = np.exp(0.5 + 0.3 * x + b[g])
    if family == "nbinom2":
        y = rng.poisson(rng.gamma(2.0, mu / 2.0))
    else:  # nbinom1, phi = 1
        y = rng.poisson(rng.gamma(mu, 1.0))
    y = np.where(rng.random(n) < pi0, 0, y)
    P = np.polynomial.legendre.legvander((x - x.mean()) / x.std(), 2)[:, 1:]
    Q, _ = np.linalg.qr(np.column_stack([np.ones(n), P]))
    X = pd.DataFrame({"x": x, "p1": Q[:, 1] * np.sqrt(n), "p2": Q[:, 2] * np.sqrt(n)})
    return X, y, g


@pytest.mark.parametrize(
    "family, pi0, seed, zi, reference",
    [
        # glmmTMB 1.1.5 on the same data: -473.3523 (zi -0.631, 0.090, -0.076)
        ("nbinom2", 0.25, 1191, "1 + p1 + p2", -473.3523),
        # glmmTMB: -544.785 (a steep boundary in x)
        ("nbinom1", 0.0, 1000, "1 + x", -544.785),
    ],
)
def test_a_zero_inflation_design_is_never_below_its_intercept_only_model(
    family, pi0, seed, zi, reference
):
    # the fits ended 0.14 and 0.018 below the zi ~ 1 fit (a likelihood-ratio statistic
    # below 0), converged; now the nested model is fitted and the full one refitted from it
    X, y, g = _zi_null_data(family, pi0, seed)
    if family == "nbinom1" and seed == 1000:  # (the audit's generator: no poly columns)
        X = X[["x"]]
    kw = dict(family=family, random_only_columns=[c for c in X.columns if c != "x"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nested = NegBinGLMM(zero_inflation=True, **kw).fit(X, y, groups=g)
        full = NegBinGLMM(zero_inflation=zi, **kw).fit(X, y, groups=g)
    assert full.loglik_ >= nested.loglik_ - 1e-6
    assert full.loglik_ == pytest.approx(reference, abs=5e-3)


def test_a_binary_ridge_whose_centred_intercept_reaches_the_bound_keeps_its_end():
    # no excess zeros where w = 1 (97 % of rows): the centred intercept reaches -20 along
    # that ridge, which has a model at its end (glmmTMB: zi intercept SE 0.3351), so it is
    # not said to have stopped there, and the intercept keeps that standard error
    from sklearn_glmm.exceptions import StandardErrorWarning
    from sklearn_glmm.formula import glmmTMB

    rng = np.random.default_rng(221)
    n, G = 1000, 25
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    b = rng.normal(0, 0.4, G)[g]
    w = (rng.random(n) < 0.97).astype(int)
    mu = np.exp(1.5 + 0.3 * x + b)
    y = rng.negative_binomial(5.0, 5.0 / (5.0 + mu))
    y = np.where((w == 0) & (rng.random(n) < 0.5), 0, y)
    d = pd.DataFrame({"y": y, "x": x, "w": w, "g": g})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmmTMB("y ~ x + (1 | g)", d, family="nbinom2", ziformula="~w")
    said = [str(c.message) for c in caught if c.category is StandardErrorWarning]
    assert not any("to the bound of" in msg for msg in said)
    assert any("['zi~w'] run along a ridge" in msg for msg in said)
    assert m.zero_inflation_effects_["std_error"].iloc[0] == pytest.approx(0.3351, rel=2e-3)


def _family_global_fit(seed):
    """The fit of family-global fuzz data set ``seed``, the warnings it gave, and the
    truth's value at its parameters (Laplace, or quadrature with the fit's nodes)."""
    import truth
    from fuzz_family_global_cases import make_family_global_case
    from test_fuzz_truth_family_global import fitted_params, truth_data

    case = make_family_global_case(seed)
    m = case["estimator"](**case["params"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.fit(case["X"], case["y"], groups=case["groups"], **case["fit_params"])
    params, data = fitted_params(m, case), truth_data(case)
    n_agq = case["params"].get("n_agq", 1)
    value = (
        truth.laplace_loglik(params, data) if n_agq == 1 else truth.agq_loglik(params, data, n_agq)
    )
    return m, [w.category for w in caught], value


def test_a_fit_left_at_zero_inflation_0_where_the_likelihood_rises_off_it_leaves():
    # family-global fuzz data set 211 (zero-inflated NB2, dispersion 1 + z, 42 groups of
    # one or two rows, AGQ 6): the Laplace stage's optimum has no zero inflation (logit
    # on its bound, -20), and the quadrature stage stayed there, its gradient in the
    # logit e^-20 times its slope in the probability (+2.25 in log L per unit): converged,
    # with a ZeroInflationWarning, 2.47 below the optimum at zero inflation 0.22 (the
    # Poisson limit in every row; the integral by brute force agrees to 0.03)
    m, _, truth_value = _family_global_fit(211)
    assert m.converged_
    assert any(s[0].startswith("off the bound of parameter") for s in m.fit_record_.stages)
    assert m.loglik_ > -138.4528  # (the fit at the bound: -140.9239)
    assert 0.15 < m.zero_inflation_ < 0.3
    assert m.loglik_ == pytest.approx(truth_value, abs=1e-6)


def test_a_fit_at_zero_inflation_0_is_fitted_again_from_most_zeros_inflated():
    # family-global fuzz data set 13 (zero-inflated NB1, 100 rows in 5 groups, x0 on a
    # scale of 1e6): two basins, the zeros explained by low counts (zero inflation 0, phi
    # 2.33: -69.960524) or by the inflation (0.69, phi 1.05: -69.955729, glmmTMB 1.1.5's
    # default fit -69.95573). Started in the first, the fit ended there with a
    # ZeroInflationWarning calling the model without zero inflation adequate.
    from sklearn_glmm.exceptions import ZeroInflationWarning

    m, warned, truth_value = _family_global_fit(13)
    assert ZeroInflationWarning not in warned
    assert any(s[0].startswith("far start of parameter") for s in m.fit_record_.stages)
    assert m.loglik_ == pytest.approx(-69.955729, abs=2e-6)
    assert m.zero_inflation_ == pytest.approx(0.692, abs=0.01)
    assert m.loglik_ == pytest.approx(truth_value, abs=1e-6)


def test_a_fit_at_the_binomial_limit_where_the_likelihood_rises_off_it_leaves():
    # family-global fuzz data set 243 (beta-binomial, 51 rows in 16 groups, up to 15
    # trials, AGQ 12): the Laplace stage's optimum is at the binomial limit (log phi on
    # its bound, 20), and the quadrature stage stayed there. On the bound the family is
    # the binomial itself, whose derivative in log phi is exactly 0, so the slope off the
    # bound read 0; it is read between the bound and the flat side's threshold now. The
    # fit was converged with an OverdispersionWarning, -77.782373, 0.0028 below the
    # optimum at phi 422 (-77.779609, by the truth's quadrature and by the integral)
    from sklearn_glmm.exceptions import OverdispersionWarning

    m, warned, truth_value = _family_global_fit(243)
    assert OverdispersionWarning not in warned
    assert m.converged_
    assert any(s[0].startswith("off the bound of parameter") for s in m.fit_record_.stages)
    assert m.loglik_ == pytest.approx(-77.779609, abs=2e-6)
    assert 300.0 < m.phi_ < 600.0
    assert m.loglik_ == pytest.approx(truth_value, abs=1e-6)


def _released():
    """``fixtures/zi_release``: a zero-inflated Poisson fit, one zero-inflation model per
    level of a three-level factor, and glmmTMB's optimum (``make.R``)."""
    pytest.importorskip("formulaic")
    from sklearn_glmm.formula import glmmTMB

    here = Path(__file__).parent / "fixtures" / "zi_release"
    ref = json.loads((here / "released.json").read_text())
    d = pd.read_csv(here / "released.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmmTMB(ref["formula"], d, family="poisson", ziformula=ref["ziformula"])
    return m, ref, caught


def test_rows_of_one_level_held_at_the_limit_with_another_are_released():
    """The fit had ended with the rows of two levels of ``f`` at no zero inflation,
    converged, 1.25 log-likelihood units below glmmTMB's optimum, where the level
    ``dose`` has zero inflation on its rows of small ``x1`` (a logit slope of -5.3):
    neither the fit nor the nested models (one value's rows held or freed whatever the
    others') left the limit on those rows. Released from it (``partial_limits``), the fit
    reaches glmmTMB's optimum, with its standard errors of what the data determine."""
    m, ref, caught = _released()
    assert any("released" in s[0] for s in m.fit_record_.stages)
    assert m.converged_
    assert not [w for w in caught if w.category.__name__ == "ConvergenceWarning"]
    assert m.loglik_ > ref["loglik"] - 1e-4
    fe = m.fixed_effects_
    np.testing.assert_allclose(fe["estimate"], list(ref["fixef"].values()), atol=2e-3)
    np.testing.assert_allclose(fe["std_error"], list(ref["fixef_se"].values()), rtol=0.01)
    zi = m.zero_inflation_effects_
    assert list(zi.index) == list(ref["zi"])  # (glmmTMB's names, fdose:x1 here, x1:fdose there)
    for name in ("fctrl:x1", "fdose:x1"):
        assert zi.loc[name, "estimate"] == pytest.approx(ref["zi"][name], abs=0.02)
        assert zi.loc[name, "std_error"] == pytest.approx(ref["zi_se"][name], rel=0.01)
    # the logit of zero inflation on the level dose (its intercept): identified there
    dose = zi.loc["(Intercept)", "estimate"] + zi.loc["fdose", "estimate"]
    assert dose == pytest.approx(ref["zi"]["(Intercept)"] + ref["zi"]["fdose"], abs=0.1)


def test_a_dispersion_left_drifting_by_the_block_ridge_restart_is_settled():
    """A zero-inflated NB2 with ``ziformula = ~ f + x1`` on counts without overdispersion
    and one level without zero inflation (``fixtures/zi_release/levels.csv``): the
    restart off the zero-inflation block's ridge ended with log theta at 10.5, drifting
    on its flat side, where the Hessian has a direction of slight negative curvature;
    the fit said it had not converged, with NaN standard errors for the fixed effects.
    Settled as the first stage's end is, it converges, with the standard errors of the
    conditional model, and is not below its nested model, the zero-inflated Poisson."""
    pytest.importorskip("formulaic")
    from sklearn_glmm.formula import glmmTMB

    d = pd.read_csv(Path(__file__).parent / "fixtures" / "zi_release" / "levels.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = glmmTMB("y ~ x2 + (1 | g)", d, family="nbinom2", ziformula="~ f + x1")
        nested = glmmTMB("y ~ x2 + (1 | g)", d, family="poisson", ziformula="~ f + x1")
    assert "block ridge" in [s[0] for s in m.fit_record_.stages]
    assert not [w for w in caught if w.category.__name__ == "ConvergenceWarning"]
    assert m.converged_ and nested.converged_
    assert m.loglik_ > nested.loglik_ - 1e-4
    assert np.all(np.isfinite(m.fixed_effects_["std_error"]))
    np.testing.assert_allclose(
        m.fixed_effects_["estimate"], nested.fixed_effects_["estimate"], atol=0.01
    )
