"""The checks a fit's result gets before it is published, each with its warning:
standard errors that cannot be computed (NaN, and why), a family block on its ridge,
the Laplace approximation against quadrature, separation (with the limit model's
covariance), unidentified covariances, groups separated by their random effect, and
convergence (lme4's gradient check, negative curvature, a zero variance below which
the likelihood rises)."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._design import INTERCEPT
from ._engine.blas import single_threaded_blas
from ._engine.curvature import (
    GRAD_TOL,
    ridge_end_null,
    without_covariance,
)
from ._engine.limit_ridge import limit_model_directions
from ._engine.ridge import FLAT_TOL
from ._engine.separation import (
    separated_coefficients,
    separated_rows,
    separating_directions,
    separation_message,
)
from ._fit_result import (
    limit_delta,
    unrotated,
)
from ._warn import user_stacklevel, warn
from .exceptions import (
    ApproximationWarning,
    IdentifiabilityWarning,
    SeparationWarning,
    StandardErrorWarning,
)


def _mapped_limit(J, start, V, limit, diagonal=False) -> np.ndarray:
    """The covariance (``diagonal``: the variances) of ``J`` times the parameters from
    ``start`` on, through a separated fit's limit model (:func:`limit_delta`)."""
    G = np.zeros((J.shape[0], V.shape[0]))
    G[:, start : start + J.shape[1]] = J
    return limit_delta(G, V, limit, diagonal)


def _check_standard_errors(est, record, rows, se_all, idx, ridge=()):
    """Warn, naming them, when standard errors could not be computed: the fixed
    effects', and those of the other parameters off their bounds (the coefficients of
    a zero-inflation or dispersion design; ``ridge``: the ones a ridge's warning
    names, a block's or the family's ridge to its limit)."""
    said = _names_of(est, ridge)  # (their own warning says why)
    missing = [rows[i] for i in idx if not np.isfinite(se_all[i]) and rows[i] not in said]
    missing += _other_missing(est, record, ridge)
    variances = _covariance_missing(est)
    missing += variances
    if not missing:
        return
    why = (
        "the Hessian of the log-likelihood is singular along them (a flat direction: "
        "parameters not identified by these data)"
        if record.flat_directions
        else "the Hessian of the log-likelihood is not positive definite there"
    )
    leaders = _flat_leader_names(est, record)
    if leaders and not set(leaders) <= set(missing):
        why = (
            f"the Hessian of the log-likelihood is flat along a direction led by {leaders} "
            "(a parameter running along a ridge of the likelihood, or not identified by "
            "these data), and these move along it too"
        )
    if variances:
        why += (
            f"; the data do not determine {variances}: the values reported for them are "
            "one point of a set of equal likelihood, not estimates (their Wald intervals "
            "are NaN)"
        )
    warn(
        f"standard errors of {missing} cannot be computed and are NaN: {why}. Simplify the "
        "model (random_effects, collinear predictors) or check the data for separation.",
        StandardErrorWarning,
        stacklevel=user_stacklevel(),
    )


def _covariance_missing(est) -> list:
    """Names of the reported random-effect SDs and correlations without a variance
    although off their bounds (:meth:`._fit_result.FitResult.undetermined`): they move along a flat
    direction of the likelihood, which the data do not determine (a structure's SD of a
    time no row has, say)."""
    res = est.fit_result_
    p, T = res.layout.n_beta, res.layout.n_theta
    if not res.undetermined()[p : p + T].any() and getattr(res.record, "set_points", None) is None:
        return []
    from ._param_map import ParamMap

    pmap = ParamMap(est)
    var = res.delta_covariance(pmap.dphi_dx(res.params), diagonal=True)
    moved = res.moves_on_set(pmap.to_phi)  # (stationary at the fit's point, too)
    if moved is not None:
        var = np.where(moved, np.nan, var)
    return [
        name
        for name, kind, v in zip(pmap.names, pmap.kinds, var)
        if kind in ("sd", "cor") and not np.isfinite(v)
    ]


def _other_missing(est, record, ridge) -> list:
    """Names of the family's parameters (a zero-inflation or dispersion design's
    coefficients, NB theta, ...) without a variance although off their bounds
    (:meth:`._fit_result.FitResult.undetermined`), but those in ``ridge``. (The covariance
    parameters' standard errors are not tabled; a Wald interval names its own.)"""

    res = est.fit_result_
    k0 = res.layout.n_beta + res.layout.n_theta
    left = [k for k in np.flatnonzero(res.undetermined()) if k >= k0 and k not in set(ridge)]
    if not left or record.covariance is None:
        return []
    names = _optimiser_names(est)
    out, k = [], k0
    designs = res.block_designs or (None,) * len(res.family.blocks)
    for block, design in zip(res.family.blocks, designs):
        width = 1 if design is None else len(design.names)
        mine = [j for j in left if k <= j < k + width]
        if mine and design is not None:
            # a design's coefficients in the user's units, as tabled: the intercept of
            # a centred design can be determined where the internal one is not (a
            # separated fit's limit model)
            limit = getattr(record, "limit_covariance", None)
            var = _mapped_limit(design.J, k, record.covariance, limit, diagonal=True)
            out += [f"{block.prefix}~{t}" for t, v in zip(design.names, var) if np.isnan(v)]
        else:
            out += [names[j] if names else f"parameter {j}" for j in mine]
        k += width
    return out


