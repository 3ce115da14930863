"""R-style formulas (lme4 / glmmTMB syntax) on top of the estimators.

``glmer("y ~ time + treatment + (1 | id)", df, family="binomial")`` reads the
formula the way lme4 does and fits a :class:`~sklearn_glmm.BinomialGLMM`.
The fixed-effect part is handed to `formulaic <https://matthewwardrop.github.io/formulaic/>`_
(installed with ``pip install sklearn_glmm[formula]``); this module splits off
what formulaic does not know -- the bar terms ``(expr | group)``, ``offset()``
and ``cbind()`` -- and renames formulaic's columns the way R names them
(``trt[T.treat]`` becomes ``trttreat``), so coefficients carry R's names.

Parsing, in order:

1. Split the formula at ``~`` and the right-hand side at top-level ``+``/``-``
   (the text handling is in ``_formula_text``).
2. Sort the pieces into bar terms, ``offset(...)`` terms and fixed terms.
3. Drop rows with a missing value in any variable the formula uses (R's
   ``na.omit``), remembering their index labels.
4. Build the fixed model matrix (without its intercept column), the response,
   trials, offset, grouping factors and the ``random_effects`` terms.

Formulas see the data's columns, numpy as ``np``, formulaic's transforms
(``exp``, ``C``, ``center``, ``scale``, ...), and as in R ``factor(x, levels =
c(...))``, ``log(x, base)``, ``poly(x, degree, raw = TRUE)``, ``sqrt``, ``TRUE`` and
``FALSE``. R's operators mean what they mean in R: ``^`` inside a call
(``I(time^2)``) is a power, outside one (``(a + b)^2``) the crossing operator;
``%in%`` and ``.``, which formulaic reads differently, raise.

A binomial outcome's level order decides the class modelled, as in R: every level
but the first of a pandas Categorical is a success; strings are sorted as R sorts them
(:mod:`._collation`: ``"no"`` before ``"Yes"``; the levels of a text predictor too) and
``True`` is the success of a logical outcome.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _formula_model
from ._base import FORMULA_INTERCEPT
from ._collation import text_levels
from ._formula_args import (
    ESTIMATORS,
    FAMILY_PARAMS,
    LINKS,
    check_formula_first,
    check_not_counts,
    check_not_proportions,
    check_r_arguments,
    parse_family,
    proportions_with_trials,
    resolve_n_agq,
    with_zero_part,
)
from ._formula_model import FormulaState
from ._formula_text import (
    _BarTerm,
    _check_r_operators,
    _group_parts,
    _Pieces,
    _python_powers,
    _quote_dotted_names,
    _r_contrast_names,
    _r_logical_precedence,
    _response_parts,
    _split_formula,
    _warn_crossed_variable,
    check_brackets,
    factor_label,
)
from ._frames import as_frame, as_pandas, check_rows_left
from ._validation import check_rows_aligned, labels_in_X_meant
from ._warn import process_filters, quiet, user_stacklevel, warn
from .exceptions import NoRandomEffectsWarning

__all__ = [
    "FormulaTransformer",
    "GLMMDesign",
    "clmm",
    "design_matrix",
    "glmer",
    "glmmTMB",
    "parse_glmm_formula",
]

# formulaic writes a level as name[T.level] (treatment contrast) or name[level];
# R pastes the level onto the name.
_LEVEL = re.compile(r"\[(?:T\.)?([^\[\]]*)\]")


@dataclass
class GLMMDesign:
    """Everything an estimator's ``fit`` needs, built from a formula.

    Attributes
    ----------
    X : pandas.DataFrame of shape (n_samples, n_features)
        Fixed-effect columns without the intercept, named as R names them
        (``trttreat``, ``sexmale``, ``trttreat:sexmale``).
    y : pandas.Series of shape (n_samples,)
        Response; the successes for a ``cbind(successes, failures)`` response.
    groups : pandas.DataFrame of shape (n_samples, n_factors)
        One column per grouping factor, named as lme4 names them: ``a:b`` for
        ``(1 | a:b)``; ``a`` and ``b:a`` for ``(1 | a/b)``. Interactions have
        labels such as ``"1:2"``.
    random_effects : dict of str to str
        Grouping factor name -> term in this library's syntax (``"1"``,
        ``"1 + time"``, ``"0 + time"``, ``"diag(1 + time)"``); slopes name
        columns of ``X``.
    fit_intercept : bool
        False for ``~ 0 + ...`` or ``~ ... - 1``.
    trials : pandas.Series of shape (n_samples,) or None
        ``successes + failures`` for a ``cbind()`` response, else None.
    offset : pandas.Series of shape (n_samples,) or None
        Sum of the ``offset(...)`` terms, or None.
    dropped_rows : pandas.Index
        Index labels of the rows dropped for missing values.
    model_spec : formulaic.ModelSpec
        The fixed part's model spec; :func:`design_matrix` applies it to new data.
    formula : str
        The formula parsed.
    random_only_columns : tuple of str
        Columns random-effect terms read that are not in the fixed part: time
        variables of structured terms (``y ~ x + ar1(0 + factor(day) | id)``) and
        columns of a term's own model matrix (lme4's ``y ~ x + f + (0 + f | id)``:
        the level of ``f`` the fixed part's contrasts leave out; ``(0 + z | id)``
        without ``z`` in the fixed part). Appended to ``X`` after the fixed-effect
        columns, for the estimator's ``random_only_columns``.
    random_only_specs : tuple of (formulaic.ModelSpec, tuple of str)
        For the columns of a term's own model matrix: its model spec and the columns
        taken from it (:func:`random_only_design` rebuilds them on new data).
    """

    X: pd.DataFrame
    y: pd.Series
    groups: pd.DataFrame
    random_effects: dict[str, str]
    fit_intercept: bool = True
    trials: pd.Series | None = None
    offset: pd.Series | None = None
    dropped_rows: pd.Index = field(default_factory=lambda: pd.Index([]))
    model_spec: Any = None
    formula: str = ""
    random_only_columns: tuple[str, ...] = ()
    random_only_specs: tuple = ()


# ---------------------------------------------------------------------------
# formulaic access
# ---------------------------------------------------------------------------


def _formulaic():
    """Import formulaic, or tell the user how to install it."""
    try:
        import formulaic
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Formulas need the optional dependency 'formulaic'; install it with "
            "`pip install sklearn_glmm[formula]`."
        ) from exc
    from . import _formula_coding  # noqa: F401  (registers R's coding for the specs)

    return formulaic


def _log(x, base=None):
    """R's ``log(x, base)``: the natural logarithm, or to ``base``."""
    return np.log(x) if base is None else np.log(x) / np.log(base)


def _parallel(reduce):
    """R's ``pmin``/``pmax``: elementwise over any number of arguments."""

    def apply(*args):
        if not args:
            raise ValueError("pmin()/pmax() need at least one argument")
        out = np.asarray(args[0], dtype=float)
        for a in args[1:]:
            out = reduce(out, np.asarray(a, dtype=float))
        return out

    return apply


def _ifelse(test, yes, no):
    """R's ``ifelse(test, yes, no)``, elementwise: numbers give a numeric column,
    ``TRUE``/``FALSE`` a logical one (a FALSE/TRUE factor in the design), anything else
    text (numbers among them as R writes them), a factor with R's levels."""
    index = test.index if isinstance(test, pd.Series) else None
    picked = np.where(
        np.asarray(test, dtype=bool), np.asarray(yes, dtype=object), np.asarray(no, dtype=object)
    )
    values = pd.Series(picked, index=index, dtype=object)
    if all(isinstance(v, (bool, np.bool_)) for v in picked):
        return values.astype(bool)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in picked):
        return values.astype(float)
    values = values.map(_r_text)
    return values.astype(pd.CategoricalDtype(text_levels(values)))


def _distribution(function, inverse: bool):
    """R's ``pnorm(q, mean, sd)`` / ``qnorm`` / ``plogis(q, location, scale)`` /
    ``qlogis`` from the standard distribution's ``function``."""

    def apply(value, centre=0.0, spread=1.0, **named):
        centre = named.pop("mean", named.pop("location", centre))
        spread = named.pop("sd", named.pop("scale", spread))
        if named:
            raise TypeError(f"unexpected argument(s) {sorted(named)}")
        value = np.asarray(value, dtype=float)
        if inverse:
            return centre + spread * function(value)
        return function((value - centre) / spread)

    return apply


def _round(x, digits=0):
    """R's ``round(x, digits)``: ``digits = 0`` halves to even (IEC 60559); otherwise,
    as R (since 4.0.0), the nearer of the two decimals with ``digits`` digits around
    ``x`` (``round(0.15, 1)`` is 0.1: the double 0.15 is below 0.15), a tie going to the
    even last digit."""
    x = np.asarray(x, dtype=float)
    d = int(np.floor(float(digits) + 0.5))
    if d == 0:
        return np.round(x)
    sign = np.where(x < 0, -1.0, 1.0)
    a = np.abs(x)
    scale = 10.0**d
    scaled = a * scale
    low = np.floor(scaled)
    down, up = low / scale, np.ceil(scaled) / scale
    below, above = a - down, up - a
    out = np.where((above < below) | ((above == below) & (np.fmod(low, 2.0) == 1.0)), up, down)
    with np.errstate(divide="ignore"):
        # (R leaves a number with more digits than a double holds as it is)
        as_is = ~np.isfinite(a) | (a == 0.0) | (np.log10(a) + d > 15)
    return sign * np.where(as_is, a, out)


# R's elementwise functions beside formulaic's (log, log2, log10, exp, scale, ...)
_R_MATH = {
    "sqrt": np.sqrt,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "abs": np.abs,
    "pmin": _parallel(np.minimum),
    "pmax": _parallel(np.maximum),
    "floor": np.floor,
    "ceiling": np.ceil,
    "trunc": np.trunc,
    "round": _round,
    "ifelse": _ifelse,
    "sign": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "plogis": _distribution(lambda q: _special().expit(q), inverse=False),
    "qlogis": _distribution(lambda p: _special().logit(p), inverse=True),
    "pnorm": _distribution(lambda q: _special().ndtr(q), inverse=False),
    "qnorm": _distribution(lambda p: _special().ndtri(p), inverse=True),
    "pi": np.pi,
}


def _special():
    import scipy.special

    return scipy.special


class _OutsideLevels(ValueError):
    """A value of ``factor(x, levels = c(...))`` outside its levels."""


@contextmanager
def _our_errors():
    """formulaic wraps the errors of the transforms it calls; ours are raised as they are."""
    from formulaic.errors import FormulaicError

    try:
        yield
    except FormulaicError as exc:
        cause = exc
        while cause is not None and not isinstance(cause, _OutsideLevels):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


def _factor(x, levels=None, contrasts=None):
    """R's ``factor(x)`` and ``factor(x, levels = c(...))``: treatment-coded levels (or
    ``contrasts``).

    A value outside ``levels`` raises: R makes it NA and drops its row, while the
    coding would otherwise give it the reference level's all-zero row.
    """
    from formulaic.transforms import C

    if levels is None:
        return C(x, contrasts)
    levels = list(levels)
    values = pd.Series(np.asarray(x, dtype=object))
    outside = ~(values.isin(levels) | values.isna())
    if outside.any():
        seen = sorted({str(v) for v in values[outside]})
        raise _OutsideLevels(
            f"factor(..., levels = c(...)): {int(outside.sum())} row(s) have values "
            f"{seen[:10]} that are not among the levels {levels}. R turns them into "
            "missing values (and a fit drops their rows); drop those rows from the data "
            "(or list every level) for the same model."
        )
    return C(x, contrasts, levels=levels)


