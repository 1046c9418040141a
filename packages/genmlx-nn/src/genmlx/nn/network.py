"""``NeuralNetGF``: an ``mlx.nn.Module`` as a deterministic generative function.

A network makes no random choices: its trace holds the arguments and the output, its
score is 0 and its choice map is empty. It implements the whole GFI through
:class:`~genmlx.core.DeterministicGF` (``generate``/``assess`` reject constraints,
``update`` with new arguments re-runs the network, ``regenerate``/``project`` weigh 0),
so it can be traced at an address inside a ``@gen`` body (``net(x) @ "net"``), used by
combinators, batched and compiled like any generative function.

Its parameters are GenMLX parameters: each trainable parameter of the module is read
with :func:`~genmlx.core.param` under ``f"{name}/{path}"`` (see
:mod:`genmlx.nn.params`), so :func:`~genmlx.core.param_gradients` and
``mx.value_and_grad`` over a :class:`~genmlx.core.ParamStore` differentiate through it.

Batching: model code is written for one particle and ``vsimulate``/``vgenerate`` run it
under ``mx.vmap``, so the module sees one particle's input (e.g. ``x`` of shape
``[d]``) and MLX batches its layers. The usual layers (``Linear``, activations,
``Embedding``, ``Conv*``, ``RNN``/``GRU``/``LSTM``, attention) work under ``mx.vmap``.
The module must be deterministic: a module in training mode with ``Dropout`` draws
from MLX's global generator, outside GenMLX's keys; call ``module.eval()``.

Compilation: a compiled function (:func:`genmlx.core.compile`, ``mx.compile``) freezes
the arrays it captures at its first call, module weights included. To compile code
whose parameters change (training), pass the values in as an argument and bind them
inside with ``use_params(ParamStore(values))``, as :func:`genmlx.nn.make_elbo_step`
does.
"""

from __future__ import annotations

from typing import Any

import mlx.nn as nn

from genmlx.core import DeterministicGF
from genmlx.nn.params import bound_module, check_name, module_param_names

__all__ = ["NeuralNetGF"]


class NeuralNetGF(DeterministicGF):
    """Any ``mlx.nn.Module`` as a deterministic generative function.

    ``net(*args) @ addr`` inside a ``@gen`` body returns ``module(*args)`` evaluated
    with the bound :class:`~genmlx.core.ParamStore`'s values of the module's trainable
    parameters (names ``f"{name}/{path}"``, e.g. ``"decoder/layers.0.weight"``), or the
    module's own values where the store has none. It contributes no choices and log
    density 0: ``log p(∅; args) = 0`` and every weight is 0.

    Args:
        module: the network.
        name: the namespace of its parameters in a store (default: the module's class
            name). Two networks in one model need different names; networks given the
            same name share (tie) their parameters.

    Raises:
        TypeError: ``module`` is not an ``mlx.nn.Module``.

    Example:
        >>> import mlx.core as mx
        >>> import mlx.nn as nn
        >>> from genmlx.core import gen, param_gradients
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.nn import NeuralNetGF, param_store
        >>> net = NeuralNetGF(nn.Linear(1, 1), name="f")
        >>> @gen
        ... def regression(x):
        ...     mean = net(x) @ "f"
        ...     return normal(mean[0], 1.0) @ "y"
        >>> store = param_store(net)
        >>> tr, _ = regression.generate((mx.array([2.0]),), {"y": 1.0}, key=mx.random.key(0))
        >>> sorted(param_gradients(tr, store))
        ['f/bias', 'f/weight']
        >>> tr.get_choices().addresses()
        ['y']
    """

    def __init__(self, module: nn.Module, name: str | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"NeuralNetGF: module must be an mlx.nn.Module, got {type(module).__name__}"
            )
        self.module = module
        self.name = check_name(type(module).__name__ if name is None else name, "NeuralNetGF")

    def apply(self, *args: Any) -> Any:
        """``module(*args)`` with the bound store's parameter values (see the class)."""
        with bound_module(self.module, self.name) as m:
            return m(*args)

    def param_names(self) -> list[str]:
        """The store names of the module's trainable parameters."""
        return module_param_names(self.name, self.module)

    def __repr__(self) -> str:
        return f"<NeuralNetGF {self.name}: {type(self.module).__name__}>"
