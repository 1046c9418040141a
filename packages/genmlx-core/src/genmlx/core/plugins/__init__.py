"""The plugin system: hook specifications and the lazy registry.

Plugin authors import :data:`hookimpl` and implement any of the hooks in
:mod:`genmlx.core.plugins.hookspecs`, then declare an entry point in the ``genmlx``
group. See the plugin author guide in the docs.
"""

from genmlx.core.plugins.hookspecs import hookimpl, hookspec
from genmlx.core.plugins.registry import (
    KINDS,
    METADATA_KEYS,
    Category,
    Entry,
    PluginLoadError,
    PluginLoadWarning,
    Registry,
    registry,
)
from genmlx.core.plugins.result_types import RESULT_TYPES

__all__ = [
    "KINDS",
    "METADATA_KEYS",
    "RESULT_TYPES",
    "Category",
    "Entry",
    "PluginLoadError",
    "PluginLoadWarning",
    "Registry",
    "hookimpl",
    "hookspec",
    "registry",
]
