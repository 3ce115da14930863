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
import sys
import warnings

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


class at_user_line:
    """Re-issue the warnings raised inside a ``with`` block (by scikit-learn's validation,
    say) at the user's line.

    Inside, every warning is recorded (``"always"``); on the way out each one is issued
    again from the first frame outside the package, where the user's filters apply.
    """

    def __enter__(self):
        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        if exc[0] is None:
            level = user_stacklevel()
            for w in self._caught:
                warnings.warn(w.message, w.category, stacklevel=level)
        return False
