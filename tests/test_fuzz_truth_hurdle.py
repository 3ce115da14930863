"""Fuzz hurdle, zero-truncated, zero-inflated-with-predictors and NB2 dispersion-model
fits against the truth.

Data sets come from ``fuzz_hurdle_cases.make_hurdle_case(seed)``: ``PoissonGLMM`` and
``NegBinGLMM`` (NB2, NB1) with ``hurdle=True``, ``hurdle="1 + z"``, ``truncated=True``,
``zero_inflation="1 + z"``, and NB2 with ``dispersion="1 + z"`` (alone or with those),
one grouping factor with a scalar random intercept in the count part (ordinary data,
raw-scale predictors, tiny data, few groups, many and few zeros, hurdle data without
zeros, small means, large counts, near-Poisson NB, strong overdispersion, a steep zero
part; Laplace and AGQ with 2-25 nodes; offsets and prior weights). Their
log-likelihoods come from ``truth.py`` with the densities of ``truth_hurdle.py`` (numpy
and scipy only), and each fit gets the checks of ``test_fuzz_truth.py`` (same names and
tolerances):

- ``crash``, ``nonfinite``, ``absurd``, ``se_zero``, ``se_nan``, ``flat_unwarned``: as
  there;
- ``loglik_value``: ``loglik_`` is the independent Laplace (or AGQ with the fit's nodes)
  log-likelihood at the reported parameters (the count part's, the dispersion's and the
  zero part's coefficients as tabled) within 1e-4, whatever the warnings;
  ``loglik_vs_integral``: with 25 nodes or more, within 1e-3 of the brute-force integral
  (not compared where the independent AGQ with the fit's nodes is itself further from
  it: the rule's own error, up to 2e-3 with 25 nodes for hurdle counts with means near 0,
  whose truncated density tends to a constant as the random effect falls and leaves a
  posterior far from normal; ``rule_error`` in the numbers);
- ``not_optimal``, ``below_glm``: a fit that claims its optimum (``converged_`` and no
  warning but a singular-fit or overdispersion one) is no more than 0.01 below the best
  point Nelder-Mead (then Powell) finds from it on the independent objective (the
  integral for 25 nodes or more), nor below the nested GLM (every other coefficient
  free; NB's Poisson limit too);
- ``se_value``, ``se_variance``: a fit converged without any warning at an interior
  optimum has fixed-effect standard errors, and Wald standard errors of the SD (log
  scale), of NB2's ``log theta`` / NB1's ``log phi`` or the dispersion model's
  coefficients, and of the zero part's logit or its coefficients (the tables'
  ``std_error``), within 1e-3 (relative) of the inverse Hessian of the independent
  objective it maximised, where that Hessian's own error estimate is below 5e-4;
- ``block_report``: the family's parameters as reported: a constant dispersion in its
  range, its ``*_at_boundary_`` flag set exactly on the bound's value (``theta_ = inf``,
  ``phi_ = 0``) and then with an ``OverdispersionWarning``; a constant hurdle's
  ``zero_prob_`` the (weighted) share of zeros when the fit claims its optimum (the parts
  factorise), 0 with
  ``zero_prob_at_boundary_`` and a ``ZeroInflationWarning`` exactly when there are no
  zeros; with a design, the attribute the mean of the rows' fitted values; the tables'
  intercept the constant's log / logit, and ``confint(method="wald")``'s estimates the
  tables'.

Run ``python -m pytest -m slow tests/test_fuzz_truth_hurdle.py`` for
``FUZZ_HURDLE_CASES`` data sets (default 300) from ``FUZZ_HURDLE_START`` (0). One data
set, with every number its checks computed: ``PYTHONPATH=. python
tests/test_fuzz_truth_hurdle.py SEED`` (``--range START STOP`` for the table).
"""

from __future__ import annotations

import copy
import functools
import sys
import warnings
from collections import Counter

import fuzz_harness as harness
import numpy as np
import pandas as pd
import pytest
import truth
import truth_hurdle
from fuzz_harness import (
    FLAT_LAPLACE,
    SE_MIN_SIGMA,
    Outcome,
)
from fuzz_hurdle_cases import make_hurdle_case
from scipy import special, stats
from test_fuzz_truth import (
    _sanity,
    check_below_glm,
    check_nearby_optimum,
    check_same_value,
    check_standard_errors,
    wald_sd,
)

