"""Checks of user input: every failure names the argument, the problem and a fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._frames import repeated_names
from ._warn import user_stacklevel, warn


def numeric_frame_values(X, min_rows: int, dtypes=None):
    """``np.asarray(X, dtype=float)`` for a frame that ``check_array`` converts just so.

    That is a pandas DataFrame of numpy integer or float columns with at least
    ``min_rows`` rows and one column: ``check_array(X, dtype=np.float64)`` returns
    exactly this array, and checking for such a frame directly costs a tenth of the
    general validation. Anything else (other containers, bool or extension dtypes)
    returns None. ``dtypes``: the frame's column dtypes, when already read.
    """
    if type(X) is not pd.DataFrame:
        return None
    n_rows, n_cols = X.shape
    if n_rows < min_rows or n_cols == 0:
        return None
    dtypes = X.dtypes if dtypes is None else dtypes
    if not all(isinstance(d, np.dtype) and d.kind in "iuf" for d in dtypes):
        return None
    return X.to_numpy(dtype=np.float64)


_ONE_HOT = (
    "One-hot encode it, e.g. in a Pipeline with ColumnTransformer([('onehot', "
    "OneHotEncoder(drop='first'), [{name!r}])], remainder='passthrough') (its sparse output "
    "is accepted), or fit through the formula front end (sklearn_glmm.formula.glmer), which "
    "codes text and categorical columns as R does. If the column identifies the groups, pass "
    "it as groups or name it in group_columns"
)


def _column_kind(column: pd.Series) -> str | None:
    """``"time"``, ``"span"``, ``"categorical"`` or ``"text"`` for a column that is not a
    number; None for numeric and boolean columns (and what ``check_array`` judges)."""
    dtype = column.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "time"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "span"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if isinstance(dtype, pd.StringDtype) or pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        if inferred in ("string", "mixed", "mixed-integer", "bytes", "categorical"):
            return "text"
        if inferred in ("datetime", "datetime64", "date", "period"):
            return "time"
        if inferred in ("timedelta", "timedelta64"):
            return "span"
    return None


def _non_numeric_message(name, column: pd.Series, kind: str) -> str:
    dtype = column.dtype
    if kind == "time":
        if isinstance(dtype, pd.PeriodDtype):
            first = f" (periods: X[{name!r}].dt.to_timestamp() first)"
        elif pd.api.types.is_object_dtype(dtype):
            first = f" (date objects: pd.to_datetime(X[{name!r}]) first)"
        else:
            first = ""
        return (
            f"X column {name!r} holds dates or times ({dtype}); a GLMM needs numeric time. "
            "Convert it to a number, e.g. days since a fixed start (the same start at fit and "
            f"predict): (X[{name!r}] - pd.Timestamp('2020-01-01')) / pd.Timedelta(days=1)"
            f"{first}."
        )
    if kind == "span":
        return (
            f"X column {name!r} holds time spans ({dtype}); a GLMM needs numbers. Convert it "
            f"to a number of units, e.g. X[{name!r}] / pd.Timedelta(days=1) (days) or "
            f"X[{name!r}].dt.total_seconds()."
        )
    if kind == "categorical":
        msg = (
            f"X column {name!r} is categorical ({dtype}): its categories are labels, not "
            f"numbers. {_ONE_HOT.format(name=name)}."
        )
        if pd.api.types.is_numeric_dtype(dtype.categories.dtype):
            msg += (
                " If its categories are numbers meant as a numeric predictor, convert it: "
                f"X[{name!r}].astype(float)."
            )
        return msg
    example = next((v for v in column if isinstance(v, (str, bytes))), None)
    such_as = f" such as {example!r}" if example is not None else ""
    return (
        f"X column {name!r} holds text{such_as} ({dtype}), which a GLMM cannot use as a "
        f"number. {_ONE_HOT.format(name=name)}."
    )


def check_numeric_columns(X, dtypes=None) -> None:
    """Every column of a DataFrame ``X`` must be numeric (or boolean): a text, categorical,
    date or time-span column raises, naming the column and how to convert it.
    ``dtypes``: the frame's column dtypes, when already read."""
    if not isinstance(X, pd.DataFrame):
        return
    dtypes = X.dtypes if dtypes is None else dtypes
    if all(isinstance(d, np.dtype) and d.kind in "iufb" for d in dtypes):
        return
    for k, name in enumerate(X.columns):
        column = X.iloc[:, k]
        kind = _column_kind(column)
        if kind is not None:
            raise ValueError(_non_numeric_message(name, column, kind))


