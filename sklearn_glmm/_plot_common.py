"""Shared helpers of the plotting functions: inputs, labels, cell means, axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._optional import require


def pyplot():
    """Import matplotlib.pyplot, or tell the user how to install it."""
    return require(
        "matplotlib.pyplot",
        "Plots need the optional dependency 'matplotlib': install it with "
        "`python -m pip install matplotlib`, or install sklearn_glmm with its "
        '`plot` extra (`python -m pip install -e ".[plot]"` from a clone).',
    )


def axes_or_new(ax, figsize=(6.0, 4.0)):
    if ax is not None:
        return ax
    return pyplot().subplots(figsize=figsize)[1]


def column_values(data, v, n: int | None, name: str) -> np.ndarray:
    """A column of ``data`` named by ``v`` or ``v`` itself as an array of length ``n``."""
    if isinstance(v, str):
        if not isinstance(data, pd.DataFrame) or v not in data.columns:
            raise ValueError(f"{name}={v!r} must name a column of data (a pandas DataFrame).")
        out = data[v].to_numpy()
    else:
        out = np.asarray(v)
    if n is not None and out.shape[:1] != (n,):
        raise ValueError(f"{name} must have one value per row ({n}), got shape {out.shape}.")
    return out


def row_labels(data, by, n: int) -> np.ndarray:
    """One label per row: "all" without ``by``; column values, joined for several columns."""
    if by is None:
        return np.full(n, "all", dtype=object)
    if not _column_names(by):
        return pd.Series(column_values(data, by, n, "by")).astype(str).to_numpy(dtype=object)
    parts = [pd.Series(column_values(data, b, n, "by")).astype(str) for b in by]
    return parts[0].str.cat(parts[1:], sep=" / ").to_numpy(dtype=object)


def _column_names(by) -> bool:
    """Whether ``by`` is a list of column names (several columns) rather than values."""
    return (
        isinstance(by, Sequence)
        and not isinstance(by, str)
        and len(by) > 0
        and all(isinstance(b, str) for b in by)
    )


def by_title(by) -> str | None:
    if by is None or not (isinstance(by, str) or _column_names(by)):
        return None
    return by if isinstance(by, str) else " / ".join(map(str, by))


def is_binomial(est) -> bool:
    return est.fit_result_.family.has_trials


def model_label(est) -> str:
    """The family and link of a fitted model, e.g. ``"Poisson GLMM (log link)"``."""
    head, _, rest = est.fit_result_.family.sentence_name().partition(" (")
    return f"{head[:1].upper()}{head[1:]} GLMM ({rest}"


def factor_name(est, factor) -> str:
    """The name of a grouping factor (given by name or position; the first by default)."""
    if isinstance(factor, str):
        return factor
    names = list(getattr(est, "ranef_", None) or [])
    k = 0 if factor is None else int(factor)
    return str(names[k]) if k < len(names) else "group"


def plots_fitted_model(data: str | None = None):
    """Let a plot ``func(model, ...)`` take a fitted Pipeline or search: the model at
    its end (:func:`~._validation.fitted_glmm`) where the plot reads the model alone,
    or its argument ``data`` is None; where it reads rows of ``data``, a fitted
    search's best model, and a Pipeline is refused with the call to make
    (:func:`~._validation.fitted_glmm_for_data`: its final step sees the rows
    transformed by the steps before it)."""
    import functools
    import inspect

    from ._validation import fitted_glmm, fitted_glmm_for_data

    def wrap(func):
        signature = inspect.signature(func)
        first = next(iter(signature.parameters))

        @functools.wraps(func)
        def call(*args, **kwargs):
            bound = signature.bind_partial(*args, **kwargs)
            if first in bound.arguments:
                model = bound.arguments[first]
                reads = data is not None and bound.arguments.get(data) is not None
                if reads:
                    model = fitted_glmm_for_data(model, func.__name__, data == "data")
                else:
                    model = fitted_glmm(model)
                bound.arguments[first] = model
            return func(*bound.args, **bound.kwargs)

        return call

    return wrap


def check_fitted(est):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "coef_")


def model_inputs(est, data, groups):
    """``(X, groups for predict, grouping labels)`` of the rows in ``data``.

    ``group_columns`` models read their groups from X, so predict gets
    ``groups=None``; formula models rebuild their design from the formula.
    """
    check_fitted(est)
    frame = isinstance(data, pd.DataFrame)
    cols = group_column_list(est)
    if cols is not None:
        if frame and groups is None and not all(c in data.columns for c in cols):
            # no grouping labels: every row at the population level (tools that need
            # labels say so when they read them)
            missing = {c: None for c in cols if c not in data.columns}
            return data.assign(**missing)[list(est.feature_names_in_)], None, None
        X = data[list(est.feature_names_in_)] if frame else data
        return X, None, (data[cols] if groups is None else groups)
    if frame and hasattr(est, "design_info_"):
        from ._random_only import with_data_columns
        from .formula import design_matrix

        state = getattr(est, "_formula", None)
        _check_complete(state, data)
        X = with_data_columns(est, design_matrix(est.design_info_, data), data)
        if groups is None and state is not None and state.group_variables:
            if all(c in data.columns for c in state.group_variables):
                # the formula's factors from their variables: nested (g/h) and
                # interaction (g:h) factors are not columns of the data themselves
                from ._formula_data import _group_frame

                groups = _group_frame(state.bars, data)[list(est.fit_result_.factor_order)]
    elif frame and hasattr(est, "feature_names_in_"):
        X = data[list(est.feature_names_in_)]
    else:
        X = data
    return X, groups, groups


def group_column_list(est) -> list | None:
    """The estimator's ``group_columns`` as a list (None when it reads no groups from X)."""
    cols = getattr(est, "group_columns", None)
    if cols is None:
        return None
    return [cols] if isinstance(cols, str) else list(cols)


