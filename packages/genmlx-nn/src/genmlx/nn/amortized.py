"""Amortized inference: train an encoder ``q(z | x)`` and a model ``p(x, z)`` together.

A *model* ``p(z, x; θ)`` (a generative function, e.g. ``z ~ N(0, I)``, ``x ~
Bernoulli(decoder(z))``) and an *encoder* ``q(z; x, φ)`` (a generative function of one
datum ``x`` whose choices are the model's latent addresses, e.g. ``z ~ N(μ_φ(x),
σ_φ(x))``) are trained by maximising the evidence lower bound averaged over data:

.. math::

    \\mathrm{ELBO}(x) = \\mathbb{E}_{z \\sim q(\\cdot; x)}
        \\left[\\log p(z, x) - \\log q(z; x)\\right] \\le \\log p(x).

The estimate draws ``z`` by ``encoder.simulate((x,))`` — with reparameterised samplers
(``normal``, ...) ``z`` is a differentiable function of ``φ`` — and scores it with
``model.generate(args, z ∪ observe(x))``, whose weight is ``log p(z, x)`` (model latents
the encoder does not propose are drawn from the prior and cancel, as in importance
sampling). Gradients are taken with ``mx.value_and_grad`` with respect to the values of a
:class:`~genmlx.core.ParamStore` holding the parameters of both, so the networks enter as
:class:`~genmlx.nn.NeuralNetGF` sub-calls and any ``param(...)`` of the model trains too.
The data of a minibatch run in one batched (``mx.vmap``) execution of encoder and model.

A trained encoder is a *neural proposal*: pass it to
``genmlx.infer.importance_sampling(model, args, observe(x), N, proposal=encoder,
proposal_args=(x,))`` inside ``use_params(store)``; its log marginal-likelihood estimate
is then much better than the prior's (see the amortized-inference tutorial).

Model and encoder are written for one datum: ``encoder(x)`` receives one row of the data
array and ``observe(x)`` returns that datum's observed choices of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.optimizers as optim

from genmlx.core import (
    ChoiceMap,
    GenerativeFunction,
    ParamStore,
    choicemap,
    runtime,
    use_params,
)
from genmlx.core.batching import vmap_call
from genmlx.core.compile import compile_function
from genmlx.core.deprecation import renamed_arguments
from genmlx.core.random import Key, resolve_key
from genmlx.infer.optimization import Objective, optimize

__all__ = [
    "AmortizedFit",
    "amortized_elbo_objective",
    "elbo",
    "make_elbo_step",
    "train_amortized",
]

Observe = Callable[[mx.array], ChoiceMap | Mapping[Any, Any]]
ModelArgs = tuple[Any, ...] | Callable[[mx.array], tuple[Any, ...]]
_TREE = "params"

ElboStep = Callable[[dict[str, mx.array], mx.array, mx.array], tuple[mx.array, dict[str, mx.array]]]


class AmortizedFit(NamedTuple):
    """Result of :func:`train_amortized`.

    Attributes:
        params: the trained parameters (a ParamStore).
        history: ``[n_steps]`` minibatch mean ELBO estimates, one per step, taken
            before that step's parameter update (``elbo_history`` is the same array, the
            name :func:`genmlx.infer.advi` results use).
    """

    params: ParamStore
    history: mx.array

    @property
    def elbo_history(self) -> mx.array:
        """The same as :attr:`history`."""
        return self.history


def _check(model: Any, encoder: Any, data: Any, n_samples: Any, op: str) -> None:
    if not isinstance(model, GenerativeFunction):
        raise TypeError(f"{op}: model must be a GenerativeFunction, got {type(model).__name__}")
    if not isinstance(encoder, GenerativeFunction):
        raise TypeError(
            f"{op}: encoder must be a GenerativeFunction of one datum, got {type(encoder).__name__}"
        )
    if not isinstance(data, mx.array) or data.ndim < 1 or data.shape[0] < 1:
        raise ValueError(
            f"{op}: data must be an mx.array whose axis 0 indexes data points (shape [B, ...]); "
            f"got {type(data).__name__} {getattr(data, 'shape', '')}"
        )
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"{op}: n_samples must be a positive int, got {n_samples!r}")


def _as_cm(obs: Any) -> ChoiceMap:
    if isinstance(obs, ChoiceMap):
        return obs
    if isinstance(obs, Mapping):
        return choicemap(obs)
    raise TypeError(f"elbo: observe(x) must return a ChoiceMap or a dict, got {type(obs).__name__}")


def _one_elbo(
    model: GenerativeFunction,
    encoder: GenerativeFunction,
    observe: Observe,
    args: ModelArgs,
    key: mx.array,
    x: mx.array,
) -> mx.array:
    """``log p(z, x) - log q(z; x)`` for one datum and one ``z ~ q(·; x)``."""
    k_q, k_p = mx.random.split(key, 2)
    q = encoder.simulate((x,), key=k_q)
    latents = q.get_choices()
    for path, v in latents.leaves():
        if not mx.issubdtype(v.dtype, mx.floating):
            raise TypeError(
                f"elbo: the encoder's choice at {path!r} has dtype {v.dtype}; the "
                "reparameterised ELBO needs continuous choices drawn by reparameterised "
                "samplers (normal, ...), through which gradients flow"
            )
    obs = _as_cm(observe(x))
    args = args(x) if callable(args) else args
    if not isinstance(args, tuple):
        raise TypeError(f"elbo: args(x) must return a tuple, got {type(args).__name__}")
    _, log_p = model.generate(args, latents.merge(obs), key=k_p)
    out: mx.array = log_p - q.score
    return out


@renamed_arguments(model_args="args")
def elbo(
    model: GenerativeFunction,
    encoder: GenerativeFunction,
    data: mx.array,
    *,
    observe: Observe,
    key: Key = None,
    args: ModelArgs = (),
    n_samples: int = 1,
    params: ParamStore | None = None,
) -> mx.array:
    """Reparameterised ELBO estimates, one per datum, in one batched run.

    For each row ``x = data[b]``, with ``K = n_samples`` draws ``z_k ~ q(·; x)``
    (``encoder.simulate((x,))``),

    .. math::

        \\widehat{\\mathrm{ELBO}}(x) = \\frac{1}{K} \\sum_{k=1}^{K}
            \\left[\\log p(z_k, x) - \\log q(z_k; x)\\right],

    an unbiased estimate of ``ELBO(x) ≤ log p(x)`` that is differentiable in the
    parameters of encoder and model (the reparameterisation gradient) when the
    encoder's samplers are reparameterised.

    Args:
        model: the model ``p(z, x)``, called with ``args``.
        encoder: ``q(z; x)``, a generative function of one datum whose choices are
            latent addresses of the model.
        data: ``[B, ...]`` array; row ``b`` is one datum.
        observe: ``x -> ChoiceMap`` (or dict) of the model's observed choices for ``x``.
        key: PRNG key.
        args: the model's arguments, shared by all data, or a function
            ``x -> tuple`` giving each datum its own (a conditional model
            ``p(z, x; c)`` whose context ``c`` is part of the datum).
        n_samples: ``K``, draws per datum.
        params: a ParamStore to bind while estimating (default: the one bound by the
            caller, if any).

    Returns:
        ``[B]`` ELBO estimates.

    Raises:
        TypeError: an encoder choice is discrete (no reparameterisation gradient), or
            model/encoder are not generative functions.
        ValueError: bad ``data`` or ``n_samples``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> from genmlx.nn import elbo
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(z, 1.0) @ "x"
        >>> @gen
        ... def encoder(x):
        ...     normal(x / 2.0, mx.sqrt(mx.array(0.5))) @ "z"     # the exact posterior
        >>> xs = mx.array([0.0, 1.0, -2.0])
        >>> e = elbo(model, encoder, xs, observe=lambda x: {"x": x}, key=mx.random.key(0))
        >>> exact = -0.5 * mx.log(4 * mx.pi) - xs**2 / 4    # log N(x; 0, 2): ELBO = log p(x)
        >>> bool(mx.allclose(e, exact, atol=1e-5))
        True
    """
    _check(model, encoder, data, n_samples, "elbo")
    key = resolve_key(key)
    if params is not None:
        with use_params(params):
            return elbo(
                model,
                encoder,
                data,
                observe=observe,
                key=key,
                args=args,
                n_samples=n_samples,
            )
    b = data.shape[0]
    m = b * n_samples
    xs = mx.repeat(data, n_samples, axis=0) if n_samples > 1 else data
    keys = mx.random.split(key, m)

    shared = () if callable(args) else tuple(args)

    def one(k: mx.array, x: mx.array, *margs: Any) -> mx.array:
        return _one_elbo(
            model, encoder, observe, args if callable(args) else margs, k, x
        )

    with runtime.transforming():
        per: mx.array = vmap_call(one, m, (keys, xs), shared)
    if n_samples == 1:
        return per
    out: mx.array = mx.mean(per.reshape(b, n_samples), axis=1)
    return out


@renamed_arguments(model_args="args")
def make_elbo_step(
    model: GenerativeFunction,
    encoder: GenerativeFunction,
    optimizer: optim.Optimizer,
    *,
    observe: Observe,
    args: ModelArgs = (),
    n_samples: int = 1,
    compile: bool = True,
) -> ElboStep:
    """One stochastic-gradient step on ``-mean ELBO`` of a minibatch, as a function.

    The returned ``step(values, key, batch) -> (mean_elbo, new_values)`` takes the
    parameter values as a ``dict`` (``store.values_dict``), estimates
    ``L = -(1/B) Σ_b ELBO(x_b)`` with :func:`elbo`, differentiates it with
    ``mx.value_and_grad`` with respect to the values, and applies ``optimizer``
    (``optimizer.apply_gradients``). ``mean_elbo = -L`` is the estimate before the update.
    With ``compile=True`` the whole step (model, encoder, gradient and optimizer update)
    is one ``mx.compile``'d function with the optimizer's state as implicit input and
    output; keep the batch size fixed to reuse the compiled graph.

    Args:
        model, encoder, observe, args, n_samples: as for :func:`elbo`.
        optimizer: an ``mlx.optimizers`` optimizer (its state is initialised on the
            first call).
        compile: compile the step with ``mx.compile``.

    Returns:
        The step function.

    Example:
        >>> import mlx.core as mx
        >>> import mlx.nn as nn
        >>> import mlx.optimizers as optim
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> from genmlx.nn import NeuralNetGF, make_elbo_step, param_store
        >>> enc = NeuralNetGF(nn.Linear(1, 2), name="enc")
        >>> @gen
        ... def encoder(x):
        ...     out = enc(x) @ "net"
        ...     normal(out[0], mx.exp(out[1])) @ "z"
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(mx.array([z]), 1.0) @ "x"
        >>> step = make_elbo_step(model, encoder, optim.Adam(0.01), observe=lambda x: {"x": x})
        >>> values = param_store(enc).values_dict
        >>> batch = mx.ones((8, 1))
        >>> for i in range(3):
        ...     mean_elbo, values = step(values, mx.random.key(i), batch)
        >>> mean_elbo.shape, sorted(values)
        ((), ['enc/bias', 'enc/weight'])
    """
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(
            f"make_elbo_step: optimizer must be an mlx.optimizers.Optimizer, got "
            f"{type(optimizer).__name__}"
        )

    def loss(values: dict[str, mx.array], key: mx.array, batch: mx.array) -> mx.array:
        with runtime.transforming(), use_params(ParamStore(values)):
            e = elbo(
                model,
                encoder,
                batch,
                observe=observe,
                key=key,
                args=args,
                n_samples=n_samples,
            )
        return -mx.mean(e)

    grad_fn = mx.value_and_grad(loss)

    def step(
        values: dict[str, mx.array], key: mx.array, batch: mx.array
    ) -> tuple[mx.array, dict[str, mx.array]]:
        value, grads = grad_fn(values, key, batch)
        # the values sit under one key of the optimizer's tree, so that parameter names
        # cannot collide with the optimizer's own state entries ("step", ...)
        new = optimizer.apply_gradients({_TREE: grads}, {_TREE: values})
        return -value, new[_TREE]

    if not compile:
        return step
    box: dict[str, Any] = {}

    def compiled(
        values: dict[str, mx.array], key: mx.array, batch: mx.array
    ) -> tuple[mx.array, dict[str, mx.array]]:
        fn = box.get("fn")
        if fn is None:
            optimizer.init({_TREE: values})  # the state must exist before compiling
            fn = compile_function(step, inputs=optimizer.state, outputs=optimizer.state)
            box["fn"] = fn
        out: tuple[mx.array, dict[str, mx.array]] = fn(values, key, batch)
        return out

    return compiled


@renamed_arguments(model_args="args")
def amortized_elbo_objective(
    model: GenerativeFunction,
    encoder: GenerativeFunction,
    data: mx.array,
    *,
    observe: Observe,
    batch_size: int,
    args: ModelArgs = (),
    n_samples: int = 1,
) -> Objective:
    """The amortized ELBO as an :class:`~genmlx.infer.Objective` for
    :func:`genmlx.infer.optimize`: each step draws a minibatch of ``batch_size``
    distinct rows of ``data`` uniformly and minimises ``-(1/B) Σ_b ELBO(x_b)``
    (:func:`elbo`, reparameterised); the history records the minibatch mean ELBO.

    Args:
        model, encoder, observe, args, n_samples: as for :func:`elbo`.
        data: ``[D, ...]`` training data, one datum per row.
        batch_size: minibatch size (at most ``D``).

    Example:
        >>> import mlx.core as mx
        >>> import mlx.nn as nn
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> from genmlx.infer import optimize
        >>> from genmlx.nn import NeuralNetGF, param_store
        >>> enc = NeuralNetGF(nn.Linear(1, 2), name="enc")
        >>> @gen
        ... def encoder(x):
        ...     out = enc(x) @ "net"
        ...     normal(out[0], mx.exp(out[1])) @ "z"
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(mx.array([z]), 1.0) @ "x"
        >>> data = mx.random.normal((32, 1), key=mx.random.key(0))
        >>> obj = amortized_elbo_objective(model, encoder, data, observe=lambda x: {"x": x},
        ...                                batch_size=8)
        >>> res = optimize(obj, param_store(enc), n_steps=3, key=mx.random.key(1))
        >>> res.history.shape
        (3,)
    """
    _check(model, encoder, data, n_samples, "amortized_elbo_objective")
    d = data.shape[0]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= d:
        raise ValueError(
            f"amortized_elbo_objective: batch_size must be an int in 1..{d} (the number of "
            f"data rows), got {batch_size!r}"
        )

    def fn(values: dict[str, mx.array], key: mx.array, state: Any) -> Any:
        k_batch, k_step = mx.random.split(key, 2)
        rows = mx.random.permutation(d, key=k_batch)[:batch_size] if batch_size < d else None
        batch = data if rows is None else mx.take(data, rows, axis=0)
        with use_params(ParamStore(values)):
            e = mx.mean(
                elbo(
                    model,
                    encoder,
                    batch,
                    observe=observe,
                    key=k_step,
                    args=args,
                    n_samples=n_samples,
                )
            )
        return -e, mx.stop_gradient(e), state

    return Objective(fn, {}, "ELBO")


@renamed_arguments(model_args="args")
def train_amortized(
    model: GenerativeFunction,
    encoder: GenerativeFunction,
    data: mx.array,
    params: ParamStore,
    optimizer: optim.Optimizer,
    *,
    observe: Observe,
    n_steps: int,
    batch_size: int,
    key: Key = None,
    args: ModelArgs = (),
    n_samples: int = 1,
    compile: bool = True,
) -> AmortizedFit:
    """Fit encoder and model by stochastic gradient ascent on the ELBO (VAE training).

    Each step draws a minibatch of ``batch_size`` distinct rows of ``data`` uniformly,
    estimates the gradient of ``(1/B) Σ_b ELBO(x_b)`` by reparameterisation and updates
    every parameter in ``params`` with ``optimizer`` (see :func:`make_elbo_step`).

    Args:
        model, encoder, observe, args, n_samples: as for :func:`elbo`.
        data: ``[D, ...]`` training data, one datum per row.
        params: initial values of every trainable parameter (e.g.
            ``param_store(encoder_net, decoder_net)``).
        optimizer: an ``mlx.optimizers`` optimizer, e.g. ``optim.Adam(1e-2)``.
        n_steps: number of steps.
        batch_size: minibatch size (at most ``D``).
        key: PRNG key.
        compile: compile the step with ``mx.compile``.

    Returns:
        :class:`AmortizedFit` ``(params, history)``.

    Example:
        >>> import mlx.core as mx
        >>> import mlx.nn as nn
        >>> import mlx.optimizers as optim
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> from genmlx.nn import NeuralNetGF, param_store, train_amortized
        >>> enc = NeuralNetGF(nn.Linear(1, 2), name="enc")
        >>> @gen
        ... def encoder(x):
        ...     out = enc(x) @ "net"
        ...     normal(out[0], mx.exp(out[1])) @ "z"
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(mx.array([z]), 1.0) @ "x"
        >>> data = mx.random.normal((64, 1), key=mx.random.key(0)) * 1.4
        >>> fit = train_amortized(model, encoder, data, param_store(enc), optim.Adam(0.05),
        ...                       observe=lambda x: {"x": x}, n_steps=5, batch_size=16,
        ...                       key=mx.random.key(1))
        >>> fit.history.shape
        (5,)
    """
    _check(model, encoder, data, n_samples, "train_amortized")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"train_amortized: n_steps must be a positive int, got {n_steps!r}")
    d = data.shape[0]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= d:
        raise ValueError(
            f"train_amortized: batch_size must be an int in 1..{d} (the number of data rows), "
            f"got {batch_size!r}"
        )
    if not isinstance(params, ParamStore) or len(params) == 0:
        raise ValueError(
            "train_amortized: params must be a non-empty ParamStore of the trainable "
            "parameters (e.g. genmlx.nn.param_store(encoder_net, decoder_net))"
        )
    objective = amortized_elbo_objective(
        model,
        encoder,
        data,
        observe=observe,
        batch_size=batch_size,
        args=args,
        n_samples=n_samples,
    )
    res = optimize(
        objective, params, optimizer, n_steps, key=key, compile=compile, name="train_amortized"
    )
    return AmortizedFit(res.params, res.history)
