"""Change hints ("diffs") for incremental ``update`` and ``regenerate``.

An *argdiff* says how each argument changed since the trace was made; a *retdiff*
says how the return value changed. They let generative functions skip work: the
``@gen`` language keeps a sub-call's trace untouched when its arguments are
``NoChange`` and nothing under it is constrained or selected, and combinators skip
unchanged elements or an unchanged prefix of steps.

Example:
    >>> from genmlx.core.diff import NoChange, UnknownChange, VectorDiff
    >>> NoChange.is_no_change(), UnknownChange.is_no_change()
    (True, False)
    >>> VectorDiff(new_length=4, prev_length=3, updated={0: UnknownChange}).is_no_change()
    False
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import mlx.core as mx

__all__ = ["Diff", "NoChange", "UnknownChange", "VectorDiff", "diff_args", "no_change_args"]


class Diff:
    """Base class of change hints."""

    def is_no_change(self) -> bool:
        """True when the value is known to be unchanged."""
        return False


class _NoChange(Diff):
    def is_no_change(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "NoChange"

    def __reduce__(self) -> str:
        return "NoChange"


class _UnknownChange(Diff):
    def __repr__(self) -> str:
        return "UnknownChange"

    def __reduce__(self) -> str:
        return "UnknownChange"


NoChange: Diff = _NoChange()
"""The value is identical to the previous one."""

UnknownChange: Diff = _UnknownChange()
"""The value may have changed in any way."""


class VectorDiff(Diff):
    """A change to a sequence: a new length and the indices whose elements changed.

    Args:
        new_length: length after the change.
        prev_length: length before the change.
        updated: index → diff of that element, for the retained indices that changed.
            Indices ``>= prev_length`` are new and need not be listed.
    """

    __slots__ = ("new_length", "prev_length", "updated")

    def __init__(self, new_length: int, prev_length: int, updated: Mapping[int, Diff]) -> None:
        self.new_length = int(new_length)
        self.prev_length = int(prev_length)
        self.updated = dict(updated)

    def is_no_change(self) -> bool:
        return self.new_length == self.prev_length and not self.updated

    def __repr__(self) -> str:
        return (
            f"VectorDiff(new_length={self.new_length}, prev_length={self.prev_length}, "
            f"updated={self.updated!r})"
        )


def no_change_args(args: Sequence[Any]) -> tuple[Diff, ...]:
    """``NoChange`` for every argument."""
    return tuple(NoChange for _ in args)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, mx.array) or isinstance(b, mx.array):
        return False  # comparing arrays would force evaluation; be conservative
    if type(a) is not type(b):
        return False
    if isinstance(a, (int, float, str, bool, type(None))):
        return bool(a == b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return False


def diff_args(
    old_args: Sequence[Any], new_args: Sequence[Any], *, compare_arrays: bool = False
) -> tuple[Diff, ...]:
    """Cheap argdiffs: ``NoChange`` where an argument is the same object or equal plain data.

    By default arrays are only recognised as unchanged when they are the very same
    object, and nothing is evaluated. With ``compare_arrays=True``, arrays that are
    different objects of the same shape and dtype are compared by value — all such
    pairs in one evaluation — and equal ones (NaN never equals NaN) are ``NoChange``
    too; under a transformation (``mx.compile``, ``vmap``, ``grad``), where nothing can
    be evaluated, they stay ``UnknownChange``.

    Example:
        >>> import mlx.core as mx
        >>> x = mx.array([1.0, 2.0])
        >>> [d.is_no_change() for d in diff_args((3, x), (3, mx.array([1.0, 2.0])))]
        [True, False]
        >>> diff_args((x,), (mx.array([1.0, 2.0]),), compare_arrays=True)[0].is_no_change()
        True
    """
    if len(old_args) != len(new_args):
        return tuple(UnknownChange for _ in new_args)
    out: list[Diff] = [
        NoChange if _same(a, b) else UnknownChange for a, b in zip(old_args, new_args)
    ]
    if compare_arrays:
        pairs = [
            i
            for i, (a, b) in enumerate(zip(old_args, new_args))
            if out[i] is UnknownChange
            and isinstance(a, mx.array)
            and isinstance(b, mx.array)
            and a.shape == b.shape
            and a.dtype == b.dtype
        ]
        if pairs:
            from genmlx.core import runtime

            if not runtime.in_transform():
                try:
                    flags = cast(
                        list[bool],
                        mx.stack(
                            [mx.array_equal(old_args[i], new_args[i]) for i in pairs]
                        ).tolist(),
                    )
                except ValueError as e:  # a tracer of a user's own transformation
                    if not runtime.is_transform_eval_error(e):
                        raise
                    flags = [False] * len(pairs)
                for i, equal in zip(pairs, flags):
                    if equal:
                        out[i] = NoChange
    return tuple(out)
