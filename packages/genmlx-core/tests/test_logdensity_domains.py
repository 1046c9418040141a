"""Domains that depend on other choices are rebuilt on every log-density evaluation.

GARCH(1,1) constrains ``beta1 < 1 - alpha1``: with ``beta1 ~ uniform(0, 1 - alpha1)``
the bijector of ``beta1`` must use the ``alpha1`` of the point being evaluated, not the
one seen when the model was analysed — in the compiled function, batched over chains,
and in the maps between the vector and choice maps.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from genmlx.core import Distribution, choicemap, gen, logdensity
from genmlx.core import constraints as C
from genmlx.core.testing.models import normal


class Uniform(Distribution):
    name = "uniform"
    params = ("low", "high")

    def domain(self, low: Any, high: Any) -> C.Constraint:
        return C.interval(low, high)

    def sample(
        self, key: mx.array, low: Any, high: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        lo, hi = mx.array(low), mx.array(high)
        u = mx.random.uniform(shape=tuple(shape) + mx.broadcast_shapes(lo.shape, hi.shape), key=key)
        return lo + (hi - lo) * u

    def log_prob(self, value: Any, low: Any, high: Any) -> mx.array:
        x, lo, hi = mx.array(value), mx.array(low), mx.array(high)
        inside = mx.logical_and(x > lo, x < hi)
        return mx.where(inside, -mx.log(hi - lo), -mx.inf)


uniform = Uniform()


@gen
def garch_like():
    alpha1 = uniform(0.0, 1.0) @ "alpha1"
    beta1 = uniform(0.0, 1.0 - alpha1) @ "beta1"
    normal(alpha1 + beta1, 0.1) @ "y"


def _logit(u: float) -> float:
    return math.log(u) - math.log1p(-u)


def _expected(ua: float, ub: float, y: float) -> float:
    """log p + log-Jacobian at unconstrained (ua, ub), in double precision."""
    sa = 1 / (1 + math.exp(-ua))
    hi = 1 - sa
    sb = 1 / (1 + math.exp(-ub))
    b = hi * sb
    lp = 0.0 - math.log(hi)  # uniform(0, 1) and uniform(0, 1 - alpha)
    z = (y - (sa + b)) / 0.1
    lp += -0.5 * z * z - math.log(0.1) - 0.5 * math.log(2 * math.pi)
    ld = math.log(sa * (1 - sa)) + math.log(hi) + math.log(sb * (1 - sb))
    return lp + ld


def test_dependent_upper_bound_follows_the_other_choice() -> None:
    ld = logdensity(garch_like, (), choicemap({"y": 0.7}))
    points = [(-2.0, 0.5), (0.0, 0.0), (1.5, -1.0), (3.0, 2.0)]
    for ua, ub in points:
        v = float(ld(mx.array([ua, ub])))
        assert v == pytest.approx(_expected(ua, ub, 0.7), rel=1e-5, abs=1e-5)
        vals = ld.constrain(mx.array([ua, ub]))
        a, b = float(vals["alpha1"]), float(vals["beta1"])
        assert 0 < b < 1 - a  # the value respects the bound of this point
    # batched over chains: each row uses its own alpha1
    y = mx.array(points)
    vs = ld(y)
    np.testing.assert_allclose(
        np.array(vs), [_expected(a, b, 0.7) for a, b in points], rtol=1e-5, atol=1e-5
    )
    cons = ld.constrain(y)
    assert bool(mx.all(cons["beta1"] < 1 - cons["alpha1"]))


def test_gradient_through_the_dependent_bound() -> None:
    ld = logdensity(garch_like, (), choicemap({"y": 0.7}))
    y0 = mx.array([0.4, -0.3])
    _, g = ld.value_and_grad(y0)
    eps = 1e-3
    for i in range(2):
        e = np.zeros(2, dtype=np.float32)
        e[i] = eps
        fd = (_expected(0.4 + e[0], -0.3 + e[1], 0.7) - _expected(0.4 - e[0], -0.3 - e[1], 0.7))
        assert float(g[i]) == pytest.approx(fd / (2 * eps), rel=1e-3, abs=1e-3)


def test_choicemap_round_trip_uses_each_points_bound() -> None:
    ld = logdensity(garch_like, (), choicemap({"y": 0.7}))
    for a, b in [(0.2, 0.5), (0.8, 0.1), (0.5, 0.45)]:
        y = ld.from_choicemap(choicemap({"alpha1": a, "beta1": b}))
        np.testing.assert_allclose(
            np.array(y), [_logit(a), _logit(b / (1 - a))], rtol=1e-4, atol=1e-5
        )
        back = ld.constrain(y)
        assert float(back["beta1"]) == pytest.approx(b, rel=1e-5)
