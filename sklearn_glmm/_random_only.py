"""Columns of X that random-effect terms (or the zero-inflation, hurdle or dispersion
model: glmmTMB's ``ziformula = ~ z`` with ``z`` not in the conditional model) read but
the fixed effects do not.

``random_only_columns="day"`` takes ``day`` out of the fixed effects (as
``group_columns`` takes the grouping factors out) and appends it after them in the
array the random-effect terms read: glmmTMB's ``y ~ x + ar1(0 + factor(day) | id)``,
lme4's ``y ~ x + (0 + z | id)``. The fixed-effect columns stay first, so
``X[:, :n_fixed] @ coef_`` is the fixed part and the factors index the whole array
by name (``names``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def columns(est) -> list[str]:
    """The estimator's ``random_only_columns`` as a list (empty when None)."""
    cols = getattr(est, "random_only_columns", None)
    if cols is None:
        return []
    return [cols] if isinstance(cols, str) else [str(c) for c in cols]


def drop(est, X):
    """``X`` without the random-only columns (``X`` itself when there are none)."""
    cols = columns(est)
    if not cols:
        return X
    if not isinstance(X, pd.DataFrame):
        raise ValueError(
            "random_only_columns names columns of X, so X must be a pandas DataFrame "
            f"(got {type(X).__name__}). In a Pipeline, a step before the estimator made "
            "the array: set its output to pandas (step.set_output(transform='pandas'); "
            "OneHotEncoder(sparse_output=False) first for an encoder)."
        )
    twice = sorted({c for c in cols if cols.count(c) > 1})
    if twice:
        raise ValueError(f"random_only_columns names {twice} more than once.")
    missing = [c for c in cols if c not in X.columns]
    if missing:
        raise ValueError(
            f"random_only_columns {missing} are not columns of X; available: {list(X.columns)}."
        )
    group_cols = getattr(est, "group_columns", None) or getattr(est, "_group_columns_fit", None)
    group_cols = [group_cols] if isinstance(group_cols, str) else list(group_cols or [])
    both = [c for c in cols if c in group_cols]
    if both:
        raise ValueError(f"{both} named in both random_only_columns and group_columns.")
    return X.drop(columns=cols)


def append(est, X, Xa: np.ndarray) -> np.ndarray:
    """The fixed-effect array ``Xa`` with the random-only columns of ``X`` after it."""
    cols = columns(est)
    if not cols:
        return Xa
    R = X[cols]
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(R[c]) or R[c].dtype == bool]
    if bad:
        raise ValueError(f"random_only_columns {bad} must be numeric.")
    R = R.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(R)):
        raise ValueError("random_only_columns have missing or infinite values.")
    return np.column_stack([Xa, R]) if Xa.shape[1] else R


def names(est, fixed_names: list[str]) -> list[str]:
    """Names of the columns of the array :func:`append` returns."""
    return list(fixed_names) + columns(est)


def with_data_columns(est, X_design: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """A formula model's fixed-effect design for raw ``data`` with the random-only
    columns appended from the data, as at fit."""
    cols = columns(est)
    if not cols:
        return X_design
    return X_design.assign(**{c: data[c].to_numpy(dtype=float) for c in cols})
