"""Kernel combinators: :func:`cycle`, :func:`mix_kernels` and :func:`repeat_kernel`.

Each builds one kernel from others; the result is a kernel like any other (it takes a
single or batched trace and a ``key``) and can be combined again or run by
:func:`~genmlx.infer.chain`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx

from genmlx.core import Trace
from genmlx.core.random import Key, resolve_key
from genmlx.infer import _checks as checks
from genmlx.infer._traces import where_trace
from genmlx.infer.kernel_info import CycleInfo, MixInfo, acceptance

__all__ = ["Kernel", "cycle", "mix_kernels", "repeat_kernel"]

Kernel = Callable[..., tuple[Trace, Any]]
"""The type of a kernel, ``kernel(trace, *, key) -> (new_trace, info)`` (``info`` has
``accepted``: see :mod:`genmlx.infer.kernel_info`)."""


# ---------------------------------------------------------------------- combinators
def cycle(*kernels: Kernel) -> Kernel:
    """The kernel applying ``kernels`` in order (a deterministic scan of moves).

    Its info is a :class:`~genmlx.infer.kernel_info.CycleInfo`: ``accepted`` is the
    fraction of the inner moves that were accepted (a float array of the trace's batch
    shape) and ``infos`` the inner kernels' info records.

    Example:
        >>> from functools import partial
        >>> from genmlx.core import select
        >>> k = cycle(partial(mh, selection_or_proposal=select("a")),
        ...           partial(mh, selection_or_proposal=select("b")))
    """
    if not kernels or not all(callable(k) for k in kernels):
        raise ValueError("cycle: give at least one kernel (callables)")

    def kernel(trace: Trace, *, key: Key = None) -> tuple[Trace, CycleInfo]:
        keys = mx.random.split(resolve_key(key), len(kernels))
        total = mx.zeros(trace.batch_shape)
        infos = []
        for i, k in enumerate(kernels):
            trace, info = k(trace, key=keys[i])
            total = total + acceptance(info, "cycle").astype(mx.float32)
            infos.append(info)
        return trace, CycleInfo(total / len(kernels), tuple(infos))

    return kernel


def repeat_kernel(kernel: Kernel, k: int) -> Kernel:
    """The kernel applying ``kernel`` ``k`` times; its info is a
    :class:`~genmlx.infer.kernel_info.CycleInfo` (``accepted``: the accepted fraction)."""
    if not callable(kernel):
        raise TypeError(
            f"repeat_kernel: kernel must be a kernel function, got {type(kernel).__name__}"
        )
    checks.count(k, "k", "repeat_kernel")
    return cycle(*([kernel] * k))


def mix_kernels(kernels: Sequence[Kernel], probs: Sequence[float] | mx.array) -> Kernel:
    """The mixture kernel: each chain picks kernel ``i`` with probability ``probs[i]``.

    For a batched trace every chain chooses on its own: all kernels run (vectorised)
    and each chain keeps the result of its choice, so the combined kernel stays free of
    Python decisions (and compilable). The mixture of ``π``-invariant kernels is
    ``π``-invariant. Its info is a :class:`~genmlx.infer.kernel_info.MixInfo`:
    ``accepted`` is the chosen kernel's (as float), ``choice`` the kernel each chain used.
    """
    kernels = list(kernels)
    if not all(callable(k) for k in kernels):
        raise TypeError("mix_kernels: every kernel must be a kernel function")
    p = mx.array(list(probs) if not isinstance(probs, mx.array) else probs, dtype=mx.float32)
    if not kernels or p.ndim != 1 or p.shape[0] != len(kernels):
        raise ValueError("mix_kernels: give one probability per kernel")
    total = float(p.sum().item())  # type: ignore[arg-type]
    if bool(mx.any(mx.logical_or(p < 0, mx.isnan(p))).item()) or not abs(total - 1.0) <= 1e-5:
        raise ValueError(f"mix_kernels: probs must be non-negative and sum to 1, got {p.tolist()}")
    logits = mx.log(p)

    def kernel(trace: Trace, *, key: Key = None) -> tuple[Trace, MixInfo]:
        keys = mx.random.split(resolve_key(key), len(kernels) + 1)
        choice = mx.random.categorical(logits, shape=trace.batch_shape, key=keys[0])
        out, info = kernels[0](trace, key=keys[1])
        acc = acceptance(info, "mix_kernels").astype(mx.float32)
        infos = [info]
        for i in range(1, len(kernels)):
            t_i, info_i = kernels[i](trace, key=keys[i + 1])
            pick = choice == i
            out = where_trace(pick, t_i, out)
            acc = mx.where(pick, acceptance(info_i, "mix_kernels").astype(mx.float32), acc)
            infos.append(info_i)
        return out, MixInfo(acc, choice, tuple(infos))

    return kernel
