"""The engine shared by ``Unfold`` and ``Scan``: per-step kernel traces and
incremental ``update``/``regenerate``.

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
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.combinators.step_store import (
    _PROBE,
    _UNSET,
    StepVector,
    _is_step,
    _key_base,
    _step_key,
    _Steps,
    _sum_all,
    _total,
)
from genmlx.core import runtime
from genmlx.core.address import Address, Component, Path, format_address, to_path
from genmlx.core.batching import particle_index
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange
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
from genmlx.core.tree import freezing, thawing

__all__ = ["ScanTrace", "SequenceTrace", "UnfoldTrace"]


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

    def length(self, args: tuple[Any, ...], op: str = "length") -> int:
        """The number of steps ``T`` these arguments ask for (checked: bad arguments
        raise an error that names ``op``)."""
        return self._length(tuple(args), op)

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

    # ------------------------------------------------------------ particle filters
    def particle_parts(self, trace: Trace) -> Any:
        """A particle-batched trace of this combinator as plain parts (steps with their
        epochs, ancestor maps, the current carry), or ``None``; used by
        ``genmlx.infer``'s compiled particle filter (see :mod:`genmlx.combinators._extend`)."""
        from genmlx.combinators._extend import parts_of

        return parts_of(self, trace)

    def plan_particle_step(
        self,
        old_args: tuple[Any, ...],
        new_args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        constraints: ChoiceMap,
        carry: Any,
    ) -> Any:
        """The new step of an update that only adds one step, as a pure function of
        arrays (:class:`~genmlx.combinators._extend.StepPlan`), or ``None``."""
        from genmlx.combinators._extend import plan_step

        return plan_step(self, old_args, new_args, argdiffs, constraints, carry)

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
