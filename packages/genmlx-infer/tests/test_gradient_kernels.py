"""Tests for MALA, HMC and MAP optimisation (genmlx.infer.gradient_kernels)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import choicemap, compile, gen, select
from genmlx.dists import bernoulli, normal
from genmlx.infer.gradient_kernels import hmc, mala, map_optimize

N = 2000


@gen
def normal_normal():
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu, 1.0) @ "y"


# posterior of mu given y = 1: N(0.5, 0.5)
NN_OBS = choicemap({"y": 1.0})
NN_MEAN, NN_VAR = 0.5, 0.5


@gen
def correlated():
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    normal(a + b, 0.5) @ "y"


# posterior of (a, b) given y = 1: precision [[5, 4], [4, 5]], mean (4/9, 4/9)
CORR_OBS = choicemap({"y": 1.0})
CORR_MEAN = np.array([4.0 / 9.0, 4.0 / 9.0])
CORR_COV = np.array([[5.0, -4.0], [-4.0, 5.0]]) / 9.0

X = np.array([[1.0, -1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 0.5]], dtype=np.float32)
Y = np.array([-0.5, 0.4, 1.1, 2.3, 0.6], dtype=np.float32)
SIGMA = 0.5


XS = mx.array(X)


@gen
def linreg():
    # the design matrix is a constant of the model (not an argument): accept_reject's
    # where_trace selects every trace leaf along the chain axis, args included
    w = normal(mx.zeros(2), 1.0) @ "w"
    normal(XS @ w, SIGMA) @ "ys"


def linreg_posterior() -> tuple[np.ndarray, np.ndarray]:
    prec = np.eye(2) + X.T.astype(np.float64) @ X / SIGMA**2
    cov = np.linalg.inv(prec)
    return cov @ (X.T.astype(np.float64) @ Y / SIGMA**2), cov


def run_chain(kernel, tr, n_steps, seed, **kw):
    key = mx.random.key(seed)
    accepted = None
    for _ in range(n_steps):
        key, sub = mx.random.split(key)
        tr, info = kernel(tr, key=sub, **kw)
        accepted = info.accepted
        mx.eval(tr.score, accepted)
    return tr, accepted


def assert_moments(samples: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    """Mean and covariance of N independent final states within 5 standard errors."""
    s = samples.reshape(samples.shape[0], -1).astype(np.float64)
    n = s.shape[0]
    mean, cov = np.atleast_1d(mean), np.atleast_2d(cov)
    m = s.mean(axis=0)
    se_m = s.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(m - mean) < 5 * se_m), (m, mean, se_m)
    c = s - mean
    for i in range(s.shape[1]):
        for j in range(s.shape[1]):
            prod = c[:, i] * c[:, j]
            se = prod.std(ddof=1) / math.sqrt(n)
            assert abs(prod.mean() - cov[i, j]) < 5 * se, (i, j, prod.mean(), cov[i, j], se)


def init(model, obs, args=(), seed=0):
    return model.vgenerate(args, obs, N, key=mx.random.key(seed))[0]


def test_hmc_normal_normal():
    tr = init(normal_normal, NN_OBS)
    tr, acc = run_chain(hmc, tr, 60, 1, selection=select("mu"), step_size=0.4, n_leapfrog=4)
    assert acc.shape == (N,)
    assert_moments(np.array(tr["mu"]), np.array(NN_MEAN), np.array(NN_VAR))


def test_hmc_defaults_are_gen_jl_s():
    # Gen.jl's hmc(trace, selection; L=10, eps=0.1): the defaults give that exact move
    tr = init(normal_normal, NN_OBS)
    a, info_a = hmc(tr, select("mu"), key=mx.random.key(3))
    b, info_b = hmc(tr, select("mu"), step_size=0.1, n_leapfrog=10, key=mx.random.key(3))
    assert mx.array_equal(a["mu"], b["mu"]) and mx.array_equal(info_a.accepted, info_b.accepted)
    c, _ = hmc(tr, select("mu"), step_size=0.1, n_leapfrog=9, key=mx.random.key(3))
    assert not mx.array_equal(a["mu"], c["mu"])


def test_mala_normal_normal():
    tr = init(normal_normal, NN_OBS)
    tr, acc = run_chain(mala, tr, 150, 2, selection=select("mu"), step_size=0.8)
    assert 0.3 < float(mx.mean(acc.astype(mx.float32))) < 1.0
    assert_moments(np.array(tr["mu"]), np.array(NN_MEAN), np.array(NN_VAR))


def _ab(tr) -> np.ndarray:
    return np.stack([np.array(tr["a"]), np.array(tr["b"])], axis=1)


def test_hmc_correlated_gaussian():
    tr = init(correlated, CORR_OBS)
    tr, _ = run_chain(hmc, tr, 80, 3, selection=select("a", "b"), step_size=0.2, n_leapfrog=8)
    assert_moments(_ab(tr), CORR_MEAN, CORR_COV)


@pytest.mark.parametrize(
    "mass",
    [mx.array([2.0, 0.5]), mx.array(np.linalg.inv(CORR_COV).astype(np.float32))],
    ids=["diagonal", "dense"],
)
def test_hmc_mass_matrix_correlated_gaussian(mass):
    tr = init(correlated, CORR_OBS)
    tr, _ = run_chain(
        hmc, tr, 60, 4, selection=select("a", "b"), step_size=0.2, n_leapfrog=6, mass=mass
    )
    assert_moments(_ab(tr), CORR_MEAN, CORR_COV)


def test_mala_correlated_gaussian():
    tr = init(correlated, CORR_OBS)
    tr, _ = run_chain(mala, tr, 300, 5, selection=select("a", "b"), step_size=0.25)
    assert_moments(_ab(tr), CORR_MEAN, CORR_COV)


def test_hmc_bayesian_linear_regression():
    mean, cov = linreg_posterior()
    obs = choicemap({"ys": mx.array(Y)})
    tr = init(linreg, obs)
    tr, _ = run_chain(hmc, tr, 60, 6, selection=select("w"), step_size=0.12, n_leapfrog=8)
    assert_moments(np.array(tr["w"]), mean, cov)


def test_single_trace_kernels():
    tr, _ = correlated.generate((), CORR_OBS, key=mx.random.key(0))
    for kernel, kw in [
        (hmc, {"step_size": 0.2, "n_leapfrog": 3}),
        (mala, {"step_size": 0.3}),
    ]:
        new, info = kernel(tr, select("a", "b"), key=mx.random.key(1), **kw)
        assert info.accepted.shape == () and info.accepted.dtype == mx.bool_
        assert new.batch_shape == ()
        assert new["y"].item() == 1.0
        # the new score is the model's joint log density at the new values
        ld, _ = correlated.assess((), new.get_choices())
        assert abs(ld.item() - new.score.item()) < 1e-5
        if not info.accepted.item():
            assert new["a"].item() == tr["a"].item()


def test_rejected_chains_keep_their_state():
    tr = init(normal_normal, NN_OBS)
    # a huge step: most proposals are rejected and those chains must not move
    new, info = hmc(tr, select("mu"), step_size=50.0, n_leapfrog=1, key=mx.random.key(7))
    a = np.array(info.accepted)
    assert a.sum() < N // 2
    np.testing.assert_array_equal(np.array(new["mu"])[~a], np.array(tr["mu"])[~a])
    assert not np.any(np.array(new["mu"])[a] == np.array(tr["mu"])[a])


def test_compiled_hmc_chain_equals_interpreted():
    tr = init(correlated, CORR_OBS)
    sel = select("a", "b")

    def chain(t, key):
        for _ in range(3):
            key, sub = mx.random.split(key)
            t, info = hmc(t, sel, step_size=0.2, n_leapfrog=3, key=sub)
        return t, info.accepted

    t1, a1 = chain(tr, mx.random.key(11))
    t2, a2 = compile(chain)(tr, mx.random.key(11))
    np.testing.assert_allclose(np.array(t1["a"]), np.array(t2["a"]), atol=1e-5)
    np.testing.assert_allclose(np.array(t1["b"]), np.array(t2["b"]), atol=1e-5)
    np.testing.assert_allclose(np.array(t1.score), np.array(t2.score), atol=1e-4)
    np.testing.assert_array_equal(np.array(a1), np.array(a2))


def test_map_optimize_conjugate_mode():
    # posterior of mu given y = 3: N(1.5, 0.5), mode 1.5
    tr, _ = normal_normal.generate((), choicemap({"y": 3.0}), key=mx.random.key(0))
    out = map_optimize(tr, select("mu"))
    assert abs(out["mu"].item() - 1.5) < 1e-4
    # linear regression: the posterior mode is the posterior mean; batched chains
    mean, _ = linreg_posterior()
    trb = init(linreg, choicemap({"ys": mx.array(Y)}))
    outb = map_optimize(trb, select("w"), max_steps=300)
    np.testing.assert_allclose(np.array(outb["w"]), np.broadcast_to(mean, (N, 2)), atol=1e-4)
    ld, _ = linreg.assess((), out_choices := outb.get_choices())
    assert out_choices.batch_shape == (N,)
    np.testing.assert_allclose(np.array(ld), np.array(outb.score), atol=1e-3)


def test_discrete_selection_is_rejected():
    @gen
    def m():
        z = bernoulli(0.3) @ "z"
        normal(mx.where(z, 1.0, 0.0), 1.0) @ "x"

    tr = m.simulate((), key=mx.random.key(0))
    with pytest.raises(TypeError, match="z"):
        hmc(tr, select("z", "x"), step_size=0.1, n_leapfrog=2, key=mx.random.key(1))
    with pytest.raises(TypeError, match="z"):
        mala(tr, select("z"), step_size=0.1, key=mx.random.key(1))
    with pytest.raises(ValueError, match="mass"):
        hmc(tr, select("x"), step_size=0.1, n_leapfrog=2, key=mx.random.key(1), mass=mx.ones(3))
