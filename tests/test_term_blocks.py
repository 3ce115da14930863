"""Several random-effect terms for one grouping factor, each correlated within and
uncorrelated with the others: lme4's ``(1 + x | g) + (0 + z | g)``, a block-diagonal
covariance (``random_effects="(1 + x) + (0 + z)"``), against lme4
(``tests/fixtures/term_blocks``, the R script beside the data) and against the nested
models on either side of it (the diagonal and the unstructured covariance)."""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import PoissonGLMM
from sklearn_glmm._design import parse_term, theta_layout

HERE = Path(__file__).parent / "fixtures" / "term_blocks"
REFERENCE = json.loads((HERE / "blocks.json").read_text())["fits"]


def _glmer(formula, d, family):
    pytest.importorskip("formulaic")
    from sklearn_glmm.formula import glmer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (singular fits among them)
        return glmer(formula, d, family=family)


def _blocks_cov(ref) -> np.ndarray:
    """lme4's covariance of the factor's effects, its terms' blocks on the diagonal."""
    mats = [np.atleast_2d(np.asarray(b["cov"], dtype=float)) for b in ref["blocks"]]
    q = sum(len(m) for m in mats)
    out, k = np.zeros((q, q)), 0
    for m in mats:
        out[k : k + len(m), k : k + len(m)] = m
        k += len(m)
    return out


@pytest.mark.parametrize("ref", REFERENCE, ids=[r["formula"] for r in REFERENCE])
def test_several_correlated_terms_for_one_factor_reach_lme4s_optimum(ref):
    d = pd.read_csv(HERE / ref["data"])
    m = _glmer(ref["formula"], d, ref["family"])
    assert m.converged_
    assert m.loglik_ > ref["loglik"] - 1e-4
    fe = m.fixed_effects_
    assert list(fe.index) == ref["names"]
    np.testing.assert_allclose(fe["estimate"], ref["fixef"], atol=0.02 * fe["std_error"].max())
    names = [n for b in ref["blocks"] for n in np.atleast_1d(b["names"])]
    cov = m.random_effects_cov_["g"]
    assert list(cov.index) == names
    S = cov.to_numpy()
    lme4 = _blocks_cov(ref)
    np.testing.assert_allclose(S, lme4, atol=0.02 * np.max(np.diag(lme4)))
    # effects of two blocks are uncorrelated: zero, not estimated
    block = m.fit_result_.factors[0].term.block_index
    assert np.all(S[block[:, None] != block[None, :]] == 0.0)
    n_cov = sum(
        len(b) * (len(b) + 1) // 2 for b in map(np.atleast_1d, (b["names"] for b in ref["blocks"]))
    )
    assert len([p for p in m.confint(method="wald").index if p.endswith("|g")]) == n_cov


def test_blocks_lie_between_the_diagonal_and_the_unstructured_model():
    """The independent check: the block-diagonal covariance nests the diagonal one and is
    nested in the unstructured one over the same columns, so its maximum lies between
    theirs."""
    d = pd.read_csv(HERE / "d6.csv")
    fixed = "y ~ x1 + f + "
    diag = _glmer(fixed + "(1 + x1 + x2 || g)", d, "poisson")
    blocks = _glmer(fixed + "(1 + x1 | g) + (0 + x2 | g)", d, "poisson")
    full = _glmer(fixed + "(1 + x1 + x2 | g)", d, "poisson")
    assert diag.loglik_ - 1e-6 <= blocks.loglik_ <= full.loglik_ + 1e-6
    assert blocks.loglik_ > diag.loglik_ + 1e-3  # (the correlation of the first block counts)


TERM = "(1 + x2) + (0 + hi + lo)"


