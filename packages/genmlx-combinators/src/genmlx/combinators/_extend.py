"""Extending a particle-batched ``Unfold``/``Scan`` trace by one step, as plain arrays.

A particle filter over a sequence model extends the batched trace by one step at a time
(``update`` with one more step and the new step's observations) and resamples it in
between. This module splits such a trace into the parts a compiled filter step needs —
every step's batched kernel trace with the epoch it was made at, the ancestor maps of the
resamplings since (the layout of :class:`~genmlx.combinators.step_store.FrozenSteps`), the
current particles' carry and the total score — and offers the new step's computation as
a pure function of arrays (:class:`StepPlan`), which ``genmlx.infer``'s particle filter
traces into one compiled program together with the weights and the resampling.

The pure function computes what ``update`` computes for a one-step extension: particle
``i`` uses key ``split(key, N)[i]``, the step key derived from it as the combinator does
(:func:`~genmlx.combinators.step_store._step_key`), and the kernel's ``generate`` with the
new step's constraints, so the step trace, the weight (the kernel's generate weight) and
the new score (old score + the step's score) are the same numbers. A trace rebuilt from
the parts (:meth:`SequenceParts.trace`) equals the trace ``update`` would have returned.

Only one-step extensions qualify (:meth:`plan_step` returns ``None`` otherwise): the
length grows by one, the initial state (``Unfold``'s ``init_state``, ``Scan``'s
``init_carry``) and ``Unfold``'s parameters are unchanged (``NoChange``), ``Scan``'s
``xs`` gains one element (a ``VectorDiff`` with no updated element), and the constraints
address only the new step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import mlx.core as mx

from genmlx.core import presample, runtime
from genmlx.core.batching import vmap_call
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, VectorDiff
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.trace import Trace
from genmlx.core.tree import flatten, unflatten

if TYPE_CHECKING:
    from genmlx.combinators.sequence import _SequenceCombinator
    from genmlx.combinators.step_store import StepVector

__all__ = ["SequenceParts", "StepPlan", "parts_of", "plan_step"]


class SequenceParts(NamedTuple):
    """A particle-batched sequence trace as plain parts.

    Attributes:
        entries: every step's batched kernel trace with the number of ancestor maps
            that existed when it was made (its *epoch*), in step order.
        maps: ancestor index arrays ``[N]`` of the resamplings so far; particle ``j``'s
            row of a step of epoch ``e`` is ``maps[e][maps[e+1][... maps[-1][j]]]``.
        carry: the current particles' carry (the state the next step starts from), a
            tree of ``[N, ...]`` arrays.
    """

    entries: StepVector[tuple[Trace, int]]
    maps: StepVector[mx.array]
    carry: Any

    def take(self, idx: mx.array, carry: Any) -> SequenceParts:
        """The parts after a resampling ``idx`` (the carry is given already gathered)."""
        return SequenceParts(self.entries, self.maps.append(idx.astype(mx.int32)), carry)

    def extend(self, step: Trace, carry: Any) -> SequenceParts:
        """The parts with ``step`` (made by the current particles) appended."""
        return SequenceParts(self.entries.append((step, len(self.maps))), self.maps, carry)

    def trace(
        self, model: _SequenceCombinator, args: tuple[Any, ...], score: mx.array, n: int
    ) -> Trace:
        """The batched trace of ``model`` made of these parts.

        Every step but the last is kept frozen (read lazily through the ancestor maps);
        the last step is gathered for the current particles, as after a resampling.
        """
        from genmlx.combinators.step_store import FrozenSteps, StepVector, _Steps

        t = len(self.entries)
        if t == 0:
            raise ValueError(f"{model.name}: a trace without steps cannot be rebuilt")
        everything = FrozenSteps(self.entries, self.maps)
        last = everything.step(t - 1)
        frozen = FrozenSteps(self.entries.prefix(t - 1), self.maps) if t > 1 else None
        steps = _Steps(frozen, StepVector.of([last]))
        out: Trace = model._trace_cls(model, tuple(args), steps, score, (n,))
        return out

    def retval_like(self, model: _SequenceCombinator, n_steps: int) -> Any:
        """Zeros shaped like one particle's return value of ``model`` at ``n_steps``
        steps (a stand-in where only the structure matters)."""
        from genmlx.combinators.scan import Scan

        last: Trace = self.entries[len(self.entries) - 1][0]
        rv = last.retval
        if isinstance(model, Scan):
            carry = unflatten(flatten(rv[0])[1], [x[0] for x in flatten(rv[0])[0]])
            o_leaves, o_td = flatten(rv[1])
            outs = unflatten(o_td, [mx.zeros((n_steps, *x.shape[1:]), x.dtype) for x in o_leaves])
            return carry, outs
        leaves, td = flatten(rv)
        return unflatten(td, [mx.zeros((n_steps, *x.shape[1:]), x.dtype) for x in leaves])


def parts_of(model: _SequenceCombinator, trace: Trace) -> SequenceParts | None:
    """The parts of a particle-batched trace of ``model`` (``None`` if it has no steps).

    Costs ``O(1)`` for a trace a particle filter made (its old steps are frozen already).
    """
    from genmlx.combinators.sequence import SequenceTrace
    from genmlx.combinators.step_store import _EMPTY

    if not isinstance(trace, SequenceTrace) or trace.gen_fn is not model:
        return None
    if len(trace.batch_shape) != 1 or trace.n_steps == 0:
        return None
    st = trace._steps
    fr = st.frozen
    entries: StepVector[tuple[Trace, int]] = _EMPTY if fr is None else fr._entries
    maps: StepVector[mx.array] = _EMPTY if fr is None else fr._maps
    epoch = len(maps)
    for tr in st.live:
        entries = entries.append((tr, epoch))
    t = trace.n_steps
    carry = model._carry_of(trace._steps[t - 1].retval, t - 1)
    return SequenceParts(entries, maps, carry)


class StepPlan:
    """The new step of a one-step extension, as a pure function of arrays.

    Attributes:
        model: the sequence combinator.
        kernel: its kernel.
        t: the new step's index.
        args: the model's new arguments.
        inputs: the arrays the step reads besides the particles' keys and carries (the
            step-key offset, the parameters or ``xs[t]``, the constraints' values).
        signature: hashable static description of everything else besides the
            particles' carry (the programs a filter compiles are cached under it).
        uses_t: whether the kernel receives the step index (``Unfold``) as its first
            argument.
    """

    def __init__(
        self,
        model: _SequenceCombinator,
        t: int,
        args: tuple[Any, ...],
        shared: tuple[Any, ...],
        constraints: ChoiceMap,
        carry: Any,
        kernel_args: Callable[[Any, Any, tuple[Any, ...]], tuple[Any, ...]],
        uses_t: bool,
    ) -> None:
        self.model = model
        self.kernel: GenerativeFunction = model.kernel
        self.t = t
        self.args = args
        self._kernel_args = kernel_args
        self.uses_t = uses_t
        self._shared = shared
        self._cons = constraints
        self._carry = carry
        offset = mx.array([0, t + 1], dtype=mx.uint32)  # _step_key's addend
        s_leaves, s_td = flatten(shared)
        c_leaves, _ = flatten(constraints)
        self.inputs: list[mx.array] = [offset, *s_leaves, *c_leaves]
        self._n_shared = len(s_leaves)
        self.signature = (
            type(model).__name__,
            presample.active_backend(),
            s_td,
            tuple((tuple(x.shape), x.dtype) for x in s_leaves),
            tuple((p, tuple(v.shape), v.dtype) for p, v, _ in constraints.masked_leaves()),
        )

    @property
    def analysis_args(self) -> tuple[Any, ...]:
        """The kernel's arguments for one particle (for :func:`genmlx.core.analyze`)."""
        leaves, td = flatten(self._carry)
        one = unflatten(td, [x[0] for x in leaves])
        return self._kernel_args(self.t, one, self._shared)

    def run(
        self, keys: mx.array, carry: Any, inputs: list[mx.array], t_symbol: Any
    ) -> tuple[Trace, tuple[Any, ...], mx.array]:
        """The new step for every particle: ``(step trace, its other arguments, weight)``.

        Pure in ``keys`` (``[N, 2]``, particle ``i``'s update key), ``carry`` and
        ``inputs`` (laid out as :attr:`inputs`); ``t_symbol`` is what an ``Unfold``
        kernel receives as ``t`` (the int, or a stand-in that behaves like it). The
        step trace comes back without its arguments (:meth:`finish` restores them).
        """
        from genmlx.combinators.step_store import _key_base

        kernel = self.kernel
        offset = inputs[0]
        shared = unflatten(flatten(self._shared)[1], list(inputs[1 : 1 + self._n_shared]))
        cons = unflatten(flatten(self._cons)[1], list(inputs[1 + self._n_shared :]))
        make_args = self._kernel_args
        uses_t = self.uses_t
        n = int(keys.shape[0])

        def one(
            k: mx.array, c: Any, sh: tuple[Any, ...], cm: ChoiceMap, off: mx.array
        ) -> tuple[Trace, tuple[Any, ...], mx.array]:
            step_key = _key_base(k) + off
            kargs = make_args(t_symbol, c, sh)
            tr, w = kernel.generate(kargs, cm, key=step_key)
            rest = tuple(tr.args[1:]) if uses_t else tuple(tr.args)
            return tr._replace(args=()), rest, w

        pre = presample.kernel_plan(kernel, self.analysis_args, self._cons)
        if pre is not None:
            # the particles' step keys, then their Gaussian draws in one kernel (GPU)
            step_keys = mx.vmap(_key_base)(keys) + offset
            base, z = presample.draw(pre, None, step_keys, n)

            def one_pre(
                sk: mx.array,
                b: mx.array,
                zz: mx.array,
                c: Any,
                sh: tuple[Any, ...],
                cm: ChoiceMap,
            ) -> tuple[Trace, tuple[Any, ...], mx.array]:
                kargs = make_args(t_symbol, c, sh)
                with presample.pending(b, presample.rows(zz, pre.plan)):
                    tr, w = kernel.generate(kargs, cm, key=sk)
                rest = tuple(tr.args[1:]) if uses_t else tuple(tr.args)
                return tr._replace(args=()), rest, w

            with runtime.transforming():
                pout: tuple[Trace, tuple[Any, ...], mx.array] = vmap_call(
                    one_pre, n, (step_keys, base, z, carry), (shared, cons)
                )
            return pout
        with runtime.transforming():
            out: tuple[Trace, tuple[Any, ...], mx.array] = vmap_call(
                one, n, (keys, carry), (shared, cons, offset)
            )
        return out

    def finish(self, step: Trace, rest: tuple[Any, ...]) -> Trace:
        """The step trace with its arguments (``t`` is the plain int again)."""
        args = (self.t, *rest) if self.uses_t else tuple(rest)
        out: Trace = step._replace(args=args)
        return out

    def carry_of(self, step: Trace) -> Any:
        """The carry the step returns (the state the next step starts from)."""
        return self.model._carry_of(step.retval, self.t)


