"""``clmm(formula, data)``: the cumulative link mixed model from an ``ordinal::clmm`` formula."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import ordinal
from ._formula_args import check_formula_first, check_r_arguments, resolve_n_agq
from ._formula_model import _RAW_NOTE
from ._formula_predictions import _RawDataPredictions
from ._frames import as_frame, check_rows_left
from ._validation_rows import labels_in_X_meant
from ._warn import user_stacklevel, warn


class OrdinalGLMM(_RawDataPredictions, ordinal.OrdinalGLMM):
    __doc__ = "Cumulative link mixed model fitted from a formula." + _RAW_NOTE

    def fit(self, X, y, groups=None, *, sample_weight=None, offset=None):
        """Fit as :class:`sklearn_glmm.OrdinalGLMM` does (the formula is forgotten)."""
        self._forget_formula()
        return super().fit(X, y, groups=groups, sample_weight=sample_weight, offset=offset)

    def _newdata(self, X, groups, offset, re_form, population, **kwargs):
        """The estimator's inputs; raw data also give the columns of the scale model only
        (``scale_only_columns``), from the scale formula."""
        inputs = super()._newdata(X, groups, offset, re_form, population, **kwargs)
        only = self._scale_only()
        if not only or not self._is_raw(X):
            return inputs
        from .formula import design_matrix

        data = X if inputs.rows is None else X.loc[inputs.rows]
        try:
            frame = design_matrix(self.scale_design_info_, data)
        except ValueError as err:
            raise ValueError(
                f"the scale formula {self.scale_formula_!r} cannot be evaluated on these rows "
                f"(a missing value in a variable of the scale model only?): {err}"
            ) from None
        design = inputs.X.copy()
        for c in only:
            design[c] = frame[c].to_numpy()
        inputs.X = design
        return inputs

    def linear_predictor(self, X, groups=None, *, offset=None, re_form=None):
        """The linear predictor; ``X`` may hold the formula's variables."""
        inputs = self._newdata(X, groups, offset, re_form, "zero")
        return inputs.fill(super().linear_predictor(inputs.X, inputs.groups, offset=inputs.offset))

    def decision_function(self, X, groups=None, *, offset=None, re_form=None):
        """scikit-learn's class scores (see the estimator's method) from
        ``predict_proba``; ``X`` may hold the formula's variables. Rows with a missing
        value give NaN."""
        return ordinal.class_scores(self.predict_proba(X, groups, offset=offset, re_form=re_form))

    def predict_proba(self, X, groups=None, *, offset=None, population=None, re_form=None):
        """``P(Y = k)`` per class; ``X`` may hold the formula's variables (R's ``newdata``),
        ``re_form=NA`` sets the random effects to zero. Rows with a missing value give NaN."""
        inputs = self._newdata(X, groups, offset, re_form, population)
        proba = super().predict_proba(
            inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
        )
        return inputs.fill(proba)

    def predict(self, X, groups=None, *, offset=None, re_form=None, population=None):
        """The most probable class; ``X`` may hold the formula's variables."""
        inputs = self._newdata(X, groups, offset, re_form, population)
        inputs.require_complete("Classes")
        p = ordinal.OrdinalGLMM.predict_proba(
            self, inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
        )
        return self.classes_[np.argmax(p, axis=1)]


