"""What a fitted model keeps, and what its pickle carries.

A fitted model keeps its training data in memory, in its result ``fit_result_`` (the
objective and its data, ``objective``; the conditional fit on the training rows,
``train``; the rows' level codes of every grouping factor), so that every method works
in the session that fitted it. Its pickle carries them only with ``keep_data=True``:
otherwise ``__getstate__`` pickles the result without them
(``FitResult.without_data``), with the few numbers ``summary`` and ``report`` read
from the data instead. Predictions, the result tables, Wald intervals,
``predict_interval``, ``marginal_means`` and ``contrast`` need none of it; the
methods that do (profiles, bootstrap, simulation, residuals, likelihood-ratio tests)
raise :class:`~sklearn_glmm.exceptions.TrainingDataError` on a model unpickled
without it.
"""

from __future__ import annotations

import numpy as np

from ._fit_result import unrotated
from ._prediction_variance import pickled_summary
from ._warn import quiet

_QUANTILES = [0, 0.25, 0.5, 0.75, 1]


def fitted_before_result(state: dict) -> bool:
    """Whether a pickled ``state`` is a fitted model of the format before ``fit_result_``
    (its fit spread over private attributes such as ``_params``)."""
    return "_params" in state or "_family_obj" in state


def has_data(est) -> bool:
    result = est.__dict__.get("fit_result_")
    return result is not None and result.has_data


def pearson_quantiles(est) -> np.ndarray:
    """Min, quartiles and max of the Pearson residuals (``summary``'s "Scaled residuals")
    of the rows with a positive prior weight (a row of weight 0 is no observation; R's
    summary.glm leaves them out too)."""
    if has_data(est):
        used = est.fit_result_.train["w"] > 0
        if not used.any():
            return np.full(len(_QUANTILES), np.nan)
        return np.quantile(est.residuals(type="pearson")[used], _QUANTILES)
    return est.fit_result_.data_summaries["pearson_quantiles"]


def binary_outcome(est) -> bool:
    """Whether the outcome is 0/1 (a binomial model with every trial 1)."""
    res = est.fit_result_
    if res.has_data:
        return bool(res.family.has_trials and np.all(res.train["trials"] == 1))
    return res.data_summaries["binary_outcome"]


def binary_column(est, name) -> bool:
    """Whether fixed-effect column ``name`` took only the values 0 and 1 in training."""
    res = est.fit_result_
    if not res.has_data:
        return name in res.data_summaries["binary_columns"]
    sc = res.scaling
    k = res.fixed_names.index(name)
    if k not in sc["kept"]:
        return False
    j = sc["kept"].index(k) + int(sc["intercept"])
    X, _ = unrotated(sc, res.objective.data.X)  # one column per predictor
    # (undoing a decorrelation leaves rounding on the column's values)
    vals = X[:, j] * sc["scales"][k] + sc["means"][k]
    zero, one = np.abs(vals) < 1e-6, np.abs(vals - 1.0) < 1e-6
    return bool(np.all(zero | one) and zero.any() and one.any())


def overdispersion_result(est):
    """``overdispersion(est)`` for ``report``: computed from the data, or as stored."""
    if has_data(est):
        from ._diagnostics import overdispersion

        return overdispersion(est)
    return est.fit_result_.data_summaries["overdispersion"]


def _summaries(est) -> dict:
    """The numbers ``summary`` and ``report`` read from the training data."""

    out = {
        "pearson_quantiles": pearson_quantiles(est),
        "binary_outcome": binary_outcome(est),
        "binary_columns": [n for n in est.fit_result_.fixed_names if binary_column(est, n)],
        "overdispersion": None,
        # rows of known groups' prediction variances (predict_interval)
        "joint_precision": pickled_summary(est.fit_result_),
    }
    if not out["binary_outcome"]:
        with quiet():
            out["overdispersion"] = overdispersion_result(est)
    return out


def pickled_state(est, state: dict) -> dict:
    """``state`` (a copy of the model's ``__dict__``) as its pickle carries it."""
    with_data = state.pop("_pickle_with_data", False) or getattr(est, "keep_data", False)
    if with_data or not has_data(est):
        return state
    state["fit_result_"] = est.fit_result_.without_data(_summaries(est))
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
