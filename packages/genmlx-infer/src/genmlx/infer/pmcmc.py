"""Particle MCMC: conditional SMC, particle Gibbs and particle marginal Metropolis–Hastings.

Andrieu, Doucet & Holenstein (2010). A sequence of targets is given as ``steps``, a
list of ``(args_t, observations_t)``: the model at ``args_t`` with the observations of
steps ``0..t`` (each step's observations are added at that step), exactly as
:func:`~genmlx.infer.particle_filter` and :meth:`~genmlx.infer.ParticleFilterState.step`
consume them.

* :func:`conditional_smc` — a bootstrap particle filter in which particle 0 is held to
  a *reference* trajectory: at step ``t`` its new latent choices are constrained to the
  reference's (a per-particle masked constraint, so all particles still run in one
  batched update), its weight is the same bootstrap weight ``log p(y_t | ...)`` as the
  others' (the constrained latents' prior density is subtracted), and at resampling
  particle 0 keeps ancestor 0 while the others draw their ancestors i.i.d. from the
  weights (multinomial, the scheme for which conditional resampling is this simple).
* :func:`particle_gibbs` — iterate: run conditional SMC given the reference, draw one
  final particle with probability proportional to its weight, make it the new
  reference. This Markov kernel leaves the posterior ``p(x_{0:T} | y_{0:T})``
  invariant for every ``N >= 2``.
* :func:`pmmh` — Metropolis–Hastings on static parameters ``θ`` with the particle
  filter's unbiased likelihood estimate ``Ẑ(θ)`` in place of ``p(y | θ)``: propose
  ``θ' ~ N(θ, step²)``, accept with probability
  ``min(1, p(θ') Ẑ(θ') / (p(θ) Ẑ(θ)))``; the chain targets ``p(θ | y)`` exactly.

Which choices are "new at step t" is given by ``step_selection(t)`` (a
:class:`~genmlx.core.Selection`); the default ``select(t)`` fits a model that *is* an
``Unfold``/``Scan`` (step ``t``'s choices at ``(t, ...)``). For a model with the sequence
at ``"chain"`` pass ``lambda t: select(("chain", t))``. Observed addresses are never
constrained to the reference (they are observed for every particle).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import ChoiceMap, GenerativeFunction, Selection, Trace, select
from genmlx.core.batching import take_particles
from genmlx.core.deprecation import renamed_arguments, warn_deprecated
from genmlx.core.diff import diff_args
from genmlx.core.random import Key, resolve_key
from genmlx.infer import _checks as checks
from genmlx.infer.importance import _check_inputs
from genmlx.infer.smc import ParticleFilterState, resample_indices

__all__ = ["PMMHResult", "conditional_smc", "particle_gibbs", "pmmh"]

Step = tuple[tuple[Any, ...], "ChoiceMap | Mapping[Any, Any] | None"]


def _default_step_selection(t: int) -> Selection:
    return select(t)


def _reference_constraints(
    reference: ChoiceMap, sel: Selection, obs: ChoiceMap, n: int
) -> tuple[ChoiceMap, Selection]:
    """Batched constraints: the reference's new latents for particle 0 only, and the
    observations for everyone; plus the selection of those latents."""
    latents = reference.filter(sel)
    paths = [p for p, _ in latents.leaves() if not obs.has_value(p)]
    m0 = mx.arange(n) == 0
    items: list[tuple[Any, ChoiceMap]] = []
    for p in paths:
        v = latents[p]
        items.append((p, ChoiceMap.leaf(mx.broadcast_to(v, (n, *v.shape)), (n,), mask=m0)))
    for p, v in obs.leaves():
        items.append((p, ChoiceMap.leaf(mx.broadcast_to(v, (n, *v.shape)), (n,))))
    return ChoiceMap.from_nodes(items, (n,)), select(*paths) if paths else Selection.none()


def _conditional_indices(log_weights: mx.array, key: mx.array) -> mx.array:
    idx = resample_indices(log_weights, "multinomial", key=key)
    return mx.where(mx.arange(idx.shape[0]) == 0, 0, idx).astype(idx.dtype)


def _check_steps(steps: Sequence[Step], op: str) -> list[Step]:
    steps = list(steps)
    if not steps:
        raise ValueError(f"{op}: steps must hold at least one (args, observations) pair")
    for i, s in enumerate(steps):
        if not (isinstance(s, (tuple, list)) and len(s) == 2 and isinstance(s[0], (tuple, list))):
            raise TypeError(f"{op}: steps[{i}] must be a pair (args tuple, observations)")
    return steps


def conditional_smc(
    model: GenerativeFunction,
    steps: Sequence[Step],
    n_particles: int,
    reference: Trace | ChoiceMap,
    *,
    step_selection: Callable[[int], Selection] = _default_step_selection,
    key: Key = None,
) -> ParticleFilterState:
    """Conditional SMC: a bootstrap filter with particle 0 held to ``reference``.

    Resamples (multinomially, particle 0 keeping ancestor 0) before every step after the
    first. Returns the final weighted particles; particle 0 is the reference.

    Args:
        model: the model.
        steps: ``[(args_t, observations_t)]`` for ``t = 0..T-1``.
        n_particles: ``N >= 2``.
        reference: a trace (or its choices) of the model at the last step's args.
        step_selection: the latents step ``t`` adds (default ``select(t)``).
        key: PRNG key.
    """
    steps = _check_steps(steps, "conditional_smc")
    if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < 2:
        raise ValueError(f"conditional_smc: n_particles must be an int >= 2, got {n_particles!r}")
    ref = reference.get_choices() if isinstance(reference, Trace) else reference
    if not isinstance(ref, ChoiceMap) or ref.batch_shape:
        raise TypeError("conditional_smc: reference must be one (unbatched) trace or choice map")
    key = resolve_key(key)
    keys = mx.random.split(key, 2 * len(steps))
    n = n_particles
    state: ParticleFilterState | None = None
    for t, (args, observations) in enumerate(steps):
        obs = _check_inputs(model, tuple(args), observations, n, None, "conditional_smc")
        cons, latent_sel = _reference_constraints(ref, step_selection(t), obs, n)
        if state is None:
            tr, w = model.vgenerate(tuple(args), cons, n, key=keys[0])
            acc = mx.array(0.0, dtype=w.dtype)
            lw_old = mx.zeros_like(w)
        else:
            idx = _conditional_indices(state.log_weights, keys[2 * t - 1])
            lse = mx.logsumexp(state.log_weights)
            acc = state.log_ml_accumulated + lse - math.log(n)
            prev = take_particles(state.traces, idx)
            new_args = tuple(args)
            tr, w, _, _ = model.update(
                prev, cons, new_args, diff_args(prev.args, new_args), key=keys[2 * t]
            )
            lw_old = mx.zeros_like(w)
        # particle 0's latents were constrained, not proposed: remove their prior density
        prior_ref = tr.project(latent_sel) if not latent_sel.is_none() else mx.zeros_like(w)
        w = w - mx.where(mx.arange(n) == 0, prior_ref, mx.zeros_like(prior_ref))
        state = ParticleFilterState(tr, lw_old + w, acc)
    assert state is not None
    return state


@renamed_arguments(n_iters="n_steps")
def particle_gibbs(
    model: GenerativeFunction,
    steps: Sequence[Step],
    n_particles: int,
    reference: Trace,
    n_steps: int,
    *,
    step_selection: Callable[[int], Selection] = _default_step_selection,
    key: Key = None,
) -> list[Trace]:
    """Particle Gibbs: ``n_steps`` conditional-SMC sweeps, each picking the next reference.

    Each sweep runs :func:`conditional_smc` given the current reference and draws one
    final particle ``k`` with probability ``w̄_k``; that trace is the next reference.
    The kernel leaves ``p(x_{0:T} | y_{0:T})`` invariant.

    Args:
        model: the model.
        steps: ``[(args_t, observations_t), ...]``.
        n_particles: particles per sweep.
        reference: the initial reference trajectory.
        n_steps: the number of sweeps (``n_iters=`` is the deprecated name).
        step_selection: ``t -> Selection`` of step ``t``'s new latent choices.
        key: PRNG key.

    Returns:
        The ``n_steps`` references after each sweep (unbatched traces).
    """
    checks.count(n_steps, "n_steps", "particle_gibbs")
    key = resolve_key(key)
    keys = mx.random.split(key, 2 * n_steps)
    out: list[Trace] = []
    ref = reference
    for i in range(n_steps):
        st = conditional_smc(
            model, steps, n_particles, ref, step_selection=step_selection, key=keys[2 * i]
        )
        k = mx.random.categorical(st.log_weights, key=keys[2 * i + 1])
        ref = take_particles(st.traces, k)
        out.append(ref)
    return out


class PMMHResult(NamedTuple):
    """Result of :func:`pmmh`.

    Attributes:
        thetas: ``[n_steps, *theta.shape]`` the chain's states.
        log_ml_estimate: ``[n_steps]`` the filter's log-likelihood estimate at each state
            (``log_ml`` is the deprecated name).
        accepted: ``[n_steps]`` booleans.
        acceptance_rate: their mean.
    """

    thetas: mx.array
    log_ml_estimate: mx.array
    accepted: mx.array
    acceptance_rate: mx.array

    @property
    def log_ml(self) -> mx.array:
        """Deprecated name of :attr:`log_ml_estimate`."""
        warn_deprecated("PMMHResult.log_ml", "PMMHResult.log_ml_estimate")
        return self.log_ml_estimate


@renamed_arguments(n_iters="n_steps")
def pmmh(
    log_ml_estimate: Callable[[mx.array, mx.array], mx.array],
    log_prior: Callable[[mx.array], mx.array],
    theta0: Any,
    n_steps: int,
    *,
    step_size: float | mx.array,
    key: Key = None,
) -> PMMHResult:
    """Particle marginal Metropolis–Hastings on parameters ``θ``.

    ``log_ml_estimate(θ, key)`` returns a particle filter's ``log Ẑ(θ)`` (e.g.
    ``particle_filter(...)`` run to the end, ``.log_ml_estimate``); because ``Ẑ`` is
    unbiased, MH with ``Ẑ`` in place of the likelihood targets ``p(θ | y)`` exactly. The
    proposal is a Gaussian random walk ``θ' ~ N(θ, step_size²)``; ``log Ẑ`` of the
    current state is kept (not re-estimated), as the method requires.

    Args:
        log_ml_estimate: ``(θ, key) -> log Ẑ(θ)`` (a scalar array).
        log_prior: ``θ -> log p(θ)`` (``-inf`` outside the support: never accepted).
        theta0: the initial ``θ`` (an array; must have finite prior density).
        n_steps: the number of MH steps (``n_iters=`` is the deprecated name).
        step_size: the random walk's standard deviation (scalar or per component).
        key: PRNG key.
    """
    checks.count(n_steps, "n_steps", "pmmh")
    if not callable(log_ml_estimate) or not callable(log_prior):
        raise TypeError("pmmh: log_ml_estimate and log_prior must be functions")
    checks.positive_scalar(
        step_size if isinstance(step_size, (int, float, mx.array)) else mx.array(step_size),
        "step_size",
        "pmmh",
    )
    theta = mx.array(theta0, dtype=mx.float32)
    lp = log_prior(theta)
    if not math.isfinite(float(lp)):
        raise ValueError(f"pmmh: theta0 = {theta0!r} has prior log density {float(lp)}")
    key = resolve_key(key)
    keys = mx.random.split(key, 3 * n_steps + 1)
    ll = log_ml_estimate(theta, keys[0])
    thetas, lls, accs = [], [], []
    for i in range(n_steps):
        k_prop, k_pf, k_u = keys[3 * i + 1], keys[3 * i + 2], keys[3 * i + 3]
        prop = theta + step_size * mx.random.normal(theta.shape, key=k_prop)
        lp_prop = log_prior(prop)
        if math.isfinite(float(lp_prop)):
            ll_prop = log_ml_estimate(prop, k_pf)
            log_alpha = (lp_prop + ll_prop) - (lp + ll)
            accept = bool(mx.log(mx.random.uniform(key=k_u)) < log_alpha)
        else:
            accept = False
        if accept:
            theta, lp, ll = prop, lp_prop, ll_prop
        thetas.append(theta)
        lls.append(ll)
        accs.append(accept)
    accepted = mx.array(accs)
    return PMMHResult(
        mx.stack(thetas), mx.stack(lls), accepted, mx.mean(accepted.astype(mx.float32))
    )
