"""The particle filter against exact answers.

* Discrete HMMs (``Unfold`` of a kernel drawing the state and the observation) against
  the forward algorithm (numpy, float64), at two sizes.
* A 1-D linear-Gaussian state-space model against the Kalman filter's log marginal
  likelihood (numpy, float64), with the bootstrap proposal, the locally optimal custom
  proposal, and MH rejuvenation.

How the tolerances are derived. For every ``N`` and each resampling scheme here, the
SMC estimate ``Ẑ`` of the marginal likelihood ``Z`` is unbiased: ``E[Ẑ / Z] = 1``
exactly. With ``R`` independent runs (keys ``0..R-1``), ``r_k = Ẑ_k / Z`` are i.i.d.
with mean 1, so ``|mean(r) - 1| < 4 · sd(r) / √R`` (the standard error estimated from
the runs themselves) holds with probability ≈ 0.9999 by the CLT. On the log scale
``E[log Ẑ] = log Z - Var(log Ẑ)/2 + o(1/N)`` (second-order delta method), so the
log-scale check allows ``4 · sd(log Ẑ) / √R + Var(log Ẑ)`` (twice the bias term).
Seeds are fixed, so the outcome is deterministic.

Offspring counts of the resampling schemes: ``E[count_i] = N w̄_i`` for all four;
each count's variance is at most ``max(N w̄_i (1 - w̄_i), 1/4)``, so the mean over ``R``
repetitions lies within ``5 · sqrt(that / R)`` of ``N w̄_i``. Systematic, stratified and
residual resampling also have exact, deterministic properties that are checked
directly.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.combinators import Unfold
from genmlx.core import gen, select, static
from genmlx.dists import categorical, normal
from genmlx.infer import mh
from genmlx.infer.smc import (
    RESAMPLING_METHODS,
    ParticleFilterState,
    _searchsorted_merge,
    particle_filter,
    resample_indices,
)

R_RUNS = 20


# ---------------------------------------------------------------------- helpers
def _check_unbiased(estimates: list[Any], exact: float) -> None:
    """The two checks described in the module docstring."""
    log_z = np.array(estimates, dtype=np.float64)
    r = len(log_z)
    ratio = np.exp(log_z - exact)
    se_ratio = ratio.std(ddof=1) / math.sqrt(r)
    assert abs(ratio.mean() - 1.0) < 4.0 * se_ratio + 1e-6, (ratio.mean(), se_ratio)
    sd = log_z.std(ddof=1)
    assert abs(log_z.mean() - exact) < 4.0 * sd / math.sqrt(r) + sd**2, (
        log_z.mean(),
        exact,
        sd,
    )


def _run_filter(
    model: Any,
    args_at: Any,
    obs_at: Any,
    n_steps: int,
    n: int,
    key: mx.array,
    *,
    method: str = "systematic",
    ess_frac: float | None = None,
    proposal: Any = None,
    proposal_args_at: Any = None,
    rejuvenate: Any = None,
) -> ParticleFilterState:
    keys = mx.random.split(key, 3 * n_steps)
    st = particle_filter(model, args_at(0), obs_at(0), n, key=keys[0])
    for t in range(1, n_steps):
        if ess_frac is None:
            st = st.resample(method, key=keys[3 * t])
        else:
            st = st.maybe_resample(ess_frac * n, method, key=keys[3 * t])
        if rejuvenate is not None:
            st = st.rejuvenate(mh, rejuvenate(t - 1), key=keys[3 * t + 1])
        pa = () if proposal_args_at is None else proposal_args_at(t)
        st = st.step(
            args_at(t), obs_at(t), proposal=proposal, proposal_args=pa, key=keys[3 * t + 2]
        )
    return st


# ---------------------------------------------------------------------- HMM
@gen
def hmm_kernel(t: int, z: mx.array, pi: mx.array, a: mx.array, b: mx.array) -> mx.array:
    probs = pi if t == 0 else a[z]
    z = categorical(probs) @ "z"
    categorical(b[z]) @ "y"
    return z


HMM = Unfold(hmm_kernel)
Z0 = mx.array(0)

HMM_CASES = {
    "2x2_T5": (
        [0.5, 0.5],
        [[0.9, 0.1], [0.2, 0.8]],
        [[0.8, 0.2], [0.3, 0.7]],
        [0, 1, 1, 0, 1],
    ),
    "3x3_T20": (
        [0.6, 0.3, 0.1],
        [[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]],
        [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7]],
        [0, 0, 1, 2, 2, 1, 0, 2, 2, 2, 1, 1, 0, 0, 0, 2, 1, 2, 2, 0],
    ),
}


def _forward(pi: Any, a: Any, b: Any, ys: list[int]) -> float:
    """Exact ``log p(y_{0:T-1})`` by the scaled forward algorithm."""
    pi, a, b = (np.asarray(x, dtype=np.float64) for x in (pi, a, b))
    alpha = pi * b[:, ys[0]]
    ll = 0.0
    for t in range(len(ys)):
        if t > 0:
            alpha = (alpha @ a) * b[:, ys[t]]
        c = alpha.sum()
        ll += math.log(c)
        alpha = alpha / c
    return ll


def _hmm_filter(case: str, n: int, key: mx.array, **kw: Any) -> ParticleFilterState:
    pi_l, a_l, b_l, ys = HMM_CASES[case]
    pi, a, b = mx.array(pi_l), mx.array(a_l), mx.array(b_l)
    return _run_filter(
        HMM,
        lambda t: (t + 1, Z0, pi, a, b),  # same init/param objects: NoChange argdiffs
        lambda t: {(t, "y"): ys[t]},
        len(ys),
        n,
        key,
        **kw,
    )


@pytest.mark.parametrize("case", sorted(HMM_CASES))
def test_hmm_log_ml_matches_forward_algorithm(case: str) -> None:
    exact = _forward(*HMM_CASES[case])
    ests = [
        _hmm_filter(case, 1000, mx.random.key(k)).log_ml_estimate.item() for k in range(R_RUNS)
    ]
    _check_unbiased(ests, exact)


@pytest.mark.parametrize("method", RESAMPLING_METHODS)
def test_hmm_every_resampling_method_and_ess_trigger(method: str) -> None:
    exact = _forward(*HMM_CASES["3x3_T20"])
    ests = [
        _hmm_filter("3x3_T20", 500, mx.random.key(100 + k), method=method, ess_frac=0.5)
        .log_ml_estimate
        .item()
        for k in range(R_RUNS)
    ]
    _check_unbiased(ests, exact)


# ---------------------------------------------------------------------- linear Gaussian
LG_A, LG_Q, LG_R, LG_S0 = 0.9, 0.7, 0.5, 1.0  # x_t = a x_{t-1} + N(0, q²); y_t = x_t + N(0, r²)
LG_YS = [0.4, 0.9, 1.6, 1.2, 0.3, -0.5, -0.9, -0.2, 0.6, 1.4, 1.9, 1.1, 0.8, 0.2, -0.4]


@gen
def lg_kernel(t: int, x: mx.array) -> mx.array:
    if t == 0:
        x = normal(0.0, LG_S0) @ "x"
    else:
        x = normal(LG_A * x, LG_Q) @ "x"
    normal(x, LG_R) @ "y"
    return x


LG = Unfold(lg_kernel)
X0 = mx.array(0.0)


def _kalman(ys: list[float]) -> float:
    """Exact ``log p(y_{0:T-1})`` from the Kalman filter's predictive densities."""
    m, v = 0.0, LG_S0**2
    ll = 0.0
    for t, y in enumerate(ys):
        if t > 0:
            m, v = LG_A * m, LG_A**2 * v + LG_Q**2
        s = v + LG_R**2
        ll += -0.5 * (math.log(2 * math.pi * s) + (y - m) ** 2 / s)
        k = v / s
        m, v = m + k * (y - m), (1 - k) * v
    return ll


