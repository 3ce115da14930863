"""Shortcuts for common inputs give exactly what the general code gives."""

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import _group_columns, _validation
from sklearn_glmm._engine import rows as rows_module


def _aliased_by_loop(X, rel_tol=1e-7):
    return _validation._aliased_by_gram_schmidt(np.asarray(X, dtype=float), rel_tol)


@pytest.mark.parametrize("seed", range(40))
def test_aliased_columns_matches_gram_schmidt(seed):
    rng = np.random.default_rng(seed)
    n, p = int(rng.integers(3, 60)), int(rng.integers(1, 7))
    X = rng.normal(size=(n, p)) * 10.0 ** rng.uniform(-3, 3, size=p)
    X[:, 0] = 1.0
    kind = seed % 4
    if kind == 1 and p > 2:  # an exact combination
        X[:, -1] = 2.0 * X[:, 1] - X[:, 0]
    elif kind == 2 and p > 1:  # a constant column beside the intercept
        X[:, -1] = 3.0
    elif kind == 3 and p > 2:  # nearly aliased, just above and far below the threshold
        X[:, -1] = X[:, 1] + 10.0 ** rng.uniform(-12, -2) * rng.normal(size=n)
    assert _validation.aliased_columns(X) == _aliased_by_loop(X)


def test_aliased_columns_more_columns_than_rows():
    X = np.random.default_rng(0).normal(size=(3, 5))
    assert _validation.aliased_columns(X) == _aliased_by_loop(X) == [3, 4]


@pytest.mark.parametrize("dtype", ["str", "string", "string[python]"])
def test_string_groups_factorise_as_object_labels(dtype):
    rng = np.random.default_rng(1)
    words = np.array(["b", "a", "é", "Z", "10", "9", "a b", "ß", "\U0001f600", "ａ"])
    labels = pd.Series(words[rng.integers(0, len(words), 300)], dtype=dtype)
    codes, levels = _group_columns._factorize("g", labels.array, len(labels))
    codes_obj, levels_obj = _group_columns._factorize(
        "g", labels.to_numpy(dtype=object), len(labels)
    )
    np.testing.assert_array_equal(codes, codes_obj)
    assert list(levels) == list(levels_obj) == sorted(set(labels))
    assert levels.dtype == object and all(type(v) is str for v in levels)


def test_string_groups_with_missing_labels_raise():
    labels = pd.Series(["a", "b", None, "a"], dtype="string")
    with pytest.raises(ValueError, match="missing or infinite labels in 1 of 4"):
        _group_columns._factorize("g", labels.array, 4)


