"""The results paragraph of a fitted model (``report``)."""

from __future__ import annotations

import re

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._compare import anova
from ._confint import confint
from ._engine.stage import SINGULAR_TOL
from ._fit_result import fitted_n_agq
from ._performance_terms import _formula_terms
from ._results import singular_columns
from ._state import binary_column, binary_outcome, overdispersion_result
from ._warn import quiet
from .summary import modelled_outcome, undetermined_covariance


def _fmt_p(p, alpha: float = 0.05):
    """``p = .03``, ``p < .001``: two decimals (three below .01), more where rounding
    would carry ``p`` across the cut ``alpha`` the sentence's verdict uses (``p = .048``,
    not ``p = .05``, for a significant effect)."""
    if not np.isfinite(p):
        return "p = NA"
    if p < 0.001:
        return "p < .001"
    alpha = round(alpha, 12)  # 1 - 0.95 is 0.050000000000000044
    for d in range(3 if p < 0.01 else 2, 6):
        s = f"{p:.{d}f}"
        if (float(s) < alpha) == (p < alpha):
            break
    else:
        return f"p < {alpha:g}".replace("0.", ".")
    return "p = " + s.lstrip("0") if float(s) < 1.0 else "p > .99"


def _fmt_value(v, digits):
    """``v`` to ``digits`` decimals, or to ``digits + 1`` significant digits where that
    would print a non-zero value as zero (an SD of 1.5e-06 per second)."""
    v = float(v)
    if v != 0.0 and np.isfinite(v) and abs(v) < 0.5 * 10.0**-digits:
        return f"{v:.{digits + 1}g}"
    return f"{v:.{digits}f}"


def _is_binary(est, name):
    """Whether fixed-effect column ``name`` took only the values 0 and 1 in training."""
    return binary_column(est, name)


def _fmt_ratio(values, digits):
    """Format ratios with enough decimals to tell estimate and limits apart."""
    values = [float(v) for v in values]
    for d in range(digits, 6):
        out = [f"{v:.{d}f}" for v in values]
        if len(set(out)) == len(out):
            return out
    # ratios within 1e-5 of each other (a coefficient of 3e-07 per second): the
    # significant digits that tell them apart
    for d in range(7, 16):
        out = [f"{v:.{d}g}" for v in values]
        if len(set(out)) == len(out):
            return out
    return out


_RATIO_ABBREVIATION = {"odds ratio": "OR", "rate ratio": "IRR", "hazard ratio": "HR"}
_SUBJECTS = {
    "odds ratio": ("The odds of {outcome}", "were"),
    "rate ratio": ("The expected count of {outcome}", "was"),
    "hazard ratio": ("The hazard of {outcome}", "was"),
    None: ("The probability of {outcome}", "was"),
}


