"""Pure log-density functions of static models, over one flat unconstrained vector.

:func:`logdensity` turns a static model, its arguments and observations into a
:class:`LogDensity`: a function of one vector ``y ∈ ℝᵈ`` holding every latent
continuous choice mapped to unconstrained space by the bijector of its domain
(:mod:`genmlx.core.bijectors`), with the log-Jacobian included, so that

``ld(y) = log p(choices(y), observations; args) + log |det ∂choices/∂y|``.

It runs the model's body through a replay handler that reads each latent choice from
its slice of ``y`` — no traces, choice maps or handler state machines — and it is
compiled with ``mx.compile`` once per input shape, so a leapfrog or optimiser step
runs no Python. ``y`` may carry leading batch axes (many chains): every batch row is
an independent evaluation (``mx.vmap`` of the one-chain function).

Maps between the vector and choices: :meth:`LogDensity.to_choicemap`,
:meth:`LogDensity.from_choicemap`, :meth:`LogDensity.to_trace`,
:meth:`LogDensity.from_trace`. HMC, MALA, NUTS, MAP, ADVI and black-box VI use it on
static models; :func:`genmlx.core.analyze` says whether a model is static.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, logdensity
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def model():
    ...     mu = normal(0.0, 1.0) @ "mu"
    ...     normal(mu, 1.0) @ "y"
    >>> ld = logdensity(model, (), choicemap({"y": 1.0}))
    >>> ld.dim, ld.addresses
    (1, ['mu'])
    >>> v, g = ld.value_and_grad(mx.array([0.5]))
    >>> round(float(g[0]), 4)   # d/dmu [log N(mu; 0, 1) + log N(1; mu, 1)] = -mu + (1 - mu)
    0.0
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import rewrites, runtime
from genmlx.core.address import Path, format_address, from_path, to_path
from genmlx.core.bijectors import Bijector, IdentityBijector, biject_to
from genmlx.core.checks import as_args, as_choicemap
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.compile import compile_function
from genmlx.core.constraints import Constraint
from genmlx.core.errors import GenMLXError
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.graph import ModelGraph, Site, _arg_signature, _is_gen, analyze
from genmlx.core.selection import Selection
from genmlx.core.trace import Trace
from genmlx.core.tree import TreeDef, flatten, unflatten

__all__ = ["Block", "LogDensity", "StaticModelError", "logdensity"]


class StaticModelError(GenMLXError, TypeError):
    """An operation of the compiled tier was asked of a model it cannot handle."""


class Block(NamedTuple):
    """One latent choice's slice ``y[start:start + size]`` of the flat vector.

    Attributes:
        path: the choice's address.
        shape: the constrained value's shape.
        ushape: the unconstrained shape (a ``K``-simplex has ``K - 1`` numbers).
        start: offset in the flat vector.
        size: number of unconstrained numbers.
        dtype: the value's dtype.
        domain: the domain at analysis time (``None``: identity transform).
        override: the domain given by the user for this address, if any.
        in_call: the choice lives inside a call of a non-``@gen`` generative function.
    """

    path: Path
    shape: tuple[int, ...]
    ushape: tuple[int, ...]
    start: int
    size: int
    dtype: Any
    domain: Constraint | None
    override: Constraint | None
    in_call: bool


# ---------------------------------------------------------------------------- replay
class _Replay:
    """Per-evaluation state of the replay handler (one body execution)."""

    __slots__ = (
        "blocks",
        "calls",
        "collect",
        "mode",
        "obs",
        "prefix",
        "prepared",
        "score",
        "transform",
        "values",
        "y",
    )

    def __init__(
        self,
        mode: str,
        y: Any,
        obs: ChoiceMap,
        blocks: Mapping[Path, Block],
        calls: Mapping[Path, list[Block]],
        transform: bool,
    ) -> None:
        self.mode = mode  # "logp" | "forward" | "inverse"
        self.y = y  # flat vector (logp/forward) or latent ChoiceMap (inverse)
        self.obs = obs
        self.blocks = blocks
        self.calls = calls
        self.transform = transform
        self.score: Any = 0.0
        self.prefix: Path = ()
        self.collect: dict[Path, mx.array] = {}
        self.values: dict[Path, mx.array] = {}
        self.prepared: Any = None


def _bijector(b: Block, dom: Constraint | None, transform: bool) -> Bijector:
    if not transform:
        return IdentityBijector()
    if dom is None and b.in_call:
        dom = b.domain  # a call's choice: its fixed domain, found when analysing
    d = b.override if b.override is not None else dom
    if d is None:
        return IdentityBijector()
    return biject_to(d)


def _replay_handler(st: _Replay) -> Callable[..., tuple[Any, Any]]:
    from genmlx.core.distribution import Distribution

    def handler(state: Any, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]) -> Any:
        full = (*st.prefix, *path)
        if isinstance(gf, Distribution):
            b = st.blocks.get(full)
            if b is not None:
                bij = _bijector(b, gf.domain(*args) if st.transform else None, st.transform)
                if st.mode == "inverse":
                    x = as_array(st.y[full]) if not isinstance(st.y, dict) else st.y[full]
                    st.collect[full] = bij.inverse(x.astype(mx.float32)).reshape(-1)
                    return state, x
                u = st.y[b.start : b.start + b.size].reshape(b.ushape)
                x, ld = bij.forward_and_log_det(u)
                if x.dtype != b.dtype and mx.issubdtype(b.dtype, mx.floating):
                    x = x.astype(b.dtype)
                st.values[full] = x
                if st.mode == "forward":
                    st.collect[full] = x
                elif isinstance(bij, IdentityBijector):
                    st.score = st.score + gf.score(x, args)
                else:
                    st.score = st.score + gf.score(x, args) + mx.sum(ld)
                return state, x
            node = st.obs._node(full)
            if node is None or not node.has_root_value:
                raise StaticModelError(
                    f"logdensity: the choice at {format_address(full)} is neither in the "
                    "latent vector nor observed (the model's structure changed since it "
                    "was analysed?)"
                )
            v = as_array(node.value)
            if st.mode == "logp":
                s = None
                if st.prepared is not None and full in st.prepared.specs:
                    s = rewrites.score(st.prepared, full, gf, args, st.values)
                st.score = st.score + (gf.score(v, args) if s is None else s)
            return state, v
        if _is_gen(gf):
            outer = st.prefix
            st.prefix = full
            try:
                value = gf.fn(*args)  # type: ignore[attr-defined]
            finally:
                st.prefix = outer
            run = runtime.active_run()
            return (run.state if run is not None else state), value
        # another generative function: assess it on its observed and latent choices
        sub = st.obs._node(full) or ChoiceMap.empty()
        inner = st.calls.get(full, [])
        for b in inner:
            rel = b.path[len(full) :]
            if st.mode == "inverse":
                x = st.y[b.path] if isinstance(st.y, dict) else as_array(st.y[b.path])
                bij = _bijector(b, None, st.transform)
                st.collect[b.path] = bij.inverse(x.astype(mx.float32)).reshape(-1)
                sub = sub._set(rel, ChoiceMap(x))
                continue
            u = st.y[b.start : b.start + b.size].reshape(b.ushape)
            bij = _bijector(b, None, st.transform)
            x, ld = bij.forward_and_log_det(u)
            if st.mode == "forward":
                st.collect[b.path] = x
            else:
                st.score = st.score + mx.sum(ld)
            sub = sub._set(rel, ChoiceMap(x))
        s, retval = gf.assess(args, sub)
        if st.mode == "logp":
            st.score = st.score + s
        return state, retval

    return handler


# ---------------------------------------------------------------------------- program
class _Program:
    """Everything about a log density that depends only on structure: the layout and
    the compiled functions (keyed by input shapes)."""

    def __init__(
        self,
        model: GenerativeFunction,
        graph: ModelGraph,
        blocks: list[Block],
        obs_td: TreeDef,
        arg_td: TreeDef,
        transform: bool,
    ) -> None:
        self.model = model
        self.graph = graph
        self.blocks = blocks
        self.by_path = {b.path: b for b in blocks if not b.in_call}
        calls: dict[Path, list[Block]] = {}
        for b in blocks:
            if b.in_call:
                site = _call_site_of(graph, b.path)
                calls.setdefault(site.path, []).append(b)
        self.calls = calls
        self.obs_td = obs_td
        self.arg_td = arg_td
        self.transform = transform
        self.dim = sum(b.size for b in blocks)
        self._compiled: dict[Any, Callable[..., Any]] = {}
        self.rw_td: TreeDef | None = None  # the structure of the rewrites' constants

    # -- one-chain pure functions -------------------------------------------------
    def _run(self, mode: str, y: Any, obs_leaves: list[mx.array], arg_leaves: list[Any]) -> _Replay:
        from genmlx.core import handlers as H

        obs = unflatten(self.obs_td, list(obs_leaves))
        na = self.arg_td.num_leaves
        args = unflatten(self.arg_td, list(arg_leaves[:na]))
        st = _Replay(mode, y, obs, self.by_path, self.calls, self.transform)
        if self.rw_td is not None:
            st.prepared = unflatten(self.rw_td, list(arg_leaves[na:]))
        with runtime.operation():
            H.run_body(mode, self.model.name, self.model.fn, args, _replay_handler(st), None)  # type: ignore[attr-defined]
        return st

    def logp(self, y: mx.array, obs_leaves: list[mx.array], arg_leaves: list[Any]) -> mx.array:
        st = self._run("logp", y, obs_leaves, arg_leaves)
        s = st.score
        return s if isinstance(s, mx.array) else mx.array(s, dtype=mx.float32)

    def forward(
        self, y: mx.array, obs_leaves: list[mx.array], arg_leaves: list[Any]
    ) -> list[mx.array]:
        st = self._run("forward", y, obs_leaves, arg_leaves)
        return [st.collect[b.path] for b in self.blocks]

    def inverse(
        self, xs: list[mx.array], obs_leaves: list[mx.array], arg_leaves: list[Any]
    ) -> mx.array:
        values = {b.path: x for b, x in zip(self.blocks, xs)}
        st = self._run("inverse", values, obs_leaves, arg_leaves)
        parts = [st.collect[b.path] for b in self.blocks]
        return parts[0] if len(parts) == 1 else mx.concatenate(parts)

    # -- compiled, batched --------------------------------------------------------
    def function(
        self, kind: str, batch_ndim: int, obs_batched: bool, n_in: int
    ) -> Callable[..., Any]:
        """The pure (uncompiled) function ``kind`` in ``logp``, ``vg`` (value and
        gradient), ``forward``, ``inverse`` of inputs ``(y_or_xs..., obs_leaves...,
        arg_leaves...)``, vmapped over ``batch_ndim`` leading axes."""
        key = ("fn", kind, batch_ndim, obs_batched, n_in)
        fn = self._compiled.get(key)
        if fn is not None:
            return fn
        n_obs = self.obs_td.num_leaves
        n_blocks = len(self.blocks)

        def split(inputs: tuple[Any, ...]) -> tuple[Any, list[Any], list[Any]]:
            if kind == "inverse":
                head, rest = list(inputs[:n_blocks]), inputs[n_blocks:]
            else:
                head, rest = inputs[0], inputs[1:]
            return head, list(rest[:n_obs]), list(rest[n_obs:])

        def one(*inputs: Any) -> Any:
            head, ol, al = split(inputs)
            if kind == "logp":
                return self.logp(head, ol, al)
            if kind == "vg":

                def f(yy: mx.array) -> mx.array:
                    return self.logp(yy, ol, al)

                return mx.value_and_grad(f)(head)
            if kind == "forward":
                return tuple(self.forward(head, ol, al))
            return self.inverse(head, ol, al)

        out = one
        n_head = n_blocks if kind == "inverse" else 1
        for _ in range(batch_ndim):
            axes = (
                (0,) * n_head
                + ((0 if obs_batched else None),) * n_obs
                + (None,) * (n_in - n_head - n_obs)
            )
            out = mx.vmap(out, in_axes=axes)

        def run(*inputs: Any) -> Any:
            with runtime.transforming():
                return out(*inputs)

        self._compiled[key] = run
        return run

    def compiled(
        self, kind: str, batch_ndim: int, obs_batched: bool, n_in: int
    ) -> Callable[..., Any]:
        """:meth:`function`, compiled (kernel fusion per :mod:`genmlx.core.compile`)."""
        key = (kind, batch_ndim, obs_batched, n_in)
        fn = self._compiled.get(key)
        if fn is not None:
            return fn
        call = compile_function(self.function(kind, batch_ndim, obs_batched, n_in))

        self._compiled[key] = call
        return call


def _call_site_of(graph: ModelGraph, path: Path) -> Site:
    for s in graph.sites:
        if s.kind == "call" and path[: len(s.path)] == s.path:
            return s
    raise AssertionError(f"no call site holds {path}")


_PROGRAMS: weakref.WeakKeyDictionary[Any, dict[Any, _Program]] = weakref.WeakKeyDictionary()


def _build_program(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    latents: Selection | None,
    domains: Mapping[Path, Constraint],
    transform: bool,
) -> _Program:
    graph = analyze(model, args, obs)
    if not graph.is_static:
        raise StaticModelError(
            f"logdensity needs a static model, and {model!r} is dynamic: {graph.reason}"
        )
    if graph.uses_params:
        raise StaticModelError(
            f"logdensity: {model!r} reads trainable parameters (param); pass them as "
            "arguments to get a log density of the choices"
        )
    blocks: list[Block] = []
    start = 0
    for s in graph.sites:
        if s.kind == "choice" and not s.observed:
            items = [(s.path, s.shape, s.dtype, s.domain, False, s)]
        elif s.kind == "call":
            cdoms = dict(s.call_domains)
            items = [
                ((*s.path, *p), sh, dt, cdoms.get(p), True, s)
                for p, sh, dt, o in s.call_choices
                if not o
            ]
        else:
            continue
        for path, shape, dtype, dom, in_call, site in items:
            if latents is not None and not latents.contains_path(path):
                raise StaticModelError(
                    f"logdensity: the choice at {format_address(path)} is neither observed "
                    "nor among the selected latents; give its value in observations"
                )
            assert shape is not None
            override = _override(path, domains)
            where = f"the latent choice at {format_address(path)}"
            if not mx.issubdtype(dtype, mx.floating) or (
                not in_call and getattr(site.gen_fn, "is_discrete", False)
            ):
                raise StaticModelError(
                    f"logdensity: {where} is discrete ({_fn_name(site.gen_fn)}, dtype "
                    f"{dtype}); a log density over a real vector needs continuous latents. "
                    "Observe it, leave it out of the selection, or marginalise it"
                )
            if transform and override is None and dom is None:
                if in_call:
                    raise StaticModelError(
                        f"logdensity: {where} is made inside {site.gen_fn!r}, whose "
                        "choices' domains are not visible to the graph; pass "
                        f"domains={{{from_path(path)!r}: constraints.real | "
                        "constraints.positive | ...}"
                    )
                raise StaticModelError(
                    f"logdensity: {where} comes from {_fn_name(site.gen_fn)}, which does not "
                    "declare its domain (Distribution.domain); pass "
                    f"domains={{{from_path(path)!r}: constraints.real | ...}}"
                )
            d = override if override is not None else dom
            ushape = (
                biject_to(d).unconstrained_shape(shape) if (transform and d is not None) else shape
            )
            size = int(math.prod(ushape))
            blocks.append(Block(path, shape, ushape, start, size, dtype, dom, override, in_call))
            start += size
    if not blocks:
        raise StaticModelError(
            f"logdensity: {model!r} has no latent continuous choices given these observations"
        )
    _, obs_td = flatten(obs)
    _, arg_td = flatten(args)
    return _Program(model, graph, blocks, obs_td, arg_td, transform)


def _fn_name(gf: Any) -> str:
    return getattr(gf, "name", type(gf).__name__)


def _override(path: Path, domains: Mapping[Path, Constraint]) -> Constraint | None:
    for i in range(len(path), 0, -1):
        if path[:i] in domains:
            return domains[path[:i]]
    return None


def _program(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    obs: ChoiceMap,
    latents: Selection | None,
    domains: Mapping[Path, Constraint],
    transform: bool,
    obs_batch: tuple[int, ...],
) -> _Program:
    obs_u = obs
    if obs_batch:  # analyse with one chain's observations
        obs_u = obs.map(lambda v: v[(0,) * len(obs_batch)]).with_batch_shape(())
    struct = tuple((p, tuple(v.shape), v.dtype) for p, v in obs_u.leaves())
    sel_key: Any = None
    if latents is not None:
        # selections have no structural equality: key on the choices they pick
        graph = analyze(model, args, obs_u)
        sel_key = tuple(p for p in _latent_paths(graph) if latents.contains_path(p))
    key = (
        _arg_signature(args),
        struct,
        sel_key,
        tuple(sorted(domains.items(), key=lambda kv: str(kv[0]))) if domains else (),
        transform,
    )
    table = _PROGRAMS.setdefault(model, {})
    prog = table.get(key)
    if prog is None:
        prog = _build_program(model, args, obs_u, latents, domains, transform)
        if len(table) > 64:
            table.pop(next(iter(table)))
        table[key] = prog
    return prog


def _latent_paths(graph: ModelGraph) -> list[Path]:
    out: list[Path] = []
    for s in graph.sites:
        if s.kind == "choice" and not s.observed:
            out.append(s.path)
        elif s.kind == "call":
            out.extend((*s.path, *p) for p, _, _, o in s.call_choices if not o)
    return out


# ---------------------------------------------------------------------------- public
def _copy_program(program: _Program) -> _Program:
    """A program like ``program`` without its compiled functions and rewrites."""
    return _Program(
        program.model,
        program.graph,
        program.blocks,
        program.obs_td,
        program.arg_td,
        program.transform,
    )


class LogDensity:
    """A static model's log density as a function of one unconstrained vector.

    Build one with :func:`logdensity`. Attributes: ``dim`` (the vector's length),
    ``blocks`` (one :class:`Block` per latent choice), ``addresses``, ``graph``.
    """

    def __init__(
        self,
        program: _Program,
        args: tuple[Any, ...],
        observations: ChoiceMap,
        obs_batch: tuple[int, ...] = (),
    ) -> None:
        self._p = program
        self.args = args
        self.observations = observations
        self._obs_leaves, _ = flatten(
            observations.with_batch_shape(()) if obs_batch else observations
        )
        self._arg_leaves, _ = flatten(args)
        self._obs_batch = obs_batch
        prepared = None
        if program.transform is not None and not obs_batch and not runtime.in_transform():
            prepared = rewrites.prepare(program.model, args, observations)
        if prepared is not None:
            rw_leaves, rw_td = flatten(prepared)
            if program.rw_td is not None and program.rw_td != rw_td:
                # other rewrites than the shared program was built with (a switch
                # changed, e.g. fused kernels on/off): a program of their own
                self._p = program = _copy_program(program)
            program.rw_td = rw_td
            self._arg_leaves = [*self._arg_leaves, *rw_leaves]
        elif program.rw_td is not None:
            self._p = _copy_program(program)

    # ------------------------------------------------------------------ structure
    @property
    def dim(self) -> int:
        """Length of the unconstrained vector."""
        return self._p.dim

    @property
    def blocks(self) -> list[Block]:
        """The layout of the vector, one block per latent choice."""
        return list(self._p.blocks)

    @property
    def addresses(self) -> list[Any]:
        """Addresses of the latent choices, in vector order."""
        return [from_path(b.path) for b in self._p.blocks]

    @property
    def graph(self) -> ModelGraph:
        """The model graph this log density was built from."""
        return self._p.graph

    @property
    def model(self) -> GenerativeFunction:
        """The model."""
        return self._p.model

    def with_observations(self, observations: Any) -> LogDensity:
        """The same log density with other observed values of the same structure (no
        new analysis or compilation)."""
        obs = as_choicemap(observations, "logdensity", "observations")
        return LogDensity(self._p, self.args, obs, tuple(obs.batch_shape))

    # ------------------------------------------------------------------ evaluation
    def _batch(self, y: mx.array, op: str) -> tuple[mx.array, tuple[int, ...]]:
        y = as_array(y)
        if y.ndim == 0 or y.shape[-1] != self.dim:
            raise ValueError(
                f"{op}: expected a vector of length {self.dim} (with optional leading batch "
                f"axes), got shape {tuple(y.shape)}"
            )
        if not mx.issubdtype(y.dtype, mx.floating):
            y = y.astype(mx.float32)
        batch = tuple(y.shape[:-1])
        if self._obs_batch and batch[: len(self._obs_batch)] != self._obs_batch:
            raise ValueError(
                f"{op}: the observations are batched with shape {self._obs_batch}; the "
                f"vector's batch shape {batch} must start with it"
            )
        return y, batch

    def _call(self, kind: str, head: list[mx.array], batch: tuple[int, ...]) -> Any:
        n_in = len(head) + len(self._obs_leaves) + len(self._arg_leaves)
        flat_batch = (math.prod(batch),) if batch else ()
        if batch:
            head = [h.reshape(*flat_batch, *h.shape[len(batch) :]) for h in head]
            obs = [
                o.reshape(*flat_batch, *o.shape[len(self._obs_batch) :]) if self._obs_batch else o
                for o in self._obs_leaves
            ]
            if self._obs_batch and len(batch) != len(self._obs_batch):
                raise ValueError("logdensity: batched observations need the same batch shape as y")
        else:
            obs = self._obs_leaves
        if runtime.in_transform():  # inside a caller's own vmap/compile: no nesting
            fn = self._p.function(kind, 1 if batch else 0, bool(self._obs_batch), n_in)
        else:
            fn = self._p.compiled(kind, 1 if batch else 0, bool(self._obs_batch), n_in)
        return fn(*head, *obs, *self._arg_leaves)

    def pure(
        self, kind: str = "vg", *, batched: bool = True
    ) -> tuple[Callable[..., Any], list[mx.array]]:
        """``(fn, inputs)``: the uncompiled function for use inside a caller's own
        compiled program, called as ``fn(y, *inputs)``.

        ``kind`` is ``"vg"`` (returns ``(value, gradient)``) or ``"logp"``; with
        ``batched`` the vector is ``[n, dim]`` (and batched observations ``[n, ...]``).
        The inputs hold the observations and the model's array arguments, so they are
        never frozen into a compiled program as constants.
        """
        n_in = 1 + len(self._obs_leaves) + len(self._arg_leaves)
        obs = self._obs_leaves
        if self._obs_batch and len(self._obs_batch) > 1:
            raise ValueError("pure: observations may carry one batch axis")
        fn = self._p.function(kind, 1 if batched else 0, bool(self._obs_batch), n_in)
        return fn, [*obs, *self._arg_leaves]

    def __call__(self, y: Any) -> mx.array:
        """``log p`` (plus log-Jacobian) at ``y`` of shape ``[..., dim]``: shape ``[...]``."""
        y, batch = self._batch(y, "logdensity")
        out: mx.array = self._call("logp", [y], batch)
        return out.reshape(batch) if batch else out

    def value_and_grad(self, y: Any) -> tuple[mx.array, mx.array]:
        """``(ld(y), ∇ld(y))``; batched rows are differentiated independently."""
        y, batch = self._batch(y, "logdensity.value_and_grad")
        v, g = self._call("vg", [y], batch)
        if batch:
            return v.reshape(batch), g.reshape(*batch, self.dim)
        return v, g

    def grad(self, y: Any) -> mx.array:
        """``∇ld(y)``."""
        return self.value_and_grad(y)[1]

    # ------------------------------------------------------------------ maps
    def constrain(self, y: Any) -> dict[Any, mx.array]:
        """The latent choices' values at ``y`` (constrained), by address."""
        y, batch = self._batch(y, "logdensity.constrain")
        xs = self._call("forward", [y], batch)
        out = {}
        for b, x in zip(self._p.blocks, xs):
            out[from_path(b.path)] = x.reshape(*batch, *b.shape) if batch else x
        return out

    def to_choicemap(self, y: Any) -> ChoiceMap:
        """The latent choices at ``y`` as a choice map (batched when ``y`` is)."""
        y, batch = self._batch(y, "logdensity.to_choicemap")
        xs = self._call("forward", [y], batch)
        nodes = []
        for b, x in zip(self._p.blocks, xs):
            v = x.reshape(*batch, *b.shape) if batch else x
            nodes.append((b.path, ChoiceMap(v)))
        return ChoiceMap.from_nodes(nodes, tuple(batch[:1]) if len(batch) == 1 else ())

    def from_choicemap(self, choices: Any) -> mx.array:
        """The unconstrained vector of the latent choices in ``choices`` (batched when
        the choice map is)."""
        cm = as_choicemap(choices, "logdensity.from_choicemap", "choices")
        batch = tuple(cm.batch_shape)
        xs = []
        for b in self._p.blocks:
            node = cm._node(b.path)
            if node is None or not node.has_root_value:
                raise KeyError(
                    f"logdensity.from_choicemap: no value for the latent choice at "
                    f"{format_address(b.path)}"
                )
            v = as_array(node.value)
            if tuple(v.shape[len(batch) :]) != b.shape:
                raise ValueError(
                    f"logdensity.from_choicemap: the value at {format_address(b.path)} has "
                    f"shape {tuple(v.shape)}, expected {batch + b.shape}"
                )
            xs.append(v)
        out: mx.array = self._call("inverse", xs, batch)
        return out

    def from_trace(self, trace: Trace) -> mx.array:
        """The unconstrained vector of a trace's latent choices."""
        return self.from_choicemap(trace.get_choices())

    def to_trace(self, y: Any, *, key: Any = None) -> Trace:
        """The model's trace at ``y`` (with the observations), made by ``generate``."""
        cm = self.to_choicemap(y)
        cons = cm.merge(self.observations) if not self.observations.is_empty else cm
        if cm.batch_shape:
            if not self._obs_batch and not self.observations.is_empty:
                n = cm.batch_shape[0]
                obs = self.observations.map(lambda v: mx.broadcast_to(v, (n, *v.shape)))
                cons = cm.merge(obs.with_batch_shape((n,)))
            return self.model.vgenerate(self.args, cons, cm.batch_shape[0], key=key).trace
        return self.model.generate(self.args, cons, key=key).trace

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{format_address(b.path)}{list(b.shape)}"
            + (f" on {b.domain!r}" if b.domain is not None else "")
            for b in self._p.blocks
        )
        return f"LogDensity({self.model!r}, dim={self.dim}: {parts})"


