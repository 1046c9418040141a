"""Handlers: one small, pure state transition per GFI operation.

A ``@gen`` body is plain Python. Each ``gen_fn(args) @ addr`` in it calls
:func:`trace_site`, which hands the site to the *handler* of the operation being run.
A handler is a pure function::

    handler(state, path, gen_fn, args) -> (new_state, value)

where ``state`` is an immutable NamedTuple (key, the records visited so far, score,
weight, and the operation's read-only inputs: constraints, the old trace, the
selection). The only mutable thing is the :class:`~genmlx.core.runtime.Run` cell that
holds the latest state while user code runs; it lives in a context variable that is
reset on exit, so a body that raises leaves nothing behind.

Records are kept in a persistent linked list ``(path, record, previous)`` (O(1) per
site); :func:`build_trie` turns them into the trace's address trie at the end and
reports repeated addresses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import Component, Path, format_address
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import diff_args
from genmlx.core.distribution import Distribution, argument_error
from genmlx.core.errors import (
    AddressError,
    BatchedControlFlowError,
    ConstraintError,
    GenMLXError,
    ImproperPriorError,
    MissingChoiceError,
)
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.presample import presampled
from genmlx.core.random import KeyStream
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = [
    "AssessState",
    "CallRecord",
    "ChoiceRecord",
    "GenerateState",
    "RegenerateState",
    "SimulateState",
    "UpdateState",
    "assess_site",
    "build_trie",
    "generate_site",
    "regenerate_site",
    "run_body",
    "simulate_site",
    "trace_site",
    "update_site",
]


class ChoiceRecord(NamedTuple):
    """A random choice: its value and log density."""

    value: mx.array
    score: mx.array


class CallRecord(NamedTuple):
    """A traced call of a generative function: its sub-trace."""

    trace: Trace


Record = ChoiceRecord | CallRecord
Cons = tuple[Path, Record, Any] | None
Trie = dict[Component, Any]


# ---------------------------------------------------------------------------- states
class SimulateState(NamedTuple):
    key: KeyStream
    records: Cons
    score: Any


class GenerateState(NamedTuple):
    key: KeyStream
    records: Cons
    score: Any
    weight: Any
    constraints: ChoiceMap


class AssessState(NamedTuple):
    records: Cons
    score: Any
    choices: ChoiceMap


class UpdateState(NamedTuple):
    key: KeyStream
    records: Cons
    score: Any
    weight: Any
    constraints: ChoiceMap
    old: Trie
    discard: Any  # cons list of (path, ChoiceMap)
    changed: bool


class RegenerateState(NamedTuple):
    key: KeyStream
    records: Cons
    score: Any
    weight: Any
    selection: Selection
    old: Trie
    changed: bool


# ---------------------------------------------------------------------------- helpers
def _constraint_at(cm: ChoiceMap, path: Path) -> ChoiceMap:
    node = cm._node(path)
    return node if node is not None else ChoiceMap.empty()


def _selection_at(sel: Selection, path: Path) -> Selection:
    for c in path:
        sel = sel.child(c)
    return sel


def lookup(trie: Trie, path: Path) -> Any:
    """The record (or sub-trie) at ``path``, or ``None``."""
    node: Any = trie
    for c in path:
        if not isinstance(node, dict):
            return None
        node = node.get(c)
        if node is None:
            return None
    return node


def iter_records(trie: Trie, prefix: Path = ()) -> Iterator[tuple[Path, Record]]:
    """Every record in the trie, depth first, in visiting order."""
    for c, node in trie.items():
        path = (*prefix, c)
        if isinstance(node, dict):
            yield from iter_records(node, path)
        else:
            yield path, node


_ARGDIFFS: ContextVar[tuple[Any, ...] | None] = ContextVar("genmlx_argdiffs", default=None)


@contextlib.contextmanager
def argdiffs_override(diffs: tuple[Any, ...]) -> Iterator[None]:
    """Give the next sub-call that ``update_site``/``regenerate_site`` runs these argdiffs
    instead of identity-based ones (a static model's plan knows them precisely)."""
    token = _ARGDIFFS.set(diffs)
    try:
        yield
    finally:
        _ARGDIFFS.reset(token)


def _call_argdiffs(old_args: tuple[Any, ...], args: tuple[Any, ...]) -> tuple[Any, ...]:
    given = _ARGDIFFS.get()
    if given is not None and len(given) == len(args):
        _ARGDIFFS.set(None)
        return given
    return diff_args(old_args, args)


@contextlib.contextmanager
def _in_call(path: Path) -> Iterator[None]:
    """Add the caller's address to address errors raised inside a traced sub-call."""
    try:
        yield
    except (ConstraintError, AddressError) as e:
        raise type(e)(f"{e} [inside the traced call at {format_address(path)}]") from e


# ---------------------------------------------------------------------------- transitions
def _sample(key: KeyStream, sub: mx.array, gf: Distribution, args: tuple[Any, ...]) -> mx.array:
    """A fresh draw at the stream's current site: presampled when the batched operation
    computed this site's Gaussian draws in one kernel (:mod:`genmlx.core.presample`),
    else from the site's key."""
    if key.pre is not None:
        v = presampled(key.pre, key.n, gf, args)
        if v is not None:
            return v
    out: mx.array = gf.sample(sub, *args)
    return out


def simulate_site(
    state: SimulateState, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]
) -> tuple[SimulateState, Any]:
    """simulate: sample the choice (or simulate the sub-call) and add its score."""
    key, sub = state.key.site()
    if isinstance(gf, Distribution):
        v = _sample(key, sub, gf, args)
        s = gf.score(v, args)
        rec: Record = ChoiceRecord(v, s)
        value = v
    else:
        tr = gf.simulate(args, key=sub)
        rec, s, value = CallRecord(tr), tr.score, tr.retval
    return SimulateState(key, (path, rec, state.records), state.score + s), value


