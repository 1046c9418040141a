"""Rank plots of the same chains after 100 steps of burn-in: each chain's ranks among
all draws are uniform when the chains agree (Vehtari et al. 2021)."""

from functools import partial

import matplotlib.pyplot as plt
import mlx.core as mx

import genmlx.viz as gv
from genmlx.core import choicemap, gen
from genmlx.dists import normal
from genmlx.infer import chain, mh


@gen
def random_walk(trace):
    normal(trace["slope"], 0.3) @ "slope"
    normal(trace["intercept"], 0.3) @ "intercept"


@gen
def line(xs):
    slope = normal(0.0, 2.0) @ "slope"
    intercept = normal(0.0, 2.0) @ "intercept"
    for i in range(xs.shape[0]):
        normal(slope * xs[i] + intercept, 0.5) @ ("y", i)


xs = mx.array([-2.0, -1.0, 0.0, 1.0, 2.0])
obs = choicemap({("y", i): v for i, v in enumerate([3.9, 3.1, 1.8, 1.2, 0.1])})
chains, _ = line.vgenerate((xs,), obs, 4, key=mx.random.key(2))
kernel = partial(mh, selection_or_proposal=random_walk)
result = chain(
    kernel, chains, 300, key=mx.random.key(3), burn_in=100, addresses=["slope", "intercept"]
)

fig = plt.figure(figsize=(8, 3.6))
gv.plot_ranks(result, fig=fig)
