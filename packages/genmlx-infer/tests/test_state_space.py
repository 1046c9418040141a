"""Kalman filter/smoother, EKF/UKF, HMM forward–backward and the Rao-Blackwellised
particle filter against direct computations: the joint Gaussian of the whole sequence
(numpy), an independent forward algorithm, exact enumeration, and brute force over
regime sequences. RB vs bootstrap particle filter: an F-test on the variance of the log
evidence estimate.
"""

from __future__ import annotations

import itertools
import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from genmlx.combinators import Scan, Unfold
from genmlx.core import StaticModelError, choicemap, gen
from genmlx.dists import bernoulli, categorical, mv_normal, normal, poisson
from genmlx.infer import (
    enumerate_posterior,
    hmm_arrays,
    hmm_forward_backward,
    kalman_filter,
    kalman_filter_arrays,
    particle_filter,
    rao_blackwellized_particle_filter,
)


# ---------------------------------------------------------------- a scalar LG model
@gen
def lg_step(t, x):
    x = normal(0.9 * x + 0.1, 1.0) @ "x"
    normal(2.0 * x - 0.5, 0.5) @ "y"
    return x


LG = Unfold(lg_step)
YS = np.array([0.3, -0.2, 0.8, 1.1, 2.0, 1.5, 0.7])
T = len(YS)


