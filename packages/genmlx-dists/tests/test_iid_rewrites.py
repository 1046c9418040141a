"""The iid-statistics rewrite of genmlx.core.rewrites for the distributions that provide
sufficient statistics: the rewritten score equals the direct sum of log densities, at
interior parameters, at the support's edges and for invalid parameters."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import analyze, choicemap, config, gen, logdensity, rewrites
from genmlx.dists import bernoulli, exponential, normal, poisson


def _both(model, args, cm):
    analyze(model, args)
    with config.score_checks(False):
        on, _ = model.assess(args, cm)
        with rewrites.enabled(False):
            off, _ = model.assess(args, cm)
    return float(on), float(off)


@gen
def coin(n):
    z = normal(0.0, 1.5) @ "z"
    bernoulli(mx.sigmoid(z) * mx.ones(n)) @ "flips"


@gen
def coin_p(n):
    p = normal(0.5, 1.0) @ "p"  # may leave [0, 1]: -inf there
    bernoulli(p * mx.ones(n)) @ "flips"


@gen
def counts(n):
    lam = exponential(0.5) @ "lam"
    poisson(lam * mx.ones(n)) @ "k"


@gen
def waits(n):
    r = exponential(1.0) @ "r"
    exponential(mx.broadcast_to(r, (n,))) @ "t"


FLIPS = mx.array(np.random.default_rng(0).uniform(size=30) < 0.7)
K = mx.array(np.random.default_rng(1).poisson(3.0, size=25).astype(np.int32))
T = mx.array(np.random.default_rng(2).exponential(0.5, size=20).astype(np.float32))


@pytest.mark.parametrize(
    "model,args,cm,rewritten",
    [
        (coin, (30,), {"z": 0.4, "flips": FLIPS}, "flips"),
        (counts, (25,), {"lam": 2.7, "k": K}, "k"),
        (waits, (20,), {"r": 1.7, "t": T}, "t"),
    ],
)
def test_rewritten_equals_direct(model, args, cm, rewritten):
    cm = choicemap(cm)
    assert f"rewrite '{rewritten}': iid statistics" in repr(analyze(model, args, cm))
    on, off = _both(model, args, cm)
    assert on == pytest.approx(off, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("p", [0.0, 1.0, 1.5, -0.2, 0.3])
@pytest.mark.parametrize("data", ["mixed", "all_true", "all_false"])
def test_bernoulli_edges(p, data):
    flips = {
        "mixed": FLIPS,
        "all_true": mx.ones(30, dtype=mx.bool_),
        "all_false": mx.zeros(30, dtype=mx.bool_),
    }[data]
    on, off = _both(coin_p, (30,), choicemap({"p": p, "flips": flips}))
    if math.isinf(off):
        assert on == off
    else:
        assert on == pytest.approx(off, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("lam", [0.0, 1e-3, 4.0])
def test_poisson_edges(lam):
    zero = mx.zeros(25, dtype=mx.int32)
    for data in (K, zero):
        on, off = _both(counts, (25,), choicemap({"lam": lam, "k": data}))
        if math.isinf(off):
            assert on == off
        else:
            assert on == pytest.approx(off, rel=1e-5, abs=1e-4)


def test_log_density_gradient_through_the_statistics():
    obs = choicemap({"flips": FLIPS})
    ld1 = logdensity(coin, (30,), obs)
    with rewrites.enabled(False):
        ld0 = logdensity(coin, (30,), obs)
        y = mx.array([[-1.0], [0.2], [2.5]])
        v0, g0 = ld0.value_and_grad(y)
    v1, g1 = ld1.value_and_grad(y)
    np.testing.assert_allclose(np.asarray(v1), np.asarray(v0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-4, atol=1e-4)
