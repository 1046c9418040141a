"""GARCH(1,1) volatility (posteriordb ``garch-garch11``).

Stan::

    parameters {
      real mu;
      real<lower=0> alpha0;
      real<lower=0, upper=1> alpha1;
      real<lower=0, upper=(1 - alpha1)> beta1;
    }
    model {
      array[T] real sigma;
      sigma[1] = sigma1;
      for (t in 2:T)
        sigma[t] = sqrt(alpha0 + alpha1 * pow(y[t - 1] - mu, 2) + beta1 * pow(sigma[t - 1], 2));
      y ~ normal(mu, sigma);
    }

No prior statements: Stan's implicit priors are flat on each declared range. Here
``mu`` is ``flat()``, ``alpha0`` ``half_flat()``, ``alpha1`` ``uniform(0, 1)`` and
``beta1`` ``uniform(0, 1 - alpha1)`` — its upper bound is another parameter, and the
sampler maps ``beta1`` onto ``(0, 1 - alpha1)`` of each point it evaluates. That uniform
has density ``1/(1 - alpha1)`` where Stan's flat range has ``1``, so
``factor(log(1 - alpha1))`` restores Stan's density.

The variance recursion ``s²_t = alpha0 + alpha1 e²_{t-1} + beta1 s²_{t-1}`` is linear in
``s²``: ``s²_t = beta1^t s²_0 + Σ_{j≤t} beta1^{t-j} u_j`` with
``u_j = alpha0 + alpha1 e²_{j-1}``, one product with the lower-triangular matrix of
powers of ``beta1`` instead of a 200-step loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, choicemap, factor, gen
from genmlx.dists import flat, half_flat, normal, uniform

try:
    from ._common import as_f32, main, stan_names
except ImportError:  # run as a script
    from _common import as_f32, main, stan_names  # type: ignore[no-redef]

POSTERIOR = "garch-garch11"
DATA = "garch"
MCMC_OPTIONS: dict[str, Any] = {"target_accept": 0.8}


def volatility(y: mx.array, sigma1: mx.array, mu: mx.array, alpha0: mx.array,
               alpha1: mx.array, beta1: mx.array) -> mx.array:
    """``sigma_t`` of the GARCH(1,1) recursion for ``t = 0..T-1`` (vectorised)."""
    t = y.shape[0]
    e2 = (y[:-1] - mu) ** 2
    u = alpha0 + alpha1 * e2  # u_1 .. u_{T-1}
    steps = mx.arange(t, dtype=mx.float32)
    lag = steps[:, None] - steps[None, 1:]  # t - j for j = 1..T-1
    lower = lag >= 0
    powers = mx.where(lower, mx.exp(mx.where(lower, lag, 0.0) * mx.log(beta1)), 0.0)
    s2 = mx.exp(steps * mx.log(beta1)) * sigma1 * sigma1 + powers @ u
    return mx.sqrt(s2)


@gen
def model(y: mx.array, sigma1: mx.array) -> None:
    mu = flat() @ "mu"
    alpha0 = half_flat() @ "alpha0"
    alpha1 = uniform(0.0, 1.0) @ "alpha1"
    beta1 = uniform(0.0, 1.0 - alpha1) @ "beta1"
    factor(mx.log1p(-alpha1)) @ "flat_beta1"  # Stan's flat density on (0, 1 - alpha1)
    normal(mx.broadcast_to(mu, y.shape), volatility(y, sigma1, mu, alpha0, alpha1, beta1)) @ "y"


def inputs(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], ChoiceMap]:
    """The model's arguments and observations for posteriordb's data set."""
    y = as_f32(data["y"])
    return (y, as_f32(data["sigma1"])), choicemap({"y": y})


def parameters(samples: Mapping[Any, mx.array], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``mu``, ``alpha0``, ``alpha1``, ``beta1``."""
    del data
    out: dict[str, np.ndarray] = {}
    for name in ("mu", "alpha0", "alpha1", "beta1"):
        out.update(stan_names(name, samples[name]))
    return out


if __name__ == "__main__":
    raise SystemExit(main(__import__(__name__)))