def test_the_estimators_term_and_the_formulas_are_one_model():
    d = pd.read_csv(HERE / "d3.csv")
    m = _glmer("y ~ x2 + (1 + x2 | g) + (0 + x2:cut_f | g)", d, "poisson")
    X = pd.DataFrame({"x2": d.x2, "hi": d.x2 * (d.cut_f == "hi"), "lo": d.x2 * (d.cut_f == "lo")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = PoissonGLMM(random_effects=TERM, random_only_columns=["hi", "lo"]).fit(
            X, d.y, groups=d.g
        )
    assert est.loglik_ == pytest.approx(m.loglik_, abs=1e-6)
    # units: the fit does not depend on them (x1000 on a slope of each block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaled = PoissonGLMM(random_effects=TERM, random_only_columns=["hi", "lo"]).fit(
            X * [1000.0, 1.0, 1000.0], d.y, groups=d.g
        )
    assert scaled.loglik_ == pytest.approx(est.loglik_, abs=1e-6)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X, groups=d.g), est.predict(X, groups=d.g))


def test_the_summary_lists_each_block_as_lme4_does():
    ref = REFERENCE[2]
    m = _glmer(ref["formula"], pd.read_csv(HERE / ref["data"]), ref["family"])
    from sklearn_glmm.summary import random_effects_table

    table = random_effects_table(m)
    assert list(table["Groups"]) == ["g", "g", "g.1", "g.1", "g.1"]
    last = table.iloc[4]  # lgTRUE: correlated with x2 and lgFALSE, its block's others
    assert np.isfinite(last["Corr1"]) and np.isfinite(last["Corr2"])
    assert np.isnan(last.get("Corr3", np.nan))
    text = str(m.summary())
    assert "(1 + x1 | g) + (0 + x2 + lg | g)" in text


