"""Vectorised rejection sampling in which later rounds run only for the rejected.

A rejection sampler run elementwise on ``n`` draws would, done naively, evaluate every
round for every element. :func:`first_accepted` instead gives each element one
proposal, then hands the rejected ones (in index order) to a smaller batch of
:func:`spill_slots` slots, and so on recursively: the work is about
``n / (1 - p_reject)`` proposals, not ``rounds * n``. Shapes depend only on ``n``,
so the same code runs under ``mx.vmap``/``mx.compile``; eagerly, levels no element
reaches are skipped, which changes no draw. A sampler whose cheap test leaves some
proposals undecided (a squeeze) passes ``resolve``: those proposals' states travel
down with their elements' slots and are decided there, so the expensive exact test
runs only for them. Gathers and scatters go through :func:`compact`.

Random stream: the level structure changed on 2026-12-07 (three keys per level, the
last rounds in chunks of 2, 4, 8, ...), so the rejection samplers built on it give
other draws for the same key than before (same laws).

Example:
    >>> import mlx.core as mx
    >>> def propose(key, shape, params):
    ...     u = mx.random.uniform(shape=shape, key=key)
    ...     return u, u < 0.5  # Uniform(0, 1/2) by rejection
    >>> x = first_accepted(propose, mx.random.key(0), (1000,), 40, mx.array(0.0), (), 0.5)
    >>> bool(mx.all(x < 0.5)), x.shape
    (True, (1000,))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, cast

import mlx.core as mx

from genmlx.core import runtime

__all__ = ["all_done", "compact", "first_accepted", "spill_slots"]

_LOG_SPILL_FAIL = math.log(1e14)
_CHUNK_ELEMS = 2**21  # rounds evaluated together once a batch stops shrinking
_SMALL_WORK = 2**14  # batches with m * rounds up to this run all rounds together

_Proposals = tuple[mx.array, mx.array] | tuple[mx.array, mx.array, tuple[mx.array, ...]]
_Propose = Callable[[mx.array, tuple[int, ...], tuple[mx.array, ...]], _Proposals]
_Resolve = Callable[
    [mx.array, tuple[mx.array, ...], tuple[mx.array, ...], int], tuple[mx.array, mx.array]
]


def all_done(done: mx.array) -> bool:
    """Eagerly, whether every element of ``done`` holds; ``False`` under a
    transformation (``mx.vmap``/``mx.compile``), where no value can be read."""
    if runtime.in_transform():
        return False
    try:
        return bool(mx.all(done).item())
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return False
        raise


def spill_slots(n: int, p_reject: float) -> int:
    """Slots for the elements one round rejects, out of ``n``.

    More than that many are rejected with probability < 1e-14 (Bernstein's inequality
    for a Binomial(n, p_reject) count, ``p_reject`` the largest per-round rejection
    probability). Elements that would not get a slot keep the sampler's
    never-accepted fallback, like elements rejected in every round.
    """
    v = n * p_reject * (1.0 - p_reject)
    a = _LOG_SPILL_FAIL
    t = a / 3.0 + math.sqrt(a * a / 9.0 + 2.0 * a * v)
    return min(n, math.ceil(n * p_reject + t))


def first_accepted(
    propose: _Propose,
    key: mx.array,
    shape: tuple[int, ...],
    rounds: int,
    fallback: mx.array,
    params: tuple[mx.array, ...],
    p_reject: float,
    resolve: _Resolve | None = None,
) -> mx.array:
    """Per element of ``shape``, the first accepted of up to ``rounds`` proposals.

    Args:
        propose: ``propose(key, (c, m), params)`` returns ``(values, accepted)`` of
            shape ``(c, m)``: ``c`` rounds for ``m`` elements whose parameters are
            ``params`` (each of shape ``(m,)``, or of size 1 when shared by all).
            With ``resolve``, it returns ``(values, accepted, state)``: a proposal not
            accepted outright may still be accepted later from its ``state`` (a
            tuple of arrays of shape ``(c, m)``), e.g. when a cheap squeeze test
            could not decide it.
        key: PRNG key.
        shape: the output shape.
        rounds: the most proposals per element (then ``fallback``).
        fallback: the value of a never-accepted element (broadcasts to ``shape``).
        params: per-element parameters, each broadcastable to ``shape``.
        p_reject: an upper bound on the per-round probability that a proposal is not
            accepted outright (by ``propose``).
        resolve: ``resolve(key, state, params, n_from)`` decides the proposals that
            ``propose`` left open, given their ``state`` and ``params`` (1-D, one
            entry per proposal; ``params`` of size 1 when shared), and returns their
            ``(values, accepted)``; ``n_from`` is the number of proposals the states
            were taken from (for the sizes of its own spill slots). It runs one level
            down, only on the slots of the elements that still need a draw, so an
            expensive exact test costs nothing for the proposals the squeeze took.
    """
    n = math.prod(shape)
    shared = all(p.size == 1 for p in params)
    flat = tuple(
        p.reshape((1,)) if shared else mx.broadcast_to(p, shape).reshape(-1) for p in params
    )
    fb = mx.broadcast_to(fallback, shape).reshape(-1)
    spec = _Spec(propose, resolve, shared, p_reject)
    out = _level(spec, key, n, rounds, fb, flat, None, None, 0)
    return out.reshape(shape)


def compact(flags: mx.array, q: int) -> tuple[mx.array, mx.array]:
    """The first ``q`` flagged elements of a 1-D ``flags``, in index order.

    Returns ``(owner, slot)``: ``owner[s]`` (shape ``(q,)``) is the index of the
    ``s``-th flagged element, or ``n = flags.size`` where fewer than ``s + 1`` are
    flagged; ``slot[i]`` (shape ``(n,)``) is ``i``'s rank among the flagged elements
    if it is flagged and that rank is below ``q``, else ``q``. Gathers and scatters go
    through ``mx.take_along_axis``/``mx.put_along_axis`` (on MLX's CPU backend
    several times cheaper than ``mx.take`` and ``.at[].add``), and the ranks are
    formed with integer arithmetic rather than a data-dependent ``mx.where``, so
    everything is one cheap pass per step, and it works under ``mx.vmap`` and
    ``mx.compile``.

    Example:
        >>> import mlx.core as mx
        >>> owner, slot = compact(mx.array([False, True, False, True, True]), 2)
        >>> owner.tolist(), slot.tolist()
        ([1, 3], [2, 0, 2, 1, 2])
    """
    owner, slot, _ = _compact_count(flags, q)
    return owner, slot


def _compact_count(flags: mx.array, q: int) -> tuple[mx.array, mx.array, mx.array]:
    """:func:`compact`, and the number of flagged elements (a 0-d array)."""
    n = flags.shape[0]
    f = flags.astype(mx.int32)
    cs = mx.cumsum(f)
    # flagged: rank = cumsum - 1; unflagged: cumsum + q >= q (clipped to q below).
    slot = mx.minimum(cs + (q - (q + 1) * f), q)
    owner = mx.put_along_axis(
        mx.full((q + 1,), n, dtype=mx.int32), slot, mx.arange(n, dtype=mx.int32), axis=0
    )
    count = cs[-1] if n else mx.array(0, dtype=mx.int32)
    return mx.stop_gradient(owner[:q]), mx.stop_gradient(slot), count


def _int_maybe(x: mx.array) -> int | None:
    """Eagerly, the value of the 0-d integer ``x``; ``None`` under a transformation."""
    if runtime.in_transform():
        return None
    try:
        return cast(int, x.item())
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return None
        raise


def _state(out: _Proposals) -> tuple[mx.array, ...]:
    """The open proposals' state of a ``propose`` result (with ``resolve``)."""
    if len(out) != 3:
        raise TypeError(
            "first_accepted: with resolve=, propose must return (values, accepted, state)"
        )
    return out[2]


