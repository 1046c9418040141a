"""``Recurse``: Gen.jl's production/aggregation recursion combinator, 0-based.

A random tree is grown top-down by a *production* kernel and summarised bottom-up by an
*aggregation* kernel:

* ``production(v) -> (u, child_args)``: called on node ``i`` with its input ``v``;
  ``child_args`` is a list (or tuple) of at most ``max_branch`` inputs, one per child.
  Child ``k`` of node ``i`` is node ``i * max_branch + 1 + k``; the root is node ``0``.
* ``aggregation(v, u, child_results) -> w``: called on node ``i`` after its children,
  with the node's input ``v``, its production value ``u`` and the list of the
  children's aggregation results. The root's result is the return value.

Address layout: node ``i``'s production choices are at ``(i, "production", ...)``
and its aggregation choices at ``(i, "aggregation", ...)``. This is Gen.jl's
``(idx, Val(:production)) => ...`` / ``(idx, Val(:aggregation)) => ...`` with
``idx = i + 1`` (Gen.jl's nodes are 1-based, its child ``k = 1..max_branch`` of ``idx``
is ``(idx - 1) * max_branch + k + 1``). Two further differences from Gen.jl: the
arguments are ``(v,)`` (the root is always node 0, Gen.jl passes ``(v, root_idx)``), and
the aggregation kernel also receives the node's input ``v``.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.core.testing.models import normal
    >>> from genmlx.combinators.recurse import Recurse
    >>> @gen
    ... def split_node(depth):                  # a full binary tree of the given depth
    ...     x = normal(0.0, 1.0) @ "x"
    ...     return x, ([depth - 1, depth - 1] if depth > 0 else [])
    >>> @gen
    ... def add_up(depth, x, child_sums):
    ...     return x + sum(child_sums, mx.array(0.0))
    >>> tree = Recurse(split_node, add_up, max_branch=2)
    >>> tr = tree.simulate((1,), key=mx.random.key(0))
    >>> sorted(map(str, tr.get_choices().addresses()))
    ["(0, 'production', 'x')", "(1, 'production', 'x')", "(2, 'production', 'x')"]
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import Component, Path, format_address
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange, VectorDiff, diff_args
from genmlx.core.errors import AddressError, BatchedControlFlowError, ConstraintError
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

__all__ = ["AGGREGATION", "PRODUCTION", "Recurse", "RecurseTrace"]

PRODUCTION = "production"
"""Address component of a node's production-kernel choices."""
AGGREGATION = "aggregation"
"""Address component of a node's aggregation-kernel choices."""

_KINDS = (PRODUCTION, AGGREGATION)


class RecurseTrace(Trace):
    """The trace of a :class:`Recurse`: one production and one aggregation trace per node.

    Attributes:
        productions: node index → the production kernel's trace at that node.
        aggregations: node index → the aggregation kernel's trace at that node.
    """

    __slots__ = ("aggregations", "productions")

    productions: dict[int, Trace]
    aggregations: dict[int, Trace]

    def __init__(
        self,
        gen_fn: Recurse,
        args: tuple[Any, ...],
        retval: Any,
        score: mx.array,
        productions: dict[int, Trace],
        aggregations: dict[int, Trace],
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, retval, score, batch_shape)
        object.__setattr__(self, "productions", productions)
        object.__setattr__(self, "aggregations", aggregations)

    @property
    def nodes(self) -> list[int]:
        """The node indices of the tree, in increasing order."""
        return sorted(self.productions)

    def kernel_traces(self, node: int) -> tuple[tuple[str, Trace], tuple[str, Trace]]:
        """``(("production", trace), ("aggregation", trace))`` of one node."""
        return (PRODUCTION, self.productions[node]), (AGGREGATION, self.aggregations[node])

    def get_choices(self) -> ChoiceMap:
        children: dict[Component, ChoiceMap] = {}
        for i in self.nodes:
            sub: dict[Component, ChoiceMap] = {}
            for kind, tr in self.kernel_traces(i):
                cm = tr.get_choices()
                if not cm.is_empty:
                    sub[kind] = cm
            if sub:
                children[i] = ChoiceMap(None, sub, self.batch_shape)
        return ChoiceMap(None, children, self.batch_shape)

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        for i in self.nodes:
            for kind, tr in self.kernel_traces(i):
                for sub, s in tr.site_scores():
                    yield (i, kind, *sub), s

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        # Kernel traces are batched like this trace (one execution per particle): children.
        nodes = tuple(self.nodes)
        children: list[Any] = [self.args, self.retval, self.score]
        children.extend(self.productions[i] for i in nodes)
        children.extend(self.aggregations[i] for i in nodes)
        return children, (self.batch_shape, self.gen_fn, nodes)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> RecurseTrace:
        batch_shape, gen_fn, nodes = aux
        args, retval, score = children[:3]
        n = len(nodes)
        prods = dict(zip(nodes, children[3 : 3 + n]))
        aggs = dict(zip(nodes, children[3 + n :]))
        return cls(gen_fn, args, retval, score, prods, aggs, batch_shape)


