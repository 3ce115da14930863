"""Fits, bootstraps and formula fits in threads of one process: each fit's warnings reach
its own caller, the process's warning filters are never left changed, and a
``config_context`` block acts on its own thread.

``warnings.catch_warnings`` swaps the filters of the whole process (before Python 3.14):
the library's own warnings are issued, dropped or recorded per thread instead
(``_warn.quiet``, ``_warn.recorded``)."""

from __future__ import annotations

import threading
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

from sklearn_glmm import PoissonGLMM, _simulate, config_context, get_config
from sklearn_glmm.exceptions import SingularFitWarning
from sklearn_glmm.model_selection import compare_structures


def _counts(seed=0, n_groups=20, per=6, sd=0.5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=n_groups * per)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, sd, n_groups)[g]))
    return pd.DataFrame({"x": x}), y, g


def _unconverged_fit():
    X, y, g = _counts(1)
    m = PoissonGLMM(max_iter=2).fit(X, y, groups=g)
    assert not m.converged_


def _unconverged_fit_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _unconverged_fit()
    return [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_a_bootstrap_running_in_another_thread_does_not_silence_this_threads_fits(
    monkeypatch,
):
    # the bootstrap's refits are quiet; its block used to silence every thread's
    # warnings while it ran (a fit that did not converge, without a word)
    X, y, g = _counts()
    fitted = PoissonGLMM().fit(X, y, groups=g)
    inside, release = threading.Event(), threading.Event()
    real = _simulate._fit_and_check

    def paused(*args, **kwargs):
        inside.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(_simulate, "_fit_and_check", paused)
    errors = []

    def boot():
        try:
            fitted.confint(method="bootstrap", n_boot=3, random_state=0)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = threading.Thread(target=boot)
        t.start()
        try:
            assert inside.wait(30)
            _unconverged_fit()  # while the bootstrap is inside its refits
        finally:
            release.set()
            t.join(60)
    assert not errors, errors
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


def test_bootstraps_in_threads_leave_the_warning_filters_as_they_were():
    X, y, g = _counts()
    fitted = PoissonGLMM().fit(X, y, groups=g)
    before = list(warnings.filters)
    with joblib.parallel_config(backend="threading", n_jobs=2):
        joblib.Parallel()(
            joblib.delayed(fitted.confint)(method="bootstrap", n_boot=20, random_state=s)
            for s in range(4)
        )
    assert warnings.filters == before
    assert _unconverged_fit_warnings()


def test_formula_fits_in_threads_leave_the_warning_filters_as_they_were():
    from sklearn_glmm.formula import glmer

    X, y, g = _counts()
    df = X.assign(y=y, id=g)
    before = list(warnings.filters)
    with joblib.parallel_config(backend="threading", n_jobs=2):
        joblib.Parallel()(
            joblib.delayed(glmer)("y ~ x + (1 | id)", df, family="poisson") for _ in range(12)
        )
    assert warnings.filters == before


def test_compare_structures_in_threads_names_each_candidates_own_warnings():
    # each candidate's warnings, recorded for its row: read per thread, a threaded
    # search put one candidate's warning under another's name (or lost it)
    X, y, g = _counts(2, sd=0.0)  # no variation between groups: singular fits
    grid = ["1", "1 + x"]
    expected = _candidate_warnings(lambda: compare_structures(PoissonGLMM(), grid, X, y, groups=g))
    assert expected
    for _ in range(3):
        with joblib.parallel_config(backend="threading"):
            got = _candidate_warnings(
                lambda: compare_structures(PoissonGLMM(), grid, X, y, groups=g, n_jobs=2)
            )
        assert got == expected


def _candidate_warnings(run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return sorted(
        (w.category.__name__, str(w.message))
        for w in caught
        if issubclass(w.category, (SingularFitWarning, ConvergenceWarning))
    )


def test_a_config_context_block_acts_on_its_own_thread():
    pytest.importorskip("numba")
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def other():
        with config_context(compiled=True):
            seen["inside"] = get_config()["compiled"]
            inside.set()
            release.wait(30)
        seen["after"] = get_config()["compiled"]

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(30)
    try:
        assert get_config()["compiled"] is False  # this thread's own setting
    finally:
        release.set()
        t.join(30)
    assert seen == {"inside": True, "after": False}
    assert get_config()["compiled"] is False


def test_the_package_warns_through_its_own_warn_and_never_swaps_the_filters():
    # warnings.warn would bypass this thread's quiet()/recorded() blocks, and a
    # catch_warnings block around the package's own calls acts on every thread
    from pathlib import Path

    import sklearn_glmm

    root = Path(sklearn_glmm.__file__).parent
    offenders = [
        f"{path.relative_to(root)}: {needle}"
        for path in root.rglob("*.py")
        if path.name != "_warn.py"
        for needle in ("warnings.warn(", "catch_warnings(")
        if needle in path.read_text()
    ]
    assert not offenders, offenders


def test_compare_structures_labels_other_packages_warnings_of_each_candidate():
    # scikit-learn's warning of a candidate's fit (a column-vector y) is replayed with
    # the candidate's label at the caller's line, as the package's own are
    X, y, g = _counts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare_structures(PoissonGLMM(), ["1", "1 + x"], X, y[:, None], groups=g)
    conv = [w for w in caught if w.category.__name__ == "DataConversionWarning"]
    assert sorted(str(w.message).split("]")[0] for w in conv) == ["[1", "[1 + x"]
    assert all(w.filename == __file__ for w in conv)


def test_the_performance_functions_warnings_name_the_callers_line():
    from sklearn_glmm import performance

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(15), 8)
    x = rng.normal(size=len(g))
    y = rng.poisson(np.exp(-1 + 0.5 * x))  # no variation between groups: singular
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = PoissonGLMM().fit(pd.DataFrame({"x": x}), y, groups=g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        performance.icc(m)
        performance.r2(m)
    assert caught
    assert all(w.filename == __file__ for w in caught), [(w.filename, w.lineno) for w in caught]
