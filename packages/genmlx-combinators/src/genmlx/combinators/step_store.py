"""The step store of the sequence combinators (``Unfold``, ``Scan``).

A sequence trace keeps one kernel trace per step. :class:`StepVector` is a chunked
persistent vector of them (appending to or replacing one step of a long trace shares
the other steps instead of copying them); :class:`FrozenSteps` packs a long prefix of
batched steps into stacked arrays so that a particle filter over many steps neither
re-traces nor holds one Python object per step and particle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import mlx.core as mx

from genmlx.core.batching import particle_index, rebatch
from genmlx.core.trace import Trace
from genmlx.core.tree import Opaque, flatten, unflatten

__all__ = ["FrozenSteps", "StepVector"]

_PROBE = "\x00genmlx-sequence-probe"  # a component no step can have
_UNSET: Any = object()
_T = TypeVar("_T")


# ---------------------------------------------------------------------------- helpers
def _is_step(c: object) -> bool:
    return isinstance(c, int) and not isinstance(c, bool) and c >= 0


def _key_base(key: mx.array) -> mx.array:
    return mx.random.split(key, 2)[0]


def _step_key(base: mx.array, t: int) -> mx.array:
    """Step ``t``'s key: one addition (Threefry keys are stream identifiers)."""
    return base + mx.array([0, t + 1], dtype=mx.uint32)


def _as_tree(v: Any) -> Any:
    """Python numbers become arrays so that they stack like the rest."""
    if isinstance(v, (bool, int, float)):
        return mx.array(v)
    if isinstance(v, tuple) and not hasattr(type(v), "_fields"):
        return tuple(_as_tree(x) for x in v)
    if isinstance(v, list):
        return [_as_tree(x) for x in v]
    if isinstance(v, dict):
        return {k: _as_tree(x) for k, x in v.items()}
    return v


def _stack(values: Sequence[Any], axis: int, who: str, what: str) -> Any:
    """Stack trees of arrays leaf by leaf along ``axis``."""
    flat = [flatten(_as_tree(v)) for v in values]
    leaves0, td0 = flat[0]
    for t, (_, td) in enumerate(flat):
        if td != td0:
            raise TypeError(
                f"{who}: the {what} of step {t} has a different structure from step 0's "
                f"({td} vs {td0}); every step must return the same tree of arrays"
            )
    stacked = [mx.stack([f[0][i] for f in flat], axis=axis) for i in range(len(leaves0))]
    return unflatten(td0, stacked)


def _total(terms: list[mx.array], like: mx.array) -> mx.array:
    if not terms:
        return mx.zeros_like(like)
    out = terms[0]
    for x in terms[1:]:
        out = out + x
    return out


def _sum_all(terms: list[mx.array]) -> mx.array:
    if not terms:
        return mx.array(0.0)
    if len(terms) == 1:
        return terms[0]
    return mx.sum(mx.stack(terms), axis=0)


class StepVector(Sequence[_T], Generic[_T]):
    """An immutable sequence (of step traces) with cheap append and replace.

    Steps are kept in full chunks of ``CHUNK`` plus a tail, so appending a step copies
    at most one chunk's worth of pointers and the tuple of chunk references (T/CHUNK),
    not all T steps: extending a trace stays O(1) in practice. Traces share chunks.
    """

    CHUNK = 128
    __slots__ = ("_chunks", "_n", "_tail")

    def __init__(self, chunks: tuple[tuple[_T, ...], ...], tail: tuple[_T, ...]) -> None:
        self._chunks = chunks
        self._tail = tail
        self._n = len(chunks) * self.CHUNK + len(tail)

    @classmethod
    def of(cls, items: Sequence[_T]) -> StepVector[_T]:
        """The vector holding ``items`` (returned as is when already a StepVector)."""
        if isinstance(items, StepVector):
            return items
        items = tuple(items)
        c = cls.CHUNK
        full = len(items) // c
        return cls(tuple(items[i * c : (i + 1) * c] for i in range(full)), items[full * c :])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self)[i]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"step {i} out of range for {self._n} steps")
        q, r = divmod(i, self.CHUNK)
        return self._chunks[q][r] if q < len(self._chunks) else self._tail[r]

    def __iter__(self) -> Iterator[_T]:
        for chunk in self._chunks:
            yield from chunk
        yield from self._tail

    def prefix(self, n: int) -> StepVector[_T]:
        """The first ``n`` steps."""
        if n >= self._n:
            return self
        q, r = divmod(n, self.CHUNK)
        source = self._chunks[q] if q < len(self._chunks) else self._tail
        return type(self)(self._chunks[:q], source[:r])

    def append(self, tr: _T) -> StepVector[_T]:
        """A new vector with ``tr`` added at the end."""
        tail = (*self._tail, tr)
        if len(tail) == self.CHUNK:
            return type(self)((*self._chunks, tail), ())
        return type(self)(self._chunks, tail)

    def set(self, i: int, tr: _T) -> StepVector[_T]:
        """A new vector with step ``i`` replaced by ``tr``."""
        q, r = divmod(i, self.CHUNK)
        if q < len(self._chunks):
            chunk = self._chunks[q]
            new = (*chunk[:r], tr, *chunk[r + 1 :])
            return type(self)((*self._chunks[:q], new, *self._chunks[q + 1 :]), self._tail)
        return type(self)(self._chunks, (*self._tail[:r], tr, *self._tail[r + 1 :]))

    def __repr__(self) -> str:
        return f"StepVector({self._n} steps)"


