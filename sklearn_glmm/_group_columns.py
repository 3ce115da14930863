"""The grouping columns of ``groups``: their names, one 1-D column per factor, and each
column's labels factorised into level codes and sorted levels (missing labels refused).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from ._frames import as_pandas
from ._validation_rows import check_group_names
from ._warn import user_stacklevel, warn


def factor_names(groups) -> list[str]:
    """Names of the grouping factors as they will be reported."""
    groups = as_pandas(groups)
    if isinstance(groups, pd.DataFrame):
        return [str(c) for c in groups.columns]
    if isinstance(groups, pd.Series):
        return [str(groups.name) if groups.name is not None else "group"]
    # the shape alone: an object copy of every label is not needed for it
    if isinstance(groups, np.ndarray):
        shape = groups.shape
    else:
        shape = np.asarray(groups, dtype=object).shape
    if len(shape) == 1:
        return ["group"]
    return [f"g{k}" for k in range(shape[1])]


def factor_columns(groups, factor_order: list, n_samples: int) -> dict:
    """The fitted factors' columns of ``groups`` (new rows), by factor name.

    A DataFrame names its factors: its columns are matched to the fitted factors by
    name, in any order (a DataFrame with other names raises, unless the model was
    fitted from unnamed columns ``g0``, ``g1``, ...: read by position then, with a
    warning; one factor fitted unnamed, ``group``, is read by position). Arrays and a
    single Series are read by position.
    """
    cols = groups_columns(groups, n_samples, dates_as_objects=True)
    if len(cols) != len(factor_order):
        raise ValueError(
            f"groups has {len(cols)} factor(s) but the model was fitted with "
            f"{len(factor_order)}: {factor_order}."
        )
    frame = as_pandas(groups)
    if isinstance(frame, pd.DataFrame) and len(cols) == 1:
        # one factor: a DataFrame names it too (a frame of 'site' read as the fitted
        # 'id' put the sites' labels on people); fitted from an unnamed array or
        # Series ('group'), it is read by position
        name = str(frame.columns[0])
        if name != factor_order[0] and factor_order[0] != "group":
            raise ValueError(
                f"groups' column {name!r} is not the fitted grouping factor "
                f"{factor_order[0]!r}: name it as in fit, or pass a Series or an array to "
                "read it by position."
            )
    if isinstance(frame, pd.DataFrame) and len(cols) > 1:
        names = [str(c) for c in frame.columns]
        unnamed = list(factor_order) == [f"g{k}" for k in range(len(factor_order))]
        if sorted(names) == sorted(factor_order):
            return {name: cols[names.index(name)] for name in factor_order}
        if not unnamed:
            raise ValueError(
                f"groups' columns {names} are not the fitted grouping factors "
                f"{list(factor_order)}: name the columns as in fit (their order does not "
                "matter), or pass an array to match them by position."
            )
        # names the fit never saw: read by position, which a reordered frame gets wrong
        warn(
            f"the model's grouping factors were fitted from an array, unnamed "
            f"({list(factor_order)}), and groups at prediction is a DataFrame with columns "
            f"{names}: they are matched by position ({names[0]!r} as {factor_order[0]!r}, "
            "...). Fit with a DataFrame of named groups to have them matched by name, or "
            "pass an array (or columns named g0, g1, ...) in the fit's order.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return dict(zip(factor_order, cols))


def groups_columns(
    groups, n_samples: int, strings_as_arrays: bool = False, dates_as_objects: bool = False
) -> list[np.ndarray]:
    """Split ``groups`` into one 1-D object/array per factor, validating its shape.

    ``strings_as_arrays``: pandas string and categorical columns stay pandas arrays (they
    factorise without a copy to Python objects; a categorical keeps its categories'
    order). ``dates_as_objects``: a pandas date-time column without a time zone gives
    its ``Timestamp`` objects, local (wall) times, not NumPy's ``datetime64``, whose
    labels :func:`~sklearn_glmm._labels.match_levels` cannot tell from UTC instants."""
    groups = as_pandas(groups)

    def values(s: pd.Series):
        if strings_as_arrays and isinstance(s.dtype, (pd.StringDtype, pd.CategoricalDtype)):
            return s.array
        if dates_as_objects and s.dtype.kind == "M":
            return s.astype(object).to_numpy()
        return s.to_numpy()

    if strings_as_arrays and isinstance(groups, pd.Categorical):
        groups = pd.Series(groups)
    if isinstance(groups, pd.DataFrame):
        check_group_names(groups)
        cols = [values(col) for _, col in groups.items()]
    elif isinstance(groups, pd.Series):
        cols = [values(groups)]
    else:
        arr = np.asarray(groups)
        if arr.ndim == 0:
            raise ValueError(
                "groups must be array-like of shape (n_samples,) or (n_samples, n_factors)."
            )
        if arr.ndim == 1:
            cols = [arr]
        elif arr.ndim == 2:
            cols = [arr[:, k] for k in range(arr.shape[1])]
        else:
            raise ValueError(f"groups must be 1-D or 2-D, got an array with {arr.ndim} dimensions.")
    if not cols:
        raise ValueError("groups has no columns; pass at least one grouping factor.")
    for c in cols:
        if len(c) != n_samples:
            raise ValueError(
                f"groups has {len(c)} rows but X has {n_samples}; they must describe the same rows."
            )
    return cols


def _isnull(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":  # integer and boolean labels cannot be missing
        return np.zeros(arr.shape, dtype=bool)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    return np.asarray(pd.isna(pd.Series(values, dtype=object)))


def _isinf(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return np.isinf(arr)
    if arr.dtype == object:
        return np.array([isinstance(v, (float, np.floating)) and np.isinf(v) for v in arr])
    return np.zeros(len(arr), dtype=bool)


def _missing_labels_message(name, n_missing: int, n_samples: int) -> str:
    return (
        f"groups column {name!r} has missing or infinite labels in {n_missing} of "
        f"{n_samples} row(s); every row needs a group label (drop those rows or give "
        "them a label)."
    )


def _factorize(name, values, n_samples: int) -> tuple[np.ndarray, pd.Index]:
    """Level codes (sorted levels) of one grouping column; missing labels raise. A
    categorical column's levels are its categories present, in their order (the order of
    an R factor's levels, and of ``ranef``'s rows)."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        cat = pd.Categorical(values)
        if (cat.codes < 0).any():
            raise ValueError(_missing_labels_message(name, int((cat.codes < 0).sum()), n_samples))
        present = np.unique(cat.codes)
        rank = np.full(len(cat.categories), -1, dtype=np.intp)
        rank[present] = np.arange(len(present))
        levels = cat.categories[present].to_numpy()
        return rank[cat.codes], pd.Index(levels, dtype=object if levels.dtype == object else None)
    if isinstance(getattr(values, "dtype", None), pd.StringDtype):
        # a pandas string array: factorised as it is, its levels sorted as Python
        # sorts the same labels (by code point)
        null = np.asarray(values.isna())
        if null.any():
            raise ValueError(_missing_labels_message(name, int(null.sum()), n_samples))
        codes, uniques = values.factorize()
        labels = uniques.to_numpy(dtype=object)
        order = np.argsort(labels, kind="stable")
        rank = np.empty(len(order), dtype=np.intp)
        rank[order] = np.arange(len(order))
        return rank[codes], pd.Index(labels[order], dtype=object, copy=False)
    arr = np.asarray(values)
    if arr.dtype == object and infer_dtype(arr, skipna=False) == "string":
        # only str labels: none missing or infinite, and the array factorises as it is
        codes, levels = pd.factorize(arr, sort=True)
        return codes, pd.Index(levels, dtype=object)
    null = _isnull(values) | _isinf(values)
    if null.any():
        raise ValueError(_missing_labels_message(name, int(null.sum()), n_samples))
    # native dtypes factorise much faster; mixed labels go through object
    native = arr.dtype.kind in "iufbUS"
    try:
        codes, levels = pd.factorize(arr if native else pd.Series(values, dtype=object), sort=True)
    except TypeError as exc:  # lists, dicts, arrays: not labels
        raise ValueError(
            f"groups column {name!r} holds values that cannot be group labels ({exc}); give "
            "one label (a number or a string) per row."
        ) from exc
    return codes, pd.Index(levels)
