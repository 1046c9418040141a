"""``Unfold`` and ``Scan``: sequential combinators with incremental update.

Both run a *kernel* generative function once per step, threading a carry (the state)
from step to step, and keep the kernel's trace of every step. Step ``t``'s choices live
at ``(t, addr)`` (0-based), so ``(3, "y")`` is the kernel's ``"y"`` at step 3.

* ``Unfold(kernel)(n_steps, init_state, *params)`` calls
  ``kernel(t, state, *params) -> new_state``; its return value is the sequence of
  states *after* each step, stacked along a new leading axis (leaf by leaf when the
  state is a tuple/dict of arrays).
* ``Scan(kernel)(init_carry, xs)`` calls ``kernel(carry, xs[t]) -> (carry, out)``;
  its return value is ``(final_carry, outs)`` with the outs stacked along a new leading
  axis (``outs`` is ``None`` when ``xs`` is empty).

Incremental computation: the trace keeps every step's kernel trace (its score and
returned state), and a running total score. ``update`` and ``regenerate`` start at the
first step that can differ (the first constrained/selected step, the first step whose
inputs changed according to the argdiffs) and keep re-running steps only while the
kernel reports that its return value changed (a retdiff that is not ``NoChange``) or
while a later step is constrained/selected; every other step keeps its old trace. A
longer trace runs only the new steps; a shorter one subtracts the removed steps. So
extending a length-``T`` trace by one step costs one kernel execution and one score
addition, whatever ``T`` is (the step traces are held in a chunked persistent
vector, so the new trace shares the old steps without copying them). The stacked
return value is built lazily, only when ``trace.retval`` is read.

Batched operations (``vsimulate``, ``vgenerate``, batched ``update``/``regenerate``)
run these operations once under ``mx.vmap``; the steps themselves run one after the
other (they depend on each other).
"""

from __future__ import annotations

import bisect
import contextlib
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import Address, Component, Path, format_address, to_path
from genmlx.core.batching import particle_index, rebatch
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange, VectorDiff
from genmlx.core.errors import AddressError, ConstraintError
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.core.tree import Opaque, flatten, freezing, thawing, unflatten

__all__ = [
    "FrozenSteps",
    "Scan",
    "ScanTrace",
    "SequenceTrace",
    "StepVector",
    "Unfold",
    "UnfoldTrace",
]

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


class _Inputs(NamedTuple):
    """How the kernel's inputs changed, from the combinator's argdiffs."""

    carry0: Diff  # diff of the carry entering step 0
    all_steps: bool  # every step's own inputs may have changed
    steps: frozenset[int]  # steps whose own inputs changed (when not all_steps)
    step_diffs: Callable[[int, Diff], tuple[Diff, ...]]  # (t, carry diff) -> kernel argdiffs


