"""Two-component Gaussian mixture (posteriordb ``low_dim_gauss_mix-low_dim_gauss_mix``).

Stan::

    parameters { ordered[2] mu; array[2] real<lower=0> sigma; real<lower=0, upper=1> theta; }
    model {
      sigma ~ normal(0, 2);
      mu ~ normal(0, 2);
      theta ~ beta(5, 5);
      for (n in 1:N)
        target += log_mix(theta, normal_lpdf(y[n] | mu[1], sigma[1]),
                                 normal_lpdf(y[n] | mu[2], sigma[2]));
    }

``mu`` is an ordered vector with independent ``normal(0, 2)`` densities on its
elements: :class:`OrderedNormal` below is that distribution (the sorted draws of
``K`` independent normals, density ``K! Π N(mu_k)`` on increasing vectors) and declares
the ``ordered`` domain, so the sampler moves ``mu`` through the ordered bijector. The
likelihood is :func:`genmlx.dists.mixture` of normals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, Distribution, choicemap, gen
from genmlx.core import constraints as C
from genmlx.dists import beta, half_normal, mixture, normal

try:
    from ._common import as_f32, main, stan_names
except ImportError:  # run as a script
    from _common import as_f32, main, stan_names  # type: ignore[no-redef]

POSTERIOR = "low_dim_gauss_mix-low_dim_gauss_mix"
DATA = "low_dim_gauss_mix"
MCMC_OPTIONS: dict[str, Any] = {"target_accept": 0.8}


class OrderedNormal(Distribution):
    """Increasing vectors whose elements have independent ``N(loc, scale)`` densities:
    the order statistics of ``K`` i.i.d. normals (``K`` from ``loc``'s last axis)."""

    name = "ordered_normal"
    params = ("loc", "scale")
    event_ndim = 1
    has_reparam = True

    def domain(self, *params: Any) -> C.Constraint:
        """Increasing vectors."""
        del params
        return C.ordered

    def sample(
        self, key: mx.array, loc: Any, scale: Any, *, shape: tuple[int, ...] = ()
    ) -> mx.array:
        return mx.sort(normal.sample(key, loc, scale, shape=shape), axis=-1)

    def log_prob(self, value: Any, loc: Any, scale: Any) -> mx.array:
        x = mx.array(value)
        k = x.shape[-1]
        lp = mx.sum(normal.log_prob(x, loc, scale), axis=-1) + math.lgamma(k + 1)
        ok = mx.all(x[..., 1:] > x[..., :-1], axis=-1)
        return mx.where(ok, lp, -mx.inf)


ordered_normal = OrderedNormal()
normal_mixture = mixture(normal)


@gen
def model(n: int) -> None:
    mu = ordered_normal(mx.zeros(2), 2.0) @ "mu"
    sigma = half_normal(mx.full((2,), 2.0)) @ "sigma"
    theta = beta(5.0, 5.0) @ "theta"
    # one mixture per observation: the component axis last, the n observations first
    weights = mx.broadcast_to(mx.stack([theta, 1.0 - theta]), (n, 2))
    normal_mixture(weights, mx.broadcast_to(mu, (n, 2)), mx.broadcast_to(sigma, (n, 2))) @ "y"


def inputs(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], ChoiceMap]:
    """The model's arguments and observations for posteriordb's data set."""
    return (int(data["N"]),), choicemap({"y": as_f32(data["y"])})


def parameters(samples: Mapping[Any, mx.array], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``mu[k]``, ``sigma[k]``, ``theta``."""
    del data
    return {**stan_names("mu", samples["mu"]), **stan_names("sigma", samples["sigma"]),
            **stan_names("theta", samples["theta"])}


if __name__ == "__main__":
    raise SystemExit(main(__import__(__name__)))