def test_gradient_right_hand_sides_at_once_equal_column_by_column(monkeypatch):
    """Small data form the mode equation's right-hand sides in one pass, large data
    column by column: the same gradient and the same predicted modes."""
    from sklearn_glmm import PoissonGLMM

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 8)
    t = np.tile(np.arange(8.0), 40)
    x = rng.normal(size=len(g))
    b = rng.normal(size=(40, 2)) * [0.5, 0.2]
    y = rng.poisson(np.exp(0.3 + 0.2 * x + b[g, 0] + b[g, 1] * t))
    X = pd.DataFrame({"x": x, "t": t})
    m = PoissonGLMM(random_effects="1 + t").fit(X, y, groups=g)
    obj, params = m.fit_result_.objective, m.fit_result_.params
    at = params + 0.01

    def gradient_and_step():
        obj._last_key = None
        obj.evaluate(at)
        grad = obj.gradient(at)
        return grad, obj._predictor[2].copy()

    g_once, J_once = gradient_and_step()
    monkeypatch.setattr(rows_module, "AT_ONCE_CELLS", 0)
    g_cols, J_cols = gradient_and_step()
    np.testing.assert_allclose(g_once, g_cols, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(J_once, J_cols, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "y",
    [
        np.array([0.0, 1.0, 1.0, 0.0, 1.0]),
        np.array([7, 3, 3, 7, 3]),
        np.array([True, False, True, True, False]),
        np.array([-1.0, 1.0, 1.0, -1.0, 1.0]),
        np.array([0.0, -0.0, 1.0, 0.0, 1.0]),
    ],
)
@pytest.mark.parametrize("pos_label", [None, "first"])
def test_two_numbers_label_like_np_unique(y, pos_label):
    """Numeric outcomes with two values skip the sort of every row: the same classes,
    their dtype, the modelled class and the 0/1 outcome as the general path."""
    from sklearn_glmm import BinomialGLMM
    from sklearn_glmm import estimators as est_module

    classes, inverse = np.unique(y, return_inverse=True)
    two = est_module._two_numbers(y)
    np.testing.assert_array_equal(two, classes)
    assert two.dtype == classes.dtype
    label = None if pos_label is None else classes[0]
    m = BinomialGLMM(pos_label=label)
    yv, _ = m._prepare_y(y, len(y))
    pos = 1 if label is None else 0
    np.testing.assert_array_equal(yv, (inverse == pos).astype(float))
    assert m.pos_label_ == classes[pos]
    np.testing.assert_array_equal(m.classes_, classes)


@pytest.mark.parametrize(
    "y", [np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0]), np.array([0.0, np.nan, 1.0])]
)
def test_two_numbers_leaves_other_outcomes_to_the_general_path(y):
    from sklearn_glmm import estimators as est_module

    assert est_module._two_numbers(y) is None


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_internal_design_is_the_centred_and_scaled_columns(fit_intercept):
    from sklearn_glmm import _scaling
    from sklearn_glmm.exceptions import RankDeficiencyWarning

    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(5.0, 3.0, 50), rng.integers(0, 2, 50), np.full(50, 4.0)])
    X_before = X.copy()
    if fit_intercept:
        with pytest.warns(RankDeficiencyWarning, match="'c'"):
            Xd, scaling = _scaling.scale_design(X, ["a", "b", "c"], fit_intercept)
    else:
        Xd, scaling = _scaling.scale_design(X, ["a", "b", "c"], fit_intercept)
    np.testing.assert_array_equal(X, X_before)
    assert Xd.flags.f_contiguous
    if fit_intercept:
        means, scales = X.mean(axis=0), X.std(axis=0)
        scales[2] = 1.0  # a constant column: dropped, as lme4 does
        np.testing.assert_allclose(scaling["means"], means, rtol=1e-14)
        np.testing.assert_allclose(scaling["scales"], scales, rtol=1e-14)
        np.testing.assert_allclose(Xd[:, 0], 1.0)
        np.testing.assert_allclose(Xd[:, 1:], ((X - means) / scales)[:, :2], atol=1e-14)
        assert scaling["dropped"] == [2]
    else:
        rms = np.sqrt(np.mean(X**2, axis=0))
        np.testing.assert_allclose(scaling["scales"], rms, rtol=1e-14)
        np.testing.assert_allclose(Xd, X / rms, atol=1e-14)


def test_count_tables_give_the_same_numbers_as_the_rows():
    # a function of the counts, evaluated once per count 0..max(y) and gathered by row,
    # is the function itself, bit for bit; other outcomes take the rows' path

    from sklearn_glmm._engine.families.base import _lgamma_ratio, _lgamma_ratio_rows, by_count
    from sklearn_glmm._engine.families.negbin import (
        _digamma_part_rows,
        _trigamma_part_rows,
        digamma_part,
        trigamma_part,
    )

    rng = np.random.default_rng(0)
    y = rng.negative_binomial(2, 0.2, 3000).astype(float)
    for theta in (0.01, 2.5, 3e4, 2e5, 1e9):  # both sides of the Stirling switch
        np.testing.assert_array_equal(_lgamma_ratio(y, theta), _lgamma_ratio_rows(y, theta))
        np.testing.assert_array_equal(digamma_part(y, theta), _digamma_part_rows(y, theta))
        np.testing.assert_array_equal(trigamma_part(y, theta), _trigamma_part_rows(y, theta))
    calls = []

    def spy(c):
        calls.append(len(c))
        return c * 2.0

    np.testing.assert_array_equal(by_count(y, spy), 2.0 * y)
    assert calls == [int(y.max()) + 1]  # once per count
    for other in (y + 0.5, np.r_[y, 1e7], y[:40], np.r_[y, -1.0], np.r_[y, np.nan]):
        calls.clear()
        out = by_count(other, spy)
        assert calls == [len(other)]  # the rows themselves
        np.testing.assert_array_equal(out, other * 2.0)
    # per-row theta (a dispersion model) is never tabled
    th = rng.uniform(1, 5, len(y))
    np.testing.assert_array_equal(_lgamma_ratio(y, th), _lgamma_ratio_rows(y, th))


