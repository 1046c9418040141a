"""Conditional SMC, particle Gibbs and PMMH against exact answers.

* Conditional SMC: particle 0 is the reference trajectory, and its weight is the
  bootstrap weight ``log p(y_t | z_t)`` of that trajectory (computed in plain Python).
* Particle Gibbs on a 2-state HMM (T = 4) leaves the posterior invariant: the chain's
  estimates of ``P(z_t = 1 | y)`` match forward–backward (numpy, float64) within
  4 standard errors, the standard errors from batch means (20 batches, so the chain's
  autocorrelation is accounted for).
* PMMH on a linear-Gaussian model with unknown transition coefficient ``a`` (uniform
  prior on [-1, 1]): the chain's posterior mean of ``a`` matches the posterior mean
  computed on a fine grid with the Kalman filter's exact likelihood, within 4 batch-means
  standard errors.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators import Unfold
from genmlx.core import gen
from genmlx.dists import categorical, normal
from genmlx.infer import particle_filter
from genmlx.infer.pmcmc import conditional_smc, particle_gibbs, pmmh

TRANS = np.array([[0.85, 0.15], [0.25, 0.75]])
EMIT = np.array([[0.8, 0.2], [0.3, 0.7]])
YS = [0, 1, 1, 0]


@gen
def hmm_kernel(t: int, z: Any) -> Any:
    z = categorical(mx.array(TRANS.astype(np.float32))[z]) @ "z"
    categorical(mx.array(EMIT.astype(np.float32))[z]) @ "y"
    return z


HMM = Unfold(hmm_kernel)
Z0 = mx.array(0)  # the state before step 0
STEPS = [((t + 1, Z0), {(t, "y"): YS[t]}) for t in range(len(YS))]


def _posterior_marginals() -> np.ndarray:
    """P(z_t = 1 | y_{0:T-1}) by forward-backward, float64."""
    T = len(YS)
    alpha = np.zeros((T, 2))
    prev = np.eye(2)[0]
    for t in range(T):
        prev = (prev @ TRANS) * EMIT[:, YS[t]]
        alpha[t] = prev
    beta = np.ones((T, 2))
    for t in range(T - 2, -1, -1):
        beta[t] = TRANS @ (EMIT[:, YS[t + 1]] * beta[t + 1])
    post = alpha * beta
    return (post / post.sum(axis=1, keepdims=True))[:, 1]


def _batch_means_se(x: np.ndarray, batches: int = 20) -> float:
    m = len(x) // batches
    means = x[: m * batches].reshape(batches, m).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(batches))


def test_conditional_smc_keeps_the_reference_and_weighs_it_by_its_likelihood() -> None:
    ref, _ = HMM.generate((4, Z0), {(t, "y"): YS[t] for t in range(4)}, key=mx.random.key(3))
    st = conditional_smc(HMM, STEPS, 8, ref, key=mx.random.key(4))
    zs_ref = [int(ref[(t, "z")]) for t in range(4)]
    assert [int(st.traces[(t, "z")][0]) for t in range(4)] == zs_ref
    # particle 0's last weight: the bootstrap weight of the last step, log p(y_3 | z_3)
    assert float(st.log_weights[0]) == pytest.approx(math.log(EMIT[zs_ref[3], YS[3]]), abs=1e-5)
    # every other particle's weight is a bootstrap weight too: log p(y_3 | its z_3)
    z3 = np.asarray(st.traces[(3, "z")])
    np.testing.assert_allclose(np.asarray(st.log_weights), np.log(EMIT[z3, YS[3]]), atol=1e-5)


def test_conditional_smc_refuses_bad_input() -> None:
    ref, _ = HMM.generate((4, Z0), {}, key=mx.random.key(3))
    with pytest.raises(ValueError, match="n_particles"):
        conditional_smc(HMM, STEPS, 1, ref, key=mx.random.key(0))
    with pytest.raises(ValueError, match="at least one"):
        conditional_smc(HMM, [], 4, ref, key=mx.random.key(0))


def test_particle_gibbs_leaves_the_hmm_posterior_invariant() -> None:
    exact = _posterior_marginals()
    ref, _ = HMM.generate((4, Z0), {(t, "y"): YS[t] for t in range(4)}, key=mx.random.key(0))
    n_steps = 400
    chain = particle_gibbs(HMM, STEPS, 4, ref, n_steps, key=mx.random.key(1))
    zs = np.array([[int(tr[(t, "z")]) for t in range(4)] for tr in chain[20:]], dtype=float)
    for t in range(4):
        se = _batch_means_se(zs[:, t])
        assert abs(zs[:, t].mean() - exact[t]) < 4 * se + 0.01, (t, zs[:, t].mean(), exact[t], se)


# ------------------------------------------------------------------ PMMH
Q, R = 1.0, 0.6
LG_T = 8
LG_YS = [0.5, 1.2, 0.9, 1.6, 1.1, 0.2, -0.3, 0.4]


@gen
def lg_kernel(t: int, x: Any, a: Any) -> Any:
    x = normal(a * x, Q) @ "x"
    normal(x, R) @ "y"
    return x


LG = Unfold(lg_kernel)
X0 = mx.array(0.0)


def _kalman_loglik(a: float) -> float:
    m, p, ll = 0.0, 0.0, 0.0
    for y in LG_YS:
        m, p = a * m, a * a * p + Q * Q
        s = p + R * R
        ll += -0.5 * (y - m) ** 2 / s - 0.5 * math.log(2 * math.pi * s)
        k = p / s
        m, p = m + k * (y - m), (1 - k) * p
    return ll


def _pf_log_ml(theta: mx.array, key: mx.array) -> mx.array:
    a = theta[0]
    keys = mx.random.split(key, 2 * LG_T)
    st = particle_filter(LG, (1, X0, a), {(0, "y"): LG_YS[0]}, 200, key=keys[0])
    for t in range(1, LG_T):
        st = st.resample(key=keys[2 * t - 1])
        st = st.step((t + 1, X0, a), {(t, "y"): LG_YS[t]}, key=keys[2 * t])
    return st.log_ml_estimate


def _log_prior(theta: mx.array) -> mx.array:
    inside = mx.abs(theta[0]) <= 1.0
    return mx.where(inside, mx.array(math.log(0.5)), mx.array(-math.inf))


def test_pmmh_matches_the_grid_posterior_mean() -> None:
    grid = np.linspace(-1, 1, 2001)
    logpost = np.array([_kalman_loglik(a) for a in grid])
    w = np.exp(logpost - logpost.max())
    exact_mean = float((grid * w).sum() / w.sum())
    res = pmmh(_pf_log_ml, _log_prior, [0.0], 600, step_size=0.25, key=mx.random.key(0))
    a = np.asarray(res.thetas)[50:, 0]
    se = _batch_means_se(a)
    assert 0.2 < float(res.acceptance_rate) < 0.9
    assert abs(a.mean() - exact_mean) < 4 * se, (a.mean(), exact_mean, se)


def test_pmmh_keeps_the_current_estimate_and_rejects_outside_the_prior() -> None:
    calls: list[float] = []

    def fake(theta: mx.array, key: mx.array) -> mx.array:
        calls.append(float(theta[0]))
        return mx.array(0.0)

    res = pmmh(fake, _log_prior, [0.0], 30, step_size=5.0, key=mx.random.key(0))
    th = np.asarray(res.thetas)[:, 0]
    assert np.all(np.abs(th) <= 1.0)
    # the filter runs once at theta0 and once per proposal inside the prior only
    assert len(calls) == 1 + int(np.sum(np.abs(np.asarray(calls[1:])) <= 1.0))
    with pytest.raises(ValueError, match="prior log density"):
        pmmh(fake, _log_prior, [3.0], 5, step_size=0.1, key=mx.random.key(0))
