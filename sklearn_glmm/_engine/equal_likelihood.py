"""Sets of equal likelihood of a covariance the levels do not identify.

Level ``j``'s random effects act through ``Z_j b_j``, whose covariance ``Z_j S Z_j'``
is all the likelihood reads of ``S``. With a random slope of a predictor of the level
itself that takes few values (a treatment arm: ``(1 + arm | id)``), some changes ``D``
of ``S`` change no level's compression (``G_j D G_j = 0`` for every level's Gram matrix
``G_j = Z_j' Z_j``: :func:`unseen_changes`), and the likelihood is the same at every
covariance ``S + D`` that is positive semi-definite: a set of equal likelihood, a
segment for two arms.

This module reads that set from the data and a fitted ``S``:

- :func:`unidentified_directions`: the directions of the Cholesky entries at a point
  along which the likelihood is constant (taken out of the Hessian by ``curvature``);
- :func:`design_count`: how many parameters of the factor's parametrisation the levels
  do not identify, from the design alone (the degrees of freedom a likelihood-ratio
  test does not count), whatever the point;
- :func:`central_covariances`: the point of the set of largest ``log det S`` (the
  determinant over the covariances' range where every point of the set is singular):
  one point whatever the optimiser's path, the units or the centring of the slope's
  variable (a change of basis multiplies the determinant by a constant); for two arms
  the point where the arms' effects are uncorrelated, the fit of ``diag(0 + arm0 +
  arm1)``;
- :func:`points_on_the_set`: points of the set around it, on which a reported parameter
  that moves along the set is told from one that does not (a parameter can be
  stationary at the central point and still move along the set).

Grouping factors that group the rows identically (``(1 | school/class)`` with one class
per school) read the same way taken together, their covariances one block-diagonal
covariance (:func:`aliased_groups`, :func:`aliased_directions`, :class:`_Joint`): the
likelihood reads only their sum's compression.

Only factors with an unstructured covariance (lme4's Cholesky parametrisation, every
entry free) are moved; :func:`design_count` reads any Cholesky pattern.
"""

from __future__ import annotations

import numpy as np

from .groups import aliased_factors, gram_products

# an eigenvalue of the Cholesky entries' curvature in the levels' compressions of the
# covariance at most this share of the largest is a direction they do not see (exactly:
# the arithmetic's rounding, squared twice in the sums)
UNSEEN = 1e-13
# an eigenvalue of S at most this share of its trace is zero (the set's face)
_ZERO = 1e-10
# the smallest eigenvalue, relative to the trace, of the most positive definite point of
# a set that keeps no face, from which it is a thin set rather than a point: above the
# optimiser's leftover of a variance at zero (1e-11 to 7e-10 on arm fits), below a
# slope's variance near 0 that moves with the set (4e-8 to 5e-7)
_THIN = 1e-8
# a point of the set for the reported parameters: this share of the way to its edge
_AROUND = 0.5


def unseen_changes(obj, k) -> np.ndarray:
    """The changes ``D`` of factor ``k``'s covariance that no level sees, as columns
    ``vec(D)`` (row-major, ``q^2`` long): the null space of ``sum_j (G_j G_j) kron (G_j
    G_j)`` (of the data alone, whatever the point)."""
    return _null_columns(obj.level_gram_products(k))


def _null_columns(A) -> np.ndarray:
    """An orthonormal basis (columns) of the null space of the levels' products ``A``
    (:func:`~.groups.gram_products`), to :data:`UNSEEN` of its largest eigenvalue."""
    vals, vecs = np.linalg.eigh(0.5 * (A + A.T))
    top = max(float(vals[-1]), 0.0) if len(vals) else 0.0
    return vecs[:, vals <= UNSEEN * top] if top > 0.0 else vecs[:, :0]


def symmetric_basis(U, q) -> np.ndarray:
    """An orthonormal basis (m, q, q) of the symmetric parts of the columns ``vec(D)``
    (orthonormal themselves): an antisymmetric column, which every level with one row
    pattern leaves unseen (``G D G = 0`` for a Gram matrix ``G`` of rank 1), has none."""
    if not U.shape[1]:
        return np.zeros((0, q, q))
    D = U.T.reshape(-1, q, q)
    D = 0.5 * (D + D.transpose(0, 2, 1)).reshape(len(D), -1)
    _, sv, vt = np.linalg.svd(D, full_matrices=False)
    return vt[sv > 1e-8].reshape(-1, q, q)


