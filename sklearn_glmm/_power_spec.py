"""The model a power simulation draws from: :class:`GLMMSpec`, and study designs.

A specification holds an unfitted estimator (its family, link and random-effect
term, used again for every refit) and the true parameters on the scales users
read: fixed effects on the link scale, the random effects' covariance in the
design's units, and the family's own parameters by their reported names
(``nb_theta``, ``zi_prob``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.base import clone

from ._design import INTERCEPT, parse_term


def _template_term(estimator) -> str | None:
    """The random-effect term of a one-factor template (None: a model without one)."""
    re = estimator.random_effects
    if isinstance(re, dict):
        if len(re) != 1:
            raise ValueError(
                "power simulations support one grouping factor; the estimator's "
                f"random_effects names {len(re)} factors ({sorted(map(str, re))})."
            )
        re = next(iter(re.values()))
    return re


def _covariance(random_cov, names: list[str]) -> np.ndarray:
    """The (q, q) covariance in the order of the term's ``names``."""
    q = len(names)
    if isinstance(random_cov, pd.DataFrame):
        missing = set(names) - set(random_cov.index) | set(names) - set(random_cov.columns)
        if missing:
            raise ValueError(
                f"random_cov must be labelled by the random-effect terms {names}; "
                f"{sorted(missing)} are missing."
            )
        S = random_cov.loc[names, names].to_numpy(dtype=float)
    elif isinstance(random_cov, Mapping):
        if set(map(str, random_cov)) != set(names):
            raise ValueError(
                f"random_cov as a dict gives one standard deviation per random-effect term: "
                f"expected keys {names}, got {sorted(map(str, random_cov))}."
            )
        S = np.diag([_sd(random_cov[n], f"random_cov[{n!r}]") ** 2 for n in names])
    elif np.ndim(random_cov) == 0:
        if q != 1:
            raise ValueError(
                f"a single number for random_cov is the SD of one random effect, but the term "
                f"has {q} ({names}); pass a dict of SDs or a {q} x {q} covariance matrix."
            )
        S = np.array([[_sd(random_cov, "random_cov") ** 2]])
    else:
        S = np.asarray(random_cov, dtype=float)
    if S.shape != (q, q):
        raise ValueError(
            f"random_cov must be a {q} x {q} covariance matrix for the terms {names}, "
            f"got shape {S.shape}."
        )
    if not np.all(np.isfinite(S)):
        raise ValueError(f"random_cov must hold finite numbers, got {S.tolist()}.")
    if not np.allclose(S, S.T):
        raise ValueError(f"random_cov must be a symmetric matrix, got {S.tolist()}.")
    if np.linalg.eigvalsh(S).min() < -1e-10 * max(1.0, np.abs(S).max()):
        raise ValueError("random_cov is not positive semi-definite (a negative variance).")
    return S


def _sd(value, name: str) -> float:
    """A standard deviation given as a number: finite and not negative."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a standard deviation (a number), got {value!r}.")
    try:
        sd = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a standard deviation (a number), got {value!r}.") from None
    if not np.isfinite(sd) or sd < 0:
        raise ValueError(
            f"{name} is a standard deviation and must be a finite number >= 0, got {value!r}."
        )
    return sd


def _number(value, name: str) -> float:
    """A parameter value given as a number (True/False is not one)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}.") from None


def _internal_value(block, value: float) -> float:
    """The optimiser-scale value of a family parameter given on its reported scale."""
    lo, hi = block.bounds
    if not np.isfinite(value):
        if value == block.at_bound_value:
            return float(block.bound())
        raise ValueError(f"{block.reported} must be finite, got {value!r}.")
    f_lo, f_hi = block.to_reported(lo), block.to_reported(hi)
    if not min(f_lo, f_hi) < value < max(f_lo, f_hi):
        raise ValueError(
            f"{block.reported}={value!r} is outside its range ({f_lo:.3g}, {f_hi:.3g})."
        )
    return float(optimize.brentq(lambda v: block.to_reported(v) - value, lo, hi, xtol=1e-12))


