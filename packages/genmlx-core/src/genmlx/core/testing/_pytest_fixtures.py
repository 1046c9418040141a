"""The fixtures and the command-line option of :mod:`genmlx.core.testing.pytest_plugin`.

Kept apart so that the plugin module imports without pytest; pytest finds these through
the plugin module, which re-exports them when pytest is installed.
"""

from __future__ import annotations

import pytest

from genmlx.core.testing.pytest_plugin import (
    CombinatorKit,
    DistributionKit,
    KernelKit,
    VisualizerKit,
)

__all__ = [
    "genmlx_combinator_kit",
    "genmlx_distribution_kit",
    "genmlx_kernel_kit",
    "genmlx_visualizer_kit",
    "pytest_addoption",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--genmlx-thorough``: larger kernel-kit experiments."""
    group = parser.getgroup("genmlx", "GenMLX conformance kits")
    group.addoption(
        "--genmlx-thorough",
        action="store_true",
        default=False,
        help="run the kernel kit's THOROUGH settings (more chains and steps; minutes)",
    )


@pytest.fixture
def genmlx_kernel_kit(request: pytest.FixtureRequest) -> KernelKit:
    """The kernel kit: ``genmlx_kernel_kit(factory or registered name, **kwargs)``."""
    return KernelKit(thorough=bool(request.config.getoption("genmlx_thorough", False)))


@pytest.fixture
def genmlx_combinator_kit() -> CombinatorKit:
    """The combinator kit: ``genmlx_combinator_kit(builder or registered name, **kwargs)``."""
    return CombinatorKit()


@pytest.fixture
def genmlx_visualizer_kit() -> VisualizerKit:
    """The visualizer kit: ``genmlx_visualizer_kit(fn or registered name, accepts=...)``."""
    return VisualizerKit()


@pytest.fixture
def genmlx_distribution_kit() -> DistributionKit:
    """The distribution kit: ``genmlx_distribution_kit(dist or registered name, params)``."""
    return DistributionKit()
