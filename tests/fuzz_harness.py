"""The frame the fuzz modules against the truth share (``test_fuzz_truth*.py``).

- the tolerances and the warning classes their checks read;
- :class:`Outcome`, one data set's record, and the failure kinds it may be given
  (:func:`failure_kinds`, :data:`SANITY`); :func:`excuse_of`, the warning that excuses
  a fit short of its maximum;
- fitting a case (:func:`fit`, :func:`read_fit`, :func:`timed_check`), running many
  (:func:`run_cases`), the lines of their summaries, the slow tests' assertion
  (:func:`assert_only_known_failures`) and the command line (:func:`fuzz_command_line`,
  :func:`reproduction`);
- the pieces the seeded generators of data sets (``fuzz_*_cases.py``) draw alike:
  predictors, group codes and labels, group sizes, prior weights and offsets.

A case is a dict (see ``fuzz_cases.make_case``): ``X``, ``y``, ``groups``, ``estimator``,
``params``, ``fit_params``, ``seed``, ``scenario``, ``description`` and the keys of its
generator.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sklearn_glmm.exceptions import (
    ApproximationWarning,
    ConvergenceWarning,
    OverdispersionWarning,
    SingularFitWarning,
)

# -- tolerances and warnings ---------------------------------------------------------------

TOL_OPTIMUM = 0.01  # log-likelihood units: a better optimum or the nested GLM
TOL_INTEGRAL = 1e-3  # AGQ with >= 25 nodes against the brute-force integral
TOL_SAME_APPROX = 1e-4  # Laplace / AGQ against the independent Laplace / AGQ
# ... plus, against the dense Laplace, five rounding units of the log-likelihood's terms
# (their sum of magnitudes): counts of 1e10-1e12 make terms of 1e12-1e14 that cancel to a
# log-likelihood of 1e2-1e9, and two correct computations then differ by 1e-4-1e-2
ROUNDING = 1e-15
# A level whose curvature at its mode is below this fraction of the prior's has a nearly
# flat top: the Laplace value there moves with the mode's last digits (-log(H) / 2, H
# ~1e-4), so two correct computations differ by more than TOL_SAME_APPROX. Such a fit must
# say so (the library flags curvatures below 1e-3); its value is not compared.
FLAT_LAPLACE = 1e-3
# A fit that warns (not clean) is not compared below this curvature either: a density
# flat to fourth order has a mode that two correct searches place apart. In fuzz data set
# 901 (zero-inflated Poisson) one level's log-density was within 3e-8 of its top over
# 0.05 prior SDs, its slope below 1e-10 at both engines' modes, where the curvature moves
# from 0.0020 to 0.0022 and the Laplace value by 0.037; the fit says so (a
# ConvergenceWarning naming the level, whose curvature it gives).
FLAT_LAPLACE_WARNED = 1e-2
# Standard errors: the reported ones against those of the Hessian of the independent
# objective by extrapolated differences (truth.fixed_effect_standard_errors), compared
# where that computation's own error estimate (truncation and rounding, a bound rather
# than a guess: median 1.4e-5 in seeds 0-599, where the two agree to a median of 1e-8)
# is below SE_NUMERICAL. A wrong closed form (a missing term, the Hessian of another
# approximation, a coupling left out) moves SEs by percents; the library's Hessian by
# differences of its gradient (zero-inflated fits) by 1e-4 at most in those seeds:
# TOL_SE in between, twice SE_NUMERICAL.
TOL_SE = 1e-3
SE_NUMERICAL = 5e-4
SE_MIN_SIGMA = 1e-3  # a random-effect SD below this is at (or next to) its bound 0
EXACT_NODES = 25  # AGQ rules checked against the integral itself (test_fuzz_truth's notes)
DOCUMENTED = (ValueError, FloatingPointError)
# warnings about arithmetic or APIs, not about the fit: they do not excuse a wrong fit
NOT_ABOUT_THE_FIT = (RuntimeWarning, DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# warnings about the model, not the optimisation: a converged fit that gives them still
# claims to be at its optimum (a singular fit is a maximum on the boundary; a Laplace fit
# far from quadrature's is still the Laplace objective's maximum)
ABOUT_THE_MODEL = (SingularFitWarning, OverdispersionWarning, ApproximationWarning)
LOWER_BOUND = "lower bound"  # the words of a warning that loglik_ is a lower bound


# -- failure kinds and the outcome of one data set ----------------------------------------

# the failure kinds of the sanity checks: one check, "sanity", in the tables (those of
# every module first in its table)
SANITY_FIRST = ("crash", "nonfinite", "absurd", "se_zero", "se_nan")
SANITY = (*SANITY_FIRST, "flat_unwarned")
# the failure kinds several modules give, with their meaning there
KINDS = {
    "crash": "an exception other than ValueError / FloatingPointError",
    "nonfinite": "NaN or infinite estimate or loglik_ without a warning",
    "absurd": "|coef| x SD(x), eta at the means or the random-effect SD > 1e6 without a warning",
    "se_zero": "a standard error of exactly 0",
    "se_nan": "a NaN standard error without a warning",
    "loglik_value": "loglik_ != independent Laplace / AGQ at the fitted parameters (> 1e-4)",
    "flat_unwarned": "a level's curvature at its mode < 1e-3 of the prior's, without a warning",
    "loglik_vs_integral": "AGQ >= 25 nodes: loglik_ != brute-force integral (> 1e-3)",
    "not_optimal": "claims its optimum, yet a better one nearby (> 0.01)",
    "below_glm": "claims its optimum, yet below the nested GLM (> 0.01)",
    "se_value": "a fixed effect's std_error != that of the independent Hessian (> 1e-3 rel.)",
}


def failure_kinds(*kinds) -> dict:
    """A module's failure kinds, in the order of its table: each a name of :data:`KINDS`
    or a pair ``(name, meaning)`` of the module's own."""
    return dict(k if isinstance(k, tuple) else (k, KINDS[k]) for k in kinds)


