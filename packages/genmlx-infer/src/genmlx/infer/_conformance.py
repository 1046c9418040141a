"""How the kernel kit sets up each MCMC kernel of genmlx.infer on its test models.

:mod:`genmlx.infer._plugin` registers every kernel with ``conformance_kernel=`` one of
the factories below, so ``python -m genmlx.core.testing`` and the package's tests run
:func:`genmlx.core.testing.kernels.check_kernel` over them exactly as over a
third-party kernel. A factory returns ``None`` for a model its kernel does not apply to
(a gradient kernel on discrete choices, elliptical slice sampling without a Gaussian
prior).

Proposals are written with core's reference normal
(:mod:`genmlx.core.testing.models`), so this module needs no distribution library.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Trace, choicemap, gen, select
from genmlx.core.testing.kernel_models import KernelTestModel
from genmlx.core.testing.kernels import Kernel
from genmlx.core.testing.models import normal
from genmlx.infer.gibbs_enumeration import gibbs
from genmlx.infer.gradient_kernels import hmc, mala
from genmlx.infer.kernel_combinators import cycle, mix_kernels, repeat_kernel
from genmlx.infer.metropolis import involutive_mh, mh
from genmlx.infer.nuts_kernel import nuts
from genmlx.infer.slice_sampling import elliptical_slice

__all__ = ["KERNEL_CONFORMANCE"]


def _scale(model: KernelTestModel) -> float:
    return min(model.scales.values())


def _drift_proposal(model: KernelTestModel) -> GenerativeFunction:
    """``x' ~ N(x + s/2, s)`` per latent: an *asymmetric* random walk, so the kit checks
    that custom-proposal MH applies the proposal-density correction."""
    latents = model.latents

    @gen
    def drift(trace: Trace, s: float) -> None:
        for a in latents:
            normal(trace[a] + 0.5 * s, s) @ a

    return drift


def _resimulation(model: KernelTestModel) -> Kernel:
    return partial(mh, selection_or_proposal=model.selection)


def _drift_mh(model: KernelTestModel) -> Kernel:
    return partial(mh, selection_or_proposal=_drift_proposal(model), proposal_args=(_scale(model),))


def mh_conformance(model: KernelTestModel) -> Kernel:
    """Custom-proposal MH with an asymmetric random walk (continuous models) or
    resimulation MH from the prior (discrete models)."""
    return _resimulation(model) if model.discrete else _drift_mh(model)


def involutive_mh_conformance(model: KernelTestModel) -> Kernel | None:
    """Involutive MH with the scaling involution ``(x, u) ↦ (x·eᵘ, −u)``,
    ``u ~ N(0, 0.3)`` (Jacobian ``e^{Σu}``, computed by the kernel)."""
    if model.discrete:
        return None
    latents = model.latents

    @gen
    def aux(trace: Trace) -> None:
        for i, a in enumerate(latents):
            normal(0.0 * trace[a], 0.3) @ ("u", i)

    def scale(t: ChoiceMap, u: ChoiceMap, _: tuple[Any, ...]) -> tuple[ChoiceMap, ChoiceMap]:
        new_t = {a: t[a] * mx.exp(u["u", i]) for i, a in enumerate(latents)}
        new_u = {("u", i): -u["u", i] for i in range(len(latents))}
        return choicemap(new_t), choicemap(new_u)

    return partial(involutive_mh, proposal=aux, proposal_args=(), involution=scale)


def mala_conformance(model: KernelTestModel) -> Kernel | None:
    """MALA on every latent, step ``0.5 ×`` the smallest posterior scale."""
    if model.discrete:
        return None
    return partial(mala, selection=model.selection, step_size=0.5 * _scale(model))


def hmc_conformance(model: KernelTestModel) -> Kernel | None:
    """HMC, 5 leapfrog steps of ``0.3 ×`` the smallest posterior scale."""
    if model.discrete:
        return None
    return partial(hmc, selection=model.selection, step_size=0.3 * _scale(model), n_leapfrog=5)


def nuts_conformance(model: KernelTestModel) -> Kernel | None:
    """NUTS with step ``0.3 ×`` the smallest posterior scale and ``max_depth=4``."""
    if model.discrete:
        return None
    return partial(nuts, selection=model.selection, step_size=0.3 * _scale(model), max_depth=4)


def elliptical_slice_conformance(model: KernelTestModel) -> Kernel | None:
    """Elliptical slice sampling of each latent (models with independent Gaussian priors).

    ``max_shrinks=32`` instead of the default 64 halves the kit's run time; by the
    kernel's own bound a chain then fails to find a slice point with probability below
    ``2π·2⁻³² / δ ≈ 1.5e-9 / δ`` per step, far below what the kit's tests resolve.
    """
    if model.discrete or model.gaussian_prior is None:
        return None
    prior = model.gaussian_prior
    steps = [
        partial(
            elliptical_slice,
            addr=a,
            mean=mx.array(prior[a][0]),
            cov=mx.array(prior[a][1]),
            max_shrinks=32,
        )
        for a in model.latents
    ]
    return steps[0] if len(steps) == 1 else cycle(*steps)


def gibbs_conformance(model: KernelTestModel) -> Kernel | None:
    """A systematic scan of Gibbs steps by enumeration (discrete models)."""
    if not model.discrete:
        return None
    return cycle(*(partial(gibbs, addr=a) for a in model.latents))


def cycle_conformance(model: KernelTestModel) -> Kernel:
    """Single-site resimulation MH per latent (discrete), or resimulation then drift MH."""
    if model.discrete:
        return cycle(*(partial(mh, selection_or_proposal=select(a)) for a in model.latents))
    return cycle(_resimulation(model), _drift_mh(model))


def repeat_kernel_conformance(model: KernelTestModel) -> Kernel:
    """Three resimulation-MH steps."""
    return repeat_kernel(_resimulation(model), 3)


def mix_kernels_conformance(model: KernelTestModel) -> Kernel:
    """A 0.4/0.6 mixture of resimulation MH and drift MH (or single-site MH)."""
    other = (
        partial(mh, selection_or_proposal=select(model.latents[0]))
        if model.discrete
        else _drift_mh(model)
    )
    return mix_kernels([_resimulation(model), other], [0.4, 0.6])


KERNEL_CONFORMANCE: dict[str, Any] = {
    "mh": mh_conformance,
    "involutive_mh": involutive_mh_conformance,
    "mala": mala_conformance,
    "hmc": hmc_conformance,
    "nuts": nuts_conformance,
    "elliptical_slice": elliptical_slice_conformance,
    "gibbs": gibbs_conformance,
    "cycle": cycle_conformance,
    "repeat_kernel": repeat_kernel_conformance,
    "mix_kernels": mix_kernels_conformance,
}
"""Registered kernel name → its ``conformance_kernel`` factory."""
