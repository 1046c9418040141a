"""Algebraic simplification of static models: likelihoods from sufficient statistics.

Three rewrites, found on the model graph (:func:`genmlx.core.analyze`) and applied
automatically by ``generate``/``vgenerate`` (importance sampling), ``assess``/``vassess``
and the compiled log density (:func:`genmlx.core.logdensity`):

* **affine Gaussian** — an observed Gaussian site ``y ~ N(μ(θ), σ)`` whose mean is an
  affine function of latent values ``θ`` (``a + b * xs + c * xs**2``, ``X @ w + b``;
  decided exactly from the primitives that compute it) and whose scale is a fixed array
  or a per-execution scalar. With ``μ(θ) = c + Φθ`` and ``r = y − c``, the
  log-likelihood is ``−n log σ − n/2 log 2π − (RSS + (θ − θ̂)ᵀ ΦᵀΦ (θ − θ̂)) / 2σ²``,
  where ``θ̂`` is the least-squares solution and ``RSS`` its residual sum of squares —
  computed once per data set (in float64), so each particle costs ``O(p²)`` instead of
  ``O(n)``, and the centred form has no cancellation;
* **generalised linear predictor** — an observed site of a distribution that declares a
  link (``bernoulli`` through ``sigmoid``, ``poisson`` through ``exp``) whose parameter is
  that link of an affine function ``η = c + Φθ`` of latent values (``sigmoid(X @ w + b)``):
  ``Φ`` and ``c`` are computed once per data set and the batched ``η`` is one matrix
  product for all executions (not one matrix-vector product per execution, which is how
  ``mx.vmap`` runs ``X @ w``), and the log density is the distribution's stable form in
  ``η`` (``y η − softplus(η)``; ``y η − exp(η) − log y!``);
* **iid statistics** — an observed vector of independent draws from one distribution
  with per-execution scalar parameters (a shared coin, a shared Poisson rate): the sum
  of log densities is computed from sufficient statistics the distribution provides
  (counts, sums; :meth:`genmlx.core.Distribution.iid_statistics`).

A fourth kind, **fused** (:mod:`genmlx.core.fused`), is chosen on a GPU with a
custom-kernel backend (CUDA or Metal): an observed site whose distribution declares
:attr:`~genmlx.core.Distribution.fused_log_prob` and whose parameter is (a link of) an
affine function ``η = c + Φθ`` of latent values is scored by one kernel that loops over
the data per particle, without the ``[N, n]`` array. It takes the sites the algebraic
rewrites leave (a Laplace or Student-t likelihood, a normal with a latent per-point
scale is not fused), replaces the generalised-linear matrix product on the GPU (that
path still builds ``[N, n]`` predictors; the kernel does not), and takes the affine
Gaussian sites too when the algebraic simplification is off.

Each rewrite gives the direct evaluation's number up to float32 rounding (tested), is
listed by the graph's ``repr``, and is switched off with ``GENMLX_REWRITES=0`` or
``with rewrites.enabled(False):``; fused kernels have their own switch
(``GENMLX_FUSED=0`` or ``with fused.enabled(False):``). It applies only to the
observations it was prepared for (the very array objects given as constraints and
arguments); anything else uses the direct evaluation.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.core.testing.models import normal
    >>> @gen
    ... def line(xs):
    ...     a = normal(0.0, 1.0) @ "a"
    ...     b = normal(0.0, 1.0) @ "b"
    ...     normal(a + b * xs, 0.1) @ "ys"
    >>> xs = mx.linspace(0, 1, 20)
    >>> obs = choicemap({"ys": 1.0 + 2.0 * xs})
    >>> with enabled(False):
    ...     _, w0 = line.vgenerate((xs,), obs, 8, key=mx.random.key(0))
    >>> _, w1 = line.vgenerate((xs,), obs, 8, key=mx.random.key(0))
    >>> bool(mx.allclose(w0, w1, rtol=1e-4, atol=1e-2))
    True
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import fused
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import ChoiceMap, as_array

__all__ = ["Rewrite", "choose", "enabled", "is_enabled", "plan"]

_ON: ContextVar[bool] = ContextVar(
    "genmlx_rewrites", default=os.environ.get("GENMLX_REWRITES", "1") != "0"
)
_LOG_2PI = math.log(2.0 * math.pi)
_ELEMENTWISE_P = 16  # the GLM predictor without a matrix product on GPUs up to here


def is_enabled() -> bool:
    """Whether algebraic rewrites are applied."""
    return _ON.get()


@contextlib.contextmanager
def enabled(on: bool) -> Iterator[None]:
    """Turn the rewrites on or off inside a ``with`` block."""
    token = _ON.set(on)
    try:
        yield
    finally:
        _ON.reset(token)


@dataclass(frozen=True)
class Rewrite:
    """A rewrite of one observed site.

    Attributes:
        path: the observed site.
        kind: ``"affine_gaussian"``, ``"glm"``, ``"iid"`` or ``"fused"``.
        parents: the latent sites the mean is affine in (affine Gaussian), in order.
        parent_shapes: their value shapes.
        scale: ``"fixed"`` (an array computed from the arguments only) or ``"scalar"``
            (one number per execution) for the affine Gaussian; the link's name for
            the generalised linear predictor and fused kernels (``""``: identity).
        extras: fused kernels: per other parameter of the distribution, ``"fixed"``
            (computed from the arguments only) or ``"scalar"`` (one number per
            execution).
        backend: fused kernels: ``"cuda"``, ``"metal"`` or ``"reference"``.
        dist: fused kernels: the formula's name (for the description).
        extra_names: fused kernels: the names of the other parameters.
    """

    path: Path
    kind: str
    parents: tuple[Path, ...] = ()
    parent_shapes: tuple[tuple[int, ...], ...] = ()
    scale: str = ""
    extras: tuple[str, ...] = ()
    backend: str = ""
    dist: str = ""
    extra_names: tuple[str, ...] = ()

    def _static_key(self) -> object:
        return (
            self.path,
            self.kind,
            self.parents,
            self.parent_shapes,
            self.scale,
            self.extras,
            self.backend,
        )

    def describe(self) -> str:
        """A short description for the graph's ``repr``."""
        if self.kind == "affine_gaussian":
            p = sum(int(np.prod(s)) for s in self.parent_shapes)
            who = ", ".join(format_address(q) for q in self.parents)
            return f"affine Gaussian in {who} (p={p}, {self.scale} scale): O(p²) per execution"
        if self.kind == "glm":
            p = sum(int(np.prod(s)) for s in self.parent_shapes)
            who = ", ".join(format_address(q) for q in self.parents)
            return (
                f"generalised linear predictor ({self.scale}) in {who} (p={p}): one matrix "
                "product for all executions"
            )
        if self.kind == "fused":
            p = sum(int(np.prod(s)) for s in self.parent_shapes)
            who = ", ".join(format_address(q) for q in self.parents)
            link = {"": "", "Sigmoid": " through sigmoid", "Exp": " through exp"}.get(
                self.scale, f" through {self.scale}"
            )
            ex = "".join(f", {e} {k}" for e, k in zip(self.extra_names, self.extras))
            return (
                f"fused kernel ({self.dist}{link}, eta = c + Φθ in {who}, p={p}{ex}): one "
                "pass per particle, no [N, n] array"
            )
        return "iid statistics: one reduction of sufficient statistics"


