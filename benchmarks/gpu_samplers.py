"""Sampler throughput, side by side: ``genmlx.dists`` vs ``jax.random`` (the ``samplers``
section of ``gpu_suite``; runs on a CPU too).

For each distribution, one call draws ``N`` samples with scalar parameters (a
3-vector for Dirichlet and categorical: one sample is one event), as in
``dists_sampling``: ``d.sample(key, *params, shape=(N,))``

* **GenMLX eager** — called as ``dists_sampling`` calls it (rejection samplers stop
  when every element has been accepted: a host check between rounds);
* **GenMLX compiled** — the same call under ``mx.compile`` (one program per ``N``;
  rejection samplers run their fixed number of traceable rounds);
* **JAX** — the matching ``jax.random`` sampler under ``jax.jit``.

Each timing is the best of ``reps`` calls with fresh keys after a first call (compile
included, reported as ``first_s``); samples/s = ``N`` / time. The ratio is JAX's time
over GenMLX's best (above 1: GenMLX is faster). The sample means of one draw of each
side are reported beside the exact mean (a check that both sides draw the same
distribution).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

import genmlx.dists as gd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cells import guard

P3 = [0.2, 0.3, 0.5]
ALPHA3 = [1.0, 2.0, 3.0]

# name -> (genmlx parameters, jax sampler (jax, key, n) -> samples, exact mean)
CASES: dict[str, tuple[tuple[Any, ...], Callable[[Any, Any, int], Any], float]] = {
    "normal": ((0.5, 2.0), lambda jax, k, n: 0.5 + 2.0 * jax.random.normal(k, (n,)), 0.5),
    "uniform": (
        (-1.0, 3.0),
        lambda jax, k, n: jax.random.uniform(k, (n,), minval=-1.0, maxval=3.0),
        1.0,
    ),
    "exponential": ((2.0,), lambda jax, k, n: jax.random.exponential(k, (n,)) / 2.0, 0.5),
    "gamma": ((2.5, 1.5), lambda jax, k, n: jax.random.gamma(k, 2.5, (n,)) / 1.5, 2.5 / 1.5),
    "beta": ((2.0, 3.0), lambda jax, k, n: jax.random.beta(k, 2.0, 3.0, (n,)), 0.4),
    "poisson": ((3.0,), lambda jax, k, n: jax.random.poisson(k, 3.0, (n,)), 3.0),
    "binomial": ((10, 0.3), lambda jax, k, n: jax.random.binomial(k, 10.0, 0.3, (n,)), 3.0),
    "student_t": ((4.0, 0.0, 1.0), lambda jax, k, n: jax.random.t(k, 4.0, (n,)), 0.0),
    "dirichlet": (
        (mx.array(ALPHA3),),
        lambda jax, k, n: jax.random.dirichlet(k, jax.numpy.asarray(ALPHA3), (n,))[:, 2],
        0.5,  # the mean of the last coordinate
    ),
    "categorical": (
        (mx.array(P3),),
        lambda jax, k, n: jax.random.categorical(
            k, jax.numpy.log(jax.numpy.asarray(P3)), shape=(n,)
        ),
        1.3,
    ),
}


def _best(fn: Callable[[int], Any], block: Callable[[Any], None], reps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    block(fn(10_000))
    first = time.perf_counter() - t0
    best = math.inf
    for i in range(reps):
        t0 = time.perf_counter()
        block(fn(i))
        best = min(best, time.perf_counter() - t0)
    return first, best


def _mean_mlx(name: str, x: mx.array) -> float:
    x = x[:, 2] if name == "dirichlet" else x
    return float(mx.mean(x.astype(mx.float32)).item())


def _genmlx(name: str, n: int, reps: int, compiled: bool) -> dict[str, Any]:
    d = getattr(gd, name)
    params = CASES[name][0]

    def draw(key: mx.array) -> mx.array:
        return d.sample(key, *params, shape=(n,))

    f = mx.compile(draw) if compiled else draw
    first, best = _best(lambda i: f(mx.random.key(i)), mx.eval, reps)
    return {
        "first_s": first,
        "s": best,
        "per_s": n / best,
        "mean": _mean_mlx(name, f(mx.random.key(7))),
    }


def _jax(name: str, n: int, reps: int) -> dict[str, Any] | None:
    try:
        import jax
    except ImportError:
        return None
    sampler = CASES[name][1]
    f = jax.jit(lambda k: sampler(jax, k, n))
    first, best = _best(lambda i: f(jax.random.PRNGKey(i)), jax.block_until_ready, reps)
    mean = float(np.asarray(f(jax.random.PRNGKey(7)), dtype=np.float64).mean())
    return {"first_s": first, "s": best, "per_s": n / best, "mean": mean}


def run(
    sizes: list[int],
    reps: int = 5,
    names: list[str] | None = None,
    budget_s: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The table's rows. Cells not started within ``budget_s`` seconds are listed under
    ``skipped``; ``progress`` gets the partial result after every row (to save it)."""
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    res: dict[str, Any] = {"reps": reps, "rows": rows, "skipped": []}
    for n in sizes:
        for name in names or list(CASES):
            if budget_s is not None and time.perf_counter() - t_start > budget_s:
                res["skipped"].append(f"{name} N={n}")
                continue
            row: dict[str, Any] = {"name": name, "n": n, "exact_mean": CASES[name][2]}
            row["genmlx_eager"] = guard(_genmlx, name, n, reps, False)
            row["genmlx_compiled"] = guard(_genmlx, name, n, reps, True)
            row["jax"] = guard(_jax, name, n, reps)
            gm = [row[k]["s"] for k in ("genmlx_eager", "genmlx_compiled") if "s" in row[k]]
            if gm and isinstance(row["jax"], dict) and "s" in row["jax"]:
                row["ratio"] = row["jax"]["s"] / min(gm)
            print(
                "samplers",
                name,
                n,
                {
                    k: (f"{v['per_s'] / 1e6:.4g} M/s", round(v["mean"], 3))
                    if isinstance(v, dict) and "per_s" in v
                    else v
                    for k, v in row.items()
                    if k.startswith(("genmlx", "jax"))
                },
                "ratio",
                round(row.get("ratio", math.nan), 3),
                flush=True,
            )
            rows.append(row)
            if progress is not None:
                progress(res)
    return res


