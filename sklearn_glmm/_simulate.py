"""Simulation from a fitted model and the parametric bootstrap.

Everything works on the training rows through the objective's frozen
:class:`~sklearn_glmm._engine.objective.ModelData` (internal design, trials, offset,
weights), so no original data need be kept and a bootstrap refit skips input
validation: it builds a new objective with the simulated outcome and reruns
:func:`~sklearn_glmm._engine.optimize.fit_objective` from the fitted parameters.

Replicates are refitted in fixed groups (:func:`_boot_chunk_size`; :func:`refit_many`):
where :func:`~sklearn_glmm._engine.batched.can_batch` allows, each keeps its own
optimiser and their evaluations are computed together
(:mod:`sklearn_glmm._engine.batched`). Every refit is gradient-checked where its
optimiser stopped (:func:`_fit_and_check`); one that fails is resumed once, rescaled.
A refit that passes has its own Hessian's curvature checked there as a fit's is (a
saddle, or a zero variance the likelihood rises off, is not converged). A refit that
fails these checks is fitted afresh as the estimator fits (:func:`_fresh_fit`), and is a
NaN row only where that fit does not converge either.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from functools import partial

import numpy as np
from sklearn.utils import check_random_state

from ._config import with_config
from ._engine.batch_member import BatchMember
from ._engine.batched import BatchedLaplace, can_batch
from ._engine.blas import single_threaded_blas
from ._engine.converge import check_curvature
from ._engine.curvature import GRAD_TOL, at_bound
from ._engine.fit_checked import fit_checked
from ._engine.lockstep import new_lockstep
from ._engine.nested_models import bound_from_start, limit_bounds
from ._engine.objective import GLMObjective, Objective, lambda_matrices
from ._engine.optimize import fit_objective
from ._engine.polish import RISE_TOL
from ._engine.refit import whitened_refit, whitening
from ._engine.stage import _laplace_stage, projected_gradient
from ._engine.start import _SUBSAMPLE_ROWS, starting_point
from ._fit_result import fitted_n_agq
from ._progress import Progress
from ._results import fitted_eta
from ._state import carrying_data
from ._validation import check_bool, check_positive_count
from ._warn import quiet


def _rng(random_state) -> np.random.Generator:
    """A numpy Generator from None, an int, a Generator or a legacy RandomState."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    return np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))


def check_unweighted(est, what: str) -> None:
    """Refuse a parametric bootstrap of a model fitted with prior weights (other than 0
    and 1): the weights are not part of the model that generates outcomes, so
    refitting simulated outcomes with them gives intervals of the wrong width (a row
    of weight 2 is one draw counted twice, not two draws)."""
    w = est.fit_result_.objective.data.weights
    if np.any((w != 0.0) & (w != 1.0)):
        raise ValueError(
            f"{what} cannot bootstrap a model fitted with sample_weight other than 0 and 1: "
            "it simulates new outcomes, and prior weights are not part of the model that "
            "generates them (refitting the simulated outcomes with the weights gives "
            "intervals of the wrong width). Use method='profile' or method='wald', or for "
            "frequency weights repeat each row as often as its weight and bootstrap that fit."
        )


def simulate_eta(est, n_sim: int, rng, new_random_effects: bool = True) -> np.ndarray:
    """Linear predictors of the training rows, shape (n_samples, n_sim).

    ``new_random_effects=True`` draws ``u ~ N(0, I)`` for every level
    (lme4's ``simulate(use.u = FALSE)``); ``False`` keeps the conditional modes
    (``use.u = TRUE``).
    """
    res = est.fit_result_
    d = res.objective.data
    if not new_random_effects or not d.factors:
        return np.repeat(res.train["eta"][:, None], n_sim, axis=1)
    beta, theta = res.beta, res.theta
    eta = np.repeat((d.X @ beta + d.offset)[:, None], n_sim, axis=1)
    for f, L in zip(d.factors, lambda_matrices(d, theta)):
        U = rng.standard_normal((f.n_levels, f.q, n_sim))
        B = np.einsum("ij,gjs->gis", L, U)  # b = Lambda u on the internal (scaled) Z
        eta += np.einsum("nq,nqs->ns", f.Z, B[f.codes])
    return eta