def plan(graph: Any) -> tuple[Rewrite, ...]:
    """The rewrites that apply to a static graph's sites (structure only: which sites
    could be rewritten when observed)."""
    if not graph.is_static:
        return ()
    by_path = {s.path: s for s in graph.sites}
    out = []
    for s in graph.sites:
        if s.kind != "choice" or s.shape is None or len(s.shape) == 0 or _nested(s.path, graph):
            continue
        gf = s.gen_fn
        if getattr(gf, "gaussian_location_scale", False) and len(s.param_affine) >= 2:
            parents = tuple(sorted(s.param_parents[0][0], key=repr)) if s.param_parents else ()
            sig_parents, sig_args = s.param_parents[1] if len(s.param_parents) > 1 else ((), ())
            del sig_args
            ok_parents = all(
                p in by_path
                and by_path[p].kind == "choice"
                and not _nested(p, graph)
                and by_path[p].dtype is not None
                and mx.issubdtype(by_path[p].dtype, mx.floating)
                for p in parents
            )
            sig_shape = s.param_shapes[1] if len(s.param_shapes) > 1 else None
            if sig_parents:
                scale = "scalar" if sig_shape == () else ""
            else:
                scale = "fixed"
            if (
                s.param_affine[0]
                and ok_parents
                and parents
                and scale
                and not (set(sig_parents) & set())
            ):
                shapes = tuple(tuple(by_path[p].shape or ()) for p in parents)
                out.append(Rewrite(s.path, "affine_gaussian", parents, shapes, scale))
                continue
        link = getattr(gf, "glm_link", None)
        if (
            link is not None
            and s.param_link
            and s.param_link[0] == link
            and s.param_parents
            and not any(len(pp[0]) for pp in s.param_parents[1:])
        ):
            parents = tuple(sorted(s.param_parents[0][0], key=repr))
            if parents and all(
                p in by_path
                and by_path[p].kind == "choice"
                and not _nested(p, graph)
                and by_path[p].dtype is not None
                and mx.issubdtype(by_path[p].dtype, mx.floating)
                for p in parents
            ):
                shapes = tuple(tuple(by_path[p].shape or ()) for p in parents)
                out.append(Rewrite(s.path, "glm", parents, shapes, link))
                continue
        if (
            getattr(gf, "has_iid_statistics", False)
            and s.param_uniform
            and all(s.param_uniform)
            and all(sh is not None for sh in s.param_shapes)
        ):
            out.append(Rewrite(s.path, "iid"))
    return tuple(out)


