"""The speed-and-scale workloads of issue 7: data generators with fixed seeds.

Every workload is one model, fitted the same way by every engine that can fit it:
this library (in-process), lme4 / glmmTMB (through ``Rscript benchmarks/time_scale.R``)
and, where its model class allows, GPBoost. The rows are generated here, with a fixed
seed, and written once to a CSV in a cache directory (never committed), so that R
reads exactly the rows Python fits::

    from workloads import WORKLOADS, csv_path
    path = csv_path(WORKLOADS["pois_ri_1m"])     # generated on first use, then cached

Workloads (rows; the engines that fit them):

- ``bin_rs_200k``: binary, correlated random intercept + slope on time, 20,000 people
  x 10 waves (200,000; ours, lme4). GPBoost cannot fit correlated slopes.
- ``bin_rs_200k_diag``: the same rows, uncorrelated intercept and slope -- lme4's
  ``(time || id)``, the model GPBoost fits (200,000; ours, lme4, GPBoost).
- ``pois_ri_1m``: Poisson random intercept, 100,000 people x 10 waves
  (1,000,000; ours, lme4, GPBoost).
- ``crossed_bin``: binary, crossed random intercepts, 300 subjects x 24 items
  (7,200; ours, lme4, GPBoost).
- ``verbagg``: lme4's VerbAgg (binary, 316 people x 24 items, 7,584 rows), the
  reference fixture ``tests/fixtures/verbagg.csv`` (ours, lme4, GPBoost).
- ``app_logins``: the tutorial's Poisson random intercept on 50 users x 30 days
  (1,500; ours, lme4, GPBoost).
- ``vegetables``: tutorial 003's binary treatment x sex interaction, 250 subjects x 14
  days (3,500; ours, lme4, GPBoost).
- ``nb_rs_3k``: NB2 counts, correlated random intercept + slope, 300 people x 10 waves
  (3,000; ours, glmmTMB, glmer.nb).

Two larger designs beyond the issue's list, for the solvers of several factors:

- ``nested3_40k``: binary, 4 waves of 10,000 students in 2,000 classes in 100 schools,
  a random intercept for each (40,000; ours, lme4, GPBoost).
- ``crossed_40k``: binary, 1,000 subjects x 800 items, 40,000 random pairs (ours, lme4,
  GPBoost).

Crossed designs with thousands of levels (``CROSSED_WORKLOADS``, timed by
``run_crossed.py``):

- ``recommender_1m``: binary, 6,040 users x 3,706 items, 1,000,000 distinct pairs with
  log-normal activity and popularity (MovieLens-1M's shape), a random intercept for each.
- ``insteval_bin``: lme4's ``InstEval`` with the rating dichotomised at 4,
  ``y >= 4 ~ service + (1 | s) + (1 | d)`` (73,421 rows; 2,972 students x 1,128
  lecturers); the rows come from R's lme4, so this one needs ``Rscript``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from sklearn_glmm.datasets import load_app_logins, make_longitudinal, make_vegetables

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(
    os.environ.get("SKLEARN_GLMM_BENCH_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sklearn_glmm_bench"
)
# Bump when a generator changes, so that stale cached CSVs are not reused.
DATA_VERSION = 1


@dataclass(frozen=True)
class GPBoostSpec:
    """How GPBoost fits a workload: ``GPModel(group_data=..., likelihood=...)``.

    ``slope`` names the column whose random coefficient (uncorrelated with the
    intercept, the only kind GPBoost has) is added for the first grouping factor.
    """

    likelihood: str
    slope: str | None = None


@dataclass(frozen=True)
class Workload:
    """One model on one data set, as every engine is asked to fit it."""

    name: str
    description: str
    make: Callable[[], pd.DataFrame]
    family: str  # "binomial", "poisson" or "negbin"
    y: str
    X: tuple[str, ...]
    groups: tuple[str, ...]
    random_effects: str | dict
    r_calls: dict[str, str]  # engine -> R call on the data frame ``d``; the first is primary
    gpboost: GPBoostSpec | None = None
    large: bool = False  # R fits of a minute or more: one timed run, skipped by --quick
    issue: dict = field(default_factory=dict)  # the times issue 7 quotes (seconds)
    data_key: str = ""  # workloads on the same rows share one CSV

    @property
    def csv_name(self) -> str:
        return f"{self.data_key or self.name}_v{DATA_VERSION}.csv"


def csv_path(w: Workload, cache_dir: Path | str | None = None) -> Path:
    """The workload's CSV, generated (with its fixed seed) on first use."""
    cache = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / w.csv_name
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        w.make().to_csv(tmp, index=False)
        tmp.replace(path)
    return path


