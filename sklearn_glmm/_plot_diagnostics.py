"""Plots of a fitted model's random effects, residuals, simulations and count frequencies.

Public through :mod:`sklearn_glmm.plotting`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ._plot_common import (
    add_legend,
    axes_or_new,
    by_title,
    check_fitted,
    is_binomial,
    model_inputs,
    model_label,
    plots_fitted_model,
    probability_axis,
    row_labels,
    row_offset,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

_OBSERVED = "#1f4e9c"  # observed data in PPC plots, as the tutorial's blue points

# ---------------------------------------------------------------------------
# random effects
# ---------------------------------------------------------------------------


def _ranef_column(est, factor, term):
    """(factor name, term name, conditional modes, their conditional variances)."""
    check_fitted(est)
    if not est.ranef_:
        raise ValueError("The model has no random effects (it was fitted without groups).")
    name = next(iter(est.ranef_)) if factor is None else factor
    if name not in est.ranef_:
        raise ValueError(f"factor {name!r} is not one of {list(est.ranef_)}.")
    modes = est.ranef_[name]
    k = term if isinstance(term, (int, np.integer)) else list(modes.columns).index(term)
    variances = np.asarray(est.fit_result_.ranef_condvar[name])[:, k, k]
    return name, modes.columns[k], modes.iloc[:, k], variances


@plots_fitted_model()
def plot_ranef_qq(est, factor=None, term=0, *, ax: Axes | None = None) -> Axes:
    """Normal QQ plot of the conditional modes of one random-effect term.

    R's ``qqnorm(ranef(fit)$id[, 1]); qqline(...)``: points at normal quantiles
    (R's ``ppoints``) and a line through the first and third quartiles. The
    title names the model, the factor and the term, e.g. "Random effects QQ
    plot: user_id, (Intercept)" over "Poisson GLMM (log link)", so that panels
    of several models stay apart.

    Parameters
    ----------
    est : fitted estimator
    factor : str, default=None
        Grouping factor (the first when None).
    term : int or str, default=0
        Column of ``est.ranef_[factor]``, e.g. ``"(Intercept)"`` or ``"time"``.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        One scatter of points and one reference line; the title names the
        model's family and link, the grouping factor and the term.
    """
    ax = axes_or_new(ax, (5.0, 5.0))
    name, term_name, modes, _ = _ranef_column(est, factor, term)
    sample = np.sort(modes.to_numpy(dtype=float))
    n = len(sample)
    a = 3.0 / 8.0 if n <= 10 else 0.5
    theory = stats.norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))
    ax.scatter(theory, sample, s=14, alpha=0.7)
    q_s = np.quantile(sample, [0.25, 0.75])
    q_t = stats.norm.ppf([0.25, 0.75])
    slope = (q_s[1] - q_s[0]) / (q_t[1] - q_t[0])
    ends = np.array([theory[0], theory[-1]])
    ax.plot(ends, q_s[0] + slope * (ends - q_t[0]), color="crimson", lw=1.5)
    ax.set_xlabel("Normal quantiles")
    ax.set_ylabel(f"Conditional modes: {term_name}")
    ax.set_title(f"Random effects QQ plot: {name}, {term_name}\n{model_label(est)}")
    return ax


@plots_fitted_model()
def plot_caterpillar(
    est,
    factor=None,
    term=0,
    *,
    level: float = 0.95,
    max_labels: int = 40,
    ax: Axes | None = None,
) -> Axes:
    """Conditional modes sorted, with intervals from their conditional variances.

    lme4's ``dotplot(ranef(fit, condVar = TRUE))``: each level's mode
    ``b_j`` with ``b_j +- z * sqrt(Var(b_j | y))``.

    Parameters
    ----------
    est : fitted estimator
    factor : str, default=None
        Grouping factor (the first when None).
    term : int or str, default=0
        Column of ``est.ranef_[factor]``.
    level : float, default=0.95
        Coverage of the intervals.
    max_labels : int, default=40
        Label the levels on the y-axis only when there are at most this many.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        One error-bar container with a point per level, and a line at zero.
    """
    name, term_name, modes, variances = _ranef_column(est, factor, term)
    n = len(modes)
    ax = axes_or_new(ax, (5.0, max(3.0, min(12.0, 0.15 * n + 1.5))))
    order = np.argsort(modes.to_numpy(dtype=float), kind="stable")
    half = stats.norm.ppf(0.5 + level / 2.0) * np.sqrt(np.clip(variances[order], 0.0, None))
    pos = np.arange(n)
    ax.errorbar(modes.to_numpy(dtype=float)[order], pos, xerr=half, fmt="o", ms=3, lw=1, capsize=0)
    ax.axvline(0.0, color="grey", ls="--", lw=1)
    ax.set_ylim(-1.0, n)
    if n <= max_labels:
        ax.set_yticks(pos, [str(v) for v in modes.index[order]])
    else:
        ax.set_yticks([])
    ax.set_ylabel(f"{name} (sorted)")
    ax.set_xlabel(f"Conditional mode of {term_name} ({level:.0%} interval)")
    return ax


# ---------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------


@plots_fitted_model()
def plot_residuals(
    est, type: str = "pearson", *, n_bins: int | None = None, ax: Axes | None = None
) -> Axes:
    """Residuals against fitted values on the training rows, with binned means.

    Residuals are conditional on the random-effect modes (lme4's
    ``plot(fitted(fit), residuals(fit, type = "pearson"))``). For binary
    outcomes the points fall on two bands, so the binned means (a binned
    residual plot) carry the information: they should stay near zero.

    Parameters
    ----------
    est : fitted estimator
    type : {"pearson", "deviance", "response", "working"}, default="pearson"
    n_bins : int, default=None
        Number of equal-count bins of fitted values for the binned means;
        by default ``sqrt(n)`` clipped to [5, 30].
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        A scatter of points, the zero line and the binned-means line.
    """
    check_fitted(est)
    ax = axes_or_new(ax)
    fitted = np.asarray(est.fitted(), dtype=float)
    resid = np.asarray(est.residuals(type), dtype=float)
    ax.scatter(fitted, resid, s=8, alpha=0.3, color="black")
    ax.axhline(0.0, color="crimson", ls="--", lw=1)
    n = len(fitted)
    k = int(np.clip(np.sqrt(n), 5, 30)) if n_bins is None else int(n_bins)
    order = np.argsort(fitted, kind="stable")
    chunks = [c for c in np.array_split(order, min(k, n)) if len(c)]
    ax.plot(
        [fitted[c].mean() for c in chunks],
        [resid[c].mean() for c in chunks],
        "-o",
        color="tab:blue",
        ms=3,
        lw=1.5,
        label="binned mean",
    )
    ax.set_xlabel("Fitted values")
    ax.set_ylabel(f"{type.capitalize()} residuals")
    add_legend(ax)
    return ax


@plots_fitted_model("data")
def simulate_cell_means(
    est,
    data,
    by,
    *,
    n_sim: int = 100,
    random_state=None,
    new_random_effects: bool = True,
    simulated=None,
) -> tuple[pd.Series, pd.DataFrame]:
    """Observed and simulated proportions (or means) of the training outcome per cell.

    Simulates ``n_sim`` outcome vectors from the fitted model with
    ``est.simulate`` (R's ``simulate(m, nsim)``) and computes the statistic of
    each cell of ``by`` in the observed and in every simulated data set -- the
    numbers behind :func:`plot_ppc` and R's ``aggregate(simulate(m, 100), ...)``.

    Parameters
    ----------
    est : fitted estimator
    data : pandas.DataFrame of shape (n_samples, n_columns) or None
        The training rows, in the order they were passed to ``fit``.
    by : str, list of str or array-like of shape (n_samples,)
        Cells (e.g. ``["trt", "sex"]``).
    n_sim : int, default=100
        Number of simulated data sets.
    random_state : int, numpy.random.Generator or None, default=None
    new_random_effects : bool, default=True
        Draw new random effects for every simulated data set (lme4's default,
        ``use.u = FALSE``), or keep the fitted conditional modes.
    simulated : array-like of shape (n_samples, n_sim), default=None
        Simulated outcomes to use instead of drawing new ones.

    Returns
    -------
    observed : pandas.Series of shape (n_cells,)
        Observed proportion (trial-weighted for binomial trials) or mean per cell.
    simulated : pandas.DataFrame of shape (n_cells, n_sim)
        The same statistic in each simulated data set.
    """
    check_fitted(est)
    tr = est.fit_result_.train
    n = len(tr["y"])
    if simulated is None:
        simulated = est.simulate(n_sim, random_state, new_random_effects=new_random_effects)
    sims = np.asarray(simulated, dtype=float)
    if sims.ndim == 1:
        sims = sims[:, None]
    if sims.shape[0] != n:
        raise ValueError(f"simulated must have {n} rows (the training rows), got {sims.shape[0]}.")
    labels = row_labels(data, by, n)
    trials = np.asarray(tr["trials"], dtype=float) if is_binomial(est) else np.ones(n)
    cells, inverse = np.unique(labels.astype(str), return_inverse=True)
    denom = np.bincount(inverse, weights=trials, minlength=len(cells))
    observed = np.bincount(inverse, weights=tr["y"], minlength=len(cells)) / denom
    index = pd.Index(cells, name=by_title(by) or "cell")
    sim_means = np.vstack([np.bincount(inverse, weights=s, minlength=len(cells)) for s in sims.T])
    return (
        pd.Series(observed, index=index, name="observed"),
        pd.DataFrame((sim_means / denom).T, index=index),
    )


@plots_fitted_model("data")
def plot_ppc(
    est,
    data,
    by,
    *,
    n_sim: int = 100,
    random_state=None,
    new_random_effects: bool = True,
    simulated=None,
    jitter: float = 0.2,
    ax: Axes | None = None,
) -> Axes:
    """Observed cell proportions (large points) against data sets simulated from the model.

    Tutorial 003's check: if the model is adequate, the observed proportion of
    every cell sits inside the cloud of proportions in simulated data sets; a
    model missing an interaction misses some cells systematically.

    Parameters
    ----------
    est, data, by, n_sim, random_state, new_random_effects, simulated
        As in :func:`simulate_cell_means`.
    jitter : float, default=0.2
        Horizontal jitter of the simulated points.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        A scatter of simulated values, then a scatter of observed values (one
        per cell); the y-axis is [0, 1] for binomial models.

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_vegetables
    >>> from sklearn_glmm.formula import glmer
    >>> from sklearn_glmm.plotting import plot_ppc
    >>> df, _ = make_vegetables(random_state=1)
    >>> m = glmer("y ~ trt + sex + (1 | id)", df)  # doctest: +SKIP
    >>> ax = plot_ppc(m, df, ["trt", "sex"], random_state=0)  # doctest: +SKIP
    """
    ax = axes_or_new(ax)
    observed, sims = simulate_cell_means(
        est,
        data,
        by,
        n_sim=n_sim,
        random_state=random_state,
        new_random_effects=new_random_effects,
        simulated=simulated,
    )
    rng = np.random.default_rng(0)
    k, s = sims.shape
    x = np.repeat(np.arange(k), s) + rng.uniform(-jitter, jitter, size=k * s)
    ax.scatter(
        x,
        sims.to_numpy().ravel(),
        facecolors="none",
        edgecolors="grey",
        alpha=0.5,
        s=16,
        label=f"simulated ({s} data sets)",
    )
    ax.scatter(np.arange(k), observed, s=80, color=_OBSERVED, zorder=3, label="observed")
    ax.set_xticks(np.arange(k), [str(c).replace(" / ", "\n") for c in observed.index])
    ax.set_xlabel(observed.index.name)
    if is_binomial(est):
        probability_axis(ax, "Proportion")
    else:
        ax.set_ylabel("Mean")
    add_legend(ax)
    return ax


@plots_fitted_model("X")
def plot_rootogram(
    est,
    X=None,
    y=None,
    groups=None,
    *,
    offset=None,
    max_count: int | None = None,
    style: str = "hanging",
    ax: Axes | None = None,
) -> Axes:
    """Rootogram of a count model: observed vs expected frequency of each count.

    Expected frequencies sum ``P(Y = k)`` over rows (conditional on the
    random-effect modes). On the square-root scale, hanging bars of the
    observed frequencies from the expected curve end near zero when the model
    fits; bars ending below zero show counts the model under-predicts (e.g.
    too many zeros for a Poisson model of overdispersed data). The last bar
    pools every count at or above ``max_count`` (labelled e.g. ``"15+"``), on
    both sides: observed counts ``>= max_count`` and the expected
    ``sum P(Y >= max_count)``, so no observation and no probability is left out.

    Parameters
    ----------
    est : fitted PoissonGLMM or NegBinGLMM
    X : DataFrame or array-like of shape (n_samples, n_features), default=None
        Rows to use (with ``y`` and ``groups``); the training rows when None.
    y : array-like of shape (n_samples,), default=None
        Observed counts of the rows of ``X``.
    groups : array-like of shape (n_samples,) or DataFrame, default=None
    offset : array-like of shape (n_samples,), default=None
        The offset of the rows of ``X`` for a model fitted with one (the training
        rows keep their own).
    max_count : int, default=None
        The last bin, ``max_count+``: counts from ``max_count`` up are pooled.
        By default the 99.5% quantile of the observed counts (at least 10, at
        most the largest count), so that a long sparse tail does not squeeze
        the plot.
    style : {"hanging", "standing"}, default="hanging"
        Bars hang from the expected curve, or stand on zero.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        ``max_count + 1`` bars (patches) for the counts ``0, ..., max_count - 1``
        and ``max_count+``, the expected curve and the zero line; whole-number
        x ticks, the last one labelled ``"{max_count}+"``; a legend of the
        observed bars and the expected curve.
    """
    check_fitted(est)
    if is_binomial(est):
        raise TypeError("A rootogram is for count models (PoissonGLMM, NegBinGLMM).")
    if style not in ("hanging", "standing"):
        raise ValueError(f"style must be 'hanging' or 'standing', got {style!r}.")
    if max_count is not None and int(max_count) < 1:
        raise ValueError(f"max_count must be a positive integer, got {max_count!r}.")
    if X is None:
        tr = est.fit_result_.train
        yv, w = np.asarray(tr["y"], dtype=float), np.asarray(tr["w"], dtype=float)
        K = _default_max_count(yv) if max_count is None else int(max_count)
        fam = est.fit_result_.family
        eta = np.asarray(tr["eta"], dtype=float)[:, None]
        below = fam.pmf_eta(
            np.arange(K)[None, :], eta, est.fit_result_.family_values(column=True)
        )  # P(Y = k), k < K
        # the last bin pools the tail: P(Y >= K) = 1 - P(Y < K)
        tail = np.clip(1.0 - below.sum(axis=1), 0.0, None)
        expected = np.append(w @ below, w @ tail)
    else:
        if y is None:
            raise ValueError("Pass the observed counts y with X.")
        Xp, g_pred, _ = model_inputs(est, X, groups)
        yv, w = np.asarray(y, dtype=float), np.ones(len(y))
        K = _default_max_count(yv) if max_count is None else int(max_count)
        # predict_proba's last column is the tail P(Y >= K): the pooled "K+" bin
        off = row_offset(X, offset, len(yv), est)
        expected = w @ est.predict_proba(Xp, g_pred, offset=off, max_count=K)
    observed = np.bincount(np.clip(yv, 0, K).astype(int), weights=w, minlength=K + 1)
    ax = axes_or_new(ax)
    ks = np.arange(K + 1)
    top = np.sqrt(expected)
    bottom = top - np.sqrt(observed) if style == "hanging" else np.zeros(K + 1)
    bars = ax.bar(
        ks,
        np.sqrt(observed),
        bottom=bottom,
        width=0.8,
        color="lightgrey",
        edgecolor="grey",
        label="observed",
    )
    (curve,) = ax.plot(ks, top, "-o", color="crimson", ms=3, lw=1.5, label="expected")
    ax.axhline(0.0, color="black", lw=0.8)
    ticks = _count_ticks(K)
    ax.set_xticks(ticks, [str(k) for k in ticks[:-1]] + [f"{K}+"])
    ax.set_xlim(-0.6, K + 0.6)
    ax.set_xlabel("Count")
    ax.set_ylabel("sqrt(Frequency)")
    ax.legend([bars, curve], ["observed", "expected"], frameon=False)
    return ax


def _count_ticks(K: int) -> list[int]:
    """Whole-number ticks from 0 to ``K`` (always ending at ``K``), at most about ten."""
    from matplotlib.ticker import MaxNLocator

    values = MaxNLocator(nbins=10, integer=True, min_n_ticks=1).tick_values(0, K)
    ticks = [int(round(v)) for v in values if 0 <= v < K]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else K
    if ticks and K - ticks[-1] < step:
        ticks.pop()  # closer to the wider "K+" label than the ticks are to each other
    return ticks + [K]


def _default_max_count(y) -> int:
    y = np.asarray(y, dtype=float)
    if not len(y):
        return 1
    return int(max(1.0, min(y.max(), max(10.0, np.ceil(np.quantile(y, 0.995))))))
