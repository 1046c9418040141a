"""Choice maps: immutable, hierarchical maps from addresses to values.

A :class:`ChoiceMap` is a trie. Each node either holds one value (a *leaf*: an MLX
array) or maps address components to child choice maps. ``("y", 3)`` addresses the
leaf under ``y`` → ``3``. The empty path ``()`` addresses the root, which is where a
distribution (a generative function with a single choice) keeps its value.

Leaves are MLX arrays. A choice map built by a batched operation carries
``batch_shape == (n,)`` and each leaf has that leading axis; a choice map built by hand
is unbatched unless you say otherwise with ``batch_shape=``.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import choicemap
    >>> cm = choicemap({"a": 1.0, ("y", 0): 2.0, ("y", 1): 3.0})
    >>> float(cm["a"]), float(cm[("y", 1)])
    (1.0, 3.0)
    >>> sorted(k for k, _ in cm.get_submap("y"))
    [0, 1]
    >>> ("y", 0) in cm, "z" in cm
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import numpy as np

from genmlx.core.address import Address, Component, Path, format_address, from_path, to_path
from genmlx.core.errors import AddressError

if TYPE_CHECKING:
    from genmlx.core.selection import Selection

__all__ = ["ChoiceMap", "as_array", "choicemap"]


def as_array(value: Any) -> mx.array:
    """Convert a choice value to an MLX array (floats → float32, ints → int32)."""
    if isinstance(value, mx.array):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        elif value.dtype == np.int64:
            value = value.astype(np.int32)
        return mx.array(value)
    if isinstance(value, (bool, int, float, list, tuple)):
        return mx.array(value)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return as_array(np.asarray(value))
    raise TypeError(
        f"choice values must be MLX arrays or numbers, got {type(value).__name__}; "
        "convert it with mx.array(...)"
    )


class ChoiceMap:
    """An immutable hierarchical map from addresses to MLX array values.

    Build one with :func:`choicemap`; read it with ``cm[addr]``, ``cm.get_submap(addr)``,
    ``addr in cm`` and iteration over ``(address, value)`` leaves.
    """

    __slots__ = ("_children", "_mask", "_tree_memo", "_value", "batch_shape")

    _value: mx.array | None
    _mask: mx.array | None
    _children: Mapping[Component, ChoiceMap]
    batch_shape: tuple[int, ...]

    def __init__(
        self,
        value: mx.array | None = None,
        children: Mapping[Component, ChoiceMap] | None = None,
        batch_shape: tuple[int, ...] = (),
        mask: mx.array | None = None,
    ) -> None:
        if value is not None and children:
            raise ValueError("a choice map node holds either a value or children, not both")
        if mask is not None and value is None:
            raise ValueError("only a leaf (a node holding a value) can carry a mask")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_mask", mask)
        object.__setattr__(self, "_children", children if children is not None else {})
        object.__setattr__(self, "batch_shape", tuple(batch_shape))
        object.__setattr__(self, "_tree_memo", None)

    def _tree_memo_set(self, memo: Any) -> None:
        """Keep the flattened form (see :func:`genmlx.core.tree.flatten`): the map is
        immutable and its leaves are arrays."""
        object.__setattr__(self, "_tree_memo", memo)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ChoiceMap is immutable; use set(), merge() or choicemap()")

    def __reduce__(self) -> Any:
        """Pickled (and deep-copied) node by node; see :mod:`genmlx.core.serialize`."""
        if self is _EMPTY:
            return (ChoiceMap.empty, ())
        return (ChoiceMap, (self._value, dict(self._children), self.batch_shape, self._mask))

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def empty() -> ChoiceMap:
        """The choice map with no choices."""
        return _EMPTY

    @staticmethod
    def leaf(
        value: Any, batch_shape: tuple[int, ...] = (), mask: mx.array | None = None
    ) -> ChoiceMap:
        """A choice map whose root holds ``value`` (a distribution's choice map).

        Args:
            value: the choice's value.
            batch_shape: the leading batch shape the value carries.
            mask: optional boolean array of shape ``batch_shape``: the choice is
                present only where it is True (see :meth:`mask`).
        """
        out = ChoiceMap(as_array(value), None, batch_shape, _as_mask(mask))
        if batch_shape:
            _check_batch_shape(out, tuple(batch_shape), "ChoiceMap.leaf")
        return out

    @staticmethod
    def from_nodes(
        items: Iterable[tuple[Path, ChoiceMap]], batch_shape: tuple[int, ...] = ()
    ) -> ChoiceMap:
        """Build a map from ``(path, sub-map)`` pairs in one pass (O(number of nodes)).

        Raises:
            AddressError: a path is given twice or lies beneath another one's value.
        """
        root: dict[Any, Any] = {}
        for path, node in items:
            if not path:
                if len(root) or isinstance(root.get(_ROOT), ChoiceMap):
                    raise AddressError("from_nodes: the root given together with other paths")
                root[_ROOT] = node
                continue
            d = root
            for i, c in enumerate(path[:-1]):
                nxt = d.get(c)
                if nxt is None:
                    nxt = {}
                    d[c] = nxt
                elif not isinstance(nxt, dict):
                    raise AddressError(
                        f"cannot put a choice at {format_address(path)}: "
                        f"{format_address(path[: i + 1])} already holds a value"
                    )
                d = nxt
            last = path[-1]
            prev = d.get(last)
            if prev is not None:
                if isinstance(prev, dict) or (isinstance(prev, ChoiceMap) and not prev.is_empty):
                    raise AddressError(f"address {format_address(path)} given twice")
            d[last] = node
        if _ROOT in root:
            n = root[_ROOT]
            return ChoiceMap(n._value, n._children, batch_shape, n._mask)
        return _from_trie(root, batch_shape)

    # ------------------------------------------------------------------ queries
    @property
    def is_empty(self) -> bool:
        """True when the map holds no value anywhere."""
        return self._value is None and all(c.is_empty for c in self._children.values())

    def __bool__(self) -> bool:
        return not self.is_empty

    @property
    def has_root_value(self) -> bool:
        """True when this node itself is a leaf."""
        return self._value is not None

    @property
    def value(self) -> mx.array:
        """The value at the root; raises if this node is not a leaf."""
        if self._value is None:
            raise AddressError("choice map has no value at its root (it is a map of addresses)")
        return self._value

    def _node(self, path: Path) -> ChoiceMap | None:
        node: ChoiceMap | None = self
        for c in path:
            if node is None:
                return None
            node = node._children.get(c)
        return node

    def child(self, component: Component) -> ChoiceMap:
        """The sub-map under one address component (empty if there is none)."""
        c = self._children.get(component)
        return c if c is not None else ChoiceMap(None, None, self.batch_shape)

    def get_submap(self, addr: Address) -> ChoiceMap:
        """The sub-map under ``addr`` (empty if nothing is there)."""
        node = self._node(to_path(addr))
        if node is None:
            return ChoiceMap(None, None, self.batch_shape)
        if node.batch_shape != self.batch_shape:
            return ChoiceMap(node._value, node._children, self.batch_shape, node._mask)
        return node

    def has_value(self, addr: Address) -> bool:
        """True when a leaf value is stored exactly at ``addr``."""
        node = self._node(to_path(addr))
        return node is not None and node._value is not None

    def __contains__(self, addr: object) -> bool:
        try:
            node = self._node(to_path(addr))  # type: ignore[arg-type]
        except TypeError:
            return False
        return node is not None and not node.is_empty

    def __getitem__(self, addr: Address) -> mx.array:
        path = to_path(addr) if addr != () else ()
        node = self._node(path)
        if node is None or node._value is None:
            if node is not None and not node.is_empty:
                raise AddressError(
                    f"choice map has a sub-map, not a value, at {format_address(addr)}; "
                    f"use get_submap({addr!r}) to read it"
                )
            raise AddressError(
                f"no choice at address {format_address(addr)}; "
                f"present top-level addresses: {sorted(map(repr, self._children))}"
            )
        return node._value

    def get(self, addr: Address, default: Any = None) -> Any:
        """``cm[addr]`` or ``default`` when no value is stored there."""
        node = self._node(to_path(addr))
        return default if node is None or node._value is None else node._value

    def leaves(self) -> Iterator[tuple[Path, mx.array]]:
        """Iterate ``(path, value)`` for every leaf, paths as tuples, in insertion order."""
        yield from self._leaves(())

    def _leaves(self, prefix: Path) -> Iterator[tuple[Path, mx.array]]:
        if self._value is not None:
            yield prefix, self._value
            return
        for c, sub in self._children.items():
            yield from sub._leaves((*prefix, c))

    def __iter__(self) -> Iterator[tuple[Address, mx.array]]:
        """Iterate ``(address, value)`` leaves; one-component addresses come out bare."""
        for path, v in self.leaves():
            yield from_path(path) if path else (), v

    def addresses(self) -> list[Address]:
        """Every leaf address, in insertion order."""
        return [a for a, _ in self]

    def __len__(self) -> int:
        return sum(1 for _ in self.leaves())

    def items_shallow(self) -> Iterator[tuple[Component, ChoiceMap]]:
        """The root's children ``(component, sub-map)``."""
        for c, sub in self._children.items():
            if not sub.is_empty:
                yield c, sub

    # ------------------------------------------------------------------ building
    def set(self, addr: Address, value: Any) -> ChoiceMap:
        """A new map with ``value`` stored at ``addr`` (replacing what was there)."""
        path = to_path(addr) if addr != () else ()
        return self._set(path, ChoiceMap.leaf(value) if not isinstance(value, ChoiceMap) else value)

    def set_submap(self, addr: Address, submap: ChoiceMap) -> ChoiceMap:
        """A new map with ``submap`` placed at ``addr`` (replacing what was there).

        ``addr`` may be a path tuple (``("y", 3)``); ``()`` replaces the whole map (the
        batch shape stays this map's). Gen.jl's ``set_submap!``, without mutation.

        Raises:
            AddressError: a prefix of ``addr`` already holds a value.
            TypeError: ``submap`` is not a ChoiceMap.

        Example:
            >>> cm = choicemap({"a": 1.0}).set_submap(("b", 0), choicemap({"c": 2.0}))
            >>> float(cm[("b", 0, "c")])
            2.0
        """
        if not isinstance(submap, ChoiceMap):
            raise TypeError(
                f"set_submap: the sub-map must be a ChoiceMap, got {type(submap).__name__}; "
                "use set(addr, value) for a value"
            )
        path = to_path(addr) if addr != () else ()
        return self._set(path, submap)

    def _set(self, path: Path, node: ChoiceMap, full: Path | None = None) -> ChoiceMap:
        full = path if full is None else full
        if not path:
            return ChoiceMap(node._value, node._children, self.batch_shape, node._mask)
        if self._value is not None:
            parent = full[: len(full) - len(path)]
            raise AddressError(
                f"cannot put a choice at {format_address(full)}: "
                f"{format_address(parent)} already holds a value"
            )
        children = dict(self._children)
        children[path[0]] = self.child(path[0])._set(path[1:], node, full)
        return ChoiceMap(None, children, self.batch_shape)

    def merge(self, other: ChoiceMap) -> ChoiceMap:
        """The union of two choice maps.

        Raises:
            AddressError: when both hold a value at the same address (Gen.jl's rule:
                merging is for disjoint maps; use ``set`` to overwrite).
        """
        return self._merge(other, ())

    def _merge(self, other: ChoiceMap, prefix: Path) -> ChoiceMap:
        if other.is_empty:
            return self
        if self.is_empty:
            return ChoiceMap(
                other._value, other._children, self.batch_shape or other.batch_shape, other._mask
            )
        if self._value is not None or other._value is not None:
            raise AddressError(
                f"merge: both choice maps have choices at {format_address(prefix)}; "
                "merge needs disjoint maps (use .set() to overwrite a value)"
            )
        children = dict(self._children)
        for c, sub in other._children.items():
            children[c] = self.child(c)._merge(sub, (*prefix, c)) if c in children else sub
        return ChoiceMap(None, children, self.batch_shape or other.batch_shape)

    def __or__(self, other: ChoiceMap) -> ChoiceMap:
        return self.merge(other)

    def with_batch_shape(self, batch_shape: tuple[int, ...]) -> ChoiceMap:
        """The same leaves, declared to carry a leading batch axis of ``batch_shape``.

        Raises:
            ValueError: a leaf does not start with ``batch_shape``.
        """
        batch_shape = tuple(batch_shape)
        if batch_shape and batch_shape != self.batch_shape:
            _check_batch_shape(self, batch_shape, "with_batch_shape")
        return ChoiceMap(self._value, self._children, batch_shape, self._mask)

    def map(self, fn: Callable[[mx.array], mx.array]) -> ChoiceMap:
        """Apply ``fn`` to every leaf value (masks are kept as they are)."""
        if self._value is not None:
            return ChoiceMap(fn(self._value), None, self.batch_shape, self._mask)
        return ChoiceMap(None, {c: s.map(fn) for c, s in self._children.items()}, self.batch_shape)

    # ------------------------------------------------------------------ masks
    @property
    def leaf_mask(self) -> mx.array | None:
        """The mask of this leaf node (``None``: present everywhere)."""
        return self._mask

    def get_mask(self, addr: Address) -> mx.array | None:
        """The mask of the leaf at ``addr`` (``None`` when it is unmasked)."""
        path = to_path(addr) if addr != () else ()
        node = self._node(path)
        if node is None or node._value is None:
            raise AddressError(f"no choice at address {format_address(addr)}")
        return node._mask

    @property
    def is_masked(self) -> bool:
        """True when any leaf carries a mask."""
        return any(m is not None for _, _, m in self.masked_leaves())

    def masked_leaves(self) -> Iterator[tuple[Path, mx.array, mx.array | None]]:
        """Iterate ``(path, value, mask)`` for every leaf (``mask`` is ``None`` when absent)."""
        yield from self._masked_leaves(())

    def _masked_leaves(self, prefix: Path) -> Iterator[tuple[Path, mx.array, mx.array | None]]:
        if self._value is not None:
            yield prefix, self._value, self._mask
            return
        for c, sub in self._children.items():
            yield from sub._masked_leaves((*prefix, c))

    def mask(self, flag: Any) -> ChoiceMap:
        """The same map with every leaf present only where ``flag`` is True.

        Masked choice maps describe choices that exist for some particles of a batch and
        not for others (the branches of a batched ``Switch``, a ``Mask`` that is off).
        ``generate`` and ``update`` treat a masked constraint as given where its mask is
        True and absent elsewhere; ``assess`` uses its value.

        Args:
            flag: a boolean (array) broadcastable to the map's batch shape; it is AND-ed
                with masks already there.

        Example:
            >>> import mlx.core as mx
            >>> from genmlx.core import choicemap
            >>> cm = choicemap({"x": mx.array([1.0, 2.0])}, batch_shape=(2,))
            >>> m = cm.mask(mx.array([True, False]))
            >>> m.get_mask("x").tolist(), m.particle(1).is_empty
            ([True, False], True)
        """
        f = _as_mask(flag)
        assert f is not None
        if self._value is not None:
            m = f if self._mask is None else mx.logical_and(self._mask, f)
            return ChoiceMap(self._value, None, self.batch_shape, m)
        return ChoiceMap(None, {c: s.mask(f) for c, s in self._children.items()}, self.batch_shape)

    def particle(self, i: int) -> ChoiceMap:
        """Particle ``i`` of a batched map, unbatched, without masks.

        Leaves whose mask is False for particle ``i`` are left out (this evaluates the
        masks, so call it outside ``mx.vmap``/``mx.compile``).

        Raises:
            ValueError: the map is not batched.
        """
        if not self.batch_shape:
            raise ValueError("particle(i) needs a batched choice map (batch_shape == (n,))")
        items = []
        for path, v, m in self.masked_leaves():
            if m is not None and not bool(m[i].item() if m.ndim else m.item()):
                continue
            items.append((path, ChoiceMap(v[i])))
        return ChoiceMap.from_nodes(items)

    def unmasked(self) -> ChoiceMap:
        """The map of an unbatched execution with masked-out leaves dropped.

        Evaluates the masks; leaves with a True (or no) mask are kept without one.

        Raises:
            ValueError: a mask is not a single boolean (the map is batched; use
                :meth:`particle`).
        """
        items = []
        for path, v, m in self.masked_leaves():
            if m is not None:
                if m.size != 1:
                    raise ValueError(
                        "unmasked() needs one boolean per leaf; for a batched map use particle(i)"
                    )
                if not bool(m.item()):
                    continue
            items.append((path, ChoiceMap(v)))
        return ChoiceMap.from_nodes(items, self.batch_shape)

    @staticmethod
    def where(index: Any, branches: Sequence[ChoiceMap]) -> ChoiceMap:
        """Combine the choice maps of alternative branches, chosen per particle by ``index``.

        The result has every address of every branch. At an address present in several
        branches the value is that of the branch ``index`` names (all branches holding
        it must agree on shape and dtype); its mask is True exactly where the chosen
        branch has the choice. This is the choice map of a batched ``Switch``.

        Args:
            index: an integer array (the branch of each particle) or an int.
            branches: the branches' choice maps, in branch order.
        """
        idx = index if isinstance(index, mx.array) else mx.array(index)
        values: dict[Path, tuple[mx.array, mx.array]] = {}
        batch_shape: tuple[int, ...] = ()
        for b, cm in enumerate(branches):
            batch_shape = batch_shape or cm.batch_shape
            on = idx == b
            for path, v, m in cm.masked_leaves():
                here = on if m is None else mx.logical_and(on, m)
                if path in values:
                    v0, m0 = values[path]
                    if v0.shape != v.shape or v0.dtype != v.dtype:
                        raise AddressError(
                            f"branches hold values of different shapes/dtypes at "
                            f"{format_address(path)} ({v0.shape} {v0.dtype} vs {v.shape} "
                            f"{v.dtype}); alternative branches must agree where they share "
                            "an address"
                        )
                    sel = (
                        here
                        if here.ndim == 0
                        else here.reshape(here.shape + (1,) * (v.ndim - here.ndim))
                    )
                    values[path] = (mx.where(sel, v, v0), mx.logical_or(m0, here))
                else:
                    values[path] = (v, here)
        return ChoiceMap.from_nodes(
            ((path, ChoiceMap(v, None, (), m)) for path, (v, m) in values.items()), batch_shape
        )

    def filter(self, selection: Selection) -> ChoiceMap:
        """The leaves whose address ``selection`` selects."""
        if selection.selects_root():
            return self
        if self._value is not None:
            # a value is selected when its own address is (complements of selections
            # that only name paths beneath it do select it)
            if selection.contains_path(()):
                return self
            return ChoiceMap(None, None, self.batch_shape)
        children = {}
        for c, sub in self._children.items():
            f = sub.filter(selection.child(c))
            if not f.is_empty:
                children[c] = f
        return ChoiceMap(None, children, self.batch_shape)

    def exclude(self, selection: Selection) -> ChoiceMap:
        """The leaves whose address ``selection`` does not select."""
        return self.filter(~selection)

    def to_dict(self) -> Any:
        """Nested ``dict`` of the map (the root value itself for a leaf map)."""
        if self._value is not None:
            return self._value
        return {c: s.to_dict() for c, s in self._children.items() if not s.is_empty}

    # ------------------------------------------------------------------ trees
    def _tree_flatten(self) -> tuple[list[Any], Any]:
        paths: list[tuple[Path, bool]] = []
        children: list[Any] = []
        for p, v, m in self.masked_leaves():
            paths.append((p, m is not None))
            children.append(v if m is None else (v, m))
        return children, (self.batch_shape, tuple(paths))

    @staticmethod
    def _tree_rebatch(aux: Any, batch_shape: tuple[int, ...]) -> Any:
        return (batch_shape, aux[1])

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> ChoiceMap:
        batch_shape, paths = aux
        return ChoiceMap.from_nodes(
            (
                (p, ChoiceMap(v[0], None, (), v[1]) if masked else ChoiceMap(v))
                for (p, masked), v in zip(paths, children)
            ),
            batch_shape,
        )

    def __repr__(self) -> str:
        """Addresses and values (numbers, small lists, or ``dtype[shape]`` for large and
        batched leaves); one line, or one line per address when there are many.

        Example:
            >>> choicemap({"a": 1.0, ("y", 0): mx.arange(3)})
            ChoiceMap({'a': 1.0, ('y', 0): [0, 1, 2]})
        """
        from genmlx.core._display import MAX_LINES, format_value

        nb = len(self.batch_shape)
        if self._value is not None:
            m = "" if self._mask is None else f", mask={format_value(self._mask)}"
            return f"ChoiceMap.leaf({format_value(self._value, nb)}{m})"
        items = [
            f"{format_address(p)}: {format_value(v, nb)}"
            + ("" if m is None else f" (mask {format_value(m)})")
            for p, v, m in self.masked_leaves()
        ]
        b = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        if len(items) <= 4 and sum(map(len, items)) <= 80:
            return f"ChoiceMap({{{', '.join(items)}}}{b})"
        shown = items[:MAX_LINES] + (
            [f"... and {len(items) - MAX_LINES} more"] if len(items) > MAX_LINES else []
        )
        return "ChoiceMap({\n" + "".join(f"  {i},\n" for i in shown) + f"}}{b})"


_ROOT = object()


def _from_trie(trie: dict[Component, Any], batch_shape: tuple[int, ...]) -> ChoiceMap:
    children: dict[Component, ChoiceMap] = {}
    for c, node in trie.items():
        children[c] = _from_trie(node, ()) if isinstance(node, dict) else node
    return ChoiceMap(None, children, batch_shape)


def _check_batch_shape(cm: ChoiceMap, batch_shape: tuple[int, ...], op: str) -> None:
    """Every leaf of ``cm`` must start with ``batch_shape`` (the particle axes)."""
    k = len(batch_shape)
    for path, v in cm.leaves():
        if tuple(v.shape[:k]) != batch_shape:
            raise ValueError(
                f"{op}: the value at address {format_address(path) if path else '<root>'} "
                f"has shape {tuple(v.shape)}, which does not start with batch_shape "
                f"{batch_shape}; with batch_shape=(n,) every leaf holds one value per "
                "particle along its first axis (leave batch_shape out for values shared by "
                "every particle)"
            )


def _as_mask(flag: Any) -> mx.array | None:
    if flag is None:
        return None
    m = flag if isinstance(flag, mx.array) else mx.array(flag)
    return m if m.dtype == mx.bool_ else m.astype(mx.bool_)


_EMPTY = ChoiceMap()


def choicemap(
    mapping: Mapping[Any, Any] | ChoiceMap | None = None,
    /,
    batch_shape: tuple[int, ...] = (),
    **named: Any,
) -> ChoiceMap:
    """Build a :class:`ChoiceMap`.

    Args:
        mapping: keys are addresses (str, int or tuple paths); values are numbers or
            arrays (leaves), nested dicts or ChoiceMaps (sub-maps).
        batch_shape: declare that every leaf carries this leading batch shape (for
            per-particle constraints on batched traces).
        **named: more string-addressed entries.

    Returns:
        The choice map.

    Example:
        >>> from genmlx.core import choicemap
        >>> cm = choicemap({"x": 1.0, "sub": {"y": 2.0}}, z=3.0)
        >>> sorted(map(str, cm.addresses()))
        ["('sub', 'y')", 'x', 'z']
    """
    out = ChoiceMap(None, None, batch_shape)
    items: list[tuple[Any, Any]] = []
    if isinstance(mapping, ChoiceMap):
        return mapping.with_batch_shape(batch_shape) if batch_shape else mapping
    if mapping is not None:
        items.extend(mapping.items())
    items.extend(named.items())
    batch_shape = tuple(batch_shape)
    if not any(isinstance(v, (ChoiceMap, Mapping)) for _, v in items):
        # only leaves: build the trie in one pass (linear in the number of addresses)
        try:
            out = ChoiceMap.from_nodes(
                ((to_path(a), ChoiceMap(as_array(v))) for a, v in items), batch_shape
            )
        except AddressError as e:
            raise type(e)(f"choicemap: {e}") from e
        if batch_shape:
            _check_batch_shape(out, batch_shape, "choicemap")
        return out
    for addr, v in items:
        path = to_path(addr)
        node: ChoiceMap
        if isinstance(v, ChoiceMap):
            node = v
        elif isinstance(v, Mapping):
            node = choicemap(v)
        else:
            node = ChoiceMap(as_array(v))
        existing = out._node(path)
        if existing is not None and not existing.is_empty:
            raise AddressError(f"choicemap: address {format_address(addr)} given twice")
        out = out._set(path, node)
    if batch_shape:
        _check_batch_shape(out, batch_shape, "choicemap")
    return out
