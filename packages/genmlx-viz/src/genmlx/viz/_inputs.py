"""Turning genmlx results into NumPy arrays the plots and the ArviZ export read.

Every public function of :mod:`genmlx.viz` accepts the objects inference hands back.
They are recognised by shape (duck typing), so this module never imports
``genmlx.infer`` (the package's only runtime dependency is ``genmlx-core``):

* **samples / particles** (``collect_samples``): a batched :class:`~genmlx.core.Trace`
  (leaves ``[N, ...]``), a list of traces, a :class:`~genmlx.core.ChoiceMap` with
  batched leaves, a dict ``{address: [N, ...] array}``, anything with ``.traces`` and
  ``.log_weights`` (``ISResult``, ``ParticleFilterState``: weighted particles), or a
  chain result with ``.samples`` and ``.trace`` (``ChainResult``: all chains pooled);
* **chains** (``collect_chains``): a chain result (its ``samples[a]`` are
  ``[draws, *batch_shape, ...]``, the chains being the trace's batch) or a dict
  ``{address: [chains, draws, ...] array}`` (ArviZ's and ``genmlx.infer.diagnostics``'
  layout; a 1-D array is one chain).

Addresses become labels: ``"mu"`` stays ``mu``, ``("y", 3)`` becomes ``y/3``; a
vector-valued choice is split into scalar components ``ys[0]``, ``ys[1]``, ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, Trace
from genmlx.core.address import Address, to_path

__all__ = [
    "Chains",
    "Column",
    "Samples",
    "address_label",
    "address_list",
    "as_numpy",
    "collect_chains",
    "collect_samples",
    "expand_chains",
    "normalise_weights",
]

MAX_VARIABLES = 36
"""Most scalar variables one figure draws before asking for ``addresses=``."""


def address_label(addr: Any) -> str:
    """A short readable name for an address: ``"mu"`` → ``mu``, ``("y", 3)`` → ``y/3``.

    Example:
        >>> address_label("mu"), address_label(("y", 3))
        ('mu', 'y/3')
    """
    if isinstance(addr, tuple):
        return "/".join(str(c) for c in addr) if addr else "<root>"
    return str(addr)


def address_list(addresses: Any) -> list[Any] | None:
    """``None``, or the addresses as a list; a single address (a str, an int or a tuple
    path such as ``("y", 3)``) becomes a one-element list. Collections of addresses must
    be lists (a tuple is one path)."""
    if addresses is None:
        return None
    if isinstance(addresses, (str, int, tuple)):
        return [addresses]
    return list(addresses)


def as_numpy(value: Any) -> np.ndarray:
    """A NumPy copy of an MLX array (or anything array-like); bfloat16 becomes float32."""
    if isinstance(value, mx.array):
        if value.dtype == mx.bfloat16:
            value = value.astype(mx.float32)
        return np.array(value)
    return np.asarray(value)


def normalise_weights(weights: Any, n: int, op: str, *, log: bool = False) -> np.ndarray:
    """Weights (or log weights) as float64 probabilities summing to one, shape ``[n]``.

    Raises:
        ValueError: wrong shape, a NaN, a negative weight or an all-zero vector.
    """
    w = as_numpy(weights).astype(np.float64)
    what = "log_weights" if log else "weights"
    if w.shape != (n,):
        raise ValueError(f"{op}: {what} must have shape ({n},), one per particle, got {w.shape}")
    if np.isnan(w).any():
        raise ValueError(f"{op}: {what} contain NaN")
    if log:
        if (w == np.inf).any():
            raise ValueError(f"{op}: log_weights contain +inf")
        if not (w > -np.inf).any():
            raise ValueError(f"{op}: every log weight is -inf (no particle has mass)")
        w = np.exp(w - w.max())
    else:
        if (w < 0).any() or not np.isfinite(w).all():
            raise ValueError(f"{op}: weights must be finite and non-negative")
    total = w.sum()
    if not total > 0:
        raise ValueError(f"{op}: {what} give every particle zero mass")
    return w / total


@dataclass(frozen=True)
class Column:
    """One scalar variable: ``values [N]`` (float64), an optional presence mask ``[N]``.

    ``label`` names it in plots (``mu``, ``y/3``, ``ys[0]``); ``base`` is the address
    it came from and ``index`` its component within a vector-valued choice.
    """

    label: str
    values: np.ndarray
    present: np.ndarray | None
    discrete: bool
    base: Any
    index: tuple[int, ...]


@dataclass(frozen=True)
class Samples:
    """Samples of named variables: ``arrays[label]`` is ``[N, *event]``.

    Attributes:
        arrays: label → array with the ``N`` samples on the leading axis (dtypes kept).
        masks: label → boolean ``[N]`` (where the choice exists), for masked choices.
        addresses: label → the address the user named.
        weights: normalised importance weights ``[N]`` or ``None`` (equal weights).
        n: the number of samples ``N``.
    """

    arrays: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    addresses: dict[str, Any]
    weights: np.ndarray | None
    n: int

    def columns(self, op: str, max_variables: int = MAX_VARIABLES) -> list[Column]:
        """Scalar columns (vector-valued choices split into components), in order."""
        cols: list[Column] = []
        for label, arr in self.arrays.items():
            discrete = arr.dtype.kind in "biu"
            present = self.masks.get(label)
            event = arr.shape[1:]
            flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
            for j, idx in enumerate(np.ndindex(*event)):
                name = label if not event else f"{label}[{','.join(map(str, idx))}]"
                cols.append(Column(name, flat[:, j], present, discrete, self.addresses[label], idx))
        if not cols:
            raise ValueError(f"{op}: there is nothing to plot (no addresses)")
        if len(cols) > max_variables:
            raise ValueError(
                f"{op}: {len(cols)} scalar variables ({', '.join(c.label for c in cols[:6])}, "
                f"...) exceed {max_variables}; pass addresses=[...] to choose the ones to plot"
            )
        return cols

    def column_weights(self, col: Column) -> np.ndarray | None:
        """The weights of a column's present samples (renormalised), ``None`` if equal."""
        if col.present is None:
            return self.weights
        w = np.ones(self.n) if self.weights is None else self.weights
        w = np.where(col.present, w, 0.0)
        total = w.sum()
        if not total > 0:
            raise ValueError(f"variable {col.label} is absent from every particle")
        return w / total


