"""Shape-based batching: ``n`` particles through one execution of the model body.

Every batched operation runs the *unbatched* GFI operation once under ``mx.vmap``:
the body executes a single time, each traced site draws an ``[n, ...]`` sample (each
particle from its own key, ``mx.random.split(key, n)[i]``), and scores come out with
shape ``[n]``. Sub-calls, combinators and parameters are batched along with the body,
because they run inside the same vmapped computation.

Model code is written for one particle (``slope * xs`` with a scalar ``slope``): there
is no broadcasting ambiguity between the particle axis and the model's own axes, and
particle ``i`` of a batched run equals the unbatched run with key ``i`` — which is how
the tests check batching.

What gets a particle axis:

* the keys (one per particle), batched traces (``trace.batch_shape == (n,)``) and
  batched choice maps (``cm.batch_shape == (n,)``) — axis 0 is the particle;
* arguments, selections and unbatched choice maps are shared by every particle.

A Python branch on a random value cannot run once for all particles; it raises
:class:`~genmlx.core.errors.BatchedControlFlowError` pointing to ``mx.where`` and the
``Switch``/``Mask`` combinators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from genmlx.core import fused, presample, rewrites, runtime, static
from genmlx.core.checks import batched_constraints, check_finite
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff
from genmlx.core.memory import check_batch_memory
from genmlx.core.results import (
    AssessResult,
    EditResult,
    GenerateResult,
    RegenerateResult,
    UpdateResult,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.core.tree import TreeDef, flatten, opaque_nodes, replace_opaque, unflatten

if TYPE_CHECKING:
    from genmlx.core.gfi import GenerativeFunction

__all__ = [
    "particle_index",
    "rebatch",
    "take_particles",
    "vassess",
    "vedit",
    "vgenerate",
    "vmap_call",
    "vmap_traces",
    "vproject",
    "vregenerate",
    "vsimulate",
    "vupdate",
    "where_particles",
]


def rebatch(td: TreeDef, batch_shape: tuple[int, ...]) -> TreeDef:
    """The TreeDef with every trace's and choice map's batch shape set to ``batch_shape``."""
    if not td.children and td.kind != "custom":
        return td
    children = tuple(rebatch(c, batch_shape) for c in td.children)
    aux = td.aux
    if td.kind == "custom":
        cls, inner = aux
        rb = getattr(cls, "_tree_rebatch", None)
        if rb is not None:
            aux = (cls, rb(inner, batch_shape))
    return TreeDef(td.kind, aux, children)


def _axes(td: TreeDef, batched: bool, out: list[int | None]) -> None:
    if td.kind == "leaf":
        out.append(0 if batched else None)
        return
    if td.kind == "custom":
        cls, inner = td.aux
        if getattr(cls, "_tree_rebatch", None) is not None and isinstance(inner, tuple):
            batched = batched or bool(inner[0])
    for c in td.children:
        _axes(c, batched, out)


_PARTICLE: ContextVar[dict[int, tuple[object, mx.array]] | None] = ContextVar(
    "genmlx_particle_index", default=None
)


def particle_index(key: object) -> mx.array | None:
    """The current particle's index for opaque data registered under ``key``.

    Inside :func:`vmap_call`, every :class:`~genmlx.core.tree.Opaque` object among the
    batched inputs is registered with the particle index (a scalar that ``mx.vmap``
    batches as ``arange(n)``), so the object can read its own particle's values with a
    gather (``x[particle_index(key)]``). Outside that call it returns ``None`` and the
    object's values are the whole particle batch.
    """
    hit = (_PARTICLE.get() or {}).get(id(key))
    return None if hit is None else hit[1]


@contextmanager
def _registered(keys: list[object], pid: mx.array) -> Iterator[None]:
    table = dict(_PARTICLE.get() or {})
    for k in keys:
        table[id(k)] = (k, pid)  # the key object is held, so its id stays unique
    token = _PARTICLE.set(table)
    try:
        yield
    finally:
        _PARTICLE.reset(token)


def vmap_call(
    fn: Callable[..., Any],
    n: int,
    batched: tuple[Any, ...],
    shared: tuple[Any, ...],
    *,
    strip_trace_args: bool = False,
) -> Any:
    """Run ``fn(*batched, *shared)`` once for ``n`` particles under ``mx.vmap``.

    Leaves of ``batched`` have a leading particle axis; leaves of ``shared`` are common to
    all particles except those inside batched traces / choice maps. Inside ``fn`` every
    trace and choice map is unbatched; the result's traces and choice maps come back
    with ``batch_shape == (n,)``.

    With ``strip_trace_args=True`` the traces ``fn`` returns (directly, or as elements of
    returned tuples and NamedTuples) come back with ``args=()``: their arguments are not
    particle data and would otherwise be stacked ``n`` times. The caller puts the right
    arguments back (:func:`vmap_traces` does).

    The batched inputs are flattened with ``freeze=True``: parts of batched traces kept
    as :class:`~genmlx.core.tree.Opaque` objects do not go through ``mx.vmap``; inside
    ``fn`` they read their particle's values through :func:`particle_index`, and when
    ``fn`` returns them unchanged they come back as they were, at no cost.
    """
    all_b, b_td = flatten(batched, freeze=True)
    s_leaves, s_td = flatten(shared)
    # Each distinct batched array goes in once, so that an array held in two places
    # (a choice value that is also a sub-call's argument) is one object inside fn too:
    # identity-based argdiffs then see it unchanged.
    slot: dict[int, int] = {}
    b_leaves: list[mx.array] = []
    b_index = []
    for x in all_b:
        j = slot.setdefault(id(x), len(b_leaves))
        if j == len(b_leaves):
            b_leaves.append(x)
        b_index.append(j)
    keys = [o._opaque_key for o in opaque_nodes(b_td)]
    if keys:  # the particle index rides along as one more batched input
        b_leaves.append(mx.arange(n, dtype=mx.int32))
    axes: list[int | None] = [0] * len(b_leaves)
    _axes(s_td, False, axes)
    b_inner, s_inner = rebatch(b_td, ()), rebatch(s_td, ())
    nb = len(b_leaves)
    box: dict[str, Any] = {}

    def inner(*leaves: mx.array) -> list[mx.array]:
        b = unflatten(b_inner, [leaves[j] for j in b_index])
        s = unflatten(s_inner, list(leaves[nb:]))
        ctx = _registered(keys, leaves[nb - 1]) if keys else nullcontext()
        with ctx:
            with runtime.operation():
                out = fn(*b, *s)
            if strip_trace_args:
                out = map_traces(lambda t: t._replace(args=()), out)
            # inside the registration, so opaque data fn passed through stays opaque
            out_leaves, out_td = flatten(out)
        # Return each distinct array once: MLX's vmap leaves the batch axis in place
        # for the second occurrence of an output array (e.g. a choice that is also
        # the return value), so repeated outputs are rebuilt from one copy.
        first: dict[int, int] = {}
        unique: list[mx.array] = []
        index = []
        for x in out_leaves:
            j = first.setdefault(id(x), len(unique))
            if j == len(unique):
                unique.append(x)
            index.append(j)
        box["td"], box["index"] = out_td, index
        return unique

    with runtime.transforming(), fused.vmap_level():
        unique_out = mx.vmap(inner, in_axes=tuple(axes))(*b_leaves, *s_leaves)
    out_leaves = [unique_out[j] for j in box["index"]]
    return unflatten(rebatch(box["td"], (n,)), out_leaves)


def map_traces(f: Callable[[Trace], Trace], out: Any) -> Any:
    """``out`` with ``f`` applied to every trace in it: ``out`` itself, or the elements of
    tuples, lists and NamedTuples (recursively). Other values are returned as they are.

    Example:
        >>> from genmlx.core.testing.models import normal
        >>> import mlx.core as mx
        >>> tr = normal.simulate((0.0, 1.0), key=mx.random.key(0))
        >>> out = map_traces(lambda t: t._replace(args=()), (tr, 1))
        >>> out[0].args, out[1]
        ((), 1)
    """
    if isinstance(out, Trace):
        return f(out)
    if isinstance(out, tuple):
        items = [map_traces(f, x) for x in out]
        return type(out)(*items) if hasattr(type(out), "_fields") else tuple(items)
    if isinstance(out, list):
        return [map_traces(f, x) for x in out]
    return out


def vmap_traces(
    fn: Callable[..., Any],
    traces: Trace,
    shared: tuple[Any, ...] = (),
    *,
    key: mx.array | None = None,
    keys: mx.array | None = None,
    result_args: tuple[Any, ...] | None = None,
) -> Any:
    """Run a per-trace function on every chain (or particle) of a batched trace at once.

    ``fn(key_i, trace_i, *shared)`` is written for one unbatched trace (with its
    arguments). On a single trace it is called as it is (with ``key``); on a trace with
    ``batch_shape == (n,)`` it runs once under ``mx.vmap`` (:func:`vmap_call`), chain
    ``i`` with ``keys[i]`` (default ``mx.random.split(key, n)[i]``), so chain ``i`` of
    the batched call equals the single-trace call with that key. This is the one way
    inference kernels, particle moves and combinators map over many traces.

    Traces in the result (directly, or in returned tuples and NamedTuples) come back
    batched, with the input's arguments (or ``result_args``, for a move that changes
    them, like an SMC step). Other outputs get a leading ``[n]`` axis.

    Args:
        fn: ``fn(key, trace, *shared) -> result``.
        traces: a single trace or a batch of traces (``batch_shape`` ``()`` or ``(n,)``).
        shared: extra arguments common to all chains (selections, proposals, ...).
        key: the key (split into one per chain for a batched trace).
        keys: ``[n, 2]`` per-chain keys instead of splitting ``key``.
        result_args: the arguments of the traces in the result (default: ``traces.args``).

    Returns:
        ``fn``'s result, batched over the chains.

    Raises:
        ValueError: the trace has more than one batch axis.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core.testing.models import normal
        >>> from genmlx.core import gen, select
        >>> @gen
        ... def m():
        ...     normal(0.0, 1.0) @ "x"
        >>> tr = m.vsimulate((), 4, key=mx.random.key(0))
        >>> def move(k, t):
        ...     new, w, _ = t.regenerate(select("x"), key=k)
        ...     return new, w
        >>> new, w = vmap_traces(move, tr, key=mx.random.key(1))
        >>> new.batch_shape, w.shape
        ((4,), (4,))
    """
    if not traces.batch_shape:
        return fn(key if keys is None else keys, traces, *shared)
    if len(traces.batch_shape) != 1:
        raise ValueError(
            f"vmap_traces needs a trace with batch_shape () or (n,), got {traces.batch_shape}"
        )
    n = traces.batch_shape[0]
    if keys is None:
        keys = mx.random.split(_need(key), n)
    args = traces.args
    out_args = args if result_args is None else result_args

    def one(k: mx.array, t: Trace, a: tuple[Any, ...], *s: Any) -> Any:
        return fn(k, t._replace(args=a), *s)

    with runtime.operation():
        out = vmap_call(
            one, n, (keys, traces._replace(args=())), (args, *shared), strip_trace_args=True
        )
    return map_traces(lambda t: t._replace(args=out_args), out)


def take_particles(tree: Any, idx: mx.array) -> Any:
    """Particles ``idx`` of a batched tree (traces, choice maps, arrays): axis 0 gathered.

    ``idx`` is a scalar (one particle: the result is unbatched) or ``[k]`` (``k``
    particles). :class:`~genmlx.core.tree.Opaque` parts gather lazily (their
    ``_opaque_take``), so resampling a long sequence trace costs no more than its
    recent steps. A trace's arguments are shared by its particles and kept as they are.
    """
    if isinstance(tree, Trace):
        return _take(tree._replace(args=()), idx)._replace(args=tree.args)
    return _take(tree, idx)


def _take(tree: Any, idx: mx.array) -> Any:
    if idx.ndim == 0:  # one particle: opaque parts are materialised through the gather
        leaves, td = flatten(tree)
    else:
        leaves, td = flatten(tree, freeze=True)
        td = replace_opaque(td, lambda o: o._opaque_take(idx))
    return unflatten(
        rebatch(td, tuple(idx.shape)), _per_array(lambda x: mx.take(x, idx, axis=0), leaves)
    )


def _per_array(fn: Callable[..., mx.array], *columns: list[mx.array]) -> list[mx.array]:
    """``fn`` applied position by position, once per distinct input (identity is kept:
    an array held in two places of a trace stays one array)."""
    memo: dict[tuple[int, ...], mx.array] = {}
    out = []
    for xs in zip(*columns):
        k = tuple(map(id, xs))
        y = memo.get(k)
        if y is None:
            y = memo[k] = fn(*xs)
        out.append(y)
    return out


def where_particles(mask: mx.array, new: Any, old: Any) -> Any | None:
    """Per particle, ``new`` where ``mask`` else ``old`` (two batched trees, ``mask`` ``[n]``).

    Both trees must have the same structure; opaque parts must be the same objects
    (what a kernel leaves untouched). Returns ``None`` when the structures differ.
    Traces keep ``new``'s arguments (shared by the particles).
    """
    if isinstance(new, Trace) and isinstance(old, Trace):
        out = _where(mask, new._replace(args=()), old._replace(args=()))
        return None if out is None else out._replace(args=new.args)
    return _where(mask, new, old)


def _where(mask: mx.array, new: Any, old: Any) -> Any | None:
    ln, tdn = flatten(new, freeze=True)
    lo, tdo = flatten(old, freeze=True)
    if tdn != tdo or len(ln) != len(lo):
        ln, tdn = flatten(new, thaw=True)  # opaque parts differ: compare everything
        lo, tdo = flatten(old, thaw=True)
        if tdn != tdo or len(ln) != len(lo):
            return None

    def select(a: mx.array, b: mx.array) -> mx.array:
        if a is b:
            return a
        m = mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)) if a.ndim > mask.ndim else mask
        return mx.where(m, a, b)

    return unflatten(tdn, _per_array(select, ln, lo))


_NO_KEY = mx.array([0, 0], dtype=mx.uint32)  # for per-trace functions that draw nothing


def _keys(key: mx.array | None, n: int) -> mx.array:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of particles must be a positive int, got {n!r}")
    if key is None:
        raise ValueError("a batched operation needs a key (or keys=)")
    return mx.random.split(key, n)


def _need(key: mx.array | None) -> mx.array:
    if key is None:
        raise ValueError("a batched operation needs a key (or keys=)")
    return key


def _strip(tr: Trace) -> Trace:
    return tr._replace(args=())


def _finish_trace(tr: Trace, args: tuple[Any, ...]) -> Trace:
    return tr._replace(args=args)


def _vsimulate_core(
    gf: GenerativeFunction,
    args: tuple[Any, ...],
    n: int,
    key: mx.array | None,
    keys: mx.array | None,
    pre: presample.Presample | None = None,
) -> Trace:
    ks = keys if keys is not None else mx.random.split(_need(key), n)
    if pre is not None:
        base, z = presample.draw(pre, key, keys, n)

        def one_pre(k: mx.array, b: mx.array, zz: mx.array, a: tuple[Any, ...]) -> Trace:
            with presample.pending(b, presample._Rows(zz, pre.plan)):
                return gf._simulate(a, k)

        pout: Trace = vmap_call(one_pre, n, (ks, base, z), (args,), strip_trace_args=True)
        return pout
    out: Trace = vmap_call(
        lambda k, a: gf._simulate(a, k), n, (ks,), (args,), strip_trace_args=True
    )
    return out


def vsimulate(
    gf: GenerativeFunction,
    args: tuple[Any, ...],
    n: int,
    key: mx.array | None,
    *,
    keys: mx.array | None = None,
) -> Trace:
    """Batched ``simulate``: see :meth:`GenerativeFunction.vsimulate`.

    ``keys`` (``[n, 2]``) gives the particles' keys directly instead of
    ``mx.random.split(key, n)`` (so that a run split into chunks draws exactly what
    one run would).
    """
    if keys is None:
        _keys(key, n)  # validates n
    with runtime.operation() as top:
        pre = presample.prepare(gf, "vsimulate", args) if top else None
        tr = static.run(gf, "vsimulate", _vsimulate_core, (gf, args, n, key, keys, pre), args)
    tr = _finish_trace(tr, args)
    probe_key = key if keys is None else keys[0]
    check_batch_memory("vsimulate", repr(gf), n, tr, lambda m: vsimulate(gf, args, m, probe_key))
    if top:
        check_finite("vsimulate", gf, tr, None, allow_neg_inf=False)
    return tr


def _vgenerate_core(
    gf: GenerativeFunction,
    args: tuple[Any, ...],
    constraints: ChoiceMap,
    n: int,
    key: mx.array | None,
    keys: mx.array | None,
    prepared: Any = None,
    pre: presample.Presample | None = None,
) -> tuple[Trace, mx.array]:
    ks = keys if keys is not None else mx.random.split(_need(key), n)

    def one(k: mx.array, a: tuple[Any, ...], c: ChoiceMap) -> tuple[Trace, mx.array]:
        tr, w = gf._generate(a, c, k)
        return tr, w

    with rewrites.active(prepared):
        if pre is not None:
            base, z = presample.draw(pre, key, keys, n)

            def one_pre(
                k: mx.array, b: mx.array, zz: mx.array, a: tuple[Any, ...], c: ChoiceMap
            ) -> tuple[Trace, mx.array]:
                with presample.pending(b, presample._Rows(zz, pre.plan)):
                    tr, w = gf._generate(a, c, k)
                return tr, w

            pres: tuple[Trace, mx.array] = vmap_call(
                one_pre, n, (ks, base, z), (args, constraints), strip_trace_args=True
            )
            return pres
        res: tuple[Trace, mx.array] = vmap_call(
            one, n, (ks,), (args, constraints), strip_trace_args=True
        )
    return res


def vgenerate(
    gf: GenerativeFunction,
    args: tuple[Any, ...],
    constraints: ChoiceMap,
    n: int,
    key: mx.array | None,
    *,
    keys: mx.array | None = None,
) -> GenerateResult:
    """Batched ``generate``: see :meth:`GenerativeFunction.vgenerate`; ``keys`` as for
    :func:`vsimulate`."""
    if keys is None:
        _keys(key, n)  # validates n
    batched_constraints(constraints, n, "vgenerate")
    prepared = rewrites.prepare(gf, args, constraints)
    with runtime.operation() as top:
        pre = presample.prepare(gf, "vgenerate", args, constraints) if top else None
        tr, w = static.run(
            gf,
            "vgenerate",
            _vgenerate_core,
            (gf, args, constraints, n, key, keys, prepared, pre),
            args,
        )
    tr = _finish_trace(tr, args)
    probe_key = key if keys is None else keys[0]
    check_batch_memory(
        "vgenerate",
        repr(gf),
        n,
        (tr, w),
        None
        if constraints.batch_shape
        else lambda m: vgenerate(gf, args, constraints, m, probe_key),
    )
    if top:
        check_finite("vgenerate", gf, tr, w)
    return GenerateResult(tr, w)


def _vassess_core(
    gf: GenerativeFunction, args: tuple[Any, ...], choices: ChoiceMap, n: int
) -> Any:
    return vmap_call(lambda c, a: tuple(gf._assess(a, c)), n, (), (choices, args))


def vassess(gf: GenerativeFunction, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
    """Batched ``assess`` of a batched choice map: log densities of shape ``[n]``."""
    n = choices.batch_shape[0]
    with runtime.operation() as top:
        ld, rv = static.run(gf, "vassess", _vassess_core, (gf, args, choices, n), args)
    if top:
        check_finite("assess", gf, None, ld)
    return AssessResult(ld, rv)


def _vupdate_core(
    gf: GenerativeFunction,
    stripped: Trace,
    constraints: ChoiceMap,
    old_args: tuple[Any, ...],
    args: tuple[Any, ...],
    argdiffs: tuple[Diff, ...],
    n: int,
    key: mx.array,
) -> Any:
    keys = mx.random.split(key, n)

    def one(k: mx.array, t: Trace, c: ChoiceMap, oa: tuple[Any, ...], a: tuple[Any, ...]) -> Any:
        return gf._update(t._replace(args=oa), c, a, argdiffs, k)

    return vmap_call(
        one, n, (keys, stripped), (constraints, old_args, args), strip_trace_args=True
    )


def vupdate(
    gf: GenerativeFunction,
    trace: Trace,
    constraints: ChoiceMap,
    args: tuple[Any, ...],
    argdiffs: tuple[Diff, ...],
    key: mx.array,
) -> UpdateResult:
    """Batched ``update``: each particle updated on its own; weights of shape ``[n]``."""
    n = trace.batch_shape[0]
    _keys(key, n)
    batched_constraints(constraints, n, "update")
    with runtime.operation() as top:
        res = static.run(
            gf,
            "vupdate",
            _vupdate_core,
            (gf, _strip(trace), constraints, trace.args, args, argdiffs, n, key),
            args,
        )
    res = res._replace(trace=_finish_trace(res.trace, args))
    if top:
        check_finite("update", gf, res.trace, res.weight)
    return UpdateResult(*res)


def _vregenerate_core(
    gf: GenerativeFunction,
    stripped: Trace,
    selection: Selection,
    old_args: tuple[Any, ...],
    args: tuple[Any, ...],
    argdiffs: tuple[Diff, ...],
    n: int,
    key: mx.array,
) -> Any:
    keys = mx.random.split(key, n)

    def one(k: mx.array, t: Trace, oa: tuple[Any, ...], a: tuple[Any, ...]) -> Any:
        return gf._regenerate(t._replace(args=oa), selection, a, argdiffs, k)

    return vmap_call(one, n, (keys, stripped), (old_args, args), strip_trace_args=True)


def vregenerate(
    gf: GenerativeFunction,
    trace: Trace,
    selection: Selection,
    args: tuple[Any, ...],
    argdiffs: tuple[Diff, ...],
    key: mx.array,
) -> RegenerateResult:
    """Batched ``regenerate``: each particle resampled on its own; weights ``[n]``."""
    n = trace.batch_shape[0]
    _keys(key, n)
    with runtime.operation() as top:
        res = static.run(
            gf,
            "vregenerate",
            _vregenerate_core,
            (gf, _strip(trace), selection, trace.args, args, argdiffs, n, key),
            args,
        )
    res = res._replace(trace=_finish_trace(res.trace, args))
    if top:
        check_finite("regenerate", gf, res.trace, res.weight)
    return RegenerateResult(*res)


def vproject(gf: GenerativeFunction, trace: Trace, selection: Selection) -> mx.array:
    """Batched ``project``: ``[n]`` sums of the selected log densities."""
    out: mx.array = vmap_traces(lambda _, t: gf._project(t, selection), trace, key=_NO_KEY)
    return out


def vedit(gf: GenerativeFunction, trace: Trace, request: Any, key: mx.array) -> EditResult:
    """Batched ``edit``: the request is shared unless it holds batched choice maps."""
    keys = _keys(key, trace.batch_shape[0])
    new_args = request.new_args(trace.args)
    with runtime.operation() as top:
        res = vmap_traces(
            lambda k, t, r: gf._edit(t, r, k), trace, (request,), keys=keys, result_args=new_args
        )
    if top:
        check_finite("edit", gf, res.trace, res.weight)
    return EditResult(*res)
