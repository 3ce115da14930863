"""The library's global settings: ``set_config``, ``get_config``, ``config_context``.

One setting so far, ``compiled``: whether the conditional-mode search and the gradient
of a model with one scalar random effect (random intercepts), the whole evaluations of
Laplace fits with one or two random effects per level, and the batched evaluations of
refits, run as compiled kernels (numba, an optional extra) instead of numpy calls. The
results are the same to rounding; only the time differs (see ``docs/performance.md``).
"""

from __future__ import annotations

import importlib.util
import threading
from contextlib import contextmanager
from functools import partial

# the process's settings (set_config), and each thread's own inside a config_context
# block (as scikit-learn's: a block in one thread does not reach the others)
_CONFIG = {"compiled": False}
_local = threading.local()


def _current() -> dict:
    local = getattr(_local, "config", None)
    return _CONFIG if local is None else local


def get_config() -> dict:
    """The current settings of this thread, a new dict: ``{"compiled": bool}``."""
    return dict(_current())


def compiled_on() -> bool:
    """Whether ``compiled`` is on (read in the engine's hot paths: no dict copy)."""
    return _current()["compiled"]


def set_config(*, compiled: bool | None = None) -> None:
    """Change the library's settings for the whole process (every thread outside a
    :func:`config_context` block).

    Parameters
    ----------
    compiled : bool, optional
        Run the conditional-mode search and the gradient of models with one grouping
        factor and one scalar random effect (random intercepts, or one random slope
        without an intercept) of the Poisson family with the log link, the binomial
        family with the logit link or the negative binomial family NB2 with the log
        link and one theta for all rows, on up to 50,000 rows, as compiled kernels;
        other models (NB1, zero-inflated, hurdle and truncated models, a dispersion
        model) run the numpy code as before. Laplace fits of Poisson models with the
        log link and binomial models with the logit link with one grouping factor and
        one or two random effects per level (an intercept and a slope, correlated or
        not), and of NB2 models with two, on up to 50,000 rows, evaluate the objective,
        its gradient and the modes' derivatives in one kernel call (the batched refits'
        kernel, a batch of one). The batched refits of the parametric bootstrap and the
        power analysis (these models, and NB2 with one random effect per level)
        evaluate their replicates with that kernel too. The library's own
        parallel work (``n_jobs``) runs under the caller's setting. Needs numba
        (``pip install "sklearn_glmm[numba]"``). The first fit of a process loads the
        kernels (under a second; the very first compiles them, a few seconds); after
        that, an evaluation of the objective of such a model takes 0.4-0.75 of its
        time, and a whole small fit about 0.8-0.9 with one random effect per level and
        0.5-0.6 with two (the rest of a fit is the optimiser's and the checks' own
        work). Estimates, standard errors and log-likelihoods
        agree with the numpy code's to rounding. Default False.
    """
    if compiled is not None:
        if not isinstance(compiled, bool):
            raise TypeError(f"compiled must be True or False, got {compiled!r}")
        if compiled and importlib.util.find_spec("numba") is None:
            raise ImportError(
                "set_config(compiled=True) needs numba, which is not installed: "
                'pip install "sklearn_glmm[numba]" (or pip install numba).'
            )
        _current()["compiled"] = compiled


@contextmanager
def config_context(**settings):
    """Settings of :func:`set_config` inside a ``with`` block, for this thread alone
    (other threads keep theirs), restored after it (blocks in several threads end in
    any order)."""
    before = getattr(_local, "config", None)
    _local.config = dict(_current())
    try:
        set_config(**settings)
        yield
    finally:
        _local.config = before


def with_config(fn):
    """``fn`` run under the caller's settings wherever it is called: the library's own
    parallel work (joblib's worker processes do not inherit :func:`set_config`)."""
    return partial(_call_with_config, get_config(), fn)


def _call_with_config(settings, fn, *args, **kwargs):
    with config_context(**settings):
        return fn(*args, **kwargs)
