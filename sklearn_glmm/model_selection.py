"""Model selection for mixed models: scorers that mean something, and information criteria.

Two tools sit on top of the estimators:

- **Scorers** for cross-validation and grid search: the mean predictive
  log-likelihood and the mean deviance of the fitted family
  (:func:`make_glmm_scorer`, :func:`get_scorer`). Rows whose group was seen in
  training are predicted conditionally on its random effects; rows of new
  groups get the population-level prediction averaged over the random-effect
  distribution. A scorer learns the groups of the test rows either from
  ``group_columns`` (read from a DataFrame ``X``) or, with metadata routing,
  from ``scorer.set_score_request(groups=True)``.
- **Information-criterion selection** without cross-validation
  (:func:`compare_structures`): fit candidate random-effect structures on the
  same data, rank them by AIC or BIC and test each against its closest nested
  candidate by a likelihood-ratio test, as lme4's ``anova(m1, m2, ...)``.

Examples
--------
>>> from sklearn_glmm import PoissonGLMM
>>> from sklearn_glmm.datasets import make_longitudinal
>>> from sklearn_glmm.model_selection import compare_structures
>>> df, _ = make_longitudinal("poisson", n_groups=80, slope_sd=0.3, random_state=0)
>>> cmp = compare_structures(
...     PoissonGLMM(), ["1", "1 + time"], df[["time", "treatment"]], df["y"], groups=df["id"]
... )
>>> cmp.best_params_
{'random_effects': '1 + time'}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import logsumexp
from sklearn import get_config
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer as _sk_get_scorer
from sklearn.metrics import get_scorer_names as _sk_get_scorer_names
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.parallel import Parallel, delayed

from ._base import _BaseGLMM
from ._compare import lrt_p_values, nested_in, tested_df, unidentified_df_warning
from ._config import with_config
from ._engine.blocks import rows_of
from ._engine.families.base import _NODE_CELLS, pmf_rule
from ._engine.normal_average import log_mean_density
from ._fit_result import fitted_n_agq
from ._state import carrying_data
from ._validation_rows import check_rows_aligned
from ._warn import recorded, user_stacklevel, warn

__all__ = [
    "GLMMScorer",
    "StructureComparison",
    "compare_structures",
    "get_scorer",
    "get_scorer_names",
    "make_glmm_scorer",
    "mean_absolute_class_error",
    "mean_deviance",
    "mean_log_likelihood",
    "ordinal_log_loss",
    "pointwise_log_likelihood",
]

_METRICS = (
    "mean_log_likelihood",
    "neg_mean_deviance",
    "neg_ordinal_log_loss",
    "neg_mean_absolute_class_error",
)
_METADATA = ("groups", "offset", "trials", "sample_weight")


# -- predictive log-likelihood and deviance -----------------------------------------
def _final_model(estimator, X):
    """The fitted GLMM at the end of ``estimator`` and ``X`` transformed up to it."""
    while True:
        if isinstance(estimator, Pipeline):
            if len(estimator) > 1:
                X = estimator[:-1].transform(X)
            estimator = estimator[-1]
        elif hasattr(estimator, "best_estimator_"):  # a fitted search
            estimator = estimator.best_estimator_
        else:
            break
    if not isinstance(estimator, _BaseGLMM):
        raise TypeError(
            "GLMM scorers need a fitted BinomialGLMM, PoissonGLMM, NegBinGLMM or OrdinalGLMM "
            "(possibly at the "
            f"end of a Pipeline), got {type(estimator).__name__}."
        )
    return estimator, X


def _outcome(model, y, trials):
    """``y`` as numbers (successes for binomial, class indices for an ordinal model) and
    the trials of every row."""
    n = len(y)
    encode = getattr(model, "_encode_outcome", None)
    if encode is not None:
        return encode(y), np.ones(n)
    if not model.fit_result_.family.has_trials:
        return np.asarray(y, dtype=float), np.ones(n)
    if trials is not None and not getattr(model, "_with_trials", False):
        # a model of 0/1 labels: y holds labels (pos_label_ the modelled one), whatever
        # trials of one say; read as successes they scored the other class with
        # pos_label=0
        if np.any(np.asarray(trials, dtype=float) != 1.0):
            raise ValueError(
                "trials were given, but the model was fitted to 0/1 outcomes without "
                "trials: its scores read y as its labels."
            )
        trials = None
    if trials is not None:
        return np.asarray(y, dtype=float), np.asarray(trials, dtype=float)
    if getattr(model, "_with_trials", False):
        # successes out of trials, not labels: rows of 0 or 1 successes would otherwise
        # be read as 0/1 labels of one trial each, without a word
        raise ValueError(
            "this model was fitted to successes out of trials: pass the rows' trials "
            "(trials=...; in cross-validation, with metadata routing: "
            "scorer.set_score_request(trials=True))."
        )
    y = np.asarray(y)
    classes = model.classes_
    unknown = ~np.isin(y, classes)
    if unknown.any():
        raise ValueError(
            f"y has {int(unknown.sum())} value(s) that are not classes seen in fit "
            f"({list(classes)}). For successes out of trials, pass trials=... (with metadata "
            "routing: scorer.set_score_request(trials=True))."
        )
    # the model describes P(y = pos_label_)
    return (y == getattr(model, "pos_label_", classes[1])).astype(float), np.ones(n)


def _predictive(estimator, X, y, groups, offset, trials, population):
    check_rows_aligned(X, {"y": y, "trials": trials})
    model, Xt = _final_model(estimator, X)
    eta, var = model._linear_predictor(Xt, groups, offset, population)
    yv, t = _outcome(model, y, trials)
    return model, Xt, eta, var, yv, t


def pointwise_log_likelihood(
    estimator, X, y, *, groups=None, offset=None, trials=None, population="marginal"
) -> np.ndarray:
    r"""Log predictive density of every row: :math:`\log p(y_i \mid x_i)`.

    Rows of groups seen in training are conditional on their random-effect
    modes. Rows of new groups (or all rows when no groups are known) integrate
    the random effect out, :math:`\log \int p(y_i \mid \eta_i + z_i^\top b)\,
    \phi(b)\, db`, each row by its own rule around the integrand's peak (the
    probability of a count ``k`` is a bump about ``1 / sqrt(k)`` wide in the linear
    predictor; see :doc:`/sklearn_workflows`), unless ``population="zero"``, which
    sets it to zero (lme4's ``re.form = NA``).

    Parameters
    ----------
    estimator : fitted GLMM, or a fitted Pipeline or search ending in one
    X : array-like or DataFrame of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Labels for ``BinomialGLMM`` (or successes with ``trials``); counts otherwise.
    groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
        Grouping factor(s) of the rows; ``None`` reads ``group_columns`` from ``X``.
    offset, trials : array-like of shape (n_samples,), default=None
    population : {"marginal", "zero"}, default="marginal"

    Returns
    -------
    loglik : ndarray of shape (n_samples,)
    """
    model, Xt, eta, var, yv, t = _predictive(estimator, X, y, groups, offset, trials, population)
    fam, extra = model.fit_result_.family, model._family_values(Xt, column=True)
    if not len(var):
        return np.zeros(0)
    adaptive = log_mean_density(fam, yv, eta, np.sqrt(var), t, model._family_values(Xt))
    if adaptive is not None:
        return adaptive
    z, w = pmf_rule(fam, float(np.sqrt(np.max(var))), yv, t)
    sd, log_w = np.sqrt(var), np.log(w)[None, :]
    out = np.empty(len(eta))
    step = max(1, _NODE_CELLS // len(z))  # rows x nodes at once
    for i in range(0, len(eta), step):
        r = slice(i, i + step)
        nodes = eta[r, None] + sd[r, None] * z[None, :]
        ones = np.ones_like(nodes)
        ll = fam.derivs(yv[r, None], nodes, t[r, None], ones, rows_of(extra, r)).loglik
        out[r] = logsumexp(ll + log_w, axis=1)
    return out


def mean_log_likelihood(
    estimator,
    X,
    y,
    *,
    groups=None,
    offset=None,
    trials=None,
    sample_weight=None,
    population="marginal",
) -> float:
    """Mean log predictive density (higher is better); see :func:`pointwise_log_likelihood`.

    For a 0/1 outcome this is minus scikit-learn's ``log_loss``.
    """
    ll = pointwise_log_likelihood(
        estimator, X, y, groups=groups, offset=offset, trials=trials, population=population
    )
    return float(np.average(ll, weights=sample_weight))


def mean_deviance(
    estimator,
    X,
    y,
    *,
    groups=None,
    offset=None,
    trials=None,
    sample_weight=None,
    population="marginal",
) -> float:
    """Mean unit deviance of the fitted family between ``y`` and the predicted mean.

    Lower is better (the scorer ``"neg_mean_deviance"`` negates it).

    Poisson: ``2 (y log(y / mu) - (y - mu))``; negative binomial at the fitted
    ``theta_``; binomial on successes out of trials. The predicted mean is
    conditional for known groups and averaged over the random effects otherwise.
    """
    model, Xt, eta, var, yv, t = _predictive(estimator, X, y, groups, offset, trials, population)
    fam, extra = model.fit_result_.family, model._family_values(Xt)
    mu = fam.mean_over_normal(eta, var, extra)
    dev = fam.unit_deviance(yv, mu, t, extra)
    return float(np.average(dev, weights=sample_weight))


def _ordinal_model(estimator, X):
    model, Xt = _final_model(estimator, X)
    if getattr(model, "_encode_outcome", None) is None:
        raise TypeError(
            f"this metric is for ordered outcomes (OrdinalGLMM), not {type(model).__name__}."
        )
    return model, Xt


def ordinal_log_loss(
    estimator, X, y, *, groups=None, offset=None, sample_weight=None, population="marginal"
) -> float:
    """Mean of ``-log P(Y = y)`` of an ordinal model (lower is better).

    Conditional on the random effects for known groups, averaged over them for new
    ones (``population="marginal"``) or at zero (``"zero"``): minus
    :func:`mean_log_likelihood`. The scorer ``"neg_ordinal_log_loss"`` negates it.
    """
    _ordinal_model(estimator, X)
    return -mean_log_likelihood(
        estimator,
        X,
        y,
        groups=groups,
        offset=offset,
        sample_weight=sample_weight,
        population=population,
    )


def mean_absolute_class_error(
    estimator, X, y, *, groups=None, offset=None, sample_weight=None, population="marginal"
) -> float:
    """Mean ``|k(y) - k(predict)|`` over the class indices ``k`` of an ordinal model
    (positions in its ``class_order_``, lowest class first).

    A prediction one class away costs 1, two classes away 2, and so on (lower is
    better; the scorer ``"neg_mean_absolute_class_error"`` negates it). The
    prediction is the most probable class, as ``predict``.
    """
    model, Xt = _ordinal_model(estimator, X)
    eta, var = model._linear_predictor(Xt, groups, offset, population)
    pred = np.argmax(model._class_probabilities(eta, var, Xt), axis=1)
    return float(np.average(np.abs(model._encode_outcome(y) - pred), weights=sample_weight))


_ORDINAL_METRICS = {
    "neg_ordinal_log_loss": ordinal_log_loss,
    "neg_mean_absolute_class_error": mean_absolute_class_error,
}


# -- scorers --------------------------------------------------------------------------
class GLMMScorer:
    """A scorer ``scorer(estimator, X, y, **metadata)`` for cross-validation and searches.

    Parameters
    ----------
    metric : {"mean_log_likelihood", "neg_mean_deviance", "neg_ordinal_log_loss", \
"neg_mean_absolute_class_error"}, default="mean_log_likelihood"
        All are "greater is better", as scikit-learn's scorers; the last two are for
        ordered outcomes (:func:`ordinal_log_loss`, :func:`mean_absolute_class_error`).
    population : {"marginal", "zero"}, default="marginal"
        Prediction for rows of groups not seen in training.

    Notes
    -----
    With metadata routing enabled, ``set_score_request(groups=True)`` (also
    ``offset``, ``trials``, ``sample_weight``) makes ``cross_validate`` and
    ``GridSearchCV`` pass the test rows' metadata to the scorer, which predicts
    conditionally on the groups it knows. Without it, the groups come from
    ``group_columns`` or predictions are population-level.
    """

    def __init__(self, metric: str = "mean_log_likelihood", *, population: str = "marginal"):
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}.")
        if population not in ("marginal", "zero"):
            raise ValueError(f"population must be 'marginal' or 'zero', got {population!r}.")
        self.metric = metric
        self.population = population
        self._metadata_request = MetadataRequest(owner=self)

    def __call__(self, estimator, X, y, **metadata) -> float:
        unknown = set(metadata) - set(_METADATA)
        if unknown:
            raise TypeError(
                f"{self!r} got unexpected metadata {sorted(unknown)}; it accepts {_METADATA}."
            )
        if self.metric == "mean_log_likelihood":
            return mean_log_likelihood(estimator, X, y, population=self.population, **metadata)
        if self.metric in _ORDINAL_METRICS:
            metadata.pop("trials", None)
            fn = _ORDINAL_METRICS[self.metric]
            return -fn(estimator, X, y, population=self.population, **metadata)
        return -mean_deviance(estimator, X, y, population=self.population, **metadata)

    def set_score_request(self, **kwargs) -> GLMMScorer:
        """Request metadata (``groups``, ``offset``, ``trials``, ``sample_weight``) for scoring.

        Only available with ``sklearn.set_config(enable_metadata_routing=True)``.
        """
        if not get_config()["enable_metadata_routing"]:
            raise RuntimeError(
                "set_score_request is only available when metadata routing is enabled: "
                "sklearn.set_config(enable_metadata_routing=True)."
            )
        unknown = set(kwargs) - set(_METADATA)
        if unknown:
            raise TypeError(f"Unknown metadata {sorted(unknown)}; GLMM scorers use {_METADATA}.")
        for param, alias in kwargs.items():
            self._metadata_request.score.add_request(param=param, alias=alias)
        return self

    def get_metadata_routing(self) -> MetadataRequest:
        """The metadata this scorer requests (none unless ``set_score_request`` was called)."""
        return self._metadata_request

    def __repr__(self) -> str:
        pop = "" if self.population == "marginal" else f", population={self.population!r}"
        return f"make_glmm_scorer({self.metric!r}{pop})"


def make_glmm_scorer(metric: str = "mean_log_likelihood", *, population: str = "marginal"):
    """A :class:`GLMMScorer` for ``scoring=`` in cross-validation and searches.

    Examples
    --------
    >>> from sklearn_glmm.model_selection import make_glmm_scorer
    >>> make_glmm_scorer("neg_mean_deviance")
    make_glmm_scorer('neg_mean_deviance')
    """
    return GLMMScorer(metric, population=population)


def get_scorer(scoring):
    """A scorer by name: this module's metrics, else scikit-learn's ``get_scorer``.

    ``"mean_log_likelihood"`` and ``"neg_mean_deviance"`` give a
    :class:`GLMMScorer`; every other name (``"neg_log_loss"``, ``"accuracy"``,
    ``"neg_mean_poisson_deviance"``, ...) and callables go to scikit-learn.
    """
    if isinstance(scoring, str) and scoring in _METRICS:
        return GLMMScorer(scoring)
    return _sk_get_scorer(scoring)


def get_scorer_names() -> list[str]:
    """Names :func:`get_scorer` accepts."""
    return sorted(set(_METRICS) | set(_sk_get_scorer_names()))


# -- information-criterion selection ------------------------------------------------
@dataclass
class StructureComparison:
    """Candidates fitted on the same data, ranked by an information criterion.

    Attributes
    ----------
    table : DataFrame
        One row per candidate (index: its label), best first: ``npar``,
        ``logLik``, ``deviance`` (-2 logLik), ``AIC``, ``BIC``, ``delta`` (to
        the best by ``criterion``), ``weight`` (Akaike/Schwarz weight),
        ``converged``, ``singular``; and a likelihood-ratio test against the
        closest nested candidate: ``lrt_vs``, ``Chisq``, ``Df``, ``p_value``,
        ``p_value_chibar`` (boundary mixture where one variance is tested at 0).
    criterion : str
    estimators_ : dict of label -> fitted estimator
    params_ : dict of label -> parameters set on the estimator
    best_label_, best_params_, best_estimator_
    """

    table: pd.DataFrame
    criterion: str
    estimators_: dict = field(repr=False)
    params_: dict = field(repr=False)

    @property
    def best_label_(self) -> str:
        return str(self.table.index[0])

    @property
    def best_params_(self) -> dict:
        return dict(self.params_[self.best_label_])

    @property
    def best_estimator_(self):
        return self.estimators_[self.best_label_]

    def __repr__(self) -> str:
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            return f"Candidates ranked by {self.criterion.upper()}:\n{self.table}"


def _candidates(estimator, param_grid):
    """(label, unfitted estimator, params) for every candidate."""
    if isinstance(estimator, dict):
        if param_grid is not None:
            raise ValueError("Give either a dict of estimators or an estimator with param_grid.")
        return [(str(k), clone(e), {}) for k, e in estimator.items()]
    if not isinstance(estimator, BaseEstimator):
        raise TypeError(f"estimator must be a GLMM estimator, got {type(estimator).__name__}.")
    if isinstance(param_grid, (list, tuple)) and all(isinstance(p, str) for p in param_grid):
        grid = [{"random_effects": p} for p in param_grid]
    else:
        grid = list(ParameterGrid(param_grid))
    if not grid:
        raise ValueError("param_grid has no candidates.")
    out = []
    for params in grid:
        if list(params) == ["random_effects"]:
            label = str(params["random_effects"])
        else:
            label = ", ".join(f"{k}={v!r}" for k, v in params.items())
        out.append((label, clone(estimator).set_params(**params), params))
    return out


def _fit_candidate(est, X, y, groups, fit_params):
    with recorded() as caught:  # (this thread's: a candidate's warnings alone)
        try:
            est.fit(X, y, groups=groups, **fit_params)
        except (ValueError, TypeError, np.linalg.LinAlgError) as exc:
            return est, f"{type(exc).__name__}: {exc}", []
    # (category, text) pickles back from any joblib worker, and so does the fitted
    # model with its training data (the likelihood-ratio tests read them)
    return carrying_data(est), None, [(w.category, str(w.message)) for w in caught]


def _lrt_columns(table, fitted):
    """Test every candidate against its closest nested candidate (most parameters).

    Nesting is decided as ``anova`` decides it: the smaller model's fixed effects and
    random-effect terms lie in the span of the larger's, on the same grouping factors,
    each covariance block is a special case of the larger's (an unstructured block holds
    every covariance of its columns; a diagonal or structured one only some), and its
    family is a special case of the larger's.
    """
    vs, chisq, df, p, p_bar = {}, {}, {}, {}, {}
    for lab, big in fitted.items():
        subs = [la for la, small in fitted.items() if la != lab and nested_in(small, big)]
        if not subs:
            continue
        best = max(subs, key=lambda la: (fitted[la].n_params_, table.loc[la, "logLik"]))
        stat = 2.0 * (table.loc[lab, "logLik"] - table.loc[best, "logLik"])
        if stat < -1e-3:
            warn(
                f"candidate {lab} has a lower log-likelihood than {best}, which is nested in "
                "it: a fit did not reach its optimum; its likelihood-ratio statistic is set "
                "to 0.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        stat = max(stat, 0.0)
        vs[lab], chisq[lab] = best, stat
        df[lab] = tested_df(fitted[best], big)
        if df[lab] != big.n_params_ - fitted[best].n_params_:
            unidentified_df_warning(best, fitted[best], lab, big)
        p[lab], p_bar[lab], _ = lrt_p_values(fitted[best], big, stat)
    table["lrt_vs"] = pd.Series(vs, dtype=object)
    table["Chisq"] = pd.Series(chisq, dtype=float)
    table["Df"] = pd.Series(df, dtype="Int64")
    table["p_value"] = pd.Series(p, dtype=float)
    table["p_value_chibar"] = pd.Series(p_bar, dtype=float)
    return table


def _one_approximation(fitted: dict) -> None:
    """Refuse candidates whose likelihoods are different approximations (``n_agq``):
    their AIC, BIC and likelihood-ratio statistics would carry the approximation's
    error. A candidate without random effects (an exact likelihood) goes with any."""
    by = {}
    for label, est in fitted.items():
        k = fitted_n_agq(est)
        if k is not None:
            by.setdefault(k, []).append(label)
    if len(by) > 1:
        listed = "; ".join(f"n_agq={k}: {labels}" for k, labels in sorted(by.items()))
        raise ValueError(
            "compare_structures compares candidates under one likelihood approximation, but "
            f"they were fitted with different n_agq ({listed}). Laplace (n_agq=1) and "
            "quadrature log-likelihoods are different approximations of the same integral: "
            "their AIC, BIC and likelihood-ratio statistics would rank the approximations, "
            "not the models. Set one n_agq for every candidate (on the estimator, not in "
            "param_grid); choose it by accuracy: the log-likelihood settles as n_agq grows."
        )


def compare_structures(
    estimator,
    param_grid,
    X,
    y,
    *,
    groups=None,
    criterion: str = "bic",
    n_jobs: int | None = None,
    **fit_params,
) -> StructureComparison:
    """Fit candidate structures on the same data; rank them by AIC or BIC, with nested LRTs.

    The information-criterion route to choosing ``random_effects`` (or
    ``zero_inflation``, the family, ...) without cross-validation: every
    candidate is fitted once on all rows, as ``anova(m1, m2, ...)`` in lme4.
    The candidates share one likelihood approximation: candidates with random
    effects fitted with different ``n_agq`` raise (``n_agq`` is not a model to
    choose but the accuracy of its integral; fix it for every candidate).

    Parameters
    ----------
    estimator : GLMM estimator, or dict of label -> estimator
        The estimator whose parameters vary. A dict compares estimators as
        given (for example Poisson against negative binomial); then
        ``param_grid`` must be None.
    param_grid : list of str, dict or list of dict
        A list of strings is a list of ``random_effects`` terms; a dict (or a
        list of dicts) is expanded as ``GridSearchCV``'s ``param_grid``.
    X : array-like or DataFrame of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,) or (n_samples, n_factors), default=None
        Grouping factor(s), unless the estimator reads ``group_columns`` from X.
    criterion : {"bic", "aic"}, default="bic"
    n_jobs : int, default=None
        Candidates fitted in parallel (joblib).
    **fit_params
        ``sample_weight``, ``offset``, ``trials`` passed to every fit.

    Returns
    -------
    StructureComparison
        ``.table`` (best first), ``.best_params_``, ``.best_estimator_``.

    Notes
    -----
    The likelihood-ratio test compares each candidate with the nested
    candidate that has the most parameters, nesting decided as
    :func:`~sklearn_glmm.inference.anova` decides it (fixed effects and
    random-effect terms in the span of the larger model's, on the same grouping
    factors; Poisson within negative binomial; no zero-inflation within
    zero-inflation). ``p_value`` is the naive chi-square p-value, as lme4's
    ``anova``; ``p_value_chibar`` is the 50:50 chi-bar-square p-value where the
    test puts one variance on its boundary (zero), NaN otherwise.
    """
    if criterion not in ("aic", "bic"):
        raise ValueError(f"criterion must be 'aic' or 'bic', got {criterion!r}.")
    cands = _candidates(estimator, param_grid)
    results = Parallel(n_jobs=n_jobs)(
        delayed(with_config(_fit_candidate))(est, X, y, groups, fit_params) for _, est, _ in cands
    )
    rows, fitted, params = {}, {}, {}
    for (label, _, prm), (est, error, caught) in zip(cands, results):
        params[label] = prm
        if error is not None:
            warn(
                f"candidate {label!r} failed to fit: {error}",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            continue
        for category, text in caught:  # replay what the fit said, naming the candidate
            warn(f"[{label}] {text}", category, stacklevel=user_stacklevel())
        est.__dict__.pop("_pickle_with_data", None)  # the twin of a fit made in this process
        fitted[label] = est
        rows[label] = {
            "npar": est.n_params_,
            "logLik": est.loglik_,
            "deviance": -2.0 * est.loglik_,
            "AIC": est.aic_,
            "BIC": est.bic_,
            "converged": est.converged_,
            "singular": est.is_singular_,
        }
    if not rows:
        raise ValueError("Every candidate failed to fit; see the warnings above.")
    _one_approximation(fitted)
    table = pd.DataFrame.from_dict(rows, orient="index")
    crit = table[criterion.upper()]
    table.insert(5, "delta", crit - crit.min())
    rel = np.exp(-0.5 * table["delta"])
    table.insert(6, "weight", rel / rel.sum())
    table = _lrt_columns(table, fitted).sort_values(["delta", "npar"], kind="stable")
    table.index.name = "candidate"
    return StructureComparison(table, criterion, fitted, params)
