"""Mass matrices of the Hamiltonian kernels (HMC, NUTS, the MCMC driver), in one place.

* :class:`Metric` — a mass matrix ``M`` as arrays (identity, diagonal ``[d]`` or dense
  ``[d, d]``, shared or per chain): validation, momenta ``p ~ N(0, M)`` and the kinetic
  energy ``½ pᵀM⁻¹p`` (Stan's ``inv_metric`` is ``M⁻¹``);
* :func:`regularized_mass` — the mass Stan adapts from warm-up draws: the inverse of
  the (co)variance shrunk towards ``1e-3 I`` (``n / (n + 5)`` and ``1e-3 · 5 / (n + 5)``),
  used by :func:`genmlx.infer.adaptation.estimate_mass` and the sharded warm-up.

Example:
    >>> import mlx.core as mx
    >>> m = Metric.create(mx.array([4.0, 1.0]), 2)
    >>> m.kinetic(mx.array([[2.0, 1.0]])).tolist()
    [1.0]
    >>> [round(v, 4) for v in regularized_mass(mx.array([2.0]), 10**6, dense=False).tolist()]
    [0.5]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

__all__ = ["Metric", "regularized_mass"]


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


def regularized_mass(cov: mx.array, n: int, *, dense: bool) -> mx.array:
    """Stan's adapted mass from the sample (co)variance ``cov`` of ``n`` warm-up draws:
    ``M = (n/(n+5) · cov + 1e-3 · 5/(n+5) · I)⁻¹`` (a diagonal ``[..., d]`` from
    variances, a symmetric ``[..., d, d]`` from covariances), float32."""
    shrink, reg = n / (n + 5.0), 1e-3 * (5.0 / (n + 5.0))
    if not dense:
        return (1.0 / (shrink * cov + reg)).astype(mx.float32)
    d = cov.shape[-1]
    m = mx.linalg.inv(shrink * cov + reg * mx.eye(d), stream=mx.cpu)
    return (0.5 * (m + mx.swapaxes(m, -1, -2))).astype(mx.float32)
