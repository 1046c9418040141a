"""Continuous scalar distributions: the location–scale families, their relatives, the
truncated normal and two circular distributions.

Distributions (parameter order is public API, DESIGN §6):

========================  ====================================  ==========================
name                      parameters                            sampler
========================  ====================================  ==========================
``normal``                mu, sigma                             mu + sigma N
``uniform``               low, high                             low + (high - low) U
``exponential``           rate                                  E / rate
``laplace``               loc, scale                            loc ± scale E
``cauchy``                loc, scale                            loc ± scale cot(pi W)
``logistic``              loc, scale                            loc ± scale log((1-W)/W)
``gumbel``                loc, scale                            loc - scale log E
``half_normal``           sigma                                 sigma ``|N|``
``half_cauchy``           scale                                 scale cot(pi W)
``log_normal``            mu, sigma                             exp(mu + sigma N)
``weibull``               shape k, scale lambda                 lambda E^(1/k)
``pareto``                scale x_m, shape alpha                x_m exp(E / alpha)
``truncated_normal``      mu, sigma, low, high                  inverse CDF in log space
``von_mises``             mu, kappa                             Best–Fisher rejection
``wrapped_cauchy``        mu, rho                               inverse CDF
========================  ====================================  ==========================

(N ~ N(0, 1) from ``mx.random.normal``; E ~ Exp(1); W ~ U(0, 1/2); "±" a fair random
sign.) Every sampler except ``von_mises`` is a differentiable transform of
parameter-free noise, so those distributions have ``has_reparam = True`` and
``reparam_sample`` is the sampler itself; ``von_mises`` is sampled by rejection and has
no reparameterised sampler (``has_reparam = False``).

Conventions beyond :mod:`genmlx.dists.base`:

* Uniform noise resolves the tails. ``U(0, 1)`` from MLX has a resolution of 2**-24
  near 1 but ~2**-32 near 0, so the samplers only ever take logarithms / cotangents of
  the *small* side: E ~ Exp(1) is drawn as ``-log1p(-W)`` or ``-log(W)`` (W ~ U(0, 1/2))
  with probability 1/2 each, which is exactly Exp(1) and resolves both tails (E up to
  23, and E near 0 to relative precision); symmetric laws draw ``|X|`` from the lower
  half of the quantile function and a random sign. ``u = 0`` (probability ~2**-32) is
  replaced by 2**-33. Normal noise comes from ``mx.random.normal``, whose float32
  resolution reaches ``|N|`` = 5.42 (the tail mass beyond, 6e-8, is not drawn).
* Draws of the positive distributions are clamped into float32's normal range
  [2**-126, 3.4e38], so that a draw is never 0 or inf where the law gives that
  probability 0 and its log density is finite (only reachable with extreme
  parameters, e.g. ``weibull`` with k < 0.01).
* Sampling with an invalid *array* parameter gives NaN at those elements; ``log_prob``
  gives ``-inf`` there (NaN-free, also in gradients). Invalid plain-number parameters
  raise ``ValueError``.
* Log densities are written in log space with stable special functions from
  :mod:`genmlx.dists.special` (``log1p``, ``log_normal_cdf_diff``, ``log_i0e``, ...).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.dists.continuous import normal
    >>> normal.sample(mx.random.key(0), mx.zeros(3), 1.0, shape=(2,)).shape
    (2, 3)
    >>> round(float(normal.log_prob(0.0, 0.0, 1.0)), 6)
    -0.918939
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core import fused as _fused
from genmlx.core.distribution import Distribution, Param, mask_invalid
from genmlx.dists.base import arr, is_plain_number, sample_shape, where_valid
from genmlx.dists.special import (
    log_i0e,
    log_ndtr,
    log_normal_cdf_diff,
    log_normal_cdf_diff_scaled,
    ndtri_exp,
)

__all__ = [
    "VON_MISES_ROUNDS",
    "Cauchy",
    "Exponential",
    "Gumbel",
    "HalfCauchy",
    "HalfNormal",
    "Laplace",
    "LogNormal",
    "Logistic",
    "Normal",
    "Pareto",
    "TruncatedNormal",
    "Uniform",
    "VonMises",
    "Weibull",
    "WrappedCauchy",
    "WrappedNormal",
    "cauchy",
    "exponential",
    "gumbel",
    "half_cauchy",
    "half_normal",
    "laplace",
    "log_normal",
    "logistic",
    "normal",
    "pareto",
    "truncated_normal",
    "uniform",
    "von_mises",
    "weibull",
    "wrapped_cauchy",
    "wrapped_normal",
]

_LN2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)
_HALF_LOG_2PI = 0.5 * _LOG_2PI
_LOG_PI = math.log(math.pi)
_HALF_LOG_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
_TWO_PI = 2.0 * math.pi
_TINY = 2.0**-126  # smallest normal float32
_F32_MAX = float.fromhex("0x1.fffffep+127")
_U_MIN = 2.0**-33  # replaces u = 0 (MLX's uniform has ~2**-32 resolution near 0)
_INF = math.inf


# --------------------------------------------------------------------------- helpers
def _f32(x: Any) -> mx.array:
    a = arr(x)
    return a if a.dtype == mx.float32 else a.astype(mx.float32)


def _shape(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(shape)


def _and(*xs: mx.array) -> mx.array:
    """Elementwise logical and. (Not the ``&`` operator: it maps to ``bitwise_and``,
    whose ``mx.vmap`` rule in MLX 0.32 drops the batch axis when its first operand is
    unbatched, e.g. an unbatched parameter check ``&`` a batched value check.)"""
    out = xs[0]
    for x in xs[1:]:
        out = mx.logical_and(out, x)
    return out


def _or(*xs: mx.array) -> mx.array:
    """Elementwise logical or (``mx.logical_or``; see :func:`_and`)."""
    out = xs[0]
    for x in xs[1:]:
        out = mx.logical_or(out, x)
    return out


def _finite(x: mx.array) -> mx.array:
    return ~_or(mx.isnan(x), mx.isinf(x))


def _pos(x: mx.array) -> mx.array:
    """Finite and > 0 (False for NaN)."""
    return _and(x > 0.0, x < _INF)


def _is_finite(v: float) -> bool:
    return math.isfinite(v)


def _is_pos(v: float) -> bool:
    return 0.0 < v < _INF


def _above(low: Any) -> C.Constraint:
    """The range of an upper bound: above ``low``."""
    return C.greater_than(low)


def _above_low(mu: Any, sigma: Any, low: Any) -> C.Constraint:
    """The range of a truncation's upper bound: above ``low``."""
    return C.greater_than(low)


