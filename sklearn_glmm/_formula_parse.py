"""A formula read the way lme4 reads it (:func:`parse_glmm_formula`), and the design of
new data from a fitted formula (:func:`design_matrix`).

The right-hand side's bar terms ``(expr | group)`` become the grouping factors and the
``random_effects`` terms (lme4's ``||`` expanded, glmmTMB's covariance structures read),
``offset()`` the offset, the rest the fixed model matrix; the response, trials and the
rows used come with them (:class:`GLMMDesign`).
"""

from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ._formula_data import (
    _complete_rows,
    _evaluate,
    _factor_names,
    _group_frame,
    _group_variables,
    _r_factors,
    _r_frame,
    _required,
    _variables,
)
from ._formula_functions import (
    _all_rows_states,
    _context,
    _expression_names,
    _formulaic,
    _model_matrix,
    _our_errors,
    _shadowing,
)
from ._formula_text import (
    _BarTerm,
    _Pieces,
    _response_parts,
    _split_formula,
    _split_signed,
    _top_level,
)
from ._frames import as_frame
from ._warn import process_filters, user_stacklevel, warn


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
    """Factor name -> term; several terms on one factor merge into one, uncorrelated
    with each other (a diagonal term where each is a column or uncorrelated, else
    correlated blocks: :func:`_merged_term`). ``lme4``: the bars were expanded as lme4
    expands ``||`` (:func:`_lme4_double_bars`) before."""
    columns: dict[str, list[tuple[bool, list, bool]]] = {}
    structured: dict[str, str] = {}
    for bar, names in zip(bars, _factor_names(bars)):
        if bar.structure is not None:
            term = f"{bar.structure}({_structured_time(bar)})"
            for name, _ in names:  # (a factor of its own beside another term)
                structured[name] = term
            continue
        intercept, slopes = _bar_columns(bar, data, fixed_names)
        for name, _ in names:
            columns.setdefault(name, []).append((intercept, slopes, bar.diagonal))
    merged = {name: _merged_term(name, pieces) for name, pieces in columns.items()}
    return {**merged, **structured}


def _lme4_double_bars(bars) -> list:
    """``bars`` with each ``(lhs || g)`` expanded as lme4 expands it, term by term:
    ``(1 | g) + (0 + t | g)`` for each term ``t`` of ``lhs`` (R's terms: ``x * f`` is
    ``x``, ``f`` and ``x:f``), each term's columns a correlated block (a factor's, one
    per level; ``poly(x, 2)``'s two), uncorrelated with the others. glmmTMB reads
    ``(lhs || g)`` as ``diag(lhs | g)``, one variance per column, which is the same model
    where every term is one column."""
    out = []
    for bar in bars:
        if not bar.double_bar:
            out.append(bar)
            continue
        intercept, terms = True, []
        for sign, piece in _split_signed(bar.lhs):
            compact = piece.replace(" ", "")
            if compact in ("0", "1"):
                intercept = (compact == "1") == (sign == "+")
            elif sign == "-":
                raise ValueError(
                    f"({bar.lhs} || {bar.group}): removing a term ('- {piece}') from a "
                    "'||' term is not read here; write the terms to keep."
                )
            else:
                terms += _r_terms(piece)
        parts = [_BarTerm("1", bar.group, False)] if intercept else []
        parts += [_BarTerm(f"0 + {t}", bar.group, False) for t in dict.fromkeys(terms)]
        out += parts
    return out


def _r_terms(piece: str) -> list[str]:
    """R's terms of one summand of a formula (``x * f`` -> ``x``, ``f``, ``x:f``; a
    summand without a crossing operator outside its calls is one term)."""
    if not any(True for _ in _top_level(piece, "*/^")):
        return [piece]
    formula = _formulaic().Formula(piece)
    return [str(term) for term in formula if str(term) != "1"]


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


def _merged_term(name, pieces) -> str:
    """The term of a factor's random-effect terms ``pieces`` (``(intercept, slopes,
    diagonal)`` each), uncorrelated with each other, as lme4 fits them: one term as it
    is; ``(1 | g) + (0 + x | g)`` -> ``diag(1 + x)`` (as lme4 expands ``||``); and where
    a term has correlated columns, its blocks: ``(1 + x | g) + (0 + z | g)`` ->
    ``"(1 + x) + (0 + z)"`` (:func:`~sklearn_glmm._design.parse_term`)."""
    if len(pieces) == 1:
        return _term_string(*pieces[0])
    intercepts = sum(bool(p[0]) for p in pieces)
    slopes = [s for p in pieces for s in p[1]]
    if intercepts > 1 or len(set(slopes)) < len(slopes):
        repeated = ["the intercept"] if intercepts > 1 else []
        repeated += [repr(s) for s in sorted({s for s in slopes if slopes.count(s) > 1})]
        raise ValueError(
            f"The random-effect terms for {name!r} repeat {', '.join(repeated)} in more "
            "than one term; lme4 would fit it twice. Give each column in one term (e.g. "
            "(1 + x | g) + (0 + z | g))."
        )
    if all(p[2] or p[0] + len(p[1]) == 1 for p in pieces):
        return _term_string(intercepts > 0, slopes, True)
    return " + ".join(f"({_term_string(*p)})" for p in pieces)


def _fixed_design(
    pieces: _Pieces, data: pd.DataFrame, states: dict | None = None, glmmtmb: bool = False
):
    """(X, fit_intercept, model spec) of the fixed part (``states``, ``glmmtmb``: see
    _model_matrix)."""
    matrix = _model_matrix(pieces.fixed, data, states, glmmtmb=glmmtmb)
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
    formula: str, data, complete=None, lme4: bool = False, glm: bool = False, glmmtmb=False
) -> tuple[GLMMDesign, np.ndarray]:
    """The design and the positional mask of the rows kept (``complete``: rows with a missing
    weight or offset, which R's na.omit also drops; ``lme4``: ``||`` read as lme4 reads it;
    ``glm``: a formula without random-effect terms is read, glmmTMB's GLM; ``glmmtmb``:
    the fixed part's interactions in glmmTMB's order of their variables)."""
    _formulaic()
    data = as_frame(data)
    pieces = _split_formula(formula)
    if lme4:  # (1 + x || g): lme4's terms
        pieces = replace(pieces, bars=_lme4_double_bars(pieces.bars))
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
    X, fit_intercept, spec = _fixed_design(pieces, design_rows, states, glmmtmb)
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
        For syntax this module does not read (R's ``.`` included),
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
