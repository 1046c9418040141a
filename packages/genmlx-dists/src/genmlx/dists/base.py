"""Conventions and helpers shared by every distribution in genmlx.dists.

Conventions (DESIGN §6):

* ``d.sample(key, *params, shape=())`` returns ``shape + batch + event`` where *batch*
  is the broadcast of the parameters' batch shapes. One vectorised MLX computation, no
  Python loop over samples.
* ``d.log_prob(value, *params)`` broadcasts value against parameters and returns one
  log density per event; out-of-support values give ``-inf`` (never NaN).
* Invalid parameters: when a parameter is a plain Python number and validation is on
  (the default), the call raises ``ValueError`` naming the distribution, the parameter
  and the constraint. Array parameters are never checked eagerly (that would force an
  evaluation inside traced, batched or compiled code); instead ``log_prob`` returns
  ``-inf`` wherever a parameter is invalid, NaN-free. ``validation(False)`` turns the
  eager check off.
* Floats are float32; integer-valued distributions return int32 samples; bernoulli
  returns booleans.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core.distribution import mask_invalid, param_validation, param_validation_enabled

__all__ = [
    "arr",
    "batch_shape",
    "check_param",
    "is_plain_number",
    "sample_shape",
    "validation",
    "validation_enabled",
    "where_valid",
]

def validation_enabled() -> bool:
    """Whether plain-number parameters are checked eagerly."""
    return param_validation_enabled()


def validation(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Turn the eager parameter check on or off inside a ``with`` block (for every
    distribution: the checks the base class derives from the declared parameters and
    the extra ones a distribution makes)."""
    return param_validation(enabled)


def arr(x: Any, dtype: Any = mx.float32) -> mx.array:
    """``x`` as an MLX array (Python numbers and lists become ``dtype``)."""
    if isinstance(x, mx.array):
        return x
    return mx.array(x, dtype=dtype)


def is_plain_number(x: Any) -> bool:
    """True for Python ints/floats (not bools, not arrays)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_param(
    dist: str, name: str, value: Any, ok: Callable[[float], bool], requirement: str
) -> None:
    """Raise ValueError if ``value`` is a plain number violating ``ok``.

    Example: ``check_param("normal", "sigma", sigma, lambda s: s > 0, "> 0")``.
    """
    if validation_enabled() and is_plain_number(value) and not ok(float(value)):
        raise ValueError(
            f"{dist}: parameter {name}={value!r} is invalid; it must be {requirement} "
            "(genmlx.dists.validation(False) turns this check off)"
        )


def batch_shape(*params: mx.array, event_ndims: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Broadcast batch shape of parameters, dropping each one's trailing event dims."""
    if event_ndims is None:
        event_ndims = (0,) * len(params)
    shapes = [tuple(p.shape[: p.ndim - e]) for p, e in zip(params, event_ndims)]
    return tuple(mx.broadcast_shapes(*shapes)) if shapes else ()


def sample_shape(shape: tuple[int, ...], *params: mx.array) -> tuple[int, ...]:
    """``shape + broadcast(params)`` for scalar-event distributions."""
    return tuple(shape) + batch_shape(*params)


def where_valid(valid: mx.array, log_density: mx.array) -> mx.array:
    """``log_density`` where ``valid``, else ``-inf`` (NaN-free either way)."""
    out: mx.array = mask_invalid(valid, log_density, -mx.inf)
    return out
