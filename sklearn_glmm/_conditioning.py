"""Decorrelation of nearly collinear design columns.

Centring and scaling each column is not enough when columns stay nearly collinear
after it: an uncentred covariate in an interaction (``f * x`` with ``x`` around 1e4,
whose ``fb:x`` is almost ``fb``) or a raw polynomial far from zero (``x + I(x^2)``
around 500). The optimiser then stops short of the optimum along the nearly flat
direction and the Hessian is numerically singular. Replacing the columns ``C`` by
``C R^-1`` (``R'R = C'C / n``) makes them uncorrelated with unit spread; the
coefficients map back exactly, ``b = R^-1 b_internal``. Every design the optimiser
sees goes through :func:`decorrelating_map`: the fixed effects (``_scaling.scale_design``), the
random-effect columns of an unstructured term (``_scaling.z_transform``) and the
designs of the family's blocks (zero inflation, hurdle, dispersion:
``_zero_inflation.make_design``).
"""

from __future__ import annotations

import numpy as np

# condition number of C'C (columns centred and scaled) above which they are decorrelated:
# the finite-difference Hessian's standard errors drift by 1e-3 near 1e5 (x + I(x^2)
# with x + 100), an ordinal random slope's fit stopped 3e-4 short at 9.5e5; ordinary
# designs stay far below (a factor's dummies 2-10, age and age^2 around 200)
DECORRELATE_ABOVE = 1e3


def decorrelating_map(cols: np.ndarray):
    """``(R^-1, R)`` for columns ``cols`` (n, m; already centred and scaled) whose
    ``C'C / n`` is conditioned worse than :data:`DECORRELATE_ABOVE`, else None."""
    n, m = cols.shape
    if m < 2 or n == 0:
        return None
    G = (cols.T @ cols) / n
    eig = np.linalg.eigvalsh(G)
    if not eig[0] > 0 or eig[-1] <= DECORRELATE_ABOVE * eig[0]:
        return None
    try:
        R = np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        return None
    return np.linalg.solve(R, np.eye(m)), R
