"""Model terms of the fixed effects, Wald tests per term (car::Anova) and GVIFs.

A *term* is a group of fixed-effect columns tested together: the dummy columns
of a factor, the columns of an interaction. Terms come from

* the formula of a fit made by :func:`sklearn_glmm.formula.glmer` (formulaic's
  model spec, stored as ``design_info_``), as R reads them from ``terms(fit)``;
* otherwise every column of ``X`` is its own term, unless the caller groups
  columns with ``terms={"name": [columns]}``.

car's type II tests respect marginality: a term is tested after the terms it is
contained in are set aside. Containment is read from the variables of each term
(``f:x`` contains ``f`` and ``x``). Terms given by the caller take their
variables from their names split at ``:``, and a term also contains every term
whose columns' names (split at ``:``) its own columns' names include (the columns
``fb:x``, ``fc:x`` contain ``fb``, ``fc`` and ``x``, whatever the terms are called).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, stats

from ._design import INTERCEPT
from ._fit_result import sandwich
from ._warn import user_stacklevel, warn


@dataclass(frozen=True)
class Terms:
    """The fixed-effect terms of a fit.

    Attributes
    ----------
    names : list of str
        Term labels in model order, without the intercept.
    columns : dict of str to list of str
        Fixed-effect names (rows of ``fixed_effects_``) of each term.
    variables : dict of str to frozenset
        The variables each term involves, for containment (marginality).
    intercept : bool
        Whether the model has an intercept.
    treatment : frozenset or None
        Terms coded with treatment contrasts (formula fits); None when the
        coding is not known (columns given directly).
    numeric : frozenset
        The numeric (not categorical) variables of a formula fit.
    """

    names: list
    columns: dict
    variables: dict
    intercept: bool
    treatment: frozenset | None = None
    numeric: frozenset = frozenset()


def _formula_terms(est) -> Terms | None:
    """Terms from a formula fit's model spec, or None when they cannot be matched."""
    spec = getattr(est, "design_info_", None)
    if spec is None or not hasattr(spec, "structure"):
        return None
    fixed = list(est.fit_result_.fixed_names)
    # the estimator's X is the model matrix without its intercept column, in order
    positions = [i for i, c in enumerate(spec.column_names) if c != "Intercept"]
    if len(positions) != len(fixed):
        return None
    name_of = dict(zip(positions, fixed))
    names, columns, variables, treatment = [], {}, {}, set()
    for entry in spec.structure:
        label = str(entry.term).replace(" ** ", "^")  # R's spelling, as the coefficients'
        if label == "1":
            continue
        idx = [spec.column_names.index(c) for c in entry.columns]
        names.append(label)
        columns[label] = [name_of[i] for i in idx]
        variables[label] = frozenset(str(f) for f in entry.term.factors)
        # formulaic names a treatment-coded level f[T.level]
        if any("[T." in str(c) for c in entry.columns):
            treatment.add(label)
    kinds = getattr(spec, "encoder_state", None) or {}
    # formulaic's kind of each variable (Factor.Kind.NUMERICAL's value)
    numeric = frozenset(
        v for v, st in kinds.items() if getattr(st[0], "value", None) == "numerical"
    )
    return Terms(names, columns, variables, bool(est.fit_intercept), frozenset(treatment), numeric)


def _user_terms(est, terms: dict | None) -> Terms:
    """Each column its own term, except the groups the caller names."""
    fixed = list(est.fit_result_.fixed_names)
    terms = {} if terms is None else dict(terms)
    owner = {}
    for label, cols in terms.items():
        cols = [cols] if isinstance(cols, str) else list(cols)
        unknown = [c for c in cols if c not in fixed]
        if unknown:
            raise ValueError(
                f"terms[{label!r}] names {unknown}, which are not fixed-effect columns; "
                f"the columns are {fixed}."
            )
        for c in cols:
            if c in owner:
                raise ValueError(f"column {c!r} is in two terms: {owner[c]!r} and {label!r}.")
            owner[c] = label
        terms[label] = cols
    names, columns = [], {}
    for c in fixed:
        label = owner.get(c, c)
        if label not in columns:
            names.append(label)
            columns[label] = terms.get(label, [c])
    variables = _contained_variables(names, columns)
    _warn_split_interactions(names, columns)
    return Terms(names, columns, variables, bool(est.fit_intercept))


