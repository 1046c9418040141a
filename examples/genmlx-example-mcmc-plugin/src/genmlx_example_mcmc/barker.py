"""The Barker proposal: an MCMC kernel on the selected continuous choices of a trace.

With ``x`` the selected values (flattened), ``g = ∇ log π(x)`` and step size ``σ``, each
coordinate ``i`` moves by ``b_i z_i`` where ``z_i ~ N(0, σ²)`` and ``b_i = +1`` with
probability ``1 / (1 + exp(−z_i g_i))`` (else ``−1``): the walk leans uphill. The
proposal density is ``q(x → y) = Π_i 2 N(y_i − x_i; 0, σ²) sigmoid((y_i − x_i) g_i(x))``,
so with ``s = y − x`` the Metropolis–Hastings log acceptance ratio is

    log α = log π(y) − log π(x) + Σ_i [softplus(−s_i g_i(x)) − softplus(s_i g_i(y))].

Chain ``i`` of a batched trace draws its randomness from ``mx.random.split(key, n)[i]``
(like ``vsimulate``), so a batched call equals the single-trace calls with those keys.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import ChoiceMap, Selection, Trace, choice_gradients, format_address
from genmlx.core.batching import where_particles
from genmlx.core.random import Key, resolve_key

__all__ = ["BarkerInfo", "barker"]


class BarkerInfo(NamedTuple):
    """What one :func:`barker` step reports (GenMLX's ``(trace, info)`` kernel form).

    Attributes:
        accepted: the chain moved to its proposal (bool, shape ``trace.batch_shape``).
        accept_prob: ``min(1, α)``, the acceptance probability (0 where ``log α`` is NaN).
    """

    accepted: mx.array
    accept_prob: mx.array


def _softplus(t: mx.array) -> mx.array:
    return mx.logaddexp(mx.zeros_like(t), t)


def _flat(cm: ChoiceMap, paths: list[Any], batch: tuple[int, ...]) -> mx.array:
    parts = [cm[p if len(p) > 1 else p[0]].reshape((*batch, -1)) for p in paths]
    return mx.concatenate([p.astype(mx.float32) for p in parts], axis=-1)


def _unflat(
    x: mx.array, paths: list[Any], shapes: list[tuple[int, ...]], batch: tuple[int, ...]
) -> ChoiceMap:
    out = ChoiceMap.empty()
    start = 0
    for p, shape in zip(paths, shapes):
        size = math.prod(shape)
        out = out.set(
            p if len(p) > 1 else p[0], x[..., start : start + size].reshape(batch + shape)
        )
        start += size
    return out.with_batch_shape(batch)


def _draws(key: mx.array, d: int) -> tuple[mx.array, mx.array, mx.array]:
    """One chain's randomness: ``z ~ N(0, I_d)``, uniforms for the signs and the accept step."""
    k_z, k_b, k_a = mx.random.split(key, 3)
    return (
        mx.random.normal(shape=(d,), key=k_z),
        mx.random.uniform(shape=(d,), key=k_b),
        mx.random.uniform(shape=(), key=k_a),
    )


def barker(
    trace: Trace, selection: Selection, *, step_size: float, key: Key = None
) -> tuple[Trace, BarkerInfo]:
    """One Barker-proposal Metropolis–Hastings step on the selected continuous choices.

    Args:
        trace: a single trace, or a batched one (``batch_shape == (n,)``: ``n``
            independent chains, each accepted or rejected on its own).
        selection: the choices to move (floating point; flattened in choice-map order).
        step_size: ``σ > 0``, the scale of the increments.
        key: PRNG key (``None``: a fresh one).

    Returns:
        ``(new_trace, info)``: a :class:`BarkerInfo` whose ``accepted`` and
        ``accept_prob`` have shape ``trace.batch_shape``.

    Raises:
        ValueError: ``step_size`` is not positive, or the selection picks nothing.
        TypeError: a selected choice is not floating point.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.core.testing.models import normal
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 0.5) @ "y"
        >>> tr, _ = model.vgenerate((), {"y": 1.0}, 8, key=mx.random.key(0))
        >>> tr, info = barker(tr, select("mu"), step_size=0.5, key=mx.random.key(1))
        >>> info.accepted.shape
        (8,)
    """
    if not step_size > 0:
        raise ValueError(f"barker: step_size must be positive, got {step_size!r}")
    key = resolve_key(key)
    batch = tuple(trace.batch_shape)
    if len(batch) > 1:
        raise ValueError(f"barker: the trace must be single or batched (n,), got {batch}")
    selected = list(trace.get_choices().filter(selection).leaves())
    if not selected:
        raise ValueError("barker: the selection picks no choices of the trace")
    for p, v in selected:
        if not mx.issubdtype(v.dtype, mx.floating):
            raise TypeError(
                f"barker: the choice at {format_address(p)} has dtype {v.dtype}; the Barker "
                "proposal moves continuous choices only (deselect it)"
            )
    paths = [p for p, _ in selected]
    shapes = [tuple(v.shape[len(batch) :]) for _, v in selected]
    d = sum(math.prod(s) for s in shapes)
    if batch:
        z, u_sign, u_acc = mx.vmap(lambda k: _draws(k, d))(mx.random.split(key, batch[0]))
    else:
        z, u_sign, u_acc = _draws(key, d)
    x = _flat(trace.get_choices(), paths, batch)
    g_x = _flat(choice_gradients(trace, selection), paths, batch)
    z = step_size * z
    up = u_sign < mx.sigmoid(z * g_x)
    step = mx.where(up, z, -z)
    new, w, _, _ = trace.gen_fn.update(trace, _unflat(x + step, paths, shapes, batch))
    g_y = _flat(choice_gradients(new, selection), paths, batch)
    correction = mx.sum(_softplus(-step * g_x) - _softplus(step * g_y), axis=-1)
    log_alpha = w + correction
    log_alpha = mx.where(mx.isnan(log_alpha), -mx.inf, log_alpha)
    accepted = mx.log(u_acc) < log_alpha
    accept_prob = mx.exp(mx.minimum(log_alpha, 0.0))
    return where_particles(accepted, new, trace), BarkerInfo(accepted, accept_prob)
