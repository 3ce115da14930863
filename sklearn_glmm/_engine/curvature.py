"""What the Hessian at an optimum says.

lme4's scaled gradient check (:func:`scaled_gradient`, :data:`GRAD_TOL`); the
eigen-analysis of the Hessian over the free parameters (:func:`curvature`), with the
directions a set of equal likelihood or a family parameter's ridge leaves flat taken out
(their bend in the Cholesky entries too, where confirmed); the covariance of the
estimates from it (:func:`identified_covariance`, its pseudo-inverse where directions are
flat); the parameters leading a flat direction (:func:`flat_leaders`).
"""

from __future__ import annotations

import numpy as np

from .stage import projected_gradient

GRAD_TOL = 0.002  # lme4's check.conv.grad tolerance


# eigenvalues of the unit-diagonal Hessian below this fraction of its largest are flat
# directions (finite differences of the gradient resolve curvature to ~1e-4 of the largest)
_FLAT = 1e-7


def at_bound(x, bounds, tol=1e-6) -> np.ndarray:
    """Parameters sitting on a bound (zero variances, NB theta at infinity, ...)."""
    out = np.zeros(len(x), dtype=bool)
    for k, (lo, hi) in enumerate(bounds):
        out[k] = (lo is not None and x[k] <= lo + tol) or (hi is not None and x[k] >= hi - tol)
    return out


def scaled_gradient(g, H, x, bounds, unidentified=None, along_set=False) -> tuple[float, float]:
    """(max |gradient|, max |scaled gradient|) over the parameters off their bounds.

    The scaled gradient is lme4's ``solve(chol(H), g)`` (each component no larger
    than the raw one); where H is not positive definite the raw gradient stands.
    ``unidentified``, ``along_set``: the directions :func:`curvature` takes out, whose
    curvature is filled here (:func:`_flat_filled`).
    """
    free = ~at_bound(x, bounds)
    gf = projected_gradient(g, x, bounds)[free]
    if not len(gf):
        return 0.0, 0.0
    raw = float(np.max(np.abs(gf)))
    Hf = H[np.ix_(free, free)]
    if unidentified is not None:
        Hf = _flat_filled(Hf, unidentified[free], along_set)
    try:
        sg = np.linalg.solve(np.linalg.cholesky(Hf), gf)
    except np.linalg.LinAlgError:
        return raw, raw
    return raw, float(np.max(np.minimum(np.abs(sg), np.abs(gf))))


def curvature(H, x, bounds, ridge=(), stopped=(), unidentified=None, along_set=False):
    """Eigen-analysis of the Hessian over the free parameters.

    Returns ``(V, flat, negative)``: ``V = 2 H^{-1}`` on the free parameters (the
    covariance of the estimates, a pseudo-inverse over the well-determined
    directions, NaN for every parameter with a component along a flat or negative
    direction and for parameters on a bound), and whether flat / negative
    directions exist. ``ridge``: parameters of a family block the fit left on its
    ridge (a zero-inflation probability run to 0 on some rows, see
    :func:`ridge_parameters`); a flat direction led by one of them leaves out only the
    parameters with a sizeable component along it (:data:`_RIDGE_COMPONENT`).
    ``stopped``: the coefficients of each block whose ridge the fit followed to a box
    bound (:func:`stopped_blocks`), which have no covariance (see below).
    ``unidentified``: directions along which the likelihood is constant by construction
    (:func:`.equal_likelihood.unidentified_directions`): taken out of the Hessian (flat,
    not negative).
    ``along_set``: the Hessian's directions of negative curvature in their span
    (:func:`_negative_in_set`) were found to be the set's bend, not a saddle
    (:func:`.converge.along_set_not_lower`): taken out as well.
    """
    n = len(x)
    free = ~at_bound(x, bounds)
    V = np.full((n, n), np.nan)
    if not free.any():
        return V, False, False
    Hf = H[np.ix_(free, free)]
    if not np.all(np.isfinite(Hf)):
        return V, True, False
    if unidentified is not None:
        Hf = _set_projection(Hf, unidentified[free], along_set)[0]
    on_ridge = np.isin(np.flatnonzero(free), np.asarray(ridge, dtype=int))
    Vf, flat, negative = _pseudo_inverse(Hf, on_ridge)
    V[np.ix_(free, free)] = 2.0 * Vf
    # a ridge the optimiser followed to a coefficient's box bound (a zero-inflation
    # intercept at logit -20) goes on past it: the block's coefficients have no
    # covariance, whose value at the bound would be conditional on the bound alone (a
    # slope beside it looked decisive on data without any zero inflation)
    without_covariance(V, stopped)
    return V, flat, negative


