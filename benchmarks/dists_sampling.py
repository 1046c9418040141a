"""Batch sampling throughput of every genmlx.dists distribution vs NumPy's ``Generator``.

For each distribution, one call ``d.sample(key, *params, shape=(N,))`` draws N samples
(N = 1e6; 1e5 with ``--quick``) with scalar parameters (vector/matrix parameters for the
multivariate ones, so one "sample" is one event), evaluated with ``mx.eval``; NumPy
draws the same distribution with ``numpy.random.default_rng`` where it has a sampler
for it. Both run in this process, interleaved; we report the minimum time over
repetitions as samples per second and the ratio genmlx / NumPy (above 1: genmlx is
faster). "—" where NumPy has no sampler for the distribution.

MLX runs its samplers as vectorised graphs (rejection samplers run later rounds only
for the elements still rejected, see ``genmlx.dists.rejection``); NumPy's are
sequential C loops. Each row starts from an empty MLX buffer cache (see ``_time_mlx``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

import genmlx.dists as gd

P3 = [0.2, 0.3, 0.5]
COV3 = [[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]]

NumpyFn = Callable[[np.random.Generator, int], Any]

# name -> (parameters for genmlx, NumPy sampler of the same distribution or None)
CASES: dict[str, tuple[tuple[Any, ...], NumpyFn | None]] = {
    "normal": ((0.5, 2.0), lambda g, n: g.normal(0.5, 2.0, n)),
    "uniform": ((-1.0, 3.0), lambda g, n: g.uniform(-1.0, 3.0, n)),
    "exponential": ((2.0,), lambda g, n: g.exponential(0.5, n)),
    "laplace": ((0.0, 1.5), lambda g, n: g.laplace(0.0, 1.5, n)),
    "cauchy": ((0.0, 1.0), lambda g, n: g.standard_cauchy(n)),
    "logistic": ((0.0, 1.0), lambda g, n: g.logistic(0.0, 1.0, n)),
    "gumbel": ((0.0, 1.0), lambda g, n: g.gumbel(0.0, 1.0, n)),
    "half_normal": ((1.5,), None),
    "half_cauchy": ((1.0,), None),
    "log_normal": ((0.0, 0.5), lambda g, n: g.lognormal(0.0, 0.5, n)),
    "weibull": ((1.5, 2.0), lambda g, n: 2.0 * g.weibull(1.5, n)),
    "pareto": ((1.0, 3.0), lambda g, n: 1.0 + g.pareto(3.0, n)),  # NumPy's is Lomax
    "truncated_normal": ((0.0, 1.0, -1.0, 2.0), None),
    "von_mises": ((0.5, 2.0), lambda g, n: g.vonmises(0.5, 2.0, n)),
    "wrapped_cauchy": ((0.5, 0.3), None),
    "gamma": ((2.5, 1.5), lambda g, n: g.gamma(2.5, 1.0 / 1.5, n)),
    "inv_gamma": ((3.0, 2.0), None),
    "chi2": ((4.0,), lambda g, n: g.chisquare(4.0, n)),
    "beta": ((2.0, 3.0), lambda g, n: g.beta(2.0, 3.0, n)),
    "kumaraswamy": ((2.0, 3.0), None),
    "beta_uniform": ((0.7, 2.0, 3.0), None),
    "student_t": ((4.0, 0.0, 1.0), lambda g, n: g.standard_t(4.0, n)),
    "dirichlet": ((mx.array([1.0, 2.0, 3.0]),), lambda g, n: g.dirichlet([1.0, 2.0, 3.0], n)),
    "bernoulli": ((0.3,), lambda g, n: g.random(n) < 0.3),
    "categorical": ((mx.array(P3),), lambda g, n: g.choice(3, size=n, p=P3)),
    "categorical_logits": (
        (mx.log(mx.array(P3)),),
        lambda g, n: g.choice(3, size=n, p=P3),
    ),
    "poisson": ((3.0,), lambda g, n: g.poisson(3.0, n)),
    "geometric": ((0.3,), lambda g, n: g.geometric(0.3, n) - 1),  # NumPy counts trials
    "binomial": ((10, 0.3), lambda g, n: g.binomial(10, 0.3, n)),
    "neg_binomial": ((3.0, 0.4), lambda g, n: g.negative_binomial(3, 0.4, n)),
    "uniform_discrete": ((1, 6), lambda g, n: g.integers(1, 7, n)),
    "multinomial": ((10, mx.array(P3)), lambda g, n: g.multinomial(10, P3, n)),
    "beta_binomial": ((10, 2.0, 3.0), None),
    "dirichlet_multinomial": ((10, mx.array([1.0, 2.0, 3.0])), None),
    "zipf": ((1.1, 100), None),  # bounded Zipf; NumPy's zipf is unbounded (a > 1)
    "delta": ((2.5,), None),
    "piecewise_uniform": ((mx.array([0.0, 1.0, 3.0]), mx.array([0.4, 0.6])), None),
    "mv_normal": (
        (mx.zeros(3), mx.array(COV3)),
        lambda g, n: g.multivariate_normal(np.zeros(3), COV3, n),
    ),
    "wishart": ((5.0, mx.array(COV3)), None),
    "inv_wishart": ((6.0, mx.array(COV3)), None),
}


def _time_mlx(name: str, n: int, reps: int) -> float:
    d = getattr(gd, name)
    params = CASES[name][0]
    # Every row starts from an empty MLX buffer cache: on the CPU it holds 32 MiB by
    # default, and buffers the previous distribution left there can crowd out this
    # one's (which are then freed and page-faulted in again on every call), so a row
    # would depend on the one before it.
    mx.clear_cache()
    mx.eval(d.sample(mx.random.key(10_000), *params, shape=(n,)))  # warm up
    best = math.inf
    for r in range(reps):
        key = mx.random.key(r)
        t0 = time.perf_counter()
        mx.eval(d.sample(key, *params, shape=(n,)))
        best = min(best, time.perf_counter() - t0)
    return best


def _time_numpy(fn: NumpyFn, n: int, reps: int) -> float:
    fn(np.random.default_rng(10_000), n)
    best = math.inf
    for r in range(reps):
        g = np.random.default_rng(r)
        t0 = time.perf_counter()
        fn(g, n)
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    n = (sizes or [100_000 if quick else 1_000_000])[0]
    reps = 2 if quick else 3
    rows = []
    only = os.environ.get("GENMLX_DISTS")  # a comma-separated subset, e.g. "poisson,gamma"
    for name, (_, np_fn) in CASES.items():
        if only and name not in only.split(","):
            continue
        tg = tn = math.inf
        for _ in range(2):  # interleave the two sides so machine noise hits both alike
            tg = min(tg, _time_mlx(name, n, reps))
            if np_fn is not None:
                tn = min(tn, _time_numpy(np_fn, n, reps))
        row: dict[str, Any] = {"name": name, "n": n, "genmlx_per_s": n / tg}
        if np_fn is not None:
            row["numpy_per_s"] = n / tn
            row["ratio"] = tn / tg
        rows.append(row)
    return {
        "name": "dists_sampling",
        "description": "batch sampling throughput, genmlx.dists vs numpy.random.Generator",
        "device": str(mx.default_device()),
        "n": n,
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"N = {result['n']:.0e} samples per call (scalar parameters; one event per sample).",
        "",
        "| distribution | genmlx (M samples/s) | NumPy (M samples/s) | genmlx / NumPy |",
        "|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        np_rate = f"{r['numpy_per_s'] / 1e6:.3g}" if "numpy_per_s" in r else "—"
        ratio = f"{r['ratio']:.2g}" if "ratio" in r else "—"
        lines.append(f"| `{r['name']}` | {r['genmlx_per_s'] / 1e6:.3g} | {np_rate} | {ratio} |")
    return "\n".join(lines)