def _effect_sentences(est, ci, outcome, level, digits):
    fam = est.fit_result_.family
    link = fam.link
    ratio = _RATIO_ABBREVIATION.get(link.ratio_name)
    # a family whose mean is not the link's (a hurdle, a zero-inflated one whose zero
    # part varies) says what exp(beta) multiplies
    subject, verb = fam.ratio_subject or _SUBJECTS[link.ratio_name]
    if est.fit_result_.zi_design is not None and fam.varying_zero_subject:
        subject, verb = fam.varying_zero_subject
    subject = subject.format(outcome=outcome)
    # a link without a ratio reading (probit): coefficients on the link scale
    transform = np.exp if ratio is not None else np.asarray
    ratio = ratio or f"b ({link.scale_name} scale)"
    pct = f"{round(level * 100):d}%"
    out = []
    fe = est.fixed_effects_
    partners = _interaction_partners(fe.index)
    levels = _treatment_levels(est)
    for name in fe.index:
        if name == "(Intercept)" or not np.isfinite(fe.loc[name, "estimate"]):
            continue
        b, p = fe.loc[name, "estimate"], fe.loc[name, "p_value"]
        # (a main effect at another predictor's far-away zero can overflow: inf, said so)
        with np.errstate(over="ignore"):
            values = transform([b, ci.loc[name, "lower"], ci.loc[name, "upper"]])
        r, lo, hi = _fmt_ratio(values, digits)
        if ":" in name:  # an interaction: how much one variable's effect changes with another
            label = f"ratio of {ratio}s" if ratio in _RATIO_ABBREVIATION.values() else ratio
            stat = f"{label} = {r}, {pct} CI [{lo}, {hi}], {_fmt_p(p, 1 - level)}"
            verdict = "was not significant" if p >= 1 - level else "was significant"
            out.append(f"The interaction {name} {verdict} ({stat}).")
            continue
        binary = _is_binary(est, name)
        unit = "" if binary else " per unit"
        stat = f"{ratio} = {r}{unit}, {pct} CI [{lo}, {hi}], {_fmt_p(p, 1 - level)}"
        if name in partners:  # a main effect within an interaction: where the others are 0
            stat = f"where {' and '.join(f'{o} = 0' for o in partners[name])}; {stat}"
        # a formula factor's dummy compares its level with the reference level (not with
        # "every other level", which "= 0" would say)
        one, zero = (f"{name} = 1", f"{name} = 0")
        if name in levels:
            var, lev, ref = levels[name]
            one, zero = f"{var} = {lev}", f"{var} = {ref} (the reference level)"
        if p >= 1 - level:
            what = name
            if binary:
                what = f"{name} (1 vs 0)" if name not in levels else f"{var} ({lev} vs {ref})"
            out.append(f"{subject} {verb} not significantly associated with {what} ({stat}).")
        elif binary:
            more = "higher" if b > 0 else "lower"
            out.append(f"{subject} {verb} {more} for {one} than for {zero} ({stat}).")
        else:
            trend = "increased" if b > 0 else "decreased"
            out.append(f"{subject} {trend} with {name} ({stat}).")
    return out


def _treatment_levels(est) -> dict:
    """Fixed-effect name -> (variable, level, reference level) of every treatment-coded
    dummy of a formula fit's factors (``conditiondrugA``: condition, drugA, ctrl)."""
    terms = _formula_terms(est)
    if terms is None or not terms.treatment:
        return {}
    spec = est.design_info_
    state = getattr(spec, "encoder_state", None) or {}
    out = {}
    for entry in spec.structure:
        label = str(entry.term)
        if label not in terms.treatment or len(entry.term.factors) != 1:
            continue
        var = str(entry.term.factors[0])
        found = [re.search(r"\[T\.(.*)\]$", str(c)) for c in entry.columns]
        categories = state.get(var, (None, {}))[1].get("categories")
        if categories is None or not all(found):
            continue
        shown = [m.group(1) for m in found]
        ref = [str(c) for c in categories if str(c) not in shown]
        if len(ref) != 1:
            continue
        for name, lev in zip(terms.columns[label], shown):
            out[name] = (var, lev, ref[0])
    return out


def _interaction_partners(names) -> dict:
    """For each term that enters an interaction (``x`` of ``x:fb``), the other terms
    of its interactions, in order: its coefficient is its effect where they are 0."""
    out: dict = {}
    for name in names:
        parts = str(name).split(":")
        if len(parts) < 2:
            continue
        for k, part in enumerate(parts):
            others = out.setdefault(part, [])
            others.extend(o for o in parts[:k] + parts[k + 1 :] if o not in others)
    return out


def _random_sentences(est, ci, digits):
    scale = est.fit_result_.family.link.scale_name
    out = []
    undetermined = undetermined_covariance(est)
    lambdas = est.fit_result_.internal_lambdas()
    for f, L in zip(est.fit_result_.factors, lambdas):
        if getattr(f, "structure", None) is not None:
            out.append(_structured_sentence(f, ci, digits, scale))
            continue
        S = est.random_effects_cov_[f.name].to_numpy()
        sd = np.sqrt(np.clip(np.diag(S), 0, None))
        # the fit's own singularity rule (the internal, centred and scaled Cholesky
        # factor): not an SD below a fixed number, which depends on the units
        flagged = set(singular_columns(L))
        zero = np.linalg.norm(L, axis=1) < SINGULAR_TOL
        parts = []
        for k, t in enumerate(f.term.names):
            kind = "random-intercept SD" if t == "(Intercept)" else f"random-slope SD of {t}"
            row = f"sd_{t}|{f.name}"
            ci_txt = ""
            if row in ci.index and np.isfinite(ci.loc[row, "lower"]):
                lo, hi = (_fmt_value(ci.loc[row, c], digits) for c in ("lower", "upper"))
                ci_txt = f", CI [{lo}, {hi}]"
            note = ""
            if k in flagged:
                note = (
                    " (estimated at zero: a singular fit)"
                    if zero[k]
                    else " (perfectly correlated with the terms before it: a singular fit)"
                )
            parts.append(f"the {kind} was {_fmt_value(sd[k], digits)}{ci_txt}{note}")
        if len(sd) > 1 and not f.term.diagonal:
            parts += _correlation_parts(f.term.names, S, sd, f.term.block_index)
        txt = "; ".join(parts)
        out.append(f"Across {f.n_levels} levels of {f.name}, {txt} (on the {scale} scale).")
        free = [n for n in undetermined if n.endswith(f"|{f.name}")]
        if free:
            out.append(
                f"The data do not identify {', '.join(free)} (a random slope of a predictor "
                f"of the level of {f.name} itself): the values shown are one point of a set "
                "of equal likelihood."
            )
    return out


