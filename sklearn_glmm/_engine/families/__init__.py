"""Outcome families: one module per family, registered here by name.

Adding a family is a new module with a :class:`~.base.Family` subclass (its
log-density and derivatives in ``eta``, its link, its parameter blocks) and one
line in :data:`FAMILIES`; nothing else in the engine changes. See the
contributors' page of the documentation.
"""

from __future__ import annotations

from .base import Derivs, Family
from .betabinomial import BetaBinomial
from .binomial import Binomial
from .negbin import NegativeBinomial2
from .negbin1 import NegativeBinomial1
from .ordinal import CumulativeLink
from .poisson import Poisson
from .zero_inflated import ZeroInflated

FAMILIES = {
    "binomial": Binomial,
    "poisson": Poisson,
    "negbin": NegativeBinomial2,
    "negbin1": NegativeBinomial1,
    "betabinomial": BetaBinomial,
    "ordinal": CumulativeLink,
}

__all__ = [
    "FAMILIES",
    "BetaBinomial",
    "Binomial",
    "CumulativeLink",
    "Derivs",
    "Family",
    "NegativeBinomial1",
    "NegativeBinomial2",
    "Poisson",
    "ZeroInflated",
    "make_family",
]


def make_family(name: str, zero_inflation: bool = False, link: str | None = None, **options):
    """Return the family object for ``name`` ("binomial", "poisson", "negbin").

    ``link`` names a link other than the family's default (binomial: ``"probit"``,
    ``"cloglog"``). ``options`` go to a family made per fit (the ordinal family's
    ``n_classes``, ``threshold``, ``labels`` and ``start``).
    """
    if link is not None:
        options["link"] = link
    base = FAMILIES[name](**options)
    if zero_inflation:
        if base.has_trials:
            raise ValueError("zero_inflation is only available for count families.")
        return ZeroInflated(base)
    return base