class _Spec(NamedTuple):
    propose: _Propose
    resolve: _Resolve | None
    shared: bool
    p_reject: float


def _level(
    spec: _Spec,
    key: mx.array,
    m: int,
    rounds: int,
    fb: mx.array,
    prm: tuple[mx.array, ...],
    live: mx.array | None,
    carry: tuple[mx.array, ...] | None,
    n_from: int,
) -> mx.array:
    """``m`` elements' first accepted proposals.

    ``live`` marks the slots that belong to an element (``None``: all do). Slots
    owned by no element are proposed for (the shapes are fixed) but never given a slot
    one level down, so eagerly the levels stop as soon as no owned slot needs a draw.
    ``carry`` holds the states of the open proposals handed down from the level above
    (drawn from ``n_from`` proposals); they come before this level's own proposals.
    """
    q = spill_slots(m, spec.p_reject)
    if m == 0:
        return fb
    if q >= m or rounds == 1 or m * rounds <= _SMALL_WORK:
        return _rounds(spec, key, m, rounds, fb, prm, live, carry, n_from)
    k1, k2, k3 = mx.random.split(key, 3)
    out = spec.propose(k1, (1, m), prm)
    val, acc = out[0].reshape(-1), out[1].reshape(-1)  # views: (1, m) is contiguous
    if carry is not None and spec.resolve is not None:
        rv, ra = spec.resolve(k3, carry, prm, n_from)
        val = mx.where(ra, rv, val)
        acc = mx.logical_or(ra, acc)
    need = mx.logical_not(acc) if live is None else mx.logical_and(live, mx.logical_not(acc))
    owner, slot, count = _compact_count(need, q)
    n_need = _int_maybe(count)
    if n_need == 0:
        return val  # no element needs a slot: the deeper levels would change nothing
    oc = mx.minimum(owner, m - 1)
    if spec.shared:
        sprm = prm
        sfb = mx.broadcast_to(fb[:1], (q,))
    else:
        sprm = tuple(mx.take_along_axis(p, oc, axis=0) for p in prm)
        sfb = mx.take_along_axis(fb, oc, axis=0)
    scarry = None
    if spec.resolve is not None:
        scarry = tuple(mx.take_along_axis(st.reshape(-1), oc, axis=0) for st in _state(out))
    sub = _level(spec, k2, q, rounds - 1, sfb, sprm, owner < m, scarry, m)
    if n_need is not None and n_need <= q:
        # Every element in need has a slot: write the slots' draws over their
        # rejected proposals (the same values the general form below gives).
        pad = mx.zeros((1,), dtype=val.dtype)
        res: mx.array = mx.put_along_axis(mx.concatenate([val, pad]), owner, sub, axis=0)
        return res[:m]
    # Under a transformation, or when some element in need got no slot (probability
    # < 1e-14): slotted elements take their slot's draw, the others in need the
    # fallback, the rest keep their proposal.
    sub_ext = mx.concatenate([sub, mx.zeros((1,), dtype=sub.dtype)])
    from_slot = mx.take_along_axis(sub_ext, slot, axis=0)
    res = mx.where(slot < q, from_slot, mx.where(need, fb, val))
    return res


