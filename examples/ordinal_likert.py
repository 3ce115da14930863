"""A longitudinal Likert item: a cumulative link mixed model (``ordinal::clmm``).

300 people answer a 5-point item ("strongly disagree" ... "strongly agree") at 5
waves; half of them get a treatment whose effect grows over the waves. We fit the
cumulative logit mixed model with the formula front end, read its coefficients as
cumulative odds ratios, plot the category probabilities over the waves (for the
population and for two people) and check the model against the data by simulation.

Run from the repository root (needs ``pip install -e ".[all]"``)::

    python examples/ordinal_likert.py [OUTPUT_DIR]

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

from sklearn_glmm import OrdinalGLMM, anova  # noqa: E402
from sklearn_glmm.exceptions import NoRandomEffectsWarning  # noqa: E402
from sklearn_glmm.formula import clmm  # noqa: E402
from sklearn_glmm.plotting import (  # noqa: E402
    category_proportions,
    plot_category_probabilities,
    plot_category_proportions,
)

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "output"
SCALE = ["strongly disagree", "disagree", "neutral", "agree", "strongly agree"]


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(OUT / f"ordinal_{name}.png", dpi=110)
    plt.close(fig)


# 1. Data: latent agreement = 0.2 wave + 0.5 treat x wave + person + logistic noise ------
rng = np.random.default_rng(2024)
n_people, waves = 300, 5
person = np.repeat(np.arange(n_people), waves)
wave = np.tile(np.arange(waves), n_people)
treat = (person < n_people // 2).astype(int)
latent = (
    0.2 * wave
    + 0.5 * treat * wave
    + rng.normal(scale=1.2, size=n_people)[person]
    + rng.logistic(size=len(person))
)
answer = np.digitize(latent, [-1.5, 0.0, 1.5, 3.0])
d = pd.DataFrame(
    {
        "id": person,
        "wave": wave,
        "treat": treat,
        "answer": pd.Categorical(np.array(SCALE)[answer], categories=SCALE, ordered=True),
    }
)
print(d.head(10), "\n")

# 2. The model: R's clmm(answer ~ wave * treat + (1 | id), data = d) ---------------------
m = clmm("answer ~ wave * treat + (1 | id)", d)
print(m.summary(), "\n")

# 3. Cumulative odds ratios: the odds of answering above any cut, per wave and group -----
print("Cumulative odds ratios (Wald 95% intervals):")
print(m.confint(parm="fixed", exponentiate=True).round(3), "\n")
print(m.report(outcome="a higher agreement"), "\n")

# 4. Category probabilities over the waves: the population (averaged over people) ------
grid = pd.DataFrame({"wave": np.tile(np.arange(waves), 2), "treat": np.repeat([0, 1], waves)})
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, (t, label) in zip(axes, [(0, "control"), (1, "treatment")]):
    rows = grid[grid["treat"] == t]
    plot_category_probabilities(m, rows, "wave", ax=ax, title=f"Population, {label}")
save(fig, "probabilities")

# ... and two people of the treated group, conditional on their random effects
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, who in zip(axes, [0, 7]):
    rows = d[d["id"] == who]
    plot_category_probabilities(m, rows, "wave", kind="line", ax=ax, title=f"Person {who}")
save(fig, "people")

# 5. Checks: observed vs predicted proportions by wave, and by simulation ----------------
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, (t, label) in zip(axes, [(0, "control"), (1, "treatment")]):
    rows = d[d["treat"] == t]
    # without the id column: every row a new person, the population-averaged prediction
    plot_category_proportions(m, rows.drop(columns="id"), "answer", "wave", ax=ax, title=label)
save(fig, "proportions")

observed = category_proportions(m, d.drop(columns="id"), "answer", "wave")["observed"]
sims = m.simulate(200, random_state=1)  # new people each time: the population view
sim_props = np.stack([(sims == k).reshape(n_people, waves, -1).mean(axis=0) for k in range(5)])
lo, hi = np.quantile(sim_props, [0.025, 0.975], axis=2)
inside = (observed.to_numpy().T >= lo) & (observed.to_numpy().T <= hi)
print(f"Observed class proportions inside the 95% simulation band: {inside.mean():.0%}")

# 6. Against the model without random effects (R's clm(answer ~ wave * treat)) ------------
X = pd.DataFrame({"wave": d["wave"], "treat": d["treat"], "wave:treat": d["wave"] * d["treat"]})
with warnings.catch_warnings():
    warnings.simplefilter("ignore", NoRandomEffectsWarning)  # deliberately without groups
    clm = OrdinalGLMM().fit(X, d["answer"])
print(anova(clm, m)[["npar", "AIC", "logLik", "Chisq", "Pr(>Chisq)"]].round(3))
