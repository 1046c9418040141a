"""Hamiltonian building blocks on vectors: the leapfrog integrator (mass matrices:
:mod:`genmlx.infer.mass_matrix`, re-exported here).

A target is a pure function ``vg(y, *inputs) -> (log π(y), ∇log π(y))`` on a batch of
chains ``y`` of shape ``[C, d]`` (:meth:`genmlx.core.LogDensity.pure` gives one for a
static model). The mass matrix ``M`` is the identity, a diagonal ``[d]`` or a dense
``[d, d]`` positive definite matrix (Stan's ``inv_metric`` is ``M⁻¹``); momenta are
``p ~ N(0, M)`` and the kinetic energy is ``½ pᵀM⁻¹p``.

Example:
    >>> import mlx.core as mx
    >>> m = Metric.create(mx.array([4.0, 1.0]), 2)
    >>> m.kinetic(mx.array([[2.0, 1.0]])).tolist()
    [1.0]
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from genmlx.infer.mass_matrix import Metric  # the mass matrices live there

__all__ = ["Metric", "leapfrog"]


def leapfrog(
    vg: Callable[..., tuple[mx.array, mx.array]],
    inputs: tuple[mx.array, ...],
    metric: Metric,
    arrays: tuple[mx.array, ...],
    x: mx.array,
    p: mx.array,
    g: mx.array,
    eps: mx.array,
) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """One leapfrog step of size ``eps`` (``[C]`` or scalar): ``(x, p, log π, ∇log π)``."""
    e = eps[..., None] if eps.ndim else eps
    p_half = p + 0.5 * e * g
    x_new = x + e * metric.velocity(p_half, arrays)
    ld_new, g_new = vg(x_new, *inputs)
    return x_new, p_half + 0.5 * e * g_new, ld_new, g_new
