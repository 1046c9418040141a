"""Tests of genmlx.dists.constructors: mixture, product, iid, transformed, from_functions.

Reference densities are computed in float64 with scipy.stats; tolerances are
rtol 1e-5 / atol 1e-5 unless a comment argues otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.core.distribution import Distribution
from genmlx.core.testing import check_gfi_laws
from genmlx.dists.constructors import (
    Bijector,
    HeterogeneousMixture,
    HomogeneousMixture,
    affine,
    exp_bijector,
    from_functions,
    iid,
    mixture,
    product,
    sigmoid_bijector,
    transformed,
)
from genmlx.dists.continuous import log_normal, normal
from genmlx.dists.discrete import bernoulli, categorical
from genmlx.dists.multivariate import mv_normal


def a32(x: object) -> mx.array:
    return mx.array(np.asarray(x, dtype=np.float32))


def npf(x: mx.array) -> np.ndarray:
    return np.asarray(x.astype(mx.float32) if x.dtype == mx.bool_ else x, dtype=np.float64)


def no_nan(x: mx.array) -> bool:
    return not bool(np.any(np.isnan(npf(x))))


# A user-defined exponential, used as a non-normal component throughout.
def _exp_sample(key: mx.array, rate: Any, *, shape: tuple[int, ...] = ()) -> mx.array:
    r = a32(rate) if not isinstance(rate, mx.array) else rate
    u = mx.random.uniform(shape=(*tuple(shape), *r.shape), key=key)
    out: mx.array = -mx.log1p(-u) / r
    return out


def _exp_log_prob(x: Any, rate: Any) -> mx.array:
    x = x if isinstance(x, mx.array) else a32(x)
    r = rate if isinstance(rate, mx.array) else a32(rate)
    x_safe = mx.where(x >= 0, x, 0.0)
    out: mx.array = mx.where(x >= 0, mx.log(r) - r * x_safe, -mx.inf)
    return out


expo = from_functions(
    _exp_sample,
    _exp_log_prob,
    name="my_exponential",
    has_reparam=True,
    example_params=[(2.0,), (a32([0.5, 3.0]),)],
)


def mix_np(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)[..., None]
    return np.log(np.sum(w * stats.norm(mu, sd).pdf(x), axis=-1))


# ======================================================================= mixture
W = np.array([0.3, 0.7])
MU = np.array([-1.0, 2.0])
SD = np.array([1.0, 0.5])


def test_homogeneous_mixture_log_prob_matches_scipy() -> None:
    mix = mixture(normal)
    assert isinstance(mix, HomogeneousMixture) and mix.event_ndim == 0
    xs = np.linspace(-6.0, 6.0, 25)
    got = npf(mix.log_prob(a32(xs), a32(W), a32(MU), a32(SD)))
    np.testing.assert_allclose(got, mix_np(xs, W, MU, SD), rtol=1e-5, atol=1e-5)
    # far tails, where one component dominates by e^60 and more: still exact
    far = np.array([-30.0, 25.0])
    got = npf(mix.log_prob(a32(far), a32(W), a32(MU), a32(SD)))
    want = [float(np.logaddexp(*(np.log(W) + stats.norm(MU, SD).logpdf(x)))) for x in far]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mixture_with_zero_weight_is_exact_and_has_finite_gradients() -> None:
    mix = mixture(normal)
    w = a32([0.0, 1.0])
    # the zero-weight component would dominate by e^450 at x = -30: must not leak in
    x = a32([0.5, -30.0])
    got = npf(mix.log_prob(x, w, a32(MU), a32(SD)))
    np.testing.assert_allclose(got, stats.norm(2.0, 0.5).logpdf(npf(x)), rtol=1e-5)
    gw = mx.grad(lambda w_: mx.sum(mix.log_prob(a32([0.5, 1.0]), w_, a32(MU), a32(SD))))(w)
    # d/dw_k log Σ w p = p_k / p_mix
    pk = stats.norm(MU, SD).pdf(np.array([[0.5], [1.0]]))
    want = (pk / pk[:, 1:]).sum(0)
    np.testing.assert_allclose(npf(gw), want, rtol=1e-4)


def test_mixture_gradients_match_finite_differences() -> None:
    mix = mixture(normal)
    x = 0.4
    args = (a32(W), a32(MU), a32(SD))
    g = mx.grad(lambda *a: mix.log_prob(mx.array(x), *a), argnums=(0, 1, 2))(*args)
    gx = mx.grad(lambda x_: mix.log_prob(x_, *args))(mx.array(x))
    h = 1e-6
    fdx = (mix_np(x + h, W, MU, SD) - mix_np(x - h, W, MU, SD)) / (2 * h)
    assert float(gx) == pytest.approx(float(fdx), rel=1e-4)
    base = [W, MU, SD]
    for a in range(3):
        for k in range(2):
            up = [b.copy() for b in base]
            dn = [b.copy() for b in base]
            up[a][k] += h
            dn[a][k] -= h
            # weights: the unconstrained derivative of log Σ w_k p_k (no renormalisation)
            fd = (mix_np(x, *up) - mix_np(x, *dn)) / (2 * h)
            assert float(g[a][k]) == pytest.approx(float(fd), rel=1e-4, abs=1e-5)


def test_mixture_batched_weights_and_params_shapes() -> None:
    mix = mixture(normal)
    wb = a32([[0.3, 0.7], [1.0, 0.0], [0.5, 0.5]])
    key = mx.random.key(0)
    assert mix.sample(key, a32(W), a32(MU), a32(SD)).shape == ()
    assert mix.sample(key, a32(W), a32(MU), a32(SD), shape=(4,)).shape == (4,)
    assert mix.sample(key, wb, a32(MU), a32(SD), shape=(2,)).shape == (2, 3)
    mub = a32(np.arange(8.0).reshape(4, 1, 2))
    assert mix.sample(key, wb, mub, 1.0, shape=(5,)).shape == (5, 4, 3)
    assert mix.log_prob(0.0, wb, mub, 1.0).shape == (4, 3)
    lp = npf(mix.log_prob(a32([[0.0], [1.0]]), wb, a32(MU), a32(SD)))
    assert lp.shape == (2, 3)
    for i in range(3):
        np.testing.assert_allclose(lp[:, i], mix_np(np.array([0.0, 1.0]), npf(wb[i]), MU, SD), 1e-5)
    # batch elements are independent even when the component parameters are shared
    x = npf(
        mix.sample(
            mx.random.key(1), mx.broadcast_to(a32(W), (2, 2)), a32(MU), a32(SD), shape=(4000,)
        )
    )
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 5 / math.sqrt(4000)
    with pytest.raises(ValueError, match="component axis"):
        mix.log_prob(0.0, a32([0.2, 0.3, 0.5]), a32(MU), a32(SD))


def test_mixture_sampler_ks_and_moments() -> None:
    mix = mixture(normal)
    n = 20000
    x = npf(mix.sample(mx.random.key(7), a32(W), a32(MU), a32(SD), shape=(n,)))

    def cdf(t: np.ndarray) -> np.ndarray:
        return np.sum(W * stats.norm(MU, SD).cdf(np.asarray(t)[..., None]), axis=-1)

    assert stats.kstest(x, cdf).pvalue > 1e-4
    mean = float(W @ MU)
    var = float(W @ (SD**2 + MU**2)) - mean**2
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n)
    m4 = np.mean((x - mean) ** 4)  # a generous SE for the sample variance
    assert abs(x.var() - var) < 5 * math.sqrt((m4 - var**2) / n)


def test_mixture_of_discrete_chi_square() -> None:
    mix = mixture(bernoulli)
    w, p = a32([0.25, 0.75]), a32([0.1, 0.8])
    n = 20000
    x = npf(mix.sample(mx.random.key(3), w, p, shape=(n,)))
    p1 = 0.25 * 0.1 + 0.75 * 0.8
    counts = np.array([np.sum(x == 0), np.sum(x == 1)])
    assert stats.chisquare(counts, n * np.array([1 - p1, p1])).pvalue > 1e-4
    lp = npf(mix.log_prob(mx.array([False, True]), w, p))
    np.testing.assert_allclose(lp, np.log([1 - p1, p1]), rtol=1e-5)
    assert mix.is_discrete


def test_mixture_of_categoricals_vector_parameters() -> None:
    mix = mixture(categorical)  # probs [K, n]: the component axis precedes the event axis
    w = np.array([0.4, 0.6])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    pmf = w @ probs
    got = npf(mix.log_prob(mx.array([0, 1, 2]), a32(w), a32(probs)))
    np.testing.assert_allclose(got, np.log(pmf), rtol=1e-5)
    n = 20000
    x = npf(mix.sample(mx.random.key(4), a32(w), a32(probs), shape=(n,)))
    counts = np.bincount(x.astype(int), minlength=3)
    assert stats.chisquare(counts, n * pmf).pvalue > 1e-4
    # batched weights broadcast against the [K, n] probabilities
    wb = a32([[0.4, 0.6], [1.0, 0.0]])
    assert mix.sample(mx.random.key(0), wb, a32(probs), shape=(5,)).shape == (5, 2)
    check_gfi_laws(mix, (wb, a32(probs)), max_examples=2)


def test_mixture_invalid_weights() -> None:
    mix = mixture(normal)
    for w in ([0.5, 0.6], [-0.2, 1.2], [math.nan, 1.0]):
        lp = mix.log_prob(0.3, a32(w), a32(MU), a32(SD))
        assert float(lp) == -math.inf
        g = mx.grad(lambda w_: mix.log_prob(mx.array(0.3), w_, a32(MU), a32(SD)))(a32(w))
        assert no_nan(g)
        with pytest.raises(ValueError, match="weights"):
            mix.log_prob(0.3, w, a32(MU), a32(SD))
        with pytest.raises(ValueError, match="weights"):
            mix.sample(mx.random.key(0), w, a32(MU), a32(SD))
    out = npf(mix.log_prob(0.3, a32([[0.5, 0.5], [0.5, 0.6]]), a32(MU), a32(SD)))
    assert np.isfinite(out[0]) and out[1] == -np.inf


def test_mixture_of_mv_normals_matches_scipy() -> None:
    mix = mixture(mv_normal)
    means = np.array([[0.0, 0.0], [3.0, 1.0]])
    covs = np.stack([np.eye(2), np.array([[0.5, 0.2], [0.2, 0.4]])])
    x = np.random.default_rng(0).normal(size=(6, 2)) * 2
    got = npf(mix.log_prob(a32(x), a32(W), a32(means), a32(covs)))
    want = np.log(sum(W[k] * stats.multivariate_normal(means[k], covs[k]).pdf(x) for k in range(2)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert mix.sample(mx.random.key(0), a32(W), a32(means), a32(covs), shape=(3,)).shape == (3, 2)
    # a covariance shared by all components (no component axis)
    s = mix.sample(mx.random.key(0), a32(W), a32(means), mx.eye(2), shape=(4,))
    assert s.shape == (4, 2)
    n = 20000
    xs = npf(mix.sample(mx.random.key(2), a32(W), a32(means), a32(covs), shape=(n,)))
    mean = W @ means
    cov = sum(W[k] * (covs[k] + np.outer(means[k], means[k])) for k in range(2)) - np.outer(
        mean, mean
    )
    assert np.all(np.abs(xs.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / n))


def test_heterogeneous_mixture() -> None:
    lognormal = transformed(normal, exp_bijector)
    mix = mixture([normal, lognormal, expo])
    assert isinstance(mix, HeterogeneousMixture)
    w = np.array([0.2, 0.5, 0.3])
    xs = np.array([-1.0, 0.2, 1.0, 3.0])
    got = npf(mix.log_prob(a32(xs), a32(w), (0.0, 1.0), (0.5, 0.4), (2.0,)))
    dens = (
        w[0] * stats.norm(0, 1).pdf(xs)
        + w[1] * stats.lognorm(0.4, scale=math.exp(0.5)).pdf(xs)
        + w[2] * stats.expon(scale=0.5).pdf(xs)
    )
    np.testing.assert_allclose(got, np.log(dens), rtol=1e-5, atol=1e-5)
    n = 20000
    x = npf(mix.sample(mx.random.key(9), a32(w), (0.0, 1.0), (0.5, 0.4), (2.0,), shape=(n,)))

    def cdf(t: np.ndarray) -> np.ndarray:
        return (
            w[0] * stats.norm(0, 1).cdf(t)
            + w[1] * stats.lognorm(0.4, scale=math.exp(0.5)).cdf(t)
            + w[2] * stats.expon(scale=0.5).cdf(t)
        )

    assert stats.kstest(x, cdf).pvalue > 1e-4
    # batched parameters of one component broadcast with the others
    s = mix.sample(mx.random.key(0), a32(w), (mx.zeros(4), 1.0), (0.5, 0.4), (2.0,), shape=(2,))
    assert s.shape == (2, 4)
    assert mix.log_prob(s, a32(w), (mx.zeros(4), 1.0), (0.5, 0.4), (2.0,)).shape == (2, 4)
    with pytest.raises(ValueError, match="parameter tuples"):
        mix.log_prob(0.0, a32(w), (0.0, 1.0), (0.5, 0.4))
    with pytest.raises(ValueError, match="trailing axis of size 3"):
        mix.log_prob(0.0, a32([0.5, 0.5]), (0.0, 1.0), (0.5, 0.4), (2.0,))
    with pytest.raises(ValueError, match="event_ndim"):
        mixture([normal, mv_normal])


# ======================================================================= product / iid
def test_product() -> None:
    d = product(normal, expo)
    assert d.event_ndim == 1 and d.has_reparam
    params = ((a32([0.0, 1.0, 2.0]), 1.0), (2.0,))
    key = mx.random.key(0)
    assert d.sample(key, *params).shape == (3, 2)
    assert d.sample(key, *params, shape=(4,)).shape == (4, 3, 2)
    x = a32([[0.5, 0.1], [1.0, 2.0], [-1.0, 0.3]])
    got = npf(d.log_prob(x, *params))
    want = stats.norm([0.0, 1.0, 2.0], 1.0).logpdf(npf(x[:, 0])) + stats.expon(scale=0.5).logpdf(
        npf(x[:, 1])
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert float(d.log_prob(a32([0.0, -1.0]), (0.0, 1.0), (2.0,))) == -math.inf
    # each batch element draws its own exponential (no sharing through broadcasting)
    n = 4000
    s = npf(d.sample(mx.random.key(1), *params, shape=(n,)))
    assert abs(np.corrcoef(s[:, 0, 1], s[:, 1, 1])[0, 1]) < 5 / math.sqrt(n)
    assert stats.kstest(s[:, 2, 1], stats.expon(scale=0.5).cdf).pvalue > 1e-4
    assert stats.kstest(s[:, 2, 0], stats.norm(2.0, 1.0).cdf).pvalue > 1e-4
    # the reparameterised sample carries gradients to every component's parameters
    g = mx.grad(lambda m: mx.sum(d.reparam_sample(key, (m, 1.0), (2.0,))))(mx.array(0.5))
    assert float(g) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="parameter tuples"):
        d.log_prob(x, (0.0, 1.0))
    with pytest.raises(ValueError, match="event_ndim"):
        product(normal, mv_normal)
    # mixed dtypes promote; vector components stack on a new axis
    db = product(normal, bernoulli)
    assert db.sample(key, (0.0, 1.0), (0.3,)).dtype == mx.float32
    dm = product(mv_normal, mv_normal)
    v = dm.sample(key, (mx.zeros(2), mx.eye(2)), (mx.ones(2), 2 * mx.eye(2)), shape=(5,))
    assert v.shape == (5, 2, 2) and dm.event_ndim == 2
    lp = npf(dm.log_prob(v, (mx.zeros(2), mx.eye(2)), (mx.ones(2), 2 * mx.eye(2))))
    want = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(npf(v[:, 0])) + (
        stats.multivariate_normal(np.ones(2), 2 * np.eye(2)).logpdf(npf(v[:, 1]))
    )
    np.testing.assert_allclose(lp, want, rtol=1e-5, atol=1e-5)


def test_iid() -> None:
    d = iid(normal, 4)
    assert d.event_ndim == 1 and d.has_reparam
    key = mx.random.key(0)
    assert d.sample(key, 0.0, 1.0).shape == (4,)
    assert d.sample(key, a32([0.0, 5.0, 10.0]), 1.0, shape=(2,)).shape == (2, 3, 4)
    x = np.random.default_rng(0).normal(size=(3, 4))
    mu = np.array([0.0, 1.0, -1.0])
    got = npf(d.log_prob(a32(x), a32(mu), 2.0))
    want = stats.norm(mu[:, None], 2.0).logpdf(x).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # one vector value, a batch of parameters: broadcast
    got = npf(d.log_prob(a32(x[0]), a32(mu), 2.0))
    np.testing.assert_allclose(got, stats.norm(mu[:, None], 2.0).logpdf(x[0]).sum(-1), 1e-5)
    s = npf(d.sample(mx.random.key(2), a32([0.0, 5.0]), 1.0, shape=(5000,)))
    assert stats.kstest(s[:, 1, :].ravel() - 5.0, "norm").pvalue > 1e-4
    assert abs(np.corrcoef(s[:, 0, 0], s[:, 0, 3])[0, 1]) < 5 / math.sqrt(5000)
    with pytest.raises(ValueError, match="size 4"):
        d.log_prob(mx.zeros(3), 0.0, 1.0)
    with pytest.raises(ValueError, match="positive int"):
        iid(normal, 0)
    dm = iid(mv_normal, 3)
    v = dm.sample(key, mx.zeros(2), mx.eye(2), shape=(2,))
    assert v.shape == (2, 3, 2) and dm.event_ndim == 2
    lp = npf(dm.log_prob(v, mx.zeros(2), mx.eye(2)))
    want = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(npf(v)).sum(-1)
    np.testing.assert_allclose(lp, want, rtol=1e-5, atol=1e-5)


def test_declared_param_event_ndims() -> None:
    # the component axis counts as an event axis of each mixture parameter
    assert mixture(normal).param_event_ndims == (1, 1, 1)
    assert mixture(mv_normal).param_event_ndims == (1, 2, 3)
    assert mixture(categorical).param_event_ndims == (1, 2)
    assert iid(mv_normal, 2).param_event_ndims == (1, 2)
    assert transformed(normal, exp_bijector).param_event_ndims == (0, 0)
    assert not hasattr(product(normal, normal), "param_event_ndims")  # tuple parameters


def test_nested_constructors_broadcast_their_parameters() -> None:
    mix = mixture(normal)
    wb = a32([[0.3, 0.7], [0.9, 0.1], [0.5, 0.5]])  # batch 3, K = 2
    # iid of a mixture: the batch shape comes from the mixture's own hook
    d = iid(mix, 4)
    x = d.sample(mx.random.key(0), wb, a32(MU), a32(SD), shape=(2,))
    assert x.shape == (2, 3, 4)
    lp = npf(d.log_prob(x[0, 0], wb, a32(MU), a32(SD)))  # one vector vs 3 batch elements
    want = [mix_np(npf(x[0, 0]), npf(wb[i]), MU, SD).sum() for i in range(3)]
    np.testing.assert_allclose(lp, want, rtol=1e-5, atol=1e-5)
    # a product whose first part is batched through the mixture's weights only: the
    # second part must still draw independently for each batch element
    pr = product(mix, normal)
    s = npf(pr.sample(mx.random.key(1), (wb, a32(MU), a32(SD)), (0.0, 1.0), shape=(3000,)))
    assert s.shape == (3000, 3, 2)
    assert abs(np.corrcoef(s[:, 0, 1], s[:, 1, 1])[0, 1]) < 5 / math.sqrt(3000)
    check_gfi_laws(pr, ((wb, a32(MU), a32(SD)), (0.0, 1.0)), max_examples=2)
    # a mixture of iid vectors, and a mixture of products (tuple parameters)
    mi = mixture(iid(normal, 2))
    v = mi.sample(mx.random.key(2), a32(W), a32(MU), a32(SD), shape=(5,))
    assert v.shape == (5, 2)
    got = npf(mi.log_prob(v, a32(W), a32(MU), a32(SD)))
    vv = npf(v)
    want = np.log(sum(W[k] * stats.norm(MU[k], SD[k]).pdf(vv).prod(-1) for k in range(2)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    mp = mixture([product(normal, normal), product(expo, expo)])
    s = mp.sample(
        mx.random.key(3), a32(W), ((0.0, 1.0), (a32([1.0, 2.0, 3.0]), 1.0)), ((1.0,), (2.0,))
    )
    assert s.shape == (3, 2)
    check_gfi_laws(mp, (a32(W), ((0.0, 1.0), (0.0, 1.0)), ((1.0,), (2.0,))), max_examples=2)


# ======================================================================= transformed
def test_transformed_exp_is_log_normal() -> None:
    ln = transformed(normal, exp_bijector)
    ys = np.array([0.05, 0.5, 1.0, 2.0, 7.5])
    for mu, sigma in ((0.0, 1.0), (1.2, 0.3), (-0.5, 2.0)):
        got = npf(ln.log_prob(a32(ys), mu, sigma))
        want = stats.lognorm(sigma, scale=math.exp(mu)).logpdf(ys)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        got, npf(log_normal.log_prob(a32(ys), -0.5, 2.0)), rtol=1e-5, atol=1e-5
    )
    for y in (0.0, -1.0):
        assert float(ln.log_prob(y, 0.0, 1.0)) == -math.inf
        assert no_nan(mx.grad(lambda y_: ln.log_prob(y_, 0.0, 1.0))(mx.array(y)))
    s = npf(ln.sample(mx.random.key(0), 0.3, 0.5, shape=(20000,)))
    assert stats.kstest(s, stats.lognorm(0.5, scale=math.exp(0.3)).cdf).pvalue > 1e-4
    assert ln.has_reparam


def test_transformed_affine_is_normal() -> None:
    for loc, scale in ((1.0, 2.0), (-3.0, -0.5)):
        d = transformed(normal, affine(loc, scale))
        xs = np.linspace(-5, 5, 11)
        got = npf(d.log_prob(a32(xs), 0.5, 1.5))
        want = stats.norm(loc + scale * 0.5, abs(scale) * 1.5).logpdf(xs)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # gradients w.r.t. the value and the base parameters
        gy, gm = mx.grad(lambda y, m, d_=d: d_.log_prob(y, m, 1.5), argnums=(0, 1))(
            mx.array(0.7), mx.array(0.5)
        )
        mu_y, sd_y = loc + scale * 0.5, abs(scale) * 1.5
        assert float(gy) == pytest.approx(-(0.7 - mu_y) / sd_y**2, rel=1e-5)
        assert float(gm) == pytest.approx((0.7 - mu_y) / sd_y**2 * scale, rel=1e-5)
    # array loc / scale broadcast
    d = transformed(normal, affine(a32([0.0, 1.0]), a32([1.0, 3.0])))
    assert d.log_prob(0.5, 0.0, 1.0).shape == (2,)
    with pytest.raises(ValueError, match="non-zero"):
        affine(0.0, 0.0)


def test_sigmoid_bijector_is_logit_normal() -> None:
    d = transformed(normal, sigmoid_bijector)
    ys = np.array([0.01, 0.2, 0.5, 0.9, 0.999])
    logit = np.log(ys) - np.log1p(-ys)
    want = stats.norm(0.3, 1.2).logpdf(logit) - np.log(ys) - np.log1p(-ys)
    np.testing.assert_allclose(npf(d.log_prob(a32(ys), 0.3, 1.2)), want, rtol=1e-5, atol=2e-5)
    for y in (0.0, 1.0, -0.5, 1.5):
        assert float(d.log_prob(y, 0.3, 1.2)) == -math.inf
        assert no_nan(mx.grad(lambda y_: d.log_prob(y_, 0.3, 1.2))(mx.array(y)))


def test_bijector_from_functions_has_automatic_jacobian() -> None:
    auto_exp = Bijector.from_functions(mx.exp, mx.log, in_image=lambda y: y > 0, name="exp2")
    x = a32([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(npf(auto_exp.log_abs_det_jacobian(x)), npf(x), rtol=1e-6, atol=1e-7)
    d_auto = transformed(normal, auto_exp)
    d_ref = transformed(normal, exp_bijector)
    ys = a32([0.3, 1.0, 4.0])
    np.testing.assert_allclose(
        npf(d_auto.log_prob(ys, 0.2, 0.8)), npf(d_ref.log_prob(ys, 0.2, 0.8)), rtol=1e-6
    )
    # gradients through the automatic Jacobian (a second derivative of the map)
    g1 = mx.grad(lambda y: mx.sum(d_auto.log_prob(y, 0.2, 0.8)))(ys)
    g2 = mx.grad(lambda y: mx.sum(d_ref.log_prob(y, 0.2, 0.8)))(ys)
    np.testing.assert_allclose(npf(g1), npf(g2), rtol=1e-5)
    # a non-trivial elementwise map: y = x^3 + x (f' = 3x^2 + 1)
    cube = Bijector(lambda t: t**3 + t, None)
    np.testing.assert_allclose(
        npf(cube.log_abs_det_jacobian(x)), np.log(3 * npf(x) ** 2 + 1), rtol=1e-6
    )
    with pytest.raises(TypeError, match="no inverse"):
        cube.inverse(x)
    # finite-difference check of d/dy log p_Y(y) for the sinh bijector
    sinh = Bijector.from_functions(
        lambda t: 0.5 * (mx.exp(t) - mx.exp(-t)), lambda y: mx.log(y + mx.sqrt(y * y + 1))
    )
    d = transformed(normal, sinh)

    def ref(y: float) -> float:
        x_ = math.asinh(y)
        return float(stats.norm(0.1, 0.7).logpdf(x_) - math.log(math.cosh(x_)))

    for y in (-2.0, 0.3, 1.7):
        assert float(d.log_prob(y, 0.1, 0.7)) == pytest.approx(ref(y), rel=1e-5, abs=1e-5)
        h = 1e-5
        fd = (ref(y + h) - ref(y - h)) / (2 * h)
        g = mx.grad(lambda y_: d.log_prob(y_, 0.1, 0.7))(mx.array(y))
        assert float(g) == pytest.approx(fd, rel=1e-4, abs=1e-5)


def test_transformed_vector_base_sums_jacobian_over_event() -> None:
    d = transformed(mv_normal, exp_bijector)
    assert d.event_ndim == 1
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    y = np.array([[0.5, 2.0], [1.0, 1.0]])
    got = npf(d.log_prob(a32(y), mx.zeros(2), a32(cov)))
    want = stats.multivariate_normal(np.zeros(2), cov).logpdf(np.log(y)) - np.log(y).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    out = npf(d.log_prob(a32([[0.5, -2.0]]), mx.zeros(2), a32(cov)))
    assert out.shape == (1,) and out[0] == -np.inf


def test_transformed_rejects_discrete_base() -> None:
    with pytest.raises(TypeError, match="discrete"):
        transformed(bernoulli, exp_bijector)


# ======================================================================= from_functions
def test_from_functions() -> None:
    assert expo.name == "my_exponential" and expo.has_reparam and not expo.is_enumerable
    xs = np.array([0.1, 1.0, 3.0])
    np.testing.assert_allclose(
        npf(expo.log_prob(a32(xs), 2.0)), stats.expon(scale=0.5).logpdf(xs), rtol=1e-6
    )
    s = npf(expo.sample(mx.random.key(0), 2.0, shape=(20000,)))
    assert stats.kstest(s, stats.expon(scale=0.5).cdf).pvalue > 1e-4
    g = mx.grad(lambda r: mx.sum(expo.reparam_sample(mx.random.key(0), r, shape=(3,))))(
        mx.array(2.0)
    )
    assert np.isfinite(float(g))
    coin = from_functions(
        lambda key, p, shape=(): mx.random.uniform(shape=tuple(shape), key=key) < p,
        lambda v, p: mx.where(mx.array(v), mx.log(mx.array(p)), mx.log1p(-mx.array(p))),
        name="coin",
        is_discrete=True,
        support=lambda p: mx.array([False, True]),
    )
    assert coin.is_enumerable and coin.is_discrete and coin.support(0.3).shape == (2,)
    with pytest.raises(TypeError, match="reparameterised"):
        coin.reparam_sample(mx.random.key(0), 0.3)
    check_gfi_laws(coin, (0.3,), max_examples=2)
    with pytest.raises(TypeError, match="callables"):
        from_functions(None, None)  # type: ignore[arg-type]


# ======================================================================= conformance
MIX_W = a32([0.3, 0.7])
CASES: list[tuple[str, Distribution, tuple[Any, ...]]] = [
    ("mixture", mixture(normal), (MIX_W, a32(MU), a32(SD))),
    ("mixture-batched", mixture(normal), (a32([[0.3, 0.7], [0.9, 0.1]]), a32(MU), 1.0)),
    ("mixture-mv", mixture(mv_normal), (MIX_W, a32([[0.0, 0.0], [2.0, 1.0]]), mx.eye(2))),
    ("mixture-het", mixture([normal, expo]), (MIX_W, (0.0, 1.0), (a32([1.0, 2.0]),))),
    ("product", product(normal, expo), ((a32([0.0, 1.0]), 1.0), (2.0,))),
    ("iid", iid(normal, 3), (a32([0.0, 1.0]), 0.5)),
    ("iid-mv", iid(mv_normal, 2), (mx.zeros(2), mx.eye(2))),
    ("transformed", transformed(normal, exp_bijector), (0.0, 1.0)),
    ("transformed-sigmoid", transformed(normal, sigmoid_bijector), (a32([0.0, 2.0]), 1.0)),
    ("from_functions", expo, (a32([0.5, 3.0]),)),
]


@pytest.mark.parametrize("name,d,params", CASES, ids=[c[0] for c in CASES])
def test_gfi_laws(name: str, d: Distribution, params: tuple[Any, ...]) -> None:
    check_gfi_laws(d, params, max_examples=3)


@pytest.mark.parametrize("name,d,params", CASES, ids=[c[0] for c in CASES])
def test_sampling_under_vmap_and_compile(
    name: str, d: Distribution, params: tuple[Any, ...]
) -> None:
    keys = mx.random.split(mx.random.key(0), 3)
    out = mx.vmap(lambda k: d.sample(k, *params))(keys)
    assert out.shape[0] == 3 and no_nan(out)
    for i in range(3):
        np.testing.assert_allclose(
            npf(out[i]), npf(d.sample(keys[i], *params)), rtol=1e-5, atol=1e-6
        )
    c = mx.compile(lambda k: d.sample(k, *params, shape=(2,)))(keys[0])
    np.testing.assert_allclose(
        npf(c), npf(d.sample(keys[0], *params, shape=(2,))), rtol=1e-5, atol=1e-6
    )
    lp = d.log_prob(c, *params)
    assert np.all(np.isfinite(npf(lp)))