@gen
def lg_optimal_proposal(trace: Any, t: int, y: float) -> None:
    """``p(x_t | x_{t-1}, y_t)``: Gaussian with precision ``1/q² + 1/r²``."""
    x_prev = trace[(t - 1, "x")]
    prec = 1.0 / LG_Q**2 + 1.0 / LG_R**2
    mean = (LG_A * x_prev / LG_Q**2 + y / LG_R**2) / prec
    normal(mean, 1.0 / math.sqrt(prec)) @ (t, "x")


def _lg_filter(n: int, key: mx.array, **kw: Any) -> ParticleFilterState:
    return _run_filter(
        LG, lambda t: (t + 1, X0), lambda t: {(t, "y"): LG_YS[t]}, len(LG_YS), n, key, **kw
    )


def test_linear_gaussian_bootstrap_matches_kalman() -> None:
    exact = _kalman(LG_YS)
    ests = [
        _lg_filter(1000, mx.random.key(200 + k)).log_ml_estimate.item() for k in range(R_RUNS)
    ]
    _check_unbiased(ests, exact)


def test_linear_gaussian_optimal_proposal_matches_kalman() -> None:
    exact = _kalman(LG_YS)
    ests = [
        _lg_filter(
            300,
            mx.random.key(300 + k),
            proposal=lg_optimal_proposal,
            proposal_args_at=lambda t: (t, LG_YS[t]),
        )
        .log_ml_estimate
        .item()
        for k in range(R_RUNS)
    ]
    _check_unbiased(ests, exact)
    # the locally optimal proposal's weights do not depend on x_t: a much smaller spread
    boot = [_lg_filter(300, mx.random.key(400 + k)).log_ml_estimate.item() for k in range(R_RUNS)]
    assert np.std(ests) < np.std(boot)


