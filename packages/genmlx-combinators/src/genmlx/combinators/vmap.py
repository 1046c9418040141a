"""``Vmap``: GenJAX-style vectorisation of a kernel, with vectorised choices.

``Vmap(kernel, in_axes)(*args)`` runs ``kernel`` once per element along the leading axis
of the mapped arguments, in one vectorised call. Unlike :class:`~genmlx.combinators.map.Map`
there is no index namespace: the choices are the kernel's own addresses, each leaf
carrying a leading ``[n]`` element axis (after the particle axis of a batched trace).
``Map`` is the incremental one; ``Vmap`` re-runs every element on ``update`` and
``regenerate``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import mlx.core as mx

from genmlx.combinators.map import ElementsTrace, clean_masks, map_choicemap
from genmlx.core.address import Path, format_address
from genmlx.core.batching import vmap_call
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import AddressError, ConstraintError
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

__all__ = ["Vmap", "VmapTrace"]

InAxes = int | None | tuple[int | None, ...]


class VmapTrace(ElementsTrace):
    """The trace of :class:`Vmap`: the kernel's addresses, leaves with an ``[n]`` axis."""

    __slots__ = ()

    def get_choices(self) -> ChoiceMap:
        cached = self._choices
        if cached is None:
            cached = clean_masks(map_choicemap(self.inner.get_choices(), self.batch_shape))
            object.__setattr__(self, "_choices", cached)
        return cached

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        yield from self.inner.site_scores()


