"""The L-BFGS-B driver gives scipy.optimize.minimize's result, bit for bit.

``sklearn_glmm._engine.lbfgsb`` calls SciPy's compiled routine without the layers of
``minimize``; its iterates, result, callback points and stops must be SciPy's.
"""

import numpy as np
import pytest
from scipy.optimize import minimize

from sklearn_glmm._engine import lbfgsb


def _problem(seed, n):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    A = M @ M.T + 0.1 * np.eye(n)
    c = rng.standard_normal(n)

    def fun(x):
        r = x - c
        return float(0.5 * r @ A @ r + 0.3 * np.sum(np.cos(2.0 * x))), A @ r - 0.6 * np.sin(2.0 * x)

    kinds = [(None, None), (0.0, None), (None, 0.5), (-1.0, 1.0)]
    bounds = [kinds[k] for k in rng.integers(0, 4, n)]
    x0 = rng.standard_normal(n) * 2.0  # partly outside the bounds: clipped by both
    return fun, x0, bounds


def _scipy(fun, x0, bounds, maxiter, ftol, gtol, maxcor, callback=None):
    options = {"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxcor": maxcor}
    return minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback, options=options
    )


def _same(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.jac, b.jac)
    assert a.fun == b.fun
    assert (a.nit, a.nfev, a.status, a.success, a.message) == (
        b.nit,
        b.nfev,
        b.status,
        b.success,
        b.message,
    )
    v = np.linspace(-1.0, 1.0, len(a.x))
    np.testing.assert_array_equal(a.hess_inv.matvec(v), b.hess_inv.matvec(v))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("maxiter", [3, 200])
def test_driver_equals_minimize(seed, maxiter):
    assert lbfgsb._driver_ok()
    fun, x0, bounds = _problem(seed, 2 + seed % 5)
    _same(
        lbfgsb._drive(fun, x0, bounds, maxiter, 1e-12, 1e-8, 20, None),
        _scipy(fun, x0, bounds, maxiter, 1e-12, 1e-8, 20),
    )


def test_driver_calls_back_at_the_same_iterates_and_stops_as_minimize():
    fun, x0, bounds = _problem(11, 5)

    def recorder(points, stop_after):
        def callback(intermediate_result):
            points.append(np.array(intermediate_result.x))
            if len(points) == stop_after:
                raise StopIteration

        return callback

    for stop_after in (2, 10_000):
        ours, theirs = [], []
        a = lbfgsb._drive(fun, x0, bounds, 200, 1e-12, 1e-8, 20, recorder(ours, stop_after))
        b = _scipy(fun, x0, bounds, 200, 1e-12, 1e-8, 20, recorder(theirs, stop_after))
        _same(a, b)
        assert len(ours) == len(theirs) >= 2
        for p, q in zip(ours, theirs):
            np.testing.assert_array_equal(p, q)
        assert a.status == (99 if stop_after == 2 else 0)


@pytest.mark.parametrize("seed", range(6))
def test_parameters_held_by_their_bounds_are_driven_as_minimize_drives_them(seed, monkeypatch):
    """With a gradient given, ``minimize`` hands the routine a held parameter as it is
    (its bounds equal); the driver does the same, with the same iterates and result."""
    assert lbfgsb._driver_ok(held=True)
    fun, x0, bounds = _problem(seed, 3 + seed % 4)
    rng = np.random.default_rng(seed)
    for k in rng.choice(len(bounds), 1 + seed % 2, replace=False):
        bounds[k] = (0.25 * k, 0.25 * k)
    calls = []
    real = lbfgsb._scipy
    monkeypatch.setattr(lbfgsb, "_scipy", lambda *a: calls.append(1) or real(*a))
    for maxiter in (3, 200):
        ours = lbfgsb.minimize_lbfgsb(fun, x0, bounds, maxiter, 1e-12, 1e-8, 20)
        _same(ours, real(fun, x0, bounds, maxiter, 1e-12, 1e-8, 20, None))
    assert not calls


def test_every_parameter_held_goes_through_minimize(monkeypatch):
    fun, x0, _ = _problem(5, 2)
    held = [(0.1, 0.1), (0.25, 0.25)]
    calls = []
    real = lbfgsb._scipy
    monkeypatch.setattr(lbfgsb, "_scipy", lambda *a: calls.append(1) or real(*a))
    ours = lbfgsb.minimize_lbfgsb(fun, x0, held, 100, 1e-12, 1e-8, 20)
    ref = real(fun, x0, held, 100, 1e-12, 1e-8, 20, None)
    np.testing.assert_array_equal(ours.x, ref.x)
    assert ours.fun == ref.fun and calls


def test_a_driver_that_holds_parameters_otherwise_is_not_used_for_them(monkeypatch):
    """Where the held-parameter check fails (a SciPy that removes them first), runs with
    a held parameter go through ``minimize`` and the others still through the driver."""
    fun, x0, bounds = _problem(2, 4)
    held = list(bounds)
    held[1] = (0.25, 0.25)
    calls = []
    real = lbfgsb._scipy
    monkeypatch.setattr(lbfgsb, "_scipy", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(lbfgsb, "_CHECKED", {False: True, True: False})
    _same(
        lbfgsb.minimize_lbfgsb(fun, x0, held, 100, 1e-12, 1e-8, 20),
        real(fun, x0, held, 100, 1e-12, 1e-8, 20, None),
    )
    assert len(calls) == 1
    lbfgsb.minimize_lbfgsb(fun, x0, bounds, 100, 1e-12, 1e-8, 20)
    assert len(calls) == 1


def test_an_infinite_value_is_handled_as_minimize_handles_it():
    def fun(x):
        if x[0] > 1.5:
            return np.inf, np.zeros(2)
        return float((x[0] - 2.0) ** 2 + x[1] ** 2), np.array([2.0 * (x[0] - 2.0), 2.0 * x[1]])

    args = (fun, np.array([0.0, 1.0]), [(None, None), (None, None)], 100, 1e-12, 1e-8, 20)
    _same(lbfgsb._drive(*args, None), _scipy(*args))


def test_without_the_driver_minimize_is_called(monkeypatch):
    fun, x0, bounds = _problem(3, 4)
    calls = []
    real = lbfgsb._scipy

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(lbfgsb, "_scipy", counted)
    monkeypatch.setattr(lbfgsb, "_CHECKED", {False: False, True: False})
    _same(
        lbfgsb.minimize_lbfgsb(fun, x0, bounds, 100, 1e-12, 1e-8, 20),
        real(fun, x0, bounds, 100, 1e-12, 1e-8, 20, None),
    )
    assert calls


def test_a_driver_that_disagrees_with_minimize_is_not_used(monkeypatch):
    real = lbfgsb._drive

    def off_by_one_iteration(*args):
        res = real(*args)
        res.nit += 1
        return res

    monkeypatch.setattr(lbfgsb, "_drive", off_by_one_iteration)
    assert not lbfgsb._same_as_scipy()

    def broken(*args):
        raise TypeError("setulb() takes 16 positional arguments")

    monkeypatch.setattr(lbfgsb, "_drive", broken)
    assert not lbfgsb._same_as_scipy()
    assert not lbfgsb._same_as_scipy(held=True)
