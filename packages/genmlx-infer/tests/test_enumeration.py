"""Exact enumeration: against brute force over every assignment (the model's own
``assess``), against an independent forward algorithm, closed forms for plated mixture
models, exact sampling frequencies, MAP, grids, mixed models in NUTS and VI, and the
errors a model that does not broadcast gets.

Statistical bounds: a frequency from ``n`` exact draws is within 5 binomial standard
errors of its probability; an MCMC mean within 5 MCSE (sd / sqrt(ESS)).
"""

from __future__ import annotations

import itertools
import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from genmlx.core import StaticModelError, choicemap, gen
from genmlx.dists import bernoulli, binomial, categorical, normal, uniform_discrete
from genmlx.infer import (
    advi_logdensity,
    choice_vol_grid,
    enumerate_posterior,
    enumerated_logdensity,
    enumerative_inference,
    ess_bulk,
    infer_discrete,
    mcmc,
)

# ---------------------------------------------------------------- a small network
CPT_B = mx.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])  # p(b | a)
P_C = mx.array([0.15, 0.5, 0.85])  # p(c = 1 | b)


@gen
def network():
    a = bernoulli(0.35) @ "a"
    b = categorical(CPT_B[a.astype(mx.int32)]) @ "b"
    c = bernoulli(P_C[b]) @ "c"
    d = uniform_discrete(0, 2) @ "d"
    p_y = mx.where(c, 0.8, 0.3) * (0.5 + 0.2 * d.astype(mx.float32)) / 0.9
    bernoulli(p_y) @ "y"
    normal(b.astype(mx.float32) + d.astype(mx.float32), 1.0) @ "x"


OBS = {"y": True, "x": 2.3}
SUPPORTS = {"a": [False, True], "b": [0, 1, 2], "c": [False, True], "d": [0, 1, 2]}


def _brute(model, args, obs, supports):
    names = list(supports)
    rows = []
    for vals in itertools.product(*(supports[n] for n in names)):
        cm = choicemap({**{n: v for n, v in zip(names, vals)}, **obs})
        lp, _ = model.assess(args, cm)
        rows.append((vals, float(lp)))
    lps = np.array([r[1] for r in rows])
    lz = logsumexp(lps)
    post = np.exp(lps - lz)
    marg = {}
    for i, n in enumerate(names):
        marg[n] = np.array(
            [sum(p for (vals, _), p in zip(rows, post) if vals[i] == v) for v in supports[n]]
        )
    return lz, marg, rows, lps


def test_network_against_brute_force():
    post = enumerate_posterior(network, (), OBS)
    lz, marg, rows, lps = _brute(network, (), OBS, SUPPORTS)
    assert float(post.log_ml) == pytest.approx(lz, abs=1e-4)
    for n in SUPPORTS:
        np.testing.assert_allclose(np.asarray(post.marginals[n]), marg[n], atol=1e-5)
    # the joint table, one axis per choice in visiting order
    joint = np.asarray(post.joint()).reshape(-1)
    np.testing.assert_allclose(joint, lps - lz, atol=1e-4)
    # MAP = arg-max of the brute-force joint
    best = rows[int(np.argmax(lps))][0]
    m = post.map_assignment()
    assert tuple(m[n].item() for n in SUPPORTS) == tuple(best)
    assert post.weight_kind == "marginal" and post.exact
    assert set(post.marginalized) == set(SUPPORTS)


def test_exact_samples_match_the_marginals():
    post = enumerate_posterior(network, (), OBS)
    n = 20000
    draws = post.sample(n, key=mx.random.key(3))
    for name, values in SUPPORTS.items():
        p = np.asarray(post.marginals[name])
        x = np.asarray(draws[name])
        for j, v in enumerate(values):
            freq = float(np.mean(x == v))
            se = math.sqrt(p[j] * (1 - p[j]) / n) + 1e-4
            assert abs(freq - p[j]) < 5 * se, (name, v, freq, p[j])
    # joint frequency of one pair against the joint table
    joint = np.exp(np.asarray(post.joint()))
    pab = joint.sum(axis=(2, 3))[1, 2]
    freq = float(np.mean((np.asarray(draws["a"]) == 1) & (np.asarray(draws["b"]) == 2)))
    assert abs(freq - pab) < 5 * math.sqrt(pab * (1 - pab) / n)
    tr = post.traces(4, key=mx.random.key(0))
    assert tr.batch_shape == (4,) and bool(mx.all(tr["y"]))


