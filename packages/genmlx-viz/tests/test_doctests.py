"""Every docstring example in genmlx.viz runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import genmlx.viz

SUBMODULES = sorted(
    m.name for m in pkgutil.walk_packages(genmlx.viz.__path__, prefix="genmlx.viz.")
)
MODULES = ["genmlx.viz", *SUBMODULES]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_public_api_is_documented() -> None:
    for name in genmlx.viz.__all__:
        doc = getattr(genmlx.viz, name).__doc__ or ""
        assert len(doc.strip()) > 40, f"genmlx.viz.{name} needs a docstring"
        if name not in ("ParticleAnimation", "address_label"):
            assert "Example:" in doc and ">>>" in doc, f"genmlx.viz.{name} needs an example"