def _optimiser_names(est) -> list | None:
    """The reported parameters' names, one per optimiser parameter, or None when the
    reported parameters are not the optimiser's."""
    from ._param_map import ParamMap

    names = ParamMap(est).names
    return names if len(names) == len(est.fit_result_.params) else None


def _check_block_ridge(est, x, record, ridge, blocks=()):
    """Warn when the fit left a family block on its ridge (``ridge``, the parameters
    ``ridge_parameters`` found: a zero-inflation probability run to 0 on the rows of
    one value of a binary predictor): its coefficients' standard errors are NaN, the
    others' are those of the model at the ridge's end. A block (of ``blocks``, those
    coefficients by block, ``curvature.stopped_blocks``) whose ridge stopped at its intercept's
    box bound is said apart: the log-likelihood is a lower bound, the block's covariance
    NaN (``curvature``)."""

    V = record.covariance
    if not (ridge or blocks) or V is None:
        return
    names = _optimiser_names(est)
    if names is None:
        return
    # a ridge the optimiser followed to a coefficient's box bound (a zero-inflation
    # intercept at logit -20): the likelihood still rises along it
    stopped_blocks = list(blocks)
    for block in stopped_blocks:
        along = [names[k] for k in block]
        at = [names[block[0]]]  # (the block's intercept: stopped_blocks)
        warn(
            f"the coefficients {along} followed a ridge of the likelihood (on some rows "
            "this part of the model ran to its limit: a probability to 0 or 1, a "
            f"dispersion to its Poisson or binomial limit) to the bound of {at}, where "
            "the fit stopped: the likelihood rises further along the ridge, so the "
            "log-likelihood (AIC, likelihood-ratio tests) is a lower bound of the maximum, "
            "and these coefficients' estimates describe the point the bound set, not the "
            "data; their standard errors are NaN. The data may still hold strong evidence "
            "for these predictors (zeros on every row past some value of one): compare "
            "the log-likelihood with the model without them, this one's being a lower bound."
            + _limit_of_block(names, record, block),
            StandardErrorWarning,
            stacklevel=user_stacklevel(),
        )
    if stopped_blocks:
        done = {k for b in stopped_blocks for k in b}
        ridge = [k for k in ridge if k not in done]
    nan = [names[k] for k in ridge if not np.isfinite(V[k, k])]
    nan = [name for name in nan if _reported_se_missing(est, name)]
    if not nan:
        return
    warn(
        f"the coefficients {nan} run along a ridge of the likelihood: on some rows what "
        "they model reaches its limit (a zero-inflation probability 0: no excess zeros for "
        "one value of a binary predictor; a dispersion its Poisson limit), where the "
        "likelihood keeps rising ever more slowly. Their standard "
        "errors are NaN (their estimates are where the optimiser stopped on the ridge); "
        "the other parameters' are those of the model at the ridge's end. Drop the "
        "predictor from that part of the model to have a standard error for the rest of it.",
        StandardErrorWarning,
        stacklevel=user_stacklevel(),
    )


def _names_of(est, indices) -> set:
    """The reported names of the parameters ``indices`` (into the parameter vector)."""
    if not len(indices):
        return set()
    names = _optimiser_names(est)
    return {names[k] for k in indices} if names else set()


def limit_ridge_parameters(record, data) -> list:
    """Indices of the parameters moving along the family's ridge to its limit
    (:func:`on_limit_ridge`), for a fit on it; else none."""
    if not on_limit_ridge(record):
        return []
    directions = limit_model_directions(data)
    return [] if directions is None else [int(k) for k in _moving(directions)]


def _check_limit_ridge(est, record, moving) -> None:
    """Warn when the fit lies on its family's ridge to a limit distribution
    (``moving``: :func:`limit_ridge_parameters`): only a combination of the
    parameters along it is determined, and the log-likelihood is the limit model's."""
    if not moving:
        return
    ridge = est.fit_result_.family.limit_ridge
    names = [_optimiser_names(est)[k] for k in moving]  # (ascending: the vector's order)
    gain = 0.5 * record.limit_gain  # of the log-likelihood
    where = (
        f"the log-likelihood rises by {gain:.3g} further along it, so loglik_ (AIC, "
        "likelihood-ratio tests) is a lower bound of the limit model's"
        if record.limit_gain > FLAT_TOL
        else "the log-likelihood is the limit model's, within the optimiser's tolerance"
    )
    warn(
        f"the fit lies on a ridge of the likelihood towards {ridge.limit}, which the "
        "count part tends to as theta -> 0 and its mean before truncation -> 0 with "
        f"their ratio held: {where}. On the ridge the data determine only "
        f"{ridge.identified}, not each of them: the standard errors of {names} are NaN "
        "(their estimates are where the optimiser stopped on the ridge), the other "
        "parameters' are those of the model at the ridge's end. Read the count part as "
        "that limit model (its other slopes, the random effects and the positive counts' "
        "distribution stand), or compare the log-likelihood with a zero-truncated "
        "Poisson count part (PoissonGLMM with the same hurdle or truncation).",
        StandardErrorWarning,
        stacklevel=user_stacklevel(),
    )


