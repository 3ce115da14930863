"""Formula fits that predict from raw data, as R's ``predict(m, newdata, re.form, type)``.

:func:`sklearn_glmm.formula.glmer` returns one of the classes below: a subclass of the
estimator of its family, with the same name, the same parameters and the same methods,
which also knows the formula it was fitted from. Its prediction methods take either

- a DataFrame holding the formula's variables (``trt``, ``sex``, ``time``, the grouping
  column ``id``, the variables of ``offset()`` terms): the formula's fixed part is applied
  to it with the training levels, contrasts and ``poly()``/``scale()`` coefficients, the
  grouping columns give the groups, and the offset terms are evaluated, as R's
  ``predict(m, newdata)`` does; or
- the design columns (``trttreat``, ``sexmale``, ...) or a numeric array, with
  ``groups=`` and ``offset=`` as for any estimator -- what Pipelines and cross-validation
  pass.

They add R's arguments ``re_form`` (``None`` is R's ``re.form = NULL``, conditional on the
groups; ``NA`` / ``"NA"`` / ``"~0"`` is R's ``re.form = NA``, random effects at zero) and,
on ``predict``, ``type`` (``"response"`` or ``"link"``).

Why a subclass rather than a wrapper: the object ``glmer`` returns is the estimator
(``isinstance(m, sklearn_glmm.BinomialGLMM)``), so ``summary()``, ``confint()``,
``sklearn_glmm.anova(m1, m2)``, the plots, ``clone`` and Pipelines treat it as they treat
any estimator, and the extra arguments need no change to the estimators' own signatures.
Refitting it (``fit``) or cloning it forgets the formula: it is then the plain estimator.
"""

from __future__ import annotations

from . import estimators
from ._formula_predictions import (  # (FormulaState: earlier pickles name it here)
    FormulaState,  # noqa: F401
    _RawDataPredictions,
)

__all__ = ["BinomialGLMM", "NegBinGLMM", "PoissonGLMM"]


_RAW_NOTE = """

    This is the class :func:`sklearn_glmm.formula.glmer` returns: the estimator with the
    formula it was fitted from. Its prediction methods also take a DataFrame holding the
    formula's variables (R's ``predict(m, newdata)``), and R's ``re_form`` (``None`` or NA)
    and, on ``predict``, ``type`` (``"response"`` or ``"link"``); see
    :mod:`sklearn_glmm._formula_model`. Fitting it again or cloning it forgets the formula.
"""


