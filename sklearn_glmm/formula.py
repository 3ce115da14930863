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

Steps 2-4 are ``_formula_parse``'s (with :func:`design_matrix`, new data's design),
R's functions inside a formula and formulaic's evaluation ``_formula_functions``', the
data as R reads them (names, missing rows, factors) ``_formula_data``'s; this module
keeps the R-style entry points (:func:`glmer`, :func:`glmmTMB`, :class:`FormulaTransformer`).

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

import contextlib
import re

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
from ._formula_data import _group_variables, _r_factors, _r_frame, _required
from ._formula_functions import _model_matrix
from ._formula_parse import (  # (GLMMDesign: public, and earlier pickles name it here)
    GLMMDesign,
    _check_finite_design,
    _own_columns,
    _parse,
    _term_string,
    design_matrix,
    parse_glmm_formula,
)
from ._formula_predictions import FormulaState
from ._formula_text import (
    _split_formula,
    check_brackets,
)
from ._frames import as_frame, as_pandas, check_rows_left
from ._validation_rows import (
    check_rows_aligned,
    labels_in_X_meant,
)
from ._warn import quiet
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
    (:func:`._formula_parse.random_only_design`); and the columns of ``X`` the term reads."""
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
    complete = _complete_rows(data, (w_all, off_all), (zero_inflation, dispersion))
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
    parts = _FamilyParts(data, keep, design.X, params)
    part_texts = [r for r in (zero_inflation, dispersion) if isinstance(r, str)]
    zero_inflation, dispersion = parts.add(zero_inflation, dispersion)
    params = parts.params  # (a zero part's parameters make a new dict)
    sample_weight = None if w_all is None else w_all[keep]
    y, trials, sample_weight, proportions_weights = _outcome(
        design, sample_weight, binomial, family
    )
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
    _check_finite_design(parts.X)
    if not design.random_effects:
        params["random_effects"] = None
    estimator = estimator_class(**params)
    with contextlib.ExitStack() as quieted, labels_in_X_meant():
        if not design.random_effects:  # asked for: a GLM, as glmmTMB fits it
            quieted.enter_context(quiet(NoRandomEffectsWarning))
        if proportions_weights:  # R's binomial weights: whole successes are what it asks
            quieted.enter_context(quiet(message="trials is not a whole number"))
        estimator.fit(parts.X, y, **fit_params)
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
        (*design.random_only_columns, *(c for _, cols in parts.own_specs for c in cols)),
        design.random_only_specs + tuple(parts.own_specs),
        part_texts,
        # (a column the zero-inflation or dispersion model reads too is needed by every
        # prediction: z in (0 + z | g) with ziformula = ~ z)
        [c for c in design.random_only_columns if c not in parts.columns],
    )
    return estimator


def _complete_rows(data: pd.DataFrame, row_values, part_rhs) -> np.ndarray:
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


def _outcome(design, sample_weight, binomial: bool, family):
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
