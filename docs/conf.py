"""Sphinx configuration: Markdown pages (MyST) and an API reference from numpydoc docstrings.

Build with warnings as errors (CI runs this)::

    python -m sphinx -W -b html docs docs/_build/html

Every Markdown page at the top of ``docs/`` is listed under "Guides" by a glob
in ``index.md``; a page added there joins the site without editing the index.
The figures in ``_static/`` come from the examples:
``python examples/<name>.py docs/_static`` regenerates them.
"""

from importlib import metadata

project = "sklearn_glmm"
author = "sklearn_glmm developers"
copyright = "sklearn_glmm developers"
try:
    release = metadata.version("sklearn_glmm")
except metadata.PackageNotFoundError:  # building from a source tree that is not installed
    release = "0+unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "README.md"]

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# numpydoc-style docstrings; attributes as fields so that they do not clash with autodoc
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True
napoleon_use_rtype = False

autodoc_typehints = "none"  # the docstrings give the types, with shapes
autodoc_member_order = "bysource"
# The estimators list the members inherited from the shared estimator (api.md asks for
# them); the members scikit-learn defines are skipped below.

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"sklearn_glmm {release}"
html_theme_options = {
    "description": "Generalized linear mixed models as scikit-learn estimators",
    "fixed_sidebar": True,
}


def _skip_member(app, what, name, obj, skip, options):
    """Hide what scikit-learn defines (get_params, set_output, set_fit_request, ...)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    module = getattr(obj, "__module__", None) or ""
    if module == "sklearn" or module.startswith("sklearn."):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