def simulate_response(est, n_sim: int = 1, random_state=None, new_random_effects=True):
    """Draw outcomes for the training rows from the fitted model, shape (n_samples, n_sim).

    Binomial outcomes are numbers of successes out of the rows' trials (0/1 for
    a binary outcome, 1 the modelled class ``pos_label_``).
    """
    check_positive_count(n_sim, "n_sim")
    new_random_effects = check_bool(new_random_effects, "new_random_effects")
    rng = _rng(random_state)
    eta = simulate_eta(est, int(n_sim), rng, new_random_effects)
    fam, d = est.fit_result_.family, est.fit_result_.objective.data
    extra = est.fit_result_.family_values(column=True)  # per-row zero inflation as a column
    trials = d.trials[:, None] * np.ones((1, eta.shape[1]))
    return fam.sample_eta(eta, trials, extra, rng)


def _refit_setup(est):
    """What every refit of ``est`` shares: its fit result, bounds, zero-diagonal indices,
    the Hessian at the fitted optimum (for the gradient check) and the whitening of the
    refits' coordinates by it (``_engine.refit``; None where the refits run the
    ordinary way)."""
    res = est.fit_result_
    data = res.objective.data
    bounds = res.bounds
    diag_idx = [k for k, b in enumerate(bounds[: data.n_beta + data.n_theta]) if b[0] == 0.0]
    H = getattr(res.record, "hessian", None)
    A = None
    if _n_agq(est) == 1 and getattr(res.record, "hessian_pd", False):
        A = whitening(data, res.params, H, bounds)
    return res, bounds, diag_idx, H, A


def _fresh_start(obj):
    """A fresh fit's start on ``obj``'s outcome (``start.starting_point``)."""
    with np.errstate(all="ignore"):
        return starting_point(obj)


