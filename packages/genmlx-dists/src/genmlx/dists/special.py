"""Special functions MLX lacks, written with MLX ops so ``mx.grad`` differentiates them.

float32 throughout. Functions accept arrays or Python numbers and broadcast.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

__all__ = ["lgamma", "log_beta"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)
# Lanczos approximation, g = 7, n = 9 (Numerical Recipes' coefficients).
_LANCZOS = (
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
)


def _as(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(x, dtype=mx.float32)


def _lgamma_pos(x: mx.array) -> mx.array:
    """log Γ(x) for x ≥ 0.5 by Lanczos."""
    z = x - 1.0
    acc = mx.full(z.shape, _LANCZOS[0], dtype=z.dtype)
    for i, c in enumerate(_LANCZOS[1:], start=1):
        acc = acc + c / (z + i)
    t = z + 7.5
    out: mx.array = _HALF_LOG_2PI + (z + 0.5) * mx.log(t) - t + mx.log(acc)
    return out


def lgamma(x: Any) -> mx.array:
    """log |Γ(x)|; uses the reflection formula for x < 0.5 (+inf at non-positive ints)."""
    x = _as(x)
    if not mx.issubdtype(x.dtype, mx.floating):
        x = x.astype(mx.float32)
    small = x < 0.5
    safe_pos = mx.where(small, 1.0 - x, x)  # both branches evaluated on valid inputs
    lg = _lgamma_pos(safe_pos)
    refl = _LOG_PI - mx.log(mx.abs(mx.sin(math.pi * x))) - lg
    out: mx.array = mx.where(small, refl, lg)
    return out


def log_beta(a: Any, b: Any) -> mx.array:
    """log B(a, b) = lgamma(a) + lgamma(b) − lgamma(a + b)."""
    a, b = _as(a), _as(b)
    out: mx.array = lgamma(a) + lgamma(b) - lgamma(a + b)
    return out
