r"""Power and sample size by simulation (R's ``simr``).

For each design in a grid of numbers of groups (people) and observations per
group (waves), :func:`power_curve` simulates ``n_sim`` data sets from a model,
refits the model to each and tests one fixed effect; the power is the proportion
of studies in which the test rejects at level ``alpha``, reported with a
Monte Carlo confidence interval (Clopper-Pearson or Wilson).

The model is either a fitted estimator (its estimates are the truth, as simr's
``powerSim(fit)``) or a :class:`GLMMSpec` written down from assumptions, and
its ``effect`` on the tested coefficient can be set to the effect to detect
(e.g. ``np.log(0.6)`` for an odds ratio of 0.6). Data come from a design
function ``design(n_groups, n_per_group, rng) -> (X, groups)``:
:func:`longitudinal_design` (waves ``time = 0, 1, ...`` and a two-arm
``treatment``) by default, or :func:`resample_design` over existing data.

A refit that fails, or gives no p-value for the tested coefficient (an aliased
column, no standard error), is counted in ``n_failed`` and left out of the
power's denominator, with a warning; non-converged and singular refits are kept
and counted.

Example
-------
>>> import numpy as np
>>> from sklearn_glmm import BinomialGLMM
>>> from sklearn_glmm.power import GLMMSpec, power_curve
>>> spec = GLMMSpec(
...     BinomialGLMM(random_effects="1"),
...     fixed_effects={"(Intercept)": -0.5, "time": -0.2, "treatment": np.log(0.6)},
...     random_cov=1.0,  # random-intercept SD on the logit scale
... )
>>> pc = power_curve(spec, "treatment", n_groups=[40, 80], n_per_group=4, n_sim=20,
...                  random_state=0)
>>> list(pc.columns[:4])
['n_groups', 'n_per_group', 'power', 'lower']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._config import with_config
from ._design import INTERCEPT
from ._power_sim import run_chunk
from ._power_spec import GLMMSpec, longitudinal_design, resample_design
from ._progress import Progress
from ._validation import check_level, check_positive_count
from ._warn import warn
from .exceptions import PowerSimulationWarning

__all__ = [
    "GLMMSpec",
    "longitudinal_design",
    "power_curve",
    "power_interval",
    "resample_design",
    "sample_size",
]

_METHODS = ("wald", "lrt")
_INTERVALS = ("clopper-pearson", "wilson")


def power_interval(
    k, n, level: float = 0.95, method: str = "clopper-pearson"
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval for a proportion ``k / n`` (Clopper-Pearson or Wilson).

    Returns ``(lower, upper)`` arrays; NaN where ``n`` is 0.
    """
    if method not in _INTERVALS:
        raise ValueError(f"interval must be one of {_INTERVALS}, got {method!r}.")
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    a = 1.0 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "clopper-pearson":
            lo = np.where(k > 0, stats.beta.ppf(a / 2, k, n - k + 1), 0.0)
            hi = np.where(k < n, stats.beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
        else:
            z = stats.norm.ppf(1 - a / 2)
            p = k / n
            centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
            half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
            lo, hi = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _as_spec(model, trials) -> GLMMSpec:
    if isinstance(model, GLMMSpec):
        return model
    if hasattr(model, "coef_") and hasattr(model, "fit_result_"):
        return GLMMSpec.from_fitted(model, trials=trials)
    raise TypeError(
        "model must be a fitted BinomialGLMM / PoissonGLMM / NegBinGLMM or a GLMMSpec, "
        f"got {type(model).__name__}."
    )


def _grid(values, name, allow_none=False) -> list:
    seq = (
        values
        if isinstance(values, (Sequence, np.ndarray)) and not isinstance(values, str)
        else [values]
    )
    out = []
    for v in seq:
        if v is None and allow_none:
            out.append(None)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1:
            out.append(int(v))
        else:
            raise ValueError(f"{name} must hold positive integers, got {v!r}.")
    if not out:
        raise ValueError(f"{name} is empty: give at least one value.")
    return out


def _check_test(spec, test, method) -> list[str]:
    """The tested coefficients as a list, checked against the model and the method."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    tests = [test] if isinstance(test, str) or not isinstance(test, Iterable) else list(test)
    if not tests or not all(isinstance(t, str) for t in tests) or len(set(tests)) < len(tests):
        raise ValueError(
            f"test must name a fixed effect or a list of distinct fixed effects, got {test!r}."
        )
    unknown = [t for t in tests if t not in spec.fixed_effects]
    if unknown:
        raise ValueError(
            f"test names {unknown}, which are not among the model's fixed effects "
            f"{list(spec.fixed_effects)}."
        )
    if method == "lrt":
        term = spec.term
        if INTERCEPT in tests:
            raise ValueError("method='lrt' cannot test the intercept; use method='wald'.")
        slopes = [t for t in tests if term is not None and t in term.slopes]
        if slopes:
            raise ValueError(
                f"method='lrt' drops {slopes} from the fixed effects, but they are also random "
                "slopes; use method='wald'."
            )
    return tests


def _with_effect(spec, tests, effect):
    if effect is None:
        return spec
    if isinstance(effect, dict):
        if set(effect) != set(tests):
            raise ValueError(
                f"effect as a dict gives the true value of every tested coefficient: expected "
                f"keys {tests}, got {sorted(effect)}."
            )
        values = effect
    elif len(tests) == 1 and np.ndim(effect) == 0:
        values = {tests[0]: effect}
    else:
        raise ValueError(
            f"effect must be a number for one tested coefficient, or a dict {{name: value}} "
            f"for {tests}; got {effect!r}."
        )
    for name, value in values.items():
        if not np.isfinite(float(value)):
            raise ValueError(f"effect of {name!r} must be finite, got {value!r}.")
        spec = spec.with_effect(name, float(value))
    return spec


def _tasks(cells, n_sim, random_state):
    from ._simulate import _rng

    root = np.random.SeedSequence(int(_rng(random_state).integers(0, 2**63 - 1)))
    tasks = []
    for c, (g, k) in enumerate(cells):
        for s in range(n_sim):
            seed = np.random.SeedSequence(root.entropy, spawn_key=(c, s))
            tasks.append((c, g, k, seed))
    return tasks


_CHUNK = 25


def _run(spec, test, method, design, tasks, n_jobs, progress):
    """Every study's outcome, in the order of ``tasks``."""
    # at least four chunks (work for parallel workers, steps of the progress bar), of at
    # most 25 studies (a batch of refits); fixed, so that the results do not depend on
    # n_jobs (studies on the same rows within a chunk are refitted together)
    size = max(1, min(_CHUNK, len(tasks) // 4))
    chunks = [tasks[i : i + size] for i in range(0, len(tasks), size)]
    bar = Progress(len(tasks), bool(progress), desc="power")
    results = []
    try:
        if n_jobs in (None, 1):
            for ch in chunks:
                results += run_chunk(spec, test, method, design, ch)
                bar.update(len(ch))
        else:
            from joblib import Parallel, delayed

            gen = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(with_config(run_chunk))(spec, test, method, design, ch) for ch in chunks
            )
            for ch, r in zip(chunks, gen):
                results += r
                bar.update(len(ch))
    finally:
        bar.close()
    return results


def _summarise(cells, results, n_sim, alpha, level, interval):
    rows, failures = [], []
    for c, (g, k) in enumerate(cells):
        outs = [o for cc, o in results if cc == c]
        ok = [o for o in outs if o.error is None]
        failures += [o.error for o in outs if o.error is not None]
        rej = sum(o.p_value < alpha for o in ok)
        est = np.array([o.estimate for o in ok])
        se = np.array([o.std_error for o in ok])
        rows.append(
            {
                "n_groups": g,
                "n_per_group": k,
                "power": rej / len(ok) if ok else np.nan,
                "n_rejected": rej,
                "n_tested": len(ok),
                "n_failed": len(outs) - len(ok),
                "n_nonconverged": sum(not o.converged for o in ok),
                "n_singular": sum(o.singular for o in ok),
                "n_sim": n_sim,
                "n_obs": float(np.mean([o.n_obs for o in outs])),
                "mean_estimate": float(est.mean()) if ok else np.nan,
                # a likelihood-ratio test can stand where a refit has no standard error
                "mean_std_error": float(se[np.isfinite(se)].mean())
                if np.isfinite(se).any()
                else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    lo, hi = power_interval(table["n_rejected"], table["n_tested"], level, interval)
    table.insert(3, "lower", lo)
    table.insert(4, "upper", hi)
    return table, failures


def power_curve(
    model,
    test,
    *,
    n_groups=(25, 50, 100),
    n_per_group=5,
    design: Callable | None = None,
    effect: float | None = None,
    method: str = "wald",
    alpha: float = 0.05,
    n_sim: int = 200,
    level: float = 0.95,
    interval: str = "clopper-pearson",
    trials: int | None = None,
    random_state=None,
    n_jobs: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Power to detect a fixed effect over a grid of designs, by simulation.

    Parameters
    ----------
    model : fitted estimator or GLMMSpec
        The model data are drawn from. A fitted model (one grouping factor) gives
        its estimates (:meth:`GLMMSpec.from_fitted`); its column names must be those
        of the design.
    test : str or list of str
        The fixed effect to test (a column name, or ``"(Intercept)"``), or several
        tested jointly (the dummy columns of a factor, say): a Wald chi-square test
        with ``len(test)`` degrees of freedom from the refit's covariance of the
        fixed effects, or the likelihood-ratio test dropping them all.
    n_groups : int or sequence of int, default=(25, 50, 100)
        Numbers of groups (people) to try.
    n_per_group : int, sequence of int or None, default=5
        Observations (waves) per group to try; None keeps the groups' own rows
        (with :func:`resample_design`).
    design : callable, default=None
        ``design(n_groups, n_per_group, rng) -> (X, groups)``: the rows of one
        simulated study, ``X`` a DataFrame holding the model's columns. Default:
        :func:`longitudinal_design` (columns ``time`` and ``treatment``).
    effect : float or dict of str to float, default=None
        True value of the tested coefficient on the link scale (e.g.
        ``np.log(0.6)``), or of each tested coefficient (a dict); None keeps the
        model's. ``effect=0`` estimates the type I error rate.
    method : {"wald", "lrt"}, default="wald"
        Wald z test of the refitted coefficient, or the likelihood-ratio test
        against the refit without it (two fits per study).
    alpha : float, default=0.05
        Significance level of the test.
    n_sim : int, default=200
        Simulated studies per design. The Monte Carlo standard error of a power
        near 0.8 is ``sqrt(0.8 * 0.2 / n_sim)``: 0.028 for 200 studies.
    level : float, default=0.95
        Coverage of the Monte Carlo interval of the power.
    interval : {"clopper-pearson", "wilson"}, default="clopper-pearson"
    trials : int, default=None
        Binomial trials per row when ``model`` is a fitted estimator (None: 1, which a
        model fitted with several trials per row refuses: its estimates are per trial).
    random_state : int, numpy.random.Generator or None, default=None
        Seed; with the same seed the results do not depend on ``n_jobs``.
    n_jobs : int, default=None
        Parallel workers (joblib); None or 1 runs in this process.
    progress : bool, default=False
        Show a progress bar (tqdm's if installed, else a line on stderr).

    Returns
    -------
    table : pandas.DataFrame
        One row per design: ``n_groups``, ``n_per_group``, ``power``, ``lower``,
        ``upper`` (the Monte Carlo interval), ``n_rejected``, ``n_tested``,
        ``n_failed`` (refits without a test, left out of the power),
        ``n_nonconverged`` and ``n_singular`` (kept), ``n_sim``, ``n_obs`` (mean
        rows per study), ``mean_estimate`` and ``mean_std_error`` of the tested
        coefficient (NaN for a joint test). ``table.attrs`` records the test,
        effect (link scale; ``effects``: a dict of all tested ones), the
        link's ratio name (``"odds ratio"``, ...), method, alpha, level,
        interval, the failures' messages, the elapsed ``seconds`` and the
        ``refits_per_second``.
    """
    spec = _as_spec(model, trials)
    tests = _check_test(spec, test, method)
    spec = _with_effect(spec, tests, effect)
    alpha = check_level(alpha, "alpha", "0.05 for 5 %")
    level = check_level(level)
    n_sim = check_positive_count(n_sim, "n_sim")
    if interval not in _INTERVALS:
        raise ValueError(f"interval must be one of {_INTERVALS}, got {interval!r}.")
    if design is None:
        extra = sorted(set(spec.features) - {"time", "treatment"})
        if extra:
            raise ValueError(
                f"the default design has the columns 'time' and 'treatment' only, but the "
                f"model also needs {extra}: pass design=... (e.g. resample_design(X, groups))."
            )
        design = longitudinal_design
    cells = [
        (g, k)
        for k in _grid(n_per_group, "n_per_group", allow_none=True)
        for g in _grid(n_groups, "n_groups")
    ]
    tasks = _tasks(cells, int(n_sim), random_state)
    start = time.perf_counter()
    results = _run(spec, tests, method, design, tasks, n_jobs, progress)
    seconds = time.perf_counter() - start
    table, failures = _summarise(cells, results, int(n_sim), alpha, level, interval)
    if failures:
        warn(
            f"{len(failures)} of {len(tasks)} simulated studies gave no test of {test!r} and "
            f"are left out of the power (counted in n_failed); the first: {failures[0]}",
            PowerSimulationWarning,
            stacklevel=2,
        )
    n_fits = len(tasks) * (2 if method == "lrt" else 1)
    table.attrs.update(
        test=test,
        effect=spec.fixed_effects[tests[0]] if len(tests) == 1 else None,
        effects={t: spec.fixed_effects[t] for t in tests},
        ratio=spec.family.link.ratio_name,
        method=method,
        alpha=alpha,
        level=level,
        interval=interval,
        failures=failures,
        seconds=seconds,
        refits_per_second=n_fits / seconds if seconds > 0 else np.nan,
    )
    return table


def sample_size(table: pd.DataFrame, target: float = 0.8, *, conservative: bool = True):
    """The smallest number of groups that reaches ``target`` power, per group size.

    Reads a :func:`power_curve` table: for each ``n_per_group``, the smallest
    ``n_groups`` of the grid from which on every larger one reaches ``target``
    (with ``conservative=True``, the Monte Carlo interval's lower limit must;
    otherwise the estimate). Requiring the larger designs too keeps a lucky draw
    at one size from being read as enough.

    Returns
    -------
    table : pandas.DataFrame
        One row per ``n_per_group``: ``n_groups`` (NaN when no design of the grid
        reaches the target: extend the grid), ``power``, ``lower``, ``upper``.
    """
    needed = {"n_groups", "n_per_group", "power", "lower", "upper"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise ValueError(f"table must be a result of power_curve (columns {sorted(needed)}).")
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target!r}.")
    column = "lower" if conservative else "power"
    rows = []
    for k, part in table.groupby("n_per_group", dropna=False, sort=True):
        part = part.sort_values("n_groups")
        ok = (part[column] >= target).to_numpy()
        tail = np.flatnonzero(~ok)
        first = 0 if not len(tail) else tail[-1] + 1
        if first < len(part):
            best = part.iloc[first]
            rows.append(
                {
                    "n_per_group": k,
                    "n_groups": best["n_groups"],
                    **{c: best[c] for c in ("power", "lower", "upper")},
                }
            )
        else:
            rows.append(
                {
                    "n_per_group": k,
                    "n_groups": np.nan,
                    "power": np.nan,
                    "lower": np.nan,
                    "upper": np.nan,
                }
            )
    return pd.DataFrame(rows)
