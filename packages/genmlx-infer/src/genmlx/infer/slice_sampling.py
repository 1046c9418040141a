"""Elliptical slice sampling of a choice with a Gaussian prior.

The kernel takes a single or batched trace; a batched trace runs all chains at once (no
Python loop over chains), and the kernel reads no array values in Python, so a chain of
K steps can be wrapped in :func:`genmlx.core.compile`.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from genmlx.core.address import Address, format_address
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.random import Key
from genmlx.core.trace import Trace
from genmlx.infer import _checks as checks
from genmlx.infer._traces import where_trace
from genmlx.infer.kernel_info import SliceInfo

__all__ = ["elliptical_slice"]


def _constraint(addr: Address, value: mx.array, batch: tuple[int, ...]) -> ChoiceMap:
    return ChoiceMap(None, None, batch).set(addr, value).with_batch_shape(batch)


def elliptical_slice(
    trace: Trace,
    addr: Address,
    mean: Any,
    cov: Any,
    *,
    key: Key = None,
    max_shrinks: int = 64,
) -> tuple[Trace, SliceInfo]:
    """Elliptical slice sampling (Murray, Adams & MacKay, 2010) of the choice at ``addr``.

    The prior of ``f = trace[addr]`` must be ``N(mean, cov)``; write the rest of the
    joint density as the likelihood ``L(f)``. One step:

    1. ``ν ~ N(0, cov)``, ``log y = log L(f) + log u`` with ``u ~ U(0, 1)``;
    2. ``θ ~ U(0, 2π)``, bracket ``[θ - 2π, θ]``;
    3. ``f' = (f - mean) cos θ + ν sin θ + mean``; if ``log L(f') > log y`` accept,
       else shrink the bracket towards 0 (``θ < 0``: lower end ← θ, else upper end
       ← θ), draw ``θ`` uniformly from it and repeat.

    ``log L(f') - log L(f)`` is the ``update`` weight (``log p(t') - log p(t)``) minus
    the prior's log-density difference, which is computed here from ``mean``/``cov``.

    The shrinking loop is data dependent; here it runs a *fixed* ``max_shrinks + 1``
    proposals for all chains at once, each chain keeping its first accepted proposal
    (per-chain masks). Bound on not terminating: the bracket always contains 0 (the
    current state, which lies on the slice because ``log u < 0``), and for almost every
    ``u`` the slice contains an interval ``(-δ, δ)`` around 0 (``δ > 0`` depending on
    the state, by continuity of ``L``). If the bracket before a proposal has length
    ``ℓ``, a rejected uniform proposal leaves a bracket of expected length
    ``ℓ (p² + (1-p)²)/2 ≤ ℓ/2`` (``p`` = relative position of 0), so with
    ``ℓ_0 = 2π``, ``E[ℓ_k] ≤ 2π 2^{-k}``; a proposal from a bracket of length
    ``≤ δ`` is accepted, hence by Markov's inequality
    ``P(no acceptance in max_shrinks + 1 proposals) ≤ 2π 2^{-max_shrinks} / δ``
    (≈ 3.4e-19 / δ for the default 64). A chain that does not terminate (or whose
    proposals all fail from float rounding) keeps its state and reports
    ``accepted=False``; every chain that found a slice point reports ``True``.

    Args:
        trace: single or batched trace.
        addr: the address of the Gaussian choice (a scalar or a vector ``[d]``).
        mean: prior mean (broadcastable to the choice's shape, per chain allowed).
        cov: prior covariance: a variance (scalar choice, or isotropic), a vector of
            variances ``[d]`` (diagonal) or a matrix ``[d, d]``.
        key: PRNG key.
        max_shrinks: the fixed number of bracket shrinks.

    Returns:
        ``(new_trace, info)`` with ``info`` a :class:`~genmlx.infer.kernel_info.SliceInfo`.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     f = normal(0.0, 1.0) @ "f"
        ...     normal(f, 0.5) @ "y"
        >>> tr, _ = m.generate((), choicemap({"y": 1.0}), key=mx.random.key(0))
        >>> tr2, info = elliptical_slice(tr, "f", 0.0, 1.0, key=mx.random.key(1))
        >>> bool(info.accepted)
        True
    """
    checks.trace(trace, "elliptical_slice")
    checks.count(max_shrinks, "max_shrinks", "elliptical_slice", minimum=0)
    key = checks.key(key, "elliptical_slice")
    f = trace[addr]
    if not mx.issubdtype(f.dtype, mx.floating):
        raise TypeError(
            f"elliptical_slice: the choice at {format_address(addr)} has dtype {f.dtype}; "
            "it must be a continuous (Gaussian) choice"
        )
    batch = tuple(trace.batch_shape)
    event = tuple(f.shape[len(batch) :])
    if len(event) > 1:
        raise ValueError(
            f"elliptical_slice: the choice at {format_address(addr)} must be a scalar or a "
            f"vector, got event shape {event}"
        )
    mu = mx.broadcast_to(as_array(mean).astype(f.dtype), f.shape)
    c = as_array(cov).astype(f.dtype)
    k_nu, k_u, k_th, k_loop = mx.random.split(key, 4)
    z = mx.random.normal(shape=f.shape, key=k_nu)
    d = event[0] if event else 1
    if c.ndim == 2:
        if c.shape != (d, d) or not event:
            raise ValueError(
                f"elliptical_slice: cov of shape {c.shape} does not fit a choice of "
                f"event shape {event}"
            )
        chol = mx.linalg.cholesky(c, stream=mx.cpu)
        prec = mx.linalg.inv(c, stream=mx.cpu)
        nu = z @ chol.T

        def quad(v: mx.array) -> mx.array:
            return mx.sum(v * (v @ prec.T), axis=-1)

    else:
        if c.ndim > 1 or (c.ndim == 1 and c.shape != (d,)):
            raise ValueError(
                f"elliptical_slice: cov of shape {c.shape} does not fit a choice of "
                f"event shape {event}"
            )
        nu = mx.sqrt(c) * z

        def quad(v: mx.array) -> mx.array:
            q = v * v / c
            return mx.sum(q, axis=-1) if event else q

    def log_prior_diff(f_new: mx.array) -> mx.array:
        """log N(f_new) - log N(f) (normalisers cancel)."""
        return -0.5 * (quad(f_new - mu) - quad(f - mu))

    log_u = mx.log(mx.random.uniform(shape=batch, key=k_u))
    theta = mx.random.uniform(shape=batch, key=k_th) * (2.0 * math.pi)
    lo, hi = theta - 2.0 * math.pi, theta
    done = mx.zeros(batch, dtype=mx.bool_)
    out = trace
    keys = mx.random.split(k_loop, max(max_shrinks, 1))
    for i in range(max_shrinks + 1):
        th = theta[..., None] if event else theta
        f_new = (f - mu) * mx.cos(th) + nu * mx.sin(th) + mu
        res = trace.gen_fn.update(trace, _constraint(addr, f_new, batch))
        log_lik_diff = res.weight - log_prior_diff(f_new)
        ok = mx.logical_and(mx.logical_not(done), log_lik_diff > log_u)
        out = where_trace(ok, res.trace, out)
        done = mx.logical_or(done, ok)
        if i == max_shrinks:
            break
        lo = mx.where(theta < 0, theta, lo)
        hi = mx.where(theta < 0, hi, theta)
        theta = mx.where(done, theta, lo + (hi - lo) * mx.random.uniform(shape=batch, key=keys[i]))
    return out, SliceInfo(done)
