"""Zero inflation with its own predictors (glmmTMB's ``ziformula = ~ x``).

``zero_inflation="1 + time"`` gives the zero-inflation probability its own linear
predictor, ``logit pi_i = d_i' gamma``, over feature names in the term syntax of
``random_effects``. The engine sees the zero-inflation block with a design
(:mod:`sklearn_glmm._engine.blocks`): centred and scaled columns, as the
fixed-effect design is, with ``gamma = J gamma_internal`` mapped back exactly.
``zero_inflation=True`` stays the constant probability, with its boundary
treatment (a probability settled at 0 with a ``ZeroInflationWarning``); a term with
only an intercept (``"1"``) is the same model and is fitted as ``True``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._conditioning import decorrelating_map
from ._design import INTERCEPT, fixed_term_text, parse_term, resolve_features
from ._fit_result import sandwich

_WHAT = "zero_inflation"


@dataclass(frozen=True)
class ZeroInflationDesign:
    """The zero-inflation model's columns and the map from the internal scale.

    Attributes
    ----------
    names : list of str
        R's names of the coefficients, ``fixef(m)$zi``: ``"(Intercept)"``, ``"time"``.
    columns : list of int
        The feature columns of ``X`` (after the grouping columns are taken out).
    intercept : bool
    means, scales : ndarray
        Centring and scaling of those columns on the training rows.
    J : ndarray
        ``gamma = J gamma_internal``.
    rotation : ndarray or None
        ``R^-1`` of the slopes' decorrelation (``_conditioning.decorrelating_map``)
        when the centred and scaled slopes are nearly collinear, else None.
    """

    names: list
    columns: list
    intercept: bool
    means: np.ndarray
    scales: np.ndarray
    J: np.ndarray
    rotation: np.ndarray | None = None

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The design in the user's units, (n, p_zi)."""
        cols = [np.ones(X.shape[0])] if self.intercept else []
        cols += [X[:, j] for j in self.columns]
        return np.column_stack(cols) if cols else np.empty((X.shape[0], 0))

    def internal(self, X: np.ndarray) -> np.ndarray:
        """The design the optimiser sees: slopes centred (with an intercept) and scaled."""
        D = self.raw(X)
        k0 = int(self.intercept)
        D[:, k0:] = (D[:, k0:] - self.means) / self.scales
        if self.rotation is not None:
            D[:, k0:] = D[:, k0:] @ self.rotation
        return np.asfortranarray(D)

    def logit(self, X: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        """``logit pi`` of each row of ``X`` for coefficients ``gamma`` (user's units)."""
        return self.raw(X) @ gamma


def zero_inflation_term(spec, what: str = _WHAT):
    """``None`` (no zero inflation, or the constant: ``spec`` is a bool or an intercept
    alone), or the parsed term of a string ``spec``; a clear error for anything else.

    ``what`` names the estimator parameter: ``"zero_inflation"``, or ``"hurdle"`` for a
    hurdle model's zero part (``hurdle="1 + x"``, glmmTMB's ``truncated_*`` family with
    ``ziformula = ~ x``), which is written and fitted the same way.
    """
    if spec is None or isinstance(spec, (bool, np.bool_)):
        return None
    if not isinstance(spec, str):
        raise TypeError(
            f"{what} must be False, True or a term string such as '1 + time', got "
            f"{type(spec).__name__}."
        )
    text = fixed_term_text(
        spec,
        what,
        "a random effect in the zero-inflation model (glmmTMB's ziformula = ~ (1 | g)) is "
        "not supported; the probability of a zero may depend on fixed predictors only, "
        f"e.g. {what}='1 + time'.",
    )
    try:
        term = parse_term(text)
    except ValueError as err:
        raise ValueError(
            f"{what}={spec!r} is not a valid term: {err} Write fixed predictors by their "
            "feature names, e.g. '1 + time' or '0 + dose'."
        ) from None
    if term.diagonal or term.blocks or term.structure is not None:
        raise ValueError(
            f"{what}={spec!r}: diag(...), '||', blocks of terms and covariance structures apply "
            "to random effects only."
        )
    return None if not term.slopes else term


def make_design(term, X: np.ndarray, feature_names, what: str = _WHAT) -> ZeroInflationDesign:
    """The design of ``term`` on the training rows ``X`` (``what``: the estimator
    parameter that gave it, for messages; the dispersion model uses it too)."""
    names = list(feature_names)
    slopes, missing = resolve_features(term.slopes, names)
    if missing:
        raise ValueError(
            f"{what} names {missing}, which are not features of X; available: {names}."
        )
    term = dataclasses.replace(term, slopes=tuple(slopes))
    columns = [names.index(s) for s in term.slopes]
    V = X[:, columns]
    if term.intercept:
        means = V.mean(axis=0)
        scales = V.std(axis=0)
    else:
        means = np.zeros(len(columns))
        scales = np.sqrt(np.mean(V**2, axis=0))
    const = [s for s, sc in zip(term.slopes, scales) if not sc > 0]
    if const:
        raise ValueError(
            f"{what} predictor(s) {const} are constant in the training data (their "
            "coefficients are not identified with the intercept): remove them from the term."
        )
    k0 = int(term.intercept)
    J = np.eye(k0 + len(columns))
    for j in range(len(columns)):
        J[k0 + j, k0 + j] = 1.0 / scales[j]
        if k0:
            J[0, k0 + j] = -means[j] / scales[j]
    design = ZeroInflationDesign(
        ([INTERCEPT] if k0 else []) + list(term.slopes), columns, bool(k0), means, scales, J
    )
    D = design.internal(X)
    if np.linalg.matrix_rank(D) < D.shape[1]:
        raise ValueError(
            f"the {what} design {design.names} is rank deficient (a column is a linear "
            "combination of the others): remove the redundant predictor."
        )
    # nearly collinear slopes (an interaction or a raw polynomial far from 0) are
    # decorrelated, as the fixed effects are: the same model, whose optimum the
    # optimiser then reaches
    found = decorrelating_map(D[:, k0:])
    if found is not None:
        J = J.copy()
        J[:, k0:] = J[:, k0:] @ found[0]
        design = dataclasses.replace(design, J=J, rotation=found[0])
    return design


def effects_table(design: ZeroInflationDesign, gamma_internal, V_internal, V_user=None):
    """``zero_inflation_effects_`` (``dispersion_effects_``): estimates on the logit
    (log) scale in the user's units with Wald standard errors, z and p values, indexed
    like ``fixef(m)$zi`` (``fixef(m)$disp``). ``V_user``: the covariance in the user's
    units where it is not the design's map of ``V_internal`` (a separated fit's)."""
    J = design.J
    est = J @ gamma_internal
    V = sandwich(J, V_internal) if V_user is None else V_user
    var = np.diag(V)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(var > 0, np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
        z = est / se
    p = 2.0 * stats.norm.sf(np.abs(z))
    return pd.DataFrame(
        {"estimate": est, "std_error": se, "z_value": z, "p_value": p},
        index=pd.Index(design.names, name="term"),
    )


def constant_design() -> ZeroInflationDesign:
    """The constant model (``zero_inflation=True``, glmmTMB's ``ziformula = ~1``)."""
    return ZeroInflationDesign([INTERCEPT], [], True, np.zeros(0), np.ones(0), np.eye(1))


def values_at(est, Xa: np.ndarray, coefs: np.ndarray):
    """The family's values of its blocks for rows ``Xa`` at internal coefficients
    ``coefs`` (the parameters' family part): ``coefs`` itself when no block has a
    design, else a float per scalar block and each row's value per block with a design
    (``logit pi``, a dispersion's log scale)."""
    return est.fit_result_.block_values(Xa, coefs)
