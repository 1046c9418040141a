"""Constrained parameters in MAP, ADVI, importance sampling and gradient-based MCMC:
declared domains, bounds given by other choices, improper priors, ``factor`` and
models whose covariance is built from latent choices (differentiable Cholesky)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.combinators import Map
from genmlx.core import ImproperPriorError, choicemap, factor, gen, select
from genmlx.dists import flat, gamma, half_flat, mv_normal, normal, uniform
from genmlx.infer import advi, importance_sampling, map_optimize, mcmc

YS = mx.array([1.0, 2.0, 0.5, 1.5, 1.2])


@gen
def rate():
    gamma(3.0, 2.0) @ "lam"


def test_map_in_unconstrained_space_finds_the_constrained_mode() -> None:
    # mode of Gamma(3, rate 2) is (3 - 1) / 2 = 1 (not the mode of log lam, 3/2)
    tr = rate.simulate((), key=mx.random.key(0))
    out = map_optimize(tr, select("lam"), max_steps=300)
    assert float(out["lam"]) == pytest.approx(1.0, abs=1e-3)
    # batched chains from different starts all reach it, and never leave (0, ∞)
    trb = rate.vsimulate((), 16, key=mx.random.key(1))
    outb = map_optimize(trb, select("lam"), max_steps=300)
    np.testing.assert_allclose(np.array(outb["lam"]), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.array(outb.score), stats.gamma(3, scale=0.5).logpdf(1.0),
                               rtol=1e-4)


@gen
def garch_like(y):
    alpha1 = uniform(0.0, 1.0) @ "alpha1"
    beta1 = uniform(0.0, 1.0 - alpha1) @ "beta1"
    factor(mx.log1p(-alpha1)) @ "flat_beta1"  # beta1's density 1 on its range, as in Stan
    normal(0.3 + alpha1 * beta1, 0.05) @ "y"
    normal(alpha1, 0.2) @ "z"


def _grid_mode(y: float, z: float) -> tuple[float, float]:
    a = np.linspace(1e-4, 1 - 1e-4, 1201)[:, None]
    b = np.linspace(1e-4, 1 - 1e-4, 1201)[None, :] * (1 - a)  # b in (0, 1 - a)
    lp = stats.norm(0.3 + a * b, 0.05).logpdf(y) + stats.norm(a, 0.2).logpdf(z)
    i, j = np.unravel_index(np.argmax(lp), lp.shape)
    return float(a[i, 0]), float(b[i, j])


def test_map_with_a_bound_given_by_another_choice() -> None:
    obs = choicemap({"y": 0.42, "z": 0.6})
    tr, _ = garch_like.generate((0.0,), obs.merge(choicemap({"alpha1": 0.5, "beta1": 0.1})),
                                key=mx.random.key(0))
    out = map_optimize(tr, select("alpha1", "beta1"), max_steps=500)
    a, b = float(out["alpha1"]), float(out["beta1"])
    assert 0 < b < 1 - a
    # the mode is interior: alpha1 = z = 0.6 and alpha1 beta1 = y - 0.3 = 0.12
    ga, gb = _grid_mode(0.42, 0.6)
    assert (ga, gb) == pytest.approx((0.6, 0.2), abs=2e-3)
    assert a == pytest.approx(0.6, abs=1e-3) and b == pytest.approx(0.2, abs=1e-3)


def test_map_with_improper_priors_is_the_maximum_likelihood() -> None:
    @gen
    def m(ys):
        mu = flat() @ "mu"
        sigma = half_flat() @ "sigma"
        normal(mx.broadcast_to(mu, ys.shape), sigma) @ "ys"

    tr, _ = m.generate((YS,), choicemap({"ys": YS, "mu": 0.0, "sigma": 1.0}),
                       key=mx.random.key(0))
    out = map_optimize(tr, select("mu", "sigma"), max_steps=500)
    ys = np.array(YS, dtype=np.float64)
    assert float(out["mu"]) == pytest.approx(ys.mean(), abs=1e-3)
    assert float(out["sigma"]) == pytest.approx(ys.std(), abs=1e-3)  # MLE: ddof = 0


def test_map_inside_a_combinator_takes_domains() -> None:
    @gen
    def kernel(x):
        return gamma(3.0, 2.0) @ "s"

    @gen
    def mapped():
        Map(kernel)(mx.zeros(3)) @ "xs"

    tr = mapped.simulate((), key=mx.random.key(0))
    out = map_optimize(tr, select("xs"), max_steps=300, domains={"xs": "positive"})
    np.testing.assert_allclose(np.array(out[("xs", 0, "s")]), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.array([out[("xs", i, "s")] for i in range(3)]).ravel(), 1.0,
                               atol=1e-3)


def test_advi_with_improper_priors_and_factor() -> None:
    # flat prior on mu, a factor pulling it towards 2: posterior N(2, 1) exactly
    @gen
    def m():
        mu = flat() @ "mu"
        factor(-0.5 * (mu - 2.0) ** 2) @ "pull"

    a = advi(m, (), None, n_steps=400, n_samples=20, learning_rate=0.05, key=mx.random.key(0))
    assert a.loc["mu"].item() == pytest.approx(2.0, abs=0.1)
    assert a.scale["mu"].item() == pytest.approx(1.0, abs=0.15)


def test_prior_sampling_methods_refuse_improper_priors() -> None:
    @gen
    def m(ys):
        mu = flat() @ "mu"
        normal(mx.broadcast_to(mu, ys.shape), 1.0) @ "ys"

    with pytest.raises(ImproperPriorError, match=r"at 'mu': flat is an improper prior"):
        importance_sampling(m, (YS,), choicemap({"ys": YS}), 10, key=mx.random.key(0))
    with pytest.raises(ImproperPriorError, match="improper prior"):
        mcmc(m, (YS,), choicemap({"ys": YS}), kernel="mh", n_warmup=0, n_samples=2)


# ------------------------------------------------------------- a GP with NUTS and ADVI
XS = mx.linspace(-1.0, 1.0, 5)
YG = mx.array([0.3, -0.1, 0.4, 0.9, 0.6])
NOISE = 0.3


@gen
def gp_marginal(xs):
    rho = gamma(4.0, 4.0) @ "rho"
    d = xs[:, None] - xs[None, :]
    cov = mx.exp(-0.5 * d * d / (rho * rho)) + NOISE**2 * mx.eye(xs.shape[0])
    mv_normal(mx.zeros(xs.shape[0]), cov) @ "y"


def _rho_posterior_grid() -> tuple[float, float]:
    x, y = np.array(XS, dtype=np.float64), np.array(YG, dtype=np.float64)
    r = np.linspace(1e-3, 6.0, 6000)
    lp = stats.gamma(4.0, scale=0.25).logpdf(r)
    d2 = (x[:, None] - x[None, :]) ** 2
    for i, rr in enumerate(r):
        cov = np.exp(-0.5 * d2 / rr**2) + NOISE**2 * np.eye(x.size)
        lp[i] += stats.multivariate_normal(np.zeros(x.size), cov).logpdf(y)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = float((w * r).sum())
    return mean, float(math.sqrt((w * (r - mean) ** 2).sum()))


def test_gp_hyperparameter_by_nuts_matches_quadrature() -> None:
    # the covariance depends on rho: the gradient goes through the Cholesky's VJP
    mean, sd = _rho_posterior_grid()
    res = mcmc(gp_marginal, (XS,), choicemap({"y": YG}), n_chains=4, n_warmup=150,
               n_samples=250, key=mx.random.key(0), warn=False)
    row = res.summary()["rho"]
    z = (row["mean"] - mean) / (sd / math.sqrt(row["ess_bulk"]))
    assert abs(z) <= 5.0, (row, mean, sd)
    assert abs(row["sd"] / sd - 1) < 0.15
    # and ADVI on the same model runs through the same gradient
    a = advi(gp_marginal, (XS,), {"y": YG}, n_steps=300, n_samples=10, learning_rate=0.05,
             key=mx.random.key(1))
    draws = a.sample(4000, key=mx.random.key(2))["rho"]
    assert bool(mx.all(mx.isfinite(a.elbo_history)).item())
    assert float(mx.mean(draws)) == pytest.approx(mean, rel=0.2)


# ------------------------------------------------------------- factor in SMC weights
A_, Q_, R_, S0_ = 0.9, 0.7, 0.5, 1.0
LG_YS = [0.4, 0.9, 1.6, 1.2, 0.3, -0.5, -0.9, -0.2, 0.6, 1.4]


def _kalman(ys: list[float]) -> float:
    m, v, ll = 0.0, S0_**2, 0.0
    for t, y in enumerate(ys):
        if t > 0:
            m, v = A_ * m, A_**2 * v + Q_**2
        s = v + R_**2
        ll += -0.5 * (math.log(2 * math.pi * s) + (y - m) ** 2 / s)
        k = v / s
        m, v = m + k * (y - m), (1 - k) * v
    return ll


def test_factor_terms_enter_smc_weights() -> None:
    # the observation y_t ~ N(x_t, r) written as a factor of its log density: the
    # particle filter's log marginal likelihood estimates the Kalman filter's exactly
    from genmlx.combinators import Unfold
    from genmlx.infer import particle_filter

    @gen
    def kernel(t, x, ys):
        prev = mx.where(t == 0, 0.0, A_ * x)
        x = normal(prev, mx.where(t == 0, S0_, Q_)) @ "x"
        factor(normal.log_prob(ys[t], x, R_)) @ "y"
        return x

    model = Unfold(kernel)
    ys = mx.array(LG_YS)
    exact = _kalman(LG_YS)
    ests = []
    for run in range(4):
        keys = mx.random.split(mx.random.key(40 + run), 2 * len(LG_YS))
        st = particle_filter(model, (1, mx.array(0.0), ys), None, 2000, key=keys[0])
        for t in range(1, len(LG_YS)):
            st = st.resample("systematic", key=keys[2 * t])
            st = st.step((t + 1, mx.array(0.0), ys), None, key=keys[2 * t + 1])
        ests.append(float(st.log_ml_estimate))
    mean, se = float(np.mean(ests)), float(np.std(ests, ddof=1) / math.sqrt(len(ests)))
    assert abs(mean - exact) <= 5 * se + 0.05, (ests, exact)