def _r_text(value) -> str:
    """A level's text as R writes it: ``TRUE``/``FALSE``, whole numbers without ``.0``,
    other numbers to 15 significant digits (``0.1 * 3`` is ``0.3``, as R's
    ``as.character``)."""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer():
            return str(int(value))
        if np.isfinite(value):
            return f"{float(value):.15g}"
    return str(value)


def _r_factor():
    """R's ``factor(x)`` and ``factor(x, levels = c(...))`` (:func:`_factor`), the listed
    levels that no row of the fitting data holds dropped, as R's model frame drops
    unused levels (an unused first level would otherwise be the reference, the others'
    coefficients contrasts against it, and an unused one an all-zero column); the levels
    kept are the fit's, also for new data. ``factor()`` of an ordered factor is ordered,
    as in R: polynomial contrasts (whatever kind of column new data give)."""
    from formulaic.transforms import stateful_transform
    from formulaic.transforms.contrasts import PolyContrasts

    @stateful_transform
    def r_factor(x, levels=None, _state=None):
        if "ordered" not in _state:  # (the fit)
            dtype = getattr(x, "dtype", None)
            _state["ordered"] = bool(getattr(dtype, "ordered", False))
            _state["r_text"] = True  # (models of earlier versions keep their values)
        contrasts = PolyContrasts() if _state["ordered"] else None
        if levels is None:
            if _state.get("r_text"):
                if "r_levels" not in _state:  # (the fit: the levels in the values' order)
                    _state["r_levels"] = _r_number_levels(x)
                if _state["r_levels"] is not None:
                    x = _as_r_levels(x, _state["r_levels"])
            return _factor(x, contrasts=contrasts)
        # values matched to the listed levels by their text, as R's factor() matches (7 is
        # the level "7", TRUE the level "TRUE" of a logical column), and coded as the
        # listed levels (their names, whatever kind of column new data give)
        listed = {}
        for v in levels:
            listed.setdefault(_r_text(v), v)
        values = pd.Series(np.asarray(x, dtype=object))
        texts = values.map(_r_text, na_action="ignore")
        as_listed = texts.map(listed)
        values = values.where(as_listed.isna(), as_listed)  # (others raise in _factor)
        if isinstance(x, pd.Series):
            values.index = x.index
        kept = _state.get("levels")
        if kept is None:
            present = set(texts.dropna())
            kept = _state["levels"] = [v for t, v in listed.items() if t in present]
            if not kept:
                held = values.dropna()
                shown = sorted({str(v) for v in held})[:10]
                kind = type(held.iloc[0]).__name__ if len(held) else "none"
                raise _OutsideLevels(
                    f"factor(..., levels = c(...)): no row holds any of the levels {levels} "
                    f"(the values are {shown}, of type {kind})."
                )
        else:
            known = {_r_text(v) for v in kept}
            unused = texts.isin(list(listed)) & ~texts.isin(known)
            if unused.any():
                seen = sorted({str(v) for v in values[unused.to_numpy()]})
                raise _OutsideLevels(
                    f"factor(..., levels = c(...)): {int(unused.sum())} row(s) have the "
                    f"level(s) {seen[:10]}, listed in levels but held by no row of the "
                    f"fitting data, whose unused levels the model dropped (as R's model "
                    f"frame does); the model knows {list(kept)}. R's predict raises too "
                    '("factor has new levels").'
                )
        return _factor(values, levels=kept, contrasts=contrasts)

    return r_factor


def _as_series(x) -> pd.Series:
    """A transform's input (a Series, an array, formulaic's wrapped values) as a Series."""
    raw = getattr(x, "__wrapped__", x)
    return raw if isinstance(raw, pd.Series) else pd.Series(np.asarray(raw, dtype=object))


def _r_number_levels(x) -> list | None:
    """The level names of ``factor(x)`` of the fitting values where R names them
    otherwise than their Python text, in the values' order (floats: ``2`` for 2.0, 2
    before 10; logicals: ``FALSE``, ``TRUE``), else None (text, categories and integers
    have R's names already)."""
    values = _as_series(x)
    if isinstance(values.dtype, pd.CategoricalDtype):
        return None
    kind = values.dtype.kind
    if kind in "iu":  # (integers and text: R's names already)
        return None
    held = pd.unique(values.dropna())
    kinds = {type(v) for v in held}
    if kinds and all(issubclass(k, (float, np.floating, bool, np.bool_)) for k in kinds):
        return list(dict.fromkeys(_r_text(v) for v in sorted(held)))
    return None


def _as_r_levels(x, levels: list):
    """Numbers and logicals as the factor R makes of them: each value by its text as R
    writes it (``factor(k)2`` for 2.0, ``factor(k > 2)TRUE``), the fit's ``levels`` in
    their order first (new data, 2 or 2.0 of any kind, find their level by that text;
    other texts after them, new levels the design refuses)."""
    values = _as_series(x)
    # each distinct value's text made once
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    names = np.array([_r_text(v) for v in uniques], dtype=object)
    texts = np.where(codes >= 0, names[np.maximum(codes, 0)] if len(names) else None, None)
    known = set(levels)
    others = [t for t in dict.fromkeys(names) if t not in known]
    out = pd.Categorical(texts, categories=list(levels) + others)
    # (a Series for formulaic's checks of missing values, which read no bare Categorical)
    return pd.Series(out, index=values.index)


def _poly():
    """R's ``poly(x, degree, raw)``: formulaic's orthonormal basis (R's numbers, also on new
    data), with raw powers' columns numbered from 1 as R numbers them."""
    from formulaic.materializers import FactorValues
    from formulaic.transforms import poly, stateful_transform

    @stateful_transform
    def r_poly(x, degree=1, raw=False, _state=None):
        if not raw:
            return poly(x, degree, _state=_state)
        x = np.asarray(x, dtype=float)
        powers = np.column_stack([x**k for k in range(1, degree + 1)])
        return FactorValues(powers, column_names=tuple(str(k) for k in range(1, degree + 1)))

    return r_poly


def _bs():
    """R's ``bs(x, df, knots, degree, intercept)`` (formulaic's B-spline basis) extended
    beyond the fitting data's range on new data, as R's ``predict`` does (formulaic
    raises there by default)."""
    from formulaic.transforms import TRANSFORMS, stateful_transform

    basis = TRANSFORMS["bs"]

    @stateful_transform
    def r_bs(x, df=None, knots=None, degree=3, intercept=False, _state=None, **kwargs):
        kwargs.setdefault("extrapolation", "extend")
        kwargs.setdefault("include_intercept", intercept)
        return basis(x, df=df, knots=knots, degree=degree, _state=_state, **kwargs)

    return r_bs


def _ns():
    """R's ``ns(x, df, knots, intercept)`` (``splines::ns``): R's natural cubic spline
    basis, its knots learnt from the fitting data (:mod:`._formula_splines`)."""
    from formulaic.materializers import FactorValues
    from formulaic.transforms import stateful_transform

    from ._formula_splines import natural_spline_basis, natural_spline_knots

    @stateful_transform
    def r_ns(x, df=None, knots=None, intercept=False, _state=None):
        if "interior" not in _state:
            interior, boundary = natural_spline_knots(x, df, knots, intercept)
            _state["interior"], _state["boundary"] = interior.tolist(), boundary.tolist()
        basis = natural_spline_basis(
            x, np.asarray(_state["interior"]), np.asarray(_state["boundary"]), intercept
        )
        names = tuple(str(k) for k in range(1, basis.shape[1] + 1))
        return FactorValues(basis, column_names=names)

    return r_ns


def _relevel():
    """R's ``relevel(f, ref = "b")``: the factor's levels (a categorical's in its order,
    otherwise sorted) with ``ref`` first, treatment-coded against it; the levels are
    those of the fitting data, kept for new data. A number ``ref`` is a position, as R
    reads it (``ref = 2``: the second level)."""
    from formulaic.transforms import stateful_transform

    @stateful_transform
    def r_relevel(x, ref=None, _state=None):
        levels = _state.get("levels")
        if levels is None:
            meta = getattr(x, "__formulaic_metadata__", None)
            values = pd.Series(np.asarray(x, dtype=object))
            if meta is not None and getattr(meta, "levels", None) is not None:
                found = list(meta.levels)
            elif isinstance(getattr(x, "dtype", None), pd.CategoricalDtype):
                found = list(x.cat.categories)
            else:
                found = sorted(values.dropna().unique(), key=_sort_key)
            if isinstance(ref, (int, float, np.number)) and not isinstance(ref, bool):
                # R reads a number as the level's position (relevel(f, ref = 2): the
                # second level), not as a level's value
                if not (float(ref).is_integer() and 1 <= ref <= len(found)):
                    raise _OutsideLevels(
                        f"relevel(..., ref = {ref!r}): a number is a level's position, as in "
                        f"R, and the factor has {len(found)} levels "
                        f"({[str(v) for v in found][:20]}). Give a position from 1 to "
                        f'{len(found)}, or the level\'s text (ref = "{found[0]}").'
                    )
                match = [found[int(ref) - 1]]
                same = [v for v in found if _r_text(v) == _r_text(ref)]
                if same and same[0] != match[0]:
                    warn(
                        f"relevel(..., ref = {ref!r}) reads a number as a position, as R "
                        f"does: the reference level is the one at position {int(ref)}, "
                        f"{match[0]!r}, not the level {same[0]!r} (levels "
                        f"{[str(v) for v in found][:10]}). "
                        f'For that level write ref = "{_r_text(same[0])}".',
                        UserWarning,
                        stacklevel=user_stacklevel(),
                    )
            else:
                match = [v for v in found if v == ref or str(v) == str(ref)]
            if ref is None or not match:
                raise _OutsideLevels(
                    f"relevel(..., ref = {ref!r}): {ref!r} is not a level of the factor "
                    f"(its levels: {[str(v) for v in found][:20]}). Give one of them as ref."
                )
            levels = _state["levels"] = [match[0]] + [v for v in found if v is not match[0]]
        return _factor(x, levels=levels)

    return r_relevel


def _sort_key(v):
    """Sorted as formulaic sorts a factor's levels: numbers by value, text as text."""
    return (0, v, "") if isinstance(v, (int, float, np.number)) else (1, 0, str(v))


def _c(*values):
    """R's ``c(...)``, for arguments such as ``levels = c("b", "a")``."""
    return list(values)


def _context(legacy: bool = False) -> dict[str, Any]:
    """Names formulas may use besides the data columns and formulaic's transforms
    (``legacy``: for a model spec of an earlier version, :data:`LEGACY_CODING`, whose
    ``factor(levels=)`` kept every listed level and read no ordered factor)."""
    from ._formula_contrasts import RContrasts

    return {
        "np": np,
        "contr": RContrasts,
        "factor": _factor if legacy else _r_factor(),
        "c": _c,
        "poly": _poly(),
        "relevel": _relevel(),
        "bs": _bs(),
        "ns": _ns(),
        "log": _log,
        **_R_MATH,
        "TRUE": True,
        "FALSE": False,
    }


