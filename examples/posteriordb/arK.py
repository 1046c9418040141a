"""Autoregressive model of order K (posteriordb ``arK-arK``).

Stan::

    parameters { real alpha; array[K] real beta; real<lower=0> sigma; }
    model {
      alpha ~ normal(0, 10);
      beta ~ normal(0, 10);
      sigma ~ cauchy(0, 2.5);
      for (t in (K + 1):T) {
        real mu = alpha;
        for (k in 1:K) mu += beta[k] * y[t - k];
        y[t] ~ normal(mu, sigma);
      }
    }

The loop over ``t`` is one matrix product with the ``[T - K, K]`` matrix of lagged
values (``lags[t, k] = y[t - k]``), built once from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, choicemap, gen
from genmlx.dists import half_cauchy, normal

try:
    from ._common import as_f32, main, stan_names
except ImportError:  # run as a script
    from _common import as_f32, main, stan_names  # type: ignore[no-redef]

POSTERIOR = "arK-arK"
DATA = "arK"
MCMC_OPTIONS: dict[str, Any] = {"target_accept": 0.8}


@gen
def model(lags: mx.array) -> None:
    alpha = normal(0.0, 10.0) @ "alpha"
    beta = normal(mx.zeros(lags.shape[1]), 10.0) @ "beta"
    sigma = half_cauchy(2.5) @ "sigma"
    normal(alpha + lags @ beta, sigma) @ "y"


def lag_matrix(y: np.ndarray, k: int) -> np.ndarray:
    """``[T - K, K]`` with row ``t`` (for ``y[K + t]``) holding ``y[K + t - 1], ...,
    y[t]``."""
    t = y.shape[0]
    return np.stack([y[k - j - 1 : t - j - 1] for j in range(k)], axis=1)


def inputs(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], ChoiceMap]:
    """The model's arguments and observations for posteriordb's data set."""
    y = np.asarray(data["y"], dtype=np.float64)
    k = int(data["K"])
    return (as_f32(lag_matrix(y, k)),), choicemap({"y": as_f32(y[k:])})


def parameters(samples: Mapping[Any, mx.array], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``alpha``, ``beta[k]``, ``sigma``."""
    del data
    return {**stan_names("alpha", samples["alpha"]), **stan_names("beta", samples["beta"]),
            **stan_names("sigma", samples["sigma"])}


if __name__ == "__main__":
    raise SystemExit(main(__import__(__name__)))
