"""``Scan``: ``(carry, out_t) = kernel(carry, xs[t])`` over the leading axis of ``xs``,
with incremental update (the engine is :mod:`genmlx.combinators.sequence`)."""

from __future__ import annotations

from typing import Any

from genmlx.combinators.sequence import ScanTrace, _Inputs, _SequenceCombinator
from genmlx.combinators.step_store import _stack
from genmlx.core.diff import Diff, NoChange, UnknownChange, VectorDiff
from genmlx.core.tree import flatten, unflatten

__all__ = ["Scan"]


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
        >>> from genmlx.combinators.scan import Scan
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
