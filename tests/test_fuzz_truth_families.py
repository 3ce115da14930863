"""Fuzz NB1 and beta-binomial fits against the truth.

Data sets come from ``fuzz_family_cases.make_family_case(seed)``: ``NegBinGLMM(family=
"nbinom1")`` and ``BinomialGLMM(family="betabinomial")`` with one grouping factor and a
scalar random intercept (ordinary data, raw-scale predictors, tiny data, few groups, no
and strong overdispersion, many zeros, large counts, zero-inflated NB1, small and large
trials, rare successes; Laplace and AGQ with 2-25 nodes; offsets and prior weights).
Their log-likelihoods come from ``truth.py`` with the densities of ``truth_families.py``
(numpy and scipy only), and each fit gets the checks of ``test_fuzz_truth.py`` (same
names and tolerances):

- ``crash``, ``nonfinite``, ``absurd``, ``se_zero``, ``se_nan``: as there;
- ``loglik_value``: ``loglik_`` is the independent Laplace (or AGQ with the fit's nodes)
  log-likelihood at the reported parameters (``phi_`` included: 0 is NB1's Poisson limit,
  ``inf`` the beta-binomial's binomial limit) within 1e-4, whatever the warnings;
  ``flat_unwarned`` as there; ``loglik_vs_integral``: with 25 nodes or more, within 1e-3
  of the brute-force integral;
- ``not_optimal``, ``below_glm``: a fit that claims its optimum (``converged_`` and no
  warning but a singular-fit or overdispersion one) is no more than 0.01 below the best
  point Nelder-Mead (then Powell) finds from it on the independent objective (the
  integral for 25 nodes or more), nor below the nested GLM with phi free (its limit too);
- ``se_value``, ``se_variance``: a fit converged without any warning at an interior
  optimum has fixed-effect standard errors, and Wald standard errors of the SD (log
  scale) and of ``log phi`` (and the zero-inflation logit), within 1e-3 (relative) of the
  inverse Hessian of the independent objective it maximised, where that Hessian's own
  error estimate is below 5e-4;
- ``phi_report``: ``phi_`` is a number in the family's range, ``phi_at_boundary_`` is set
  exactly when ``phi_`` is the bound's value (NB1: 0, beta-binomial: ``inf``) and then
  with an ``OverdispersionWarning``, and ``dispersion_effects_`` and
  ``confint(method="wald")`` report the same value.

Run ``python -m pytest -m slow tests/test_fuzz_truth_families.py`` for
``FUZZ_FAMILY_CASES`` data sets (default 600) from ``FUZZ_FAMILY_START`` (0). One data set,
with every number its checks computed: ``PYTHONPATH=. python
tests/test_fuzz_truth_families.py SEED`` (``--range START STOP`` for the table).
"""

from __future__ import annotations

import copy
import functools
import sys
import warnings

import fuzz_harness as harness
import numpy as np
import pytest
import truth
import truth_families
from fuzz_family_cases import make_family_case
from fuzz_harness import (
    FLAT_LAPLACE,
    SE_MIN_SIGMA,
    TOL_OPTIMUM,
    Outcome,
)
from scipy import special, stats
from test_fuzz_truth import (
    _objective,
    _reported_se_skip_reason,
    _sanity,
    check_below_glm,
    check_nearby_optimum,
    check_same_value,
    check_standard_errors,
    logit_wald_se,
    truth_data,
    wald_sd,
)

from sklearn_glmm.exceptions import OverdispersionWarning

PHI_REPORT = (
    "phi_report",
    "phi_, phi_at_boundary_, the warning, dispersion_effects_ or confint disagree",
)
FAILURE_KINDS = harness.failure_kinds(
    *harness.SANITY_FIRST,
    "loglik_value",
    "flat_unwarned",
    "loglik_vs_integral",
    "not_optimal",
    "below_glm",
    "se_value",
    ("se_variance", "a Wald SE of the SD, log phi or ZI != the independent Hessian's"),
    PHI_REPORT,
)
# the checks each fit may get, for the table of checked / failed per family
CHECKS = (
    "sanity",
    "phi_report",
    "loglik_value",
    "loglik_vs_integral",
    "not_optimal",
    "below_glm",
    "se_value",
    "se_variance",
)
PHI_ROW = {"negbin1": "nb1_phi", "betabinomial": "betabinomial_phi"}
PHI_BOUND = {"negbin1": 0.0, "betabinomial": np.inf}  # the reported value on the bound
FAST_SEEDS = list(range(100_000, 100_004))  # two of each family
SLOW_SEEDS = harness.slow_seeds("FUZZ_FAMILY", 600)


