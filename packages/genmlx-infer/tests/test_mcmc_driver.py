"""The MCMC driver: posteriors against quadrature, dynamic termination at the default
depth, constrained parameters, initialisation modes, thinning, adaptation and warnings.

Bounds: a posterior mean is within 5 standard errors (sd / sqrt(ESS), ESS the bulk ESS of
the draws) of the exact value; sds within 15 %.
"""

from __future__ import annotations

import math
import warnings

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import choicemap, gen
from genmlx.dists import half_normal, normal
from genmlx.infer import MCMCWarning, ess_bulk, mcmc

YS = np.array([1.2, 0.8, 1.9, 1.1, 0.4, 1.5, 2.2, 0.9], dtype=np.float32)


@gen
def normal_unknown_sd(ys):
    mu = normal(0.0, 5.0) @ "mu"
    sigma = half_normal(2.0) @ "sigma"
    normal(mx.broadcast_to(mu, ys.shape), sigma) @ "ys"  # len(ys) iid observations


def grid_posterior() -> dict[str, tuple[float, float]]:
    """Posterior mean and sd of mu and sigma by quadrature on a fine grid."""
    mu = np.linspace(-2.0, 4.0, 601)[:, None]
    sigma = np.linspace(0.01, 4.0, 800)[None, :]
    lp = -0.5 * (mu / 5.0) ** 2 - 0.5 * (sigma / 2.0) ** 2
    for y in YS.astype(np.float64):
        lp = lp - np.log(sigma) - 0.5 * ((y - mu) / sigma) ** 2
    w = np.exp(lp - lp.max())
    w /= w.sum()
    out = {}
    for name, grid in (
        ("mu", np.broadcast_to(mu, w.shape)),
        ("sigma", np.broadcast_to(sigma, w.shape)),
    ):
        m = float((w * grid).sum())
        out[name] = (m, float(np.sqrt((w * (grid - m) ** 2).sum())))
    return out


def check(draws: mx.array, mean: float, sd: float) -> None:
    x = np.asarray(draws, dtype=np.float64)
    ess = float(ess_bulk(draws, layout="chain_draw"))
    se = x.std(ddof=1) / math.sqrt(ess)
    assert abs(x.mean() - mean) < 5 * se, (x.mean(), mean, se)
    assert abs(x.std(ddof=1) / sd - 1.0) < 0.15, (x.std(ddof=1), sd)


@pytest.mark.parametrize("kernel", ["nuts", "hmc", "mala"])
def test_posterior_of_a_constrained_model_matches_quadrature(kernel):
    exact = grid_posterior()
    n = {"nuts": 400, "hmc": 400, "mala": 1500}[kernel]
    res = mcmc(
        normal_unknown_sd,
        (mx.array(YS),),
        choicemap({"ys": mx.array(YS)}),
        kernel=kernel,
        n_chains=4,
        n_warmup=300,
        n_samples=n,
        key=mx.random.key(1),
        warn=False,
    )
    assert res.samples["mu"].shape == (4, n)
    assert bool(mx.all(res.samples["sigma"] > 0))
    for name in ("mu", "sigma"):
        check(res.samples[name], *exact[name])


def test_default_depth_stops_at_the_u_turn():
    @gen
    def corr():
        a = normal(0.0, 1.0) @ "a"
        b = normal(0.0, 1.0) @ "b"
        normal(a + b, 0.5) @ "y"

    res = mcmc(
        corr,
        (),
        {"y": 1.0},
        n_chains=4,
        n_warmup=200,
        n_samples=300,
        key=mx.random.key(2),
        warn=False,
    )
    n_leap = np.asarray(res.stats["n_leapfrog"])
    # a 2-d Gaussian needs a handful of steps; the fixed tree would integrate 1023
    assert n_leap.mean() < 20 and n_leap.max() <= 2**10 - 1
    assert np.asarray(res.stats["depth"]).max() <= 10
    cov = np.array([[5.0, -4.0], [-4.0, 5.0]]) / 9.0
    check(res.samples["a"], 4.0 / 9.0, math.sqrt(cov[0, 0]))


def test_init_modes_thinning_and_layout():
    obs = choicemap({"ys": mx.array(YS)})
    args = (mx.array(YS),)
    for init in ("prior", "uniform", {"mu": 1.0, "sigma": 1.0}):
        res = mcmc(
            normal_unknown_sd,
            args,
            obs,
            n_chains=2,
            n_warmup=20,
            n_samples=10,
            thin=3,
            init=init,
            key=mx.random.key(3),
            warn=False,
        )
        assert res.samples["mu"].shape == (2, 10) and res.stats["accept_prob"].shape == (2, 10)
        assert res.positions.shape == (2, 10, 2)
    with pytest.raises(ValueError, match="init"):
        mcmc(normal_unknown_sd, args, obs, n_chains=2, n_warmup=1, n_samples=1, init="bogus")
    with pytest.raises(ValueError, match="n_chains"):
        mcmc(normal_unknown_sd, args, obs, n_chains=0)
    with pytest.raises(ValueError, match="kernel"):
        mcmc(normal_unknown_sd, args, obs, kernel="slice")


def test_per_chain_and_pooled_adaptation():
    obs = choicemap({"ys": mx.array(YS)})
    args = (mx.array(YS),)
    per = mcmc(
        normal_unknown_sd,
        args,
        obs,
        n_chains=3,
        n_warmup=150,
        n_samples=5,
        key=mx.random.key(4),
        warn=False,
    )
    pooled = mcmc(
        normal_unknown_sd,
        args,
        obs,
        n_chains=3,
        n_warmup=150,
        n_samples=5,
        adapt="pooled",
        key=mx.random.key(4),
        warn=False,
    )
    assert per.step_size.shape == (3,) and per.mass.shape == (3, 2)
    assert len(set(np.asarray(per.step_size).round(6).tolist())) > 1
    assert len(set(np.asarray(pooled.step_size).round(6).tolist())) == 1
    assert pooled.mass.shape == (2,)


def test_divergences_and_rhat_are_warned():
    obs = choicemap({"ys": mx.array(YS)})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = mcmc(
            normal_unknown_sd,
            (mx.array(YS),),
            obs,
            n_chains=2,
            n_warmup=0,
            n_samples=30,
            step_size=8.0,
            adapt="none",
            key=mx.random.key(5),
        )
    assert int(mx.sum(res.stats["diverging"]).item()) > 0
    msgs = [str(x.message) for x in w if issubclass(x.category, MCMCWarning)]
    assert any("diverged" in m for m in msgs)
    assert any("effective sample size" in m for m in msgs)
    assert res.warnings and "diverged" in " ".join(res.warnings)


def test_summary_and_traces():
    obs = choicemap({"ys": mx.array(YS)})
    res = mcmc(
        normal_unknown_sd,
        (mx.array(YS),),
        obs,
        n_chains=2,
        n_warmup=50,
        n_samples=50,
        key=mx.random.key(6),
        warn=False,
    )
    table = res.summary()
    assert set(table) == {"mu", "sigma"}
    row = table["sigma"]
    assert row["q5"] < row["q50"] < row["q95"] and row["mcse_mean"] > 0
    tr = res.traces()
    assert tr.batch_shape == (2,)
    np.testing.assert_array_equal(np.asarray(tr["mu"]), np.asarray(res.samples["mu"][:, -1]))
