"""Deprecated module: NUTS moved to :mod:`genmlx.infer.nuts_kernel` (``genmlx.infer.nuts``
is the kernel function); importing a name from here warns for one release."""

from __future__ import annotations

from genmlx.core.deprecation import moved

__getattr__ = moved(
    __name__,
    {
        name: "genmlx.infer.nuts_kernel"
        for name in (
            "NUTSState",
            "NutsInfo",
            "NutsWarmup",
            "nuts",
            "nuts_info",
            "nuts_warmup",
            "nuts_warmup_state",
        )
    },
)
