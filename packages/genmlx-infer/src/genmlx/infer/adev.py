"""ADEV: automatic differentiation of expected values (Lew, Huot, Staton, Mansinghka,
POPL 2023), and programmable variational objectives built on it.

An :class:`Expectation` wraps a *program*: a ``@gen`` function or a plain Python
function whose random choices are written ``dist(*params) @ addr``, returning a real
number ``f``. For arguments (and trainable parameters) ``θ`` it estimates

.. math::

    E(θ) = \\mathbb{E}_{x \\sim p_θ}[f(x, θ)]
    \\quad\\text{and}\\quad
    ∇_θ E(θ),

both without bias, by composing one gradient estimator per random choice
(:mod:`genmlx.infer.adev_estimators`): ``reparam`` (pathwise), ``reinforce`` (score
function), ``enum`` (exact enumeration of a finite support) and ``mvd`` (the
measure-valued derivative of a Bernoulli). A choice's estimator is, in order: the one
``estimators={addr: ...}`` names for its address (or an enclosing address), the one its
distribution is bound to (``flip_enum(p) @ "b"``, ``reinforce(normal)(mu, 1.0) @ "x"``),
the expectation's ``default``, else ``reparam`` when the distribution has a
reparameterised sampler and ``reinforce`` otherwise.

Design. ADEV is written in continuation-passing style in the paper; here every
estimator builds a *surrogate*: a scalar whose value is an unbiased estimate of the
expectation of the rest of the program and whose ``mx.grad`` is an unbiased estimate
of its gradient. Linear estimators (``reparam``, ``reinforce``) call the continuation
once, at the value they draw, so the program simply continues and the final result is
multiplied by ``exp(Σℓ - ⊥Σℓ)`` (value 1, gradient ``Σ∇ℓ``; ``ℓ`` is a REINFORCE site's
log density, ``⊥`` stops gradients). Estimators that need the continuation at several
values (``enum``, ``mvd``) get it by *replay*: the program is run again from the start
with every earlier choice replayed (the same values, so the same graph and the same
gradients through them) and the new choice set to each value in turn — all values at
once under ``mx.vmap``; the interrupted run is abandoned. Exact enumeration of ``k``
nested binary choices thus costs ``2^k`` continuation evaluations, as it must.
``N`` samples of the whole estimator run as one ``mx.vmap`` over ``N`` keys, and
``grad`` is ``mx.value_and_grad`` of their mean.

Programs must be pure (they are re-run) and keep Python control flow off random
values (use ``mx.where``): under ``mx.vmap`` a value stands for many samples.

Inside a program, :func:`adev_simulate` runs a generative function with its choices
drawn through ADEV and returns its choices and log density, which is how the
programmable objectives are written: :func:`elbo_objective`,
:func:`iwelbo_objective`, :func:`wake_p_objective`, :func:`wake_q_objective` and
:func:`sleep_q_objective` each return an :class:`Expectation` whose gradient with
respect to a :class:`~genmlx.core.ParamStore` trains a model and/or a guide.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.infer.adev import expectation
    >>> from genmlx.infer.adev_estimators import flip_enum
    >>> def loss(p):
    ...     b = flip_enum(p) @ "b"
    ...     return mx.where(b, 0.0, -p / 2)
    >>> g = expectation(loss).grad(mx.array(0.3), key=mx.random.key(0))
    >>> round(float(g.args[0]), 6)       # d/dp E[...] = p - 1/2
    -0.2
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import interpreter as H
from genmlx.core import runtime
from genmlx.core.address import Address, Path, format_address, to_path
from genmlx.core.batching import vmap_call
from genmlx.core.choicemap import ChoiceMap, choicemap
from genmlx.core.deprecation import renamed_arguments
from genmlx.core.distribution import Distribution
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.errors import GenMLXError
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.params import ParamStore, use_params
from genmlx.core.random import Key, KeyStream, resolve_key
from genmlx.core.selection import Selection, select
from genmlx.core.trace import Trace
from genmlx.infer.adev_estimators import (
    ADEVEstimator,
    ADEVEstimatorError,
    ADEVPrimitive,
    get_estimator,
    magic_box,
    reinforce,
    reparam,
)
from genmlx.infer.optimization import Objective

__all__ = [
    "ADEVSample",
    "Expectation",
    "GradientEstimate",
    "adev_key",
    "adev_simulate",
    "elbo_objective",
    "expectation",
    "iwelbo_objective",
    "sleep_q_objective",
    "wake_p_objective",
    "wake_q_objective",
]

_OP = "adev"

Cons = tuple[Any, ...] | None


# ---------------------------------------------------------------------------- results
class GradientEstimate(NamedTuple):
    """Result of :meth:`Expectation.grad`.

    Attributes:
        value: the estimate of the expectation (the mean over the samples).
        args: one gradient per program argument, ``None`` for arguments that are not
            differentiated (anything but floating-point arrays and Python floats).
        params: ``{name: gradient}`` for every parameter of the ``store`` given.
    """

    value: mx.array
    args: tuple[mx.array | None, ...]
    params: dict[str, mx.array]


class ADEVSample(NamedTuple):
    """What :func:`adev_simulate` returns.

    Attributes:
        choices: the generative function's random choices (a batched choice map with
            ``batch_shape == (n,)`` when ``n`` particles were drawn).
        score: their log density ``log p(choices; args)`` (shape ``[n]`` for ``n``
            particles), differentiable in the parameters and in reparameterised values.
        retval: the return value.
    """

    choices: ChoiceMap
    score: mx.array
    retval: Any


# ---------------------------------------------------------------------------- runtime
class _Branched(BaseException):
    """Ends a run whose continuation a branching estimator has evaluated by replay.

    A BaseException, so that a program's own ``except Exception`` does not catch it.
    """

    def __init__(self, surrogate: mx.array, ell: Any) -> None:
        super().__init__("adev branch")
        self.surrogate = surrogate
        self.ell = ell


class _Ctx(NamedTuple):
    """What is fixed during one run: the program, the replayed prefix, the estimators."""

    fn: Callable[..., Any] | None
    args: tuple[Any, ...]
    name: str
    key: mx.array
    prefix: tuple[Any, ...]
    table: Mapping[Path, ADEVEstimator]
    default: ADEVEstimator | None
    linear_only: bool


class _State(NamedTuple):
    """The handler state of a run (immutable; the active Run cell holds the latest)."""

    ctx: _Ctx
    keys: KeyStream
    pos: int  # the index of the next site (choices, opaque calls, keys, particle sets)
    ell: Any  # Σ ℓ of the linear sites this run drew itself (None: none)
    values: Cons  # the value of every site so far, newest first
    records: Cons  # (path, choice map node, score, previous): the choices so far
    where: Path  # the address prefix of the @gen body being run


def _add(a: Any, b: mx.array) -> mx.array:
    return b if a is None else a + b


def _materialise(values: Cons) -> tuple[Any, ...]:
    out = []
    while values is not None:
        v, values = values
        out.append(v)
    out.reverse()
    return tuple(out)


def _estimator_for(
    ctx: _Ctx, path: Path, dist: Distribution, bound: ADEVEstimator | None
) -> ADEVEstimator:
    for i in range(len(path), -1, -1):
        est = ctx.table.get(path[:i])
        if est is not None:
            return est
    if bound is not None:
        return bound
    if ctx.default is not None:
        return ctx.default
    return reparam if dist.has_reparam else reinforce


def _site(state: _State, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]) -> Any:
    """The ADEV handler: draw the choice at ``path`` through its estimator."""
    full = (*state.where, *path)
    ctx = state.ctx
    if isinstance(gf, DynamicGenerativeFunction):  # a @gen sub-call runs inline
        st, ret = H.run_body(_OP, gf.name, gf.fn, args, _site, state._replace(where=full))
        return st._replace(where=state.where), ret
    keys, key = state.keys.site()
    pos = state.pos
    replay = pos < len(ctx.prefix)
    ell = state.ell
    if isinstance(gf, Distribution):
        if isinstance(gf, ADEVPrimitive):
            dist, bound = gf.dist, gf.estimator
        else:
            dist, bound = gf, None
        if replay:
            value = ctx.prefix[pos]
        else:
            est = _estimator_for(ctx, full, dist, bound)
            est.check(dist, args, full)
            if est.linear:
                value, e = est.draw(key, dist, args)
                ell = _add(ell, e)
            else:
                if ctx.linear_only:
                    raise ADEVEstimatorError(
                        f"adev: the choice at {format_address(full)} uses {est.name}, which "
                        "needs the rest of the program at several values; "
                        "adev_simulate(..., n_particles=...) "
                        "draws its particles in one vectorised run, so only linear "
                        "estimators (reparam, reinforce) can be used inside it"
                    )
                visited = _materialise(state.values)

                def cont(values: mx.array) -> mx.array:
                    def one(v: mx.array) -> mx.array:
                        return _execute(ctx._replace(prefix=(*visited, v)))

                    with runtime.transforming():
                        out: mx.array = mx.vmap(one)(values)
                    return out

                raise _Branched(est.estimate(key, dist, args, cont), ell)
        score = dist.score(value, args)
        node = ChoiceMap(value)
        site_value, retval = value, value
    else:  # another generative function: the score function of its whole trace
        named = next(
            (ctx.table[full[:i]] for i in range(len(full), -1, -1) if full[:i] in ctx.table),
            reinforce,
        )
        if named is not reinforce and not replay:
            raise ADEVEstimatorError(
                f"adev: the call at {format_address(full)} is a {type(gf).__name__}, whose "
                "choices ADEV cannot see one by one; it is differentiated with reinforce over its "
                f"whole trace, not {named.name} (write it as a @gen function to choose "
                "estimators per choice)"
            )
        if replay:
            node = ctx.prefix[pos]
        else:
            tr = gf.simulate(args, key=key)
            node = tr.get_choices().map(mx.stop_gradient)
        score, retval = gf.assess(args, node)
        if not replay:
            ell = _add(ell, score)
        site_value = node
    new = state._replace(
        keys=keys,
        pos=pos + 1,
        ell=ell,
        values=(site_value, state.values),
        records=(full, node, score, state.records),
    )
    return new, retval


def _scalar(ret: Any, name: str) -> mx.array:
    if not isinstance(ret, mx.array):
        try:
            ret = mx.array(ret, dtype=mx.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"expectation({name}): the program must return a real number, got "
                f"{type(ret).__name__}"
            ) from e
    if ret.ndim != 0:
        raise ValueError(
            f"expectation({name}): the program must return one real number per execution "
            f"(a scalar), but it returned an array of shape {tuple(ret.shape)}; reduce it "
            "(e.g. mx.sum) or make separate expectations"
        )
    return ret if mx.issubdtype(ret.dtype, mx.floating) else ret.astype(mx.float32)


def _fresh_state(ctx: _Ctx) -> _State:
    return _State(ctx, KeyStream.start(ctx.key), 0, None, None, None, ())


def _execute(ctx: _Ctx) -> mx.array:
    """One run of the program: its surrogate (see the module docstring)."""
    assert ctx.fn is not None
    try:
        st, ret = H.run_body(_OP, ctx.name, ctx.fn, ctx.args, _site, _fresh_state(ctx))
        surrogate, ell = _scalar(ret, ctx.name), st.ell
    except _Branched as b:
        surrogate, ell = b.surrogate, b.ell
    if ell is None:
        return surrogate
    out: mx.array = surrogate * magic_box(ell)
    return out


def _active_state(op: str) -> tuple[runtime.Run, _State]:
    run = runtime.active_run()
    if run is None or run.op != _OP or not isinstance(run.state, _State):
        raise GenMLXError(
            f"{op} can only be called inside an ADEV program, i.e. in the body of a "
            "function passed to expectation(...) while it is being estimated"
        )
    return run, run.state


def _collect(records: Cons, mark: Cons, base: Path) -> tuple[ChoiceMap, mx.array]:
    items = []
    score: Any = None
    while records is not None and records is not mark:
        path, node, s, records = records
        items.append((path[len(base) :], node))
        score = s if score is None else score + s
    items.reverse()
    cm = ChoiceMap.from_nodes(items) if items else ChoiceMap.empty()
    return cm, score if score is not None else mx.array(0.0)


@renamed_arguments(n="n_particles")
def adev_simulate(
    gen_fn: GenerativeFunction,
    args: tuple[Any, ...] = (),
    *,
    at: Address | None = None,
    n_particles: int | None = None,
) -> ADEVSample:
    """Run ``gen_fn`` inside an ADEV program, drawing its choices through ADEV.

    Each choice of a ``@gen`` function is a site of the enclosing program, with its own
    estimator (addresses are the function's own, under ``at`` when given); any other
    generative function is one site differentiated by REINFORCE over its whole trace.
    The returned ``score`` is ``log p(choices; args)``: differentiable in the
    parameters and, for reparameterised choices, in the values.

    With ``n_particles=n``, ``n`` independent executions are drawn in one vectorised run
    (their choices carry a leading ``[n]`` axis and ``score`` has shape ``[n]``); their joint
    density is the product, so their REINFORCE terms add. Only linear estimators
    (``reparam``, ``reinforce``) can be used inside such a run.

    Args:
        gen_fn: the generative function (typically a guide).
        args: its arguments.
        at: an address prefix for its choices inside the program (to keep two calls'
            addresses apart in ``estimators=`` and error messages).
        n_particles: draw that many particles at once (``None``: one, unbatched;
            ``n=`` is the deprecated name).

    Returns:
        :class:`ADEVSample` ``(choices, score, retval)``.

    Raises:
        GenMLXError: called outside an ADEV program.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def guide(mu):
        ...     normal(mu, 1.0) @ "z"
        >>> def program(mu):
        ...     q = adev_simulate(guide, (mu,))
        ...     return q.choices["z"] ** 2
        >>> g = expectation(program).grad(mx.array(1.5), key=mx.random.key(0), n_samples=4)
        >>> g.args[0].shape
        ()
    """
    run, state = _active_state("adev_simulate")
    if not isinstance(gen_fn, GenerativeFunction):
        raise TypeError(f"adev_simulate: gen_fn must be a generative function, got {gen_fn!r}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"adev_simulate: args must be a tuple, got {type(args).__name__}")
    args = tuple(args)
    base = (*state.where, *to_path(at)) if at is not None else state.where
    n = n_particles
    if n is None:
        mark = state.records
        if isinstance(gen_fn, DynamicGenerativeFunction):
            st, ret = H.run_body(
                _OP, gen_fn.name, gen_fn.fn, args, _site, state._replace(where=base)
            )
        else:
            st, ret = _site(state._replace(where=base), (), gen_fn, args)
        run.state = st._replace(where=state.where)
        cm, score = _collect(st.records, mark, base)
        return ADEVSample(cm, score, ret)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"adev_simulate: n_particles must be a positive int, got {n!r}")
    return _particles(run, state, gen_fn, args, base, n)


def _particles(
    run: runtime.Run,
    state: _State,
    gen_fn: GenerativeFunction,
    args: tuple[Any, ...],
    base: Path,
    n: int,
) -> ADEVSample:
    ctx = state.ctx
    keys, key = state.keys.site()
    pos = state.pos
    ell = state.ell
    if pos < len(ctx.prefix):
        result: ADEVSample = ctx.prefix[pos]
    else:
        sub = ctx._replace(fn=None, prefix=(), linear_only=True)

        def one(k: mx.array, a: tuple[Any, ...]) -> tuple[Any, ...]:
            st0 = _fresh_state(sub._replace(key=k))._replace(where=base)
            if isinstance(gen_fn, DynamicGenerativeFunction):
                st, ret = H.run_body(_OP, gen_fn.name, gen_fn.fn, a, _site, st0)
            else:
                st, ret = _site(st0, (), gen_fn, a)
            cm, score = _collect(st.records, None, base)
            return cm, score, st.ell if st.ell is not None else mx.array(0.0), ret

        cm, score, ell_n, ret = vmap_call(one, n, (mx.random.split(key, n),), (args,))
        result = ADEVSample(cm, score, ret)
        ell = _add(ell, mx.sum(ell_n))
    run.state = state._replace(keys=keys, pos=pos + 1, ell=ell, values=(result, state.values))
    return result


def adev_key() -> mx.array:
    """A PRNG key from the running ADEV program, for randomness that is not
    differentiated (e.g. ``guide.vsimulate(args, k, key=adev_key())`` whose values are
    then held fixed with ``mx.stop_gradient``). It is the same key whenever the
    program is replayed.

    Raises:
        GenMLXError: called outside an ADEV program.
    """
    run, state = _active_state("adev_key")
    keys, key = state.keys.site()
    run.state = state._replace(keys=keys, pos=state.pos + 1, values=(key, state.values))
    return key


# ---------------------------------------------------------------------------- expectation
def _differentiable(a: Any) -> bool:
    if isinstance(a, bool):
        return False
    if isinstance(a, float):
        return True
    return isinstance(a, mx.array) and mx.issubdtype(a.dtype, mx.floating)


class Expectation:
    """``E_{x~p_θ}[f(x, θ)]`` for an ADEV program ``f`` (see the module docstring).

    Args:
        program: a ``@gen`` function or a Python function whose random choices are
            ``dist(...) @ addr`` and which returns a scalar.
        estimators: ``{address: estimator}`` (an :class:`ADEVEstimator` or its name);
            an address also covers everything beneath it.
        default: the estimator for choices that nothing else names (default:
            ``reparam`` where the distribution has it, else ``reinforce``).
        name: a name for error messages.
    """

    def __init__(
        self,
        program: Callable[..., Any],
        *,
        estimators: Mapping[Address, ADEVEstimator | str] | None = None,
        default: ADEVEstimator | str | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(program, DynamicGenerativeFunction):
            fn: Callable[..., Any] = program.fn
            pname = program.name
        elif isinstance(program, GenerativeFunction):
            raise TypeError(
                f"expectation: the program must be a @gen function or a Python function, "
                f"got {program!r}; wrap other generative functions with adev_simulate "
                "inside a Python function"
            )
        elif callable(program):
            fn = program
            pname = getattr(program, "__qualname__", getattr(program, "__name__", "program"))
        else:
            raise TypeError(f"expectation: the program must be callable, got {program!r}")
        self.program = program
        self.fn = fn
        self.name = name or pname
        self.estimators: dict[Path, ADEVEstimator] = {
            to_path(a): get_estimator(e) for a, e in (estimators or {}).items()
        }
        self.default = get_estimator(default) if default is not None else None

    def _ctx(self, args: tuple[Any, ...], key: mx.array) -> _Ctx:
        return _Ctx(self.fn, args, self.name, key, (), self.estimators, self.default, False)

    def surrogate(self, *args: Any, key: Key = None) -> mx.array:
        """One sample of the surrogate: its value estimates the expectation and its
        ``mx.grad`` (w.r.t. the arguments, or parameters bound with ``use_params``)
        estimates the gradient, both without bias. For use inside your own
        ``mx.grad``/``mx.vmap``/``mx.compile``."""
        with runtime.transforming():
            return _execute(self._ctx(tuple(args), resolve_key(key)))

    def _batched(
        self, args: tuple[Any, ...], pos: list[int], names: list[str]
    ) -> Callable[..., mx.array]:
        def one(k: mx.array, *xs: mx.array) -> mx.array:
            a = list(args)
            for j, i in enumerate(pos):
                a[i] = xs[j]
            binding = (
                use_params(ParamStore(dict(zip(names, xs[len(pos) :]))))
                if names
                else contextlib.nullcontext()
            )
            with binding:
                return _execute(self._ctx(tuple(a), k))

        return one

    def _prepare(
        self, args: tuple[Any, ...], store: ParamStore | Mapping[str, Any] | None, n: int
    ) -> tuple[list[int], list[str], list[mx.array]]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"expectation({self.name}): n_samples must be a positive int")
        pos = [i for i, a in enumerate(args) if _differentiable(a)]
        s = store if store is None or isinstance(store, ParamStore) else ParamStore(store)
        names = list(s) if s is not None else []
        xs = [
            mx.array(args[i], dtype=mx.float32) if isinstance(args[i], float) else args[i]
            for i in pos
        ]
        xs += [s[k] for k in names] if s is not None else []
        return pos, names, xs

    def estimate(
        self,
        *args: Any,
        key: Key = None,
        n_samples: int = 1,
        store: ParamStore | Mapping[str, Any] | None = None,
        per_sample: bool = False,
    ) -> mx.array:
        """An unbiased estimate of the expectation: the mean of ``n_samples``
        independent samples (one vectorised run).

        Args:
            *args: the program's arguments.
            key: PRNG key.
            n_samples: the number of samples ``N``.
            store: parameters to bind for ``param(...)`` reads.
            per_sample: return the ``N`` samples (shape ``[N]``) instead of their mean.

        Example:
            >>> import mlx.core as mx
            >>> from genmlx.infer.adev_estimators import flip_enum
            >>> def f(p):
            ...     return mx.where(flip_enum(p) @ "b", 1.0, 0.0)
            >>> round(float(expectation(f).estimate(mx.array(0.25), key=mx.random.key(0))), 6)
            0.25
        """
        pos, names, xs = self._prepare(tuple(args), store, n_samples)
        keys = mx.random.split(resolve_key(key), n_samples)
        one = self._batched(tuple(args), pos, names)
        with runtime.transforming():
            vals = mx.vmap(one, in_axes=(0,) + (None,) * len(xs))(keys, *xs)
        return mx.stop_gradient(vals if per_sample else mx.mean(vals))

    def grad(
        self,
        *args: Any,
        key: Key = None,
        n_samples: int = 1,
        store: ParamStore | Mapping[str, Any] | None = None,
        per_sample: bool = False,
    ) -> GradientEstimate:
        """Unbiased estimates of the expectation and of its gradient.

        The gradient is taken w.r.t. every floating-point argument (MLX arrays and
        Python floats) and every parameter of ``store``; it is the mean of
        ``n_samples`` independent estimates computed in one vectorised run.

        Args:
            *args: the program's arguments.
            key: PRNG key.
            n_samples: the number of samples ``N``.
            store: trainable parameters (read by ``param(...)`` in the program).
            per_sample: return the ``N`` individual estimates (leading axis ``[N]``)
                instead of their mean, e.g. to measure the estimator's variance.

        Returns:
            :class:`GradientEstimate` ``(value, args, params)``.

        Example:
            >>> import mlx.core as mx
            >>> from genmlx.infer.adev_estimators import normal_reparam
            >>> def f(mu):
            ...     x = normal_reparam(mu, 1.0) @ "x"
            ...     return x * x
            >>> g = expectation(f).grad(mx.array(2.0), key=mx.random.key(0), n_samples=20000)
            >>> abs(float(g.args[0]) - 4.0) < 0.1    # d/dmu E[x^2] = 2 mu
            True
        """
        args = tuple(args)
        pos, names, xs = self._prepare(args, store, n_samples)
        keys = mx.random.split(resolve_key(key), n_samples)
        one = self._batched(args, pos, names)
        with runtime.transforming():
            if per_sample:

                def single(xs_: list[mx.array], k: mx.array) -> mx.array:
                    return one(k, *xs_)

                vals = mx.vmap(one, in_axes=(0,) + (None,) * len(xs))(keys, *xs)
                grads = mx.vmap(mx.grad(single), in_axes=(None, 0))(xs, keys) if xs else []
                value = mx.stop_gradient(vals)
            else:

                def mean(xs_: list[mx.array]) -> mx.array:
                    vals = mx.vmap(one, in_axes=(0,) + (None,) * len(xs_))(keys, *xs_)
                    return mx.mean(vals)

                if xs:
                    value, grads = mx.value_and_grad(mean)(xs)
                else:
                    value, grads = mean(xs), []
        arg_grads: list[mx.array | None] = [None] * len(args)
        for j, i in enumerate(pos):
            arg_grads[i] = grads[j]
        params = {k: grads[len(pos) + j] for j, k in enumerate(names)}
        return GradientEstimate(value, tuple(arg_grads), params)

    def objective(self, *args: Any, n_samples: int = 1, maximize: bool = True) -> Objective:
        """This expectation as an :class:`~genmlx.infer.Objective` for
        :func:`~genmlx.infer.optimize`, over the parameters the program reads with
        ``param(...)``.

        Each step averages ``n_samples`` surrogate samples (one vectorised run) and
        reports the estimate of ``E``; :func:`~genmlx.infer.optimize` follows ADEV's
        unbiased gradient, ascending ``E`` (``maximize=True``) or descending it.

        Args:
            *args: the program's arguments (held fixed).
            n_samples: samples per step.
            maximize: maximise ``E`` (the loss is ``-E``) or minimise it.

        Example:
            >>> import mlx.core as mx
            >>> from genmlx.core import param
            >>> from genmlx.infer import optimize
            >>> from genmlx.infer.adev_estimators import normal_reparam
            >>> def f():
            ...     x = normal_reparam(param("mu", 0.0), 1.0) @ "x"
            ...     return -((x - 2.0) ** 2)
            >>> res = optimize(expectation(f).objective(n_samples=16), {"mu": 0.0},
            ...                n_steps=400, learning_rate=0.05, key=mx.random.key(0))
            >>> round(float(res.params["mu"]), 1)
            2.0
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"expectation({self.name}): n_samples must be a positive int")
        fixed = tuple(args)
        sign = -1.0 if maximize else 1.0

        def fn(params: dict[str, mx.array], key: mx.array, state: Any) -> Any:
            names = list(params)
            one = self._batched(fixed, [], names)
            keys = mx.random.split(key, n_samples)
            xs = [params[k] for k in names]
            vals = mx.vmap(one, in_axes=(0,) + (None,) * len(xs))(keys, *xs)
            value = mx.mean(vals)
            return sign * value, mx.stop_gradient(value), state

        return Objective(fn, {}, "objective")

    def __repr__(self) -> str:
        return f"<Expectation {self.name}>"


