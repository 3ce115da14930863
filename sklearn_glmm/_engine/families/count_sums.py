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
costs about 3 us plus 2 ns per row still summing. :func:`polygamma_differences` sums the
rows of small counts and takes SciPy's differences for the rest, choosing the split by
that cost (NB1's and the beta-binomial's derivatives call it at every evaluation, each
row with its own ``k``), and with the log-gamma ratio the log-density needs, the same
rows' sums of logarithms in the same steps.
"""

from __future__ import annotations

import numpy as np
from scipy import special

# cost, in nanoseconds, of a step of the sums (per step and per row still summing) and
# of SciPy's three differences (per call and per row): the split between the two; with
# the log-gamma ratio, a logarithm more per row and step, and SciPy's betaln per row
_COSTS = (3000.0, 2.0, 8000.0, 700.0)
_COSTS_WITH_LOG = (4500.0, 4.0, 8000.0, 760.0)
_MAX_STEPS = 512  # counts above it always take SciPy's differences


def polygamma_differences(y, k, log_direct=None):
    """``psi_m(y + k) - psi_m(k)`` for m = 0, 1, 2, each in the shape of ``y`` and ``k``
    (broadcast against each other; ``k > 0``): the finite sums for whole counts up to
    the split :func:`_split` chooses, SciPy's differences elsewhere. With
    ``log_direct``, also ``log Gamma(y + k) - log Gamma(k)``: the sums' rows' own, and
    ``log_direct(y, k)`` (elementwise) for the others."""
    y, k = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(k, dtype=float))
    shape = y.shape
    yf, kf = y.ravel(), k.ravel()
    with_log = log_direct is not None
    summed, top = _split(yf, _COSTS_WITH_LOG if with_log else _COSTS)
    d = np.empty((3 + with_log, len(yf)))
    if top is None:  # no row summed
        rest = slice(None)
    else:
        rest = ~summed
        rows = np.flatnonzero(summed)
        counts = yf[rows].astype(np.int16)  # (at most _MAX_STEPS)
        order = np.argsort(counts, kind="stable")  # the rows still summing last
        rows, counts = rows[order], counts[order]
        d[:, rows] = _sums(counts, kf[rows], top, with_log)
    if top is None or rest.any():
        yr, kr = yf[rest], kf[rest]
        d[0, rest] = special.digamma(yr + kr) - special.digamma(kr)
        d[1, rest] = special.zeta(2.0, yr + kr) - special.zeta(2.0, kr)
        d[2, rest] = 2.0 * (special.zeta(3.0, kr) - special.zeta(3.0, yr + kr))
        if with_log:
            d[3, rest] = log_direct(yr, kr)
    return tuple(v.reshape(shape) for v in d)


def _split(y, costs=_COSTS):
    """``(summed, top)``: which rows take the sums (whole counts up to ``top``), and
    ``top``; ``(None, None)`` where none does. ``costs``: a step's (per step and per row
    still summing) and SciPy's (per call and per row), in nanoseconds."""
    step_ns, step_row_ns, direct_ns, direct_row_ns = costs
    whole = (y >= 0) & (y <= _MAX_STEPS) & (y == np.floor(y))  # (False for NaN)
    if not whole.any():
        return None, None
    # with the rows of counts up to J summed (C(J) of them): step j < J adds the terms of
    # the C(J) - C(j) rows of counts in (j, J], and the other rows take SciPy's
    # differences
    C = np.cumsum(np.bincount(y[whole].astype(np.intp)))
    J = np.arange(len(C))
    row_steps = J * C - np.concatenate([[0], np.cumsum(C)[:-1]])
    direct = len(y) - C
    cost = step_ns * J + step_row_ns * row_steps
    cost += np.where(direct > 0, direct_ns + direct_row_ns * direct, 0.0)
    top = int(np.argmin(cost))
    return whole & (y <= top), top


def _sums(counts, ks, top, with_log=False):
    """The three polygamma sums (and the logarithms' with ``with_log``) of the rows of
    ``counts`` (ascending, at most ``top``) and sizes ``ks``: step ``j`` adds the terms
    of the rows whose count is above ``j``, the last ones."""
    s = np.zeros((3 + with_log, len(counts)))
    s0, s1, s2 = s[:3]
    # rows at or below count j: the first ones
    at_or_below = np.cumsum(np.bincount(counts, minlength=top + 1))
    for j in range(int(counts[-1]) if len(counts) else 0):
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
