"""Sharded sequential Monte Carlo: a particle filter whose particles live on several
processes.

Process ``r`` holds particles ``[lo_r, hi_r)`` of ``N`` as an ordinary
:class:`~genmlx.infer.ParticleFilterState` (its particles, their log weights and an
accumulated log marginal likelihood). Steps, SMCP3 edits and rejuvenation are local:
particle ``i`` uses key ``mx.random.split(k, N)[i]`` as in the single-process filter
(rejuvenation: chain ``i`` runs the kernel on its own trace with that key).

**Global mode** (``mode="global"``, the default) is the single-process algorithm spread
over processes. Resampling gathers the ``N`` log weights on every process (``4N`` bytes
each), draws the ancestors there with the shared key — the single-process draw — and
moves only the particles whose ancestor lives on another process
(:mod:`genmlx.infer.distributed._exchange`). The accumulated log ML is updated from the
gathered weights, so it is bit-for-bit the single-process value;
:meth:`~genmlx.infer.distributed.ShardedParticleFilterState.ess` and
:attr:`~genmlx.infer.distributed.ShardedParticleFilterState.log_ml_estimate` combine the
processes' partial sums (a maximum and a sum over processes, a few numbers each). For
the same keys the particles, ancestors and log ML equal the single-process run's,
whatever the number of processes.

**Island mode** (``mode="island"``) runs ``P`` independent particle filters (islands)
that never exchange particles: process ``r`` resamples its own ``n_r`` particles, with
key ``mx.random.split(k, P)[r]``, and keeps its own accumulated log ML ``log Ẑ_acc,r``.
A particle's *global* log weight is ``log Ẑ_acc,r + log w_i``, and the estimate

.. math::

    \\hat Z = \\frac{1}{N} \\sum_r \\sum_{i \\in r} \\hat Z_{\\mathrm{acc},r}\\, w_i
          = \\sum_r \\frac{n_r}{N} \\hat Z_r

is the island-size-weighted average of the islands' own (unbiased) estimates
``Ẑ_r = Ẑ_acc,r · (1/n_r) Σ_{i∈r} w_i``, hence unbiased. Resampling moves no data
between processes; the price is the variance of ``P`` filters of ``N/P`` particles
instead of one of ``N`` (each island's resampling sees only its own particles).
``maybe_resample(t)`` resamples island ``r`` when its own ESS falls below
``t · n_r / N``. With one process, island mode is global mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, GenerativeFunction, Trace
from genmlx.core.deprecation import MethodNowProperty
from genmlx.core.diff import Diff, diff_args
from genmlx.core.edit import EditRequest
from genmlx.core.random import Key, resolve_key
from genmlx.infer.distributed import _particles
from genmlx.infer.distributed._comm import (
    Layout,
    balanced_layout,
    gather_rows,
    gather_scalars,
    gather_weights,
    global_logsumexp,
    local_only,
    shared_key,
)
from genmlx.infer.distributed._exchange import STRUCTURE, Thawed, fetch
from genmlx.infer.importance import _check_inputs
from genmlx.infer.smc import (
    RESAMPLING_METHODS,
    ParticleFilterState,
    _proposal_update,
    _smcp3_request,
    resample_indices,
)

__all__ = ["MODES", "ShardedParticleFilterState", "particle_filter"]

MODES = ("global", "island")
"""The resampling modes of a sharded particle filter."""


class ShardedParticleFilterState(NamedTuple):
    """One process's share of a sharded particle filter (see the module docstring).

    It offers the methods of :class:`~genmlx.infer.ParticleFilterState` — ``step``,
    ``edit``, ``smcp3_step``, ``resample``, ``maybe_resample``, ``rejuvenate``,
    ``ess``, ``log_ml_estimate``, ``normalized_weights`` — with global meaning, plus
    :meth:`gather`. Every process must call the same methods in the same order with the
    same arguments (and keys).

    Attributes:
        local: this process's particles as a :class:`~genmlx.infer.ParticleFilterState`.
        layout: how the ``N`` particles are split over the processes.
        group: the ``mx.distributed`` group.
        mode: ``"global"`` or ``"island"``.
    """

    local: ParticleFilterState
    layout: Layout
    group: Any
    mode: str

    # ------------------------------------------------------------------ views
    @property
    def traces(self) -> Trace:
        """This process's particles (a batched trace of ``n_local`` particles)."""
        return self.local.traces

    @property
    def log_weights(self) -> mx.array:
        """This process's unnormalised log weights, ``[n_local]``."""
        return self.local.log_weights

    @property
    def log_ml_accumulated(self) -> mx.array:
        """This process's accumulated log ML (the same on every process in global mode)."""
        return self.local.log_ml_accumulated

    @property
    def n_particles(self) -> int:
        """``N``, over all processes."""
        return self.layout.n_total

    @property
    def n_local(self) -> int:
        """The number of particles on this process."""
        return self.layout.n_local

    @property
    def offset(self) -> int:
        """The global index of this process's first particle."""
        return self.layout.lo

    def _global_log_weights(self) -> mx.array:
        return self.local.log_ml_accumulated + self.local.log_weights

    def _lse(self) -> tuple[mx.array, mx.array]:
        return global_logsumexp(self._global_log_weights(), self.group, "particle_filter")

    def ess(self) -> mx.array:
        """Kish ESS ``1 / Σ_i w̄_i²`` over all ``N`` particles (island mode: of the
        global weights ``Ẑ_acc,r w_i``); the same value on every process."""
        lse, lse2 = self._lse()
        return mx.exp(2.0 * lse - lse2)

    @property
    def log_ml_estimate(self) -> mx.array:
        """``log Ẑ = logsumexp_{r,i}(log Ẑ_acc,r + log w_i) − log N`` (global mode:
        ``log Ẑ_acc + logsumexp(log w) − log N``, the single-process estimate; a
        property)."""
        lse, _ = self._lse()
        return MethodNowProperty(
            lse - math.log(self.n_particles), "ShardedParticleFilterState.log_ml_estimate"
        )

    def normalized_weights(self) -> mx.array:
        """This process's particles' weights normalised over all ``N``, ``[n_local]``."""
        lse, _ = self._lse()
        return mx.exp(self._global_log_weights() - lse)

    # ------------------------------------------------------------------ moves
    def _with(self, traces: Trace, log_weights: mx.array, acc: mx.array | None = None) -> Any:
        acc = self.local.log_ml_accumulated if acc is None else acc
        return self._replace(local=ParticleFilterState(traces, log_weights, acc))

    def step(
        self,
        new_args: tuple[Any, ...],
        observations: ChoiceMap | Mapping[Any, Any] | None,
        *,
        argdiffs: tuple[Diff, ...] | None = None,
        proposal: GenerativeFunction | None = None,
        proposal_args: tuple[Any, ...] = (),
        key: Key = None,
    ) -> ShardedParticleFilterState:
        """:meth:`~genmlx.infer.smc.ParticleFilterState.step` on this process's particles,
        each with its global key (bootstrap or custom proposal)."""
        obs = _check_inputs(
            self.traces.gen_fn, new_args, observations, self.n_particles, proposal, "step"
        )
        if not isinstance(proposal_args, (tuple, list)):
            raise TypeError("step: proposal_args must be a tuple")
        key = resolve_key(key)
        tr = self.traces
        new_args = tuple(new_args)
        if argdiffs is None:
            argdiffs = diff_args(tr.args, new_args)
        with local_only():
            if proposal is None:
                new, w = _particles.update(tr, obs, new_args, tuple(argdiffs), key, self.layout)
            else:
                keys = _particles.global_keys(key, self.layout)
                new, w = _proposal_update(
                    tr.gen_fn,
                    tr,
                    obs,
                    new_args,
                    tuple(argdiffs),
                    proposal,
                    tuple(proposal_args),
                    key,
                    keys,
                )
        return self._with(new, self.log_weights + w)

    def edit(self, request: EditRequest, *, key: Key = None) -> ShardedParticleFilterState:
        """:meth:`~genmlx.infer.smc.ParticleFilterState.edit` on this process's particles
        (global keys)."""
        if not isinstance(request, EditRequest):
            raise TypeError(f"edit: request must be an EditRequest, got {type(request).__name__}")
        key = resolve_key(key)
        with local_only():
            new, w = _particles.edit(self.traces, request, key, self.layout)
        return self._with(new, self.log_weights + w)

    def smcp3_step(
        self,
        forward: GenerativeFunction,
        forward_args: tuple[Any, ...] = (),
        backward: GenerativeFunction | None = None,
        backward_args: tuple[Any, ...] = (),
        *,
        new_args: tuple[Any, ...] | None = None,
        observations: ChoiceMap | Mapping[Any, Any] | None = None,
        argdiffs: tuple[Diff, ...] | None = None,
        key: Key = None,
    ) -> ShardedParticleFilterState:
        """:meth:`~genmlx.infer.smc.ParticleFilterState.smcp3_step` on this process's particles."""
        request = _smcp3_request(
            self.traces,
            self.n_particles,
            forward,
            forward_args,
            backward,
            backward_args,
            new_args,
            observations,
            argdiffs,
        )
        return self.edit(request, key=key)

    def rejuvenate(
        self,
        kernel: Callable[..., tuple[Trace, mx.array]],
        *args: Any,
        key: Key = None,
        **kwargs: Any,
    ) -> ShardedParticleFilterState:
        """Apply an MCMC kernel to every particle; the weights are unchanged.

        Particle ``i`` runs ``kernel(trace_i, *args, key=split(key, N)[i], **kwargs)`` on
        its own (unbatched) trace, all of this process's particles in one vectorised
        call. For kernels defined per chain (``mh``, ``involutive_mh``) this is what the
        batched kernel does; for kernels that draw their noise for the whole batch at once
        (``hmc``, ``mala``, ``nuts``, combinators of several kernels) it is the per-chain
        version, the same for every number of processes.
        """
        key = resolve_key(key)
        with local_only():
            new, _ = _particles.kernel_step(kernel, self.traces, key, self.layout, args, kwargs)
        return self._replace(local=self.local._replace(traces=new))

    # ------------------------------------------------------------------ resampling
    def resample(
        self,
        method: str = "systematic",
        *,
        ess_threshold: float | None = None,
        key: Key = None,
    ) -> ShardedParticleFilterState:
        """Resample and reset the weights to 0 (global mode: over all ``N`` particles,
        as the single-process filter does; island mode: each process on its own).

        First the accumulated log ML takes in the current weights (so
        :attr:`log_ml_estimate` is unchanged by resampling). With ``ess_threshold``,
        resample only where :meth:`maybe_resample` would.
        """
        if ess_threshold is not None:
            return self.maybe_resample(ess_threshold, method, key=key)
        _check_method(method)
        if self.mode == "island" and self.group.size() > 1:
            return self._island_resample(method, key)
        return self._global_resample(method, key)

    def maybe_resample(
        self, ess_threshold: float, method: str = "systematic", *, key: Key = None
    ) -> ShardedParticleFilterState:
        """Resample when the ESS falls below ``ess_threshold`` particles.

        Global mode: the global :meth:`ess` decides (the same value on every process).
        Island mode: island ``r`` resamples when its own ESS is below
        ``ess_threshold · n_r / N``.
        """
        if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)):
            raise TypeError(
                f"maybe_resample: ess_threshold must be a number, got {ess_threshold!r}"
            )
        _check_method(method)
        if self.mode == "island" and self.group.size() > 1:
            share = ess_threshold * self.n_local / self.n_particles
            if bool((self.local.ess() < share).item()):
                return self._island_resample(method, key)
            return self
        lse, lse2 = global_logsumexp(
            self._global_log_weights(), self.group, "maybe_resample",
            None if key is None else resolve_key(key),
        )
        if bool((mx.exp(2.0 * lse - lse2) < ess_threshold).item()):
            return self._global_resample(method, key)
        return self

    def _global_resample(self, method: str, key: Key) -> ShardedParticleFilterState:
        n = self.n_particles
        # particles move only between processes: one process keeps its lazy storage
        thawed = Thawed(self.traces) if self.group.size() > 1 else None
        structure = (thawed.fingerprint, len(thawed.leaves)) if thawed is not None else (0, 0)
        # one collective: every weight, the key (process 0's when key=None) and a check
        # that the processes' particles can be exchanged
        lw_all, shared = gather_weights(
            self.log_weights, self.layout, self.group, "resample",
            None if key is None else resolve_key(key),
            (RESAMPLING_METHODS.index(method), *structure),
            names=("the resampling method", STRUCTURE, STRUCTURE),
        )
        idx = resample_indices(lw_all, method, key=shared)
        lse = mx.logsumexp(lw_all)
        acc = self.local.log_ml_accumulated + lse - math.log(n)
        ancestors = np.asarray(idx).astype(np.int64)
        wanted = [ancestors[s : s + k] for s, k in zip(self.layout.starts, self.layout.sizes)]
        new = fetch(self.traces, self.layout, wanted, self.group, "resample", thawed)
        zeros = mx.zeros((self.n_local,), dtype=self.log_weights.dtype)
        return self._with(new, zeros, acc)

    def _island_resample(self, method: str, key: Key) -> ShardedParticleFilterState:
        k_r = mx.random.split(resolve_key(key), self.group.size())[self.layout.rank]
        with local_only():
            state = self.local.resample(method, key=k_r)
        return self._replace(local=state)

    # ------------------------------------------------------------------ gather
    def gather(self) -> ParticleFilterState:
        """All ``N`` particles as one :class:`~genmlx.infer.ParticleFilterState` on every
        process (a collective: every process must call it).

        In global mode this is the single-process filter's state. In island mode the
        islands' accumulated log MLs are folded into the weights
        (``log w_i + log Ẑ_acc,r − A`` with ``A = max_r log Ẑ_acc,r`` as the accumulated
        value), so the gathered state's ``log_ml_estimate`` and normalised weights are
        the islands' global ones.
        """
        accs = gather_scalars(self.local.log_ml_accumulated.reshape(1), self.group)
        top = mx.max(accs)
        shift = self.local.log_ml_accumulated - top
        lw = self.log_weights + shift if self.mode == "island" else self.log_weights
        lw_all = gather_rows(lw, self.layout, self.group)
        everything = np.arange(self.n_particles, dtype=np.int64)
        wanted = [everything] * self.layout.size
        traces = fetch(self.traces, self.layout, wanted, self.group, "gather")
        acc = self.local.log_ml_accumulated
        if self.mode == "island":
            acc = top.astype(acc.dtype)
        return ParticleFilterState(traces, lw_all, acc)


