"""Importance sampling and SIR on the normal–normal conjugate model.

Model: ``mu ~ N(0, 1)``, ``y_i ~ N(mu, 0.5)`` for 5 observations. Exact:
posterior ``mu | y ~ N(m, v)`` with ``1/v = 1 + 5/0.25``, ``m = v·Σy/0.25``; marginal
``y ~ N(0, 0.25·I + 1·1ᵀ)``. Bounds are 5 Monte-Carlo standard errors computed from the
weights (delta method), with fixed seeds.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import ConstraintError, choicemap, gen
from genmlx.dists import normal
from genmlx.infer.importance import ISResult, importance_resampling, importance_sampling

YS = [0.3, 1.1, 0.7, 1.5, 0.9]
SIGMA = 0.5
POST_VAR = 1.0 / (1.0 + len(YS) / SIGMA**2)
POST_MEAN = POST_VAR * sum(YS) / SIGMA**2


def _exact_log_ml() -> float:
    y = np.array(YS, dtype=np.float64)
    cov = SIGMA**2 * np.eye(len(y)) + np.ones((len(y), len(y)))
    _, logdet = np.linalg.slogdet(cov)
    quad = y @ np.linalg.solve(cov, y)
    return float(-0.5 * (len(y) * math.log(2 * math.pi) + logdet + quad))


LOG_ML = _exact_log_ml()


@gen
def model() -> None:
    mu = normal(0.0, 1.0) @ "mu"
    for i in range(len(YS)):
        normal(mu, SIGMA) @ ("y", i)


OBS = choicemap({("y", i): v for i, v in enumerate(YS)})


@gen
def gauss_proposal(m: mx.array, s: mx.array) -> None:
    normal(m, s) @ "mu"


def _log_ml_se(log_w: mx.array) -> float:
    """Delta-method SE of log(mean W) from normalised log weights."""
    w = np.exp(np.array(log_w, dtype=np.float64))
    n = w.size
    return math.sqrt(max(n * float(np.sum(w**2)) - 1.0, 0.0) / n)


def test_result_shape_and_normalisation() -> None:
    res = importance_sampling(model, (), OBS, 500, key=mx.random.key(0))
    assert isinstance(res, ISResult)
    assert res.traces.batch_shape == (500,)
    assert res.log_weights.shape == (500,)
    assert res.log_ml_estimate.shape == ()
    assert abs(float(mx.logsumexp(res.log_weights).item())) < 1e-5
    # observations are in every particle
    assert bool(mx.all(res.traces[("y", 2)] == YS[2]).item())
    # prior proposal: the raw weight is Σ log p(y_i | mu)
    mu = res.traces["mu"]
    raw = sum(normal.log_prob(mx.array(v), mu, SIGMA) for v in YS)
    expect = raw - mx.logsumexp(raw)
    assert mx.allclose(res.log_weights, expect, atol=1e-4)


def test_same_key_same_result() -> None:
    a = importance_sampling(model, (), OBS, 100, key=mx.random.key(3))
    b = importance_sampling(model, (), OBS, 100, key=mx.random.key(3))
    assert mx.array_equal(a.log_weights, b.log_weights)
    assert mx.array_equal(a.traces["mu"], b.traces["mu"])


def test_log_ml_prior_proposal_within_5_se() -> None:
    res = importance_sampling(model, (), OBS, 20000, key=mx.random.key(1))
    est = float(res.log_ml_estimate.item())
    se = _log_ml_se(res.log_weights)
    assert 0 < se < 0.1
    assert abs(est - LOG_ML) < 5 * se, (est, LOG_ML, se)


def test_posterior_mean_via_weights_within_5_se() -> None:
    res = importance_sampling(model, (), OBS, 20000, key=mx.random.key(2))
    w = np.exp(np.array(res.log_weights, dtype=np.float64))
    mu = np.array(res.traces["mu"], dtype=np.float64)
    mean = float(np.sum(w * mu))
    se = math.sqrt(float(np.sum(w**2 * (mu - mean) ** 2)))
    assert abs(mean - POST_MEAN) < 5 * se, (mean, POST_MEAN, se)
    var = float(np.sum(w * (mu - mean) ** 2))
    assert abs(var - POST_VAR) < 0.2 * POST_VAR


def test_exact_posterior_proposal_gives_constant_weights() -> None:
    # q = p(mu | y)  =>  p(mu, y) / q(mu) = p(y) for every particle
    n = 256
    res = importance_sampling(
        model,
        (),
        OBS,
        n,
        gauss_proposal,
        (mx.array(POST_MEAN), mx.array(math.sqrt(POST_VAR))),
        key=mx.random.key(4),
    )
    raw = res.log_weights + res.log_ml_estimate + math.log(n)
    assert mx.allclose(raw, mx.full((n,), LOG_ML), atol=1e-4)
    assert abs(float(res.log_ml_estimate.item()) - LOG_ML) < 1e-4
    assert mx.allclose(res.log_weights, mx.full((n,), -math.log(n)), atol=1e-4)


def test_custom_proposal_log_ml_within_5_se() -> None:
    res = importance_sampling(
        model, (), OBS, 20000, gauss_proposal, (0.5, 0.6), key=mx.random.key(5)
    )
    # raw weight = log p(mu, y) - log q(mu)
    mu = res.traces["mu"]
    log_joint = normal.log_prob(mu, 0.0, 1.0) + sum(
        normal.log_prob(mx.array(v), mu, SIGMA) for v in YS
    )
    raw = log_joint - normal.log_prob(mu, 0.5, 0.6)
    assert mx.allclose(res.log_weights, raw - mx.logsumexp(raw), atol=1e-4)
    est = float(res.log_ml_estimate.item())
    se = _log_ml_se(res.log_weights)
    assert abs(est - LOG_ML) < 5 * se, (est, LOG_ML, se)


def test_partial_proposal_other_latents_from_prior() -> None:
    # the proposal proposes "a" only; "b" comes from the model and its density cancels
    @gen
    def two() -> None:
        a = normal(0.0, 1.0) @ "a"
        b = normal(0.0, 1.0) @ "b"
        normal(a + b, 1.0) @ "y"

    @gen
    def prop_a() -> None:
        normal(0.3, 0.8) @ "a"

    res = importance_sampling(two, (), {"y": 1.0}, 20000, prop_a, key=mx.random.key(6))
    exact = float(normal.log_prob(mx.array(1.0), 0.0, math.sqrt(3.0)).item())
    se = _log_ml_se(res.log_weights)
    assert abs(float(res.log_ml_estimate.item()) - exact) < 5 * se


def test_importance_resampling_single_and_many() -> None:
    tr = importance_resampling(model, (), OBS, 1000, key=mx.random.key(7))
    assert tr.batch_shape == ()
    assert tr["mu"].shape == ()
    assert float(tr[("y", 0)].item()) == pytest.approx(YS[0])
    k = 4000
    trs = importance_resampling(model, (), OBS, 20000, key=mx.random.key(8), n_samples=k)
    assert trs.batch_shape == (k,)
    mu = np.array(trs["mu"], dtype=np.float64)
    # resampled traces keep their own scores
    score = normal.log_prob(trs["mu"], 0.0, 1.0) + sum(
        normal.log_prob(mx.array(v), trs["mu"], SIGMA) for v in YS
    )
    assert mx.allclose(trs.score, score, atol=1e-4)
    se = math.sqrt(POST_VAR / k + POST_VAR / 1000)  # draw noise + IS noise (ESS ≳ 1000)
    assert abs(mu.mean() - POST_MEAN) < 5 * se


def test_resampling_with_proposal() -> None:
    tr = importance_resampling(
        model,
        (),
        OBS,
        50,
        key=mx.random.key(9),
        proposal=gauss_proposal,
        proposal_args=(mx.array(POST_MEAN), mx.array(math.sqrt(POST_VAR))),
        n_samples=3,
    )
    assert tr.batch_shape == (3,)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10"])
def test_bad_particle_count(n: object) -> None:
    with pytest.raises(ValueError, match="n_particles"):
        importance_sampling(model, (), OBS, n, key=mx.random.key(0))  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    key = mx.random.key(0)
    with pytest.raises(TypeError, match="observations"):
        importance_sampling(model, (), [1.0, 2.0], 10, key=key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="proposal"):
        importance_sampling(model, (), OBS, 10, proposal=lambda: None, key=key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        importance_sampling(lambda: None, (), OBS, 10, key=key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="args"):
        importance_sampling(model, None, OBS, 10, key=key)  # type: ignore[arg-type]
    batched = choicemap({"mu": mx.zeros((10,))}, batch_shape=(10,))
    with pytest.raises(ValueError, match="unbatched"):
        importance_sampling(model, (), batched, 10, key=key)
    with pytest.raises(ConstraintError):
        importance_sampling(model, (), {"nope": 1.0}, 10, key=key)
    with pytest.raises(ValueError, match="n_samples"):
        importance_resampling(model, (), OBS, 10, key=key, n_samples=0)
