"""The exact Hessian of the Laplace objective for one grouping factor.

For one grouping factor (one random effect per level, or several with an unstructured
or diagonal covariance) and a family whose fourth derivative in ``eta`` is at hand
(:meth:`Family.fourth_derivative`: Poisson with the log link, binomial with the logit,
probit or cloglog link, NB2, NB1, the beta-binomial, the ordinal family, and the
zero-inflated, zero-truncated and hurdle count models; for those that are not log-concave ``h_j``
below is the mode's signed curvature, positive at a mode), every level is a small
problem of its own and the Hessian of ``F = -2 log L`` in ``p = (beta, theta)`` is a
sum over levels of closed forms: no evaluation at other points, where forward
differences of the gradient cost one evaluation per parameter (a third of a small
fit's evaluations) and carry an error of about 1e-4 relative. A family's own
parameters (NB2's ``log theta``) are held at their values here; with a family that
gives its second derivatives in its one parameter (``extra_second_derivs``, one value
for all rows: NB2's ``log theta``, NB1's and the beta-binomial's ``log phi``, ``logit
pi`` of the zero-inflated and hurdle Poisson models), that parameter's row and column
are in closed form too
(:func:`extra_column`; :func:`_vector_extra_column` for ``q >= 2``); otherwise they
are taken by differences of the gradient (``hessian._hessian``), one evaluation each.

For one random effect per level (:func:`_scalar_hessian`; :func:`_vector_hessian` is
the same with vectors and matrices): with ``eta_i = f_i + a_i u_j``
(``a_i = z_i theta``), ``d_i, w_i, w3_i, w4_i`` the log-density's derivatives in
``eta`` (``w = -l''``, ``w3 = dw/deta``, ``w4 = dw3/deta``), the mode ``u_j`` solving
``G_j = sum_i a_i d_i - u_j = 0`` and ``h_j = 1 + sum_i w_i a_i^2``, a level
contributes ``phi_j = psi_j - log(h_j) / 2`` with ``psi_j = sum_i l_i - u_j^2 / 2``
and ``F = -2 sum_j phi_j``. Writing ``E_ip`` for the partial derivative of ``eta_i``
in ``p`` with the mode held (``x_i`` for beta, ``z_i u_j`` for theta), ``A_ip`` for
that of ``a_i`` (``z_i`` for theta, else 0):

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

from . import batched_hessian

# the vector case's per-row arrays of (rows, P, q, q) cells at most; above, differences
MAX_CELLS = 4_000_000


def applies(obj) -> bool:
    """Whether :func:`laplace_hessian` gives the Hessian of ``obj``'s objective (an
    :class:`~sklearn_glmm._engine.objective.Objective`)."""
    d = obj.data
    # (a partitioned objective holds no rows: it sums its partitions' blocks)
    if obj.n_agq != 1 or len(d.factors) != 1 or not len(d.y):
        return False
    f = d.factors[0]
    if f.mapped:
        return False
    if not getattr(d.family, "has_fourth_derivative", False):
        return False
    P = d.n_beta + d.n_theta
    return bool(obj._scalar or len(d.y) * P * f.q * f.q <= MAX_CELLS)


def laplace_hessian(obj) -> np.ndarray:
    """The Hessian of ``-2 log L`` (Laplace) in ``(beta, theta)`` at the objective's
    current state (its modes and their factorisation at the point last evaluated).
    Only where :func:`applies`."""
    return _scalar_hessian(obj) if obj._scalar else _vector_hessian(obj)


def _derivatives(obj):
    """The family's ``d1, w, w3, w4`` at the state's modes: the mode search's (``w3``
    made by the family's ``third_derivative`` where large data left it out) and the
    fourth."""
    d, s = obj.data, obj.state
    eta = np.asarray(s["eta"], dtype=float)
    der, args = s["der"], (obj._trials, obj._w, s["extra"])
    w3 = der.w3
    if w3 is None:
        w3 = d.family.third_derivative(d.y, eta, *args, obj._const, der)
    return der.d1, der.w, w3, d.family.fourth_derivative(d.y, eta, *args)


def _scalar_hessian(obj) -> np.ndarray:
    """:func:`laplace_hessian` for a scalar random effect.

    ``A`` has one column (theta's, ``z``), so every sum over a level's rows of
    ``A_ip`` times something is a row and a column of the result, and the levels'
    ``(P, P)`` sums are needed only summed over the levels with per-level factors:
    products ``D' diag(c) D`` with ``c`` per row; nothing of size ``(n, P, P)``.
    """
    gi, p = obj.groups[0], obj.data.n_beta
    d1, w, w3, w4, a, z, hinv, u_rows, E, U, D, dh = _scalar_parts(obj)
    wa = w * a
    H_psi = -(E * w[:, None]).T @ E + (U * (1.0 / hinv)[:, None]).T @ U
    w3a2 = w3 * a * a
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


def _scalar_parts(obj):
    """One scalar random effect's quantities at the state: the family's ``d1, w, w3,
    w4``, each row's ``a`` and ``z``, the levels' ``h^-1``, the rows' modes, ``E`` (d eta
    / d(beta, theta) with the modes held), the modes' derivatives ``U`` (levels, P),
    eta's total derivatives ``D`` (rows, P) and ``dh_j / dp`` (levels, P)."""
    d, s, gi = obj.data, obj.state, obj.groups[0]
    d1, w, w3, w4 = _derivatives(obj)
    n, p = d.X.shape
    a_vals = s["a_vals"]
    a = a_vals[:, 0] if a_vals.shape[0] == n else np.full(n, a_vals[0, 0])
    z = np.broadcast_to(d.factors[0].Z[:, 0], (n,))
    hinv = obj.solver.hinv[:, 0, 0]
    u_rows = gi.expand(s["u"])
    E = np.empty((n, p + 1))
    E[:, :p] = d.X
    E[:, p] = z * u_rows
    U = gi.sum(-(w * a)[:, None] * E)
    U[:, p] += gi.sum(z * d1)
    U *= hinv[:, None]
    D = gi.expand(U)
    D *= a[:, None]
    D += E
    dh = gi.sum((w3 * a * a)[:, None] * D)
    dh[:, p] += gi.sum(2.0 * (w * a) * z)
    return d1, w, w3, w4, a, z, hinv, u_rows, E, U, D, dh