def _float_latents(parents: tuple[Path, ...], graph: Any) -> bool:
    by_path = {s.path: s for s in graph.sites}
    return all(
        p in by_path
        and by_path[p].kind == "choice"
        and not by_path[p].observed
        and not _nested(p, graph)
        and by_path[p].dtype is not None
        and mx.issubdtype(by_path[p].dtype, mx.floating)
        for p in parents
    )


def fused_plan(graph: Any, backend: str = "reference") -> tuple[Rewrite, ...]:
    """The sites a fused kernel could score (structure only): observed-able choices of a
    distribution with :attr:`~genmlx.core.Distribution.fused_log_prob` whose parameter
    at its ``loc`` is an affine function of latent float choices (through the declared
    link), with at most :data:`genmlx.core.fused.MAX_P` coefficients, and whose other
    parameters are computed from the arguments only (``"fixed"``) or are one number per
    execution (``"scalar"``)."""
    if not graph.is_static:
        return ()
    out = []
    for s in graph.sites:
        if s.kind != "choice" or s.shape is None or len(s.shape) == 0 or _nested(s.path, graph):
            continue
        decl = getattr(s.gen_fn, "fused_log_prob", None)
        if not isinstance(decl, fused.FusedLogProb):
            continue
        loc = decl.loc
        n_params = len(decl.extras) + 1
        if len(s.param_parents) != n_params or len(s.param_affine) != n_params:
            continue
        if decl.link is None:
            if not s.param_affine[loc]:
                continue
        elif not (s.param_link and s.param_link[loc] == decl.link):
            continue
        parents = tuple(sorted(s.param_parents[loc][0], key=repr))
        if not parents or not _float_latents(parents, graph):
            continue
        by_path = {q.path: q for q in graph.sites}
        shapes = tuple(tuple(by_path[q].shape or ()) for q in parents)
        if not 1 <= sum(int(np.prod(sh)) for sh in shapes) <= fused.MAX_P:
            continue
        kinds: list[str] = []
        for j in range(n_params):
            if j == loc:
                continue
            latent_parents = s.param_parents[j][0]
            if not latent_parents:
                kinds.append("fixed")
            elif s.param_shapes[j] == () or (s.param_uniform and s.param_uniform[j]):
                kinds.append("scalar")
            else:
                break
        else:
            out.append(
                Rewrite(
                    s.path,
                    "fused",
                    parents,
                    shapes,
                    decl.link or "",
                    tuple(kinds),
                    backend,
                    decl.name,
                    decl.extras,
                )
            )
    return tuple(out)


def choose(graph: Any) -> tuple[Rewrite, ...]:
    """The rewrites used now, under the current switches: the algebraic ones
    (:func:`plan`) when ``GENMLX_REWRITES`` is on, and fused kernels
    (:func:`fused_plan`) when a fused backend is active — for the sites the algebraic
    rewrites do not remove and in place of the generalised-linear matrix product."""
    alg = {r.path: r for r in plan(graph)} if _ON.get() else {}
    backend = fused.active_backend()
    fz = {r.path: r for r in fused_plan(graph, backend)} if backend is not None else {}
    out = []
    for s in graph.sites:
        a, f = alg.get(s.path), fz.get(s.path)
        if f is not None and (a is None or a.kind == "glm"):
            out.append(f)
        elif a is not None:
            out.append(a)
    return tuple(out)


