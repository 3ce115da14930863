"""The steps of :func:`sklearn_glmm.formula.glmer`'s fit: the estimator class and family
parameters for R's family, the zero-inflation and dispersion terms with their own
columns, the rows R's ``na.omit`` keeps, ``weights=``/``offset=`` read from the data,
the outcome with R's binomial weights and the state prediction from raw data needs.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from . import _formula_model
from ._collation import text_levels
from ._formula_args import (
    ESTIMATORS,
    FAMILY_PARAMS,
    LINKS,
    check_not_counts,
    check_not_proportions,
    parse_family,
    proportions_with_trials,
    with_zero_part,
)
from ._formula_data import _group_variables, _r_factors, _r_frame, _required
from ._formula_functions import _model_matrix
from ._formula_parse import (
    _own_columns,
    _term_string,
)
from ._formula_predictions import FormulaState
from ._formula_text import (
    _split_formula,
    check_brackets,
)
from ._validation_rows import check_rows_aligned


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
    (:func:`._formula_parse.random_only_design`); and the columns of ``X`` the term reads."""
    if re.search(r"\boffset\s*\(", rhs):
        raise NotImplementedError(
            f"offset() in a {what} is not available: the offset enters the conditional "
            "model only (give it there, or as offset=)."
        )
    # (glmmTMB's order of an interaction's variables: only glmmTMB has these formulas)
    matrix = _model_matrix(rhs, data, glmmtmb=True)
    frame, intercept = _r_frame(matrix)
    # (an interaction the conditional model names in another order, x:f there and f:x
    # here, is a column of its own under glmmTMB's name for this formula, as fixef(m)$zi)
    slopes = list(frame)
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
    ``random_only_specs``: random-effect terms' own columns, ``_formula_parse._bar_only_columns``,
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


def _rows_with_values(data: pd.DataFrame, row_values, part_rhs) -> np.ndarray:
    """The rows R's ``na.omit`` keeps before the formula is read: those with their
    ``weights=``/``offset=`` values (``row_values``, None where not given) and the
    variables of the zero-inflation and dispersion formulas (``part_rhs``: their
    right-hand sides where given as text) present, as glmmTMB drops them."""
    complete = np.ones(len(data), dtype=bool)
    for values in row_values:
        if values is not None:
            complete &= ~np.isnan(values)  # R's na.omit drops them too
    # and a row missing a variable of the zero-inflation or dispersion formula (glmmTMB's)
    part_rhs = [r for r in part_rhs if isinstance(r, str)]
    if part_rhs:
        used = sorted(_required(part_rhs) & set(map(str, data.columns)))
        complete &= ~data[used].isna().any(axis=1).to_numpy()
    return complete


class _FamilyParts:
    """The zero-inflation and dispersion terms of a formula fit: each term as the
    estimator takes it, its own columns (those the conditional model's design lacks)
    appended to ``X`` as random-only columns (``params``, the estimator's parameters,
    updated), their specs for new data and the columns of ``X`` the terms read."""

    def __init__(self, data: pd.DataFrame, keep, X: pd.DataFrame, params: dict):
        self.data, self.keep, self.X, self.params = data, keep, X, params
        self.kept = None
        self.own_specs, self.columns = [], set()

    def add(self, zero_inflation, dispersion):
        """``zero_inflation`` (a right-hand side, True/False) and ``dispersion`` (None or
        a right-hand side) put into ``params``; returns them as the estimator reads
        them (``dispersion`` as its term)."""
        if isinstance(zero_inflation, str) or dispersion is not None:
            # the rows used, for the zero-inflation and dispersion designs
            self.kept = _r_factors(self.data.loc[self.keep])
        params = self.params
        if isinstance(zero_inflation, str):
            zero_inflation = self._term(zero_inflation, "ziformula")
        if zero_inflation is True:
            self.params = params = with_zero_part(params)
        elif zero_inflation:
            if params.pop("truncated", False):
                # a truncated family's ziformula is the hurdle's zero part, as in glmmTMB
                params["hurdle"] = zero_inflation
            else:
                params["zero_inflation"] = zero_inflation
        if dispersion is not None:
            params["dispersion"] = self._term(dispersion, "dispformula")
        return zero_inflation, dispersion

    def _term(self, rhs, what):
        """A zero-inflation or dispersion term; its own columns appended to X."""
        term, extra, reads = _zi_term(rhs, self.kept, list(self.X.columns), what)
        self.columns.update(reads)
        if extra is not None:
            frame, spec, cols = extra
            self.X = pd.concat([self.X, frame], axis=1)
            self.own_specs.append((spec, cols))
            self.params["random_only_columns"] = [
                *self.params.get("random_only_columns", []),
                *cols,
            ]
        return term


def _outcome_and_trials(design, sample_weight, binomial: bool, family):
    """``(y, trials, sample_weight, proportions_weights)``: the formula's outcome and
    trials, proportions with ``weights=`` read as R's binomial family reads them (the
    weights are the trials), and the checks on what a family without trials is given."""
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
    return y, trials, sample_weight, proportions_weights
