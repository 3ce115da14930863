"""Random-effect structure: parse terms and build per-factor blocks.

A *factor* is one grouping variable (a column of ``groups``). Each factor ``f``
has ``q_f`` random-effect terms (an intercept and/or slope columns of ``X``)
and a lower-triangular relative covariance factor ``Lambda_f(theta)`` of size
``q_f x q_f``: ``b_f = Lambda_f u_f`` with ``u_f ~ N(0, I)``.
The covariance parameters ``theta`` are the lower-triangular elements of every
``Lambda_f``, column by column (lme4's order), or only its diagonal for an
uncorrelated (``diag(...)`` or ``||``) term. A structured term over a time
variable (``"ar1(day)"``, ``"cs(wave)"``, ``"toep(wave)"``, ``"ou(time)"``) has one
random effect per distinct value of that column of X, and its covariance is
parametrised by a structure (``_engine.covariance``) whose parameters the optimiser sees instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ._engine.covariance import make_structure
from ._engine.groups import level_constant_from_spread, level_spread, spread_sd
from ._group_columns import (
    _factorize,
    factor_names,
    groups_columns,
)
from ._warn import user_stacklevel, warn
from .exceptions import IdentifiabilityWarning

INTERCEPT = "(Intercept)"


@dataclass(frozen=True)
class Term:
    """A parsed random-effects term such as ``"1 + time"``."""

    intercept: bool
    slopes: tuple[str, ...]
    diagonal: bool
    # a structured covariance over the levels of a time variable: ``"ar1(day)"`` has
    # structure "ar1" and time "day"; its random effects are named by the levels
    structure: str | None = None
    time: str | None = None
    level_names: tuple[str, ...] = ()
    # correlated blocks of columns, uncorrelated with each other (lme4's
    # ``(1 + x | g) + (0 + z | g)``): their sizes in the order of ``names``, the
    # intercept's block first; empty for one block (or one per column, ``diagonal``)
    blocks: tuple[int, ...] = ()

    @property
    def names(self) -> list[str]:
        if self.structure is not None:
            return list(self.level_names)
        return ([INTERCEPT] if self.intercept else []) + list(self.slopes)

    @property
    def block_index(self) -> np.ndarray:
        """The correlated block of each of ``names`` (one block for an unstructured or a
        structured term, one per column for a diagonal one): effects of two blocks are
        uncorrelated."""
        return block_index(len(self.names), self.diagonal, self.blocks)

    def block_texts(self) -> list[str]:
        """Each correlated block as a term of its own (``"1 + x"``, ``"0 + z"``)."""
        index, names = self.block_index, self.names
        out = []
        for k in range(int(index.max()) + 1):
            block = [n for n, b in zip(names, index) if b == k]
            parts = ["1" if n == INTERCEPT else n for n in block]
            out.append(" + ".join(parts if parts[0] == "1" else ["0", *parts]))
        return out


def block_index(q: int, diagonal: bool, blocks: tuple = ()) -> np.ndarray:
    """The block of each of ``q`` effects: one per effect (``diagonal``), one per size in
    ``blocks``, or one for all (:attr:`Term.block_index`)."""
    if diagonal:
        return np.arange(q)
    return np.repeat(np.arange(len(blocks) or 1), blocks or (q,))


def fixed_term_text(spec: str, what: str, random_message: str) -> str:
    """The term string of a model part with fixed predictors only (zero inflation,
    a dispersion or scale model), without R's leading ``~``; a random effect (``|``)
    raises, ``random_message`` saying what to write instead."""
    text = spec.strip()
    if text.startswith("~"):
        text = text[1:].strip()
    if "|" in text:
        raise ValueError(f"{what}={spec!r}: {random_message}")
    return text


def parse_term(term: str) -> Term:
    """Parse lme4-style term syntax.

    Accepted: ``"1"``, ``"1 + time"``, ``"time"`` (implies an intercept, as in
    lme4), ``"0 + time"`` / ``"-1 + time"`` (no intercept), an uncorrelated
    version written ``"diag(1 + time)"`` (glmmTMB) or ``"1 + time ||"`` (lme4's
    ``||``), and correlated blocks uncorrelated with each other written as a sum of
    parenthesised terms, ``"(1 + time) + (0 + dose)"`` (lme4's
    ``(1 + time | g) + (0 + dose | g)``).
    """
    if not isinstance(term, str):
        raise TypeError(f"random_effects terms must be strings, got {type(term).__name__}.")
    text = term.strip()
    structured = _structured_term(text, term)
    if structured is not None:
        return structured
    pieces = _block_pieces(text)
    if pieces is not None:
        return _blocks_term([parse_term(p) for p in pieces], term)
    diagonal = False
    m = re.fullmatch(r"diag\s*\((.*)\)", text)
    if m:
        text, diagonal = m.group(1), True
    m = re.fullmatch(r"us\s*\((.*)\)", text)
    if m:
        text = m.group(1)
    if "||" in text:
        text, diagonal = text.replace("||", " "), True
    if "|" in text:
        raise ValueError(
            f"Invalid random_effects term {term!r}: write only the left-hand side of lme4's "
            "'(... | group)'; the grouping factor comes from `groups`."
        )
    if re.search(r"[+-]\s*$", text):  # (R reads no sum that ends with its operator either)
        raise ValueError(
            f"Invalid random_effects term {term!r}: it ends with {text.strip()[-1]!r}, so a "
            "term is missing after it (e.g. '1 + time')."
        )
    parts = _signed_parts(text)
    if not parts:
        raise ValueError(f"Empty random_effects term {term!r}; use '1' for a random intercept.")
    intercept = True
    slopes: list[str] = []
    for p in parts:
        if p == "1":
            intercept = True
        elif p in ("0", "- 1", "-1", "+ -1"):
            intercept = False
        elif p.startswith("-"):
            if p.replace(" ", "") == "-1":
                intercept = False
            else:
                raise ValueError(f"Cannot remove {p!r} in random_effects term {term!r}.")
        else:
            if p in slopes:
                raise ValueError(f"Slope {p!r} repeated in random_effects term {term!r}.")
            slopes.append(p)
    if not intercept and not slopes:
        raise ValueError(f"random_effects term {term!r} has no intercept and no slope.")
    return Term(intercept, tuple(slopes), diagonal)


def _block_pieces(text: str) -> list[str] | None:
    """The parenthesised terms of a sum of them (``"(1 + x) + (0 + z)"`` ->
    ``["1 + x", "0 + z"]``), or None for a term that is not such a sum."""
    if not text.startswith("("):
        return None
    parts = _signed_parts(text)
    if not all(p.startswith("(") and p.endswith(")") and _balanced(p[1:-1]) for p in parts):
        return None
    return [p[1:-1].strip() for p in parts]


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _blocks_term(parts: list[Term], term: str) -> Term:
    """The term of correlated blocks ``parts`` (each a correlated term, or a diagonal one:
    a block per column), uncorrelated with each other; the intercept's block first."""
    if any(p.structure is not None or p.blocks for p in parts):
        raise ValueError(
            f"random_effects term {term!r}: the parenthesised blocks of a sum hold plain "
            "terms such as '1 + time' or '0 + dose' (no covariance structures or nested sums)."
        )
    blocks: list[tuple[bool, tuple]] = []
    for p in parts:
        if p.diagonal:
            blocks += [(True, ())] if p.intercept else []
            blocks += [(False, (s,)) for s in p.slopes]
        else:
            blocks.append((p.intercept, p.slopes))
    blocks.sort(key=lambda b: not b[0])  # (the intercept's block first, as in names)
    intercepts = sum(b[0] for b in blocks)
    slopes = [s for b in blocks for s in b[1]]
    repeated = sorted({s for s in slopes if slopes.count(s) > 1})
    if intercepts > 1 or repeated:
        what = "the intercept" if intercepts > 1 else f"{repeated}"
        raise ValueError(
            f"random_effects term {term!r} has {what} in more than one block: give each "
            "column in one block, e.g. '(1 + time) + (0 + dose)'."
        )
    sizes = tuple(int(b[0]) + len(b[1]) for b in blocks)
    if len(sizes) == 1:
        return Term(bool(intercepts), tuple(slopes), False)
    if max(sizes) == 1:
        return Term(bool(intercepts), tuple(slopes), True)
    return Term(bool(intercepts), tuple(slopes), False, blocks=sizes)


