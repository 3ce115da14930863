"""The fitted estimators' methods that hand over to the library's tools: fitted values,
residuals, summaries, intervals, profiles, random effects, simulation, diagnostics,
marginal means, contrasts and the report (thin wrappers; the work is in the modules they
call). A mixin of the estimators' base class."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted


class _FitTools:
    """The tools of a fitted model as methods (a mixin of the estimators' base class)."""

    def fitted(self):
        """Conditional means on the training rows (random effects at their modes), as R's
        ``fitted()``: for binomial outcomes with trials the probabilities (the mean per
        trial), not the expected numbers of successes."""
        check_is_fitted(self, "coef_")
        res = self.fit_result_
        return res.family.mean(res.train["eta"], res.family_values())

    def _binomial_scale(self):
        res = self.fit_result_
        return res.train["trials"] if res.family.has_trials else 1.0

    def residuals(self, type="deviance"):
        """Residuals on the training rows: "response", "pearson", "deviance" or "working".

        Conditional on the random-effect modes, as lme4's ``residuals(fit, type)``.
        For binomial outcomes with trials, as R's: the response residuals are
        proportions less probabilities (``y / trials - fitted()``); the Pearson,
        deviance and working residuals are the same on either scale. With
        ``sample_weight``, the Pearson and deviance residuals carry each row's prior
        weight (times ``sqrt(w)``, as lme4's: their squares sum to the Pearson
        statistic and the deviance; glmmTMB leaves the weights out of its Pearson
        residuals of a binomial model with trials); the response and working ones do
        not.
        """
        check_is_fitted(self, "coef_")
        res = self.fit_result_
        tr, fam, extra = res.train, res.family, res.family_values()
        y, t = tr["y"], tr["trials"]
        m = fam.mean(tr["eta"], extra)
        mu = m * self._binomial_scale()
        w = tr["w"]
        if type == "response":
            if not fam.has_trials:
                return y - mu
            # rows without trials (weight 0 in R) have no proportion: 0, as y - mu
            return np.divide(y, t, out=np.zeros_like(m), where=t > 0) - np.where(t > 0, m, 0.0)
        if type == "pearson":
            # a row of weight 0 (or 0 trials: variance 0) has residual 0, as in R
            var = fam.variance_eta(tr["eta"], t, extra)
            out = np.zeros(len(y))
            used = w > 0
            out[used] = np.sqrt(w[used]) * (y - mu)[used] / np.sqrt(var[used])
            return out
        if type == "deviance":
            dev = fam.unit_deviance(y, m, t, extra)
            return np.sign(y - mu) * np.sqrt(w * np.clip(dev, 0, None))
        if type == "working":
            dmu = fam.mean_derivative(tr["eta"], extra) * self._binomial_scale()
            return (y - mu) / dmu
        raise ValueError(
            f"type must be 'response', 'pearson', 'deviance' or 'working', got {type!r}."
        )

    # -- summaries --------------------------------------------------------------
    def summary(self):
        """An lme4-like summary; prints as text and exposes its tables as DataFrames."""
        from .summary import Summary

        check_is_fitted(self, "coef_")
        return Summary(self)

    # -- inference and diagnostics: thin wrappers over sklearn_glmm.inference -----
    def confint(self, parm=None, level=0.95, method="wald", **kwargs):
        """Confidence intervals for the fixed effects and the variance parameters.

        lme4's ``confint(fit, method = ...)``; :func:`sklearn_glmm.inference.confint`
        applied to this estimator.

        Parameters
        ----------
        parm : None, str or list of str, default=None
            Rows to compute: every parameter (None); ``"fixed"`` or ``"random"``
            (lme4's ``"beta_"`` / ``"theta_"``); or a list of names, ours
            (``"time"``, ``"sd_(Intercept)|id"``) or lme4's (``".sig01"``).
        level : float, default=0.95
            Coverage of the intervals, in (0, 1).
        method : {"wald", "profile", "bootstrap"}, default="wald"
            Wald (SDs on the log scale, correlations on Fisher's z scale; NaN for a
            parameter on its bound), profile likelihood (lme4's default), or
            percentile intervals from parametric-bootstrap refits.
        **kwargs
            ``exponentiate`` (bool: odds, rate or hazard ratios for the fixed
            effects; refused for the probit link), ``n_boot`` (int, default 500),
            ``random_state``, ``n_jobs`` and ``progress`` (bootstrap and profiles).

        Returns
        -------
        table : pandas.DataFrame
            Columns ``estimate``, ``lower``, ``upper`` (and ``std_error`` for Wald),
            indexed by parameter; ``table.attrs`` holds the method, the level,
            lme4's names of the rows and, for a binomial model, the class modelled.
        """
        from .inference import confint

        return confint(self, parm, level, method, **kwargs)

    def profile(self, parm=None, level=0.95, n_jobs=None):
        """Profile traces (lme4's ``profile``); see :func:`sklearn_glmm.inference.profile`."""
        from .inference import profile

        return profile(self, parm, level, n_jobs)

    def ranef(self, cond_var=True, format="wide"):
        """Conditional modes per factor with conditional SDs (lme4's ``ranef(condVar = TRUE)``).

        See :func:`sklearn_glmm._diagnostics.ranef_table` for the layouts.
        """
        from ._diagnostics import ranef_table

        check_is_fitted(self, "coef_")
        return ranef_table(self, cond_var, format)

    def simulate(self, n_sim=1, random_state=None, *, new_random_effects=True):
        """Outcomes simulated for the training rows, shape (n_samples, n_sim).

        ``new_random_effects=True`` draws new random effects (lme4's
        ``use.u = FALSE``); ``False`` keeps the conditional modes. Binomial
        draws count successes out of the rows' trials; for a binary outcome 0/1,
        1 the modelled class ``pos_label_`` (``classes_[1]`` unless ``pos_label``
        chose the other: ``np.where(draws == 1, pos_label_, other)`` gives labels).
        """
        from ._simulate import simulate_response

        check_is_fitted(self, "coef_")
        return simulate_response(self, n_sim, random_state, new_random_effects)

    def overdispersion(self):
        """Pearson overdispersion ratio, chi-square statistic, df and p-value."""
        from ._diagnostics import overdispersion

        check_is_fitted(self, "coef_")
        return overdispersion(self)

    def scaled_residuals(self, n_sim=250, random_state=None, *, new_random_effects=True):
        """Simulation-based (DHARMa) residuals with uniformity/dispersion/zero tests."""
        from ._diagnostics import scaled_residuals

        check_is_fitted(self, "coef_")
        return scaled_residuals(self, n_sim, random_state, new_random_effects)

    def predict_interval(self, X, groups=None, **kwargs):
        """Predictions with delta-method SEs and intervals; see ``inference.predict_interval``."""
        from .inference import predict_interval

        return predict_interval(self, X, groups, **kwargs)

    def marginal_means(self, X, **kwargs):
        """Conditional and population-averaged means; see ``inference.marginal_means``."""
        from .inference import marginal_means

        return marginal_means(self, X, **kwargs)

    def contrast(self, X1, X0, **kwargs):
        """Average conditional and marginal contrasts; see ``inference.contrast``."""
        from .inference import contrast

        return contrast(self, X1, X0, **kwargs)

    def report(self, **kwargs):
        """A results paragraph: effects, random-effect SDs, dispersion, comparisons.

        :func:`sklearn_glmm.inference.report` applied to this estimator.

        Parameters
        ----------
        **kwargs
            ``level`` (float, default 0.95: coverage of the intervals), ``method``
            (``"wald"``, ``"profile"`` or ``"bootstrap"``), ``outcome`` (str,
            default ``"the outcome"``: how the outcome is named, "The odds of
            {outcome} ..."), ``compare`` (fitted estimators on the same data, each
            compared by a likelihood-ratio test and AIC) and ``digits`` (int,
            default 2).

        Returns
        -------
        paragraph : str
            Effects as odds, rate or hazard ratios (coefficients on the link
            scale for the probit link) with intervals and Wald p-values; the
            random-effect SDs; the family's own parameters; the comparisons.
        """
        from .inference import report

        return report(self, **kwargs)
