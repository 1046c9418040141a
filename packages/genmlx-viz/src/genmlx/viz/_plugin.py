"""Registers genmlx.viz's visualizers through the ``genmlx`` entry point."""

from __future__ import annotations

from typing import Any

from genmlx.core.plugins import hookimpl

VISUALIZER_NAMES = (
    "plot_trace",
    "plot_posterior",
    "plot_pairs",
    "plot_chains",
    "plot_ranks",
    "plot_particles",
    "animate_particles",
    "plot_losses",
)
"""Every visualizer genmlx.viz registers (each returns a figure or an animation)."""


@hookimpl
def genmlx_register_visualizers(register: Any) -> None:
    """Register every plotting function of genmlx.viz under its own name."""
    import genmlx.viz as viz

    for name in VISUALIZER_NAMES:
        register(getattr(viz, name), name=name)
