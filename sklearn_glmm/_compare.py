"""Model comparison: likelihood-ratio tests between nested fits and AIC/BIC tables.

Nesting is checked on the fitted models themselves (column spans and
grouping partitions), not on feature names, so ``anova`` refuses a
comparison R would print without complaint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils.validation import check_is_fitted

from ._fit_result import fitted_n_agq
from ._validation import reads_fitted_models
from ._warn import user_stacklevel, warn


def _fit_info(est):
    check_is_fitted(est, "coef_")
    d = est.fit_result_.objective.data
    fam = est.fit_result_.family
    base = fam.base.name if fam.zero_inflated else fam.name
    return dict(data=d, base=base, zi=fam.zero_inflated, npar=est.n_params_)


# the words for a family block's model, by its prefix
_PARTS = {"zi": "zero-inflation", "disp": "dispersion"}


def _block_design(data, prefix):
    """The design of the family's block ``prefix`` ("zi", "disp") on the training rows: a
    column of ones for a constant block, None when the family has no such block."""
    blocks = data.family.blocks
    k = next((i for i, b in enumerate(blocks) if b.prefix == prefix), None)
    if k is None:
        return None
    D = None if data.extra_designs is None else data.extra_designs[k]
    return np.ones((len(data.y), 1)) if D is None else D


def _same_data(models, names):
    d0 = models[0].fit_result_.objective.data
    kind0 = models[0].fit_result_.family.has_trials
    for m, nm in zip(models[1:], names[1:]):
        d = m.fit_result_.objective.data
        if m.fit_result_.family.has_trials != kind0:
            raise ValueError(
                f"{names[0]} and {nm} model different kinds of outcome (binomial vs counts); "
                "their likelihoods cannot be compared."
            )
        same = (
            len(d.y) == len(d0.y)
            and np.array_equal(d.y, d0.y)
            and np.array_equal(d.trials, d0.trials)
            and np.array_equal(d.weights, d0.weights)
        )
        if not same:
            if len(d.y) != len(d0.y):
                what = f"{len(d0.y)} vs {len(d.y)} rows"
            else:
                what = (
                    f"both have {len(d.y)} rows, but their outcomes, trials or weights differ "
                    "row by row: other rows, or the same rows in another order"
                )
            raise ValueError(
                f"{names[0]} and {nm} were not fitted to the same data ({what}); refit both "
                "on the same rows, in the same order (as lme4's anova requires)."
            )
    # a model without random effects has an exact likelihood: comparable with any
    approx = {fitted_n_agq(m) for m in models} - {None}
    if len(approx) > 1:
        warn(
            "the models use different likelihood approximations (n_agq differs: "
            f"{sorted(approx)}); their log-likelihoods are not strictly comparable.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _in_span(A, B, tol=1e-7):
    """Whether every column of A lies in the column span of B."""
    if A.shape[1] == 0:
        return True
    if B.shape[1] == 0:
        return False
    coef, *_ = np.linalg.lstsq(B, A, rcond=None)
    resid = np.linalg.norm(A - B @ coef, axis=0)
    return bool(np.all(resid <= tol * (1.0 + np.linalg.norm(A, axis=0))))


def _same_partition(c1, c2):
    pairs = len(pd.MultiIndex.from_arrays([c1, c2]).unique())
    return pairs == len(np.unique(c1)) == len(np.unique(c2))


_FAMILY_NESTS = {  # small -> bigger families it is a boundary case of
    # Poisson: NB2 as theta -> infinity, NB1 as phi -> 0, zero inflation at 0
    ("poisson", False): {
        ("negbin", False),
        ("negbin1", False),
        ("poisson", True),
        ("negbin", True),
        ("negbin1", True),
    },
    ("negbin", False): {("negbin", True)},
    ("negbin1", False): {("negbin1", True)},
    ("poisson", True): {("negbin", True), ("negbin1", True)},
    # the Poisson count part of a hurdle or zero-truncated model: NB2 as theta -> infinity,
    # NB1 as phi -> 0
    # the binomial: the beta-binomial as its dispersion phi -> infinity
    ("binomial", False): {("betabinomial", False)},
    ("hurdle_poisson", False): {("hurdle_negbin", False), ("hurdle_negbin1", False)},
    ("truncated_poisson", False): {("truncated_negbin", False), ("truncated_negbin1", False)},
}


def _nesting(small, big):
    """None when ``small`` is nested in ``big``; otherwise the reason it is not."""
    s, b = _fit_info(small), _fit_info(big)
    fs, fb = (s["base"], s["zi"]), (b["base"], b["zi"])
    if fs != fb and fb not in _FAMILY_NESTS.get(fs, set()):
        return (
            f"family {fs[0]}{' (zero-inflated)' if fs[1] else ''} is not a special case of "
            f"{fb[0]}{' (zero-inflated)' if fb[1] else ''}"
        )
    link_s, link_b = small.fit_result_.family.link.name, big.fit_result_.family.link.name
    if link_s != link_b:
        # one link's models are not a special case of another's
        return f"its link ({link_s}) is not the larger model's ({link_b})"
    ds, db = s["data"], b["data"]
    if not np.allclose(ds.offset, db.offset):
        return "the offsets differ"
    prefixes = {b.prefix for d in (ds, db) for b in d.family.blocks if b.prefix}
    for prefix in sorted(prefixes):
        part = _PARTS.get(prefix, prefix)
        Ds, Db = _block_design(ds, prefix), _block_design(db, prefix)
        if Ds is not None and Db is not None and not _in_span(Ds, Db):
            return f"its {part} model is not a subset of the larger model's"
        # a block only the smaller model has (zero inflation, a dispersion: their
        # families already differ; scale effects) is not nested in a model without it
        if Ds is not None and Db is None:
            return f"it has a {part} model, which the larger model has not"
    if not _in_span(ds.X, db.X):
        return "its fixed effects are not a subset of the larger model's"
    for fa, fca in zip(ds.factors, small.fit_result_.factors):
        match = [
            (fb_, fcb)
            for fb_, fcb in zip(db.factors, big.fit_result_.factors)
            if len(fb_.codes) == len(fa.codes) and _same_partition(fa.codes, fb_.codes)
        ]
        if not match:
            return f"grouping factor {fca.name!r} does not appear in the larger model"
        fb_, fcb = match[0]
        if not _in_span(fa.Z, fb_.Z):
            return (
                f"its random-effect terms for {fca.name!r} are not a subset of the larger model's"
            )
        why = _block_nesting(fa, fca, fb_, fcb)
        if why is not None:
            return f"its random-effect terms for {fca.name!r} {why}"
    return None


def _block_nesting(fa, fca, fb_, fcb):
    """None when a factor's covariance block in the smaller model (``fa``, already in
    the span of the larger's ``fb_``) is a special case of the larger's; otherwise why
    it is not. An unstructured block holds every covariance of its span; a diagonal
    one only those of a subset of its own columns without correlations; blocks of
    correlated columns those of columns each block of which lies in one of its blocks; a
    structured one (``ar1``, ``cs``, ...) the kinds its class lists in ``nests``."""
    big = getattr(fb_, "structure", None)
    big = None if big is None or big.identity else big
    if big is None and not fcb.term.diagonal and not fcb.term.blocks:
        return None
    if big is None and fcb.term.blocks:
        if _within_blocks(fa, fca, fb_, fcb):
            return None
        return "are not within the larger model's blocks of correlated terms"
    kind = _block_kind(fa, fca, fb_)
    if big is None:
        if kind == "diagonal":
            return None
        return "are not a subset of the larger model's uncorrelated terms"
    if kind == big.name or kind in big.nests:
        return None
    what = {"intercept": "a random intercept", "diagonal": "uncorrelated terms"}.get(
        kind, f"{kind}({fca.term.time})" if kind else "their covariance"
    )
    return f"({what}) are not a special case of {big.name}({fcb.term.time})"


def _within_blocks(fa, fca, fb_, fcb) -> bool:
    """Whether the smaller model's block (``fa``) is a special case of the larger's blocks
    of correlated columns (``fcb.term.blocks``): uncorrelated effects of some of its own
    columns, a random intercept where it has one, or columns of its own each correlated
    block of which lies within one of the larger's."""
    kind = _block_kind(fa, fca, fb_)
    if kind == "diagonal" or (kind == "intercept" and fcb.term.intercept):
        return True
    names, big = fca.term.names, fcb.term.names
    if fca.term.structure is not None or not set(names) <= set(big):
        return False
    small_block, big_block = fca.term.block_index, fcb.term.block_index
    where = {n: big_block[big.index(n)] for n in names}
    return all(
        where[a] == where[b]
        for i, a in enumerate(names)
        for j, b in enumerate(names)
        if small_block[i] == small_block[j]
    )


