"""Validation of the public arguments of inference functions, in one place.

Every public inference function checks its arguments when it is called, so that a bad
setting is reported with the function's name and the argument instead of running an
invalid algorithm (a step size of 0 reporting 100 % acceptance, a negative number of
steps doing nothing, a dense mass matrix that is not positive definite, a chain
starting from a NaN score).

Plain Python values are always checked. Array values are checked when they can be
read; under ``mx.compile``/``mx.vmap`` (where nothing can be evaluated) an invalid
array step size or mass is replaced by NaN, so the result is visibly NaN (and every
move rejected) rather than silently wrong.

Weights: :func:`weights` raises :class:`DegenerateWeightsError` when no particle has
positive weight (every log weight is -inf) or a log weight is NaN — importance sampling,
resampling and particle filters would otherwise return index 0 for every particle or
NaN "posteriors" without complaint.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import GenerativeFunction, GenMLXError, Selection, Trace, runtime
from genmlx.core.random import Key, resolve_key

__all__ = [
    "DegenerateWeightsError",
    "count",
    "evaluable",
    "key",
    "number",
    "positive_scalar",
    "selection",
    "trace",
    "weights",
]


class DegenerateWeightsError(GenMLXError, FloatingPointError):
    """Importance weights with which no resampling or estimate is possible: every log
    weight is -inf (no particle is consistent with the observations) or one is NaN."""


def evaluable(x: mx.array) -> np.ndarray | None:
    """``x`` as a NumPy array when it can be read now, else None (under a transform)."""
    if runtime.in_transform():
        return None
    try:
        mx.eval(x)
        return np.asarray(x.astype(mx.float32) if x.dtype == mx.bfloat16 else x)
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return None
        raise


def key(k: Key, op: str) -> mx.array:
    """The resolved PRNG key (``None``: fresh from the OS); errors name ``op``."""
    return resolve_key(k, op)


def count(value: Any, name: str, op: str, *, minimum: int = 1) -> int:
    """An int ``>= minimum`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{op}: {name} must be {what}, got {value!r}")
    return int(value)


def number(
    value: Any,
    name: str,
    op: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite (unless a bound is infinite) Python number in the given interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, mx.array) and value.size == 1:
            got = evaluable(value)
            if got is None:
                raise TypeError(
                    f"{op}: {name} must be a Python number (it decides the algorithm's "
                    "structure); got an array that cannot be read here"
                )
            value = float(got.reshape(()))
        else:
            raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = not math.isnan(v)
    ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo = ("(" if low_open else "[") + f"{low:g}"
        hi = f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{op}: {name} must be in {lo}, {hi}; got {value!r}")
    return v


def positive_scalar(value: Any, name: str, op: str, batch: tuple[int, ...] = ()) -> mx.array:
    """A step size or scale: finite and ``> 0``, a number or an array (per chain).

    Returns it as a float32 array. Arrays that cannot be read now (under a transform)
    become NaN where invalid.
    """
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating, mx.array)
    ):
        raise TypeError(f"{op}: {name} must be a number or an array, got {type(value).__name__}")
    if not isinstance(value, mx.array):
        v = float(value)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(
                f"{op}: {name} must be finite and positive, got {value!r} (with {name}=0 the "
                "chain cannot move, with NaN or inf every proposal is invalid)"
            )
        return mx.array(v, dtype=mx.float32)
    arr = value.astype(mx.float32)
    if arr.ndim and batch and tuple(arr.shape) not in ((), tuple(batch)):
        raise ValueError(
            f"{op}: {name} must be a scalar or have the chains' batch shape {batch}, got "
            f"shape {tuple(arr.shape)}"
        )
    got = evaluable(arr)
    if got is None:
        ok = mx.logical_and(mx.isfinite(arr), arr > 0)
        return mx.where(ok, arr, mx.nan)
    bad = ~(np.isfinite(got) & (got > 0))
    if bad.any():
        where = "" if got.ndim == 0 else f" at chain(s) {np.flatnonzero(bad)[:10].tolist()}"
        raise ValueError(f"{op}: {name} must be finite and positive, got {got[bad][:5]}{where}")
    return arr


def selection(value: Any, op: str, name: str = "selection") -> Selection:
    """A :class:`~genmlx.core.Selection`."""
    if not isinstance(value, Selection):
        raise TypeError(
            f"{op}: {name} must be a Selection (genmlx.core.select(...)), got "
            f"{type(value).__name__}"
        )
    return value


def generative_function(value: Any, name: str, op: str) -> GenerativeFunction:
    """A :class:`~genmlx.core.GenerativeFunction`."""
    if not isinstance(value, GenerativeFunction):
        raise TypeError(f"{op}: {name} must be a GenerativeFunction, got {type(value).__name__}")
    return value


def trace(value: Any, op: str, name: str = "trace") -> Trace:
    """A single or batched trace whose score is not NaN (checked when readable).

    A chain that starts from a NaN score stays NaN forever (every acceptance ratio is
    NaN), so it is refused here, naming the chains.
    """
    if not isinstance(value, Trace):
        raise TypeError(f"{op}: {name} must be a Trace, got {type(value).__name__}")
    if len(value.batch_shape) > 1:
        raise ValueError(
            f"{op}: {name} must be a single trace or a batch of chains (batch_shape (n,)), "
            f"got batch_shape {value.batch_shape}"
        )
    score = value.score
    if not isinstance(score, mx.array) or not mx.issubdtype(score.dtype, mx.floating):
        return value
    got = evaluable(mx.isnan(score))
    if got is not None and got.any():
        chains = "" if got.ndim == 0 else f" (chains {np.flatnonzero(got)[:10].tolist()})"
        raise ValueError(
            f"{op}: the {name}'s score is NaN{chains}; a chain cannot leave a NaN state. "
            "Start from a valid trace (e.g. generate with valid parameters and observations "
            "in the support)."
        )
    return value


def weights(log_weights: mx.array, op: str, step: str = "") -> mx.array:
    """Raise :class:`DegenerateWeightsError` when no particle can be used.

    Args:
        log_weights: ``[N]`` log weights.
        op: the operation (``"importance_sampling"``, ``"resample"``, ...).
        step: what produced the weights, for the message (e.g. ``"after step(...)"``).

    Returns:
        ``log_weights``, unchanged when they can be read; under a transform (where
        nothing can be raised) NaN everywhere when they are degenerate.
    """
    lw = log_weights
    nan = mx.any(mx.isnan(lw))
    dead = mx.all(lw == -mx.inf)
    got = evaluable(mx.stack([nan, dead]))
    if got is None:
        return mx.where(mx.logical_or(nan, dead), mx.nan, lw)
    where = f" {step}" if step else ""
    if got[0]:
        idx = np.flatnonzero(np.isnan(np.asarray(lw.astype(mx.float32))))
        raise DegenerateWeightsError(
            f"{op}: a log weight is NaN{where} (particles {idx[:10].tolist()}"
            f"{' ...' if idx.size > 10 else ''}); the model or proposal produced an "
            "invalid density. Check parameters and observations at those particles."
        )
    if got[1]:
        raise DegenerateWeightsError(
            f"{op}: no particle has positive weight{where}: all {lw.size} log weights are "
            "-inf, so nothing can be resampled or estimated. The observations are "
            "impossible under every particle: check that they lie in the model's support, "
            "that the proposal covers the posterior, or use more particles."
        )
    return lw
