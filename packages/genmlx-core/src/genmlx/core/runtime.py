"""The execution context shared by handlers, batching and compilation.

Three pieces of context-local state, all restored on exit even when a model raises:

* the *active run*: the handler and state of the ``@gen`` body being executed (so
  ``dist(...) @ addr`` knows what to do);
* the *operation depth*: only the outermost GFI call validates scores;
* the *transform depth*: inside ``vmap``/``compile``/``grad`` nothing may be evaluated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from genmlx.core.address import Path
from genmlx.core.threads import guard_thread, translate_stream_errors

__all__ = [
    "Run",
    "active_run",
    "compiled_fresh_key",
    "compiling",
    "in_transform",
    "is_lenient",
    "lenient",
    "operation",
    "scoped",
    "transforming",
]


class Run:
    """A mutable cell holding one body execution's immutable handler state.

    The handler is a pure function ``(state, path, gen_fn, args) -> (state, value)``;
    the cell only remembers the latest state so that ``@`` can thread it through user
    code that does not know about it.
    """

    __slots__ = ("handler", "last_path", "op", "state")

    def __init__(self, op: str, handler: Callable[..., tuple[Any, Any]], state: Any) -> None:
        self.op = op
        self.handler = handler
        self.state = state
        self.last_path: Path | None = None


_ACTIVE: ContextVar[Run | None] = ContextVar("genmlx_active_run", default=None)
_DEPTH: ContextVar[int] = ContextVar("genmlx_op_depth", default=0)
_TRANSFORM: ContextVar[int] = ContextVar("genmlx_transform_depth", default=0)
_LENIENT: ContextVar[bool] = ContextVar("genmlx_lenient", default=False)
_COMPILING: ContextVar[list[Any] | None] = ContextVar("genmlx_compiling", default=None)


def active_run() -> Run | None:
    """The run whose body is executing, if any."""
    return _ACTIVE.get()


@contextlib.contextmanager
def activate(run: Run | None) -> Iterator[Run | None]:
    """Make ``run`` the active run for the duration of the block."""
    token = _ACTIVE.set(run)
    try:
        yield run
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def operation() -> Iterator[bool]:
    """Mark a GFI operation; yields True when it is the outermost one."""
    depth = _DEPTH.get()
    token = _DEPTH.set(depth + 1)
    # A GFI call made from inside a body must not see that body's run.
    run_token = _ACTIVE.set(None)
    try:
        if depth == 0:
            guard_thread()
            with translate_stream_errors("a GenMLX operation"):
                yield True
        else:
            yield False
    finally:
        _ACTIVE.reset(run_token)
        _DEPTH.reset(token)


@contextlib.contextmanager
def transforming() -> Iterator[None]:
    """Mark code run under an MLX transformation (vmap, compile, grad)."""
    token = _TRANSFORM.set(_TRANSFORM.get() + 1)
    depth_token = _DEPTH.set(0)
    try:
        yield
    finally:
        _DEPTH.reset(depth_token)
        _TRANSFORM.reset(token)


@contextlib.contextmanager
def compiling(call_key: Any) -> Iterator[None]:
    """Mark code being traced by :func:`genmlx.core.compile`.

    ``call_key`` is the compiled function's hidden per-call key input: ``key=None``
    inside the traced code derives its keys from it (:func:`compiled_fresh_key`), so
    every call of the compiled function draws fresh randomness instead of reusing keys
    frozen at trace time.
    """
    token = _COMPILING.set([call_key, 0])
    try:
        yield
    finally:
        _COMPILING.reset(token)


def compiled_fresh_key() -> Any:
    """A fresh key derived from the hidden call key, or None outside compilation."""
    holder = _COMPILING.get()
    if holder is None:
        return None
    import mlx.core as mx

    holder[1] += 1
    k = holder[0] + mx.array([0, holder[1]], dtype=mx.uint32)
    return mx.random.split(k, 2)[0]


def operation_depth() -> int:
    """How many GFI operations are running (0 outside any)."""
    return _DEPTH.get()


def in_transform() -> bool:
    """True inside a GenMLX-driven vmap/compile/grad."""
    return _TRANSFORM.get() > 0


def is_transform_eval_error(err: BaseException) -> bool:
    """True for MLX's error when something evaluates an array under a transformation."""
    return isinstance(err, ValueError) and "function transformations" in str(err)


@contextlib.contextmanager
def scoped(var: ContextVar[Any], value: Any) -> Iterator[None]:
    """Set a context variable inside a ``with`` block, restoring it on exit (also
    when the block raises) — the body of the switches such as ``fused.enabled``.

    Example:
        >>> v = ContextVar("example_flag", default=False)
        >>> with scoped(v, True):
        ...     v.get()
        True
        >>> v.get()
        False
    """
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


@contextlib.contextmanager
def lenient(on: bool = True) -> Iterator[None]:
    """Run a branch that may not be taken without address checks.

    A batched ``Switch`` runs every branch for every particle and keeps, per particle,
    the one its index names. Constraints meant for one branch are then unused by the
    others, ``assess`` finds choices missing and selections name addresses a branch
    lacks; inside this context none of those is an error (a missing choice in
    ``assess`` takes an arbitrary in-support value, whose score the caller masks out).
    The caller checks the union of the branches instead.
    """
    with scoped(_LENIENT, on):
        yield


def is_lenient() -> bool:
    """True inside :func:`lenient`."""
    return _LENIENT.get()
