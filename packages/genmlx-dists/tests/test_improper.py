"""Improper priors ``flat`` and ``half_flat``: scored everywhere, sampled nowhere."""

from __future__ import annotations

import math

import mlx.core as mx
import pytest

from genmlx.core import ImproperPriorError, choicemap, gen, logdensity
from genmlx.dists import flat, half_flat, normal


@gen
def model(ys):
    mu = flat() @ "mu"
    b = flat(2) @ "b"
    sigma = half_flat() @ "sigma"
    normal(mx.broadcast_to(mu + b[0] - b[1], ys.shape), sigma) @ "ys"


YS = mx.array([1.0, 2.0, 0.5])


def test_log_prob_and_domain() -> None:
    assert flat.log_prob(mx.array([-1e30, 0.0, 3.0])).tolist() == [0.0, 0.0, 0.0]
    assert float(flat.log_prob(mx.inf)) == -math.inf
    assert half_flat.log_prob(mx.array([-1.0, 0.0, 2.0])).tolist() == [-math.inf, -math.inf, 0.0]
    assert repr(flat.domain()) == "real" and repr(half_flat.domain()) == "positive"
    assert flat.is_improper and half_flat.is_improper


def test_assess_counts_only_the_likelihood() -> None:
    cm = choicemap({"mu": 0.5, "b": mx.array([1.0, 0.5]), "sigma": 2.0, "ys": YS})
    lp, _ = model.assess((YS,), cm)
    expect = sum(-0.5 * ((y - 1.0) / 2.0) ** 2 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
                 for y in YS.tolist())
    assert float(lp) == pytest.approx(expect, rel=1e-5)


def test_logdensity_and_gradient_in_unconstrained_space() -> None:
    ld = logdensity(model, (YS,), choicemap({"ys": YS}))
    assert ld.addresses == ["mu", "b", "sigma"]
    assert [b.size for b in ld.blocks] == [1, 2, 1]
    y = mx.array([0.3, 0.2, -0.1, math.log(1.5)])
    v, g = ld.value_and_grad(y)
    loc, s = 0.3 + 0.2 + 0.1, 1.5
    # log N(ys; loc, s) + log-Jacobian of sigma = exp(u) (u = log s)
    expect = sum(-0.5 * ((yy - loc) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
                 for yy in YS.tolist()) + math.log(s)
    assert float(v) == pytest.approx(expect, rel=1e-5)
    dmu = sum((yy - loc) / s**2 for yy in YS.tolist())
    assert g.tolist()[:3] == pytest.approx([dmu, dmu, -dmu], rel=1e-4)


def test_sampling_is_refused_with_the_operation_and_address() -> None:
    with pytest.raises(ImproperPriorError, match=r"simulate at 'mu': flat is an improper"):
        model.simulate((YS,), key=mx.random.key(0))
    with pytest.raises(ImproperPriorError, match=r"generate at 'sigma': half_flat"):
        model.generate((YS,), choicemap({"mu": 0.0, "b": mx.zeros(2), "ys": YS}),
                       key=mx.random.key(0))
    with pytest.raises(ImproperPriorError, match="importance sampling"):
        model.vgenerate((YS,), choicemap({"ys": YS}), 4, key=mx.random.key(0))
    with pytest.raises(ImproperPriorError):
        flat.sample(mx.random.key(0))


def test_nested_address_is_named_in_full() -> None:
    @gen
    def inner():
        return flat() @ "z"

    @gen
    def outer():
        inner() @ "sub"

    with pytest.raises(ImproperPriorError, match=r"simulate at \('sub', 'z'\)"):
        outer.simulate((), key=mx.random.key(0))


def test_bad_shape_argument() -> None:
    with pytest.raises(TypeError, match="the value's shape"):
        flat(2.5)
    with pytest.raises(TypeError, match="one optional argument"):
        flat(2, 3)
