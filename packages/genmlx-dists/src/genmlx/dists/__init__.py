"""genmlx.dists: probability distributions for GenMLX.

This package will hold the distributions used as traced choices in GenMLX models
(``normal(mu, sigma) @ "x"``): the Gen.jl and GenJAX families, each with batched
sampling, log density, reparameterized sampling where one exists and argument
gradients, plus ``mixture``, ``product`` and ``transformed`` distributions.

The package is reserved and intentionally empty for now: its contents land with
the distributions issue. Until then it exports nothing.
"""

__all__: list[str] = []
