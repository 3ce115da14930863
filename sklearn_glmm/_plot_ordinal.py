"""Plots of an ordinal model: category probabilities over time, observed vs predicted
category proportions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._plot_common import (
    axes_or_new,
    column_values,
    model_inputs,
    plots_fitted_model,
    row_offset,
)


def _ordinal(est):
    if not hasattr(est, "thresholds_"):
        raise TypeError(
            f"this plot is for a fitted OrdinalGLMM, not {type(est).__name__} (use "
            "plot_observed_means or plot_trajectories for other models)."
        )


def _lowest_first(model, proba) -> np.ndarray:
    """``predict_proba``'s columns (``classes_`` order) in the model's order, lowest
    class first (``class_order_``)."""
    return np.asarray(proba)[:, pd.Index(model.classes_).get_indexer(model.class_order_)]


@plots_fitted_model("data")
def plot_category_probabilities(
    model,
    data,
    time,
    groups=None,
    *,
    population="marginal",
    kind="area",
    offset=None,
    ax=None,
    title=None,
):
    """Probabilities of every class along time, stacked (areas) or as lines.

    Parameters
    ----------
    model : fitted OrdinalGLMM
    data : DataFrame
        Rows to predict: one person's rows (with ``groups`` naming the person: the
        person's conditional probabilities), or a grid of covariate values without
        groups (the population-averaged probabilities, ``population="marginal"``, or
        those of a person with random effect zero, ``"zero"``). Holds the model's
        feature columns (or a formula model's variables).
    time : str or array-like
        The column (or values) on the horizontal axis; rows are sorted by it.
    groups : array-like, default=None
        Grouping labels of the rows (read from the data for ``group_columns`` and
        formula models).
    population : {"marginal", "zero"}, default="marginal"
    kind : {"area", "line"}, default="area"
    offset : str or array-like of shape (n_samples,), default=None
        The rows' offset for a model fitted with one; a column name or the values.
        Without it the predictions are at offset 0, with a warning.
    ax : matplotlib Axes, default=None
    title : str, default=None
        The axes' title.

    Returns
    -------
    ax : matplotlib Axes
    """
    _ordinal(model)
    if kind not in ("area", "line"):
        raise ValueError(f"kind must be 'area' or 'line', got {kind!r}.")
    X, g, _ = model_inputs(model, data, groups)
    t = column_values(data, time, len(data), "time")
    order = np.argsort(t, kind="stable")
    off = row_offset(data, offset, len(data), model)
    proba = model.predict_proba(X, g, offset=off, population=population)
    p = _lowest_first(model, proba)[order]
    t = t[order]
    ax = axes_or_new(ax)
    labels = [str(c) for c in model.class_order_]
    if kind == "area":
        ax.stackplot(t, p.T, labels=labels, alpha=0.85)
        ax.set_ylim(0.0, 1.0)
    else:
        for k, lab in enumerate(labels):
            ax.plot(t, p[:, k], marker="o", ms=3, label=lab)
    ax.set_xlabel(time if isinstance(time, str) else "time")
    ax.set_ylabel("probability")
    ax.legend(title=getattr(model, "_y_name", "class"), fontsize="small", loc="best")
    if title is not None:
        ax.set_title(title)
    return ax


@plots_fitted_model("data")
def category_proportions(model, data, y, time, groups=None, *, population="marginal", offset=None):
    """Observed and predicted proportions of every class at every time value.

    Predicted proportions are the mean predicted probabilities of the rows at each
    time (conditional on known groups, population-averaged for the others); ``offset``
    (a column name or the values) for a model fitted with one, as
    :func:`plot_category_probabilities`.

    Returns
    -------
    table : DataFrame
        Indexed by time; columns ``("observed", class)`` and ``("predicted", class)``,
        the classes lowest first (``class_order_``).
    """
    _ordinal(model)
    X, g, _ = model_inputs(model, data, groups)
    t = column_values(data, time, len(data), "time")
    yv = column_values(data, y, len(data), "y")
    off = row_offset(data, offset, len(data), model)
    p = _lowest_first(model, model.predict_proba(X, g, offset=off, population=population))
    labels = list(model.class_order_)
    codes = pd.Index(labels).get_indexer(yv)
    if np.any(codes < 0):
        raise ValueError("y holds values that are not classes of the model (classes_).")
    onehot = np.eye(len(labels))[codes]
    obs = pd.DataFrame(onehot, columns=labels).groupby(t).mean()
    pred = pd.DataFrame(p, columns=labels).groupby(t).mean()
    return pd.concat({"observed": obs, "predicted": pred}, axis=1)


@plots_fitted_model("data")
def plot_category_proportions(
    model, data, y, time, groups=None, *, population="marginal", offset=None, ax=None, title=None
):
    """Observed (points) and predicted (lines) class proportions by time (wave).

    Parameters as :func:`category_proportions`, and ``ax`` and ``title`` (the axes' title);
    returns the matplotlib Axes.
    """
    table = category_proportions(model, data, y, time, groups, population=population, offset=offset)
    ax = axes_or_new(ax)
    for lab in model.class_order_:
        line = ax.plot(table.index, table[("predicted", lab)], label=str(lab))[0]
        ax.plot(table.index, table[("observed", lab)], "o", color=line.get_color(), ms=4)
    ax.set_xlabel(time if isinstance(time, str) else "time")
    ax.set_ylabel("proportion (points: observed; lines: predicted)")
    ax.legend(title=getattr(model, "_y_name", "class"), fontsize="small", loc="best")
    if title is not None:
        ax.set_title(title)
    return ax
