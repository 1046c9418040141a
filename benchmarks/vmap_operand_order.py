"""Diagnostic: MLX's ``vmap`` of a batched scalar times an unbatched vector.

GenMLX batches by ``mx.vmap``. For a binary op whose FIRST operand is batched with a
lower per-example rank than the second (``a * xs`` with a per-particle scalar ``a``),
MLX's vmap rule puts the batch axis last (``[50, N]`` layout, moved to the front only at
the end); with the operands swapped (``xs * a``) it stays first. This measures
``sum(a * xs)`` vs ``sum(xs * a)`` over N particles, eager and under ``mx.compile``,
against the hand-written ``sum(a[:, None] * xs, axis=1)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

XS = mx.linspace(0.0, 1.0, 50)


def scalar_first(key: mx.array, n: int) -> mx.array:
    a = mx.random.normal((n,), key=key)
    return mx.vmap(lambda a: mx.sum(a * XS))(a)


def vector_first(key: mx.array, n: int) -> mx.array:
    a = mx.random.normal((n,), key=key)
    return mx.vmap(lambda a: mx.sum(XS * a))(a)


def handwritten(key: mx.array, n: int) -> mx.array:
    a = mx.random.normal((n,), key=key)
    return mx.sum(a[:, None] * XS, axis=1)


def _time(fn: Callable[[mx.array, int], mx.array], n: int, reps: int) -> float:
    mx.eval(fn(mx.random.key(99), n))
    best = math.inf
    for r in range(reps):
        t0 = time.perf_counter()
        mx.eval(fn(mx.random.key(r), n))
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or ([100_000] if quick else [1_000_000])
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"n": n}
        for name, fn in (
            ("vmap a*xs", scalar_first),
            ("vmap xs*a", vector_first),
            ("hand-written", handwritten),
        ):
            row[name] = {
                "eager_ms": _time(fn, n, 5) * 1e3,
                "compiled_ms": _time(mx.compile(fn), n, 5) * 1e3,
            }
        rows.append(row)
    return {"name": "vmap_operand_order", "device": str(mx.default_device()), "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = ["| N | variant | eager (ms) | compiled (ms) |", "|---:|---|---:|---:|"]
    for r in result["rows"]:
        for k, v in r.items():
            if k != "n":
                e, c = v["eager_ms"], v["compiled_ms"]
                lines.append(f"| {r['n']:.0e} | {k} | {e:.2f} | {c:.2f} |")
    return "\n".join(lines)
