"""Static model graphs: a ``@gen`` body analysed once, run many times.

:func:`analyze` runs a model's body twice under analysing handlers:

1. **discovery** (eager): every site the body visits, in order — its address, its
   distribution or generative function, its parameters, the value's shape and dtype,
   whether it is observed, and for a distribution its domain;
2. **dependency tracing**: the body is traced once by MLX (``mx.export_function``) with
   the arguments and every site's value as symbolic inputs, and the recorded primitive
   graph says which arguments and earlier sites each site's parameters are computed
   from. A Python branch on a random value (or on an argument array) cannot be traced:
   the model is then *dynamic*.

Nested ``@gen`` calls and ``splice`` are inlined (their sites carry the full path).
Calls of other generative functions are sites too; they are part of a static graph
when their structure is fixed once their arguments are known (distributions, the
fixed-length combinators ``Map``, ``Repeat``, ``Vmap``, ``Unfold``, ``Scan``, ...,
which say so through :meth:`GenerativeFunction.static_structure`), and make the model
dynamic otherwise (``Switch`` on a random index, ``Recurse``, ...).

A static graph drives the compiled tier: the pure log density of
:func:`genmlx.core.logdensity`, the per-signature compiled batched operations and the
dependency-aware ``update``/``regenerate`` (only the sites downstream of what changed
run again; return-value diffs are precise). A dynamic model keeps using the
interpreter, which stays the ground truth.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap, analyze
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def line(xs):
    ...     slope = normal(0.0, 1.0) @ "slope"
    ...     intercept = normal(0.0, 2.0) @ "intercept"
    ...     normal(slope * xs + intercept, 0.5) @ "ys"
    ...     return slope
    >>> xs = mx.linspace(0, 1, 5)
    >>> g = analyze(line, (xs,), choicemap({"ys": 2 * xs}))
    >>> g.is_static, [s.address for s in g.latent_sites()]
    (True, ['slope', 'intercept'])
    >>> sorted(map(str, g.site("ys").parents)), g.site("ys").arg_parents
    (["('intercept',)", "('slope',)"], frozenset({0}))
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import runtime
from genmlx.core.address import Path, format_address, from_path
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.constraints import Constraint
from genmlx.core.errors import GenMLXError
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.tree import TreeDef, flatten, unflatten

__all__ = ["ModelGraph", "Site", "analyze", "cached_graph"]


@dataclass(frozen=True)
class Site:
    """One traced site of a static model.

    Attributes:
        path: the full address (nested ``@gen`` calls are inlined, so a choice inside
            the call at ``"sub"`` has the path ``("sub", "x")``).
        gen_fn: the distribution, or the generative function called.
        kind: ``"choice"`` (a distribution), ``"call"`` (another generative function,
            whose choices live under ``path``) or ``"gen"`` (an inlined ``@gen``
            call: its own choices are separate sites; this node carries its arguments).
        shape: the value's shape (choices), ``None`` otherwise.
        dtype: the value's dtype (choices), ``None`` otherwise.
        observed: the value is given (choices: the observation; calls: every choice
            below ``path`` is given).
        parents: paths of earlier sites whose values the parameters (arguments) of
            this site are computed from.
        arg_parents: positions of the model's arguments they are computed from.
        domain: the distribution's domain at the analysed parameters (choices).
        call_choices: for ``"call"`` sites, ``(sub-path, shape, dtype, observed)`` of
            every choice below the call.
        param_parents: per parameter (argument) of the site, the parents and argument
            positions it reads (used for precise argument diffs of sub-calls).
    """

    path: Path
    gen_fn: GenerativeFunction
    kind: str
    shape: tuple[int, ...] | None
    dtype: Any
    observed: bool
    parents: frozenset[Path]
    arg_parents: frozenset[int]
    domain: Constraint | None = None
    call_choices: tuple[tuple[Path, tuple[int, ...], Any, bool], ...] = ()
    param_parents: tuple[tuple[frozenset[Path], frozenset[int]], ...] = ()
    call_domains: tuple[tuple[Path, Constraint], ...] = ()
    param_affine: tuple[bool, ...] = ()
    param_shapes: tuple[tuple[int, ...] | None, ...] = ()
    param_uniform: tuple[bool, ...] = ()
    param_link: tuple[str | None, ...] = ()

    @property
    def address(self) -> Any:
        """The address as a user writes it (a bare string for one component)."""
        return from_path(self.path)

    @property
    def is_latent(self) -> bool:
        """An unobserved random choice (or a call with unobserved choices)."""
        if self.kind == "choice":
            return not self.observed
        return self.kind == "call" and any(not o for *_, o in self.call_choices)


@dataclass(frozen=True)
class ModelGraph:
    """The analysed structure of a ``@gen`` model for one argument signature.

    Attributes:
        model: the generative function.
        is_static: whether the compiled tier can run it.
        reason: why the model is dynamic (``None`` when static).
        sites: every site in visiting order (empty for a dynamic model whose body
            could not be discovered).
        retval_parents: sites the return value is computed from.
        retval_arg_parents: argument positions the return value is computed from.
        uses_params: the body reads trainable parameters (``param``).
        n_args: number of arguments.
    """

    model: GenerativeFunction
    is_static: bool
    reason: str | None
    sites: tuple[Site, ...]
    retval_parents: frozenset[Path] = frozenset()
    retval_arg_parents: frozenset[int] = frozenset()
    uses_params: bool = False
    n_args: int = 0
    _by_path: dict[Path, Site] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_path.update({s.path: s for s in self.sites})

    # ------------------------------------------------------------------ queries
    def site(self, addr: Any) -> Site:
        """The site at ``addr``.

        Raises:
            KeyError: no site there.
        """
        from genmlx.core.address import to_path

        path = to_path(addr)
        try:
            return self._by_path[path]
        except KeyError:
            raise KeyError(f"the model graph has no site at {format_address(path)}") from None

    def choice_sites(self) -> list[Site]:
        """Random-choice sites (distributions), in visiting order."""
        return [s for s in self.sites if s.kind == "choice"]

    def latent_sites(self) -> list[Site]:
        """Unobserved random choices and calls holding unobserved choices."""
        return [s for s in self.sites if s.is_latent]

    def observed_sites(self) -> list[Site]:
        """Observed random choices (and fully observed calls)."""
        return [s for s in self.sites if s.kind != "gen" and s.observed]

    def children(self, path: Path) -> list[Site]:
        """Sites whose parameters read the value at ``path`` directly."""
        return [s for s in self.sites if path in s.parents]

    def downstream(
        self, paths: set[Path] | frozenset[Path], args: set[int] | frozenset[int] = frozenset()
    ) -> set[Path]:
        """Paths of sites whose parameters depend (transitively) on ``paths`` or on the
        argument positions ``args`` — the sites that must run again when those change.

        The given paths count as changed values; a site downstream of them is itself
        changed when it is sampled anew (the caller decides), so this closure is the
        conservative one: every site whose parameters change is listed, and its value
        is treated as changed too only for calls and inlined ``@gen`` nodes.
        """
        changed = set(paths)
        out: set[Path] = set()
        for s in self.sites:
            if s.parents & changed or s.arg_parents & set(args):
                out.add(s.path)
                if s.kind in ("call", "gen"):
                    changed.add(s.path)
        return out

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        name = getattr(self.model, "name", repr(self.model))
        if not self.is_static:
            head = f"ModelGraph({name}: dynamic — {self.reason})"
            if not self.sites:
                return head
        else:
            n_lat = sum(1 for s in self.sites if s.kind == "choice" and not s.observed)
            n_obs = sum(1 for s in self.sites if s.kind == "choice" and s.observed)
            n_call = sum(1 for s in self.sites if s.kind == "call")
            head = (
                f"ModelGraph({name}: static, {n_lat} latent and {n_obs} observed choices"
                + (f", {n_call} calls" if n_call else "")
                + ")"
            )
        rows = []
        for s in self.sites:
            addr = format_address(s.path)
            fn = getattr(s.gen_fn, "name", type(s.gen_fn).__name__)
            if s.kind == "choice":
                role = "observed" if s.observed else "latent"
                shape = str(s.shape)
                dom = f" on {s.domain!r}" if s.domain is not None and not s.observed else ""
            elif s.kind == "call":
                n = len(s.call_choices)
                n_o = sum(1 for *_, o in s.call_choices if o)
                role = f"call ({n} choices, {n_o} observed)"
                shape, dom = "", ""
            else:
                role, shape, dom = "@gen call", "", ""
            deps = [format_address(p) for p in sorted(s.parents, key=str)]
            deps += [f"arg{i}" for i in sorted(s.arg_parents)]
            rows.append((addr, fn, shape, role + dom, ", ".join(deps) or "-"))
        if rows:
            w = [max(len(r[i]) for r in rows) for i in range(4)]
            lines = [
                f"  {a:<{w[0]}}  {f:<{w[1]}}  {sh:<{w[2]}}  {r:<{w[3]}}  <- {d}"
                for a, f, sh, r, d in rows
            ]
        else:
            lines = []
        ret = [format_address(p) for p in sorted(self.retval_parents, key=str)]
        ret += [f"arg{i}" for i in sorted(self.retval_arg_parents)]
        lines.append(f"  return <- {', '.join(ret) or '-'}")
        if self.is_static:
            from genmlx.core.rewrites import describe_plan

            lines.extend(describe_plan(self))
        return "\n".join([head, *lines])


# ---------------------------------------------------------------------------- discovery
class _Dynamic(GenMLXError):
    """Internal: the body is not static (the message says why)."""


@dataclass
class _Found:
    path: Path
    gen_fn: GenerativeFunction
    kind: str
    args: tuple[Any, ...]
    value: Any  # choice value, call retval, or None for inlined @gen calls
    observed: bool
    call_choices: tuple[tuple[Path, tuple[int, ...], Any, bool], ...] = ()
    call_domains: tuple[tuple[Path, Constraint], ...] = ()


class _Recorder:
    """Mutable recorder shared by the analysing handlers of one body execution."""

    def __init__(self, observations: ChoiceMap) -> None:
        self.obs = observations
        self.found: list[_Found] = []
        self.prefix: Path = ()
        self.key = mx.random.key(0)
        self.count = 0
        self.last: Path | None = None


def _is_gen(gf: Any) -> bool:
    from genmlx.core.dsl import DynamicGenerativeFunction

    return isinstance(gf, DynamicGenerativeFunction)


def _discover_site(rec: _Recorder) -> Callable[..., tuple[Any, Any]]:
    from genmlx.core.distribution import Distribution

    def handler(state: Any, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]) -> Any:
        full = (*rec.prefix, *path)
        node = rec.obs._node(full)
        rec.count += 1
        if isinstance(gf, Distribution):
            if node is not None and node.has_root_value:
                v = as_array(node.value)
                rec.found.append(_Found(full, gf, "choice", args, v, True))
            else:
                k = mx.random.split(rec.key, rec.count + 1)[rec.count]
                # an improper prior has no sampler: analysis needs only a shape
                v = gf.placeholder(*args) if gf.is_improper else gf.sample(k, *args)
                rec.found.append(_Found(full, gf, "choice", args, v, False))
            return state, v
        if _is_gen(gf):
            rec.found.append(_Found(full, gf, "gen", args, None, False))
            outer = rec.prefix
            rec.prefix = full
            try:
                value = gf.fn(*args)  # type: ignore[attr-defined]  # inlined: same handler
            finally:
                rec.prefix = outer
            run = runtime.active_run()
            return (run.state if run is not None else state), value
        reason = gf.static_structure(args)
        if reason is not None:
            raise _Dynamic(f"the call at {format_address(full)} ({gf!r}) {reason}")
        sub = node if node is not None else ChoiceMap.empty()
        tr, _ = gf.generate(args, sub, key=mx.random.key(rec.count))
        choices = tuple(
            (p, tuple(v.shape), v.dtype, sub._node(p) is not None)
            for p, v in tr.get_choices().leaves()
        )
        observed = bool(choices) and all(o for *_, o in choices)
        try:
            doms = gf.choice_domains(args) or {}
        except Exception:
            doms = {}
        cd = tuple((p, doms[p]) for p, *_ in choices if p in doms)
        rec.found.append(_Found(full, gf, "call", args, tr.retval, observed, choices, cd))
        return state, tr.retval

    return handler


def _replay_site(rec: _Recorder, values: list[Any], params_out: list[list[Any]]) -> Any:
    """Pass 2: return the placeholder of each site in order, record its parameters."""

    def handler(state: Any, path: Path, gf: GenerativeFunction, args: tuple[Any, ...]) -> Any:
        full = (*rec.prefix, *path)
        i = len(params_out)
        if i >= len(rec.found):
            raise _Dynamic(
                f"the body visited {format_address(full)} after its discovered sites: its "
                "address set changed between two runs"
            )
        f = rec.found[i]
        # distributions built inside the body (transformed(...), mixture(...)) are new
        # objects each run: equal ones are the same site
        if f.path != full or not (same_gen_fn(f.gen_fn, gf) or f.gen_fn == gf):
            raise _Dynamic(
                f"the address set changed between two runs: site {i} was "
                f"{format_address(f.path)} ({f.gen_fn!r}) and is now "
                f"{format_address(full)} ({gf!r})"
            )
        params_out.append(list(args))
        rec.last = full
        if f.kind == "gen":
            outer = rec.prefix
            rec.prefix = full
            try:
                value = gf.fn(*args)  # type: ignore[attr-defined]
            finally:
                rec.prefix = outer
            run = runtime.active_run()
            return (run.state if run is not None else state), value
        return state, values[i]

    return handler


def _gf_key(gf: Any, depth: int = 0) -> Any:
    if depth > 8:
        return ("id", id(gf))
    items: list[Any] = []
    for k, v in sorted(vars(gf).items()) if hasattr(gf, "__dict__") else ():
        if isinstance(v, GenerativeFunction):
            items.append((k, type(v), _gf_key(v, depth + 1)))
        elif isinstance(v, (tuple, list)) and all(isinstance(x, GenerativeFunction) for x in v):
            items.append((k, tuple((type(x), _gf_key(x, depth + 1)) for x in v)))
        elif v is None or isinstance(v, (bool, int, float, str)):
            items.append((k, v))
        elif isinstance(v, tuple) and all(
            x is None or isinstance(x, (bool, int, float, str)) for x in v
        ):
            items.append((k, v))
        elif callable(v) and hasattr(v, "__code__"):
            items.append((k, "fn", v.__code__))
        elif k.startswith("_") or k in ("__wrapped__",):
            continue
        else:
            items.append((k, "id", id(v)))
    return tuple(items)


def same_gen_fn(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same generative function, or two instances built the same
    way (a combinator made inside a body is a new object on every run)."""
    if a is b:
        return True
    if type(a) is not type(b) or _is_gen(a):
        return False
    try:
        return bool(_gf_key(a) == _gf_key(b))
    except Exception:
        return False