from sklearn_glmm.exceptions import OverdispersionWarning, ZeroInflationWarning

FAILURE_KINDS = harness.failure_kinds(
    *harness.SANITY_FIRST,
    "loglik_value",
    "flat_unwarned",
    "loglik_vs_integral",
    "not_optimal",
    "below_glm",
    "se_value",
    ("se_variance", "a Wald SE of the SD, the dispersion or the zero part != the independent one"),
    ("block_report", "dispersion / zero part: value, boundary flag, warning or tables disagree"),
)
CHECKS = (
    "sanity",
    "block_report",
    "loglik_value",
    "loglik_vs_integral",
    "not_optimal",
    "below_glm",
    "se_value",
    "se_variance",
)
# a constant hurdle's zero_prob_ against the weighted share of zeros: within a thousandth
# of the share's standard error sqrt(pi (1 - pi) / sum(w)) (the optimiser stops at
# 1e-7-1e-6 from it in fits whose dispersion model runs along its ridge)
TOL_SHARE = 1e-3
FAST_SEEDS = [100_000, 100_001, 100_002, 100_005]
SLOW_SEEDS = harness.slow_seeds("FUZZ_HURDLE", 300)


def reproduction(seed: int) -> str:
    return harness.reproduction("test_fuzz_truth_hurdle", seed)


def model_name(case) -> str:
    """The model's short name: ``hurdle``, ``hurdle(z)``, ``truncated``, ``zi(z)``,
    ``plain``, with ``+disp`` for a dispersion model."""
    name = (case["model"] or "plain") + ("(z)" if case["zero_terms"] else "")
    return name + ("+disp" if case["disp_terms"] else "")


# -- from a case and a fit to the truth's data and parameters --------------------------


def _design(case, terms):
    X = case["X"]
    return np.column_stack([np.ones(len(X)), *(X[t].to_numpy(dtype=float) for t in terms)])


def truth_data(case) -> truth.GLMMData:
    """The case as ``truth.GLMMData``: the count part's columns, the designs of the zero
    part and the dispersion."""
    X = case["X"][case["count_columns"]].to_numpy(dtype=float)
    n = X.shape[0]
    fp = case["fit_params"]
    return truth.GLMMData(
        np.column_stack([np.ones(n), X]),
        np.asarray(case["y"], dtype=float),
        pd.factorize(case["groups"])[0],
        case["family"],
        weights=fp.get("sample_weight"),
        offset=fp.get("offset"),
        zero_inflation=case["model"] == "zi",
        truncated=case["model"] == "truncated",
        hurdle=case["model"] == "hurdle",
        zi_design=None if case["zero_terms"] is None else _design(case, case["zero_terms"]),
        disp_design=None if case["disp_terms"] is None else _design(case, case["disp_terms"]),
    )


def _table(m, name):
    return getattr(m, name)["estimate"].to_numpy(dtype=float)


def fitted_params(m, case) -> dict:
    """The fit's parameters for ``truth``, from its public attributes."""
    (cov,) = m.random_effects_cov_.values()
    params = {
        "beta": np.r_[m.intercept_, np.asarray(m.coef_, dtype=float)],
        "sigma": float(np.sqrt(cov.to_numpy()[0, 0])),
    }
    if case["family"] == "negbin" and case["disp_terms"]:
        params["disp_beta"] = _table(m, "dispersion_effects_")
    elif case["family"] == "negbin":
        params["theta"] = float(m.theta_)
    elif case["family"] == "negbin1":
        params["phi"] = float(m.phi_)
    if case["zero_terms"]:
        params["zi_beta"] = _table(m, "zero_inflation_effects_")
    elif case["model"] == "hurdle":
        params["zi"] = float(m.zero_prob_)
    return params


def _count_case(case):
    """The case with ``X`` the count part's columns (for ``test_fuzz_truth._sanity``)."""
    return {**case, "X": case["X"][case["count_columns"]], "zero_inflation": False}


# -- the checks --------------------------------------------------------------------------


