"""The result tables of a fit, made from its arrays when first read.

A fit keeps its estimates as arrays (:class:`FitArrays`, ``fit_result_.arrays``).
The pandas tables users read (``fixed_effects_``, ``ranef_``, ``random_effects_cov_``)
are made from them on first access and kept from then on as ordinary instance attributes: building
them costs more than the rest of a small fit's bookkeeping, and the many refits of
cross-validation, bootstraps and profiles seldom read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats


class FactorArrays(NamedTuple):
    """One grouping factor's estimates, in original units."""

    name: str
    levels: pd.Index
    terms: list  # names of its random-effect terms
    cov: np.ndarray  # (q, q) covariance of its random effects
    modes: np.ndarray  # (n_levels, q) conditional modes


@dataclass
class FitArrays:
    """What the result tables of one fit are made of."""

    terms: list  # fixed-effect rows: "(Intercept)" (when fitted), then the features
    estimate: np.ndarray  # NaN for columns dropped as aliased
    std_error: np.ndarray
    vcov: np.ndarray  # covariance of the estimated (not aliased) fixed effects
    vcov_terms: list
    factors: list = field(default_factory=list)  # FactorArrays, in the fit's factor order
    # the family's coefficient tables (zero_inflation_effects_, dispersion_effects_) by
    # attribute: (design, internal coefficients, their covariance, boundary estimate or None)
    blocks: dict = field(default_factory=dict)


class fitted_table:
    """A fitted attribute made by ``build(arrays)`` on first access, then kept.

    A non-data descriptor: the value made is stored in the instance ``__dict__``
    under the attribute's own name, where it shadows the descriptor, so that later
    reads, assignments, ``vars``, copies and pickles treat it as any attribute set by
    ``fit``. Without the arrays of a fit (an unfitted estimator) the attribute does
    not exist: reading it raises ``AttributeError`` and ``hasattr`` is False.
    """

    names: set = set()  # the attributes made this way, which a new fit drops

    def __init__(self, build):
        self.build = build

    def __set_name__(self, owner, name):
        self.name = name
        fitted_table.names.add(name)

    def __repr__(self):
        return f"<fitted attribute {self.name!r}, made when first read>"

    def __get__(self, est, owner=None):
        if est is None:
            return self
        result = est.__dict__.get("fit_result_")
        if result is None:
            raise AttributeError(
                f"{type(est).__name__!r} object has no attribute {self.name!r}",
                name=self.name,
                obj=est,
            )
        value = self.build(result.arrays)
        est.__dict__[self.name] = value
        return value


def drop_tables(est) -> None:
    """Forget the tables made from an earlier fit (before ``est`` gets a new one)."""
    for name in fitted_table.names:
        est.__dict__.pop(name, None)


def block_effects(attribute: str):
    """The builder of a family block's coefficient table (``dispersion_effects_``): its
    estimates in the user's units with Wald tests, or AttributeError when the fitted
    family has no such block."""

    def build(a: FitArrays) -> pd.DataFrame:
        parts = a.blocks.get(attribute)
        if parts is None:
            raise AttributeError(f"this model has no {attribute!r}", name=attribute)
        from ._zero_inflation import effects_table

        design, coefs, V, at_bound, user_V = parts
        table = effects_table(design, coefs, V, user_V)
        if at_bound is not None:  # a constant on its boundary: no standard error
            table["estimate"] = at_bound
            table[["std_error", "z_value", "p_value"]] = np.nan
        return table

    return build


def fixed_effects(a: FitArrays) -> pd.DataFrame:
    """Estimates, standard errors and Wald tests, one row per fixed-effect term."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(a.std_error > 0, a.estimate / a.std_error, np.nan)
    return pd.DataFrame(
        {
            "estimate": a.estimate,
            "std_error": a.std_error,
            "z_value": z,
            "p_value": 2 * stats.norm.sf(np.abs(z)),
        },
        index=pd.Index(a.terms, name="term"),
    )


def vcov_fixed(a: FitArrays) -> pd.DataFrame:
    """Covariance matrix of the estimated fixed effects, labelled by term."""
    return pd.DataFrame(a.vcov, index=list(a.vcov_terms), columns=list(a.vcov_terms))


def random_effects_cov(a: FitArrays) -> dict:
    """Per factor, the covariance matrix of its random effects."""
    return {f.name: pd.DataFrame(f.cov, index=f.terms, columns=f.terms) for f in a.factors}


def ranef(a: FitArrays) -> dict:
    """Per factor, the conditional modes (levels x terms)."""
    return {f.name: pd.DataFrame(f.modes, index=f.levels, columns=f.terms) for f in a.factors}
