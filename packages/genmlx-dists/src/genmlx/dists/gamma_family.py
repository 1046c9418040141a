"""Deprecated module: its contents moved to :mod:`genmlx.dists.gamma_beta` (the
distributions) and :mod:`genmlx.dists.gamma_sampling` (the samplers); importing a name
from here warns for one release."""

from __future__ import annotations

from genmlx.core.deprecation import moved

_DISTRIBUTIONS = (
    "Beta",
    "BetaUniform",
    "Chi2",
    "Dirichlet",
    "Gamma",
    "InvGamma",
    "Kumaraswamy",
    "StudentT",
    "beta",
    "beta_uniform",
    "chi2",
    "dirichlet",
    "gamma",
    "inv_gamma",
    "kumaraswamy",
    "student_t",
)
_SAMPLERS = (
    "GAMMA_ROUNDS",
    "log_standard_gamma",
    "standard_beta",
    "standard_dirichlet",
    "standard_gamma",
)

__getattr__ = moved(
    __name__,
    {
        **{n: "genmlx.dists.gamma_beta" for n in _DISTRIBUTIONS},
        **{n: "genmlx.dists.gamma_sampling" for n in _SAMPLERS},
    },
)
