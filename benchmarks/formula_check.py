"""The formula front end against R on generated formulas: names, estimates, likelihood.

Each seed draws a data set (a grouping factor of text or number labels, a second factor
crossed with it, numeric predictors on several scales and origins, text factors, a
logical, a factor cut from a predictor; a binary outcome (logit, or probit on a quarter
of the data sets), successes out of trials (``cbind(s, n - s)``, on another quarter) or
a count outcome, fitted as Poisson or, by glmmTMB on every other count data set, NB2,
and on some with a zero-inflation formula of :data:`ZI`) and four formulas (with ``--engine clmm``,
of a rating of 1-4, random intercepts only); ``glmer``
fits a single random intercept on every other data set with ``nAGQ = 7`` (its
``logLik`` then relative to the saturated model for counts and trials, which is added
back)
(one to three fixed-part spellings of :data:`FIXED`, one random part of :data:`RANDOM`,
an offset on some count models). Each formula is fitted by R (``glmer``, or with
``--engine glmmTMB`` by ``glmmTMB``; ``formula_check.R``) and by the library's function
of the same name, on the same CSV file, and compared: the fixed-effect names (lme4
(and clmm) drop an aliased column where the library keeps it as NaN, as R's ``glm``: such
columns are left out; glmmTMB keeps them, and its fits with one are compared by name
only), the log-likelihood (within 1e-3, or higher) and the fixed effects (within 5 %
of their standard error where the log-likelihoods agree and the fit does not warn of
separation, along which the estimates are where each optimiser stopped), and the coding
of new rows (the library's design of the first rows times R's coefficients against R's
``predict(m, newdata, re.form = NA)``, to rounding). Prints each
case that differs or raises and a summary; exits 1 where one does. This is what found
R's order of an interaction's variables (``tests/fixtures/formula_terms``), a fit
stopped at a saddle point (``tests/fixtures/saddle``), a zero-inflation fit below
glmmTMB's (``tests/fixtures/zi_release``) and the several correlated terms for one
grouping factor the library did not fit (``tests/fixtures/term_blocks``).

    python benchmarks/formula_check.py [--seeds 0 60] [--engine glmer|glmmTMB|clmm] [--dir DIR]

Needs R with lme4, glmmTMB, ordinal and jsonlite (``Rscript`` on the ``PATH``) and the library's
``formula`` extra.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

# fixed-part spellings: transforms, interactions in every order, crossing, removal,
# nesting and no-intercept forms
FIXED = [
    "x1", "x2", "f", "log(x2)", "I(x1^2)", "poly(x1, 2)", "x1:f", "f * x2", "factor(k)",
    "k", "lg", "scale(x1)", "I(x2 > 1.5)", "x1 + I(x1^2)", "poly(x2, 2, raw = TRUE)",
    "f:x2", "exp(x2 / 3)", "sqrt(x2)", "x2 %in% f", "(x1 + x2)^2", "I(x1 * x2)",
    "f + lg", "lg:x2", "factor(k):x1", "cut_f", "x1 * lg", "f:cut_f", "cut_f * f",
    "f:lg:x2", "x1 * f * lg", "f * x2 - x2", "0 + f", "factor(k) * cut_f", "x2:f:cut_f",
    "lg * cut_f", "cut_f:x2 + x2",
]  # fmt: skip
RANDOM = [
    "(1 | g)", "(1 + x2 | g)", "(x2 || g)", "(1 | g) + (1 | h)", "(1 | g/h)", "(1 | g:h)",
    "(0 + x2 | g) + (1 | g)", "(1 | h)", "(1 + lg | g)", "(1 + cut_f | g)", "(0 + cut_f | g)",
    "(1 | g) + (0 + x2:cut_f | g)", "(1 + scale(x2) | g)", "(1 + log(x2) || g)",
    "(1 + x2 | g) + (0 + lg | g)", "(x2 + cut_f || g)", "(x1 | g)", "(1 + x2 | g/h)",
    "(1 + x1 + x2 | g)", "(1 + x2 | g) + (1 | h)", "(0 + poly(x1, 2) | g)",
]  # fmt: skip


# clmm's: its thresholds take the intercept, and its random terms are intercepts
FIXED_CLMM = [t for t in FIXED if not t.startswith("0 +")]
# (clmm reads g:h of numeric labels as R's sequence operator, and needs three levels)
RANDOM_CLMM = ["(1 | g)", "(1 | g) + (1 | h)"]
# zero-inflation formulas of some count models with glmmTMB
ZI = ["~ lg", "~ x1:f + f", "~ cut_f * lg", "~ lg:x2 + x2", "~ 1"]


def data(seed: int) -> tuple[pd.DataFrame, str]:
    """Seed ``seed``'s data set and family (binomial, or Poisson for every third)."""
    rng = np.random.default_rng(seed)
    G, m = int(rng.integers(12, 35)), int(rng.integers(5, 12))
    n = G * m
    gi = np.repeat(np.arange(G), m)
    labels = np.array([f"s{i + 1}" for i in range(G)]) if seed % 2 else np.arange(G) * 3 + 7
    h = np.array(list("pqrst"))[rng.integers(0, int(rng.integers(2, 5)), n)]
    shift = float(rng.choice([0.0, 50.0, 2000.0]))
    z1 = rng.normal(size=n)
    x1 = np.round(shift / 10 + z1, 4)
    x2 = np.round(rng.uniform(0.5, 3, n), 4)
    flev = ["ctrl", "dose", "alpha", "mid"][: int(rng.integers(2, 5))]
    f = np.array(flev)[rng.integers(0, len(flev), n)]
    k = rng.choice([1, 2, 5], n)
    lg = rng.random(n) < 0.4
    b = rng.normal(0, rng.uniform(0.3, 1.0), G)[gi]
    bh = rng.normal(0, 0.4, 5)[np.searchsorted(list("pqrst"), h)]
    eta = 0.3 * z1 + 0.4 * (x2 - 1.7) + 0.3 * (f == flev[-1]) - 0.3 * lg + b + bh
    family = "poisson" if seed % 3 == 0 else "binomial"
    if family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    else:
        y = rng.poisson(np.exp(0.5 + eta))
    cut_f = np.array(["lo", "hi"])[(x2 > 1.7).astype(int)]
    # a rating of 1-4 (clmm's outcome): the latent logistic variable cut at three points
    latent = eta + rng.logistic(size=n)
    rating = 1 + np.searchsorted([-1.0, 0.3, 1.5], latent)
    trials = rng.integers(1, 12, n)
    s = rng.binomial(trials, 1 / (1 + np.exp(-eta)))
    frame = pd.DataFrame(
        dict(
            y=y,
            r=rating,
            s=s,
            n=trials,
            g=labels[gi],
            h=h,
            x1=x1,
            x2=x2,
            f=f,
            k=k,
            lg=lg,
            cut_f=cut_f,
        )
    )
    if family == "binomial" and seed % 4 == 3:
        family = "binomial(link = 'probit')"
    return frame, family


