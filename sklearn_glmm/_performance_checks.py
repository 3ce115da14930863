"""The ``performance::check_*`` tests of :mod:`sklearn_glmm.performance`: overdispersion,
zero inflation, singularity and collinearity, each a small table that prints a verdict
(public from :mod:`sklearn_glmm.performance`).
"""

from __future__ import annotations

import numpy as np

from . import _performance_terms as _terms
from ._performance_tables import (
    CheckTable,
    format_p,
    key_values,
    vif_body,
    with_text,
)
from ._performance_variance import (
    DEFAULT_TOLERANCE,
    check_mixed,
    cholesky_diagonals,
    scaled_cholesky_diagonals,
)
from ._validation import reads_fitted_models
from ._warn import user_stacklevel, warn


def _is_bernoulli(model) -> bool:
    res = model.fit_result_
    return res.family.has_trials and bool(np.all(res.train["trials"] == 1))


@reads_fitted_models
def check_overdispersion(model) -> CheckTable:
    """Pearson chi-square test of overdispersion, as R's ``performance::check_overdispersion``.

    The statistic is the sum of squared Pearson residuals (conditional on the
    random-effect modes, with the family's variance -- zero-inflated and NB2
    variances included) and is compared with a chi-square distribution on the
    residual degrees of freedom (rows minus parameters). A ratio well above 1
    (small p-value) means more variation than the model allows.

    Parameters
    ----------
    model : fitted PoissonGLMM, NegBinGLMM, or BinomialGLMM with trials
        Binary (0/1) outcomes carry no information on overdispersion and raise
        (performance 0.10.2 prints a ratio for them; ``m.overdispersion()`` gives the
        same numbers, with a warning).

    Returns
    -------
    table : CheckTable
        One row: ``chisq_statistic``, ``dispersion_ratio``, ``residual_df``,
        ``p_value``; ``detected`` is ``p_value <= 0.05``.

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMM
    >>> from sklearn_glmm.datasets import load_app_logins
    >>> from sklearn_glmm.performance import check_overdispersion
    >>> df = load_app_logins()
    >>> m = PoissonGLMM().fit(df[["day_centered"]], df["logins"], groups=df["user_id"])
    >>> list(check_overdispersion(m).columns)
    ['chisq_statistic', 'dispersion_ratio', 'residual_df', 'p_value']
    """
    if _is_bernoulli(model):
        raise ValueError("Overdispersion checks cannot be used for Bernoulli (0/1) models.")
    res = model.overdispersion()
    table = CheckTable(
        {
            "chisq_statistic": [res.statistic],
            "dispersion_ratio": [res.ratio],
            "residual_df": [res.df],
            "p_value": [res.p_value],
        }
    )
    if not np.isfinite(res.p_value):
        # no residual degrees of freedom (or no finite statistic): no verdict
        detected = None
        if not res.df > 0:
            note = (
                f"Overdispersion cannot be tested: {res.df} residual degrees of freedom "
                "(rows minus parameters)."
            )
        else:
            note = "Overdispersion cannot be tested: the Pearson statistic is not finite."
    else:
        detected = bool(res.p_value <= 0.05)
        note = "Overdispersion detected." if detected else "No overdispersion detected."
        if not detected and model.fit_result_.factors:
            note += "\n" + _CONSERVATIVE_DISPERSION
    body = key_values(
        [
            ("dispersion ratio", res.ratio),
            ("Pearson's Chi-Squared", res.statistic),
            ("p-value", format_p(res.p_value)),
        ]
    )
    return with_text(table, "Overdispersion test", note, detected, body)


# the two checks' level in mixed models (docs/inference.md, "How well the tests hold
# their level"; benchmarks/calibration.py): residuals and zero probabilities at the
# random effects' modes, which absorb part of each group's variation
_CONSERVATIVE_DISPERSION = (
    "In a mixed model this test is conservative (Pearson residuals at the random\n"
    "effects' modes spread less than the data): it rarely rejects and misses much real\n"
    "overdispersion. scaled_residuals().test_dispersion() holds its level for Poisson."
)


_LIBERAL_ZEROS = (
    "In a mixed model this check also flags data without zero inflation (zeros\n"
    "predicted at the random effects' modes fall short of those the model implies);\n"
    "confirm with scaled_residuals().test_zero_inflation() or a zero-inflated fit's AIC."
)


