"""BLAS limited to one thread while the engine works: its matrices are small."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController


@contextmanager
def single_threaded_blas():
    """BLAS limited to one thread: the matrices here are small, and idle BLAS
    threads spinning against other work cost more than the arithmetic (3x on
    a busy two-core machine, with scipy's L-BFGS-B calling BLAS every step).

    The limit is process-wide state: fits running in several threads at once
    share one limit, set by the first to enter and restored by the last to
    leave, so that the process ends with the BLAS threads it started with. One
    controller is kept for the process: building a new one rescans the loaded
    libraries, about 6 ms, which is a third of a small fit.
    """
    global _BLAS_CONTROLLER, _BLAS_LIMITER, _BLAS_DEPTH
    with _BLAS_LOCK:
        if _BLAS_CONTROLLER is None:
            _BLAS_CONTROLLER = ThreadpoolController()
        if _BLAS_DEPTH == 0:
            _BLAS_LIMITER = _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
        _BLAS_DEPTH += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


_BLAS_CONTROLLER = None
_BLAS_LIMITER = None
_BLAS_DEPTH = 0
_BLAS_LOCK = threading.Lock()