# ---------------------------------------------------------------------------- trace
class SequenceTrace(Trace):
    """The trace of an ``Unfold`` or ``Scan``: one kernel trace per step.

    ``trace.steps[t]`` is the kernel's trace of step ``t`` (its ``score`` and its
    ``retval``, the state it returned). ``trace.score`` is their sum, kept as a running
    total by ``update``/``regenerate``. ``trace.retval`` is built from the steps on
    first access.
    """

    __slots__ = ("_cache_choices", "_cache_retval", "_steps")

    _steps: _Steps
    _cache_choices: ChoiceMap | None
    _cache_retval: Any

    def __init__(
        self,
        gen_fn: _SequenceCombinator,
        args: tuple[Any, ...],
        steps: Sequence[Trace],
        score: mx.array,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        object.__setattr__(self, "gen_fn", gen_fn)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "batch_shape", tuple(batch_shape))
        object.__setattr__(self, "_steps", _Steps.of(steps))
        object.__setattr__(self, "_cache_choices", None)
        object.__setattr__(self, "_cache_retval", _UNSET)

    @property  # type: ignore[override]
    def retval(self) -> Any:
        """The combinator's return value (stacked lazily from the steps)."""
        rv = self._cache_retval
        if rv is _UNSET:
            gf = self.gen_fn
            assert isinstance(gf, _SequenceCombinator)
            rv = gf._retval_of([s.retval for s in self._steps], self.args, self.batch_shape)
            object.__setattr__(self, "_cache_retval", rv)
        return rv

    @property
    def steps(self) -> Sequence[Trace]:
        """The kernel trace of every step, in order (a read-only sequence)."""
        return self._steps

    @property
    def n_steps(self) -> int:
        """The number of steps."""
        return len(self._steps)

    def _replace(self, **changes: Any) -> SequenceTrace:
        allowed = {"gen_fn", "args", "score", "batch_shape"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"{type(self).__name__}._replace: cannot replace {sorted(unknown)}")
        cls = type(self)
        new = cls(
            changes.get("gen_fn", self.gen_fn),
            changes.get("args", self.args),
            self._steps,
            changes.get("score", self.score),
            changes.get("batch_shape", self.batch_shape),
        )
        if set(changes) <= {"args"}:  # same steps, same batch shape: caches stay valid
            object.__setattr__(new, "_cache_choices", self._cache_choices)
            if self._steps:
                object.__setattr__(new, "_cache_retval", self._cache_retval)
        return new

    def get_choices(self) -> ChoiceMap:
        cached = self._cache_choices
        if cached is None:
            children: dict[Component, ChoiceMap] = {}
            for t, st in enumerate(self._steps):
                cm = st.get_choices()
                if not cm.is_empty:
                    children[t] = cm
            cached = ChoiceMap(None, children, self.batch_shape)
            object.__setattr__(self, "_cache_choices", cached)
        return cached

    def __getitem__(self, addr: Address) -> Any:
        """The value at ``(t, addr)``: step ``t``'s kernel trace looked up at ``addr``."""
        path = to_path(addr)
        if len(path) >= 2 and _is_step(path[0]) and int(path[0]) < len(self._steps):
            rest = path[1:]
            return self._steps[int(path[0])][rest if len(rest) > 1 else rest[0]]
        return self.get_choices()[addr]

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        for t, st in enumerate(self._steps):
            for sub, s in st.site_scores():
                yield (t, *sub), s

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        # Particle-level batched work (freezing()) keeps the steps frozen: opaque to
        # vmap and gathered lazily (FrozenSteps). Inside a batched operation, frozen
        # steps it registered pass through as they are; anything else sees every step.
        st = self._steps
        aux = (self.batch_shape, self.gen_fn)
        if freezing() and self.batch_shape and len(st.live) > 1:
            st = st.freeze()
            object.__setattr__(self, "_steps", st)  # same steps, another representation
        fr = st.frozen
        if fr is not None and (
            thawing() or (not freezing() and particle_index(fr._opaque_key) is None)
        ):
            return [self.args, self.score, None, list(st)], aux
        return [self.args, self.score, fr, list(st.live)], aux

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> SequenceTrace:
        batch_shape, gen_fn = aux
        args, score, frozen, live = children
        return cls(gen_fn, args, _Steps(frozen, StepVector.of(live)), score, batch_shape)


class UnfoldTrace(SequenceTrace):
    """The trace of an :class:`Unfold`."""

    __slots__ = ()


class ScanTrace(SequenceTrace):
    """The trace of a :class:`Scan`."""

    __slots__ = ()