# a sparse X is made dense up to this many entries (800 MB of float64)
MAX_DENSE_ENTRIES = 10**8


def densify(X):
    """A scipy sparse ``X`` as a dense array (the fixed-effect design is dense); other
    inputs as they are. Too large a matrix raises, naming what made it sparse."""
    if not sp.issparse(X):
        return X
    n, p = X.shape
    if n * p > MAX_DENSE_ENTRIES:
        raise ValueError(
            f"X is a sparse matrix of shape {X.shape}: the model's fixed-effect design is "
            f"dense, and {n} x {p} = {n * p:.3g} entries ({8e-9 * n * p:.3g} GB) is too large "
            f"to make dense (the limit is {MAX_DENSE_ENTRIES:.0e} entries). If the columns come "
            "from OneHotEncoder, a categorical column with many levels is usually better as a "
            "grouping factor (groups or group_columns) than as fixed effects; to keep it, pass "
            "OneHotEncoder(sparse_output=False) (and ColumnTransformer(sparse_threshold=0)) "
            "and make sure the dense matrix fits in memory."
        )
    return X.toarray()


def check_unique_columns(X) -> None:
    """A DataFrame's column names must be unique: terms such as ``random_effects="1 + x"``
    and ``group_columns`` pick columns by name."""
    names = repeated_names(X) if isinstance(X, pd.DataFrame) else []
    if names:
        raise ValueError(
            f"X has duplicated column name(s) {names}: every column needs its own name (terms "
            "such as random_effects='1 + x' and group_columns pick columns by name). Rename "
            "or drop the duplicates, e.g. X.loc[:, ~X.columns.duplicated()]."
        )


def as_float_vector(values, name: str, n_samples: int, *, default=None) -> np.ndarray:
    """A finite float copy of a per-row argument (``offset``, ``trials``, ...).

    Without ``values``, ``default`` in every row: a read-only view of one number, which
    costs no memory per row.
    """
    if values is None:
        return None if default is None else np.broadcast_to(float(default), (n_samples,))
    arr = np.asarray(values)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (n_samples,), got shape {arr.shape}.")
    if len(arr) != n_samples:
        raise ValueError(f"{name} has {len(arr)} rows but X has {n_samples}; they must match.")
    _refuse_non_real(arr, name)
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} has non-finite values (NaN or inf) in {int(bad.sum())} of {n_samples} "
            "row(s); drop those rows or fill them in."
        )
    return arr.copy()


# an offset whose values span more than this on the link scale (a factor of 7e10
# between two rows' means under a log link) is an exposure passed as it is, not its
# logarithm; a log exposure in other units is shifted by a constant, which keeps the span
OFFSET_SPAN = 25.0


