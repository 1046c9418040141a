"""Gradient-based MCMC kernels (MALA, HMC) and MAP optimisation.

All three work on the *selected continuous choices* of a trace. The selected leaves are
flattened into one vector ``x`` per chain (shape ``batch_shape + (d,)``); the target is
``log π(x) = log p(x, rest; args)``, the model's joint log density with the unselected
choices held fixed, evaluated through ``trace.gen_fn.assess`` and differentiated with
``mx.grad``. For a batched trace the chains' log densities are independent, so the
gradient of their *sum* is the per-chain gradient; every chain is accepted or rejected
on its own with ``accept_reject`` (``genmlx.infer._traces``).

The trace is moved with ``gen_fn.update(trace, new_values)``, whose weight is
``log π(x') - log π(x)``. The kernels contain no ``.item()``/``bool(array)`` on their
path, so a chain of K steps can be wrapped in :func:`genmlx.core.compile`
(:func:`map_optimize` is an optimiser with a data-dependent stopping rule and is not
meant to be compiled).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, select
    >>> from genmlx.dists import normal
    >>> from genmlx.infer.gradient_kernels import hmc
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 1.0) @ "y"
    >>> tr, _ = model.vgenerate((), choicemap({"y": 1.0}), 100, key=mx.random.key(0))
    >>> tr2, info = hmc(tr, select("mu"), step_size=0.3, n_leapfrog=5, key=mx.random.key(1))
    >>> tr2["mu"].shape, info.accepted.shape, info.diverging.shape
    ((100,), (100,), (100,))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.compile import compile_function
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.infer import _checks as checks
from genmlx.infer.integrators import Metric, leapfrog
from genmlx.infer.kernel_info import HMCInfo, MALAInfo
from genmlx.infer.nuts_tree import chain_normal, chain_uniform
from genmlx.infer.targets import chain_keys, target

__all__ = ["hmc", "mala", "map_optimize"]

_F32_EPS = 1.1920929e-07
_DIVERGENCE = 1000.0  # an energy error above this is a divergence (Stan's and NumPyro's)


class _Flat(NamedTuple):
    """The selected choices of a trace as one vector per chain, and how to undo it."""

    x: mx.array  # batch_shape + (d,)
    paths: list[Path]
    shapes: list[tuple[int, ...]]  # per-leaf event shapes (without batch)
    rest: ChoiceMap
    batch: tuple[int, ...]


def _flatten_selected(trace: Trace, selection: Selection, op: str) -> _Flat:
    choices = trace.get_choices()
    selected = choices.filter(selection)
    leaves = list(selected.leaves())
    if not leaves:
        raise ValueError(f"{op}: the selection picks no choices of the trace")
    batch = tuple(trace.batch_shape)
    nb = len(batch)
    parts, paths, shapes = [], [], []
    for p, v in leaves:
        if not mx.issubdtype(v.dtype, mx.floating):
            raise TypeError(
                f"{op}: the choice at {format_address(p)} has dtype {v.dtype}; gradient "
                "kernels need continuous (floating-point) choices — deselect it"
            )
        shape = tuple(v.shape[nb:])
        paths.append(p)
        shapes.append(shape)
        parts.append(v.reshape((*batch, math.prod(shape))).astype(mx.float32))
    x = parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=-1)
    return _Flat(x, paths, shapes, choices.exclude(selection), batch)


def _unflatten(flat: _Flat, x: mx.array) -> ChoiceMap:
    """The selected choices with values from ``x``, as a (batched) choice map."""
    out = ChoiceMap(None, None, flat.batch)
    start = 0
    for p, shape in zip(flat.paths, flat.shapes):
        size = math.prod(shape)
        v = x[..., start : start + size].reshape(flat.batch + shape)
        start += size
        out = out.set_submap(p, ChoiceMap(v))
    return out


def _logp_fn(trace: Trace, flat: _Flat) -> Callable[[mx.array], tuple[mx.array, mx.array]]:
    """``x ↦ (Σ_chains log π(x), log π(x) per chain)``."""
    gf, args = trace.gen_fn, trace.args

    def logp(x: mx.array) -> tuple[mx.array, mx.array]:
        cm = flat.rest.merge(_unflatten(flat, x)).with_batch_shape(flat.batch)
        ld, _ = gf.assess(args, cm)
        return mx.sum(ld), ld

    return logp


def _value_and_grad(
    logp: Callable[[mx.array], tuple[mx.array, mx.array]], x: mx.array
) -> tuple[mx.array, mx.array]:
    """Per-chain ``(log π(x), ∇ log π(x))``."""
    with runtime.transforming():
        (_, ld), g = mx.value_and_grad(logp)(x)
    return ld, g


def _move(trace: Trace, flat: _Flat, x_new: mx.array) -> tuple[Trace, mx.array]:
    """``update`` the trace to ``x_new``: ``(new_trace, log π(x_new) - log π(x))``."""
    res = trace.gen_fn.update(trace, _unflatten(flat, x_new))
    return res.trace, res.weight


def _validate(step_size: Any, op: str, n_leapfrog: int | None = None) -> None:
    if runtime.in_transform():
        return
    a = mx.array(step_size, dtype=mx.float32)
    if not bool(mx.all(mx.logical_and(mx.isfinite(a), a > 0)).item()):
        raise ValueError(f"{op}: step_size must be finite and positive, got {step_size!r}")
    if n_leapfrog is not None and (
        not isinstance(n_leapfrog, int) or isinstance(n_leapfrog, bool) or n_leapfrog < 1
    ):
        raise ValueError(f"{op}: n_leapfrog must be an int of at least 1, got {n_leapfrog!r}")


_PROGRAMS: dict[Any, Any] = {}


def _program(
    key: Any, build: Callable[[], Callable[..., Any]], compiled: bool
) -> Callable[..., Any]:
    """A kernel step, compiled once per target function and static configuration."""
    if not compiled or runtime.in_transform():
        return build()
    fn = _PROGRAMS.get(key)
    if fn is None or fn[0] is not key[1]:
        if len(_PROGRAMS) > 256:
            _PROGRAMS.clear()
        fn = _PROGRAMS[key] = (key[1], compile_function(build()))
    return fn[1]


def _mala_step(vg: Callable[..., Any]) -> Callable[..., Any]:
    def step(keys: mx.array, y: mx.array, eps: mx.array, inputs: tuple[mx.array, ...]) -> Any:
        ks = mx.vmap(lambda k: mx.random.split(k, 2))(keys)
        k_noise, k_acc = ks[:, 0], ks[:, 1]
        e = eps[..., None] if eps.ndim else eps
        ld, g = vg(y, *inputs)
        y_new = y + 0.5 * e * e * g + e * chain_normal(k_noise, y.shape[1])
        ld_new, g_new = vg(y_new, *inputs)
        fwd = mx.sum(mx.square(y_new - y - 0.5 * e * e * g), axis=-1)
        bwd = mx.sum(mx.square(y - y_new - 0.5 * e * e * g_new), axis=-1)
        ee = eps * eps
        log_alpha = ld_new - ld + (fwd - bwd) / (2.0 * ee)
        u = chain_uniform(k_acc)
        safe = mx.where(mx.isnan(log_alpha), -mx.inf, log_alpha)
        acc = mx.log(u) < safe
        return mx.where(acc[:, None], y_new, y), acc, mx.exp(mx.minimum(safe, 0.0))

    return step


def mala(
    trace: Trace, selection: Selection, *, step_size: float = 0.1, key: Any = None
) -> tuple[Trace, MALAInfo]:
    """Metropolis-adjusted Langevin step on the selected continuous choices.

    Proposal ``x' = x + (ε²/2) ∇log π(x) + ε ξ`` with ``ξ ~ N(0, I)``, i.e.
    ``q(x' | x) = N(x'; x + (ε²/2)∇log π(x), ε² I)``, accepted with probability
    ``min(1, π(x') q(x | x') / (π(x) q(x' | x)))``. On a static model ``x`` is the
    unconstrained vector of the selected choices and ``π`` includes the log-Jacobian
    (see :mod:`genmlx.infer.targets`); the step is one compiled program.

    Args:
        trace: a single or batched trace (batched: one chain per particle).
        selection: the continuous choices to move.
        step_size: ``ε > 0`` (a scalar or one per chain).
        key: PRNG key (``None``: a fresh one).

    Returns:
        ``(new_trace, info)``: a :class:`~genmlx.infer.kernel_info.MALAInfo`
        (``accepted``, ``accept_prob``, ``step_size``, each with the trace's batch shape).

    Raises:
        TypeError: a selected choice is not floating point.
        ValueError: ``step_size`` is not finite and positive.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 1.0) @ "x"
        >>> tr = m.simulate((), key=mx.random.key(0))
        >>> tr2, info = mala(tr, select("x"), step_size=0.5, key=mx.random.key(1))
        >>> info.accepted.shape, float(info.step_size)
        ((), 0.5)
    """
    checks.trace(trace, "mala")
    checks.selection(selection, "mala")
    eps_checked = checks.positive_scalar(step_size, "step_size", "mala", tuple(trace.batch_shape))
    _validate(eps_checked, "mala")
    key = checks.key(key, "mala")
    t = target(trace, selection, "mala")
    c = t.position.shape[0]
    eps = mx.broadcast_to(eps_checked, (c,))
    fn = _program(("mala", t.vg), lambda: _mala_step(t.vg), t.compiled)
    y_new, acc, prob = fn(chain_keys(key, c, t.batched), t.position, eps, t.inputs)
    new = t.to_trace(y_new, acc)
    info = MALAInfo(acc, prob, eps)
    return new, (info if t.batched else MALAInfo(*(a[0] for a in info)))


def _hmc_step(vg: Callable[..., Any], metric: Metric, n_leapfrog: int) -> Callable[..., Any]:
    def step(
        keys: mx.array,
        y: mx.array,
        eps: mx.array,
        marr: tuple[mx.array, ...],
        inputs: tuple[mx.array, ...],
    ) -> Any:
        ks = mx.vmap(lambda k: mx.random.split(k, 2))(keys)
        k_mom, k_acc = ks[:, 0], ks[:, 1]
        p0 = metric.momentum(chain_normal(k_mom, y.shape[1]), marr)
        ld0, g = vg(y, *inputs)
        x, p, ld = y, p0, ld0
        for _ in range(n_leapfrog):
            x, p, ld, g = leapfrog(vg, inputs, metric, marr, x, p, g, eps)
        log_alpha = ld - ld0 - metric.kinetic(p, marr) + metric.kinetic(p0, marr)
        u = chain_uniform(k_acc)
        safe = mx.where(mx.isnan(log_alpha), -mx.inf, log_alpha)
        acc = mx.log(u) < safe
        diverging = mx.logical_or(mx.isnan(log_alpha), log_alpha < -_DIVERGENCE)
        return mx.where(acc[:, None], x, y), acc, mx.exp(mx.minimum(safe, 0.0)), diverging

    return step


def hmc(
    trace: Trace,
    selection: Selection,
    *,
    step_size: float = 0.1,
    n_leapfrog: int = 10,
    key: Any = None,
    mass: mx.array | None = None,
) -> tuple[Trace, HMCInfo]:
    """Hamiltonian Monte Carlo step on the selected continuous choices.

    Momentum ``p ~ N(0, M)``, kinetic energy ``K(p) = ½ pᵀ M⁻¹ p``; ``n_leapfrog``
    leapfrog steps of size ``ε`` on ``H(x, p) = -log π(x) + K(p)``::

        p ← p + (ε/2) ∇log π(x);  x ← x + ε M⁻¹ p;  p ← p + (ε/2) ∇log π(x)

    then ``log α = log π(x') - log π(x) - K(p') + K(p)``. The defaults are Gen.jl's
    (``L = 10``, ``ε = 0.1``). On a static model ``x`` is the unconstrained vector of
    the selected choices and ``π`` includes the log-Jacobian; the whole step is one
    compiled program.

    Args:
        trace: a single or batched trace.
        selection: the continuous choices to move (flattened, in choice-map order, into
            a vector of length ``d``).
        step_size: ``ε > 0`` (default 0.1, Gen.jl's ``eps``; a scalar or one per chain).
        n_leapfrog: number of leapfrog steps ``L ≥ 1`` (default 10, Gen.jl's ``L``).
        key: PRNG key (``None``: a fresh one).
        mass: ``None`` (identity), a vector ``[d]`` (diagonal mass) or a symmetric
            positive definite matrix ``[d, d]`` (dense mass); per chain with a leading
            chain axis.

    Returns:
        ``(new_trace, info)``: an :class:`~genmlx.infer.kernel_info.HMCInfo`
        (``accepted``, ``accept_prob``, ``diverging`` — an energy error above 1000 —,
        ``step_size``, ``n_leapfrog``, each with the trace's batch shape).

    Raises:
        TypeError: a selected choice is not floating point.
        ValueError: ``mass`` has the wrong shape or is not positive definite,
            ``n_leapfrog < 1``, or ``step_size`` is not finite and positive.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     normal(0.0, 1.0) @ "x"
        >>> tr = m.vsimulate((), 10, key=mx.random.key(0))
        >>> tr2, info = hmc(tr, select("x"), step_size=0.2, n_leapfrog=10,
        ...                key=mx.random.key(1), mass=mx.array([2.0]))
        >>> tr2["x"].shape
        (10,)
    """
    checks.trace(trace, "hmc")
    checks.selection(selection, "hmc")
    eps_checked = checks.positive_scalar(step_size, "step_size", "hmc", tuple(trace.batch_shape))
    _validate(eps_checked, "hmc", n_leapfrog)
    if not isinstance(n_leapfrog, int) or n_leapfrog < 1:
        raise ValueError(f"hmc: n_leapfrog must be at least 1, got {n_leapfrog}")
    key = checks.key(key, "hmc")
    t = target(trace, selection, "hmc")
    c = t.position.shape[0]
    metric = Metric.create(
        mass, t.dim, "hmc", n_chains=c if t.batched else None, validate=not runtime.in_transform()
    )
    eps = mx.broadcast_to(eps_checked, (c,))
    fn = _program(
        ("hmc", t.vg, metric.kind, n_leapfrog),
        lambda: _hmc_step(t.vg, metric, n_leapfrog),
        t.compiled,
    )
    y_new, acc, prob, div = fn(
        chain_keys(key, c, t.batched), t.position, eps, tuple(metric.arrays), t.inputs
    )
    new = t.to_trace(y_new, acc)
    info = HMCInfo(acc, prob, div, eps, mx.full((c,), n_leapfrog, dtype=mx.int32))
    return new, (info if t.batched else HMCInfo(*(a[0] for a in info)))


def map_optimize(
    trace: Trace,
    selection: Selection,
    *,
    max_steps: int = 100,
    step_size: float = 0.1,
    tol: float = 1e-6,
    key: mx.array | None = None,
    max_backtracks: int = 30,
) -> Trace:
    """Maximise ``log π`` over the selected continuous choices (MAP estimate).

    Gradient ascent ``x ← x + t ∇log π(x)`` with a backtracking (Armijo) line search
    per chain: start from ``t`` (``step_size`` at first, then twice the last accepted
    step), halve it until ``log π(x + t g) ≥ log π(x) + ½ t |g|²`` (Armijo) or, where
    float32 cannot resolve that increase, until the step is still uphill
    (``∇log π(x + t g)·g ≥ 0``) and ``log π`` not measurably lower. A chain whose line
    search fails keeps its point and its step is reset. Iteration stops after
    ``max_steps`` or once every chain's gradient and last move are below ``tol``
    (max-norm). Batched traces optimise every chain at once.

    The stopping rule reads array values (``.item()``), so this function is an
    optimiser to call eagerly, not a kernel to ``compile``.

    Args:
        trace: single or batched trace.
        selection: the continuous choices to optimise.
        max_steps: maximum number of gradient steps.
        step_size: the first trial step ``t``.
        tol: convergence tolerance on ``max |∇log π|`` and ``max |Δx|``.
        key: unused (the optimiser is deterministic); accepted for a uniform
            signature.
        max_backtracks: maximum halvings of ``t`` per step.

    Returns:
        The trace at the optimum (made by ``update``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap, select
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> tr, _ = m.generate((), choicemap({"y": 2.0}), key=mx.random.key(0))
        >>> round(float(map_optimize(tr, select("mu"))["mu"]), 4)
        1.0
    """
    del key
    checks.trace(trace, "map_optimize")
    checks.selection(selection, "map_optimize")
    checks.count(max_steps, "max_steps", "map_optimize")
    checks.count(max_backtracks, "max_backtracks", "map_optimize")
    checks.number(step_size, "step_size", "map_optimize", low=0.0, low_open=True, high_open=True)
    checks.number(tol, "tol", "map_optimize", low=0.0, high_open=True)
    flat = _flatten_selected(trace, selection, "map_optimize")
    logp = _logp_fn(trace, flat)
    x = flat.x
    ld, g = _value_and_grad(logp, x)
    t = mx.full(flat.batch, step_size, dtype=mx.float32)
    for _ in range(max_steps):
        gg = mx.sum(g * g, axis=-1)
        slack = 4.0 * _F32_EPS * mx.abs(ld)
        done = mx.zeros(flat.batch, dtype=mx.bool_)
        x_new, ld_new, g_new, trial = x, ld, g, t
        for _ in range(max_backtracks):
            cand = x + trial[..., None] * g
            ld_c, g_c = _value_and_grad(logp, cand)
            armijo = ld_c >= ld + 0.5 * trial * gg
            # near the optimum log π changes below float32 resolution: accept a step
            # that is still uphill along g and not measurably worse
            uphill = mx.logical_and(mx.sum(g_c * g, axis=-1) >= 0, ld_c >= ld - slack)
            ok = mx.logical_and(mx.logical_not(done), mx.logical_or(armijo, uphill))
            x_new = mx.where(ok[..., None], cand, x_new)
            g_new = mx.where(ok[..., None], g_c, g_new)
            ld_new = mx.where(ok, ld_c, ld_new)
            done = mx.logical_or(done, ok)
            if bool(mx.all(done).item()):
                break
            trial = mx.where(done, trial, 0.5 * trial)
        t = mx.where(done, 2.0 * trial, mx.full(flat.batch, step_size, dtype=mx.float32))
        moved = mx.max(mx.abs(x_new - x))
        x, ld, g = x_new, ld_new, g_new
        converged = mx.logical_or(mx.max(mx.abs(g)) < tol, moved < tol)
        if bool(converged.item()):
            break
    return _move(trace, flat, x)[0]
