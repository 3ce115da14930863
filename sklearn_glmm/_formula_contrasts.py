"""R's contrasts for formulas: ``contr.sum`` and ``contr.helmert`` with R's column names.

R numbers the columns of ``C(f, contr.sum)`` and ``C(f, contr.helmert)`` 1, 2, ... (the
contrast matrices have no column names); formulaic names them by level. Imported only
when a formula is read (formulaic is an optional extra). Module-level classes, so a
fitted formula model pickles.
"""

from __future__ import annotations

from formulaic.transforms.contrasts import ContrastsRegistry, HelmertContrasts, SumContrasts


class _Numbered:
    """Reduced-rank columns numbered from 1."""

    FACTOR_FORMAT_REDUCED = "{name}[{field}]"

    def get_coding_column_names(self, levels, reduced_rank=True):
        if reduced_rank:
            return [str(k) for k in range(1, len(levels))]
        return super().get_coding_column_names(levels, reduced_rank)


class RSumContrasts(_Numbered, SumContrasts):
    """R's ``contr.sum``: columns ``1 .. k-1``."""


class RHelmertContrasts(_Numbered, HelmertContrasts):
    """R's ``contr.helmert``: columns ``1 .. k-1``."""


class RContrasts(ContrastsRegistry):
    """formulaic's ``contr`` namespace with R's names for sum and Helmert contrasts."""

    sum = RSumContrasts
    helmert = RHelmertContrasts