def load(w: Workload, cache_dir: Path | str | None = None):
    """``(X, y, groups)`` read back from the CSV, exactly the rows R reads."""
    df = pd.read_csv(csv_path(w, cache_dir))
    groups = df[list(w.groups)].astype(str)
    return df[list(w.X)], df[w.y], groups


def make_estimator(w: Workload):
    from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM

    cls = {"binomial": BinomialGLMM, "poisson": PoissonGLMM, "negbin": NegBinGLMM}[w.family]
    return cls(random_effects=w.random_effects)


# ---- generators ----------------------------------------------------------------------


def _binary_slopes() -> pd.DataFrame:
    df, _ = make_longitudinal(
        "binomial",
        n_groups=20_000,
        n_waves=10,
        re_sd=1.0,
        slope_sd=0.3,
        re_corr=-0.3,
        random_state=20_000,
    )
    return df


def _poisson_million() -> pd.DataFrame:
    df, _ = make_longitudinal(
        "poisson", n_groups=100_000, n_waves=10, re_sd=0.5, random_state=100_000
    )
    return df


def _crossed() -> pd.DataFrame:
    """Subjects x items as tests/fixtures/make_fixtures.R's crossed_bin, drawn in numpy."""
    rng = np.random.default_rng(202)
    ns, ni = 300, 24
    u_s, u_i = rng.normal(0, 1.0, ns), rng.normal(0, 0.6, ni)
    xs, xi = rng.standard_normal(ns), rng.standard_normal(ni)
    subject = np.repeat(np.arange(ns), ni)
    item = np.tile(np.arange(ni), ns)
    eta = -0.2 + 0.5 * xs[subject] - 0.4 * xi[item] + u_s[subject] + u_i[item]
    return pd.DataFrame(
        {
            "subject": subject + 1,
            "item": item + 1,
            "xs": xs[subject],
            "xi": xi[item],
            "y": rng.binomial(1, expit(eta)),
        }
    )


def _verbagg() -> pd.DataFrame:
    return pd.read_csv(ROOT / "tests" / "fixtures" / "verbagg.csv")


def _app_logins() -> pd.DataFrame:
    return load_app_logins()


def _vegetables() -> pd.DataFrame:
    df, _ = make_vegetables(random_state=3)
    # R's treatment contrasts of y ~ trt * sex, as numeric columns every engine reads
    df["trt_treat"] = (df["trt"] == "treat").astype(int)
    df["sex_male"] = (df["sex"] == "male").astype(int)
    df["treat_x_male"] = df["trt_treat"] * df["sex_male"]
    return df


def _nested_three_levels() -> pd.DataFrame:
    """Repeated yes/no answers of students in classes in schools (fully nested labels)."""
    rng = np.random.default_rng(303)
    n_school, n_class, n_student, n_wave = 100, 20, 5, 4
    school = np.repeat(np.arange(n_school), n_class * n_student * n_wave)
    klass = np.repeat(np.arange(n_school * n_class), n_student * n_wave)
    student = np.repeat(np.arange(n_school * n_class * n_student), n_wave)
    x = rng.standard_normal(len(student))
    eta = (
        -0.3
        + 0.5 * x
        + rng.normal(0, 0.5, n_school)[school]
        + rng.normal(0, 0.7, n_school * n_class)[klass]
        + rng.normal(0, 1.0, n_school * n_class * n_student)[student]
    )
    return pd.DataFrame(
        {
            "school": school,
            "class": klass,
            "student": student,
            "x": x,
            "y": rng.binomial(1, expit(eta)),
        }
    )


def _crossed_large() -> pd.DataFrame:
    """1,000 subjects x 800 items, 40,000 of the pairs drawn at random."""
    rng = np.random.default_rng(404)
    n_subj, n_item, n = 1000, 800, 40_000
    subject, item = rng.integers(0, n_subj, n), rng.integers(0, n_item, n)
    x = rng.standard_normal(n)
    eta = 0.2 + 0.4 * x + rng.normal(0, 1.0, n_subj)[subject] + rng.normal(0, 0.7, n_item)[item]
    return pd.DataFrame(
        {"subject": subject, "item": item, "x": x, "y": rng.binomial(1, expit(eta))}
    )


