"""Optional dependencies (formulas, plots, Dask), imported when first used."""

from __future__ import annotations

import importlib


def require(module: str, needed_for: str):
    """``module`` imported, or an ImportError that says what needs it and how to install
    it (``needed_for``: the message's text)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(needed_for) from exc
