"""Hamiltonian building blocks on vectors: mass matrices, kinetic energy, leapfrog.

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
from typing import Any, NamedTuple

import mlx.core as mx

__all__ = ["Metric", "leapfrog"]


class Metric(NamedTuple):
    """A mass matrix as arrays: ``kind`` is ``"identity"``, ``"diag"`` or ``"dense"``.

    Attributes:
        kind: the structure.
        arrays: ``()``; ``(m_sqrt, m_inv)`` for a diagonal ``M``; ``(chol_M, M⁻¹)`` for
            a dense one. Per-chain metrics carry a leading chain axis.
    """

    kind: str
    arrays: tuple[mx.array, ...]

    @staticmethod
    def create(
        mass: Any, d: int, op: str = "hmc", n_chains: int | None = None, validate: bool = True
    ) -> Metric:
        """The metric of ``mass`` (``None``, ``[d]``, ``[d, d]``, or per chain
        ``[C, d]`` / ``[C, d, d]``).

        Raises:
            ValueError: wrong shape, or entries that are not finite and positive
                (diagonal) / a matrix that is not symmetric positive definite (dense).
        """
        if mass is None:
            return Metric("identity", ())
        m = mx.array(mass).astype(mx.float32)
        per_chain = n_chains is not None and m.ndim >= 1 and m.shape[0] == n_chains
        core = m.shape[1:] if per_chain and m.ndim in (2, 3) else m.shape
        if core == (d,):
            if validate and not mx.all(mx.logical_and(m > 0, mx.isfinite(m))).item():
                raise ValueError(f"{op}: a diagonal mass must have finite positive entries")
            return Metric("diag", (mx.sqrt(m), 1.0 / m))
        if core == (d, d):
            if validate:
                sym = float(mx.max(mx.abs(m - mx.swapaxes(m, -1, -2))).item())  # type: ignore[arg-type]
                scale = max(1.0, float(mx.max(mx.abs(m)).item()))  # type: ignore[arg-type]
                if not sym <= 1e-5 * scale:
                    raise ValueError(f"{op}: a dense mass matrix must be symmetric")
                eig = mx.linalg.eigvalsh(m, stream=mx.cpu)
                if not mx.all(eig > 0).item():
                    raise ValueError(f"{op}: a dense mass matrix must be positive definite")
            chol = mx.linalg.cholesky(m, stream=mx.cpu)
            inv = mx.linalg.inv(m, stream=mx.cpu)
            return Metric("dense", (chol, 0.5 * (inv + mx.swapaxes(inv, -1, -2))))
        raise ValueError(
            f"{op}: mass must be a vector of shape ({d},) or a matrix of shape ({d}, {d}) "
            f"for the {d} dimensions; got shape {tuple(m.shape)}"
        )

    # The functions below take the metric's arrays explicitly so that compiled programs
    # receive them as inputs (never as frozen constants).
    def momentum(self, z: mx.array, arrays: tuple[mx.array, ...]) -> mx.array:
        """``p = M^{1/2} z`` for standard normal ``z`` ``[C, d]``."""
        if self.kind == "identity":
            return z
        if self.kind == "diag":
            return arrays[0] * z
        chol = arrays[0]
        if chol.ndim == 3:
            return mx.squeeze(chol @ z[..., None], -1)
        return z @ chol.T

    def velocity(self, p: mx.array, arrays: tuple[mx.array, ...]) -> mx.array:
        """``M⁻¹ p``."""
        if self.kind == "identity":
            return p
        if self.kind == "diag":
            return p * arrays[1]
        inv = arrays[1]
        if inv.ndim == 3:
            return mx.squeeze(inv @ p[..., None], -1)
        return p @ inv

    def kinetic(self, p: mx.array, arrays: tuple[mx.array, ...] | None = None) -> mx.array:
        """``½ pᵀ M⁻¹ p`` per chain."""
        a = self.arrays if arrays is None else arrays
        return 0.5 * mx.sum(p * self.velocity(p, a), axis=-1)


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
