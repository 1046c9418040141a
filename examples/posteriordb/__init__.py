"""Six posteriors of posteriordb written as GenMLX models, sampled with
:func:`genmlx.infer.mcmc` and checked against posteriordb's reference draws.

Each module holds the model (``model``), the posterior's names (``POSTERIOR``,
``DATA``), ``inputs(data) -> (args, observations)``, ``parameters(samples, data)`` (the
reference's parameters, with Stan's names, from the sampled choices) and the sampler
settings of the reference run (``MCMC_OPTIONS``); run one with
``python examples/posteriordb/<module>.py [--data DIR]``. See ``_common.py`` for where
the data are looked up.
"""

MODULES = (
    "eight_schools",
    "kidiq",
    "gp_pois_regr",
    "arK",
    "garch",
    "low_dim_gauss_mix",
)
