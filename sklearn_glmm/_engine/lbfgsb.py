"""L-BFGS-B with bounds: SciPy's routine, driven without ``scipy.optimize.minimize``.

SciPy's ``minimize(method="L-BFGS-B")`` wraps its compiled routine (``setulb``, which
asks for the objective by reverse communication) in general-purpose layers: a
``ScalarFunction`` with its own memo and counters, a ``MemoizeJac``, array-API
conversions and checks on every call. On a small mixed model those layers cost about
0.1 ms per evaluation, as much as the evaluation itself. :func:`minimize_lbfgsb`
calls the same routine with the same arguments in the same order (the start clipped
to the bounds, each point's value and gradient as the objective returns them, a point
asked for again answered from the last one, the callback and the iteration limit
checked at each new iterate as SciPy checks them), so its iterates and result are
SciPy's, bit for bit; only the layers are left out.

``setulb`` is not public: its arguments are those of SciPy 1.15 and later. Before its
first use the driver is checked against ``minimize`` on a small bounded problem (the
same iterates and result, exactly); where that check fails (another SciPy, another
signature) every run goes through ``minimize``.

:func:`_run_lbfgsb` is the engine's run of it: on coordinates scaled by a diagonal
preconditioner where given, the best point evaluated kept (:class:`_BestPoint`), an early
stop by a rule of the caller's; trial points' floating-point warnings are off while the
engine optimises (:func:`_quiet_trial_points`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import LbfgsInvHessProduct, OptimizeResult, minimize

_MAXLS = 20  # SciPy's default line-search limit
_MAXFUN = 15000  # SciPy's default evaluation limit


def bound_arrays(bounds):
    """``(lo, hi)``: the lower and upper bounds as float arrays, +-inf where None."""
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds], dtype=float)
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds], dtype=float)
    return lo, hi


def minimize_lbfgsb(fun, x0, bounds, maxiter, ftol, gtol, maxcor, callback=None):
    """``minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
    options={maxiter, ftol, gtol, maxcor})``, the same result.

    ``fun(x)`` returns ``(value, gradient)``; ``bounds`` is a sequence of ``(lo, hi)``
    pairs (None: unbounded). ``callback(intermediate_result)`` (that name: SciPy's
    new-style callback, given an ``OptimizeResult`` with ``x`` and ``fun``) may raise
    :class:`StopIteration` to end the run, as with ``minimize``.
    """
    held = _held_count(bounds)
    if held and (held == len(bounds) or not _driver_ok(held=True)):
        return _scipy(fun, x0, bounds, maxiter, ftol, gtol, maxcor, callback)
    if _driver_ok():
        return _drive(fun, x0, bounds, maxiter, ftol, gtol, maxcor, callback)
    return _scipy(fun, x0, bounds, maxiter, ftol, gtol, maxcor, callback)


def _held_count(bounds) -> int:
    """How many parameters a bound holds (``lo == hi``). ``minimize`` answers a problem
    whose every parameter is held without the routine; with a gradient given, it hands
    the routine the others as they are (SciPy 1.15 and later; older versions removed
    the held parameters first), which :func:`_driver_ok` checks."""
    if bounds is None:
        return 0
    return sum(lo is not None and hi is not None and lo == hi for lo, hi in bounds)


def _scipy(fun, x0, bounds, maxiter, ftol, gtol, maxcor, callback):
    options = {"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxcor": maxcor}
    return minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback, options=options
    )


def _drive(fun, x0, bounds, maxiter, ftol, gtol, maxcor, callback):
    """SciPy's L-BFGS-B routine (``setulb``) driven as ``minimize`` drives it, with
    ``fun``'s value and gradient asked for directly: ``minimize``'s result."""
    from scipy.optimize import _lbfgsb

    x, low, upp, nbd = _bound_codes(x0, bounds)
    value_and_grad = _Memo(fun)
    # SciPy evaluates the start first; the routine's first ask is answered from it
    value_and_grad(x)
    m, n = maxcor, len(x)
    work = _Workspace(m, n)
    factr = ftol / np.finfo(float).eps
    f = np.array(0.0, dtype=np.float64)
    g = np.zeros(n, np.float64)
    task = work.task
    n_iterations, halted = 0, False
    while True:
        g = g.astype(np.float64)
        _lbfgsb.setulb(
            m, x, low, upp, nbd, f, g, factr, gtol, work.wa, work.iwa, task, work.lsave,
            work.isave, work.dsave, _MAXLS, work.ln_task,
        )  # fmt: skip
        if task[0] == 3:
            f, g = value_and_grad(x)
        elif task[0] == 1:
            n_iterations += 1
            if callback is not None:
                try:
                    callback(OptimizeResult(x=x, fun=f))
                except StopIteration:
                    task[0], task[1] = 5, 505
                    halted = True
            if n_iterations >= maxiter:
                task[0], task[1] = 5, 504
            elif value_and_grad.nfev > _MAXFUN:
                task[0], task[1] = 5, 502
        else:
            break
    return _result(x, f, g, work, m, value_and_grad.nfev, n_iterations, maxiter, halted)


def _bound_codes(x0, bounds):
    """The start (within the bounds) and SciPy's arrays of the bounds: ``(x, low, upp,
    nbd)``, ``nbd`` 0 unbounded, 1 lower only, 2 both, 3 upper only."""
    x = np.array(x0, dtype=np.float64).ravel()
    n = len(x)
    nbd = np.zeros(n, np.int32)
    low = np.zeros(n, np.float64)
    upp = np.zeros(n, np.float64)
    if bounds is not None:
        if len(bounds) != n:
            raise ValueError("length of x0 != length of bounds")
        lo, hi = bound_arrays(bounds)
        if np.any(lo > hi):
            raise ValueError("LBFGSB - one of the lower bounds is greater than an upper bound.")
        x = np.clip(x, lo, hi)
        has_lo, has_hi = ~np.isinf(lo), ~np.isinf(hi)
        low[has_lo], upp[has_hi] = lo[has_lo], hi[has_hi]
        nbd[:] = np.where(has_lo, np.where(has_hi, 2, 1), np.where(has_hi, 3, 0))
    return x, low, upp, nbd


class _Memo:
    """``fun``'s value and gradient, a point asked for again answered from the last one
    (as SciPy's memo does); ``nfev`` counts the evaluations."""

    def __init__(self, fun):
        self.fun = fun
        self.nfev = 0
        self.last = None

    def __call__(self, at):
        if self.last is not None and np.array_equal(at, self.last[0]):
            return self.last[1], self.last[2]
        x = np.array(at, dtype=np.float64)
        f, g = self.fun(np.copy(x))
        if not np.isscalar(f):
            f = np.asarray(f).item()
        g = np.atleast_1d(g)
        self.nfev += 1
        self.last = (x, f, g)
        return f, g


class _Workspace:
    """The routine's work arrays for ``m`` corrections of ``n`` parameters."""

    def __init__(self, m, n):
        self.wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, np.float64)
        self.iwa = np.zeros(3 * n, np.int32)
        self.task = np.zeros(2, np.int32)
        self.ln_task = np.zeros(2, np.int32)
        self.lsave = np.zeros(4, np.int32)
        self.isave = np.zeros(44, np.int32)
        self.dsave = np.zeros(29, np.float64)


