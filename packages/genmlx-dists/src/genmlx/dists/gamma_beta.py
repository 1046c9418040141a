"""The gamma and beta families and the distributions drawn through gamma variates.

Distributions: ``gamma`` (shape, rate), ``inv_gamma`` (shape, scale), ``chi2`` (df),
``beta`` (alpha, beta), ``kumaraswamy`` (a, b), ``beta_uniform`` (theta, alpha, beta),
``student_t`` (df, loc, scale), ``dirichlet`` (alpha; event_ndim 1). Their samplers
are in :mod:`genmlx.dists.gamma_sampling`.

Conventions beyond ``genmlx.dists.base``:

* Draws are never 0, 1 or infinite where the law gives them probability 0: values
  beyond float32's normal range are clamped to ``2**-126`` / ``1 - 2**-24`` / the
  largest finite float32 (documented per sampler), so the log density of a draw is
  finite. ``log_standard_gamma`` gives exact log-gamma draws for any shape.
* Sampling with an invalid *array* parameter gives NaN at those elements (plain-number
  parameters raise ``ValueError`` as everywhere).
* Only ``kumaraswamy`` is reparameterised (inverse CDF). The others rest on the gamma
  rejection sampler, which has no pathwise gradient; implicit reparameterisation is
  out of scope, so their ``has_reparam`` is False.
* Log densities use Loader's saddle-point form (``lgamma`` split into Stirling's main
  part, cancelled analytically, and its small remainder), so they stay float32-exact
  for shapes up to 1e4 and beyond, where ``a log x - lgamma(a)`` would cancel ~1e4-sized
  terms. At a support edge where the density diverges the log density is ``+inf`` (as
  in scipy); draws never land there.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core import fused as _fused
from genmlx.core.distribution import Distribution, Param
from genmlx.dists.base import (
    batch_shape,
    check_param,
    is_plain_number,
    sample_shape,
    where_valid,
)
from genmlx.dists.gamma_sampling import (
    _F32_MAX,
    _ONE_MINUS,
    _TINY,
    _f32,
    _finite_pos,
    scaled_gamma,
    standard_beta,
    standard_dirichlet,
    standard_t,
)

__all__ = [
    "Beta",
    "BetaUniform",
    "Chi2",
    "Dirichlet",
    "Gamma",
    "InvGamma",
    "Kumaraswamy",
    "StudentT",
    "beta",
    "beta_uniform",
    "chi2",
    "dirichlet",
    "gamma",
    "inv_gamma",
    "kumaraswamy",
    "student_t",
]

# Smallest positive *normal* float32 and the largest float32 below 1 / largest finite.
# --------------------------------------------------------------------------- numerics
_LOG_2PI = math.log(2.0 * math.pi)
_HALF_LOG_2PI = 0.5 * _LOG_2PI
_INF = float("inf")


def _delta(a: mx.array) -> mx.array:
    """Stirling remainder ``lgamma(a) - ((a - 1/2) log a - a + log(2 pi) / 2)``, a > 0.

    The asymptotic series (5 terms, error < 1e-12 for a >= 10) for a >= 10, else
    ``lgamma`` minus the Stirling main part (both O(1) there, so no cancellation).
    Splitting ``lgamma`` this way lets the log densities below cancel the large Stirling
    terms analytically, keeping them exact in float32 for shapes up to 1e4 and beyond.
    """
    from genmlx.dists.special import lgamma

    big = a >= 10.0
    ab = mx.where(big, a, 10.0)
    r = 1.0 / ab
    r2 = r * r
    series = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 / 1188))))
    asm = mx.where(big, 1.0, a)
    direct = lgamma(asm) - ((asm - 0.5) * mx.log(asm) - asm + _HALF_LOG_2PI)
    out: mx.array = mx.where(big, series, direct)
    return out


def _log_ratio(num: mx.array, den: mx.array, log_num: mx.array, log_den: mx.array) -> mx.array:
    """``log(num / den)``: one rounding when the ratio is a normal float, else the logs."""
    q = num / den
    ok = mx.logical_and(q > _TINY, q < _F32_MAX)
    out: mx.array = mx.where(ok, mx.log(mx.where(ok, q, 1.0)), log_num - log_den)
    return out


def _d0(u: mx.array, log_q: mx.array) -> mx.array:
    """``q - 1 - log q >= 0`` given ``u = q - 1`` and ``log q``, accurate near ``q = 1``.

    For ``|u| < 1/2`` the series ``u v - 2 (v^3/3 + v^5/5 + ...)``, ``v = u / (2 + u)``
    (|v| <= 1/3, 10 terms: truncation < 1e-10 relative), free of the cancellation in
    ``u - log1p(u)``; elsewhere ``u - log q`` directly.
    """
    near = mx.abs(u) < 0.5
    un = mx.where(near, u, 0.0)
    v = un / (2.0 + un)
    v2 = v * v
    tail = mx.zeros_like(v2) + 1.0 / 21.0
    for k in range(9, 0, -1):
        tail = 1.0 / (2 * k + 1) + v2 * tail
    series = un * v - 2.0 * v * v2 * tail
    uf = mx.where(near, 1.0, u)
    lf = mx.where(near, 0.0, log_q)
    out: mx.array = mx.where(near, series, uf - lf)
    return out


def _log_gamma_kernel(y: mx.array, log_y: mx.array, a: mx.array) -> mx.array:
    """``a log y - y - lgamma(a)`` for y > 0, a > 0, as ``-a D(y/a) + log(a/2pi)/2 - delta(a)``.

    (Loader's saddle-point form: the terms of size ``a log a`` cancel analytically.)
    """
    u = (y - a) / a
    lq = _log_ratio(y, a, log_y, mx.log(a))
    out: mx.array = -a * _d0(u, lq) + 0.5 * (mx.log(a) - _LOG_2PI) - _delta(a)
    return out


def _log1mexp(t: mx.array) -> mx.array:
    """``log(1 - exp(t))`` for t <= 0 (Maechler's two branches)."""
    near0 = t > -math.log(2.0)
    tn = mx.where(near0, t, -1.0)
    tf = mx.where(near0, -1.0, t)
    out: mx.array = mx.where(near0, mx.log(-mx.expm1(tn)), mx.log1p(-mx.exp(tf)))
    return out


def _xlogy(c: mx.array, x: mx.array) -> mx.array:
    """``c * log x`` with ``0 * log 0 = 0`` (x >= 0)."""
    both0 = mx.logical_and(c == 0, x == 0)
    out: mx.array = mx.where(both0, 0.0, c * mx.log(mx.where(both0, 1.0, x)))
    return out


def _edge(c: mx.array, finite_value: mx.array) -> mx.array:
    """Log density at a support edge where it behaves like ``x^c`` (x -> 0):
    ``+inf`` for c < 0, ``finite_value`` for c == 0, ``-inf`` for c > 0."""
    out: mx.array = mx.where(c < 0, _INF, mx.where(c == 0, finite_value, -_INF))
    return out


def _plain_or(x: Any, converted: mx.array) -> Any:
    """``x`` itself when it is a plain Python number, else its array form."""
    return x if is_plain_number(x) else converted


# --------------------------------------------------------------- parameter checks
def _check_pos(dist: str, name: str, v: Any) -> None:
    check_param(dist, name, v, lambda t: 0.0 < t < _INF, "finite and > 0")


def _safe(valid: mx.array, x: mx.array, fill: float = 1.0) -> mx.array:
    out: mx.array = mx.where(valid, x, fill)
    return out


# --------------------------------------------------------------------------- gamma
def _gamma_logpdf(x: mx.array, a: mx.array, rate: mx.array) -> mx.array:
    """Gamma(a, rate) log density for valid (finite, positive) a and rate."""
    inner = _finite_pos(x)
    xs = _safe(inner, x)
    log_x = mx.log(xs)
    y = xs * rate
    interior = _log_gamma_kernel(y, log_x + mx.log(rate), a) - log_x
    # x = 0: x^(a-1) -> +inf / rate (a == 1) / 0
    at0 = _edge(a - 1.0, mx.log(rate))
    out: mx.array = mx.where(inner, interior, mx.where(x == 0, at0, -_INF))
    return out


class Gamma(Distribution):
    """Gamma distribution with shape ``alpha`` and **rate** ``rate``.

    Density ``f(x) = rate^alpha x^(alpha-1) exp(-rate x) / Gamma(alpha)`` on ``x >= 0``
    (``alpha > 0``, ``rate > 0``). Mean ``alpha / rate``, variance ``alpha / rate^2``.

    Sampling: Marsaglia–Tsang with polar-method normals and up to ``GAMMA_ROUNDS = 23``
    proposals per element (never accepted: probability < 3e-14; see
    :func:`log_standard_gamma`), formed in linear space (:func:`scaled_gamma`),
    boosted for ``alpha < 1`` in log space; draws below ``2**-126`` (tiny ``alpha``) are
    returned as ``2**-126`` (see :func:`standard_gamma`). Not reparameterised
    (``has_reparam = False``): the rejection sampler has no pathwise gradient and
    implicit reparameterisation is out of scope.

    The log density is evaluated in Loader's saddle-point form (no ``alpha log alpha``
    cancellation), so it stays float32-exact for large ``alpha``. At ``x = 0`` it is the
    density's limit: ``+inf`` (alpha < 1), ``log rate`` (alpha = 1), ``-inf`` (alpha > 1).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.gamma.log_prob(1.0, 2.0, 3.0)), 4)  # log(9 e^-3)
        -0.8028
        >>> gf.gamma.sample(mx.random.key(0), mx.array([1.0, 2.0]), 1.0, shape=(5,)).shape
        (5, 2)
    """

    name = "gamma"
    params = (Param("shape", C.positive, aliases=("alpha",)), Param("rate", C.positive))
    has_reparam = False
    event_ndim = 0

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(
        self, key: mx.array, alpha: Any, rate: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        a, r = _f32(alpha), _f32(rate)
        out_shape = sample_shape(shape, a, r)
        if is_plain_number(rate) and 0.0 < float(rate) < _INF:
            neg_lr: Any = -math.log(float(rate))  # a plain number: see scaled_gamma
        else:
            neg_lr = -mx.log(mx.where(_finite_pos(r), r, mx.nan))
        return scaled_gamma(key, _plain_or(alpha, a), out_shape, neg_lr)

    def log_prob(self, value: Any, alpha: Any, rate: Any) -> mx.array:
        x, a, r = _f32(value), _f32(alpha), _f32(rate)
        valid = self.params_valid(a, r)
        out = _gamma_logpdf(x, _safe(valid, a), _safe(valid, r))
        return where_valid(valid, out)


class InvGamma(Distribution):
    """Inverse-gamma distribution with shape ``alpha`` and **scale** ``scale``.

    ``X = scale / G`` with ``G ~ Gamma(alpha, rate 1)``; density
    ``f(x) = scale^alpha x^(-alpha-1) exp(-scale / x) / Gamma(alpha)`` on ``x > 0``
    (``alpha > 0``, ``scale > 0``). Mean ``scale / (alpha - 1)`` (alpha > 1).

    Sampling: ``scale / G`` (:func:`scaled_gamma`; in log space where ``alpha < 1``,
    exact for tiny ``alpha``), clamped into ``[2**-126, float32 max]`` (tiny ``alpha`` gives
    draws beyond float32's range; they are returned as the largest finite float32).
    Not reparameterised (see :class:`Gamma`). Log density via the gamma kernel at
    ``scale / x`` (float32-exact for large ``alpha``); ``-inf`` at ``x = 0``.

    Example:
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.inv_gamma.log_prob(1.0, 2.0, 3.0)), 4)  # log(9 e^-3)
        -0.8028
    """

    name = "inv_gamma"
    params = (Param("shape", C.positive, aliases=("alpha",)), Param("scale", C.positive))
    has_reparam = False
    event_ndim = 0

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(
        self, key: mx.array, alpha: Any, scale: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        a, s = _f32(alpha), _f32(scale)
        out_shape = sample_shape(shape, a, s)
        ls = mx.log(mx.where(_finite_pos(s), s, mx.nan))
        a_arg = alpha if is_plain_number(alpha) else a
        return scaled_gamma(key, a_arg, out_shape, ls, inverse=True)

    def log_prob(self, value: Any, alpha: Any, scale: Any) -> mx.array:
        x, a, s = _f32(value), _f32(alpha), _f32(scale)
        valid = self.params_valid(a, s)
        a, s = _safe(valid, a), _safe(valid, s)
        inner = _finite_pos(x)
        xs = _safe(inner, x)
        log_x = mx.log(xs)
        interior = _log_gamma_kernel(s / xs, mx.log(s) - log_x, a) - log_x
        return where_valid(valid, mx.where(inner, interior, -_INF))


class Chi2(Distribution):
    """Chi-squared distribution with ``df`` degrees of freedom: ``Gamma(df/2, rate 1/2)``.

    Density ``f(x) = x^(df/2-1) exp(-x/2) / (2^(df/2) Gamma(df/2))`` on ``x >= 0``
    (``df > 0``). Mean ``df``, variance ``2 df``.

    Sampling: ``2 G`` with ``G ~ Gamma(df/2)`` (see :class:`Gamma`; same rounds and
    bounds, clamped at ``2**-126``). Not reparameterised.

    Example:
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.chi2.log_prob(1.0, 2.0)), 4)  # log(e^-0.5 / 2)
        -1.1931
    """

    name = "chi2"
    params = (Param("df", C.positive),)
    has_reparam = False
    event_ndim = 0

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive

    def sample(self, key: mx.array, df: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
        k = _f32(df)
        out_shape = sample_shape(shape, k)
        half = 0.5 * float(df) if is_plain_number(df) else 0.5 * k
        return scaled_gamma(key, half, out_shape, math.log(2.0))  # plain: no clamp

    def log_prob(self, value: Any, df: Any) -> mx.array:
        x, k = _f32(value), _f32(df)
        valid = self.params_valid(k)
        a = 0.5 * _safe(valid, k)
        return where_valid(valid, _gamma_logpdf(x, a, mx.full(a.shape, 0.5)))


# ---------------------------------------------------------------------------- beta
def _beta_logpdf(x: mx.array, a: mx.array, b: mx.array) -> mx.array:
    """Beta(a, b) log density for valid a, b; x in [0, 1] (else -inf).

    Interior: ``-a D(x/p) - b D((1-x)/q) + (log a + log b - log n - log 2pi)/2
    - log x - log(1-x) - delta(a) - delta(b) + delta(n)`` with ``n = a + b``,
    ``p = a/n``, ``q = b/n``, ``D(t) = t - 1 - log t`` (exact rewrite of
    ``(a-1) log x + (b-1) log(1-x) - log B(a, b)`` without its large cancelling terms).
    """
    n = a + b
    p, q = a / n, b / n
    inner = mx.logical_and(x > 0, x < 1)
    xs = _safe(inner, x, 0.5)
    log_x = mx.log(xs)
    log_1mx = mx.log1p(-xs)
    d1 = _d0((xs - p) / p, _log_ratio(xs, p, log_x, mx.log(p)))
    hi = 1.0 - xs  # 1 - x = hi + lo exactly (Fast2Sum, |1| >= |x|)
    lo = (1.0 - hi) - xs
    d2 = _d0(((hi - q) + lo) / q, _log_ratio(hi, q, log_1mx, mx.log(q)))
    interior = (
        -a * d1
        - b * d2
        + 0.5 * (mx.log(a) + mx.log(b) - mx.log(n) - _LOG_2PI)
        - log_x
        - log_1mx
        - _delta(a)
        - _delta(b)
        + _delta(n)
    )
    at0 = _edge(a - 1.0, mx.log(b))
    at1 = _edge(b - 1.0, mx.log(a))
    out: mx.array = mx.where(inner, interior, mx.where(x == 0, at0, mx.where(x == 1, at1, -_INF)))
    return out


class Beta(Distribution):
    """Beta distribution with shape parameters ``alpha`` and ``beta``.

    Density ``f(x) = x^(alpha-1) (1-x)^(beta-1) / B(alpha, beta)`` on ``[0, 1]``
    (``alpha, beta > 0``). Mean ``alpha / (alpha + beta)``.

    Sampling (:func:`standard_beta`): Jöhnk's algorithm where both parameters are at
    most 1 (in log space; never-accepted probability < 3e-14), else ``X / (X + Y)``
    for gamma draws (Marsaglia–Tsang, never-accepted probability < 7e-14 per gamma
    draw), clamped into ``[2**-126, 1 - 2**-24]``. Not reparameterised (rejection
    samplers; implicit reparameterisation is out of scope).

    The log density is written in saddle-point form (float32-exact for large
    parameters). At ``x = 0`` and ``x = 1`` it is the density's limit (``+inf`` when
    the corresponding parameter is below 1, as in scipy).

    Example:
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.beta.log_prob(0.5, 2.0, 2.0)), 4)  # log 1.5
        0.4055
    """

    name = "beta"
    params = (Param("alpha", C.positive), Param("beta", C.positive))
    has_reparam = False
    event_ndim = 0

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.unit_interval

    def sample(
        self, key: mx.array, alpha: Any, beta: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        a, b = _f32(alpha), _f32(beta)
        out_shape = sample_shape(shape, a, b)
        # plain numbers stay plain: the sampler then sizes its slots for them
        return standard_beta(key, _plain_or(alpha, a), _plain_or(beta, b), out_shape)

    def log_prob(self, value: Any, alpha: Any, beta: Any) -> mx.array:
        x, a, b = _f32(value), _f32(alpha), _f32(beta)
        valid = self.params_valid(a, b)
        return where_valid(valid, _beta_logpdf(x, _safe(valid, a), _safe(valid, b)))


class Kumaraswamy(Distribution):
    """Kumaraswamy distribution with shape parameters ``a`` and ``b``.

    Density ``f(x) = a b x^(a-1) (1 - x^a)^(b-1)`` on ``[0, 1]`` (``a, b > 0``);
    CDF ``F(x) = 1 - (1 - x^a)^b``; ``E[X^k] = b B(1 + k/a, b)``.

    Sampling: inverse CDF, ``x = (1 - (1-u)^(1/b))^(1/a)`` computed in log space
    (``exp(log(-expm1(log1p(-u)/b)) / a)``), clamped into ``[2**-126, 1 - 2**-24]``.
    Exact, no rejection, and a differentiable function of ``(a, b)``:
    ``has_reparam = True`` (``reparam_sample`` is ``sample``; the gradient is zero only
    at clamped draws).

    Example:
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.kumaraswamy.log_prob(0.5, 2.0, 2.0)), 4)  # log(4 * 0.5 * 0.75)
        0.4055
    """

    name = "kumaraswamy"
    params = (Param("a", C.positive), Param("b", C.positive))
    has_reparam = True
    event_ndim = 0

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.unit_interval

    def sample(self, key: mx.array, a: Any, b: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
        aa, bb = _f32(a), _f32(b)
        valid = self.params_valid(aa, bb)
        u = mx.random.uniform(shape=sample_shape(shape, aa, bb), key=key)
        t = mx.log1p(-u) / mx.where(valid, bb, mx.nan)
        x = mx.exp(_log1mexp(mx.minimum(t, -1e-45)) / aa)
        out = mx.clip(x, _TINY, _ONE_MINUS)
        res: mx.array = mx.where(mx.isnan(x), mx.nan, out)
        return res

    def log_prob(self, value: Any, a: Any, b: Any) -> mx.array:
        x, aa, bb = _f32(value), _f32(a), _f32(b)
        valid = self.params_valid(aa, bb)
        aa, bb = _safe(valid, aa), _safe(valid, bb)
        inner = mx.logical_and(x > 0, x < 1)
        xs = _safe(inner, x, 0.5)
        log_x = mx.log(xs)
        interior = mx.log(aa) + mx.log(bb) + (aa - 1.0) * log_x + (bb - 1.0) * _log1mexp(aa * log_x)
        at0 = _edge(aa - 1.0, mx.log(bb))
        at1 = _edge(bb - 1.0, mx.log(aa))
        out = mx.where(inner, interior, mx.where(x == 0, at0, mx.where(x == 1, at1, -_INF)))
        return where_valid(valid, out)


class BetaUniform(Distribution):
    """Mixture ``theta * Beta(alpha, beta) + (1 - theta) * Uniform(0, 1)``.

    Density ``f(x) = theta x^(alpha-1) (1-x)^(beta-1) / B(alpha, beta) + (1 - theta)``
    on ``[0, 1]`` (``0 <= theta <= 1``, ``alpha, beta > 0``).

    Sampling: a ``theta``-coin chooses a :func:`standard_beta` draw or a uniform draw
    (clamped into ``[2**-126, 1 - 2**-24]``), all vectorised. Not reparameterised
    (discrete component choice and gamma rejection sampling).

    The log density is ``logaddexp(log theta + log Beta(x), log(1 - theta))``, computed
    as ``M + log(theta e^(lb - M) + (1 - theta) e^(-M))`` with ``M = max(lb, 0)`` so that
    its gradient stays finite at ``theta = 0`` and ``theta = 1``.

    Example:
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.beta_uniform.log_prob(0.5, 0.5, 2.0, 2.0)), 4)  # log(1.25)
        0.2231
    """

    name = "beta_uniform"
    params = (
        Param("theta", C.unit_interval),
        Param("alpha", C.positive),
        Param("beta", C.positive),
    )
    has_reparam = False
    event_ndim = 0

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.unit_interval

    def sample(
        self, key: mx.array, theta: Any, alpha: Any, beta: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        th, a, b = _f32(theta), _f32(alpha), _f32(beta)
        out_shape = sample_shape(shape, th, a, b)
        keys = mx.random.split(key, 3)
        xb = standard_beta(keys[0], a, b, out_shape)
        xu = mx.clip(mx.random.uniform(shape=out_shape, key=keys[1]), _TINY, _ONE_MINUS)
        coin = mx.random.uniform(shape=out_shape, key=keys[2]) < th
        ok = self.params_valid(th, a, b)
        out: mx.array = mx.where(ok, mx.where(coin, xb, xu), mx.nan)
        return out

    def log_prob(self, value: Any, theta: Any, alpha: Any, beta: Any) -> mx.array:
        x, th, a, b = _f32(value), _f32(theta), _f32(alpha), _f32(beta)
        valid = self.params_valid(th, a, b)
        th = _safe(valid, th, 0.5)
        lb = _beta_logpdf(x, _safe(valid, a), _safe(valid, b))
        pos_inf = lb == _INF
        lbs = mx.where(pos_inf, 0.0, lb)
        m = mx.maximum(lbs, 0.0)
        mix = m + mx.log(th * mx.exp(lbs - m) + (1.0 - th) * mx.exp(-m))
        mix = mx.where(mx.logical_and(pos_inf, th > 0), _INF, mix)
        in_support = mx.logical_and(x >= 0, x <= 1)
        return where_valid(valid, mx.where(in_support, mix, -_INF))


# ------------------------------------------------------------------------ student t
class StudentT(Distribution):
    """Student's t distribution with ``df`` degrees of freedom, ``loc`` and ``scale``.

    Density, with ``z = (x - loc) / scale``:
    ``f(x) = Gamma((df+1)/2) / (Gamma(df/2) sqrt(df pi) scale) (1 + z^2/df)^(-(df+1)/2)``
    on the real line (``df > 0``, ``scale > 0``, ``loc`` finite).

    Sampling: ``loc + scale * T`` with ``T`` from Bailey's polar method
    (:func:`~genmlx.dists.gamma_sampling.standard_t`: exact, one ``log`` and one
    ``expm1`` per draw, a pair rejected with probability 1 - pi/4); draws beyond
    float32's range (tiny ``df``) are clamped to +-float32 max. Not reparameterised:
    ``T`` is a rejection draw (a pathwise gradient would exist for ``loc`` and
    ``scale`` only).

    The log-gamma ratio is computed as ``log(h)/2 + (h log1p(1/(2h)) - 1/2) +
    delta(h + 1/2) - delta(h)`` with ``h = df / 2``, exact in float32 for large ``df``
    (the density tends to the normal's).

    Example:
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.student_t.log_prob(0.0, 1.0, 0.0, 1.0)), 4)  # Cauchy: -log pi
        -1.1447
    """

    name = "student_t"
    fused_log_prob = _fused.STUDENT_T
    params = (Param("df", C.positive), Param("loc", C.real), Param("scale", C.positive))
    has_reparam = False
    event_ndim = 0

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.real

    def sample(
        self, key: mx.array, df: Any, loc: Any, scale: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        nu, mu, s = _f32(df), _f32(loc), _f32(scale)
        out_shape = sample_shape(shape, nu, mu, s)
        ok = self.params_valid(nu, mu, s)  # parameter-shaped: NaN flows into the draws
        t = standard_t(key, mx.where(ok, nu, mx.nan), out_shape)
        out: mx.array = mx.clip(mu + mx.where(ok, s, mx.nan) * t, -_F32_MAX, _F32_MAX)
        return out

    def log_prob(self, value: Any, df: Any, loc: Any, scale: Any) -> mx.array:
        x, nu, mu, s = _f32(value), _f32(df), _f32(loc), _f32(scale)
        valid = self.params_valid(nu, mu, s)
        nu, mu, s = _safe(valid, nu), _safe(valid, mu, 0.0), _safe(valid, s)
        finite = mx.abs(x) < _INF
        xs = _safe(finite, x, 0.0)
        h = 0.5 * nu
        # log1p(t^2), t = |z| / sqrt(df); for t > 1e15 (t^2 may overflow) as 2 log t
        diff = mx.abs(xs - mu)
        pos = diff > 0
        log_t = mx.log(mx.where(pos, diff, 1.0)) - mx.log(s) - 0.5 * mx.log(nu)
        big = mx.logical_and(pos, log_t > math.log(1e15))
        t = mx.where(big, 0.0, diff) / (s * mx.sqrt(nu))
        log1p_t2 = mx.where(big, 2.0 * mx.where(big, log_t, 0.0), mx.log1p(t * t))
        out = (
            -_HALF_LOG_2PI
            + (h * mx.log1p(0.5 / h) - 0.5)
            + _delta(h + 0.5)
            - _delta(h)
            - mx.log(s)
            - (h + 0.5) * log1p_t2
        )
        return where_valid(valid, mx.where(finite, out, -_INF))


# ------------------------------------------------------------------------ dirichlet
def _dirichlet_tol(k: int) -> float:
    """Simplex tolerance ``|sum(x) - 1| <= K * 2**-22``.

    A float32 point normalised as ``v / sum(v)`` carries a relative error <= 2**-24 per
    component, and each float32 sum of K terms (the caller's and ours) adds at most
    ``(K - 1) 2**-24``: ``|sum - 1| <= (2K - 1) 2**-24`` to first order. The tolerance
    allows twice that; a point further off is not a rounded simplex point.
    """
    return k * 2.0**-22


def _check_concentration(dist: str, alpha: Any) -> None:
    if isinstance(alpha, (list, tuple)):
        stack: list[Any] = list(alpha)
        while stack:
            v = stack.pop()
            if isinstance(v, (list, tuple)):
                stack.extend(v)
            elif is_plain_number(v):
                _check_pos(dist, "alpha", v)
    elif is_plain_number(alpha):
        raise ValueError(f"{dist}: parameter alpha must be a vector (last axis = categories)")


class Dirichlet(Distribution):
    """Dirichlet distribution with concentration vector ``alpha`` (last axis, K >= 1).

    Density ``f(x) = prod_i x_i^(alpha_i - 1) / B(alpha)`` on the simplex
    ``{x_i >= 0, sum x_i = 1}`` (``alpha_i > 0``), ``B(alpha) = prod Gamma(alpha_i) /
    Gamma(sum alpha_i)``. ``event_ndim = 1``: a value has shape ``(..., K)`` and gets one
    log density; batch dimensions of ``alpha`` broadcast.

    Sampling: K gamma draws normalised by their sum, a softmax of their logs where a
    concentration is below 1 (:func:`standard_dirichlet`; one shared vector of up to
    16 concentrations is drawn column by column with scalar shapes; Marsaglia–Tsang,
    never-accepted probability < 7e-14 per component), components clamped below at
    ``2**-126``. Not reparameterised (gamma rejection sampler).

    Values off the simplex give ``-inf``: a negative component, or
    ``|sum(x) - 1| > K * 2**-22`` (float32 rounding of a normalised point stays within
    ``(2K - 1) 2**-24``; see ``_dirichlet_tol``). Within that tolerance a value stands
    for the simplex point ``x / sum(x)``, and the log density is that point's, to first
    order in ``sum(x) - 1``: the raw formula ``sum (alpha_i - 1) log x_i - log B`` would
    move by ``sum(alpha) * (sum(x) - 1)`` — up to ``sum(alpha) * 2**-24`` from rounding
    alone, 2e-3 for ``sum(alpha) = 4e4`` — and this form does not. It is evaluated in
    saddle-point form (``-sum alpha_i D(x_i / p_i) + ...``, ``p = alpha / sum(alpha)``,
    ``D(t) = t - 1 - log t``), float32-exact for large concentrations. Its gradient in
    the value is ``(alpha_i - 1) / x_i - (sum(alpha) - K)``, the renormalised density's:
    the same as the raw formula's along the simplex (the normal component differs;
    it is irrelevant for values parameterised on the simplex, e.g. by a softmax). A zero
    component gives the density's limit (``+inf`` if its ``alpha_i < 1``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists import gamma_beta as gf
        >>> round(float(gf.dirichlet.log_prob(mx.array([0.2, 0.3, 0.5]), [1.0, 1.0, 1.0])), 4)
        0.6931
        >>> gf.dirichlet.sample(mx.random.key(0), mx.array([1.0, 2.0, 3.0]), shape=(4,)).shape
        (4, 3)
    """

    name = "dirichlet"
    params = (Param("alpha", C.positive, event_ndim=1),)
    has_reparam = False
    event_ndim = 1

    def _alpha(self, alpha: Any) -> mx.array:
        _check_concentration(self.name, alpha)
        al = _f32(alpha)
        if al.ndim == 0:
            raise ValueError(f"{self.name}: alpha must have at least one dimension (K)")
        return al

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.simplex

    def sample(self, key: mx.array, alpha: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
        al = self._alpha(alpha)
        out_shape = tuple(shape) + batch_shape(al, event_ndims=(1,)) + (al.shape[-1],)
        static = alpha if isinstance(alpha, (list, tuple)) and al.ndim == 1 else al
        return standard_dirichlet(key, static, out_shape)

    def log_prob(self, value: Any, alpha: Any) -> mx.array:
        from genmlx.dists.special import lgamma

        al = self._alpha(alpha)
        x = _f32(value)
        if x.ndim == 0:
            raise ValueError(f"{self.name}: value must have at least one dimension (K)")
        k = max(al.shape[-1], x.shape[-1])
        valid = self.params_valid(al)
        a = _safe(valid[..., None], al)
        n = mx.sum(a, axis=-1)
        nk = n[..., None]
        finite = mx.logical_and(x >= 0, x < _INF)
        total = mx.sum(mx.where(finite, x, 0.0), axis=-1)
        on_simplex = mx.logical_and(
            mx.all(finite, axis=-1), mx.abs(total - 1.0) <= _dirichlet_tol(k)
        )
        pos = x > 0
        inner = mx.all(mx.logical_and(pos, finite), axis=-1)
        xs = _safe(mx.logical_and(pos, finite), x)
        log_x = mx.log(xs)
        p = a / nk
        d = _d0((xs - p) / p, _log_ratio(xs, p, log_x, mx.log(p)))
        stable = (
            -mx.sum(a * d, axis=-1)
            + k * (mx.sum(xs, axis=-1) - 1.0)
            + 0.5 * (mx.sum(mx.log(a), axis=-1) - mx.log(n))
            - 0.5 * (k - 1) * _LOG_2PI
            - mx.sum(log_x, axis=-1)
            - mx.sum(_delta(a), axis=-1)
            + _delta(n)
        )
        xe = _safe(finite, x)
        edge = mx.sum(_xlogy(a - 1.0, xe), axis=-1) - (mx.sum(lgamma(a), axis=-1) - lgamma(n))
        out = mx.where(inner, stable, edge)
        return where_valid(valid, mx.where(on_simplex, out, -_INF))


gamma = Gamma()
inv_gamma = InvGamma()
chi2 = Chi2()
beta = Beta()
kumaraswamy = Kumaraswamy()
beta_uniform = BetaUniform()
student_t = StudentT()
dirichlet = Dirichlet()
