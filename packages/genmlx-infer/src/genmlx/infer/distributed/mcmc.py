"""Many chains across processes: the chain runner, pooled NUTS warm-up, and sharded
initial states.

Process ``r`` holds chains ``[lo_r, hi_r)`` of ``N`` (any split: every process says how
many chains it holds). At step ``s`` chain ``i`` applies the kernel to its own trace with
key ``mx.random.split(split(key, n_steps)[s], N)[i]``, so the chains do not depend on the
number of processes: the sharded run's chains are, bit for bit, those of the same call
on one process. For kernels defined per chain (``mh``, ``involutive_mh``, ``gibbs``...)
they are also the chains of the single-process batched :func:`genmlx.infer.chain`; for
kernels that draw noise for the whole batch at once (``hmc``, ``mala``, ``nuts``, a
``cycle`` of kernels) they are the per-chain version of that kernel.

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
from genmlx.infer.distributed import _particles
from genmlx.infer.distributed._comm import (
    balanced_layout,
    gather_rows,
    layout_from_local,
    local_only,
    shared_key,
)
from genmlx.infer.gradient_kernels import _flatten_selected
from genmlx.infer.importance import _check_inputs
from genmlx.infer.mh import ChainResult
from genmlx.infer.nuts import NutsInfo, NutsWarmup, _init_step_size, _windows, nuts_info

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
) -> ChainResult:
    """Sharded :func:`genmlx.infer.chain`: ``trace`` holds this process's chains; the
    result holds them too (``samples[a]`` is ``[n_kept, n_local, ...]``)."""
    from genmlx.infer.mh import chain as local_chain

    op = "chain"
    if not callable(kernel):
        raise TypeError(f"{op}: kernel must be callable, got {type(kernel).__name__}")
    batched, single = _chains(trace, op)
    extra = [v if isinstance(v, int) else -1 for v in (n_steps, burn_in, thin)]
    layout, key = layout_from_local(batched.batch_shape[0], group, op, key, extra)

    def step(tr: Trace, *, key: Key = None) -> tuple[Trace, mx.array]:
        return _particles.kernel_step(kernel, tr, cast(mx.array, key), layout)

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
        cov = (mx.sum(m2, axis=0) + between) / (n - 1)
        shrink, reg = n / (n + 5.0), 1e-3 * (5.0 / (n + 5.0))
        cov = shrink * cov + reg * mx.eye(d)
        inv = mx.linalg.inv(cov, stream=mx.cpu).astype(mx.float32)
        return 0.5 * (inv + inv.T)
    var = (mx.sum(m2, axis=0) + count * mx.sum(dev * dev, axis=0)) / (n - 1)
    shrink, reg = n / (n + 5.0), 1e-3 * (5.0 / (n + 5.0))
    return (1.0 / (shrink * var + reg)).astype(mx.float32)


def nuts_warmup(
    trace: Trace,
    selection: Selection,
    n_steps: int,
    *,
    key: Key,
    group: Any,
    pool: bool = True,
    target_accept: float = 0.8,
    step_size: float = 0.1,
    max_depth: int = 8,
    adapt_mass: bool = True,
    dense_mass: bool = False,
    find_step_size: bool = True,
    init_buffer: int = 75,
    term_buffer: int = 50,
    base_window: int = 25,
) -> NutsWarmup:
    """Stan's NUTS warm-up (see :func:`genmlx.infer.nuts_warmup`) over chains spread
    across processes.

    Chain ``i`` makes its NUTS transitions with its global keys (as in :func:`chain`).
    With ``pool=True`` the adaptation pools all ``N`` chains of all processes, so every
    process gets the same step size and mass: the acceptance statistic of each
    transition is the mean over all chains (the per-chain statistics are gathered, ``N``
    numbers), Stan's step-size heuristic uses that mean, and at the end of each slow
    window the mass comes from every chain's window moments (per-chain mean and centred
    sums of squares — ``N·d`` numbers, ``N·d²`` with ``dense_mass`` — gathered and
    combined). All of it is reduced in global chain order on every process, so the
    adapted values, and the chains, are bit for bit those of the same call on one
    process. With ``pool=False`` each process adapts on its own chains (no
    communication; step size and mass differ between processes).
    """
    op = "nuts_warmup"
    if not isinstance(selection, Selection):
        raise TypeError(f"{op}: selection must be a Selection, got {type(selection).__name__}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"{op}: n_steps must be a positive int, got {n_steps!r}")
    batched, single = _chains(trace, op)
    extra = (n_steps, int(pool), max_depth, int(dense_mass))
    layout, shared = layout_from_local(batched.batch_shape[0], group, op, key, extra)
    key = cast(mx.array, shared)
    flat = _flatten_selected(batched, selection, op)
    d = flat.x.shape[-1]
    n_local = layout.n_local
    gamma, t0, kappa = 0.05, 10.0, 0.75
    mass = mx.eye(d, dtype=mx.float32) if dense_mass else mx.ones((d,), dtype=mx.float32)
    first_slow, end_list = _windows(n_steps, init_buffer, term_buffer, base_window)
    ends = set(end_list) if adapt_mass else set()

    def pooled(x: mx.array) -> mx.array:
        return gather_rows(x, layout, group) if pool else x

    def transition(
        tr: Trace, k: mx.array, eps: mx.array, m: mx.array, depth: int
    ) -> tuple[Trace, NutsInfo]:
        def kern(t: Trace, *, key: mx.array) -> tuple[Trace, NutsInfo]:
            return nuts_info(t, selection, key=key, step_size=eps, max_depth=depth, mass=m)

        with local_only():
            new, info = _particles.kernel_step(kern, tr, k, layout)
        return new, cast(NutsInfo, info)

    def one_step(tr: Trace, k: mx.array, eps: mx.array, m: mx.array) -> tuple[Trace, NutsInfo]:
        new, info = transition(tr, k, eps, m, 1)
        return new, info._replace(accept_prob=pooled(info.accept_prob))

    if find_step_size:
        key, sub = mx.random.split(key)
        step_size = _init_step_size(batched, selection, step_size, mass, sub, one_step)
    eps = mx.array(step_size, dtype=mx.float32)
    mu = mx.array(math.log(10.0 * step_size), dtype=mx.float32)
    log_eps_bar = mx.array(0.0)
    h_bar = mx.array(0.0)
    count = 0
    window = _Welford(n_local, d, dense_mass)
    for t in range(n_steps):
        key, sub = mx.random.split(key)
        batched, info = transition(batched, sub, eps, mass, max_depth)
        count += 1
        alpha = mx.minimum(mx.mean(pooled(info.accept_prob)), 1.0)
        eta = 1.0 / (count + t0)
        h_bar = (1.0 - eta) * h_bar + eta * (target_accept - alpha)
        log_eps = mu - math.sqrt(count) / gamma * h_bar
        w = count ** (-kappa)
        log_eps_bar = w * log_eps + (1.0 - w) * log_eps_bar
        eps = mx.exp(log_eps)
        if adapt_mass and t >= first_slow:
            window.add(_flatten_selected(batched, selection, op).x.reshape(n_local, d))
        if t + 1 in ends:
            mean, m2 = window.mean, window.m2
            if pool:
                mean = gather_rows(mean, layout, group)
                m2 = gather_rows(m2, layout, group)
            mass = _pooled_inverse_mass(mean, m2, window.count, dense_mass)
            window = _Welford(n_local, d, dense_mass)
            if find_step_size:
                key, sub = mx.random.split(key)
                eps = mx.array(
                    _init_step_size(
                        batched, selection, cast(float, eps.item()), mass, sub, one_step
                    ),
                    dtype=mx.float32,
                )
            mu = math.log(10.0) + mx.log(eps)
            count = 0
            h_bar = mx.array(0.0)
            log_eps_bar = mx.array(0.0)
        mx.eval(batched.score, eps, mass, log_eps_bar, h_bar, mu, window.mean, window.m2)
    final = mx.exp(log_eps_bar) if count > 0 else eps
    out = take_particles(batched, mx.array(0)) if single else batched
    return NutsWarmup(final.astype(mx.float32), mass, out)


