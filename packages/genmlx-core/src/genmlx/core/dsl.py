"""The ``@gen`` modelling language.

Decorate a Python function with :func:`gen` to make it a generative function. In its
body, ``dist(*params) @ addr`` makes a random choice and ``gen_fn(*args) @ addr`` calls
another generative function, namespacing its choices under ``addr``;
``splice(gen_fn, *args)`` calls one without a namespace; ``param(name, init)`` reads a
trainable parameter. The same body runs under every GFI operation and under batching.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model(n):
    ...     mu = normal(0.0, 10.0) @ "mu"
    ...     for i in range(n):
    ...         normal(mu, 1.0) @ ("y", i)
    ...     return mu
    >>> tr, w = model.generate((2,), choicemap({("y", 0): 1.0, ("y", 1): 2.0}),
    ...                         key=mx.random.key(0))
    >>> sorted(map(str, tr.get_choices().addresses()))
    ["('y', 0)", "('y', 1)", 'mu']
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import mlx.core as mx

from genmlx.core import handlers as H
from genmlx.core import incremental, rewrites, runtime
from genmlx.core.address import Address, Path, format_address, to_path
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff, NoChange, UnknownChange
from genmlx.core.errors import AddressError, GenMLXError
from genmlx.core.factor import FactorTrace
from genmlx.core.gfi import (
    AssessResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.random import KeyStream
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = ["DynamicGenerativeFunction", "DynamicTrace", "gen", "splice"]


def _zero() -> mx.array:
    return mx.array(0.0)


def _as_score(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(float(x))


class DynamicTrace(Trace):
    """The trace of a ``@gen`` function: a trie of random choices and sub-call traces."""

    __slots__ = ("_choices", "_trie")

    _trie: H.Trie
    _choices: ChoiceMap | None

    def __init__(
        self,
        gen_fn: DynamicGenerativeFunction,
        args: tuple[Any, ...],
        retval: Any,
        score: mx.array,
        trie: H.Trie,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(gen_fn, args, retval, score, batch_shape)
        object.__setattr__(self, "_trie", trie)
        object.__setattr__(self, "_choices", None)

    def get_choices(self) -> ChoiceMap:
        cached = self._choices
        if cached is None:
            cached = _trie_choices(self._trie, self.batch_shape)
            object.__setattr__(self, "_choices", cached)
        return cached

    def __getitem__(self, addr: Address) -> Any:
        """The value of the choice at ``addr`` (or the return value of a call there)."""
        path = to_path(addr)
        node: Any = self._trie
        for i, c in enumerate(path):
            if isinstance(node, H.CallRecord):
                rest = path[i:]
                return node.trace[rest if len(rest) > 1 else rest[0]]
            if not isinstance(node, dict) or c not in node:
                raise AddressError(
                    f"the trace has no choice at {format_address(addr)} "
                    f"(top-level addresses: {sorted(map(repr, self._trie))})"
                )
            node = node[c]
        if isinstance(node, H.ChoiceRecord):
            return node.value
        if isinstance(node, H.CallRecord):
            return node.trace.retval
        raise AddressError(
            f"{format_address(addr)} is a namespace of choices, not one choice; "
            f"use trace.get_choices().get_submap({addr!r})"
        )

    def get_subtrace(self, addr: Address) -> Trace:
        """The trace of the sub-call at ``addr``."""
        node = H.lookup(self._trie, to_path(addr))
        if not isinstance(node, H.CallRecord):
            raise AddressError(f"there is no traced call at {format_address(addr)}")
        return node.trace

    def records(self) -> Iterator[tuple[Path, Any]]:
        """The body's sites in execution order: ``(path, record)`` with a
        :class:`~genmlx.core.interpreter.ChoiceRecord` (``value``, ``score``) for a random
        choice and a :class:`~genmlx.core.interpreter.CallRecord` (``trace``) for a
        traced call."""
        yield from H.iter_records(self._trie)

    def record(self, addr: Address) -> Any:
        """The record at ``addr`` (see :meth:`records`).

        Raises:
            AddressError: nothing was traced at ``addr``.
        """
        node = H.lookup(self._trie, to_path(addr))
        if not isinstance(node, (H.ChoiceRecord, H.CallRecord)):
            raise AddressError(
                f"there is no random choice or traced call at {format_address(addr)}"
            )
        return node

    def site_scores(self) -> Iterator[tuple[Path, mx.array]]:
        for path, rec in H.iter_records(self._trie):
            if isinstance(rec, H.ChoiceRecord):
                yield path, rec.score
            else:
                for sub, s in rec.trace.site_scores():
                    yield (*path, *sub), s

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        structure = []
        children: list[Any] = [self.args, self.retval, self.score]
        for path, rec in H.iter_records(self._trie):
            if isinstance(rec, H.ChoiceRecord):
                structure.append((path, True))
                children.append((rec.value, rec.score))
            else:
                structure.append((path, False))
                children.append(rec.trace)
        return children, (self.batch_shape, self.gen_fn, tuple(structure))

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> DynamicTrace:
        batch_shape, gen_fn, structure = aux
        args, retval, score = children[:3]
        trie: H.Trie = {}
        for (path, is_choice), child in zip(structure, children[3:]):
            node = trie
            for c in path[:-1]:
                node = node.setdefault(c, {})
            node[path[-1]] = H.ChoiceRecord(*child) if is_choice else H.CallRecord(child)
        return cls(gen_fn, args, retval, score, trie, batch_shape)


def _trie_choices(trie: H.Trie, batch_shape: tuple[int, ...]) -> ChoiceMap:
    children = {}
    for c, node in trie.items():
        if isinstance(node, dict):
            children[c] = _trie_choices(node, batch_shape)
        elif isinstance(node, H.ChoiceRecord):
            children[c] = ChoiceMap(node.value, None, batch_shape)
        else:
            children[c] = node.trace.get_choices()
    return ChoiceMap(None, children, batch_shape)


class DynamicGenerativeFunction(GenerativeFunction):
    """A generative function defined by a Python body (made by :func:`gen`)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn, updated=())
        self.fn = fn
        self.name = getattr(fn, "__qualname__", getattr(fn, "__name__", "gen_fn"))

    def _check_arity(self, trace: Trace, args: tuple[Any, ...], op: str) -> None:
        """New arguments must fit the body's signature (defaults and ``*args`` allowed)."""
        import inspect

        try:
            sig = inspect.signature(self.fn)
        except (TypeError, ValueError):
            return super()._check_arity(trace, args, op)
        try:
            sig.bind(*args)
        except TypeError as e:
            raise TypeError(
                f"{op} on {self!r}: the model takes {sig} but got {len(args)} argument(s) "
                f"({e}); pass every argument (args=None keeps the old ones)"
            ) from None

    def static_structure(self, args: tuple[Any, ...]) -> str | None:
        """``None`` when the body's address structure is fixed for arguments like
        ``args`` (its analysed graph is static), else the reason it is not."""
        from genmlx.core.graph import structural_graph

        try:
            g = structural_graph(self, args)
        except Exception as e:
            return f"is {self!r}, whose body could not be analysed ({type(e).__name__}: {e})"
        return None if g.is_static else f"is {self!r}, which is dynamic: {g.reason}"

    def choice_domains(self, args: tuple[Any, ...]) -> dict[Any, Any] | None:
        """Domains of the body's choices (from its analysed graph) that do not depend on
        array-valued parameters."""
        from genmlx.core.graph import structural_graph

        try:
            g = structural_graph(self, args)
        except Exception:
            return None
        if not g.is_static:
            return None
        out: dict[Any, Any] = {}
        for s in g.sites:
            if s.kind == "choice" and s.domain is not None and _fixed_domain(s.domain):
                out[s.path] = s.domain
            elif s.kind == "call":
                out.update({(*s.path, *p): d for p, d in s.call_domains})
        return out

    def _run(self, op: str, args: tuple[Any, ...], handler: Any, state: Any) -> tuple[Any, Any]:
        return H.run_body(op, self.name, self.fn, args, handler, state)

    def _simulate(self, args: tuple[Any, ...], key: mx.array) -> DynamicTrace:
        st, retval = self._run(
            "simulate", args, H.simulate_site, H.SimulateState(KeyStream.start(key), None, 0.0)
        )
        trie = H.build_trie(st.records, "simulate", self.name)
        return DynamicTrace(self, args, retval, _as_score(st.score), trie)

    def _generate(
        self, args: tuple[Any, ...], constraints: ChoiceMap, key: mx.array
    ) -> GenerateResult:
        prepared = rewrites.current(self)
        st, retval = self._run(
            "generate",
            args,
            H.generate_site if prepared is None else rewrites.handler(prepared, H.generate_site),
            H.GenerateState(KeyStream.start(key), None, 0.0, 0.0, constraints),
        )
        trie = H.build_trie(st.records, "generate", self.name)
        H.check_all_used(constraints, trie, "generate", self.name, "constraint")
        tr = DynamicTrace(self, args, retval, _as_score(st.score), trie)
        return GenerateResult(tr, _as_score(st.weight))

    def _assess(self, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
        prepared = rewrites.current(self)
        site = H.assess_site if prepared is None else rewrites.handler(prepared, H.assess_site)
        st, retval = self._run("assess", args, site, H.AssessState(None, 0.0, choices))
        trie = H.build_trie(st.records, "assess", self.name)
        H.check_all_used(choices, trie, "assess", self.name, "choice")
        return AssessResult(_as_score(st.score), retval)

    def _update(
        self,
        trace: Trace,
        constraints: ChoiceMap,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> UpdateResult:
        assert isinstance(trace, DynamicTrace)
        if constraints.is_empty and all(d.is_no_change() for d in argdiffs):
            return UpdateResult(trace, mx.zeros_like(trace.score), NoChange, ChoiceMap.empty())
        state = H.UpdateState(
            KeyStream.start(key), None, 0.0, 0.0, constraints, trace._trie, None, False
        )
        plan = incremental.plan_update(self, args, argdiffs, constraints)
        handler = H.update_site
        if plan is not None:
            handler = incremental.plan_handler(plan, H.update_site, "update")
        st, retval = self._run("update", args, handler, state)
        trie = H.build_trie(st.records, "update", self.name)
        H.check_all_used(constraints, trie, "update", self.name, "constraint")
        weight = st.weight
        discard = ChoiceMap.empty()
        node = st.discard
        while node is not None:
            path, cm, node = node
            discard = discard._set(path, cm)
        for path, rec in H.removed_records(trace._trie, trie):
            if isinstance(rec, H.ChoiceRecord):
                weight = weight - rec.score
                discard = discard._set(path, ChoiceMap(rec.value))
            else:
                weight = weight - rec.trace.score
                discard = discard._set(path, rec.trace.get_choices())
        new = DynamicTrace(self, args, retval, _as_score(st.score), trie)
        changed = st.changed or not all(d.is_no_change() for d in argdiffs)
        retdiff = UnknownChange if changed else NoChange
        if plan is not None:
            retdiff = plan.retdiff
        return UpdateResult(new, _as_score(weight), retdiff, discard)

    def _regenerate(
        self,
        trace: Trace,
        selection: Selection,
        args: tuple[Any, ...],
        argdiffs: tuple[Diff, ...],
        key: mx.array,
    ) -> RegenerateResult:
        assert isinstance(trace, DynamicTrace)
        same_args = all(d.is_no_change() for d in argdiffs)
        if same_args:  # the structure cannot change: check the selection up front
            H.check_selection(selection, trace._trie, "regenerate", self.name)
            if selection.is_none():
                return RegenerateResult(trace, mx.zeros_like(trace.score), NoChange)
        state = H.RegenerateState(
            KeyStream.start(key), None, 0.0, 0.0, selection, trace._trie, False
        )
        plan = incremental.plan_regenerate(self, args, argdiffs, selection)
        handler = (
            H.regenerate_site
            if plan is None
            else incremental.plan_handler(plan, H.regenerate_site, "regenerate")
        )
        st, retval = self._run("regenerate", args, handler, state)
        trie = H.build_trie(st.records, "regenerate", self.name)
        if not same_args:  # new args may add addresses: selected ones exist before or after
            H.check_selection(selection, trace._trie, "regenerate", self.name, also=trie)
        new = DynamicTrace(self, args, retval, _as_score(st.score), trie)
        changed = st.changed or not all(d.is_no_change() for d in argdiffs)
        retdiff = UnknownChange if changed else NoChange
        if plan is not None:
            retdiff = plan.retdiff
        return RegenerateResult(new, _as_score(st.weight), retdiff)

    def _project(self, trace: Trace, selection: Selection) -> mx.array:
        assert isinstance(trace, DynamicTrace)
        H.check_selection(selection, trace._trie, "project", self.name)
        total: Any = mx.zeros_like(trace.score)
        for path, rec in H.iter_records(trace._trie):
            if isinstance(rec, H.ChoiceRecord):
                if selection.contains_path(path):
                    total = total + rec.score
            else:
                sub = H._selection_at(selection, path)
                # a factor's term is not a choice: it counts under every selection
                if not sub.is_none() or isinstance(rec.trace, FactorTrace):
                    total = total + rec.trace.gen_fn.project(rec.trace, sub)
        return _as_score(total)

    def __repr__(self) -> str:
        return f"<gen {self.name}>"


def _fixed_domain(d: Any) -> bool:
    """A domain whose bounds are plain numbers (the same for every call)."""
    for attr in ("low", "high"):
        if isinstance(getattr(d, attr, None), mx.array):
            return False
    return True


def gen(fn: Callable[..., Any]) -> DynamicGenerativeFunction:
    """Make a generative function from a Python function.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.core.testing.models import normal
        >>> @gen
        ... def coin():
        ...     return normal(0.0, 1.0) @ "z"
        >>> coin.simulate((), key=mx.random.key(1)).get_choices().addresses()
        ['z']
    """
    if isinstance(fn, GenerativeFunction):
        raise TypeError("@gen was applied twice")
    return DynamicGenerativeFunction(fn)


def splice(gen_fn: GenerativeFunction, *args: Any) -> Any:
    """Call a ``@gen`` function inline: its choices join the caller's, without a namespace.

    Raises:
        GenMLXError: outside a ``@gen`` body.
        TypeError: ``gen_fn`` is not a ``@gen`` function (other generative functions
            have no body to inline; trace them at an address instead).
    """
    if runtime.active_run() is None:
        raise GenMLXError("splice(...) can only be used inside a @gen body being executed")
    if not isinstance(gen_fn, DynamicGenerativeFunction):
        raise TypeError(
            f"splice needs a @gen function, got {gen_fn!r}; trace other generative "
            "functions at an address: gen_fn(args) @ 'addr'"
        )
    return gen_fn.fn(*args)