def _check_threshold_limits(est, record, stopped=()) -> None:
    """Warn where the zero part separates zeros at an end of its predictor and the
    likelihood's limit there is above the fit (``record.threshold_limits``,
    :mod:`._engine.threshold_limits`): ``loglik_`` is a local maximum, not the maximum.
    Not where the fit followed the zero part's ridge to its intercept's bound (a block of
    ``stopped``, :func:`_check_block_ridge`'s warning: the same limit, the log-likelihood
    a lower bound)."""
    limits = getattr(record, "threshold_limits", None)
    names = _optimiser_names(est) if limits else None
    if not limits or names is None:
        return
    if any(limits[0][3] in block for block in stopped):
        return
    _, _, value, k0, k = max(limits, key=lambda limit: -limit[2])
    zi = [names[k0], names[k]]  # (the zero part's intercept and the predictor)
    predictor, rows = _limit_rows(names, limits)
    gain = 0.5 * (record.objective - value)
    warn(
        f"the zero-inflation model separates zeros: {rows}, and the likelihood rises "
        "towards a limit at which the zero-inflation probability is 1 there and 0 on "
        "every other row "
        f"(the coefficients {zi} to infinity; the count model without zero inflation on "
        f"the other rows), {gain:.3g} above loglik_ {-0.5 * record.objective:.6g}: the "
        "fit is a local maximum, not the maximum likelihood, and its zero-inflation "
        "estimates describe that local maximum. The data may hold a step in "
        f"{predictor!r} past which every outcome is zero: compare with a model that has "
        "it (an indicator of those rows in the zero part, or those rows left out).",
        SeparationWarning,
        stacklevel=user_stacklevel(),
    )


def _limit_rows(names, limits) -> tuple:
    """``(predictor, text)``: the predictor of the highest of ``limits``
    (``record.threshold_limits``) and the rows of zeros past its threshold, in words."""
    n_rows, sign, _, _, k = max(limits, key=lambda limit: -limit[2])
    predictor = names[k].partition("~")[2] or names[k]
    end = "largest" if sign > 0 else "smallest"
    if n_rows == 1:
        return predictor, f"the row of the {end} value of {predictor!r} is a zero"
    return predictor, f"the {n_rows} rows of the {end} values of {predictor!r} are all zeros"


def _limit_of_block(names, record, block) -> str:
    """For a zero part stopped at its intercept's bound (``block``, its parameters), the
    highest limit of ``record.threshold_limits`` of that block above the fit, in words:
    a value the maximum of the likelihood reaches at least (else ``""``)."""
    limits = [t for t in getattr(record, "threshold_limits", None) or () if t[3] in block]
    if not limits:
        return ""
    value = min(limit[2] for limit in limits)
    _, rows = _limit_rows(names, limits)
    return (
        f" Here {rows}: the likelihood tends to {-0.5 * value:.6g}, "
        f"{0.5 * (record.objective - value):.3g} above loglik_, as the zero-inflation "
        "probability goes to 1 there and to 0 on every other row (the count model "
        "without zero inflation fitted to the other rows; fit_record_.threshold_limits), "
        "so the maximum is at least that."
    )


def _reported_se_missing(est, name: str) -> bool:
    """Whether the reported coefficient ``name`` (``"zi~(Intercept)"``) has no standard
    error in its block's table (a block intercept beside a ridge has the one of the
    model at the ridge's end, though its internal parameter moves along the ridge)."""
    prefix, _, term = name.partition("~")
    for block in est.fit_result_.family.blocks:
        if block.prefix == prefix and block.effects and term:
            table = getattr(est, block.effects, None)
            if table is not None and term in table.index:
                return not np.isfinite(table.loc[term, "std_error"])
    return True


def _check_laplace(est, obj, x, record, bounds) -> None:
    """Warn when the optimum of adaptive quadrature lies more than
    ``quadrature_check.SHIFT_TOL`` standard errors from a Laplace fit (a converged fit of
    a model quadrature can fit, one grouping factor of up to three random effects, within
    the check's budget of rows: ``quadrature_check.applicable``). ``record.
    quadrature_shift``: that distance where the Newton step of the quadrature objective
    exceeded ``SCREEN_TOL`` (and it was fitted), else the step's length."""
    from ._engine import quadrature_check as qc

    if not record.converged or not qc.applicable(obj, getattr(obj, "n_agq", 1)):
        return
    with single_threaded_blas():
        step, distance = qc.quadrature_shift(obj, x, record.hessian, bounds)
    record.quadrature_shift = step if distance is None else distance
    if distance is None or not distance > qc.SHIFT_TOL:
        return
    warn(
        "the Laplace approximation is poor for these data: the optimum of adaptive "
        f"Gauss-Hermite quadrature ({qc.CHECK_NODES} nodes per random effect) lies "
        f"{distance:.2g} standard errors from this fit in some parameter "
        "(fit_record_.quadrature_shift). Refit with n_agq=9 or more (lme4's nAGQ) and "
        "report that fit.",
        ApproximationWarning,
        stacklevel=user_stacklevel(),
    )


def _flat_leader_names(est, record) -> list:
    """The reported names of the parameters that lead the Hessian's flat directions."""
    from ._engine.curvature import flat_leaders

    H, x = getattr(record, "hessian", None), getattr(record, "final", None)
    if not record.flat_directions or H is None or x is None:
        return []
    names = _optimiser_names(est)
    if names is None:
        return []
    return [names[k] for k in flat_leaders(H, np.asarray(x), est.fit_result_.bounds)]


