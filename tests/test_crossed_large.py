"""The solver for crossed factors with a large Schur complement (``CrossedSolver``)
against the blocked dense solver: the same Laplace value, gradient, conditional modes
and conditional variances, and the automatic choice between them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from objectives import assert_same_objective, simulated_objective

import sklearn_glmm._engine.linalg as linalg
import sklearn_glmm._engine.linalg.crossed as crossed
from sklearn_glmm import BinomialGLMM
from sklearn_glmm._engine.linalg import (
    BlockedSolver,
    CrossedSolver,
    NotPositiveDefinite,
    SparseCoupledSolver,
    make_solver,
)

# family, q of each factor, levels of each factor
DESIGNS = [
    ("binomial", (1, 1), (60, 40)),
    ("poisson", (1, 1), (45, 70)),  # the second factor is eliminated first
    ("binomial", (2, 1), (50, 30)),  # a random slope on the eliminated factor
    ("poisson", (1, 2), (30, 50)),  # a random slope on the Schur complement's factor
    ("poisson", (2, 2), (40, 35)),
    ("binomial", (1, 1, 1), (40, 30, 10)),  # three factors: two in the Schur complement
]


def _pair(fam, qs, sizes, seed=0, n=900):
    """The same simulated objective twice: on CrossedSolver and on BlockedSolver."""
    codes = [np.random.default_rng(seed + k).integers(0, g, n) for k, g in enumerate(sizes)]
    objs = []
    for solver in (CrossedSolver, BlockedSolver):
        obj, params = simulated_objective(fam, False, codes, qs, np.random.default_rng(seed), 0.6)
        blocks = [(f.offset, f.n_levels, f.q) for f in obj.data.factors]
        obj.solver = solver(obj.cols, obj.Q, blocks)
        objs.append(obj)
    return objs[0], objs[1], params


@pytest.mark.parametrize("fam,qs,sizes", DESIGNS)
def test_value_gradient_and_modes_match_the_dense_solver(fam, qs, sizes):
    new, ref, params = _pair(fam, qs, sizes)
    # a sequence of evaluations: after the first, the Newton steps go through conjugate
    # gradients preconditioned by an earlier factorisation
    for p in (params, params + 0.01, params - 0.03, params + 0.2):
        assert_same_objective(new, ref, p)
        np.testing.assert_allclose(new.u, ref.u, rtol=0, atol=1e-9)
    assert new.solver._precond is not None


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_sparse_and_dense_parts_of_the_schur_complement_agree(monkeypatch, share):
    """Every level summed densely (share 0) or sparsely (share 1): the same numbers."""
    monkeypatch.setattr(crossed, "DENSE_SHARE", share)
    new, ref, params = _pair("binomial", (2, 1), (40, 60), seed=3)
    assert (len(new.solver._heavy) == 0) == (share == 1.0)
    assert_same_objective(new, ref, params)


def test_solves_and_local_inverse_match_the_dense_solver():
    rng = np.random.default_rng(4)
    n, G1, G2 = 600, 50, 70
    cols = np.column_stack([rng.integers(0, G1, n), G1 + rng.integers(0, G2, n)])
    blocks, Q = [(0, G1, 1), (G1, G2, 1)], G1 + G2
    a_vals, w = rng.uniform(0.3, 1.0, (n, 2)), rng.uniform(0.05, 0.25, n)
    new, ref = CrossedSolver(cols, Q, blocks), BlockedSolver(cols, Q, blocks)
    assert new.elim == 1  # 70 levels eliminated, a Schur complement over 50
    ref.factorize(a_vals, w)
    r = rng.standard_normal(Q)
    new.factorize(a_vals, w)  # no factorisation yet: conjugate gradients with S's diagonal
    np.testing.assert_allclose(new.solve(r), ref.solve(r), rtol=1e-9, atol=1e-12)
    assert new._L is None and new._precond is None
    assert new.logdet == pytest.approx(ref.logdet, rel=1e-13)  # now factorised
    new.factorize(a_vals * 1.1, w)
    ref.factorize(a_vals * 1.1, w)
    np.testing.assert_allclose(new.solve(r), ref.solve(r), rtol=1e-9, atol=1e-12)
    assert new._L is None and new._precond is not None
    R = rng.standard_normal((Q, 3))
    np.testing.assert_allclose(new.solve(R), ref.solve(R), rtol=1e-12, atol=1e-13)
    assert new.logdet == pytest.approx(ref.logdet, rel=1e-13)
    np.testing.assert_allclose(new.local_inverse(), ref.local_inverse(), atol=1e-13)
    for f in (0, 1):
        np.testing.assert_allclose(new.level_inverse(f), ref.level_inverse(f), atol=1e-13)


def test_an_indefinite_hessian_is_reported():
    rng = np.random.default_rng(5)
    n, G1, G2 = 300, 30, 20
    cols = np.column_stack([rng.integers(0, G1, n), G1 + rng.integers(0, G2, n)])
    solver = CrossedSolver(cols, G1 + G2, [(0, G1, 1), (G1, G2, 1)])
    solver.factorize(np.ones((n, 2)), np.full(n, 0.1))
    with pytest.raises(NotPositiveDefinite):  # negative curvature: factorised at once
        solver.factorize(np.ones((n, 2)), np.full(n, -10.0))


def _crossed_cols(n_rows, G1, G2, seed=0):
    rng = np.random.default_rng(seed)
    cols = np.column_stack([rng.integers(0, G1, n_rows), G1 + rng.integers(0, G2, n_rows)])
    return cols, G1 + G2, [(0, G1, 1), (G1, G2, 1)]


def test_the_solver_is_chosen_by_the_size_of_the_schur_complement():
    big = linalg.LARGE_SCHUR
    # a Schur complement just below the threshold: the blocked solvers
    solver = make_solver(*_crossed_cols(5000, big + 200, big - 1))
    assert isinstance(solver, (BlockedSolver, SparseCoupledSolver))
    assert not isinstance(solver, CrossedSolver)
    # at the threshold, and with the factors in either order (the larger eliminated)
    for G1, G2 in ((big + 200, big), (big, big + 200)):
        solver = make_solver(*_crossed_cols(5000, G1, G2))
        assert isinstance(solver, CrossedSolver)
        assert solver.Q2 == big
    # nested factors keep the nested solver
    rng = np.random.default_rng(1)
    inner = rng.integers(0, 3 * big, 8000)
    outer = inner // 2
    cols = np.column_stack([inner, 3 * big + outer])
    G2 = int(outer.max()) + 1
    solver = make_solver(cols, 3 * big + G2, [(0, 3 * big, 1), (3 * big, G2, 1)])
    assert isinstance(solver, linalg.NestedSolver)


def _crossed_data(seed=0, n_subj=80, n_item=50, n=2500):
    rng = np.random.default_rng(seed)
    s, i = rng.integers(0, n_subj, n), rng.integers(0, n_item, n)
    x = rng.standard_normal(n)
    eta = -0.2 + 0.5 * x + rng.normal(0, 0.8, n_subj)[s] + rng.normal(0, 0.6, n_item)[i]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"x": x}), y, pd.DataFrame({"subject": s, "item": i})


def test_a_fit_is_the_same_on_either_side_of_the_switch(monkeypatch):
    X, y, groups = _crossed_data()
    re = {"subject": "1", "item": "1"}
    small = BinomialGLMM(random_effects=re).fit(X, y, groups=groups)
    assert not isinstance(small.fit_result_.objective.solver, CrossedSolver)
    monkeypatch.setattr(linalg, "LARGE_SCHUR", 10)
    large = BinomialGLMM(random_effects=re).fit(X, y, groups=groups)
    assert isinstance(large.fit_result_.objective.solver, CrossedSolver)
    assert large.loglik_ == pytest.approx(small.loglik_, abs=1e-7)
    np.testing.assert_allclose(large.coef_, small.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(large.fit_record_.final, small.fit_record_.final, atol=1e-5)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_threaded_blocks_give_the_same_numbers(monkeypatch, share):
    """The row blocks of the light levels' product, the threads of the gathers and the
    in-place dense update (taken for a Schur complement of 1,500 or more rows) on a
    small one: the same value, gradient and modes as the dense solver."""
    monkeypatch.setattr(crossed, "THREADED_SCHUR", 0)
    monkeypatch.setattr(crossed, "_GATHER_CELLS", 500)
    monkeypatch.setattr(crossed, "_cores", lambda: 3)
    monkeypatch.setattr(crossed, "DENSE_SHARE", share)
    for qs in ((1, 1), (2, 1)):
        new, ref, params = _pair("binomial", qs, (60, 45), seed=7)
        assert (len(new.solver._heavy) == 0) == (share == 1.0)
        assert (len(new.solver._schur_rows) > 2) == (len(new.solver._light) > 0)
        for p in (params, params + 0.02):
            assert_same_objective(new, ref, p)
            np.testing.assert_allclose(new.u, ref.u, rtol=0, atol=1e-9)