def _result(x, f, g, work, m, nfev, n_iterations, maxiter, halted) -> OptimizeResult:
    """``minimize``'s result of the routine's end state (``m`` corrections kept)."""
    from scipy.optimize._lbfgsb_py import status_messages, task_messages

    task = work.task
    if task[0] == 4:
        warnflag = 0
    elif nfev > _MAXFUN or n_iterations >= maxiter:
        warnflag = 1
    else:
        warnflag = 2
    n = len(x)
    s = work.wa[0 : m * n].reshape(m, n)
    y = work.wa[m * n : 2 * m * n].reshape(m, n)
    n_corrs = min(work.isave[30], m)
    message = status_messages[task[0]] + ": " + task_messages[task[1]]
    if halted:  # as minimize reports a callback's StopIteration
        warnflag, message = 99, "`callback` raised `StopIteration`."
    return OptimizeResult(
        fun=f,
        jac=g,
        nfev=nfev,
        njev=nfev,
        nit=n_iterations,
        status=warnflag,
        message=message,
        x=x,
        success=warnflag == 0,
        hess_inv=LbfgsInvHessProduct(s[:n_corrs], y[:n_corrs]),
    )


_CHECKED: dict = {}


def _driver_ok(held: bool = False) -> bool:
    """Whether the direct driver gives ``minimize``'s result on a small bounded
    problem (with ``held``, one with a parameter held by its bounds); checked once per
    process."""
    if held not in _CHECKED:
        _CHECKED[held] = _same_as_scipy(held)
    return _CHECKED[held]