def _separation(fam, data, beta_s, sc):
    """Whether the fixed effects are separated: None, ``"all"`` (every outcome the
    same: the intercept diverges) or ``(X, directions, columns)``, ``X`` the design
    with one column per predictor (:func:`unrotated`), the separating directions and
    the columns moving along them (``_engine.separation.separating_directions``)."""
    if not getattr(fam, "glm_separation", True):
        return None  # a family whose separation this test does not describe checks its own
    use = data.weights > 0
    if use.all():  # every row: views, not copies of the rows' size
        use = slice(None)
    y, t = data.y[use], data.trials[use]
    if fam.has_trials:
        # masks of bools, not copies of the rows with trials
        tried = t > 0
        all_same = not np.any(tried & (y > 0)) or not np.any(tried & (y < t))
    else:
        all_same = bool(np.all(y <= 0))
    if all_same:
        return "all"
    # Along a separating direction the optimiser drives the linear predictor of the
    # separated rows far out: the linear programme is only needed when it did.
    eta = (data.X @ beta_s + data.offset)[use]
    if fam.has_trials:
        suspicious = np.max(np.abs(eta)) > 5.0
    else:
        suspicious = np.min(eta) < np.log(np.average(y, weights=data.weights[use])) - 5.0
    if not suspicious:
        return None
    X_user, _ = unrotated(sc, data.X)  # one column per predictor
    found = separating_directions(X_user, data.y, data.trials, data.weights, fam.has_trials)
    return None if found is None else (X_user, *found)


def _check_separation(est, data, beta_s, found):
    """Warn, naming the predictors, when some fixed effects have an infinite MLE
    (``found``: :func:`_separation`'s answer on the rows ``data``)."""
    fam = est.fit_result_.family
    sc = est.fit_result_.scaling
    if found is None:
        return
    if isinstance(found, str):
        msg = separation_message([], fam.has_trials, True)
        warn(msg, SeparationWarning, stacklevel=user_stacklevel())
        return
    X_user, _, cols = found
    _, beta_s = unrotated(sc, None, beta_s)
    k0 = int(sc["intercept"])
    slopes = [j for j in cols if j >= k0]
    if len(slopes) > 1:
        # name the predictors without which the data are no longer separated; when
        # there are none (several separate on their own), the main components of the
        # direction the optimiser went out along
        needed = [
            j
            for j in slopes
            if separated_coefficients(
                np.delete(X_user, j, axis=1), data.y, data.trials, data.weights, fam.has_trials
            )
            is None
        ]
        if needed:
            slopes = needed
        else:
            size = np.abs(beta_s[slopes])
            slopes = [j for j, a in zip(slopes, size) if a >= 0.1 * size.max()]
    names = [est.fit_result_.fixed_names[sc["kept"][j - k0]] for j in slopes]
    if not names:
        names = [INTERCEPT]
    msg = separation_message(names, fam.has_trials, False)
    warn(msg, SeparationWarning, stacklevel=user_stacklevel())


def separation_with_limit(record, x, bounds, data, sc, obj=None):
    """:func:`_separation` of the fit at ``x`` on the rows ``data``; where predictors
    separate, ``record.covariance`` becomes the limit model's
    (:func:`_limit_covariance`) and the checks at the optimum are those of the limit
    model (:func:`_judge_off`; the gradient's only with the objective ``obj``).
    Returns the separation (for :func:`_check_separation`)."""
    found = _separation(data.family, data, x[: data.n_beta], sc)
    if found is not None and not isinstance(found, str):
        _limit_covariance(record, x, bounds, data, sc, found, obj)
    return found


def _limit_covariance(record, x, bounds, data, sc, separation, obj=None) -> None:
    """The covariance of the separated fit's limit model, where it is determined.

    Along a separating direction the likelihood rises towards a limit in which the
    separated rows are fitted exactly and carry no information: the limit model is the
    model of the other rows, where the fixed effects are determined up to the null
    space ``F`` of those rows' design. The Hessian at the fit's (finite) point is flat
    along ``F`` only numerically, so the eigen-analysis of ``curvature.curvature`` finds the
    flat directions with components of rounding size on every parameter and leaves
    every fixed effect NaN (lme4 prints finite standard errors for the unaffected
    ones). Here ``F`` is known exactly: the covariance is the inverse of the Hessian
    on the complement of ``F`` (the same whichever complement, in the limit), NaN for
    the internal parameters that move along ``F``. When the complement still has a
    flat or negative direction, the covariance stays as ``curvature.curvature`` made it.
    """
    H, V = record.hessian, record.covariance
    if not record.flat_directions or H is None or V is None:
        return
    X_user, directions, _ = separation
    fam = data.family
    used = data.weights > 0
    if fam.has_trials:
        used &= data.trials > 0
    keep = used & ~separated_rows(X_user, directions)
    K = X_user[keep]
    G = K.T @ K
    evals, evecs = np.linalg.eigh(G)
    null = evals <= 1e-10 * max(float(evals[-1]), 1e-300)
    if not null.any():
        return
    F = evecs[:, null]
    k0 = int(sc["intercept"])
    if "rotation_inverse" in sc:  # the internal (decorrelated) coordinates
        F = F.copy()
        F[k0:] = sc["rotation_inverse"] @ F[k0:]
    full = np.zeros((len(x), F.shape[1]))
    full[: data.n_beta] = F
    full = np.hstack([full, _block_null_space(data, keep, len(x))])
    _judge_off(record, obj, x, _covariance_off(record, x, bounds, full, flat_only=True))


