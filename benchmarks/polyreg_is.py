"""Importance sampling on polynomial regression: genmlx ``vgenerate`` vs hand-written MLX.

Model (Issue 2's benchmark): a, b, c ~ N(0, 1); y_i ~ N(a + b·x_i + c·x_i², 0.05) for 50
points x = linspace(0, 1, 50), data from coefficients [0.5, −1.25, 2.0]. Each run
draws N particles from the prior and returns the log marginal likelihood estimate
``logsumexp(w) − log N``. Both sides run in this process, interleaved, on the same
device; we report the minimum over repetitions and the ratio genmlx / hand-written.

Two modes:

* ``eager`` — genmlx's interpreted ``vgenerate`` vs the hand-written graph, uncompiled;
* ``compiled`` — ``genmlx.core.compile`` of the same call vs ``mx.compile`` of the
  hand-written function.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core import choicemap, compile, gen
from genmlx.core.testing.models import normal

NOISE = 0.05
XS = mx.linspace(0.0, 1.0, 50)
COEFS = (0.5, -1.25, 2.0)
YS = (
    COEFS[0]
    + COEFS[1] * XS
    + COEFS[2] * XS**2
    + NOISE * mx.random.normal((50,), key=mx.random.key(42))
)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@gen
def polyreg(xs: mx.array) -> Any:
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, NOISE) @ "ys"
    return a


OBS = choicemap({"ys": YS})


def genmlx_is(key: mx.array, n: int) -> mx.array:
    _, w = polyreg.vgenerate((XS,), OBS, n, key=key)
    return mx.logsumexp(w) - math.log(n)


def handwritten_is(key: mx.array, n: int) -> mx.array:
    abc = mx.random.normal((3, n), key=key)
    mean = abc[0][:, None] + abc[1][:, None] * XS + abc[2][:, None] * XS**2
    z = (YS - mean) / NOISE
    ll = mx.sum(-0.5 * z * z - math.log(NOISE) - _HALF_LOG_2PI, axis=1)
    return mx.logsumexp(ll) - math.log(n)


def _time(fn: Callable[[mx.array, int], mx.array], n: int, reps: int) -> float:
    mx.eval(fn(mx.random.key(10_000), n))  # warm up (and compile)
    best = math.inf
    for r in range(reps):
        key = mx.random.key(r)
        t0 = time.perf_counter()
        mx.eval(fn(key, n))
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    if sizes is None:
        sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    reps = 3 if quick else 7
    genmlx_c = compile(genmlx_is)
    hand_c = mx.compile(handwritten_is)
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"n": n}
        for mode, g, h in (
            ("eager", genmlx_is, handwritten_is),
            ("compiled", genmlx_c, hand_c),
        ):
            # interleave the two sides so machine noise hits both alike
            tg = th = math.inf
            for _ in range(2):
                tg = min(tg, _time(g, n, reps))
                th = min(th, _time(h, n, reps))
            row[mode] = {"genmlx_ms": tg * 1e3, "handwritten_ms": th * 1e3, "ratio": tg / th}
        rows.append(row)
    # the two estimators agree (same model, different random streams): a sanity check
    est_g = float(genmlx_is(mx.random.key(0), 100_000).item())
    est_h = float(handwritten_is(mx.random.key(0), 100_000).item())
    return {
        "name": "polyreg_is",
        "description": "importance sampling by vgenerate, polynomial regression, 50 points",
        "device": str(mx.default_device()),
        "rows": rows,
        "log_ml_estimates_n1e5": {"genmlx": est_g, "handwritten": est_h},
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| N | genmlx eager (ms) | hand-written eager (ms) | ratio | genmlx compiled (ms) "
        "| hand-written compiled (ms) | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        e, c = r["eager"], r["compiled"]
        lines.append(
            f"| {r['n']:.0e} | {e['genmlx_ms']:.2f} | {e['handwritten_ms']:.2f} | "
            f"{e['ratio']:.2f} | {c['genmlx_ms']:.2f} | {c['handwritten_ms']:.2f} | "
            f"{c['ratio']:.2f} |"
        )
    return "\n".join(lines)
