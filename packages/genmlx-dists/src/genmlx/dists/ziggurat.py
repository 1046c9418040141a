"""Marsaglia–Tsang's ziggurat for standard normals, split into a vectorised fast path
and an exact slow path for the few draws the fast path cannot decide.

The half-normal density ``f(x) = exp(-x^2 / 2)`` is covered by 256 layers of equal
area ``V``: a base strip (``[0, X[0]] x [0, f(R)]`` standing for the rectangle up to
``R`` plus the tail beyond it) and 255 rectangles ``[0, X[k]] x [f(X[k]), f(X[k+1])]``
(``X[1] = R > X[2] > ... > X[256] = 0``). One signed 32-bit word gives a layer ``k``
(its low 8 bits) and ``x = m X[k] / 2**23`` (``m``: its high 24 bits, signed). The
draw is accepted at once when ``|x| < X[k+1]`` (98.5% of words: one word, two table
lookups, no transcendental). Otherwise (:func:`settle`) a layer ``k >= 1`` keeps ``x``
when a uniform height in the wedge ``[f(X[k]), f(X[k+1])]`` falls below ``f(x)`` and
else rejects the draw (probability 0.0067 per word: the caller draws anew), and the
base layer samples the tail beyond ``R`` with Marsaglia's method (``sqrt(R^2 - 2 log
U1)``, kept when ``U2 sqrt(...) < R``: probability 0.938 per attempt). Every accepted
value is exactly N(0, 1) distributed (up to float32 rounding).

Example:
    >>> import mlx.core as mx
    >>> words = mx.random.split(mx.random.key(0), 4).reshape(-1)
    >>> x, fast, layer = propose(words)
    >>> x.shape, fast.dtype
    ((8,), mlx.core.bool)
"""

from __future__ import annotations

import math

import mlx.core as mx

from genmlx.dists.rejection import compact, spill_slots

__all__ = ["P_REJECT", "P_SLOW", "P_TAIL", "TAIL_ATTEMPTS", "R", "propose", "settle"]

_N = 256
R = 3.6541528853610088
"""Where the base strip's tail starts."""
_V = 0.00492867323399  # the area of each layer


def _tables() -> tuple[list[float], list[float], list[float]]:
    f = lambda t: math.exp(-0.5 * t * t)  # noqa: E731
    xs = [0.0] * (_N + 1)
    xs[0], xs[1] = _V / f(R), R
    for k in range(1, _N - 1):
        xs[k + 1] = math.sqrt(-2.0 * math.log(_V / xs[k] + f(xs[k])))
    xs[_N] = 0.0
    width = [x * 2.0**-23 for x in xs[:_N]]
    # |m| < floor(X[k+1] / X[k] 2**23) implies |x| < X[k+1]: the fast test never
    # accepts a point outside the covered rectangle, float32 rounding included.
    inner = [float(math.floor(xs[k + 1] / xs[k] * 2.0**23)) for k in range(_N)]
    height = [f(x) for x in xs]
    return width, inner, height


_W, _K, _F = _tables()
P_SLOW = 1.0 - sum(_K) / (_N * 2.0**23)
"""Probability that a word is not accepted by the fast path (0.0149)."""
P_TAIL = (1.0 - R / (_V / math.exp(-0.5 * R * R))) / _N
"""Probability that a word falls in the base strip's tail (2.6e-4)."""
P_REJECT = 1.0 - math.sqrt(math.pi / 2.0) / (_N * _V)
"""Probability that a word is rejected (its wedge test fails): 0.0067."""
_TAIL_ACCEPT = 0.9376  # per attempt at R (by quadrature; the bound used below)
TAIL_ATTEMPTS = 13
"""Tail attempts per tail word: all fail with probability ``0.0624**13 < 3e-16``."""

_W_MX = mx.array(_W, dtype=mx.float32)
_K_MX = mx.array(_K, dtype=mx.float32)
_F_MX = mx.array(_F, dtype=mx.float32)


def propose(words: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """The fast path: ``(x, fast, layer)`` from 1-D uint32 ``words``.

    ``x`` is the candidate (the accepted normal where ``fast``); ``layer`` (int32)
    and ``x`` are what :func:`settle` needs for the others.
    """
    j = mx.view(words, mx.int32)
    layer = j & 255
    m = (j >> 8).astype(mx.float32)  # signed, |m| <= 2**23: exact in float32
    x = m * mx.take_along_axis(_W_MX, layer, axis=0)
    fast = mx.abs(m) < mx.take_along_axis(_K_MX, layer, axis=0)
    return x, fast, layer


def settle(
    key: mx.array, x: mx.array, fast: mx.array, layer: mx.array, n_from: int
) -> tuple[mx.array, mx.array]:
    """The slow path for 1-D candidates from :func:`propose`: ``(x, ok)``.

    Where ``fast``, ``x`` stands. Otherwise a wedge (layer >= 1) keeps ``x`` or
    rejects it (``ok`` False), and a base-strip word is replaced by a tail draw
    (``TAIL_ATTEMPTS`` attempts; a tail word whose attempts all fail, or that finds no
    slot, is rejected: together < 1e-14). The tail words are gathered into
    ``spill_slots(n_from, P_TAIL)`` slots, ``n_from`` being the number of words the
    candidates were drawn from (at most that many of them are tail words).
    """
    s = x.shape[0]
    k_wedge, k_tail = mx.random.split(key, 2)
    lo = mx.take_along_axis(_F_MX, layer, axis=0)
    hi = mx.take_along_axis(_F_MX, layer + 1, axis=0)
    u_w = mx.random.split(k_wedge, (s + 1) // 2).reshape(-1)[:s].astype(mx.float32)
    y = lo + (u_w * 2.0**-32) * (hi - lo)  # > 0: lo = f(X[k]) > 0 for k >= 1
    wedge_ok = mx.log(y) < -0.5 * x * x  # y < f(x), with a log (cheaper than exp)
    slow = mx.logical_not(fast)
    tail = mx.logical_and(slow, layer == 0)
    qt = spill_slots(max(n_from, 1), P_TAIL)
    owner, _ = compact(tail, qt)
    u = mx.random.uniform(shape=(2, TAIL_ATTEMPTS, qt), key=k_tail)
    xt = mx.sqrt(R * R - 2.0 * mx.log(mx.maximum(u[0], 2.0**-33)))
    acc = u[1] * xt < R
    first = mx.argmax(acc, axis=0).astype(mx.int32)
    xt1 = mx.take_along_axis(xt, mx.expand_dims(first, 0), axis=0)[0]
    t_ok = mx.logical_and(mx.any(acc, axis=0), owner < s)
    pad_f = mx.zeros((1,), dtype=mx.float32)
    pad_b = mx.zeros((1,), dtype=mx.bool_)
    mag = mx.put_along_axis(mx.concatenate([mx.abs(x), pad_f]), owner, xt1, axis=0)[:s]
    tail_ok = mx.put_along_axis(mx.concatenate([mx.zeros_like(tail), pad_b]), owner, t_ok, axis=0)
    tail_ok = tail_ok[:s]
    x_out = mx.where(x < 0, -mag, mag)
    ok = mx.where(fast, True, mx.where(layer == 0, tail_ok, wedge_ok))
    return x_out, ok
