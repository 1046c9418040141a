"""Automatic conjugacy: the evidence and posterior of every family against closed forms
(scipy), detection and its refusals, marginal vs joint weights, Rao-Blackwellised
importance sampling with a variance ratio derived in closed form, the Rao-Blackwellised
particle filter, and the Gibbs kernels.

Statistical bounds: means within 5 standard errors; a variance ratio within the 0.999
quantiles of the F distribution around its exact value.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import special, stats

from genmlx.core import StaticModelError, choicemap, gen
from genmlx.dists import (
    bernoulli,
    beta,
    binomial,
    categorical,
    dirichlet,
    exponential,
    gamma,
    mv_normal,
    normal,
    poisson,
)
from genmlx.infer import (
    collapsed_gibbs,
    conjugate_gibbs,
    conjugate_posterior,
    conjugate_structure,
    importance_sampling,
    particle_filter,
    rb_importance_sampling,
    rb_particle_filter,
)


# ---------------------------------------------------------------- every family
@gen
def beta_bernoulli(n):
    p = beta(2.0, 3.0) @ "p"
    bernoulli(mx.full((n,), p)) @ "flips"


@gen
def beta_binomial(ns):
    p = beta(1.5, 2.0) @ "p"
    binomial(ns, p) @ "k"


@gen
def gamma_poisson(exposure):
    rate = gamma(2.0, 1.5) @ "rate"
    poisson(exposure * rate) @ "y"


@gen
def gamma_exponential():
    rate = gamma(3.0, 2.0) @ "rate"
    exponential(rate) @ "x1"
    exponential(2.0 * rate) @ "x2"


@gen
def dirichlet_categorical(n):
    theta = dirichlet(mx.array([1.0, 2.0, 0.5])) @ "theta"
    categorical(mx.broadcast_to(theta, (n, 3))) @ "y"


@gen
def normal_scalar():
    mu = normal(1.0, 2.0) @ "mu"
    normal(mu, 0.5) @ "y"


@gen
def normal_iid(n):
    mu = normal(1.0, 2.0) @ "mu"
    normal(mx.full((n,), mu), 0.5) @ "ys"


SIGMA_W = np.array([[1.0, 0.3], [0.3, 2.0]])
X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])


@gen
def mvn_regression(xs):
    w = mv_normal(mx.zeros(2), mx.array(SIGMA_W)) @ "w"
    mv_normal(xs @ w + 1.0, 0.2 * mx.eye(4)) @ "y"


def test_beta_bernoulli():
    flips = np.array([True, True, False, True, True])
    r = conjugate_posterior(beta_bernoulli, (5,), {"flips": mx.array(flips)})
    h, n = flips.sum(), len(flips)
    assert float(r.log_ml) == pytest.approx(
        special.betaln(2 + h, 3 + n - h) - special.betaln(2, 3), abs=1e-4
    )
    assert float(r.posteriors["p"].params["alpha"]) == 2 + h
    assert float(r.posteriors["p"].params["beta"]) == 3 + n - h
    assert r.marginalized == {"p": "beta–bernoulli (children: flips)"}
    assert r.weight_kind == "marginal" and r.method == "conjugate"


def test_beta_binomial():
    ns, ks = np.array([10.0, 5.0, 8.0]), np.array([3, 2, 6])
    r = conjugate_posterior(beta_binomial, (mx.array(ns),), {"k": mx.array(ks)})
    want = (
        np.log(special.comb(ns, ks)).sum()
        + special.betaln(1.5 + ks.sum(), 2 + (ns - ks).sum())
        - special.betaln(1.5, 2)
    )
    assert float(r.log_ml) == pytest.approx(want, abs=1e-4)
    post = r.posteriors["p"]
    assert float(post.mean()) == pytest.approx(stats.beta(1.5 + 11, 2 + 12).mean(), abs=1e-6)


def test_gamma_poisson_with_exposures():
    e, y = np.array([1.0, 2.0, 0.5]), np.array([2, 5, 0])
    r = conjugate_posterior(gamma_poisson, (mx.array(e),), {"y": mx.array(y)})
    a, b = 2.0, 1.5
    want = (
        np.sum(y * np.log(e))
        - np.sum(special.gammaln(y + 1))
        + a * np.log(b)
        - special.gammaln(a)
        + special.gammaln(a + y.sum())
        - (a + y.sum()) * np.log(b + e.sum())
    )
    assert float(r.log_ml) == pytest.approx(want, abs=1e-4)
    assert float(r.posteriors["rate"].params["shape"]) == a + y.sum()
    assert float(r.posteriors["rate"].params["rate"]) == pytest.approx(b + e.sum())


def test_gamma_exponential():
    r = conjugate_posterior(gamma_exponential, (), {"x1": 0.5, "x2": 1.2})
    a, b, c, x = 3.0, 2.0, np.array([1.0, 2.0]), np.array([0.5, 1.2])
    want = (
        np.log(c).sum()
        + a * np.log(b)
        - special.gammaln(a)
        + special.gammaln(a + 2)
        - (a + 2) * np.log(b + (c * x).sum())
    )
    assert float(r.log_ml) == pytest.approx(want, abs=1e-4)
    assert r.marginalized["rate"].startswith("gamma–exponential")


def test_dirichlet_categorical():
    y = np.array([0, 2, 1, 1, 0, 1])
    r = conjugate_posterior(dirichlet_categorical, (6,), {"y": mx.array(y)})
    al, cnt = np.array([1.0, 2.0, 0.5]), np.bincount(y, minlength=3)
    want = (
        special.gammaln(al.sum())
        - special.gammaln(al.sum() + 6)
        + np.sum(special.gammaln(al + cnt) - special.gammaln(al))
    )
    assert float(r.log_ml) == pytest.approx(want, abs=1e-4)
    np.testing.assert_allclose(np.asarray(r.posteriors["theta"].params["alpha"]), al + cnt)


def test_normal_normal_scalar_and_iid():
    r = conjugate_posterior(normal_scalar, (), {"y": 0.4})
    assert float(r.log_ml) == pytest.approx(stats.norm.logpdf(0.4, 1.0, math.sqrt(4.25)), abs=1e-4)
    ys = np.array([0.3, 0.9, 1.4])
    r = conjugate_posterior(normal_iid, (3,), {"ys": mx.array(ys)})
    cov = 4.0 * np.ones((3, 3)) + 0.25 * np.eye(3)
    assert float(r.log_ml) == pytest.approx(
        stats.multivariate_normal.logpdf(ys, np.ones(3), cov), abs=1e-4
    )
    prec = 1 / 4 + 3 / 0.25
    post = r.posteriors["mu"]
    assert float(post.params["mu"]) == pytest.approx((1 / 4 + ys.sum() / 0.25) / prec, abs=1e-5)
    assert float(post.params["sigma"]) == pytest.approx(prec**-0.5, abs=1e-5)


def test_mvn_linear_gaussian():
    y = np.array([1.2, 2.0, 3.1, 1.5])
    r = conjugate_posterior(mvn_regression, (mx.array(X),), {"y": mx.array(y)})
    cov = X @ SIGMA_W @ X.T + 0.2 * np.eye(4)
    assert float(r.log_ml) == pytest.approx(
        stats.multivariate_normal.logpdf(y, np.ones(4), cov), abs=1e-4
    )
    S_post = np.linalg.inv(np.linalg.inv(SIGMA_W) + X.T @ X / 0.2)
    m_post = S_post @ (X.T @ (y - 1.0) / 0.2)
    post = r.posteriors["w"]
    np.testing.assert_allclose(np.asarray(post.params["mean"]), m_post, atol=1e-4)
    np.testing.assert_allclose(np.asarray(post.params["cov"]), S_post, atol=1e-4)
    draws = r.sample(4000, key=mx.random.key(0))["w"]
    se = np.sqrt(np.diag(S_post) / 4000)
    assert np.all(np.abs(np.asarray(mx.mean(draws, axis=0)) - m_post) < 5 * se)


@gen
def gaussian_chain():
    a = normal(0.0, 1.0) @ "a"
    b = normal(2.0 * a, 1.0) @ "b"
    normal(b - a, 0.5) @ "y"


def test_linear_gaussian_block_of_several_latents():
    r = conjugate_posterior(gaussian_chain, (), {"y": 1.0})
    # y = a + e_b + e_y: var 1 + 1 + 0.25
    assert float(r.log_ml) == pytest.approx(stats.norm.logpdf(1.0, 0.0, 1.5), abs=1e-4)
    assert "linear-gaussian block" in r.marginalized["a"]
    assert set(r.block_posteriors) == {("a", "b")}


def test_batched_observations():
    ys = np.array([[0.3, 0.9, 1.4], [1.0, 2.0, 3.0]])
    obs = choicemap({"ys": mx.array(ys)}).with_batch_shape((2,))
    r = conjugate_posterior(normal_iid, (3,), obs)
    cov = 4.0 * np.ones((3, 3)) + 0.25 * np.eye(3)
    for b in range(2):
        want = stats.multivariate_normal.logpdf(ys[b], np.ones(3), cov)
        assert float(r.log_ml[b]) == pytest.approx(want, abs=1e-4)
    assert r.posteriors["mu"].params["mu"].shape == (2,)


@gen
def grouped_rates(group, exposure):
    rates = gamma(mx.full((3,), 2.0), 1.0) @ "rates"
    poisson(exposure * rates[group]) @ "counts"


def test_elementwise_groups():
    g = np.array([0, 1, 1, 2, 0])
    e = np.array([1.0, 0.5, 2.0, 1.0, 3.0])
    y = np.array([3, 0, 4, 1, 5])
    r = conjugate_posterior(grouped_rates, (mx.array(g), mx.array(e)), {"counts": mx.array(y)})
    want = np.sum(y * np.log(e)) - np.sum(special.gammaln(y + 1))
    for j in range(3):
        yj, ej = y[g == j].sum(), e[g == j].sum()
        want += (
            2.0 * np.log(1.0)
            - special.gammaln(2.0)
            + special.gammaln(2 + yj)
            - (2 + yj) * np.log(1 + ej)
        )
    assert float(r.log_ml) == pytest.approx(want, abs=1e-4)


# ---------------------------------------------------------------- refusals
@gen
def scale_depends():
    s = gamma(2.0, 1.0) @ "s"
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu, s) @ "y"


@gen
def not_affine():
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu**2, 1.0) @ "y"


@gen
def squared_prob():
    p = beta(2.0, 2.0) @ "p"
    bernoulli(p * p) @ "y"


def test_what_is_not_conjugate_is_said():
    plan = conjugate_structure(scale_depends, (), {"y": 1.0})
    assert plan.marginalized == {"mu": "linear-gaussian (children: y)"}
    assert plan.remaining == ["s"] and "s" in plan.rejected
    assert not plan.fully_conjugate
    with pytest.raises(StaticModelError, match="rb_importance_sampling"):
        conjugate_posterior(scale_depends, (), {"y": 1.0})
    assert "quadratic" in conjugate_structure(not_affine, (), {"y": 1.0}).rejected["mu"]
    assert "linearly" in conjugate_structure(squared_prob, (), {"y": True}).rejected["p"]


# ---------------------------------------------------------------- Rao-Blackwellised IS
@gen
def shifted(n):
    s = bernoulli(0.3) @ "s"
    mu = normal(0.0, 2.0) @ "mu"
    normal(mx.full((n,), mu + mx.where(s, 3.0, 0.0)), 1.0) @ "y"


Y1 = 2.5


def _z_shifted():
    return 0.3 * stats.norm.pdf(Y1, 3.0, math.sqrt(5)) + 0.7 * stats.norm.pdf(Y1, 0.0, math.sqrt(5))


def test_rb_weights_are_marginal_not_joint():
    res = rb_importance_sampling(shifted, (1,), {"y": mx.array([Y1])}, 64, key=mx.random.key(0))
    assert res.weight_kind == "marginal"
    assert res.marginalized == {"mu": "linear-gaussian (children: y)"}
    s = np.asarray(res.traces["s"])
    raw = np.asarray(res.log_weights + res.log_ml_estimate) + math.log(64)
    # each weight is log p(y | s): mu integrated out ...
    marginal = stats.norm.logpdf(Y1, 3.0 * s, math.sqrt(5))
    np.testing.assert_allclose(raw, marginal, atol=1e-4)
    # ... and not the joint log p(y | s, mu) of the particle's trace
    mu = np.asarray(res.traces["mu"])
    joint = stats.norm.logpdf(Y1, mu + 3.0 * s, 1.0)
    assert np.max(np.abs(raw - joint)) > 0.1
    # the trace itself keeps the joint score of all its choices
    score = np.asarray(res.traces.score)
    want = np.log(np.where(s, 0.3, 0.7)) + stats.norm.logpdf(mu, 0, 2) + joint
    np.testing.assert_allclose(score, want, atol=1e-4)
    # each particle's mu was drawn from its exact conditional N(m_s, v)
    cond = res.conditionals["mu"]
    np.testing.assert_allclose(np.asarray(cond.params["mu"]), (Y1 - 3.0 * s) * 4 / 5, atol=1e-4)


def test_rb_importance_sampling_variance_against_its_closed_form():
    """Plain IS weights p(y | s, mu) against RB weights p(y | s): both unbiased for Z;
    per-particle variances in closed form (Gaussian integrals):

    E[p(y|s,mu)²] = Σ_s p(s) N(y; 3s, 4 + 1/2) / (2√π),   E[p(y|s)²] = Σ_s p(s) N(y; 3s, 5)².
    """
    z = _z_shifted()
    e2_plain = sum(
        ps * stats.norm.pdf(Y1, 3.0 * s, math.sqrt(4.5)) / (2 * math.sqrt(math.pi))
        for s, ps in ((1, 0.3), (0, 0.7))
    )
    e2_rb = sum(
        ps * stats.norm.pdf(Y1, 3.0 * s, math.sqrt(5)) ** 2 for s, ps in ((1, 0.3), (0, 0.7))
    )
    ratio = (e2_plain - z**2) / (e2_rb - z**2)
    R, N = 400, 25
    obs = {"y": mx.array([Y1])}
    rb = rb_importance_sampling(shifted, (1,), obs, R * N, key=mx.random.key(1))
    plain = importance_sampling(shifted, (1,), obs, R * N, key=mx.random.key(2))

    def replicates(lw, lml):
        w = np.exp(np.asarray(lw + lml, dtype=np.float64) + math.log(R * N)).reshape(R, N)
        return w.mean(axis=1)  # R independent estimates of Z, N particles each

    zr = replicates(rb.log_weights, rb.log_ml_estimate)
    zp = replicates(plain.log_weights, plain.log_ml_estimate)
    assert abs(zr.mean() - z) < 5 * zr.std(ddof=1) / math.sqrt(R)
    assert abs(zp.mean() - z) < 5 * zp.std(ddof=1) / math.sqrt(R)
    observed = zp.var(ddof=1) / zr.var(ddof=1)
    f = stats.f.ppf(0.999, R - 1, R - 1)
    assert ratio / f < observed < ratio * f, (observed, ratio)
    assert observed / f > 1.0  # significantly lower variance with mu integrated out


# ---------------------------------------------------------------- RB particle filter
@gen
def level_with_jumps(t):
    level = normal(0.0, 2.0) @ "level"
    for i in range(t):
        jump = bernoulli(0.2) @ ("jump", i)
        normal(level + mx.where(jump, 3.0, 0.0), 0.5) @ ("y", i)


YS_J = [0.2, 3.1, 0.1, 0.3, 2.8]


def _exact_jumps():
    import itertools

    T = len(YS_J)
    tot = []
    for js in itertools.product([0, 1], repeat=T):
        cov = 4 * np.ones((T, T)) + 0.25 * np.eye(T)
        lp = np.sum(np.log(np.where(np.array(js), 0.2, 0.8)))
        tot.append(lp + stats.multivariate_normal.logpdf(np.array(YS_J), 3.0 * np.array(js), cov))
    return special.logsumexp(tot)


def _run_rbpf(key_int, n):
    st = rb_particle_filter(
        level_with_jumps, (1,), {("y", 0): YS_J[0]}, n, key=mx.random.key(key_int)
    )
    for t in range(1, len(YS_J)):
        st = st.resample(key=mx.random.key(1000 * key_int + 2 * t))
        st = st.step((t + 1,), {("y", t): YS_J[t]}, key=mx.random.key(1000 * key_int + 2 * t + 1))
    return st


def test_rb_particle_filter_is_unbiased_and_says_what_it_integrates():
    exact = _exact_jumps()
    st = _run_rbpf(0, 2000)
    assert st.weight_kind == "marginal"
    assert st.marginalized == {
        "level": "linear-gaussian (children: ('y', 0), ('y', 1), ('y', 2), ('y', 3), ('y', 4))"
    }
    assert float(st.log_ml_estimate) == pytest.approx(exact, abs=0.1)
    # the posterior mean of the level, Rao-Blackwellised, against the exact one
    import itertools

    T = len(YS_J)
    num = den = 0.0
    for js in itertools.product([0, 1], repeat=T):
        j = np.array(js)
        cov = 4 * np.ones((T, T)) + 0.25 * np.eye(T)
        w = np.prod(np.where(j, 0.2, 0.8)) * stats.multivariate_normal.pdf(
            np.array(YS_J), 3.0 * j, cov
        )
        prec = 1 / 4 + T / 0.25
        num += w * (np.sum(np.array(YS_J) - 3.0 * j) / 0.25) / prec
        den += w
    assert float(st.posterior_mean("level")) == pytest.approx(num / den, abs=0.05)


def test_rb_particle_filter_refuses_a_group_that_stops_being_conjugate():
    @gen
    def changes(t):
        level = normal(0.0, 2.0) @ "level"
        normal(level, 0.5) @ ("y", 0)
        if t > 1:
            normal(level * level, 0.5) @ ("y", 1)

    st = rb_particle_filter(changes, (1,), {("y", 0): 0.3}, 16, key=mx.random.key(0))
    with pytest.raises(StaticModelError, match="marginal and joint"):
        st.step((2,), {("y", 1): 0.5}, key=mx.random.key(1))


# ---------------------------------------------------------------- Gibbs kernels
@gen
def two_means(n):
    mus = normal(mx.zeros(2), 3.0) @ "mus"
    z = bernoulli(0.4) @ "z"
    normal(mx.full((n,), mx.where(z, mus[1], mus[0])), 1.0) @ "y"


YS_G = np.array([1.9, 2.4, 2.1])


def test_conjugate_gibbs_draws_the_exact_conditional():
    obs = {"y": mx.array(YS_G)}
    plan = conjugate_structure(two_means, (3,), obs)
    tr, _ = two_means.vgenerate((3,), {**obs, "z": True}, 4000, key=mx.random.key(0))
    new, info = conjugate_gibbs(tr, plan, key=mx.random.key(1))
    assert bool(mx.all(info.accepted))
    mus = np.asarray(new["mus"])
    prec = 1 / 9 + 3.0
    m1, sd1 = YS_G.sum() / prec, prec**-0.5
    assert abs(mus[:, 1].mean() - m1) < 5 * sd1 / math.sqrt(4000)
    assert mus[:, 1].std() == pytest.approx(sd1, rel=0.05)
    assert abs(mus[:, 0].mean()) < 5 * 3 / math.sqrt(4000)  # mus[0] has no data: its prior
    assert mus[:, 0].std() == pytest.approx(3.0, rel=0.05)


def test_collapsed_gibbs_draws_z_with_the_means_integrated_out():
    obs = {"y": mx.array(YS_G)}
    plan = conjugate_structure(two_means, (3,), obs)
    cov = 9 * np.ones((3, 3)) + np.eye(3)
    lw = np.array([np.log(0.6), np.log(0.4)]) + stats.multivariate_normal.logpdf(
        YS_G, np.zeros(3), cov
    )
    p1 = math.exp(lw[1] - special.logsumexp(lw))  # the same for both values: symmetric priors
    tr, _ = two_means.vgenerate((3,), obs, 4000, key=mx.random.key(0))
    new, _ = collapsed_gibbs(tr, "z", plan, key=mx.random.key(1))
    freq = float(np.mean(np.asarray(new["z"])))
    assert abs(freq - p1) < 5 * math.sqrt(p1 * (1 - p1) / 4000)
    # and the means were redrawn given the new z: the chosen component's mean sits near the data
    chosen = np.where(
        np.asarray(new["z"]), np.asarray(new["mus"])[:, 1], np.asarray(new["mus"])[:, 0]
    )
    prec = 1 / 9 + 3.0
    assert abs(chosen.mean() - YS_G.sum() / prec) < 5 * prec**-0.5 / math.sqrt(4000)


def test_plain_particle_filter_still_runs_on_the_same_model():
    # a sanity check that the RB filter's model is an ordinary model
    st = particle_filter(level_with_jumps, (1,), {("y", 0): YS_J[0]}, 8, key=mx.random.key(0))
    assert st.traces.batch_shape == (8,)


def test_gibbs_kernels_on_a_single_trace():
    obs = {"y": mx.array(YS_G)}
    plan = conjugate_structure(two_means, (3,), obs)
    tr = two_means.generate((3,), {**obs, "z": True}, key=mx.random.key(0)).trace
    new, info = conjugate_gibbs(tr, plan, key=mx.random.key(1))
    assert bool(info.accepted) and new.batch_shape == () and new["mus"].shape == (2,)
    # the move changed the conjugate latents and kept the rest
    assert bool(new["z"]) and not bool(mx.all(new["mus"] == tr["mus"]))
    moved, info = collapsed_gibbs(tr, "z", plan, key=mx.random.key(2))
    assert bool(info.accepted) and moved.batch_shape == ()