def _block_kind(fa, fca, fb_):
    """What the smaller model's block is in the larger's columns: ``"intercept"`` (one
    constant column), ``"diagonal"`` (uncorrelated effects of some of the larger's own
    columns), a structure's name (the same columns), or None."""
    own = getattr(fa, "structure", None)
    if own is not None and not own.identity:
        same = fa.q == fb_.q and np.allclose(fa.Z, fb_.Z)
        return fca.term.structure if same else None
    A = np.linalg.lstsq(fb_.Z, fa.Z, rcond=None)[0]  # fa.Z = fb_.Z A
    big_entries = np.abs(A) > 1e-8 * np.max(np.abs(A), axis=0, keepdims=True)
    own_columns = np.all(big_entries.sum(axis=0) == 1) and np.all(big_entries.sum(axis=1) <= 1)
    if own_columns and (fa.q == 1 or fca.term.diagonal):
        return "diagonal"
    if fa.q == 1 and np.ptp(fa.Z[:, 0]) == 0.0:
        return "intercept"
    return None


def _boundary_mixture(small, big):
    """Degrees of freedom (k) for a 50:50 chi-bar-square (chi2(k-1), chi2(k)), or None."""
    s, b = _fit_info(small), _fit_info(big)
    df = b["npar"] - s["npar"]
    same_x = s["data"].n_beta == b["data"].n_beta
    q_s = sum(f.q for f in s["data"].factors)
    q_b = sum(f.q for f in b["data"].factors)
    fam_same = (s["base"], s["zi"]) == (b["base"], b["zi"])
    if any(_changed_structure(f, s["data"].factors) for f in b["data"].factors):
        # a structured block nests a smaller one at a boundary of its correlations
        # (a random intercept at correlation 1), not at an added variance of zero
        return None
    if fam_same and same_x and q_b == q_s + 1:
        return df  # one added variance (+ its correlations)
    if not fam_same and same_x and q_b == q_s and df == 1:
        return 1  # NB theta -> infinity, or zero-inflation -> 0
    return None


