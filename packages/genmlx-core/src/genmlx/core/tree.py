"""Flattening GenMLX objects into lists of MLX arrays and back.

``mx.vmap`` and ``mx.compile`` only see MLX arrays (and lists, tuples and dicts of
them). Traces, choice maps and GFI results are richer objects, so batching and
compilation move them across a transformation boundary as a flat list of array
*leaves* plus a static :class:`TreeDef` describing how to rebuild them.

Containers understood here: ``list``, ``tuple``, ``NamedTuple``, ``dict``, and any class
that defines ``_tree_flatten(self) -> (children, aux)`` and
``_tree_unflatten(cls, aux, children)``. Every MLX array is a leaf; every other
object (numbers, strings, functions, generative functions) is *static* and is kept
inside the ``TreeDef`` unchanged.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core.tree import flatten, unflatten
    >>> leaves, td = flatten({"a": mx.array(1.0), "b": (mx.array(2.0), "tag")})
    >>> len(leaves)
    2
    >>> unflatten(td, leaves)["b"][1]
    'tag'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from typing import Any

import mlx.core as mx

from genmlx.core.config import lazy_particles_enabled

__all__ = [
    "Opaque",
    "TreeDef",
    "evaluate",
    "flatten",
    "freezing",
    "node_children",
    "node_rebuild",
    "opaque_nodes",
    "replace_opaque",
    "thawing",
    "tree_map",
    "unflatten",
]

_LEAF = "leaf"
_STATIC = "static"
_LIST = "list"
_TUPLE = "tuple"
_NAMEDTUPLE = "namedtuple"
_DICT = "dict"
_CUSTOM = "custom"
_OPAQUE = "opaque"

# "freeze": particle-level batched work (opaque parts may be created); "thaw": every
# part materialised; "": the default (existing opaque parts of the running batched
# operation stay opaque, others are materialised)
_MODE: ContextVar[str] = ContextVar("genmlx_tree_mode", default="")


class Opaque(ABC):
    """Particle-batched data that :func:`flatten` keeps whole, as one static node.

    A batched trace can hold part of itself as an ``Opaque`` object (for instance the
    untouched prefix of a long sequence trace) so that batched operations do not pass
    its arrays through ``mx.vmap`` one by one: ``flatten`` records the object itself
    in the :class:`TreeDef` (compared by identity) and yields no leaves for it.
    Inside :func:`~genmlx.core.batching.vmap_call` the object reads its values for the
    current particle through :func:`~genmlx.core.batching.particle_index`; particle
    gathers (:func:`~genmlx.core.batching.take_particles`) call :meth:`_opaque_take`.

    Which objects become opaque is decided by their owners' ``_tree_flatten``, which
    may consult :func:`freezing`: only flattens done for particle-level batched work
    (``vmap_call``'s batched inputs, particle gathers and selections) ask for it.
    """

    __slots__ = ()

    @property
    @abstractmethod
    def _opaque_key(self) -> object:
        """The identity under which :func:`~genmlx.core.batching.vmap_call` registers
        the particle index for this object (shared by views of the same data)."""

    @abstractmethod
    def _opaque_take(self, idx: mx.array) -> Opaque:
        """The object with its particles gathered at ``idx`` (axis 0)."""

    @abstractmethod
    def _opaque_arrays(self) -> list[mx.array]:
        """Arrays :func:`evaluate` should compute (those the latest operation added)."""


def freezing() -> bool:
    """Whether the flatten in progress may keep particle-batched data opaque."""
    return _MODE.get() == "freeze"


def thawing() -> bool:
    """Whether the flatten in progress must materialise every opaque part."""
    return _MODE.get() == "thaw"


class _Static:
    """A non-array value carried in a TreeDef; compared by value when it is plain data."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def _key(self) -> Any:
        v = self.value
        if v is None or isinstance(v, (bool, int, float, str, bytes)):
            return (type(v), v)
        if isinstance(v, TreeDef):  # a nested structure kept in aux (combinator traces)
            return ("treedef", v)
        sk = getattr(v, "_static_key", None)
        if sk is not None and not isinstance(v, type):  # e.g. selections, by structure
            return ("static", type(v), sk())
        return ("id", id(v))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class TreeDef:
    """The static structure of a flattened object.

    Two TreeDefs compare equal when they rebuild the same kind of object from the same
    number of leaves with equal static data (plain Python data by value, other objects
    by identity), which is what the compile cache needs.
    """

    __slots__ = ("_hash", "aux", "children", "kind", "num_leaves")

    def __init__(self, kind: str, aux: Any, children: tuple[TreeDef, ...]) -> None:
        self.kind = kind
        self.aux = aux
        self.children = children
        self.num_leaves: int = 1 if kind == _LEAF else sum(c.num_leaves for c in children)
        self._hash: int | None = None

    def _aux_key(self) -> Any:
        if self.kind in (_NAMEDTUPLE, _CUSTOM):
            cls, extra = self.aux
            return (cls, _Static(extra) if not isinstance(extra, tuple) else _freeze(extra))
        if self.kind == _DICT:
            return tuple(self.aux)
        if self.kind in (_STATIC, _OPAQUE):
            return self.aux
        return None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TreeDef)
            and self.kind == other.kind
            and self._aux_key() == other._aux_key()
            and self.children == other.children
        )

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.kind, self._aux_key(), self.children))
        return self._hash

    def __repr__(self) -> str:
        return f"TreeDef({self.kind}, leaves={self.num_leaves})"

    def __reduce__(self) -> Any:
        return (TreeDef, (self.kind, self.aux, self.children))


