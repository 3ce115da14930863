"""Daily app logins: a Poisson GLMM with random intercepts and slopes (tutorial 002).

Fifty users of a mood-tracking app, 30 days each; the outcome is the number of
logins per day. The data are the tutorial's own (simulated in R with
``set.seed(789)``), so every number printed here matches its lme4 output.

Run from the repository root::

    python examples/app_logins.py [OUTPUT_DIR]

Figures go to ``examples/output/`` (or OUTPUT_DIR).
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sklearn_glmm import PoissonGLMM, anova  # noqa: E402
from sklearn_glmm.datasets import load_app_logins  # noqa: E402
from sklearn_glmm.plotting import (  # noqa: E402
    plot_caterpillar,
    plot_ranef_qq,
    plot_residuals,
    plot_rootogram,
    plot_spaghetti,
    plot_trajectories,
)

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "output"
pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 12)


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:  # facet figures lay themselves out
        fig.tight_layout()
    fig.savefig(OUT / f"app_logins_{name}.png", dpi=110)
    plt.close(fig)


# 1. The data: one row per user and day ------------------------------------------------
df = load_app_logins()
print(df.head(), "\n")
print(df[["day", "day_centered", "logins"]].describe().round(3), "\n")

fig, ax = plt.subplots(figsize=(7, 4))
plot_spaghetti(df, time="day", y="logins", id="user_id", ax=ax)
ax.set_title("Daily app logins across users")
save(fig, "spaghetti")

# 2. Random-intercept Poisson GLMM -----------------------------------------------------
# R: glmer(logins ~ day_centered + (1 | user_id), family = poisson, data = app_data)
X, y, users = df[["day_centered"]], df["logins"], df["user_id"]
m1 = PoissonGLMM().fit(X, y, groups=users)
print(m1.summary(), "\n")

# R: exp(fixef(fit)) with exp(confint(fit, method = "Wald")); the SD row stays on its scale
print("Rate ratios with 95% Wald intervals:")
print(m1.confint(method="wald", exponentiate=True).round(4), "\n")
day_rr = np.exp(m1.fixed_effects_.loc["day_centered", "estimate"])
print(f"Each day multiplies expected logins by {day_rr:.4f} ({100 * (day_rr - 1):.2f}% per day).")
sd_user = np.sqrt(m1.random_effects_cov_["user_id"].iloc[0, 0])
print(f"Random-intercept SD: {sd_user:.4f}\n")

# Conditional modes ("BLUPs") of the users' intercepts, as ranef(fit)$user_id
print("Random intercepts of the first ten users:")
print(m1.ranef_["user_id"].head(10).round(6), "\n")

# 3. Predictions -----------------------------------------------------------------------
# An average user (random effect 0, R's re.form = NA) on days 1, 15.5 and 30
new_days = pd.DataFrame({"day_centered": [-14.5, 0.0, 14.5]})
typical = m1.predict(new_days, population="zero")
print("Population-level predictions (average user):")
print(pd.DataFrame({"day": [1, 15.5, 30], "predicted_logins": typical}).round(6), "\n")
# Specific users at day 15.5: their own random intercepts are used
who = [1, 10, 20, 30, 40]
specific = m1.predict(pd.DataFrame({"day_centered": [0.0] * 5}), groups=who)
print("User-specific predictions at day 15.5:")
print(pd.DataFrame({"user_id": who, "predicted_logins": specific}).round(6), "\n")
# A new user, averaged over the random-intercept distribution (population-averaged)
averaged = m1.predict(new_days)
print("Population-averaged predictions (a new user):", np.round(averaged, 4), "\n")

# 4. Random slopes of time, compared by AIC --------------------------------------------
# R: glmer(logins ~ day_centered + (day_centered | user_id), family = poisson, ...)
m2 = PoissonGLMM(random_effects="1 + day_centered").fit(X, y, groups=users)
print(m2.summary(), "\n")
print(f"AIC random intercept:          {m1.aic_:.3f}")
print(f"AIC random intercept + slope:  {m2.aic_:.3f}")
better = "random intercept" if m1.aic_ < m2.aic_ else "random slope"
print(f"Lower AIC: the {better} model.")
# R: anova(glmm_model, glmm_slopes); the slope variance is tested on its boundary
print(anova(m1, m2, names=["intercept", "intercept + slope"]).round(4).T, "\n")

# 5. Overdispersion: sum of squared Pearson residuals / residual df ----------------------
od = m1.overdispersion()
print(f"Overdispersion ratio: {od.ratio:.3f}", end=" ")
print(f"(chi2({od.df}) = {od.statistic:.1f}, p = {od.p_value:.2f})")
print("Overdispersion detected." if od.ratio > 1.5 else "No severe overdispersion.")
# The tutorial divides by n - (number of fixed effects) instead: 0.928
pearson = m1.residuals("pearson")
print(f"  with the tutorial's n - p: {np.sum(pearson**2) / (len(y) - len(m1.coef_) - 1):.3f}\n")

# 6. Figures ---------------------------------------------------------------------------
# R: ggplot(...) + geom_point(aes(y = logins)) + geom_line(aes(y = fitted)) +
#    facet_wrap(~ user_id, ncol = 3)
six = [1, 5, 10, 15, 20, 25]
axes = plot_trajectories(m1, df, users, time="day", y="logins", ids=six, facet=True, ncols=3)
axes[0].figure.suptitle("Observed vs fitted logins of six users")
save(axes[0].figure, "trajectories")

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
plot_residuals(m1, "pearson", ax=axes[0])
axes[0].set_title("Residuals vs fitted")
plot_ranef_qq(m1, ax=axes[1])  # titled with the model, the factor and the term
save(fig, "diagnostics")

fig, ax = plt.subplots(figsize=(5, 8))
plot_caterpillar(m1, max_labels=50, ax=ax)
ax.set_title("User intercepts with 95% intervals")
save(fig, "caterpillar")

fig, ax = plt.subplots(figsize=(6, 4))
plot_rootogram(m1, ax=ax)
ax.set_title("Hanging rootogram (Poisson GLMM)")
save(fig, "rootogram")

# 7. Reporting ------------------------------------------------------------------------
print(m1.report(outcome="daily logins"), "\n")
print(f"Figures written to {OUT}/app_logins_*.png")