def _factors(obj):
    """``(k, f, block)`` of each factor with a slope of a predictor of the level itself:
    ``block`` the indices of its parameters in the parameter vector."""
    data = obj.data
    if not data.factors or not hasattr(obj, "level_gram_products"):
        return
    first = data.n_beta
    # (a factor that groups the rows as another does has its sets with it: _aliased)
    joint = {k for group, _, _ in _aliased(obj) for k in group}
    for k, f in enumerate(data.factors):
        block = np.arange(first, first + f.n_params)
        first += f.n_params
        if f.q >= 2 and not f.mapped and f.level_constant and k not in joint:
            yield k, f, block


def _unstructured(f) -> bool:
    return f.n_params == f.q * (f.q + 1) // 2


def design_count(obj) -> int:
    """How many parameters the levels do not identify, from the design alone: per
    factor, the dimension of the unseen changes (:func:`unseen_changes`, symmetric)
    that its Cholesky pattern can make (its tangent at a generic point); and those of
    factors that group the rows identically (:func:`aliased_groups`)."""
    total = sum(count for _, _, count in _aliased(obj))
    for k, f, _ in _factors(obj):
        N = symmetric_basis(unseen_changes(obj, k), f.q)
        if not len(N):
            continue
        if _unstructured(f):
            total += len(N)
            continue
        generic = np.random.default_rng(0).uniform(0.5, 1.5, f.n_params)
        total += _shared_dimension(cholesky_tangent(f, generic), N.reshape(len(N), -1).T)
    return int(total)


def _shared_dimension(T, U) -> int:
    """The dimension of the intersection of the column spans of ``T`` and ``U``."""
    rank = np.linalg.matrix_rank
    return int(rank(T) + rank(U) - rank(np.hstack([T, U])))


def cholesky_tangent(f, theta) -> np.ndarray:
    """``vec(dS)`` (row-major, columns) per Cholesky entry of factor ``f`` at its entries
    ``theta``: ``E L' + L E'`` for the entry's unit matrix ``E``, shape (q^2, n_params)."""
    q = f.q
    L = np.zeros((q, q))
    L[f.theta_rows, f.theta_cols] = theta
    out = np.zeros((q * q, len(f.theta_rows)))
    for i, (r, c) in enumerate(zip(f.theta_rows, f.theta_cols)):
        E = np.zeros((q, q))
        E[r, c] = 1.0
        out[:, i] = (E @ L.T + L @ E.T).ravel()
    return out


def unidentified_directions(obj, x, bounds) -> np.ndarray | None:
    """Directions of the parameters (columns, on the free Cholesky entries) along which
    the likelihood is constant by construction, or None: each factor's
    (:func:`level_directions`) and those of factors that group the rows identically
    (:func:`aliased_directions`)."""
    return joined(level_directions(obj, x, bounds), aliased_directions(obj, x, bounds))


def joined(*directions) -> np.ndarray | None:
    """The columns of those of ``directions`` that are not None, side by side; None
    where all are."""
    parts = [d for d in directions if d is not None]
    return np.hstack(parts) if parts else None


def level_directions(obj, x, bounds) -> np.ndarray | None:
    """Directions of the parameters (columns, on the free Cholesky entries of a factor)
    whose change of ``S`` no level sees (:func:`unseen_changes`; see the module's
    docstring), or None. At an optimum the Hessian is zero along them (on the Cholesky
    entries at ``x``); rounding can read it as negative curvature (a saddle, at a
    maximum). The sums over levels are the objective's (:meth:`level_gram_products`: a
    partitioned one adds its partitions')."""
    from .curvature import at_bound

    free = ~at_bound(x, bounds)
    out = []
    for k, f, block in _factors(obj):
        cols = free[block]
        if not cols.any():
            continue
        U = unseen_changes(obj, k)
        full = _unseen_directions(U, cholesky_tangent(f, x[block])[:, cols], block[cols], len(x))
        if full is not None:
            out.append(full)
    return joined(*out)