def test_linear_gaussian_with_mh_rejuvenation_matches_kalman() -> None:
    exact = _kalman(LG_YS)
    ests = [
        _lg_filter(500, mx.random.key(500 + k), rejuvenate=lambda t: select((t, "x")))
        .log_ml_estimate
        .item()
        for k in range(R_RUNS)
    ]
    _check_unbiased(ests, exact)


# ---------------------------------------------------------------------- resampling
WEIGHTS = np.array([0.02, 0.3, 0.0, 0.13, 0.25, 0.05, 0.0, 0.25], dtype=np.float64)


def _counts(method: str, reps: int, n: int) -> np.ndarray:
    lw = mx.log(mx.array(WEIGHTS.astype(np.float32)))
    keys = mx.random.split(mx.random.key(7), reps)
    out = np.zeros((reps, len(WEIGHTS)), dtype=np.int64)
    for r in range(reps):
        idx = np.array(resample_indices(lw, method, n_particles=n, key=keys[r]))
        assert idx.shape == (n,) and idx.min() >= 0 and idx.max() < len(WEIGHTS)
        out[r] = np.bincount(idx, minlength=len(WEIGHTS))
    return out


@pytest.mark.parametrize("method", RESAMPLING_METHODS)
def test_expected_offspring_counts(method: str) -> None:
    reps, n = 400, len(WEIGHTS)
    counts = _counts(method, reps, n)
    expected = n * WEIGHTS
    se = np.sqrt(np.maximum(n * WEIGHTS * (1 - WEIGHTS), 0.25) / reps)
    assert np.all(np.abs(counts.mean(axis=0) - expected) < 5 * se), (counts.mean(0), expected)
    assert np.all(counts.sum(axis=1) == n)
    assert np.all(counts[:, WEIGHTS == 0] == 0)  # zero-weight particles never survive


def test_systematic_counts_are_floor_or_ceil() -> None:
    for n in (8, 13, 100):
        counts = _counts("systematic", 50, n)
        nw = n * WEIGHTS
        assert np.all((counts == np.floor(nw)) | (counts == np.ceil(nw))), n


def test_stratified_counts_within_two_of_expected() -> None:
    counts = _counts("stratified", 200, 13)
    assert np.all(np.abs(counts - 13 * WEIGHTS) < 2)


