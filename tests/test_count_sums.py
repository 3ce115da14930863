"""``psi_m(y + k) - psi_m(k)`` as finite sums for small whole counts
(``families/count_sums.py``), against 40-digit arithmetic."""

import numpy as np
import pytest
from scipy import special

from sklearn_glmm._engine.families.base import _polygamma_differences
from sklearn_glmm._engine.families.count_sums import SUM_MAX, polygamma_differences

mpmath = pytest.importorskip("mpmath")


def _truth(y, k):
    with mpmath.workdps(40):
        y, k = mpmath.mpf(float(y)), mpmath.mpf(float(k))
        return [float(mpmath.polygamma(m, y + k) - mpmath.polygamma(m, k)) for m in range(3)]


def _scipy(y, k):
    return [special.polygamma(m, y + k) - special.polygamma(m, k) for m in range(3)]


def _relative_errors(got, y, k):
    worst = np.zeros(3)
    for i in range(len(y)):
        t = _truth(y[i], k[i])
        for m in range(3):
            if t[m] == 0.0:
                assert got[m][i] == 0.0
            else:
                worst[m] = max(worst[m], abs(got[m][i] - t[m]) / abs(t[m]))
    return worst


def test_small_counts_are_summed_to_full_precision():
    rng = np.random.default_rng(0)
    y = rng.poisson(4.0, 200).astype(float)
    k = 10 ** rng.uniform(-5, 5, len(y))
    assert y.max() <= SUM_MAX
    got = polygamma_differences(y, k)
    assert np.all(_relative_errors(got, y, k) < 1e-13)
    # where SciPy's difference loses the digits its two values share, the sums do not
    assert np.max(_relative_errors(_scipy(y, k), y, k)) > 1e-11


def test_large_and_fractional_counts_take_scipys_differences():
    rng = np.random.default_rng(1)
    y = np.concatenate([rng.integers(300, 3000, 30), [2.5, 7.25], rng.integers(0, 3, 5)])
    y = y.astype(float)
    k = rng.uniform(0.5, 50.0, len(y))
    got = polygamma_differences(y, k)
    ref = _scipy(y, k)
    rows = np.arange(32)  # counts above SUM_MAX and fractional ones
    for m in range(3):  # the same expressions as SciPy's polygamma, to the last bit
        np.testing.assert_array_equal(got[m][rows], ref[m][rows])
    assert np.all(_relative_errors(got, y, k) < 1e-10)


def test_each_value_is_its_own_whatever_the_array():
    """Which way a value is computed depends on its own count alone: in a grid of
    sizes, a batch or a single row, the same number."""
    rng = np.random.default_rng(4)
    y = np.concatenate([rng.poisson(3.0, 30), rng.integers(60, 70, 10), [2.5]]).astype(float)
    k = rng.uniform(0.01, 100.0, (4, len(y)))
    grid = polygamma_differences(y, k, log_direct=lambda a, b: special.gammaln(a + b))
    for r in range(4):
        for i in range(len(y)):
            alone = polygamma_differences(
                y[i : i + 1], k[r, i : i + 1], log_direct=lambda a, b: special.gammaln(a + b)
            )
            assert [g[r, i] for g in grid] == [a[0] for a in alone]


def test_mixed_counts_shapes_and_missing_values():
    rng = np.random.default_rng(2)
    y = np.concatenate([rng.poisson(2.0, 60), rng.integers(100, 600, 4), [0, 0]]).astype(float)
    k = rng.uniform(0.01, 100.0, (3, len(y)))  # (nodes, rows), broadcast against y
    got = polygamma_differences(y, k)
    for m in range(3):
        assert got[m].shape == k.shape
    for node in range(3):
        errs = _relative_errors([g[node] for g in got], y, k[node])
        assert np.all(errs < 1e-12)
    y_nan = y.copy()
    y_nan[3] = np.nan
    got = polygamma_differences(y_nan, k[0])
    assert all(np.isnan(g[3]) for g in got)
    assert all(np.isfinite(np.delete(g, 3)).all() for g in got)


def test_large_sizes_keep_their_series():
    """Above ``base._LARGE_SIZE`` the differences come from the asymptotic series, as
    before; below it the sums and SciPy's, in one call (for six rows SciPy's but for
    the zero count: at k = 1e4 they lose 2e-12 to the digits the two values share)."""
    y = np.array([0.0, 1.0, 3.0, 40.0, 3.0, 1.0])
    k = np.array([1e7, 1e7, 1e9, 1e12, 2.0, 1e4])
    got = _polygamma_differences(y, k)
    errs = _relative_errors([g[:5] for g in got], y[:5], k[:5])
    assert np.all(errs < 1e-15)
    assert np.all(_relative_errors([g[5:] for g in got], y[5:], k[5:]) < 1e-11)


