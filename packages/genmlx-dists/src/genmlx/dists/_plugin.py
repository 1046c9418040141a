"""genmlx-dists as a GenMLX plugin: registers every distribution with the registry.

Published through the entry point ``dists = "genmlx.dists._plugin"`` in the ``genmlx``
group, so ``genmlx.core.registry().distributions`` lists the library (provider
``dists``) and ``python -m genmlx.core.testing`` checks it. The constructors
(``mixture``, ``product``, ``iid``, ``transformed``, ``from_functions``) are functions
that build distributions, not distributions, so they are not registered; import them
from :mod:`genmlx.dists`.
"""

from __future__ import annotations

from typing import Any

from genmlx.core.plugins import hookimpl

__all__ = ["ALIASES", "DISTRIBUTION_NAMES", "genmlx_register_distributions"]

DISTRIBUTION_NAMES: tuple[str, ...] = (
    # continuous
    "normal",
    "uniform",
    "exponential",
    "laplace",
    "cauchy",
    "logistic",
    "gumbel",
    "half_normal",
    "half_cauchy",
    "log_normal",
    "weibull",
    "pareto",
    "truncated_normal",
    "von_mises",
    "wrapped_cauchy",
    "wrapped_normal",
    # gamma family
    "gamma",
    "inv_gamma",
    "chi2",
    "beta",
    "kumaraswamy",
    "beta_uniform",
    "student_t",
    "dirichlet",
    # discrete
    "bernoulli",
    "categorical",
    "categorical_logits",
    "poisson",
    "geometric",
    "binomial",
    "neg_binomial",
    "uniform_discrete",
    "multinomial",
    "beta_binomial",
    "dirichlet_multinomial",
    "zipf",
    "delta",
    "piecewise_uniform",
    # multivariate
    "mv_normal",
    "wishart",
    "inv_wishart",
)
"""Every distribution of genmlx.dists, by its registry (and module-level) name."""

ALIASES: dict[str, tuple[str, ...]] = {
    "normal": ("gaussian",),
    "bernoulli": ("flip",),
    "log_normal": ("lognormal",),
    "mv_normal": ("mvnormal", "multivariate_normal"),
    "uniform_discrete": ("discrete_uniform",),
    "neg_binomial": ("negative_binomial",),
    "inv_gamma": ("inverse_gamma",),
    "inv_wishart": ("inverse_wishart",),
}
"""Other names the registry accepts (Gen.jl's and the cross-system spec's spellings)."""


@hookimpl
def genmlx_register_distributions(register: Any) -> None:
    """Register every distribution under its name, with the aliases above and its
    example parameters for the conformance kit (:mod:`genmlx.dists.examples`)."""
    import genmlx.dists as dists
    from genmlx.dists.examples import EXAMPLES

    for name in DISTRIBUTION_NAMES:
        register(
            getattr(dists, name),
            name=name,
            aliases=ALIASES.get(name, ()),
            examples=EXAMPLES[name],
        )
