"""Generalized linear mixed models as scikit-learn estimators."""

from . import exceptions  # noqa: F401  (sklearn_glmm.exceptions: every warning class)
from .estimators import BinomialGLMM, NegBinGLMM, PoissonGLMM
from .inference import anova, compare_models
from .marginal import marginal_coefs
from .ordinal import OrdinalGLMM
from .power import GLMMSpec, power_curve

__all__ = [
    "BinomialGLMM",
    "GLMMSpec",
    "NegBinGLMM",
    "OrdinalGLMM",
    "PoissonGLMM",
    "anova",
    "compare_models",
    "marginal_coefs",
    "power_curve",
]
__version__ = "0.1.0"
