"""The fit's parameters as people read them, and their Wald intervals.

The optimiser works on ``x = [beta_internal, theta, extra]``; tables and intervals
report ``phi``: fixed effects in original units (``beta = J beta_internal``), per
grouping factor lme4's standard deviations and correlations (``sd_(Intercept)|id``,
``cor_time.(Intercept)|id``, in lme4's theta order), and the family's own parameters on
their internal scale, shown transformed. :class:`ParamMap` maps between the two and
gives ``phi``'s names, values and Jacobian; :func:`wald_table` the Wald intervals from
it (the profile's are :mod:`._profile`'s).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ._results import original_lambda
from ._scaling import internal_lambda
from ._warn import user_stacklevel, warn
from .exceptions import StandardErrorWarning


def _psd_cholesky(R):
    """Lower Cholesky factor of a correlation matrix that may be singular; None if not PSD."""
    q = R.shape[0]
    L = np.zeros_like(R)
    for j in range(q):
        d = R[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10:
            return None
        L[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, q):
            v = R[i, j] - L[i, :j] @ L[j, :j]
            if L[j, j] > 1e-12:
                L[i, j] = v / L[j, j]
            elif abs(v) > 1e-8:
                return None
    return L


class ParamMap:
    """The map between internal parameters ``x`` and reported parameters ``phi``.

    Attributes
    ----------
    names : list of str
        Row names (fixed effects, ``sd_<term>|<factor>``, ``cor_<a>.<b>|<factor>``,
        ``nb_theta``, ``zi_prob``; ``zi~(Intercept)``, ``zi~time`` for a zero-inflation
        model with predictors, ``disp~(Intercept)``, ``disp~time`` for a dispersion
        model, glmmTMB's names).
    lme4_names : list of str
        lme4's ``oldNames = TRUE`` names (``.sig01``, ...) for the same rows.
    kinds : list of {"fixed", "sd", "cor", "extra", "zi", "disp"}
    bounds : list of (lower, upper)
    """

    def __init__(self, est):
        res = est.fit_result_
        d = res.layout  # the parameter blocks: no data needed
        self.p, self.T, self.E = d.n_beta, d.n_theta, d.n_extra
        self.J = res.beta_jacobian()
        self.fixed_names = list(res.vcov_fixed.index)
        self.names = list(self.fixed_names)
        self.lme4_names = list(self.fixed_names)
        self.kinds = ["fixed"] * self.p
        self.bounds = [(None, None)] * self.p
        self.blocks = []
        self.structured = []  # (start, structure) of structured factors
        start, sig = self.p, 0
        for f, T in zip(res.factors, res.z_maps):
            if f.structure is not None:
                st = f.structure
                self.structured.append((start, st))
                for nm, kind, b in zip(
                    structure_names(f), st.reported_kinds(), st.reported_bounds()
                ):
                    sig += 1
                    self.lme4_names.append(f".sig{sig:02d}")
                    self.names.append(nm)
                    self.kinds.append(kind)
                    self.bounds.append(b)
                start += st.n_params
                continue
            rows, cols = np.asarray(f.theta_rows), np.asarray(f.theta_cols)
            terms = f.term.names
            self.blocks.append((start, len(terms), rows, cols, np.asarray(T, dtype=float)))
            for r, c in zip(rows, cols):
                sig += 1
                self.lme4_names.append(f".sig{sig:02d}")
                if r == c:
                    self.names.append(f"sd_{terms[r]}|{f.name}")
                    self.kinds.append("sd")
                    self.bounds.append((0.0, None))
                else:
                    self.names.append(f"cor_{terms[r]}.{terms[c]}|{f.name}")
                    self.kinds.append("cor")
                    self.bounds.append((-1.0, 1.0))
            start += len(rows)
        fam = res.family
        self.blocks_extra = []
        # the family's coefficients: identity, except a design's (zero inflation, the
        # dispersion), which map to the user's units (gamma = J gamma_internal) and are
        # linear (kind "zi" or "disp", glmmTMB's rows zi~x, disp~x)
        self.Je = np.eye(self.E)
        designs = res.block_designs or (None,) * len(fam.blocks)
        j = 0
        for block, design in zip(fam.blocks, designs):
            if design is not None:
                w = len(design.names)
                self.Je[j : j + w, j : j + w] = design.J
                for nm in design.names:
                    self.names.append(f"{block.prefix}~{nm}")
                    self.lme4_names.append(f"{block.prefix}~{nm}")
                    self.kinds.append(block.prefix)
                    self.bounds.append((None, None))
                    self.blocks_extra.append(block)
                j += w
                continue
            self.names.append(block.reported)
            self.lme4_names.append(block.reported)
            self.kinds.append("extra")
            self.bounds.append(tuple(res.bounds[self.p + self.T + j]))
            self.blocks_extra.append(block)
            j += 1
        # the thresholds of a model whose design is centred internally are the reported
        # ones less the centring's shift: phi_extra = Je (x_extra + C beta_internal)
        self.K = self.Je @ res.extra_shift_matrix()
        self.extra_names = list(fam.extra_names)
        self.n = len(self.names)
        # the coordinates whose map to phi is linear (fixed effects, the family's
        # coefficients) and the covariance parameters'
        self.lin = np.r_[0 : self.p, self.p + self.T : self.n]
        self.theta = np.arange(self.p, self.p + self.T)
        A = self.linear_matrix()
        self.A_inv = np.linalg.inv(A) if len(A) else A

    # -- maps ------------------------------------------------------------------
    def linear_matrix(self) -> np.ndarray:
        """``A`` with ``phi[lin] = A x[lin]`` (fixed effects, then the family's
        coefficients)."""
        p, E = self.p, self.E
        A = np.zeros((p + E, p + E))
        A[:p, :p] = self.J
        A[p:, :p] = self.K
        A[p:, p:] = self.Je
        return A

    def to_phi(self, x):
        x = np.asarray(x, dtype=float)
        phi = np.empty(self.n)
        phi[self.lin] = self.linear_matrix() @ x[self.lin]
        phi[self.theta] = self.theta_phi(x)
        return phi

    def theta_phi(self, x, internal=False) -> np.ndarray:
        """The reported covariance parameters at ``x``; ``internal``: those of the
        random effects of the internal (centred and scaled) Z columns."""
        phi = np.empty(self.n)
        for start, q, rows, cols, T in self.blocks:
            L = np.zeros((q, q))
            L[rows, cols] = x[start : start + len(rows)]
            Lo = L if internal else original_lambda(T, L)
            S = Lo @ Lo.T
            sd = np.sqrt(np.clip(np.diag(S), 0.0, None))
            for j, (r, c) in enumerate(zip(rows, cols)):
                if r == c:
                    phi[start + j] = sd[r]
                else:
                    den = sd[r] * sd[c]
                    phi[start + j] = np.clip(S[r, c] / den, -1.0, 1.0) if den > 0 else 0.0
        for start, st in self.structured:
            phi[start : start + st.n_params] = st.reported(x[start : start + st.n_params])
        return phi[self.theta]

    def theta_to_x(self, phi_t, internal=False):
        """Internal covariance parameters for reported ones ``phi_t`` (``internal``: of
        the internal Z columns); None when the correlations are not PSD (or a
        structure's values are outside its domain)."""
        phi = np.zeros(self.n)
        phi[self.theta] = phi_t
        x = np.empty(self.n)
        for start, q, rows, cols, T in self.blocks:
            vals = phi[start : start + len(rows)]
            sd = np.zeros(q)
            R = np.eye(q)
            for v, r, c in zip(vals, rows, cols):
                if r == c:
                    sd[r] = v
                else:
                    R[r, c] = R[c, r] = v
            LR = _psd_cholesky(R)
            if LR is None:
                return None
            Lam = internal_lambda(np.eye(q) if internal else T, sd[:, None] * LR)
            x[start : start + len(rows)] = Lam[rows, cols]
        for start, st in self.structured:
            p = st.from_reported(phi[start : start + st.n_params])
            if p is None:
                return None
            x[start : start + st.n_params] = p
        return x[self.theta]

    def to_x(self, phi):
        """Internal parameters for ``phi``; None when the correlations are not PSD (or a
        structure's reported values are outside its domain)."""
        phi = np.asarray(phi, dtype=float)
        x = np.empty(self.n)
        x[self.lin] = self.A_inv @ phi[self.lin]
        xt = self.theta_to_x(phi[self.theta])
        if xt is None:
            return None
        x[self.theta] = xt
        return x

    @property
    def correlations_coupled(self) -> bool:
        """Whether some reported correlations have a joint domain that is not a box: a
        Toeplitz structure's lag correlations, or the correlations of an unstructured
        block of three or more random effects (positive definite together, not each)."""
        many = any(len(rows) > 3 for _s, _q, rows, _c, _T in self.blocks)
        return many or any(st.n_params - st.n_sd > 1 for _s, st in self.structured)

    def correlation_anchor(self, phi_t, k) -> np.ndarray:
        """Reported covariance parameters ``phi_t`` with the other correlations of the
        block holding correlation ``k`` replaced by values that make it positive definite
        whatever ``phi_t[k]`` in (-1, 1): zeros for an unstructured block (one nonzero
        correlation), ``a^j cos(w j)`` at lag ``j`` for a Toeplitz structure (with
        ``a^m cos(w m)`` the held lag ``m``'s value: a damped cosine is positive
        definite). The segment from ``phi_t`` to it keeps ``phi_t[k]``; the domain is
        convex, so where ``phi_t`` is outside it a point of the segment is inside."""
        phi_t = np.asarray(phi_t, dtype=float)
        out = phi_t.copy()
        j = k - self.p
        for start, _q, rows, cols, _T in self.blocks:
            span = np.arange(start, start + len(rows)) - self.p
            if j in span:
                for i, (r, c) in zip(span, zip(rows, cols)):
                    if r != c and i != j:
                        out[i] = 0.0
        for start, st in self.structured:
            first = start - self.p + st.n_sd
            n_cor = st.n_params - st.n_sd
            if n_cor > 1 and first <= j < first + n_cor:
                lag, v = j - first + 1, phi_t[j]
                a = abs(v) ** (1.0 / lag)
                w = 0.0 if v >= 0 else np.pi / lag
                lags = np.arange(1, n_cor + 1)
                out[first : first + n_cor] = a**lags * np.cos(w * lags)
                out[j] = v
        return out

    def theta_jacobian(self, phi_t, internal=False) -> np.ndarray:
        """Jacobian of :meth:`theta_to_x` at ``phi_t`` (central differences, one-sided at
        a correlation's bound)."""
        phi_t = np.asarray(phi_t, dtype=float)
        D = np.eye(self.T)
        x0 = self.theta_to_x(phi_t, internal)
        spans = [(start, len(rows)) for start, _q, rows, _c, _s in self.blocks]
        spans += [(start, st.n_params) for start, st in self.structured]
        for start, width in spans:
            span = slice(start - self.p, start - self.p + width)
            for i in range(start, start + width):
                j = i - self.p
                # (an SD of 1e4 in a slope variable's small units: a step relative to it)
                h = 1e-7 * max(1.0, abs(phi_t[j])) if self.kinds[i] == "sd" else 1e-7
                lo, hi = self.bounds[i]
                up, dn = phi_t.copy(), phi_t.copy()
                # steps stay inside [-1, 1] for correlations (sd is linear: any step works)
                up[j] = phi_t[j] + h if hi is None else min(phi_t[j] + h, hi)
                down = lo is None or self.kinds[i] == "sd"
                dn[j] = phi_t[j] - h if down else max(phi_t[j] - h, lo)
                xu, xd = self.theta_to_x(up, internal), self.theta_to_x(dn, internal)
                if xu is None:
                    xu, up = x0, phi_t
                if xd is None:
                    xd, dn = x0, phi_t
                if up[j] > dn[j]:
                    D[span, j] = (xu - xd)[span] / (up[j] - dn[j])
        return D

    def internal_factor(self, k):
        """``a`` with ``phi_k = a psi_k`` for reported covariance parameter ``k`` and the
        same parameter ``psi_k`` of the internal Z columns, or None when ``phi_k``
        mixes several of them (an intercept's SD or correlation where the slopes are
        centred internally)."""
        for start, _q, rows, cols, T in self.blocks:
            j = k - start
            if 0 <= j < len(rows):
                r, c = rows[j], cols[j]
                if any(np.count_nonzero(T[i]) != 1 or T[i, i] == 0 for i in {r, c}):
                    return None
                return abs(T[r, r]) if r == c else float(np.sign(T[r, r] * T[c, c]))
        return 1.0  # a structured factor's parameters: the same on both scales

    def far_origin(self, k) -> bool:
        """Whether covariance parameter ``k`` mixes the internal ones (an intercept's SD
        or correlation beside centred slopes) with a slope variable whose mean is more
        than 10 SDs from zero: the parameter then describes the random effects at an
        origin far outside the data."""
        if self.kinds[k] not in ("sd", "cor") or self.internal_factor(k) is not None:
            return False
        for start, _q, rows, _c, T in self.blocks:
            if 0 <= k - start < len(rows):
                # a centred slope's column of T: -mean / SD in its first row
                return bool(np.max(np.abs(T[0, 1:]), initial=0.0) > 10.0)
        return False

    def dx_dphi(self, phi):
        """Jacobian of ``to_x`` at ``phi`` (exact for the linear parts)."""
        D = np.zeros((self.n, self.n))
        D[np.ix_(self.lin, self.lin)] = self.A_inv
        D[np.ix_(self.theta, self.theta)] = self.theta_jacobian(np.asarray(phi)[self.theta])
        return D

    def dphi_dx(self, x):
        """Jacobian of ``to_phi`` at ``x`` by central differences (rho part)."""
        G = np.eye(self.n)
        G[np.ix_(self.lin, self.lin)] = self.linear_matrix()
        spans = [(start, len(rows)) for start, _q, rows, _c, _s in self.blocks]
        spans += [(start, st.n_params) for start, st in self.structured]
        for start, width in spans:
            for j in range(start, start + width):
                h = 1e-6 * max(1.0, abs(x[j]))
                up, dn = x.copy(), x.copy()
                up[j] += h
                dn[j] -= h
                G[:, j] = (self.to_phi(up) - self.to_phi(dn)) / (2 * h)
                G[self.lin, j] = 0.0
        return G

    def display(self, k, values):
        """Values of row ``k`` on the reported scale (theta and zi probability)."""
        values = np.asarray(values, dtype=float)
        if self.kinds[k] != "extra":
            return values
        block = self.blocks_extra[k - self.p - self.T]
        shown = np.vectorize(block.reported_value, otypes=[float])(values)
        return shown if shown.ndim else float(shown)


def structure_names(f) -> list:
    """Reported names of a structured factor's parameters, e.g. ``sd_day|id`` and
    ``rho_ar1|id`` (per-level SDs ``sd_day3|id`` for ``cs``, ``rate_ou|id``)."""
    st = f.structure
    sds = (
        [f"sd_{nm}|{f.name}" for nm in f.term.names]
        if st.n_sd > 1
        else [f"sd_{f.term.time}|{f.name}"]
    )
    if st.name == "toep":  # one correlation per lag
        return sds + [f"rho_lag{k}|{f.name}" for k in range(1, st.n_cor + 1)]
    cor = "rate_ou" if st.name == "ou" else f"rho_{st.name}"
    return sds + [f"{cor}|{f.name}"]


# -- Wald intervals on every reported parameter ---------------------------------
def wald_table(est, pmap: ParamMap, level: float) -> pd.DataFrame:
    """Wald intervals: fixed effects as lme4; SDs on the log scale, correlations on
    Fisher's z scale and extra parameters on their internal scale (glmmTMB's choice).

    Parameters on a bound (a zero variance, NB theta at infinity) get NaN limits.
    """
    z = stats.norm.ppf(0.5 + level / 2.0)
    x = est.fit_result_.params
    phi = pmap.to_phi(x)
    G = pmap.dphi_dx(x)
    # (a separated fit's coefficients that the separation does not move: the limit
    # model's variances, as the fixed-effect table's)
    var = est.fit_result_.delta_covariance(G, diagonal=True)
    # (a parameter that moves along a set of equal likelihood is not determined, even
    # where it is stationary at the fit's point)
    moved = est.fit_result_.moves_on_set(pmap.to_phi)
    if moved is not None:
        var = np.where(moved, np.nan, var)
    touched = ~np.isfinite(var)
    se = np.sqrt(np.where(var > 0, var, np.nan))  # a variance of 0 is no standard error
    se[touched] = np.nan
    for k, kind in enumerate(pmap.kinds):
        # a correlation at +-1 is on its boundary: the delta method gives no standard error
        if kind == "cor" and abs(phi[k]) > 1.0 - 1e-8:
            se[k] = np.nan
    missing = [pmap.names[k] for k in range(pmap.n) if np.isnan(se[k]) and not touched[k]]
    if missing:
        warn(
            f"Wald standard errors of {missing} cannot be computed (a parameter on its "
            "boundary, or a flat direction of the likelihood): their intervals are NaN. Use "
            "method='profile' or method='bootstrap' for them.",
            StandardErrorWarning,
            stacklevel=user_stacklevel(),
        )
    lower, upper = np.full(pmap.n, np.nan), np.full(pmap.n, np.nan)
    for k, kind in enumerate(pmap.kinds):
        if kind == "fixed":
            lower[k], upper[k] = phi[k] - z * se[k], phi[k] + z * se[k]
        elif kind == "sd":
            if phi[k] > 0 and np.isfinite(se[k]):
                s = se[k] / phi[k]
                with np.errstate(over="ignore"):  # an SD next to 0: (0, inf)
                    lower[k], upper[k] = phi[k] * np.exp(-z * s), phi[k] * np.exp(z * s)
        elif kind == "cor":
            if abs(phi[k]) < 1 and np.isfinite(se[k]):
                s = se[k] / (1.0 - phi[k] ** 2)
                zc = np.arctanh(phi[k])
                lower[k], upper[k] = np.tanh(zc - z * s), np.tanh(zc + z * s)
        else:
            lo, hi = phi[k] - z * se[k], phi[k] + z * se[k]
            lower[k], upper[k] = pmap.display(k, lo), pmap.display(k, hi)
    est_disp = np.array([pmap.display(k, phi[k]) for k in range(pmap.n)], dtype=float)
    return pd.DataFrame(
        {"estimate": est_disp, "lower": lower, "upper": upper, "std_error": se},
        index=pd.Index(pmap.names, name="parameter"),
    )


def lme4_name_map(est) -> dict:
    """Our row names -> lme4's ``oldNames = TRUE`` names (``.sig01``, ...)."""
    pmap = ParamMap(est)
    return dict(zip(pmap.names, pmap.lme4_names))