def generate_site(
    state: GenerateState, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]
) -> tuple[GenerateState, Any]:
    """generate: constrained choices add their log density to the weight."""
    cons = _constraint_at(state.constraints, path)
    key = state.key
    if isinstance(gf, Distribution):

        def draw() -> mx.array:
            nonlocal key
            key, sub = key.site()
            return _sample(key, sub, gf, args)

        v, s, wv = gf.generate_choice(args, cons, draw, "generate", path)
        w = state.weight if wv is None else state.weight + wv
        rec: Record = ChoiceRecord(v, s)
        value = v
    else:
        key, sub = key.site()
        with _in_call(path):
            tr, wsub = gf.generate(args, cons, key=sub)
        rec, s, value, w = CallRecord(tr), tr.score, tr.retval, state.weight + wsub
    return (
        GenerateState(key, (path, rec, state.records), state.score + s, w, state.constraints),
        value,
    )


def assess_site(
    state: AssessState, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]
) -> tuple[AssessState, Any]:
    """assess: every choice must be given; add its log density."""
    given = _constraint_at(state.choices, path)
    if isinstance(gf, Distribution):
        v = gf.constrained_value(given, args, "assess", path)
        if v is None and runtime.is_lenient():
            # an alternative branch that is not taken: any in-support value will do
            v = gf.sample(mx.random.key(0), *args)
        if v is None:
            raise MissingChoiceError(
                f"assess: no value for the random choice at {format_address(path)} "
                f"({gf.name}); assess needs a value for every choice the model makes"
            )
        s = gf.score(v, args)
        rec: Record = ChoiceRecord(v, s)
        value = v
    else:
        with _in_call(path):
            s, value = gf.assess(args, given)
        rec = CallRecord(_AssessedCall(gf, args, value, s))
    return AssessState((path, rec, state.records), state.score + s, state.choices), value


def update_site(
    state: UpdateState, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]
) -> tuple[UpdateState, Any]:
    """update: kept choices add new − old log density, new constrained ones add theirs."""
    cons = _constraint_at(state.constraints, path)
    old = lookup(state.old, path)
    key, discard, changed = state.key, state.discard, state.changed
    if isinstance(gf, Distribution):

        def draw() -> mx.array:
            nonlocal key
            key, sub = key.site()
            return _sample(key, sub, gf, args)

        old_choice = (old.value, old.score) if isinstance(old, ChoiceRecord) else None
        v, s, wv, disc, new_value = gf.update_choice(args, cons, old_choice, draw, "update", path)
        w = state.weight if wv is None else state.weight + wv
        if disc is not None:
            discard = (path, disc, discard)
        changed = changed or new_value
        rec: Record = ChoiceRecord(v, s)
        value = v
    else:
        old_call = old if isinstance(old, CallRecord) and old.trace.gen_fn is gf else None
        if old_call is not None:
            argdiffs = _call_argdiffs(old_call.trace.args, args)
            if cons.is_empty and all(d.is_no_change() for d in argdiffs):
                tr, wsub = old_call.trace, None
            else:
                key, sub = key.site()
                with _in_call(path):
                    tr, wsub, retdiff, disc = gf.update(
                        old_call.trace, cons, args, argdiffs, key=sub
                    )
                if not disc.is_empty:
                    discard = (path, disc, discard)
                changed = changed or not retdiff.is_no_change()
        else:
            key, sub = key.site()
            with _in_call(path):
                tr, wsub = gf.generate(args, cons, key=sub)
            changed = True
        rec, s, value = CallRecord(tr), tr.score, tr.retval
        w = state.weight if wsub is None else state.weight + wsub
    return (
        UpdateState(
            key,
            (path, rec, state.records),
            state.score + s,
            w,
            state.constraints,
            state.old,
            discard,
            changed,
        ),
        value,
    )


