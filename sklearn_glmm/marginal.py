r"""Marginal (population-averaged) coefficients of a fitted GLMM.

A GLMM's fixed effects are conditional: ``g(E[y | b]) = x'beta + z'b``. The
*marginal* mean of a row averages over the random effects,

.. math::

    \mu^M(x, z) = E_b\, g^{-1}(x^\top\beta + z^\top b), \qquad b \sim N(0, \Sigma),

and the marginal coefficients :math:`\beta^M` are those of the model
``g(mu^M) = x'beta^M`` fitted to these means by least squares over a set of rows
(the training rows by default), as GLMMadaptive's ``marginal_coefs`` does. For
a log link with a random intercept the marginal slopes equal the conditional
ones and the marginal intercept is :math:`\beta_0 + \sigma^2/2`; for a logit
link the marginal log odds ratios are attenuated towards 0 (about
:math:`\beta/\sqrt{1 + 0.346\,\sigma^2}`, Zeger, Liang & Albert 1988).

The integral is one-dimensional whatever the random-effect structure: for a row,
:math:`z^\top b` is normal with variance :math:`\sum_f z_f^\top\Sigma_f z_f`
(summed over independent grouping factors). It is exact for the log link; for
other links, while every row's SD is at most 1.5, 32-node Gauss-Hermite (within
about 1e-8 for the logit and probit links; the cloglog's asymmetric tail errs by up
to 4e-6 in a probability near SD 1.5), and above it the trapezoidal rule on a grid
of spacing at most 0.25 on the link scale over +-9 standard deviations, accurate to
about 1e-15 whatever the variance (a fixed Gauss-Hermite rule loses accuracy as the
standard deviation grows: 32 nodes err by 1e-3 at SD 5). The rule is chosen by the
largest SD among the rows computed together, so a row's value can differ by that
much between calls with other rows. There is no Monte Carlo error.

Public functions:

* :func:`marginal_coefs` -- the marginal coefficients with standard errors, a
  table shaped like ``fixed_effects_``;
* :func:`conditional_marginal_table` -- conditional and marginal coefficients side
  by side, with intervals, as odds / rate ratios where the link has them.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils.validation import check_is_fitted

from ._engine.objective import lambda_matrices
from ._fit_result import beta_jacobian, unrotated
from ._results import original_lambda
from ._validation import aliased_columns, check_level, fitted_glmm, fitted_glmm_for_data
from ._warn import user_stacklevel, warn

__all__ = ["conditional_marginal_table", "marginal_coefs"]

_SE_METHODS = ("delta", "simulation")


class _Rows:
    """The rows a marginal model is fitted over, on the optimiser's (internal) scale.

    ``Xi`` is the internal fixed-effect design (``Xi @ beta_internal`` is the
    linear predictor without offset); ``Z`` lists, per grouping factor, the rows'
    random-effect columns (the optimiser's for the training rows, the user's for new
    rows: ``internal_z`` says which); ``weights`` are the least-squares weights.
    """

    def __init__(self, Xi, offset, Z, weights, internal_z, family_values):
        self.Xi, self.offset, self.Z, self.weights = Xi, offset, Z, weights
        self.internal_z = internal_z
        # the family's values at its coefficients: scalars, or per row (zero inflation
        # with predictors)
        self.family_values = family_values


def _training_rows(est, sample_weight):
    # raises TrainingDataError on a model unpickled without its data
    d = est.fit_result_.objective.data
    w = d.weights if sample_weight is None else _weights(sample_weight, d.X.shape[0])
    Z = [f.Z for f in d.factors]
    return _Rows(d.X, d.offset, Z, w, internal_z=True, family_values=d.extra_values)


def _weights(sample_weight, n):
    w = np.asarray(sample_weight, dtype=float).ravel()
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight must have one value per row ({n}), got shape {w.shape}; pass one "
            "non-negative weight per row of X."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(
            "sample_weight must be finite and non-negative with at least one positive value."
        )
    return w


def _check_formula_offset(est, X, offset) -> None:
    """A formula model's offset is its formula's (``offset()`` terms, an offset column),
    read from the rows as its predictions read it: rows without its variables, or an
    ``offset=`` beside it, raise (an offset of 0 moves the coefficients of a non-log
    link)."""
    state = getattr(est, "_formula", None)
    if state is None or not (state.offsets or state.offset_column):
        return
    if offset is not None:
        raise ValueError(
            "this model's offset is its formula's, read from X: do not pass offset= as well "
            "(change the offset's variables in X instead)."
        )
    needed = list(state.offset_variables) + ([state.offset_column] if state.offset_column else [])
    missing = [c for c in needed if not (isinstance(X, pd.DataFrame) and c in X.columns)]
    if missing:
        raise ValueError(
            f"X lacks {missing}, used by the model's offset: the offset is part of every "
            "row's mean (as in R), so the marginal model needs it; pass rows holding them."
        )


def _new_rows(est, X, offset, sample_weight):
    from ._plot_common import model_inputs, row_offset
    from .inference import _prep

    res = est.fit_result_
    _check_formula_offset(est, X, offset)
    Xm, _, _ = model_inputs(est, X, None)
    if offset is None:  # a formula model's own offset, read from the data
        offset = row_offset(X, None, len(X), est)
    Xa, off, _, _ = _prep(est, Xm, offset)
    # X_original beta = X_original J beta_internal
    Xi = res.fixed_design(Xa) @ res.beta_jacobian()
    Z = [f.z_matrix(Xa) for f in res.factors]
    w = np.ones(Xa.shape[0]) if sample_weight is None else _weights(sample_weight, Xa.shape[0])
    return _Rows(Xi, off, Z, w, internal_z=False, family_values=partial(res.block_values, Xa))


def mean_over_normal(fam, eta, var, extra):
    """``E g^{-1}(eta + e)``, ``e ~ N(0, var)`` per row (the family's rule: exact for the
    log link, accurate to about 1e-9 at any SD otherwise)."""
    var = np.clip(np.asarray(var, dtype=float), 0.0, None)
    return fam.mean_over_normal(np.asarray(eta, dtype=float), var, extra)


def _row_variances(est, rows, theta):
    """Variance of ``z'b`` per row at covariance parameters ``theta`` (internal)."""
    var = np.zeros(rows.Xi.shape[0])
    res = est.fit_result_
    lams = lambda_matrices(res.layout, theta)
    for Z, L, T in zip(rows.Z, lams, res.z_maps):
        # internal Z columns pair with Lambda, the user's columns with T Lambda
        B = Z @ (L if rows.internal_z else original_lambda(T, L))
        var += np.einsum("nq,nq->n", B, B)
    return var


