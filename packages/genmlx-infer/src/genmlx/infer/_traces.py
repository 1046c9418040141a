"""Helpers for kernels on single and batched traces."""

from __future__ import annotations

import mlx.core as mx

from genmlx.core import Trace
from genmlx.core.batching import where_particles
from genmlx.infer.kernel_info import MHInfo

__all__ = ["accept_reject", "where_trace"]


def where_trace(mask: mx.array, new: Trace, old: Trace) -> Trace:
    """Per chain: ``new`` where ``mask`` else ``old`` (traces of the same structure).

    For a single trace ``mask`` is a scalar; for a batched trace it has shape ``[n]`` and
    every leaf is selected along its leading particle axis.

    Raises:
        ValueError: the traces have different address structures (a batched kernel
            needs a model whose addresses do not depend on random choices).
    """
    # the top-level arguments are shared by every chain (and unchanged by a kernel):
    # where_particles selects only the trace's own leaves, which carry the chain axis
    out: Trace | None = where_particles(mask, new, old)
    if out is None:
        raise ValueError(
            "accept/reject needs the proposed and current traces to have the same "
            "addresses and shapes; this model's structure changed between them"
        )
    return out


def accept_reject(
    key: mx.array, log_alpha: mx.array, new: Trace, old: Trace
) -> tuple[Trace, MHInfo]:
    """Metropolis–Hastings accept step: ``(trace, MHInfo)`` per chain.

    ``log_alpha`` is the log acceptance ratio (shape ``[]`` or ``[n]``); NaN counts as
    rejection.
    """
    u = mx.random.uniform(shape=log_alpha.shape, key=key)
    safe = mx.where(mx.isnan(log_alpha), -mx.inf, log_alpha)
    accepted = mx.log(u) < safe
    info = MHInfo(accepted, mx.exp(mx.minimum(safe, 0.0)))
    out = where_particles(accepted, new, old)
    if out is None:
        if new.batch_shape:
            raise ValueError(
                "accept/reject needs the proposed and current traces to have the same "
                "addresses and shapes; this model's structure changed between them"
            )
        # a single trace whose structure changed (e.g. a move across branches): choose
        # in Python — this needs the value, so it cannot be compiled
        return (new if bool(accepted.item()) else old), info
    return out, info
