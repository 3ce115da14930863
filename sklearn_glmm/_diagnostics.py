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

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from ._simulate import _rng, simulate_response
from ._warn import user_stacklevel


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
        warnings.warn(
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
        Scaled residuals, uniform on (0, 1) under the model.
    simulated : ndarray of shape (n_samples, n_sim)
        The simulated outcomes.
    observed : ndarray of shape (n_samples,)
    fitted : ndarray of shape (n_samples,)
        Mean of the simulations of each row.
    """

    def __init__(
        self, observed, simulated, rng, conditional=None, population_mean=None, no_dispersion=None
    ):
        self.observed = np.asarray(observed, dtype=float)
        self.simulated = np.asarray(simulated, dtype=float)
        self.fitted = self.simulated.mean(axis=1)
        self.residuals = _pit(self.observed, self.simulated, rng)
        self._cond = conditional
        self._mu0 = population_mean
        self._no_dispersion = no_dispersion  # why the dispersion test is not made

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
        """Spread of the observed vs simulated outcomes around the population-level means.

        ``statistic`` is the ratio observed / mean simulated variance of
        ``y - mu0`` (1 under the model), ``mu0`` the means with the random effects
        at zero (DHARMa's ``fittedPredictedResponse``, lme4's ``re.form = NA``); the
        two-sided p-value is the simulation rank of the observed spread (DHARMa's
        ``testDispersion``). It uses simulations conditional on the fitted random
        effects: simulations with new random effects carry the between-group
        variance too, which leaves the test almost without power (a limitation
        DHARMa documents). Centred at the conditional means instead, the observed
        spread would be too small: the modes are fitted to ``y`` and absorb part of
        its variation, and the test would find underdispersion in most data sets
        drawn from the model itself.
        """
        if self._no_dispersion is not None:
            warnings.warn(self._no_dispersion, UserWarning, stacklevel=user_stacklevel())
            return {"test": "dispersion", "statistic": np.nan, "p_value": np.nan}
        sims, mu = self._cond, self._mu0
        if sims is None:
            sims, mu = self.simulated, self.fitted
        obs = float(np.var(self.observed - mu))
        sim = np.var(sims - mu[:, None], axis=0)
        return self._sim_test("dispersion", obs, sim)

    def test_zero_inflation(self) -> dict:
        """Observed vs simulated number of zeros (DHARMa's ``testZeroInflation``)."""
        obs = float(np.sum(self.observed == 0))
        sim = np.sum(self.simulated == 0, axis=0).astype(float)
        return self._sim_test("zero-inflation", obs, sim)

    def _sim_test(self, name, obs, sim):
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
    rng = _rng(random_state)
    sims = simulate_response(est, n_sim, rng, new_random_effects)
    cond = sims if not new_random_effects else simulate_response(est, n_sim, rng, False)
    why = None
    if est.fit_result_.family.name == "ordinal":
        # the conditional simulations hold each level at its (shrunken) mode, so they
        # spread less around the population means than outcomes of the model do; with
        # the few values of an ordinal outcome the test then rejected correct models
        why = (
            "the dispersion test is not made for an ordinal model (NaN): its simulations at "
            "the random effects' modes spread less than the model's own outcomes, and it "
            "rejected correct models. An ordinal outcome has no dispersion parameter; check "
            "the uniformity of the scaled residuals and the proportional-odds assumption."
        )
    return ScaledResiduals(est.fit_result_.train["y"], sims, rng, cond, _population_mean(est), why)


def _population_mean(est):
    """Means of the training rows with the random effects at zero (successes for trials)."""
    res = est.fit_result_
    d = res.objective.data
    eta = d.X @ res.beta + d.offset
    return res.family.mean(eta, res.family_values()) * est._binomial_scale()


def ranef_table(est, cond_var=True, format="wide"):
    """Conditional modes per factor, with conditional standard deviations.

    ``format="wide"``: dict ``{factor: DataFrame(levels x terms)}``; with
    ``cond_var`` every frame gains ``condsd_<term>`` columns and
    ``frame.attrs["cond_var"]``, the (n_levels, q, q) conditional covariances
    (lme4's ``attr(, "condVar")`` with levels first).
    ``format="long"``: one frame with lme4's ``as.data.frame(ranef(fit,
    condVar = TRUE))`` columns ``grpvar, term, grp, condval, condsd``.
    """
    if format not in ("wide", "long"):
        raise ValueError(f"format must be 'wide' or 'long', got {format!r}.")
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
