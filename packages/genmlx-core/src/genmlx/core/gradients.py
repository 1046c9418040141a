"""Gradients of a trace's log density w.r.t. its choices and parameters, via ``mx.grad``.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, select, choice_gradients
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def m():
    ...     normal(0.0, 1.0) @ "x"
    >>> tr, _ = m.generate((), choicemap({"x": 2.0}), key=mx.random.key(0))
    >>> float(choice_gradients(tr, select("x"))["x"])    # d/dx log N(x; 0, 1) = -x
    -2.0
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import format_address
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.params import ParamStore, use_params
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace

__all__ = ["choice_gradients", "param_gradients"]


def choice_gradients(trace: Trace, selection: Selection) -> ChoiceMap:
    """``∇ log p(t; args)`` w.r.t. the selected choices, as a choice map.

    For a batched trace each particle's gradient is w.r.t. its own log density.

    Raises:
        TypeError: a selected choice is not floating point (discrete choices have no
            gradient; leave them out of the selection).
    """
    choices = trace.get_choices()
    selected = choices.filter(selection)
    rest = choices.exclude(selection)
    paths = [p for p, _ in selected.leaves()]
    values = [v for _, v in selected.leaves()]
    for p, v in zip(paths, values):
        if not mx.issubdtype(v.dtype, mx.floating):
            raise TypeError(
                f"choice_gradients: the choice at {format_address(p)} has dtype {v.dtype}; "
                "only continuous (floating) choices have gradients — deselect it"
            )
    gf, args, batch = trace.gen_fn, trace.args, trace.batch_shape
    if not paths:
        return ChoiceMap(None, None, batch)

    def logp(vals: list[mx.array]) -> mx.array:
        cm = rest
        for p, v in zip(paths, vals):
            cm = cm._set(p, ChoiceMap(v))
        ld, _ = gf.assess(args, cm.with_batch_shape(batch))
        return mx.sum(ld)

    with runtime.transforming():
        grads = mx.grad(logp)(values)
    out = ChoiceMap(None, None, batch)
    for p, g in zip(paths, grads):
        out = out._set(p, ChoiceMap(g))
    return out


def param_gradients(trace: Trace, store: ParamStore) -> dict[str, mx.array]:
    """``∇ log p(t; args, θ)`` w.r.t. every parameter ``θ`` in ``store``.

    The trace's choices are held fixed and re-scored with the store's values; the sum
    over particles is differentiated for a batched trace. Parameters the model does
    not read get zero gradients.
    """
    names = list(store)
    if not names:
        return {}
    choices = trace.get_choices()
    gf, args = trace.gen_fn, trace.args

    def logp(vals: list[mx.array]) -> mx.array:
        with use_params(ParamStore(dict(zip(names, vals)))):
            ld, _ = gf.assess(args, choices)
        return mx.sum(ld)

    with runtime.transforming():
        grads: Any = mx.grad(logp)([store[k] for k in names])
    return dict(zip(names, grads))
