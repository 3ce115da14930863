"""Generalized linear mixed models as scikit-learn estimators."""

from .estimators import BinomialGLMM, NegBinGLMM, PoissonGLMM

__all__ = ["BinomialGLMM", "NegBinGLMM", "PoissonGLMM"]
__version__ = "0.1.0"
