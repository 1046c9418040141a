"""Samplers for the gamma, beta and Dirichlet variates every gamma-based distribution
draws from (genmlx.dists uses them for gamma, beta, Student-t, Dirichlet, binomial-type
and Poisson draws).

* :func:`log_standard_gamma` — ``log G`` with ``G ~ Gamma(alpha, rate 1)``;
* :func:`standard_gamma` — ``G`` itself (float32, clamped into the normal range);
* :func:`standard_beta` — ``Beta(a, b)`` as ``X / (X + Y)`` in log space;
* :func:`standard_dirichlet` — ``Dirichlet(alpha)`` as a softmax of log-gamma draws.

Draws are never 0, 1 or infinite where the law gives them probability 0: values beyond
float32's normal range are clamped (documented per sampler). Sampling with an invalid
array parameter gives NaN at those elements.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from genmlx.dists.base import (
    arr,
)
from genmlx.dists.rejection import first_accepted
from genmlx.dists.rejection import spill_slots as _spill_slots

__all__ = [
    "GAMMA_ROUNDS",
    "log_standard_gamma",
    "spill_slots",
    "standard_beta",
    "standard_dirichlet",
    "standard_gamma",
]

_TINY = 2.0**-126
_ONE_MINUS = 1.0 - 2.0**-24
_F32_MAX = float.fromhex("0x1.fffffep+127")
# log of the smallest uniform we let through (u = 0 has probability 2**-32).
_LOG_U_MIN = math.log(2.0**-33)

GAMMA_ROUNDS = 10
"""Marsaglia–Tsang proposals per element. The acceptance probability is smallest at
alpha = 1 (0.9517, by quadrature; the alpha < 1 boost samples alpha + 1 >= 1), so an
element is never accepted with probability 0.0483**10 < 7e-14 (plus < 1e-14 per round
that more elements are rejected than :func:`genmlx.dists.rejection.spill_slots` has
room for)."""


def _f32(x: Any) -> mx.array:
    a = arr(x)
    return a if a.dtype == mx.float32 else a.astype(mx.float32)


def _finite_pos(x: mx.array) -> mx.array:
    out: mx.array = mx.logical_and(x > 0, x < math.inf)
    return out


def _log_uniform(key: mx.array, shape: tuple[int, ...]) -> mx.array:
    """``log U`` for ``U ~ U(0, 1)``; MLX's uniform has 2**-32 resolution near 0."""
    u = mx.random.uniform(shape=shape, key=key)
    out: mx.array = mx.log(mx.maximum(u, 2.0**-33))
    return out


_P_REJECT = 0.0483  # the largest per-round rejection probability (alpha = 1)


def spill_slots(n: int, p_reject: float = _P_REJECT) -> int:
    """:func:`genmlx.dists.rejection.spill_slots`, by default for Marsaglia–Tsang's
    largest rejection probability (0.0483, at alpha = 1)."""
    return _spill_slots(n, p_reject)


def _mt_round(
    x: mx.array, log_u: mx.array, d: mx.array, c: mx.array, log_d: mx.array
) -> tuple[mx.array, mx.array]:
    """One Marsaglia–Tsang proposal per element: ``(log G candidate, accepted)``."""
    w = c * x
    pos = w > -1.0
    w = mx.where(pos, w, 0.0)
    l1 = mx.log1p(w)
    # log acceptance ratio 0.5 x^2 + d (1 - v + log v), v = (1 + w)^3, written without
    # cancelling large terms: 1 - v + log v = 3 log1p(w) - w (3 + 3 w + w^2).
    log_ratio = 0.5 * x * x + d * (3.0 * l1 - w * (3.0 + w * (3.0 + w)))
    accept = mx.logical_and(pos, log_u < log_ratio)
    return log_d + 3.0 * l1, accept


def _any_maybe(x: mx.array) -> bool:
    """Whether any element of ``x`` may hold: its value eagerly, ``True`` under a
    transformation (where no value can be read)."""
    from genmlx.core import runtime

    if runtime.in_transform():
        return True
    try:
        return bool(mx.any(x).item())
    except ValueError as e:
        if runtime.is_transform_eval_error(e):
            return True
        raise


