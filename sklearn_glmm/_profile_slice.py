"""The free coordinates of a profile's points (:class:`_Slice`): one reported parameter
held at a value, the others on the internal scale where the map to the reported ones is
linear, their starts off a singular fit's boundary and the gradient along them (used by
:class:`sklearn_glmm._profile.Profiler`).
"""

from __future__ import annotations

import numpy as np

_COR_STEP = 1e-5  # a correlation within this of +-1 is differentiated by F's differences
# a block's correlation matrix whose smallest eigenvalue is below this counts as singular;
# a start there is moved this fraction of the way to the held correlation alone
_SINGULAR = 1e-6
_INWARD = 0.05


class _Slice:
    """The free coordinates of the profile points of reported parameter ``k``.

    ``F`` is minimised over internal coordinates wherever the map to the reported ones is
    linear (the fixed effects and the family's coefficients), over the reported ones for
    the covariance parameters. The reported fixed effects of a predictor far from zero
    are nearly collinear with the intercept (or an ordinal model's thresholds), and an
    optimiser over them stops short of the minimum; the internal ones (of centred and
    scaled columns) are not. A linear ``phi_k = g'x`` is held at ``value`` by moving on
    ``x_0 + Q z`` (``g'x_0 = value``, ``Q`` an orthonormal basis of ``g``'s complement),
    which has the internal coordinates' conditioning. The covariance parameters are the
    SDs and correlations of the internal Z columns' random effects, unless ``k`` is one
    that mixes several of them (an intercept's SD where the slopes are centred
    internally): the reported ones then.
    """

    def __init__(self, pmap, k, bounds_x, x_hat):
        self.pmap, self.k = pmap, k
        self.lin, self.theta = pmap.lin, pmap.theta
        A = pmap.linear_matrix()
        box = np.array([bounds_x[i] != (None, None) for i in self.lin], dtype=bool)
        pos = {i: j for j, i in enumerate(self.lin)}
        self.g = None
        if k in pos:
            g = A[pos[k]]
            if np.count_nonzero(g) > 1:
                # a combination that holds a bounded coordinate: the intercept of a
                # zero-inflation or dispersion design, centred internally, whose internal
                # intercept has the block's bounds (a guard against drifting on a flat
                # ridge while fitting). The combination is held, its coordinates move
                # freely; only a bounded parameter reported as it is (NB theta's log) is
                # held at its value itself
                box &= g == 0
            if not np.any(box & (g != 0)):  # a combination of unbounded coordinates
                self.g = g
        self.free = ~box  # lin coordinates moved through Q (or freely)
        self.boxed = np.flatnonzero(box)
        if self.g is not None:
            gf = self.g[self.free]
            self.Q = _complement(gf)
            self.along = gf / float(gf @ gf)  # times the value: g'x_0 = value
        self.bounds_x = bounds_x
        # the covariance parameters' scale: internal unless k mixes several of them
        self.factor = pmap.internal_factor(k) if k in set(self.theta) else 1.0
        self.internal = self.factor is not None
        # on the reported scale each SD is moved relative to its estimate (an intercept's
        # SD near 1 beside a slope's of 1e-4 in the slope's units); internal SDs and
        # correlations are of order 1 already
        self.tscale = np.ones(len(self.theta))
        # an SD counts as zero below 1e-4 on the internal scale (unit_sd: one internal
        # unit in the reported ones, where the SD is one term's)
        self.unit_sd = np.ones(len(self.theta))
        if not self.internal:
            phi_hat = pmap.theta_phi(x_hat)
            for j, i in enumerate(self.theta):
                if pmap.kinds[i] == "sd":
                    self.unit_sd[j] = pmap.internal_factor(i) or 1.0
                    zero = phi_hat[j] < 1e-4 * self.unit_sd[j]
                    self.tscale[j] = 0.05 * self.unit_sd[j] if zero else phi_hat[j]

    # -- u: the optimiser's vector ------------------------------------------------
    def start(self, x, value, keep_zero=False):
        """The optimiser's vector at (about) internal ``x``, with ``phi_k = value``; the
        bounds of its entries. ``keep_zero``: SDs at zero stay there (not moved off)."""
        pm, k = self.pmap, self.k
        xl = x[self.lin]
        phi_t = pm.theta_phi(x, self.internal)
        bounds = []
        if self.g is not None:
            z = self.Q.T @ (xl[self.free] - value * self.along)
            bounds += [(None, None)] * len(z)
            parts = [z]
        else:
            parts = [xl[self.free]]
            bounds += [(None, None)] * int(self.free.sum())
        xb = xl[self.boxed].copy()
        for j, i in enumerate(self.lin[self.boxed]):
            lo, hi = self.bounds_x[i]
            if i == k:  # a bounded family parameter, reported as it is (NB theta's log)
                lo = hi = value
            elif pm.kinds[i] == "extra":
                # on its flat ridge (NB theta at the Poisson limit) the gradient is nil:
                # started there, the search stays, where the profile's minimum has come
                # off the ridge (a fit with theta on the bound: profile limits of a
                # fixed effect 0.2 too high in deviance)
                block = pm.blocks_extra[i - pm.p - pm.T]
                if block.past_flat_side(xb[j]):
                    xb[j] = block.flat_side[1]
            xb[j] = np.clip(xb[j], -np.inf if lo is None else lo, np.inf if hi is None else hi)
            bounds.append((lo, hi))
        parts.append(xb)
        for j, i in enumerate(self.theta):
            lo, hi = pm.bounds[i]
            if i == k:
                lo = hi = phi_t[j] = value / self.factor if self.internal else value
            # F is even in a standard deviation: an optimiser at exactly 0 cannot leave it
            elif self._sd_at_zero(i, j, phi_t) and not keep_zero:
                phi_t[j] = 0.05 * self.unit_sd[j]
            # nor a correlation at +-1 (its Cholesky diagonal at 0, F even in it there):
            # its derivative there is read as 0 times the map's infinite one, and the
            # preconditioner's curvature along it is infinite, so that the search stays
            # where the profile's minimum has left the singular fit's ridge
            elif pm.kinds[i] == "cor" and abs(phi_t[j]) > 0.99:
                phi_t[j] = 0.95 * np.sign(phi_t[j])
            lo_, hi_ = -np.inf if lo is None else lo, np.inf if hi is None else hi
            phi_t[j] = np.clip(phi_t[j], lo_, hi_)
            sc = self.tscale[j]
            bounds.append((None if lo is None else lo / sc, None if hi is None else hi / sc))
        parts.append(phi_t / self.tscale)
        return np.concatenate(parts), bounds

    def split(self, u):
        """The parts of ``u``: the free linear coordinates, the bounded ones and the
        covariance parameters (unscaled)."""
        nf = self.Q.shape[1] if self.g is not None else int(self.free.sum())
        nb = len(self.boxed)
        return u[:nf], u[nf : nf + nb], u[nf + nb :] * self.tscale

    def to_x(self, u, value):
        """Internal parameters at ``u``; None where the correlations are not PSD."""
        pm = self.pmap
        zf, xb, phi_t = self.split(u)
        x = np.empty(pm.n)
        xl = np.empty(len(self.lin))
        xl[self.free] = value * self.along + self.Q @ zf if self.g is not None else zf
        xl[self.boxed] = xb
        x[self.lin] = xl
        xt = pm.theta_to_x(phi_t, self.internal)
        if xt is None:
            return None
        x[self.theta] = xt
        return x

    def inside(self, u, value):
        """``u``, or a point on the segment from it to one whose other correlations
        make the covariance positive definite with ``phi_k = value``
        (:meth:`ParamMap.correlation_anchor`), the nearest to ``u`` of a few tried;
        None when none is (``value`` on a correlation's bound)."""
        if self.to_x(u, value) is not None:
            return u
        nf_nb = len(u) - len(self.theta)
        phi_t = u[nf_nb:] * self.tscale
        anchor = self.pmap.correlation_anchor(phi_t, self.k)
        for t in (0.25, 0.5, 0.75, 0.9, 1.0):
            cand = u.copy()
            cand[nf_nb:] = ((1.0 - t) * phi_t + t * anchor) / self.tscale
            if self.to_x(cand, value) is not None:
                return cand
        return None

    def has_zero_sd(self, x) -> bool:
        """Whether internal ``x`` has an SD (not the held one) that :meth:`start` moves
        off zero."""
        phi_t = self.pmap.theta_phi(np.asarray(x, dtype=float), self.internal)
        return any(i != self.k and self._sd_at_zero(i, j, phi_t) for j, i in enumerate(self.theta))

    def _sd_at_zero(self, i, j, phi_t) -> bool:
        """Whether covariance parameter ``i`` (``phi_t[j]``) is an SD at zero."""
        return self.pmap.kinds[i] == "sd" and phi_t[j] < 1e-4 * self.unit_sd[j]

    def off_singular(self, u):
        """``u`` with the correlations of each unstructured block of three or more random
        effects whose correlation matrix is singular moved :data:`_INWARD` of the way to
        0, the held one kept (a point of the segment to a positive definite matrix: one
        inside). There a Cholesky diagonal is 0 though no correlation is +-1; ``F`` is
        even in that diagonal and the chain rule reads its derivative in the
        correlations as 0 times an infinite one, so a search started there stays."""
        pm = self.pmap
        nf_nb = len(u) - len(self.theta)
        phi_t = u[nf_nb:] * self.tscale
        out = phi_t.copy()
        for start, q, rows, cols, _T in pm.blocks:
            if q < 3:
                continue
            R, at = np.eye(q), []
            for i, (r, c) in enumerate(zip(rows, cols)):
                if r != c:
                    j = start - pm.p + i
                    R[r, c] = R[c, r] = phi_t[j]
                    at.append(j)
            if np.linalg.eigvalsh(R)[0] < _SINGULAR:
                for j in at:
                    if self.theta[j] != self.k:
                        out[j] *= 1.0 - _INWARD
        if np.array_equal(out, phi_t):
            return u
        v = u.copy()
        v[nf_nb:] = out / self.tscale
        return v

    def correlations_at_one(self, u) -> list:
        """``(j, sign)`` of the entries of ``u`` that are correlations (not held) within
        :data:`_COR_STEP` of ``sign`` (+-1)."""
        nf_nb = len(u) - len(self.theta)
        out = []
        for j, i in enumerate(self.theta):
            if i != self.k and self.pmap.kinds[i] == "cor":
                r = u[nf_nb + j] * self.tscale[j]
                if abs(r) > 1.0 - _COR_STEP:
                    out.append((nf_nb + j, float(np.sign(r))))
        return out

    def jacobian(self, u) -> np.ndarray:
        """``dx/du`` at ``u`` (exact for the linear parts)."""
        zf, xb, phi_t = self.split(u)
        pm = self.pmap
        M = np.zeros((pm.n, len(u)))
        lin_free = self.lin[self.free]
        nf, nb = len(zf), len(xb)
        M[lin_free, :nf] = self.Q if self.g is not None else np.eye(nf)
        M[self.lin[self.boxed], nf : nf + nb] = np.eye(nb)
        D = pm.theta_jacobian(phi_t, self.internal) * self.tscale
        M[np.ix_(self.theta, np.arange(nf + nb, len(u)))] = D
        return M

    def preconditioner(self, u, H):
        """sqrt of the curvature of ``F`` along each entry of ``u``, from the fit's
        Hessian ``H`` (``dx/du' H dx/du``): L-BFGS-B's first steps then have the right
        length (a unit step in the thresholds' direction can put them out of order,
        where the objective is infinite and the line search gives up). None where
        ``H`` is not finite or a curvature is not positive."""
        if H is None or not np.all(np.isfinite(H)):
            return None
        M = self.jacobian(u)
        c = np.einsum("ij,ik,kj->j", M, H, M)
        if not np.all(np.isfinite(c)) or np.any(c <= 0):
            return None
        return np.sqrt(c)

    def gradient(self, u, gx):
        """``dF/du`` from ``dF/dx``."""
        _zf, _xb, phi_t = self.split(u)
        gl = gx[self.lin]
        gf = self.Q.T @ gl[self.free] if self.g is not None else gl[self.free]
        gt = self.pmap.theta_jacobian(phi_t, self.internal).T @ gx[self.theta] * self.tscale
        return np.concatenate([gf, gl[self.boxed], gt])


def _complement(g) -> np.ndarray:
    """Orthonormal basis (columns) of the vectors orthogonal to ``g``."""
    Q, _ = np.linalg.qr(np.column_stack([g, np.eye(len(g))]))
    return Q[:, 1 : len(g)]
