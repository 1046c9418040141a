"""The MCMC driver :func:`genmlx.infer.mcmc`: initialisation modes, thinning, adaptation
(per chain or pooled), warnings, layouts and the diagnostics it feeds, posteriors with
closed forms (z-scores from the effective sample size)."""

from __future__ import annotations

import math
import warnings

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import StaticModelError, choicemap, gen
from genmlx.dists import bernoulli, flat, gamma, half_flat, normal, poisson
from genmlx.infer import (
    MCMCResult,
    MCMCWarning,
    chain,
    ess_bulk,
    mcmc,
    mh,
    rhat,
    summary,
    to_chain_draw,
)

Z = 5.0  # allowed |z| for posterior means, z = (mean - exact) / (sd / sqrt(ESS))


@gen
def normal_mean(ys):
    mu = normal(0.0, 2.0) @ "mu"
    normal(mx.broadcast_to(mu, ys.shape), 1.0) @ "ys"  # iid observations: one vector


YS = mx.array([1.2, 0.4, 2.0, 1.1, 0.9])
# conjugate: precision 1/4 + 5, mean (sum ys) / (1/4 + 5)
NM_PREC = 0.25 + 5.0
NM_MEAN = float(mx.sum(YS)) / NM_PREC
NM_SD = 1.0 / math.sqrt(NM_PREC)


@gen
def gamma_poisson(ks):
    lam = gamma(3.0, 2.0) @ "lam"
    poisson(mx.broadcast_to(lam, ks.shape)) @ "ks"


KS = mx.array([2, 4, 1, 3, 5, 2])
GP_A, GP_B = 3.0 + float(mx.sum(KS)), 2.0 + 6.0  # Gamma(20, 8) posterior


def _z(res: MCMCResult, addr: str, exact: float) -> float:
    table = res.summary()
    row = table[addr]
    return (row["mean"] - exact) / (row["sd"] / math.sqrt(row["ess_bulk"]))


def _quiet(**kw: object) -> dict[str, object]:
    return {"warn": False, **kw}


# ---------------------------------------------------------------- posteriors
@pytest.mark.parametrize("kernel", ["nuts", "hmc", "mala"])
def test_gradient_kernels_recover_a_conjugate_posterior(kernel: str) -> None:
    n = {"nuts": (150, 200), "hmc": (200, 300), "mala": (300, 1500)}[kernel]
    res = mcmc(normal_mean, (YS,), choicemap({"ys": YS}), kernel=kernel, n_chains=4,
               n_warmup=n[0], n_samples=n[1], key=mx.random.key(1), **_quiet())
    assert abs(_z(res, "mu", NM_MEAN)) <= Z
    sd = res.summary()["mu"]["sd"]
    assert abs(sd / NM_SD - 1) < 0.15


def test_positive_latent_runs_unconstrained_and_matches_gamma_posterior() -> None:
    res = mcmc(gamma_poisson, (KS,), choicemap({"ks": KS}), n_chains=4, n_warmup=120,
               n_samples=200, key=mx.random.key(2), **_quiet())
    assert bool(mx.all(res.samples["lam"] > 0))
    assert abs(_z(res, "lam", GP_A / GP_B)) <= Z
    assert abs(res.summary()["lam"]["sd"] / (math.sqrt(GP_A) / GP_B) - 1) < 0.15
    assert int(mx.sum(res.stats["diverging"])) == 0
    # the unconstrained positions are log lam
    np.testing.assert_allclose(np.exp(np.array(res.positions[..., 0])),
                               np.array(res.samples["lam"]), rtol=1e-5)


def test_mh_kernel_on_a_discrete_latent() -> None:
    @gen
    def coin():
        b = bernoulli(0.3) @ "b"
        normal(mx.where(b, 1.0, -1.0), 1.0) @ "y"

    # P(b | y = 0.5) = 0.3 N(0.5; 1, 1) / (0.3 N(0.5; 1, 1) + 0.7 N(0.5; -1, 1))
    l1, l0 = 0.3 * math.exp(-0.5 * 0.25), 0.7 * math.exp(-0.5 * 2.25)
    p = l1 / (l1 + l0)
    res = mcmc(coin, (), choicemap({"y": 0.5}), kernel="mh", n_chains=8, n_warmup=20,
               n_samples=300, key=mx.random.key(3), **_quiet())
    assert res.kernel == "mh" and res.samples["b"].shape == (8, 300)
    est = float(mx.mean(res.samples["b"].astype(mx.float32)))
    ess = res.summary()["b"]["ess_bulk"]
    assert abs(est - p) <= Z * math.sqrt(p * (1 - p) / ess)