def regenerate_site(
    state: RegenerateState, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]
) -> tuple[RegenerateState, Any]:
    """regenerate: selected and new choices are resampled (weight 0); kept ones add new − old."""
    old = lookup(state.old, path)
    key, changed = state.key, state.changed
    if isinstance(gf, Distribution):
        old_choice = old if isinstance(old, ChoiceRecord) else None
        if old_choice is None or state.selection.contains_path(path):
            key, sub = key.site()
            v = gf.sample(sub, *args)
            s = gf.score(v, args)
            w = state.weight
            changed = True
        else:
            v = old_choice.value
            s = gf.score(v, args)
            w = state.weight + (s - old_choice.score)
        rec: Record = ChoiceRecord(v, s)
        value = v
    else:
        sel = _selection_at(state.selection, path)
        old_call = old if isinstance(old, CallRecord) and old.trace.gen_fn is gf else None
        if old_call is not None:
            argdiffs = _call_argdiffs(old_call.trace.args, args)
            if sel.is_none() and all(d.is_no_change() for d in argdiffs):
                tr, wsub = old_call.trace, None
            else:
                key, sub = key.site()
                with _in_call(path):
                    tr, wsub, retdiff = gf.regenerate(old_call.trace, sel, args, argdiffs, key=sub)
                changed = changed or not retdiff.is_no_change()
        else:
            key, sub = key.site()
            tr = gf.simulate(args, key=sub)
            wsub = None
            changed = True
        rec, s, value = CallRecord(tr), tr.score, tr.retval
        w = state.weight if wsub is None else state.weight + wsub
    return (
        RegenerateState(
            key,
            (path, rec, state.records),
            state.score + s,
            w,
            state.selection,
            state.old,
            changed,
        ),
        value,
    )


class _AssessedCall(Trace):
    """Stand-in record for a sub-call seen by ``assess`` (only its score and retval)."""

    def get_choices(self) -> ChoiceMap:
        return ChoiceMap.empty()

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        return [self.args, self.retval, self.score], (self.batch_shape, self.gen_fn)

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> _AssessedCall:
        return cls(aux[1], children[0], children[1], children[2], aux[0])

    def __init__(
        self,
        gen_fn: GenerativeFunction,
        args: tuple[Any, ...],
        retval: Any,
        score: mx.array,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, retval, score, batch_shape)


# ---------------------------------------------------------------------------- running
def trace_site(path: Path, gf: GenerativeFunction, args: tuple[Any, ...]) -> Any:
    """Entry point of ``gen_fn(args) @ addr``: run the active handler on the site."""
    run = runtime.active_run()
    if run is None:
        raise GenMLXError(
            f"`{gf!r}(...) @ {format_address(path)}` can only run inside a @gen body that a "
            "GFI operation is executing (simulate, generate, ...). Outside one, use "
            "gen_fn.simulate(args) or dist.sample(key, *params)."
        )
    if not path:
        raise AddressError(f"{run.op}: a traced call needs a non-empty address")
    if not isinstance(gf, GenerativeFunction):
        raise TypeError(f"{run.op}: only generative functions can be traced, got {gf!r}")
    try:
        run.state, value = run.handler(run.state, path, gf, args)
    except ImproperPriorError as e:  # name the operation and the full address
        e.op = e.op or run.op
        e.path = (*path, *e.path)
        raise
    except (ValueError, TypeError, IndexError) as e:
        if (
            isinstance(gf, Distribution)
            and not isinstance(e, GenMLXError)
            and not runtime.is_transform_eval_error(e)
        ):
            raise argument_error(e, run.op, path, gf, args) from e
        raise
    run.last_path = path
    return value