def identified_covariance(H, x, bounds, unidentified, along_set=False):
    """``2 H^-1`` over the directions the likelihood identifies, where it is constant
    along ``unidentified`` (:func:`.equal_likelihood.unidentified_directions`) and curved
    along every other direction of the free parameters; NaN for parameters on a bound; None
    otherwise. A function of the parameters whose gradient is orthogonal to
    ``unidentified`` (a prediction, a mean, each arm's variance) has its variance from
    it (:meth:`FitResult.delta_covariance`). ``along_set``: as :func:`curvature`'s."""
    if unidentified is None or H is None or not np.all(np.isfinite(H)):
        return None
    free = ~at_bound(x, bounds)
    Hf = H[np.ix_(free, free)]
    Hp, taken = _set_projection(Hf, unidentified[free], along_set)
    if sum(F.shape[1] for F, _ in taken) != unidentified.shape[1]:
        return None  # (only some of them flat: not the covariance it describes)
    inv, evals, _, good, level = _eigen_inverse(*_unit_diagonal(Hp)[:2])
    if np.any(evals < -level) or good.sum() != len(Hp) - unidentified.shape[1]:
        return None
    V = np.full(H.shape, np.nan)
    V[np.ix_(free, free)] = 2.0 * inv
    return V


def _aliased_removed(H, x, bounds, N):
    """``H`` with the directions ``N`` (columns) taken out on the free parameters, on
    the unit-diagonal scale: directions of equal likelihood by the design (factors that
    group the rows identically, :func:`~.equal_likelihood.aliased_directions`), along
    which its own curvature is the optimiser's tolerance."""
    free = ~at_bound(x, bounds)
    Hf = H[np.ix_(free, free)]
    d = _unit_diagonal(Hf)[1]
    H = H.copy()
    H[np.ix_(free, free)] = _removed(Hf, np.linalg.qr(d[:, None] * N[free])[0], d)
    return H


def _flat_filled(Hf, N, along_set=False):
    """``Hf`` with its curvature along directions of equal likelihood ``N`` (nil:
    :func:`_without_flat`; with ``along_set``, the set's bend too: :func:`_bend_projection`)
    set to 1 on the unit-diagonal scale, for the scaled gradient: divided by their
    curvature of 0 (the Hessian's rounding), the gradient's rounding along them read as
    a failed check."""
    out, taken = _set_projection(Hf, N, along_set)
    for F, d in taken:
        out = out + (F @ F.T) * np.outer(d, d)
    return out


def _without_flat(Hf, N):
    """``Hf`` with the directions in the span of ``N`` (columns) along which its
    curvature is nil to the Hessian's accuracy taken out (:func:`_flat_projection`), or
    ``Hf`` itself where there is none."""
    return _set_projection(Hf, N, False)[0]


def _set_projection(Hf, N, along_set):
    """``(Hp, taken)``: ``Hf`` with the directions of the set of equal likelihood ``N``
    (columns) taken out where its curvature along them is nil (:func:`_flat_projection`)
    and, with ``along_set``, its bend (:func:`_bend_projection`); ``taken`` the ``(F,
    d)`` of each taken out (orthonormal columns on the unit-diagonal scale ``d``)."""
    taken = []
    got = _flat_projection(Hf, N)
    if got is not None:
        Hf = got[0]
        taken.append(got[1:])
    bent = _bend_projection(Hf, N) if along_set else None
    if bent is not None:
        Hf = bent[0]
        taken.append(bent[1:])
    return Hf, taken


