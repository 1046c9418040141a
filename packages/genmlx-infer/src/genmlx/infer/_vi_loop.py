"""The stochastic-gradient loop shared by the variational-inference algorithms.

An algorithm hands :func:`optimize` an *objective*::

    objective(params, extra, key) -> (loss, report, new_extra)

where ``params`` is a dict of MLX arrays (what the optimiser moves), ``loss`` is the
scalar whose gradient w.r.t. ``params`` is the step's gradient estimate (a surrogate for
score-function estimators), ``report`` is the scalar recorded in the history (the
objective estimate, e.g. the ELBO) and ``extra`` is non-differentiated state carried
from step to step (e.g. a running baseline). One step computes
``mx.value_and_grad(objective)`` and applies the optimiser from ``mlx.optimizers``.

The step is compiled with ``mx.compile`` (parameters, extra state and optimiser state
are its captured inputs and outputs, MLX's documented pattern for training loops) or
run eagerly; both compute the same numbers. After every step the report and the
gradients are checked for NaN/inf, and a non-finite one raises
:class:`~genmlx.core.errors.NonFiniteScoreError` naming the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.optimizers as optim

from genmlx.core import runtime
from genmlx.core.compile import compile_function
from genmlx.core.errors import NonFiniteScoreError

__all__ = [
    "Objective",
    "VIEstimate",
    "check_positive_int",
    "estimate",
    "make_optimizer",
    "optimize",
    "progress_bar",
]

Objective = Callable[
    [dict[str, mx.array], dict[str, mx.array], mx.array],
    tuple[mx.array, mx.array, dict[str, mx.array]],
]


class VIEstimate(NamedTuple):
    """A Monte Carlo estimate of a variational objective.

    Attributes:
        value: the estimate (the mean of ``samples``).
        std_error: its standard error, ``std(samples) / sqrt(len(samples))``.
        samples: the independent per-draw estimates it averages, shape ``[n]``.
    """

    value: mx.array
    std_error: mx.array
    samples: mx.array


def estimate(samples: mx.array) -> VIEstimate:
    """The mean of independent draws ``samples`` (shape ``[n]``) with its standard error."""
    n = samples.shape[0]
    mean = mx.mean(samples)
    se = mx.sqrt(mx.var(samples, ddof=1) / n) if n > 1 else mx.array(float("nan"))
    return VIEstimate(mean, se, samples)


def check_positive_int(value: Any, name: str, op: str, minimum: int = 1) -> int:
    """``value`` if it is an int ``>= minimum``; a ``ValueError`` naming ``op`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{op}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def make_optimizer(optimizer: Any, learning_rate: Any, op: str) -> optim.Optimizer:
    """``optimizer`` itself, or ``mlx.optimizers.Adam(learning_rate)`` when it is ``None``."""
    if optimizer is None:
        return optim.Adam(learning_rate=learning_rate)
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(
            f"{op}: optimizer must be an mlx.optimizers.Optimizer (e.g. "
            f"mlx.optimizers.Adam(learning_rate=0.01)) or None, got {type(optimizer).__name__}"
        )
    return optimizer


def progress_bar(n_steps: int, op: str) -> Any:
    """A tqdm bar of ``n_steps`` steps (tqdm is the optional ``progress`` extra)."""
    try:
        from tqdm.auto import tqdm
    except ImportError as e:  # an optional extra, so the error says what to install
        raise ImportError(
            f"{op}(progress=True) needs tqdm: pip install tqdm (or genmlx-infer[progress])"
        ) from e
    return tqdm(total=n_steps, desc=op, unit="step")


def optimize(
    objective: Objective,
    params: dict[str, mx.array],
    extra: dict[str, mx.array],
    *,
    n_steps: int,
    key: mx.array,
    optimizer: optim.Optimizer,
    compiled: bool,
    progress: bool,
    op: str,
    what: str = "ELBO",
    steps_per_call: int = 1,
) -> tuple[dict[str, mx.array], list[float]]:
    """Run ``n_steps`` optimiser steps on ``objective``; step ``t`` uses key
    ``mx.random.split(key, n_steps)[t]``.

    With ``compiled=True`` one compiled call runs ``steps_per_call`` consecutive steps
    (unrolled in the compiled graph), which saves a host round trip per step; the
    numbers are those of single steps.

    Returns:
        The final parameters and the per-step reports (as Python floats).

    Raises:
        NonFiniteScoreError: the report or a gradient of some step is NaN or infinite.
    """
    box: dict[str, Any] = {"params": dict(params), "extra": dict(extra)}
    optimizer.init(box["params"])
    value_and_grad = mx.value_and_grad(objective)

    def one_step(key: mx.array) -> tuple[mx.array, mx.array]:
        with runtime.transforming():
            (_, report, new_extra), grads = value_and_grad(box["params"], box["extra"], key)
        grads_ok = mx.array(True)
        for g in grads.values():
            grads_ok = mx.logical_and(grads_ok, mx.all(mx.isfinite(g)))
        box["params"] = optimizer.apply_gradients(grads, box["params"])
        box["extra"] = new_extra
        return report, grads_ok

    def steps(keys: mx.array) -> tuple[mx.array, mx.array]:
        out = [one_step(keys[i]) for i in range(keys.shape[0])]
        return mx.stack([r for r, _ in out]), mx.stack([ok for _, ok in out])

    state = [box, optimizer.state]
    run = compile_function(steps, inputs=state, outputs=state) if compiled else steps
    chunk = steps_per_call if compiled else 1
    keys = mx.random.split(key, n_steps)
    bar = progress_bar(n_steps, op) if progress else None
    history: list[float] = []
    try:
        for start in range(0, n_steps, chunk):
            reports, oks = run(keys[start : start + chunk])
            mx.eval(state, reports, oks)
            values: list[float] = reports.astype(mx.float32).tolist()  # type: ignore[assignment]
            flags: list[bool] = oks.tolist()  # type: ignore[assignment]
            for i, (value, ok) in enumerate(zip(values, flags)):
                if not (math.isfinite(value) and ok):
                    _raise_non_finite(op, what, start + i, value, ok)
            history.extend(values)
            if bar is not None:
                bar.update(len(values))
                bar.set_postfix({what.lower(): f"{values[-1]:.4g}"}, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return box["params"], history


def _raise_non_finite(op: str, what: str, t: int, value: float, grads_ok: bool) -> None:
    if value == float("-inf"):
        why = (
            f"the {what} estimate is -inf: a variational sample has zero density under the "
            "model (e.g. a normal guide for a positive or bounded latent). Make the guide "
            "sample inside the model's support (advi constrains its samples automatically)"
        )
    elif grads_ok:
        why = (
            f"the {what} estimate is {value}: the optimisation diverged or a density was "
            "evaluated at invalid parameters; lower the learning rate or check the model"
        )
    else:
        why = (
            f"a gradient is NaN or infinite (the {what} estimate is {value}); lower the "
            "learning rate, or check that the guide's parameters stay valid (e.g. pass a "
            "scale through mx.exp or mx.softplus)"
        )
    raise NonFiniteScoreError(f"{op}: at step {t}, {why}.")