# ---------------------------------------------------------------------------- engine
class _SequenceCombinator(GenerativeFunction):
    """Shared machinery of Unfold and Scan: per-step kernel traces, incremental update."""

    kind = "sequence"
    _trace_cls: type[SequenceTrace] = SequenceTrace

    def __init__(self, kernel: GenerativeFunction) -> None:
        if not isinstance(kernel, GenerativeFunction):
            raise TypeError(
                f"{self.kind}: the kernel must be a generative function (e.g. a @gen "
                f"function), got {type(kernel).__name__}"
            )
        self.kernel = kernel
        self.name = f"{self.kind}({getattr(kernel, 'name', repr(kernel))})"

    # ------------------------------------------------------------ hooks
    @abstractmethod
    def _length(self, args: tuple[Any, ...], op: str) -> int:
        """The number of steps T the arguments ask for (checked; errors name ``op``)."""

    @abstractmethod
    def _init_carry(self, args: tuple[Any, ...]) -> Any:
        """The carry before step 0."""

    @abstractmethod
    def _kernel_args(self, args: tuple[Any, ...], t: int, carry: Any) -> tuple[Any, ...]:
        """The kernel's arguments at step ``t`` given the incoming carry."""

    @abstractmethod
    def _carry_of(self, step_retval: Any, t: int) -> Any:
        """The carry after step ``t``, from that step's return value."""

    @abstractmethod
    def _inputs(
        self, args: tuple[Any, ...], argdiffs: tuple[Diff, ...], t0: int, t1: int, op: str
    ) -> _Inputs:
        """How the kernel inputs changed (old length ``t0``, new ``t1``), from the argdiffs."""

    @abstractmethod
    def _retval_of(
        self, step_retvals: list[Any], args: tuple[Any, ...], batch_shape: tuple[int, ...]
    ) -> Any:
        """The combinator's return value from the steps' return values."""

    @abstractmethod
    def _retdiff(self, t0: int, t1: int, changed: dict[int, Diff]) -> Diff:
        """The retdiff of an update from length ``t0`` to ``t1``; ``changed``: step → retdiff."""

    # ------------------------------------------------------------ small pieces
    def _new_trace(self, args: tuple[Any, ...], steps: Sequence[Trace], score: mx.array) -> Any:
        return self._trace_cls(self, args, steps, score)

    @contextlib.contextmanager
    def _at_step(self, t: int) -> Iterator[None]:
        """Name the step in address errors raised by the kernel."""
        try:
            yield
        except (ConstraintError, AddressError) as e:
            raise type(e)(f"{e} [inside {self.name}, step {t}: addresses ({t}, ...)]") from e

    def _step_carry(self, args: tuple[Any, ...], steps: Sequence[Trace], t: int) -> Any:
        return self._init_carry(args) if t == 0 else self._carry_of(steps[t - 1].retval, t - 1)

    def _check_map(self, cm: ChoiceMap, n: int, op: str, what: str) -> None:
        """Every top-level key of ``cm`` must be a step ``0 <= t < n``."""
        if cm.is_empty:
            return
        if cm.has_root_value:
            raise ConstraintError(
                f"{op} on {self.name}: the {what} is a single value at the root, but "
                f"{self.kind} keeps step t's choices at (t, addr); give a map such as "
                "{(0, 'x'): value}"
            )
        if runtime.is_lenient():
            return
        for c, sub in cm.items_shallow():
            if _is_step(c) and int(c) < n:
                continue
            first = next(iter(sub.leaves()), ((), None))[0]
            path = (c, *first)
            why = (
                f"step {c} does not exist: there are {n} steps (0..{n - 1})"
                if _is_step(c)
                else f"{c!r} is not a step: step t's choices live at (t, addr) with an int t"
            )
            raise ConstraintError(
                f"{op} on {self.name}: the {what} at address {format_address(path)} was not "
                f"used — {why}. Check the address (0-based steps) or the number of steps."
            )

    def _check_selection(self, sel: Selection, n: int, op: str) -> None:
        if runtime.is_lenient():
            return
        for path in sel.explicit_paths():
            if path and not (_is_step(path[0]) and int(path[0]) < n):
                raise AddressError(
                    f"{op} on {self.name}: the selection names address {format_address(path)}, "
                    f"which is not in the trace — {self.kind} has {n} steps and keeps step t's "
                    "choices at (t, addr) with an int t"
                )

    @staticmethod
    def _selected(sel: Selection, n: int) -> list[int] | None:
        """Steps the selection may touch (``None``: every step), without an O(n) scan
        for selections of explicit addresses."""
        if sel.is_none() or n == 0:
            return []
        if sel.selects_root():
            return None
        if sel.child(_PROBE).is_none():  # only explicitly named components are selected
            cands = {p[0] for p in sel.explicit_paths() if p and _is_step(p[0])}
            return sorted(int(c) for c in cands if int(c) < n and not sel.child(c).is_none())
        return [t for t in range(n) if not sel.child(t).is_none()]

    # ------------------------------------------------------------ GFI
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> SequenceTrace:
        n = self._length(args, "simulate")
        base = _key_base(key)
        steps: list[Trace] = []
        for t in range(n):
            kargs = self._kernel_args(args, t, self._step_carry(args, steps, t))
            with self._at_step(t):
                steps.append(self.kernel.simulate(kargs, key=_step_key(base, t)))
        return self._new_trace(args, steps, _sum_all([s.score for s in steps]))

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        n = self._length(args, "generate")
        self._check_map(constraints, n, "generate", "constraint")
        base = _key_base(key)
        steps: list[Trace] = []
        weights: list[mx.array] = []
        for t in range(n):
            kargs = self._kernel_args(args, t, self._step_carry(args, steps, t))
            with self._at_step(t):
                tr, w = self.kernel.generate(
                    kargs, constraints.get_submap(t), key=_step_key(base, t)
                )
            steps.append(tr)
            weights.append(w)
        tr = self._new_trace(args, steps, _sum_all([s.score for s in steps]))
        return GenerateResult(tr, _sum_all(weights))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        n = self._length(args, "assess")
        self._check_map(choices, n, "assess", "choice")
        carry = self._init_carry(args)
        retvals: list[Any] = []
        scores: list[mx.array] = []
        for t in range(n):
            with self._at_step(t):
                ld, rv = self.kernel.assess(
                    self._kernel_args(args, t, carry), choices.get_submap(t)
                )
            carry = self._carry_of(rv, t)
            retvals.append(rv)
            scores.append(ld)
        return AssessResult(_sum_all(scores), self._retval_of(retvals, args, ()))

    def _advance(
        self,
        op: str,
        trace: SequenceTrace,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
        requested: list[int] | None,
        rerun: Callable[
            [int, Trace, tuple[Any, ...], tuple[Diff, ...], mx.array],
            tuple[Trace, mx.array | None, Diff, ChoiceMap | None],
        ],
        fresh: Callable[[int, tuple[Any, ...], mx.array], tuple[Trace, mx.array | None]],
    ) -> tuple[SequenceTrace, list[mx.array], Diff, dict[Component, ChoiceMap], list[int]]:
        """The incremental walk shared by update and regenerate.

        Re-runs (with ``rerun``) the steps that can differ, runs new steps with
        ``fresh``, and drops removed ones. Returns the new trace, the weight terms of the
        re-run and new steps, the retdiff, the re-run steps' discards and the removed
        steps.
        """
        old = trace._steps
        t0, t1 = len(old), self._length(args, op)
        common = min(t0, t1)
        inputs = self._inputs(args, argdiffs, t0, t1, op)
        everything = inputs.all_steps or requested is None
        if everything:
            dirty: list[int] = []
        else:
            marks = {t for t in inputs.steps if t < common}
            marks.update(t for t in (requested or ()) if t < common)
            if not inputs.carry0.is_no_change() and common:
                marks.add(0)
            dirty = sorted(marks)

        def next_dirty(t: int) -> int | None:
            if everything:
                return t + 1 if t + 1 < common else None
            i = bisect.bisect_right(dirty, t)
            return dirty[i] if i < len(dirty) else None

        base = _key_base(key)
        steps = old.prefix(common)
        weights: list[mx.array] = []
        score_terms: list[mx.array] = []
        discard: dict[Component, ChoiceMap] = {}
        changed: dict[int, Diff] = {}
        last_t, last_diff = -2, NoChange
        t = next_dirty(-1)
        while t is not None:
            if t == 0:
                cdiff = inputs.carry0
            else:
                cdiff = last_diff if last_t == t - 1 else NoChange
            kargs = self._kernel_args(args, t, self._step_carry(args, steps, t))
            kdiffs = inputs.step_diffs(t, cdiff)
            with self._at_step(t):
                new, w, rd, disc = rerun(t, old[t], kargs, kdiffs, _step_key(base, t))
            steps = steps.set(t, new)
            if w is not None:
                weights.append(w)
            score_terms.append(new.score - old[t].score)
            if disc is not None and not disc.is_empty:
                discard[t] = disc
            last_t, last_diff = t, rd
            if not rd.is_no_change():
                changed[t] = rd
                t = t + 1 if t + 1 < common else next_dirty(t)
            else:
                t = next_dirty(t)
        for t in range(common, t1):
            kargs = self._kernel_args(args, t, self._step_carry(args, steps, t))
            with self._at_step(t):
                new, w = fresh(t, kargs, _step_key(base, t))
            steps = steps.append(new)
            if w is not None:
                weights.append(w)
            score_terms.append(new.score)
        removed = list(range(t1, t0))
        for t in removed:
            score_terms.append(-old[t].score)
        score = trace.score
        for s in score_terms:
            score = score + s
        new_trace = self._new_trace(args, steps, score)
        return new_trace, weights, self._retdiff(t0, t1, changed), discard, removed

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, SequenceTrace)
        n = self._length(args, "update")
        self._check_map(constraints, n, "update", "constraint")
        requested = sorted(int(c) for c, _ in constraints.items_shallow() if _is_step(c))
        kernel = self.kernel

        def rerun(
            t: int, old: Trace, kargs: tuple[Any, ...], kdiffs: tuple[Diff, ...], k: mx.array
        ) -> tuple[Trace, mx.array | None, Diff, ChoiceMap | None]:
            res = kernel.update(old, constraints.get_submap(t), kargs, kdiffs, key=k)
            return res.trace, res.weight, res.retdiff, res.discard

        def fresh(t: int, kargs: tuple[Any, ...], k: mx.array) -> tuple[Trace, mx.array | None]:
            tr, w = kernel.generate(kargs, constraints.get_submap(t), key=k)
            return tr, w

        new, weights, retdiff, discard, removed = self._advance(
            "update", trace, args, argdiffs, key, requested, rerun, fresh
        )
        for t in removed:
            old = trace._steps[t]
            weights.append(-old.score)
            cm = old.get_choices()
            if not cm.is_empty:
                discard[t] = cm
        return UpdateResult(
            new, _total(weights, trace.score), retdiff, ChoiceMap(None, discard, ())
        )

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, SequenceTrace)
        n = self._length(args, "regenerate")
        self._check_selection(selection, max(n, trace.n_steps), "regenerate")
        requested = self._selected(selection, min(n, trace.n_steps))
        kernel = self.kernel

        def rerun(
            t: int, old: Trace, kargs: tuple[Any, ...], kdiffs: tuple[Diff, ...], k: mx.array
        ) -> tuple[Trace, mx.array | None, Diff, ChoiceMap | None]:
            res = kernel.regenerate(old, selection.child(t), kargs, kdiffs, key=k)
            return res.trace, res.weight, res.retdiff, None

        def fresh(t: int, kargs: tuple[Any, ...], k: mx.array) -> tuple[Trace, mx.array | None]:
            return kernel.simulate(kargs, key=k), None

        new, weights, retdiff, _, _ = self._advance(
            "regenerate", trace, args, argdiffs, key, requested, rerun, fresh
        )
        return RegenerateResult(new, _total(weights, trace.score), retdiff)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        assert isinstance(trace, SequenceTrace)
        n = trace.n_steps
        self._check_selection(selection, n, "project")
        chosen = self._selected(selection, n)
        terms = [
            self.kernel.project(trace._steps[t], selection.child(t))
            for t in (range(n) if chosen is None else chosen)
        ]
        return _total(terms, trace.score)


