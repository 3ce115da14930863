"""glmer / glmmTMB take R's arguments: nAGQ, family strings with links, weights and offset
as column names, and say what to do for the R arguments they do not have."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulaic")

from sklearn_glmm.datasets import make_longitudinal  # noqa: E402
from sklearn_glmm.formula import glmer, glmmTMB  # noqa: E402

CBPP = Path(__file__).parent / "fixtures" / "binom_trials.csv"


def _quiet(fun, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kwargs)


@pytest.fixture(scope="module")
def binary():
    return make_longitudinal(n_groups=40, n_waves=4, random_state=2)[0]


@pytest.fixture(scope="module")
def counts():
    return make_longitudinal("poisson", n_groups=30, n_waves=4, re_sd=0.5, random_state=3)[0]


@pytest.fixture(scope="module")
def cbpp():
    df = pd.read_csv(CBPP)
    dummies = df[["period2", "period3", "period4"]].to_numpy()
    df["period"] = np.where(dummies.any(axis=1), dummies.argmax(axis=1) + 2, 1).astype(str)
    return df


# ---------------------------------------------------------------------------
# family strings
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family",
    [
        "binomial",
        "Binomial",
        "binomial()",
        "binomial(link='logit')",
        'binomial(link = "logit")',
        "binomial('logit')",
        "binomial(link = logit)",
    ],
)
def test_binomial_spellings(binary, family):
    m = _quiet(glmer, "y ~ time + (1 | id)", binary, family=family, max_iter=5)
    assert type(m).__name__ == "BinomialGLMM"


@pytest.mark.parametrize(
    "family, name",
    [
        ("poisson", "PoissonGLMM"),
        ("poisson(link='log')", "PoissonGLMM"),
        ('poisson(link = "log")', "PoissonGLMM"),
        ("nbinom2", "NegBinGLMM"),
        ("nbinom2(link = 'log')", "NegBinGLMM"),
        ("negbin", "NegBinGLMM"),
    ],
)
def test_count_spellings(counts, family, name):
    m = _quiet(glmmTMB, "y ~ time + (1 | id)", counts, family=family, max_iter=5)
    assert type(m).__name__ == name


@pytest.mark.parametrize(
    "family, match",
    [
        ("binomial(link = 'identity')", r"'identity' is not available for the binomial.*'logit'"),
        ("betabinomial(link='probit')", r"'probit'.*available: 'logit'"),
        ("poisson(link = 'identity')", r"'identity'.*available: 'log'"),
        ("gaussian", "family must be one of 'binomial', 'poisson', 'nbinom2'"),
        ("binomial(link = 'logit', foo = 1)", "only the link argument"),
    ],
)
def test_unavailable_families_and_links(binary, family, match):
    with pytest.raises(ValueError, match=match):
        glmer("y ~ time + (1 | id)", binary, family=family)


def test_family_must_be_text(binary):
    with pytest.raises(TypeError, match="family must be a string"):
        glmer("y ~ time + (1 | id)", binary, family=len)


# ---------------------------------------------------------------------------
# nAGQ, weights, offset
# ---------------------------------------------------------------------------


def test_nagq_is_n_agq(binary):
    r_name = _quiet(glmer, "y ~ time + (1 | id)", binary, nAGQ=5)
    ours = _quiet(glmer, "y ~ time + (1 | id)", binary, n_agq=5)
    assert r_name.n_agq == 5
    np.testing.assert_allclose(r_name.coef_, ours.coef_)
    assert r_name.loglik_ == ours.loglik_
    with pytest.raises(TypeError, match="either nAGQ"):
        glmer("y ~ time + (1 | id)", binary, nAGQ=5, n_agq=5)


def test_weights_and_offset_as_columns_or_arrays(counts):
    df = counts.assign(w=np.linspace(0.5, 2.0, len(counts)), lo=np.log(1 + counts["time"]))
    by_name = _quiet(glmer, "y ~ treatment + (1 | id)", df, "poisson", weights="w", offset="lo")
    by_value = _quiet(
        glmer,
        "y ~ treatment + (1 | id)",
        df,
        "poisson",
        weights=df["w"].to_numpy(),
        offset=df["lo"],
    )
    np.testing.assert_allclose(by_name.coef_, by_value.coef_, rtol=1e-10)
    in_formula = _quiet(glmer, "y ~ treatment + offset(lo) + (1 | id)", df, "poisson", weights="w")
    np.testing.assert_allclose(by_name.coef_, in_formula.coef_, rtol=1e-8)
    with pytest.raises(ValueError, match="names no column"):
        glmer("y ~ treatment + (1 | id)", df, "poisson", weights="weight")
    with pytest.raises(ValueError, match="one value per row"):
        glmer("y ~ treatment + (1 | id)", df, "poisson", offset=np.zeros(3))


def test_missing_weights_drop_rows_as_na_omit(counts):
    df = counts.assign(w=1.0)
    df.loc[[0, 5], "w"] = np.nan
    m = _quiet(glmer, "y ~ time + (1 | id)", df, "poisson", weights="w")
    complete = _quiet(glmer, "y ~ time + (1 | id)", df.drop(index=[0, 5]), "poisson")
    np.testing.assert_allclose(m.coef_, complete.coef_, rtol=1e-8)


def test_proportions_with_weights_are_successes_out_of_trials(cbpp):
    # R: glmer(incidence / size ~ period + (1 | herd), cbpp, weights = size, family = binomial)
    #    fixef: -1.398342864 -0.991924975 -1.128216216 -1.579745414; logLik -92.02656639
    #    (the same fit as cbind(incidence, size - incidence) ~ period + (1 | herd)); lme4's
    #    default optimiser stops a little short of the optimum here, hence atol 1e-3
    df = cbpp.assign(prop=cbpp["incidence"] / cbpp["trials"])
    m = _quiet(glmer, "prop ~ period + (1 | herd)", df, weights="trials")
    np.testing.assert_allclose(
        m.fixed_effects_["estimate"],
        [-1.398342864, -0.991924975, -1.128216216, -1.579745414],
        atol=1e-3,
    )
    assert m.loglik_ == pytest.approx(-92.02656639, abs=1e-3)
    cbind = _quiet(glmer, "cbind(incidence, trials - incidence) ~ period + (1 | herd)", df)
    np.testing.assert_allclose(m.coef_, cbind.coef_, rtol=1e-8)
    with pytest.raises(ValueError, match="whole number of successes"):
        glmer("prop ~ period + (1 | herd)", df, weights=df["trials"] + 0.5)


# ---------------------------------------------------------------------------
# R's arguments without a counterpart, and first-call mistakes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"control": "glmerControl(optimizer = 'bobyqa')"}, "control= .*max_iter= and tol="),
        ({"subset": "age > 18"}, r"subset= .*data\[data\['age'\] > 18\]"),
        ({"REML": False}, "REML does not apply"),
        ({"contrasts": {"trt": "contr.sum"}}, "treatment contrasts"),
        ({"start": [0, 1]}, "starting values"),
        ({"na_action": "na.exclude"}, "na.omit"),
        ({"verbose": 2}, "fit_record_"),
        ({"random_effects": "1"}, "come.* from the formula"),
        ({"maxiter": 10}, r"unexpected argument\(s\) \['maxiter'\].*'max_iter'"),
    ],
)
def test_r_arguments_without_counterpart(binary, kwargs, match):
    with pytest.raises(TypeError, match=match):
        glmer("y ~ time + (1 | id)", binary, **kwargs)


def test_swapped_formula_and_data(binary):
    with pytest.raises(TypeError, match="formula first and the data second"):
        glmer(binary, "y ~ time + (1 | id)")
    with pytest.raises(TypeError, match=r"glmmTMB\(formula, data, ...\) takes the formula first"):
        glmmTMB(binary, "y ~ time + (1 | id)", family="poisson")
    with pytest.raises(TypeError, match=r"glmmTMB\(\): R's argument control="):
        glmmTMB("y ~ time + (1 | id)", binary, family="binomial", control=None)
    with pytest.raises(TypeError, match="needs data="):
        glmer("y ~ time + (1 | id)")


def test_counts_without_family_say_pass_poisson(counts):
    with pytest.raises(ValueError, match="the default family is binomial; pass family='poisson'"):
        glmer("y ~ time + (1 | id)", counts)
    with pytest.raises(ValueError, match="the default family is binomial"):
        glmmTMB("y ~ time + (1 | id)", counts)
    # an explicit binomial family is taken at its word (and these are not two classes)
    with pytest.raises(ValueError, match="exactly two classes"):
        glmer("y ~ time + (1 | id)", counts, family="binomial")


def test_binary_and_cbind_outcomes_keep_the_default_family(binary):
    assert type(_quiet(glmer, "y ~ time + (1 | id)", binary, max_iter=5)).__name__ == "BinomialGLMM"
    df, _ = make_longitudinal(trials=5, n_groups=20, random_state=0)
    df["fail"] = df["trials"] - df["y"]
    m = _quiet(glmer, "cbind(y, fail) ~ time + (1 | id)", df, max_iter=5)
    assert type(m).__name__ == "BinomialGLMM"


def test_an_unknown_argument_is_answered_with_the_functions_own_arguments():
    from sklearn_glmm.formula import clmm

    d = pd.DataFrame(
        dict(
            r=pd.Categorical(np.arange(30) % 3, ordered=True),
            x=np.arange(30.0),
            g=np.arange(30) % 5,
        )
    )
    with pytest.raises(TypeError, match=r"It takes formula, data, link, threshold, scale") as e:
        clmm("r ~ x + (1 | g)", d, family="binomial")
    assert "family" not in str(e.value).split("It takes")[1]  # (it listed family, ziformula)


def test_glmmtmb_reads_r_s_abbreviations_of_its_formula_arguments():
    # glmmTMB's own examples write zi = ~1: R matches it to ziformula (an abbreviation
    # that begins one argument's name only); d could be data, dispformula or doFit
    df, _ = make_longitudinal("poisson", n_groups=40, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = glmmTMB("y ~ time + (1 | id)", df, family="poisson", ziformula="~1")
        short = glmmTMB("y ~ time + (1 | id)", df, family="poisson", zi="~1")
    assert short.loglik_ == full.loglik_
    assert short.zero_inflation_ == full.zero_inflation_
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['d'\]"):
        glmmTMB("y ~ time + (1 | id)", df, family="poisson", d="~1")