def _arg_signature(args: tuple[Any, ...]) -> tuple[Any, ...]:
    leaves, td = flatten(args)
    return (td, tuple((tuple(x.shape), x.dtype) for x in leaves))


def _obs_structure(obs: ChoiceMap) -> tuple[Any, ...]:
    return tuple(sorted((p, tuple(v.shape)) for p, v in obs.leaves()))


_STRUCTURAL = frozenset(
    {
        "Broadcast",
        "Reshape",
        "ExpandDims",
        "Squeeze",
        "Transpose",
        "Slice",
        "AsType",
        "Copy",
        "StopGradient",
        "Negative",
        "Flatten",
        "Unflatten",
        "Concatenate",
    }
)


_LINKS = frozenset({"Sigmoid", "Exp"})


def _links_from_export(events: list[dict[str, Any]], variable: set[int]) -> list[str | None]:
    """For each exported output: the name of the link (``"Sigmoid"``, ``"Exp"``) when the
    output is that function of an affine function of the ``variable`` inputs that depends
    on them (a generalised linear predictor), else ``None``."""
    var: dict[str, bool] = {}
    aff: dict[str, bool] = {}
    link: dict[str, str | None] = {}
    outputs: list[str] = []
    for e in events:
        t = e.get("type")
        if t == "inputs":
            for j, (name, *_) in enumerate(e["inputs"]):
                var[name], aff[name] = j in variable, True
        elif t == "outputs":
            outputs = [name for name, *_ in e["outputs"]]
        elif t == "constants":
            for name, *_ in e["constants"]:
                var[name], aff[name] = False, True
        elif t == "primitive":
            ins = [name for name, *_ in e["inputs"]]
            v = [var.get(n, False) for n in ins]
            a = [aff.get(n, True) for n in ins]
            prim = e["name"]
            if not any(v):
                ok = True
            elif prim in _STRUCTURAL or prim in ("Add", "Subtract"):
                ok = all(a)
            elif prim in ("Multiply", "Matmul"):
                ok = sum(v) == 1 and all(a)
            elif prim == "Divide":
                ok = v[0] and not any(v[1:]) and a[0]
            elif prim == "Reduce":
                ok = bool(e.get("arguments")) and e["arguments"][0] == 2 and all(a)
            else:
                ok = False
            for name, *_ in e["outputs"]:
                var[name] = any(v)
                aff[name] = ok
                link[name] = prim if (prim in _LINKS and len(ins) == 1 and v[0] and a[0]) else None
    return [link.get(n) for n in outputs]


