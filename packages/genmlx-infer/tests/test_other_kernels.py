"""Tests for elliptical slice sampling and Gibbs by enumeration
(genmlx.infer.slice_sampling, genmlx.infer.gibbs_enumeration)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import choicemap, compile, gen
from genmlx.dists import bernoulli, categorical, mv_normal, normal, poisson
from genmlx.infer import elliptical_slice, gibbs

N = 2000


def run_chain(kernel, tr, n_steps, seed, **kw):
    key = mx.random.key(seed)
    accepted = None
    for _ in range(n_steps):
        key, sub = mx.random.split(key)
        tr, info = kernel(tr, key=sub, **kw)
        accepted = info.accepted
        mx.eval(tr.score, accepted)
    return tr, accepted


def assert_mean_var(s: np.ndarray, mean: float, var: float) -> None:
    s = s.astype(np.float64)
    n = s.shape[0]
    assert abs(s.mean() - mean) < 5 * s.std(ddof=1) / math.sqrt(n)
    sq = (s - mean) ** 2
    assert abs(sq.mean() - var) < 5 * sq.std(ddof=1) / math.sqrt(n)


@gen
def gauss_gauss():
    f = normal(1.0, 2.0) @ "f"
    normal(f, 0.5) @ "y"


# prior N(1, 4), likelihood N(y; f, 0.25) with y = 2: precision 1/4 + 4 = 4.25
GG_VAR = 1.0 / 4.25
GG_MEAN = GG_VAR * (1.0 / 4.0 + 2.0 / 0.25)


def test_elliptical_slice_gaussian_posterior():
    tr, _ = gauss_gauss.vgenerate((), choicemap({"y": 2.0}), N, key=mx.random.key(0))
    tr, acc = run_chain(elliptical_slice, tr, 25, 1, addr="f", mean=1.0, cov=4.0, max_shrinks=30)
    assert bool(mx.all(acc))
    assert_mean_var(np.array(tr["f"]), GG_MEAN, GG_VAR)


@gen
def gauss_vec():
    f = normal(mx.zeros(2), mx.array([1.0, math.sqrt(2.0)])) @ "f"
    normal(f[0] + f[1], 0.5) @ "y"


def test_elliptical_slice_vector_diagonal_cov():
    # posterior precision diag(1, 1/2) + 4 * 11^T; mean = cov @ (4 * y * [1, 1])
    prec = np.diag([1.0, 0.5]) + 4.0 * np.ones((2, 2))
    cov = np.linalg.inv(prec)
    mean = cov @ (4.0 * 1.0 * np.ones(2))
    tr, _ = gauss_vec.vgenerate((), choicemap({"y": 1.0}), N, key=mx.random.key(2))
    for c in (mx.array([1.0, 2.0]), mx.array([[1.0, 0.0], [0.0, 2.0]])):
        out, acc = run_chain(elliptical_slice, tr, 25, 3, addr="f", mean=0.0, cov=c, max_shrinks=30)
        assert bool(mx.all(acc))
        s = np.array(out["f"])
        for i in range(2):
            assert_mean_var(s[:, i], mean[i], cov[i, i])
        c01 = (s[:, 0] - mean[0]) * (s[:, 1] - mean[1])
        assert abs(c01.mean() - cov[0, 1]) < 5 * c01.std(ddof=1) / math.sqrt(N)


def test_elliptical_slice_single_trace_and_compiled():
    tr, _ = gauss_gauss.generate((), choicemap({"y": 2.0}), key=mx.random.key(0))
    new, info = elliptical_slice(tr, "f", 1.0, 4.0, key=mx.random.key(1))
    assert info.accepted.shape == () and bool(info.accepted)
    ld, _ = gauss_gauss.assess((), new.get_choices())
    assert abs(ld.item() - new.score.item()) < 1e-5
    trb, _ = gauss_gauss.vgenerate((), choicemap({"y": 2.0}), 50, key=mx.random.key(0))

    def chain(t, key):
        for _ in range(3):
            key, sub = mx.random.split(key)
            t, a_info = elliptical_slice(t, "f", 1.0, 4.0, key=sub, max_shrinks=10)
        return t, a_info.accepted

    t1, _ = chain(trb, mx.random.key(5))
    t2, _ = compile(chain)(trb, mx.random.key(5))
    np.testing.assert_allclose(np.array(t1["f"]), np.array(t2["f"]), atol=1e-5)


def test_elliptical_slice_rejects_discrete_choice():
    @gen
    def m():
        bernoulli(0.5) @ "z"

    with pytest.raises(TypeError, match="z"):
        elliptical_slice(m.simulate((), key=mx.random.key(0)), "z", 0.0, 1.0, key=mx.random.key(1))


@gen
def mixture_model():
    z = bernoulli(0.3) @ "z"
    normal(mx.where(z, 2.0, -1.0), 1.0) @ "x"


def test_gibbs_bernoulli_exact_conditional():
    x = 0.5
    l1 = 0.3 * math.exp(-0.5 * (x - 2.0) ** 2)
    l0 = 0.7 * math.exp(-0.5 * (x + 1.0) ** 2)
    p = l1 / (l0 + l1)
    n = 4 * N
    tr, _ = mixture_model.vgenerate((), choicemap({"x": x}), n, key=mx.random.key(0))
    # one Gibbs step samples the exact conditional whatever the starting state
    out, info = gibbs(tr, "z", key=mx.random.key(1))
    assert bool(mx.all(info.accepted)) and info.accepted.shape == (n,)
    z = np.array(out["z"]).astype(np.float64)
    assert abs(z.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    ld, _ = mixture_model.assess((), out.get_choices())
    np.testing.assert_allclose(np.array(ld), np.array(out.score), atol=1e-5)


@gen
def cat_model():
    k = categorical(mx.array([0.2, 0.3, 0.5])) @ "k"
    normal(k.astype(mx.float32), 1.0) @ "x"


def test_gibbs_categorical_with_support():
    x = 0.3
    w = np.array([0.2, 0.3, 0.5]) * np.exp(-0.5 * (x - np.arange(3)) ** 2)
    p = w / w.sum()
    n = 4 * N
    tr, _ = cat_model.vgenerate((), choicemap({"x": x}), n, key=mx.random.key(0))
    out, _ = run_chain(gibbs, tr, 3, 2, addr="k", support=mx.arange(3))
    k = np.array(out["k"])
    for i in range(3):
        assert abs((k == i).mean() - p[i]) < 5 * math.sqrt(p[i] * (1 - p[i]) / n)
    # single trace
    t1, _ = cat_model.generate((), choicemap({"x": x}), key=mx.random.key(0))
    new, info = gibbs(t1, "k", key=mx.random.key(3), support=mx.arange(3))
    assert bool(info.accepted) and new.batch_shape == () and int(new["k"].item()) in (0, 1, 2)
    # the support is found from the distribution at the address
    tr_b, _ = cat_model.vgenerate((), choicemap({"x": x}), 50, key=mx.random.key(4))
    a, _ = gibbs(tr_b, "k", key=mx.random.key(5))
    b, _ = gibbs(tr_b, "k", key=mx.random.key(5), support=mx.arange(3))
    np.testing.assert_array_equal(np.array(a["k"]), np.array(b["k"]))


@gen
def inner():
    k = categorical(mx.array([0.5, 0.25, 0.25])) @ "k"
    return k


@gen
def nested_model():
    k = inner() @ "sub"
    normal(k.astype(mx.float32), 0.5) @ "x"


def test_gibbs_finds_support_inside_sub_call():
    x = 1.8
    w = np.array([0.5, 0.25, 0.25]) * np.exp(-0.5 * ((x - np.arange(3)) / 0.5) ** 2)
    p = w / w.sum()
    n = 4 * N
    tr, _ = nested_model.vgenerate((), choicemap({"x": x}), n, key=mx.random.key(0))
    out, _ = gibbs(tr, ("sub", "k"), key=mx.random.key(1))
    k = np.array(out[("sub", "k")])
    for i in range(3):
        assert abs((k == i).mean() - p[i]) < 5 * math.sqrt(p[i] * (1 - p[i]) / n)


def test_gibbs_needs_an_enumerable_distribution():
    @gen
    def m():
        c = poisson(3.0) @ "c"
        normal(c.astype(mx.float32), 1.0) @ "x"

    tr, _ = m.generate((), choicemap({"x": 1.0}), key=mx.random.key(0))
    with pytest.raises(ValueError, match="support"):
        gibbs(tr, "c", key=mx.random.key(3))
    # an explicit (truncated) support works
    new, info = gibbs(tr, "c", key=mx.random.key(3), support=mx.arange(20))
    assert bool(info.accepted) and 0 <= int(new["c"].item()) < 20


def test_gibbs_compiled_equals_interpreted():
    tr, _ = mixture_model.vgenerate((), choicemap({"x": 0.5}), 100, key=mx.random.key(0))

    def chain(t, key):
        for _ in range(3):
            key, sub = mx.random.split(key)
            t, a_info = gibbs(t, "z", key=sub)
        return t, a_info.accepted

    t1, _ = chain(tr, mx.random.key(9))
    t2, _ = compile(chain)(tr, mx.random.key(9))
    np.testing.assert_array_equal(np.array(t1["z"]), np.array(t2["z"]))
    np.testing.assert_allclose(np.array(t1.score), np.array(t2.score), atol=1e-5)


S = np.array([[1.0, 0.6], [0.6, 2.0]])


@gen
def gauss_dense():
    f = mv_normal(mx.array([0.5, -0.5]), mx.array(S.astype(np.float32))) @ "f"
    normal(f[0] - f[1], 0.5) @ "y"


def test_elliptical_slice_dense_cov():
    a = np.array([1.0, -1.0])
    m0 = np.array([0.5, -0.5])
    prec = np.linalg.inv(S) + 4.0 * np.outer(a, a)
    cov = np.linalg.inv(prec)
    y = 0.3
    mean = cov @ (np.linalg.inv(S) @ m0 + 4.0 * y * a)
    tr, _ = gauss_dense.vgenerate((), choicemap({"y": y}), N, key=mx.random.key(6))
    out, acc = run_chain(
        elliptical_slice,
        tr,
        25,
        7,
        addr="f",
        mean=mx.array([0.5, -0.5]),
        cov=mx.array(S.astype(np.float32)),
        max_shrinks=30,
    )
    assert bool(mx.all(acc))
    s = np.array(out["f"])
    for i in range(2):
        assert_mean_var(s[:, i], mean[i], cov[i, i])
    c01 = (s[:, 0] - mean[0]) * (s[:, 1] - mean[1])
    assert abs(c01.mean() - cov[0, 1]) < 5 * c01.std(ddof=1) / math.sqrt(N)


def _single_chain_samples(kernel, tr, n_steps: int, seed: int, record: str) -> np.ndarray:
    """Values of ``record`` along one unbatched chain (after 50 burn-in steps)."""
    from genmlx.infer import chain

    res = chain(kernel, tr, n_steps, key=mx.random.key(seed), burn_in=50, addresses=[record])
    assert res.trace.batch_shape == ()
    return np.array(res.samples[record]).astype(np.float64)


def _ess(x: np.ndarray) -> float:
    from genmlx.infer.diagnostics import ess_bulk

    return float(ess_bulk(mx.array(x.astype(np.float32)).reshape(-1), layout="draw").item())


def test_elliptical_slice_single_chain_posterior():
    # one long unbatched chain: mean and variance within 5 SE, SE from the chain's ESS
    tr, _ = gauss_gauss.generate((), choicemap({"y": 2.0}), key=mx.random.key(3))
    kernel = lambda t, key: elliptical_slice(t, "f", 1.0, 4.0, key=key, max_shrinks=30)  # noqa: E731
    f = _single_chain_samples(kernel, tr, 500, 11, "f")
    assert abs(f.mean() - GG_MEAN) < 5 * math.sqrt(GG_VAR / _ess(f))
    sq = (f - f.mean()) ** 2
    assert abs(sq.mean() - GG_VAR) < 5 * GG_VAR * math.sqrt(2.0 / (_ess(sq) - 1.0))


def test_gibbs_single_chain_posterior():
    # z | x = 0.5 under the bernoulli mixture: exact P(z = 1 | x) from the two likelihoods
    x = 0.5
    l1 = 0.3 * math.exp(-0.5 * (x - 2.0) ** 2)
    l0 = 0.7 * math.exp(-0.5 * (x + 1.0) ** 2)
    p = l1 / (l0 + l1)
    tr, _ = mixture_model.generate((), choicemap({"x": x}), key=mx.random.key(4))
    z = _single_chain_samples(lambda t, key: gibbs(t, "z", key=key), tr, 300, 12, "z")
    # Gibbs on the only latent draws exact independent samples: ESS = number of draws
    assert abs(z.mean() - p) < 5 * math.sqrt(p * (1 - p) / len(z))
