"""Probabilities of outcomes averaged over a normal linear predictor, element by element.

For a row of a new group the probability of an outcome ``y`` is

    P(y) = integral of p(y | u) N(u; eta, sd^2) du

over the link scale ``u``. As a function of ``u``, ``p(y | u)`` is a bump about
``1 / sqrt(y)`` wide for a count ``y`` (``1 / sqrt(n)`` for successes out of ``n``
trials), so a rule with fixed nodes must be as fine as the largest outcome asks
(:func:`~sklearn_glmm._engine.families.base.pmf_rule`). Here each element gets its own
rule, placed where its integrand is:

1. the mode ``m`` of ``h(u) = log p(y | u) - (u - eta)^2 / (2 sd^2)`` by Newton's method
   (steps halved until ``h`` increases); ``s = (-h''(m))^(-1/2)`` is the integrand's
   scale there;
2. the trapezoidal rule in ``t`` after ``u = m + s sinh(t)``: nodes ``s dt`` apart at the
   mode and further apart in the tails, over ``|u - m| <= 10 sd`` (for a log-concave
   ``p(y | u)``, ``h'' <= -1 / sd^2`` everywhere, so beyond that the integrand is below
   ``exp(-50)`` of its peak);
3. ``dt`` halved (the new nodes midway between the old) until two successive sums agree
   to ``_AGREE`` relative; the trapezoidal rule's error falls like ``exp(-c / dt)``, so
   the last sum is then accurate to about the square of that.

The method needs ``p(y | u)`` log-concave in ``u`` (Poisson, NB2, binomial with its
links, the hurdle Poisson) or a mixture ``a + b p'(y | u)`` with ``a``, ``b`` free of
``u`` and ``p'`` log-concave (zero inflation around such a family):
``Family.log_concave_split``. For other families :func:`log_mean_density` returns
None and callers use the fixed rule.
"""

from __future__ import annotations

import numpy as np

from .._warn import user_stacklevel, warn
from ..exceptions import ConvergenceWarning
from .blocks import rows_of

_REACH = 10.0  # the rule covers |u - mode| <= _REACH sd
_FIRST_INTERVALS = 16  # intervals of t on each side of the mode, first rule
_MAX_INTERVALS = 1024
_AGREE = 1e-9  # successive sums agreeing to this (relative) end the refinement
_NEWTON_STEPS = 2000  # a far start moves about one unit per step where exp(eta) rules
_CELLS = 2_000_000  # elements x nodes evaluated at once


def log_mean_density(family, y, eta, sd, trials, extra):
    """``log P(y)`` per element, ``P(y)`` the average of ``p(y | eta + sd z)`` over a
    standard normal ``z``; 1-D arrays of one length (``extra``: the family's values,
    scalars or per element). ``sd == 0`` gives ``log p(y | eta)``.

    None when the family declares no log-concave split (see the module's docstring).
    """
    y, eta, sd, trials = (np.asarray(a, dtype=float) for a in (y, eta, sd, trials))
    split = family.log_concave_split(y, extra)
    if split is None:
        return None
    a, b, base, base_extra = split
    out = np.empty(len(y))
    step = max(1, _CELLS // (4 * _FIRST_INTERVALS + 2))
    for i in range(0, len(y), step):
        rows = slice(i, i + step)
        out[rows] = _log_average(
            base, y[rows], eta[rows], sd[rows], trials[rows], rows_of(base_extra, rows)
        )
    if a is None:
        return out
    # a + b P'(y), with P'(y) on the log scale
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(a), np.log(b) + out)


def _log_average(family, y, eta, sd, trials, extra):
    """:func:`log_mean_density` for a log-concave family."""
    # log p(y | eta): the answer where sd is 0; -inf (an outcome the family cannot
    # give, a truncated count's zero) is -inf at every u
    out = family.derivs(y, eta, trials, None, extra).loglik
    rest = (sd > 0) & (out > -np.inf)
    if not rest.any():
        return out
    h = _LogIntegrand(family, y[rest], eta[rest], sd[rest], trials[rest], rows_of(extra, rest))
    mode, h_mode, curv = _mode(h, eta[rest].copy(), sd[rest])
    s = 1.0 / np.sqrt(curv)
    top = np.arcsinh(_REACH * sd[rest] / s)
    log_norm = np.log(sd[rest] * np.sqrt(2.0 * np.pi))
    out[rest] = h_mode + _log_sum(h, mode, h_mode, s, top) - log_norm
    return out


