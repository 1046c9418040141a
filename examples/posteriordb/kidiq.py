"""Kid's test score on mother's IQ (posteriordb ``kidiq-kidscore_momiq``).

Stan::

    parameters { vector[2] beta; real<lower=0> sigma; }
    model {
      sigma ~ cauchy(0, 2.5);
      kid_score ~ normal(beta[1] + beta[2] * mom_iq, sigma);
    }

``beta`` has no prior statement in Stan — an improper flat prior, written ``flat(2)``
here (it is never sampled from; NUTS starts from Stan's ``U(-2, 2)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, choicemap, gen
from genmlx.dists import flat, half_cauchy, normal

try:
    from ._common import as_f32, main, stan_names
except ImportError:  # run as a script
    from _common import as_f32, main, stan_names  # type: ignore[no-redef]

POSTERIOR = "kidiq-kidscore_momiq"
DATA = "kidiq"
MCMC_OPTIONS: dict[str, Any] = {"target_accept": 0.8, "max_depth": 10}


@gen
def model(mom_iq: mx.array) -> None:
    beta = flat(2) @ "beta"
    sigma = half_cauchy(2.5) @ "sigma"
    normal(beta[0] + beta[1] * mom_iq, sigma) @ "kid_score"


def inputs(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], ChoiceMap]:
    """The model's arguments and observations for posteriordb's data set."""
    return (as_f32(data["mom_iq"]),), choicemap({"kid_score": as_f32(data["kid_score"])})


def parameters(samples: Mapping[Any, mx.array], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``beta[1]``, ``beta[2]``, ``sigma``."""
    del data
    return {**stan_names("beta", samples["beta"]), **stan_names("sigma", samples["sigma"])}


if __name__ == "__main__":
    raise SystemExit(main(__import__(__name__)))