def test_user_trace_kernel_and_dynamic_models() -> None:
    from functools import partial

    from genmlx.core import select

    k = partial(mh, selection_or_proposal=select("mu"))
    res = mcmc(normal_mean, (YS,), choicemap({"ys": YS}), kernel=k, n_chains=4,
               n_warmup=50, n_samples=200, key=mx.random.key(4), **_quiet())
    assert res.samples["mu"].shape == (4, 200)

    @gen
    def dynamic():
        n = poisson(2.0) @ "n"
        for i in range(int(n) + 1):
            normal(0.0, 1.0) @ ("x", i)

    with pytest.raises(StaticModelError, match="needs a static model.*trace kernel"):
        mcmc(dynamic, (), None, n_warmup=5, n_samples=5)


# ---------------------------------------------------------------- initialisation
def _first_positions(model, args, obs, init, **kw):  # type: ignore[no-untyped-def]
    # one HMC step with a vanishing step size: the first draw is the initial point
    res = mcmc(model, args, obs, kernel="hmc", n_leapfrog=1, step_size=1e-7, adapt="none",
               n_warmup=0, n_samples=1, init=init, key=mx.random.key(5), **_quiet(**kw))
    return np.array(res.positions[:, 0])


@gen
def far_prior():
    mu = normal(10.0, 0.1) @ "mu"
    s = gamma(2.0, 2.0) @ "s"
    normal(mu, s) @ "y"