def test_log_gamma_ratio_with_the_same_sums():
    """``log Gamma(y + k) - log Gamma(k)`` beside the differences: the sums' logarithms
    on their rows, ``_lgamma_ratio``'s value elsewhere (large counts, sizes above 1e5
    by Stirling's series, sizes below 1e-6 at the size itself)."""
    from sklearn_glmm._engine.families.base import _lgamma_ratio, size_sums

    rng = np.random.default_rng(3)
    y = np.concatenate([rng.poisson(3.0, 200), rng.integers(300, 2000, 10), [0, 2, 5, 1]])
    y = y.astype(float)
    k = np.concatenate([10 ** rng.uniform(-3, 4, 210), [1e-9, 1e-8, 3e6, 1e12]])
    lg = _polygamma_differences(y, k, with_log=True)[3]
    lg_small = size_sums(y, k, with_log=True)[3]
    np.testing.assert_array_equal(lg_small[-2:], lg[-2:])
    ref = _lgamma_ratio(y, k)
    with mpmath.workdps(40):
        truth = np.array(
            [
                float(
                    mpmath.loggamma(mpmath.mpf(a) + mpmath.mpf(b)) - mpmath.loggamma(mpmath.mpf(b))
                )
                for a, b in zip(y, k)
            ]
        )
    scale = np.maximum(np.abs(truth), 1.0)
    err_ref = np.max(np.abs(ref - truth) / scale)  # (betaln's: 8.5e-13 at k = 7,600)
    for got in (lg, lg_small):
        err = np.max(np.abs(got - truth) / scale)
        assert err < 1e-12 and err <= err_ref


def test_psi3_differences_and_the_fourth_size_sum():
    """``psi_3(y + k) - psi_3(k)`` (summed for small whole counts, SciPy's beyond, the
    asymptotic series above a size of 1e5) and ``s4 = k D0 + 7 k^2 D1 + 6 k^3 D2 + k^4
    D3`` (a fourth derivative's terms; the series in ``k`` below 1e-6) against 40-digit
    arithmetic."""
    from sklearn_glmm._engine.families.base import _psi3_difference, size_sum_fourth

    rng = np.random.default_rng(8)
    y = np.concatenate([rng.poisson(4.0, 60), rng.integers(65, 3000, 20), [0, 1, 64, 65]])
    y = y.astype(float)
    k = 10 ** rng.uniform(-5, 7, len(y))
    d3, s4 = _psi3_difference(y, k), size_sum_fourth(y, k)
    with mpmath.workdps(60):
        for i in range(len(y)):
            Y, K = mpmath.mpf(float(y[i])), mpmath.mpf(float(k[i]))
            D = [mpmath.polygamma(m, Y + K) - mpmath.polygamma(m, K) for m in range(4)]
            if D[3] == 0:
                assert d3[i] == 0.0
            else:
                assert abs(d3[i] - float(D[3])) <= 1e-13 * abs(float(D[3]))
            # s4 is a sum of terms of both signs, each up to 6 y: its error is relative to
            # their size (SciPy's differences for counts above 64 lose the digits y / k
            # shares, about 1e-13 of D3 at y = 65, k = 3e4: 9e-11 of terms of 1,700)
            terms = [K * D[0], 7 * K**2 * D[1], 6 * K**3 * D[2], K**4 * D[3]]
            ref = float(sum(terms))
            assert abs(s4[i] - ref) <= 1e-12 * max(1.0, float(sum(abs(t) for t in terms)))
    # below the series' size: s4 = k c0 + 8 k^2 c1 (c0 = psi(y) + gamma, c1 = psi_1(y) - zeta(2))
    tiny = np.array([1e-9, 3e-7])
    got = size_sum_fourth(np.array([3.0, 3.0]), tiny)
    c0, c1 = special.digamma(3.0) + np.euler_gamma, special.polygamma(1, 3.0) - np.pi**2 / 6
    np.testing.assert_allclose(got, tiny * (c0 + 8.0 * tiny * c1), rtol=1e-12)
    assert size_sum_fourth(np.array([0.0]), np.array([1e-9]))[0] == 0.0
