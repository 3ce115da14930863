"""Size of the library's tests under their null hypothesis (the numbers of the docs'
"How well the tests hold their level", docs/inference.md).

Data are drawn from the model that is fitted (random-intercept SD 0.7; ``x`` varies
within groups, ``w`` is 0/1 constant within each group, both with no effect), and each
test's rejection rate at 5 % is printed with its 99 % Monte-Carlo band. Not a test:
simulation studies, a minute or two at the defaults. Run from the repository root:

    python benchmarks/calibration.py [--n-sim 400]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from sklearn_glmm import PoissonGLMM
from sklearn_glmm.performance import check_overdispersion, check_zeroinflation


def draw(seed, n_groups, n_per, intercept=0.3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    X = pd.DataFrame(
        {"x": rng.normal(size=len(g)), "w": np.repeat((np.arange(n_groups) % 2) * 1.0, n_per)}
    )
    b = rng.normal(0, 0.7, n_groups)
    return X, rng.poisson(np.exp(intercept + b[g])), g


def rate(p, level=0.05):
    p = np.asarray(p, dtype=float)
    p = p[np.isfinite(p)]
    lo, hi = stats.binom.ppf([0.005, 0.995], len(p), level) / len(p)
    return f"{np.mean(p < level):.3f} (99 % band {lo:.3f}-{hi:.3f}, {len(p)} data sets)"


def study(n_groups, n_per, n_sim):
    p_x, p_w, p_od, zi = [], [], [], []
    for s in range(n_sim):
        X, y, g = draw(1000 + s, n_groups, n_per)
        m = PoissonGLMM().fit(X, y, groups=g)
        fe = m.fixed_effects_
        p_x.append(fe.loc["x", "p_value"])
        p_w.append(fe.loc["w", "p_value"])
        p_od.append(check_overdispersion(m)["p_value"].iloc[0])
        zi.append(bool(check_zeroinflation(m).detected))
    print(f"Poisson, {n_groups} groups x {n_per} rows")
    print(f"  Wald p of x (within groups), rejected at 5 %:  {rate(p_x)}")
    print(f"  Wald p of w (between groups), rejected at 5 %: {rate(p_w)}")
    print(f"  check_overdispersion, rejected at 5 %:         {rate(p_od)}")
    print(f"  check_zeroinflation, 'probable zero-inflation': {np.mean(zi):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sim", type=int, default=400)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    for n_groups, n_per in [(10, 20), (100, 5)]:
        study(n_groups, n_per, args.n_sim)


if __name__ == "__main__":
    main()