def expectation(
    program: Callable[..., Any] | None = None,
    *,
    estimators: Mapping[Address, ADEVEstimator | str] | None = None,
    default: ADEVEstimator | str | None = None,
) -> Any:
    """Make an :class:`Expectation` of an ADEV program (usable as a decorator, with or
    without arguments).

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.dists import bernoulli
        >>> @expectation(estimators={"b": "mvd"})
        ... def loss(p):
        ...     b = bernoulli(p) @ "b"
        ...     return mx.where(b, 0.0, -p / 2)
        >>> g = loss.grad(mx.array(0.3), key=mx.random.key(0), n_samples=1000)
        >>> float(g.value) < 0
        True
    """
    if program is None:
        return lambda p: Expectation(p, estimators=estimators, default=default)
    return Expectation(program, estimators=estimators, default=default)


# ---------------------------------------------------------------------------- objectives
def _observations(observations: Any, op: str) -> ChoiceMap:
    if observations is None:
        return ChoiceMap.empty()
    if isinstance(observations, ChoiceMap):
        obs = observations
    elif isinstance(observations, Mapping):
        obs = choicemap(observations)
    else:
        raise TypeError(
            f"{op}: observations must be a ChoiceMap (or a dict), got {type(observations).__name__}"
        )
    if obs.batch_shape:
        raise ValueError(f"{op}: observations must be unbatched")
    return obs