@reads_fitted_models
def check_zeroinflation(model, tolerance: float = 0.05) -> CheckTable:
    """Observed vs predicted zeros, as R's ``performance::check_zeroinflation``.

    Predicted zeros are ``round(sum_i P(Y_i = 0))`` under the fitted model
    (conditional on the random-effect modes): Poisson or NB2 probabilities of a
    zero at the fitted means, as performance computes them; NB1's own probability
    of a zero for an NB1 model (performance 0.10 takes glmmTMB's NB1 dispersion as an
    NB2 size there, and counts other zeros). For a zero-inflated
    model the zero-inflation probability is included (performance 0.10 uses the
    count distribution at the overall mean there, which under-counts zeros).

    Parameters
    ----------
    model : fitted PoissonGLMM or NegBinGLMM
    tolerance : float, default=0.05
        The ratio predicted / observed counts as fine within ``1 ± tolerance``.

    Returns
    -------
    table : CheckTable
        One row: ``predicted_zeros``, ``observed_zeros``, ``ratio``,
        ``tolerance``; ``detected`` is True when the ratio is below
        ``1 - tolerance`` (the model under-predicts zeros: probable zero inflation).

    Examples
    --------
    >>> from sklearn_glmm import PoissonGLMM
    >>> from sklearn_glmm.datasets import load_app_logins
    >>> from sklearn_glmm.performance import check_zeroinflation
    >>> df = load_app_logins()
    >>> m = PoissonGLMM().fit(df[["day_centered"]], df["logins"], groups=df["user_id"])
    >>> int(check_zeroinflation(m)["observed_zeros"].iloc[0]) == int((df["logins"] == 0).sum())
    True
    """
    res = model.fit_result_
    fam = res.family
    if fam.has_trials or not hasattr(fam, "pmf"):  # binomial, ordinal
        raise ValueError(
            f"Model must be a count model (PoissonGLMM or NegBinGLMM), not "
            f"{type(model).__name__} ({fam.sentence_name()})."
        )
    y = np.asarray(res.train["y"], dtype=float)
    observed = int(np.sum(y == 0))
    eta = np.asarray(res.train["eta"], dtype=float)[:, None]
    p0 = fam.pmf_eta(np.zeros(1), eta, res.family_values(column=True))
    predicted = int(round(float(np.sum(p0))))
    ratio = predicted / observed if observed else np.nan
    table = CheckTable(
        {
            "predicted_zeros": [predicted],
            "observed_zeros": [observed],
            "ratio": [ratio],
            "tolerance": [tolerance],
        }
    )
    if not observed:
        note, detected = "Model has no observed zeros in the response variable.", False
    elif ratio < 1 - tolerance:
        note, detected = "Model is underfitting zeros (probable zero-inflation).", True
        if res.factors:
            note += "\n" + _LIBERAL_ZEROS
    elif ratio > 1 + tolerance:
        note, detected = "Model is overfitting zeros.", False
    else:
        note = (
            "Model seems ok, ratio of observed and predicted zeros is within the tolerance range."
        )
        detected = False
    body = key_values(
        [("Observed zeros", observed), ("Predicted zeros", predicted), ("Ratio", ratio)], 2
    )
    return with_text(table, "Check for zero-inflation", note, detected, body)