def _uniform(key: mx.array, shape: tuple[int, ...]) -> mx.array:
    """U(0, 1) with u = 0 replaced by 2**-33 (so log u is finite)."""
    out: mx.array = mx.maximum(mx.random.uniform(shape=shape, key=key), _U_MIN)
    return out


def _half_uniform_and_sign(key: mx.array, shape: tuple[int, ...]) -> tuple[mx.array, mx.array]:
    """W ~ U(0, 1/2) (fine resolution near 0) and an independent fair sign ±1."""
    u = mx.random.uniform(shape=(2, *shape), key=key)
    w = 0.5 * mx.maximum(u[0], _U_MIN)
    sign = mx.where(u[1] < 0.5, -1.0, 1.0)
    return w, sign


def _std_exponential(key: mx.array, shape: tuple[int, ...]) -> mx.array:
    """E ~ Exp(1) = −log(1 − V), V ~ U(0, 1), with V = W or 1 − W (W ~ U(0, 1/2)) with
    probability 1/2 each: exact, and resolved in both tails (E near 0 and E up to 23)."""
    w, sign = _half_uniform_and_sign(key, shape)
    out: mx.array = mx.where(sign < 0.0, -mx.log1p(-w), -mx.log(w))
    return out


def _clamp_pos(x: mx.array) -> mx.array:
    out: mx.array = mx.clip(x, _TINY, _F32_MAX)
    return out


def _nan_where_invalid(valid: mx.array, x: mx.array) -> mx.array:
    out: mx.array = mask_invalid(valid, x, mx.nan)
    return out


def _safe_value(raw: mx.array) -> mx.array:
    """The value with ±inf and NaN replaced by 0, for computing log densities on (their
    result there is replaced by :func:`_finish`)."""
    out: mx.array = mx.where(mx.isfinite(raw), raw, 0.0)
    return out


def _finish(raw: mx.array, ok: mx.array, lp: mx.array, valid: mx.array) -> mx.array:
    """``lp`` where ``ok`` and the value is finite; -inf at ±inf values and elsewhere
    (every density here vanishes at ±inf); NaN at NaN values — unless the parameters
    are invalid (``valid`` False), which gives -inf whatever the value (the contract:
    invalid parameters never give NaN; a sampler draws NaN there, and its score must
    say "impossible", not "undefined")."""
    nan_value = _and(mx.isnan(raw), valid)
    out: mx.array = mx.where(nan_value, mx.nan, where_valid(_and(ok, mx.isfinite(raw)), lp))
    return out


def _log1p_square(z: mx.array) -> mx.array:
    """log(1 + z²) without overflow for ``|z|`` > 1.8e19."""
    t = mx.abs(z)
    big = t > 1.0
    tb = mx.where(big, t, 1.0)
    ts = mx.where(big, 0.0, z)
    out: mx.array = mx.where(big, 2.0 * mx.log(tb) + mx.log1p(1.0 / (tb * tb)), mx.log1p(ts * ts))
    return out


def _wrap_angle(theta: mx.array) -> mx.array:
    """theta reduced to [−π, π)."""
    t = theta + math.pi
    t = t - _TWO_PI * mx.floor(t / _TWO_PI)
    out = t - math.pi
    out = mx.where(out >= math.pi, out - _TWO_PI, out)
    res: mx.array = mx.where(out < -math.pi, -math.pi, out)
    return res


class _Scalar(Distribution):
    """Shared plumbing: float32 values, scalar events."""

    is_discrete = False
    event_ndim = 0


# ------------------------------------------------------------------ location–scale
class Normal(_Scalar):
    """Normal (Gaussian) distribution N(mu, sigma²); parameters broadcast.

    Density: ``p(x) = exp(-(x - mu)² / (2 sigma²)) / (sigma sqrt(2 pi))``.

    Args (of ``sample`` / ``log_prob``):
        mu: mean, finite. sigma: standard deviation, finite and > 0.

    Support: the real line. Sampler: ``mu + sigma * N`` (reparameterised).

    Example:
        >>> import mlx.core as mx
        >>> round(float(normal.log_prob(1.0, 0.0, 2.0)), 6)
        -1.737086
        >>> normal.sample(mx.random.key(1), mx.zeros((4,)), mx.ones((3, 1))).shape
        (3, 4)
    """

    name = "normal"
    params = (Param("mu", C.real), Param("sigma", C.positive))
    gaussian_location_scale = True
    has_reparam = True
    fused_log_prob = _fused.NORMAL

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.real

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: Any = ()) -> mx.array:
        z = mx.random.normal(shape=sample_shape(_shape(shape), _f32(mu), _f32(sigma)), key=key)
        return self.from_standard_normal(z, mu, sigma)

    def standard_normal_shape(self, mu: Any, sigma: Any) -> tuple[int, ...]:
        """Shape of the standard normals one draw uses (presampling on GPUs)."""
        return sample_shape((), _f32(mu), _f32(sigma))

    def from_standard_normal(self, z: mx.array, mu: Any, sigma: Any) -> mx.array:
        """``mu + sigma * z`` (NaN where the parameters are invalid)."""
        valid = self.params_valid(mu, sigma)
        mu, sigma = _f32(mu), _f32(sigma)
        return _nan_where_invalid(valid, mu + sigma * z)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> mx.array:
        if (
            is_plain_number(sigma)
            and _is_pos(float(sigma))
            and not (is_plain_number(mu) and not _is_finite(float(mu)))
        ):
            # Fast path (the common case: a likelihood with a fixed noise scale): no
            # masking passes over the full broadcast shape. ±inf values give -inf and NaN
            # values NaN as below; a non-finite array mu propagates (NaN mu -> NaN, which
            # the score check reports at the site: the one exception to the -inf rule,
            # kept so that this path stays one fused expression).
            z = (_f32(value) - (mu if is_plain_number(mu) else _f32(mu))) / float(sigma)
            out: mx.array = -0.5 * z * z - (math.log(float(sigma)) + _HALF_LOG_2PI)
            return out
        raw = _f32(value)
        x = _safe_value(raw)
        mu, sigma = _f32(mu), _f32(sigma)
        valid = self.params_valid(mu, sigma)
        mu_s = mx.where(valid, mu, 0.0)
        sig_s = mx.where(valid, sigma, 1.0)
        z = (x - mu_s) / sig_s
        return _finish(raw, valid, -0.5 * z * z - mx.log(sig_s) - _HALF_LOG_2PI, valid)


