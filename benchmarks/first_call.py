"""First-call latency: what a user waits for the first time an operation runs.

Each case runs in a fresh Python process (imports included in nothing below: only the
operation is timed), twice per process: the first call pays analysis, tracing and
compilation, the second shows the steady state. *Cold* runs use an empty ``$TMPDIR`` (no
MLX kernel cache: what a new user has); *warm* runs reuse the cache a previous process
left. With GenMLX's default (no kernel fusion on the CPU) nothing is built by the C++
compiler, so cold and warm match; ``GENMLX_KERNEL_FUSION=1`` shows what fusion costs.

Cases (small models: ≤ 10 latents, ≤ 1,000 data points):

* ``vgenerate`` — importance sampling on polynomial regression, 10,000 particles;
* ``logdensity`` — build a compiled log density of logistic regression and take one
  value and gradient;
* ``mcmc_nuts`` — ``mcmc`` with NUTS on logistic regression, 4 chains, 100 warm-up +
  100 draws (first call minus second call = the compile share);
* ``hmc_kernel`` — one ``hmc`` transition on a batched trace;
* ``advi`` — 200 ADVI steps.

Target (issue 13): no first call on a small model spends more than 2 s compiling on a
2-core CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import mlx.core as mx

SETUP = textwrap.dedent(
    """
    import time, math
    import numpy as np
    import mlx.core as mx
    from genmlx.core import gen, choicemap, select, logdensity
    from genmlx.dists import normal, bernoulli
    from genmlx.infer import mcmc, hmc, advi
    rng = np.random.default_rng(0)
    X = mx.array(rng.standard_normal((200, 5)).astype(np.float32))
    Y = mx.array(rng.uniform(size=200) < 0.5)
    XS = mx.linspace(0, 1, 50)
    YS = 0.5 - 1.25 * XS + 2.0 * XS ** 2

    @gen
    def poly(xs):
        a = normal(0.0, 1.0) @ "a"
        b = normal(0.0, 1.0) @ "b"
        c = normal(0.0, 1.0) @ "c"
        normal(a + b * xs + c * xs ** 2, 0.05) @ "ys"

    @gen
    def logreg(x):
        w = normal(mx.zeros(5), 1.0) @ "w"
        b = normal(0.0, 1.0) @ "b"
        bernoulli(mx.sigmoid(x @ w + b)) @ "y"
    """
)

CASES = {
    "vgenerate": (
        "w = poly.vgenerate((XS,), choicemap({'ys': YS}), 10000, key=mx.random.key(i))[1]; "
        "mx.eval(w)"
    ),
    "logdensity": (
        "ld = logdensity(logreg, (X,), choicemap({'y': Y})); "
        "mx.eval(ld.value_and_grad(mx.zeros(6) + i))"
    ),
    "mcmc_nuts": (
        "r = mcmc(logreg, (X,), choicemap({'y': Y}), n_chains=4, n_warmup=100, "
        "n_samples=100, key=mx.random.key(i), warn=False)"
    ),
    "hmc_kernel": (
        "tr = logreg.vgenerate((X,), choicemap({'y': Y}), 4, key=mx.random.key(9))[0]; "
        "t2, a = hmc(tr, select('w', 'b'), key=mx.random.key(i)); mx.eval(t2.score)"
    ),
    "advi": (
        "r = advi(logreg, (X,), choicemap({'y': Y}), n_steps=200, key=mx.random.key(i)); "
        "mx.eval(r.loc)"
    ),
}


def _run(case: str, tmpdir: str, fusion: str) -> dict[str, float]:
    code = SETUP + textwrap.dedent(
        f"""
        out = []
        for i in range(2):
            t0 = time.perf_counter()
            {CASES[case]}
            out.append(time.perf_counter() - t0)
        print("RESULT", out[0], out[1])
        """
    )
    env = dict(os.environ, TMPDIR=tmpdir, GENMLX_KERNEL_FUSION=fusion)
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800
    )
    for line in p.stdout.splitlines():
        if line.startswith("RESULT"):
            _, a, b = line.split()
            return {"first_s": float(a), "second_s": float(b), "compile_s": float(a) - float(b)}
    return {"error": (p.stderr or p.stdout)[-500:]}  # type: ignore[dict-item]


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    del sizes
    rows = []
    fusions = ["auto"] if quick else ["auto", "1"]
    for fusion in fusions:
        with tempfile.TemporaryDirectory() as cache:
            for case in CASES:
                cold = _run(case, cache, fusion)  # the first process fills the cache
                warm = _run(case, cache, fusion)
                rows.append({"case": case, "fusion": fusion, "cold": cold, "warm": warm})
                print(rows[-1], flush=True)
    return {
        "name": "first_call",
        "description": "first-call latency of small-model operations, cold and warm kernel cache",
        "device": str(mx.default_device()),
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "Seconds for the first and second call in a fresh process; compile = first − second.",
        "",
        "| case | fusion | cold: first | cold: compile | warm: first | warm: compile "
        "| second call |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        c, w = r["cold"], r["warm"]
        if "error" in c or "error" in w:
            lines.append(f"| {r['case']} | {r['fusion']} | error | | | | |")
            continue
        lines.append(
            f"| {r['case']} | {r['fusion']} | {c['first_s']:.2f} | {c['compile_s']:.2f} | "
            f"{w['first_s']:.2f} | {w['compile_s']:.2f} | {w['second_s']:.2f} |"
        )
    return "\n".join(lines)