def extra_column(obj):
    """The Hessian's row and column of a family's one own parameter (NB2's ``log
    theta``, ``l`` below), for one grouping factor at the objective's state (the sums
    below for one scalar random effect; :func:`_vector_extra_column` for several):
    ``(P + 1,)``, its entries with ``(beta, theta)`` then with itself; None where the
    family does not give :meth:`extra_second_derivs` there (a theta per row, the bound).

    The module docstring's sums with ``l`` beside ``p``: ``l`` moves no ``a_i`` and no
    ``eta_i`` with the modes held, but the family's derivatives themselves (``d_l, w_l``
    from ``extra_derivs``; ``loglik_ll, d_ll, w_ll, w3_l`` from
    ``extra_second_derivs``): ``U_l = h^-1 sum_i a_i d_l``, ``D_il = a_i U_l``,
    ``h U_lq = sum_i A_iq (d_l - w D_il) - sum_i a_i (w_l + w3 D_il) D_iq
    - sum_i a_i w_i A_iq U_l``, ``h U_ll = sum_i a_i (d_ll - 2 w_l D_il - w3 D_il^2)``,
    ``dh_l = sum_i (w_l + w3 D_il) a_i^2``, ``d2h_lq = sum_i [(w3_l + w4 D_il) a_i^2 D_iq
    + w3 a_i^2 (A_iq U_l + a_i U_lq) + 2 (w_l + w3 D_il) a_i A_iq]``, ``d2h_ll = sum_i
    (w_ll + 2 w3_l D_il + w4 D_il^2 + w3 a_i U_ll) a_i^2``; ``d2 psi / dl dq = sum_i d_l
    E_iq + sum_j h_j U_l U_jq`` and ``d2 psi / dl2 = sum_i loglik_ll + sum_j h_j U_l^2``.
    """
    d, s = obj.data, obj.state
    fam = d.family
    if d.n_extra != 1 or d.extra_designs is not None or not hasattr(fam, "extra_second_derivs"):
        return None
    eta = np.asarray(s["eta"], dtype=float)
    args = (d.y, eta, obj._trials, obj._w, s["extra"], obj._const)
    both = fam.extra_second_derivs(*args, with_first=True)
    if both is None:
        return None
    (_, d_l, w_l), second = both
    if not obj._scalar:
        return _vector_extra_column(obj, (d_l, w_l), second)
    return _scalar_extra_rows(obj, *_one_block(both))[0]