@dataclass(frozen=True, eq=False)
class GLMMSpec:
    """A GLMM given by its parameters: what a power simulation draws data from.

    Parameters
    ----------
    estimator : unfitted BinomialGLMM, PoissonGLMM or NegBinGLMM
        Gives the family, link and random-effect term (``random_effects``, one
        grouping factor), and is cloned for every refit.
    fixed_effects : dict of str to float
        True fixed effects on the link scale, keyed ``"(Intercept)"`` and by the
        design's column names (e.g. ``{"treatment": np.log(0.6)}`` for an odds
        ratio of 0.6). Every key other than the intercept is a column of ``X``.
    random_cov : float, dict of str to float, (q, q) array or DataFrame, default=None
        The random effects' distribution: the SD of a single random effect, a dict
        of SDs (independent effects), or a covariance matrix in the order of the
        term's names (``["(Intercept)", "time"]`` for ``"1 + time"``). None: no
        random effects (the estimator is then fitted without groups, a GLM).
    family_params : dict of str to float, default=None
        The family's own parameters by their reported names, e.g.
        ``{"nb_theta": 2.0}`` or ``{"nb_theta": 2.0, "zi_prob": 0.1}``.
    trials : int, default=1
        Binomial trials per row (1: a 0/1 outcome).
    offset : str, default=None
        A column of the design's data added to the linear predictor (e.g. the log
        of each row's exposure), in the simulation and in every refit.
    """

    estimator: object
    fixed_effects: Mapping[str, float]
    random_cov: object = None
    family_params: Mapping[str, float] = field(default_factory=dict)
    trials: int = 1
    offset: str | None = None

    def __post_init__(self):
        if not hasattr(self.estimator, "_family") or hasattr(self.estimator, "coef_"):
            raise TypeError(
                "estimator must be an unfitted BinomialGLMM, PoissonGLMM or NegBinGLMM "
                "(use GLMMSpec.from_fitted for a fitted one)."
            )
        _check_constant_zero_inflation(self.estimator)
        fe = {
            str(k): _number(v, f"fixed_effects[{str(k)!r}]")
            for k, v in dict(self.fixed_effects).items()
        }
        bad = [k for k, v in fe.items() if not np.isfinite(v)]
        if bad:
            raise ValueError(f"fixed_effects must be finite numbers; {bad} are not.")
        object.__setattr__(self, "fixed_effects", fe)
        if not isinstance(self.trials, (int, np.integer)) or self.trials < 1:
            raise ValueError(f"trials must be a positive integer, got {self.trials!r}.")
        fam = self.family
        if self.trials > 1 and not fam.has_trials:
            raise ValueError("trials > 1 is for binomial models only.")
        if self.offset is not None and not isinstance(self.offset, str):
            raise TypeError(f"offset must name a column of the design, got {self.offset!r}.")
        given = {
            str(k): _number(v, f"family_params[{str(k)!r}]")
            for k, v in dict(self.family_params or {}).items()
        }
        names = [b.reported for b in fam.blocks]
        if set(given) != set(names):
            raise ValueError(
                f"family_params must give exactly the family's own parameters {names}, "
                f"got {sorted(given)}."
            )
        object.__setattr__(self, "family_params", given)
        self.extra  # noqa: B018 - validates the family's parameters now
        self.covariance  # noqa: B018 - validates random_cov now

    # -- derived -------------------------------------------------------------
    @property
    def family(self):
        return self.estimator._family()

    @property
    def term(self):
        """The parsed random-effect term; None without random effects."""
        if self.random_cov is None:
            return None
        text = _template_term(self.estimator)
        term = parse_term("1" if text is None else text)
        if term.structure is not None:
            raise NotImplementedError(_STRUCTURED)
        return term

    @property
    def covariance(self) -> np.ndarray | None:
        term = self.term
        return None if term is None else _covariance(self.random_cov, term.names)

    @property
    def extra(self) -> np.ndarray:
        """The family's parameters on the optimiser's scale."""
        blocks = self.family.blocks
        return np.array([_internal_value(b, self.family_params[b.reported]) for b in blocks])

    @property
    def features(self) -> list[str]:
        """The fixed-effect columns of X (in the order of ``fixed_effects``)."""
        return [k for k in self.fixed_effects if k != INTERCEPT]

    def refit_estimator(self):
        """A fresh, unfitted copy of the estimator for one refit."""
        est = clone(self.estimator)
        params = {"fit_intercept": INTERCEPT in self.fixed_effects}
        names = est.get_params()
        if "group_columns" in names:
            params["group_columns"] = None  # the design passes groups explicitly
        if "pos_label" in names:
            # simulated binary outcomes are 0/1 with 1 the modelled class (the template's
            # pos_label, whatever its label): the refit models 1
            params["pos_label"] = None
        term = self.term
        params["random_effects"] = None if term is None else _template_term(self.estimator)
        return est.set_params(**params)

    def with_effect(self, name: str, value: float) -> GLMMSpec:
        fe = dict(self.fixed_effects)
        fe[name] = float(value)
        return GLMMSpec(
            self.estimator, fe, self.random_cov, self.family_params, self.trials, self.offset
        )

    @classmethod
    def from_fitted(cls, est, *, trials: int | None = None, offset: str | None = None) -> GLMMSpec:
        """The parameters of a fitted model (one grouping factor) as a specification.

        Fixed effects (aliased columns left out), the random effects' covariance and
        the family's parameters are the estimates; ``trials`` is the number of
        binomial trials per simulated row (default 1) and ``offset`` the design's
        column holding the offset. A model fitted with several trials per row or with an
        offset needs them said again: its estimates are per trial and per unit of
        exposure.
        """
        from sklearn.utils.validation import check_is_fitted

        from ._state import has_data

        check_is_fitted(est, "coef_")
        _check_constant_zero_inflation(est)
        # (read from the data where the model keeps them, else from what the fit noted:
        # a model pickled without its data knows it too)
        d = est.fit_result_.objective.data if has_data(est) else None
        with_offset = np.any(d.offset != 0) if d is not None else getattr(est, "_fit_offset", False)
        if offset is None and with_offset:
            raise ValueError(
                "the model was fitted with an offset: pass offset='<column>' naming the "
                "design's column of offsets (e.g. log exposure) for the simulated rows."
            )
        if d is not None:
            several = est.fit_result_.family.has_trials and np.any(d.trials > 1)
        else:  # (models pickled before the fit noted it: trials given at all)
            several = getattr(est, "_several_trials", getattr(est, "_with_trials", False))
        if trials is None and several:
            raise ValueError(
                "the model was fitted to binomial outcomes with several trials per row: "
                "pass trials=<number of trials per simulated row>."
            )
        factors = list(est.random_effects_cov_)
        if len(factors) > 1:
            raise ValueError(
                f"power simulations support one grouping factor; this model has {factors}."
            )
        if any(f.structure is not None for f in est.fit_result_.factors):
            raise NotImplementedError(_STRUCTURED)
        fe = est.fixed_effects_["estimate"].dropna()
        template = clone(est)
        cov = None
        if factors:
            cov = est.random_effects_cov_[factors[0]]
            terms = _term_text(est.fit_result_.factors[0].term)
            template.set_params(random_effects=" + ".join(terms))
        params = {b.reported: getattr(est, b.attribute) for b in est.fit_result_.family.blocks}
        return cls(template, fe.to_dict(), cov, params, 1 if trials is None else trials, offset)


