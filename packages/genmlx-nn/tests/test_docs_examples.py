"""Every example of genmlx.nn's documentation runs and prints what it says.

Two sources: the docstrings of every module of :mod:`genmlx.nn`, and the ``>>>`` blocks
of ``docs/tutorial-amortized.rst`` (one namespace, in page order). The page is found
from this file's place in the repository; an installed package has no docs folder, so
that test is skipped there.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import genmlx.nn

TUTORIAL = Path(__file__).resolve().parents[3] / "docs" / "tutorial-amortized.rst"
MODULES = sorted(m.name for m in pkgutil.walk_packages(genmlx.nn.__path__, prefix="genmlx.nn."))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_every_public_name_has_a_docstring_example() -> None:
    for name in genmlx.nn.__all__:
        obj = getattr(genmlx.nn, name)
        if name in ("AmortizedFit", "LanguageModelTrace"):  # results, shown with their makers
            assert len((obj.__doc__ or "").strip()) > 20, name
            continue
        assert ">>>" in (obj.__doc__ or ""), f"genmlx.nn.{name} needs an example"


@pytest.mark.skipif(not TUTORIAL.is_file(), reason="docs/ is not in this checkout")
def test_tutorial_examples() -> None:
    result = doctest.testfile(
        str(TUTORIAL), module_relative=False, optionflags=FLAGS, verbose=False
    )
    assert result.attempted > 0, "the tutorial has no >>> example"
    assert result.failed == 0, f"{result.failed} example(s) failed in {TUTORIAL.name}"
