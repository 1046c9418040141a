"""Sharded importance sampling and sampling–importance–resampling.

Process ``r`` of ``P`` draws particles ``[lo_r, hi_r)`` of the ``N`` (``lo_r = ⌊rN/P⌋``)
with their global keys (see ``genmlx.infer.distributed._particles``), so the union of
the shards is exactly the single-process run with the same ``N`` and key. The log weights
are combined exactly: ``m = max_r max_i log w̃_ri`` and
``L = m + log Σ_r Σ_i exp(log w̃_ri − m)`` (a maximum and a sum over processes, a few
numbers each), so ``log Ẑ = L − log N`` and the normalised weights ``log w̃ − L`` are
the single-process ones up to the rounding of the sum's order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, GenerativeFunction, Trace
from genmlx.core.batching import take_particles
from genmlx.core.random import Key, resolve_key
from genmlx.infer.distributed import _particles
from genmlx.infer.distributed._comm import (
    Layout,
    balanced_layout,
    gather_rows,
    gather_weights,
    global_logsumexp,
    local_only,
)
from genmlx.infer.distributed._exchange import fetch
from genmlx.infer.importance import ISResult, _check_inputs

__all__ = ["gather_traces", "importance_resampling", "importance_sampling"]


def gather_traces(traces: Trace, layout: Layout, group: Any, op: str = "gather") -> Trace:
    """All ``N`` particles (rank order) as one batched trace on every process."""
    everything = np.arange(layout.n_total, dtype=np.int64)
    return fetch(traces, layout, [everything] * layout.size, group, op)


def importance_sampling(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    proposal: GenerativeFunction | None,
    proposal_args: tuple[Any, ...],
    *,
    key: Key,
    group: Any,
    gather: bool = False,
) -> ISResult:
    """Sharded :func:`genmlx.infer.importance_sampling` (see there for the estimator)."""
    op = "importance_sampling"
    obs = _check_inputs(model, args, observations, n_particles, proposal, op)
    if not isinstance(proposal_args, (tuple, list)):
        raise TypeError(f"{op}: proposal_args must be a tuple")
    layout = balanced_layout(n_particles, group, op)
    k = resolve_key(key)
    with local_only():
        tr, lw = _particles.generate(
            model, tuple(args), obs, proposal, tuple(proposal_args), k, layout
        )
    # one collective: the global logsumexp, and a check that the processes agree
    lse, _ = global_logsumexp(lw, group, op, None if key is None else k, (n_particles,))
    log_ml = lse - math.log(n_particles)
    lw_norm = lw - lse
    if gather:
        return ISResult(
            gather_traces(tr, layout, group, op), gather_rows(lw_norm, layout, group), log_ml
        )
    return ISResult(tr, lw_norm, log_ml)


def importance_resampling(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    *,
    key: Key,
    proposal: GenerativeFunction | None,
    proposal_args: tuple[Any, ...],
    n_samples: int | None,
    group: Any,
    gather: bool = False,
) -> Trace:
    """Sharded :func:`genmlx.infer.importance_resampling`.

    The draws ``j ~ Categorical(w)`` are made on the gathered weights with the shared
    key (so they are the single-process draws); the drawn particles then move to the
    processes that return them: with ``n_samples=None`` every process returns the one
    drawn trace; with ``n_samples=k`` process ``r`` returns draws ``[⌊rk/P⌋, ⌊(r+1)k/P⌋)``,
    or all ``k`` with ``gather=True``.
    """
    op = "importance_resampling"
    if n_samples is not None and (
        isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1
    ):
        raise ValueError(f"{op}: n_samples must be a positive int, got {n_samples!r}")
    size = group.size()
    if n_samples is not None and not gather and n_samples < size:
        raise ValueError(
            f"{op}: n_samples={n_samples} draws cannot be split over {size} processes; "
            f"use n_samples >= {size} or gather=True"
        )
    obs = _check_inputs(model, args, observations, n_particles, proposal, op)
    layout = balanced_layout(n_particles, group, op)
    k_is = mx.random.split(resolve_key(key), 2)[0]
    with local_only():
        tr, lw = _particles.generate(
            model, tuple(args), obs, proposal, tuple(proposal_args), k_is, layout
        )
    # one collective: every weight on every process, and the key the draws use (process
    # 0's when key=None, so every process draws the same particles)
    lw_all, shared = gather_weights(
        lw, layout, group, op, None if key is None else resolve_key(key),
        (n_particles, n_samples or 0),
    )
    k_pick = mx.random.split(shared, 2)[1]
    shape = () if n_samples is None else (n_samples,)
    lw_all = lw_all - mx.logsumexp(lw_all)
    idx = np.asarray(mx.random.categorical(lw_all, shape=shape, key=k_pick)).astype(np.int64)
    if n_samples is None:
        got = fetch(tr, layout, [idx.reshape(1)] * size, group, op)
        single: Trace = take_particles(got, mx.array(0))
        return single
    if gather:
        return fetch(tr, layout, [idx] * size, group, op)
    draws = Layout.balanced(n_samples, size, group.rank())
    wanted = [idx[s : s + n] for s, n in zip(draws.starts, draws.sizes)]
    return fetch(tr, layout, wanted, group, op)