def _formulaic_text(rhs: str, warn: bool = True) -> str:
    """The right-hand side as formulaic should read it to mean what R means.

    ``^`` inside calls becomes ``**`` (``I(time^2)`` is a power; Python's ``^`` is XOR);
    ``C(f, sum)`` is ``C(f, contr.sum)``; R's ``%in%`` and ``.`` raise. ``x^2`` outside
    ``I()`` warns: in R (and here) it is ``x``.
    """
    _check_r_operators(rhs)
    if warn:
        _warn_crossed_variable(rhs)
    return _r_logical_precedence(_python_powers(_r_contrast_names(_quote_dotted_names(rhs))))


def _model_matrix(
    rhs: str, data: pd.DataFrame, states: dict | None = None, na_action: str = "raise"
):
    """formulaic's model matrix of ``~ rhs``; missing values raise (rows were dropped
    before; ``na_action="ignore"``: a value a transform makes missing, ``log(-1)`` on new
    data, is kept, for the caller to name).

    ``states``: transforms' states learnt beforehand (by expression), used as they are;
    the other transforms learn theirs from ``data``."""
    formulaic = _formulaic()
    data = _unshadowed(rhs, data)
    from ._formula_coding import RCodingMaterializer

    spec = formulaic.ModelSpec(
        formula=_formulaic_text(rhs),
        materializer=RCodingMaterializer,
        transform_state=copy.deepcopy(states) if states else {},
    )
    with _our_errors():
        return formulaic.model_matrix(spec, data, context=_context(), na_action=na_action)


# transforms R evaluates on every row of the data (``model.frame``, before ``na.omit``
# drops the rows missing another variable), so their knots, centre, scale or polynomial
# coefficients come from every row where their own variable is present
_LEARNT_ON_ALL_ROWS = ("ns(", "bs(", "poly(", "scale(")


def _all_rows_states(rhs: str, data: pd.DataFrame) -> dict:
    """The states of the ``ns``/``bs``/``poly``/``scale`` calls of ``~ rhs``, each learnt
    from the rows of ``data`` where the call's own variables are present, as R learns
    them (not only from the rows the model keeps)."""
    formulaic = _formulaic()
    data = _unshadowed(rhs, data)
    states: dict = {}
    for term in formulaic.Formula(_formulaic_text(rhs, warn=False)):
        for factor in term.factors:
            expr = str(factor.expr)
            if not expr.startswith(_LEARNT_ON_ALL_ROWS) or expr in states:
                continue
            names = _expression_names(expr)
            if expr in names:  # (not parsed: every column's rows)
                names = set(data.columns)
            own = [v for v in data.columns if v in names]
            rows = data[own].notna().all(axis=1).to_numpy()
            with _our_errors():
                matrix = formulaic.model_matrix(
                    f"0 + {expr}", data.loc[rows], context=_context(), na_action="raise"
                )
            states.update(matrix.model_spec.transform_state)
    return states


def _r_name(column: str) -> str:
    """R's name for a formulaic column: ``trt[T.treat]:sex[T.male]`` -> ``trttreat:sexmale``,
    ``I(time ** 2)`` -> ``I(time^2)``, ``log(`x.1`)`` -> ``log(x.1)`` (R backquotes only
    names that are not syntactic)."""
    name = _LEVEL.sub(r"\1", str(column)).replace(" ** ", "^")
    return _SYNTACTIC_QUOTED.sub(r"\1", name) if "`" in name else name


# a backquoted name R writes without quotes (letters, digits, dots and underscores, not
# starting with a digit, an underscore or a dot and a digit)
_SYNTACTIC_QUOTED = re.compile(r"`((?:[A-Za-z]|\.(?![0-9]))[\w.]*)`")


def _r_frame(matrix) -> tuple[pd.DataFrame, bool]:
    """Model matrix -> (R-named DataFrame without the intercept, had an intercept)."""
    frame = pd.DataFrame(matrix)
    has_intercept = "Intercept" in frame.columns
    frame = frame.drop(columns="Intercept") if has_intercept else frame
    from ._formula_coding import LEGACY_CODING, PYTHON_NAMES
    from ._formula_names import r_column_name

    # (the specs of earlier versions keep the names their models were fitted with)
    earlier = getattr(matrix.model_spec, "materializer", None) in (LEGACY_CODING, PYTHON_NAMES)
    names = [(_r_name if earlier else r_column_name)(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"Column names collide after renaming to R's style: {names}.")
    frame.columns = names
    return frame.astype(float), has_intercept


def _evaluate(expr: str, data: pd.DataFrame, na_action: str = "raise") -> pd.Series:
    """One variable: a data column as is, or an expression evaluated by formulaic
    (``na_action``: see :func:`_model_matrix`)."""
    expr = expr.strip()
    if expr in data.columns:
        return data[expr].rename(expr)
    # a logical expression, I(y > 5), is 0/1 here (an outcome, trials, an offset: R's
    # arithmetic on TRUE and FALSE), not the FALSE/TRUE factor a predictor's is
    inner = f"1 * ({expr})" if _is_logical_expression(expr) else expr
    matrix = _model_matrix(f"0 + I({inner})", data, na_action=na_action)
    if matrix.shape[1] != 1:
        raise ValueError(
            f"Expression {expr!r} must give one numeric column, got {matrix.shape[1]}."
        )
    return pd.Series(np.asarray(matrix)[:, 0], index=data.index, name=expr)


def _is_logical_expression(expr: str) -> bool:
    """Whether ``expr`` (``y > 5``, ``I(y > 5)``, ``a == 1 & b``) is a comparison or a
    logical combination of them."""
    try:
        node = ast.parse(re.sub(r"`[^`]*`", _QUOTED, expr), mode="eval").body
    except SyntaxError:
        return False
    while isinstance(node, ast.Call) and getattr(node.func, "id", None) == "I" and node.args:
        node = node.args[0]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
        return True
    return isinstance(node, (ast.Compare, ast.BoolOp)) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert))
    )


# ---------------------------------------------------------------------------
# building the design
# ---------------------------------------------------------------------------


def _required(texts: list[str]) -> set[str]:
    """Names the formula texts use (callers intersect them with the data's columns).

    Every factor's expression is read for the names it uses: formulaic's
    ``required_variables`` leaves out the arguments of its stateful transforms (``time``
    in ``poly(time, 2)``) and reads a name with a dot, ``x.1`` (backquoted or not), as
    ``x``, whose missing values would drop rows the model does not read.
    """
    formulaic = _formulaic()
    names = set()
    for text in texts:
        for term in formulaic.Formula(_formulaic_text(text, warn=False)):
            for factor in term.factors:
                names |= _expression_names(factor.expr)
    return names


def _expression_names(expr: str) -> set[str]:
    """Names an expression reads as values: ``poly(time, 2)`` -> {"time"} (R's
    ``all.vars``: a function's name is not a variable, and a data column of that name is
    not read); a name in backquotes (a column name with spaces) is one name."""
    quoted = set(re.findall(r"`([^`]*)`", expr))
    try:
        tree = ast.parse(re.sub(r"`[^`]*`", _QUOTED, expr), mode="eval")
    except SyntaxError:
        return quoted | {expr}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return quoted | (names - _called_only(tree) - {_QUOTED})


def _called_only(tree) -> set[str]:
    """Names an expression's tree uses only as the function of a call."""
    funcs = _call_functions(tree)
    values = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs}
    return set(funcs.values()) - values


def _call_functions(tree) -> dict[int, str]:
    """The name nodes of a tree that are the function of a call: ``{id(node): name}``."""
    return {
        id(node.func): node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }


def _unshadowed(rhs: str, data):
    """``data`` without its columns named as a function the formula calls, which the
    formula does not read (R looks a called name up among functions only: a column
    ``c`` does not hide ``c()``; formulaic would read the column). Raises where such a
    column is also read as a variable: formulaic cannot tell the two apart."""
    shadowed, values = _shadowing(rhs, data)
    both = [c for c in shadowed if str(c) in values]
    if both:
        name = both[0]
        raise ValueError(
            f"the data have a column named {name!r}, which the formula reads as a variable "
            f"and also calls as the function {name}(): here a name is one or the other. "
            f"Rename the column, e.g. data.rename(columns={{{name!r}: {name + '_'!r}}}), "
            "and write the new name in the formula where it is read as a variable."
        )
    return data.drop(columns=shadowed) if shadowed else data


def _shadowing(rhs: str, data, read: bool = True) -> tuple[list, set]:
    """The columns of ``data`` named as a function the formula ``rhs`` calls, and the
    names the formula reads as values (``read``: ``rhs`` is R's text, not formulaic's)."""
    if not hasattr(data, "columns"):
        return [], set()
    text = re.sub(r"`[^`]*`", _QUOTED, _formulaic_text(rhs, warn=False) if read else rhs)
    try:  # (the formula's operators read as sums: the calls are what is looked at)
        tree = ast.parse(re.sub(r"[~:|]", "+", text), mode="eval")
    except SyntaxError:
        return [], set()
    funcs = _call_functions(tree)
    called = set(funcs.values())
    values = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs}
    return [c for c in data.columns if str(c) in called], values


_QUOTED = "_backquoted_name_"  # (stands for a backquoted name while the rest is parsed)


def _variables(pieces: _Pieces) -> set[str]:
    """Names the formula uses (callers intersect them with the data's columns), those
    of removed terms included: R's model frame reads every variable the formula writes,
    and ``y ~ w + x - x`` drops the rows where ``x`` is missing."""
    formulas = [pieces.fixed, *(bar.lhs for bar in pieces.bars)]
    # Offsets and responses are single expressions: "a - b" is a difference, not a removal.
    expressions = [*pieces.offsets, *_response_parts(pieces.lhs)]
    names = _required(formulas + [f"I({expr})" for expr in expressions])
    removals = [_removals_added(text) for text in formulas if "-" in text]
    if removals:
        names |= _required(removals)
    return names | _group_variables(pieces)


def _removals_added(text: str) -> str:
    """``text`` with every minus sign outside backquotes and quotes a plus: the same
    names, each removed term's among them (``w + x - x`` -> ``w + x + x``)."""
    return re.sub(
        r"`[^`]*`|\"[^\"]*\"|'[^']*'|-",
        lambda m: "+" if m.group(0) == "-" else m.group(0),
        text,
    )


def _group_variables(pieces: _Pieces) -> set[str]:
    return {c for bar in pieces.bars for factor in _group_parts(bar.group) for c in factor}


