"""Process groups, shard layouts and the few collectives sharded inference needs.

Everything here goes through :func:`mlx.core.distributed.all_gather`; there is no other
transport. Collectives are evaluated as soon as they are built, so every process reaches
them in the same order.

Values that steer control flow (resample or not, the log ML accumulated at a
resampling) must be bit-for-bit the same on every process. The all-reductions here (a
maximum and sums over processes) therefore gather the per-process partial results — a
few numbers each, for which a gather costs what an ``all_sum`` costs — and combine them
in rank order on every process, rather than trusting that a backend's all-reduce
returns the same bits everywhere. The same gathers carry a check that the processes
made the same call (keys, sizes), so the checks cost no extra communication.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from genmlx.core.random import Key, resolve_key

__all__ = [
    "Layout",
    "current_group",
    "gather_rows",
    "resolve_group",
    "use_group",
]

Group = mx.distributed.Group

_GROUP: ContextVar[Any] = ContextVar("genmlx_distributed_group", default=None)


def _check_group(group: Any, op: str) -> Any:
    if not isinstance(group, Group):
        raise TypeError(
            f"{op}: group must be an mlx.core.distributed.Group (from "
            f"mx.distributed.init()), got {type(group).__name__}"
        )
    return group


@contextmanager
def use_group(group: Any) -> Iterator[Any]:
    """Run the sharding-aware functions of :mod:`genmlx.infer` over ``group`` by default.

    Inside the block, :func:`~genmlx.infer.importance_sampling`,
    :func:`~genmlx.infer.importance_resampling`, :func:`~genmlx.infer.particle_filter`,
    :func:`~genmlx.infer.chain`, :func:`~genmlx.infer.nuts_warmup`, the diagnostics
    (:func:`~genmlx.infer.rhat`, :func:`~genmlx.infer.ess_bulk`, ...) and
    :func:`~genmlx.infer.effective_sample_size_weights` behave as if called with
    ``group=group``; an explicit ``group=`` argument still wins. Their inputs are then
    this process's shard (its particles, its chains).

    Args:
        group: an ``mx.distributed.Group`` (``mx.distributed.init()``).

    Example:
        >>> import mlx.core as mx
        >>> with use_group(mx.distributed.init()) as g:
        ...     current_group() is g
        True
    """
    _check_group(group, "use_group")
    token = _GROUP.set(group)
    try:
        yield group
    finally:
        _GROUP.reset(token)


def current_group() -> Any:
    """The group set by the innermost :func:`use_group` block, or ``None``."""
    return _GROUP.get()


@contextmanager
def local_only() -> Iterator[None]:
    """Hide the :func:`use_group` default while a sharded algorithm runs its local
    parts, so that a library function called from inside (a kernel, a proposal) does
    not shard a second time."""
    token = _GROUP.set(None)
    try:
        yield
    finally:
        _GROUP.reset(token)


def resolve_group(group: Any, op: str) -> Any:
    """``group`` if given, else the :func:`use_group` default, else ``None``
    (validated)."""
    g = group if group is not None else _GROUP.get()
    return None if g is None else _check_group(g, op)


# ---------------------------------------------------------------------- layouts
class Layout(NamedTuple):
    """How ``n_total`` particles (or chains) are split over the processes of a group.

    Process ``r`` holds the contiguous global indices ``[starts[r], starts[r] + sizes[r])``.

    Attributes:
        sizes: the number of items on each process, in rank order.
        rank: this process's rank.
    """

    sizes: tuple[int, ...]
    rank: int

    @classmethod
    def balanced(cls, n_total: int, size: int, rank: int) -> Layout:
        """Items ``[r·n/P, (r+1)·n/P)`` (rounded down) on process ``r``: sizes differ by at
        most one.

        Example:
            >>> Layout.balanced(10, 4, 1)
            Layout(sizes=(2, 3, 2, 3), rank=1)
        """
        bounds = [(r * n_total) // size for r in range(size + 1)]
        return cls(tuple(bounds[r + 1] - bounds[r] for r in range(size)), rank)

    @property
    def n_total(self) -> int:
        """The number of items over all processes."""
        return sum(self.sizes)

    @property
    def size(self) -> int:
        """The number of processes."""
        return len(self.sizes)

    @property
    def starts(self) -> tuple[int, ...]:
        """The first global index of every process."""
        out, acc = [], 0
        for s in self.sizes:
            out.append(acc)
            acc += s
        return tuple(out)

    @property
    def lo(self) -> int:
        """This process's first global index."""
        return self.starts[self.rank]

    @property
    def hi(self) -> int:
        """One past this process's last global index."""
        return self.lo + self.sizes[self.rank]

    @property
    def n_local(self) -> int:
        """The number of items on this process."""
        return self.sizes[self.rank]

    def owner(self, idx: np.ndarray) -> np.ndarray:
        """The rank holding each global index in ``idx``."""
        ends = np.cumsum(np.asarray(self.sizes, dtype=np.int64))
        return np.searchsorted(ends, np.asarray(idx, dtype=np.int64), side="right")


