"""Threshold structures of cumulative link models, as ``ordinal::clm`` defines them.

The ``K - 1`` thresholds ``alpha`` of a ``K``-class outcome are a linear map of the
threshold parameters ``a`` the optimiser sees: ``alpha = J a`` (clm's ``tJac``).

* ``"flexible"``: ``J = I``; one parameter per threshold, named ``"1|2"``, ``"2|3"``...
* ``"equidistant"``: ``alpha_j = threshold.1 + (j - 1) spacing``.
* ``"symmetric"``: thresholds symmetric around a centre (one ``central`` for an odd
  number of thresholds, ``central.1`` and ``central.2`` for the two middle ones of
  an even number), with ``spacing.k`` the distance of the k-th pair from it.

Example
-------
>>> from sklearn_glmm._engine.families.thresholds import threshold_structure
>>> J, names = threshold_structure(4, "equidistant", ["a", "b", "c", "d"])
>>> names, J[:, 1].tolist()
(['threshold.1', 'spacing'], [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = ("flexible", "equidistant", "symmetric")


def threshold_names(labels) -> list[str]:
    """clm's names of the thresholds, ``"low|mid"`` from consecutive class labels."""
    labels = [str(v) for v in labels]
    return [f"{a}|{b}" for a, b in zip(labels[:-1], labels[1:])]


def threshold_structure(n_classes: int, kind: str, labels) -> tuple[np.ndarray, list[str]]:
    """``(J, names)``: thresholds ``alpha = J a`` and the names of the parameters ``a``."""
    nt = n_classes - 1
    if kind == "flexible":
        return np.eye(nt), threshold_names(labels)
    if kind not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {list(THRESHOLDS)}, got {kind!r}.")
    if nt < 2:
        raise ValueError(
            f"threshold={kind!r} needs an outcome with 3 or more classes (got {n_classes}); "
            "use threshold='flexible'."
        )
    if kind == "equidistant":
        return np.column_stack([np.ones(nt), np.arange(nt, dtype=float)]), [
            "threshold.1",
            "spacing",
        ]
    m = nt // 2
    if nt % 2:  # one central threshold at index m, pairs m -/+ k
        J = np.zeros((nt, m + 1))
        J[:, 0] = 1.0
        for k in range(1, m + 1):
            J[m - k, k], J[m + k, k] = -1.0, 1.0
        return J, ["central"] + [f"spacing.{k}" for k in range(1, m + 1)]
    # two central thresholds at indices m - 1 and m, pairs outwards from them
    J = np.zeros((nt, m + 1))
    J[:m, 0] = 1.0
    J[m:, 1] = 1.0
    for k in range(1, m):
        J[m - 1 - k, 1 + k], J[m + k, 1 + k] = -1.0, 1.0
    return J, ["central.1", "central.2"] + [f"spacing.{k}" for k in range(1, m)]


def start_parameters(J: np.ndarray, alpha0: np.ndarray) -> np.ndarray:
    """Parameters ``a`` whose thresholds ``J a`` are closest to ``alpha0``, kept ordered.

    Least squares; when that leaves the thresholds out of order (a symmetric
    structure on skewed marginal proportions), evenly spread ones around the
    same centre are projected instead.
    """
    a, *_ = np.linalg.lstsq(J, alpha0, rcond=None)
    if np.all(np.diff(J @ a) > 0):
        return a
    nt = len(alpha0)
    spread = max(float(alpha0[-1] - alpha0[0]), 1.0)
    even = float(np.mean(alpha0)) + spread * (np.arange(nt) - (nt - 1) / 2.0) / max(nt - 1, 1)
    a, *_ = np.linalg.lstsq(J, even, rcond=None)
    return a
