"""The joint mode of the random effects for row densities that are not log-concave.

``truth_dense.py`` finds the mode ``u`` of ``sum_i log p(y_i | eta0_i + (A u)_i) - u'u / 2``
by damped Newton steps on the exact Hessian ``I + A' W A``, ``W`` the negative second
derivative of the row log-densities in the linear predictor. For the binomial, Poisson and
NB2 families ``W`` is positive and every Newton step goes uphill. NB1's and the
beta-binomial's log-densities are not concave in the linear predictor: NB1's ``W`` is
negative where the mean is small beside ``phi`` and the count large (``k = mu / phi``
small: ``d2 ~ k log(y / (1 + phi)) > 0``), the beta-binomial's where ``mu phi`` or ``(1 -
mu) phi`` is small beside a count. There ``I + A' W A`` can be indefinite away from the
mode, a Newton step can go downhill, and the search can stop short of the mode (seed 3 of
``fuzz_structure_family_cases``: a gradient of 49 left, the Laplace value -752.5 where it
is -395.9 at the mode).

:func:`find_mode` takes steps on ``I + A' max(W, 0) A`` wherever the exact Hessian is not
positive definite (positive definite: each step an ascent direction, the line search then
finds a gain), the exact Hessian's Newton steps elsewhere (quadratic convergence at a
mode whose Hessian is positive definite, as a Laplace approximation needs); from zero and,
when given, from a warm start, keeping the higher. :func:`modes_found_robustly` makes
``truth_dense``'s own functions (:func:`truth_dense.laplace_loglik`,
:class:`truth_dense.PackedLaplace`, :func:`truth_dense.integral_loglik`) start their mode
search at that mode, where its first Newton step is below its tolerance: their value, log
determinant and quadrature are theirs, at the mode. Nothing here imports ``sklearn_glmm``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import truth
import truth_dense


def _design(params, structure):
    """``Z Lambda`` without its columns of zero variance (as ``truth_dense._laplace``)."""
    A = structure.design([truth_dense.psd_factor(np.asarray(c, float)) for c in params["cov"]])
    return A[:, np.any(A != 0.0, axis=0)]


def _search(data, eta0, params, A, u):
    """The mode of the penalised log-likelihood from ``u``: its value and the mode (None
    where the search fails)."""
    eye = np.eye(len(u))
    g, d1, d2 = truth_dense._penalised(data, eta0, params, A, u)
    if not np.isfinite(g):
        return -np.inf, None
    for _ in range(500):
        grad = A.T @ d1 - u
        H = A.T @ (-d2[:, None] * A) + eye
        try:
            np.linalg.cholesky(H)
        except np.linalg.LinAlgError:  # indefinite: the positive part of the curvature
            H = A.T @ (np.maximum(-d2, 0.0)[:, None] * A) + eye
        step = np.linalg.solve(H, grad)
        decrement = float(grad @ step)
        if not np.isfinite(decrement):
            return -np.inf, None
        if decrement <= 1e-14 * max(1.0, abs(g)):
            return g, u
        t = 1.0
        for _ in range(60):
            g_new, d1_new, d2_new = truth_dense._penalised(data, eta0, params, A, u + t * step)
            if np.isfinite(g_new) and g_new >= g:
                break
            t *= 0.5
        else:
            return g, u  # no gain along an ascent direction: the mode to rounding
        u = u + t * step
        g, d1, d2 = g_new, d1_new, d2_new
    return g, u


def find_mode(params: dict, data: truth.GLMMData, structure, start=None):
    """The highest mode found from zero and from ``start`` (of the mode's length), or
    None."""
    beta = np.asarray(params["beta"], dtype=float)
    if not np.all(np.isfinite(beta)) or not all(np.all(np.isfinite(c)) for c in params["cov"]):
        return None
    try:
        A = _design(params, structure)
    except (ValueError, np.linalg.LinAlgError):
        return None
    eta0 = data.eta(beta)
    starts = [np.zeros(A.shape[1])]
    if start is not None and len(start) == A.shape[1]:
        starts.append(np.asarray(start, dtype=float))
    best = (-np.inf, None)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for u0 in starts:
            found = _search(data, eta0, params, A, u0.copy())
            if found[1] is not None and found[0] > best[0]:
                best = found
    return best[1]


@contextlib.contextmanager
def modes_found_robustly():
    """Within the block, ``truth_dense``'s mode searches start at :func:`find_mode`'s."""
    original = truth_dense._laplace

    def started_at_the_mode(params, data, structure, start=None, modes=None):
        mode = find_mode(params, data, structure, start)
        start = mode if mode is not None else start
        return original(params, data, structure, start, modes=modes)

    truth_dense._laplace = started_at_the_mode
    try:
        yield
    finally:
        truth_dense._laplace = original


def laplace_loglik(params: dict, data: truth.GLMMData, structure) -> float:
    """:func:`truth_dense.laplace_loglik` at the mode of :func:`find_mode`."""
    with modes_found_robustly():
        return truth_dense.laplace_loglik(params, data, structure)


def integral_loglik(params: dict, data: truth.GLMMData, term, nodes: int = 40) -> float:
    """:func:`truth_dense.integral_loglik` centred at the modes of :func:`find_mode`."""
    with modes_found_robustly():
        return truth_dense.integral_loglik(params, data, term, nodes)


# the library's range of a structure's correlation (docs/covariance_structures.md: up to
# |rho| = 0.9999 for ar1 and cs, cs down to -0.9999 / (q - 1)), a fit ending there reported
# singular; the slack takes the rounding of tanh(atanh(rho)) at the bound
RHO_MAX = 0.9999
_SLACK = 1e-12


def correlations_valid(x: np.ndarray, data: truth.GLMMData, structure) -> bool:
    """Whether the correlations of :func:`truth_dense.pack`'s vector ``x`` are in the
    models' range: ``ar1``'s and ``cs``'s at most :data:`RHO_MAX` in size, ``cs``'s at least
    ``-RHO_MAX / (k - 1)``, ``toep``'s matrix positive semi-definite.

    ``truth_dense`` takes any positive semi-definite covariance matrix, and with an SD of
    0 (its row and column zero) a ``cs`` matrix is that for correlations below ``-1 / (k -
    1)``: a covariance no ``cs`` model has (data set 106: a correlation of -1 over three
    times with the third SD 0, 0.096 above the fit at the bound, which glmmTMB's fit
    shares). And the library's correlations stop at ``RHO_MAX``, where the likelihood can
    still rise (data set 382: ``ar1`` over 3 times, 9 rows, 0.024 higher at -1)."""
    k = data.X.shape[1]
    top = RHO_MAX + _SLACK
    for term in structure.terms:
        m = truth_dense._n_packed(term)
        v = np.asarray(x[k : k + m], dtype=float)
        k += m
        q = term.k
        if term.structure == "ar1" and not abs(np.tanh(v[1])) <= top:
            return False
        if term.structure == "cs" and not -top / (q - 1) <= v[q] <= top:
            return False
        if term.structure == "toep":
            lag = np.abs(np.arange(q)[:, None] - np.arange(q)[None, :])
            R = np.r_[1.0, v[q:]][lag]
            if np.min(np.linalg.eigvalsh(R)) < -1e-12:
                return False
    return True


class PackedLaplace(truth_dense.PackedLaplace):
    """:class:`truth_dense.PackedLaplace` at the modes of :func:`find_mode` (warm-started
    from the previous call's, and from zero); NaN where :func:`correlations_valid` is
    False."""

    def __call__(self, x: np.ndarray) -> float:
        if not correlations_valid(x, self.data, self.structure):
            return np.nan
        with modes_found_robustly():
            return super().__call__(x)
