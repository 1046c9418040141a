"""The No-U-Turn sampler (NUTS, multinomial, dynamic termination) and its warm-up.

:func:`nuts` is Stan's and NumPyro's NUTS (Hoffman & Gelman 2014;
Betancourt 2017, §A.3–A.4) on the *selected continuous choices* of a trace — single, or
batched for many independent chains. The trajectory doubles in random directions until
it makes a U-turn (the generalised criterion with Stan's extra checks across subtree
boundaries) or diverges, and the next state is drawn from it with probabilities
``∝ exp(−H)`` (biased progressive sampling between subtrees, uniform within). The
engine (:mod:`genmlx.infer.nuts_tree`) stops each transition as soon as every chain
has stopped, so the default ``max_depth=10`` (Stan's and NumPyro's) costs only what the
posterior needs.

On a **static** model (:func:`genmlx.core.analyze`) the selected choices are moved in
unconstrained space — each mapped from its domain by its bijector, the log-Jacobian
included — and the log density is the compiled tier's (:func:`genmlx.core.logdensity`),
so no trace or handler runs inside a leapfrog step; a positive or bounded choice can
never leave its support. A dynamic model runs on the interpreter in the choices' own
space, as before.

Under a transformation (inside :func:`genmlx.core.compile`, ``mx.vmap`` or
``mx.grad``), where no value can be read to stop early, the kernel integrates the full
``2^max_depth − 1`` steps with finished chains masked (choose a small ``max_depth``
there).

:func:`nuts_warmup` adapts the step size (dual averaging) and a diagonal or dense mass
matrix (Stan's windows), per chain or pooled (:mod:`genmlx.infer.adaptation`).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, select
    >>> from genmlx.dists import normal
    >>> from genmlx.infer.nuts_kernel import nuts
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 1.0) @ "y"
    >>> tr, _ = model.vgenerate((), choicemap({"y": 1.0}), 100, key=mx.random.key(0))
    >>> tr2, info = nuts(tr, select("mu"), key=mx.random.key(1), step_size=0.5)
    >>> tr2["mu"].shape, bool(mx.all(info.accepted)), info.depth.shape
    ((100,), True, (100,))
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.compile import compile_function
from genmlx.core.deprecation import deprecated_alias
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.infer import _checks as checks
from genmlx.infer.adaptation import DualAveraging, estimate_mass, find_step_size, windows
from genmlx.infer.integrators import Metric, leapfrog
from genmlx.infer.nuts_tree import NutsInfo, NUTSState, nuts_transition
from genmlx.infer.targets import Target, chain_keys, target

__all__ = [
    "NUTSState",
    "NutsInfo",
    "NutsWarmup",
    "nuts",
    "nuts_warmup",
    "nuts_warmup_state",
]


class NutsWarmup(NamedTuple):
    """Result of :func:`nuts_warmup`: adapted ``step_size`` and ``mass``, and the trace."""

    step_size: mx.array
    mass: mx.array
    trace: Trace


def _check_step(step_size: Any, op: str) -> None:
    a = mx.array(step_size, dtype=mx.float32)
    if not bool(mx.all(mx.logical_and(mx.isfinite(a), a > 0)).item()):
        raise ValueError(f"{op}: step_size must be finite and positive, got {step_size!r}")


def _nuts_step(
    trace: Trace,
    selection: Selection,
    *,
    key: Any = None,
    step_size: float | mx.array = 0.1,
    max_depth: int = 10,
    mass: mx.array | None = None,
) -> tuple[Trace, NutsInfo]:
    checks.trace(trace, "nuts")
    checks.selection(selection, "nuts")
    if not isinstance(max_depth, int) or max_depth < 1:
        raise ValueError(f"nuts: max_depth must be an int of at least 1, got {max_depth!r}")
    # an invalid array step size under a transform becomes NaN: every state is rejected
    step_size = checks.positive_scalar(step_size, "step_size", "nuts", tuple(trace.batch_shape))
    eager = not runtime.in_transform()
    if eager:
        _check_step(step_size, "nuts")
    key = checks.key(key, "nuts")
    t = target(trace, selection, "nuts")
    c = t.position.shape[0]
    metric = Metric.create(mass, t.dim, "nuts", n_chains=c if t.batched else None, validate=eager)
    compiled = t.compiled and eager
    ld, g = _vg_compiled(t)(t.position, *t.inputs) if compiled else t.vg(t.position, *t.inputs)
    state = NUTSState(t.position, ld, g)
    eps = mx.array(step_size, dtype=mx.float32)
    if not t.batched and eps.ndim:
        eps = eps.reshape(-1)
    new, info = nuts_transition(
        state,
        t.vg,
        t.inputs,
        # chain i of a batched trace runs with split(key, C)[i]; a single trace with key
        key=chain_keys(key, c, t.batched),
        step_size=eps,
        metric=metric,
        max_depth=max_depth,
        compiled=compiled,
        dynamic=eager,
    )
    moved = mx.any(new.position != t.position, axis=-1)
    tr = t.to_trace(new.position, moved)
    if not t.batched:
        info = NutsInfo(*(a[0] if a is not None else None for a in info))  # type: ignore[arg-type]
    return tr, info


_VG: dict[int, Any] = {}


def _vg_compiled(t: Target) -> Any:
    fn = _VG.get(id(t.vg))
    if fn is None or fn[0] is not t.vg:
        if len(_VG) > 256:
            _VG.clear()
        fn = _VG[id(t.vg)] = (t.vg, compile_function(t.vg))
    return fn[1]


def nuts(
    trace: Trace,
    selection: Selection,
    *,
    key: Any = None,
    step_size: float | mx.array = 0.1,
    max_depth: int = 10,
    mass: mx.array | None = None,
) -> tuple[Trace, NutsInfo]:
    """One No-U-Turn (multinomial NUTS) transition on the selected continuous choices.

    Momentum ``p ~ N(0, M)``; the trajectory of ``H(x, p) = −log π(x) + ½ pᵀM⁻¹p`` is
    doubled in random directions (at most ``max_depth`` times) until it makes a U-turn
    or diverges (``H − H₀ > 1000``); the next state is drawn from it ∝ ``exp(−H)``.
    The transition leaves ``π`` invariant. On a static model ``x`` is the unconstrained
    vector of the selected choices (see the module docstring).

    Args:
        trace: a single or batched trace (batched: one chain per particle).
        selection: the continuous choices to move.
        key: PRNG key (``None``: a fresh one).
        step_size: leapfrog step ``ε > 0``: a scalar or one per chain.
        max_depth: maximum number of doublings (default 10, like Stan and NumPyro).
        mass: ``None`` (identity), ``[d]`` (diagonal) or ``[d, d]`` (dense), shared by
            all chains, or per chain (``[n, d]`` / ``[n, d, d]``).

    Returns:
        ``(new_trace, info)`` with ``info`` a :class:`NutsInfo` of per-chain statistics
        (``accept_prob``, ``n_leapfrog``, ``depth``, ``diverging``, ``step_size``). NUTS
        has no accept/reject step, so ``info.accepted`` is all ``True`` (``False`` for
        chains whose step size, an array under ``compile``, is invalid: NaN, inf or not
        positive).

    Raises:
        TypeError: a selected choice is discrete.
        ValueError: bad ``step_size``, ``mass`` or ``max_depth``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 1.0) @ "x"
        >>> tr = m.simulate((), key=mx.random.key(0))
        >>> tr2, info = nuts(tr, select("x"), key=mx.random.key(1), step_size=0.5)
        >>> info.accepted.shape, tr2.batch_shape, int(info.depth) >= 1
        ((), (), True)
    """
    return _nuts_step(
        trace, selection, key=key, step_size=step_size, max_depth=max_depth, mass=mass
    )


nuts_info = deprecated_alias(nuts, "genmlx.infer.nuts_info", "genmlx.infer.nuts")


def _one_step_accept(
    vg: Any, inputs: tuple[mx.array, ...], state: NUTSState, metric: Metric, compiled: bool
) -> Any:
    """``(eps [C], key) -> accept [C]`` of one leapfrog step with a fresh momentum."""
    marr = tuple(metric.arrays)

    def f(
        eps: mx.array,
        key: mx.array,
        x: mx.array,
        ld: mx.array,
        g: mx.array,
        arrays: tuple[mx.array, ...],
        inp: tuple[mx.array, ...],
    ) -> mx.array:
        p = metric.momentum(mx.random.normal(x.shape, key=key), arrays)
        h0 = -ld + metric.kinetic(p, arrays)
        _, p1, ld1, _ = leapfrog(vg, inp, metric, arrays, x, p, g, eps)
        h1 = -ld1 + metric.kinetic(p1, arrays)
        d = h0 - h1
        return mx.exp(mx.minimum(mx.where(mx.isnan(d), -mx.inf, d), 0.0))

    fn = compile_function(f) if compiled else f

    def call(eps: mx.array, key: mx.array) -> mx.array:
        return fn(eps, key, state.position, state.logdensity, state.grad, marr, inputs)

    return call


def nuts_warmup_state(
    state: NUTSState,
    vg: Any,
    inputs: tuple[mx.array, ...],
    n_steps: int,
    *,
    key: mx.array,
    target_accept: float = 0.8,
    step_size: float | mx.array = 0.1,
    max_depth: int = 10,
    adapt_mass: bool = True,
    dense_mass: bool = False,
    per_chain: bool = True,
    find_step: bool = True,
    init_buffer: int = 75,
    term_buffer: int = 50,
    base_window: int = 25,
    compiled: bool = True,
    callback: Any = None,
) -> tuple[NUTSState, mx.array, Metric]:
    """Stan's NUTS warm-up on vectors: ``(state, step_size [C], metric)``.

    Used by :func:`nuts_warmup` and the MCMC driver; see :mod:`genmlx.infer.adaptation`
    for the algorithm. ``callback(t)`` is called after every transition (progress).
    """
    c, d = state.position.shape
    eps = mx.broadcast_to(mx.array(step_size, dtype=mx.float32), (c,))
    metric = Metric.create(None, d)
    if adapt_mass:
        eye = mx.eye(d, dtype=mx.float32)
        m0 = mx.broadcast_to(eye, (c, d, d)) if per_chain else eye
        if not dense_mass:
            m0 = mx.ones((c, d) if per_chain else (d,), dtype=mx.float32)
        metric = Metric.create(m0, d, "nuts_warmup", n_chains=c if per_chain else None)
    first_slow, end_list = windows(n_steps, init_buffer, term_buffer, base_window)
    ends = set(end_list) if adapt_mass else set()

    def heuristic(eps0: mx.array, k: mx.array) -> mx.array:
        return find_step_size(
            _one_step_accept(vg, inputs, state, metric, compiled), eps0, k, per_chain=per_chain
        )

    if find_step:
        key, sub = mx.random.split(key)
        eps = heuristic(eps, sub)
    da = DualAveraging.start(eps if per_chain else mx.mean(eps))
    window: list[mx.array] = []
    for t in range(n_steps):
        key, sub = mx.random.split(key)
        step = da.step_size if per_chain else mx.broadcast_to(da.step_size, (c,))
        state, info = nuts_transition(
            state,
            vg,
            inputs,
            key=sub,
            step_size=step,
            metric=metric,
            max_depth=max_depth,
            compiled=compiled,
        )
        acc = info.accept_prob if per_chain else mx.mean(info.accept_prob)
        da = da.update(acc, target_accept)
        if adapt_mass and t >= first_slow:
            window.append(state.position)
        if t + 1 in ends:
            draws = mx.stack(window, axis=1)  # [C, n, d]
            m = estimate_mass(draws, dense=dense_mass, per_chain=per_chain)
            metric = Metric.create(m, d, "nuts_warmup", n_chains=c if per_chain else None)
            window = []
            eps_now = da.step_size if per_chain else mx.broadcast_to(da.step_size, (c,))
            if find_step:
                key, sub = mx.random.split(key)
                eps_now = heuristic(eps_now, sub)
            da = DualAveraging.start(eps_now if per_chain else mx.mean(eps_now))
        mx.eval(state.position, da.log_eps_bar, da.h_bar)
        if callback is not None:
            callback(t)
    final = da.final_step_size
    final = final if per_chain else mx.broadcast_to(final, (c,))
    return state, final.astype(mx.float32), metric


def nuts_warmup(
    trace: Trace,
    selection: Selection,
    n_steps: int,
    *,
    key: Any = None,
    target_accept: float = 0.8,
    step_size: float = 0.1,
    max_depth: int = 10,
    adapt_mass: bool = True,
    dense_mass: bool = False,
    per_chain: bool = False,
    find_step_size: bool = True,
    init_buffer: int = 75,
    term_buffer: int = 50,
    base_window: int = 25,
    group: Any = None,
    pool: bool = True,
    exact: bool = True,
) -> NutsWarmup:
    """Stan's NUTS warm-up: dual-averaging step size and windowed mass adaptation.

    Runs ``n_steps`` NUTS transitions (dynamic termination), adapting the step size to
    the target acceptance statistic and, at the end of each of Stan's slow windows, the
    mass matrix to the window's draws (see :mod:`genmlx.infer.adaptation`). With
    ``per_chain`` every chain of a batched trace adapts its own step size and mass;
    otherwise (the default here, kept for compatibility) the acceptance statistic is
    averaged and the draws pooled over chains. Stan's step-size heuristic runs at the
    start and after each mass update when ``find_step_size``.

    Args:
        trace: single or batched trace (the chains' initial states).
        selection: the continuous choices to sample.
        n_steps: number of warm-up transitions.
        key: PRNG key.
        target_accept: target ``δ`` of the mean acceptance statistic.
        step_size: initial step size ``ε₀``.
        max_depth: NUTS maximum tree depth during warm-up.
        adapt_mass: adapt the mass matrix (else keep the identity).
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        per_chain: adapt each chain separately.
        find_step_size: run Stan's step-size heuristic at (re)starts.
        init_buffer: Stan's initial fast buffer (steps).
        term_buffer: Stan's terminal fast buffer (steps).
        base_window: Stan's first slow window (steps).
        group: an ``mx.distributed`` group: ``trace`` holds this process's chains (see
            :func:`genmlx.infer.distributed.mcmc.nuts_warmup`).
        pool: with ``group`` (and not ``per_chain``), pool the adaptation over every
            process's chains.
        exact: with ``group``, run each chain with its global keys (the same numbers for
            any number of processes; see :func:`genmlx.infer.distributed.mcmc.chain`).

    Returns:
        :class:`NutsWarmup` ``(step_size, mass, trace)``: the adapted step size (a
        scalar, or one per chain with ``per_chain``), the mass to pass as
        ``nuts(..., mass=mass)`` and the trace after warm-up.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 3.0) @ "x"
        >>> tr = m.vsimulate((), 50, key=mx.random.key(0))
        >>> w = nuts_warmup(tr, select("x"), 60, key=mx.random.key(1))
        >>> w.mass.shape, w.trace["x"].shape
        ((1,), (50,))
    """
    from genmlx.infer import _sharding

    g = _sharding.group_for(group, "nuts_warmup")
    if g is not None:
        from genmlx.infer.distributed.mcmc import nuts_warmup as sharded

        return sharded(
            trace,
            selection,
            n_steps,
            key=key,
            group=g,
            pool=pool,
            exact=exact,
            per_chain=per_chain,
            target_accept=target_accept,
            step_size=step_size,
            max_depth=max_depth,
            adapt_mass=adapt_mass,
            dense_mass=dense_mass,
            find_step_size=find_step_size,
            init_buffer=init_buffer,
            term_buffer=term_buffer,
            base_window=base_window,
        )
    op = "nuts_warmup"
    checks.trace(trace, op)
    checks.selection(selection, op)
    checks.count(n_steps, "n_steps", op)
    _check_step(step_size, op)
    checks.number(
        target_accept, "target_accept", op, low=0.0, high=1.0, low_open=True, high_open=True
    )
    checks.count(max_depth, "max_depth", op)
    for name, v in (("init_buffer", init_buffer), ("term_buffer", term_buffer)):
        checks.count(v, name, op, minimum=0)
    checks.count(base_window, "base_window", op)
    key = checks.key(key, op)
    t = target(trace, selection, "nuts_warmup")
    ld, g = (
        t.vg(t.position, *t.inputs) if not t.compiled else _vg_compiled(t)(t.position, *t.inputs)
    )
    state = NUTSState(t.position, ld, g)
    state, eps, metric = nuts_warmup_state(
        state,
        t.vg,
        t.inputs,
        n_steps,
        key=key,
        target_accept=target_accept,
        step_size=step_size,
        max_depth=max_depth,
        adapt_mass=adapt_mass,
        dense_mass=dense_mass,
        per_chain=per_chain and t.batched,
        find_step=find_step_size,
        init_buffer=init_buffer,
        term_buffer=term_buffer,
        base_window=base_window,
        compiled=t.compiled,
    )
    tr = t.to_trace(state.position, mx.any(state.position != t.position, axis=-1))
    d = t.dim
    if metric.kind == "identity":
        mass = mx.eye(d, dtype=mx.float32) if dense_mass else mx.ones((d,), dtype=mx.float32)
    elif metric.kind == "diag":
        mass = metric.arrays[0] * metric.arrays[0]
    else:
        chol = metric.arrays[0]
        mass = chol @ mx.swapaxes(chol, -1, -2)
    step = eps if (per_chain and t.batched) else eps[0]
    return NutsWarmup(step, mass, tr)