@reads_fitted_models
def check_singularity(model, tolerance: float = DEFAULT_TOLERANCE) -> CheckTable:
    """Singular-fit check, as R's ``performance::check_singularity`` (lme4's rule).

    A fit is singular when a diagonal element of the Cholesky factor of a
    random-effect covariance matrix is below ``tolerance``: a variance of zero, or a
    term perfectly correlated with the terms before it. The factor is that of the
    random effects of the fit's internal columns (slopes centred and scaled:
    ``Scaled_diagonal``), so that the verdict does not depend on the predictors'
    units or origin; lme4's ``theta``, in the predictors' units, is listed beside it
    (``Cholesky_diagonal``; the two agree for standardised predictors). performance
    judges lme4's: a slope in large units (or far from zero) there makes a fit
    singular, and ``icc`` and ``r2`` NaN, that is not.

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    tolerance : float, default=1e-5

    Returns
    -------
    table : CheckTable
        One row per random-effect term: ``Group``, ``Term``, ``Variance``,
        ``Cholesky_diagonal``, ``Scaled_diagonal``, ``Singular``; ``detected`` is True
        for a singular fit (what ``performance::check_singularity`` returns).

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.performance import check_singularity
    >>> df, _ = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> check_singularity(m).detected
    False
    """
    check_mixed(model)
    rows = []
    scaled = scaled_cholesky_diagonals(model)
    for name, diag in cholesky_diagonals(model).items():
        cov = model.random_effects_cov_[name]
        for k, term in enumerate(cov.index):
            d = float(scaled[name][k])
            rows.append((name, term, float(cov.iloc[k, k]), float(diag[k]), d, d < tolerance))
    cols = ["Group", "Term", "Variance", "Cholesky_diagonal", "Scaled_diagonal", "Singular"]
    table = CheckTable(rows, columns=cols)
    detected = bool(table["Singular"].any())
    if detected:
        bad = ", ".join(
            f"{g}: {t}" for g, t in table.loc[table["Singular"], ["Group", "Term"]].values
        )
        note = (
            f"Singular fit: the random effects of {bad} have (near) zero variance or are "
            "perfectly correlated with the terms before them. Simplify the random effects."
        )
    else:
        note = "No singular fit detected."
    return with_text(table, "Check for singular fit", note, detected)


@reads_fitted_models
def check_collinearity(model, *, terms: dict | None = None, ci: float = 0.95) -> CheckTable:
    """Variance inflation factors of the fixed effects, as R's ``performance::check_collinearity``.

    Computed as performance does for mixed models, from the correlation
    matrix ``R`` of the fixed-effect estimates (intercept left out): for a
    term with columns ``t``, ``VIF = det(R_tt) det(R_oo) / det(R)`` (``o`` the
    other columns) -- the generalized VIF of Fox & Monette, which is the usual
    VIF for a one-column term and tests a factor's dummy columns together.
    The interval is performance's, from one for ``1 - 1/VIF`` on the logit scale.

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    terms : dict of str to list of str, default=None
        Columns to treat as one term (``{"dose": ["dose_mid", "dose_high"]}``).
        By default a formula fit's terms are read from its formula and every
        other column is its own term.
    ci : float, default=0.95
        Level of the intervals.

    Returns
    -------
    table : CheckTable
        ``Term``, ``VIF``, ``VIF_CI_low``, ``VIF_CI_high``, ``SE_factor``
        (``sqrt(VIF)``: how much larger the standard error is than without
        collinearity), ``Tolerance`` (``1 / VIF``), ``Tolerance_CI_low``,
        ``Tolerance_CI_high``; ``detected`` is True when a VIF is 10 or more.

    Raises
    ------
    ValueError
        With fewer than two terms, where collinearity is not defined.

    Examples
    --------
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.performance import check_collinearity
    >>> df, _ = make_longitudinal("binomial", n_groups=100, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> list(check_collinearity(m)["Term"])
    ['time', 'treatment']
    """
    info = _terms.model_terms(model, terms)
    if len(info.names) < 2:
        raise ValueError("Not enough model terms (at least two) to check for multicollinearity.")
    if not info.intercept:
        warn(
            "Model has no intercept. VIFs may not be sensible.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    rows = _terms.gvif_rows(model, info)
    vif = np.array([v for _, v in rows])
    if any(len(info.variables[t]) > 1 for t, _ in rows) and np.any(vif > 10):
        warn(
            "Model has interaction terms. VIFs might be inflated. You may check multicollinearity "
            "among predictors of a model without interaction terms.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    res = model.fit_result_
    lo, hi = _terms.vif_interval(vif, len(res.train["y"]), len(res.vcov_fixed), ci)
    table = CheckTable(
        {
            "Term": [t for t, _ in rows],
            "VIF": vif,
            "VIF_CI_low": lo,
            "VIF_CI_high": hi,
            "SE_factor": np.sqrt(vif),
            "Tolerance": 1.0 / vif,
            "Tolerance_CI_low": 1.0 / hi,
            "Tolerance_CI_high": 1.0 / lo,
        }
    )
    return with_text(
        table, "Check for Multicollinearity", "", bool(np.any(vif >= 10)), vif_body(table)
    )