def _freeze(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_freeze(x) if isinstance(x, tuple) else _Static(x) for x in t)


_LEAF_DEF = TreeDef(_LEAF, None, ())


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def flatten(
    obj: Any, *, freeze: bool = False, thaw: bool = False
) -> tuple[list[mx.array], TreeDef]:
    """Split ``obj`` into its MLX array leaves and a :class:`TreeDef`.

    With ``freeze=True`` (particle-level batched work only) objects may keep large
    particle-batched parts as :class:`Opaque` nodes. By default only the opaque parts
    that the running batched operation registered stay opaque (so that it can pass
    them through); ``thaw=True`` materialises every part into leaves.
    """
    leaves: list[mx.array] = []
    if freeze and not lazy_particles_enabled():
        freeze = False
    token = _MODE.set("freeze" if freeze else "thaw" if thaw else "")
    try:
        td = _flatten(obj, leaves)
    finally:
        _MODE.reset(token)
    return leaves, td


def node_children(obj: Any) -> tuple[list[Any], Any]:
    """One level of a registered tree node (a trace, a choice map, a state): its
    children and its static auxiliary data, as its ``_tree_flatten`` gives them.

    :func:`node_rebuild` is the inverse. For code that rebuilds a node from new children
    (e.g. a compiled step that returns a trace's arrays) without flattening every level.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import ChoiceMap
        >>> cm = ChoiceMap(mx.array(1.0))
        >>> kids, aux = node_children(cm)
        >>> node_rebuild(ChoiceMap, aux, kids)[()].item()
        1.0
    """
    flat = getattr(obj, "_tree_flatten", None)
    if flat is None or isinstance(obj, type):
        raise TypeError(f"node_children: {type(obj).__name__} is not a registered tree node")
    children, aux = flat()
    return list(children), aux


def node_rebuild(cls: type, aux: Any, children: list[Any]) -> Any:
    """The node of class ``cls`` with auxiliary data ``aux`` and these ``children``
    (the inverse of :func:`node_children`)."""
    rebuild = getattr(cls, "_tree_unflatten", None)
    if rebuild is None:
        raise TypeError(f"node_rebuild: {cls.__name__} is not a registered tree node")
    return rebuild(aux, children)


_NO_MEMO = object()