def _correlation_parts(names, S, sd, block) -> list:
    """``the correlation of a and b was r``, every pair of terms of one correlated block
    (``block``: each term's) with non-zero SDs."""
    pairs = [
        (i, j)
        for j in range(len(sd))
        for i in range(j)
        if sd[i] > 0 and sd[j] > 0 and block[i] == block[j]
    ]
    if len(pairs) == 1:
        i, j = pairs[0]
        return [f"the correlation of {names[i]} and {names[j]} was {S[j, i] / (sd[i] * sd[j]):.2f}"]
    if not pairs:
        return []
    each = ", ".join(f"{names[i]} and {names[j]} {S[j, i] / (sd[i] * sd[j]):.2f}" for i, j in pairs)
    return [f"the correlations were: {each}"]


_STRUCTURE_WORDS = {
    "ar1": "a first-order autoregressive (AR1) structure",
    "cs": "compound symmetry",
    "toep": "a Toeplitz structure",
    "ou": "an Ornstein-Uhlenbeck structure",
}


def _structured_sentence(f, ci, digits, scale) -> str:
    """One sentence for a structured factor: its SD(s) and correlation parameter with
    their Wald intervals."""
    rows = [r for r in ci.index if r.endswith(f"|{f.name}")]

    def value(r):
        lo, hi = ci.loc[r, "lower"], ci.loc[r, "upper"]
        txt = f"{ci.loc[r, 'estimate']:.{digits}f}"
        if np.isfinite(lo) and np.isfinite(hi):
            txt += f" (CI [{lo:.{digits}f}, {hi:.{digits}f}])"
        return txt

    sds = [r for r in rows if r.startswith("sd_")]
    cor = [r for r in rows if not r.startswith("sd_")]
    time = f.term.time
    sd_txt = (
        f"SD {value(sds[0])}"
        if len(sds) == 1
        else "SDs " + ", ".join(f"{r.split('|')[0][3:]} {value(r)}" for r in sds)
    )
    if f.structure.name == "ou":
        cor_txt = f"a correlation decay rate of {value(cor[0])} per unit of {time}"
    elif f.structure.name == "toep":
        lags = ", ".join(f"{k} {value(r)}" for k, r in enumerate(cor, start=1))
        cor_txt = f"correlations by lag of {time} of {lags}"
    elif f.structure.name == "ar1":
        cor_txt = f"a correlation of {value(cor[0])} between adjacent values of {time}"
    else:
        cor_txt = f"a correlation of {value(cor[0])} between any two values of {time}"
    return (
        f"Across {f.n_levels} levels of {f.name}, the effects of each value of {time} "
        f"followed {_STRUCTURE_WORDS[f.structure.name]} with {sd_txt} and {cor_txt} "
        f"(on the {scale} scale)."
    )


def _zero_inflation_sentence(est, block, digits) -> str:
    """The zero-inflation model (a hurdle's zero part) with predictors: its logit-scale
    slopes and mean probability."""
    table = est.zero_inflation_effects_
    slopes = [
        f"{name} {row['estimate']:.{digits}f} (SE {row['std_error']:.{digits}f}, "
        f"{_fmt_p(row['p_value'])})"
        for name, row in table.iterrows()
        if name != "(Intercept)"
    ]
    label = block.label[0].lower() + block.label[1:]
    return (
        f"The {label} was modelled on the logit scale with coefficients "
        f"{'; '.join(slopes)}; its mean over the observations was "
        f"{getattr(est, block.attribute):.{digits}f}."
    )


