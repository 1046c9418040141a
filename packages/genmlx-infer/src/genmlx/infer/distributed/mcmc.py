"""Many chains across processes: the chain runner, pooled NUTS warm-up, and sharded
initial states.

Process ``r`` holds chains ``[lo_r, hi_r)`` of ``N`` (any split: every process says how
many chains it holds). At step ``s`` chain ``i`` applies the kernel to its own trace with
key ``mx.random.split(split(key, n_steps)[s], N)[i]``, so the chains do not depend on the
number of processes: the sharded run's chains are, bit for bit, those of the same call
on one process. For kernels defined per chain (``mh``, ``involutive_mh``) they are also
the chains of the single-process batched :func:`genmlx.infer.chain`; for kernels that
draw noise for the whole batch at once (``hmc``, ``mala``, ``nuts``, ``gibbs``,
``elliptical_slice``, a ``cycle`` of kernels) they are the per-chain version of that
kernel. ``exact=False`` trades this for speed with kernels that stop on values (see
:func:`chain`).

Diagnostics over all chains: pass ``group=`` to :func:`genmlx.infer.rhat`,
:func:`genmlx.infer.ess_bulk`, :func:`genmlx.infer.summary`, ... with this process's
draws; they gather the chains (``[chains, draws, ...]``, rank order) and compute the
statistic on all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Selection, Trace
from genmlx.core.address import Address
from genmlx.core.batching import take_particles
from genmlx.core.random import Key
from genmlx.infer.adaptation import find_step_size as _find_step_size
from genmlx.infer.adaptation import windows as _windows
from genmlx.infer.chain_runner import ChainResult
from genmlx.infer.distributed import _particles
from genmlx.infer.distributed._comm import (
    balanced_layout,
    gather_rows,
    layout_from_local,
    local_only,
    shared_key,
)
from genmlx.infer.importance import _check_inputs
from genmlx.infer.mass_matrix import regularized_mass
from genmlx.infer.nuts_kernel import NutsInfo, NutsWarmup, nuts
from genmlx.infer.targets import target

__all__ = ["chain", "nuts_warmup", "vgenerate", "vsimulate"]

_KernelFn = Callable[..., tuple[Trace, mx.array]]


def _chains(trace: Trace, op: str) -> tuple[Trace, bool]:
    """``(batched trace, was_single)``: a single trace is one chain."""
    if not isinstance(trace, Trace):
        raise TypeError(f"{op}: trace must be a Trace, got {type(trace).__name__}")
    if trace.batch_shape == ():
        return _particles.add_batch_axis(trace), True
    if len(trace.batch_shape) != 1:
        raise ValueError(
            f"{op}: the trace must hold this process's chains with batch_shape (n,) "
            f"(or be one chain), got batch_shape {trace.batch_shape}"
        )
    return trace, False


def chain(
    kernel: _KernelFn,
    trace: Trace,
    n_steps: int,
    *,
    key: Key,
    burn_in: int,
    thin: int,
    addresses: Sequence[Address] | None,
    progress: bool,
    group: Any,
    exact: bool = True,
) -> ChainResult:
    """Sharded :func:`genmlx.infer.chain`: ``trace`` holds this process's chains; the
    result holds them too (``samples[a]`` is ``[n_kept, n_local, ...]``).

    With ``exact`` (the default) chain ``i`` runs the kernel on its own trace with its
    global key (module docstring). With ``exact=False`` each process runs the kernel
    batched on its chains with key ``split(k_s, P)[r]`` at step ``s`` (one process: the
    plain :func:`genmlx.infer.chain`): the chains then depend on the number of
    processes, but a kernel that stops on values — ``nuts``, whose trajectories end at
    their U-turn only outside ``mx.vmap`` (under it every chain integrates the full
    ``2^max_depth − 1`` steps) — runs at its single-process speed."""
    from genmlx.infer.chain_runner import chain as local_chain

    op = "chain"
    if not callable(kernel):
        raise TypeError(f"{op}: kernel must be callable, got {type(kernel).__name__}")
    batched, single = _chains(trace, op)
    extra = [v if isinstance(v, int) else -1 for v in (n_steps, burn_in, thin)]
    layout, key = layout_from_local(batched.batch_shape[0], group, op, key, extra)

    size, rank = group.size(), group.rank()

    def step(tr: Trace, *, key: Key = None) -> tuple[Trace, mx.array]:
        if exact:
            return _particles.kernel_step(kernel, tr, cast(mx.array, key), layout)
        k = cast(mx.array, key) if size == 1 else mx.random.split(cast(mx.array, key), size)[rank]
        return kernel(tr, key=k)

    with local_only():
        res = local_chain(
            step,
            batched,
            n_steps,
            key=key,
            burn_in=burn_in,
            thin=thin,
            addresses=addresses,
            progress=progress and group.rank() == 0,
        )
    if not single:
        return res
    one = mx.array(0)
    return ChainResult(
        take_particles(res.trace, one),
        {a: v[:, 0] for a, v in res.samples.items()},
        res.acceptance_rate[0],
    )


# ---------------------------------------------------------------------- initial states
def vgenerate(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | dict[Any, Any] | None,
    n: int,
    *,
    key: Key = None,
    group: Any,
) -> Trace:
    """This process's share of ``model.vgenerate(args, observations, n, key=key)``.

    Process ``r`` gets particles ``[⌊rn/P⌋, ⌊(r+1)n/P⌋)`` — exactly those of the
    single-process batched call — as a batched trace: initial states for sharded chains.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 1.0) @ "x"
        >>> g = mx.distributed.init()   # one process here: all 8 particles
        >>> vgenerate(m, (), None, 8, key=mx.random.key(0), group=g).batch_shape
        (8,)
    """
    op = "vgenerate"
    obs = _check_inputs(model, args, observations, n, None, op)
    layout = balanced_layout(n, group, op, "n")
    key = shared_key(key, group, op, (n,))
    with local_only():
        tr, _ = _particles.generate(model, tuple(args), obs, None, (), key, layout)
    return tr


def vsimulate(
    model: GenerativeFunction, args: tuple[Any, ...], n: int, *, key: Key = None, group: Any
) -> Trace:
    """This process's share of ``model.vsimulate(args, n, key=key)`` (see
    :func:`vgenerate`)."""
    op = "vsimulate"
    _check_inputs(model, args, None, n, None, op)
    layout = balanced_layout(n, group, op, "n")
    key = shared_key(key, group, op, (n,))
    with local_only():
        return _particles.simulate(model, tuple(args), key, layout)


# ---------------------------------------------------------------------- NUTS warm-up
class _Welford:
    """Per-chain running mean and centred second moments (element-wise updates, so every
    chain's numbers are the same whichever batch it is computed in)."""

    def __init__(self, n: int, d: int, dense: bool) -> None:
        self.count = 0
        self.mean = mx.zeros((n, d), dtype=mx.float32)
        self.m2 = mx.zeros((n, d, d) if dense else (n, d), dtype=mx.float32)
        self.dense = dense

    def add(self, x: mx.array) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean = self.mean + delta / self.count
        after = x - self.mean
        if self.dense:
            self.m2 = self.m2 + delta[:, :, None] * after[:, None, :]
        else:
            self.m2 = self.m2 + delta * after


def _pooled_inverse_mass(
    mean: mx.array, m2: mx.array, count: int, dense: bool
) -> mx.array:
    """Stan's regularised inverse-variance (or inverse-covariance) from per-chain window
    moments ``[C, d]``/``[C, d(, d)]`` of ``count`` draws each, pooled over the chains
    (Chan et al.'s combination of the per-chain sums of squares)."""
    c, d = mean.shape
    n = count * c
    grand = mx.mean(mean, axis=0)
    dev = mean - grand
    if dense:
        between = count * mx.sum(dev[:, :, None] * dev[:, None, :], axis=0)
        return regularized_mass((mx.sum(m2, axis=0) + between) / (n - 1), n, dense=True)
    var = (mx.sum(m2, axis=0) + count * mx.sum(dev * dev, axis=0)) / (n - 1)
    return regularized_mass(var, n, dense=False)


def nuts_warmup(
    trace: Trace,
    selection: Selection,
    n_steps: int,
    *,
    key: Key,
    group: Any,
    pool: bool = True,
    exact: bool = True,
    per_chain: bool = False,
    target_accept: float = 0.8,
    step_size: float = 0.1,
    max_depth: int = 10,
    adapt_mass: bool = True,
    dense_mass: bool = False,
    find_step_size: bool = True,
    init_buffer: int = 75,
    term_buffer: int = 50,
    base_window: int = 25,
) -> NutsWarmup:
    """Stan's NUTS warm-up (see :func:`genmlx.infer.nuts_warmup`) over chains spread
    across processes.

    **Pooled over all processes** (``pool=True``, ``per_chain=False``): every process
    gets the same step size and mass. The acceptance statistic of each transition is the
    mean over all ``N`` chains (the per-chain statistics are gathered, ``N`` numbers);
    Stan's step-size heuristic uses that mean; at the end of each slow window the mass
    comes from every chain's window moments (per-chain mean and centred sums of squares
    of the sampler's coordinates — ``N·d`` numbers, ``N·d²`` with ``dense_mass`` —
    gathered and combined). All of it is reduced in global chain order on every process.
    With ``exact`` (the default) chain ``i`` makes its transitions with its global keys
    under ``mx.vmap`` (as in :func:`chain`), so the adapted values and the chains are
    bit for bit those of the same call on one process; under ``mx.vmap`` NUTS cannot stop
    a trajectory at its U-turn and integrates ``2^max_depth − 1`` steps, so keep
    ``max_depth`` modest there or pass ``exact=False`` (each process runs batched NUTS on
    its chains with a key of its own: early termination, results depending on the number
    of processes).

    **Per process** (``pool=False``) or **per chain** (``per_chain=True``): no adaptation
    statistic crosses processes, so each process runs the single-process
    :func:`genmlx.infer.nuts_warmup` on its chains with key ``split(key, P)[r]``.
    """
    from genmlx.infer.nuts_kernel import nuts_warmup as local_warmup

    op = "nuts_warmup"
    if not isinstance(selection, Selection):
        raise TypeError(f"{op}: selection must be a Selection, got {type(selection).__name__}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"{op}: n_steps must be a positive int, got {n_steps!r}")
    if not isinstance(max_depth, int) or max_depth < 1:
        raise ValueError(f"{op}: max_depth must be an int of at least 1, got {max_depth!r}")
    batched, single = _chains(trace, op)
    pooled_mode = pool and not per_chain
    extra = (n_steps, int(pool), int(per_chain), int(exact), max_depth, int(dense_mass))
    layout, shared = layout_from_local(batched.batch_shape[0], group, op, key, extra)
    key = cast(mx.array, shared)
    size, rank = group.size(), group.rank()
    own_key = key if size == 1 else mx.random.split(key, size)[rank]
    if not pooled_mode:
        with local_only():
            return local_warmup(
                trace, selection, n_steps, key=own_key, target_accept=target_accept,
                step_size=step_size, max_depth=max_depth, adapt_mass=adapt_mass,
                dense_mass=dense_mass, per_chain=per_chain, find_step_size=find_step_size,
                init_buffer=init_buffer, term_buffer=term_buffer, base_window=base_window,
            )
    n_local = layout.n_local
    d = target(batched, selection, op).dim
    gamma, t0, kappa = 0.05, 10.0, 0.75
    mass = mx.eye(d, dtype=mx.float32) if dense_mass else mx.ones((d,), dtype=mx.float32)
    first_slow, end_list = _windows(n_steps, init_buffer, term_buffer, base_window)
    ends = set(end_list) if adapt_mass else set()

    def transition(
        tr: Trace, k: mx.array, eps: mx.array, m: mx.array, depth: int
    ) -> tuple[Trace, NutsInfo]:
        def kern(t: Trace, *, key: mx.array) -> tuple[Trace, NutsInfo]:
            return nuts(t, selection, key=key, step_size=eps, max_depth=depth, mass=m)

        with local_only():
            if exact:
                new, info = _particles.kernel_step(kern, tr, k, layout)
            else:
                new, info = kern(tr, key=k if size == 1 else mx.random.split(k, size)[rank])
        return new, cast(NutsInfo, info)

    def mean_accept(info: NutsInfo) -> mx.array:
        a = info.accept_prob.astype(mx.float32)
        return mx.mean(gather_rows(mx.where(mx.isnan(a), 0.0, a), layout, group))

    def heuristic(eps0: float, k: mx.array, m: mx.array) -> mx.array:
        def one_step_accept(e: mx.array, kk: mx.array) -> mx.array:
            _, info = transition(batched, kk, e[0], m, 1)
            return mx.broadcast_to(mean_accept(info), e.shape)

        found = _find_step_size(one_step_accept, mx.array([eps0]), k, per_chain=False)
        return found[0]

    eps = mx.array(step_size, dtype=mx.float32)
    if find_step_size:
        key, sub = mx.random.split(key)
        eps = heuristic(step_size, sub, mass)
    mu = math.log(10.0) + mx.log(eps)
    log_eps_bar = mx.array(0.0)
    h_bar = mx.array(0.0)
    count = 0
    window = _Welford(n_local, d, dense_mass)
    for t in range(n_steps):
        key, sub = mx.random.split(key)
        batched, info = transition(batched, sub, eps, mass, max_depth)
        count += 1
        alpha = mx.minimum(mean_accept(info), 1.0)
        eta = 1.0 / (count + t0)
        h_bar = (1.0 - eta) * h_bar + eta * (target_accept - alpha)
        log_eps = mu - math.sqrt(count) / gamma * h_bar
        w = count ** (-kappa)
        log_eps_bar = w * log_eps + (1.0 - w) * log_eps_bar
        eps = mx.exp(log_eps)
        if adapt_mass and t >= first_slow:
            window.add(target(batched, selection, op).position.reshape(n_local, d))
        if t + 1 in ends:
            mean = gather_rows(window.mean, layout, group)
            m2 = gather_rows(window.m2, layout, group)
            mass = _pooled_inverse_mass(mean, m2, window.count, dense_mass)
            window = _Welford(n_local, d, dense_mass)
            if find_step_size:
                key, sub = mx.random.split(key)
                eps = heuristic(cast(float, eps.item()), sub, mass)
            mu = math.log(10.0) + mx.log(eps)
            count = 0
            h_bar = mx.array(0.0)
            log_eps_bar = mx.array(0.0)
        mx.eval(batched.score, eps, mass, log_eps_bar, h_bar, mu, window.mean, window.m2)
    final = mx.exp(log_eps_bar) if count > 0 else eps
    out = take_particles(batched, mx.array(0)) if single else batched
    return NutsWarmup(final.astype(mx.float32), mass, out)
