"""Where the time of GenMLX's importance sampling goes, piece by piece (GPU or CPU).

The polynomial-regression model of ``gpu_suite``/``polyreg_is`` (three ``N(0, 1)``
coefficients, 50 observations, noise 0.05) at ``N`` particles. Each row is one compiled
program (``mx.compile``), timed as the best of 20 calls after a warm-up call:

* ``normals, one key`` — ``N × 3`` standard normals from one key (what a hand-written
  sampler does);
* ``normals, a key per particle`` — ``split(key, N)`` then three normals per particle
  under ``mx.vmap`` (the batching law: particle ``i`` is the unbatched run with key
  ``split(key, N)[i]``);
* ``+ GenMLX's key stream`` — the same with GenMLX's per-execution stream
  (``KeyStream.start``: one Threefry hash per particle, then ``base + (0, i)`` per site);
* ``+ prior scores`` — plus the three ``N(0, 1)`` log densities;
* ``+ likelihood`` — plus the ``[N, 50]`` Gaussian likelihood and ``logsumexp`` (the
  whole hand-written estimator with GenMLX's keys);
* ``hand-written estimator`` — one key, ``[N, 50]`` likelihood, ``logsumexp``;
* ``GenMLX vgenerate`` — rewrite on (default), the fused kernel path where a GPU has one
  (rewrite off, fused on), and neither; ``logsumexp`` of the weights included.

Run: ``python benchmarks/is_profile.py [--sizes 1000000 ...] [--out is_profile.json]``
(on the GPU machine with the ``PYTHONPATH`` of ``gpu_run.sh``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.core import analyze, choicemap, config, fused, gen, presample, rewrites
from genmlx.core.random import KeyStream
from genmlx.dists import normal

SIGMA = 0.05


@gen
def poly(xs: mx.array) -> None:
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, SIGMA) @ "ys"


def _best(fn: Callable[[mx.array], Any], reps: int = 20) -> float:
    mx.eval(fn(mx.random.key(0)))
    best = math.inf
    for i in range(reps):
        k = mx.random.key(i + 1)
        t0 = time.perf_counter()
        mx.eval(fn(k))
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or ([10_000, 100_000] if quick else [100_000, 1_000_000, 10_000_000])
    xs = mx.linspace(-1.0, 1.0, 50)
    ys = 0.3 + 0.8 * xs - 0.5 * xs**2 + SIGMA * mx.random.normal((50,), key=mx.random.key(3))
    obs = choicemap({"ys": ys})
    analyze(poly, (xs,), obs)
    feats = mx.stack([mx.ones_like(xs), xs, xs**2])  # [3, 50]
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def loglik(theta: mx.array) -> mx.array:  # theta [N, 3]
        mu = theta @ feats
        z = (ys - mu) / SIGMA
        return mx.sum(-0.5 * z * z - math.log(SIGMA) - half_log_2pi, axis=1)

    def keyed_normals(k: mx.array, n: int) -> mx.array:
        def one(kk: mx.array) -> mx.array:
            ks = KeyStream.start(kk)
            vals = []
            for _ in range(3):
                ks, site = ks.site()
                vals.append(mx.random.normal((), key=site))
            return mx.stack(vals)

        return mx.vmap(one)(mx.random.split(k, n))

    rows = []
    for n in sizes:
        cases: dict[str, Callable[[mx.array], Any]] = {
            "normals, one key": mx.compile(lambda k, n=n: mx.random.normal((n, 3), key=k)),
            "normals, a key per particle": mx.compile(
                lambda k, n=n: mx.vmap(lambda kk: mx.random.normal((3,), key=kk))(
                    mx.random.split(k, n)
                )
            ),
            "+ GenMLX's key stream": mx.compile(lambda k, n=n: keyed_normals(k, n)),
            "+ prior scores": mx.compile(
                lambda k, n=n: mx.sum(-0.5 * keyed_normals(k, n) ** 2 - half_log_2pi, axis=1)
            ),
            "+ likelihood": mx.compile(
                lambda k, n=n: mx.logsumexp(
                    mx.sum(-0.5 * (th := keyed_normals(k, n)) ** 2 - half_log_2pi, axis=1)
                    + loglik(th)
                )
            ),
            "hand-written estimator": mx.compile(
                lambda k, n=n: mx.logsumexp(loglik(mx.random.normal((n, 3), key=k)))
            ),
        }
        if presample.active_backend() is not None:
            pre = presample.Presample(
                presample.Plan(((1, 1), (2, 1), (3, 1))), str(presample.active_backend())
            )
            cases["presample kernel (keys + 3 normals)"] = mx.compile(
                lambda k, n=n, pre=pre: presample.draw(pre, k, None, n)[1]
            )
        row: dict[str, Any] = {"n": n}
        for name, fn in cases.items():
            row[name] = _best(fn)

        def vgen(k: mx.array, n: int = n) -> mx.array:
            _, w = poly.vgenerate((xs,), obs, n, key=k)
            return mx.logsumexp(w)

        row["GenMLX vgenerate (rewrite)"] = _best(vgen)
        with rewrites.enabled(False):
            if fused.active_backend() is not None:
                row["GenMLX vgenerate (fused)"] = _best(vgen)
            with fused.enabled(False):
                row["GenMLX vgenerate (direct)"] = _best(vgen)
        if presample.active_backend() is not None:
            with presample.enabled(False):
                row["GenMLX vgenerate (rewrite, no presampling)"] = _best(vgen)
                with rewrites.enabled(False):
                    if fused.active_backend() is not None:
                        row["GenMLX vgenerate (fused, no presampling)"] = _best(vgen)
                    with fused.enabled(False):
                        row["GenMLX vgenerate (direct, no presampling)"] = _best(vgen)

        def vgen_bare(k: mx.array, n: int = n) -> mx.array:
            with config.score_checks(False), config.memory_checks(False):
                _, w = poly.vgenerate((xs,), obs, n, key=k)
            return mx.logsumexp(w)

        row["GenMLX vgenerate (rewrite, no score check)"] = _best(vgen_bare)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {
        "name": "is_profile",
        "device": str(mx.default_device()),
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
    }


def table(res: dict[str, Any]) -> str:
    """A Markdown table (ms per call, best of 20; rows: pieces, columns: N)."""
    rows = res["rows"]
    names = [k for k in rows[0] if k != "n"]
    head = "| piece | " + " | ".join(f"N = {r['n']:.0e}" for r in rows) + " |"
    out = [head, "|---|" + "---:|" * len(rows)]
    for k in names:
        out.append(f"| {k} | " + " | ".join(f"{r.get(k, float('nan')):.3f}" for r in rows) + " |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000])
    p.add_argument("--out", default="is_profile.json")
    a = p.parse_args()
    res = run(sizes=a.sizes)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(table(res))


if __name__ == "__main__":
    main()
