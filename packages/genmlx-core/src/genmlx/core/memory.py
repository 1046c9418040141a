"""Memory estimates for batched operations, checked before anything is computed.

MLX computes lazily: a batched operation first *builds* its result (shapes only), and
memory is allocated when the result is evaluated. When an allocation fails, MLX on the
CPU does not raise — the process dies. So ``vsimulate``/``vgenerate`` (and the inference
built on them) compare the size of the result they are about to compute with the memory
the process may still use, and raise :class:`MemoryError` saying how much ``n``
particles need and how to chunk the work instead.

The estimate is the size of the result's distinct arrays times
:data:`EVALUATION_FACTOR` (evaluating a model holds intermediate arrays of about the
result's size: means, log densities). The memory the process may still use is the
smallest of: the address-space limit (``ulimit -v``) minus what the process has mapped,
the memory the operating system reports available, and MLX's memory limit minus what
MLX holds. ``config.memory_checks(False)`` (or ``GENMLX_CHECK_MEMORY=0``) turns the
check off.

Example:
    >>> import mlx.core as mx
    >>> from genmlx.core.memory import result_bytes
    >>> result_bytes({"x": mx.zeros((1000,)), "y": mx.zeros((10, 10), dtype=mx.int8)})
    4100
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core import runtime
from genmlx.core.config import memory_checks_enabled
from genmlx.core.tree import flatten

__all__ = [
    "EVALUATION_FACTOR",
    "available_bytes",
    "check_batch_memory",
    "format_bytes",
    "result_bytes",
]

EVALUATION_FACTOR = 3
"""Peak memory of evaluating a batched result, as a multiple of the result's size."""


def result_bytes(tree: Any) -> int:
    """Bytes of the distinct MLX arrays in ``tree`` (traces, choice maps, results)."""
    leaves, _ = flatten(tree)
    seen: set[int] = set()
    total = 0
    for x in leaves:
        if id(x) not in seen:
            seen.add(id(x))
            total += x.nbytes
    return total


def _mapped_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _os_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def available_bytes() -> tuple[int | None, str]:
    """The memory this process may still allocate, and what limits it.

    Returns:
        ``(bytes, reason)``; ``bytes`` is None when nothing could be determined.
    """
    options: list[tuple[int, str]] = []
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _mapped_bytes() or 0
        options.append(
            (max(soft - used, 0), f"the address-space limit (ulimit -v) of {format_bytes(soft)}")
        )
    avail = _os_available()
    if avail is not None:
        options.append((avail, "the memory the operating system reports available"))
    try:
        limit = int(mx.get_memory_limit())
        if limit > 0:
            options.append((max(limit - int(mx.get_active_memory()), 0), "MLX's memory limit"))
    except (AttributeError, RuntimeError):
        pass
    if not options:
        return None, "unknown"
    return min(options)


def format_bytes(n: float) -> str:
    """``1.5 GB`` style."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _measured_bytes_per_particle(rerun: Callable[[int], Any], n0: int) -> float | None:
    """Peak MLX memory per particle: the growth of the peak from ``n0`` to ``2 n0``
    particles (after a warm-up run, so one-time allocations do not count)."""
    from genmlx.core.tree import evaluate

    peaks = []
    try:
        for m in (n0, n0, 2 * n0):
            mx.synchronize()
            base = mx.get_active_memory()
            mx.reset_peak_memory()
            evaluate(rerun(m))
            peaks.append(mx.get_peak_memory() - base)
    except Exception:
        return None
    grow = (peaks[2] - peaks[1]) / n0
    return grow if grow > 0 else None


def check_batch_memory(
    op: str, what: str, n: int, result: Any, rerun: Callable[[int], Any] | None = None
) -> None:
    """Raise :class:`MemoryError` when evaluating ``result`` (``n`` particles) cannot fit.

    When the result is small next to the memory available, nothing else happens. In
    between (the result fits, but evaluation with :data:`EVALUATION_FACTOR` times its
    size might not), ``rerun(m)`` — the same operation for ``m`` particles — is run for
    two small ``m`` and the peak memory per particle measured, unless this runs under
    a transformation (then the factor decides).

    Args:
        op: the operation (``"vsimulate"``, ...).
        what: the generative function's printable name.
        n: the number of particles.
        result: the lazily built result (nothing is evaluated here).
        rerun: the operation for another number of particles (optional).
    """
    if not memory_checks_enabled():
        return
    size = result_bytes(result)
    if EVALUATION_FACTOR * size < _SMALL:
        return  # no process that runs MLX at all is that short of memory
    avail, reason = available_bytes()
    if avail is None or EVALUATION_FACTOR * size <= avail * _COMFORT:
        return
    per_result = size / max(n, 1)
    need = float(EVALUATION_FACTOR * size)
    measured = False
    probe = min(max(n // 100, _PROBE), 8 * _PROBE)
    if size <= avail and rerun is not None and n >= 8 * probe and not runtime.in_transform():
        per = _measured_bytes_per_particle(rerun, probe)
        if per is not None:
            need, measured = per * n, True
            avail, reason = available_bytes()
            if avail is None or need <= avail * _HEADROOM:
                return
    elif size <= avail * _HEADROOM and EVALUATION_FACTOR * size <= avail * _HEADROOM:
        return
    assert avail is not None
    per_need = need / max(n, 1)
    fits = int(avail * _HEADROOM / per_need) if per_need > 0 else n
    how = "measured on a small batch" if measured else f"about {EVALUATION_FACTOR}x the result"
    raise MemoryError(
        f"{op} on {what} with {n} particles: the result holds {format_bytes(size)} "
        f"({format_bytes(per_result)} per particle) and computing it needs about "
        f"{format_bytes(need)} ({how}), but this process can use about "
        f"{format_bytes(avail)} ({reason}). Use at most about {max(fits, 0)} particles at "
        "a time: run the work in chunks (importance_sampling(..., chunk_size=k) does this "
        "for you), or, if the estimate is wrong for your model, turn the check off with "
        "genmlx.core.config.memory_checks(False)."
    )


_SMALL = 256 * 2**20
"""Results needing less than this are not checked (asking the OS costs a system call)."""

_PROBE = 1024
"""Particles of the smaller calibration run (at least; about 1% of ``n``, at most 8x)."""

_COMFORT = 0.25
"""Below this fraction of the available memory no measurement is needed."""

_HEADROOM = 0.8
"""The fraction of the available memory a batched operation may plan to use."""
