"""Samplers for the gamma, beta, Dirichlet and Student-t variates every gamma-based
distribution draws from (genmlx.dists uses them for gamma, inverse gamma, chi-square,
beta, Student-t, Dirichlet and the gamma mixtures among the discrete ones).

* :func:`log_standard_gamma` — ``log G`` with ``G ~ Gamma(alpha, rate 1)``;
* :func:`standard_gamma` — ``G`` itself (float32, clamped into the normal range);
* :func:`scaled_gamma` — ``G`` times (or over) a scale, in linear space;
* :func:`standard_beta` — ``Beta(a, b)``: Jöhnk's algorithm where both shapes are at
  most 1, else ``X / (X + Y)`` (in log space where a shape is below 1);
* :func:`standard_dirichlet` — ``Dirichlet(alpha)`` as normalised gamma draws (a
  softmax of log-gamma draws where a concentration is below 1);
* :func:`standard_t` — Student's t by Bailey's polar method.

Gamma draws: integer shapes up to ``ERLANG_MAX`` as sums of exponentials, the rest by
Marsaglia–Tsang with ziggurat normals (:mod:`genmlx.dists.ziggurat`) and a squeeze that
decides most proposals without a logarithm; the undecided ones are settled one level
down (:func:`genmlx.dists.rejection.first_accepted` with ``resolve``). Eager, compiled
and vmapped sampling give the same draws.

Draws are never 0, 1 or infinite where the law gives them probability 0: values beyond
float32's normal range are clamped (documented per sampler). Sampling with an invalid
array parameter gives NaN at those elements.

Random stream: the samplers were reworked for speed on 2026-12-07 (ziggurat normals,
Erlang sums, Bailey's t); the same key gives other draws than before (same laws).
"""
from __future__ import annotations

import math
from typing import Any, cast

import mlx.core as mx

from genmlx.dists import ziggurat
from genmlx.dists.base import (
    arr,
    is_plain_number,
)
from genmlx.dists.rejection import first_accepted
from genmlx.dists.rejection import spill_slots as _spill_slots

__all__ = [
    "GAMMA_ROUNDS",
    "T_ROUNDS",
    "log_standard_gamma",
    "scaled_gamma",
    "spill_slots",
    "standard_beta",
    "standard_dirichlet",
    "standard_gamma",
    "standard_t",
]

_TINY = 2.0**-126
_ONE_MINUS = 1.0 - 2.0**-24
_F32_MAX = float.fromhex("0x1.fffffep+127")
# log of the smallest uniform we let through (u = 0 has probability 2**-32).
_LOG_U_MIN = math.log(2.0**-33)


def _f32(x: Any) -> mx.array:
    a = arr(x)
    return a if a.dtype == mx.float32 else a.astype(mx.float32)


def _finite_pos(x: mx.array) -> mx.array:
    out: mx.array = mx.logical_and(x > 0, x < math.inf)
    return out


def _log_uniform(key: mx.array, shape: tuple[int, ...]) -> mx.array:
    """``log U`` for ``U ~ U(0, 1)``; MLX's uniform has 2**-32 resolution near 0."""
    u = mx.random.uniform(shape=shape, key=key)
    out: mx.array = mx.log(mx.maximum(u, 2.0**-33))
    return out