def _column_parts(cols) -> frozenset:
    return frozenset(part for c in cols for part in str(c).split(":"))


def _contained_variables(names, columns) -> dict:
    """Each term's variables for containment: its label's parts, and the label parts of
    every term whose columns' parts its own columns' parts include."""
    parts = {t: _column_parts(columns[t]) for t in names}
    out = {}
    for t in names:
        found = set(t.split(":"))
        for s in names:
            if s != t and parts[s] <= parts[t]:
                found |= set(s.split(":"))
        out[t] = frozenset(found)
    return out


def _warn_split_interactions(names, columns) -> None:
    """Warn where an interaction's columns are split over terms so that no term contains
    a term whose columns they include (a factor grouped, its interaction columns not):
    its type II test could not set the interaction aside."""
    parts = {t: _column_parts(columns[t]) for t in names}
    for t in names:
        if len(columns[t]) < 2:
            continue
        partners = [
            s
            for s in names
            if s != t
            and not parts[t] <= parts[s]
            and any(_column_parts([c]) & parts[s] for c in columns[t])
            and all(len(str(c).split(":")) > 1 for c in columns[s])
        ]
        if partners:
            warn(
                f"Anova: the interaction columns {partners} include columns of the term "
                f"{t!r} but are not one term that contains it, so its type II test cannot "
                f"set them aside (car's marginality). Group them: terms={{'{t}:...': "
                f"{[c for s in partners for c in columns[s]]}}}.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )


def model_terms(est, terms: dict | None = None) -> Terms:
    """The fixed-effect terms of ``est`` (see the module notes)."""
    if terms is None:
        found = _formula_terms(est)
        if found is not None:
            return found
    return _user_terms(est, terms)


# ---------------------------------------------------------------------------
# Wald tests (car::Anova for glmer and glmmTMB fits)
# ---------------------------------------------------------------------------


def _coefficients(est):
    """(names, estimates, covariance) of the estimated (not aliased) fixed effects."""
    V = est.fit_result_.vcov_fixed
    names = list(V.index)
    b = est.fixed_effects_["estimate"].loc[names].to_numpy(dtype=float)
    return names, b, V.to_numpy(dtype=float)


def _wald(L: np.ndarray, b: np.ndarray, V: np.ndarray) -> tuple[float, int]:
    """Wald chi-square of ``L b = 0`` and its degrees of freedom (rows of ``L``)."""
    Lb = L @ b
    S = sandwich(L, V)
    # on the unit-diagonal scale: coefficients of very different units (x and x^2 with x
    # near 1e4) made S numerically singular although their correlation is not
    d = np.sqrt(np.diag(S))
    try:
        if not np.all(d > 0):
            raise ValueError("a hypothesis without variance")
        stat = float((Lb / d) @ linalg.solve(S / np.outer(d, d), Lb / d, assume_a="sym"))
    except (np.linalg.LinAlgError, ValueError):
        stat = np.nan
    return stat, L.shape[0]


def _testable(idx, b, V) -> bool:
    """Whether the estimates and covariance a test reads are finite."""
    return bool(np.all(np.isfinite(b[idx])) and np.all(np.isfinite(V[np.ix_(idx, idx)])))


def _warn_untested(untested) -> None:
    if untested:
        warn(
            f"Anova: the terms {untested} cannot be tested (Chisq and p are NaN): the "
            "covariance of the coefficients they involve is not finite (see the fit's "
            "StandardErrorWarning).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _complement(H1: np.ndarray, H2: np.ndarray, V: np.ndarray) -> np.ndarray:
    """car's ``t(ConjComp(t(H1), t(H2), V))``: the part of ``H2`` conjugate to ``H1``.

    The rows span the hypotheses of ``H2`` whose estimates are uncorrelated with
    those of ``H1`` (the inner product is ``V``), so a higher-order term's
    coefficients do not enter the test of the lower-order one.
    """
    M = sandwich(H2, V, H1)
    U, s, _ = np.linalg.svd(M, full_matrices=True)
    rank = int(np.sum(s > max(M.shape) * np.finfo(float).eps * (s[0] if len(s) else 0.0)))
    return U[:, rank:].T @ H2


def _indices(names: list, columns: list) -> list:
    return [names.index(c) for c in columns if c in names]


def _row(stat: float, df: int) -> tuple:
    if df == 0:
        return np.nan, 0, np.nan
    return stat, df, float(stats.chi2.sf(stat, df))


def type2_rows(est, info: Terms) -> list:
    """(term, Chisq, Df, p) for every term, type II (car's ``Anova.II.mer``)."""
    names, b, V = _coefficients(est)
    eye = np.eye(len(names))
    rows, untested = [], []
    for term in info.names:
        own = _indices(names, info.columns[term])
        relatives = [
            t for t in info.names if t != term and info.variables[term] <= info.variables[t]
        ]
        rel = [i for t in relatives for i in _indices(names, info.columns[t])]
        if not own:
            rows.append((term, *_row(np.nan, 0)))
            continue
        if not _testable(rel + own, b, V):
            rows.append((term, np.nan, len(own), np.nan))
            untested.append(term)
            continue
        H2 = eye[rel + own]
        L = H2 if not rel else _complement(eye[rel], H2, V)
        L = L[~np.all(np.abs(L) < 1e-12, axis=1)]
        rows.append((term, *(_row(*_wald(L, b, V)) if len(L) else _row(np.nan, 0))))
    _warn_untested(untested)
    return rows


def type3_rows(est, info: Terms) -> list:
    """(term, Chisq, Df, p) for the intercept and every term, type III."""
    names, b, V = _coefficients(est)
    eye = np.eye(len(names))
    labels = ([INTERCEPT] if info.intercept else []) + list(info.names)
    columns = {INTERCEPT: [INTERCEPT], **info.columns}
    rows, untested = [], []
    for term in labels:
        own = _indices(names, columns[term])
        if own and not _testable(own, b, V):
            rows.append((term, np.nan, len(own), np.nan))
            untested.append(term)
            continue
        rows.append((term, *(_row(*_wald(eye[own], b, V)) if own else _row(np.nan, 0))))
    _warn_untested(untested)
    return rows


# ---------------------------------------------------------------------------
# (generalized) variance inflation factors
# ---------------------------------------------------------------------------


def gvif_rows(est, info: Terms) -> list:
    """(term, VIF) from the fixed effects' correlation matrix (performance / car::vif).

    ``det(R_tt) det(R_oo) / det(R)`` for the columns ``t`` of a term and ``o`` of
    the others (Fox & Monette's generalized VIF; the usual VIF for one column).
    """
    names, _, V = _coefficients(est)
    keep = [i for i, n in enumerate(names) if n != INTERCEPT]
    sd = np.sqrt(np.diag(V))
    R = (V / np.outer(sd, sd))[np.ix_(keep, keep)]
    kept = [names[i] for i in keep]
    det_all = np.linalg.det(R)
    rows = []
    for term in info.names:
        own = _indices(kept, info.columns[term])
        if not own:
            continue
        rest = [i for i in range(len(kept)) if i not in own]
        value = np.linalg.det(R[np.ix_(own, own)]) * np.linalg.det(R[np.ix_(rest, rest)])
        rows.append((term, float(value / det_all)))
    return rows


def vif_interval(vif: np.ndarray, n: int, p: int, level: float) -> tuple:
    """performance's interval for a VIF, from one for ``R^2 = 1 - 1/VIF`` on the logit scale.

    ``n`` is the number of rows and ``p`` the number of fixed effects.
    """
    vif = np.asarray(vif, dtype=float)
    r = 1.0 - 1.0 / vif
    se = np.sqrt((1.0 - r**2) ** 2 * (n - p - 1) ** 2 / ((n**2 - 1) * (n + 3)))
    z = stats.norm.ppf((1.0 + level) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        se_logit = se / (r * (1.0 - r))
        centre = np.log(r / (1.0 - r))
        lo = 1.0 / (1.0 + np.exp(-(centre - z * se_logit)))
        hi = 1.0 / (1.0 + np.exp(-(centre + z * se_logit)))
        lo, hi = 1.0 / (1.0 - lo), 1.0 / (1.0 - hi)
    # a VIF of 1 (uncorrelated terms; a rounding unit below it from the covariance's
    # arithmetic) has no interval: R gives [1, Inf]
    one = r <= 4.0 * np.finfo(float).eps
    return np.where(one, 1.0, lo), np.where(one, np.inf, hi)
