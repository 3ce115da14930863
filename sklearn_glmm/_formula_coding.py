"""R's coding of factors for formulaic's model matrices: in interactions, and of logical
and ordered factors.

R's ``model.matrix`` codes each factor of a term by its contrasts when the term without
that factor is empty or contained in an earlier term of the formula (terms ordered by
degree), and by an indicator column per level otherwise; without an intercept, the
first factor of the first term holding one is coded by indicators (R's ``TermCode``
and ``modelmatrix``, ``src/library/stats/src/model.c``). The design can then be rank
deficient, and its aliased columns are dropped as lme4 drops them. formulaic chooses
the coding so that the design is structurally of full rank: the same column space,
so the same model and likelihood, and the same columns whenever every margin of an
interaction is in the formula, but where a margin is missing (``x + x:f:g``,
``f + h + f:h:g``) its coefficients are another parametrisation under R's names.

:class:`RCodingMaterializer` keeps formulaic's coding where it is R's and uses R's
otherwise; its model specs keep it, so new data are coded as the fit was.
"""

from __future__ import annotations

import functools
import operator

import numpy as np
import pandas as pd
from formulaic.materializers import FactorValues, PandasMaterializer
from formulaic.materializers.types import ScopedFactor, ScopedTerm
from formulaic.parser.types import Factor
from interface_meta import override


def _kind(evaled):
    return evaled.metadata.kind


def _is_constant(evaled) -> bool:
    return _kind(evaled) is Factor.Kind.CONSTANT


def _is_factor(evaled) -> bool:
    return _kind(evaled) is Factor.Kind.CATEGORICAL


def _signature(scoped_terms) -> list:
    """A term's coding, comparable between two scopings: the factors of each scoped
    term with their reduction (contrasts) flags."""
    return [
        tuple((str(sf.factor.expr), bool(sf.reduced)) for sf in st.factors) for st in scoped_terms
    ]


def _logical_as_factor(value):
    """An expression's logical values (``I(x > 5)``, ``I(f == "a")``) as R's model matrix
    reads a logical: a factor with the levels FALSE and TRUE (``I(x > 5)TRUE``; ``0 +
    I(x > 5)`` and ``I(x > 5):z`` with a column per level), not a 0/1 number, which gives
    those terms other models. Other values as they are."""
    if (
        isinstance(value, FactorValues)
        and value.__formulaic_metadata__.kind is not Factor.Kind.UNKNOWN
    ):
        return value
    raw = getattr(value, "__wrapped__", value)
    dtype = getattr(raw, "dtype", None)
    if dtype is None or not (np.dtype(bool) == dtype or isinstance(dtype, pd.BooleanDtype)):
        return value
    if np.ndim(raw) != 1:
        return value
    labels = pd.Series(raw).map({True: "TRUE", False: "FALSE"})
    factor = pd.Categorical(labels, categories=["FALSE", "TRUE"])
    return pd.Series(factor, index=raw.index) if isinstance(raw, pd.Series) else factor


def _ordered_as_polynomial(value):
    """An ordered categorical column as R's model matrix reads an ordered factor: coded
    by polynomial contrasts (R's default ``contr.poly``: ``o.L``, ``o.Q``, ...), or by a
    column per level where R codes it so (``0 + o``); other values as they are. With
    treatment contrasts the fixed part would be the same model with other coefficients,
    but a term whose variances are per column (glmmTMB's ``diag(o | g)``, ``(o || g)``)
    another model."""
    if not (isinstance(value, pd.Series) and isinstance(value.dtype, pd.CategoricalDtype)):
        return value
    if not value.dtype.ordered:
        return value
    from formulaic.transforms.contrasts import C, PolyContrasts

    return C(value, PolyContrasts())


# the name under which the model specs of earlier versions recorded their materializer:
# R's coding of interactions only (ordered factors treatment-coded, logical expressions
# numbers); their pickled models predict as they were fitted
LEGACY_CODING = "sklearn_glmm_r_coding"
# the model specs of the version before R's deparsed column names
PYTHON_NAMES = "sklearn_glmm_r_coding_2"


class InteractionCodingMaterializer(PandasMaterializer):
    """formulaic's pandas materializer with R's coding of factors in interactions: the
    coding of model specs made by earlier versions (:data:`LEGACY_CODING`).

    Registered under its own name (a model spec records its materializer by name), not
    for an input type and below every other materializer's precedence: only the specs
    that name it use it.
    """

    REGISTER_NAME = LEGACY_CODING
    REGISTER_PRECEDENCE = -1000

    @override
    def _get_scoped_terms(self, terms, ensure_full_rank=True):
        terms = list(terms)
        theirs = list(super()._get_scoped_terms(terms, ensure_full_rank))
        if not ensure_full_rank:
            return theirs
        ours = self._r_scoped_terms(terms)
        same = all(_signature(a[1]) == _signature(b[1]) for a, b in zip(theirs, ours, strict=True))
        return theirs if same else ours

    def _r_scoped_terms(self, terms):
        """R's coding: one scoped term per term, every factor of it by contrasts or by
        indicators."""
        evaled_terms = []
        for term in terms:
            evaled = [
                self.factor_cache[factor.expr]
                for factor in term.factors
                if self.factor_cache[factor.expr].values.__wrapped__ is not None
            ]
            evaled_terms.append((term, evaled))
        intercept = any(
            evaled and all(_is_constant(e) for e in evaled) for _, evaled in evaled_terms
        )
        earlier: list[frozenset] = []
        out = []
        first_factor_done = intercept
        for term, evaled in evaled_terms:
            if not evaled:
                out.append((term, []))
                continue
            variables = [e for e in evaled if not _is_constant(e)]
            names = frozenset(str(e.expr) for e in variables)
            scoped = []
            for e in variables:
                reduced = False
                if _is_factor(e):
                    margin = names - {str(e.expr)}
                    reduced = not margin or any(margin <= t for t in earlier)
                    if not first_factor_done:
                        # no intercept: the first factor is coded by indicators
                        reduced, first_factor_done = False, True
                scoped.append(ScopedFactor(e, reduced=reduced))
            scale = functools.reduce(operator.mul, [e.values for e in evaled if _is_constant(e)], 1)
            out.append((term, [ScopedTerm(factors=scoped, scale=scale)]))
            earlier.append(names)
        return out


class RCodingMaterializer(InteractionCodingMaterializer):
    """R's coding of factors in interactions, of logical expressions (a FALSE/TRUE
    factor) and of ordered factors (polynomial contrasts): the specs this version makes.
    Their columns take R's deparsed names (:mod:`._formula_names`)."""

    REGISTER_NAME = "sklearn_glmm_r_coding_3"
    REGISTER_PRECEDENCE = -1000

    @override
    def _lookup(self, name):
        value, variables = super()._lookup(name)
        return _ordered_as_polynomial(value), variables

    @override
    def _evaluate(self, expr, metadata, spec):
        value, variables = super()._evaluate(expr, metadata, spec)
        return _logical_as_factor(value), variables


class PythonNamesMaterializer(RCodingMaterializer):
    """The coding of :class:`RCodingMaterializer` for model specs of the earlier version
    that named columns in formulaic's Python style (``ns(x, df=3)1``, ``I(age / 10)``):
    their fitted models keep those names."""

    REGISTER_NAME = PYTHON_NAMES
    REGISTER_PRECEDENCE = -1001
