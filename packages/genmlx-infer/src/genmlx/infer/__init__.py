"""genmlx.infer: inference algorithms for GenMLX.

This package will hold inference built on the Generative Function Interface:
importance sampling, MCMC kernels (MH, involutive MCMC, MALA, HMC, NUTS,
elliptical slice, Gibbs), SMC / particle filtering, variational inference,
learning and diagnostics.

The package is reserved and intentionally empty for now: its contents land with
the inference issue. Until then it exports nothing.
"""

__all__: list[str] = []