def reproduction(seed: int) -> str:
    return harness.reproduction("test_fuzz_truth_families", seed)


def fitted_params(m, case) -> dict:
    """The fit's parameters for ``truth``, from its public attributes."""
    (cov,) = m.random_effects_cov_.values()
    params = {
        "beta": np.r_[m.intercept_, np.asarray(m.coef_, dtype=float)],
        "sigma": float(np.sqrt(cov.to_numpy()[0, 0])),
        "phi": float(m.phi_),
    }
    if case["zero_inflation"]:
        params["zi"] = float(m.zero_inflation_)
    return params


# -- the checks --------------------------------------------------------------------------


def _phi_report(out, m, case, caught):
    """``phi_report``: the dispersion as reported, in every place it is reported."""
    out.checked.add("phi_report")
    fam = case["family"]
    phi, bound = float(m.phi_), PHI_BOUND[fam]
    out.numbers["phi_"] = phi
    problems = []
    if np.isnan(phi) or phi < 0.0 or phi == (np.inf if fam == "negbin1" else 0.0):
        problems.append(f"phi_ = {phi} outside the family's range")
    at_bound = bool(m.phi_at_boundary_)
    if at_bound != (phi == bound):
        problems.append(f"phi_at_boundary_ = {at_bound} with phi_ = {phi}")
    if at_bound and not any(issubclass(w.category, OverdispersionWarning) for w in caught):
        problems.append("phi_ on its bound without an OverdispersionWarning")
    with np.errstate(divide="ignore"):
        log_phi = np.log(phi)
    table = float(m.dispersion_effects_.loc["(Intercept)", "estimate"])
    if not (table == log_phi or abs(table - log_phi) <= 1e-10 * max(1.0, abs(log_phi))):
        problems.append(f"dispersion_effects_ (Intercept) {table} vs log phi_ {log_phi}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = m.confint(method="wald")
    row = float(ci.loc[PHI_ROW[fam], "estimate"])
    if not (row == phi or abs(row - phi) <= 1e-10 * phi):
        problems.append(f"confint row {PHI_ROW[fam]} estimate {row} vs phi_ {phi}")
    for p in problems:
        out.fail("phi_report", p)


def _against_truth(out, m, case, data):
    """``loglik_`` against the independent values; a better optimum nearby."""
    n_agq = case["params"].get("n_agq", 1)
    params = fitted_params(m, case)
    check_same_value(out, m, params, data, n_agq)
    check_nearby_optimum(out, params, data, n_agq)


def _se_skip_reason(out, m, case):
    params = fitted_params(m, case)
    if out.failures:
        return "another check failed"
    if not params["sigma"] > SE_MIN_SIGMA:
        return f"sigma below {SE_MIN_SIGMA:g}"
    if m.phi_at_boundary_:
        return "phi on its bound"
    if case["zero_inflation"] and not params["zi"] > 1e-3:
        return "zero inflation below 1e-3"
    if out.numbers.get("min_curvature", np.inf) < FLAT_LAPLACE:
        return "a nearly flat Laplace mode"
    return _reported_se_skip_reason(m, case)


def wald_variance_standard_errors(m, case) -> list[tuple[str, float]]:
    """The Wald SEs of the SD (its interval symmetric on the log scale, ``SE(sd) =
    sd SE(log sd)``), of ``log phi`` and of the zero-inflation logit, from
    ``confint(method="wald")``: truth's packed coordinates after beta, in order."""
    ci, z, out = wald_sd(m)
    row = PHI_ROW[case["family"]]
    est, upper = ci.loc[row, "estimate"], ci.loc[row, "upper"]
    out.append((row, float(np.log(upper / est) / z)))
    if case["zero_inflation"]:
        out.append(("zi_prob", logit_wald_se(ci, "zi_prob", z)))
    return out


def _standard_errors(out, m, case, data):
    """``se_value`` and ``se_variance`` against the independent Hessian."""
    reason = _se_skip_reason(out, m, case)
    wald = functools.partial(wald_variance_standard_errors, m, case)
    check_standard_errors(out, m, case, data, reason, fitted_params(m, case), wald)


def check_fit(case, m, caught) -> Outcome:
    """Every check of one fit (``m``, or the exception ``fit`` raised; its warnings)."""
    out = Outcome.of(case, FAILURE_KINDS, family=case["family"])
    warned = harness.read_fit(out, m, caught)
    if warned is None:
        return out
    _sanity(out, m, case, warned)
    _phi_report(out, m, case, caught)
    data = truth_data(case)
    _against_truth(out, m, case, data)
    if check_below_glm(out, m, data):
        out.checked.add("below_glm")
    if out.clean:
        _standard_errors(out, m, case, data)
    return out


def check_case(seed: int) -> Outcome:
    return harness.timed_check(lambda: make_family_case(seed), check_fit)


def run_cases(seeds) -> list[Outcome]:
    return harness.run_cases(check_case, seeds)


# -- the table ------------------------------------------------------------------------------


def by_family(outcomes):
    """Each family's outcomes (NB1, then the beta-binomial, where there are any) and the
    summary's line of them: data sets, fitted, clean and ``phi_`` on its bound."""
    for fam in ("negbin1", "betabinomial"):
        mine = [o for o in outcomes if o.family == fam]
        if not mine:
            continue
        clean = sum(o.clean for o in mine)
        claims = sum(o.claims_optimum for o in mine)
        bound = sum(o.numbers.get("phi_") == PHI_BOUND[fam] for o in mine)
        line = (
            f"  {fam}: {len(mine)} data sets; {harness.status_counts(mine)}; converged "
            f"without warning {clean}, with only a singular-fit or overdispersion warning "
            f"{claims - clean}; phi_ on its bound {bound}"
        )
        yield mine, line


def summary(outcomes: list[Outcome], max_seeds: int = 8) -> str:
    """Per family: data sets, fitted, clean; each check's count of fits checked and
    failed; failures by kind with example seeds; the standard errors compared."""
    lines = [harness.summary_header("fuzz NB1 / beta-binomial against the truth", outcomes)]
    for mine, line in by_family(outcomes):
        lines += [line, harness.checks_line(mine, CHECKS), harness.by_scenario_line(mine, "    ")]
    lines.append(harness.se_summary(outcomes, "phi"))
    lines += harness.failure_table(outcomes, FAILURE_KINDS, max_seeds)
    lines += harness.failed_lines(outcomes, lambda o: reproduction(o.seed))
    return "\n".join(lines)


# -- the truth's densities ------------------------------------------------------------------


def _nb1_data(y):
    return truth.GLMMData(np.ones((len(y), 1)), y, np.zeros(len(y), int), "negbin1")


def _bb_data(y, t):
    return truth.GLMMData(np.ones((len(y), 1)), y, np.zeros(len(y), int), "betabinomial", t)


def test_truth_nb1_and_betabinomial_densities_are_scipys():
    # where scipy.stats' formulas are accurate (shapes below 1e4): nbinom(k, 1 / (1 + phi))
    # with k = mu / phi, and betabinom(t, mu phi, (1 - mu) phi)
    rng = np.random.default_rng(0)
    eta = rng.normal(1.0, 1.5, 300)
    phi = np.exp(rng.uniform(-3.0, 4.0, 300))
    mu = np.exp(eta)
    y = rng.poisson(rng.gamma(mu / phi, phi)).astype(float)
    for f in (0.3, 3.0):
        got = truth.row_logpdf(_nb1_data(y), eta, {"phi": f})[0]
        np.testing.assert_allclose(
            got, stats.nbinom.logpmf(y, mu / f, 1 / (1 + f)), rtol=1e-12, atol=1e-11
        )
    t = rng.integers(1, 40, 300).astype(float)
    p = special.expit(eta - 1.0)
    yb = rng.binomial(t.astype(int), p).astype(float)
    for f in (0.2, 5.0, 900.0):
        got = truth.row_logpdf(_bb_data(yb, t), eta - 1.0, {"phi": f})[0]
        want = stats.betabinom.logpmf(yb, t, p * f, (1 - p) * f)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-11)
    # the limits: Poisson at phi = 0, binomial at phi = inf
    np.testing.assert_allclose(
        truth.row_logpdf(_nb1_data(y), eta, {"phi": 0.0})[0],
        stats.poisson.logpmf(y, mu),
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        truth.row_logpdf(_bb_data(yb, t), eta - 1.0, {"phi": np.inf})[0],
        stats.binom.logpmf(yb, t, p),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "family,phi",
    [("negbin1", 1e-3), ("negbin1", 1e-12), ("negbin1", 30.0), ("betabinomial", 1e6)]
    + [("betabinomial", 1e15), ("betabinomial", 0.05)],
)
def test_truth_densities_and_derivatives_at_the_extremes(family, phi):
    # against 50-digit arithmetic, where scipy.stats is not accurate (its nbinom is 0.008
    # off at phi = 1e-12, its betabinom 0.66 at phi = 1e15); counts up to 2e4
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    L = mpmath.loggamma
    y = np.array([0.0, 1.0, 3.0, 40.0, 999.0, 1001.0, 2e4])
    if family == "negbin1":
        eta = np.log(y + 0.7) + np.array([0.2, -0.5, 1.0, 0.1, -0.05, 0.02, 0.01])

        def exact(i, e):
            k = mpmath.e**e / phi
            yi = mpmath.mpf(y[i])
            p = mpmath.mpf(phi)
            return L(yi + k) - L(k) - L(yi + 1) - k * mpmath.log1p(p) + yi * mpmath.log(p / (1 + p))

        data = _nb1_data(y)
    else:
        t = np.array([3.0, 1.0, 10.0, 50.0, 2000.0, 1500.0, 3e4])
        eta = special.logit((y + 0.5) / (t + 1.0)) + 0.3

        def exact(i, e):
            m = 1 / (1 + mpmath.e ** (-e))
            a, b = m * phi, (1 - m) * phi
            yi, ti = mpmath.mpf(y[i]), mpmath.mpf(t[i])
            return (
                L(ti + 1) - L(yi + 1) - L(ti - yi + 1) + L(yi + a) - L(a)
                + L(ti - yi + b) - L(b) - L(ti + phi) + L(mpmath.mpf(phi))
            )  # fmt: skip

        data = _bb_data(y, t)
    logp, d1, d2 = truth.row_logpdf(data, eta, {"phi": phi})
    for i in range(len(y)):
        e = mpmath.mpf(eta[i])
        assert logp[i] == pytest.approx(float(exact(i, e)), abs=1e-9)
        f1 = float(mpmath.diff(lambda v, i=i: exact(i, v), e, 1))
        f2 = float(mpmath.diff(lambda v, i=i: exact(i, v), e, 2))
        assert d1[i] == pytest.approx(f1, rel=1e-9, abs=1e-9)
        assert d2[i] == pytest.approx(f2, rel=1e-9, abs=1e-9)


