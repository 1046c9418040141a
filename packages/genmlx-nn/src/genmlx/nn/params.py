"""Module parameters as GenMLX trainable parameters.

A network wrapped by :class:`~genmlx.nn.NeuralNetGF` (or
:class:`~genmlx.nn.LanguageModelGF`) reads each trainable parameter of its
``mlx.nn.Module`` through core's :func:`~genmlx.core.param`, under the name
``f"{name}/{path}"``, where ``name`` is the wrapper's name and ``path`` is MLX's dotted
parameter path (``tree_flatten(module.trainable_parameters())``, e.g.
``"encoder/layers.0.weight"``). When a :class:`~genmlx.core.ParamStore` that holds the
name is bound (:func:`~genmlx.core.use_params`, ``param_gradients``, a training step),
its value is used; otherwise the module's own array is. So a store's values are what
``mx.grad`` differentiates, and a model that mixes networks and random choices trains
end to end with :func:`~genmlx.core.param_gradients` or ``mx.value_and_grad``.

**How the values reach the module.** For the duration of one call the wrapper swaps the
store's arrays into the module with ``module.update(tree_unflatten(...))`` and puts the
module's own arrays back afterwards, also when the call raises (the same swap that
``mlx.nn.value_and_grad`` does). The module object is therefore unchanged between calls:
training changes the *store*, and :func:`load_params` writes a trained store back into
the modules. Frozen parameters (``module.freeze()``, e.g. quantised weights) are not
read from stores: they keep the module's values. The swap mutates the module while it
runs, so one module must not be called from two threads at once.

Example:
    >>> import mlx.core as mx
    >>> import mlx.nn as nn
    >>> from genmlx.nn import NeuralNetGF, param_store, load_params
    >>> net = NeuralNetGF(nn.Linear(2, 1), name="lin")
    >>> store = param_store(net)
    >>> sorted(store)
    ['lin/bias', 'lin/weight']
    >>> store = store.set("lin/bias", mx.array([5.0]))
    >>> load_params(store, net)
    >>> net.module.bias.tolist()
    [5.0]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from genmlx.core import ParamStore, param

__all__ = [
    "HasModule",
    "bound_module",
    "load_params",
    "module_param_names",
    "param_store",
]


class HasModule(Protocol):
    """A wrapper of an ``mlx.nn.Module`` whose parameters are named ``f"{name}/{path}"``."""

    @property
    def module(self) -> nn.Module: ...

    @property
    def name(self) -> str: ...


def _flat(module: nn.Module) -> list[tuple[str, mx.array]]:
    """``(dotted path, array)`` of every trainable parameter, in MLX's order."""
    flat = cast(list[tuple[str, Any]], tree_flatten(module.trainable_parameters()))
    return [(path, v) for path, v in flat if isinstance(v, mx.array)]


def module_param_names(name: str, module: nn.Module) -> list[str]:
    """The store names ``f"{name}/{path}"`` of ``module``'s trainable parameters."""
    return [f"{name}/{path}" for path, _ in _flat(module)]


def check_name(name: Any, who: str) -> str:
    """Validate a wrapper's name (the namespace of its parameters)."""
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"{who}: name must be a non-empty string (it prefixes the parameter names "
            f"in the ParamStore, e.g. 'encoder/layers.0.weight'); got {name!r}"
        )
    return name


@contextlib.contextmanager
def bound_module(module: nn.Module, name: str) -> Iterator[nn.Module]:
    """Inside the block, ``module`` holds the bound store's values of its parameters.

    Each trainable parameter is read with ``param(f"{name}/{path}", own_value)``; when
    no store provides any of them the module is used as it is. The module's own arrays
    are restored on exit, also when the block raises.

    Raises:
        ValueError: a store value's shape differs from the parameter's (two networks
            with the same name, or a store made for another architecture).
    """
    flat = _flat(module)
    values: list[tuple[str, mx.array]] = []
    swapped = False
    for path, own in flat:
        full = f"{name}/{path}"
        v = param(full, own)
        if v is not own:
            if tuple(v.shape) != tuple(own.shape):
                raise ValueError(
                    f"parameter {full!r}: the bound ParamStore holds shape {tuple(v.shape)} "
                    f"but the module's parameter has shape {tuple(own.shape)}; two networks "
                    "may share the name "
                    f"{name!r} (give each NeuralNetGF its own name=) or the store was made "
                    "for another architecture"
                )
            swapped = True
        values.append((path, v))
    if not swapped:
        yield module
        return
    module.update(tree_unflatten(values))
    try:
        yield module
    finally:
        module.update(tree_unflatten(flat))


def param_store(*nets: HasModule) -> ParamStore:
    """A :class:`~genmlx.core.ParamStore` holding the networks' current parameters.

    The names are ``f"{net.name}/{path}"``; merge it with other parameters of a model
    with ``store.update(other)``. (``ParamStore.initialize(model, args)`` collects the
    same names, at the same initial values, by running the model once.)

    Raises:
        ValueError: two networks give the same parameter name.

    Example:
        >>> import mlx.nn as nn
        >>> from genmlx.nn import NeuralNetGF, param_store
        >>> enc = NeuralNetGF(nn.Linear(3, 2), name="enc")
        >>> dec = NeuralNetGF(nn.Sequential(nn.Linear(2, 4), nn.ReLU()), name="dec")
        >>> sorted(param_store(enc, dec))
        ['dec/layers.0.bias', 'dec/layers.0.weight', 'enc/bias', 'enc/weight']
    """
    values: dict[str, mx.array] = {}
    for net in nets:
        for path, v in _flat(net.module):
            full = f"{net.name}/{path}"
            if full in values:
                raise ValueError(
                    f"param_store: parameter {full!r} is given by two networks; give each "
                    "network its own name="
                )
            values[full] = v
    return ParamStore(values)


def load_params(store: Mapping[str, Any], *nets: HasModule) -> None:
    """Write the store's values of the networks' parameters into their modules.

    Use it after training so that the modules themselves (``net.module(x)``, saving
    with ``module.save_weights``) hold the trained values. Parameters the store lacks
    are left as they are.

    Example:
        >>> import mlx.core as mx
        >>> import mlx.nn as nn
        >>> from genmlx.core import ParamStore
        >>> from genmlx.nn import NeuralNetGF, load_params
        >>> net = NeuralNetGF(nn.Linear(1, 1), name="f")
        >>> load_params(ParamStore({"f/weight": mx.array([[2.0]])}), net)
        >>> net.module.weight.tolist()
        [[2.0]]
    """
    for net in nets:
        items = [
            (path, store[f"{net.name}/{path}"])
            for path, _ in _flat(net.module)
            if f"{net.name}/{path}" in store
        ]
        if items:
            net.module.update(tree_unflatten(items))
