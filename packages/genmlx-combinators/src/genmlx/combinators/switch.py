"""``Switch``: choose one of several generative functions by an index.

``Switch(g0, g1, ...)(index, *args)`` runs branch ``index`` on ``args``. Its choices are
the branch's own choices, *not* namespaced (Gen.jl's convention), so branches that share
an address (say ``"x"``) can be switched between under the same constraints.

Two execution modes give the same numbers:

* **one branch** — when the index can be read (a Python int, or an array outside
  ``mx.vmap``/``mx.compile``), only the chosen branch runs;
* **all branches, selected per particle** — under batching the index is one value per
  particle, so every branch runs for every particle and each particle keeps the result
  of its own branch (by masking). Choices of the branches not taken are masked out of
  the trace's choice map (:meth:`genmlx.core.ChoiceMap.where`).

Weights follow Gen.jl: ``update`` that keeps the branch updates it; ``update`` that
changes the branch generates the new branch under the old choices merged with the
constraints (Gen.jl's ``update_recurse_merge``: the new branch keeps the old values at
the addresses it shares with the old branch, where they have the same shape and dtype,
and the constraints win), with weight ``w_generate − old score``; the discard holds the
old values that were not kept (overwritten or removed). ``regenerate`` that changes the
branch samples the new branch from its prior (weight 0: the removed and the new choices
are both proposed from the prior and cancel).

Under batching address checks are made on the union of the branches: a constraint no
branch uses is an error, but one that only the branch *not* taken by some particle uses
is not (that particle has no such choice).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.combinators._select import concrete_int, merge_masked, select_tree
from genmlx.core import runtime
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import AddressError, ConstraintError
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.random import split
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = ["Switch", "SwitchTrace"]


class SwitchTrace(Trace):
    """The trace of a :class:`Switch`.

    Attributes:
        index: the branch index (an array of shape ``batch_shape`` when batched).
        branches: one sub-trace per branch; in one-branch mode only the chosen one is
            set (the others are ``None``), in all-branches mode every branch's trace is
            kept and the choice map masks out the branches not taken.
    """

    __slots__ = ("branches", "index")

    index: Any
    branches: tuple[Trace | None, ...]

    def __init__(
        self,
        gen_fn: Switch,
        args: tuple[Any, ...],
        retval: Any,
        score: mx.array,
        index: Any,
        branches: tuple[Trace | None, ...],
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, retval, score, batch_shape)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "branches", tuple(branches))

    @property
    def all_branches(self) -> bool:
        """True when every branch's trace is kept (the batched, masked mode)."""
        return all(b is not None for b in self.branches) and len(self.branches) > 1

    @property
    def chosen(self) -> Trace:
        """The chosen branch's trace (one-branch mode only)."""
        if self.all_branches:
            raise ValueError(
                "this Switch trace holds every branch (it was made under batching); "
                "read its choices with get_choices()"
            )
        tr = next(b for b in self.branches if b is not None)
        return tr

    def get_choices(self) -> ChoiceMap:
        if not self.all_branches:
            return self.chosen.get_choices().with_batch_shape(self.batch_shape)
        cms = [b.get_choices() for b in self.branches if b is not None]
        return ChoiceMap.where(self.index, cms).with_batch_shape(self.batch_shape)

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        for b in self.branches:
            if b is not None:
                yield from b.site_scores()

    def nonfinite_reason(self) -> str | None:
        """Names this Switch and the out-of-range branch indices (batched mode)."""
        if not self.all_branches or not isinstance(self.index, mx.array):
            return None
        k = len(self.branches)
        idx = self.index
        bad = mx.logical_or(idx < 0, idx >= k)
        if not bool(mx.any(bad).item()):
            return None
        where = np.flatnonzero(np.asarray(bad).reshape(-1))
        values = np.asarray(idx).reshape(-1)[where]
        return (
            f"{self.gen_fn.name}: branch index {values[:10].tolist()} out of range at "
            f"particle/element {where[:10].tolist()}{' ...' if where.size > 10 else ''}; "
            f"there are {k} branches (0..{k - 1}). The score of those particles is NaN."
        )

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return (
            [self.args, self.retval, self.score, self.index, list(self.branches)],
            (self.batch_shape, self.gen_fn),
        )

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> SwitchTrace:
        batch_shape, gen_fn = aux
        args, retval, score, index, branches = children
        return cls(gen_fn, args, retval, score, index, tuple(branches), batch_shape)


def _restrict(cm: ChoiceMap, paths: set[Path]) -> ChoiceMap:
    """The leaves of ``cm`` (with their masks) at ``paths``."""
    return ChoiceMap.from_nodes(
        ((p, ChoiceMap(v, None, (), m)) for p, v, m in cm.masked_leaves() if p in paths),
        cm.batch_shape,
    )