def log_standard_gamma(key: mx.array, alpha: Any, shape: tuple[int, ...]) -> mx.array:
    """``log G`` for ``G ~ Gamma(alpha, rate 1)``, of shape ``shape``.

    Exact (up to float32 rounding) for every ``alpha > 0``: Marsaglia–Tsang (2000) with
    up to ``GAMMA_ROUNDS`` proposals per element, the first accepted one kept (never
    accepted: probability < 1e-13, then ``log(alpha - 1/3)`` is returned). Every element
    gets a first proposal, and only the elements still rejected draw further ones
    (:func:`genmlx.dists.rejection.first_accepted`: under 5% per round), so the later
    rounds cost a twentieth of a full one; eagerly, levels no element reaches are
    skipped, and ``mx.vmap``/``mx.compile`` give the same draws. For
    ``alpha < 1`` it samples ``Gamma(alpha + 1)`` and adds ``log(U) / alpha`` — in log
    space, so tiny ``alpha`` (whose draws underflow float32) stays exact. Invalid
    ``alpha`` (``<= 0`` or NaN) gives NaN.

    Args:
        key: PRNG key.
        alpha: shape parameter, broadcastable to ``shape``.
        shape: the output shape.
    """
    shape = tuple(shape)
    n = math.prod(shape)
    alpha = _f32(alpha)
    # One shared alpha keeps its per-parameter constants scalar (and the spilled slots
    # need not look up their element's alpha); otherwise they are per element.
    shared = alpha.size == 1
    alpha = alpha.reshape(()) if shared else mx.broadcast_to(alpha, shape).reshape(-1)
    valid = _finite_pos(alpha)
    a_safe = mx.where(valid, alpha, 1.0)
    boost = a_safe < 1.0
    a1 = mx.where(boost, a_safe + 1.0, a_safe)
    d = a1 - 1.0 / 3.0
    c = mx.rsqrt(9.0 * d)
    log_d = mx.log(d)
    keys = mx.random.split(key, 2)

    def propose(
        k: mx.array, rshape: tuple[int, ...], prm: tuple[mx.array, ...]
    ) -> tuple[mx.array, mx.array]:
        kx, ku = mx.random.split(k, 2)
        x = mx.random.normal(shape=rshape, key=kx)
        return _mt_round(x, _log_uniform(ku, rshape), *prm)

    out = first_accepted(propose, keys[0], (n,), GAMMA_ROUNDS, log_d, (d, c, log_d), _P_REJECT)
    if _any_maybe(boost):  # eagerly skipped when no element boosts (it would add 0)
        out = out + mx.where(boost, _log_uniform(keys[1], (n,)) / a_safe, 0.0)
    res: mx.array = mx.where(valid, out, mx.nan)
    return res.reshape(shape)


def standard_gamma(key: mx.array, alpha: Any, shape: tuple[int, ...]) -> mx.array:
    """``G ~ Gamma(alpha, rate 1)`` of shape ``shape`` (``alpha`` broadcasts to it).

    ``exp`` of :func:`log_standard_gamma`, clamped into ``[2**-126, float32 max]``:
    draws below the smallest normal float32 (common for tiny ``alpha``: a
    ``Gamma(0.01)`` draw is below ``1.2e-38`` with probability 0.42) are not
    representable as normal floats (and subnormals are flushed to zero on some
    backends), so they are returned as ``2**-126`` — never 0, so ``log`` of a draw and
    the log density at it stay finite. Callers that need the exact tail use
    :func:`log_standard_gamma`. Invalid ``alpha`` gives NaN.
    """
    lg = log_standard_gamma(key, alpha, shape)
    out: mx.array = mx.clip(mx.exp(lg), _TINY, _F32_MAX)
    return mx.where(mx.isnan(lg), mx.nan, out)


def standard_beta(key: mx.array, a: Any, b: Any, shape: tuple[int, ...]) -> mx.array:
    """``Beta(a, b)`` draws of shape ``shape`` (``a``, ``b`` broadcast to it).

    ``X / (X + Y) = sigmoid(log X - log Y)`` with ``X ~ Gamma(a)``, ``Y ~ Gamma(b)``
    drawn in log space (exact for tiny ``a``, ``b``), clamped into
    ``[2**-126, 1 - 2**-24]`` so a draw is never exactly 0 or 1 (the log density can be
    infinite there). Invalid parameters give NaN.
    """
    keys = mx.random.split(key, 2)
    lx = log_standard_gamma(keys[0], a, shape)
    ly = log_standard_gamma(keys[1], b, shape)
    out: mx.array = mx.clip(mx.sigmoid(lx - ly), _TINY, _ONE_MINUS)
    return mx.where(mx.isnan(lx - ly), mx.nan, out)


def standard_dirichlet(key: mx.array, alpha: Any, shape: tuple[int, ...]) -> mx.array:
    """``Dirichlet(alpha)`` draws of shape ``shape``; the last axis is the event.

    ``alpha`` (last axis K) broadcasts to ``shape``. A softmax of log-gamma draws, so
    tiny concentrations neither underflow to 0/0 nor lose the simplex; components are
    clamped below at ``2**-126`` (the sum moves by at most ``K * 1.2e-38``).
    Invalid concentrations give NaN.
    """
    lg = log_standard_gamma(key, alpha, shape)
    out: mx.array = mx.maximum(mx.softmax(lg, axis=-1), _TINY)
    return out