def _check_complete(state, data) -> None:
    """A formula model's tools read every row of ``data``: a missing value in a
    variable of the model (which the fit left out with its row) raises, naming it."""
    if state is None:
        return
    used = [*state.fixed_variables, *state.offset_variables, state.offset_column]
    used = [c for c in dict.fromkeys(used) if c is not None and c in data.columns]
    missing = data[used].isna()
    if missing.to_numpy().any():
        cols = [c for c in used if missing[c].any()]
        raise ValueError(
            f"{int(missing.any(axis=1).sum())} row(s) of data have a missing value in "
            f"{cols}: the fit left such rows out, and this tool reads every row it is "
            f"given. Pass the complete rows, e.g. data.dropna(subset={cols})."
        )


def person_labels(groups, factor, n: int) -> np.ndarray:
    """The labels of one grouping factor (the first by default)."""
    if groups is None:
        raise ValueError("This plot needs groups (or group_columns / a formula model's factors).")
    if isinstance(groups, pd.DataFrame):
        if factor is None or isinstance(factor, (int, np.integer)):
            return groups.iloc[:, 0 if factor is None else int(factor)].to_numpy()
        return groups[factor].to_numpy()
    g = np.asarray(groups)
    if g.ndim == 2:
        return g[:, 0 if factor is None else int(factor)]
    if g.shape != (n,):
        raise ValueError(f"groups must have one label per row ({n}), got shape {g.shape}.")
    return g


def observed_scale(y, trials) -> np.ndarray:
    """Observed outcome as a proportion when there are trials."""
    y = np.asarray(y, dtype=float)
    return y if trials is None else y / np.asarray(trials, dtype=float)


def link_predictions(est, X, groups, offset=None) -> np.ndarray:
    """The model's linear predictor (of the mean ``predict_mean`` gives), random effects at
    their modes (0 for unknown levels)."""
    if hasattr(est, "linear_predictor"):  # an ordinal model's (its decision_function
        return est.linear_predictor(X, groups, offset=offset)  # is per-class scores)
    return est._linear_predictor(X, groups, offset, "zero")[0]


