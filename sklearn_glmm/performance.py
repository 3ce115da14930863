"""Model checks and summaries as R's ``performance`` and ``car`` give them.

For a fitted :class:`~sklearn_glmm.BinomialGLMM`, :class:`~sklearn_glmm.PoissonGLMM`
or :class:`~sklearn_glmm.NegBinGLMM` (from ``fit`` or from the formula front end):

- :func:`icc` -- adjusted and conditional intraclass correlation (``performance::icc``);
- :func:`r2` -- Nakagawa's marginal and conditional R² (``performance::r2_nakagawa``);
- :func:`variance_components` -- the latent-scale variances both are built on
  (``insight::get_variance``);
- :func:`check_overdispersion`, :func:`check_zeroinflation`,
  :func:`check_singularity`, :func:`check_collinearity`, :func:`binned_residuals`
  -- the ``performance::check_*`` tests, as small tables that print a verdict;
- :func:`check_model` -- all of them as one panel of plots (``performance::check_model``);
- :func:`Anova` -- type II / III Wald chi-square tests per model term (``car::Anova``).

The results are pandas objects: index them as usual (``icc(m)["ICC_adjusted"]``,
``check_overdispersion(m)["p_value"].iloc[0]``); printing them shows the heading
and verdict R prints. The variance definitions behind the ICC and R² are those of
``insight::get_variance`` (see :func:`variance_components` and the "Model checks" guide).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from . import _performance_terms as _terms
from ._performance_checks import (
    check_collinearity,
    check_overdispersion,
    check_singularity,
    check_zeroinflation,
)
from ._performance_tables import (
    CheckSeries,
    CheckTable,
    anova_body,
    key_values,
    with_text,
)
from ._performance_variance import (
    DEFAULT_TOLERANCE,
    VarianceComponents,
    observation_level,
)
from ._performance_variance import variance_components as _components
from ._validation import reads_fitted_models
from ._warn import user_stacklevel, warn

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "Anova",
    "CheckSeries",
    "CheckTable",
    "VarianceComponents",
    "binned_residuals",
    "check_collinearity",
    "check_model",
    "check_overdispersion",
    "check_singularity",
    "check_zeroinflation",
    "icc",
    "r2",
    "variance_components",
]

_SINGULAR_WARNING = (
    "Can't compute {what}: some variance components equal zero. Your model may suffer from "
    "singularity (see check_singularity). Respecify the random effects, or decrease "
    "tolerance to compute them anyway."
)


@reads_fitted_models
def variance_components(model, *, tolerance: float = DEFAULT_TOLERANCE) -> VarianceComponents:
    """Latent-scale variance components, as R's ``insight::get_variance``.

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
        A mixed model (fitted with ``groups``).
    tolerance : float, default=1e-5
        A random-effect Cholesky diagonal below this marks the fit singular;
        ``random`` is then NaN, as insight returns no random variance.

    Returns
    -------
    components : VarianceComponents
        ``fixed``, ``random``, ``residual`` (= ``distribution + dispersion``),
        ``distribution``, ``dispersion``, ``intercept`` (per factor), ``singular``
        and ``null_mean``. The distribution-specific variance is pi²/3 for the
        logit link; for log-link counts ``log(1 + V(mu) / mu²)`` at the mean
        ``mu = exp(b0)`` of a null model (refitted: same random effects, no
        covariates), with ``V(mu) = mu`` (Poisson) or ``mu (1 + mu / theta)``
        (NB2), and insight's zero-inflated variances for zero-inflated fits.

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.performance import variance_components
    >>> df, _ = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> round(variance_components(m).distribution, 4)  # pi^2 / 3
    3.2899
    """
    return _components(model, tolerance)


@reads_fitted_models
def icc(
    model, *, by_group: bool = False, tolerance: float = DEFAULT_TOLERANCE
) -> CheckSeries | CheckTable:
    """Intraclass correlation coefficient, as R's ``performance::icc``.

    The adjusted ICC is ``random / (random + residual)``, the share of the
    latent-scale variance (fixed effects left out) due to the grouping
    factors; the conditional ICC also counts the fixed effects' variance in
    the denominator: ``random / (fixed + random + residual)``. The residual
    variance is pi²/3 for a logit model and ``log(1 + V(mu) / mu²)`` for count
    models, with ``mu = exp(b0)``, ``b0`` the null model's intercept (insight 0.19's
    choice; Nakagawa et al. 2017, eq. 5.8, and later insight versions take
    ``exp(b0 + sigma²/2)``, the null model's mean: see :func:`variance_components`),
    plus the variance of any observation-level random effect.

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    by_group : bool, default=False
        One ICC per grouping factor with a random intercept:
        ``intercept variance / (random + residual)``. With random slopes the
        split is not exact (a warning says so, as performance does).
    tolerance : float, default=1e-5
        Singular-fit tolerance (see :func:`variance_components`); a singular
        fit gives NaN with a warning, as performance gives NA.

    Returns
    -------
    icc : CheckSeries or CheckTable
        ``ICC_adjusted`` and ``ICC_conditional``; with ``by_group`` a table
        with columns ``Group`` and ``ICC``.

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.performance import icc
    >>> df, _ = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> list(icc(m).index)
    ['ICC_adjusted', 'ICC_conditional']
    """
    v = _components(model, tolerance)
    if v.singular:
        warn(_SINGULAR_WARNING.format(what="the ICC"), UserWarning, stacklevel=user_stacklevel())
    grouped = [f for f in model.fit_result_.factors if not observation_level(model, f)]
    if not grouped:
        # only observation-level random effects (residual variance): no grouping factor
        # whose share an ICC would be (performance gives NA)
        warn(
            "the model's random effects are all observation-level (one level per row): "
            "they model overdispersion, counted as residual variance, and there is no "
            "grouping factor for an ICC (NaN).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if by_group:
        if any(len(f.term.names) > 1 or not f.term.intercept for f in grouped):
            warn(
                "Model contains random slopes. Cannot compute accurate ICCs by group factors: "
                "a factor's share is its intercept variance, the variance at the slope "
                "variables' zero (centre them to read it at their mean).",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        denom = v.random + v.residual if grouped else np.nan
        shares = [x / denom for x in v.intercept.values()]
        if any(s > 1 for s in shares):
            warn(
                "an ICC by group is above 1: the intercept variance at the slope variables' "
                "zero exceeds the whole random and residual variance of the data, so it is no "
                "share of it (zero lies far from the data). Centre the slope variables.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        table = CheckTable({"Group": list(v.intercept), "ICC": shares})
        return with_text(table, "ICC by Group")
    random = v.random if grouped else np.nan
    out = CheckSeries(
        {
            "ICC_adjusted": random / (random + v.residual),
            "ICC_conditional": random / (v.fixed + random + v.residual),
        },
        name="ICC",
    )
    body = key_values([("Adjusted ICC", out.iloc[0]), ("Unadjusted ICC", out.iloc[1])])
    return with_text(out, "Intraclass Correlation Coefficient", body=body)


@reads_fitted_models
def r2(model, *, tolerance: float = DEFAULT_TOLERANCE) -> CheckSeries:
    """Nakagawa's marginal and conditional R², as R's ``performance::r2_nakagawa``.

    ``R2_marginal = fixed / (fixed + random + residual)`` (variance explained by
    the fixed effects) and ``R2_conditional = (fixed + random) / (fixed +
    random + residual)`` (fixed and random effects), with the latent-scale
    variances of :func:`variance_components` (Nakagawa, Johnson & Schielzeth
    2017): pi²/3 residual variance for logit models, the lognormal
    approximation ``log(1 + V(mu) / mu²)`` for counts at ``mu = exp(b0)``, ``b0`` the
    null model's intercept (insight 0.19's choice; the paper's eq. 5.8 and later
    insight versions take the null model's mean ``exp(b0 + sigma²/2)``, which gives a
    smaller residual variance and a higher R²).

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    tolerance : float, default=1e-5
        Singular-fit tolerance. For a singular fit, as performance, the
        marginal R² leaves out the random variance and the conditional one is NaN.

    Returns
    -------
    r2 : CheckSeries
        ``R2_conditional`` and ``R2_marginal``.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMM
    >>> from sklearn_glmm.datasets import load_app_logins
    >>> from sklearn_glmm.performance import r2
    >>> df = load_app_logins()
    >>> m = PoissonGLMM().fit(df[["day_centered"]], df["logins"], groups=df["user_id"])
    >>> res = r2(m)
    >>> bool(res["R2_marginal"] < res["R2_conditional"])
    True
    """
    v = _components(model, tolerance, what="r-squared")
    if v.singular:
        warn(
            "Random effect variances not available. Returned R2 does not account for random "
            "effects.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        marginal, conditional = v.fixed / (v.fixed + v.residual), np.nan
    else:
        total = v.fixed + v.random + v.residual
        marginal, conditional = v.fixed / total, (v.fixed + v.random) / total
    out = CheckSeries({"R2_conditional": conditional, "R2_marginal": marginal}, name="R2")
    body = key_values([("Conditional R2", conditional), ("Marginal R2", marginal)])
    return with_text(out, "R2 for Mixed Models", body=body)


def _ties_merged(values: np.ndarray, rel: float = 1e-12) -> np.ndarray:
    """``values`` with each run of sorted values within ``rel`` (relative) of the one
    before given the run's first value: ties up to rounding made exact ties."""
    order = np.argsort(values, kind="stable")
    s = values[order]
    new_run = np.r_[True, np.diff(s) > rel * np.abs(s[1:])]
    first = np.maximum.accumulate(np.where(new_run, np.arange(len(s)), 0))
    out = np.empty_like(values)
    out[order] = s[first]
    return out


