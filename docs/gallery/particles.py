"""A bootstrap particle filter tracking a random walk: the particles at every step
(the last frame of ``animate_particles``)."""

import matplotlib.pyplot as plt
import mlx.core as mx
import numpy as np

import genmlx.viz as gv
from genmlx.combinators import Unfold
from genmlx.core import gen
from genmlx.dists import normal
from genmlx.infer import particle_filter


@gen
def step(t, x):
    x = normal(x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


model = Unfold(step)
rng = np.random.default_rng(0)
truth = np.cumsum(rng.normal(size=12))
ys = truth + 0.5 * rng.normal(size=12)

keys = mx.random.split(mx.random.key(4), 2 * len(ys))
x0 = mx.array(0.0)
state = particle_filter(model, (1, x0), {(0, "y"): float(ys[0])}, 300, key=keys[0])
history = [state]
for t in range(1, len(ys)):
    state = state.maybe_resample(150, key=keys[2 * t - 1])
    state = state.step((t + 1, x0), {(t, "y"): float(ys[t])}, key=keys[2 * t])
    history.append(state)

fig = plt.figure(figsize=(8, 3.6))
gv.plot_particles(history, lambda t: (t, "x"), truth=list(truth), fig=fig)
