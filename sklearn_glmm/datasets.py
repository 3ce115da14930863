"""Simulated and packaged data sets for trying the estimators.

Every simulator returns ``(df, truth)``: a long-format :class:`pandas.DataFrame`
(one row per observation, a column naming the person) and a dict of the true
parameters it was drawn from, so that a fit can be checked against the truth.

The simulators follow the tutorials this library is tested against:

- :func:`make_longitudinal` -- people measured at several waves with a binary,
  binomial, count or overdispersed count outcome (tutorial 000).
- :func:`make_vegetables` -- daily vegetable eating, a binomial GLMM with a
  treatment by sex interaction (tutorial 003).
- :func:`load_app_logins` -- daily app logins of 50 users over 30 days, the
  exact data of tutorial 002 (generated in R with ``set.seed(789)``).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
from scipy.special import expit

__all__ = ["load_app_logins", "make_longitudinal", "make_vegetables"]

_FAMILIES = ("binomial", "poisson", "negbin")

# Tutorial 000's population values; sex and x_tv are this module's additions.
_DEFAULT_FIXED = {
    "binomial": {
        "(Intercept)": -0.5,
        "time": -0.2,
        "treatment": -0.6,
        "sex": 0.4,
        "x_tv": 0.5,
    },
    "count": {
        "(Intercept)": 1.5,
        "time": 0.10,
        "treatment": -0.3,
        "sex": 0.2,
        "x_tv": 0.25,
    },
}

_DEFAULT_NB_THETA = 2.0

# Log-odds of tutorial 003's "correct" simulation: P = 0.40, 0.85, 0.30, 0.50
# for female/control, female/treat, male/control, male/treat.
_VEGETABLE_FIXED = {
    "(Intercept)": -0.4054651,
    "trttreat": 2.140066,
    "sexmale": -0.4418328,
    "trttreat:sexmale": -1.292768,
}


def make_longitudinal(
    family: str = "binomial",
    n_groups: int = 300,
    n_waves: int = 5,
    *,
    fixed_effects: dict[str, float] | None = None,
    re_sd: float = 1.0,
    slope_sd: float = 0.0,
    re_corr: float = 0.0,
    nb_theta: float | None = None,
    zero_inflation: float = 0.0,
    trials: int | tuple[int, int] | None = None,
    treatment: bool = True,
    sex: bool = False,
    time_varying: bool = False,
    unequal_spacing: bool = False,
    missing_rate: float = 0.0,
    dropout: float = 0.0,
    random_state=None,
) -> tuple[pd.DataFrame, dict]:
    r"""Simulate long-format longitudinal data from a GLMM with known parameters.

    Each of ``n_groups`` people is measured at ``n_waves`` waves. On the link
    scale (logit for ``"binomial"``, log for the count families)

    .. math::

        \eta_{ij} = x_{ij}^\top \beta + b_{0i} + b_{1i}\, t_{ij}, \qquad
        (b_{0i}, b_{1i}) \sim N\!\left(0,
        \begin{pmatrix} \sigma_0^2 & \rho\sigma_0\sigma_1 \\
        \rho\sigma_0\sigma_1 & \sigma_1^2 \end{pmatrix}\right)

    with :math:`\sigma_0` = ``re_sd``, :math:`\sigma_1` = ``slope_sd`` and
    :math:`\rho` = ``re_corr``. The outcome is then drawn given
    :math:`\mu = g^{-1}(\eta)`: Bernoulli or binomial, Poisson, or negative
    binomial NB2 with :math:`\mathrm{Var}(y) = \mu + \mu^2/\theta`; with
    ``zero_inflation`` = :math:`\pi > 0` a count is replaced by a structural
    zero with probability :math:`\pi`.

    Parameters
    ----------
    family : {"binomial", "poisson", "negbin"}, default="binomial"
        Outcome distribution.
    n_groups : int, default=300
        Number of people (levels of ``id``).
    n_waves : int, default=5
        Number of measurement occasions per person, at times ``0, ..., n_waves - 1``.
    fixed_effects : dict of str to float, default=None
        True fixed effects on the link scale, keyed by column name and
        ``"(Intercept)"``. Given keys replace the defaults; the defaults are
        tutorial 000's values -- binary: ``(Intercept)`` -0.5, ``time`` -0.2,
        ``treatment`` -0.6; counts: 1.5, 0.10, -0.3 -- plus ``sex`` 0.4 / 0.2
        and ``x_tv`` 0.5 / 0.25. Keys may also name an interaction of two
        columns, such as ``"time:treatment"``.
    re_sd : float, default=1.0
        Standard deviation of the random intercept (link scale).
    slope_sd : float, default=0.0
        Standard deviation of the random slope on ``time``; 0 means none.
    re_corr : float, default=0.0
        Correlation between random intercept and random slope.
    nb_theta : float, default=None
        NB2 dispersion :math:`\theta` for ``family="negbin"`` (2.0 when None).
        Must be None for the other families.
    zero_inflation : float, default=0.0
        Probability of a structural zero (count families only).
    trials : int or tuple of (int, int), default=None
        Binomial only. None gives a 0/1 outcome; an int gives that many
        trials per row; a tuple ``(low, high)`` draws each row's number of
        trials uniformly from ``low..high``. ``y`` then counts successes and
        a ``trials`` column is added.
    treatment : bool, default=True
        Include the person-level 0/1 ``treatment`` column (first half of the
        people are controls, as in tutorial 000).
    sex : bool, default=False
        Include a person-level 0/1 ``sex`` column, drawn with probability 1/2.
    time_varying : bool, default=False
        Include ``x_tv``, a standard normal covariate drawn for every row.
    unequal_spacing : bool, default=False
        Jitter each measurement time by a uniform amount in [-0.3, 0.3]
        (times stay >= 0), so people are measured at different times.
    missing_rate : float, default=0.0
        Probability that a row is missing (dropped completely at random).
    dropout : float, default=0.0
        Probability that a person drops out; a dropout leaves at a wave drawn
        uniformly from ``1, ..., n_waves - 1`` and has no rows from then on.
    random_state : int, numpy.random.Generator, RandomState instance or None, default=None
        Seed or generator for reproducible draws.

    Returns
    -------
    df : pandas.DataFrame of shape (n_rows, n_columns)
        Columns ``id`` (1..n_groups), ``time``, then ``treatment``, ``sex``,
        ``x_tv`` when requested, ``trials`` for binomial trials, and ``y``.
        Rows are sorted by ``id`` and ``time``; ``n_rows`` is
        ``n_groups * n_waves`` less the missing and dropped-out rows.
    truth : dict
        ``"family"``, ``"fixed_effects"`` (dict column name -> value, starting
        with ``"(Intercept)"``), ``"re_sd"``, ``"slope_sd"``, ``"re_corr"``,
        ``"nb_theta"`` (None unless negbin), ``"zero_inflation"`` and
        ``"random_effects"`` (DataFrame indexed by ``id`` with the drawn
        ``"(Intercept)"`` and, when ``slope_sd > 0``, ``"time"`` deviations).

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_longitudinal
    >>> df, truth = make_longitudinal("poisson", n_groups=50, random_state=0)
    >>> df.shape
    (250, 4)
    >>> truth["fixed_effects"]
    {'(Intercept)': 1.5, 'time': 0.1, 'treatment': -0.3}
    """
    _check_longitudinal_args(family, n_groups, n_waves, nb_theta, zero_inflation, trials)
    _check_probability("missing_rate", missing_rate)
    _check_probability("dropout", dropout)
    rng = _generator(random_state)
    if family == "negbin" and nb_theta is None:
        nb_theta = _DEFAULT_NB_THETA

    df = _person_waves(n_groups, n_waves, treatment, sex, time_varying, unequal_spacing, rng)
    beta = _fixed_effects(family, fixed_effects, df.columns)
    b = _draw_random_effects(n_groups, re_sd, slope_sd, re_corr, rng)
    codes = df["id"].to_numpy() - 1
    eta = _linear_predictor(df, beta) + b[codes, 0] + b[codes, 1] * df["time"].to_numpy()
    if family == "binomial" and trials is not None:
        df["trials"] = _draw_trials(trials, len(df), rng)
    df["y"] = _draw_outcome(family, eta, df.get("trials"), nb_theta, zero_inflation, rng)
    df = _drop_rows(df, n_waves, missing_rate, dropout, rng)

    effects = pd.DataFrame(b, index=pd.Index(np.arange(1, n_groups + 1), name="id"))
    effects.columns = ["(Intercept)", "time"]
    truth = {
        "family": family,
        "fixed_effects": beta,
        "re_sd": float(re_sd),
        "slope_sd": float(slope_sd),
        "re_corr": float(re_corr),
        "nb_theta": None if nb_theta is None else float(nb_theta),
        "zero_inflation": float(zero_inflation),
        "random_effects": effects if slope_sd > 0 else effects[["(Intercept)"]],
    }
    return df, truth


def _generator(random_state) -> np.random.Generator:
    """A numpy Generator from a seed, a Generator or a legacy RandomState."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")