def _flat_projection(Hf, N):
    """``(Hp, F, d)``: ``Hf`` with the directions ``F`` (columns, orthonormal on the
    unit-diagonal scale ``d``) taken out, ``F`` those in the span of ``N`` along which
    its curvature is nil to the Hessian's accuracy (:data:`_FLAT_ALONG`, on the
    unit-diagonal scale); None where there is none. A direction of equal likelihood at
    an optimum has none; one that is not (a parameter near its bound, a saddle beside
    the line, a direction that leaves the set at second order on its face) keeps its
    own."""
    # (a diagonal not above zero is left unscaled: the flat direction's own, where it
    # leads, is its rounding, 0 or just below; the curvature along it decides)
    R, d, _ = _unit_diagonal(Hf)
    Ns = np.linalg.qr(d[:, None] * N)[0]  # the directions on the unit-diagonal scale
    along = Ns.T @ R @ Ns
    scale = max(float(np.max(np.abs(np.linalg.eigvalsh(R)))), 1e-300)
    w, V = np.linalg.eigh(0.5 * (along + along.T))
    # flat: nil curvature along it and nil coupling to the other directions (a coupling
    # c beside a curvature of 1 hides a saddle of c^2: at most the flatness threshold)
    coupling = np.linalg.norm(R @ (Ns @ V), axis=0)
    flat = (np.abs(w) <= _FLAT_ALONG * scale) & (coupling <= np.sqrt(_FLAT_ALONG) * scale)
    if not flat.any():
        return None
    F = Ns @ V[:, flat]
    return _taken_out(R, F, d, scale), F, d


def _taken_out(R, F, d, scale):
    """``P R P`` (``P = I - F F'``: the directions ``F``, orthonormal columns, taken out
    of ``R``, the Hessian on its unit-diagonal scale ``d``; ``scale`` its largest
    eigenvalue's size) on the Hessian's own scale."""
    P = np.eye(len(R)) - F @ F.T
    out = P @ R @ P
    out = 0.5 * (out + out.T)
    # (a parameter wholly along them: its diagonal is nil, not a rounding below zero)
    diag = np.diag(out).copy()
    diag[np.abs(diag) <= 1e-12 * scale] = 0.0
    np.fill_diagonal(out, diag)
    return out * np.outer(d, d)


def _negative_in_set(Hp, N):
    """``(W, d, F)``: the eigen-directions of negative curvature of ``Hp`` (columns ``W``,
    on its unit-diagonal scale ``d``), where each lies in the span of the directions of
    equal likelihood ``N`` to all but :data:`_FLAT_ALONG` of its square, and ``F`` an
    orthonormal basis of their parts in that span (what is taken out of the Hessian:
    none of it on an identified parameter, a fixed effect, whose standard error it would
    take); None where there is none, or one leaves the span (a coupling to an identified
    direction, a saddle off the set). ``Hp``: the free parameters' Hessian with the set's
    flat directions taken out (:func:`_without_flat`)."""
    R, d, _ = _unit_diagonal(Hp)
    evals, evecs = np.linalg.eigh(R)
    W = evecs[:, evals < -_flat_level(evals)]
    if not W.shape[1]:
        return None
    Ns = np.linalg.qr(d[:, None] * N)[0]
    inside = Ns @ (Ns.T @ W)
    if np.any(np.sum((W - inside) ** 2, axis=0) > _FLAT_ALONG):
        return None
    return W, d, np.linalg.qr(inside)[0]


def _bend_projection(Hp, N):
    """``(Hb, F, d)``: ``Hp`` with :func:`_negative_in_set`'s directions ``F`` (columns,
    orthonormal on ``Hp``'s unit-diagonal scale ``d``, in the span of ``N``) taken out,
    as :func:`_flat_projection` takes out the flat ones; None where there is none (or
    one leaves the span)."""
    got = _negative_in_set(Hp, N)
    if got is None:
        return None
    _, d, F = got
    return _removed(Hp, F, d), F, d