def test_init_uniform_prior_and_choice_maps() -> None:
    obs = choicemap({"y": 10.0})
    u = _first_positions(far_prior, (), obs, "uniform", n_chains=6)
    assert u.shape == (6, 2) and np.all(np.abs(u) <= 2.0 + 1e-5)
    u2 = _first_positions(far_prior, (), obs, "uniform", n_chains=6, init_radius=0.5)
    assert np.all(np.abs(u2) <= 0.5 + 1e-5)
    p = _first_positions(far_prior, (), obs, "prior", n_chains=6)
    assert np.all(np.abs(p[:, 0] - 10.0) < 1.0)  # mu drawn from N(10, 0.1)
    assert len(np.unique(p[:, 0])) == 6  # independent draws
    c = _first_positions(far_prior, (), obs, {"mu": 9.5, "s": 2.0}, n_chains=3)
    np.testing.assert_allclose(c, [[9.5, math.log(2.0)]] * 3, rtol=1e-5)
    per = choicemap({"mu": mx.array([9.0, 9.5, 10.5]), "s": mx.array([1.0, 2.0, 3.0])})
    per = per.with_batch_shape((3,))
    c2 = _first_positions(far_prior, (), obs, per, n_chains=3)
    np.testing.assert_allclose(c2[:, 0], [9.0, 9.5, 10.5], rtol=1e-5)
    np.testing.assert_allclose(c2[:, 1], np.log([1.0, 2.0, 3.0]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"init has batch shape \(2,\)"):
        _first_positions(far_prior, (), obs, per.map(lambda v: v[:2]).with_batch_shape((2,)),
                         n_chains=3)
    with pytest.raises(ValueError, match="init must be 'prior', 'uniform' or a choice map"):
        _first_positions(far_prior, (), obs, "stan")


def test_improper_prior_starts_uniform_and_samples_the_likelihood() -> None:
    @gen
    def m(ys):
        mu = flat() @ "mu"
        sigma = half_flat() @ "sigma"
        normal(mx.broadcast_to(mu, ys.shape), sigma) @ "ys"

    obs = choicemap({"ys": YS})
    u = _first_positions(m, (YS,), obs, "prior", n_chains=4)
    assert np.all(np.abs(u) <= 2.0 + 1e-5)
    res = mcmc(m, (YS,), obs, kernel="mala", n_chains=4, n_warmup=300, n_samples=1500,
               key=mx.random.key(6), **_quiet())
    # flat prior on mu: the posterior of mu given sigma is centred on the sample mean
    assert abs(_z(res, "mu", float(mx.mean(YS)))) <= Z
    with pytest.raises(ValueError, match="init='uniform' is for gradient kernels"):
        mcmc(m, (YS,), obs, kernel="mh", init="uniform", n_samples=2, n_warmup=0)


# ---------------------------------------------------------------- thinning, adaptation
def test_thinning_keeps_every_kth_transition() -> None:
    kw = dict(kernel="mala", n_chains=2, n_warmup=50, key=mx.random.key(7), warn=False)
    full = mcmc(normal_mean, (YS,), choicemap({"ys": YS}), n_samples=12, **kw)
    thin = mcmc(normal_mean, (YS,), choicemap({"ys": YS}), n_samples=4, thin=3, **kw)
    assert thin.samples["mu"].shape == (2, 4)
    np.testing.assert_allclose(np.array(thin.positions),
                               np.array(full.positions[:, 2::3]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.array(thin.step_size), np.array(full.step_size))


def test_per_chain_and_pooled_adaptation() -> None:
    obs = choicemap({"ks": KS})
    kw = dict(kernel="hmc", n_leapfrog=3, n_chains=4, n_warmup=120, n_samples=10)
    per = mcmc(gamma_poisson, (KS,), obs, key=mx.random.key(8), **_quiet(**kw))
    pooled = mcmc(gamma_poisson, (KS,), obs, adapt="pooled", key=mx.random.key(8),
                  **_quiet(**kw))
    assert per.step_size.shape == (4,) and len(set(np.array(per.step_size).tolist())) == 4
    assert per.mass.shape == (4, 1)
    assert len(set(np.array(pooled.step_size).tolist())) == 1
    assert pooled.mass.shape == (1,)
    dense = mcmc(normal_mean, (YS,), choicemap({"ys": YS}), kernel="hmc", n_leapfrog=3,
                 n_chains=2, n_warmup=120, n_samples=10, dense_mass=True,
                 key=mx.random.key(8), **_quiet())
    assert dense.mass.shape == (2, 1, 1)


# ---------------------------------------------------------------- warnings
def test_low_ess_and_divergence_warnings() -> None:
    obs = choicemap({"ys": YS})
    with pytest.warns(MCMCWarning, match="effective sample size below 100"):
        mcmc(normal_mean, (YS,), obs, kernel="mala", n_chains=2, n_warmup=30, n_samples=20,
             key=mx.random.key(9))
    # a step size far beyond the posterior's scale: every trajectory diverges
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = mcmc(gamma_poisson, (KS,), choicemap({"ks": KS}), n_chains=2, n_warmup=0,
                   n_samples=30, adapt="none", step_size=40.0, key=mx.random.key(10))
    assert int(mx.sum(res.stats["diverging"])) > 0
    msgs = [str(w.message) for w in rec if issubclass(w.category, MCMCWarning)]
    assert any("transitions after warm-up diverged" in m for m in msgs)
    assert any("diverged" in m for m in res.warnings)


def test_rhat_warning_for_chains_in_different_modes() -> None:
    @gen
    def bimodal():
        x = normal(0.0, 10.0) @ "x"
        normal(x * x, 0.5) @ "y"  # y = 25: modes at x = ±5

    init = choicemap({"x": mx.array([5.0, 5.0, -5.0, -5.0])}).with_batch_shape((4,))
    with pytest.warns(MCMCWarning, match="R-hat above 1.01"):
        res = mcmc(bimodal, (), choicemap({"y": 25.0}), kernel="mala", n_chains=4,
                   n_warmup=100, n_samples=200, init=init, key=mx.random.key(11))
    assert res.summary()["x"]["r_hat"] > 1.5
    assert res.check(rhat_max=1e9, ess_min=0.0) == []


# ---------------------------------------------------------------- layouts
def test_layout_summary_and_diagnostics_read_the_result() -> None:
    @gen
    def vec():
        th = normal(mx.zeros(3), 1.0) @ "theta"
        s = gamma(2.0, 2.0) @ "s"
        normal(th, s) @ "y"

    res = mcmc(vec, (), choicemap({"y": mx.array([0.5, -0.2, 1.0])}), n_chains=3,
               n_warmup=40, n_samples=30, key=mx.random.key(12), **_quiet())
    assert res.layout == "chain_draw"
    assert res.samples["theta"].shape == (3, 30, 3) and res.samples["s"].shape == (3, 30)
    assert res.positions.shape == (3, 30, 4)
    for name in ("accept_prob", "n_leapfrog", "depth", "diverging"):
        assert res.stats[name].shape == (3, 30)
    table = res.summary()
    assert list(table) == ["theta[0]", "theta[1]", "theta[2]", "s"]
    assert set(table.columns) >= {"mean", "sd", "q5", "q95", "mcse_mean", "ess_bulk",
                                  "ess_tail", "r_hat"}
    # the diagnostics read the result (layout known) and agree with explicit layouts
    d = summary(res)
    assert d["s"]["mean"] == pytest.approx(table["s"]["mean"], rel=1e-5)
    assert d["theta[1]"]["ess_bulk"] == pytest.approx(table["theta[1]"]["ess_bulk"], rel=1e-4)
    e1 = ess_bulk(res.samples["s"], layout="chain_draw")
    one = MCMCResult({"s": res.samples["s"]}, {}, kernel="nuts")
    assert float(ess_bulk(one)) == pytest.approx(float(e1), rel=1e-6)
    assert float(rhat(one)) == pytest.approx(float(rhat(res.samples["s"], layout="chain_draw")))
    with pytest.raises(ValueError, match=r"recorded 2 addresses.*layout='chain_draw'"):
        ess_bulk(res)
    with pytest.raises(ValueError, match="axis order is ambiguous"):
        rhat(res.samples["s"])
    # the wrong layout is not silently accepted: it gives another answer
    wrong = ess_bulk(mx.swapaxes(res.samples["s"], 0, 1), layout="chain_draw")
    assert float(wrong) != pytest.approx(float(e1), rel=1e-3)
    assert "MCMCResult(nuts, 3 chains x 30 draws" in repr(res)
    tr = res.traces()
    assert tr.batch_shape == (3,)


def test_chain_result_and_mcmc_result_share_the_chain_draw_layout() -> None:
    from functools import partial

    from genmlx.core import select

    tr, _ = normal_mean.vgenerate((YS,), choicemap({"ys": YS}), 4, key=mx.random.key(13))
    cr = chain(partial(mh, selection_or_proposal=select("mu")), tr, 60,
               key=mx.random.key(14), addresses=["mu"])
    assert cr.layout == "draw_chain" and cr.samples["mu"].shape == (60, 4)
    assert cr.draws["mu"].shape == (4, 60)
    np.testing.assert_array_equal(np.array(cr.draws["mu"]),
                                  np.array(to_chain_draw(cr)["mu"]))
    assert float(ess_bulk(cr)) == pytest.approx(
        float(ess_bulk(cr.draws["mu"], layout="chain_draw")), rel=1e-6)
    single = chain(partial(mh, selection_or_proposal=select("mu")),
                   normal_mean.generate((YS,), choicemap({"ys": YS}), key=mx.random.key(0))[0],
                   20, key=mx.random.key(1), addresses=["mu"])
    assert single.layout == "draw" and single.draws["mu"].shape == (1, 20)


def test_to_inference_data() -> None:
    arviz = pytest.importorskip("arviz")
    res = mcmc(normal_mean, (YS,), choicemap({"ys": YS}), kernel="mala", n_chains=2,
               n_warmup=50, n_samples=40, key=mx.random.key(15), **_quiet())
    idata = res.to_inference_data()
    assert idata.posterior["mu"].shape == (2, 40)
    assert idata.sample_stats["accept_prob"].shape == (2, 40)
    ess = float(arviz.ess(idata, var_names=["mu"])["mu"])
    assert ess == pytest.approx(res.summary()["mu"]["ess_bulk"], rel=1e-3)


def test_argument_errors_name_the_argument() -> None:
    obs = choicemap({"ys": YS})
    with pytest.raises(ValueError, match="n_chains must be an int of at least 1"):
        mcmc(normal_mean, (YS,), obs, n_chains=0)
    with pytest.raises(ValueError, match="thin must be an int"):
        mcmc(normal_mean, (YS,), obs, thin=0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        mcmc(normal_mean, (YS,), obs, kernel="gibbs")
    with pytest.raises(ValueError, match="adapt must be"):
        mcmc(normal_mean, (YS,), obs, adapt="global")
    with pytest.raises(ValueError, match="target_accept must be in"):
        mcmc(normal_mean, (YS,), obs, target_accept=1.5)
    with pytest.raises(ValueError, match="step_size must be finite and positive"):
        mcmc(normal_mean, (YS,), obs, step_size=-1.0)
