"""Exact inference by enumeration over tensor axes.

For a static model whose latent choices have finite support
(``Distribution.is_enumerable``: ``bernoulli``, ``categorical``, ``binomial``,
``uniform_discrete``, ...), :func:`enumerate_posterior` computes the exact log
marginal likelihood ``log p(y)``, the posterior marginal of every latent choice, exact
posterior samples, the MAP assignment and (for small models) the whole joint
posterior table.

How. Each latent choice ``z_v`` gets its own array axis ``v``: the body is replayed
once with ``z_v`` set to *all* its support values at once, laid out along axis ``v``
(``[1, …, K_v, …, 1]``), so that every log density in the model comes out as a
broadcast table over the choices it depends on — the factors of the model's factor
graph. The log marginal likelihood ``log Σ_z Π_f exp f(z)`` is then contracted by
variable elimination with ``logsumexp`` in a greedy min-size order
(``genmlx.infer._contract``): a chain of ``T`` choices with ``K`` values costs
``O(T K²)`` array work, not ``K^T`` Python iterations. Posterior marginals are the
gradients of ``log p(y)`` with respect to a zero log-potential added to each choice's
own factor (one backward pass for all of them); samples and the MAP assignment come
from the recorded elimination tables by backward sampling or arg-max (max-product).

A vector-valued discrete choice (``categorical(probs) @ "z"`` with ``probs`` of shape
``[N, K]``) is enumerated *element by element*, like a plate in Pyro: one axis of size
``K`` for all ``N`` elements, and its ``N`` element axes kept, which is exact when each
element of the rest of the model reads only its own element of ``z`` (a mixture model's
assignments). The layout assumes the model broadcasts: the body must treat the extra
leading axes as batch axes (``mx.where``, indexing, arithmetic; not ``mx.sum`` over all
axes or ``x.reshape(-1)``). This is checked: after building the tables, the body is run
again at two random concrete assignments and every factor must match its table entry
(an error names the address where it does not).

Mixed models: :func:`enumerated_logdensity` is the log density of the continuous latent
choices with every discrete one summed out — a drop-in replacement of
:func:`genmlx.core.logdensity` for HMC, NUTS (:func:`genmlx.infer.mcmc` uses it
automatically for models with enumerable discrete latents) and VI
(:func:`genmlx.infer.advi_logdensity`); :func:`infer_discrete` then draws the discrete
choices from their exact conditional given each continuous draw (NumPyro's
``infer_discrete``).

Continuous choices can be enumerated on a grid (Gen.jl's ``enumerative_inference``):
:func:`choice_vol_grid` builds grid points with cell volumes, and the same engine gives
the Riemann-sum estimate of the evidence and the grid posterior.

Batched inputs: observations with ``batch_shape == (B,)`` give ``B`` independent
posteriors in one vectorised computation (``mx.vmap`` over the observations).

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen
    >>> from genmlx.dists import bernoulli
    >>> @gen
    ... def sprinkler():
    ...     rain = bernoulli(0.2) @ "rain"
    ...     sprinkler = bernoulli(mx.where(rain, 0.01, 0.4)) @ "sprinkler"
    ...     p_wet = mx.where(rain, mx.where(sprinkler, 0.99, 0.8), mx.where(sprinkler, 0.9, 0.0))
    ...     bernoulli(p_wet) @ "wet"
    >>> post = enumerate_posterior(sprinkler, (), {"wet": True})
    >>> round(float(post.probability("rain", True)), 4)   # P(rain | wet grass)
    0.3577
    >>> round(float(mx.exp(post.log_ml)), 4)              # P(wet grass)
    0.4484
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from genmlx.core import (
    ChoiceMap,
    Distribution,
    GenerativeFunction,
    ModelGraph,
    StaticModelError,
    Trace,
    analyze,
    runtime,
)
from genmlx.core.address import Address, Path, format_address, from_path, to_path
from genmlx.core.bijectors import Bijector, biject_to
from genmlx.core.checks import as_args, as_choicemap
from genmlx.core.choicemap import as_array
from genmlx.core.compile import tracing_mode
from genmlx.core.constraints import Constraint
from genmlx.core.random import Key, resolve_key
from genmlx.core.tree import flatten, unflatten
from genmlx.infer._contract import Record, backtrack, contract
from genmlx.infer._replay import SiteRecord, fn_name, replay
from genmlx.infer.diagnostics import SummaryTable

__all__ = [
    "EnumeratedLogDensity",
    "EnumerationResult",
    "EnumerativeResult",
    "Grid",
    "choice_vol_grid",
    "enumerate_posterior",
    "enumerated_logdensity",
    "enumerative_inference",
    "infer_discrete",
]

_MAX_JOINT = 10_000_000  # entries of a joint table we agree to build


# ---------------------------------------------------------------------------- grids
class Grid(NamedTuple):
    """Grid points and cell volumes for enumerating choices (Gen.jl's ``choice_vol_grid``).

    Attributes:
        points: ``{address: values}``, a 1-D array of grid values per address.
        log_volumes: ``{address: log cell volumes}`` (zeros for discrete choices).
    """

    points: dict[Path, mx.array]
    log_volumes: dict[Path, mx.array]


def choice_vol_grid(*specs: tuple[Any, ...]) -> Grid:
    """A grid over some choices, with the volume of each cell.

    Each spec is ``(address, values)`` for a discrete choice (every value, cell volume
    1) or ``(address, edges, "continuous")`` for a continuous one: the grid points are
    the midpoints of consecutive ``edges`` and the volumes their widths, so that
    ``Σ p(x_i, y) · vol_i`` is the midpoint-rule estimate of ``∫ p(x, y) dx``.

    Example:
        >>> g = choice_vol_grid(("x", mx.linspace(-1.0, 1.0, 5), "continuous"), ("k", mx.arange(3)))
        >>> g.points[("x",)].tolist(), [round(v, 3) for v in mx.exp(g.log_volumes[("x",)]).tolist()]
        ([-0.75, -0.25, 0.25, 0.75], [0.5, 0.5, 0.5, 0.5])
    """
    points: dict[Path, mx.array] = {}
    logv: dict[Path, mx.array] = {}
    for spec in specs:
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise ValueError(
                "choice_vol_grid: each spec is (address, values) or (address, edges, "
                f"'continuous'); got {spec!r}"
            )
        path = to_path(spec[0])
        vals = as_array(spec[1])
        if vals.ndim != 1 or vals.shape[0] < 1:
            raise ValueError(
                f"choice_vol_grid: the values for {format_address(path)} must be a non-empty "
                f"1-D array, got shape {tuple(vals.shape)}"
            )
        if len(spec) == 3:
            if spec[2] != "continuous":
                raise ValueError(
                    f"choice_vol_grid: the third entry for {format_address(path)} must be "
                    f"'continuous', got {spec[2]!r}"
                )
            e = vals.astype(mx.float32)
            if e.shape[0] < 2:
                raise ValueError(
                    f"choice_vol_grid: {format_address(path)} needs at least two edges"
                )
            w = e[1:] - e[:-1]
            if bool(mx.any(w <= 0).item()):
                raise ValueError(
                    f"choice_vol_grid: the edges for {format_address(path)} must increase"
                )
            points[path] = 0.5 * (e[1:] + e[:-1])
            logv[path] = mx.log(w)
        else:
            points[path] = vals
            logv[path] = mx.zeros(vals.shape, dtype=mx.float32)
    return Grid(points, logv)


# ---------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class _Var:
    index: int
    path: Path
    shape: tuple[int, ...]
    dtype: Any
    candidates: mx.array  # (K,) + shape
    log_volume: mx.array | None  # (K,) + shape, grid choices
    plates: frozenset[int]
    source: str  # "support", "supports=", "grid"

    @property
    def size(self) -> int:
        return int(self.candidates.shape[0])


@dataclass(frozen=True)
class _Cont:
    path: Path
    shape: tuple[int, ...]
    ushape: tuple[int, ...]
    start: int
    size: int
    dtype: Any
    override: Constraint | None


def _kind(dist: Distribution) -> str:
    return fn_name(dist)


def _is_discrete_site(dist: Distribution, value: mx.array) -> bool:
    return bool(getattr(dist, "is_discrete", False)) or not mx.issubdtype(value.dtype, mx.floating)


class _Enumerator:
    """The enumeration structure of one model, argument signature and observation
    structure: which choices are enumerated (their axes and candidate values), which
    are continuous (their slice of a flat vector), the plate depth ``D``, and the
    factor tables as a pure function of the observations and continuous values."""

    def __init__(
        self,
        model: GenerativeFunction,
        args: tuple[Any, ...],
        obs: ChoiceMap,
        *,
        supports: Mapping[Path, mx.array],
        grid: Grid | None,
        continuous: bool,
        domains: Mapping[Path, Constraint],
        key: mx.array,
        op: str,
    ) -> None:
        self.model = model
        self.args = args
        self.op = op
        self.graph: ModelGraph = analyze(model, args, obs)
        if not self.graph.is_static:
            raise StaticModelError(
                f"{op}: the model must be static (its structure fixed by its arguments); "
                f"{model!r} is dynamic: {self.graph.reason}"
            )
        if self.graph.uses_params:
            raise StaticModelError(
                f"{op}: {model!r} reads trainable parameters (param); pass them as arguments"
            )
        grid_points = dict(grid.points) if grid is not None else {}
        grid_logv = dict(grid.log_volumes) if grid is not None else {}
        self._check_calls()
        self._extra: list[mx.array] = []
        self.unread: set[Path] = set()
        self._unread_values: dict[Path, mx.array] = {}
        k_disc, k_val = mx.random.split(key)
        # ---------------------------------------------------------- discovery
        found: list[tuple[Path, Distribution, mx.array, mx.array | None, str]] = []
        conts: list[tuple[Path, Distribution, mx.array, Constraint | None]] = []
        counter = [0]

        def provide(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
            counter[0] += 1
            k = mx.random.split(k_disc, counter[0] + 1)[counter[0]]
            sample = dist.sample(k, *params)
            shape = tuple(sample.shape)
            where = f"the latent choice at {format_address(path)} ({_kind(dist)})"
            if path in grid_points or path in supports or getattr(dist, "is_enumerable", False):
                if dist.event_ndim:
                    raise StaticModelError(
                        f"{op}: {where} has event dimensions ({dist.event_ndim}); only "
                        "choices with scalar elements can be enumerated"
                    )
                if path in grid_points:
                    raw, src = grid_points[path], "grid"
                elif path in supports:
                    raw, src = as_array(supports[path]), "supports="
                else:
                    raw, src = dist.support(*params), "support"
                cand = _candidates(raw, shape, sample.dtype, where, op)
                lv = None
                if path in grid_logv:
                    lv = _candidates(
                        grid_logv[path].astype(mx.float32), shape, mx.float32, where, op
                    )
                found.append((path, dist, cand, lv, src))
                return cand[0]
            if continuous and not _is_discrete_site(dist, sample):
                conts.append((path, dist, sample, domains.get(path)))
                return sample
            if not self.graph.children(path):
                # nothing reads it: it integrates to 1 and its factor is left out
                self.unread.add(path)
                return sample
            if not _is_discrete_site(dist, sample):
                raise StaticModelError(
                    f"{op}: {where} is continuous; give it grid values (grid=choice_vol_grid("
                    f"({from_path(path)!r}, edges, 'continuous'))), observe it, or use "
                    "enumerated_logdensity / mcmc to sample it while the discrete choices "
                    "are summed out"
                )
            raise StaticModelError(
                f"{op}: {where} is discrete but its distribution does not list a finite "
                f"support (is_enumerable is False); pass supports={{{from_path(path)!r}: "
                "values}} with every value it can take"
            )

        recs, _ = replay(model, args, obs, provide, op=op, call=self._call_hook(obs))
        unused = set(grid_points) | set(supports)
        unused -= {p for p, *_ in found}
        if unused:
            names = ", ".join(format_address(p) for p in sorted(unused, key=str))
            raise ValueError(
                f"{op}: grid/supports name {names}, which are not latent choices of the model"
            )
        # plate depth: the most element axes any log density or value has
        d = 0
        for r in recs:
            lp = r.dist.log_prob(r.value, *r.params)
            d = max(d, lp.ndim, r.value.ndim - r.dist.event_ndim)
        self.D = d
        self.E = len(found)
        self.vars: list[_Var] = []
        for i, (path, _, cand, lv, src) in enumerate(found):
            shape = tuple(cand.shape[1:])
            plates = frozenset(self.D - len(shape) + j for j, s in enumerate(shape) if s > 1)
            self.vars.append(_Var(i, path, shape, cand.dtype, cand, lv, plates, src))
        self.by_path = {v.path: v for v in self.vars}
        self.layout = {v.path: self._lay(v.candidates, v) for v in self.vars}
        self.layout_logv = {
            v.path: self._lay(v.log_volume, v) for v in self.vars if v.log_volume is not None
        }
        # continuous choices: their slice of a flat unconstrained vector
        self.conts: list[_Cont] = []
        start = 0
        self.cont_start_values: dict[Path, mx.array] = {}
        for path, dist, sample, override in conts:
            where = f"the latent choice at {format_address(path)} ({_kind(dist)})"
            dom = override
            if dom is None:
                for r in recs:
                    if r.path == path:
                        dom = r.dist.domain(*r.params)
                if dom is None:
                    raise StaticModelError(
                        f"{op}: {where} does not declare its domain; pass "
                        f"domains={{{from_path(path)!r}: constraints.real | ...}}"
                    )
            shape = tuple(sample.shape)
            ushape = biject_to(dom).unconstrained_shape(shape)
            size = int(math.prod(ushape))
            self.conts.append(_Cont(path, shape, ushape, start, size, sample.dtype, override))
            self.cont_start_values[path] = sample
            start += size
        self.dim = start
        self.cont_by_path = {c.path: c for c in self.conts}
        self._site_order = [r.path for r in recs]
        self._factor_order = [r.path for r in recs if r.path not in self.unread]
        self._validate(obs, k_val)

    # ------------------------------------------------------------------ helpers
    def _lay(self, arr: mx.array, v: _Var) -> mx.array:
        k = arr.shape[0]
        shape = (
            (1,) * v.index
            + (k,)
            + (1,) * (self.E - 1 - v.index)
            + (1,) * (self.D - len(v.shape))
            + v.shape
        )
        return arr.reshape(shape)

    def name(self, i: int) -> str:
        return f"the choice at {format_address(self.vars[i].path)}"

    @property
    def var_plates(self) -> list[frozenset[int]]:
        return [v.plates for v in self.vars]

    def _check_calls(self) -> None:
        for s in self.graph.sites:
            if s.kind == "call" and s.is_latent:
                raise StaticModelError(
                    f"{self.op}: the call at {format_address(s.path)} ({fn_name(s.gen_fn)}) has "
                    "latent choices inside it, which enumeration cannot see; observe them, "
                    "inline the call as a @gen function, or use hmm_forward_backward / "
                    "kalman_filter for Unfold and Scan models"
                )

    def _call_hook(self, obs: ChoiceMap) -> Any:
        del obs

        def call(path: Path, gf: GenerativeFunction, a: tuple[Any, ...], sub: ChoiceMap) -> Any:
            s, retval = gf.assess(a, sub)
            self._extra.append(s)
            return retval

        return call

    # ------------------------------------------------------------------ factors
    def factors(
        self,
        obs: ChoiceMap,
        *,
        y: mx.array | None = None,
        cont_values: Mapping[Path, mx.array] | None = None,
        thetas: Sequence[mx.array] | None = None,
        concrete: Mapping[Path, mx.array] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> tuple[list[mx.array], mx.array, list[SiteRecord]]:
        """The log-factor tables (one per choice, in the layout) and the sum of the
        terms that do not depend on the enumerated choices (log-Jacobians, observed
        calls). ``concrete`` gives plain values for the enumerated choices instead
        of their axes (for checks)."""
        extra: list[mx.array] = []
        self._extra = extra
        cvals = cont_values if cont_values is not None else self.cont_start_values

        def provide(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
            if path in self.by_path:
                if concrete is not None:
                    return concrete[path]
                return self.layout[path]
            c = self.cont_by_path.get(path)
            if c is None:
                if path in self.unread:
                    return dist.sample(mx.random.key(0), *params)
                raise StaticModelError(
                    f"{self.op}: the choice at {format_address(path)} was not seen when the "
                    "model was analysed (its structure changed?)"
                )
            if y is None:
                return cvals[path]
            dom = c.override if c.override is not None else dist.domain(*params)
            if dom is None:
                raise StaticModelError(
                    f"{self.op}: the continuous choice at {format_address(path)} lost its domain"
                )
            bij: Bijector = biject_to(dom)
            u = y[c.start : c.start + c.size].reshape(c.ushape)
            x, ld = bij.forward_and_log_det(u)
            if tuple(x.shape) != c.shape:
                raise StaticModelError(
                    f"{self.op}: the domain of the continuous choice at {format_address(path)} "
                    "depends on the enumerated discrete choices; the summed-out density needs "
                    "one domain for all their values"
                )
            if x.dtype != c.dtype and mx.issubdtype(c.dtype, mx.floating):
                x = x.astype(c.dtype)
            extra.append(mx.sum(ld))
            return x

        a = self.args if args is None else args
        recs, _ = replay(self.model, a, obs, provide, op=self.op, call=self._call_hook(obs))
        if [r.path for r in recs] != self._site_order:
            raise StaticModelError(
                f"{self.op}: the model visited different choices than when it was analysed"
            )
        nd = self.D if concrete is not None else self.E + self.D
        out: list[mx.array] = []
        for r in recs:
            if r.path in self.unread:
                continue
            lp = r.dist.log_prob(r.value, *r.params)
            if lp.ndim > nd:
                raise StaticModelError(
                    f"{self.op}: the log density at {format_address(r.path)} has shape "
                    f"{tuple(lp.shape)}: more axes than the enumeration layout allows; the "
                    "model's arrays must broadcast against the enumerated values' leading axes"
                )
            lp = lp.reshape((1,) * (nd - lp.ndim) + tuple(lp.shape))
            v = self.by_path.get(r.path)
            if v is not None:
                if concrete is None:
                    lv = self.layout_logv.get(r.path)
                    if lv is not None:
                        lp = lp + lv
                    if thetas is not None:
                        lp = lp + thetas[v.index]
                elif v.log_volume is not None:
                    idx = self._concrete_index[r.path]
                    lvv = mx.take_along_axis(v.log_volume, idx[None], axis=0)[0]
                    lp = lp + lvv.reshape((1,) * (nd - lvv.ndim) + tuple(lvv.shape))
            out.append(lp.astype(mx.float32) if lp.dtype != mx.float32 else lp)
        total = mx.array(0.0)
        for e in extra:
            total = total + e
        return out, total, recs

    _concrete_index: dict[Path, mx.array]

    def log_z(
        self,
        factors: list[mx.array],
        extra: mx.array,
        *,
        op: str = "sum",
        record: list[Record] | None = None,
    ) -> mx.array:
        if not factors:
            return extra
        if self.E == 0:
            tot = extra
            for f in factors:
                tot = tot + mx.sum(f)
            return tot
        return contract(factors, self.var_plates, op=op, record=record, names=self.name) + extra

    def theta_zeros(self) -> list[mx.array]:
        return [mx.zeros(self.layout[v.path].shape, dtype=mx.float32) for v in self.vars]

    # ------------------------------------------------------------------ validation
    def _validate(self, obs: ChoiceMap, key: mx.array) -> None:
        if self.E == 0:
            return
        try:
            tables, _, _ = self.factors(obs)
        except (ValueError, TypeError) as e:
            if isinstance(e, StaticModelError):
                raise
            raise StaticModelError(
                f"{self.op}: the model does not broadcast over the enumeration axes ({e}); "
                "write it with elementwise array operations (mx.where, indexing) so that the "
                "discrete choices can hold all their values at once"
            ) from e
        for t in tables:
            if t.ndim != self.E + self.D:
                raise AssertionError("bad factor layout")
        # the tables' scopes must respect the plates (raises otherwise)
        contract(tables, self.var_plates, names=self.name)
        for k in mx.random.split(key, 2):
            assignment: dict[Path, mx.array] = {}
            index: dict[Path, mx.array] = {}
            ks = mx.random.split(k, self.E)
            for v in self.vars:
                idx = mx.random.randint(0, v.size, v.shape, key=ks[v.index]).astype(mx.int32)
                index[v.path] = idx
                assignment[v.path] = mx.take_along_axis(v.candidates, idx[None], axis=0)[0]
            self._concrete_index = index
            point, _, recs = self.factors(obs, concrete=assignment)
            for r in recs:
                var = self.by_path.get(r.path)
                if var is None or var.source != "support":
                    continue
                sup = r.dist.support(*r.params)
                if tuple(sup.shape) != tuple(var.candidates.shape) or not bool(
                    mx.all(sup == var.candidates).item()
                ):
                    raise StaticModelError(
                        f"{self.op}: the support of the choice at {format_address(r.path)} "
                        "depends on the values of other choices; pass supports="
                        f"{{{from_path(r.path)!r}: values}} listing every value it can take"
                    )
            for t, p, path in zip(tables, point, self._factor_order):
                g = t
                for v in self.vars:
                    if g.shape[v.index] > 1:
                        ix = self._lay(index[v.path][None], v)
                        g = mx.take_along_axis(g, ix, axis=v.index)
                g = g.reshape(g.shape[self.E :])
                a = np.broadcast_to(
                    np.asarray(g, dtype=np.float64), np.broadcast_shapes(g.shape, p.shape)
                )
                b = np.broadcast_to(np.asarray(p, dtype=np.float64), a.shape)
                same = np.isclose(a, b, rtol=1e-4, atol=1e-4) | ((a == b) & ~np.isfinite(a))
                if not same.all():
                    raise StaticModelError(
                        f"{self.op}: the log density at {format_address(path)} computed over "
                        "all values of the discrete choices at once differs from its value at "
                        "a single assignment: the model mixes the enumeration axes (e.g. a sum "
                        "over all axes, a reshape, or one element of a vector choice read by "
                        "another element's factor); write it with elementwise, broadcasting "
                        "operations or use separately addressed scalar choices"
                    )


def _candidates(raw: Any, shape: tuple[int, ...], dtype: Any, where: str, op: str) -> mx.array:
    cand = as_array(raw)
    if cand.ndim == 0:
        raise StaticModelError(f"{op}: the candidate values for {where} must be an array of values")
    k = cand.shape[0]
    if tuple(cand.shape[1:]) != shape:
        try:
            cand = mx.broadcast_to(
                cand.reshape((k,) + (1,) * (len(shape) - (cand.ndim - 1)) + tuple(cand.shape[1:])),
                (k, *shape),
            )
        except (ValueError, TypeError) as e:
            raise StaticModelError(
                f"{op}: the candidate values for {where} have shape {tuple(cand.shape)}; "
                f"expected (K,) or (K, *{shape})"
            ) from e
    if cand.dtype != dtype:
        cand = cand.astype(dtype)
    return cand


def _paths(mapping: Mapping[Any, Any] | None) -> dict[Path, Any]:
    return {to_path(k): v for k, v in (mapping or {}).items()}


def _grid_of(grid: Grid | Mapping[Any, Any] | None) -> Grid | None:
    if grid is None:
        return None
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, Mapping):
        pts = {to_path(k): as_array(v) for k, v in grid.items()}
        return Grid(pts, {p: mx.zeros(v.shape[:1], dtype=mx.float32) for p, v in pts.items()})
    raise TypeError(
        f"grid must be a Grid (choice_vol_grid(...)) or a dict of values, got {type(grid).__name__}"
    )


def _obs_parts(obs: ChoiceMap, op: str) -> tuple[ChoiceMap, Any, list[mx.array], tuple[int, ...]]:
    batch = tuple(obs.batch_shape)
    if len(batch) > 1:
        raise ValueError(f"{op}: observations may carry one batch axis, got batch shape {batch}")
    base = obs.with_batch_shape(()) if batch else obs
    leaves, td = flatten(base)
    first = unflatten(td, [x[0] for x in leaves]) if batch else base
    return first, td, leaves, batch


# ---------------------------------------------------------------------------- results
class EnumerationResult:
    """The exact posterior of a model's enumerated choices (:func:`enumerate_posterior`).

    Attributes:
        log_ml: ``log p(y)``, exact (a scalar, or ``[B]`` for batched observations);
            a Riemann-sum estimate where choices were enumerated on a grid.
        marginals: ``{address: probabilities}``, shape ``[B?, K, *shape]`` — the
            posterior probability of each candidate value (along axis ``K``) for every
            element of the choice.
        support: ``{address: values}``, shape ``[K, *shape]``, the candidate values.
        marginalized: the addresses summed out exactly.
        weight_kind: ``"marginal"`` — ``log_ml`` is a marginal likelihood, every latent
            summed out (never a joint density of one assignment).
        method: ``"enumeration"`` (or ``"grid"`` when some choice was gridded).
        exact: ``False`` when a continuous choice was enumerated on a grid.
    """

    weight_kind = "marginal"

    def __init__(
        self,
        enum: _Enumerator,
        obs: ChoiceMap,
        log_ml: mx.array,
        marginals: dict[Any, mx.array],
        batch: tuple[int, ...],
    ) -> None:
        self._enum = enum
        self.observations = obs
        self.log_ml = log_ml
        self.marginals = marginals
        self.batch_shape = batch
        self.support = {from_path(v.path): v.candidates for v in enum.vars}
        self.marginalized = tuple(from_path(v.path) for v in enum.vars) + tuple(
            from_path(p) for p in enum._site_order if p in enum.unread
        )
        self.exact = all(v.source != "grid" for v in enum.vars)
        self.method = "enumeration" if self.exact else "grid"

    @property
    def log_ml_estimate(self) -> mx.array:
        """The same as :attr:`log_ml` (exact), under the name every result uses."""
        return self.log_ml

    def probability(self, addr: Address, value: Any) -> mx.array:
        """``P(addr = value | y)`` (elementwise for a vector choice)."""
        a = from_path(to_path(addr))
        sup = self.support[a]
        p = self.marginals[a]
        hit = (sup == as_array(value).astype(sup.dtype)).astype(mx.float32)
        axis = len(self.batch_shape)
        return mx.sum(p * hit, axis=axis)

    def mean(self, addr: Address) -> mx.array:
        """The posterior mean of the choice (its values as numbers)."""
        a = from_path(to_path(addr))
        sup = self.support[a].astype(mx.float32)
        return mx.sum(self.marginals[a] * sup, axis=len(self.batch_shape))

    def _one(self) -> None:
        if self.batch_shape:
            raise ValueError(
                "this operation needs an unbatched result; index the observations' batch "
                "and enumerate one of them"
            )

    def joint(self) -> mx.array:
        """The joint posterior table ``log p(z_1, …, z_E | y)`` with one axis per choice
        (in :attr:`marginalized` order; shape ``[B?, K_1, …, K_E]``).

        Raises:
            ValueError: a vector-valued choice (its joint has one axis per element), or
                the table would exceed 10⁷ entries.
        """
        e = self._enum
        if any(v.plates for v in e.vars):
            raise ValueError(
                "joint: a vector-valued discrete choice makes the joint table one axis per "
                "element; use marginals, sample() or map_assignment() instead"
            )
        size = math.prod(v.size for v in e.vars)
        if size > _MAX_JOINT:
            raise ValueError(
                f"joint: the table would have {size} entries (more than {_MAX_JOINT}); use "
                "marginals, sample() or map_assignment() instead"
            )
        first, td, leaves, batch = _obs_parts(self.observations, "joint")

        def one(ol: list[mx.array]) -> mx.array:
            fs, extra, _ = e.factors(unflatten(td, ol))
            tot = extra
            for f in fs:
                tot = tot + f
            if e.D:
                tot = mx.sum(tot, axis=tuple(range(e.E, e.E + e.D)))
            tot = mx.broadcast_to(tot, tuple(v.size for v in e.vars))
            return tot - e.log_z(fs, extra)

        with runtime.transforming():
            if batch:
                return mx.vmap(one)(leaves)
            return one(leaves)

    def _backtrack(self, n: int | None, key: mx.array | None) -> dict[Any, mx.array]:
        e = self._enum
        first, td, leaves, batch = _obs_parts(self.observations, "sample")

        def one(ol: list[mx.array], k: mx.array | None) -> tuple[mx.array, ...]:
            fs, extra, _ = e.factors(unflatten(td, ol))
            rec: list[Record] = []
            e.log_z(fs, extra, op="sum" if n is not None else "max", record=rec)
            idx = backtrack(rec, e.E, n, k)
            return tuple(_values(e, idx, 1 if n is None else n))

        with runtime.transforming():
            if batch:
                keys = mx.random.split(key, batch[0]) if key is not None else None
                if keys is None:
                    out = mx.vmap(lambda ol: one(ol, None))(leaves)
                else:
                    out = mx.vmap(one)(leaves, keys)
            else:
                out = one(leaves, key)
        return {from_path(v.path): x for v, x in zip(e.vars, out)}

    def sample(self, n: int, *, key: Key = None) -> dict[Any, mx.array]:
        """``n`` exact joint posterior draws: ``{address: [B?, n, *shape]}``.

        Drawn backwards through the elimination (forward-filtering backward-sampling),
        all draws in one vectorised pass.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sample: n must be a positive int, got {n!r}")
        return self._backtrack(n, resolve_key(key))

    def map_assignment(self) -> dict[Any, mx.array]:
        """The most probable joint assignment (max-product elimination, then arg-max
        backwards): ``{address: value}`` (``[B, *shape]`` when batched)."""
        out = self._backtrack(None, None)
        axis = len(self.batch_shape)
        return {a: v.squeeze(axis) for a, v in out.items()}

    def traces(self, n: int, *, key: Key = None) -> Trace:
        """``n`` posterior draws as one batched trace of the model (with the observations)."""
        self._one()
        k1, k2 = mx.random.split(resolve_key(key))
        draws = self.sample(n, key=k1)
        cm = ChoiceMap.from_nodes(((to_path(a), ChoiceMap(v)) for a, v in draws.items()), (n,))
        if not self.observations.is_empty:
            obs = self.observations.map(lambda v: mx.broadcast_to(v, (n, *v.shape)))
            cm = cm.merge(obs.with_batch_shape((n,)))
        e = self._enum
        return e.model.vgenerate(e.args, cm, n, key=k2).trace

    def summary(self) -> SummaryTable:
        """Posterior mean, standard deviation, mode and its probability per element."""
        self._one()
        table = SummaryTable()
        table.columns = ("mean", "sd", "mode", "p_mode")  # type: ignore[misc,assignment]
        for v in self._enum.vars:
            a = from_path(v.path)
            p = np.asarray(self.marginals[a], dtype=np.float64).reshape(v.size, -1)
            vals = np.asarray(v.candidates.astype(mx.float32), dtype=np.float64).reshape(v.size, -1)
            mean = (p * vals).sum(0)
            sd = np.sqrt(np.maximum((p * vals**2).sum(0) - mean**2, 0.0))
            mode_i = p.argmax(0)
            name = a if isinstance(a, str) else format_address(v.path)
            for j in range(p.shape[1]):
                label = name if not v.shape else f"{name}[{j}]"
                table[label] = {
                    "mean": float(mean[j]),
                    "sd": float(sd[j]),
                    "mode": float(vals[mode_i[j], j]),
                    "p_mode": float(p[mode_i[j], j]),
                }
        return table

    def __repr__(self) -> str:
        names = ", ".join(map(str, self.marginalized))
        lml = self.log_ml.tolist()
        lml_s = f"{lml:.4f}" if isinstance(lml, float) else f"[{self.log_ml.size} values]"
        return f"EnumerationResult({self.method}: log_ml={lml_s}; summed out: {names})"


def _values(e: _Enumerator, idx: dict[int, mx.array], s: int) -> list[mx.array]:
    out = []
    for v in e.vars:
        i = idx.get(v.index)
        if i is None:  # a single candidate: nothing to choose
            i = mx.zeros((s,) + (1,) * (e.E + e.D), dtype=mx.int32)
        # (S, layout) -> (S, *element axes of v)
        i = i.reshape(i.shape[0], *i.shape[1 + e.E :])
        i = i.reshape(i.shape[0], *i.shape[1 + e.D - len(v.shape) :])
        i = mx.broadcast_to(i, (i.shape[0], *v.shape))
        vals = mx.take_along_axis(v.candidates[None], i[:, None], axis=1)[:, 0]
        out.append(vals)
    return out


# ---------------------------------------------------------------------------- entry points
def enumerate_posterior(
    model: GenerativeFunction,
    args: tuple[Any, ...] = (),
    observations: Any = None,
    *,
    supports: Mapping[Any, Any] | None = None,
    grid: Grid | Mapping[Any, Any] | None = None,
    key: Key = None,
) -> EnumerationResult:
    """The exact posterior of a model whose latent choices all have finite support.

    Args:
        model: a static ``@gen`` model.
        args: its arguments.
        observations: observed choices (ChoiceMap or dict); a batched choice map
            (``batch_shape == (B,)``) gives ``B`` posteriors at once.
        supports: ``{address: values}`` for discrete choices whose distribution does
            not list its support, or to restrict/extend it (values outside the support
            get probability 0).
        grid: grid values for continuous choices (a :func:`choice_vol_grid`, or
            ``{address: points}`` with unit volumes).
        key: PRNG key for the broadcast check's random assignments.

    Returns:
        An :class:`EnumerationResult`.

    Raises:
        StaticModelError: a latent choice is continuous and not on the grid, a discrete
            one has no known support, the model is dynamic, or the model does not
            broadcast over the enumeration axes.
        ValueError: the observations have probability zero under the model.
    """
    op = "enumerate_posterior"
    args = as_args(args, op)
    obs = as_choicemap(observations, op, "observations")
    first, td, leaves, batch = _obs_parts(obs, op)
    e = _Enumerator(
        model,
        args,
        first,
        supports=_paths(supports),
        grid=_grid_of(grid),
        continuous=False,
        domains={},
        key=resolve_key(key if key is not None else 0),
        op=op,
    )

    def one(ol: list[mx.array]) -> tuple[mx.array, list[mx.array]]:
        o = unflatten(td, ol)

        def lz(thetas: list[mx.array]) -> mx.array:
            fs, extra, _ = e.factors(o, thetas=thetas)
            return e.log_z(fs, extra)

        if e.E == 0:
            return lz([]), []
        val, grads = mx.value_and_grad(lz)(e.theta_zeros())
        return val, grads

    with runtime.transforming():
        if batch:
            log_ml, grads = mx.vmap(one)(leaves)
        else:
            log_ml, grads = one(leaves)
    marg: dict[Any, mx.array] = {}
    for v, g in zip(e.vars, grads):
        lead = g.shape[: len(batch)]
        marg[from_path(v.path)] = g.reshape(*lead, v.size, *v.shape)
    mx.eval(log_ml, list(marg.values()))
    impossible = np.flatnonzero(~np.isfinite(np.asarray(log_ml).reshape(-1)))
    if impossible.size:
        where = f" (batch elements {impossible.tolist()})" if batch else ""
        raise ValueError(
            f"{op}: the observations have probability zero under the model{where}, so there "
            "is no posterior; check the observed values against the model's supports"
        )
    return EnumerationResult(e, obs, log_ml, marg, batch)


class EnumerativeResult(NamedTuple):
    """Result of :func:`enumerative_inference` (Gen.jl's three outputs).

    Attributes:
        traces: one trace per grid point (a batched trace, ``batch_shape == (N,)``).
        log_weights: normalised log weights ``log p(x_i, y) + log vol_i − log Ẑ``.
        log_ml_estimate: ``log Ẑ = log Σ_i p(x_i, y) vol_i``.
    """

    traces: Trace
    log_weights: mx.array
    log_ml_estimate: mx.array


def enumerative_inference(
    model: GenerativeFunction,
    args: tuple[Any, ...],
    observations: Any,
    grid: Grid | Mapping[Any, Any],
    *,
    key: Key = None,
) -> EnumerativeResult:
    """Gen.jl's ``enumerative_inference``: evaluate the model on every point of a grid.

    Every latent choice must be on the grid (continuous ones with cell volumes, from
    :func:`choice_vol_grid`) or have a finite support. The weights of all ``N`` grid
    points come from one broadcast evaluation of the model (the joint table of
    :meth:`EnumerationResult.joint`), the traces from one batched ``generate``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal
        >>> @gen
        ... def m():
        ...     x = normal(0.0, 1.0) @ "x"
        ...     normal(x, 1.0) @ "y"
        >>> g = choice_vol_grid(("x", mx.linspace(-6.0, 6.0, 1201), "continuous"))
        >>> res = enumerative_inference(m, (), {"y": 1.0}, g)
        >>> res.traces.batch_shape, round(float(res.log_ml_estimate), 3)  # log N(1; 0, 2)
        ((1200,), -1.516)
    """
    post = enumerate_posterior(model, args, observations, grid=grid, key=key)
    post._one()
    table = post.joint()
    e = post._enum
    n = int(table.size)
    lw = table.reshape(-1)
    nodes = []
    sizes = [v.size for v in e.vars]
    for i, v in enumerate(e.vars):
        shape = [1] * len(sizes)
        shape[i] = sizes[i]
        ix = mx.broadcast_to(mx.arange(sizes[i]).reshape(shape), sizes).reshape(-1)
        nodes.append((v.path, ChoiceMap(v.candidates[ix])))
    cm = ChoiceMap.from_nodes(nodes, (n,))
    obs = post.observations
    if not obs.is_empty:
        cm = cm.merge(obs.map(lambda x: mx.broadcast_to(x, (n, *x.shape))).with_batch_shape((n,)))
    tr = e.model.vgenerate(e.args, cm, n, key=resolve_key(key if key is not None else 0)).trace
    return EnumerativeResult(tr, lw, post.log_ml)


# ---------------------------------------------------------------------------- mixed models
class EnumeratedLogDensity:
    """``log Σ_z p(θ, z, y)`` as a function of the continuous latents' unconstrained
    vector ``θ`` — the discrete latents ``z`` summed out exactly.

    A drop-in replacement of :class:`genmlx.core.LogDensity` (same methods:
    ``dim``, ``addresses``, ``__call__``, ``value_and_grad``, ``pure``, ``constrain``,
    ``to_choicemap``, ``from_choicemap``, ``from_trace``, ``to_trace``), so HMC, NUTS
    (:func:`genmlx.infer.mcmc`) and VI (:func:`genmlx.infer.advi_logdensity`) run on
    it unchanged. Build one with :func:`enumerated_logdensity`.

    Attributes:
        marginalized: the addresses of the summed-out discrete choices.
        weight_kind: ``"marginal"`` (the value is a density of ``θ`` alone).
    """

    weight_kind = "marginal"

    def __init__(self, enum: _Enumerator, obs: ChoiceMap) -> None:
        self._e = enum
        self.observations = obs
        self.args = enum.args
        self._obs_leaves, self._obs_td = flatten(obs)
        self._arg_leaves, self._arg_td = flatten(enum.args)
        self._fns: dict[Any, Any] = {}
        self.marginalized = tuple(from_path(v.path) for v in enum.vars)

    @property
    def dim(self) -> int:
        """Length of the unconstrained vector."""
        return self._e.dim

    @property
    def addresses(self) -> list[Any]:
        """The continuous latent choices, in vector order."""
        return [from_path(c.path) for c in self._e.conts]

    @property
    def model(self) -> GenerativeFunction:
        """The model."""
        return self._e.model

    @property
    def graph(self) -> ModelGraph:
        """The model graph."""
        return self._e.graph

    # -- pure functions ---------------------------------------------------------
    def _one(self, y: mx.array, obs_leaves: list[mx.array], arg_leaves: list[Any]) -> mx.array:
        e = self._e
        obs = unflatten(self._obs_td, list(obs_leaves))
        args = unflatten(self._arg_td, list(arg_leaves))
        fs, extra, _ = e.factors(obs, y=y, args=args)
        return e.log_z(fs, extra)

    def _constrain_one(
        self, y: mx.array, obs_leaves: list[mx.array], arg_leaves: list[Any]
    ) -> tuple[mx.array, ...]:
        e = self._e
        obs = unflatten(self._obs_td, list(obs_leaves))
        args = unflatten(self._arg_td, list(arg_leaves))
        got: dict[Path, mx.array] = {}
        first = {v.path: v.candidates[0] for v in e.vars}

        def provide(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
            if path in first:
                return first[path]
            c = e.cont_by_path[path]
            dom = c.override if c.override is not None else dist.domain(*params)
            assert dom is not None  # checked when the structure was built
            x = biject_to(dom).forward(y[c.start : c.start + c.size].reshape(c.ushape))
            got[path] = x.astype(c.dtype) if mx.issubdtype(c.dtype, mx.floating) else x
            return got[path]

        replay(e.model, args, obs, provide, op="logdensity.constrain", call=e._call_hook(obs))
        return tuple(got[c.path] for c in e.conts)

    def _inverse_one(
        self, xs: list[mx.array], obs_leaves: list[mx.array], arg_leaves: list[Any]
    ) -> mx.array:
        e = self._e
        obs = unflatten(self._obs_td, list(obs_leaves))
        args = unflatten(self._arg_td, list(arg_leaves))
        given = {c.path: x for c, x in zip(e.conts, xs)}
        first = {v.path: v.candidates[0] for v in e.vars}
        us: dict[Path, mx.array] = {}

        def provide(path: Path, dist: Distribution, params: tuple[Any, ...]) -> mx.array:
            if path in first:
                return first[path]
            c = e.cont_by_path[path]
            dom = c.override if c.override is not None else dist.domain(*params)
            assert dom is not None  # checked when the structure was built
            us[path] = biject_to(dom).inverse(given[path].astype(mx.float32)).reshape(-1)
            return given[path]

        replay(e.model, args, obs, provide, op="logdensity.from_choicemap", call=e._call_hook(obs))
        parts = [us[c.path] for c in e.conts]
        return parts[0] if len(parts) == 1 else mx.concatenate(parts)

    def _function(self, kind: str, batched: bool) -> Any:
        key = (kind, batched)
        fn = self._fns.get(key)
        if fn is not None:
            return fn
        n_obs = len(self._obs_leaves)

        def one(y: mx.array, *inputs: Any) -> Any:
            ol, al = list(inputs[:n_obs]), list(inputs[n_obs:])
            if kind == "logp":
                return self._one(y, ol, al)
            if kind == "vg":
                return mx.value_and_grad(lambda yy: self._one(yy, ol, al))(y)
            if kind == "forward":
                return self._constrain_one(y, ol, al)
            raise AssertionError(kind)

        out = one
        if batched:
            n_in = n_obs + len(self._arg_leaves)
            out = mx.vmap(one, in_axes=(0,) + (None,) * n_in)

        def run(*inputs: Any) -> Any:
            with runtime.transforming():
                return out(*inputs)

        self._fns[key] = run
        return run

    def _compiled(self, kind: str, batched: bool) -> Any:
        key = ("c", kind, batched)
        fn = self._fns.get(key)
        if fn is not None:
            return fn
        cfn = mx.compile(self._function(kind, batched))
        first = [True]

        def call(*inputs: Any) -> Any:
            if first[0]:
                first[0] = False
                with tracing_mode():
                    return cfn(*inputs)
            return cfn(*inputs)

        self._fns[key] = call
        return call

    def pure(self, kind: str = "vg", *, batched: bool = True) -> tuple[Any, list[mx.array]]:
        """``(fn, inputs)`` called as ``fn(y, *inputs)`` (see
        :meth:`genmlx.core.LogDensity.pure`): ``kind`` is ``"vg"`` or ``"logp"``."""
        if kind not in ("vg", "logp"):
            raise ValueError(f"pure: kind must be 'vg' or 'logp', got {kind!r}")
        return self._function(kind, batched), [*self._obs_leaves, *self._arg_leaves]

    def _inputs(self) -> list[Any]:
        return [*self._obs_leaves, *self._arg_leaves]

    def _check(self, y: Any, op: str) -> tuple[mx.array, tuple[int, ...]]:
        y = as_array(y)
        if y.ndim == 0 or y.shape[-1] != self.dim:
            raise ValueError(
                f"{op}: expected a vector of length {self.dim} (with optional leading batch "
                f"axes), got shape {tuple(y.shape)}"
            )
        if not mx.issubdtype(y.dtype, mx.floating):
            y = y.astype(mx.float32)
        return y, tuple(y.shape[:-1])

    def __call__(self, y: Any) -> mx.array:
        """``log Σ_z p(θ(y), z, y_obs) + log|det J|`` at ``y`` (``[..., dim]``)."""
        y, batch = self._check(y, "logdensity")
        flat = y.reshape(-1, self.dim)
        out = self._compiled("logp", True)(flat, *self._inputs())
        return out.reshape(batch) if batch else out.reshape(())

    def value_and_grad(self, y: Any) -> tuple[mx.array, mx.array]:
        """``(ld(y), ∇ld(y))``; batched rows are independent."""
        y, batch = self._check(y, "logdensity.value_and_grad")
        flat = y.reshape(-1, self.dim)
        v, g = self._compiled("vg", True)(flat, *self._inputs())
        if batch:
            return v.reshape(batch), g.reshape(*batch, self.dim)
        return v.reshape(()), g.reshape(self.dim)

    def grad(self, y: Any) -> mx.array:
        """``∇ld(y)``."""
        return self.value_and_grad(y)[1]

    def constrain(self, y: Any) -> dict[Any, mx.array]:
        """The continuous choices' values at ``y``, by address."""
        y, batch = self._check(y, "logdensity.constrain")
        flat = y.reshape(-1, self.dim)
        xs = self._function("forward", True)(flat, *self._inputs())
        return {from_path(c.path): x.reshape(*batch, *c.shape) for c, x in zip(self._e.conts, xs)}

    def to_choicemap(self, y: Any) -> ChoiceMap:
        """The continuous choices at ``y`` as a choice map (batched when ``y`` is)."""
        y, batch = self._check(y, "logdensity.to_choicemap")
        vals = self.constrain(y)
        nodes = [(to_path(a), ChoiceMap(v)) for a, v in vals.items()]
        return ChoiceMap.from_nodes(nodes, tuple(batch[:1]) if len(batch) == 1 else ())

    def from_choicemap(self, choices: Any) -> mx.array:
        """The unconstrained vector of the continuous choices in ``choices``."""
        cm = as_choicemap(choices, "logdensity.from_choicemap", "choices")
        batch = tuple(cm.batch_shape)
        xs = []
        for c in self._e.conts:
            if not cm.has_value(c.path):
                raise KeyError(
                    "logdensity.from_choicemap: no value for the continuous choice at "
                    f"{format_address(c.path)}"
                )
            xs.append(as_array(cm[c.path]))
        n_obs = len(self._obs_leaves)

        def one(*inputs: Any) -> mx.array:
            k = len(self._e.conts)
            return self._inverse_one(
                list(inputs[:k]), list(inputs[k : k + n_obs]), list(inputs[k + n_obs :])
            )

        with runtime.transforming():
            if batch:
                k = len(xs)
                fn = mx.vmap(one, in_axes=(0,) * k + (None,) * len(self._inputs()))
                return fn(*xs, *self._inputs())
            return one(*xs, *self._inputs())

    def from_trace(self, trace: Trace) -> mx.array:
        """The unconstrained vector of a trace's continuous choices."""
        return self.from_choicemap(trace.get_choices())

    def to_trace(self, y: Any, *, key: Key = None) -> Trace:
        """The model's trace at ``y`` with the discrete choices drawn from their exact
        conditional posterior given ``θ(y)`` (:func:`infer_discrete`)."""
        y, batch = self._check(y, "logdensity.to_trace")
        flat = y.reshape(-1, self.dim)
        n = flat.shape[0]
        k1, k2 = mx.random.split(resolve_key(key))
        disc = _discrete_draws(self, flat, k1)
        cm = self.to_choicemap(flat)
        for a, v in disc.items():
            cm = cm.merge(ChoiceMap.from_nodes([(to_path(a), ChoiceMap(v))], (n,)))
        if not self.observations.is_empty:
            cm = cm.merge(
                self.observations.map(lambda v: mx.broadcast_to(v, (n, *v.shape))).with_batch_shape(
                    (n,)
                )
            )
        if not batch:
            one = ChoiceMap.from_nodes(((p, ChoiceMap(x[0])) for p, x in cm.leaves()), ())
            return self.model.generate(self.args, one, key=k2).trace
        return self.model.vgenerate(self.args, cm, n, key=k2).trace

    def __repr__(self) -> str:
        cont = ", ".join(format_address(c.path) for c in self._e.conts)
        disc = ", ".join(format_address(v.path) for v in self._e.vars)
        return f"EnumeratedLogDensity({self.model!r}, dim={self.dim}: {cont}; summed out: {disc})"


def enumerated_logdensity(
    model: GenerativeFunction,
    args: tuple[Any, ...] = (),
    observations: Any = None,
    *,
    supports: Mapping[Any, Any] | None = None,
    domains: Mapping[Any, Constraint] | None = None,
    key: Key = None,
) -> EnumeratedLogDensity:
    """The log density of a mixed model's continuous latents, its discrete latents summed
    out exactly (NumPyro's enumerated ``log_density`` / ``TraceEnum_ELBO`` idea).

    Every latent choice with a finite support (or listed in ``supports``) gets an
    enumeration axis; every continuous one a slice of the unconstrained vector, mapped
    to its domain by its bijector (:func:`genmlx.core.bijectors.biject_to`) with the
    log-Jacobian added. The value at ``y`` is
    ``log Σ_z p(θ(y), z, obs) + log |det ∂θ/∂y|``, differentiable in ``y``, compiled
    once per input shape.

    Raises:
        StaticModelError: no continuous latent (use :func:`enumerate_posterior`), a
            continuous one without a domain, a dynamic model, or a model that does not
            broadcast over the enumeration axes.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen
        >>> from genmlx.dists import normal, bernoulli
        >>> @gen
        ... def m():
        ...     mu = normal(0.0, 3.0) @ "mu"
        ...     z = bernoulli(0.5) @ "z"
        ...     normal(mx.where(z, mu, -mu), 1.0) @ "y"
        >>> ld = enumerated_logdensity(m, (), {"y": 2.0})
        >>> ld.dim, ld.addresses, ld.marginalized
        (1, ['mu'], ('z',))
    """
    op = "enumerated_logdensity"
    args = as_args(args, op)
    obs = as_choicemap(observations, op, "observations")
    if obs.batch_shape:
        raise ValueError(f"{op}: observations must be unbatched")
    e = _Enumerator(
        model,
        args,
        obs,
        supports=_paths(supports),
        grid=None,
        continuous=True,
        domains=_paths(domains),
        key=resolve_key(key if key is not None else 0),
        op=op,
    )
    if not e.conts:
        raise StaticModelError(
            f"{op}: {model!r} has no continuous latent choices; use enumerate_posterior"
        )
    return EnumeratedLogDensity(e, obs)


def _discrete_draws(ld: EnumeratedLogDensity, flat: mx.array, key: mx.array) -> dict[Any, mx.array]:
    """One draw of the discrete choices per row of ``flat`` from ``p(z | θ, y)``."""
    e = ld._e
    if e.E == 0:
        return {}
    obs = ld.observations

    def one(y: mx.array, k: mx.array) -> tuple[mx.array, ...]:
        fs, extra, _ = e.factors(obs, y=y)
        rec: list[Record] = []
        e.log_z(fs, extra, record=rec)
        idx = backtrack(rec, e.E, 1, k)
        return tuple(x[0] for x in _values(e, idx, 1))

    keys = mx.random.split(key, flat.shape[0])
    with runtime.transforming():
        out = mx.vmap(one)(flat, keys)
    return {from_path(v.path): x for v, x in zip(e.vars, out)}


def infer_discrete(result: Any, *, key: Key = None) -> dict[Any, mx.array]:
    """Posterior draws of the discrete choices summed out by an MCMC run, one per draw.

    For every kept draw ``θ`` of an :class:`~genmlx.infer.MCMCResult` whose log density
    is an :class:`EnumeratedLogDensity` (what :func:`genmlx.infer.mcmc` uses for a
    model with discrete latents), the discrete choices are drawn from their exact
    conditional ``p(z | θ, y)`` by backward sampling through the elimination — so the
    pairs ``(θ, z)`` are draws from the joint posterior.

    Returns:
        ``{address: [chain, draw, *shape]}`` for every choice: the continuous draws of
        the run and the new discrete ones.

    Raises:
        TypeError: the result's log density did not sum out discrete choices.
    """
    ld = getattr(result, "logdensity", None)
    if not isinstance(ld, EnumeratedLogDensity):
        raise TypeError(
            "infer_discrete: expected an MCMCResult whose log density summed out discrete "
            "choices (mcmc on a model with enumerable discrete latents)"
        )
    pos = result.positions
    c, n = int(pos.shape[0]), int(pos.shape[1])
    draws = _discrete_draws(ld, pos.reshape(c * n, ld.dim), resolve_key(key))
    out = dict(result.samples)
    for a, v in draws.items():
        out[a] = v.reshape(c, n, *v.shape[1:])
    return out
