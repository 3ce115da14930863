"""The data as R reads them for a formula: R's names of columns and levels, the
variables a formula uses, their rows without missing values (``na.omit``), text, dates
and logicals as R's factors, and the grouping factors' labels."""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd

from ._collation import text_levels
from ._formula_functions import (
    _QUOTED,
    _expression_names,
    _formulaic,
    _formulaic_text,
    _model_matrix,
)
from ._formula_text import (
    _BarTerm,
    _group_parts,
    _Pieces,
    _response_parts,
    factor_label,
)

# formulaic writes a level as name[T.level] (treatment contrast) or name[level];
# R pastes the level onto the name.
_LEVEL = re.compile(r"\[(?:T\.)?([^\[\]]*)\]")


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
    as factors (:func:`._formula_parse._check_no_time_columns`)."""
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
