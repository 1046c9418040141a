"""Registers genmlx.nn's generative functions through the ``genmlx`` entry point.

Published as ``nn = "genmlx.nn._plugin"`` in the ``genmlx`` group, the same way a
third-party package would, so ``genmlx.core.registry().nn`` lists them (provider
``nn``).
"""

from __future__ import annotations

from typing import Any

from genmlx.core.plugins import hookimpl

__all__ = ["NN_NAMES", "genmlx_register_nn"]

NN_NAMES: tuple[str, ...] = ("NeuralNetGF", "LanguageModelGF")


@hookimpl
def genmlx_register_nn(register: Any) -> None:
    """Register the neural-network generative-function classes under their class names."""
    import genmlx.nn as gnn

    for name in NN_NAMES:
        register(getattr(gnn, name), name=name)
