"""Tests for the No-U-Turn sampler and its warm-up (genmlx.infer.nuts)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import choicemap, compile, gen, select
from genmlx.dists import normal
from genmlx.infer import nuts, nuts_warmup
from genmlx.infer.diagnostics import ess_bulk, ess_mean

N = 500  # chains
DRAWS = 100
BURN = 30
# (chains, draws): the quick size, and the brief's full size behind the slow marker
SIZES = [
    pytest.param((N, DRAWS), id="quick"),
    pytest.param((1000, 200), id="full", marks=pytest.mark.slow),
]


@gen
def normal_normal():
    mu = normal(0.0, 1.0) @ "mu"
    normal(mu, 1.0) @ "y"


# posterior of mu given y = 1: N(0.5, 0.5)
NN_OBS = choicemap({"y": 1.0})


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
    w = normal(mx.zeros(2), 1.0) @ "w"
    normal(XS @ w, SIGMA) @ "ys"


def linreg_posterior() -> tuple[np.ndarray, np.ndarray]:
    prec = np.eye(2) + X.T.astype(np.float64) @ X / SIGMA**2
    cov = np.linalg.inv(prec)
    return cov @ (X.T.astype(np.float64) @ Y / SIGMA**2), cov


def sample(tr, sel, read, *, seed, step_size, max_depth, mass=None, burn=BURN, draws=DRAWS):
    """Run a compiled NUTS chain; return draws ``[chains, draws, d]`` (``read(trace)``)."""
    step = compile(
        lambda t, k, e: nuts(t, sel, key=k, step_size=e, max_depth=max_depth, mass=mass)
    )
    key = mx.random.key(seed)
    eps = mx.array(step_size, dtype=mx.float32)
    out, accs = [], []
    for i in range(burn + draws):
        key, sub = mx.random.split(key)
        tr, info = step(tr, sub, eps)
        if i >= burn:
            v = read(tr)
            mx.eval(v, info.accept_prob)
            out.append(v)
            accs.append(info.accept_prob)
        else:
            mx.eval(tr.score)
    s = mx.stack(out, axis=-2)  # [..., draws, d]
    if s.ndim == 2:  # a single chain
        s = s[None]
    return s, mx.stack(accs)


def _ess(series: mx.array) -> np.ndarray:
    """The smaller of bulk and mean ESS of ``[chains, draws, k]`` series (conservative)."""
    return np.minimum(
        np.array(ess_bulk(series, layout="chain_draw")),
        np.array(ess_mean(series, layout="chain_draw")),
    )


def assert_moments(s: mx.array, mean: np.ndarray, cov: np.ndarray) -> None:
    """Mean and covariance of within-chain draws ``[chains, draws, d]`` within 5 SE.

    The standard error of a mean of correlated draws is ``sd / sqrt(ESS)``.
    """
    mean, cov = np.atleast_1d(mean), np.atleast_2d(cov)
    d = mean.shape[0]
    a = np.array(s, dtype=np.float64).reshape(-1, d)
    m = a.mean(axis=0)
    se_m = a.std(axis=0, ddof=1) / np.sqrt(_ess(s))
    assert np.all(np.abs(m - mean) < 5 * se_m), (m, mean, se_m)
    c = s - mx.array(mean.astype(np.float32))
    for i in range(d):
        for j in range(d):
            prod = c[..., i] * c[..., j]
            p = np.array(prod, dtype=np.float64).ravel()
            se = p.std(ddof=1) / math.sqrt(float(_ess(prod[..., None])[0]))
            assert abs(p.mean() - cov[i, j]) < 5 * se, (i, j, p.mean(), cov[i, j], se)


def _ab(tr) -> mx.array:
    return mx.stack([tr["a"], tr["b"]], axis=-1)


@pytest.mark.parametrize("size", SIZES)
def test_nuts_normal_normal(size):
    n, draws = size
    tr = normal_normal.vgenerate((), NN_OBS, n, key=mx.random.key(0))[0]
    s, acc = sample(
        tr,
        select("mu"),
        lambda t: t["mu"][..., None],
        seed=1,
        step_size=0.9,
        max_depth=4,
        draws=draws,
    )
    assert s.shape == (n, draws, 1)
    assert_moments(s, np.array([0.5]), np.array([[0.5]]))
    assert 0.6 < float(mx.mean(acc)) <= 1.0


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "mass",
    [
        None,
        pytest.param(mx.array([2.0, 0.5]), marks=pytest.mark.slow),
        mx.array(np.linalg.inv(CORR_COV).astype(np.float32)),
    ],
    ids=["identity", "diagonal", "dense"],
)
def test_nuts_correlated_gaussian(mass, size):
    n, draws = size
    tr = correlated.vgenerate((), CORR_OBS, n, key=mx.random.key(2))[0]
    # a dense mass equal to the posterior precision whitens the target: bigger steps
    dense = mass is not None and mass.ndim == 2
    s, _ = sample(
        tr,
        select("a", "b"),
        _ab,
        seed=3,
        step_size=0.9 if dense else 0.25,
        max_depth=4 if dense else 5,
        mass=mass,
        draws=draws,
    )
    assert_moments(s, CORR_MEAN, CORR_COV)


@pytest.mark.parametrize("size", SIZES)
def test_nuts_bayesian_linear_regression(size):
    n, draws = size
    mean, cov = linreg_posterior()
    tr = linreg.vgenerate((), choicemap({"ys": mx.array(Y)}), n, key=mx.random.key(4))[0]
    s, _ = sample(
        tr, select("w"), lambda t: t["w"], seed=5, step_size=0.15, max_depth=5, draws=draws
    )
    assert_moments(s, mean, cov)


@gen
def banana():
    a = normal(0.0, 1.0) @ "a"
    normal(0.5 * a * a, 0.5) @ "b"


@pytest.mark.parametrize("size", SIZES)
def test_nuts_curved_non_gaussian_target(size):
    # no observations: the target is the prior, E = (0, 0.5),
    # Cov = diag(1, 0.25 + 0.25·Var(a²)) = diag(1, 0.75)
    n, draws = size
    tr = banana.vsimulate((), n, key=mx.random.key(20))
    s, _ = sample(tr, select("a", "b"), _ab, seed=21, step_size=0.3, max_depth=5, draws=draws)
    assert_moments(s, np.array([0.0, 0.5]), np.diag([1.0, 0.75]))


def test_nuts_single_trace_chain():
    tr, _ = correlated.generate((), CORR_OBS, key=mx.random.key(6))
    new, info = nuts(tr, select("a", "b"), key=mx.random.key(7), step_size=0.3, max_depth=4)
    assert info.accepted.shape == () and info.accepted.dtype == mx.bool_ and info.accepted.item()
    assert new.batch_shape == ()
    assert new["y"].item() == 1.0
    ld, _ = correlated.assess((), new.get_choices())
    assert abs(ld.item() - new.score.item()) < 1e-5
    s, _ = sample(tr, select("a", "b"), _ab, seed=8, step_size=0.3, max_depth=4, draws=1000)
    assert s.shape == (1, 1000, 2)
    assert_moments(s, CORR_MEAN, CORR_COV)


def test_nuts_info_bounds_and_divergence():
    tr = normal_normal.vgenerate((), NN_OBS, 200, key=mx.random.key(9))[0]
    new, info = nuts(tr, select("mu"), key=mx.random.key(10), step_size=0.2, max_depth=3)
    n = np.array(info.n_leapfrog)
    assert np.all((n >= 1) & (n <= 2**3 - 1))
    assert np.all(np.array(info.depth) <= 3)
    assert not np.any(np.array(info.diverging))
    # a huge step diverges at the first leapfrog step: the chains stay where they were
    new, info = nuts(tr, select("mu"), key=mx.random.key(11), step_size=1e4, max_depth=4)
    assert np.all(np.array(info.diverging))
    assert np.all(np.array(info.n_leapfrog) == 1)
    np.testing.assert_array_equal(np.array(new["mu"]), np.array(tr["mu"]))
    with pytest.raises(ValueError, match="mass"):
        nuts(tr, select("mu"), key=mx.random.key(1), mass=mx.ones(3))


@pytest.mark.parametrize("target", [0.8, 0.95])
def test_dual_averaging_reaches_target_accept(target):
    # posterior of mu given y = 1 with a wide prior and a tight likelihood: N(≈1, 0.01)
    @gen
    def tight():
        mu = normal(0.0, 3.0) @ "mu"
        normal(mu, 0.1) @ "y"

    tr = tight.vgenerate((), NN_OBS, 100, key=mx.random.key(12))[0]
    sel = select("mu")
    w = nuts_warmup(tr, sel, 100, key=mx.random.key(13), target_accept=target, max_depth=5)
    assert w.step_size.shape == () and w.mass.shape == (1,)
    # diagonal mass ≈ 1 / posterior variance (≈ 100)
    assert 50.0 < float(w.mass[0]) < 200.0
    _, acc = sample(
        w.trace,
        sel,
        lambda t: t["mu"][..., None],
        seed=14,
        step_size=w.step_size.item(),
        max_depth=5,
        mass=w.mass,
        burn=0,
        draws=50,
    )
    assert abs(float(mx.mean(acc)) - target) < 0.1


def test_compiled_nuts_chain_equals_interpreted():
    tr = correlated.vgenerate((), CORR_OBS, 50, key=mx.random.key(15))[0]
    sel = select("a", "b")
    mass = mx.array([1.5, 1.5])

    def chain(t, key):
        for _ in range(3):
            key, sub = mx.random.split(key)
            t, info = nuts(t, sel, key=sub, step_size=0.3, max_depth=3, mass=mass)
        return t, info.accepted

    t1, a1 = chain(tr, mx.random.key(16))
    t2, a2 = compile(chain)(tr, mx.random.key(16))
    np.testing.assert_allclose(np.array(t1["a"]), np.array(t2["a"]), atol=1e-5)
    np.testing.assert_allclose(np.array(t1["b"]), np.array(t2["b"]), atol=1e-5)
    np.testing.assert_allclose(np.array(t1.score), np.array(t2.score), atol=1e-4)
    np.testing.assert_array_equal(np.array(a1), np.array(a2))
    assert not np.allclose(np.array(t1["a"]), np.array(tr["a"]))


def test_warmup_dense_mass_estimates_posterior_covariance():
    tr = correlated.vgenerate((), CORR_OBS, 200, key=mx.random.key(17))[0]
    sel = select("a", "b")
    w = nuts_warmup(tr, sel, 100, key=mx.random.key(18), dense_mass=True, max_depth=5)
    assert w.mass.shape == (2, 2)
    # M⁻¹ ≈ posterior covariance (pooled over 200 chains × the slow window's draws)
    np.testing.assert_allclose(np.linalg.inv(np.array(w.mass)), CORR_COV, atol=0.06)
    # the whitened target allows a step near 1 (vs ≈ 0.3 with the identity mass)
    assert 0.5 < w.step_size.item() < 2.0
