"""The gamma family away from the parameters of ``dists_sampling``: non-integer and
small shapes (``dists_sampling`` uses gamma(2.5), beta(2, 3), Dirichlet(1, 2, 3), where
whole-number shapes <= 4 take GenMLX's sum-of-exponentials path).

One call draws N = 1e6 events with scalar (Dirichlet: vector) parameters, evaluated with
``mx.eval``; NumPy's ``Generator`` draws the same distribution; best of 7 calls each,
interleaved in this process; ratio = NumPy time / GenMLX time (above 1: GenMLX faster).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

import genmlx.dists as gd

N = 1_000_000


def _best(f: Callable[[], Any], reps: int) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def _cases(n: int) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    rng = np.random.default_rng(0)
    k = mx.random.key(1)
    alpha3 = mx.array([1.5, 2.5, 3.5])
    return [
        (
            "gamma(2.5)",
            lambda: mx.eval(gd.gamma.sample(k, 2.5, 1.0, shape=(n,))),
            lambda: rng.gamma(2.5, 1.0, n),
        ),
        (
            "gamma(0.7)",
            lambda: mx.eval(gd.gamma.sample(k, 0.7, 1.0, shape=(n,))),
            lambda: rng.gamma(0.7, 1.0, n),
        ),
        (
            "gamma(2.5), array shape",
            lambda: mx.eval(gd.gamma.sample(k, mx.array(2.5), 1.0, shape=(n,))),
            lambda: rng.gamma(2.5, 1.0, n),
        ),
        (
            "beta(2.5, 3.5)",
            lambda: mx.eval(gd.beta.sample(k, 2.5, 3.5, shape=(n,))),
            lambda: rng.beta(2.5, 3.5, n),
        ),
        (
            "beta(0.5, 0.5)",
            lambda: mx.eval(gd.beta.sample(k, 0.5, 0.5, shape=(n,))),
            lambda: rng.beta(0.5, 0.5, n),
        ),
        (
            "dirichlet(1.5, 2.5, 3.5)",
            lambda: mx.eval(gd.dirichlet.sample(k, alpha3, shape=(n,))),
            lambda: rng.dirichlet([1.5, 2.5, 3.5], n),
        ),
        (
            "student_t(3)",
            lambda: mx.eval(gd.student_t.sample(k, 3.0, 0.0, 1.0, shape=(n,))),
            lambda: rng.standard_t(3.0, n),
        ),
    ]


def run(quick: bool = False) -> dict[str, Any]:
    n = 100_000 if quick else N
    rows = []
    for name, g, ref in _cases(n):
        a, b = _best(g, 7), _best(ref, 7)
        rows.append(
            {"name": name, "n": n, "genmlx_per_s": n / a, "numpy_per_s": n / b, "ratio": b / a}
        )
    return {
        "name": "dists_shapes",
        "device": str(mx.default_device()),
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "rows": rows,
    }


def table(res: dict[str, Any]) -> str:
    lines = [
        f"N = {res['rows'][0]['n']:.0e} events per call, best of 7; "
        "ratio = NumPy time / GenMLX time.",
        "",
        "| distribution | genmlx (M/s) | NumPy (M/s) | genmlx / NumPy |",
        "|---|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| `{r['name']}` | {r['genmlx_per_s'] / 1e6:.1f} | {r['numpy_per_s'] / 1e6:.1f} "
            f"| {r['ratio']:.2f} |"
        )
    return "\n".join(lines)