def run_body(
    op: str,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    handler: Callable[..., tuple[Any, Any]],
    state: Any,
) -> tuple[Any, Any]:
    """Run ``fn(*args)`` with ``handler`` active; return the final state and return value."""
    run = runtime.Run(op, handler, state)
    with runtime.activate(run):
        try:
            retval = fn(*args)
        except TypeError as e:
            if run.last_path is None and not isinstance(e, GenMLXError):
                _check_arity(op, name, fn, args, e)
            raise
        except ValueError as e:
            if "TracedCall" in str(e):  # e.g. mx.exp(normal(0, 1)), xs * normal(0, 1)
                raise TypeError(
                    f"{op} on {name}: a distribution or generative function call was used "
                    f"as a value ({e}). Add @ \"address\" to make the traced choice and "
                    'use its value, e.g. `x = normal(0.0, 1.0) @ "x"`.'
                ) from e
            if runtime.is_transform_eval_error(e):
                after = (
                    f"after the choice at {format_address(run.last_path)}"
                    if run.last_path is not None
                    else "before its first random choice"
                )
                raise BatchedControlFlowError(
                    f"{op} on {name}: the body needed the concrete value of an array "
                    f"({after}) — a Python `if`/`while`, bool(), float() or .item() on a "
                    "random value. Under batching (vsimulate, vgenerate, batched traces), "
                    "mx.compile and gradients each random value stands for many particles "
                    "or is symbolic, so Python control flow cannot depend on it. Use "
                    "mx.where(...) for values, or the Switch / Mask combinators "
                    "(genmlx.combinators) for random structure."
                ) from e
            raise
    return run.state, retval


def _check_arity(
    op: str, name: str, fn: Callable[..., Any], args: tuple[Any, ...], err: TypeError
) -> None:
    """Re-raise a call of the body with the wrong arguments in GenMLX's terms."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args)
    except TypeError as bad:
        raise TypeError(
            f"{op} on {name}: the model takes {sig} but got {len(args)} argument(s) ({bad}); "
            "pass args as a tuple with one entry per parameter, e.g. (xs,) for one"
        ) from err


def build_trie(records: Cons, op: str, name: str) -> Trie:
    """Turn the record list into the address trie; reject repeated addresses."""
    items: list[tuple[Path, Record]] = []
    while records is not None:
        path, rec, records = records
        items.append((path, rec))
    items.reverse()
    trie: Trie = {}
    for path, rec in items:
        node = trie
        for i, c in enumerate(path[:-1]):
            nxt = node.get(c)
            if nxt is None:
                nxt = {}
                node[c] = nxt
            elif not isinstance(nxt, dict):
                raise AddressError(
                    f"{op} on {name}: address {format_address(path)} lies beneath "
                    f"{format_address(path[: i + 1])}, which is already a random choice or "
                    "call; choose addresses that do not nest inside one another"
                )
            node = nxt
        last = path[-1]
        if last in node:
            raise AddressError(
                f"{op} on {name}: address {format_address(path)} is visited twice; every "
                "random choice needs its own address (e.g. ('x', i) inside a loop)"
            )
        node[last] = rec
    return trie


def check_all_used(cm: ChoiceMap, trie: Trie, op: str, name: str, what: str) -> None:
    """Raise ConstraintError for a leaf of ``cm`` that no visited choice or call consumed.

    Inside :func:`genmlx.core.runtime.lenient` (a branch that may not be taken) it checks
    nothing.
    """
    if runtime.is_lenient():
        return
    for path, _ in cm.leaves():
        node: Any = trie
        ok = False
        for i, c in enumerate(path):
            if not isinstance(node, dict) or c not in node:
                break
            node = node[c]
            if isinstance(node, CallRecord):
                ok = True
                break
            if isinstance(node, ChoiceRecord):
                ok = i == len(path) - 1
                break
        if not ok:
            raise ConstraintError(
                f"{op} on {name}: the {what} at address {format_address(path)} was not used — "
                f"the model made no random choice there (its top-level addresses: "
                f"{sorted(map(repr, trie))}). Check the address for typos."
            )


def _has_path(trie: Trie, path: Path) -> bool:
    node: Any = trie
    for c in path:
        if isinstance(node, CallRecord):
            return True  # the sub-call checks the rest
        if not isinstance(node, dict) or c not in node:
            return False
        node = node[c]
    return True


def check_selection(
    sel: Selection, old: Trie, op: str, name: str, also: Trie | None = None
) -> None:
    """Raise AddressError when a selection names an address the trace does not have."""
    if runtime.is_lenient():
        return
    for path in sel.explicit_paths():
        if not (_has_path(old, path) or (also is not None and _has_path(also, path))):
            raise AddressError(
                f"{op} on {name}: the selection names address {format_address(path)}, which "
                f"is not in the trace (top-level addresses: {sorted(map(repr, old))})"
            )


def removed_records(old: Trie, new: Trie) -> Iterator[tuple[Path, Record]]:
    """Records of ``old`` that ``new`` no longer has (or has as a different kind)."""
    for path, rec in iter_records(old):
        n = lookup(new, path)
        if isinstance(rec, ChoiceRecord) and isinstance(n, ChoiceRecord):
            continue
        if (
            isinstance(rec, CallRecord)
            and isinstance(n, CallRecord)
            and n.trace.gen_fn is rec.trace.gen_fn
        ):
            continue
        yield path, rec