def _affine_from_export(events: list[dict[str, Any]], variable: set[int]) -> list[bool]:
    """For each exported output: is it an affine function of the inputs at positions
    ``variable`` (the other inputs and constants are fixed)? Decided from the primitives
    (exact, no numerical test): sums, products with a fixed factor, matrix products with
    a fixed side, divisions by a fixed divisor, sums over axes and reshaping operations
    keep affinity; anything else applied to a varying value breaks it."""
    var: dict[str, bool] = {}  # the node depends on a variable input
    aff: dict[str, bool] = {}  # the node is affine in the variable inputs
    outputs: list[str] = []
    for e in events:
        t = e.get("type")
        if t == "inputs":
            for j, (name, *_) in enumerate(e["inputs"]):
                var[name] = j in variable
                aff[name] = True
        elif t == "outputs":
            outputs = [name for name, *_ in e["outputs"]]
        elif t == "constants":
            for name, *_ in e["constants"]:
                var[name], aff[name] = False, True
        elif t == "primitive":
            ins = [name for name, *_ in e["inputs"]]
            v = [var.get(n, False) for n in ins]
            a = [aff.get(n, True) for n in ins]
            prim = e["name"]
            if not any(v):
                ok = True
            elif prim in _STRUCTURAL or prim in ("Add", "Subtract"):
                ok = all(a)
            elif prim in ("Multiply", "Matmul"):
                ok = sum(v) == 1 and all(a)
            elif prim == "Divide":
                ok = v[0] and not any(v[1:]) and a[0]
            elif prim == "Reduce":
                ok = bool(e.get("arguments")) and e["arguments"][0] == 2 and all(a)  # a sum
            elif prim in ("Gather", "Take"):
                ok = v[0] and not any(v[1:]) and a[0]
            elif prim == "Select":
                ok = not v[0] and all(a[1:])
            else:
                ok = False
            for name, *_ in e["outputs"]:
                var[name] = any(v)
                aff[name] = ok
    return [aff.get(n, True) for n in outputs]