def _recommender() -> pd.DataFrame:
    """6,040 users x 3,706 items, 1,000,000 of the pairs: MovieLens-1M's shape.

    Users' activity and items' popularity are log-normal (a user rates from about 20 to
    2,000 items, as in MovieLens-1M); every user has at least 20 rows and every item at
    least one; pairs are distinct.
    """
    rng = np.random.default_rng(1_000_000)
    n_user, n_item, n = 6040, 3706, 1_000_000
    pu = rng.lognormal(0.0, 1.0, n_user)
    pi = rng.lognormal(0.0, 1.3, n_item)
    pu, pi = pu / pu.sum(), pi / pi.sum()
    first = np.concatenate(
        [
            np.repeat(np.arange(n_user), 20) * n_item + rng.choice(n_item, 20 * n_user, p=pi),
            rng.choice(n_user, n_item, p=pu) * n_item + np.arange(n_item),
        ]
    )
    keys = np.unique(first)
    while len(keys) < n:
        m = int((n - len(keys)) * 1.3) + 1000
        more = rng.choice(n_user, m, p=pu) * n_item + rng.choice(n_item, m, p=pi)
        more = np.setdiff1d(more, keys)
        keys = np.concatenate([keys, rng.permutation(more)[: n - len(keys)]])
    keys = rng.permutation(keys)
    user, item = keys // n_item, keys % n_item
    x = rng.standard_normal(n)
    eta = -0.3 + 0.5 * x + rng.normal(0, 0.8, n_user)[user] + rng.normal(0, 0.6, n_item)[item]
    return pd.DataFrame({"user": user, "item": item, "x": x, "y": rng.binomial(1, expit(eta))})