def _block_null_space(data, keep, n_params) -> np.ndarray:
    """Directions (columns, in the parameter vector) of the family's blocks with a
    design that the rows ``keep`` do not see: a separated row's mean is 0 (or its
    trials' all or none) in the limit, and its likelihood, 1, whatever its zero
    inflation or dispersion, so a block's coefficients that move only those rows' values
    (``zi ~ x2`` where every ``x2 = 1`` row is separated) are not determined either. A
    hurdle's zeros are not fitted by the mean: none there."""
    designs = getattr(data, "extra_designs", None)
    if designs is None or getattr(data.family, "rows_reading_eta", None) is not None:
        return np.zeros((n_params, 0))
    cols = []
    k = n_params - data.n_extra
    for D in designs:
        width = 1 if D is None else D.shape[1]
        if D is not None:
            K = D[keep]
            evals, evecs = np.linalg.eigh(K.T @ K)
            null = evals <= 1e-10 * max(float(evals[-1]), 1e-300)
            for v in evecs[:, null].T:
                col = np.zeros(n_params)
                col[k : k + width] = v
                cols.append(col)
        k += width
    return np.array(cols).T.reshape(n_params, len(cols))


def _flat_along(Hf, F) -> bool:
    """Whether the Hessian ``Hf`` is flat along every column of ``F`` (relative to its
    largest curvature, below 1e-6), on its unit-diagonal scale (as ``curvature.curvature``
    reads it) or on the optimiser's scale (standardised predictors).

    A coefficient that only separated rows inform (``x:grp`` in ``y ~ x * grp`` where
    every ``grp = 1`` row is a success) has a unit diagonal on the first scale however
    little weight those rows keep, so its direction is never flat there; on the
    second its curvature is those rows' weight, which vanishes along the separation.
    """
    d = np.sqrt(np.clip(np.diag(Hf), 1e-300, None))
    for s in (d, np.ones_like(d)):
        Hs = Hf / np.outer(s, s)
        Fs = F * s[:, None]
        Fs = Fs / np.linalg.norm(Fs, axis=0)
        top = float(np.max(np.abs(np.linalg.eigvalsh(Hs))))
        if np.max(np.abs(np.einsum("ik,ij,jk->k", Fs, Hs, Fs))) <= 1e-6 * top:
            return True
    return False


def _covariance_off(record, x, bounds, full, flat_only=False):
    """``record.covariance`` made the inverse of the Hessian on the complement of the
    directions ``full`` (columns, in the parameter vector), NaN for the parameters that
    move along them; left as it is when the complement is not positive definite (or,
    ``flat_only``, when the Hessian is not flat along them). Returns ``(free, N)``, the
    free parameters and a basis of the complement among them, or None when left."""
    from ._engine.curvature import _pseudo_inverse, at_bound

    H, V = record.hessian, record.covariance
    if H is None or V is None:
        return
    free = ~at_bound(x, bounds)
    Ff = full[free]
    if not np.all(np.isfinite(H[np.ix_(free, free)])) or np.linalg.matrix_rank(Ff) < full.shape[1]:
        return
    Hf = H[np.ix_(free, free)]
    if flat_only and not _flat_along(Hf, Ff):
        return
    Q = np.linalg.qr(Ff, mode="complete")[0]
    N = Q[:, full.shape[1] :]
    inv, flat, negative = _pseudo_inverse(N.T @ Hf @ N)
    if flat or negative:
        return
    Vf = N @ inv @ N.T
    if flat_only or getattr(record, "limit_covariance", None) is None:
        # a function whose gradient is orthogonal to F (the linear predictor of rows that
        # are not separated; a zero-inflation intercept beside a ridge) has this variance
        # in the limit model (a separation's is kept where a ridge follows it)
        whole = np.full_like(V, np.nan)
        whole[np.ix_(free, free)] = 2.0 * Vf
        record.limit_covariance = (whole, full)
    moving = np.any(np.abs(Ff) > 1e-8 * np.max(np.abs(Ff)), axis=1)
    Vf[moving, :] = np.nan
    Vf[:, moving] = np.nan
    out = np.full_like(V, np.nan)
    out[np.ix_(free, free)] = 2.0 * Vf
    record.covariance = out
    return free, N


