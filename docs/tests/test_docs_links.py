"""The documentation has no dead cross-reference and renders formulas offline.

``docs/conf.py`` sets ``nitpicky = True`` (with its listed exceptions), so Sphinx warns
on every reference it cannot resolve; these tests build the site and fail on any
warning, and check that a dead reference is in fact reported.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
from sphinx.cmd.build import build_main

DOCS = Path(__file__).resolve().parents[1]


def _build(src: Path, out: Path, builder: str = "html") -> str:
    warnings = out / "warnings.txt"
    code = build_main(
        ["-q", "-b", builder, "-d", str(out / "doctrees"), "-w", str(warnings), str(src),
         str(out / builder)]
    )
    assert code == 0, f"sphinx-build failed: {warnings.read_text()}"
    return warnings.read_text()


def test_a_dead_reference_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "_ext").mkdir(parents=True)
    shutil.copy(DOCS / "_ext" / "genmlx_refs.py", src / "_ext")
    conf = (DOCS / "conf.py").read_text()
    (src / "conf.py").write_text(conf.replace('    "matplotlib.sphinxext.plot_directive",\n', ""))
    (src / "index.rst").write_text(
        "Index\n=====\n\n"
        ".. autofunction:: genmlx.core.gen\n\n"
        "Live: :func:`genmlx.core.gen`, :func:`genmlx.core.dsl.gen` and :func:`~gen`.\n"
        "Dead: :func:`genmlx.core.no_such_function`, :class:`NoSuchClass`.\n"
    )
    warnings = _build(src, tmp_path / "out")
    assert "genmlx.core.no_such_function" in warnings
    assert "NoSuchClass" in warnings
    assert "reference target not found: genmlx.core.gen" not in warnings
    assert "not found: genmlx.core.dsl.gen " not in warnings  # found through the object
    assert "not found: gen " not in warnings


def test_the_docs_have_no_dead_reference_and_formulas_render_offline(tmp_path: Path) -> None:
    warnings = _build(DOCS, tmp_path)
    assert warnings.strip() == "", warnings
    page = (tmp_path / "html" / "tutorial-inference.html").read_text(encoding="utf-8")
    assert 'src="_static/mathjax/tex-chtml.js"' in page  # bundled, no CDN
    assert "cdn.jsdelivr" not in page and "https://" not in page.split("<body")[0]
    assert (tmp_path / "html" / "_static" / "mathjax" / "tex-chtml.js").is_file()
    # objects are documented where users import them
    api = (tmp_path / "html" / "api" / "core.html").read_text(encoding="utf-8")
    assert 'id="genmlx.core.ChoiceMap"' in api
    infer = (tmp_path / "html" / "api" / "infer.html").read_text(encoding="utf-8")
    assert 'id="genmlx.infer.advi"' in infer
