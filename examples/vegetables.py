"""Eating vegetables: a binomial GLMM with a treatment x sex interaction (tutorial 003).

250 students report for 14 days whether they ate vegetables. Treatment (a
nutrition class) and sex interact: the class helps women more than men. We fit
the model with the lme4-style formula front end, turn log-odds into predicted
probabilities per cell and odds ratios, and check the model by simulating new
data sets from it -- which exposes a model that leaves out the interaction.

Run from the repository root (needs ``pip install -e ".[all]"`` for formulaic)::

    python examples/vegetables.py [OUTPUT_DIR]

Figures go to ``examples/output/`` (or OUTPUT_DIR).
"""

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit  # noqa: E402

from sklearn_glmm.datasets import make_vegetables  # noqa: E402
from sklearn_glmm.formula import design_matrix, glmer  # noqa: E402
from sklearn_glmm.plotting import plot_ppc, simulate_cell_means  # noqa: E402

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "output"
CELLS = ["trt", "sex"]


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(OUT / f"vegetables_{name}.png", dpi=110)
    plt.close(fig)


# 1. Data ------------------------------------------------------------------------------
d, truth = make_vegetables(random_state=0)
print(d.head(15), "\n")
print("Population probabilities used to simulate:")
for (trt, sex), p in truth["probabilities"].items():
    print(f"  {sex:>6}, {trt:<7}: {p:.2f}")
print()

# 2. The "correct" model: y ~ trt * sex + (1 | id) ----------------------------------------
# R: glmer(y ~ trt * sex + (1 | id), data = d, family = binomial)
m = glmer("y ~ trt * sex + (1 | id)", d, family="binomial")
print(m.summary(), "\n")

# 3. From log-odds to probabilities, by hand and with predict -----------------------------
b = m.fixed_effects_["estimate"]
by_hand = {
    "female, control": b["(Intercept)"],
    "female, treat": b["(Intercept)"] + b["trttreat"],
    "male, control": b["(Intercept)"] + b["sexmale"],
    "male, treat": b.sum(),
}
for cell, eta in by_hand.items():
    print(f"  {cell:<16} log-odds {eta:8.5f} -> probability {expit(eta):.4f}")
# R: predict(m, type = "response", re.form = NA, newdata = ...)
new = pd.DataFrame({"sex": ["female", "female", "male", "male"], "trt": ["control", "treat"] * 2})
new["probability"] = m.predict_proba(design_matrix(m.design_info_, new), population="zero")[:, 1]
print(new, "\n")

# 4. Odds ratios -----------------------------------------------------------------------
print(f"Odds ratio of treatment for women: exp({b['trttreat']:.4f}) = {np.exp(b['trttreat']):.3f}")
# R: exp(confint(m, parm = "trttreat")) -- profile likelihood, lme4's default
print(m.confint(parm="trttreat", method="profile", exponentiate=True).round(3))
# Odds ratios can sound alarming: 0.001 -> 0.009 is an odds ratio of about 9.
print(f"0.001 -> 0.009 is an odds ratio of {(0.009 / 0.991) / (0.001 / 0.999):.3f}\n")

# The random-intercept SD: simulated with 0.03, estimated much larger -- but its profile
# interval reaches 0. R: confint(m, parm = "theta_", oldNames = FALSE)
print(m.confint(parm="random", method="profile").round(4), "\n")

# 5. Observed proportions per cell -------------------------------------------------------
print("Observed proportions (R: aggregate(d$y, by = list(trt, sex), mean)):")
print(d.groupby(CELLS)["y"].mean().round(4), "\n")

# 6. Simulate from the model and compare ------------------------------------------------
# A model without the interaction is wrong by construction. (Its random-intercept
# variance may land on the boundary; the singular-fit warning is silenced here.)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    m2 = glmer("y ~ trt + sex + (1 | id)", d, family="binomial")


def check(model, name):
    observed, sims = simulate_cell_means(model, d, CELLS, n_sim=100, random_state=0)
    lo, hi = sims.quantile(0.025, axis=1), sims.quantile(0.975, axis=1)
    table = pd.DataFrame(
        {"observed": observed, "simulated mean": sims.mean(axis=1), "2.5 %": lo, "97.5 %": hi}
    )
    table["inside"] = (observed >= lo) & (observed <= hi)
    print(f"{name}: observed vs 100 simulated data sets")
    print(table.round(3), "\n")


check(m, "Model with interaction")
check(m2, "Model without interaction")

fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
plot_ppc(m, d, CELLS, random_state=0, ax=axes[0])
axes[0].set_title("Model with interaction")
plot_ppc(m2, d, CELLS, random_state=0, ax=axes[1])
axes[1].set_title("Wrong model: without interaction")
save(fig, "ppc")
print(f"Figures written to {OUT}/vegetables_*.png")