def _marginal_beta(est, rows, x):
    """Marginal coefficients in the user's units at internal parameters ``x``."""
    res = est.fit_result_
    p, T = res.layout.n_beta, res.layout.n_theta
    fam = res.family
    eta = rows.Xi @ x[:p] + rows.offset
    var = _row_variances(est, rows, x[p : p + T])
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        mu = mean_over_normal(fam, eta, var, rows.family_values(x[p + T :]))
        target = fam.link.link(mu) - rows.offset
    if not np.all(np.isfinite(target)):
        raise FloatingPointError(
            "a marginal mean is 0 or 1 to machine precision (its link is infinite): the "
            "linear predictor of some rows is too extreme for the marginal model; pass rows X "
            "closer to the data."
        )
    use = rows.weights > 0
    sw = np.sqrt(rows.weights[use])
    aliased = getattr(rows, "aliased", ())
    if not aliased:
        gamma, *_ = np.linalg.lstsq(rows.Xi[use] * sw[:, None], target[use] * sw, rcond=None)
        return res.beta_jacobian() @ gamma
    # coefficients the rows do not identify are left out of the least squares (R's NA):
    # on the design's own centred and scaled columns, one per coefficient
    Xu = rows.identified  # (weighted rows in use, the identified columns)
    keep = [j for j in range(Xu.shape[1] + len(aliased)) if j not in aliased]
    gamma = np.zeros(len(keep) + len(aliased))
    gamma[keep], *_ = np.linalg.lstsq(Xu, target[use] * sw, rcond=None)
    sc = {k: v for k, v in res.scaling.items() if not k.startswith("rotation")}
    beta = beta_jacobian(sc) @ gamma
    beta[list(aliased)] = np.nan
    return beta


def _identify(est, rows) -> None:
    """Set ``rows.aliased``, the coefficients (internal order, the intercept first) the
    rows with positive weight cannot identify (constant or collinear there: a factor
    level absent from them, fewer rows than coefficients), and, when there are some,
    ``rows.identified``: the weighted rows' design of the others, one centred and
    scaled column per coefficient."""
    use = rows.weights > 0
    Xu, _ = unrotated(est.fit_result_.scaling, rows.Xi[use] * np.sqrt(rows.weights[use])[:, None])
    rows.aliased = tuple(aliased_columns(Xu))
    if rows.aliased:
        rows.identified = np.delete(Xu, rows.aliased, axis=1)


