"""Every combinator passes the combinator kit around every kernel of its family.

The kit (:mod:`genmlx.core.testing.combinators`) builds each combinator around the
deterministic, discrete, continuous, nested and batched kernels through its registered
``conformance_build`` and checks the GFI laws, the batched-vs-single laws and the
incremental-update law (a no-change update calls no operation of the kernel), plus
the examples registered with the combinator.
"""

from __future__ import annotations

from typing import Any

import pytest

from genmlx.combinators._plugin import COMBINATOR_NAMES
from genmlx.core import registry
from genmlx.core.testing.combinators import FAMILY


@pytest.mark.parametrize("name", COMBINATOR_NAMES)
def test_combinator_passes_the_kit(name: str, genmlx_combinator_kit: Any) -> None:
    report = genmlx_combinator_kit(name, max_examples=2)
    checked = {r.name.split("[")[1].split("-")[0].rstrip("]") for r in report.results}
    assert set(FAMILY) <= checked  # every kernel of the family went through it
    assert any(r.name.startswith("incremental_update[") for r in report.results)


def test_every_combinator_declares_a_builder() -> None:
    for name in COMBINATOR_NAMES:
        entry = registry().combinators.entry(name)
        assert callable(entry.info("conformance_build")), name
        assert entry.examples(), name
