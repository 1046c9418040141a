"""Dependency-aware ``update`` and ``regenerate`` for static models (Gen.jl's static DSL).

With a static model graph (:func:`genmlx.core.analyze`) an update knows, before running
the body, which sites can change: a site must run again when its value is constrained
(``update``) or selected (``regenerate``), or when its parameters are computed from an
argument that changed or from a site whose value may change. Every other site keeps
its record as it is — no density is evaluated, no sub-call is updated, and because MLX
is lazy the parameters computed for it are never evaluated either. Sub-calls get
precise argument diffs (``NoChange`` for an argument computed only from unchanged
values, whatever object it is), and the return value's diff is ``NoChange`` when it
depends on nothing that changed, so a sequence combinator downstream stops at the first
unchanged step.

The results are those of the interpreter: a kept site contributes ``0`` to the weight
either way, and its score is the same number.

:func:`execution_counter` counts the sites an operation evaluated (tests use it to
check that unaffected sites are skipped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from genmlx.core.address import Path
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.graph import ModelGraph, cached_graph
from genmlx.core.selection import Selection

__all__ = ["Plan", "execution_counter", "plan_regenerate", "plan_update"]


class _Counter:
    def __init__(self) -> None:
        self.evaluated = 0
        self.skipped = 0


_COUNTER: ContextVar[_Counter | None] = ContextVar("genmlx_site_counter", default=None)


@contextlib.contextmanager
def execution_counter() -> Iterator[_Counter]:
    """Count the sites that dependency-aware operations evaluate and skip in the block.

    Example:
        >>> with execution_counter() as c:
        ...     pass
        >>> c.evaluated, c.skipped
        (0, 0)
    """
    c = _Counter()
    token = _COUNTER.set(c)
    try:
        yield c
    finally:
        _COUNTER.reset(token)


def _count(evaluated: bool) -> None:
    c = _COUNTER.get()
    if c is not None:
        if evaluated:
            c.evaluated += 1
        else:
            c.skipped += 1


@dataclass(frozen=True)
class Plan:
    """Which top-level sites an operation must run, and precise sub-call argdiffs.

    Attributes:
        skip: paths of sites whose records are kept as they are.
        call_argdiffs: for each sub-call site that runs, the argdiffs to pass.
        retdiff: the operation's return-value diff.
    """

    skip: frozenset[Path]
    call_argdiffs: dict[Path, tuple[Diff, ...]]
    retdiff: Diff


def _plan(
    g: ModelGraph,
    changed_args: frozenset[int],
    touched: Callable[[Path, str], bool],
) -> Plan:
    """``touched(path, kind)``: the site's value is constrained/selected (for a call:
    something below it is)."""
    dirty: set[Path] = set()  # sites whose value may change
    needs: set[Path] = set()  # sites that must run
    gen_inner: dict[Path, bool] = {}
    call_argdiffs: dict[Path, tuple[Diff, ...]] = {}
    for s in g.sites:
        params_dirty = bool(s.parents & dirty) or bool(s.arg_parents & changed_args)
        if s.kind == "choice":
            t = touched(s.path, "choice")
            if t:
                dirty.add(s.path)
            if t or params_dirty:
                needs.add(s.path)
        elif s.kind == "call":
            t = touched(s.path, "call")
            if t or params_dirty:
                needs.add(s.path)
                dirty.add(s.path)
                call_argdiffs[s.path] = tuple(
                    UnknownChange if (pp & dirty or pa & changed_args) else NoChange
                    for pp, pa in s.param_parents
                )
        else:  # an inlined @gen call: it runs when anything inside it must
            call_argdiffs[s.path] = tuple(
                UnknownChange if (pp & dirty or pa & changed_args) else NoChange
                for pp, pa in s.param_parents
            )
            gen_inner[s.path] = params_dirty
    # a @gen call node runs when one of its inner sites does
    for p in list(gen_inner):
        inner = any(q[: len(p)] == p and len(q) > len(p) for q in needs)
        if inner or gen_inner[p]:
            needs.add(p)
    # only top-level sites are decided here; nested @gen calls plan their own sites
    top = [s for s in g.sites if not _nested(s.path, g)]
    skip = frozenset(s.path for s in top if s.path not in needs)
    ret_changed = bool(g.retval_parents & dirty) or bool(g.retval_arg_parents & changed_args)
    return Plan(skip, call_argdiffs, UnknownChange if ret_changed else NoChange)


def _nested(path: Path, g: ModelGraph) -> bool:
    """The site lives inside an inlined @gen call (its path extends a "gen" node's)."""
    for s in g.sites:
        if s.kind == "gen" and len(path) > len(s.path) and path[: len(s.path)] == s.path:
            return True
    return False


def _changed_args(argdiffs: tuple[Diff, ...]) -> frozenset[int]:
    return frozenset(i for i, d in enumerate(argdiffs) if not d.is_no_change())


_PLANS: dict[Any, tuple[ModelGraph, Plan]] = {}


def plan_update(
    gf: Any, args: tuple[Any, ...], argdiffs: tuple[Diff, ...], constraints: ChoiceMap
) -> Plan | None:
    """The plan of ``update`` on a static model with a cached graph (else ``None``)."""
    from genmlx.core.static import auto_compile_enabled

    if not auto_compile_enabled():
        return None
    g = cached_graph(gf, args)
    if g is None or not g.is_static or len(argdiffs) != g.n_args:
        return None
    if any(m is not None for _, _, m in constraints.masked_leaves()):
        return None  # masked constraints: the interpreter handles them
    cons_paths = tuple(sorted((p for p, _ in constraints.leaves()), key=repr))
    changed = _changed_args(argdiffs)
    key = ("u", id(g), cons_paths, changed)
    hit = _PLANS.get(key)
    plan = hit[1] if hit is not None and hit[0] is g else None
    if plan is None:

        def touched(path: Path, kind: str) -> bool:
            node = constraints._node(path)
            return node is not None and not node.is_empty

        plan = _plan(g, changed, touched)
        if len(_PLANS) > 4096:
            _PLANS.clear()
        _PLANS[key] = (g, plan)
    return plan


def plan_regenerate(
    gf: Any, args: tuple[Any, ...], argdiffs: tuple[Diff, ...], selection: Selection
) -> Plan | None:
    """The plan of ``regenerate`` on a static model with a cached graph (else ``None``)."""
    from genmlx.core.static import auto_compile_enabled

    if not auto_compile_enabled():
        return None
    g = cached_graph(gf, args)
    if g is None or not g.is_static or len(argdiffs) != g.n_args:
        return None
    changed = _changed_args(argdiffs)
    key = ("r", id(g), selection._static_key(), changed)
    hit = _PLANS.get(key)
    plan = hit[1] if hit is not None and hit[0] is g else None
    if plan is None:

        def touched(path: Path, kind: str) -> bool:
            sub: Selection = selection
            for c in path:
                if sub.selects_root():
                    return True
                sub = sub.child(c)
            if kind == "choice":
                return sub.selects_root()
            # a call is touched when anything below it may be selected
            return sub.selects_root() or not sub.is_none()

        plan = _plan(g, changed, touched)
        if len(_PLANS) > 4096:
            _PLANS.clear()
        _PLANS[key] = (g, plan)
    return plan


def plan_handler(plan: Plan, base: Callable[..., tuple[Any, Any]], op: str) -> Callable[..., Any]:
    """``base`` (the interpreter's update or regenerate transition) that keeps the records
    of the sites the plan skips and passes precise argdiffs to sub-calls."""
    from genmlx.core import handlers as H

    def handler(state: Any, path: Path, gf: Any, args: tuple[Any, ...]) -> Any:
        if path in plan.skip:
            old = H.lookup(state.old, path)
            if isinstance(old, H.ChoiceRecord):
                _count(False)
                return (
                    state._replace(
                        records=(path, old, state.records), score=state.score + old.score
                    ),
                    old.value,
                )
            if isinstance(old, H.CallRecord) and old.trace.gen_fn is gf:
                _count(False)
                return (
                    state._replace(
                        records=(path, old, state.records), score=state.score + old.trace.score
                    ),
                    old.trace.retval,
                )
        _count(True)
        diffs = plan.call_argdiffs.get(path)
        if diffs is not None and len(diffs) == len(args):
            with H.argdiffs_override(diffs):
                return base(state, path, gf, args)
        return base(state, path, gf, args)

    return handler


def zero_like(x: mx.array) -> mx.array:
    """``0`` of ``x``'s shape (a skipped site's weight)."""
    return mx.zeros_like(x)
