"""Link functions as objects: ``eta = g(mu)`` and its inverse, with derivatives.

A family holds its link by composition (as scikit-learn's ``_loss`` and glum do),
so code outside the families asks the link, never compares names: the inverse
for predictions, ``dmu/deta`` for marginal effects, what an exponentiated
coefficient means (an odds ratio, a rate ratio) and the name R prints.

Example
-------
>>> import numpy as np
>>> from sklearn_glmm._engine.links import LogitLink
>>> link = LogitLink()
>>> float(link.inverse(link.link(np.array(0.25))))
0.25
"""

from __future__ import annotations

import numpy as np
from scipy import special

_ETA_MAX = 700.0  # exp(700) is finite in float64


class Link:
    """Base class: ``link`` (mu -> eta), ``inverse`` (eta -> mu) and ``inverse_derivative``.

    Attributes
    ----------
    name : str
        The name R prints (``binomial(link = "logit")``).
    scale_name : str
        What the linear predictor is on, in words ("log-odds", "log").
    ratio_name : str or None
        What ``exp(coefficient)`` is (``"odds ratio"``, ``"rate ratio"``); None when an
        exponentiated coefficient has no such reading (probit).
    latent_variance : float or None
        Variance of the latent-scale residual of a binary model with this link
        (the logistic's pi^2 / 3, the normal's 1, the Gumbel's pi^2 / 6), as R's
        ``insight::get_variance`` uses for ICC and R^2; None for count links.
    """

    name = ""
    scale_name = ""
    ratio_name: str | None = None
    latent_variance: float | None = None
    # a binary link with F(-eta) = 1 - F(eta): modelling the other class flips the
    # coefficients' signs and leaves the model as it is (logit, probit; not cloglog)
    symmetric = True

    def link(self, mu):
        raise NotImplementedError

    def inverse(self, eta):
        raise NotImplementedError

    def inverse_derivative(self, eta):
        """``d mu / d eta`` at ``eta``."""
        raise NotImplementedError

    def log_odds(self, eta):
        """``log(mu / (1 - mu))`` at ``eta`` for a probability ``mu`` (binary links)."""
        mu = self.inverse(eta)
        return np.log(mu) - np.log1p(-mu)

    def log_probabilities(self, eta):
        """``(log mu, log(1 - mu))`` at ``eta`` for a probability ``mu`` (binary links),
        each without cancellation or underflow where the other is near 1."""
        mu = self.inverse(eta)
        return np.log(mu), np.log1p(-mu)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __reduce__(self):
        return (type(self), ())

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class LogitLink(Link):
    """``eta = log(mu / (1 - mu))``: binomial probabilities, coefficients as log odds ratios."""

    name = "logit"
    scale_name = "log-odds"
    ratio_name = "odds ratio"
    latent_variance = float(np.pi**2 / 3.0)

    def link(self, mu):
        return special.logit(mu)

    def inverse(self, eta):
        return special.expit(eta)

    def inverse_derivative(self, eta):
        mu = special.expit(eta)
        return mu * (1.0 - mu)

    def log_odds(self, eta):
        return np.asarray(eta, dtype=float)

    def log_probabilities(self, eta):
        eta = np.asarray(eta, dtype=float)
        return -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)


class ProbitLink(Link):
    """``eta = Phi^{-1}(mu)``: a latent normal threshold model."""

    name = "probit"
    scale_name = "probit"
    ratio_name = None
    latent_variance = 1.0

    def link(self, mu):
        return special.ndtri(mu)

    def inverse(self, eta):
        return special.ndtr(eta)

    def inverse_derivative(self, eta):
        return np.exp(-0.5 * np.asarray(eta) ** 2) / np.sqrt(2.0 * np.pi)

    def log_odds(self, eta):
        eta = np.asarray(eta, dtype=float)
        return special.log_ndtr(eta) - special.log_ndtr(-eta)  # no cancellation in the tails

    def log_probabilities(self, eta):
        eta = np.asarray(eta, dtype=float)
        return special.log_ndtr(eta), special.log_ndtr(-eta)


class CLogLogLink(Link):
    """``eta = log(-log(1 - mu))``: discrete-time hazards; ``exp(beta)`` is a hazard ratio."""

    name = "cloglog"
    symmetric = False
    scale_name = "complementary log-log"
    ratio_name = "hazard ratio"
    latent_variance = float(np.pi**2 / 6.0)

    def link(self, mu):
        return np.log(-np.log1p(-np.asarray(mu)))

    def inverse(self, eta):
        return -np.expm1(-np.exp(np.minimum(eta, _ETA_MAX)))

    def inverse_derivative(self, eta):
        e = np.exp(np.minimum(eta, _ETA_MAX))
        return e * np.exp(-e)

    def log_odds(self, eta):
        # log(mu) = log(1 - exp(-e)), log(1 - mu) = -e with e = exp(eta)
        e = np.exp(np.minimum(np.asarray(eta, dtype=float), _ETA_MAX))
        return np.log(-np.expm1(-e)) + e

    def log_probabilities(self, eta):
        # log(1 - exp(-e)) is eta - e / 2 to rounding where e is tiny (and e itself may
        # underflow there); log(1 - mu) = -e
        eta = np.minimum(np.asarray(eta, dtype=float), _ETA_MAX)
        e = np.exp(eta)
        with np.errstate(divide="ignore"):
            log_mu = np.where(e < 1e-10, eta - e / 2.0, np.log(-np.expm1(-e)))
        return log_mu, -e


class LogLink(Link):
    """``eta = log(mu)``: counts, coefficients as log rate ratios."""

    name = "log"
    scale_name = "log"
    ratio_name = "rate ratio"

    def link(self, mu):
        return np.log(mu)

    # not capped: a linear predictor beyond float64's range gives inf, as R's exp (a
    # capped value would be a finite wrong mean, and a zero standard error beyond it)
    def inverse(self, eta):
        with np.errstate(over="ignore"):
            return np.exp(np.asarray(eta, dtype=float))

    def inverse_derivative(self, eta):
        with np.errstate(over="ignore"):
            return np.exp(np.asarray(eta, dtype=float))


LINKS = {cls.name: cls for cls in (LogitLink, ProbitLink, CLogLogLink, LogLink)}


def make_link(name: str) -> Link:
    """The link object called ``name`` (``"logit"``, ``"probit"``, ``"cloglog"``, ``"log"``)."""
    try:
        return LINKS[name]()
    except KeyError:
        raise ValueError(f"unknown link {name!r}; choose one of {sorted(LINKS)}.") from None
