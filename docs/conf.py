"""Sphinx configuration for the GenMLX documentation (reStructuredText only)."""

project = "GenMLX"
author = "GenMLX contributors"
copyright = "GenMLX contributors"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
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
nitpicky = False

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

html_theme = "alabaster"
