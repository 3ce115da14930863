"""Variance components of a fitted GLMM on the latent (link) scale.

The definitions are those of R's ``insight::get_variance`` (insight 0.19), which
``performance::icc`` and ``performance::r2_nakagawa`` are built on (Nakagawa,
Johnson & Schielzeth 2017):

* fixed: ``var(X beta)`` over the training rows (n - 1 denominator, as R's ``var``);
  offsets and random effects are left out;
* random: for every grouping factor with fewer levels than rows, the mean over
  rows of ``z_i' Sigma z_i`` (``z_i`` the row's random-effect columns), summed
  over factors: ``Var(b0 + b1 x_i)`` averaged over the rows, which does not change
  when a slope variable is shifted (only a factor's *intercept* variance, read by the
  ICC by group, does);
* dispersion: the same quantity for observation-level factors (one level per
  row), which model overdispersion and so count as residual variance;
* distribution: the family's latent-scale variance -- pi^2 / 3 for the logit link;
  for log-link counts ``log(1 + V / mu^2)`` (the lognormal approximation), where
  ``mu = exp(b0)`` with ``b0`` the intercept of the *null model* (the same random
  effects, no covariates; insight 0.19's choice: Nakagawa et al. 2017, eq. 5.8, and
  later insight versions take its mean ``exp(b0 + sigma^2 / 2)``) and ``V`` the
  family's variance at ``mu``: ``mu`` for Poisson, ``mu (1 + mu / theta)`` for NB2
  (``theta`` of the full model); with zero inflation ``V`` is insight's
  ``mean((1 - p) (mu_i + p mu_i^2))`` (Poisson) or
  ``mean((1 - p) mu_i (1 + mu_i / theta) + mu_i^2 (p^2 + p))`` (NB2) over the
  rows' conditional count means ``mu_i``;
* residual = distribution + dispersion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ._fit_result import fitted_n_agq
from ._scaling import internal_lambda
from ._warn import quiet, user_stacklevel, warn

# insight's tolerance for a variance component treated as zero (a singular fit)
DEFAULT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class VarianceComponents:
    """Variance components on the latent scale (``insight::get_variance``).

    Attributes
    ----------
    fixed : float
        Variance of the fixed-effect linear predictor.
    random : float
        Summed random-effect variance of the grouping factors (NaN for a
        singular fit, where insight returns none).
    residual : float
        ``distribution + dispersion``.
    distribution : float
        Family-specific latent-scale variance (see the module notes).
    dispersion : float
        Variance of observation-level random effects (0 when there are none).
    intercept : dict of str to float
        Random-intercept variance of each grouping factor with an intercept.
    singular : bool
        Whether a Cholesky diagonal of a random-effect covariance is below the tolerance.
    null_mean : float or None
        ``exp(b0)``, ``b0`` the null model's intercept (count families only; not the
        null model's mean, ``exp(b0 + sigma^2 / 2)``).
    """

    fixed: float
    random: float
    residual: float
    distribution: float
    dispersion: float
    intercept: dict = field(default_factory=dict)
    singular: bool = False
    null_mean: float | None = None

    def __repr__(self) -> str:
        rows = [
            ("fixed", self.fixed),
            ("random", self.random),
            ("residual", self.residual),
            ("distribution", self.distribution),
            ("dispersion", self.dispersion),
        ]
        rows += [(f"intercept[{k}]", v) for k, v in self.intercept.items()]
        body = "\n".join(f"  {name:<22} {value: .6g}" for name, value in rows)
        return f"VarianceComponents (latent scale)\n{body}"


def check_mixed(est) -> None:
    """Raise unless ``est`` is a fitted mixed model (it has random effects)."""
    if not hasattr(est, "fit_result_"):
        raise ValueError(f"{type(est).__name__} is not fitted yet: call fit first.")
    if not est.fit_result_.factors:
        raise ValueError("The model has no random effects (it was fitted without groups).")


def cholesky_diagonals(est) -> dict:
    """Per factor, the diagonal of the lower Cholesky factor of its covariance (lme4's theta).

    For a GLMM lme4's ``theta`` holds this factor in the user's units (its
    residual scale is 1), and ``performance::check_singularity`` compares its
    diagonal with a tolerance.
    """
    out = {}
    for name, cov in est.random_effects_cov_.items():
        S = cov.to_numpy()
        # the factor of a semi-definite matrix, through a square root of it: Cholesky
        # itself fails exactly when the fit is singular
        w, U = np.linalg.eigh(S)
        root = U * np.sqrt(np.clip(w, 0.0, None))
        L = internal_lambda(np.eye(len(S)), root)
        out[name] = np.abs(np.diag(L))
    return out


def scaled_cholesky_diagonals(est) -> dict:
    """Per factor, the diagonal of the Cholesky factor of the covariance of the random
    effects of the fit's internal Z columns (slopes centred and scaled): lme4's
    ``theta`` for predictors on that scale, and unlike it the same whatever the units
    and origin of the predictors. (Columns made from one variable, an interaction or a
    raw polynomial ``x + I(x^2)``, are different columns at another origin of ``x``;
    when they are nearly collinear the internal columns are also decorrelated, in
    their order, which makes the later ones nearly those of the centred variable, so
    the diagonals are then close to, not equal to, the centred fit's.) A factor with
    a covariance structure (whose columns are not scaled) has its diagonal in the
    user's units."""
    res = est.fit_result_
    lams = res.internal_lambdas()
    user = cholesky_diagonals(est)
    out = {}
    for f, fl, L in zip(res.factors, res.layout.factors, lams):
        out[f.name] = user[f.name] if fl.structure is not None else np.abs(np.diag(L))
    return out


def is_singular(est, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Any scaled Cholesky diagonal (:func:`scaled_cholesky_diagonals`) below
    ``tolerance``: lme4's rule on the internal scale, so that the verdict does not
    depend on the predictors' units or origin."""
    return any(np.any(d < tolerance) for d in scaled_cholesky_diagonals(est).values())


def _used(est) -> np.ndarray:
    """The training rows in the likelihood: weight above 0 (binomial rows of 0 trials
    have weight 0). Rows of weight 0 are not the model's observations (nor in
    ``nobs_``), so the variances read over rows leave them out."""
    return np.asarray(est.fit_result_.objective.data.weights) > 0


def _raw_z(est, k: int) -> np.ndarray:
    """The training rows' random-effect columns of factor ``k`` in the user's units
    (the rows in the likelihood)."""
    fd = est.fit_result_.objective.data.factors[k]
    # the optimiser sees Z T (slopes centred and scaled); T is triangular with a
    # non-zero diagonal, so the user's columns come back exactly
    return (fd.Z @ np.linalg.inv(est.fit_result_.z_maps[k]))[_used(est)]


def _mean_quadratic(Z: np.ndarray, S: np.ndarray) -> float:
    """Mean over rows of ``z_i' S z_i``."""
    return float(np.mean(np.einsum("nq,qr,nr->n", Z, S, Z)))


def observation_level(est, factor) -> bool:
    """insight's rule: a factor with as many levels as rows models overdispersion
    (residual variance), not groups."""
    used = _used(est)
    if used.all():
        return factor.n_levels == len(used)
    return len(np.unique(np.asarray(factor.codes)[used])) == int(used.sum())


def random_parts(est) -> tuple[float, float, dict]:
    """(between-group variance, observation-level variance, intercept variance per factor)."""
    between, within, intercepts = 0.0, 0.0, {}
    for k, f in enumerate(est.fit_result_.factors):
        S = est.random_effects_cov_[f.name].to_numpy()
        if f.term.intercept:
            intercepts[f.name] = float(S[0, 0])
        value = _mean_quadratic(_raw_z(est, k), S)
        if observation_level(est, f):
            within += value
        else:
            between += value
    return between, within, intercepts


def fixed_variance(est) -> float:
    """``var(X beta)`` on the training rows (no offset, no random effects)."""
    data = est.fit_result_.objective.data
    eta_fixed = (data.X @ est.fit_result_.beta)[_used(est)]
    return float(np.var(eta_fixed, ddof=1)) if len(eta_fixed) > 1 else 0.0


def null_intercept(est) -> float:
    """Intercept of the null model: the same random effects and family, no covariates.

    insight refits ``y ~ 1 + (random terms)`` (offset kept) and uses only its
    intercept. The refit reuses the fitted model's internal data with the fixed
    design replaced by the intercept column, so random slopes stay in the null
    model as in R, where they need no fixed column.
    """
    from ._engine.fit_checked import fit_checked
    from ._engine.objective import Objective
    from ._engine.start import parameter_bounds, starting_point

    data = est.fit_result_.objective.data
    # the fit's own intercept column: 1 divided by its scale for large counts
    c = float(est.fit_result_.scaling.get("intercept_scale", 1.0))
    column = np.asfortranarray(np.full((len(data.y), 1), 1.0 / c))
    null = replace(data, X=column)
    obj = Objective(null, fitted_n_agq(est) or 1)
    with quiet():  # a null model's convergence warnings are not the user's model's
        x0 = starting_point(obj)
        bounds = parameter_bounds(null)
        x, _ = fit_checked(obj, x0, bounds, est.max_iter, est.tol)
    return float(x[0] / c)


def _count_variance(est, mu: float) -> float:
    """insight's family variance ``V`` at the null-model mean (see the module notes)."""
    fam = est.fit_result_.family
    if est.fit_result_.disp_design is not None:
        raise ValueError(
            "the latent-scale variance of a model whose dispersion depends on predictors "
            "(dispersion='...') is not available: there is no single distribution variance."
        )
    if not fam.zero_inflated:
        return float(fam.variance(mu, 1.0, est.fit_result_.extra))
    # conditional count means of the training rows, random effects included
    res = est.fit_result_
    return fam.mixture_variance(np.exp(res.train["eta"]), res.family_values())


def _ordinal_latent_variance(fam, what: str) -> float:
    """The latent variable's variance of a cumulative link model (R's insight for
    ``clmm``: pi^2/3 for the logit link, 1 for the probit, pi^2/6 for cloglog and
    loglog), which the ICC and Nakagawa's R2 put beside the random-effect variance."""
    if getattr(fam, "has_scale", False):
        raise ValueError(
            f"{what} of an ordinal model with scale effects: the latent variable's variance "
            "differs by row (exp(2 s'zeta) times the link's), so there is no one ICC or R2; "
            "fit without scale= for them."
        )
    variance = getattr(fam.link, "latent_variance", None)
    if variance is None:
        raise ValueError(
            f"{what} of an ordinal model with the {fam.link.name} link: its latent "
            "distribution has no finite variance (R's insight has none either); use the "
            "logit, probit, cloglog or loglog link."
        )
    return float(variance)


def distribution_variance(est, what: str = "ICC") -> tuple[float, float | None]:
    """(latent-scale distribution variance, null-model mean or None)."""
    fam = est.fit_result_.family
    if getattr(fam, "n_classes", None) is not None:  # a cumulative link (ordinal) model
        return _ordinal_latent_variance(fam, what), None
    if fam.has_trials:
        if fam.n_extra or fam.link.latent_variance is None:
            raise ValueError(
                f"the latent-scale variance of a {fam.describe()} model is not available "
                "(R's insight defines it for binomial models)."
            )
        return fam.link.latent_variance, None
    if not fam.latent_variance_defined:
        raise ValueError(
            f"the latent-scale variance of a {fam.sentence_name()} model is not available "
            "(R's insight defines it for Poisson and negative binomial models, with or "
            "without zero inflation)."
        )
    mu = float(np.exp(null_intercept(est)))
    if mu < 6:
        warn(
            f"mu of {mu:.1f} is too close to zero, estimate of {what} may be unreliable "
            "(the lognormal approximation of the count variance needs larger means).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return float(np.log1p(_count_variance(est, mu) / mu**2)), mu


def variance_components(
    est, tolerance: float = DEFAULT_TOLERANCE, what: str = "ICC"
) -> VarianceComponents:
    """All components of ``est`` (see :class:`VarianceComponents`)."""
    check_mixed(est)
    singular = is_singular(est, tolerance)
    between, within, intercepts = random_parts(est)
    dist, mu = distribution_variance(est, what)
    return VarianceComponents(
        fixed=fixed_variance(est),
        random=np.nan if singular else between,
        residual=dist + within,
        distribution=dist,
        dispersion=within,
        intercept=intercepts,
        singular=singular,
        null_mean=mu,
    )