def balanced_layout(n_total: int, group: Any, op: str, what: str = "n_particles") -> Layout:
    """The balanced layout of ``n_total`` items over ``group`` (every process must get
    at least one)."""
    size = group.size()
    if n_total < size:
        raise ValueError(
            f"{op}: {what}={n_total} is smaller than the number of processes ({size}); "
            f"every process needs at least one — use {what} >= {size}"
        )
    return Layout.balanced(n_total, size, group.rank())


def layout_from_local(
    n_local: int,
    group: Any,
    op: str,
    key: Key,
    extra: Sequence[int] = (),
    what: str = "chains",
    *,
    need_key: bool = True,
) -> tuple[Layout, Any]:
    """The layout made of every process's own count, in rank order, and (``need_key``)
    the key every process uses (see :func:`checked_gather`; one collective)."""
    sizes, k = checked_gather(
        mx.array([float(n_local)]), group, op, key, extra, adopt=need_key
    )
    out = Layout(tuple(int(v) for v in np.asarray(sizes).reshape(-1)), group.rank())
    if min(out.sizes) < 1:
        raise ValueError(f"{op}: every process needs at least one of the {what}; got {out.sizes}")
    return out, k


# ---------------------------------------------------------------------- collectives
def gather_scalars(x: mx.array, group: Any) -> mx.array:
    """``[P, *x.shape]``: every process's ``x`` (same shape and dtype everywhere)."""
    if group.size() == 1:
        return x[None]
    out = mx.distributed.all_gather(x[None], group=group)
    mx.eval(out)
    return out


def _pad_rows(x: mx.array, rows: int) -> mx.array:
    if x.shape[0] == rows:
        return x
    pad = mx.zeros((rows - x.shape[0], *x.shape[1:]), dtype=x.dtype)
    return mx.concatenate([x, pad], axis=0)


def _gather_dtype(dtype: Any) -> Any:
    # booleans travel as uint8 (every backend has byte collectives)
    return mx.uint8 if dtype == mx.bool_ else dtype


def gather_rows(x: mx.array, layout: Layout, group: Any) -> mx.array:
    """All processes' rows of ``x`` (axis 0 = this process's items) concatenated in rank
    order: ``[n_total, ...]`` on every process. Uneven shards are padded for
    ``all_gather`` and the padding is dropped."""
    if x.shape[0] != layout.n_local:
        raise ValueError(
            f"gather: expected {layout.n_local} rows on process {layout.rank}, got {x.shape[0]}"
        )
    if group.size() == 1:
        return x
    m = max(layout.sizes)
    dtype = x.dtype
    buf = _pad_rows(x.astype(_gather_dtype(dtype)), m)
    out = mx.distributed.all_gather(buf, group=group)
    if min(layout.sizes) != m:
        keep = np.concatenate([r * m + np.arange(s) for r, s in enumerate(layout.sizes)])
        out = mx.take(out, mx.array(keep.astype(np.int32)), axis=0)
    out = out.astype(dtype)
    mx.eval(out)
    return out