def _removed(Hf, F, d):
    """:func:`_taken_out` of ``Hf`` on its unit-diagonal scale ``d``."""
    R = Hf / np.outer(d, d)
    return _taken_out(R, F, d, max(float(np.max(np.abs(np.linalg.eigvalsh(R)))), 1e-300))


# the largest curvature, relative to the Hessian's largest (unit-diagonal scale), along
# directions of equal likelihood taken as the Hessian's inaccuracy (a two-valued arm's
# line read 4e-8 to 5e-6 of the largest on 24 binary fits, with or without a slope of
# time beside it, past the flatness threshold :data:`_FLAT`; a direction that leaves
# the covariances near a bound curved 1e-2 and more)
_FLAT_ALONG = 1e-4


# a flat direction led by a block's ridge parameter: the others' components along it
# are the coupling at the fit's point, which fades further along the ridge (the others
# converge there); below this they keep their standard errors (of the model at the
# ridge's end), above it they are NaN as along any flat direction
_RIDGE_COMPONENT = 1e-2


def ridge_parameters(data, x) -> list:
    """Indices (into the parameter vector) of the coefficients of the family's blocks
    that the fit left past their flat side on some rows: a zero-inflation probability
    run to 0 where a binary predictor takes one value (its coefficients off along a
    ridge on which the likelihood keeps rising ever more slowly)."""
    from .blocks import interior_coefficients

    if data.extra_designs is None or not data.n_extra:
        return []
    first = len(x) - data.n_extra
    inside = interior_coefficients(data.family.blocks, data.extra_designs, x[first:])
    return [first + k for k in np.flatnonzero(inside != x[first:])]


def stopped_blocks(data, x, bounds) -> list:
    """The coefficients (indices) of each family block with a design whose intercept
    the fit left on its box bound (a zero-inflation intercept at logit -20, a
    dispersion's at log theta 30) beside slopes: the block ran along a ridge that goes
    on past the bound (on some rows its value ran to the block's limit), and the fit
    stopped there."""
    if data.extra_designs is None or not data.n_extra:
        return []
    k, out = len(x) - data.n_extra, []
    used = np.asarray(data.weights) > 0
    for block, D in zip(data.family.blocks, data.extra_designs):
        width = 1 if D is None else D.shape[1]
        if (
            width > 1
            and _near_flat_bound(x[k], block.flat_side, bounds[k])
            and not _ridge_has_an_end(block, D, x[k : k + width], used)
        ):
            out.append(list(range(k, k + width)))
        k += width
    return out


def ridge_end_null(block, D, coefs, used):
    """``(past, N)``: the used rows whose value of the block (design ``D``, coefficients
    ``coefs``) is past its flat side, and the directions of the coefficients that move
    no other used row (columns of ``N``, the null space of ``D`` on those rows; None
    where no other row is left): the block's ridge, along which only the past rows'
    values move."""
    past = block.past_flat_side(D @ coefs) & used
    rest = used & ~past
    if not rest.any():
        return past, None
    K = D[rest]
    evals, evecs = np.linalg.eigh(K.T @ K)
    return past, evecs[:, evals <= 1e-10 * max(float(evals[-1]), 1e-300)]


def _ridge_has_an_end(block, D, coefs, used) -> bool:
    """Whether a block's ridge has a model at its end: the rows past the flat side are
    those where some direction of the coefficients moves nothing else (one value of a
    binary predictor), the other rows' values then determined (the centred intercept
    can reach its bound along it; the results read that end model, as glmmTMB's
    numbers). Not so where the past rows lie beyond a boundary in a continuous
    predictor, whose limit is a step, not a model of this block."""
    past, N = ridge_end_null(block, D, coefs, used)
    return bool(past.any() and N is not None and N.shape[1] > 0)


def without_covariance(V, blocks) -> None:
    """``V`` (in place) with no covariance for the coefficients of ``blocks``."""
    for block in blocks:
        block = np.asarray(block, dtype=int)
        V[block, :] = np.nan
        V[:, block] = np.nan


# how near its box bound, as a share of the bound's distance from the flat side's edge,
# a block's intercept stopped on the ridge (L-BFGS-B can stop a little short of it where
# the likelihood no longer moves: log theta 29.98 of 30)
_STOP_SHARE = 0.01


