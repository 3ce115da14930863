"""Generalized linear mixed models as scikit-learn estimators."""

from . import exceptions  # noqa: F401  (sklearn_glmm.exceptions: every warning class)
from .estimators import BinomialGLMM, NegBinGLMM, PoissonGLMM
from .inference import anova, compare_models
from .ordinal import OrdinalGLMM

__all__ = ["BinomialGLMM", "NegBinGLMM", "OrdinalGLMM", "PoissonGLMM", "anova", "compare_models"]
__version__ = "0.1.0"