def _simulated_cov(est, fun, n_draws, random_state):
    """GLMMadaptive's standard errors: the spread of ``fun`` over parameter draws."""
    from ._simulate import _rng
    from .inference import _without_undetermined

    res = est.fit_result_
    x, V = res.params, res.vcov
    active = np.isfinite(np.diag(V))
    Va = V[np.ix_(active, active)]
    rng = _rng(random_state)
    draws = np.zeros((n_draws, 0))  # (no parameter with a variance: nothing to draw)
    if active.any():
        draws = rng.multivariate_normal(np.zeros(int(active.sum())), Va, size=n_draws)
    out = []
    for d in draws:
        xk = x.copy()
        xk[active] += d
        out.append(fun(xk))
    k = len(out[0])
    cov = np.cov(np.asarray(out), rowvar=False).reshape(k, k)
    # the elements that move with a parameter without a variance (off its bounds)
    f0 = np.asarray(fun(x), dtype=float)
    moved = np.zeros((k, 0), dtype=bool)
    for j in np.flatnonzero(res.undetermined()):
        e = np.zeros(len(x))
        e[j] = 1e-5 * max(1.0, abs(x[j]))
        moved = np.column_stack([moved, np.asarray(fun(x + e)) != f0])
    return _without_undetermined(cov, moved)


def _check_model(est):
    check_is_fitted(est, "coef_")
    if not hasattr(est, "fit_result_"):
        raise TypeError(
            f"model must be a fitted BinomialGLMM, PoissonGLMM or NegBinGLMM, got "
            f"{type(est).__name__}."
        )


