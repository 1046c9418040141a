"""Bijectors: smooth invertible maps from unconstrained real space onto a domain.

Gradient-based inference samples ``y ∈ ℝⁿ`` and maps it onto a choice's domain with
``x = forward(y)``; the density of ``y`` is ``p(forward(y)) · |det ∂x/∂y|``, so every
bijector gives ``log_det_jacobian(y) = log |det ∂x/∂y|``. :func:`biject_to` picks the
bijector of a :class:`~genmlx.core.constraints.Constraint` (Stan's and NumPyro's
choices: ``exp`` for half-lines, a scaled logistic for intervals, stick-breaking for
simplexes, cumulative ``exp`` increments for ordered vectors, the ``tanh``
construction for correlation Cholesky factors, ``L Lᵀ`` with a positive diagonal
for covariance matrices).

Each bijector also says how shapes change: a ``K``-simplex is stored with ``K - 1``
free numbers, an ``n × n`` correlation Cholesky factor with ``n(n - 1)/2``.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import constraints as C
    >>> from genmlx.core.bijectors import biject_to
    >>> b = biject_to(C.interval(0.0, 2.0))
    >>> x = b.forward(mx.array(0.0))
    >>> float(x), float(b.inverse(x))
    (1.0, 0.0)
    >>> s = biject_to(C.simplex)
    >>> s.unconstrained_shape((3,))
    (2,)
    >>> round(float(mx.sum(s.forward(mx.array([0.3, -1.0])))), 6)
    1.0
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import constraints as C

__all__ = [
    "AffineBijector",
    "Bijector",
    "ComposeBijector",
    "CorrCholeskyBijector",
    "ExpBijector",
    "IdentityBijector",
    "IntervalBijector",
    "LowerCholeskyBijector",
    "OrderedBijector",
    "PositiveDefiniteBijector",
    "SigmoidBijector",
    "StickBreakingBijector",
    "biject_to",
]

_TINY = 1.1754944e-38  # smallest normal float32


def _arr(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)


def _exp(y: mx.array) -> mx.array:
    """``exp(y)``; in float64 as ``expm1(y) + 1``, because MLX's float64 ``exp`` is only
    float32-accurate (its ``expm1`` is accurate to double precision)."""
    return mx.expm1(y) + 1.0 if y.dtype == mx.float64 else mx.exp(y)


class Bijector:
    """``forward: ℝⁿ → domain``, its inverse and ``log |det ∂forward/∂y|``.

    ``event_ndim`` is the number of trailing axes one event spans (0 for elementwise
    maps). ``log_det_jacobian(y)`` returns one number per event (per element for
    elementwise maps): the total log-Jacobian is its sum.
    """

    event_ndim: int = 0
    domain: C.Constraint = C.real

    def forward(self, y: mx.array) -> mx.array:
        """Unconstrained ``y`` → constrained ``x``."""
        raise NotImplementedError

    def inverse(self, x: mx.array) -> mx.array:
        """Constrained ``x`` → unconstrained ``y``."""
        raise NotImplementedError

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        """``log |det ∂forward(y)/∂y|``, one number per event."""
        raise NotImplementedError

    def forward_and_log_det(self, y: mx.array) -> tuple[mx.array, mx.array]:
        """``(forward(y), log_det_jacobian(y))`` sharing work where possible."""
        return self.forward(y), self.log_det_jacobian(y)

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``y`` for a constrained value of shape ``shape``."""
        return tuple(shape)

    def constrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``x`` for an unconstrained value of shape ``shape``."""
        return tuple(shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # Structural equality (two ``ExpBijector()`` are the same map), so a distribution
    # built from a bijector inside a model body is the same site at every execution.
    def _key(self) -> tuple[Any, ...]:
        dom = self.__dict__.get("domain", type(self).domain)
        return (type(self), dom)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (
            isinstance(other, Bijector)
            and type(other) is type(self)
            and self._key() == other._key()
        )

    def __hash__(self) -> int:
        return hash(self._key())


class IdentityBijector(Bijector):
    """``x = y`` (the real line)."""

    def forward(self, y: mx.array) -> mx.array:
        return y

    def inverse(self, x: mx.array) -> mx.array:
        return x

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return mx.zeros_like(y)


class ExpBijector(Bijector):
    """``x = low + exp(y)`` onto ``(low, ∞)``, or ``x = high - exp(y)`` onto ``(-∞, high)``."""

    def __init__(self, low: Any = 0.0, *, high: Any = None) -> None:
        self.low = None if high is not None else low
        self.high = high
        self.domain = C.less_than(high) if high is not None else C.greater_than(low)

    def forward(self, y: mx.array) -> mx.array:
        e = _exp(y)
        if self.high is not None:
            return _arr(self.high) - e
        return e if _zero(self.low) else _arr(self.low) + e

    def inverse(self, x: mx.array) -> mx.array:
        d = _arr(self.high) - x if self.high is not None else x - _arr(self.low)
        return mx.log(mx.maximum(d, _TINY))

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return y

    def __repr__(self) -> str:
        return f"ExpBijector(domain={self.domain!r})"


def _zero(b: Any) -> bool:
    return isinstance(b, (int, float)) and b == 0


class SigmoidBijector(Bijector):
    """``x = low + (high - low) σ(y)`` onto ``(low, high)``."""

    def __init__(self, low: Any, high: Any) -> None:
        self.low = low
        self.high = high
        self.domain = C.interval(low, high)

    def forward(self, y: mx.array) -> mx.array:
        s = mx.sigmoid(y)
        if _zero(self.low) and isinstance(self.high, (int, float)) and self.high == 1:
            return s
        return _arr(self.low) + (_arr(self.high) - _arr(self.low)) * s

    def inverse(self, x: mx.array) -> mx.array:
        lo, hi = _arr(self.low), _arr(self.high)
        u = (x - lo) / (hi - lo)
        u = mx.clip(u, _TINY, 1.0 - 5.9604645e-08)
        return mx.log(u) - mx.log1p(-u)

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        # log σ'(y) = -softplus(-y) - softplus(y)
        ld = -mx.logaddexp(0.0, -y) - mx.logaddexp(0.0, y)
        if _zero(self.low) and isinstance(self.high, (int, float)) and self.high == 1:
            return ld
        return ld + mx.log(_arr(self.high) - _arr(self.low))

    def __repr__(self) -> str:
        return f"SigmoidBijector(domain={self.domain!r})"


class IntervalBijector(Bijector):
    """Onto ``(low, high)`` with array bounds that may be infinite, element by element:
    the scaled logistic where both bounds are finite, ``low + exp(y)`` or
    ``high - exp(y)`` where one is, the identity where neither is.

    :func:`biject_to` picks it for an :class:`~genmlx.core.constraints.interval` whose
    bounds are arrays (bounds computed inside a model, such as
    ``truncated_normal(mu, sigma, low, high)`` with ``low = -inf`` for some elements):
    whether a bound is finite is then only known when the arrays are, so the choice is
    made with ``mx.where`` and stays traceable under ``mx.compile``.
    """

    def __init__(self, low: Any, high: Any) -> None:
        self.low = low
        self.high = high
        self.domain = C.interval(low, high)

    def _parts(self) -> tuple[mx.array, mx.array, mx.array, mx.array]:
        lo, hi = _arr(self.low), _arr(self.high)
        lo_f, hi_f = mx.isfinite(lo), mx.isfinite(hi)
        return mx.where(lo_f, lo, 0.0), mx.where(hi_f, hi, 1.0), lo_f, hi_f

    def forward_and_log_det(self, y: mx.array) -> tuple[mx.array, mx.array]:
        lo, hi, lo_f, hi_f = self._parts()
        both = mx.logical_and(lo_f, hi_f)
        width = mx.where(both, hi - lo, 1.0)
        e = _exp(y)
        x = mx.where(
            both, lo + width * mx.sigmoid(y), mx.where(lo_f, lo + e, mx.where(hi_f, hi - e, y))
        )
        ld_sig = mx.log(width) - mx.logaddexp(0.0, -y) - mx.logaddexp(0.0, y)
        one = mx.logical_or(lo_f, hi_f)
        ld = mx.where(both, ld_sig, mx.where(one, y, mx.zeros_like(y)))
        return x, ld

    def forward(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[0]

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[1]

    def inverse(self, x: mx.array) -> mx.array:
        lo, hi, lo_f, hi_f = self._parts()
        both = mx.logical_and(lo_f, hi_f)
        u = mx.clip((x - lo) / mx.where(both, hi - lo, 1.0), _TINY, 1.0 - 5.9604645e-08)
        logit = mx.log(u) - mx.log1p(-u)
        up = mx.log(mx.maximum(x - lo, _TINY))
        down = mx.log(mx.maximum(hi - x, _TINY))
        return mx.where(both, logit, mx.where(lo_f, up, mx.where(hi_f, down, x)))

    def __repr__(self) -> str:
        return f"IntervalBijector(domain={self.domain!r})"


class AffineBijector(Bijector):
    """``x = loc + scale · y`` (elementwise; ``scale ≠ 0``)."""

    def __init__(self, loc: Any = 0.0, scale: Any = 1.0) -> None:
        self.loc = loc
        self.scale = scale

    def forward(self, y: mx.array) -> mx.array:
        return _arr(self.loc) + _arr(self.scale) * y

    def inverse(self, x: mx.array) -> mx.array:
        return (x - _arr(self.loc)) / _arr(self.scale)

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return mx.broadcast_to(mx.log(mx.abs(_arr(self.scale))), y.shape)

    def _key(self) -> tuple[Any, ...]:
        return (AffineBijector, C._bkey(self.loc), C._bkey(self.scale))


class ComposeBijector(Bijector):
    """``forward = parts[-1].forward ∘ … ∘ parts[0].forward`` (elementwise parts)."""

    def __init__(self, *parts: Bijector) -> None:
        if any(p.event_ndim for p in parts):
            raise ValueError("ComposeBijector composes elementwise bijectors only")
        self.parts = parts
        self.domain = parts[-1].domain if parts else C.real

    def forward(self, y: mx.array) -> mx.array:
        for p in self.parts:
            y = p.forward(y)
        return y

    def inverse(self, x: mx.array) -> mx.array:
        for p in reversed(self.parts):
            x = p.inverse(x)
        return x

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        total = mx.zeros_like(y)
        for p in self.parts:
            total = total + p.log_det_jacobian(y)
            y = p.forward(y)
        return total

    def _key(self) -> tuple[Any, ...]:
        return (ComposeBijector, *(p._key() for p in self.parts))


class StickBreakingBijector(Bijector):
    """``ℝ^{K-1}`` → the ``K``-simplex (Stan's stick-breaking with the ``log(K - k)``
    centring, so ``y = 0`` maps to the uniform vector)."""

    event_ndim = 1
    domain = C.simplex

    def _offset(self, km1: int) -> mx.array:
        return mx.array(np.log(np.arange(km1, 0, -1, dtype=np.float32)))

    def forward_and_log_det(self, y: mx.array) -> tuple[mx.array, mx.array]:
        km1 = y.shape[-1]
        t = y - self._offset(km1)
        z = mx.sigmoid(t)
        # in log space: log z = -softplus(-t), log(1 - z) = -softplus(t); the remaining
        # stick before each break is exp(cumsum log(1 - z)), accurate where it is tiny
        log_z = -mx.logaddexp(0.0, -t)
        log_1mz = -mx.logaddexp(0.0, t)
        zeros = mx.zeros((*y.shape[:-1], 1), dtype=y.dtype)
        log_rem = mx.concatenate([zeros, mx.cumsum(log_1mz, axis=-1)], axis=-1)
        x = mx.concatenate([z, mx.ones_like(zeros)], axis=-1) * _exp(log_rem)
        # dx_k/dy_k = rem_k z_k (1 - z_k); triangular Jacobian
        ld = mx.sum(log_z + log_1mz + log_rem[..., :-1], axis=-1)
        return x, ld

    def forward(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[0]

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[1]

    def inverse(self, x: mx.array) -> mx.array:
        km1 = x.shape[-1] - 1
        rem = 1.0 - mx.cumsum(x[..., :-1], axis=-1) + x[..., :-1]  # stick before break k
        z = mx.clip(x[..., :-1] / mx.maximum(rem, _TINY), _TINY, 1.0 - 5.9604645e-08)
        return mx.log(z) - mx.log1p(-z) + self._offset(km1)

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape[:-1], shape[-1] - 1)

    def constrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape[:-1], shape[-1] + 1)


class OrderedBijector(Bijector):
    """``x₀ = y₀``, ``x_k = x_{k-1} + exp(y_k)``: ``ℝᴷ`` → increasing vectors."""

    event_ndim = 1
    domain = C.ordered

    def forward(self, y: mx.array) -> mx.array:
        inc = mx.concatenate([y[..., :1], _exp(y[..., 1:])], axis=-1)
        return mx.cumsum(inc, axis=-1)

    def inverse(self, x: mx.array) -> mx.array:
        d = x[..., 1:] - x[..., :-1]
        return mx.concatenate([x[..., :1], mx.log(mx.maximum(d, _TINY))], axis=-1)

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return mx.sum(y[..., 1:], axis=-1)


def _tril_index(n: int, strict: bool) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.tril_indices(n, k=-1 if strict else 0)
    return r, c


def _n_from_packed(m: int, strict: bool) -> int:
    # m = n(n-1)/2 (strict) or n(n+1)/2
    n = round((math.sqrt(8 * m + 1) + (1 if strict else -1)) / 2)
    if (n * (n - 1) // 2 if strict else n * (n + 1) // 2) != m:
        raise ValueError(f"{m} numbers do not fill a triangular matrix")
    return n


def _scatter_tril(v: mx.array, n: int, strict: bool) -> mx.array:
    """Packed ``[..., m]`` → lower-triangular ``[..., n, n]`` (row-major order)."""
    r, c = _tril_index(n, strict)
    flat = np.full(n * n, len(r), dtype=np.int32)  # index len(r) reads a zero
    flat[r * n + c] = np.arange(len(r), dtype=np.int32)
    padded = mx.concatenate([v, mx.zeros((*v.shape[:-1], 1), dtype=v.dtype)], axis=-1)
    out = mx.take(padded, mx.array(flat), axis=-1)
    return out.reshape(*v.shape[:-1], n, n)


def _gather_tril(x: mx.array, strict: bool) -> mx.array:
    n = x.shape[-1]
    r, c = _tril_index(n, strict)
    flat = x.reshape(*x.shape[:-2], n * n)
    return mx.take(flat, mx.array((r * n + c).astype(np.int32)), axis=-1)


class LowerCholeskyBijector(Bijector):
    """Packed ``ℝ^{n(n+1)/2}`` → lower-triangular matrices with ``exp`` on the diagonal."""

    event_ndim = 2
    domain = C.lower_cholesky

    def forward_and_log_det(self, y: mx.array) -> tuple[mx.array, mx.array]:
        n = _n_from_packed(y.shape[-1], strict=False)
        raw = _scatter_tril(y, n, strict=False)
        eye = mx.eye(n, dtype=y.dtype)
        diag = mx.diagonal(raw, axis1=-2, axis2=-1)
        low = raw * (1 - eye) + eye * _exp(diag)[..., None]
        return low, mx.sum(diag, axis=-1)

    def forward(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[0]

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[1]

    def inverse(self, x: mx.array) -> mx.array:
        n = x.shape[-1]
        eye = mx.eye(n, dtype=x.dtype)
        diag = mx.diagonal(x, axis1=-2, axis2=-1)
        raw = x * (1 - eye) + eye * mx.log(mx.maximum(diag, _TINY))[..., None]
        return _gather_tril(raw, strict=False)

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = shape[-1]
        return (*shape[:-2], n * (n + 1) // 2)

    def constrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = _n_from_packed(shape[-1], strict=False)
        return (*shape[:-1], n, n)


class PositiveDefiniteBijector(Bijector):
    """Packed ``ℝ^{n(n+1)/2}`` → ``L Lᵀ`` with ``L`` from :class:`LowerCholeskyBijector`.

    ``log |det|`` of ``L ↦ L Lᵀ`` (on the lower triangle) is
    ``n log 2 + Σᵢ (n - i) log Lᵢᵢ`` (0-based ``i``).
    """

    event_ndim = 2
    domain = C.positive_definite

    def forward_and_log_det(self, y: mx.array) -> tuple[mx.array, mx.array]:
        low, ld_chol = LowerCholeskyBijector().forward_and_log_det(y)
        n = low.shape[-1]
        diag_y = mx.diagonal(_scatter_tril(y, n, strict=False), axis1=-2, axis2=-1)
        weights = mx.array(np.arange(n, 0, -1, dtype=np.float32))
        ld = ld_chol + n * math.log(2.0) + mx.sum(weights * diag_y, axis=-1)
        return low @ mx.swapaxes(low, -1, -2), ld

    def forward(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[0]

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[1]

    def inverse(self, x: mx.array) -> mx.array:
        low = mx.linalg.cholesky(x, stream=mx.cpu)
        return LowerCholeskyBijector().inverse(low)

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = shape[-1]
        return (*shape[:-2], n * (n + 1) // 2)

    def constrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = _n_from_packed(shape[-1], strict=False)
        return (*shape[:-1], n, n)


class CorrCholeskyBijector(Bijector):
    """Packed ``ℝ^{n(n-1)/2}`` → Cholesky factors of correlation matrices (Stan's map:
    ``z = tanh(y)`` are canonical partial correlations; row ``i`` is built so that its
    squared entries sum to one)."""

    event_ndim = 2
    domain = C.corr_cholesky

    def forward_and_log_det(self, y: mx.array) -> tuple[mx.array, mx.array]:
        n = _n_from_packed(y.shape[-1], strict=True)
        z = mx.tanh(y)
        batch = y.shape[:-1]
        # log dtanh/dy = log(1 - z²), computed stably as 2(log 2 - y - softplus(-2y))
        ld = mx.sum(2.0 * (math.log(2.0) - y - mx.logaddexp(0.0, -2.0 * y)), axis=-1)
        rows = [mx.concatenate([mx.ones((*batch, 1)), mx.zeros((*batch, n - 1))], axis=-1)]
        k = 0
        for i in range(1, n):
            zi = z[..., k : k + i]
            k += i
            # cumulative remaining squared norm before column j
            entries = []
            rem = mx.ones(batch, dtype=y.dtype)
            for j in range(i):
                entries.append(zi[..., j] * mx.sqrt(rem))
                ld = ld + 0.5 * mx.log(mx.maximum(rem, _TINY))
                rem = rem - entries[-1] * entries[-1]
            entries.append(mx.sqrt(mx.maximum(rem, 0.0)))
            row = mx.stack(entries, axis=-1)
            if i + 1 < n:
                row = mx.concatenate([row, mx.zeros((*batch, n - i - 1))], axis=-1)
            rows.append(row)
        return mx.stack(rows, axis=-2), ld

    def forward(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[0]

    def log_det_jacobian(self, y: mx.array) -> mx.array:
        return self.forward_and_log_det(y)[1]

    def inverse(self, x: mx.array) -> mx.array:
        n = x.shape[-1]
        zs = []
        for i in range(1, n):
            rem = mx.ones(x.shape[:-2], dtype=x.dtype)
            for j in range(i):
                e = x[..., i, j]
                zs.append(e / mx.sqrt(mx.maximum(rem, _TINY)))
                rem = rem - e * e
        z = mx.clip(mx.stack(zs, axis=-1), -1.0 + 5.9604645e-08, 1.0 - 5.9604645e-08)
        return mx.arctanh(z)

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = shape[-1]
        return (*shape[:-2], n * (n - 1) // 2)

    def constrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = _n_from_packed(shape[-1], strict=True)
        return (*shape[:-1], n, n)


def biject_to(domain: C.Constraint) -> Bijector:
    """The bijector from unconstrained space onto ``domain``.

    Raises:
        TypeError: ``domain`` is discrete (there is no smooth map onto it).
        ValueError: no bijector is known for it.
    """
    if domain.is_discrete:
        raise TypeError(
            f"biject_to: {domain!r} is a discrete domain; gradient-based inference needs "
            "continuous choices (marginalise, observe or use a discrete kernel for it)"
        )
    if isinstance(domain, C.interval):
        lo, hi = domain.low, domain.high
        if isinstance(lo, mx.array) or isinstance(hi, mx.array):
            return IntervalBijector(lo, hi)
        lo_inf, hi_inf = math.isinf(float(lo)), math.isinf(float(hi))
        if lo_inf and hi_inf:
            return IdentityBijector()
        if lo_inf:
            return ExpBijector(high=hi)
        if hi_inf:
            return ExpBijector(lo)
        return SigmoidBijector(lo, hi)
    if isinstance(domain, C.greater_than):
        if not isinstance(domain.low, mx.array) and math.isinf(float(domain.low)):
            return IdentityBijector()
        return ExpBijector(domain.low)
    if isinstance(domain, C.less_than):
        if not isinstance(domain.high, mx.array) and math.isinf(float(domain.high)):
            return IdentityBijector()
        return ExpBijector(high=domain.high)
    if domain is C.real or domain is C.real_vector:
        return IdentityBijector()
    if domain is C.simplex:
        return StickBreakingBijector()
    if domain is C.ordered:
        return OrderedBijector()
    if domain is C.corr_cholesky:
        return CorrCholeskyBijector()
    if domain is C.lower_cholesky:
        return LowerCholeskyBijector()
    if domain is C.positive_definite:
        return PositiveDefiniteBijector()
    raise ValueError(f"biject_to: no bijector is known for the domain {domain!r}")