_ELEMENTWISE = frozenset(
    {
        "Abs",
        "Add",
        "ArcCos",
        "ArcSin",
        "ArcTan",
        "ArcTanh",
        "AsType",
        "Ceil",
        "Copy",
        "Cos",
        "Cosh",
        "Divide",
        "Equal",
        "Erf",
        "ErfInv",
        "Exp",
        "Expm1",
        "Floor",
        "Greater",
        "GreaterEqual",
        "Less",
        "LessEqual",
        "Log",
        "Log1p",
        "LogAddExp",
        "LogicalAnd",
        "LogicalNot",
        "LogicalOr",
        "Maximum",
        "Minimum",
        "Multiply",
        "Negative",
        "NotEqual",
        "Power",
        "Remainder",
        "Round",
        "Select",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Sqrt",
        "Square",
        "StopGradient",
        "Subtract",
        "Tan",
        "Tanh",
    }
)


def _uniform_from_export(events: list[dict[str, Any]]) -> list[bool]:
    """For each exported output: are all its elements equal whatever the inputs (a
    scalar broadcast, possibly through elementwise operations)?"""
    uni: dict[str, bool] = {}
    outputs: list[str] = []
    for e in events:
        t = e.get("type")
        if t == "inputs":
            for name, shape, *_ in e["inputs"]:
                uni[name] = tuple(shape) == ()
        elif t == "outputs":
            outputs = [name for name, *_ in e["outputs"]]
        elif t == "constants":
            for name, value in e["constants"]:
                try:
                    a = np.asarray(value)
                    uni[name] = a.size <= 1 or bool(np.all(a == a.reshape(-1)[0]))
                except Exception:
                    uni[name] = False
        elif t == "primitive":
            ins = [name for name, *_ in e["inputs"]]
            prim = e["name"]
            if prim in ("Broadcast", "Reshape", "ExpandDims", "Squeeze", "Transpose", "Slice"):
                ok = bool(ins) and uni.get(ins[0], False)
            elif prim in _ELEMENTWISE:
                ok = all(uni.get(n, False) for n in ins)
            elif prim == "Full":
                ok = bool(ins) and uni.get(ins[0], False)
            else:
                ok = False
            for name, shape, *_ in e["outputs"]:
                uni[name] = ok or tuple(shape) == ()
    return [uni.get(n, False) for n in outputs]


