"""The plugin module named by the ``genmlx`` entry point.

Each object registers with the metadata its conformance kit reads: how to set the
kernel up on the kit's test models, how to build the combinator around the kit's
kernels, which result types the visualizer draws.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from genmlx.core.plugins import hookimpl


def barker_conformance(model: Any) -> Any:
    """The Barker kernel on one of the kernel kit's test models (``None``: not applicable)."""
    from genmlx_example_mcmc import barker

    if model.discrete:  # gradients need continuous choices
        return None
    return partial(barker, selection=model.selection, step_size=min(model.scales.values()))


@hookimpl
def genmlx_register_inference(register: Any) -> None:
    from genmlx_example_mcmc import barker

    register(barker, conformance_kernel=barker_conformance)


@hookimpl
def genmlx_register_combinators(register: Any) -> None:
    from genmlx_example_mcmc import Iterate
    from genmlx_example_mcmc.iterate import conformance_build, conformance_examples

    register(
        Iterate, conformance_build=conformance_build, conformance_examples=conformance_examples
    )


@hookimpl
def genmlx_register_visualizers(register: Any) -> None:
    from genmlx_example_mcmc import plot_autocorrelation

    register(plot_autocorrelation, accepts=("chain_result",))
