"""Explicit PRNG keys.

Every stochastic GenMLX operation takes ``key=``: an MLX key (``mx.random.key(seed)``,
a ``uint32`` array of shape ``(2,)``). ``key=None`` draws a fresh key from MLX's global
generator, which is convenient interactively; library code always passes keys. An
``int`` is accepted as a seed.

Example:
    >>> from typing import NamedTuple

import mlx.core as mx
    >>> from genmlx.core.random import resolve_key, split
    >>> k = resolve_key(0)
    >>> split(k, 3).shape
    (3, 2)
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

__all__ = ["Key", "KeyStream", "fresh_key", "resolve_key", "split", "split2"]

Key = mx.array | int | None


def fresh_key() -> mx.array:
    """A new key drawn from MLX's global generator (seed it with ``mx.random.seed``)."""
    seed = mx.random.randint(0, 2**31 - 1, shape=(2,), dtype=mx.int32)
    return seed.astype(mx.uint32)


def resolve_key(key: Key) -> mx.array:
    """Turn ``None`` / an int seed / a key into a key array.

    Raises:
        TypeError: for anything else, such as a float.
    """
    if key is None:
        return fresh_key()
    if isinstance(key, bool):
        raise TypeError("key must be an MLX key (mx.random.key(seed)), an int seed or None")
    if isinstance(key, int):
        return mx.random.key(key)
    if isinstance(key, mx.array):
        if key.dtype != mx.uint32 or key.shape[-1:] != (2,):
            raise TypeError(
                f"key must be a uint32 array of shape (2,) as made by mx.random.key(seed); "
                f"got dtype {key.dtype}, shape {tuple(key.shape)}"
            )
        return key
    raise TypeError(
        f"key must be an MLX key (mx.random.key(seed)), an int seed or None; got {type(key)!r}"
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

    @staticmethod
    def start(key: mx.array) -> KeyStream:
        """The stream for one operation run with ``key``."""
        return KeyStream(mx.random.split(key, 2)[0], 0)

    def site(self) -> tuple[KeyStream, mx.array]:
        """The next site's key, and the advanced stream."""
        n = self.n + 1
        return KeyStream(self.base, n), self.base + mx.array([0, n], dtype=mx.uint32)
