"""Where the package's warnings point: the user's line, whatever the call path inside.

``warnings.warn(message, Category, stacklevel=user_stacklevel())`` attributes the
warning to the first frame outside this package, so that a warning raised deep in a
fit (``BinomialGLMM.fit`` -> ``_BaseGLMM.fit`` -> ``_results`` -> ...) names the
line of the script or notebook cell that called ``fit``. A fixed ``stacklevel``
would point into the package whenever the depth changes (a subclass wrapping
``fit``, the formula front end, a helper moved one call deeper).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from contextlib import contextmanager

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _in_package(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)


def user_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` call made in the caller's frame: the number
    of frames from that call to the first frame outside ``sklearn_glmm`` (1 when the
    caller itself is outside the package)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and _in_package(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return level


# The package's own warnings go through :func:`warn`, which first reads the scopes this
# thread has open (:func:`quiet`, :func:`recorded`): ``warnings.catch_warnings`` swaps
# the filters of the whole process (before Python 3.14), so a block of it in one thread
# silenced or recorded the warnings of fits running in others, and two such blocks
# ending out of order left the process ignoring every warning.
_local = threading.local()


def _scopes() -> list:
    scopes = getattr(_local, "scopes", None)
    if scopes is None:
        scopes = _local.scopes = []
    return scopes


@contextmanager
def _scope(scope: tuple):
    """``scope`` open for the block (closed by identity: blocks of greenlets sharing a
    thread may end out of order)."""
    scopes = _scopes()
    scopes.append(scope)
    try:
        yield
    finally:
        for k in range(len(scopes) - 1, -1, -1):
            if scopes[k] is scope:
                del scopes[k]
                break


def warn(message, category=UserWarning, stacklevel: int = 1) -> None:
    """``warnings.warn`` for the package's own warnings (``stacklevel`` counted from the
    caller, as there), unless a scope of this thread takes it: the innermost
    :func:`quiet` block that matches drops it, a :func:`recorded` block keeps it."""
    if isinstance(message, Warning):
        category, text = type(message), str(message)
    else:
        text = str(message)
    for kind, cls, pattern, caught in reversed(_scopes()):
        if not issubclass(category, cls) or (pattern is not None and not pattern.match(text)):
            continue
        if kind == "record":
            caught.append(
                warnings.WarningMessage(
                    message if isinstance(message, Warning) else category(text),
                    category,
                    __file__,
                    0,
                )
            )
        return
    warnings.warn(message, category, stacklevel=stacklevel + 1)


@contextmanager
def quiet(category=Warning, message: str | None = None):
    """Inside the block, the package's warnings of ``category`` raised in this thread
    (whose text begins with a match of the regular expression ``message``, case
    ignored, as ``warnings.filterwarnings``'s) are not issued; other threads' are."""
    pattern = None if message is None else re.compile(message, re.IGNORECASE)
    with _scope(("ignore", category, pattern, None)):
        yield


@contextmanager
def recorded():
    """Inside the block, the package's warnings raised in this thread are kept, not
    issued: the list it yields (``warnings.WarningMessage``, as ``catch_warnings(
    record=True)``'s), whatever the filters say; other threads' are issued."""
    caught: list = []
    with _scope(("record", Warning, None, caught)):
        yield caught


# the blocks that still swap the process's filters (for other packages' warnings:
# scikit-learn's validation, formulaic's) take turns: two of them ending out of order
# left the process with the first one's filters, warnings then recorded into a list that
# nobody reads
_FILTERS_LOCK = threading.RLock()


@contextmanager
def process_filters(record: bool = False):
    """``warnings.catch_warnings(record=record)``, in turn with the package's other such
    blocks (:data:`_FILTERS_LOCK`). Keep it short and around other packages' code: it
    still acts on every thread's warnings while it lasts (:func:`at_user_line` issues
    what it records again, so those are not lost)."""
    with _FILTERS_LOCK, warnings.catch_warnings(record=record) as caught:
        yield caught


class at_user_line:
    """Re-issue the warnings raised inside a ``with`` block (by scikit-learn's validation,
    say) at the user's line.

    Inside, every warning is recorded (``"always"``; :func:`process_filters`); on the
    way out each one is issued again (:func:`warn`) from the first frame outside the
    package, where the user's filters apply.
    """

    def __enter__(self):
        self._catcher = process_filters(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        if exc[0] is None:
            level = user_stacklevel()
            for w in self._caught:
                # (through warn: a quiet() or recorded() block of this thread takes them,
                # as the package's own)
                warn(w.message, w.category, stacklevel=level)
        return False