def _unseen_directions(U, Dm, index, n):
    """Directions of the parameters (columns, ``n`` long, on the entries ``index``) whose
    change of the covariances, ``Dm`` per entry (columns ``vec(dS)``), lies in the
    unseen changes ``U`` (orthonormal columns); None where there is none."""
    if not U.shape[1]:
        return None
    # each entry's dS at unit length: a direction of the entries whose dS is such a
    # change (not merely small: near a zero diagonal an entry moves S little, and is no
    # less identified for that)
    size = np.linalg.norm(Dm, axis=0)
    if not np.all(size > 0.0):
        return None
    seen = (Dm - U @ (U.T @ Dm)) / size  # the part of each dS some level sees
    _, sv, vt = np.linalg.svd(seen)
    rank = int(np.sum(sv > 1e-8 * max(float(sv[0]), 1e-300))) if len(sv) else 0
    null = vt[rank:].T / size[:, None]
    if not null.shape[1]:
        return None
    full = np.zeros((n, null.shape[1]))
    full[index] = np.linalg.qr(null)[0]
    return full


def aliased_groups(factors, weights) -> list[tuple[tuple[int, ...], int]]:
    """``(group, count)`` for each group of unstructured factors (``FactorData``) that
    group the rows with weight above 0 identically (:func:`~.groups.aliased_factors`)
    and whose covariances the likelihood reads only together: ``count`` parameters of
    their Cholesky patterns make changes no level sees (their tangent at a generic
    point against :func:`_joint_unseen`; one for two random intercepts, whose variances
    count only by their sum; none for ``(1 | id) + (0 + x | id)``, lme4's ``||`` terms,
    where ``x`` varies within ``id``)."""
    n = len(np.asarray(weights))
    # (a structured covariance is not a Cholesky pattern: left out, wherever it is)
    plain = [k for k, f in enumerate(factors) if not f.mapped and len(f.codes) == n]
    if len(plain) < 2:
        return []
    used = np.asarray(weights) > 0.0
    out = []
    rng = np.random.default_rng(0)
    for among in aliased_factors([factors[k].codes for k in plain], used):
        group = tuple(plain[k] for k in among)
        fs = [factors[k] for k in group]
        U = _joint_unseen(fs, used)
        if not U.shape[1]:
            continue
        T = _joint_tangent(fs, [rng.uniform(0.5, 1.5, f.n_params) for f in fs])
        count = _shared_dimension(T, U)
        if count:
            out.append((group, count))
    return out


def _aliased(obj):
    """``(group, blocks, count)`` of each of :func:`aliased_groups` of the objective's
    factors: ``blocks`` the indices of each one's parameters in the parameter vector.
    Read from the rows, so only where the objective holds them (in memory)."""
    data = obj.data
    if len(data.factors) < 2 or not hasattr(obj, "groups"):
        return
    groups = data.aliased  # (the rows' property: found once per data)
    starts = np.cumsum([data.n_beta] + [f.n_params for f in data.factors])
    for group, count in groups:
        yield group, [np.arange(starts[k], starts[k + 1]) for k in group], count


def _joint_unseen(fs, used) -> np.ndarray:
    """The unseen changes (:func:`unseen_changes`) of the factors ``fs`` taken as one
    factor, their columns of Z side by side (each level of one is one of the others'),
    as columns ``vec(D)`` of the joint covariance; ``used`` the rows with weight above
    0."""
    f0 = fs[0]
    Zs = [np.asarray(f.Z, dtype=float) for f in fs]
    Z = np.hstack([np.broadcast_to(z, (len(f0.codes), z.shape[1])) for z in Zs])
    w = used.astype(float)
    q = Z.shape[1]
    G = np.zeros((f0.n_levels, q, q))
    for a in range(q):
        for b in range(a + 1):
            G[:, a, b] = G[:, b, a] = np.bincount(
                f0.codes, Z[:, a] * Z[:, b] * w, minlength=f0.n_levels
            )
    return _null_columns(gram_products(G))


def _joint_tangent(fs, thetas) -> np.ndarray:
    """:func:`cholesky_tangent` of each factor of ``fs`` at its entries ``thetas``,
    placed in the joint covariance's diagonal blocks: ``(Q^2, sum of n_params)``."""
    Q = sum(f.q for f in fs)
    out, first = [], 0
    for f, th in zip(fs, thetas):
        T = cholesky_tangent(f, th).reshape(f.q, f.q, -1)
        big = np.zeros((Q, Q, T.shape[2]))
        big[first : first + f.q, first : first + f.q] = T
        out.append(big.reshape(Q * Q, -1))
        first += f.q
    return np.hstack(out)


