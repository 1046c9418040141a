"""``Map`` and ``Repeat``: a kernel applied to many elements, run once, vectorised.

``Map(kernel)(*arrays)`` calls ``kernel(*(a[i] for a in arrays))`` for every ``i``;
``Repeat(kernel, n)(*args)`` calls ``kernel(*args)`` ``n`` times. Both keep element
``i``'s choices under the address ``(i, addr)`` (Gen.jl's layout, 0-based) and return the
kernel's return values stacked along a new leading axis.

The kernel is never run in a Python loop over elements: every operation runs it once for
all the elements it touches with :func:`genmlx.core.batching.vmap_call`, and the
combinator's trace keeps that element-batched kernel trace (hidden from the particle
batching machinery, see :class:`ElementsTrace`). ``update`` and ``regenerate`` are
incremental: only elements whose arguments changed (as told by a ``VectorDiff``), that are
constrained or selected, or that are new are run again, in one vectorised call over that
subset, and scattered back.

Heterogeneous constraints (element 0 constrains ``"x"``, element 3 constrains ``"y"``)
are stacked into one choice map over the union of the addresses, with a per-element mask
saying which element has which constraint, so they still take a single kernel call.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import runtime
from genmlx.core.address import Component, Path, format_address
from genmlx.core.batching import rebatch, vmap_call
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.diff import Diff, NoChange, UnknownChange, VectorDiff
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
from genmlx.core.tree import TreeDef, flatten, unflatten

__all__ = ["ElementsTrace", "Map", "MapTrace", "Repeat"]


# ---------------------------------------------------------------------------- helpers
def _per_element(doms: Any, n: int) -> dict[Any, Any] | None:
    if doms is None:
        return None
    return {(i, *p): d for i in range(n) for p, d in doms.items()}


def _kernel_static(kernel: GenerativeFunction, args: tuple[Any, ...], name: str) -> str | None:
    reason = kernel.static_structure(args)
    return None if reason is None else f"is a {name} whose kernel {reason}"


def map_choicemap(
    cm: ChoiceMap, batch_shape: tuple[int, ...], fn: Callable[[mx.array], mx.array] | None = None
) -> ChoiceMap:
    """``cm`` with ``fn`` applied to every leaf value and mask, every node declared
    ``batch_shape``."""
    if cm.has_root_value:
        v, m = cm.value, cm.leaf_mask
        if fn is not None:
            v = fn(v)
            m = fn(m) if m is not None else None
        return ChoiceMap(v, None, batch_shape, m)
    children = {c: map_choicemap(sub, batch_shape, fn) for c, sub in cm.items_shallow()}
    return ChoiceMap(None, children, batch_shape)


def element_slicer(axis: int, i: int) -> Callable[[mx.array], mx.array]:
    """``x -> x[..., i, ...]`` with ``i`` taken on ``axis``."""
    index = (slice(None),) * axis + (i,)
    return lambda x: x[index]


def clean_masks(cm: ChoiceMap) -> ChoiceMap:
    """Outside transformations, simplify the masks of an unbatched map (evaluates them).

    A leaf whose mask is False everywhere is dropped, one whose mask is True everywhere
    loses its mask; a mask that differs along an element axis (a ``Vmap`` whose
    elements took different ``Switch`` branches) is kept: it says which elements have
    the choice.
    """
    if cm.batch_shape or runtime.in_transform() or not cm.is_masked:
        return cm
    try:
        items = []
        for path, v, m in cm.masked_leaves():
            if m is None or bool(mx.all(m).item()):
                items.append((path, ChoiceMap(v)))
            elif bool(mx.any(m).item()):
                items.append((path, ChoiceMap(v, None, (), m)))
        return ChoiceMap.from_nodes(items, cm.batch_shape)
    except ValueError as e:  # under a user's own transformation: keep the masks
        if runtime.is_transform_eval_error(e):
            return cm
        raise


def take(tree: Any, idx: Sequence[int], n: int) -> Any:
    """Elements ``idx`` of every leaf of ``tree`` (leading element axis of length ``n``)."""
    if list(idx) == list(range(n)):
        return tree
    ix = mx.array(list(idx), dtype=mx.int32)
    leaves, td = flatten(tree)
    return unflatten(rebatch(td, (len(idx),)), [mx.take(x, ix, axis=0) for x in leaves])


def assemble(pieces: Sequence[tuple[Sequence[int], Any]], n: int) -> Any:
    """Build an element-batched tree of length ``n`` from pieces ``(indices, tree)``.

    Element ``i`` comes from the last piece listing it; every element must be listed.
    All pieces must have the same structure (the first piece's is used).
    """
    first_idx, first_tree = pieces[0]
    if len(pieces) == 1 and list(first_idx) == list(range(n)):
        return first_tree
    flat = [flatten(t) for _, t in pieces]
    td = flat[0][1]
    gather = [-1] * n
    offset = 0
    for (idx, _), (_, other) in zip(pieces, flat):
        if other.num_leaves != td.num_leaves:
            raise ValueError(
                "the kernel's traces differ in structure between elements; a Map kernel "
                "must visit the same addresses for every element"
            )
        for j, i in enumerate(idx):
            if i < n:
                gather[i] = offset + j
        offset += len(idx)
    if min(gather) < 0:
        raise AssertionError(f"assemble: element {gather.index(-1)} has no source")
    ix = mx.array(gather, dtype=mx.int32)
    out = []
    for k in range(td.num_leaves):
        parts = [f[0][k] for f in flat]
        out.append(mx.take(mx.concatenate(parts, axis=0), ix, axis=0))
    return unflatten(rebatch(td, (n,)), out)


def group_by(items: Sequence[int], key: Callable[[int], Any]) -> list[tuple[Any, list[int]]]:
    """Items grouped by ``key`` (first-seen order of keys, items in order)."""
    out: dict[Any, list[int]] = {}
    for i in items:
        out.setdefault(key(i), []).append(i)
    return list(out.items())


def signature(cm: ChoiceMap) -> tuple[Any, ...]:
    """The addresses, shapes and mask presence of ``cm``'s leaves (a hashable key)."""
    return tuple((p, tuple(v.shape), m is not None) for p, v, m in cm.masked_leaves())


class StackedConstraints:
    """Per-element choice maps stacked into one element-batched map with masks.

    Attributes:
        cm: the stacked map (leaves ``[m, ...]``; masks ``[m]`` where an element lacks
            the address or had a mask of its own).
        present: for each element, the paths it constrains itself.
        own_mask: for each element, the paths whose own leaf carried a mask.
    """

    def __init__(self, elems: Sequence[ChoiceMap], what: str) -> None:
        order: dict[Path, None] = {}
        found: list[dict[Path, tuple[mx.array, mx.array | None]]] = []
        for e in elems:
            d = {p: (as_array(v), m) for p, v, m in e.masked_leaves()}
            found.append(d)
            for p in d:
                order.setdefault(p, None)
        self.present = [set(d) for d in found]
        self.own_mask = [{p for p, (_, m) in d.items() if m is not None} for d in found]
        cm = ChoiceMap.empty()
        for p in order:
            ref = next(d[p][0] for d in found if p in d)
            vals = [d[p][0] if p in d else mx.zeros_like(ref) for d in found]
            full = all(p in d and d[p][1] is None for d in found)
            try:
                v = mx.stack(vals)
            except ValueError as e:
                shapes = sorted({tuple(x.shape) for x in vals})
                raise ConstraintError(
                    f"{what}: the elements' values at {format_address(p)} have different "
                    f"shapes {shapes}; give every element a value of the same shape"
                ) from e
            mask = None
            if not full:
                ms = []
                for d in found:
                    if p not in d:
                        ms.append(mx.array(False))
                    else:
                        own = d[p][1]
                        ms.append(mx.array(True) if own is None else own.astype(mx.bool_))
                mask = mx.stack(ms)
            cm = cm.set(p, ChoiceMap(v, None, (), mask))
        self.cm = cm

    def element_discard(self, disc: ChoiceMap, j: int) -> ChoiceMap:
        """Element ``j``'s part of a discard made with these constraints.

        Leaves the element constrained itself lose their (statically true) mask; leaves
        only other elements constrained are dropped.
        """
        out = ChoiceMap.empty()
        for p, v, m in disc.masked_leaves():
            vj = v[j]
            if p in self.present[j]:
                mj = m[j] if m is not None and p in self.own_mask[j] else None
            elif any(p in s for s in self.present):
                continue
            else:
                mj = m[j] if m is not None else None
            out = out.set(p, ChoiceMap(vj, None, (), mj))
        return out


def merge_diffs(per_element: Sequence[tuple[Diff, ...]]) -> tuple[Diff, ...]:
    """One argdiff tuple valid for all the elements: a diff where all agree, else
    UnknownChange."""
    first = per_element[0]
    out = []
    for j, d in enumerate(first):
        if all(e[j] is d for e in per_element):
            out.append(d)
        else:
            out.append(UnknownChange)
    return tuple(out)


def scalar(x: Any) -> mx.array:
    """``x`` as an MLX array (sums of Python zeros become ``mx.array(0.0)``)."""
    return x if isinstance(x, mx.array) else mx.array(float(x))


# ---------------------------------------------------------------------------- trace
class ElementsTrace(Trace):
    """A combinator trace holding one element-batched kernel trace.

    The kernel trace (batch shape ``(n,)``: every leaf has a leading element axis) is
    stored flattened, as its leaves and a :class:`~genmlx.core.tree.TreeDef`, so the
    particle batching machinery never sees it as a trace to rebatch. When the
    combinator trace itself is particle-batched (``batch_shape == (P,)``) the leaves are
    ``[P, n, ...]`` and :attr:`inner` declares the kernel trace with ``batch_shape ==
    (P, n)``.

    Attributes:
        n: the number of elements.
    """

    __slots__ = ("_choices", "_leaves", "_td", "n")

    n: int
    _leaves: list[mx.array]
    _td: TreeDef
    _choices: ChoiceMap | None

    def __init__(
        self,
        gen_fn: GenerativeFunction,
        args: tuple[Any, ...],
        retval: Any,
        score: mx.array,
        leaves: list[mx.array],
        td: TreeDef,
        n: int,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, retval, score, batch_shape)
        object.__setattr__(self, "_leaves", list(leaves))
        object.__setattr__(self, "_td", td)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "_choices", None)

    @classmethod
    def from_inner(
        cls, gen_fn: GenerativeFunction, args: tuple[Any, ...], inner: Trace, n: int
    ) -> ElementsTrace:
        """Wrap an element-batched kernel trace (inside an operation: unbatched view)."""
        leaves, td = flatten(inner)
        score = mx.sum(inner.score, axis=0)
        return cls(gen_fn, args, inner.retval, score, leaves, rebatch(td, ()), n)

    @property
    def inner(self) -> Trace:
        """The element-batched kernel trace (``batch_shape == self.batch_shape + (n,)``)."""
        return unflatten(rebatch(self._td, (*self.batch_shape, self.n)), self._leaves)  # type: ignore[no-any-return]

    @property
    def element_scores(self) -> mx.array:
        """The kernel score of every element (shape ``batch_shape + (n,)``)."""
        return self.inner.score

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        children: list[Any] = [self.args, self.retval, self.score, list(self._leaves)]
        return children, (self.batch_shape, self.gen_fn, self.n, self._td)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> ElementsTrace:
        batch_shape, gen_fn, n, td = aux
        args, retval, score, leaves = children
        return cls(gen_fn, args, retval, score, leaves, td, n, batch_shape)


