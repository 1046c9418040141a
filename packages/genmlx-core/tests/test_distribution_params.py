"""Keyword parameters from the one ``params`` declaration of a distribution class."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import Distribution, gen
from genmlx.core.distribution import Param
from genmlx.core.testing.models import normal

K = mx.random.key


def test_declaration_is_normalised_to_param_records():
    assert normal.params == (Param("mu"), Param("sigma"))


def test_keywords_in_a_traced_call_equal_positions():
    @gen
    def by_kw():
        return normal(sigma=2.0, mu=1.0) @ "x"

    @gen
    def by_pos():
        return normal(1.0, 2.0) @ "x"

    a, b = by_kw.simulate((), key=K(3)), by_pos.simulate((), key=K(3))
    assert a.args == b.args == ()
    assert float(a["x"]) == float(b["x"])
    assert float(a.score) == float(b.score)
    assert normal(1.0, sigma=2.0).args == (1.0, 2.0)


def test_keywords_in_sample_and_log_prob():
    x = normal.sample(K(0), mu=1.0, sigma=2.0, shape=(5,))
    assert x.shape == (5,)
    assert mx.array_equal(x, normal.sample(K(0), 1.0, 2.0, shape=(5,)))
    lp = normal.log_prob(1.0, sigma=2.0, mu=1.0)
    assert float(lp) == pytest.approx(-math.log(2.0) - 0.5 * math.log(2 * math.pi), rel=1e-6)
    assert float(normal.log_prob(value=1.0, mu=1.0, sigma=2.0)) == float(lp)
    assert normal.sample(key=K(0), mu=0.0, sigma=1.0).shape == ()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: normal(mu=0.0), r"missing parameter\(s\) 'sigma'; call normal\(mu, sigma\)"),
        (lambda: normal(0.0), r"missing parameter\(s\) 'sigma'"),
        (lambda: normal(0.0, mu=1.0), "'mu' given both by position and as mu="),
        (lambda: normal(mu=0.0, sd=1.0), r"unknown parameter\(s\) 'sd'.*normal\(mu, sigma\)"),
        (lambda: normal(0.0, 1.0, 2.0), r"takes 2 parameter\(s\), got 3"),
        (lambda: normal.log_prob(0.0, mu=0.0), r"normal.log_prob: missing parameter\(s\) 'sigma'"),
        (lambda: normal.sample(K(0), 0.0, s=1.0), r"normal.sample: unknown parameter\(s\) 's'"),
    ],
)
def test_errors_name_the_operation_and_the_parameters(call, message):
    with pytest.raises(TypeError, match=message):
        call()


class _Rate(Distribution):
    """Exp(rate) with its shape parameter accepted under an alias that clashes with
    sample's ``shape=`` keyword (like gamma's ``shape``)."""

    name = "toy"
    params = (Param("shape", aliases=("alpha",)), "rate")

    def sample(self, key: mx.array, a: Any, rate: Any, *, shape: Any = ()) -> mx.array:
        u = mx.random.uniform(shape=tuple(shape), key=key)
        return -mx.log1p(-u) / (mx.array(rate) * mx.array(a))

    def log_prob(self, value: Any, a: Any, rate: Any) -> mx.array:
        r = mx.array(rate) * mx.array(a)
        return mx.log(r) - r * mx.array(value)


def test_aliases_and_the_reserved_shape_keyword():
    toy = _Rate()
    assert float(toy.log_prob(1.0, shape=2.0, rate=1.0)) == float(toy.log_prob(1.0, 2.0, 1.0))
    assert float(toy.log_prob(1.0, alpha=2.0, rate=1.0)) == float(toy.log_prob(1.0, 2.0, 1.0))
    assert toy.sample(K(0), alpha=2.0, rate=1.0, shape=(4,)).shape == (4,)
    with pytest.raises(TypeError, match="pass the parameter 'shape' by position or as alpha="):
        toy.sample(K(0), rate=1.0, shape=(4,))
    with pytest.raises(TypeError, match="given twice"):
        toy(shape=1.0, alpha=1.0, rate=1.0)


def test_a_declaration_that_does_not_match_the_methods_fails_at_class_creation():
    with pytest.raises(TypeError, match=r"declares 1 parameter\(s\).*takes 2"):

        class Bad(Distribution):
            params = ("mu",)

            def sample(self, key: Any, mu: Any, sigma: Any, *, shape: Any = ()) -> mx.array:
                raise NotImplementedError

            def log_prob(self, value: Any, mu: Any, sigma: Any) -> mx.array:
                raise NotImplementedError


def test_undeclared_distributions_take_positions_only():
    class Free(Distribution):
        name = "free"

        def sample(self, key: Any, *params: Any, shape: Any = ()) -> mx.array:
            return mx.zeros(tuple(shape))

        def log_prob(self, value: Any, *params: Any) -> mx.array:
            return mx.zeros(())

    free = Free()
    assert free(1.0, 2.0).args == (1.0, 2.0)
    with pytest.raises(TypeError, match="by position only"):
        free(mu=1.0)


def test_a_missing_sibling_package_says_what_to_install():
    # genmlx.nosuch is not a first-party name: the plain error stays
    code = (
        "import genmlx.core, genmlx.core._siblings as s\n"
        "s.SIBLINGS['nosuch'] = 'things'\n"
        "try:\n    import genmlx.nosuch\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "genmlx-nosuch package (things), which is not installed" in out.stdout
    assert "pip install genmlx-nosuch" in out.stdout


# ------------------------------------------------ plain numbers checked in Python
from genmlx.core import constraints as _C  # noqa: E402


class _Ranged(Distribution):
    """One parameter of each kind of domain (plain-number checks in params_valid)."""

    name = "ranged"
    params = (
        Param("mu", _C.real),
        Param("sigma", _C.positive),
        Param("p", _C.unit_interval),
        Param("low", _C.real),
        Param("high", lambda mu, sigma, p, low: _C.greater_than(low)),
        Param("b", _C.nonnegative, finite=False),
    )

    def sample(self, key: Any, *params: Any, shape: Any = ()) -> mx.array:
        return mx.zeros(shape)

    def log_prob(self, value: Any, *params: Any) -> mx.array:
        return mx.zeros(())


_VALUES = [0.0, 1.0, -1.0, 0.5, 0.1, 2.0, 1e-50, 1e39, -1e39]
_VALUES += [math.inf, -math.inf, math.nan, 3, -2, 0]


@pytest.mark.parametrize("seed", range(6))
def test_params_valid_plain_numbers_equal_the_array_path(seed: int) -> None:
    """params_valid judges plain numbers in Python (as float32, no array operations);
    the answer equals the one for the same numbers passed as float32 arrays, including
    float32 overflow (1e39 -> inf) and underflow (1e-50 -> 0), NaN and infinities."""
    import random

    rng = random.Random(seed)
    d = _Ranged()
    for _ in range(300):
        vals = [rng.choice(_VALUES) for _ in range(6)]
        plain = d.params_valid(*vals)
        arrays = d.params_valid(*[mx.array(v, dtype=mx.float32) for v in vals])
        mixed = d.params_valid(
            *[mx.array(v, dtype=mx.float32) if i % 2 else v for i, v in enumerate(vals)]
        )
        assert bool(plain.item()) == bool(arrays.item()) == bool(mixed.item()), vals
    # broadcasting: a plain number never changes the batch shape of the answer
    many = d.params_valid(mx.array([0.0, math.nan, 1.0]), 1.0, 0.5, 0.0, 1.0, 0.0)
    assert many.tolist() == [True, False, True]
    assert d.params_valid(mx.array([0.0, 1.0]), -1.0, 0.5, 0.0, 1.0, 0.0).tolist() == [False, False]


def test_mask_invalid_adds_no_operation_for_valid_plain_parameters() -> None:
    from genmlx.core.distribution import mask_invalid

    d = _Ranged()
    x = mx.array([1.0, 2.0])
    assert mask_invalid(d.params_valid(0.0, 1.0, 0.5, 0.0, 1.0, 0.0), x, mx.nan) is x
    out = mask_invalid(d.params_valid(0.0, -1.0, 0.5, 0.0, 1.0, 0.0), x, mx.nan)
    assert all(math.isnan(v) for v in out.tolist())
    out = mask_invalid(d.params_valid(mx.array([0.0, mx.inf]), 1.0, 0.5, 0.0, 1.0, 0.0), x, -mx.inf)
    assert out.tolist() == [1.0, -math.inf]
