"""The closed-form Hessians of a batch of refits, computed together.

A bootstrap replicate's curvature check reads the Hessian at its end point
(``converge.check_curvature``). ``BatchedLaplace.hessians`` computes those of the
replicates waiting for one in a pass (``batched_hessian.laplace_hessians``, the single
objective's formulas with a replicate axis), instead of each replicate making its
per-row state again and running ``laplace_hessian`` on it. The two agree to rounding,
and the refits are the same with either. (For several random effects per level the
single objective runs the same formulas for one replicate, so the comparison checks the
batch: the replicate axis, its mode search, the forms and the parts of a large batch;
``test_laplace_hessian.py`` checks the formulas against differences of the gradient. For
one random effect per level the single objective's are formulas of their own.)
"""

import threading
import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM, _simulate
from sklearn_glmm._engine import batch_member, batched_hessian, laplace_hessian, objective
from sklearn_glmm._engine.batched import BatchedLaplace
from sklearn_glmm._engine.objective import Objective
from sklearn_glmm._simulate import fit_many, refit_many, simulate_response


def _fit(kind, seed=0):
    rng = np.random.default_rng(seed)
    n_groups, n_per = 20, 10
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.standard_normal(len(g))
    z = rng.standard_normal(len(g))
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.6, n_groups)[g] + rng.normal(0, 0.3, n_groups)[g] * x
    X = pd.DataFrame({"x": x, "z": z})
    kw = {}
    if kind.startswith("pois"):
        y = rng.poisson(np.exp(eta + (5.0 if kind == "pois_large_counts" else 0.0)))
        est = PoissonGLMM(
            random_effects={
                "pois_slope": "1 + x",
                "pois_three": "1 + x + z",
                "pois_diag": "diag(1 + x)",
                "pois_large_counts": "1 + x",
            }.get(kind, "1 + x")
        )
        if kind == "pois_shuffled":  # a level's rows not together
            order = rng.permutation(len(g))
            X, y, g = X.iloc[order].reset_index(drop=True), y[order], g[order]
    elif kind == "trunc_pois":  # zero-truncated (log-concave, batched like the Poisson)
        y = np.maximum(1, rng.poisson(np.exp(eta)))
        est = PoissonGLMM(random_effects="1 + x", truncated=True)
    elif kind.startswith("nb"):
        mu = np.exp(eta)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
        est = NegBinGLMM(random_effects="1 + x" if kind == "nb_slope" else "1")
    elif kind == "bin_ri":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
        est = BinomialGLMM(random_effects="1")
    else:  # binomial trials with weights, a random slope
        kw["trials"] = rng.integers(1, 8, len(g))
        y = rng.binomial(kw["trials"], 1 / (1 + np.exp(-eta)))
        kw["sample_weight"] = rng.choice([1.0, 2.0], len(g))
        est = BinomialGLMM(random_effects="1 + x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, groups=g, **kw)


KINDS = [
    "pois_slope",
    "pois_three",
    "pois_diag",
    "pois_shuffled",
    "bin_ri",
    "binom_trials",
    "nb_slope",
    "nb_ri",
    "trunc_pois",
]


def _batch_at_moved_points(est, R=5):
    """A batch of ``R`` simulated outcomes, each at parameters moved off the fit, with
    its modes there: ``(engine, params, modes)``."""
    data = est.fit_result_.objective.data
    Y = np.asarray(simulate_response(est, R, np.random.default_rng(1))).T
    engine = BatchedLaplace(data, Y)
    params = np.tile(est.fit_result_.params, (R, 1))
    params += np.random.default_rng(2).normal(0, 0.05, params.shape)
    U0 = np.zeros((R, engine.G * engine.q))
    ok, _val, _grad, U, _J = engine.evaluate(np.arange(R), params, U0)
    assert ok.all()
    return engine, params, U


def _single(engine, r, params):
    """The single objective's closed-form Hessian (with NB2's log theta row and column)."""
    obj = Objective(engine.member_data(r), 1)
    assert np.isfinite(obj.evaluate(params))
    H = laplace_hessian.laplace_hessian(obj)
    col = laplace_hessian.extra_column(obj)
    if col is not None:
        H = np.block([[H, col[:-1, None]], [col[None, :]]])
    return H, obj.max_curvature()


@pytest.mark.parametrize("kind", KINDS)
def test_batched_hessians_equal_the_single_objective(kind):
    est = _fit(kind)
    engine, params, U = _batch_at_moved_points(est)
    ok, H, top = engine.hessians(np.arange(len(params)), params, U)
    assert ok.all()
    for r in range(len(params)):
        H_single, top_single = _single(engine, r, params[r])
        assert H[r].shape == H_single.shape
        np.testing.assert_allclose(H[r], H_single, rtol=0, atol=1e-11 * np.abs(H_single).max())
        assert top[r] == pytest.approx(top_single, rel=1e-12)


def test_batched_hessians_in_parts_and_by_form_equal_one_pass(monkeypatch):
    # replicates above and below counts of 1,000 (the family's two forms of its terms,
    # each computed on its own), and a batch larger than one pass takes
    est = _fit("pois_large_counts")
    engine, params, U = _batch_at_moved_points(est, R=6)
    assert len(np.unique(engine._forms)) == 1  # all large: make two small
    engine.Y[:2] = np.minimum(engine.Y[:2], 900.0)
    engine = BatchedLaplace(engine.data, engine.Y)
    assert len(np.unique(engine._forms)) == 2
    ok, _v, _g, U, _J = engine.evaluate(np.arange(6), params, U)
    assert ok.all()
    whole = engine.hessians(np.arange(6), params, U)
    n, P = len(engine.data.y), params.shape[1]
    monkeypatch.setattr(batched_hessian, "MAX_CELLS", 2 * n * P * engine.q**2)
    assert batched_hessian.replicates_per_pass(n, P, engine.q) == 2
    parts = engine.hessians(np.arange(6), params, U)
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a, b)
    for r in (0, 4):
        H_single, _ = _single(engine, r, params[r])
        np.testing.assert_allclose(whole[1][r], H_single, atol=1e-11 * np.abs(H_single).max())