def _same_as_scipy(held: bool = False) -> bool:
    A = np.array([[3.0, 1.0, 0.2], [1.0, 2.0, 0.5], [0.2, 0.5, 1.5]])

    def fun(x):
        r = x - np.array([1.0, -2.0, 0.5])
        return float(0.5 * r @ A @ r + np.sum(np.cos(x))), A @ r - np.sin(x)

    bounds = [(None, None), (-1.0, None), (0.7, 0.7) if held else (0.0, 2.0)]
    stops = []

    def callback(intermediate_result):
        stops.append(np.array(intermediate_result.x))

    args = (fun, np.array([0.3, 0.4, 1.9]), bounds, 50, 1e-12, 1e-8, 5)
    try:
        ours = _drive(*args, callback)
    except Exception:  # noqa: BLE001 - any failure means: use minimize
        return False
    ours_path, stops[:] = list(stops), []
    ref = _scipy(*args, callback)
    return bool(
        np.array_equal(ours.x, ref.x)
        and ours.fun == ref.fun
        and np.array_equal(ours.jac, ref.jac)
        and ours.nit == ref.nit
        and ours.status == ref.status
        and ours.message == ref.message
        and len(ours_path) == len(stops)
        and all(np.array_equal(a, b) for a, b in zip(ours_path, stops))
    )


def _quiet_trial_points():
    """Floating-point warnings off while the optimiser probes: a trial point whose
    likelihood overflows is worth +inf to it (the objective says so), not a message to
    the user. The final estimates are checked for finiteness separately."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


class _BestPoint:
    """The objective, remembering the best finite point it was evaluated at.

    A failed evaluation is worth ``inf`` to L-BFGS-B; its line search may still end
    on such a point (or stop with a worse one than it saw). The result is then the
    best point evaluated, never the failed one.
    """

    def __init__(self, fun):
        self.fun = fun
        self.val, self.x = np.inf, None

    def __call__(self, x):
        val, g = self.fun(x)
        if val < self.val:
            self.val, self.x = val, np.array(x, dtype=float)
        return val, g

    def settle(self, res):
        if self.x is not None and not res.fun <= self.val:
            val, g = self.fun(self.x)
            res.x, res.fun, res.jac = self.x, val, g
            res.message = f"{res.message} (best point evaluated kept)"
        return res


def _run_lbfgsb(fun, x0, bounds, max_iter, tol, scale=None, stop=None):
    """L-BFGS-B; with ``scale`` it works on ``z = scale * x`` (a diagonal preconditioner).

    ``stop(x)``, asked at every iterate, ends the run early when it says so
    (``res.stopped`` is then True).
    """
    best = _BestPoint(fun)
    stopped = []

    def callback(intermediate_result):
        x = intermediate_result.x
        if stop(x if scale is None else x / scale):
            stopped.append(True)
            raise StopIteration

    callback = None if stop is None else callback
    if scale is None:
        res = minimize_lbfgsb(best, x0, bounds, max_iter, tol, 1e-6, 20, callback)
        res = best.settle(res)
        res.stopped = bool(stopped)
        return res
    fun = best
    x0 = np.asarray(x0, dtype=float)
    z0 = x0 * scale

    def fun_z(z):
        # the start as given, not a rounding away from it (``z0 / scale`` need not be
        # ``x0``): the objective remembers its last point, and a new one costs an evaluation
        val, g = fun(x0 if np.array_equal(z, z0) else z / scale)
        return val, g / scale

    zb = [
        (None if lo is None else lo * sc, None if hi is None else hi * sc)
        for (lo, hi), sc in zip(bounds, scale)
    ]
    # |g_z| <= gtol / max(scale) keeps |g_x| <= gtol, the unscaled criterion
    res = minimize_lbfgsb(fun_z, z0, zb, max_iter, tol, 1e-6 / np.max(scale), 20, callback)
    res.x = res.x / scale
    res.jac = res.jac * scale
    res = best.settle(res)
    res.scale = scale
    res.stopped = bool(stopped)
    return res
