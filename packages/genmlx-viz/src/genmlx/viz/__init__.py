"""genmlx.viz: plots of traces, posteriors, chains, SMC particles and training curves.

Every plotting function returns a :class:`matplotlib.figure.Figure` (made without
``pyplot``: nothing is shown or kept alive globally; a notebook displays the returned
figure and ``fig.savefig("out.png")`` / ``"out.svg"`` saves it) and accepts ``fig=`` to
draw into an empty figure of your own.

* :func:`plot_trace` — one trace: each choice's address, value and log density
* :func:`plot_posterior`, :func:`plot_pairs` — marginals and pairs from samples or
  weighted particles (importance sampling, SMC), or pooled chains
* :func:`plot_chains`, :func:`plot_ranks` — MCMC trace plots and rank plots
* :func:`plot_particles`, :func:`animate_particles`, :func:`save_animation` — SMC
  particles over time, as a figure or an animation (GIF / HTML)
* :func:`plot_losses` — ELBO and loss curves, optionally smoothed
* :func:`to_inference_data` — export to ArviZ (optional extra ``arviz``)

Inputs are the objects inference returns (batched traces, lists of traces, dicts of
arrays, ``ISResult``, ``ParticleFilterState``, ``ChainResult``), read by duck typing, so
``genmlx-viz`` depends on ``genmlx-core`` and matplotlib only.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.dists import normal
    >>> import genmlx.viz as gv
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 0.5) @ "y"
    >>> traces = model.vsimulate((), 500, key=mx.random.key(0))
    >>> fig = gv.plot_posterior(traces, ["mu", "y"])
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['mu', 'y']
"""

from genmlx.viz._inputs import address_label
from genmlx.viz.chains import plot_chains, plot_ranks
from genmlx.viz.inference_data import to_inference_data
from genmlx.viz.losses import plot_losses
from genmlx.viz.particles import (
    ParticleAnimation,
    animate_particles,
    plot_particles,
    save_animation,
)
from genmlx.viz.posterior import plot_pairs, plot_posterior
from genmlx.viz.trace_view import plot_trace

__all__ = [
    "ParticleAnimation",
    "address_label",
    "animate_particles",
    "plot_chains",
    "plot_losses",
    "plot_pairs",
    "plot_particles",
    "plot_posterior",
    "plot_ranks",
    "plot_trace",
    "save_animation",
    "to_inference_data",
]
