"""Binary and count GLMMs for longitudinal data, end to end (tutorial 000).

300 people measured at 5 waves, half of them treated. We simulate a binary and
a count outcome with known parameters, plot them, fit a logistic GLMM (Laplace
and adaptive Gauss-Hermite quadrature), Poisson and negative binomial GLMMs,
draw individual trajectories on the link and response scales, check the
models and interpret them as odds and rate ratios.

Run from the repository root::

    python examples/binary_count_tutorial.py [OUTPUT_DIR]

Figures go to ``examples/output/`` (or OUTPUT_DIR).
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM, compare_models  # noqa: E402
from sklearn_glmm.datasets import make_longitudinal  # noqa: E402
from sklearn_glmm.plotting import (  # noqa: E402
    plot_conditional_marginal,
    plot_link_response,
    plot_observed_means,
    plot_predicted_vs_observed,
    plot_ranef_qq,
    plot_rootogram,
    plot_trajectories,
)

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "output"
pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 12)
FEATURES = ["time", "treatment"]


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(OUT / f"tutorial_{name}.png", dpi=110)
    plt.close(fig)


def ratios(model, label):
    """exp(fixed effects) with 95% Wald intervals and p-values, as the tutorial's cbind(OR, ...)."""
    ci = model.confint(parm="fixed", method="wald", exponentiate=True)
    return pd.DataFrame(
        {
            label: ci["estimate"],
            "2.5 %": ci["lower"],
            "97.5 %": ci["upper"],
            "p": model.fixed_effects_["p_value"].map("{:.2g}".format),
        }
    )


# Step 2: simulate ---------------------------------------------------------------------
# Binary: logit P = -0.5 - 0.2 time - 0.6 treatment + b, b ~ N(0, 1)
# Count:  log mu   =  1.5 + 0.1 time - 0.3 treatment + b, b ~ N(0, 0.5^2)
binary, truth_bin = make_longitudinal("binomial", n_groups=300, n_waves=5, random_state=2024)
count, truth_cnt = make_longitudinal(
    "poisson", n_groups=300, n_waves=5, re_sd=0.5, random_state=2025
)
print(binary.head(), "\n")
print("True binary effects:", truth_bin["fixed_effects"])
print("True count effects: ", truth_cnt["fixed_effects"], "\n")

# Step 3: visualise --------------------------------------------------------------------
group = {0: "Control", 1: "Treatment"}
binary["group"] = binary["treatment"].map(group)
count["group"] = count["treatment"].map(group)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
plot_observed_means(binary, time="time", y="y", by="group", ax=axes[0])
axes[0].set_title("Binary outcome by group over time")
plot_observed_means(count, time="time", y="y", by="group", ax=axes[1])
axes[1].set_title("Count outcome by group over time")
save(fig, "observed")

# Step 4: binary GLMM ------------------------------------------------------------------
# R: glmer(binary ~ time + treatment + (1 | id), data = df, family = binomial)
fit_bin = BinomialGLMM().fit(binary[FEATURES], binary["y"], groups=binary["id"])
print(fit_bin.summary(), "\n")
print("Odds ratios with 95% Wald intervals:")
print(ratios(fit_bin, "OR").round(3), "\n")

# Laplace vs adaptive Gauss-Hermite quadrature with 7 nodes (R: nAGQ = 7)
fit_agq = BinomialGLMM(n_agq=7).fit(binary[FEATURES], binary["y"], groups=binary["id"])
compare = pd.DataFrame(
    {
        "Laplace": fit_bin.fixed_effects_["estimate"],
        "AGQ (7)": fit_agq.fixed_effects_["estimate"],
    }
)
compare["% difference"] = 100 * (compare["AGQ (7)"] / compare["Laplace"] - 1)
print(compare.round(4))
worst = compare["% difference"].abs().max()
print(f"Largest difference {worst:.1f}%: {'Laplace is adequate' if worst < 5 else 'use AGQ'}.\n")

