"""The marginal log-likelihood of a GLMM with a vector random effect, by brute force.

One grouping factor, ``q`` random effects per level, ``b_j = L u_j`` with
``u_j ~ N(0, I_q)`` and ``Sigma = L L'``:

.. math::

    \\log L = \\sum_j \\log \\int_{\\mathbb{R}^q} \\prod_{i \\in j}
        p(y_i \\mid x_i^\\top \\beta + o_i + z_i^\\top L u) \\, \\phi_q(u) \\, du

for binomial (successes out of ``trials``) and Poisson outcomes, every constant
included. Each integral is a tensor trapezoid rule over the box ``[-B, B]^q``:
the probability of a discrete outcome is at most 1, so the integrand is below
``phi_q(u)`` and the box leaves out less than ``2 q Phi(-B)`` (1e-15 for
``B = 8``); for a smooth integrand the trapezoid rule converges geometrically
in the step. Only numpy and scipy are used: nothing here imports ``sklearn_glmm``.
"""

from __future__ import annotations

import numpy as np
from scipy import special


def _row_logp(family, y, eta, trials):
    if family == "binomial":
        return (
            y * eta
            - trials * np.logaddexp(0.0, eta)
            + (
                special.gammaln(trials + 1.0)
                - special.gammaln(y + 1.0)
                - special.gammaln(trials - y + 1.0)
            )
        )
    if family == "poisson":
        return y * eta - np.exp(eta) - special.gammaln(y + 1.0)
    raise ValueError(family)


def marginal_loglik_vector(
    X, Z, y, groups, beta, L, *, family="binomial", trials=None, offset=None, n_grid=129, box=8.0
) -> float:
    """Brute-force ``log L`` (see the module); ``L`` the lower Cholesky factor of ``Sigma``.

    ``groups``: level codes; ``n_grid`` points per dimension of the box.
    """
    X, Z, y = np.asarray(X, float), np.asarray(Z, float), np.asarray(y, float)
    q = Z.shape[1]
    trials = np.ones(len(y)) if trials is None else np.asarray(trials, float)
    eta0 = X @ np.asarray(beta, float) + (0.0 if offset is None else np.asarray(offset, float))
    A = Z @ np.asarray(L, float)  # row i: z_i' L
    t = np.linspace(-box, box, n_grid)
    h = t[1] - t[0]
    w1 = np.full(n_grid, h)
    w1[[0, -1]] *= 0.5  # trapezoid end weights
    mesh = np.meshgrid(*([t] * q), indexing="ij")
    U = np.column_stack([m.ravel() for m in mesh])  # (M, q)
    log_w = np.log(w1)[np.array(np.unravel_index(np.arange(len(U)), (n_grid,) * q))].sum(axis=0)
    log_prior = -0.5 * np.einsum("ma,ma->m", U, U) - 0.5 * q * np.log(2.0 * np.pi)
    total = 0.0
    for j in np.unique(groups):
        rows = np.flatnonzero(groups == j)
        eta = eta0[rows, None] + A[rows] @ U.T  # (rows, M)
        ll = _row_logp(family, y[rows, None], eta, trials[rows, None]).sum(axis=0)
        total += special.logsumexp(ll + log_prior + log_w)
    return float(total)