def _close(a, b, rel=1e-10):
    return a == b or abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def _block_report(out, m, case, caught):
    """``block_report``: the dispersion and the zero part as reported, everywhere."""
    out.checked.add("block_report")
    problems = []
    categories = [w.category for w in caught]
    data = truth_data(case)
    used = data.weights > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = m.confint(method="wald")
    fam = case["family"]
    if fam in ("negbin", "negbin1"):
        attr, bound = ("theta_", np.inf) if fam == "negbin" else ("phi_", 0.0)
        value = float(getattr(m, attr))
        flag = bool(getattr(m, attr[:-1] + "_at_boundary_"))
        out.numbers[attr] = value
        table = m.dispersion_effects_
        if case["disp_terms"]:
            coef = table["estimate"].to_numpy(dtype=float)
            rows = np.exp(data.disp_design @ coef)
            if not _close(value, float(np.mean(rows[used])), 1e-8):
                problems.append(f"{attr} {value} vs the rows' mean {np.mean(rows[used])}")
            if flag:
                problems.append(f"{attr[:-1]}_at_boundary_ set with a dispersion model")
            for name, est in zip(table.index, coef):
                row = f"disp~{name}"
                if row not in ci.index or not _close(float(ci.loc[row, "estimate"]), est):
                    problems.append(f"confint {row} vs dispersion_effects_ {est}")
        else:
            if np.isnan(value) or value < 0.0 or value == (0.0 if fam == "negbin" else np.inf):
                problems.append(f"{attr} = {value} outside the family's range")
            if flag != (value == bound):
                problems.append(f"{attr[:-1]}_at_boundary_ = {flag} with {attr} = {value}")
            if flag and not any(issubclass(c, OverdispersionWarning) for c in categories):
                problems.append(f"{attr} on its bound without an OverdispersionWarning")
            with np.errstate(divide="ignore"):
                log_value = np.log(value)
            est = float(table.loc["(Intercept)", "estimate"])
            if not _close(est, log_value):
                problems.append(f"dispersion_effects_ (Intercept) {est} vs log {attr} {log_value}")
    if case["model"] in ("hurdle", "zi"):
        attr = "zero_prob_" if case["model"] == "hurdle" else "zero_inflation_"
        value = float(getattr(m, attr))
        out.numbers[attr] = value
        table = m.zero_inflation_effects_
        coef = table["estimate"].to_numpy(dtype=float)
        if case["zero_terms"]:
            rows = special.expit(data.zi_design @ coef)
            if not _close(value, float(np.mean(rows[used])), 1e-8):
                problems.append(f"{attr} {value} vs the rows' mean {np.mean(rows[used])}")
            for name, est in zip(table.index, coef):
                row = f"zi~{name}"
                if row not in ci.index or not _close(float(ci.loc[row, "estimate"]), est):
                    problems.append(f"confint {row} vs zero_inflation_effects_ {est}")
        else:  # a constant hurdle: the share of zeros
            w = data.weights
            share = float(np.sum(w * (data.y == 0)) / np.sum(w))
            out.numbers["zero_share"] = share
            flag = bool(m.zero_prob_at_boundary_)
            se = np.sqrt(max(share * (1 - share), 1e-6) / np.sum(w))
            # (a fit that says it stopped short may be off it)
            if out.claims_optimum and not abs(value - share) <= TOL_SHARE * se:
                problems.append(f"zero_prob_ {value!r} vs the share of zeros {share!r}")
            if flag != (value == 0.0) or flag != (share == 0.0):
                problems.append(f"zero_prob_at_boundary_ {flag}, zero_prob_ {value}")
            if flag and not any(issubclass(c, ZeroInflationWarning) for c in categories):
                problems.append("zero_prob_ on its bound without a ZeroInflationWarning")
            if not flag and not _close(float(coef[0]), float(special.logit(value))):
                problems.append(f"zero_inflation_effects_ {coef[0]} vs logit zero_prob_")
            if not _close(float(ci.loc["zero_prob", "estimate"]), value):
                problems.append(f"confint zero_prob {ci.loc['zero_prob', 'estimate']}")
    for p in problems:
        out.fail("block_report", p)