_EMPTY: StepVector[Any] = StepVector((), ())


class FrozenSteps(Opaque):
    """Steps ``0..n-1`` of a particle-batched sequence trace, kept out of ``mx.vmap``.

    A particle filter extends a batched ``Unfold``/``Scan`` trace by one step at a time
    and resamples it in between. Passing all ``t`` old steps through every batched
    update and gathering all of them at every resampling would make step ``t`` cost
    ``O(t)``. Instead the old steps of a batched trace are *frozen* (see
    :class:`~genmlx.core.tree.Opaque`): flattening for particle-level work yields no
    leaves for them, and a resampling ``idx`` is recorded as an ancestor map instead of
    gathering their arrays. Each step remembers how many maps existed when it was frozen
    (its *epoch*); particle ``j``'s row of a step frozen at epoch ``e`` is
    ``maps[e][maps[e+1][... maps[-1][j]]]``. Reading step ``s`` inside a batched update
    composes only the maps recorded since ``s`` was frozen (one for the last step after
    one resampling), so a filter step reads the previous state with ``O(1)`` gathers and
    the cost of a step does not grow with ``t``. Reading everything (``get_choices``,
    the stacked return value) gathers each step once: ``O(t)``.
    """

    __slots__ = ("_entries", "_fresh", "_key", "_maps")

    def __init__(
        self,
        entries: StepVector[tuple[Trace, int]],
        maps: StepVector[mx.array],
        key: object | None = None,
        fresh: tuple[Trace, ...] = (),
    ) -> None:
        self._entries = entries
        self._maps = maps
        self._key = object() if key is None else key
        self._fresh = fresh

    @classmethod
    def extend(cls, base: FrozenSteps | None, steps: Sequence[Trace]) -> FrozenSteps:
        """``base`` (or nothing) followed by the batched step traces ``steps``."""
        entries: StepVector[tuple[Trace, int]] = _EMPTY if base is None else base._entries
        maps: StepVector[mx.array] = _EMPTY if base is None else base._maps
        epoch = len(maps)
        for tr in steps:
            entries = entries.append((tr, epoch))
        return cls(entries, maps, None, tuple(steps))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def _opaque_key(self) -> object:
        return self._key

    def _opaque_take(self, idx: mx.array) -> FrozenSteps:
        return FrozenSteps(self._entries, self._maps.append(idx.astype(mx.int32)))

    def _opaque_arrays(self) -> list[mx.array]:
        out = [m for m in self._maps[-1:]]
        for tr in self._fresh:
            out.extend(flatten(tr)[0])
        return out

    def prefix(self, n: int) -> FrozenSteps:
        """The first ``n`` steps (a view sharing the data and the particle index)."""
        return FrozenSteps(self._entries.prefix(n), self._maps, self._key)

    def _rows(self, epoch: int, start: mx.array | None) -> mx.array | None:
        """Rows of a step frozen at ``epoch`` for the particles ``start`` (None: all)."""
        maps = self._maps
        r = start
        for k in range(len(maps) - 1, epoch - 1, -1):
            r = maps[k] if r is None else maps[k][r]
        return r

    def step(self, i: int) -> Trace:
        """Step ``i``: this particle's (inside a batched operation) or all particles'."""
        tr, epoch = self._entries[i]
        pid = particle_index(self._key)
        rows = self._rows(epoch, pid)
        return _gather(tr, rows, unbatch=pid is not None)

    def materialize(self) -> list[Trace]:
        """Every step, gathered once (``O(n)`` gathers plus one composition per map)."""
        pid = particle_index(self._key)
        maps = self._maps
        entries = list(self._entries)
        out: list[Trace] = [None] * len(entries)  # type: ignore[list-item]
        rows, k = pid, len(maps)  # rows: this particle's row at epoch k
        for i in range(len(entries) - 1, -1, -1):  # epochs decrease going back
            tr, epoch = entries[i]
            while k > epoch:
                k -= 1
                rows = maps[k] if rows is None else maps[k][rows]
            out[i] = _gather(tr, rows, unbatch=pid is not None)
        return out

    def __repr__(self) -> str:
        return f"FrozenSteps({len(self)} steps, {len(self._maps)} ancestor maps)"


