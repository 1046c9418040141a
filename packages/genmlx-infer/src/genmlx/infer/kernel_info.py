"""What a kernel reports: the info records of ``kernel(trace, ..., key=) -> (trace, info)``.

Every MCMC kernel of :mod:`genmlx.infer` returns the new trace and an *info* record (a
NamedTuple, BlackJAX style). Every info record has ``accepted`` — per chain, with the
trace's batch shape: ``True`` where the chain moved to its proposal (``bool``), or for a
kernel built from several moves the fraction of them that were accepted (``float``) —
and, where they apply, the acceptance probability, divergence, step size and tree
depth:

=====================  ============================================================
record                 kernels
=====================  ============================================================
:class:`MHInfo`        :func:`~genmlx.infer.mh`, :func:`~genmlx.infer.involutive_mh`,
                       reversible-jump moves, :func:`~genmlx.infer.translator_mh`,
                       :func:`~genmlx.infer.tempered_rw_mh`
:class:`MALAInfo`      :func:`~genmlx.infer.mala`
:class:`HMCInfo`       :func:`~genmlx.infer.hmc`
:class:`NutsInfo`      :func:`~genmlx.infer.nuts` (accept statistic, leapfrog steps,
                       tree depth, divergence, step size)
:class:`GibbsInfo`     :func:`~genmlx.infer.gibbs`, :func:`~genmlx.infer.conjugate_gibbs`,
                       :func:`~genmlx.infer.collapsed_gibbs` (always accepted)
:class:`SliceInfo`     :func:`~genmlx.infer.elliptical_slice`
:class:`SwapInfo`      :func:`~genmlx.infer.tempered_swap` (per pair of temperatures)
:class:`CycleInfo`     :func:`~genmlx.infer.cycle`, :func:`~genmlx.infer.repeat_kernel`
:class:`MixInfo`       :func:`~genmlx.infer.mix_kernels`
=====================  ============================================================

Because they are NamedTuples, info records pass through ``mx.vmap`` and
:func:`genmlx.core.compile` like arrays, and a chain's info is ``info[i]``-free: read a
field and index it (``info.accepted[i]``).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, select
    >>> from genmlx.dists import normal
    >>> from genmlx.infer import mh
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 1.0) @ "y"
    >>> tr, _ = model.vgenerate((), {"y": 1.0}, 8, key=mx.random.key(0))
    >>> tr, info = mh(tr, select("mu"), key=mx.random.key(1))
    >>> type(info).__name__, info.accepted.shape, info.accept_prob.shape
    ('MHInfo', (8,), (8,))
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import mlx.core as mx

from genmlx.infer.nuts_tree import NutsInfo

__all__ = [
    "CycleInfo",
    "GibbsInfo",
    "HMCInfo",
    "KernelInfo",
    "MALAInfo",
    "MHInfo",
    "MixInfo",
    "NutsInfo",
    "SliceInfo",
    "SwapInfo",
    "acceptance",
]


@runtime_checkable
class KernelInfo(Protocol):
    """Anything a kernel returns as its info: it has an ``accepted`` array."""

    @property
    def accepted(self) -> mx.array: ...


class MHInfo(NamedTuple):
    """Info of a Metropolis–Hastings step.

    Attributes:
        accepted: the chain moved to its proposal (bool, per chain).
        accept_prob: ``min(1, α)``, the acceptance probability of the proposal (0 where
            the log ratio is NaN).
    """

    accepted: mx.array
    accept_prob: mx.array


class MALAInfo(NamedTuple):
    """Info of a MALA step.

    Attributes:
        accepted: the chain moved (bool, per chain).
        accept_prob: ``min(1, α)``.
        step_size: the step size used (per chain).
    """

    accepted: mx.array
    accept_prob: mx.array
    step_size: mx.array


class HMCInfo(NamedTuple):
    """Info of an HMC step.

    Attributes:
        accepted: the chain moved (bool, per chain).
        accept_prob: ``min(1, exp(H₀ − H))``.
        diverging: the energy error ``H − H₀`` exceeded 1000 (or is NaN).
        step_size: the step size used (per chain).
        n_leapfrog: the leapfrog steps taken (per chain).
    """

    accepted: mx.array
    accept_prob: mx.array
    diverging: mx.array
    step_size: mx.array
    n_leapfrog: mx.array


class GibbsInfo(NamedTuple):
    """Info of a Gibbs move (an exact conditional draw: always accepted).

    Attributes:
        accepted: ``True`` per chain.
    """

    accepted: mx.array


class SliceInfo(NamedTuple):
    """Info of an elliptical slice sampling step.

    Attributes:
        accepted: the chain found a point on the slice before the shrinking budget ran
            out (``False``: it kept its value).
    """

    accepted: mx.array


class SwapInfo(NamedTuple):
    """Info of a replica-exchange move between adjacent temperatures.

    Attributes:
        accepted: the pair ``(k, k+1)`` swapped states, shape ``[n_chains, K − 1]``.
        attempted: the pair was proposed on this sweep (its parity).
    """

    accepted: mx.array
    attempted: mx.array


class CycleInfo(NamedTuple):
    """Info of a kernel that applies several kernels in turn.

    Attributes:
        accepted: the fraction of the inner moves that were accepted (float, per chain).
        infos: the inner kernels' info records, in order.
    """

    accepted: mx.array
    infos: tuple[Any, ...]


class MixInfo(NamedTuple):
    """Info of a mixture of kernels.

    Attributes:
        accepted: the chosen kernel's acceptance (float, per chain).
        choice: the index of the kernel each chain used.
        infos: every inner kernel's info (all kernels run, vectorised; chain ``i`` kept
            the result of ``infos[choice[i]]``).
    """

    accepted: mx.array
    choice: mx.array
    infos: tuple[Any, ...]


def acceptance(info: Any, op: str = "kernel") -> mx.array:
    """The ``accepted`` array of a kernel's info record.

    A kernel written for the old convention returned the acceptance array itself; that
    still works for one release, with a ``DeprecationWarning``.

    Raises:
        TypeError: ``info`` has no ``accepted`` and is not an array.
    """
    acc = getattr(info, "accepted", None)
    if isinstance(acc, mx.array):
        return acc
    if isinstance(info, mx.array):
        from genmlx.core.deprecation import warn_deprecated

        warn_deprecated(
            f"{op}: a kernel returning (trace, accepted)",
            "(trace, info) with an info record that has .accepted (genmlx.infer.kernel_info)",
            stacklevel=4,
        )
        return info
    raise TypeError(
        f"{op}: a kernel must return (new_trace, info) with info a record that has an "
        f"'accepted' array (genmlx.infer.kernel_info); got {type(info).__name__}"
    )
