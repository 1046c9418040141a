"""genmlx.infer: inference algorithms built on the Generative Function Interface.

Every kernel takes a trace — single, or batched for many independent chains that are
each accepted or rejected on their own — and returns ``(new_trace, accepted)``.

* the MCMC driver :func:`mcmc`: from a model and observations to draws in one call
  (NUTS, HMC, MALA or MH; per-chain warm-up; constrained parameters mapped to an
  unconstrained space automatically; an :class:`MCMCResult` with ``[chain, draw]``
  draws, a summary and convergence warnings)
* importance sampling: :func:`importance_sampling`, :func:`importance_resampling`
* MCMC kernels: :func:`mh` (selection or custom proposal), :func:`involutive_mh`
  (automatic Jacobians), :func:`mala`, :func:`hmc` (diagonal or dense mass),
  :func:`nuts` (multinomial NUTS; :func:`nuts_warmup` adapts step size and mass),
  :func:`elliptical_slice`, :func:`gibbs` (by enumeration); :func:`map_optimize` (in
  the unconstrained space of the choices' domains)
* kernel combinators :func:`cycle`, :func:`mix`, :func:`repeat` and the :func:`chain`
  runner (burn-in, thinning, any number of chains)
* reversible jump: :func:`split_merge_move`, :func:`birth_death_move` (involutive moves
  between models of different dimension, on a fixed address structure)
* parallel tempering: :func:`parallel_tempering` (tempered random-walk MH replicas with
  :func:`tempered_swap` moves)
* diagnostics: :func:`ess_bulk`, :func:`ess_tail`, :func:`ess_mean`, :func:`rhat`,
  :func:`summary`, :func:`effective_sample_size_weights` (ArviZ's definitions, on MLX)

* sequential Monte Carlo: :func:`particle_filter` returns a
  :class:`ParticleFilterState` with ``step`` (bootstrap or custom proposal),
  ``resample`` / ``maybe_resample`` (multinomial, stratified, systematic, residual:
  :func:`resample_indices`), ``rejuvenate`` (any MCMC kernel), ``ess`` and
  ``log_ml_estimate`` (Gen.jl's accumulation)

* SMCP3: :meth:`ParticleFilterState.edit` (any edit request as an SMC move) and
  :meth:`ParticleFilterState.smcp3_step` (forward and backward kernels as generative
  functions); particle MCMC: :func:`conditional_smc`, :func:`particle_gibbs`,
  :func:`pmmh`
* variational inference: :func:`advi` (mean-field / full-rank, on the distributions'
  declared domains), :func:`black_box_vi` (reparameterised or REINFORCE with baselines),
  :func:`black_box_vimco` (IWELBO with VIMCO control variates), :func:`elbo`,
  :func:`iwelbo`
* ADEV (:func:`expectation`, estimators :func:`reparam`, :func:`reinforce`,
  :func:`enum`, :func:`mvd`; objectives :func:`elbo_objective`, :func:`iwelbo_objective`,
  :func:`wake_p_objective`, :func:`wake_q_objective`, :func:`sleep_q_objective`) and
  learning (:func:`train`, :func:`train_objective`, :func:`lecture`,
  :func:`lecture_batched`, :func:`train_proposal`, :func:`wake_sleep`)
"""

from genmlx.infer.adev import (
    ADEVSample,
    Expectation,
    GradientEstimate,
    adev_key,
    adev_simulate,
    elbo_objective,
    expectation,
    iwelbo_objective,
    sleep_q_objective,
    wake_p_objective,
    wake_q_objective,
)
from genmlx.infer.adev_estimators import (
    ADEVEstimator,
    ADEVEstimatorError,
    ADEVPrimitive,
    enum,
    get_estimator,
    mvd,
    reinforce,
    reparam,
)
from genmlx.infer.diagnostics import (
    SummaryTable,
    effective_sample_size_weights,
    ess_bulk,
    ess_mean,
    ess_tail,
    rhat,
    summary,
    to_chain_draw,
)
from genmlx.infer.driver import MCMCResult, MCMCWarning, mcmc
from genmlx.infer.gradient_kernels import hmc, mala, map_optimize
from genmlx.infer.importance import ISResult, importance_resampling, importance_sampling
from genmlx.infer.learning import (
    LectureResult,
    TrainResult,
    WakeSleepResult,
    lecture,
    lecture_batched,
    train,
    train_objective,
    train_proposal,
    wake_sleep,
)
from genmlx.infer.mh import ChainResult, chain, cycle, involutive_mh, mh, mix, repeat
from genmlx.infer.nuts import NutsInfo, NutsWarmup, nuts, nuts_info, nuts_warmup
from genmlx.infer.other_kernels import elliptical_slice, gibbs
from genmlx.infer.pmcmc import PMMHResult, conditional_smc, particle_gibbs, pmmh
from genmlx.infer.reversible_jump import (
    birth_death_kernel,
    birth_death_move,
    split_merge_kernel,
    split_merge_move,
)
from genmlx.infer.smc import (
    RESAMPLING_METHODS,
    ParticleFilterState,
    particle_filter,
    resample_indices,
)
from genmlx.infer.tempering import PTResult, parallel_tempering, tempered_rw_mh, tempered_swap
from genmlx.infer.vi import (
    ADVIResult,
    VIEstimate,
    VIResult,
    advi,
    black_box_vi,
    black_box_vimco,
    elbo,
    elbo_grad,
    iwelbo,
    iwelbo_grad,
)

__all__ = [
    "RESAMPLING_METHODS",
    "ADEVEstimator",
    "ADEVEstimatorError",
    "ADEVPrimitive",
    "ADEVSample",
    "ADVIResult",
    "ChainResult",
    "Expectation",
    "GradientEstimate",
    "ISResult",
    "LectureResult",
    "MCMCResult",
    "MCMCWarning",
    "NutsInfo",
    "NutsWarmup",
    "PMMHResult",
    "PTResult",
    "ParticleFilterState",
    "SummaryTable",
    "TrainResult",
    "VIEstimate",
    "VIResult",
    "WakeSleepResult",
    "adev_key",
    "adev_simulate",
    "advi",
    "birth_death_kernel",
    "birth_death_move",
    "black_box_vi",
    "black_box_vimco",
    "chain",
    "conditional_smc",
    "cycle",
    "effective_sample_size_weights",
    "elbo",
    "elbo_grad",
    "elbo_objective",
    "elliptical_slice",
    "enum",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "expectation",
    "get_estimator",
    "gibbs",
    "hmc",
    "importance_resampling",
    "importance_sampling",
    "involutive_mh",
    "iwelbo",
    "iwelbo_grad",
    "iwelbo_objective",
    "lecture",
    "lecture_batched",
    "mala",
    "map_optimize",
    "mh",
    "mix",
    "mvd",
    "mcmc",
    "nuts",
    "nuts_info",
    "nuts_warmup",
    "parallel_tempering",
    "particle_filter",
    "particle_gibbs",
    "pmmh",
    "reinforce",
    "reparam",
    "repeat",
    "resample_indices",
    "rhat",
    "sleep_q_objective",
    "split_merge_kernel",
    "split_merge_move",
    "summary",
    "tempered_rw_mh",
    "tempered_swap",
    "to_chain_draw",
    "train",
    "train_objective",
    "train_proposal",
    "wake_p_objective",
    "wake_q_objective",
    "wake_sleep",
]