@pytest.mark.parametrize(
    "text, names, blocks",
    [
        ("(1 + x) + (0 + z)", ["(Intercept)", "x", "z"], (2, 1)),
        ("(0 + a + b) + (1)", ["(Intercept)", "a", "b"], (1, 2)),
        ("(1 + x) + (0 + z + w)", ["(Intercept)", "x", "z", "w"], (2, 2)),
    ],
)
def test_a_sum_of_parenthesised_terms_is_blocks_with_the_intercepts_first(text, names, blocks):
    term = parse_term(text)
    assert term.names == names and term.blocks == blocks and not term.diagonal
    rows, cols = theta_layout(len(names), False, blocks)
    index = term.block_index
    assert np.all(index[rows] == index[cols])  # (no entry across blocks)
    assert len(rows) == sum(b * (b + 1) // 2 for b in blocks)


@pytest.mark.parametrize(
    "text, diagonal", [("(1) + (0 + x)", True), ("(1 + x)", False), ("(1 + x || ) + (0 + z)", True)]
)
def test_blocks_of_one_column_each_are_the_diagonal_term(text, diagonal):
    term = parse_term(text)
    assert term.blocks == () and term.diagonal == diagonal


@pytest.mark.parametrize(
    "text, match",
    [
        ("(1 + x) + (1 + z)", "intercept"),
        ("(1 + x) + (0 + x)", "more than one block"),
        ("(1 + x) + (ar1(day))", "plain terms"),
    ],
)
def test_a_column_in_two_blocks_or_a_structure_in_one_raises(text, match):
    with pytest.raises(ValueError, match=match):
        parse_term(text)


def test_blocks_are_refused_where_only_fixed_predictors_go():
    X = pd.DataFrame({"x": np.arange(8.0), "z": np.arange(8.0) % 3})
    with pytest.raises(ValueError, match="blocks of terms"):
        PoissonGLMM(zero_inflation="(1 + x) + (0 + z)").fit(
            X, np.arange(8) % 3, groups=np.arange(8) % 2
        )


DOUBLE = json.loads((HERE / "double_bar.json").read_text())["fits"]


@pytest.mark.parametrize("ref", DOUBLE, ids=[r["formula"] for r in DOUBLE])
def test_lme4s_double_bar_is_read_term_by_term(ref):
    """lme4 expands ``(lhs || g)`` term by term, each term's columns a correlated block
    (a factor's levels, ``poly(x1, 2)``'s two); the library had fitted one variance per
    column for ``poly()`` (another model, silently) and raised for a factor. The
    reference is the higher of lme4's fit and glmmTMB's of the expanded formula
    (``make.R``: lme4 stops below glmmTMB's on two)."""
    m = _glmer(ref["formula"], pd.read_csv(HERE / "d6.csv"), "poisson")
    assert m.loglik_ > ref["loglik"] - 1e-4
    assert m.fit_result_.layout.n_theta == ref["n_theta"]


@pytest.mark.parametrize("text", ["(1 + x) + (0 + z)", "(0 + a + b) + (1)", "1 + x", "diag(1 + x)"])
def test_a_power_studys_template_writes_the_term_back(text):
    from sklearn_glmm._power_spec import _term_text

    term = parse_term(text)
    assert parse_term(" + ".join(_term_text(term))) == term


@pytest.mark.parametrize(
    "piece, terms",
    [
        ("x * f", ["x", "f", "x:f"]),
        ("(x + z)^2", ["x", "z", "x:z"]),
        ("I(x^2)", ["I(x^2)"]),  # (operators inside a call are the call's)
        ("exp(x / 3)", ["exp(x / 3)"]),
    ],
)
def test_a_double_bars_summand_is_split_into_rs_terms(piece, terms):
    pytest.importorskip("formulaic")
    from sklearn_glmm._formula_parse import _r_terms

    assert _r_terms(piece) == terms


@pytest.mark.parametrize("seed", [3, 5])
def test_blocks_by_adaptive_quadrature_equal_the_integral(seed):
    """A block term fitted by adaptive quadrature (7 nodes per effect, three effects): its
    log-likelihood is the marginal likelihood at its estimates, by the dense truth's
    product rule of 25 nodes per effect over the block-diagonal covariance (within 4e-5
    on six such data sets)."""
    import truth_dense
    from fuzz_structures import make_blocks_case
    from test_fuzz_truth import truth_data

    case = make_blocks_case(seed)
    assert isinstance(case["groups"], pd.Series) and case["family"] == "binomial"
    est = case["estimator"](**case["params"], n_agq=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = est.fit(case["X"], case["y"], groups=case["groups"], **case["fit_params"])
    blocks = case["dense_terms"]["g"]["blocks"]
    codes = pd.factorize(np.asarray(case["groups"]))[0]
    term = truth_dense.Term(codes, np.column_stack([b["columns"] for b in blocks]), None)
    params = {
        "beta": np.r_[m.intercept_, np.asarray(m.coef_)],
        "cov": [m.random_effects_cov_["g"].to_numpy()],
    }
    exact = truth_dense.integral_loglik(params, truth_data(case), term, nodes=25)
    assert m.loglik_ == pytest.approx(exact, abs=1e-3)


PROFILE = json.loads((HERE / "profile.json").read_text())


@pytest.mark.parametrize("ref", PROFILE["fits"], ids=lambda r: r["formula"])
def test_profile_intervals_of_blocks_match_the_reference(ref):
    """Profile-likelihood intervals of a block-diagonal covariance's SDs and correlations
    (lme4's ``.sig01`` ... by block) and of the fixed effects, within 1 % of each
    interval's width of the reference: lme4's, except the lower limit of ``x1`` on
    ``d6.csv``, where lme4's profile stops at 0.0019, a point whose held-coefficient
    deviance rises by 3.04 only; glmmTMB's limit there (-0.0157) rises by 3.84, the
    cutoff (``make_profile.R`` keeps the limit nearer the cutoff)."""
    m = _glmer(ref["formula"], pd.read_csv(HERE / ref["data"]), ref["family"])
    assert m.loglik_ == pytest.approx(ref["loglik"], abs=1e-4)
    ci = m.confint(method="profile")
    ci = ci.rename(index=ci.attrs["lme4_names"])
    assert set(ref["profile"]) == set(ci.index)
    for name, (lo, hi) in ref["profile"].items():
        width = hi - lo
        assert ci.loc[name, "lower"] == pytest.approx(lo, abs=0.01 * width), name
        assert ci.loc[name, "upper"] == pytest.approx(hi, abs=0.01 * width), name
