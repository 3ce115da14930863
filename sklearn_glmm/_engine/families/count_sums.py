"""Polygamma and log-gamma functions at a count apart, as finite sums.

For a whole count ``y >= 0`` and ``k > 0``,

    psi(y + k) - psi(k) = sum_j 1 / (k + j),
    psi_1(y + k) - psi_1(k) = -sum_j 1 / (k + j)^2,
    psi_2(y + k) - psi_2(k) = 2 sum_j 1 / (k + j)^3,
    log Gamma(y + k) - log Gamma(k) = sum_j log(k + j)        (j = 0, ..., y - 1):

the polygammas' sums of terms of one sign, without the cancellation of two close values
(the differences of SciPy's functions lose the digits the two share), and all of them
cheap where the counts are small, as count outcomes mostly are. SciPy's trigamma and
tetragamma (the Hurwitz zeta function) cost about 0.2 us per value; a step of the sums
costs about 3 us plus 2 ns per row still summing. :func:`polygamma_differences` sums
the rows whose count is at most :data:`SUM_MAX` and takes SciPy's differences for the
others (NB1's and the beta-binomial's derivatives call it at every evaluation, each row
with its own ``k``), and with the log-gamma ratio the log-density needs, the same
rows' sums of logarithms in the same steps. Which way a value is computed depends on
its own count alone, so an element's value does not depend on the array it is in (a
grid of linear predictors, a batch of replicates, a single row).
"""

from __future__ import annotations

import numpy as np
from scipy import special

# counts up to it are summed (at most this many steps of the sums per call), larger ones
# take SciPy's differences: a step costs about what SciPy's three differences cost for
# five rows
SUM_MAX = 64


def trigamma(x):
    """``psi_1(x)``: the number ``scipy.special.polygamma(1, x)`` gives (``zeta(2, x)``,
    without the digamma function ``polygamma`` computes besides)."""
    return special.zeta(2.0, x)


def polygamma_differences(y, k, log_direct=None):
    """``psi_m(y + k) - psi_m(k)`` for m = 0, 1, 2, each in the shape of ``y`` and ``k``
    (broadcast against each other; ``k > 0``): the finite sums for whole counts up to
    :data:`SUM_MAX`, SciPy's differences elsewhere. With
    ``log_direct``, also ``log Gamma(y + k) - log Gamma(k)``: the sums' rows' own, and
    ``log_direct(y, k)`` (elementwise) for the others."""
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    shape = y.shape
    yf, kf = y.ravel(), k.ravel()
    with_log = log_direct is not None
    summed = (yf >= 0) & (yf <= SUM_MAX) & (yf == np.floor(yf))  # (False for NaN)
    d = np.empty((3 + with_log, len(yf)))
    rest = ~summed
    if summed.any():
        rows = np.flatnonzero(summed)
        counts = yf[rows].astype(np.int16)
        order = np.argsort(counts, kind="stable")  # the rows still summing last
        rows, counts = rows[order], counts[order]
        d[:, rows] = _sums(counts, kf[rows], with_log)
    if rest.any():
        yr, kr = yf[rest], kf[rest]
        d[0, rest] = special.digamma(yr + kr) - special.digamma(kr)
        d[1, rest] = trigamma(yr + kr) - trigamma(kr)
        d[2, rest] = 2.0 * (special.zeta(3.0, kr) - special.zeta(3.0, yr + kr))
        if with_log:
            d[3, rest] = log_direct(yr, kr)
    return tuple(v.reshape(shape) for v in d)


def psi3_differences(y, k):
    """``psi_3(y + k) - psi_3(k)`` (``k > 0``): ``-6 sum_j 1 / (k + j)^4`` for whole
    counts up to :data:`SUM_MAX`, SciPy's ``6 (zeta(4, y + k) - zeta(4, k))`` elsewhere,
    each by its own count. Read once per Hessian (a family's fourth derivative), not at
    every evaluation: the sums go count by count."""
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    summed = (y >= 0) & (y <= SUM_MAX) & (y == np.floor(y))  # (False for NaN)
    out = np.empty(y.shape)
    rest = ~summed
    if rest.any():
        out[rest] = 6.0 * (special.zeta(4.0, y[rest] + k[rest]) - special.zeta(4.0, k[rest]))
    if summed.any():
        ys, ks = y[summed], k[summed]
        acc = np.zeros(len(ys))
        for j in range(int(ys.max(initial=0.0))):
            on = ys > j
            r = 1.0 / (ks[on] + j)
            r *= r
            acc[on] += r * r
        out[summed] = -6.0 * acc
    return out


def _sums(counts, ks, with_log=False):
    """The three polygamma sums (and the logarithms' with ``with_log``) of the rows of
    ``counts`` (ascending) and sizes ``ks``: step ``j`` adds the terms of the rows whose
    count is above ``j``, the last ones."""
    s = np.zeros((3 + with_log, len(counts)))
    s0, s1, s2 = s[:3]
    # rows at or below count j: the first ones
    at_or_below = np.cumsum(np.bincount(counts))
    for j in range(int(counts[-1])):
        i = at_or_below[j]
        a = ks[i:] + j
        if with_log:
            s[3, i:] += np.log(a)
        r = 1.0 / a
        s0[i:] += r
        r2 = r * r
        s1[i:] -= r2
        r2 *= r
        s2[i:] += r2
    s2 *= 2.0
    return s
