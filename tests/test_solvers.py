"""Factorisations of the Laplace Hessian: the nested solver against the dense one."""

from __future__ import annotations

import numpy as np
import pytest
from objectives import assert_same_objective, numeric_gradient, simulated_objective

from sklearn_glmm._engine.linalg import (
    BlockedSolver,
    CrossedSolver,
    NotPositiveDefinite,
    SparseCoupledSolver,
    make_solver,
)
from sklearn_glmm._engine.linalg.nested import NestedSolver, factor_codes, nesting_chain

_numeric_gradient = numeric_gradient


def _nested_codes(rng, n_top, depth, shuffle=True):
    """Row codes of ``depth`` nested factors, innermost first.

    Every level has 1 to 3 sub-levels and every innermost level 1 to 3 rows
    (levels of size one included); labels are permuted and rows shuffled.
    """
    parents = [np.arange(n_top)]  # parent of each level, outermost factor first
    sizes = [n_top]
    for _ in range(depth - 1):
        kids = rng.integers(1, 4, sizes[-1])
        kids[0] = 1
        parents.append(np.repeat(np.arange(sizes[-1]), kids))
        sizes.append(len(parents[-1]))
    reps = rng.integers(1, 4, sizes[-1])
    reps[0] = 1
    leaf = np.repeat(np.arange(sizes[-1]), reps)
    codes = [leaf]
    for p in reversed(parents[1:]):
        codes.append(p[codes[-1]])
    if shuffle:
        order = rng.permutation(len(leaf))
        codes = [c[order] for c in codes]
        codes = [rng.permutation(c.max() + 1)[c] for c in codes]
    return codes


def _layout(codes, qs):
    """Row indices ``cols`` (n, s), size ``Q`` and ``blocks`` of a random-effect layout."""
    blocks, cols, off = [], [], 0
    for c, q in zip(codes, qs):
        G = int(c.max()) + 1
        blocks.append((off, G, q))
        cols.append(off + c[:, None] * q + np.arange(q)[None, :])
        off += G * q
    return np.concatenate(cols, axis=1), off, blocks


DESIGNS = {
    "2 nested q=1": dict(depth=2, qs=(1, 1)),
    "2 nested q=2": dict(depth=2, qs=(2, 2)),
    "3 nested q=1": dict(depth=3, qs=(1, 1, 1)),
    "3 nested mixed q": dict(depth=3, qs=(2, 1, 2)),
    "3 nested q=3": dict(depth=3, qs=(1, 3, 1)),
    "2 nested + crossed": dict(depth=2, qs=(2, 1, 1), crossed=5),
    "3 nested + crossed q=2": dict(depth=3, qs=(1, 1, 1, 2), crossed=4),
    "2 nested around a crossed": dict(depth=2, qs=(1, 2, 1), crossed=7),
    "3 nested sorted rows": dict(depth=3, qs=(2, 1, 1), shuffle=False),
}


def _design(name, seed=0):
    spec = DESIGNS[name]
    rng = np.random.default_rng(seed)
    codes = _nested_codes(rng, 6, spec["depth"], spec.get("shuffle", True))
    if "crossed" in spec:  # a factor crossed with the nesting, placed by size
        codes.append(rng.integers(0, spec["crossed"], len(codes[0])))
        codes.sort(key=lambda c: -(c.max() + 1))
    return codes, spec["qs"]


def _nested_solver(cols, Q, blocks):
    """The nested solver, whichever solver ``make_solver`` would pick."""
    return NestedSolver(cols, Q, blocks, nesting_chain(factor_codes(cols, blocks), blocks))


def _solvers(codes, qs, seed=1, zero=None):
    rng = np.random.default_rng(seed)
    cols, Q, blocks = _layout(codes, qs)
    n, s = cols.shape
    a_vals = rng.normal(size=(n, s))
    if zero is not None:  # a variance at zero: the factor's columns of Z Lambda vanish
        loc = sum(qs[:zero])
        a_vals[:, loc : loc + qs[zero]] = 0.0
    w = rng.uniform(0.1, 2.0, n)
    nested, dense = _nested_solver(cols, Q, blocks), BlockedSolver(cols, Q, blocks)
    assert len(nested.chain) > 1
    nested.factorize(a_vals, w)
    dense.factorize(a_vals, w)
    return nested, dense, Q, blocks