# ---------------------------------------------------------------------------- samples
def _is_particles(obj: Any) -> bool:
    return hasattr(obj, "traces") and hasattr(obj, "log_weights")


def _is_chain_result(obj: Any) -> bool:
    return isinstance(getattr(obj, "samples", None), Mapping) and isinstance(
        getattr(obj, "trace", None), Trace
    )


def _lookup(mapping: Mapping[Any, Any], addr: Any, op: str) -> tuple[Any, Any]:
    """``(key, value)`` of ``addr`` in a dict keyed by addresses (``"a"`` ≡ ``("a",)``)."""
    if addr in mapping:
        return addr, mapping[addr]
    try:
        path = to_path(addr)
    except TypeError:
        path = None
    for k, v in mapping.items():
        try:
            if path is not None and to_path(k) == path:
                return k, v
        except TypeError:
            continue
    known = ", ".join(repr(k) for k in list(mapping)[:12])
    raise KeyError(f"{op}: address {addr!r} is not in the samples (known: {known})")


def _trace_leaves(choices: ChoiceMap) -> list[Address]:
    return [a for a, _ in choices]


def _from_choicemap(
    choices: ChoiceMap,
    batch: tuple[int, ...] | None,
    addresses: Sequence[Any] | None,
    op: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], int]:
    """Leaves ``[*batch, *event]`` pooled to ``[N, *event]`` (``N = prod(batch)``);
    ``batch=None``: one leading axis, read from the first leaf."""
    addrs = list(addresses) if addresses is not None else _trace_leaves(choices)
    arrays: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    names: dict[str, Any] = {}
    for a in addrs:
        if a not in choices or not choices.has_value(a):
            known = ", ".join(repr(k) for k in _trace_leaves(choices)[:12])
            raise KeyError(f"{op}: address {a!r} holds no choice (choices: {known})")
        arr = as_numpy(choices[a])
        if batch is None:
            if arr.ndim == 0:
                raise ValueError(
                    f"{op}: the choice map is not batched (address {a!r} is a scalar); "
                    "pass a batched trace, a list of traces or a dict of [N, ...] arrays"
                )
            batch = arr.shape[:1]
        if arr.shape[: len(batch)] != batch:
            raise ValueError(
                f"{op}: address {a!r} has shape {arr.shape}, expected leading axes {batch}"
            )
        n = math.prod(batch)
        label = address_label(a)
        arrays[label] = arr.reshape(n, *arr.shape[len(batch) :])
        names[label] = a
        m = choices.get_mask(a)
        if m is not None:
            masks[label] = np.broadcast_to(as_numpy(m).astype(bool), batch).reshape(n).copy()
    if batch is None:
        raise ValueError(f"{op}: no addresses to read")
    return arrays, masks, names, math.prod(batch)


