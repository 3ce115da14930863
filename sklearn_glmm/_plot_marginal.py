"""Conditional (subject-specific) beside marginal (population-averaged) coefficients."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._design import INTERCEPT
from ._plot_common import axes_or_new, plots_fitted_model

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes


@plots_fitted_model("X")
def plot_marginal_coefs(
    est,
    X=None,
    *,
    level: float = 0.95,
    exponentiate: bool | None = None,
    intercept: bool = False,
    ax: Axes | None = None,
    **kwargs,
) -> Axes:
    """Each coefficient conditionally (per person) and marginally (over the population).

    A forest plot: for every fixed effect, the GLMM's conditional estimate and the
    marginal one of :func:`sklearn_glmm.marginal.marginal_coefs`, with their
    ``level`` Wald intervals; odds ratios (logit), rate ratios (log) or hazard
    ratios (cloglog) on a log axis by default, with a reference line at 1 (at 0 on
    the link scale). For a logit link the marginal odds ratios lie closer to 1; for
    a log link with random intercepts the rate ratios coincide.

    Parameters
    ----------
    est : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    X : array-like or DataFrame, default=None
        Rows the marginal model is fitted over (the training rows by default).
    level : float, default=0.95
    exponentiate : bool, default=None
        Ratios (default where the link has them) or link-scale coefficients.
    intercept : bool, default=False
        Show the intercept too (a ratio then reads as the odds or rate at 0).
    ax : matplotlib.axes.Axes, default=None
    **kwargs
        Passed to :func:`~sklearn_glmm.marginal.marginal_coefs` (``se_method``, ...).

    Returns
    -------
    ax : matplotlib.axes.Axes
        Two error bars per coefficient, labelled "conditional" and "marginal";
        ``ax.get_yticklabels()`` name the coefficients.

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.plotting import plot_marginal_coefs
    >>> df, _ = make_longitudinal("binomial", n_groups=100, re_sd=2.0, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> ax = plot_marginal_coefs(m)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['time', 'treatment']
    """
    from .marginal import conditional_marginal_table

    table = conditional_marginal_table(est, X, level=level, exponentiate=exponentiate, **kwargs)
    if not intercept:
        table = table.drop(index=[INTERCEPT], errors="ignore")
    table = table.dropna(subset=["conditional"])
    if table.empty:
        raise ValueError("there is no coefficient to plot (pass intercept=True for the intercept).")
    ax = axes_or_new(ax, figsize=(6.0, 1.2 + 0.6 * len(table)))
    scale = table.attrs["scale"]
    ratio = scale.endswith("ratio")
    pos = np.arange(len(table))[::-1].astype(float)
    for shift, kind, marker in ((0.15, "conditional", "o"), (-0.15, "marginal", "s")):
        v = table[kind].to_numpy()
        err = np.vstack([v - table[f"{kind}_lower"], table[f"{kind}_upper"] - v])
        label = f"{kind} ({'per person' if kind == 'conditional' else 'population-averaged'})"
        ax.errorbar(v, pos + shift, xerr=err, fmt=marker, capsize=3, label=label)
    ax.axvline(1.0 if ratio else 0.0, color="0.5", lw=1, ls=":")
    if ratio:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
    ax.set_yticks(pos)
    ax.set_yticklabels(list(table.index))
    ax.set_ylim(-0.6, len(table) + 0.4)  # room for the legend above the top row
    ax.set_xlabel(f"{scale[:1].upper()}{scale[1:]} ({round(level * 100)}% CI)")
    ax.legend(frameon=False, loc="upper center", ncol=2, fontsize="small")
    return ax
