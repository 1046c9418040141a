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

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.diff import Diff
from genmlx.core.gfi import (
    AssessResult,
    EditResult,
    GenerateResult,
    GenerativeFunction,
    RegenerateResult,
    UpdateResult,
    _batched_constraints,
    _check_finite,
)
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.core.tree import TreeDef, flatten, unflatten

__all__ = [
    "rebatch",
    "vassess",
    "vedit",
    "vgenerate",
    "vmap_call",
    "vproject",
    "vregenerate",
    "vsimulate",
    "vupdate",
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


def vmap_call(
    fn: Callable[..., Any], n: int, batched: tuple[Any, ...], shared: tuple[Any, ...]
) -> Any:
    """Run ``fn(*batched, *shared)`` once for ``n`` particles under ``mx.vmap``.

    Leaves of ``batched`` have a leading particle axis; leaves of ``shared`` are common to
    all particles except those inside batched traces / choice maps. Inside ``fn`` every
    trace and choice map is unbatched; the result's traces and choice maps come back
    with ``batch_shape == (n,)``.
    """
    b_leaves, b_td = flatten(batched)
    s_leaves, s_td = flatten(shared)
    axes: list[int | None] = [0] * len(b_leaves)
    _axes(s_td, False, axes)
    b_inner, s_inner = rebatch(b_td, ()), rebatch(s_td, ())
    nb = len(b_leaves)
    box: dict[str, Any] = {}

    def inner(*leaves: mx.array) -> list[mx.array]:
        b = unflatten(b_inner, list(leaves[:nb]))
        s = unflatten(s_inner, list(leaves[nb:]))
        with runtime.operation():
            out = fn(*b, *s)
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

    with runtime.transforming():
        unique_out = mx.vmap(inner, in_axes=tuple(axes))(*b_leaves, *s_leaves)
    out_leaves = [unique_out[j] for j in box["index"]]
    return unflatten(rebatch(box["td"], (n,)), out_leaves)


def _keys(key: mx.array, n: int) -> mx.array:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of particles must be a positive int, got {n!r}")
    return mx.random.split(key, n)


def _strip(tr: Trace) -> Trace:
    return tr._replace(args=())


def _finish_trace(tr: Trace, args: tuple[Any, ...]) -> Trace:
    return tr._replace(args=args)


def vsimulate(gf: GenerativeFunction, args: tuple[Any, ...], n: int, key: mx.array) -> Trace:
    """Batched ``simulate``: see :meth:`GenerativeFunction.vsimulate`."""
    keys = _keys(key, n)
    with runtime.operation() as top:
        tr = vmap_call(lambda k, a: _strip(gf._simulate(a, k)), n, (keys,), (args,))
    tr = _finish_trace(tr, args)
    if top:
        _check_finite("vsimulate", gf, tr, None, allow_neg_inf=False)
    return tr


def vgenerate(
    gf: GenerativeFunction,
    args: tuple[Any, ...],
    constraints: ChoiceMap,
    n: int,
    key: mx.array,
) -> GenerateResult:
    """Batched ``generate``: see :meth:`GenerativeFunction.vgenerate`."""
    keys = _keys(key, n)
    _batched_constraints(constraints, n, "vgenerate")

    def one(k: mx.array, a: tuple[Any, ...], c: ChoiceMap) -> tuple[Trace, mx.array]:
        tr, w = gf._generate(a, c, k)
        return _strip(tr), w

    with runtime.operation() as top:
        tr, w = vmap_call(one, n, (keys,), (args, constraints))
    tr = _finish_trace(tr, args)
    if top:
        _check_finite("vgenerate", gf, tr, w)
    return GenerateResult(tr, w)


def vassess(gf: GenerativeFunction, args: tuple[Any, ...], choices: ChoiceMap) -> AssessResult:
    """Batched ``assess`` of a batched choice map: log densities of shape ``[n]``."""
    n = choices.batch_shape[0]
    with runtime.operation() as top:
        ld, rv = vmap_call(lambda c, a: tuple(gf._assess(a, c)), n, (), (choices, args))
    if top:
        _check_finite("assess", gf, None, ld)
    return AssessResult(ld, rv)


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
    keys = _keys(key, n)
    _batched_constraints(constraints, n, "update")
    old_args = trace.args

    def one(k: mx.array, t: Trace, c: ChoiceMap, oa: tuple[Any, ...], a: tuple[Any, ...]) -> Any:
        res = gf._update(t._replace(args=oa), c, a, argdiffs, k)
        return res._replace(trace=_strip(res.trace))

    with runtime.operation() as top:
        res = vmap_call(one, n, (keys, _strip(trace)), (constraints, old_args, args))
    res = res._replace(trace=_finish_trace(res.trace, args))
    if top:
        _check_finite("update", gf, res.trace, res.weight)
    return UpdateResult(*res)


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
    keys = _keys(key, n)
    old_args = trace.args

    def one(k: mx.array, t: Trace, oa: tuple[Any, ...], a: tuple[Any, ...]) -> Any:
        res = gf._regenerate(t._replace(args=oa), selection, a, argdiffs, k)
        return res._replace(trace=_strip(res.trace))

    with runtime.operation() as top:
        res = vmap_call(one, n, (keys, _strip(trace)), (old_args, args))
    res = res._replace(trace=_finish_trace(res.trace, args))
    if top:
        _check_finite("regenerate", gf, res.trace, res.weight)
    return RegenerateResult(*res)


def vproject(gf: GenerativeFunction, trace: Trace, selection: Selection) -> mx.array:
    """Batched ``project``: ``[n]`` sums of the selected log densities."""
    n = trace.batch_shape[0]
    args = trace.args
    with runtime.operation():
        out: mx.array = vmap_call(
            lambda t, a: gf._project(t._replace(args=a), selection), n, (_strip(trace),), (args,)
        )
    return out


def vedit(gf: GenerativeFunction, trace: Trace, request: Any, key: mx.array) -> EditResult:
    """Batched ``edit``: the request is shared unless it holds batched choice maps."""
    n = trace.batch_shape[0]
    keys = _keys(key, n)
    old_args = trace.args

    def one(k: mx.array, t: Trace, r: Any, oa: tuple[Any, ...]) -> Any:
        res = gf._edit(t._replace(args=oa), r, k)
        return res._replace(trace=_strip(res.trace))

    with runtime.operation() as top:
        res = vmap_call(one, n, (keys, _strip(trace)), (request, old_args))
    new_args = request.new_args(old_args)
    res = res._replace(trace=_finish_trace(res.trace, new_args))
    if top:
        _check_finite("edit", gf, res.trace, res.weight)
    return EditResult(*res)
