"""Tests of genmlx.dists.multivariate: mv_normal, wishart, inv_wishart.

Reference values come from scipy.stats (float64). Tolerances: log densities are
compared at rtol 1e-5 / atol 1e-5 except where noted; a p×p float32 Cholesky,
triangular solve and log-determinant accumulate O(p · 1e-7) relative error on terms of
size up to ~10², so ``atol = 2e-5`` is used for p ≥ 3 and large df (argued at the use).
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import special, stats

from genmlx.core.distribution import Distribution
from genmlx.core.testing import check_gfi_laws
from genmlx.dists.examples import examples
from genmlx.dists.multivariate import (
    cholesky,
    inv_wishart,
    log_multivariate_gamma,
    mv_normal,
    solve_lower,
    wishart,
)

F32 = mx.float32


def a32(x: object) -> mx.array:
    return mx.array(np.asarray(x, dtype=np.float32))


def npf(x: mx.array) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def spd(p: int, seed: int, jitter: float = 0.5) -> np.ndarray:
    r = np.random.default_rng(seed)
    a = r.normal(size=(p, p))
    return a @ a.T / p + jitter * np.eye(p)


def no_nan(x: mx.array) -> bool:
    return not bool(np.any(np.isnan(npf(x))))


# ======================================================================= linear algebra
def test_cholesky_and_solve_gradients_match_finite_differences() -> None:
    A = spd(3, 0)
    B = np.random.default_rng(1).normal(size=(3, 2))
    W = np.random.default_rng(2).normal(size=(3, 3))

    def f_np(a: np.ndarray, b: np.ndarray) -> float:
        L = np.linalg.cholesky(a)
        return float(np.sum(W[:, :2] * np.linalg.solve(L, b)) + np.sum(W * L))

    def f_mx(a: mx.array, b: mx.array) -> mx.array:
        L = cholesky(a)
        return mx.sum(a32(W[:, :2]) * solve_lower(L, b)) + mx.sum(a32(W) * L)

    ga, gb = mx.grad(f_mx, argnums=(0, 1))(a32(A), a32(B))
    h = 1e-6
    for i in range(3):
        for j in range(i + 1):
            E = np.zeros((3, 3))
            E[i, j] = E[j, i] = 1.0
            fd = (f_np(A + h * E, B) - f_np(A - h * E, B)) / (2 * h)
            # symmetric perturbation: derivative G_ij + G_ji (G_ii on the diagonal)
            got = float(ga[i, j] + ga[j, i]) if i != j else float(ga[i, i])
            assert got == pytest.approx(fd, rel=1e-4, abs=1e-4)
    for i in range(3):
        for j in range(2):
            E = np.zeros((3, 2))
            E[i, j] = 1.0
            fd = (f_np(A, B + h * E) - f_np(A, B - h * E)) / (2 * h)
            assert float(gb[i, j]) == pytest.approx(fd, rel=1e-4, abs=1e-4)


def test_linalg_runs_under_vmap_and_compile() -> None:
    A = a32(np.stack([spd(2, 0), spd(2, 1)]))
    Lv = mx.vmap(cholesky)(A)
    np.testing.assert_allclose(npf(Lv), np.linalg.cholesky(npf(A)), rtol=1e-5, atol=1e-6)
    g = mx.vmap(mx.grad(lambda a: mx.sum(mx.log(mx.diagonal(cholesky(a))))))(A)
    np.testing.assert_allclose(npf(g), 0.5 * np.linalg.inv(npf(A)), rtol=1e-4, atol=1e-5)
    gc = mx.compile(mx.grad(lambda a: mx.sum(mx.log(mx.diagonal(cholesky(a))))))(A[0])
    np.testing.assert_allclose(npf(gc), 0.5 * np.linalg.inv(npf(A[0])), rtol=1e-4, atol=1e-5)


def test_log_multivariate_gamma_matches_scipy() -> None:
    for p in (1, 2, 3, 5):
        a = np.array([0.5 * p + 0.01, p * 0.5 + 0.7, 3.3, 12.0])
        got = npf(log_multivariate_gamma(a32(a), p))
        want = np.array([special.multigammaln(x, p) for x in a])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


# ======================================================================= mv_normal
MVN_CASES = [
    (np.array([0.3]), np.array([[2.0]])),
    (np.array([0.5, -1.0]), np.array([[2.0, 0.6], [0.6, 1.0]])),
    (np.array([1.0, 0.0, -2.0]), spd(3, 3)),
    (np.zeros(5), spd(5, 4, jitter=0.1)),
]


@pytest.mark.parametrize("mean,cov", MVN_CASES)
def test_mv_normal_log_prob_matches_scipy(mean: np.ndarray, cov: np.ndarray) -> None:
    d = mean.size
    x = mean + 2.0 * np.random.default_rng(d).normal(size=(7, d))
    got = npf(mv_normal.log_prob(a32(x), a32(mean), a32(cov)))
    want = stats.multivariate_normal(mean, cov).logpdf(x).reshape(7)
    # d = 5 with a condition number ~ 50: float32 solves lose ~1e-6 relative on values ~20
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5 if d >= 3 else 1e-5)


def test_mv_normal_broadcasting_shapes() -> None:
    means = a32(np.random.default_rng(0).normal(size=(4, 2)))
    cov = a32(spd(2, 1))
    covs = a32(np.stack([spd(2, s) for s in range(3)]))
    x = a32(np.random.default_rng(1).normal(size=(2,)))
    assert mv_normal.log_prob(x, means, cov).shape == (4,)
    assert mv_normal.log_prob(x, mx.zeros(2), covs).shape == (3,)
    assert mv_normal.log_prob(mx.zeros((5, 1, 2)), means[:3], covs).shape == (5, 3)
    # values agree with scipy element by element
    lp = npf(mv_normal.log_prob(x, means, cov))
    for i in range(4):
        want = stats.multivariate_normal(npf(means[i]), npf(cov)).logpdf(npf(x))
        assert lp[i] == pytest.approx(want, abs=1e-5)
    key = mx.random.key(0)
    assert mv_normal.sample(key, mx.zeros(2), cov).shape == (2,)
    assert mv_normal.sample(key, means, cov, shape=(6,)).shape == (6, 4, 2)
    assert mv_normal.sample(key, mx.zeros(2), covs, shape=(2, 5)).shape == (2, 5, 3, 2)
    assert mv_normal.sample(key, means[:3], covs).shape == (3, 2)
    assert mv_normal.sample(key, [0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).dtype == F32


def test_mv_normal_batch_elements_are_independent() -> None:
    x = npf(mv_normal.sample(mx.random.key(3), mx.zeros((2, 2)), mx.eye(2), shape=(4000,)))
    r = np.corrcoef(x[:, 0, 0], x[:, 1, 0])[0, 1]
    assert abs(r) < 5 / math.sqrt(4000)


def test_mv_normal_invalid_cov_gives_neg_inf_without_nan() -> None:
    x, m = mx.array([1.0, 2.0]), mx.zeros(2)
    bad = [
        mx.array([[1.0, 2.0], [2.0, 1.0]]),  # indefinite
        mx.array([[-1.0, 0.0], [0.0, 1.0]]),  # negative diagonal
        mx.array([[1.0, 0.5], [0.0, 1.0]]),  # not symmetric
        mx.array([[1.0, math.nan], [math.nan, 1.0]]),
        mx.zeros((2, 2)),
    ]
    for c in bad:
        assert float(mv_normal.log_prob(x, m, c)) == -math.inf
        g, gx = mx.grad(lambda c_, x_: mv_normal.log_prob(x_, m, c_), argnums=(0, 1))(c, x)
        assert no_nan(g) and no_nan(gx)
    batch = mx.stack([mx.eye(2), bad[0], 2 * mx.eye(2)])
    lp = npf(mv_normal.log_prob(x, m, batch))
    assert np.isfinite(lp[0]) and lp[1] == -np.inf and np.isfinite(lp[2])

    def finite_sum(c_: mx.array) -> mx.array:
        lp_ = mv_normal.log_prob(x, m, c_)
        return mx.sum(mx.where(mx.isfinite(lp_), lp_, 0.0))

    assert no_nan(mx.grad(finite_sum)(batch))


def test_mv_normal_invalid_plain_params_raise() -> None:
    with pytest.raises(ValueError, match="cov"):
        mv_normal.log_prob([0.0, 0.0], [0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="cov"):
        mv_normal.sample(mx.random.key(0), [0.0, 0.0], [[1.0, 0.9], [0.0, 1.0]])
    with pytest.raises(ValueError, match="mean"):
        mv_normal.log_prob(mx.zeros(3), mx.zeros(3), mx.eye(2))
    with pytest.raises(ValueError, match="cov"):
        mv_normal.sample(mx.random.key(0), mx.zeros(2), mx.ones(2))
    with pytest.raises(ValueError, match="value"):
        mv_normal.log_prob(mx.zeros(3), mx.zeros(2), mx.eye(2))


def test_mv_normal_sampler_moments_and_ks() -> None:
    mean, cov = np.array([1.0, -2.0, 0.5]), spd(3, 7)
    n = 20000
    x = npf(mv_normal.sample(mx.random.key(11), a32(mean), a32(cov), shape=(n,)))
    assert x.shape == (n, 3)
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se)
    # sample covariance entries: Var(x_i x_j) = S_ii S_jj + S_ij² for centred normals
    emp = np.cov(x.T)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(emp - cov) < 5 * se_cov)
    # whitened draws are iid N(0, 1); the squared Mahalanobis distance is chi2(3)
    z = np.linalg.solve(np.linalg.cholesky(cov), (x - mean).T).T
    assert stats.kstest(z.ravel()[:n], "norm").pvalue > 1e-4
    assert stats.kstest((z**2).sum(1), stats.chi2(3).cdf).pvalue > 1e-4


def test_mv_normal_gradients_match_finite_differences() -> None:
    mean, cov = np.array([0.5, -1.0, 0.2]), spd(3, 5)
    x = np.array([1.0, 0.3, -0.7])

    def ref(x_: np.ndarray, m_: np.ndarray, c_: np.ndarray) -> float:
        return float(stats.multivariate_normal(m_, c_).logpdf(x_))

    gx, gm, gc = mx.grad(mv_normal.log_prob, argnums=(0, 1, 2))(a32(x), a32(mean), a32(cov))
    h = 1e-6
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        fdx = (ref(x + e, mean, cov) - ref(x - e, mean, cov)) / (2 * h)
        fdm = (ref(x, mean + e, cov) - ref(x, mean - e, cov)) / (2 * h)
        assert float(gx[i]) == pytest.approx(fdx, rel=1e-4, abs=1e-5)
        assert float(gm[i]) == pytest.approx(fdm, rel=1e-4, abs=1e-5)
        for j in range(i + 1):
            E = np.zeros((3, 3))
            E[i, j] = E[j, i] = h
            fd = (ref(x, mean, cov + E) - ref(x, mean, cov - E)) / (2 * h)
            got = float(gc[i, j] + gc[j, i]) if i != j else float(gc[i, i])
            assert got == pytest.approx(fd, rel=1e-4, abs=1e-4)


def test_mv_normal_reparam_gradient() -> None:
    assert mv_normal.has_reparam
    mean, cov = np.array([0.5, -1.0]), spd(2, 2)
    key = mx.random.key(4)
    x = npf(mv_normal.reparam_sample(key, a32(mean), a32(cov)))
    eps = np.linalg.solve(np.linalg.cholesky(cov), x - mean)
    w = np.array([0.7, -1.3])

    def f_np(c: np.ndarray) -> float:
        return float(w @ (mean + np.linalg.cholesky(c) @ eps))

    def f_mx(m: mx.array, c: mx.array) -> mx.array:
        return mx.sum(a32(w) * mv_normal.reparam_sample(key, m, c))

    gm, gc = mx.grad(f_mx, argnums=(0, 1))(a32(mean), a32(cov))
    np.testing.assert_allclose(npf(gm), w, rtol=1e-6)
    h = 1e-6
    for i in range(2):
        for j in range(i + 1):
            E = np.zeros((2, 2))
            E[i, j] = E[j, i] = h
            fd = (f_np(cov + E) - f_np(cov - E)) / (2 * h)
            got = float(gc[i, j] + gc[j, i]) if i != j else float(gc[i, i])
            assert got == pytest.approx(fd, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("params", examples(mv_normal))
def test_mv_normal_gfi_laws(params: tuple) -> None:
    check_gfi_laws(mv_normal, params, max_examples=3)


# ======================================================================= wishart
W_CASES = [
    (1.5, np.array([[0.7]])),
    (1.2, np.array([[2.0, 0.5], [0.5, 1.0]])),
    (4.0, np.array([[2.0, 0.5], [0.5, 1.0]])),
    (3.5, spd(3, 8)),
    (12.0, spd(4, 9)),
]


def _wishart_values(df: float, S: np.ndarray, seed: int) -> np.ndarray:
    p = S.shape[0]
    v = stats.wishart(max(df, p + 1.0), S).rvs(4, random_state=seed)
    return np.asarray(v).reshape(4, p, p)


@pytest.mark.parametrize("df,S", W_CASES)
def test_wishart_log_prob_matches_scipy(df: float, S: np.ndarray) -> None:
    p = S.shape[0]
    X = _wishart_values(df, S, p)
    got = npf(wishart.log_prob(a32(X), df, a32(S)))
    want = np.array([stats.wishart(df, S).logpdf(x) for x in X])
    # p = 4, df = 12: terms (df − p − 1)/2 · log|X| and tr(S⁻¹X) are ~10²: atol 2e-5 is
    # the float32 resolution of such sums (1e-7 · 10² · a few).
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5 if p >= 3 else 1e-5)


@pytest.mark.parametrize("df,S", W_CASES)
def test_inv_wishart_log_prob_matches_scipy(df: float, S: np.ndarray) -> None:
    p = S.shape[0]
    X = np.linalg.inv(_wishart_values(df, np.linalg.inv(S), p + 10))
    X = 0.5 * (X + np.swapaxes(X, -1, -2))
    got = npf(inv_wishart.log_prob(a32(X), df, a32(S)))
    want = np.array([stats.invwishart(df, S).logpdf(x) for x in X])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5 if p >= 3 else 1e-5)


@pytest.mark.parametrize("d", [wishart, inv_wishart])
def test_wishart_batched_params_and_shapes(d: Distribution) -> None:
    dfs = a32([3.0, 5.5, 8.0])
    scales = a32(np.stack([spd(2, s) for s in range(3)]))
    key = mx.random.key(0)
    assert d.sample(key, 4.0, mx.eye(2)).shape == (2, 2)
    assert d.sample(key, 4.0, mx.eye(3), shape=(5,)).shape == (5, 3, 3)
    assert d.sample(key, dfs, mx.eye(2), shape=(4,)).shape == (4, 3, 2, 2)
    assert d.sample(key, 4.0, scales).shape == (3, 2, 2)
    assert d.sample(key, dfs, scales, shape=(2,)).shape == (2, 3, 2, 2)
    x = d.sample(key, dfs, scales)
    lp = npf(d.log_prob(x, dfs, scales))
    ref = stats.wishart if d is wishart else stats.invwishart
    want = [ref(float(dfs[i]), npf(scales[i])).logpdf(npf(x[i])) for i in range(3)]
    np.testing.assert_allclose(lp, want, rtol=1e-5, atol=1e-5)
    assert d.log_prob(mx.eye(2), dfs, mx.eye(2)).shape == (3,)
    assert d.log_prob(mx.stack([mx.eye(2)] * 4)[:, None], dfs, scales).shape == (4, 3)


@pytest.mark.parametrize("d", [wishart, inv_wishart])
def test_wishart_support_and_invalid_params(d: Distribution) -> None:
    S = mx.array([[2.0, 0.5], [0.5, 1.0]])
    lp = d.log_prob
    outside = [
        mx.array([[1.0, 2.0], [2.0, 1.0]]),  # indefinite
        mx.array([[1.0, 0.5], [0.0, 1.0]]),  # not symmetric
        mx.zeros((2, 2)),
        -mx.eye(2),
        mx.array([[1.0, math.nan], [math.nan, 1.0]]),
    ]
    for x in outside:
        assert float(lp(x, 4.0, S)) == -math.inf
        assert no_nan(mx.grad(lambda x_: lp(x_, 4.0, S))(x))
    # invalid array parameters: df <= p - 1, scale not SPD
    dfs = mx.array([0.5, 1.0, 3.0, math.nan])
    out = npf(lp(mx.eye(2), dfs, S))
    assert out[0] == -np.inf and out[1] == -np.inf and np.isfinite(out[2]) and out[3] == -np.inf
    assert no_nan(mx.grad(lambda n: mx.sum(lp(mx.eye(2), n, S)[:1]))(dfs))
    assert float(lp(mx.eye(2), 4.0, mx.array([[1.0, 2.0], [2.0, 1.0]]))) == -math.inf
    g = mx.grad(lambda s: lp(mx.eye(2), 4.0, s))(mx.array([[1.0, 2.0], [2.0, 1.0]]))
    assert no_nan(g)
    # invalid plain parameters raise
    with pytest.raises(ValueError, match="df"):
        lp(mx.eye(2), 1.0, S)
    with pytest.raises(ValueError, match="df"):
        d.sample(mx.random.key(0), 0.5, S)
    with pytest.raises(ValueError, match="scale"):
        lp(mx.eye(2), 4.0, [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="scale"):
        d.sample(mx.random.key(0), 4.0, mx.ones(3))
    with pytest.raises(ValueError, match="value"):
        lp(mx.eye(3), 4.0, S)


def test_wishart_sampler_moments_and_ks() -> None:
    df, S = 5.0, np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])
    n = 20000
    X = npf(wishart.sample(mx.random.key(21), df, a32(S), shape=(n,)))
    assert np.allclose(X, np.swapaxes(X, -1, -2))
    # mean df·S; Var(X_ij) = df (S_ij² + S_ii S_jj)
    se = np.sqrt(df * (S**2 + np.outer(np.diag(S), np.diag(S))) / n)
    assert np.all(np.abs(X.mean(0) - df * S) < 5 * se)
    # aᵀXa / aᵀSa ~ chi2(df) for any fixed a
    for a in (np.array([1.0, 0.0, 0.0]), np.array([0.3, -1.0, 2.0])):
        q = np.einsum("i,nij,j->n", a, X, a) / (a @ S @ a)
        assert stats.kstest(q, stats.chi2(df).cdf).pvalue > 1e-4
    # every draw is positive definite
    assert np.all(np.linalg.eigvalsh(X) > 0)


def test_wishart_small_df_sampler_ks() -> None:
    # df just above p - 1 exercises the small-shape gamma draws on the diagonal
    df, S = 1.3, np.array([[1.0, 0.4], [0.4, 0.8]])
    X = npf(wishart.sample(mx.random.key(5), df, a32(S), shape=(20000,)))
    a = np.array([0.6, -1.0])
    q = np.einsum("i,nij,j->n", a, X, a) / (a @ S @ a)
    assert stats.kstest(q, stats.chi2(df).cdf).pvalue > 1e-4
    assert stats.kstest(X[:, 1, 1] / S[1, 1], stats.chi2(df).cdf).pvalue > 1e-4


def test_inv_wishart_sampler_moments_and_ks() -> None:
    df, S = 9.0, np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])
    p, n = 3, 20000
    X = npf(inv_wishart.sample(mx.random.key(8), df, a32(S), shape=(n,)))
    assert np.allclose(X, np.swapaxes(X, -1, -2))
    mean = S / (df - p - 1)
    dd = np.outer(np.diag(S), np.diag(S))
    var = ((df - p + 1) * S**2 + (df - p - 1) * dd) / ((df - p) * (df - p - 1) ** 2 * (df - p - 3))
    assert np.all(np.abs(X.mean(0) - mean) < 5 * np.sqrt(var / n))
    # diagonal entries: X_ii ~ InvGamma((df − p + 1)/2, scale S_ii/2)
    for i in range(p):
        ref = stats.invgamma((df - p + 1) / 2, scale=S[i, i] / 2)
        assert stats.kstest(X[:, i, i], ref.cdf).pvalue > 1e-4
    # aᵀX⁻¹a / aᵀS⁻¹a ~ chi2(df)
    a = np.array([0.3, -1.0, 2.0])
    Si = np.linalg.inv(S)
    q = np.einsum("i,nij,j->n", a, np.linalg.inv(X), a) / (a @ Si @ a)
    assert stats.kstest(q, stats.chi2(df).cdf).pvalue > 1e-4


@pytest.mark.parametrize("d,ref", [(wishart, stats.wishart), (inv_wishart, stats.invwishart)])
def test_wishart_gradients_match_finite_differences(d: Distribution, ref: Any) -> None:
    df, S = 4.5, np.array([[2.0, 0.5], [0.5, 1.0]])
    X = np.array([[3.0, 0.4], [0.4, 1.5]])

    def f(x_: np.ndarray, n_: float, s_: np.ndarray) -> float:
        return float(ref(n_, s_).logpdf(x_))

    grad = mx.grad(d.log_prob, argnums=(0, 1, 2))
    gx, gn, gs = grad(a32(X), mx.array(df), a32(S))
    h = 1e-6
    fdn = (f(X, df + h, S) - f(X, df - h, S)) / (2 * h)
    assert float(gn) == pytest.approx(fdn, rel=1e-4, abs=1e-4)
    for i in range(2):
        for j in range(i + 1):
            E = np.zeros((2, 2))
            E[i, j] = E[j, i] = h
            fdx = (f(X + E, df, S) - f(X - E, df, S)) / (2 * h)
            fds = (f(X, df, S + E) - f(X, df, S - E)) / (2 * h)
            gotx = float(gx[i, j] + gx[j, i]) if i != j else float(gx[i, i])
            gots = float(gs[i, j] + gs[j, i]) if i != j else float(gs[i, i])
            assert gotx == pytest.approx(fdx, rel=1e-4, abs=1e-4)
            assert gots == pytest.approx(fds, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("d", [wishart, inv_wishart])
def test_wishart_gfi_laws(d: Distribution) -> None:
    for params in examples(d):
        check_gfi_laws(d, params, max_examples=3)


# ======================================================================= transforms
@pytest.mark.parametrize(
    "d,params",
    [
        (mv_normal, (mx.zeros(2), mx.array([[1.0, 0.3], [0.3, 2.0]]))),
        (wishart, (mx.array(4.0), mx.eye(2))),
        (inv_wishart, (mx.array(5.0), mx.eye(3))),
    ],
)
def test_sampling_under_vmap_and_compile(d: Distribution, params: tuple) -> None:
    keys = mx.random.split(mx.random.key(0), 4)
    out = mx.vmap(lambda k: d.sample(k, *params))(keys)
    assert out.shape[0] == 4 and no_nan(out)
    for i in range(4):
        one = d.sample(keys[i], *params)
        np.testing.assert_allclose(npf(out[i]), npf(one), rtol=1e-5, atol=1e-6)
    comp = mx.compile(lambda k, *p: d.sample(k, *p, shape=(3,)))
    c = comp(keys[0], *params)
    eager = d.sample(keys[0], *params, shape=(3,))
    np.testing.assert_allclose(npf(c), npf(eager), rtol=1e-5, atol=1e-6)
    lp = mx.compile(lambda x, *p: d.log_prob(x, *p))(c, *params)
    assert lp.shape == (3,) and np.all(np.isfinite(npf(lp)))
    lpv = mx.vmap(lambda x: d.log_prob(x, *params))(c)
    np.testing.assert_allclose(npf(lpv), npf(lp), rtol=1e-5, atol=1e-5)


def test_inv_wishart_heavy_tailed_sampler_ks() -> None:
    # df ≤ p + 1: no mean; the diagonal is InvGamma((df − p + 1)/2, S_ii/2), heavy-tailed
    df, S, p = 2.5, np.array([[1.0, 0.3], [0.3, 0.5]]), 2
    X = npf(inv_wishart.sample(mx.random.key(6), df, a32(S), shape=(20000,)))
    for i in range(p):
        ref = stats.invgamma((df - p + 1) / 2, scale=S[i, i] / 2)
        assert stats.kstest(X[:, i, i], ref.cdf).pvalue > 1e-4
    a = np.array([0.6, -1.0])
    q = np.einsum("i,nij,j->n", a, np.linalg.inv(X), a) / (a @ np.linalg.inv(S) @ a)
    assert stats.kstest(q, stats.chi2(df).cdf).pvalue > 1e-4
    Xs = npf(a32(X[:200]))
    lp = npf(inv_wishart.log_prob(a32(Xs), df, a32(S)))
    want = np.array([stats.invwishart(df, S).logpdf(x) for x in Xs])
    # heavy-tailed draws are often ill-conditioned (κ up to ~2e4 here); a float32
    # Cholesky of such a matrix is accurate to about κ · eps, so the tolerance scales
    # with κ: 1e-6 · κ · |log p| (measured worst case: 3.9e-7 · κ · |log p|).
    tol = 1e-5 + 1e-6 * np.linalg.cond(Xs) * np.abs(want)
    assert np.all(np.abs(lp - want) <= tol)