def extra_rows(obj):
    """The Hessian's rows of a family's several own parameters (a zero-inflated NB2's
    ``log theta`` and ``logit pi``), for one grouping factor at the objective's
    state: ``(E, P + E)``, each parameter's entries with ``(beta, theta)`` then with the
    family's parameters (the sums of :func:`_scalar_extra_rows` for one scalar random
    effect; :func:`~sklearn_glmm._engine.batched_hessian.extra_rows` for several), a
    block with a design a row per coefficient (:func:`_per_coefficient`); None where the
    family does not give ``extra_hessian_derivs`` (or, with designs, ``extra_second_derivs``
    of its one block) there (a bound, say)."""
    d, s = obj.data, obj.state
    fam = d.family
    eta = np.asarray(s["eta"], dtype=float)
    args = (d.y, eta, obj._trials, obj._w, s["extra"], obj._const)
    one = len(fam.blocks) == 1
    if not one and hasattr(fam, "extra_hessian_derivs"):
        found = fam.extra_hessian_derivs(*args)
    elif one and d.extra_designs is not None and hasattr(fam, "extra_second_derivs"):
        both = fam.extra_second_derivs(*args, with_first=True)
        found = None if both is None else _one_block(both)
    else:
        return None
    if found is None:
        return None
    if d.extra_designs is not None:
        found = _per_coefficient(found, d.extra_designs, len(d.y))
    if obj._scalar:
        return _scalar_extra_rows(obj, *found)
    first, w3_e, second = found  # (as a batch of one replicate)
    first, second = tuple(v[None] for v in first), tuple(v[None] for v in second)
    return batched_hessian.extra_rows(*_one_replicate(obj), first, w3_e[None], second)[0]


def _one_block(both):
    """``extra_second_derivs``' ``(first, second)`` of one parameter block in the form of
    ``extra_hessian_derivs``: ``(first, w3_e, second)`` with a leading axis of one block
    (two for ``second``)."""
    first, (l_ll, d_ll, w_ll, w3_l) = both
    first = tuple(np.asarray(v, dtype=float)[None] for v in first)
    pair = tuple(np.asarray(v, dtype=float)[None, None] for v in (l_ll, d_ll, w_ll))
    return first, np.asarray(w3_l, dtype=float)[None], pair


def _per_coefficient(found, designs, n):
    """The family's derivatives in its parameter blocks (``(first, w3_e, second)``, a
    leading axis of blocks, per-row values) as derivatives in the coefficients the
    optimiser sees: a block with a design ``D`` (a zero-inflation or dispersion model)
    has a coefficient per column, its value on row ``i`` ``D_i gamma``, so a derivative
    in coefficient ``k`` is the block's times ``D_ik`` (a second derivative, times both
    coefficients' columns); a block without one, its own."""
    columns = []  # (block, its column of the design or None)
    for b, D in enumerate(designs):
        if D is None:
            columns.append((b, None))
        else:
            columns.extend((b, D[:, k]) for k in range(D.shape[1]))

    def scaled(v, b, col):
        v = np.broadcast_to(v[b], (n,))
        return v if col is None else v * col

    first, w3_e, second = found
    first = tuple(np.stack([scaled(v, b, col) for b, col in columns]) for v in first)
    w3_e = np.stack([scaled(w3_e, b, col) for b, col in columns])

    def pair(v, e, f):
        (be, ce), (bf, cf) = e, f
        return scaled(v[be], bf, cf) * (1.0 if ce is None else ce)

    second = tuple(
        np.stack([np.stack([pair(v, e, f) for f in columns]) for e in columns]) for v in second
    )
    return first, w3_e, second


