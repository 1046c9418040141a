"""Gibbs sampling of a discrete choice by enumerating its support.

The kernel takes a single or batched trace; a batched trace runs all chains at once (no
Python loop over chains), and the kernel reads no array values in Python, so a chain of
K steps can be wrapped in :func:`genmlx.core.compile`.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core import gen, choicemap
    >>> from genmlx.dists import bernoulli, normal
    >>> from genmlx.infer.gibbs_enumeration import gibbs
    >>> @gen
    ... def model():
    ...     z = bernoulli(0.3) @ "z"
    ...     normal(mx.where(z, 2.0, -1.0), 1.0) @ "x"
    >>> tr, _ = model.vgenerate((), choicemap({"x": 0.5}), 10, key=mx.random.key(0))
    >>> tr2, info = gibbs(tr, "z", key=mx.random.key(1))
    >>> tr2["z"].shape
    (10,)
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from genmlx.core import interpreter as H
from genmlx.core import runtime
from genmlx.core.address import Address, Path, format_address, to_path
from genmlx.core.choicemap import ChoiceMap, as_array
from genmlx.core.distribution import Distribution
from genmlx.core.dsl import DynamicGenerativeFunction
from genmlx.core.gfi import GenerativeFunction
from genmlx.core.random import Key
from genmlx.core.trace import Trace
from genmlx.infer import _checks as checks
from genmlx.infer._traces import where_trace
from genmlx.infer.kernel_info import GibbsInfo

__all__ = ["gibbs"]


def _constraint(addr: Address, value: mx.array, batch: tuple[int, ...]) -> ChoiceMap:
    return ChoiceMap(None, None, batch).set(addr, value).with_batch_shape(batch)


def _find_distribution(
    gf: GenerativeFunction, args: tuple[Any, ...], choices: ChoiceMap, path: Path
) -> tuple[Distribution, tuple[Any, ...]] | None:
    """The distribution and parameters of the choice at ``path`` (``None``: not found).

    Runs the ``@gen`` body with ``choices`` under an ``assess`` handler that records the
    site at (a prefix of) ``path``, then descends into a sub-call if needed.
    """
    if isinstance(gf, Distribution):
        return (gf, args) if not path else None
    if not isinstance(gf, DynamicGenerativeFunction) or not path:
        return None
    found: list[tuple[Path, GenerativeFunction, tuple[Any, ...]]] = []

    def handler(state: Any, p: Path, site_gf: GenerativeFunction, site_args: Any) -> Any:
        if not found and tuple(path[: len(p)]) == tuple(p):
            found.append((p, site_gf, site_args))
        return H.assess_site(state, p, site_gf, site_args)

    H.run_body("assess", gf.name, gf.fn, args, handler, H.AssessState(None, 0.0, choices))
    if not found:
        return None
    p, site_gf, site_args = found[0]
    sub = choices.get_submap(p)
    return _find_distribution(site_gf, site_args, sub, path[len(p) :])


def _infer_support(trace: Trace, addr: Address, value: mx.array) -> mx.array:
    """The support of the scalar choice at ``addr`` from its distribution's ``support``.

    For a batched trace the distribution's parameters are those of chain 0.
    """
    batch = tuple(trace.batch_shape)
    choices = trace.get_choices()
    if batch:
        first = ChoiceMap.empty()
        for p, v in choices.leaves():
            first = first.set_submap(p, ChoiceMap(v[0]))
        choices = first
    path = to_path(addr)
    with runtime.transforming():
        found = _find_distribution(trace.gen_fn, trace.args, choices, path)
    if found is not None and found[0].is_enumerable and value.ndim == len(batch):
        dist, params = found
        sup = dist.support(*params)
        return sup.reshape(sup.shape[0], -1)[:, 0]
    if value.dtype == mx.bool_ and value.ndim == len(batch):
        return mx.array([False, True])
    raise ValueError(
        f"gibbs: cannot enumerate the support of the choice at {format_address(addr)} "
        f"(dtype {value.dtype}, shape {tuple(value.shape)}); pass support=, the array of "
        "candidate values (shape [K] + the choice's shape)"
    )


def gibbs(
    trace: Trace, addr: Address, *, key: Key = None, support: Any = None
) -> tuple[Trace, GibbsInfo]:
    """Gibbs step by enumeration for the finite discrete choice at ``addr``.

    For each candidate value ``v`` in the support, ``update(trace, {addr: v})`` gives the
    weight ``w_v = log p(t[addr := v]) - log p(t)``; the full conditional is
    ``P(addr = v | rest) = exp(w_v) / Σ_u exp(w_u)``, from which the new value is drawn
    (per chain). Gibbs moves are always accepted.

    The candidates are ``support`` (an array of values, shape ``[K] + event``;
    candidates outside the actual support get weight ``-inf`` and are never drawn) or,
    when ``support`` is ``None``, ``dist.support(*params)`` of the distribution at
    ``addr`` (a scalar choice of an enumerable distribution), found by re-running the
    ``@gen`` body under an ``assess`` handler that records the site (descending into
    ``@gen`` sub-calls). For a batched trace the parameters of chain 0 are used, which
    is exact when the support does not depend on per-chain parameter values
    (``bernoulli``, ``categorical``, ...); otherwise pass ``support=`` covering every
    chain's support. Some distributions compute their support size from parameter
    values (``binomial``, ``uniform_discrete``), which cannot be compiled; pass
    ``support=`` to compile those. The loop over the ``K`` candidates is a Python
    loop; each iteration is one batched ``update``.

    Args:
        trace: single or batched trace.
        addr: address of a discrete choice.
        key: PRNG key.
        support: candidate values (``None``: the distribution's support).

    Returns:
        ``(new_trace, info)``: a :class:`~genmlx.infer.kernel_info.GibbsInfo` with
        ``accepted`` all ``True``.

    Example:
        >>> import mlx.core as mx
        >>> from genmlx.core import gen, choicemap
        >>> from genmlx.dists import categorical, normal
        >>> @gen
        ... def m():
        ...     k = categorical(mx.array([0.2, 0.3, 0.5])) @ "k"
        ...     normal(k.astype(mx.float32), 1.0) @ "x"
        >>> tr, _ = m.generate((), choicemap({"x": 1.0}), key=mx.random.key(0))
        >>> tr2, info = gibbs(tr, "k", key=mx.random.key(1))
        >>> bool(info.accepted)
        True
    """
    checks.trace(trace, "gibbs")
    key = checks.key(key, "gibbs")
    value = trace[addr]
    batch = tuple(trace.batch_shape)
    cands = _infer_support(trace, addr, value) if support is None else as_array(support)
    cands = cands.astype(value.dtype)
    event = tuple(value.shape[len(batch) :])
    if tuple(cands.shape[1:]) != event:
        raise ValueError(
            f"gibbs: support values have shape {tuple(cands.shape[1:])}, the choice at "
            f"{format_address(addr)} has event shape {event}"
        )
    traces, weights = [], []
    for k in range(cands.shape[0]):
        v = mx.broadcast_to(cands[k], batch + event)
        res = trace.gen_fn.update(trace, _constraint(addr, v, batch))
        traces.append(res.trace)
        weights.append(res.weight)
    logits = mx.stack(weights, axis=-1)  # batch + (K,)
    logits = mx.where(mx.isnan(logits), -mx.inf, logits)
    idx = mx.random.categorical(logits, axis=-1, key=key)
    out = traces[0]
    for k in range(1, len(traces)):
        out = where_trace(idx == k, traces[k], out)
    return out, GibbsInfo(mx.ones(batch, dtype=mx.bool_))
