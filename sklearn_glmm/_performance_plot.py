"""The panel of :func:`sklearn_glmm.performance.check_model` (matplotlib, imported lazily).

Each panel is drawn by one function on one Axes; the random-effect QQ plots, the
simulated-proportion check of binomial models and the rootogram are the plots of
:mod:`sklearn_glmm.plotting`.
"""

from __future__ import annotations

import numpy as np

from ._plot_common import pyplot
from ._plot_diagnostics import _default_max_count, plot_ppc, plot_ranef_qq, plot_rootogram
from ._warn import quiet

PANELS = ("pp_check", "binned_residuals", "overdispersion", "zero_inflation", "reqq", "vif")
_GREEN, _BLUE, _RED = "#3aaf85", "#1b6ca8", "#cd201f"  # performance's colours
_MAX_QQ = 4  # random-effect QQ panels drawn at most (factor x term)


def _subtitle(ax, title: str, subtitle: str) -> None:
    ax.set_title(f"{title}\n{subtitle}", fontsize=10, loc="left")


def _fixed_predictor(model) -> np.ndarray:
    """Linear predictor of the training rows with random effects at 0 (offset included)."""
    res = model.fit_result_
    data = res.objective.data
    return data.X @ res.beta + data.offset


def _pp_counts(ax, model, sims) -> None:
    """Observed frequency of each count against the simulated data sets' 95 % ranges."""
    y = np.asarray(model.fit_result_.train["y"], dtype=float)
    K = _default_max_count(y)
    ks = np.arange(K + 1)

    def freq(v):
        return np.bincount(np.clip(v, 0, K + 1).astype(int), minlength=K + 2)[: K + 1]

    sim = np.vstack([freq(s) for s in sims.T])
    lo, mid, hi = np.percentile(sim, [2.5, 50, 97.5], axis=0)
    ax.bar(ks, freq(y), width=0.8, color=_GREEN, alpha=0.6, label="observed")
    ax.errorbar(ks, mid, yerr=[mid - lo, hi - mid], fmt="o", color=_BLUE, ms=3, lw=1.2,
                label=f"simulated ({sims.shape[1]} data sets)")  # fmt: skip
    ax.set_xlabel("Count")
    ax.set_ylabel("Frequency")
    ax.legend(fontsize=8)


def _pp_binomial(ax, model, sims) -> None:
    """Observed vs simulated proportions per predicted probability (deciles when many)."""
    eta = _fixed_predictor(model)
    values = np.unique(np.round(eta, 8))
    if len(values) <= 10:
        # a design of a few cells: one group per cell
        p = model.fit_result_.family.link.inverse(values)  # the model's own link
        labels = np.array([f"{x:.2f}" for x in p])[np.searchsorted(values, np.round(eta, 8))]
        xlabel = "Predicted probability (random effects at 0)"
    else:
        edges = np.quantile(eta, np.linspace(0, 1, 11)[1:-1])
        _, codes = np.unique(np.searchsorted(edges, eta, side="right"), return_inverse=True)
        labels = np.array([f"{k + 1:02d}" for k in codes])
        xlabel = "Decile of the predicted probability (random effects at 0)"
    plot_ppc(model, None, labels, simulated=sims, ax=ax)
    ax.set_xlabel(xlabel)


def panel_pp_check(ax, model, n_sim, random_state) -> None:
    sims = np.asarray(model.simulate(n_sim, random_state), dtype=float)
    if model.fit_result_.family.has_trials:
        _pp_binomial(ax, model, sims)
    else:
        _pp_counts(ax, model, sims)
    _subtitle(ax, "Posterior Predictive Check", "Simulated data should include the observed data")


def panel_binned_residuals(ax, model) -> None:
    from .performance import binned_residuals

    table = binned_residuals(model)
    order = np.argsort(table["xbar"].to_numpy())
    x, se = table["xbar"].to_numpy()[order], table["se"].to_numpy()[order]
    ax.plot(x, se, color="grey", lw=1)
    ax.plot(x, -se, color="grey", lw=1)
    ax.axhline(0.0, color="black", lw=0.8)
    inside = table["inside"].to_numpy()
    ax.scatter(table["xbar"][inside], table["ybar"][inside], color=_GREEN, s=18, label="inside")
    ax.scatter(table["xbar"][~inside], table["ybar"][~inside], color=_RED, s=18, label="outside")
    ax.set_xlabel("Estimated probability of the outcome")
    ax.set_ylabel("Average residual")
    ax.legend(fontsize=8)
    share = f"{round(100 * float(np.mean(inside)))}% inside" if len(inside) else "no bins"
    _subtitle(ax, "Binned Residuals", f"Points should be within error bounds ({share})")


