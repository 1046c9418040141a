"""The particle filter's compiled path: one compiled program per filter step.

:func:`~genmlx.infer.particle_filter` on a sequence model — an ``Unfold``/``Scan`` whose
kernel is a static ``@gen`` function (:func:`genmlx.core.analyze`) that reads no
trainable parameters, or a static ``@gen`` model whose body makes one such call (last)
besides random choices of its own — keeps its particles as plain arrays instead of a
batched trace (:class:`FastParticleFilterState`): every step's batched kernel trace with
the epoch it was made at, the ancestor maps of the resamplings since (as
:class:`~genmlx.combinators.step_store.FrozenSteps` does), the current particles' carried
state, the total scores, the log weights and the accumulated log marginal likelihood.
A filter step — the pending resampling (ancestors drawn by any of the four schemes, the
ESS trigger of ``maybe_resample`` applied with ``mx.where``, the log-ML accumulation,
the gather of the carry and the scores), the kernel's extension of every particle with
the step's observations, and the new weights and scores — is **one** compiled program
per step signature (:func:`genmlx.core.compile.compile_function`, so GenMLX's
kernel-fusion setting applies), called without any host synchronisation. Resampling
records an ancestor map instead of copying the history.

The numbers are those of the interpreted path (the same MLX operations: particle ``i``
uses key ``split(key, N)[i]``, the combinator's step keys — behind the ``@gen`` model's
own key stream for a wrapped sequence — and the kernel's ``generate``). Everything that
needs a trace — ``.traces``, ``rejuvenate``, ``edit``, ``smcp3_step``, steps with a
custom proposal, updates that are not a one-step extension — materialises the batched
trace from the parts (``O(1)`` for a sequence model; a wrapping ``@gen`` model's return
value is recomputed from the particles' values) and runs the interpreted operation; the
next bootstrap step returns to the compiled path.

``Unfold`` kernels receive the step index ``t``. While a program is traced the kernel
gets a stand-in for ``t`` that records how the body uses it: comparisons with numbers
(``t == 0``, ``t > 5``) make the program valid for every ``t`` that gives the same
answers (a guard checked before each reuse); any other use (arithmetic, indexing,
hashing, conversion) makes it specific to one ``t``, and such a kernel keeps using the
interpreted path. Values the kernel reads from global or closure variables are
constants of a program; rebinding one of those names drops the kernel's programs.

Non-finite scores: the interpreted path checks every step (a host synchronisation);
here the check is deferred to the first read of results — :meth:`~FastParticleFilterState.ess`,
:attr:`~FastParticleFilterState.log_ml_estimate`,
:meth:`~FastParticleFilterState.normalized_weights` and ``.traces`` — which raises
:class:`~genmlx.core.errors.NonFiniteScoreError` naming the step and the address.

``genmlx.core.static.auto_compile(False)`` (``GENMLX_AUTO_COMPILE=0``) turns the
compiled path off.
"""

from __future__ import annotations

import math
import operator
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, runtime, static
from genmlx.core.compile import compile_function
from genmlx.core.config import check_scores_enabled
from genmlx.core.diff import Diff, diff_args
from genmlx.core.errors import NonFiniteScoreError
from genmlx.core.random import Key, KeyStream
from genmlx.core.tree import TreeDef, flatten, node_children, node_rebuild, unflatten
from genmlx.infer import _checks as checks
from genmlx.infer.smc import (
    RESAMPLING_METHODS,
    ParticleFilterState,
    _ess,
    _reset_weights,
    resample_indices,
)

__all__ = ["FastParticleFilterState", "from_trace", "program_stats", "refusals"]


# ---------------------------------------------------------------------- step index
class _Guards:
    """What a traced kernel body did with the step index ``t``."""

    __slots__ = ("ops", "specific", "t")

    _REPLAY: Mapping[str, Callable[[Any, Any], Any]] = {
        "eq": operator.eq,
        "ne": operator.ne,
        "lt": operator.lt,
        "le": operator.le,
        "gt": operator.gt,
        "ge": operator.ge,
        "bool": lambda t, _: bool(t),
    }

    def __init__(self, t: int) -> None:
        self.t = t
        self.ops: list[tuple[str, Any, Any]] = []
        self.specific = False

    def accepts(self, t: int) -> bool:
        """Whether the body would have run the same way with step index ``t``."""
        if self.specific:
            return t == self.t
        replay = self._REPLAY
        return all(replay[name](t, other) == result for name, other, result in self.ops)


_PLAIN = (int, float, bool)


class _StepIndex:
    """The step index ``t`` as an ``Unfold`` kernel sees it while a program is traced.

    It behaves like the int ``t``; comparisons with plain numbers are recorded (the
    program is valid for every ``t`` with the same outcomes), every other use marks the
    program specific to this ``t``.
    """

    __slots__ = ("_g", "_t")

    def __init__(self, t: int, guards: _Guards) -> None:
        self._t = t
        self._g = guards

    def _cmp(self, name: str, other: Any) -> Any:
        result = _Guards._REPLAY[name](self._t, other)
        if type(other) in _PLAIN and type(result) is bool:
            self._g.ops.append((name, other, result))
        else:
            self._g.specific = True
        return result

    def __eq__(self, other: object) -> Any:  # type: ignore[override]
        return self._cmp("eq", other)

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        return self._cmp("ne", other)

    def __lt__(self, other: Any) -> Any:
        return self._cmp("lt", other)

    def __le__(self, other: Any) -> Any:
        return self._cmp("le", other)

    def __gt__(self, other: Any) -> Any:
        return self._cmp("gt", other)

    def __ge__(self, other: Any) -> Any:
        return self._cmp("ge", other)

    def __bool__(self) -> bool:
        result = bool(self._t)
        self._g.ops.append(("bool", None, result))
        return result

    def _value(self) -> int:
        self._g.specific = True
        return self._t

    def __hash__(self) -> int:
        return hash(self._value())

    def __index__(self) -> int:
        return self._value()

    def __int__(self) -> int:
        return self._value()

    def __float__(self) -> float:
        return float(self._value())

    def __repr__(self) -> str:
        return repr(self._value())

    def __str__(self) -> str:
        return str(self._value())

    def __format__(self, spec: str) -> str:
        return format(self._value(), spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._value(), name)


