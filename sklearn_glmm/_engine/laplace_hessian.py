"""The exact Hessian of the Laplace objective for one scalar random effect.

For one grouping factor with one random effect per level and a log-concave family whose
fourth derivative in ``eta`` is at hand (:meth:`Family.fourth_derivative`: Poisson
with the log link, binomial with the logit link, NB2 with the log link), every level is
a one-dimensional problem and the Hessian of ``F = -2 log L`` in ``p = (beta, theta)``
is a sum over levels of closed forms: no evaluation at other points, where forward
differences of the gradient cost one evaluation per parameter (a third of a small
fit's evaluations) and carry an error of about 1e-4 relative. A family's own
parameters (NB2's ``log theta``) are held at their values here; their rows and columns
are taken by differences of the gradient (``optimize._hessian``), one evaluation each.

With ``eta_i = f_i + a_i u_j`` (``a_i = z_i theta``), ``d_i, w_i, w3_i, w4_i`` the
log-density's derivatives in ``eta`` (``w = -l''``, ``w3 = dw/deta``,
``w4 = dw3/deta``), the mode ``u_j`` solving ``G_j = sum_i a_i d_i - u_j = 0`` and
``h_j = 1 + sum_i w_i a_i^2``, a level contributes
``phi_j = psi_j - log(h_j) / 2`` with ``psi_j = sum_i l_i - u_j^2 / 2`` and
``F = -2 sum_j phi_j``. Writing ``E_ip`` for the partial derivative of ``eta_i`` in
``p`` with the mode held (``x_i`` for beta, ``z_i u_j`` for theta), ``A_ip`` for that
of ``a_i`` (``z_i`` for theta, else 0):

* the mode's derivatives ``U_jp = (sum_i A_ip d_i - sum_i a_i w_i E_ip) / h_j``, and
  the total derivatives ``D_ip = E_ip + a_i U_jp`` of ``eta_i``;
* ``d2 psi / dp dq = -sum_i w_i E_ip E_iq + sum_j h_j U_jp U_jq`` (the Schur
  complement of the mode);
* ``dh_j/dp = sum_i (w3_i a_i^2 D_ip + 2 w_i a_i A_ip)``;
* the mode's second derivatives, from ``d2 G_j / dp dq = 0``:
  ``h_j U_jpq = -sum_i [w_i (A_ip D_iq + A_iq D_ip) + a_i w3_i D_ip D_iq
  + a_i w_i (A_ip U_jq + A_iq U_jp)]``;
* ``d2 h_j / dp dq = sum_i [w4_i a_i^2 D_ip D_iq + 2 w3_i a_i (A_ip D_iq + A_iq D_ip)
  + w3_i a_i^2 (A_ip U_jq + A_iq U_jp + a_i U_jpq) + 2 w_i A_ip A_iq]``;
* ``d2 log h_j / dp dq = (d2 h_j / dp dq) / h_j - (dh_j/dp)(dh_j/dq) / h_j^2``.

``tests/test_laplace_hessian.py`` compares it with differences of the analytic gradient
and with the brute-force second differences of the objective.
"""

from __future__ import annotations

import numpy as np


def applies(obj) -> bool:
    """Whether :func:`laplace_hessian` gives the Hessian of ``obj``'s objective."""
    from .objective import Objective

    d = obj.data
    if type(obj) is not Objective or obj.n_agq != 1 or not getattr(obj, "_scalar", False):
        return False
    if len(d.factors) != 1 or d.factors[0].mapped or not d.family.log_concave:
        return False
    return bool(getattr(d.family, "has_fourth_derivative", False))


def laplace_hessian(obj) -> np.ndarray:
    """The Hessian of ``-2 log L`` (Laplace) in ``(beta, theta)`` at the objective's
    current state (its modes and their factorisation at the point last evaluated).
    Only where :func:`applies`.

    ``A`` has one column (theta's, ``z``), so every sum over a level's rows of
    ``A_ip`` times something is a row and a column of the result, and the levels'
    ``(P, P)`` sums are needed only summed over the levels with per-level factors:
    products ``D' diag(c) D`` with ``c`` per row; nothing of size ``(n, P, P)``.
    """
    d, s, gi = obj.data, obj.state, obj.groups[0]
    eta, u = np.asarray(s["eta"], dtype=float), s["u"]
    fam = d.family
    der = s["der"]  # the mode search's, at these modes
    if der.w3 is None:  # (left out on large data: made again)
        der = fam.derivs(d.y, eta, obj._trials, obj._w, s["extra"], obj._const)
    w, d1, w3 = der.w, der.d1, der.w3
    w4 = fam.fourth_derivative(d.y, eta, obj._trials, obj._w, s["extra"])
    X = d.X
    n, p = X.shape
    a_vals = s["a_vals"]
    a = a_vals[:, 0] if a_vals.shape[0] == n else np.full(n, a_vals[0, 0])
    z = np.broadcast_to(d.factors[0].Z[:, 0], (n,))
    hinv = obj.solver.hinv[:, 0, 0]
    u_rows = gi.expand(u)
    E = np.empty((n, p + 1))  # d eta / d(beta, theta) with the modes held
    E[:, :p] = X
    E[:, p] = z * u_rows
    wa = w * a
    # the modes' derivatives U (levels, P) and eta's total derivatives D (rows, P)
    U = gi.sum(-wa[:, None] * E)
    U[:, p] += gi.sum(z * d1)
    U *= hinv[:, None]
    D = gi.expand(U)
    D *= a[:, None]
    D += E
    H_psi = -(E * w[:, None]).T @ E + (U * (1.0 / hinv)[:, None]).T @ U
    w3a2 = w3 * a * a
    dh = gi.sum(w3a2[:, None] * D)  # dh_j / dp
    dh[:, p] += gi.sum(2.0 * wa * z)
    # sum_j h_j^-1 d2h_j / dp dq, with f_j = h_j^-2 sum_i w3_i a_i^3 (the modes' second
    # derivatives enter through it)
    hr = gi.expand(hinv)
    fr = gi.expand(gi.sum(w3a2 * a) * hinv * hinv)
    M = (D * (w4 * a * a * hr - a * w3 * fr)[:, None]).T @ D
    # theta's row and column: every term with an A
    S = gi.sum(wa * z)  # sum_i a_i w_i A_i(theta), per level
    B = gi.sum(w3a2 * z)  # sum_i w3_i a_i^2 A_i(theta), per level
    v = D.T @ (2.0 * w3 * a * z * hr - w * z * fr)
    v += U.T @ (hinv * B - hinv * hinv * gi.sum(w3a2 * a) * S)
    M[p, :] += v
    M[:, p] += v
    M[p, p] += 2.0 * hinv @ gi.sum(w * z * z)
    dhs = dh * hinv[:, None]
    H = -2.0 * (H_psi - 0.5 * (M - dhs.T @ dhs))
    return 0.5 * (H + H.T)
