"""The results paragraph of an ordinal model."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._fit_result import fitted_n_agq
from ._report import _compare_sentences, _effect_sentences, _fmt_p, _random_sentences
from .inference import confint


def ordinal_report(est, level=0.95, method="wald", outcome=None, compare=(), digits=2) -> str:
    """A paragraph for a fitted :class:`~sklearn_glmm.OrdinalGLMM`.

    The model (link, thresholds, estimation, numbers of observations and levels);
    each fixed effect as a cumulative odds ratio (logit link: the odds of a higher
    class, the same at every cut) or a latent-scale coefficient, with its interval
    and Wald p-value; the random-effect SDs; the thresholds; one sentence per model
    in ``compare``; notes on a singular fit or on convergence. ``outcome`` names the
    outcome ("a higher rating" by default, from the name of ``y``).
    """
    check_is_fitted(est, "coef_")
    ci = confint(est, level=level, method=method)
    y = getattr(est, "_y_name", "y")
    outcome = f"a higher {y}" if outcome is None else outcome
    res = est.fit_result_
    kind = f"cumulative link ({res.family.link.name} link, {res.family.threshold} thresholds)"
    if res.factors:
        n_agq = fitted_n_agq(est)
        approx = (
            "the Laplace approximation"
            if n_agq == 1
            else f"adaptive Gauss-Hermite quadrature ({n_agq} nodes)"
        )
        groups = ", ".join(f"{f.name} ({f.n_levels} levels)" for f in res.factors)
        intro = (
            f"A {kind} mixed model was fitted by maximum likelihood ({approx}) to {est.nobs_} "
            f"observations of {len(est.classes_)} ordered classes with random effects for "
            f"{groups}."
        )
    else:
        intro = (
            f"A {kind} model without random effects was fitted by maximum likelihood to "
            f"{est.nobs_} observations of {len(est.classes_)} ordered classes."
        )
    parts = [intro]
    parts += _effect_sentences(est, ci, outcome, level, digits)
    parts += _scale_sentences(est, ci, level, digits)
    parts += _random_sentences(est, ci, digits)
    th = est.thresholds_["estimate"]
    cuts = ", ".join(f"{name}: {value:.{digits}f}" for name, value in th.items())
    parts.append(f"The thresholds (on the latent {res.family.link.scale_name} scale) were {cuts}.")
    parts += _compare_sentences(est, list(compare), digits)
    if est.is_singular_:
        parts.append(
            "The fit is singular (a variance or correlation is on its boundary); "
            "consider simplifying the random effects."
        )
    if not est.converged_:
        parts.append("Warning: the optimiser reported convergence problems (see fit_record_).")
    return " ".join(parts)


def _scale_sentences(est, ci, level, digits) -> list[str]:
    """One sentence per scale effect: the factor ``exp(zeta)`` of the latent scale."""
    if getattr(est, "_scale_design", None) is None:
        return []
    pct = f"{round(level * 100):d}%"
    out = []
    table = est.scale_effects_
    for name in table.index:
        z, p = table.loc[name, "estimate"], table.loc[name, "p_value"]
        lo, hi = ci.loc[f"scale~{name}", "lower"], ci.loc[f"scale~{name}", "upper"]
        r, a, b = (f"{v:.{digits}f}" for v in np.exp([z, lo, hi]))
        out.append(
            f"The latent scale (the spread of the latent variable) was multiplied by {r} per "
            f"unit of {name} (exp(zeta), {pct} CI [{a}, {b}], {_fmt_p(p, 1 - level)})."
        )
    return out
