"""Example parameters of every distribution of genmlx.dists, for the conformance kit.

They are registered with each distribution (``register(dist, examples=...)`` in
:mod:`genmlx.dists._plugin`), so ``python -m genmlx.core.testing`` checks log density,
sampler, batching, gradients and the GFI laws on them; the tests use them too. Each
list has two or three parameter tuples, one with batched array parameters.

Example:
    >>> from genmlx.dists import normal
    >>> examples(normal)[0]
    (0.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

__all__ = ["EXAMPLES", "examples"]

EXAMPLES: dict[str, list[tuple[Any, ...]]] = {
    "normal": [
        (0.0, 1.0),
        (mx.array([-1.0, 0.5, 3.0]), mx.array([0.5, 1.0, 2.0])),
        (2.0, mx.array([[0.1], [10.0]])),
    ],
    "uniform": [
        (0.0, 1.0),
        (mx.array([-1.0, 0.0, 10.0]), mx.array([1.0, 1e-3, 20.0])),
    ],
    "exponential": [
        (1.0,),
        (mx.array([0.1, 2.0, 50.0]),),
    ],
    "half_normal": [
        (1.0,),
        (mx.array([0.1, 1.0, 30.0]),),
    ],
    "half_cauchy": [
        (1.0,),
        (mx.array([0.1, 1.0, 30.0]),),
    ],
    "log_normal": [
        (0.0, 1.0),
        (mx.array([-1.0, 0.0, 3.0]), mx.array([0.1, 0.5, 2.0])),
    ],
    "weibull": [
        (1.5, 2.0),
        (mx.array([0.5, 1.0, 5.0]), mx.array([1.0, 0.1, 10.0])),
    ],
    "pareto": [
        (1.0, 3.0),
        (mx.array([0.5, 1.0, 100.0]), mx.array([0.5, 2.0, 10.0])),
    ],
    "truncated_normal": [
        (0.0, 1.0, -1.0, 2.0),
        (0.0, 1.0, 8.0, 9.0),
        (
            mx.array([0.0, 1.0, -3.0]),
            mx.array([1.0, 0.5, 2.0]),
            mx.array([-math.inf, 0.0, -12.0]),
            mx.array([0.5, math.inf, -7.0]),
        ),
    ],
    "von_mises": [
        (0.5, 2.0),
        (mx.array([-3.0, 0.0, 3.0]), mx.array([0.0, 0.5, 500.0])),
    ],
    "wrapped_cauchy": [
        (0.5, 0.3),
        (mx.array([-3.0, 0.0, 3.0]), mx.array([0.0, 0.7, 0.9])),
    ],
    "wrapped_normal": [
        (0.5, 0.8),
        (mx.array([-3.0, 0.0, 3.0]), mx.array([0.3, 1.5, 3.0])),
    ],
    "bernoulli": [(0.3,), (mx.array([0.1, 0.5, 0.9]),)],
    "categorical": [
        (mx.array([0.2, 0.3, 0.5]),),
        (mx.array([[0.1, 0.9], [0.6, 0.4]]),),
    ],
    "categorical_logits": [
        (mx.array([0.0, 1.0, -1.0]),),
        (mx.array([[0.5, -0.5], [2.0, 0.0]]),),
    ],
    "poisson": [(3.0,), (mx.array([0.5, 4.0, 25.0]),)],
    "geometric": [(0.3,), (mx.array([0.05, 0.5, 1.0]),)],
    "binomial": [
        (10, 0.3),
        (mx.array([5.0, 40.0, 100.0]), mx.array([0.2, 0.5, 0.9])),
    ],
    "neg_binomial": [
        (3.0, 0.4),
        (mx.array([0.5, 2.0, 10.0]), mx.array([0.3, 0.5, 0.9])),
    ],
    "uniform_discrete": [
        (1, 6),
        (mx.array([0, -3, 10]), mx.array([1, 3, 10])),
    ],
    "multinomial": [
        (10, mx.array([0.2, 0.3, 0.5])),
        (mx.array([3.0, 50.0]), mx.array([[0.5, 0.5], [0.1, 0.9]])),
    ],
    "beta_binomial": [
        (10, 2.0, 3.0),
        (mx.array([4.0, 30.0]), mx.array([0.5, 5.0]), mx.array([0.5, 2.0])),
    ],
    "dirichlet_multinomial": [
        (10, mx.array([1.0, 2.0, 3.0])),
        (mx.array([5.0, 20.0]), mx.array([[0.5, 0.5], [4.0, 1.0]])),
    ],
    "zipf": [
        (1.1, 100),
        (mx.array([0.5, 2.0]), mx.array([10.0, 1000.0])),
    ],
    "delta": [(2.5,), (mx.array([1, 2, 3]),)],
    "piecewise_uniform": [
        (mx.array([0.0, 1.0, 3.0, 3.5]), mx.array([0.2, 0.5, 0.3])),
        (mx.array([[-1.0, 0.0, 2.0], [0.0, 0.5, 1.0]]), mx.array([[0.3, 0.7], [0.9, 0.1]])),
    ],
    "gamma": [
        (2.0, 3.0),
        (0.3, 1.5),
        (mx.array([0.5, 2.0, 40.0]), mx.array([[1.0], [0.25]])),
    ],
    "inv_gamma": [
        (3.0, 2.0),
        (0.7, 0.5),
        (mx.array([1.5, 4.0, 30.0]), mx.array([[1.0], [3.0]])),
    ],
    "chi2": [
        (3.0,),
        (0.5,),
        (mx.array([[1.0, 4.0, 50.0]]),),
    ],
    "beta": [
        (2.0, 3.0),
        (0.4, 0.8),
        (mx.array([0.5, 2.0, 60.0]), mx.array([[1.0], [7.0]])),
    ],
    "kumaraswamy": [
        (2.0, 5.0),
        (0.5, 0.7),
        (mx.array([0.5, 1.0, 3.0]), mx.array([[2.0], [0.8]])),
    ],
    "beta_uniform": [
        (0.7, 2.0, 5.0),
        (0.2, 0.5, 0.5),
        (mx.array([[0.0], [0.5], [1.0]]), mx.array([0.5, 3.0]), 2.0),
    ],
    "student_t": [
        (3.0, 0.0, 1.0),
        (0.8, -2.0, 0.5),
        (mx.array([1.0, 4.0, 100.0]), mx.array([[0.0], [5.0]]), 2.0),
    ],
    "dirichlet": [
        (mx.array([1.0, 2.0, 3.0]),),
        (mx.array([0.3, 0.3, 0.3, 0.3]),),
        (mx.array([[0.5, 1.0, 2.0], [10.0, 20.0, 5.0]]),),
    ],
    "mv_normal": [
        (mx.array([0.5, -1.0]), mx.array([[2.0, 0.6], [0.6, 1.0]])),
        (mx.zeros(3), mx.eye(3)),
        (
            mx.array([[0.0, 1.0], [2.0, -1.0], [0.0, 0.0]]),
            mx.array([[[1.0, 0.3], [0.3, 0.5]], [[1.0, -0.2], [-0.2, 2.0]], [[1.0, 0], [0, 1]]]),
        ),
    ],
    "wishart": [
        (4.0, mx.array([[2.0, 0.5], [0.5, 1.0]])),
        (3.5, mx.eye(3)),
        (
            mx.array([3.0, 5.5]),
            mx.array([[[1.0, 0.3], [0.3, 0.5]], [[1.0, -0.2], [-0.2, 2.0]]]),
        ),
    ],
    "inv_wishart": [
        # df > p + 3 (finite variances): the conformance kit's density checks scale
        # their quadrature grids by sample variances. Heavy-tailed df are tested directly.
        (7.0, mx.array([[2.0, 0.5], [0.5, 1.0]])),
        (8.5, mx.eye(3)),
        (
            mx.array([6.5, 9.0]),
            mx.array([[[1.0, 0.3], [0.3, 0.5]], [[1.0, -0.2], [-0.2, 2.0]]]),
        ),
    ],
    "laplace": [
        (0.0, 1.0),
        (mx.array([-2.0, 0.0, 5.0]), mx.array([0.5, 1.0, 3.0])),
        (1.0, mx.array([[0.2], [4.0]])),
    ],
    "cauchy": [
        (0.0, 1.0),
        (mx.array([-2.0, 0.0, 5.0]), mx.array([0.5, 1.0, 3.0])),
        (1.0, mx.array([[0.2], [4.0]])),
    ],
    "logistic": [
        (0.0, 1.0),
        (mx.array([-2.0, 0.0, 5.0]), mx.array([0.5, 1.0, 3.0])),
        (1.0, mx.array([[0.2], [4.0]])),
    ],
    "gumbel": [
        (0.0, 1.0),
        (mx.array([-2.0, 0.0, 5.0]), mx.array([0.5, 1.0, 3.0])),
        (1.0, mx.array([[0.2], [4.0]])),
    ],
}
"""Distribution name → example parameter tuples."""


def examples(dist: Any) -> list[tuple[Any, ...]]:
    """The example parameter tuples of a distribution: those of :data:`EXAMPLES` for a
    distribution of this package, else what a constructed distribution carries
    (``from_functions(..., example_params=...)``, ``iid``, ``transformed``), else ``[]``.
    """
    own = getattr(dist, "example_params", None)
    if own:
        return list(own)
    return list(EXAMPLES.get(getattr(dist, "name", ""), []))
