"""Trainable parameters: ``param(name, init)`` and the functional :class:`ParamStore`.

Inside a ``@gen`` body, ``param("theta", init)`` returns the value of parameter
``theta`` from the store bound with :func:`use_params` (or ``store.bind()``), and
``init`` when no store holds it. A store is immutable: ``store.set(...)`` and
``store.update(...)`` return new stores, so optimisers can treat it as a plain
dictionary of arrays (``store.values`` works with ``mlx.optimizers``).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, param, ParamStore, use_params
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model():
    ...     mu = param("mu", 0.0)
    ...     return normal(mu, 1.0) @ "x"
    >>> store = ParamStore({"mu": mx.array(3.0)})
    >>> with use_params(store):
    ...     tr = model.simulate((), key=mx.random.key(0))
    >>> store = ParamStore.initialize(model, ())   # every param at its init
    >>> float(store["mu"])
    0.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from genmlx.core.choicemap import as_array

if TYPE_CHECKING:
    from genmlx.core.gfi import GenerativeFunction

__all__ = ["ParamStore", "param", "use_params"]


class ParamStore(Mapping[str, mx.array]):
    """An immutable map from parameter names to MLX arrays."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, mx.array] = {str(k): as_array(v) for k, v in (values or {}).items()}

    def __getitem__(self, name: str) -> mx.array:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(
                f"no parameter {name!r} in the store (it has {sorted(self._values)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def values_dict(self) -> dict[str, mx.array]:
        """A fresh ``dict`` of the parameters (for ``mlx.optimizers``)."""
        return dict(self._values)

    def set(self, name: str, value: Any) -> ParamStore:
        """A new store with ``name`` set to ``value``."""
        return ParamStore({**self._values, name: value})

    def update(self, values: Mapping[str, Any]) -> ParamStore:
        """A new store with the given parameters replaced or added."""
        return ParamStore({**self._values, **values})

    @contextlib.contextmanager
    def bind(self) -> Iterator[ParamStore]:
        """Make this store the one ``param(...)`` reads inside the block."""
        with use_params(self):
            yield self

    @staticmethod
    def initialize(gen_fn: GenerativeFunction, args: tuple[Any, ...], key: Any = 0) -> ParamStore:
        """Run ``gen_fn`` once and collect every parameter it reads, at its init value."""
        rec: dict[str, mx.array] = {}
        token = _RECORD.set(rec)
        store_token = _STORE.set(None)  # record inits, whatever store the caller bound
        try:
            gen_fn.simulate(args, key=key)
        finally:
            _STORE.reset(store_token)
            _RECORD.reset(token)
        return ParamStore(rec)

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        names = tuple(self._values)
        return [self._values[k] for k in names], names

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> ParamStore:
        return cls(dict(zip(aux, children)))

    def __repr__(self) -> str:
        return f"ParamStore({sorted(self._values)})"


_STORE: ContextVar[ParamStore | None] = ContextVar("genmlx_param_store", default=None)
_RECORD: ContextVar[dict[str, mx.array] | None] = ContextVar("genmlx_param_record", default=None)
# Called on every ``param`` read while a model is being analysed (genmlx.core.graph).
_OBSERVER: ContextVar[Any] = ContextVar("genmlx_param_observer", default=None)


@contextlib.contextmanager
def use_params(store: ParamStore | Mapping[str, Any]) -> Iterator[ParamStore]:
    """Bind ``store`` for ``param(...)`` inside the block (restored on exit)."""
    s = store if isinstance(store, ParamStore) else ParamStore(store)
    token = _STORE.set(s)
    try:
        yield s
    finally:
        _STORE.reset(token)


def param(name: str, init: Any) -> mx.array:
    """The trainable parameter ``name``: the bound store's value, or ``init``."""
    observer = _OBSERVER.get()
    if observer is not None:
        observer()
    store = _STORE.get()
    if store is not None and name in store:
        return store[name]
    value = as_array(init)
    rec = _RECORD.get()
    if rec is not None:
        rec.setdefault(name, value)
    return value