def _against_truth(out, m, case, data):
    """``loglik_`` against the independent values; a better optimum nearby."""
    n_agq = case["params"].get("n_agq", 1)
    params = fitted_params(m, case)
    # (loglik_vs_integral not where the rule's own error is larger: the truncated counts'
    # plateau as mu -> 0, a posterior far from normal)
    check_same_value(out, m, params, data, n_agq, rule_error=True)
    check_nearby_optimum(out, params, data, n_agq, shown=_shown)


def _shown(params) -> str:
    return str({k: np.round(np.atleast_1d(v), 6).tolist() for k, v in params.items()})


def _reported_se_skip_reason(m, case):
    rows = ["(Intercept)", *case["count_columns"]]
    if [str(r) for r in m.fixed_effects_.index] != rows:
        return "fixed_effects_ rows not (Intercept) + the count part's columns"
    if not np.all(np.isfinite(m.fixed_effects_["std_error"].to_numpy(dtype=float))):
        return "a reported std_error not finite"
    return ""


def _se_skip_reason(out, m, case):
    params = fitted_params(m, case)
    if out.failures:
        return "another check failed"
    if not params["sigma"] > SE_MIN_SIGMA:
        return f"sigma below {SE_MIN_SIGMA:g}"
    if getattr(m, "theta_at_boundary_", False) or getattr(m, "phi_at_boundary_", False):
        return "dispersion on its bound"
    if case["model"] == "hurdle" and not case["zero_terms"] and m.zero_prob_at_boundary_:
        return "no zeros"
    if out.numbers.get("min_curvature", np.inf) < FLAT_LAPLACE:
        return "a nearly flat Laplace mode"
    return _reported_se_skip_reason(m, case)


def wald_variance_standard_errors(m, case) -> list[tuple[str, float]]:
    """The Wald SEs of the SD (``sd SE(log sd)``, from ``confint``), of the dispersion's
    and the zero part's coefficients on their log / logit scales (the tables'
    ``std_error``): truth's packed coordinates after beta, in order."""
    ci, z, out = wald_sd(m)
    if case["family"] in ("negbin", "negbin1"):
        t = m.dispersion_effects_
        out += [(f"disp~{r}", float(s)) for r, s in zip(t.index, t["std_error"])]
    if case["model"] in ("hurdle", "zi"):
        t = m.zero_inflation_effects_
        out += [(f"zi~{r}", float(s)) for r, s in zip(t.index, t["std_error"])]
    return out


def _standard_errors(out, m, case, data):
    """``se_value`` and ``se_variance`` against the independent Hessian."""
    reason = _se_skip_reason(out, m, case)
    wald = functools.partial(wald_variance_standard_errors, m, case)
    check_standard_errors(out, m, case, data, reason, fitted_params(m, case), wald)


def check_fit(case, m, caught) -> Outcome:
    """Every check of one fit (``m``, or the exception ``fit`` raised; its warnings)."""
    out = Outcome.of(case, FAILURE_KINDS, family=case["family"], model=model_name(case))
    warned = harness.read_fit(out, m, caught)
    if warned is None:
        return out
    _sanity(out, m, _count_case(case), warned)
    _block_report(out, m, case, caught)
    data = truth_data(case)
    _against_truth(out, m, case, data)
    if check_below_glm(out, m, data):
        out.checked.add("below_glm")
    if out.clean:
        _standard_errors(out, m, case, data)
    return out


def check_case(seed: int) -> Outcome:
    return harness.timed_check(lambda: make_hurdle_case(seed), check_fit)


def run_cases(seeds) -> list[Outcome]:
    return harness.run_cases(check_case, seeds)


# -- the table ------------------------------------------------------------------------------


def by_model(outcomes, checks, line):
    """The summary's lines per model (without ``+disp``): its families, data sets with a
    dispersion model, status counts and ``line(mine)`` (of the model's outcomes
    ``mine``), then the count of fits passed and failed of each of ``checks``."""
    lines = []
    for model in sorted({o.model.split("+")[0] for o in outcomes}):
        mine = [o for o in outcomes if o.model.split("+")[0] == model]
        families = Counter(o.family for o in mine)
        lines.append(
            f"  {model} ({', '.join(f'{k} {v}' for k, v in sorted(families.items()))}; "
            f"with a dispersion model {sum('+disp' in o.model for o in mine)}): "
            f"{harness.status_counts(mine)}; " + line(mine)
        )
        lines.append(harness.checks_line(mine, checks))
    return lines


