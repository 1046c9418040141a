"""Constraining bijections for ADVI, chosen from each latent choice's support.

Each continuous latent choice ``x`` is written ``x = T(z)`` with ``z`` unconstrained:
the identity on the real line, ``low + exp(z)`` / ``high - exp(z)`` on half-lines and a
scaled sigmoid on ``(low, high)``. A choice's support comes from a table by
distribution name (:data:`genmlx.infer.advi.SUPPORTS`, evaluated at the parameters of
one execution) or from a per-address override. Values are handled as flat
``[..., size]`` slices of the unconstrained vector (:class:`Block`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import mlx.core as mx

from genmlx.core.address import Path, format_address
from genmlx.core.choicemap import as_array
from genmlx.infer._vi_sites import Site

__all__ = [
    "Block",
    "bounds_from_spec",
    "constrain",
    "discrete_message",
    "flat_bound",
    "override",
    "site_bounds",
    "unconstrain",
]


class Block(NamedTuple):
    """One latent choice's slice of the flat unconstrained vector."""

    path: Path
    shape: tuple[int, ...]
    start: int
    size: int
    low: mx.array | None  # flat [size] bounds, None for an open end
    high: mx.array | None


def bounds_from_spec(spec: Any, where: str) -> tuple[Any, Any]:
    """``(low, high)`` (``None`` for an open end) from a support name or pair."""
    if isinstance(spec, str):
        named = {
            "real": (None, None),
            "positive": (0.0, None),
            "unit": (0.0, 1.0),
            "unit_interval": (0.0, 1.0),
            "circle": (-math.pi, math.pi),
        }
        if spec not in named:
            raise ValueError(
                f"advi: unknown support {spec!r} for {where}; use 'real', 'positive', "
                "'unit_interval' or a (low, high) pair (None or ±inf for an open end)"
            )
        return named[spec]
    if isinstance(spec, tuple) and len(spec) == 2:
        low, high = spec
        if isinstance(low, (int, float)) and low == -math.inf:
            low = None
        if isinstance(high, (int, float)) and high == math.inf:
            high = None
        return low, high
    raise TypeError(
        f"advi: the support for {where} must be a name ('real', 'positive', "
        f"'unit_interval') or a (low, high) pair, got {spec!r}"
    )


def override(path: Path, overrides: Mapping[Path, Any]) -> Any:
    """The support given for ``path`` or for the nearest address above it (or None)."""
    for i in range(len(path), 0, -1):
        if path[:i] in overrides:
            return overrides[path[:i]]
    return None


def site_bounds(
    site: Site, overrides: Mapping[Path, Any], table: Mapping[str, Any]
) -> tuple[Any, Any]:
    """The support ``(low, high)`` of a latent choice: its override, else ``table`` (a
    map from distribution names to supports, as :data:`genmlx.infer.advi.SUPPORTS`).

    Raises:
        TypeError: the choice is discrete.
        ValueError: its support is unknown.
    """
    where = f"the latent choice at {format_address(site.path)}"
    dist = site.dist
    discrete = dist is not None and dist.is_discrete
    if discrete or not mx.issubdtype(site.value.dtype, mx.floating):
        raise TypeError(discrete_message(site))
    spec = override(site.path, overrides)
    if spec is not None:
        return bounds_from_spec(spec, where)
    if dist is None:
        raise ValueError(
            f"advi: {where} is made inside a generative function whose body advi cannot "
            "inspect (a combinator or custom generative function), so its support is "
            f"unknown; pass supports={{{site.path!r}: 'real' | 'positive' | (low, high)}}"
        )
    spec = table.get(dist.name)
    if spec is None:
        raise ValueError(
            f"advi: {where} comes from {dist.name!r}, whose support advi does not know; "
            f"pass supports={{{site.path!r}: 'real' | 'positive' | (low, high)}} "
            "(a simplex or matrix support has no ADVI transform here: use black_box_vi "
            "with a guide written for it)"
        )
    if callable(spec):
        return tuple(spec(*site.params))  # type: ignore[misc, return-value]
    return bounds_from_spec(spec, where)


def discrete_message(site: Site) -> str:
    """The error for a discrete latent choice, pointing to the methods that handle it."""
    name = site.dist.name if site.dist is not None else f"dtype {site.value.dtype}"
    return (
        f"advi: the latent choice at {format_address(site.path)} is discrete ({name}); ADVI "
        "fits a Gaussian to continuous choices only. Observe or marginalise it, or fit a "
        "guide with a discrete choice using black_box_vi(..., estimator='reinforce') / "
        "black_box_vimco (score-function gradients) or ADEV (genmlx.infer.adev)"
    )


def flat_bound(bound: Any, shape: tuple[int, ...]) -> mx.array | None:
    """A bound broadcast to the choice's shape and flattened (``None`` stays ``None``)."""
    if bound is None:
        return None
    b = as_array(bound).astype(mx.float32)
    return mx.broadcast_to(b, shape).reshape(-1)


def constrain(b: Block, y: mx.array) -> tuple[mx.array, mx.array]:
    """``x = T(y)`` for ``y`` of shape ``[..., size]``; returns ``x`` (``[..., *shape]``)
    and ``log|det dT/dy|`` (``[...]``)."""
    if b.low is None and b.high is None:
        x, ladj = y, mx.zeros(y.shape[:-1])
    elif b.high is None:
        assert b.low is not None
        x, ladj = b.low + mx.exp(y), mx.sum(y, axis=-1)
    elif b.low is None:
        x, ladj = b.high - mx.exp(y), mx.sum(y, axis=-1)
    else:
        eps = 1.1920929e-07  # float32 machine epsilon: keep x strictly inside the interval
        s = mx.clip(mx.sigmoid(y), eps, 1.0 - eps)
        width = b.high - b.low
        x = b.low + width * s
        ladj = mx.sum(mx.log(width) - mx.logaddexp(0.0, -y) - mx.logaddexp(0.0, y), axis=-1)
    return x.reshape(*y.shape[:-1], *b.shape), ladj


def unconstrain(b: Block, x: mx.array) -> mx.array:
    """``T⁻¹(x)`` for ``x`` of shape ``[..., *shape]``; returns ``[..., size]``."""
    lead = x.shape[: x.ndim - len(b.shape)]
    x = x.astype(mx.float32).reshape(*lead, b.size)
    if b.low is None and b.high is None:
        return x
    if b.high is None:
        assert b.low is not None
        return mx.log(x - b.low)
    if b.low is None:
        return mx.log(b.high - x)
    u = (x - b.low) / (b.high - b.low)
    return mx.log(u) - mx.log1p(-u)