def check_of(kind: str) -> str:
    """The check a failure kind belongs to (the sanity kinds' is ``"sanity"``)."""
    return "sanity" if kind in SANITY else kind


@dataclass
class Outcome:
    """What one data set gave: its status, the failed checks and the numbers behind them."""

    seed: int
    description: str
    scenario: str
    family: str = ""
    model: str = ""  # the model's short name, in the modules that table by model
    status: str = "fitted"  # "fitted", "raised" (a documented error), "crashed"
    checkable: bool = False  # one factor with a scalar random intercept (test_fuzz_truth)
    clean: bool = False  # converged_ and no warning about the fit
    # converged_, and no warning but that the fit is singular or the data overdispersed
    # (statements about the model: the fit still claims its optimum)
    claims_optimum: bool = False
    excuse: str = ""  # the warning that excuses a better optimum (excuse_of), if any
    warnings: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (kind, detail)
    numbers: dict = field(default_factory=dict)
    # the standard errors: "compared", "skipped: <why>", or "" (not compared)
    se_check: str = ""
    checked: set = field(default_factory=set)  # the checks run
    seconds: float = 0.0
    generator: str = ""  # the generator of the data set, in modules with more than one
    kinds: dict = field(default_factory=dict, repr=False, compare=False)  # FAILURE_KINDS

    @classmethod
    def of(cls, case, kinds, **fields):
        """The outcome of ``case`` before its checks, its failures of ``kinds``."""
        return cls(case["seed"], case["description"], case["scenario"], kinds=kinds, **fields)

    def fail(self, kind, detail):
        assert kind in self.kinds, kind
        self.failures.append((kind, detail))


def excuse_of(caught) -> str:
    """The warning that says a fit may be short of its maximum: a ``ConvergenceWarning``,
    or one saying the log-likelihood is a lower bound ("" if none)."""
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            return "ConvergenceWarning"
    for w in caught:
        if LOWER_BOUND in str(w.message):
            return f"{w.category.__name__} (a lower bound)"
    return ""


def covariance_skip_reason(covs) -> str:
    """Why standard errors at covariance matrices ``covs`` are not compared: an SD at
    (or next to) its bound 0, or a correlation matrix nearly singular ("" if neither)."""
    for cov in covs:
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        if not np.min(sd) > SE_MIN_SIGMA:
            return f"an SD below {SE_MIN_SIGMA:g}"
        R = cov / np.outer(sd, sd)
        if not np.min(np.linalg.eigvalsh(R)) > 1e-3:
            return "a correlation matrix nearly singular"
    return ""


# -- fitting and checking ------------------------------------------------------------------


