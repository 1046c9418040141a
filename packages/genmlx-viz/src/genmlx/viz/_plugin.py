"""Registers genmlx.viz's visualizers through the ``genmlx`` entry point.

Each registers with ``accepts=`` (the result types it draws, :data:`ACCEPTS`), so the
visualizer kit (``python -m genmlx.core.testing``) draws every one of them with it.
"""

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


_SAMPLES = ("batched_trace", "chain_result", "weighted_particles")

ACCEPTS: dict[str, tuple[str, ...]] = {
    "plot_trace": ("trace", "batched_trace"),
    "plot_posterior": _SAMPLES,
    "plot_pairs": _SAMPLES,
    "plot_chains": ("chain_result",),
    "plot_ranks": ("chain_result",),
    "plot_particles": ("particle_history",),
    "animate_particles": ("particle_history",),
    "plot_losses": ("vi_result", "train_result"),
}
"""Visualizer name → the result types it declares (names of
:data:`genmlx.core.plugins.result_types.RESULT_TYPES`)."""


def _with_step_address(fn: Any, example: Any, **kwargs: Any) -> Any:
    """Particle plots follow one address per step: the kit's history names it."""
    return fn(example.result, example.step_address, **kwargs)


@hookimpl
def genmlx_register_visualizers(register: Any) -> None:
    """Register every plotting function of genmlx.viz under its own name."""
    import genmlx.viz as viz

    for name in VISUALIZER_NAMES:
        extra = (
            {"conformance_call": _with_step_address}
            if name in ("plot_particles", "animate_particles")
            else {}
        )
        register(getattr(viz, name), name=name, accepts=ACCEPTS[name], **extra)