# Step 5: count GLMMs ------------------------------------------------------------------
# R: glmmTMB(count ~ time + treatment + (1 | id), family = poisson) and family = nbinom2
fit_pois = PoissonGLMM().fit(count[FEATURES], count["y"], groups=count["id"])
print(fit_pois.summary(), "\n")
# R: sum(residuals(fit_pois, type = "pearson")^2) / df.residual(fit_pois)
print(f"Overdispersion ratio (Poisson): {fit_pois.overdispersion().ratio:.3f}")
fit_nb = NegBinGLMM().fit(count[FEATURES], count["y"], groups=count["id"])
print(f"NB dispersion theta = {fit_nb.theta_:.1f} (large: no extra-Poisson variation)")
# R: AIC(fit_pois, fit_nb)
print(compare_models(fit_pois, fit_nb, names=["Poisson", "NB2"]).round(2), "\n")
print("Incidence rate ratios with 95% Wald intervals:")
print(ratios(fit_pois, "IRR").round(3), "\n")

# With overdispersed counts the comparison turns the other way.
over, _ = make_longitudinal("negbin", n_groups=300, re_sd=0.5, nb_theta=2.0, random_state=7)
pois_over = PoissonGLMM().fit(over[FEATURES], over["y"], groups=over["id"])
nb_over = NegBinGLMM().fit(over[FEATURES], over["y"], groups=over["id"])
print("Overdispersed data (NB2, theta = 2):")
print(f"  overdispersion ratio under Poisson: {pois_over.overdispersion().ratio:.2f}")
print(f"  AIC Poisson {pois_over.aic_:.1f} vs NB2 {nb_over.aic_:.1f}; theta = {nb_over.theta_:.2f}")
print()

# Step 6: individual trajectories ------------------------------------------------------
fig, ax = plt.subplots(figsize=(7, 4))
plot_trajectories(
    fit_bin, binary, binary["id"], time="time", y="y", by="group", n_ids=12,
    random_state=1, ax=ax,
)  # fmt: skip
ax.set_title("Individual predicted trajectories (binary)")
save(fig, "trajectories")

axes = plot_link_response(fit_bin, binary, binary["id"], time="time", by="group", random_state=1)
axes[0].figure.suptitle("Same trajectories, different scales")
save(axes[0].figure, "link_response")

# Step 7: diagnostics ------------------------------------------------------------------
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
plot_ranef_qq(fit_bin, ax=axes[0])  # each titled with its model, factor and term
plot_ranef_qq(fit_pois, ax=axes[1])
save(fig, "ranef_qq")
for name, fit in [("binary", fit_bin), ("count", fit_pois)]:
    sd = np.sqrt(fit.random_effects_cov_["id"].iloc[0, 0])
    print(f"Random-intercept SD ({name}): {sd:.3f}")
print()

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
plot_predicted_vs_observed(fit_pois, count, count["id"], time="time", y="y", by="group", ax=axes[0])
axes[0].set_title("Predicted vs observed counts")
plot_rootogram(fit_pois, ax=axes[1])
axes[1].set_title("Rootogram (Poisson GLMM)")
save(fig, "count_checks")

# Step 8: interpret --------------------------------------------------------------------
grid = pd.DataFrame({"time": np.tile(np.arange(5), 2), "treatment": np.repeat([0, 1], 5)})
grid["group"] = grid["treatment"].map(group)
grid["typical person"] = fit_bin.predict_proba(grid[FEATURES], population="zero")[:, 1]
grid["population average"] = fit_bin.predict_proba(grid[FEATURES])[:, 1]
print("Predicted probabilities (R: predict(fit, re.form = NA) is the 'typical person'):")
print(grid.drop(columns="treatment").round(3).to_string(index=False), "\n")

fig, ax = plt.subplots(figsize=(7, 4))
plot_conditional_marginal(fit_bin, grid, time="time", by="group", ax=ax)
ax.set_title("Conditional (b = 0) vs population-averaged probabilities")
save(fig, "conditional_marginal")

# The results paragraphs, with the numbers filled in (and Wald intervals)
print("Written summary:")
print(fit_bin.report(outcome="the binary outcome"), "\n")
print(fit_pois.report(outcome="the count outcome", compare=[fit_nb]))
print(f"\nFigures written to {OUT}/tutorial_*.png")
