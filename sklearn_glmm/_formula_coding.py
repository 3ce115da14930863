"""R's coding of factors in interactions, for formulaic's model matrices.

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

from formulaic.materializers import PandasMaterializer
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


class RCodingMaterializer(PandasMaterializer):
    """formulaic's pandas materializer with R's coding of factors in interactions.

    Registered under its own name (a model spec records its materializer by name), not
    for an input type and below every other materializer's precedence: only the specs
    that name it use it.
    """

    REGISTER_NAME = "sklearn_glmm_r_coding"
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
