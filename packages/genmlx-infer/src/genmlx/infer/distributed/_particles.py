"""This process's particles, each run with its *global* key.

GenMLX's batching law says particle ``i`` of a batched operation with key ``k`` over
``N`` particles is the unbatched operation with key ``mx.random.split(k, N)[i]``. A
process holding particles ``[lo, hi)`` therefore runs the unbatched operation once under
``mx.vmap`` (:func:`genmlx.core.batching.vmap_call`) with the keys
``mx.random.split(k, N)[lo:hi]``: the union over processes is exactly the single-process
batched result, whatever the number of processes.

MCMC kernels follow the same rule per chain: chain ``i`` applies the kernel to its own
(unbatched) trace with key ``mx.random.split(k, N)[i]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, runtime
from genmlx.core.batching import rebatch, vmap_call, vmap_traces
from genmlx.core.diff import Diff
from genmlx.core.edit import EditRequest
from genmlx.core.tree import flatten, unflatten
from genmlx.infer.distributed._comm import Layout

__all__ = ["edit", "generate", "global_keys", "kernel_step", "update"]


def global_keys(key: mx.array, layout: Layout) -> mx.array:
    """Keys of this process's particles: ``mx.random.split(key, N)[lo:hi]``."""
    keys = mx.random.split(key, layout.n_total)
    if layout.size == 1:
        return keys
    return keys[layout.lo : layout.hi]


def generate(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    proposal: GenerativeFunction | None,
    proposal_args: tuple[Any, ...],
    key: mx.array,
    layout: Layout,
) -> tuple[Trace, mx.array]:
    """This process's particles of :func:`genmlx.infer.importance._raw_weights`:
    ``(batched trace, log weights)`` with the same keys as the single-process run."""
    n = layout.n_local
    if proposal is None:
        keys = global_keys(key, layout)

        def one(k: mx.array, a: tuple[Any, ...], c: ChoiceMap) -> tuple[Trace, mx.array]:
            tr, w = model.generate(a, c, key=k)
            return tr, w

        with runtime.operation():
            tr, w = vmap_call(one, n, (keys,), (args, obs), strip_trace_args=True)
        return tr._replace(args=args), w
    k_prop, k_gen = mx.random.split(key, 2)
    pkeys, gkeys = global_keys(k_prop, layout), global_keys(k_gen, layout)

    def one_q(
        kp: mx.array, kg: mx.array, a: tuple[Any, ...], pa: tuple[Any, ...], c: ChoiceMap
    ) -> tuple[Trace, mx.array]:
        ptr = proposal.simulate(pa, key=kp)
        proposed = ptr.get_choices()
        cons = proposed if c.is_empty else proposed.merge(c)
        tr, log_p = model.generate(a, cons, key=kg)
        return tr, log_p - ptr.score

    with runtime.operation():
        tr, w = vmap_call(
            one_q, n, (pkeys, gkeys), (args, proposal_args, obs), strip_trace_args=True
        )
    return tr._replace(args=args), w


def simulate(
    model: GenerativeFunction, args: tuple[Any, ...], key: mx.array, layout: Layout
) -> Trace:
    """This process's particles of ``model.vsimulate(args, N, key=key)``."""
    keys = global_keys(key, layout)

    def one(k: mx.array, a: tuple[Any, ...]) -> Trace:
        return model.simulate(a, key=k)

    with runtime.operation():
        tr = vmap_call(one, layout.n_local, (keys,), (args,), strip_trace_args=True)
    out: Trace = tr._replace(args=args)
    return out


def update(
    traces: Trace,
    obs: ChoiceMap,
    new_args: tuple[Any, ...],
    argdiffs: tuple[Diff, ...],
    key: mx.array,
    layout: Layout,
) -> tuple[Trace, mx.array]:
    """This process's particles of the batched ``update`` (a bootstrap filter step)."""
    model = traces.gen_fn

    def one(k: mx.array, t: Trace, na: tuple[Any, ...], y: ChoiceMap) -> tuple[Trace, mx.array]:
        new, w, _, _ = model.update(t, y, na, argdiffs, key=k)
        return new, w

    new, w = vmap_traces(
        one, traces, (new_args, obs), keys=global_keys(key, layout), result_args=new_args
    )
    return new, w


def edit(
    traces: Trace, request: EditRequest, key: mx.array, layout: Layout
) -> tuple[Trace, mx.array]:
    """This process's particles of the batched ``edit`` (SMCP3 moves)."""
    model = traces.gen_fn

    def one(k: mx.array, t: Trace, r: EditRequest) -> tuple[Trace, mx.array]:
        new, w, _, _ = model.edit(t, r, key=k)
        return new, w

    new, w = vmap_traces(
        one,
        traces,
        (request,),
        keys=global_keys(key, layout),
        result_args=request.new_args(traces.args),
    )
    return new, w


def kernel_step(
    kernel: Callable[..., tuple[Trace, Any]],
    traces: Trace,
    key: mx.array,
    layout: Layout,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> tuple[Trace, Any]:
    """One kernel transition of this process's chains, chain ``i`` running
    ``kernel(trace_i, *args, key=split(key, N)[i], **kwargs)`` on its own trace."""
    kw = kwargs or {}
    keys = global_keys(key, layout)

    def one(k: mx.array, t: Trace) -> tuple[Trace, Any]:
        new, acc = kernel(t, *args, key=k, **kw)
        if not isinstance(new, Trace):
            raise TypeError(
                f"the kernel must return (trace, accepted), got {type(new).__name__} first"
            )
        return new, acc

    try:
        new, acc = vmap_traces(one, traces, keys=keys)
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            raise ValueError(
                "sharded chains run the kernel on each chain's own trace under mx.vmap, so "
                "the kernel must not read values in Python (.item(), bool(), float() of an "
                "array, a Python `if` on a random value); use mx.where instead "
                f"(MLX said: {e})"
            ) from e
        raise
    return new, acc


def add_batch_axis(trace: Trace) -> Trace:
    """A single trace as a batched trace of one particle."""
    leaves, td = flatten(trace._replace(args=()), thaw=True)
    out: Trace = unflatten(rebatch(td, (1,)), [x[None] for x in leaves])
    return out._replace(args=trace.args)
