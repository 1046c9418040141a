"""Process groups, shard layouts and the few collectives sharded inference needs.

Everything here goes through :mod:`mlx.core.distributed` (``all_gather``, ``all_max``,
``all_sum``); there is no other transport. Collectives are evaluated as soon as they are
built, so every process reaches them in the same order.

Values that steer control flow (resample or not, the log ML accumulated at a
resampling) must be bit-for-bit the same on every process. Reductions here therefore
gather the per-process partial results (a few numbers each) and combine them in rank
order on every process, rather than trusting that a backend's all-reduce returns the
same bits everywhere.
"""

from __future__ import annotations

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


def layout_from_local(n_local: int, group: Any, op: str, what: str = "chains") -> Layout:
    """The layout made of every process's own count (gathered), in rank order."""
    sizes = gather_scalars(mx.array([n_local], dtype=mx.int32), group)
    out = Layout(tuple(int(s) for s in np.asarray(sizes).reshape(-1)), group.rank())
    if min(out.sizes) < 1:
        raise ValueError(f"{op}: every process needs at least one of the {what}; got {out.sizes}")
    return out


# ---------------------------------------------------------------------- collectives
def gather_scalars(x: mx.array, group: Any) -> mx.array:
    """``[P, *x.shape]``: every process's ``x`` (same shape and dtype everywhere)."""
    if group.size() == 1:
        return x[None]
    out = mx.distributed.all_gather(x[None], group=group)
    mx.eval(out)
    return out


def sum_over(x: mx.array, group: Any) -> mx.array:
    """``Σ_r x_r`` over the processes, added in rank order (the same bits everywhere)."""
    if group.size() == 1:
        return x
    parts = gather_scalars(x, group)
    total = parts[0]
    for r in range(1, group.size()):
        total = total + parts[r]
    return total


def max_over(x: mx.array, group: Any) -> mx.array:
    """Element-wise maximum of ``x`` over the processes (exact)."""
    if group.size() == 1:
        return x
    out = mx.distributed.all_max(x, group=group)
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


def gather_packed(
    leaves: Sequence[mx.array], rows: int, group: Any
) -> list[mx.array]:
    """``all_gather`` of several arrays with ``rows`` rows each, packed into one
    collective per dtype: returns each leaf gathered (``[P·rows, ...]``)."""
    groups: dict[Any, list[int]] = {}
    for i, leaf in enumerate(leaves):
        groups.setdefault(_gather_dtype(leaf.dtype), []).append(i)
    out: list[mx.array | None] = [None] * len(leaves)
    for dtype, members in groups.items():
        flat = [leaves[i].astype(dtype).reshape(rows, -1) for i in members]
        widths = [f.shape[1] for f in flat]
        packed = flat[0] if len(flat) == 1 else mx.concatenate(flat, axis=1)
        got = mx.distributed.all_gather(packed, group=group) if group.size() > 1 else packed
        mx.eval(got)
        start = 0
        total_rows = got.shape[0]
        for i, w in zip(members, widths):
            leaf = leaves[i]
            part = got[:, start : start + w].reshape((total_rows, *leaf.shape[1:]))
            out[i] = part.astype(leaf.dtype)
            start += w
    return [o for o in out if o is not None]


def fingerprint(parts: Sequence[Any]) -> int:
    """A stable (process-independent) 31-bit hash of ``repr(parts)``."""
    return zlib.crc32(repr(list(parts)).encode()) & 0x7FFFFFFF


def agree(group: Any, op: str, what: str, values: Sequence[int]) -> None:
    """Raise the same ``ValueError`` on every process unless all passed equal ``values``."""
    if group.size() == 1:
        return
    mine = mx.array([int(v) & 0x7FFFFFFF for v in values], dtype=mx.int32)
    allv = np.asarray(gather_scalars(mine, group))
    if not (allv == allv[0]).all():
        raise ValueError(
            f"{op}: the processes passed different {what} (per process: "
            f"{allv.tolist()}); every process must make the same call"
        )


def shared_key(key: Key, group: Any, op: str, extra: Sequence[int] = ()) -> mx.array:
    """The key all processes use: ``key`` (checked to be the same everywhere, together
    with the integers ``extra``), or for ``key=None`` a fresh key drawn by process 0.

    Raises:
        ValueError: (on every process) the processes passed different keys or
            different ``extra`` values.
    """
    fresh = key is None
    k = resolve_key(key)
    if group.size() == 1:
        return k
    bits = k.astype(mx.uint32).reshape(-1)
    mine = mx.concatenate(
        [mx.array([int(fresh)], dtype=mx.uint32), bits, mx.array(list(extra), dtype=mx.uint32)]
    )
    allv = gather_scalars(mine, group)
    rows = np.asarray(allv)
    if not (rows[:, 0] == rows[0, 0]).all():
        raise ValueError(
            f"{op}: some processes passed key=None and others a key; pass the same key "
            "on every process (or None on all of them)"
        )
    n_key = bits.shape[0]
    if not (rows[:, 1 + n_key :] == rows[0, 1 + n_key :]).all():
        raise ValueError(
            f"{op}: the processes passed different arguments (per process: "
            f"{rows[:, 1 + n_key:].tolist()}); every process must make the same call"
        )
    if fresh:  # process 0's fresh key for everyone
        return allv[0, 1 : 1 + n_key].astype(k.dtype).reshape(k.shape)
    if not (rows[:, 1 : 1 + n_key] == rows[0, 1 : 1 + n_key]).all():
        raise ValueError(
            f"{op}: the processes passed different keys; pass the same key on every "
            "process (e.g. mx.random.key(seed) with one seed)"
        )
    return k


def global_logsumexp(x: mx.array, group: Any, op: str) -> tuple[mx.array, mx.array]:
    """``(logsumexp, logsumexp of 2x)`` of the values ``x`` of all processes (flattened),
    by a maximum and a sum over processes: ``m = max_r max(x_r)``,
    ``lse = m + log Σ_r Σ_i exp(x_ri − m)``. NaN or ``+inf`` anywhere raises on every
    process."""
    x = x.astype(mx.float32).reshape(-1)
    bad = mx.sum(mx.logical_or(mx.isnan(x), x == mx.inf)).astype(mx.float32)
    local_max = mx.max(x) if x.size else mx.array(-mx.inf)
    head = mx.stack([local_max, bad])
    parts = gather_scalars(head, group)
    m = mx.max(parts[:, 0])
    n_bad = np.asarray(parts[:, 1])
    if n_bad.sum() > 0:
        ranks = [r for r in range(n_bad.shape[0]) if n_bad[r] > 0]
        raise ValueError(
            f"{op}: NaN or +inf log weights on process(es) {ranks}; check the model's "
            "parameters and the observations"
        )
    m_safe = mx.where(mx.isfinite(m), m, mx.array(0.0))
    s = mx.stack([mx.sum(mx.exp(x - m_safe)), mx.sum(mx.exp(2.0 * (x - m_safe)))])
    tot = sum_over(s, group)
    return m_safe + mx.log(tot[0]), 2.0 * m_safe + mx.log(tot[1])