def _rounds(
    spec: _Spec,
    key: mx.array,
    m: int,
    rounds: int,
    fb: mx.array,
    prm: tuple[mx.array, ...],
    live: mx.array | None,
    carry: tuple[mx.array, ...] | None,
    n_from: int,
) -> mx.array:
    """All ``rounds`` for all ``m`` elements, in chunks (eagerly stopping once every
    owned element has accepted: later chunks would change nothing). The carried open
    proposals are settled first; each chunk's own open proposals are settled at once."""
    # chunks of 2, 4, 8, ... rounds (at most _CHUNK_ELEMS proposals): eagerly, the
    # first usually settles every element
    cap = max(2, min(rounds, _CHUNK_ELEMS // max(m, 1)))
    sizes: list[int] = []
    while sum(sizes) < rounds:
        sizes.append(min(cap, 2 ** (len(sizes) + 1), rounds - sum(sizes)))
    n_chunks = len(sizes)
    keys = mx.random.split(key, 2 * n_chunks + 1)
    out = fb
    got = mx.zeros((m,), dtype=mx.bool_)
    done = got if live is None else mx.logical_not(live)
    if carry is not None and spec.resolve is not None:
        rv, ra = spec.resolve(keys[2 * n_chunks], carry, prm, n_from)
        out = mx.where(ra, rv, out)
        got = ra
        done = mx.logical_or(done, ra)
        if all_done(done):
            return out
    left = rounds
    for ci in range(n_chunks):
        c = sizes[ci]
        left -= c
        res = spec.propose(keys[2 * ci], (c, m), prm)
        v, a = res[0], res[1]
        if spec.resolve is not None:
            cprm = tuple(p if p.size == 1 else mx.broadcast_to(p, (c, m)).reshape(-1) for p in prm)
            st = tuple(x.reshape(-1) for x in _state(res))
            rv, ra = spec.resolve(keys[2 * ci + 1], st, cprm, c * m)
            ra = mx.logical_and(ra.reshape(c, m), mx.logical_not(a))
            v = mx.where(ra, rv.reshape(c, m), v)
            a = mx.logical_or(a, ra)
        any_acc = mx.any(a, axis=0)
        first = mx.stop_gradient(mx.argmax(a, axis=0).astype(mx.int32))
        pick = mx.take_along_axis(v, mx.expand_dims(first, 0), axis=0)[0]
        out = mx.where(mx.logical_and(any_acc, mx.logical_not(got)), pick, out)
        got = mx.logical_or(got, any_acc)
        done = mx.logical_or(done, any_acc)
        if left and all_done(done):
            break
    return out