def describe_plan(graph: Any) -> list[str]:
    """Lines for the graph's ``repr``: every algebraic rewrite that applies to an
    observed site (marked when switched off or replaced), and every fused site."""
    chosen = {r.path: r for r in choose(graph)}
    by_path = {s.path: s for s in graph.sites}
    lines = []
    for r in plan(graph):
        if not by_path[r.path].observed:
            continue
        c = chosen.get(r.path)
        if not _ON.get():
            note = " [rewrites off]"
        elif c is not None and c.kind == "fused":
            note = " [replaced by the fused kernel]"
        else:
            note = ""
        lines.append(f"  rewrite {format_address(r.path)}: {r.describe()}{note}")
    for r in chosen.values():
        if r.kind == "fused" and by_path[r.path].observed:
            lines.append(f"  fused {format_address(r.path)}: {r.describe()}")
    return lines


def _nested(path: Path, graph: Any) -> bool:
    return any(
        q.kind == "gen" and len(path) > len(q.path) and path[: len(q.path)] == q.path
        for q in graph.sites
    )


# ---------------------------------------------------------------------------- prepare
class Prepared:
    """Data constants of the rewrites of one model for one data set.

    ``arrays`` hold every number as MLX arrays (they travel into compiled programs as
    inputs); ``specs`` say how to use them.
    """

    def __init__(self, gf: Any, specs: dict[Path, tuple[Rewrite, dict[str, mx.array]]]) -> None:
        self.gf = gf
        self.specs = specs
        self._tree_memo: Any = None  # flattened once (see genmlx.core.tree.flatten)

    def _tree_memo_set(self, memo: Any) -> None:
        self._tree_memo = memo

    def _tree_flatten(self) -> tuple[list[Any], Any]:
        paths = tuple(self.specs)
        children = [self.specs[p][1] for p in paths]
        return children, (self.gf, paths, tuple(self.specs[p][0] for p in paths))

    @classmethod
    def _tree_unflatten(cls, aux: Any, children: list[Any]) -> Prepared:
        gf, paths, rws = aux
        return cls(gf, {p: (r, c) for p, r, c in zip(paths, rws, children)})


_ACTIVE: ContextVar[Prepared | None] = ContextVar("genmlx_rewrites_active", default=None)


@contextlib.contextmanager
def active(prepared: Prepared | None) -> Iterator[None]:
    """Apply ``prepared`` inside the block (to its model's top-level sites)."""
    token = _ACTIVE.set(prepared)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def current(gf: Any) -> Prepared | None:
    """The rewrites active for ``gf``'s own sites, if any."""
    p = _ACTIVE.get()
    return p if p is not None and p.gf is gf else None


_CACHE: dict[Any, tuple[list[Any], Prepared | None]] = {}


def prepare(gf: Any, args: tuple[Any, ...], observations: ChoiceMap) -> Prepared | None:
    """Data constants for ``gf``'s rewrites with these arguments and observations, or
    ``None`` (nothing to rewrite, rewrites off, or a model never analysed). Works inside
    a caller's ``mx.compile``/``vmap`` when the data are concrete (captured); symbolic
    data give ``None``. Cached by the identity of the data arrays."""
    from genmlx.core import runtime

    if not (_ON.get() or fused.active_backend() is not None) or observations.is_empty:
        return None
    try:
        return _prepare(gf, args, observations)
    except ValueError as e:
        # inside a caller's vmap/compile with symbolic data: the statistics cannot be
        # computed (concrete, captured data can: the rewrite then applies there too)
        if runtime.is_transform_eval_error(e):
            return None
        raise


_LAST: dict[int, tuple[Any, ...]] = {}


def _prepare(gf: Any, args: tuple[Any, ...], observations: ChoiceMap) -> Prepared | None:
    # the same model, argument objects, observations and switches as the last call
    # (importance sampling in a loop): its answer, without re-planning
    from genmlx.core.static import globals_fingerprint

    switches = (_ON.get(), fused.active_backend(), fused.is_enabled(), globals_fingerprint(gf))
    last = _LAST.get(id(gf))
    if (
        last is not None
        and last[0] is gf
        and last[1] is observations
        and last[2] == switches
        and len(last[3]) == len(args)
        and all(a is b for a, b in zip(last[3], args))
    ):
        out: Prepared | None = last[4]
        return out
    res = _prepare_new(gf, args, observations)
    if res is not None and all(
        isinstance(a, (mx.array, int, float, bool, str, type(None))) for a in args
    ):
        # (immutable arguments only: a list argument may change in place; and not
        # "nothing to rewrite", which may be "not analysed yet")
        if len(_LAST) > 64:
            _LAST.clear()
        _LAST[id(gf)] = (gf, observations, switches, tuple(args), res)
    return res


