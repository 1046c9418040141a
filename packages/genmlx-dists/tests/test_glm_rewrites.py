"""The generalised-linear-predictor rewrite (genmlx.core.rewrites): logistic and Poisson
regressions scored from ``η = Φθ + c`` computed as one matrix product for all particles.

It equals the direct evaluation wherever the direct evaluation is finite; where a
probability ``σ(η)`` rounds to exactly 0 or 1 in float32 the direct evaluation gives
``-inf`` and the rewrite the exact (finite, very negative) value."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import analyze, choicemap, gen, logdensity, rewrites
from genmlx.dists import bernoulli, normal, poisson

RNG = np.random.default_rng(0)
X = mx.array(RNG.standard_normal((60, 4)).astype(np.float32))
Y = mx.array(RNG.uniform(size=60) < 0.5)
K = mx.array(RNG.poisson(2.0, size=60).astype(np.int32))


@gen
def logistic(x):
    w = normal(mx.zeros(4), 1.0) @ "w"
    b = normal(0.0, 1.0) @ "b"
    bernoulli(mx.sigmoid(x @ w + b)) @ "y"


@gen
def poisson_reg(x):
    w = normal(mx.zeros(4), 0.3) @ "w"
    poisson(mx.exp(x @ w + 0.5)) @ "k"


@gen
def not_linear(x):
    w = normal(mx.zeros(4), 1.0) @ "w"
    bernoulli(mx.sigmoid(mx.tanh(x @ w))) @ "y"


def _weights(model, obs, rw, n=400):
    analyze(model, (X,))
    with rewrites.enabled(rw):
        _, w = model.vgenerate((X,), obs, n, key=mx.random.key(3))
    return np.asarray(w, np.float64)


@pytest.mark.parametrize("model,obs", [(logistic, {"y": Y}), (poisson_reg, {"k": K})])
def test_rewritten_weights_equal_the_direct_ones(model, obs):
    obs = choicemap(obs)
    assert "generalised linear predictor" in repr(analyze(model, (X,), obs))
    direct, rewritten = _weights(model, obs, False), _weights(model, obs, True)
    finite = np.isfinite(direct)
    assert finite.sum() > 300
    np.testing.assert_allclose(rewritten[finite], direct[finite], rtol=1e-5, atol=2e-3)
    # saturated probabilities: the direct float32 evaluation says -inf, the rewrite is exact
    assert np.all(np.isfinite(rewritten))
    assert np.all(rewritten[~finite] < np.min(direct[finite]))


def test_nonlinear_predictor_is_not_rewritten():
    assert "rewrite" not in repr(analyze(not_linear, (X,), choicemap({"y": Y})))


def test_log_density_value_and_gradient():
    obs = choicemap({"y": Y})
    ld1 = logdensity(logistic, (X,), obs)
    with rewrites.enabled(False):
        ld0 = logdensity(logistic, (X,), obs)
        ys = 0.3 * mx.random.normal((7, 5), key=mx.random.key(4))
        v0, g0 = ld0.value_and_grad(ys)
    v1, g1 = ld1.value_and_grad(ys)
    np.testing.assert_allclose(np.asarray(v1), np.asarray(v0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-4, atol=1e-3)


def test_batched_linear_predictor_equals_per_execution():
    from genmlx.core.rewrites import linear_predictor

    phi = mx.random.normal((9, 3), key=mx.random.key(5))
    c = mx.random.normal((9,), key=mx.random.key(6))
    th = mx.random.normal((11, 3), key=mx.random.key(7))
    batched = mx.vmap(lambda t: linear_predictor(t, phi, c))(th)
    for i in range(11):
        np.testing.assert_allclose(
            np.asarray(batched[i]), np.asarray(phi @ th[i] + c), rtol=1e-5, atol=1e-5
        )