def test_a_replicate_with_theta_on_its_bound_is_left_to_its_own_objective():
    # NB2's log theta on its upper bound (the Poisson limit): the family gives no second
    # derivatives there, so that replicate's Hessian is not the batch's (the single
    # objective takes its row and column by differences); the others' are
    est = _fit("nb_slope")
    engine, params, U = _batch_at_moved_points(est, R=3)
    params[1, -1] = engine.data.extra_bounds[0][1]
    ok, _v, _g, U, _J = engine.evaluate(np.arange(3), params, U)
    assert ok.all()
    ok, H, _top = engine.hessians(np.arange(3), params, U)
    assert ok.tolist() == [True, False, True]
    H_single, _ = _single(engine, 2, params[2])
    np.testing.assert_allclose(H[2], H_single, atol=1e-11 * np.abs(H_single).max())


def _task():
    """The running refit's task: its greenlet, or its thread without greenlets."""
    try:
        import greenlet
    except ImportError:
        return threading.get_ident()
    return greenlet.getcurrent()


def _counting(monkeypatch, cls, name, within=None):
    """Calls of ``cls.name`` (those a task makes within its own call of ``within``, if
    given: the other tasks run while it waits for the batch)."""
    calls, inside = [], []
    real = getattr(cls, name)

    def counted(self, *args, **kwargs):
        if within is None or _task() in inside:
            calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    if within is not None:
        module, attr = within
        outer = getattr(module, attr)

        def flagged(*args, **kwargs):
            inside.append(_task())
            try:
                return outer(*args, **kwargs)
            finally:
                inside.remove(_task())

        monkeypatch.setattr(module, attr, flagged)
    return calls


@pytest.mark.parametrize("kind", ["pois_slope", "bin_ri", "nb_slope", "trunc_pois"])
@pytest.mark.parametrize("how", ["refit_many", "fit_many"])
def test_refits_with_the_batch_hessians_equal_those_with_their_own(monkeypatch, kind, how):
    est = _fit(kind)
    Y = simulate_response(est, 10, np.random.default_rng(3))
    run = refit_many if how == "refit_many" else fit_many
    out = {}
    for batched in (True, False):
        monkeypatch.setattr(batch_member.BatchMember, "batched_hessian", batched)
        passes = _counting(monkeypatch, BatchedLaplace, "hessians")
        # a replicate's state made again from its modes by the check at a refit's end
        remade = _counting(
            monkeypatch, objective.Objective, "_make_restored_state", (_simulate, "check_curvature")
        )
        out[batched] = run(est, Y), len(passes), len(remade)
        monkeypatch.undo()
    (with_batch, passes, remade), (own, passes_own, remade_own) = out[True], out[False]
    assert passes > 0 and passes_own == 0
    if how == "refit_many":
        assert remade == 0 and remade_own > 0
    for (xa, ra), (xb, rb) in zip(with_batch, own):
        np.testing.assert_allclose(xa, xb, rtol=0, atol=1e-10)
        assert ra.converged == rb.converged
        assert ra.negative_curvature == rb.negative_curvature
        assert ra.rising_off_zero == rb.rising_off_zero
        assert ra.objective == pytest.approx(rb.objective, abs=1e-9)


@pytest.mark.parametrize("how", ["not ok", "raises"])
def test_a_hessian_the_batch_does_not_complete_is_the_replicates_own(monkeypatch, how):
    est = _fit("pois_slope")
    Y = simulate_response(est, 6, np.random.default_rng(4))
    monkeypatch.setattr(batch_member.BatchMember, "batched_hessian", False)
    own = refit_many(est, Y)
    monkeypatch.undo()
    real = BatchedLaplace.hessians
    asked = []

    def failing(self, idx, params, U0):
        asked.append(len(idx))
        if how == "raises":
            raise np.linalg.LinAlgError("no factorisation")
        ok, H, top = real(self, idx, params, U0)
        return np.zeros_like(ok), H, top

    monkeypatch.setattr(BatchedLaplace, "hessians", failing)
    fallen_back = refit_many(est, Y)
    assert asked
    for (xa, ra), (xb, rb) in zip(fallen_back, own):
        np.testing.assert_array_equal(xa, xb)
        assert (ra.converged, ra.negative_curvature) == (rb.converged, rb.negative_curvature)