def _changed_structure(fb_, small_factors) -> bool:
    """Whether ``fb_`` is a structured block the smaller model has not as it is."""
    st = getattr(fb_, "structure", None)
    if st is None or st.identity:
        return False
    for fa in small_factors:
        own = getattr(fa, "structure", None)
        if (
            own is not None
            and own.name == st.name
            and fa.q == fb_.q
            and len(fa.codes) == len(fb_.codes)
            and _same_partition(fa.codes, fb_.codes)
        ):
            return False
    return True


def unidentified_count(est) -> int:
    """How many of a fit's parameters the data do not identify: those of a covariance
    the levels do not identify (a slope of a two-valued level predictor), counted from
    the design (``fit_record_.n_unidentified``), whatever the point the fit ended at."""
    record = getattr(est, "fit_record_", None)
    count = getattr(record, "n_unidentified", None)
    if count is not None:
        return int(count)
    N = getattr(record, "unidentified", None)
    return 0 if N is None else int(N.shape[1])


def tested_df(small, big) -> int:
    """Degrees of freedom of the likelihood-ratio test of ``small`` in ``big``: the
    difference in the parameters the data identify (R's anova counts every parameter:
    ``(1 | id)`` against ``(1 + arm | id)`` with a two-valued arm adds one identified
    variance, the second arm's, and R's Df is 2)."""
    return (big.n_params_ - unidentified_count(big)) - (small.n_params_ - unidentified_count(small))


