"""The names of GenMLX's result types, for visualizers to declare what they draw.

A visualizer registers with ``accepts=(...)`` naming some of :data:`RESULT_TYPES`; the
visualizer kit (:mod:`genmlx.core.testing.visualizers`) then draws an example of each
declared type with it. The names describe shapes of objects, so a visualizer that
reads them by duck typing needs no import of ``genmlx.infer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["RESULT_TYPES"]

RESULT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "trace": "one unbatched Trace",
        "batched_trace": "a Trace with batch_shape (n,): particles or independent chains",
        "chain_result": (
            "genmlx.infer.chain's ChainResult: .trace (the chains as a batched trace), "
            ".samples {address: [draws, chains, ...]}, .acceptance_rate"
        ),
        "weighted_particles": (
            "weighted particles with .traces and .log_weights: genmlx.infer's ISResult "
            "and ParticleFilterState"
        ),
        "particle_history": "a list of ParticleFilterState snapshots, one per SMC step",
        "vi_result": (
            "a variational fit with .elbo_history and .sample(n, key=): ADVIResult, VIResult"
        ),
        "train_result": "a training result with .params and .history (genmlx.infer's TrainResult)",
    }
)
"""Result-type name → what objects of that type look like."""
