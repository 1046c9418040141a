"""Learning the parameters of generative functions: maximum likelihood, ADEV objectives
and wake-sleep.

Parameters are the ``param(name, init)`` reads of ``@gen`` bodies, held in a functional
:class:`~genmlx.core.ParamStore`; optimisers come from :mod:`mlx.optimizers` (default
:class:`mlx.optimizers.Adam`). Every training loop here has the same shape: a *step*
maps ``(key, parameters)`` to a loss and the gradient of that loss, the optimiser
applies the gradient, and the loop records the loss. With ``compile=True`` (the
default) the whole step — sampling, scoring, gradients and the optimiser update — is
one ``mx.compile``'d function of the key, the parameters and the optimiser state
(compiled once: shapes do not change between steps); ``compile=False`` runs the same
step eagerly, with GenMLX's score checks on. ``progress=True`` shows a ``tqdm`` bar
(``pip install tqdm``, the ``progress`` extra).

* :func:`train` — maximum likelihood on data (Gen.jl's ``train!``): the loss is
  ``-(1/B) Σ_i log p(c_i; args)`` on minibatches of ``B`` data, with gradients from
  :func:`~genmlx.core.param_gradients`.
* :func:`train_objective` — maximise any ADEV :class:`~genmlx.infer.adev.Expectation`
  (:func:`~genmlx.infer.adev.elbo_objective`, ...) over the parameters of a store.
* :func:`lecture` / :func:`lecture_batched` — one sleep-phase gradient for a proposal
  (Gen.jl's ``lecture!`` / ``lecture_batched!``), and :func:`train_proposal`, the loop.
* :func:`wake_sleep` — the wake-phase model update (:func:`~genmlx.infer.adev.wake_p_objective`)
  and the sleep-phase proposal update (:func:`lecture_batched`) in one step.

Example:
    >>> import mlx.core as mx
    >>> import mlx.optimizers as optim
    >>> from genmlx.core import gen, param, ParamStore
    >>> from genmlx.dists import normal
    >>> @gen
    ... def model():
    ...     normal(param("mu", 0.0), 1.0) @ "y"
    >>> data = {"y": mx.array([1.0, 2.0, 3.0, 4.0])}
    >>> res = train(model, data, ParamStore({"mu": 0.0}), n_steps=100,
    ...             optimizer=optim.SGD(learning_rate=0.5), key=mx.random.key(0))
    >>> round(float(res.params["mu"]), 4)      # the maximum-likelihood estimate: the mean
    2.5
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.optimizers as optim

from genmlx.core.choicemap import ChoiceMap, choicemap
from genmlx.core.deprecation import renamed_arguments, warn_deprecated
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.gradients import param_gradients
from genmlx.core.params import ParamStore, use_params
from genmlx.core.random import Key, resolve_key
from genmlx.core.selection import Selection, select
from genmlx.core.trace import Trace
from genmlx.infer._vi_loop import check_positive_int
from genmlx.infer.adev import Expectation, wake_p_objective
from genmlx.infer.optimization import Objective, optimize

__all__ = [
    "LectureResult",
    "TrainResult",
    "WakeSleepResult",
    "lecture",
    "lecture_batched",
    "train",
    "train_objective",
    "train_proposal",
    "wake_sleep",
]

Params = dict[str, mx.array]
Step = Callable[[mx.array, Params], tuple[mx.array, Params]]


class TrainResult(NamedTuple):
    """Result of a training loop.

    Attributes:
        params: the trained parameters (a new :class:`~genmlx.core.ParamStore`; the
            given one is unchanged).
        history: the loss of every step, shape ``[n_steps]`` (what each loop
            minimises is stated on it).

    ``store`` and ``loss_history`` are the deprecated names of the fields.
    """

    params: ParamStore
    history: mx.array

    @property
    def store(self) -> ParamStore:
        """Deprecated name of :attr:`params`."""
        warn_deprecated("TrainResult.store", "TrainResult.params")
        return self.params

    @property
    def loss_history(self) -> mx.array:
        """Deprecated name of :attr:`history`."""
        warn_deprecated("TrainResult.loss_history", "TrainResult.history")
        return self.history


class LectureResult(NamedTuple):
    """Result of :func:`lecture` / :func:`lecture_batched`.

    Attributes:
        score: the proposal's log density of the model's latent choices (the mean
            over the batch for :func:`lecture_batched`).
        grads: ``∇`` of ``score`` w.r.t. every parameter of the store (zero for the
            parameters the proposal does not read).
    """

    score: mx.array
    grads: dict[str, mx.array]


class WakeSleepResult(NamedTuple):
    """Result of :func:`wake_sleep`.

    Attributes:
        params: the trained model and proposal parameters (``store`` is the deprecated
            name).
        wake_history: the wake-phase objective estimate of every step (``[n_steps]``).
        sleep_history: the sleep-phase score (the proposal's mean log density of the
            model's latents) of every step (``[n_steps]``).
    """

    params: ParamStore
    wake_history: mx.array
    sleep_history: mx.array

    @property
    def history(self) -> mx.array:
        """Both phases per step: ``[n_steps, 2]`` (wake estimate, sleep score)."""
        return mx.stack([self.wake_history, self.sleep_history], axis=1)

    @property
    def store(self) -> ParamStore:
        """Deprecated name of :attr:`params`."""
        warn_deprecated("WakeSleepResult.store", "WakeSleepResult.params")
        return self.params


# ---------------------------------------------------------------------------- loop
def _as_store(store: Any, op: str) -> ParamStore:
    if isinstance(store, ParamStore):
        s = store
    elif isinstance(store, Mapping):
        s = ParamStore(store)
    else:
        raise TypeError(f"{op}: store must be a ParamStore, got {type(store).__name__}")
    if not len(s):
        raise ValueError(
            f"{op}: the store holds no parameters to train; build one with "
            "ParamStore.initialize(gen_fn, args) or ParamStore({'name': value})"
        )
    for name in s:
        if not mx.issubdtype(s[name].dtype, mx.floating):
            raise TypeError(
                f"{op}: parameter {name!r} has dtype {s[name].dtype}; trainable parameters "
                "must be floating point"
            )
    return s


def _optimise(
    step: Step,
    store: ParamStore,
    *,
    n_steps: int,
    optimizer: optim.Optimizer | None,
    key: Key,
    compile: bool,
    progress: bool,
    op: str,
) -> tuple[ParamStore, mx.array]:
    """Run ``step`` (``(key, params) -> (loss, grads)``, the gradient of the loss to
    minimise) ``n_steps`` times through :func:`genmlx.infer.optimize`."""
    check_positive_int(n_steps, "n_steps", op)
    objective = Objective(lambda p, k, s: (*step(k, p), s), {}, "loss", gradient=True)
    res = optimize(
        objective, store, optimizer, n_steps, key=key, compile=compile, progress=progress, name=op
    )
    return res.params, res.history


# ---------------------------------------------------------------------------- train
def _dataset(data: Any, op: str) -> tuple[list[tuple[Any, mx.array]], int]:
    cm = data if isinstance(data, ChoiceMap) else choicemap(data)
    leaves = list(cm.leaves())
    if not leaves:
        raise ValueError(f"{op}: the data hold no choices")
    sizes = {int(v.shape[0]) if v.ndim else -1 for _, v in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"{op}: every leaf of the data must have the same leading (dataset) axis; got "
            f"shapes {[tuple(v.shape) for _, v in leaves]}"
        )
    return leaves, sizes.pop()


def train(
    gen_fn: GenerativeFunction,
    data: ChoiceMap | Mapping[Any, Any] | Callable[[mx.array], tuple[tuple[Any, ...], Any]],
    store: ParamStore | Mapping[str, Any],
    *,
    n_steps: int,
    args: tuple[Any, ...] = (),
    batch_size: int | None = None,
    optimizer: optim.Optimizer | None = None,
    key: Key = None,
    progress: bool = False,
    compile: bool = True,
) -> TrainResult:
    """Maximum likelihood for the parameters of ``gen_fn`` (Gen.jl's ``train!``).

    Each step draws a minibatch, runs ``gen_fn.generate`` with the minibatch as
    constraints (one execution per datum, batched), and follows the gradient of

    .. math::

        L(θ) = -\\frac1B \\sum_{i=1}^{B} w_i, \\qquad
        ∇L = -\\frac1B \\sum_i ∇_θ \\log p_θ(t_i; \\text{args}),

    where ``w_i`` is the generate weight (the log density of datum ``i``'s
    constrained choices) and the gradient, from
    :func:`~genmlx.core.param_gradients`, is that of the log density of the whole
    trace ``t_i`` (as Gen.jl's ``accumulate_param_gradients!``). When every choice of
    ``gen_fn`` is observed, ``-L`` is the mean log-likelihood and its maximiser the
    maximum-likelihood estimate.

    Args:
        gen_fn: the generative function, with parameters (``param``).
        data: either choices with a leading dataset axis ``D`` (a ChoiceMap or dict:
            datum ``i`` is leaf ``[i]`` of every address; ``args`` are shared), or a
            function ``data(key) -> (args, constraints)`` that returns one minibatch
            (constraints batched with ``batch_shape == (B,)`` for ``B`` executions,
            or unbatched for one execution of a model written over a batch — the way
            to give each datum its own inputs).
        store: the initial parameters.
        n_steps: the number of optimiser steps.
        args: ``gen_fn``'s arguments (with dataset ``data``).
        batch_size: minibatch size ``B`` (sampled without replacement each step);
            ``None`` uses all ``D`` data every step.
        optimizer: an :mod:`mlx.optimizers` optimiser (default ``Adam(0.01)``).
        key: PRNG key.
        progress: show a ``tqdm`` progress bar.
        compile: compile the step with ``mx.compile``.

    Returns:
        :class:`TrainResult` ``(params, history)`` with the loss ``L`` per step.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param, ParamStore
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     normal(param("mu", 0.0), 1.0) @ "y"
        >>> res = train(model, {"y": mx.arange(10.0)}, ParamStore({"mu": 0.0}),
        ...             n_steps=5, batch_size=4, key=mx.random.key(0))
        >>> res.history.shape
        (5,)
    """
    op = "train"
    if not isinstance(gen_fn, GenerativeFunction):
        raise TypeError(f"{op}: gen_fn must be a generative function, got {gen_fn!r}")
    s = _as_store(store, op)
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"{op}: args must be a tuple, got {type(args).__name__}")
    if callable(data) and not isinstance(data, (ChoiceMap, Mapping)):
        if batch_size is not None:
            raise ValueError(f"{op}: a data function makes its own minibatches; drop batch_size")
        make_batch = data
    else:
        leaves, n_data = _dataset(data, op)
        b = n_data if batch_size is None else check_positive_int(batch_size, "batch_size", op)
        if b > n_data:
            raise ValueError(f"{op}: batch_size={b} exceeds the {n_data} data")
        shared = tuple(args)

        def make_batch(k: mx.array) -> tuple[tuple[Any, ...], ChoiceMap]:
            if b == n_data:
                nodes = [(p, ChoiceMap(v)) for p, v in leaves]
            else:
                idx = mx.random.permutation(n_data, key=k)[:b]
                nodes = [(p, ChoiceMap(mx.take(v, idx, axis=0))) for p, v in leaves]
            return shared, ChoiceMap.from_nodes(nodes, batch_shape=(b,))

    def step(k: mx.array, params: Params) -> tuple[mx.array, Params]:
        k_data, k_gen = mx.random.split(k, 2)
        a, cons = make_batch(k_data)
        current = ParamStore(params)
        with use_params(current):
            tr, w = gen_fn.generate(tuple(a), cons, key=k_gen)
        grads = param_gradients(tr, current)
        m = w.size
        return -mx.mean(w), {n: -g / m for n, g in grads.items()}

    new, history = _optimise(
        step,
        s,
        n_steps=n_steps,
        optimizer=optimizer,
        key=key,
        compile=compile,
        progress=progress,
        op=op,
    )
    return TrainResult(new, history)


def train_objective(
    objective: Expectation,
    store: ParamStore | Mapping[str, Any],
    *,
    n_steps: int,
    args: tuple[Any, ...] = (),
    n_samples: int = 1,
    maximize: bool = True,
    optimizer: optim.Optimizer | None = None,
    key: Key = None,
    progress: bool = False,
    compile: bool = True,
) -> TrainResult:
    """Optimise an ADEV objective (an ELBO, IWELBO, a custom
    :class:`~genmlx.infer.adev.Expectation`) over the parameters of ``store``.

    Each step follows ADEV's unbiased gradient estimate (the mean of ``n_samples``
    samples) of ``-E(θ)`` (or of ``E(θ)`` with ``maximize=False``).

    Args:
        objective: the expectation ``E``.
        store: the initial parameters (read by ``param(...)`` in the program).
        n_steps: the number of optimiser steps.
        args: the objective's arguments (held fixed).
        n_samples: samples per gradient estimate.
        maximize: maximise ``E`` (default) or minimise it.
        optimizer: an :mod:`mlx.optimizers` optimiser (default ``Adam(0.01)``).
        key: PRNG key.
        progress: show a ``tqdm`` progress bar.
        compile: compile the step with ``mx.compile``.

    Returns:
        :class:`TrainResult`; ``history`` holds ``-E`` estimates (``E`` with
        ``maximize=False``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param, ParamStore
        >>> from genmlx.dists import normal
        >>> from genmlx.infer.adev import elbo_objective
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(z, 1.0) @ "x"
        >>> @gen
        ... def guide():
        ...     normal(param("m", 0.0), mx.exp(param("log_s", 0.0))) @ "z"
        >>> res = train_objective(elbo_objective(model, (), {"x": 2.0}, guide),
        ...                       ParamStore({"m": 0.0, "log_s": 0.0}), n_steps=10,
        ...                       n_samples=8, key=mx.random.key(0))
        >>> res.history.shape
        (10,)
    """
    op = "train_objective"
    if not isinstance(objective, Expectation):
        raise TypeError(
            f"{op}: objective must be an ADEV Expectation (expectation(...), "
            f"elbo_objective(...), ...), got {type(objective).__name__}"
        )
    s = _as_store(store, op)
    check_positive_int(n_samples, "n_samples", op)
    check_positive_int(n_steps, "n_steps", op)
    res = optimize(
        objective.objective(*args, n_samples=n_samples, maximize=maximize),
        s,
        optimizer,
        n_steps,
        key=key,
        compile=compile,
        progress=progress,
        name=op,
    )
    # the loss each step minimised: -E (maximize) or E
    return TrainResult(res.params, -res.history if maximize else res.history)


# ---------------------------------------------------------------------------- wake-sleep
def _addresses(proposal: GenerativeFunction, q_args: tuple[Any, ...], key: mx.array) -> Selection:
    cm = proposal.simulate(q_args, key=key).get_choices()
    return select(*[p if len(p) != 1 else p[0] for p, _ in cm.leaves()])


def _check_lecture(model: Any, proposal: Any, get_q_args: Any, op: str) -> None:
    for what, gf in (("model", model), ("proposal", proposal)):
        if not isinstance(gf, GenerativeFunction):
            raise TypeError(f"{op}: {what} must be a generative function, got {gf!r}")
    if not callable(get_q_args):
        raise TypeError(f"{op}: get_q_args must be a function trace -> proposal args")


@renamed_arguments(model_args="args")
def lecture(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    proposal: GenerativeFunction,
    store: ParamStore,
    get_q_args: Callable[[Trace], tuple[Any, ...]],
    *,
    key: Key = None,
    latents: Selection | None = None,
) -> LectureResult:
    """One sleep-phase training example for a proposal (Gen.jl's ``lecture!``).

    Simulates ``t ~ p(·; args)``, computes the proposal's arguments
    ``a = get_q_args(t)`` (its observations), constrains the proposal with the
    model's choices at the proposal's addresses ``z`` and returns

    .. math::

        \\text{score} = \\log q(z; a), \\qquad ∇_φ \\log q_φ(z; a)

    (the gradient from :func:`~genmlx.core.param_gradients`). Ascending its
    expectation over ``t`` minimises ``E_x KL(p(z | x) ‖ q_φ(z; a(x)))``.

    Args:
        model: the model ``p`` (its parameters, if any, are read from ``store``).
        args: the model's arguments.
        proposal: the proposal ``q``, a generative function with parameters (``param``).
        store: the parameters.
        get_q_args: ``trace ↦ proposal args``.
        key: PRNG key.
        latents: the model addresses the proposal makes (default: those of one
            proposal simulation).

    Returns:
        :class:`LectureResult` ``(score, grads)`` (gradients of the score).
    """
    _check_lecture(model, proposal, get_q_args, "lecture")
    k_model, k_prop = mx.random.split(resolve_key(key), 2)
    with use_params(store):
        tr = model.simulate(tuple(args), key=k_model)
        q_args = tuple(get_q_args(tr))
        sel = latents if latents is not None else _addresses(proposal, q_args, k_prop)
        q_tr, w = proposal.generate(q_args, tr.get_choices().filter(sel), key=k_prop)
    return LectureResult(w, param_gradients(q_tr, store))


@renamed_arguments(model_args="args")
def lecture_batched(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    proposal: GenerativeFunction,
    store: ParamStore,
    get_q_args: Callable[[Trace], tuple[Any, ...]],
    batch_size: int,
    *,
    key: Key = None,
    latents: Selection | None = None,
) -> LectureResult:
    """A batch of sleep-phase training examples (Gen.jl's ``lecture_batched!``).

    Simulates ``B`` model traces in one batched run (``model.vsimulate``) and scores
    their latent choices with one execution of a *batched* proposal: as Gen.jl's
    batched proposal makes sample ``i``'s choices under namespace ``i``, here element
    ``i`` along the leading axis of each of the proposal's choices is sample ``i``
    (the proposal is written over arrays, e.g. ``normal(a * xs + b, s) @ "z"`` with
    ``xs`` of shape ``[B]``). ``get_q_args`` maps the batched model trace to the
    proposal's arguments. Returns the batch means

    .. math::

        \\text{score} = \\frac1B \\sum_i \\log q(z_i; a_i), \\qquad
        \\frac1B \\sum_i ∇_φ \\log q_φ(z_i; a_i).

    Args:
        model, args, proposal, store, get_q_args, latents: as for
            :func:`lecture` (``get_q_args`` receives the batched trace).
        batch_size: ``B``.
        key: PRNG key.

    Returns:
        :class:`LectureResult` (batch means).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param, ParamStore
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(z, 1.0) @ "x"
        >>> @gen
        ... def proposal(xs):
        ...     normal(param("a", 0.0) * xs, 1.0) @ "z"
        >>> res = lecture_batched(model, (), proposal, ParamStore({"a": 0.0}),
        ...                       lambda tr: (tr["x"],), 100, key=mx.random.key(0))
        >>> float(res.grads["a"]) > 0      # E[z·x] = 1 > 0 pushes a up
        True
    """
    _check_lecture(model, proposal, get_q_args, "lecture_batched")
    b = check_positive_int(batch_size, "batch_size", "lecture_batched")
    k_model, k_prop = mx.random.split(resolve_key(key), 2)
    with use_params(store):
        tr = model.vsimulate(tuple(args), b, key=k_model)
        q_args = tuple(get_q_args(tr))
        sel = latents if latents is not None else _addresses(proposal, q_args, k_prop)
        cons = tr.get_choices().with_batch_shape(()).filter(sel)
        q_tr, w = proposal.generate(q_args, cons, key=k_prop)
    grads = param_gradients(q_tr, store)
    return LectureResult(w / b, {n: g / b for n, g in grads.items()})


@renamed_arguments(model_args="args")
def train_proposal(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    proposal: GenerativeFunction,
    store: ParamStore | Mapping[str, Any],
    get_q_args: Callable[[Trace], tuple[Any, ...]],
    *,
    n_steps: int,
    batch_size: int,
    latents: Selection | None = None,
    optimizer: optim.Optimizer | None = None,
    key: Key = None,
    progress: bool = False,
    compile: bool = True,
) -> TrainResult:
    """Train an amortised proposal on the model's own samples: ``n_steps`` optimiser
    steps along :func:`lecture_batched`'s gradient (sleep-phase training).

    Returns:
        :class:`TrainResult`; ``history`` holds ``-score`` (the negative mean
        log density of the latents) per step.
    """
    op = "train_proposal"
    _check_lecture(model, proposal, get_q_args, op)
    s = _as_store(store, op)
    b = check_positive_int(batch_size, "batch_size", op)
    sel = latents
    if sel is None:  # decided once, eagerly (the address structure is static)
        with use_params(s):
            tr = model.vsimulate(tuple(args), b, key=mx.random.key(0))
            sel = _addresses(proposal, tuple(get_q_args(tr)), mx.random.key(1))

    def step(k: mx.array, params: Params) -> tuple[mx.array, Params]:
        res = lecture_batched(
            model, args, proposal, ParamStore(params), get_q_args, b, key=k, latents=sel
        )
        return -res.score, {n: -g for n, g in res.grads.items()}

    new, history = _optimise(
        step,
        s,
        n_steps=n_steps,
        optimizer=optimizer,
        key=key,
        compile=compile,
        progress=progress,
        op=op,
    )
    return TrainResult(new, history)


@renamed_arguments(model_args="args")
def wake_sleep(
    model: GenerativeFunction,
    proposal: GenerativeFunction,
    store: ParamStore | Mapping[str, Any],
    *,
    observations: ChoiceMap | Mapping[Any, Any],
    get_q_args: Callable[[Trace], tuple[Any, ...]],
    n_steps: int,
    batch_size: int,
    args: tuple[Any, ...] = (),
    proposal_args: tuple[Any, ...] = (),
    n_particles: int = 1,
    n_samples: int = 1,
    latents: Selection | None = None,
    optimizer: optim.Optimizer | None = None,
    key: Key = None,
    progress: bool = False,
    compile: bool = True,
) -> WakeSleepResult:
    """Wake-sleep learning of a model and an amortised proposal (Hinton et al. 1995;
    reweighted with ``n_particles > 1``, Bornschein & Bengio 2015).

    Each step adds two gradients and applies one optimiser update:

    * wake (model parameters ``θ``): the ADEV gradient of
      :func:`~genmlx.infer.adev.wake_p_objective` on the real ``observations``, with the
      proposal called with ``proposal_args`` (``n_particles`` particles per sample,
      ``n_samples`` samples);
    * sleep (proposal parameters ``φ``): :func:`lecture_batched` on ``batch_size``
      samples of the current model, the proposal called with ``get_q_args(trace)``.

    The wake gradient does not reach ``φ`` and the sleep gradient does not reach
    ``θ``. When the proposal family contains the posterior, the fixed point is the
    maximum-likelihood ``θ`` with ``q_φ = p_θ(z | x)``.

    Args:
        model: the model, with parameters ``θ``.
        proposal: the proposal, with parameters ``φ`` (in the same store).
        store: the initial parameters of both.
        observations: the observed choices for the wake phase.
        get_q_args: batched model trace ↦ proposal arguments (sleep phase).
        n_steps: the number of optimiser steps.
        batch_size: model samples per sleep step.
        args: the model's arguments.
        proposal_args: the proposal's arguments for the observations (wake phase).
        n_particles: proposal particles per wake-phase sample.
        n_samples: wake-phase samples per gradient estimate.
        latents: the model addresses the proposal makes (default: inferred once).
        optimizer: an :mod:`mlx.optimizers` optimiser (default ``Adam(0.01)``).
        key: PRNG key.
        progress: show a ``tqdm`` progress bar.
        compile: compile the step with ``mx.compile``.

    Returns:
        :class:`WakeSleepResult` ``(params, wake_history, sleep_history)``.
    """
    op = "wake_sleep"
    _check_lecture(model, proposal, get_q_args, op)
    s = _as_store(store, op)
    b = check_positive_int(batch_size, "batch_size", op)
    check_positive_int(n_samples, "n_samples", op)
    wake = wake_p_objective(
        model, args, observations, proposal, proposal_args, n_particles=n_particles
    )
    sel = latents
    if sel is None:
        with use_params(s):
            tr = model.vsimulate(tuple(args), b, key=mx.random.key(0))
            sel = _addresses(proposal, tuple(get_q_args(tr)), mx.random.key(1))

    def step(k: mx.array, params: Params) -> tuple[mx.array, Params]:
        k_wake, k_sleep = mx.random.split(k, 2)
        current = ParamStore(params)
        g = wake.grad(key=k_wake, n_samples=n_samples, store=current)
        lec = lecture_batched(
            model, args, proposal, current, get_q_args, b, key=k_sleep, latents=sel
        )
        grads = {n: -(g.params[n] + lec.grads[n]) for n in params}
        return mx.stack([g.value, lec.score]), grads

    new, history = _optimise(
        step,
        s,
        n_steps=n_steps,
        optimizer=optimizer,
        key=key,
        compile=compile,
        progress=progress,
        op=op,
    )
    return WakeSleepResult(new, history[:, 0], history[:, 1])
