"""Hook specifications of the ``genmlx`` plugin system (pluggy).

Every hook receives a ``register`` callback with the signature
``register(obj, name=None, aliases=(), **metadata)``. Call it once per object you
provide. The registry validates the object against the core protocol for its kind at
that moment, rejects duplicate names with an error naming both providers, and remembers
which plugin provided it. The keyword ``metadata`` (optional; the keys each kind
accepts are :data:`genmlx.core.plugins.registry.METADATA_KEYS`) tells the conformance
kit how to check the object.

A plugin is any importable module (or object) with ``@hookimpl``-decorated functions,
published through an entry point in the ``genmlx`` group::

    # pyproject.toml of your package
    [project.entry-points.genmlx]
    my_plugin = "my_package.plugin"

    # my_package/plugin.py
    from genmlx.core.plugins import hookimpl

    @hookimpl
    def genmlx_register_distributions(register):
        register(my_distribution, aliases=("my_alias",))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = [
    "genmlx_register_combinators",
    "genmlx_register_distributions",
    "genmlx_register_inference",
    "genmlx_register_nn",
    "genmlx_register_visualizers",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("genmlx")
"""Marks a hook specification (used by GenMLX itself)."""

hookimpl = pluggy.HookimplMarker("genmlx")
"""Marks a plugin's hook implementation."""

Register = Callable[..., Any]


@hookspec
def genmlx_register_distributions(register: Register) -> None:
    """Register distributions.

    Each object must be an instance of :class:`genmlx.core.Distribution` (it implements
    ``sample`` and ``log_prob``). Its default name is ``obj.name``.
    """


@hookspec
def genmlx_register_combinators(register: Register) -> None:
    """Register combinators: callables that build generative functions.

    Each object must be a subclass of :class:`genmlx.core.GenerativeFunction` or a
    factory function returning one. Its default name is its ``__name__``. Give the
    kit ``conformance_build=`` (``kernel -> [(gen_fn, args), ...]``, see
    :mod:`genmlx.core.testing.combinators`) and ``conformance_examples=``.
    """


@hookspec
def genmlx_register_inference(register: Register) -> None:
    """Register inference algorithms and MCMC kernels (callables).

    Its default name is the callable's ``__name__``. A kernel (``kernel(trace, ...,
    key=) -> (new_trace, info)``) passes ``conformance_kernel=`` (``test_model ->
    kernel | None``, see :mod:`genmlx.core.testing.kernels`) so the kernel kit checks it.
    """


@hookspec
def genmlx_register_nn(register: Register) -> None:
    """Register neural-network generative functions or their factories (callables)."""


@hookspec
def genmlx_register_visualizers(register: Register) -> None:
    """Register visualizers: callables taking traces or samples and returning a figure.

    Pass ``accepts=`` with the result types it draws (names of
    :data:`genmlx.core.plugins.result_types.RESULT_TYPES`) so the visualizer kit checks
    it on each (see :mod:`genmlx.core.testing.visualizers`).
    """