def _binary(op: Callable[[Any, Any], Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def forward(self: _StepIndex, other: Any) -> Any:
        return op(self._value(), other)

    def reflected(self: _StepIndex, other: Any) -> Any:
        return op(other, self._value())

    return forward, reflected


def _unary(op: Callable[[Any], Any]) -> Callable[..., Any]:
    def method(self: _StepIndex) -> Any:
        return op(self._value())

    return method


for _name, _op in (
    ("add", operator.add),
    ("sub", operator.sub),
    ("mul", operator.mul),
    ("matmul", operator.matmul),
    ("truediv", operator.truediv),
    ("floordiv", operator.floordiv),
    ("mod", operator.mod),
    ("divmod", divmod),
    ("pow", operator.pow),
    ("and", operator.and_),
    ("or", operator.or_),
    ("xor", operator.xor),
    ("lshift", operator.lshift),
    ("rshift", operator.rshift),
):
    _fwd, _rev = _binary(_op)
    setattr(_StepIndex, f"__{_name}__", _fwd)
    setattr(_StepIndex, f"__r{_name}__", _rev)
for _name, _uop in (
    ("neg", operator.neg),
    ("pos", operator.pos),
    ("abs", operator.abs),
    ("invert", operator.invert),
    ("round", round),
    ("trunc", math.trunc),
    ("floor", math.floor),
    ("ceil", math.ceil),
):
    setattr(_StepIndex, f"__{_name}__", _unary(_uop))


def _mentions_step_index(td: TreeDef) -> bool:
    """Whether a step index stand-in ended up in a traced program's output structure."""

    def scan(v: Any) -> bool:
        if isinstance(v, _StepIndex):
            return True
        if isinstance(v, (tuple, list)):
            return any(scan(x) for x in v)
        if isinstance(v, TreeDef):
            return _mentions_step_index(v)
        inner = getattr(v, "value", None)
        return inner is not None and type(v).__name__ == "_Static" and scan(inner)

    if scan(td.aux):
        return True
    return any(_mentions_step_index(c) for c in td.children)


# ---------------------------------------------------------------------- programs
class _Program(NamedTuple):
    fn: Callable[..., Any]
    box: dict[str, Any]
    guards: _Guards


def _code_names(code: types.CodeType, out: set[str]) -> None:
    out.update(code.co_names)
    out.update(code.co_freevars)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code_names(c, out)


def _captures(fn: Any, seen: set[int] | None = None) -> list[tuple[Any, str]]:
    """``(namespace, name)`` of every global and closure variable ``fn``'s body (and the
    ``@gen`` functions it names) reads: their values are constants of a compiled
    program, so rebinding one must drop the programs."""
    from genmlx.core.dsl import DynamicGenerativeFunction

    seen = set() if seen is None else seen
    code = getattr(fn, "__code__", None)
    if code is None or id(fn) in seen:
        return []
    seen.add(id(fn))
    names: set[str] = set()
    _code_names(code, names)
    g = getattr(fn, "__globals__", {})
    out: list[tuple[Any, str]] = [(g, n) for n in sorted(names) if n in g]
    out.extend(zip(fn.__closure__ or (), code.co_freevars))
    for ns, n in list(out):
        v = _value(ns, n)
        if isinstance(v, DynamicGenerativeFunction):
            out.extend(_captures(v.fn, seen))
    return out


def _value(ns: Any, name: str) -> Any:
    if isinstance(ns, dict):
        return ns.get(name)
    try:
        return ns.cell_contents
    except ValueError:
        return None


def _fingerprint(caps: list[tuple[Any, str]]) -> tuple[int, ...]:
    out: list[int] = []
    for ns, name in caps:
        v = _value(ns, name)
        out.append(id(v))
        # arrays held in small containers (a table of parameters); other entries, such
        # as a counter the body updates, are not part of the program
        if isinstance(v, (list, tuple)) and len(v) < 64:
            out.extend(id(x) for x in v if isinstance(x, mx.array))
        elif isinstance(v, dict) and len(v) < 64:
            out.extend(id(x) for x in v.values() if isinstance(x, mx.array))
    return tuple(out)


class _KernelCache:
    def __init__(self, kernel: GenerativeFunction) -> None:
        self.captures = _captures(getattr(kernel, "fn", None))
        self.fingerprint = _fingerprint(self.captures)
        self.programs: dict[Any, list[_Program]] = {}
        self.refused: dict[Any, str] = {}
        self.compiled = 0

    def valid(self) -> None:
        fp = _fingerprint(self.captures)
        if fp != self.fingerprint:  # a global or closure variable the body reads changed
            self.fingerprint = fp
            self.programs.clear()
            self.refused.clear()


_KERNELS: weakref.WeakKeyDictionary[Any, _KernelCache] = weakref.WeakKeyDictionary()
_MAX_PROGRAMS = 8  # per kernel and step signature (one per outcome of the t guards)
_RESAMPLERS: dict[Any, Callable[..., Any]] = {}
_MODELS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def program_stats(kernel: GenerativeFunction) -> dict[str, int]:
    """How many filter-step programs were compiled for ``kernel`` and how many step
    signatures were refused (they run on the interpreted path)."""
    cache = _KERNELS.get(kernel)
    if cache is None:
        return {"compiled_programs": 0, "refused_signatures": 0}
    return {"compiled_programs": cache.compiled, "refused_signatures": len(cache.refused)}


def refusals(kernel: GenerativeFunction) -> list[str]:
    """Why step signatures of ``kernel`` run on the interpreted path."""
    cache = _KERNELS.get(kernel)
    return [] if cache is None else sorted(set(cache.refused.values()))


def _static_gen(gf: Any, args: tuple[Any, ...], what: str) -> str | None:
    """``None`` when ``gf`` is a static ``@gen`` function without ``param`` for ``args``."""
    from genmlx.core import analyze
    from genmlx.core.dsl import DynamicGenerativeFunction

    if not isinstance(gf, DynamicGenerativeFunction):
        return f"the {what} {gf!r} is not a @gen function"
    try:
        g = analyze(gf, args)
    except Exception as e:  # the interpreted path reports the problem
        return f"the {what} could not be analysed ({type(e).__name__}: {e})"
    if not g.is_static:
        return f"the {what} is dynamic: {g.reason}"
    if g.uses_params:
        return f"the {what} reads trainable parameters (param)"
    return None


def _sig(x: mx.array) -> tuple[tuple[int, ...], Any]:
    return tuple(x.shape), x.dtype


def _resample_part(
    method: str,
    adaptive: bool,
    n: int,
    key: mx.array,
    thr: mx.array | None,
    lw: mx.array,
    acc: mx.array,
) -> tuple[mx.array, mx.array, mx.array]:
    """``ParticleFilterState.resample`` / ``maybe_resample`` on arrays: ``(idx, lw, acc)``
    (degenerate weights come out NaN, as the interpreted path has them under a
    transformation; the state reports them when its results are read)."""
    idx = resample_indices(lw, method, key=key, step="(the particle filter's weights)")
    lse = mx.logsumexp(lw)
    if not adaptive:
        return idx, _reset_weights(lw), acc + lse - math.log(n)
    assert thr is not None
    do = _ess(lw) < thr
    idx = mx.where(do, idx, mx.arange(n, dtype=idx.dtype))
    new_lw = mx.where(do, _reset_weights(lw), lw)
    new_acc = mx.where(do, acc + lse - math.log(n), acc)
    return idx, new_lw, new_acc


def _unique(leaves: list[mx.array]) -> tuple[list[mx.array], list[int]]:
    first: dict[int, int] = {}
    unique: list[mx.array] = []
    index = []
    for x in leaves:
        j = first.setdefault(id(x), len(unique))
        if j == len(unique):
            unique.append(x)
        index.append(j)
    return unique, index


def _wrapper_keys(keys: mx.array) -> mx.array:
    """A ``@gen`` model's update key for its first updated call, per particle."""
    return mx.vmap(lambda k: KeyStream.start(k).site()[1])(keys)


def _build(
    plan: Any,
    n: int,
    mode: tuple[str, bool] | None,
    carry_td: TreeDef,
    wrapper: int,
) -> _Program:
    """The step program, traced on its first call: [the pending resampling] + the new
    step for every particle + the weights. ``wrapper``: 0 for a sequence model, 1 for a
    ``@gen`` model around one (keys and weights as its ``update`` makes them), 2 for
    one that also has choices of its own (their ``s - s`` weight terms ride along)."""
    guards = _Guards(plan.t)
    t_symbol: Any = _StepIndex(plan.t, guards) if plan.uses_t else plan.t
    box: dict[str, Any] = {}
    n_live = 1 + carry_td.num_leaves + (1 if wrapper == 2 else 0)
    n_in = len(plan.inputs)

    def pure(*lv: mx.array) -> list[mx.array]:
        i = 0
        head: list[mx.array] = []
        key_r: Any = None
        thr: Any = None
        if mode is not None:
            key_r = lv[0]
            thr = lv[1] if mode[1] else None
            i = 2 if mode[1] else 1
        lw, acc = lv[i], lv[i + 1]
        live = list(lv[i + 2 : i + 2 + n_live])
        key_s = lv[i + 2 + n_live]
        inputs = list(lv[i + 3 + n_live : i + 3 + n_live + n_in])
        with runtime.transforming():
            if mode is not None:
                idx, lw, acc = _resample_part(mode[0], mode[1], n, key_r, thr, lw, acc)
                live = [mx.take(x, idx, axis=0) for x in live]
                head = [idx, acc]
            score = live[0]
            carry = unflatten(carry_td, live[1 : 1 + carry_td.num_leaves])
            keys = mx.random.split(key_s, n)
            if wrapper:
                keys = _wrapper_keys(keys)
            step, rest, w = plan.run(keys, carry, inputs, t_symbol)
            new_carry = plan.carry_of(step)
            if wrapper:
                w = 0.0 + w
                w = (live[-1] if wrapper == 2 else 0.0) + w
            new_lw = mx.where(lw == -mx.inf, -mx.inf, lw + w)  # dead particles stay dead
            new_score = score + step.score
        out_leaves, out_td = flatten((step, rest, new_carry))
        unique, index = _unique(out_leaves)
        box["td"], box["index"] = out_td, index
        box["n_head"] = len(head)
        extra = live[1 + carry_td.num_leaves :]
        box["pure"] = pure  # (benchmarks count the program's primitives)
        return [*head, new_lw, new_score, *extra, *unique]

    return _Program(compile_function(pure), box, guards)


def _resampler(method: str, adaptive: bool, n: int, sig: Any) -> Callable[..., Any]:
    """The compiled resampling alone (a pending resampling read before any step):
    ``(idx, lw, acc, *live gathered)``."""
    key = (method, adaptive, n, sig)
    fn = _RESAMPLERS.get(key)
    if fn is None:

        def pure(*lv: mx.array) -> list[mx.array]:
            key_r = lv[0]
            thr = lv[1] if adaptive else None
            i = 2 if adaptive else 1
            lw, acc = lv[i], lv[i + 1]
            live = lv[i + 2 :]
            idx, lw, acc = _resample_part(method, adaptive, n, key_r, thr, lw, acc)
            return [idx, lw, acc, *(mx.take(x, idx, axis=0) for x in live)]

        fn = _RESAMPLERS[key] = compile_function(pure)
        if len(_RESAMPLERS) > 256:
            _RESAMPLERS.pop(next(iter(_RESAMPLERS)))
    return fn


# ---------------------------------------------------------------------- the particles
class _Outer(NamedTuple):
    """A ``@gen`` model around one sequence call: what its trace holds besides the call.

    Attributes:
        seq: the sequence combinator called at ``path``.
        path: the call's address.
        seq_args: the call's arguments as the body computes them (one particle).
        sites: the body's own random choices (all visited before the call), in order.
        site_args: their arguments (one particle), to see that they are unchanged.
        values: their batched values at ``epoch`` (gathered lazily through the maps).
        scores: their batched scores at ``epoch``.
        epoch: the number of ancestor maps when ``values``/``scores`` were taken.
        stand_ins: one particle's values of the choices (for running the body).
        structure: the trace's tree structure (the aux of ``genmlx.core.tree.node_children``).
    """

    seq: Any  # a sequence combinator (particle_parts, plan_particle_step)
    path: Any
    seq_args: tuple[Any, ...]
    sites: tuple[Any, ...]
    site_args: tuple[Any, ...]
    values: tuple[mx.array, ...]
    scores: tuple[mx.array, ...]
    epoch: int
    stand_ins: tuple[Any, ...]
    structure: Any


class _Core(NamedTuple):
    """The particles as plain arrays (immutable).

    ``score`` is the sequence's total score (for a ``@gen`` model around a sequence call,
    the call's); ``nan_term`` is ``Σ (s - s)`` over the ``@gen`` model's own choices
    (``0`` or NaN per particle, as the interpreter's update weight has it) or ``None``.
    """

    model: GenerativeFunction
    args: tuple[Any, ...]
    n: int
    parts: Any  # genmlx.combinators._extend.SequenceParts
    score: mx.array
    log_weights: mx.array
    log_ml_accumulated: mx.array
    outer: _Outer | None = None
    nan_term: mx.array | None = None
    sig: Any = None  # the structure, shapes and dtypes of the arrays (see _with_sig)

    @property
    def seq(self) -> Any:
        return self.model if self.outer is None else self.outer.seq

    @property
    def seq_args(self) -> tuple[Any, ...]:
        return self.args if self.outer is None else self.outer.seq_args

    def live(self) -> list[mx.array]:
        """The per-particle arrays a resampling gathers: score, carry, [nan term]."""
        out = [self.score, *flatten(self.parts.carry)[0]]
        if self.nan_term is not None:
            out.append(self.nan_term)
        return out

    def with_live(self, live: list[mx.array], carry_td: TreeDef) -> _Core:
        k = carry_td.num_leaves
        carry = unflatten(carry_td, list(live[1 : 1 + k]))
        nan_term = live[1 + k] if self.nan_term is not None else None
        return self._replace(
            score=live[0], parts=self.parts._replace(carry=carry), nan_term=nan_term
        )

    def trace(self) -> Trace:
        """The batched trace the interpreted path would hold."""
        seq_args = self.seq_args
        if self.outer is None:
            return self.parts.trace(self.model, seq_args, self.score, self.n)  # type: ignore[no-any-return]
        return _outer_trace(self)


def _with_sig(core: _Core) -> _Core:
    """``core`` with its signature: the carry's structure and the shapes and dtypes of
    the weights, the accumulated log ML and the arrays a resampling gathers."""
    carry_td = flatten(core.parts.carry)[1]
    arrays = (core.log_weights, core.log_ml_accumulated, *core.live())
    return core._replace(sig=(carry_td, tuple(_sig(x) for x in arrays)))


class _Pending(NamedTuple):
    key: mx.array
    method: str
    threshold: float | None


def _as_threshold(x: float) -> mx.array:
    return mx.array(float(x), dtype=mx.float32)


# ---------------------------------------------------------------------- @gen around a sequence
class _Unsupported(Exception):
    """The model cannot take the compiled path (the interpreter runs it)."""


class _Stop(Exception):
    """Raised by the probing handler once it has seen the sequence call: the rest of the
    body need not run."""


def _run_to_call(
    model: Any,
    args: tuple[Any, ...],
    seq: Any,
    path: Any,
    stand_ins: dict[Any, Any],
    retval_like: Callable[[tuple[Any, ...]], Any] | None,
) -> tuple[list[Any], list[tuple[Any, ...]], tuple[Any, ...]]:
    """Run ``model``'s body for one particle with stand-in values: the choices it visits
    before the call at ``path`` (with their arguments) and the call's arguments. The
    body must visit only known choices and then the call, and nothing after it."""
    from genmlx.core import handlers as H
    from genmlx.core.distribution import Distribution

    sites: list[Any] = []
    site_args: list[tuple[Any, ...]] = []
    found: dict[str, Any] = {}

    def handler(state: Any, p: Any, gf: Any, a: tuple[Any, ...]) -> Any:
        if "call" in found:
            raise _Unsupported(f"the body visits {p!r} after the sequence call")
        if p == path:
            if gf is not seq:
                raise _Unsupported(f"the call at {p!r} is not the sequence combinator")
            found["call"] = tuple(a)
            if retval_like is None:
                raise _Stop
            return state, retval_like(tuple(a))
        if not isinstance(gf, Distribution) or p not in stand_ins:
            raise _Unsupported(f"the body's site at {p!r} is not one of its known choices")
        sites.append(p)
        site_args.append(tuple(a))
        return state, stand_ins[p]

    try:
        H.run_body("update", model.name, model.fn, tuple(args), handler, None)
    except _Stop:
        pass  # the probe stopped at the sequence call: what it needs is recorded
    except _Unsupported:
        raise
    except Exception as e:
        raise _Unsupported(f"the body could not run with stand-in values ({e})") from e
    if "call" not in found:
        raise _Unsupported("the body did not make the sequence call")
    if len(sites) != len(stand_ins):
        raise _Unsupported("the body visited a different set of choices")
    return sites, site_args, found["call"]


def _leaf_ids(tree: Any) -> set[int]:
    return {id(x) for x in flatten(tree)[0]}


def _outer_core(trace: Trace, log_weights: mx.array, log_ml_accumulated: mx.array) -> _Core | None:
    """The core of a batched trace of a ``@gen`` model whose body makes one sequence
    call (last) besides random choices of its own."""
    from genmlx.core import handlers as H
    from genmlx.core.dsl import DynamicTrace

    model = trace.gen_fn
    if not isinstance(trace, DynamicTrace) or not hasattr(model, "fn"):
        return None
    records = list(trace.records())
    calls = [(p, r) for p, r in records if isinstance(r, H.CallRecord)]
    if len(calls) != 1 or records[-1][0] != calls[0][0]:
        return None
    path, rec = calls[0]
    seq = rec.trace.gen_fn
    parts_of = getattr(seq, "particle_parts", None)
    if parts_of is None or getattr(seq, "plan_particle_step", None) is None:
        return None
    parts = parts_of(rec.trace)
    if parts is None:
        return None
    verdict = _MODELS.get(model)
    if verdict is None:
        # analysed once per model: the body's structure apart from the call's length
        # is re-checked by running it at every step (_run_to_call)
        verdict = _MODELS[model] = _static_gen(model, tuple(trace.args), "model") or ""
    if verdict:
        return None
    choices = [(p, r) for p, r in records if isinstance(r, H.ChoiceRecord)]
    stand_ins = {p: r.value[0] for p, r in choices}
    try:
        sites, site_args, seq_args = _run_to_call(
            model, tuple(trace.args), seq, path, stand_ins, None
        )
    except _Unsupported:
        return None
    if _leaf_ids(seq_args) & {id(v) for v in stand_ins.values()}:
        return None  # the call reads a choice of the particle: not shared by the particles
    by_path = dict(choices)
    nan_term = None
    if sites:
        acc: Any = 0.0
        for p in sites:
            s = by_path[p].score
            acc = acc + (s - s)
        nan_term = acc
    _, aux = node_children(trace)
    outer = _Outer(
        seq,
        path,
        tuple(seq_args),
        tuple(sites),
        tuple(site_args),
        tuple(by_path[p].value for p in sites),
        tuple(by_path[p].score for p in sites),
        len(parts.maps),
        tuple(stand_ins[p] for p in sites),
        aux,
    )
    return _Core(
        model,
        tuple(trace.args),
        int(trace.batch_shape[0]),
        parts,
        rec.trace.score,
        log_weights,
        log_ml_accumulated,
        outer,
        nan_term,
    )


def _outer_plan(
    core: _Core, new_args: tuple[Any, ...], argdiffs: tuple[Diff, ...] | None, obs: ChoiceMap
) -> tuple[Any, _Outer] | None:
    """The sequence call's step plan for an update of the ``@gen`` model, or ``None``."""
    outer = core.outer
    assert outer is not None
    if argdiffs is not None and len(argdiffs) != len(new_args):
        return None
    if len(new_args) != len(core.args):
        return None
    sub = obs.get_submap(outer.path) if not obs.is_empty else ChoiceMap.empty()
    if sub is None or (not obs.is_empty and not _only_under(obs, outer.path)):
        return None
    stand_ins = dict(zip(outer.sites, outer.stand_ins))
    parts = core.parts
    try:
        sites, site_args, seq_args = _run_to_call(
            core.model,
            new_args,
            outer.seq,
            outer.path,
            stand_ins,
            lambda a: parts.retval_like(outer.seq, _length_of(outer.seq, a)),
        )
    except _Unsupported:
        return None
    if tuple(sites) != outer.sites:
        return None
    for old, new in zip(outer.site_args, site_args):
        if not all(d.is_no_change() for d in diff_args(old, new)):
            return None  # a choice of the model itself would be re-scored
    if _leaf_ids(seq_args) & {id(v) for v in outer.stand_ins}:
        return None
    plan = outer.seq.plan_particle_step(
        outer.seq_args, tuple(seq_args), diff_args(outer.seq_args, seq_args), sub, parts.carry
    )
    if plan is None:
        return None
    return plan, outer._replace(seq_args=tuple(seq_args), site_args=tuple(site_args))


def _length_of(seq: Any, args: tuple[Any, ...]) -> int:
    try:
        return int(seq.length(tuple(args), "update"))
    except (TypeError, ValueError) as e:
        raise _Unsupported(str(e)) from e


def _only_under(obs: ChoiceMap, path: Any) -> bool:
    p = tuple(path) if isinstance(path, tuple) else (path,)
    return all(tuple(q[: len(p)]) == p for q, _ in obs.leaves())


def _rows(maps: Any, epoch: int) -> mx.array | None:
    r = None
    for k in range(len(maps) - 1, epoch - 1, -1):
        r = maps[k] if r is None else maps[k][r]
    return r


def _outer_trace(core: _Core) -> Trace:
    """The ``@gen`` model's batched trace: its own choices gathered through the ancestor
    maps, the sequence call's trace, the score summed in visiting order and the return
    value from running the body on the particles' values."""
    from genmlx.core import handlers as H
    from genmlx.core.batching import vmap_call

    outer = core.outer
    assert outer is not None
    n = core.n
    rows = _rows(core.parts.maps, outer.epoch)
    values = [v if rows is None else mx.take(v, rows, axis=0) for v in outer.values]
    scores = [s if rows is None else mx.take(s, rows, axis=0) for s in outer.scores]
    seq_args = tuple(
        mx.broadcast_to(a, (n, *a.shape)) if isinstance(a, mx.array) else a for a in outer.seq_args
    )
    call = core.parts.trace(outer.seq, seq_args, core.score, n)
    score: Any = 0.0
    for s in scores:
        score = score + s
    score = score + core.score
    by_path = {p: (v, s) for p, v, s in zip(outer.sites, values, scores)}
    batch_shape, gen_fn, structure = outer.structure
    children: list[Any] = [core.args, None, score]
    for p, is_choice in structure:
        children.append(by_path[p] if is_choice else call)
    from genmlx.core.dsl import DynamicTrace

    stub = node_rebuild(DynamicTrace, outer.structure, children)

    def replay(tr: Trace) -> Any:
        def handler(state: Any, p: Any, gf: Any, a: tuple[Any, ...]) -> Any:
            rec = tr.record(p)  # type: ignore[attr-defined]
            return state, (rec.value if isinstance(rec, H.ChoiceRecord) else rec.trace.retval)

        model: Any = core.model
        _, rv = H.run_body("update", model.name, model.fn, core.args, handler, None)
        return rv

    with runtime.operation():
        retval = vmap_call(replay, n, (stub._replace(args=()),), ())
    out: Trace = stub._replace(retval=retval)
    return out


# ---------------------------------------------------------------------- the state
class FastParticleFilterState(ParticleFilterState):
    """A :class:`~genmlx.infer.ParticleFilterState` kept as plain arrays.

    It has the fields and methods of the base class with the same results; ``traces``
    is built from the arrays when read. A resampling is recorded and runs inside the
    next step's compiled program (or when the weights are read first).
    """

    # the tuple's own items are unused placeholders: the fields are properties

    def __new__(  # type: ignore[misc]
        cls, traces: Trace, log_weights: mx.array, log_ml_accumulated: mx.array
    ) -> ParticleFilterState:
        """The state of these fields: on the compiled path when the model has one, else a
        plain :class:`~genmlx.infer.ParticleFilterState` (used when a state is rebuilt
        from its fields: unpickling, loading, tree unflattening)."""
        fast = from_trace(traces, log_weights, log_ml_accumulated)
        return fast if fast is not None else ParticleFilterState(
            traces, log_weights, log_ml_accumulated
        )

    @classmethod
    def _make_fast(
        cls,
        core: _Core,
        pending: _Pending | None = None,
        trace: Trace | None = None,
        checked: bool = False,
    ) -> FastParticleFilterState:
        """``checked``: the arrays need no deferred check (they come from the
        interpreted path, which checked them, or from a transformation, where NaN is
        the documented outcome); only what the compiled programs make is checked."""
        self = tuple.__new__(cls, (None, None, None))
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_pending", pending)
        object.__setattr__(self, "_trace", trace)
        object.__setattr__(self, "_checked", checked)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ParticleFilterState is immutable; its methods return new states")

    # ------------------------------------------------------------------ fields
    def _realised(self) -> _Core:
        """The core with the pending resampling applied (run once, then cached)."""
        pending = self.__dict__["_pending"]
        core: _Core = self.__dict__["_core"]
        if pending is None:
            return core
        live = core.live()
        carry_td = core.sig[0]
        fn = _resampler(pending.method, pending.threshold is not None, core.n, core.sig)
        head = [pending.key]
        if pending.threshold is not None:
            head.append(_as_threshold(pending.threshold))
        out = fn(*head, core.log_weights, core.log_ml_accumulated, *live)
        idx, lw, acc = out[:3]
        core = core._replace(
            parts=core.parts.take(idx, core.parts.carry), log_weights=lw, log_ml_accumulated=acc
        ).with_live(list(out[3:]), carry_td)
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_pending", None)
        return core

    @property  # type: ignore[misc]
    def traces(self) -> Trace:  # type: ignore[override]
        """The particles as one batched trace (built from the arrays on first read)."""
        tr = self.__dict__["_trace"]
        if tr is None or self.__dict__["_pending"] is not None:
            core = self._realised()
            self._check()
            tr = core.trace()
            object.__setattr__(self, "_trace", tr)
        else:
            self._check()
        return tr  # type: ignore[no-any-return]

    @property  # type: ignore[misc]
    def log_weights(self) -> mx.array:  # type: ignore[override]
        """Unnormalised log weights, shape ``[N]``."""
        return self._realised().log_weights

    @property  # type: ignore[misc]
    def log_ml_accumulated(self) -> mx.array:  # type: ignore[override]
        """The accumulated log marginal likelihood (see the base class)."""
        return self._realised().log_ml_accumulated

    @property
    def n_particles(self) -> int:
        """The number of particles ``N``."""
        return int(self.__dict__["_core"].n)

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        """The deferred checks, one read of a few flags (see the module docs): NaN log
        weights (a step's NaN density, or a resampling of degenerate weights) raise
        :class:`~genmlx.infer.DegenerateWeightsError`; NaN or +inf log densities of live
        particles raise :class:`~genmlx.core.errors.NonFiniteScoreError` (with score
        checks on, and as the interpreted path: not while some particle is dead)."""
        if self.__dict__["_checked"] or runtime.in_transform():
            return
        core = self._realised()
        lw = core.log_weights
        flags = [mx.any(mx.isnan(lw)), mx.isnan(core.log_ml_accumulated)]
        if check_scores_enabled():

            def bad(a: Any) -> mx.array:
                return mx.any(mx.logical_or(mx.isnan(a), a == mx.inf))

            scores = bad(core.score)
            for s in core.outer.scores if core.outer is not None else ():
                scores = mx.logical_or(scores, bad(s))
            flags.append(mx.logical_and(scores, mx.logical_not(mx.any(lw == -mx.inf))))
        got = checks.evaluable(mx.stack(flags))
        if got is None:
            return
        if len(got) > 2 and got[2]:
            raise NonFiniteScoreError(
                f"particle filter on {core.model!r}: non-finite log density at "
                f"{_where_bad(core)} (found when the filter's results were read: the "
                "compiled filter checks scores once, not at every step). Check that the "
                "distributions' parameters are valid and the observations lie in their "
                "support; config.score_checks(False) disables this check."
            )
        if got[0] or got[1]:
            raise checks.DegenerateWeightsError(
                f"particle filter on {core.model!r}: log weights are NaN (found when the "
                "filter's results were read: the compiled filter checks once, not at "
                "every step). A resampling met weights with no particle of positive "
                "weight (every log weight -inf: the observations are impossible under "
                "every particle) or a NaN weight, or a step's density was NaN. Check the "
                "observations and parameters, the proposal, or use more particles."
            )
        object.__setattr__(self, "_checked", True)

    def ess(self) -> mx.array:
        """Kish effective sample size ``1 / Σ_i w̄_i²`` (between 1 and ``N``)."""
        self._check()
        return super().ess()

    @property
    def log_ml_estimate(self) -> mx.array:
        """``log Ẑ = log Ẑ_acc + logsumexp_i(log w_i) - log N`` (see the base class)."""
        self._check()
        return super().log_ml_estimate

    def normalized_weights(self) -> mx.array:
        """``w̄_i = exp(log w_i) / Σ_j exp(log w_j)``, shape ``[N]``."""
        self._check()
        return super().normalized_weights()

    # ------------------------------------------------------------------ tuple protocol
    def plain(self) -> ParticleFilterState:
        """The same state as a plain :class:`~genmlx.infer.ParticleFilterState`."""
        return ParticleFilterState(self.traces, self.log_weights, self.log_ml_accumulated)

    def __iter__(self) -> Any:
        return iter((self.traces, self.log_weights, self.log_ml_accumulated))

    def __getitem__(self, i: Any) -> Any:  # type: ignore[override]
        return (self.traces, self.log_weights, self.log_ml_accumulated)[i]

    def _replace(self, **changes: Any) -> ParticleFilterState:  # type: ignore[override]
        return self.plain()._replace(**changes)

    def _asdict(self) -> dict[str, Any]:  # type: ignore[override]
        return self.plain()._asdict()

    def __reduce__(self) -> Any:
        return (FastParticleFilterState, (self.traces, self.log_weights, self.log_ml_accumulated))

    def __repr__(self) -> str:
        core = self.__dict__["_core"]
        pend = "" if self.__dict__["_pending"] is None else ", a resampling pending"
        return (
            f"ParticleFilterState({core.n} particles, {len(core.parts.entries)} steps of "
            f"{core.model!r}{pend}; compiled path)"
        )

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    # ------------------------------------------------------------------ moves
    def step(
        self,
        new_args: tuple[Any, ...],
        observations: ChoiceMap | Mapping[Any, Any] | None,
        *,
        argdiffs: tuple[Diff, ...] | None = None,
        proposal: GenerativeFunction | None = None,
        proposal_args: tuple[Any, ...] = (),
        key: Key = None,
    ) -> ParticleFilterState:
        """See :meth:`genmlx.infer.ParticleFilterState.step` (same results)."""
        from genmlx.infer.importance import _check_inputs

        core = self.__dict__["_core"]
        obs = _check_inputs(core.model, new_args, observations, core.n, proposal, "step")
        if not isinstance(proposal_args, (tuple, list)):
            raise TypeError("step: proposal_args must be a tuple")
        key = checks.key(key, "step")
        if argdiffs is None:  # as ParticleFilterState.step: equal fresh arrays unchanged
            argdiffs = diff_args(core.args, tuple(new_args), compare_arrays=True)
        if proposal is None:
            out = _step(self, tuple(new_args), obs, argdiffs, key)
            if out is not None:
                return out
        return self.plain()._interpreted_step(
            tuple(new_args), obs, argdiffs, proposal, tuple(proposal_args), key
        )

    def rejuvenate(
        self,
        kernel: Callable[..., tuple[Trace, mx.array]],
        *args: Any,
        key: Key = None,
        **kwargs: Any,
    ) -> ParticleFilterState:
        """See :meth:`genmlx.infer.ParticleFilterState.rejuvenate` (same results)."""
        return _again(self.plain().rejuvenate(kernel, *args, key=key, **kwargs))

    def edit(self, request: Any, *, key: Key = None) -> ParticleFilterState:
        """See :meth:`genmlx.infer.ParticleFilterState.edit` (same results)."""
        return _again(self.plain().edit(request, key=key))

    def resample(
        self,
        method: str = "systematic",
        *,
        ess_threshold: float | None = None,
        key: Key = None,
    ) -> ParticleFilterState:
        """See :meth:`genmlx.infer.ParticleFilterState.resample` (same results)."""
        if ess_threshold is not None:
            return self.maybe_resample(ess_threshold, method, key=key)
        return self._pend(method, None, key, "resample")

    def maybe_resample(
        self, ess_threshold: float, method: str = "systematic", *, key: Key = None
    ) -> ParticleFilterState:
        """See :meth:`genmlx.infer.ParticleFilterState.maybe_resample` (same results)."""
        if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)):
            raise TypeError(
                f"maybe_resample: ess_threshold must be a number, got {ess_threshold!r}"
            )
        checks.number(ess_threshold, "ess_threshold", "maybe_resample", low=0.0)
        return self._pend(method, float(ess_threshold), key, "maybe_resample")

    def _pend(
        self, method: str, threshold: float | None, key: Key, op: str
    ) -> ParticleFilterState:
        if method not in RESAMPLING_METHODS:
            raise ValueError(
                f"resample: unknown method {method!r}; choose one of "
                f"{', '.join(RESAMPLING_METHODS)}"
            )
        key = checks.key(key, op)
        core = self._realised()  # a second resampling in a row runs the first now
        if self.__dict__["_checked"]:
            # the weights were read already: refuse degenerate ones here, as the
            # interpreted path does (otherwise they are reported at the next read)
            checks.weights(core.log_weights, "resample", "(the particle filter's weights)")
        return FastParticleFilterState._make_fast(core, _Pending(key, method, threshold))