def _signed_parts(text: str) -> list[str]:
    """The terms of a sum, split at its ``+`` and ``-`` outside parentheses, brackets and
    backquotes (``"1 + log(z + 1) - x"`` -> ``["1", "log(z + 1)", "-x"]``): a removed
    term keeps its minus sign. (Quotes of strings are inside calls; a name's apostrophe,
    ``fO'Neil``, is not one.)"""
    parts, current, depth, quote = [], "", 0, None
    for ch in text:
        if quote is not None:
            quote = None if ch == quote else quote
        elif ch == "`" and current.strip() in ("", "-"):  # (a name R quotes)
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch in "+-":
            parts.append(current.strip())
            current = "-" if ch == "-" else ""
            continue
        current += ch
    parts.append(current.strip())
    return [p for p in parts if p.strip("- ")]


def is_whole_term_name(name: str) -> bool:
    """Whether a term's sum reads ``name`` as one name: no ``+`` or ``-`` outside its
    parentheses, which balance (a factor level's ``age18-30`` or ``x)`` do not)."""
    depth = 0
    for ch in name:
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
        if depth < 0 or (depth == 0 and ch in "+-"):
            return False
    return depth == 0 and not name.startswith("`")


def resolve_features(names, feature_names) -> tuple[list[str], list[str]]:
    """The features a term's ``names`` name, and the names naming none. A name is a
    feature as written, or, written in backquotes, the feature inside them: R's quoting
    of a name holding ``+``, ``-`` or spaces (```age_18-30```, a factor level's column),
    which a term's sum would otherwise split."""
    features = set(feature_names)
    found, missing = [], []
    for name in names:
        if name in features:
            found.append(name)
        elif len(name) > 2 and name[0] == name[-1] == "`" and name[1:-1] in features:
            found.append(name[1:-1])
        else:
            missing.append(name)
    return found, missing


