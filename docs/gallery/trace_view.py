"""The trace view: each choice of one trace with its value and log density."""

import matplotlib.pyplot as plt
import mlx.core as mx

import genmlx.viz as gv
from genmlx.core import choicemap, gen
from genmlx.dists import gamma, normal


@gen
def line(xs):
    slope = normal(0.0, 2.0) @ "slope"
    intercept = normal(0.0, 2.0) @ "intercept"
    noise = gamma(2.0, 4.0) @ "noise"
    for i in range(xs.shape[0]):
        normal(slope * xs[i] + intercept, noise) @ ("y", i)


xs = mx.array([-2.0, -1.0, 0.0, 1.0, 2.0])
ys = {("y", i): v for i, v in enumerate([3.9, 3.1, 1.8, 1.2, 0.1])}
trace, _ = line.generate((xs,), choicemap(ys), key=mx.random.key(0))

fig = plt.figure(figsize=(7, 3.4))
gv.plot_trace(trace, fig=fig)
