"""What ``summary()`` and ``report()`` print: the numbers and words a researcher copies."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, PoissonGLMM
from sklearn_glmm._report import _fmt_p
from sklearn_glmm.datasets import make_longitudinal


def _quiet(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args, **kwargs)


def test_p_values_are_not_rounded_across_the_significance_cut():
    # p = 0.0482 printed "p = .05" beside "was lower" (significant by the report's rule)
    assert _fmt_p(0.0482) == "p = .048"
    assert _fmt_p(0.0482, 1 - 0.95) == "p = .048"
    assert _fmt_p(0.0504) == "p = .05"  # not significant, and .05 is not below .05
    assert _fmt_p(0.0999, 0.1) == "p = .0999"
    assert _fmt_p(0.23) == "p = .23"
    assert _fmt_p(0.004) == "p = .004"
    assert _fmt_p(0.0004) == "p < .001"
    assert _fmt_p(0.999) == "p > .99"
    df, _ = make_longitudinal(
        "poisson", n_groups=30, n_waves=4, random_state=95, fixed_effects={"treatment": -0.5}
    )
    m = _quiet(PoissonGLMM(), df[["time", "treatment"]], df["y"], groups=df["id"])
    p = m.fixed_effects_.loc["treatment", "p_value"]
    assert 0.045 < p < 0.05
    (sentence,) = [s for s in m.report().split(". ") if "treatment = 1" in s]
    assert "lower" in sentence and f"p = {p:.3f}".replace("0.", ".") in sentence


def _seconds_fit():
    rng = np.random.default_rng(7)
    n_id, n_t = 60, 8
    g = np.repeat(np.arange(n_id), n_t)
    days = np.tile(np.arange(n_t, dtype=float), n_id)
    y = rng.poisson(
        np.exp(
            0.5 + 0.03 * days + rng.normal(0, 0.5, n_id)[g] + rng.normal(0, 0.12, n_id)[g] * days
        )
    )
    day = _quiet(PoissonGLMM(random_effects="1 + t"), pd.DataFrame({"t": days}), y, groups=g)
    sec = _quiet(
        PoissonGLMM(random_effects="1 + t"), pd.DataFrame({"t": days * 86400.0}), y, groups=g
    )
    return day, sec


def test_report_and_summary_do_not_depend_on_the_units_of_a_slope():
    # in seconds the slope SD (1.5e-6) was "0.00 ... estimated at zero: a singular fit" of
    # a fit that is not singular, and the coefficient printed 0.000000 (IRR = 1.00000)
    day, sec = _seconds_fit()
    assert not day.is_singular_ and not sec.is_singular_
    assert sec.loglik_ == pytest.approx(day.loglik_, abs=1e-6)
    text = sec.report()
    assert "singular" not in text
    (cov,) = sec.random_effects_cov_.values()
    sd = float(np.sqrt(cov.iloc[1, 1]))
    assert 1e-7 < sd < 1e-5
    assert f"random-slope SD of t was {sd:.3g}" in text
    lines = str(sec.summary()).splitlines()
    table = lines[lines.index("Fixed effects:") : lines.index("---")]
    (row,) = [line for line in table if line.startswith("t ")]
    est = sec.fixed_effects_.loc["t", "estimate"]
    assert f"{est:.4e}" in row and "0.000000" not in row
    assert "IRR = 1.00000 " not in text


def test_report_says_what_exp_beta_multiplies_with_a_varying_zero_part():
    # exp(beta) multiplies the count part's mean; with zero inflation rising with x the
    # expected count falls (2.33, 2.79, 1.04 at x = 0, 1, 2) while the report said the
    # expected count "increased with x"
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(60), 10)
    x = rng.uniform(0, 2, len(g))
    mu = np.exp(1.0 + 0.8 * x + rng.normal(0, 0.4, 60)[g])
    pi = 1 / (1 + np.exp(-(-2.5 + 2.5 * x)))
    y = np.where(rng.random(len(g)) < pi, 0, rng.poisson(mu))
    m = _quiet(PoissonGLMM(zero_inflation="1 + x"), pd.DataFrame({"x": x}), y, groups=g)
    text = m.report()
    assert "The expected count of the outcome increased with x" not in text
    assert "The mean of the count part of the outcome (its non-structural zeros) increased" in text
    constant = _quiet(PoissonGLMM(zero_inflation=True), pd.DataFrame({"x": x}), y, groups=g)
    assert "The expected count of the outcome" in constant.report()  # exp(beta): E[Y]'s ratio


def test_summary_prints_names_in_full():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(40), 8)
    X = pd.DataFrame(
        {
            "treatment_group_A": rng.integers(0, 2, len(g)).astype(float),
            "treatment_group_B": rng.integers(0, 2, len(g)).astype(float),
        }
    )
    y = rng.poisson(np.exp(0.2 + 0.5 * X.treatment_group_A + rng.normal(0, 0.4, 40)[g]))
    lines = str(_quiet(PoissonGLMM(), X, y, groups=g).summary()).splitlines()
    # cut to 16 characters, both rows were "treatment_group_"
    for name in ("treatment_group_A", "treatment_group_B"):
        assert len([line for line in lines if line.split(" ")[0] == name]) == 1


def test_report_gives_every_correlation_of_three_terms():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(80), 12)
    t, z = rng.normal(size=len(g)), rng.normal(size=len(g))
    C = np.array([[0.36, 0.1, -0.1], [0.1, 0.1, 0.0], [-0.1, 0.0, 0.15]])
    b = rng.multivariate_normal(np.zeros(3), C, 80)[g]
    y = rng.poisson(np.exp(0.5 + b[:, 0] + (0.2 + b[:, 1]) * t + b[:, 2] * z))
    m = _quiet(PoissonGLMM(random_effects="1 + t + z"), pd.DataFrame({"t": t, "z": z}), y, groups=g)
    (S,) = m.random_effects_cov_.values()
    S = S.to_numpy()
    r = S / np.sqrt(np.outer(np.diag(S), np.diag(S)))
    text = m.report()
    for a, b_, k, j in [("(Intercept)", "t", 0, 1), ("(Intercept)", "z", 0, 2), ("t", "z", 1, 2)]:
        assert f"{a} and {b_} {r[k, j]:.2f}" in text


def test_report_names_the_reference_level_of_a_formula_factor():
    # "conditiondrugA = 1 than for conditiondrugA = 0" read as drugA against every other
    # level; the coefficient compares drugA with the reference level ctrl
    from sklearn_glmm.formula import glmer

    rng = np.random.default_rng(5)
    n = 600
    d = pd.DataFrame(
        {
            "condition": rng.choice(["ctrl", "drugA", "drugB"], n),
            "id": np.repeat(np.arange(60), 10),
        }
    )
    eff = d.condition.map({"ctrl": 0.0, "drugA": 0.6, "drugB": -0.8})
    d["y"] = rng.binomial(1, 1 / (1 + np.exp(-(eff + rng.normal(0, 0.5, 60)[d.id]))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = glmer("y ~ condition + (1 | id)", d, family="binomial")
    text = m.report()
    assert "for condition = drugA than for condition = ctrl (the reference level)" in text
    assert "conditiondrugA = 0" not in text


def test_correlation_of_fixed_effects_as_lme4_prints_it():
    """The cbpp model: lme4's block, the lower triangle to three decimals under names
    abbreviated as R's abbreviate() does; the numbers those of the summary's table."""
    from reference import case_data, load_reference

    spec, X, y, groups, kw = case_data("binom_trials")
    m = _quiet(BinomialGLMM(), X, y, groups=groups, **kw)
    s = m.summary()
    R = s.fixed_effects_correlation
    assert list(R.index) == list(m.fixed_effects_.index)
    np.testing.assert_allclose(np.diag(R), 1.0)
    lines = str(s).splitlines()
    at = lines.index("Correlation of Fixed Effects:")
    assert lines[at + 1] == "        (Intr) perid2 perid3"
    r = R.to_numpy()
    assert lines[at + 2] == f"period2 {r[1, 0]:.3f}              "
    assert lines[at + 3] == f"period3 {r[2, 0]:.3f}  {r[2, 1]:.3f}       "
    assert lines[at + 4] == f"period4 {r[3, 0]:.3f}  {r[3, 1]:.3f}  {r[3, 2]:.3f}"
    # the same matrix as the reference engine's cov2cor(vcov(fit))
    ref = load_reference()["binom_trials"]
    V = np.array(ref["vcov"])
    np.testing.assert_allclose(r, V / np.sqrt(np.outer(np.diag(V), np.diag(V))), atol=1e-4)


def test_correlation_block_only_for_two_to_twelve_terms():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 10)
    X = pd.DataFrame(rng.normal(size=(len(g), 13)), columns=[f"x{k}" for k in range(13)])
    y = rng.poisson(np.exp(0.3 + rng.normal(0, 0.4, 30)[g]))
    text = str(_quiet(PoissonGLMM(), X, y, groups=g).summary())
    assert "Correlation matrix not shown by default, as p = 14 > 12." in text
    assert "Correlation of Fixed Effects:" not in text
    one = str(_quiet(PoissonGLMM(fit_intercept=False), X[["x0"]], y, groups=g).summary())
    assert "Correlation" not in one


def test_abbreviations_follow_r():
    from sklearn_glmm.summary import abbreviate

    # R 4: abbreviate(c("(Intercept)", "period2", "xs"), 6)
    assert abbreviate(["(Intercept)", "period2", "xs"], 6) == ["(Intr)", "perid2", "xs"]
    assert abbreviate(["treatment_group_A", "treatment_group_B"], 6) == ["trt__A", "trt__B"]
    # names that would collide get longer abbreviations, up to themselves
    out = abbreviate(["abcdefgh1", "abcdefgh2", "abcdefgh"], 3)
    assert len(set(out)) == 3
