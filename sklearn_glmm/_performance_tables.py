"""pandas results of :mod:`sklearn_glmm.performance` that print as R's performance does.

The results are ordinary DataFrames and Series with a heading and a verdict
added to their text representation; anything made from them (a slice, a copy,
arithmetic) is a plain pandas object.
"""

from __future__ import annotations

import html

import pandas as pd


def _text(obj, base: str) -> str:
    parts = [f"# {obj.title}" if obj.title else None, obj.body or base, obj.note]
    return "\n\n".join(p for p in parts if p)


def _html(obj, base: str) -> str:
    head = f"<p><b>{html.escape(obj.title)}</b></p>" if obj.title else ""
    body = f"<pre>{html.escape(obj.body)}</pre>" if obj.body else base
    note = f"<p>{html.escape(obj.note)}</p>" if obj.note else ""
    return head + body + note


class CheckTable(pd.DataFrame):
    """A DataFrame with a heading and a verdict in its printed form.

    Attributes
    ----------
    title : str
        Heading (``performance``'s, e.g. ``"Overdispersion test"``).
    note : str
        The verdict printed under the table.
    detected : bool or None
        Whether the check found what it looks for (overdispersion, zero
        inflation, a singular fit, ...); None where the check has no verdict.
    body : str or None
        Text printed instead of the table (a key = value layout), or None.
    """

    _metadata = ["title", "note", "detected", "body"]

    @property
    def _constructor(self):
        # slices, copies and arithmetic give plain DataFrames
        return pd.DataFrame

    def __repr__(self) -> str:
        return _text(self, pd.DataFrame(self).__repr__())

    def _repr_html_(self) -> str:
        return _html(self, pd.DataFrame(self)._repr_html_())


class CheckSeries(pd.Series):
    """A Series with a heading and a note in its printed form (see :class:`CheckTable`)."""

    _metadata = ["title", "note", "detected", "body"]

    @property
    def _constructor(self):
        return pd.Series

    @property
    def _constructor_expanddim(self):
        return pd.DataFrame

    def __repr__(self) -> str:
        return _text(self, pd.Series(self).__repr__())

    def _repr_html_(self) -> str:
        return _html(self, f"<pre>{html.escape(pd.Series(self).__repr__())}</pre>")


def with_text(obj, title: str, note: str = "", detected=None, body: str | None = None):
    """Set the printed heading, verdict and body of a :class:`CheckTable` / :class:`CheckSeries`."""
    obj.title, obj.note, obj.detected, obj.body = title, note, detected, body
    return obj


def key_values(pairs, digits: int = 3) -> str:
    """``performance``'s ``name = value`` block, right-aligned on the ``=``."""
    values = [_fmt(v, digits) for _, v in pairs]
    width_k = max(len(k) for k, _ in pairs)
    width_v = max(len(v) for v in values)
    return "\n".join(f"{k:>{width_k}} = {v:>{width_v}}" for (k, _), v in zip(pairs, values))


def _fmt(value, digits: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def format_p(p: float, digits: int = 3) -> str:
    """A p-value as performance prints it: rounded, ``< 0.001`` when smaller."""
    if p != p:  # NaN
        return "NA"
    return "< 0.001" if round(p, digits) < 10.0**-digits else f"{p:.{digits}f}"


def stars(p: float) -> str:
    """R's significance codes."""
    if p != p:
        return ""
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


def vif_body(table: pd.DataFrame) -> str:
    """performance's layout: low (< 5), moderate (5-10) and high (>= 10) correlation."""
    shown = pd.DataFrame(
        {
            "Term": table["Term"],
            "VIF": table["VIF"].map(lambda v: f"{v:.2f}"),
            "VIF 95% CI": [
                f"[{lo:.2f}, {hi:.2f}]" for lo, hi in table[["VIF_CI_low", "VIF_CI_high"]].values
            ],
            "Increased SE": table["SE_factor"].map(lambda v: f"{v:.2f}"),
            "Tolerance": table["Tolerance"].map(lambda v: f"{v:.2f}"),
            "Tolerance 95% CI": [
                f"[{lo:.2f}, {hi:.2f}]"
                for lo, hi in table[["Tolerance_CI_low", "Tolerance_CI_high"]].values
            ],
        }
    )
    parts = []
    for label, mask in (
        ("Low Correlation", table["VIF"] < 5),
        ("Moderate Correlation", (table["VIF"] >= 5) & (table["VIF"] < 10)),
        ("High Correlation", table["VIF"] >= 10),
    ):
        if mask.any():
            parts.append(f"{label}\n\n{shown[mask.to_numpy()].to_string(index=False)}")
    return "\n\n".join(parts)


def anova_body(table: pd.DataFrame, response: str) -> str:
    """car's printout: the table with formatted p-values and significance stars."""
    shown = pd.DataFrame(
        {
            "Chisq": table["Chisq"].map(lambda v: f"{v:.4f}"),
            "Df": table["Df"],
            "Pr(>Chisq)": table["Pr(>Chisq)"].map(
                lambda p: "NA" if p != p else f"{p:.4g}" if p >= 2.2e-16 else "< 2.2e-16"
            ),
            "": table["Pr(>Chisq)"].map(stars),
        },
        index=list(table.index),
    )
    codes = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"
    return f"Response: {response}\n{shown.to_string()}\n---\n{codes}"
