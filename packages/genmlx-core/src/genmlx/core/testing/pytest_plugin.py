"""The pytest plugin of the conformance kits: one fixture per kit.

genmlx-core registers this module as a pytest plugin (entry point ``pytest11``,
name ``genmlx``), so a plugin's test suite uses the kits in one line, on an object or
on a name the registry knows (the kit then reads the registration metadata)::

    def test_my_kernel(genmlx_kernel_kit):
        genmlx_kernel_kit("my_kernel")            # registered with conformance_kernel=

    def test_my_combinator(genmlx_combinator_kit):
        genmlx_combinator_kit("MyCombinator")     # registered with conformance_build=

    def test_my_plot(genmlx_visualizer_kit):
        genmlx_visualizer_kit(my_plot, accepts=("chain_result",))

    def test_my_distribution(genmlx_distribution_kit):
        genmlx_distribution_kit("my_distribution")

Each call runs the kit and raises ``AssertionError`` with the whole report when a
check fails (pytest shows it); on success it returns the
:class:`~genmlx.core.testing.report.KitReport` (a
:class:`~genmlx.core.testing.distributions.DistributionReport` for distributions).
Keyword arguments go to the kit (``models=``, ``checks=``, ``max_examples=``, ...).

``pytest --genmlx-thorough`` runs the kernel kit's larger experiments
(:data:`~genmlx.core.testing.kernels.THOROUGH`) instead of the quick defaults.

The fixtures themselves are defined only where pytest is installed (this module is
importable without it: the kit classes below work anywhere).
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

__all__ = [
    "CombinatorKit",
    "DistributionKit",
    "KernelKit",
    "KitUsageError",
    "VisualizerKit",
]


class KitUsageError(ValueError):
    """A kit fixture was called in a way it cannot check (a missing declaration)."""


def _entry(kind: str, name: str) -> Any:
    from genmlx.core.plugins.registry import registry

    return registry().category(kind).entry(name)


def _need(entry: Any, key: str, what: str) -> Any:
    value = entry.info(key)
    if value is None:
        raise KitUsageError(
            f"{entry.name!r} (from plugin {entry.plugin!r}) declares no {key}=, so the "
            f"{what} kit cannot check it; pass it at registration or as an attribute"
        )
    return value


class KernelKit:
    """``kit(factory_or_name, **kwargs)`` runs :func:`~genmlx.core.testing.check_kernel`."""

    def __init__(self, thorough: bool = False) -> None:
        self.thorough = thorough

    def __call__(self, kernel: Any, **kwargs: Any) -> Any:
        from genmlx.core.testing.kernels import QUICK, THOROUGH, check_kernel

        kwargs.setdefault("settings", THOROUGH if self.thorough else QUICK)
        if isinstance(kernel, str):
            entry = _entry("inference", kernel)
            kwargs.setdefault("name", entry.name)
            kwargs.setdefault("info_fields", tuple(entry.info("info_fields", ()) or ()))
            kernel = _need(entry, "conformance_kernel", "kernel")
        return check_kernel(kernel, **kwargs)


class CombinatorKit:
    """``kit(builder_or_name, **kwargs)`` runs :func:`~genmlx.core.testing.check_combinator`."""

    def __call__(self, combinator: Any, **kwargs: Any) -> Any:
        from genmlx.core.testing.combinators import check_combinator

        if isinstance(combinator, str):
            entry = _entry("combinators", combinator)
            kwargs.setdefault("name", entry.name)
            kwargs.setdefault("examples", entry.examples())
            kwargs.setdefault("batched", bool(entry.info("conformance_batched", True)))
            combinator = _need(entry, "conformance_build", "combinator")
        return check_combinator(combinator, **kwargs)


class VisualizerKit:
    """``kit(fn_or_name, accepts=None, **kwargs)`` runs
    :func:`~genmlx.core.testing.check_visualizer` (``accepts`` defaults to what the
    registered visualizer declares)."""

    def __call__(self, visualizer: Any, accepts: Any = None, **kwargs: Any) -> Any:
        from genmlx.core.testing.visualizers import check_visualizer

        if isinstance(visualizer, str):
            entry = _entry("visualizers", visualizer)
            kwargs.setdefault("name", entry.name)
            kwargs.setdefault("call", entry.info("conformance_call"))
            accepts = accepts if accepts is not None else _need(entry, "accepts", "visualizer")
            visualizer = entry.obj
        if accepts is None:
            raise KitUsageError("genmlx_visualizer_kit: pass accepts=(result types, ...)")
        return check_visualizer(visualizer, tuple(accepts), **kwargs)


class DistributionKit:
    """``kit(dist_or_name, params=None, **kwargs)`` runs
    :func:`~genmlx.core.testing.check_distribution` on ``params`` or on every tuple of
    the distribution's ``example_params``."""

    def __call__(self, dist: Any, params: Any = None, **kwargs: Any) -> Any:
        from genmlx.core.testing.distributions import check_distribution

        if isinstance(dist, str):
            entry = _entry("distributions", dist)
            dist, default = entry.obj, entry.examples()
        else:
            default = getattr(dist, "example_params", None)
        examples = [params] if params is not None else list(default or [])
        if not examples:
            raise KitUsageError(
                "genmlx_distribution_kit: pass params= (or register the distribution with "
                "examples=...)"
            )
        return [check_distribution(dist, tuple(p), **kwargs) for p in examples]


if find_spec("pytest") is not None:  # the fixtures and the option, for pytest to find
    from genmlx.core.testing._pytest_fixtures import (  # noqa: F401
        genmlx_combinator_kit,
        genmlx_distribution_kit,
        genmlx_kernel_kit,
        genmlx_visualizer_kit,
        pytest_addoption,
    )
