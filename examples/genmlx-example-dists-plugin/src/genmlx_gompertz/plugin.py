"""The plugin module named by the ``genmlx`` entry point: registers ``gompertz``."""

from __future__ import annotations

from typing import Any

from genmlx.core.plugins import hookimpl


@hookimpl
def genmlx_register_distributions(register: Any) -> None:
    from genmlx_gompertz import EXAMPLES, gompertz

    register(gompertz, examples=EXAMPLES)
