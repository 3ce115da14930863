"""The summary of an ordinal model, laid out as ``summary(clmm(...))`` prints it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._fit_result import fitted_n_agq
from ._ordinal_scale import formula_of
from .summary import Summary, model_formula

_COLUMNS = {
    "estimate": "Estimate",
    "std_error": "Std. Error",
    "z_value": "z value",
    "p_value": "Pr(>|z|)",
}


class OrdinalSummary(Summary):
    """clmm's summary: fit statistics, random effects, coefficients, threshold coefficients.

    Attributes
    ----------
    fit_statistics : pandas.Series
        link, threshold, nobs, logLik, AIC, niter, max.grad, cond.H. The last three
        describe this library's optimisation on its internal parameters (centred and
        scaled predictors, thresholds at the predictors' means, Cholesky factors), not
        clmm's: the same reading, not the same values.
    random_effects : pandas.DataFrame
    fixed_effects : pandas.DataFrame
        The coefficients (``Estimate``, ``Std. Error``, ``z value``, ``Pr(>|z|)``).
    thresholds : pandas.DataFrame
        clmm's threshold coefficients (``Estimate``, ``Std. Error``, ``z value``).
    scale_effects : pandas.DataFrame or None
        With scale effects, clmm2's "Scale coefficients" (``Estimate``, ``Std. Error``,
        ``z value``, ``Pr(>|z|)``), log scale.
    """

    def __init__(self, est):
        super().__init__(est)
        rec = est.fit_record_
        self.fit_statistics = pd.Series(
            {
                # the fitted model's, not the parameters' (set_params before a refit)
                "link": est.fit_result_.family.link.name,
                "threshold": est.fit_result_.family.threshold,
                "nobs": est.nobs_,
                "logLik": est.loglik_,
                "AIC": est.aic_,
                "niter": f"{rec.n_iter}({rec.n_evaluations})",
                "max.grad": rec.max_grad,
                "cond.H": _condition_number(rec.hessian),
            }
        )
        self.scale_effects = None
        if getattr(est, "_scale_design", None) is not None:
            self.scale_effects = est.scale_effects_.rename(columns=_COLUMNS)
        self.thresholds = est.threshold_coefficients_[["estimate", "std_error", "z_value"]].rename(
            columns={"estimate": "Estimate", "std_error": "Std. Error", "z_value": "z value"}
        )

    def __str__(self):
        est = self.est
        n_agq = fitted_n_agq(est) or 1
        method = (
            "the Laplace approximation"
            if n_agq == 1
            else "the adaptive Gauss-Hermite quadrature approximation with "
            f"{n_agq} quadrature points"
        )
        res = est.fit_result_
        kind = "Cumulative Link Mixed Model" if res.factors else "Cumulative Link Model"
        head = f"{kind} fitted with {method}" if res.factors else kind
        fs = self.fit_statistics
        cells = [
            fs["link"],
            fs["threshold"],
            str(fs["nobs"]),
            f"{fs['logLik']:.2f}",
            f"{fs['AIC']:.2f}",
            fs["niter"],
            f"{fs['max.grad']:.2e}",
            f"{fs['cond.H']:.1e}",
        ]
        widths = [max(len(k), len(c)) for k, c in zip(fs.index, cells)]
        # the thresholds are the intercepts: no "0 +", and "1" without fixed effects
        formula = model_formula(est).replace(" ~ 0 + ", " ~ " if res.fixed_names else " ~ 1 + ", 1)
        out = [head, "", f"formula: {formula}"]
        if self.scale_effects is not None:
            scale = getattr(est, "scale_formula_", None) or formula_of(est._scale_design)
            out.append(f"scale:   {scale}")
        out.append("")
        out.append(" " + " ".join(f"{k:<{w}}" for k, w in zip(fs.index, widths)))
        out.append(" " + " ".join(f"{c:<{w}}" for c, w in zip(cells, widths)))
        if res.factors:
            out += ["", "Random effects:"] + self._random_effects_lines()
            groups = ", ".join(f"{f.name} {f.n_levels}" for f in res.factors)
            out.append(f"Number of groups:  {groups}")
        out += ["", "Coefficients:"]
        out += self._coef_lines(self.fixed_effects) if len(self.fixed_effects) else [" (none)"]
        if self.scale_effects is not None:
            out += ["", "Scale coefficients:"] + self._coef_lines(self.scale_effects)
        out += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
        out += ["", "Threshold coefficients:"] + self._threshold_lines()
        if getattr(est, "is_singular_", False):
            out.append("boundary (singular) fit: see help('isSingular')")
        if not est.converged_:
            out.append("Warning: the model did not converge (see fit_record_).")
        return "\n".join(out)

    def _threshold_lines(self):
        t = self.thresholds
        width = max(12, max(len(str(n)) for n in t.index) + 1)
        lines = [f"{'':<{width}}{'Estimate':>11}{'Std. Error':>12}{'z value':>9}"]
        for name, r in t.iterrows():
            lines.append(
                f"{str(name):<{width}}{r['Estimate']:>11.4f}{r['Std. Error']:>12.4f}"
                f"{r['z value']:>9.3f}"
            )
        return lines


def _condition_number(H) -> float:
    if H is None or not np.all(np.isfinite(H)):
        return np.nan
    ev = np.linalg.eigvalsh(H)
    return float(ev[-1] / ev[0]) if ev[0] > 0 else np.inf
