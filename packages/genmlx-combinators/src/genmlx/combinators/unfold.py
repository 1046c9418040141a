"""``Unfold``: Gen.jl's unfold combinator with incremental update.

``Unfold(kernel)(n_steps, init_state, *params)`` calls
``kernel(t, state, *params) -> new_state`` for ``t = 0 .. n_steps - 1``; step ``t``'s
choices live at ``(t, addr)``. The engine (incremental update, batching) is shared
with :class:`~genmlx.combinators.scan.Scan` and lives in
:mod:`genmlx.combinators.sequence`; the step store in :mod:`genmlx.combinators.step_store`.
The names this module held before the split (``Scan``, ``SequenceTrace``,
``ScanTrace``, ``FrozenSteps``, ``StepVector``) still import from here, with a
``DeprecationWarning`` naming their new module.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.combinators.sequence import UnfoldTrace, _Inputs, _SequenceCombinator
from genmlx.combinators.step_store import _as_tree, _is_step, _stack
from genmlx.core.deprecation import moved
from genmlx.core.diff import Diff, NoChange, VectorDiff
from genmlx.core.tree import flatten, unflatten

__all__ = ["Unfold", "UnfoldTrace"]

__getattr__ = moved(
    __name__,
    {
        "Scan": "genmlx.combinators.scan",
        "ScanTrace": "genmlx.combinators.sequence",
        "SequenceTrace": "genmlx.combinators.sequence",
        "FrozenSteps": "genmlx.combinators.step_store",
        "StepVector": "genmlx.combinators.step_store",
    },
)


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