def test_truth_densities_are_continuous_where_they_switch_to_series():
    # shapes of 1e3 (the switch to the asymptotic series) from both sides
    y = np.array([0.0, 1.0, 7.0, 500.0, 3e4])
    s = truth_families._SERIES_FROM
    below = np.nextafter(s, 0.0)
    for f in (truth_families.lgamma_ratio, lambda n, s: truth_families.psi_differences(n, s)[0]):
        np.testing.assert_allclose(f(y, below), f(y, s), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        truth_families.psi_differences(y, below)[1] * s**2,
        truth_families.psi_differences(y, s)[1] * s**2,
        rtol=1e-9,
        atol=1e-12,
    )


def test_truth_zero_inflated_nb1_mixes_a_point_mass_at_zero():
    y = np.array([0.0, 0.0, 2.0, 9.0])
    eta = np.array([0.3, -1.0, 0.5, 2.2])
    data = truth.GLMMData(np.ones((4, 1)), y, np.zeros(4, int), "negbin1", zero_inflation=True)
    logp, d1, d2 = truth.row_logpdf(data, eta, {"phi": 1.7, "zi": 0.2})
    mu = np.exp(eta)
    f = stats.nbinom.pmf(y, mu / 1.7, 1 / 2.7)
    np.testing.assert_allclose(logp, np.log(0.2 * (y == 0) + 0.8 * f), rtol=1e-12)
    h = 1e-5
    up = truth.row_logpdf(data, eta + h, {"phi": 1.7, "zi": 0.2})[0]
    down = truth.row_logpdf(data, eta - h, {"phi": 1.7, "zi": 0.2})[0]
    np.testing.assert_allclose(d1, (up - down) / (2 * h), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d2, (up + down - 2 * logp) / h**2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["negbin1", "betabinomial"])