# ---------------------------------------------------------------- HMM written as a loop
TR = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
MU = np.array([-1.0, 0.0, 1.5])
T_HMM = 12


@gen
def hmm_loop(ys):
    z = mx.array(0)
    for t in range(T_HMM):
        z = categorical(mx.array(TR)[z]) @ ("z", t)
        normal(mx.array(MU)[z], 0.7) @ ("y", t)


def _forward_numpy(ys):
    le = stats.norm.logpdf(np.asarray(ys)[:, None], MU[None, :], 0.7)
    a = np.log(TR[0]) + le[0]
    alphas = [a]
    for t in range(1, len(ys)):
        a = logsumexp(a[:, None] + np.log(TR), axis=0) + le[t]
        alphas.append(a)
    b = np.zeros(3)
    betas = [b]
    for t in range(len(ys) - 1, 0, -1):
        b = logsumexp(np.log(TR) + (le[t] + b)[None, :], axis=1)
        betas.append(b)
    betas = betas[::-1]
    post = np.array([np.exp(al + be - logsumexp(al + be)) for al, be in zip(alphas, betas)])
    return logsumexp(alphas[-1]), post


def test_chain_against_the_forward_algorithm():
    rng = np.random.default_rng(0)
    ys = rng.normal(size=T_HMM).round(2)
    obs = choicemap({("y", t): float(ys[t]) for t in range(T_HMM)})
    post = enumerate_posterior(hmm_loop, (None,), obs)
    lz, marg = _forward_numpy(ys)
    assert float(post.log_ml) == pytest.approx(lz, abs=1e-3)
    for t in range(T_HMM):
        np.testing.assert_allclose(np.asarray(post.marginals[("z", t)]), marg[t], atol=1e-4)


def test_batched_observations():
    rng = np.random.default_rng(1)
    ys = rng.normal(size=(3, T_HMM)).round(2)
    obs = choicemap({("y", t): mx.array(ys[:, t]) for t in range(T_HMM)}).with_batch_shape((3,))
    post = enumerate_posterior(hmm_loop, (None,), obs)
    assert post.log_ml.shape == (3,)
    assert post.marginals[("z", 4)].shape == (3, 3)
    for b in range(3):
        lz, marg = _forward_numpy(ys[b])
        assert float(post.log_ml[b]) == pytest.approx(lz, abs=1e-3)
        np.testing.assert_allclose(np.asarray(post.marginals[("z", 4)][b]), marg[4], atol=1e-4)
    draws = post.sample(5, key=mx.random.key(0))
    assert draws[("z", 0)].shape == (3, 5)
    assert post.map_assignment()[("z", 0)].shape == (3,)


# ---------------------------------------------------------------- plates
W = np.array([0.3, 0.3, 0.4])
MUS = np.array([-2.0, 0.0, 3.0])


@gen
def mixture(n):
    z = categorical(mx.broadcast_to(mx.array(W), (n, 3))) @ "z"
    normal(mx.array(MUS)[z], 1.0) @ "y"


@gen
def switched_mixture(n):
    s = bernoulli(0.4) @ "s"
    z = categorical(mx.broadcast_to(mx.array(W), (n, 3))) @ "z"
    normal(mx.where(s, 1.0, 2.0) * mx.array(MUS)[z], 1.0) @ "y"


YS_MIX = np.array([-1.5, 0.2, 2.5, 4.0, -2.2])


def test_vector_choice_is_enumerated_element_by_element():
    post = enumerate_posterior(mixture, (5,), {"y": mx.array(YS_MIX)})
    lik = stats.norm.pdf(YS_MIX[:, None], MUS[None, :], 1.0) * W
    assert float(post.log_ml) == pytest.approx(np.log(lik.sum(1)).sum(), abs=1e-4)
    np.testing.assert_allclose(
        np.asarray(post.marginals["z"]), (lik / lik.sum(1, keepdims=True)).T, atol=1e-5
    )
    # a global choice shared by the plate
    post2 = enumerate_posterior(switched_mixture, (5,), {"y": mx.array(YS_MIX)})
    tot = 0.0
    for s, ps in ((True, 0.4), (False, 0.6)):
        lk = stats.norm.pdf(YS_MIX[:, None], (1.0 if s else 2.0) * MUS[None, :], 1.0) * W
        tot += ps * np.prod(lk.sum(1))
    assert float(post2.log_ml) == pytest.approx(math.log(tot), abs=1e-4)
    draws = post2.sample(4000, key=mx.random.key(2))
    assert draws["z"].shape == (4000, 5)
    p_s = float(post2.probability("s", True))
    freq = float(np.mean(np.asarray(draws["s"])))
    assert abs(freq - p_s) < 5 * math.sqrt(p_s * (1 - p_s) / 4000)
    with pytest.raises(ValueError, match="vector-valued"):
        post2.joint()