class MapTrace(ElementsTrace):
    """The trace of :class:`Map` / :class:`Repeat`: element ``i``'s choices at ``(i, addr)``."""

    __slots__ = ()

    def get_choices(self) -> ChoiceMap:
        cached = self._choices
        if cached is None:
            inner_cm = self.inner.get_choices()
            b = len(self.batch_shape)
            children: dict[Component, ChoiceMap] = {}
            for i in range(self.n):
                sub = map_choicemap(inner_cm, self.batch_shape, element_slicer(b, i))
                if not sub.is_empty:
                    children[i] = sub
            cached = clean_masks(ChoiceMap(None, children, self.batch_shape))
            object.__setattr__(self, "_choices", cached)
        return cached

    def element_choices(self, i: int) -> ChoiceMap:
        """The choices of element ``i`` (the sub-map at address ``i``)."""
        return self.get_choices().get_submap(i)

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        b = len(self.batch_shape)
        for path, s in self.inner.site_scores():
            for i in range(self.n):
                yield (i, *path), element_slicer(b, i)(s)


# ---------------------------------------------------------------------------- combinator
class _Elementwise(GenerativeFunction):
    """Shared machinery of Map and Repeat (indexed layout, incremental updates)."""

    kernel: GenerativeFunction
    combinator: str = "Map"

    # ---- what differs between Map and Repeat
    @abstractmethod
    def _split_args(
        self, args: tuple[Any, ...], op: str
    ) -> tuple[int, tuple[mx.array, ...], tuple[Any, ...]]:
        """``(n, per-element arrays, shared args)``."""

    @abstractmethod
    def _kernel_args(self, elem: Sequence[Any], shared: Sequence[Any]) -> tuple[Any, ...]:
        """The kernel's arguments for one element."""

    @abstractmethod
    def _element_argdiffs(self, argdiffs: tuple[Diff, ...], i: int) -> tuple[Diff, ...]:
        """The kernel's argdiffs for retained element ``i``."""

    def _check_argdiffs(self, argdiffs: tuple[Diff, ...], n_old: int, n_new: int) -> None:
        return None

    # ---- running the kernel on a subset of elements
    def _call(
        self,
        op: str,
        idx: Sequence[int],
        fn: Callable[..., Any],
        batched: tuple[Any, ...],
        shared: tuple[Any, ...],
    ) -> Any:
        try:
            return vmap_call(fn, len(idx), batched, shared, strip_trace_args=True)
        except (ConstraintError, AddressError) as e:
            shown = list(idx) if len(idx) <= 8 else [*list(idx)[:8], "..."]
            raise type(e)(f"{e} [in {self.name}'s kernel, {op} of element(s) {shown}]") from e

    def _element_constraints(self, cm: ChoiceMap, n: int, op: str) -> dict[int, ChoiceMap]:
        if cm.has_root_value:
            raise ConstraintError(
                f"{op} on {self.name}: the constraint is a single value, but {self.combinator} "
                "keeps element i's choices under (i, addr); constrain e.g. {(0, 'x'): v}"
            )
        out: dict[int, ChoiceMap] = {}
        for c, sub in cm.items_shallow():
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n:
                raise ConstraintError(
                    f"{op} on {self.name}: constraint at address {format_address((c,))}, but the "
                    f"{self.combinator} has {n} elements with addresses (i, ...) for i in "
                    f"0..{n - 1}; put element i's constraints under (i, addr)"
                )
            out[c] = sub
        return out

    def _check_selection(self, sel: Selection, limit: int, op: str) -> None:
        for path in sel.explicit_paths():
            c = path[0]
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < limit:
                raise AddressError(
                    f"{op} on {self.name}: the selection names address {format_address(path)}, "
                    f"but the {self.combinator} has elements (i, ...) for i in 0..{limit - 1}; "
                    "select element i's choices as (i, addr)"
                )

    def _generate_part(
        self,
        op: str,
        idx: Sequence[int],
        econs: dict[int, ChoiceMap],
        keys: mx.array,
        b: tuple[mx.array, ...],
        s: tuple[Any, ...],
        n: int,
    ) -> tuple[Trace, mx.array]:
        """Generate elements ``idx`` (one vectorised call); element traces and weight sum."""
        kernel, nb = self.kernel, len(b)
        stacked = StackedConstraints([econs.get(i, ChoiceMap.empty()) for i in idx], op)

        def one(k: mx.array, c: ChoiceMap, *xs: Any) -> tuple[Trace, mx.array]:
            tr, w = kernel.generate(self._kernel_args(xs[:nb], xs[nb:]), c, key=k)
            return tr, w

        batched = (take(keys, idx, n), stacked.cm, *take(b, idx, n))
        tr, w = self._call(op, idx, one, batched, s)
        return tr, mx.sum(w)

    # ---- GFI
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> MapTrace:
        n, b, s = self._split_args(args, "simulate")
        kernel, nb = self.kernel, len(b)

        def one(k: mx.array, *xs: Any) -> Trace:
            return kernel.simulate(self._kernel_args(xs[:nb], xs[nb:]), key=k)

        inner = self._call("simulate", range(n), one, (split(key, n), *b), s)
        return MapTrace.from_inner(self, args, inner, n)  # type: ignore[return-value]

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        n, b, s = self._split_args(args, "generate")
        econs = self._element_constraints(constraints, n, "generate")
        inner, w = self._generate_part("generate", range(n), econs, split(key, n), b, s, n)
        return GenerateResult(MapTrace.from_inner(self, args, inner, n), w)

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        n, b, s = self._split_args(args, "assess")
        econs = self._element_constraints(choices, n, "assess")
        kernel, nb = self.kernel, len(b)
        empty = ChoiceMap.empty()

        def one(_: mx.array, c: ChoiceMap, *xs: Any) -> tuple[mx.array, Any]:
            return tuple(kernel.assess(self._kernel_args(xs[:nb], xs[nb:]), c))  # type: ignore[return-value]

        total: Any = 0.0
        pieces = []
        # assess needs every choice, so elements are grouped by the addresses they give
        # (a missing choice must be an error, not a masked-out value)
        for _, idx in group_by(range(n), lambda i: signature(econs.get(i, empty))):
            cm = StackedConstraints([econs.get(i, empty) for i in idx], "assess").cm
            dummy = mx.arange(len(idx))
            ld, rv = self._call("assess", idx, one, (dummy, cm, *take(b, idx, n)), s)
            total = total + mx.sum(ld)
            pieces.append((idx, rv))
        return AssessResult(scalar(total), assemble(pieces, n))

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, MapTrace)
        if constraints.is_empty and all(d.is_no_change() for d in argdiffs):
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        n_old = trace.n
        n_new, b, s = self._split_args(args, "update")
        _, old_b, old_s = self._split_args(trace.args, "update")
        self._check_argdiffs(argdiffs, n_old, n_new)
        econs = self._element_constraints(constraints, n_new, "update")
        keys = split(key, n_new)
        inner = trace.inner
        keep = min(n_old, n_new)
        kernel, nb, ns = self.kernel, len(b), len(s)
        weight: Any = mx.zeros_like(trace.score)
        discard: dict[Component, ChoiceMap] = {}
        updated: dict[int, Diff] = {}
        pieces: list[tuple[Sequence[int], Any]] = [(range(n_old), inner)]

        el_diffs = {i: self._element_argdiffs(argdiffs, i) for i in range(keep)}
        rerun = [
            i for i in range(keep) if i in econs or not all(d.is_no_change() for d in el_diffs[i])
        ]
        if rerun:
            diffs = merge_diffs([el_diffs[i] for i in rerun])
            stacked = StackedConstraints([econs.get(i, ChoiceMap.empty()) for i in rerun], "update")

            def one(k: mx.array, t: Trace, c: ChoiceMap, *xs: Any) -> Any:
                ob, nw = xs[:nb], xs[nb : 2 * nb]
                os_, ns_ = xs[2 * nb : 2 * nb + ns], xs[2 * nb + ns :]
                t = t._replace(args=self._kernel_args(ob, os_))
                res = kernel.update(t, c, self._kernel_args(nw, ns_), diffs, key=k)
                return res.trace, res.weight, res.retdiff, res.discard

            batched = (
                take(keys, rerun, n_new),
                take(inner, rerun, n_old),
                stacked.cm,
                *take(old_b, rerun, n_old),
                *take(b, rerun, n_new),
            )
            tr, w, rd, disc = self._call("update", rerun, one, batched, (*old_s, *s))
            weight = weight + mx.sum(w)
            pieces.append((rerun, tr))
            for j, i in enumerate(rerun):
                d = stacked.element_discard(disc, j)
                if not d.is_empty:
                    discard[i] = clean_masks(d)
                if not rd.is_no_change():
                    updated[i] = rd
        if n_new > n_old:
            new = range(n_old, n_new)
            tr, w = self._generate_part("update", new, econs, keys, b, s, n_new)
            weight = weight + w
            pieces.append((new, tr))
        elif n_new < n_old:
            weight = weight - mx.sum(inner.score[n_new:])
            inner_cm = inner.get_choices()
            for i in range(n_new, n_old):
                discard[i] = clean_masks(map_choicemap(inner_cm, (), element_slicer(0, i)))
        new_inner = assemble(pieces, n_new)
        retdiff: Diff = (
            VectorDiff(n_new, n_old, updated) if (n_new != n_old or updated) else NoChange
        )
        return UpdateResult(
            MapTrace.from_inner(self, args, new_inner, n_new),
            scalar(weight),
            retdiff,
            ChoiceMap(None, discard, ()),
        )

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, MapTrace)
        n_old = trace.n
        n_new, b, s = self._split_args(args, "regenerate")
        self._check_selection(selection, max(n_old, n_new), "regenerate")
        if selection.is_none() and all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        _, old_b, old_s = self._split_args(trace.args, "regenerate")
        self._check_argdiffs(argdiffs, n_old, n_new)
        keys = split(key, n_new)
        inner = trace.inner
        keep = min(n_old, n_new)
        kernel, nb, ns = self.kernel, len(b), len(s)
        weight: Any = mx.zeros_like(trace.score)
        updated: dict[int, Diff] = {}
        pieces: list[tuple[Sequence[int], Any]] = [(range(n_old), inner)]

        sels = {i: selection.child(i) for i in range(keep)}
        el_diffs = {i: self._element_argdiffs(argdiffs, i) for i in range(keep)}

        def group_key(i: int) -> Any:
            sel_key = None if sels[i].is_none() else repr(sels[i])
            return sel_key, tuple(id(d) for d in el_diffs[i])

        for (sel_key, _), idx in group_by(range(keep), group_key):
            if sel_key is None and all(d.is_no_change() for d in el_diffs[idx[0]]):
                continue
            sel_i, diffs = sels[idx[0]], el_diffs[idx[0]]

            def one(
                k: mx.array,
                t: Trace,
                *xs: Any,
                sel_i: Selection = sel_i,
                diffs: tuple[Diff, ...] = diffs,
            ) -> Any:
                ob, nw = xs[:nb], xs[nb : 2 * nb]
                os_, ns_ = xs[2 * nb : 2 * nb + ns], xs[2 * nb + ns :]
                t = t._replace(args=self._kernel_args(ob, os_))
                res = kernel.regenerate(t, sel_i, self._kernel_args(nw, ns_), diffs, key=k)
                return res.trace, res.weight, res.retdiff

            batched = (
                take(keys, idx, n_new),
                take(inner, idx, n_old),
                *take(old_b, idx, n_old),
                *take(b, idx, n_new),
            )
            tr, w, rd = self._call("regenerate", idx, one, batched, (*old_s, *s))
            weight = weight + mx.sum(w)
            pieces.append((idx, tr))
            if not rd.is_no_change():
                updated.update(dict.fromkeys(idx, rd))
        if n_new > n_old:
            new = range(n_old, n_new)

            def fresh(k: mx.array, *xs: Any) -> Trace:
                a = self._kernel_args(xs[:nb], xs[nb:])
                return kernel.simulate(a, key=k)

            tr = self._call(
                "regenerate", new, fresh, (take(keys, new, n_new), *take(b, new, n_new)), s
            )
            pieces.append((new, tr))
        new_inner = assemble(pieces, n_new)
        retdiff: Diff = (
            VectorDiff(n_new, n_old, updated) if (n_new != n_old or updated) else NoChange
        )
        return RegenerateResult(
            MapTrace.from_inner(self, args, new_inner, n_new), scalar(weight), retdiff
        )

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        assert isinstance(trace, MapTrace)
        n = trace.n
        self._check_selection(selection, n, "project")
        _, b, s = self._split_args(trace.args, "project")
        inner = trace.inner
        kernel, nb = self.kernel, len(b)
        total: Any = mx.zeros_like(trace.score)
        sels = {i: selection.child(i) for i in range(n)}

        def group_key(i: int) -> Any:
            return None if sels[i].is_none() else repr(sels[i])

        for sel_key, idx in group_by(range(n), group_key):
            if sel_key is None:
                continue
            sel_i = sels[idx[0]]

            def one(t: Trace, *xs: Any, sel_i: Selection = sel_i) -> mx.array:
                t = t._replace(args=self._kernel_args(xs[:nb], xs[nb:]))
                return kernel.project(t, sel_i)

            p = self._call("project", idx, one, (take(inner, idx, n), *take(b, idx, n)), s)
            total = total + mx.sum(p)
        return scalar(total)


