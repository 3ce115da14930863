"""Prediction from raw data for formula fits: the formula's state and the methods that
read a DataFrame of the formula's variables (:class:`_RawDataPredictions`), as R's
``predict(m, newdata, re.form, type)``; the estimator classes that inherit them are in
:mod:`sklearn_glmm._formula_model`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _num_samples

from ._count_glmm import _CountGLMM
from ._estimator_predict import MISSING_LABELS_SAID
from ._frames import as_pandas
from ._validation_rows import check_rows_aligned
from ._warn import user_stacklevel, warn

_NA_TEXT = {"NA", "~0", "~-1", "NAN"}


@dataclass(frozen=True)
class FormulaState:
    """What prediction from raw data needs to know about the formula fitted."""

    formula: str
    bars: tuple  # _BarTerm of the formula, in order
    offsets: tuple[str, ...]  # the expressions inside offset(...)
    model_spec: object  # formulaic's spec of the fixed part
    fixed_variables: tuple[str, ...]  # data columns the fixed part reads
    offset_variables: tuple[str, ...]  # data columns the offset() terms read
    group_variables: tuple[str, ...]  # data columns the grouping factors read
    offset_column: str | None = None  # glmer(offset="column")
    offset_array: bool = False  # glmer(offset=array): predict cannot rebuild it
    # random-effect terms' own columns (_formula_parse._bar_only_columns)
    random_only_specs: tuple = ()
    random_variables: tuple = ()  # data columns only the random effects read
    random_columns: tuple = ()  # random-only columns only the random effects read


def _check_numeric_columns(model_spec, data: pd.DataFrame) -> None:
    """Raise for variables the fit coded as numbers that the new data hold as text or
    True/False (formulaic would code them as categories and fail with a list of the
    columns it generated)."""
    numeric = [
        name
        for name, (kind, _) in getattr(model_spec, "encoder_state", {}).items()
        if getattr(kind, "value", None) == "numerical" and name in data.columns
    ]
    kinds = pd.api.types
    text = [
        c
        for c in numeric
        if not kinds.is_numeric_dtype(data[c].dtype) or kinds.is_bool_dtype(data[c].dtype)
    ]
    if text:
        raise ValueError(
            f"the data's column(s) {text} were numbers at fit but are {data[text[0]].dtype} "
            "here: convert them to numbers (e.g. pd.to_numeric, or .astype(float) for "
            "True/False) before predicting."
        )


@dataclass
class _NewData:
    """Inputs for the estimator's methods, and the rows they describe."""

    X: object
    groups: object
    offset: object
    population: str
    rows: np.ndarray | None = None  # complete rows of a raw frame; None: all rows

    def fill(self, values):
        """Scatter predictions of the complete rows into all rows (NaN elsewhere)."""
        if self.rows is None:
            return values
        values = np.asarray(values)
        out = np.full((len(self.rows),) + values.shape[1:], np.nan)
        out[self.rows] = values
        return out

    def require_complete(self, what: str):
        if self.rows is not None:
            bad = np.flatnonzero(~self.rows)
            raise ValueError(
                f"{what} cannot be given for rows with a missing value in a variable of the "
                "model, or a value a transform of the formula makes not finite (row "
                f"position(s) {bad[:10].tolist()}); drop them, or use "
                "predict(..., type='response') / predict_proba, which give NaN for them as R's "
                "predict does."
            )


def _is_na(value) -> bool:
    if value is pd.NA:
        return True
    return isinstance(value, float) and np.isnan(value)


