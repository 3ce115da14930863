"""Build the documentation site with warnings as errors (the command CI runs)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-b", "html", "-q", str(ROOT / "docs"), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    for page in ["index", "lme4_users", "conditional_marginal", "reference/api"]:
        assert (out / f"{page}.html").exists(), page
    for page in ["app_logins", "binary_count", "vegetables"]:
        html = (out / "tutorials" / f"{page}.html").read_text()
        assert "<img" in html, f"tutorial {page} shows no figure"
    api = (out / "reference" / "api.html").read_text()
    for name in ["BinomialGLMM.fit", "plotting.plot_trajectories", "formula.glmer"]:
        assert f"sklearn_glmm.{name}" in api, name


def test_docs_figures_exist():
    """Every image a page embeds is committed under docs/_static."""
    import re

    pages = [p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts]
    for page in pages:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text()):
            assert (page.parent / target).resolve().exists(), f"{page.name}: {target}"