def gather_weights(
    x: mx.array,
    layout: Layout,
    group: Any,
    op: str,
    key: Key,
    extra: Sequence[int] = (),
    names: Sequence[str] | None = None,
) -> tuple[mx.array, mx.array]:
    """``(all N values, shared key)``: :func:`gather_rows` of a float vector and the key
    check of :func:`checked_gather` (``adopt=True``) in one collective."""
    if x.shape != (layout.n_local,):
        raise ValueError(f"{op}: expected {layout.n_local} weights on process {layout.rank}")
    m = max(layout.sizes)
    parts, k = checked_gather(
        _pad_rows(x.astype(mx.float32), m), group, op, key, extra, adopt=True, names=names
    )
    if group.size() == 1:
        return x, k
    flat = mx.concatenate([parts[r, :s] for r, s in enumerate(layout.sizes)]).astype(x.dtype)
    mx.eval(flat)
    return flat, k


def gather_packed(leaves: Sequence[mx.array], rows: int, group: Any) -> list[mx.array]:
    """``all_gather`` of several arrays with ``rows`` rows each in *one* collective: their
    bytes are packed side by side into one ``uint8`` buffer. Returns each array gathered
    (``[P·rows, ...]``)."""
    parts = [mx.view(x.reshape(rows, math.prod(x.shape[1:])), mx.uint8) for x in leaves]
    widths = [x.shape[1] for x in parts]
    packed = mx.concatenate(parts, axis=1) if parts else mx.zeros((rows, 0), dtype=mx.uint8)
    got = mx.distributed.all_gather(packed, group=group) if group.size() > 1 else packed
    mx.eval(got)
    out, start = [], 0
    for x, w in zip(leaves, widths):
        part = mx.view(got[:, start : start + w], x.dtype)
        out.append(part.reshape((got.shape[0], *x.shape[1:])))
        start += w
    return out


def fingerprint(parts: Sequence[Any]) -> int:
    """A stable (process-independent) 31-bit hash of ``repr(parts)``."""
    return zlib.crc32(repr(list(parts)).encode()) & 0x7FFFFFFF


def _header(fresh: bool, key: mx.array, extra: Sequence[int]) -> mx.array:
    bits = key.astype(mx.uint32).reshape(-1)
    ints = mx.array([int(fresh), *(int(v) & 0xFFFFFFFF for v in extra)], dtype=mx.uint32)
    return mx.view(mx.concatenate([ints, bits]), mx.float32)


def checked_gather(
    payload: mx.array,
    group: Any,
    op: str,
    key: Key,
    extra: Sequence[int] = (),
    *,
    adopt: bool,
    names: Sequence[str] | None = None,
) -> tuple[mx.array, Any]:
    """All processes' ``payload`` (a float32 vector of the same length everywhere),
    ``[P, L]``, in *one* collective that also checks that the processes made the same
    call: the integers ``extra`` must agree, and so must the keys — all explicit and
    equal, or all ``None``.

    Returns ``(gathered payload, key)``. With ``adopt`` the key is the one every process
    must use (when the processes must draw the same numbers, e.g. resampling
    ancestors): ``key`` resolved, or for ``key=None`` process 0's fresh key. Without
    ``adopt`` it is ``None`` (the caller already used its own key).

    Raises:
        ValueError: (on every process) the processes disagree.
    """
    fresh = key is None
    k = resolve_key(key) if (adopt or not fresh) else mx.zeros((2,), dtype=mx.uint32)
    payload = payload.astype(mx.float32).reshape(-1)
    if group.size() == 1:
        return payload[None], (k if adopt else None)
    length = payload.shape[0]
    head = _header(fresh, k, extra)
    got = gather_scalars(mx.concatenate([payload, head]), group)
    rows = np.asarray(mx.view(got[:, length:], mx.uint32))
    n_extra = len(extra)
    flags, ints, keys = rows[:, 0], rows[:, 1 : 1 + n_extra], rows[:, 1 + n_extra :]
    if not (flags == flags[0]).all():
        raise ValueError(
            f"{op}: some processes passed key=None and others a key; pass the same key "
            "on every process (or None on all of them)"
        )
    if not (ints == ints[0]).all():
        what = "arguments"
        if names is not None:
            bad = [names[j] for j in range(n_extra) if not (ints[:, j] == ints[0, j]).all()]
            what = ", ".join(dict.fromkeys(bad))
        raise ValueError(
            f"{op}: the processes differ in {what} (per process: {ints.tolist()}); every "
            "process must make the same call"
        )
    if not fresh and not (keys == keys[0]).all():
        raise ValueError(
            f"{op}: the processes passed different keys; pass the same key on every "
            "process (e.g. mx.random.key(seed) with one seed)"
        )
    if not adopt:
        return got[:, :length], None
    if fresh:
        k = mx.array(keys[0]).astype(k.dtype).reshape(k.shape)
    return got[:, :length], k


