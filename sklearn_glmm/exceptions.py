"""Warnings and errors raised by sklearn_glmm, importable in one place.

Every warning is a ``UserWarning`` subclass (``ConvergenceWarning`` is
scikit-learn's own), so ``warnings.filterwarnings`` can single out each one.
Invalid input raises ``ValueError`` (``TypeError`` for an argument of the wrong
kind); using a model before ``fit`` raises scikit-learn's ``NotFittedError``.
See the Troubleshooting page of the documentation for what each one means.
"""

from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError


class NoRandomEffectsWarning(UserWarning):
    """``fit`` was called without ``groups``: the model has no random effects."""


class ProfileWarning(UserWarning):
    """Profiling found a lower deviance than the fit, or could not reach a limit."""


class SingularFitWarning(UserWarning):
    """A random-effect variance (or correlation) is estimated on its boundary."""


class OverdispersionWarning(UserWarning):
    """Raised for dispersion parameters at a boundary (e.g. NB theta -> infinity)."""


class IdentifiabilityWarning(UserWarning):
    """A random-effect variance cannot be estimated from these groups (one level; one
    observation per level of a binary outcome or of a random slope; two factors that
    group the rows identically), or is poorly identified (an uncorrelated intercept and
    slope of a variable far from zero)."""


class RankDeficiencyWarning(UserWarning):
    """Fixed-effect columns that are constant or collinear were dropped (as lme4 does)."""


class SeparationWarning(UserWarning):
    """(Quasi-)complete separation: some fixed effects have an infinite MLE."""


class ZeroInflationWarning(UserWarning):
    """The zero-inflation probability is estimated at its boundary, 0."""


class StandardErrorWarning(UserWarning):
    """Some standard errors cannot be computed (reported as NaN)."""


class ApproximationWarning(UserWarning):
    """The Laplace approximation is poor for these data: adaptive Gauss-Hermite
    quadrature moves the estimates (refit with ``n_agq`` above 1)."""


class PowerSimulationWarning(UserWarning):
    """Some simulated studies of a power analysis gave no test (counted, not dropped)."""


class TrainingDataError(RuntimeError):
    """A method that needs the training data was called on a model unpickled without
    them (fit with ``keep_data=True`` to keep them in pickles)."""


__all__ = [
    "ApproximationWarning",
    "ConvergenceWarning",
    "DataConversionWarning",
    "IdentifiabilityWarning",
    "NoRandomEffectsWarning",
    "NotFittedError",
    "OverdispersionWarning",
    "PowerSimulationWarning",
    "ProfileWarning",
    "RankDeficiencyWarning",
    "SeparationWarning",
    "SingularFitWarning",
    "StandardErrorWarning",
    "TrainingDataError",
    "ZeroInflationWarning",
]