@reads_fitted_models
def binned_residuals(model, n_bins: int | None = None) -> CheckTable:
    """Binned residuals of a binomial model, as R's ``performance::binned_residuals``.

    Rows are sorted by their fitted probability (conditional on the
    random-effect modes) and cut into ``n_bins`` bins of about equal size; each
    bin's mean residual ``y - p`` should lie within about two standard errors of
    zero (Gelman & Hill 2007). Around 95 % of the bins inside is a good fit.

    Parameters
    ----------
    model : fitted BinomialGLMM
        Binary outcome, or successes out of trials (then proportions are used).
    n_bins : int, default=None
        ``round(sqrt(n))`` by default, as performance.

    Returns
    -------
    table : CheckTable
        One row per bin: ``xbar`` (mean fitted probability), ``ybar`` (mean
        residual), ``n``, ``x_lo``, ``x_hi``, ``se`` (1.96 standard errors),
        ``CI_low``, ``CI_high``, ``inside`` (``|ybar| <= se``); ``detected`` is
        True when fewer than 95 % of the bins are inside.

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.performance import binned_residuals
    >>> df, _ = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> len(binned_residuals(m)) <= 22  # round(sqrt(500)) bins at most
    True
    """
    res = model.fit_result_
    if not res.family.has_trials:
        raise ValueError("Binned residuals are for binomial models (BinomialGLMM).")
    # the rows in the likelihood (weight 0, or 0 trials: not the model's observations)
    used = np.asarray(res.train["w"]) > 0
    trials = np.asarray(res.train["trials"], dtype=float)[used]
    pred = np.asarray(model.fitted(), dtype=float)[used]
    resid = np.asarray(res.train["y"], dtype=float)[used] / trials - pred
    n = len(pred)
    if n_bins is not None and (
        isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1
    ):
        raise ValueError(f"n_bins must be a positive integer (or None: sqrt(n)), got {n_bins!r}.")
    k = int(np.round(np.sqrt(n))) if n_bins is None else int(n_bins)
    # R: breaks at sort(pred)[floor(n * (1:(k - 1)) / k)], bins closed on the right; the
    # probabilities within 1e-12 of each other (relative) taken as one for it, so that
    # rows of the same fitted value (the same covariates and group) are in one bin
    # whatever their last bits (rounding apart by 3e-17, they were split between two)
    key = _ties_merged(pred)
    cuts = np.sort(key)[np.floor(n * np.arange(1, k) / k).astype(int) - 1]
    breaks = np.unique(np.concatenate([[-np.inf], cuts, [np.inf]]))
    bins = np.searchsorted(breaks, key, side="left")
    z = stats.norm.ppf(0.975)
    rows = []
    for b in range(1, len(breaks)):
        sel = bins == b
        m = int(sel.sum())
        if m < 2:  # R drops bins whose standard deviation is not defined
            continue
        sd = float(np.std(resid[sel], ddof=1))
        ybar = float(resid[sel].mean())
        se = z * sd / np.sqrt(m)
        rows.append(
            (
                float(pred[sel].mean()),
                ybar,
                m,
                pred[sel].min(),
                pred[sel].max(),
                se,
                ybar - se,
                ybar + se,
                abs(ybar) <= abs(se),
            )
        )
    cols = ["xbar", "ybar", "n", "x_lo", "x_hi", "se", "CI_low", "CI_high", "inside"]
    table = CheckTable(rows, columns=cols)
    if not len(table):
        # no bin of two or more rows: nothing to judge (R stops with an error)
        note = (
            f"No bin holds two or more rows ({k} bins of {n} rows): the binned residuals "
            "cannot judge the fit. Use fewer bins (n_bins=None: sqrt(n))."
        )
        return with_text(table, "Binned residuals", note, None)
    ok = float(table["inside"].mean())
    share = f"{round(100 * ok)}%"
    if ok < 0.8:
        note = f"Warning: Probably bad model fit. Only about {share} of the residuals are inside"
    elif ok < 0.95:
        note = f"Warning: About {share} of the residuals are inside"
    else:
        note = f"Ok: About {share} of the residuals are inside"
    note += " the error bounds" + (" (~95% or higher would be good)." if 0.8 <= ok < 0.95 else ".")
    return with_text(table, "Binned residuals", note, bool(ok < 0.95))