class BinomialGLMM(_RawDataPredictions, estimators.BinomialGLMM):
    __doc__ = "Logistic mixed model fitted from a formula." + _RAW_NOTE

    def fit(self, X, y, groups=None, *, sample_weight=None, offset=None, trials=None):
        """Fit as :class:`sklearn_glmm.BinomialGLMM` does (the formula is forgotten)."""
        self._forget_formula()
        return super().fit(
            X, y, groups=groups, sample_weight=sample_weight, offset=offset, trials=trials
        )

    def decision_function(self, X, groups=None, *, offset=None, population=None, re_form=None):
        """Log-odds of ``classes_[1]``, those of ``predict_proba``'s probability; see the
        estimator's method. ``re_form=NA`` (or ``population="zero"``): every row at a
        random effect of zero.

        ``predict(X, type="link")`` gives R's linear predictor, the log-odds of
        ``pos_label_`` with the logit link.
        """
        inputs = self._newdata(X, groups, offset, re_form, population)
        scores = super().decision_function(
            inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
        )
        return inputs.fill(scores)

    def predict_proba(self, X, groups=None, *, offset=None, population=None, re_form=None):
        """Class probabilities, columns ordered as ``classes_``; see the estimator's method.

        ``X`` may hold the formula's variables; ``re_form=NA`` is R's ``re.form = NA``.
        Rows with a missing value in a variable used give NaN.
        """
        inputs = self._newdata(X, groups, offset, re_form, population)
        proba = super().predict_proba(
            inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
        )
        return inputs.fill(proba)

    def predict(self, X, groups=None, *, offset=None, type=None, re_form=None, population=None):
        """Most probable class; with ``type``, R's ``predict(m, newdata, type=)``.

        Parameters
        ----------
        X : DataFrame or array-like
            The formula's variables (R's ``newdata``) or the design columns.
        groups, offset : as for the estimator
            Read from ``X`` when it holds the formula's variables.
        type : {None, "response", "link"}, default=None
            ``None``: the most probable class (scikit-learn's ``predict``).
            ``"response"``: the probability of ``pos_label_`` (R's ``type = "response"``).
            ``"link"``: its log-odds, offsets included (R's default ``type = "link"``).
        re_form : None or NA, default=None
            ``None`` uses the random effects of known groups (R's ``re.form = NULL``);
            ``np.nan`` / ``"NA"`` / ``"~0"`` sets them to zero (R's ``re.form = NA``).
        population : {None, "marginal", "zero"}, default=None
            For rows without a known group: ``"marginal"`` (the default) averages over the
            random effects, ``"zero"`` sets them to zero (R's ``allow.new.levels = TRUE``).
        """
        if type is None:
            self._refuse_class_of_counts("predict(newdata, type='response')", "predict")
        inputs = self._newdata(X, groups, offset, re_form, population, r_call=type is not None)
        if type is not None:
            return self._predict_type(inputs, type)
        inputs.require_complete("Classes")
        p = super().predict_mean(
            inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population
        )
        return self.classes_[(self._proba_classes_1(p) > 0.5).astype(int)]


class _CountFormula(_RawDataPredictions):
    def fit(self, X, y, groups=None, *, sample_weight=None, offset=None):
        """Fit as the estimator does (the formula is forgotten)."""
        self._forget_formula()
        return super().fit(X, y, groups=groups, sample_weight=sample_weight, offset=offset)

    def predict(self, X, groups=None, *, offset=None, population=None, type=None, re_form=None):
        """Expected count; with ``type``, R's ``predict(m, newdata, type=)``.

        ``type="response"`` is the expected count (as ``type=None``), ``type="link"`` its
        logarithm, offsets included. A zero-inflated model also has glmmTMB's
        ``type="zprob"`` (the probability of a structural zero; ``"zlink"`` its logit) and
        ``type="conditional"`` (the count model's mean, without the zero inflation); a
        hurdle model ``type="zprob"`` (the probability of a zero) and
        ``type="conditional"`` (the mean of the positive counts, glmmTMB's for a
        ``truncated_*`` family).
        ``X`` may hold the formula's variables; ``re_form=NA`` is R's ``re.form = NA``;
        see ``BinomialGLMM.predict`` of this module.
        """
        # (the zero-inflation and dispersion models have no random effects)
        reads = type not in ("zprob", "zlink", "disp")
        inputs = self._newdata(
            X, groups, offset, re_form, population, groups_read=reads, r_call=type is not None
        )
        return self._predict_type(inputs, "response" if type is None else type)

    def predict_proba(self, X, groups=None, *, offset=None, population=None, re_form=None, **kw):
        """Predictive distribution P(Y = k); see the estimator's ``predict_proba``.

        ``X`` may hold the formula's variables; ``re_form=NA`` is R's ``re.form = NA``.
        """
        inputs = self._newdata(X, groups, offset, re_form, population)
        proba = super().predict_proba(
            inputs.X, inputs.groups, offset=inputs.offset, population=inputs.population, **kw
        )
        return inputs.fill(proba)


class PoissonGLMM(_CountFormula, estimators.PoissonGLMM):
    __doc__ = "Poisson mixed model fitted from a formula." + _RAW_NOTE


class NegBinGLMM(_CountFormula, estimators.NegBinGLMM):
    __doc__ = "Negative binomial (NB2) mixed model fitted from a formula." + _RAW_NOTE