# ---------------------------------------------------------------- errors
@gen
def sums_over_the_plate(n):
    z = categorical(mx.broadcast_to(mx.array(W), (n, 3))) @ "z"
    normal(mx.sum(mx.array(MUS)[z]), 1.0) @ "y"


@gen
def reads_other_elements(n):
    z = categorical(mx.broadcast_to(mx.array(W), (n, 3))) @ "z"
    normal(mx.array(MUS)[z][::-1], 1.0) @ "y"


@gen
def continuous_latent():
    x = normal(0.0, 1.0) @ "x"
    normal(x, 1.0) @ "y"


@gen
def dependent_support():
    n = uniform_discrete(1, 3) @ "n"
    binomial(n, 0.5) @ "k"


def test_models_that_mix_the_axes_are_refused():
    with pytest.raises(StaticModelError, match="'y'"):
        enumerate_posterior(sums_over_the_plate, (4,), {"y": 1.0})
    with pytest.raises(StaticModelError, match="'y'"):
        enumerate_posterior(reads_other_elements, (4,), {"y": mx.array(YS_MIX[:4])})
    with pytest.raises(StaticModelError, match="continuous"):
        enumerate_posterior(continuous_latent, (), {"y": 1.0})
    with pytest.raises(StaticModelError, match="support"):
        enumerate_posterior(dependent_support, (), {})
    with pytest.raises(ValueError, match="not latent choices"):
        enumerate_posterior(network, (), OBS, supports={"nope": [0, 1]})


@gen
def dependent_support_obs():
    n = uniform_discrete(1, 3) @ "n"
    k = binomial(n, 0.5) @ "k"
    normal(k.astype(mx.float32), 1.0) @ "y"


def test_explicit_supports_make_a_dependent_support_exact():
    with pytest.raises(StaticModelError, match="supports="):
        enumerate_posterior(dependent_support_obs, (), {"y": 1.7})
    post = enumerate_posterior(dependent_support_obs, (), {"y": 1.7}, supports={"k": [0, 1, 2, 3]})
    # p(n) = 1/3 for n in {1, 2, 3}; k | n ~ Binomial(n, 1/2); y | k ~ N(k, 1)
    z = sum(
        stats.binom.pmf(k, n, 0.5) * stats.norm.pdf(1.7, k, 1) / 3
        for n in (1, 2, 3)
        for k in range(n + 1)
    )
    assert float(post.log_ml) == pytest.approx(math.log(z), abs=1e-5)
    pk = [
        sum(stats.binom.pmf(k, n, 0.5) for n in (1, 2, 3)) / 3 * stats.norm.pdf(1.7, k, 1) / z
        for k in range(4)
    ]
    np.testing.assert_allclose(np.asarray(post.marginals["k"]), pk, atol=1e-5)


# ---------------------------------------------------------------- grids (Gen.jl)
def test_enumerative_inference_on_a_grid():
    g = choice_vol_grid(("x", mx.linspace(-8.0, 8.0, 1601), "continuous"))
    res = enumerative_inference(continuous_latent, (), {"y": 1.0}, g)
    assert res.traces.batch_shape == (1600,)
    assert float(res.log_ml_estimate) == pytest.approx(
        stats.norm.logpdf(1.0, 0, math.sqrt(2)), abs=1e-3
    )
    w = np.exp(np.asarray(res.log_weights))
    xs = np.asarray(res.traces["x"])
    assert float((w * xs).sum()) == pytest.approx(0.5, abs=1e-3)  # posterior mean y/2


# ---------------------------------------------------------------- mixed models
YS_MM = np.array([2.1, 0.1, 2.3, 1.9, -0.2, 2.6])