def _r_factors(data: pd.DataFrame, leave=frozenset()) -> pd.DataFrame:
    """``data`` (a copy where anything changes) as R's model frame and model matrix read
    it: the categories no row has dropped from categorical columns (an unused first
    category would otherwise be the reference level and the others' coefficients other
    contrasts than R's, an unused one an all-zero column), and logical columns other
    than those in ``leave`` (the outcome's, the groups') made factors
    (:func:`_r_logicals`). Applied to the rows a fit uses, and to new data."""
    cats = [c for c in data.columns if isinstance(data[c].dtype, pd.CategoricalDtype)]
    if cats:
        data = data.assign(**{c: data[c].cat.remove_unused_categories() for c in cats})
    # pandas' string dtypes (convert_dtypes(), pyarrow-backed frames) as the text they
    # hold: formula parsing would read them as numbers ("1", "2", "3" as one numeric
    # covariate where R fits a factor)
    texts = [c for c in data.columns if _is_text_dtype(data[c].dtype)]
    if texts:
        data = data.assign(
            **{c: data[c].astype(object).where(data[c].notna(), np.nan) for c in texts}
        )
    return _r_logicals(_r_text_levels(_r_dates(data, leave), leave), leave)


def _r_dates(data: pd.DataFrame, leave=frozenset()) -> pd.DataFrame:
    """Date and date-time columns (but those in ``leave``) as factors of the dates' text
    as R writes them (``factor(day)2024-01-02``), in time order; a formula reads them only
    as factors (:func:`_check_no_time_columns`)."""
    from ._labels import label_key

    found = {}
    for c in data.columns:
        if c in leave or not pd.api.types.is_datetime64_any_dtype(data[c].dtype):
            continue
        stamps = pd.Series(pd.unique(data[c].dropna())).sort_values()
        texts = [label_key(v) for v in stamps]
        as_text = data[c].map(lambda v: None if pd.isna(v) else label_key(v))
        found[c] = pd.Categorical(as_text, categories=list(dict.fromkeys(texts)))
    return data.assign(**found) if found else data


def _r_text_levels(data: pd.DataFrame, leave=frozenset()) -> pd.DataFrame:
    """Text columns (but those in ``leave``) as factors with R's level order
    (:mod:`._collation`: ``"apple"`` before ``"Banana"``, where Python's order, which the
    formula parser would use, puts upper case first and so another reference level)."""
    found = {}
    for c in data.columns:
        levels = None if c in leave else text_levels(data[c])
        if levels is not None and levels != sorted(levels):
            found[c] = pd.Categorical(data[c], categories=levels)
    return data.assign(**found) if found else data


def _is_text_dtype(dtype) -> bool:
    """pandas' string dtypes (python or pyarrow storage), not object."""
    if isinstance(dtype, pd.StringDtype):
        return True
    return isinstance(dtype, pd.ArrowDtype) and dtype.kind in "OU"


def _r_logicals(data: pd.DataFrame, leave=frozenset()) -> pd.DataFrame:
    """Logical (True/False) columns, but those in ``leave``, as R's model matrix reads
    them: a factor with the levels FALSE and TRUE, both always (``bTRUE`` under the
    treatment contrasts; ``0 + b``, ``b:x`` and ``(0 + b | g)`` with a column per level).
    As 0/1 numbers they would give other models for those terms."""
    logical = [c for c in data.columns if c not in leave and _is_logical(data[c])]
    if not logical:
        return data
    return data.assign(
        **{
            c: pd.Categorical(
                data[c].map({True: "TRUE", False: "FALSE"}), categories=["FALSE", "TRUE"]
            )
            for c in logical
        }
    )


def _is_logical(col: pd.Series) -> bool:
    """A bool column, or an object column of True/False with missing values (what
    pandas makes of a logical column holding NA)."""
    if col.dtype == bool or isinstance(col.dtype, pd.BooleanDtype):
        return True
    if col.dtype != object:
        return False
    present = col[col.notna()]
    return len(present) > 0 and all(isinstance(v, (bool, np.bool_)) for v in present)


def _complete_rows(data: pd.DataFrame, pieces: _Pieces) -> np.ndarray:
    """Boolean mask of rows with no missing value in the variables used (R's na.omit)."""
    used = [c for c in data.columns if c in _variables(pieces)]
    return ~data[used].isna().any(axis=1).to_numpy()


def _labels(values: pd.Series) -> pd.Series:
    """Group labels as strings; whole floats print without ".0", as R prints them, also
    beside missing values (which stay missing: a column of integer codes with a missing
    value is float in pandas, and "1.0:1" would match no level of the fit)."""
    if pd.api.types.is_float_dtype(values):
        v = values.to_numpy(dtype=float)
        present = ~np.isnan(v)
        if np.all(np.mod(v[present], 1) == 0):
            text = np.full(len(v), np.nan, dtype=object)
            text[present] = v[present].astype(np.int64).astype(str)
            return pd.Series(text, index=values.index, name=values.name)
    return values.astype(str)


def _factor_names(bars) -> list[list[tuple[str, tuple]]]:
    """Per bar term, ``(factor name, grouping variables)`` of each of its factors.

    Unstructured terms on one grouping share its factor (they merge into one term); a
    structured term (``ar1(...)``, ``cs(...)``) on a grouping that another term also
    has gets a factor of its own with the same levels, named as glmmTMB names it in
    ``VarCorr`` (``id.1``): ``(1 | id) + ar1(0 + factor(day) | id)`` is a random
    intercept per person plus an AR(1) process over the days, whose effects add up.
    """
    plain = {
        factor_label(p) for bar in bars if bar.structure is None for p in _group_parts(bar.group)
    }
    taken, out = set(plain), []
    for bar in bars:
        names = []
        for parts in _group_parts(bar.group):
            name = factor_label(parts)
            if bar.structure is not None:
                base, k = name, 0
                while name in taken:
                    k += 1
                    name = f"{base}.{k}"
                taken.add(name)
            names.append((name, tuple(parts)))
        out.append(names)
    return out


def _group_frame(bars: tuple[_BarTerm, ...], data: pd.DataFrame) -> pd.DataFrame:
    """One column per grouping factor; interactions labelled ``"1:2"`` (a structured
    term beside another on its grouping: a column of its own, :func:`_factor_names`)."""
    columns = {}
    for names in _factor_names(bars):
        for name, parts in names:
            missing = [c for c in parts if c not in data.columns]
            if missing:
                raise ValueError(f"Grouping variable(s) {missing} are not columns of data.")
            if len(parts) == 1:
                columns[name] = data[parts[0]]
            else:
                labels = [_labels(data[c]) for c in parts]
                columns[name] = labels[0].str.cat(labels[1:], sep=":")
    return pd.DataFrame(columns, index=data.index)


def _bar_columns(bar: _BarTerm, data: pd.DataFrame, fixed_names: list[str]) -> tuple[bool, list]:
    """(has intercept, slope column names) of a bar term's left-hand side."""
    if bar.lhs == "1":
        return True, []
    frame, intercept = _r_frame(_model_matrix(bar.lhs, data))
    slopes = list(frame.columns)
    if not intercept and not slopes:
        raise ValueError(f"Random-effect term ({bar.lhs} | {bar.group}) has no columns.")
    absent = [s for s in slopes if s not in fixed_names]
    if absent:  # (the term's own columns are added to X first: _bar_only_columns)
        raise ValueError(
            f"Random slope(s) {absent} in ({bar.lhs} | {bar.group}) are not columns of X, "
            f"which has {fixed_names}."
        )
    return intercept, slopes


def _term_string(intercept: bool, slopes: list[str], diagonal: bool) -> str:
    """``(True, ["time"], False)`` -> ``"1 + time"``; diagonal -> ``"diag(1 + time)"``.
    A column name the term's sum would split (a factor level's ``age18-30``,
    ``trtdrug+``) is written in backquotes, R's quoting, which the estimators read."""
    text = " + ".join(["1" if intercept else "0", *map(_term_name, slopes)])
    return f"diag({text})" if diagonal and len(slopes) + intercept > 1 else text


def _term_name(name: str) -> str:
    """``name`` as a term's sum reads it whole (:func:`_term_string`)."""
    from ._design import is_whole_term_name

    quoted = len(name) > 1 and name[0] == name[-1] == "`"  # (R's name of `my var`)
    return name if quoted or is_whole_term_name(name) or "`" in name else f"`{name}`"


def _random_effects(
    bars, data: pd.DataFrame, fixed_names: list[str], lme4: bool = False
) -> dict[str, str]:
    """Factor name -> term; two terms on one factor merge into a diagonal term
    (``lme4``: ``||`` read as lme4 reads it, see :func:`_check_lme4_double_bar`)."""
    columns: dict[str, tuple[bool, list, bool]] = {}
    structured: dict[str, str] = {}
    for bar, names in zip(bars, _factor_names(bars)):
        if lme4 and bar.double_bar:
            _check_lme4_double_bar(bar, data)
        if bar.structure is not None:
            term = f"{bar.structure}({_structured_time(bar)})"
            for name, _ in names:  # (a factor of its own beside another term)
                structured[name] = term
            continue
        intercept, slopes = _bar_columns(bar, data, fixed_names)
        for name, _ in names:
            if name in columns:
                columns[name] = _merge_terms(name, columns[name], (intercept, slopes, bar.diagonal))
            else:
                columns[name] = (intercept, slopes, bar.diagonal)
    return {**{name: _term_string(*term) for name, term in columns.items()}, **structured}


def _check_lme4_double_bar(bar, data: pd.DataFrame) -> None:
    """lme4 expands ``(x + f || g)`` term by term, ``(1 | g) + (0 + x | g) + (0 + f | g)``:
    a factor's term is a correlated block over a column per level, which these models
    do not fit beside the intercept; glmmTMB's reading (one variance per column of the
    contrasts, ``diag(f | g)``) is another model, so the lme4 formula raises."""
    matrix = _model_matrix(bar.lhs, data)
    state = getattr(matrix.model_spec, "encoder_state", None) or {}
    factors = [
        name for name, (kind, _) in state.items() if getattr(kind, "value", kind) == "categorical"
    ]
    if factors:
        raise NotImplementedError(
            f"({bar.lhs} || {bar.group}) with the factor(s) {factors}: lme4 expands '||' "
            f"term by term, here into terms such as (0 + {factors[0]} | {bar.group}), a "
            "correlated block over one column per level of the factor beside the random "
            "intercept, which is not available here. "
            f"For one variance per column of the factor's contrasts (glmmTMB's reading of "
            f"'||'), write diag({bar.lhs} | {bar.group}) (another model than lme4's); for "
            f"correlated effects write ({bar.lhs} | {bar.group})."
        )


def _random_only(bars, data: pd.DataFrame, fixed_names: list[str]) -> tuple[str, ...]:
    """Time variables of structured terms that are not fixed-effect columns (glmmTMB's
    ``y ~ x + ar1(0 + factor(day) | id)``): numeric or date columns of the data (``data``
    as given, dates not yet factors; :func:`time_values`)."""
    out = []
    for bar in bars:
        if bar.structure is None:
            continue
        var = _structured_time(bar)
        if var not in fixed_names and var not in out:
            col = data[var] if var in data.columns else None
            if col is None or not (
                pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col)
            ):
                raise ValueError(
                    f"The time variable {var!r} of {bar.structure}({bar.lhs} | {bar.group}) "
                    "must be a numeric or date column of the data."
                )
            out.append(var)
        _warn_structured_reading(bar, var)  # (once the time variable is valid)
    return tuple(out)