class Vmap(GenerativeFunction):
    """Vectorise a kernel over the leading axis of (some of) its arguments.

    ``Vmap(kernel, in_axes=0)(*args) @ addr``: ``in_axes`` is ``0`` (map every
    argument over its leading axis), ``None`` (broadcast it) or a tuple with one such
    entry per argument. The number of elements ``n`` is the leading length shared by
    the mapped arguments.

    Address layout: *vectorised* (GenJAX's): the kernel's own addresses, with every
    leaf carrying a leading ``[n]`` element axis (after the particle axis when the trace
    is batched). Constraints are given the same way: ``{"x": array of shape [n]}``
    constrains ``x`` of every element. The return value stacks the kernel's return
    values along axis 0.

    Weights: sums over elements of the kernel's weights (Gen.jl's semantics per
    element). ``update`` and ``regenerate`` re-run every element (use
    :class:`~genmlx.combinators.map.Map` for incremental updates); a change of ``n``
    replaces every choice (old ones are discarded and subtract their score).

    Args:
        kernel: the generative function applied to each element.
        in_axes: ``0``, ``None`` or a per-argument tuple of them.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import choicemap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.vmap import Vmap
        >>> tr, w = Vmap(normal, in_axes=(0, None)).generate(
        ...     (mx.array([0.0, 1.0]), 1.0), choicemap({(): mx.array([0.0, 1.0])}),
        ...     key=mx.random.key(0))
        >>> tr.retval.tolist(), round(float(w), 4)   # 2 * log N(0; 0, 1)
        ([0.0, 1.0], -1.8379)
    """

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """Fixed when the kernel's structure is fixed for one element's arguments."""
        axes = self.in_axes if isinstance(self.in_axes, tuple) else (self.in_axes,) * len(args)
        elem = []
        for a, ax in zip(args, axes):
            if ax is None:
                elem.append(a)
            elif isinstance(a, mx.array) and a.ndim > 0:
                elem.append(a[0])
            else:
                return "has a mapped argument that is not an array"
        reason = self.kernel.static_structure(tuple(elem))
        return None if reason is None else f"is a Vmap whose kernel {reason}"

    def __init__(self, kernel: GenerativeFunction, in_axes: InAxes = 0) -> None:
        if not isinstance(kernel, GenerativeFunction):
            raise TypeError(f"Vmap(kernel): kernel must be a generative function, got {kernel!r}")
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,)
        for a in axes:
            if a is not None and (isinstance(a, bool) or a != 0):
                raise ValueError(
                    f"Vmap(kernel, in_axes={in_axes!r}): each in_axes entry must be 0 (map over "
                    "the leading axis) or None (broadcast); move other axes to the front first"
                )
        self.kernel = kernel
        self.in_axes = in_axes
        self.name = f"Vmap({kernel.name})"

    # ------------------------------------------------------------------ arguments
    def _axes(self, nargs: int, op: str) -> tuple[int | None, ...]:
        if isinstance(self.in_axes, tuple):
            if len(self.in_axes) != nargs:
                raise ValueError(
                    f"{op} on {self.name}: in_axes has {len(self.in_axes)} entries but the call "
                    f"has {nargs} arguments; give one entry (0 or None) per argument"
                )
            return self.in_axes
        return (self.in_axes,) * nargs

    def _split_args(
        self, args: tuple[Any, ...], op: str
    ) -> tuple[int, tuple[mx.array, ...], tuple[Any, ...]]:
        axes = self._axes(len(args), op)
        mapped, shared = [], []
        n = -1
        first = -1
        for j, (a, ax) in enumerate(zip(args, axes)):
            if ax is None:
                shared.append(a)
                continue
            if not isinstance(a, mx.array) or a.ndim == 0:
                raise ValueError(
                    f"{op} on {self.name}: argument {j} is mapped (in_axes 0) but is not an "
                    f"array with a leading axis (got {type(a).__name__}); map it with an "
                    "array or set its in_axes entry to None"
                )
            if n < 0:
                n, first = a.shape[0], j
            elif a.shape[0] != n:
                raise ValueError(
                    f"{op} on {self.name}: mapped argument {j} has leading length {a.shape[0]} "
                    f"but argument {first} has {n}; mapped arguments must agree"
                )
            mapped.append(a)
        if n < 0:
            raise ValueError(
                f"{op} on {self.name}: no argument is mapped (all in_axes are None), so the "
                "number of elements is unknown; use Repeat(kernel, n) for n calls with shared "
                "arguments"
            )
        if n == 0:
            raise ValueError(f"{op} on {self.name}: Vmap needs at least one element (n == 0)")
        return n, tuple(mapped), tuple(shared)

    def _kernel_args(
        self, nargs: int, mapped: Sequence[Any], shared: Sequence[Any]
    ) -> tuple[Any, ...]:
        it_m, it_s = iter(mapped), iter(shared)
        return tuple(next(it_s) if ax is None else next(it_m) for ax in self._axes(nargs, "call"))

    def _element_argdiffs(self, nargs: int, argdiffs: tuple[Diff, ...]) -> tuple[Diff, ...]:
        axes = self._axes(nargs, "update")
        return tuple(
            d if ax is None or d.is_no_change() else UnknownChange for d, ax in zip(argdiffs, axes)
        )

    def _check_constraints(self, cm: ChoiceMap, n: int, op: str) -> None:
        for path, v, _ in cm.masked_leaves():
            if v.ndim == 0 or v.shape[0] != n:
                raise ConstraintError(
                    f"{op} on {self.name}: the value at {format_address(path)} has shape "
                    f"{tuple(v.shape)}, but Vmap's choices carry a leading axis of its {n} "
                    "elements; give an array of shape [n, ...]"
                )

    def _call(
        self, op: str, n: int, fn: Any, batched: tuple[Any, ...], shared: tuple[Any, ...]
    ) -> Any:
        try:
            return vmap_call(fn, n, batched, shared, strip_trace_args=True)
        except (ConstraintError, AddressError) as e:
            raise type(e)(f"{e} [in {self.name}'s kernel, {op}]") from e

    # ------------------------------------------------------------------ GFI
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> VmapTrace:
        n, m, s = self._split_args(args, "simulate")
        kernel, nm, na = self.kernel, len(m), len(args)

        def one(k: mx.array, *xs: Any) -> Trace:
            a = self._kernel_args(na, xs[:nm], xs[nm:])
            return kernel.simulate(a, key=k)

        inner = self._call("simulate", n, one, (split(key, n), *m), s)
        return VmapTrace.from_inner(self, args, inner, n)  # type: ignore[return-value]

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        n, m, s = self._split_args(args, "generate")
        self._check_constraints(constraints, n, "generate")
        kernel, nm, na = self.kernel, len(m), len(args)

        def one(k: mx.array, c: ChoiceMap, *xs: Any) -> tuple[Trace, mx.array]:
            tr, w = kernel.generate(self._kernel_args(na, xs[:nm], xs[nm:]), c, key=k)
            return tr, w

        inner, w = self._call("generate", n, one, (split(key, n), constraints, *m), s)
        return GenerateResult(VmapTrace.from_inner(self, args, inner, n), mx.sum(w))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        n, m, s = self._split_args(args, "assess")
        self._check_constraints(choices, n, "assess")
        kernel, nm, na = self.kernel, len(m), len(args)

        def one(_: mx.array, c: ChoiceMap, *xs: Any) -> tuple[mx.array, Any]:
            ld, rv = kernel.assess(self._kernel_args(na, xs[:nm], xs[nm:]), c)
            return ld, rv

        ld, rv = self._call("assess", n, one, (mx.arange(n), choices, *m), s)
        return AssessResult(mx.sum(ld), rv)

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, VmapTrace)
        if constraints.is_empty and all(d.is_no_change() for d in argdiffs):
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        n, m, s = self._split_args(args, "update")
        if n != trace.n:  # the element axis changes shape: every choice is replaced
            new, w = self._generate(args, constraints, key)
            discard = map_choicemap(trace.get_choices(), ())
            return UpdateResult(new, w - trace.score, UnknownChange, discard)
        self._check_constraints(constraints, n, "update")
        _, old_m, old_s = self._split_args(trace.args, "update")
        kernel, nm, ns, na = self.kernel, len(m), len(s), len(args)
        diffs = self._element_argdiffs(na, argdiffs)

        def one(k: mx.array, t: Trace, c: ChoiceMap, *xs: Any) -> Any:
            om, nw = xs[:nm], xs[nm : 2 * nm]
            os_, ns_ = xs[2 * nm : 2 * nm + ns], xs[2 * nm + ns :]
            t = t._replace(args=self._kernel_args(na, om, os_))
            res = kernel.update(t, c, self._kernel_args(na, nw, ns_), diffs, key=k)
            return res.trace, res.weight, res.retdiff, res.discard

        batched = (split(key, n), trace.inner, constraints, *old_m, *m)
        tr, w, rd, disc = self._call("update", n, one, batched, (*old_s, *s))
        retdiff: Diff = NoChange if rd.is_no_change() else UnknownChange
        discard = clean_masks(map_choicemap(disc, ()))
        return UpdateResult(VmapTrace.from_inner(self, args, tr, n), mx.sum(w), retdiff, discard)

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, VmapTrace)
        if selection.is_none() and all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        n, m, s = self._split_args(args, "regenerate")
        if n != trace.n:  # every choice is new: sampled from the model, weight 0
            new = self._simulate(args, key)
            return RegenerateResult(new, mx.zeros_like(new.score), UnknownChange)
        _, old_m, old_s = self._split_args(trace.args, "regenerate")
        kernel, nm, ns, na = self.kernel, len(m), len(s), len(args)
        diffs = self._element_argdiffs(na, argdiffs)

        def one(k: mx.array, t: Trace, *xs: Any) -> Any:
            om, nw = xs[:nm], xs[nm : 2 * nm]
            os_, ns_ = xs[2 * nm : 2 * nm + ns], xs[2 * nm + ns :]
            t = t._replace(args=self._kernel_args(na, om, os_))
            res = kernel.regenerate(t, selection, self._kernel_args(na, nw, ns_), diffs, key=k)
            return res.trace, res.weight, res.retdiff

        batched = (split(key, n), trace.inner, *old_m, *m)
        tr, w, rd = self._call("regenerate", n, one, batched, (*old_s, *s))
        retdiff: Diff = NoChange if rd.is_no_change() else UnknownChange
        return RegenerateResult(VmapTrace.from_inner(self, args, tr, n), mx.sum(w), retdiff)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        assert isinstance(trace, VmapTrace)
        if selection.is_none():
            return mx.zeros_like(trace.score)
        n, m, s = self._split_args(trace.args, "project")
        kernel, nm, na = self.kernel, len(m), len(trace.args)

        def one(t: Trace, *xs: Any) -> mx.array:
            t = t._replace(args=self._kernel_args(na, xs[:nm], xs[nm:]))
            return kernel.project(t, selection)

        p = self._call("project", n, one, (trace.inner, *m), s)
        return mx.sum(p)

    def __repr__(self) -> str:
        return f"<{self.name} in_axes={self.in_axes!r}>"
