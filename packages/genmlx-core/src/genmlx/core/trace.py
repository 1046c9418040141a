"""Traces: the record of one execution of a generative function.

A trace holds the generative function, its arguments, its random choices, their total
log density (the *score*), the return value and, for batched traces, the batch shape.
Traces are immutable: GFI operations return new traces.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.core.testing.models import normal   # a test distribution
    >>> @gen
    ... def model():
    ...     return normal(0.0, 1.0) @ "x"
    >>> tr = model.simulate((), key=mx.random.key(0))
    >>> bool(tr["x"] == tr.retval), tr.batch_shape
    (True, ())
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from genmlx.core.address import Address, Path
from genmlx.core.choicemap import ChoiceMap

if TYPE_CHECKING:
    from genmlx.core.diff import Diff
    from genmlx.core.edit import EditRequest
    from genmlx.core.gfi import EditResult, GenerativeFunction, RegenerateResult, UpdateResult
    from genmlx.core.selection import Selection

__all__ = ["Trace"]


class Trace(ABC):
    """An immutable record of one (or, batched, ``n``) executions of a generative function.

    Attributes:
        gen_fn: the generative function that made the trace.
        args: its arguments (a tuple).
        retval: its return value.
        score: log density of all choices, ``log p(choices; args)`` (shape
            ``batch_shape``).
        batch_shape: ``()`` for a single execution, ``(n,)`` for ``n`` particles.
    """

    __slots__ = ("args", "batch_shape", "gen_fn", "retval", "score")

    gen_fn: GenerativeFunction
    args: tuple[Any, ...]
    retval: Any
    score: mx.array
    batch_shape: tuple[int, ...]

    def __init__(
        self,
        gen_fn: GenerativeFunction,
        args: tuple[Any, ...],
        retval: Any,
        score: mx.array,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        object.__setattr__(self, "gen_fn", gen_fn)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "retval", retval)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "batch_shape", tuple(batch_shape))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("traces are immutable; GFI operations return new traces")

    def __reduce__(self) -> Any:
        """Pickled (and deep-copied) as its arrays and structure; the generative function
        by reference (see :mod:`genmlx.core.serialize`)."""
        from genmlx.core.serialize import reduce_trace

        return reduce_trace(self)

    def _replace(self, **changes: Any) -> Trace:
        cls = type(self)
        new = cls.__new__(cls)
        for klass in cls.__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if hasattr(self, slot):
                    object.__setattr__(new, slot, getattr(self, slot))
        for k, v in changes.items():
            object.__setattr__(new, k, v)
        return new

    # ------------------------------------------------------------------ choices
    @abstractmethod
    def get_choices(self) -> ChoiceMap:
        """The random choices as a :class:`ChoiceMap` (leaves batched like the trace)."""

    @property
    def choices(self) -> ChoiceMap:
        """Same as :meth:`get_choices`."""
        return self.get_choices()

    def __getitem__(self, addr: Address) -> Any:
        """The value of the choice at ``addr``."""
        return self.get_choices()[addr]

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        """``(path, log density)`` of every random choice (used to name bad sites)."""
        yield (), self.score

    def nonfinite_reason(self) -> str | None:
        """Why this trace's score is NaN when no choice is to blame (evaluates arrays).

        A combinator that cannot raise where a problem happens (under batching or
        ``compile``) makes its score NaN and explains it here, naming itself and the
        offending value; the score check reports the explanation. Default: None.
        """
        return None

    # ------------------------------------------------------------------ shorthands
    def update(
        self,
        constraints: ChoiceMap | None = None,
        args: tuple[Any, ...] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
        *,
        key: Any = None,
    ) -> UpdateResult:
        """``self.gen_fn.update(self, ...)``."""
        return self.gen_fn.update(self, constraints, args, argdiffs, key=key)

    def regenerate(
        self,
        selection: Selection,
        args: tuple[Any, ...] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
        *,
        key: Any = None,
    ) -> RegenerateResult:
        """``self.gen_fn.regenerate(self, ...)``."""
        return self.gen_fn.regenerate(self, selection, args, argdiffs, key=key)

    def project(self, selection: Selection) -> mx.array:
        """``self.gen_fn.project(self, selection)``."""
        return self.gen_fn.project(self, selection)

    def edit(self, request: EditRequest, *, key: Any = None) -> EditResult:
        """``self.gen_fn.edit(self, request)``."""
        return self.gen_fn.edit(self, request, key=key)

    # ------------------------------------------------------------------ trees
    @abstractmethod
    def _tree_flatten(self) -> tuple[list[Any], Any]:
        """Children (arrays or nested trees) and static aux data; see genmlx.core.tree."""

    @classmethod
    @abstractmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> Trace:
        """Inverse of :meth:`_tree_flatten`."""

    @staticmethod
    def _tree_rebatch(aux: Any, batch_shape: tuple[int, ...]) -> Any:
        """``aux`` with its batch shape replaced (aux is ``(batch_shape, ...)``)."""
        return (batch_shape, *aux[1:])

    def __repr__(self) -> str:
        """The generative function, the score and every choice (address: value), one per
        line; batched traces show shapes and per-particle means instead of values.

        Example:
            >>> import mlx.core as mx
            >>> from genmlx.core import gen
            >>> from genmlx.core.testing.models import normal
            >>> @gen
            ... def model():
            ...     normal(0.0, 1.0) @ "x"
            >>> print(model.simulate((), key=mx.random.key(0)))  # doctest: +ELLIPSIS
            DynamicTrace(model, score=-..., 1 choice)
              'x': ...
            >>> print(model.vsimulate((), 1000, key=mx.random.key(0)))  # doctest: +ELLIPSIS
            DynamicTrace(model, batch_shape=(1000,), score mean -1.4..., sd 0.69..., 1 choice)
              'x': float32[1000] mean -0.02..., sd 0.99...
        """
        from genmlx.core._display import format_value, leaf_lines

        name = getattr(self.gen_fn, "name", type(self.gen_fn).__name__)
        leaves = list(self.get_choices().leaves())
        nb = len(self.batch_shape)
        if nb:
            summary = format_value(self.score, nb).split(" ", 1)[-1]  # "mean ..., sd ..."
            score = f"batch_shape={self.batch_shape}, score {summary}"
        else:
            score = f"score={format_value(self.score)}"
        count = f"{len(leaves)} choice{'' if len(leaves) == 1 else 's'}"
        header = f"{type(self).__name__}({name}, {score}, {count})"
        return "\n".join([header, *leaf_lines(leaves, nb)])