@reads_fitted_models
def check_model(
    model,
    *,
    check="all",
    n_sim: int = 50,
    random_state=None,
    figsize: tuple | None = None,
) -> Figure:
    """A panel of model checks in one call, as R's ``performance::check_model``.

    Panels (those that apply to the model's family):

    - ``"pp_check"``: posterior predictive check -- observed data against
      ``n_sim`` data sets simulated from the fitted model (count frequencies
      for count models; proportion of successes per decile of the fitted
      probability for binomial models);
    - ``"binned_residuals"``: :func:`binned_residuals` (binomial models);
    - ``"overdispersion"``: squared residuals against the variance the model
      predicts, with :func:`check_overdispersion`'s ratio (count models);
    - ``"zero_inflation"``: a rootogram with :func:`check_zeroinflation`'s
      observed and predicted zeros (count models);
    - ``"reqq"``: normal QQ plots of the random effects' conditional modes;
    - ``"vif"``: :func:`check_collinearity` (models with two terms or more).

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    check : "all" or list of str, default="all"
        The panels to draw, named as above.
    n_sim : int, default=50
        Simulated data sets of the posterior predictive check.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the simulations.
    figsize : tuple of float, default=None
        Figure size; by default 5 x 3.6 inches per panel, two panels a row.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One Axes per panel, titled as the panel.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMM
    >>> from sklearn_glmm.datasets import load_app_logins
    >>> from sklearn_glmm.performance import check_model
    >>> df = load_app_logins()
    >>> m = PoissonGLMM().fit(df[["day_centered"]], df["logins"], groups=df["user_id"])
    >>> fig = check_model(m, random_state=0)
    >>> for ax in fig.axes:
    ...     print(ax.get_title(loc="left").splitlines()[0])
    Posterior Predictive Check
    Overdispersion
    Zero-Inflation (rootogram)
    Normality of Random Effects (user_id: (Intercept))
    """
    from ._performance_plot import draw_check_model

    return draw_check_model(model, check, n_sim, random_state, figsize)


