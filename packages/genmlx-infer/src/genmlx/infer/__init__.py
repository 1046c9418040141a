"""genmlx.infer: inference algorithms built on the Generative Function Interface.

Every kernel takes a trace — single, or batched for many independent chains that are
each accepted or rejected on their own — and returns ``(new_trace, accepted)``.

* the MCMC driver :func:`mcmc`: from a model and observations to draws in one call
  (NUTS, HMC, MALA or MH; per-chain warm-up; constrained parameters mapped to an
  unconstrained space automatically; an :class:`MCMCResult` with ``[chain, draw]``
  draws, a summary and convergence warnings)
* importance sampling: :func:`importance_sampling`, :func:`importance_resampling`
* MCMC kernels, each ``kernel(trace, ..., key=) -> (trace, info)``: :func:`mh`
  (selection or custom proposal), :func:`involutive_mh` (automatic Jacobians),
  :func:`mala`, :func:`hmc` (diagonal or dense mass), :func:`nuts` (multinomial NUTS;
  :func:`nuts_warmup` adapts step size and mass), :func:`elliptical_slice`,
  :func:`gibbs` (by enumeration); :func:`map_optimize` (in the unconstrained space of
  the choices' domains)
* kernel combinators :func:`cycle`, :func:`mix_kernels`, :func:`repeat_kernel` and
  the :func:`chain` runner (burn-in, thinning, any number of chains)
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
* exact and analytical inference: :func:`fit` (picks the method and says why),
  :func:`enumerate_posterior` (variable elimination over tensor axes),
  :func:`enumerative_inference` / :func:`choice_vol_grid` (Gen.jl's grids),
  :func:`enumerated_logdensity` and :func:`infer_discrete` (discrete latents summed out
  inside NUTS/VI), :func:`conjugate_structure` / :func:`conjugate_posterior` /
  :func:`rb_importance_sampling` / :func:`rb_particle_filter` / :func:`conjugate_gibbs`
  / :func:`collapsed_gibbs` (automatic conjugacy), :func:`kalman_filter` (Kalman,
  EKF, UKF), :func:`hmm_forward_backward`, :func:`rao_blackwellized_particle_filter`,
  :func:`advi_logdensity`
* trace translators: :class:`DeterministicTraceTranslator`,
  :class:`GeneralTraceTranslator`, :class:`SimpleExtendingTraceTranslator`,
  :class:`SymmetricTraceTranslator` (with :class:`TransformIO`),
  :func:`translate_particles` (SMC), :func:`translator_mh` (MCMC)
* ADEV (:func:`expectation`, estimators :data:`reparam`, :data:`reinforce`,
  :data:`enum_exact`, :data:`mvd`; objectives :func:`elbo_objective`, :func:`iwelbo_objective`,
  :func:`wake_p_objective`, :func:`wake_q_objective`, :func:`sleep_q_objective`) and
  learning (:func:`train`, :func:`train_objective`, :func:`lecture`,
  :func:`lecture_batched`, :func:`train_proposal`, :func:`wake_sleep`)
* scale-out over processes and GPUs (:mod:`genmlx.infer.distributed`, on
  :mod:`mlx.core.distributed`): ``group=`` on :func:`importance_sampling`,
  :func:`importance_resampling`, :func:`particle_filter`, :func:`chain`,
  :func:`nuts_warmup` and the diagnostics shards particles and chains over processes
"""

