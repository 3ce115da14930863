"""Warnings and errors raised by sklearn_glmm, importable in one place.

Every warning is a ``UserWarning`` subclass (``ConvergenceWarning`` is
scikit-learn's own), so ``warnings.filterwarnings`` can single out each one.
Invalid input raises ``ValueError`` (``TypeError`` for an argument of the wrong
kind); using a model before ``fit`` raises scikit-learn's ``NotFittedError``.
See the Troubleshooting page of the documentation for what each one means.
"""

from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError

from ._base import NoRandomEffectsWarning
from ._profile import ProfileWarning
from ._results import (
    IdentifiabilityWarning,
    OverdispersionWarning,
    RankDeficiencyWarning,
    SeparationWarning,
    SingularFitWarning,
    StandardErrorWarning,
    ZeroInflationWarning,
)

__all__ = [
    "ConvergenceWarning",
    "DataConversionWarning",
    "IdentifiabilityWarning",
    "NoRandomEffectsWarning",
    "NotFittedError",
    "OverdispersionWarning",
    "ProfileWarning",
    "RankDeficiencyWarning",
    "SeparationWarning",
    "SingularFitWarning",
    "StandardErrorWarning",
    "ZeroInflationWarning",
]