def ridge_end_covariance(record, x, bounds, data, obj) -> None:
    """The covariance of the model at the end of a family block's ridge, or of the
    family's ridge to its limit distribution.

    A zero-inflation (or dispersion) design whose value on some rows is past the
    block's flat side (``logit pi < -7``: no excess zeros for one value of a binary
    predictor) runs along a ridge on which only those rows' values move, towards a
    model where they are at the boundary. The Hessian at the fit's point still couples
    the other parameters with the direction along the ridge (a small curvature there,
    not flat enough for ``curvature.curvature`` to leave it out), which inflated their
    standard errors by up to 10 % and the block intercept's by half, against the
    model at the ridge's end (glmmTMB's numbers). The ridge's directions are the
    block coefficients' null space on the other rows (every coefficient of the block
    where every row is past it: a dispersion formula on counts without overdispersion,
    whose Hessian read a saddle there in 9 of 24 generated data sets); the covariance
    is the inverse of the Hessian on their complement, NaN for the parameters moving
    along them. A fit on the family's ridge to its limit (:func:`on_limit_ridge`: the
    zero-truncated NB2's intercept and log theta, down together) has the limit model's
    flat directions among them (``limit_ridge.limit_model_directions``); their
    parameters get no covariance even where the complement's Hessian cannot be
    inverted."""
    if record.covariance is None:
        return
    directions = _block_ridge_directions(x, data)
    limit = limit_model_directions(data) if on_limit_ridge(record) else None
    if limit is not None:
        directions += list(limit.T)
        # a parameter moving along the limit's ridge is free whatever its box bound (log
        # theta stopped on its bound of -10 on the ridge, which goes on past it: held
        # there, the identified intercept minus log theta was held too, and a slope's
        # standard error came out 11 % small)
        moving = set(_moving(limit).tolist())
        bounds = [(None, None) if k in moving else b for k, b in enumerate(bounds)]
    if not directions:
        return
    done = _covariance_off(record, x, bounds, np.column_stack(directions))
    if done is None and limit is not None:
        without_covariance(record.covariance, [_moving(limit)])
    _judge_off(record, obj, x, done)


def _moving(directions) -> np.ndarray:
    """The parameters (indices) that move along the columns of ``directions``."""
    scale = max(float(np.max(np.abs(directions), initial=0.0)), 1e-300)
    return np.flatnonzero(np.any(np.abs(directions) > 1e-8 * scale, axis=1))


def _block_ridge_directions(x, data) -> list:
    """The directions (in the parameter vector) of the family blocks' ridges, for
    :func:`ridge_end_covariance`."""
    if data.extra_designs is None or not data.n_extra:
        return []
    first = len(x) - data.n_extra
    used = np.asarray(data.weights) > 0
    directions = []
    j = first
    for b, D in zip(data.family.blocks, data.extra_designs):
        w = 1 if D is None else D.shape[1]
        if D is not None and b.flat_side is not None:
            past, N = ridge_end_null(b, D, x[j : j + w], used)
            if past.any() and N is not None:
                for k in range(N.shape[1]):
                    col = np.zeros(len(x))
                    col[j : j + w] = N[:, k]
                    directions.append(col)
            elif past.any():  # every row past it: the whole block runs to its limit
                for k in range(w):
                    col = np.zeros(len(x))
                    col[j + k] = 1.0
                    directions.append(col)
        j += w
    return directions


def on_limit_ridge(record) -> bool:
    """Whether the fit lies on its family's ridge to a limit distribution: the
    objective further along it (``FitRecord.limit_gain``) is no worse than at the
    fit's point, within ``FLAT_TOL``."""
    gain = getattr(record, "limit_gain", None)
    return gain is not None and gain >= -FLAT_TOL


def _judge_off(record, obj, x, done) -> None:
    """The checks at the optimum on the complement of directions along which the
    likelihood keeps rising ever more slowly (a ridge, a separation): a negative
    curvature or a gradient along them is not a failure to reach the optimum of the
    model at their end. ``done``: :func:`_covariance_off`'s answer (None: unchanged);
    ``obj``: the objective, for the gradient (None: its check is left as it was)."""
    if done is None:
        return
    from ._engine.converge import judge
    from ._engine.curvature import scaled_gradient

    free, N = done
    before = record.converged
    judge(record)
    # a record whose verdict has another reason than its checks (a refit's restart that
    # stopped at its iteration limit) is not made converged here
    explained = record.converged == before
    record.negative_curvature = False  # the complement is positive definite (done)
    if obj is not None:  # (without it, the gradient's check stays that of every direction)
        HN = N.T @ record.hessian[np.ix_(free, free)] @ N
        gN = N.T @ np.asarray(obj.value_and_grad(x)[1], dtype=float)[free]
        unbounded = [(None, None)] * len(gN)
        record.max_scaled_grad = scaled_gradient(gN, HN, np.zeros(len(gN)), unbounded)[1]
        record.gradient_ok = record.max_scaled_grad <= GRAD_TOL
    judge(record)
    if not explained:
        record.converged = bool(before and record.converged)


def _check_identifiable(est, data):
    """Warn when a factor's variance cannot be estimated from its levels."""
    fam = est.fit_result_.family
    binary = fam.has_trials and bool(np.all(data.trials[data.weights > 0] <= 1))
    for f in est.fit_result_.factors:
        counts = np.bincount(f.codes[data.weights > 0], minlength=f.n_levels)
        counts = counts[counts > 0]
        if len(counts) <= 1:
            why = (
                "has a single level: a variance cannot be estimated from one group (lme4 "
                "refuses such a model). Use a fixed effect, or no random effect, instead."
            )
        elif counts.max() == 1 and (binary or fam.latent_error or f.q > 1 or not f.term.intercept):
            why = (
                "has one observation per level: "
                + (
                    "with a binary outcome an observation-level random intercept is not "
                    "identifiable (it is confounded with the Bernoulli variance). "
                    if binary
                    else "random slopes need several observations per level. "
                    if f.q > 1 or not f.term.intercept
                    else "with an ordinal outcome an observation-level random intercept is "
                    "not identifiable (it is confounded with the latent variable's own error; "
                    "only the link's shape tells them apart). "
                )
                + "Its variance estimate is arbitrary; remove this random effect."
            )
        else:
            continue
        warn(
            f"grouping factor {f.name!r} {why}",
            IdentifiabilityWarning,
            stacklevel=user_stacklevel(),
        )