def _re_form_zero(re_form, state: FormulaState | None) -> bool:
    """Whether ``re_form`` sets the random effects to zero (R's ``re.form = NA``).

    ``None`` (R's ``NULL``) keeps them; a formula naming every random-effect term of the
    model (``"~(1 | id)"``) is the same as ``None``.
    """
    if re_form is None:
        return False
    if _is_na(re_form):
        return True
    if isinstance(re_form, str):
        text = re_form.replace(" ", "")
        if text.upper() in _NA_TEXT:
            return True
        if text.upper() == "NULL":
            return False
        if state is not None and text.startswith("~"):
            from ._formula_text import _split_formula

            try:
                bars = _split_formula("_" + re_form).bars
                same = _random_structure(bars) == _random_structure(state.bars)
            except ValueError:
                same = False
            if same:
                return False
    raise NotImplementedError(
        f"re_form={re_form!r} is not available: use None (R's re.form = NULL: random effects "
        "of the groups in the data) or NA / 'NA' / '~0' (R's re.form = NA: random effects at "
        "zero). A formula with only some of the random-effect terms is not read."
    )


def _random_structure(bars) -> dict:
    """The random effects bar terms give, whatever their spelling: for each grouping
    (its variables, as a set: ``g2:g1`` is ``g1:g2``, ``g1/g2`` is ``g1 + g1:g2``) the
    blocks of correlated effects (``(x | g)`` is ``(1 + x | g)``; ``(x || g)``,
    ``diag(x | g)`` and ``(1 | g) + (0 + x | g)`` are the same blocks). Raises
    ``ValueError`` for a term it cannot read."""
    from ._design import parse_term
    from ._formula_text import _group_parts

    out: dict = {}
    for bar in bars:
        if bar.structure is not None:
            blocks = {(bar.structure, bar.lhs.replace(" ", ""))}
        else:
            term = parse_term(bar.lhs)
            effects = ["1"] * term.intercept + [s.replace(" ", "") for s in term.slopes]
            if bar.diagonal:
                blocks = {frozenset([e]) for e in effects}
            else:  # (one block, a block per column, or the term's blocks)
                index = term.block_index
                blocks = {frozenset(e for e, b in zip(effects, index) if b == k) for k in index}
        for parts in _group_parts(bar.group):
            out.setdefault(frozenset(parts), set()).update(blocks)
    return out


def _population(population, zero: bool) -> str:
    if zero:
        if population == "marginal":
            raise ValueError(
                "re_form=NA sets every random effect to zero, population='marginal' averages "
                "over them: pass one of the two (population='marginal' without groups gives "
                "population-averaged predictions)."
            )
        return "zero"
    return "marginal" if population is None else population


