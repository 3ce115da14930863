"""The internal scale of a fit's designs: the fixed-effect design centred, scaled and
decorrelated where its columns are nearly collinear (aliased columns dropped), the
random-effect columns centred and scaled per factor. Both are linear maps, so the
likelihood is unchanged and estimates map back exactly."""

from __future__ import annotations

import numpy as np

from ._conditioning import decorrelating_map
from ._validation import aliased_columns
from ._warn import user_stacklevel, warn
from .exceptions import (
    RankDeficiencyWarning,
)


def scale_design(X, names, fit_intercept, curvature=1.0, centre=False, decorrelate=False):
    """Centre and scale the columns of X; drop aliased columns with a warning.

    The columns are centred with an intercept, or without one when ``centre`` (an
    ordinal model's thresholds take the centring's shift, see ``extra_shift_matrix``).
    Returns the internal design (intercept first when fitted) and the scaling
    record used to map coefficients back. With large counts (``curvature``, the
    typical Fisher weight, above 100) every column is divided further by
    ``sqrt(curvature)``: the fixed effects' curvature then stays of the order of
    the covariance parameters', which L-BFGS needs to converge. With ``decorrelate``,
    nearly collinear columns are also decorrelated (:func:`_decorrelate`).
    """
    n, p = X.shape
    c = float(np.sqrt(curvature)) if curvature > 100.0 else 1.0
    off = int(fit_intercept)
    # written column by column into the (column-major) result: no temporaries of X's
    # size, which matter on large data (X @ beta and X.T @ psi, the hot products, run
    # single-threaded on its columns)
    full = np.empty((n, p + off), order="F")
    if fit_intercept:
        full[:, 0] = 1.0
    means, scales = np.zeros(p), np.ones(p)
    for k in range(p):
        col = full[:, off + k]
        col[:] = X[:, k]
        if n:
            if fit_intercept or centre:
                means[k] = col.mean()
                col -= means[k]
            # the standard deviation (the root mean square without an intercept)
            spread = float(np.sqrt(col @ col / n))
            if spread > 0:
                scales[k] = spread
                col /= spread
    dropped = [k - off for k in aliased_columns(full)]
    if c != 1.0:
        full /= c
        scales = scales * c
    if fit_intercept and -1 in dropped:
        dropped.remove(-1)
    if dropped:
        warn(
            f"fixed-effect model matrix is rank deficient: dropping column(s) "
            f"{[names[k] for k in dropped]} (constant or a linear combination of other "
            "columns), as lme4 does. Their rows of fixed_effects_ are NaN and their coef_ 0.",
            RankDeficiencyWarning,
            stacklevel=user_stacklevel(),
        )
    kept = [k for k in range(p) if k not in dropped]
    Xd = full
    if dropped:
        Xd = np.asfortranarray(full[:, ([0] if fit_intercept else []) + [k + off for k in kept]])
    scaling = dict(
        means=means,
        scales=scales,
        kept=kept,
        dropped=dropped,
        intercept=fit_intercept,
        p=p,
        intercept_scale=c,
    )
    if centre and not fit_intercept:
        scaling["centred"] = True
    if decorrelate:
        Xd = _decorrelate(Xd, scaling)
    return Xd, scaling


def _decorrelate(Xd, scaling):
    """Replace the (centred, scaled) columns after the intercept by uncorrelated ones
    when ``X'X`` is ill-conditioned
    (:func:`~sklearn_glmm._conditioning.decorrelating_map`): ``X R^-1`` with
    ``R'R = X'X / n``, so that the fit is the same whatever the origin and units of the
    user's columns. ``scaling["rotation"]`` keeps ``R^-1`` (``beta = R^-1 beta_internal``
    for those columns; :func:`~sklearn_glmm._fit_result.beta_jacobian`) and
    ``scaling["rotation_inverse"]`` ``R``."""
    k0 = int(scaling["intercept"])
    cols = Xd[:, k0:]
    found = decorrelating_map(cols)
    if found is None:
        return Xd
    Rinv, R = found
    out = np.empty_like(Xd, order="F")
    if k0:
        out[:, 0] = Xd[:, 0]
    out[:, k0:] = cols @ Rinv
    scaling["rotation"], scaling["rotation_inverse"] = Rinv, R
    return out


def coefficient_shift(shift, designs) -> np.ndarray:
    """The family's per-block ``eta_shift`` over its coefficients (a block with a design
    has several, which do not move)."""
    if designs is None:
        return np.asarray(shift, dtype=float)
    out = []
    for d, D in zip(shift, designs):
        if D is not None and d != 0.0:
            raise ValueError("a block with a design cannot absorb a shift of eta")
        out += [float(d)] if D is None else [0.0] * D.shape[1]
    return np.array(out)