def fit(case):
    """The fitted estimator (or the exception raised) and the warnings of ``fit``."""
    est = case["estimator"](**case["params"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(case["X"], case["y"], groups=case["groups"], **case["fit_params"])
        except Exception as exc:  # noqa: BLE001 - sorted into documented / crash below
            return exc, caught
    return est, caught


def read_fit(out, m, caught):
    """The start of every fuzz module's ``check_fit``: the warnings ``caught``; where
    ``fit`` raised ``m``, the status (a crash a failure) and None; otherwise
    ``out.clean``, ``out.claims_optimum``, ``loglik_`` and ``converged_`` recorded, and
    whether the fit warned of anything about the fit. The sanity check counts as run."""
    out.warnings = sorted({w.category.__name__ for w in caught})
    out.checked.add("sanity")
    if isinstance(m, Exception):
        out.status = "raised" if isinstance(m, DOCUMENTED) else "crashed"
        if out.status == "crashed":
            out.fail("crash", f"{type(m).__name__}: {m}")
        out.numbers["error"] = f"{type(m).__name__}: {m}"
        return None
    warned = any(not issubclass(w.category, NOT_ABOUT_THE_FIT) for w in caught)
    out.clean = bool(m.converged_) and not warned
    out.claims_optimum = bool(m.converged_) and not any(
        not issubclass(w.category, NOT_ABOUT_THE_FIT + ABOUT_THE_MODEL) for w in caught
    )
    out.numbers.update(loglik_=m.loglik_, converged_=m.converged_)
    return warned


def timed_check(make_case, check_fit, generator: str = "") -> Outcome:
    """A fuzz module's ``check_case``: the data set made, fitted and checked, with the
    seconds it took (and the name of its ``generator``, if given) in the outcome
    (``make_case()`` the case, ``check_fit`` the module's checks)."""
    t0 = time.perf_counter()
    case = make_case()
    m, caught = fit(case)
    out = check_fit(case, m, caught)
    if generator:
        out.generator = generator
    out.seconds = time.perf_counter() - t0
    return out


def run_cases(check, seeds, *args) -> list[Outcome]:
    """``check(seed, *args)`` of every seed."""
    return [check(int(s), *args) for s in seeds]


def clean_fit(case, check_fit, summary, se_compared: bool = True):
    """``case``, its fit and warnings, asserted to pass every check converged without a
    warning (and with its standard errors compared, if ``se_compared``)."""
    m, caught = fit(case)
    out = check_fit(case, m, caught)
    compared = out.se_check == "compared" or not se_compared
    assert out.clean and not out.failures and compared, summary([out])
    return case, m, caught


def failed_kinds(check_fit, case, m, caught) -> set:
    """The failure kinds ``check_fit`` gives the fit ``m``."""
    return {k for k, _ in check_fit(case, m, caught).failures}


# -- the summaries ----------------------------------------------------------------------------


def summary_header(title: str, outcomes, per_100: bool = True) -> str:
    """A fuzz summary's first line: the data sets, their seeds and the seconds taken."""
    n = len(outcomes)
    seconds = sum(o.seconds for o in outcomes)
    seeds = [o.seed for o in outcomes]
    line = f"{title}: {n} data sets (seeds {min(seeds)}-{max(seeds)}), {seconds:.1f} s"
    return line + (f" ({100 * seconds / max(n, 1):.1f} s per 100)" if per_100 else "")


def status_counts(outcomes) -> str:
    """The data sets fitted, raised a documented error and crashed."""
    status = Counter(o.status for o in outcomes)
    return (
        f"fitted {status['fitted']}, raised a documented error {status['raised']}, "
        f"crashed {status['crashed']}"
    )


def checks_line(outcomes, checks) -> str:
    """The summary's line of each check's fits passed / failed."""
    cells = []
    for check in checks:
        ran = sum(check in o.checked for o in outcomes)
        failed = sum(any(check_of(k) == check for k, _ in o.failures) for o in outcomes)
        cells.append(f"{check} {ran - failed}/{failed}")
    return "    checks passed/failed: " + ", ".join(cells)


def by_scenario_line(outcomes, indent: str = "  ") -> str:
    """The summary's line of data sets and those with a failure, by scenario."""
    by_scenario = defaultdict(lambda: [0, 0])
    for o in outcomes:
        by_scenario[o.scenario][0] += 1
        by_scenario[o.scenario][1] += bool(o.failures)
    return f"{indent}by scenario (data sets / with a failure): " + ", ".join(
        f"{k} {v[0]}/{v[1]}" for k, v in sorted(by_scenario.items())
    )


def failure_table(outcomes, kinds, max_seeds: int) -> list[str]:
    """The summary's lines of failures by kind (with example seeds) and their count."""
    lines = [f"  {'failure kind':<20} {'count':>5}  example seeds"]
    by_kind = defaultdict(list)
    for o in outcomes:
        for kind in dict.fromkeys(k for k, _ in o.failures):
            by_kind[kind].append(o.seed)
    for kind in kinds:
        s = by_kind.get(kind, [])
        lines.append(f"  {kind:<20} {len(s):>5}  {', '.join(map(str, s[:max_seeds]))}")
    lines.append(f"  data sets with a failure: {sum(bool(o.failures) for o in outcomes)}")
    return lines


def failed_lines(outcomes, reproduce) -> list[str]:
    """The summary's line of each failing data set (the first 40): its kinds and the
    command that reproduces it (``reproduce(o)``)."""
    lines = []
    for o in [o for o in outcomes if o.failures][:40]:
        kinds = ",".join(dict.fromkeys(k for k, _ in o.failures))
        lines.append(f"  seed {o.seed} [{kinds}] {o.description}: {reproduce(o)}")
    return lines


def se_summary(outcomes, family_parameter: str = "theta") -> str:
    """The summary's line of the standard errors compared (the family's parameter named
    as ``family_parameter``)."""
    compared = [o for o in outcomes if o.se_check == "compared"]
    n_se = sum(len(o.numbers["se_rel_diff"]) for o in compared)
    seconds = sum(o.numbers.get("se_truth_seconds", 0.0) for o in outcomes)
    line = f"  standard errors compared: {len(compared)} fits ({n_se} SEs, {seconds:.1f} s)"
    if compared:
        worst = max(compared, key=lambda o: np.max(np.abs(o.numbers["se_rel_diff"])))
        line += (
            f", largest relative difference {np.max(np.abs(worst.numbers['se_rel_diff'])):.1e}"
            f" (seed {worst.seed}), largest error estimate "
            f"{max(o.numbers['se_truth_error'] for o in compared):.1e}"
        )
    variance = [
        (abs(v), o.seed, k[len("se_rel_diff ") :])
        for o in compared
        for k, v in o.numbers.items()
        if k.startswith("se_rel_diff ")
    ]
    if variance:
        worst_v = max(variance)
        line += (
            f"; Wald SEs of SD / {family_parameter} / ZI compared: {len(variance)}, largest "
            "relative "
            f"difference {worst_v[0]:.1e} ({worst_v[2]}, seed {worst_v[1]})"
        )
    skipped = Counter(
        o.se_check[len("skipped: ") :] for o in outcomes if o.se_check.startswith("skipped")
    )
    line += f"; skipped {sum(skipped.values())}"
    if skipped:
        line += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) + ")"
    return line


def print_summary(outcomes, capsys, summary) -> str:
    """``summary(outcomes)`` printed past pytest's capture (the tests' table)."""
    text = summary(outcomes)
    with capsys.disabled():
        print("\n" + text)
    return text


def assert_only_known_failures(outcomes, known_open, capsys, summary) -> None:
    """A slow test's end: the table printed, and every data set passes or is listed in
    ``known_open`` (seed -> reason)."""
    text = print_summary(outcomes, capsys, summary)
    failed = {o.seed for o in outcomes if o.failures}
    assert not failed - set(known_open), text


def slow_seeds(prefix: str, default: int, start: bool = True) -> range:
    """The slow test's seeds: ``<prefix>_CASES`` of them (``default``) from
    ``<prefix>_START`` (0; read only with ``start``)."""
    n = int(os.environ.get(f"{prefix}_CASES", str(default)))
    first = int(os.environ.get(f"{prefix}_START", "0")) if start else 0
    return range(first, first + n)


# -- the command line -------------------------------------------------------------------------


def reproduction(module: str, seed: int, generator: str = "", default: str = "") -> str:
    """The command that prints one data set of ``tests/<module>.py`` (its ``generator``
    named by a flag unless it is the ``default``)."""
    flag = "" if generator in ("", default) else f"--{generator} "
    return f"PYTHONPATH=. python tests/{module}.py {flag}{seed}"


def pick_generator(argv, generators, default: str):
    """``(generator, argv)``: ``--<name>`` first in ``argv`` picks the generator of that
    name in ``generators`` (else ``default``)."""
    if argv[:1] and argv[0].startswith("--") and argv[0][2:] in generators:
        return argv[0][2:], argv[1:]
    return default, argv


def print_outcome(o) -> None:
    """One data set's numbers, standard-error line and failures (or that every check
    passed), as the fuzz modules' command lines print them."""
    for k, v in o.numbers.items():
        print(f"  {k}: {v}")
    if o.se_check:
        print(f"  standard errors: {o.se_check}")
    for kind, detail in o.failures:
        print(f"  FAIL {kind}: {detail}")
    if not o.failures:
        print("  every check passed")


def print_case(seed, o, case, checkable: bool = False) -> None:
    """A data set of a fuzz module's command line: its description, model, status and
    :func:`print_outcome`'s lines (``case`` the generator's dict, ``o`` its outcome). The
    status line names whether the data set is ``checkable`` by brute force in place of
    the seconds taken, if asked."""
    print(f"seed {seed}: {o.description}")
    print(
        f"  estimator {case['estimator'].__name__}({case['params']}), "
        f"fit {list(case['fit_params'])}"
    )
    if checkable:
        print(
            f"  status {o.status}, checkable {o.checkable}, clean {o.clean}, warnings {o.warnings}"
        )
    else:
        print(f"  status {o.status}, clean {o.clean}, warnings {o.warnings}, {o.seconds:.1f} s")
    print_outcome(o)


def fuzz_command_line(
    argv, check, make, summary, progress: bool = True, checkable: bool = False
) -> int:
    """A fuzz module's command line: ``SEED [SEED ...]`` prints each data set
    (:func:`print_case`; ``check(seed)`` its outcome, ``make(seed)`` its case), ``--range
    START STOP`` (with ``progress``, a line per data set as it is checked) and then
    ``summary``'s table (exit status 1 when a check failed)."""
    if argv[:1] == ["--range"]:
        outcomes = []
        for seed in range(int(argv[1]), int(argv[2])):
            o = check(seed)
            if progress:
                kinds = ",".join(dict.fromkeys(k for k, _ in o.failures)) or "ok"
                line = f"seed {seed} {o.seconds:.1f}s {o.status} clean={o.clean} {kinds}"
                print(f"{line} {o.description}", flush=True)
            outcomes.append(o)
        print(summary(outcomes, max_seeds=12))
        return 1 if any(o.failures for o in outcomes) else 0
    for seed in map(int, argv):
        print_case(seed, check(seed), make(seed), checkable)
    return 0


# -- the generators of data sets ------------------------------------------------------------

CALENDAR_DAY = 19_000.0  # days since 1970 around 2022
RAW_KINDS = ["calendar", "times_1e6", "uncentred"]  # raw-scale predictors


def predictor(rng, n, kind):
    """A predictor column and its (centre, scale) to put effects on a unit scale."""
    if kind == "normal":
        x = rng.normal(size=n)
    elif kind == "binary":
        x = rng.integers(0, 2, n).astype(float)
        if x.min() == x.max():
            x[0] = 1.0 - x[0]
    elif kind == "calendar":  # days, uncentred
        x = CALENDAR_DAY + np.sort(rng.uniform(0.0, rng.choice([30.0, 365.0, 1500.0]), n))
    elif kind == "times_1e6":
        x = rng.normal(size=n) * 1e6
    elif kind == "uncentred":
        x = rng.choice([50.0, 1000.0]) + rng.normal(size=n) * rng.choice([0.5, 5.0])
    elif kind == "skewed":
        x = rng.exponential(size=n) ** 2
    else:
        raise AssertionError(kind)
    sd = x.std()
    return x, float(x.mean()), float(sd if sd > 0 else 1.0)


def predictor_kinds(rng, p_max: int, raw_scale: bool, p_raw: float) -> list:
    """The kinds of 1 to ``p_max - 1`` predictors (normal, binary or skewed), the first
    a raw-scale one for a ``raw_scale`` scenario or with probability ``p_raw``."""
    p = int(rng.integers(1, p_max))
    kinds = list(rng.choice(["normal", "binary", "skewed"], size=p))
    if raw_scale or rng.random() < p_raw:
        kinds[0] = str(rng.choice(RAW_KINDS))
    return kinds


def predictor_columns(rng, n, kinds, notes):
    """The predictors ``x0, x1, ...`` of ``kinds`` (a dict of columns) and their
    standardised values; their kinds added to ``notes``."""
    cols, std_cols = {}, []
    for k, kind in enumerate(kinds):
        x, m, s = predictor(rng, n, kind)
        cols[f"x{k}"] = x
        std_cols.append((x - m) / s)
    notes.append("X=" + ",".join(kinds))
    return cols, std_cols


def zero_part_predictor(rng, n, cols, notes, x0_usable: bool, p_x0: float):
    """The predictor of a zero part or a dispersion model, ``(name, values)``: ``x0``
    (where ``x0_usable``, with probability ``p_x0``) or a column ``z`` of its own (normal
    or binary) added to ``cols``; noted in ``notes``."""
    if x0_usable and rng.random() < p_x0:
        z_name, z = "x0", cols["x0"]
    else:
        z_name = "z"
        z = rng.normal(size=n) if rng.random() < 0.7 else rng.integers(0, 2, n).astype(float)
        if z.min() == z.max():
            z[0] = 1.0 - z[0]
        cols["z"] = z
    notes.append(f"zero/disp predictor {z_name}")
    return z_name, z


def group_sizes(rng, scenario, rows, n_groups, few_groups_rows, few_groups=(2, 5)):
    """Rows and groups drawn in the ranges ``rows`` and ``n_groups``: 10-30 rows in
    fewer groups for a ``tiny`` scenario, ``few_groups`` groups on ``few_groups_rows``
    rows for ``few_groups``."""
    n = int(rng.integers(*rows))
    g = int(rng.integers(*n_groups))
    if scenario == "tiny":
        n = int(rng.integers(10, 31))
        g = int(rng.integers(2, max(3, n // 3)))
    elif scenario == "few_groups":
        g = int(rng.integers(*few_groups))
        n = int(rng.integers(*few_groups_rows))
    return n, g


def group_codes(rng, n, n_groups, balanced):
    """Each row's group, every group present: balanced, or of sizes from similar to very
    unequal."""
    if balanced:
        codes = np.arange(n) % n_groups
    else:
        # sizes from similar to very unequal (a few large groups, many of one or two rows)
        sizes = rng.dirichlet(np.full(n_groups, rng.choice([0.3, 1.5])))
        codes = rng.choice(n_groups, size=n, p=sizes)
        codes[:n_groups] = np.arange(n_groups)  # every level present
    return rng.permutation(codes)


def group_labels(rng, codes, prefix):
    """The groups as labels ``<prefix>NNN`` or shifted integers, a Series named ``prefix``."""
    if rng.random() < 0.3:
        return pd.Series([f"{prefix}{c:03d}" for c in codes], name=prefix)
    return pd.Series(codes + int(rng.integers(0, 1000)), name=prefix)


def add_weights(rng, n, fit_params, notes, p, keep=None, values=(0.5, 1.0, 2.0, 3.0)):
    """Prior weights with probability ``p``: ``values`` at random, in three data sets of
    ten a tenth of the rows at 0 unless ``keep`` is None, the rows ``keep`` at 1; put in
    ``fit_params`` and ``notes``."""
    if not rng.random() < p:
        return
    w = rng.choice(values, size=n)
    if keep is not None:
        if rng.random() < 0.3:
            w[rng.integers(0, n, max(1, n // 10))] = 0.0
        w[keep] = 1.0
    fit_params["sample_weight"] = w
    notes.append("weights")


def log_exposures(rng, n, powers=None):
    """An offset of log exposures (0.5-3, times ten to a power of ``powers``)."""
    if powers is None:
        return np.log(rng.uniform(0.5, 3.0, n))
    return np.log(rng.uniform(0.5, 3.0, n) * 10 ** rng.choice(powers))


def add_offset(eta, off, fit_params, notes, centred: bool = False):
    """``eta`` with the offset ``off`` (its mean taken off first if ``centred``: log
    exposures about the data's mean), put in ``fit_params`` and ``notes``."""
    if centred:
        eta = eta - float(np.mean(off))
    fit_params["offset"] = off
    notes.append("offset")
    return eta + off


def beta_binomial_probabilities(rng, mu, phi):
    """Each row's success probability for a beta-binomial draw with mean ``mu`` and
    dispersion ``phi`` (the binomial's ``mu`` itself where ``phi`` is infinite)."""
    if np.isinf(phi):
        return mu
    return rng.beta(np.maximum(mu * phi, 1e-300), np.maximum((1.0 - mu) * phi, 1e-300))
