"""A dispersion that depends on predictors (glmmTMB's ``dispformula = ~ x``).

``dispersion="1 + x"`` gives the family's dispersion parameter its own linear
predictor on the log scale, over feature names in the term syntax of
``random_effects``: ``log theta_i = d_i' delta`` for NB2 (the size, Var = mu + mu^2 /
theta), ``log phi_i`` for NB1 (Var = mu (1 + phi)) and the beta-binomial (the Beta's
precision). These are glmmTMB's scales for ``fixef(m)$disp`` of ``nbinom2``,
``nbinom1`` and ``betabinomial``. The engine sees the dispersion block with a design,
as the zero-inflation block with predictors (:mod:`sklearn_glmm._zero_inflation`,
whose design class and effects table this module shares): centred and scaled
columns, ``delta = J delta_internal`` mapped back exactly. ``None`` (or ``"1"``) is the
constant dispersion, with its boundary treatment (NB theta settled at infinity with
an ``OverdispersionWarning``).
"""

from __future__ import annotations

from ._design import fixed_term_text, parse_term
from ._zero_inflation import ZeroInflationDesign, make_design

WHAT = "dispersion"

__all__ = ["WHAT", "dispersion_design", "dispersion_term", "formula_of"]


def dispersion_term(spec):
    """``None`` (the constant dispersion: ``spec`` is None or an intercept alone), or the
    parsed term of a string ``spec``; a clear error for anything else."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise TypeError(
            f"{WHAT} must be None or a term string such as '1 + time', got {type(spec).__name__}."
        )
    text = fixed_term_text(
        spec,
        WHAT,
        "random effects in the dispersion model are not supported; the dispersion may "
        "depend on fixed predictors only, e.g. dispersion='1 + time'.",
    )
    try:
        term = parse_term(text)
    except ValueError as err:
        raise ValueError(
            f"{WHAT}={spec!r} is not a valid term: {err} Write fixed predictors by their "
            "feature names, e.g. '1 + time'."
        ) from None
    if term.diagonal or term.blocks:
        raise ValueError(
            f"{WHAT}={spec!r}: diag(...), '||' and blocks of terms apply to random effects only."
        )
    return None if not term.slopes else term


def dispersion_design(term, X, feature_names) -> ZeroInflationDesign:
    """The dispersion model's design of ``term`` on the training rows ``X``."""
    return make_design(term, X, feature_names, what=WHAT)


def formula_of(design) -> str:
    """The model as glmmTMB writes it: ``~1``, ``~x``, ``~0 + x``."""
    if design is None:
        return "~1"
    slopes = [n for n in design.names if n != "(Intercept)"]
    return "~" + " + ".join(([] if design.intercept else ["0"]) + slopes)
