"""The interpreter API: how a ``@gen`` body runs, and how to run it your own way.

A ``@gen`` body is plain Python. Every ``gen_fn(*args) @ addr`` in it hands the *site*
``(path, gen_fn, args)`` to the **handler** of the operation that is running. A
handler is a pure state transition::

    handler(state, path, gen_fn, args) -> (new_state, value)

``state`` is whatever the handler needs (an immutable value is best: a NamedTuple with a
key stream, the records visited so far, a score, ...); ``value`` is what the ``@``
expression returns to the body. :func:`run_body` runs a body with a handler and an
initial state and returns the final state and the body's return value. The only mutable
thing is the :class:`Run` cell that carries the latest state while user code runs; it
lives in a context variable that is reset on exit, so a body that raises leaves nothing
behind, and runs nest (a handler may run a sub-call's body with a handler of its own).

This is the layer GenMLX's own operations are built on — ``simulate``, ``generate``,
``assess``, ``update`` and ``regenerate`` are :func:`simulate_site` ... :func:`regenerate_site`
with their states — and the one inference algorithms and plugins use to interpret a
model differently: ADEV runs a body with a handler that chooses a gradient estimator
per site, Gibbs by enumeration scores one site at many values, variational inference
records the sites a guide visits. It plays the role of NumPyro's *effect handlers*
(``Messenger``): a handler sees every random choice and sub-call, may delegate to a
built-in transition, and decides the value the body gets.

The context a handler may consult:

* :func:`active_run` — the :class:`Run` being executed (``None`` outside a body);
* :func:`in_transform` / :func:`transforming` — whether values are symbolic (under
  ``mx.vmap``, ``mx.compile`` or ``mx.grad``: nothing may be evaluated), and the context
  manager to declare it; :func:`is_transform_eval_error` recognises MLX's error for an
  evaluation attempted there;
* :func:`lenient` / :func:`is_lenient` — the mode in which branches not taken are
  scored with any in-support value (masking combinators);
* :func:`operation` — marks a GFI operation (only the outermost one validates scores).

Example — a handler that records the distribution of every choice while simulating
(delegating the actual work to :func:`simulate_site`)::

    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.core.random import KeyStream
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model():
    ...     x = normal(0.0, 1.0) @ "x"
    ...     return normal(x, 0.5) @ "y"
    >>> seen = []
    >>> def recording(state, path, gen_fn, args):
    ...     seen.append((path, gen_fn.name))
    ...     return simulate_site(state, path, gen_fn, args)
    >>> start = SimulateState(KeyStream.start(mx.random.key(0)), None, mx.array(0.0))
    >>> final, retval = run_body("simulate", "model", model.fn, (), recording, start)
    >>> seen
    [(('x',), 'normal'), (('y',), 'normal')]
    >>> [p for p, _ in iter_records(build_trie(final.records, "simulate", "model"))]
    [('x',), ('y',)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genmlx.core.handlers import (
    AssessState,
    CallRecord,
    ChoiceRecord,
    GenerateState,
    RegenerateState,
    SimulateState,
    UpdateState,
    assess_site,
    build_trie,
    generate_site,
    iter_records,
    lookup,
    regenerate_site,
    run_body,
    simulate_site,
    trace_site,
    update_site,
)
from genmlx.core.runtime import (
    Run,
    active_run,
    in_transform,
    is_lenient,
    is_transform_eval_error,
    lenient,
    operation,
    transforming,
)

__all__ = [
    "AssessState",
    "CallRecord",
    "ChoiceRecord",
    "GenerateState",
    "Handler",
    "RegenerateState",
    "Run",
    "SimulateState",
    "UpdateState",
    "active_run",
    "assess_site",
    "build_trie",
    "generate_site",
    "in_transform",
    "is_lenient",
    "is_transform_eval_error",
    "iter_records",
    "lenient",
    "lookup",
    "operation",
    "regenerate_site",
    "run_body",
    "simulate_site",
    "trace_site",
    "transforming",
    "update_site",
]

Handler = Callable[[Any, tuple[Any, ...], Any, tuple[Any, ...]], tuple[Any, Any]]
"""Type of a handler, ``handler(state, path, gen_fn, args) -> (new_state, value)``."""