#: covariance structures over the levels of a time variable (``"ar1(day)"``)
TIME_STRUCTURES = ("ar1", "cs", "toep", "ou")


def _structured_term(text: str, term: str) -> Term | None:
    """``"ar1(day)"``, ``"cs(wave)"``, ``"ou(time)"``: the structure over one time
    variable, one random effect per distinct value; None for other terms."""
    m = re.fullmatch(r"([A-Za-z]\w*)\s*\((.*)\)", text)
    if m is None or m.group(1) not in TIME_STRUCTURES:
        if m is not None and m.group(1) in ("exp", "gau", "mat", "rr", "homdiag"):
            raise ValueError(
                f"The covariance structure {m.group(1)}() in random_effects term {term!r} is "
                f"not available; available: us(...), diag(...), "
                f"{', '.join(f'{n}(time)' for n in TIME_STRUCTURES)}."
            )
        return None
    name, inner = m.group(1), m.group(2).strip()
    inner = re.sub(r"^0\s*\+\s*|\s*\+\s*0$", "", inner).strip()
    if not re.fullmatch(r"[^\s+|()]+", inner):
        raise ValueError(
            f"Invalid random_effects term {term!r}: {name}() takes one time variable, a "
            f"column of X, as in '{name}(day)' (one random effect per distinct value; "
            "no intercept or other terms)."
        )
    return Term(False, (), False, name, inner)


@dataclass
class Factor:
    """One grouping factor: its levels, the rows' level codes and its Z columns."""

    name: str
    term: Term
    levels: pd.Index
    codes: np.ndarray  # (n_samples,) int, level index of every row
    slope_idx: list[int]  # column indices in X of the slope terms
    theta_rows: np.ndarray = field(default=None)  # row index in Lambda of each theta element
    theta_cols: np.ndarray = field(default=None)
    structure: object = None  # a structured covariance (``_engine.covariance``)
    time_idx: int | None = None  # column of X holding the time variable
    time_levels: np.ndarray = None  # its sorted distinct values, one random effect each

    @property
    def q(self) -> int:
        return len(self.term.names)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def z_matrix(self, X: np.ndarray) -> np.ndarray:
        """Columns of Z for this factor, shape (n_samples, q)."""
        if self.structure is not None:
            return time_indicators(self, X[:, self.time_idx])
        cols = []
        if self.term.intercept:
            cols.append(np.ones(X.shape[0]))
        cols.extend(X[:, j] for j in self.slope_idx)
        return np.column_stack(cols)