def _deps_from_export(
    events: list[dict[str, Any]], n_inputs: int, n_outputs: int
) -> list[frozenset[int]]:
    """For each exported output, the set of input positions it is computed from."""
    inputs: list[str] = []
    outputs: list[str] = []
    deps: dict[str, frozenset[int]] = {}
    for e in events:
        t = e.get("type")
        if t == "inputs":
            inputs = [name for name, *_ in e["inputs"]]
            for j, name in enumerate(inputs):
                deps[name] = frozenset({j})
        elif t == "outputs":
            outputs = [name for name, *_ in e["outputs"]]
        elif t == "constants":
            for name, *_ in e["constants"]:
                deps.setdefault(name, frozenset())
        elif t == "primitive":
            acc: frozenset[int] = frozenset()
            for name, *_ in e["inputs"]:
                acc = acc | deps.get(name, frozenset())
            for name, *_ in e["outputs"]:
                deps[name] = deps.get(name, frozenset()) | acc
    if len(inputs) != n_inputs or len(outputs) != n_outputs:
        raise AssertionError("export graph does not match the traced function")
    return [deps.get(name, frozenset()) for name in outputs]


def _conservative_deps(
    layout: list[tuple[int, int, int]], n_ret: int, n_args: int, value_owner: list[int]
) -> list[frozenset[int]]:
    """Every output of site ``i`` depends on every argument leaf and on the value leaves
    of the sites before ``i``; the return value on everything."""
    out: list[frozenset[int]] = []
    for i, _, n in layout:
        ix = frozenset(range(n_args)) | frozenset(
            n_args + k for k, owner in enumerate(value_owner) if owner < i
        )
        out.extend([ix] * n)
    everything = frozenset(range(n_args + len(value_owner)))
    out.extend([everything] * n_ret)
    return out or [everything]