def summary(outcomes: list[Outcome], max_seeds: int = 8) -> str:
    """Per model: data sets, fitted, clean; each check's count of fits checked and
    failed; failures by kind with example seeds; the standard errors compared."""
    title = "fuzz hurdle / truncated / ZI and dispersion models against the truth"
    lines = [harness.summary_header(title, outcomes)]

    def clean_and_claims(mine):
        clean = sum(o.clean for o in mine)
        claims = sum(o.claims_optimum for o in mine)
        return (
            f"converged without warning {clean}, with only a singular-fit or overdispersion "
            f"warning {claims - clean}"
        )

    lines += by_model(outcomes, CHECKS, clean_and_claims)
    lines.append(harness.by_scenario_line(outcomes))
    lines.append(harness.se_summary(outcomes, "dispersion"))
    lines += harness.failure_table(outcomes, FAILURE_KINDS, max_seeds)
    lines += harness.failed_lines(outcomes, lambda o: reproduction(o.seed))
    return "\n".join(lines)


# -- the truth's densities ------------------------------------------------------------------


def _one_group(y, family, **kw):
    n = len(y)
    return truth.GLMMData(np.ones((n, 1)), y, np.zeros(n, int), family, **kw)


def _scipy_count(family, y, mu, theta=None, phi=None):
    if family == "poisson":
        return stats.poisson.logpmf(y, mu)
    if family == "negbin":
        return stats.nbinom.logpmf(y, theta, theta / (theta + mu))
    return stats.nbinom.logpmf(y, mu / phi, 1.0 / (1.0 + phi))