def panel_overdispersion(ax, model) -> None:
    """Mean squared residual against the variance the model predicts, in bins of the mean."""
    from .performance import check_overdispersion

    mu = np.asarray(model.fitted(), dtype=float)
    res2 = np.asarray(model.residuals("response"), dtype=float) ** 2
    res = model.fit_result_
    # on the scale of fitted() and the response residuals: per trial with trials
    t = res.train["trials"] if res.family.has_trials else np.ones_like(mu)
    var = res.family.variance_eta(res.train["eta"], t, res.family_values()) / t**2
    order = np.argsort(mu, kind="stable")
    k = int(np.clip(np.sqrt(len(mu)), 5, 30))
    chunks = [c for c in np.array_split(order, k) if len(c)]
    xs = [mu[c].mean() for c in chunks]
    ax.plot(xs, [var[c].mean() for c in chunks], "-", color=_BLUE, lw=1.5, label="model variance")
    ax.plot(xs, [res2[c].mean() for c in chunks], "-o", color=_GREEN, ms=3, lw=1.5,
            label="observed (binned mean of squared residuals)")  # fmt: skip
    ax.set_xlabel("Predicted mean")
    ax.set_ylabel("Residual variance")
    ax.legend(fontsize=8)
    ratio = check_overdispersion(model)["dispersion_ratio"].iloc[0]
    _subtitle(ax, "Overdispersion", f"Observed should follow the model (ratio {ratio:.2f})")


def panel_zero_inflation(ax, model) -> None:
    from .performance import check_zeroinflation

    plot_rootogram(model, ax=ax)
    z = check_zeroinflation(model).iloc[0]
    _subtitle(
        ax,
        "Zero-Inflation (rootogram)",
        f"Observed zeros {int(z['observed_zeros'])}, predicted {int(z['predicted_zeros'])}",
    )


def reqq_panels(model) -> list:
    """(factor, term) of the random-effect QQ panels, at most ``_MAX_QQ``."""
    pairs = [(name, t) for name, modes in model.ranef_.items() for t in modes.columns]
    return pairs[:_MAX_QQ]


def panel_reqq(ax, model, factor, term) -> None:
    plot_ranef_qq(model, factor, term, ax=ax)
    ax.set_title("")  # the plot's own centred title gives way to the panel's
    _subtitle(
        ax, f"Normality of Random Effects ({factor}: {term})", "Dots should fall along the line"
    )


def panel_vif(ax, model) -> None:
    from .performance import check_collinearity

    table = check_collinearity(model)
    vif = table["VIF"].to_numpy()
    colors = np.where(vif < 5, _GREEN, np.where(vif < 10, "#f2a900", _RED))
    pos = np.arange(len(vif))
    ax.bar(pos, vif, color=colors, width=0.6)
    ax.axhline(5.0, color="grey", ls="--", lw=0.8)
    ax.axhline(10.0, color="grey", ls="--", lw=0.8)
    ax.set_xticks(pos, list(table["Term"]), rotation=30, ha="right")
    ax.set_ylabel("Variance Inflation Factor (VIF)")
    ax.set_ylim(0, max(11.0, float(np.max(vif)) * 1.1))
    _subtitle(ax, "Collinearity", "High collinearity (VIF) may inflate parameter uncertainty")


_SIMPLE = {
    "binned_residuals": panel_binned_residuals,
    "overdispersion": panel_overdispersion,
    "zero_inflation": panel_zero_inflation,
    "vif": panel_vif,
}


def _applicable(model) -> list:
    """The panels that apply to the model's family and terms, in drawing order."""
    from ._performance_terms import model_terms

    binomial = model.fit_result_.family.has_trials
    names = ["pp_check"]
    names += ["binned_residuals"] if binomial else ["overdispersion", "zero_inflation"]
    names += ["reqq"] if model.fit_result_.factors else []
    if len(model_terms(model).names) >= 2:
        names.append("vif")
    return names


def _requested(model, check) -> list:
    available = _applicable(model)
    if isinstance(check, str) and check == "all":
        return available
    wanted = [check] if isinstance(check, str) else list(check)
    unknown = [c for c in wanted if c not in PANELS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose among {list(PANELS)} or 'all'.")
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValueError(f"check(s) {missing} do not apply to this model; these do: {available}.")
    return [c for c in available if c in wanted]


def draw_check_model(model, check, n_sim, random_state, figsize):
    """The figure of :func:`sklearn_glmm.performance.check_model`."""
    names = _requested(model, check)
    draws = []
    for name in names:
        if name == "reqq":
            draws += [
                (lambda ax, f=f, t=t: panel_reqq(ax, model, f, t)) for f, t in reqq_panels(model)
            ]
        elif name == "pp_check":
            draws.append(lambda ax: panel_pp_check(ax, model, n_sim, random_state))
        else:
            draws.append(lambda ax, fn=_SIMPLE[name]: fn(ax, model))
    ncols = 1 if len(draws) == 1 else 2
    nrows = int(np.ceil(len(draws) / ncols))
    plt = pyplot()
    size = figsize or (5.0 * ncols, 3.6 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    flat = axes.ravel()
    # the panels restate the tables' verdicts; their warnings were given by the checks
    with quiet(UserWarning):
        for ax, draw in zip(flat, draws):
            draw(ax)
    for ax in flat[len(draws) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
