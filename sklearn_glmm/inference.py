"""Inference on fitted GLMMs: intervals, model comparison, predictions with uncertainty.

Public functions (the estimators' methods of the same names delegate here):

* :func:`confint` — Wald, profile-likelihood or parametric-bootstrap intervals
  for fixed effects, random-effect SDs/correlations and family parameters;
* :func:`anova` — likelihood-ratio tests between nested fits (R's ``anova``),
  with the chi-bar-square p-value for a variance tested on its boundary;
* :func:`compare_models` — AIC/BIC table across any fits to the same data;
* :func:`predict_interval`, :func:`marginal_means`, :func:`contrast` —
  delta-method standard errors for conditional and population-averaged
  predictions and their differences or ratios;
* :func:`report` — the results paragraph.

Simulation and diagnostics live in :mod:`._simulate` and :mod:`._diagnostics`,
profiles in :mod:`._profile`, model comparison in :mod:`._compare` and the
report in :mod:`._report`; their public functions are re-exported here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats
from sklearn.utils.validation import check_is_fitted

from ._compare import anova, compare_models
from ._confint import confint, profile
from ._report import report
from ._validation import check_bool, check_level, fitted_glmm_for_data
from ._warn import user_stacklevel, warn
from .performance import Anova

__all__ = [
    "Anova",
    "anova",
    "compare_models",
    "confint",
    "contrast",
    "marginal_means",
    "predict_interval",
    "profile",
    "report",
]


# =====================================================================================
# predictions with uncertainty
# =====================================================================================
def _mean_given(fam, eta, var, extra):
    """E[Y] when eta is normal with mean ``eta`` and variance ``var``."""
    return fam.mean_over_normal(eta, var, extra)


def _link(fam, mu):
    return fam.link.link(mu)


def _inv_link(fam, v):
    return fam.link.inverse(v)


def _population_means(est, Xa, off, x, population):
    """Population-level means of rows ``Xa`` at internal parameters ``x``."""
    return est.fit_result_.population_means(Xa, x, off, population)


def _delta(est, fun):
    """Value and covariance of ``fun(x)`` (a vector) by the delta method; NaN rows and
    columns for the elements that move with a parameter without a variance off its
    bounds (:meth:`FitResult.undetermined`)."""
    res = est.fit_result_
    x, V = res.params, res.vcov
    active = np.isfinite(np.diag(V))
    f0 = np.asarray(fun(x), dtype=float)
    G = np.zeros((len(f0), len(x)))
    for k in np.flatnonzero(active | res.undetermined()):
        h = 1e-5 * max(1.0, abs(x[k]))
        e = np.zeros(len(x))
        e[k] = h
        G[:, k] = (np.asarray(fun(x + e)) - np.asarray(fun(x - e))) / (2 * h)
    cov = res.delta_covariance(G)
    moved = res.moves_on_set(fun)  # (a function stationary at the fit's point, too)
    return f0, cov if moved is None else _without_undetermined(cov, moved[:, None])


def _without_undetermined(cov, moved):
    """``cov`` with NaN rows and columns for the elements whose gradient along a
    parameter without a variance (``moved``: elements x those parameters) is not 0."""
    bad = np.any(moved, axis=1)
    if bad.any():
        cov = cov.copy()
        cov[bad, :] = np.nan
        cov[:, bad] = np.nan
    return cov


def _prep(est, X, offset):
    check_is_fitted(est, "coef_")
    if est.fit_result_.family.name == "ordinal":
        # one mean per row on one link scale: an ordinal outcome has class probabilities
        raise NotImplementedError(
            "predict_interval, marginal_means and contrast are not available for "
            "OrdinalGLMM: use predict_proba (without groups, population='marginal', the "
            "population-averaged class probabilities) and confint for the parameters."
        )
    Xa, groups_from_X = est._validate_X(X, reset=False)
    off = est._given_offset(offset, Xa.shape[0])  # (warns: fitted with one, none given)
    index = X.index if isinstance(X, pd.DataFrame) else None
    return Xa, off, index, groups_from_X


def predict_interval(
    est,
    X,
    groups=None,
    *,
    offset=None,
    level: float = 0.95,
    scale: str = "response",
    population: str = "marginal",
    include_random: bool = True,
) -> pd.DataFrame:
    """Predictions with delta-method standard errors and confidence intervals.

    For rows of known groups (with ``include_random``) the standard error is that
    of ``x'beta^ + z'b^`` as a prediction of ``x'beta + z'b``, as glmmTMB's
    ``predict(se.fit = TRUE)``: from the joint precision of the fixed and random
    effects at the fitted variances (``W`` the family's curvature at the
    conditional modes, as the Laplace approximation's), so the covariances between
    the fixed effects and the random effects' prediction errors and between
    grouping factors are included, and from the fit's covariance of all its
    parameters, so the variances' uncertainty enters through the modes' move with
    them. It agrees with glmmTMB's to 1e-5 relative (docs/inference.md). Above
    50,000 random effects over several grouping factors, or for a fit that holds
    neither its training rows nor that joint precision (a partitioned fit), it
    falls back with a warning to the fixed effects' variance plus each factor's
    conditional variance (an approximation, smaller or larger than the exact
    standard error). A random effect of a level not seen in fit is
    left out of the row's standard error; rows of no known group, and every row
    with ``include_random=False`` (lme4's ``re.form = NA``: the prediction without
    the groups' random effects, following ``population``), have the fixed effects'
    variance alone. A standard error that cannot be computed is NaN, with a warning.

    Intervals are formed on the link scale and transformed, so they respect
    (0, 1) and (0, inf). Rows without a known group follow ``population`` (see
    ``predict_mean``); a marginal mean's interval reflects the fixed effects'
    uncertainty only. (On the link scale their ``fit`` is the linear predictor's mean
    ``x'beta``; on the response scale with ``population="marginal"`` it is the
    population-averaged mean, which is not the inverse link of that.)

    Returns
    -------
    table : pandas.DataFrame with columns ``fit``, ``se``, ``lower``, ``upper``
        On the ``scale`` asked for (``"response"``: probability or mean count;
        ``"link"``: log-odds or log mean).
    """
    est = fitted_glmm_for_data(est, "predict_interval")
    if scale not in ("response", "link"):
        raise ValueError(f"scale must be 'response' or 'link', got {scale!r}.")
    include_random = check_bool(include_random, "include_random")
    Xa, off, index, groups_from_X = _prep(est, X, offset)
    # without the random effects every row is a population-level prediction (lme4's
    # re.form = NA), its fit as its standard error
    eta, var = est._linear_predictor(X, groups, off, population, known_groups=include_random)
    groups = groups_from_X if groups is None else groups
    res = est.fit_result_
    D = res.fixed_design(Xa)
    v_eta = np.einsum("ni,ij,nj->n", D, res.vcov_fixed.to_numpy(), D)
    if not np.all(np.isfinite(v_eta)) and getattr(res.record, "limit_covariance", None) is not None:
        # a separated fit: rows whose linear predictor the limit model determines
        lost = np.flatnonzero(~np.isfinite(v_eta))
        G = np.zeros((len(lost), len(res.params)))
        G[:, : D.shape[1]] = D[lost] @ res.beta_jacobian()
        v_eta[lost] = res.delta_covariance(G, diagonal=True)
    known = None
    if include_random and est.fit_result_.factors and groups is not None:
        v_eta, known = _known_group_variance(est, Xa, groups, v_eta)
    bad = ~np.isfinite(v_eta) | (v_eta < -1e-12 * np.maximum(1.0, np.abs(v_eta)))
    if bad.any():
        warn(
            f"predict_interval: the standard error of {int(bad.sum())} of {len(v_eta)} rows "
            "cannot be computed (the fit's covariance is not finite or not positive "
            "definite there, or the prediction moves with a parameter the data do not "
            "determine; see fit_record_ and the fit's warnings): NaN.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    se = np.sqrt(np.where(bad, np.nan, np.clip(v_eta, 0.0, None)))
    z = stats.norm.ppf(0.5 + check_level(level) / 2.0)
    fam, extra = est.fit_result_.family, est.fit_result_.family_values(Xa)
    if scale == "link":
        fit, lo, hi, se_out = eta, eta - z * se, eta + z * se, se
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            fit = _mean_given(fam, eta, var, extra)
            lo = _mean_given(fam, eta - z * se, var, extra)
            hi = _mean_given(fam, eta + z * se, var, extra)
            h = 1e-5
            up, down = _mean_given(fam, eta + h, var, extra), _mean_given(fam, eta - h, var, extra)
            slope = (up - down) / (2 * h)
        _warn_overflow(fit)
        se_out = np.where(np.isfinite(slope), np.abs(slope), np.nan) * se
        direct = _family_gradient(est, Xa, eta, var)
        if direct is not None:
            # a mean that reads the family's parameters (zero inflation, a hurdle, a
            # truncated count's dispersion): the delta method over them too, with their
            # covariance with the prediction (glmmTMB's se.fit on the response scale);
            # the interval on the log scale of the mean, which is positive
            cov = _prediction_covariance(est, Xa, groups, known)
            res = est.fit_result_
            ex = np.arange(len(res.params) - len(res.extra), len(res.params))
            Vee = np.nan_to_num(res.vcov[np.ix_(ex, ex)])
            v_resp = (
                slope**2 * np.where(bad, np.nan, np.clip(v_eta, 0.0, None))
                + np.einsum("ni,ij,nj->n", direct, Vee, direct)
                + 2.0 * slope * np.sum(cov[:, ex] * direct, axis=1)
            )
            # (the family's parameters on a bound are held; one without a variance
            # off its bounds leaves the means that read it without a standard error)
            lost = np.any(direct[:, res.undetermined()[ex]] != 0, axis=1) & ~bad
            v_resp[lost] = np.nan
            if lost.any():
                warn(
                    f"predict_interval: the standard error of {int(lost.sum())} of "
                    f"{len(lost)} rows on the response scale cannot be computed: their mean "
                    "reads a zero-inflation or dispersion coefficient without a variance "
                    "(see the fit's StandardErrorWarning): NaN. scale='link' gives the "
                    "conditional model's.",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            se_out = np.sqrt(np.clip(v_resp, 0.0, None))
            with np.errstate(divide="ignore", invalid="ignore"):
                spread = np.exp(z * se_out / fit)
            lo, hi = fit / spread, fit * spread
    return pd.DataFrame({"fit": fit, "se": se_out, "lower": lo, "upper": hi}, index=index)


def _warn_overflow(fit):
    """Warn of means beyond float64's range (their fit ``inf``, standard error NaN)."""
    over = np.isinf(fit)
    if over.any():
        warn(
            f"predict_interval: the mean of {int(over.sum())} of {len(fit)} rows is beyond "
            "float64's range (a linear predictor above about 709.8 under the log link): "
            "their fit is inf and their standard error NaN. Predictors far outside the "
            "data, or in other units than in the fit, give such values.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _family_gradient(est, Xa, eta, var):
    """d mean / d (the family's internal coefficients) at fixed ``eta``, (rows, E), or
    None where the mean does not read them (Poisson, binomial, NB2, ...)."""
    res = est.fit_result_
    fam, c = res.family, np.asarray(res.extra, dtype=float)
    if not len(c):
        return None
    out = np.zeros((len(eta), len(c)))
    for k in range(len(c)):
        h = 1e-5 * max(1.0, abs(c[k]))
        up, dn = c.copy(), c.copy()
        up[k] += h
        dn[k] -= h
        plus = _mean_given(fam, eta, var, res.family_values(Xa, coefs=up))
        minus = _mean_given(fam, eta, var, res.family_values(Xa, coefs=dn))
        with np.errstate(invalid="ignore"):  # (means beyond float64: inf - inf)
            out[:, k] = (plus - minus) / (2 * h)
    out = np.where(np.isfinite(out), out, 0.0)
    return out if np.any(out != 0.0) else None


def _prediction_covariance(est, Xa, groups, known):
    """Covariance of each row's linear-predictor estimate with every parameter
    (internal scale), (rows, n_params): rows of known groups with their modes (the
    joint precision's, where ``known`` says it was used), the others through the fixed
    effects alone."""
    from . import _prediction_variance as _pv

    res = est.fit_result_
    V = np.nan_to_num(res.vcov)
    p = res.layout.n_beta
    cb = res.fixed_design(Xa) @ res.beta_jacobian()
    out = cb @ V[:p, :]
    if known is not None and known[0].any():
        rows, (Zs, codes) = known
        sub = [c[rows] for c in codes]
        out[rows] = _pv.known_group_covariance(res, Xa[rows], [Z[rows] for Z in Zs], sub)
    return out


def _known_group_variance(est, Xa, groups, v_eta):
    """``v_eta`` with the rows of known groups' prediction-error variance of
    ``x'beta + z'b`` (``_prediction_variance``); the per-factor sum of the fixed
    effects' and each random effect's conditional variance where that cannot be made.
    Also ``(rows, (Z, codes))`` of the rows whose variance is the joint precision's,
    or None."""
    from . import _prediction_variance as _pv
    from ._group_columns import factor_columns
    from ._labels import match_levels

    res = est.fit_result_
    by_name = factor_columns(groups, res.factor_order, Xa.shape[0])
    codes = [match_levels(f.levels, by_name[f.name], f.name) for f in res.factors]
    anyknown = np.any([c >= 0 for c in codes], axis=0)
    if not anyknown.any():
        return v_eta, None
    # (the random-effect columns of rows of known groups: the others read none, and a
    # structured term's time value of such a row need not be one seen in fit)
    Zs = [_known_rows_z(f, Xa, anyknown) for f in res.factors]
    why = _pv.exact_unavailable(res)
    if why is None:
        try:
            v = _pv.known_group_variance(res, Xa, Zs, codes)
        except (np.linalg.LinAlgError, RuntimeError):  # D singular: NaN, said below
            v = np.full(len(v_eta), np.nan)
        return np.where(anyknown, v, v_eta), (anyknown, (Zs, codes))
    warn(
        f"predict_interval: {why}; the standard errors of rows of known groups add the "
        "fixed effects' variance and each factor's conditional variance of its random "
        "effects, leaving out their covariances and how the variances' uncertainty moves "
        "the modes: an approximation to glmmTMB's se.fit that can be smaller (by up to "
        "about 25 % for small groups with binary outcomes) or larger (by 40-85 % with "
        "large counts or an observation-level factor). Fit in memory for the exact "
        "standard errors.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    v_eta = v_eta.copy()
    for f, c, Z in zip(res.factors, codes, Zs):
        known = c >= 0
        C = res.ranef_condvar[f.name][c[known]]
        v_eta[known] += np.einsum("nq,nqr,nr->n", Z[known], C, Z[known])
    return v_eta, None


def _known_rows_z(factor, Xa, rows):
    """The factor's random-effect columns of ``Xa``'s ``rows``; zeros elsewhere."""
    if rows.all():
        return factor.z_matrix(Xa)
    Z = factor.z_matrix(Xa[rows])
    out = np.zeros((len(rows), Z.shape[1]), dtype=Z.dtype)
    out[rows] = Z
    return out


def _table_from_link(fam, g, se, z, scale, prefix):
    mu = _inv_link(fam, g)
    if scale == "link":
        vals = (g, se, g - z * se, g + z * se)
    else:
        dmu = fam.link.inverse_derivative(g)
        vals = (mu, dmu * se, _inv_link(fam, g - z * se), _inv_link(fam, g + z * se))
    return {f"{prefix}{s}": v for s, v in zip(("", "_se", "_lower", "_upper"), vals)}


def marginal_means(
    est, X, *, offset=None, level: float = 0.95, scale: str = "response", average: bool = False
) -> pd.DataFrame:
    """Conditional (random effects at 0) and marginal (population-averaged) means.

    For a logit link the two differ: the conditional probability is that of a
    group with a random effect of exactly zero (lme4's ``re.form = NA``), the
    marginal one averages over the random-effect distribution — the proportion
    expected in the population, closer to 0.5. For a log link the marginal mean
    is ``exp(eta + z' Sigma z / 2)``. Standard errors by the delta method over
    the fixed effects and (for the marginal mean) the covariance parameters;
    intervals are formed on the link scale of each mean.

    Parameters
    ----------
    est : fitted estimator
        The model (``est.marginal_means(X, ...)`` passes itself).
    X : array-like of shape (n_samples, n_features)
        Covariate rows (e.g. a grid of time x treatment).
    offset : array-like of shape (n_samples,), default=None
        The rows' offset for a model fitted with one (without it the means are at
        offset 0, with a warning).
    level : float, default=0.95
        Confidence level of the intervals.
    scale : {"response", "link"}, default="response"
        The means, standard errors and limits on the response scale (limits
        transformed from the link scale's), or on the link scale itself.
    average : bool, default=False
        Average the means over the rows (one row out: an average prediction).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``conditional``, ``conditional_se``, ``conditional_lower``,
        ``conditional_upper`` and the same for ``marginal``.
    """
    est = fitted_glmm_for_data(est, "marginal_means")
    if scale not in ("response", "link"):
        raise ValueError(f"scale must be 'response' or 'link', got {scale!r}.")
    average = check_bool(average, "average")
    Xa, off, index, _ = _prep(est, X, offset)
    fam = est.fit_result_.family
    z = stats.norm.ppf(0.5 + check_level(level) / 2.0)
    out = {}
    for pop, prefix in (("zero", "conditional"), ("marginal", "marginal")):

        def fun(x, pop=pop):
            mu = _population_means(est, Xa, off, x, pop)
            return _link(fam, np.array([mu.mean()]) if average else mu)

        g, V = _delta(est, fun)
        out.update(
            _table_from_link(fam, g, np.sqrt(np.clip(np.diag(V), 0, None)), z, scale, prefix)
        )
    return pd.DataFrame(out, index=None if average else index)


# a contrast's standard error at most this (relative to the means, or absolute on the log
# scale of a ratio) is the finite differences' rounding of a contrast with no uncertainty
# (a ratio of 2 from doubled exposures in a log-link model): 0, with no test
_ROUNDING_SE = 1e-9


def contrast(
    est,
    X1,
    X0,
    *,
    offset1=None,
    offset0=None,
    kind: str = "difference",
    level: float = 0.95,
) -> pd.DataFrame:
    """Average contrast between two covariate sets, conditional and marginal.

    ``X1`` and ``X0`` are the same rows with a predictor changed (e.g.
    ``df.assign(treatment=1)`` and ``df.assign(treatment=0)``); the means are
    averaged over the rows (an average marginal effect) and compared as a
    ``"difference"``, ``"ratio"`` or (binomial) ``"odds_ratio"``.

    Returns
    -------
    table : pandas.DataFrame
        Rows ``conditional`` (random effects at 0) and ``marginal``
        (population-averaged); columns ``estimate, se, lower, upper, z, p_value``.
        Ratios are tested against 1 on the log scale. A contrast the model fixes
        without uncertainty (identical rows; a ratio of 2 from doubled exposures in a
        log-link model) has ``se`` 0 and no test (``z``, ``p_value`` NaN): a standard
        error below 1e-9 of the means (absolute on a ratio's log scale) is the finite
        differences' rounding.
    """
    est = fitted_glmm_for_data(est, "contrast")
    if kind not in ("difference", "ratio", "odds_ratio"):
        raise ValueError(f"kind must be 'difference', 'ratio' or 'odds_ratio', got {kind!r}.")
    fam = est.fit_result_.family
    if kind == "odds_ratio" and fam.link.ratio_name != "odds ratio":
        raise ValueError("kind='odds_ratio' needs a binomial model with a logit link.")
    A1, o1, *_ = _prep(est, X1, offset1)
    A0, o0, *_ = _prep(est, X0, offset0)
    if A1.shape != A0.shape:
        raise ValueError("X1 and X0 must have the same shape (the same rows, changed values).")
    zq = stats.norm.ppf(0.5 + check_level(level) / 2.0)
    rows = {}
    for pop, label in (("zero", "conditional"), ("marginal", "marginal")):

        def fun(x, pop=pop):
            m1 = _population_means(est, A1, o1, x, pop).mean()
            m0 = _population_means(est, A0, o0, x, pop).mean()
            if kind == "difference":
                return np.array([m1 - m0])
            if kind == "ratio":
                return np.array([np.log(m1) - np.log(m0)])
            return np.array([special.logit(m1) - special.logit(m0)])

        v, V = _delta(est, fun)
        se = float(np.sqrt(max(V[0, 0], 0.0)))
        # the means' size sets the differences' rounding; logs' rounding is absolute
        size = 1.0
        if kind == "difference":
            x = est.fit_result_.params
            size = max(
                abs(_population_means(est, A, o, x, pop).mean()) for A, o in ((A1, o1), (A0, o0))
            )
        if se <= _ROUNDING_SE * size:
            se = 0.0  # a contrast fixed by the model (an exact ratio): no test
        zs = v[0] / se if se > 0 else np.nan
        p = float(2 * stats.norm.sf(abs(zs))) if np.isfinite(zs) else np.nan
        lo, hi = v[0] - zq * se, v[0] + zq * se
        if kind == "difference":
            rows[label] = [v[0], se, lo, hi, zs, p]
        else:
            r = np.exp(v[0])
            rows[label] = [r, r * se, np.exp(lo), np.exp(hi), zs, p]
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["estimate", "se", "lower", "upper", "z", "p_value"]
    )
