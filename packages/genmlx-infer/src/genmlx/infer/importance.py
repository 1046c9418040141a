"""Importance sampling and sampling–importance–resampling.

Given a model ``p(x, y; args)`` with observations ``y`` and a proposal ``q(x)``,
importance sampling draws ``x_i ~ q`` for ``i = 1..N`` and weighs them by

.. math::

    \\log \\tilde w_i = \\log p(x_i, y; \\text{args}) - \\log q(x_i),

so that ``(1/N) Σ_i \\tilde w_i`` is an unbiased estimate of the marginal likelihood
``p(y; args)`` and the self-normalised weights ``w_i = \\tilde w_i / Σ_j \\tilde w_j``
make ``Σ_i w_i f(x_i)`` a consistent estimate of ``E[f(x) | y]``.

All ``N`` particles run through one batched execution of the model
(:meth:`~genmlx.core.GenerativeFunction.vgenerate`), so there is no Python loop over
particles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, batching, choicemap, evaluate, runtime
from genmlx.core.batching import take_particles
from genmlx.core.config import memory_checks_enabled
from genmlx.core.memory import available_bytes, format_bytes, result_bytes
from genmlx.core.random import Key
from genmlx.core.tree import flatten, unflatten
from genmlx.infer import _checks as checks
from genmlx.infer import _sharding

__all__ = ["ISResult", "importance_resampling", "importance_sampling"]


class ISResult(NamedTuple):
    """Result of :func:`importance_sampling`.

    Attributes:
        traces: a batched trace of the ``N`` particles (``batch_shape == (N,)``).
        log_weights: normalised log weights, shape ``[N]`` (``logsumexp == 0``).
        log_ml_estimate: ``log((1/N) Σ_i \\tilde w_i)``, the log marginal-likelihood
            estimate (a scalar).
    """

    traces: Trace
    log_weights: mx.array
    log_ml_estimate: mx.array


def _check_inputs(
    model: Any, args: Any, observations: Any, n_particles: Any, proposal: Any, op: str
) -> ChoiceMap:
    if not isinstance(model, GenerativeFunction):
        raise TypeError(f"{op}: model must be a GenerativeFunction, got {type(model).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"{op}: args must be a tuple of arguments, got {type(args).__name__}")
    if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < 1:
        raise ValueError(f"{op}: n_particles must be a positive int, got {n_particles!r}")
    if isinstance(observations, Trace):
        raise TypeError(
            f"{op}: observations must be a ChoiceMap (or a dict), got a Trace; pass "
            "trace.get_choices() (or the part of it that is observed)"
        )
    if proposal is not None and not isinstance(proposal, GenerativeFunction):
        raise TypeError(
            f"{op}: proposal must be a GenerativeFunction (or None for the prior), "
            f"got {type(proposal).__name__}"
        )
    if observations is None:
        return ChoiceMap.empty()
    if isinstance(observations, ChoiceMap):
        obs = observations
    elif isinstance(observations, Mapping):
        obs = choicemap(observations)
    else:
        raise TypeError(
            f"{op}: observations must be a ChoiceMap (or a dict), got {type(observations).__name__}"
        )
    if obs.batch_shape:
        raise ValueError(f"{op}: observations must be shared by all particles (unbatched)")
    return obs


def _raw_weights(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    n: int,
    proposal: GenerativeFunction | None,
    proposal_args: tuple[Any, ...],
    key: mx.array,
) -> tuple[Trace, mx.array]:
    if proposal is None:
        tr, w = model.vgenerate(tuple(args), obs, n, key=key)
        return tr, w
    k_prop, k_gen = mx.random.split(key, 2)
    ptr = proposal.vsimulate(tuple(proposal_args), n, key=k_prop)
    proposed = ptr.get_choices()
    # observations are shared: give them the particle axis so they can be merged
    # with the (batched) proposed choices into one batched constraint map
    obs_b = obs.map(lambda v: mx.broadcast_to(v, (n, *v.shape))).with_batch_shape((n,))
    cons = proposed.with_batch_shape((n,)).merge(obs_b) if not obs.is_empty else proposed
    tr, log_p = model.vgenerate(tuple(args), cons, n, key=k_gen)
    # vgenerate's weight is Σ log p of the constrained choices (proposed + observed);
    # choices the proposal left out are drawn from the model, whose density cancels
    return tr, log_p - ptr.score


def _particle_keys(
    key: mx.array, n: int, proposal: GenerativeFunction | None
) -> tuple[mx.array, mx.array | None]:
    """The keys particle ``i`` uses in :func:`_raw_weights` (model, proposal)."""
    if proposal is None:
        return mx.random.split(key, n), None
    k_prop, k_gen = mx.random.split(key, 2)
    return mx.random.split(k_gen, n), mx.random.split(k_prop, n)


def _weights_with_keys(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    proposal: GenerativeFunction | None,
    proposal_args: tuple[Any, ...],
    kg: mx.array,
    kp: mx.array | None,
) -> tuple[Trace, mx.array]:
    """:func:`_raw_weights` for the particles whose keys are ``kg`` (and ``kp``)."""
    m = kg.shape[0]
    if proposal is None:
        tr, w = batching.vgenerate(model, args, obs, m, None, keys=kg)
        return tr, w
    ptr = batching.vsimulate(proposal, proposal_args, m, None, keys=kp)
    proposed = ptr.get_choices()
    obs_b = obs.map(lambda v: mx.broadcast_to(v, (m, *v.shape))).with_batch_shape((m,))
    cons = proposed.with_batch_shape((m,)).merge(obs_b) if not obs.is_empty else proposed
    tr, log_p = batching.vgenerate(model, args, cons, m, None, keys=kg)
    return tr, log_p - ptr.score


def _concat_particles(parts: list[Trace], args: tuple[Any, ...]) -> Trace:
    """One batched trace from batched traces of the same structure (particles stacked)."""
    flat = [flatten(t._replace(args=())) for t in parts]
    td = batching.rebatch(flat[0][1], ())
    for _, other in flat[1:]:
        if batching.rebatch(other, ()) != td:
            raise ValueError(
                "importance_sampling(chunk_size=...): the chunks' traces have different "
                "structures, so they cannot be stacked; use one batch (chunk_size=None)"
            )
    leaves = [mx.concatenate([f[0][j] for f in flat], axis=0) for j in range(len(flat[0][0]))]
    n = sum(t.batch_shape[0] for t in parts)
    out: Trace = unflatten(batching.rebatch(td, (n,)), leaves)
    return out._replace(args=args)


def _chunked_weights(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    n: int,
    proposal: GenerativeFunction | None,
    proposal_args: tuple[Any, ...],
    key: mx.array,
    chunk_size: int,
    keep_traces: bool,
) -> tuple[Trace | None, mx.array]:
    """The particles of one :func:`_raw_weights` run, computed ``chunk_size`` at a time.

    Particle ``i`` uses exactly the keys it would use in one batch (the batching law),
    so the log weights — and the traces, when kept — are those of the unchunked run.
    Each chunk is evaluated before the next one starts, so only one chunk's
    intermediate arrays exist at a time.
    """
    kg, kp = _particle_keys(key, n, proposal)
    eager = not runtime.in_transform()
    traces: list[Trace] = []
    lws: list[mx.array] = []
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        tr, lw = _weights_with_keys(
            model, args, obs, proposal, proposal_args, kg[a:b], None if kp is None else kp[a:b]
        )
        if keep_traces:
            if a == 0 and eager:
                need = result_bytes(tr) * (n / (b - a))
                avail, reason = available_bytes()
                if memory_checks_enabled() and avail is not None and need > 0.8 * avail:
                    raise MemoryError(
                        f"importance_sampling with {n} particles: chunking bounds the work "
                        f"space, but the {n} traces themselves hold about "
                        f"{format_bytes(need)} and this process can use about "
                        f"{format_bytes(avail)} ({reason}). Use fewer particles, or "
                        "importance_resampling(..., chunk_size=...), which keeps only the "
                        "weights and rebuilds the resampled particles."
                    )
            traces.append(tr)
        lws.append(lw)
        if eager:
            evaluate(tr if keep_traces else None, lw)
    lw_all = lws[0] if len(lws) == 1 else mx.concatenate(lws)
    if not keep_traces:
        return None, lw_all
    return (traces[0] if len(traces) == 1 else _concat_particles(traces, args)), lw_all


def importance_sampling(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple[Any, ...] = (),
    *,
    key: Key = None,
    group: Any = None,
    gather: bool = False,
    chunk_size: int | None = None,
) -> ISResult:
    """Importance sampling with the prior or a custom proposal, batched over particles.

    With ``proposal=None`` the particles come from the model's internal proposal (the
    prior over unobserved choices) via one ``model.vgenerate``, and
    ``log \\tilde w_i = Σ log p`` of the observed choices. With a custom proposal
    ``q`` (a generative function called with ``proposal_args``, whose addresses are
    latent addresses of the model), ``x_i ~ q`` by ``proposal.vsimulate`` and

    .. math::

        \\log \\tilde w_i = \\log p(x_i, y) - \\log q(x_i),

    where the model scores ``x_i`` and ``y`` together as constraints of one batched
    ``vgenerate`` (latents ``q`` does not propose are drawn from the model and cancel).
    The estimate ``\\log \\hat p(y) = \\operatorname{logsumexp}_i \\log \\tilde w_i -
    \\log N`` is unbiased for ``p(y)`` on the linear scale.

    **Chunks.** With ``chunk_size=k`` the ``N`` particles run ``k`` at a time, each
    chunk evaluated before the next, so the memory for intermediate arrays is that of
    ``k`` particles. Particle ``i`` draws with exactly the key it has in one batch, so
    the traces, log weights and log-ML estimate are those of the unchunked call with
    the same key (the log weights are combined exactly: ``logsumexp`` over all ``N``).

    Args:
        model: the model.
        args: the model's arguments.
        observations: observed values (ChoiceMap or dict), shared by all particles.
        n_particles: the number of particles ``N``.
        proposal: ``None`` (the prior) or a generative function proposing latents.
        proposal_args: the proposal's arguments.
        key: PRNG key (with ``group``: the same key on every process).
        group: an ``mx.distributed`` group to shard the particles over (default: the
            :func:`~genmlx.infer.distributed.use_group` default, else none). Process
            ``r`` of ``P`` draws particles ``[⌊rN/P⌋, ⌊(r+1)N/P⌋)`` with their
            single-process keys; the log ML and the normalisation are global (see
            :mod:`genmlx.infer.distributed`).
        gather: with ``group``, return all ``N`` particles on every process (the
            single-process result) instead of this process's share.
        chunk_size: ``None`` (one batch) or the number of particles per chunk.

    Returns:
        :class:`ISResult` ``(traces, log_weights, log_ml_estimate)``; ``log_weights``
        are normalised (their logsumexp is 0; with ``group``, over all processes).

    Raises:
        TypeError: model/proposal are not generative functions, or bad observations.
        ValueError: ``n_particles``/``chunk_size`` is not a positive int, or batched
            observations.
        DegenerateWeightsError: every log weight is -inf (no particle is consistent
            with the observations) or one is NaN.
        MemoryError: the particles cannot fit in memory (the message says how many
            fit; use ``chunk_size``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> res = importance_sampling(model, (), {"y": 1.0}, 1000, key=mx.random.key(0))
        >>> res.log_weights.shape
        (1000,)
        >>> chunked = importance_sampling(model, (), {"y": 1.0}, 1000, key=mx.random.key(0),
        ...                               chunk_size=300)
        >>> abs(float(chunked.log_ml_estimate - res.log_ml_estimate)) < 1e-5
        True
    """
    g = _sharding.group_for(group, "importance_sampling")
    if g is not None:
        from genmlx.infer.distributed.importance import importance_sampling as sharded

        return sharded(
            model, args, observations, n_particles, proposal, proposal_args,
            key=key, group=g, gather=gather,
        )
    op = "importance_sampling"
    obs = _check_inputs(model, args, observations, n_particles, proposal, op)
    if not isinstance(proposal_args, (tuple, list)):
        raise TypeError("importance_sampling: proposal_args must be a tuple")
    if chunk_size is not None:
        checks.count(chunk_size, "chunk_size", op)
    key = checks.key(key, op)
    if chunk_size is None or chunk_size >= n_particles:
        tr, lw = _raw_weights(
            model, tuple(args), obs, n_particles, proposal, tuple(proposal_args), key
        )
    else:
        tr_c, lw = _chunked_weights(
            model,
            tuple(args),
            obs,
            n_particles,
            proposal,
            tuple(proposal_args),
            key,
            chunk_size,
            True,
        )
        assert tr_c is not None
        tr = tr_c
    lw = checks.weights(lw, op)
    lse = mx.logsumexp(lw)
    return ISResult(tr, lw - lse, lse - math.log(n_particles))


def _index_trace(tr: Trace, idx: mx.array) -> Trace:
    """Particle ``idx`` (a scalar → single trace, or ``[k]`` → batched trace)."""
    result: Trace = take_particles(tr, idx)
    return result


def importance_resampling(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    *,
    key: Key = None,
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple[Any, ...] = (),
    n_samples: int | None = None,
    group: Any = None,
    gather: bool = False,
    chunk_size: int | None = None,
) -> Trace:
    """Sampling–importance–resampling: run :func:`importance_sampling`, then draw
    particle indices ``j ~ Categorical(w_1..w_N)`` (vectorised).

    As ``N → ∞`` the returned traces are distributed as the posterior ``p(x | y)``.

    With ``chunk_size=k`` only the ``N`` log weights are kept (computed ``k`` particles
    at a time); the chosen particles are then rebuilt from their own keys, so the result
    equals the unchunked call with the same key while memory holds ``k`` particles'
    work space, ``N`` weights and the returned traces.

    Args:
        model, args, observations, n_particles, proposal, proposal_args: as for
            :func:`importance_sampling`.
        key: PRNG key.
        n_samples: ``None`` returns one (unbatched) trace; an int ``k`` returns a
            batched trace of ``k`` independent draws (with replacement).
        group: an ``mx.distributed`` group to shard the particles over (see
            :func:`importance_sampling`); the draws are the single-process draws. With
            ``n_samples=None`` every process returns the drawn trace; with ``k`` draws
            process ``r`` returns draws ``[⌊rk/P⌋, ⌊(r+1)k/P⌋)``.
        gather: with ``group`` and ``n_samples``, return all ``k`` draws on every
            process.
        chunk_size: ``None`` (one batch) or the number of particles per chunk.

    Returns:
        The resampled trace(s).

    Raises:
        DegenerateWeightsError: every log weight is -inf or one is NaN (there is no
            posterior to resample from).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> tr = importance_resampling(model, (), {"y": 1.0}, 100, key=mx.random.key(0))
        >>> tr.batch_shape
        ()
    """
    g = _sharding.group_for(group, "importance_resampling")
    if g is not None:
        from genmlx.infer.distributed.importance import importance_resampling as sharded

        return sharded(
            model, args, observations, n_particles, key=key, proposal=proposal,
            proposal_args=proposal_args, n_samples=n_samples, group=g, gather=gather,
        )
    op = "importance_resampling"
    if n_samples is not None:
        checks.count(n_samples, "n_samples", op)
    if chunk_size is not None:
        checks.count(chunk_size, "chunk_size", op)
    key = checks.key(key, op)
    k_is, k_pick = mx.random.split(key, 2)
    shape = () if n_samples is None else (n_samples,)
    if chunk_size is None or chunk_size >= n_particles:
        res = importance_sampling(
            model, args, observations, n_particles, proposal, proposal_args, key=k_is
        )
        idx = mx.random.categorical(res.log_weights, shape=shape, key=k_pick)
        return _index_trace(res.traces, idx)
    obs = _check_inputs(model, args, observations, n_particles, proposal, op)
    if not isinstance(proposal_args, (tuple, list)):
        raise TypeError(f"{op}: proposal_args must be a tuple")
    pargs = tuple(proposal_args)
    _, lw = _chunked_weights(
        model, tuple(args), obs, n_particles, proposal, pargs, k_is, chunk_size, False
    )
    lw = checks.weights(lw, op)
    idx = mx.random.categorical(lw - mx.logsumexp(lw), shape=shape, key=k_pick)
    # rebuild the chosen particles from their own keys (the batching law)
    kg, kp = _particle_keys(k_is, n_particles, proposal)
    flat = idx.reshape((-1,))
    tr, _ = _weights_with_keys(
        model, tuple(args), obs, proposal, pargs, kg[flat], None if kp is None else kp[flat]
    )
    return _index_trace(tr, mx.array(0)) if n_samples is None else tr
