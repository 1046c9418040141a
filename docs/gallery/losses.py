"""Training curves: the negative log likelihood of a normal model fitted by two
optimisers from ``mlx.optimizers``, raw and smoothed."""

import matplotlib.pyplot as plt
import mlx.core as mx
import mlx.optimizers as optim

import genmlx.viz as gv
from genmlx.dists import normal

data = normal.sample(mx.random.key(5), 3.0, 2.0, shape=(256,))


def nll(params, batch):
    return -mx.mean(normal.log_prob(batch, params["mu"], mx.exp(params["log_sigma"])))


curves = {}
for name, opt in {"adam": optim.Adam(0.05), "sgd": optim.SGD(0.05)}.items():
    params = {"mu": mx.array(0.0), "log_sigma": mx.array(0.0)}
    grad_fn = mx.value_and_grad(nll)
    losses = []
    for k in range(300):
        batch = data[(k * 16) % 256 : (k * 16) % 256 + 16]
        loss, grads = grad_fn(params, batch)
        params = opt.apply_gradients(grads, params)
        losses.append(loss.item())
    curves[name] = losses

fig = plt.figure(figsize=(7, 3.4))
gv.plot_losses(curves, window=20, ylabel="negative log likelihood", fig=fig)