def clmm(
    formula: str,
    data: pd.DataFrame = None,
    link: str = "logit",
    threshold: str = "flexible",
    *,
    scale: str | None = None,
    nAGQ: int | None = None,  # noqa: N803 (R's name)
    n_agq: int | None = None,
    weights=None,
    offset=None,
    **estimator_params,
):
    """Fit a cumulative link mixed model from a formula, as ``ordinal::clmm`` does.

    Parameters
    ----------
    formula : str
        ``response ~ fixed terms + (1 | group) + ...`` with lme4's random-effect syntax
        (see :func:`sklearn_glmm.formula.parse_glmm_formula`). The response is best a
        pandas Categorical column, ordered or not (its categories' order is the
        scale's, as R's factor levels; ``class_order_``); other values are sorted (text
        as R sorts it),
        with a warning for three or more text labels. The fixed part's intercept is
        dropped (the thresholds play its role).
    data : pandas.DataFrame
        Long-format data (polars and other narwhals-readable frames are read as pandas).
    link : {"logit", "probit", "cloglog", "loglog", "cauchit"}, default="logit"
        clm's links (its definitions of cloglog and loglog).
    threshold : {"flexible", "equidistant", "symmetric"}, default="flexible"
    scale : str, default=None
        Scale effects, as ``ordinal::clmm2``'s ``scale = ~ x``: a one-sided formula
        (``"~ temp"``) whose terms set each row's latent scale,
        ``P(Y <= j) = F((alpha_j - eta) / exp(s' zeta))``. Its intercept is fixed at
        0, as clmm2's; factors are coded as R codes them (``tempwarm``). Columns that
        are not terms of the location formula enter the scale model only
        (``scale_only_columns``; clmm2's ``rating ~ contact, scale = ~ temp``).
        ``scale_effects_`` holds the coefficients, named as clmm2 names them, and
        ``scale_formula_`` the formula.
    nAGQ, n_agq : int, default=1
        Quadrature points (R's ``nAGQ``; 1 is the Laplace approximation). clmm's
        non-adaptive rule (negative ``nAGQ``) is not available.
    weights, offset : str or array-like of shape (n_rows,), default=None
        A column of ``data`` or one value per row.
    **estimator_params
        Further parameters of :class:`sklearn_glmm.OrdinalGLMM` (``max_iter``, ``tol``).

    Returns
    -------
    estimator : OrdinalGLMM
        Fitted, with ``formula_``; coefficients carry R's names (``tempwarm``) and
        thresholds clm's (``"1|2"``). Its prediction methods also take a DataFrame of
        the formula's variables.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_glmm.formula import clmm
    >>> wine = pd.read_csv("tests/fixtures/ordinal/wine.csv")  # doctest: +SKIP
    >>> wine["rating"] = pd.Categorical(wine["rating"], ordered=True)  # doctest: +SKIP
    >>> m = clmm("rating ~ temp + contact + (1 | judge)", wine)  # doctest: +SKIP
    >>> list(m.thresholds_.index)  # doctest: +SKIP
    ['1|2', '2|3', '3|4', '4|5']
    """
    from ._formula_data import _r_factors
    from ._formula_fit import _formula_state, _row_values, _total_offset
    from ._formula_parse import _parse, _term_name

    formula, data = check_formula_first(formula, data, "clmm")
    takes = ("formula", "data", "link", "threshold", "scale", "nAGQ", "weights", "offset")
    check_r_arguments(estimator_params, OrdinalGLMM, "clmm", takes)
    if nAGQ is not None and not isinstance(nAGQ, bool) and isinstance(nAGQ, int) and nAGQ < 0:
        raise ValueError(
            f"nAGQ={nAGQ}: clmm's non-adaptive quadrature (negative nAGQ) is not available; "
            "use nAGQ > 1 for adaptive Gauss-Hermite quadrature."
        )
    n_agq = resolve_n_agq(n_agq, nAGQ)
    data = as_frame(data)
    w_all = _row_values(weights, data, "weights")
    off_all = _row_values(offset, data, "offset")
    complete = np.ones(len(data), dtype=bool)
    for values in (w_all, off_all):
        if values is not None:
            complete &= ~np.isnan(values)
    complete &= _complete_in_scale(scale, data)  # R's na.omit drops them too
    design, keep = _parse(formula, data, complete)
    check_rows_left(data, keep)
    if design.random_only_columns:
        raise NotImplementedError(
            f"clmm: the random-effect term(s) of {formula!r} read columns the fixed part "
            f"does not have ({list(design.random_only_columns)}); give them in the fixed "
            "part too (for a factor f with an intercept, write (1 + f | g) for "
            "(0 + f | g): the same model)."
        )
    kept = _r_factors(data.loc[keep])  # the rows used, for the scale model
    scale_columns = _scale_columns(scale, kept)
    X_fit = design.X
    only = [c for c in scale_columns if c not in design.X.columns]
    scale_spec = None
    if only:  # columns of the scale model only
        frame, scale_spec = _scale_frame(scale, kept)
        X_fit = design.X.copy()
        for c in only:
            X_fit[c] = frame[c].to_numpy()
    estimator = OrdinalGLMM(
        random_effects=design.random_effects,
        link=link,
        threshold=threshold,
        scale=None if not scale_columns else " + ".join(map(_term_name, scale_columns)),
        scale_only_columns=only or None,
        n_agq=n_agq,
        **estimator_params,
    )
    with labels_in_X_meant():
        estimator.fit(
            X_fit,
            _r_ordered_text(design.y),
            groups=design.groups,
            sample_weight=None if w_all is None else w_all[keep],
            offset=_total_offset(design.offset, None if off_all is None else off_all[keep]),
        )
    estimator.formula_ = formula
    if scale_columns:
        estimator.scale_formula_ = "~" + str(scale).strip().lstrip("~").strip()
    if scale_spec is not None:  # new data's columns of the scale model only
        estimator.scale_design_info_ = scale_spec
    estimator.design_info_ = design.model_spec
    estimator._fitted_rows = design.X.index
    estimator._formula = _formula_state(formula, data, design.model_spec, offset)
    return estimator