def _dispersion_model_sentence(est, block, digits) -> str:
    """A dispersion with predictors: its log-scale slopes and the mean dispersion."""
    table = est.dispersion_effects_
    slopes = [
        f"{name} {row['estimate']:.{digits}f} (SE {row['std_error']:.{digits}f}, "
        f"{_fmt_p(row['p_value'])})"
        for name, row in table.iterrows()
        if name != "(Intercept)"
    ]
    label = block.label[0].lower() + block.label[1:]
    return (
        f"The {label} was modelled on the log scale with coefficients "
        f"{'; '.join(slopes)}; its mean over the observations was "
        f"{getattr(est, block.attribute):.{digits}f}."
    )


def _dispersion_sentences(est, digits):
    out = []
    res = est.fit_result_
    for b in res.family.blocks:
        if res.zi_design is not None and b.summary == "logit table":
            out.append(_zero_inflation_sentence(est, b, digits))
            continue
        if res.disp_design is not None and b.prefix == "disp":
            out.append(_dispersion_model_sentence(est, b, digits))
            continue
        if getattr(est, b.attribute[:-1] + "_at_boundary_", False):
            out.append(b.at_bound_sentence)
        else:
            out.append(b.sentence.format(value=f"{getattr(est, b.attribute):.{digits}f}"))
    if binary_outcome(est):
        return out
    with quiet():
        od = overdispersion_result(est)
    verdict = (
        "indicating overdispersion (consider NegBinGLMM or an observation-level random effect)"
        if od.p_value < 0.05 and od.ratio > 1
        else "so the model was adequate in this respect"
    )
    out.append(
        f"The overdispersion ratio was {od.ratio:.{digits}f} (Pearson chi2({od.df}) = "
        f"{od.statistic:.1f}, {_fmt_p(od.p_value)}), {verdict}."
    )
    return out


def _marginal_sentences(est, level, digits):
    """The population-averaged effects (``marginal_coefs``) in one sentence."""
    from .marginal import conditional_marginal_table

    if not est.fit_result_.factors:
        return []
    tab = conditional_marginal_table(est, level=level)
    ratio = _RATIO_ABBREVIATION.get(tab.attrs["scale"])
    label = ratio or f"b ({tab.attrs['scale']} scale)"
    parts = []
    for name in tab.index:
        if name == "(Intercept)" or not np.isfinite(tab.loc[name, "marginal"]):
            continue
        r, lo, hi = _fmt_ratio(
            tab.loc[name, ["marginal", "marginal_lower", "marginal_upper"]], digits
        )
        parts.append(f"{name} {label} = {r}, {round(level * 100):d}% CI [{lo}, {hi}]")
    if not parts:
        return []
    return [
        "Averaged over the random effects (population-averaged, marginal coefficients), "
        f"the effects were: {'; '.join(parts)}."
    ]


def _compare_sentences(est, compare, digits):
    out = []
    for other in compare:
        label = type(other).__name__
        try:
            tab = anova(est, other, names=["this", "other"])
        except ValueError as exc:
            out.append(f"(No likelihood-ratio test against the {label} fit: {exc})")
            continue
        last = tab.iloc[1]
        p = (
            last["Pr(>Chisq) chi-bar"]
            if np.isfinite(last["Pr(>Chisq) chi-bar"])
            else last["Pr(>Chisq)"]
        )
        kind = " (chi-bar-square: parameter on its boundary)" if last["chi-bar mixture"] else ""
        out.append(
            f"A likelihood-ratio test against the {label} fit gave chi2({int(last['Df'])}) = "
            f"{max(last['Chisq'], 0.0):.{digits}f}, {_fmt_p(p)}{kind}; AIC {est.aic_:.1f} for "
            f"this model vs {other.aic_:.1f}."
        )
    return out


