"""genmlx-combinators as a GenMLX plugin: registers every combinator with the registry.

Published through the entry point ``combinators = "genmlx.combinators._plugin"`` in the
``genmlx`` group, exactly as a third-party package would, so
``genmlx.core.registry().combinators`` lists them (provider ``combinators``) and
``python -m genmlx.core.testing`` checks each on the examples registered with it
(``examples=``) and, with the combinator kit, around every kernel of the kit's family
through the builder registered as ``conformance_build`` (both in
:mod:`genmlx.combinators._examples`).
"""

from __future__ import annotations

from typing import Any

from genmlx.core.plugins import hookimpl

__all__ = ["COMBINATOR_NAMES", "genmlx_register_combinators"]

COMBINATOR_NAMES: tuple[str, ...] = (
    "Map",
    "Vmap",
    "Repeat",
    "Unfold",
    "Scan",
    "Switch",
    "Mask",
    "Mix",
    "Recurse",
    "Dimap",
    "Contramap",
    "MapRetval",
)


@hookimpl
def genmlx_register_combinators(register: Any) -> None:
    """Register the combinator classes under their class names, with their kit builders."""
    import genmlx.combinators as c
    from genmlx.combinators._examples import BUILDERS, EXAMPLES

    for name in COMBINATOR_NAMES:
        register(
            getattr(c, name), name=name, examples=EXAMPLES[name], conformance_build=BUILDERS[name]
        )
