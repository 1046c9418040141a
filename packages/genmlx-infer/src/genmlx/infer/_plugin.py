"""Registers genmlx.infer's algorithms through the ``genmlx`` entry point.

The MCMC kernels (:data:`KERNEL_NAMES`) register with ``conformance_kernel=`` (their
set-up on the kernel kit's test models, :mod:`genmlx.infer._conformance`), so
``python -m genmlx.core.testing`` checks them like any third-party kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genmlx.core.plugins import hookimpl

INFERENCE_NAMES = (
    "importance_sampling",
    "importance_resampling",
    "mh",
    "involutive_mh",
    "mala",
    "hmc",
    "nuts",
    "nuts_warmup",
    "map_optimize",
    "elliptical_slice",
    "gibbs",
    "cycle",
    "mix_kernels",
    "repeat_kernel",
    "chain",
    "parallel_tempering",
    "split_merge_move",
    "birth_death_move",
    "particle_filter",
    "conditional_smc",
    "particle_gibbs",
    "pmmh",
    "advi",
    "black_box_vi",
    "black_box_vimco",
    "elbo",
    "iwelbo",
    "expectation",
    "elbo_objective",
    "iwelbo_objective",
    "wake_p_objective",
    "wake_q_objective",
    "sleep_q_objective",
    "train",
    "train_objective",
    "lecture",
    "lecture_batched",
    "train_proposal",
    "wake_sleep",
    "fit",
    "enumerate_posterior",
    "enumerative_inference",
    "enumerated_logdensity",
    "infer_discrete",
    "conjugate_posterior",
    "rb_importance_sampling",
    "rb_particle_filter",
    "conjugate_gibbs",
    "collapsed_gibbs",
    "kalman_filter",
    "hmm_forward_backward",
    "rao_blackwellized_particle_filter",
    "advi_logdensity",
    "translate_particles",
    "translator_mh",
)


KERNEL_NAMES = (
    "mh",
    "involutive_mh",
    "mala",
    "hmc",
    "nuts",
    "elliptical_slice",
    "gibbs",
    "cycle",
    "repeat_kernel",
    "mix_kernels",
)
"""The registered MCMC kernels (and kernel combinators) the kernel kit checks."""


def _conformance(name: str) -> Callable[[Any], Any]:
    """The kit's factory for kernel ``name``, imported on first use (not at loading)."""

    def factory(model: Any) -> Any:
        from genmlx.infer._conformance import KERNEL_CONFORMANCE

        return KERNEL_CONFORMANCE[name](model)

    factory.__name__ = f"{name}_conformance"
    return factory


@hookimpl
def genmlx_register_inference(register: Any) -> None:
    """Register every inference algorithm and kernel combinator of genmlx.infer."""
    import genmlx.infer as infer
    from genmlx.infer.adev_estimators import register_builtin_estimators

    for name in INFERENCE_NAMES:
        if name in KERNEL_NAMES:
            register(getattr(infer, name), name=name, conformance_kernel=_conformance(name))
        else:
            register(getattr(infer, name), name=name)
    register_builtin_estimators(register)
