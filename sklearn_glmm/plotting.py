"""Plots for longitudinal GLMM analyses (matplotlib, imported only when a plot is drawn).

Plots need matplotlib, the ``plot`` extra: ``python -m pip install -e ".[plot]"``
from a clone of the repository.
Every function draws on the Axes it is given (``ax=...``), or on a new
figure, and returns that Axes (two Axes for :func:`plot_link_response`), so
plots compose with the rest of matplotlib.

Functions on data (before fitting):

- :func:`plot_observed_means` -- observed proportion / mean over time by group;
- :func:`plot_spaghetti` -- every person's observed trajectory with the group mean.

Functions on a fitted estimator:

- :func:`plot_trajectories` -- a sample of people: observed points under their
  predicted (conditional) curves, in one panel or one panel each (``facet=True``);
- :func:`plot_link_response` -- the same trajectories on the link and response scales;
- :func:`plot_conditional_marginal` -- population curves for a typical person
  (random effect 0) and averaged over people;
- :func:`plot_predicted_vs_observed` -- mean prediction vs observed mean by time x group;
- :func:`plot_ranef_qq` and :func:`plot_caterpillar` -- conditional modes of the
  random effects: normal QQ plot, and sorted with their intervals;
- :func:`plot_residuals` -- residuals against fitted values with binned means;
- :func:`plot_ppc` -- observed cell proportions / means against datasets
  simulated from the model (:func:`simulate_cell_means` gives the numbers);
- :func:`plot_rootogram` -- observed vs expected count frequencies (count models);
- :func:`plot_marginal_coefs` -- conditional beside marginal (population-averaged)
  coefficients, as odds / rate ratios.

Functions on other results:

- :func:`plot_power_curve` -- power against sample size, from
  :func:`sklearn_glmm.power.power_curve`.

Model-based functions take ``data``: the DataFrame of the rows to plot. Its
columns are matched to the estimator: a model fitted on a DataFrame uses the
columns it was fitted on (extra columns such as ``id`` or ``y`` are ignored); a
model from :func:`sklearn_glmm.formula.glmer` builds its design from the
formula; ``group_columns`` are read from ``data``. Arguments such as ``time``,
``y``, ``by`` and ``offset`` name a column of ``data`` or give an array with one value
per row. A model fitted with an offset (log exposure) predicts at the rows' ``offset``;
without one its lines are at offset 0 (an exposure of 1), with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._plot_common import (
    add_legend,
    axes_or_new,
    by_title,
    cell_means,
    choose_ids,
    color_map,
    column_values,
    factor_name,
    group_column_list,
    is_binomial,
    model_inputs,
    observed_scale,
    outcome_axis,
    plots_fitted_model,
    probability_axis,
    pyplot,
    row_labels,
    row_offset,
    time_axis,
)
from ._plot_diagnostics import (
    plot_caterpillar,
    plot_ppc,
    plot_ranef_qq,
    plot_residuals,
    plot_rootogram,
    simulate_cell_means,
)
from ._plot_marginal import plot_marginal_coefs
from ._plot_ordinal import (
    category_proportions,
    plot_category_probabilities,
    plot_category_proportions,
)
from ._plot_power import plot_power_curve
from ._plot_trajectories import (
    _draw_facets,
    _draw_trajectories,
    _facet_axes,
    _facet_legend,
    _legend_title,
    _trajectory_frame,
    _trajectory_legend,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "category_proportions",
    "plot_category_probabilities",
    "plot_category_proportions",
    "plot_caterpillar",
    "plot_conditional_marginal",
    "plot_link_response",
    "plot_marginal_coefs",
    "plot_observed_means",
    "plot_power_curve",
    "plot_ppc",
    "plot_predicted_vs_observed",
    "plot_ranef_qq",
    "plot_residuals",
    "plot_rootogram",
    "plot_spaghetti",
    "plot_trajectories",
    "simulate_cell_means",
]

# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def plot_observed_means(
    data: pd.DataFrame,
    *,
    time,
    y,
    by=None,
    trials=None,
    bins=None,
    ax: Axes | None = None,
) -> Axes:
    """Observed proportion (0/1 or binomial outcome) or mean (counts) over time by group.

    Parameters
    ----------
    data : pandas.DataFrame of shape (n_samples, n_columns)
        Long-format data, one row per observation.
    time : str or array-like of shape (n_samples,)
        Time variable (a column of ``data`` or values).
    y : str or array-like of shape (n_samples,)
        Outcome.
    by : str, list of str or array-like of shape (n_samples,), default=None
        Grouping for separate lines (e.g. ``"treatment"``); None draws one line.
    trials : str or array-like of shape (n_samples,), default=None
        Binomial trials; the proportion is then ``sum(y) / sum(trials)`` per cell.
    bins : int or sequence, default=None
        Bin a continuous (unequally spaced) time with :func:`pandas.cut`; points sit
        at the mean time of each bin.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; a new figure when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        One line per group. For a 0/1 or binomial outcome the y-axis is [0, 1].

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.plotting import plot_observed_means
    >>> df, _ = make_longitudinal("binomial", random_state=0)
    >>> ax = plot_observed_means(df, time="time", y="y", by="treatment")
    >>> len(ax.lines)
    2
    """
    ax = axes_or_new(ax)
    n = len(data)
    yv = column_values(data, y, n, "y").astype(float)
    t = column_values(data, time, n, "time")
    w = None if trials is None else column_values(data, trials, n, "trials").astype(float)
    labels = row_labels(data, by, n)
    cells = cell_means(t, labels, yv if w is None else yv / w, w, bins)
    colors = color_map(pd.unique(cells["label"]))
    for label, cell in cells.groupby("label", sort=False):
        name = None if by is None else label
        ax.plot(cell["time"], cell["mean"], "-o", color=colors[label], label=name, lw=2)
    time_axis(ax, time, t)
    binary = w is not None or np.isin(np.unique(yv), [0.0, 1.0]).all()
    outcome_axis(ax, binary, "Observed proportion", "Observed mean")
    add_legend(ax, by_title(by))
    return ax


def plot_spaghetti(
    data: pd.DataFrame,
    *,
    time,
    y,
    id,
    by=None,
    max_ids: int | None = None,
    random_state=0,
    alpha: float = 0.25,
    ax: Axes | None = None,
) -> Axes:
    """Every person's observed trajectory (thin lines) with the group mean (thick line).

    Parameters
    ----------
    data : pandas.DataFrame of shape (n_samples, n_columns)
        Long-format data.
    time, y : str or array-like of shape (n_samples,)
        Time and outcome.
    id : str or array-like of shape (n_samples,)
        Person identifier (one thin line each).
    by : str or array-like of shape (n_samples,), default=None
        Groups, each with its colour and its mean line; None draws one mean line.
    max_ids : int, default=None
        Draw the thin lines of at most this many people (drawn at random); the
        mean lines always use everyone.
    random_state : int, numpy.random.Generator or None, default=0
        Seed for choosing the people when ``max_ids`` is set.
    alpha : float, default=0.25
        Transparency of the thin lines.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        One thin line per person drawn, then one mean line per group (the
        last ``n_groups`` entries of ``ax.lines``).

    Examples
    --------
    >>> from sklearn_glmm.datasets import load_app_logins
    >>> from sklearn_glmm.plotting import plot_spaghetti
    >>> df = load_app_logins()
    >>> ax = plot_spaghetti(df, time="day", y="logins", id="user_id")
    >>> len(ax.lines)  # 50 users and the mean
    51
    """
    ax = axes_or_new(ax)
    n = len(data)
    t = column_values(data, time, n, "time").astype(float)
    yv = column_values(data, y, n, "y").astype(float)
    ids = column_values(data, id, n, "id")
    labels = row_labels(data, by, n)
    colors = color_map(pd.unique(labels))
    if by is None:
        colors = {"all": "steelblue"}
    shown = choose_ids(ids, n if max_ids is None else max_ids, None, random_state)
    frame = pd.DataFrame({"id": ids, "t": t, "y": yv, "label": labels})
    frame = frame[frame["id"].isin(shown)].sort_values(["id", "t"])
    for _, person in frame.groupby("id", sort=False):
        ax.plot(person["t"], person["y"], color=colors[person["label"].iloc[0]], alpha=alpha, lw=1)
    cells = cell_means(t, labels, yv)
    for label, cell in cells.groupby("label", sort=False):
        color = "crimson" if by is None else colors[label]
        name = "mean" if by is None else f"{label} (mean)"
        ax.plot(cell["time"], cell["mean"], color=color, lw=3, label=name)
    time_axis(ax, time, t)
    ax.set_ylabel(y if isinstance(y, str) else "outcome")
    add_legend(ax, by_title(by))
    return ax


# ---------------------------------------------------------------------------
# trajectories
# ---------------------------------------------------------------------------


@plots_fitted_model("data")
def plot_trajectories(
    est,
    data: pd.DataFrame,
    groups=None,
    *,
    time,
    y=None,
    by=None,
    trials=None,
    offset=None,
    n_ids: int = 12,
    ids=None,
    factor=None,
    scale: str = "response",
    facet: bool = False,
    ncols: int | None = None,
    random_state=0,
    ax=None,
):
    """Individual predicted trajectories of a sample of people, over their observed points.

    Predictions are conditional on each person's random effects (their
    conditional modes), at the rows of ``data`` -- lme4's
    ``predict(fit, type = "response")``. All people share one panel, or with
    ``facet=True`` each person gets a small panel of their own (ggplot2's
    ``facet_wrap(~ id)``), where their observed points are easy to tell apart.

    Parameters
    ----------
    est : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    data : pandas.DataFrame or array-like of shape (n_samples, n_features)
        Rows to predict (usually the training data); see the module notes.
    groups : array-like of shape (n_samples,) or DataFrame, default=None
        Grouping labels of the rows, as passed to ``fit``; read from ``data``
        for ``group_columns`` and formula models.
    time : str or array-like of shape (n_samples,)
        x-axis.
    y : str or array-like of shape (n_samples,), default=None
        Observed outcome, drawn as points (on the response scale only). For a
        0/1 outcome the y-axis extends a little beyond [0, 1] so that the
        points at 0 and 1 are drawn whole.
    by : str or array-like of shape (n_samples,), default=None
        Colour people by this person-level group (e.g. treatment); else one
        colour each (one colour for all with ``facet=True``).
    trials : str or array-like of shape (n_samples,), default=None
        Binomial trials; observed points are then proportions.
    offset : str or array-like of shape (n_samples,), default=None
        The rows' offset (e.g. log exposure) for a model fitted with one; a column
        name or the values. Without it the predictions are at offset 0, with a
        warning.
    n_ids : int, default=12
        Number of people drawn at random.
    ids : sequence, default=None
        The people to draw instead of a random sample.
    factor : str or int, default=None
        Which grouping factor identifies people (the first by default).
    scale : {"response", "link"}, default="response"
        Probability / mean, or the linear predictor (log-odds / log mean).
    facet : bool, default=False
        One panel per person, titled with the factor and the person's label,
        with shared axes and one legend for the figure.
    ncols : int, default=None
        Columns of the grid of panels (``facet=True`` on a new figure); by
        default ``ceil(sqrt(n_people))``, as ``facet_wrap``.
    random_state : int, numpy.random.Generator or None, default=0
        Seed for the sample of people.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; a new figure when None. With ``facet=True``, a
        sequence of at least as many Axes as people (the extra ones are hidden).

    Returns
    -------
    ax : matplotlib.axes.Axes, or ndarray of shape (n_people,) of Axes
        One line per person (in one Axes, or one per panel with ``facet=True``);
        for a binomial model on the response scale the y-axis spans [0, 1].
        The legend, titled with ``by`` (or with the grouping factor when it
        lists people), names the groups or the people; on panels it names the
        observed points and the predicted line.

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.plotting import plot_trajectories
    >>> df, _ = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> ax = plot_trajectories(m, df, df["id"], time="time", y="y", by="treatment")
    >>> len(ax.lines)
    12
    >>> axes = plot_trajectories(m, df, df["id"], time="time", y="y", ids=[1, 2, 3], facet=True)
    >>> [a.get_title() for a in axes]
    ['id 1', 'id 2', 'id 3']
    """
    if scale not in ("response", "link"):
        raise ValueError(f"scale must be 'response' or 'link', got {scale!r}.")
    if not facet:
        ax = axes_or_new(ax)
    frame, _ = _trajectory_frame(
        est, data, groups, time, y, by, trials, factor, n_ids, ids, random_state, offset
    )
    person_title = factor_name(est, factor)
    column = "mu" if scale == "response" else "eta"
    observed = scale == "response"
    if scale == "link":
        ylabel = "Linear predictor (log-odds)" if is_binomial(est) else "Linear predictor (log)"
    else:
        ylabel = "Predicted probability" if is_binomial(est) else "Predicted mean"
    # whole 0/1 points: pad the probability axis when observed points are drawn
    pad = 0.05 if observed and y is not None else 0.0
    if not facet:
        _draw_trajectories(ax, frame, column, by, observed=observed)
        time_axis(ax, time, frame["t"])
        if scale == "response" and is_binomial(est):
            probability_axis(ax, ylabel, pad)
        else:
            ax.set_ylabel(ylabel)
        _trajectory_legend(ax, frame, by, person_title)
        return ax

    axes, new_figure = _facet_axes(frame["id"].nunique(), ncols, ax)
    _draw_facets(axes, frame, column, by, observed, person_title)
    for panel in axes:
        time_axis(panel, time, frame["t"])
        if scale == "response" and is_binomial(est):
            probability_axis(panel, None, pad)
    if new_figure:
        fig = axes[0].figure
        fig.supxlabel(axes[0].get_xlabel())
        fig.supylabel(ylabel)
        for panel in axes:
            panel.set_xlabel("")
    else:
        for panel in axes:
            panel.set_ylabel(ylabel)
    title = _legend_title(by, y if isinstance(y, str) and observed else None)
    _facet_legend(axes, new_figure, title)
    return axes


@plots_fitted_model("data")
def plot_link_response(
    est,
    data: pd.DataFrame,
    groups=None,
    *,
    time,
    by=None,
    offset=None,
    n_ids: int = 12,
    ids=None,
    factor=None,
    random_state=0,
    axes=None,
) -> np.ndarray:
    """The same predicted trajectories on the link scale (left) and response scale (right).

    Random intercepts shift the lines in parallel on the link scale; through
    the inverse link the same shifts give curves that compress near 0 and 1
    (or near 0 for counts).

    Parameters
    ----------
    est, data, groups, time, by, offset, n_ids, ids, factor, random_state
        As in :func:`plot_trajectories`.
    axes : sequence of two matplotlib.axes.Axes, default=None
        Where to draw; a new figure with two panels when None.

    Returns
    -------
    axes : ndarray of shape (2,) of matplotlib.axes.Axes
        Link-scale and response-scale panels, one line per person in each.

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.plotting import plot_link_response
    >>> df, _ = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> left, right = plot_link_response(m, df, df["id"], time="time", by="treatment")
    """
    if axes is None:
        axes = pyplot().subplots(1, 2, figsize=(10.0, 4.0))[1]
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != 2:
        raise ValueError(f"axes must hold two Axes, got {len(axes)}.")
    frame, _ = _trajectory_frame(
        est, data, groups, time, None, by, None, factor, n_ids, ids, random_state, offset
    )
    binomial = is_binomial(est)
    for ax, column in zip(axes, ("eta", "mu")):
        _draw_trajectories(ax, frame, column, by, observed=False)
        time_axis(ax, time, frame["t"])
    axes[0].set_title("Link scale (log-odds)" if binomial else "Link scale (log)")
    axes[0].set_ylabel("Linear predictor")
    axes[1].set_title("Response scale (probability)" if binomial else "Response scale (mean)")
    outcome_axis(axes[1], binomial, "Predicted probability", "Predicted mean")
    _trajectory_legend(axes[1], frame, by, factor_name(est, factor))
    return axes


@plots_fitted_model("data")
def plot_conditional_marginal(
    est,
    data: pd.DataFrame,
    *,
    time,
    by=None,
    offset=None,
    ax: Axes | None = None,
) -> Axes:
    """Population curves: a typical person (random effect 0) vs the population average.

    For every row of ``data`` (typically a grid of time x covariates, with no
    grouping labels) the dashed line is the prediction for a person whose
    random effects are zero (lme4's ``re.form = NA``, conditional) and the solid
    line averages the prediction over the random-effect distribution
    (``population="marginal"``, population-averaged). For a logistic model the
    marginal curve is flatter; for a log link it is the conditional one times
    ``exp(variance / 2)``.

    Parameters
    ----------
    est : fitted estimator
    data : pandas.DataFrame of shape (n_samples, n_columns)
        New rows (no groups are used).
    time : str or array-like of shape (n_samples,)
    by : str or array-like of shape (n_samples,), default=None
        One pair of lines per group.
    offset : str or array-like of shape (n_samples,), default=None
        The rows' offset for a model fitted with one (a column name or the values).
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        Two lines per group: conditional (dashed), then marginal (solid).
    """
    ax = axes_or_new(ax)
    X, _, _ = model_inputs(est, data, None)
    cols = group_column_list(est)
    if cols is not None:  # population curves: every row at the population level
        X = X.assign(**{c: None for c in cols})
    n = len(data)
    t = column_values(data, time, n, "time").astype(float)
    labels = row_labels(data, by, n)
    off = row_offset(data, offset, n, est)
    zero = est.predict_mean(X, None, population="zero", offset=off)
    marginal = est.predict_mean(X, None, population="marginal", offset=off)
    colors = color_map(pd.unique(labels))
    for label in pd.unique(labels):
        rows = np.flatnonzero(labels == label)
        rows = rows[np.argsort(t[rows], kind="stable")]
        prefix = "" if by is None else f"{label}: "
        c = colors[label]
        ax.plot(t[rows], zero[rows], "--", color=c, lw=2, label=f"{prefix}typical person (b = 0)")
        ax.plot(t[rows], marginal[rows], "-", color=c, lw=2, label=f"{prefix}population average")
    time_axis(ax, time, t)
    outcome_axis(ax, is_binomial(est), "Predicted probability", "Predicted mean")
    add_legend(ax, by_title(by))
    return ax


@plots_fitted_model("data")
def plot_predicted_vs_observed(
    est,
    data: pd.DataFrame,
    groups=None,
    *,
    time,
    y,
    by=None,
    trials=None,
    offset=None,
    bins=None,
    ax: Axes | None = None,
) -> Axes:
    """Mean prediction (dashed) vs observed mean (solid) by time x group.

    Predictions are conditional on the random-effect modes for known groups
    (as lme4's ``predict(fit, type = "response")``); rows without groups get
    population-averaged predictions.

    Parameters
    ----------
    est : fitted estimator
    data : pandas.DataFrame or array-like of shape (n_samples, n_features)
        Rows to compare (usually the training data).
    groups : array-like of shape (n_samples,) or DataFrame, default=None
    time, y : str or array-like of shape (n_samples,)
    by : str or array-like of shape (n_samples,), default=None
    trials : str or array-like of shape (n_samples,), default=None
        Binomial trials (proportions are then trial-weighted).
    offset : str or array-like of shape (n_samples,), default=None
        The rows' offset for a model fitted with one (a column name or the values).
    bins : int or sequence, default=None
        Bin a continuous time (see :func:`plot_observed_means`).
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        Two lines per group: observed then predicted; y-axis [0, 1] for binomial models.
    """
    ax = axes_or_new(ax)
    X, g_pred, _ = model_inputs(est, data, groups)
    n = len(data)
    t = column_values(data, time, n, "time")
    w = None if trials is None else column_values(data, trials, n, "trials").astype(float)
    labels = row_labels(data, by, n)
    yv = observed_scale(column_values(data, y, n, "y"), w)
    mu = est.predict_mean(X, g_pred, offset=row_offset(data, offset, n, est))
    observed = cell_means(t, labels, yv, w, bins)
    predicted = cell_means(t, labels, mu, w, bins)
    colors = color_map(pd.unique(observed["label"]))
    for label in pd.unique(observed["label"]):
        prefix = "" if by is None else f"{label}: "
        o = observed[observed["label"] == label]
        p = predicted[predicted["label"] == label]
        ax.plot(o["time"], o["mean"], "-o", color=colors[label], lw=2, label=f"{prefix}observed")
        ax.plot(p["time"], p["mean"], "--s", color=colors[label], lw=2, label=f"{prefix}predicted")
    time_axis(ax, time, t)
    outcome_axis(ax, is_binomial(est), "Proportion", "Mean")
    add_legend(ax, by_title(by))
    return ax