def check_offset_scale(offset: np.ndarray, whole: bool | None = None) -> None:
    """Warn where an offset looks like an exposure passed as it is, which belongs there
    as ``np.log(exposure)``: its values span more than :data:`OFFSET_SPAN` on the link
    scale (``offset=df["population"]``), or they are whole numbers of at least 1, not all
    equal (``offset=df["days"]``, days 1 to 14: a logarithm is a whole number only at an
    exposure of 1, so a log exposure never looks so). ``whole``: whether every finite
    value is a whole number of at least 1, when the caller knows it (a partitioned fit's
    driver, from the partitions, with ``offset`` their smallest and largest values)."""
    finite = offset[np.isfinite(offset)]
    if not len(finite):
        return
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo > OFFSET_SPAN:
        warn(
            f"offset spans {lo:g} to {hi:g}: an offset is added to the linear predictor (the "
            f"link scale), so with a log link two rows' means differ by a factor of "
            f"exp({hi - lo:g}) = {np.exp(min(hi - lo, 709.0)):.1e} from it alone. An exposure "
            "(a time at risk, a population) goes in as its logarithm: offset=np.log(exposure).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        return
    if hi > lo and (offset_is_whole(finite) if whole is None else whole):
        warn(
            f"offset holds whole numbers from {lo:g} to {hi:g}: it is added to the linear "
            "predictor (the link scale), so with a log link a row's mean is multiplied by "
            f"exp(offset), up to {np.exp(hi - lo):.3g} times another's. An exposure (days at "
            "risk, a number of trials or visits) goes in as its logarithm: "
            "offset=np.log(exposure). If these are log-scale values, ignore this warning.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def offset_is_whole(offset: np.ndarray) -> bool:
    """Whether every finite value of ``offset`` is a whole number of at least 1 (an
    exposure's count of days, visits, people): :func:`check_offset_scale`'s second test."""
    finite = offset[np.isfinite(offset)]
    return bool(len(finite) and finite.min() >= 1.0 and np.all(finite == np.round(finite)))


def _refuse_non_real(arr: np.ndarray, name: str) -> None:
    """Raise for dates, time spans and complex numbers, which numpy would turn into
    numbers silently (nanoseconds since 1970, the real part)."""
    kind = arr.dtype.kind
    if kind in "mMc":
        what = {"M": "dates or times", "m": "time spans", "c": "complex numbers"}[kind]
        raise ValueError(
            f"{name} holds {what} (dtype {arr.dtype}); it must hold real numbers. Convert "
            "it first (a time span to a number of units, e.g. days)."
        )


def numeric_outcome(y, what: str = "counts") -> np.ndarray:
    """A float copy or view of a numeric outcome ``y`` (counts, successes), refusing
    dates, time spans, complex numbers and text with a clear error."""
    arr = np.asarray(y)
    _refuse_non_real(arr, "y")
    try:
        return np.asarray(arr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must hold numbers ({what}) for this model: {exc}") from exc


def check_level(level, name: str = "level", example: str = "0.95 for 95 %") -> float:
    """``level`` of an interval (or another probability such as a test's ``alpha``), a
    number in (0, 1) (``level=95`` raises: not a percent)."""
    if isinstance(level, np.ndarray) and level.ndim == 0:  # (a 0-d array: its number)
        level = level[()]
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float, np.number)):
        raise ValueError(f"{name} must be a number in (0, 1), got {level!r}.")
    if not 0 < level < 1:
        raise ValueError(f"{name} must be in (0, 1) ({example}), got {level!r}.")
    return float(level)


def check_positive_count(value, name: str) -> int:
    """A number of simulations or replicates: a whole number >= 1 (not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_bool(value, name: str) -> bool:
    """``value`` of a True/False option, refused unless a bool (a string such as
    ``"no"`` would read as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_weights(sample_weight, n_samples: int) -> np.ndarray:
    w = as_float_vector(sample_weight, "sample_weight", n_samples, default=1.0)
    if (w < 0).any():
        raise ValueError(
            f"sample_weight has {int((w < 0).sum())} negative value(s); weights must be >= 0."
        )
    if not (w > 0).any():
        raise ValueError("sample_weight is zero for every row; at least one row needs weight > 0.")
    return w


def check_counts(y: np.ndarray) -> np.ndarray:
    """Validate a count outcome: non-negative; non-integers warned about."""
    if (y < 0).any():
        raise ValueError(
            f"y has {int((y < 0).sum())} negative value(s); count models need counts >= 0."
        )
    if np.any(y != np.round(y)):
        warn(
            "y has non-integer values; the count log-likelihood is evaluated as if they were "
            "counts (quasi-likelihood). Round y if it holds counts.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return y


def check_class_labels(y: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` (``what`` says what is needed) for labels that are not classes.

    A 1-D integer or bool array is "binary" or "multiclass", which the caller's class
    count tells apart: only other labels need scikit-learn's ``type_of_target``."""
    if y.ndim == 1 and y.dtype.kind in "iub":
        return
    from sklearn.utils.multiclass import type_of_target

    kind = type_of_target(y)
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"Unknown label type {kind!r}: {what}")


def check_trials(trials, y: np.ndarray, n_samples: int) -> np.ndarray:
    t = as_float_vector(trials, "trials", n_samples)
    if (t < 0).any():
        raise ValueError(f"trials has {int((t < 0).sum())} negative value(s); trials must be >= 0.")
    partial = np.abs(t - np.round(t)) > 1e-6
    if partial.any():
        warn(
            f"trials is not a whole number in {int(partial.sum())} row(s); the binomial "
            "likelihood of a fractional number of trials is not a probability. Pass whole "
            "numbers of trials (proportions go in y times trials).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if (y < 0).any():
        raise ValueError("y (successes) must be >= 0 when trials is given.")
    if (y > t).any():
        raise ValueError(
            f"y (successes) exceeds trials in {int((y > t).sum())} row(s); y must be the number "
            "of successes out of trials."
        )
    fractional = np.abs(y - np.round(y)) > 1e-6
    if fractional.any():
        if np.all(y <= 1.0) and (t > 1).any():
            raise ValueError(
                f"y looks like proportions ({int(fractional.sum())} row(s) between 0 and 1), "
                "but with trials y is the number of successes: pass y * trials (R's "
                "glm(prop ~ x, weights = n) is successes = prop * n out of n)."
            )
        warn(
            f"y (successes) is not a whole number in {int(fractional.sum())} row(s); the "
            "binomial likelihood of non-integer successes is not a probability (R warns "
            "'non-integer #successes').",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return t


def check_y_finite(y, n_samples: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D of shape (n_samples,), got shape {arr.shape}.")
    if len(arr) != n_samples:
        raise ValueError(f"y has {len(arr)} rows but X has {n_samples}; they must match.")
    if arr.dtype.kind in "fc":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(
                f"y has non-finite values (NaN or inf) in {int(bad.sum())} of {n_samples} "
                "row(s); drop those rows."
            )
    elif arr.dtype == object:
        bad = np.asarray(pd.isna(pd.Series(arr)))
        if bad.any():
            raise ValueError(
                f"y has missing values in {int(bad.sum())} of {n_samples} row(s); drop those rows."
            )
    return arr


def aliased_columns(X: np.ndarray, rel_tol: float = 1e-7) -> list[int]:
    """Columns of X (left to right) that are linear combinations of earlier ones."""
    X = np.asarray(X, dtype=float)
    if 0 < X.shape[1] <= X.shape[0]:
        # the common case in one Cholesky factorisation of X'X: its diagonal R_kk is
        # the length of column k off the span of the columns before it, the residual
        # Gram-Schmidt measures (to a relative 1e-6 or better at 100 times the
        # threshold); when every one is well clear of the threshold, none is aliased
        gram = X.T @ X
        try:
            r_kk = np.diag(np.linalg.cholesky(gram))
        except np.linalg.LinAlgError:
            r_kk = np.zeros(0)
        norms = np.sqrt(np.diag(gram))
        if len(r_kk) and np.all(r_kk > 100.0 * rel_tol * np.maximum(norms, 1.0)):
            return []
    return _aliased_by_gram_schmidt(X, rel_tol)


def _aliased_by_gram_schmidt(X: np.ndarray, rel_tol: float) -> list[int]:
    """:func:`aliased_columns` column by column (Gram-Schmidt, twice over)."""
    kept: list[np.ndarray] = []
    dropped = []
    for k in range(X.shape[1]):
        x = X[:, k].astype(float)
        norm = np.linalg.norm(x)
        r = x.copy()
        for _pass in range(2):  # twice: classical Gram-Schmidt loses orthogonality
            for q in kept:
                r -= (q @ r) * q
        rn = np.linalg.norm(r)
        if norm == 0 or rn <= rel_tol * max(norm, 1.0):
            dropped.append(k)
        else:
            kept.append(r / rn)
    return dropped


def fitted_glmm(model):
    """The fitted model inside ``model``: a Pipeline's final step, a fitted search's
    ``best_estimator_`` (for the functions that read the fitted model alone, not new
    data), or ``model`` itself."""
    from sklearn.pipeline import Pipeline

    while True:
        model = _searched_model(model)
        if not (isinstance(model, Pipeline) and len(model)):
            return model
        model = model[-1]


def _searched_model(model):
    """A fitted search's ``best_estimator_`` (a search's of searches too), or ``model``."""
    while not hasattr(model, "fit_result_") and hasattr(model, "best_estimator_"):
        model = model.best_estimator_
    _check_search_refitted(model)
    return model


def _check_search_refitted(model) -> None:
    """Raise for a search fitted with ``refit=False``: it holds no fitted model."""
    if hasattr(model, "best_params_") and not hasattr(model, "fit_result_"):
        raise TypeError(
            f"this {type(model).__name__} was fitted with refit=False, so it holds no fitted "
            "model: fit one with its best_params_ (estimator.set_params(**search."
            "best_params_).fit(...)), or search with refit=True."
        )


def reads_fitted_models(func):
    """Let ``func(model, ...)`` (``func(*models, ...)``) take a fitted Pipeline or search
    for the model at its end (:func:`fitted_glmm`)."""
    import functools
    import inspect

    variadic = next(iter(inspect.signature(func).parameters.values())).kind is (
        inspect.Parameter.VAR_POSITIONAL
    )

    @functools.wraps(func)
    def call(*args, **kwargs):
        if variadic:
            args = tuple(fitted_glmm(m) for m in args)
        elif args:
            args = (fitted_glmm(args[0]), *args[1:])
        elif "model" in kwargs:
            kwargs["model"] = fitted_glmm(kwargs["model"])
        return func(*args, **kwargs)

    return call


def fitted_glmm_for_data(model, call: str, frame: bool = False):
    """The fitted model inside ``model`` for a function that also reads data ``X``: a
    fitted search's ``best_estimator_``; a Pipeline raises (its final step sees ``X``
    transformed by the steps before it, which the function cannot know it should do).
    ``frame``: the function reads a data frame of other columns too (a plot's time and
    outcome), said in the advice."""
    from sklearn.pipeline import Pipeline

    model = _searched_model(model)
    if isinstance(model, Pipeline):
        if len(model) == 1:
            return fitted_glmm_for_data(model[-1], call, frame)
        if frame:
            raise TypeError(
                f"{call} takes the fitted model and the data it reads, got a Pipeline (its "
                "final step sees the rows transformed by the steps before it): pass "
                f"{call}(pipe[-1], data, ...) with data holding the model's columns as that "
                "step sees them (pipe[:-1].transform(X), a DataFrame with "
                "set_output(transform='pandas')) beside the other columns the plot reads "
                "(a copy of a rescaled time column in its raw units for the axis)."
            )
        raise TypeError(
            f"{call} takes the fitted model and the data it reads, got a Pipeline: pass its "
            "final step and X as that step sees it, "
            f"{call}(pipe[-1], pipe[:-1].transform(X), ...)."
        )
    return model