def report(
    est,
    *,
    level: float = 0.95,
    method: str = "wald",
    outcome: str = "the outcome",
    compare=(),
    digits: int = 2,
    marginal: bool = False,
) -> str:
    """A results paragraph for a fitted model, ready to edit into a paper.

    The sentences describe the model (family, link, estimation method, numbers of
    observations and of levels); each fixed effect other than the intercept as an
    odds ratio (logit link), hazard ratio (cloglog), incidence-rate ratio (counts) or
    link-scale coefficient (probit), with its ``level`` interval and Wald p-value (a
    0/1 predictor as "1 vs 0", a formula factor's level against its reference level,
    others per unit); each grouping factor's random-effect SDs (and correlations) on
    the link scale, a zero SD or a correlation of +-1 named as the fit's singularity
    check finds it (on the internal, unit-free scale); the family's own parameters (NB
    theta, zero inflation) and the Pearson overdispersion ratio where they apply; one
    sentence per model in ``compare``; notes on a singular fit or on convergence. A
    binomial model's paragraph names the class it describes (``pos_label_``). Where the
    zero inflation has predictors, a count coefficient's ratio is that of the count
    part's mean (the expected count is ``(1 - pi) mu``), and is so worded.

    p-values have two decimals (three below .01, "p < .001" below .001), more where
    rounding would carry them across ``1 - level`` (``p = .048``, never ``p = .05`` for a
    significant effect). Values that would print as zero at ``digits`` decimals (an SD
    per second) get significant digits instead.

    Parameters
    ----------
    est : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    level : float, default=0.95
        Coverage of the intervals; an effect with ``p >= 1 - level`` is described as
        "not significantly associated".
    method : {"wald", "profile", "bootstrap"}, default="wald"
        How the intervals are computed (see :func:`confint`); the p-values are Wald
        p-values whatever the method.
    outcome : str, default="the outcome"
        How the outcome is named: "The odds of {outcome} ..." (binomial) or "The
        expected count of {outcome} ..." (counts), e.g. ``outcome="daily logins"``.
    compare : sequence of fitted estimators, default=()
        Other fits to the same data: for each, a likelihood-ratio test
        (chi-bar-square p-value when the extra parameter is on its boundary) and both
        AICs; a pair that cannot be tested gets a sentence saying why.
    digits : int, default=2
        Decimals of the ratios, SDs and dispersion parameters.
    marginal : bool, default=False
        Add the population-averaged effects (:func:`sklearn_glmm.marginal.marginal_coefs`
        over the training rows, delta-method intervals) after the conditional ones.

    Returns
    -------
    paragraph : str
        The sentences joined by spaces.
    """
    check_is_fitted(est, "coef_")
    whole = isinstance(digits, (int, np.integer)) and not isinstance(digits, (bool, np.bool_))
    if not whole or digits < 0:
        raise ValueError(f"digits must be a whole number of decimals >= 0, got {digits!r}.")
    ci = confint(est, level=level, method=method)
    fam, factors = est.fit_result_.family, est.fit_result_.factors
    kind = fam.sentence_name()
    if factors:
        n_agq = fitted_n_agq(est)
        approx = (
            "the Laplace approximation"
            if n_agq == 1
            else f"adaptive Gauss-Hermite quadrature ({n_agq} nodes)"
        )
        groups = ", ".join(f"{f.name} ({f.n_levels} levels)" for f in factors)
        intro = (
            f"A {kind} mixed model was fitted by maximum likelihood ({approx}) to {est.nobs_} "
            f"observations with random effects for {groups}."
        )
    else:
        intro = (
            f"A {kind} model without random effects was fitted by maximum likelihood to "
            f"{est.nobs_} observations."
        )
    parts = [intro]
    modelled = modelled_outcome(est)
    if modelled is not None:
        parts.append(f"The model describes {modelled}.")
    parts += _effect_sentences(est, ci, outcome, level, digits)
    if marginal:
        parts += _marginal_sentences(est, level, digits)
    parts += _random_sentences(est, ci, digits)
    parts += _dispersion_sentences(est, digits)
    parts += _compare_sentences(est, list(compare), digits)
    if est.is_singular_:
        parts.append(
            "The fit is singular (a variance or correlation is on its boundary); "
            "consider simplifying the random effects."
        )
    if not est.converged_:
        parts.append("Warning: the optimiser reported convergence problems (see fit_record_).")
    return " ".join(parts)