def _words(key: mx.array, n: int) -> mx.array:
    """``n`` uniform uint32 words (MLX's Threefry output, as ``mx.random.split``
    returns it: the cheapest source of raw bits MLX's Python API has)."""
    if n == 0:
        return mx.zeros((0,), dtype=mx.uint32)
    return mx.random.split(key, (n + 1) // 2).reshape(-1)[:n]


# Per proposal: not accepted outright (the ziggurat's fast path or the squeeze fails)
# with probability <= P_SLOW + 0.0709: the squeeze of _mt_propose fails with
# probability E[min(1, x^4 / (108 d min(1, 1 + c x)))] <= 0.07068 (at alpha = 1, its
# largest, by quadrature; deciding it from 16 bits of u adds at most 2**-16). A
# proposal is rejected for good with probability <= 0.0067 (a ziggurat wedge) +
# 0.0483 (Marsaglia–Tsang at alpha = 1).
_P_SQUEEZE_FAIL = 0.0709
_P_OPEN = ziggurat.P_SLOW + _P_SQUEEZE_FAIL  # 0.0858
_P_FINAL_REJECT = ziggurat.P_REJECT + 0.0483  # 0.0551

# The squeeze's failure probability falls with d (by quadrature, rounded up; checked
# monotone in the tests): (d_i, bound) for d >= d_i. Used to size the slots when alpha
# is a plain Python number (static: the same sizes eagerly and traced).
_SQUEEZE_FAIL_BY_D = (
    (1000.0, 2.81e-5),
    (100.0, 2.89e-4),
    (30.0, 9.97e-4),
    (10.0, 3.20e-3),
    (5.0, 6.93e-3),
    (3.0, 0.0127),
    (2.0, 0.0206),
    (1.5, 0.0289),
    (1.0, 0.0460),
    (2.0 / 3.0, 0.0707),
)


def _plain_values(x: Any) -> list[float] | None:
    """The numbers of a plain Python number or (nested) list/tuple of them, else None."""
    from genmlx.dists.base import is_plain_number

    if is_plain_number(x):
        return [float(x)]
    if isinstance(x, (list, tuple)):
        out: list[float] = []
        for v in x:
            sub = _plain_values(v)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def _p_open(alpha: Any) -> float:
    """The bound on undecided proposals that sizes the slots: the worst case (alpha
    = 1) unless ``alpha`` is given as plain numbers, whose smallest valid ``d`` looks
    its squeeze bound up in ``_SQUEEZE_FAIL_BY_D``."""
    vals = _plain_values(alpha)
    if vals is None:
        return _P_OPEN
    ds = [(a + 1.0 if a < 1.0 else a) - 1.0 / 3.0 for a in vals if 0.0 < a < math.inf]
    if not ds:
        return _P_OPEN
    d = min(ds)
    fail = next(p for d_i, p in _SQUEEZE_FAIL_BY_D if d >= d_i)
    return ziggurat.P_SLOW + fail + 2.0**-16

GAMMA_ROUNDS = 11
"""Proposals per element. A proposal is a ziggurat normal put through Marsaglia–Tsang
(acceptance smallest at alpha = 1: 0.9517, by quadrature; the alpha < 1 boost samples
alpha + 1 >= 1); it is rejected with probability <= 0.0551, so an element is never
accepted with probability < 0.0551**11 < 2e-14 (plus < 1e-14 per round that more
elements need a slot than :func:`genmlx.dists.rejection.spill_slots` has)."""


def spill_slots(n: int, p_reject: float = _P_OPEN) -> int:
    """:func:`genmlx.dists.rejection.spill_slots`, by default for the share of gamma
    proposals not accepted outright (at most 0.1143)."""
    return _spill_slots(n, p_reject)


def _mt_full_test(x: mx.array, u: mx.array, d: mx.array, c: mx.array) -> mx.array:
    """Marsaglia–Tsang's exact test ``log u < x^2/2 + d (1 - v + log v)``,
    ``v = (1 + c x)^3``, written without cancelling large terms:
    ``1 - v + log v = 3 log1p(w) - w (3 + 3 w + w^2)``, ``w = c x``."""
    w = c * x
    pos = w > -1.0
    w = mx.where(pos, w, 0.0)
    l1 = mx.log1p(w)
    log_ratio = 0.5 * x * x + d * (3.0 * l1 - w * (3.0 + w * (3.0 + w)))
    out: mx.array = mx.logical_and(pos, mx.log(u) < log_ratio)
    return out


def _mt_propose(
    key: mx.array, rshape: tuple[int, ...], prm: tuple[mx.array, ...]
) -> tuple[mx.array, mx.array, tuple[mx.array, ...]]:
    """Marsaglia–Tsang proposals ``(k d v, accepted outright, open state)``.

    ``prm = (k d, c, s, d)`` (``d = alpha - 1/3``, ``c = 1 / sqrt(9 d)``,
    ``s = 2**16 / (108 d)``, ``k`` a scale the values carry), each of size 1 or
    broadcastable to ``rshape``; ``v = (1 + c x)^3``. Per proposal one word feeds the
    ziggurat's fast path for ``x`` (:mod:`genmlx.dists.ziggurat`) and half a word
    16 bits ``b``: the uniform is
    ``u = (2**16 - 1 - b + U') / 2**16``. Marsaglia–Tsang accepts when
    ``log u < d phi(w)``, ``w = c x``, ``phi(w) = 1.5 w^2 - 3 w - w^3 + 3 log1p(w)``;
    since ``phi(w) >= -0.75 w^4 / min(1, 1 + w)`` (its series from ``w^4`` on,
    alternating for ``w > 0``, of one sign and geometrically bounded for ``w < 0``) and
    ``exp(t) >= 1 + t``, ``u < 1 - x^4 / (108 d min(1, 1 + w))`` accepts for sure (a
    squeeze tighter than Marsaglia–Tsang's ``1 - 0.0331 x^4``: it fails for 1.9% of
    proposals at alpha = 2.5 instead of 8.3%, and never passes where ``v <= 0``). A
    proposal is accepted outright when the ziggurat took ``x`` and the squeeze holds
    for every ``U'`` (no logarithm); the others (under 9%) keep ``(x, layer, b, fast)``
    for :func:`_mt_resolve`.
    """
    dv, c, s, _ = prm
    n = math.prod(rshape)
    h = (n + 1) // 2
    words = _words(key, n + h)
    x, zfast, layer = ziggurat.propose(words[:n])
    # the 16-bit halves of the last h words, as they lie in memory (a free view)
    b16 = mx.view(words[n:], mx.uint16)[:n].astype(mx.float32)
    x = x.reshape(rshape)
    b16 = b16.reshape(rshape)
    v1 = 1.0 + c * x
    g = dv * (v1 * v1 * v1)
    x2 = x * x
    # u m < m - x^4 / (108 d) for every U' <=> s x^4 <= m b, m = min(1, 1 + w);
    # the margin is far above float32 rounding
    sure = s * (x2 * x2) <= mx.minimum(v1, 1.0) * b16 - 0.02
    zfast = zfast.reshape(rshape)
    fast = mx.logical_and(zfast, sure)
    return g, fast, (x, layer.reshape(rshape), b16, zfast)


def _mt_resolve(
    key: mx.array, state: tuple[mx.array, ...], prm: tuple[mx.array, ...], n_from: int
) -> tuple[mx.array, mx.array]:
    """The open proposals of :func:`_mt_propose`: settle the ziggurat's slow path
    (:func:`genmlx.dists.ziggurat.settle`), complete ``u`` with 32 fresh bits and run
    Marsaglia–Tsang's exact test. Returns ``(k d v, accepted)``."""
    x, layer, b16, zfast = state
    dv, c, _, d = (p.reshape(()) if p.size == 1 else p for p in prm)
    k_z, k_u = mx.random.split(key, 2)
    x, ok = ziggurat.settle(k_z, x, zfast, layer, n_from)
    fine = _words(k_u, x.shape[0]).astype(mx.float32) * 2.0**-32
    u = ((65535.0 - b16) + fine) * 2.0**-16
    acc = mx.logical_and(ok, _mt_full_test(x, u, d, c))
    v1 = 1.0 + c * x
    return dv * (v1 * v1 * v1), acc


def _max_maybe(x: mx.array) -> float | None:
    """The largest element of ``x`` eagerly; ``None`` under a transformation."""
    from genmlx.core import runtime

    if runtime.in_transform():
        return None
    try:
        return float(cast(float, mx.max(x).item()))
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return None
        raise


def _any_maybe(x: mx.array) -> bool:
    """Whether any element of ``x`` may hold: its value eagerly, ``True`` under a
    transformation (where no value can be read)."""
    from genmlx.core import runtime

    if runtime.in_transform():
        return True
    try:
        return bool(mx.any(x).item())
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return True
        raise


_LOG2E = 1.0 / math.log(2.0)


def _exp(x: mx.array) -> mx.array:
    """``exp(x)`` as ``2**(x log2 e)``: on MLX's CPU backend ``power`` costs about a
    third of ``exp`` (the extra rounding of the product, ``|x| 2**-24`` relative, is
    that of ``x`` itself)."""
    out: mx.array = mx.power(mx.array(2.0, dtype=mx.float32), x * _LOG2E)
    return out


def _where(cond: mx.array, a: Any, b: Any) -> mx.array:
    """``mx.where(cond, a, b)``; eagerly, for a single condition (one shared
    parameter), the chosen side itself, broadcast: the same values without the
    elementwise select (on MLX's CPU backend ``where`` costs as much as ten
    multiplications)."""
    from genmlx.core import runtime

    if cond.size == 1 and not runtime.in_transform():
        try:
            pick = bool(cond.item())
        except ValueError as e:
            if not runtime.is_transform_eval_error(e):
                raise
        else:
            av, bv = _f32(a), _f32(b)
            shape = mx.broadcast_shapes(cond.shape, av.shape, bv.shape)
            return mx.broadcast_to(av if pick else bv, shape)
    out: mx.array = mx.where(cond, a, b)
    return out


def _anys_maybe(*xs: mx.array) -> list[bool]:
    """:func:`_any_maybe` of several arrays, read together (one synchronisation)."""
    from genmlx.core import runtime

    if runtime.in_transform():
        return [True] * len(xs)
    try:
        flags = cast(list[bool], mx.stack([mx.any(x) for x in xs]).tolist())
        return [bool(f) for f in flags]
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return [True] * len(xs)
        raise


def _gamma_parts(
    key: mx.array, alpha: Any, shape: tuple[int, ...], scale: float = 1.0
) -> tuple[mx.array, mx.array | None, mx.array]:
    """``(g, log_boost, boost)`` with ``G = g exp(log_boost) ~ Gamma(alpha, rate 1)``.

    ``g ~ Gamma(alpha)`` for ``alpha >= 1`` and ``Gamma(alpha + 1)`` for ``alpha < 1``
    (a positive normal float32: ``d (1 + c x)^3`` with ``d >= 2/3``), of shape
    ``shape``; ``boost`` (alpha's shape) marks ``alpha < 1``; ``log_boost`` is
    ``log(U) / alpha`` there and exactly 0 elsewhere, or ``None`` when eagerly no
    element has ``alpha < 1``. Callers combine them so that the elements without
    boost get the same value either way (eager, compiled and vmapped draws agree).
    Integer ``alpha <= ERLANG_MAX`` is drawn by :func:`_erlang`, the rest by
    Marsaglia–Tsang; eagerly a method no element needs is skipped. Invalid ``alpha``
    gives NaN in ``g``.
    """
    shape = tuple(shape)
    n = math.prod(shape)
    static = alpha
    alpha = _f32(alpha)
    # The per-parameter constants are formed at alpha's own shape (one shared alpha:
    # scalars, and the spilled slots need not look up their element's alpha).
    valid = _finite_pos(alpha)
    a_safe = mx.where(valid, alpha, 1.0)
    boost = a_safe < 1.0
    a1 = mx.where(boost, a_safe + 1.0, a_safe)
    d_safe = a1 - 1.0 / 3.0
    c = mx.rsqrt(9.0 * d_safe)
    d = mx.where(valid, d_safe, mx.nan)  # NaN flows into every draw of an invalid alpha
    d_val = d if scale == 1.0 else d * scale  # the value d v, pre-scaled (plain scale)
    keys = mx.random.split(key, 3)
    erlang = mx.logical_and(a_safe == mx.floor(a_safe), a_safe <= float(ERLANG_MAX))
    erlang = mx.logical_and(erlang, valid)
    need_mt, need_er, need_boost = _anys_maybe(mx.logical_not(erlang), erlang, boost)
    g_mt = g_er = None
    if need_mt:
        # invalid alpha: a squeeze every proposal passes (its value is NaN anyway), so
        # such elements never take the slots of valid ones
        sq = mx.where(valid, 2.0**16 / (108.0 * d_safe), -1e30)
        prm: tuple[mx.array, ...]
        if alpha.size == 1:
            prm = (d_val, c, sq, d)
        else:
            prm = tuple(mx.broadcast_to(a, shape).reshape(-1) for a in (d_val, c, sq, d))
        g_mt = first_accepted(
            _mt_propose, keys[0], (n,), GAMMA_ROUNDS, prm[0], prm, _p_open(static), _mt_resolve
        ).reshape(shape)
    if need_er:
        g_er = _erlang(keys[2], mx.where(erlang, a_safe, 1.0), shape)
        if scale != 1.0:
            g_er = g_er * scale
    if g_mt is None:
        assert g_er is not None
        g = g_er
    elif g_er is None:
        g = g_mt
    else:
        g = mx.where(erlang, g_er, g_mt)
    log_boost = None
    if need_boost:  # eagerly skipped when no element boosts (it would add 0)
        lu = _log_uniform(keys[1], shape)
        log_boost = _where(boost, lu / a_safe, 0.0)
    return g, log_boost, boost


ERLANG_MAX = 4
"""Integer shapes up to this are drawn as sums of exponentials (see :func:`_erlang`)."""


_ERLANG_PER_PARAM = 16  # up to this many shapes (e.g. a Dirichlet's K): one column each


def _erlang_per_param(key: mx.array, k: mx.array, shape: tuple[int, ...]) -> mx.array:
    """:func:`_erlang` for a small array of shapes filling the trailing axes of
    ``shape`` (a Dirichlet's concentrations): each shape's draws form one column with
    factor keys of its own, so eagerly a column draws only its own ``k`` uniforms
    (traced code draws ``ERLANG_MAX`` per column and multiplies the extra ones in as
    exactly 1: the same values)."""
    lead = shape[: len(shape) - k.ndim]
    kf = k.reshape(-1)
    n_par = kf.size
    keys = mx.random.split(key, ERLANG_MAX * n_par).reshape(ERLANG_MAX, n_par, 2)
    known = _values_maybe(kf)
    cols = []
    for p in range(n_par):
        factors = ERLANG_MAX if known is None else int(known[p])
        prod = None
        for j in range(factors):
            u = mx.maximum(mx.random.uniform(shape=lead, key=keys[j, p]), 2.0**-31)
            if j > 0 and known is None:
                u = mx.where(kf[p] > float(j), u, 1.0)
            prod = u if prod is None else prod * u
        assert prod is not None
        cols.append(-mx.log(prod))
    return mx.stack(cols, axis=-1).reshape(shape)


def _values_maybe(x: mx.array) -> list[float] | None:
    """``x``'s values eagerly; ``None`` under a transformation (none can be read)."""
    from genmlx.core import runtime

    if runtime.in_transform():
        return None
    try:
        vals = cast(list[float], x.reshape(-1).tolist())
        return [float(v) for v in vals]
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return None
        raise


def _erlang(key: mx.array, k: mx.array, shape: tuple[int, ...]) -> mx.array:
    """``Gamma(k)`` for integer ``1 <= k <= ERLANG_MAX``: ``-log(U_1 ... U_k)``, a sum
    of ``k`` exponentials — ``k`` uniforms and one ``log``, no rejection. Factor ``j``
    draws from its own key whatever the other shapes are, so eagerly only the factors
    some element needs are drawn (traced code draws all ``ERLANG_MAX``, multiplying by
    exactly 1 where ``j >= k``: the same values). Each uniform is kept above
    ``2**-31`` (the product stays a normal float32; a draw beyond 21.5 per factor has
    probability 2**-31)."""
    if 1 <= k.ndim and k.size <= _ERLANG_PER_PARAM and tuple(shape[-k.ndim :]) == k.shape:
        return _erlang_per_param(key, k, shape)
    keys = mx.random.split(key, ERLANG_MAX)
    top_f = _max_maybe(k)
    top = None if top_f is None else int(top_f)
    factors = ERLANG_MAX if top is None else top
    shared = k.size == 1 and top is not None
    prod = None
    for j in range(factors):
        u = mx.maximum(mx.random.uniform(shape=shape, key=keys[j]), 2.0**-31)
        if j > 0 and not shared:
            u = mx.where(k > float(j), u, 1.0)
        prod = u if prod is None else prod * u
    assert prod is not None
    out: mx.array = -mx.log(prod)
    return out


def log_standard_gamma(key: mx.array, alpha: Any, shape: tuple[int, ...]) -> mx.array:
    """``log G`` for ``G ~ Gamma(alpha, rate 1)``, of shape ``shape``.

    Exact (up to float32 rounding) for every ``alpha > 0``: Marsaglia–Tsang (2000)
    with normals from Marsaglia's polar method and up to ``GAMMA_ROUNDS`` proposals
    per element, the first accepted one kept (never accepted: probability < 3e-14,
    then ``log(alpha - 1/3)`` is returned). Every element gets a first proposal, and
    only the elements still rejected draw further ones
    (:func:`genmlx.dists.rejection.first_accepted`: about a quarter per round, most of
    them rejected polar pairs); the squeeze test decides 90% of proposals without a
    logarithm, the exact test runs only for the rest. Eagerly, levels no element
    reaches are skipped, and ``mx.vmap``/``mx.compile`` give the same draws. For
    ``alpha < 1`` it samples ``Gamma(alpha + 1)`` and adds ``log(U) / alpha`` — in log
    space, so tiny ``alpha`` (whose draws underflow float32) stays exact. Invalid
    ``alpha`` (``<= 0`` or NaN) gives NaN.

    Args:
        key: PRNG key.
        alpha: shape parameter, broadcastable to ``shape``.
        shape: the output shape.
    """
    g, log_boost, _ = _gamma_parts(key, alpha, shape)
    out = mx.log(g)
    return out if log_boost is None else out + log_boost


def scaled_gamma(
    key: mx.array,
    alpha: Any,
    shape: tuple[int, ...],
    log_scale: Any = 0.0,
    *,
    inverse: bool = False,
) -> mx.array:
    """``exp(log_scale) * G`` (``inverse``: ``exp(log_scale) / G``) for
    ``G ~ Gamma(alpha, rate 1)``, clamped into ``[2**-126, float32 max]``; NaN
    (invalid ``alpha`` or ``log_scale``) stays NaN.

    Formed in linear space, ``g * exp(log_scale)`` (``log_scale`` has the parameters'
    shape, so its ``exp`` is cheap): one multiplication per draw. Where ``alpha < 1``
    (whose draws may underflow float32) it is formed in log space,
    ``exp(log g + log_boost + log_scale)``, so a draw that underflows on its own but
    not once scaled is still right; eagerly that branch is skipped when no element
    needs it.

    Example:
        >>> import mlx.core as mx
        >>> scaled_gamma(mx.random.key(0), 2.0, (3,), mx.log(mx.array(0.5))).shape
        (3,)
    """
    if _in_range(alpha, log_scale, inverse):
        # plain parameters, no boost, nothing to clamp: the scale goes into d itself
        g, _, _ = _gamma_parts(key, alpha, shape, math.exp(float(log_scale)))
        return g
    g, log_boost, boost = _gamma_parts(key, alpha, shape)
    ls = _f32(log_scale)
    unit = not inverse and is_plain_number(log_scale) and float(log_scale) == 0.0
    if unit:
        out = g  # g * exp(0): the same values
    else:
        sc = mx.exp(ls)
        out = sc / g if inverse else g * sc
    if log_boost is not None:  # boosted elements in log space; the others as above
        lg = mx.log(g) + log_boost
        out = _where(boost, _exp(ls - lg if inverse else lg + ls), out)
    if log_boost is None and not inverse and _all_maybe(_in_range_arr(alpha, ls)):
        return out  # eagerly: every draw is in range, the clip would change nothing
    res: mx.array = mx.clip(out, _TINY, _F32_MAX)
    return res


def _in_range_arr(alpha: Any, ls: mx.array) -> mx.array:
    """:func:`_in_range` elementwise for array parameters (``1 <= alpha <= 2**20``,
    ``|log_scale| <= 27``): where it holds, ``g * exp(log_scale)`` is a positive
    normal float32."""
    a = _f32(alpha)
    ok: mx.array = mx.logical_and(mx.logical_and(a >= 1.0, a <= 2.0**20), mx.abs(ls) <= 27.0)
    return ok


def _in_range(alpha: Any, log_scale: Any, inverse: bool) -> bool:
    """Whether ``g * exp(log_scale)`` is surely a positive normal float32, from plain
    numbers alone (so the same eagerly and traced): ``1 <= alpha <= 2**20`` gives
    ``g = d (1 + c x)^3`` in ``[2**-73, 2**27]`` (``1 + c x >= 2**-24``, ``|x| < 9``;
    an Erlang draw lies in ``[2**-25, 90]``), and ``|log_scale| <= 27`` keeps the
    product within ``[2**-112, 2**66]``."""
    from genmlx.dists.base import is_plain_number

    if inverse or not (is_plain_number(alpha) and is_plain_number(log_scale)):
        return False
    return 1.0 <= float(alpha) <= 2.0**20 and abs(float(log_scale)) <= 27.0


def standard_gamma(key: mx.array, alpha: Any, shape: tuple[int, ...]) -> mx.array:
    """``G ~ Gamma(alpha, rate 1)`` of shape ``shape`` (``alpha`` broadcasts to it).

    Clamped into ``[2**-126, float32 max]``: draws below the smallest normal float32
    (common for tiny ``alpha``: a ``Gamma(0.01)`` draw is below ``1.2e-38`` with
    probability 0.42) are not representable as normal floats (and subnormals are
    flushed to zero on some backends), so they are returned as ``2**-126`` — never 0,
    so ``log`` of a draw and the log density at it stay finite. Callers that need the
    exact tail use :func:`log_standard_gamma` (same key, same draws). Invalid
    ``alpha`` gives NaN.
    """
    return scaled_gamma(key, alpha, shape)


def _all_maybe(x: mx.array) -> bool:
    """Whether every element of ``x`` holds: its value eagerly, ``False`` under a
    transformation (where no value can be read)."""
    return not _any_maybe(mx.logical_not(x))


def _johnk_propose(
    key: mx.array, rshape: tuple[int, ...], prm: tuple[mx.array, ...]
) -> tuple[mx.array, mx.array]:
    """Jöhnk's proposals for ``Beta(a, b)``, ``a, b <= 1``: ``X = U^(1/a)``,
    ``Y = V^(1/b)``, accepted when ``X + Y <= 1``, the value ``X / (X + Y)``.

    ``prm = (1/a, 1/b, t)``; a proposal is accepted when ``log(X + Y) <= t`` (``t = 0``;
    ``+inf`` for elements drawn another way, so that they never take a spill slot).
    In log space throughout (``log X = log(U) / a``; ``log(X + Y) = M + log(1 + E)``,
    ``M = max(log X, log Y)``, ``E = exp(-|log X - log Y|)``; the value is
    ``exp(log X - log(X + Y))``), so tiny shapes, whose ``X`` and ``Y`` underflow
    float32, stay exact. The uniforms are ``(w + 1/2) 2**-32`` of 32-bit words ``w``.
    """
    ia, ib, thr = prm
    n = math.prod(rshape)
    u = _words(key, 2 * n).astype(mx.float32) * 2.0**-32 + 2.0**-33
    lu = mx.log(u)
    lx = lu[:n].reshape(rshape) * ia
    ly = lu[n:].reshape(rshape) * ib
    m = mx.maximum(lx, ly)
    e = _exp(mx.minimum(lx, ly) - m)  # in (0, 1]
    ls = m + mx.log(1.0 + e)
    return _exp(lx - ls), ls <= thr


def _johnk_p_reject(a: Any, b: Any) -> float:
    """Jöhnk's rejection probability ``1 - Gamma(a+1) Gamma(b+1) / Gamma(a+b+1)`` for
    plain numbers ``a, b`` in ``(0, 1]``; else its largest value there, 1/2 (at
    ``a = b = 1``)."""
    from genmlx.dists.base import is_plain_number

    if is_plain_number(a) and is_plain_number(b) and 0 < a <= 1 and 0 < b <= 1:
        fa, fb = float(a), float(b)
        lacc = math.lgamma(fa + 1.0) + math.lgamma(fb + 1.0) - math.lgamma(fa + fb + 1.0)
        return min(0.5, max(1.0 - math.exp(lacc), 1e-3))
    return 0.5


def _johnk_rounds(p_reject: float) -> int:
    """Jöhnk proposals per element: all rejected with probability < 3e-14."""
    return max(2, math.ceil(math.log(3e-14) / math.log(p_reject)))


def _standard_beta_johnk(
    key: mx.array, a: Any, b: Any, use: mx.array, shape: tuple[int, ...]
) -> mx.array:
    """Jöhnk's algorithm where ``use`` (``a, b <= 1``, valid); elsewhere the value is
    meaningless (those elements accept their first proposal and take no slot)."""
    af, bf = _f32(a), _f32(b)
    ia = mx.where(use, 1.0 / mx.where(use, af, 1.0), 1.0)
    ib = mx.where(use, 1.0 / mx.where(use, bf, 1.0), 1.0)
    thr = mx.where(use, 0.0, math.inf)
    fb = mx.where(use, af / (af + bf), 0.5)
    p = _johnk_p_reject(a, b)
    n = math.prod(shape)
    prm: tuple[mx.array, ...]
    if ia.size == 1 and ib.size == 1:
        prm = (ia.reshape(()), ib.reshape(()), thr.reshape(()))
    else:
        prm = tuple(mx.broadcast_to(x, shape).reshape(-1) for x in (ia, ib, thr))
    fb = fb.reshape(()) if fb.size == 1 else mx.broadcast_to(fb, shape).reshape(-1)
    out = first_accepted(_johnk_propose, key, (n,), _johnk_rounds(p), fb, prm, p)
    return out.reshape(shape)


def standard_beta(key: mx.array, a: Any, b: Any, shape: tuple[int, ...]) -> mx.array:
    """``Beta(a, b)`` draws of shape ``shape`` (``a``, ``b`` broadcast to it).

    Where both shapes are at most 1, Jöhnk's algorithm (1964): ``X = U^(1/a)``,
    ``Y = V^(1/b)`` for two uniforms, accepted when ``X + Y <= 1`` (probability
    ``Gamma(a+1) Gamma(b+1) / Gamma(a+b+1) >= 1/2``), giving ``X / (X + Y)`` exactly
    Beta(a, b) distributed; formed in log space, so exact for tiny ``a``, ``b`` (see
    ``_johnk_propose``; up to ``_johnk_rounds`` proposals, later ones only for the
    rejected, never accepted: probability < 3e-14, then ``a / (a + b)``). Elsewhere
    ``X / (X + Y)`` with ``X ~ Gamma(a)``, ``Y ~ Gamma(b)``; when a parameter is below
    1 (the boosted gamma draws may underflow float32) it is formed in log space as
    ``sigmoid(log X - log Y)``. Eagerly a method no element needs is skipped (compiled
    and vmapped sampling run both and select: the same draws). Clamped into
    ``[2**-126, 1 - 2**-24]`` so a draw is never exactly 0 or 1 (the log density can be
    infinite there). Invalid parameters give NaN.

    Random stream: Jöhnk's method for shapes <= 1 is new on 2026-12-07; the same key
    gives other beta draws than before (same law).
    """
    shape = tuple(shape)
    keys = mx.random.split(key, 3)
    af, bf = _f32(a), _f32(b)
    use = mx.logical_and(
        mx.logical_and(_finite_pos(af), _finite_pos(bf)), mx.logical_and(af <= 1.0, bf <= 1.0)
    )
    johnk = gam = None
    need_johnk, need_gamma = _anys_maybe(use, mx.logical_not(use))
    if need_johnk:
        johnk = _standard_beta_johnk(keys[2], a, b, use, shape)
    if need_gamma:
        gam = _standard_beta_gamma(keys[0], keys[1], a, b, shape)
    if johnk is None:
        assert gam is not None
        out = gam
    elif gam is None:
        out = johnk
    else:
        out = _where(use, johnk, gam)
    res: mx.array = mx.clip(out, _TINY, _ONE_MINUS)
    return res


def _standard_beta_gamma(
    kx: mx.array, ky: mx.array, a: Any, b: Any, shape: tuple[int, ...]
) -> mx.array:
    """``X / (X + Y)`` for gamma draws (in log space where a shape is below 1)."""
    gx, lbx, box = _gamma_parts(kx, a, shape)
    gy, lby, boy = _gamma_parts(ky, b, shape)
    out = gx / (gx + gy)
    if lbx is not None or lby is not None:  # a boosted side: in log space there
        lx = mx.log(gx) if lbx is None else mx.log(gx) + lbx
        ly = mx.log(gy) if lby is None else mx.log(gy) + lby
        # sigmoid(lx - ly), with the cheaper exponential
        out = _where(mx.logical_or(box, boy), 1.0 / (1.0 + _exp(ly - lx)), out)
    return out


def standard_dirichlet(key: mx.array, alpha: Any, shape: tuple[int, ...]) -> mx.array:
    """``Dirichlet(alpha)`` draws of shape ``shape``; the last axis is the event.

    ``alpha`` (last axis K) broadcasts to ``shape``. Gamma draws normalised by their
    sum; when a concentration is below 1 (its draws may underflow float32), a softmax
    of log-gamma draws, so tiny concentrations neither underflow to 0/0 nor lose the
    simplex. A single concentration vector shared by every event (1-D, ``K <= 16``)
    is drawn column by column, each column a scalar-shape gamma draw
    (``_dirichlet_columns``). Components are clamped below at ``2**-126`` (the sum
    moves by at most ``K * 1.2e-38``). Invalid concentrations give NaN.
    """
    shape = tuple(shape)
    cols = _columns(alpha, shape)
    if cols is not None:
        return _dirichlet_columns(key, cols, shape)
    g, log_boost, boost = _gamma_parts(key, alpha, shape)
    out = g / mx.sum(g, axis=-1, keepdims=True)
    if log_boost is not None:  # events with a boosted component: a softmax of logs
        soft = mx.softmax(mx.log(g) + log_boost, axis=-1)
        row = boost if boost.ndim == 0 else mx.any(boost, axis=-1, keepdims=True)
        out = mx.where(row, soft, out)
    res: mx.array = mx.maximum(out, _TINY)
    return res


_COLUMNS_MAX = 16


def _columns(alpha: Any, shape: tuple[int, ...]) -> list[Any] | None:
    """The K concentrations of a 1-D ``alpha`` shared by all events of ``shape``
    (plain numbers stay plain, so the slots are sized for them; array entries are
    0-d arrays), or ``None`` (a batch of vectors, or ``K > 16``)."""
    vals = _plain_values(alpha)
    if isinstance(alpha, (list, tuple)) and vals is not None and len(vals) == len(alpha):
        if 1 <= len(vals) <= _COLUMNS_MAX and len(shape) >= 1 and shape[-1] == len(vals):
            return list(vals)
        return None
    a = _f32(alpha)
    if a.ndim == 1 and 1 <= a.size <= _COLUMNS_MAX and len(shape) >= 1 and shape[-1] == a.size:
        return [a[i] for i in range(a.size)]
    return None


def _dirichlet_columns(key: mx.array, cols: list[Any], shape: tuple[int, ...]) -> mx.array:
    """:func:`standard_dirichlet` for one shared concentration vector: each column's
    gammas are drawn with its own scalar shape (its own method, Erlang or
    Marsaglia–Tsang, and spill slots for one shape, not the worst of K), then
    stacked; the boost, where a column has one, is combined in log space by a
    softmax over the event (every event has the same columns, so the choice is one
    scalar)."""
    lead = shape[:-1]
    keys = mx.random.split(key, len(cols))
    gs_, lbs, boosts = [], [], []
    for i, a in enumerate(cols):
        g, lb, bo = _gamma_parts(keys[i], a, lead)
        gs_.append(g)
        lbs.append(lb)
        boosts.append(bo)
    total = gs_[0]
    for gi in gs_[1:]:
        total = total + gi
    # g / sum(g) as the batched path forms it (the same rounding of the simplex)
    out = mx.stack([gi / total for gi in gs_], axis=-1)
    if all(lb is None for lb in lbs) and _all_maybe(
        mx.stack([_in_range_arr(a, mx.array(0.0)) for a in cols])
    ):
        # eagerly, every shape in [1, 2**20]: each g in [2**-73, 2**27], so every
        # component is above 2**-126 and the clamp below would change nothing
        return out
    if any(lb is not None for lb in lbs):
        lg = mx.stack(
            [mx.log(gi) if lb is None else mx.log(gi) + lb for gi, lb in zip(gs_, lbs)], axis=-1
        )
        row = boosts[0]
        for bo in boosts[1:]:
            row = mx.logical_or(row, bo)
        out = _where(row, mx.softmax(lg, axis=-1), out)
    res: mx.array = mx.maximum(out, _TINY)
    return res


# ------------------------------------------------------------------- Student's t
_T_REJECT = 1.0 - math.pi / 4.0  # a polar pair falls outside the unit disc
T_ROUNDS = 20
"""Proposals per element of :func:`standard_t`: each is accepted with probability
pi/4, so an element is never accepted with probability ``(1 - pi/4)**20 < 5e-14``."""
_Y_CAP = 80.0  # expm1 below float32 overflow; the rest of y goes through exp
# W >= 2**-62 (the smallest nonzero u^2 + v^2 from 32-bit words), so y = -2 log(W) / df
# <= 85.96 / df stays below _Y_CAP for df >= 1.08.
_T_SMALL_DF = 1.08


def _bailey_propose(big_y: bool) -> Any:
    def propose(
        key: mx.array, rshape: tuple[int, ...], prm: tuple[mx.array, ...]
    ) -> tuple[mx.array, mx.array]:
        df, m2_df = prm
        n = math.prod(rshape)
        words = _words(key, 2 * n)
        u = (mx.view(words[:n], mx.int32).astype(mx.float32) * 2.0**-31).reshape(rshape)
        v = (mx.view(words[n:], mx.int32).astype(mx.float32) * 2.0**-31).reshape(rshape)
        w = u * u + v * v
        ok = mx.logical_and(w < 1.0, w > 0.0)
        y = mx.log(w) * m2_df
        yc = mx.minimum(y, _Y_CAP) if big_y else y
        t = u * mx.sqrt(df * mx.expm1(yc)) * mx.rsqrt(w)
        if big_y:  # exactly 1 where y <= _Y_CAP: the same draws as without it
            t = t * mx.exp(0.5 * (y - yc))
        return t, ok

    return propose


def standard_t(key: mx.array, df: Any, shape: tuple[int, ...]) -> mx.array:
    """Student's t draws with ``df`` degrees of freedom (broadcast to ``shape``).

    Bailey's polar method (Math. Comp. 62, 1994): ``(u, v)`` uniform on the unit disc,
    ``W = u^2 + v^2``, then ``T = u sqrt(df (W^(-2/df) - 1) / W)`` is exactly t(df)
    distributed — one ``log``, one ``expm1`` and no gamma variate per draw (the
    ``expm1`` keeps it accurate for large ``df``, where ``T`` tends to a normal). A
    pair outside the disc is rejected (probability 1 - pi/4; up to ``T_ROUNDS``
    proposals, later ones only for the still-rejected elements, see
    :func:`genmlx.dists.rejection.first_accepted`; never accepted: 0). For
    ``df < 1.08`` the factor ``W^(-2/df)`` may exceed float32 while ``T`` does not;
    there the part of the exponent above 80 goes through ``exp`` separately. Draws
    beyond float32's range are returned as +-inf (callers clamp). Invalid ``df``
    gives NaN.

    Example:
        >>> import mlx.core as mx
        >>> standard_t(mx.random.key(0), 4.0, (3,)).shape
        (3,)
    """
    shape = tuple(shape)
    n = math.prod(shape)
    nu = _f32(df)
    nu = mx.where(_finite_pos(nu), nu, mx.nan)
    big_y = _any_maybe(mx.logical_not(nu >= _T_SMALL_DF))
    m2 = -2.0 / nu
    if nu.size == 1:
        prm = (nu, m2)
    else:
        prm = (mx.broadcast_to(nu, shape).reshape(-1), mx.broadcast_to(m2, shape).reshape(-1))
    out = first_accepted(_bailey_propose(big_y), key, (n,), T_ROUNDS, mx.array(0.0), prm, _T_REJECT)
    return out.reshape(shape)
