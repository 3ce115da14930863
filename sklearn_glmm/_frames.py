"""DataFrames and Series of other libraries (polars, pyarrow, modin, ...) read as pandas.

The package works on pandas internally (grouping factors, column names, the result
tables). Other dataframe libraries are read through narwhals, the dataframe-agnostic
layer scikit-learn itself uses (and installs, from scikit-learn 1.9 on): a frame or
series narwhals knows is converted at the boundary, column by column through numpy
(so polars needs no pyarrow), keeping its column names, its series name and whether
a column is categorical. Without narwhals such inputs pass through unchanged, to
scikit-learn's own validation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

try:  # scikit-learn >= 1.9 depends on narwhals >= 2
    import narwhals.stable.v2 as nw
except ImportError:  # pragma: no cover - older scikit-learn without narwhals
    try:
        import narwhals.stable.v1 as nw
    except ImportError:
        nw = None


def as_pandas(obj):
    """``obj`` as a pandas DataFrame or Series when it is another library's; else ``obj``.

    pandas objects, numpy arrays, lists and None are returned as they are.
    """
    if obj is None or nw is None or isinstance(obj, (pd.DataFrame, pd.Series, np.ndarray)):
        return obj
    if nw.dependencies.is_into_dataframe(obj):
        frame = nw.from_native(obj, eager_only=True)
        columns = {name: _column_values(frame[name]) for name in frame.columns}
        return pd.DataFrame(columns, index=pd.RangeIndex(frame.shape[0]))
    if nw.dependencies.is_into_series(obj):
        series = nw.from_native(obj, series_only=True)
        # polars names an unnamed series ""; it is unnamed for us
        return pd.Series(_column_values(series), name=series.name or None)
    return obj


def repeated_names(frame: pd.DataFrame) -> list:
    """The column names a DataFrame repeats, each once, in order (empty when unique)."""
    if frame.columns.is_unique:
        return []
    return list(dict.fromkeys(frame.columns[frame.columns.duplicated()].tolist()))


def as_frame(data) -> pd.DataFrame:
    """A formula's ``data`` as a pandas DataFrame: polars and other DataFrame libraries'
    frames column by column (``pd.DataFrame(polars_frame)`` would lose the names), a
    dict of columns or records as pandas reads them."""
    data = as_pandas(data)
    if isinstance(data, np.ndarray) and data.dtype.names is None:  # (a record array: names)
        raise TypeError(
            f"data is a numpy array of shape {data.shape}: a formula reads its variables by "
            "name, so data must be a pandas DataFrame (or another DataFrame library's frame, "
            "or a dict of columns)."
        )
    data = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    repeated = repeated_names(data)
    if repeated:
        raise ValueError(
            f"data has repeated column names {repeated}: a formula reads each variable by "
            "name; rename or drop the copies."
        )
    return data


def check_rows_left(data: pd.DataFrame, keep) -> None:
    """Raise where a formula's model frame has no rows: none in ``data``, or every one
    missing a variable the formula reads (R's na.omit)."""
    if len(data) == 0:
        raise ValueError("data has no rows.")
    if not np.any(keep):
        raise ValueError(
            f"every one of the {len(data)} rows of data has a missing value in a variable "
            "the formula reads (or in weights / offset), so no row is left to fit (R's "
            "na.omit drops such rows). Check those columns."
        )


def _column_values(series):
    """A column's values as numpy, or a pandas Categorical for a categorical column."""
    dtype = series.dtype
    if dtype == nw.Enum:
        return pd.Categorical(series.to_numpy(), categories=list(dtype.categories))
    if dtype == nw.Categorical:
        return pd.Categorical(series.to_numpy())
    return series.to_numpy()
