"""R's functions inside a formula, and the formula's fixed part evaluated by formulaic.

A formula sees the data's columns, numpy as ``np``, formulaic's transforms and, as in R,
``factor(x, levels = c(...))``, ``relevel``, ``log(x, base)``, ``poly``, ``bs``, ``ns``,
``ifelse``, ``round`` (half to even), the distribution functions and ``pmin``/``pmax``
(:func:`_context`); :func:`_model_matrix` evaluates a formula's fixed part with them, the
names of its expressions read from the text (:func:`_expression_names`), a column that
shadows one of these functions left as the column (:func:`_unshadowed`).
"""

from __future__ import annotations

import ast
import copy
import re
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from ._collation import text_levels
from ._formula_text import (
    _check_r_operators,
    _python_powers,
    _quote_dotted_names,
    _r_contrast_names,
    _r_logical_precedence,
    _r_nesting,
    _warn_crossed_variable,
)
from ._optional import require
from ._warn import user_stacklevel, warn

# ---------------------------------------------------------------------------
# formulaic access
# ---------------------------------------------------------------------------


def _formulaic():
    """Import formulaic, or tell the user how to install it."""
    formulaic = require(
        "formulaic",
        "Formulas need the optional dependency 'formulaic'; install it with "
        "`pip install sklearn_glmm[formula]`.",
    )
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
    ``C(f, sum)`` is ``C(f, contr.sum)``; R's ``a %in% b`` is ``a:b``; R's ``.`` raises.
    ``x^2`` outside ``I()`` warns: in R (and here) it is ``x``.
    """
    _check_r_operators(rhs)
    if warn:
        _warn_crossed_variable(rhs)
    rhs = _r_nesting(rhs)
    return _r_logical_precedence(_python_powers(_r_contrast_names(_quote_dotted_names(rhs))))


def _r_variable_order(text: str, rebuilt: bool = False):
    """formulaic's formula of ``text`` with the factors of each interaction in R's order:
    the order in which their variables first appear in the formula (R's ``terms()``:
    ``y ~ f:x2 + x1:f`` has the columns ``f...:x2`` and ``f...:x1``, and ``y ~ lg:x2 +
    f * x2`` the column ``x2:f...``), where formulaic keeps the order of each term as it
    is written. The term order is formulaic's (and R's): by degree, then as written.

    ``rebuilt``: glmmTMB's order, which reads the formula R's ``update()`` writes from
    those terms (``~ cut_f + lg + lg:x1 + lg:cut_f`` for ``~ lg:x1 + cut_f * lg``): the
    first appearances counted again in that formula (``cut_f:lg``, where lme4 has
    ``lg:cut_f``).

    ``text`` itself where no interaction's order changes; else the reordered formula (a
    model spec keeps it, so that new data are coded in the same order)."""
    formulaic = _formulaic()
    from formulaic.parser import DefaultFormulaParser
    from formulaic.parser.types import Term, Token

    formula = formulaic.Formula(text)
    if not isinstance(formula, formulaic.formula.SimpleFormula) or all(
        len(term.factors) < 2 for term in formula
    ):
        return text
    written = [
        token.to_factor().expr
        for token in DefaultFormulaParser().get_tokens(text)
        if token.kind in (Token.Kind.NAME, Token.Kind.PYTHON)
    ]
    terms = _first_appearance_order(list(formula), written, Term)
    if rebuilt:
        terms = _first_appearance_order(
            terms, [f.expr for term in terms for f in term.factors], Term
        )
    if all(a.factors == b.factors for a, b in zip(terms, formula)):
        return text
    return formulaic.formula.SimpleFormula(terms, _ordering="none")


def _first_appearance_order(terms, exprs, term_class):
    """``terms`` with each one's factors ordered by the first place of their expressions
    in ``exprs`` (factors not there last, as they were)."""
    first: dict[str, int] = {}
    for expr in exprs:
        first.setdefault(expr, len(first))
    return [
        term_class(sorted(term.factors, key=lambda f: first.get(f.expr, len(first))))
        for term in terms
    ]


def _model_matrix(
    rhs: str,
    data: pd.DataFrame,
    states: dict | None = None,
    na_action: str = "raise",
    glmmtmb: bool = False,
):
    """formulaic's model matrix of ``~ rhs``; missing values raise (rows were dropped
    before; ``na_action="ignore"``: a value a transform makes missing, ``log(-1)`` on new
    data, is kept, for the caller to name).

    ``states``: transforms' states learnt beforehand (by expression), used as they are;
    the other transforms learn theirs from ``data``. ``glmmtmb``: the variables of an
    interaction in glmmTMB's order, else in lme4's (:func:`_r_variable_order`)."""
    formulaic = _formulaic()
    data = _unshadowed(rhs, data)
    from ._formula_coding import RCodingMaterializer

    spec = formulaic.ModelSpec(
        formula=_r_variable_order(_formulaic_text(rhs), rebuilt=glmmtmb),
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