def time_values(t) -> np.ndarray:
    """A time variable's values as time points: each rounded to 15 significant digits,
    as R's ``factor()`` and glmmTMB's ``numFactor()`` label them, so that values equal
    to that precision are one time point (``0.3`` and ``0.1 * 3``, which differ in their
    last bit, would otherwise be two, one more step of an ``ar1`` chain, or a singular
    ``ou`` correlation). Each distinct value is rounded once."""
    t = np.asarray(t, dtype=float)
    if not t.size:
        return t
    values, where = np.unique(t, return_inverse=True)
    rounded = np.array([float(f"{v:.15g}") if np.isfinite(v) else v for v in values])
    return rounded[where.reshape(t.shape)]


def _time_positions(levels: np.ndarray, t) -> tuple[np.ndarray, np.ndarray]:
    """Each value's position among the sorted time ``levels`` and whether it is one of
    them: equal to a level, or equal to it to 15 significant digits (:func:`time_values`;
    the levels of a model pickled before they were rounded are matched as they are)."""
    t = np.asarray(t, dtype=float)
    pos = np.clip(np.searchsorted(levels, t), 0, len(levels) - 1)
    seen = levels[pos] == t
    if not seen.all():
        rounded = time_values(levels)
        other = np.flatnonzero(~seen)
        r = time_values(t[other])
        p = np.clip(np.searchsorted(rounded, r), 0, len(levels) - 1)
        hit = rounded[p] == r
        pos[other[hit]], seen[other[hit]] = p[hit], True
    return pos, seen


def time_indicators(factor: Factor, t: np.ndarray) -> np.ndarray:
    """One indicator column per time level of a structured factor; a value not among
    the levels seen in fit has no random effect to predict with, and raises."""
    levels = factor.time_levels
    t = np.asarray(t, dtype=float)
    pos, seen = _time_positions(levels, t)
    unseen = ~seen
    if unseen.any():
        raise ValueError(
            f"{factor.term.structure}({factor.term.time}) of factor {factor.name!r}: "
            f"{int(unseen.sum())} row(s) have {factor.term.time} values not seen in fit "
            f"(e.g. {float(t[unseen][0])!r}); its random effects are one per value seen in fit "
            f"({len(levels)} values), so rows at other times cannot be predicted"
            + (
                " here (predict, predict_proba and predict_mean extend ar1 and ou to new times)."
                if factor.structure.extends_in_time
                else f": {factor.term.structure} has no covariance for a new time (one SD per "
                "time, or one correlation per lag)."
            )
        )
    Z = np.zeros((len(t), len(levels)))
    Z[np.arange(len(t)), pos] = 1.0
    return Z


def prediction_design(factor: Factor, X: np.ndarray, S: np.ndarray):
    """Z for predictions and each row's variance beyond ``Z b``, shape ((n, q), (n,)).

    A structured factor whose covariance extends in time (``ar1``, ``ou``) predicts
    at a time not seen in fit with the conditional normal of the random effect there
    given the fitted ones: its row of Z is ``S^{-1} c`` (``c`` its covariances with
    them), so ``Z b`` is the conditional mean, and ``sigma^2 - c' S^{-1} c`` is the
    variance left. Other factors: ``z_matrix`` and no extra variance.
    """
    n = X.shape[0]
    st = factor.structure
    if st is None or not st.extends_in_time:
        return factor.z_matrix(X), np.zeros(n)
    levels = factor.time_levels
    t = time_values(X[:, factor.time_idx])
    pos, seen = _time_positions(levels, t)
    Z = np.zeros((n, len(levels)))
    Z[np.flatnonzero(seen), pos[seen]] = 1.0
    extra = np.zeros(n)
    if not seen.all():
        try:
            C, v = st.new_time_covariance(S, levels, t[~seen])
        except ValueError as e:
            raise ValueError(
                f"{factor.term.structure}({factor.term.time}) of factor {factor.name!r}: {e}."
            ) from None
        W = C @ np.linalg.pinv(S, hermitian=True)
        Z[~seen] = W
        extra[~seen] = np.maximum(v - np.einsum("nq,nq->n", W, C), 0.0)
    return Z, extra


