"""The ADEV and learning documentation runs and prints what it says.

Sources: the ``>>>`` examples of ``docs/tutorial-adev.inc`` (the ADEV section of the
variational inference tutorial) and ``docs/tutorial-learning.rst`` (each page in one
namespace, in page order), and the docstrings of :mod:`genmlx.infer.adev`,
:mod:`genmlx.infer.adev_estimators` and :mod:`genmlx.infer.learning`. The pages are
found from this file's place in the repository; an installed package has no docs
folder, so those tests are skipped there. The pages train models with compiled steps,
whose first compilation on Linux CPU builds C++ kernels (slow on a cold cache), so they
and the learning docstrings are marked slow.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"
PAGES = ["tutorial-adev.inc", "tutorial-learning.rst"]
MODULES = [
    "genmlx.infer.adev",
    "genmlx.infer.adev_estimators",
    pytest.param("genmlx.infer.learning", marks=pytest.mark.slow),  # compiles training steps
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.slow
@pytest.mark.skipif(not DOCS.is_dir(), reason="docs/ is not in this checkout")
@pytest.mark.parametrize("page", PAGES)
def test_page_examples(page: str) -> None:
    result = doctest.testfile(str(DOCS / page), module_relative=False, optionflags=FLAGS)
    assert result.attempted > 0, f"docs/{page} has no >>> example"
    assert result.failed == 0, f"{result.failed} example(s) failed in docs/{page}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