def aliased_directions(obj, x, bounds) -> np.ndarray | None:
    """Directions of the parameters (columns) along which the likelihood is constant
    because factors group the rows identically (:func:`aliased_groups`): the changes of
    their covariances, together, that no level sees (one factor's variance up, the
    other's down, for two random intercepts); None where there is none."""
    from .curvature import at_bound

    free = ~at_bound(x, bounds)
    used = np.asarray(obj.data.weights) > 0.0
    out = []
    for group, blocks, _ in _aliased(obj):
        fs = [obj.data.factors[k] for k in group]
        index = np.concatenate(blocks)
        cols = free[index]
        if not cols.any():
            continue
        Dm = _joint_tangent(fs, [x[b] for b in blocks])[:, cols]
        out.append(_unseen_directions(_joint_unseen(fs, used), Dm, index[cols], len(x)))
    return joined(*out)


def aliased_factor_groups(obj) -> tuple:
    """The groups (factor indices) of :func:`aliased_groups` of the objective's
    factors."""
    return tuple(group for group, _, _ in _aliased(obj))


def central_covariances(obj, x, bounds) -> np.ndarray:
    """``x`` with each unstructured covariance the levels do not identify moved along
    its set of equal likelihood to the set's point of largest ``log det S`` (see the
    module's docstring); ``x`` itself when there is nothing to move (no such set, an
    unbounded one, or a search that did not finish)."""
    out = None
    for f, block, (S, M, P, s0) in _problems(obj, x):
        s = _largest_log_det(P.T @ S @ P, P.T @ M @ P, s0)
        if s is None:
            continue
        new = _entries(f, _on_face(S + np.tensordot(s, M, axes=1), P), bounds, block)
        if new is None or np.allclose(new, x[block], rtol=0.0, atol=1e-10):
            continue  # (there already: on a face, a variance of its rounding set to 0)
        out = x.copy() if out is None else out
        out[block] = new
    return x if out is None else out


def points_on_the_set(obj, x, bounds) -> np.ndarray:
    """Points of the sets of equal likelihood through ``x`` (rows): for each direction
    of each factor's set, one on either side, half-way to the set's edge (a fixed
    distance where it has none). Empty when there is no such set."""
    out = []
    for f, block, (S, M, P, s0) in _problems(obj, x):
        # (from a point inside the set: at its edge, S singular where a variance the
        # identified directions want at 0 stopped just above it, the set has no width)
        S = S + np.tensordot(s0, M, axes=1)
        Sr = P.T @ S @ P
        try:
            C = np.linalg.cholesky(Sr)
        except np.linalg.LinAlgError:
            continue
        size = max(float(np.trace(S)), 1e-300)
        for Mj in M:
            Mr = P.T @ Mj @ P
            W = np.linalg.solve(C, np.linalg.solve(C, Mr).T)  # C^-1 M C^-T
            lam = np.linalg.eigvalsh(0.5 * (W + W.T))
            # S + t M_j stays positive semi-definite for -1/max(lam) <= t <= -1/min(lam)
            hi = -1.0 / lam[0] if lam[0] < 0 else size
            lo = -1.0 / lam[-1] if lam[-1] > 0 else -size
            for t in (_AROUND * lo, _AROUND * hi):
                new = _entries(f, _on_face(S + t * Mj, P), bounds, block)
                if new is not None:
                    xp = np.array(x, dtype=float)
                    xp[block] = new
                    out.append(xp)
    return np.array(out) if out else np.zeros((0, len(x)))


def _problems(obj, x):
    """``(f, block, (S, M, P, s0))`` of each unstructured factor whose set of equal
    likelihood through ``x`` is more than a point (:func:`_set_problem`), and of each
    group of such factors that group the rows identically, taken as one factor of a
    block-diagonal covariance (:class:`_Joint`)."""
    for k, f, block in _factors(obj):
        if _unstructured(f):
            N = symmetric_basis(unseen_changes(obj, k), f.q)
            problem = _set_problem(N, f, x[block])
            if problem is not None:
                yield f, block, problem
    used = np.asarray(obj.data.weights) > 0.0
    for group, blocks, _ in _aliased(obj):
        fs = [obj.data.factors[k] for k in group]
        if not all(_unstructured(f) for f in fs):
            continue
        joint = _Joint(fs)
        block = np.concatenate(blocks)
        problem = _set_problem(joint.unseen(_joint_unseen(fs, used)), joint, x[block])
        if problem is not None:
            yield joint, block, problem