from genmlx.core.deprecation import moved as _moved
from genmlx.infer._checks import DegenerateWeightsError
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
    enum_exact,
    get_estimator,
    mvd,
    reinforce,
    reparam,
)
from genmlx.infer.chain_runner import ChainResult, chain
from genmlx.infer.conjugacy import (
    ConjugacyPlan,
    ConjugateGroup,
    ConjugateResult,
    PosteriorDistribution,
    RBISResult,
    RBParticleFilterState,
    collapsed_gibbs,
    conjugate_gibbs,
    conjugate_posterior,
    conjugate_structure,
    rb_importance_sampling,
    rb_particle_filter,
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
from genmlx.infer.enumeration import (
    EnumeratedLogDensity,
    EnumerationResult,
    EnumerativeResult,
    Grid,
    choice_vol_grid,
    enumerate_posterior,
    enumerated_logdensity,
    enumerative_inference,
    infer_discrete,
)
from genmlx.infer.fit import METHODS, FitResult, fit
from genmlx.infer.gibbs_enumeration import gibbs
from genmlx.infer.gradient_kernels import hmc, mala, map_optimize
from genmlx.infer.hmm import HMMResult, hmm_arrays, hmm_forward_backward
from genmlx.infer.importance import ISResult, importance_resampling, importance_sampling
from genmlx.infer.kalman import (
    KalmanResult,
    LinearGaussianSSM,
    RBPFResult,
    kalman_filter,
    kalman_filter_arrays,
    rao_blackwellized_particle_filter,
)
from genmlx.infer.kernel_combinators import cycle, mix_kernels, repeat_kernel
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
from genmlx.infer.logdensity_vi import LogDensityVIResult, advi_logdensity
from genmlx.infer.metropolis import involutive_mh, mh
from genmlx.infer.nuts_kernel import NutsInfo, NutsWarmup, nuts, nuts_warmup
from genmlx.infer.optimization import Objective, OptimizeResult, optimize
from genmlx.infer.pmcmc import PMMHResult, conditional_smc, particle_gibbs, pmmh
from genmlx.infer.reversible_jump import (
    birth_death_kernel,
    birth_death_move,
    split_merge_kernel,
    split_merge_move,
)
from genmlx.infer.slice_sampling import elliptical_slice
from genmlx.infer.smc import (
    RESAMPLING_METHODS,
    ParticleFilterState,
    particle_filter,
    resample_indices,
)
from genmlx.infer.tempering import PTResult, parallel_tempering, tempered_rw_mh, tempered_swap
from genmlx.infer.translators import (
    DeterministicTraceTranslator,
    GeneralTraceTranslator,
    SimpleExtendingTraceTranslator,
    SymmetricTraceTranslator,
    TransformIO,
    translate_particles,
    translator_mh,
)
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
    "METHODS",
    "RESAMPLING_METHODS",
    "ADEVEstimator",
    "ADEVEstimatorError",
    "ADEVPrimitive",
    "ADEVSample",
    "ADVIResult",
    "ChainResult",
    "ConjugacyPlan",
    "ConjugateGroup",
    "ConjugateResult",
    "DegenerateWeightsError",
    "DeterministicTraceTranslator",
    "EnumeratedLogDensity",
    "EnumerationResult",
    "EnumerativeResult",
    "Expectation",
    "FitResult",
    "GeneralTraceTranslator",
    "GradientEstimate",
    "Grid",
    "HMMResult",
    "ISResult",
    "KalmanResult",
    "LectureResult",
    "LinearGaussianSSM",
    "LogDensityVIResult",
    "MCMCResult",
    "MCMCWarning",
    "NutsInfo",
    "NutsWarmup",
    "Objective",
    "OptimizeResult",
    "PMMHResult",
    "PTResult",
    "ParticleFilterState",
    "PosteriorDistribution",
    "RBISResult",
    "RBPFResult",
    "RBParticleFilterState",
    "SimpleExtendingTraceTranslator",
    "SummaryTable",
    "SymmetricTraceTranslator",
    "TrainResult",
    "TransformIO",
    "VIEstimate",
    "VIResult",
    "WakeSleepResult",
    "adev_key",
    "adev_simulate",
    "advi",
    "advi_logdensity",
    "birth_death_kernel",
    "birth_death_move",
    "black_box_vi",
    "black_box_vimco",
    "chain",
    "choice_vol_grid",
    "collapsed_gibbs",
    "conditional_smc",
    "conjugate_gibbs",
    "conjugate_posterior",
    "conjugate_structure",
    "cycle",
    "effective_sample_size_weights",
    "elbo",
    "elbo_grad",
    "elbo_objective",
    "elliptical_slice",
    "enum_exact",
    "enumerate_posterior",
    "enumerated_logdensity",
    "enumerative_inference",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "expectation",
    "fit",
    "get_estimator",
    "gibbs",
    "hmc",
    "hmm_arrays",
    "hmm_forward_backward",
    "importance_resampling",
    "importance_sampling",
    "infer_discrete",
    "involutive_mh",
    "iwelbo",
    "iwelbo_grad",
    "iwelbo_objective",
    "kalman_filter",
    "kalman_filter_arrays",
    "lecture",
    "lecture_batched",
    "mala",
    "map_optimize",
    "mcmc",
    "mh",
    "mix_kernels",
    "mvd",
    "nuts",
    "nuts_warmup",
    "optimize",
    "parallel_tempering",
    "particle_filter",
    "particle_gibbs",
    "pmmh",
    "rao_blackwellized_particle_filter",
    "rb_importance_sampling",
    "rb_particle_filter",
    "reinforce",
    "reparam",
    "repeat_kernel",
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
    "translate_particles",
    "translator_mh",
    "wake_p_objective",
    "wake_q_objective",
    "wake_sleep",
]


def _keep_functions_over_deprecated_modules() -> None:
    """Load the deprecated module shims (``genmlx.infer.mh``, ``.nuts``,
    ``.other_kernels``) now, so that a later ``import genmlx.infer.mh`` finds them loaded
    and leaves the function ``genmlx.infer.mh`` in place (a first import would set the
    package attribute to the module)."""
    import importlib

    namespace = globals()
    for name in ("mh", "nuts", "other_kernels"):
        keep = namespace.get(name)
        importlib.import_module(f"{__name__}.{name}")
        if keep is not None:
            namespace[name] = keep
        else:
            namespace.pop(name, None)


_keep_functions_over_deprecated_modules()

__getattr__ = _moved(
    __name__,
    {
        "mix": "genmlx.infer.kernel_combinators:mix_kernels",
        "repeat": "genmlx.infer.kernel_combinators:repeat_kernel",
        "enum": "genmlx.infer.adev_estimators:enum_exact",
        "nuts_info": "genmlx.infer.nuts_kernel:nuts",
    },
)