def _where_bad(core: _Core) -> str:
    """The first step and address with a NaN/+inf log density (for the error)."""
    from genmlx.core.address import format_address

    def bad(s: mx.array) -> bool:
        return bool(mx.any(mx.logical_or(mx.isnan(s), s == mx.inf)).item())

    prefix: tuple[Any, ...] = ()
    if core.outer is not None:
        for p, s in zip(core.outer.sites, core.outer.scores):
            if bad(s):
                return f"the choice at address {format_address(p)}"
        path = core.outer.path
        prefix = tuple(path) if isinstance(path, tuple) else (path,)
    for t, (tr, _) in enumerate(core.parts.entries):
        for p, s in tr.site_scores():
            if bad(s):
                return f"step {t}, the choice at address {format_address((*prefix, t, *p))}"
    return "the weights"


# ---------------------------------------------------------------------- entry points
def _again(state: ParticleFilterState) -> ParticleFilterState:
    """``state`` back on the compiled path when its model has one."""
    fast = from_trace(state.traces, state.log_weights, state.log_ml_accumulated)
    return state if fast is None else fast


def from_trace(
    trace: Trace, log_weights: mx.array, log_ml_accumulated: mx.array
) -> FastParticleFilterState | None:
    """The compiled-path state of a batched trace of a sequence model (or of a ``@gen``
    model around one); ``None`` when the model has no compiled path or it is off."""
    if not static.auto_compile_enabled() or runtime.in_transform():
        return None
    if len(trace.batch_shape) != 1:
        return None
    model = trace.gen_fn
    parts_of = getattr(model, "particle_parts", None)
    if parts_of is not None:
        parts = parts_of(trace)
        if parts is None:
            return None
        core = _Core(
            model,
            tuple(trace.args),
            int(trace.batch_shape[0]),
            parts,
            trace.score,
            log_weights,
            log_ml_accumulated,
        )
    else:
        try:
            found = _outer_core(trace, log_weights, log_ml_accumulated)
        except Exception:
            return None
        if found is None:
            return None
        core = found
    return FastParticleFilterState._make_fast(_with_sig(core), None, trace, checked=True)


