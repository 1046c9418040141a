"""Registers genmlx.infer's algorithms through the ``genmlx`` entry point."""

from __future__ import annotations

from typing import Any

from genmlx.core.plugins import hookimpl

INFERENCE_NAMES = (
    "importance_sampling",
    "importance_resampling",
    "mh",
    "involutive_mh",
    "mala",
    "hmc",
    "nuts",
    "nuts_warmup",
    "map_optimize",
    "elliptical_slice",
    "gibbs",
    "cycle",
    "mix",
    "repeat",
    "chain",
    "parallel_tempering",
    "split_merge_move",
    "birth_death_move",
    "particle_filter",
    "conditional_smc",
    "particle_gibbs",
    "pmmh",
)


@hookimpl
def genmlx_register_inference(register: Any) -> None:
    """Register every inference algorithm and kernel combinator of genmlx.infer."""
    import genmlx.infer as infer

    for name in INFERENCE_NAMES:
        register(getattr(infer, name), name=name)
