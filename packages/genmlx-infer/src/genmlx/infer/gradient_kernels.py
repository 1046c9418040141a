"""Gradient-based MCMC kernels (MALA, HMC) and MAP optimisation.

All three work on the *selected continuous choices* of a trace. The selected leaves are
flattened into one vector ``x`` per chain (shape ``batch_shape + (d,)``); the target is
``log π(x) = log p(x, rest; args)``, the model's joint log density with the unselected
choices held fixed, evaluated through ``trace.gen_fn.assess`` and differentiated with
``mx.grad``. For a batched trace the chains' log densities are independent, so the
gradient of their *sum* is the per-chain gradient; every chain is accepted or rejected
on its own with ``accept_reject`` (``genmlx.infer._traces``).

:func:`map_optimize` works in unconstrained space instead: each selected choice is
mapped from the domain its distribution declares (see its docstring).

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

from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core import runtime
from genmlx.core.address import Path
from genmlx.core.choicemap import ChoiceMap
from genmlx.core.compile import compile_function
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.infer import _checks as checks
from genmlx.infer.integrators import Metric, leapfrog
from genmlx.infer.kernel_info import HMCInfo, MALAInfo
from genmlx.infer.nuts_tree import chain_normal, chain_uniform
from genmlx.infer.targets import chain_keys, flatten_selected, target

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
    x, paths, shapes, rest = flatten_selected(trace, selection, op)
    return _Flat(x, paths, shapes, rest, tuple(trace.batch_shape))


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
    domains: Any = None,
) -> Trace:
    """Maximise ``log π`` over the selected continuous choices (MAP estimate).

    The optimisation runs in unconstrained space: each selected choice is written
    ``x = T(y)`` with the bijector of the domain its distribution declares at that
    execution (:func:`genmlx.core.bijectors.biject_to`; a bound given by another
    choice follows it), and ``log p(T(y))`` — *without* the log-Jacobian, so the
    optimum is the mode of the density of ``x`` itself, as in Stan's optimiser — is
    maximised over ``y``. A positive or bounded choice can therefore never be stepped
    out of its support. Choices whose domain is unknown (no ``Distribution.domain``,
    or made inside a combinator without an entry in ``domains``) are optimised on the
    real line.

    Gradient ascent ``y ← y + t ∇`` with a backtracking (Armijo) line search per chain:
    start from ``t`` (``step_size`` at first, then twice the last accepted step), halve
    it until ``log π(y + t g) ≥ log π(y) + ½ t |g|²`` (Armijo) or, where float32 cannot
    resolve that increase, until the step is still uphill (``∇log π(y + t g)·g ≥ 0``) and
    ``log π`` not measurably lower. A chain whose line search fails keeps its point and
    its step is reset. Iteration stops after ``max_steps`` or once every chain's
    gradient and last move are below ``tol`` (max-norm, unconstrained coordinates).
    Batched traces optimise every chain at once.

    The stopping rule reads array values (``.item()``), so this function is an
    optimiser to call eagerly, not a kernel to ``compile``.

    Args:
        trace: single or batched trace.
        selection: the continuous choices to optimise.
        max_steps: maximum number of gradient steps.
        step_size: the first trial step ``t``.
        tol: convergence tolerance on ``max |∇log π|`` and ``max |Δy|``.
        key: unused (the optimiser is deterministic); accepted for a uniform
            signature.
        max_backtracks: maximum halvings of ``t`` per step.
        domains: per-address domains (a :mod:`genmlx.core.constraints` domain, a
            name such as ``"positive"``, or ``(low, high)``) overriding the
            distributions' own; needed for choices inside combinators.

    Returns:
        The trace at the optimum (made by ``update``).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap, select
        >>> from genmlx.dists import normal, gamma
        >>> @gen
        ... def m():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     normal(mu, 1.0) @ "y"
        >>> tr, _ = m.generate((), choicemap({"y": 2.0}), key=mx.random.key(0))
        >>> round(float(map_optimize(tr, select("mu"))["mu"]), 4)
        1.0
        >>> @gen
        ... def rate():
        ...     lam = gamma(3.0, 1.0) @ "lam"     # mode of Gamma(3, 1): 2
        >>> tr = rate.simulate((), key=mx.random.key(1))
        >>> round(float(map_optimize(tr, select("lam"), max_steps=200)["lam"]), 3)
        2.0
    """
    del key
    checks.trace(trace, "map_optimize")
    checks.selection(selection, "map_optimize")
    checks.count(max_steps, "max_steps", "map_optimize")
    checks.count(max_backtracks, "max_backtracks", "map_optimize")
    checks.number(step_size, "step_size", "map_optimize", low=0.0, low_open=True, high_open=True)
    checks.number(tol, "tol", "map_optimize", low=0.0, high_open=True)
    t_ = _map_target(trace, selection, domains or {}, "map_optimize")
    vg, inputs, y = t_.vg, t_.inputs, t_.y
    ld, g = vg(y, *inputs)
    batch = (y.shape[0],)
    t = mx.full(batch, step_size, dtype=mx.float32)
    for _ in range(max_steps):
        gg = mx.sum(g * g, axis=-1)
        slack = 4.0 * _F32_EPS * mx.abs(ld)
        done = mx.zeros(batch, dtype=mx.bool_)
        y_new, ld_new, g_new, trial = y, ld, g, t
        for _ in range(max_backtracks):
            cand = y + trial[..., None] * g
            ld_c, g_c = vg(cand, *inputs)
            armijo = ld_c >= ld + 0.5 * trial * gg
            # near the optimum log π changes below float32 resolution: accept a step
            # that is still uphill along g and not measurably worse
            uphill = mx.logical_and(mx.sum(g_c * g, axis=-1) >= 0, ld_c >= ld - slack)
            ok = mx.logical_and(mx.logical_not(done), mx.logical_or(armijo, uphill))
            y_new = mx.where(ok[..., None], cand, y_new)
            g_new = mx.where(ok[..., None], g_c, g_new)
            ld_new = mx.where(ok, ld_c, ld_new)
            done = mx.logical_or(done, ok)
            if bool(mx.all(done).item()):
                break
            trial = mx.where(done, trial, 0.5 * trial)
        t = mx.where(done, 2.0 * trial, mx.full(batch, step_size, dtype=mx.float32))
        moved = mx.max(mx.abs(y_new - y))
        y, ld, g = y_new, ld_new, g_new
        converged = mx.logical_or(mx.max(mx.abs(g)) < tol, moved < tol)
        if bool(converged.item()):
            break
    return t_.to_trace(y)


class _MapTarget(NamedTuple):
    vg: Callable[..., tuple[mx.array, mx.array]]
    inputs: tuple[mx.array, ...]
    y: mx.array  # [C, d]
    to_trace: Callable[[mx.array], Trace]


def _map_target(trace: Trace, selection: Selection, domains: Any, op: str) -> _MapTarget:
    """The selected choices of ``trace`` in unconstrained space (no Jacobian), with
    every unselected choice held at its value in each chain."""
    from genmlx.core.address import to_path
    from genmlx.core.tree import flatten, unflatten
    from genmlx.infer._unconstrained import Space
    from genmlx.infer._vi_sites import find_sites

    if not isinstance(selection, Selection):
        raise TypeError(
            f"{op}: selection must be a Selection (e.g. select('x')), got "
            f"{type(selection).__name__}"
        )
    if len(trace.batch_shape) > 1:
        raise ValueError(f"{op}: traces with more than one batch axis are not supported")
    flat = _flatten_selected(trace, selection, op)  # checks: non-empty, continuous
    choices = trace.get_choices()
    batched = bool(trace.batch_shape)
    one = choices.map(lambda v: v[0]).with_batch_shape(()) if batched else choices
    sel = set(flat.paths)
    sites = [
        s._replace(observed=s.path not in sel)
        for s in find_sites(trace.gen_fn, trace.args, one, mx.random.key(0), op)
    ]
    rest_one = one.exclude(selection)
    overrides = {to_path(a): d for a, d in dict(domains).items()}
    space = Space.from_sites(
        trace.gen_fn, trace.args, rest_one, sites, overrides, op, unknown=C.real
    )
    rest = flat.rest
    rest_leaves, _ = flatten(rest.with_batch_shape(()) if batched else rest)
    _, rest_td = flatten(rest_one)
    if not batched:
        rest_leaves = [v[None] for v in rest_leaves]
    n_obs = len(rest_leaves)

    def logp(y: mx.array, *obs_leaves: mx.array) -> mx.array:
        return space.logp(y, jacobian=False, obs=unflatten(rest_td, list(obs_leaves)))

    def fwd(y: mx.array, *obs_leaves: mx.array) -> list[mx.array]:
        return space.forward(y, obs=unflatten(rest_td, list(obs_leaves)))

    def inv(*a: mx.array) -> mx.array:
        vals, obs_leaves = list(a[: len(space.blocks)]), a[len(space.blocks) :]
        return space.inverse(vals, obs=unflatten(rest_td, list(obs_leaves)))

    vg = compile_function(Space.batched(mx.value_and_grad(logp)))

    values = []
    for b in space.blocks:
        v = choices[b.path if len(b.path) != 1 else b.path[0]]
        values.append(v if batched else v[None])
    y0 = Space.batched(inv)(*values, *rest_leaves) if n_obs or values else None
    assert y0 is not None

    def to_trace(y: mx.array) -> Trace:
        xs = Space.batched(fwd)(y, *rest_leaves)
        if batched:
            cm = space.to_choicemap(xs, tuple(trace.batch_shape))
        else:
            cm = space.to_choicemap([x[0] for x in xs])
        return trace.gen_fn.update(trace, cm).trace

    return _MapTarget(vg, tuple(rest_leaves), y0, to_trace)