def row_offset(data, offset, n: int, est=None):
    """The rows' offset from a column name or an array; without one, a formula model's
    own (its ``offset()`` terms or offset column, evaluated on ``data`` as its predict
    does; the design built from the data does not carry it); None otherwise."""
    if offset is not None:
        return column_values(data, offset, n, "offset").astype(float)
    state = getattr(est, "_formula", None)
    if state is None or not isinstance(data, pd.DataFrame):
        return None
    if not (state.offsets or state.offset_column):
        return None
    needed = list(state.offset_variables) + ([state.offset_column] if state.offset_column else [])
    if not all(c in data.columns for c in needed):
        return None  # predict says what is missing
    return est._raw_offset(data, None, np.ones(n, dtype=bool))


def choose_ids(ids: np.ndarray, n_ids: int, chosen, random_state) -> np.ndarray:
    unique = pd.unique(ids)
    if chosen is not None:
        chosen = np.asarray(chosen)
        as_str = {str(u): u for u in unique}
        missing = [c for c in chosen if str(c) not in as_str]
        if missing:
            raise ValueError(f"ids {missing} are not among the groups of data.")
        return np.array([as_str[str(c)] for c in chosen], dtype=object)
    rng = np.random.default_rng(random_state)
    k = min(int(n_ids), len(unique))
    return np.asarray(unique, dtype=object)[np.sort(rng.choice(len(unique), k, replace=False))]


def color_map(keys) -> dict:
    """A colour per key from matplotlib's default cycle (tab20 beyond ten keys)."""
    plt = pyplot()
    keys = list(keys)
    if len(keys) <= 10:
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    else:
        cmap = plt.get_cmap("tab20")
        cycle = [cmap(k % 20) for k in range(len(keys))]
    return {key: cycle[k % len(cycle)] for k, key in enumerate(keys)}


def cell_means(time, labels, values, weights=None, bins=None) -> pd.DataFrame:
    """Weighted means of ``values`` by (label, time); ``bins`` groups a continuous time."""
    t = np.asarray(time, dtype=float)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=float)
    df = pd.DataFrame({"label": labels, "t": t, "wv": w * np.asarray(values, float), "w": w})
    df["wt"] = w * t
    key = pd.cut(t, bins=bins, include_lowest=True) if bins is not None else t
    g = df.groupby(["label", key], observed=True, sort=True)[["wv", "w", "wt"]].sum()
    out = pd.DataFrame({"time": g["wt"] / g["w"], "mean": g["wv"] / g["w"]})
    return out.reset_index(level=0).sort_values(["label", "time"]).reset_index(drop=True)


def time_axis(ax, time, values) -> None:
    """Label the x-axis after the time column; whole-number ticks for whole-number times."""
    ax.set_xlabel(time if isinstance(time, str) else "time")
    v = np.asarray(values, dtype=float)
    if len(v) and np.all(np.isfinite(v)) and np.all(v == np.round(v)):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def probability_axis(ax, ylabel="Probability", pad: float = 0.0):
    """A [0, 1] y-axis; ``pad`` widens it so that points at 0 and 1 are drawn whole."""
    ax.set_ylim(-pad, 1.0 + pad)
    if pad:
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
    if ylabel is not None:
        ax.set_ylabel(ylabel)


def outcome_axis(ax, probability: bool, prob_label: str, mean_label: str) -> None:
    """Label the y axis as a probability in [0, 1] or as a mean on the count scale."""
    if probability:
        probability_axis(ax, prob_label)
    else:
        ax.set_ylabel(mean_label)


def add_legend(ax, title=None, frame: bool = False):
    """A legend when something is labelled; ``frame`` keeps it legible over lines."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        if frame:
            ax.legend(title=title, frameon=True, framealpha=0.85, edgecolor="none")
        else:
            ax.legend(title=title, frameon=False)


def wrap_dims(n: int, ncols: int | None = None) -> tuple[int, int]:
    """Rows and columns of a grid of ``n`` panels (ggplot2's ``facet_wrap`` layout)."""
    if ncols is None:
        ncols = int(np.ceil(np.sqrt(n)))
    elif int(ncols) < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    ncols = max(1, min(int(ncols), n))
    return int(np.ceil(n / ncols)), ncols