def _assert_same(nested, dense, Q, blocks, rng):
    assert nested.logdet == pytest.approx(dense.logdet, rel=1e-12, abs=1e-10)
    r, R = rng.normal(size=Q), rng.normal(size=(Q, 3))
    np.testing.assert_allclose(nested.solve(r), dense.solve(r), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(nested.solve(R), dense.solve(R), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(nested.local_inverse(), dense.local_inverse(), atol=1e-12)
    for f in range(len(blocks)):
        np.testing.assert_allclose(nested.level_inverse(f), dense.level_inverse(f), atol=1e-12)


@pytest.mark.parametrize("name", list(DESIGNS))
def test_nested_solver_matches_dense(name):
    codes, qs = _design(name)
    nested, dense, Q, blocks = _solvers(codes, qs)
    if "crossed" in name:
        assert nested.tail and nested.QT > 0
    if "around" in name:
        assert nested.chain == [0, 2]
    _assert_same(nested, dense, Q, blocks, np.random.default_rng(2))


@pytest.mark.parametrize("name", ["3 nested mixed q", "2 nested + crossed"])
@pytest.mark.parametrize("zero", [0, 1, 2])
def test_nested_solver_with_a_variance_at_zero(name, zero):
    codes, qs = _design(name)
    nested, dense, Q, blocks = _solvers(codes, qs, zero=zero)
    _assert_same(nested, dense, Q, blocks, np.random.default_rng(3))


def _dense_logdet(cols, Q, a_vals, w):
    H = np.eye(Q)
    for i in range(len(w)):
        H[np.ix_(cols[i], cols[i])] += w[i] * np.outer(a_vals[i], a_vals[i])
    return np.linalg.slogdet(H)[1]


@pytest.mark.parametrize("qs", [(2, 1), (2, 2)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_solvers_eliminate_ill_conditioned_blocks_accurately(qs, seed):
    """Curvatures of 1e8-3e10 (counts in the billions) and a slope column nearly the
    intercept's within each level: blocks whose determinant loses ~10 digits to
    cancellation. Eliminated through an explicit inverse, the Schur complement came out
    indefinite (an evaluation failed) or the log-determinant up to 3.8 off; through the
    Cholesky factors every solver is within 1e-5 of the dense factorisation of H."""
    rng = np.random.default_rng(seed)
    codes = _nested_codes(rng, 6, 2)
    cols, Q, blocks = _layout(codes, qs)
    n = cols.shape[0]
    x = 20.0 + 1e-3 * rng.normal(size=n)
    a_vals = np.concatenate([np.column_stack([np.full(n, 0.13), 0.02 * x][:q]) for q in qs], axis=1)
    w = 10 ** rng.uniform(8.0, 10.5, n)
    reference = _dense_logdet(cols, Q, a_vals, w)
    for solver in (
        _nested_solver(cols, Q, blocks),
        BlockedSolver(cols, Q, blocks),
        SparseCoupledSolver(cols, Q, blocks),
        CrossedSolver(cols, Q, blocks),
    ):
        solver.factorize(a_vals, w)
        assert solver.logdet == pytest.approx(reference, abs=1e-5), type(solver).__name__


def test_nested_solver_snapshot_restores_the_factorisation():
    codes, qs = _design("3 nested mixed q")
    nested, _, Q, _ = _solvers(codes, qs)
    r = np.random.default_rng(4).normal(size=Q)
    x, logdet, li = nested.solve(r), nested.logdet, nested.local_inverse()
    snap = nested.snapshot()
    n, s = nested.cols.shape
    nested.factorize(np.ones((n, s)), np.full(n, 3.0))
    assert nested.logdet != logdet
    nested.restore(snap)
    assert nested.logdet == logdet
    np.testing.assert_array_equal(nested.solve(r), x)
    np.testing.assert_array_equal(nested.local_inverse(), li)


def test_nested_solver_reports_an_indefinite_hessian():
    codes, qs = _design("2 nested + crossed")
    cols, Q, blocks = _layout(codes, qs)
    n, s = cols.shape
    a_vals = np.random.default_rng(5).normal(size=(n, s))
    for solver in (_nested_solver(cols, Q, blocks), BlockedSolver(cols, Q, blocks)):
        with pytest.raises(NotPositiveDefinite):
            solver.factorize(a_vals, np.full(n, -10.0))


def test_make_solver_picks_the_nested_solver_only_when_nesting_holds():
    rng = np.random.default_rng(6)
    student, cls, school = _nested_codes(rng, 60, 3, shuffle=False)
    n = len(student)

    def pick(*codes):
        cols, Q, blocks = _layout(list(codes), [1] * len(codes))
        return make_solver(cols, Q, blocks)

    solver = pick(student, cls, school)
    assert isinstance(solver, NestedSolver) and solver.chain == [0, 1, 2] and not solver.tail
    # nested in the third factor, crossed with a small second one
    rater = rng.integers(0, 5, n)
    solver = pick(student, rater, school)
    assert isinstance(solver, NestedSolver) and solver.chain == [0, 2] and solver.tail == [1]
    # a large crossed factor and a few large regions: the Schur complement costs less
    item, region = rng.integers(0, 100, n), school % 3
    assert not isinstance(pick(student, item, region), NestedSolver)
    assert isinstance(pick(student, item, school), NestedSolver)
    assert not isinstance(pick(student, item), NestedSolver)
    assert not isinstance(pick(cls, rater), NestedSolver)
    # one student seen in two classes: partially nested, the general solvers
    moved = student.copy()
    moved[np.flatnonzero(cls == cls[0])[0]] = student[np.flatnonzero(cls != cls[0])[0]]
    assert isinstance(pick(moved, cls, school), (BlockedSolver, SparseCoupledSolver))


def _nested_objective(fam_name, qs, depth=3, n_top=8, seed=0, crossed=None):
    rng = np.random.default_rng(seed)
    codes = _nested_codes(rng, n_top, depth)
    if crossed:
        codes.append(rng.integers(0, crossed, len(codes[0])))
        codes.sort(key=lambda c: -(c.max() + 1))
    zi = fam_name.startswith("zi")
    return simulated_objective(fam_name.removeprefix("zi"), zi, codes, qs, rng, 0.6)


OBJECTIVES = [
    ("binomial", (1, 1, 1), None),
    ("poisson", (2, 1, 2), None),
    ("negbin", (1, 2, 1), None),
    ("poisson", (2, 1, 1, 1), 4),
    ("zinegbin", (2, 1, 1), None),
]


@pytest.mark.parametrize("fam,qs,crossed", OBJECTIVES)
def test_nested_objective_and_gradient_match_the_dense_solver(fam, qs, crossed):
    nested, params = _nested_objective(fam, qs, crossed=crossed)
    dense, _ = _nested_objective(fam, qs, crossed=crossed)
    blocks = [(f.offset, f.n_levels, f.q) for f in dense.data.factors]
    assert isinstance(nested.solver, NestedSolver) or crossed
    nested.solver = _nested_solver(nested.cols, nested.Q, blocks)
    dense.solver = BlockedSolver(dense.cols, dense.Q, blocks)
    assert_same_objective(nested, dense, params)


@pytest.mark.parametrize("fam,qs,crossed", OBJECTIVES)
def test_nested_gradient_matches_finite_differences(fam, qs, crossed):
    obj, params = _nested_objective(fam, qs, crossed=crossed, seed=1)
    blocks = [(f.offset, f.n_levels, f.q) for f in obj.data.factors]
    obj.solver = _nested_solver(obj.cols, obj.Q, blocks)
    _, g = obj.value_and_grad(params)
    np.testing.assert_allclose(g, _numeric_gradient(obj, params), rtol=1e-5, atol=1e-4)


def test_nested_fit_equals_the_fit_through_the_schur_complement(monkeypatch):
    import pandas as pd

    import sklearn_glmm._engine.objective as laplace
    from sklearn_glmm import PoissonGLMM

    rng = np.random.default_rng(7)
    student, cls, school = _nested_codes(rng, 25, 3)
    n = len(student)
    x = rng.normal(size=n)
    eta = 0.2 + 0.4 * x + sum(rng.normal(0, 0.5, c.max() + 1)[c] for c in (student, cls, school))
    eta += rng.normal(0, 0.5, cls.max() + 1)[cls] * x
    y = rng.poisson(np.exp(eta))
    X, groups = pd.DataFrame({"x": x}), pd.DataFrame({"school": school, "cls": cls, "st": student})
    re = {"school": "1", "cls": "1 + x", "st": "1"}
    nested = PoissonGLMM(random_effects=re).fit(X, y, groups=groups)
    assert isinstance(nested.fit_result_.objective.solver, NestedSolver)
    monkeypatch.setattr(laplace, "make_solver", BlockedSolver)
    dense = PoissonGLMM(random_effects=re).fit(X, y, groups=groups)
    assert type(dense.fit_result_.objective.solver) is BlockedSolver
    assert nested.loglik_ == pytest.approx(dense.loglik_, abs=1e-8)
    np.testing.assert_allclose(nested.coef_, dense.coef_, rtol=1e-6, atol=1e-8)
    for name in re:
        np.testing.assert_allclose(
            nested.random_effects_cov_[name], dense.random_effects_cov_[name], atol=1e-6
        )


@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("keep_factor", [False, True])
def test_a_block_singular_to_rounding_fails_instead_of_giving_a_step(q, keep_factor):
    """Curvatures of 3e18 on a level's rows that share their random-effect values (a
    mode search started far from the mode): H = w a a' + I rounds to a singular block,
    whose factorisation went through with a log-determinant and Newton steps of
    rounding (a step of exactly 0 for a gradient of 3e19 in a fit, where the search
    then accepted that point as the mode: a value of 1e20 where 1784 was right). Now
    it fails, so the search starts again from zero. Curvatures of 1e12 on the same rows
    keep their digits."""
    from sklearn_glmm._engine.linalg import BlockSolver

    row = np.array([0.5, -0.017, 0.01])[:q]
    a_vals = np.tile(row, (3, 1))
    solver = BlockSolver(np.zeros(3, dtype=np.intp), 1, q)
    solver.keep_factor = keep_factor
    with pytest.raises(NotPositiveDefinite, match="singular to rounding"):
        solver.factorize(a_vals, np.full(3, 3e18))
    solver.factorize(a_vals, np.full(3, 1e12))
    assert solver.logdet == pytest.approx(np.log1p(3e12 * row @ row), abs=1e-6)
    # the batched refits' blocks (bootstrap, power) follow the same rule
    from sklearn_glmm._engine.batched_arrays import _spd_inverse

    for w, holds in ((3e18, False), (1e12, True)):
        M = 3.0 * w * np.outer(row, row)
        entries = {(a, b): np.array([[M[a, b]]]) for a in range(q) for b in range(a, q)}
        assert bool(_spd_inverse(q, entries)[2][0]) is holds
