"""Targets of gradient-based kernels: a trace's selected choices as one vector.

:func:`target` turns ``(trace, selection)`` into a :class:`Target`: a pure
``vg(y, *inputs) -> (log π(y), ∇log π(y))`` over a batch of chains ``y`` ``[C, d]``,
the arrays it reads, the current position, and the way back to a trace.

* **Static models** (:func:`genmlx.core.analyze`): ``y`` is the *unconstrained*
  vector of the selected choices (each mapped from its domain by its bijector, the
  log-Jacobian included) and ``vg`` is the compiled tier's log density
  (:func:`genmlx.core.logdensity`) with every unselected choice held at its value in
  the trace. A positive or bounded choice cannot be stepped out of its support.
* **Dynamic models** run on the interpreter as before: ``y`` holds the selected
  values themselves and ``log π`` is ``assess`` of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import StaticModelError, Trace, analyze, logdensity, runtime
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.selection import Selection
from genmlx.infer._traces import where_trace

__all__ = ["Target", "chain_keys", "flatten_selected", "target"]


class Target(NamedTuple):
    """A kernel's view of a trace.

    Attributes:
        vg: ``vg(y [C, d], *inputs) -> (log π [C], ∇log π [C, d])``.
        inputs: the arrays ``vg`` reads.
        position: the current point, ``[C, d]`` (``C = 1`` for a single trace).
        to_trace: ``(y [C, d], moved [C] | None) -> Trace`` (the kernel's result;
            chains not ``moved`` keep their values exactly).
        batched: whether the trace is batched (``False``: ``C == 1`` was added).
        compiled: whether ``vg`` may be compiled (the static tier) or must run eagerly.
        unconstrained: ``y`` is in unconstrained space.
    """

    vg: Callable[..., tuple[mx.array, mx.array]]
    inputs: tuple[mx.array, ...]
    position: mx.array
    to_trace: Callable[..., Trace]
    batched: bool
    compiled: bool
    unconstrained: bool

    @property
    def dim(self) -> int:
        """Length of the vector."""
        return int(self.position.shape[-1])


def _static_target(trace: Trace, selection: Selection, op: str) -> Target | None:
    model = trace.gen_fn
    from genmlx.core.dsl import DynamicGenerativeFunction

    if not isinstance(model, DynamicGenerativeFunction):
        return None
    try:
        g = analyze(model, trace.args)
    except Exception:
        return None
    if not g.is_static or g.uses_params:
        return None
    choices = trace.get_choices()
    fixed = choices.exclude(selection)
    try:
        ld = logdensity(model, trace.args, fixed, latents=selection)
    except StaticModelError as e:
        msg = str(e)
        if "discrete" in msg:
            raise TypeError(f"{op}: {msg.split(': ', 1)[-1]}") from None
        if "domain" in msg:  # unknown domains: fall back to the constrained space
            return None
        return None
    batched = bool(trace.batch_shape)
    vg, inputs = ld.pure("vg", batched=True)
    y = ld.from_choicemap(choices.filter(selection))
    if not batched:
        y = y[None]
        if fixed.batch_shape:
            raise AssertionError("unbatched trace with batched choices")
        inp = tuple(inputs)
    else:
        inp = tuple(inputs)

    def to_trace(y_new: mx.array, moved: mx.array | None = None) -> Trace:
        cm = ld.to_choicemap(y_new if batched else y_new[0])
        new = trace.gen_fn.update(trace, cm).trace
        if moved is None:
            return new
        # chains that did not move keep their exact values (forward(inverse(x)) is x
        # only up to rounding)
        return where_trace(moved if batched else moved[0], new, trace)

    return Target(vg, inp, y, to_trace, batched, True, True)


def flatten_selected(
    trace: Trace, selection: Selection, op: str
) -> tuple[mx.array, list[Path], list[tuple[int, ...]], ChoiceMap]:
    """The selected continuous choices of ``trace`` as one float32 vector per chain.

    Returns ``(x [*batch, d], paths, shapes, rest)``: ``rest`` holds the unselected
    choices. Raises ``ValueError`` (the selection picks nothing) or ``TypeError`` (a
    selected choice is not floating point), both naming ``op``.
    """
    choices = trace.get_choices()
    selected = choices.filter(selection)
    leaves = list(selected.leaves())
    if not leaves:
        raise ValueError(f"{op}: the selection picks no choices of the trace")
    batch = tuple(trace.batch_shape)
    nb = len(batch)
    parts, paths, shapes = [], [], []
    for p, v in leaves:
        if not mx.issubdtype(v.dtype, mx.floating):
            raise TypeError(
                f"{op}: the choice at {format_address(p)} has dtype {v.dtype}; gradient "
                "kernels need continuous (floating-point) choices — deselect it"
            )
        shape = tuple(v.shape[nb:])
        paths.append(p)
        shapes.append(shape)
        parts.append(v.reshape((*batch, math.prod(shape))).astype(mx.float32))
    x = parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=-1)
    return x, paths, shapes, choices.exclude(selection)


def _interpreter_target(trace: Trace, selection: Selection, op: str) -> Target:
    x, paths, shapes, rest = flatten_selected(trace, selection, op)
    batched = bool(trace.batch_shape)
    gf, args = trace.gen_fn, trace.args

    def unflat(y: mx.array) -> ChoiceMap:
        lead = tuple(y.shape[:-1])
        out = ChoiceMap(None, None, lead)
        start = 0
        for p, shape in zip(paths, shapes):
            size = math.prod(shape)
            out = out.set_submap(p, ChoiceMap(y[..., start : start + size].reshape(*lead, *shape)))
            start += size
        return out

    def vg(y: mx.array) -> tuple[mx.array, mx.array]:
        yy = y if batched else y[0]

        def total(z: mx.array) -> tuple[mx.array, mx.array]:
            cm = rest.merge(unflat(z)).with_batch_shape(tuple(trace.batch_shape))
            ld, _ = gf.assess(args, cm)
            return mx.sum(ld), ld

        with runtime.transforming():
            (_, ld), g = mx.value_and_grad(total)(yy)
        if not batched:
            return ld[None], g[None]
        return ld, g

    def to_trace(y_new: mx.array, moved: mx.array | None = None) -> Trace:
        new = gf.update(trace, unflat(y_new if batched else y_new[0])).trace
        if moved is None:
            return new
        return where_trace(moved if batched else moved[0], new, trace)

    return Target(vg, (), x if batched else x[None], to_trace, batched, False, False)


def target(trace: Trace, selection: Selection, op: str) -> Target:
    """The :class:`Target` of ``trace``'s selected choices for kernel ``op``.

    Raises:
        ValueError: the selection picks nothing, or the trace has more than one batch
            axis.
        TypeError: a selected choice is discrete.
    """
    if len(trace.batch_shape) > 1:
        raise ValueError(f"{op}: traces with more than one batch axis are not supported")
    if not isinstance(selection, Selection):
        raise TypeError(
            f"{op}: selection must be a Selection (e.g. select('x')), got "
            f"{type(selection).__name__}"
        )
    t = _static_target(trace, selection, op)
    if t is not None:
        return t
    return _interpreter_target(trace, selection, op)


def chain_keys(key: mx.array, n_chains: int, batched: bool) -> mx.array:
    """Per-chain keys ``[C, 2]``: ``split(key, C)`` for a batched trace (chain ``i`` gets
    ``split(key, C)[i]``, GenMLX's batching law), the key itself for a single trace."""
    return mx.random.split(key, n_chains) if batched else key[None]


def unwrap(t: Target, y: Any) -> Any:
    """``y`` without the chain axis that a single trace's target adds."""
    return y if t.batched else y[0]
