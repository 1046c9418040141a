"""The importance-weighted bound (IWELBO) and VIMCO.

With ``x_1..x_K ~ q(·; θ)`` i.i.d. and weights ``w_k = p(x_k, y) / q(x_k; θ)``,

.. math::

    \\mathrm{IWELBO}_K(θ) = \\mathbb{E}\\Big[\\log \\frac1K \\sum_k w_k\\Big]

(Burda et al. 2016) is a lower bound on ``log p(y)`` that increases with ``K``
(``IWELBO_1`` is the ELBO). :func:`black_box_vimco` maximises it over the guide's
parameters (Gen.jl's ``black_box_vimco!``) with VIMCO's leave-one-out control variates
for the score-function gradient (Mnih & Rezende 2016) or with reparameterised (IWAE)
gradients; :func:`iwelbo` estimates the bound and :func:`iwelbo_grad` returns one
gradient estimate. The guide is written as for :func:`~genmlx.infer.bbvi.black_box_vi`.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, param
    >>> from genmlx.dists import normal
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 1.0) @ "y"
    >>> @gen
    ... def guide():
    ...     normal(param("m", 1.0), 2.0) @ "mu"     # deliberately too wide
    >>> e1 = iwelbo(model, (), {"y": 2.0}, guide, n_particles=1, n_estimates=2000,
    ...             key=mx.random.key(0))
    >>> e10 = iwelbo(model, (), {"y": 2.0}, guide, n_particles=10, n_estimates=2000,
    ...              key=mx.random.key(1))
    >>> bool(e10.value > e1.value)
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.deprecation import renamed_arguments
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.params import ParamStore
from genmlx.core.random import Key, resolve_key
from genmlx.infer._vi_guide import (
    Values,
    as_obs,
    check_call,
    check_estimator,
    check_guide,
    init_store,
    log_weights,
    loo_mean,
    prepare,
)
from genmlx.infer._vi_loop import (
    VIEstimate,
    check_positive_int,
    estimate,
    make_optimizer,
    optimize,
)
from genmlx.infer.bbvi import VIResult

__all__ = ["VIMCO_ESTIMATORS", "black_box_vimco", "iwelbo", "iwelbo_grad"]

VIMCO_ESTIMATORS = ("vimco", "reparam")
"""Gradient estimators of :func:`black_box_vimco` and :func:`iwelbo_grad`."""


def _vimco_baselines(f: mx.array, geometric: bool) -> mx.array:
    """VIMCO's leave-one-out baselines ``log((1/K)(Σ_{j≠i} w_j + ŵ_{-i}))``, ``[M, K]``.

    ``ŵ_{-i}`` replaces the left-out weight by the geometric (``exp`` of the mean log
    weight of the others) or the arithmetic mean of the other weights.
    """
    k = f.shape[-1]
    eye = mx.eye(k, dtype=mx.bool_)
    if geometric:
        rep = mx.where(eye, loo_mean(f)[..., :, None], f[..., None, :])
        return mx.logsumexp(rep, axis=-1) - math.log(k)
    others = mx.logsumexp(mx.where(eye, -mx.inf, f[..., None, :]), axis=-1)
    return mx.logaddexp(others, others - math.log(k - 1)) - math.log(k)


def _iwelbo_surrogate(
    lw: mx.array, log_q: mx.array, vimco: bool, geometric: bool
) -> tuple[mx.array, mx.array]:
    """``lw``, ``log_q`` of shape ``[M, K]``; returns ``(surrogate, IWELBO estimate)``."""
    k = lw.shape[-1]
    bound = mx.logsumexp(lw, axis=-1) - math.log(k)
    if not vimco:
        return mx.mean(bound), mx.mean(mx.stop_gradient(bound))
    f = mx.stop_gradient(lw)
    l_hat = mx.stop_gradient(bound)[..., None]
    w_norm = mx.softmax(f, axis=-1)
    signal = mx.stop_gradient(l_hat - _vimco_baselines(f, geometric) - w_norm)
    return mx.mean(mx.sum(signal * log_q, axis=-1)), mx.mean(l_hat)


@renamed_arguments(compiled="compile")
def black_box_vimco(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_particles: int = 10,
    n_samples: int = 1,
    n_steps: int = 1000,
    key: Key = None,
    estimator: str = "vimco",
    geometric: bool = True,
    optimizer: Any = None,
    learning_rate: float = 0.01,
    params: ParamStore | Mapping[str, Any] | None = None,
    compile: bool = True,
    steps_per_call: int = 1,
    progress: bool = False,
) -> VIResult:
    """Fit the guide by stochastic gradient ascent on the ``K``-sample IWELBO.

    ``IWELBO_K(θ) = E[log (1/K) Σ_k w_k]`` with ``w_k = p(x_k, y) / q(x_k; θ)`` and
    ``x_1..x_K ~ q`` i.i.d. (``K = n_particles``); each step averages ``n_samples``
    independent ``K``-sample estimates (Gen.jl's ``samples_per_iter``), all ``n_samples ·
    K`` guide draws in one batched run. Gradients:

    * ``estimator="vimco"`` (Mnih & Rezende 2016, as Gen.jl's ``black_box_vimco!``):
      ``Σ_k (L̂ - b_k - w̃_k) ∇ log q(x_k; θ)`` with ``L̂`` the estimate, ``w̃_k`` the
      normalised weights and ``b_k`` the estimate recomputed with ``w_k`` replaced by
      the geometric (``geometric=True``) or arithmetic mean of the other weights;
    * ``estimator="reparam"``: the reparameterised gradient of ``L̂`` (IWAE).

    Args:
        model, args, observations, guide, guide_args: as for
            :func:`~genmlx.infer.bbvi.black_box_vi`.
        n_particles: ``K >= 2``, the importance samples per bound estimate.
        n_samples: independent bound estimates averaged per step.
        n_steps: optimiser steps.
        key: PRNG key.
        estimator: ``"vimco"`` or ``"reparam"``.
        geometric: VIMCO's geometric (``True``) or arithmetic leave-one-out mean.
        optimizer, learning_rate, params, compile, steps_per_call, progress: as for
            :func:`~genmlx.infer.bbvi.black_box_vi`.

    Returns:
        :class:`VIResult` with the fitted ``params`` and the per-step IWELBO ``history``.

    Raises:
        ValueError: unknown estimator, ``n_particles < 2``, a non-reparameterisable guide
            choice with ``estimator="reparam"``, or a guide without parameters.
        NonFiniteScoreError: the bound or its gradient became NaN/infinite at some step.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> @gen
        ... def guide():
        ...     normal(param("m", 0.0), 1.0) @ "mu"
        >>> res = black_box_vimco(model, (), {"y": 2.0}, guide, n_particles=5, n_samples=4,
        ...                       n_steps=200, learning_rate=0.05, key=mx.random.key(0))
        >>> res.objective, res.history.shape
        ('iwelbo', (200,))
    """
    op = "black_box_vimco"
    args, guide_args = check_call(model, args, guide, guide_args, op)
    estimator = check_estimator(estimator, VIMCO_ESTIMATORS, op)
    check_positive_int(n_particles, "n_particles", op, minimum=2)
    check_positive_int(n_samples, "n_samples", op)
    check_positive_int(n_steps, "n_steps", op)
    check_positive_int(steps_per_call, "steps_per_call", op)
    reparam = estimator == "reparam"
    obs = as_obs(observations, op)
    opt = make_optimizer(optimizer, learning_rate, op)
    k_init, k_check, k_fit = mx.random.split(resolve_key(key), 3)
    store = init_store(guide, guide_args, params, k_init, op)
    check_guide(model, args, obs, guide, guide_args, store, reparam, k_check, op)
    m, k = n_samples, n_particles

    def objective(p: Values, ex: Values, key: mx.array) -> tuple[mx.array, mx.array, Values]:
        lw, log_q = log_weights(model, args, obs, guide, guide_args, p, m * k, key, reparam)
        surrogate, value = _iwelbo_surrogate(
            lw.reshape(m, k), log_q.reshape(m, k), not reparam, geometric
        )
        return -surrogate, value, ex

    fitted, history = optimize(
        objective,
        store.values_dict,
        {},
        n_steps=n_steps,
        key=k_fit,
        optimizer=opt,
        compiled=compile,
        steps_per_call=steps_per_call,
        progress=progress,
        op=op,
        what="IWELBO",
    )
    return VIResult(ParamStore(fitted), mx.array(history), "iwelbo", guide, guide_args)


def iwelbo(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_particles: int,
    n_estimates: int = 100,
    params: ParamStore | Mapping[str, Any] | None = None,
    key: Key = None,
) -> VIEstimate:
    """Estimate ``IWELBO_K = E[log (1/K) Σ_k w_k]`` (``K = n_particles``) by the mean of
    ``n_estimates`` independent ``K``-sample bounds, with its standard error.

    ``K = 1`` is the ELBO; ``IWELBO_K`` increases with ``K`` to ``log p(y)``. Each of the
    ``n_estimates · K`` guide draws runs in one batched execution.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> @gen
        ... def guide():
        ...     normal(param("m", 0.0), 1.0) @ "mu"
        >>> est = iwelbo(model, (), {"y": 2.0}, guide, n_particles=10, key=mx.random.key(0))
        >>> est.samples.shape
        (100,)
    """
    op = "iwelbo"
    check_positive_int(n_particles, "n_particles", op)
    check_positive_int(n_estimates, "n_estimates", op)
    args, guide_args, obs, store, k = prepare(
        model, args, observations, guide, guide_args, params, key, op
    )
    lw, _ = log_weights(
        model, args, obs, guide, guide_args, store.values_dict, n_estimates * n_particles, k, False
    )
    bounds = mx.logsumexp(lw.reshape(n_estimates, n_particles), axis=-1) - math.log(n_particles)
    return estimate(bounds)


def iwelbo_grad(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_particles: int,
    params: ParamStore | Mapping[str, Any] | None = None,
    n_samples: int = 1,
    key: Key = None,
    estimator: str = "vimco",
    geometric: bool = True,
) -> tuple[mx.array, dict[str, mx.array]]:
    """One estimate of ``IWELBO_K`` and of its gradient (VIMCO or reparameterised), as
    in :func:`black_box_vimco`, averaged over ``n_samples`` independent ``K``-sample sets.

    Returns:
        ``(iwelbo_estimate, {name: gradient})`` — the gradient of the bound.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     normal(0.0, 1.0) @ "z"
        >>> @gen
        ... def guide():
        ...     normal(param("m", 0.0), 1.0) @ "z"
        >>> value, grads = iwelbo_grad(model, (), None, guide, n_particles=4,
        ...                            key=mx.random.key(0))
        >>> sorted(grads)
        ['m']
    """
    op = "iwelbo_grad"
    estimator = check_estimator(estimator, VIMCO_ESTIMATORS, op)
    check_positive_int(n_particles, "n_particles", op, minimum=2)
    check_positive_int(n_samples, "n_samples", op)
    reparam = estimator == "reparam"
    args, guide_args, obs, store, k = prepare(
        model, args, observations, guide, guide_args, params, key, op
    )
    m, kk = n_samples, n_particles

    def surrogate(p: Values) -> tuple[mx.array, mx.array]:
        lw, log_q = log_weights(model, args, obs, guide, guide_args, p, m * kk, k, reparam)
        return _iwelbo_surrogate(lw.reshape(m, kk), log_q.reshape(m, kk), not reparam, geometric)

    with runtime.transforming():
        (_, value), grads = mx.value_and_grad(surrogate)(store.values_dict)
    return value, grads
