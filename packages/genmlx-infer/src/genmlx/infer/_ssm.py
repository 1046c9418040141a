"""State-space structure of ``Unfold``/``Scan`` models (shared by Kalman and HMM).

A *sequence model* is ``Unfold(kernel)`` called as ``(T, init_state, *params)``,
``Scan(kernel)`` called as ``(init_carry, xs)``, or a ``@gen`` model whose only latent
choices are inside one such call (other observed choices add a constant). Step ``t``'s
choices live at ``(t, addr)`` below the call.

The kernel (a ``@gen`` function) is analysed with :func:`genmlx.core.analyze`; its
latent choices are the *state* (one per step) and, for a Rao-Blackwellised filter,
*sampled* choices; its observed choices are the *emissions*. The kernel must return
its state as the new state (``Unfold``; ``(state, out)`` for ``Scan``), possibly in a
tuple with sampled choices. Everything numeric is found by replaying the kernel with
chosen values (:mod:`genmlx.infer._replay`): the distribution parameters of every site
as functions of the incoming state and of the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import mlx.core as mx

from genmlx.core import (
    ChoiceMap,
    Distribution,
    DynamicGenerativeFunction,
    GenerativeFunction,
    StaticModelError,
    analyze,
    runtime,
)
from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import as_array
from genmlx.core.tree import flatten, unflatten
from genmlx.infer._replay import SiteRecord, fn_name, replay

__all__ = ["SeqModel", "find_sequence", "is_sequence_gf", "stack_steps"]


def is_sequence_gf(gf: Any) -> bool:
    """``Unfold`` / ``Scan`` from genmlx.combinators (recognised without importing it)."""
    return type(gf).__name__ in ("Unfold", "Scan") and isinstance(
        getattr(gf, "kernel", None), GenerativeFunction
    )


@dataclass
class SeqModel:
    """A sequence model located in a user model.

    Attributes:
        model: the user's model.
        seq: the ``Unfold``/``Scan``.
        kind: ``"Unfold"`` or ``"Scan"``.
        prefix: the call's address in ``model`` (``()`` when ``model`` is the combinator).
        seq_args: the combinator's arguments.
        T: the number of steps.
        kernel: the kernel (a ``@gen`` function).
        obs_paths: kernel-relative addresses of the observed choices.
        obs_values: ``{path: [T, *shape]}`` (zeros where missing).
        obs_mask: ``{path: [T] bool}``.
        outer_log_prob: the log density of observed choices outside the sequence.
        graph: the kernel's graph at step 0.
        state_paths / sampled_paths: the kernel's latent choices by role.
    """

    model: GenerativeFunction
    seq: GenerativeFunction
    kind: str
    prefix: Path
    seq_args: tuple[Any, ...]
    T: int
    kernel: GenerativeFunction
    obs_paths: list[Path]
    obs_values: dict[Path, mx.array]
    obs_mask: dict[Path, mx.array]
    outer_log_prob: mx.array
    graph: Any  # the kernel's ModelGraph (set once the step arguments are known)
    latent_sites: list[Any]

    # -- kernel arguments ------------------------------------------------------------
    @property
    def init(self) -> Any:
        return self.seq_args[1] if self.kind == "Unfold" else self.seq_args[0]

    def step_args(self, t: Any, carry: Any) -> tuple[Any, ...]:
        if self.kind == "Unfold":
            return (t, carry, *self.seq_args[2:])
        leaves, td = flatten(self.seq_args[1])
        return (carry, unflatten(td, [x[t] for x in leaves]))

    def carry_of(self, ret: Any) -> Any:
        return ret if self.kind == "Unfold" else ret[0]

    def obs_at(self, t: int) -> ChoiceMap:
        """Step ``t``'s observations (placeholders where missing)."""
        return ChoiceMap.from_nodes(
            [(p, ChoiceMap(self.obs_values[p][t])) for p in self.obs_paths], ()
        )

    def mask_at(self, t: int) -> dict[Path, mx.array]:
        return {p: self.obs_mask[p][t] for p in self.obs_paths}

    def address(self, t: int, path: Path) -> Path:
        return (*self.prefix, t, *path)

    # -- replay ------------------------------------------------------------------------
    def run(
        self,
        t: Any,
        carry: Any,
        obs: ChoiceMap,
        provide: Callable[[Path, Distribution, tuple[Any, ...]], mx.array],
        op: str,
    ) -> tuple[list[SiteRecord], Any]:
        """Replay the kernel at step ``t`` with incoming ``carry``; ``(records, new carry)``."""
        recs, ret = replay(self.kernel, self.step_args(t, carry), obs, provide, op=op)
        return recs, self.carry_of(ret)


