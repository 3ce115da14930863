"""The drawing behind :func:`sklearn_glmm.plotting.plot_trajectories` and
:func:`~sklearn_glmm.plotting.plot_spaghetti`: the people's rows as a frame, their lines,
legends and the facets of one panel per group of people (matplotlib, imported lazily).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._plot_common import (
    add_legend,
    by_title,
    choose_ids,
    color_map,
    column_values,
    link_predictions,
    model_inputs,
    observed_scale,
    person_labels,
    pyplot,
    row_labels,
    row_offset,
    wrap_dims,
)


def _trajectory_frame(
    est, data, groups, time, y, by, trials, factor, n_ids, ids, random_state, offset=None
):
    """Rows of the chosen people with their predictions on both scales."""
    X, g_pred, g_lab = model_inputs(est, data, groups)
    n = len(data)
    off = row_offset(data, offset, n, est)
    person = person_labels(g_lab, factor, n)
    chosen = choose_ids(person, n_ids, ids, random_state)
    keep = pd.Series(person).isin(chosen).to_numpy()
    frame = pd.DataFrame(
        {
            "id": person,
            "t": column_values(data, time, n, "time").astype(float),
            "label": row_labels(data, by, n),
            "mu": est.predict_mean(X, g_pred, offset=off),
            "eta": link_predictions(est, X, g_pred, off),
        }
    )
    if y is not None:
        t_v = None if trials is None else column_values(data, trials, n, "trials")
        frame["y"] = observed_scale(column_values(data, y, n, "y"), t_v)
    return frame[keep].sort_values(["id", "t"]), chosen


def _draw_trajectories(ax, frame, column, by, observed=True):
    """One line per person (coloured by group when ``by`` is given)."""
    keys = pd.unique(frame["label"]) if by is not None else pd.unique(frame["id"])
    colors = color_map(keys)
    seen = set()
    for pid, person in frame.groupby("id", sort=False):
        key = person["label"].iloc[0] if by is not None else pid
        label = None if key in seen else str(key)
        seen.add(key)
        ax.plot(person["t"], person[column], color=colors[key], lw=1.5, label=label)
        if observed and "y" in person:
            ax.scatter(person["t"], person["y"], color=colors[key], alpha=0.4, s=18, clip_on=False)


def _legend_title(by, person_title):
    """The legend's title: the ``by`` column(s), "group" for ``by`` values, else the factor."""
    if by is not None:
        return by_title(by) or "group"
    return person_title


def _trajectory_legend(ax, frame, by, title, max_people=8):
    """Legend of the groups, or of the people when there are few of them."""
    if by is not None or frame["id"].nunique() <= max_people:
        add_legend(ax, _legend_title(by, title), frame=True)


def _facet_axes(n, ncols, ax):
    """``n`` panels: a new figure laid out as ggplot2's ``facet_wrap``, or the given Axes.

    Returns the Axes and whether the figure is new (then its axis labels and
    legend are the figure's own).
    """
    if ax is None:
        nrows, ncols = wrap_dims(n, ncols)
        fig, grid = pyplot().subplots(
            nrows,
            ncols,
            sharex=True,
            sharey=True,
            squeeze=False,
            figsize=(1.6 + 2.5 * ncols, 0.9 + 2.0 * nrows),
            layout="constrained",
        )
        grid = grid.ravel()
        for k in range(n, len(grid)):
            fig.delaxes(grid[k])
            # the panel above an empty cell carries the x-axis of its column
            grid[k - ncols].xaxis.set_tick_params(labelbottom=True)
        return grid[:n], True
    if ncols is not None:
        raise ValueError("ncols lays out a new figure; it cannot be used with ax.")
    axes = np.asarray(ax, dtype=object).ravel()
    if len(axes) < n:
        raise ValueError(f"facet=True draws {n} panels, but ax holds {len(axes)} Axes.")
    for extra in axes[n:]:
        extra.set_visible(False)
    return axes[:n], False


def _draw_facets(axes, frame, column, by, observed, person_title):
    """One panel per person: observed points under their predicted line."""
    colors = color_map(pd.unique(frame["label"])) if by is not None else None
    seen = set()
    for k, (ax, (pid, person)) in enumerate(zip(axes, frame.groupby("id", sort=False))):
        key = person["label"].iloc[0]
        if by is not None:
            line_color = point_color = colors[key]
            line_label = None if key in seen else str(key)
            point_label = None
            seen.add(key)
        else:
            line_color, point_color = "C0", "0.35"
            line_label, point_label = ("predicted", "observed") if k == 0 else (None, None)
        ax.plot(person["t"], person[column], color=line_color, lw=1.5, label=line_label, zorder=3)
        if observed and "y" in person:
            ax.scatter(
                person["t"],
                person["y"],
                color=point_color,
                alpha=0.6,
                s=14,
                clip_on=False,
                label=point_label,
            )
        ax.set_title(f"{person_title} {pid}", fontsize="medium")


def _facet_legend(axes, new_figure, title):
    """One legend for all panels: beside them on a new figure, else in the last panel."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return
    if new_figure:
        axes[0].figure.legend(
            list(entries.values()),
            list(entries),
            title=title,
            loc="outside right upper",
            frameon=False,
        )
    else:
        axes[-1].legend(list(entries.values()), list(entries), title=title, frameon=False)