# ---------------------------------------------------------------------------- Unfold
class Unfold(_SequenceCombinator):
    """Gen.jl's Unfold: ``state_{t} = kernel(t, state_{t-1}, *params)`` for ``n_steps`` steps.

    Called as ``Unfold(kernel)(n_steps, init_state, *params)`` with ``n_steps`` a Python
    int (the number of steps is static). Step ``t`` (0-based) runs
    ``kernel(t, state, *params)`` with the state returned by step ``t - 1``
    (``init_state`` for step 0).

    Address layout: step ``t``'s choices at ``(t, addr)``.

    Return value: the states after each step, stacked along a new leading axis (``[n_steps,
    ...]``, leaf by leaf for a tuple/dict of arrays; ``[P, n_steps, ...]`` for a batched
    trace; an empty ``[0, ...]`` stack shaped like ``init_state`` when ``n_steps == 0``).

    Weights (Gen.jl's): ``generate`` — the sum of the kernel's generate weights (the log
    density of the constrained choices); ``update`` — the sum of the re-run steps' update
    weights, plus the new steps' generate weights, minus the removed steps' scores, with
    the overwritten choices and the removed steps' choices in the discard;
    ``regenerate`` — the re-run steps' regenerate weights (new and removed steps add 0).
    The argdiff of ``n_steps`` is ignored (the ints are compared); update re-runs steps
    from the first constrained step (step 0 if ``init_state`` or a param changed) only
    while the kernel's retdiff is not ``NoChange`` or a later step is constrained.

    Args:
        kernel: a generative function ``(t, state, *params) -> new_state``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.diff import NoChange
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.unfold import Unfold
        >>> @gen
        ... def step(t, x, noise):
        ...     x = normal(x, noise) @ "x"
        ...     normal(x, 1.0) @ "y"
        ...     return x
        >>> chain = Unfold(step)
        >>> tr, w = chain.generate((3, mx.array(0.0), 0.5), choicemap({(1, "y"): 0.3}),
        ...                        key=mx.random.key(0))
        >>> sorted(map(str, tr.get_choices().addresses()))[:2]
        ["(0, 'x')", "(0, 'y')"]
        >>> tr.retval.shape                      # states after steps 0, 1, 2
        (3,)
        >>> bool(mx.allclose(w, normal.log_prob(0.3, tr[(1, "x")], 1.0)))  # the observed y
        True
        >>> new, w2, _, discard = chain.update(tr, choicemap({(3, "y"): 1.0}),
        ...     (4, mx.array(0.0), 0.5), (NoChange, NoChange, NoChange), key=mx.random.key(1))
        >>> new.n_steps, bool(mx.allclose(new.score, tr.score + new.steps[3].score))
        (4, True)
    """

    kind = "Unfold"
    _trace_cls = UnfoldTrace

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """Fixed when ``n_steps`` is an int and the kernel's structure is fixed."""
        if not args or not isinstance(args[0], int) or isinstance(args[0], bool):
            return "has a number of steps that is not a Python int"
        if args[0] == 0:
            return None
        reason = self.kernel.static_structure((0, *args[1:]))
        return None if reason is None else f"is an Unfold whose kernel {reason}"

    def choice_domains(self, args: tuple[Any, ...]) -> dict[Any, Any] | None:
        """The kernel's domains (at step 0's arguments) under every step."""
        if not args or not isinstance(args[0], int) or args[0] == 0:
            return None
        doms = self.kernel.choice_domains((0, *args[1:]))
        if doms is None:
            return None
        return {(t, *p): d for t in range(args[0]) for p, d in doms.items()}

    @staticmethod
    def conformance_examples() -> list[tuple[GenerativeFunction, tuple[Any, ...]]]:
        """Small models the conformance kit checks this combinator on."""
        from genmlx.combinators._examples import unfold_examples

        return unfold_examples()

    def _length(self, args: tuple[Any, ...], op: str) -> int:
        if len(args) < 2:
            raise TypeError(
                f"{op} on {self.name}: Unfold takes (n_steps, init_state, *params); got "
                f"{len(args)} argument(s)"
            )
        n = args[0]
        if not _is_step(n):
            raise TypeError(
                f"{op} on {self.name}: n_steps must be a Python int >= 0 (the number of steps "
                f"is static); got {n!r}. Convert an array with int(...) outside the model."
            )
        return int(n)

    def _init_carry(self, args: tuple[Any, ...]) -> Any:
        return args[1]

    def _kernel_args(self, args: tuple[Any, ...], t: int, carry: Any) -> tuple[Any, ...]:
        return (t, carry, *args[2:])

    def _carry_of(self, step_retval: Any, t: int) -> Any:
        return step_retval

    def _inputs(
        self, args: tuple[Any, ...], argdiffs: tuple[Diff, ...], t0: int, t1: int, op: str
    ) -> _Inputs:
        pdiffs = tuple(argdiffs[2:])
        params_changed = any(not d.is_no_change() for d in pdiffs)

        def step_diffs(t: int, cdiff: Diff) -> tuple[Diff, ...]:
            return (NoChange, cdiff, *pdiffs)

        return _Inputs(argdiffs[1], params_changed, frozenset(), step_diffs)

    def _retval_of(
        self, step_retvals: list[Any], args: tuple[Any, ...], batch_shape: tuple[int, ...]
    ) -> Any:
        axis = len(batch_shape)
        if not step_retvals:
            init = _as_tree(args[1]) if len(args) > 1 else mx.array(0.0)
            leaves, td = flatten(init)
            empty = [mx.zeros((*batch_shape, 0, *x.shape), dtype=x.dtype) for x in leaves]
            return unflatten(td, empty)
        return _stack(step_retvals, axis, self.name, "state")

    def _retdiff(self, t0: int, t1: int, changed: dict[int, Diff]) -> Diff:
        if t0 == t1 and not changed:
            return NoChange
        return VectorDiff(t1, t0, {t: d for t, d in changed.items() if t < t1})