def _check_method(method: str) -> None:
    if method not in RESAMPLING_METHODS:
        raise ValueError(
            f"resample: unknown method {method!r}; choose one of {', '.join(RESAMPLING_METHODS)}"
        )


def particle_filter(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    n_particles: int,
    *,
    proposal: GenerativeFunction | None,
    proposal_args: tuple[Any, ...],
    key: Key,
    group: Any,
    mode: str = "global",
) -> ShardedParticleFilterState:
    """Sharded :func:`genmlx.infer.particle_filter`: this process's particles
    ``[⌊rN/P⌋, ⌊(r+1)N/P⌋)`` of the single-process initialisation."""
    op = "particle_filter"
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    obs = _check_inputs(model, args, observations, n_particles, proposal, op)
    if not isinstance(proposal_args, (tuple, list)):
        raise TypeError(f"{op}: proposal_args must be a tuple")
    layout = balanced_layout(n_particles, group, op)
    key = shared_key(key, group, op, (n_particles, MODES.index(mode)))
    with local_only():
        tr, lw = _particles.generate(
            model, tuple(args), obs, proposal, tuple(proposal_args), key, layout
        )
    local = ParticleFilterState(tr, lw, mx.array(0.0, dtype=lw.dtype))
    return ShardedParticleFilterState(local, layout, group, mode)