def find_sequence(
    model: GenerativeFunction, args: tuple[Any, ...], obs: ChoiceMap, op: str
) -> SeqModel:
    """Locate the ``Unfold``/``Scan`` of ``model`` and collect its per-step observations.

    Raises:
        StaticModelError: no sequence combinator, more than one, latent choices outside
            it, or a kernel that is not a static ``@gen`` function.
    """
    prefix: Path = ()
    outer = mx.array(0.0)
    if is_sequence_gf(model):
        seq, seq_args, sub = model, tuple(args), obs
    else:
        if not isinstance(model, DynamicGenerativeFunction):
            raise StaticModelError(
                f"{op}: expected an Unfold/Scan model (or a @gen model around one), got {model!r}"
            )
        g = analyze(model, args, obs)
        if not g.is_static:
            raise StaticModelError(f"{op}: {model!r} is dynamic: {g.reason}")
        calls = [s for s in g.sites if s.kind == "call" and is_sequence_gf(s.gen_fn)]
        if len(calls) != 1:
            raise StaticModelError(
                f"{op}: {model!r} must call exactly one Unfold or Scan (found {len(calls)})"
            )
        others = [s for s in g.sites if s.kind == "choice" and not s.observed]
        others += [s for s in g.sites if s.kind == "call" and s is not calls[0] and s.is_latent]
        if others:
            raise StaticModelError(
                f"{op}: {model!r} has latent choices outside its {fn_name(calls[0].gen_fn)} "
                f"({', '.join(format_address(s.path) for s in others)}); a Kalman/HMM pass "
                "integrates out the state sequence only. Condition on them, or use them as "
                "the sampled part of a particle method (pmmh with this filter's log_ml)"
            )
        prefix = calls[0].path
        found: dict[str, Any] = {}

        def call(path: Path, gf: GenerativeFunction, a: tuple[Any, ...], subm: ChoiceMap) -> Any:
            found["args"] = a
            tr, _ = gf.generate(a, subm, key=mx.random.key(0))
            return tr.retval

        recs, _ = replay(
            model, args, obs, lambda p, d, pa: d.sample(mx.random.key(0), *pa), op=op, call=call
        )
        for r in recs:
            outer = outer + mx.sum(r.dist.log_prob(r.value, *r.params))
        seq, seq_args = calls[0].gen_fn, found["args"]
        sub = obs.get_submap(prefix) if not obs.is_empty else ChoiceMap.empty()
    kind = type(seq).__name__
    kernel = seq.kernel  # type: ignore[attr-defined]
    if not isinstance(kernel, DynamicGenerativeFunction):
        raise StaticModelError(f"{op}: the {kind}'s kernel must be a @gen function, got {kernel!r}")
    if kind == "Unfold":
        T = seq_args[0]
        if isinstance(T, mx.array):
            T = int(cast(int, T.item()))
    else:
        leaves, _ = flatten(seq_args[1])
        T = int(leaves[0].shape[0])
    if not isinstance(T, int) or T < 1:
        raise StaticModelError(f"{op}: the sequence needs at least one step, got {T!r}")
    # per-step observations, kernel-relative
    per: dict[Path, dict[int, mx.array]] = {}
    for path, v in sub.leaves():
        if not path or not isinstance(path[0], int) or isinstance(path[0], bool):
            raise StaticModelError(
                f"{op}: observation at {format_address((*prefix, *path))} is not below a step "
                "(t, ...) of the sequence"
            )
        t = path[0]
        if not 0 <= t < T:
            raise StaticModelError(f"{op}: observation at step {t} outside 0..{T - 1}")
        per.setdefault(path[1:], {})[t] = as_array(v)
    obs_paths = list(per)
    values: dict[Path, mx.array] = {}
    mask: dict[Path, mx.array] = {}
    for p, d in per.items():
        ref = next(iter(d.values()))
        rows = [d.get(t, mx.zeros(ref.shape, dtype=ref.dtype)) for t in range(T)]
        values[p] = mx.stack(rows)
        mask[p] = mx.array([t in d for t in range(T)])
    sm = SeqModel(
        model,
        seq,
        kind,
        prefix,
        tuple(seq_args),
        T,
        kernel,
        obs_paths,
        values,
        mask,
        outer,
        None,
        [],
    )  # type: ignore[arg-type]
    obs0 = sm.obs_at(0)
    g = analyze(kernel, sm.step_args(0, sm.init), obs0)
    if not g.is_static:
        raise StaticModelError(f"{op}: the kernel {kernel!r} is dynamic: {g.reason}")
    if any(s.kind == "call" for s in g.sites):
        raise StaticModelError(
            f"{op}: the kernel {kernel!r} calls other generative functions; inline them as @gen"
        )
    sm.graph = g
    sm.latent_sites = [s for s in g.sites if s.kind == "choice" and not s.observed]
    return sm


def stack_steps(fn: Callable[[Any], tuple[mx.array, ...]], sm: SeqModel) -> tuple[mx.array, ...]:
    """``fn(t)`` for every step, stacked on a new leading axis.

    ``fn`` is first tried vectorised over ``t`` (an int32 array under ``mx.vmap``); a
    kernel whose Python code needs ``t`` as an int (``range(t)``, ``if t == 0``, list
    indexing) is evaluated step by step instead.
    """
    ts = mx.arange(sm.T, dtype=mx.int32)
    try:
        with runtime.transforming():
            out = mx.vmap(fn)(ts)
        mx.eval(out)
        return tuple(out)
    except Exception:
        rows = [fn(t) for t in range(sm.T)]
        return tuple(mx.stack([r[i] for r in rows]) for i in range(len(rows[0])))
