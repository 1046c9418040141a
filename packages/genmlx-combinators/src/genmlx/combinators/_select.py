"""Per-particle selection between alternative values, traces and choice maps.

Batched ``Switch`` and ``Mask`` compute every alternative and keep, per particle, the
one a condition names. These helpers do that selection on whole objects (return values,
traces, choice maps) leaf by leaf.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.errors import AddressError
from genmlx.core.tree import flatten, unflatten

__all__ = ["concrete_int", "merge_masked", "select_tree", "where_b"]


def concrete_int(x: Any) -> int | None:
    """``x`` as a Python int when it can be read now, ``None`` when it is symbolic.

    A value is symbolic under ``mx.vmap`` (one value per particle), ``mx.compile`` and
    gradients, where reading it is impossible.
    """
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    if isinstance(x, mx.array):
        if x.size != 1:
            return None
        if runtime.in_transform():
            try:
                return int(x.item())  # type: ignore[arg-type]
            except ValueError as e:
                if runtime.is_transform_eval_error(e):
                    return None
                raise
        return int(x.item())  # type: ignore[arg-type]
    raise TypeError(f"expected an int or an integer array, got {type(x).__name__}")


def where_b(cond: mx.array, a: mx.array, b: mx.array) -> mx.array:
    """``mx.where(cond, a, b)`` with ``cond`` broadcast over trailing axes of the values."""
    nd = max(a.ndim, b.ndim)
    if nd > cond.ndim:
        cond = cond.reshape(cond.shape + (1,) * (nd - cond.ndim))
    return mx.where(cond, a, b)


def select_tree(cond: mx.array, a: Any, b: Any, what: str) -> Any:
    """``a`` where ``cond`` holds, else ``b``, for two objects of the same structure.

    Raises:
        ValueError: the structures differ (``what`` names the objects in the message).
    """
    la, ta = flatten(a)
    lb, tb = flatten(b)
    if ta != tb:
        raise ValueError(
            f"{what}: the alternatives have different structures, so they cannot be chosen "
            "per particle; give every alternative the same addresses and return-value shape"
        )
    return unflatten(ta, [x if x is y else where_b(cond, x, y) for x, y in zip(la, lb)])


def merge_masked(
    pieces: Sequence[tuple[ChoiceMap, mx.array]], batch_shape: tuple[int, ...] = ()
) -> ChoiceMap:
    """One masked choice map from pieces that hold per-particle exclusive parts.

    Each piece ``(cm, on)`` contributes its leaves where ``on`` (and the leaf's own mask)
    hold. At an address several pieces share, the value comes from the piece that is on;
    the pieces must be mutually exclusive per particle.
    """
    values: dict[Path, tuple[mx.array, mx.array]] = {}
    for cm, on in pieces:
        batch_shape = batch_shape or cm.batch_shape
        for path, v, m in cm.masked_leaves():
            here = on if m is None else mx.logical_and(on, m)
            if path in values:
                v0, m0 = values[path]
                if v0.shape != v.shape or v0.dtype != v.dtype:
                    raise AddressError(
                        f"alternatives hold values of different shapes/dtypes at "
                        f"{format_address(path)} ({tuple(v0.shape)} {v0.dtype} vs "
                        f"{tuple(v.shape)} {v.dtype}); where they share an address they must agree"
                    )
                values[path] = (where_b(here, v, v0), mx.logical_or(m0, here))
            else:
                values[path] = (v, here)
    out = ChoiceMap(None, None, batch_shape)
    for path, (v, m) in values.items():
        out = out.set_submap(path, ChoiceMap(v, None, (), m))
    return out