_uses_params: threading.local = threading.local()


def _param_hook() -> None:
    flag = getattr(_uses_params, "flag", None)
    if flag is not None:
        flag[0] = True


def _placeholder(tree: Any) -> Any:
    """The same structure with every array replaced by ones of its shape and dtype."""
    leaves, td = flatten(tree)
    return unflatten(td, [mx.ones(x.shape, dtype=x.dtype) for x in leaves])


def _analyze(model: GenerativeFunction, args: tuple[Any, ...], obs: ChoiceMap) -> ModelGraph:
    from genmlx.core import handlers as H
    from genmlx.core import params as P

    if runtime.in_transform():
        # Inside vmap/compile/grad the values are symbolic: analyse the structure with
        # concrete stand-ins of the same shapes and dtypes. The graph depends only on
        # the signature (a body whose structure depends on values is found dynamic
        # by the dependency trace whatever the values), so the result is the same.
        args = _placeholder(args)
        obs = _placeholder(obs)

    if not _is_gen(model):
        raise TypeError(
            f"analyze: expected a @gen function, got {model!r}; wrap a distribution or "
            "combinator in a @gen body to analyse it"
        )
    name = model.name
    fn: Any = model.fn  # type: ignore[attr-defined]
    n_args = len(args)
    rec = _Recorder(obs)
    flag = [False]
    _uses_params.flag = flag
    token = P._OBSERVER.set(_param_hook)
    try:
        # ---------------------------------------------------------------- pass 1
        try:
            H.run_body("analyze", name, fn, args, _discover_site(rec), None)
        except _Dynamic as e:
            return ModelGraph(model, False, str(e), (), n_args=n_args)
        except GenMLXError as e:
            return ModelGraph(model, False, f"its body cannot run once: {e}", (), n_args=n_args)
        found = rec.found
        # ---------------------------------------------------------------- pass 2
        arg_leaves, arg_td = flatten(args)
        arg_owner = _arg_owners(args)
        value_leaves: list[mx.array] = []
        value_tds: list[TreeDef | None] = []
        value_owner: list[int] = []
        for i, f in enumerate(found):
            if f.kind == "gen":
                value_tds.append(None)
                continue
            lv, td = flatten(f.value)
            value_tds.append(td)
            value_leaves.extend(lv)
            value_owner.extend([i] * len(lv))
        n_in = len(arg_leaves) + len(value_leaves)
        params_out: list[list[Any]] = []
        box: dict[str, Any] = {}

        def traced(*inputs: mx.array) -> tuple[mx.array, ...]:
            a = unflatten(arg_td, list(inputs[: len(arg_leaves)]))
            rest = list(inputs[len(arg_leaves) :])
            values: list[Any] = []
            pos = 0
            for td in value_tds:
                if td is None:
                    values.append(None)
                    continue
                values.append(unflatten(td, rest[pos : pos + td.num_leaves]))
                pos += td.num_leaves
            params_out.clear()
            rec.prefix = ()
            rec.last = None
            _, retval = H.run_body(
                "analyze",
                name,
                fn,
                a,
                _replay_site(rec, values, params_out),
                None,
            )
            if len(params_out) != len(found):
                raise _Dynamic(
                    f"the body visited {len(params_out)} sites on a second run and "
                    f"{len(found)} on the first: its address set changed between two runs"
                )
            outs: list[mx.array] = []
            layout: list[tuple[int, int, int]] = []  # (site, param index, n leaves)
            for i, ps in enumerate(params_out):
                for j, p in enumerate(ps):
                    lv, _ = flatten(p)
                    outs.extend(lv)
                    layout.append((i, j, len(lv)))
            rl, _ = flatten(retval)
            box["layout"] = layout
            box["n_ret"] = len(rl)
            outs.extend(rl)
            # export needs at least one output and arrays it can name
            return tuple(mx.array(x) if not isinstance(x, mx.array) else x for x in outs) or (
                mx.array(0.0),
            )

        events: list[dict[str, Any]] = []
        conservative = False
        try:
            with runtime.transforming():
                mx.export_function(events.append, traced, *arg_leaves, *value_leaves)
        except _Dynamic as e:
            return ModelGraph(model, False, str(e), (), n_args=n_args)
        except ValueError as e:
            if runtime.is_transform_eval_error(e) or "BatchedControlFlow" in type(e).__name__:
                where = (
                    f"after the choice at {format_address(rec.last)}"
                    if rec.last is not None
                    else "before its first random choice"
                )
                return ModelGraph(
                    model,
                    False,
                    f"its body needs the concrete value of an array {where} (a Python "
                    "`if`/`while`, bool(), float() or .item() on a random value or an "
                    "argument array), so its structure can depend on the values",
                    (),
                    n_args=n_args,
                )
            # The body traced (its structure is static) but MLX cannot export one of
            # its primitives (an mx.custom_function such as a differentiable Cholesky):
            # fall back to the conservative dependencies (every earlier site and
            # argument), which are always a superset of the true ones.
            if "Unable to get state" not in str(e) or "layout" not in box:
                raise
            conservative = True
        n_out_total = sum(n for *_, n in box["layout"]) + box["n_ret"]
        n_out = n_out_total if n_out_total else 1
        if conservative:
            deps = _conservative_deps(box["layout"], box["n_ret"], len(arg_leaves), value_owner)
            # without the primitive graph nothing is known to be affine or uniform
            affine = [False] * n_out
            uniform = [False] * n_out
            links: list[str | None] = [None] * n_out
        else:
            deps = _deps_from_export(events, n_in, n_out)
            affine = _affine_from_export(events, set(range(len(arg_leaves), n_in)))
            uniform = _uniform_from_export(events)
            links = _links_from_export(events, set(range(len(arg_leaves), n_in)))
    finally:
        P._OBSERVER.reset(token)
        _uses_params.flag = None

    def classify(ix: frozenset[int]) -> tuple[frozenset[Path], frozenset[int]]:
        sites: set[Path] = set()
        argpos: set[int] = set()
        for j in ix:
            if j < len(arg_leaves):
                argpos.add(arg_owner[j])
            else:
                sites.add(found[value_owner[j - len(arg_leaves)]].path)
        return frozenset(sites), frozenset(argpos)

    per_site: list[list[tuple[frozenset[Path], frozenset[int]]]] = [[] for _ in found]
    per_affine: list[list[bool]] = [[] for _ in found]
    per_uniform: list[list[bool]] = [[] for _ in found]
    per_link: list[list[str | None]] = [[] for _ in found]
    pos = 0
    for i, _, n in box["layout"]:
        acc: frozenset[int] = frozenset()
        for d in deps[pos : pos + n]:
            acc = acc | d
        per_affine[i].append(all(affine[pos : pos + n]) if n else True)
        per_uniform[i].append(all(uniform[pos : pos + n]) if n else True)
        per_link[i].append(links[pos] if n == 1 else None)
        pos += n
        per_site[i].append(classify(acc))
    ret_ix: frozenset[int] = frozenset()
    for d in deps[pos : pos + box["n_ret"]]:
        ret_ix = ret_ix | d
    ret_parents, ret_args = classify(ret_ix)

    sites = []
    for i, f in enumerate(found):
        pp = tuple(per_site[i])
        parents = frozenset().union(*(p for p, _ in pp)) if pp else frozenset()
        argp = frozenset().union(*(a for _, a in pp)) if pp else frozenset()
        if f.kind == "choice":
            dom = None
            try:
                dom = f.gen_fn.domain(*f.args)  # type: ignore[attr-defined]
            except Exception:
                dom = None
            shapes = tuple(
                tuple(a.shape)
                if isinstance(a, mx.array)
                else (() if isinstance(a, (int, float)) else None)
                for a in f.args
            )
            sites.append(
                Site(
                    f.path,
                    f.gen_fn,
                    "choice",
                    tuple(f.value.shape),
                    f.value.dtype,
                    f.observed,
                    parents,
                    argp,
                    dom,
                    (),
                    pp,
                    (),
                    tuple(per_affine[i]),
                    shapes,
                    tuple(per_uniform[i]),
                    tuple(per_link[i]),
                )
            )
        else:
            sites.append(
                Site(
                    f.path,
                    f.gen_fn,
                    f.kind,
                    None,
                    None,
                    f.observed,
                    parents,
                    argp,
                    None,
                    f.call_choices,
                    pp,
                    f.call_domains,
                )
            )
    # the parents of an inlined @gen call's sites include the call's own parents
    # through its arguments already (the trace follows the data), so nothing to add.
    return ModelGraph(
        model,
        True,
        None,
        tuple(sites),
        ret_parents,
        ret_args,
        flag[0],
        n_args,
    )


