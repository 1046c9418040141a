"""The No-U-Turn sampler (NUTS) with multinomial trajectory sampling, and its warm-up.

:func:`nuts` is Stan's / NumPyro's NUTS (Hoffman & Gelman 2014; Betancourt 2017,
"A Conceptual Introduction to Hamiltonian Monte Carlo", §A.3–A.4) on the *selected
continuous choices* of a trace, flattened into one vector ``x`` per chain exactly as in
:mod:`genmlx.infer.gradient_kernels` (whose private helpers ``_flatten_selected``,
``_logp_fn``, ``_value_and_grad`` and ``_move`` are reused here).

Algorithm (per chain). With ``H(x, p) = -log π(x) + ½ pᵀM⁻¹p`` and
``p ~ N(0, M)``, the trajectory starts as the single point ``(x₀, p₀)`` with energy
``H₀``. For ``j = 0, 1, …, max_depth-1`` a direction ``v = ±1`` is drawn and a
subtree of ``2ʲ`` leapfrog steps of size ``v·ε`` is integrated from the matching end
of the trajectory. Every state ``z`` gets the weight ``w(z) = exp(H₀ - H(z))``:

* **within a subtree** the proposal is drawn progressively ∝ ``w`` (leaf ``i``
  replaces it with probability ``w_i / Σ_{k≤i} w_k``), which is the uniform
  (unbiased) multinomial merge of Stan's recursion;
* **between the old trajectory and a new subtree** the *biased* progressive rule
  takes the subtree's proposal with probability ``min(1, W_subtree / W_old)``.

A subtree is invalid (and the chain stops without using it) when a leapfrog step
diverges (``H - H₀ > 1000`` or NaN) or when any of its balanced sub-subtrees makes a
U-turn. The generalised criterion on a tree with momentum sum ``ρ = Σ p`` and
velocities ``p♯ = M⁻¹p`` at its two ends is ``p♯₋·ρ > 0 ∧ p♯₊·ρ > 0``; each merge of
a left block ``L`` and right block ``R`` checks it on ``L ∪ R`` and, as in Stan ≥ 2.24,
on the two "extended" pairs ``(L, first leaf of R)`` and ``(last leaf of L, R)``. After
a valid subtree is merged the whole trajectory is checked the same way; a U-turn stops
the chain (keeping the proposal).

Vectorisation. The tree is built *iteratively*: a Python loop over the
``2^max_depth - 1`` possible leapfrog steps (fixed, static), with per-chain masks
(``running``: the trajectory still grows; ``sub_valid``: the current subtree has not
diverged or U-turned). A stopped chain's state is frozen by ``mx.where``. The U-turn
checks of the balanced binary tree use a stack of one stored block per level; which
blocks merge after leaf ``i`` depends only on the bits of the static index ``i``. So
there is no Python branch on array values and a K-step chain can be wrapped in
:func:`genmlx.core.compile`. The price is that every call integrates all
``2^max_depth - 1`` steps even when every chain has stopped early (their results are
masked out): choose ``max_depth`` for the target (e.g. 4–6 for well-conditioned
problems after warm-up).

Batched traces are many independent chains: all chains share one batched ``assess``
per leapfrog step. ``step_size`` may be a scalar or have the trace's batch shape (one
step size per chain); ``mass`` is shared by all chains.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, select
    >>> from genmlx.dists import normal
    >>> from genmlx.infer.nuts import nuts
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 1.0) @ "y"
    >>> tr, _ = model.vgenerate((), choicemap({"y": 1.0}), 100, key=mx.random.key(0))
    >>> tr2, acc = nuts(tr, select("mu"), key=mx.random.key(1), step_size=0.5, max_depth=4)
    >>> tr2["mu"].shape, bool(mx.all(acc))
    ((100,), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, cast

import mlx.core as mx

from genmlx.core.random import Key
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.infer import _checks as checks
from genmlx.infer.gradient_kernels import (
    _flatten_selected,
    _logp_fn,
    _move,
    _value_and_grad,
)

__all__ = ["NutsInfo", "NutsWarmup", "nuts", "nuts_info", "nuts_warmup"]

MAX_DELTA_H = 1000.0


class NutsInfo(NamedTuple):
    """Per-chain statistics of one NUTS transition (arrays of the trace's batch shape).

    Attributes:
        accept_prob: mean over the integrated states of ``min(1, exp(H₀ - H))``
            (Stan's ``accept_stat__``; the statistic dual averaging targets).
        n_leapfrog: number of leapfrog steps the chain used (Stan's ``n_leapfrog__``).
        depth: number of trajectory doublings attempted (Stan's ``treedepth__``).
        diverging: whether the last subtree diverged (``H - H₀ > 1000``).
    """

    accept_prob: mx.array
    n_leapfrog: mx.array
    depth: mx.array
    diverging: mx.array


class NutsWarmup(NamedTuple):
    """Result of :func:`nuts_warmup`: adapted ``step_size`` and ``mass``, and the trace."""

    step_size: mx.array
    mass: mx.array
    trace: Trace


class _Block(NamedTuple):
    """A balanced block of consecutive leaves, in integration order."""

    rho: mx.array  # Σ p over the block
    p_first: mx.array
    ps_first: mx.array  # M⁻¹ p at the first leaf
    p_last: mx.array
    ps_last: mx.array


def _dot(a: mx.array, b: mx.array) -> mx.array:
    return mx.sum(a * b, axis=-1)


def _criterion(ps_a: mx.array, ps_b: mx.array, rho: mx.array) -> mx.array:
    """Generalised no-U-turn criterion: ``True`` while the block keeps going."""
    return mx.logical_and(_dot(ps_a, rho) > 0, _dot(ps_b, rho) > 0)


def _merge(left: _Block, right: _Block) -> tuple[_Block, mx.array]:
    """Merge two adjacent blocks; ``(block, no_u_turn)`` with Stan's three checks."""
    rho = left.rho + right.rho
    ok = _criterion(left.ps_first, right.ps_last, rho)
    ok = mx.logical_and(ok, _criterion(left.ps_first, right.ps_first, left.rho + right.p_first))
    ok = mx.logical_and(ok, _criterion(left.ps_last, right.ps_last, right.rho + left.p_last))
    return _Block(rho, left.p_first, left.ps_first, right.p_last, right.ps_last), ok


def _where_block(mask: mx.array, a: _Block, b: _Block) -> _Block:
    m = mask[..., None]
    return _Block(*(mx.where(m, u, w) for u, w in zip(a, b)))


def _reverse(b: _Block) -> _Block:
    """The same block with first/last swapped (integration order → physical order)."""
    return _Block(b.rho, b.p_last, b.ps_last, b.p_first, b.ps_first)


def _mass_ops(
    mass: mx.array | None, d: int, op: str
) -> tuple[Callable[[mx.array], mx.array], Callable[[mx.array], mx.array]]:
    """``(z ↦ p = M^{1/2} z, p ↦ M⁻¹ p)`` for identity, diagonal or dense ``M``."""
    if mass is None:
        return (lambda z: z), (lambda p: p)
    m = mx.array(mass).astype(mx.float32)
    if m.shape == (d,):
        sqrt_m, inv_m = mx.sqrt(m), 1.0 / m
        return (lambda z: sqrt_m * z), (lambda p: p * inv_m)
    if m.shape == (d, d):
        chol = mx.linalg.cholesky(m, stream=mx.cpu)
        inv_full = mx.linalg.inv(m, stream=mx.cpu)
        return (lambda z: z @ chol.T), (lambda p: p @ inv_full.T)
    raise ValueError(
        f"{op}: mass must be a vector of shape ({d},) or a matrix of shape ({d}, {d}) "
        f"for the {d} selected dimensions; got shape {m.shape}"
    )


def nuts_info(
    trace: Trace,
    selection: Selection,
    *,
    key: Key = None,
    step_size: float | mx.array = 0.1,
    max_depth: int = 8,
    mass: mx.array | None = None,
) -> tuple[Trace, NutsInfo]:
    """One NUTS transition, returning per-chain statistics; see :func:`nuts`.

    Returns:
        ``(new_trace, info)`` with ``info`` a :class:`NutsInfo`.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 1.0) @ "x"
        >>> tr = m.vsimulate((), 10, key=mx.random.key(0))
        >>> tr2, info = nuts_info(tr, select("x"), key=mx.random.key(1), step_size=0.5,
        ...                       max_depth=4)
        >>> info.accept_prob.shape
        (10,)
    """
    checks.trace(trace, "nuts")
    checks.selection(selection, "nuts")
    checks.count(max_depth, "max_depth", "nuts")
    key = checks.key(key, "nuts")
    flat = _flatten_selected(trace, selection, "nuts")
    batch = flat.batch
    d = flat.x.shape[-1]
    mass = checks.mass_matrix(mass, d, "nuts")
    step_size = checks.positive_scalar(step_size, "step_size", "nuts", batch)
    logp = _logp_fn(trace, flat)
    root_m, minv = _mass_ops(mass, d, "nuts")

    k_mom, k_dir, k_leaf, k_merge = mx.random.split(key, 4)
    n_leaves = 2**max_depth - 1
    p0 = root_m(mx.random.normal(shape=flat.x.shape, key=k_mom))
    dirs = mx.random.bernoulli(shape=(max_depth, *batch), key=k_dir)
    u_leaf = mx.random.uniform(shape=(n_leaves, *batch), key=k_leaf)
    u_merge = mx.random.uniform(shape=(max_depth, *batch), key=k_merge)

    eps = mx.broadcast_to(mx.array(step_size, dtype=mx.float32), batch)

    def kinetic(p: mx.array) -> mx.array:
        return 0.5 * _dot(p, minv(p))

    x0 = flat.x
    ld0, g0 = _value_and_grad(logp, x0)
    h0 = -ld0 + kinetic(p0)
    ps0 = minv(p0)

    # physical ends of the trajectory: (x, p, grad)
    xl, pl, gl = x0, p0, g0
    xr, pr, gr = x0, p0, g0
    tree = _Block(p0, p0, ps0, p0, ps0)  # physical order: first = leftmost
    x_prop = x0
    lsw_tree = mx.zeros(batch, dtype=mx.float32)
    running = mx.ones(batch, dtype=mx.bool_)
    sum_acc = mx.zeros(batch, dtype=mx.float32)
    n_steps = mx.zeros(batch, dtype=mx.float32)
    depth = mx.zeros(batch, dtype=mx.int32)
    diverging = mx.zeros(batch, dtype=mx.bool_)
    ninf = mx.array(-mx.inf, dtype=mx.float32)

    leaf = 0
    for j in range(max_depth):
        forward = dirs[j]
        v_eps = mx.where(forward, eps, -eps)[..., None]
        fwd = forward[..., None]
        x, p, g = mx.where(fwd, xr, xl), mx.where(fwd, pr, pl), mx.where(fwd, gr, gl)
        depth = depth + running.astype(mx.int32)
        sub_valid = mx.ones(batch, dtype=mx.bool_)
        lsw_sub = mx.full(batch, -mx.inf, dtype=mx.float32)
        sub_prop = x
        stack: list[_Block] = []
        block: _Block = tree  # placeholder, always reassigned below
        for i in range(2**j):
            active = mx.logical_and(running, sub_valid)
            am = active[..., None]
            # leapfrog step of size v·ε
            p_half = p + 0.5 * v_eps * g
            x_new = x + v_eps * minv(p_half)
            ld_new, g_new = _value_and_grad(logp, x_new)
            p_new = p_half + 0.5 * v_eps * g_new
            x, p, g = mx.where(am, x_new, x), mx.where(am, p_new, p), mx.where(am, g_new, g)
            h = -ld_new + kinetic(p_new)
            delta = h0 - h  # log weight of the new state
            delta = mx.where(mx.isnan(delta), ninf, delta)
            div = mx.logical_and(active, -delta > MAX_DELTA_H)
            diverging = mx.logical_or(diverging, div)
            sum_acc = sum_acc + mx.where(active, mx.exp(mx.minimum(delta, 0.0)), 0.0)
            n_steps = n_steps + active.astype(mx.float32)
            # progressive (unbiased) multinomial sampling within the subtree
            lsw_new = mx.logaddexp(lsw_sub, delta)
            take = mx.logical_and(active, mx.log(u_leaf[leaf]) < delta - lsw_new)
            sub_prop = mx.where(take[..., None], x, sub_prop)
            lsw_sub = mx.where(active, lsw_new, lsw_sub)
            leaf += 1
            # U-turn checks of the balanced sub-subtrees completed by leaf i
            ps = minv(p)
            block = _Block(p, p, ps, p, ps)
            ok = mx.logical_not(div)
            k = 0
            while (i >> k) & 1:
                block, ok_k = _merge(stack.pop(), block)
                ok = mx.logical_and(ok, ok_k)
                k += 1
            stack.append(block)
            sub_valid = mx.logical_and(sub_valid, mx.where(active, ok, True))
        # merge the finished subtree into the trajectory (biased progressive sampling)
        ok = mx.logical_and(running, sub_valid)
        take = mx.logical_and(ok, mx.log(u_merge[j]) < lsw_sub - lsw_tree)
        x_prop = mx.where(take[..., None], sub_prop, x_prop)
        lsw_tree = mx.where(ok, mx.logaddexp(lsw_tree, lsw_sub), lsw_tree)
        om_r = mx.logical_and(ok, forward)[..., None]
        om_l = mx.logical_and(ok, mx.logical_not(forward))[..., None]
        xr, pr, gr = mx.where(om_r, x, xr), mx.where(om_r, p, pr), mx.where(om_r, g, gr)
        xl, pl, gl = mx.where(om_l, x, xl), mx.where(om_l, p, pl), mx.where(om_l, g, gl)
        merged_f, ok_f = _merge(tree, block)
        merged_b, ok_b = _merge(_reverse(block), tree)
        merged = _where_block(forward, merged_f, merged_b)
        tree = _where_block(ok, merged, tree)
        running = mx.logical_and(ok, mx.where(forward, ok_f, ok_b))

    new_trace, _ = _move(trace, flat, x_prop)
    info = NutsInfo(sum_acc / mx.maximum(n_steps, 1.0), n_steps.astype(mx.int32), depth, diverging)
    return new_trace, info


def nuts(
    trace: Trace,
    selection: Selection,
    *,
    key: Key = None,
    step_size: float | mx.array = 0.1,
    max_depth: int = 8,
    mass: mx.array | None = None,
) -> tuple[Trace, mx.array]:
    """One No-U-Turn (multinomial NUTS) transition on the selected continuous choices.

    Momentum ``p ~ N(0, M)``; the trajectory of the Hamiltonian
    ``H(x, p) = -log π(x) + ½ pᵀM⁻¹p`` is doubled in random directions (at most
    ``max_depth`` times, i.e. at most ``2^max_depth - 1`` leapfrog steps) until it makes
    a U-turn (generalised criterion ``p♯₋·ρ > 0 ∧ p♯₊·ρ > 0`` with the extra checks
    across subtree boundaries) or diverges (``H - H₀ > 1000``); the next state is drawn
    from the trajectory with probabilities ∝ ``exp(-H)`` (biased progressive sampling
    between subtrees, uniform within). The transition leaves ``π`` invariant; see the
    module docstring for the vectorised iterative construction.

    Args:
        trace: a single or batched trace (batched: one chain per particle).
        selection: the continuous choices to move (flattened in choice-map order into
            a vector of length ``d``).
        key: PRNG key.
        step_size: leapfrog step ``ε > 0``: a scalar or one per chain (batch shape).
        max_depth: maximum number of trajectory doublings (``≥ 1``). Every call
            integrates ``2^max_depth - 1`` steps for all chains (finished chains are
            masked), so keep it modest.
        mass: ``None`` (identity), a vector ``[d]`` (diagonal) or a positive definite
            matrix ``[d, d]`` (dense), shared by all chains.

    Returns:
        ``(new_trace, accepted)``. NUTS has no accept/reject step (the proposal may be
        the starting point itself), so ``accepted`` is all ``True`` with the trace's
        batch shape (``False`` for chains whose step size, an array under
        ``compile``, is invalid: NaN, inf or not positive); use :func:`nuts_info` for
        the acceptance statistic, tree depth, number of leapfrog steps and divergences.

    Raises:
        TypeError: a selected choice is not floating point.
        ValueError: ``mass`` has the wrong shape or ``max_depth < 1``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 1.0) @ "x"
        >>> tr = m.simulate((), key=mx.random.key(0))
        >>> tr2, acc = nuts(tr, select("x"), key=mx.random.key(1), step_size=0.5,
        ...                 max_depth=3)
        >>> acc.shape, tr2.batch_shape
        ((), ())
    """
    eps = checks.positive_scalar(step_size, "step_size", "nuts", tuple(trace.batch_shape))
    new_trace, _ = nuts_info(
        trace, selection, key=key, step_size=eps, max_depth=max_depth, mass=mass
    )
    # all True, except chains whose (traced, unreadable) step size is invalid
    return new_trace, mx.broadcast_to(mx.logical_not(mx.isnan(eps)), tuple(trace.batch_shape))


def _windows(
    n_steps: int, init_buffer: int, term_buffer: int, base_window: int
) -> tuple[int, list[int]]:
    """Stan's schedule: ``(first slow step, slow-window ends)`` (ends are step counts
    after which the mass is re-estimated)."""
    if init_buffer + term_buffer + base_window > n_steps:
        # Stan's fallback for short warm-ups: 15% / 75% / 10%
        init_buffer = int(0.15 * n_steps)
        term_buffer = int(0.1 * n_steps)
        base_window = n_steps - init_buffer - term_buffer
    ends = []
    start, size = init_buffer, base_window
    last = n_steps - term_buffer
    while size > 0 and start + size <= last:
        nxt = start + size
        # the last window stretches to the terminal buffer if the next one would not fit
        if nxt + 2 * size > last:
            nxt = last
        ends.append(nxt)
        start, size = nxt, 2 * size
    return init_buffer, ends


def _init_step_size(
    trace: Trace,
    selection: Selection,
    eps: float,
    mass: mx.array,
    key: mx.array,
    one_step: Callable[[Trace, mx.array, mx.array, mx.array], tuple[Trace, NutsInfo]],
) -> float:
    """Stan's step-size heuristic, pooled over chains: double (or halve) ``ε`` until the
    mean one-leapfrog acceptance ``min(1, exp(H₀ - H))`` crosses 0.8. Eager (reads
    values)."""
    del selection

    def acc(e: float, k: mx.array) -> float:
        _, info = one_step(trace, k, mx.array(e, dtype=mx.float32), mass)
        return cast(float, mx.mean(info.accept_prob).item())

    key, sub = mx.random.split(key)
    up = acc(eps, sub) > 0.8
    for _ in range(100):
        key, sub = mx.random.split(key)
        trial = 2.0 * eps if up else 0.5 * eps
        a = acc(trial, sub)
        if (up and not a > 0.8) or (not up and not a < 0.8) or not 1e-7 < trial < 1e7:
            break
        eps = trial
    return eps


def nuts_warmup(
    trace: Trace,
    selection: Selection,
    n_steps: int,
    *,
    key: Key = None,
    target_accept: float = 0.8,
    step_size: float = 0.1,
    max_depth: int = 8,
    adapt_mass: bool = True,
    dense_mass: bool = False,
    find_step_size: bool = True,
    init_buffer: int = 75,
    term_buffer: int = 50,
    base_window: int = 25,
) -> NutsWarmup:
    """Stan's NUTS warm-up: dual-averaging step size and windowed mass adaptation.

    Runs ``n_steps`` NUTS transitions. **Step size** (Hoffman & Gelman 2014, Stan's
    constants ``γ = 0.05, t₀ = 10, κ = 0.75``): with ``μ = log(10 ε₀)`` and the
    acceptance statistic ``α_t`` of transition ``t`` (``min(1, ·)``),

    ``H̄_t = (1 - 1/(t+t₀)) H̄_{t-1} + (δ - α_t)/(t+t₀)``,
    ``log ε_t = μ - √t H̄_t / γ``,
    ``log ε̄_t = t^{-κ} log ε_t + (1 - t^{-κ}) log ε̄_{t-1}``,

    and the final step size is ``ε̄``. Adaptation is **pooled** over chains: ``α_t`` is
    the mean acceptance statistic of all chains, so every chain gets the same ``ε``.
    **Mass** (Stan's windows: an initial fast buffer of ``init_buffer`` steps, slow
    windows of ``base_window, 2·base_window, …`` steps, a terminal buffer of
    ``term_buffer`` steps; 15%/75%/10% when ``n_steps`` is too short): at the end of
    each slow window ``M⁻¹`` is set to Stan's regularised estimate from the window's
    draws, pooled over chains and draws (``n`` = their number): the diagonal
    ``n/(n+5)·var + 10⁻³·5/(n+5)`` or, with ``dense_mass``, the covariance
    ``n/(n+5)·Σ + 10⁻³·5/(n+5)·I``. Dual averaging then restarts with ``μ = log(10 ε)``.
    With ``find_step_size``, Stan's heuristic (double or halve ``ε`` until the mean
    one-step acceptance crosses 0.8) runs at the start and after each mass update.

    The loop is eager Python over a static schedule (the heuristic reads values with
    ``.item()``); each transition is one compiled :func:`nuts_info` call.

    Args:
        trace: single or batched trace (the initial state of the chains).
        selection: the continuous choices to sample.
        n_steps: number of warm-up transitions.
        key: PRNG key.
        target_accept: target ``δ`` of the mean acceptance statistic.
        step_size: initial step size ``ε₀``.
        max_depth: NUTS maximum tree depth during warm-up.
        adapt_mass: adapt the mass matrix (else keep the identity).
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        find_step_size: run Stan's step-size heuristic at (re)starts.
        init_buffer: Stan's initial fast buffer (steps).
        term_buffer: Stan's terminal fast buffer (steps).
        base_window: Stan's first slow window (steps).

    Returns:
        :class:`NutsWarmup` ``(step_size, mass, trace)``: the adapted scalar step size,
        the mass to pass as ``nuts(..., mass=mass)`` (``[d]``, the inverse of the
        estimated variances, or ``[d, d]``, the inverse of the estimated covariance),
        and the trace after warm-up.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 3.0) @ "x"
        >>> tr = m.vsimulate((), 50, key=mx.random.key(0))
        >>> w = nuts_warmup(tr, select("x"), 60, key=mx.random.key(1), max_depth=4)
        >>> w.mass.shape, w.trace["x"].shape
        ((1,), (50,))
    """
    from genmlx.core.compile import compile as _compile

    op = "nuts_warmup"
    checks.trace(trace, op)
    checks.selection(selection, op)
    checks.count(n_steps, "n_steps", op)
    key = checks.key(key, op)
    checks.number(
        target_accept, "target_accept", op, low=0.0, high=1.0, low_open=True, high_open=True
    )
    checks.number(step_size, "step_size", op, low=0.0, low_open=True, high_open=True)
    checks.count(max_depth, "max_depth", op)
    for name, v in (("init_buffer", init_buffer), ("term_buffer", term_buffer)):
        checks.count(v, name, op, minimum=0)
    checks.count(base_window, "base_window", op)
    gamma, t0, kappa = 0.05, 10.0, 0.75
    flat = _flatten_selected(trace, selection, "nuts_warmup")
    d = flat.x.shape[-1]
    mass = mx.eye(d, dtype=mx.float32) if dense_mass else mx.ones((d,), dtype=mx.float32)
    first_slow, end_list = _windows(n_steps, init_buffer, term_buffer, base_window)
    ends = set(end_list) if adapt_mass else set()

    def step(tr: Trace, k: mx.array, eps: mx.array, m: mx.array) -> tuple[Trace, NutsInfo]:
        return nuts_info(tr, selection, key=k, step_size=eps, max_depth=max_depth, mass=m)

    def one_step(tr: Trace, k: mx.array, eps: mx.array, m: mx.array) -> tuple[Trace, NutsInfo]:
        return nuts_info(tr, selection, key=k, step_size=eps, max_depth=1, mass=m)

    cstep, cone = _compile(step), _compile(one_step)

    if find_step_size:
        key, sub = mx.random.split(key)
        step_size = _init_step_size(trace, selection, step_size, mass, sub, cone)
    eps = mx.array(step_size, dtype=mx.float32)
    mu = mx.array(math.log(10.0 * step_size), dtype=mx.float32)
    log_eps_bar = mx.array(0.0)
    h_bar = mx.array(0.0)
    count = 0
    window: list[mx.array] = []
    for t in range(n_steps):
        key, sub = mx.random.split(key)
        trace, info = cstep(trace, sub, eps, mass)
        count += 1
        alpha = mx.minimum(mx.mean(info.accept_prob), 1.0)
        eta = 1.0 / (count + t0)
        h_bar = (1.0 - eta) * h_bar + eta * (target_accept - alpha)
        log_eps = mu - math.sqrt(count) / gamma * h_bar
        w = count ** (-kappa)
        log_eps_bar = w * log_eps + (1.0 - w) * log_eps_bar
        eps = mx.exp(log_eps)
        if adapt_mass and t >= first_slow:
            window.append(_flatten_selected(trace, selection, "nuts_warmup").x.reshape(-1, d))
        if t + 1 in ends:
            draws = mx.concatenate(window, axis=0)
            n = draws.shape[0]
            shrink, reg = n / (n + 5.0), 1e-3 * (5.0 / (n + 5.0))
            if dense_mass:
                c = draws - mx.mean(draws, axis=0)
                cov = (c.T @ c) / (n - 1)
                cov = shrink * cov + reg * mx.eye(d)
                mass = mx.linalg.inv(cov, stream=mx.cpu).astype(mx.float32)
                mass = 0.5 * (mass + mass.T)
            else:
                var = shrink * mx.var(draws, axis=0, ddof=1) + reg
                mass = (1.0 / var).astype(mx.float32)
            window = []
            if find_step_size:
                key, sub = mx.random.split(key)
                eps = mx.array(
                    _init_step_size(trace, selection, cast(float, eps.item()), mass, sub, cone),
                    dtype=mx.float32,
                )
            # restart dual averaging at the current step size
            mu = math.log(10.0) + mx.log(eps)
            count = 0
            h_bar = mx.array(0.0)
            log_eps_bar = mx.array(0.0)
        mx.eval(trace.score, eps, mass, log_eps_bar, h_bar, mu)
    final = mx.exp(log_eps_bar) if count > 0 else eps
    return NutsWarmup(final.astype(mx.float32), mass, trace)