def _joint_lg(T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and covariance of x (and y) for lg_step from x_{-1} = 0."""
    mean = np.zeros(T)
    prev = 0.0
    for t in range(T):
        mean[t] = 0.9 * prev + 0.1
        prev = mean[t]
    A = np.array([[0.9 ** (t - s) if s <= t else 0.0 for s in range(T)] for t in range(T)])
    Cx = A @ A.T
    return mean, Cx, 2 * mean - 0.5, 4 * Cx + 0.25 * np.eye(T)


def _obs(ys, skip=()):
    return choicemap({(t, "y"): float(ys[t]) for t in range(len(ys)) if t not in skip})


def test_kalman_against_the_joint_gaussian():
    res = kalman_filter(LG, (T, mx.array(0.0)), _obs(YS))
    mx_, Cx, my, Cy = _joint_lg(T)
    assert res.method == "kalman" and res.exact and res.weight_kind == "marginal"
    assert float(res.log_ml) == pytest.approx(
        stats.multivariate_normal.logpdf(YS, my, Cy), abs=1e-3
    )
    Cxy = 2 * Cx
    post_mean = mx_ + Cxy @ np.linalg.solve(Cy, YS - my)
    post_cov = Cx - Cxy @ np.linalg.solve(Cy, Cxy.T)
    np.testing.assert_allclose(np.asarray(res.smoothed_means)[:, 0], post_mean, atol=1e-4)
    np.testing.assert_allclose(np.asarray(res.smoothed_covs)[:, 0, 0], np.diag(post_cov), atol=1e-4)
    # filtered = conditioning on the prefix
    for t in (0, 3):
        k = t + 1
        fm = mx_[t] + Cxy[t, :k] @ np.linalg.solve(Cy[:k, :k], YS[:k] - my[:k])
        assert float(res.filtered_means[t, 0]) == pytest.approx(fm, abs=1e-4)
    # joint posterior draws (forward filtering, backward sampling): mean and the lag-1
    # covariance of the path
    n = 20000
    xs = np.asarray(res.sample(n, key=mx.random.key(0)), dtype=np.float64)
    assert xs.shape == (n, T)
    se = np.sqrt(np.diag(post_cov) / n)
    assert np.all(np.abs(xs.mean(0) - post_mean) < 5 * se)
    c01 = np.cov(xs[:, 2], xs[:, 3])[0, 1]
    assert c01 == pytest.approx(
        post_cov[2, 3], abs=5 * math.sqrt(post_cov[2, 2] * post_cov[3, 3] / n) * 1.5
    )
    tr = res.traces(3, key=mx.random.key(1))
    assert tr.batch_shape == (3,)


def test_missing_observations_and_batched_sequences():
    res = kalman_filter(LG, (T, mx.array(0.0)), _obs(YS, skip=(2, 5)))
    _, _, my, Cy = _joint_lg(T)
    keep = [t for t in range(T) if t not in (2, 5)]
    want = stats.multivariate_normal.logpdf(YS[keep], my[keep], Cy[np.ix_(keep, keep)])
    assert float(res.log_ml) == pytest.approx(want, abs=1e-3)
    ys2 = np.stack([YS, YS + 1.0, -YS])
    obs = choicemap({(t, "y"): mx.array(ys2[:, t]) for t in range(T)}).with_batch_shape((3,))
    rb = kalman_filter(LG, (T, mx.array(0.0)), obs)
    assert rb.log_ml.shape == (3,) and rb.smoothed_means.shape == (3, T, 1)
    for b in range(3):
        assert float(rb.log_ml[b]) == pytest.approx(
            stats.multivariate_normal.logpdf(ys2[b], my, Cy), abs=1e-3
        )
    assert rb.sample(4, key=mx.random.key(0)).shape == (3, 4, T)


def test_array_level_filter_agrees():
    _, _, my, Cy = _joint_lg(T)
    res = kalman_filter_arrays(
        mx.array(YS[:, None]),
        F=mx.array([[0.9]]),
        c=mx.array([0.1]),
        Q=mx.eye(1),
        H=mx.array([[2.0]]),
        d=mx.array([-0.5]),
        R=mx.array([[0.25]]),
        init_mean=mx.array([0.1]),
        init_cov=mx.eye(1),
    )
    assert float(res.log_ml) == pytest.approx(
        stats.multivariate_normal.logpdf(YS, my, Cy), abs=1e-3
    )


# ---------------------------------------------------------------- vector state, Scan, inputs
FM = np.array([[1.0, 0.1], [0.0, 1.0]])


@gen
def tracker(x, u):
    x = mv_normal(mx.array(FM) @ x + mx.array([0.0, 1.0]) * u, 0.1 * mx.eye(2)) @ "x"
    normal(x[0], 0.3) @ "pos"
    normal(x[1] - x[0], 0.5) @ "diff"
    return x, x[0]


def test_vector_state_scan_with_inputs_against_the_joint():
    us = np.array([0.0, 0.5, -0.2, 0.1, 0.3])
    n = len(us)
    rng = np.random.default_rng(0)
    pos, dif = rng.normal(size=n).round(2), rng.normal(size=n).round(2)
    obs = choicemap(
        {
            **{(t, "pos"): float(pos[t]) for t in range(n)},
            **{(t, "diff"): float(dif[t]) for t in range(n)},
        }
    )
    res = kalman_filter(Scan(tracker), (mx.zeros(2), mx.array(us)), obs)
    # the joint of (x_0..x_{n-1}) stacked: x_t = F x_{t-1} + B u_t + e_t
    d = 2 * n
    mean = np.zeros(d)
    A = np.zeros((d, d))
    prev_m = np.zeros(2)
    for t in range(n):
        prev_m = FM @ prev_m + np.array([0.0, 1.0]) * us[t]
        mean[2 * t : 2 * t + 2] = prev_m
        for s in range(t + 1):
            A[2 * t : 2 * t + 2, 2 * s : 2 * s + 2] = np.linalg.matrix_power(FM, t - s) * math.sqrt(
                0.1
            )
    Cx = A @ A.T
    H = np.zeros((2 * n, d))
    for t in range(n):
        H[2 * t, 2 * t] = 1.0
        H[2 * t + 1, 2 * t : 2 * t + 2] = [-1.0, 1.0]
    R = np.diag(np.tile([0.09, 0.25], n))
    y = np.stack([pos, dif], axis=1).reshape(-1)
    Cy = H @ Cx @ H.T + R
    assert float(res.log_ml) == pytest.approx(
        stats.multivariate_normal.logpdf(y, H @ mean, Cy), abs=1e-3
    )
    post = mean + Cx @ H.T @ np.linalg.solve(Cy, y - H @ mean)
    np.testing.assert_allclose(np.asarray(res.smoothed_means).reshape(-1), post, atol=1e-3)


@gen
def time_varying(t, x):
    x = normal(0.8 * x, 1.0 + 0.1 * t) @ "x"
    normal(x, 0.5) @ "y"
    return x


def test_time_varying_kernel():
    res = kalman_filter(Unfold(time_varying), (4, mx.array(0.0)), _obs(YS[:4]))
    A = np.array(
        [[0.8 ** (t - s) * (1 + 0.1 * s) if s <= t else 0.0 for s in range(4)] for t in range(4)]
    )
    Cy = A @ A.T + 0.25 * np.eye(4)
    assert float(res.log_ml) == pytest.approx(
        stats.multivariate_normal.logpdf(YS[:4], np.zeros(4), Cy), abs=1e-3
    )


# ---------------------------------------------------------------- nonlinear: EKF/UKF
@gen
def nonlinear(t, x):
    x = normal(x + 0.3 * mx.sin(x), 0.3) @ "x"
    normal(0.5 * x**2, 0.4) @ "y"
    return x


def _quadrature_nonlinear(ys, x0):
    g = np.linspace(-4, 6, 2001)
    dx = g[1] - g[0]
    p = stats.norm.pdf(g, x0 + 0.3 * np.sin(x0), 0.3)
    logz = 0.0
    for t, y in enumerate(ys):
        if t > 0:
            trans = stats.norm.pdf(g[:, None], (g + 0.3 * np.sin(g))[None, :], 0.3)
            p = trans @ p * dx
        p = p * stats.norm.pdf(y, 0.5 * g**2, 0.4)
        z = p.sum() * dx
        logz += math.log(z)
        p = p / z
    return logz


def test_ekf_and_ukf():
    # on a linear model both are the Kalman filter
    for m in ("ekf", "ukf"):
        r = kalman_filter(LG, (T, mx.array(0.0)), _obs(YS), method=m)
        assert r.method == m and not r.exact
        assert float(r.log_ml) == pytest.approx(
            float(kalman_filter(LG, (T, mx.array(0.0)), _obs(YS)).log_ml), abs=1e-3
        )
    ys = [0.6, 0.9, 1.3, 1.8, 2.4]
    model = Unfold(nonlinear)
    obs = _obs(ys)
    with pytest.raises(StaticModelError, match="not linear-Gaussian"):
        kalman_filter(model, (5, mx.array(1.0)), obs, method="kalman")
    exact = _quadrature_nonlinear(ys, 1.0)
    ekf = kalman_filter(model, (5, mx.array(1.0)), obs)
    ukf = kalman_filter(model, (5, mx.array(1.0)), obs, method="ukf")
    assert ekf.method == "ekf"
    # approximations of a mildly nonlinear model: within a few tenths of a nat
    assert abs(float(ekf.log_ml) - exact) < 0.3
    assert abs(float(ukf.log_ml) - exact) < 0.3


def test_what_the_kalman_filter_refuses():
    @gen
    def two_states(t, x):
        a = normal(x, 1.0) @ "a"
        normal(a, 1.0) @ "b"
        normal(a, 1.0) @ "y"
        return a

    with pytest.raises(StaticModelError, match="exactly one latent state"):
        kalman_filter(Unfold(two_states), (3, mx.array(0.0)), _obs(YS[:3]))

    @gen
    def returns_other(t, x):
        a = normal(x, 1.0) @ "x"
        normal(a, 1.0) @ "y"
        return a * 2.0

    with pytest.raises(StaticModelError, match="new state"):
        kalman_filter(Unfold(returns_other), (3, mx.array(0.0)), _obs(YS[:3]))

    @gen
    def poisson_obs(t, x):
        a = normal(x, 1.0) @ "x"
        poisson(mx.exp(a)) @ "y"
        return a

    with pytest.raises(StaticModelError, match="normal or"):
        kalman_filter(Unfold(poisson_obs), (3, mx.array(0.0)), choicemap({(0, "y"): 1}))


# ---------------------------------------------------------------- HMM
TRN = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
MU = np.array([-1.0, 0.0, 1.5])


@gen
def hmm_step(t, z):
    z = categorical(mx.array(TRN)[z]) @ "z"
    normal(mx.array(MU)[z], 0.7) @ "y"
    return z


def _forward_numpy(ys, mask=None):
    le = stats.norm.logpdf(np.asarray(ys)[:, None], MU[None, :], 0.7)
    if mask is not None:
        le = le * mask[:, None]
    a = np.log(TRN[0]) + le[0]
    for t in range(1, len(ys)):
        a = logsumexp(a[:, None] + np.log(TRN), axis=0) + le[t]
    return logsumexp(a), le


def test_hmm_against_forward_algorithm_and_brute_force():
    ys = np.array([-1.2, -0.8, 0.1, 0.3, 1.2, 1.9, 1.4, -0.2])
    n = len(ys)
    res = hmm_forward_backward(Unfold(hmm_step), (n, mx.array(0)), _obs(ys))
    lz, le = _forward_numpy(ys)
    assert float(res.log_ml) == pytest.approx(lz, abs=1e-4)
    # brute force over all 3^8 paths: smoothed marginals and the Viterbi path
    paths = np.array(list(itertools.product(range(3), repeat=n)))
    lp = np.log(TRN[0][paths[:, 0]]) + le[0][paths[:, 0]]
    for t in range(1, n):
        lp = lp + np.log(TRN[paths[:, t - 1], paths[:, t]]) + le[t][paths[:, t]]
    assert logsumexp(lp) == pytest.approx(lz, abs=1e-8)
    post = np.exp(lp - logsumexp(lp))
    for t in (0, 4, n - 1):
        marg = np.array([post[paths[:, t] == k].sum() for k in range(3)])
        np.testing.assert_allclose(np.asarray(res.smoothed[t]), marg, atol=1e-5)
    assert np.asarray(res.viterbi()).tolist() == paths[np.argmax(lp)].tolist()
    # exact path samples: a pair frequency against brute force
    draws = np.asarray(res.sample(20000, key=mx.random.key(0)))
    p_pair = post[(paths[:, 2] == 1) & (paths[:, 3] == 1)].sum()
    freq = np.mean((draws[:, 2] == 1) & (draws[:, 3] == 1))
    assert abs(freq - p_pair) < 5 * math.sqrt(p_pair * (1 - p_pair) / 20000)
    assert res.traces(2, key=mx.random.key(1)).batch_shape == (2,)


@gen
def hmm_loop(n):
    z = mx.array(0)
    for t in range(n):
        z = categorical(mx.array(TRN)[z]) @ (t, "z")
        normal(mx.array(MU)[z], 0.7) @ (t, "y")


def test_hmm_agrees_with_enumeration_and_handles_batches_and_gaps():
    rng = np.random.default_rng(3)
    ys = rng.normal(size=(2, 10)).round(2)
    obs = choicemap({(t, "y"): mx.array(ys[:, t]) for t in range(10) if t != 4}).with_batch_shape(
        (2,)
    )
    res = hmm_forward_backward(Unfold(hmm_step), (10, mx.array(0)), obs)
    enum = enumerate_posterior(hmm_loop, (10,), obs)
    np.testing.assert_allclose(np.asarray(res.log_ml), np.asarray(enum.log_ml), atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(res.smoothed[:, 6]), np.asarray(enum.marginals[(6, "z")]), atol=1e-4
    )
    mask = np.array([t != 4 for t in range(10)], dtype=float)
    for b in range(2):
        lz, _ = _forward_numpy(np.where(mask > 0, ys[b], 0.0), mask)
        assert float(res.log_ml[b]) == pytest.approx(lz, abs=1e-4)
    assert res.sample(3, key=mx.random.key(0)).shape == (2, 3, 10)
    arr = hmm_arrays(res.log_init, res.log_transition, res.log_emission)
    np.testing.assert_allclose(np.asarray(arr.log_ml), np.asarray(res.log_ml), atol=1e-5)


# ---------------------------------------------------------------- RBPF
@gen
def switching(t, x):
    r = bernoulli(0.1) @ "r"
    x = normal(0.9 * x + mx.where(r, 1.5, 0.0), 1.0) @ "x"
    normal(x, 0.2) @ "y"
    return x


YS_SW = np.array([0.3, -0.5, 1.9, 2.2, 1.1, 0.4, -0.3, 1.7, 2.9, 2.0])


def _exact_switching(ys):
    n = len(ys)
    A = np.array([[0.9 ** (t - s) if s <= t else 0.0 for s in range(n)] for t in range(n)])
    cov = A @ A.T + 0.04 * np.eye(n)
    out = []
    for rs in itertools.product([0, 1], repeat=n):
        r = np.array(rs)
        mean = A @ (1.5 * r)
        out.append(
            np.sum(np.log(np.where(r, 0.1, 0.9))) + stats.multivariate_normal.logpdf(ys, mean, cov)
        )
    return logsumexp(out)


def test_rbpf_is_unbiased_and_beats_the_bootstrap_filter():
    exact = _exact_switching(YS_SW)
    model = Unfold(switching)
    obs = _obs(YS_SW)
    n_steps = len(YS_SW)
    R, N = 40, 100
    rb = np.array(
        [
            float(
                rao_blackwellized_particle_filter(
                    model, (n_steps, mx.array(0.0)), obs, N, key=mx.random.key(k)
                ).log_ml_estimate
            )
            for k in range(R)
        ]
    )
    plain = []
    for k in range(R):
        st = particle_filter(
            model, (1, mx.array(0.0)), {(0, "y"): float(YS_SW[0])}, N, key=mx.random.key(k)
        )
        for t in range(1, n_steps):
            st = st.maybe_resample(N / 2, key=mx.random.key(10_000 + 100 * k + t))
            st = st.step(
                (t + 1, mx.array(0.0)),
                {(t, "y"): float(YS_SW[t])},
                key=mx.random.key(20_000 + 100 * k + t),
            )
        plain.append(float(st.log_ml_estimate))
    plain = np.array(plain)
    # unbiased on the linear scale: the mean of Ẑ/Z is 1 within 5 standard errors
    zr = np.exp(rb - exact)
    assert abs(zr.mean() - 1.0) < 5 * zr.std(ddof=1) / math.sqrt(R)
    # F-test: Var(log Ẑ) of the bootstrap filter is larger at the 0.001 level
    ratio = plain.var(ddof=1) / rb.var(ddof=1)
    assert ratio > stats.f.ppf(0.999, R - 1, R - 1), ratio
    res = rao_blackwellized_particle_filter(
        model, (n_steps, mx.array(0.0)), obs, N, key=mx.random.key(0)
    )
    assert res.weight_kind == "marginal" and "x" in res.marginalized
    assert res.sampled["r"].shape == (N, n_steps)


def test_ekf_and_ukf_on_batched_sequences():
    ys = np.array([[0.6, 0.9, 1.2, 1.5], [0.5, 0.7, 0.9, 1.1]])
    obs = choicemap({(t, "y"): mx.array(ys[:, t]) for t in range(4)}).with_batch_shape((2,))
    for m in ("ekf", "ukf"):
        rb = kalman_filter(Unfold(nonlinear), (4, mx.array(1.0)), obs, method=m)
        assert rb.log_ml.shape == (2,)
        for b in range(2):
            one = kalman_filter(Unfold(nonlinear), (4, mx.array(1.0)), _obs(ys[b]), method=m)
            assert float(rb.log_ml[b]) == pytest.approx(float(one.log_ml), abs=1e-4)
