"""Multivariate distributions: ``mv_normal``, ``wishart`` and ``inv_wishart``.

All three are built on the Cholesky factorisation. Three facts about MLX 0.32 shape the
linear algebra here:

* Its linear-algebra kernels are mostly CPU-only. With a GPU default device,
  ``mx.linalg.solve_triangular``, ``inv`` and ``tri_inv`` raise *"This op is not yet
  supported on the GPU. Explicitly pass a CPU stream to run it."* (seen with the CUDA
  backend 0.32.4 on an H200, where ``cholesky`` alone has a GPU kernel). So every
  call below passes ``stream=mx.cpu``: valid on every backend
  (the CPU stream reads the same unified/managed buffers; checked on the H200) and
  what runs anyway on the CPU-only build.
* Their vector-Jacobian products are not implemented (``[Primitive::vjp] Not implemented
  for Cholesky`` / ``Inverse``). :func:`cholesky` and :func:`solve_lower` therefore come
  from :mod:`genmlx.dists.linalg`, which wraps them in ``mx.custom_function`` with
  hand-written VJPs, so ``mx.grad`` of every log density and of ``mv_normal``'s
  reparameterised sample works. (Forward-mode ``mx.jvp`` and second derivatives
  through them are not provided.)
* On GPUs MLX runs float32 matrix products as TF32 by default (``MLX_ENABLE_TF32=1``,
  about 1e-3 relative error; seen on CUDA, H200). The small p×p products of the
  factorisations, their VJPs and the Wishart samplers therefore also run on the CPU
  stream, in full float32, so log densities, their gradients and Wishart draws are
  float32-exact on every device. ``mv_normal``'s sampler ``mean + L ε`` keeps its
  (possibly large, batched) product on the default device and follows the user's MLX
  precision setting: set ``MLX_ENABLE_TF32=0`` for full float32 draws on a GPU.

Matrices are float32; a matrix argument's last two axes are the matrix, leading axes
batch. Symmetric arguments are symmetrised, ``(A + Aᵀ)/2``, before factorising; a matrix
whose asymmetry exceeds ``1e-4 · max|A|`` counts as outside the support (value) or as an
invalid parameter (``-inf``). So does a matrix whose Cholesky factor has a non-positive or
non-finite diagonal (not positive definite). Gradients w.r.t. a symmetric matrix are
returned symmetrised (the convention of JAX and PyTorch): for a symmetric perturbation
``E_ij + E_ji`` the directional derivative is ``G_ij + G_ji``.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import constraints as C
from genmlx.core.distribution import Distribution
from genmlx.dists.base import arr, check_param, validation_enabled
from genmlx.dists.gamma_sampling import standard_gamma
from genmlx.dists.linalg import cholesky, solve_matrix
from genmlx.dists.special import lgamma

__all__ = [
    "InvWishart",
    "MvNormal",
    "Wishart",
    "cholesky",
    "inv_wishart",
    "log_multivariate_gamma",
    "mv_normal",
    "solve_lower",
    "wishart",
]

_CPU = mx.cpu
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_LOG_PI = math.log(math.pi)
_SYM_RTOL = 1e-4


def _t(x: mx.array) -> mx.array:
    return mx.swapaxes(x, -1, -2)


def _mm(a: mx.array, b: mx.array) -> mx.array:
    """``a @ b`` in full float32 on the CPU stream, for the small p×p products of the
    factorisations, their VJPs and the Wishart samplers (GPU float32 matmuls may run
    as TF32, see the module docstring)."""
    return mx.matmul(a, b, stream=_CPU)


def _diag(x: mx.array) -> mx.array:
    return mx.diagonal(x, axis1=-2, axis2=-1)


def _factor_ok(L: mx.array) -> mx.array:
    """Per matrix: the Cholesky factor is finite with a positive diagonal."""
    L = mx.stop_gradient(L)  # a mask: no gradient (0 · sign(NaN) would be NaN)
    d = _diag(L)
    return mx.logical_and(mx.all(d > 0, axis=-1), mx.all(mx.isfinite(L), axis=(-2, -1)))


def _safe_factor(L: mx.array) -> tuple[mx.array, mx.array]:
    """``(L where valid else I, valid)``: a factor that is safe to solve with."""
    ok = _factor_ok(L)
    eye = mx.eye(L.shape[-1], dtype=L.dtype)
    return mx.where(ok[..., None, None], L, eye), ok


def solve_lower(L: mx.array, b: mx.array) -> mx.array:
    """``L⁻¹ b`` for lower-triangular ``L`` (``[..., n, n]``) and ``b`` (``[..., n, k]``).

    Batch axes broadcast. Differentiable in both arguments (a custom VJP: MLX's
    ``solve_triangular`` has none); runs on the CPU stream. Same as
    ``genmlx.dists.linalg.solve_matrix(L, b, lower=True)``.
    """
    return solve_matrix(L, b, lower=True)


def _solve_lower_vec(L: mx.array, v: mx.array) -> mx.array:
    """``L⁻¹ v`` for vectors ``v`` (``[..., n]``), broadcasting batch axes."""
    n = L.shape[-1]
    if L.ndim == 2:  # one factor for every vector: one solve with many columns
        cols = v.reshape(-1, n).T
        return _t(solve_lower(L, cols)).reshape(v.shape)
    out: mx.array = solve_lower(L, v[..., None])[..., 0]
    return out


def _symmetrize(a: mx.array) -> tuple[mx.array, mx.array]:
    """``((a + aᵀ)/2, symmetric-enough)`` per matrix."""
    a0 = mx.stop_gradient(a)  # the mask carries no gradient (0 · sign(NaN) would be NaN)
    asym = mx.max(mx.abs(a0 - _t(a0)), axis=(-2, -1))
    scale = mx.max(mx.abs(a0), axis=(-2, -1))
    ok = asym <= _SYM_RTOL * scale
    return 0.5 * (a + _t(a)), ok


def _spd_factor(a: mx.array) -> tuple[mx.array, mx.array]:
    """Safe lower factor of a symmetric positive definite matrix and its validity."""
    sym, sym_ok = _symmetrize(a)
    L, ok = _safe_factor(cholesky(sym))
    return L, mx.logical_and(ok, sym_ok)


def _logdet(L: mx.array) -> mx.array:
    """``log det(L Lᵀ)`` from a (safe) Cholesky factor."""
    out: mx.array = 2.0 * mx.sum(mx.log(_diag(L)), axis=-1)
    return out


def log_multivariate_gamma(a: Any, p: int) -> mx.array:
    """``log Γ_p(a) = p(p−1)/4 · log π + Σ_{j=1}^{p} log Γ(a + (1 − j)/2)``.

    Finite for ``a > (p − 1)/2``. Example: ``log_multivariate_gamma(2.5, 1)`` equals
    ``lgamma(2.5)``.
    """
    a = arr(a)
    js = mx.arange(p, dtype=mx.float32) * 0.5  # (j - 1)/2 for j = 1..p
    terms = lgamma(a[..., None] - js)
    out: mx.array = 0.25 * p * (p - 1) * _LOG_PI + mx.sum(terms, axis=-1)
    return out


def _check_spd_plain(dist: str, name: str, value: Any) -> None:
    """Eagerly reject a nested-list (plain Python) matrix that is not symmetric PD."""
    if not validation_enabled() or isinstance(value, mx.array):
        return
    if not isinstance(value, (list, tuple)):
        return
    m = np.asarray(value, dtype=np.float64)
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        return  # the shape check reports it
    ok = bool(np.all(np.isfinite(m)))
    if ok:
        sym = np.swapaxes(m, -1, -2)
        ok = bool(np.all(np.abs(m - sym) <= _SYM_RTOL * np.max(np.abs(m))))
    if ok:
        try:
            np.linalg.cholesky(0.5 * (m + np.swapaxes(m, -1, -2)))
        except np.linalg.LinAlgError:
            ok = False
    if not ok:
        raise ValueError(
            f"{dist}: parameter {name} is invalid; it must be a symmetric positive definite "
            "matrix (genmlx.dists.validation(False) turns this check off)"
        )


def _square(dist: str, name: str, m: mx.array) -> int:
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        raise ValueError(
            f"{dist}: parameter {name} must have shape [..., p, p] (a batch of square "
            f"matrices); got shape {tuple(m.shape)}"
        )
    return int(m.shape[-1])


def _check_value_square(dist: str, value: mx.array, p: int) -> None:
    if value.ndim < 2 or value.shape[-2:] != (p, p):
        raise ValueError(f"{dist}: value must have shape [..., {p}, {p}]; got {tuple(value.shape)}")


# --------------------------------------------------------------------------- mv_normal
class MvNormal(Distribution):
    """Multivariate normal distribution ``N(mean, cov)``.

    Density, with ``d`` the dimension and ``cov = L Lᵀ`` (Cholesky)::

        log p(x) = −d/2 · log 2π − Σᵢ log Lᵢᵢ − ½ ‖L⁻¹ (x − mean)‖²

    Parameters: ``mean`` ``[..., d]`` and ``cov`` ``[..., d, d]`` symmetric positive
    definite; their batch axes (all but the last one / two) broadcast, so a batch of
    means can share one covariance. Support: ℝᵈ; ``event_ndim = 1``.

    Sampling is ``mean + L ε`` with ``ε ~ N(0, I)``: a differentiable function of both
    parameters (``has_reparam``; gradients w.r.t. ``cov`` go through a custom Cholesky
    VJP). A covariance that is not symmetric positive definite gives ``-inf``; a nested
    list that is not raises ``ValueError``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.multivariate import mv_normal
        >>> x = mv_normal.sample(mx.random.key(0), mx.zeros(2), mx.eye(2), shape=(5,))
        >>> x.shape
        (5, 2)
        >>> round(float(mv_normal.log_prob(mx.zeros(2), mx.zeros(2), mx.eye(2))), 4)
        -1.8379
    """

    name = "mv_normal"
    params = ("mean", "cov")
    has_reparam = True
    event_ndim = 1
    param_event_ndims = (1, 2)

    def _params(self, mean: Any, cov: Any) -> tuple[mx.array, mx.array, int]:
        _check_spd_plain(self.name, "cov", cov)
        m, c = arr(mean), arr(cov)
        d = _square(self.name, "cov", c)
        if m.ndim < 1 or m.shape[-1] != d:
            raise ValueError(
                f"mv_normal: mean must have shape [..., {d}] to match cov "
                f"{tuple(c.shape)}; got {tuple(m.shape)}"
            )
        return m, c, d

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.real_vector

    def sample(
        self, key: mx.array, mean: Any, cov: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        m, c, d = self._params(mean, cov)
        batch = tuple(mx.broadcast_shapes(m.shape[:-1], c.shape[:-2]))
        L = cholesky(0.5 * (c + _t(c)))
        eps = mx.random.normal((*tuple(shape), *batch, d), key=key)
        out: mx.array = m + (L @ eps[..., None])[..., 0]
        return out

    def log_prob(self, value: Any, mean: Any, cov: Any) -> mx.array:
        m, c, d = self._params(mean, cov)
        x = arr(value)
        if x.ndim < 1 or x.shape[-1] != d:
            raise ValueError(f"mv_normal: value must have shape [..., {d}]; got {tuple(x.shape)}")
        L, ok = _spd_factor(c)
        z = _solve_lower_vec(L, x - m)
        lp = -0.5 * d * _LOG_2PI - 0.5 * _logdet(L) - 0.5 * mx.sum(z * z, axis=-1)
        out: mx.array = mx.where(ok, lp, -mx.inf)
        return out


# --------------------------------------------------------------------------- wishart
def _bartlett(key: mx.array, df: mx.array, p: int, full: tuple[int, ...]) -> mx.array:
    """Bartlett factor ``A`` (``full + (p, p)``): lower triangular, ``A_ii = √χ²(df − i)``
    (``i = 0..p−1``) and standard normals below the diagonal."""
    k1, k2 = mx.random.split(key)
    alpha = 0.5 * (df[..., None] - mx.arange(p, dtype=mx.float32))
    alpha = mx.broadcast_to(alpha, (*full, p))
    chi2 = 2.0 * standard_gamma(k1, alpha, (*full, p))
    z = mx.random.normal((*full, p, p), key=k2)
    eye = mx.eye(p, dtype=mx.float32)
    out: mx.array = mx.tril(z, -1) + mx.sqrt(chi2)[..., None] * eye
    return out


def _wishart_params(dist: str, df: Any, scale: Any) -> tuple[mx.array, mx.array, int]:
    _check_spd_plain(dist, "scale", scale)
    s = arr(scale)
    p = _square(dist, "scale", s)
    check_param(dist, "df", df, lambda v: v > p - 1, f"> p - 1 = {p - 1}")
    return arr(df), s, p


class Wishart(Distribution):
    """Wishart distribution ``W(df, scale)`` over ``p × p`` symmetric positive definite
    matrices.

    Density, with ``Σ = scale``::

        log p(X) = (df − p − 1)/2 · log|X| − tr(Σ⁻¹ X)/2 − df·p/2 · log 2
                   − df/2 · log|Σ| − log Γ_p(df/2)

    (``log Γ_p`` the multivariate log-gamma). Parameters: ``df > p − 1`` (real,
    ``[...]``), ``scale`` ``[..., p, p]`` symmetric positive definite; batch axes
    broadcast. Support: symmetric positive definite matrices; ``event_ndim = 2``.
    Mean ``df · scale``.

    Sampling (Bartlett decomposition): with ``scale = L Lᵀ`` and ``A`` lower triangular
    with ``A_ii = √χ²(df − i)`` (``i = 0..p−1``, drawn as ``2·Gamma((df − i)/2)``) and
    ``A_ij ~ N(0, 1)`` below the diagonal, ``X = (L A)(L A)ᵀ``. Exact, one vectorised
    pass. ``has_reparam`` is False (no gradient w.r.t. ``df`` through the gamma draws).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.multivariate import wishart
        >>> wishart.sample(mx.random.key(0), 4.0, mx.eye(3), shape=(2,)).shape
        (2, 3, 3)
        >>> round(float(wishart.log_prob(mx.eye(2), 3.0, mx.eye(2))), 4)
        -3.531
    """

    name = "wishart"
    params = ("df", "scale")
    event_ndim = 2
    param_event_ndims = (0, 2)

    def _params(self, df: Any, scale: Any) -> tuple[mx.array, mx.array, int]:
        return _wishart_params(self.name, df, scale)

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive_definite

    def sample(
        self, key: mx.array, df: Any, scale: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        n, s, p = self._params(df, scale)
        full = (*tuple(shape), *mx.broadcast_shapes(n.shape, s.shape[:-2]))
        L = cholesky(0.5 * (s + _t(s)))
        M = _mm(L, _bartlett(key, n, p, full))
        X = _mm(M, _t(M))
        out: mx.array = 0.5 * (X + _t(X))
        return out

    def log_prob(self, value: Any, df: Any, scale: Any) -> mx.array:
        n, s, p = self._params(df, scale)
        x = arr(value)
        _check_value_square(self.name, x, p)
        Ls, s_ok = _spd_factor(s)
        Lx, x_ok = _spd_factor(x)
        n_ok = n > p - 1
        n_safe = mx.where(n_ok, n, float(p))
        tr = mx.sum(mx.square(solve_lower(Ls, Lx)), axis=(-2, -1))
        lp = (
            0.5 * (n_safe - p - 1) * _logdet(Lx)
            - 0.5 * tr
            - 0.5 * n_safe * p * _LOG_2
            - 0.5 * n_safe * _logdet(Ls)
            - log_multivariate_gamma(0.5 * n_safe, p)
        )
        out: mx.array = mx.where(mx.logical_and(mx.logical_and(n_ok, s_ok), x_ok), lp, -mx.inf)
        return out


class InvWishart(Distribution):
    """Inverse Wishart distribution ``IW(df, scale)`` over ``p × p`` symmetric positive
    definite matrices: ``X ~ IW(df, Ψ)`` iff ``X⁻¹ ~ W(df, Ψ⁻¹)``.

    Density, with ``Ψ = scale``::

        log p(X) = df/2 · log|Ψ| − (df + p + 1)/2 · log|X| − tr(Ψ X⁻¹)/2
                   − df·p/2 · log 2 − log Γ_p(df/2)

    Parameters: ``df > p − 1``, ``scale`` ``[..., p, p]`` symmetric positive definite;
    batch axes broadcast. Support: symmetric positive definite matrices;
    ``event_ndim = 2``. Mean ``scale / (df − p − 1)`` for ``df > p + 1``.

    Sampling inverts a ``W(df, Ψ⁻¹)`` draw without forming an inverse: with
    ``Ψ = L Lᵀ``, ``M = L⁻ᵀ`` is a square root of ``Ψ⁻¹``, so with the Bartlett factor
    ``A`` the Wishart draw is ``M A Aᵀ Mᵀ`` and its inverse is
    ``X = (L A⁻ᵀ)(L A⁻ᵀ)ᵀ`` (one triangular solve). Exact, one vectorised pass.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists.multivariate import inv_wishart
        >>> inv_wishart.sample(mx.random.key(0), 5.0, mx.eye(2)).shape
        (2, 2)
        >>> round(float(inv_wishart.log_prob(mx.eye(2), 3.0, mx.eye(2))), 4)
        -3.531
    """

    name = "inv_wishart"
    params = ("df", "scale")
    event_ndim = 2
    param_event_ndims = (0, 2)

    def _params(self, df: Any, scale: Any) -> tuple[mx.array, mx.array, int]:
        return _wishart_params(self.name, df, scale)

    def domain(self, *params: Any) -> C.Constraint:
        """The support, as a :mod:`genmlx.core.constraints` domain."""
        del params
        return C.positive_definite

    def sample(
        self, key: mx.array, df: Any, scale: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        n, s, p = self._params(df, scale)
        full = (*tuple(shape), *mx.broadcast_shapes(n.shape, s.shape[:-2]))
        L = cholesky(0.5 * (s + _t(s)))
        A = _bartlett(key, n, p, full)
        A_inv = solve_lower(A, mx.broadcast_to(mx.eye(p, dtype=mx.float32), A.shape))
        M = _mm(L, _t(A_inv))
        X = _mm(M, _t(M))
        out: mx.array = 0.5 * (X + _t(X))
        return out

    def log_prob(self, value: Any, df: Any, scale: Any) -> mx.array:
        n, s, p = self._params(df, scale)
        x = arr(value)
        _check_value_square(self.name, x, p)
        Ls, s_ok = _spd_factor(s)
        Lx, x_ok = _spd_factor(x)
        n_ok = n > p - 1
        n_safe = mx.where(n_ok, n, float(p))
        tr = mx.sum(mx.square(solve_lower(Lx, Ls)), axis=(-2, -1))
        lp = (
            0.5 * n_safe * _logdet(Ls)
            - 0.5 * (n_safe + p + 1) * _logdet(Lx)
            - 0.5 * tr
            - 0.5 * n_safe * p * _LOG_2
            - log_multivariate_gamma(0.5 * n_safe, p)
        )
        out: mx.array = mx.where(mx.logical_and(mx.logical_and(n_ok, s_ok), x_ok), lp, -mx.inf)
        return out


mv_normal = MvNormal()
wishart = Wishart()
inv_wishart = InvWishart()
