"""Timing one reference case's fits (shared by ``run.py`` and ``compare_cpu.py``).

No imports of the library here: the caller decides which checkout it times.
"""

from __future__ import annotations

import time
import warnings


def fit_times(case: str, n: int, case_data, make_estimator, clock=time.perf_counter):
    """``n`` timed fits of ``case`` after one warm-up (caches, imports): the times by
    ``clock`` and the last fitted estimator."""
    spec, X, y, groups, kw = case_data(case)
    times, est = [], None
    for rep in range(n + 1):
        est = make_estimator(spec)
        t0 = clock()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y, groups=groups, **kw)
        if rep:  # the first fit warms caches and imports
            times.append(clock() - t0)
    return times, est
