"""Every docstring example in genmlx.core runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import genmlx.core

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(genmlx.core.__path__, prefix="genmlx.core.")
    if not m.name.endswith("__main__")
)


# Examples that need an optional dependency (the visualizer kit's draws a figure; the
# test suite of genmlx-viz runs it where matplotlib is installed).
OPTIONAL = {"genmlx.core.testing.visualizers": "matplotlib"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_public_api_is_documented() -> None:
    for name in genmlx.core.__all__:
        obj = getattr(genmlx.core, name)
        if callable(obj) or isinstance(obj, type):
            doc = getattr(obj, "__doc__", None) or ""
            assert len(doc.strip()) > 20, f"genmlx.core.{name} needs a docstring"