def test_residual_deterministic_part_is_exact() -> None:
    for n in (8, 13, 100):
        counts = _counts("residual", 50, n)
        assert np.all(counts >= np.floor(n * WEIGHTS)), n
        # the random part has exactly n - Σ floor(n w) slots
        extra = counts - np.floor(n * WEIGHTS)
        assert np.all(extra.sum(axis=1) == n - np.floor(n * WEIGHTS).sum())


def test_residual_with_integer_offspring_is_deterministic() -> None:
    lw = mx.log(mx.array([0.25, 0.5, 0.25]))
    idx = resample_indices(lw, "residual", n_particles=4, key=mx.random.key(0))
    assert sorted(np.array(idx).tolist()) == [0, 1, 1, 2]


def test_searchsorted_fallback_agrees_with_numpy() -> None:
    rng = np.random.default_rng(0)
    cdf = np.cumsum(rng.dirichlet(np.ones(50)))
    cdf[[3, 4, 5]] = cdf[3]  # ties in the cdf (zero-weight particles)
    cdf = np.sort(cdf).astype(np.float32)
    hits = cdf[[0, 3, 10]]  # values equal to cdf entries
    u = np.concatenate([rng.uniform(size=200), hits]).astype(np.float32)
    got = np.array(_searchsorted_merge(mx.array(cdf), mx.array(u)))
    np.testing.assert_array_equal(got, np.searchsorted(cdf, u, side="right"))


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        resample_indices(mx.zeros(3), "bogus", key=mx.random.key(0))


# ---------------------------------------------------------------------- state semantics
def test_state_is_immutable_and_resample_keeps_log_ml() -> None:
    st = _lg_filter(64, mx.random.key(0))
    with pytest.raises(AttributeError):
        st.log_weights = mx.zeros(64)  # type: ignore[misc]
    assert st.traces.batch_shape == (64,) and st.log_weights.shape == (64,)
    assert 1.0 <= float(np.array(st.ess())) <= 64.0 + 1e-3
    before = st.log_ml_estimate.item()
    rs = st.resample("multinomial", key=mx.random.key(1))
    assert np.all(np.array(rs.log_weights) == 0.0)
    assert rs.ess().item() == pytest.approx(64.0, rel=1e-5)
    assert rs.log_ml_estimate.item() == pytest.approx(before, abs=1e-4)
    # every resampled particle is a copy of an old one (the whole trace, consistently)
    old_x = np.array(st.traces[(len(LG_YS) - 1, "x")])
    new_x = np.array(rs.traces[(len(LG_YS) - 1, "x")])
    new_x0 = np.array(rs.traces[(0, "x")])
    old_x0 = np.array(st.traces[(0, "x")])
    for i in range(64):
        j = int(np.argmin(np.abs(old_x - new_x[i])))
        assert old_x[j] == new_x[i] and old_x0[j] == new_x0[i]


def test_maybe_resample_respects_threshold() -> None:
    st = particle_filter(LG, (1, X0), {(0, "y"): 3.0}, 200, key=mx.random.key(0))
    ess = float(np.array(st.ess()))
    kept = st.maybe_resample(ess / 2, key=mx.random.key(1))
    assert np.array_equal(np.array(kept.log_weights), np.array(st.log_weights))
    assert kept.log_ml_accumulated.item() == 0.0
    done = st.resample(ess_threshold=ess * 2, key=mx.random.key(1))
    assert np.all(np.array(done.log_weights) == 0.0)
    assert done.log_ml_estimate.item() == pytest.approx(st.log_ml_estimate.item(), abs=1e-4)


def test_first_estimate_is_importance_sampling() -> None:
    st = particle_filter(LG, (1, X0), {(0, "y"): 0.4}, 100, key=mx.random.key(0))
    lw = np.array(st.log_weights, dtype=np.float64)
    expected = np.log(np.mean(np.exp(lw)))
    assert st.log_ml_estimate.item() == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------------- scaling
COUNT = {"n": 0}


