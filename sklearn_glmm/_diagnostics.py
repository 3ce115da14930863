"""Diagnostics of a fitted model: overdispersion, scaled (quantile) residuals, ranef tables.

Scaled residuals follow DHARMa (Hartig): simulate ``n_sim`` outcomes for every
training row from the fitted model and take the randomised probability
integral transform of the observed value,

.. math::

    r_i \\sim U\\big(\\hat F_i(y_i^-),\\, \\hat F_i(y_i)\\big),

with ``F_i`` the empirical distribution of the simulations of row ``i``. Under
a correct model the ``r_i`` are uniform on (0, 1) for any family, so one
Kolmogorov-Smirnov test and two simulation tests (dispersion, zero counts)
cover binomial, Poisson and negative-binomial fits alike.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from ._simulate import _rng, conditional_etas, simulate_response
from ._validation import check_bool, check_positive_count
from ._warn import user_stacklevel, warn


class OverdispersionResult(NamedTuple):
    """Pearson overdispersion check.

    ``ratio = statistic / df`` and ``p_value = P(chi2_df > statistic)``.
    """

    ratio: float
    statistic: float
    df: int
    p_value: float


def overdispersion(est) -> OverdispersionResult:
    """Sum of squared Pearson residuals over the residual degrees of freedom.

    The usual quick check for GLMMs (Bolker's GLMM FAQ ``overdisp_fun``):
    ratios well above 1 suggest overdispersion (try :class:`NegBinGLMM` or an
    observation-level random effect). The chi-square p-value is approximate.
    """
    fam = est.fit_result_.family
    if fam.has_trials and np.all(est.fit_result_.train["trials"] == 1):
        warn(
            "overdispersion is not identifiable for a binary (0/1) outcome; the Pearson ratio "
            "of a Bernoulli model carries no information about it.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    r = est.residuals(type="pearson")  # (the prior weights' sqrt included)
    stat = float(np.sum(r**2))
    df = int(est.df_resid_)
    p = float(stats.chi2.sf(stat, df)) if df > 0 else np.nan
    return OverdispersionResult(stat / df if df > 0 else np.nan, stat, df, p)


def _pit(y, sims, rng):
    """Randomised PIT of each observation within its simulations."""
    lower = np.mean(sims < y[:, None], axis=1)
    upper = np.mean(sims <= y[:, None], axis=1)
    return lower + (upper - lower) * rng.random(len(y))


class ScaledResiduals:
    """Simulation-based scaled residuals (DHARMa) with their tests.

    Attributes
    ----------
    residuals : ndarray of shape (n_samples,)
        Scaled residuals, uniform on (0, 1) under the model: one per training row in
        the likelihood (rows of ``sample_weight`` 0, or of 0 binomial trials, are left
        out, as from ``nobs_``).
    simulated : ndarray of shape (n_samples, n_sim)
        The simulated outcomes.
    observed : ndarray of shape (n_samples,)
    fitted : ndarray of shape (n_samples,)
        Mean of the simulations of each row.
    """

    def __init__(self, observed, simulated, rng, dispersion=None):
        self.observed = np.asarray(observed, dtype=float)
        self.simulated = np.asarray(simulated, dtype=float)
        self.fitted = self.simulated.mean(axis=1)
        self.residuals = _pit(self.observed, self.simulated, rng)
        self._dispersion = dispersion  # () -> (observed statistic, simulated statistics)

    @property
    def n_sim(self) -> int:
        return self.simulated.shape[1]

    def test_uniformity(self) -> dict:
        """Kolmogorov-Smirnov test of the residuals against U(0, 1)."""
        res = stats.kstest(self.residuals, "uniform")
        return {
            "test": "uniformity (KS)",
            "statistic": float(res.statistic),
            "p_value": float(res.pvalue),
        }

    def test_dispersion(self) -> dict:
        """Pearson statistic of the fit against that of data sets simulated from it.

        ``statistic`` is the ratio of the observed Pearson statistic (the sum of the
        squared Pearson residuals at the conditional modes, ``overdispersion``'s) to
        its mean over the simulations, 1 under the model; the two-sided p-value is
        the simulation rank of the observed statistic (DHARMa's ``testDispersion``).
        Each simulated data set is drawn from the fitted model with new random
        effects, and its statistic is taken at *its own* conditional modes, found at
        the fitted parameters (a parametric bootstrap of the statistic with the
        fixed effects and variances held at their estimates). The modes absorb part
        of each group's variation from the observed outcomes and from the simulated
        ones alike, so the reference distribution matches the observed statistic's:
        simulations at the fitted modes (DHARMa's conditional ones) compared with
        residuals at those modes find underdispersion in most data sets drawn from
        the model, and simulations with new random effects around the population
        means carry the between-group variance, which leaves almost no power.
        Simulations whose modes could not be found are left out (with a warning).
        """
        if self._dispersion is None:
            return {"test": "dispersion", "statistic": np.nan, "p_value": np.nan}
        if not isinstance(self._dispersion, tuple):
            self._dispersion = self._dispersion()
        obs, sim = self._dispersion
        return self._sim_test("dispersion", obs, sim)

    def test_zero_inflation(self) -> dict:
        """Observed vs simulated number of zeros (DHARMa's ``testZeroInflation``)."""
        obs = float(np.sum(self.observed == 0))
        sim = np.sum(self.simulated == 0, axis=0).astype(float)
        return self._sim_test("zero-inflation", obs, sim)

    def _sim_test(self, name, obs, sim):
        if not len(sim):  # no simulation could be used (warned where they were left out)
            return {"test": name, "statistic": np.nan, "p_value": np.nan}
        m = float(np.mean(sim))
        ratio = obs / m if m > 0 else np.nan
        p = 2.0 * min(np.mean(sim >= obs), np.mean(sim <= obs))
        return {"test": name, "statistic": ratio, "p_value": float(min(p, 1.0))}

    def tests(self) -> pd.DataFrame:
        """All three tests as a table (columns ``statistic``, ``p_value``)."""
        rows = [self.test_uniformity(), self.test_dispersion(), self.test_zero_inflation()]
        return pd.DataFrame(rows).set_index("test")

    def __repr__(self):
        t = self.tests()
        lines = [f"ScaledResiduals(n_samples={len(self.residuals)}, n_sim={self.n_sim})"]
        lines += [
            f"  {k:<16} statistic={r.statistic:.4g}  p={r.p_value:.4g}" for k, r in t.iterrows()
        ]
        return "\n".join(lines)


def scaled_residuals(est, n_sim=250, random_state=None, new_random_effects=True):
    """DHARMa residuals of ``est`` from ``n_sim`` simulated data sets."""
    _check_n_sim(n_sim)
    rng = _rng(random_state)
    sims = simulate_response(est, n_sim, rng, new_random_effects)
    # the dispersion test's data sets: drawn as the model draws them (new random
    # effects), the residuals' own when they are so drawn
    fresh = sims if new_random_effects else simulate_response(est, n_sim, rng, True)
    y = est.fit_result_.train["y"]
    used = np.asarray(est.fit_result_.train["w"]) > 0
    if not used.all():  # rows of weight 0 (or 0 trials) are not the model's observations
        y, sims = y[used], sims[used]
    return ScaledResiduals(y, sims, rng, partial(_dispersion_statistics, est, fresh))


# a scaled residual is the outcome's quantile among n_sim simulations: below these
# counts the quantiles are so coarse that the tests read their coarseness as misfit
# (refused), or too coarse for their p-values to mean much (warned)
MIN_SCALED_SIMS, FEW_SCALED_SIMS = 10, 100


def _check_n_sim(n_sim) -> None:
    check_positive_count(n_sim, "n_sim")
    if n_sim < MIN_SCALED_SIMS:
        raise ValueError(
            f"n_sim={n_sim} is too few for scaled residuals: each is the outcome's quantile "
            f"among n_sim simulated outcomes, and with fewer than {MIN_SCALED_SIMS} the "
            "tests read the coarse quantiles as misfit. Use n_sim=250 (DHARMa's default) "
            "or more."
        )
    if n_sim < FEW_SCALED_SIMS:
        warn(
            f"n_sim={n_sim}: scaled residuals from fewer than {FEW_SCALED_SIMS} simulations "
            "are coarse quantiles, and the tests' p-values read them as they are; use "
            "n_sim=250 (DHARMa's default) or more for the tests.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _pearson_statistic(est, y, eta) -> float:
    """Sum of the squared Pearson residuals of outcome ``y`` at linear predictors
    ``eta`` (``residuals(type="pearson")``'s, prior weights included)."""
    res = est.fit_result_
    fam, extra, tr = res.family, res.family_values(), res.train
    mu = fam.mean(eta, extra) * est._binomial_scale()
    var = fam.variance_eta(eta, tr["trials"], extra)
    keep = tr["w"] > 0
    return float(np.sum(tr["w"][keep] * (y[keep] - mu[keep]) ** 2 / var[keep]))


def _dispersion_statistics(est, Y):
    """The observed Pearson statistic and those of the simulated outcomes ``Y``
    (n_samples, n_sim), each at its own conditional modes at the fitted parameters."""
    res = est.fit_result_
    obs = _pearson_statistic(est, res.train["y"], res.train["eta"])
    etas = conditional_etas(est, Y)
    sim = np.full(Y.shape[1], np.nan)
    with np.errstate(all="ignore"):
        for k in range(Y.shape[1]):
            if np.all(np.isfinite(etas[:, k])):
                sim[k] = _pearson_statistic(est, Y[:, k], etas[:, k])
    bad = ~np.isfinite(sim)
    if bad.any():
        warn(
            f"the dispersion test leaves out {int(bad.sum())} of its {len(sim)} simulated "
            "data sets: their conditional modes were not found at the fitted parameters.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return obs, sim[~bad]


def ranef_table(est, cond_var=True, format="wide"):
    """Conditional modes per factor, with conditional standard deviations.

    ``format="wide"``: dict ``{factor: DataFrame(levels x terms)}``; with
    ``cond_var`` every frame gains ``condsd_<term>`` columns and
    ``frame.attrs["cond_var"]``, the (n_levels, q, q) conditional covariances
    (lme4's ``attr(, "condVar")`` with levels first).
    ``format="long"``: one frame with lme4's ``as.data.frame(ranef(fit,
    condVar = TRUE))`` columns ``grpvar, term, grp, condval, condsd``.

    The conditional variances are the Laplace approximation's: the inverse curvature
    of the log-density of each level's random effects at their mode, given the
    estimated parameters (lme4's and glmmTMB's definition; not the exact posterior
    SD, which for a few binary rows per group is a few per cent larger). The curvature
    is the exact one of the family, as glmmTMB's; lme4 uses the Fisher weights, which
    differ for the probit and cloglog links (condsd up to 8 % apart) and the negative
    binomial; for the logit and log links they are the same.
    """
    if format not in ("wide", "long"):
        raise ValueError(f"format must be 'wide' or 'long', got {format!r}.")
    cond_var = check_bool(cond_var, "cond_var")
    wide, longs = {}, []
    for f in est.fit_result_.factors:
        B = est.ranef_[f.name].copy()
        C = est.fit_result_.ranef_condvar[f.name]
        sd = np.sqrt(np.clip(np.diagonal(C, axis1=1, axis2=2), 0.0, None))
        if format == "long":
            for k, t in enumerate(f.term.names):
                longs.append(
                    pd.DataFrame(
                        {
                            "grpvar": f.name,
                            "term": t,
                            "grp": B.index.astype(str),
                            "condval": B[t].to_numpy(),
                            "condsd": sd[:, k] if cond_var else np.nan,
                        }
                    )
                )
            continue
        if cond_var:
            for k, t in enumerate(f.term.names):
                B[f"condsd_{t}"] = sd[:, k]
            B.attrs["cond_var"] = C.copy()
        wide[f.name] = B
    if format == "long":
        cols = ["grpvar", "term", "grp", "condval", "condsd"]
        return pd.concat(longs, ignore_index=True) if longs else pd.DataFrame(columns=cols)
    return wide
