"""Helpers shared by the variational-inference algorithms; their loop is
:func:`genmlx.infer.optimize`.

An algorithm hands it an *objective*
``objective(params, extra, key) -> (loss, report, new_extra)`` (see
:mod:`genmlx.infer.optimization`); :func:`optimize` here adapts that argument order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.optimizers as optim

from genmlx.infer.optimization import Objective as PublicObjective
from genmlx.infer.optimization import make_optimizer, progress_bar
from genmlx.infer.optimization import optimize as run_optimize

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
    """The VI algorithms' call of :func:`genmlx.infer.optimize` (the one loop):
    ``objective(params, extra, key) -> (loss, report, new_extra)``.

    Returns:
        The final parameters and the per-step reports (as Python floats).
    """
    res = run_optimize(
        PublicObjective(lambda p, k, s: objective(p, s, k), extra, what),
        params,
        optimizer,
        n_steps,
        key=key,
        compile=compiled,
        steps_per_call=steps_per_call,
        progress=progress,
        name=op,
    )
    history: list[float] = res.history.astype(mx.float32).tolist()  # type: ignore[assignment]
    return res.params, history