def lrt_p_values(small, big, chisq: float) -> tuple[float, float, str]:
    """Likelihood-ratio p-values of ``small`` (nested) against ``big``.

    Returns the chi-square p-value on :func:`tested_df` degrees of freedom (as R prints
    where every parameter is identified), the 50:50 chi-bar-square p-value when the
    test puts one variance on its boundary (NaN otherwise, and for a fit with
    parameters the data do not identify, whose boundary is not that of its
    parameters) and the name of that mixture ("" otherwise).
    """
    df = tested_df(small, big)
    if df <= 0:
        return np.nan, np.nan, ""
    # a statistic within the fits' rounding of 0 is 0 (its sign is noise: the
    # chi-bar p-value was 1 at -1e-7 and 0.49999 at +6e-11)
    chisq = 0.0 if chisq < 1e-6 else chisq
    p = float(stats.chi2.sf(chisq, df))
    if unidentified_count(small) or unidentified_count(big):
        return p, np.nan, ""
    k = _boundary_mixture(small, big)
    if k is None:
        return p, np.nan, ""
    p1 = stats.chi2.sf(chisq, k)
    p0 = stats.chi2.sf(chisq, k - 1) if k > 1 else float(chisq <= 0)
    return p, float(0.5 * p0 + 0.5 * p1), f"0.5*chi2({k - 1}) + 0.5*chi2({k})"


