"""Parallel tempering (replica exchange) with a tempered random-walk MH kernel.

Replica ``k`` targets the *tempered posterior*

.. math:: π_β(x) ∝ p(x)\\, p(y \\mid x)^{β_k},\\qquad 1 = β_0 > β_1 > … > β_{K-1} ≥ 0,

where ``p(y | x)`` is the log likelihood of the observed choices, computed as
``project(trace, select(observed addresses))``, and ``p(x)`` is everything else in
the trace's score. Each sweep does

1. one tempered random-walk MH step in every replica
   (:func:`tempered_rw_mh`): ``x' = x + σ_k ξ`` on the selected continuous choices,
   ``log α = Δ log p(x) + β_k Δ log p(y | x)``;
2. swap moves between adjacent temperatures (:func:`tempered_swap`): pairs
   ``(k, k+1)`` with ``k`` even on even sweeps and odd on odd sweeps (the deterministic
   even–odd scheme), each accepted with the standard ratio
   ``log α = (β_k − β_{k+1}) (ℓ_{k+1} − ℓ_k)``, ``ℓ = log p(y | x)``.

Only the β = 1 replica is a sample from the posterior; :func:`parallel_tempering` returns
its recorded values. The kernel here is restricted to random-walk MH written for the
tempered target (the generic kernels of :mod:`genmlx.infer` target β = 1 only).

Layout: replicas are one batched trace with ``batch_shape == (n_chains · K,)``; element
``c·K + k`` is replica ``k`` of independent PT run ``c``. Everything is vectorised; the
only Python decision is the sweep's parity (a Python int), so a sweep can be wrapped
in :func:`genmlx.core.compile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Selection, Trace, choicemap, select
from genmlx.core.address import Address
from genmlx.core.deprecation import renamed_arguments
from genmlx.core.random import Key, resolve_key
from genmlx.core.tree import flatten, unflatten
from genmlx.infer import _checks as checks
from genmlx.infer._traces import accept_reject
from genmlx.infer.kernel_info import MHInfo, SwapInfo

__all__ = ["PTResult", "parallel_tempering", "tempered_rw_mh", "tempered_swap"]


class PTResult(NamedTuple):
    """Result of :func:`parallel_tempering`.

    Attributes:
        samples: ``{address: [n_kept, n_chains, ...]}``, the β = 1 replica's values.
        trace: the final replicas (``batch_shape == (n_chains · K,)``).
        acceptance_rate: mean MH acceptance per replica, shape ``[n_chains, K]``.
        swap_rate: mean swap acceptance per adjacent pair ``(k, k+1)`` over the sweeps
            that attempted it, shape ``[n_chains, K − 1]``.
    """

    samples: dict[Address, mx.array]
    trace: Trace
    acceptance_rate: mx.array
    swap_rate: mx.array


def _observed(observations: Any, op: str) -> Selection:
    """The observed addresses: a Selection, or those of a ChoiceMap / dict."""
    if isinstance(observations, Selection):
        return observations
    if isinstance(observations, (ChoiceMap, dict)):
        cm = observations if isinstance(observations, ChoiceMap) else choicemap(observations)
        return select(*cm.addresses())
    raise TypeError(
        f"{op}: observations must be the observed choices (a ChoiceMap or dict) or a "
        f"Selection of their addresses, got {type(observations).__name__}"
    )


@renamed_arguments(observed="observations")
def tempered_rw_mh(
    trace: Trace,
    selection: Selection,
    observations: Selection | ChoiceMap | dict[Any, Any],
    beta: mx.array | float,
    step_size: mx.array | float,
    *,
    key: Key = None,
) -> tuple[Trace, MHInfo]:
    """One random-walk MH step targeting ``p(x) p(y | x)^β``, per chain.

    ``x' = x + σ ξ`` (``ξ ~ N(0, I)``) on the selected choices, moved with ``update``
    (weight ``w = log p(x', y) − log p(x, y)``); with ``Δℓ`` the change of
    ``project(trace, observed)``,

    .. math:: \\log α = (w − Δℓ) + β\\, Δℓ.

    Args:
        trace: single or batched trace (each chain accepted on its own).
        selection: the continuous latent choices to move.
        observations: the observed (likelihood) choices: a ChoiceMap or dict, or a
            Selection of their addresses (``observed=`` is the deprecated name).
        beta: inverse temperature, scalar or one per chain (shape ``batch_shape``).
        step_size: ``σ``, scalar or one per chain.
        key: PRNG key.

    Returns:
        ``(new_trace, info)`` with ``info`` an :class:`~genmlx.infer.kernel_info.MHInfo`.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     x = normal(0.0, 1.0) @ "x"
        ...     normal(x, 1.0) @ "y"
        >>> tr, _ = m.vgenerate((), {"y": 1.0}, 4, key=mx.random.key(0))
        >>> tr2, info = tempered_rw_mh(tr, select("x"), select("y"), 0.5, 0.3,
        ...                            key=mx.random.key(1))
        >>> info.accepted.shape
        (4,)
    """
    checks.trace(trace, "tempered_rw_mh")
    checks.selection(selection, "tempered_rw_mh")
    observed = _observed(observations, "tempered_rw_mh")
    k_prop, k_acc = mx.random.split(checks.key(key, "tempered_rw_mh"))
    batch = tuple(trace.batch_shape)
    sigma = checks.positive_scalar(step_size, "step_size", "tempered_rw_mh", batch)
    current = trace.get_choices().filter(selection)
    leaves = list(current.leaves())
    if not leaves:
        raise ValueError("tempered_rw_mh: the selection picks no choices of the trace")
    keys = mx.random.split(k_prop, len(leaves))
    moved = ChoiceMap(None, None, batch)
    for (path, v), k in zip(leaves, keys):
        if not mx.issubdtype(v.dtype, mx.floating):
            raise TypeError("tempered_rw_mh: selected choices must be continuous")
        s = sigma.reshape(sigma.shape + (1,) * (v.ndim - sigma.ndim))
        moved = moved.set_submap(path, ChoiceMap(v + s * mx.random.normal(v.shape, key=k)))
    new = trace.gen_fn.update(trace, moved).trace
    w = new.score - trace.score
    d_lik = trace.gen_fn.project(new, observed) - trace.gen_fn.project(trace, observed)
    log_alpha = (w - d_lik) + mx.array(beta, dtype=mx.float32) * d_lik
    return accept_reject(k_acc, log_alpha, new, trace)


def _take(trace: Trace, idx: mx.array) -> Trace:
    """Batch elements ``idx`` of a batched trace (arguments are shared, kept as is)."""
    leaves, td = flatten(trace._replace(args=()))
    out: Trace = unflatten(td, [mx.take(v, idx, axis=0) for v in leaves])
    return out._replace(args=trace.args)


@renamed_arguments(observed="observations")
def tempered_swap(
    trace: Trace,
    observations: Selection | ChoiceMap | dict[Any, Any],
    betas: mx.array,
    parity: int,
    *,
    key: Key = None,
) -> tuple[Trace, SwapInfo]:
    """Swap states between adjacent temperatures ``(k, k+1)``, ``k ≡ parity (mod 2)``.

    With ``ℓ_k = log p(y | x_k)`` the swap of replicas ``k`` and ``k+1`` is accepted with

    .. math:: \\log α = (β_k − β_{k+1})(ℓ_{k+1} − ℓ_k).

    Args:
        trace: batched trace with ``batch_shape == (n_chains · K,)`` (element
            ``c·K + k`` is replica ``k`` of run ``c``).
        observations: the observed choices (a ChoiceMap or dict, or a Selection of their
            addresses; ``observed=`` is the deprecated name).
        betas: the ``K`` inverse temperatures.
        parity: 0 or 1, which pairs to attempt (a Python int).
        key: PRNG key.

    Returns:
        ``(new_trace, info)``: a :class:`~genmlx.infer.kernel_info.SwapInfo` whose
        ``accepted`` (the pair swapped) and ``attempted`` have shape
        ``[n_chains, K − 1]``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     x = normal(0.0, 1.0) @ "x"
        ...     normal(x, 1.0) @ "y"
        >>> tr, _ = m.vgenerate((), {"y": 1.0}, 6, key=mx.random.key(0))
        >>> tr2, info = tempered_swap(tr, select("y"), mx.array([1.0, 0.5, 0.1]), 0,
        ...                           key=mx.random.key(1))
        >>> info.accepted.shape
        (2, 2)
    """
    observed = _observed(observations, "tempered_swap")
    b = mx.array(betas, dtype=mx.float32)
    n_temps = b.shape[0]
    n = trace.batch_shape[0]
    n_chains = n // n_temps
    ell = trace.gen_fn.project(trace, observed).reshape(n_chains, n_temps)
    log_alpha = (b[:-1] - b[1:]) * (ell[:, 1:] - ell[:, :-1])
    u = mx.random.uniform(shape=log_alpha.shape, key=resolve_key(key))
    attempt = (mx.arange(n_temps - 1) % 2) == parity
    swapped = mx.logical_and(attempt, mx.log(u) < log_alpha)
    a = swapped.astype(mx.int32)
    zero = mx.zeros((n_chains, 1), dtype=mx.int32)
    up = mx.concatenate([a, zero], axis=1)  # replica k takes k+1's state
    down = mx.concatenate([zero, a], axis=1)  # replica k+1 takes k's state
    perm = mx.arange(n_temps)[None, :] + up - down
    idx = (mx.arange(n_chains)[:, None] * n_temps + perm).reshape(-1)
    return _take(trace, idx), SwapInfo(swapped, mx.broadcast_to(attempt, swapped.shape))


def parallel_tempering(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | dict[Any, Any],
    betas: Sequence[float] | mx.array,
    *,
    selection: Selection,
    step_size: float | Sequence[float] | mx.array,
    n_steps: int,
    key: Key = None,
    n_chains: int = 1,
    burn_in: int = 0,
    thin: int = 1,
    addresses: Sequence[Address] | None = None,
) -> PTResult:
    """Parallel tempering with tempered random-walk MH; returns the β = 1 chain's samples.

    ``K = len(betas)`` replicas per run (``betas[0]`` must be 1, decreasing), ``n_chains``
    independent runs, all in one batched trace started from ``model.vgenerate`` (the
    prior over latents). Each of the ``n_steps`` sweeps is one :func:`tempered_rw_mh`
    step in every replica followed by :func:`tempered_swap` on the pairs of parity
    ``sweep % 2``. Sweep ``s`` uses key ``mx.random.split(key, n_steps)[s]``; kept sweeps
    are ``s = burn_in + thin·j``.

    Args:
        model: the model.
        args: its arguments.
        observations: the observed choices (their log density is tempered).
        betas: inverse temperatures ``1 = β_0 > … > β_{K−1} ≥ 0``.
        selection: the continuous latent choices to move.
        step_size: random-walk scale, one for all replicas or one per temperature
            (hotter replicas usually want larger steps, e.g. ``σ_0 / sqrt(β_k)``).
        n_steps: number of sweeps.
        key: PRNG key.
        n_chains: number of independent PT runs.
        burn_in: sweeps discarded before recording.
        thin: record every ``thin``-th sweep after burn-in.
        addresses: addresses whose β = 1 values to record.

    Returns:
        :class:`PTResult`.

    Raises:
        ValueError: bad ``betas``, ``step_size`` shape or step counts.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     x = normal(0.0, 2.0) @ "x"
        ...     normal(x * x, 0.1) @ "y"
        >>> res = parallel_tempering(m, (), {"y": 4.0}, [1.0, 0.1, 0.01],
        ...                          selection=select("x"), step_size=[0.05, 0.2, 1.0],
        ...                          n_steps=50, n_chains=8, key=mx.random.key(0),
        ...                          addresses=["x"])
        >>> res.samples["x"].shape
        (50, 8)
    """
    b = mx.array(betas if isinstance(betas, mx.array) else list(betas), dtype=mx.float32)
    if b.ndim != 1 or b.shape[0] < 2:
        raise ValueError("parallel_tempering: betas must be a vector of at least 2 values")
    bl: list[float] = b.tolist()  # type: ignore[assignment]
    if abs(bl[0] - 1.0) > 1e-6 or any(x <= y for x, y in pairwise(bl)) or bl[-1] < 0:
        raise ValueError("parallel_tempering: betas must decrease from 1 to a value >= 0")
    op = "parallel_tempering"
    checks.count(n_steps, "n_steps", op)
    checks.count(n_chains, "n_chains", op)
    checks.count(burn_in, "burn_in", op, minimum=0)
    if burn_in >= n_steps:
        raise ValueError("parallel_tempering: burn_in must be an int in [0, n_steps)")
    checks.count(thin, "thin", op)
    checks.selection(selection, op)
    n_temps = b.shape[0]
    sig = mx.array(
        step_size if isinstance(step_size, (int, float, mx.array)) else list(step_size),
        dtype=mx.float32,
    )
    if sig.ndim == 0:
        sig = mx.broadcast_to(sig, (n_temps,))
    if sig.shape != (n_temps,):
        raise ValueError("parallel_tempering: step_size must be a scalar or one per beta")
    checks.positive_scalar(sig, "step_size", op)
    obs = observations if isinstance(observations, ChoiceMap) else choicemap(observations)
    observed = select(*obs.addresses())
    key = checks.key(key, op)
    k_init, k_run = mx.random.split(key)
    n = n_chains * n_temps
    trace, _ = model.vgenerate(tuple(args), obs, n, key=k_init)
    beta_all = mx.tile(b, (n_chains,))
    sig_all = mx.tile(sig, (n_chains,))
    addrs = list(addresses) if addresses is not None else []
    recorded: dict[Address, list[mx.array]] = {a: [] for a in addrs}
    acc_total = mx.zeros((n,))
    swap_total = mx.zeros((n_chains, n_temps - 1))
    for s, k in enumerate(mx.random.split(k_run, n_steps)):
        k_mh, k_sw = mx.random.split(k)
        trace, info = tempered_rw_mh(trace, selection, observed, beta_all, sig_all, key=k_mh)
        trace, swap = tempered_swap(trace, observed, b, s % 2, key=k_sw)
        acc_total = acc_total + info.accepted.astype(mx.float32)
        swap_total = swap_total + swap.accepted.astype(mx.float32)
        if s >= burn_in and (s - burn_in) % thin == 0:
            for a in addrs:
                v = trace[a]
                recorded[a].append(v.reshape(n_chains, n_temps, *v.shape[1:])[:, 0])
        mx.eval(flatten(trace)[0], acc_total, swap_total, [v[-1] for v in recorded.values() if v])
    attempts = mx.array([(n_steps + (1 - k % 2)) // 2 for k in range(n_temps - 1)], mx.float32)
    samples = {a: mx.stack(v) for a, v in recorded.items()}
    return PTResult(
        samples, trace, (acc_total / n_steps).reshape(n_chains, n_temps), swap_total / attempts
    )
