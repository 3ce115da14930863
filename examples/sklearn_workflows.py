"""Mixed models in scikit-learn workflows: forecasting later waves from earlier ones.

300 people answer a yes/no question at 8 waves; each has their own baseline and
their own trend (a random intercept and a random slope on time). Two questions
need two kinds of prediction:

- *A new person*: how likely is a "yes" at wave 3 for someone we have never
  seen? Only the population-level prediction is possible; cross-validation
  holds out whole people (``GroupKFold``).
- *A person we know*: given someone's first waves, what will they answer next?
  The conditional prediction uses their estimated random effects. Cross-
  validation holds out later waves of the same people (a forecast split), and
  the model reads the person's id from ``X`` (``group_columns="id"``), because
  scikit-learn does not pass ``groups`` to ``predict`` inside scorers.

The script prints each comparison; docs/sklearn_workflows.md shows the output.

Run from the repository root::

    python examples/sklearn_workflows.py
"""

import warnings

import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_glmm import BinomialGLMM
from sklearn_glmm.datasets import make_longitudinal
from sklearn_glmm.model_selection import compare_structures, get_scorer

warnings.filterwarnings("ignore", category=ConvergenceWarning)
warnings.filterwarnings("ignore", message="boundary \\(singular\\) fit")
sklearn.set_config(enable_metadata_routing=True)
pd.set_option("display.width", 110)
pd.set_option("display.max_columns", 20)

# for a 0/1 outcome, get_scorer("mean_log_likelihood") is exactly minus the log-loss
SCORING = {"log_loss": "neg_log_loss", "accuracy": "accuracy"}


def forecast_splits(time, origins):
    """Train on every wave before the origin, test on the wave at the origin."""
    time = np.asarray(time)
    return [(np.flatnonzero(time < k), np.flatnonzero(time == k)) for k in origins]


def summarise(name, res):
    return {
        "model": name,
        "log_loss": -res["test_log_loss"].mean(),
        "accuracy": res["test_accuracy"].mean(),
    }


# 1. Data ------------------------------------------------------------------------------
df, truth = make_longitudinal(
    "binomial", n_groups=300, n_waves=8, re_sd=1.0, slope_sd=0.4, random_state=1
)
X, y, ids = df[["time", "treatment"]], df["y"], df["id"]
X_with_id = df[["id", "time", "treatment"]]
print(df.head(8), "\n")

# 2. New people: GroupKFold, population-level predictions ------------------------------
# groups reach fit through metadata routing; the test people are unseen, so
# predictions average over the random-effect distribution.
# set_output keeps the column names, so the slope term can name "time"
pipe = make_pipeline(
    StandardScaler().set_output(transform="pandas"),
    BinomialGLMM("1 + time").set_fit_request(groups=True),
)
new_people = cross_validate(pipe, X, y, cv=GroupKFold(5), params={"groups": ids}, scoring=SCORING)
glm = cross_validate(
    LogisticRegression(), X, y, cv=GroupKFold(5), params={"groups": ids}, scoring=SCORING
)
table = pd.DataFrame([summarise("GLMM", new_people), summarise("logistic regression", glm)])
print("New people (GroupKFold, 5 folds): population-level predictions")
print(table.round(4).to_string(index=False), "\n")

# 3. Known people: forecast waves 5, 6, 7 from the waves before ------------------------
splits = forecast_splits(df["time"], origins=[5, 6, 7])
conditional = cross_validate(
    BinomialGLMM("1 + time", group_columns="id"), X_with_id, y, cv=splits, scoring=SCORING
)
population = cross_validate(
    BinomialGLMM("1 + time").set_fit_request(groups=True),
    X,
    y,
    cv=splits,
    params={"groups": ids},
    scoring=SCORING,
)
glm = cross_validate(LogisticRegression(), X, y, cv=splits, scoring=SCORING)
table = pd.DataFrame(
    [
        summarise("GLMM, conditional (group_columns='id')", conditional),
        summarise("GLMM, population-level", population),
        summarise("logistic regression", glm),
    ]
)
print("Forecasting each person's next wave (origins 5, 6, 7)")
print(table.round(4).to_string(index=False))
gain = population["test_log_loss"].mean() - conditional["test_log_loss"].mean()
print(f"Conditional forecasts gain {-gain:.3f} nats of log-likelihood per answer.\n")

# 4. Choosing the random-effect structure ----------------------------------------------
# by forecasting skill (conditional scoring) ...
search = GridSearchCV(
    BinomialGLMM(group_columns="id"),
    {"random_effects": ["1", "1 + time", "0 + time"]},
    cv=splits,
    scoring=get_scorer("mean_log_likelihood"),
    n_jobs=2,
).fit(X_with_id, y)
print("Grid search over random_effects, forecast splits (n_jobs=2):")
print(
    pd.DataFrame(search.cv_results_)[["param_random_effects", "mean_test_score", "rank_test_score"]]
    .round(4)
    .to_string(index=False)
)
print(f"best: {search.best_params_}\n")

# ... and by information criteria on all rows, with likelihood-ratio tests
cmp = compare_structures(
    BinomialGLMM(), ["1", "0 + time", "diag(1 + time)", "1 + time"], X, y, groups=ids
)
columns = ["npar", "logLik", "BIC", "delta", "lrt_vs", "Chisq", "Df", "p_value", "p_value_chibar"]
print(cmp.table[columns].round(4))
print(f"\nTrue SDs: intercept {truth['re_sd']}, slope {truth['slope_sd']}")
best = cmp.best_estimator_
print("Estimated random-effect covariance (best by BIC):")
print(best.random_effects_cov_["id"].round(3))