@gen
def counted_kernel(t: int, x: mx.array) -> mx.array:
    COUNT["n"] += 1  # runs once per trace of the body (once per batched execution)
    x = normal(x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


def test_each_step_runs_the_kernel_body_once_whatever_t_and_n() -> None:
    """The interpreted path (compiled path off): one body execution per step."""
    model = Unfold(counted_kernel)
    with static.auto_compile(False):
        _count_body_runs(model)


def _count_body_runs(model: Any) -> None:
    for n in (10, 1000):
        keys = mx.random.split(mx.random.key(n), 60)
        COUNT["n"] = 0
        st = particle_filter(model, (1, X0), {(0, "y"): 0.1}, n, key=keys[0])
        assert COUNT["n"] == 1
        per_step = []
        for t in range(1, 30):
            st = st.resample(key=keys[2 * t])
            before = COUNT["n"]
            st = st.step((t + 1, X0), {(t, "y"): 0.1 * t}, key=keys[2 * t + 1])
            per_step.append(COUNT["n"] - before)
        assert per_step == [1] * 29, per_step
        # resampling gathers arrays and never re-runs the model
        before = COUNT["n"]
        st.resample(key=keys[0])
        assert COUNT["n"] == before


@gen
def lg_posterior_x0(y: float) -> None:
    """``p(x_0 | y_0)``, exact for the linear-Gaussian model."""
    prec = 1.0 / LG_S0**2 + 1.0 / LG_R**2
    normal((y / LG_R**2) / prec, 1.0 / math.sqrt(prec)) @ (0, "x")


def _log_normal_pdf(x: Any, mean: Any, var: float) -> Any:
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def test_custom_proposal_weights_are_exact() -> None:
    """With the exact posterior / locally optimal proposal the weights are known:
    ``log w_i = log p(y_0)`` at the start and ``+= log p(y_t | x_{t-1,i})`` per step."""
    y0, y1 = LG_YS[0], LG_YS[1]
    st = particle_filter(
        LG,
        (1, X0),
        {(0, "y"): y0},
        50,
        proposal=lg_posterior_x0,
        proposal_args=(y0,),
        key=mx.random.key(0),
    )
    expected0 = _log_normal_pdf(y0, 0.0, LG_S0**2 + LG_R**2)
    np.testing.assert_allclose(np.array(st.log_weights), expected0, atol=1e-4)
    nxt = st.step(
        (2, X0),
        {(1, "y"): y1},
        proposal=lg_optimal_proposal,
        proposal_args=(1, y1),
        key=mx.random.key(1),
    )
    x0 = np.array(st.traces[(0, "x")], dtype=np.float64)
    inc = np.array(nxt.log_weights - st.log_weights, dtype=np.float64)
    np.testing.assert_allclose(inc, _log_normal_pdf(y1, LG_A * x0, LG_Q**2 + LG_R**2), atol=1e-4)
    # the particles kept their own past and got new choices at step 1
    np.testing.assert_array_equal(np.array(nxt.traces[(0, "x")]), np.array(st.traces[(0, "x")]))
    assert nxt.traces.args[0] == 2 and nxt.traces[(1, "x")].shape == (50,)


def test_proposal_step_and_rejuvenation_run_the_kernel_once() -> None:
    model = Unfold(counted_kernel)
    keys = mx.random.split(mx.random.key(3), 40)
    st = particle_filter(model, (1, X0), {(0, "y"): 0.1}, 100, key=keys[0])
    for t in range(1, 12):
        COUNT["n"] = 0
        st = st.step(
            (t + 1, X0),
            {(t, "y"): 0.1},
            proposal=lg_optimal_proposal,
            proposal_args=(t, 0.1),
            key=keys[3 * t],
        )
        assert COUNT["n"] == 1
        COUNT["n"] = 0
        st = st.rejuvenate(mh, select((t, "x")), key=keys[3 * t + 1])
        assert COUNT["n"] == 1  # regenerate of the last step re-runs only that step
        st = st.resample("residual", key=keys[3 * t + 2])