def formulas(seed: int, engine: str = "glmer", n: int = 4) -> list[str]:
    rng = np.random.default_rng(10_000 + seed)
    out = []
    for _ in range(n):
        if engine == "clmm":  # the rating, random intercepts only, no intercept to drop
            fixed = list(rng.choice(FIXED_CLMM, int(rng.integers(1, 4)), replace=False))
            out.append(f"r ~ {' + '.join(fixed)} + {rng.choice(RANDOM_CLMM)}")
            continue
        fixed = list(rng.choice(FIXED, int(rng.integers(1, 4)), replace=False))
        offset = " + offset(log(x2))" if seed % 3 == 0 and rng.random() < 0.3 else ""
        # successes out of trials on some binary data sets (R's cbind(successes, failures))
        lhs = "cbind(s, n - s)" if seed % 3 and seed % 4 == 1 else "y"
        out.append(f"{lhs} ~ {' + '.join(fixed)}{offset} + {rng.choice(RANDOM)}")
    return out


def write_cases(seeds, engine: str, where: Path) -> None:
    cases = []
    for seed in seeds:
        frame, family = data(seed)
        path = f"d{seed}.csv"
        # R reads TRUE/FALSE as a logical column, pandas as booleans
        frame.assign(lg=np.where(frame.lg, "TRUE", "FALSE")).to_csv(where / path, index=False)
        if engine == "clmm":
            family = "ordinal"
        for formula in formulas(seed, engine):
            zi = None
            if engine == "glmmTMB" and family in ("poisson", "nbinom2"):
                if seed % 2:
                    family = "nbinom2"  # (glmmTMB's NB2 on every other count data set)
                if seed % 5 == 0:  # and a zero-inflation formula on some
                    zi = ZI[seed // 5 % len(ZI)]
            # adaptive quadrature where glmer has it: a single random intercept
            single = formula.endswith(" + (1 | g)") and formula.count("|") == 1
            agq = 7 if engine == "glmer" and single and seed % 2 else 1
            cases.append(
                dict(
                    seed=seed,
                    data=path,
                    family=family,
                    formula=formula,
                    engine=engine,
                    zi=zi,
                    agq=agq,
                )
            )
    (where / "cases.json").write_text(json.dumps(cases, indent=1))


def compare(case: dict, where: Path) -> str | None:
    """What differs between R's fit of ``case`` and the library's, or None."""
    from sklearn_glmm import formula as front

    if "error" in case:
        return None  # R could not fit it (not a formula R reads)
    d = pd.read_csv(where / case["data"])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            zi = {"ziformula": case["zi"]} if case.get("zi") else {}
            if case.get("agq", 1) > 1:
                zi["nAGQ"] = case["agq"]
            if case["engine"] == "clmm":
                m = front.clmm(case["formula"], d)
            else:
                m = getattr(front, case["engine"])(case["formula"], d, family=case["family"], **zi)
    except Exception as exc:  # noqa: BLE001  (reported, the run goes on)
        return f"raised {type(exc).__name__}: {str(exc)[:200]}"
    fe = m.fixed_effects_
    # aliased columns (NaN here): lme4 drops them; glmmTMB 1.1.5 keeps them, with
    # estimates the data do not determine (compared by name only)
    aliased = bool(fe["estimate"].isna().any())
    if case["engine"] in ("glmer", "clmm"):
        fe = fe[fe["estimate"].notna()]
    out = []
    theirs = _names(case["names"])
    if list(fe.index) != theirs:
        out.append(f"names {list(fe.index)} vs R's {theirs}")
    if case.get("zi"):
        names, theirs = list(m.zero_inflation_effects_.index), _names(case["zi_names"])
        if names != theirs:
            out.append(f"zero-inflation names {names} vs R's {theirs}")
    out += _new_rows(m, case, d)
    if not isinstance(case["loglik"], (int, float)) or case.get("r_converged") is False:
        # R's fit gave no log-likelihood (NA, NaN), or said it did not converge (clmm's
        # optimiser can end with a log-likelihood above the one it converges to, glmmTMB's
        # NB2 at a theta of 1e11 above its own Poisson fit's)
        return "; ".join(out) or None
    gap = m.loglik_ - case["loglik"] - _saturated(case, d)
    if gap < -1e-3:
        out.append(f"log-likelihood {gap:.4g} below R's")
    # (separated data: the estimates along the separation are where each optimiser stopped)
    separated = any(w.category.__name__ == "SeparationWarning" for w in caught)
    if separated or (aliased and case["engine"] == "glmmTMB"):
        return "; ".join(out) or None
    if abs(gap) < 1e-3 and not out:
        z = np.abs(fe["estimate"].to_numpy() - np.array(case["fixef"])) / fe["std_error"].to_numpy()
        if np.any(z > 0.05):  # (a NaN standard error compares nothing)
            out.append(f"fixed effects {np.nanmax(z):.3g} standard errors from R's")
    return "; ".join(out) or None


def _names(names) -> list:
    """R's names as a list (one name comes as a JSON string)."""
    return [names] if isinstance(names, str) else list(names)


def _new_rows(m, case: dict, d: pd.DataFrame) -> list[str]:
    """The fit's coding of new rows (the first rows of the data, as R's ``newdata``)
    against R's: the library's design of those rows times R's coefficients is R's
    population-level prediction there (``re.form = NA``), to rounding. Not for formulas
    with an offset (R's prediction holds it)."""
    from sklearn_glmm.formula import design_matrix

    if not isinstance(case.get("population"), list) or "offset(" in case["formula"]:
        return []  # (R gave none: an empty JSON object)
    X = design_matrix(m.design_info_, d.iloc[: len(case["population"])])
    beta = pd.Series(case["fixef"], index=_names(case["names"]))
    cols = [c for c in beta.index if c != "(Intercept)"]
    if not set(cols) <= set(X.columns):
        return [f"new rows' design lacks {sorted(set(cols) - set(X.columns))}"]
    pred = X[cols].to_numpy() @ beta[cols].to_numpy() + beta.get("(Intercept)", 0.0)
    gap = float(np.max(np.abs(pred - np.asarray(case["population"], dtype=float))))
    if gap > 1e-6 * (1.0 + float(np.max(np.abs(pred)))):
        return [f"new rows coded otherwise than R's: predictions {gap:.3g} apart"]
    return []


def _saturated(case: dict, d: pd.DataFrame) -> float:
    """What lme4's ``logLik`` leaves out of a quadrature fit (``nAGQ > 1``) of Poisson
    counts or successes out of trials: the saturated model's log-likelihood (it reports
    the likelihood relative to that model; the library's is the full one)."""
    from scipy.special import gammaln, xlogy

    if case.get("agq", 1) == 1 or case["engine"] != "glmer":
        return 0.0
    if case["family"] == "poisson":
        y = d["y"].to_numpy(float)
        return float(np.sum(xlogy(y, y) - y - gammaln(y + 1)))
    if case["formula"].startswith("cbind("):
        s, n = d["s"].to_numpy(float), d["n"].to_numpy(float)
        log_choose = gammaln(n + 1) - gammaln(s + 1) - gammaln(n - s + 1)
        return float(np.sum(log_choose + xlogy(s, s / n) + xlogy(n - s, 1 - s / n)))
    return 0.0  # (binary outcomes: the saturated log-likelihood is 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", nargs=2, type=int, default=[0, 60], metavar=("START", "STOP"))
    ap.add_argument("--engine", choices=["glmer", "glmmTMB", "clmm"], default="glmer")
    ap.add_argument("--dir", help="working directory kept for inspection (default: temporary)")
    args = ap.parse_args(argv)
    if shutil.which("Rscript") is None:
        sys.exit("Rscript is not on the PATH: this check needs R with lme4 and glmmTMB.")
    where = Path(args.dir or tempfile.mkdtemp(prefix="formula_check_"))
    where.mkdir(parents=True, exist_ok=True)
    write_cases(range(*args.seeds), args.engine, where)
    subprocess.run(["Rscript", str(HERE / "formula_check.R")], cwd=where, check=True)
    results = json.loads((where / "r_results.json").read_text())
    differ = 0
    for case in results:
        what = compare(case, where)
        if what:
            differ += 1
            print(f"seed {case['seed']} {case['family']} {case['formula']}: {what}")
    r_errors = sum("error" in c for c in results)
    print(
        f"{len(results)} formulas ({args.engine}): {differ} differ or raise here, "
        f"{r_errors} R could not fit"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
