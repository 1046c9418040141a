"""Poisson regression with a Gaussian-process log rate (posteriordb
``gp_pois_regr-gp_pois_regr``).

Stan::

    parameters { real<lower=0> rho; real<lower=0> alpha; vector[N] f_tilde; }
    transformed parameters {
      vector[N] f;
      {
        matrix[N, N] cov = gp_exp_quad_cov(x, alpha, rho)
                           + diag_matrix(rep_vector(1e-10, N));
        f = cholesky_decompose(cov) * f_tilde;
      }
    }
    model {
      rho ~ gamma(25, 4);
      alpha ~ normal(0, 2);
      f_tilde ~ normal(0, 1);
      k ~ poisson_log(f);
    }

The Cholesky factor is differentiated with :func:`genmlx.dists.linalg.cholesky` (MLX's
own has no gradient). The squared-exponential kernel on these inputs has eigenvalues
far below float32's resolution (``~1e-14`` of the largest at ``rho = 12``), so, like
Stan, the covariance is built and factorised in float64 — on the CPU stream, where MLX
has float64 — with Stan's jitter ``1e-10``; MLX's float64 ``exp`` is only float32-
accurate, so the kernel uses ``expm1(z) + 1``, which is accurate in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, choicemap, gen
from genmlx.dists import gamma, half_normal, normal, poisson
from genmlx.dists.linalg import cholesky

try:
    from ._common import as_f32, main, stan_names
except ImportError:  # run as a script
    from _common import as_f32, main, stan_names  # type: ignore[no-redef]

POSTERIOR = "gp_pois_regr-gp_pois_regr"
DATA = "gp_pois_regr"
# posteriordb's reference run used Stan's diagonal metric with adapt_delta 0.99 and tree
# depth 15: the non-centred f_tilde are strongly correlated a posteriori (the counts pin
# f = L f_tilde down), so a diagonal metric needs tiny steps (~0.01, ~400 leapfrog steps a
# transition). A dense metric over the 13 parameters takes steps ~10x longer at a target
# acceptance of 0.9 (~40 leapfrog steps, no divergences); the posterior is the same.
MCMC_OPTIONS: dict[str, Any] = {"target_accept": 0.9, "max_depth": 10, "dense_mass": True}
JITTER = 1e-10


def latent_f(x: mx.array, alpha: mx.array, rho: mx.array, f_tilde: mx.array) -> mx.array:
    """``f = cholesky(alpha² exp(-(xᵢ - xⱼ)²/(2 rho²)) + 1e-10 I) f_tilde`` (float64
    on the CPU, returned as float32)."""
    with mx.stream(mx.cpu):
        x64 = x.astype(mx.float64)
        a, r = alpha.astype(mx.float64), rho.astype(mx.float64)
        d2 = (x64[:, None] - x64[None, :]) ** 2
        k = a * a * (mx.expm1(-0.5 * d2 / (r * r)) + 1.0)
        k = k + JITTER * mx.eye(x.shape[0], dtype=mx.float64)
        f = cholesky(k) @ f_tilde.astype(mx.float64)
        return f.astype(mx.float32)


@gen
def model(x: mx.array) -> mx.array:
    rho = gamma(25.0, 4.0) @ "rho"
    alpha = half_normal(2.0) @ "alpha"
    f_tilde = normal(mx.zeros(x.shape), 1.0) @ "f_tilde"
    f = latent_f(x, alpha, rho, f_tilde)
    poisson(mx.exp(f)) @ "k"
    return f


def inputs(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], ChoiceMap]:
    """The model's arguments and observations for posteriordb's data set."""
    k = mx.array(np.asarray(data["k"], dtype=np.int32))
    return (as_f32(data["x"]),), choicemap({"k": k})


def f_numpy(x: np.ndarray, alpha: np.ndarray, rho: np.ndarray, f_tilde: np.ndarray) -> np.ndarray:
    """``f`` of every draw, in NumPy float64 (``alpha``, ``rho`` ``[...]``, ``f_tilde``
    ``[..., N]``)."""
    d2 = (x[:, None] - x[None, :]) ** 2
    k = alpha[..., None, None] ** 2 * np.exp(-0.5 * d2 / rho[..., None, None] ** 2)
    k = k + JITTER * np.eye(x.shape[0])
    return np.einsum("...ij,...j->...i", np.linalg.cholesky(k), f_tilde)


def parameters(samples: Mapping[Any, mx.array], data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``rho``, ``alpha``, ``f[i]``."""
    x = np.asarray(data["x"], dtype=np.float64)
    alpha = np.asarray(samples["alpha"], dtype=np.float64)
    rho = np.asarray(samples["rho"], dtype=np.float64)
    f = f_numpy(x, alpha, rho, np.asarray(samples["f_tilde"], dtype=np.float64))
    return {**stan_names("rho", samples["rho"]), **stan_names("alpha", samples["alpha"]),
            **{f"f[{i + 1}]": f[..., i] for i in range(f.shape[-1])}}


if __name__ == "__main__":
    raise SystemExit(main(__import__(__name__)))
