"""Differentiable linear algebra for models: Cholesky, triangular solves, log-determinants.

MLX 0.32 has no vector-Jacobian product for its factorisations and solves
(``mx.grad`` of ``mx.linalg.cholesky``, ``solve_triangular``, ``inv`` raises
``[Primitive::vjp] Not implemented``), and ``mx.linalg.solve`` can be neither
differentiated nor vmapped. A model that builds a covariance matrix from its latent
choices — a Gaussian process, a hierarchical model with a correlation matrix — needs
those gradients for NUTS, HMC, MALA, MAP and VI. The functions here wrap MLX's kernels
in ``mx.custom_function`` with hand-written reverse-mode rules, so they work under
``mx.grad``, ``mx.vmap`` (batched chains) and ``mx.compile``, on any leading batch axes:

* :func:`cholesky` — ``A = L Lᵀ`` (Murray 2016's backward rule);
* :func:`solve_triangular` — ``L⁻¹ b`` or ``U⁻¹ b``;
* :func:`cho_solve` — ``A⁻¹ b`` from the factor of ``A``;
* :func:`logdet_cholesky` — ``log det A = 2 Σ log Lᵢᵢ``;
* :func:`spd_inverse` — ``A⁻¹`` of a symmetric positive definite ``A``.

Example (a GP's marginal log-likelihood with its gradient in the length scale):
    >>> import mlx.core as mx
    >>> from genmlx.dists.linalg import cholesky, cho_solve, logdet_cholesky
    >>> xs = mx.linspace(0.0, 1.0, 5)
    >>> y = mx.sin(3.0 * xs)
    >>> def loglik(rho):
    ...     d = xs[:, None] - xs[None, :]
    ...     K = mx.exp(-0.5 * d * d / (rho * rho)) + 0.1 * mx.eye(5)
    ...     L = cholesky(K)
    ...     return -0.5 * mx.sum(y * cho_solve(L, y)) - 0.5 * logdet_cholesky(L)
    >>> g = mx.grad(loglik)(mx.array(0.5))
    >>> bool(mx.isfinite(g))
    True

**Precision.** The kernels run on the CPU stream (MLX has no GPU kernels for most of
them). They accept float32 and float64 (float64 exists on the CPU only). A float32
Cholesky fails (a NaN or non-positive diagonal) for matrices whose condition number
approaches ``1/ε ≈ 10⁷``: a squared-exponential kernel on close inputs needs a jitter
of about ``10⁻⁶·max K`` on the diagonal in float32 where ``10⁻¹⁰`` suffices in float64;
factorising in float64 and casting the factor back to float32 is an option on the CPU
(``cholesky(K.astype(mx.float64)).astype(mx.float32)``). In MLX 0.32 some float64
elementwise operations are only float32-accurate (relative error ~3e-7 for ``exp``,
``sin``, ``cos``, ``erf``, ``sigmoid``, ``logaddexp``) while ``log``, ``log1p``,
``expm1``, ``sqrt``, ``tanh``, ``power``, matrix products and these factorisations are
accurate to double precision; write ``expm1(x) + 1`` for an accurate float64 ``exp``.
Forward-mode ``mx.jvp`` and second derivatives are not provided.
"""

from __future__ import annotations

from typing import Any, cast

import mlx.core as mx

__all__ = [
    "cho_solve",
    "cholesky",
    "logdet_cholesky",
    "solve_matrix",
    "solve_triangular",
    "spd_inverse",
]

_CPU = mx.cpu


def _t(x: mx.array) -> mx.array:
    return mx.swapaxes(x, -1, -2)


def _mm(a: mx.array, b: mx.array) -> mx.array:
    """``a @ b`` in full precision on the CPU stream (GPU float32 matmuls may be TF32)."""
    return mx.matmul(a, b, stream=_CPU)


def _safe_factor(L: mx.array) -> mx.array:
    """``L`` where it is a valid factor (finite, positive diagonal), else the identity,
    so backward rules of a failed factorisation give zeros rather than NaN chains."""
    L0 = mx.stop_gradient(L)
    d = mx.diagonal(L0, axis1=-2, axis2=-1)
    ok = mx.logical_and(mx.all(d > 0, axis=-1), mx.all(mx.isfinite(L0), axis=(-2, -1)))
    eye = mx.eye(L.shape[-1], dtype=L.dtype)
    return mx.where(ok[..., None, None], L, eye)