def test_count_tables_of_runs_give_the_same_numbers_as_the_rows():
    # one theta per run of rows (a batch of replicates, each with its own): tabled per
    # count and run, bit for bit the rows' values; values changing from row to row,
    # fractional, negative, missing or huge counts and few rows take the rows' path

    from sklearn_glmm._engine.families.base import (
        _lgamma_ratio,
        _lgamma_ratio_rows,
        by_count_in_runs,
    )
    from sklearn_glmm._engine.families.negbin import _digamma_part_rows, digamma_part

    rng = np.random.default_rng(1)
    y = rng.negative_binomial(2, 0.2, 4000).astype(float)
    th = np.repeat([0.01, 2.5, 3e4, 2e5, 1e9, 2.5, 7.0, 30.0], 500)  # a value again later
    np.testing.assert_array_equal(_lgamma_ratio(y, th), _lgamma_ratio_rows(y, th))
    np.testing.assert_array_equal(digamma_part(y, th), _digamma_part_rows(y, th))
    calls = []

    def spy(c, v):
        calls.append(np.broadcast_shapes(np.shape(c), np.shape(v)))
        return c * v

    np.testing.assert_array_equal(by_count_in_runs(y, th, spy), y * th)
    assert calls == [(8, int(y.max()) + 1)]  # once per count and run
    wobbly = th.copy()
    wobbly[::2] += 1e-9
    cases = [
        (y, wobbly),
        (y + 0.5, th),
        (np.r_[y, 1e7], np.r_[th, 1.0]),
        (y[:40], th[:40]),
        (np.r_[y, -1.0], np.r_[th, 1.0]),
        (np.r_[y, np.nan], np.r_[th, 1.0]),
    ]
    for yy, vv in cases:
        calls.clear()
        out = by_count_in_runs(yy, vv, spy)
        assert calls == [(len(yy),)]  # the rows themselves
        np.testing.assert_array_equal(out, yy * vv)
    # a missing value is a run of its own, whose rows are missing as theirs would be
    nan_end = np.r_[th[:-1], np.nan]
    np.testing.assert_array_equal(by_count_in_runs(y, nan_end, spy), y * nan_end)


def test_negbin_memo_never_reads_a_changed_outcome_stale():
    # the family remembers log Gamma(y + theta) - log Gamma(theta) for one model's terms;
    # a caller's array changed in place between two calls gives the new values
    from sklearn_glmm._engine.families.negbin import NegativeBinomial2

    fam = NegativeBinomial2()
    rng = np.random.default_rng(1)
    y = rng.negative_binomial(3, 0.3, 500).astype(float)
    eta = np.full(len(y), np.log(y.mean()))
    extra = (np.log(3.0),)

    def fresh(values):
        return NegativeBinomial2().derivs(values, eta, None, None, extra).loglik

    first = fam.derivs(y, eta, None, None, extra, fam.constant(y, None)).loglik
    np.testing.assert_array_equal(first, fresh(y.copy()))
    y[:] = y[::-1] + 1.0  # the same array object, other counts, the same log theta
    for const in (fam.constant(y, None), None):
        got = fam.derivs(y, eta, None, None, extra, const).loglik
        np.testing.assert_array_equal(got, fresh(y.copy()))
    # one model's terms at one theta: the value is reused, not recomputed
    const = fam.constant(y, None)
    fam.derivs(y, eta, None, None, extra, const)
    kept = fam._memo[3]
    got = fam.derivs(y, eta + 0.1, None, None, extra, const).loglik
    assert fam._memo[3] is kept
    want = NegativeBinomial2().derivs(y.copy(), eta + 0.1, None, None, extra).loglik
    np.testing.assert_array_equal(got, want)
    # per-row log theta (a dispersion model, a batch of replicates): a new array of the
    # same values reuses it (the Poisson limit's rows make one at each call); the
    # caller's array changed in place, or other values, are computed again
    lt = np.linspace(0.5, 2.0, len(y))
    fam.derivs(y, eta, None, None, (lt,), const)
    kept = fam._memo[3]
    fam.derivs(y, eta, None, None, (lt.copy(),), const)
    assert fam._memo[3] is kept
    lt[:10] += 1.0
    got = fam.derivs(y, eta, None, None, (lt,), const).loglik
    assert fam._memo[3] is not kept
    want = NegativeBinomial2().derivs(y.copy(), eta, None, None, (lt.copy(),)).loglik
    np.testing.assert_array_equal(got, want)