def _warn_no_groups(state) -> None:
    """Warn that data without the grouping column(s) are predicted at the population
    level: lme4 raises there ("object not found") unless ``re.form = NA``."""
    if not state.group_variables:
        return
    warn(
        f"The data hold none of the grouping column(s) {list(state.group_variables)}: "
        "every row is predicted at the population level (averaged over the random "
        "effects; at random effects of zero for type='link'). Pass the grouping column(s) "
        "for predictions conditional on the groups, "
        "or re_form=NA or population='marginal' to ask for population-level predictions.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def _finite_rows(X, inputs: _NewData, complete) -> _NewData:
    """``inputs`` without the rows where a transform of the formula gave a value that
    is not finite (``log`` of 0 or of a negative number on new data): they predict NaN,
    as R's ``predict`` gives them, with a warning naming them (``complete``: the rows of
    ``X`` that ``inputs`` holds)."""
    numeric = inputs.X.select_dtypes("number")
    bad = ~np.isfinite(numeric.to_numpy(dtype=float)).all(axis=1)
    columns = [str(c) for c in numeric.columns[~np.isfinite(numeric.to_numpy(float)).all(axis=0)]]
    if inputs.offset is not None:
        off_bad = ~np.isfinite(np.asarray(inputs.offset, dtype=float))
        bad |= off_bad
        columns += ["the offset"] if off_bad.any() else []
    if not bad.any():
        return inputs
    kept = np.flatnonzero(complete)
    labels = list(X.index[kept[bad]][:3]) if isinstance(X, pd.DataFrame) else list(kept[bad][:3])
    warn(
        f"{int(bad.sum())} row(s) of the data (e.g. {labels}) give a value of {columns} that "
        "is not finite (a transform outside its domain: log of 0 or of a negative number, "
        "say): their predictions are NaN (R's predict gives NaN there, or -Inf on the "
        "link scale for a log of 0).",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    rows = np.array(complete, dtype=bool)
    rows[kept[bad]] = False
    if not rows.any():
        raise ValueError(
            f"Every row of the data gives a value of {columns} that is not finite (log of 0 "
            "or of a negative number, say): nothing to predict."
        )
    keep = np.flatnonzero(~bad)
    groups = None if inputs.groups is None else _safe_indexing(inputs.groups, keep)
    offset = None if inputs.offset is None else np.asarray(inputs.offset)[keep]
    return _NewData(inputs.X.iloc[keep], groups, offset, inputs.population, rows)


def _said(frame: pd.DataFrame) -> pd.DataFrame:
    """The grouping frame the front end made from the data: its missing labels (the
    population level asked for, or rows without a grouping value, warned of here) are
    not warned of again by the estimator (``MISSING_LABELS_SAID``)."""
    frame.attrs[MISSING_LABELS_SAID] = True
    return frame


class _RawDataPredictions:
    """Prediction methods that read a formula's variables from a DataFrame (see the module)."""

    _formula: FormulaState | None = None
    _fitted_rows: pd.Index | None = None  # data's index of the rows fitted

    def _forget_formula(self):
        self.__dict__.pop("_formula", None)
        for name in ("formula_", "ziformula_", "design_info_", "_fitted_rows"):
            self.__dict__.pop(name, None)

    # -- on the training rows ------------------------------------------------------------
    def _on_fitted_rows(self, values, name):
        rows = self._fitted_rows
        if rows is None or len(rows) != len(values):
            return values
        return pd.Series(values, index=rows, name=name)

    def fitted(self):
        """The estimator's ``fitted()`` as a Series indexed by the rows of ``data`` it was
        fitted on (R's named vector): rows dropped for missing values are not in it, and
        ``data["fit"] = m.fitted()`` puts NaN on them."""
        return self._on_fitted_rows(super().fitted(), "fitted")

    def residuals(self, *args, **kwargs):
        """The estimator's ``residuals(type)`` as a Series indexed by the rows of
        ``data`` it was fitted on, as :meth:`fitted`."""
        return self._on_fitted_rows(super().residuals(*args, **kwargs), "residuals")

    # -- telling raw data from the design ---------------------------------------------------
    def _is_raw(self, X, zero: bool = False) -> bool:
        state = self._formula
        if state is not None and isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
            raise TypeError(
                f"X is a numpy array of {X.dtype} values: a formula model predicts from a "
                "DataFrame holding the formula's variables by name (R's predict(m, newdata)), "
                "or from a numeric array of the design columns "
                f"{[str(c) for c in getattr(self, 'feature_names_in_', [])]}."
            )
        if state is None or not isinstance(X, pd.DataFrame):
            return False
        columns = set(map(str, X.columns))
        design = {str(c) for c in getattr(self, "feature_names_in_", [])}
        if columns == design:  # the design columns, as design_matrix builds them
            return False
        needed = set(state.fixed_variables)
        if zero:  # population level (re_form=NA): what only the random effects read is not
            needed -= set(getattr(state, "random_variables", ()))
        if needed <= columns:
            return True
        if design <= columns:
            return False
        missing = sorted(needed - columns)
        raise ValueError(
            f"The data lack the formula's variable(s) {missing} (formula {state.formula!r}). "
            "Pass a DataFrame holding the formula's variables, as R's predict(m, newdata), or "
            f"the design columns {sorted(design)}."
        )

    def _newdata(
        self, X, groups, offset, re_form, population, groups_read=True, r_call=False
    ) -> _NewData:
        """The estimator's inputs for ``X``, raw data or design (see the module);
        ``groups_read``: whether what is asked depends on the random effects (data without
        the grouping column(s) are then warned of); ``r_call``: R's
        ``predict(m, newdata, type = ...)``, whose data may be the design columns."""
        state = self._formula
        zero = _re_form_zero(re_form, state)
        asked = population
        population = _population(population, zero)
        if state is not None:  # polars and other libraries' frames: the variables by name
            X = as_pandas(X)
        if not self._is_raw(X, zero):
            if state is not None and offset is None and (state.offsets or state.offset_column):
                # the design's columns alone: the offset would silently be 0
                where = list(state.offsets) or [state.offset_column]
                raise ValueError(
                    f"X holds the design columns only, but the model's offset {where} is "
                    "part of every prediction (as in R): pass data holding the variables "
                    f"{sorted(state.offset_variables) or [state.offset_column]} "
                    "(R's predict(m, newdata)), or offset=... with the design columns."
                )
            if zero:
                groups = self._no_groups(_num_samples(X))
            elif state is not None and r_call and groups is None and asked is None and groups_read:
                # R's predict(m, newdata, type = ...) with design columns that are the
                # formula's variables too (a model with numeric predictors only): newdata
                # without its grouping column, said as for raw data. The estimator's calls
                # (predict_proba(X), scorers) with X the design: groups=None is the
                # population level, as documented there
                is_frame = isinstance(X, pd.DataFrame)
                if is_frame and set(map(str, X.columns)) == set(state.fixed_variables):
                    _warn_no_groups(state)
            return _NewData(X, groups, offset, population)
        from ._random_only import with_data_columns
        from .formula import design_matrix

        # population level (re_form=NA): the columns only the random effects read are
        # not used (lme4's predict(re.form = NA) does without them), zeros stand in
        unused = set(getattr(state, "random_variables", ())) if zero else set()
        spare = set(getattr(state, "random_columns", ())) if zero else set()
        used = [*state.fixed_variables, *state.offset_variables, state.offset_column]
        used = [c for c in used if c in X.columns and c not in unused]  # (absent offsets raise)
        complete = ~X[used].isna().any(axis=1).to_numpy()
        if not complete.any():
            raise ValueError("Every row of the data has a missing value in a variable used.")
        rows = None if complete.all() else complete
        data = X if rows is None else X.loc[complete]
        _check_numeric_columns(state.model_spec, data)
        X_design = design_matrix(state.model_spec, data, na_action="ignore")
        specs = getattr(state, "random_only_specs", ())  # (older pickles: none)
        specs = [(spec, cols) for spec, cols in specs if not set(cols) <= spare]
        if specs:
            from ._formula_parse import random_only_design

            extra = random_only_design(specs, data)
            data = data.assign(**{c: extra[c].to_numpy() for c in extra.columns})
        if spare:
            data = data.assign(**{c: np.zeros(len(data)) for c in spare})
        dates = [  # a structured term's time variable given as dates, as at fit
            c
            for c in getattr(self, "random_only_columns", None) or ()
            if c in data.columns and pd.api.types.is_datetime64_any_dtype(data[c].dtype)
        ]
        if dates:
            from ._formula_parse import time_values

            data = data.assign(**{c: time_values(data[c]) for c in dates})
        X_design = with_data_columns(self, X_design, data)
        groups = self._raw_groups(X, data, groups, zero, complete, asked, groups_read)
        # (the raw data's rows are its own: a fresh index too is compared)
        check_rows_aligned(X, {"offset": as_pandas(offset)}, rebuilt=False, frame="data")
        offset = self._raw_offset(data, offset, complete)
        return _finite_rows(X, _NewData(X_design, groups, offset, population, rows), complete)

    def _no_groups(self, n):
        """Groups with no known level: every row at the population level."""
        names = list(self.fit_result_.factor_order)
        if not names:
            return None
        return _said(pd.DataFrame({name: np.full(n, None, dtype=object) for name in names}))

    def _raw_groups(self, X, data, groups, zero, complete, population=None, groups_read=True):
        from ._formula_data import _group_frame

        state = self._formula
        if zero:
            return self._no_groups(len(data))
        present = [c for c in state.group_variables if c in X.columns]
        if groups is not None:
            if present:
                raise ValueError(
                    f"The data hold the grouping column(s) {present} and groups= was passed as "
                    "well: pass one of them."
                )
            return groups if complete.all() else _safe_indexing(groups, np.flatnonzero(complete))
        if not present:
            # no groups: population level, as the estimator without groups; lme4 raises
            # ("object not found") unless re.form = NA, so a data frame that lost its
            # grouping column is said, unless population= asked for that
            if population is None and groups_read:
                _warn_no_groups(state)
            return None
        missing = [c for c in state.group_variables if c not in X.columns]
        if missing:
            raise ValueError(
                f"The data hold the grouping column(s) {present} but not {missing}: pass all "
                "of them (predictions conditional on the groups), or none or re_form=NA "
                "(population level)."
            )
        gaps = [c for c in state.group_variables if data[c].isna().any()]
        if gaps:
            n_gaps = int(data[gaps].isna().any(axis=1).sum())
            warn(
                f"{n_gaps} row(s) of the data have no value of the grouping column(s) "
                f"{gaps}: they are predicted as rows of a new group of the factors reading "
                "that column (lme4 refuses them unless allow.new.levels = TRUE).",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        frame = _group_frame(state.bars, data)
        return _said(frame[list(self.fit_result_.factor_order)])

    def _raw_offset(self, data, offset, complete):
        from ._formula_functions import _shadowing
        from ._formula_parse import _offset

        state = self._formula
        parts = []
        if state.offsets:
            absent = [c for c in state.offset_variables if c not in data.columns]
            if absent:
                raise ValueError(
                    f"The data lack {absent}, used by the formula's offset() term(s) "
                    f"{list(state.offsets)}, which are part of every prediction (as in R)."
                )
            # (a column named as a function an offset calls is not read: R reads the
            # function; at fit such a column raised)
            unread = {c for e in state.offsets for c in _shadowing(f"I({e})", data)[0]}
            data = data.drop(columns=sorted(unread - set(state.offset_variables), key=str))
            parts.append(_offset(state.offsets, data, "ignore").to_numpy(dtype=float))
        if state.offset_column is not None:
            if state.offset_column in data.columns:
                parts.append(data[state.offset_column].to_numpy(dtype=float))
            elif offset is None:
                raise ValueError(
                    f"The data lack the column {state.offset_column!r}, the model's offset "
                    "(glmer(offset=...)); add it, or pass offset=... ."
                )
        if parts and offset is not None:
            raise ValueError(
                "The model's offset is read from the data (its offset() terms or offset column); "
                "do not pass offset= as well."
            )
        if parts:
            return np.sum(parts, axis=0)
        if offset is None and state.offset_array:
            warn(
                "The model was fitted with an offset given as an array; predictions from data "
                "take it as 0 (as lme4's predict with newdata does). Pass offset=... to "
                "predict, or name a column (offset='log_exposure') or write offset() in the "
                "formula so that it is read from the data.",
                UserWarning,
                stacklevel=4,
            )
            return np.zeros(int(np.sum(complete)))  # said once: 0, as the warning says
        if offset is not None:  # (by position, its order checked against the data's)
            offset = np.asarray(offset, dtype=float)
            if not complete.all():
                offset = offset[complete]
        return offset

    # -- R's type= on predict -------------------------------------------------------------
    def _predict_type(self, inputs: _NewData, type):
        family = self.fit_result_.family
        zero_part = any(b.prefix == "zi" for b in family.blocks)
        if type == "response" or (type == "conditional" and not zero_part):
            # without a zero part, glmmTMB's "conditional" mean is the response's
            mu = super().predict_mean(
                inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
            )
            return inputs.fill(mu)
        if type == "link":
            # rows without a known group: random effects at zero (no average on this scale)
            eta, _ = self._linear_predictor(inputs.X, inputs.groups, inputs.offset, "zero")
            return inputs.fill(eta)
        if type in ("zprob", "zlink", "conditional") and zero_part:
            # glmmTMB's: the probability of a structural zero (zero inflation) or of a zero
            # (a hurdle: a truncated family's ziformula), and the conditional model's mean:
            # the count model's without the zero inflation, or a hurdle's mean of the
            # positive counts. Neither zero part depends on the random effects, so both
            # are the mean over the random effects divided by 1 - pi.
            pi = _CountGLMM.predict_zero_inflation(self, inputs.X)
            if type == "zprob":
                return inputs.fill(pi)
            if type == "zlink":  # glmmTMB's: the zero part's linear predictor, logit(pi)
                return inputs.fill(special.logit(pi))
            mu = super().predict_mean(
                inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
            )
            return inputs.fill(mu / (1.0 - pi))
        if type == "disp" and any(b.prefix == "disp" for b in family.blocks):
            # glmmTMB's: each row's dispersion (NB2 theta, NB1 / beta-binomial phi)
            return inputs.fill(self.predict_dispersion(inputs.X))
        raise ValueError(
            f"type must be 'response', 'link', 'conditional' or None (and 'zprob' or "
            f"'zlink' for a zero-inflated or hurdle model, 'disp' for a family with a "
            f"dispersion), got "
            f"{type!r}."
        )

    # -- methods taking raw data ---------------------------------------------------------------
    def predict_mean(self, X, groups=None, *, offset=None, population=None, re_form=None):
        """Expected outcome; see the estimator's ``predict_mean``.

        ``X`` may hold the formula's variables (see :mod:`sklearn_glmm._formula_model`);
        ``re_form=NA`` is R's ``re.form = NA`` (random effects at zero). Rows with a
        missing value in a variable used give NaN.
        """
        inputs = self._newdata(X, groups, offset, re_form, population)
        mu = super().predict_mean(
            inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
        )
        return inputs.fill(mu)

    def predict_dispersion(self, X):
        """Each row's dispersion; see the estimator's ``predict_dispersion``.

        ``X`` may hold the formula's variables (glmmTMB's ``predict(m, newdata, type =
        "disp")``). Rows with a missing value in a variable used give NaN.
        """
        inputs = self._newdata(X, None, None, None, None, groups_read=False)
        return inputs.fill(super().predict_dispersion(inputs.X))

    def predict_interval(self, X, groups=None, *, offset=None, re_form=None, **kwargs):
        """Predictions with intervals; see the estimator's ``predict_interval``.

        ``X`` may hold the formula's variables; ``re_form=NA`` sets random effects to zero.
        """
        inputs = self._newdata(X, groups, offset, re_form, kwargs.pop("population", None))
        inputs.require_complete("predict_interval")
        table = super().predict_interval(
            inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population, **kwargs
        )
        if isinstance(X, pd.DataFrame):
            table.index = X.index
        return table

    def marginal_means(self, X, *, offset=None, **kwargs):
        """Conditional and marginal means; see the estimator's ``marginal_means``.

        ``X`` may hold the formula's variables.
        """
        inputs = self._newdata(X, None, offset, None, None, groups_read=False)
        inputs.require_complete("marginal_means")
        return super().marginal_means(inputs.X, offset=inputs.offset, **kwargs)

    def contrast(self, X1, X0, *, offset1=None, offset0=None, **kwargs):
        """Average contrasts; see the estimator's ``contrast``. ``X1`` and ``X0`` may hold
        the formula's variables."""
        one = self._newdata(X1, None, offset1, None, None, groups_read=False)
        zero = self._newdata(X0, None, offset0, None, None, groups_read=False)
        one.require_complete("contrast")
        zero.require_complete("contrast")
        return super().contrast(one.X, zero.X, offset1=one.offset, offset0=zero.offset, **kwargs)
