"""Reversible-jump split/merge move on a fixed-structure one-or-two-component mixture.

Model: ``k ~ categorical([½, ½])`` (0: one mean, 1: two means), ``μ, μ₁, μ₂ ~ N(0, 2²)``
always present (the unused ones are drawn from their prior), and
``y_i ~ ½ N(a, 1) + ½ N(b, 1)`` with ``(a, b) = (μ, μ)`` for ``k = 0`` and ``(μ₁, μ₂)``
for ``k = 1``. The exact ``P(k = 1 | y)`` comes from the two marginal likelihoods,
integrated over the means on a grid with NumPy's trapezoid rule (1-D for ``k = 0``,
2-D for ``k = 1``). The chain estimate is each chain's time average of ``[k = 1]``
after burn-in, averaged over ``N`` independent chains; its standard error is the
spread of those per-chain averages over ``√N``; the bound is 5 standard errors.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import ChoiceMap, choicemap, compile, gen
from genmlx.dists import categorical, mixture, normal
from genmlx.infer import ChainResult, chain, cycle, mh
from genmlx.infer.metropolis import _involution_jacobian
from genmlx.infer.reversible_jump import (
    birth_death_kernel,
    birth_death_move,
    split_merge_kernel,
    split_merge_move,
)

PRIOR_SD = 2.0
SIGMA = 1.0
YS = [-1.3, -0.6, -1.0, 0.9, 1.4, 0.4]
normal_mixture = mixture(normal)


@gen
def model(n: int) -> None:
    k = categorical(mx.array([0.5, 0.5])) @ "k"
    mu = normal(0.0, PRIOR_SD) @ "mu"
    mu1 = normal(0.0, PRIOR_SD) @ "mu1"
    mu2 = normal(0.0, PRIOR_SD) @ "mu2"
    means = mx.stack([mx.where(k == 0, mu, mu1), mx.where(k == 0, mu, mu2)], axis=-1)
    for i in range(n):
        normal_mixture(mx.array([0.5, 0.5]), means, mx.array([SIGMA, SIGMA])) @ ("y", i)


@gen
def rw(tr: Any, addr: str) -> None:
    normal(tr[addr], 0.7) @ addr


OBS = choicemap({("y", i): v for i, v in enumerate(YS)})
MOVE = partial(split_merge_move, k_address="k", merged="mu", split=("mu1", "mu2"), park_sd=PRIOR_SD)
BIRTH_DEATH = partial(
    birth_death_move,
    k_address="k",
    merged="mu",
    split=("mu1", "mu2"),
    birth_sd=PRIOR_SD,
    park_sd=PRIOR_SD,
)
MOVES = pytest.mark.parametrize("move", [MOVE, BIRTH_DEATH], ids=["split_merge", "birth_death"])


def kernel_with(move: Any) -> Any:
    return cycle(
        *[partial(mh, selection_or_proposal=rw, proposal_args=(a,)) for a in ("mu", "mu1", "mu2")],
        move,
    )


def exact_p_two() -> float:
    """P(k = 1 | y) by trapezoid quadrature of both marginal likelihoods."""
    y = np.array(YS)
    g = np.linspace(-12.0, 12.0, 961)

    def pdf(x: Any, m: Any, s: float) -> Any:
        return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    z1 = np.trapezoid(np.prod(pdf(y[:, None], g[None, :], SIGMA), axis=0) * pdf(g, 0, PRIOR_SD), g)
    a, b = np.meshgrid(g, g, indexing="ij")
    lik = np.ones_like(a)
    for yi in y:
        lik *= 0.5 * pdf(yi, a, SIGMA) + 0.5 * pdf(yi, b, SIGMA)
    integrand = lik * pdf(a, 0, PRIOR_SD) * pdf(b, 0, PRIOR_SD)
    z2 = np.trapezoid(np.trapezoid(integrand, g, axis=1), g)
    return float(z2 / (z1 + z2))


def _init(n: int, key: int) -> Any:
    tr, _ = model.vgenerate((len(YS),), OBS, n, key=mx.random.key(key))
    return tr


def _single(tr: Any, i: int) -> Any:
    cm = OBS
    for a in ("k", "mu", "mu1", "mu2"):
        cm = cm.set(a, tr[a][i])
    single, _ = model.generate((len(YS),), cm, key=mx.random.key(0))
    return single


def _check_p_two(move: Any, n_chains: int, n_steps: int, burn_in: int, seed: int) -> None:
    res = chain(
        kernel_with(move),
        _init(n_chains, seed),
        n_steps,
        key=mx.random.key(seed + 1),
        burn_in=burn_in,
        addresses=["k"],
    )
    per_chain = np.array(res.samples["k"].astype(mx.float32).mean(axis=0))
    est = float(per_chain.mean())
    se = float(per_chain.std(ddof=1)) / math.sqrt(n_chains)
    exact = exact_p_two()
    assert 0.2 < exact < 0.8  # the data leave k genuinely uncertain
    assert se < 0.01
    assert abs(est - exact) < 5 * se, (est, exact, se)


# ---------------------------------------------------------------- statistical tests
@MOVES
def test_posterior_of_k_matches_quadrature(move: Any) -> None:
    _check_p_two(move, n_chains=500, n_steps=200, burn_in=80, seed=0)


@pytest.mark.slow
@MOVES
def test_posterior_of_k_matches_quadrature_long(move: Any) -> None:
    _check_p_two(move, n_chains=2000, n_steps=500, burn_in=100, seed=3)


def test_quadrature_grid_is_converged() -> None:
    # the k = 0 marginal likelihood has a closed form: y ~ N(0, σ² I + τ² 11ᵀ)
    y = np.array(YS)
    cov = SIGMA**2 * np.eye(len(y)) + PRIOR_SD**2 * np.ones((len(y), len(y)))
    _, logdet = np.linalg.slogdet(cov)
    log_z1 = -0.5 * (y @ np.linalg.solve(cov, y) + logdet + len(y) * math.log(2 * math.pi))
    g = np.linspace(-12.0, 12.0, 961)
    dens = np.exp(-0.5 * ((y[:, None] - g[None, :]) / SIGMA) ** 2) / math.sqrt(2 * math.pi)
    prior = np.exp(-0.5 * (g / PRIOR_SD) ** 2) / (PRIOR_SD * math.sqrt(2 * math.pi))
    z1 = np.trapezoid(np.prod(dens, axis=0) * prior, g)
    assert abs(math.log(z1) - log_z1) < 1e-6


# ---------------------------------------------------------------- the involution
def test_involution_is_self_inverse_with_det_two_and_half() -> None:
    _, f = split_merge_kernel("k", "mu", ("mu1", "mu2"))
    for k in (0, 1):
        t = choicemap(
            {"k": mx.array(k, dtype=mx.int32), "mu": 0.3, "mu1": -1.2, "mu2": 0.8, ("y", 0): 1.0}
        )
        u = choicemap({"a": 0.4, "b": -0.7})
        new_t, new_u, log_det = _involution_jacobian(f, t, u, ())
        expect = math.log(2.0) if k == 0 else -math.log(2.0)
        assert abs(float(log_det.item()) - expect) < 1e-5
        assert int(new_t["k"].item()) == 1 - k
        merged = t
        for p, v in new_t.leaves():
            merged = merged._set(p, ChoiceMap(v))
        back_t, back_u = f(merged, new_u, ())
        for a in ("k", "mu", "mu1", "mu2"):
            assert mx.allclose(back_t[a], t[a], atol=1e-6)
        for a in ("a", "b"):
            assert mx.allclose(back_u[a], u[a], atol=1e-6)
    # the split direction: (m, s1, s2, a, b) -> (b, m - a, m + a, s1, s2)
    t = choicemap({"k": mx.array(0, dtype=mx.int32), "mu": 0.3, "mu1": -1.2, "mu2": 0.8})
    new_t, new_u = f(t, choicemap({"a": 0.4, "b": -0.7}), ())
    got = [float(new_t[a].item()) for a in ("mu", "mu1", "mu2")]
    got += [float(new_u[a].item()) for a in ("a", "b")]
    assert np.allclose(got, [-0.7, -0.1, 0.7, -1.2, 0.8], atol=1e-6)


@MOVES
def test_check_true_passes_single_and_batched(move: Any) -> None:
    tr = _init(16, key=4)
    new, info = move(tr, key=mx.random.key(5), check=True)
    assert info.accepted.shape == (16,) and new.batch_shape == (16,)
    # every chain flipped k exactly where accepted
    flipped = new["k"] != tr["k"]
    assert mx.array_equal(flipped, info.accepted)
    s_new, s_acc_info = move(_single(tr, 0), key=mx.random.key(6), check=True)
    assert s_acc_info.accepted.shape == () and s_new.batch_shape == ()


@MOVES
def test_batched_chain_i_equals_single_chain(move: Any) -> None:
    n = 8
    tr = _init(n, key=7)
    key = mx.random.key(8)
    new, info = move(tr, key=key)
    keys = mx.random.split(key, n)
    accs = []
    for i in range(n):
        s_new, s_acc_info = move(_single(tr, i), key=keys[i])
        assert bool(s_acc_info.accepted.item()) == bool(info.accepted[i].item())
        for a in ("k", "mu", "mu1", "mu2"):
            assert mx.allclose(s_new[a], new[a][i], atol=1e-5)
        assert mx.allclose(s_new.score, new.score[i], atol=1e-4)
        accs.append(bool(s_acc_info.accepted.item()))
    assert 0 < sum(accs) < n


@MOVES
def test_new_trace_score_is_consistent(move: Any) -> None:
    tr = _init(32, key=9)
    new, _ = move(tr, key=mx.random.key(10))
    k, mu, mu1, mu2 = new["k"], new["mu"], new["mu1"], new["mu2"]
    a = mx.where(k == 0, mu, mu1)
    b = mx.where(k == 0, mu, mu2)
    expect = math.log(0.5) + sum(normal.log_prob(x, 0.0, PRIOR_SD) for x in (mu, mu1, mu2))
    for v in YS:
        expect = (
            expect
            + mx.logaddexp(
                normal.log_prob(mx.array(v), a, SIGMA), normal.log_prob(mx.array(v), b, SIGMA)
            )
            + math.log(0.5)
        )
    assert mx.allclose(new.score, expect, atol=1e-4)


@MOVES
def test_compiled_chain_equals_interpreted(move: Any) -> None:
    tr = _init(32, key=11)
    key = mx.random.key(12)

    def run(k: mx.array, t: Any) -> ChainResult:
        return chain(kernel_with(move), t, 8, key=k, addresses=["k", "mu1"])

    a = run(key, tr)
    b = compile(run)(key, tr)
    assert mx.array_equal(a.samples["k"], b.samples["k"])
    assert mx.allclose(a.samples["mu1"], b.samples["mu1"], atol=1e-5)
    assert mx.allclose(a.trace.score, b.trace.score, atol=1e-5)


def test_birth_death_involution_is_a_self_inverse_permutation() -> None:
    _, f = birth_death_kernel("k", "mu", ("mu1", "mu2"))
    expected = {
        0: ([-0.7, 0.3, 0.4], [-1.2, 0.8]),  # birth: (m, s1, s2, a, b) -> (b, m, a, s1, s2)
        1: ([-1.2, 0.4, -0.7], [0.8, 0.3]),  # death: (m, s1, s2, a, b) -> (s1, a, b, s2, m)
    }
    for k in (0, 1):
        t = choicemap(
            {"k": mx.array(k, dtype=mx.int32), "mu": 0.3, "mu1": -1.2, "mu2": 0.8, ("y", 0): 1.0}
        )
        u = choicemap({"a": 0.4, "b": -0.7})
        new_t, new_u, log_det = _involution_jacobian(f, t, u, ())
        assert abs(float(log_det.item())) < 1e-5
        assert int(new_t["k"].item()) == 1 - k
        got_t = [float(new_t[a].item()) for a in ("mu", "mu1", "mu2")]
        got_u = [float(new_u[a].item()) for a in ("a", "b")]
        assert np.allclose(got_t, expected[k][0]) and np.allclose(got_u, expected[k][1])
        merged = t
        for p, v in new_t.leaves():
            merged = merged._set(p, ChoiceMap(v))
        back_t, back_u = f(merged, new_u, ())
        for a in ("k", "mu", "mu1", "mu2"):
            assert mx.allclose(back_t[a], t[a], atol=1e-6)
        for a in ("a", "b"):
            assert mx.allclose(back_u[a], u[a], atol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        split_merge_kernel("k", "mu", ("mu1", "mu2"), merged_value=1, split_value=1)
    with pytest.raises(ValueError):
        split_merge_kernel("k", "mu", ("mu1", "mu2"), split_scale=0.0)
    with pytest.raises(ValueError):
        birth_death_kernel("k", "mu", ("mu1", "mu2"), birth_sd=-1.0)
    with pytest.raises(ValueError):
        birth_death_kernel("k", "mu", ("mu1", "mu2"), merged_value=0, split_value=0)
