"""Scale effects of an ordinal model (``ordinal::clmm2``'s ``scale = ~ x``).

``OrdinalGLMM(scale="x1 + x2")`` lets the latent distribution's scale depend on
predictors: ``P(Y <= j) = F((alpha_j - eta) / exp(s' zeta))``, with ``s`` the rows'
values of ``x1``, ``x2`` (features of ``X``, in the term syntax of ``random_effects``).
The scale model has no intercept, as clmm2's (its intercept is fixed at 0: the
thresholds, the coefficients and the random-effect SDs already set the overall
scale), so ``"x"``, ``"1 + x"`` and ``"0 + x"`` are the same model, and ``"1"`` (or
``None``) is the model without scale effects. The engine sees the family's
``log_scale`` block with this design: columns divided by their root mean square
(not centred, which would change the model), ``zeta = J zeta_internal`` mapped back
exactly.
"""

from __future__ import annotations

import numpy as np

from ._design import far_from_zero, fixed_term_text, parse_term, resolve_features
from ._warn import user_stacklevel, warn
from ._zero_inflation import ZeroInflationDesign
from .exceptions import IdentifiabilityWarning

WHAT = "scale"


def scale_term(spec):
    """The scale predictors' names (a tuple), or None without scale effects; a clear
    error for anything else."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise TypeError(
            f"{WHAT} must be None or a term string such as 'temp' or 'x1 + x2', got "
            f"{type(spec).__name__}."
        )
    text = fixed_term_text(
        spec,
        WHAT,
        "random effects in the scale model are not supported; the latent scale may depend "
        "on fixed predictors only, e.g. scale='temp'.",
    )
    if not text:
        raise ValueError(f"{WHAT}={spec!r} is empty; use scale=None for no scale effects.")
    try:
        term = parse_term(text)
    except ValueError as err:
        raise ValueError(
            f"{WHAT}={spec!r} is not a valid term: {err} Write the scale predictors by their "
            "feature names, e.g. 'temp' or 'x1 + x2'."
        ) from None
    if term.diagonal or term.blocks or term.structure is not None:
        raise ValueError(
            f"{WHAT}={spec!r}: diag(...), '||', blocks of terms and covariance structures apply "
            "to random effects only."
        )
    return tuple(term.slopes) or None


def scale_design(slopes, X: np.ndarray, feature_names) -> ZeroInflationDesign:
    """The scale model's design (no intercept) on the training rows ``X``.

    Raises ValueError for a name that is not a feature, and for a constant predictor
    (or a set of predictors adding up to a constant, such as every dummy of a
    factor): a constant scale is the model's overall scale, which the thresholds,
    coefficients and random-effect SDs already set, so its coefficient is not
    identified. Warns (IdentifiabilityWarning) for a predictor whose mean is more than
    10 SDs from zero: the model has no intercept, and such a column's zero is a
    reference scale the other parameters may not be able to express.
    """
    names = list(feature_names)
    slopes, missing = resolve_features(slopes, names)
    if missing:
        raise ValueError(
            f"{WHAT} names {missing}, which are not features of X; available: {names}."
        )
    columns = [names.index(s) for s in slopes]
    V = X[:, columns]
    const = [s for s, sd in zip(slopes, V.std(axis=0)) if not sd > 0]
    if const:
        raise ValueError(
            f"{WHAT} predictor(s) {const} are constant in the training data: a constant "
            "scale is the model's overall scale, which the thresholds, coefficients and "
            "random-effect SDs already set (clmm2 fixes the scale model's intercept at 0), "
            "so its coefficient is not identified. Remove them from scale."
        )
    far = [f"{n!r} (mean {m:.4g}, SD {sd:.4g})" for n, m, sd in far_from_zero(V, slopes)]
    if far:
        # exp(s' zeta) with no intercept: the predictors' zero is the reference scale
        warn(
            f"{WHAT} predictor(s) {', '.join(far)} far from zero: the scale model has no "
            "intercept (clmm2 fixes it at 0), so a predictor's zero is the reference scale. "
            "Shifting it by c is the same model with the thresholds, coefficients and "
            "random-effect SDs multiplied by exp(zeta c); far from zero those can be too large "
            "or too small to represent: the fit can stop far short of the optimum, or reach "
            "it with standard errors, Wald intervals and profiles that are wrong (its "
            "curvature is then computed on a badly scaled parametrisation). Centre the column "
            "(or measure it from a meaningful origin) for the scale model.",
            IdentifiabilityWarning,
            stacklevel=user_stacklevel(),
        )
    full = np.column_stack([np.ones(len(V)), V - V.mean(axis=0)])
    if np.linalg.matrix_rank(full) < full.shape[1]:
        raise ValueError(
            f"the {WHAT} design {list(slopes)} is rank deficient (a predictor is a linear "
            "combination of the others, or they add up to a constant as every dummy of a "
            "factor does, which the scale model's fixed intercept makes unidentified): "
            "remove the redundant predictor."
        )
    means = np.zeros(len(columns))
    scales = np.sqrt(np.mean(V**2, axis=0))
    J = np.diag(1.0 / scales)
    return ZeroInflationDesign(list(slopes), columns, False, means, scales, J)


def formula_of(design) -> str:
    """The scale model as clmm2 writes it: ``~temp``, ``~x1 + x2``."""
    return "~" + " + ".join(design.names)
