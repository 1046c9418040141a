"""Pairwise joint posterior of weighted particles (2-D histograms of the weights)."""

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

fig = plt.figure(figsize=(6.5, 6.5))
gv.plot_pairs(result, ["slope", "intercept", "noise"], kind="hist2d", bins=40, fig=fig)
