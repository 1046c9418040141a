"""``fit`` picks each method on a model made for it, says why, and returns one result
type whose evidence and draws are right (exact values where the method is exact)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import special, stats

from genmlx.combinators import Switch, Unfold
from genmlx.core import choicemap, gen
from genmlx.dists import bernoulli, beta, categorical, half_normal, normal, poisson
from genmlx.infer import FitResult, fit


@gen
def sprinkler():
    rain = bernoulli(0.2) @ "rain"
    s = bernoulli(mx.where(rain, 0.01, 0.4)) @ "sprinkler"
    bernoulli(mx.where(rain, mx.where(s, 0.99, 0.8), mx.where(s, 0.9, 0.0))) @ "wet"


@gen
def coin():
    p = beta(1.0, 1.0) @ "p"
    bernoulli(mx.full((4,), p)) @ "flips"


@gen
def lg_step(t, x):
    x = normal(0.9 * x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


TRN = mx.array([[0.9, 0.1], [0.2, 0.8]])


@gen
def hmm_step(t, z):
    z = categorical(TRN[z]) @ "z"
    normal(mx.where(z == 1, 2.0, 0.0), 1.0) @ "y"
    return z


@gen
def regression(xs):
    sigma = half_normal(1.0) @ "sigma"
    w = normal(0.0, 1.0) @ "w"
    normal(w * xs, sigma) @ "ys"


@gen
def nonlinear_step(t, x):
    x = normal(mx.sin(x), 0.5) @ "x"
    poisson(mx.exp(x)) @ "y"
    return x


@gen
def wide(n):
    s = half_normal(1.0) @ "s"
    z = normal(mx.zeros(n), s) @ "z"
    normal(z, 1.0) @ "y"


@gen
def small_branch():
    return normal(0.0, 1.0) @ "x"


@gen
def big_branch():
    return normal(0.0, 3.0) @ "x"


BRANCHES = Switch(small_branch, big_branch)


@gen
def dynamic():
    k = bernoulli(0.5) @ "k"
    x = BRANCHES(k.astype(mx.int32)) @ "branch"  # a random branch: a dynamic structure
    normal(x, 1.0) @ "y"


def _check(res: FitResult, method: str) -> None:
    assert isinstance(res, FitResult) and res.method == method, (res.method, res.reason)
    assert res.reason and method not in ("", None)
    table = res.summary(200, key=mx.random.key(9))
    assert len(table) >= 1


def test_enumeration_is_chosen_for_a_finite_model():
    res = fit(sprinkler, (), {"wet": True})
    _check(res, "enumeration")
    assert res.exact and res.log_ml_kind == "exact"
    assert float(mx.exp(res.log_ml)) == pytest.approx(0.4484, abs=1e-4)
    assert "finite support" in res.reason
    draws = res.samples(4000, key=mx.random.key(0))
    assert abs(float(mx.mean(draws["rain"].astype(mx.float32))) - 0.3577) < 5 * math.sqrt(
        0.23 / 4000
    )


def test_conjugate_is_chosen_for_a_conjugate_model():
    flips = mx.array([True, True, False, True])
    res = fit(coin, (), {"flips": flips})
    _check(res, "conjugate")
    assert float(res.log_ml) == pytest.approx(special.betaln(4, 2) - special.betaln(1, 1), abs=1e-4)
    assert res.marginalized == {"p": "beta–bernoulli (children: flips)"}
    assert ("enumeration", "continuous or unbounded latent choices: 'p'") in res.considered
    # the caller overrides: importance sampling estimates the same evidence
    est = fit(
        coin, (), {"flips": flips}, method="importance", n_particles=20000, key=mx.random.key(1)
    )
    assert est.method == "importance" and est.log_ml_kind == "estimate"
    assert est.reason == "chosen by the caller (method=...)"
    assert float(est.log_ml) == pytest.approx(float(res.log_ml), abs=0.02)


def test_kalman_and_hmm_are_chosen_for_sequence_models():
    obs = choicemap({(t, "y"): 0.5 * t for t in range(5)})
    res = fit(Unfold(lg_step), (5, mx.array(0.0)), obs)
    _check(res, "kalman")
    assert res.exact and res.samples(10, key=mx.random.key(0))["x"].shape == (10, 5)
    obs2 = choicemap({(t, "y"): 2.0 * (t % 2) for t in range(5)})
    res2 = fit(Unfold(hmm_step), (5, mx.array(0)), obs2)
    _check(res2, "hmm")
    assert res2.log_ml_kind == "exact"
    assert [m for m, _ in res.considered] == ["hmm"]


def test_nuts_is_chosen_for_a_small_continuous_model():
    xs = mx.arange(5, dtype=mx.float32)
    ys = mx.array([0.1, 0.9, 2.2, 2.8, 4.1])
    res = fit(
        regression, (xs,), {"ys": ys}, n_chains=2, n_warmup=200, n_samples=200, key=mx.random.key(0)
    )
    _check(res, "nuts")
    assert res.log_ml is None and res.log_ml_kind is None and not res.exact
    assert "2 continuous" in res.reason
    w = res.samples(400, key=mx.random.key(1))["w"]
    assert float(mx.mean(w)) == pytest.approx(1.0, abs=0.1)


def test_vi_is_chosen_for_a_large_continuous_model():
    n = 300
    y = mx.random.normal((n,), key=mx.random.key(0))
    res = fit(wide, (n,), {"y": y}, n_steps=300, key=mx.random.key(1))
    _check(res, "vi")
    assert res.log_ml_kind == "lower_bound"
    assert "nuts" in dict(res.considered)


def test_smc_for_a_nonlinear_sequence_and_importance_for_a_dynamic_model():
    obs = choicemap({(t, "y"): t for t in range(4)})
    res = fit(
        Unfold(nonlinear_step), (4, mx.array(0.0)), obs, n_particles=500, key=mx.random.key(0)
    )
    _check(res, "smc")
    assert res.log_ml_kind == "estimate" and np.isfinite(float(res.log_ml))
    res2 = fit(dynamic, (), {"y": 1.0}, n_particles=20000, key=mx.random.key(1))
    _check(res2, "importance")
    assert "dynamic" in res2.reason
    z = 0.5 * stats.norm.pdf(1.0, 0, math.sqrt(2)) + 0.5 * stats.norm.pdf(1.0, 0, math.sqrt(10))
    assert float(res2.log_ml) == pytest.approx(math.log(z), abs=0.03)


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        fit(coin, (), {}, method="magic")
    with pytest.raises(ValueError, match="unknown option"):
        fit(coin, (), {}, n_chain=3)


def test_exact_evidence_of_the_sequence_models():
    obs = choicemap({(t, "y"): 0.5 * t for t in range(5)})
    res = fit(Unfold(lg_step), (5, mx.array(0.0)), obs)
    A = np.array([[0.9 ** (t - s) if s <= t else 0.0 for s in range(5)] for t in range(5)])
    cov = A @ A.T + 0.25 * np.eye(5)
    ys = 0.5 * np.arange(5)
    assert float(res.log_ml) == pytest.approx(
        stats.multivariate_normal.logpdf(ys, np.zeros(5), cov), abs=1e-3
    )


def test_batched_observations_give_one_answer_per_data_set():
    flips = mx.array([[True, True, False, True], [False, False, False, True]])
    res = fit(coin, (), choicemap({"flips": flips}).with_batch_shape((2,)))
    assert res.method == "conjugate" and res.log_ml.shape == (2,)
    for b, h in ((0, 3), (1, 1)):
        assert float(res.log_ml[b]) == pytest.approx(special.betaln(1 + h, 1 + 4 - h), abs=1e-4)
    draws = res.samples(4000, key=mx.random.key(0))["p"]
    assert draws.shape == (2, 4000)
    for b, h in ((0, 3), (1, 1)):
        mean = (1 + h) / 6
        assert abs(float(mx.mean(draws[b])) - mean) < 5 * math.sqrt(mean * (1 - mean) / 7 / 4000)
    with pytest.raises(ValueError, match="data sets"):
        res.summary()
    wet = choicemap({"wet": mx.array([True, False])}).with_batch_shape((2,))
    res2 = fit(sprinkler, (), wet)
    assert res2.method == "enumeration"
    assert float(mx.exp(res2.log_ml[0]) + mx.exp(res2.log_ml[1])) == pytest.approx(1.0, abs=1e-5)
