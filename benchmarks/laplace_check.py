"""How well the Laplace fit's check against adaptive quadrature measures the distance
between the two fits (the counts of the docs' ``ApproximationWarning`` section,
docs/troubleshooting.md; ``sklearn_glmm._engine.quadrature_check``).

Each data set is fitted with the Laplace approximation and with 15-node adaptive
quadrature; the distance between the two fits is the largest difference of the
parameters in the Laplace fit's standard errors, and the check's measure is
``fit_record_.quadrature_shift``. Two batteries: ``hard`` (binary logit, probit and
cloglog, binomial with 5 trials, Poisson; 2-11 rows per level, SDs of 0.3-3, intercepts
from rare to nearly universal events; seed 1, 150 draws) and ``ordinary`` (3-19 rows,
SDs of 0.2-1.5, intercepts in -2..2; seed 2, 120 draws). With ``--own``, the families
with parameters of their own instead (:func:`draw_own`: NB2, NB2 with a dispersion
model, hurdle and zero-truncated Poisson, ordinal logit and probit; seeds 3 and 4).
Each data set whose distance exceeds one standard error, or that is warned of, is
printed. ``--other``: the families that are not log-concave (:func:`draw_other`:
zero-inflated Poisson and NB2, NB1, the beta-binomial, the hurdle NB2; seeds 5 and 6).
``--cauchit``: the ordinal cauchit model (:func:`draw_cauchit`; seeds 7 and 8).
``--slopes``: binomial and Poisson with a correlated random intercept and slope
(:func:`draw_slopes`; seeds 9 and 10); ``--large-slopes`` the same on 300-2,000 levels
and up to 20,000 rows (:func:`draw_large_slopes`; seeds 11 and 12). Not a test: a few
minutes. Run from the repository root:

    python benchmarks/laplace_check.py [--battery hard|ordinary] [--n 150]
        [--own | --other | --cauchit | --slopes | --large-slopes]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from sklearn_glmm import BinomialGLMM, NegBinGLMM, OrdinalGLMM, PoissonGLMM
from sklearn_glmm._engine.quadrature_check import SHIFT_TOL

INVERSE = {
    "logit": lambda e: 1 / (1 + np.exp(-e)),
    "probit": stats.norm.cdf,
    "cloglog": lambda e: 1 - np.exp(-np.exp(e)),
}


def draw(rng, battery):
    """``(estimator factory, X, y, groups, fit keywords)`` of one data set, or None."""
    if battery == "hard":
        fam = rng.choice(["logit", "probit", "cloglog", "pois", "binom5"])
        G, n = int(rng.integers(8, 300)), int(rng.integers(1, 12))
        sd, b0 = float(rng.choice([0.3, 1.0, 2.0, 3.0])), float(rng.normal(-1, 2))
    else:
        fam = rng.choice(["logit", "logit", "probit", "pois", "binom5"])
        G, n = int(rng.integers(10, 300)), int(rng.integers(3, 20))
        sd, b0 = float(rng.uniform(0.2, 1.5)), float(rng.uniform(-2, 2))
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    kw = {}
    if fam == "pois":
        y = rng.poisson(np.exp(np.clip(eta / 2, -20, 8)))
        make = lambda a: PoissonGLMM(n_agq=a)  # noqa: E731
    elif fam == "binom5":
        y = rng.binomial(5, INVERSE["logit"](eta))
        kw["trials"] = np.full(len(y), 5)
        make = lambda a: BinomialGLMM(n_agq=a)  # noqa: E731
    else:
        y = rng.binomial(1, INVERSE[fam](eta))
        make = lambda a, f=fam: BinomialGLMM(link=f, n_agq=a)  # noqa: E731
    if y.min() == y.max() or n == 1:  # (one binary row per level is not identified)
        return None
    return make, pd.DataFrame({"x": x}), y, g, kw


def _levels(rng, battery, top, hard_rows, hard_b0, low_b0):
    """``(G, n, sd, b0)`` of the batteries of :func:`draw_own`, :func:`draw_other` and
    :func:`draw_cauchit`: ``hard`` with 8 to ``top`` groups of ``hard_rows`` rows, SDs of
    0.5-3 and intercepts from ``normal(*hard_b0)``; ``ordinary`` with 10 to ``top``
    groups of 3-19 rows, SDs of 0.2-1.5 and intercepts in ``low_b0``..2."""
    if battery == "hard":
        G, n = int(rng.integers(8, top)), int(rng.integers(*hard_rows))
        return G, n, float(rng.choice([0.5, 1.0, 2.0, 3.0])), float(rng.normal(*hard_b0))
    G, n = int(rng.integers(10, top)), int(rng.integers(3, 20))
    return G, n, float(rng.uniform(0.2, 1.5)), float(rng.uniform(low_b0, 2))


def draw_own(rng, battery):
    """As :func:`draw`, for families with parameters of their own: NB2 (theta from 0.3 to
    20, or with a dispersion model in ``z``), the hurdle and zero-truncated Poisson, and
    the ordinal logit and probit models (4 classes)."""
    fam = rng.choice(["nb2", "nb2", "nb2_disp", "hurdle", "truncated", "ordinal"])
    G, n, sd, b0 = _levels(rng, battery, 300, (1, 10), (-1.5, 1.5), -1)
    g = np.repeat(np.arange(G), n)
    x, z = rng.normal(size=len(g)), rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    mu = np.exp(np.clip(eta, -20, 8))
    X = pd.DataFrame({"x": x})
    if fam in ("nb2", "nb2_disp"):
        theta = float(rng.choice([0.3, 1.0, 3.0, 20.0]))
        theta = theta * np.exp(0.7 * z) if fam == "nb2_disp" else theta
        y = rng.negative_binomial(theta, theta / (theta + mu))
        if fam == "nb2_disp":
            X["z"] = z
            make = lambda a: NegBinGLMM(n_agq=a, dispersion="1 + z")  # noqa: E731
        else:
            make = lambda a: NegBinGLMM(n_agq=a)  # noqa: E731
    elif fam == "hurdle":
        y = rng.poisson(mu) * (rng.random(len(g)) < 0.7)
        make = lambda a: PoissonGLMM(n_agq=a, hurdle=True)  # noqa: E731
    elif fam == "truncated":
        y = rng.poisson(mu)
        keep = y > 0
        X, y, g = X[keep].reset_index(drop=True), y[keep], g[keep]
        make = lambda a: PoissonGLMM(n_agq=a, truncated=True)  # noqa: E731
    else:
        link = str(rng.choice(["logit", "probit"]))
        cuts = np.array([-1.0, 0.5, 2.0]) + b0
        y = np.searchsorted(cuts, eta + rng.logistic(size=len(g)))
        make = lambda a, link=link: OrdinalGLMM(n_agq=a, link=link)  # noqa: E731
    if len(np.unique(y)) < 2 or n == 1 or len(np.unique(g)) < 5:
        return None
    return make, X, y, g, {}


def draw_other(rng, battery):
    """As :func:`draw`, for the families that are not log-concave: zero-inflated Poisson
    and NB2 (30 % extra zeros), NB1 (phi 1.5), the beta-binomial (6 trials) and the hurdle
    NB2."""
    fam = rng.choice(["zip", "zinb", "nb1", "betabinomial", "hurdle_nb"])
    G, n, sd, b0 = _levels(rng, battery, 200, (2, 10), (-0.5, 1.5), -0.5)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    mu = np.exp(np.clip(eta, -20, 8))
    theta = float(rng.choice([0.5, 2.0, 10.0]))
    extra_zeros = rng.random(len(g)) < 0.3
    kw = {}
    if fam == "zip":
        y = rng.poisson(mu) * ~extra_zeros
        make = lambda a: PoissonGLMM(n_agq=a, zero_inflation=True)  # noqa: E731
    elif fam == "zinb":
        y = rng.negative_binomial(theta, theta / (theta + mu)) * ~extra_zeros
        make = lambda a: NegBinGLMM(n_agq=a, zero_inflation=True)  # noqa: E731
    elif fam == "nb1":
        y = rng.negative_binomial(mu / 1.5, 1.0 / 2.5)
        make = lambda a: NegBinGLMM(n_agq=a, family="nbinom1")  # noqa: E731
    elif fam == "betabinomial":
        p = INVERSE["logit"](eta)
        y = rng.binomial(6, rng.beta(3.0 * p, 3.0 * (1.0 - p)))
        kw["trials"] = np.full(len(y), 6)
        make = lambda a: BinomialGLMM(n_agq=a, family="betabinomial")  # noqa: E731
    else:
        y = rng.negative_binomial(theta, theta / (theta + mu)) * ~extra_zeros
        make = lambda a: NegBinGLMM(n_agq=a, hurdle=True)  # noqa: E731
    if len(np.unique(y)) < 2:
        return None
    return make, pd.DataFrame({"x": x}), y, g, kw


def draw_cauchit(rng, battery):
    """As :func:`draw`, for the ordinal cauchit model (4 classes, Cauchy latent errors),
    whose link is not log-concave."""
    G, n, sd, b0 = _levels(rng, battery, 200, (2, 10), (-1.5, 1.5), -1)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g]
    y = np.searchsorted(np.array([-1.0, 0.5, 2.0]) + b0, eta + rng.standard_cauchy(len(g)))
    if len(np.unique(y)) < 2:
        return None
    make = lambda a: OrdinalGLMM(n_agq=a, link="cauchit")  # noqa: E731
    return make, pd.DataFrame({"x": x}), y, g, {}


def draw_slopes(rng, battery, levels=(8, 200), rows=2222):
    """As :func:`draw`, with a correlated random intercept and slope of ``x`` (the slope's
    SD 0.3-2 in ``hard``, 0.1-0.8 in ``ordinary``), ``levels`` levels (``(10, 200)`` in
    ``ordinary``), at most ``rows`` rows (by default 2,222: the check's former budget
    of rows times nodes for two random effects)."""
    if battery == "hard":
        fam = rng.choice(["logit", "probit", "cloglog", "pois", "binom5"])
        G, n = int(rng.integers(*levels)), int(rng.integers(2, 12))
        sd, b0 = float(rng.choice([0.5, 1.0, 2.0, 3.0])), float(rng.normal(-1, 2))
        sd1 = float(rng.choice([0.3, 1.0, 2.0]))
    else:
        fam = rng.choice(["logit", "logit", "probit", "pois", "binom5"])
        G, n = int(rng.integers(max(levels[0], 10), levels[1])), int(rng.integers(4, 20))
        sd, b0 = float(rng.uniform(0.2, 1.5)), float(rng.uniform(-2, 2))
        sd1 = float(rng.uniform(0.1, 0.8))
    G = min(G, rows // n)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=len(g))
    eta = b0 + 0.5 * x + rng.normal(0, sd, G)[g] + rng.normal(0, sd1, G)[g] * x
    kw = {}
    if fam == "pois":
        y = rng.poisson(np.exp(np.clip(eta / 2, -20, 8)))
        make = lambda a: PoissonGLMM(random_effects="1 + x", n_agq=a)  # noqa: E731
    elif fam == "binom5":
        y = rng.binomial(5, INVERSE["logit"](eta))
        kw["trials"] = np.full(len(y), 5)
        make = lambda a: BinomialGLMM(random_effects="1 + x", n_agq=a)  # noqa: E731
    else:
        y = rng.binomial(1, INVERSE[fam](eta))
        make = lambda a, f=fam: BinomialGLMM(link=f, random_effects="1 + x", n_agq=a)  # noqa: E731
    if y.min() == y.max():
        return None
    return make, pd.DataFrame({"x": x}), y, g, kw


def draw_large_slopes(rng, battery):
    """As :func:`draw_slopes` on 300-2,000 levels and at most 20,000 rows (the check's
    budget for two random effects)."""
    return draw_slopes(rng, battery, levels=(300, 2000), rows=20_000)


# each battery's draw and its seeds' shift from the binomial and Poisson battery's
BATTERIES = {
    None: (draw, 0),
    "own": (draw_own, 2),
    "other": (draw_other, 4),
    "cauchit": (draw_cauchit, 6),
    "slopes": (draw_slopes, 8),
    "large_slopes": (draw_large_slopes, 10),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--battery", choices=["hard", "ordinary"], default="hard")
    ap.add_argument("--n", type=int, default=None)
    families = ap.add_mutually_exclusive_group()
    for flag, text in [
        ("own", "families with parameters of their own (NB2, hurdle and truncated Poisson, "
         "ordinal): seeds 3 (hard) and 4 (ordinary)"),
        ("other", "the families that are not log-concave (zero-inflated Poisson and NB2, "
         "NB1, beta-binomial, hurdle NB2): seeds 5 (hard) and 6 (ordinary)"),
        ("cauchit", "the ordinal cauchit model: seeds 7 (hard) and 8 (ordinary)"),
        ("slopes", "binomial and Poisson with a random intercept and slope: seeds 9 "
         "(hard) and 10 (ordinary)"),
        ("large-slopes", "the same on 300-2,000 levels and up to 20,000 rows: seeds 11 "
         "(hard) and 12 (ordinary)"),
    ]:  # fmt: skip
        families.add_argument(
            f"--{flag}",
            dest="families",
            action="store_const",
            const=flag.replace("-", "_"),
            help=text,
        )
    args = ap.parse_args(argv)
    seed, n = (1, 150) if args.battery == "hard" else (2, 120)
    draw_one, shift = BATTERIES[args.families]
    seed += shift
    rng = np.random.default_rng(seed)
    true, measured = [], []
    for _ in range(args.n or n):
        case = draw_one(rng, args.battery)
        if case is None:
            continue
        make, X, y, g, kw = case
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                lap = make(1).fit(X, y, groups=g, **kw)
                agq = make(15).fit(X, y, groups=g, **kw)
            except Exception as exc:  # noqa: BLE001 - a failed fit is reported, not counted
                print("failed:", exc)
                continue
        shift = lap.fit_record_.quadrature_shift
        if shift is None:
            continue
        H = lap.fit_record_.hessian
        se = np.sqrt(np.clip(2.0 * np.diag(np.linalg.pinv(H)), 0.0, None))
        d = np.abs(lap.fit_result_.params - agq.fit_result_.params)
        true.append(float(np.max(d / np.where(se > 0, se, np.inf))))
        measured.append(shift)
        if true[-1] > 1.0 or shift > SHIFT_TOL:
            print(f"  {make(1)!r}: distance {true[-1]:.3f}, measure {shift:.3f}")
    t, s = np.array(true), np.array(measured)
    warn = s > SHIFT_TOL
    print(f"{args.battery}: {len(t)} data sets, warned (measure > {SHIFT_TOL}) {warn.sum()}")
    for lo, hi in [(0.0, 0.5), (0.5, 1.0), (1.0, np.inf)]:
        band = (t >= lo) & (t < hi)
        print(f"  distance {lo}-{hi} SE: {band.sum()} data sets, {np.sum(warn & band)} warned")
    print(f"  largest |measure - distance| where the distance is below 1: "
          f"{np.max(np.abs(s - t)[t < 1.0], initial=0.0):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
