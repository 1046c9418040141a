"""Using GenMLX from several threads.

MLX gives every thread its own default stream (a queue of work with a worker behind
it). Two consequences for threaded programs, which GenMLX handles as follows:

* **Clean exit.** A thread's streams must be destroyed before that thread ends
  (``mx.clear_streams()``, MLX's documented rule); otherwise the interpreter can abort
  at exit with ``terminate called without an active exception``. Every GenMLX entry
  point (GFI operations, :func:`genmlx.core.compile`'d functions, anything that takes
  ``key=``) calls :func:`guard_thread`, which arranges for ``mx.clear_streams()`` to run
  in a worker thread when that thread finishes (through a thread-local object whose
  finaliser runs in the dying thread). Threads that are still running when the
  interpreter exits (daemon threads) cannot be cleaned up: join them first. MLX work
  done in a thread *without* any GenMLX call needs ``mx.clear_streams()`` at its end
  (or a call to :func:`guard_thread`).
* **Arrays belong to the thread that computes them.** An array built lazily in one
  thread and evaluated in another fails (MLX: ``There is no Stream(cpu, N) in current
  thread``); GenMLX reports this as a :class:`ThreadStreamError` naming the operation.
  Evaluate arrays (``mx.eval``) in the thread that made them before sharing them.

``key=None`` draws from the operating system (see :mod:`genmlx.core.random`), so
threads never share "fresh" keys.

Example:
    >>> import threading
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model():
    ...     return normal(0.0, 1.0) @ "x"
    >>> out = {}
    >>> def work(i):
    ...     out[i] = float(model.simulate((), key=None)["x"])
    >>> ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    >>> for t in ts: t.start()
    >>> for t in ts: t.join()
    >>> out[0] != out[1]
    True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import mlx.core as mx

from genmlx.core.errors import GenMLXError

__all__ = ["ThreadStreamError", "guard_thread", "translate_stream_errors"]


class ThreadStreamError(GenMLXError, RuntimeError):
    """An array made (lazily) in one thread was evaluated in another."""


class _ClearStreamsAtExit:
    """Destroys the owning thread's MLX streams when the thread ends."""

    __slots__ = ()

    def __del__(self) -> None:
        try:
            mx.clear_streams()
        except Exception:  # nothing can be reported from a dying thread
            pass


_LOCAL = threading.local()


def guard_thread() -> None:
    """Make sure this thread's MLX streams are destroyed when it ends (not needed, and
    not done, in the main thread)."""
    if getattr(_LOCAL, "guard", None) is None and (
        threading.current_thread() is not threading.main_thread()
    ):
        _LOCAL.guard = _ClearStreamsAtExit()


def is_stream_error(err: BaseException) -> bool:
    """True for MLX's error about an array whose stream belongs to another thread."""
    return isinstance(err, RuntimeError) and "Stream" in str(err) and "current thread" in str(err)


@contextlib.contextmanager
def translate_stream_errors(op: str) -> Iterator[None]:
    """Re-raise MLX's cross-thread stream error as a :class:`ThreadStreamError`."""
    try:
        yield
    except RuntimeError as e:
        if isinstance(e, GenMLXError) or not is_stream_error(e):
            raise
        raise ThreadStreamError(
            f"{op}: an array it needs was computed lazily in another thread and not "
            "evaluated there. MLX computes each thread's arrays on that thread's own "
            "stream, so it cannot be evaluated here. Call mx.eval(...) on the arrays in "
            f"the thread that made them before passing them on. (MLX: {e})"
        ) from e
