"""Ordered categories: the cumulative link model of ``ordinal::clm`` / ``clmm``.

For an outcome in classes ``0 < 1 < ... < K - 1`` (coded by their index),

.. math::

    P(Y \\le j \\mid \\eta) = F(\\alpha_j - \\eta), \\qquad
    \\log p(y \\mid \\eta) = \\log\\bigl(F(\\alpha_y - \\eta) - F(\\alpha_{y-1} - \\eta)\\bigr)

with ``alpha_{-1} = -inf`` and ``alpha_{K-1} = +inf``. The thresholds are the linear
map ``alpha = J a`` of the family's parameters ``a`` (its blocks, one scalar each,
see :mod:`.thresholds`); the number of blocks depends on ``K``, so a family object is
made per fit.

With scale effects (``ordinal::clmm2``'s ``scale = ~ x``) the latent distribution's
scale depends on each row: ``P(Y <= j) = F((alpha_j - eta) / exp(s))``, with
``s = d' zeta`` a block with a design and no intercept (clmm2 fixes it at 0: the
thresholds, coefficients and random effects set the overall scale). The family then
receives a tuple of the threshold parameters (floats) and the rows' ``s`` (an array,
broadcast against ``eta`` from the right).

Thresholds out of order give no probability model: the log-density is ``-inf``
there, a failed evaluation for the optimiser.

Every derivative comes from the partial derivatives of ``log p`` in the two
arguments ``x_u = (alpha_y - eta) / sigma`` and ``x_l = (alpha_{y-1} - eta) / sigma``
(``sigma = 1`` without scale effects), written with
``r_u = f(x_u) / p`` and ``r_l = f(x_l) / p`` (computed on the log scale), so that
nothing cancels where ``p`` is tiny.
"""

from __future__ import annotations

import numpy as np

from ..blocks import ParameterBlock
from .base import Derivs, Family, NodeDerivs, _weighted
from .ordinal_links import OrdinalLink, make_ordinal_link
from .thresholds import start_parameters, threshold_structure


def _identity(value):
    return float(value)


def _threshold_block(name: str, start: float) -> ParameterBlock:
    return ParameterBlock(
        name=name,
        reported=name,
        bounds=(None, None),
        start=float(start),
        to_reported=_identity,
        attribute=f"_threshold_{name}_",
        flat_side=None,  # no bound: the boundary fields below are never used
        at_bound_value=np.nan,
        at_bound_message="",
        warning="",
        label=f"Threshold {name}",
        summary="threshold",
        section="Threshold coefficients:",
        sentence="",
        at_bound_sentence="",
    )


# the log of the latent scale, s = d' zeta (no intercept: zeta = 0 is the model without)
SCALE_BLOCK = ParameterBlock(
    name="log_scale",
    reported="scale",
    bounds=(None, None),
    start=0.0,
    to_reported=np.exp,
    attribute="_latent_scale_",
    flat_side=None,  # no bound: the boundary fields below are never used
    at_bound_value=np.nan,
    at_bound_message="",
    warning="",
    label="Latent scale exp(s)",
    summary="scale table",
    section="Scale coefficients:",
    sentence="",
    at_bound_sentence="",
    prefix="scale",
    effects="scale_effects_",
)


