"""Black-box variational inference with a guide written as a generative function.

The *guide* ``q(x; θ)`` is a generative function whose ``param(...)`` reads are the
variational parameters ``θ`` (a :class:`~genmlx.core.ParamStore`); its choices must be
the model's latent choices. With log importance weights
``f(x) = log p(x, y) - log q(x; θ)``, :func:`black_box_vi` maximises
``ELBO(θ) = E_q[f] = log p(y) - KL(q || p(· | y))`` (Gen.jl's ``black_box_vi!``) with

* the *reparameterised* gradient ``∇_θ E_ε[f(x_θ(ε))]`` (every guide choice drawn by a
  differentiable sampler: ``has_reparam``), or
* the *score-function* (REINFORCE) gradient ``E_q[(f - b) ∇_θ log q(x; θ)]``, with a
  baseline ``b`` that does not depend on the sample it multiplies, so the estimate
  stays unbiased.

:func:`elbo` estimates the bound and :func:`elbo_grad` returns one gradient estimate,
for checks and custom loops. The ``K``-sample bound and VIMCO are in
:mod:`genmlx.infer.vimco`. All samples of a step run through one batched ``vsimulate``
of the guide and one batched ``assess`` of the model; the step is compiled with
``mx.compile`` unless ``compile=False``.

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
    ...     normal(param("m", 0.0), mx.exp(param("log_s", 0.0))) @ "mu"
    >>> res = black_box_vi(model, (), {"y": 2.0}, guide, (), n_steps=500, n_samples=20,
    ...                    learning_rate=0.05, key=mx.random.key(0))
    >>> round(float(res.params["m"]), 1)     # the posterior is N(1, 1/2)
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.deprecation import renamed_arguments
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.params import ParamStore, use_params
from genmlx.core.random import Key, resolve_key
from genmlx.core.serialize import register_format
from genmlx.infer._vi_guide import (
    Values,
    as_obs,
    check_baseline,
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

__all__ = ["BASELINES", "ESTIMATORS", "VIResult", "black_box_vi", "elbo", "elbo_grad"]

ESTIMATORS = ("reparam", "reinforce")
"""Gradient estimators of :func:`black_box_vi` and :func:`elbo_grad`."""

BASELINES = ("leave_one_out", "running", "none")
"""Baselines of the score-function estimator (``"running"`` only inside a fit)."""


class VIResult:
    """The result of :func:`black_box_vi` / :func:`black_box_vimco`.

    Attributes:
        params: the fitted variational parameters (a ``ParamStore``).
        history: the objective estimate of every step, shape ``[n_steps]`` — the ELBO
            for ``black_box_vi``, the ``K``-sample IWELBO for ``black_box_vimco``.
        objective: ``"elbo"`` or ``"iwelbo"``.
        guide: the guide, and ``guide_args`` its arguments.
    """

    def __init__(
        self,
        params: ParamStore,
        history: mx.array,
        objective: str,
        guide: GenerativeFunction,
        guide_args: tuple[Any, ...],
    ) -> None:
        self.params = params
        self.history = history
        self.objective = objective
        self.guide = guide
        self.guide_args = guide_args

    @property
    def elbo_history(self) -> mx.array:
        """Same as :attr:`history` (the name :func:`~genmlx.infer.advi.advi` uses)."""
        return self.history

    def sample(self, n: int, *, key: Key = None) -> ChoiceMap:
        """``n`` draws from the fitted guide: a choice map with ``batch_shape == (n,)``."""
        check_positive_int(n, "n", "VIResult.sample")
        with use_params(self.params):
            return self.guide.vsimulate(self.guide_args, n, key=resolve_key(key)).get_choices()

    def __repr__(self) -> str:
        return (
            f"VIResult({self.objective}, params={sorted(self.params)}, "
            f"final estimate={float(self.history[-1]):.4g})"
        )


def _elbo_surrogate(
    lw: mx.array, log_q: mx.array, reparam: bool, baseline: str, running: mx.array | None
) -> tuple[mx.array, mx.array]:
    """``(surrogate, elbo estimate)``: the surrogate's gradient is the ELBO gradient estimate."""
    f = mx.stop_gradient(lw)
    if reparam:
        return mx.mean(lw), mx.mean(f)
    if baseline == "leave_one_out":
        b = loo_mean(f)
    elif baseline == "running":
        assert running is not None
        b = running
    else:
        b = mx.zeros_like(f)
    return mx.mean(mx.stop_gradient(f - b) * log_q), mx.mean(f)


