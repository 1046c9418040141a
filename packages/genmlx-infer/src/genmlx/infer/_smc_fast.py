"""The particle filter's compiled path: one compiled program per filter step.

:func:`~genmlx.infer.particle_filter` on a sequence model — an ``Unfold``/``Scan`` whose
kernel is a static ``@gen`` function (:func:`genmlx.core.analyze`) that reads no
trainable parameters — keeps its particles as plain arrays instead of a batched trace
(:class:`FastParticleFilterState`): every step's batched kernel trace with the epoch it
was made at, the ancestor maps of the resamplings since (as
:class:`~genmlx.combinators.unfold.FrozenSteps` does), the current particles' carried
state, the total scores, the log weights and the accumulated log marginal likelihood.
A filter step — the pending resampling (ancestors drawn by any of the four schemes, the
ESS trigger of ``maybe_resample`` applied with ``mx.where``, the log-ML accumulation,
the gather of the carry and the scores), the kernel's extension of every particle with
the step's observations, and the new weights and scores — is **one** compiled program
per step signature (:func:`genmlx.core.compile.compile_function`, so GenMLX's
kernel-fusion setting applies), called without any host synchronisation. Resampling
records an ancestor map instead of copying the history.

The numbers are those of the interpreted path (the same MLX operations: particle ``i``
uses key ``split(key, N)[i]``, the combinator's step keys and the kernel's
``generate``). Everything that needs a trace — ``.traces``, ``rejuvenate``, ``edit``,
``smcp3_step``, steps with a custom proposal, updates that are not a one-step
extension — materialises the batched trace from the parts in ``O(1)`` (it equals the
trace the interpreted path would hold) and runs the interpreted operation; the next
bootstrap step returns to the compiled path.

``Unfold`` kernels receive the step index ``t``. While a program is traced the kernel
gets a stand-in for ``t`` that records how the body uses it: comparisons with numbers
(``t == 0``, ``t > 5``) make the program valid for every ``t`` that gives the same
answers (a guard checked before each reuse); any other use (arithmetic, indexing,
hashing, conversion) makes it specific to one ``t``, and such a kernel keeps using the
interpreted path.

Non-finite scores: the interpreted path checks every step (a host synchronisation);
here the check is deferred to the first read of results — :meth:`~FastParticleFilterState.ess`,
:meth:`~FastParticleFilterState.log_ml_estimate`,
:meth:`~FastParticleFilterState.normalized_weights` and ``.traces`` — which raises
:class:`~genmlx.core.errors.NonFiniteScoreError` naming the step and the address.

``config.auto_compile(False)`` (``GENMLX_AUTO_COMPILE=0``) turns the compiled path off.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, runtime, static
from genmlx.core.compile import compile_function
from genmlx.core.config import check_scores_enabled
from genmlx.core.diff import Diff, diff_args
from genmlx.core.errors import NonFiniteScoreError
from genmlx.core.random import Key, resolve_key
from genmlx.core.tree import TreeDef, flatten, unflatten
from genmlx.infer.smc import RESAMPLING_METHODS, ParticleFilterState, _ess, resample_indices

__all__ = ["FastParticleFilterState", "from_trace", "program_stats"]


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


class _KernelCache:
    def __init__(self, kernel: GenerativeFunction) -> None:
        fn = getattr(kernel, "fn", None)
        self.captures = static._captured(fn) if fn is not None else []
        self.fingerprint = static._fingerprint(self.captures)
        self.programs: dict[Any, list[_Program]] = {}
        self.refused: dict[Any, str] = {}
        self.compiled = 0

    def valid(self) -> None:
        fp = static._fingerprint(self.captures)
        if fp != self.fingerprint:  # a global the body reads was rebound
            self.fingerprint = fp
            self.programs.clear()
            self.refused.clear()


_KERNELS: weakref.WeakKeyDictionary[Any, _KernelCache] = weakref.WeakKeyDictionary()
_MAX_PROGRAMS = 8  # per kernel and step signature (one per outcome of the t guards)
_RESAMPLERS: dict[Any, Callable[..., Any]] = {}


def program_stats(kernel: GenerativeFunction) -> dict[str, int]:
    """How many filter-step programs were compiled for ``kernel`` (for tests)."""
    cache = _KERNELS.get(kernel)
    if cache is None:
        return {"compiled_programs": 0, "refused_signatures": 0}
    return {"compiled_programs": cache.compiled, "refused_signatures": len(cache.refused)}


def _static_kernel(plan: Any) -> str | None:
    """``None`` when the kernel qualifies (a static ``@gen`` body without ``param``)."""
    from genmlx.core import analyze
    from genmlx.core.dsl import DynamicGenerativeFunction

    if not isinstance(plan.kernel, DynamicGenerativeFunction):
        return f"the kernel {plan.kernel!r} is not a @gen function"
    try:
        g = analyze(plan.kernel, plan.analysis_args)
    except Exception as e:  # the interpreted path reports the problem
        return f"the kernel could not be analysed ({type(e).__name__}: {e})"
    if not g.is_static:
        return f"the kernel is dynamic: {g.reason}"
    if g.uses_params:
        return "the kernel reads trainable parameters (param)"
    return None


def _sig(x: mx.array) -> tuple[tuple[int, ...], Any]:
    return tuple(x.shape), x.dtype


def _resample_part(
    method: str, adaptive: bool, n: int, key: mx.array, thr: mx.array | None,
    lw: mx.array, acc: mx.array,
) -> tuple[mx.array, mx.array, mx.array]:
    """``ParticleFilterState.resample`` / ``maybe_resample`` on arrays: ``(idx, lw, acc)``."""
    idx = resample_indices(lw, method, key=key)
    lse = mx.logsumexp(lw)
    if not adaptive:
        return idx, mx.zeros((n,), dtype=lw.dtype), acc + lse - math.log(n)
    do = _ess(lw) < thr
    idx = mx.where(do, idx, mx.arange(n, dtype=idx.dtype))
    new_lw = mx.where(do, mx.zeros_like(lw), lw)
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


def _build(plan: Any, n: int, mode: tuple[str, bool] | None, carry_td: TreeDef) -> _Program:
    """Trace-on-first-call program: [pending resampling] + the step + weights."""
    guards = _Guards(plan.t)
    t_symbol: Any = _StepIndex(plan.t, guards) if plan.uses_t else plan.t
    box: dict[str, Any] = {}
    n_carry = carry_td.num_leaves
    n_in = len(plan.inputs)

    def pure(*lv: mx.array) -> list[mx.array]:
        i = 0
        head: list[mx.array] = []
        if mode is not None:
            key_r = lv[0]
            thr = lv[1] if mode[1] else None
            i = 2 if mode[1] else 1
        lw, acc, score = lv[i], lv[i + 1], lv[i + 2]
        carry_leaves = list(lv[i + 3 : i + 3 + n_carry])
        key_s = lv[i + 3 + n_carry]
        inputs = list(lv[i + 4 + n_carry : i + 4 + n_carry + n_in])
        with runtime.transforming():
            if mode is not None:
                idx, lw, acc = _resample_part(mode[0], mode[1], n, key_r, thr, lw, acc)
                carry_leaves = [mx.take(x, idx, axis=0) for x in carry_leaves]
                score = mx.take(score, idx, axis=0)
                head = [idx, acc]
            carry = unflatten(carry_td, carry_leaves)
            keys = mx.random.split(key_s, n)
            step, rest, w = plan.run(keys, carry, inputs, t_symbol)
            new_carry = plan.carry_of(step)
        out_leaves, out_td = flatten((step, rest, new_carry))
        unique, index = _unique(out_leaves)
        box["td"], box["index"] = out_td, index
        box["n_head"] = len(head)
        return [*head, lw + w, score + step.score, *unique]

    return _Program(compile_function(pure), box, guards)


def _program(plan: Any, core: _Core, mode: tuple[str, bool] | None) -> tuple[_Program, bool] | None:
    """A compiled program for ``plan`` (cached per kernel, signature and outcome of the
    ``t`` guards) and whether it is new (its first call traces it); ``None`` to use the
    interpreter."""
    if not static.auto_compile_enabled() or runtime.in_transform():
        return None
    cache = _KERNELS.get(plan.kernel)
    if cache is None:
        cache = _KERNELS[plan.kernel] = _KernelCache(plan.kernel)
    cache.valid()
    sig = _key(plan, core, mode)
    if sig in cache.refused:
        return None
    progs = cache.programs.get(sig, ())
    for p in progs:
        if p.guards.accepts(plan.t):
            return p, False
    if len(progs) >= _MAX_PROGRAMS:
        cache.refused[sig] = "too many programs (the kernel branches on t too often)"
        return None
    reason = _static_kernel(plan)
    if reason is not None:
        cache.refused[sig] = reason
        return None
    return _build(plan, core.n, mode, flatten(core.parts.carry)[1]), True


def _resampler(method: str, adaptive: bool, n: int, carry_td: TreeDef) -> Callable[..., Any]:
    """The compiled resampling alone (for a pending resampling read before a step)."""
    key = (method, adaptive, n, carry_td)
    fn = _RESAMPLERS.get(key)
    if fn is None:
        n_carry = carry_td.num_leaves

        def pure(*lv: mx.array) -> list[mx.array]:
            key_r = lv[0]
            thr = lv[1] if adaptive else None
            i = 2 if adaptive else 1
            lw, acc, score = lv[i], lv[i + 1], lv[i + 2]
            carry = lv[i + 3 : i + 3 + n_carry]
            idx, lw, acc = _resample_part(method, adaptive, n, key_r, thr, lw, acc)
            return [
                idx, lw, acc, mx.take(score, idx, axis=0),
                *(mx.take(x, idx, axis=0) for x in carry),
            ]

        fn = _RESAMPLERS[key] = compile_function(pure)
        if len(_RESAMPLERS) > 256:
            _RESAMPLERS.pop(next(iter(_RESAMPLERS)))
    return fn


# ---------------------------------------------------------------------- the state
class _Core(NamedTuple):
    """The particles as plain arrays (immutable)."""

    model: GenerativeFunction
    args: tuple[Any, ...]
    n: int
    parts: Any  # genmlx.combinators._extend.SequenceParts
    score: mx.array
    log_weights: mx.array
    log_ml_accumulated: mx.array


class _Pending(NamedTuple):
    key: mx.array
    method: str
    threshold: float | None


def _as_threshold(x: float) -> mx.array:
    return mx.array(float(x), dtype=mx.float32)


class FastParticleFilterState(ParticleFilterState):
    """A :class:`~genmlx.infer.ParticleFilterState` kept as plain arrays.

    It has the fields and methods of the base class with the same results; ``traces``
    is built from the arrays when read. Resampling is recorded and run inside the next
    step's compiled program (or when the weights are read first).
    """

    # the tuple's own items are unused placeholders: the fields are properties

    def __new__(cls, *args: Any, **kwargs: Any) -> FastParticleFilterState:
        raise TypeError(
            "FastParticleFilterState is made by particle_filter(...); build a "
            "ParticleFilterState(traces, log_weights, log_ml_accumulated) instead"
        )

    @classmethod
    def _make_fast(
        cls, core: _Core, pending: _Pending | None = None, trace: Trace | None = None
    ) -> FastParticleFilterState:
        self = tuple.__new__(cls, (None, None, None))
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_pending", pending)
        object.__setattr__(self, "_trace", trace)
        object.__setattr__(self, "_checked", False)
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
        parts = core.parts
        c_leaves, c_td = flatten(parts.carry)
        fn = _resampler(pending.method, pending.threshold is not None, core.n, c_td)
        head = [pending.key]
        if pending.threshold is not None:
            head.append(_as_threshold(pending.threshold))
        out = fn(*head, core.log_weights, core.log_ml_accumulated, core.score, *c_leaves)
        idx, lw, acc, score = out[:4]
        carry = unflatten(c_td, list(out[4:]))
        core = core._replace(
            parts=parts.take(idx, carry), score=score, log_weights=lw, log_ml_accumulated=acc
        )
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
            tr = core.parts.trace(core.model, core.args, core.score, core.n)
            object.__setattr__(self, "_trace", tr)
        else:
            self._check()
        return tr

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
        """The deferred non-finite check (one scalar read; see the module docs)."""
        if self.__dict__["_checked"] or not check_scores_enabled() or runtime.in_transform():
            return
        core = self._realised()

        def bad(a: mx.array) -> mx.array:
            return mx.any(mx.logical_or(mx.isnan(a), a == mx.inf))

        flag = mx.logical_or(
            mx.logical_or(bad(core.score), bad(core.log_weights)), bad(core.log_ml_accumulated)
        )
        if flag.item():
            where = "the weights"
            for t, (tr, _) in enumerate(core.parts.entries):
                hit = next(
                    (
                        p
                        for p, s in tr.site_scores()
                        if mx.any(mx.logical_or(mx.isnan(s), s == mx.inf)).item()
                    ),
                    None,
                )
                if hit is not None:
                    from genmlx.core.address import format_address

                    where = f"step {t}, the choice at address {format_address((t, *hit))}"
                    break
            raise NonFiniteScoreError(
                f"particle filter on {core.model!r}: non-finite log density at {where} "
                "(found when the filter's results were read: the compiled filter checks "
                "scores once, not at every step). Check that the distributions' "
                "parameters are valid and the observations lie in their support; "
                "config.score_checks(False) disables this check."
            )
        object.__setattr__(self, "_checked", True)

    def ess(self) -> mx.array:
        """Kish effective sample size ``1 / Σ_i w̄_i²`` (between 1 and ``N``)."""
        self._check()
        return super().ess()

    def log_ml_estimate(self) -> mx.array:
        """``log Ẑ = log Ẑ_acc + logsumexp_i(log w_i) - log N`` (see the base class)."""
        self._check()
        return super().log_ml_estimate()

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
        return (ParticleFilterState, tuple(self.plain()))

    def __repr__(self) -> str:
        core = self.__dict__["_core"]
        pend = "" if self.__dict__["_pending"] is None else ", resampling pending"
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
        key = resolve_key(key)
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
        return self._pend(method, None, key)

    def maybe_resample(
        self, ess_threshold: float, method: str = "systematic", *, key: Key = None
    ) -> ParticleFilterState:
        """See :meth:`genmlx.infer.ParticleFilterState.maybe_resample` (same results)."""
        if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)):
            raise TypeError(
                f"maybe_resample: ess_threshold must be a number, got {ess_threshold!r}"
            )
        return self._pend(method, float(ess_threshold), key)

    def _pend(self, method: str, threshold: float | None, key: Key) -> ParticleFilterState:
        if method not in RESAMPLING_METHODS:
            raise ValueError(
                f"resample: unknown method {method!r}; choose one of "
                f"{', '.join(RESAMPLING_METHODS)}"
            )
        key = resolve_key(key)
        core = self._realised()  # a second resampling in a row runs the first now
        return FastParticleFilterState._make_fast(core, _Pending(key, method, threshold))


# ---------------------------------------------------------------------- entry points
def _again(state: ParticleFilterState) -> ParticleFilterState:
    """``state`` back on the compiled path when its model has one."""
    fast = from_trace(state.traces, state.log_weights, state.log_ml_accumulated)
    return state if fast is None else fast


def from_trace(
    trace: Trace, log_weights: mx.array, log_ml_accumulated: mx.array
) -> FastParticleFilterState | None:
    """The compiled-path state of a batched trace of a sequence model (``None`` when the
    model has no compiled path or the fast path is off)."""
    if not static.auto_compile_enabled() or runtime.in_transform():
        return None
    model = trace.gen_fn
    parts_of = getattr(model, "particle_parts", None)
    if parts_of is None or len(trace.batch_shape) != 1:
        return None
    parts = parts_of(trace)
    if parts is None:
        return None
    core = _Core(
        model, tuple(trace.args), int(trace.batch_shape[0]), parts, trace.score,
        log_weights, log_ml_accumulated,
    )
    return FastParticleFilterState._make_fast(core, None, trace)


def _step(
    state: FastParticleFilterState,
    new_args: tuple[Any, ...],
    obs: ChoiceMap,
    argdiffs: tuple[Diff, ...] | None,
    key: mx.array,
) -> FastParticleFilterState | None:
    core: _Core = state.__dict__["_core"]
    pending: _Pending | None = state.__dict__["_pending"]
    model = core.model
    planner = getattr(model, "plan_particle_step", None)
    if planner is None:
        return None
    if argdiffs is None:
        argdiffs = diff_args(core.args, new_args)
    plan = planner(core.args, new_args, tuple(argdiffs), obs, core.parts.carry)
    if plan is None:
        return None
    mode = None if pending is None else (pending.method, pending.threshold is not None)
    lw, acc, score = core.log_weights, core.log_ml_accumulated, core.score
    found = _program(plan, core, mode)
    if found is None:
        return None
    prog, new = found
    c_leaves, c_td = flatten(core.parts.carry)
    head: list[mx.array] = []
    if pending is not None:
        head.append(pending.key)
        if pending.threshold is not None:
            head.append(_as_threshold(pending.threshold))
    inputs = [*head, lw, acc, score, *c_leaves, key, *plan.inputs]
    if new:
        try:
            out = prog.fn(*inputs)
        except Exception as e:  # the interpreted path runs (and reports) it
            _refuse(plan, core, mode, f"{type(e).__name__}: {e}")
            return None
        td = prog.box["td"]
        if prog.guards.specific or _mentions_step_index(td):
            # the body used t beyond comparisons: no program serves every step
            _refuse(plan, core, mode, "the kernel uses the step index t beyond comparisons")
            if _mentions_step_index(td):
                return None
        else:
            _store(plan, core, mode, prog)
    else:
        out = prog.fn(*inputs)
    n_head = prog.box["n_head"]
    if pending is not None:
        idx, acc = out[0], out[1]
        parts = core.parts.take(idx, None)
    else:
        parts = core.parts
    new_lw, new_score = out[n_head], out[n_head + 1]
    unique = out[n_head + 2 :]
    leaves = [unique[j] for j in prog.box["index"]]
    step, rest, new_carry = unflatten(prog.box["td"], leaves)
    step_trace = plan.finish(step, rest)
    parts = parts.extend(step_trace, new_carry)
    new_core = _Core(model, plan.args, core.n, parts, new_score, new_lw, acc)
    return FastParticleFilterState._make_fast(new_core)


def _key(plan: Any, core: _Core, mode: Any) -> Any:
    c_leaves, c_td = flatten(core.parts.carry)
    return (
        plan.signature,
        core.n,
        mode,
        c_td,
        tuple(_sig(x) for x in c_leaves),
        tuple(_sig(x) for x in (core.log_weights, core.log_ml_accumulated, core.score)),
    )


def _refuse(plan: Any, core: _Core, mode: Any, reason: str) -> None:
    cache = _KERNELS[plan.kernel]
    cache.refused[_key(plan, core, mode)] = reason


def _store(plan: Any, core: _Core, mode: Any, prog: _Program) -> None:
    cache = _KERNELS[plan.kernel]
    cache.programs.setdefault(_key(plan, core, mode), []).append(prog)
    cache.compiled += 1