def _check_longitudinal_args(family, n_groups, n_waves, nb_theta, zero_inflation, trials) -> None:
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {_FAMILIES}, got {family!r}.")
    if int(n_groups) < 1 or int(n_waves) < 1:
        raise ValueError(f"n_groups and n_waves must be >= 1, got {n_groups} and {n_waves}.")
    if nb_theta is not None and (family != "negbin" or nb_theta <= 0):
        raise ValueError(f"nb_theta must be None or > 0 with family='negbin', got {nb_theta!r}.")
    _check_probability("zero_inflation", zero_inflation)
    if zero_inflation > 0 and family == "binomial":
        raise ValueError("zero_inflation applies to the count families 'poisson' and 'negbin'.")
    if trials is not None and family != "binomial":
        raise ValueError("trials applies to family='binomial' only.")


def _person_waves(n_groups, n_waves, treatment, sex, time_varying, unequal_spacing, rng):
    """One row per person and wave, with the requested covariates."""
    ids = np.repeat(np.arange(1, n_groups + 1), n_waves)
    wave = np.tile(np.arange(n_waves), n_groups)
    df = pd.DataFrame({"id": ids, "time": wave})
    if unequal_spacing:
        df["time"] = np.maximum(wave + rng.uniform(-0.3, 0.3, size=len(df)), 0.0)
    if treatment:
        df["treatment"] = np.repeat(
            (np.arange(n_groups) >= n_groups // 2).astype(np.int64), n_waves
        )
    if sex:
        df["sex"] = np.repeat(rng.binomial(1, 0.5, size=n_groups), n_waves)
    if time_varying:
        df["x_tv"] = rng.standard_normal(len(df))
    return df


def _fixed_effects(family, fixed_effects, columns) -> dict[str, float]:
    """Defaults for the present columns, updated with the user's values."""
    defaults = _DEFAULT_FIXED["binomial" if family == "binomial" else "count"]
    beta = {k: v for k, v in defaults.items() if k == "(Intercept)" or k in columns}
    for name, value in (fixed_effects or {}).items():
        parts = name.split(":")
        if name != "(Intercept)" and not all(p in columns for p in parts):
            raise ValueError(
                f"fixed_effects names {name!r}, which is not a column of the simulated data "
                f"{list(columns)} (nor an interaction of them)."
            )
        beta[name] = float(value)
    return beta


def _draw_random_effects(n_groups, re_sd, slope_sd, re_corr, rng) -> np.ndarray:
    """Random intercepts and slopes, shape (n_groups, 2)."""
    if re_sd < 0 or slope_sd < 0 or not -1.0 <= re_corr <= 1.0:
        raise ValueError("re_sd and slope_sd must be >= 0 and re_corr in [-1, 1].")
    z = rng.standard_normal((n_groups, 2))
    b0 = re_sd * z[:, 0]
    b1 = slope_sd * (re_corr * z[:, 0] + np.sqrt(1.0 - re_corr**2) * z[:, 1])
    return np.column_stack([b0, b1])


def _linear_predictor(df: pd.DataFrame, beta: dict[str, float]) -> np.ndarray:
    """Fixed part of eta; ``"a:b"`` multiplies the columns ``a`` and ``b``."""
    eta = np.zeros(len(df))
    for name, value in beta.items():
        if name == "(Intercept)":
            eta += value
            continue
        term = np.ones(len(df))
        for part in name.split(":"):
            term = term * df[part].to_numpy(dtype=float)
        eta += value * term
    return eta


def _draw_trials(trials, n_rows, rng) -> np.ndarray:
    if isinstance(trials, tuple):
        low, high = trials
        if not 1 <= low <= high:
            raise ValueError(f"trials=(low, high) needs 1 <= low <= high, got {trials!r}.")
        return rng.integers(low, high + 1, size=n_rows)
    if int(trials) < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}.")
    return np.full(n_rows, int(trials), dtype=np.int64)