def _pick(index: mx.array, values: list[mx.array]) -> mx.array:
    out = values[-1]
    for b in range(len(values) - 2, -1, -1):
        out = mx.where(index == b, values[b], out)
    return out


class Switch(GenerativeFunction):
    """Run one of several generative functions, chosen by an index (0-based).

    Called as ``Switch(g0, g1, ...)(index, *args) @ addr``; every branch takes ``args``.
    The choices are those of the chosen branch, at the branch's own addresses (not
    namespaced), and the score is the chosen branch's score. Under batching the index
    may differ per particle: every branch runs and each particle keeps its own (see the
    module docstring for weights and address checks).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.switch import Switch
        >>> @gen
        ... def near():
        ...     return normal(0.0, 1.0) @ "x"
        >>> @gen
        ... def far():
        ...     return normal(10.0, 1.0) @ "x"
        >>> sw = Switch(near, far)
        >>> ld, _ = sw.assess((1,), choicemap({"x": 10.0}))
        >>> round(float(ld), 4)   # log N(10; 10, 1)
        -0.9189
        >>> @gen
        ... def model():
        ...     k = (normal(0.0, 1.0) @ "u" > 0).astype(mx.int32)   # a random branch
        ...     return sw(k) @ "s"
        >>> tr = model.vsimulate((), 4, key=mx.random.key(0))     # one index per particle
        >>> bool(mx.all((tr["u"] > 0) == (tr[("s", "x")] > 5)))
        True
    """

    def __init__(self, *branches: GenerativeFunction) -> None:
        if not branches:
            raise ValueError("Switch needs at least one branch")
        for i, b in enumerate(branches):
            if not isinstance(b, GenerativeFunction):
                raise TypeError(f"Switch: branch {i} is not a generative function: {b!r}")
        self.branches = tuple(branches)
        self.name = "Switch(" + ", ".join(getattr(b, "name", "?") for b in branches) + ")"

    # ------------------------------------------------------------------ helpers
    def _split_args(self, args: tuple[Any, ...], op: str) -> tuple[Any, tuple[Any, ...]]:
        if not args:
            raise TypeError(f"{op} on {self.name}: the first argument must be the branch index")
        return args[0], tuple(args[1:])

    def _index(self, index: Any, op: str) -> int | None:
        """The branch index when it can be read now (checked), else None (symbolic)."""
        if isinstance(index, float):
            raise TypeError(f"{op} on {self.name}: the branch index must be an int, got {index!r}")
        if isinstance(index, mx.array) and index.size != 1:
            raise ValueError(
                f"{op} on {self.name}: the branch index must be a single integer, got an array "
                f"of shape {tuple(index.shape)}; for one index per particle, draw the index "
                "inside the model (e.g. `k = categorical(p) @ 'k'`) and run it batched"
            )
        i = concrete_int(index)
        if i is not None and not 0 <= i < len(self.branches):
            raise IndexError(
                f"{op} on {self.name}: branch index {i} out of range; there are "
                f"{len(self.branches)} branches (0..{len(self.branches) - 1})"
            )
        return i

    def _keys(self, key: mx.array) -> list[mx.array]:
        ks = split(key, len(self.branches) + 1)
        return [ks[b] for b in range(len(self.branches) + 1)]

    def _sym_index(self, index: Any) -> mx.array:
        idx = index if isinstance(index, mx.array) else mx.array(index)
        return idx.astype(mx.int32)

    def _valid_score(self, idx: mx.array, score: mx.array) -> mx.array:
        # An out-of-range index under batching cannot raise; it makes the particle's
        # score NaN, which the score check reports.
        ok = mx.logical_and(idx >= 0, idx < len(self.branches))
        return mx.where(ok, score, mx.array(float("nan"), dtype=score.dtype))

    def _trace(
        self,
        args: tuple[Any, ...],
        index: Any,
        traces: list[Trace],
        i: int | None,
    ) -> SwitchTrace:
        if i is not None:
            tr = traces[0]
            branches: list[Trace | None] = [None] * len(self.branches)
            branches[i] = tr
            return SwitchTrace(self, args, tr.retval, tr.score, index, tuple(branches))
        idx = self._sym_index(index)
        score = self._valid_score(idx, _pick(idx, [t.score for t in traces]))
        retval = traces[-1].retval
        for b in range(len(traces) - 2, -1, -1):
            retval = select_tree(idx == b, traces[b].retval, retval, f"{self.name} return values")
        return SwitchTrace(self, args, retval, score, idx, tuple(traces))

    def _check_union(
        self, cm: ChoiceMap, traces: list[Trace], op: str, what: str = "constraint"
    ) -> None:
        if runtime.is_lenient():
            return
        union = ChoiceMap.empty()
        for t in traces:
            for path, v in t.get_choices().leaves():
                if path not in union:
                    union = union.set_submap(path, ChoiceMap(v))
        for path, _ in cm.leaves():
            if path not in union:
                raise ConstraintError(
                    f"{op} on {self.name}: the {what} at address {format_address(path)} is not "
                    "used by any branch. Check the address for typos."
                )

    def _check_selection_union(self, sel: Selection, traces: list[Trace], op: str) -> None:
        if runtime.is_lenient():
            return
        choices = [t.get_choices() for t in traces]
        for path in sel.explicit_paths():
            if not any(path in c for c in choices):
                raise AddressError(
                    f"{op} on {self.name}: the selection names address {format_address(path)}, "
                    "which no branch's trace has"
                )

    # ------------------------------------------------------------------ GFI
    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> SwitchTrace:
        index, bargs = self._split_args(args, "simulate")
        i = self._index(index, "simulate")
        keys = self._keys(key)
        if i is not None:
            return self._trace(args, index, [self.branches[i].simulate(bargs, key=keys[i])], i)
        traces = [g.simulate(bargs, key=keys[b]) for b, g in enumerate(self.branches)]
        return self._trace(args, index, traces, None)

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        index, bargs = self._split_args(args, "generate")
        i = self._index(index, "generate")
        keys = self._keys(key)
        if i is not None:
            tr, w = self.branches[i].generate(bargs, constraints, key=keys[i])
            return GenerateResult(self._trace(args, index, [tr], i), w)
        with runtime.lenient():
            res = [g.generate(bargs, constraints, key=keys[b]) for b, g in enumerate(self.branches)]
        traces = [r.trace for r in res]
        self._check_union(constraints, traces, "generate")
        idx = self._sym_index(index)
        return GenerateResult(
            self._trace(args, index, traces, None), _pick(idx, [r.weight for r in res])
        )

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        index, bargs = self._split_args(args, "assess")
        i = self._index(index, "assess")
        if i is not None:
            return self.branches[i].assess(bargs, choices)
        with runtime.lenient():
            res = [g.assess(bargs, choices) for g in self.branches]
        idx = self._sym_index(index)
        score = self._valid_score(idx, _pick(idx, [r.log_density for r in res]))
        retval = res[-1].retval
        for b in range(len(res) - 2, -1, -1):
            retval = select_tree(idx == b, res[b].retval, retval, f"{self.name} return values")
        return AssessResult(score, retval)

    def _full_traces(
        self, trace: SwitchTrace, bargs: tuple[Any, ...], key: mx.array
    ) -> list[Trace]:
        """Every branch's trace: a one-branch trace gets stand-ins for the others."""
        keys = self._keys(key)
        out: list[Trace] = []
        for b, (g, t) in enumerate(zip(self.branches, trace.branches)):
            out.append(t if t is not None else g.simulate(bargs, key=keys[b]))
        return out

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, SwitchTrace)
        if constraints.is_empty and all(d.is_no_change() for d in argdiffs):
            # nothing changes: re-run nothing (the kit's incremental-update law)
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        index, bargs = self._split_args(args, "update")
        bdiffs = tuple(argdiffs[1:])
        i_new = self._index(index, "update")
        k_main, k_aux = split(key, 2)
        if i_new is not None and not trace.all_branches:
            old_i = trace.branches.index(trace.chosen)
            if old_i == i_new:
                g = self.branches[i_new]
                new_b, w, rd, disc = g.update(trace.chosen, constraints, bargs, bdiffs, key=k_main)
                return UpdateResult(self._trace(args, index, [new_b], i_new), w, rd, disc)
            tr, w, discard = self._switch_branch(
                trace.chosen.get_choices(), self.branches[i_new], bargs, constraints, k_main
            )
            return UpdateResult(
                self._trace(args, index, [tr], i_new), w - trace.score, UnknownChange, discard
            )
        # all branches, per particle
        old_idx = (
            self._sym_index(trace.index)
            if trace.all_branches
            else mx.array(trace.branches.index(trace.chosen), dtype=mx.int32)
        )
        new_idx = self._sym_index(index)
        olds = self._full_traces(trace, tuple(trace.args[1:]), k_aux)
        keys = self._keys(k_main)
        new_traces: list[Trace] = []
        w_upd: list[mx.array] = []
        w_gen: list[mx.array] = []
        pieces: list[tuple[ChoiceMap, mx.array]] = []
        old_cms = [t.get_choices() for t in olds]
        # per particle, the old values of its old branch (masked where that branch has
        # none): what a new branch reuses at the addresses it shares with the old one
        old_values = ChoiceMap.where(old_idx, old_cms)
        given = {p for p, _ in constraints.leaves()}
        addrs = [{p for p, _ in cm.leaves()} for cm in old_cms]
        with runtime.lenient():
            for b, g in enumerate(self.branches):
                up = g.update(olds[b], constraints, bargs, bdiffs, key=keys[b])
                reuse = _restrict(old_values, addrs[b] - given)
                merged = constraints if reuse.is_empty else reuse.merge(constraints)
                fresh = g.generate(bargs, merged, key=keys[b])
                kept = old_idx == b
                new_traces.append(select_tree(kept, up.trace, fresh.trace, f"{self.name} update"))
                w_upd.append(up.weight)
                w_gen.append(fresh.weight)
                pieces.append((up.discard, mx.logical_and(kept, new_idx == b)))
                # leaving branch b for branch c: the old values c does not reuse
                for c in range(len(self.branches)):
                    if c != b:
                        gone = _restrict(old_cms[b], addrs[b] - (addrs[c] - given))
                        on = mx.logical_and(kept, new_idx == c)
                        pieces.append((gone, on))
        self._check_union(constraints, new_traces, "update")
        same = old_idx == new_idx
        weight = mx.where(same, _pick(new_idx, w_upd), _pick(new_idx, w_gen) - trace.score)
        new = self._trace(args, index, new_traces, None)
        return UpdateResult(new, weight, UnknownChange, merge_masked(pieces))

    def _switch_branch(
        self,
        old: ChoiceMap,
        g: GenerativeFunction,
        bargs: tuple[Any, ...],
        constraints: ChoiceMap,
        key: mx.array,
    ) -> tuple[Trace, mx.array, ChoiceMap]:
        """Generate branch ``g`` keeping the old values at the addresses it shares with
        the old branch (Gen.jl's ``update_recurse_merge``).

        The constraints win over old values. An old value is reused only where the new
        branch has a choice of the same shape and dtype (learnt from a first
        ``generate`` under the constraints alone, which is the result when nothing is
        shared). Returns ``(trace, generate weight, discard)``; the discard holds the
        old values that were not reused (overwritten or removed).
        """
        tr, w = g.generate(bargs, constraints, key=key)
        given = {p for p, _ in constraints.leaves()}
        new_leaves = {p: v for p, v in tr.get_choices().leaves()}
        shared = set()
        for p, v in old.leaves():
            nv = new_leaves.get(p)
            if p not in given and nv is not None and nv.shape == v.shape and nv.dtype == v.dtype:
                shared.add(p)
        if shared:
            reuse = _restrict(old, shared)
            tr, w = g.generate(bargs, reuse.merge(constraints), key=key)
        discard = _restrict(old, {p for p, _ in old.leaves()} - shared)
        return tr, w, discard

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, SwitchTrace)
        if selection.is_none() and all(d.is_no_change() for d in argdiffs):
            return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        index, bargs = self._split_args(args, "regenerate")
        bdiffs = tuple(argdiffs[1:])
        i_new = self._index(index, "regenerate")
        k_main, k_aux = split(key, 2)
        if i_new is not None and not trace.all_branches:
            old_i = trace.branches.index(trace.chosen)
            if old_i == i_new:
                new_b, w, rd = self.branches[i_new].regenerate(
                    trace.chosen, selection, bargs, bdiffs, key=k_main
                )
                return RegenerateResult(self._trace(args, index, [new_b], i_new), w, rd)
            tr = self.branches[i_new].simulate(bargs, key=k_main)
            return RegenerateResult(
                self._trace(args, index, [tr], i_new), mx.zeros_like(trace.score), UnknownChange
            )
        old_idx = (
            self._sym_index(trace.index)
            if trace.all_branches
            else mx.array(trace.branches.index(trace.chosen), dtype=mx.int32)
        )
        new_idx = self._sym_index(index)
        olds = self._full_traces(trace, tuple(trace.args[1:]), k_aux)
        self._check_selection_union(selection, olds, "regenerate")
        keys = self._keys(k_main)
        new_traces: list[Trace] = []
        w_reg: list[mx.array] = []
        with runtime.lenient():
            for b, g in enumerate(self.branches):
                rg = g.regenerate(olds[b], selection, bargs, bdiffs, key=keys[b])
                fresh = g.simulate(bargs, key=keys[b])
                new_traces.append(
                    select_tree(old_idx == b, rg.trace, fresh, f"{self.name} regenerate")
                )
                w_reg.append(rg.weight)
        weight = mx.where(old_idx == new_idx, _pick(new_idx, w_reg), mx.zeros_like(trace.score))
        return RegenerateResult(self._trace(args, index, new_traces, None), weight, UnknownChange)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        assert isinstance(trace, SwitchTrace)
        if not trace.all_branches:
            return trace.chosen.gen_fn.project(trace.chosen, selection)
        branches = [b for b in trace.branches if b is not None]
        self._check_selection_union(selection, branches, "project")
        with runtime.lenient():
            ps = [b.gen_fn.project(b, selection) for b in branches]
        return _pick(self._sym_index(trace.index), ps)

    def __repr__(self) -> str:
        return f"<{self.name}>"