# --------------------------------------------------------------------------- cholesky
@mx.custom_function
def _cholesky_raw(a: mx.array) -> mx.array:
    return mx.linalg.cholesky(a, stream=_CPU)


@_cholesky_raw.vjp
def _cholesky_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> mx.array:
    L = _safe_factor(output)
    n = L.shape[-1]
    P = mx.tril(_mm(_t(L), cotangent))
    P = P - 0.5 * P * mx.eye(n, dtype=P.dtype)
    Lt = _t(L)
    X = mx.linalg.solve_triangular(Lt, P, upper=True, stream=_CPU)  # L⁻ᵀ P
    S = _t(mx.linalg.solve_triangular(Lt, _t(X), upper=True, stream=_CPU))  # L⁻ᵀ P L⁻¹
    out: mx.array = 0.5 * (S + _t(S))
    return out


def _front(x: mx.array, axis: int | None, n: int | None) -> mx.array:
    """``x`` with its vmapped axis first (broadcast to ``n`` where it has none)."""
    if axis is None:
        return mx.broadcast_to(x[None], (n, *x.shape)) if n is not None else x
    return mx.moveaxis(x, axis, 0)


# A vmap rule per function: the batched call is the function itself on the leading axis
# (its kernels take batches), so the custom VJP stays in force under grad(vmap(...)) —
# without one, MLX vmaps the raw kernels and the gradient outside finds no VJP.
@_cholesky_raw.vmap
def _cholesky_vmap(inputs: Any, axes: Any) -> tuple[mx.array, int]:
    (a,), (ax,) = (inputs if isinstance(inputs, (list, tuple)) else (inputs,)), (
        axes if isinstance(axes, (list, tuple)) else (axes,)
    )
    out: mx.array = _cholesky_raw(_front(a, ax, None))  # type: ignore[assignment]
    return out, 0


def cholesky(a: mx.array) -> mx.array:
    """Lower Cholesky factor ``L`` of a symmetric positive definite ``a`` (``[..., n, n]``,
    its lower triangle is read), differentiable.

    The backward rule is Murray's (2016), ``Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹)`` with ``Φ`` the
    lower triangle with a halved diagonal; the gradient is returned symmetrised (the
    convention of JAX and PyTorch). For a matrix that is not positive definite the
    factor has a non-positive or NaN diagonal entry (LAPACK stops there) and the
    gradient is zero.

    Example:
        >>> import mlx.core as mx
        >>> L = cholesky(mx.array([[4.0, 2.0], [2.0, 5.0]]))
        >>> L.tolist()
        [[2.0, 0.0], [1.0, 2.0]]
    """
    return cast(mx.array, _cholesky_raw(a))


# --------------------------------------------------------------------------- solves
@mx.custom_function
def _solve_lower_raw(L: mx.array, b: mx.array) -> mx.array:
    return mx.linalg.solve_triangular(L, b, upper=False, stream=_CPU)


@_solve_lower_raw.vjp
def _solve_lower_vjp(
    primals: Any, cotangent: mx.array, output: mx.array
) -> tuple[mx.array, mx.array]:
    L, _ = primals
    b_bar = mx.linalg.solve_triangular(_t(L), cotangent, upper=True, stream=_CPU)
    L_bar = -mx.tril(_mm(b_bar, _t(output)))
    return L_bar, b_bar


def _solve_vmap(raw: Any) -> Any:
    def rule(inputs: Any, axes: Any) -> tuple[mx.array, int]:
        (t, b), (at, ab) = inputs, axes
        n = t.shape[at] if at is not None else b.shape[ab]
        return raw(_front(t, at, n), _front(b, ab, n)), 0

    return rule


_solve_lower_raw.vmap(_solve_vmap(_solve_lower_raw))


@mx.custom_function
def _solve_upper_raw(U: mx.array, b: mx.array) -> mx.array:
    return mx.linalg.solve_triangular(U, b, upper=True, stream=_CPU)


