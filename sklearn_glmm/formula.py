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
``a %in% b`` is ``a:b``; ``.``, which formulaic reads differently, raises. The
variables of an interaction are in R's order, the order in which they first appear in
the formula (``y ~ f:x + z:f`` has the columns ``f...:z``), as lme4 names and orders
the columns; ``glmmTMB()`` in glmmTMB's (the first appearances counted in the formula
R's ``update()`` writes from the terms: ``~ lg:x + f * lg`` has lme4's ``lgTRUE:fb``
and glmmTMB's ``fb:lgTRUE``).

A binomial outcome's level order decides the class modelled, as in R: every level
but the first of a pandas Categorical is a success; strings are sorted as R sorts them
(:mod:`._collation`: ``"no"`` before ``"Yes"``; the levels of a text predictor too) and
``True`` is the success of a logical outcome.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._base import FORMULA_INTERCEPT
from ._formula_args import (
    check_formula_first,
    check_r_arguments,
    resolve_n_agq,
)
from ._formula_data import _r_factors, _r_frame
from ._formula_fit import (
    _dispersion_rhs,
    _estimator_class,
    _FamilyParts,
    _formula_state,
    _outcome_and_trials,
    _r_success_level,
    _row_values,
    _rows_with_values,
    _total_offset,
)
from ._formula_functions import _model_matrix
from ._formula_parse import (  # (GLMMDesign: public, and earlier pickles name it here)
    GLMMDesign,
    _check_finite_design,
    _parse,
    design_matrix,
    parse_glmm_formula,
)
from ._formula_text import _split_formula
from ._frames import as_frame, as_pandas, check_rows_left
from ._validation_rows import labels_in_X_meant
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
    complete = _rows_with_values(data, (w_all, off_all), (zero_inflation, dispersion))
    glmmtmb = function == "glmmTMB"
    lme4 = function == "glmer"
    design, keep = _parse(formula, data, complete, lme4=lme4, glm=glmmtmb, glmmtmb=glmmtmb)
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
    y, trials, sample_weight, proportions_weights = _outcome_and_trials(
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