# ---------------------------------------------------------------------------- fitting
@renamed_arguments(compiled="compile")
def black_box_vi(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_steps: int = 1000,
    n_samples: int = 10,
    key: Key = None,
    estimator: str = "reparam",
    baseline: str = "leave_one_out",
    baseline_decay: float = 0.9,
    optimizer: Any = None,
    learning_rate: float = 0.01,
    params: ParamStore | Mapping[str, Any] | None = None,
    compile: bool = True,
    steps_per_call: int = 1,
    progress: bool = False,
) -> VIResult:
    """Fit the guide's parameters by stochastic gradient ascent on the ELBO.

    Each step draws ``x_1..x_S ~ q(·; θ)`` (``S = n_samples``) in one batched run and
    estimates ``ELBO(θ) = E_q[log p(x, y) - log q(x; θ)]`` by the mean of the ``S`` log
    weights ``f_s``. Its gradient:

    * ``estimator="reparam"``: ``∇_θ (1/S) Σ_s f_s(x_s(θ, ε_s))``, differentiating
      through the guide's samplers (every guide choice must have ``has_reparam``);
    * ``estimator="reinforce"``: ``(1/S) Σ_s (f_s - b_s) ∇_θ log q(x_s; θ)`` — Gen.jl's
      ``black_box_vi!`` estimator with ``baseline="none"`` (``b_s = 0``). The
      ``"leave_one_out"`` baseline is the mean of the other samples' ``f`` and
      ``"running"`` an exponential moving average (``baseline_decay``) of earlier steps'
      ELBO estimates; neither depends on ``x_s``, so the estimate stays unbiased.

    Args:
        model: the model ``p(x, y)``; the parameters it reads, if any, keep their initial values.
        args: the model's arguments.
        observations: observed values (ChoiceMap or dict); ``None`` fits the prior.
        guide: a generative function that reads its parameters with ``param(...)`` and
            samples exactly the model's latent addresses.
        guide_args: the guide's arguments.
        n_steps: optimiser steps.
        n_samples: samples per step.
        key: PRNG key.
        estimator: ``"reparam"`` or ``"reinforce"``.
        baseline: ``"leave_one_out"``, ``"running"`` or ``"none"`` (REINFORCE only).
        baseline_decay: the running baseline's decay.
        optimizer: an ``mlx.optimizers.Optimizer`` (default ``Adam(learning_rate)``).
        learning_rate: the default optimiser's learning rate.
        params: initial parameter values (the rest start at their ``param`` inits).
        compile: compile the gradient step with ``mx.compile`` (``False``: eager;
            ``compiled=`` is the deprecated name).
        steps_per_call: with ``compile=True``, optimiser steps per compiled call
            (unrolled; larger values save per-step host overhead on small models at
            the cost of a longer first compilation).
        progress: show a ``tqdm`` progress bar (``pip install tqdm``).

    Returns:
        :class:`VIResult` with the fitted ``params`` and the per-step ELBO ``history``.

    Raises:
        ValueError: unknown estimator or baseline, a non-reparameterisable guide choice
            with ``estimator="reparam"``, or a guide without parameters.
        ConstraintError, MissingChoiceError: the guide's choices and the observations
            are not exactly the model's choices.
        NonFiniteScoreError: the ELBO or its gradient became NaN/infinite at some step.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     normal(1.5, 0.5) @ "z"
        >>> @gen
        ... def guide():
        ...     normal(param("m", 0.0), mx.exp(param("log_s", 0.0))) @ "z"
        >>> res = black_box_vi(model, (), None, guide, n_steps=300, n_samples=10,
        ...                    estimator="reinforce", learning_rate=0.05,
        ...                    key=mx.random.key(1))
        >>> res.history.shape
        (300,)
    """
    op = "black_box_vi"
    args, guide_args = check_call(model, args, guide, guide_args, op)
    estimator = check_estimator(estimator, ESTIMATORS, op)
    check_positive_int(n_steps, "n_steps", op)
    check_positive_int(steps_per_call, "steps_per_call", op)
    check_positive_int(n_samples, "n_samples", op)
    reparam = estimator == "reparam"
    if not reparam:
        baseline = check_baseline(baseline, BASELINES, n_samples, op)
    if not 0.0 <= baseline_decay < 1.0:
        raise ValueError(f"{op}: baseline_decay must be in [0, 1), got {baseline_decay!r}")
    obs = as_obs(observations, op)
    opt = make_optimizer(optimizer, learning_rate, op)
    k_init, k_check, k_base, k_fit = mx.random.split(resolve_key(key), 4)
    store = init_store(guide, guide_args, params, k_init, op)
    check_guide(model, args, obs, guide, guide_args, store, reparam, k_check, op)
    extra: Values = {}
    if not reparam and baseline == "running":
        lw, _ = log_weights(
            model, args, obs, guide, guide_args, store.values_dict, n_samples, k_base, False
        )
        extra["baseline"] = mx.mean(lw)

    def objective(p: Values, ex: Values, k: mx.array) -> tuple[mx.array, mx.array, Values]:
        lw, log_q = log_weights(model, args, obs, guide, guide_args, p, n_samples, k, reparam)
        surrogate, value = _elbo_surrogate(lw, log_q, reparam, baseline, ex.get("baseline"))
        if "baseline" in ex:
            ex = {"baseline": baseline_decay * ex["baseline"] + (1 - baseline_decay) * value}
        return -surrogate, value, ex

    fitted, history = optimize(
        objective,
        store.values_dict,
        extra,
        n_steps=n_steps,
        key=k_fit,
        optimizer=opt,
        compiled=compile,
        steps_per_call=steps_per_call,
        progress=progress,
        op=op,
    )
    return VIResult(ParamStore(fitted), mx.array(history), "elbo", guide, guide_args)