def test_truth_densities_are_the_librarys_on_a_grid(family):
    # the same numbers by two computations (the library's family module is used here
    # only, never by the truth): phi from near one limit to the other, counts to 1e5.
    # Values within 1e-9 (relative to 1 or their size): at phi = e^14 the library's
    # beta-binomial is 1.4e-10 from 50-digit arithmetic in two rows (log-Gamma ratios of
    # shapes near 1e5 through betaln), the truth within 3e-14
    from sklearn_glmm._engine.families import make_family

    fam = make_family(family)
    rng = np.random.default_rng(1)
    for log_phi in (-12.0, -6.0, -1.0, 0.5, 3.0, 8.0, 14.0, 19.0):
        if family == "negbin1" and log_phi > 9.0:
            continue
        phi = np.exp(log_phi)
        if family == "negbin1":
            eta = rng.normal(1.0, 2.5, 200)
            mu = np.exp(eta)
            y = rng.poisson(rng.gamma(mu / phi, phi)).astype(float)
            t, data = None, _nb1_data(y)
        else:
            t = np.r_[rng.integers(1, 60, 190), rng.integers(1000, 100_000, 10)].astype(float)
            eta = rng.normal(0.0, 2.0, 200)
            y = rng.binomial(t.astype(np.int64), special.expit(eta)).astype(float)
            data = _bb_data(y, t)
        mine = truth.row_logpdf(data, eta, {"phi": phi})
        lib = fam.derivs(y, eta, t, None, np.array([log_phi]))
        scale = np.maximum(1.0, np.abs(lib.loglik))
        np.testing.assert_allclose(mine[0] / scale, lib.loglik / scale, rtol=0, atol=1e-9)
        for got, want in ((mine[1], lib.d1), (-mine[2], lib.w)):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("family", ["negbin1", "betabinomial"])