@gen
def signed_mean(n):
    mu = normal(0.0, 3.0) @ "mu"
    z = bernoulli(mx.full((n,), 0.7)) @ "z"
    normal(mx.where(z, mu, 0.0), 1.0) @ "y"  # z = 0: an outlier around 0


def _exact_mixed(mu):
    mu = np.asarray(mu, dtype=np.float64)
    lp = stats.norm.logpdf(mu, 0, 3)
    for y in YS_MM:
        lp = lp + np.log(0.7 * stats.norm.pdf(y, mu, 1) + 0.3 * stats.norm.pdf(y, 0.0, 1))
    return lp


def test_enumerated_logdensity_value_and_gradient():
    ld = enumerated_logdensity(signed_mean, (6,), {"y": mx.array(YS_MM)})
    assert ld.dim == 1 and ld.addresses == ["mu"] and ld.marginalized == ("z",)
    pts = mx.array([[-1.0], [0.3], [2.0]])
    np.testing.assert_allclose(np.asarray(ld(pts)), _exact_mixed([-1.0, 0.3, 2.0]), atol=1e-4)
    v, g = ld.value_and_grad(pts)
    eps = 1e-4
    fd = (
        _exact_mixed(np.array([-1.0, 0.3, 2.0]) + eps)
        - _exact_mixed(np.array([-1.0, 0.3, 2.0]) - eps)
    ) / (2 * eps)
    np.testing.assert_allclose(np.asarray(g)[:, 0], fd, rtol=1e-3, atol=1e-3)
    assert float(ld.from_choicemap(choicemap({"mu": 0.7}))[0]) == pytest.approx(0.7)


def test_nuts_with_discrete_latents_summed_out():
    grid = np.linspace(-8, 8, 8001)
    lp = _exact_mixed(grid)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = float((w * grid).sum())
    sd = math.sqrt(float((w * (grid - mean) ** 2).sum()))
    res = mcmc(
        signed_mean,
        (6,),
        {"y": mx.array(YS_MM)},
        n_chains=4,
        n_warmup=300,
        n_samples=400,
        key=mx.random.key(0),
        warn=False,
    )
    mu = res.samples["mu"]
    ess = float(ess_bulk(mu, layout="chain_draw"))
    assert abs(float(mx.mean(mu)) - mean) < 5 * sd / math.sqrt(ess)
    # the discrete choices drawn from p(z | mu, y): the frequency of z_i = 1 matches the
    # exact posterior probability averaged over mu
    d = infer_discrete(res, key=mx.random.key(1))
    assert d["z"].shape == (4, 400, 6)
    pz = np.array(
        [
            (
                w
                * (0.7 * stats.norm.pdf(y, grid, 1))
                / (0.7 * stats.norm.pdf(y, grid, 1) + 0.3 * stats.norm.pdf(y, 0.0, 1))
            ).sum()
            for y in YS_MM
        ]
    )
    freq = np.asarray(d["z"]).reshape(-1, 6).mean(0)
    n_eff = min(ess, 1600.0)
    assert np.all(np.abs(freq - pz) < 5 * np.sqrt(pz * (1 - pz) / n_eff) + 0.01), (freq, pz)


def test_vi_with_discrete_latents_summed_out():
    ld = enumerated_logdensity(signed_mean, (6,), {"y": mx.array(YS_MM)})
    q = advi_logdensity(ld, n_steps=600, n_samples=32, key=mx.random.key(0))
    grid = np.linspace(-8, 8, 8001)
    lp = _exact_mixed(grid)
    log_z = logsumexp(lp) + math.log(grid[1] - grid[0])
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = float((w * grid).sum())
    elbo = float(q.elbo(4000, key=mx.random.key(1)))
    assert elbo <= log_z + 0.05  # a lower bound (Monte Carlo error allowed)
    assert elbo > log_z - 0.5
    assert float(q.loc[0]) == pytest.approx(mean, abs=0.15)


def test_impossible_observations_are_an_error():
    @gen
    def never():
        r = bernoulli(0.0) @ "r"
        bernoulli(mx.where(r, 1.0, 0.0)) @ "y"

    with pytest.raises(ValueError, match="probability zero"):
        enumerate_posterior(never, (), {"y": True})