def _r_ordered_text(y: pd.Series):
    """A text outcome whose R order (:mod:`._collation`, ``"mild" < "Moderate"``) is not
    Python's (upper case first) as a Categorical in R's order, as clmm's factor(y) has
    it; with three or more classes the warning that the order is the text's, not
    necessarily the scale's, is given here (the estimator trusts a Categorical)."""
    from ._collation import text_levels

    order = text_levels(y)
    if order is None or order == sorted(order):
        return y
    if len(order) >= 3:
        warn(
            f"the classes of y are text and y is not categorical: they are sorted as R sorts "
            f"them, and the model takes {order} as their order, lowest first. For another "
            "order pass an ordered pandas Categorical, e.g. "
            "pd.Categorical(y, categories=[...], ordered=True).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return pd.Series(pd.Categorical(y, categories=order), index=y.index, name=y.name)


def _scale_rhs(scale) -> str:
    if not isinstance(scale, str):
        raise TypeError(f"scale must be a one-sided formula such as '~ temp', got {scale!r}.")
    rhs = scale.strip()
    return rhs[1:].strip() if rhs.startswith("~") else rhs


def _scale_frame(scale, data: pd.DataFrame):
    """The R-named columns of a scale formula on ``data`` without the intercept, and the
    formula's fitted model spec (for new data)."""
    from ._formula_data import _r_frame
    from ._formula_functions import _model_matrix

    matrix = _model_matrix(_scale_rhs(scale), data)
    return _r_frame(matrix)[0], matrix.model_spec


def _complete_in_scale(scale, data: pd.DataFrame) -> np.ndarray:
    """Rows without a missing value in the scale formula's variables."""
    from ._formula_data import _required

    if scale is None:
        return np.ones(len(data), dtype=bool)
    rhs = _scale_rhs(scale)
    if not rhs or "|" in rhs:
        return np.ones(len(data), dtype=bool)
    variables = _required([rhs])  # (x.1 is one variable, not x)
    used = [v for v in data.columns if v in variables]
    return ~data[used].isna().any(axis=1).to_numpy()


def _scale_columns(scale, data: pd.DataFrame) -> list[str]:
    """The R-named columns of clmm2's scale formula (without its intercept, which clmm2
    fixes at 0)."""
    if scale is None:
        return []
    rhs = _scale_rhs(scale)
    if "|" in rhs:
        raise ValueError(
            f"scale={scale!r}: random effects in the scale model are not supported; the "
            "latent scale may depend on fixed predictors only (scale = ~ x)."
        )
    if rhs.replace(" ", "") in ("", "1", "0", "-1", "1-1", "1+-1"):
        return []
    return list(_scale_frame(scale, data)[0].columns)