def _insteval() -> pd.DataFrame:
    """lme4's ``InstEval`` (73,421 ratings; 2,972 students x 1,128 lecturers), the
    rating dichotomised at 4: read from R's lme4 once (it is R's data, not ours)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "insteval.csv"
        code = (
            "d <- lme4::InstEval; "
            "d$y <- as.integer(as.integer(as.character(d$y)) >= 4); "
            "d$service <- as.integer(d$service == '1'); "
            f"write.csv(d[, c('s', 'd', 'service', 'y')], '{out}', row.names = FALSE)"
        )
        subprocess.run(["Rscript", "-e", code], check=True, capture_output=True)
        return pd.read_csv(out)


def _negbin_slopes() -> pd.DataFrame:
    df, _ = make_longitudinal(
        "negbin",
        n_groups=300,
        n_waves=10,
        re_sd=0.8,
        slope_sd=0.15,
        re_corr=0.3,
        nb_theta=2.0,
        random_state=3_000,
    )
    return df


# ---- the workloads --------------------------------------------------------------------

_VERBAGG_X = ("Anger", "GenderM", "btypescold", "btypeshout", "situself")

_LIST = [
    Workload(
        name="bin_rs_200k",
        description="binary, correlated random intercept + slope, 20,000 people x 10 waves",
        make=_binary_slopes,
        family="binomial",
        y="y",
        X=("time", "treatment"),
        groups=("id",),
        random_effects="1 + time",
        r_calls={"lme4": "glmer(y ~ time + treatment + (time | id), data = d, family = binomial)"},
        large=True,
        issue={"lme4": 78.0},
        data_key="bin_rs_200k",
    ),
    Workload(
        name="bin_rs_200k_diag",
        description="the same rows, uncorrelated intercept + slope (GPBoost's model)",
        make=_binary_slopes,
        family="binomial",
        y="y",
        X=("time", "treatment"),
        groups=("id",),
        random_effects="diag(1 + time)",
        r_calls={"lme4": "glmer(y ~ time + treatment + (time || id), data = d, family = binomial)"},
        gpboost=GPBoostSpec("bernoulli_logit", slope="time"),
        large=True,
        issue={"gpboost": 6.9},
        data_key="bin_rs_200k",
    ),
    Workload(
        name="pois_ri_1m",
        description="Poisson, random intercept, 100,000 people x 10 waves",
        make=_poisson_million,
        family="poisson",
        y="y",
        X=("time", "treatment"),
        groups=("id",),
        random_effects="1",
        r_calls={"lme4": "glmer(y ~ time + treatment + (1 | id), data = d, family = poisson)"},
        gpboost=GPBoostSpec("poisson"),
        large=True,
        issue={"lme4": 129.0, "gpboost": 2.3},
    ),
    Workload(
        name="crossed_bin",
        description="binary, crossed random intercepts, 300 subjects x 24 items",
        make=_crossed,
        family="binomial",
        y="y",
        X=("xs", "xi"),
        groups=("subject", "item"),
        random_effects={"subject": "1", "item": "1"},
        r_calls={
            "lme4": "glmer(y ~ xs + xi + (1 | subject) + (1 | item), data = d, family = binomial)"
        },
        gpboost=GPBoostSpec("bernoulli_logit"),
    ),
    Workload(
        name="verbagg",
        description="lme4's VerbAgg: binary, crossed, 316 people x 24 items",
        make=_verbagg,
        family="binomial",
        y="r2",
        X=_VERBAGG_X,
        groups=("id", "item"),
        random_effects={"id": "1", "item": "1"},
        r_calls={
            "lme4": "glmer(r2 ~ Anger + GenderM + btypescold + btypeshout + situself"
            " + (1 | id) + (1 | item), data = d, family = binomial)"
        },
        gpboost=GPBoostSpec("bernoulli_logit"),
        issue={"lme4": 2.5, "gpboost": 0.24},
    ),
    Workload(
        name="app_logins",
        description="tutorial app logins: Poisson random intercept, 50 users x 30 days",
        make=_app_logins,
        family="poisson",
        y="logins",
        X=("day_centered",),
        groups=("user_id",),
        random_effects="1",
        r_calls={
            "lme4": "glmer(logins ~ day_centered + (1 | user_id), data = d, family = poisson)"
        },
        gpboost=GPBoostSpec("poisson"),
        issue={"lme4": 0.13, "gpboost": 0.006},
    ),
    Workload(
        name="vegetables",
        description="tutorial 003: binary, treatment x sex, 250 subjects x 14 days",
        make=_vegetables,
        family="binomial",
        y="y",
        X=("trt_treat", "sex_male", "treat_x_male"),
        groups=("id",),
        random_effects="1",
        r_calls={
            "lme4": "glmer(y ~ trt_treat + sex_male + treat_x_male + (1 | id), data = d,"
            " family = binomial)"
        },
        gpboost=GPBoostSpec("bernoulli_logit"),
        issue={"lme4": 0.38, "gpboost": 0.008},
    ),
    Workload(
        name="nested3_40k",
        description="binary, 4 waves of students in classes in schools (10,000 / 2,000 / 100)",
        make=_nested_three_levels,
        family="binomial",
        y="y",
        X=("x",),
        groups=("school", "class", "student"),
        random_effects={"school": "1", "class": "1", "student": "1"},
        r_calls={
            "lme4": "glmer(y ~ x + (1 | school) + (1 | class) + (1 | student), data = d,"
            " family = binomial)"
        },
        gpboost=GPBoostSpec("bernoulli_logit"),
    ),
    Workload(
        name="crossed_40k",
        description="binary, 1,000 subjects x 800 items, 40,000 random pairs",
        make=_crossed_large,
        family="binomial",
        y="y",
        X=("x",),
        groups=("subject", "item"),
        random_effects={"subject": "1", "item": "1"},
        r_calls={"lme4": "glmer(y ~ x + (1 | subject) + (1 | item), data = d, family = binomial)"},
        gpboost=GPBoostSpec("bernoulli_logit"),
        large=True,
    ),
    Workload(
        name="nb_rs_3k",
        description="NB2 counts, correlated random intercept + slope, 300 people x 10 waves",
        make=_negbin_slopes,
        family="negbin",
        y="y",
        X=("time", "treatment"),
        groups=("id",),
        random_effects="1 + time",
        r_calls={
            "glmmTMB": "glmmTMB(y ~ time + treatment + (time | id), data = d, family = nbinom2)",
            "glmer.nb": "glmer.nb(y ~ time + treatment + (time | id), data = d)",
        },
        issue={"glmmTMB": 2.9},
    ),
]

WORKLOADS: dict[str, Workload] = {w.name: w for w in _LIST}

# crossed designs with thousands of levels (benchmarks/run_crossed.py; issue 17)
_CROSSED_LIST = [
    Workload(
        name="recommender_1m",
        description="binary, 6,040 users x 3,706 items, 1,000,000 pairs (MovieLens-1M's shape)",
        make=_recommender,
        family="binomial",
        y="y",
        X=("x",),
        groups=("user", "item"),
        random_effects={"user": "1", "item": "1"},
        r_calls={"lme4": "glmer(y ~ x + (1 | user) + (1 | item), data = d, family = binomial)"},
        large=True,
    ),
    Workload(
        name="insteval_bin",
        description="lme4's InstEval, rating >= 4: 2,972 students x 1,128 lecturers crossed",
        make=_insteval,
        family="binomial",
        y="y",
        X=("service",),
        groups=("s", "d"),
        random_effects={"s": "1", "d": "1"},
        r_calls={"lme4": "glmer(y ~ service + (1 | s) + (1 | d), data = d, family = binomial)"},
        large=True,
    ),
]
CROSSED_WORKLOADS: dict[str, Workload] = {w.name: w for w in _CROSSED_LIST}
