"""``transformed`` with the core library's bijectors and domains (one Bijector type)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from genmlx.core import choicemap, gen, logdensity
from genmlx.core import constraints as C
from genmlx.core.bijectors import (
    Bijector as CoreBijector,
)
from genmlx.core.bijectors import (
    ExpBijector,
    OrderedBijector,
    StickBreakingBijector,
    biject_to,
)
from genmlx.dists import (
    Bijector,
    affine,
    exp_bijector,
    gamma,
    mv_normal,
    normal,
    sigmoid_bijector,
    transformed,
)


def test_one_bijector_type() -> None:
    for b in (exp_bijector, sigmoid_bijector, affine(1.0, 2.0)):
        assert isinstance(b, CoreBijector) and isinstance(b, Bijector)
    assert exp_bijector.domain is C.positive and sigmoid_bijector.domain == C.unit_interval
    # the core interface on the dists bijector: log_det_jacobian at the input
    assert float(exp_bijector.log_det_jacobian(mx.array(0.7))) == pytest.approx(0.7)


def test_core_exp_and_domain_shorthand_are_log_normal() -> None:
    xs = np.array([0.3, 1.0, 2.5])
    expect = stats.lognorm(s=0.5, scale=math.exp(0.2)).logpdf(xs)
    for d in (transformed(normal, ExpBijector()), transformed(normal, C.positive),
              transformed(normal, exp_bijector)):
        np.testing.assert_allclose(np.array(d.log_prob(mx.array(xs), 0.2, 0.5)), expect,
                                   rtol=1e-5)
        assert float(d.log_prob(-1.0, 0.2, 0.5)) == -math.inf
        assert d.domain(0.2, 0.5) == C.positive


def test_interval_domain_is_scaled_logit_normal() -> None:
    d = transformed(normal, C.interval(0.0, 2.0))
    # y = 2 σ(x): log p(y) = log N(logit(y/2)) - log(2 σ'(x))
    y = 0.5
    x = math.log((y / 2) / (1 - y / 2))
    s = 1 / (1 + math.exp(-x))
    expect = stats.norm(0.0, 1.0).logpdf(x) - math.log(2 * s * (1 - s))
    assert float(d.log_prob(y, 0.0, 1.0)) == pytest.approx(expect, rel=1e-5)
    assert float(d.log_prob(2.5, 0.0, 1.0)) == -math.inf


def test_stick_breaking_gives_a_density_on_the_simplex() -> None:
    # logistic-normal on the 3-simplex from a 2-vector normal base
    d = transformed(normal, StickBreakingBijector())
    assert d.event_ndim == 1
    mu = mx.array([0.3, -0.2])
    draws = d.sample(mx.random.key(0), mu, 1.0, shape=(4,))
    assert draws.shape == (4, 3)
    np.testing.assert_allclose(np.array(mx.sum(draws, axis=-1)), 1.0, atol=1e-6)
    v = mx.array([0.2, 0.5, 0.3])
    sb = StickBreakingBijector()
    u = sb.inverse(v)
    expect = float(mx.sum(normal.log_prob(u, mu, 1.0)) - sb.log_det_jacobian(u))
    assert float(d.log_prob(v, mu, 1.0)) == pytest.approx(expect, rel=1e-5)
    assert float(d.log_prob(mx.array([0.5, 0.6, -0.1]), mu, 1.0)) == -math.inf
    # batched values: one density per simplex
    assert d.log_prob(mx.stack([v, v]), mu, 1.0).shape == (2,)
    assert d.domain(mu, 1.0) is C.simplex


def test_ordered_vector_from_an_mv_normal_base() -> None:
    d = transformed(mv_normal, OrderedBijector())
    mean, cov = mx.zeros(3), mx.eye(3)
    x = d.sample(mx.random.key(1), mean, cov, shape=(50,))
    assert bool(mx.all(x[:, 1:] > x[:, :-1]))
    v = mx.array([-1.0, 0.5, 0.7])
    ob = OrderedBijector()
    u = ob.inverse(v)
    expect = float(mv_normal.log_prob(u, mean, cov) - ob.log_det_jacobian(u))
    assert float(d.log_prob(v, mean, cov)) == pytest.approx(expect, rel=1e-5)
    assert float(d.log_prob(mx.array([1.0, 0.5, 0.7]), mean, cov)) == -math.inf


def test_transformed_choice_in_a_static_model_has_its_domain() -> None:
    @gen
    def m():
        sigma = transformed(normal, C.positive)(0.0, 1.0) @ "sigma"
        normal(0.0, sigma) @ "y"

    ld = logdensity(m, (), choicemap({"y": 0.4}))
    assert repr(ld.blocks[0].domain) == "positive"
    u = 0.3
    s = math.exp(u)
    expect = (stats.lognorm(s=1.0).logpdf(s) + stats.norm(0, s).logpdf(0.4) + u)
    assert float(ld(mx.array([u]))) == pytest.approx(expect, rel=1e-5)


def test_non_real_base_has_unknown_domain_and_bad_bijector_is_refused() -> None:
    assert transformed(gamma, affine(1.0, 2.0)).domain(2.0, 1.0) is None
    with pytest.raises(TypeError, match="expected a bijector"):
        transformed(normal, "exp")  # type: ignore[arg-type]
    assert isinstance(biject_to(C.positive), CoreBijector)
