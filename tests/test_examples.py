"""Run the examples as a user would (``python examples/NAME.py``); check their output and figures.

Each example takes an output directory as its first argument; here it is a
temporary one, so the run leaves nothing in the repository.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("formulaic")

ROOT = Path(__file__).resolve().parents[1]

# example -> (figures it must write, text its output must contain)
EXAMPLES = {
    "app_logins": (
        ["spaghetti", "trajectories", "diagnostics", "caterpillar", "rootogram"],
        # tutorial 002's lme4 numbers (intercept 0.737944, AIC 5290.3 and 5292.065) at
        # the printed precision; tests/test_app_logins.py checks them at full tolerance
        ["5290.3", "0.7379", "Random-intercept SD: 0.4330", "intercept + slope:  5292.0"],
    ),
    "binary_count_tutorial": (
        ["observed", "trajectories", "link_response", "ranef_qq", "count_checks"],
        ["Odds ratios", "AGQ (7)", "Incidence rate ratios", "Written summary"],
    ),
    "vegetables": (
        ["ppc"],
        ["trttreat:sexmale", "Model without interaction"],
    ),
    # prints tables only (no figures); the forecast gain is checked below
    "sklearn_workflows": (
        [],
        [
            "New people (GroupKFold, 5 folds)",
            "GLMM, conditional (group_columns='id')",
            "best: {'random_effects': '1 + time'}",
            "Estimated random-effect covariance (best by BIC)",
        ],
    ),
}


def _run(name, out):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run each example once per test session: name -> (completed process, output dir)."""
    done = {}

    def get(name):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            done[name] = (_run(name, out), out)
        return done[name]

    return get


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, run):
    figures, texts = EXAMPLES[name]
    result, out = run(name)
    assert result.returncode == 0, result.stderr[-3000:]
    for text in texts:
        assert text in result.stdout, f"{text!r} missing from the output of {name}"
    written = sorted(p.name for p in out.glob("*.png"))
    for figure in figures:
        assert any(figure in p for p in written), f"{name} did not save {figure}: {written}"


def test_vegetables_check_separates_the_models(run):
    """Every cell inside the simulated range with the interaction; none without it."""
    result, _ = run("vegetables")
    assert result.returncode == 0, result.stderr[-3000:]
    right, wrong = result.stdout.split("Model without interaction")
    right = right.split("Model with interaction")[1]
    assert right.count("True") == 4 and "False" not in right
    assert wrong.count("False") >= 3


def test_sklearn_workflows_conditional_forecasts_beat_population_ones(run):
    """Forecasts that use a known person's random effects have the better log-likelihood."""
    result, _ = run("sklearn_workflows")
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("Conditional forecasts gain"))
    gain = float(line.split("gain")[1].split("nats")[0])
    assert gain > 0.05