def _arg_owners(args: tuple[Any, ...]) -> list[int]:
    owners: list[int] = []
    for i, a in enumerate(args):
        lv, _ = flatten(a)
        owners.extend([i] * len(lv))
    return owners


# ---------------------------------------------------------------------------- caching
_CACHE: weakref.WeakKeyDictionary[Any, dict[Any, ModelGraph]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_MAX_PER_MODEL = 64


def cached_graph(model: GenerativeFunction, args: tuple[Any, ...]) -> ModelGraph | None:
    """The structural graph of ``model`` for ``args``' signature if it was analysed
    already (``None`` otherwise). Never analyses: safe under transformations."""
    table = _CACHE.get(model)
    if not table:
        return None
    try:
        return table.get(_graph_key(model, args))
    except TypeError:
        return None


def _graph_key(model: GenerativeFunction, args: tuple[Any, ...]) -> Any:
    """The structural-graph cache key: the arguments' signature and the identity of the
    arrays the body reads from globals or closures (rebinding one re-analyses)."""
    from genmlx.core.static import globals_fingerprint

    return (_arg_signature(args), globals_fingerprint(model))


def structural_graph(model: GenerativeFunction, args: tuple[Any, ...]) -> ModelGraph:
    """The graph of ``model`` for ``args``' signature, analysed on first use (no
    observations: every choice is labelled latent). Must run outside transformations."""
    sig = _graph_key(model, args)
    with _LOCK:
        table = _CACHE.setdefault(model, {})
        g = table.get(sig)
    if g is not None:
        return g
    g = _analyze(model, args, ChoiceMap.empty())
    with _LOCK:
        if len(table) >= _MAX_PER_MODEL:
            table.pop(next(iter(table)))
        table[sig] = g
    return g


def analyze(
    model: GenerativeFunction, args: tuple[Any, ...] = (), observations: Any = None
) -> ModelGraph:
    """Analyse ``model`` called with ``args`` into a :class:`ModelGraph`.

    Args:
        model: a ``@gen`` function.
        args: its arguments (the graph is valid for every call with the same argument
            structure, shapes and dtypes, and the same non-array argument values).
        observations: a ChoiceMap (or dict) of observed values; they label sites as
            observed and are used as those sites' values during the analysis.

    Returns:
        The graph; ``graph.is_static`` says whether the compiled tier applies, and
        ``graph.reason`` why not.

    Raises:
        TypeError: ``model`` is not a ``@gen`` function.
    """
    from genmlx.core.checks import as_args, as_choicemap

    args = as_args(args, "analyze")
    obs = as_choicemap(observations, "analyze", "observations")
    if obs.is_empty:
        return structural_graph(model, args)
    base = structural_graph(model, args)
    if not base.is_static:
        return base
    return _label(base, obs)


def _label(g: ModelGraph, obs: ChoiceMap) -> ModelGraph:
    """The graph with sites labelled observed where ``obs`` gives their values."""
    sites = []
    for s in g.sites:
        if s.kind == "choice":
            node = obs._node(s.path)
            sites.append(_replace(s, observed=node is not None and node.has_root_value))
        elif s.kind == "call":
            sub = obs._node(s.path) or ChoiceMap.empty()
            cc = tuple((p, sh, dt, sub._node(p) is not None) for p, sh, dt, _ in s.call_choices)
            sites.append(_replace(s, call_choices=cc, observed=bool(cc) and all(o for *_, o in cc)))
        else:
            sites.append(s)
    return ModelGraph(
        g.model,
        g.is_static,
        g.reason,
        tuple(sites),
        g.retval_parents,
        g.retval_arg_parents,
        g.uses_params,
        g.n_args,
    )


def _replace(s: Site, **kw: Any) -> Site:
    from dataclasses import replace

    return replace(s, **kw)


def iter_latent_leaves(g: ModelGraph) -> Iterator[tuple[Path, Site, tuple[int, ...], Any]]:
    """``(path, site, shape, dtype)`` of every latent choice, calls' choices included."""
    for s in g.sites:
        if s.kind == "choice" and not s.observed:
            assert s.shape is not None
            yield s.path, s, s.shape, s.dtype
        elif s.kind == "call":
            for p, sh, dt, o in s.call_choices:
                if not o:
                    yield (*s.path, *p), s, sh, dt


def _size(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))
