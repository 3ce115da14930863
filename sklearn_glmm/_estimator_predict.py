"""The estimators' linear predictor and means for new data: the offset, the random
effects of the levels seen in fit (a new level's are 0), the family's own parameters per
row, the conditional or marginal mean. A mixin of the estimators' base class."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ._design import prediction_design
from ._fit_result import centring_offset
from ._frames import as_pandas
from ._group_columns import factor_columns
from ._labels import match_levels
from ._validation import (
    as_float_vector,
    check_offset_scale,
)
from ._validation_rows import check_rows_aligned
from ._warn import user_stacklevel, warn

# a grouping frame's ``attrs`` key: its missing labels are the caller's own (the formula
# front end's population level, or rows it has warned of), not warned of again
MISSING_LABELS_SAID = "sklearn_glmm_missing_labels_said"


def _warn_split_rows(res, known_rows) -> None:
    """Warn where rows have a known level of one of a group of factors that group the
    rows identically and a new level of another (``fit_record_.aliased``): their
    prediction reads how the covariance is split between those factors, which the data
    do not determine (a new class in a known school under ``(1 | school/class)`` with
    one class per school)."""
    for group in getattr(res.record, "aliased", ()):
        if len(known_rows) <= max(group):
            continue
        known = np.array([known_rows[k] for k in group])
        mixed = known.any(axis=0) & ~known.all(axis=0)
        if mixed.any():
            names = [res.factors[k].name for k in group]
            warn(
                f"{int(mixed.sum())} row(s) have a known level of some of the grouping "
                f"factors {names} and a new level of others. These factors group the "
                "fitted rows identically, so the data do not determine how the random "
                "effects' variance is split between them, and these rows' predictions "
                "read that split (the reported one, of largest determinant, is a "
                "convention). Rows whose levels are all known, or all new, do not.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )


class _Predictions:
    """Predictions' linear predictor and means (a mixin of the estimators' base class:
    it reads their fitted attributes)."""

    # -- prediction -----------------------------------------------------------
    def _given_offset(self, offset, n: int) -> np.ndarray:
        """The rows' offset (0 when None), with a warning when the model was fitted with
        one and none is given."""
        if offset is None and getattr(self, "_fit_offset", False):
            warn(
                "the model was fitted with an offset, and these predictions have none: "
                "they take it as 0 (an exposure of 1). Pass offset= for the rows' own "
                "(in cross-validation, route it: set_score_request(offset=True)), or "
                "offset=0 to say so.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        off = as_float_vector(offset, "offset", n, default=0.0)
        check_offset_scale(off)
        return off

    def _linear_predictor(self, X, groups, offset, population, known_groups=True):
        """Mean and variance of the linear predictor for each row of X.

        Known levels contribute their conditional modes. Rows whose level is
        unknown (or ``groups=None``, or every row with ``known_groups=False``)
        contribute nothing with ``population="zero"`` (lme4's ``re.form = NA``), or
        their random effect's variance with ``population="marginal"`` (averaged over
        the random-effect distribution).
        """
        check_is_fitted(self, "coef_")
        if population not in ("marginal", "zero"):
            raise ValueError(f"population must be 'marginal' or 'zero', got {population!r}.")
        check_rows_aligned(X, {"groups": as_pandas(groups), "offset": as_pandas(offset)})
        Xa, groups_from_X = self._validate_X(X, reset=False)
        named = getattr(self, "_group_columns_fit", None)  # predict(X, groups="id") after fit
        if groups is None or (isinstance(groups, str) and [groups] == named):
            groups = groups_from_X
        elif groups_from_X is not None:
            raise ValueError(
                "Pass either groups or group_columns, not both: this model reads its grouping "
                f"factors from X's columns {list(map(str, groups_from_X.columns))}."
            )
        n = Xa.shape[0]
        off = self._given_offset(offset, n)
        res = self.fit_result_
        eta = Xa[:, : len(self.coef_)] @ self.coef_ + self.intercept_ + off
        if res.scaling.get("centred"):  # on the fit's scale: its blocks' values pair with it
            eta += centring_offset(res.scaling, self.coef_)
        var = np.zeros(n)
        if not res.factors:
            return eta, var
        if groups is not None:
            by_name = factor_columns(groups, res.factor_order, n)
        lams = res.internal_lambdas() if population == "marginal" else None
        gaps, known_rows = {}, []
        for k, f in enumerate(res.factors):
            S = self.random_effects_cov_[f.name].to_numpy()
            if groups is None or not known_groups:
                codes = np.full(n, -1)
            else:
                codes = match_levels(f.levels, by_name[f.name], f.name)
                n_missing = int(pd.isna(pd.Series(by_name[f.name], dtype=object)).sum())
                if n_missing:
                    gaps[f.name] = n_missing
            known = codes >= 0
            known_rows.append(known)
            B = self.ranef_[f.name].to_numpy()
            if population == "zero":
                # the rows of no known group read no random-effect column (a structured
                # term's time there need not be one its effects can be extended to)
                if known.any():
                    Z, _ = prediction_design(f, Xa[known], S)
                    eta[known] += np.einsum("nq,nq->n", Z, B[codes[known]])
                continue
            # ar1 and ou at a new time: Z b is the conditional mean there, v_new the rest
            Z, v_new = prediction_design(f, Xa, S)
            eta[known] += np.einsum("nq,nq->n", Z[known], B[codes[known]])
            if population == "marginal":
                if f.structure is None:  # (ar1 and ou: Z and S of the new times)
                    var[~known] += res.z_variance(k, Z[~known], lams[k])
                else:
                    var[~known] += np.einsum("nq,qr,nr->n", Z[~known], S, Z[~known])
                var += v_new
        _warn_split_rows(res, known_rows)
        if gaps and not getattr(groups, "attrs", {}).get(MISSING_LABELS_SAID):
            warn(
                f"groups has missing labels (NaN or None) of the grouping factor(s) {gaps} "
                "(rows per factor): those rows are predicted as rows of a new group of that "
                "factor (lme4 refuses them unless allow.new.levels = TRUE). Give their "
                "labels, or pass population-level predictions on purpose with a label no "
                "group has.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        # z'Sz >= 0; rounding can leave -1e-17 when S is singular
        return eta, np.maximum(var, 0.0)

    def _mean(self, eta, var, extra):
        """E[Y] given a normal linear predictor with mean ``eta`` and variance ``var``
        (``extra``: the family's values for these rows, ``_family_values``)."""
        return self.fit_result_.family.mean_over_normal(eta, var, extra)

    def _family_values(self, X=None, column: bool = False):
        """The family's values of its blocks for the rows of ``X`` (the training rows when
        None): the fitted scalars, or for a block with a design (zero inflation, the
        dispersion) each row's value (``logit pi``, ``log theta``). ``column`` shapes
        per-row values (n, 1), to broadcast against (n, K) tables."""
        res = self.fit_result_
        if X is None or res.block_designs is None:
            return res.family_values(column=column)
        return res.family_values(self._validate_X(X, reset=False)[0], column)

    def predict_dispersion(self, X):
        """Each row's dispersion (glmmTMB's ``predict(m, newdata, type = "disp")``).

        The family's dispersion on its reported scale: NB2 ``theta``, NB1 or
        beta-binomial ``phi``; from the rows' predictors with a dispersion model
        (``dispersion="1 + x"``), the constant otherwise.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        dispersion : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "coef_")
        res = self.fit_result_
        blocks = res.family.blocks
        k = next((i for i, b in enumerate(blocks) if b.prefix == "disp"), None)
        if k is None:
            raise ValueError(
                f"this {type(self).__name__} ({res.family.r_name}) has no dispersion parameter."
            )
        n = self._validate_X(X, reset=False)[0].shape[0]
        if res.disp_design is None:
            return np.full(n, getattr(self, blocks[k].attribute), dtype=float)
        return np.asarray(blocks[k].to_reported(self._family_values(X)[k]), dtype=float)

    def predict_mean(self, X, groups=None, *, offset=None, population="marginal"):
        """Expected outcome (probability for binomial, mean count otherwise).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
            Known levels use their conditional modes; unseen levels and ``None``
            get population-level predictions. A DataFrame's columns are matched to
            the fitted factors by name (in any order); an array's by position.
        offset : array-like of shape (n_samples,), default=None
        population : {"marginal", "zero"}, default="marginal"
            For rows without a known level: ``"marginal"`` averages over the
            random-effect distribution (population-averaged, the calibrated
            prediction for a new group); ``"zero"`` sets the random effect to
            zero (lme4's ``re.form = NA``, the "typical" group).

        Returns
        -------
        mu : ndarray of shape (n_samples,)
        """
        eta, var = self._linear_predictor(X, groups, offset, population)
        return self._mean(eta, var, self._family_values(X))