def test_truth_integral_for_the_new_families_matches_quad(family):
    rng = np.random.default_rng(2)
    n, G = 36, 6
    groups = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    eta = 0.3 + 0.4 * x + rng.normal(size=G)[groups]
    if family == "negbin1":
        y = rng.poisson(rng.gamma(np.exp(eta) / 2.0, 2.0)).astype(float)
        data = truth.GLMMData(X, y, groups, family, offset=rng.normal(0, 0.2, n))
        params = {"beta": np.array([0.2, 0.5]), "sigma": 1.3, "phi": 2.0}
    else:
        t = rng.integers(2, 15, n).astype(float)
        y = rng.binomial(t.astype(int), special.expit(eta)).astype(float)
        y[groups == 0] = t[groups == 0]  # a group with every trial a success
        data = truth.GLMMData(X, y, groups, family, t, weights=rng.choice([0.0, 1.0, 2.0], n))
        params = {"beta": np.array([0.2, 0.5]), "sigma": 2.5, "phi": 3.0}
    brute = truth.marginal_loglik(params, data)
    assert brute == pytest.approx(truth.marginal_loglik_quad(params, data), abs=1e-8)
    assert truth.agq_loglik(params, data, 60) == pytest.approx(brute, abs=1e-7)
    assert abs(truth.laplace_loglik(params, data) - brute) > 1e-4  # not all the same


@pytest.mark.parametrize("family,limit", [("negbin1", 0.0), ("betabinomial", np.inf)])
def test_truth_glm_and_packing_reach_the_family_limit(family, limit):
    rng = np.random.default_rng(3)
    n = 150
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    if family == "negbin1":
        y = rng.poisson(np.exp(1.0 + 0.3 * x)).astype(float)
        data, plain = truth.GLMMData(X, y, np.zeros(n, int), family), "poisson"
        t = None
    else:
        t = np.full(n, 20.0)
        y = rng.binomial(20, special.expit(0.2 + 0.3 * x)).astype(float)
        data, plain = truth.GLMMData(X, y, np.zeros(n, int), family, t), "binomial"
    limit_glm = truth.glm_loglik(truth.GLMMData(X, y, np.zeros(n, int), plain, t))
    assert truth.glm_loglik(data) >= limit_glm - 1e-9
    params = {"beta": np.array([1.0, 0.3]), "sigma": 0.4, "phi": limit}
    x0 = truth.pack(params, data)
    assert abs(x0[-1]) == 40.0
    # the packed limit is the limit within rounding
    at_limit = truth.laplace_loglik(params, data)
    assert truth.laplace_loglik(truth.unpack(x0, data), data) == pytest.approx(at_limit, abs=1e-9)
    back = truth.unpack(truth.pack({**params, "phi": 2.5}, data), data)
    assert back["phi"] == pytest.approx(2.5, rel=1e-12)