def _prepare_new(gf: Any, args: tuple[Any, ...], observations: ChoiceMap) -> Prepared | None:
    from genmlx.core.graph import cached_graph

    if observations.batch_shape or observations.is_masked:
        return None
    g = cached_graph(gf, args)
    if g is None or not g.is_static:
        return None
    rws = [r for r in choose(g) if observations._node(r.path) is not None]
    if not rws:
        return None
    from genmlx.core.tree import flatten

    arg_leaves, _ = flatten(args)
    obs_leaves = [v for _, v in observations.leaves()]
    from genmlx.core.static import globals_fingerprint

    key = (
        id(gf),
        tuple(map(id, arg_leaves)),
        tuple(map(id, obs_leaves)),
        tuple(rws),
        globals_fingerprint(gf),
    )
    hit = _CACHE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], [*arg_leaves, *obs_leaves])):
        return hit[1]
    specs: dict[Path, tuple[Rewrite, dict[str, mx.array]]] = {}
    for r in rws:
        try:
            consts = _constants(gf, args, observations, r, g)
        except Exception:
            consts = None
        if consts is not None:
            specs[r.path] = (r, consts)
    out = Prepared(gf, specs) if specs else None
    if len(_CACHE) > 16:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = ([*arg_leaves, *obs_leaves], out)
    return out


def _site_params(
    gf: Any, args: tuple[Any, ...], obs: ChoiceMap, target: Path, theta: dict[Path, mx.array]
) -> tuple[Any, ...]:
    """Replay the body with the given values at ``theta``'s paths (other latent choices
    take any value) and return the parameters of the site at ``target``."""
    from genmlx.core import handlers as H
    from genmlx.core.distribution import Distribution

    captured: list[tuple[Any, ...]] = []

    def handler(state: Any, path: Path, site: Any, sargs: tuple[Any, ...]) -> Any:
        if path == target:
            captured.append(sargs)
        if path in theta:
            return state, theta[path]
        node = obs._node(path)
        if node is not None and node.has_root_value:
            return state, as_array(node.value)
        if isinstance(site, Distribution):
            return state, site.sample(mx.random.key(0), *sargs)
        return state, site.simulate(sargs, key=mx.random.key(0)).retval

    H.run_body("rewrite", gf.name, gf.fn, args, handler, None)
    if not captured:
        raise ValueError("the site was not visited")
    return captured[0]


def _constants(
    gf: Any, args: tuple[Any, ...], obs: ChoiceMap, r: Rewrite, g: Any
) -> dict[str, mx.array] | None:
    y = as_array(obs._node(r.path).value)  # type: ignore[union-attr]
    if r.kind == "iid":
        site = g.site(r.path)
        stats = site.gen_fn.iid_statistics(y)
        if stats is None:
            return None
        return {f"s{i}": as_array(v) for i, v in enumerate(stats)}
    if r.kind == "glm":
        return _glm_constants(gf, args, obs, r, y)
    if r.kind == "fused":
        return _fused_constants(gf, args, obs, r, y, g.site(r.path).gen_fn)
    yn = np.asarray(y, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(yn)):
        return None
    sizes = [int(np.prod(s)) for s in r.parent_shapes]
    p = sum(sizes)

    def mean_at(vec: mx.array) -> tuple[mx.array, Any]:
        theta, start = {}, 0
        for path, shape, size in zip(r.parents, r.parent_shapes, sizes):
            theta[path] = vec[start : start + size].reshape(shape)
            start += size
        params = _site_params(gf, args, obs, r.path, theta)
        return mx.broadcast_to(as_array(params[0]).astype(mx.float32), y.shape).reshape(-1), params[
            1
        ]

    base_mu, sigma = mean_at(mx.zeros((p,), dtype=mx.float32))
    cols = []
    for k in range(p):
        e = mx.zeros((p,), dtype=mx.float32).at[k].add(1.0)
        cols.append(mean_at(e)[0] - base_mu)
    phi = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)  # [n, p]
    c0 = np.asarray(base_mu, dtype=np.float64)
    resid = yn - c0
    n = yn.shape[0]
    consts: dict[str, mx.array] = {}
    if r.scale == "fixed":
        s = np.broadcast_to(np.asarray(as_array(sigma), dtype=np.float64), y.shape).reshape(-1)
        if not np.all(np.isfinite(s)) or not np.all(s > 0):
            return None
        phi = phi / s[:, None]
        resid = resid / s
        consts["sum_log_s"] = mx.array(float(np.log(s).sum()), dtype=mx.float32)
    a = phi.T @ phi
    b = phi.T @ resid
    theta_hat, *_ = np.linalg.lstsq(phi, resid, rcond=None)
    rss = float(np.sum((resid - phi @ theta_hat) ** 2))
    consts.update(
        A=mx.array(a.astype(np.float32)),
        theta_hat=mx.array(theta_hat.astype(np.float32)),
        rss=mx.array(rss, dtype=mx.float32),
        n=mx.array(float(n), dtype=mx.float32),
    )
    del b
    return consts


