"""Generalized linear mixed models as scikit-learn estimators."""

from . import exceptions  # noqa: F401  (sklearn_glmm.exceptions: every warning class)
from ._config import config_context, get_config, set_config
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
    "config_context",
    "get_config",
    "marginal_coefs",
    "power_curve",
    "set_config",
]
__version__ = "0.1.0"