@dataclass
class _Build:
    """Mutable accumulator of one operation's new tree (local to that operation)."""

    prods: dict[int, Trace] = field(default_factory=dict)
    aggs: dict[int, Trace] = field(default_factory=dict)
    weight: Any = 0.0
    discard: ChoiceMap = field(default_factory=ChoiceMap.empty)


@dataclass
class _Edit:
    """Read-only inputs of one update or regenerate."""

    op: str
    old: RecurseTrace
    constraints: ChoiceMap | None  # update
    selection: Selection | None  # regenerate
    dirty: set[int]  # nodes with something constrained/selected at or below them


class Recurse(GenerativeFunction):
    """Gen.jl's ``Recurse``: a random tree grown by a production kernel and folded by an
    aggregation kernel (0-based nodes).

    ``Recurse(production, aggregation, max_branch)(v)``: node 0 runs
    ``production(v) -> (u, child_args)``; each child ``k`` (node ``i * max_branch + 1 +
    k`` of node ``i``) recurses on ``child_args[k]``; then, children first,
    ``aggregation(v, u, child_results) -> w`` runs at every node. The return value is
    the root's ``w``.

    Address layout: ``(i, "production", *a)`` for the choice ``a`` of the production
    kernel at node ``i`` and ``(i, "aggregation", *a)`` for the aggregation kernel's
    (Gen.jl's ``(i + 1, Val(:production)) => a``). A kernel that is a distribution has
    its choice at ``(i, "production")`` itself.

    Weights (Gen.jl's): the score is the sum of every kernel trace's score.
    ``generate``: the sum of the kernel weights. ``update``: a node whose input changed
    or that has constraints re-runs its production kernel's ``update``; when its number
    of children changes, removed subtrees subtract their scores (their choices go to the
    discard) and new subtrees are generated from the constraints (adding their generate
    weights); aggregation kernels re-run when their inputs changed. ``regenerate``: the
    same, with kernel ``regenerate`` weights (new and removed subtrees add 0).
    Subtrees whose input is unchanged and with nothing constrained or selected below
    are reused untouched (no kernel runs). ``project``: the sum of the kernels'
    projections.

    Batching: the tree's shape is Python control flow. Under ``vsimulate`` /
    ``vgenerate`` / batched traces every particle must get the same number of children
    at every node (e.g. a number fixed by the input); a number that depends on a random
    value raises :class:`~genmlx.core.errors.BatchedControlFlowError` — run such models
    one particle at a time.

    Args:
        production: generative function ``(v) -> (u, child_args)``.
        aggregation: generative function ``(v, u, child_results) -> w``.
        max_branch: the largest number of children of a node.

    Example:
        >>> import math
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.combinators.recurse import Recurse
        >>> @gen
        ... def grow(n):            # a chain of n + 1 nodes: node i has child i*3 + 1
        ...     step = normal(0.0, 1.0) @ "step"
        ...     return step, ([n - 1] if n > 0 else [])
        >>> @gen
        ... def total(n, step, rest):
        ...     return step + sum(rest, mx.array(0.0))
        >>> walk = Recurse(grow, total, max_branch=3)
        >>> cm = choicemap({(0, "production", "step"): 0.5, (1, "production", "step"): -1.0})
        >>> tr, w = walk.generate((1,), cm, key=mx.random.key(0))
        >>> float(tr.retval)
        -0.5
        >>> logn = lambda x: -0.5 * x * x - 0.5 * math.log(2 * math.pi)
        >>> abs(float(w) - (logn(0.5) + logn(-1.0))) < 1e-5
        True
    """

    def __init__(
        self,
        production: GenerativeFunction,
        aggregation: GenerativeFunction,
        max_branch: int,
    ) -> None:
        for what, gf in (("production", production), ("aggregation", aggregation)):
            if not isinstance(gf, GenerativeFunction):
                raise TypeError(
                    f"Recurse: the {what} kernel must be a generative function, "
                    f"got {type(gf).__name__}"
                )
        if not isinstance(max_branch, int) or isinstance(max_branch, bool) or max_branch < 1:
            raise ValueError(f"Recurse: max_branch must be a positive int, got {max_branch!r}")
        self.production = production
        self.aggregation = aggregation
        self.max_branch = max_branch
        self.name = (
            f"Recurse({getattr(production, 'name', production)!s}, "
            f"{getattr(aggregation, 'name', aggregation)!s})"
        )

    # ------------------------------------------------------------------ tree helpers
    def child(self, node: int, k: int) -> int:
        """The index of child ``k`` (0-based) of ``node``."""
        return node * self.max_branch + 1 + k

    def parent(self, node: int) -> int:
        """The index of the parent of ``node`` (``node > 0``)."""
        return (node - 1) // self.max_branch

    def _check_args(self, args: tuple[Any, ...], op: str) -> Any:
        if len(args) != 1:
            raise TypeError(
                f"{self.name} ({op}): takes one argument, the root's production input v "
                f"(call it with (v,)); got {len(args)} arguments"
            )
        return args[0]

    def _unpack(self, node: int, retval: Any, op: str) -> tuple[Any, list[Any]]:
        if not (isinstance(retval, (tuple, list)) and len(retval) == 2):
            raise TypeError(
                f"{self.name} ({op}) at node {node}: the production kernel must return a "
                f"pair (u, child_args) with child_args a list of the children's inputs; "
                f"got {type(retval).__name__}"
            )
        u, cargs = retval
        if not isinstance(cargs, (list, tuple)):
            raise TypeError(
                f"{self.name} ({op}) at node {node}: the production kernel's child_args "
                f"must be a list (or tuple) with one input per child, got "
                f"{type(cargs).__name__}; return [] for a leaf"
            )
        if len(cargs) > self.max_branch:
            raise ValueError(
                f"{self.name} ({op}) at node {node}: the production kernel returned "
                f"{len(cargs)} children but max_branch is {self.max_branch}; return at "
                f"most {self.max_branch} child inputs or build Recurse with a larger "
                "max_branch"
            )
        return u, list(cargs)

    @staticmethod
    def _keys(key: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        ks = split(key, 3)
        return ks[0], ks[1], ks[2]

    def _child_keys(self, key: mx.array) -> mx.array:
        # One key per child slot, so a child's key does not depend on its siblings' count.
        return split(key, self.max_branch)

    def _subtree(self, node: int, prods: dict[int, Trace]) -> Iterator[int]:
        """The nodes of the subtree rooted at ``node`` in the tree ``prods``."""
        stack = [node]
        while stack:
            i = stack.pop()
            yield i
            n = len(self._unpack(i, prods[i].retval, "subtree")[1])
            stack.extend(self.child(i, k) for k in range(n))

    @contextlib.contextmanager
    def _shape_errors(self, node: int, op: str) -> Iterator[None]:
        """Explain a batched-control-flow error raised while growing the tree at ``node``."""
        try:
            yield
        except BatchedControlFlowError as e:
            raise BatchedControlFlowError(
                f"{self.name} ({op}) at node {node}: a kernel needed a concrete random "
                "value, so the tree's shape (the number of children) depends on "
                "randomness. Under batching (vsimulate, vgenerate, batched traces) every "
                "particle must grow the same tree: make the number of children a function "
                "of the node's input only, or run the particles one at a time with "
                f"simulate/generate. Cause: {e}"
            ) from e

    # ------------------------------------------------------------------ constraints
    def _node_constraints(self, cm: ChoiceMap, op: str, what: str) -> set[int]:
        """The nodes ``cm`` constrains; rejects addresses that are not node components.

        Inside ``runtime.lenient()`` (a branch of a batched Switch) other addresses are
        ignored instead.
        """
        nodes: set[int] = set()
        if runtime.is_lenient():
            for c, _ in cm.items_shallow():
                if isinstance(c, int) and not isinstance(c, bool) and c >= 0:
                    nodes.add(c)
            return nodes
        if cm.has_root_value:
            raise ConstraintError(
                f"{self.name} ({op}): a {what} at the root address; constrain node "
                "choices at (node, 'production', addr) or (node, 'aggregation', addr)"
            )
        for c, sub in cm.items_shallow():
            if not isinstance(c, int) or isinstance(c, bool) or c < 0:
                raise ConstraintError(
                    f"{self.name} ({op}): the {what} at {format_address((c,))} is not at a "
                    "node index; addresses are (node, 'production' | 'aggregation', ...) "
                    "with node = 0, 1, 2, ..."
                )
            if sub.has_root_value:
                raise ConstraintError(
                    f"{self.name} ({op}): the {what} at {format_address((c,))} is a value; "
                    f"use ({c}, 'production', ...) or ({c}, 'aggregation', ...)"
                )
            for kind, _ in sub.items_shallow():
                if kind not in _KINDS:
                    raise ConstraintError(
                        f"{self.name} ({op}): the {what} at {format_address((c, kind))} "
                        "is neither 'production' nor 'aggregation'; use "
                        f"({c}, 'production', ...) or ({c}, 'aggregation', ...)"
                    )
            nodes.add(c)
        return nodes

    def _check_used(self, nodes: set[int], tree: Collection[int], op: str, what: str) -> None:
        if runtime.is_lenient():
            return
        unused = sorted(nodes - set(tree))
        if unused:
            raise ConstraintError(
                f"{self.name} ({op}): the {what} at node {unused[0]} "
                f"(address ({unused[0]}, ...)) was not used — the tree has only the nodes "
                f"{sorted(tree)}. Check the node index (children of node i are "
                f"i * {self.max_branch} + 1 + k)."
            )

    def _ancestors_and_self(self, nodes: set[int]) -> set[int]:
        out: set[int] = set()
        for i in nodes:
            while i not in out:
                out.add(i)
                if i == 0:
                    break
                i = self.parent(i)
        return out

    # ------------------------------------------------------------------ simulate/generate
    def _grow(
        self, node: int, v: Any, key: mx.array, cons: ChoiceMap | None, b: _Build, op: str
    ) -> Any:
        """Simulate (``cons is None``) or generate the subtree at ``node``; its result."""
        kp, ka, kc = self._keys(key)
        with self._shape_errors(node, op):
            if cons is None:
                ptr = self.production.simulate((v,), key=kp)
            else:
                pc = cons.get_submap((node, PRODUCTION))
                ptr, wp = self.production.generate((v,), pc, key=kp)
                b.weight = b.weight + wp
        u, cargs = self._unpack(node, ptr.retval, op)
        ckeys = self._child_keys(kc)
        results = [
            self._grow(self.child(node, k), a, ckeys[k], cons, b, op) for k, a in enumerate(cargs)
        ]
        if cons is None:
            atr = self.aggregation.simulate((v, u, results), key=ka)
        else:
            ac = cons.get_submap((node, AGGREGATION))
            atr, wa = self.aggregation.generate((v, u, results), ac, key=ka)
            b.weight = b.weight + wa
        b.prods[node] = ptr
        b.aggs[node] = atr
        return atr.retval

    def _score(self, b: _Build) -> mx.array:
        total = mx.array(0.0)
        for i in sorted(b.prods):
            total = total + b.prods[i].score + b.aggs[i].score
        return total

    def _make(self, args: tuple[Any, ...], b: _Build) -> RecurseTrace:
        return RecurseTrace(
            self, args, b.aggs[0].retval, self._score(b), dict(b.prods), dict(b.aggs)
        )

    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> RecurseTrace:
        v = self._check_args(args, "simulate")
        b = _Build()
        self._grow(0, v, key, None, b, "simulate")
        return self._make(args, b)

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        v = self._check_args(args, "generate")
        nodes = self._node_constraints(constraints, "generate", "constraint")
        b = _Build()
        self._grow(0, v, key, constraints, b, "generate")
        self._check_used(nodes, b.prods, "generate", "constraint")
        tr = self._make(args, b)
        return GenerateResult(tr, mx.zeros_like(tr.score) + b.weight)

    # ------------------------------------------------------------------ assess
    def _assess_node(self, node: int, v: Any, choices: ChoiceMap, seen: set[int]) -> Any:
        seen.add(node)
        with self._shape_errors(node, "assess"):
            lp, prv = self.production.assess((v,), choices.get_submap((node, PRODUCTION)))
        u, cargs = self._unpack(node, prv, "assess")
        total = lp
        results = []
        for k, a in enumerate(cargs):
            s, w = self._assess_node(self.child(node, k), a, choices, seen)
            total = total + s
            results.append(w)
        la, w = self.aggregation.assess((v, u, results), choices.get_submap((node, AGGREGATION)))
        return total + la, w

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        v = self._check_args(args, "assess")
        nodes = self._node_constraints(choices, "assess", "choice")
        seen: set[int] = set()
        ld, w = self._assess_node(0, v, choices, seen)
        self._check_used(nodes, seen, "assess", "choice")
        return AssessResult(ld, w)

    # ------------------------------------------------------------------ update/regenerate
    def _reuse(self, node: int, ed: _Edit, b: _Build) -> None:
        for i in self._subtree(node, ed.old.productions):
            b.prods[i] = ed.old.productions[i]
            b.aggs[i] = ed.old.aggregations[i]

    def _remove(self, node: int, ed: _Edit, b: _Build) -> None:
        """Drop the old subtree at ``node``: update subtracts its score, discards choices."""
        if ed.op != "update":
            return  # regenerate: removed choices contribute 0
        for i in self._subtree(node, ed.old.productions):
            for kind, tr in ed.old.kernel_traces(i):
                b.weight = b.weight - tr.score
                cm = tr.get_choices()
                if not cm.is_empty:
                    b.discard = b.discard.set((i, kind), cm)

    def _new_subtree(self, node: int, v: Any, key: mx.array, ed: _Edit, b: _Build) -> Any:
        cons = ed.constraints if ed.op == "update" else None
        return self._grow(node, v, key, cons, b, ed.op)

    def _edit_kernel(
        self,
        kind: str,
        node: int,
        old: Trace,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
        ed: _Edit,
        b: _Build,
    ) -> tuple[Trace, Diff]:
        """Update/regenerate one kernel trace, or keep it when nothing touches it."""
        gf = self.production if kind == PRODUCTION else self.aggregation
        same = all(d.is_no_change() for d in argdiffs)
        if ed.op == "update":
            assert ed.constraints is not None
            c = ed.constraints.get_submap((node, kind))
            if same and c.is_empty:
                return old, NoChange
            new, w, rd, disc = gf.update(old, c, args, argdiffs, key=key)
            if not disc.is_empty:
                b.discard = b.discard.set((node, kind), disc)
        else:
            assert ed.selection is not None
            s = ed.selection.child(node).child(kind)
            if same and s.is_none():
                return old, NoChange
            new, w, rd = gf.regenerate(old, s, args, argdiffs, key=key)
        b.weight = b.weight + w
        return new, rd

    def _edit_node(
        self, node: int, v: Any, vdiff: Diff, key: mx.array, ed: _Edit, b: _Build
    ) -> tuple[Any, Diff]:
        old_p = ed.old.productions.get(node)
        if old_p is None:
            return self._new_subtree(node, v, key, ed, b), UnknownChange
        if vdiff.is_no_change() and node not in ed.dirty:
            self._reuse(node, ed, b)
            return ed.old.aggregations[node].retval, NoChange
        kp, ka, kc = self._keys(key)
        with self._shape_errors(node, ed.op):
            new_p, pdiff = self._edit_kernel(PRODUCTION, node, old_p, (v,), (vdiff,), kp, ed, b)
        old_u, old_cargs = self._unpack(node, old_p.retval, ed.op)
        u, cargs = self._unpack(node, new_p.retval, ed.op)
        ckeys = self._child_keys(kc)
        results: list[Any] = []
        cdiffs: dict[int, Diff] = {}
        for k, a in enumerate(cargs):
            c = self.child(node, k)
            if k < len(old_cargs):
                ad = NoChange if pdiff.is_no_change() else diff_args((old_cargs[k],), (a,))[0]
                w, wd = self._edit_node(c, a, ad, ckeys[k], ed, b)
                if not wd.is_no_change():
                    cdiffs[k] = wd
            else:
                w = self._new_subtree(c, a, ckeys[k], ed, b)
            results.append(w)
        for k in range(len(cargs), len(old_cargs)):
            self._remove(self.child(node, k), ed, b)
        udiff = NoChange if pdiff.is_no_change() else diff_args((old_u,), (u,))[0]
        wsdiff: Diff = (
            NoChange
            if len(cargs) == len(old_cargs) and not cdiffs
            else VectorDiff(len(cargs), len(old_cargs), cdiffs)
        )
        old_a = ed.old.aggregations[node]
        agg_args = (v, u, results)
        agg_diffs = (vdiff, udiff, wsdiff)
        new_a, adiff = self._edit_kernel(AGGREGATION, node, old_a, agg_args, agg_diffs, ka, ed, b)
        b.prods[node] = new_p
        b.aggs[node] = new_a
        return new_a.retval, adiff

    def _unwrap(self, trace: Trace, op: str) -> RecurseTrace:
        if not isinstance(trace, RecurseTrace):
            raise TypeError(f"{self.name} ({op}): expected a RecurseTrace, got {type(trace)}")
        return trace

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        tr = self._unwrap(trace, "update")
        v = self._check_args(args, "update")
        if constraints.is_empty and all(d.is_no_change() for d in argdiffs):
            return UpdateResult(tr, mx.zeros_like(tr.score), NoChange, ChoiceMap.empty())
        nodes = self._node_constraints(constraints, "update", "constraint")
        ed = _Edit("update", tr, constraints, None, self._ancestors_and_self(nodes))
        b = _Build()
        _, rd = self._edit_node(0, v, argdiffs[0], key, ed, b)
        self._check_used(nodes, b.prods, "update", "constraint")
        new = self._make(args, b)
        retdiff = NoChange if rd.is_no_change() else UnknownChange
        return UpdateResult(new, mx.zeros_like(new.score) + b.weight, retdiff, b.discard)

    def _check_selection(self, selection: Selection, tr: RecurseTrace, b: _Build) -> None:
        if runtime.is_lenient():
            return
        for path in selection.explicit_paths():
            node = path[0]
            ok = node in tr.productions or node in b.prods
            if ok and len(path) > 1:
                ok = path[1] in _KINDS
            if not ok:
                raise AddressError(
                    f"{self.name} (regenerate): the selection names address "
                    f"{format_address(path)}, which is not in the trace (its nodes: "
                    f"{tr.nodes}; addresses are (node, 'production' | 'aggregation', ...))"
                )

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        tr = self._unwrap(trace, "regenerate")
        v = self._check_args(args, "regenerate")
        same = all(d.is_no_change() for d in argdiffs)
        if same:
            self._check_selection(selection, tr, _Build())
            if selection.is_none():
                return RegenerateResult(tr, mx.zeros_like(tr.score), NoChange)
        dirty = {i for i in tr.productions if not selection.child(i).is_none()}
        ed = _Edit("regenerate", tr, None, selection, self._ancestors_and_self(dirty))
        b = _Build()
        _, rd = self._edit_node(0, v, argdiffs[0], key, ed, b)
        if not same:
            self._check_selection(selection, tr, b)
        new = self._make(args, b)
        retdiff = NoChange if rd.is_no_change() else UnknownChange
        return RegenerateResult(new, mx.zeros_like(new.score) + b.weight, retdiff)

    # ------------------------------------------------------------------ project
    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        tr = self._unwrap(trace, "project")
        self._check_selection(selection, tr, _Build())
        total = mx.zeros_like(tr.score)
        for i in tr.nodes:
            si = selection.child(i)
            for kind, sub in tr.kernel_traces(i):
                s = si.child(kind)
                if not s.is_none():
                    total = total + sub.gen_fn.project(sub, s)
        return total

    def __repr__(self) -> str:
        return f"<{self.name} max_branch={self.max_branch}>"