def shared_key(key: Key, group: Any, op: str, extra: Sequence[int] = ()) -> mx.array:
    """The key all processes use, checked (with the integers ``extra``) in one small
    collective before it is used; ``key=None`` gives process 0's fresh key everywhere."""
    _, k = checked_gather(mx.zeros((0,)), group, op, key, extra, adopt=True)
    out: mx.array = k
    return out


def _local_stats(x: mx.array) -> mx.array:
    """``[m, Σ exp(x − m), Σ exp(2(x − m)), #(NaN or +inf)]`` of this process's values
    (``m`` their maximum, or 0 when none is finite)."""
    x = x.astype(mx.float32).reshape(-1)
    bad = mx.sum(mx.logical_or(mx.isnan(x), x == mx.inf)).astype(mx.float32)
    m = mx.max(x) if x.size else mx.array(-mx.inf)
    m = mx.where(mx.isfinite(m), m, mx.array(0.0))
    d = x - m
    return mx.stack([m, mx.sum(mx.exp(d)), mx.sum(mx.exp(2.0 * d)), bad])


def _combine_stats(parts: mx.array, op: str) -> tuple[mx.array, mx.array]:
    """``(logsumexp, logsumexp of 2x)`` from every process's :func:`_local_stats`,
    ``[P, 4]``, combined in rank order."""
    n_bad = np.asarray(parts[:, 3])
    if n_bad.sum() > 0:
        ranks = [r for r in range(n_bad.shape[0]) if n_bad[r] > 0]
        raise ValueError(
            f"{op}: NaN or +inf log weights on process(es) {ranks}; check the model's "
            "parameters and the observations"
        )
    m_r, s1, s2 = parts[:, 0], parts[:, 1], parts[:, 2]
    live = s1 > 0
    top = mx.max(mx.where(live, m_r, -mx.inf))
    top = mx.where(mx.isfinite(top), top, mx.array(0.0))
    t1 = mx.where(live, s1 * mx.exp(m_r - top), 0.0)
    t2 = mx.where(live, s2 * mx.exp(2.0 * (m_r - top)), 0.0)
    tot1, tot2 = t1[0], t2[0]
    for r in range(1, parts.shape[0]):  # rank order: the same bits on every process
        tot1, tot2 = tot1 + t1[r], tot2 + t2[r]
    return top + mx.log(tot1), 2.0 * top + mx.log(tot2)


def global_logsumexp(
    x: mx.array, group: Any, op: str, key: Key = None, extra: Sequence[int] = ()
) -> tuple[mx.array, mx.array]:
    """``(logsumexp, logsumexp of 2x)`` of the values ``x`` of all processes,
    exactly: with ``m_r`` the maximum on process ``r`` and ``M = max_r m_r``,
    ``logsumexp = M + log Σ_r exp(m_r − M) Σ_i exp(x_ri − m_r)`` — one collective of
    four numbers per process, which also checks ``key`` and ``extra`` (see
    :func:`checked_gather`). NaN or ``+inf`` anywhere raises on every process."""
    parts, _ = checked_gather(_local_stats(x), group, op, key, extra, adopt=False)
    return _combine_stats(parts, op)