def time_values(column: pd.Series) -> np.ndarray:
    """A structured term's time variable as numbers: a date as R's number of it, days
    since 1970-01-01 (the local date of a time-zone-aware one)."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_localize(None)
        return ((column - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(float)
    return column.to_numpy(dtype=float)


def _lhs_terms(lhs: str) -> list[str]:
    """The ``+`` terms of a bar's left-hand side without spaces, ``- 1`` as ``0``."""
    return lhs.replace(" ", "").replace("-1", "+0").split("+")


def _structured_time(bar) -> str:
    """``ar1(0 + factor(day) | id)`` -> ``"day"``; ``ou(numFactor(t) + 0 | id)`` and
    ``ou(t + 0 | id)`` -> ``"t"``: a numeric column of the data, in the fixed part or
    not (then passed as ``random_only_columns``)."""
    parts = [p for p in _lhs_terms(bar.lhs) if p and p != "0"]
    var = None
    if len(parts) == 1:
        m = re.fullmatch(
            r"(?:factor|numFactor|as\.factor)?\s*\(?\s*([A-Za-z_.][\w.]*)\s*\)?", parts[0]
        )
        var = m.group(1) if m else None
    if var is None:
        raise ValueError(
            f"Cannot read {bar.structure}({bar.lhs} | {bar.group}): write "
            f"{bar.structure}(0 + factor(day) | {bar.group}) with one time variable and no "
            "intercept."
        )
    return var