# a random-effect SD above this on the logit scale (odds ratios of e^10 between
# typical groups) is checked for groups whose outcomes are all 0 or all 1
_LARGE_LOGIT_SD = 5.0


def random_part_sd(data, k, L) -> float:
    """The SD of factor ``k``'s random part of the linear predictor, root mean square
    over the rows in the likelihood: ``sqrt(mean z'Sz)``, with ``L`` its internal
    ``Lambda``. It does not depend on the units or the origin of its slope variables
    (the intercept's SD alone is that at slope variables of zero, which may lie far
    from the data); with random intercepts only, it is their SD. Without the rows (a
    fit by partitions, whose checks read per-level sums): from the rows' mean of
    ``z z'`` (``data.z_moments``, pooled over the partitions), ``sqrt(tr(L' M L))``."""
    if getattr(data, "factors", None) is None:
        L = np.asarray(L, dtype=float)
        return float(np.sqrt(max(np.trace(L.T @ data.z_moments @ L), 0.0)))
    use = data.weights > 0
    if not use.any():
        return 0.0
    var = np.sum((data.factors[k].Z[use] @ L) ** 2, axis=1)
    return float(np.sqrt(np.mean(var)))


def separated_groups(fam, data, y, factor, k, L):
    """The groups of ``factor`` (the ``k``-th, internal ``Lambda`` ``L``) whose outcomes
    ``y`` are all at one end, where the SD of its random part
    (:func:`random_part_sd`) is above :data:`_LARGE_LOGIT_SD`; None where it has no
    intercept, a smaller SD or no such group (group-level separation, see
    :func:`_check_group_separation`)."""
    factors = getattr(data, "factors", None)
    structured = factors is not None and bool(getattr(factors[k], "mapped", False))
    if not (factor.term.intercept or structured) or random_part_sd(data, k, L) <= _LARGE_LOGIT_SD:
        return None
    use = data.weights > 0
    cells = _structure_cells(factors[k]) if structured else None
    if cells is not None:  # a structure's random effects: one per level and time point
        sep = fam.separated_levels(y, data.trials, cells, factors[k].n_levels * factors[k].q, use)
    elif factor.term.intercept:
        sep = fam.separated_levels(y, data.trials, factor.codes, factor.n_levels, use)
    else:
        return None
    return sep if sep is not None and sep.any() else None


def _structure_cells(f):
    """For the factor ``f`` of a covariance structure over time points (``ar1``, ``cs``,
    ``toep``, ``ou``: one random effect per level and time point, each row reading one
    of them), each row's cell ``level * q + time`` (of ``n_levels * q``); None where a
    row reads several. A cell's effect is a random effect of its own: with one binary
    outcome in it (a person measured once a day) every cell is separated, and a large
    SD of the structure rests on the cells alone."""
    nonzero = f.Z != 0.0
    if not np.all(nonzero.sum(axis=1) <= 1):
        return None
    return f.codes * f.q + np.argmax(nonzero, axis=1)


def _check_group_separation(est, data):
    """Warn when a large random-intercept variance rests on separated groups.

    A group whose outcomes are all 0 (or all successes; an ordinal group's all in the
    lowest or all in the highest class: ``Family.separated_levels``) has a conditional
    mode that runs towards infinity with the variance; with several such groups the
    variance estimate grows without the data supporting it (lme4 and ordinal::clmm
    report the same large value, silently). The warning names the groups.
    """
    res = est.fit_result_
    fam = res.family
    for k, (f, L) in enumerate(zip(res.factors, res.internal_lambdas())):
        sep = separated_groups(fam, data, data.y, f, k, L)
        if sep is None:
            continue
        sd = random_part_sd(data, k, L)
        more = f" and {int(sep.sum()) - 10} more" if sep.sum() > 10 else ""
        what = "random-intercept SD" if f.q == 1 else "SD of the random effects (over its rows)"
        if len(sep) == f.n_levels:
            labels = [str(v) for v in f.levels[sep][:10]]
            where = f"{int(sep.sum())} of its {f.n_levels} groups"
            advice = "consider fewer random effects, pooling those groups"
        else:  # a structure's (level, time) cells (_structure_cells)
            q = len(sep) // f.n_levels
            labels = [f"{f.levels[c // q]}:{c % q + 1}" for c in np.flatnonzero(sep)[:10]]
            where = (
                f"{int(sep.sum())} of its {len(sep)} cells (group:time point, each with a "
                "random effect of its own)"
            )
            advice = (
                "the Laplace approximation is also poor there, and its optimum need not be "
                "the likelihood's (several outcomes per cell identify a structure; with "
                "one, consider a random intercept or a structure with fewer parameters"
            )
        warn(
            f"the {what} of grouping factor {f.name!r} is {sd:.3g} on the "
            f"{fam.link.scale_name} scale, and {where} "
            f"have {fam.separated_outcomes} (group-level separation): {labels}{more}. Their "
            "effects are not identified by the data, and the variance estimate is driven by "
            f"them; {advice}, or a Bayesian prior on the variance"
            + (")." if len(sep) != f.n_levels else "."),
            SeparationWarning,
            stacklevel=user_stacklevel(),
        )