def unidentified_df_warning(small_name, small, big_name, big) -> None:
    """Say that a test's Df counts the identified parameters only (R's counts all)."""
    which = [
        f"{name} ({unidentified_count(m)})"
        for name, m in ((small_name, small), (big_name, big))
        if unidentified_count(m)
    ]
    warn(
        f"{' and '.join(which)}: parameters the data do not identify (a covariance the "
        "levels do not identify, see the fit's StandardErrorWarning). The likelihood-ratio "
        f"test of {small_name} in {big_name} has Df {tested_df(small, big)}, the difference "
        f"in identified parameters (R's anova counts every parameter: "
        f"{big.n_params_ - small.n_params_}), and no chi-bar p-value.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def nested_in(small, big) -> bool:
    """Is ``small`` a special case of ``big`` (both fitted to the same data)?"""
    return small.n_params_ < big.n_params_ and _nesting(small, big) is None


def _checked_models(models, names, minimum: int, too_few: str) -> list[str]:
    """Row names for fitted models of the same data; the checks both tables share."""
    if len(models) < minimum:
        raise ValueError(too_few)
    names = list(names) if names is not None else [f"model{i + 1}" for i in range(len(models))]
    if len(names) != len(models):
        raise ValueError(f"got {len(names)} names for {len(models)} models.")
    for m in models:
        check_is_fitted(m, "coef_")
    _same_data(models, names)
    return names


@reads_fitted_models
def anova(
    *models, names=None, check_nested: bool = True, n_boot=None, random_state=None
) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits, as R's ``anova(m1, m2, ...)``.

    Rows are sorted by the number of parameters (stably, as R does) and each
    row is tested against the one above it.

    Parameters
    ----------
    *models : fitted estimators
        Fitted to the same rows and outcome; each nested in the next larger one.
    names : list of str, default=None
        Row names (default ``model1``, ``model2``, ... in the order given).
    check_nested : bool, default=True
        Refuse models that are not nested (fixed-effect and random-effect
        columns are checked for containment, not by name; Poisson is nested in
        negative binomial and both in their zero-inflated versions).
    n_boot : int, default=None
        Also a parametric-bootstrap p-value (pbkrtest's ``PBmodcomp``): ``n_boot``
        data sets simulated from the smaller model, refitted by both; the p-value is
        ``(1 + #{LR_b >= LR}) / (1 + n)`` over the ``n`` replicates whose refits
        converged (column ``Pr(>Chisq) boot``; ``table.attrs["bootstrap"]`` holds each
        pair's statistics). It needs no chi-square or chi-bar approximation: for a
        variance tested at 0 with few groups, or a fixed effect with few groups.
    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap's simulations.

    Returns
    -------
    table : pandas.DataFrame
        R's columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``
        (``Pr(>Chisq)`` is the chi-square p-value R prints), plus
        ``Pr(>Chisq) chi-bar``: when the larger model adds one variance
        component (with its correlations), NB overdispersion or zero inflation,
        the null value lies on the boundary and the reference distribution is
        the 50:50 mixture named in ``chi-bar mixture`` (Self & Liang 1987;
        Stram & Lee 1994); the naive p-value is then conservative.
    """
    names = _checked_models(models, names, 2, "anova needs at least two fitted models.")
    order = sorted(range(len(models)), key=lambda i: models[i].n_params_)
    ms, ns = [models[i] for i in order], [names[i] for i in order]
    rows, boot = [], {}
    for j, m in enumerate(ms):
        row = {
            "npar": m.n_params_,
            "AIC": m.aic_,
            "BIC": m.bic_,
            "logLik": m.loglik_,
            "deviance": -2.0 * m.loglik_,
            "Chisq": np.nan,
            "Df": np.nan,
            "Pr(>Chisq)": np.nan,
            "Pr(>Chisq) chi-bar": np.nan,
            "chi-bar mixture": "",
        }
        if j > 0:
            prev = ms[j - 1]
            if check_nested:
                why = _nesting(prev, m)
                if why is not None:
                    raise ValueError(
                        f"{ns[j - 1]} is not nested in {ns[j]}: {why}. A likelihood-ratio test "
                        "needs nested models; use compare_models() for AIC/BIC."
                    )
            chisq = 2.0 * (m.loglik_ - prev.loglik_)
            df = tested_df(prev, m)
            if df != m.n_params_ - prev.n_params_:
                unidentified_df_warning(ns[j - 1], prev, ns[j], m)
            if chisq < -1e-3:
                warn(
                    f"{ns[j]} has a lower log-likelihood than the smaller {ns[j - 1]}: a fit did "
                    "not reach its optimum.",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            row.update(Chisq=chisq, Df=df)
            p, p_bar, mixture = lrt_p_values(prev, m, chisq)
            row["Pr(>Chisq)"] = p
            if mixture:
                row["Pr(>Chisq) chi-bar"], row["chi-bar mixture"] = p_bar, mixture
            if n_boot is not None:
                p_boot, boot[ns[j]] = _bootstrap_p(prev, m, chisq, n_boot, random_state, ns[j])
                row["Pr(>Chisq) boot"] = p_boot
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(ns, name="model"))
    if n_boot is not None:
        table.attrs["bootstrap"] = boot
    table["npar"] = table["npar"].astype(int)
    table["Df"] = table["Df"].astype("Int64")
    table.attrs["note"] = (
        "Pr(>Chisq) is the chi-square p-value (as R prints); Pr(>Chisq) chi-bar uses the "
        "boundary mixture in 'chi-bar mixture' where a variance is tested at 0."
    )
    return table


def _bootstrap_p(small, large, chisq, n_boot, random_state, name):
    """The parametric-bootstrap p-value of ``chisq`` (:func:`anova`'s ``n_boot``) and the
    replicates' statistics (NaN where left out, with a warning)."""
    from ._simulate import bootstrap_lrt

    lr = bootstrap_lrt(small, large, n_boot, random_state)
    used = lr[np.isfinite(lr)]
    if len(used) < len(lr):
        warn(
            f"anova: {len(lr) - len(used)} of {len(lr)} bootstrap replicates for {name!r} "
            "were left out (a refit failed or did not converge); the p-value uses the other "
            f"{len(used)}.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if not len(used):
        return np.nan, lr
    return float((1 + np.sum(used >= chisq - 1e-8 * max(1.0, abs(chisq)))) / (1 + len(used))), lr


@reads_fitted_models
def compare_models(*models, names=None, sort: bool = True) -> pd.DataFrame:
    """AIC/BIC table across any fits to the same data (nested or not).

    Columns ``npar, logLik, AIC, dAIC, AIC_weight, BIC, dBIC``; ``AIC_weight``
    are Akaike weights. Sorted by AIC unless ``sort=False``.

    Examples
    --------
    >>> compare_models(poisson_fit, negbin_fit, zip_fit,
    ...                names=["Poisson", "NB", "ZIP"])  # doctest: +SKIP
    """
    names = _checked_models(models, names, 1, "compare_models needs at least one fitted model.")
    aic = np.array([m.aic_ for m in models])
    bic = np.array([m.bic_ for m in models])
    rel = np.exp(-0.5 * (aic - aic.min()))
    table = pd.DataFrame(
        {
            "npar": [m.n_params_ for m in models],
            "logLik": [m.loglik_ for m in models],
            "AIC": aic,
            "dAIC": aic - aic.min(),
            "AIC_weight": rel / rel.sum(),
            "BIC": bic,
            "dBIC": bic - bic.min(),
        },
        index=pd.Index(names, name="model"),
    )
    return table.sort_values("AIC", kind="stable") if sort else table
