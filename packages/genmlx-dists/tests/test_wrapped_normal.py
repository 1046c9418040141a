"""wrapped_normal: density against a long direct wrap sum, sampler, gradients, laws."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.core.testing import check_gfi_laws
from genmlx.dists.continuous import wrapped_normal


def reference(x: float, mu: float, sigma: float) -> float:
    from scipy.special import logsumexp

    ks = np.arange(-60, 61)
    return float(logsumexp(stats.norm.logpdf(x + 2 * np.pi * ks, mu, sigma)))


@pytest.mark.parametrize("sigma", [0.05, 0.5, 1.0, 1.999, 2.001, 3.0, 10.0])
@pytest.mark.parametrize("mu", [-3.0, 0.0, 1.3, 7.0])
def test_log_prob_matches_the_wrap_sum(mu: float, sigma: float) -> None:
    xs = np.linspace(-math.pi, math.pi, 13)
    got = np.asarray(wrapped_normal.log_prob(mx.array(xs, dtype=mx.float32), mu, sigma))
    ref = np.array([reference(float(x), mu, sigma) for x in np.float32(xs)])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-5)


def test_both_branches_agree_at_the_switch() -> None:
    # at sigma = 2 the wrap sum and the Fourier series are both converged
    x = mx.linspace(-3.0, 3.0, 7)
    a = wrapped_normal.log_prob(x, 0.4, 1.99999)
    b = wrapped_normal.log_prob(x, 0.4, 2.0)
    assert mx.allclose(a, b, atol=1e-5).item()


def test_outside_support_and_invalid() -> None:
    assert float(wrapped_normal.log_prob(3.2, 0.0, 1.0)) == -math.inf
    assert float(wrapped_normal.log_prob(0.0, 0.0, mx.array(-1.0))) == -math.inf
    with pytest.raises(ValueError, match="sigma"):
        wrapped_normal.log_prob(0.0, 0.0, -1.0)
    g = mx.grad(lambda s: wrapped_normal.log_prob(0.0, 0.0, s))(mx.array(-1.0))
    assert not math.isnan(float(g))


def test_sampler_goodness_of_fit() -> None:
    mu, sigma, n = 2.5, 1.2, 20000
    xs = np.asarray(wrapped_normal.sample(mx.random.key(3), mu, sigma, shape=(n,)), np.float64)
    assert xs.min() >= -math.pi and xs.max() < math.pi
    grid = np.linspace(-math.pi, math.pi, 4001)
    pdf = np.exp([reference(float(g), mu, sigma) for g in grid])
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    p = stats.kstest(xs, lambda v: np.interp(v, grid, cdf)).pvalue
    assert p > 1e-4


def test_gradients_against_finite_differences() -> None:
    h = 1e-3
    for x, mu, sigma in [(1.0, 0.0, 1.0), (-2.5, 2.0, 0.7), (0.3, 0.1, 3.0)]:
        for i in range(3):
            args = [x, mu, sigma]
            g = mx.grad(lambda *a: wrapped_normal.log_prob(*a), argnums=i)(
                *[mx.array(v) for v in args]
            )
            up, dn = list(args), list(args)
            up[i] += h
            dn[i] -= h
            fd = (reference(*up) - reference(*dn)) / (2 * h)
            assert float(g) == pytest.approx(fd, abs=2e-3)


def test_shapes_and_laws() -> None:
    mu = mx.array([-3.0, 0.0, 3.0])
    sigma = mx.array([0.3, 1.5, 3.0])
    assert wrapped_normal.sample(mx.random.key(0), mu, sigma, shape=(5,)).shape == (5, 3)
    check_gfi_laws(wrapped_normal, (mu, sigma), max_examples=2)
    check_gfi_laws(wrapped_normal, (0.5, 0.8), max_examples=2)
