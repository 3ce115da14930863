"""Model checks as R's performance and car give them: ICC, R², dispersion, zeros, Anova.

Two fits: daily app logins (Poisson, 50 users x 30 days) and the vegetables
study (binary, treatment x sex). For each we print the intraclass correlation,
Nakagawa's R², the overdispersion / zero-inflation / singularity /
collinearity checks and the type II and III Wald tests per term, and draw the
one-call panel of :func:`sklearn_glmm.performance.check_model`.

Run from the repository root (needs ``pip install -e ".[all]"``)::

    python examples/model_checks.py [OUTPUT_DIR]

Figures go to ``examples/output/`` (or OUTPUT_DIR).
"""

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no windows
import matplotlib.pyplot as plt  # noqa: E402

from sklearn_glmm.datasets import load_app_logins, make_vegetables  # noqa: E402
from sklearn_glmm.formula import glmer  # noqa: E402
from sklearn_glmm.performance import (  # noqa: E402
    Anova,
    check_collinearity,
    check_model,
    check_overdispersion,
    check_singularity,
    check_zeroinflation,
    icc,
    r2,
)

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "output"


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / f"model_checks_{name}.png", dpi=90)
    plt.close(fig)


def counts():
    df = load_app_logins()
    m = glmer("logins ~ day_centered + (1 | user_id)", df, family="poisson")
    with warnings.catch_warnings():
        # mean logins of about 2: performance warns that the lognormal approximation of
        # the Poisson variance is rough there; the numbers are those R gives all the same
        warnings.simplefilter("ignore", UserWarning)
        print(icc(m), r2(m), sep="\n\n", end="\n\n")
    for check in (check_overdispersion, check_zeroinflation, check_singularity):
        print(check(m), end="\n\n")
    save(check_model(m, random_state=0), "counts")


def binary():
    df, _ = make_vegetables(random_state=0)
    m = glmer("y ~ trt * sex + (1 | id)", df)
    print(icc(m), r2(m), check_collinearity(m), sep="\n\n", end="\n\n")
    print(Anova(m, type=2), end="\n\n")
    # type III tests of the main effects need sum-to-zero contrasts
    m_sum = glmer("y ~ C(trt, contr.sum) * C(sex, contr.sum) + (1 | id)", df)
    print(Anova(m_sum, type=3), end="\n\n")
    save(check_model(m, random_state=0), "binary")


if __name__ == "__main__":
    counts()
    binary()
