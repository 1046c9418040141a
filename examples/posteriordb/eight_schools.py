"""Eight schools, non-centred (posteriordb ``eight_schools-eight_schools_noncentered``).

Stan::

    parameters { vector[J] theta_trans; real mu; real<lower=0> tau; }
    transformed parameters { vector[J] theta = theta_trans * tau + mu; }
    model {
      theta_trans ~ normal(0, 1);
      y ~ normal(theta, sigma);
      mu ~ normal(0, 5);
      tau ~ cauchy(0, 5);
    }

``tau`` is positive: ``half_cauchy`` declares that domain, and :func:`~genmlx.infer.mcmc`
samples ``log tau`` with its Jacobian — no hand-written transform.
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

POSTERIOR = "eight_schools-eight_schools_noncentered"
DATA = "eight_schools"
MCMC_OPTIONS: dict[str, Any] = {"target_accept": 0.95}  # the reference's adapt_delta


@gen
def model(sigma: mx.array) -> mx.array:
    theta_trans = normal(mx.zeros(sigma.shape), 1.0) @ "theta_trans"
    mu = normal(0.0, 5.0) @ "mu"
    tau = half_cauchy(5.0) @ "tau"
    theta = theta_trans * tau + mu
    normal(theta, sigma) @ "y"
    return theta


def inputs(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], ChoiceMap]:
    """The model's arguments and observations for posteriordb's data set."""
    return (as_f32(data["sigma"]),), choicemap({"y": as_f32(data["y"])})


def parameters(samples: Mapping[Any, mx.array], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``theta[j]``, ``mu``, ``tau`` as ``[chain, draw]`` arrays."""
    del data
    theta = samples["theta_trans"] * samples["tau"][..., None] + samples["mu"][..., None]
    return {**stan_names("theta", theta), **stan_names("mu", samples["mu"]),
            **stan_names("tau", samples["tau"])}


if __name__ == "__main__":
    raise SystemExit(main(__import__(__name__)))