def _log1mexp(a):
    """``log(1 - exp(a))`` for ``a <= 0``, accurate on both sides of ``-log 2``."""
    a = np.minimum(a, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(a > -0.6931471805599453, np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


# the largest linear predictor (rows x quadrature nodes) whose partials are remembered
_MEMO_CELLS = 50_000


def _pieces(ln, xu, xl, upper, middle, order):
    """``B``, ``D`` (before the middle classes' clipping) and the derivatives of ``B``
    in ``x_u`` and ``x_l`` and of ``D`` in both (each (order,) + x.shape; ``order`` 1,
    3 or 4): from ``log F`` and ``log S`` at both arguments."""
    lfu, lsu = ln.log_cdf(xu), ln.log_sf(xu)
    lfl, lsl = ln.log_cdf(xl), ln.log_sf(xl)
    Fu, Su = _derivatives(ln, "cdf", xu, order), _derivatives(ln, "sf", xu, order)
    Fl, Sl = _derivatives(ln, "cdf", xl, order), _derivatives(ln, "sf", xl, order)
    base = np.where(upper, lsl, lfu)
    D = np.where(upper, lsu - lsl, lfl - lfu)
    return (base, D) + _forms(upper, middle, Fu, Fl, Su, Sl)


def _forms(upper, middle, Fu, Fl, Su, Sl):
    """B's derivatives in ``x_u`` (lower form) or ``x_l`` (upper form) and D's in both,
    from those of ``log F`` and ``log S`` at ``x_u`` (``Fu``, ``Su``) and ``x_l`` (``Fl``,
    ``Sl``), each read only in the rows of its form: ``(bu, bl, du, dl)``."""
    bu = np.where(upper, 0.0, Fu)
    bl = np.where(upper, Sl, 0.0)
    du = np.where(middle, np.where(upper, Su, -Fu), 0.0)
    dl = np.where(middle, np.where(upper, -Sl, Fl), 0.0)
    return bu, bl, du, dl


def _derivatives(ln, kind, x, order):
    """The first ``order`` (1, 3 or 4) derivatives of ``log F`` (``kind`` "cdf") or
    ``log S`` ("sf") at ``x``, stacked: (order,) + x.shape."""
    if order == 1:
        return getattr(ln, f"log_{kind}_d1")(x)[None]
    found = getattr(ln, f"log_{kind}_derivs")(x)
    if order == 4:
        found = found + (getattr(ln, f"log_{kind}_d4")(x),)
    return np.stack(found)


# (-1)^k for the k-th derivative, k = 1, 2, 3, 4
_SIGNS = np.array([-1.0, 1.0, -1.0, 1.0])


def _symmetric_pieces(ln, xu, xl, upper, middle, order):
    """:func:`_pieces` for a symmetric latent distribution (``S(x) = F(-x)``), from
    ``log F`` alone at half the arguments: ``B = log F(x_1)`` and ``D = log F(x_2) -
    log F(x_1)`` with ``x_1 = x_u``, ``x_2 = x_l`` in the lower form and ``x_1 =
    -x_l``, ``x_2 = -x_u`` in the upper, the derivatives of ``log S`` at ``x`` those
    of ``log F`` at ``-x`` times ``(-1)^k``. The same values to the bit."""
    x1 = np.where(upper, -xl, xu)
    x2 = np.where(upper, -xu, xl)
    l1 = ln.log_cdf(x1)
    D = ln.log_cdf(x2) - l1
    G1, G2 = _derivatives(ln, "cdf", x1, order), _derivatives(ln, "cdf", x2, order)
    sign = _SIGNS[:order].reshape((order,) + (1,) * np.ndim(xu))
    # in the lower form G1 is log F's at x_u and G2 at x_l; in the upper form sign G1 is
    # log S's at x_l and sign G2 at x_u
    return (l1, D) + _forms(upper, middle, G1, G2, sign * G2, sign * G1)


class CumulativeLink(Family):
    """Cumulative link model for ``n_classes`` ordered classes; ``y`` is the class index.

    Parameters
    ----------
    n_classes : int
        Number of classes, at least 2.
    link : str
        ``"logit"``, ``"probit"``, ``"cloglog"``, ``"loglog"`` or ``"cauchit"`` (clm's).
    threshold : str
        ``"flexible"``, ``"equidistant"`` or ``"symmetric"`` (clm's).
    labels : sequence, optional
        Class labels, for the thresholds' names (``"1|2"``); ``0, 1, ...`` by default.
    start : array of shape (n_classes - 1,), optional
        Starting thresholds (e.g. from the marginal cumulative proportions).
    scale : bool, default=False
        Whether the latent scale has its own predictors (a last block, ``log_scale``,
        which the estimator gives a design without intercept).
    """

    name = "ordinal"
    r_name = "cumulative"
    long_name = "cumulative link (ordinal)"
    # the binomial / count separation test does not apply (see ordinal_separation)
    glm_separation = False
    scales_own_parameters = True  # the thresholds (see Family)
    latent_error = True

    def __init__(
        self, n_classes, link="logit", threshold="flexible", labels=None, start=None, scale=False
    ):
        if n_classes < 2:
            raise ValueError(f"an ordinal outcome needs at least 2 classes, got {n_classes}.")
        self.n_classes = int(n_classes)
        self.link: OrdinalLink = make_ordinal_link(link) if isinstance(link, str) else link
        self.log_concave = self.link.log_concave
        self.threshold = threshold
        self.labels = list(range(n_classes)) if labels is None else list(labels)
        self.J, names = threshold_structure(self.n_classes, threshold, self.labels)
        a0 = np.zeros(len(names))
        if start is not None:
            a0 = start_parameters(self.J, np.asarray(start, dtype=float))
        elif len(names):
            a0 = start_parameters(self.J, np.linspace(-1.0, 1.0, n_classes - 1))
        self.blocks = tuple(_threshold_block(n, s) for n, s in zip(names, a0))
        self.has_scale = bool(scale)
        if self.has_scale:
            self.blocks += (SCALE_BLOCK,)

    def describe(self) -> str:
        return f"cumulative  ( {self.link.name} )"

    # -- thresholds -------------------------------------------------------------
    def split(self, extra):
        """``(a, s)``: the threshold parameters and the rows' log scale (0.0 without
        scale effects; with them, the last entry of the tuple the family receives)."""
        E = self.J.shape[1]
        if not self.has_scale:
            return np.asarray(extra, dtype=float), 0.0
        if not isinstance(extra, tuple):
            raise TypeError(
                "a cumulative link model with scale effects takes the blocks' values (a "
                "tuple: thresholds, then the rows' log scale), not their coefficients."
            )
        return np.array([float(v) for v in extra[:E]]), np.asarray(extra[E], dtype=float)

    separated_outcomes = "all outcomes in the lowest class or all in the highest"

    def separated_levels(self, y, trials, codes, n_levels, use):
        c = codes[use]
        tot = np.bincount(c, minlength=n_levels)
        low = np.bincount(c, y[use] <= 0, minlength=n_levels)
        high = np.bincount(c, y[use] >= self.n_classes - 1, minlength=n_levels)
        return (tot > 0) & ((low >= tot) | (high >= tot))

    def eta_shift(self):
        """The threshold parameters ``d`` with ``J d = 1``: ``P(Y <= j) = F(alpha_j -
        eta)`` is unchanged when ``eta`` and every threshold move together (the
        scale block, last, does not move)."""
        d = np.linalg.lstsq(self.J, np.ones(self.J.shape[0]), rcond=None)[0]
        return np.r_[d, np.zeros(int(self.has_scale))]

    def alpha(self, extra) -> np.ndarray:
        """The thresholds ``alpha = J a``."""
        return self.J @ self.split(extra)[0]

    def _scaled(self, eta, extra):
        """``(alpha_j - eta) / exp(s)``, shape ``eta.shape + (K - 1,)``."""
        a, s = self.split(extra)
        x = self.J @ a - np.asarray(eta, dtype=float)[..., None]
        return x if not self.has_scale else x * np.exp(-s)[..., None]

    def mean_curvature(self, y, trials, weights) -> float:
        return 0.25

    def constant(self, y, trials):
        return np.asarray(y, dtype=np.intp)

    def _partials(self, y, eta, extra, const):
        """``log p`` and its partial derivatives in ``(x_u, x_l)`` to the third order.

        ``log p = B + log(1 - exp(D))``: for the bottom class ``B = log F(x_u)``, for
        the top class ``B = log S(x_l)`` (``D = -inf``); for a middle class
        ``B = log F(x_u)``, ``D = log F(x_l) - log F(x_u)`` when ``x_l <= 0``, and
        ``B = log S(x_l)``, ``D = log S(x_u) - log S(x_l)`` otherwise. Each piece has
        closed-form derivatives free of cancellation in the tails; with
        ``s = 1 / expm1(-D)`` the derivatives of ``log(1 - e^D)`` in ``D`` are
        ``-s``, ``-s (1 + s)`` and ``-s (1 + s)(1 + 2 s)``. None when the thresholds
        are out of order.

        The last call's result is remembered (its inputs compared by value; up to
        :data:`_MEMO_CELLS` values of ``eta``): the engine asks for the derivatives in
        ``eta`` and in the thresholds at the same point one after the other. The arrays
        returned are not to be written to.
        """
        a, log_sigma = self.split(extra)
        k = np.asarray(y, dtype=np.intp) if const is None else const
        eta = np.asarray(eta, dtype=float)
        key = (eta, k, a, log_sigma)
        memo = self._memo
        if memo is not None and all(
            np.shape(m) == np.shape(v) and np.array_equal(m, v) for m, v in zip(memo[0], key)
        ):
            return memo[1]
        L = self._compute_partials(eta, k, a, log_sigma)
        # (on large data not kept: a dozen arrays of the rows' size would outlive the fit)
        self._memo = None
        if eta.size <= _MEMO_CELLS:
            self._memo = (tuple(np.array(v, copy=True) for v in key), L)
        return L

    _memo = None  # (inputs, result) of the last _partials

    def _cut_rows(self, k):
        """The J rows of each row's upper and lower thresholds (zero beyond the ends):
        ``(J_u, J_l)``, each (E, n), for the class indices ``k``."""
        E = self.J.shape[1]
        Jp = np.vstack([np.zeros(E), self.J, np.zeros(E)])
        return Jp[k + 1].T, Jp[k].T

    def __getstate__(self):
        return {k: v for k, v in vars(self).items() if k != "_memo"}

    def _compute_partials(self, eta, k, a, log_sigma, order=3):
        """:meth:`_partials` at the class indices ``k``, thresholds' parameters ``a``
        and log scale ``log_sigma``; ``order=1``: ``logp`` and the first partials
        ``u`` and ``l`` alone (what quadrature reads at its nodes); ``order=4``: also the
        fourth (``uuuu`` ... ``llll``, for the exact Hessian), from ``g(D) = log(1 -
        e^D)``'s fourth derivative ``p4 = p2 (1 + 6 s + 6 s^2)`` and ``D``'s partials,
        which do not mix ``x_u`` and ``x_l``."""
        alpha = self.J @ a
        if not (np.all(np.diff(alpha) > 0) and np.all(np.isfinite(alpha))):
            return None
        if not np.all(np.isfinite(log_sigma)):
            return None
        top, bottom = k == self.n_classes - 1, k == 0
        padded = np.concatenate([[0.0], alpha, [0.0]])
        inv = np.exp(-log_sigma)  # 1 / sigma, broadcast against eta
        xu = (padded[k + 1] - eta) * inv  # a placeholder for the top class
        xl = (padded[k] - eta) * inv  # a placeholder for the bottom class
        ln = self.link
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            upper = ~bottom & (top | (xl > 0))  # B is log S(x_l)
            middle = ~top & ~bottom
            if ln.symmetric:
                base, D, bu, bl, du, dl = _symmetric_pieces(ln, xu, xl, upper, middle, order)
            else:
                base, D, bu, bl, du, dl = _pieces(ln, xu, xl, upper, middle, order)
            D = np.where(middle, np.minimum(D, 0.0), -np.inf)
            logp = base + np.where(middle, _log1mexp(D), 0.0)
            s = np.where(middle, 1.0 / np.expm1(-D), 0.0)
        p1 = -s
        L = {"logp": logp, "xu": xu, "xl": xl, "inv": inv}
        L["u"] = bu[0] + p1 * du[0]
        L["l"] = bl[0] + p1 * dl[0]
        if order == 1:
            return L
        p2 = -s * (1.0 + s)
        p3 = p2 * (1.0 + 2.0 * s)
        L["uu"] = bu[1] + p2 * du[0] ** 2 + p1 * du[1]
        L["ll"] = bl[1] + p2 * dl[0] ** 2 + p1 * dl[1]
        L["ul"] = p2 * du[0] * dl[0]
        L["uuu"] = bu[2] + p3 * du[0] ** 3 + 3.0 * p2 * du[0] * du[1] + p1 * du[2]
        L["lll"] = bl[2] + p3 * dl[0] ** 3 + 3.0 * p2 * dl[0] * dl[1] + p1 * dl[2]
        L["uul"] = p3 * du[0] ** 2 * dl[0] + p2 * du[1] * dl[0]
        L["ull"] = p3 * du[0] * dl[0] ** 2 + p2 * du[0] * dl[1]
        if order == 4:
            p4 = p2 * (1.0 + 6.0 * s * (1.0 + s))
            # in one argument (B's and D's), three in one and one in the other (D's)
            sides = (("uuuu", "uuul", bu, du, dl), ("llll", "ulll", bl, dl, du))
            for pure, mixed, b, d, e in sides:
                L[pure] = (
                    b[3]
                    + p4 * d[0] ** 4
                    + 6.0 * p3 * d[0] ** 2 * d[1]
                    + p2 * (3.0 * d[1] ** 2 + 4.0 * d[0] * d[2])
                    + p1 * d[3]
                )
                L[mixed] = (p4 * d[0] ** 3 + 3.0 * p3 * d[0] * d[1] + p2 * d[2]) * e[0]
            L["uull"] = (p4 * du[0] ** 2 + p3 * du[1]) * dl[0] ** 2 + (
                p3 * du[0] ** 2 + p2 * du[1]
            ) * dl[1]
        return L

    has_node_derivs = True

    def node_derivs(self, y, eta, trials, weights, extra, const=None, with_extra=False):
        """:class:`~.base.NodeDerivs` from the first partials alone. ``d1`` is
        ``-(u + l) / sigma``; a threshold parameter's partial is ``(J_u u + J_l l) /
        sigma`` with ``J_u``, ``J_l`` the J rows of the row's upper and lower thresholds
        (channels ``u / sigma`` and ``l / sigma``), the row's log scale's
        ``-(x_u u + x_l l)`` (a third channel)."""
        eta = np.asarray(eta, dtype=float)
        a, log_sigma = self.split(extra)
        k = np.asarray(y, dtype=np.intp) if const is None else const
        L = self._compute_partials(eta, k, a, log_sigma, order=1)
        n_channels = 2 + int(self.has_scale)
        if L is None:  # thresholds out of order: no probability model
            loglik, d1 = np.full(eta.shape, -np.inf), np.zeros(eta.shape)
        else:
            loglik, d1 = L["logp"], -(L["u"] + L["l"]) * L["inv"]
        if weights is not None:
            loglik, d1 = weights * loglik, weights * d1
        if not with_extra:
            return NodeDerivs(loglik, d1, None, None)
        if L is None:
            channels = np.zeros((n_channels,) + eta.shape)
        else:
            inv = L["inv"]
            channels = [L["u"] * inv, L["l"] * inv]
            if self.has_scale:
                channels.append(-(L["xu"] * L["u"] + L["xl"] * L["l"]))
            channels = np.stack(channels)
            if weights is not None:
                channels = weights * channels
        E = self.J.shape[1]
        rows = np.zeros((E + int(self.has_scale), n_channels, len(k)))
        rows[:E, 0], rows[:E, 1] = self._cut_rows(k)
        if self.has_scale:
            rows[E, 2] = 1.0
        return NodeDerivs(loglik, d1, channels, rows)

    def derivs(self, y, eta, trials, weights, extra, const=None):
        eta = np.asarray(eta, dtype=float)
        L = self._partials(y, eta, extra, const)
        if L is None:  # thresholds out of order: no probability model
            inf = np.full(eta.shape, -np.inf)
            zero = np.zeros(eta.shape)
            return Derivs(inf, zero, zero, zero)
        # eta enters both arguments as -eta / sigma
        inv = L["inv"]
        d1 = -(L["u"] + L["l"]) * inv
        w = -(L["uu"] + 2.0 * L["ul"] + L["ll"]) * inv**2
        w3 = (L["uuu"] + 3.0 * L["uul"] + 3.0 * L["ull"] + L["lll"]) * inv**3
        # (a copy: the remembered partials stay as they were whatever the caller does)
        return _weighted(weights, L["logp"].copy(), d1, w, w3)

    def extra_derivs(self, y, eta, trials, weights, extra, const=None):
        """Derivatives of ``loglik``, ``d1`` and ``w`` in the threshold parameters and,
        with scale effects, in each row's log scale ``s``: (n_blocks, n) each.

        The thresholds enter ``x = (alpha - eta) / sigma`` through ``J / sigma``, so the
        derivatives of ``d1`` and ``w`` carry one more factor ``1 / sigma``
        than those of ``loglik``; ``s`` moves ``x`` by ``-x``, and ``d1`` and ``w``
        also through their own factors ``sigma^-1`` and ``sigma^-2``.
        """
        eta = np.asarray(eta, dtype=float)
        L = self._partials(y, eta, extra, const)
        n, E = len(eta), self.J.shape[1]
        if L is None:
            zero = np.zeros((E + int(self.has_scale), n))
            return zero, zero, zero
        inv = L["inv"]
        # in x_u and x_l: d loglik, d d1, d w (of the unscaled forms)
        dl_u, dl_l = L["u"], L["l"]
        dd1_u, dd1_l = -(L["uu"] + L["ul"]), -(L["ul"] + L["ll"])
        dw_u = -(L["uuu"] + 2.0 * L["uul"] + L["ull"])
        dw_l = -(L["uul"] + 2.0 * L["ull"] + L["lll"])
        k = np.asarray(y, dtype=np.intp) if const is None else const
        Ju, Jl = self._cut_rows(k)  # (E, n)
        pairs = ((dl_u, dl_l, inv), (dd1_u, dd1_l, inv**2), (dw_u, dw_l, inv**3))
        out = [(Ju * a + Jl * b) * f for a, b, f in pairs]
        if self.has_scale:
            xu, xl = L["xu"], L["xl"]
            m2 = L["uu"] + 2.0 * L["ul"] + L["ll"]
            ds = (
                -(xu * dl_u + xl * dl_l),
                (L["u"] + L["l"] - xu * dd1_u - xl * dd1_l) * inv,
                (2.0 * m2 - xu * dw_u - xl * dw_l) * inv**2,
            )
            out = [np.vstack([o, np.broadcast_to(d, (n,))[None, :]]) for o, d in zip(out, ds)]
        if weights is not None:
            out = [weights * o for o in out]
        return tuple(out)

    # the exact Laplace Hessian (and, without scale effects, the thresholds' rows:
    # extra_hessian_derivs)
    has_fourth_derivative = True

    def fourth_derivative(self, y, eta, trials, weights, extra=(), const=None):
        """``w4 = d w3 / d eta = -(L_uuuu + 4 L_uuul + 6 L_uull + 4 L_ulll + L_llll) /
        sigma^4`` (``eta`` enters both arguments as ``-eta / sigma``); zero where the
        thresholds are out of order."""
        eta = np.asarray(eta, dtype=float)
        a, log_sigma = self.split(extra)
        k = np.asarray(y, dtype=np.intp) if const is None else const
        L = self._compute_partials(eta, k, a, log_sigma, order=4)
        if L is None:
            return np.zeros(eta.shape)
        w4 = -(L["uuuu"] + 4.0 * L["uuul"] + 6.0 * L["uull"] + 4.0 * L["ulll"] + L["llll"])
        w4 = w4 * L["inv"] ** 4
        return w4 if weights is None else weights * w4

    def extra_hessian_derivs(self, y, eta, trials, weights, extra, const=None):
        """``(first, w3_e, second)`` in the threshold parameters (``Family``'s contract
        for the exact Hessian's rows of several own parameters): the first derivatives
        of ``loglik``, ``d1`` and ``w`` (each (E, n)), those of ``w3`` (E, n) and the
        second derivatives of ``loglik``, ``d1`` and ``w`` (each (E, E, n)). A threshold
        parameter moves ``x_u`` by ``J_u / sigma`` and ``x_l`` by ``J_l / sigma``, so each
        is a sum of partials in ``(x_u, x_l)`` one and two orders up with the rows' J
        entries. None with scale effects (their rows by differences) or thresholds out of
        order."""
        found = self._threshold_maps(y, eta, extra, const, order=4)
        if found is None:
            return None
        P, one, two = found  # (P: the partials in x_u and x_l)
        first = (
            one(P["u"], P["l"], 1),
            -one(P["uu"] + P["ul"], P["ul"] + P["ll"], 2),
            -one(P["uuu"] + 2.0 * P["uul"] + P["ull"], P["uul"] + 2.0 * P["ull"] + P["lll"], 3),
        )
        w3_e = one(
            P["uuuu"] + 3.0 * P["uuul"] + 3.0 * P["uull"] + P["ulll"],
            P["uuul"] + 3.0 * P["uull"] + 3.0 * P["ulll"] + P["llll"],
            4,
        )
        second = (
            two(P["uu"], P["ul"], P["ll"], 2),
            -two(P["uuu"] + P["uul"], P["uul"] + P["ull"], P["ull"] + P["lll"], 3),
            -two(
                P["uuuu"] + 2.0 * P["uuul"] + P["uull"],
                P["uuul"] + 2.0 * P["uull"] + P["ulll"],
                P["uull"] + 2.0 * P["ulll"] + P["llll"],
                4,
            ),
        )
        if weights is not None:
            first = tuple(weights * v for v in first)
            w3_e = weights * w3_e
            second = tuple(weights * v for v in second)
        return first, w3_e, second

    def extra_glm_derivs(self, y, eta, trials, weights, extra, const=None):
        """``(loglik_e, d1_e, loglik_ef)``: what the GLM's Newton steps read of
        :meth:`extra_hessian_derivs` (the first derivatives of ``loglik`` and ``d1`` in
        each threshold parameter, (E, n), and the second of ``loglik``, (E, E, n)), from
        the partials to the third order that :meth:`derivs` made at the same point."""
        found = self._threshold_maps(y, eta, extra, const, order=3)
        if found is None:
            return None
        P, one, two = found
        out = (
            one(P["u"], P["l"], 1),
            -one(P["uu"] + P["ul"], P["ul"] + P["ll"], 2),
            two(P["uu"], P["ul"], P["ll"], 2),
        )
        return out if weights is None else tuple(weights * v for v in out)

    def _threshold_maps(self, y, eta, extra, const, order):
        """The partials of ``log p`` in ``(x_u, x_l)`` to ``order`` (3: :meth:`_partials`',
        remembered; 4: made anew) and the maps of a function's partials in them to its
        first and second derivatives in the threshold parameters (``one(gu, gl, power)``:
        (E, n), ``two(guu, gul, gll, power)``: (E, E, n), ``power`` the factors ``1 /
        sigma``); None with scale effects or thresholds out of order."""
        if self.has_scale:
            return None
        eta = np.asarray(eta, dtype=float)
        k = np.asarray(y, dtype=np.intp) if const is None else const
        if order == 3:
            L = self._partials(y, eta, extra, const)
        else:
            a, log_sigma = self.split(extra)
            L = self._compute_partials(eta, k, a, log_sigma, order=order)
        if L is None:
            return None
        Ju, Jl = self._cut_rows(k)  # (E, n)
        cross = Ju[:, None] * Jl[None] + Jl[:, None] * Ju[None]
        inv = L["inv"]

        def one(gu, gl, power):  # d G / d a_e, G's partials gu, gl
            return (Ju * gu + Jl * gl) * inv**power

        def two(guu, gul, gll, power):  # d2 G / d a_e d a_f
            out = Ju[:, None] * Ju[None] * guu + cross * gul + Jl[:, None] * Jl[None] * gll
            return out * inv**power

        return L, one, two

    # -- probabilities ------------------------------------------------------------
    def cumulative(self, eta, extra) -> np.ndarray:
        """``P(Y <= j)`` for ``j = 0, ..., K - 2``, shape ``eta.shape + (K - 1,)``."""
        return np.exp(self.link.log_cdf(self._scaled(eta, extra)))

    def class_probabilities(self, eta, extra) -> np.ndarray:
        """``P(Y = k)``, shape ``eta.shape + (K,)``, each row summing to 1.

        Each probability is a difference of distribution functions or of survival
        functions, whichever does not cancel.
        """
        eta = np.asarray(eta, dtype=float)
        x = self._scaled(eta, extra)
        eta = np.broadcast_to(eta, x.shape[:-1])
        with np.errstate(over="ignore", divide="ignore"):
            F = np.exp(self.link.log_cdf(x))
            S = np.exp(self.link.log_sf(x))
        zeros = np.zeros(eta.shape + (1,))
        ones = np.ones(eta.shape + (1,))
        Fp = np.concatenate([zeros, F, ones], axis=-1)
        Sp = np.concatenate([ones, S, zeros], axis=-1)
        lower_half = np.concatenate([x, np.full(eta.shape + (1,), np.inf)], axis=-1) <= 0
        diff_f = Fp[..., 1:] - Fp[..., :-1]
        diff_s = Sp[..., :-1] - Sp[..., 1:]
        p = np.where(lower_half, diff_f, diff_s)
        return np.clip(p, 0.0, 1.0)

    def mean(self, eta, extra=()):
        """Expected class index ``E[Y] = sum_k k P(Y = k)``."""
        p = self.class_probabilities(eta, extra)
        return p @ np.arange(self.n_classes, dtype=float)

    def variance_eta(self, eta, trials=None, extra=()):
        """Variance of the class index, ``sum_k k^2 P(Y = k) - E[Y]^2`` (the
        denominator of its Pearson residuals)."""
        p = self.class_probabilities(eta, extra)
        k = np.arange(self.n_classes, dtype=float)
        mean = p @ k
        return np.maximum(p @ k**2 - mean**2, 1e-300)

    def variance(self, mu, trials, extra=()):
        raise NotImplementedError(
            "an ordinal outcome's variance is not a function of its mean: tools built on the "
            "family variance (performance.icc, r2, overdispersion) do not apply. On the latent "
            "scale the ICC of a random intercept is var / (var + link.latent_variance), "
            "pi^2 / 3 for the logit link."
        )

    def mean_derivative(self, eta, extra=()):
        """``d E[Y] / d eta = sum_j f(x_j) / sigma`` (``E[Y] = sum_j P(Y > j)``), with
        ``x_j = (alpha_j - eta) / sigma``."""
        x = self._scaled(eta, extra)
        d = np.exp(self.link.log_pdf(x)).sum(axis=-1)
        return d if not self.has_scale else d * np.exp(-self.split(extra)[1])

    def unit_deviance(self, y, mu, trials, extra=()):
        raise NotImplementedError("use -2 log p(y) of the fitted probabilities.")

    def sample_eta(self, eta, trials, extra, rng) -> np.ndarray:
        """Class indices drawn at linear predictors ``eta`` (inverse-CDF sampling)."""
        cum = self.cumulative(eta, extra)
        u = rng.uniform(size=cum.shape[:-1])
        return np.sum(u[..., None] > cum, axis=-1).astype(float)
