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
from genmlx.dists import normal

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


@gen
def polyreg_data_first(xs: mx.array) -> Any:
    """The same model with data-first products (see "MLX vmap operand order")."""
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(xs * b + xs**2 * c + a, NOISE) @ "ys"
    return a


OBS = choicemap({"ys": YS})


def genmlx_is(key: mx.array, n: int) -> mx.array:
    _, w = polyreg.vgenerate((XS,), OBS, n, key=key)
    return mx.logsumexp(w) - math.log(n)


def genmlx_is_data_first(key: mx.array, n: int) -> mx.array:
    _, w = polyreg_data_first.vgenerate((XS,), OBS, n, key=key)
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
    variants = {
        "eager": (handwritten_is, genmlx_is, genmlx_is_data_first),
        "compiled": (
            mx.compile(handwritten_is),
            compile(genmlx_is),
            compile(genmlx_is_data_first),
        ),
    }
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"n": n}
        for mode, (h, g, gd) in variants.items():
            # interleave the sides so machine noise hits them alike
            th = tg = tgd = math.inf
            for _ in range(2):
                th = min(th, _time(h, n, reps))
                tg = min(tg, _time(g, n, reps))
                tgd = min(tgd, _time(gd, n, reps))
            row[mode] = {
                "handwritten_ms": th * 1e3,
                "genmlx_ms": tg * 1e3,
                "ratio": tg / th,
                "genmlx_data_first_ms": tgd * 1e3,
                "ratio_data_first": tgd / th,
            }
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
        "| N | mode | hand-written (ms) | genmlx (ms) | ratio | genmlx, data-first model (ms) "
        "| ratio |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        for mode in ("eager", "compiled"):
            m = r[mode]
            if "ratio_data_first" not in m:  # results saved before the data-first column
                m = {**m, "genmlx_data_first_ms": float("nan"), "ratio_data_first": float("nan")}
            lines.append(
                f"| {r['n']:.0e} | {mode} | {m['handwritten_ms']:.2f} | {m['genmlx_ms']:.2f} | "
                f"**{m['ratio']:.2f}** | {m['genmlx_data_first_ms']:.2f} | "
                f"**{m['ratio_data_first']:.2f}** |"
            )
    return "\n".join(lines)