class _Joint:
    """Factors that group the rows identically as one factor whose covariance is
    block-diagonal, a block each (their Cholesky entries side by side): what
    :func:`_set_problem` and :func:`_entries` read of a factor."""

    def __init__(self, fs):
        offsets = np.cumsum([0] + [f.q for f in fs])
        self.q = int(offsets[-1])
        self.theta_rows = np.concatenate([f.theta_rows + o for f, o in zip(fs, offsets)])
        self.theta_cols = np.concatenate([f.theta_cols + o for f, o in zip(fs, offsets)])
        self.blocks = [(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]

    def unseen(self, U) -> np.ndarray:
        """An orthonormal basis (m, q, q) of the block-diagonal symmetric changes in the
        span of the unseen changes ``U`` (columns ``vec(D)`` of the joint covariance):
        the changes each factor's own covariance can make (none across them)."""
        q = self.q
        inside = np.zeros((q, q), dtype=bool)
        for a, b in self.blocks:
            inside[a:b, a:b] = True
        # the symmetric block-diagonal matrices, orthonormal as vec(D)
        basis = []
        for i, j in zip(*np.nonzero(np.triu(inside))):
            E = np.zeros((q, q))
            E[i, j] = E[j, i] = 1.0
            basis.append(E.ravel() / np.linalg.norm(E))
        B = np.array(basis).T
        if not U.shape[1]:
            return np.zeros((0, q, q))
        # B c in span(U): the null space of (I - U U') B
        _, sv, vt = np.linalg.svd(B - U @ (U.T @ B))
        rank = int(np.sum(sv > 1e-8))
        return (B @ vt[rank:].T).T.reshape(-1, q, q)


def _set_problem(N, f, theta):
    """``(S, M, P, s0)`` of the set of equal likelihood of factor ``f`` (or
    :class:`_Joint`) through its Cholesky entries ``theta``, along the unseen changes
    ``N`` ((m, q, q), symmetric): its covariances ``S + sum_j s_j M_j`` (M: (m, q, q)),
    positive semi-definite where ``P' (S + sum s_j M_j) P`` is positive definite (``P``
    the identity where some point of the set is positive definite; else the range of
    ``S``, the set's face, with ``M`` the changes that stay on it) and ``s0`` a point
    inside; None where the set is the point ``S``."""
    q = f.q
    if not len(N):
        return None
    L = np.zeros((q, q))
    L[f.theta_rows, f.theta_cols] = theta
    S = L @ L.T
    size = max(float(np.trace(S)), 1e-300)
    start, low = _inside(S, N, size)
    if low > 1e-6 * size:
        return S, N, np.eye(q), start
    face = _face_problem(S, N, size)
    if face is not None:
        return face
    # no face to stay on, and every point nearly singular (a variance the identified
    # directions want at 0 stopped just above it, moving with the set's directions):
    # a thin set, still positive definite inside
    return (S, N, np.eye(q), start) if low > _THIN * size else None


def _face_problem(S, N, size):
    """``(S, M, P, s0)`` of a set every point of which is singular: the changes that
    keep ``S``'s null space (:func:`_set_problem`), or None where none does."""
    vals, vecs = np.linalg.eigh(S)
    P, Q = vecs[:, vals > _ZERO * size], vecs[:, vals <= _ZERO * size]
    if not P.shape[1] or not Q.shape[1]:
        return None
    C = np.array([np.concatenate([(Q.T @ Nj @ Q).ravel(), (Q.T @ Nj @ P).ravel()]) for Nj in N])
    _, sv, vt = np.linalg.svd(C.T)
    B = vt[int(np.sum(sv > 1e-8)) :].T  # (m, r): sum_i B_ij N_i keeps the null space
    if not B.shape[1]:
        return None
    M = np.tensordot(B.T, N, axes=1)
    # on the face exactly (its rounding off it, a variance of 1e-10, taken away)
    return _on_face(S, P), M, P, np.zeros(B.shape[1])


def _inside(S, N, size):
    """``(t, smallest)``: the ``t`` found with ``S + sum t_i N_i`` the most positive
    definite and its smallest eigenvalue (``inf`` where ``S`` itself is)."""

    def smallest(t):
        return float(np.linalg.eigvalsh(S + np.tensordot(t, N, axes=1))[0])

    t = np.zeros(len(N))
    if smallest(t) > _ZERO * size:
        return t, np.inf
    # the smallest eigenvalue is concave in t
    from scipy.optimize import minimize

    simplex = np.vstack([t, 0.1 * size * np.eye(len(N))])
    r = minimize(
        lambda v: -smallest(v),
        t,
        method="Nelder-Mead",
        options=dict(xatol=1e-10 * size, fatol=1e-12 * size, initial_simplex=simplex),
    )
    t = np.asarray(r.x, dtype=float)
    return t, smallest(t)


def _largest_log_det(S, N, t, max_iter=100):
    """``t`` maximising ``log det(S + sum_i t_i N_i)`` (concave) from ``t`` (where it is
    positive definite) by Newton's method, or None when the maximum is not finite (a
    change that no level sees and adds variance without end) or the search stalls
    before it.

    Far from the maximum each step is damped until ``log det`` rises enough (Armijo);
    within :data:`_NEAR_MAXIMUM` of it (Newton's decrement, about twice the gain left)
    full steps are taken, whose gains the rounding of ``log det`` would hide from that
    test (on a thin set, 1e-7 of it), until the decrement stops falling: there to the
    arithmetic's accuracy."""
    size = max(float(np.trace(S)), 1e-300)
    t = np.array(t, dtype=float)
    previous = np.inf
    for _ in range(max_iter):
        M = S + np.tensordot(t, N, axes=1)
        P = np.linalg.solve(M, N)  # M^-1 N_i
        g = np.trace(P, axis1=1, axis2=2)
        H = np.einsum("iab,jba->ij", P, P)  # minus the Hessian: positive definite
        step = np.linalg.solve(H, g)
        decrement = float(g @ step)
        if decrement <= 1e-20:
            return t
        if decrement <= _NEAR_MAXIMUM:
            if decrement > 0.5 * previous:
                return t  # (the rounding's floor: quadratic convergence has ended)
            previous = decrement
            cand = t + step
            try:
                np.linalg.cholesky(S + np.tensordot(cand, N, axes=1))
            except np.linalg.LinAlgError:
                return t
            t = cand
            continue
        previous = decrement
        base = np.linalg.slogdet(M)[1]
        a = 1.0
        for _ in range(60):
            cand = t + a * step
            sign, val = np.linalg.slogdet(S + np.tensordot(cand, N, axes=1))
            if sign > 0 and val >= base + 0.25 * a * decrement:
                break
            a *= 0.5
        else:
            return None  # no ascent along Newton's direction far from the maximum
        t = cand
        if np.linalg.norm(t) > 1e8 * size:
            return None
    return t if previous <= _NEAR_MAXIMUM else None


# a Newton decrement (about twice the gain left in log det) below which Newton's full
# steps are taken
_NEAR_MAXIMUM = 1e-6


def _on_face(S, P):
    """``S`` on the range ``P`` of its set's face (the changes that keep the null space
    do so to the rounding of their basis only); ``S`` itself where the face is all."""
    if P.shape[1] == len(S):
        return S
    out = P @ (P.T @ S @ P) @ P.T
    return 0.5 * (out + out.T)


def _entries(f, S, bounds, block):
    """Factor ``f``'s Cholesky entries of the positive semi-definite ``S`` (a zero
    diagonal where it is singular), or None outside the bounds or where ``S`` is not
    positive semi-definite to its rounding."""
    q = f.q
    size = max(float(np.trace(S)), 1e-300)
    L = np.zeros((q, q))
    for j in range(q):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d > _ZERO * size:
            L[j, j] = np.sqrt(d)
            L[j + 1 :, j] = (S[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    if not np.allclose(L @ L.T, S, rtol=0.0, atol=1e-8 * size):
        return None
    new = L[f.theta_rows, f.theta_cols]
    lo = np.array([-np.inf if bounds[i][0] is None else bounds[i][0] for i in block])
    hi = np.array([np.inf if bounds[i][1] is None else bounds[i][1] for i in block])
    return new if np.all((new >= lo) & (new <= hi)) else None
