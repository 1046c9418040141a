"""Sphinx configuration for the GenMLX documentation (reStructuredText only)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "GenMLX"
author = "GenMLX contributors"
copyright = "GenMLX contributors"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
    "sphinx-mathjax-offline",  # MathJax 3 bundled into _static: formulas render offline
    "genmlx_refs",  # docs/_ext: references to an object under any of its import paths
]
# No sphinx.ext.intersphinx: docs builds must not need the network.

# plot_directive (docs/gallery.rst): PNG only, no links to other formats or the source
plot_formats = [("png", 90)]
plot_html_show_formats = False
plot_html_show_source_link = False

napoleon_google_docstring = True
napoleon_numpy_docstring = False

autodoc_typehints = "description"
autodoc_member_order = "bysource"
# Every cross-reference must resolve (`sphinx-build -W` turns a dead one into an error;
# docs/tests/test_docs_links.py checks the same). The intentional exceptions: objects
# of other libraries, whose documentation is not linked without intersphinx (the build
# must not need the network), and type-hint spellings that name no documented object.
nitpicky = True
nitpick_ignore_regex = [
    # mlx, numpy, matplotlib, ArviZ, pluggy, hypothesis, tqdm and the standard library
    (
        r"py:.*",
        r"(mx|mlx|np|numpy|nn|matplotlib|plt|mpl|arviz|az|pluggy|hypothesis|tqdm|optim)(\..*)?",
    ),
    # type variables and internal type aliases in signatures (not API)
    (
        r"py:class",
        r"(.*\.)?(_T|F|Pre|Post|TreeDef|Opaque|HasModule|FrozenSteps|Support|InAxes|Component"
        r"|Block|Space|H\.Trie|_\w+)",
    ),
    (r"py:.*", r"PluginManager(\..*)?"),  # pluggy's
    (r"py:.*", r"(typing|collections|collections\.abc|contextlib|types|pathlib|os)\..*"),
    (r"py:.*", r"(Path|Iterator|Iterable|Callable|Mapping|Sequence|Generator|ContextVar)"),
    # "optional", "default ...", "shape [n]" in napoleon's type fields
    (r"py:class", r"(optional|default.*|shape.*|callable|array|array-like|\.\.\.)"),
]

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

html_theme = "alabaster"