def table(res: dict[str, Any]) -> str:
    def rate(v: Any) -> str:
        if isinstance(v, dict) and "per_s" in v:
            return f"{v['per_s'] / 1e6:,.4g}"
        return "error (JSON)" if isinstance(v, dict) and "error" in v else "—"

    def mean(v: Any) -> str:
        return f"{v['mean']:.3f}" if isinstance(v, dict) and "mean" in v else "—"

    lines = [
        f"Samples per call N, scalar parameters (Dirichlet and categorical: K = 3), best of "
        f"{res['reps']} calls, compile excluded; M samples/s. **GenMLX / JAX** = JAX time / "
        "GenMLX's better time (above 1: GenMLX is faster). Means: one draw of each side "
        "(GenMLX compiled, JAX) against the exact mean (Dirichlet: last coordinate).",
        "",
        "| distribution | N | GenMLX eager | GenMLX compiled | JAX (jit) | **GenMLX / JAX** "
        "| mean GenMLX / JAX / exact |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        ratio = f"**{r['ratio']:.2f}**" if "ratio" in r else "—"
        lines.append(
            f"| `{r['name']}` | {r['n']:.0e} | {rate(r['genmlx_eager'])} "
            f"| {rate(r['genmlx_compiled'])} | {rate(r['jax'])} | {ratio} "
            f"| {mean(r['genmlx_compiled'])} / {mean(r['jax'])} / {r['exact_mean']:.3f} |"
        )
    if res.get("skipped"):
        lines += ["", "Not run (section time budget spent): " + ", ".join(res["skipped"]) + "."]
    return "\n".join(lines)