def _draw_outcome(family, eta, trials, nb_theta, zero_inflation, rng) -> np.ndarray:
    """Outcome given the linear predictor; NB2 drawn as a gamma-Poisson mixture."""
    if family == "binomial":
        n = 1 if trials is None else trials.to_numpy()
        return rng.binomial(n, expit(eta)).astype(np.int64)
    mu = np.exp(eta)
    if family == "negbin":
        # lambda ~ Gamma(shape=theta, scale=mu/theta) gives Var(y) = mu + mu^2/theta.
        mu = rng.gamma(nb_theta, mu / nb_theta)
    y = rng.poisson(mu)
    if zero_inflation > 0:
        y[rng.random(len(y)) < zero_inflation] = 0
    return y.astype(np.int64)


def _drop_rows(df, n_waves, missing_rate, dropout, rng) -> pd.DataFrame:
    """Remove dropped-out persons' later waves, then rows missing at random."""
    keep = np.ones(len(df), dtype=bool)
    if dropout > 0 and n_waves > 1:
        n_groups = len(df) // n_waves
        leaves = rng.random(n_groups) < dropout
        leave_wave = np.where(leaves, rng.integers(1, n_waves, size=n_groups), n_waves)
        wave = np.tile(np.arange(n_waves), n_groups)
        keep &= wave < np.repeat(leave_wave, n_waves)
    if missing_rate > 0:
        keep &= rng.random(len(df)) >= missing_rate
    return df.loc[keep].reset_index(drop=True)


