"""OrdinalGLMM with random slopes, crossed and nested factors against an independent truth.

Data sets come from ``fuzz_ordinal_structure_cases.py`` (correlated and ``diag``
slopes, crossed and nested intercepts, tiny data, few groups, a nearly empty class,
a raw-scale slope predictor, weights and offsets, 3-6 classes, the four log-concave
links, flexible, equidistant and symmetric thresholds; a stream of slope fits by
adaptive quadrature with 25 nodes per dimension). Each fit is compared with
``truth_ordinal_dense.py`` (numpy and scipy only) at its reported parameters: the
thresholds at ``X = 0`` (``thresholds_``), ``coef_`` and every factor's
``random_effects_cov_``. Failure kinds:

- ``nonfinite``: a NaN or infinite estimate or log-likelihood without a warning;
- ``dense_value``: a Laplace fit's ``loglik_`` differs from the independent dense
  Laplace value by more than 1e-4 (whatever the warnings);
- ``agq_value``: a fit by quadrature differs from the truth's product rule of the same
  nodes by more than 1e-4 (whatever the warnings). A product rule depends on the basis
  of the effects; the truth places its nodes as the library documents it does: at each
  level's mode along the Cholesky factor of the curvature of the whitened effects, in
  the basis of slopes centred and scaled (:func:`library_basis`);
- ``dense_integral``: such a fit differs from the integral itself (a 40-node product
  rule at each level's mode) by more than 1e-3, where the integral is resolved (40 and
  60 nodes within 1e-4) and the fit gives no ``SeparationWarning`` (a level whose
  outcomes all sit in an end class has an integrand as wide as the prior, which no
  product rule of 25-80 nodes integrates: seeds 51 and 87, 25 nodes 3.6 and 2e-3 from
  40, 40 nodes 0.05 and 5e-3 from 60);
- ``ranef_value``: ``ranef_`` differs from the truth's conditional modes at the fit's
  parameters by more than 1e-4 of the effect's SD (whatever the warnings);
- ``not_optimal``: a fit reporting ``converged_ = True`` with no warning but a
  ``SingularFitWarning`` (a maximum on the boundary, which it claims) is more than
  0.01 below the best point ``truth.best_nearby`` finds from it on the truth (the
  Laplace value, or the product rule of the fit's nodes for quadrature);
- ``se_value``: a fit converged without any warning at an interior optimum (every SD
  above 1e-3, every correlation matrix's smallest eigenvalue above 1e-3) reports
  fixed-effect or threshold-parameter standard errors more than 1e-3 (relative) from
  those of the inverse Hessian of the truth's objective (Laplace fits; compared where
  the independent Hessian's error estimate is below 5e-4).

``python -m pytest tests/test_fuzz_truth_ordinal_structures.py`` runs the truth's
self-tests and a sample; ``-m slow`` runs ``FUZZ_ORDINAL_STRUCTURE_CASES`` data sets
(default 150) from ``FUZZ_ORDINAL_STRUCTURE_START`` (default 0) and prints a summary;
``python tests/test_fuzz_truth_ordinal_structures.py SEED`` prints one data set's numbers.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter

import fuzz_harness as harness
import numpy as np
import pandas as pd
import pytest
import truth
import truth_ordinal as T
import truth_ordinal_dense as D
from fuzz_harness import (
    NOT_ABOUT_THE_FIT,
    SE_NUMERICAL,
    TOL_INTEGRAL,
    TOL_OPTIMUM,
    TOL_SAME_APPROX,
    TOL_SE,
)
from fuzz_ordinal_structure_cases import make_ordinal_structure_case, make_ordinal_wide_case

from sklearn_glmm import OrdinalGLMM
from sklearn_glmm.exceptions import ApproximationWarning, SeparationWarning, SingularFitWarning

TOL_MODE = 1e-4  # ranef_ against the truth's modes, in units of each effect's SD
INTEGRAL_NODES = 40
# the warnings about the model an ordinal fit gives (no overdispersion here): a converged
# fit that gives them still claims its optimum (a Laplace fit far from quadrature's is
# still the Laplace objective's maximum)
ABOUT_THE_MODEL = (SingularFitWarning, ApproximationWarning)

FAST_SEEDS = (0, 1, 2, 5)
# three effects by quadrature with 5 nodes: the product rule in the library's basis
FAST_WIDE_SEEDS = (20,)
# seeds whose failures are understood and not the library's fault (seed -> reason)
KNOWN_OPEN: dict[int, str] = {}
WIDE_KNOWN_OPEN: dict[int, str] = {}


def fit_case(case):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = OrdinalGLMM(**case["params"])
        m.fit(case["X"], case["y"], groups=case["groups"], **case["fit_params"])
    warned = [w for w in caught if not issubclass(w.category, NOT_ABOUT_THE_FIT)]
    return m, warned


def truth_model(m, case):
    """``(rows, structure, params, J)`` for ``truth_ordinal_dense`` from the fit's public
    attributes."""
    groups = case["groups"]
    terms, covs = [], []
    for name, cov in m.random_effects_cov_.items():
        spec = case["dense_terms"][name]
        assert list(cov.index) == spec["names"], (name, list(cov.index), spec["names"])
        col = groups if isinstance(groups, pd.Series) else groups[name]
        codes = pd.factorize(np.asarray(col))[0]
        terms.append(D.Term(codes, spec["columns"], spec["structure"]))
        covs.append(cov.to_numpy(dtype=float))
    fp = case["fit_params"]
    rows = D.OrdinalRows(
        case["X"].to_numpy(dtype=float),
        case["y"],
        case["params"]["link"],
        fp.get("sample_weight"),
        fp.get("offset"),
    )
    J = D.threshold_map(case["params"]["threshold"], case["K"])
    params = {
        "beta": np.asarray(m.coef_, dtype=float),
        "alpha": m.thresholds_["estimate"].to_numpy(dtype=float),
        "cov": covs,
    }
    return rows, D.Structure(terms), params, J


def library_basis(term, rows):
    """The basis of the effects the library's quadrature rule is a product rule in (its
    documented internal scale, ``sklearn_glmm/_scaling.py``'s ``z_transform``): a
    correlated term with an intercept has its slope columns centred and divided by
    their SD, the intercept's column carrying the centring; a ``diag`` term has its
    slopes divided by their SD only (means and SDs over rows of positive weight,
    weighted). ``T`` with columns ``Z T`` and effects ``b = T b'``. (The library also
    decorrelates slopes that stay nearly collinear after that; the generators' slopes
    are not.)"""
    Z = term.columns
    w = rows.weights / rows.weights.sum()
    q = Z.shape[1]
    T = np.eye(q)
    centre = term.structure is None
    means = w @ Z if centre else np.zeros(q)
    sd = np.sqrt(w @ (Z - means) ** 2)
    for k in range(1, q):
        T[k, k] = 1.0 / sd[k]
        if centre:
            T[0, k] = -means[k] / sd[k]
    return T


def check_case(seed: int, standard_errors: bool = True, wide: bool = False) -> dict:
    """One data set (of ``make_ordinal_wide_case`` with ``wide``): its failures (kind ->
    detail) and the numbers computed."""
    case = (make_ordinal_wide_case if wide else make_ordinal_structure_case)(seed)
    t0 = time.perf_counter()
    m, warned = fit_case(case)
    nums = {"fit_seconds": time.perf_counter() - t0}
    out = {
        "seed": seed,
        "description": case["description"],
        "warned": sorted({w.category.__name__ for w in warned}),
        "converged": bool(m.converged_),
        "failures": {},
        "numbers": nums,
        "se_compared": 0,
    }
    fail = out["failures"]
    rows, structure, params, J = truth_model(m, case)
    finite = np.isfinite(m.loglik_) and np.all(np.isfinite(params["beta"]))
    finite = finite and np.all(np.isfinite(params["alpha"]))
    finite = finite and all(np.all(np.isfinite(c)) for c in params["cov"])
    if not finite:
        if not warned:
            fail["nonfinite"] = "non-finite estimates without a warning"
        return out
    # the reported thresholds are J times the reported threshold parameters
    a = m.threshold_coefficients_["estimate"].to_numpy(dtype=float)
    if not np.allclose(J @ a, params["alpha"], rtol=1e-9, atol=1e-9):
        fail["thresholds"] = f"thresholds_ {params['alpha']} vs J a {J @ a}"
    n_agq = case["params"]["n_agq"]
    nums["loglik"] = float(m.loglik_)
    if n_agq == 1:
        value = D.laplace_loglik(params, rows, structure)
        nums["truth_laplace"] = value
        if not abs(m.loglik_ - value) <= TOL_SAME_APPROX:
            fail["dense_value"] = f"loglik_ {m.loglik_:.8f} vs dense Laplace {value:.8f}"
        fun = D.PackedLaplace(rows, structure, J)
    else:
        term = structure.terms[0]
        basis = library_basis(term, rows)
        same = D.integral_loglik(params, rows, term, n_agq, basis)
        nums["truth_same_rule"] = same
        if not abs(m.loglik_ - same) <= TOL_SAME_APPROX:
            fail["agq_value"] = f"loglik_ {m.loglik_:.8f} vs the same rule {same:.8f}"
        if n_agq >= 25:  # fewer nodes: the rule's own error, which agq_value leaves out
            i40 = D.integral_loglik(params, rows, term, INTEGRAL_NODES)
            i60 = D.integral_loglik(params, rows, term, 60)
            nums["truth_integral"], nums["truth_integral_60"] = i40, i60
            separated = any(issubclass(w.category, SeparationWarning) for w in warned)
            resolved = abs(i40 - i60) <= TOL_SAME_APPROX
            nums["integral_skip"] = (
                "" if resolved and not separated else "separation" if separated else "unresolved"
            )
        if nums.get("integral_skip") == "" and not abs(m.loglik_ - i40) <= TOL_INTEGRAL:
            fail["dense_integral"] = f"loglik_ {m.loglik_:.8f} vs integral {i40:.8f}"

        def fun(x):  # the fit's own objective
            q = D.unpack(x, rows.X.shape[1], structure, J)
            return D.integral_loglik(q, rows, term, n_agq, basis)

    _modes(out, m, case, params, rows, structure)
    model_only = all(issubclass(w.category, ABOUT_THE_MODEL) for w in warned)
    if not (m.converged_ and model_only):
        return out
    x0 = D.pack(params, structure, J)
    nearby = truth.best_nearby(fun, x0)
    nums["at_fit"], nums["best_nearby"] = nearby.start_value, nearby.value
    if nearby.value > nearby.start_value + TOL_OPTIMUM or not np.isfinite(nearby.start_value):
        better = D.unpack(nearby.x, rows.X.shape[1], structure, J)
        fail["not_optimal"] = (
            f"{nearby.value:.6f} nearby vs {nearby.start_value:.6f} at the fit "
            f"(beta {np.round(better['beta'], 5)}, alpha {np.round(better['alpha'], 5)}, "
            f"cov {[np.round(c, 5).tolist() for c in better['cov']]})"
        )
    skip = "warned" if warned else harness.covariance_skip_reason(params["cov"])
    if n_agq > 1:
        skip = skip or "quadrature"
    if not standard_errors:
        skip = skip or "not asked"
    nums["se_skip"] = skip
    if skip or fail:
        return out
    _standard_errors(out, m, fun, params, rows, structure, J)
    return out


def _modes(out, m, case, params, rows, structure):
    """``ranef_`` against the truth's conditional modes at the fit's parameters."""
    modes = D.conditional_modes(params, rows, structure)
    if modes is None:
        out["failures"]["ranef_value"] = "the truth found no mode"
        return
    groups = case["groups"]
    worst = 0.0
    for (name, table), b in zip(m.ranef_.items(), modes):
        col = groups if isinstance(groups, pd.Series) else groups[name]
        levels = pd.factorize(np.asarray(col))[1]
        reported = table.loc[list(levels)].to_numpy(dtype=float)
        sd = np.sqrt(np.diag(params["cov"][list(m.ranef_).index(name)]))
        # relative to the effect's own SD (a mode is never far beyond a few SDs)
        gap = np.abs(reported - b) / np.maximum(sd, 1e-300)[None, :]
        gap = np.where(sd[None, :] > 0, gap, np.abs(reported - b))
        worst = max(worst, float(np.max(gap)))
    out["numbers"]["ranef_gap"] = worst
    if not worst <= TOL_MODE:
        out["failures"]["ranef_value"] = f"ranef_ off the truth's modes by {worst:.3g} SDs"


def _standard_errors(out, m, fun, params, rows, structure, J):
    p = rows.X.shape[1]
    packing = (
        lambda q: D.pack(q, structure, J),
        lambda x: D.unpack(x, p, structure, J),
    )
    found = truth.fixed_effect_standard_errors(
        fun,
        params,
        rows,
        max_error=SE_NUMERICAL,
        packing=packing,
        cap=D.pack_caps(params, structure, J),
    )
    nums = out["numbers"]
    if found.se is None or not found.error <= SE_NUMERICAL:
        nums["se_skip"] = found.reason or f"independent error {found.error:.2g}"
        return
    reported = m.fixed_effects_["std_error"].to_numpy(dtype=float)
    rel = np.abs(reported / found.se - 1.0)
    nums["se_rel"] = float(np.max(rel))
    out["se_compared"] += len(rel)
    bad = rel > TOL_SE
    na = J.shape[1]
    reported_a = m.threshold_coefficients_["std_error"].to_numpy(dtype=float)
    good_a = found.other_error[:na] <= SE_NUMERICAL
    rel_a = np.abs(reported_a / found.other_se[:na] - 1.0)
    if np.any(good_a):
        nums["se_rel_thresholds"] = float(np.max(rel_a[good_a]))
        out["se_compared"] += int(np.sum(good_a))
    bad_a = good_a & (rel_a > TOL_SE)
    if np.any(bad) or np.any(bad_a):
        out["failures"]["se_value"] = (
            f"coef SEs {reported} vs {found.se}; threshold SEs {reported_a} vs "
            f"{found.other_se[:na]}"
        )


# -- the truth's own tests ----------------------------------------------------------------


@pytest.mark.parametrize("link", D.LINKS)
def test_row_derivatives_against_differences(link):
    """Analytic d/deta and d2/deta2 of log P(Y = y) against five-point differences of
    truth_ordinal.row_logp, from the centre out to log-probabilities of -1e9."""
    alpha = np.array([-1.0, 0.3, 0.35, 2.0])
    y = np.repeat(np.arange(5), 241)
    eta = np.tile(np.linspace(-30.0, 30.0, 241), 5)
    logp, d1, d2 = D.row_derivatives(y, eta, alpha, link)
    np.testing.assert_array_equal(logp, T.row_logp(y, eta, alpha, link))
    h = 1e-4
    f = [T.row_logp(y, eta + k * h, alpha, link) for k in (-2, -1, 0, 1, 2)]
    n1 = (f[0] - 8 * f[1] + 8 * f[3] - f[4]) / (12 * h)
    n2 = (-f[0] + 16 * f[1] - 30 * f[2] + 16 * f[3] - f[4]) / (12 * h * h)
    # the differences' own rounding: 1e-16 of |log p| (up to 2e9) over h and h^2
    noise = 1e-15 * (1.0 + np.abs(logp))
    assert np.all(np.abs(n1 - d1) <= 1e-6 * (1.0 + np.abs(d1)) + noise / h)
    assert np.all(np.abs(n2 - d2) <= 1e-5 * (1.0 + np.abs(d2)) + 30 * noise / h**2)
    assert np.all(d2 <= 0.0)  # log-concave links: every row concave in eta (0: underflow)


def _scalar_data(link, sd, seed=1, G=12, per=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), per)
    n = len(g)
    X = rng.normal(size=(n, 2))
    lat = X @ [0.5, -0.3] + rng.normal(0, sd, G)[g] + rng.logistic(size=n)
    y = np.digitize(lat, [-1.0, 0.3, 1.5])
    return X, y, g


@pytest.mark.parametrize("link", D.LINKS)
@pytest.mark.parametrize("sd", [0.3, 3.0])
def test_dense_truth_equals_the_scalar_truth(link, sd):
    """One random intercept: the dense Laplace equals truth_ordinal's level-by-level one,
    the product rule its trapezoid integral."""
    X, y, g = _scalar_data(link, sd)
    beta, alpha = np.array([0.4, -0.2]), np.array([-1.1, 0.2, 1.4])
    scalar = T.OrdinalData(X, y, g, link)
    p1 = dict(beta=beta, alpha=alpha, sigma=sd)
    rows = D.OrdinalRows(X, y, link)
    S = D.Structure([D.Term(g, np.ones((len(g), 1)))])
    p2 = dict(beta=beta, alpha=alpha, cov=[np.array([[sd**2]])])
    assert D.laplace_loglik(p2, rows, S) == pytest.approx(T.laplace_loglik(p1, scalar), abs=1e-8)
    integral = D.integral_loglik(p2, rows, S.terms[0], nodes=60)
    assert integral == pytest.approx(T.marginal_loglik(p1, scalar), abs=1e-6)


def test_weights_and_offset_are_repeated_rows_and_a_shift():
    X, y, g = _scalar_data("probit", 1.0)
    rows = D.OrdinalRows(X, y, "probit", weights=np.tile([1.0, 2.0, 0.0], len(y) // 3))
    rep = np.repeat(np.arange(len(y)), np.tile([1, 2, 0], len(y) // 3))
    S = D.Structure([D.Term(g, np.column_stack([np.ones(len(y)), X[:, 0]]))])
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    params = dict(beta=np.array([0.4, -0.2]), alpha=np.array([-1.1, 0.2, 1.4]), cov=[cov])
    S_rep = D.Structure([D.Term(g[rep], S.terms[0].columns[rep])])
    assert D.laplace_loglik(params, rows, S) == pytest.approx(
        D.laplace_loglik(params, D.OrdinalRows(X[rep], y[rep], "probit"), S_rep), abs=1e-9
    )
    shifted = D.OrdinalRows(X, y, "probit", offset=np.full(len(y), 0.7))
    moved = dict(params, alpha=params["alpha"] - 0.7)
    plain = D.OrdinalRows(X, y, "probit")
    assert D.laplace_loglik(params, shifted, S) == pytest.approx(
        D.laplace_loglik(moved, plain, S), abs=1e-9
    )


def test_laplace_approaches_the_integral_on_informative_data():
    """An intercept and slope per level: the Laplace value's error falls as 1/n per
    level (60 rows: 0.04 from the integral over 4 levels; 960 rows: below 5e-3), and
    the 40-node product rule equals a 60-node one to 1e-7."""
    gaps = []
    for per in (60, 960):
        rng = np.random.default_rng(3)
        G = 4
        g = np.repeat(np.arange(G), per)
        n = len(g)
        x = rng.normal(size=n)
        cov = np.array([[0.8, 0.2], [0.2, 0.3]])
        b = rng.multivariate_normal([0, 0], cov, G)
        lat = 0.5 * x + b[g, 0] + b[g, 1] * x + rng.logistic(size=n)
        y = np.digitize(lat, [-1.0, 0.0, 1.2])
        rows = D.OrdinalRows(x[:, None], y, "logit")
        term = D.Term(g, np.column_stack([np.ones(n), x]))
        params = dict(beta=np.array([0.5]), alpha=np.array([-1.0, 0.0, 1.2]), cov=[cov])
        lap = D.laplace_loglik(params, rows, D.Structure([term]))
        i40 = D.integral_loglik(params, rows, term, 40)
        if per == 60:
            assert abs(i40 - D.integral_loglik(params, rows, term, 60)) < 1e-7
        gaps.append(abs(lap - i40))
    assert gaps[1] < 5e-3 and gaps[1] < gaps[0] / 6


def test_crossed_truth_reduces_at_a_zero_variance():
    """A crossed factor of zero variance leaves the one-factor model."""
    X, y, g = _scalar_data("cloglog", 1.0)
    h = np.arange(len(y)) % 5
    params = dict(beta=np.array([0.4, -0.2]), alpha=np.array([-1.1, 0.2, 1.4]))
    ones = np.ones((len(y), 1))
    rows = D.OrdinalRows(X, y, "cloglog")
    both = D.Structure([D.Term(g, ones), D.Term(h, ones)])
    one = D.Structure([D.Term(g, ones)])
    a = D.laplace_loglik({**params, "cov": [np.eye(1), np.zeros((1, 1))]}, rows, both)
    assert a == pytest.approx(D.laplace_loglik({**params, "cov": [np.eye(1)]}, rows, one))


def test_packing_round_trips():
    case = make_ordinal_structure_case(0)
    J = D.threshold_map("symmetric", 6)
    assert np.all(np.diff(J @ np.array([0.0, 0.5, 1.0, 2.0])[: J.shape[1]]) >= 0)
    S = D.Structure(
        [D.Term(np.zeros(3, int), np.ones((3, 2))), D.Term(np.zeros(3, int), np.ones((3, 1)))]
    )
    params = dict(
        beta=np.array([0.3]),
        alpha=J @ np.array([0.1, 0.6, 1.5]),
        cov=[np.array([[1.0, 0.2], [0.2, 0.4]]), np.array([[0.25]])],
    )
    back = D.unpack(D.pack(params, S, J), 1, S, J)
    np.testing.assert_allclose(back["alpha"], params["alpha"])
    for c0, c1 in zip(params["cov"], back["cov"]):
        np.testing.assert_allclose(c0, c1)
    assert case["K"] >= 3


# -- the fits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_ordinal_structures_against_the_truth(seed):
    out = check_case(seed)
    assert not out["failures"], out


@pytest.mark.parametrize("seed", FAST_WIDE_SEEDS)
def test_ordinal_three_effects_against_the_truth(seed):
    out = check_case(seed, wide=True)
    assert not out["failures"], out
    assert "truth_same_rule" in out["numbers"]


def run_range(seeds, standard_errors=True, wide=False):
    results = []
    for seed in seeds:
        try:
            results.append(check_case(seed, standard_errors, wide))
        except Exception as exc:  # a crash of the fit or of the harness, counted
            results.append({"seed": seed, "failures": {"crash": repr(exc)}, "numbers": {}})
    return results


def summary(results) -> str:
    kinds = Counter()
    examples = {}
    for r in results:
        for k in r["failures"]:
            kinds[k] += 1
            examples.setdefault(k, []).append(r["seed"])
    fitted = sum(1 for r in results if "loglik" in r.get("numbers", {}))
    clean = sum(1 for r in results if r.get("converged") and not r.get("warned"))
    optimum = sum(1 for r in results if "best_nearby" in r.get("numbers", {}))
    se_fits = sum(1 for r in results if "se_rel" in r.get("numbers", {}))
    se_n = sum(r.get("se_compared", 0) for r in results)
    mode_max = max([r["numbers"].get("ranef_gap", 0.0) for r in results] or [0])
    se_max = max([r["numbers"]["se_rel"] for r in results if "se_rel" in r["numbers"]] or [0])
    scen = Counter(r.get("description", "?").split()[0] for r in results)
    warned = Counter(w for r in results for w in r.get("warned", []))
    skips = Counter(r["numbers"].get("integral_skip", "-") for r in results if r.get("numbers"))
    unconverged = sum(1 for r in results if r.get("converged") is False)
    lines = [
        f"data sets {len(results)}; fitted {fitted}; converged without warning {clean}; "
        f"optimum checked {optimum}; largest ranef_ gap {mode_max:.2g} SD; "
        f"SE fits {se_fits} ({se_n} SEs, largest rel. {se_max:.2g})",
        "scenarios: " + ", ".join(f"{k} {v}" for k, v in sorted(scen.items())),
        f"not converged {unconverged}; warnings: "
        + ", ".join(f"{k} {v}" for k, v in sorted(warned.items()))
        + f"; quadrature fits against the integral {skips['']}, skipped: separation "
        f"{skips['separation']}, unresolved {skips['unresolved']}",
    ]
    for k, v in sorted(kinds.items()):
        lines.append(f"  {k}: {v} (seeds {examples[k][:10]})")
    return "\n".join(lines)


@pytest.mark.slow
def test_ordinal_structures_fuzz_against_the_truth():
    start = int(os.environ.get("FUZZ_ORDINAL_STRUCTURE_START", "0"))
    n = int(os.environ.get("FUZZ_ORDINAL_STRUCTURE_CASES", "150"))
    results = run_range(range(start, start + n))
    print("\n" + summary(results))
    bad = {r["seed"]: r for r in results if r["failures"] and r["seed"] not in KNOWN_OPEN}
    assert not bad, {s: (r.get("description"), r["failures"]) for s, r in bad.items()}


@pytest.mark.slow
def test_ordinal_three_effects_fuzz_against_the_truth():
    """``make_ordinal_wide_case``: three effects per level, Laplace or quadrature with
    5 or 7 nodes per dimension (``FUZZ_ORDINAL_WIDE_CASES``, default 40)."""
    n = int(os.environ.get("FUZZ_ORDINAL_WIDE_CASES", "40"))
    results = run_range(range(n), wide=True)
    print("\n" + summary(results))
    bad = {r["seed"]: r for r in results if r["failures"] and r["seed"] not in WIDE_KNOWN_OPEN}
    assert not bad, {s: (r.get("description"), r["failures"]) for s, r in bad.items()}


if __name__ == "__main__":  # one data set, or a range with a summary
    import sys

    wide = "--wide" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--wide"]
    if len(args) == 1:
        out = check_case(int(args[0]), wide=wide)
        for key, val in out.items():
            print(f"{key}: {val}")
    else:
        res = run_range(range(int(args[0]), int(args[1])), wide=wide)
        for r in res:
            if r["failures"]:
                print(r["seed"], r.get("description"), r["failures"])
        print(summary(res))
