"""What a fitted model keeps, and what its pickle carries.

A fitted model keeps its training data in memory (the objective and its data,
``_objective``; the conditional fit on the training rows, ``_train``; the rows' level
codes of every grouping factor), so that every method works in the session that
fitted it. Its pickle carries them only with ``keep_data=True``: otherwise
``__getstate__`` leaves them out and stores instead the few numbers ``summary`` and
``report`` read from the data. Predictions, the result tables, Wald intervals,
``predict_interval``, ``marginal_means`` and ``contrast`` need none of it; the
methods that do (profiles, bootstrap, simulation, residuals, likelihood-ratio tests)
raise :class:`~sklearn_glmm.exceptions.TrainingDataError` on a model unpickled
without it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .exceptions import TrainingDataError

_QUANTILES = [0, 0.25, 0.5, 0.75, 1]


class training_data:
    """Class attribute standing in for a fitted model's training data.

    A non-data descriptor: a model that has its data finds them in its instance
    ``__dict__``, which wins. Without them, reading the attribute raises
    ``TrainingDataError`` on a model unpickled without its data, and the usual
    ``AttributeError`` on an unfitted one.
    """

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, est, owner=None):
        if est is None:
            return self
        if est.__dict__.get("_data_dropped"):
            raise TrainingDataError(
                f"this {type(est).__name__} was unpickled without its training data, which "
                "this method needs (profile and bootstrap intervals, simulate, residuals, "
                "fitted, scaled_residuals, overdispersion, anova and the diagnostic plots); "
                "refit it, or fit it with keep_data=True so that its pickles keep the data."
            )
        raise AttributeError(
            f"{type(est).__name__!r} object has no attribute {self.name!r}", name=self.name, obj=est
        )


def has_data(est) -> bool:
    return "_objective" in est.__dict__


def pearson_quantiles(est) -> np.ndarray:
    """Min, quartiles and max of the Pearson residuals (``summary``'s "Scaled residuals")."""
    if has_data(est):
        return np.quantile(est.residuals(type="pearson"), _QUANTILES)
    return est._data_summaries["pearson_quantiles"]


def binary_outcome(est) -> bool:
    """Whether the outcome is 0/1 (a binomial model with every trial 1)."""
    if has_data(est):
        return bool(est._family_obj.has_trials and np.all(est._train["trials"] == 1))
    return est._data_summaries["binary_outcome"]


def binary_column(est, name) -> bool:
    """Whether fixed-effect column ``name`` took only the values 0 and 1 in training."""
    if not has_data(est):
        return name in est._data_summaries["binary_columns"]
    sc = est._scaling
    k = est._fixed_names.index(name)
    if k not in sc["kept"]:
        return False
    j = sc["kept"].index(k) + int(sc["intercept"])
    vals = np.unique(est._objective.data.X[:, j]) * sc["scales"][k] + sc["means"][k]
    return len(vals) == 2 and np.allclose(vals, [0.0, 1.0])


def overdispersion_result(est):
    """``overdispersion(est)`` for ``report``: computed from the data, or as stored."""
    if has_data(est):
        from ._diagnostics import overdispersion

        return overdispersion(est)
    return est._data_summaries["overdispersion"]


def _summaries(est) -> dict:
    """The numbers ``summary`` and ``report`` read from the training data."""
    import warnings

    out = {
        "pearson_quantiles": pearson_quantiles(est),
        "binary_outcome": binary_outcome(est),
        "binary_columns": [n for n in est._fixed_names if binary_column(est, n)],
        "overdispersion": None,
    }
    if not out["binary_outcome"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["overdispersion"] = overdispersion_result(est)
    return out


def pickled_state(est, state: dict) -> dict:
    """``state`` (a copy of the model's ``__dict__``) as its pickle carries it."""
    with_data = state.pop("_pickle_with_data", False) or getattr(est, "keep_data", False)
    if with_data or not has_data(est):
        return state
    state["_data_summaries"] = _summaries(est)
    del state["_objective"], state["_train"]
    state["_factors"] = [dataclasses.replace(f, codes=None) for f in state["_factors"]]
    state["_data_dropped"] = True
    return state


def carrying_data(est):
    """``est``, or a shallow twin of it whose pickle carries the training data: what a
    joblib worker receives for profiles and bootstrap refits, and sends back for fits."""
    if not has_data(est) or getattr(est, "keep_data", False):
        return est
    twin = object.__new__(type(est))
    twin.__dict__.update(est.__dict__)
    twin.__dict__["_pickle_with_data"] = True
    return twin