def _contrast_dependent(info) -> bool:
    """Whether a type III test may be of an effect at a reference level or at a covariate's
    zero: a term contained in an interaction coded with treatment contrasts, or in one
    with a numeric covariate other than the term's own variables (or coded in a way not
    known here)."""
    pairs = [
        (t, u) for t in info.names for u in info.names if info.variables[t] < info.variables[u]
    ]
    if info.treatment is None:
        return bool(pairs)
    return any(
        u in info.treatment or (info.variables[u] - info.variables[t]) & info.numeric
        for t, u in pairs
    )


@reads_fitted_models
def Anova(model, type: int | str = 2, *, terms: dict | None = None) -> CheckTable:  # noqa: N802
    """Type II or III Wald chi-square tests per model term, as R's ``car::Anova``.

    Each term -- a numeric column, a factor's dummy columns together, an
    interaction's columns -- is tested with a Wald chi-square on the fixed
    effects' covariance matrix (``car::Anova(fit, type = ...)`` for glmer and
    glmmTMB fits):

    - type II tests each term after all others except the terms that contain
      it (a main effect is tested with its interactions set aside); it respects
      marginality and does not depend on the contrasts;
    - type III tests each term's coefficients = 0 with every other term in the
      model, intercept included. With R's (and formulaic's) default treatment
      contrasts, a main effect of a variable in an interaction is then its effect
      at the reference level (or zero) of the other variable: as car warns in
      its documentation, type III tests are meaningful only with contrasts that
      are orthogonal in the row basis, such as sum-to-zero contrasts -- write
      ``C(f, contr.sum)`` in a formula.

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    type : {2, 3, "II", "III"}, default=2
    terms : dict of str to list of str, default=None
        Columns tested together, e.g. ``{"dose": ["dose_mid", "dose_high"]}``.
        By default a formula fit's terms are read from its formula (its
        formulaic model spec); for other fits every column is its own term.
        A term named ``"a:b"`` is taken to contain the terms ``a`` and ``b``
        for the type II tests.

    Returns
    -------
    table : CheckTable
        Indexed by term, columns ``Chisq``, ``Df``, ``Pr(>Chisq)`` (car's);
        type III adds the ``(Intercept)`` row.

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_vegetables
    >>> from sklearn_glmm.formula import glmer
    >>> from sklearn_glmm.performance import Anova
    >>> df, _ = make_vegetables(random_state=0)
    >>> m = glmer("y ~ trt * sex + (1 | id)", df)
    >>> list(Anova(m).index)
    ['trt', 'sex', 'trt:sex']
    """
    kind = {2: 2, 3: 3, "2": 2, "3": 3, "II": 2, "III": 3}.get(type)
    if kind is None:
        raise ValueError(f"type must be 2, 3, 'II' or 'III', got {type!r}.")
    info = _terms.model_terms(model, terms)
    if kind == 3:
        if model.fixed_effects_["estimate"].isna().any():
            raise ValueError(
                "there are aliased coefficients in the model (type III tests need none)."
            )
        rows = _terms.type3_rows(model, info)
    else:
        rows = _terms.type2_rows(model, info)
    table = CheckTable(
        {
            "Chisq": [r[1] for r in rows],
            "Df": [r[2] for r in rows],
            "Pr(>Chisq)": [r[3] for r in rows],
        },
        index=pd.Index([r[0] for r in rows], name="term"),
    )
    note = ""
    if kind == 3 and _contrast_dependent(info):
        note = (
            "Type III tests of terms contained in an interaction depend on the contrasts and "
            "on the origin of the covariates they interact with: with treatment contrasts they "
            "test effects at the reference level, and next to a covariate at its zero. Use "
            "sum-to-zero contrasts (C(f, contr.sum)) and centred covariates for the usual type "
            "III hypotheses."
        )
    numeral = "II" if kind == 2 else "III"
    title = f"Analysis of Deviance Table (Type {numeral} Wald chisquare tests)"
    blocks = model.fit_result_.block_designs
    if blocks is not None and any(D is not None for D in blocks):
        # car's component="cond": the zero-inflation / dispersion predictors are not tested
        title += " of the conditional model"
        note = (note + " " if note else "") + (
            "The zero-inflation and dispersion predictors are not tested here; their "
            "coefficients' z tests are in the model's tables (zero_inflation_effects_)."
        )
    return with_text(table, title, note, None, anova_body(table, model._y_name))