def _only_step(constraints: ChoiceMap, t: int) -> ChoiceMap | None:
    """The constraints of step ``t`` when they constrain nothing else, else ``None``."""
    if constraints.is_empty:
        return ChoiceMap.empty()
    if constraints.has_root_value or constraints.batch_shape:
        return None
    if any(m is not None for _, _, m in constraints.masked_leaves()):
        return None
    comps = [c for c, _ in constraints.items_shallow()]
    if comps != [t]:
        return None
    return constraints.get_submap(t)


def plan_step(
    model: _SequenceCombinator,
    old_args: tuple[Any, ...],
    new_args: tuple[Any, ...],
    argdiffs: tuple[Diff, ...],
    constraints: ChoiceMap,
    carry: Any,
) -> StepPlan | None:
    """The plan of an update of a batched trace of ``model`` (with arguments ``old_args``
    and the given current carry) that only adds one step, or ``None``."""
    from genmlx.combinators.scan import Scan
    from genmlx.combinators.step_store import _is_step
    from genmlx.combinators.unfold import Unfold

    if len(new_args) != len(old_args) or len(argdiffs) != len(new_args):
        return None
    if isinstance(model, Unfold):
        if len(new_args) < 2 or not (_is_step(old_args[0]) and _is_step(new_args[0])):
            return None
        t = int(old_args[0])
        if int(new_args[0]) != t + 1:
            return None
        if not all(d.is_no_change() for d in argdiffs[1:]):
            return None
        cons = _only_step(constraints, t)
        if cons is None:
            return None
        params = tuple(new_args[2:])

        def unfold_args(ts: Any, c: Any, sh: tuple[Any, ...]) -> tuple[Any, ...]:
            return (ts, c, *sh)

        return StepPlan(model, t, tuple(new_args), params, cons, carry, unfold_args, True)
    if isinstance(model, Scan):
        if len(new_args) != 2 or not argdiffs[0].is_no_change():
            return None
        xd = argdiffs[1]
        if not isinstance(xd, VectorDiff) or xd.new_length != xd.prev_length + 1:
            return None
        if any(not d.is_no_change() for d in xd.updated.values()):
            return None
        try:
            t_old = model._length(tuple(old_args), "update")
            t_new = model._length(tuple(new_args), "update")
        except (TypeError, ValueError):
            return None
        if t_old != xd.prev_length or t_new != xd.new_length:
            return None
        t = t_old
        cons = _only_step(constraints, t)
        if cons is None:
            return None
        leaves, td = flatten(new_args[1])
        x_t = unflatten(td, [x[t] for x in leaves])

        def scan_args(ts: Any, c: Any, sh: tuple[Any, ...]) -> tuple[Any, ...]:
            return (c, sh[0])

        return StepPlan(model, t, tuple(new_args), (x_t,), cons, carry, scan_args, False)
    return None