def z_transform(factor, X, row_weights=None) -> np.ndarray:
    """``T`` with internal Z columns ``Z T`` and original effects ``b = T b_internal``.

    Slope columns are divided by their spread so that the optimiser sees every
    column on one scale. A correlated term with an intercept (``"1 + time"``) also
    has its slopes centred: the covariance is then estimated between nearly
    orthogonal columns, whatever the origin of the user's time scale (calendar
    days, say), and maps back exactly (``Sigma = T Sigma_internal T'``). An
    uncorrelated (``diag``) or intercept-free term is only scaled, since centring
    would change its model; so are the slopes of a term's blocks other than the
    intercept's (``"(1 + time) + (0 + dose)"``: ``time`` is centred, ``dose``
    scaled). The slopes of a correlated block that stay nearly collinear after that
    (:func:`~sklearn_glmm._conditioning.decorrelating_map`) are also decorrelated,
    within the block: the same model, whose optimum the optimiser then reaches.

    ``row_weights`` (prior weights times binomial trials, where they are not all
    equal; given for adaptive quadrature): the centre, spread and decorrelation are
    those of the weighted rows. The Laplace approximation is the same in any basis, but
    adaptive quadrature's product rule is not: with it a row of weight 0 would move the
    fit, and an integer weight would not be that many copies of its row.
    """
    if factor.structure is not None:
        # indicators of time levels: scaling them apart would break the structure
        return np.eye(factor.q)
    Z = factor.z_matrix(X)
    q = Z.shape[1]
    T = np.eye(q)
    if not Z.shape[0]:
        return T
    if row_weights is None:
        share = None
    else:
        share = np.asarray(row_weights, dtype=float)
        share = share / share.sum() if share.sum() > 0 else None
    # the columns correlated with each other: one block, a block per column of a
    # diagonal term, or the term's blocks; centring moves a slope's column within the
    # intercept's block only (across blocks it would change the model)
    term = factor.term
    sizes = np.bincount(term.block_index)
    ends = np.cumsum(sizes)
    centred = int(ends[0]) if term.intercept and sizes[0] > 1 else 0
    means = np.zeros(q)
    if centred:
        means[:centred] = np.average(Z[:, :centred], axis=0, weights=share)
    s = np.sqrt(np.average((Z - means) ** 2, axis=0, weights=share))
    for k in range(int(term.intercept), q):
        sk = s[k] if s[k] > 0 else 1.0
        T[k, k] = 1.0 / sk
        if k < centred:  # the intercept's column carries the centring (none without one)
            T[0, k] = -means[k] / sk
    for start, end in zip(ends - sizes, ends):
        # a correlated block is the same model in any basis of its columns: nearly
        # collinear slopes ((1 + f * x | g) with x far from 0, a raw polynomial) are
        # decorrelated as the fixed effects are
        k0 = int(start) + int(term.intercept and start == 0)
        if end - k0 < 2:
            continue
        cols = (Z @ T)[:, k0:end]
        if share is not None:  # the weighted rows' cross-products (weight 0: none)
            cols = cols * np.sqrt(share * len(share))[:, None]
        found = decorrelating_map(cols)
        if found is not None:
            T[:, k0:end] = T[:, k0:end] @ found[0]
    return T


def design_view(factor, scaling, Xd):
    """``(T, Z)`` with the factor's internal Z a view of columns of the internal design
    ``Xd``, or None when its columns are not there side by side.

    A correlated ``"1 + time"`` term next to a fixed intercept and a fixed ``time``
    has internal Z columns equal to the design's first columns (the intercept, then
    ``time`` centred and scaled the same way): sharing them spares an (n, q) array,
    which is most of a large random-slope fit's memory after the data. ``T`` is made
    from the design's own centring and scaling, so that the view is exactly ``Z T``
    up to rounding.
    """
    term = factor.term
    if factor.structure is not None or not factor.slope_idx:
        return None
    if scaling["intercept_scale"] != 1.0 or term.intercept != scaling["intercept"]:
        return None
    if "rotation" in scaling:  # decorrelated columns: not the Z columns
        return None
    if term.intercept and (term.diagonal or term.blocks):  # (centring would change the model)
        return None
    off, kept = int(scaling["intercept"]), scaling["kept"]
    if any(j not in kept for j in factor.slope_idx):  # random-only or aliased columns
        return None
    cols = ([0] if term.intercept else []) + [off + kept.index(j) for j in factor.slope_idx]
    if cols != list(range(cols[0], cols[0] + len(cols))):
        return None
    q = len(cols)
    T = np.eye(q)
    for k, j in enumerate(factor.slope_idx, start=int(term.intercept)):
        T[k, k] = 1.0 / scaling["scales"][j]
        if term.intercept:
            T[0, k] = -scaling["means"][j] / scaling["scales"][j]
    return T, Xd[:, cols[0] : cols[0] + q]


def internal_lambda(T: np.ndarray, Lo: np.ndarray) -> np.ndarray:
    """Lower-triangular ``Lambda`` with ``T Lambda Lambda' T' = Lo Lo'`` (diagonal >= 0)."""
    M = np.linalg.solve(T, Lo)
    # M M' = R'R with R from the QR decomposition of M': R' is the lower factor
    R = np.linalg.qr(M.T, mode="r")
    L = R.T
    signs = np.where(np.diag(L) < 0, -1.0, 1.0)
    return L * signs[None, :]