class Map(_Elementwise):
    """Apply a kernel to every element of its array arguments: Gen.jl's ``Map``.

    ``Map(kernel)(*arrays) @ addr`` (in a ``@gen`` body) or
    ``Map(kernel).simulate(arrays, key=...)``: every argument is an array with the same
    leading length ``n``; element ``i`` calls ``kernel(*(a[i] for a in arrays))``.

    Address layout: element ``i``'s choices live under ``(i, addr)`` with 0-based ``i``
    (a distribution kernel's choice is at ``i`` itself). The return value is the
    kernel's return values stacked along a new axis 0.

    Weights: the score is the sum of the element scores; ``generate``, ``update``,
    ``regenerate`` and ``project`` weights are the sums of the per-element kernel
    weights (Gen.jl's semantics). ``update`` is incremental: with a ``VectorDiff``
    argdiff only the elements it lists, the constrained elements and new elements run
    again (one vectorised kernel call); elements removed by a shorter length subtract
    their scores and go to the discard. ``UnknownChange`` argdiffs re-run every element.

    Args:
        kernel: the generative function applied to each element.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import choicemap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.map import Map
        >>> tr, w = Map(normal).generate(
        ...     (mx.array([0.0, 1.0]), mx.array([1.0, 1.0])), choicemap({1: 1.0}),
        ...     key=mx.random.key(0))
        >>> tr.retval.shape, round(float(w), 4)   # log N(1; 1, 1)
        ((2,), -0.9189)
    """

    combinator = "Map"

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """Fixed when the kernel's structure is fixed for one element's arguments."""
        if not args or any(not isinstance(a, mx.array) or a.ndim == 0 for a in args):
            return "has arguments that are not arrays with a leading element axis"
        return _kernel_static(self.kernel, tuple(a[0] for a in args), "Map")

    def choice_domains(self, args: tuple[Any, ...]) -> dict[Any, Any] | None:
        """The kernel's domains (for element 0's arguments) under every element."""
        if not args or any(not isinstance(a, mx.array) or a.ndim == 0 for a in args):
            return None
        return _per_element(self.kernel.choice_domains(tuple(a[0] for a in args)), args[0].shape[0])

    def __init__(self, kernel: GenerativeFunction) -> None:
        if not isinstance(kernel, GenerativeFunction):
            raise TypeError(f"Map(kernel): kernel must be a generative function, got {kernel!r}")
        self.kernel = kernel
        self.name = f"Map({kernel.name})"

    def _split_args(
        self, args: tuple[Any, ...], op: str
    ) -> tuple[int, tuple[mx.array, ...], tuple[Any, ...]]:
        if not args:
            raise ValueError(
                f"{op} on {self.name}: Map needs at least one array argument to map over; "
                "use Repeat(kernel, n) for n calls with shared arguments"
            )
        arrays = []
        n = -1
        for j, a in enumerate(args):
            if isinstance(a, (list, np.ndarray)):
                a = mx.array(a)
            if not isinstance(a, mx.array) or a.ndim == 0:
                raise ValueError(
                    f"{op} on {self.name}: argument {j} must be an array with a leading "
                    f"element axis, got {type(a).__name__}"
                    + (f" of shape {tuple(a.shape)}" if isinstance(a, mx.array) else "")
                )
            if n < 0:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(
                    f"{op} on {self.name}: argument {j} has leading length {a.shape[0]} but "
                    f"argument 0 has {n}; every argument of a Map needs the same number of "
                    "elements"
                )
            arrays.append(a)
        if n == 0:
            raise ValueError(f"{op} on {self.name}: Map needs at least one element (n == 0)")
        return n, tuple(arrays), ()

    def _kernel_args(self, elem: Sequence[Any], shared: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(elem)

    def _check_argdiffs(self, argdiffs: tuple[Diff, ...], n_old: int, n_new: int) -> None:
        for j, d in enumerate(argdiffs):
            if isinstance(d, VectorDiff) and (d.new_length != n_new or d.prev_length != n_old):
                raise ValueError(
                    f"update on {self.name}: the VectorDiff of argument {j} says length "
                    f"{d.prev_length} -> {d.new_length}, but the arguments go from {n_old} to "
                    f"{n_new} elements"
                )

    def _element_argdiffs(self, argdiffs: tuple[Diff, ...], i: int) -> tuple[Diff, ...]:
        out: list[Diff] = []
        for d in argdiffs:
            if d.is_no_change():
                out.append(NoChange)
            elif isinstance(d, VectorDiff):
                out.append(d.updated.get(i, NoChange))
            else:
                out.append(UnknownChange)
        return tuple(out)

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Repeat(_Elementwise):
    """``n`` independent calls of a kernel with the same arguments.

    ``Repeat(kernel, n)(*args) @ addr``: call ``i`` runs ``kernel(*args)``; all calls
    share the arguments (they are not split into elements).

    Address layout: call ``i``'s choices live under ``(i, addr)`` (0-based), like
    :class:`Map`; the return value stacks the kernel's return values along axis 0.

    Weights: sums of the per-call kernel weights, as for :class:`Map`. Changed arguments
    re-run every call; constraints or selections re-run only the calls they touch.

    Args:
        kernel: the generative function to repeat.
        n: the number of calls (a positive int).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.map import Repeat
        >>> tr = Repeat(normal, 3).simulate((0.0, 1.0), key=mx.random.key(0))
        >>> tr.retval.shape, sorted(tr.get_choices().addresses())
        ((3,), [0, 1, 2])
    """

    combinator = "Repeat"

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """Fixed when the kernel's structure is fixed for its arguments."""
        return _kernel_static(self.kernel, args, "Repeat")

    def choice_domains(self, args: tuple[Any, ...]) -> dict[Any, Any] | None:
        """The kernel's domains under every call."""
        return _per_element(self.kernel.choice_domains(args), self.n)

    def __init__(self, kernel: GenerativeFunction, n: int) -> None:
        if not isinstance(kernel, GenerativeFunction):
            raise TypeError(
                f"Repeat(kernel, n): kernel must be a generative function, got {kernel!r}"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Repeat(kernel, n): n must be a positive int, got {n!r}")
        self.kernel = kernel
        self.n = n
        self.name = f"Repeat({kernel.name}, {n})"

    def _split_args(
        self, args: tuple[Any, ...], op: str
    ) -> tuple[int, tuple[mx.array, ...], tuple[Any, ...]]:
        return self.n, (), tuple(args)

    def _kernel_args(self, elem: Sequence[Any], shared: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(shared)

    def _element_argdiffs(self, argdiffs: tuple[Diff, ...], i: int) -> tuple[Diff, ...]:
        return argdiffs

    def __repr__(self) -> str:
        return f"<{self.name}>"
