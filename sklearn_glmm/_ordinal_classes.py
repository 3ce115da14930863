"""The classes of an ordinal outcome: the model's order (lowest first) and scikit-learn's.

The model's order (``class_order_``) comes from the data: a pandas Categorical's
categories, ordered or not (R's factor levels), or a polars ``Enum``'s; other labels
are sorted. scikit-learn's ``classes_`` are always the sorted labels (``np.unique``
order), the order every scikit-learn metric assumes for ``predict_proba``'s columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._frames import as_pandas, nw
from ._validation import check_class_labels
from ._warn import user_stacklevel, warn


def category_order(y):
    """The categories of ``y`` in their order when it is categorical, else None.

    A pandas Categorical (ordered or not) and a polars ``Enum`` give their
    categories; a polars ``Categorical`` (no order of its own: its categories sort as
    text) gives None, as plain labels.
    """
    if nw is not None and not isinstance(y, (pd.Series, pd.Index, pd.Categorical, np.ndarray)):
        if nw.dependencies.is_into_series(y):
            dtype = nw.from_native(y, series_only=True).dtype
            if dtype == nw.Enum:
                return list(dtype.categories)
            return None
    dtype = getattr(as_pandas(y), "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        return list(dtype.categories)
    return None


def ordinal_classes(y: np.ndarray, order) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(class_order, classes, codes)`` of the labels ``y`` (1-D, no missing values).

    ``order``: the categories of a categorical ``y`` (:func:`category_order`), or None
    for labels to be sorted (with a warning for three or more classes that are not
    numbers: their sorted order is rarely the scale's). ``class_order`` lists the
    observed classes lowest first, ``classes`` the same sorted, ``codes`` each row's
    index into ``class_order``.
    """
    if order is None:
        class_order, codes = _unique(y, return_inverse=True)
        check_class_labels(
            y,
            "OrdinalGLMM needs ordered class labels (integers, strings or a pandas "
            "Categorical), not continuous values.",
        )
        if len(class_order) >= 3 and class_order.dtype.kind not in "iufb":
            warn(
                f"the classes of y are not numbers and y is not categorical: they are sorted, "
                f"and the model takes {class_order.tolist()} as their order, lowest first. "
                "For another order pass an ordered pandas Categorical, e.g. "
                "pd.Categorical(y, categories=[...], ordered=True).",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        return class_order, class_order, codes
    codes_all = pd.Categorical(y, categories=order).codes
    if np.any(codes_all < 0):  # labels outside the categories (not from a Categorical)
        bad = sorted({str(v) for v in y[codes_all < 0]})[:5]
        raise ValueError(f"y has values that are not among its categories {order}: {bad}.")
    present = np.unique(codes_all)
    missing = [c for k, c in enumerate(order) if k not in set(present)]
    if missing:
        warn(
            f"categories {missing} of the outcome have no observations and are "
            "dropped: a threshold next to an empty category is not identified.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    class_order = pd.Index(order)[present].to_numpy()
    return class_order, _unique(class_order), np.searchsorted(present, codes_all)


def _unique(values, return_inverse=False):
    """``np.unique`` (scikit-learn's order of the classes), with a clear error for labels
    that cannot be sorted."""
    try:
        return np.unique(values, return_inverse=return_inverse)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in np.asarray(values, dtype=object)})
        raise ValueError(
            f"the labels of y mix types {kinds} that cannot be sorted; give them one type "
            "(e.g. y.astype(str), or an ordered pandas Categorical)."
        ) from None
