"""Diagnostics over chains or particles held by several processes."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.infer.distributed._comm import gather_rows, global_logsumexp, layout_from_local

__all__ = ["gather_chains", "weights_ess"]


def gather_chains(samples: mx.array, group: Any, op: str) -> mx.array:
    """Every process's chains (axis 0 of ``samples``), concatenated in rank order, on
    every process. The processes may hold different numbers of chains but must have the
    same number of draws and parameter shape."""
    if not isinstance(samples, mx.array) or samples.ndim < 2:
        raise ValueError(
            f"{op}: samples must have shape [chains, draws, *param_shape]; got "
            f"{getattr(samples, 'shape', type(samples).__name__)}"
        )
    layout, _ = layout_from_local(
        samples.shape[0], group, op, None, samples.shape[1:], need_key=False
    )
    return gather_rows(samples, layout, group)


def weights_ess(log_weights: mx.array, axis: int, group: Any) -> mx.array:
    """Kish ESS of importance weights whose particle ``axis`` is split over processes:
    ``exp(2·L₁ − L₂)`` with ``L₁``, ``L₂`` the global logsumexps of ``lw`` and ``2·lw``
    (a maximum and two sums over processes). Only one-dimensional weights (one particle
    system) are supported."""
    if log_weights.ndim != 1:
        raise ValueError(
            "effective_sample_size_weights(group=...): log_weights must be one-dimensional "
            f"(this process's particles); got shape {log_weights.shape}"
        )
    del axis
    lse, lse2 = global_logsumexp(log_weights, group, "effective_sample_size_weights")
    return mx.exp(2.0 * lse - lse2)
