"""Importance sampling, a particle filter and many MCMC chains spread over processes.

Every process runs this same script; each holds a shard of the particles or chains and
the results are global. Under plain ``python`` there is one process and the numbers are
the same (the same keys give the same particles however many processes share them)::

    python examples/distributed_inference.py                                 # 1 process
    mlx.launch -n 2 --backend ring -- python examples/distributed_inference.py  # 2 processes
    mlx.launch -n 8 --backend nccl -- python examples/distributed_inference.py  # 8 GPUs

See docs/howto-distributed.rst for hosts, MPI and GPUs.
"""

from __future__ import annotations

import math
from functools import partial

import mlx.core as mx

from genmlx.combinators import Unfold
from genmlx.core import gen, select
from genmlx.dists import normal
from genmlx.infer import (
    chain,
    ess_bulk,
    importance_sampling,
    mh,
    nuts,
    nuts_warmup,
    particle_filter,
    rhat,
)
from genmlx.infer.distributed import vgenerate

group = mx.distributed.init()  # the launched processes (or just this one)
rank, size = group.rank(), group.size()


def say(*parts: object) -> None:
    if rank == 0:
        print(*parts, flush=True)


# ------------------------------------------------------------------ a regression
xs = mx.linspace(-2.0, 2.0, 20)
ys = 0.7 * xs - 0.4 + 0.3 * mx.random.normal((20,), key=mx.random.key(0))


@gen
def line(xs: mx.array) -> None:
    slope = normal(0.0, 1.0) @ "slope"
    intercept = normal(0.0, 1.0) @ "intercept"
    normal(slope * xs + intercept, 0.3) @ "ys"


# importance sampling: this process draws particles [r·N/P, (r+1)·N/P)
res = importance_sampling(line, (xs,), {"ys": ys}, 100_000, key=mx.random.key(1), group=group)
w = mx.exp(res.log_weights)  # normalised over all processes
slope_mean = mx.distributed.all_sum(mx.sum(w * res.traces["slope"]), group=group)
say(f"{size} process(es): IS log p(y) = {res.log_ml_estimate.item():.4f}, "
    f"E[slope | y] = {slope_mean.item():.4f}")

# many chains: 16 over all processes, pooled NUTS warm-up, then diagnostics of all chains
sel = select("slope", "intercept")
chains = vgenerate(line, (xs,), {"ys": ys}, 16, key=mx.random.key(2), group=group)
warm = nuts_warmup(chains, sel, 200, key=mx.random.key(3), group=group, max_depth=5)
kernel = partial(nuts, selection=sel, step_size=warm.step_size, mass=warm.mass, max_depth=5)
run = chain(kernel, warm.trace, 200, key=mx.random.key(4), addresses=["slope"], group=group)
# diagnostics of this process's chains, computed over all processes' chains
say(f"NUTS: step size {warm.step_size.item():.3f}, R-hat {rhat(run, group=group).item():.4f}, "
    f"bulk ESS {ess_bulk(run, group=group).item():.0f} (16 chains)")


# ------------------------------------------------------------------ a particle filter
@gen
def step(t: int, x: mx.array) -> mx.array:
    x = normal(0.9 * x, 0.7) @ "x"
    normal(x, 0.5) @ "y"
    return x


model, x0 = Unfold(step), mx.array(0.0)
obs = [0.4, 0.9, 1.6, 1.2, 0.3, -0.5, -0.9, -0.2, 0.6, 1.4]
keys = mx.random.split(mx.random.key(5), 3 * len(obs))
state = particle_filter(model, (1, x0), {(0, "y"): obs[0]}, 10_000, key=keys[0], group=group)
for t in range(1, len(obs)):
    state = state.maybe_resample(state.n_particles / 2, key=keys[3 * t])
    state = state.step((t + 1, x0), {(t, "y"): obs[t]}, key=keys[3 * t + 1])
    state = state.rejuvenate(mh, select((t, "x")), key=keys[3 * t + 2])
say(f"SMC: log p(y) = {state.log_ml_estimate.item():.4f} "
    f"(ESS {state.ess().item():.0f} of {state.n_particles}); "
    f"this process holds {state.n_local} particles")
assert math.isfinite(state.log_ml_estimate.item())
