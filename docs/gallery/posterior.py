"""Posterior marginals from importance sampling (weighted particles)."""

import matplotlib.pyplot as plt
import mlx.core as mx

import genmlx.viz as gv
from genmlx.core import choicemap, gen
from genmlx.dists import gamma, normal
from genmlx.infer import importance_sampling


@gen
def line(xs):
    slope = normal(0.0, 2.0) @ "slope"
    intercept = normal(0.0, 2.0) @ "intercept"
    noise = gamma(2.0, 4.0) @ "noise"
    for i in range(xs.shape[0]):
        normal(slope * xs[i] + intercept, noise) @ ("y", i)


xs = mx.array([-1.0, 0.0, 1.0])
obs = choicemap({("y", i): v for i, v in enumerate([2.9, 1.8, 1.2])})
result = importance_sampling(line, (xs,), obs, 20_000, key=mx.random.key(1))

fig = plt.figure(figsize=(9, 3.2))
gv.plot_posterior(result, ["slope", "intercept", "noise"], kind="both", fig=fig)
