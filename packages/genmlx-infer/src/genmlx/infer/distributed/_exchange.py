"""Moving particles between processes: each process receives the particles it asks for.

A resampling (or a gather) gives every process the list of *global* particle indices
it needs, and every process knows every list (they come from replicated data: the
gathered weights and a shared key). The exchange then moves only the particles that
cross a process boundary:

1. each process ``s`` *exports* the sorted, distinct indices it owns that some other
   process needs (``E_s``); all processes compute every ``E_s``;
2. one ``all_gather`` sends the exported particles (``m = max_s |E_s|`` rows per
   process, padded; all arrays packed into one byte buffer), materialised into plain
   arrays;
3. each process builds its new particles with one gather per array from its own
   particles and the imported rows.

Communication is ``P·m`` particles per process (a particle needed by several slots or
processes travels once). When nothing crosses, no particle data moves, and a process
that imports nothing keeps its particles' lazy storage (a sequence trace's frozen
history stays shared). A process that imports rebuilds its particles as plain arrays:
for a sequence trace at step ``t``, ``O(t · n_local)`` work per exchange (the
single-process filter's lazy ancestor maps cannot point into another process).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import Trace
from genmlx.core.batching import rebatch, take_particles
from genmlx.core.tree import flatten, unflatten
from genmlx.infer.distributed._comm import Layout, checked_gather, fingerprint, gather_packed

__all__ = ["Plan", "Thawed", "fetch", "plan"]


class Plan:
    """Who sends which particles to whom (computed identically on every process).

    Attributes:
        exports: per rank, the sorted global indices it sends (``E_s``).
        width: ``m = max_s |E_s|`` (rows per process in the all-gather).
        source: per rank, for each wanted particle, its row in
            ``concat(own particles, gathered exports)``.
        imports: per rank, whether it needs any particle from another process.
    """

    __slots__ = ("exports", "imports", "source", "width")

    def __init__(
        self,
        exports: list[np.ndarray],
        width: int,
        source: list[np.ndarray],
        imports: list[bool],
    ) -> None:
        self.exports = exports
        self.width = width
        self.source = source
        self.imports = imports


def plan(layout: Layout, wanted: list[np.ndarray]) -> Plan:
    """The exchange plan for ``wanted[r]`` (global indices rank ``r`` needs, in order).

    Example:
        >>> import numpy as np
        >>> lay = Layout((2, 2), 0)
        >>> p = plan(lay, [np.array([0, 3, 3]), np.array([1, 1])])
        >>> [e.tolist() for e in p.exports], p.width
        ([[1], [3]], 1)
        >>> p.source[0].tolist(), p.source[1].tolist()   # rank 0: own row 0, then import
        ([0, 3, 3], [2, 2])
    """
    size = layout.size
    starts = np.asarray(layout.starts, dtype=np.int64)
    owners = [layout.owner(w) for w in wanted]
    for r, w in enumerate(wanted):
        if w.size and (w.min() < 0 or w.max() >= layout.n_total):
            raise ValueError(f"exchange: rank {r} asks for particles outside [0, {layout.n_total})")
    exports: list[np.ndarray] = []
    for s in range(size):
        parts = [wanted[r][owners[r] == s] for r in range(size) if r != s]
        exports.append(np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64))
    width = max((e.size for e in exports), default=0)
    source: list[np.ndarray] = []
    imports: list[bool] = []
    for r in range(size):
        w, o = np.asarray(wanted[r], dtype=np.int64), owners[r]
        src = np.empty(w.shape, dtype=np.int64)
        own = o == r
        src[own] = w[own] - starts[r]
        n_r = layout.sizes[r]
        for s in range(size):
            sel = o == s
            if s == r or not sel.any():
                continue
            src[sel] = n_r + s * width + np.searchsorted(exports[s], w[sel])
        source.append(src)
        imports.append(bool((~own).any()))
    return Plan(exports, width, source, imports)


class Thawed:
    """This process's particles as plain arrays (every leaf ``[n_local, ...]``, lazily
    gathered by MLX), the layout every process must share to exchange particles."""

    __slots__ = ("fingerprint", "leaves", "treedef")

    def __init__(self, local: Trace) -> None:
        self.leaves, self.treedef = flatten(local._replace(args=()), thaw=True)
        self.fingerprint = fingerprint(
            [(str(x.dtype), tuple(x.shape[1:])) for x in self.leaves]
        )


STRUCTURE = (
    "the particles' array structure (moving particles between processes needs every "
    "particle to have the same addresses and shapes on every process)"
)


def fetch(
    local: Trace,
    layout: Layout,
    wanted: list[np.ndarray],
    group: Any,
    op: str,
    thawed: Thawed | None = None,
) -> Trace:
    """The particles ``wanted[rank]`` (global indices) as a batched trace on this process.

    ``local`` holds this process's particles (``layout.n_local`` of them); ``wanted`` is
    the same list on every process. ``thawed`` is ``Thawed(local)`` when the caller has
    already checked (in an earlier collective) that every process has the same
    ``thawed.fingerprint``; otherwise the check costs one small collective here.

    Raises:
        ValueError: (on every process) the particles' array structures differ between
            processes, so they cannot be exchanged.
    """
    p = plan(layout, wanted)
    rank = layout.rank
    mine = mx.array(p.source[rank].astype(np.int32))
    if p.width == 0:  # nothing crosses a process boundary
        out: Trace = take_particles(local, mine)
        return out
    if thawed is None:
        thawed = Thawed(local)
        checked_gather(
            mx.zeros((0,)), group, op, 0, (thawed.fingerprint, len(thawed.leaves)),
            adopt=False, names=(STRUCTURE, STRUCTURE),
        )
    exp_idx = np.zeros(p.width, dtype=np.int64)
    own_exports = p.exports[rank] - layout.lo
    exp_idx[: own_exports.size] = own_exports
    take = mx.array(exp_idx.astype(np.int32))
    # the exported rows, materialised from the lazy storage (only m rows are gathered)
    exported, _ = flatten(take_particles(local._replace(args=()), take), thaw=True)
    imported = gather_packed(exported, p.width, group)
    if not p.imports[rank]:  # keep this process's lazy storage
        out = take_particles(local, mine)
        return out
    new_leaves = [
        mx.take(mx.concatenate([a, b], axis=0), mine, axis=0)
        for a, b in zip(thawed.leaves, imported)
    ]
    res: Trace = unflatten(rebatch(thawed.treedef, (int(mine.shape[0]),)), new_leaves)
    return res._replace(args=local.args)
