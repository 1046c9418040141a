"""``genmlx.dists.linalg``: values against NumPy, gradients against central finite
differences computed in float64 with NumPy, and the same under vmap and compile."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import numpy as np
import pytest

from genmlx.dists.linalg import (
    cho_solve,
    cholesky,
    logdet_cholesky,
    solve_matrix,
    solve_triangular,
    spd_inverse,
)

RNG = np.random.default_rng(0)


def _spd(n: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed).normal(size=(n, n))
    return r @ r.T + n * np.eye(n)


def _fd_grad(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


W3 = RNG.normal(size=(3, 3))
W32 = RNG.normal(size=(3, 2))


def test_values_match_numpy() -> None:
    a = _spd(4, 1)
    L = np.linalg.cholesky(a)
    b = RNG.normal(size=(4, 2))
    v = RNG.normal(size=4)
    np.testing.assert_allclose(np.array(cholesky(mx.array(a, dtype=mx.float32))), L,
                               rtol=1e-5, atol=1e-5)
    Lm = mx.array(L, dtype=mx.float32)
    np.testing.assert_allclose(np.array(solve_triangular(Lm, mx.array(b, dtype=mx.float32))),
                               np.linalg.solve(L, b), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(solve_triangular(Lm, mx.array(v, dtype=mx.float32))),
                               np.linalg.solve(L, v), rtol=1e-4, atol=1e-5)
    U = mx.swapaxes(Lm, 0, 1)
    vm = mx.array(v, dtype=mx.float32)
    np.testing.assert_allclose(np.array(solve_triangular(U, vm, lower=False)),
                               np.linalg.solve(L.T, v), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(cho_solve(Lm, mx.array(v, dtype=mx.float32))),
                               np.linalg.solve(a, v), rtol=1e-4, atol=1e-5)
    assert float(logdet_cholesky(Lm)) == pytest.approx(np.linalg.slogdet(a)[1], rel=1e-5)
    np.testing.assert_allclose(np.array(spd_inverse(mx.array(a, dtype=mx.float32))),
                               np.linalg.inv(a), rtol=1e-4, atol=1e-5)


def test_cholesky_gradient_matches_finite_differences() -> None:
    a0 = _spd(3, 2)

    def f_np(a: np.ndarray) -> float:
        return float(np.sum(W3 * np.linalg.cholesky(_sym(a))))

    def f_mx(a: mx.array) -> mx.array:
        return mx.sum(mx.array(W3, dtype=mx.float32) * cholesky(0.5 * (a + a.T)))

    g = np.array(mx.grad(f_mx)(mx.array(a0, dtype=mx.float32)))
    np.testing.assert_allclose(g, _fd_grad(f_np, a0), rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("lower", [True, False])
def test_solve_gradients_match_finite_differences(lower: bool) -> None:
    L0 = np.linalg.cholesky(_spd(3, 3))
    T0 = L0 if lower else L0.T
    b0 = RNG.normal(size=(3, 2))
    mask = np.tril(np.ones((3, 3))) if lower else np.triu(np.ones((3, 3)))

    def f_np(t: np.ndarray, b: np.ndarray) -> float:
        return float(np.sum(W32 * np.linalg.solve(t * mask, b)))

    def f_mx(t: mx.array, b: mx.array) -> mx.array:
        return mx.sum(mx.array(W32, dtype=mx.float32) * solve_triangular(t, b, lower=lower))

    gt, gb = mx.grad(f_mx, argnums=(0, 1))(mx.array(T0, dtype=mx.float32),
                                           mx.array(b0, dtype=mx.float32))
    np.testing.assert_allclose(np.array(gt), _fd_grad(lambda t: f_np(t, b0), T0) * mask,
                               rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(np.array(gb), _fd_grad(lambda b: f_np(T0, b), b0),
                               rtol=2e-3, atol=2e-4)


def test_gp_marginal_likelihood_gradient_matches_finite_differences() -> None:
    xs = np.linspace(-1.0, 1.0, 6)
    y = np.sin(2.0 * xs)

    def np_ll(theta: np.ndarray) -> float:
        rho, alpha = np.exp(theta)
        d = xs[:, None] - xs[None, :]
        K = alpha**2 * np.exp(-0.5 * d * d / rho**2) + 0.05 * np.eye(6)
        L = np.linalg.cholesky(K)
        z = np.linalg.solve(L, y)
        return float(-0.5 * z @ z - np.sum(np.log(np.diag(L))))

    xm, ym = mx.array(xs, dtype=mx.float32), mx.array(y, dtype=mx.float32)

    def mx_ll(theta: mx.array) -> mx.array:
        rho, alpha = mx.exp(theta[0]), mx.exp(theta[1])
        d = xm[:, None] - xm[None, :]
        K = alpha**2 * mx.exp(-0.5 * d * d / rho**2) + 0.05 * mx.eye(6)
        L = cholesky(K)
        return -0.5 * mx.sum(ym * cho_solve(L, ym)) - 0.5 * logdet_cholesky(L)

    theta = np.array([-0.3, 0.2])
    assert float(mx_ll(mx.array(theta, dtype=mx.float32))) == pytest.approx(np_ll(theta), rel=1e-4)
    g = np.array(mx.grad(mx_ll)(mx.array(theta, dtype=mx.float32)))
    np.testing.assert_allclose(g, _fd_grad(np_ll, theta), rtol=2e-3, atol=2e-4)


def test_vmap_and_compile_of_gradients() -> None:
    A = mx.array(np.stack([_spd(3, s) for s in range(4)]), dtype=mx.float32)
    b = mx.array(RNG.normal(size=(4, 3)), dtype=mx.float32)

    def f(a: mx.array, v: mx.array) -> mx.array:
        L = cholesky(a)
        return mx.sum(cho_solve(L, v) * v) + logdet_cholesky(L)

    grad = mx.grad(f, argnums=(0, 1))
    ga, gb = mx.vmap(grad)(A, b)
    for i in range(4):
        ea, eb = grad(A[i], b[i])
        np.testing.assert_allclose(np.array(ga[i]), np.array(ea), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.array(gb[i]), np.array(eb), rtol=1e-5, atol=1e-6)
    ca, cb = mx.compile(mx.vmap(grad))(A, b)
    np.testing.assert_allclose(np.array(ca), np.array(ga), rtol=1e-5, atol=1e-6)
    # d/db bᵀA⁻¹b = 2A⁻¹b, d/dA [bᵀA⁻¹b + log det A] = -A⁻¹bbᵀA⁻¹ + A⁻¹
    a0, b0 = np.array(A[0], dtype=np.float64), np.array(b[0], dtype=np.float64)
    ai = np.linalg.inv(a0)
    np.testing.assert_allclose(np.array(gb[0]), 2 * ai @ b0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(ga[0]), -ai @ np.outer(b0, b0) @ ai + ai, rtol=1e-3,
                               atol=1e-4)


def test_float64_on_the_cpu() -> None:
    a = _spd(3, 5)
    with mx.stream(mx.cpu):
        L = cholesky(mx.array(a, dtype=mx.float64))
        assert L.dtype == mx.float64
        np.testing.assert_allclose(np.array(L), np.linalg.cholesky(a), rtol=1e-12)
        g = mx.grad(lambda m: logdet_cholesky(cholesky(m)))(mx.array(a, dtype=mx.float64))
        np.testing.assert_allclose(np.array(g), np.linalg.inv(a), rtol=1e-10)


def test_not_positive_definite_gives_nan_factor_and_zero_gradient() -> None:
    a = mx.array([[1.0, 2.0], [2.0, 1.0]])
    L = cholesky(a)
    d = np.diagonal(np.array(L))
    assert not np.all(d > 0)
    g = mx.grad(lambda m: mx.sum(mx.where(mx.isfinite(cholesky(m)), cholesky(m), 0.0)))(a)
    assert bool(mx.all(mx.isfinite(g)))


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="square matrices"):
        solve_triangular(mx.zeros((2, 3)), mx.zeros(2))
    with pytest.raises(ValueError, match=r"b must be \[..., 3\]"):
        solve_triangular(mx.eye(3), mx.zeros(2))
    assert solve_matrix(mx.eye(2)[None].astype(mx.float32) * mx.ones((3, 1, 1)),
                        mx.ones((2, 1))).shape == (3, 2, 1)


def test_gradient_of_a_vmapped_function_keeps_the_custom_rules() -> None:
    # grad outside vmap (a batched ELBO, ADVI): the vmap rules keep the custom VJPs
    A = mx.array(np.stack([_spd(3, s) for s in range(4)]), dtype=mx.float32)
    b = mx.array(RNG.normal(size=(4, 3)), dtype=mx.float32)

    def f(a: mx.array, v: mx.array) -> mx.array:
        L = cholesky(a)
        return mx.sum(cho_solve(L, v) * v) + logdet_cholesky(L)

    inner = mx.vmap(mx.grad(f))(A, b)
    outer = mx.grad(lambda m: mx.sum(mx.vmap(f)(m, b)))(A)
    np.testing.assert_allclose(np.array(outer), np.array(inner), rtol=1e-5, atol=1e-6)
    shared = mx.grad(lambda m: mx.sum(mx.vmap(f, in_axes=(0, None))(m, b[0])))(A)
    expect = mx.vmap(mx.grad(f), in_axes=(0, None))(A, b[0])
    np.testing.assert_allclose(np.array(shared), np.array(expect), rtol=1e-5, atol=1e-6)
    nested = mx.grad(lambda m: mx.sum(mx.vmap(mx.vmap(f))(m, b.reshape(2, 2, 3))))(
        A.reshape(2, 2, 3, 3)
    )
    np.testing.assert_allclose(np.array(nested).reshape(4, 3, 3), np.array(inner), rtol=1e-5,
                               atol=1e-6)