def _time_levels(name: str, term: Term, X, feature_names: list[str]):
    """Column index and sorted distinct values of a structured term's time variable."""
    if term.time not in feature_names:
        raise ValueError(
            f"random_effects term {term.structure}({term.time}) for factor {name!r} names "
            f"{term.time!r}, which is not a feature. Available features: {feature_names}."
        )
    if X is None:
        raise ValueError(f"{term.structure}({term.time}) needs the data X to find its levels.")
    j = feature_names.index(term.time)
    t = np.asarray(X[:, j], dtype=float)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"The time variable {term.time!r} has missing or infinite values.")
    levels = np.unique(time_values(t))
    if len(levels) < 2:
        raise ValueError(
            f"{term.structure}({term.time}) for factor {name!r} needs at least two distinct "
            f"values of {term.time!r}; it has {len(levels)}."
        )
    return j, levels


# a structured term over this many time values or more, of which no group has more than
# a quarter, is told of its cost (one random effect per value in every group)
_MANY_TIMES = 50


def _check_sparse_times(name: str, term: Term, codes, t, levels) -> None:
    """Warn when a structured term's time variable has many values that the groups do
    not share (a continuous measurement read as time points): each group still has one
    random effect per value, and the fit's cost grows with the cube of their number."""
    T = len(levels)
    if T < _MANY_TIMES:
        return
    pos = np.searchsorted(levels, time_values(np.asarray(t, dtype=float)))
    most = int(np.max(np.bincount(np.unique(codes * T + pos) // T)))
    if 4 * most > T:
        return
    warn(
        f"{term.structure}({term.time}) of factor {name!r}: {term.time!r} has {T} distinct "
        f"values but no group has more than {most} of them. Every group has one random "
        f"effect per value ({T}), and the fit's cost grows with the cube of that number "
        f"(minutes for 200 values). If {term.time!r} is a continuous measurement rather "
        "than time points the groups share, round it to a grid of time points; if the "
        "groups are measured over different stretches of one calendar (staggered entry), "
        "count the time from each group's first, if that is the model meant.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def _level_label(time: str, v: float) -> str:
    """``day3``, ``date20230101``, ``t0.7``: the shortest digits that give back the value
    (distinct times never share a name, as glmmTMB's level names)."""
    return f"{time}{np.format_float_positional(float(v), trim='-')}"


def theta_layout(q: int, diagonal: bool, blocks: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """Row/column positions in Lambda of each theta element (column-major lower
    triangle; within each block of ``blocks``, the sizes of uncorrelated blocks)."""
    if diagonal:
        idx = np.arange(q)
        return idx, idx.copy()
    block = block_index(q, diagonal, blocks)
    rows, cols = [], []
    for c in range(q):
        for r in range(c, q):
            if block[r] == block[c]:
                rows.append(r)
                cols.append(c)
    return np.array(rows), np.array(cols)


def build_factors(
    groups, random_effects, feature_names: list[str], n_samples: int, X=None
) -> list[Factor]:
    """Build every factor's block from ``groups`` and ``random_effects``.

    ``random_effects`` is a term string applied to every factor, or a dict
    ``{factor name: term}`` naming each factor exactly once.
    """
    names = factor_names(groups)
    cols = groups_columns(groups, n_samples, strings_as_arrays=True)
    if len(set(names)) != len(names):
        raise ValueError(f"groups has duplicated factor names {names}.")
    if isinstance(random_effects, dict):
        unknown = set(map(str, random_effects)) - set(names)
        missing = set(names) - set(map(str, random_effects))
        if unknown or missing:
            raise ValueError(
                f"random_effects names factors {sorted(map(str, random_effects))} but groups has "
                f"factors {names}; give one term per grouping factor."
            )
        terms = {str(k): v for k, v in random_effects.items()}
    elif isinstance(random_effects, str):
        terms = dict.fromkeys(names, random_effects)
    else:
        raise TypeError(
            "random_effects must be a term string such as '1 + time' or a dict "
            f"{{factor name: term}}, got {type(random_effects).__name__}."
        )
    factors = []
    for name, values in zip(names, cols):
        term = parse_term(terms[name])
        slopes, missing = resolve_features(term.slopes, feature_names)
        if missing:
            raise ValueError(
                f"random_effects term for factor {name!r} names {missing[0]!r}, which is not a "
                f"feature. Available features: {feature_names}."
            )
        term = replace(term, slopes=tuple(slopes))
        slope_idx = [feature_names.index(s) for s in slopes]
        codes, levels = _factorize(name, values, n_samples)
        structure, time_idx, time_levels = None, None, None
        if term.structure is not None:
            time_idx, time_levels = _time_levels(name, term, X, feature_names)
            _check_sparse_times(name, term, codes, X[:, time_idx], time_levels)
            labels = tuple(_level_label(term.time, v) for v in time_levels)
            term = replace(term, level_names=labels)
            structure = make_structure(term.structure, time_levels)
        rows, colsl = theta_layout(len(term.names), term.diagonal, term.blocks)
        factors.append(
            Factor(
                name,
                term,
                levels,
                codes.astype(np.intp),
                slope_idx,
                rows,
                colsl,
                structure,
                time_idx,
                time_levels,
            )
        )
    # Largest factor first: it is the one whose block stays block-diagonal.
    factors.sort(key=lambda f: -f.n_levels * f.q)
    return factors


# a slope whose mean is this many SDs from zero has a column nearly collinear with the
# intercept's (cosine above 0.995)
_UNCENTRED_RATIO = 10.0


def far_from_zero(X: np.ndarray, names) -> list[tuple[str, float, float]]:
    """``(name, mean, SD)`` of the columns of ``X`` whose mean is more than
    :data:`_UNCENTRED_RATIO` standard deviations from zero (calendar years, a shifted
    scale)."""
    X = np.asarray(X, dtype=float)
    return _far_from_zero(names, np.mean(X, axis=0), np.std(X, axis=0))


def _far_from_zero(names, means, sds) -> list[tuple[str, float, float]]:
    """:func:`far_from_zero` from the columns' means and SDs."""
    return [
        (name, float(mean), float(sd))
        for name, mean, sd in zip(names, means, sds)
        if sd > 0.0 and abs(mean) > _UNCENTRED_RATIO * sd
    ]


def slope_spread(factor: Factor, X: np.ndarray, rows=None) -> np.ndarray | None:
    """:func:`~._engine.groups.level_spread` of ``factor``'s slope variables (the
    columns of ``X`` its slopes read) on the ``rows`` with weight above 0 (None: every
    row), or None where it has none (or a structure): what :func:`check_slope_variables`
    reads. A partitioned fit pools its partitions'."""
    if factor.structure is not None or not factor.slope_idx:
        return None
    X = np.asarray(X[:, list(factor.slope_idx)], dtype=float)
    return level_spread(factor.codes, X, rows)


def has_level_slopes(spread: np.ndarray | None) -> bool:
    """Whether a slope variable of this :func:`slope_spread` is a predictor of the level
    itself (:func:`~._engine.groups.level_constant_columns`)."""
    return spread is not None and bool(level_constant_from_spread(spread).any())


def check_slope_variables(factor: Factor, spread: np.ndarray | None) -> None:
    """The warnings of :func:`check_slopes_vary_within_levels` and
    :func:`check_uncentred_uncorrelated` from the slope variables' spread
    (:func:`slope_spread`)."""
    if spread is None:
        return
    check_slopes_vary_within_levels(factor, spread)
    check_uncentred_uncorrelated(factor, spread)


def check_aliased_factors(factors, aliased) -> None:
    """Warn when grouping factors group the rows identically (each level of one is one
    level of the other: ``(1 | school/class)`` with one class per school, or a factor
    given twice under two names) and the likelihood reads their covariances only
    together (``aliased``: the model data's
    :func:`~._engine.equal_likelihood.aliased_groups`, factor indices in the order of
    ``factors``): the split between them is not determined, and the fit reports no
    standard errors for it."""
    for group, _ in aliased:
        names = [factors[k].name for k in group]
        listed = ", ".join(repr(n) for n in names)
        warn(
            f"grouping factors {listed} group the rows identically (each level of one is "
            "one level of the other), and the likelihood reads their random effects' "
            "covariances only together: some changes of one, offset by the other's, leave "
            "it unchanged (for random intercepts, only the sum of their variances counts). "
            "How it is split between them is not determined: the reported split (where it "
            "can be, the one of largest determinant) is one of many with the same "
            "likelihood, without standard errors. Keep one of them, with the random effects "
            "of all (for random intercepts alone, the model with one of the factors is the "
            "same model).",
            IdentifiabilityWarning,
            stacklevel=user_stacklevel(),
        )


def check_slopes_vary_within_levels(factor: Factor, spread: np.ndarray) -> None:
    """Warn when a random slope's variable does not vary (or hardly varies) within the
    levels of its factor (a predictor of the level itself: a school's treatment arm, a
    site's altitude; :func:`~._engine.groups.level_constant_columns`).

    Each level then has one random effect's worth of information, ``b0 + b1 x``, and the
    slope's variance and correlation are identified only through how the spread between
    levels changes with ``x``: weakly, with a likelihood that can have several optima.
    Poisson fits with such a slope ended converged up to 39 in log-likelihood below
    another optimum; the fit restarts from several points (``restarts``), which finds
    it on most such data, not all.

    Not for a term without an intercept whose levels each read one column (``(0 +
    trt | id)``, ``diag(0 + arm0 + arm1)`` with an indicator per arm, ``(0 + dose |
    site)``): each column's variance is then that of its levels' effects, a random
    intercept's of its own levels (the correlations of a correlated term are not
    identified at all, and said so with the fit's standard errors).
    """
    names = factor.term.names[1:] if factor.term.intercept else factor.term.names
    alone = not factor.term.intercept
    for name, flat, shared in zip(names, level_constant_from_spread(spread), spread[5]):
        if not flat or (alone and shared == 0):
            continue
        warn(
            f"grouping factor {factor.name!r}: the random slope of {name!r} has a variable "
            f"that does not vary (or hardly varies) within the levels of {factor.name!r} (a "
            "predictor of the level itself). Its variance and correlation are identified "
            f"only through how the spread between levels changes with {name!r}: weakly, and "
            "the likelihood can have several optima; the fit restarts from several points "
            "and keeps the highest found, which need not be the highest there is. Keep "
            f"{name!r} as a fixed effect and drop its random slope, unless that variance is "
            "the question.",
            IdentifiabilityWarning,
            stacklevel=user_stacklevel(),
        )


def check_uncentred_uncorrelated(factor: Factor, spread: np.ndarray) -> None:
    """Warn when an uncorrelated intercept and slope (``diag(1 + x)``, ``1 + x || g``,
    a slope in a block of its own beside the intercept's, ``(1 | g) + (0 + x + z | g)``)
    have a slope variable far from zero (calendar years, say).

    Its column is then nearly collinear with the intercept's, and an uncorrelated pair
    is not the same model once the variable is shifted: the likelihood can have optima
    far apart (an intercept SD in the hundreds cancelling the slope's contribution at
    the variable's mean) that an optimisation from the usual start does not reach.
    """
    term = factor.term
    if not (term.intercept and (term.diagonal or term.blocks)):
        return
    apart = term.block_index[1:] != 0  # (the slopes outside the intercept's block)
    names = [n for n, a in zip(term.names[1:], apart) if a]
    found = _far_from_zero(names, spread[1][apart], spread_sd(spread)[apart])
    for name, mean, sd in found:
        warn(
            f"grouping factor {factor.name!r}: the uncorrelated random intercept and "
            f"slope of {name!r} have a slope variable far from zero (mean {mean:.4g}, "
            f"SD {sd:.4g}). Its column is nearly collinear with the intercept's, and "
            "an uncorrelated intercept and slope then have a likelihood with optima "
            "far apart that the fit may not reach. Centre the variable (or measure "
            f"it from a meaningful origin), or let the two correlate ('1 + {name}').",
            IdentifiabilityWarning,
            stacklevel=user_stacklevel(),
        )