def _fit_and_check(est, obj, setup):
    """Fit ``obj`` from the fitted parameters (and, for a random slope of a predictor
    of the level itself, from a fresh fit's start and the starts made from it:
    ``restarts._level_slope_restarts``); ``(x, record)``.

    The record's ``converged`` includes a gradient check at the optimiser's end point:
    lme4's scaled gradient ``solve(chol(H), g)`` with the fitted model's Hessian ``H``
    (a replicate's Hessian is close to it; :func:`_gradient_sizes`) at most
    :data:`~sklearn_glmm._engine.curvature.GRAD_TOL` over the parameters off their
    bounds. The gradient there is remembered by the objective: the check costs no
    evaluation. A refit that passes it gets the curvature checks of a fit's
    (:func:`~sklearn_glmm._engine.converge.check_curvature`, with the replicate's own
    Hessian at its end): where that Hessian has a direction of negative curvature (a
    saddle: a binary random slope's replicate ended there 0.44 in -2 log L above its
    outcome's optimum) or a zero variance the likelihood rises off, it is not
    converged. The Hessian is in closed form where a fit's is, else two evaluations per
    parameter; in a batch of refits the closed form is computed for the replicates
    asking at once (``BatchedLaplace.hessians``: 0.6 ms a replicate of the app-logins
    random slopes, 1,500 rows, where each replicate's own, its per-row state made again
    first, took 1.0 ms).
    A refit that fails the checks is fitted afresh (:func:`_fresh_fit`: its own start,
    every check at the optimum), and that fit is returned where it converges and ends
    no higher than the refit (by :data:`~sklearn_glmm._engine.polish.RISE_TOL`; its
    record's first stage ``"refit not converged"`` with the refit's objective); else
    the refit's.
    """
    res, bounds, diag_idx, H, A = setup
    # (a fresh fit's start, made where the model has a slope of a level predictor)
    base = functools.partial(_fresh_start, obj)
    if A is not None:  # on coordinates whitened by the fitted Hessian (_engine.refit)
        x, record = whitened_refit(
            obj, res.params, A, bounds, est.max_iter, est.tol, diag_idx, base
        )
    else:
        x, record = fit_objective(
            obj, res.params.copy(), bounds, est.max_iter, est.tol, diag_idx, base
        )
    if record.converged and np.all(np.isfinite(x)):
        # a family parameter's limit model, as a fit's checks read it where random
        # effects of one or two rows each can take what the parameter takes, and where
        # the fit ends on it (a family that is not log-concave)
        with np.errstate(all="ignore"):
            x, record.objective = limit_bounds(
                obj, x, record.objective, bounds, est.max_iter, est.tol, diag_idx, record
            )
            x, record.objective = bound_from_start(
                obj, x, record.objective, bounds, est.max_iter, est.tol, diag_idx, record
            )
        record.final = x
        _check_gradient(obj, x, record, H, bounds)
        if not record.gradient_ok and np.isfinite(record.objective):
            # as a fit's checks do (polish.rescaled_restart): resumed with every
            # parameter scaled by its curvature there, the family's too (L-BFGS-B stops
            # on the relative change of the objective, short of the optimum on a ridge)
            with np.errstate(all="ignore"):
                r = _laplace_stage(
                    obj, x, bounds, est.max_iter, est.tol, diag_idx, scale_extras=True
                )
            record.stages.append(("rescaled restart", float(r.fun), int(r.nit), str(r.message)))
            if r.fun < record.objective and np.all(np.isfinite(r.x)):
                x, record.objective, record.final = r.x, float(r.fun), r.x
                record.converged = r.nit < est.max_iter
                record.hit_max = record.hit_max or not record.converged
                _check_gradient(obj, x, record, H, bounds)
    if record.converged:
        with np.errstate(all="ignore"):
            check_curvature(obj, x, record, bounds, diag_idx)
    if not record.converged and np.isfinite(record.objective):
        # a refit that fails its checks (the gradient's after its rescaled restart, a
        # saddle, a zero variance the likelihood rises off) is fitted afresh, as
        # fit_many fits; kept where that fit converges (a failed replicate is dropped,
        # and the ones dropped would be those where the refit path went astray) and is
        # not above the refit's end (else an optimum lower than it exists: dropped)
        with np.errstate(all="ignore"):
            x_new, fresh = _fresh_fit(est, obj, bounds)
        if fresh.converged and fresh.objective <= record.objective + RISE_TOL:
            fresh.stages.insert(0, ("refit not converged", float(record.objective), 0, ""))
            return x_new, fresh
    return x, record


def _fresh_fit(est, obj, bounds, glm_fit=None):
    """A fit of ``obj``'s outcome as the estimator's own (its own start, the same
    optimiser, every check at the optimum) without its validation, design and tables;
    ``(x, FitRecord)``."""
    x0 = starting_point(obj, glm_fit)
    return fit_checked(obj, x0, bounds, est.max_iter, est.tol)


def _check_gradient(obj, x, record, H, bounds):
    """The gradient check of :func:`_fit_and_check` at ``x`` (record updated)."""
    with np.errstate(all="ignore"):
        val, g = obj.value_and_grad(x)
    record.max_grad, record.max_scaled_grad = _gradient_sizes(g, H, x, bounds)
    record.gradient_ok = bool(record.max_scaled_grad <= GRAD_TOL)
    record.converged = bool(record.converged and record.gradient_ok and np.isfinite(val))


def _gradient_sizes(g, H, x, bounds) -> tuple[float, float]:
    """(max |gradient|, max |scaled gradient|) over the parameters off their bounds.

    The scaled gradient is lme4's ``solve(chol(H), g)`` with the fitted model's Hessian
    ``H``; where ``H`` (on the free parameters) is not finite and positive definite,
    each component divided by the square root of its finite, positive diagonal entry
    (the component itself where there is none). Each no larger than the raw one.
    """
    if not np.all(np.isfinite(g)):
        return np.inf, np.inf
    free = ~at_bound(x, bounds)
    gf = projected_gradient(g, x, bounds)[free]
    if not len(gf):
        return 0.0, 0.0
    raw = float(np.max(np.abs(gf)))
    if H is None:
        return raw, raw
    Hf = H[np.ix_(free, free)]
    if np.all(np.isfinite(Hf)):
        try:
            sg = np.linalg.solve(np.linalg.cholesky(Hf), gf)
            return raw, float(np.max(np.minimum(np.abs(sg), np.abs(gf))))
        except np.linalg.LinAlgError:
            pass
    d = np.diag(Hf)
    ok = np.isfinite(d) & (d > 0)
    gf = np.abs(gf)
    sg = np.where(ok, gf / np.sqrt(np.where(ok, d, 1.0)), gf)
    return raw, float(np.max(np.minimum(sg, gf)))


