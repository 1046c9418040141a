"""The docstring examples of the exact and analytical inference modules run and print
what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "genmlx.infer.enumeration",
    "genmlx.infer.conjugacy",
    "genmlx.infer.kalman",
    "genmlx.infer.hmm",
    "genmlx.infer.fit",
    "genmlx.infer.logdensity_vi",
    "genmlx.infer.translators",
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