def _as_f64(tree: Any) -> Any:
    from genmlx.core.tree import flatten, unflatten

    leaves, td = flatten(tree)
    return unflatten(
        td,
        [x.astype(mx.float64) if mx.issubdtype(x.dtype, mx.floating) else x for x in leaves],
    )


def _fused_constants(
    gf: Any, args: tuple[Any, ...], obs: ChoiceMap, r: Rewrite, y: mx.array, dist: Any
) -> dict[str, mx.array] | None:
    """``Φ``, ``c``, the data as float32 and the data-only term of a fused site
    (``None``: the data are outside the formula's domain — evaluated directly)."""
    decl: fused.FusedLogProb = dist.fused_log_prob
    yn = np.asarray(y.astype(mx.float32) if y.dtype == mx.bool_ else y, dtype=np.float64)
    if decl.data_ok is not None and not decl.data_ok(yn):
        return None
    base = _glm_constants(gf, args, obs, r, y, decl.loc)
    if base is None:
        return None
    d = decl.data_term(yn) if decl.data_term is not None else 0.0
    if not math.isfinite(d):
        return None
    return {
        "phi": base["phi"],
        "c": base["c"],
        "y": mx.array(yn.astype(np.float32)),
        "n": mx.array(float(yn.size), dtype=mx.float32),
        "d": mx.array(d, dtype=mx.float32),
    }


def _glm_constants(
    gf: Any, args: tuple[Any, ...], obs: ChoiceMap, r: Rewrite, y: mx.array, loc: int = 0
) -> dict[str, mx.array] | None:
    """``Φ`` and ``c`` of the linear predictor (the parameter at position ``loc``),
    from the parameter at ``θ = 0`` and the unit vectors with the link inverted — in
    float64 on the CPU (MLX's float64 ``exp`` and ``log`` are float32-accurate, which is
    what ``Φ`` and ``c`` are kept in)."""
    sizes = [int(np.prod(s)) for s in r.parent_shapes]
    p = sum(sizes)
    with mx.stream(mx.cpu):
        args64 = _as_f64(args)

        def eta_at(vec: mx.array) -> np.ndarray:
            theta, start = {}, 0
            for path, shape, size in zip(r.parents, r.parent_shapes, sizes):
                theta[path] = vec[start : start + size].reshape(shape)
                start += size
            param = as_array(_site_params(gf, args64, obs, r.path, theta)[loc])
            q = np.asarray(mx.broadcast_to(param, y.shape).astype(mx.float64), np.float64)
            q = q.reshape(-1)
            if r.scale == "Sigmoid":
                return np.log(q) - np.log1p(-q)
            if r.scale == "Exp":
                return np.log(q)
            return q

        base = eta_at(mx.zeros((p,), dtype=mx.float64))
        cols = [
            eta_at(mx.zeros((p,), dtype=mx.float64).at[k].add(1.0)) - base for k in range(p)
        ]
    phi = np.stack(cols, axis=1)
    if not (np.all(np.isfinite(phi)) and np.all(np.isfinite(base))):
        return None  # the link saturated in float64 at the probe points: not rewritten
    return {
        "phi": mx.array(phi.astype(np.float32)),
        "c": mx.array(base.astype(np.float32)),
        "y": y.reshape(-1),
    }


@mx.custom_function
def linear_predictor(theta: mx.array, phi: mx.array, c: mx.array) -> mx.array:
    """``Φ θ + c`` for one execution; batched executions (``mx.vmap`` over ``θ``) become
    one matrix product ``Θ Φᵀ + c`` instead of a matrix-vector product each."""
    return phi @ theta + c