def elbo(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_samples: int = 1000,
    params: ParamStore | Mapping[str, Any] | None = None,
    key: Key = None,
) -> VIEstimate:
    """Estimate ``ELBO = E_q[log p(x, y) - log q(x)]`` by the mean of ``n_samples``
    log weights, with its standard error (:func:`~genmlx.infer.vimco.iwelbo` with
    ``K = 1``).

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
        >>> float(elbo(model, (), None, guide, key=mx.random.key(0)).value)  # q = p
        0.0
    """
    op = "elbo"
    check_positive_int(n_samples, "n_samples", op)
    args, guide_args, obs, store, k = prepare(
        model, args, observations, guide, guide_args, params, key, op
    )
    lw, _ = log_weights(model, args, obs, guide, guide_args, store.values_dict, n_samples, k, False)
    return estimate(lw)


def elbo_grad(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    params: ParamStore | Mapping[str, Any] | None = None,
    n_samples: int = 100,
    key: Key = None,
    estimator: str = "reparam",
    baseline: str = "leave_one_out",
) -> tuple[mx.array, dict[str, mx.array]]:
    """One estimate of the ELBO and of its gradient w.r.t. the guide's parameters.

    The same estimators as :func:`black_box_vi` (``baseline`` is ``"leave_one_out"`` or
    ``"none"`` here); both are unbiased for ``∇_θ ELBO(θ)``.

    Returns:
        ``(elbo_estimate, {name: gradient})`` — the gradient of the ELBO (an ascent
        direction).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     normal(0.0, 1.0) @ "z"
        >>> @gen
        ... def guide():
        ...     normal(param("m", 1.0), 1.0) @ "z"
        >>> value, grads = elbo_grad(model, (), None, guide, n_samples=10_000,
        ...                          key=mx.random.key(0))
        >>> round(float(grads["m"]), 1)     # d/dm of -m^2/2 at m = 1
        -1.0
    """
    op = "elbo_grad"
    estimator = check_estimator(estimator, ESTIMATORS, op)
    check_positive_int(n_samples, "n_samples", op)
    reparam = estimator == "reparam"
    if not reparam:
        baseline = check_baseline(baseline, ("leave_one_out", "none"), n_samples, op)
    args, guide_args, obs, store, k = prepare(
        model, args, observations, guide, guide_args, params, key, op
    )

    def surrogate(p: Values) -> tuple[mx.array, mx.array]:
        lw, log_q = log_weights(model, args, obs, guide, guide_args, p, n_samples, k, reparam)
        return _elbo_surrogate(lw, log_q, reparam, baseline, None)

    with runtime.transforming():
        (_, value), grads = mx.value_and_grad(surrogate)(store.values_dict)
    return value, grads


register_format(
    VIResult,
    lambda r: {
        "params": r.params,
        "history": r.history,
        "objective": r.objective,
        "guide": r.guide,
        "guide_args": r.guide_args,
    },
    lambda d: VIResult(
        d["params"], d["history"], d["objective"], d["guide"], tuple(d["guide_args"])
    ),
    name="genmlx.infer.VIResult",
)
