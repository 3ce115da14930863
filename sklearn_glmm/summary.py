"""lme4-like summaries: printed text plus the same tables as DataFrames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._design import INTERCEPT
from ._dispersion import formula_of as dispersion_formula_of
from ._fit_result import fitted_n_agq
from ._state import pearson_quantiles


def _format_coef(v) -> str:
    """Six decimals, or four significant digits in exponent form where six decimals
    would print a non-zero value as 0.000000 (an effect per second) or take more than
    the column (lme4's printCoefmat switches to significant digits likewise)."""
    v = float(v)
    if np.isfinite(v) and v != 0.0 and (abs(v) < 1e-4 or abs(v) >= 1e5):
        return f"{v:.4e}"
    return f"{v:.6f}"


def _signif_stars(p):
    if not np.isfinite(p):
        return ""
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return ""


def _format_p(p):
    if not np.isfinite(p):
        return "NA"
    return "< 2e-16" if p < 2e-16 else f"{p:.3g}"


def _label_text(value) -> str:
    """A class label as Python writes it: 'no', 1, True (numpy scalars as plain values; a
    whole float as the integer it is, 1 for 1.0: a 0/1 outcome made float by a missing
    value)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def modelled_outcome(est) -> str | None:
    """Which probability a binomial model describes, e.g. ``P(y = 'no')``; None for counts."""
    if not est.fit_result_.family.has_trials:
        return None
    y = getattr(est, "_y_name", "y")
    if getattr(est, "_with_trials", False):
        return f"P(success), {y} = successes out of trials"
    return f"P({y} = {_label_text(getattr(est, 'pos_label_', est.classes_[1]))})"


def model_formula(est) -> str:
    """The model in R's formula notation, for display."""
    if getattr(est, "formula_", None):  # fitted through sklearn_glmm.formula
        return est.formula_
    lhs = getattr(est, "_y_name", "y")
    fixed = ([] if est.fit_intercept else ["0"]) + list(est.fit_result_.fixed_names)
    rhs = " + ".join(fixed) if fixed else "1"
    bars = []
    for f in est.fit_result_.factors:
        t = f.term
        if getattr(t, "structure", None) is not None:
            bars.append(f"{t.structure}(0 + factor({t.time}) | {f.name})")
            continue
        if getattr(t, "blocks", ()):  # a term per correlated block, as lme4's formula
            bars += [f"({text} | {f.name})" for text in t.block_texts()]
            continue
        inner = " + ".join((["1"] if t.intercept else ["0"]) + list(t.slopes))
        bars.append(f"({inner} {'||' if t.diagonal else '|'} {f.name})")
    return f"{lhs} ~ {' + '.join([rhs] + bars)}"


def undetermined_covariance(est) -> list:
    """The reported covariance parameters (``sd_arm|id``, ``cor_arm.(Intercept)|id``)
    that move along the fit's directions of equal likelihood
    (``fit_record_.unidentified``), or []."""
    record = est.fit_result_.record
    if (
        getattr(record, "unidentified", None) is None
        and getattr(record, "set_points", None) is None
    ):
        return []
    from ._confint import unidentified_parameters
    from ._param_map import ParamMap

    return unidentified_parameters(est, ParamMap(est))


def _limit_ridge_parameters(est) -> list:
    """The reported parameters that run along the fit's ridge to its family's limit
    distribution (``fit_record_.limit_ridge_moving``), or []."""
    if not getattr(est.fit_result_.record, "limit_ridge_moving", ()):
        return []
    from ._confint import limit_ridge_names
    from ._param_map import ParamMap

    return limit_ridge_names(est, ParamMap(est))


def random_effects_table(est) -> pd.DataFrame:
    """One row per random-effect term: Groups, Name, Variance, Std.Dev. and correlations.
    A factor's correlated blocks (``(1 + x | g) + (0 + z | g)``) are listed as lme4 lists
    them: each block's rows with the correlations within it, the second block's group
    named ``g.1``."""
    rows = []
    for f in est.fit_result_.factors:
        S = est.random_effects_cov_[f.name].to_numpy()
        sd = np.sqrt(np.clip(np.diag(S), 0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = S / np.outer(sd, sd)
        if getattr(f, "structure", None) is not None:
            rows += _structured_rows(est, f, S, sd)
            continue
        block = f.term.block_index
        blocks = bool(getattr(f.term, "blocks", ()))
        for k, name in enumerate(f.term.names):
            group = f"{f.name}.{block[k]}" if blocks and block[k] else f.name
            row = {"Groups": group, "Name": name, "Variance": S[k, k], "Std.Dev.": sd[k]}
            first = int(np.argmax(block == block[k])) if blocks else 0
            for j in range(first, k):
                # (effects of two blocks are uncorrelated by the model: no estimate)
                row[f"Corr{j - first + 1}"] = corr[k, j] if block[k] == block[j] else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _structured_rows(est, f, S, sd) -> list:
    """A structured factor's rows: every level's variance, and on the first row its
    structure's correlation parameter as glmmTMB prints it (``0.60 (ar1)``)."""
    st = f.structure
    res = est.fit_result_
    k = res.layout.n_beta
    for g in res.layout.factors:
        if g.structure is st:
            break
        k += len(g.theta_rows) if g.structure is None else g.structure.n_params
    values = st.reported(res.params[k : k + st.n_params])[st.n_sd :]
    if st.name == "toep":  # the correlation at each lag, one per row
        labels = ["(toep)"] + [f"lag {j}: {v:.2f}" for j, v in enumerate(values, start=1)]
    elif st.name == "ou":
        labels = [f"rate {values[0]:.4g} (ou)"]
    else:
        labels = [f"{values[0]:.2f} ({st.name})"]
    rows = []
    for j, name in enumerate(f.term.names):
        row = {"Groups": f.name, "Name": name, "Variance": S[j, j], "Std.Dev.": sd[j]}
        row["Structure"] = labels[j] if j < len(labels) else ""
        rows.append(row)
    return rows


def fixed_effects_correlation(est) -> pd.DataFrame:
    """The correlation matrix of the fixed-effect estimates (lme4's ``cov2cor(vcov(m))``);
    NaN where a standard error is NaN or zero."""
    V = est.fit_result_.vcov_fixed
    sd = np.sqrt(np.diag(V.to_numpy()))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = V.to_numpy() / np.outer(sd, sd)
    corr[~(np.outer(sd, sd) > 0)] = np.nan
    np.fill_diagonal(corr, np.where(sd > 0, 1.0, np.nan))
    return pd.DataFrame(corr, index=V.index, columns=V.columns)


def _abbreviate_one(name: str, minlength: int) -> str:
    """R's ``abbreviate(name, minlength)``: lower-case vowels dropped from the end, then
    other lower-case letters, then the end cut; the first character always kept."""
    chars = list(name.strip())
    for drop in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        k = len(chars) - 1
        while len(chars) > minlength and k > 0:
            if chars[k] in drop:
                del chars[k]
            k -= 1
    return "".join(chars[: max(minlength, 1)])


def abbreviate(names, minlength: int) -> list:
    """Abbreviations of ``names``, unique: names whose abbreviations collide get longer
    ones (as R's ``abbreviate`` does), up to the names themselves."""
    names = [str(n) for n in names]
    length = {n: minlength for n in names}
    while True:
        out = [_abbreviate_one(n, length[n]) for n in names]
        clash = {a for a in out if out.count(a) > 1}
        grow = [n for n, a in zip(names, out) if a in clash and length[n] < len(n)]
        if not grow:
            return [a if a not in clash else n for n, a in zip(names, out)]
        for n in grow:
            length[n] += 1


def correlation_lines(corr: pd.DataFrame, max_terms: int = 12) -> list:
    """lme4's "Correlation of Fixed Effects" block: the lower triangle, three decimals,
    rows and columns labelled by abbreviated names; over ``max_terms`` terms a note."""
    p = len(corr)
    if p < 2:
        return []
    if p > max_terms:
        return [
            "",
            f"Correlation matrix not shown by default, as p = {p} > {max_terms}.",
            "Use summary().fixed_effects_correlation or fit_result_.vcov_fixed if you need it",
        ]
    values = corr.to_numpy()
    cells = ["NA" if not np.isfinite(v) else f"{v:.3f}" for v in values.ravel()]
    width = max(len(c) for c in cells)
    cells = np.array([c.rjust(width) for c in cells], dtype=object).reshape(p, p)
    rows = abbreviate(corr.index, 11)[1:]
    cols = abbreviate(corr.columns, 6)[:-1]
    wr = max(len(r) for r in rows)
    wc = [max(len(c), width) for c in cols]
    lines = ["", "Correlation of Fixed Effects:"]
    lines.append(" " * wr + "".join(f" {c:<{w}}" for c, w in zip(cols, wc)))
    for i, r in enumerate(rows, start=1):
        entries = [cells[i, j] if j < i else "" for j in range(p - 1)]
        lines.append(f"{r:<{wr}}" + "".join(f" {e:<{w}}" for e, w in zip(entries, wc)))
    return lines


_COLUMNS = {
    "estimate": "Estimate",
    "std_error": "Std. Error",
    "z_value": "z value",
    "p_value": "Pr(>|z|)",
}


def zero_inflation_formula(est) -> str:
    """The zero-inflation model as glmmTMB writes it: ``~1``, ``~x``, ``~0 + x``."""
    if getattr(est, "ziformula_", None):  # fitted through sklearn_glmm.formula
        return est.ziformula_
    design = est.fit_result_.zi_design
    if design is None:
        return "~1"
    slopes = [n for n in design.names if n != INTERCEPT]
    return "~" + " + ".join(([] if design.intercept else ["0"]) + slopes)


def dispersion_formula(est) -> str:
    """The dispersion model as glmmTMB writes it: ``~1``, ``~x``, ``~0 + x``."""
    if getattr(est, "dispformula_", None):  # fitted through sklearn_glmm.formula
        return est.dispformula_
    return dispersion_formula_of(est.fit_result_.disp_design)


class Summary:
    """Summary of a fitted GLMM.

    Attributes
    ----------
    fit_statistics : pandas.Series
        AIC, BIC, logLik, -2logLik, df.resid.
    scaled_residuals : pandas.Series
        Quantiles of the Pearson residuals.
    random_effects : pandas.DataFrame
    fixed_effects : pandas.DataFrame
    dispersion : dict
        NB ``theta`` and the zero-inflation probability where the model has them.
    dispersion_model : pandas.DataFrame or None
        The dispersion model's coefficients (log scale) when it has predictors.
    fixed_effects_correlation : pandas.DataFrame
        The correlations of the fixed-effect estimates (lme4's "Correlation of Fixed
        Effects", printed for 2 to 12 terms as lme4 prints it).
    """

    def __init__(self, est):
        self.est = est
        self.fit_statistics = pd.Series(
            {
                "AIC": est.aic_,
                "BIC": est.bic_,
                "logLik": est.loglik_,
                "-2logLik": -2 * est.loglik_,
                "df.resid": est.df_resid_,
            }
        )
        self.scaled_residuals = pd.Series(
            pearson_quantiles(est), index=["Min", "1Q", "Median", "3Q", "Max"]
        )
        self.random_effects = random_effects_table(est)
        self.fixed_effects = est.fixed_effects_.rename(columns=_COLUMNS)
        self.fixed_effects_correlation = fixed_effects_correlation(est)
        # the zero-inflation coefficients (logit scale), as glmmTMB's "Zero-inflation model"
        zi = getattr(est, "zero_inflation_effects_", None)
        self.zero_inflation = None if zi is None else zi.rename(columns=_COLUMNS)
        # the dispersion model's coefficients (log scale), glmmTMB's "Dispersion model"
        disp = getattr(est, "dispersion_effects_", None)
        modelled = est.fit_result_.disp_design is not None
        self.dispersion_model = disp.rename(columns=_COLUMNS) if modelled else None
        # the family's own parameters, by their reported names (nb_theta, zi_prob)
        blocks = est.fit_result_.family.blocks
        self.dispersion = {b.reported: getattr(est, b.attribute) for b in blocks}

    def _header(self):
        est = self.est
        n_agq = fitted_n_agq(est) or 1
        method = (
            "Laplace Approximation"
            if n_agq == 1
            else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {n_agq}"
        )
        fam = est.fit_result_.family
        title = (
            f"Generalized linear mixed model fit by maximum likelihood ({method})"
            if est.fit_result_.factors
            else "Generalized linear model fit by maximum likelihood (no random effects)"
        )
        lines = [
            f"{title} [{type(est).__name__}]",
            f" Family: {fam.describe()}",
            f" Model: {model_formula(est)}",
        ]
        modelled = modelled_outcome(est)
        if modelled is not None:
            lines.append(f" Modelled: {modelled}")
        if fam.zero_inflated or fam.zero_formula is not None:
            # a hurdle's zero part too: glmmTMB's ziformula of a truncated family
            lines.append(f" Zero inflation: {zero_inflation_formula(est)}")
        if est.fit_result_.disp_design is not None:
            lines.append(f" Dispersion: {dispersion_formula(est)}")
        return lines

    def __str__(self):
        est = self.est
        out = self._header() + [""]
        fs = self.fit_statistics
        out.append("".join(f"{k:>10}" for k in fs.index))
        out.append("".join(f"{v:>10.1f}" for v in fs.iloc[:4]) + f"{int(fs['df.resid']):>10d}")
        out += ["", "Scaled residuals:"]
        out.append("".join(f"{k:>9}" for k in self.scaled_residuals.index))
        out.append("".join(f"{v:>9.4f}" for v in self.scaled_residuals))
        out += ["", "Random effects:"]
        out += self._random_effects_lines()
        ng = ", ".join(f"{f.name}, {f.n_levels}" for f in est.fit_result_.factors)
        out.append(f"Number of obs: {est.nobs_}" + (f", groups:  {ng}" if ng else ""))
        out += self._dispersion_lines()
        out += ["", "Fixed effects:"]
        out += self._coef_lines(self.fixed_effects)
        out += self._table_lines()
        out.append("---")
        out.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        out += correlation_lines(self.fixed_effects_correlation)
        if est.is_singular_:
            out.append("boundary (singular) fit: see help('isSingular')")
        free = undetermined_covariance(est)
        if free:
            out.append(
                f"not identified by the data: {', '.join(free)} (a random slope of a "
                "predictor of the level itself, or grouping factors that group the rows "
                "identically; shown, where the covariances are unstructured, at the point "
                "of largest determinant among those of equal likelihood)"
            )
        ridge = _limit_ridge_parameters(est)
        if ridge:
            limit = est.fit_result_.family.limit_ridge
            out.append(
                f"on a ridge towards {limit.limit}: {', '.join(ridge)} are where the "
                f"optimiser stopped on it; the data determine only {limit.identified}"
            )
        if not est.converged_:
            out.append("Warning: the model did not converge (see fit_record_).")
        return "\n".join(out)

    def _random_effects_lines(self):
        t = self.random_effects
        if t.empty:
            return [" (none)"]
        lines = [f" {'Groups':<12}{'Name':<16}{'Variance':>12}{'Std.Dev.':>11} Corr"]
        prev = None
        for _, row in t.iterrows():
            g = row["Groups"] if row["Groups"] != prev else ""
            prev = row["Groups"]
            corr = [row[c] for c in t.columns if c.startswith("Corr") and pd.notna(row.get(c))]
            cs = " ".join(f"{c:5.2f}" for c in corr)
            if isinstance(row.get("Structure"), str):
                cs = row["Structure"]
            lines.append(
                f" {g:<12}{row['Name']:<16}{row['Variance']:>12.4g}{row['Std.Dev.']:>11.4g} {cs}"
            )
        return lines

    def _coef_lines(self, table):
        # every name in full (lme4 does not cut them: treatment_group_A and _B differ
        # only at their end)
        w = max([16] + [len(str(name)) + 1 for name in table.index])
        lines = [f"{'':<{w}}{'Estimate':>12}{'Std. Error':>12}{'z value':>9}{'Pr(>|z|)':>10}"]
        for name, r in table.iterrows():
            p = r["Pr(>|z|)"]
            lines.append(
                f"{str(name):<{w}}{_format_coef(r['Estimate']):>12}"
                f"{_format_coef(r['Std. Error']):>12}"
                f"{r['z value']:>9.3f}{_format_p(p):>10} {_signif_stars(p)}"
            )
        return lines

    def _blocks(self, kind):
        """``(block, internal value or None, reported value)`` of the blocks shown as
        ``kind``; the internal value is None for a block with a design (no single one)."""
        est = self.est
        res = est.fit_result_
        x = res.params
        k = res.layout.n_beta + res.layout.n_theta
        designs = res.block_designs or (None,) * len(res.family.blocks)
        for b, design in zip(res.family.blocks, designs):
            if b.summary == kind:
                yield b, (None if design is not None else x[k]), getattr(est, b.attribute)
            k += 1 if design is None else len(design.names)

    def _dispersion_lines(self):
        fam = self.est.fit_result_.family
        return [
            f"\nDispersion parameter for {fam.r_name} family (): {value:.3g}"
            for _, internal, value in self._blocks("dispersion")
            if internal is not None  # a dispersion model is a table (_table_lines)
        ]

    def _table_lines(self):
        """Blocks shown as a coefficient table on the logit scale (zero inflation)."""
        est = self.est
        lines = []
        for b, internal, value in self._blocks("logit table"):
            table = est.zero_inflation_effects_.rename(columns=_COLUMNS)
            lines += ["", b.section] + self._coef_lines(table)
            if internal is None:
                lines.append(f"{b.label}, mean over the training rows: {value:.4g}")
                continue
            note = " (at its boundary)" if b.is_at_bound(internal) else ""
            lines.append(f"{b.label}: {value:.4g}{note}")
        if self.dispersion_model is not None:
            lines += ["", "Dispersion model:"] + self._coef_lines(self.dispersion_model)
            for b, internal, value in self._blocks("dispersion"):
                if internal is None:
                    lines.append(f"{b.label}, mean over the training rows: {value:.4g}")
        return lines

    def marginal(self, X=None, **kwargs) -> str:
        """The marginal (population-averaged) fixed effects, printed as the fixed effects are.

        The coefficients of :func:`sklearn_glmm.marginal.marginal_coefs` (the
        conditional mean integrated over the random effects, its link regressed on
        the rows ``X``, the training rows by default), with delta-method standard
        errors; ``kwargs`` go to ``marginal_coefs``.
        """
        from .marginal import marginal_coefs

        table = marginal_coefs(self.est, X, **kwargs).rename(
            columns={
                "estimate": "Estimate",
                "std_error": "Std. Error",
                "z_value": "z value",
                "p_value": "Pr(>|z|)",
            }
        )
        lines = ["Marginal (population-averaged) fixed effects:"] + self._coef_lines(table)
        lines.append("---")
        lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return "\n".join(lines)

    def __repr__(self):
        return self.__str__()
