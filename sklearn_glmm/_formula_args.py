"""R's argument conventions for ``glmer`` and ``glmmTMB``: family strings, ``nAGQ``, the
arguments R has and this library does not, and the mistakes R users make when they first
call the Python functions (arguments swapped, counts fitted with the default family).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# family name as written in R (lower case) -> the estimator's family
_FAMILY_NAMES = {
    "binomial": "binomial",
    "poisson": "poisson",
    "negbin": "negbin",
    "nbinom2": "negbin",
    "nbinom1": "negbin1",
    "betabinomial": "betabinomial",
    # glmmTMB's zero-truncated counts; with ziformula = ~1 they are hurdle models
    "truncated_poisson": "truncated_poisson",
    "truncated_nbinom2": "truncated_nbinom2",
    "truncated_nbinom1": "truncated_nbinom1",
}
# the links each family is available with; the first is R's default
LINKS = {
    "binomial": ("logit", "probit", "cloglog"),
    "poisson": ("log",),
    "negbin": ("log",),
    "negbin1": ("log",),
    "betabinomial": ("logit",),
    "truncated_poisson": ("log",),
    "truncated_nbinom2": ("log",),
    "truncated_nbinom1": ("log",),
}
ESTIMATORS = {
    "binomial": "BinomialGLMM",
    "poisson": "PoissonGLMM",
    "negbin": "NegBinGLMM",
    "negbin1": "NegBinGLMM",
    "betabinomial": "BinomialGLMM",
    "truncated_poisson": "PoissonGLMM",
    "truncated_nbinom2": "NegBinGLMM",
    "truncated_nbinom1": "NegBinGLMM",
}
# the estimator's parameters that select the family within its class
FAMILY_PARAMS = {
    "negbin1": {"family": "nbinom1"},
    "betabinomial": {"family": "betabinomial"},
    "truncated_poisson": {"truncated": True},
    "truncated_nbinom2": {"truncated": True},
    "truncated_nbinom1": {"family": "nbinom1", "truncated": True},
}


def with_zero_part(params: dict) -> dict:
    """The estimator's parameters with glmmTMB's ``ziformula = ~1``: zero inflation,
    or for a truncated family the hurdle model (glmmTMB's reading of the pair)."""
    params = dict(params)
    if params.pop("truncated", False):
        params["hurdle"] = True
    else:
        params["zero_inflation"] = True
    return params


_FAMILY_TEXT = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(?:\((.*)\))?\s*", re.S)


def parse_family(family) -> tuple[str, str]:
    """``(family, link)`` of R's family written as a string.

    ``"binomial"``, ``"binomial()"``, ``"binomial(link = 'logit')"``,
    ``'binomial(link = "logit")'``, ``"binomial('logit')"``, ``"poisson(link='log')"``,
    ``"nbinom2"`` (glmmTMB's NB2, also ``"negbin"``). Names are case-insensitive.
    """
    if not isinstance(family, str):
        raise TypeError(
            "family must be a string as R writes it, such as 'binomial', 'poisson', 'nbinom2' "
            f"or \"binomial(link = 'logit')\"; got {type(family).__name__}."
        )
    match = _FAMILY_TEXT.fullmatch(family)
    key = _FAMILY_NAMES.get(match.group(1).lower()) if match else None
    if key is None:
        raise ValueError(
            "family must be one of 'binomial', 'poisson', 'nbinom2' (also 'negbin'), "
            "'nbinom1', 'betabinomial', 'truncated_poisson', 'truncated_nbinom2' or "
            "'truncated_nbinom1', "
            f"optionally with its link as in R (\"binomial(link = 'logit')\"); got {family!r}."
        )
    link = LINKS[key][0]
    args = (match.group(2) or "").strip()
    if args:
        parts = [p.strip() for p in args.split(",")]
        if len(parts) > 1:
            raise ValueError(f"family {family!r}: only the link argument is read.")
        name, _, value = parts[0].rpartition("=")
        if name.strip() not in ("", "link"):
            raise ValueError(f"family {family!r}: only the link argument is read.")
        link = value.strip().strip("'\"").strip()
    if link not in LINKS[key]:
        available = ", ".join(repr(k) for k in LINKS[key])
        raise ValueError(
            f"The link {link!r} is not available for the {match.group(1)} family; available: "
            f"{available}."
        )
    return key, link


def resolve_n_agq(n_agq, nAGQ) -> int:  # noqa: N803 (R's name)
    """``n_agq`` or R's ``nAGQ`` (not both); 1 (Laplace) when neither is given."""
    if n_agq is not None and nAGQ is not None:
        raise TypeError("Pass either nAGQ (R's name) or n_agq, not both.")
    value = nAGQ if nAGQ is not None else n_agq
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        raise ValueError(
            "nAGQ=0 (lme4's faster estimate that optimises the fixed effects inside the "
            "conditional-mode search) is not available: nAGQ=1 (the Laplace approximation, "
            "the default) is the closest, and usually fast enough."
        )
    return 1 if value is None else value


# R arguments without a counterpart here, and what to do instead
_R_ONLY = {
    "control": (
        "glmerControl() / glmmTMBControl() settings have no counterpart: the optimiser is "
        "fixed. Pass max_iter= and tol= to change its limits (e.g. max_iter=5000)"
    ),
    "optimizer": "the optimiser is fixed; max_iter= and tol= set its limits",
    "start": "starting values cannot be given",
    "verbose": "fits print nothing; fit_record_ tells how the optimisation ran",
    "subset": "select the rows first, e.g. glmer(formula, data[data['age'] > 18])",
    "na_action": (
        "rows with a missing value in a variable of the model are dropped, as R's default "
        "na.omit; drop or impute rows yourself for anything else"
    ),
    "REML": "GLMMs are fitted by maximum likelihood; REML does not apply to them",
    "contrasts": (
        "factors are coded with treatment contrasts (R's default contr.treatment); choose the "
        "reference level with factor(x, levels = c('b', 'a')) in the formula"
    ),
    "devFunOnly": "the deviance function is not exposed",
    "mustart": "starting values cannot be given",
    "etastart": "starting values cannot be given",
    "doFit": "glmer always fits",
    "se": "standard errors are always computed",
}


_GLMER_TAKES = (
    "formula",
    "data",
    "family",
    "nAGQ",
    "weights",
    "offset",
    "ziformula",
    "dispformula",
)


def check_r_arguments(params: dict, estimator_class, function: str, takes=_GLMER_TAKES) -> None:
    """Reject R's arguments that have no counterpart, and unknown ones, with a message
    saying what to do; ``params`` are the keyword arguments left for the estimator,
    ``takes`` the function's own arguments' names (for the message)."""
    for name in params:
        hint = _R_ONLY.get(name) or _R_ONLY.get(name.replace(".", "_"))
        if hint is not None:
            raise TypeError(f"{function}(): R's argument {name}= is not available here: {hint}.")
    derived = {"random_effects", "fit_intercept", "group_columns"} & set(params)
    if derived:
        raise TypeError(
            f"{function}(): {sorted(derived)} come(s) from the formula (its (expr | group) terms "
            "and its intercept); write them in the formula instead."
        )
    param_names = getattr(estimator_class, "_get_param_names", None)
    if param_names is None:
        return
    known = set(param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        # (the estimator's parameters the function takes as its own are listed once)
        own = {"random_effects", "fit_intercept", "group_columns", "n_agq", *takes}
        listed = ", ".join("nAGQ (or n_agq)" if t == "nAGQ" else t for t in takes)
        raise TypeError(
            f"{function}() got unexpected argument(s) {unknown}. It takes {listed} and the "
            "estimator's parameters "
            f"{sorted(known - own)}."
        )


def check_formula_first(formula, data, function: str):
    """``(formula, data)``; a DataFrame passed as the formula (arguments swapped) raises."""
    swapped = isinstance(data, str) and not isinstance(formula, str)
    if isinstance(formula, pd.DataFrame) or swapped:
        raise TypeError(
            f"{function}(formula, data, ...) takes the formula first and the data second, as R's "
            f"{function}(formula, data): got {type(formula).__name__} then "
            f"{type(data).__name__}. Call {function}('y ~ x + (1 | id)', df) or name them: "
            f"{function}(formula='y ~ x + (1 | id)', data=df)."
        )
    if data is None:
        raise TypeError(f"{function}() needs data=, the DataFrame holding the formula's variables.")
    return formula, data


def check_not_counts(y: pd.Series) -> None:
    """With no family given (binomial by default), an outcome of counts raises."""
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return
    values = y.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if not len(values) or values.min() < 0 or not np.all(values == np.round(values)):
        return
    top = values.max()
    if top > 1:
        raise ValueError(
            f"The outcome {y.name!r} holds counts (whole numbers up to {top:g}) and no family "
            "was given: the default family is binomial; pass family='poisson' (or "
            "family='nbinom2' for overdispersed counts). For successes out of trials write "
            "cbind(successes, failures) ~ ...; family='binomial' fits these values as classes."
        )


def _proportions(y: pd.Series):
    """``y`` as floats when it holds proportions (numbers in [0, 1], not all 0 or 1)."""
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return None
    p = y.to_numpy(dtype=float)
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1 or np.all(np.isin(p, (0, 1))):
        return None
    return p


def check_not_proportions(y: pd.Series) -> None:
    """A binomial outcome of proportions without weights raises: R reads them as
    proportions of one trial each (with a warning of non-integer successes), the
    estimator would read two distinct values as two classes and three as an error."""
    p = _proportions(y)
    if p is None:
        return
    raise ValueError(
        f"The binomial outcome {y.name!r} holds proportions (values in [0, 1] other than "
        f"0 and 1, e.g. {np.unique(p[(p > 0) & (p < 1)])[0]:g}) and no weights were given. "
        "Pass the numbers of trials as weights= (R's binomial convention: the weights of "
        "proportions are the trials) or write cbind(successes, failures) ~ ...; for two "
        "classes coded as numbers, recode them as 0/1 or strings."
    )


def proportions_with_trials(y: pd.Series, weights: np.ndarray):
    """R's binomial ``weights``: with an outcome of proportions they are the trials.

    Returns ``(successes, trials)`` when ``y`` holds proportions (numbers in [0, 1], not
    all 0 or 1); None otherwise (the weights are then case weights).
    """
    p = _proportions(y)
    if p is None:
        return None
    successes = p * weights
    whole = np.round(successes)
    if not np.allclose(successes, whole, rtol=0, atol=1e-6):
        raise ValueError(
            f"The outcome {y.name!r} holds proportions and weights are given, so the weights are "
            "the trials (R's binomial convention), but proportion x weights is not a whole number "
            "of successes in every row; pass the numbers of trials as weights."
        )
    return pd.Series(whole, index=y.index, name=y.name), pd.Series(
        weights, index=y.index, name="trials"
    )