def make_vegetables(
    random_state=None,
    *,
    n_subjects: int = 250,
    n_days: int = 14,
    re_sd: float = 0.03,
) -> tuple[pd.DataFrame, dict]:
    r"""Simulate tutorial 003's vegetable-eating study.

    Each subject is observed on ``n_days`` days; ``y`` is 1 when they ate
    vegetables. Treatment (``"control"``/``"treat"``) and sex
    (``"female"``/``"male"``) are drawn with probability 1/2 per subject and
    interact on the logit scale:

    .. math::

        \operatorname{logit} P(y_{ij} = 1) = \beta_0 + \beta_1\,\mathrm{treat}_i
        + \beta_2\,\mathrm{male}_i + \beta_3\,\mathrm{treat}_i\,\mathrm{male}_i
        + b_i, \qquad b_i \sim N(0, \sigma^2),

    with the tutorial's "correct" log-odds, giving probabilities 0.40 (female,
    control), 0.85 (female, treat), 0.30 (male, control) and 0.50 (male,
    treat), and :math:`\sigma` = ``re_sd`` = 0.03.

    Parameters
    ----------
    random_state : int, numpy.random.Generator, RandomState instance or None, default=None
        Seed or generator for reproducible draws.
    n_subjects : int, default=250
        Number of subjects.
    n_days : int, default=14
        Days of observation per subject.
    re_sd : float, default=0.03
        Standard deviation of the subject random intercept (logit scale).

    Returns
    -------
    df : pandas.DataFrame of shape (n_subjects * n_days, 5)
        Columns ``id`` (1..n_subjects), ``day`` (1..n_days), ``trt``, ``sex``
        and ``y`` (0/1), sorted by ``id`` and ``day``.
    truth : dict
        ``"fixed_effects"`` keyed by R's coefficient names (``"(Intercept)"``,
        ``"trttreat"``, ``"sexmale"``, ``"trttreat:sexmale"``), ``"re_sd"``,
        ``"probabilities"`` (dict ``(trt, sex)`` -> population probability
        without the random effect) and ``"random_effects"`` (Series by ``id``).

    Examples
    --------
    >>> from sklearn_glmm.datasets import make_vegetables
    >>> df, truth = make_vegetables(random_state=1)
    >>> df.shape
    (3500, 5)
    >>> sorted(truth["fixed_effects"])
    ['(Intercept)', 'sexmale', 'trttreat', 'trttreat:sexmale']
    """
    rng = _generator(random_state)
    trt = rng.choice(np.array(["control", "treat"]), size=n_subjects)
    sex = rng.choice(np.array(["female", "male"]), size=n_subjects)
    b = re_sd * rng.standard_normal(n_subjects)
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(1, n_subjects + 1), n_days),
            "day": np.tile(np.arange(1, n_days + 1), n_subjects),
            "trt": np.repeat(trt, n_days),
            "sex": np.repeat(sex, n_days),
        }
    )
    treat = (df["trt"] == "treat").to_numpy(dtype=float)
    male = (df["sex"] == "male").to_numpy(dtype=float)
    beta = _VEGETABLE_FIXED
    eta = (
        beta["(Intercept)"]
        + beta["trttreat"] * treat
        + beta["sexmale"] * male
        + beta["trttreat:sexmale"] * treat * male
        + np.repeat(b, n_days)
    )
    df["y"] = rng.binomial(1, expit(eta)).astype(np.int64)
    probabilities = {
        (t, s): float(
            expit(
                beta["(Intercept)"]
                + beta["trttreat"] * (t == "treat")
                + beta["sexmale"] * (s == "male")
                + beta["trttreat:sexmale"] * (t == "treat") * (s == "male")
            )
        )
        for t in ("control", "treat")
        for s in ("female", "male")
    }
    truth = {
        "fixed_effects": dict(beta),
        "re_sd": float(re_sd),
        "probabilities": probabilities,
        "random_effects": pd.Series(b, index=pd.Index(np.arange(1, n_subjects + 1), name="id")),
    }
    return df, truth


