"""Selections: sets of addresses, used by ``regenerate``, ``project`` and gradients.

Selecting an address selects everything beneath it: ``select("y")`` selects
``("y", 0)``, ``("y", 1)``, ... Selections compose with ``~s`` (complement), ``s | t``
(union) and ``s & t`` (intersection).

Example:
    >>> from genmlx.core import select, Selection
    >>> s = select("a", ("y", 0))
    >>> ("y", 0) in s, ("y", 1) in s, "a" in s
    (True, False, True)
    >>> ("y", 1) in ~s, "b" in (s | select("b"))
    (True, True)
    >>> "q" in Selection.all(), "q" in Selection.none()
    (True, False)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Union

from genmlx.core.address import Address, Component, Path, format_address, to_path

__all__ = ["Selection", "select"]

_Trie = dict[Component, Union["_Trie", bool]]


class Selection(ABC):
    """A set of addresses (closed under taking descendants)."""

    @abstractmethod
    def selects_root(self) -> bool:
        """True when the whole subtree this selection is applied to is selected."""

    @abstractmethod
    def child(self, component: Component) -> Selection:
        """The selection restricted to the subtree under ``component``."""

    def explicit_paths(self) -> list[Path]:
        """Addresses named explicitly (checked against traces to catch typos)."""
        return []

    def contains_path(self, path: Path) -> bool:
        """True when ``path`` (or an ancestor of it) is selected."""
        sel: Selection = self
        for c in path:
            if sel.selects_root():
                return True
            sel = sel.child(c)
        return sel.selects_root()

    def __contains__(self, addr: object) -> bool:
        return self.contains_path(to_path(addr))  # type: ignore[arg-type]

    def __invert__(self) -> Selection:
        return _Complement(self)

    def __or__(self, other: Selection) -> Selection:
        return _Union(self, other)

    def __and__(self, other: Selection) -> Selection:
        return _Intersection(self, other)

    @staticmethod
    def all() -> Selection:
        """Select every address."""
        return _ALL

    @staticmethod
    def none() -> Selection:
        """Select nothing."""
        return _NONE

    def is_none(self) -> bool:
        """True only for selections known to be empty without looking at a trace."""
        return False

    def _static_key(self) -> object:
        """A hashable value equal for selections of the same structure (compile caches
        key on it, so a selection rebuilt every call does not recompile)."""
        return ("id", id(self))


class _All(Selection):
    def selects_root(self) -> bool:
        return True

    def child(self, component: Component) -> Selection:
        return self

    def _static_key(self) -> object:
        return ("all",)

    def __repr__(self) -> str:
        return "Selection.all()"

    def __reduce__(self) -> str:
        return "_ALL"


class _None(Selection):
    def selects_root(self) -> bool:
        return False

    def child(self, component: Component) -> Selection:
        return self

    def is_none(self) -> bool:
        return True

    def _static_key(self) -> object:
        return ("none",)

    def __repr__(self) -> str:
        return "Selection.none()"

    def __reduce__(self) -> str:
        return "_NONE"


_ALL = _All()
_NONE = _None()


class _Addresses(Selection):
    __slots__ = ("_trie",)

    def __init__(self, trie: _Trie) -> None:
        self._trie = trie

    def selects_root(self) -> bool:
        return False

    def child(self, component: Component) -> Selection:
        sub = self._trie.get(component)
        if sub is None:
            return _NONE
        if sub is True:
            return _ALL
        assert isinstance(sub, dict)
        return _Addresses(sub)

    def is_none(self) -> bool:
        return not self._trie

    def explicit_paths(self) -> list[Path]:
        out: list[Path] = []

        def walk(t: _Trie, prefix: Path) -> None:
            for c, sub in t.items():
                if sub is True:
                    out.append((*prefix, c))
                elif isinstance(sub, dict):
                    walk(sub, (*prefix, c))

        walk(self._trie, ())
        return out

    def _static_key(self) -> object:
        def freeze(t: _Trie) -> object:
            return tuple(sorted(((repr(c), c, freeze(v) if isinstance(v, dict) else v)
                                 for c, v in t.items()), key=lambda x: x[0]))

        return ("addresses", freeze(self._trie))

    def __repr__(self) -> str:
        return "select(" + ", ".join(format_address(p) for p in self.explicit_paths()) + ")"


class _Complement(Selection):
    def __init__(self, inner: Selection) -> None:
        self.inner = inner

    def selects_root(self) -> bool:
        # The complement selects the whole subtree only when the inner selects nothing
        # in it, which is known for the empty selection.
        return self.inner.is_none()

    def child(self, component: Component) -> Selection:
        return _Complement(self.inner.child(component))

    def contains_path(self, path: Path) -> bool:
        return not self.inner.contains_path(path)

    def explicit_paths(self) -> list[Path]:
        return self.inner.explicit_paths()

    def __invert__(self) -> Selection:
        return self.inner

    def _static_key(self) -> object:
        return ("not", self.inner._static_key())

    def __repr__(self) -> str:
        return f"~{self.inner!r}"


class _Union(Selection):
    def __init__(self, a: Selection, b: Selection) -> None:
        self.a, self.b = a, b

    def selects_root(self) -> bool:
        return self.a.selects_root() or self.b.selects_root()

    def child(self, component: Component) -> Selection:
        return _Union(self.a.child(component), self.b.child(component))

    def contains_path(self, path: Path) -> bool:
        return self.a.contains_path(path) or self.b.contains_path(path)

    def is_none(self) -> bool:
        return self.a.is_none() and self.b.is_none()

    def explicit_paths(self) -> list[Path]:
        return self.a.explicit_paths() + self.b.explicit_paths()

    def _static_key(self) -> object:
        return ("or", self.a._static_key(), self.b._static_key())

    def __repr__(self) -> str:
        return f"({self.a!r} | {self.b!r})"


class _Intersection(Selection):
    def __init__(self, a: Selection, b: Selection) -> None:
        self.a, self.b = a, b

    def selects_root(self) -> bool:
        return self.a.selects_root() and self.b.selects_root()

    def child(self, component: Component) -> Selection:
        return _Intersection(self.a.child(component), self.b.child(component))

    def contains_path(self, path: Path) -> bool:
        return self.a.contains_path(path) and self.b.contains_path(path)

    def is_none(self) -> bool:
        return self.a.is_none() or self.b.is_none()

    def explicit_paths(self) -> list[Path]:
        return self.a.explicit_paths() + self.b.explicit_paths()

    def _static_key(self) -> object:
        return ("and", self.a._static_key(), self.b._static_key())

    def __repr__(self) -> str:
        return f"({self.a!r} & {self.b!r})"


def select(*addrs: Address) -> Selection:
    """The selection of the given addresses (and everything beneath each).

    Example:
        >>> from genmlx.core import select
        >>> ("y", 2) in select("y")
        True
    """
    trie: _Trie = {}
    for addr in addrs:
        path = to_path(addr)
        if not path:
            return Selection.all()
        node = trie
        for c in path[:-1]:
            nxt = node.get(c)
            if nxt is True:
                break
            if nxt is None or nxt is False:
                nxt = {}
                node[c] = nxt
            assert isinstance(nxt, dict)
            node = nxt
        else:
            node[path[-1]] = True
    return _Addresses(trie)