def _warn_structured_reading(bar, var: str) -> None:
    """Warn where a structured term (time variable ``var``) is read otherwise than it is
    written, where glmmTMB warns or refuses: a structure over time points has no
    intercept, and ar1, cs and toep take the time variable as a factor."""
    terms = _lhs_terms(bar.lhs)
    time = next(t for t in terms if t and t != "0")
    wrapped = re.match(r"(factor|numFactor|as\.factor)\(", time) is not None
    read_as = []
    if "0" not in terms:
        read_as.append("without an intercept (a structure over time points has none)")
    if not wrapped and bar.structure != "ou":
        read_as.append(f"with {var!r} as a factor of its values")
    if not read_as:
        return
    kind = "numFactor" if bar.structure == "ou" else "factor"
    warn(
        f"{bar.structure}({bar.lhs} | {bar.group}) is fitted {' and '.join(read_as)}, as "
        f"{bar.structure}(0 + {kind}({var}) | {bar.group}); write it so to silence this "
        "(glmmTMB warns of an intercept in ar1() and refuses a time variable that is not "
        "a factor).",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def _merge_terms(name, first, second) -> tuple[bool, list, bool]:
    """``(1 | g) + (0 + x | g)`` -> ``diag(1 + x)``, as lme4 expands ``||``."""
    n_first, n_second = first[0] + len(first[1]), second[0] + len(second[1])
    overlap = (first[0] and second[0]) or set(first[1]) & set(second[1])
    independent = (n_first == 1 or first[2]) and (n_second == 1 or second[2])
    if overlap or not independent:
        raise NotImplementedError(
            f"Several random-effect terms for {name!r} can only be combined when each is a single "
            "column or uncorrelated ('||'); write one term such as (1 + x | g) instead."
        )
    return first[0] or second[0], first[1] + second[1], True


def _fixed_design(pieces: _Pieces, data: pd.DataFrame, states: dict | None = None):
    """(X, fit_intercept, model spec) of the fixed part (``states``: see _model_matrix)."""
    matrix = _model_matrix(pieces.fixed, data, states)
    X, fit_intercept = _r_frame(matrix)
    return X, fit_intercept, matrix.model_spec


def _response(lhs: str, data: pd.DataFrame) -> tuple[pd.Series, pd.Series | None]:
    """(y, trials); ``cbind(s, f)`` gives y = s and trials = s + f."""
    parts = _response_parts(lhs)
    if len(parts) == 1:
        return _evaluate(parts[0], data), None
    successes, failures = (_evaluate(p, data) for p in parts)
    return successes.rename(parts[0]), (successes + failures).rename("trials")


def _offset(
    offsets: tuple[str, ...], data: pd.DataFrame, na_action: str = "raise"
) -> pd.Series | None:
    """Sum of the ``offset(...)`` terms, or None (``na_action``: see :func:`_model_matrix`)."""
    if not offsets:
        return None
    total = sum(_evaluate(expr, data, na_action).astype(float) for expr in offsets)
    return total.rename("offset")


def _parse(
    formula: str, data, complete=None, lme4: bool = False, glm: bool = False
) -> tuple[GLMMDesign, np.ndarray]:
    """The design and the positional mask of the rows kept (``complete``: rows with a missing
    weight or offset, which R's na.omit also drops; ``lme4``: ``||`` read as lme4 reads it;
    ``glm``: a formula without random-effect terms is read, glmmTMB's GLM)."""
    _formulaic()
    data = as_frame(data)
    pieces = _split_formula(formula)
    if not pieces.bars and not glm:
        raise ValueError(
            f"formula {formula!r} has no random-effect term such as '(1 | id)' (glmer "
            "and clmm need one, as lme4's and ordinal's do); glmmTMB(formula, data, "
            "family=...) fits the GLM without random effects, as glmmTMB does (e.g. for a "
            "likelihood-ratio test against the mixed model)."
        )
    texts = [pieces.fixed, *(bar.lhs for bar in pieces.bars), *pieces.offsets]
    _check_no_time_columns(data, _variables(pieces) - _group_variables(pieces), texts)
    keep = _complete_rows(data, pieces)
    if complete is not None:
        keep &= complete
    outcome = _required([f"I({expr})" for expr in _response_parts(pieces.lhs)])
    unknown = sorted(outcome - set(map(str, data.columns)) - set(_context()))
    if unknown:
        raise ValueError(
            f"the response {pieces.lhs.strip()!r} reads {unknown}, which the data do not "
            f"hold (columns: {list(map(str, data.columns))[:20]})."
        )
    groups = _group_variables(pieces)
    complete = _r_factors(data.loc[keep], outcome | groups)
    # a grouping variable that is a predictor too (y ~ f + (1 | f:g)) is coded there as
    # new data will be, with R's levels; its labels stay as they are for the groups
    # (an offset is one expression: "0.5 * log(t)" a product, not a scaled term)
    offsets = [f"I({expr})" for expr in pieces.offsets]
    shared = groups & _required([pieces.fixed, *(bar.lhs for bar in pieces.bars), *offsets])
    design_rows = _r_factors(data.loc[keep], outcome | (groups - shared)) if shared else complete
    # (with rows dropped, the basis transforms learn from every row, as R's do)
    states = None if keep.all() else _all_rows_states(pieces.fixed, data)
    X, fit_intercept, spec = _fixed_design(pieces, design_rows, states)
    random_only = _random_only(pieces.bars, data.loc[keep], list(X.columns))
    if random_only:  # after the fixed-effect columns, as the estimator appends them
        X = X.assign(**{v: time_values(data.loc[keep, v]) for v in random_only})
    bar_frame, bar_specs = _bar_only_columns(
        pieces.bars, design_rows, list(X.columns), None if keep.all() else data
    )
    if bar_specs:
        X = pd.concat([X, bar_frame], axis=1)
        random_only = random_only + tuple(bar_frame.columns)
    y, trials = _response(pieces.lhs, complete)
    design = GLMMDesign(
        X=X,
        y=y,
        groups=_group_frame(pieces.bars, complete),
        random_effects=_random_effects(pieces.bars, design_rows, list(X.columns), lme4),
        fit_intercept=fit_intercept,
        trials=trials,
        offset=_offset(pieces.offsets, complete),
        dropped_rows=data.index[~keep],
        model_spec=spec,
        formula=formula,
        random_only_columns=random_only,
        random_only_specs=bar_specs,
    )
    return design, keep


def _bar_only_columns(bars, data: pd.DataFrame, fixed_names: list[str], all_rows=None):
    """Columns of the random-effect terms' own model matrices that the fixed part lacks
    (lme4's ``y ~ x + f + (0 + f | id)``: the reference level's column; ``(0 + z | id)``
    without ``z`` in the fixed part), as the estimator's random-only columns: their
    frame and ``((spec, columns), ...)`` to rebuild them on new data. Structured terms
    read their time variable instead (:func:`_random_only`). ``all_rows``: the data
    before rows were dropped, where the basis transforms learn (as the fixed part's)."""
    frames, specs, taken = [], [], set(fixed_names)
    for bar in bars:
        if bar.structure is not None or bar.lhs == "1":
            continue
        states = None if all_rows is None else _all_rows_states(bar.lhs, all_rows)
        matrix = _model_matrix(bar.lhs, data, states)
        frame, _ = _r_frame(matrix)
        absent = [c for c in frame.columns if c not in taken]
        if not absent:
            continue
        taken.update(absent)
        own, spec = _own_columns(matrix, frame, absent, data)
        frames.append(own)
        specs.append(spec)
    if not specs:
        return None, ()
    return pd.concat(frames, axis=1), tuple(specs)


def _own_columns(matrix, frame, absent, data):
    """A term's columns ``absent`` from ``X`` (``frame``: its model ``matrix`` with R's
    names) as random-only columns on the rows ``data``, and ``(spec, columns)`` to
    rebuild them on new data (:func:`random_only_design`)."""
    return frame[absent].set_axis(data.index).astype(float), (matrix.model_spec, tuple(absent))


def random_only_design(specs, data: pd.DataFrame) -> pd.DataFrame:
    """The columns of :func:`_bar_only_columns` on new ``data``, from the fitted specs."""
    frames = [design_matrix(spec, data)[list(cols)] for spec, cols in specs]
    return pd.concat(frames, axis=1).astype(float)


# calls whose argument is read as a factor's levels: a date column there is labels
_FACTOR_CALL = re.compile(r"\b(?:factor|C|relevel)\s*\(\s*`?([A-Za-z_.][\w.]*)`?\s*[,)]")


def _check_no_time_columns(data: pd.DataFrame, names, texts=()) -> None:
    """A date, time or time-span column in a formula raises, naming the conversion (R reads
    a Date as days since 1970, a date-time as seconds: rarely the scale meant), unless
    every use of it in ``texts`` is as a factor (``factor(day)``: its dates are levels)."""
    from ._validation import _column_kind

    for name in sorted(set(names) & set(map(str, data.columns))):
        kind = _column_kind(data[name])
        if kind is not None and texts and _only_as_factor(name, texts):
            continue
        if kind == "time":
            raise ValueError(
                f"Data column {name!r} holds dates or times ({data[name].dtype}); the formula "
                "needs numeric time. Add a numeric column, e.g. days since a fixed start (the "
                f"same start at fit and predict): data['{name}_days'] = (data[{name!r}] - "
                "pd.Timestamp('2020-01-01')) / pd.Timedelta(days=1), and use it in the formula."
            )
        if kind == "span":
            raise ValueError(
                f"Data column {name!r} holds time spans ({data[name].dtype}); the formula needs "
                f"numbers. Add a numeric column, e.g. data['{name}_days'] = data[{name!r}] / "
                "pd.Timedelta(days=1), and use it in the formula."
            )


def _only_as_factor(name: str, texts) -> bool:
    """Whether every use of the variable ``name`` in the formula texts is the argument of
    ``factor()``, ``C()`` or ``relevel()``."""
    for text in texts:
        rest = _FACTOR_CALL.sub(lambda m: "1" if m.group(1) == name else m.group(0), text)
        if name in _expression_names(rest):
            return False
    return True


def parse_glmm_formula(formula: str, data: pd.DataFrame) -> GLMMDesign:
    """Read an lme4 / glmmTMB formula into the pieces an estimator's ``fit`` takes.

    Parameters
    ----------
    formula : str
        ``response ~ fixed terms + (lhs | group) + ...``. The response is a
        column, an expression, or ``cbind(successes, failures)``. Fixed terms
        use R's operators (``+``, ``*``, ``:``, ``/``, ``^``, ``-1``, ``0 +``;
        ``I(x^2)`` is a power) and may include ``offset(expr)`` terms, which are
        summed. ``y ~ 1 + (1 | id)`` is the null model (``X`` without columns). Random-effect terms:
        ``(1 | id)``, ``(time | id)`` (= ``1 + time``), ``(0 + time | id)``,
        ``(1 + time || id)`` (uncorrelated), ``(1 | a) + (1 | b)`` (crossed),
        ``(1 | a/b)`` (nested: factors ``a`` and ``b:a``, as lme4 names them)
        and ``(1 | a:b)``. Random slopes must also be fixed effects.
    data : pandas.DataFrame
        Long-format data holding every variable of the formula.

    Returns
    -------
    design : GLMMDesign
        ``X``, ``y``, ``groups``, ``random_effects``, ``fit_intercept``,
        ``trials``, ``offset`` and the ``dropped_rows`` (rows with a missing
        value in any variable used, dropped like R's ``na.omit``).

    Raises
    ------
    ValueError
        For syntax this module does not read (R's ``%in%`` and ``.`` included),
        a formula without random effects, or a random slope that is not a fixed
        effect.

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_vegetables
    >>> from sklearn_glmm.formula import parse_glmm_formula
    >>> df, _ = make_vegetables(random_state=0)
    >>> design = parse_glmm_formula("y ~ trt * sex + (1 | id)", df)
    >>> list(design.X.columns)
    ['trttreat', 'sexmale', 'trttreat:sexmale']
    >>> design.random_effects
    {'id': '1'}
    """
    return _parse(formula, data)[0]


def design_matrix(model_spec, data: pd.DataFrame, na_action: str = "raise") -> pd.DataFrame:
    """Apply a fitted formula's fixed part to new data, with R's column names.

    Parameters
    ----------
    model_spec : formulaic.ModelSpec
        ``GLMMDesign.model_spec`` or a ``glmer`` fit's ``design_info_``.
    data : pandas.DataFrame
        New rows holding the fixed-effect variables.
    na_action : {"raise", "ignore"}, default="raise"
        What a missing value a transform makes (``log`` of a negative number) does:
        raise, or stay in the column (NaN), for the caller to handle.

    Returns
    -------
    X : pandas.DataFrame of shape (n_samples, n_features)
        The fixed-effect columns without the intercept, ready for ``predict``.
    """
    _formulaic()
    from formulaic.errors import DataMismatchWarning

    from ._formula_coding import LEGACY_CODING

    data = _fitted_kinds(model_spec, _r_factors(data))
    with process_filters():
        warnings.simplefilter("error", DataMismatchWarning)
        try:
            with _our_errors():
                # a copy: formulaic updates the spec's encoder state in place
                spec = copy.deepcopy(model_spec)
                # (a column named as a function the formula calls was not in the fit's
                # data, and is not read: R reads the function)
                data = data.drop(columns=_shadowing(str(spec.formula), data, read=False)[0])
                legacy = getattr(spec, "materializer", None) == LEGACY_CODING
                matrix = spec.get_model_matrix(data, context=_context(legacy), na_action=na_action)
        except DataMismatchWarning as exc:
            raise ValueError(_new_levels_message(model_spec, exc)) from None
    return _r_frame(matrix)[0]


def _fitted_kinds(model_spec, data: pd.DataFrame) -> pd.DataFrame:
    """New data's columns as the fit read them: a variable fitted as a factor and given
    as numbers (or logical values) is matched to the fitted levels where those are
    numbers, and refused otherwise; formulaic would copy the number into every dummy
    column of the factor without a word (R: "contrasts apply only to factors")."""
    state = getattr(model_spec, "encoder_state", None) or {}
    changed = {}
    for name, (kind, info) in state.items():
        if getattr(kind, "value", kind) != "categorical":
            continue
        levels = list((info or {}).get("categories") or [])
        numeric = bool(levels) and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in levels
        )
        if numeric:
            changed.update(_numbers_from_text(name, levels, data))
        if name not in data.columns:
            continue
        col = changed.get(name, data[name])
        ordered = _ordered_in_fit(info)
        if ordered is not None:  # a column the fit read as it was (not through a call)
            changed.update(_as_fitted_factor(name, col, levels, ordered))
            col = changed.get(name, col)
        if not (pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
            continue
        if isinstance(col.dtype, pd.CategoricalDtype):
            continue
        values = col[col.notna()]
        if numeric and values.isin(levels).all():
            changed[name] = pd.Categorical(col, categories=levels)
            continue
        raise ValueError(
            f"column {name!r} was a factor in fit (levels {levels[:6]}"
            f"{', ...' if len(levels) > 6 else ''}) but holds numbers in the new data, "
            "which are not its levels; give it as in fit (text, or a pandas Categorical "
            "with the fitted levels). R: 'contrasts apply only to factors'."
        )
    return data.assign(**changed) if changed else data


def _ordered_in_fit(info) -> bool | None:
    """Whether a factor of a model spec was read as ordered (polynomial contrasts) or not
    (other contrasts), from its encoder state; None where the state does not say."""
    from formulaic.transforms.contrasts import PolyContrasts

    contrasts = getattr((info or {}).get("contrasts"), "contrasts", None)
    if contrasts is None:
        return None
    return isinstance(contrasts, PolyContrasts)


def _as_fitted_factor(name: str, col: pd.Series, levels: list, ordered: bool) -> dict:
    """A data column of new data as the fit read it: ordered (polynomial contrasts) or
    not, whichever kind of column new data give (text from a file for an ordered fit, an
    ordered Categorical for a fit from text), as R's predict codes new data by the fit's
    contrasts. Values outside the fitted levels are left to raise there."""
    is_cat = isinstance(col.dtype, pd.CategoricalDtype)
    if is_cat and bool(col.dtype.ordered) == ordered:
        return {}
    if not ordered:
        return {name: col.cat.as_unordered()} if is_cat else {}
    present = col[col.notna()]
    if not len(levels) or not pd.Series(present.to_numpy(dtype=object)).isin(levels).all():
        return {}
    return {name: pd.Categorical(col.to_numpy(dtype=object), categories=levels, ordered=True)}


def _check_finite_design(X: pd.DataFrame) -> None:
    """A design column with infinite values (``log(t)`` where ``t`` is 0) raises naming
    the column, as R's "NA/NaN/Inf in 'x'" (missing values were dropped before)."""
    values = X.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    cols = [str(c) for c in X.columns[bad.any(axis=0)]]
    rows = list(X.index[bad.any(axis=1)][:5])
    raise ValueError(
        f"The design column(s) {cols} have {int(bad.sum())} infinite value(s) (rows {rows}"
        f"{', ...' if bad.any(axis=1).sum() > 5 else ''}): e.g. log() of 0 or a division by "
        "0 in the formula. Drop those rows or change the term (log(t + 1), or a model "
        "for t = 0)."
    )


def _numbers_from_text(expr: str, levels: list, data: pd.DataFrame) -> dict:
    """Columns read by a factor fitted from numbers (``factor(k)``, ``levels`` 1, 2, 10)
    that the new data give as the numbers' text (``"1"``, ``"10"``, read from a file):
    those numbers, as R's factor levels, which are text, would match them."""
    from ._labels import label_key

    by_text = {label_key(v): v for v in levels}
    out = {}
    for name in _expression_names(expr) & set(map(str, data.columns)):
        col = data[name]
        if not pd.api.types.is_object_dtype(col.dtype):
            continue
        values = col[col.notna()]
        if len(values) and all(isinstance(v, str) and label_key(v) in by_text for v in values):
            out[name] = col.map(lambda v: by_text[label_key(v)] if isinstance(v, str) else v)
    return out


def _new_levels_message(model_spec, warning) -> str:
    """R's "factor x has new levels" for formulaic's warning about unseen categories."""
    found = re.search(r"\{.*\}", str(warning))
    levels = {
        str(name): list(state.get("categories", []))
        for name, (kind, state) in model_spec.encoder_state.items()
        if "categories" in state
    }
    return (
        f"The data have factor level(s) {found.group(0) if found else ''} not seen in fit "
        f"(R: 'factor has new levels'); the fitted levels are {levels}. A fixed effect cannot "
        "be predicted for a level it was not estimated for."
    )


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------


def _estimator_class(family, ziformula: str | None):
    """(estimator class, zero-inflated, family parameters) for R's family string and a
    ziformula (the parameters select the family and link within the class).

    The classes are those of :mod:`sklearn_glmm._formula_model`: the estimators, which also
    predict from data holding the formula's variables.
    """
    key, link = parse_family("binomial" if family is None else family)
    params = dict(FAMILY_PARAMS.get(key, {}))
    if link != LINKS[key][0]:
        params["link"] = link
    zero_inflation = False
    if ziformula is not None:
        zero_inflation = _zero_inflation_rhs(ziformula)
        if zero_inflation and ESTIMATORS[key] == "BinomialGLMM":
            raise NotImplementedError("Zero inflation is available for count families only.")
    return getattr(_formula_model, ESTIMATORS[key]), zero_inflation, params


def _zero_inflation_rhs(ziformula):
    """``False`` (``~0``), ``True`` (``~1``) or the right-hand side of a ziformula with
    predictors (``"~ x"`` -> ``"x"``), resolved to design columns by :func:`_zi_term`."""
    if not isinstance(ziformula, str) or not ziformula.strip().startswith("~"):
        raise ValueError(
            f"ziformula must be a one-sided formula such as '~1' or '~ x', got {ziformula!r}."
        )
    check_brackets(ziformula, "ziformula")
    rhs = ziformula.strip()[1:].strip()
    if "|" in rhs:
        raise NotImplementedError(
            f"ziformula={ziformula!r}: random effects in the zero-inflation model (glmmTMB's "
            "ziformula = ~ (1 | g)) are not supported; the zero-inflation probability may "
            "depend on fixed predictors only (ziformula = ~ x)."
        )
    compact = rhs.replace(" ", "")
    if compact in ("0", "-1", "1+-1", "1-1"):
        return False
    if compact == "1":
        return True
    return rhs


def _zi_term(rhs: str, data: pd.DataFrame, fixed_names: list[str], what: str = "ziformula"):
    """The estimator's ``zero_inflation`` (``dispersion``) for a ziformula's
    (dispformula's) right-hand side, and its columns the conditional model's design
    ``X`` lacks (glmmTMB's ``ziformula = ~ z`` with ``z`` a predictor of the zero
    inflation alone): None, or ``(frame, spec, columns)`` to append to ``X`` as
    random-only columns (columns the fixed effects do not read) and rebuild on new data
    (:func:`random_only_design`); and the columns of ``X`` the term reads."""
    if re.search(r"\boffset\s*\(", rhs):
        raise NotImplementedError(
            f"offset() in a {what} is not available: the offset enters the conditional "
            "model only (give it there, or as offset=)."
        )
    matrix = _model_matrix(rhs, data)
    frame, intercept = _r_frame(matrix)
    # an interaction written in another order (x:f here, f:x there) is the same column
    same = {frozenset(c.split(":")): c for c in fixed_names}
    slopes = [c if c in fixed_names else same.get(frozenset(c.split(":")), c) for c in frame]
    if not slopes:
        return intercept, None, []
    absent = [c for c in slopes if c not in fixed_names]
    extra = None
    if absent:
        own, (spec, cols) = _own_columns(matrix, frame, absent, data)
        extra = (own, spec, cols)
    return _term_string(intercept, slopes, False), extra, slopes


def _dispersion_rhs(dispformula, estimator_class):
    """``None`` (``~1``, the constant dispersion) or the right-hand side of a dispformula
    with predictors, for a family that has a dispersion parameter."""
    if dispformula is None:
        return None
    if not isinstance(dispformula, str) or not dispformula.strip().startswith("~"):
        raise ValueError(
            f"dispformula must be a one-sided formula such as '~1' or '~ x', got {dispformula!r}."
        )
    check_brackets(dispformula, "dispformula")
    rhs = dispformula.strip()[1:].strip()
    if rhs.replace(" ", "") == "1":
        return None
    if "|" in rhs:
        raise NotImplementedError(
            f"dispformula={dispformula!r}: random effects in the dispersion model are not "
            "supported; the dispersion may depend on fixed predictors only (dispformula = ~ x)."
        )
    if rhs.replace(" ", "") in ("0", "-1", "1+-1", "1-1"):
        raise NotImplementedError(
            f"dispformula={dispformula!r}: a dispersion fixed at a value is not supported; "
            "use '~1' (estimated) or a model with predictors ('~ x')."
        )
    if "dispersion" not in estimator_class._get_param_names():
        raise ValueError(
            f"dispformula={dispformula!r}: this family has no dispersion parameter to model "
            "(dispformula applies to nbinom2, nbinom1 and betabinomial)."
        )
    return rhs


def _row_values(values, data: pd.DataFrame, name: str) -> np.ndarray | None:
    """``weights=`` / ``offset=``: a column of ``data`` or one value per row of ``data``."""
    if values is None:
        return None
    if isinstance(values, str):
        if values not in data.columns:
            raise ValueError(
                f"{name}={values!r} names no column of data; columns: {list(data.columns)}."
            )
        return data[values].to_numpy(dtype=float)
    check_rows_aligned(data, {name: values}, rebuilt=False, frame="data")
    values = np.asarray(values, dtype=float)
    if values.shape != (len(data),):
        raise ValueError(
            f"{name} must be a column name or have one value per row of data, shape "
            f"({len(data)},); got {values.shape}."
        )
    return values


def _total_offset(formula_offset, argument):
    """The ``offset()`` terms plus the ``offset=`` argument (None when neither is given)."""
    if argument is None:
        return formula_offset
    if formula_offset is None:
        return argument
    return formula_offset.to_numpy(dtype=float) + argument


def _r_success_level(y: pd.Series):
    """The class R's binomial family models: every level but the first is a success.

    A pandas Categorical's first category (of those present) is the failure, as the first
    level of an R factor; of two strings, the later in R's order (:mod:`._collation`;
    Python's puts upper case first); None leaves the estimator's rule, which for booleans
    (True) and 0/1 numbers agrees with R's.
    """
    if isinstance(y.dtype, pd.CategoricalDtype):
        levels = y.cat.remove_unused_categories().cat.categories
        if len(levels) == 2:
            return levels[1]
        return None
    levels = text_levels(y)
    if levels is not None and len(levels) == 2:
        return levels[1]  # R's order: "Yes" models "Yes" beside "no"
    return None


def _formula_state(
    formula: str,
    data: pd.DataFrame,
    model_spec,
    offset,
    random_only=(),
    random_only_specs=(),
    part_texts=(),
    random_columns=(),
) -> FormulaState:
    """What the fitted model needs to predict from data holding the formula's variables
    (``random_only``: columns read beside the fixed part, time variables from the data;
    ``random_only_specs``: random-effect terms' own columns, :func:`_bar_only_columns`,
    and the zero-inflation or dispersion model's, whose right-hand sides
    ``part_texts`` are; ``random_columns``: those of ``random_only`` that only the
    random effects read, which population-level predictions do without)."""
    pieces = _split_formula(formula)
    columns = set(map(str, data.columns))
    offsets = _required([f"I({expr})" for expr in pieces.offsets]) if pieces.offsets else set()
    parts = _required(list(part_texts)) if part_texts else set()
    read = _required([pieces.fixed]) | set(random_only)
    if random_only_specs:  # the variables the terms' own columns are made from
        read |= _required([bar.lhs for bar in pieces.bars if bar.structure is None])
        read |= parts
    by_random = (read - _required([pieces.fixed]) - parts - offsets) & columns
    return FormulaState(
        formula=formula,
        bars=pieces.bars,
        offsets=pieces.offsets,
        model_spec=model_spec,
        random_only_specs=random_only_specs,
        random_variables=tuple(sorted(by_random)),
        random_columns=tuple(random_columns),
        fixed_variables=tuple(sorted(read & columns)),
        offset_variables=tuple(sorted(offsets & columns)),
        group_variables=tuple(sorted(_group_variables(pieces))),
        offset_column=offset if isinstance(offset, str) else None,
        offset_array=offset is not None and not isinstance(offset, str),
    )


def glmer(
    formula: str,
    data: pd.DataFrame = None,
    family: str | None = None,
    *,
    nAGQ: int | None = None,  # noqa: N803 (R's name)
    n_agq: int | None = None,
    ziformula: str | None = None,
    dispformula: str | None = None,
    weights=None,
    offset=None,
    **estimator_params,
):
    """Fit a GLMM from an lme4 formula, as ``lme4::glmer`` does.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"y ~ time + treatment + (1 | id)"``; see
        :func:`parse_glmm_formula` for the syntax read. It comes first and the data
        second, as in R (swapped arguments raise ``TypeError``).
    data : pandas.DataFrame
        Long-format data (a polars or other narwhals-readable DataFrame is read as
        pandas, column by column; polars' ordered categorical is its ``Enum``).
    family : str, default=None (binomial)
        R's family as a string: ``"binomial"``, ``"poisson"``, ``"nbinom2"`` (glmmTMB's
        NB2, also ``"negbin"``), ``"nbinom1"``, ``"betabinomial"``, and glmmTMB's
        zero-truncated counts ``"truncated_poisson"``, ``"truncated_nbinom2"``,
        ``"truncated_nbinom1"`` (hurdle models with ``ziformula="~1"``), optionally
        with its link as R writes it:
        ``"binomial(link = 'logit')"``, ``'binomial(link = "logit")'``,
        ``"poisson(link = 'log')"``. Other links raise ``ValueError`` naming the ones
        available. When no family is given the model is binomial, and an outcome of
        counts (whole numbers above 1) raises: pass ``family="poisson"``.
    nAGQ, n_agq : int, default=1
        Quadrature points per random effect (R's ``nAGQ``; ``n_agq`` is the estimator's
        name, pass one); 1 is the Laplace approximation.
    ziformula : str or None, default=None
        glmmTMB's zero-inflation formula (count families only): ``"~1"`` fits one
        zero-inflation probability, ``"~0"`` none, and ``"~ x"`` a logit-linear model
        of it (``zero_inflation_effects_``, R's ``fixef(m)$zi``). Its variables must
        also be in the conditional model's fixed part; random effects in it
        (``~ (1 | g)``) are not supported. With a ``truncated_*`` family it is the hurdle's
        probability of a zero, as in glmmTMB: ``"~1"`` a constant, ``"~ x"`` a
        logit-linear model of it (``hurdle="1 + x"``).
    dispformula : str or None, default=None
        glmmTMB's dispersion formula (``nbinom2``, ``nbinom1``, ``betabinomial``):
        ``"~1"`` (the default) one dispersion, ``"~ x"`` a log-linear model of it
        (``dispersion_effects_``, R's ``fixef(m)$disp``: log theta for nbinom2, log
        phi for nbinom1 and betabinomial). Its variables must also be in the
        conditional model's fixed part; random effects in it are not supported.
    weights : str or array-like of shape (n_rows,), default=None
        A column of ``data`` or one value per row of ``data``. Case weights; for a
        binomial outcome of proportions (numbers in [0, 1]) they are the numbers of
        trials, as in R (``glmer(prop ~ x + (1 | id), weights = n, family = binomial)``).
    offset : str or array-like of shape (n_rows,), default=None
        A column of ``data`` or one value per row, added to the formula's ``offset()``
        terms. A column name is read again from new data by ``predict``; lme4's
        ``predict(newdata)`` ignores this argument (write ``offset(...)`` in the formula
        for R's predictions), and an array cannot be rebuilt: pass ``offset=`` to
        ``predict`` then.
    **estimator_params
        Further estimator parameters, such as ``max_iter`` or ``tol``. R's arguments
        without a counterpart (``control``, ``start``, ``subset``, ``REML``, ...)
        raise ``TypeError`` saying what to do instead. For ``family="binomial"`` the
        outcome's levels decide the class modelled, as
        in R: a pandas Categorical models every category but its first
        (``pos_label`` is set to the second category present); strings and
        booleans follow ``BinomialGLMM``'s rule (the later string in sorted
        order, ``True``). Pass ``pos_label=`` to choose.

    Returns
    -------
    estimator : BinomialGLMM, PoissonGLMM or NegBinGLMM
        Fitted, with ``formula_``, ``ziformula_`` (a zero-inflated model's ziformula)
        and ``design_info_`` (the fixed part's formulaic model
        spec). Coefficients carry R's names. It is an instance of the family's
        estimator (a subclass, ``sklearn_glmm._formula_model``) whose ``predict``,
        ``predict_proba``, ``decision_function``, ``predict_mean`` and
        ``predict_interval`` also take a DataFrame holding the formula's variables --
        R's ``predict(m, newdata)``: the training levels, contrasts and ``poly()`` /
        ``scale()`` coefficients are applied, the grouping columns give the groups and
        the ``offset()`` terms are evaluated -- with R's ``re_form`` (``None`` or NA)
        and ``type`` (``"response"`` or ``"link"``). Numeric ``X`` (the design columns)
        works as for any estimator, so the same object goes into Pipelines.

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_vegetables
    >>> from sklearn_glmm.formula import glmer
    >>> df, _ = make_vegetables(random_state=0)
    >>> m = glmer("y ~ trt * sex + (1 | id)", df, family="binomial")  # doctest: +SKIP
    >>> list(m.fixed_effects_.index)  # doctest: +SKIP
    ['(Intercept)', 'trttreat', 'sexmale', 'trttreat:sexmale']
    >>> m.predict(df.head(2), type="response", re_form="NA")  # doctest: +SKIP
    array([0.85174..., 0.85174...])
    """
    # glmmTMB calls glmer under its own name, for the messages
    function = estimator_params.pop("_function", "glmer")
    formula, data = check_formula_first(formula, data, function)
    estimator_class, zero_inflation, family_params = _estimator_class(family, ziformula)
    check_r_arguments(estimator_params, estimator_class, function)
    dispersion = _dispersion_rhs(dispformula, estimator_class)
    n_agq = resolve_n_agq(n_agq, nAGQ)
    data = as_frame(data)
    w_all = _row_values(weights, data, "weights")
    off_all = _row_values(offset, data, "offset")
    complete = np.ones(len(data), dtype=bool)
    for values in (w_all, off_all):
        if values is not None:
            complete &= ~np.isnan(values)  # R's na.omit drops them too
    # and a row missing a variable of the zero-inflation or dispersion formula (glmmTMB's)
    part_rhs = [r for r in (zero_inflation, dispersion) if isinstance(r, str)]
    if part_rhs:
        used = sorted(_required(part_rhs) & set(map(str, data.columns)))
        complete &= ~data[used].isna().any(axis=1).to_numpy()
    design, keep = _parse(
        formula, data, complete, lme4=function == "glmer", glm=function == "glmmTMB"
    )
    check_rows_left(data, keep)
    binomial = estimator_class.__name__ == "BinomialGLMM"
    params = {
        "random_effects": design.random_effects,
        "n_agq": n_agq,
        "fit_intercept": design.fit_intercept,
        **(
            {"random_only_columns": list(design.random_only_columns)}
            if design.random_only_columns
            else {}
        ),
        **family_params,
        **estimator_params,
    }
    # the rows used, for the zero-inflation and dispersion designs
    zi_or_disp = isinstance(zero_inflation, str) or dispersion is not None
    kept = _r_factors(data.loc[keep]) if zi_or_disp else None
    X_fit, own_specs, part_columns = design.X, [], set()

    def block_term(rhs, what):
        """A zero-inflation or dispersion term; its own columns appended to X."""
        nonlocal X_fit
        term, extra, reads = _zi_term(rhs, kept, list(X_fit.columns), what)
        part_columns.update(reads)
        if extra is not None:
            frame, spec, cols = extra
            X_fit = pd.concat([X_fit, frame], axis=1)
            own_specs.append((spec, cols))
            params["random_only_columns"] = [*params.get("random_only_columns", []), *cols]
        return term

    part_texts = [r for r in (zero_inflation, dispersion) if isinstance(r, str)]
    if isinstance(zero_inflation, str):
        zero_inflation = block_term(zero_inflation, "ziformula")
    if zero_inflation is True:
        params = with_zero_part(params)
    elif zero_inflation:
        if params.pop("truncated", False):
            # a truncated family's ziformula is the hurdle's zero part, as in glmmTMB
            params["hurdle"] = zero_inflation
        else:
            params["zero_inflation"] = zero_inflation
    if dispersion is not None:
        params["dispersion"] = block_term(dispersion, "dispformula")
    sample_weight = None if w_all is None else w_all[keep]
    y, trials = design.y, design.trials
    proportions_weights = False
    if binomial and trials is None and sample_weight is not None:
        proportions = proportions_with_trials(y, sample_weight)
        if proportions is not None:  # R: the weights of proportions are the trials
            (y, trials), sample_weight = proportions, None
            proportions_weights = True
    if family is None and trials is None:
        check_not_counts(y)
    if binomial and trials is None and sample_weight is None:
        check_not_proportions(y)
    fit_params = {
        # glmmTMB's GLM (a formula without random-effect terms): no groups
        "groups": design.groups if design.random_effects else None,
        "offset": _total_offset(design.offset, None if off_all is None else off_all[keep]),
        "sample_weight": sample_weight,
    }
    if trials is not None:
        if not binomial:
            raise ValueError("A cbind(successes, failures) response needs family='binomial'.")
        fit_params["trials"] = trials
    elif binomial and "pos_label" not in params:
        success = _r_success_level(y)
        if success is not None:
            params["pos_label"] = success
    _check_finite_design(X_fit)
    if not design.random_effects:
        params["random_effects"] = None
    estimator = estimator_class(**params)
    with contextlib.ExitStack() as quieted, labels_in_X_meant():
        if not design.random_effects:  # asked for: a GLM, as glmmTMB fits it
            quieted.enter_context(quiet(NoRandomEffectsWarning))
        if proportions_weights:  # R's binomial weights: whole successes are what it asks
            quieted.enter_context(quiet(message="trials is not a whole number"))
        estimator.fit(X_fit, y, **fit_params)
    estimator.formula_ = formula
    if zero_inflation:
        estimator.ziformula_ = "~" + str(ziformula).strip().lstrip("~").strip()
    if dispersion is not None:
        estimator.dispformula_ = "~" + dispersion
    estimator.design_info_ = design.model_spec
    estimator._fitted_rows = design.X.index
    estimator._formula = _formula_state(
        formula,
        data,
        design.model_spec,
        offset,
        (*design.random_only_columns, *(c for _, cols in own_specs for c in cols)),
        design.random_only_specs + tuple(own_specs),
        part_texts,
        # (a column the zero-inflation or dispersion model reads too is needed by every
        # prediction: z in (0 + z | g) with ziformula = ~ z)
        [c for c in design.random_only_columns if c not in part_columns],
    )
    return estimator


def glmmTMB(formula: str, data: pd.DataFrame = None, family: str | None = None, **kwargs):  # noqa: N802
    """Fit a GLMM from a glmmTMB formula: :func:`glmer` under glmmTMB's name.

    ``family="nbinom2"`` is glmmTMB's NB2 (``NegBinGLMM``); ``ziformula="~1"``
    adds one zero-inflation probability and ``ziformula="~ x"`` one that depends on
    predictors; ``dispformula="~ x"`` a dispersion that depends on predictors
    (``nbinom2``, ``nbinom1``, ``betabinomial``); see :func:`glmer` for the parameters and
    for predicting from new data.

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.formula import glmmTMB
    >>> df, _ = make_longitudinal("negbin", random_state=0)
    >>> m = glmmTMB("y ~ time + treatment + (1 | id)", df, family="nbinom2")  # doctest: +SKIP

    R matches an abbreviated argument name to the one it begins uniquely: ``zi = ~ 1``
    (glmmTMB's examples write it so) is ``ziformula``, ``disp =`` is ``dispformula``;
    so here.
    """
    for name in [k for k in kwargs if k not in _GLMMTMB_ARGUMENTS]:
        full = [a for a in _GLMMTMB_ARGUMENTS if a.startswith(name)]
        if len(full) == 1 and full[0] in ("ziformula", "dispformula") and full[0] not in kwargs:
            kwargs[full[0]] = kwargs.pop(name)
    return glmer(formula, data, family, _function="glmmTMB", **kwargs)


# R's glmmTMB()'s arguments, among which R matches an abbreviated name (zi: ziformula; d is
# data, dispformula or doFit: no match)
_GLMMTMB_ARGUMENTS = (
    "formula", "data", "family", "ziformula", "dispformula", "weights", "offset",
    "contrasts", "na.action", "se", "verbose", "doFit", "control", "REML", "start", "map",
    "sparseX",
)  # fmt: skip


# ---------------------------------------------------------------------------
# pipelines
# ---------------------------------------------------------------------------


class FormulaTransformer(TransformerMixin, BaseEstimator):
    """Turn a DataFrame into the fixed-effect model matrix of a formula.

    Learns the fixed part of ``formula`` -- the right-hand side without bar
    terms -- on ``fit`` (factor levels, ``center``/``scale`` statistics) and applies
    it on ``transform``, naming columns as R does and leaving out the intercept (the
    estimators fit it; a formula without one, ``y ~ x - 1``, needs the estimator's
    ``fit_intercept=False``, which its ``fit`` checks when this transformer's output
    reaches it directly). The random-effect terms are the estimator's
    ``random_effects`` (its default, ``"1"``, is ``(1 | g)``; set slopes there). A
    formula with ``offset()`` raises: the offset goes to the estimator's ``fit``.

    Parameters
    ----------
    formula : str
        ``"y ~ trt * sex + (1 | id)"`` or only its right-hand side
        ``"trt * sex"``; the response and random-effect terms are ignored.

    Attributes
    ----------
    model_spec_ : formulaic.ModelSpec
        The learnt fixed part.
    fit_intercept_ : bool
        Whether the formula keeps the intercept.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Columns of the DataFrame seen in ``fit``.
    n_features_in_ : int
        Number of those columns.

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_vegetables
    >>> from sklearn_glmm.formula import FormulaTransformer
    >>> df, _ = make_vegetables(random_state=0)
    >>> FormulaTransformer("trt * sex").fit(df).get_feature_names_out().tolist()
    ['trttreat', 'sexmale', 'trttreat:sexmale']
    """

    def __init__(self, formula: str):
        self.formula = formula

    def _fixed_formula(self) -> str:
        text = self.formula if "~" in self.formula else f"_ ~ {self.formula}"
        pieces = _split_formula(text)
        if pieces.offsets:
            # (the columns it makes are the estimator's X: an offset would be dropped,
            # and the pipeline would fit another model than glmer's)
            written = " + ".join(f"offset({expr})" for expr in pieces.offsets)
            raise ValueError(
                f"FormulaTransformer makes the fixed-effect columns only, and the formula's "
                f"{written} cannot reach the estimator from here. Remove it from the formula "
                "and pass the offset to the estimator's fit, e.g. "
                "pipe.fit(df, y, poissonglmm__offset=np.log(df['exposure'])) (or route it "
                "with set_fit_request(offset=True)); glmer() reads it from the formula."
            )
        return pieces.fixed

    def fit(self, X: pd.DataFrame, y=None):
        """Learn the fixed part's encoding from ``X``.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_samples, n_columns)
            Data holding the formula's variables.
        y : None
            Ignored.

        Returns
        -------
        self : FormulaTransformer
        """
        X = _check_frame(X)
        # factors as glmer reads them: unused categories dropped, logicals FALSE/TRUE
        matrix = _model_matrix(self._fixed_formula(), _r_factors(X))
        frame, self.fit_intercept_ = _r_frame(matrix)
        self.model_spec_ = matrix.model_spec
        self._feature_names_out = np.asarray(frame.columns, dtype=object)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Model matrix of ``X`` without the intercept column.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_samples, n_columns)
            Data holding the formula's variables.

        Returns
        -------
        X_out : pandas.DataFrame of shape (n_samples, n_features_out)
            Columns named as R names them; the index of ``X`` is kept.
        """
        check_is_fitted(self, "model_spec_")
        out = design_matrix(self.model_spec_, _check_frame(X))
        # (the estimator that follows checks its fit_intercept against the formula's)
        out.attrs[FORMULA_INTERCEPT] = bool(self.fit_intercept_)
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """R's names of the output columns, e.g. ``["trttreat", "sexmale"]``.

        Parameters
        ----------
        input_features : None
            Ignored; the names come from the formula.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "model_spec_")
        return self._feature_names_out.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


def _check_frame(X) -> pd.DataFrame:
    frame = as_pandas(X)  # polars and other libraries' frames, column by column
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            "FormulaTransformer needs a DataFrame (pandas, polars, ...): formulas refer to "
            f"columns by name, got {type(X).__name__}."
        )
    return frame


from ._formula_ordinal import clmm  # noqa: E402 (it builds on this module)