def load_app_logins() -> pd.DataFrame:
    """Load tutorial 002's daily app logins: 50 users over 30 days.

    The data were generated by the tutorial's R code (``set.seed(789)``), so a
    Poisson GLMM ``logins ~ day_centered + (1 | user_id)`` fitted to them
    reproduces the tutorial's lme4 output.

    Returns
    -------
    df : pandas.DataFrame of shape (1500, 4)
        Columns ``user_id`` (int64, 1..50 -- the labels of R's factor
        ``user_id``, kept as integers; use them as group labels),
        ``day`` (int64, 1..30), ``day_centered`` (float64, ``day - 15.5``)
        and ``logins`` (int64 counts).

    Examples
    --------
    >>> from sklearn_glmm.datasets import load_app_logins
    >>> df = load_app_logins()  # doctest: +SKIP
    >>> df.shape  # doctest: +SKIP
    (1500, 4)
    """
    source = resources.files("sklearn_glmm").joinpath("data", "app_logins.csv")
    with resources.as_file(source) as path:
        df = pd.read_csv(path)
    dtypes = {"user_id": "int64", "day": "int64", "day_centered": "float64", "logins": "int64"}
    missing = set(dtypes) - set(df.columns)
    if missing:
        raise ValueError(f"app_logins.csv lacks the columns {sorted(missing)}.")
    return df[list(dtypes)].astype(dtypes)