def _check_gfs(op: str, **gfs: Any) -> None:
    for what, gf in gfs.items():
        if not isinstance(gf, GenerativeFunction):
            raise TypeError(f"{op}: {what} must be a generative function, got {gf!r}")


def _n(n: Any, op: str, least: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < least:
        raise ValueError(f"{op}: n_particles must be an int ≥ {least}, got {n!r}")
    return n


def _broadcast(obs: ChoiceMap, n: int) -> ChoiceMap:
    return obs.map(lambda v: mx.broadcast_to(v, (n, *v.shape))).with_batch_shape((n,))


def _joint(latents: ChoiceMap, obs: ChoiceMap, n: int | None) -> ChoiceMap:
    if obs.is_empty:
        return latents
    if n is None:
        return latents.merge(obs)
    return latents.with_batch_shape((n,)).merge(_broadcast(obs, n))


def elbo_objective(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    estimators: Mapping[Address, ADEVEstimator | str] | None = None,
    default: ADEVEstimator | str | None = None,
) -> Expectation:
    """The evidence lower bound as an ADEV expectation:

    .. math::

        \\mathrm{ELBO}(θ, φ) = \\mathbb{E}_{z \\sim q_φ}[\\log p_θ(z, x) - \\log q_φ(z)]
        = \\log p_θ(x) - \\mathrm{KL}(q_φ \\,\\|\\, p_θ(\\cdot \\mid x)).

    The guide's choices ``z`` (its addresses are latent addresses of the model) are
    drawn through ADEV; the model scores them with the observations ``x`` by
    ``model.assess``. ``grad(store=...)`` gives unbiased gradients for the model's
    and the guide's parameters.

    Args:
        model: the model ``p``.
        guide: the guide ``q``, a generative function with parameters (``param``).
        args: the model's arguments.
        observations: the observed choices ``x``.
        guide_args: the guide's arguments.
        estimators: per-address estimators for the guide's choices.
        default: the estimator for the guide's other choices.

    Returns:
        An :class:`Expectation` of no arguments.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, param, ParamStore
        >>> from genmlx.dists import normal
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(z, 1.0) @ "x"
        >>> @gen
        ... def guide():
        ...     normal(param("m", 0.0), mx.exp(param("log_s", 0.0))) @ "z"
        >>> obj = elbo_objective(model, (), {"x": 1.0}, guide)
        >>> store = ParamStore.initialize(guide, ())
        >>> g = obj.grad(key=mx.random.key(0), n_samples=100, store=store)
        >>> sorted(g.params)
        ['log_s', 'm']
    """
    _check_gfs("elbo_objective", model=model, guide=guide)
    obs = _observations(observations, "elbo_objective")
    margs, gargs = tuple(args), tuple(guide_args)

    def elbo_program() -> mx.array:
        q = adev_simulate(guide, gargs)
        log_p, _ = model.assess(margs, _joint(q.choices, obs, None))
        out: mx.array = log_p - q.score
        return out

    return Expectation(elbo_program, estimators=estimators, default=default, name="elbo")


def iwelbo_objective(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_particles: int,
    estimators: Mapping[Address, ADEVEstimator | str] | None = None,
    default: ADEVEstimator | str | None = None,
) -> Expectation:
    """The importance-weighted ELBO (Burda et al.) with ``K = n_particles``:

    .. math::

        \\mathrm{IWELBO}_K = \\mathbb{E}_{z_{1..K} \\sim q}\\Big[\\log \\frac1K
        \\sum_k \\frac{p(z_k, x)}{q(z_k)}\\Big],

    with ``ELBO = IWELBO_1 ≤ IWELBO_K ≤ IWELBO_{K+1} ≤ log p(x)``. The ``K`` guide
    particles are drawn in one vectorised run (:func:`adev_simulate` with ``n=K``),
    so the guide's choices must use ``reparam`` or ``reinforce``.

    Args:
        model, args, observations, guide, guide_args, estimators, default: as
            for :func:`elbo_objective`.
        n_particles: ``K``.

    Returns:
        An :class:`Expectation` of no arguments.
    """
    _check_gfs("iwelbo_objective", model=model, guide=guide)
    k = _n(n_particles, "iwelbo_objective")
    obs = _observations(observations, "iwelbo_objective")
    margs, gargs = tuple(args), tuple(guide_args)

    def iwelbo_program() -> mx.array:
        q = adev_simulate(guide, gargs, n_particles=k)
        log_p, _ = model.assess(margs, _joint(q.choices, obs, k))
        out: mx.array = mx.logsumexp(log_p - q.score) - math.log(k)
        return out

    return Expectation(iwelbo_program, estimators=estimators, default=default, name="iwelbo")


def _guide_particles(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    margs: tuple[Any, ...],
    gargs: tuple[Any, ...],
    obs: ChoiceMap,
    k: int,
) -> tuple[ChoiceMap, mx.array, mx.array]:
    """``K`` guide particles held fixed: ``(z, log p(z, x), log q(z))``."""
    qtr = guide.vsimulate(gargs, k, key=adev_key())
    z = qtr.get_choices().map(mx.stop_gradient)
    log_p, _ = model.assess(margs, _joint(z, obs, k))
    return z, log_p, mx.stop_gradient(qtr.score)


def wake_p_objective(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_particles: int = 1,
) -> Expectation:
    """The wake-phase model objective of (reweighted) wake-sleep:

    .. math::

        \\mathbb{E}_{z_{1..K} \\sim q}\\Big[\\sum_k \\bar w_k \\log p_θ(z_k, x)\\Big],
        \\qquad \\bar w_k = \\frac{p(z_k, x)/q(z_k)}{\\sum_j p(z_j, x)/q(z_j)},

    with the particles and the weights held fixed (no gradient flows into the guide).
    Its gradient w.r.t. the model's parameters ``θ`` is the self-normalised
    importance-sampling estimate of ``∇_θ log p_θ(x) = E_{p(z|x)}[∇_θ log p_θ(z, x)]``
    (Fisher's identity): consistent as ``K → ∞``, and unbiased for every ``K`` when
    the guide is the exact posterior. With ``K = 1`` it is ``log p_θ(z, x)`` at one
    guide sample.

    Args:
        model, args, observations, guide, guide_args: as for :func:`elbo_objective`.
        n_particles: ``K``.

    Returns:
        An :class:`Expectation` of no arguments.
    """
    _check_gfs("wake_p_objective", model=model, guide=guide)
    k = _n(n_particles, "wake_p_objective")
    obs = _observations(observations, "wake_p_objective")
    margs, gargs = tuple(args), tuple(guide_args)

    def wake_p_program() -> mx.array:
        _, log_p, log_q = _guide_particles(model, guide, margs, gargs, obs, k)
        w = mx.stop_gradient(mx.softmax(log_p - log_q))
        return mx.sum(w * log_p)

    return Expectation(wake_p_program, name="wake_p")


def wake_q_objective(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: ChoiceMap | Mapping[Any, Any] | None,
    guide: GenerativeFunction,
    guide_args: tuple[Any, ...] = (),
    *,
    n_particles: int = 2,
) -> Expectation:
    """The wake-phase guide objective of reweighted wake-sleep (Bornschein & Bengio):

    .. math::

        \\mathbb{E}_{z_{1..K} \\sim q}\\Big[\\sum_k \\bar w_k \\log q_φ(z_k)\\Big]

    with the particles and self-normalised weights ``w̄`` (as in :func:`wake_p_objective`) held
    fixed: its gradient w.r.t. ``φ`` estimates ``E_{p(z|x)}[∇_φ log q_φ(z)]``, the
    gradient of ``-KL(p(·|x) ‖ q_φ)``, from an approximate posterior sample (``K``
    guide particles resampled by their model weights). ``K ≥ 2`` (with one particle
    the weight is 1 and the gradient has mean zero).

    Args:
        model, args, observations, guide, guide_args: as for :func:`elbo_objective`.
        n_particles: ``K ≥ 2``.

    Returns:
        An :class:`Expectation` of no arguments.
    """
    _check_gfs("wake_q_objective", model=model, guide=guide)
    k = _n(n_particles, "wake_q_objective", least=2)
    obs = _observations(observations, "wake_q_objective")
    margs, gargs = tuple(args), tuple(guide_args)

    def wake_q_program() -> mx.array:
        z, log_p, log_q_fixed = _guide_particles(model, guide, margs, gargs, obs, k)
        w = mx.stop_gradient(mx.softmax(log_p - log_q_fixed))
        log_q, _ = guide.assess(gargs, z.with_batch_shape((k,)))
        return mx.sum(w * log_q)

    return Expectation(wake_q_program, name="wake_q")


def _latent_selection(choices: ChoiceMap) -> Selection:
    return select(*[p if len(p) != 1 else p[0] for p, _ in choices.leaves()])


def sleep_q_objective(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    guide: GenerativeFunction,
    get_guide_args: Callable[[Trace], tuple[Any, ...]],
    *,
    latents: Selection | None = None,
) -> Expectation:
    """The sleep-phase guide objective: the guide's log density of a model sample,

    .. math::

        \\mathbb{E}_{(z, x) \\sim p_θ}[\\log q_φ(z; a(x))],

    where ``a(x) = get_guide_args(trace)`` turns the model's trace into the guide's
    arguments (its observations) and ``z`` are the model's choices at the guide's
    addresses. Maximising it over ``φ`` minimises ``E_x KL(p(z|x) ‖ q_φ(z; a(x)))``:
    amortised inference trained on the model's own "dreams" (Gen.jl's ``lecture!``;
    see :func:`genmlx.infer.learning.lecture`). The model sample is held fixed.

    Args:
        model: the model ``p``.
        args: the model's arguments.
        guide: the guide (proposal) ``q``.
        get_guide_args: ``trace ↦ guide args``.
        latents: the model's addresses the guide makes (default: those of one guide
            simulation).

    Returns:
        An :class:`Expectation` of no arguments.
    """
    _check_gfs("sleep_q_objective", model=model, guide=guide)
    margs = tuple(args)

    def sleep_q_program() -> mx.array:
        key = adev_key()
        k_model, k_guide = mx.random.split(key, 2)
        tr = model.simulate(margs, key=k_model)
        gargs = tuple(get_guide_args(tr))
        choices = tr.get_choices().map(mx.stop_gradient)
        sel = latents
        if sel is None:
            sel = _latent_selection(guide.simulate(gargs, key=k_guide).get_choices())
        log_q, _ = guide.assess(gargs, choices.filter(sel))
        return log_q

    return Expectation(sleep_q_program, name="sleep_q")