def _from_trace(
    trace: Trace, addresses: Sequence[Any] | None, op: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], int]:
    if not trace.batch_shape:
        return _from_traces([trace], addresses, op)
    # several batch axes (e.g. chains x particles) are pooled into one
    return _from_choicemap(trace.get_choices(), tuple(trace.batch_shape), addresses, op)


def _from_traces(
    traces: Sequence[Trace], addresses: Sequence[Any] | None, op: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], int]:
    if not traces:
        raise ValueError(f"{op}: the list of traces is empty")
    addrs = list(addresses) if addresses is not None else _trace_leaves(traces[0].get_choices())
    parts: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], int]] = []
    for tr in traces:
        if not isinstance(tr, Trace):
            raise TypeError(f"{op}: a list of samples must hold traces, got {type(tr).__name__}")
        if tr.batch_shape:
            parts.append(_from_trace(tr, addrs, op))
            continue
        cm = tr.get_choices()
        arrays: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        names: dict[str, Any] = {}
        for a in addrs:
            if not cm.has_value(a):
                raise KeyError(f"{op}: address {a!r} holds no choice in one of the traces")
            label = address_label(a)
            arrays[label] = as_numpy(cm[a])[None]
            names[label] = a
            m = cm.get_mask(a)
            if m is not None:
                masks[label] = as_numpy(m).astype(bool).reshape(1)
        parts.append((arrays, masks, names, 1))
    labels = list(parts[0][0])
    arrays = {k: np.concatenate([p[0][k] for p in parts]) for k in labels}
    masked = {k for p in parts for k in p[1]}
    masks = {
        k: np.concatenate([p[1].get(k, np.ones(p[3], dtype=bool)) for p in parts]) for k in masked
    }
    return arrays, masks, parts[0][2], sum(p[3] for p in parts)


def _from_mapping(
    mapping: Mapping[Any, Any], addresses: Sequence[Any] | None, op: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], int]:
    keys = list(addresses) if addresses is not None else list(mapping)
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, Any] = {}
    n: int | None = None
    for a in keys:
        _, v = _lookup(mapping, a, op)
        arr = as_numpy(v)
        if arr.ndim == 0:
            raise ValueError(f"{op}: samples of {a!r} must be an array [N, ...], got a scalar")
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise ValueError(f"{op}: samples of {a!r} have {arr.shape[0]} entries, others have {n}")
        label = address_label(a)
        arrays[label] = arr
        names[label] = a
    if n is None:
        raise ValueError(f"{op}: no samples given")
    return arrays, {}, names, n


def _from_chain_result(
    res: Any, addresses: Sequence[Any] | None, op: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], int]:
    chains = collect_chains(res, addresses, op)
    arrays = {k: v.reshape(-1, *v.shape[2:]) for k, v in chains.arrays.items()}
    n = next(iter(arrays.values())).shape[0]
    return arrays, {}, chains.addresses, n


def collect_samples(obj: Any, addresses: Sequence[Any] | None, weights: Any, op: str) -> Samples:
    """Read samples (and importance weights) from any supported result.

    Args:
        obj: batched trace, list of traces, ChoiceMap with batched leaves, dict of
            ``[N, ...]`` arrays, weighted particles (``.traces``/``.log_weights``) or a
            chain result (``.samples``/``.trace``; chains are pooled).
        addresses: the addresses to read (``None``: every one available).
        weights: non-negative weights ``[N]`` (any scale), or ``None``.
        op: the calling function's name, for error messages.
    """
    addresses = address_list(addresses)
    log_w: Any = None
    if _is_particles(obj):
        if weights is not None:
            raise ValueError(
                f"{op}: {type(obj).__name__} carries its own log_weights; do not pass weights="
            )
        log_w = obj.log_weights
        obj = obj.traces
    if isinstance(obj, Trace):
        parts = _from_trace(obj, addresses, op)
    elif isinstance(obj, ChoiceMap):
        parts = _from_choicemap(obj, tuple(obj.batch_shape) or None, addresses, op)
    elif _is_chain_result(obj):
        parts = _from_chain_result(obj, addresses, op)
    elif isinstance(obj, Mapping):
        parts = _from_mapping(obj, addresses, op)
    elif isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], Trace):
        parts = _from_traces(obj, addresses, op)
    else:
        raise TypeError(
            f"{op}: cannot read samples from {type(obj).__name__}; pass a batched trace, a "
            "list of traces, a dict {address: [N, ...] array}, an importance-sampling or "
            "particle-filter result, or a chain result"
        )
    arrays, masks, names, n = parts
    w: np.ndarray | None = None
    if log_w is not None:
        w = normalise_weights(log_w, n, op, log=True)
    elif weights is not None:
        w = normalise_weights(weights, n, op)
    return Samples(arrays, masks, names, w, n)


