"""Every MCMC kernel genmlx.infer registers passes the kernel kit (as a plugin's would).

The kit (:mod:`genmlx.core.testing.kernels`) runs each kernel, set up by its
registered ``conformance_kernel`` factory, on test models with exact posteriors:
stationarity from exact posterior draws, SBC, batched against single chains, key
determinism and the acceptance info. ``slow``: the kit's THOROUGH settings.
"""

from __future__ import annotations

from typing import Any

import pytest

from genmlx.core import registry
from genmlx.core.testing.kernels import THOROUGH, check_kernel
from genmlx.infer._plugin import INFERENCE_NAMES, KERNEL_NAMES


def test_every_kernel_declares_its_kit_set_up() -> None:
    reg = registry()
    declared = {e.name for e in reg.inference.entries() if e.info("conformance_kernel") is not None}
    assert declared >= set(KERNEL_NAMES)
    assert set(KERNEL_NAMES) <= set(INFERENCE_NAMES)


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_passes_the_kit(name: str, genmlx_kernel_kit: Any) -> None:
    report = genmlx_kernel_kit(name)
    assert any(r.name.startswith("stationarity[") for r in report.results)


def test_mh_follows_the_per_chain_key_convention() -> None:
    factory = registry().inference.entry("mh").info("conformance_kernel")
    report = check_kernel(factory, checks=["batched_vs_single"], models=["discrete"])
    assert "exact" in report.results[0].detail


@pytest.mark.slow
@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_passes_the_thorough_kit(name: str) -> None:
    factory = registry().inference.entry(name).info("conformance_kernel")
    check_kernel(factory, name=name, settings=THOROUGH)