@linear_predictor.vmap
def _linear_predictor_vmap(inputs: Any, axes: Any) -> Any:
    theta, phi, c = inputs
    at, ap, ac = axes
    if ap is not None or ac is not None:  # a batched design: no shortcut
        out = mx.vmap(lambda t, f, cc: f @ t + cc, in_axes=(at, ap, ac))(theta, phi, c)
        return [out], [0]
    th = mx.moveaxis(theta, at, 0) if at is not None else theta[None]
    p = th.shape[-1]
    if p <= _ELEMENTWISE_P and mx.default_device().type == mx.DeviceType.gpu:
        # float32 matrix products run as TF32 on CUDA GPUs by default (MLX_ENABLE_TF32),
        # ~1e-3 relative error in η: for a few coefficients, sum the columns instead
        # (full float32, and one fused elementwise kernel under mx.compile)
        out = c + th[:, 0:1] * phi[:, 0]
        for k in range(1, p):
            out = out + th[:, k : k + 1] * phi[:, k]
        return [out], [0]
    return [th @ phi.T + c], [0]


# ---------------------------------------------------------------------------- scoring
def score(
    prepared: Prepared, path: Path, gf: Any, params: tuple[Any, ...], parent_values: dict[Path, Any]
) -> mx.array | None:
    """The rewritten score of the observed site at ``path`` (``None``: not rewritten)."""
    hit = prepared.specs.get(path)
    if hit is None:
        return None
    r, c = hit
    if r.kind == "fused":
        return _fused_score(r, c, gf, params, parent_values)
    if r.kind == "glm":
        parts = []
        for q in r.parents:
            v = parent_values.get(q)
            if v is None:
                return None
            parts.append(as_array(v).astype(mx.float32).reshape(-1))
        theta = parts[0] if len(parts) == 1 else mx.concatenate(parts)
        eta = linear_predictor(theta, c["phi"], c["c"])
        out: mx.array = mx.sum(gf.glm_log_prob(c["y"], eta))
        finite = mx.all(mx.isfinite(theta))
        # a non-finite θ: the distribution's own answer for a NaN parameter
        bad = mx.sum(gf.log_prob(c["y"][:1], mx.array(mx.nan)))
        return mx.where(finite, out, bad)
    if r.kind == "iid":
        stats = tuple(c[f"s{i}"] for i in range(len(c)))
        # every parameter is one number broadcast (checked when analysing): take it
        scalars = tuple(
            as_array(q).reshape(-1)[0] if isinstance(q, mx.array) and q.ndim else q for q in params
        )
        rewritten: mx.array = gf.iid_log_prob(stats, *scalars)
        return rewritten
    parts = []
    for q in r.parents:
        v = parent_values.get(q)
        if v is None:
            return None
        parts.append(as_array(v).astype(mx.float32).reshape(-1))
    theta = parts[0] if len(parts) == 1 else mx.concatenate(parts)
    d = theta - c["theta_hat"]
    p = d.shape[0]
    if p <= 8:  # elementwise: no tiny per-particle matrix products under vmap
        quad = mx.sum(d[:, None] * c["A"] * d[None, :])
    else:
        quad = mx.sum(d * (c["A"] @ d))
    finite = mx.all(mx.isfinite(theta))
    # Outside the valid region the result is the distribution's own answer there (-inf,
    # or NaN for a NaN mean); every element gives the same, so it is computed once, on
    # one element and a representative invalid value, not per execution.
    if r.scale == "fixed":
        out = -c["sum_log_s"] - 0.5 * c["n"] * _LOG_2PI - 0.5 * (c["rss"] + quad)
        bad = c["n"] * mx.sum(gf.log_prob(mx.array(0.0), mx.array(mx.nan), mx.array(1.0)))
        return mx.where(finite, out, bad)
    sigma = as_array(params[1]).astype(mx.float32).reshape(())
    ok_sigma = mx.logical_and(mx.isfinite(sigma), sigma > 0)
    valid = mx.logical_and(ok_sigma, finite)
    s = mx.where(valid, sigma, 1.0)
    out = -c["n"] * mx.log(s) - 0.5 * c["n"] * _LOG_2PI - (c["rss"] + quad) / (2.0 * s * s)
    bad_sigma = c["n"] * mx.sum(gf.log_prob(mx.array(0.0), mx.array(0.0), mx.array(-1.0)))
    bad_mean = c["n"] * mx.sum(gf.log_prob(mx.array(0.0), mx.array(mx.nan), mx.array(1.0)))
    bad = mx.where(ok_sigma, bad_mean, bad_sigma)
    return mx.where(valid, out, bad)


