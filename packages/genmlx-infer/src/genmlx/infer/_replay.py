"""Replaying a ``@gen`` body with values chosen by the caller.

The exact-inference modules (enumeration, conjugacy, state-space middleware) need the
parameters of every distribution in a model as functions of the values of its choices:
the body is run under a handler that returns the observed value of an observed choice
and asks the caller for every other one, recording each site's distribution,
parameters and value. Nested ``@gen`` calls are inlined (their sites carry the full
address, as in :func:`genmlx.core.analyze`); calls of other generative functions go
to an optional ``call`` hook.

Everything here is pure array code, so a replay can run under ``mx.vmap``,
``mx.grad`` and ``mx.compile`` (with values that are tracers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import (
    ChoiceMap,
    Distribution,
    DynamicGenerativeFunction,
    GenerativeFunction,
    StaticModelError,
    runtime,
)
from genmlx.core import interpreter as H
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import as_array

__all__ = ["SiteRecord", "fn_name", "replay"]


class SiteRecord(NamedTuple):
    """One random choice met while replaying a body.

    Attributes:
        path: its full address.
        dist: the distribution.
        params: the distribution's parameters at this replay.
        value: the value the body received.
        observed: whether the value came from the observations.
    """

    path: Path
    dist: Distribution
    params: tuple[Any, ...]
    value: mx.array
    observed: bool


Provide = Callable[[Path, Distribution, tuple[Any, ...]], mx.array]
CallHook = Callable[[Path, GenerativeFunction, tuple[Any, ...], ChoiceMap], Any]


def fn_name(gf: Any) -> str:
    """A generative function's (or distribution's) short name for messages."""
    return getattr(gf, "name", type(gf).__name__)


def replay(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap,
    provide: Provide,
    *,
    op: str,
    call: CallHook | None = None,
) -> tuple[list[SiteRecord], Any]:
    """Run ``model``'s body once; return the sites met (in order) and the return value.

    Args:
        model: a ``@gen`` function.
        args: its arguments.
        observations: observed values; an observed choice receives its value.
        provide: ``provide(path, dist, params) -> value`` for every other choice.
        op: the operation's name, for error messages.
        call: ``call(path, gen_fn, args, observed_submap) -> retval`` for calls of
            generative functions that are not ``@gen`` functions (``None``: such a
            call is an error).

    Raises:
        StaticModelError: the body calls a generative function and ``call`` is None.
    """
    if not isinstance(model, DynamicGenerativeFunction):
        raise StaticModelError(f"{op}: expected a @gen model, got {model!r}")
    records: list[SiteRecord] = []
    prefix: list[Path] = [()]

    def handler(state: Any, path: Path, gf: GenerativeFunction, a: tuple[Any, ...]) -> Any:
        full = (*prefix[-1], *path)
        if isinstance(gf, Distribution):
            if observations.has_value(full):
                v = as_array(observations[full])
                records.append(SiteRecord(full, gf, tuple(a), v, True))
            else:
                v = provide(full, gf, tuple(a))
                records.append(SiteRecord(full, gf, tuple(a), v, False))
            return state, v
        if isinstance(gf, DynamicGenerativeFunction):
            prefix.append(full)
            try:
                value = gf.fn(*a)
            finally:
                prefix.pop()
            run = runtime.active_run()
            return (run.state if run is not None else state), value
        if call is None:
            raise StaticModelError(
                f"{op}: the model calls {fn_name(gf)} at {format_address(full)}; this "
                "method sees only the model's own random choices and inlined @gen calls"
            )
        sub = observations.get_submap(full)
        return state, call(full, gf, tuple(a), sub)

    with runtime.operation():
        _, retval = H.run_body(op, model.name, model.fn, tuple(args), handler, None)  # type: ignore[attr-defined]
    return records, retval