def _key(plan: Any, core: _Core, mode: Any, wrapper: int) -> Any:
    return (plan.signature, core.n, mode, wrapper, core.sig)


def _step(
    state: FastParticleFilterState,
    new_args: tuple[Any, ...],
    obs: ChoiceMap,
    argdiffs: tuple[Diff, ...] | None,
    key: mx.array,
) -> FastParticleFilterState | None:
    if not static.auto_compile_enabled() or runtime.in_transform():
        return None
    core: _Core = state.__dict__["_core"]
    pending: _Pending | None = state.__dict__["_pending"]
    outer = core.outer
    if outer is None:
        if argdiffs is None:
            argdiffs = diff_args(core.args, new_args)
        plan = core.model.plan_particle_step(  # type: ignore[attr-defined]
            core.args, new_args, tuple(argdiffs), obs, core.parts.carry
        )
        wrapper = 0
    else:
        found = _outer_plan(core, new_args, argdiffs, obs)
        if found is None:
            return None
        plan, outer = found
        wrapper = 2 if core.nan_term is not None else 1
    if plan is None:
        return None
    mode = None if pending is None else (pending.method, pending.threshold is not None)
    cache = _KERNELS.get(plan.kernel)
    if cache is None:
        cache = _KERNELS[plan.kernel] = _KernelCache(plan.kernel)
    cache.valid()
    sig = _key(plan, core, mode, wrapper)
    if sig in cache.refused:
        return None
    prog = next((p for p in cache.programs.get(sig, ()) if p.guards.accepts(plan.t)), None)
    head: list[mx.array] = []
    if pending is not None:
        head.append(pending.key)
        if pending.threshold is not None:
            head.append(_as_threshold(pending.threshold))
    inputs = [*head, core.log_weights, core.log_ml_accumulated, *core.live(), key, *plan.inputs]
    carry_td = core.sig[0]
    if prog is None:
        if len(cache.programs.get(sig, ())) >= _MAX_PROGRAMS:
            cache.refused[sig] = "too many programs (the kernel branches on t too often)"
            return None
        reason = _static_gen(plan.kernel, plan.analysis_args, "kernel")
        if reason is not None:
            cache.refused[sig] = reason
            return None
        prog = _build(plan, core.n, mode, carry_td, wrapper)
        try:
            out = prog.fn(*inputs)
        except Exception as e:  # the interpreted path runs (and reports) it
            cache.refused[sig] = f"the step could not be compiled ({type(e).__name__}: {e})"
            return None
        if _mentions_step_index(prog.box["td"]):
            cache.refused[sig] = "the kernel passes the step index t on"
            return None
        if prog.guards.specific:
            # the body used t beyond comparisons: no program serves other steps; this
            # one is right for this step
            cache.refused[sig] = "the kernel uses the step index t beyond comparisons"
        else:
            cache.programs.setdefault(sig, []).append(prog)
            cache.compiled += 1
    else:
        out = prog.fn(*inputs)
    n_head = prog.box["n_head"]
    parts = core.parts
    acc = core.log_ml_accumulated
    if pending is not None:
        idx, acc = out[0], out[1]
        parts = parts.take(idx, parts.carry)
    new_lw, new_score = out[n_head], out[n_head + 1]
    n_extra = 1 if wrapper == 2 else 0
    extra = out[n_head + 2 : n_head + 2 + n_extra]
    unique = out[n_head + 2 + n_extra :]
    leaves = [unique[j] for j in prog.box["index"]]
    step, rest, new_carry = unflatten(prog.box["td"], leaves)
    parts = parts.extend(plan.finish(step, rest), new_carry)
    new_core = _Core(
        core.model,
        tuple(new_args),
        core.n,
        parts,
        new_score,
        new_lw,
        acc,
        outer,
        extra[0] if n_extra else None,
        prog.box.get("sig"),
    )
    if new_core.sig is None:
        new_core = _with_sig(new_core)
        prog.box["sig"] = new_core.sig
    return FastParticleFilterState._make_fast(new_core)