def _near_flat_bound(value, side, bound) -> bool:
    """Whether a block's intercept ``value`` is at (or within :data:`_STOP_SHARE` of)
    the box bound on its flat side ``side`` (direction, edge)."""
    if side is None:
        return False
    direction, edge = side
    end = bound[1] if direction == "upper" else bound[0]
    if end is None:
        return False
    return abs(value - end) <= max(1e-6, _STOP_SHARE * abs(end - edge))


def flat_leaders(H, x, bounds) -> list:
    """Indices of the parameters that lead the Hessian's flat directions (the largest
    component of each, on the unit-diagonal scale of :func:`_pseudo_inverse`)."""
    free = np.flatnonzero(~at_bound(x, bounds))
    Hf = H[np.ix_(free, free)]
    if not len(free) or not np.all(np.isfinite(Hf)):
        return []
    R, _, _ = _unit_diagonal(Hf)
    evals, evecs = np.linalg.eigh(R)
    flat = np.flatnonzero(np.abs(evals) <= _flat_level(evals))
    return sorted({int(free[np.argmax(np.abs(evecs[:, k]))]) for k in flat})


def _unit_diagonal(Hf):
    """``(R, d, pos)``: ``Hf`` scaled to unit diagonal, ``R = Hf / (d d')``, so that
    flatness does not depend on the parameters' units (a diagonal that is not positive
    is left unscaled: ``pos`` says where it is)."""
    pos = np.diag(Hf) > 0
    d = np.sqrt(np.where(pos, np.diag(Hf), 1.0))
    return Hf / np.outer(d, d), d, pos


def _flat_level(evals) -> float:
    """Eigenvalues of the unit-diagonal Hessian at most this in size are flat."""
    return _FLAT * max(float(np.max(np.abs(evals))), 1e-300)


def _eigen_inverse(R, d):
    """``(inv, evals, evecs, good, level)``: the inverse of ``R d d'`` (``R`` at unit
    diagonal, :func:`_unit_diagonal`) over the eigen-directions of ``R`` above the
    flatness level (``good``), from its eigen-decomposition."""
    evals, evecs = np.linalg.eigh(R)
    level = _flat_level(evals)
    good = evals > level
    inv = (evecs[:, good] / evals[good]) @ evecs[:, good].T / np.outer(d, d)
    return inv, evals, evecs, good, level


def _pseudo_inverse(Hf, on_ridge=None):
    """``Hf^{-1}`` over its well-determined directions; NaN rows along the others.

    The eigen-analysis is of the matrix scaled to unit diagonal, so that flatness
    does not depend on the parameters' units; a diagonal that is not positive is
    itself a flat or negative direction. ``on_ridge`` (a mask): see :func:`curvature`.
    """
    R, d, pos = _unit_diagonal(Hf)
    if pos.all():
        # the common case, without an eigen-decomposition: R positive definite with
        # lambda_min(R) >= 1 / trace(R^-1) above the flatness threshold
        try:
            inv = np.linalg.inv(np.linalg.cholesky(R))
            r_inv = inv.T @ inv
            if 1.0 / np.trace(r_inv) > _FLAT * len(R):
                return r_inv / np.outer(d, d), False, False
        except np.linalg.LinAlgError:
            pass
    inv, evals, evecs, good, level = _eigen_inverse(R, d)
    negative = bool(np.any(evals < -level) or np.any(np.diag(Hf) < 0))
    bad = evecs[:, ~good]
    limit = np.full(bad.shape[1], 1e-6)
    if on_ridge is not None and on_ridge.any():
        led = on_ridge[np.argmax(np.abs(bad), axis=0)] & (evals[~good] > -level)
        limit[led] = _RIDGE_COMPONENT
    undetermined = np.any(np.abs(bad) > limit, axis=1) | ~pos
    inv[undetermined, :] = np.nan
    inv[:, undetermined] = np.nan
    return inv, bool(np.any(~good) or np.any(~pos)), negative