def _fused_score(
    r: Rewrite,
    c: dict[str, mx.array],
    gf: Any,
    params: tuple[Any, ...],
    parent_values: dict[Path, Any],
) -> mx.array | None:
    """``Σ K(y, η, e)`` by the kernel, plus the normaliser (the distribution's own
    ``log_prob`` at the mode, once per execution) and the data-only term. A non-finite
    ``θ`` gives the distribution's answer for a NaN parameter (as the other rewrites);
    invalid extra parameters give the distribution's answer there (the normaliser is
    then not finite, and is the result)."""
    decl: fused.FusedLogProb = gf.fused_log_prob
    parts = []
    for q in r.parents:
        v = parent_values.get(q)
        if v is None:
            return None
        parts.append(as_array(v).astype(mx.float32).reshape(-1))
    theta = parts[0] if len(parts) == 1 else mx.concatenate(parts)
    y = c["y"]
    yflat = y.reshape(-1)
    scal, fixed = [], []
    at_mode: list[Any] = []  # the parameters with the location at 0 (for the normaliser)
    first: list[Any] = []  # the parameters at the first data point, location NaN
    extra = iter(r.extras)
    for j, prm in enumerate(params):
        if j == decl.loc:
            at_mode.append(mx.array(0.0))
            first.append(mx.array(mx.nan))
            continue
        kind = next(extra)
        a = as_array(prm).astype(mx.float32)
        if kind == "scalar":
            one = a.reshape(-1)[0] if a.ndim else a
            scal.append(one)
            at_mode.append(one)
            first.append(one)
        else:
            per_point = mx.broadcast_to(a, y.shape).reshape(-1)
            fixed.append(per_point)
            at_mode.append(a)
            # a plain number stays one (distributions may treat it differently)
            first.append(prm if isinstance(prm, (int, float)) else per_point[0])
    sc = mx.stack(scal) if scal else mx.zeros((1,), dtype=mx.float32)
    kernel = fused.loglik(
        decl, r.extras, theta, sc, c["phi"], c["c"], yflat, tuple(fixed), backend=r.backend
    )
    n = c["n"]
    if decl.normaliser == "mode":
        lp0 = gf.log_prob(mx.array(0.0), *at_mode)
        norm = n * lp0 if lp0.size == 1 else mx.sum(mx.broadcast_to(lp0, y.shape))
        norm = norm.reshape(())
    else:
        norm = mx.array(0.0)
    out = kernel + norm + c["d"]
    finite = mx.all(mx.isfinite(theta))
    # (no gradient: a NaN there would leak through the unselected branch of `where`)
    bad_theta = mx.stop_gradient(n * mx.sum(gf.log_prob(yflat[0], *first)))
    ok_extras = mx.isfinite(norm)
    return mx.where(finite, mx.where(ok_extras, out, norm), bad_theta)


def handler(prepared: Prepared, base: Any) -> Any:
    """``base`` (the ``generate`` or ``assess`` transition) with the observed sites of
    ``prepared`` scored from their sufficient statistics."""
    from genmlx.core import handlers as H
    from genmlx.core.distribution import Distribution

    def h(state: Any, path: Path, gf: Any, args: tuple[Any, ...]) -> Any:
        if path in prepared.specs and isinstance(gf, Distribution):
            given = state.constraints if hasattr(state, "constraints") else state.choices
            node = given._node(path)
            if node is not None and node.has_root_value and node.leaf_mask is None:
                r = prepared.specs[path][0]
                parents: dict[Path, Any] = {}
                rec = state.records
                want = set(r.parents)
                while rec is not None and want:
                    q, record, rec = rec
                    if q in want and isinstance(record, H.ChoiceRecord):
                        parents[q] = record.value
                        want.discard(q)
                s = score(prepared, path, gf, args, parents)
                if s is not None:
                    v = as_array(node.value)
                    new = state._replace(
                        records=(path, H.ChoiceRecord(v, s), state.records),
                        score=state.score + s,
                    )
                    if hasattr(new, "weight"):
                        new = new._replace(weight=state.weight + s)
                    return new, v
        return base(state, path, gf, args)

    return h