def marginal_coefs(
    model,
    X=None,
    *,
    offset=None,
    sample_weight=None,
    std_errors: bool = True,
    se_method: str = "delta",
    n_draws: int = 200,
    random_state=None,
) -> pd.DataFrame:
    r"""Coefficients of the marginal (population-averaged) mean model.

    For every row the conditional mean is integrated over the random-effect
    distribution, :math:`\mu^M_i = E_b\,g^{-1}(x_i^\top\beta + z_i^\top b)`, and the
    marginal coefficients are the least-squares fit of
    :math:`g(\mu^M_i) - \text{offset}_i` on :math:`x_i` (GLMMadaptive's
    ``marginal_coefs``; there the offset stays in the response). Zero-inflated
    models average the mean of the whole mixture, structural zeros included (each
    row's own probability when the zero inflation has predictors).

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    X : array-like or DataFrame of shape (n_samples, n_features), default=None
        Rows to average over, as passed to ``predict`` (no grouping labels are
        needed: the marginal mean does not depend on them). ``None`` takes the
        training rows with their prior weights (the model must keep its training
        data). With a log link and random intercepts only the rows do not matter;
        otherwise the marginal model is not exactly linear in ``x`` and its
        least-squares coefficients depend on the rows.
    offset : array-like of shape (n_samples,), default=None
        Offsets of the rows of ``X`` (the training offsets when ``X`` is None).
    sample_weight : array-like of shape (n_samples,), default=None
        Least-squares weights of the rows (default: the training rows' prior
        weights, or 1 for new rows).
    std_errors : bool, default=True
        Compute standard errors, z values and p-values (NaN columns otherwise).
    se_method : {"delta", "simulation"}, default="delta"
        ``"delta"``: the delta method with the covariance of all estimated
        parameters (fixed effects, covariance parameters and the family's own);
        ``"simulation"``: GLMMadaptive's approach, the covariance of the marginal
        coefficients over ``n_draws`` parameter vectors drawn from their
        asymptotic normal distribution.
    n_draws : int, default=200
        Parameter draws for ``se_method="simulation"``.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the parameter draws (``se_method="simulation"`` only).

    Returns
    -------
    table : pandas.DataFrame
        Indexed like ``fixed_effects_`` (terms, an intercept first), with columns
        ``estimate``, ``std_error``, ``z_value`` and ``p_value``; columns dropped as
        aliased in the fit are NaN. ``table.attrs["vcov"]`` holds the covariance
        matrix of the estimated rows and ``attrs["se_method"]`` the method.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_glmm import BinomialGLMM
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> from sklearn_glmm.marginal import marginal_coefs
    >>> df, _ = make_longitudinal("binomial", n_groups=200, re_sd=2.0, random_state=0)
    >>> m = BinomialGLMM().fit(df[["time", "treatment"]], df["y"], groups=df["id"])
    >>> mc = marginal_coefs(m)
    >>> b_cond = m.fixed_effects_.loc["treatment", "estimate"]
    >>> bool(abs(mc.loc["treatment", "estimate"]) < abs(b_cond))  # attenuated
    True
    """
    model = fitted_glmm(model) if X is None else fitted_glmm_for_data(model, "marginal_coefs")
    _check_model(model)
    if model.fit_result_.family.name == "ordinal":
        raise NotImplementedError(
            "marginal_coefs is not available for OrdinalGLMM: it fits a mean model "
            "g(E[Y]) = x'beta, which an ordinal outcome does not have; predict_proba(X) "
            "without groups gives the population-averaged class probabilities."
        )
    if se_method not in _SE_METHODS:
        raise ValueError(f"se_method must be one of {_SE_METHODS}, got {se_method!r}.")
    if not isinstance(n_draws, (int, np.integer)) or n_draws < 2:
        raise ValueError(f"n_draws must be an integer of at least 2, got {n_draws!r}.")
    if X is None:
        if offset is not None:
            raise ValueError("offset is for new rows X; with X=None the training offsets are used.")
        rows = _training_rows(model, sample_weight)
    else:
        rows = _new_rows(model, X, offset, sample_weight)
    fe = model.fixed_effects_
    kept = np.isfinite(fe["estimate"].to_numpy())
    _identify(model, rows)
    if rows.aliased:
        names = list(fe.index[kept][list(rows.aliased)])
        warn(
            f"marginal_coefs: the rows do not identify {names} (constant or collinear among "
            "the rows with positive weight, e.g. a factor level none of them has): their "
            "marginal coefficients are NaN, as R's lm gives NA. Pass rows that vary in them.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

    def fun(x):
        return _marginal_beta(model, rows, x)

    beta = fun(model.fit_result_.params)
    k = len(beta)
    V = np.full((k, k), np.nan)
    if std_errors:
        if se_method == "delta":
            from .inference import _delta

            _, V = _delta(model, fun)
        else:
            V = _simulated_cov(model, fun, int(n_draws), random_state)
    est = np.full(len(fe), np.nan)
    se = np.full(len(fe), np.nan)
    est[kept] = beta
    var = np.diag(V)
    with np.errstate(invalid="ignore"):
        se[kept] = np.where(var > 0, np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, est / se, np.nan)
    table = pd.DataFrame(
        {"estimate": est, "std_error": se, "z_value": z, "p_value": 2 * stats.norm.sf(np.abs(z))},
        index=fe.index.copy(),
    )
    names = list(fe.index[kept])
    table.attrs["vcov"] = pd.DataFrame(V, index=names, columns=names)
    table.attrs["se_method"] = se_method if std_errors else None
    return table


def _ratio_transform(model, exponentiate):
    link = model.fit_result_.family.link
    if exponentiate is None:
        exponentiate = link.ratio_name is not None
    if exponentiate and link.ratio_name is None:
        raise ValueError(
            f"exponentiate=True: exp of a {link.name}-link coefficient is no ratio (odds or "
            "rate ratios belong to the logit and log links); leave exponentiate unset or "
            "False to show the coefficients on the link scale."
        )
    return bool(exponentiate), (link.ratio_name if exponentiate else None)


def conditional_marginal_table(
    model,
    X=None,
    *,
    level: float = 0.95,
    exponentiate: bool | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Conditional and marginal coefficients side by side, with Wald intervals.

    Parameters
    ----------
    model : fitted BinomialGLMM, PoissonGLMM or NegBinGLMM
    X : array-like or DataFrame, default=None
        Rows the marginal model is fitted over (see :func:`marginal_coefs`).
    level : float, default=0.95
        Coverage of the intervals.
    exponentiate : bool, default=None
        Report ``exp(coefficient)`` (odds ratios for the logit link, rate ratios
        for the log link, hazard ratios for cloglog). By default, whenever the
        link has such a reading.
    **kwargs
        Passed to :func:`marginal_coefs` (``offset``, ``sample_weight``,
        ``se_method``, ...).

    Returns
    -------
    table : pandas.DataFrame
        One row per term; columns ``conditional``, ``conditional_lower``,
        ``conditional_upper``, ``marginal``, ``marginal_lower``,
        ``marginal_upper`` and ``marginal_p_value``. ``table.attrs["scale"]``
        names the scale (e.g. ``"odds ratio"`` or ``"log-odds"``).
    """
    level = check_level(level)
    mc = marginal_coefs(model, X, **kwargs)
    fe = model.fixed_effects_
    z = stats.norm.ppf(0.5 + level / 2.0)
    exp, ratio = _ratio_transform(model, exponentiate)
    f = np.exp if exp else (lambda v: v)
    out = {}
    for name, tab in (("conditional", fe), ("marginal", mc)):
        b, s = tab["estimate"].to_numpy(), tab["std_error"].to_numpy()
        out[name], out[f"{name}_lower"], out[f"{name}_upper"] = f(b), f(b - z * s), f(b + z * s)
    out["marginal_p_value"] = mc["p_value"].to_numpy()
    table = pd.DataFrame(out, index=fe.index.copy())
    table.attrs["scale"] = ratio or model.fit_result_.family.link.scale_name
    table.attrs["level"] = level
    return table
