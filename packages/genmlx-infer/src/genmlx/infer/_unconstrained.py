"""A model's latent choices as one unconstrained vector, on the interpreter.

:func:`genmlx.core.logdensity` does this for static models with a compiled program;
MAP optimisation and ADVI need it for every model with a fixed set of latent choices
(dynamic ones included), and with or without the log-Jacobian. :class:`Space` runs the
model's body under its own replay handler: each latent choice reads its slice of the
vector and maps it onto the domain its distribution declares *at this execution*
(``Distribution.domain(*params)`` with the parameters computed from the other choices
of the same point, so a bound such as ``beta1 < 1 - alpha1`` follows ``alpha1``),
through :func:`genmlx.core.bijectors.biject_to`. Choices made inside generative
functions whose body cannot be inspected (combinators, custom generative functions) are
mapped with a domain given per address (``domains=``), and the call is scored by its
``assess``.

Every method works on one point; :meth:`Space.batched` maps a method over a leading
axis with ``mx.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core import constraints as C
from genmlx.core import handlers as H
from genmlx.core import runtime
from genmlx.core.address import Path, format_address, from_path
from genmlx.core.bijectors import Bijector, biject_to
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.distribution import Distribution
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.gfi import GenerativeFunction
from genmlx.infer._vi_sites import Site

__all__ = ["Space", "UBlock", "domain_from_spec", "nearest_override"]


class UBlock(NamedTuple):
    """One latent choice's slice ``y[start:start + size]`` of the vector.

    ``shape`` is the value's shape and ``ushape`` the unconstrained one (a ``K``-simplex
    has ``K - 1`` numbers); ``override`` is a domain given for the address (else the
    distribution's own, evaluated at each execution); ``call`` is the path of the
    non-``@gen`` call holding the choice, if any.
    """

    path: Path
    shape: tuple[int, ...]
    ushape: tuple[int, ...]
    start: int
    size: int
    override: C.Constraint | None
    call: Path | None


def domain_from_spec(spec: Any, where: str, op: str) -> C.Constraint:
    """A :class:`~genmlx.core.constraints.Constraint` from a user's domain spec: a
    Constraint, a name (``"real"``, ``"positive"``, ``"unit_interval"`` (or ``"unit"``),
    ``"circle"``, ``"simplex"``, ``"ordered"``, ...), or a ``(low, high)`` pair with
    ``None`` or ``±inf`` for an open end."""
    if isinstance(spec, C.Constraint):
        return spec
    if isinstance(spec, str):
        named: dict[str, C.Constraint] = {
            "real": C.real,
            "real_vector": C.real_vector,
            "positive": C.positive,
            "unit": C.unit_interval,
            "unit_interval": C.unit_interval,
            "circle": C.circular,
            "circular": C.circular,
            "simplex": C.simplex,
            "ordered": C.ordered,
            "corr_cholesky": C.corr_cholesky,
            "lower_cholesky": C.lower_cholesky,
            "positive_definite": C.positive_definite,
        }
        if spec not in named:
            raise ValueError(
                f"{op}: unknown domain {spec!r} for {where}; use a genmlx.core.constraints "
                f"domain, one of {sorted(named)}, or a (low, high) pair (None or ±inf for "
                "an open end)"
            )
        return named[spec]
    if isinstance(spec, tuple) and len(spec) == 2:
        low, high = spec
        lo_open = low is None or (isinstance(low, (int, float)) and low == -math.inf)
        hi_open = high is None or (isinstance(high, (int, float)) and high == math.inf)
        if lo_open and hi_open:
            return C.real
        if hi_open:
            return C.greater_than(low)
        if lo_open:
            return C.less_than(high)
        return C.interval(low, high)
    raise TypeError(
        f"{op}: the domain for {where} must be a genmlx.core.constraints domain, a name "
        f"('real', 'positive', 'unit_interval', ...) or a (low, high) pair, got {spec!r}"
    )


def nearest_override(path: Path, overrides: Mapping[Path, Any]) -> Any:
    """The entry for ``path`` or for the nearest address above it (or ``None``)."""
    for i in range(len(path), 0, -1):
        if path[:i] in overrides:
            return overrides[path[:i]]
    return None


def domain_to_spec(dom: C.Constraint | None) -> Any:
    """A domain as plain data (for saving): a name, ``["greater_than", low]``,
    ``["less_than", high]``, ``["interval", low, high]`` or ``None``;
    :func:`domain_from_spec` reads the names and :func:`spec_to_domain` all of them."""
    if dom is None:
        return None
    if isinstance(dom, C.interval):
        return ["interval", dom.low, dom.high]
    if isinstance(dom, C.greater_than):
        return ["greater_than", dom.low]
    if isinstance(dom, C.less_than):
        return ["less_than", dom.high]
    return repr(dom)


def spec_to_domain(spec: Any, op: str) -> C.Constraint | None:
    """The inverse of :func:`domain_to_spec`."""
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)) and spec and spec[0] in ("interval", "greater_than",
                                                                 "less_than"):
        kind = getattr(C, spec[0])
        out: C.Constraint = kind(*spec[1:])
        return out
    return domain_from_spec(spec, "a saved latent choice", op)


class _State:
    __slots__ = ("collect", "ladj", "mode", "obs", "prefix", "score", "values", "y")

    def __init__(
        self, mode: str, y: Any, values: Mapping[Path, mx.array] | None, obs: ChoiceMap
    ) -> None:
        self.mode = mode  # "logp" | "forward" | "inverse"
        self.obs = obs
        self.y = y
        self.values = values or {}
        self.score: Any = 0.0
        self.ladj: Any = 0.0
        self.prefix: Path = ()
        self.collect: dict[Path, mx.array] = {}


class Space:
    """The unconstrained space of a model's latent choices (see the module docstring).

    Build one with :meth:`from_sites`. ``dim`` is the vector's length and ``blocks``
    its layout.
    """

    def __init__(
        self,
        model: GenerativeFunction,
        args: tuple[Any, ...],
        obs: ChoiceMap,
        blocks: list[UBlock],
        op: str,
        unknown: C.Constraint | None = None,
    ) -> None:
        self.model = model
        self.args = args
        self.obs = obs
        self.blocks = blocks
        self.by_path = {b.path: b for b in blocks if b.call is None}
        calls: dict[Path, list[UBlock]] = {}
        for b in blocks:
            if b.call is not None:
                calls.setdefault(b.call, []).append(b)
        self.calls = calls
        self.dim = sum(b.size for b in blocks)
        self.op = op
        self.unknown = unknown

    def _domain_of(self, dist: Distribution, params: tuple[Any, ...], path: Path) -> C.Constraint:
        """The domain ``dist`` declares at this execution (or the assumed one)."""
        dom = dist.domain(*params)
        if dom is None:
            dom = self.unknown
        if dom is None:
            raise ValueError(
                f"{self.op}: the latent choice at {format_address(path)} comes from "
                f"{dist.name!r}, which does not declare its domain "
                "(Distribution.domain); pass domains/supports="
                f"{{{from_path(path)!r}: constraints.positive | 'real' | (low, high)}}"
            )
        return dom

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "args": self.args, "obs": self.obs,
                "blocks": self.blocks, "op": self.op, "unknown": self.unknown}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], state["args"], state["obs"], list(state["blocks"]),  # type: ignore[misc]
                      state["op"], state["unknown"])

    # ------------------------------------------------------------------ building
    @classmethod
    def from_sites(
        cls,
        model: GenerativeFunction,
        args: tuple[Any, ...],
        obs: ChoiceMap,
        sites: list[Site],
        overrides: Mapping[Path, Any],
        op: str,
        table: Mapping[str, Any] | None = None,
        unknown: C.Constraint | None = None,
    ) -> Space:
        """The space of the unobserved ``sites`` (from
        :func:`genmlx.infer._vi_sites.find_sites`).

        Args:
            overrides: per-address domain specs (:func:`domain_from_spec`); an address
                applies to every choice beneath it.
            table: a fallback ``{distribution name: spec or fn(*params) -> (low, high)}``
                for distributions that declare no domain (ADVI's old ``SUPPORTS``).
            unknown: the domain to assume where none is known (``None``: an error).

        Raises:
            TypeError: a latent choice is discrete.
            ValueError: a latent choice's domain is unknown.
        """
        parsed = {
            p: domain_from_spec(s, f"the latent choice at {format_address(p)}", op)
            for p, s in overrides.items()
        }

        blocks: list[UBlock] = []
        start = 0
        for s in sites:
            if s.observed:
                continue
            where = f"the latent choice at {format_address(s.path)}"
            if (s.dist is not None and s.dist.is_discrete) or not mx.issubdtype(
                s.value.dtype, mx.floating
            ):
                name = s.dist.name if s.dist is not None else f"dtype {s.value.dtype}"
                raise TypeError(
                    f"{op}: {where} is discrete ({name}); this method works on continuous "
                    "choices in an unconstrained space. Observe or marginalise it"
                )
            ov = nearest_override(s.path, parsed)
            if s.dist is None and ov is None and unknown is not None:
                ov = unknown
            if s.dist is None and ov is None:
                raise ValueError(
                    f"{op}: {where} is made inside a generative function whose body cannot "
                    "be inspected (a combinator or custom generative function), so its "
                    f"domain is unknown; pass domains/supports={{{from_path(s.path)!r}: "
                    "'real' | 'positive' | (low, high) | a genmlx.core.constraints domain}"
                )
            if ov is None and s.dist is not None and s.dist.domain(*(s.params or ())) is None:
                # no declared domain: the fallback table (evaluated at this execution and
                # then fixed), else the assumed domain, else an error
                spec = (table or {}).get(s.dist.name)
                if spec is not None:
                    spec = tuple(spec(*(s.params or ()))) if callable(spec) else spec
                    ov = domain_from_spec(spec, where, op)
                elif unknown is not None:
                    ov = unknown
                else:
                    raise ValueError(
                        f"{op}: {where} comes from {s.dist.name!r}, which does not declare "
                        "its domain (Distribution.domain); pass domains/supports="
                        f"{{{from_path(s.path)!r}: constraints.positive | 'real' | "
                        "(low, high)}"
                    )
            dom = ov if ov is not None else s.dist.domain(*(s.params or ()))  # type: ignore[union-attr]
            assert dom is not None  # checked above: declared, given or assumed
            if dom.is_discrete:
                raise TypeError(f"{op}: {where} has the discrete domain {dom!r}")
            shape = tuple(s.value.shape)
            ushape = biject_to(dom).unconstrained_shape(shape)
            size = int(math.prod(ushape))
            call = None if s.dist is not None else (s.call if s.call is not None else ())
            blocks.append(UBlock(s.path, shape, ushape, start, size, ov, call))
            start += size
        return cls(model, args, obs, blocks, op, unknown)

    # ------------------------------------------------------------------ one point
    def _bijector(self, b: UBlock, dist: Distribution | None, params: tuple[Any, ...]) -> Bijector:
        if b.override is not None:
            return biject_to(b.override)
        assert dist is not None
        return biject_to(self._domain_of(dist, params, b.path))

    def _handler(self, st: _State) -> Callable[..., tuple[Any, Any]]:
        def handler(state: Any, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]) -> Any:
            full = (*st.prefix, *path)
            if isinstance(gf, Distribution):
                b = self.by_path.get(full)
                if b is not None:
                    bij = self._bijector(b, gf, args)
                    if st.mode == "inverse":
                        x = st.values[full]
                        st.collect[full] = bij.inverse(x).reshape(-1)
                        return state, x
                    u = st.y[b.start : b.start + b.size].reshape(b.ushape)
                    x, ld = bij.forward_and_log_det(u)
                    if st.mode == "forward":
                        st.collect[full] = x
                    else:
                        st.score = st.score + gf.score(x, args)
                        st.ladj = st.ladj + mx.sum(ld)
                    return state, x
                if not st.obs.has_value(full):
                    raise ValueError(
                        f"{self.op}: the choice at {format_address(full)} is neither latent "
                        "nor observed: the model's addresses changed between executions (a "
                        "random structure); this method needs a fixed set of choices"
                    )
                v = as_array(st.obs[full])
                if st.mode == "logp":
                    st.score = st.score + gf.score(v, args)
                return state, v
            if isinstance(gf, DynamicGenerativeFunction):
                outer = st.prefix
                st.prefix = full
                try:
                    value = gf.fn(*args)
                finally:
                    st.prefix = outer
                run = runtime.active_run()
                return (run.state if run is not None else state), value
            sub = st.obs.get_submap(full)
            for b in self.calls.get(full, []):
                rel = b.path[len(full) :]
                bij = self._bijector(b, None, ())
                if st.mode == "inverse":
                    x = st.values[b.path]
                    st.collect[b.path] = bij.inverse(x).reshape(-1)
                else:
                    u = st.y[b.start : b.start + b.size].reshape(b.ushape)
                    x, ld = bij.forward_and_log_det(u)
                    if st.mode == "forward":
                        st.collect[b.path] = x
                    else:
                        st.ladj = st.ladj + mx.sum(ld)
                sub = sub.set_submap(rel, ChoiceMap(x))
            s, retval = gf.assess(args, sub)
            if st.mode == "logp":
                st.score = st.score + s
            return state, retval

        return handler

    def _run(self, st: _State) -> _State:
        name = getattr(self.model, "name", "model")
        with runtime.operation():
            if isinstance(self.model, DynamicGenerativeFunction):
                H.run_body(self.op, name, self.model.fn, self.args, self._handler(st), None)
            else:
                # a distribution or another generative function as the model: one call
                H.run_body(
                    self.op, name, lambda *a: self.model(*a) @ "__root__", self.args,
                    self._root_handler(st), None,
                )
        return st

    def _root_handler(self, st: _State) -> Callable[..., tuple[Any, Any]]:
        inner = self._handler(st)

        def handler(state: Any, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]) -> Any:
            return inner(state, (), gf, args)

        return handler

    def logp(
        self, y: mx.array, *, jacobian: bool = True, obs: ChoiceMap | None = None
    ) -> mx.array:
        """``log p(x(y), observations)`` (plus ``log |det ∂x/∂y|`` with ``jacobian``);
        ``obs`` replaces the observations given at construction (same structure)."""
        st = self._run(_State("logp", y, None, self.obs if obs is None else obs))
        total = st.score + st.ladj if jacobian else st.score
        return total if isinstance(total, mx.array) else mx.array(total, dtype=mx.float32)

    def forward(self, y: mx.array, *, obs: ChoiceMap | None = None) -> list[mx.array]:
        """The latent values at ``y``, in block order."""
        st = self._run(_State("forward", y, None, self.obs if obs is None else obs))
        return [st.collect[b.path] for b in self.blocks]

    def forward_and_ladj(self, y: mx.array) -> tuple[list[mx.array], mx.array]:
        """The latent values at ``y`` and ``log |det ∂x/∂y|``."""
        st = self._run(_State("logp", y, None, self.obs))
        st2 = self._run(_State("forward", y, None, self.obs))
        ladj = st.ladj if isinstance(st.ladj, mx.array) else mx.array(st.ladj, dtype=mx.float32)
        return [st2.collect[b.path] for b in self.blocks], ladj

    def inverse(self, values: list[mx.array], *, obs: ChoiceMap | None = None) -> mx.array:
        """The vector of latent ``values`` (in block order)."""
        vals = {b.path: v.reshape(b.shape).astype(mx.float32) for b, v in zip(self.blocks, values)}
        st = self._run(_State("inverse", None, vals, self.obs if obs is None else obs))
        parts = [st.collect[b.path] for b in self.blocks]
        return parts[0] if len(parts) == 1 else mx.concatenate(parts)

    # ------------------------------------------------------------------ batches
    @staticmethod
    def batched(fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` mapped over a leading axis of its arguments (``mx.vmap``)."""
        vfn = mx.vmap(fn)

        def run(*a: Any) -> Any:
            with runtime.transforming():
                return vfn(*a)

        return run

    def to_choicemap(self, values: list[mx.array], batch: tuple[int, ...] = ()) -> ChoiceMap:
        """Latent values (block order) as a choice map (batched with ``batch``)."""
        return ChoiceMap.from_nodes(
            [(b.path, ChoiceMap(v)) for b, v in zip(self.blocks, values)], batch
        )

    def values_from(self, choices: ChoiceMap, op: str) -> list[mx.array]:
        """The latent values held by ``choices`` (every block must be there)."""
        out = []
        for b in self.blocks:
            if not choices.has_value(b.path):
                raise KeyError(
                    f"{op}: no value for the latent choice at {format_address(b.path)}; "
                    "give every latent address"
                )
            out.append(as_array(choices[b.path]))
        return out
