"""R's natural cubic splines, ``splines::ns``, for formulas.

The basis is R's: the cubic B-spline basis on the boundary and interior knots (the
first column left out without an intercept), projected on the null space of its
second derivatives at the two boundary knots by R's own QR (LINPACK's Householder
reflections, ``qr`` and ``qr.qty``), so the columns, and hence the coefficients, are
R's. Interior knots are the data's quantiles (R's type 7) for ``df``; beyond the
boundary knots the basis continues linearly, as R's ``predict`` extends it. New data
use the knots of the fitting data.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import BSpline


def natural_spline_knots(x, df=None, knots=None, intercept=False):
    """``(interior knots, boundary knots)`` of ``ns(x, df, knots, intercept)``."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        raise ValueError("ns(): the variable has no finite values.")
    boundary = np.array([x.min(), x.max()])
    if knots is not None:
        interior = np.sort(np.asarray(knots, dtype=float).ravel())
    else:
        if df is None:
            df = 1 + int(bool(intercept))  # R: a single column without knots
        n_inner = int(df) - 1 - int(bool(intercept))
        if n_inner < 0:
            raise ValueError(
                f"ns(): df = {df} is too small (at least {1 + int(bool(intercept))} "
                f"{'with' if intercept else 'without'} an intercept)."
            )
        probs = np.linspace(0.0, 1.0, n_inner + 2)[1:-1]
        interior = np.quantile(x, probs) if n_inner else np.zeros(0)
    return interior, boundary


def natural_spline_basis(x, interior, boundary, intercept=False):
    """The ``ns`` basis of ``x`` (n, df) for the given knots (R's numbers)."""
    x = np.asarray(x, dtype=float)
    lo, hi = boundary
    all_knots = np.sort(np.r_[np.repeat(boundary, 4), interior])
    basis = np.zeros((len(x), len(interior) + 4))
    inside = (x >= lo) & (x <= hi)
    if inside.any():
        basis[inside] = _bspline_design(all_knots, x[inside])
    for side, pivot in ((x < lo, lo), (x > hi, hi)):
        if side.any():  # linear beyond the boundary: value and slope at the knot
            at = np.array([pivot])
            value = _bspline_design(all_knots, at, extrapolate=True)[0]
            slope = _bspline_design(all_knots, at, deriv=1, extrapolate=True)[0]
            basis[side] = value + np.outer(x[side] - pivot, slope)
    constraint = _bspline_design(all_knots, np.asarray(boundary), deriv=2, extrapolate=True)
    if not intercept:
        basis, constraint = basis[:, 1:], constraint[:, 1:]
    qr, qraux = _householder_qr(constraint.T)
    out = _qr_qty(qr, qraux, basis.T).T[:, 2:]
    out[~np.isfinite(x)] = np.nan
    return out


def _bspline_design(knots, x, deriv=0, extrapolate=False):
    """R's ``splineDesign(knots, x, 4, derivs)``: every cubic B-spline at ``x``."""
    n = len(knots) - 4
    out = np.empty((len(x), n))
    coef = np.zeros(n)
    for j in range(n):
        coef[:] = 0.0
        coef[j] = 1.0
        out[:, j] = BSpline(knots, coef, 3, extrapolate=extrapolate)(x, nu=deriv)
    return np.nan_to_num(out)


def _householder_qr(A):
    """LINPACK's QR (``dqrdc2``, R's ``qr``) of a full-rank ``A`` without pivoting: the
    reflections stored below the diagonal, and ``qraux``."""
    A = np.array(A, dtype=float)
    n, p = A.shape
    qraux = np.zeros(p)
    for j in range(min(n - 1, p)):
        norm = np.linalg.norm(A[j:, j])
        if norm == 0.0:
            continue
        if A[j, j] != 0.0:
            norm = np.copysign(norm, A[j, j])
        A[j:, j] /= norm
        A[j, j] += 1.0
        for k in range(j + 1, p):
            A[j:, k] -= (A[j:, j] @ A[j:, k]) / A[j, j] * A[j:, j]
        qraux[j] = A[j, j]
        A[j, j] = -norm
    return A, qraux


def _qr_qty(qr, qraux, Y):
    """``qr.qty``: ``Q'Y`` for the reflections of :func:`_householder_qr`."""
    Y = np.array(Y, dtype=float)
    n, p = qr.shape
    for j in range(min(p, n - 1)):
        if qraux[j] == 0.0:
            continue
        v = qr[j:, j].copy()
        v[0] = qraux[j]
        Y[j:] -= np.outer(v, (v @ Y[j:]) / qraux[j])
    return Y
