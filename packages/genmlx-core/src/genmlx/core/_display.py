"""Readable renderings of values, choice maps and traces (their ``repr``).

A single value prints as a number (6 significant digits) or, when small, a list of
numbers; a larger array as its dtype and shape with its first values. A batched leaf
(one value per particle) prints compactly: dtype, shape and, for one number per
particle, its mean and standard deviation over the particles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import mlx.core as mx

from genmlx.core.address import Path, format_address

__all__ = ["MAX_LINES", "format_value", "leaf_lines", "short_dtype"]

#: Addresses listed before "... and N more".
MAX_LINES = 20
_SMALL = 6  # arrays with at most this many elements print in full


def short_dtype(a: mx.array) -> str:
    """``float32`` for ``mlx.core.float32``."""
    return str(a.dtype).rsplit(".", 1)[-1]


def _num(x: Any, digits: int = 6) -> str:
    if isinstance(x, bool):
        return repr(x)
    if isinstance(x, int):
        return repr(x)
    return repr(float(f"{float(x):.{digits}g}"))


def _nested(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(_nested(y) for y in x) + "]"
    return _num(x)


def format_value(v: Any, batch_ndim: int = 0) -> str:
    """One leaf: a number, a small list, or ``dtype[shape]`` with a preview/summary.

    ``batch_ndim`` leading axes are particles: such a leaf prints as ``dtype[shape]``
    with the particles' mean and standard deviation when each particle holds one number.

    Example:
        >>> import mlx.core as mx
        >>> format_value(mx.array(0.123456789)), format_value(mx.array([1, 2]))
        ('0.123457', '[1, 2]')
        >>> format_value(mx.arange(10.0))
        'float32[10] [0.0, 1.0, 2.0, ..., 9.0]'
    """
    if not isinstance(v, mx.array):
        try:
            v = mx.array(v)
        except (TypeError, ValueError):
            return repr(v)
    head = f"{short_dtype(v)}[{', '.join(map(str, v.shape))}]"
    try:
        if batch_ndim and v.ndim > batch_ndim:
            return head  # one event per particle: the shape says enough
        if batch_ndim:
            if v.dtype == mx.bool_:
                return f"{head} {100 * float(mx.mean(v.astype(mx.float32))):.3g}% true"
            f = v.astype(mx.float32)
            return f"{head} mean {_num(mx.mean(f).item(), 4)}, sd {_num(mx.std(f).item(), 4)}"
        if v.ndim == 0:
            return _num(v.item())
        if v.size <= _SMALL:
            return _nested(v.tolist())
        flat = v.reshape(-1)
        first = ", ".join(_num(x) for x in flat[:3].tolist())
        return f"{head} [{first}, ..., {_num(flat[-1].item())}]"
    except (RuntimeError, ValueError):  # a tracer inside a transformation: no values
        return head


def leaf_lines(
    leaves: Iterable[tuple[Path, Any]], batch_ndim: int, indent: str = "  "
) -> list[str]:
    """``address: value`` lines, at most :data:`MAX_LINES`, then ``... and N more``."""
    lines: list[str] = []
    n = 0
    for path, v in leaves:
        n += 1
        if len(lines) < MAX_LINES:
            lines.append(f"{indent}{format_address(path)}: {format_value(v, batch_ndim)}")
    if n > MAX_LINES:
        lines.append(f"{indent}... and {n - MAX_LINES} more")
    return lines