# -- the harness catches wrong fits -------------------------------------------------------


# generated data sets whose fits pass every check cleanly, with an interior phi and an
# SD compared by the standard errors (found by clean_case)
CLEAN_SEEDS = {"negbin1": 100_003, "betabinomial": 100_001}


@functools.cache
def _clean_fit(family):
    case = make_family_case(CLEAN_SEEDS[family])
    assert case["family"] == family
    return harness.clean_fit(case, check_fit, summary)


_kinds = functools.partial(harness.failed_kinds, check_fit)


@pytest.mark.parametrize("family", ["negbin1", "betabinomial"])
def test_harness_catches_a_wrong_loglik_and_a_wrong_phi(family):
    case, m0, caught = _clean_fit(family)
    m = copy.copy(m0)
    # (not converged: the value checks apply to every fit, and the optimum's are skipped)
    m.converged_ = False
    m.loglik_ = m0.loglik_ + 2e-4
    assert _kinds(case, m, caught) == {"loglik_value"}
    # phi_ off what loglik_ was evaluated at
    m.loglik_, m.phi_ = m0.loglik_, m0.phi_ * 1.05
    assert "loglik_value" in _kinds(case, m, caught)
    # phi_ reported on the bound without the flag and the warning
    m.phi_ = PHI_BOUND[family]
    assert "phi_report" in _kinds(case, m, caught)


@pytest.mark.parametrize("family", ["negbin1", "betabinomial"])
def test_harness_catches_a_fit_off_its_optimum_and_a_wrong_standard_error(family):
    case, m0, caught = _clean_fit(family)
    data = truth_data(case)
    m = copy.copy(m0)
    # phi off the optimum by a factor 2, with the log-likelihood of the new point
    m.phi_ = m0.phi_ * 2.0
    m.dispersion_effects_ = m0.dispersion_effects_.copy()
    m.dispersion_effects_.loc["(Intercept)", "estimate"] = np.log(m.phi_)
    m.confint = lambda method="wald", _m=m0: _scaled_phi_row(_m, case, 2.0)
    m.loglik_ = _objective(data, case["params"].get("n_agq", 1))(
        truth.pack(fitted_params(m, case), data)
    )
    assert m.loglik_ < m0.loglik_ - TOL_OPTIMUM
    kinds = _kinds(case, m, caught)
    assert "not_optimal" in kinds and kinds <= {"not_optimal", "below_glm"}
    # a fixed effect's standard error 1% off
    m = copy.copy(m0)
    table = m0.fixed_effects_.copy()
    se = table["std_error"].to_numpy(dtype=float)
    table["std_error"] = se * np.r_[np.ones(len(se) - 1), 1.01]
    m.fixed_effects_ = table
    assert _kinds(case, m, caught) == {"se_value"}


def _scaled_phi_row(m, case, factor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = m.confint(method="wald").copy()
    ci.loc[PHI_ROW[case["family"]]] *= factor
    return ci


# -- fits against the truth ----------------------------------------------------------------


def test_fuzz_nb1_and_betabinomial_against_the_truth_fast_sample(capsys):
    outcomes = run_cases(FAST_SEEDS)
    text = harness.print_summary(outcomes, capsys, summary)
    assert {o.family for o in outcomes} == {"negbin1", "betabinomial"}, text
    assert not any(o.failures for o in outcomes), text


# Data sets that still fail, with the reason (the slow test fails on any other)
KNOWN_OPEN: dict[int, str] = {}


@pytest.mark.slow
def test_fuzz_nb1_and_betabinomial_against_the_truth(capsys):
    harness.assert_only_known_failures(run_cases(SLOW_SEEDS), KNOWN_OPEN, capsys, summary)


def _main(argv):
    """``python tests/test_fuzz_truth_families.py SEED [SEED ...]`` or ``--range START
    STOP``."""
    return harness.fuzz_command_line(argv, check_case, make_family_case, summary)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
