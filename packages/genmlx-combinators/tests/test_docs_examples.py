"""Every example of the combinator documentation runs and prints what it says.

Two sources of examples: the ``>>>`` blocks of the pages in ``docs/combinators/`` (one
test per page; a page's blocks share one namespace, in page order) and the docstrings of
every module of :mod:`genmlx.combinators`. The pages are found from this file's place in
the repository; an installed package has no docs folder, so those tests are skipped there.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import genmlx.combinators

DOCS = Path(__file__).resolve().parents[3] / "docs" / "combinators"
PAGES = sorted(p.name for p in DOCS.glob("*.rst")) if DOCS.is_dir() else []
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(genmlx.combinators.__path__, prefix="genmlx.combinators.")
)
FLAGS = doctest.ELLIPSIS


@pytest.mark.skipif(not DOCS.is_dir(), reason="docs/combinators/ is not in this checkout")
def test_every_page_has_examples() -> None:
    expected = {
        "index.rst",
        "map.rst",
        "vmap.rst",
        "unfold.rst",
        "scan.rst",
        "switch.rst",
        "mask.rst",
        "mix.rst",
        "recurse.rst",
        "dimap.rst",
    }
    assert expected <= set(PAGES), f"missing pages: {sorted(expected - set(PAGES))}"
    parser = doctest.DocTestParser()
    for name in PAGES:
        examples = parser.get_examples((DOCS / name).read_text(encoding="utf-8"))
        assert examples, f"docs/combinators/{name} has no >>> example"


@pytest.mark.skipif(not DOCS.is_dir(), reason="docs/combinators/ is not in this checkout")
@pytest.mark.parametrize("page", PAGES)
def test_page_examples(page: str) -> None:
    result = doctest.testfile(
        str(DOCS / page), module_relative=False, optionflags=FLAGS, verbose=False
    )
    assert result.attempted > 0, f"docs/combinators/{page} has no >>> example"
    assert result.failed == 0, f"{result.failed} example(s) failed in docs/combinators/{page}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_every_combinator_has_a_docstring_example() -> None:
    for name in genmlx.combinators.__all__:
        obj = getattr(genmlx.combinators, name)
        if name == "Masked":  # a NamedTuple return value, shown on the Mask page
            continue
        assert ">>>" in (obj.__doc__ or ""), f"genmlx.combinators.{name} needs an example"