@pytest.mark.parametrize("family", ["poisson", "negbin", "negbin1"])
def test_truth_hurdle_truncated_and_zi_densities_are_scipys(family):
    rng = np.random.default_rng(0)
    n = 200
    eta = rng.normal(0.5, 1.5, n)
    mu = np.exp(eta)
    y = rng.poisson(mu * rng.gamma(2.0, 0.5, n)).astype(float)
    z = rng.normal(size=n)
    Z = np.column_stack([np.ones(n), z])
    gamma = np.array([-0.4, 0.8])
    logit = Z @ gamma
    pi = special.expit(logit)
    theta = np.exp(0.3 + 0.5 * z) if family == "negbin" else None
    extra = {"negbin": {"disp_beta": np.array([0.3, 0.5])}, "negbin1": {"phi": 1.7}}
    kw = {"disp_design": Z} if family == "negbin" else {}
    f = _scipy_count(family, y, mu, theta, 1.7)
    f0 = _scipy_count(family, 0.0, mu, theta, 1.7)
    log_pos = np.log(-np.expm1(f0))
    cases = [
        ({"hurdle": True, "zi_design": Z}, {"zi_beta": gamma}),
        ({"truncated": True}, {}),
        ({"zero_inflation": True, "zi_design": Z}, {"zi_beta": gamma}),
        ({"hurdle": True}, {"zi": 0.3}),
    ]
    wants = [
        np.where(y == 0, np.log(pi), np.log1p(-pi) + f - log_pos),
        np.where(y >= 1, f - log_pos, -np.inf),
        np.where(y == 0, np.log(pi + (1 - pi) * np.exp(f0)), np.log1p(-pi) + f),
        np.where(y == 0, np.log(0.3), np.log(0.7) + f - log_pos),
    ]
    for (flags, params), want in zip(cases, wants):
        data = _one_group(y, family, **flags, **kw)
        got, d1, d2 = truth.row_logpdf(data, eta, {**params, **extra.get(family, {})})
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
        # derivatives against differences of the values
        p = {**params, **extra.get(family, {})}
        h = 1e-4
        up = truth.row_logpdf(data, eta + h, p)[0]
        down = truth.row_logpdf(data, eta - h, p)[0]
        ok = np.isfinite(got)  # (a zero-truncated model's zeros: -inf)
        up, down, at = up[ok], down[ok], got[ok]
        np.testing.assert_allclose(d1[ok], (up - down) / (2 * h), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(d2[ok], (up + down - 2 * at) / h**2, rtol=1e-4, atol=1e-5)


def test_truth_truncation_at_tiny_and_huge_means():
    # against 50-digit arithmetic: log(1 - f(0)) and its derivatives for means from 1e-300
    # to 1e12 (the truncated count's density tends to P(Y = 1) = 1 as mu -> 0)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    eta = np.array([-690.0, -40.0, -8.0, -1e-3, 0.0, 0.7, 5.0, 28.0])
    for family, theta in (("poisson", None), ("negbin", 0.4), ("negbin", 3e5), ("negbin1", 2.0)):

        def exact(e, family=family, theta=theta):
            mu = mpmath.e**e
            if family == "poisson":
                s = mu
            elif family == "negbin":
                s = theta * mpmath.log1p(mu / theta)
            else:
                s = mu * mpmath.log1p(2.0) / 2.0
            return mpmath.log(-mpmath.expm1(-s))

        if family == "poisson":
            rate = truth_hurdle.poisson_zero_rate(eta)
        elif family == "negbin":
            rate = truth_hurdle.negbin2_zero_rate(eta, theta)
        else:
            rate = truth_hurdle.negbin1_zero_rate(eta, 2.0)
        g, g1, g2 = truth_hurdle.positive_part(*rate)
        for i, e in enumerate(eta):
            em = mpmath.mpf(e)
            assert g[i] == pytest.approx(float(exact(em)), rel=1e-12, abs=1e-45)
            f1 = float(mpmath.diff(exact, em, 1))
            f2 = float(mpmath.diff(exact, em, 2))
            assert g1[i] == pytest.approx(f1, rel=1e-9, abs=1e-15), (family, e)
            assert g2[i] == pytest.approx(f2, rel=1e-7, abs=1e-15), (family, e)


@pytest.mark.parametrize("model", ["hurdle", "truncated"])
def test_truth_densities_are_the_librarys_on_a_grid(model):
    # the same numbers by two computations (the library's family module is used here
    # only, never by the truth): means from 1e-6 to 1e6, NB2 theta from 0.05 to 1e6
    from sklearn_glmm._engine.families import make_family

    rng = np.random.default_rng(1)
    n = 300
    eta = rng.uniform(-14.0, 14.0, n)
    y = np.maximum(rng.poisson(np.exp(eta)), 1).astype(float)
    if model == "hurdle":
        y[rng.random(n) < 0.3] = 0.0
    for fam_name, log_theta in (
        ("poisson", None),
        ("negbin", -3.0),
        ("negbin", 1.0),
        ("negbin", 14.0),
    ):
        fam = make_family(fam_name, False, hurdle=model == "hurdle", truncated=model == "truncated")
        extra = [] if log_theta is None else [log_theta]
        params = {} if log_theta is None else {"theta": float(np.exp(log_theta))}
        if model == "hurdle":
            extra.append(-0.4)
            params["zi"] = float(special.expit(-0.4))
        data = _one_group(y, fam_name, hurdle=model == "hurdle", truncated=model == "truncated")
        mine = truth.row_logpdf(data, eta, params)
        lib = fam.derivs(y, eta, None, None, np.array(extra, dtype=float))
        scale = np.maximum(1.0, np.abs(lib.loglik))
        np.testing.assert_allclose(mine[0] / scale, lib.loglik / scale, rtol=0, atol=1e-10)
        np.testing.assert_allclose(mine[1], lib.d1, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(-mine[2], lib.w, rtol=1e-7, atol=1e-9)


def test_truth_hurdle_integral_matches_quad_and_its_glm_factorises():
    rng = np.random.default_rng(2)
    n, G = 48, 6
    groups = np.repeat(np.arange(G), n // G)
    x, z = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    Z = np.column_stack([np.ones(n), z])
    eta = 0.4 + 0.3 * x + rng.normal(size=G)[groups]
    y = rng.poisson(np.exp(eta)).astype(float)
    y[groups == 0] = 0.0  # a group of zeros only: it does not read the random effect
    data = truth.GLMMData(X, y, groups, "negbin", hurdle=True, zi_design=Z, disp_design=Z)
    params = {
        "beta": np.array([0.3, 0.2]),
        "sigma": 1.1,
        "disp_beta": np.array([0.5, -0.3]),
        "zi_beta": np.array([-0.5, 0.4]),
    }
    brute = truth.marginal_loglik(params, data)
    assert brute == pytest.approx(truth.marginal_loglik_quad(params, data), abs=1e-8)
    assert truth.agq_loglik(params, data, 60) == pytest.approx(brute, abs=1e-7)
    # the nested GLM is the logistic regression of the zeros plus the truncated count
    # part's GLM
    zero = (y == 0).astype(float)
    logistic = optimize_logistic(Z, zero)
    counts = truth.GLMMData(X, y, groups, "negbin", truncated=True, disp_design=Z)
    positive = y > 0
    glm_count = truth.glm_loglik(counts.subset(positive))
    assert truth.glm_loglik(data) == pytest.approx(logistic + glm_count, abs=1e-6)
    back = truth.unpack(truth.pack(params, data), data)
    for k in params:
        np.testing.assert_allclose(back[k], params[k], rtol=1e-12)


def optimize_logistic(Z, t):
    """The maximised log-likelihood of a logistic regression (Newton)."""
    g = np.zeros(Z.shape[1])
    for _ in range(50):
        p = special.expit(Z @ g)
        g = g + np.linalg.solve(Z.T @ (Z * (p * (1 - p))[:, None]), Z.T @ (t - p))
    eta = Z @ g
    return float(np.sum(t * eta - np.logaddexp(0.0, eta)))


# -- the harness catches wrong fits -------------------------------------------------------


@functools.cache
def _clean_fit(seed):
    return harness.clean_fit(make_hurdle_case(seed), check_fit, summary)


_kinds = functools.partial(harness.failed_kinds, check_fit)


# a generated hurdle data set whose fit passes every check cleanly, its SEs compared
CLEAN_SEED = 100_000


def test_harness_catches_a_wrong_loglik_a_wrong_zero_part_and_a_wrong_se():
    case, m0, caught = _clean_fit(CLEAN_SEED)
    m = copy.copy(m0)
    m.converged_ = False
    m.loglik_ = m0.loglik_ + 2e-4
    assert _kinds(case, m, caught) == {"loglik_value"}
    m = copy.copy(m0)
    table = m0.fixed_effects_.copy()
    se = table["std_error"].to_numpy(dtype=float)
    table["std_error"] = se * np.r_[np.ones(len(se) - 1), 1.01]
    m.fixed_effects_ = table
    assert _kinds(case, m, caught) == {"se_value"}
    m = copy.copy(m0)
    m.zero_prob_ = m0.zero_prob_ + 0.01  # the zero part off the share of zeros
    assert {"loglik_value", "block_report"} <= _kinds(case, m, caught)


# -- fits against the truth ----------------------------------------------------------------


def test_fuzz_hurdle_truncated_and_dispersion_models_against_the_truth_fast_sample(capsys):
    outcomes = run_cases(FAST_SEEDS)
    text = harness.print_summary(outcomes, capsys, summary)
    assert not any(o.failures for o in outcomes), text


# Data sets that still fail, with the reason (the slow test fails on any other)
KNOWN_OPEN: dict[int, str] = {
    259: "zero-truncated NB1 with small means (counts nearly all 1; a conditional density "
    "nearly flat, min curvature 2e-3): the fit is reported not converged (scaled gradient "
    "3e4, negative curvature) and its loglik_ is the Laplace value at another mode than "
    "the independent one's highest, 0.117 below it",
}


@pytest.mark.slow
def test_fuzz_hurdle_truncated_and_dispersion_models_against_the_truth(capsys):
    harness.assert_only_known_failures(run_cases(SLOW_SEEDS), KNOWN_OPEN, capsys, summary)


def _main(argv):
    """``python tests/test_fuzz_truth_hurdle.py SEED [SEED ...]`` or ``--range START
    STOP``."""
    return harness.fuzz_command_line(argv, check_case, make_hurdle_case, summary)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