def _scalar_extra_rows(obj, first, w3_e, second):
    """The rows of :func:`extra_column` (one parameter) and :func:`extra_rows` (several)
    for one scalar random effect: ``first`` the family's derivatives in each parameter
    ``e`` of ``loglik``, ``d1`` and ``w`` (``d_e``, ``w_e``; each (E, n), the first
    unread), ``w3_e`` those of ``w3`` (E, n), ``second`` the second derivatives of
    ``loglik``, ``d1`` and ``w`` (each (E, E, n)). :func:`extra_column`'s sums for each
    parameter, and between two, ``e`` and ``f``: ``d2 psi / de df = sum_i loglik_ef +
    sum_j h_j U_e U_f``, ``h U_ef = sum_i a_i (d_ef - w_e D_if - w_f D_ie - w3 D_ie
    D_if)``, ``d2h_ef = sum_i (w_ef + w3_e D_if + w3_f D_ie + w4 D_ie D_if + w3 a_i
    U_ef) a_i^2``."""
    d, gi = obj.data, obj.groups[0]
    _, d_e, w_e = first
    l_ef, d_ef, w_ef = second
    d1, w, w3, w4, a, z, hinv, u_rows, E, U, D, dh = _scalar_parts(obj)
    p, n_e = d.n_beta, len(d_e)
    h = 1.0 / hinv
    a2 = a * a
    w3a3 = gi.sum(w3 * a2 * a)
    # (sums over a level's rows that no parameter moves)
    awz, w3a2z = gi.sum(a * w * z), gi.sum(w3 * a2 * z)
    rows = np.empty((n_e, p + 1 + n_e))
    U_e, D_e, dh_e = [], [], []
    for e in range(n_e):
        U_l = hinv * gi.sum(a * d_e[e])
        D_l = a * gi.expand(U_l)
        col = E.T @ d_e[e] + (U * (h * U_l)[:, None]).sum(axis=0)
        wl = w_e[e] + w3 * D_l
        U_lq = gi.sum(-(a * wl)[:, None] * D)
        U_lq[:, p] += gi.sum(z * (d_e[e] - w * D_l)) - awz * U_l
        U_lq *= hinv[:, None]
        dh_l = gi.sum(wl * a2)
        d2h = gi.sum(((w3_e[e] + w4 * D_l) * a2)[:, None] * D) + w3a3[:, None] * U_lq
        d2h[:, p] += w3a2z * U_l + 2.0 * gi.sum(wl * a * z)
        d2logh = (d2h * hinv[:, None] - dh_l[:, None] * dh * (hinv * hinv)[:, None]).sum(0)
        rows[e, : p + 1] = -2.0 * (col - 0.5 * d2logh)
        U_e.append(U_l)
        D_e.append(D_l)
        dh_e.append(dh_l)
    for e in range(n_e):
        for f in range(e, n_e):
            De, Df = D_e[e], D_e[f]
            dw, dw3 = batched_hessian.pair_terms(w_e[e], w_e[f], w3_e[e], w3_e[f], De, Df, e == f)
            U_ef = hinv * gi.sum(a * (d_ef[e, f] - dw - w3 * De * Df))
            d2h_ef = gi.sum((w_ef[e, f] + dw3 + w4 * De * Df) * a2) + w3a3 * U_ef
            psi = l_ef[e, f].sum() + h @ (U_e[e] * U_e[f])
            d2logh = (d2h_ef * hinv - dh_e[e] * dh_e[f] * hinv * hinv).sum()
            rows[e, p + 1 + f] = rows[f, p + 1 + e] = -2.0 * (psi - 0.5 * d2logh)
    return rows


def _vector_hessian(obj) -> np.ndarray:
    """:func:`laplace_hessian` for ``q >= 2`` random effects per level: the module
    docstring's sums with ``a_i`` and ``U_jp`` vectors, ``h_j`` the matrix ``H_j``, ``d
    log det H_j / dp = tr(H_j^-1 dH_j/dp)`` and ``d2 log det H_j / dp dq = tr(H_j^-1
    d2H_j/dp dq) - tr(H_j^-1 dH_j/dq H_j^-1 dH_j/dp)``; the Cholesky entry ``(r, c)`` of
    ``Lambda`` moves ``a_i = Lambda' z_i`` by ``A_i = z_ir e_c`` (only the covariance
    parameters move ``a``). Computed by
    :func:`~sklearn_glmm._engine.batched_hessian.laplace_hessians`, which a batch of
    refits runs for many replicates at once, here for one."""
    return batched_hessian.laplace_hessians(*_one_replicate(obj))[0]


def _vector_extra_column(obj, first, second):
    """:func:`extra_column` for ``q >= 2`` random effects per level (``first``: the
    family's ``d_l, w_l``; ``second``: ``loglik_ll, d_ll, w_ll, w3_l``):
    :func:`~sklearn_glmm._engine.batched_hessian.extra_columns` for one replicate."""
    n = len(obj.data.y)
    extra = tuple(np.broadcast_to(v, (n,))[None] for v in tuple(first) + tuple(second))
    return batched_hessian.extra_columns(*_one_replicate(obj), extra)[0]


def _one_replicate(obj) -> tuple:
    """The inputs of :func:`~sklearn_glmm._engine.batched_hessian.laplace_hessians` at
    the objective's state, as a batch of one replicate."""
    d, s, gi = obj.data, obj.state, obj.groups[0]
    f = d.factors[0]
    n, q = len(d.y), f.q
    d1, w, w3, w4 = _derivatives(obj)
    a = np.broadcast_to(np.asarray(s["a_vals"], dtype=float), (n, q)).T[None]
    return (
        *batched_hessian.rows_last_design(d.X, f),
        gi.sum_last,
        gi.expand_last,
        np.ascontiguousarray(a),
        s["u"].reshape(1, f.n_levels, q),
        obj.solver.hinv[None],
        d1[None],
        w[None],
        w3[None],
        w4[None],
    )
