"""Discrete distributions (and ``piecewise_uniform``).

Integer-valued distributions return ``int32`` samples, ``bernoulli`` returns booleans,
and values are 0-based (DESIGN §6) except ``zipf``, whose support is ``1..n``.

Exactness. Every sampler is exact: inversion, transformed rejection or exact mixtures,
never a normal approximation. Rejection samplers give each element up to a fixed
number of proposals and keep the first accepted one; the number is chosen so that an
element is never accepted with probability < 1e-12 (each docstring states the bound).
Only the first round runs for every element: later rounds run for the still-rejected
ones, gathered into smaller batches whose sizes depend only on the sample shape
(:mod:`genmlx.dists.rejection`), so the samplers work under ``mx.vmap`` and
``mx.compile``. Shortcuts taken only eagerly (skipping a branch no element takes,
guide tables, stopping once every element has accepted) never change a draw:
eager, compiled and vmapped sampling give the same values for the same key. Inversion
samplers resolve probabilities to float32 precision (``mx.random.uniform`` has a
resolution of 2⁻³² near 0; tail searches compare against it).

Random stream: on 2026-12-07 the rejection levels (:mod:`genmlx.dists.rejection`), the
negative binomial (a pmf table for shared parameters) and the multinomial (trial by
trial for counts up to 32) changed, so the same key gives other draws than before
(same laws).

Log-probabilities are computed in log space with Loader's saddle-point form
(``bd0`` and the Stirling remainders), so that e.g. ``poisson.log_prob(10000, 10000.)``
and ``binomial.log_prob(500, 1000, 0.5)`` are accurate to float32 precision instead of
losing three digits to the cancellation of ``lgamma`` terms.

Enumeration. ``support(*params)`` (for ``is_enumerable`` distributions) returns an
array of shape ``(M,) + batch_shape + event_shape`` whose entry ``[j]`` is the ``j``-th
support point, so ``log_prob(support, *params)`` has shape ``(M,) + batch_shape`` and
sums (in probability) to one along axis 0. With batched parameters the support is the
union over the batch (``log_prob`` is ``-inf`` at points outside one element's
support). ``support`` evaluates its parameters (it needs the support size), so it is
for eager use, not inside ``mx.compile``/``mx.vmap``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core import fused as _fused
from genmlx.core import runtime
from genmlx.core.distribution import Distribution, Param
from genmlx.dists.base import arr, batch_shape, check_param, sample_shape, where_valid

__all__ = [
    "Bernoulli",
    "BetaBinomial",
    "Binomial",
    "Categorical",
    "CategoricalLogits",
    "Delta",
    "DirichletMultinomial",
    "Geometric",
    "Multinomial",
    "NegBinomial",
    "PiecewiseUniform",
    "Poisson",
    "UniformDiscrete",
    "Zipf",
    "bernoulli",
    "beta_binomial",
    "binomial",
    "categorical",
    "categorical_logits",
    "delta",
    "dirichlet_multinomial",
    "flip",
    "geometric",
    "multinomial",
    "neg_binomial",
    "piecewise_uniform",
    "poisson",
    "uniform_discrete",
    "zipf",
]

Shape = tuple[int, ...]

_LOG_2PI = math.log(2.0 * math.pi)
_HALF_LOG_2PI = 0.5 * _LOG_2PI
# Largest float32 below 2**31: clip to it before casting counts to int32.
_INT32_MAX_F = 2147483520.0
# Inversion cap: P(Poisson(10) > 40) = 1.8e-13, and a Binomial with mean < 10 has a
# lighter right tail than the Poisson with the same mean (Anderson & Samuels 1967).
_INV_CAP = 40
# Rejection rounds. Per-round acceptance, computed by numerical integration over the
# whole parameter range: PTRS >= 0.7526 (at rate 10), BTRS >= 0.7091 (at n p = 10,
# p = 1/2). 0.2474**21 = 1.8e-13 and 0.2909**24 = 1.4e-13.
_PTRS_ROUNDS = 21
_PTRS_ACCEPT = 0.7526  # the smallest per-round acceptance probability of PTRS
_BTRS_ROUNDS = 24
_BTRS_ACCEPT = 0.7091  # the smallest per-round acceptance probability of BTRS
# uniform_discrete: a 32-bit draw is rejected with probability < m / 2**32 <= 2**-8 for
# ranges m <= 2**24; 5 rounds give 2**-40 = 9.1e-13.
_UD_ROUNDS = 5
_V_MIN = 2.0**-33  # replaces an exact-zero uniform in tail searches
_CHUNK_ELEMS = 2**21  # rejection rounds evaluated together (see _first_accepted)


# ---------------------------------------------------------------------------- helpers


def _f32(x: Any) -> mx.array:
    a = arr(x)
    return a if a.dtype == mx.float32 else a.astype(mx.float32)


def _and(*conds: mx.array) -> mx.array:
    """Elementwise AND. ``mx.logical_and``, not ``&``: MLX 0.32's vmap of the bitwise
    ops (``&``, ``|``, ``^``, ``<<``) drops the batch axis when the first operand is
    unbatched, so ``&``/``|`` are avoided throughout this module."""
    out = conds[0]
    for c in conds[1:]:
        out = mx.logical_and(out, c)
    return out


def _or(*conds: mx.array) -> mx.array:
    """Elementwise OR (``mx.logical_or``; see :func:`_and`)."""
    out = conds[0]
    for c in conds[1:]:
        out = mx.logical_or(out, c)
    return out


def _is_int(x: mx.array) -> mx.array:
    return _and(mx.isfinite(x), x == mx.floor(x))


def _split(key: mx.array, n: int) -> list[mx.array]:
    ks = mx.random.split(key, n)
    return [ks[i] for i in range(n)]


def _uniform(key: mx.array, shape: Shape) -> mx.array:
    return mx.random.uniform(shape=shape, key=key)


def _bits(key: mx.array, shape: Shape) -> mx.array:
    """Uniform uint32 words (MLX's threefry bits, which ``mx.random.split`` returns)."""
    size = math.prod(shape)
    if size == 0:
        return mx.zeros(shape, dtype=mx.uint32)
    words = mx.random.split(key, (size + 1) // 2).reshape(-1)
    return words[:size].reshape(shape)


def _to_int32(x: mx.array) -> mx.array:
    return mx.clip(x, -_INT32_MAX_F, _INT32_MAX_F).astype(mx.int32)


def _check_prob(dist: str, name: str, p: Any) -> None:
    check_param(dist, name, p, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def _check_count(dist: str, name: str, n: Any) -> None:
    check_param(dist, name, n, lambda v: v >= 0 and v == math.floor(v), "an integer >= 0")


def _check_positive(dist: str, name: str, x: Any) -> None:
    check_param(dist, name, x, lambda v: v > 0 and math.isfinite(v), "> 0 and finite")


def _at_least(low: Any) -> C.Constraint:
    """The range of an inclusive integer upper bound: ``low, low + 1, ...``."""
    return C.integer_interval(low, math.inf)


def _check_weights(dist: str, name: str, w: Any) -> None:
    """Check a Python list of probabilities/weights (arrays are checked lazily)."""
    if isinstance(w, (list, tuple)) and all(isinstance(v, (int, float)) for v in w):
        if len(w) == 0:
            raise ValueError(f"{dist}: {name} must have at least one entry")
        for v in w:
            check_param(dist, f"{name} entry", v, lambda t: t >= 0 and math.isfinite(t), ">= 0")
        check_param(dist, f"sum of {name}", float(sum(w)), lambda t: t > 0, "> 0")


def _check_concentrations(dist: str, name: str, w: Any) -> None:
    if isinstance(w, (list, tuple)) and all(isinstance(v, (int, float)) for v in w):
        for v in w:
            _check_positive(dist, f"{name} entry", v)


def _eager_max(x: mx.array) -> int:
    return cast(int, mx.max(x).astype(mx.int32).item()) if x.size else 0


def _enum(values: mx.array, batch: Shape, event: Shape = ()) -> mx.array:
    """``values`` (shape ``(M,) + event``) broadcast to ``(M,) + batch + event``."""
    m = values.shape[0]
    v = values.reshape((m,) + (1,) * len(batch) + tuple(event))
    return mx.broadcast_to(v, (m, *batch, *event))


# ---------------------------------------------------------- log-space building blocks

_S0, _S1, _S2, _S3, _S4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188


def _mu_series(y: mx.array) -> mx.array:
    """Binet's function μ(y) = lgamma(y) − (y−½)log y + y − ½log 2π, for y > 15."""
    r = 1.0 / y
    r2 = r * r
    out: mx.array = r * (_S0 - r2 * (_S1 - r2 * (_S2 - r2 * (_S3 - r2 * _S4))))
    return out


_ARANGE16 = mx.arange(16, dtype=mx.float32)


def _lgamma_rem(y: mx.array) -> mx.array:
    """g(y) = lgamma(y) − y log y + y for y > 0 (garbage but finite elsewhere).

    For y > 16 by Stirling's series; below, by the recurrence
    g(y) = g(y + 16) + Σ_{i<16} [(y+i+1) log1p(1/(y+i)) − 1], which avoids the
    cancellation of ``lgamma(y) − y log y`` (absolute error ~1e-6 instead of ~1e-5).
    """
    big = y > 16.0
    yb = mx.where(big, y, 17.0)
    g_big = -0.5 * mx.log(yb) + _HALF_LOG_2PI + _mu_series(yb)
    ys = mx.where(_or(big, ~(y > 0)), 1.0, y)
    z = ys + 16.0
    acc = -0.5 * mx.log(z) + _HALF_LOG_2PI + _mu_series(z)
    zi = mx.expand_dims(ys, -1) + _ARANGE16
    acc = acc + mx.sum((zi + 1.0) * mx.log1p(1.0 / zi) - 1.0, axis=-1)
    out: mx.array = mx.where(big, g_big, acc)
    return out


_LFACT_TABLE = mx.array(
    [0.0] + [math.lgamma(i + 1.0) - i * math.log(i) + i for i in range(1, 17)],
    dtype=mx.float32,
)


def _lfact_rem(z: mx.array) -> mx.array:
    """log z! − z log z + z for integers z ≥ 0 (0 at z = 0): ½log(2πz) + μ(z)."""
    big = z > 16.0
    zb = mx.where(big, z, 17.0)
    f_big = 0.5 * mx.log(zb) + _HALF_LOG_2PI + _mu_series(zb)
    idx = mx.stop_gradient(mx.clip(mx.where(mx.isfinite(z), z, 0.0), 0.0, 16.0).astype(mx.int32))
    out: mx.array = mx.where(big, f_big, mx.take(_LFACT_TABLE, idx))
    return out


def _bd0(x: mx.array, m: mx.array, d: mx.array | None = None) -> mx.array:
    """Loader's deviance term x log(x/m) + m − x ≥ 0, without cancellation.

    ``d`` is ``x − m`` when the caller knows it more precisely than the subtraction.
    ``x ≥ 0`` and ``m ≥ 0``; ``bd0(0, m) = m``.
    """
    if d is None:
        d = x - m
    s = x + m
    v = d / mx.where(s > 0, s, 1.0)
    small = mx.abs(v) < 0.25
    vs = mx.where(small, v, 0.0)
    # d v + 2 x v Σ_{j=1..8} v^(2j) / (2j + 1), by Horner in v²
    v2 = vs * vs
    poly = mx.zeros_like(v2)
    for j in range(8, 0, -1):
        poly = v2 * (poly + 1.0 / (2 * j + 1))
    acc = d * vs + 2.0 * x * vs * poly
    pos = x > 0
    ratio = mx.where(pos, x, 1.0) / mx.where(_and(pos, m > 0), m, 1.0)
    direct = mx.where(pos, x * mx.log(ratio), 0.0) - d
    out: mx.array = mx.where(small, acc, direct)
    return out


def _poisson_lp(k: mx.array, lam: mx.array, d: mx.array | None = None) -> mx.array:
    """log Poisson(k; lam) for integer k ≥ 0 and lam > 0."""
    out: mx.array = -_bd0(k, lam, d) - _lfact_rem(k)
    return out


def _binom_lp(
    k: mx.array, n: mx.array, p: mx.array, q: mx.array, d: mx.array | None = None
) -> mx.array:
    """log Binomial(k; n, p) for integers 0 ≤ k ≤ n and 0 < p < 1 (q = 1 − p)."""
    if d is None:
        d = k - n * p
    out: mx.array = (
        -_bd0(k, n * p, d)
        - _bd0(n - k, n * q, -d)
        + _lfact_rem(n)
        - _lfact_rem(k)
        - _lfact_rem(n - k)
    )
    return out


# ------------------------------------------------------------------- core samplers


def _survival_search(v: mx.array, f: mx.array) -> mx.array:
    """Inversion on the survival function: #{i ≥ 1 : v < Σ_{j ≥ i} f_j}.

    ``f`` holds the pmf at ``0..cap`` on its last axis; the survival sums are formed
    tail first (reverse cumsum), so small tail probabilities keep relative accuracy.
    ``f`` may have fewer leading axes than ``v`` (a table shared by many draws).
    """
    surv = mx.cumsum(f[..., 1:], axis=-1, reverse=True)
    return _count_above(v, surv)


def _survival_search_rows(v: mx.array, f0: mx.array, step: Callable[[int], mx.array]) -> mx.array:
    """:func:`_survival_search` for tables that differ per draw, without ``[..., cap]``
    scans: the pmf ``f_j = f_(j-1) · step(j)`` (``f_0 = f0``) and the survival sums
    (tail first) are formed one column at a time on whole vectors. Eagerly, the
    comparisons no draw can pass (``max S_j <= min v``) are skipped: the count is the
    same as under ``mx.vmap``/``mx.compile``, where all are made.
    """
    fs = [f0]
    for j in range(1, _INV_CAP + 1):
        fs.append(fs[-1] * step(j))
    surv: list[mx.array] = [mx.zeros_like(f0)] * (_INV_CAP + 1)
    acc = mx.zeros_like(f0)
    for j in range(_INV_CAP, 0, -1):
        acc = acc + fs[j]
        surv[j] = acc
    used = _INV_CAP
    # [min v, max S_1, ..., max S_cap], read together (under mx.compile the tops alone
    # may be readable while v is not)
    tops = _eager_array(mx.stack([mx.min(v)] + [mx.max(surv[j]) for j in range(1, _INV_CAP + 1)]))
    if tops is not None:
        used = int((tops[1:] > tops[0]).sum())  # surv is non-increasing in j: a prefix
    out = mx.zeros(mx.broadcast_shapes(v.shape, f0.shape), dtype=mx.int32)
    for j in range(1, used + 1):
        out = out + (v < surv[j]).astype(mx.int32)
    return out


_GUIDE_BITS = 5  # mantissa bits per guide-table bucket (buckets ~3% wide in v)
_GUIDE_OFF = (127 - 33) << _GUIDE_BITS  # first bucket: v = 2**-33 (= _V_MIN)
_GUIDE_N = 33 << _GUIDE_BITS  # buckets up to v < 1


def _eager_array(x: mx.array) -> Any:
    """``x`` as a NumPy array, or ``None`` under a transformation (no value to read)."""
    import numpy as np

    if runtime.in_transform():
        return None
    try:
        return np.array(x)
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return None
        raise


def _count_above(v: mx.array, surv: mx.array) -> mx.array:
    """#{j : v < surv_j} for ``surv`` non-increasing on its last axis, ``v`` in
    ``[_V_MIN, 1)`` (int32, of ``v``'s shape broadcast with ``surv.shape[:-1]``).

    When one table serves every draw (``surv`` has a single row) and values can be
    read (eagerly), a guide table over ``v``'s float32 bit pattern (exponent and top
    mantissa bits: buckets a few percent wide, on a log scale so the tail is resolved
    too) gives each bucket's guaranteed count; only the few comparisons a bucket
    leaves open are made per draw. The count is the same as the full comparison's
    (the same float32 comparisons decide it), so eager and traced draws agree.
    """
    import numpy as np

    cap = surv.shape[-1]
    if surv.size == cap and cap > 0:
        s = _eager_array(surv.reshape(-1))
        if s is not None:
            s = s.astype(np.float32)
            edges = (
                (np.arange(_GUIDE_N + 1, dtype=np.uint32) + _GUIDE_OFF) << (23 - _GUIDE_BITS)
            ).view(np.float32)
            lo_e, hi_e = edges[:-1], edges[1:]
            # v in [lo_e, hi_e): surv_j >= hi_e is surely counted, surv_j <= lo_e surely not.
            sure = (s[None, :] >= hi_e[:, None]).sum(axis=1).astype(np.int32)
            maybe = (s[None, :] > lo_e[:, None]).sum(axis=1).astype(np.int32)
            width = int((maybe - sure).max())
            bucket = (v.view(mx.uint32) >> (23 - _GUIDE_BITS)).astype(mx.int32) - _GUIDE_OFF
            bucket = mx.clip(bucket, 0, _GUIDE_N - 1)
            base = mx.take(mx.array(sure), bucket)
            out = base
            if width:
                padded = mx.array(np.concatenate([s, np.zeros(width, np.float32)]))
                for t in range(width):
                    out = out + (v < mx.take(padded, base + t)).astype(mx.int32)
            return out
    return mx.sum((mx.expand_dims(v, -1) < surv).astype(mx.int32), axis=-1)


def _eager_any(x: mx.array) -> bool:
    """Whether any element of ``x`` holds; ``True`` under a transformation (where both
    branches of a per-element choice must be computed)."""
    a = _eager_array(mx.any(x))
    return True if a is None else bool(a)


def all_done(done: mx.array) -> bool:
    """Eagerly, whether every element of ``done`` holds (so remaining rejection rounds
    can be skipped: the result is the same either way). Under a transformation
    (``mx.vmap``/``mx.compile``, where no value can be read) it says ``False`` and the
    fixed number of rounds runs."""
    if runtime.in_transform():
        return False
    try:
        return bool(mx.all(done).item())
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return False
        raise


def _first_accepted(
    propose: Callable[[mx.array, Shape, tuple[mx.array, ...]], tuple[mx.array, mx.array]],
    key: mx.array,
    shape: Shape,
    rounds: int,
    fallback: mx.array,
    params: tuple[mx.array, ...],
    p_reject: float,
) -> mx.array:
    """Per element, the first accepted of ``rounds`` proposals (``fallback`` if none);
    see :func:`genmlx.dists.rejection.first_accepted` (later rounds run only for the
    elements still rejected)."""
    from genmlx.dists.rejection import first_accepted

    return first_accepted(propose, key, shape, rounds, fallback, params, p_reject)


def _poisson_sample(key: mx.array, lam: mx.array, shape: Shape) -> mx.array:
    """Exact Poisson draws of ``shape`` (``lam`` broadcasts to it, lam ≥ 0).

    Per-parameter quantities (the inversion table, PTRS constants) are formed at the
    parameter's own shape, so a scalar rate pays for them once, not per draw; when the
    rates can be read (eagerly), a branch no element takes is skipped.
    """
    k_inv, k_rej = _split(key, 2)
    small_p = lam < 10.0
    any_small, any_large = _eager_any(small_p), _eager_any(~small_p)

    # rate < 10: inversion by sequential search (on the survival function), with the
    # pmf at 0..40 formed by a cumulative product.
    x_inv = mx.zeros(shape, dtype=mx.int32)
    if any_small:
        v = mx.maximum(_uniform(k_inv, shape), _V_MIN)
        if lam.size == 1:  # one table for every draw
            lam_s = mx.expand_dims(mx.where(small_p, lam, 0.0), -1)
            steps = lam_s / mx.arange(1, _INV_CAP + 1, dtype=mx.float32)
            f = mx.exp(-lam_s) * mx.concatenate(
                [mx.ones_like(lam_s), mx.cumprod(steps, axis=-1)], axis=-1
            )
            x_inv = mx.broadcast_to(_survival_search(v, f), shape)
        else:
            lam_v = mx.where(small_p, lam, 0.0)
            x_inv = mx.broadcast_to(
                _survival_search_rows(v, mx.exp(-lam_v), lambda j: lam_v / float(j)), shape
            )
        if not any_large:
            return x_inv

    # rate >= 10: Hörmann's PTRS (transformed rejection with squeeze).
    lam_r = mx.where(_or(small_p, ~mx.isfinite(lam)), 10.0, lam)
    slam = mx.sqrt(lam_r)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_inv_alpha = mx.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    fl = mx.floor(lam_r)
    fr = lam_r - fl

    def propose(k: mx.array, rshape: Shape, prm: tuple[mx.array, ...]) -> tuple[mx.array, mx.array]:
        lam_r, a, b, log_inv_alpha, vr, fl, fr = prm
        k1, k2 = _split(k, 2)
        u = _uniform(k1, rshape) - 0.5
        w = _uniform(k2, rshape)
        us = 0.5 - mx.abs(u)
        us_s = mx.maximum(us, 1e-12)
        off = mx.floor((2.0 * a / us_s + b) * u + fr + 0.43)
        kk = fl + off
        ok = kk >= 0
        k_s = mx.where(ok, kk, 0.0)
        d_s = mx.where(ok, off - fr, -lam_r)  # k − rate, without cancellation
        fast = _and(us >= 0.07, w <= vr, ok)
        bad = _or(~ok, _and(us < 0.013, w > us))
        lhs = mx.log(w) + log_inv_alpha - mx.log(a / (us_s * us_s) + b)
        acc = _or(fast, _and(~bad, lhs <= _poisson_lp(k_s, lam_r, d_s)))
        return kk, acc

    prm = (lam_r, a, b, log_inv_alpha, vr, fl, fr)
    x_rej = _to_int32(
        _first_accepted(propose, k_rej, shape, _PTRS_ROUNDS, fl, prm, 1.0 - _PTRS_ACCEPT)
    )
    if not any_small:
        return x_rej
    out: mx.array = mx.where(small_p, x_inv, x_rej)
    return out


def _binomial_sample(key: mx.array, n: mx.array, p: mx.array, shape: Shape) -> mx.array:
    """Exact Binomial draws of ``shape`` (n, p broadcast to it; n integer ≥ 0, p in [0,1])."""
    # Per-parameter quantities stay at the parameters' own (broadcast) shape: a scalar
    # (n, p) pays for its tables once, not per draw.
    pshape = mx.broadcast_shapes(n.shape, p.shape)
    n = mx.broadcast_to(mx.where(_and(mx.isfinite(n), n >= 0), mx.floor(n), 0.0), pshape)
    p = mx.broadcast_to(mx.clip(mx.where(mx.isnan(p), 0.0, p), 0.0, 1.0), pshape)
    flip = p > 0.5
    pp = mx.where(flip, 1.0 - p, p)  # <= 1/2
    k_inv, k_rej = _split(key, 2)
    small = n * pp < 10.0
    any_small, any_large = _eager_any(small), _eager_any(~small)

    # n·p < 10: inversion by sequential search (survival function, tail first), with
    # the pmf at 0..40 formed by a cumulative product of (n − i + 1)/i · p/q.
    x_inv = mx.zeros(shape, dtype=mx.int32)
    if any_small:
        v = mx.maximum(_uniform(k_inv, shape), _V_MIN)
        if n.size == 1:  # one table for every draw
            ps = mx.expand_dims(mx.where(small, pp, 0.0), -1)
            ns = mx.expand_dims(mx.where(small, n, 0.0), -1)
            i = mx.arange(1, _INV_CAP + 1, dtype=mx.float32)
            steps = (mx.maximum(ns - i + 1.0, 0.0) / i) * (ps / (1.0 - ps))
            f0 = mx.exp(ns * mx.log1p(-ps))
            f = f0 * mx.concatenate([mx.ones_like(f0), mx.cumprod(steps, axis=-1)], axis=-1)
            x_inv = _survival_search(v, f)
        else:
            ps_v = mx.where(small, pp, 0.0)
            ns_v = mx.where(small, n, 0.0)
            odds = ps_v / (1.0 - ps_v)

            def step(j: int) -> mx.array:
                out: mx.array = (mx.maximum(ns_v - (j - 1.0), 0.0) / float(j)) * odds
                return out

            x_inv = _survival_search_rows(v, mx.exp(ns_v * mx.log1p(-ps_v)), step)
        if not any_large:
            return _to_int32(mx.broadcast_to(mx.where(flip, n - x_inv, x_inv), shape))

    # n·p >= 10: Hörmann's BTRS (transformed rejection with squeeze).
    pr = mx.where(small, 0.5, pp)
    nr = mx.where(small, 20.0, n)
    qr = 1.0 - pr
    npr = nr * pr
    spq = mx.sqrt(npr * qr)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * pr
    vr = 0.92 - 4.2 / b
    log_alpha = mx.log((2.83 + 5.1 / b) * spq)
    m = mx.floor((nr + 1.0) * pr)
    lp_m = _binom_lp(m, nr, pr, qr)
    c = npr + 0.5
    fl = mx.floor(c)
    fr = c - fl
    base = fl - npr  # in (-1/2, 1/2]: k − n p = base + off, without cancellation

    def propose(k: mx.array, rshape: Shape, prm: tuple[mx.array, ...]) -> tuple[mx.array, mx.array]:
        nr, pr, qr, npr, a, b, vr, log_alpha, m, lp_m, fl, fr, base = prm
        k1, k2 = _split(k, 2)
        u = _uniform(k1, rshape) - 0.5
        w = _uniform(k2, rshape)
        us = 0.5 - mx.abs(u)
        us_s = mx.maximum(us, 1e-12)
        off = mx.floor((2.0 * a / us_s + b) * u + fr)
        kk = fl + off
        ok = _and(kk >= 0, kk <= nr)
        k_s = mx.where(ok, kk, m)
        d_s = mx.where(ok, base + off, m - npr)
        fast = _and(us >= 0.07, w <= vr)
        lhs = mx.log(w) + log_alpha - mx.log(a / (us_s * us_s) + b)
        rhs = _binom_lp(k_s, nr, pr, qr, d_s) - lp_m
        return kk, _and(ok, _or(fast, lhs <= rhs))

    prm = (nr, pr, qr, npr, a, b, vr, log_alpha, m, lp_m, fl, fr, base)
    x_rej = _first_accepted(propose, k_rej, shape, _BTRS_ROUNDS, m, prm, 1.0 - _BTRS_ACCEPT)
    x = mx.where(small, x_inv.astype(mx.float32), x_rej) if any_small else x_rej
    x = mx.where(flip, n - x, x)
    return _to_int32(mx.broadcast_to(x, shape))


_TRIALS_CAP = 32  # multinomial counts n <= this are drawn trial by trial


def _multinomial_sample(key: mx.array, n: mx.array, probs: mx.array, shape: Shape) -> mx.array:
    """Multinomial draws of ``shape + (K,)``.

    Counts ``n <= 32`` are drawn trial by trial: trial ``t`` (``t < n``) draws one
    uniform, its category is the number of cumulative probabilities it reaches, and
    the counts are sums of those comparisons — one uniform and ``K - 1`` comparisons
    per trial, no binomial. Larger counts use ``K - 1`` sequential conditional
    binomials (the exact binomial sampler). Eagerly only the trials some element
    needs run; trial ``t`` draws from its own key either way, so compiled and vmapped
    draws (which run all 32) agree.
    """
    nn = mx.where(_and(mx.isfinite(n), n >= 0), mx.floor(n), 0.0)
    few = nn <= float(_TRIALS_CAP)
    k_tr, k_bin = _split(key, 2)
    x_tr = x_bin = None
    if _eager_any(few):
        x_tr = _multinomial_trials(k_tr, mx.where(few, nn, 0.0), probs, shape)
    if _eager_any(~few):
        x_bin = _multinomial_binomials(k_bin, nn, probs, shape)
    if x_bin is None:
        assert x_tr is not None
        return x_tr
    if x_tr is None:
        return x_bin
    out: mx.array = mx.where(mx.expand_dims(few, -1), x_tr, x_bin)
    return out


def _multinomial_trials(key: mx.array, n: mx.array, probs: mx.array, shape: Shape) -> mx.array:
    """Counts of ``n <= _TRIALS_CAP`` categorical trials (see
    :func:`_multinomial_sample`)."""
    kk = probs.shape[-1]
    cum = mx.cumsum(probs, axis=-1)
    bounds = [cum[..., j] for j in range(kk - 1)]  # category >= j + 1 iff u >= bounds[j]
    keys = mx.random.split(key, _TRIALS_CAP)
    top = _eager_array(mx.max(n))
    trials = _TRIALS_CAP if top is None else int(top)
    shared_n = n.size == 1 and top is not None
    reach = [mx.zeros(shape, dtype=mx.int32) for _ in range(kk - 1)]
    for t in range(trials):
        u = mx.random.uniform(shape=shape, key=keys[t])
        live = None if shared_n else n > float(t)  # one shared n: every trial counts
        for j in range(kk - 1):
            hit = u >= bounds[j]
            if live is not None:
                hit = mx.logical_and(hit, live)
            reach[j] = reach[j] + hit.astype(mx.int32)
    n_i = mx.broadcast_to(n.astype(mx.int32), shape)
    counts = [n_i - reach[0]] if kk > 1 else [n_i]
    counts += [reach[j] - reach[j + 1] for j in range(kk - 2)]
    if kk > 1:
        counts.append(reach[kk - 2])
    return mx.stack(counts, axis=-1)


def _multinomial_binomials(
    key: mx.array, n: mx.array, probs: mx.array, shape: Shape
) -> mx.array:
    """Multinomial draws of ``shape + (K,)`` by sequential conditional binomials."""
    kk = probs.shape[-1]
    probs = mx.broadcast_to(probs, (*shape, kk))
    suffix = mx.cumsum(probs, axis=-1, reverse=True)
    keys = _split(key, max(kk - 1, 1))
    rem = mx.broadcast_to(n, shape)
    xs = []
    for i in range(kk - 1):
        s = suffix[..., i]
        cond = mx.clip(probs[..., i] / mx.where(s > 0, s, 1.0), 0.0, 1.0)
        cond = mx.where(s > 0, cond, 0.0)
        xi = _binomial_sample(keys[i], rem, cond, shape)
        xs.append(xi)
        rem = rem - xi.astype(mx.float32)
    xs.append(_to_int32(rem))
    return mx.stack(xs, axis=-1)


# ------------------------------------------------------------------ distributions


def _last_dim(x: Any) -> int:
    return int(x.shape[-1]) if hasattr(x, "shape") else len(x)


def _bound(bounds: Any, i: int) -> Any:
    return bounds[i] if isinstance(bounds, mx.array) else list(bounds)[i]


class Bernoulli(Distribution):
    """Bernoulli(p): ``True`` with probability ``p``.

    P(x) = p^x (1 − p)^(1−x) for x ∈ {False, True}; p ∈ [0, 1]. Values are booleans
    (``log_prob`` also accepts 0/1 numbers; other values are out of support). Sampled
    as ``U < p``. ``flip`` is the same object.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import bernoulli
        >>> bernoulli.sample(mx.random.key(0), 0.3, shape=(4,)).dtype
        mlx.core.bool
        >>> round(float(bernoulli.log_prob(True, 0.25)), 4)
        -1.3863
    """

    name = "bernoulli"
    params = (Param("p", C.unit_interval),)
    is_discrete = True
    is_enumerable = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.boolean

    def sample(self, key: mx.array, p: Any, *, shape: Shape = ()) -> mx.array:
        pa = _f32(p)
        out: mx.array = _uniform(key, sample_shape(shape, pa)) < pa
        return out

    glm_link = "Sigmoid"
    fused_log_prob = _fused.BERNOULLI_LOGIT

    def glm_log_prob(self, value: mx.array, eta: mx.array) -> mx.array:
        """``log p(y | p = σ(η)) = y η − softplus(η)`` (values 0/1; stable in ``η``)."""
        y = _f32(value)
        out: mx.array = y * eta - mx.logaddexp(0.0, eta)
        return out

    has_iid_statistics = True

    def iid_statistics(self, value: mx.array) -> tuple[mx.array, ...] | None:
        """``(number of True, number of draws)`` of 0/1 values (``None`` otherwise)."""
        x = mx.array(value).astype(mx.float32).reshape(-1)
        if not bool(mx.all(mx.logical_or(x == 0, x == 1)).item()):
            return None
        return (mx.sum(x), mx.array(float(x.size)))

    def iid_log_prob(self, stats: tuple[mx.array, ...], p: Any) -> mx.array:
        """``k log p + (n − k) log(1 − p)`` (``0 · log 0 = 0``)."""
        k, n = stats
        pa = _f32(p)
        valid = self.params_valid(pa)
        ps = mx.where(valid, pa, 0.5)
        l1 = mx.where(k > 0, k * mx.log(mx.where(ps > 0, ps, 1.0)), 0.0)
        l1 = mx.where(mx.logical_and(k > 0, ps <= 0), -mx.inf, l1)
        l0 = mx.where(n - k > 0, (n - k) * mx.log1p(-mx.where(ps < 1, ps, 0.0)), 0.0)
        l0 = mx.where(mx.logical_and(n - k > 0, ps >= 1), -mx.inf, l0)
        return where_valid(valid, l1 + l0)

    def log_prob(self, value: Any, p: Any) -> mx.array:
        x, pa = _f32(value), _f32(p)
        valid = self.params_valid(pa)
        ps = mx.where(valid, pa, 0.5)
        l1 = mx.where(ps > 0, mx.log(mx.where(ps > 0, ps, 1.0)), -mx.inf)
        l0 = mx.where(ps < 1, mx.log1p(-mx.where(ps < 1, ps, 0.0)), -mx.inf)
        lp = mx.where(x == 1, l1, l0)
        lp = mx.where(_or(x == 0, x == 1), lp, -mx.inf)
        return where_valid(valid, lp)

    def support(self, p: Any) -> mx.array:
        return _enum(mx.array([False, True]), _f32(p).shape)


class Categorical(Distribution):
    """Categorical(probs) over ``0..K-1``.

    P(x = i) = probs[i] / Σ_j probs[j]. The last axis of ``probs`` is the category axis
    (leading axes are batch); values are int32 scalars. ``probs`` must be non-negative
    with a positive sum; it is normalised (so float rounding in a probability vector
    is harmless). Sampled exactly by the Gumbel-max trick.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import categorical
        >>> categorical.sample(mx.random.key(0), mx.array([0.2, 0.8]), shape=(3,)).shape
        (3,)
        >>> round(float(categorical.log_prob(1, mx.array([0.2, 0.8]))), 4)
        -0.2231
    """

    name = "categorical"
    params = ("probs",)
    is_discrete = True
    is_enumerable = True

    def _probs(self, probs: Any) -> mx.array:
        _check_weights(self.name, "probs", probs)
        pr = _f32(probs)
        if pr.ndim == 0:
            raise ValueError(f"{self.name}: probs must have a category axis (got a scalar)")
        if pr.shape[-1] == 0:
            raise ValueError(
                f"{self.name}: probs has no categories (shape {tuple(pr.shape)}); give at "
                "least one probability along the last axis"
            )
        return pr

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.integer_interval(0, _last_dim(params[0]) - 1)

    def sample(self, key: mx.array, probs: Any, *, shape: Shape = ()) -> mx.array:
        pr = self._probs(probs)
        logits = mx.log(mx.maximum(pr, 0.0))
        g = mx.random.gumbel(shape=(*shape, *pr.shape), key=key)
        return mx.argmax(logits + g, axis=-1).astype(mx.int32)

    def log_prob(self, value: Any, probs: Any) -> mx.array:
        pr = self._probs(probs)
        kk = pr.shape[-1]
        total = mx.sum(pr, axis=-1)
        # non-negative and finite <=> >= 0 and < inf (NaN fails both): one reduction
        valid = _and(mx.all(_and(pr >= 0, pr < mx.inf), axis=-1), total > 0)
        xa = arr(value)
        if mx.issubdtype(xa.dtype, mx.integer):
            # integer values: in the support iff in range (no float round trip)
            x = xa
            in_sup = _and(x >= 0, x <= kk - 1)
            idx = mx.where(in_sup, x, 0)
            if idx.dtype != mx.int32:
                idx = idx.astype(mx.int32)
        else:
            x = _f32(xa)
            in_sup = _and(_is_int(x), x >= 0, x <= kk - 1)
            idx = mx.stop_gradient(mx.where(in_sup, x, 0.0).astype(mx.int32))
        out_shape = tuple(mx.broadcast_shapes(x.shape, pr.shape[:-1]))
        if tuple(idx.shape) != out_shape:
            idx = mx.broadcast_to(idx, out_shape)
        pb = pr if tuple(pr.shape[:-1]) == out_shape else mx.broadcast_to(pr, (*out_shape, kk))
        px = mx.take_along_axis(pb, mx.expand_dims(idx, -1), axis=-1).squeeze(-1)
        keep = _and(valid, in_sup, px > 0)
        lp = mx.log(mx.where(keep, px, 1.0)) - mx.log(mx.where(valid, total, 1.0))
        # -inf outside the support, for invalid probabilities and where P(x) = 0
        return mx.where(keep, lp, -mx.inf)

    def support(self, probs: Any) -> mx.array:
        pr = self._probs(probs)
        return _enum(mx.arange(pr.shape[-1], dtype=mx.int32), pr.shape[:-1])


class CategoricalLogits(Distribution):
    """Categorical over ``0..K-1`` parameterised by unnormalised log-probabilities.

    P(x = i) = exp(logits[i] − logsumexp(logits)); ``-inf`` logits are allowed (zero
    probability) but not all of them, and no ``+inf``/NaN. The last axis is the
    category axis. Sampled exactly by the Gumbel-max trick.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import categorical_logits
        >>> round(float(categorical_logits.log_prob(0, mx.array([0.0, 0.0]))), 4)
        -0.6931
    """

    name = "categorical_logits"
    params = ("logits",)
    is_discrete = True
    is_enumerable = True

    def _logits(self, logits: Any) -> mx.array:
        lg = _f32(logits)
        if lg.ndim == 0:
            raise ValueError(f"{self.name}: logits must have a category axis (got a scalar)")
        if lg.shape[-1] == 0:
            raise ValueError(
                f"{self.name}: logits has no categories (shape {tuple(lg.shape)}); give at "
                "least one logit along the last axis"
            )
        return lg

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.integer_interval(0, _last_dim(params[0]) - 1)

    def sample(self, key: mx.array, logits: Any, *, shape: Shape = ()) -> mx.array:
        lg = self._logits(logits)
        g = mx.random.gumbel(shape=(*shape, *lg.shape), key=key)
        return mx.argmax(lg + g, axis=-1).astype(mx.int32)

    def log_prob(self, value: Any, logits: Any) -> mx.array:
        lg = self._logits(logits)
        x = _f32(value)
        kk = lg.shape[-1]
        valid = _and(
            mx.all(_and(~mx.isnan(lg), lg < mx.inf), axis=-1), mx.any(lg > -mx.inf, axis=-1)
        )
        lg_s = mx.where(mx.expand_dims(valid, -1), lg, 0.0)
        lse = mx.logsumexp(lg_s, axis=-1)
        out_shape = tuple(mx.broadcast_shapes(x.shape, lg.shape[:-1]))
        in_sup = _and(_is_int(x), x >= 0, x <= kk - 1)
        idx = mx.stop_gradient(
            mx.broadcast_to(mx.where(in_sup, x, 0.0).astype(mx.int32), out_shape)
        )
        lb = mx.broadcast_to(lg_s, (*out_shape, kk))
        lx = mx.take_along_axis(lb, idx[..., None], axis=-1)[..., 0]
        return where_valid(_and(valid, in_sup), lx - lse)

    def support(self, logits: Any) -> mx.array:
        lg = self._logits(logits)
        return _enum(mx.arange(lg.shape[-1], dtype=mx.int32), lg.shape[:-1])


class Poisson(Distribution):
    """Poisson(rate): P(k) = rate^k e^(−rate) / k!, k = 0, 1, 2, …; rate ≥ 0.

    Sampler (exact, per element): for rate < 10, inversion by sequential search over
    the survival function, unrolled to 40 terms (P(X > 40) < 1.8e-13 for rate < 10);
    for rate ≥ 10, Hörmann's PTRS transformed rejection with up to 21 rounds
    (per-round acceptance ≥ 0.7526, so P(no acceptance) < 1.8e-13). The acceptance test
    uses the cancellation-free log-pmf, and the proposal is offset from ``floor(rate)``
    so that rates up to ~2e9 (int32) are handled without float32 rounding bias.
    The inversion table is formed once per rate (not per draw); with one shared rate,
    eager draws search it through a guide table (the same draws as the full search
    that compiled/vmapped code runs), and a branch no rate needs is skipped.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import poisson
        >>> poisson.sample(mx.random.key(0), mx.array([0.5, 50.0]), shape=(2,)).shape
        (2, 2)
        >>> round(float(poisson.log_prob(2, 3.0)), 4)
        -1.4959
    """

    name = "poisson"
    params = (Param("rate", C.nonnegative),)
    is_discrete = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.nonnegative_integer

    def sample(self, key: mx.array, rate: Any, *, shape: Shape = ()) -> mx.array:
        lam = _f32(rate)
        full = sample_shape(shape, lam)
        lam = mx.maximum(lam, 0.0)
        return _poisson_sample(key, lam.reshape((1,) * (len(full) - lam.ndim) + lam.shape), full)

    glm_link = "Exp"
    fused_log_prob = _fused.POISSON_LOG

    def glm_log_prob(self, value: mx.array, eta: mx.array) -> mx.array:
        """``log p(k | λ = exp(η)) = k η − exp(η) − log k!``."""
        from genmlx.dists.special import lgamma

        k = _f32(value)
        out: mx.array = k * eta - mx.exp(eta) - lgamma(k + 1.0)
        return out

    has_iid_statistics = True

    def iid_statistics(self, value: mx.array) -> tuple[mx.array, ...] | None:
        """``(Σk, Σ log k!, n)`` of non-negative integer counts (``None`` otherwise)."""
        import numpy as np

        k = np.asarray(mx.array(value).astype(mx.float32), dtype=np.float64).reshape(-1)
        if not (np.all(k >= 0) and np.all(k == np.floor(k)) and np.all(np.isfinite(k))):
            return None
        lfact = float(sum(math.lgamma(v + 1.0) for v in k))
        total = mx.array(float(k.sum()))
        return (total, mx.array(lfact, dtype=mx.float32), mx.array(float(k.size)))

    def iid_log_prob(self, stats: tuple[mx.array, ...], rate: Any) -> mx.array:
        """``Σk log λ − nλ − Σ log k!``."""
        sk, lfact, n = stats
        lam = _f32(rate)
        valid = self.params_valid(lam)
        pos = mx.logical_and(valid, lam > 0)
        lg = mx.where(sk > 0, sk * mx.log(mx.where(pos, lam, 1.0)), 0.0)
        lg = mx.where(mx.logical_and(sk > 0, mx.logical_not(pos)), -mx.inf, lg)
        return where_valid(valid, lg - n * mx.where(valid, lam, 0.0) - lfact)

    def log_prob(self, value: Any, rate: Any) -> mx.array:
        k, lam = _f32(value), _f32(rate)
        valid = self.params_valid(lam)
        in_sup = _and(_is_int(k), k >= 0)
        ks = mx.where(in_sup, k, 0.0)
        pos = _and(valid, lam > 0)
        lp = _poisson_lp(ks, mx.where(pos, lam, 1.0))
        lp = mx.where(ks == 0, -mx.where(valid, lam, 0.0), mx.where(pos, lp, -mx.inf))
        return where_valid(_and(valid, in_sup), lp)


class Geometric(Distribution):
    """Geometric(p): number of failures before the first success.

    P(k) = p (1 − p)^k, k = 0, 1, 2, …; p ∈ (0, 1]. Sampled exactly by inversion,
    ``floor(log U / log1p(−p))`` (clipped to the int32 range for p < ~1e-8).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import geometric
        >>> round(float(geometric.log_prob(2, 0.5)), 4)
        -2.0794
    """

    name = "geometric"
    params = (Param("p", C.interval(0.0, 1.0, left_open=True)),)
    is_discrete = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.nonnegative_integer

    def sample(self, key: mx.array, p: Any, *, shape: Shape = ()) -> mx.array:
        pa = _f32(p)
        u = mx.maximum(_uniform(key, sample_shape(shape, pa)), 2.0**-100)
        x = mx.floor(mx.log(u) / mx.log1p(-mx.clip(pa, 0.0, 1.0)))
        return _to_int32(mx.where(mx.isnan(x), 0.0, x))

    def log_prob(self, value: Any, p: Any) -> mx.array:
        k, pa = _f32(value), _f32(p)
        valid = self.params_valid(pa)
        in_sup = _and(_is_int(k), k >= 0)
        ks = mx.where(in_sup, k, 0.0)
        ps = mx.where(valid, pa, 0.5)
        q_log = mx.log1p(-mx.where(ps < 1, ps, 0.5))
        lp = mx.log(ps) + mx.where(ps < 1, ks * q_log, mx.where(ks == 0, 0.0, -mx.inf))
        return where_valid(_and(valid, in_sup), lp)


class Binomial(Distribution):
    """Binomial(n, p): successes in ``n`` independent trials with probability ``p``.

    P(k) = C(n, k) p^k (1 − p)^(n−k), k = 0..n; n integer ≥ 0 (may be a batched array;
    counts are float32-exact up to 2**24), p ∈ [0, 1]. Sampler (exact, per element, by
    symmetry on min(p, 1−p)): for n·min(p, 1−p) < 10, inversion by sequential search
    unrolled to 40 terms (the right tail of a binomial with mean < 10 is below the
    Poisson(10) tail: P(X > 40) < 1.8e-13); otherwise Hörmann's BTRS transformed
    rejection with up to 24 rounds (per-round acceptance ≥ 0.7091, P(no
    acceptance) < 1.4e-13). log_prob uses Loader's saddle-point form (accurate for n
    in the millions).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import binomial
        >>> round(float(binomial.log_prob(3, 10, 0.5)), 4)
        -2.144
    """

    name = "binomial"
    params = (Param("n", C.nonnegative_integer), Param("p", C.unit_interval))
    is_discrete = True
    is_enumerable = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.integer_interval(0, params[0])

    def sample(self, key: mx.array, n: Any, p: Any, *, shape: Shape = ()) -> mx.array:
        na, pa = _f32(n), _f32(p)
        return _binomial_sample(key, na, pa, sample_shape(shape, na, pa))

    def log_prob(self, value: Any, n: Any, p: Any) -> mx.array:
        k, na, pa = _f32(value), _f32(n), _f32(p)
        valid = self.params_valid(na, pa)
        ns = mx.where(valid, na, 0.0)
        in_sup = _and(_is_int(k), k >= 0, k <= ns)
        ks = mx.where(in_sup, k, 0.0)
        inner = _and(pa > 0, pa < 1)
        ps = mx.where(inner, pa, 0.5)
        lp = _binom_lp(ks, ns, ps, 1.0 - ps)
        lp = mx.where(pa == 0, mx.where(ks == 0, 0.0, -mx.inf), lp)
        lp = mx.where(pa == 1, mx.where(ks == ns, 0.0, -mx.inf), lp)
        return where_valid(_and(valid, in_sup), lp)

    def support(self, n: Any, p: Any) -> mx.array:
        na, pa = _f32(n), _f32(p)
        vals = mx.arange(_eager_max(na) + 1, dtype=mx.int32)
        return _enum(vals, batch_shape(na, pa))


_NB_CAP = 96  # negative binomial inversion table: counts 0.._NB_CAP
# The table is used when P(X > _NB_CAP) < 1e-14 / e**2 (a margin for float32 lgamma,
# whose error stays below 0.5 in this difference for r < 1e5).
_NB_LOG_TAIL = math.log(1e-14) - 2.0
_NB_MAX_R = 1e5


def _nb_table_ok(r: mx.array, p: mx.array) -> mx.array:
    """Whether NegBinomial(r, p) surely puts less than 1e-14 beyond ``_NB_CAP``.

    For ``k >= _NB_CAP`` the pmf ratio ``f(k+1)/f(k) = (k + r)/(k + 1) (1 - p)`` is at
    most ``rho = (1 - p) max(1, (_NB_CAP + r)/(_NB_CAP + 1))``, so the tail is at most
    ``f(_NB_CAP) rho / (1 - rho)``; ``f(_NB_CAP)`` in log space (``lgamma``). Formed
    with the same float32 operations eagerly and traced, so both choose alike.
    """
    from genmlx.dists.special import lgamma

    c = float(_NB_CAP)
    q = 1.0 - p
    rho = q * mx.maximum(1.0, (c + r) / (c + 1.0))
    log_f = (
        lgamma(c + r) - lgamma(r) - math.lgamma(c + 1.0) + r * mx.log(p) + c * mx.log1p(-p)
    )
    bound = log_f + mx.log(rho) - mx.log1p(-mx.minimum(rho, 0.95))
    out: mx.array = _and(rho < 0.95, r < _NB_MAX_R, bound < _NB_LOG_TAIL)
    out = _or(out, p == 1.0)
    return out


def _nb_table_sample(key: mx.array, r: mx.array, p: mx.array, shape: Shape) -> mx.array:
    """NegBinomial(r, p) draws (one shared r, p) by inversion on the survival function
    of the pmf at ``0.._NB_CAP`` (formed by a cumulative product), searched through
    :func:`_count_above`'s guide table: a count beyond the table is returned as
    ``_NB_CAP`` (probability < 1e-14 where :func:`_nb_table_ok` holds)."""
    r1, p1 = r.reshape((1,)), p.reshape((1,))
    j = mx.arange(1, _NB_CAP + 1, dtype=mx.float32)
    steps = (j - 1.0 + r1) / j * (1.0 - p1)
    f = mx.exp(r1 * mx.log(p1)) * mx.concatenate([mx.ones((1,)), mx.cumprod(steps)])
    v = mx.maximum(_uniform(key, shape), _V_MIN)
    return mx.broadcast_to(_survival_search(v, f), shape)


def _nb_mixture(key: mx.array, r: mx.array, p: mx.array, shape: Shape) -> mx.array:
    """NegBinomial(r, p) draws as ``Poisson(G (1 - p) / p)``, ``G ~ Gamma(r)``."""
    from genmlx.dists.gamma_sampling import scaled_gamma

    k1, k2 = _split(key, 2)
    # lam = G (1 - p) / p (in log space where r < 1: G of tiny r underflows float32)
    lam = scaled_gamma(k1, r, shape, mx.log1p(-p) - mx.log(p))
    return _poisson_sample(k2, lam, shape)


class NegBinomial(Distribution):
    """NegBinomial(r, p): failures before the r-th success.

    P(k) = Γ(k + r) / (Γ(r) k!) p^r (1 − p)^k, k = 0, 1, …; r > 0 (real), p ∈ (0, 1].
    Mean r(1−p)/p. With one shared (r, p) whose tail beyond 96 is below 1e-14, by
    inversion on a table of the pmf (searched through a guide table, like Poisson's);
    otherwise exactly as the Poisson–Gamma mixture ``Poisson(Gamma(r, scale=(1−p)/p))``
    (``scaled_gamma`` and the exact Poisson sampler above; the rate is clamped below
    at ``2**-126``, which gives 0 as the rate 0 of ``p = 1`` does).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import neg_binomial
        >>> round(float(neg_binomial.log_prob(2, 3.0, 0.5)), 4)
        -1.674
    """

    name = "neg_binomial"
    params = (Param("r", C.positive), Param("p", C.interval(0.0, 1.0, left_open=True)))
    is_discrete = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.nonnegative_integer

    def sample(self, key: mx.array, r: Any, p: Any, *, shape: Shape = ()) -> mx.array:
        ra, pa = _f32(r), _f32(p)
        full = sample_shape(shape, ra, pa)
        k_mix, k_tab = _split(key, 2)
        ra_s = mx.where(ra > 0, ra, 1.0)
        pa_s = mx.where(_and(pa > 0, pa <= 1), pa, 1.0)
        if ra_s.size != 1 or pa_s.size != 1:
            return _nb_mixture(k_mix, ra_s, pa_s, full)
        # One shared (r, p): inversion on one table when its tail beyond _NB_CAP is
        # negligible; the Poisson–Gamma mixture otherwise (both, and a choice, when
        # the parameters cannot be read).
        ok = _nb_table_ok(ra_s, pa_s)
        x_tab = x_mix = None
        if _eager_any(ok):
            x_tab = _nb_table_sample(k_tab, ra_s, pa_s, full)
        if _eager_any(~ok):
            x_mix = _nb_mixture(k_mix, ra_s, pa_s, full)
        if x_mix is None:
            assert x_tab is not None
            return x_tab
        if x_tab is None:
            return x_mix
        out: mx.array = mx.where(ok, x_tab, x_mix)
        return out

    def log_prob(self, value: Any, r: Any, p: Any) -> mx.array:
        k, ra, pa = _f32(value), _f32(r), _f32(p)
        valid = self.params_valid(ra, pa)
        in_sup = _and(_is_int(k), k >= 0)
        ks = mx.where(in_sup, k, 0.0)
        rs = mx.where(valid, ra, 1.0)
        inner = _and(valid, pa < 1)
        ps = mx.where(inner, pa, 0.5)
        qs = 1.0 - ps
        t = ks + rs
        d = rs - t * ps  # r − (k+r)p; (k − (k+r)q) = −d
        lp = (
            -_bd0(rs, t * ps, d)
            - _bd0(ks, t * qs, -d)
            + _lgamma_rem(t)
            - _lgamma_rem(rs)
            - _lfact_rem(ks)
        )
        lp = mx.where(pa == 1, mx.where(ks == 0, 0.0, -mx.inf), lp)
        return where_valid(_and(valid, in_sup), lp)


class UniformDiscrete(Distribution):
    """UniformDiscrete(low, high): uniform on the integers ``low..high`` (inclusive).

    P(k) = 1 / (high − low + 1); low ≤ high integers. Sampled exactly from 32-bit words
    by rejection (``x mod m`` after discarding the ``2**32 mod m`` smallest words),
    5 rounds: P(no acceptance) < (m / 2**32)**5 ≤ 9.1e-13 for ranges m ≤ 2**24.
    Eagerly, rounds stop once every draw is accepted (usually after the first; the
    draws are the same as when all rounds run, as under ``mx.compile``/``mx.vmap``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import uniform_discrete
        >>> round(float(uniform_discrete.log_prob(3, 1, 4)), 4)
        -1.3863
    """

    name = "uniform_discrete"
    params = (Param("low", C.integer), Param("high", _at_least))
    is_discrete = True
    is_enumerable = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.integer_interval(params[0], params[1])

    def sample(self, key: mx.array, low: Any, high: Any, *, shape: Shape = ()) -> mx.array:
        lo, hi = arr(low), arr(high)
        full = sample_shape(shape, lo, hi)
        lo_i = _to_int32(mx.floor(_f32(lo))) if lo.dtype != mx.int32 else lo
        hi_i = _to_int32(mx.floor(_f32(hi))) if hi.dtype != mx.int32 else hi
        # m and its threshold stay at the parameters' shape (a scalar range costs one
        # scalar op, not one per draw).
        m = mx.maximum(hi_i - lo_i + 1, 1).astype(mx.uint32)
        thresh = (mx.array(0, dtype=mx.uint32) - m) % m  # 2**32 mod m
        keys = _split(key, _UD_ROUNDS)
        result = mx.zeros(full, dtype=mx.uint32)
        done = mx.zeros(full, dtype=mx.bool_)
        for r in range(_UD_ROUNDS):
            w = _bits(keys[r], full)
            if r == 0:
                # The first round's value stands wherever it is accepted; elsewhere a
                # later round overwrites it (the last round always accepts).
                result, done = w % m, mx.broadcast_to(w >= thresh, full)
            else:
                acc = w >= thresh if r < _UD_ROUNDS - 1 else mx.ones(full, dtype=mx.bool_)
                result = mx.where(_and(acc, ~done), w % m, result)
                done = _or(done, acc)
            if r < _UD_ROUNDS - 1 and all_done(done):
                break  # every element accepted: later rounds would change nothing
        out: mx.array = lo_i + result.astype(mx.int32)
        return out

    def log_prob(self, value: Any, low: Any, high: Any) -> mx.array:
        x, lo, hi = _f32(value), _f32(low), _f32(high)
        valid = self.params_valid(lo, hi)
        width = mx.where(valid, hi - lo + 1.0, 1.0)
        in_sup = _and(_is_int(x), x >= lo, x <= hi)
        return where_valid(_and(valid, in_sup), mx.broadcast_to(-mx.log(width), in_sup.shape))

    def support(self, low: Any, high: Any) -> mx.array:
        self.check_params(low, high)
        lo, hi = _f32(low), _f32(high)
        a = cast(int, mx.min(lo).astype(mx.int32).item())
        vals = mx.arange(a, _eager_max(hi) + 1, dtype=mx.int32)
        return _enum(vals, batch_shape(lo, hi))


class Multinomial(Distribution):
    """Multinomial(n, probs): category counts of ``n`` categorical draws.

    P(x) = n! / Π x_i! Π p_i^(x_i) for integer vectors x ≥ 0 with Σ x_i = n; ``probs``
    (last axis = the K categories, normalised like ``categorical``'s). event_ndim = 1:
    values have shape ``batch + (K,)``. Sampled exactly by K − 1 sequential conditional
    binomials (the exact binomial sampler above).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import multinomial
        >>> x = multinomial.sample(mx.random.key(0), 10, mx.array([0.2, 0.3, 0.5]))
        >>> x.shape, int(x.sum())
        ((3,), 10)
    """

    name = "multinomial"
    params = (Param("n", C.nonnegative_integer), Param("probs", event_ndim=1))
    is_discrete = True
    event_ndim = 1

    def _params(self, n: Any, probs: Any) -> tuple[mx.array, mx.array]:
        _check_weights(self.name, "probs", probs)
        pr = _f32(probs)
        if pr.ndim == 0:
            raise ValueError(f"{self.name}: probs must have a category axis (got a scalar)")
        return _f32(n), pr

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.nonnegative_integer

    def sample(self, key: mx.array, n: Any, probs: Any, *, shape: Shape = ()) -> mx.array:
        na, pr = self._params(n, probs)
        full = tuple(shape) + batch_shape(na, pr, event_ndims=(0, 1))
        total = mx.sum(pr, axis=-1, keepdims=True)
        p = mx.maximum(pr, 0.0) / mx.where(total > 0, total, 1.0)
        return _multinomial_sample(key, na, p, full)

    def log_prob(self, value: Any, n: Any, probs: Any) -> mx.array:
        na, pr = self._params(n, probs)
        x = _f32(value)
        ok_p = _and(mx.all(pr >= 0, axis=-1), mx.all(mx.isfinite(pr), axis=-1))
        pr_s = mx.where(mx.expand_dims(ok_p, -1), pr, 1.0)
        total = mx.sum(pr_s, axis=-1)
        valid = _and(ok_p, total > 0, _is_int(na), na >= 0)
        p = pr_s / mx.expand_dims(mx.where(valid, total, 1.0), -1)
        ns = mx.where(valid, na, 0.0)
        xint = mx.all(_and(_is_int(x), x >= 0), axis=-1)
        xs = mx.where(mx.expand_dims(xint, -1), x, 0.0)
        in_sup = _and(xint, mx.sum(xs, axis=-1) == ns)
        ppos = p > 0
        zero_hit = mx.any(_and(~ppos, xs > 0), axis=-1)
        terms = mx.where(ppos, _bd0(xs, mx.expand_dims(ns, -1) * p), 0.0)
        lp = -mx.sum(terms, axis=-1) + _lfact_rem(ns) - mx.sum(_lfact_rem(xs), axis=-1)
        lp = mx.where(zero_hit, -mx.inf, lp)
        return where_valid(_and(valid, in_sup), lp)


class BetaBinomial(Distribution):
    """BetaBinomial(n, alpha, beta): Binomial(n, θ) with θ ~ Beta(alpha, beta).

    P(k) = C(n, k) B(k + alpha, n − k + beta) / B(alpha, beta), k = 0..n; n integer ≥ 0,
    alpha, beta > 0. Sampled exactly as ``Binomial(n, standard_beta(alpha, beta))``.
    log_prob uses a saddle-point form (four ``bd0`` terms around the posterior mean
    (k + alpha)/(n + alpha + beta) plus Stirling remainders), accurate when n, alpha
    and beta are all large.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import beta_binomial
        >>> round(float(beta_binomial.log_prob(3, 10, 1.0, 1.0)), 4)
        -2.3979
    """

    name = "beta_binomial"
    params = (
        Param("n", C.nonnegative_integer),
        Param("alpha", C.positive),
        Param("beta", C.positive),
    )
    is_discrete = True
    is_enumerable = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.integer_interval(0, params[0])

    def sample(
        self, key: mx.array, n: Any, alpha: Any, beta: Any, *, shape: Shape = ()
    ) -> mx.array:
        from genmlx.dists.gamma_sampling import standard_beta

        na, a, b = _f32(n), _f32(alpha), _f32(beta)
        full = sample_shape(shape, na, a, b)
        k1, k2 = _split(key, 2)
        a_s = mx.broadcast_to(mx.where(a > 0, a, 1.0), full)
        b_s = mx.broadcast_to(mx.where(b > 0, b, 1.0), full)
        theta = standard_beta(k1, a_s, b_s, full)
        return _binomial_sample(k2, na, theta, full)

    def log_prob(self, value: Any, n: Any, alpha: Any, beta: Any) -> mx.array:
        k, na, a, b = _f32(value), _f32(n), _f32(alpha), _f32(beta)
        valid = self.params_valid(na, a, b)
        ns = mx.where(valid, na, 0.0)
        a_s = mx.where(valid, a, 1.0)
        b_s = mx.where(valid, b, 1.0)
        in_sup = _and(_is_int(k), k >= 0, k <= ns)
        ks = mx.where(in_sup, k, 0.0)
        lp = _dirmult_terms([ks, ns - ks], ns, [a_s, b_s])
        return where_valid(_and(valid, in_sup), lp)

    def support(self, n: Any, alpha: Any, beta: Any) -> mx.array:
        na, a, b = _f32(n), _f32(alpha), _f32(beta)
        vals = mx.arange(_eager_max(na) + 1, dtype=mx.int32)
        return _enum(vals, batch_shape(na, a, b))


def _dirmult_terms(xs: Sequence[mx.array], n: mx.array, alphas: Sequence[mx.array]) -> mx.array:
    """log Dirichlet-multinomial pmf of counts ``xs`` (Σ xs = n) with concentrations.

    log P = −Σ_i [bd0(x_i, n π_i) + bd0(α_i, A π_i)] + lf(n) − Σ lf(x_i)
            + g(A) − g(n + A) + Σ_i [g(x_i + α_i) − g(α_i)],
    with A = Σ α_i, π_i = (x_i + α_i)/(n + A), lf(z) = log z! − z log z + z and
    g(y) = lgamma(y) − y log y + y; x_i − n π_i = (x_i A − n α_i)/(n + A) = −(α_i − A π_i).
    """
    big_a = alphas[0]
    for al in alphas[1:]:
        big_a = big_a + al
    tot = n + big_a
    lp = _lfact_rem(n) + _lgamma_rem(big_a) - _lgamma_rem(tot)
    for x, al in zip(xs, alphas):
        pi = (x + al) / tot
        d = (x * big_a - n * al) / tot
        lp = lp - _bd0(x, n * pi, d) - _bd0(al, big_a * pi, -d)
        lp = lp - _lfact_rem(x) + _lgamma_rem(x + al) - _lgamma_rem(al)
    return lp


class DirichletMultinomial(Distribution):
    """DirichletMultinomial(n, alpha): Multinomial(n, p) with p ~ Dirichlet(alpha).

    P(x) = n! Γ(A) / Γ(n + A) Π Γ(x_i + α_i) / (x_i! Γ(α_i)), A = Σ α_i, for integer
    vectors x ≥ 0 with Σ x_i = n; alpha > 0 with last axis = the K categories;
    event_ndim = 1. Sampled exactly as ``Multinomial(n, standard_dirichlet(alpha))``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import dirichlet_multinomial
        >>> v = mx.array([1, 1])
        >>> round(float(dirichlet_multinomial.log_prob(v, 2, mx.array([1.0, 1.0]))), 4)
        -1.0986
    """

    name = "dirichlet_multinomial"
    params = (Param("n", C.nonnegative_integer), Param("alpha", event_ndim=1))
    is_discrete = True
    event_ndim = 1

    def _params(self, n: Any, alpha: Any) -> tuple[mx.array, mx.array]:
        _check_concentrations(self.name, "alpha", alpha)
        al = _f32(alpha)
        if al.ndim == 0:
            raise ValueError(f"{self.name}: alpha must have a category axis (got a scalar)")
        return _f32(n), al

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.nonnegative_integer

    def sample(self, key: mx.array, n: Any, alpha: Any, *, shape: Shape = ()) -> mx.array:
        from genmlx.dists.gamma_sampling import standard_dirichlet

        na, al = self._params(n, alpha)
        full = tuple(shape) + batch_shape(na, al, event_ndims=(0, 1))
        k1, k2 = _split(key, 2)
        al_s = mx.broadcast_to(mx.where(al > 0, al, 1.0), (*full, al.shape[-1]))
        p = standard_dirichlet(k1, al_s, (*full, al.shape[-1]))
        return _multinomial_sample(k2, na, p, full)

    def log_prob(self, value: Any, n: Any, alpha: Any) -> mx.array:
        na, al = self._params(n, alpha)
        x = _f32(value)
        valid = _and(mx.all(_and(al > 0, mx.isfinite(al)), axis=-1), _is_int(na), na >= 0)
        al_s = mx.where(mx.expand_dims(valid, -1), al, 1.0)
        ns = mx.where(valid, na, 0.0)
        xint = mx.all(_and(_is_int(x), x >= 0), axis=-1)
        xs = mx.where(mx.expand_dims(xint, -1), x, 0.0)
        in_sup = _and(xint, mx.sum(xs, axis=-1) == ns)
        shape = tuple(mx.broadcast_shapes(xs.shape, al_s.shape))
        kk = shape[-1]
        xs_b = mx.broadcast_to(xs, shape)
        al_b = mx.broadcast_to(al_s, shape)
        lp = _dirmult_terms(
            [xs_b[..., i] for i in range(kk)], ns, [al_b[..., i] for i in range(kk)]
        )
        return where_valid(_and(valid, in_sup), lp)


_LOG_1_TO_16 = mx.array([math.log(j) for j in range(1, 17)], dtype=mx.float32)


def _zipf_table(s: mx.array) -> mx.array:
    """T[..., a] = Σ_{j=a+1}^{16} j^(−s) for a = 0..16 (tail-first sums), last axis 17."""
    terms = mx.exp(-mx.expand_dims(s, -1) * _LOG_1_TO_16)
    tail = mx.cumsum(terms, axis=-1, reverse=True)
    return mx.concatenate([tail, mx.zeros_like(tail[..., :1])], axis=-1)


def _zipf_tail(s: mx.array, a: mx.array, b: mx.array, table: mx.array) -> mx.array:
    """Σ_{j=a+1}^{b} j^(−s) for integers 0 ≤ a ≤ b, exactly to float32.

    ``s``, ``a``, ``b`` share one shape and ``table = _zipf_table(s)``. Terms j ≤ 16 come
    from the table; the rest by Euler–Maclaurin from max(a, 16) to b with three
    Bernoulli corrections (remainder < 1e-11 relative for every s ≥ 0).
    """
    ai = mx.stop_gradient(mx.expand_dims(mx.clip(a, 0.0, 16.0).astype(mx.int32), -1))
    bi = mx.stop_gradient(mx.expand_dims(mx.clip(b, 0.0, 16.0).astype(mx.int32), -1))
    acc = (mx.take_along_axis(table, ai, axis=-1) - mx.take_along_axis(table, bi, axis=-1))[..., 0]
    lo = mx.maximum(a, 16.0)
    hi = mx.maximum(b, lo)
    lla, llb = mx.log(lo), mx.log(hi)
    one_m_s = 1.0 - s
    t = one_m_s * (llb - lla)
    small_t = mx.abs(t) < 1e-4
    t_s = mx.where(small_t, 1.0, t)
    exprel = mx.where(small_t, 1.0 + 0.5 * t + t * t / 6.0, mx.expm1(t_s) / t_s)
    integral = mx.exp(one_m_s * lla) * (llb - lla) * exprel

    def fpow(e: mx.array, ll: mx.array) -> mx.array:
        out: mx.array = mx.exp(-e * ll)
        return out

    s1, s3, s5 = s, s * (s + 1) * (s + 2), s * (s + 1) * (s + 2) * (s + 3) * (s + 4)
    d1 = -s1 * (fpow(s + 1, llb) - fpow(s + 1, lla))
    d3 = -s3 * (fpow(s + 3, llb) - fpow(s + 3, lla))
    d5 = -s5 * (fpow(s + 5, llb) - fpow(s + 5, lla))
    em = integral + 0.5 * (fpow(s, llb) - fpow(s, lla)) + d1 / 12.0 - d3 / 720.0 + d5 / 30240.0
    out: mx.array = acc + mx.where(hi > lo, em, 0.0)
    return out


class Zipf(Distribution):
    """Zipf(s, n): P(k) = k^(−s) / H(n, s) for k = 1..n, H(n, s) = Σ_{j=1}^{n} j^(−s).

    Bounded (finite-support) Zipf, as ``scipy.stats.zipfian``: s ≥ 0 (real), n integer
    ≥ 1; values are 1-based (``1..n``), int32. H(n, s) is computed without a loop over
    n (direct sum to 16, then Euler–Maclaurin), so ``n`` can be a large or batched
    array. Sampled exactly by inversion: an 8-level vectorised 16-ary search on the
    survival function P(X > k) = H-tail(k, n)/H(n, s), computed tail-first for relative accuracy.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import zipf
        >>> round(float(zipf.log_prob(1, 1.0, 2)), 4)
        -0.4055
    """

    name = "zipf"
    params = (Param("s", C.nonnegative), Param("n", C.positive_integer))
    is_discrete = True
    is_enumerable = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.nonnegative_integer

    def sample(self, key: mx.array, s: Any, n: Any, *, shape: Shape = ()) -> mx.array:
        sa, na = _f32(s), _f32(n)
        full = sample_shape(shape, sa, na)
        # invalid (NaN, inf, negative) parameters draw 1 (their score is -inf); NaN must
        # not reach the integer search below, whose gathers would read out of bounds
        sa = mx.broadcast_to(mx.where(_and(sa >= 0, mx.isfinite(sa)), sa, 0.0), full)
        na = mx.where(mx.isnan(na), 1.0, na)
        nf = mx.broadcast_to(mx.clip(mx.floor(na), 1.0, _INT32_MAX_F), full)
        table = _zipf_table(sa)
        h = _zipf_tail(sa, mx.zeros_like(nf), nf, table)
        v = _uniform(key, full) * h  # X > k  iff  v < tail(k, n)
        # 16-ary search for the smallest k with tail(k, n) <= v, keeping
        # tail(lo, n) > v >= tail(hi, n); 8 levels narrow 2**31 to 1.
        lo = mx.zeros(full, dtype=mx.int32)
        hi = nf.astype(mx.int32)
        j = mx.arange(1, 16, dtype=mx.int32)
        s_e, n_e, v_e = (mx.expand_dims(t, -1) for t in (sa, nf, v))
        tab_e = mx.broadcast_to(mx.expand_dims(table, -2), (*full, 15, 17))
        for _ in range(8):
            w = mx.expand_dims(hi - lo, -1)
            pts = mx.expand_dims(lo, -1) + (w // 16) * j + ((w % 16) * j) // 16
            tail = _zipf_tail(
                mx.broadcast_to(s_e, pts.shape),
                pts.astype(mx.float32),
                mx.broadcast_to(n_e, pts.shape),
                tab_e,
            )
            above = mx.sum((tail > v_e).astype(mx.int32), axis=-1, keepdims=True)
            new_lo = mx.take_along_axis(pts, mx.maximum(above - 1, 0), axis=-1)[..., 0]
            new_hi = mx.take_along_axis(pts, mx.minimum(above, 14), axis=-1)[..., 0]
            above = above[..., 0]
            lo = mx.where(above > 0, new_lo, lo)
            hi = mx.where(above < 15, new_hi, hi)
        return mx.maximum(hi, 1)

    def log_prob(self, value: Any, s: Any, n: Any) -> mx.array:
        k, sa, na = _f32(value), _f32(s), _f32(n)
        valid = self.params_valid(sa, na)
        ss = mx.where(valid, sa, 1.0)
        ns = mx.where(valid, na, 1.0)
        in_sup = _and(_is_int(k), k >= 1, k <= ns)
        ks = mx.where(in_sup, k, 1.0)
        shp = tuple(mx.broadcast_shapes(ss.shape, ns.shape))
        ss_b, ns_b = mx.broadcast_to(ss, shp), mx.broadcast_to(ns, shp)
        log_h = mx.log(_zipf_tail(ss_b, mx.zeros_like(ns_b), ns_b, _zipf_table(ss_b)))
        return where_valid(_and(valid, in_sup), -ss * mx.log(ks) - log_h)

    def support(self, s: Any, n: Any) -> mx.array:
        sa, na = _f32(s), _f32(n)
        vals = mx.arange(1, _eager_max(na) + 1, dtype=mx.int32)
        return _enum(vals, batch_shape(sa, na))


class Delta(Distribution):
    """Delta(value): the point mass at ``value``.

    ``sample`` returns ``value`` (broadcast to ``shape + value.shape``); ``log_prob`` is
    0 where the argument equals ``value`` and ``-inf`` elsewhere, elementwise
    (event_ndim = 0). Python ints give int32 values, floats float32, bools booleans;
    arrays keep their dtype.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import delta
        >>> delta.sample(mx.random.key(0), 3, shape=(2,)).tolist()
        [3, 3]
        >>> float(delta.log_prob(3, 3)), float(delta.log_prob(2, 3))
        (0.0, -inf)
    """

    name = "delta"
    params = ("value",)
    is_discrete = True
    is_enumerable = True

    @staticmethod
    def _value(v: Any) -> mx.array:
        if isinstance(v, mx.array):
            return v
        if isinstance(v, bool):
            return mx.array(v)
        if isinstance(v, int):
            return mx.array(v, dtype=mx.int32)
        return mx.array(v, dtype=mx.float32)

    def sample(self, key: mx.array, value: Any, *, shape: Shape = ()) -> mx.array:
        v = self._value(value)
        return mx.broadcast_to(v, (*shape, *v.shape))

    def log_prob(self, x: Any, value: Any) -> mx.array:
        v = self._value(value)
        xa = self._value(x)
        out: mx.array = mx.where(xa == v, 0.0, -mx.inf).astype(mx.float32)
        return out

    def support(self, value: Any) -> mx.array:
        v = self._value(value)
        return v[None]


class PiecewiseUniform(Distribution):
    """PiecewiseUniform(bounds, probs): a density constant on each of K bins.

    p(x) = probs[i] / (Σ probs · (bounds[i+1] − bounds[i])) for bounds[i] ≤ x <
    bounds[i+1] (the last bin includes bounds[K]); ``bounds`` has K + 1 strictly
    increasing finite entries and ``probs`` K non-negative weights (normalised), both
    with their last axis as the bin axis (leading axes batch). A continuous
    distribution (float32 values); sampled exactly as a Gumbel-max bin choice followed
    by a uniform position in the bin. Not reparameterised (gradients do not reach
    ``probs`` through samples).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.discrete import piecewise_uniform
        >>> b, p = mx.array([0.0, 1.0, 3.0]), mx.array([0.5, 0.5])
        >>> round(float(piecewise_uniform.log_prob(2.0, b, p)), 4)
        -1.3863
    """

    name = "piecewise_uniform"
    params = ("bounds", "probs")

    def _params(self, bounds: Any, probs: Any) -> tuple[mx.array, mx.array]:
        _check_weights(self.name, "probs", probs)
        if isinstance(bounds, (list, tuple)) and all(isinstance(v, (int, float)) for v in bounds):
            if any(not b1 > b0 for b0, b1 in itertools.pairwise(bounds)) or not all(
                math.isfinite(v) for v in bounds
            ):
                raise ValueError(
                    f"{self.name}: parameter bounds={bounds!r} is invalid; it must be "
                    "finite and strictly increasing"
                )
        bd, pr = _f32(bounds), _f32(probs)
        if bd.ndim == 0 or pr.ndim == 0 or bd.shape[-1] != pr.shape[-1] + 1:
            raise ValueError(
                f"{self.name}: bounds must have one more entry than probs on the last "
                f"axis (got shapes {bd.shape} and {pr.shape})"
            )
        return bd, pr

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.interval(_bound(params[0], 0), _bound(params[0], -1))

    def sample(self, key: mx.array, bounds: Any, probs: Any, *, shape: Shape = ()) -> mx.array:
        bd, pr = self._params(bounds, probs)
        kk = pr.shape[-1]
        full = tuple(shape) + batch_shape(bd, pr, event_ndims=(1, 1))
        k1, k2 = _split(key, 2)
        g = mx.random.gumbel(shape=(*full, kk), key=k1)
        i = mx.stop_gradient(mx.argmax(mx.log(mx.maximum(pr, 0.0)) + g, axis=-1)[..., None])
        bb = mx.broadcast_to(bd, (*full, kk + 1))
        left = mx.take_along_axis(bb, i, axis=-1)[..., 0]
        right = mx.take_along_axis(bb, i + 1, axis=-1)[..., 0]
        u = _uniform(k2, full)
        return mx.minimum(left + u * (right - left), right)

    def log_prob(self, value: Any, bounds: Any, probs: Any) -> mx.array:
        bd, pr = self._params(bounds, probs)
        x = _f32(value)
        kk = pr.shape[-1]
        total = mx.sum(pr, axis=-1)
        widths = bd[..., 1:] - bd[..., :-1]
        valid = _and(
            mx.all(pr >= 0, axis=-1),
            mx.all(mx.isfinite(pr), axis=-1),
            total > 0,
            mx.all(widths > 0, axis=-1),
            mx.all(mx.isfinite(bd), axis=-1),
        )
        bshape = batch_shape(bd, pr, event_ndims=(1, 1))
        out_shape = tuple(mx.broadcast_shapes(x.shape, bshape))
        xb = mx.broadcast_to(x, out_shape)
        bb = mx.broadcast_to(bd, (*out_shape, kk + 1))
        count = mx.stop_gradient(mx.sum((mx.expand_dims(xb, -1) >= bb).astype(mx.int32), axis=-1))
        idx = mx.clip(count - 1, 0, kk - 1)[..., None]
        in_sup = _and(xb >= bb[..., 0], xb <= bb[..., kk])
        pb = mx.broadcast_to(pr, (*out_shape, kk))
        wb = mx.broadcast_to(mx.where(mx.expand_dims(valid, -1), widths, 1.0), (*out_shape, kk))
        pi = mx.take_along_axis(pb, idx, axis=-1)[..., 0]
        wi = mx.take_along_axis(wb, idx, axis=-1)[..., 0]
        ok = _and(valid, in_sup)
        lp = (
            mx.log(mx.where(_and(ok, pi > 0), pi, 1.0))
            - mx.log(mx.where(valid, total, 1.0))
            - mx.log(wi)
        )
        lp = mx.where(pi > 0, lp, -mx.inf)
        return where_valid(ok, lp)


bernoulli = Bernoulli()
flip = bernoulli
categorical = Categorical()
categorical_logits = CategoricalLogits()
poisson = Poisson()
geometric = Geometric()
binomial = Binomial()
neg_binomial = NegBinomial()
uniform_discrete = UniformDiscrete()
multinomial = Multinomial()
beta_binomial = BetaBinomial()
dirichlet_multinomial = DirichletMultinomial()
zipf = Zipf()
delta = Delta()
piecewise_uniform = PiecewiseUniform()
