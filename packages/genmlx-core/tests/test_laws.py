"""The conformance kit's GFI laws over the reference models, and the kit catching bugs."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import pytest

from genmlx.core import Distribution, gen
from genmlx.core.testing import check_gfi_laws, check_gfi_laws_at
from genmlx.core.testing.models import (
    beta_bernoulli,
    linear_regression,
    many_addresses,
    mixed,
    normal,
    two_normals,
)


@gen
def nested() -> Any:
    mu = two_normals() @ "inner"
    return normal(mu, 1.0) @ ("obs", 0)


@gen
def vector_site(xs: mx.array) -> Any:
    slope = normal(0.0, 1.0) @ "slope"
    return normal(slope * xs, 0.5) @ "ys"


@pytest.mark.parametrize(
    ("gf", "args", "batched"),
    [
        (two_normals, (), True),
        (beta_bernoulli, (), True),
        (linear_regression, (mx.array([1.0, 2.0, 3.0]),), True),
        (many_addresses, (), True),
        (mixed, (), False),
        (nested, (), True),
        (vector_site, (mx.linspace(0, 1, 7),), True),
        (normal, (0.5, 2.0), True),
    ],
    ids=["two_normals", "beta_bernoulli", "linreg", "many", "mixed", "nested", "vector", "normal"],
)
def test_reference_models_obey_the_laws(gf: Any, args: tuple[Any, ...], batched: bool) -> None:
    check_gfi_laws(gf, args, max_examples=4, batched=batched)


def test_kit_catches_a_gen_fn_whose_assess_disagrees_with_simulate() -> None:
    class Leaky(Distribution):
        name = "leaky"
        calls = 0

        def sample(self, key: mx.array, *, shape: tuple[int, ...] = ()) -> mx.array:
            return mx.random.normal(shape, key=key)

        def log_prob(self, value: Any) -> mx.array:
            # a stateful density: different every call -> simulate and assess disagree
            Leaky.calls += 1
            return -0.5 * mx.array(value) ** 2 + Leaky.calls

    with pytest.raises(AssertionError, match="simulate_assess"):
        check_gfi_laws_at(Leaky(), (), mx.random.key(0))


def test_kit_catches_wrong_update_weights() -> None:
    from genmlx.core.dsl import DynamicGenerativeFunction
    from genmlx.core.gfi import UpdateResult

    class BadUpdate(DynamicGenerativeFunction):
        def _update(self, trace: Any, constraints: Any, args: Any, argdiffs: Any, key: Any) -> Any:
            res = super()._update(trace, constraints, args, argdiffs, key)
            return UpdateResult(res.trace, res.weight + 1.0, res.retdiff, res.discard)

    bad = BadUpdate(two_normals.fn)
    # a no-op update never reaches _update (the base class returns the trace), so the
    # first law to see the extra 1.0 is update_full
    with pytest.raises(AssertionError, match="update_full: weight"):
        check_gfi_laws_at(bad, (), mx.random.key(0))
