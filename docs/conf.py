"""Sphinx configuration: reference pages in MyST Markdown, the executed notebooks through myst-nb, the furo theme.

Build with `make docs` (warnings are errors). docs/prepare_notebooks.py puts the executed notebooks in
docs/tour/ first; myst-nb only renders them. docs/_ext/mlmagics_docs.py generates what would otherwise
drift: the magics' and the CLI's help, the magics' settings, and the benchmarks section.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # the checkout's mlmagics, whatever the venv holds

import mlmagics  # noqa: E402

project = "mlmagics"
author = "the mlmagics authors"
copyright = "the mlmagics authors"  # noqa: A001 - Sphinx's name
release = version = mlmagics.__version__

extensions = [
    "myst_nb",  # Markdown pages and .ipynb notebooks (it loads myst_parser itself)
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "mlmagics_docs",
]

exclude_patterns = ["_build", "requirements.txt", "**/.ipynb_checkpoints"]
root_doc = "index"
smartquotes = False  # `--bench` in a help text stays two hyphens

# -- Markdown and notebooks ------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3  # [the Docker target](targets/docker.md#updates-keep-the-scoring-uri) works
nb_execution_mode = "off"  # notebooks arrive executed (prepare_notebooks.py); never run them here
nb_merge_streams = True  # a cell's many print() lines read as one block
# Widgets (the test form in notebook 02) keep their state in the executed notebook; myst-nb embeds it, and
# a reader's browser draws them with @jupyter-widgets/html-manager, which myst-nb loads from a CDN.

# -- Python API ---------------------------------------------------------------------------------------------------
autodoc_default_options = {"member-order": "bysource", "undoc-members": True}  # each directive names the members users call
autodoc_typehints = "description"  # hints under the parameters they belong to, not in a long signature
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False
autoclass_content = "both"  # the class's docstring and its __init__'s
autodoc_docstring_signature = False  # a dataclass without a docstring has its repr there, not a signature
default_role = "literal"  # the docstrings are written with Markdown's `code`, not reST's ``code``

# Every cross-reference must resolve, except to these: outside packages (no intersphinx: the build is
# offline) and what type hints name inside the core that is not public API (public names resolve to
# their pages: docs/_ext/mlmagics_docs.py).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(pathlib|os|collections\.abc|typing|concurrent\.futures|datetime|argparse|io|json)\..*"),
    (r"py:.*", r"(Path|Sequence|Mapping|Iterable|Iterator|Callable|Any|Literal|IO|TextIO|PathLike)"),
    (r"py:.*", r"(docker|kubernetes|requests|ipywidgets|IPython|traitlets|sqlite3|sqlalchemy)(\..*)?"),
    (r"py:.*", r"Row"),  # a metadata row (mapping of column to value): core/store/metadata.py
    (r"py:.*", r"mlmagics\.core\..*"),
]

# -- Output ---------------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"mlmagics {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
copybutton_prompt_text = r"\$ |>>> "
copybutton_prompt_is_regexp = True