class Uniform(_Scalar):
    """Continuous uniform distribution on [low, high].

    Density: ``p(x) = 1 / (high - low)`` for ``low <= x <= high``, else 0.

    Args:
        low, high: finite bounds with ``low < high``.

    Support: [low, high] (draws lie in [low, high)). Sampler: ``low + (high - low) U``
    (reparameterised).

    Example:
        >>> round(float(uniform.log_prob(0.5, 0.0, 4.0)), 6)  # -log 4
        -1.386294
        >>> float(uniform.log_prob(5.0, 0.0, 4.0))
        -inf
    """

    name = "uniform"
    params = (Param("low", C.real), Param("high", _above))
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.interval(params[0], params[1])

    def sample(self, key: mx.array, low: Any, high: Any, *, shape: Any = ()) -> mx.array:
        low, high = _f32(low), _f32(high)
        u = mx.random.uniform(shape=sample_shape(_shape(shape), low, high), key=key)
        valid = self.params_valid(low, high)
        x = mx.minimum(low + (high - low) * u, high)
        return _nan_where_invalid(valid, x)

    def log_prob(self, value: Any, low: Any, high: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        low, high = _f32(low), _f32(high)
        valid = self.params_valid(low, high)
        width = mx.where(valid, high - low, 1.0)
        inside = _and(valid, x >= low, x <= high)
        return _finish(raw, inside, -mx.log(width), valid)


class Exponential(_Scalar):
    """Exponential distribution with rate ``rate`` (mean 1/rate).

    Density: ``p(x) = rate exp(-rate x)`` for ``x >= 0``.

    Args:
        rate: finite and > 0.

    Support: [0, inf). Sampler: ``E / rate`` with ``E ~ Exp(1)`` resolved in both tails
    (reparameterised).

    Example:
        >>> round(float(exponential.log_prob(2.0, 0.5)), 6)  # log 0.5 - 1
        -1.693147
    """

    name = "exponential"
    params = (Param("rate", C.positive),)
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(self, key: mx.array, rate: Any, *, shape: Any = ()) -> mx.array:
        valid = self.params_valid(rate)
        rate = _f32(rate)
        e = _std_exponential(key, sample_shape(_shape(shape), rate))
        return _nan_where_invalid(valid, _clamp_pos(e / rate))

    has_iid_statistics = True

    def iid_statistics(self, value: mx.array) -> tuple[mx.array, ...] | None:
        """``(Σx, n)`` of non-negative finite values (``None`` otherwise)."""
        x = mx.array(value).astype(mx.float32).reshape(-1)
        if not bool(mx.all(mx.logical_and(x >= 0, mx.isfinite(x))).item()):
            return None
        return (mx.sum(x), mx.array(float(x.size)))

    def iid_log_prob(self, stats: tuple[mx.array, ...], rate: Any) -> mx.array:
        """``n log r − r Σx``."""
        sx, n = stats
        r = _f32(rate)
        valid = self.params_valid(r)
        rs = mx.where(valid, r, 1.0)
        return where_valid(valid, n * mx.log(rs) - rs * sx)

    def log_prob(self, value: Any, rate: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        rate = _f32(rate)
        valid = self.params_valid(rate)
        r = mx.where(valid, rate, 1.0)
        xs = mx.where(x >= 0.0, x, 0.0)
        return _finish(raw, _and(valid, x >= 0.0), mx.log(r) - r * xs, valid)


class _LocScale(_Scalar):
    """A location–scale family ``loc + scale * Z``: subclasses give ``_std_sample`` (Z)
    and ``_std_log_prob`` (log density of Z)."""

    params = (Param("loc", C.real), Param("scale", C.positive))
    has_reparam = True

    @abstractmethod
    def _std_sample(self, key: mx.array, shape: tuple[int, ...]) -> mx.array:
        """Draws of the standard member Z of the family, of shape ``shape``."""

    @abstractmethod
    def _std_log_prob(self, z: mx.array) -> mx.array:
        """log density of the standard member Z at ``z``."""

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.real

    def sample(self, key: mx.array, loc: Any, scale: Any, *, shape: Any = ()) -> mx.array:
        valid = self.params_valid(loc, scale)
        loc, scale = _f32(loc), _f32(scale)
        z = self._std_sample(key, sample_shape(_shape(shape), loc, scale))
        return _nan_where_invalid(valid, loc + scale * z)

    def log_prob(self, value: Any, loc: Any, scale: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        loc, scale = _f32(loc), _f32(scale)
        valid = self.params_valid(loc, scale)
        loc_s = mx.where(valid, loc, 0.0)
        sc_s = mx.where(valid, scale, 1.0)
        z = (x - loc_s) / sc_s
        return _finish(raw, valid, self._std_log_prob(z) - mx.log(sc_s), valid)


class Laplace(_LocScale):
    """Laplace (double exponential) distribution.

    Density: ``p(x) = exp(-|x - loc| / scale) / (2 scale)``.

    Args:
        loc: finite. scale: finite and > 0.

    Support: the real line. Sampler: ``loc ± scale E`` with E ~ Exp(1)
    (reparameterised).

    Example:
        >>> round(float(laplace.log_prob(1.0, 0.0, 2.0)), 6)  # -log 4 - 1/2
        -1.886294
    """

    name = "laplace"
    fused_log_prob = _fused.LAPLACE

    def _std_sample(self, key: mx.array, shape: tuple[int, ...]) -> mx.array:
        k1, k2 = mx.random.split(key, 2)
        sign = mx.where(mx.random.uniform(shape=shape, key=k2) < 0.5, -1.0, 1.0)
        return sign * _std_exponential(k1, shape)

    def _std_log_prob(self, z: mx.array) -> mx.array:
        out: mx.array = -mx.abs(z) - _LN2
        return out


class Cauchy(_LocScale):
    """Cauchy distribution.

    Density: ``p(x) = 1 / (pi scale (1 + ((x - loc) / scale)²))``.

    Args:
        loc: finite (the median). scale: finite and > 0 (the half-width at half-max).

    Support: the real line. Sampler: ``loc ± scale cot(pi W)``, W ~ U(0, 1/2) — the
    lower half of the quantile function tan(pi (p - 1/2)) and a random sign, so both
    tails are resolved (reparameterised). No mean or variance exist.

    Example:
        >>> round(float(cauchy.log_prob(1.0, 0.0, 1.0)), 6)  # -log(2 pi)
        -1.837877
    """

    name = "cauchy"
    fused_log_prob = _fused.CAUCHY

    def _std_sample(self, key: mx.array, shape: tuple[int, ...]) -> mx.array:
        w, sign = _half_uniform_and_sign(key, shape)
        pw = math.pi * w
        out: mx.array = sign * mx.cos(pw) / mx.sin(pw)
        return out

    def _std_log_prob(self, z: mx.array) -> mx.array:
        return -_LOG_PI - _log1p_square(z)


class Logistic(_LocScale):
    """Logistic distribution.

    Density: ``p(x) = exp(-z) / (scale (1 + exp(-z))²)`` with ``z = (x - loc) / scale``.

    Args:
        loc: finite (mean). scale: finite and > 0 (variance is scale² pi² / 3).

    Support: the real line. Sampler: ``loc ± scale log((1 - W) / W)``, W ~ U(0, 1/2)
    (inverse CDF with a random sign; reparameterised).

    Example:
        >>> round(float(logistic.log_prob(0.0, 0.0, 1.0)), 6)  # log 1/4
        -1.386294
    """

    name = "logistic"

    def _std_sample(self, key: mx.array, shape: tuple[int, ...]) -> mx.array:
        w, sign = _half_uniform_and_sign(key, shape)
        out: mx.array = sign * (mx.log1p(-w) - mx.log(w))
        return out

    def _std_log_prob(self, z: mx.array) -> mx.array:
        a = mx.abs(z)
        out: mx.array = -a - 2.0 * mx.log1p(mx.exp(-a))
        return out


class Gumbel(_LocScale):
    """Gumbel (type-I extreme value, maximum) distribution, as scipy's ``gumbel_r``.

    Density: ``p(x) = exp(-(z + exp(-z))) / scale`` with ``z = (x - loc) / scale``.

    Args:
        loc: finite (the mode). scale: finite and > 0.

    Support: the real line. Sampler: ``loc - scale log E``, E ~ Exp(1) resolved in both
    tails (reparameterised). Mean ``loc + euler_gamma scale``.

    Example:
        >>> round(float(gumbel.log_prob(0.0, 0.0, 1.0)), 6)  # -1
        -1.0
    """

    name = "gumbel"

    def _std_sample(self, key: mx.array, shape: tuple[int, ...]) -> mx.array:
        out: mx.array = -mx.log(_std_exponential(key, shape))
        return out

    def _std_log_prob(self, z: mx.array) -> mx.array:
        out: mx.array = -z - mx.exp(-z)
        return out


# ------------------------------------------------------------------- half / positive
class HalfNormal(_Scalar):
    """Half-normal distribution: ``|X|`` for X ~ N(0, sigma²).

    Density: ``p(x) = sqrt(2 / pi) / sigma * exp(-x² / (2 sigma²))`` for ``x >= 0``.

    Args:
        sigma: finite and > 0.

    Support: [0, inf). Sampler: ``sigma |N|`` (reparameterised).

    Example:
        >>> round(float(half_normal.log_prob(0.0, 1.0)), 6)  # log sqrt(2/pi)
        -0.225791
    """

    name = "half_normal"
    params = (Param("sigma", C.positive),)
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(self, key: mx.array, sigma: Any, *, shape: Any = ()) -> mx.array:
        z = mx.random.normal(shape=sample_shape(_shape(shape), _f32(sigma)), key=key)
        return self.from_standard_normal(z, sigma)

    def standard_normal_shape(self, sigma: Any) -> tuple[int, ...]:
        """Shape of the standard normals one draw uses (presampling on GPUs)."""
        return sample_shape((), _f32(sigma))

    def from_standard_normal(self, z: mx.array, sigma: Any) -> mx.array:
        """``sigma * |z|`` (NaN where ``sigma`` is invalid)."""
        valid = self.params_valid(sigma)
        sigma = _f32(sigma)
        return _nan_where_invalid(valid, sigma * mx.abs(z))

    def log_prob(self, value: Any, sigma: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        sigma = _f32(sigma)
        valid = self.params_valid(sigma)
        s = mx.where(valid, sigma, 1.0)
        z = mx.where(x >= 0.0, x, 0.0) / s
        return _finish(
            raw, _and(valid, x >= 0.0), _HALF_LOG_2_OVER_PI - mx.log(s) - 0.5 * z * z, valid
        )


class HalfCauchy(_Scalar):
    """Half-Cauchy distribution: ``|X|`` for X ~ Cauchy(0, scale).

    Density: ``p(x) = 2 / (pi scale (1 + (x / scale)²))`` for ``x >= 0``.

    Args:
        scale: finite and > 0 (the median).

    Support: [0, inf). Sampler: ``scale cot(pi W)``, W ~ U(0, 1/2) (inverse CDF;
    reparameterised).

    Example:
        >>> round(float(half_cauchy.log_prob(1.0, 1.0)), 6)  # -log pi
        -1.14473
    """

    name = "half_cauchy"
    params = (Param("scale", C.positive),)
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(self, key: mx.array, scale: Any, *, shape: Any = ()) -> mx.array:
        valid = self.params_valid(scale)
        scale = _f32(scale)
        w, _ = _half_uniform_and_sign(key, sample_shape(_shape(shape), scale))
        pw = math.pi * w
        return _nan_where_invalid(valid, scale * (mx.cos(pw) / mx.sin(pw)))

    def log_prob(self, value: Any, scale: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        scale = _f32(scale)
        valid = self.params_valid(scale)
        s = mx.where(valid, scale, 1.0)
        z = mx.where(x >= 0.0, x, 0.0) / s
        return _finish(
            raw, _and(valid, x >= 0.0), _LN2 - _LOG_PI - mx.log(s) - _log1p_square(z), valid
        )


class LogNormal(_Scalar):
    """Log-normal distribution: exp(X) for X ~ N(mu, sigma²).

    Density: ``p(x) = exp(-(log x - mu)² / (2 sigma²)) / (x sigma sqrt(2 pi))``, x > 0.

    Args:
        mu: finite (mean of log x). sigma: finite and > 0 (std of log x).

    Support: (0, inf). Sampler: ``exp(mu + sigma N)``, clamped into float32's normal
    range (reparameterised).

    Example:
        >>> round(float(log_normal.log_prob(1.0, 0.0, 1.0)), 6)
        -0.918939
    """

    name = "log_normal"
    params = (Param("mu", C.real), Param("sigma", C.positive))
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: Any = ()) -> mx.array:
        z = mx.random.normal(shape=sample_shape(_shape(shape), _f32(mu), _f32(sigma)), key=key)
        return self.from_standard_normal(z, mu, sigma)

    def standard_normal_shape(self, mu: Any, sigma: Any) -> tuple[int, ...]:
        """Shape of the standard normals one draw uses (presampling on GPUs)."""
        return sample_shape((), _f32(mu), _f32(sigma))

    def from_standard_normal(self, z: mx.array, mu: Any, sigma: Any) -> mx.array:
        """``exp(mu + sigma * z)`` (NaN where the parameters are invalid)."""
        valid = self.params_valid(mu, sigma)
        mu, sigma = _f32(mu), _f32(sigma)
        x = _clamp_pos(mx.exp(mu + sigma * z))
        return _nan_where_invalid(valid, x)

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        mu, sigma = _f32(mu), _f32(sigma)
        valid = self.params_valid(mu, sigma)
        inside = _and(valid, x > 0.0)
        mu_s = mx.where(valid, mu, 0.0)
        sig_s = mx.where(valid, sigma, 1.0)
        lx = mx.log(mx.where(inside, x, 1.0))
        z = (lx - mu_s) / sig_s
        return _finish(raw, inside, -0.5 * z * z - mx.log(sig_s) - _HALF_LOG_2PI - lx, valid)


class Weibull(_Scalar):
    """Weibull distribution with **shape k and scale lambda, in that order** (GenJAX's
    ``weibull(concentration, scale)``; scipy's ``weibull_min(c=k, scale=lambda)``).

    Density: ``p(x) = (k / lambda) (x / lambda)^(k - 1) exp(-(x / lambda)^k)``, x >= 0.

    Args:
        k: shape, finite and > 0. lam: scale, finite and > 0.

    Support: [0, inf). At x = 0 the log density is +inf for k < 1 (as in scipy); draws
    are never 0. Sampler: ``lambda E^(1/k)`` (inverse CDF), clamped into float32's
    normal range (reparameterised).

    Example:
        >>> round(float(weibull.log_prob(1.0, 2.0, 1.0)), 6)  # log 2 - 1
        -0.306853
    """

    name = "weibull"
    params = (Param("k", C.positive), Param("lam", C.positive))
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(self, key: mx.array, k: Any, lam: Any, *, shape: Any = ()) -> mx.array:
        k, lam = _f32(k), _f32(lam)
        valid = self.params_valid(k, lam)
        e = _std_exponential(key, sample_shape(_shape(shape), k, lam))
        ks = mx.where(valid, k, 1.0)
        return _nan_where_invalid(valid, _clamp_pos(lam * mx.exp(mx.log(e) / ks)))

    def log_prob(self, value: Any, k: Any, lam: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        k, lam = _f32(k), _f32(lam)
        valid = self.params_valid(k, lam)
        ks = mx.where(valid, k, 1.0)
        ls = mx.where(valid, lam, 1.0)
        pos = x > 0.0
        zs = mx.where(pos, x / ls, 1.0)
        lz = mx.log(zs)
        interior = mx.log(ks) - mx.log(ls) + (ks - 1.0) * lz - mx.exp(ks * lz)
        # x == 0: (k - 1) log 0 is -inf (k > 1), 0 (k = 1) or +inf (k < 1); written with
        # constants so that no -inf * 0 reaches the gradient in k
        edge = mx.where(ks > 1.0, -_INF, mx.where(ks < 1.0, _INF, 0.0))
        at_zero = mx.log(ks) - mx.log(ls) + edge
        out = mx.where(pos, interior, at_zero)
        return _finish(raw, _and(valid, x >= 0.0), out, valid)


class Pareto(_Scalar):
    """Pareto (type I) distribution with **scale x_m and shape alpha, in that order**
    (scipy's ``pareto(b=alpha, scale=x_m)``).

    Density: ``p(x) = alpha x_m^alpha / x^(alpha + 1)`` for ``x >= x_m``.

    Args:
        x_m: scale (the minimum), finite and > 0. alpha: shape (tail index), finite
            and > 0; the mean exists for alpha > 1, the variance for alpha > 2.

    Support: [x_m, inf). Sampler: ``x_m exp(E / alpha)`` (inverse CDF), clamped below
    float32's max (reparameterised).

    Example:
        >>> round(float(pareto.log_prob(2.0, 1.0, 3.0)), 6)  # log 3 - 4 log 2
        -1.673976
    """

    name = "pareto"
    params = (Param("x_m", C.positive), Param("alpha", C.positive))
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.greater_than(params[0])

    def sample(self, key: mx.array, x_m: Any, alpha: Any, *, shape: Any = ()) -> mx.array:
        x_m, alpha = _f32(x_m), _f32(alpha)
        valid = self.params_valid(x_m, alpha)
        e = _std_exponential(key, sample_shape(_shape(shape), x_m, alpha))
        a = mx.where(valid, alpha, 1.0)
        return _nan_where_invalid(valid, mx.minimum(x_m * mx.exp(e / a), _F32_MAX))

    def log_prob(self, value: Any, x_m: Any, alpha: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        x_m, alpha = _f32(x_m), _f32(alpha)
        valid = self.params_valid(x_m, alpha)
        xm = mx.where(valid, x_m, 1.0)
        a = mx.where(valid, alpha, 1.0)
        inside = _and(valid, x >= xm)
        xs = mx.where(inside, x, xm)
        lx = mx.log(xs)
        return _finish(raw, inside, mx.log(a) - lx - a * (lx - mx.log(xm)), valid)


# ------------------------------------------------------------------ truncated normal
def _standardise(bound: mx.array, mu: mx.array, sigma: mx.array) -> mx.array:
    """(bound - mu) / sigma, keeping ±inf bounds infinite without NaN gradients."""
    inf = mx.isinf(bound)
    b = mx.where(inf, 0.0, bound)
    out: mx.array = mx.where(inf, bound, (b - mu) / sigma)
    return out


class TruncatedNormal(_Scalar):
    """Normal N(mu, sigma²) truncated to [low, high].

    Density: ``p(x) = phi((x - mu) / sigma) / (sigma (Phi(b) - Phi(a)))`` for
    ``low <= x <= high``, where ``a = (low - mu) / sigma``, ``b = (high - mu) / sigma``
    and phi, Phi are the standard normal density and CDF.

    Args:
        mu: finite. sigma: finite and > 0. low, high: bounds with ``low < high``; either
            may be infinite (``-inf`` / ``inf``).

    Support: [low, high]. Sampler: inverse CDF, no rejection, in log space on the side
    of the draw away from the mode: with ``U ~ U(0, 1)`` and
    ``D = Phi(b) - Phi(a)`` (``log_normal_cdf_diff``), the standardised draw is
    ``ndtri_exp(log(Phi(a) + U D))`` when that probability is below 1/2 and
    ``-ndtri_exp(log(Phi(-b) + (1 - U) D))`` otherwise — both sums formed with
    ``logaddexp`` in log space. So far-tail truncations (``[8, 9]`` or even
    ``[40, 41]`` for N(0, 1)) are sampled to float32 accuracy. Draws are clipped into
    [low, high] against rounding. Reparameterised: gradients flow to all four
    parameters through the inverse CDF.

    Example:
        >>> import mlx.core as mx
        >>> x = truncated_normal.sample(mx.random.key(0), 0.0, 1.0, 8.0, 9.0, shape=(1000,))
        >>> bool(mx.all((x >= 8.0) & (x <= 9.0)))
        True
        >>> round(float(truncated_normal.log_prob(0.0, 0.0, 1.0, -1.0, 1.0)), 6)
        -0.537223
    """

    name = "truncated_normal"
    params = (
        Param("mu", C.real),
        Param("sigma", C.positive),
        Param("low", C.less_than(_INF), finite=False),
        Param("high", _above_low, finite=False),
    )
    has_reparam = True

    def _prep(
        self, mu: Any, sigma: Any, low: Any, high: Any
    ) -> tuple[mx.array, mx.array, mx.array, mx.array, mx.array, mx.array, mx.array]:
        mu, sigma, low, high = _f32(mu), _f32(sigma), _f32(low), _f32(high)
        valid = self.params_valid(mu, sigma, low, high)
        mu_s = mx.where(valid, mu, 0.0)
        sig_s = mx.where(valid, sigma, 1.0)
        low_s = mx.where(valid, low, -1.0)
        high_s = mx.where(valid, high, 1.0)
        a = _standardise(low_s, mu_s, sig_s)
        b = _standardise(high_s, mu_s, sig_s)
        return valid, mu_s, sig_s, low_s, high_s, a, b

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        return C.interval(params[2], params[3])

    def sample(
        self, key: mx.array, mu: Any, sigma: Any, low: Any, high: Any, *, shape: Any = ()
    ) -> mx.array:
        valid, mu_s, sig_s, low_s, high_s, a, b = self._prep(mu, sigma, low, high)
        u = _uniform(key, sample_shape(_shape(shape), valid))
        log_d = log_normal_cdf_diff(a, b)
        # log Phi(a) and log Phi(-b), -inf at infinite bounds (log_ndtr is only evaluated at
        # finite points: its derivative at -inf is +inf, and MLX's where passes inf * 0)
        a_inf = mx.isinf(a)
        b_inf = mx.isinf(b)
        log_phi_a = mx.where(a_inf, -_INF, log_ndtr(mx.where(a_inf, 0.0, a)))
        log_phi_mb = mx.where(b_inf, -_INF, log_ndtr(-mx.where(b_inf, 0.0, b)))
        # Phi(z) = Phi(a) + U D  and  Phi(-z) = Phi(-b) + (1 - U) D, in log space
        log_p = mx.logaddexp(log_phi_a, mx.log(u) + log_d)
        log_q = mx.logaddexp(log_phi_mb, mx.log1p(-u) + log_d)
        lower = log_p < -_LN2  # the draw is below the median: use the lower-tail form
        z_lo = ndtri_exp(mx.where(lower, log_p, -_LN2))
        z_hi = -ndtri_exp(mx.where(lower, -_LN2, log_q))
        z = mx.where(lower, z_lo, z_hi)
        x = mx.minimum(mx.maximum(mu_s + sig_s * z, low_s), high_s)
        return _nan_where_invalid(valid, x)

    def log_prob(self, value: Any, mu: Any, sigma: Any, low: Any, high: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        valid, mu_s, sig_s, low_s, high_s, a, b = self._prep(mu, sigma, low, high)
        inside = _and(valid, x >= low_s, x <= high_s)
        xs = mx.where(inside, x, mu_s)
        # -z^2/2 - log(Phi(b) - Phi(a)) = -(z - m)(z + m)/2 - [log(Phi(b) - Phi(a)) + m^2/2]
        # with m the point of [a, b] nearest 0 (a, b or 0): no large terms cancel in a tail.
        # z - m is formed as (x - bound)/sigma, exact, so that the log density does not
        # jitter with the rounding of (bound - mu)/sigma.
        upper = a >= 0.0
        lower = b <= 0.0
        bound = mx.where(upper, low_s, mx.where(lower, high_s, mu_s))
        bound = mx.where(mx.isinf(bound), mu_s, bound)
        z_minus_m = (xs - bound) / sig_s
        z_plus_m = ((xs - mu_s) + (bound - mu_s)) / sig_s
        lp = (
            -0.5 * z_minus_m * z_plus_m
            - _HALF_LOG_2PI
            - mx.log(sig_s)
            - log_normal_cdf_diff_scaled(a, b)
        )
        return _finish(raw, inside, lp, valid)


# ------------------------------------------------------------------------- circular
VON_MISES_ROUNDS = 42
"""Best–Fisher proposals per element. A proposal's wrapped-Cauchy angle comes from a
point of the unit disc (kept with probability pi/4), and Best–Fisher accepts at least
0.6577 of them (its infimum, approached as kappa → inf; computed by quadrature over
kappa in [1e-6, 1e6]), so a proposal is rejected with probability at most 0.4834 and an
element is never accepted with probability below 0.4834**42 < 6e-14 (plus < 1e-14 per
level that more elements are rejected than :func:`genmlx.dists.rejection.spill_slots`
has room for); such an element is given ``mu``. Later rounds run only for the elements
still rejected."""
_VM_REJECT = 1.0 - (math.pi / 4.0) * 0.6577


class VonMises(_Scalar):
    """Von Mises distribution on the circle, values in [-pi, pi).

    Density: ``p(x) = exp(kappa cos(x - mu)) / (2 pi I0(kappa))`` for
    ``-pi <= x <= pi`` (``-inf`` outside: wrap angles into [-pi, pi] first).

    Args:
        mu: location, any finite number (the density is 2 pi-periodic in mu).
        kappa: concentration, finite and >= 0 (kappa = 0 is the uniform distribution).

    Sampler: Best & Fisher (1979) rejection from a wrapped-Cauchy envelope, with up to
    ``VON_MISES_ROUNDS`` = 42 proposals per element and the first accepted one kept
    (never accepted: probability < 7e-14). The envelope angle is
    ``2 atan(a y / |x|)`` for a point ``(x, y)`` uniform on the unit disc (a standard
    Cauchy ratio; ``a = (1 - rho) / (1 + rho)``), so a proposal needs no sine or
    cosine: ``sin^2(delta / 2) = (a y)^2 / ((a y)^2 + x^2)``, and the one ``arctan``
    runs on the accepted values only (since 2026-12-07: the same key gives other draws
    than before). The acceptance quantity is written without cancellation (1 - rho and
    kappa / rho in closed form), so the sampler is exact for every kappa from 0 to 1e30.
    Not reparameterised (``has_reparam = False``): rejection has no pathwise gradient.

    Example:
        >>> import mlx.core as mx
        >>> round(float(von_mises.log_prob(0.0, 0.0, 0.0)), 6)  # -log(2 pi)
        -1.837877
        >>> x = von_mises.sample(mx.random.key(0), 3.0, 50.0, shape=(100,))
        >>> bool(mx.all((x >= -3.1416) & (x < 3.1416)))
        True
    """

    name = "von_mises"
    params = (Param("mu", C.real), Param("kappa", C.nonnegative))
    has_reparam = False

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.circular

    def sample(self, key: mx.array, mu: Any, kappa: Any, *, shape: Any = ()) -> mx.array:
        mu, kappa = _f32(mu), _f32(kappa)
        valid = self.params_valid(mu, kappa)
        out_shape = sample_shape(_shape(shape), mu, kappa)
        k = mx.where(valid, kappa, 1.0)
        big = k > 1.0
        kb = mx.where(big, k, 2.0)
        kq = mx.where(big, 1.0, k)
        s = mx.where(big, 2.0 * kb * mx.sqrt(1.0 + 0.25 / (kb * kb)), mx.sqrt(1.0 + 4.0 * kq * kq))
        tau = 1.0 + s
        sq = mx.sqrt(2.0 * tau)
        rho = (2.0 * k / (s + 1.0)) * (tau / (tau + sq))
        # 1 - rho = (sqrt(2 tau) - 1 - 1/(s + 2 kappa)) / (2 kappa), exact for large kappa
        one_m_rho = mx.where(big, (sq - 1.0 - 1.0 / (s + 2.0 * kb)) / (2.0 * kb), 1.0 - rho)
        k_over_2rho = ((s + 1.0) / tau) * (tau + sq) * 0.25  # finite at kappa = 0

        a = one_m_rho / (2.0 - one_m_rho)  # (1 - rho) / (1 + rho)

        def propose(
            key: mx.array, rshape: tuple[int, ...], prm: tuple[mx.array, ...]
        ) -> tuple[mx.array, mx.array]:
            k, a, one_m_rho, k_over_2rho = prm
            m = math.prod(rshape)
            k1, k2 = mx.random.split(key, 2)
            w = mx.random.split(k1, m).reshape(-1)
            # (x, y) uniform on the unit disc (pair kept with probability pi/4):
            # y / |x| is standard Cauchy, so t = a y / |x| = tan(delta / 2) for the
            # wrapped-Cauchy proposal delta, with no trigonometric function.
            x = (mx.view(w[:m], mx.int32).astype(mx.float32) * 2.0**-31).reshape(rshape)
            y = (mx.view(w[m:], mx.int32).astype(mx.float32) * 2.0**-31).reshape(rshape)
            ok = x * x + y * y < 1.0
            ay = a * y
            ay2 = ay * ay
            sh2 = ay2 / (ay2 + x * x)  # sin^2(delta / 2) = t^2 / (1 + t^2)
            # c = kappa (r - cos delta) with r = (1 + rho^2) / (2 rho)
            c = k_over_2rho * one_m_rho * one_m_rho + 2.0 * k * sh2
            log_u2 = mx.log(mx.maximum(mx.random.uniform(shape=rshape, key=k2), _U_MIN))
            acc = mx.logical_and(ok, log_u2 <= mx.log(c) + 1.0 - c)
            return ay / mx.abs(x), acc

        from genmlx.dists.rejection import first_accepted

        t = first_accepted(
            propose,
            key,
            out_shape,
            VON_MISES_ROUNDS,
            mx.array(0.0),
            (k, a, one_m_rho, k_over_2rho),
            _VM_REJECT,
        )
        out = 2.0 * mx.arctan(t)
        return _nan_where_invalid(valid, _wrap_angle(mu + out))

    def log_prob(self, value: Any, mu: Any, kappa: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        mu, kappa = _f32(mu), _f32(kappa)
        valid = self.params_valid(mu, kappa)
        mu_s = mx.where(valid, mu, 0.0)
        k = mx.where(valid, kappa, 1.0)
        inside = _and(valid, x >= -math.pi, x <= math.pi)
        sh = mx.sin(0.5 * (mx.where(inside, x, 0.0) - mu_s))
        # kappa cos d - log I0(kappa) = -2 kappa sin^2(d/2) - log(exp(-kappa) I0(kappa))
        lp = -2.0 * k * sh * sh - _LOG_2PI - log_i0e(k)
        return _finish(raw, inside, lp, valid)


class WrappedCauchy(_Scalar):
    """Wrapped Cauchy distribution on the circle, values in [-pi, pi).

    Density: ``p(x) = (1 - rho²) / (2 pi (1 + rho² - 2 rho cos(x - mu)))`` for
    ``-pi <= x <= pi`` (``-inf`` outside).

    Args:
        mu: location, any finite number (2 pi-periodic). rho: concentration,
            ``0 <= rho < 1`` (the mean resultant length E[cos(x - mu)]; 0 is uniform).

    Sampler: inverse CDF, ``mu + 2 atan((1 - rho) / (1 + rho) tan(pi (U - 1/2)))``
    wrapped into [-pi, pi) (reparameterised).

    Example:
        >>> round(float(wrapped_cauchy.log_prob(0.0, 0.0, 0.5)), 6)  # log(3 / (2 pi))
        -0.739265
    """

    name = "wrapped_cauchy"
    params = (Param("mu", C.real), Param("rho", C.interval(0.0, 1.0, right_open=True)))
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.circular

    def sample(self, key: mx.array, mu: Any, rho: Any, *, shape: Any = ()) -> mx.array:
        mu, rho = _f32(mu), _f32(rho)
        valid = self.params_valid(mu, rho)
        rs = mx.where(valid, rho, 0.0)
        u = mx.random.uniform(shape=sample_shape(_shape(shape), mu, rho), key=key)
        pv = math.pi * (u - 0.5)
        delta = 2.0 * mx.arctan2((1.0 - rs) * mx.sin(pv), (1.0 + rs) * mx.cos(pv))
        return _nan_where_invalid(valid, _wrap_angle(mu + delta))

    def log_prob(self, value: Any, mu: Any, rho: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        mu, rho = _f32(mu), _f32(rho)
        valid = self.params_valid(mu, rho)
        mu_s = mx.where(valid, mu, 0.0)
        rs = mx.where(valid, rho, 0.0)
        inside = _and(valid, x >= -math.pi, x <= math.pi)
        sh = mx.sin(0.5 * (mx.where(inside, x, 0.0) - mu_s))
        one_m = 1.0 - rs
        # 1 + rho^2 - 2 rho cos d = (1 - rho)^2 + 4 rho sin^2(d/2)
        lp = mx.log(one_m * (1.0 + rs)) - _LOG_2PI - mx.log(one_m * one_m + 4.0 * rs * sh * sh)
        return _finish(raw, inside, lp, valid)


class WrappedNormal(_Scalar):
    """Wrapped normal distribution on the circle, values in [-pi, pi].

    Density: ``p(x) = sum_k N(x + 2 pi k; mu, sigma)`` for ``-pi <= x <= pi`` (``-inf``
    outside). Computed as a log-sum-exp over the wraps ``k = -4..4`` when
    ``sigma < 2`` (the omitted wraps are < e^-60 relative) and by the equivalent
    Fourier (Jacobi theta) series ``(1 + 2 sum_n exp(-n² sigma²/2) cos(n (x - mu))) / 2 pi``
    with ``n = 1..5`` when ``sigma >= 2`` (omitted terms < e^-72).

    Args:
        mu: location, any finite number (2 pi-periodic). sigma: scale of the underlying
            normal, ``> 0``.

    Sampler: ``mu + sigma * eps`` wrapped into [-pi, pi) (reparameterised).

    Example:
        >>> round(float(wrapped_normal.log_prob(0.0, 0.0, 0.1)), 4)  # ~ log N(0; 0, 0.1)
        1.3836
    """

    name = "wrapped_normal"
    params = (Param("mu", C.real), Param("sigma", C.positive))
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.circular

    def sample(self, key: mx.array, mu: Any, sigma: Any, *, shape: Any = ()) -> mx.array:
        mu, sigma = _f32(mu), _f32(sigma)
        valid = self.params_valid(mu, sigma)
        eps = mx.random.normal(sample_shape(_shape(shape), mu, sigma), key=key)
        return _nan_where_invalid(valid, _wrap_angle(mu + sigma * eps))

    def log_prob(self, value: Any, mu: Any, sigma: Any) -> mx.array:
        raw = _f32(value)
        x = _safe_value(raw)
        mu, sigma = _f32(mu), _f32(sigma)
        valid = self.params_valid(mu, sigma)
        inside = _and(valid, x >= -math.pi, x <= math.pi)
        d = _wrap_angle(mx.where(inside, x, 0.0) - mx.where(valid, mu, 0.0))
        narrow = sigma < 2.0
        # each branch gets inputs that keep it finite, so no NaN leaks through mx.where
        sw = mx.where(_and(valid, narrow), sigma, 1.0)
        terms = [-0.5 * mx.square((d + _TWO_PI * k) / sw) for k in range(-4, 5)]
        lp_wraps = mx.logsumexp(mx.stack(terms, axis=0), axis=0) - mx.log(sw) - _HALF_LOG_2PI
        sf = mx.where(_and(valid, mx.logical_not(narrow)), sigma, 2.0)
        series = mx.ones_like(d)
        for n in range(1, 6):
            series = series + 2.0 * mx.exp(-0.5 * n * n * sf * sf) * mx.cos(n * d)
        lp_fourier = mx.log(series) - _LOG_2PI
        return _finish(raw, inside, mx.where(narrow, lp_wraps, lp_fourier), valid)


normal = Normal()
uniform = Uniform()
exponential = Exponential()
laplace = Laplace()
cauchy = Cauchy()
logistic = Logistic()
gumbel = Gumbel()
half_normal = HalfNormal()
half_cauchy = HalfCauchy()
log_normal = LogNormal()
weibull = Weibull()
pareto = Pareto()
truncated_normal = TruncatedNormal()
von_mises = VonMises()
wrapped_cauchy = WrappedCauchy()
wrapped_normal = WrappedNormal()
