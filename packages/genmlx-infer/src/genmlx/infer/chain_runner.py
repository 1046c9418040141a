"""The chain runner: :func:`chain` runs a kernel for many steps and records values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import Trace, runtime
from genmlx.core.address import Address
from genmlx.core.random import Key
from genmlx.core.tree import flatten
from genmlx.infer import _checks as checks
from genmlx.infer import _sharding
from genmlx.infer.kernel_combinators import Kernel
from genmlx.infer.kernel_info import acceptance

__all__ = ["ChainResult", "chain"]


# ---------------------------------------------------------------------- chain runner
class ChainResult(NamedTuple):
    """Result of :func:`chain`.

    Attributes:
        trace: the final state.
        samples: ``{address: [n_kept, *batch_shape, ...]}`` for the requested addresses
            (draws first: one row per kept step, as the steps are recorded).
        acceptance_rate: the mean of ``info.accepted`` over all steps, per chain
            (shape ``batch_shape``).

    The diagnostics (:func:`~genmlx.infer.ess_bulk`, :func:`~genmlx.infer.rhat`,
    :func:`~genmlx.infer.summary`) take the result itself and read its ``layout``;
    ``draws`` gives the samples in ArviZ's ``[chain, draw, ...]`` layout, the one
    :func:`~genmlx.infer.mcmc` returns.
    """

    trace: Trace
    samples: dict[Address, mx.array]
    acceptance_rate: mx.array

    @property
    def layout(self) -> str:
        """``"draw_chain"`` for a batched trace (``[draws, chains, ...]``), ``"draw"``
        for a single one."""
        return "draw_chain" if len(self.trace.batch_shape) == 1 else "draw"

    @property
    def draws(self) -> dict[Address, mx.array]:
        """The samples as ``[chain, draw, ...]`` (one chain: a leading axis of 1)."""
        if self.layout == "draw":
            return {a: v[None] for a, v in self.samples.items()}
        return {a: mx.swapaxes(v, 0, 1) for a, v in self.samples.items()}


def chain(
    kernel: Kernel,
    trace: Trace,
    n_steps: int,
    *,
    key: Key = None,
    burn_in: int = 0,
    thin: int = 1,
    addresses: Sequence[Address] | None = None,
    progress: bool = False,
    group: Any = None,
    exact: bool = True,
) -> ChainResult:
    """Run ``kernel`` for ``n_steps`` steps and record the values of ``addresses``.

    Step ``s`` uses key ``mx.random.split(key, n_steps)[s]``. Kept steps are
    ``s = burn_in + thin·j`` (0-based step index counted after the move). The loop is
    over steps only (chains are the trace's batch), so the whole call can be wrapped in
    :func:`genmlx.core.compile`.

    Args:
        kernel: ``kernel(trace, *, key) -> (trace, info)`` (use ``functools.partial``
            to bind a kernel's extra arguments).
        trace: the initial state (single or batched).
        n_steps: number of steps.
        key: PRNG key.
        burn_in: steps discarded before recording.
        thin: record every ``thin``-th step after burn-in.
        addresses: addresses whose values to record (``None``: none).
        progress: show a progress bar (needs ``tqdm``, an optional dependency:
            ``pip install tqdm``; eager runs only).
        group: an ``mx.distributed`` group (default: the
            :func:`~genmlx.infer.distributed.use_group` default, else none): ``trace``
            holds this process's chains, and chain ``i`` of all ``N`` steps at step ``s`` with key
            ``split(split(key, n_steps)[s], N)[i]`` on its own trace, so the chains do
            not depend on the number of processes (see
            :mod:`genmlx.infer.distributed.mcmc`).
        exact: with ``group``: ``True`` runs the kernel on each chain's own trace under
            ``mx.vmap`` with its global key (bit-for-bit the chains of any number of
            processes); ``False`` runs it batched on this process's chains with a key of
            the process's own — faster for kernels that stop early on values (``nuts``).

    Returns:
        :class:`ChainResult` ``(trace, samples, acceptance_rate)``.

    Example:
        >>> import mlx.core as mx
        >>> from functools import partial
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> tr, _ = model.vgenerate((), {"y": 1.0}, 10, key=mx.random.key(0))
        >>> res = chain(partial(mh, selection_or_proposal=select("mu")), tr, 20,
        ...             key=mx.random.key(1), addresses=["mu"])
        >>> res.samples["mu"].shape      # [draws, chains]
        (20, 10)
        >>> res.draws["mu"].shape        # [chain, draw], as mcmc() and ArviZ
        (10, 20)
    """
    g = _sharding.group_for(group, "chain")
    if g is not None:
        from genmlx.infer.distributed.mcmc import chain as sharded

        return sharded(
            kernel,
            trace,
            n_steps,
            key=key,
            burn_in=burn_in,
            thin=thin,
            addresses=addresses,
            progress=progress,
            group=g,
            exact=exact,
        )
    if not callable(kernel):
        raise TypeError(f"chain: kernel must be a kernel function, got {type(kernel).__name__}")
    checks.trace(trace, "chain")
    checks.count(n_steps, "n_steps", "chain")
    checks.count(burn_in, "burn_in", "chain", minimum=0)
    if burn_in >= n_steps:
        raise ValueError(f"chain: burn_in must be an int in [0, n_steps), got {burn_in!r}")
    checks.count(thin, "thin", "chain")
    if addresses is not None and isinstance(addresses, (str, int)):
        raise TypeError(
            "chain: addresses must be a list of addresses, e.g. ['mu'] or [('y', 0)], "
            f"got {addresses!r}"
        )
    addrs = list(addresses) if addresses is not None else []
    keys = mx.random.split(checks.key(key, "chain"), n_steps)
    recorded: dict[Address, list[mx.array]] = {a: [] for a in addrs}
    total = mx.zeros(trace.batch_shape)
    eager = not runtime.in_transform()
    steps: Any = range(n_steps)
    if progress and eager:
        try:
            from tqdm.auto import tqdm
        except ImportError as e:  # an optional extra, so the error says what to install
            raise ImportError("chain(progress=True) needs tqdm: pip install tqdm") from e
        steps = tqdm(steps, desc="chain", unit="step")
    for s in steps:
        trace, info = kernel(trace, key=keys[s])
        total = total + acceptance(info, "chain").astype(mx.float32)
        if s >= burn_in and (s - burn_in) % thin == 0:
            for a in addrs:
                recorded[a].append(trace[a])
        if eager:
            # keep the lazy graph one step deep in the interpreted loop
            mx.eval(flatten(trace)[0], total, [v[-1] for v in recorded.values() if v])
    samples = {a: mx.stack(v) for a, v in recorded.items()}
    return ChainResult(trace, samples, total / n_steps)
