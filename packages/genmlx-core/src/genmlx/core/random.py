"""Explicit PRNG keys.

Every stochastic GenMLX operation takes ``key=``: an MLX key (``mx.random.key(seed)``,
a ``uint32`` array of shape ``(2,)``). ``key=None`` draws a fresh key from the
operating system's entropy source (``os.urandom``), which is convenient interactively
and gives different samples in every call and every thread; library code always passes
keys. An ``int`` is accepted as a seed.

Inside :func:`genmlx.core.compile`, ``key=None`` derives its keys from a hidden key
input that the compiled function receives from the operating system in every call, so
the compiled function also draws fresh randomness per call (a key made while tracing
would otherwise be frozen into the graph).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core.random import resolve_key, split
    >>> k = resolve_key(0)
    >>> split(k, 3).shape
    (3, 2)
    >>> bool(mx.all(resolve_key(None) == resolve_key(None)))   # fresh every time
    False
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from genmlx.core import runtime
from genmlx.core.errors import InvalidKeyError
from genmlx.core.presample import take_pending
from genmlx.core.threads import guard_thread

__all__ = ["Key", "KeyStream", "fresh_key", "resolve_key", "split", "split2"]

Key = mx.array | int | None


def fresh_key() -> mx.array:
    """A new key from the operating system's entropy source (``os.urandom``).

    Independent of MLX's global generator, so two threads (or two processes forked
    from one) never draw the same "fresh" key.
    """
    compiled = runtime.compiled_fresh_key()
    if compiled is not None:
        return compiled  # type: ignore[no-any-return]
    return mx.array(np.frombuffer(os.urandom(8), dtype=np.uint32))


def resolve_key(key: Key, op: str = "") -> mx.array:
    """Turn ``None`` / an int seed / a key into a key array.

    Args:
        key: an MLX key (``uint32`` array of shape ``(2,)``), an int seed or ``None``.
        op: the operation's name, used in error messages.

    Raises:
        InvalidKeyError: for anything else, such as a float, a key of the wrong dtype or a
            stack of keys (also a ``TypeError``).
    """
    guard_thread()
    where = f"{op}: " if op else ""
    if key is None:
        return fresh_key()
    if isinstance(key, bool):
        raise InvalidKeyError(
            f"{where}key must be an MLX key (mx.random.key(seed)), an int seed or None; "
            f"got the bool {key!r}"
        )
    if isinstance(key, int):
        if not -(2**63) <= key < 2**64:
            raise InvalidKeyError(f"{where}the int seed {key} does not fit in 64 bits")
        return mx.random.key(key)
    if isinstance(key, mx.array):
        if key.dtype != mx.uint32 or tuple(key.shape) != (2,):
            hint = (
                " (a stack of keys: pass one of them, key[i])"
                if key.dtype == mx.uint32 and key.ndim > 1 and key.shape[-1] == 2
                else ""
            )
            raise InvalidKeyError(
                f"{where}key must be a uint32 array of shape (2,) as made by "
                f"mx.random.key(seed); got dtype {str(key.dtype).replace('mlx.core.', '')}, "
                f"shape {tuple(key.shape)}{hint}"
            )
        return key
    raise InvalidKeyError(
        f"{where}key must be an MLX key (mx.random.key(seed)), an int seed or None; "
        f"got {type(key).__name__}"
    )


def split(key: mx.array, n: int = 2) -> mx.array:
    """``n`` independent keys, stacked as an ``[n, 2]`` array."""
    return mx.random.split(key, n)


def split2(key: mx.array) -> tuple[mx.array, mx.array]:
    """Two independent keys."""
    ks = mx.random.split(key, 2)
    return ks[0], ks[1]


class KeyStream(NamedTuple):
    """The keys of one body execution: a hashed base key and a site counter.

    Each random choice gets ``base + (0, i)`` for its own ``i``: Threefry keys are
    stream identifiers (Random123's design), so distinct keys give independent streams,
    and deriving one costs an addition rather than a hash per particle. The base is a
    Threefry hash of the operation's key, so the families of two different keys (say
    seeds 0 and 1) do not overlap; a sub-call hashes its key again for the same reason.
    """

    base: mx.array
    n: int
    #: Presampled Gaussian draws of this execution (see :mod:`genmlx.core.presample`).
    pre: Any = None

    @staticmethod
    def start(key: mx.array) -> KeyStream:
        """The stream for one operation run with ``key``."""
        given = take_pending()
        if given is not None:
            base, source = given
            if base is None:
                base = mx.random.split(key, 2)[0]
            return KeyStream(base, 0, source)
        return KeyStream(mx.random.split(key, 2)[0], 0)

    def site(self) -> tuple[KeyStream, mx.array]:
        """The next site's key, and the advanced stream."""
        n = self.n + 1
        return KeyStream(self.base, n, self.pre), self.base + mx.array([0, n], dtype=mx.uint32)