def logdensity(
    model: GenerativeFunction,
    args: tuple[Any, ...] = (),
    observations: Any = None,
    *,
    latents: Selection | None = None,
    domains: Mapping[Any, Constraint] | None = None,
    transform: bool = True,
) -> LogDensity:
    """The log density of a static model's latent choices, as a function of one vector.

    Args:
        model: a static ``@gen`` model (:func:`genmlx.core.analyze`).
        args: its arguments.
        observations: observed choices (ChoiceMap or dict). A batched choice map
            (``batch_shape == (n,)``) gives each of ``n`` chains its own observed
            values; the vector must then be batched ``[n, dim]``.
        latents: a selection of the latent choices to put in the vector; every other
            choice must be in ``observations`` (default: every unobserved choice).
        domains: per-address domain overrides (``{"sigma": constraints.positive}``),
            needed for choices made inside other generative functions or by
            distributions that do not declare their domain.
        transform: map each choice to unconstrained space (default). With ``False``
            the vector holds the constrained values themselves and no Jacobian is
            added.

    Returns:
        A :class:`LogDensity`.

    Raises:
        StaticModelError: the model is dynamic, reads trainable parameters, has a
            discrete latent choice, or a latent choice has no known domain.
    """
    if not _is_gen(model):
        raise StaticModelError(f"logdensity: expected a @gen model, got {model!r}")
    args = as_args(args, "logdensity")
    obs = as_choicemap(observations, "logdensity", "observations")
    doms = {to_path(k): v for k, v in (domains or {}).items()}
    batch = tuple(obs.batch_shape)
    prog = _program(model, args, obs, latents, doms, transform, batch)
    return LogDensity(prog, args, obs, batch)
