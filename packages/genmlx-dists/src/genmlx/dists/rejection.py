"""Vectorised rejection sampling in which later rounds run only for the rejected.

A rejection sampler run elementwise on ``n`` draws would, done naively, evaluate every
round for every element. :func:`first_accepted` instead gives each element one
proposal, then hands the rejected ones (in index order) to a smaller batch of
:func:`spill_slots` slots, and so on recursively: the work is about
``n / (1 - p_reject)`` proposals, not ``rounds * n``. Shapes depend only on ``n``,
so the same code runs under ``mx.vmap``/``mx.compile``; eagerly, levels no element
reaches are skipped, which changes no draw.

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

import mlx.core as mx

from genmlx.core import runtime

__all__ = ["all_done", "first_accepted", "spill_slots"]

_LOG_SPILL_FAIL = math.log(1e14)
_CHUNK_ELEMS = 2**21  # rounds evaluated together once a batch stops shrinking

_Propose = Callable[[mx.array, tuple[int, ...], tuple[mx.array, ...]], tuple[mx.array, mx.array]]


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
) -> mx.array:
    """Per element of ``shape``, the first accepted of up to ``rounds`` proposals.

    Args:
        propose: ``propose(key, (c, m), params)`` returns ``(values, accepted)`` of
            shape ``(c, m)``: ``c`` rounds for ``m`` elements whose parameters are
            ``params`` (each of shape ``(m,)``, or of size 1 when shared by all).
        key: PRNG key.
        shape: the output shape.
        rounds: the most proposals per element (then ``fallback``).
        fallback: the value of a never-accepted element (broadcasts to ``shape``).
        params: per-element parameters, each broadcastable to ``shape``.
        p_reject: an upper bound on the per-round rejection probability.
    """
    n = math.prod(shape)
    shared = all(p.size == 1 for p in params)
    flat = tuple(
        p.reshape((1,)) if shared else mx.broadcast_to(p, shape).reshape(-1) for p in params
    )
    fb = mx.broadcast_to(fallback, shape).reshape(-1)
    out = _level(propose, key, n, rounds, fb, flat, shared, p_reject)
    return out.reshape(shape)


def _level(
    propose: _Propose,
    key: mx.array,
    m: int,
    rounds: int,
    fb: mx.array,
    prm: tuple[mx.array, ...],
    shared: bool,
    p_reject: float,
) -> mx.array:
    q = spill_slots(m, p_reject)
    if m == 0:
        return fb
    if q >= m or rounds == 1:
        return _rounds(propose, key, m, rounds, fb, prm)
    k1, k2 = mx.random.split(key, 2)
    val, acc = propose(k1, (1, m), prm)
    val, acc = val[0], acc[0]
    out = mx.where(acc, val, fb)
    if all_done(acc):
        return out  # no element needs a slot: the deeper levels would change nothing
    rejected = mx.logical_not(acc)
    rank = mx.cumsum(rejected.astype(mx.int32)) - 1
    has_slot = mx.logical_and(rejected, rank < q)
    slot = mx.stop_gradient(mx.where(has_slot, rank, q))  # q: no slot
    if shared:
        sprm = prm
        sfb = mx.broadcast_to(fb[:1], (q,))
    else:
        idx = mx.arange(m, dtype=mx.int32)
        owner = mx.zeros((q + 1,), dtype=mx.int32).at[slot].add(mx.where(has_slot, idx, 0))
        owner = owner[:q]
        sprm = tuple(mx.take(p, owner) for p in prm)
        sfb = mx.take(fb, owner)
    sub = _level(propose, k2, q, rounds - 1, sfb, sprm, shared, p_reject)
    res: mx.array = mx.where(has_slot, mx.take(sub, mx.minimum(slot, q - 1)), out)
    return res


def _rounds(
    propose: _Propose,
    key: mx.array,
    m: int,
    rounds: int,
    fb: mx.array,
    prm: tuple[mx.array, ...],
) -> mx.array:
    """All ``rounds`` for all ``m`` elements, in chunks (eagerly stopping once every
    element has accepted: later chunks would change nothing)."""
    chunk = max(2, min(rounds, _CHUNK_ELEMS // max(m, 1)))
    n_chunks = -(-rounds // chunk)
    keys = mx.random.split(key, n_chunks)
    out = fb
    done = mx.zeros((m,), dtype=mx.bool_)
    left = rounds
    for ci in range(n_chunks):
        c = min(chunk, left)
        left -= c
        v, a = propose(keys[ci], (c, m), prm)
        any_acc = mx.any(a, axis=0)
        first = mx.stop_gradient(mx.argmax(a, axis=0).astype(mx.int32))
        pick = mx.take_along_axis(v, mx.expand_dims(first, 0), axis=0)[0]
        out = mx.where(mx.logical_and(any_acc, mx.logical_not(done)), pick, out)
        done = mx.logical_or(done, any_acc)
        if left and all_done(done):
            break
    return out
