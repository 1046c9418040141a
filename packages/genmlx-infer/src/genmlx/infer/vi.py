"""Variational inference: one import for ADVI, black-box VI, IWELBO and VIMCO.

Every method here fits a distribution ``q`` to the posterior ``p(x | y)`` of a model by
stochastic gradient ascent on a lower bound of ``log p(y)``, with optimisers from
``mlx.optimizers`` and gradient steps compiled with ``mx.compile``:

================================  ==============================================
:func:`advi`                      a Gaussian built automatically from the model's
                                  continuous latent choices, pushed through
                                  constraining bijections (mean-field or full rank)
:func:`black_box_vi`              a guide written as a generative function with
                                  ``param`` reads; reparameterised or REINFORCE ELBO
                                  gradients (Gen.jl's ``black_box_vi!``)
:func:`black_box_vimco`           the ``K``-sample IWELBO with VIMCO's leave-one-out
                                  control variates or IWAE gradients (Gen.jl's
                                  ``black_box_vimco!``)
:func:`elbo`, :func:`iwelbo`      Monte Carlo estimates of the bounds, with standard
                                  errors
:func:`elbo_grad`,                one gradient estimate, for checks and custom loops
:func:`iwelbo_grad`
================================  ==============================================

The implementations live in :mod:`genmlx.infer.advi`, :mod:`genmlx.infer.bbvi` and
:mod:`genmlx.infer.vimco`.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.dists import normal
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 1.0) @ "y"
    >>> approx = advi(model, (), {"y": 2.0}, n_steps=100, key=mx.random.key(0))
    >>> approx.sample(3, key=mx.random.key(1))["mu"].shape
    (3,)
"""

from __future__ import annotations

from genmlx.infer._vi_loop import VIEstimate
from genmlx.infer.advi import SUPPORTS, ADVIResult, advi
from genmlx.infer.bbvi import BASELINES, ESTIMATORS, VIResult, black_box_vi, elbo, elbo_grad
from genmlx.infer.vimco import VIMCO_ESTIMATORS, black_box_vimco, iwelbo, iwelbo_grad

__all__ = [
    "BASELINES",
    "ESTIMATORS",
    "SUPPORTS",
    "VIMCO_ESTIMATORS",
    "ADVIResult",
    "VIEstimate",
    "VIResult",
    "advi",
    "black_box_vi",
    "black_box_vimco",
    "elbo",
    "elbo_grad",
    "iwelbo",
    "iwelbo_grad",
]
