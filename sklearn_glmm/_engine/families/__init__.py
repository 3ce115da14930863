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
from .hurdle import Hurdle, Truncated
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
    "Hurdle",
    "NegativeBinomial1",
    "NegativeBinomial2",
    "Poisson",
    "Truncated",
    "ZeroInflated",
    "make_family",
]


def make_family(
    name: str,
    zero_inflation: bool = False,
    link: str | None = None,
    hurdle: bool = False,
    truncated: bool = False,
    **options,
):
    """Return the family object for ``name`` ("binomial", "poisson", "negbin", ...).

    ``link`` names a link other than the family's default (binomial: ``"probit"``,
    ``"cloglog"``). For a count family, ``zero_inflation`` adds a zero-inflation
    probability, ``hurdle`` makes it a hurdle model (a zero part and the count
    family truncated at zero) and ``truncated`` the zero-truncated count alone
    (glmmTMB's ``truncated_*`` families with and without ``ziformula = ~1``).
    ``options`` go to a family made per fit (the ordinal family's ``n_classes``,
    ``threshold``, ``labels`` and ``start``).
    """
    if link is not None:
        options["link"] = link
    base = FAMILIES[name](**options)
    zeros = {"zero_inflation": zero_inflation, "hurdle": hurdle, "truncated": truncated}
    chosen = [k for k, on in zeros.items() if on]
    if len(chosen) > 1:
        raise ValueError(
            f"{' and '.join(chosen)} are different models of the zeros: choose one. "
            "zero_inflation adds zeros to a count family; hurdle=True models P(Y = 0) "
            "apart from a zero-truncated count (glmmTMB's truncated_* family with "
            "ziformula = ~1); truncated=True fits counts of at least 1 (no zeros)."
        )
    if chosen and (base.has_trials or not hasattr(base, "log_zero_rate")):
        raise ValueError(f"{chosen[0]} is only available for the count families.")
    if zero_inflation:
        return ZeroInflated(base)
    if hurdle:
        return Hurdle(base)
    if truncated:
        return Truncated(base)
    return base
