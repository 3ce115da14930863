"""Checks that X, y, groups and the other per-row inputs describe the same rows (their
lengths and indexes), and that no column of one holds another's data (the grouping
labels or the outcome among X's columns): every failure names the argument, the problem
and a fix.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.utils.validation import _num_samples

from ._frames import as_pandas, repeated_names
from ._warn import quiet, user_stacklevel, warn


def check_groups_look_like_groups(groups, X, y):
    """Clear messages for two slips: column names given as ``groups`` (a short list of
    X's columns) and weights given as ``groups`` (the third positional argument of
    scikit-learn's ``fit(X, y, sample_weight)``: non-integer numbers)."""
    if isinstance(groups, (list, tuple)) and 0 < len(groups) != _num_samples(y):
        if isinstance(X, pd.DataFrame) and all(
            isinstance(g, str) and g in X.columns for g in groups
        ):
            raise ValueError(
                f"groups={list(groups)!r} names columns of X: pass group_columns="
                f"{list(groups)!r} to the estimator (or groups=X[{list(groups)!r}])."
            )
    values = groups.to_numpy() if isinstance(groups, pd.Series) else groups
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        if len(finite) and np.any(finite != np.round(finite)):
            warn(
                "groups holds non-integer numbers; group labels are usually integers or "
                "strings. fit's third argument is groups: weights go to sample_weight=.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )


def check_rows_aligned(X, others: dict, rebuilt: bool = True, frame: str = "X") -> None:
    """Warn of each of :func:`rows_misaligned`'s messages."""
    for message in rows_misaligned(X, others, rebuilt, frame):
        warn(message, UserWarning, stacklevel=user_stacklevel())


def rows_misaligned(X, others: dict, rebuilt: bool = True, frame: str = "X") -> list[str]:
    """Warn where ``X`` (a DataFrame with row labels of its own) and another pandas
    argument (``y``, ``groups``, weights, offsets, trials) hold the same row labels in
    another order. Rows are read by position, as scikit-learn reads them, so each row
    would get another row's outcome or group where ``X`` was sorted or shuffled and the
    other argument was not. An ``X`` whose index is ``0, 1, ..., n - 1`` says nothing
    about which row is which (a frame rebuilt from a transformer's array, or reset
    after a shuffle its partners went through too), so it is not compared; neither are
    arguments with other labels (read by position, as scikit-learn does). ``rebuilt``:
    whether ``X`` may be such a frame (not the ``data`` of a formula, whose index is its
    own). Where ``X`` is an array, the first pandas argument takes its place. Returns the
    messages (no warning: a partition's worker sends them to the driver)."""
    X = as_pandas(X)
    if isinstance(X, pd.DataFrame) and rebuilt and _fresh_index(X.index):
        X = None  # (its labels say nothing: the other arguments are compared instead)
    if not isinstance(X, pd.DataFrame):
        given = {n: as_pandas(v) for n, v in others.items()}
        given = {n: v for n, v in given.items() if isinstance(v, (pd.Series, pd.DataFrame))}
        if len(given) < 2:
            return []
        frame, X = next(iter(given.items()))
        others = {n: v for n, v in given.items() if n != frame}
    index = X.index
    if rebuilt and _fresh_index(index):
        return []
    messages = []
    for name, value in others.items():
        value = as_pandas(value)
        other = value.index if isinstance(value, (pd.Series, pd.DataFrame)) else None
        if other is None or len(other) != len(index) or other.equals(index):
            continue
        if _same_labels(index, other):
            reorder = (
                f"{name}.loc[{frame}.index]"
                if index.is_unique
                else f"the labels repeat, so .loc would repeat rows: reset both indexes "
                f"before sorting or shuffling, or reorder {name} by the same positions"
            )
            messages.append(
                f"{frame} and {name} hold the same row labels in another order (the first "
                f"rows of {frame} {list(index[:3])}, of {name} {list(other[:3])}). Rows are "
                f"read by position: if {frame} was sorted or shuffled and {name} was not, "
                f"each row gets another row's {name}; put {name} in {frame}'s order "
                f"({reorder}). If the positions do match, pass arrays (.to_numpy())."
            )
    return messages


def _fresh_index(index) -> bool:
    """``0, 1, ..., n - 1``: labels that say nothing about which row is which."""
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _same_labels(index, other) -> bool:
    """The two indexes hold the same row labels (in any order); with repeated labels
    (frames concatenated without ``ignore_index``), each as many times."""
    if index.is_unique and other.is_unique:
        return bool(index.isin(other).all())
    try:
        return bool(np.array_equal(np.sort(index.to_numpy()), np.sort(other.to_numpy())))
    except TypeError:  # labels that do not sort
        return False


# the start of check_groups_not_in_X's warning, which labels_in_X_meant silences
_GROUPS_IN_X = "X's column .* holds the labels of the grouping factor"


@contextmanager
def labels_in_X_meant():
    """Fits whose ``X`` a formula made: a grouping variable among its fixed predictors
    (``y ~ year + (1 | year)``) is written there, so meant."""
    with quiet(message=_GROUPS_IN_X):
        yield


def check_group_names(groups) -> None:
    """Raise where ``groups`` is one value, not one per row, or a DataFrame of grouping
    factors repeats a column name (each factor is named by its column)."""
    groups = as_pandas(groups)
    if groups is not None and not isinstance(groups, str) and np.ndim(groups) == 0:
        raise ValueError(
            f"groups must be array-like of shape (n_samples,) or (n_samples, n_factors) (one "
            f"label per row), got the single value {groups!r}."
        )
    repeated = repeated_names(groups) if isinstance(groups, pd.DataFrame) else []
    if repeated:
        raise ValueError(
            f"groups has repeated column names {repeated}: each grouping factor is named "
            "by its column; rename or drop the copies."
        )


def check_groups_not_in_X(X, groups) -> None:
    """Warn where a numeric column of ``X`` (a DataFrame, or an array whose columns are
    named ``x0``, ``x1``, ... as the fit names them) holds a grouping factor's labels
    (``X = df.drop(columns="y")`` with ``groups=df["id"]``): it is fitted as a numeric
    predictor, a slope on the labels' numbers, which is rarely meant."""
    X, groups = as_pandas(X), as_pandas(groups)
    if groups is None:
        return
    if not isinstance(X, pd.DataFrame):
        # an array (a ColumnTransformer's passthrough, df.to_numpy()): its columns by position
        arr = np.asarray(X) if isinstance(X, np.ndarray) else None
        if arr is None or arr.ndim != 2 or arr.dtype.kind not in "iufb":
            return
        X = pd.DataFrame(arr, columns=[f"x{j}" for j in range(arr.shape[1])], copy=False)
        positions = {f"x{j}": j for j in range(arr.shape[1])}
    else:
        positions = {}
    # (labels read as arrays only where numeric: a column of strings is never an X column's)
    if isinstance(groups, pd.DataFrame):
        given = [(str(c), groups[c]) for c in groups.columns]
    elif isinstance(groups, pd.Series):
        given = [(str(groups.name) if groups.name is not None else "groups", groups)]
    else:
        arr = np.asarray(groups)
        if arr.ndim not in (1, 2):
            return
        given = [("groups", arr)] if arr.ndim == 1 else [(f"g{k}", a) for k, a in enumerate(arr.T)]
    for name, labels in given:
        if labels.dtype.kind not in "iuf" or not len(labels) or len(labels) != len(X):
            continue
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iuf":  # (a nullable integer column with missing labels)
            continue
        for column in X.columns:
            values = X[column]
            if not isinstance(values, pd.Series) or values.dtype.kind not in "iufb":
                continue
            if np.array_equal(values.to_numpy(), labels):
                warn_labels_column(str(column), name, positions.get(column))


def warn_labels_column(column: str, name: str, position: int | None = None) -> None:
    """:func:`check_groups_not_in_X`'s warning: ``column`` of X holds the labels of the
    grouping factor ``name`` (``position``: X is an array, the column's index)."""
    drop = (
        f"X.drop(columns={column!r})"
        if position is None
        else f"column {position} of the array; in a ColumnTransformer, leave the grouping "
        "column out of the columns passed through"
    )
    warn(
        f"X's column {column!r} holds the labels of the grouping factor {name!r}: it is "
        f"fitted as a numeric predictor, a slope on the labels' numbers, which is rarely "
        f"meant. Drop it from X ({drop}); keep it only for a real numeric trend (a year, "
        "with random effects per year).",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def check_outcome_not_in_X(X, y):
    """Raise when a column of the DataFrame ``X`` is the outcome itself (its name and its
    values), warn where a column of an array ``X`` equals it: fitted as a predictor it
    would explain y perfectly."""
    if isinstance(X, np.ndarray):
        _check_outcome_not_in_array(X, y)
        return
    name = getattr(y, "name", None)
    if name is None or not isinstance(X, pd.DataFrame) or name not in X.columns:
        return
    column = X[name]
    if not isinstance(column, pd.Series) or len(column) != len(y):
        return
    try:
        same = bool(np.array_equal(column.to_numpy(), np.asarray(y)))
    except (TypeError, ValueError):  # values that do not compare
        same = False
    if same:
        raise ValueError(
            f"X holds the outcome column {name!r} (the same values as y): as a predictor it "
            "would explain y by itself. Drop it from X. (A clone of a formula model, as "
            "cross-validation makes, is the plain estimator, which reads every column of X: "
            "cross-validate make_pipeline(FormulaTransformer(formula), Estimator()) instead.)"
        )


def _check_outcome_not_in_array(X: np.ndarray, y) -> None:
    """:func:`check_outcome_not_in_X` for an array ``X`` (``df.to_numpy()``, a
    ColumnTransformer's passthrough): a column equal to a numeric ``y`` in every row is
    warned of."""
    values = np.asarray(y)
    if (
        X.ndim != 2
        or X.dtype.kind not in "iufb"
        or values.ndim != 1
        or values.dtype.kind not in "iufb"
        or len(values) != X.shape[0]
        or len(values) < 10
    ):
        return
    same = [j for j in range(X.shape[1]) if np.array_equal(X[:, j], values)]
    if same:
        # (warned, not refused: without a name, a predictor that separates a binary
        # outcome, or a lagged count equal to it on few rows, looks the same)
        warn(
            f"column {same[0]} of X (an array) holds the same values as y in every row: if "
            "it is the outcome (a ColumnTransformer's passthrough keeps it), it explains y "
            "by itself as a predictor; drop it from X (in a ColumnTransformer, leave the "
            "outcome out of the columns passed through).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