def _flatten(obj: Any, leaves: list[mx.array]) -> TreeDef:
    if isinstance(obj, mx.array):
        leaves.append(obj)
        return _LEAF_DEF
    if isinstance(obj, Opaque):
        return TreeDef(_OPAQUE, _Static(obj), ())
    flat = getattr(obj, "_tree_flatten", None)
    if flat is not None and not isinstance(obj, type):
        memo: Any = getattr(obj, "_tree_memo", _NO_MEMO)
        if memo is not _NO_MEMO and memo is not None:
            leaves.extend(memo[0])
            cached: TreeDef = memo[1]
            return cached
        children, aux = flat()
        if memo is None:
            # an immutable node whose children are never opaque: its leaves and
            # TreeDef are the same every time (one TreeDef object: cached hash, and
            # equality by identity in the compile caches)
            mine: list[mx.array] = []
            td = TreeDef(_CUSTOM, (type(obj), aux), tuple(_flatten(c, mine) for c in children))
            obj._tree_memo_set((mine, td))
            leaves.extend(mine)
            return td
        return TreeDef(_CUSTOM, (type(obj), aux), tuple(_flatten(c, leaves) for c in children))
    if _is_namedtuple(obj):
        return TreeDef(_NAMEDTUPLE, (type(obj), ()), tuple(_flatten(c, leaves) for c in obj))
    if isinstance(obj, tuple):
        return TreeDef(_TUPLE, None, tuple(_flatten(c, leaves) for c in obj))
    if isinstance(obj, list):
        return TreeDef(_LIST, None, tuple(_flatten(c, leaves) for c in obj))
    if isinstance(obj, dict):
        keys = list(obj.keys())
        return TreeDef(_DICT, keys, tuple(_flatten(obj[k], leaves) for k in keys))
    return TreeDef(_STATIC, _Static(obj), ())


def unflatten(td: TreeDef, leaves: list[mx.array]) -> Any:
    """Rebuild the object described by ``td`` from ``leaves`` (in flatten order)."""
    if len(leaves) != td.num_leaves:
        raise ValueError(f"unflatten: expected {td.num_leaves} leaves, got {len(leaves)}")
    it = iter(leaves)
    return _unflatten(td, it)


def _unflatten(td: TreeDef, it: Any) -> Any:
    k = td.kind
    if k == _LEAF:
        return next(it)
    if k in (_STATIC, _OPAQUE):
        return td.aux.value
    children = [_unflatten(c, it) for c in td.children]
    if k == _LIST:
        return children
    if k == _TUPLE:
        return tuple(children)
    if k == _NAMEDTUPLE:
        return td.aux[0](*children)
    if k == _DICT:
        return dict(zip(td.aux, children))
    cls, aux = td.aux
    return cls._tree_unflatten(aux, children)


def tree_map(fn: Any, obj: Any) -> Any:
    """Apply ``fn`` to every array leaf of ``obj`` and rebuild it."""
    leaves, td = flatten(obj)
    return unflatten(td, [fn(x) for x in leaves])


def evaluate(*objs: Any) -> None:
    """``mx.eval`` every array inside traces, choice maps and results.

    ``mx.eval(trace)`` does not look inside a :class:`~genmlx.core.Trace` (MLX only
    walks lists, tuples and dicts), so timing code must evaluate through this.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import evaluate, choicemap
        >>> evaluate(choicemap({"x": mx.array(1.0) + 1.0}))
    """
    leaves, td = flatten(objs, freeze=True)
    for node in opaque_nodes(td):
        leaves.extend(node._opaque_arrays())
    mx.eval(leaves)


def opaque_nodes(td: TreeDef) -> list[Opaque]:
    """The :class:`Opaque` objects recorded in ``td``, in flatten order."""
    out: list[Opaque] = []

    def walk(t: TreeDef) -> None:
        if t.kind == _OPAQUE:
            out.append(t.aux.value)
        for c in t.children:
            walk(c)

    walk(td)
    return out


def replace_opaque(td: TreeDef, fn: Any) -> TreeDef:
    """``td`` with every :class:`Opaque` node ``o`` replaced by ``fn(o)``."""
    if td.kind == _OPAQUE:
        return TreeDef(_OPAQUE, _Static(fn(td.aux.value)), ())
    if not td.children:
        return td
    return TreeDef(td.kind, td.aux, tuple(replace_opaque(c, fn) for c in td.children))