# ---------------------------------------------------------------------------- chains
@dataclass(frozen=True)
class Chains:
    """Draws of named variables from several chains: ``arrays[label]`` is ``[C, D, *event]``.

    ``acceptance_rate`` (``[C]``) is set when the input was a chain result.
    """

    arrays: dict[str, np.ndarray]
    addresses: dict[str, Any]
    acceptance_rate: np.ndarray | None

    @property
    def n_chains(self) -> int:
        """``C``."""
        return next(iter(self.arrays.values())).shape[0]

    @property
    def n_draws(self) -> int:
        """``D``."""
        return next(iter(self.arrays.values())).shape[1]


def collect_chains(obj: Any, addresses: Sequence[Any] | None, op: str) -> Chains:
    """Read ``[chains, draws, ...]`` arrays from a chain result or a dict of arrays.

    A chain result's ``samples[a]`` has shape ``[draws, *trace.batch_shape, *event]``:
    the trace's batch axes are the chains (pooled into one axis if there are several),
    and an unbatched trace is one chain. A dict's arrays are ``[chains, draws, *event]``;
    a 1-D array is one chain.
    """
    addresses = address_list(addresses)
    acc: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, Any] = {}
    if _is_chain_result(obj):
        samples: Mapping[Any, Any] = obj.samples
        if not samples:
            raise ValueError(
                f"{op}: the chain result recorded no addresses; run chain(..., addresses=[...])"
            )
        bs = tuple(obj.trace.batch_shape)
        keys = list(addresses) if addresses is not None else list(samples)
        for a in keys:
            _, v = _lookup(samples, a, op)
            arr = as_numpy(v)
            d = arr.shape[0]
            if arr.shape[1 : 1 + len(bs)] != bs:
                raise ValueError(
                    f"{op}: recorded samples of {a!r} have shape {arr.shape}, expected "
                    f"[draws, {', '.join(map(str, bs))}, ...]"
                )
            c = math.prod(bs)
            arr = arr.reshape(d, c, *arr.shape[1 + len(bs) :])
            arrays[address_label(a)] = np.moveaxis(arr, 1, 0)
            names[address_label(a)] = a
        rate = getattr(obj, "acceptance_rate", None)
        if rate is not None:
            acc = as_numpy(rate).astype(np.float64).reshape(-1)
    elif isinstance(obj, Mapping):
        keys = list(addresses) if addresses is not None else list(obj)
        shape: tuple[int, int] | None = None
        for a in keys:
            _, v = _lookup(obj, a, op)
            arr = as_numpy(v)
            if arr.ndim == 0:
                raise ValueError(f"{op}: draws of {a!r} must be [chains, draws, ...], got a scalar")
            if arr.ndim == 1:
                arr = arr[None]
            if shape is None:
                shape = (arr.shape[0], arr.shape[1])
            elif arr.shape[:2] != shape:
                raise ValueError(
                    f"{op}: draws of {a!r} have [chains, draws] = {list(arr.shape[:2])}, "
                    f"others {list(shape)}"
                )
            arrays[address_label(a)] = arr
            names[address_label(a)] = a
    else:
        raise TypeError(
            f"{op}: cannot read chains from {type(obj).__name__}; pass a chain result "
            "(genmlx.infer.chain) or a dict {address: [chains, draws, ...] array}"
        )
    if not arrays:
        raise ValueError(f"{op}: no addresses to read")
    if next(iter(arrays.values())).shape[1] < 1:
        raise ValueError(f"{op}: the chains hold no draws")
    return Chains(arrays, names, acc)


def expand_chains(
    chains: Chains, op: str, max_variables: int = MAX_VARIABLES
) -> list[tuple[str, np.ndarray]]:
    """Scalar ``(label, [C, D] float64)`` variables, vector choices split by component."""
    out: list[tuple[str, np.ndarray]] = []
    for label, arr in chains.arrays.items():
        event = arr.shape[2:]
        flat = arr.reshape(arr.shape[0], arr.shape[1], -1).astype(np.float64)
        for j, idx in enumerate(np.ndindex(*event)):
            name = label if not event else f"{label}[{','.join(map(str, idx))}]"
            out.append((name, flat[:, :, j]))
    if len(out) > max_variables:
        raise ValueError(
            f"{op}: {len(out)} scalar variables exceed {max_variables}; pass addresses=[...]"
        )
    return out
