"""The estimators' inputs: ``X`` validated (a DataFrame's columns, numeric values, the
grouping columns it names taken out), its feature names, and whether a mixed model was
asked for. A mixin of the estimators' base class."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import get_config
from sklearn.utils.validation import _num_features, _num_samples, check_array, validate_data

from . import _random_only
from ._frames import as_pandas
from ._validation import check_numeric_columns, check_unique_columns, densify, numeric_frame_values
from ._warn import at_user_line


def _has_no_columns(X) -> bool:
    """Whether X is two-dimensional with zero columns (other inputs go to validate_data)."""
    try:
        return _num_features(X) == 0
    except TypeError:
        return False


class _Inputs:
    """Validation of ``X`` and the grouping columns it holds (a mixin of the estimators'
    base class: it reads their parameters and fitted attributes)."""

    def _groups_requested(self) -> bool:
        """Whether this estimator declared a mixed model: ``random_effects`` set, or
        ``set_fit_request(groups=True)`` (or an alias) called."""
        if self.random_effects is not None:
            return True
        request = self._get_metadata_request().fit.requests.get("groups")
        return request is True or isinstance(request, str)

    def _split_groups(self, X, groups):
        """Take grouping factors named in ``group_columns`` out of a DataFrame ``X``, and
        the ``random_only_columns`` (:func:`._random_only.append`, in :meth:`_validate_X`,
        appends them again)."""
        X = _random_only.drop(self, X)
        cols = getattr(self, "group_columns", None)
        if cols is None:
            cols = getattr(self, "_group_columns_fit", None)  # fit(X, y, groups="id")
        if cols is None:
            return X, groups
        cols = [cols] if isinstance(cols, str) else list(cols)
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                "group_columns names columns of X, so X must be a pandas DataFrame "
                f"(got {type(X).__name__}). In a Pipeline, a step before the estimator made "
                "the array: set its output to pandas (step.set_output(transform='pandas'); "
                "OneHotEncoder(sparse_output=False) first for an encoder)."
            )
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ValueError(
                f"grouping column(s) {missing} (group_columns, or groups= naming columns at fit) "
                f"are not columns of X; available: {list(X.columns)}."
            )
        if groups is not None:
            raise ValueError("Pass either groups or group_columns, not both.")
        return X.drop(columns=cols), X[cols]

    def _validate_X(self, X, reset: bool, with_groups: bool = False):
        """Float array of the fixed-effect columns of ``X`` (then the
        ``random_only_columns``, if any) and the grouping columns read from it.

        No fixed-effect column (the null model ``y ~ 1 + (1 | id)``) is allowed when the
        model has grouping factors: ``with_groups`` at fit, a fit without features at predict.
        """
        X = densify(as_pandas(X))  # polars, pyarrow, ... frames: names kept; sparse: dense
        Xa, groups_from_X = self._validate_fixed_X(X, reset, with_groups)
        return _random_only.append(self, X, Xa), groups_from_X

    def _validate_fixed_X(self, X, reset: bool, with_groups: bool):
        check_unique_columns(X)
        X_fixed, groups_from_X = self._split_groups(X, None)
        self._check_column_labels(X_fixed, reset)
        split = groups_from_X is not None or X_fixed is not X
        # a frame's dtypes are made into a Series on each read: read them once
        dtypes = list(X_fixed.dtypes) if isinstance(X_fixed, pd.DataFrame) else None
        check_numeric_columns(X_fixed, dtypes)
        min_rows = 2 if reset else 1  # a model cannot be fitted to a single row
        if reset:
            allow_empty = with_groups or groups_from_X is not None
        else:
            allow_empty = len(getattr(self, "_fixed_names", [None])) == 0
        if _has_no_columns(X_fixed):
            if allow_empty:
                return self._validate_empty_X(X, X_fixed, groups_from_X, reset, min_rows)
            name, n = type(self).__name__, _num_samples(X_fixed)
            if not reset:
                raise ValueError(
                    f"X has 0 features, but {name} is expecting {len(self._fixed_names)} "
                    "fixed-effect feature(s) as input."
                )
            raise ValueError(
                f"Found array with 0 feature(s) (shape=({n}, 0)) while a minimum of 1 is "
                f"required by {name}. Without fixed-effect columns (the null model "
                "y ~ 1 + (1 | id)) pass groups."
            )
        Xa = None
        if reset and not get_config()["array_api_dispatch"]:
            Xa = numeric_frame_values(X_fixed, min_rows, dtypes)
            if Xa is not None and not all(type(c) is str for c in X.columns):
                Xa = None
        if Xa is not None:
            # what validate_data records for a frame whose columns are named by strings:
            # the names and width of the whole frame, grouping columns included
            self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
            self.n_features_in_ = X.shape[1]
        elif not split:
            with at_user_line():  # scikit-learn's warnings (feature names) name the user's line
                Xa = validate_data(
                    self,
                    X,
                    reset=reset,
                    dtype=np.float64,
                    ensure_all_finite=False,
                    ensure_min_samples=min_rows,
                )
        else:
            # names and width are those of the whole frame, grouping columns included
            with at_user_line():
                validate_data(self, X, reset=reset, skip_check_array=True)
                Xa = check_array(
                    X_fixed, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=min_rows
                )
        if reset:
            fixed_names = list(map(str, X_fixed.columns)) if split else None
            self._fixed_names_in = fixed_names
        bad = ~np.isfinite(Xa)
        if bad.any():
            raise ValueError(
                f"Input X has {int(bad.sum())} non-finite value(s) (NaN or inf) in "
                f"{int(bad.any(axis=1).sum())} row(s); impute them (e.g. sklearn.impute."
                "SimpleImputer) or drop those rows."
            )
        return Xa, groups_from_X

    def _check_column_labels(self, X_fixed, reset: bool) -> None:
        """A frame whose column labels are not all strings (integers, tuples of a
        MultiIndex) has no feature names for scikit-learn to check at prediction: its
        labels are kept at fit, and a frame at prediction with other labels, or the same
        in another order, is refused (its columns would be read by position)."""
        labels = None
        if isinstance(X_fixed, pd.DataFrame) and not all(type(c) is str for c in X_fixed.columns):
            labels = list(X_fixed.columns)
        if reset:
            self._column_labels = labels
            return
        fitted = getattr(self, "_column_labels", None)
        if fitted is not None and labels is not None and labels != fitted:
            raise ValueError(
                f"X has the columns {labels[:10]}, but the model was fitted with the columns "
                f"{fitted[:10]} in that order: pass the same columns in the same order "
                "(they are read by position)."
            )

    def _validate_empty_X(self, X, X_fixed, groups_from_X, reset, min_rows):
        """``_validate_X`` for an X without fixed-effect columns: an (n, 0) array."""
        with at_user_line():
            validate_data(self, X, reset=reset, skip_check_array=True)
        n = _num_samples(X_fixed)
        if n < min_rows:
            raise ValueError(
                f"Found array with {n} sample(s) (shape=({n}, 0)) while a minimum of "
                f"{min_rows} is required by {type(self).__name__}."
            )
        if reset:
            split = groups_from_X is not None or X_fixed is not X
            self._fixed_names_in = [] if split else None
        return np.empty((n, 0)), groups_from_X

    def _feature_names(self, n):
        names = getattr(self, "_fixed_names_in", None)
        if names is not None:
            return names
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{k}" for k in range(n)]