@_solve_upper_raw.vjp
def _solve_upper_vjp(
    primals: Any, cotangent: mx.array, output: mx.array
) -> tuple[mx.array, mx.array]:
    U, _ = primals
    b_bar = mx.linalg.solve_triangular(_t(U), cotangent, upper=False, stream=_CPU)
    U_bar = -mx.triu(_mm(b_bar, _t(output)))
    return U_bar, b_bar


_solve_upper_raw.vmap(_solve_vmap(_solve_upper_raw))


def solve_triangular(a: mx.array, b: mx.array, *, lower: bool = True) -> mx.array:
    """``a⁻¹ b`` for a triangular ``a`` (``[..., n, n]``), differentiable in both.

    ``b`` is a vector ``[..., n]`` when it has one axis fewer than ``a``, otherwise a
    matrix ``[..., n, k]`` (JAX's rule); leading batch axes broadcast. Only the
    triangle named by ``lower`` is read, and the gradient with respect to ``a`` lies in
    it.

    Example:
        >>> import mlx.core as mx
        >>> solve_triangular(mx.array([[2.0, 0.0], [1.0, 1.0]]), mx.array([2.0, 3.0])).tolist()
        [1.0, 2.0]
    """
    a = a if isinstance(a, mx.array) else mx.array(a)
    b = b if isinstance(b, mx.array) else mx.array(b)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(
            f"solve_triangular: a must be [..., n, n] (square matrices), got {tuple(a.shape)}"
        )
    vector = b.ndim == a.ndim - 1
    bm = b[..., None] if vector else b
    if bm.ndim < 2 or bm.shape[-2] != a.shape[-1]:
        raise ValueError(
            f"solve_triangular: b must be [..., {a.shape[-1]}] or [..., {a.shape[-1]}, k] "
            f"to match a {tuple(a.shape)}, got {tuple(b.shape)}"
        )
    out = solve_matrix(a, bm, lower=lower)
    return out[..., 0] if vector else out


def solve_matrix(a: mx.array, b: mx.array, *, lower: bool = True) -> mx.array:
    """:func:`solve_triangular` with ``b`` always a matrix ``[..., n, k]``."""
    batch = tuple(mx.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    ab = mx.broadcast_to(a, (*batch, *a.shape[-2:]))
    bb = mx.broadcast_to(b, (*batch, *b.shape[-2:]))
    raw = _solve_lower_raw if lower else _solve_upper_raw
    return cast(mx.array, raw(ab, bb))


def cho_solve(L: mx.array, b: mx.array) -> mx.array:
    """``A⁻¹ b`` where ``A = L Lᵀ`` (``L`` from :func:`cholesky`); ``b`` as in
    :func:`solve_triangular`. Differentiable in ``L`` and ``b``.

    Example:
        >>> import mlx.core as mx
        >>> L = cholesky(mx.array([[4.0, 2.0], [2.0, 5.0]]))
        >>> [round(v, 5) for v in cho_solve(L, mx.array([6.0, 7.0])).tolist()]
        [1.0, 1.0]
    """
    z = solve_triangular(L, b, lower=True)
    return solve_triangular(_t(L), z, lower=False)


def logdet_cholesky(L: mx.array) -> mx.array:
    """``log det(L Lᵀ) = 2 Σᵢ log Lᵢᵢ`` for a Cholesky factor ``L`` (``[..., n, n]``).

    Example:
        >>> import mlx.core as mx
        >>> round(float(logdet_cholesky(cholesky(mx.array([[4.0, 2.0], [2.0, 5.0]])))), 5)
        2.77259
    """
    out: mx.array = 2.0 * mx.sum(mx.log(mx.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    return out


def spd_inverse(a: mx.array) -> mx.array:
    """``a⁻¹`` of a symmetric positive definite ``a`` through its Cholesky factor,
    differentiable (symmetric up to rounding).

    Example:
        >>> import mlx.core as mx
        >>> inv = spd_inverse(mx.array([[2.0, 0.0], [0.0, 4.0]]))
        >>> [[round(v, 5) for v in row] for row in inv.tolist()]
        [[0.5, 0.0], [0.0, 0.25]]
    """
    L = cholesky(a)
    eye = mx.broadcast_to(mx.eye(a.shape[-1], dtype=a.dtype), a.shape)
    return cho_solve(L, eye)