class _LogIntegrand:
    """``h(u) = log p(y | u) - (u - eta)^2 / (2 sd^2)`` with ``h'`` and ``-h''``, per
    element (``u`` of shape (E,)) or at nodes (``u`` of shape (E, N)), for all elements
    or those of ``index``."""

    def __init__(self, family, y, eta, sd, trials, extra):
        self.family, self.y, self.eta, self.trials, self.extra = family, y, eta, trials, extra
        self.prec = 1.0 / (sd * sd)

    def _rows(self, u, index):
        y, eta, trials, prec = self.y, self.eta, self.trials, self.prec
        if index is not None:
            y, eta, trials, prec = y[index], eta[index], trials[index], prec[index]
        column = u.ndim == 2
        if column:
            y, eta, trials, prec = y[:, None], eta[:, None], trials[:, None], prec[:, None]
        return y, eta, trials, prec, rows_of(self.extra, index, column=column)

    def __call__(self, u, index=None):
        """``(h, h', -h'')`` at one ``u`` per element (of ``index``)."""
        y, eta, trials, prec, extra = self._rows(u, index)
        d = self.family.derivs(y, u, trials, None, extra)
        dev = u - eta
        return d.loglik - 0.5 * prec * dev * dev, d.d1 - prec * dev, d.w + prec

    def value(self, u, index=None):
        """``h`` alone (the family's log-density without its derivatives)."""
        y, eta, trials, prec, extra = self._rows(u, index)
        dev = u - eta
        return self.family.loglik(y, u, trials, None, extra) - 0.5 * prec * dev * dev


def _mode(h_of, u, sd):
    """Newton's method for the maximum of the concave ``h``: ``(mode, h, -h'')``, each
    element iterated until its step is below 1e-8 of the integrand's scale (where the
    search stops short, the rule is centred off the peak and its refinement still
    decides when it has settled)."""
    h, g, c = h_of(u)
    cap = 2.0 * np.maximum(1.0, sd)  # no step beyond 2 sd at once
    active = np.arange(len(u))
    for _ in range(_NEWTON_STEPS):
        ua, ha = u[active], h[active]
        step = np.clip(g[active] / c[active], -cap[active], cap[active])
        for _ in range(60):
            h_new, g_new, c_new = h_of(ua + step, active)
            worse = ~(h_new >= ha - 1e-12 * np.abs(ha))
            if not worse.any():
                break
            step = np.where(worse, 0.5 * step, step)
        u[active], h[active], g[active], c[active] = ua + step, h_new, g_new, c_new
        active = active[~(np.abs(step) * np.sqrt(c_new) <= 1e-8)]
        if not len(active):
            break
    return u, h, c


def _log_sum(h_of, mode, h_mode, s, top):
    """log of the trapezoidal sums of ``exp(h - h_mode)`` over ``u = mode + s sinh(t)``,
    ``|t| <= top``, refined per element until successive sums agree."""
    n = _FIRST_INTERVALS
    t = np.arange(-n, n + 1) / n  # in units of top
    total = _node_sum(h_of, mode, h_mode, s, top, t, None) * (top / n)
    todo = np.arange(len(mode))
    while True:
        n *= 2
        t = (2.0 * np.arange(-n // 2, n // 2) + 1.0) / n  # the midpoints
        half = top[todo] / n
        new = 0.5 * total[todo] + half * _node_sum(
            h_of, mode[todo], h_mode[todo], s[todo], top[todo], t, todo
        )
        agree = np.abs(new - total[todo]) <= _AGREE * np.abs(new)
        total[todo] = new
        todo = todo[~agree]
        if not len(todo):
            break
        if n >= _MAX_INTERVALS:
            warn(
                f"the average of {len(todo)} probabilities over the random effect did not "
                f"settle with {2 * n + 1} nodes; they may be inaccurate.",
                ConvergenceWarning,
                stacklevel=user_stacklevel(),
            )
            break
    with np.errstate(divide="ignore"):
        return np.log(total)


def _node_sum(h_of, mode, h_mode, s, top, t, index):
    """``sum_j exp(h(u_j) - h_mode) du/dt`` at ``t_j * top`` per element."""
    tt = top[:, None] * t[None, :]
    nodes = mode[:, None] + s[:, None] * np.sinh(tt)
    h = h_of.value(nodes, index)
    # h is below its value at the mode (up to the mode's rounding): no overflow; a
    # node where the density is 0 adds 0, a NaN makes the sum NaN
    return (np.exp(h - h_mode[:, None]) * (s[:, None] * np.cosh(tt))).sum(axis=1)