def _gather(tr: Trace, rows: mx.array | None, unbatch: bool) -> Trace:
    """``tr`` (batched) at ``rows``: one particle's step inside vmap, else all particles."""
    if rows is None:
        if not unbatch:
            return tr
        raise AssertionError("a registered frozen step always has a particle index")
    leaves, td = flatten(tr)
    shape: tuple[int, ...] = () if unbatch else tuple(rows.shape)
    out: Trace = unflatten(rebatch(td, shape), [x[rows] for x in leaves])
    return out


class _Steps(Sequence[Trace]):
    """A sequence trace's steps: a frozen prefix (or none) followed by live step traces."""

    __slots__ = ("frozen", "live")

    def __init__(self, frozen: FrozenSteps | None, live: StepVector[Trace]) -> None:
        self.frozen = frozen if frozen is not None and len(frozen) else None
        self.live = live

    @classmethod
    def of(cls, items: Sequence[Trace]) -> _Steps:
        if isinstance(items, _Steps):
            return items
        return cls(None, StepVector.of(items))

    @property
    def n_frozen(self) -> int:
        return 0 if self.frozen is None else len(self.frozen)

    def __len__(self) -> int:
        return self.n_frozen + len(self.live)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self)[i]
        n, p = len(self), self.n_frozen
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"step {i} out of range for {n} steps")
        if i < p:
            assert self.frozen is not None
            return self.frozen.step(i)
        return self.live[i - p]

    def __iter__(self) -> Iterator[Trace]:
        if self.frozen is not None:
            yield from self.frozen.materialize()
        yield from self.live

    def prefix(self, n: int) -> _Steps:
        p = self.n_frozen
        if n >= len(self):
            return self
        if n <= p:
            assert self.frozen is not None
            return _Steps(self.frozen.prefix(n), _EMPTY)
        return _Steps(self.frozen, self.live.prefix(n - p))

    def append(self, tr: Trace) -> _Steps:
        return _Steps(self.frozen, self.live.append(tr))

    def set(self, i: int, tr: Trace) -> _Steps:
        p = self.n_frozen
        if i >= p:
            return _Steps(self.frozen, self.live.set(i - p, tr))
        # thaw the frozen steps from i on: they are about to be re-run or kept as is
        assert self.frozen is not None
        thawed = [tr, *(self.frozen.step(j) for j in range(i + 1, p)), *self.live]
        return _Steps(self.frozen.prefix(i), StepVector.of(thawed))

    def freeze(self) -> _Steps:
        """Every step but the last frozen (the live ones are batched step traces).

        The last step stays live: the next filter step reads its state, and a
        rejuvenation move on it then leaves the frozen part untouched (the same
        object in the old and new traces, so accept/reject selects only live leaves).
        """
        if len(self.live) < 2:
            return self
        live = list(self.live)
        return _Steps(FrozenSteps.extend(self.frozen, live[:-1]), StepVector.of(live[-1:]))