_STRUCTURED = (
    "power simulations draw random intercepts and slopes; a covariance structure over "
    "time (ar1, cs, toep, ou) is not supported there. Simulate from the corresponding "
    "unstructured or random-intercept model, or simulate the structured model's data "
    "with est.simulate() and refit it in a loop."
)


def _check_constant_zero_inflation(estimator):
    """Simulations draw one zero-inflation probability (``zi_prob``) for every row."""
    zi = estimator.get_params().get("zero_inflation", False)
    if isinstance(zi, str) and parse_term(zi).slopes:
        raise ValueError(
            f"zero_inflation={zi!r} gives the zero-inflation probability predictors, but "
            "power simulations draw one probability (family_params={'zi_prob': ...}) for "
            "every row: set zero_inflation=True."
        )


def _term_text(term) -> list[str]:
    parts = (["1"] if term.intercept else ["0"]) + list(term.slopes)
    if term.diagonal:
        return [f"diag({' + '.join(parts)})"]
    if term.blocks:  # "(1 + x) + (0 + z)"
        return [f"({text})" for text in term.block_texts()]
    return parts


# ---------------------------------------------------------------------------
# designs
# ---------------------------------------------------------------------------
def longitudinal_design(
    n_groups: int, n_per_group: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """People observed at waves ``0, ..., n_per_group - 1``, half of them treated.

    The default design of :func:`~sklearn_glmm.power.power_curve`: columns
    ``time`` (the wave) and ``treatment`` (0 for the first half of the people,
    1 for the second, a balanced two-arm trial); ``groups`` numbers the people.
    ``rng`` is not used (the design is fixed); a design function may use it.
    """
    ids = np.repeat(np.arange(n_groups), n_per_group)
    X = pd.DataFrame(
        {
            "time": np.tile(np.arange(n_per_group, dtype=float), n_groups),
            "treatment": (ids >= n_groups // 2).astype(float) if n_groups > 1 else 0.0,
        }
    )
    return X, ids


def resample_design(X: pd.DataFrame, groups) -> Callable:
    """A design that draws whole groups (with their rows) from existing data.

    The returned function ``design(n_groups, n_per_group, rng)`` samples
    ``n_groups`` groups with replacement and relabels them ``0, 1, ...``;
    ``n_per_group`` keeps each drawn group's first rows (None: all of them). This
    is simr's ``extend(along = "id")`` for a fitted model's data.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X must be a pandas DataFrame with the model's columns.")
    g = np.asarray(groups)
    if g.shape != (len(X),):
        raise ValueError(f"groups must have one label per row of X ({len(X)}), got {g.shape}.")
    missing = pd.isna(g)
    if missing.any():
        raise ValueError(
            f"groups has {int(missing.sum())} missing label(s) (NaN or None); drop those rows "
            "of X and groups, or give them a label."
        )
    labels, codes = np.unique(g, return_inverse=True)
    rows_of = [np.flatnonzero(codes == k) for k in range(len(labels))]
    frame = X.reset_index(drop=True).copy()
    smallest = min(len(r) for r in rows_of)

    def design(n_groups, n_per_group, rng):
        if n_per_group is not None and n_per_group > smallest:
            raise ValueError(
                f"n_per_group={n_per_group} exceeds the rows of the smallest group in the data "
                f"({smallest}); ask for at most {smallest} rows per group."
            )
        pick = rng.integers(0, len(rows_of), size=n_groups)
        rows = [rows_of[k][:n_per_group] for k in pick]
        ids = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
        return frame.iloc[np.concatenate(rows)].reset_index(drop=True), ids

    return design