def _parameter_names(est, indices) -> str:
    """Covariance parameters by index into the parameter vector, as ``factor: term``."""
    res = est.fit_result_
    k0, out = res.layout.n_beta, []
    for f, fl in zip(res.factors, res.layout.factors):
        n = len(fl.theta_rows) if fl.structure is None else fl.structure.n_params
        for k in indices:
            j = k - k0
            if 0 <= j < n:
                term = f.term.names[fl.theta_rows[j]] if fl.structure is None else f"SD {j}"
                out.append(f"{f.name}: {term}")
        k0 += n
    return ", ".join(out)


# a conditional mode flatter than this (its curvature relative to the prior's) at a fit
# that did not converge is named as the likely cause: the Laplace approximation's
# -log(curvature) / 2 rises without bound as a mode flattens (zero-truncated NB1 fits on
# counts nearly all 1 stopped with curvatures of 1e-3 to 0.052 and scaled gradients of
# 198 to 3e4, where adaptive quadrature converged at the optimum); a log-concave family's
# modes have curvatures of at least 1
FLAT_MODE_HINT = 0.1


def _flat_mode_message(est, record) -> str | None:
    """The words for a fit that did not converge beside a nearly flat conditional mode
    (``record.flattest_mode`` below :data:`FLAT_MODE_HINT`), or None."""
    flattest = getattr(record, "flattest_mode", None)
    if flattest is None or not flattest[1] < FLAT_MODE_HINT:
        return None
    factor = est.fit_result_.factors[0]
    level = str(factor.levels[flattest[0]])
    return (
        f"the conditional density of level {level!r} of {factor.name!r} is nearly flat at "
        f"its mode (curvature {flattest[1]:.2g} of the prior's), where the Laplace "
        "approximation is poor: its -log(curvature) / 2 term rises without bound as the "
        "mode flattens, and can draw the optimiser there. Refit with adaptive quadrature "
        "(n_agq of 10 to 25) and report that fit"
    )


def _check_convergence(est, record):
    """Warn when the fit did not reach the optimum (checked for every fit, boundary or not)."""
    msgs = []
    if record.n_iter >= est.max_iter:
        msgs.append(f"the optimiser stopped after max_iter={est.max_iter} iterations")
    if not record.gradient_ok:
        msgs.append(
            f"the scaled gradient at the optimum is {record.max_scaled_grad:.3g} (> {GRAD_TOL})"
        )
    rivals = getattr(record, "competing_modes", None)
    if rivals is not None and len(rivals):
        factor = est.fit_result_.factors[0]
        levels = [str(v) for v in factor.levels[rivals][:10]]
        why = (
            "; zeros explained by the count part or by the zero inflation"
            if est.fit_result_.family.zero_inflated
            else ""
        )
        misses = getattr(record, "quadrature_misses", None)
        if misses is None:
            msgs.append(
                f"the conditional distribution of the random effect has two comparable "
                f"modes (or a nearly flat top) in {len(rivals)} level(s) of {factor.name!r} "
                f"({levels}{why}), where the Laplace approximation, taken at one mode, "
                "jumps between them and its optimum cannot be certified (adaptive "
                "quadrature integrates over both modes only where its nodes, centred at "
                "one, reach the other: try a large n_agq, 25 to 50, and keep it where the "
                "fit converges and loglik_ no longer moves with n_agq)"
            )
        else:
            worst = float(np.max(np.abs(misses)))
            msgs.append(
                f"the conditional distribution of the random effect has two comparable "
                f"modes in {len(rivals)} level(s) of {factor.name!r} ({levels}{why}), "
                f"where the quadrature's {est.n_agq} nodes, centred at one mode, miss the "
                f"other's mass: centred at either, the level's log-likelihood is off by up "
                f"to {worst:.3g} (against the integral on a fine grid), and the objective "
                "jumps where the modes swap, so loglik_ and the optimum are not the maximum "
                "likelihood's; increase n_agq (25 to 50) until the fit converges and "
                "loglik_ no longer moves with n_agq"
            )
    rising = getattr(record, "rising_off_zero", ())
    if rising:
        names = _parameter_names(est, rising)
        msgs.append(
            f"a random-effect standard deviation is reported at zero ({names}), but the "
            "log-likelihood is higher just above zero: that zero is not its maximum"
        )
    if record.negative_curvature:
        msgs.append(
            "the Hessian of the log-likelihood has a direction of negative curvature (a saddle "
            "point, not a maximum)"
        )
    no_rivals = rivals is None or not len(rivals)
    flat = _flat_mode_message(est, record) if msgs and no_rivals else None
    if flat:
        msgs.append(flat)
    if not record.converged and not msgs:  # never a silent converged_ = False
        msgs.append(
            "the optimisation did not end at a finite log-likelihood or within its "
            f"iteration limit ({record.message})"
        )
    if msgs:
        record.converged = False
        warn(
            "Model failed to converge: " + "; ".join(msgs) + ". Try rescaling predictors, "
            "simplifying random_effects, or increasing max_iter.",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )
