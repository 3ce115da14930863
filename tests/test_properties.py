"""Invariances a fit must have (issue 8), checked with hypothesis on small data sets.

- shuffling rows and relabelling groups give the same fit;
- duplicating every row equals ``sample_weight=2``;
- rescaling a column rescales its coefficient inversely;
- the caller's DataFrames and arrays are unchanged by fit and predict;
- the same data give bit-identical results run to run;
- a pickled model predicts identically;
- fits in threads and in processes agree with serial ones.

Each property draws few examples (``max_examples`` below) so the default run stays fast.
"""

from __future__ import annotations

import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM

FAST = settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ESTIMATORS = {"binomial": BinomialGLMM, "poisson": PoissonGLMM, "negbin": NegBinGLMM}
families = st.sampled_from(sorted(ESTIMATORS))
seeds = st.integers(0, 2**32 - 1)


def _dataset(family, seed, n_groups=15, per_group=6):
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    groups = np.repeat(np.arange(n_groups), per_group)
    X = pd.DataFrame({"time": rng.normal(size=n), "dose": rng.uniform(0, 2, size=n)})
    eta = -0.2 + 0.6 * X["time"] + 0.4 * X["dose"] + rng.normal(scale=0.7, size=n_groups)[groups]
    if family == "binomial":
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(eta))).astype(float)
    return X, y, groups


def _fit(family, X, y, groups, random_effects="1 + time", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits etc. are not what is tested here
        return ESTIMATORS[family](random_effects).fit(X, y, groups=groups, **kw)


def _summary(m):
    """The numbers a fit reports, in a fixed order (levels sorted by label)."""
    cov = np.concatenate([c.to_numpy().ravel() for c in m.random_effects_cov_.values()])
    # NB overdispersion as 1 / theta: near the Poisson limit theta sits on a flat ridge
    alpha = [1.0 / m.theta_] if hasattr(m, "theta_") else []
    return np.concatenate([[m.intercept_], m.coef_, cov, alpha, [m.loglik_]])


def _assert_same_fit(a, b, rtol=2e-4, atol=2e-5):
    np.testing.assert_allclose(_summary(a), _summary(b), rtol=rtol, atol=atol)


# -- shuffling rows and relabelling groups ------------------------------------------------------
@FAST
@given(family=families, seed=seeds, perm_seed=seeds, labels=st.sampled_from(["str", "neg", "big"]))
def test_shuffled_rows_and_relabelled_groups_give_the_same_fit(family, seed, perm_seed, labels):
    X, y, groups = _dataset(family, seed)
    ref = _fit(family, X, y, groups)
    perm = np.random.default_rng(perm_seed).permutation(len(y))
    relabel = {
        "str": lambda g: np.array([f"person-{k}" for k in g], dtype=object),
        "neg": lambda g: -7 * g - 3,
        "big": lambda g: g * 10**9 + 12345,
    }[labels]
    new_groups = relabel(groups)[perm]
    m = _fit(family, X.iloc[perm].reset_index(drop=True), y[perm], new_groups)
    _assert_same_fit(m, ref)
    # the same person's conditional mode, wherever their rows went
    pred_ref = ref.predict_mean(X, groups)
    np.testing.assert_allclose(m.predict_mean(X, relabel(groups)), pred_ref, rtol=1e-3)


# -- duplicating every row equals sample_weight = 2 ---------------------------------------------
@FAST
@given(family=families, seed=seeds)
def test_duplicated_rows_equal_sample_weight_two(family, seed):
    X, y, groups = _dataset(family, seed)
    doubled = _fit(family, pd.concat([X, X], ignore_index=True), np.r_[y, y], np.r_[groups, groups])
    weighted = _fit(family, X, y, groups, sample_weight=np.full(len(y), 2.0))
    _assert_same_fit(doubled, weighted)


# -- rescaling a column rescales its coefficient inversely --------------------------------------
@FAST
@given(
    family=families,
    seed=seeds,
    column=st.sampled_from(["time", "dose"]),
    log10_factor=st.floats(-6, 6),
)
def test_rescaled_column_rescales_its_coefficient(family, seed, column, log10_factor):
    X, y, groups = _dataset(family, seed)
    factor = 10.0**log10_factor
    ref = _fit(family, X, y, groups, random_effects="1")
    m = _fit(family, X.assign(**{column: X[column] * factor}), y, groups, random_effects="1")
    k = list(X.columns).index(column)
    expected = ref.coef_.copy()
    expected[k] /= factor
    np.testing.assert_allclose(m.coef_, expected, rtol=1e-5)
    assert m.intercept_ == pytest.approx(ref.intercept_, rel=1e-5, abs=1e-7)
    assert m.loglik_ == pytest.approx(ref.loglik_, abs=1e-6)
    se_ref = ref.fixed_effects_["std_error"].to_numpy()
    se = m.fixed_effects_["std_error"].to_numpy()
    assert se[k + 1] * factor == pytest.approx(se_ref[k + 1], rel=1e-3)


# -- the caller's data are never modified ---------------------------------------------------------
@FAST
@given(family=families, seed=seeds, container=st.sampled_from(["frame", "array", "list"]))
def test_fit_and_predict_leave_the_callers_data_unchanged(family, seed, container):
    X, y, groups = _dataset(family, seed)
    n = len(y)
    offset = np.linspace(-0.1, 0.1, n)
    weight = np.linspace(0.5, 1.5, n)
    if container == "frame":
        Xc, yc, gc = X.copy(), pd.Series(y, name="y"), pd.Series(groups, name="id")
    elif container == "array":
        Xc, yc, gc = X.to_numpy().copy(), np.array(y), np.array(groups)
    else:
        Xc, yc, gc = X.to_numpy().tolist(), list(y), list(groups)
    inputs = (Xc, yc, gc, offset, weight)
    before = pickle.dumps(inputs)
    m = _fit(family, Xc, yc, gc, random_effects="1", offset=offset, sample_weight=weight)
    m.predict(Xc, groups=gc, offset=offset)
    m.predict_proba(Xc, groups=gc, offset=offset)
    m.score(Xc, yc, groups=gc, offset=offset)
    assert pickle.dumps(inputs) == before


# -- bit-identical reruns ------------------------------------------------------------------------
@FAST
@given(family=families, seed=seeds)
def test_reruns_are_bit_identical(family, seed):
    X, y, groups = _dataset(family, seed)
    a = _fit(family, X, y, groups)
    b = _fit(family, X, y, groups)
    assert _summary(a).tobytes() == _summary(b).tobytes()
    assert a.predict_mean(X, groups).tobytes() == b.predict_mean(X, groups).tobytes()
    assert a.fixed_effects_.equals(b.fixed_effects_)


# -- a pickled model predicts identically ----------------------------------------------------------
@FAST
@given(family=families, seed=seeds)
def test_pickled_model_predicts_identically(family, seed):
    X, y, groups = _dataset(family, seed)
    m = _fit(family, X, y, groups)
    clone = pickle.loads(pickle.dumps(m))
    new_groups = np.r_[groups[: len(y) // 2], np.full(len(y) - len(y) // 2, -1)]
    for g in (groups, new_groups, None):
        assert m.predict(X, groups=g).tobytes() == clone.predict(X, groups=g).tobytes()
    assert m.predict_proba(X).tobytes() == clone.predict_proba(X).tobytes()
    assert str(m.summary()) == str(clone.summary())


# -- threads and processes agree with serial fits --------------------------------------------------
def _fit_summary(args):
    family, seed = args
    X, y, groups = _dataset(family, seed)
    return _summary(_fit(family, X, y, groups))


JOBS = [("binomial", 1), ("poisson", 2), ("negbin", 3), ("poisson", 4)]


def test_fits_in_threads_agree_with_serial_fits():
    serial = [_fit_summary(job) for job in JOBS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(_fit_summary, JOBS))
    for s, t in zip(serial, threaded):
        assert s.tobytes() == t.tobytes()


def test_fits_in_processes_agree_with_serial_fits():
    serial = [_fit_summary(job) for job in JOBS[:2]]
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = list(pool.map(_fit_summary, JOBS[:2]))
    for s, p in zip(serial, parallel):
        np.testing.assert_allclose(p, s, rtol=1e-12, atol=1e-12)