def refit(est, y):
    """Refit the model to outcome ``y`` on the same rows, one by one; ``(x, FitRecord)``.

    The record's ``converged`` includes the gradient and curvature checks of
    :func:`_fit_and_check`.
    """
    setup = _refit_setup(est)
    with quiet():  # (the refits' own warnings: this thread's alone)
        return _fit_and_check(est, _objective(est, y), setup)


def conditional_eta(est, y):
    """Linear predictors of the training rows at the conditional modes of outcome ``y``
    with the fitted parameters held (None where the modes are not found)."""
    obj = _objective(est, y)
    if not np.isfinite(obj.evaluate(est.fit_result_.params)):
        return None
    return fitted_eta(obj.state)


#: values per batched array of :func:`conditional_etas` (replicates x rows), and the
#: most rows it batches: beyond about 3,000 rows one search at a time is as fast (CPU
#: time of 250 searches: 400 rows 0.06 s batched vs 0.25 s, 3,000 rows 0.41 vs 0.51,
#: 6,000 rows equal, 10,000 rows 1.18 vs 0.80)
_BATCH_VALUES = 2_000_000
_BATCH_MAX_ROWS = 3_000


def conditional_etas(est, Y):
    """:func:`conditional_eta` of every column of ``Y`` (n_samples, R): ``(n_samples, R)``,
    NaN columns where the modes are not found. Batched (:meth:`BatchedLaplace.
    conditional_etas`) where :func:`~sklearn_glmm._engine.batched.can_batch` allows and
    there are at most :data:`_BATCH_MAX_ROWS` rows, in chunks of about
    :data:`_BATCH_VALUES` values; one by one otherwise."""
    Y = np.asarray(Y, dtype=float)
    n, R = Y.shape
    out = np.full((n, R), np.nan)
    data, params = est.fit_result_.objective.data, est.fit_result_.params
    with np.errstate(all="ignore"):
        if not (data.factors and can_batch(data, _n_agq(est))) or n > _BATCH_MAX_ROWS:
            for r in range(R):
                eta = conditional_eta(est, Y[:, r])
                if eta is not None:
                    out[:, r] = eta
            return out
        step = max(1, _BATCH_VALUES // max(n, 1))
        for lo in range(0, R, step):
            ok, eta = BatchedLaplace(data, Y[:, lo : lo + step].T).conditional_etas(params)
            eta[~ok] = np.nan
            out[:, lo : lo + step] = eta.T
    return out


def _objective(est, y):
    """The fitted model's objective with outcome ``y`` on the same rows."""
    data = replace(est.fit_result_.objective.data, y=np.asarray(y, dtype=float))
    return Objective(data, _n_agq(est)) if data.factors else GLMObjective(data)


def _n_agq(est) -> int:
    """The quadrature nodes of the fit (refits use the fit's approximation, whatever
    the estimator's ``n_agq`` parameter says now)."""
    return fitted_n_agq(est) or 1


def refit_many(est, Y, batched: bool | None = None) -> list:
    """Refit the model to every column of ``Y`` (n_samples, R) on the same rows.

    Returns one ``(x, FitRecord)`` per column, or the exception the refit raised. Where
    :func:`~sklearn_glmm._engine.batched.can_batch` allows (and ``batched`` is not
    False), the refits run in lock-step with their evaluations batched
    (:mod:`sklearn_glmm._engine.batched`): each reaches the optimum :func:`refit` reaches,
    by the same optimiser. ``batched=None``: batched for two or more columns.
    """
    Y = np.asarray(Y, dtype=float)
    setup = _refit_setup(est)
    data = setup[0].objective.data
    R = Y.shape[1]
    if batched is None:
        batched = R > 1
    batched = batched and data.factors and can_batch(data, _n_agq(est))
    with quiet():  # (the refits' own warnings: this thread's alone)
        if not batched:
            out = []
            for r in range(R):
                obj = _objective(est, Y[:, r])
                try:
                    out.append(_fit_and_check(est, obj, setup))
                except Exception as exc:  # noqa: BLE001 - the caller decides what fails
                    out.append(exc)
            return out
        engine = BatchedLaplace(data, Y.T)
        lockstep = new_lockstep(engine)
        members = [BatchMember(engine.member_data(r), lockstep, r) for r in range(R)]
        tasks = [partial(_fit_and_check, est, m, setup) for m in members]
        with single_threaded_blas():  # entered once here: the tasks' own entries nest
            return lockstep.run(tasks)


def fit_many(est, Y, batched: bool | None = None) -> list:
    """Fit the model afresh to every column of ``Y`` (n_samples, R) on the same rows.

    Unlike :func:`refit_many` (the bootstrap's refits, started from the fitted
    estimate and checked there for the gradient and the curvature alone), each column
    gets what a fit of the estimator gets: its own starting point
    (:func:`~sklearn_glmm._engine.start.starting_point`), the same optimiser and
    every check at the optimum (:func:`~sklearn_glmm._engine.converge.check_optimum`:
    the nested GLM, the Newton polish and Hessian, zero variances). Returns one
    ``(x, FitRecord)`` per column (the record's ``covariance`` is the inverse Hessian
    on the optimiser's scale), or the exception the fit raised. Batched where
    :func:`~sklearn_glmm._engine.batched.can_batch` allows (two or more columns, and
    ``batched`` not False): each fit keeps its own optimiser and checks, their
    evaluations are computed together, and each reaches the optimum its fit one by one
    reaches (to the optimiser's tolerance: where the likelihood has several optima, a
    slope of a level predictor on counts near 4e4, the two paths' rounding differs
    enough for another optimum, 1.19 in -2 log L lower batched on one of 60
    outcomes). One by one, each is the estimator's own fit without its validation,
    design and tables (the same model data, start, optimiser and checks).
    """
    Y = np.asarray(Y, dtype=float)
    res = est.fit_result_
    data, bounds = res.objective.data, res.bounds
    R = Y.shape[1]
    batched = batched is not False and R > 1 and bool(data.factors)
    batched = batched and can_batch(data, _n_agq(est))

    def one(obj, glm_fit=None):
        return _fresh_fit(est, obj, bounds, glm_fit)

    with quiet():  # (the refits' own warnings: this thread's alone)
        if not batched:
            out = []
            for r in range(R):
                try:
                    out.append(one(_objective(est, Y[:, r])))
                except Exception as exc:  # noqa: BLE001 - the caller decides what fails
                    out.append(exc)
            return out
        engine = BatchedLaplace(data, Y.T)
        lockstep = new_lockstep(engine)
        members = [BatchMember(engine.member_data(r), lockstep, r) for r in range(R)]
        with single_threaded_blas():
            # the GLM starts of all of them in one pass where a fit makes its own on
            # every row (on a subset of large data's rows, each its own)
            starts = [None] * R
            if len(data.y) <= _SUBSAMPLE_ROWS:
                with np.errstate(all="ignore"):
                    beta0, F = engine.glm_starts()
                starts = [(beta0[r], float(F[r])) for r in range(R)]
            return lockstep.run([partial(one, m, s) for m, s in zip(members, starts)])


_REFIT_FAILURES = (np.linalg.LinAlgError, ValueError, FloatingPointError)


def separated_moves(est, y, x) -> np.ndarray | None:
    """For a refit to outcome ``y`` ending at ``x``: None when its fixed effects have
    a finite maximum, else the direction (+1, -1, 0 per reported fixed effect) in
    which each runs off along a separating direction of its data (the estimator's
    separation test, ``_fit_checks._separation``): +1 / -1 for a coefficient whose
    maximum-likelihood estimate is +inf / -inf, 0 for one left still."""
    from ._fit_checks import _separation
    from ._fit_result import beta_jacobian

    res = est.fit_result_
    data = replace(res.objective.data, y=np.asarray(y, dtype=float))
    p = data.n_beta
    found = _separation(data.family, data, np.asarray(x)[:p], res.scaling)
    if found is None:
        return None
    k0 = int(res.scaling["intercept"])
    move = np.zeros(p)
    if isinstance(found, str):  # every outcome the same: the intercept runs off
        if not k0:
            return None
        used = data.weights > 0
        high = bool(np.any(data.y[used] > 0))  # all successes (or counts above 0)
        move[0] = 1.0 if high else -1.0
        return move
    _, directions, _ = found
    # the directions are in the unrotated internal columns: the user's coefficients
    # move by J b (J without the decorrelating rotation)
    J = beta_jacobian({k: v for k, v in res.scaling.items() if k != "rotation"})
    for b in directions:
        d = J @ np.asarray(b, dtype=float)
        big = np.abs(d) > 1e-8 * max(float(np.max(np.abs(d))), 1e-300)
        move = np.where((move == 0) & big, np.sign(d), move)
    return move if np.any(move) else None


def group_separated(est, y, x) -> bool:
    """Whether a refit to outcome ``y`` ending at ``x`` has a random-intercept SD above
    the estimator's limit (5 on the log-odds scale) resting on groups whose outcomes
    are all at one end (``_fit_checks._check_group_separation``, which warns of such a
    fit): its variance is weakly determined, and large."""
    from ._engine.objective import lambda_matrices
    from ._fit_checks import separated_groups

    res = est.fit_result_
    data = res.objective.data
    p = data.n_beta
    lams = lambda_matrices(data, np.asarray(x)[p : p + data.n_theta])
    for k, (f, L) in enumerate(zip(res.factors, lams)):
        if separated_groups(data.family, data, y, f, k, L) is not None:
            return True
    return False


def _boot_chunk(est, seeds, new_random_effects):
    from ._param_map import ParamMap

    pmap = ParamMap(est)
    out = np.full((len(seeds), pmap.n), np.nan)
    ok = np.zeros(len(seeds), dtype=bool)
    separated = np.zeros(len(seeds), dtype=bool)
    grouped = np.zeros(len(seeds), dtype=bool)
    Y = np.column_stack(
        [
            simulate_response(est, 1, np.random.default_rng(seed), new_random_effects)[:, 0]
            for seed in seeds
        ]
    )
    for i, fitted in enumerate(refit_many(est, Y)):
        if isinstance(fitted, _REFIT_FAILURES):
            continue
        if isinstance(fitted, BaseException):
            raise fitted
        x, record = fitted
        if not np.all(np.isfinite(x)):
            continue
        move = separated_moves(est, Y[:, i], x)
        if move is not None:
            # no finite estimate: the coefficients that run off count as +-inf, the
            # rest (where the optimiser stopped along the ridge) as unknown
            out[i] = np.nan
            p = len(move)
            out[i, :p] = np.where(move > 0, np.inf, np.where(move < 0, -np.inf, np.nan))
            ok[i] = separated[i] = True
        elif record.converged:
            out[i] = pmap.to_phi(x)
            ok[i] = True
            grouped[i] = group_separated(est, Y[:, i], x)
    return out, ok, separated, grouped


# replicates refitted together (one batch, one task for joblib); fixed by the data, so
# that which replicates share a batch does not depend on n_jobs (nor do the results
# depend on it: a replicate's arithmetic is its own). Twice as many on small data,
# where the passes' per-call cost counts (app-logins, 1,500 rows, greenlets: 64 per
# batch 0.90x the time of 32 in four alternating runs, 128 0.90x, 256 1.02x); on large
# data a batch's arrays are replicates x rows
_BOOT_CHUNK = 32
_BOOT_CHUNK_SMALL = 64
_SMALL_ROWS = 5_000


def _boot_chunk_size(est) -> int:
    """Replicates per batch of a bootstrap of ``est``."""
    small = len(est.fit_result_.objective.data.y) <= _SMALL_ROWS
    return _BOOT_CHUNK_SMALL if small else _BOOT_CHUNK


def bootstrap_lrt(small, large, n_boot, random_state=None) -> np.ndarray:
    """Likelihood-ratio statistics ``2 (log L_large - log L_small)`` of ``n_boot`` data
    sets simulated from the fitted ``small`` model (the null hypothesis), each refitted
    by both models from their fitted parameters (:func:`refit_many`): the parametric
    bootstrap's reference distribution of the statistic (pbkrtest's ``PBmodcomp``).
    NaN where a refit failed or did not converge. Replicate ``i`` has its own child
    seed."""
    check_positive_count(n_boot, "n_boot")
    check_unweighted(small, "anova(..., n_boot=...)")
    seeds = child_seeds(random_state, n_boot)
    out = np.full(int(n_boot), np.nan)
    with single_threaded_blas():
        size = _boot_chunk_size(small)
        for c in np.array_split(np.arange(n_boot), int(np.ceil(n_boot / size))):
            Y = np.column_stack(
                [simulate_response(small, 1, np.random.default_rng(seeds[i]))[:, 0] for i in c]
            )
            for i, a, b in zip(c, refit_many(small, Y), refit_many(large, Y)):
                if isinstance(a, BaseException) or isinstance(b, BaseException):
                    continue
                ra, rb = a[1], b[1]
                if ra.converged and rb.converged and np.isfinite(ra.objective + rb.objective):
                    out[i] = max(ra.objective - rb.objective, 0.0)
    return out


def child_seeds(random_state, n: int) -> list:
    """One seed per replicate, spawned from ``random_state`` (replicate ``i`` draws from
    ``np.random.default_rng(seeds[i])`` however the replicates are chunked)."""
    return np.random.SeedSequence(_rng(random_state).integers(0, 2**63 - 1)).spawn(int(n))


def bootstrap_params(
    est,
    n_boot,
    random_state=None,
    n_jobs=None,
    progress=False,
    new_random_effects=True,
    with_separated=False,
):
    """Reported parameters of ``n_boot`` parametric-bootstrap refits.

    Returns ``(replicates, converged)``: an array of shape (n_boot, n_params)
    (NaN rows for refits that failed) and a boolean mask. Replicate ``i`` uses
    its own child seed, so results do not depend on ``n_jobs``. A replicate whose
    fixed effects are separated (no finite estimate, :func:`separated_moves`) has
    +-inf for the coefficients that run off and NaN for its other parameters, and
    counts as converged; ``with_separated`` also returns the mask of those and that of
    the replicates with group-level separation (:func:`group_separated`).
    """
    from joblib import Parallel, delayed

    check_positive_count(n_boot, "n_boot")
    check_unweighted(est, "confint(method='bootstrap')")
    seeds = child_seeds(random_state, n_boot)
    # at least four chunks (work for parallel workers, steps of the progress bar)
    n_chunks = max(min(4, int(n_boot)), int(np.ceil(n_boot / _boot_chunk_size(est))))
    chunks = [list(c) for c in np.array_split(np.arange(n_boot), n_chunks) if len(c)]
    bar = Progress(int(n_boot), progress, desc="bootstrap")
    results = []
    with single_threaded_blas():
        if n_jobs in (None, 1):
            for c in chunks:
                results.append(_boot_chunk(est, [seeds[i] for i in c], new_random_effects))
                bar.update(len(c))
        else:
            shipped = carrying_data(est)  # joblib workers receive the training data
            task = with_config(_boot_chunk)
            gen = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(task)(shipped, [seeds[i] for i in c], new_random_effects) for c in chunks
            )
            for c, r in zip(chunks, gen):
                results.append(r)
                bar.update(len(c))
    bar.close()
    reps = np.vstack([r[0] for r in results])
    ok = np.concatenate([r[1] for r in results])
    separated = np.concatenate([r[2] for r in results])
    grouped = np.concatenate([r[3] for r in results])
    return (reps, ok, separated, grouped) if with_separated else (reps, ok)
