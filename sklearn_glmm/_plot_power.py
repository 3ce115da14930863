"""The power curve of a simulation (:func:`sklearn_glmm.power.power_curve`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._plot_common import axes_or_new, color_map

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

_LABELS = {"n_groups": "Number of groups", "n_per_group": "Observations per group"}


def plot_power_curve(
    table: pd.DataFrame,
    *,
    x: str = "n_groups",
    target: float | None = 0.8,
    ax: Axes | None = None,
) -> Axes:
    """Power against sample size, one line per value of the other design variable.

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`sklearn_glmm.power.power_curve`.
    x : {"n_groups", "n_per_group"}, default="n_groups"
        The x-axis; one line (with its Monte Carlo interval as a band) per value
        of the other.
    target : float or None, default=0.8
        A horizontal reference line at the power aimed for; None draws none.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        One line per value of the other design variable, the y-axis spanning [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.plotting import plot_power_curve
    >>> from sklearn_glmm.power import GLMMSpec, power_curve
    >>> spec = GLMMSpec(BinomialGLMM(random_effects="1"),
    ...                 {"(Intercept)": -0.5, "treatment": np.log(0.6)}, random_cov=1.0)
    >>> pc = power_curve(spec, "treatment", n_groups=[40, 80], n_per_group=[3, 5], n_sim=10,
    ...                  random_state=0)
    >>> ax = plot_power_curve(pc)
    >>> len(ax.lines)  # two designs, and the target line
    3
    """
    others = {"n_groups": "n_per_group", "n_per_group": "n_groups"}
    if x not in others:
        raise ValueError(f"x must be 'n_groups' or 'n_per_group', got {x!r}.")
    needed = {"n_groups", "n_per_group", "power", "lower", "upper"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise ValueError(f"table must be a result of power_curve (columns {sorted(needed)}).")
    ax = axes_or_new(ax)
    by = others[x]
    keys = list(pd.unique(table[by]))
    colors = color_map([str(k) for k in keys])
    for key in keys:
        rows = table[table[by].isna()] if pd.isna(key) else table[table[by] == key]
        rows = rows.sort_values(x)
        c = colors[str(key)]
        label = f"{by} = {'as observed' if pd.isna(key) else int(key)}"
        # (arrays: NumPy 1.x's masked arrays read a Series's ``_data``, pandas' block
        # manager, when matplotlib masks what it fills between)
        xs, lo, hi = (rows[k].to_numpy(dtype=float) for k in (x, "lower", "upper"))
        ax.plot(xs, rows["power"].to_numpy(dtype=float), "-o", color=c, lw=2, label=label)
        ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
    if target is not None:
        ax.axhline(target, color="0.4", ls="--", lw=1, label=f"power {target:g}")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(_LABELS[x])
    level = table.attrs.get("level")
    ci = f" ({round(level * 100)}% Monte Carlo interval)" if level else ""
    ax.set_ylabel("Power" + ci)
    test = table.attrs.get("test")
    if test is not None and not isinstance(test, str):
        test = " and ".join(map(str, test))  # a joint test: no single effect to show
    if test is not None:
        eff, ratio = table.attrs.get("effect"), table.attrs.get("ratio")
        if eff is None:
            what = ""
        elif ratio is not None and test != "(Intercept)":
            what = f" ({ratio} {np.exp(eff):.3g})"
        else:
            what = f" = {eff:.3g}"
        ax.set_title(f"Power to detect {test}{what}")
    if np.all(np.asarray(table[x].dropna()) == np.round(table[x].dropna())):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False)
    return ax
