"""Confidence intervals for every reported parameter: Wald, profile likelihood, bootstrap.

``confint`` is the public entry (re-exported by :mod:`sklearn_glmm.inference`); the
parameters' map and Wald intervals live in :mod:`sklearn_glmm._param_map`, the profiles
in :mod:`sklearn_glmm._profile`, the bootstrap refits in :mod:`sklearn_glmm._simulate`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils.validation import check_is_fitted

from ._param_map import ParamMap, lme4_name_map, wald_table
from ._profile import profile_table
from ._simulate import bootstrap_params
from ._validation import check_bool, check_level
from ._warn import user_stacklevel, warn
from .summary import modelled_outcome


# =====================================================================================
# intervals
# =====================================================================================
def _select(pmap: ParamMap, parm, extra_names=()):
    if parm is None:
        return None
    if not isinstance(parm, str) and not (
        isinstance(parm, (list, tuple, np.ndarray, pd.Index))
        and all(isinstance(p, str) for p in parm)
    ):
        raise TypeError(
            "parm must be None, 'fixed', 'random', a parameter's name or a list of names, "
            f"got {parm!r}."
        )
    if isinstance(parm, str):
        if parm in ("fixed", "beta_"):
            return [n for n, k in zip(pmap.names, pmap.kinds) if k == "fixed"]
        if parm in ("random", "theta_"):
            return [n for n, k in zip(pmap.names, pmap.kinds) if k in ("sd", "cor")]
        parm = [parm]
    inv = {v: k for k, v in zip(pmap.names, pmap.lme4_names)}
    out = [inv.get(p, p) for p in parm]
    known = list(pmap.names) + [n for n in extra_names if n not in pmap.names]
    unknown = [p for p in out if p not in known]
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; available: {known}.")
    return out


def confint(
    est,
    parm=None,
    level: float = 0.95,
    method: str = "wald",
    *,
    exponentiate: bool = False,
    n_boot: int = 500,
    random_state=None,
    n_jobs=None,
    progress: bool = False,
) -> pd.DataFrame:
    """Confidence intervals for the fixed effects and variance parameters.

    Parameters
    ----------
    est : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    parm : None, str or list of str, default=None
        Rows to compute: all (None), ``"fixed"`` / ``"random"`` (lme4's
        ``"beta_"`` / ``"theta_"``) or names (ours or lme4's ``.sig01``).
    level : float, default=0.95
    method : {"wald", "profile", "bootstrap"}, default="wald"
        ``"wald"``: estimate +- z SE (lme4's ``method = "Wald"`` for fixed
        effects; SDs on the log scale, as glmmTMB, and correlations on Fisher's z
        scale, where glmmTMB uses its internal scale and other limits).
        ``"profile"``: profile likelihood (lme4's default), including a lower limit
        of exactly 0 for an SD whose profile at 0 stays within the cutoff.
        ``"bootstrap"``: percentile intervals from ``n_boot``
        parametric-bootstrap refits (lme4's ``bootMer``).
    exponentiate : bool, default=False
        Exponentiate fixed-effect rows (odds ratios for binomial, rate ratios
        for counts).
    n_boot, random_state, n_jobs, progress
        Bootstrap settings (``n_jobs`` also parallelises profiles over parameters).

    Returns
    -------
    table : pandas.DataFrame
        Index ``parameter`` (fixed effects, ``sd_<term>|<factor>``,
        ``cor_<term>.<term>|<factor>``, ``nb_theta``, ``zi_prob``); columns
        ``estimate``, ``lower``, ``upper``. ``table.attrs["lme4_names"]`` maps
        row names to lme4's ``oldNames = TRUE`` names (``.sig01``, ...).

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> df, _ = make_longitudinal(n_groups=60, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> ci = m.confint(method="profile", exponentiate=True)
    >>> list(ci.columns)
    ['estimate', 'lower', 'upper']
    """
    check_is_fitted(est, "coef_")
    level = check_level(level)
    exponentiate = check_bool(exponentiate, "exponentiate")
    method = str(method).lower()
    pmap = ParamMap(est)
    sel = _select(pmap, parm, est.fixed_effects_.index)
    ridge = limit_ridge_names(est, pmap)
    if method == "wald":
        table = wald_table(est, pmap, level)[["estimate", "lower", "upper"]]
    elif method == "profile":
        table, trace = profile_table(est, level, sel, n_jobs, skip=ridge)
        table.attrs["profile"] = trace
    elif method in ("bootstrap", "boot"):
        table = _bootstrap_table(est, pmap, level, n_boot, random_state, n_jobs, progress)
    else:
        raise ValueError(f"method must be 'wald', 'profile' or 'bootstrap', got {method!r}.")
    if method != "wald":  # (a Wald interval is NaN with its standard error)
        _without_ridge_limits(est, table, [n for n in ridge if sel is None or n in sel])
    # aliased (dropped) fixed-effect columns are reported as NaN rows, as in fixed_effects_
    fixed_all = list(est.fixed_effects_.index)
    order = fixed_all + [n for n in pmap.names if n not in fixed_all]
    table = table.reindex(order if sel is None else [n for n in order if n in sel])
    if exponentiate:
        if est.fit_result_.family.link.ratio_name is None:
            raise ValueError(
                f"exponentiate=True has no reading for the {est.fit_result_.family.link.name} link "
                "(its coefficients are not log ratios); report them on the link scale."
            )
        fixed = [n for n in table.index if n in fixed_all]
        table.loc[fixed] = np.exp(table.loc[fixed].to_numpy())
    names = lme4_name_map(est)
    table.attrs.update(
        method=method, level=level, lme4_names={n: names.get(n, n) for n in table.index}
    )
    table.index.name = "parameter"
    modelled = modelled_outcome(est)
    if modelled is not None:
        # the fixed effects are log-odds of this event; the name prints above the table
        table.attrs["modelled"] = modelled
        table.columns.name = f"Modelled: {modelled}"
    return table


def _bootstrap_table(est, pmap, level, n_boot, random_state, n_jobs, progress):
    reps, ok, separated, grouped = bootstrap_params(
        est, n_boot, random_state, n_jobs, progress, with_separated=True
    )
    n_failed = int((~ok).sum())
    if grouped.any():
        warn(
            f"{int(grouped.sum())} of {len(ok)} bootstrap replicates have group-level "
            "separation: a random-intercept SD above 5 on the log-odds scale resting on "
            "groups whose outcomes are all the same, which the data do not determine (the "
            "estimator warns of such a fit). Their values, large and arbitrary along a "
            "flat likelihood, are among the replicates: limits they reach are not reliable. "
            "Consider fewer random effects or more data per group.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if separated.any():
        runs_off = [
            pmap.names[k] for k in range(reps.shape[1]) if np.any(np.isinf(reps[separated, k]))
        ]
        warn(
            f"{int(separated.sum())} of {len(ok)} bootstrap replicates are separated: "
            f"{runs_off} have no finite estimate there (their maximum-likelihood estimate is "
            "infinite). Those replicates count as +-inf for them, so a limit they reach is "
            "infinite, and are left out of the other parameters' intervals (their values "
            "are where the optimiser stopped along the ridge).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if n_failed:
        # any: the refits that fail are often the extreme draws, whose loss moves a
        # percentile limit inwards (a 2.5 % tail can go whole with 10 % of them)
        warn(
            f"{n_failed} of {len(ok)} bootstrap refits failed to converge and were dropped: "
            f"the intervals use the other {len(ok) - n_failed}. The failed refits are often "
            "the most extreme draws, so limits may lie too far in; many failures point to "
            "a model the data support poorly.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    good = reps[ok]
    a = (1 - level) / 2
    R = len(good)
    if R and _extreme_limits(R, a):
        # boot.ci's warning: a limit is the smallest or largest replicate itself
        enough = next(r for r in range(R + 1, 10**7) if not _extreme_limits(r, a))
        warn(
            f"extreme order statistics used as endpoints: with {R} bootstrap replicates "
            f"the {level:.0%} percentile limits are the smallest and largest replicates, "
            f"not percentiles (it takes at least {enough} replicates; many more for "
            "limits that do not move with the seed: 1,000 or more at 95 %).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    phi = pmap.to_phi(est.fit_result_.params)
    rows = []
    for k in range(pmap.n):
        # on the reported scale, as boot.ci reads bootMer's statistics
        lo, hi = percentile_limits(pmap.display(k, good[:, k]), [a, 1 - a])
        rows.append([pmap.display(k, phi[k]), lo, hi])
    table = pd.DataFrame(
        np.asarray(rows, dtype=float), columns=["estimate", "lower", "upper"], index=pmap.names
    )
    shown = np.column_stack([pmap.display(k, good[:, k]) for k in range(pmap.n)])
    table.attrs["replicates"] = pd.DataFrame(shown, columns=pmap.names)
    table.attrs["n_failed"] = n_failed
    free = unidentified_parameters(est, pmap)
    if free:
        # each replicate ends at some point of its own line of equal likelihood: the
        # percentiles of such a parameter are those of where the optimiser stopped
        table.loc[free, ["lower", "upper"]] = np.nan
        warn(
            f"{free} are not identified by these data (the likelihood is the same along a "
            "line of their values: fit_record_.unidentified), so their bootstrap intervals "
            "are NaN: each replicate ends at an arbitrary point of that line.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return table


def limit_ridge_names(est, pmap) -> list:
    """The reported parameters that run along the fit's ridge to its family's limit
    distribution (``fit_record_.limit_ridge_moving``: the zero-truncated NB2's intercept
    and theta on the logarithmic-series ridge), for a fit on it."""
    moving = getattr(est.fit_result_.record, "limit_ridge_moving", ())
    if not moving or len(pmap.names) != len(est.fit_result_.params):
        return []
    return [pmap.names[k] for k in moving]


def _without_ridge_limits(est, table, names) -> None:
    """NaN limits (in place, with a warning) for the parameters ``names`` that run along
    the fit's ridge to its limit: the likelihood does not fall along it, so neither a
    profile nor the replicates (each stopped somewhere on its own ridge) bound them."""
    if not names:
        return
    table.loc[names, ["lower", "upper"]] = np.nan
    ridge = est.fit_result_.family.limit_ridge
    warn(
        f"{names} run along a ridge of the likelihood towards {ridge.limit} (the fit "
        f"warned of it): the data determine only {ridge.identified}, not each of them, so "
        "their intervals are NaN. The likelihood does not fall along the ridge, so a "
        "profile does not bound them, and each bootstrap replicate stops at a point of "
        "its own ridge.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def unidentified_parameters(est, pmap) -> list:
    """The reported parameters that move along the fit's directions of equal likelihood
    (``fit_record_.unidentified``: a covariance the levels do not identify), or along its
    set of equal likelihood (:meth:`FitResult.moves_on_set`)."""
    N = getattr(est.fit_result_.record, "unidentified", None)
    on_set = est.fit_result_.moves_on_set(pmap.to_phi)
    moved = np.zeros(pmap.n, dtype=bool) if on_set is None else on_set
    if N is None:
        return [pmap.names[k] for k in np.flatnonzero(moved)]
    x = np.asarray(est.fit_result_.params, dtype=float)
    phi = np.asarray(pmap.to_phi(x), dtype=float)
    h = 1e-6
    for n in np.asarray(N, dtype=float).T:
        step = h * n / max(float(np.max(np.abs(n))), 1e-300)
        d = np.asarray(pmap.to_phi(x + step), dtype=float) - np.asarray(
            pmap.to_phi(x - step), dtype=float
        )
        moved |= np.abs(d) > 1e-4 * h * (1.0 + np.abs(phi))
    return [pmap.names[k] for k in np.flatnonzero(moved)]


def _extreme_limits(R: int, a: float) -> bool:
    """Whether :func:`percentile_limits` of ``R`` replicates at ``a`` and ``1 - a`` takes
    the smallest or largest replicate itself (``boot.ci``'s "extreme order statistics")."""
    return int((R + 1) * a) <= 0 or int((R + 1) * (1 - a)) >= R


def percentile_limits(t, alpha) -> np.ndarray:
    """Percentile limits of bootstrap replicates ``t`` at levels ``alpha``, by the rule of
    R's ``boot.ci(type = "perc")`` (which lme4's ``confint(method = "boot")`` uses): the
    ``(R + 1) alpha``-th order statistic of the ``R`` replicates, interpolated
    between its neighbours on the normal quantile scale when not an integer; the
    extreme order statistics outside ``[1, R]``. NaN without replicates. Infinite
    replicates (a separated refit's coefficient) are kept as order statistics, so
    that a limit among them is infinite; NaN ones are left out."""
    t = np.sort(np.asarray(t, dtype=float)[~np.isnan(t)])
    R = len(t)
    out = np.full(len(alpha), np.nan)
    if not R:
        return out
    for i, a in enumerate(alpha):
        rk = (R + 1) * a
        k = int(np.trunc(rk))
        if k <= 0:
            out[i] = t[0]
        elif k >= R:
            out[i] = t[-1]
        elif k == rk:
            out[i] = t[k - 1]
        else:
            z, zk, zk1 = stats.norm.ppf([a, k / (R + 1), (k + 1) / (R + 1)])
            if np.isinf(t[k - 1]) or np.isinf(t[k]):  # between +-inf and a value: infinite
                out[i] = t[k] if a > 0.5 else t[k - 1]
            else:
                out[i] = t[k - 1] + (z - zk) / (zk1 - zk) * (t[k] - t[k - 1])
    return out


def profile(est, parm=None, level: float = 0.95, n_jobs=None) -> pd.DataFrame:
    """Profile traces (lme4's ``profile``): columns ``parameter``, ``value``, ``zeta``.

    ``zeta`` is the signed square root of the deviance increase; the rows are
    the points evaluated while locating the ``level`` limits.
    """
    check_is_fitted(est, "coef_")
    sel = _select(ParamMap(est), parm)
    return profile_table(est, level, sel, n_jobs)[1]
