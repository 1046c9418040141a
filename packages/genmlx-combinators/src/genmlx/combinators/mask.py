"""``Mask``: switch a generative function's choices and score on or off with a flag.

``Mask(gf)(flag, *args)`` behaves as ``gf(*args)`` when ``flag`` is True and as a
function with no choices and score 0 when it is False. The return value is
``Masked(value, flag)``: ``value`` is ``gf``'s return value where ``flag`` holds and
zeros (of the same structure) where it does not.

The inner function always runs (so a batched run, where the flag differs per particle,
is one vectorised computation, and particle ``i`` equals the unbatched run); its
choices are masked by the flag in the trace's choice map.

With a flag that is known (unbatched, outside ``mx.compile``), constraints given while
it is False are an error (there are no choices to constrain); under batching they only
apply to the particles whose flag is True. ``update`` with known flags runs only the
operation it needs; with per-particle flags it runs both the update of the kept inner
trace and a fresh ``generate`` and selects per particle.

Weights (per particle): with the flag on, ``Mask`` is ``gf``. Turning it off in
``update`` removes the choices (weight ``−old score``, the old choices discarded);
turning it on generates ``gf`` under the constraints (weight: the generate weight).
``regenerate`` that turns it on samples from the prior (weight 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.combinators._select import concrete_int, merge_masked, select_tree, where_b
from genmlx.core import runtime
from genmlx.core.address import Path
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import ConstraintError
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.random import split
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.core.tree import tree_map

__all__ = ["Mask", "MaskTrace", "Masked"]


class Masked(NamedTuple):
    """The return value of :class:`Mask`: the inner value and whether it is present."""

    value: Any
    flag: Any


def _flag(flag: Any) -> mx.array:
    f = flag if isinstance(flag, mx.array) else mx.array(flag)
    return f if f.dtype == mx.bool_ else f.astype(mx.bool_)


def _zero_where_off(flag: mx.array, x: mx.array) -> mx.array:
    return mx.where(flag, x, mx.zeros_like(x))


def _masked_value(flag: mx.array, value: Any) -> Masked:
    return Masked(tree_map(lambda v: where_b(flag, v, mx.zeros_like(v)), value), flag)


class MaskTrace(Trace):
    """The trace of a :class:`Mask`: the flag and the inner trace (always kept)."""

    __slots__ = ("flag", "inner")

    flag: mx.array
    inner: Trace

    def __init__(
        self,
        gen_fn: Mask,
        args: tuple[Any, ...],
        retval: Any,
        score: mx.array,
        flag: mx.array,
        inner: Trace,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, retval, score, batch_shape)
        object.__setattr__(self, "flag", flag)
        object.__setattr__(self, "inner", inner)

    def get_choices(self) -> ChoiceMap:
        cm = self.inner.get_choices().with_batch_shape(self.batch_shape)
        if not self.batch_shape:
            on = concrete_int(self.flag) if self.flag.size == 1 else None
            if on is not None:
                return cm if on else ChoiceMap(None, None, self.batch_shape)
        return cm.mask(self.flag)

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        for path, s in self.inner.site_scores():
            yield path, _zero_where_off(self.flag, s) if self.flag.ndim == s.ndim else s

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.args, self.retval, self.score, self.flag, self.inner], (
            self.batch_shape,
            self.gen_fn,
        )

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> MaskTrace:
        batch_shape, gen_fn = aux
        args, retval, score, flag, inner = children
        return cls(gen_fn, args, retval, score, flag, inner, batch_shape)


class Mask(GenerativeFunction):
    """Make ``gf``'s choices and score conditional on a boolean flag.

    Called as ``Mask(gf)(flag, *args) @ addr``. Address layout: ``gf``'s own addresses
    (no namespace), present only where ``flag`` is True. Score: ``gf``'s score where the
    flag holds, else 0. Under batching the flag may differ per particle.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.mask import Mask
        >>> @gen
        ... def g():
        ...     return normal(0.0, 1.0) @ "x"
        >>> m = Mask(g)
        >>> tr = m.simulate((False,), key=mx.random.key(0))
        >>> float(tr.score), len(tr.get_choices())
        (0.0, 0)
        >>> ld, _ = m.assess((True,), choicemap({"x": 0.0}))
        >>> round(float(ld), 4)
        -0.9189
    """

    def __init__(self, gen_fn: GenerativeFunction) -> None:
        if not isinstance(gen_fn, GenerativeFunction):
            raise TypeError(f"Mask needs a generative function, got {gen_fn!r}")
        self.inner = gen_fn
        self.name = f"Mask({getattr(gen_fn, 'name', '?')})"

    def _split(self, args: tuple[Any, ...], op: str) -> tuple[mx.array, tuple[Any, ...]]:
        if not args:
            raise TypeError(f"{op} on {self.name}: the first argument must be the flag")
        return _flag(args[0]), tuple(args[1:])

    def _known_off(self, flag: mx.array, cm: ChoiceMap, op: str) -> None:
        """With a flag known to be False, constraints are at addresses that do not exist."""
        if cm.is_empty or runtime.is_lenient() or flag.size != 1:
            return
        on = concrete_int(flag)
        given = [p for p, _, m in cm.masked_leaves() if m is None]  # masked ones may be absent
        if on == 0 and given:
            raise ConstraintError(
                f"{op} on {self.name}: the flag is False, so there are no choices, but "
                f"constraints were given at {given!r}"
            )

    def _trace(self, args: tuple[Any, ...], flag: mx.array, inner: Trace) -> MaskTrace:
        score = _zero_where_off(flag, inner.score)
        return MaskTrace(self, args, _masked_value(flag, inner.retval), score, flag, inner)

    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> MaskTrace:
        flag, iargs = self._split(args, "simulate")
        return self._trace(args, flag, self.inner.simulate(iargs, key=key))

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        flag, iargs = self._split(args, "generate")
        self._known_off(flag, constraints, "generate")
        tr, w = self.inner.generate(iargs, constraints, key=key)
        return GenerateResult(self._trace(args, flag, tr), _zero_where_off(flag, w))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        flag, iargs = self._split(args, "assess")
        self._known_off(flag, choices, "assess")
        on = concrete_int(flag) if flag.size == 1 else None
        if on == 0:
            with runtime.lenient():  # no choices exist: score 0 (the inner value is unused)
                ld, rv = self.inner.assess(iargs, choices)
            return AssessResult(mx.zeros_like(ld), _masked_value(flag, rv))
        if on is None:
            with runtime.lenient():
                ld, rv = self.inner.assess(iargs, choices)
        else:
            ld, rv = self.inner.assess(iargs, choices)
        return AssessResult(_zero_where_off(flag, ld), _masked_value(flag, rv))

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, MaskTrace)
        if constraints.is_empty and all(d.is_no_change() for d in argdiffs):
            # nothing changes: re-run nothing (the kit's incremental-update law)
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        flag, iargs = self._split(args, "update")
        self._known_off(flag, constraints, "update")
        old = trace.flag
        k1, k2 = split(key, 2)
        iargdiffs = tuple(argdiffs[1:])
        was_on = concrete_int(old) if old.size == 1 else None
        now_on = concrete_int(flag) if flag.size == 1 else None
        if was_on is not None and now_on is not None:  # flags known: run only what is needed
            if was_on:
                up = self.inner.update(trace.inner, constraints, iargs, iargdiffs, key=k1)
                if now_on:
                    rd = NoChange if up.retdiff.is_no_change() else UnknownChange
                    return UpdateResult(
                        self._trace(args, flag, up.trace), up.weight, rd, up.discard
                    )
                return UpdateResult(
                    self._trace(args, flag, up.trace),
                    -trace.inner.score,
                    UnknownChange,
                    trace.inner.get_choices(),
                )
            fresh = self.inner.generate(iargs, constraints, key=k2)
            w = fresh.weight if now_on else mx.zeros_like(fresh.weight)
            return UpdateResult(
                self._trace(args, flag, fresh.trace), w, UnknownChange, ChoiceMap.empty()
            )
        up = self.inner.update(trace.inner, constraints, iargs, iargdiffs, key=k1)
        fresh = self.inner.generate(iargs, constraints, key=k2)
        inner = select_tree(old, up.trace, fresh.trace, f"{self.name} update")
        weight = mx.where(
            flag,
            mx.where(old, up.weight, fresh.weight),
            mx.where(old, -trace.inner.score, mx.zeros_like(up.weight)),
        )
        discard = merge_masked(
            [
                (up.discard, mx.logical_and(old, flag)),
                (trace.inner.get_choices(), mx.logical_and(old, mx.logical_not(flag))),
            ]
        )
        return UpdateResult(self._trace(args, flag, inner), weight, UnknownChange, discard)

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, MaskTrace)
        if selection.is_none() and all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        flag, iargs = self._split(args, "regenerate")
        old = trace.flag
        k1, k2 = split(key, 2)
        rg = self.inner.regenerate(trace.inner, selection, iargs, tuple(argdiffs[1:]), key=k1)
        fresh = self.inner.simulate(iargs, key=k2)
        inner = select_tree(old, rg.trace, fresh, f"{self.name} regenerate")
        weight = mx.where(mx.logical_and(old, flag), rg.weight, mx.zeros_like(rg.weight))
        return RegenerateResult(self._trace(args, flag, inner), weight, UnknownChange)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        assert isinstance(trace, MaskTrace)
        return _zero_where_off(trace.flag, self.inner.project(trace.inner, selection))

    def __repr__(self) -> str:
        return f"<{self.name}>"