# ---------------------------------------------------------------------------- Scan
class Scan(_SequenceCombinator):
    """A scan: ``(carry, out_t) = kernel(carry, xs[t])`` over the leading axis of ``xs``.

    Called as ``Scan(kernel)(init_carry, xs)``; ``xs`` is an array (or a tuple/dict of
    arrays) whose leading axis ``T`` is the number of steps. Step ``t`` (0-based) runs
    ``kernel(carry, x_t)`` and must return ``(new_carry, out)``.

    Address layout: step ``t``'s choices at ``(t, addr)``.

    Return value: ``(final_carry, outs)`` with the outs stacked along a new leading axis
    (``[T, ...]``; ``[P, T, ...]`` for a batched trace; ``outs`` is ``None`` when
    ``T == 0``).

    Weights: as :class:`Unfold` (Gen.jl's): generate adds the kernel's generate weights;
    update adds the re-run steps' update weights and the new steps' generate weights and
    subtracts the removed steps' scores (their choices go to the discard); regenerate adds
    the re-run steps' regenerate weights. Incremental update: pass a ``VectorDiff`` for
    ``xs`` (``updated`` = the steps whose ``x`` changed, and the lengths) and only those
    steps, the constrained ones and the steps after them whose carry changed are re-run;
    ``UnknownChange`` for ``xs`` (the default for a new array) re-runs every step.

    Args:
        kernel: a generative function ``(carry, x) -> (new_carry, out)``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.diff import NoChange, VectorDiff
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.unfold import Scan
        >>> @gen
        ... def step(level, x):
        ...     level = normal(level, 1.0) @ "level"
        ...     y = normal(level + x, 0.5) @ "y"
        ...     return level, y
        >>> scan = Scan(step)
        >>> xs = mx.array([0.0, 1.0, 2.0])
        >>> tr, w = scan.generate((mx.array(0.0), xs), choicemap({(2, "y"): 2.5}),
        ...                       key=mx.random.key(0))
        >>> carry, ys = tr.retval
        >>> ys.shape, bool(carry == tr[(2, "level")])
        ((3,), True)
        >>> xs4 = mx.array([0.0, 1.0, 2.0, 3.0])
        >>> new, w2, _, _ = scan.update(tr, choicemap({(3, "y"): 3.0}), (mx.array(0.0), xs4),
        ...                             (NoChange, VectorDiff(4, 3, {})), key=mx.random.key(1))
        >>> new.n_steps, bool(mx.allclose(new.score, tr.score + new.steps[3].score))
        (4, True)
    """

    kind = "Scan"
    _trace_cls = ScanTrace

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """Fixed when the kernel's structure is fixed for one step."""
        if len(args) != 2:
            return "is called with the wrong number of arguments"
        carry, xs = args
        leaves, td = flatten(xs)
        if not leaves or any(x.ndim == 0 for x in leaves):
            return None if not leaves else "has xs without a leading step axis"
        x0 = unflatten(td, [x[0] for x in leaves])
        reason = self.kernel.static_structure((carry, x0))
        return None if reason is None else f"is a Scan whose kernel {reason}"

    def choice_domains(self, args: tuple[Any, ...]) -> dict[Any, Any] | None:
        """The kernel's domains (at step 0's arguments) under every step."""
        if len(args) != 2:
            return None
        carry, xs = args
        leaves, td = flatten(xs)
        if not leaves or any(x.ndim == 0 for x in leaves):
            return None
        doms = self.kernel.choice_domains((carry, unflatten(td, [x[0] for x in leaves])))
        if doms is None:
            return None
        return {(t, *p): d for t in range(leaves[0].shape[0]) for p, d in doms.items()}

    @staticmethod
    def conformance_examples() -> list[tuple[GenerativeFunction, tuple[Any, ...]]]:
        """Small models the conformance kit checks this combinator on."""
        from genmlx.combinators._examples import scan_examples

        return scan_examples()

    def _length(self, args: tuple[Any, ...], op: str) -> int:
        if len(args) != 2:
            raise TypeError(
                f"{op} on {self.name}: Scan takes (init_carry, xs); got {len(args)} argument(s)"
            )
        leaves, _ = flatten(args[1])
        if not leaves:
            raise TypeError(
                f"{op} on {self.name}: xs must be an MLX array (or a tuple/dict of arrays) "
                f"with a leading step axis; got {type(args[1]).__name__}"
            )
        lengths = {int(x.shape[0]) if x.ndim else -1 for x in leaves}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(
                f"{op} on {self.name}: every array in xs needs the same leading (step) axis; "
                f"got shapes {[tuple(x.shape) for x in leaves]}"
            )
        return lengths.pop()

    def _init_carry(self, args: tuple[Any, ...]) -> Any:
        return args[0]

    def _kernel_args(self, args: tuple[Any, ...], t: int, carry: Any) -> tuple[Any, ...]:
        leaves, td = flatten(args[1])
        return (carry, unflatten(td, [x[t] for x in leaves]))

    def _carry_of(self, step_retval: Any, t: int) -> Any:
        if not (isinstance(step_retval, (tuple, list)) and len(step_retval) == 2):
            raise TypeError(
                f"{self.name}: the kernel must return (carry, out); step {t} returned "
                f"{type(step_retval).__name__}"
            )
        return step_retval[0]

    def _inputs(
        self, args: tuple[Any, ...], argdiffs: tuple[Diff, ...], t0: int, t1: int, op: str
    ) -> _Inputs:
        xd = argdiffs[1]
        if xd.is_no_change():

            def no_x(t: int, cdiff: Diff) -> tuple[Diff, ...]:
                return (cdiff, NoChange)

            return _Inputs(argdiffs[0], False, frozenset(), no_x)
        if isinstance(xd, VectorDiff):
            if xd.prev_length != t0 or xd.new_length != t1:
                raise ValueError(
                    f"{op} on {self.name}: the VectorDiff for xs says length {xd.prev_length} "
                    f"-> {xd.new_length}, but the trace has {t0} steps and the new xs {t1}"
                )
            updated = dict(xd.updated)

            def some_x(t: int, cdiff: Diff) -> tuple[Diff, ...]:
                return (cdiff, updated.get(t, NoChange))

            changed = frozenset(int(i) for i, d in updated.items() if not d.is_no_change())
            return _Inputs(argdiffs[0], False, changed, some_x)

        def all_x(t: int, cdiff: Diff) -> tuple[Diff, ...]:
            return (cdiff, UnknownChange)

        return _Inputs(argdiffs[0], True, frozenset(), all_x)

    def _retval_of(
        self, step_retvals: list[Any], args: tuple[Any, ...], batch_shape: tuple[int, ...]
    ) -> Any:
        if not step_retvals:
            return (args[0] if args else None), None
        outs = [rv[1] for rv in step_retvals]
        return step_retvals[-1][0], _stack(outs, len(batch_shape), self.name, "out")

    def _retdiff(self, t0: int, t1: int, changed: dict[int, Diff]) -> Diff:
        return NoChange if t0 == t1 and not changed else UnknownChange
