"""``Dimap``, ``Contramap`` and ``MapRetval``: argument and return-value transforms.

``Dimap(inner, pre, post)`` is the generative function::

    x ↦ post(x, r)  where  r = inner(*pre(*x))

with exactly ``inner``'s random choices (no namespace) and ``inner``'s density, so every
weight is ``inner``'s weight. ``pre`` and ``post`` are deterministic Python functions
(GenJAX's ``dimap`` convention: ``pre(*args) -> tuple of inner args`` and
``post(args, inner_retval) -> retval``, where ``args`` are the outer arguments).
``Contramap(inner, pre)`` transforms only the arguments, ``MapRetval(inner, post)``
only the return value (``post(retval)``).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.core.testing.models import normal
    >>> from genmlx.combinators.dimap import Dimap
    >>> @gen
    ... def line(slope, x):
    ...     return normal(slope * x, 1.0) @ "y"
    >>> scaled = Dimap(line, pre=lambda x: (2.0, x), post=lambda args, y: y - args[0])
    >>> tr = scaled.simulate((3.0,), key=mx.random.key(0))
    >>> tr.get_choices().addresses()
    ['y']
    >>> bool(tr.retval == tr["y"] - 3.0)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import mlx.core as mx

from genmlx.core.address import Path
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange, diff_args, no_change_args
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    ProposeResult,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = ["Contramap", "Dimap", "DimapTrace", "MapRetval"]

Pre = Callable[..., tuple[Any, ...]]
Post = Callable[[tuple[Any, ...], Any], Any]


def _identity_pre(*args: Any) -> tuple[Any, ...]:
    return args


def _identity_post(args: tuple[Any, ...], retval: Any) -> Any:
    return retval


class DimapTrace(Trace):
    """The trace of a :class:`Dimap`: the inner trace plus the outer args and retval.

    ``score`` is the inner trace's score; the choices are the inner trace's choices.
    """

    __slots__ = ("inner",)

    inner: Trace

    def __init__(
        self,
        gen_fn: Dimap,
        args: tuple[Any, ...],
        retval: Any,
        inner: Trace,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, retval, inner.score, batch_shape)
        object.__setattr__(self, "inner", inner)

    def get_choices(self) -> ChoiceMap:
        return self.inner.get_choices()

    def get_inner_trace(self) -> Trace:
        """The trace of the wrapped generative function."""
        return self.inner

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        yield from self.inner.site_scores()

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        # The inner trace is batched exactly like this one (one execution per particle),
        # so it is a child: batching rebatches it along with this trace.
        return [self.args, self.retval, self.inner], (self.batch_shape, self.gen_fn)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> DimapTrace:
        batch_shape, gen_fn = aux
        args, retval, inner = children
        return cls(gen_fn, args, retval, inner, batch_shape)


class Dimap(GenerativeFunction):
    """Transform the arguments and the return value of a generative function.

    ``Dimap(inner, pre, post)(*args)`` runs ``inner(*pre(*args))`` and returns
    ``post(args, inner_retval)``.

    Address layout: exactly ``inner``'s choices, at the same addresses (no namespace).

    Weights: those of ``inner`` (``pre`` and ``post`` are deterministic and make no
    random choices): ``score``, ``generate``/``update``/``regenerate`` weights, the
    ``update`` discard and ``project`` are ``inner``'s. ``update`` passes ``NoChange``
    argdiffs to ``inner`` when the outer arguments are unchanged, and otherwise
    ``diff_args`` of the old and new transformed arguments. The retdiff is ``NoChange``
    when ``inner``'s retdiff is ``NoChange`` and the arguments are unchanged, else
    ``UnknownChange``.

    Args:
        inner: the wrapped generative function.
        pre: ``pre(*args) -> tuple`` of ``inner``'s arguments (default: identity).
        post: ``post(args, inner_retval) -> retval`` (default: ``inner_retval``).

    Example:
        >>> import math
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.dimap import Dimap
        >>> @gen
        ... def model(mu):
        ...     return normal(mu, 1.0) @ "x"
        >>> shifted = Dimap(model, pre=lambda a, b: (a + b,), post=lambda args, x: 2 * x)
        >>> tr, w = shifted.generate((1.0, 2.0), choicemap({"x": 3.0}), key=mx.random.key(0))
        >>> tr.get_choices().addresses()        # inner's addresses, no namespace
        ['x']
        >>> round(float(w), 5) == round(-0.5 * math.log(2 * math.pi), 5)  # log N(3; 3, 1)
        True
        >>> float(tr.retval)
        6.0
    """

    def __init__(
        self,
        inner: GenerativeFunction,
        pre: Pre | None = None,
        post: Post | None = None,
    ) -> None:
        if not isinstance(inner, GenerativeFunction):
            raise TypeError(
                f"{type(self).__name__}: inner must be a generative function (a @gen "
                f"function, a distribution or a combinator), got {type(inner).__name__}"
            )
        self.inner = inner
        self.pre: Pre = pre if pre is not None else _identity_pre
        self.post: Post = post if post is not None else _identity_post
        self.name = f"{type(self).__name__}({getattr(inner, 'name', repr(inner))})"

    # ------------------------------------------------------------------ helpers
    def _inner_args(self, args: tuple[Any, ...], op: str) -> tuple[Any, ...]:
        out = self.pre(*args)
        if not isinstance(out, tuple):
            raise TypeError(
                f"{self.name} ({op}): pre(*args) must return a tuple of the inner "
                f"generative function's arguments, got {type(out).__name__}; for one "
                "argument return a 1-tuple, e.g. pre=lambda x: (x,)"
            )
        return out

    def _retval(self, args: tuple[Any, ...], inner_retval: Any) -> Any:
        return self.post(args, inner_retval)

    def _trace(self, args: tuple[Any, ...], inner: Trace) -> DimapTrace:
        return DimapTrace(self, args, self._retval(args, inner.retval), inner)

    @staticmethod
    def _unwrap(trace: Trace, op: str) -> DimapTrace:
        if not isinstance(trace, DimapTrace):
            raise TypeError(f"{op}: expected a DimapTrace, got {type(trace).__name__}")
        return trace

    # ------------------------------------------------------------------ GFI
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> DimapTrace:
        inner = self.inner.simulate(self._inner_args(args, "simulate"), key=key)
        return self._trace(args, inner)

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        inner, w = self.inner.generate(self._inner_args(args, "generate"), constraints, key=key)
        return GenerateResult(self._trace(args, inner), w)

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        ld, rv = self.inner.assess(self._inner_args(args, "assess"), choices)
        return AssessResult(ld, self._retval(args, rv))

    def _propose(self, args: tuple[Any, ...], key: mx.array) -> ProposeResult:
        choices, w, rv = self.inner.propose(self._inner_args(args, "propose"), key=key)
        return ProposeResult(choices, w, self._retval(args, rv))

    def _inner_args_and_diffs(
        self, tr: DimapTrace, args: tuple[Any, ...], argdiffs: tuple[Diff, ...], op: str
    ) -> tuple[tuple[Any, ...], tuple[Diff, ...], bool]:
        old_inner_args = tr.inner.args
        if all(d.is_no_change() for d in argdiffs):
            return old_inner_args, no_change_args(old_inner_args), True
        new_inner_args = self._inner_args(args, op)
        return new_inner_args, diff_args(old_inner_args, new_inner_args), False

    def _finish(
        self, tr: DimapTrace, args: tuple[Any, ...], inner: Trace, inner_rd: Diff, same: bool
    ) -> tuple[DimapTrace, Diff]:
        if same and inner_rd.is_no_change():
            return DimapTrace(self, args, tr.retval, inner), NoChange
        return self._trace(args, inner), UnknownChange

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        tr = self._unwrap(trace, "update")
        iargs, idiffs, same = self._inner_args_and_diffs(tr, args, argdiffs, "update")
        inner, w, rd, discard = self.inner.update(tr.inner, constraints, iargs, idiffs, key=key)
        new, retdiff = self._finish(tr, args, inner, rd, same)
        return UpdateResult(new, w, retdiff, discard)

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        tr = self._unwrap(trace, "regenerate")
        iargs, idiffs, same = self._inner_args_and_diffs(tr, args, argdiffs, "regenerate")
        inner, w, rd = self.inner.regenerate(tr.inner, selection, iargs, idiffs, key=key)
        new, retdiff = self._finish(tr, args, inner, rd, same)
        return RegenerateResult(new, w, retdiff)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        tr = self._unwrap(trace, "project")
        return self.inner.project(tr.inner, selection)

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Contramap(Dimap):
    """Transform only the arguments: ``Contramap(inner, pre)(*args) = inner(*pre(*args))``.

    Address layout: ``inner``'s choices, not namespaced. Weights: ``inner``'s (see
    :class:`Dimap`); the return value is ``inner``'s.

    Args:
        inner: the wrapped generative function.
        pre: ``pre(*args) -> tuple`` of ``inner``'s arguments.

    Example:
        >>> import math
        >>> import mlx.core as mx
        >>> from genmlx.core import ChoiceMap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.dimap import Contramap
        >>> std = Contramap(normal, lambda: (0.0, 1.0))   # a standard normal, no args
        >>> tr, w = std.generate((), ChoiceMap.leaf(0.0), key=mx.random.key(0))
        >>> tr.get_choices().has_root_value               # normal's one choice, at the root
        True
        >>> round(float(w), 5) == round(-0.5 * math.log(2 * math.pi), 5)  # log N(0; 0, 1)
        True
    """

    def __init__(self, inner: GenerativeFunction, pre: Pre) -> None:
        super().__init__(inner, pre=pre)


class MapRetval(Dimap):
    """Transform only the return value: ``MapRetval(inner, post)(*args) = post(inner(*args))``.

    Address layout: ``inner``'s choices, not namespaced. Weights: ``inner``'s (see
    :class:`Dimap`). Unlike :class:`Dimap`'s ``post``, this ``post`` takes the return
    value only.

    Args:
        inner: the wrapped generative function.
        post: ``post(inner_retval) -> retval``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core.testing.models import two_normals
        >>> from genmlx.combinators.dimap import MapRetval
        >>> squared = MapRetval(two_normals, lambda x: x * x)
        >>> tr = squared.simulate((), key=mx.random.key(0))
        >>> sorted(tr.get_choices().addresses())     # "mu" and "x", as in two_normals
        ['mu', 'x']
        >>> bool(tr.retval == tr["x"] * tr["x"])
        True
    """

    def __init__(self, inner: GenerativeFunction, post: Callable[[Any], Any]) -> None:
        self.retval_fn = post
        super().__init__(inner, post=self._post_retval_only)

    def _post_retval_only(self, args: tuple[Any, ...], retval: Any) -> Any:
        return self.retval_fn(retval)
