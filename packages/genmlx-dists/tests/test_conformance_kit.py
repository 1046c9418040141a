"""The distribution conformance kit over every genmlx.dists distribution.

``genmlx.core.testing.check_distribution`` (sampler against density by goodness-of-fit
tests, normalisation, gradients against finite differences, shapes under
broadcasting, batched against unbatched sampling, ``mx.compile``, and the GFI laws)
runs on every distribution registered by the package and on distributions built by
the constructors:

* unmarked (fast, part of ``nox -s tests``): each distribution's first
  ``example_params`` tuple, with the kit's default sample size (20000) and one
  hypothesis-drawn key for the exact checks and the GFI laws;
* ``@pytest.mark.slow`` (``nox -s tests-slow``): every ``example_params`` tuple with
  three keys.

A failure prints the whole report: every check, with the statistic that failed.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import pytest

import genmlx.dists as gd
from genmlx.core import Distribution
from genmlx.core.testing import check_distribution
from genmlx.dists._plugin import DISTRIBUTION_NAMES
from genmlx.dists.examples import examples


def a32(x: Any) -> mx.array:
    return mx.array(x, dtype=mx.float32)


def _first() -> list[Any]:
    return [
        pytest.param(getattr(gd, n), examples(getattr(gd, n))[0], id=n)
        for n in DISTRIBUTION_NAMES
    ]


def _all() -> list[Any]:
    return [
        pytest.param(getattr(gd, n), p, id=f"{n}-{i}")
        for n in DISTRIBUTION_NAMES
        for i, p in enumerate(examples(getattr(gd, n)))
    ]


# Distributions built by the constructors (not registered: the constructors are
# functions). Tuple parameters are a product's per-component parameter tuples.
def _constructed() -> list[Any]:
    expo = gd.exponential
    cases: list[tuple[str, Distribution, tuple[Any, ...]]] = [
        ("mixture", gd.mixture(gd.normal), (a32([0.3, 0.7]), a32([-2.0, 2.0]), a32([1.0, 0.5]))),
        (
            "mixture-batched",
            gd.mixture(gd.normal),
            (a32([[0.3, 0.7], [0.9, 0.1]]), a32([-1.0, 3.0]), 1.0),
        ),
        ("mixture-discrete", gd.mixture(gd.poisson), (a32([0.5, 0.5]), a32([1.0, 8.0]))),
        ("mixture-het", gd.mixture([gd.normal, expo]), (a32([0.4, 0.6]), (0.0, 1.0), (2.0,))),
        ("product", gd.product(gd.normal, expo), ((a32([0.0, 1.0]), 1.0), (2.0,))),
        ("iid", gd.iid(gd.normal, 3), (a32([0.0, 1.0]), 0.5)),
        ("iid-discrete", gd.iid(gd.bernoulli, 2), (0.3,)),
        ("transformed-exp", gd.transformed(gd.normal, gd.exp_bijector), (0.0, 0.5)),
        ("transformed-sigmoid", gd.transformed(gd.normal, gd.sigmoid_bijector), (0.5, 1.0)),
        ("transformed-affine", gd.transformed(gd.gamma, gd.affine(1.0, 2.0)), (2.0, 1.0)),
    ]
    return [pytest.param(d, p, id=name) for name, d, p in cases]


@pytest.mark.parametrize(("dist", "params"), _first())
def test_kit_first_example(dist: Distribution, params: tuple[Any, ...]) -> None:
    check_distribution(dist, params, max_examples=1)


@pytest.mark.parametrize(("dist", "params"), _constructed())
def test_kit_constructed(dist: Distribution, params: tuple[Any, ...]) -> None:
    check_distribution(dist, params, max_examples=1)


@pytest.mark.slow
@pytest.mark.parametrize(("dist", "params"), _all())
def test_kit_every_example(dist: Distribution, params: tuple[Any, ...]) -> None:
    check_distribution(dist, params, max_examples=3)
