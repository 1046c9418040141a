"""Warm-up adaptation for HMC and NUTS: Stan's step-size dual averaging, windowed mass
matrix estimation and the initial step-size heuristic, per chain or pooled.

Every function works on a batch of ``C`` chains. **Per chain** (the default of the
MCMC driver), each chain adapts its own step size and mass from its own draws, so a
chain that warms up in a different region is not stuck with another's scale; **pooled**
adaptation averages the acceptance statistic and pools the draws over all chains (every
chain gets the same step size and mass).

Dual averaging (Hoffman & Gelman 2014, Stan's constants ``γ = 0.05``, ``t₀ = 10``,
``κ = 0.75``, ``μ = log 10ε₀``)::

    H̄_t = (1 − 1/(t + t₀)) H̄_{t−1} + (δ − α_t)/(t + t₀)
    log ε_t = μ − √t H̄_t / γ
    log ε̄_t = t^{−κ} log ε_t + (1 − t^{−κ}) log ε̄_{t−1}

Mass: Stan's windows (an initial fast buffer, slow windows doubling in length, a
terminal buffer; 15 % / 75 % / 10 % for short warm-ups) and its regularised estimate
``n/(n+5)·var + 10⁻³·5/(n+5)`` (diagonal) or ``n/(n+5)·Σ + 10⁻³·5/(n+5)·I`` (dense)
of the window's draws; the mass ``M`` is its inverse.

Example:
    >>> first_slow, ends = windows(1000, 75, 50, 25)
    >>> first_slow, ends
    (75, [100, 150, 250, 450, 950])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import mlx.core as mx

from genmlx.infer.mass_matrix import regularized_mass

__all__ = ["DualAveraging", "estimate_mass", "find_step_size", "windows"]

GAMMA, T0, KAPPA = 0.05, 10.0, 0.75


def windows(
    n_steps: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25
) -> tuple[int, list[int]]:
    """Stan's schedule: ``(first slow step, slow-window ends)`` (the ends are step
    counts after which the mass is re-estimated)."""
    if init_buffer + term_buffer + base_window > n_steps:
        init_buffer = int(0.15 * n_steps)
        term_buffer = int(0.1 * n_steps)
        base_window = n_steps - init_buffer - term_buffer
    ends = []
    start, size = init_buffer, base_window
    last = n_steps - term_buffer
    while size > 0 and start + size <= last:
        nxt = start + size
        if nxt + 2 * size > last:
            nxt = last
        ends.append(nxt)
        start, size = nxt, 2 * size
    return init_buffer, ends


class DualAveraging(NamedTuple):
    """Dual-averaging state, one entry per chain (or one, pooled)."""

    mu: mx.array
    h_bar: mx.array
    log_eps: mx.array
    log_eps_bar: mx.array
    steps: int

    @staticmethod
    def start(eps: mx.array) -> DualAveraging:
        """Restart at step size ``eps`` (``μ = log 10ε``)."""
        eps = mx.array(eps, dtype=mx.float32)
        z = mx.zeros_like(eps)
        return DualAveraging(mx.log(10.0 * eps), z, mx.log(eps), z, 0)

    def update(self, accept: mx.array, target: float) -> DualAveraging:
        """One step with acceptance statistic ``accept`` (same shape as the state)."""
        t = self.steps + 1
        eta = 1.0 / (t + T0)
        alpha = mx.minimum(mx.where(mx.isnan(accept), 0.0, accept), 1.0)
        h_bar = (1.0 - eta) * self.h_bar + eta * (target - alpha)
        log_eps = self.mu - math.sqrt(t) / GAMMA * h_bar
        w = t ** (-KAPPA)
        log_eps_bar = w * log_eps + (1.0 - w) * self.log_eps_bar
        return DualAveraging(self.mu, h_bar, log_eps, log_eps_bar, t)

    @property
    def step_size(self) -> mx.array:
        """The step size to use during adaptation."""
        return mx.exp(self.log_eps)

    @property
    def final_step_size(self) -> mx.array:
        """The averaged step size ``ε̄`` (the one kept after warm-up)."""
        return mx.exp(self.log_eps_bar) if self.steps > 0 else mx.exp(self.log_eps)


def find_step_size(
    one_step_accept: Callable[[mx.array, mx.array], mx.array],
    eps: mx.array,
    key: mx.array,
    *,
    per_chain: bool,
    max_iter: int = 100,
) -> mx.array:
    """Stan's heuristic: double (or halve) ``ε`` until the one-leapfrog acceptance
    ``min(1, exp(H₀ − H))`` crosses 0.8.

    Args:
        one_step_accept: ``(eps [C], key) -> accept [C]`` for one leapfrog step with a
            fresh momentum.
        eps: starting step sizes ``[C]``.
        key: PRNG key.
        per_chain: each chain finds its own ``ε`` (else the mean acceptance decides
            for all).
        max_iter: cap on the number of doublings/halvings.

    Returns:
        Step sizes ``[C]``.
    """
    eps = mx.array(eps, dtype=mx.float32)

    def acc(e: mx.array, k: mx.array) -> mx.array:
        a = one_step_accept(e, k)
        a = mx.where(mx.isnan(a), 0.0, a)
        return a if per_chain else mx.broadcast_to(mx.mean(a), a.shape)

    key, sub = mx.random.split(key)
    up = acc(eps, sub) > 0.8
    active = mx.ones(eps.shape, dtype=mx.bool_)
    for _ in range(max_iter):
        key, sub = mx.random.split(key)
        trial = mx.where(up, 2.0 * eps, 0.5 * eps)
        a = acc(trial, sub)
        crossed = mx.where(up, a <= 0.8, a >= 0.8)
        bounded = mx.logical_and(trial > 1e-7, trial < 1e7)
        move = mx.logical_and(active, mx.logical_and(mx.logical_not(crossed), bounded))
        eps = mx.where(move, trial, eps)
        active = move
        if not bool(mx.any(active).item()):
            break
    return eps


def estimate_mass(draws: mx.array, *, dense: bool, per_chain: bool) -> mx.array:
    """The mass ``M`` from warm-up draws ``[C, n, d]``: Stan's regularised inverse
    (co)variance, per chain (``[C, d]`` / ``[C, d, d]``) or pooled (``[d]`` /
    ``[d, d]``)."""
    c, n, d = draws.shape
    if not per_chain:
        draws = draws.reshape(1, c * n, d)
        n = c * n
    if dense:
        centred = draws - mx.mean(draws, axis=1, keepdims=True)
        m = regularized_mass(mx.swapaxes(centred, 1, 2) @ centred / max(n - 1, 1), n, dense=True)
    else:
        m = regularized_mass(mx.var(draws, axis=1, ddof=1), n, dense=False)
    return m if per_chain else m[0]
