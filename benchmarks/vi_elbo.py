"""ELBO gradient steps per second: genmlx VI (eager and compiled) next to NumPyro's SVI.

Model: Bayesian linear regression with known noise, ``w ~ N(0, I₅)`` (one vector choice
``"w"``), ``y ~ N(X w, 0.5² I)`` for 100 rows; ``X ~ N(0, I)`` and ``y`` are drawn with
NumPy seed 0 from fixed weights. Guide: mean-field Gaussian over ``w`` with parameters
``loc`` (5) and ``log_scale`` (5), ``w ~ N(loc, exp(log_scale))``. Each step averages
10 reparameterised samples of the ELBO and takes one Adam step (learning rate 0.01).

Sides, in one process, each timed after a warm-up run that compiles it:

* ``black_box_vi`` with the guide written as a ``@gen`` function reading ``param``
  values: ``compile=False`` (eager), ``compile=True`` (an ``mx.compile``'d step), and
  ``compile=True, steps_per_call=10`` (ten steps unrolled in one compiled call);
* ``advi`` (mean-field), whose guide is built automatically — the same Gaussian family;
* NumPyro ``SVI(model, guide, Adam(0.01), Trace_ELBO(num_particles=10))`` with the same
  hand-written guide: ``jax.jit(svi.update)`` called in a Python loop, reading the loss
  every step as genmlx does (it records and checks the ELBO of every step), and
  ``jax.jit`` of a ``lax.scan`` over ``svi.update`` (the whole loop as one XLA program
  collecting every step's loss, no per-step Python; what ``svi.run`` does, without its
  compilation on every call).

A genmlx rate is measured from two runs of ``n₁ < n₂`` steps, ``(n₂ − n₁) / (t₂ − t₁)``,
so set-up (finding the guide's parameters, the first ``mx.compile`` trace) cancels; the
best of ``reps`` repetitions is reported. Ratios are genmlx steps/s over NumPyro's jitted
``svi.update`` loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import gen, param
from genmlx.dists import normal
from genmlx.infer.vi import advi, black_box_vi

N, D = 100, 5
NOISE = 0.5
N_SAMPLES = 10
LR = 0.01
PER_CALL = 10
_rng = np.random.default_rng(0)
X_NP = _rng.standard_normal((N, D)).astype(np.float32)
W_TRUE = np.array([1.0, -2.0, 0.5, 0.0, 1.5], dtype=np.float32)
Y_NP = (X_NP @ W_TRUE + NOISE * _rng.standard_normal(N)).astype(np.float32)
XS = mx.array(X_NP)
OBS = {"y": mx.array(Y_NP)}


@gen
def linreg(xs: mx.array) -> Any:
    w = normal(mx.zeros((D,)), 1.0) @ "w"
    normal(xs @ w, NOISE) @ "y"
    return w


@gen
def meanfield_guide() -> Any:
    loc = param("loc", mx.zeros((D,)))
    log_scale = param("log_scale", mx.full((D,), -1.0))
    return normal(loc, mx.exp(log_scale)) @ "w"


MODES = [
    ("eager", False, 1),
    ("compiled", True, 1),
    (f"compiled, {PER_CALL} steps per call", True, PER_CALL),
]


def _exact_posterior() -> tuple[np.ndarray, np.ndarray]:
    prec = np.eye(D) + X_NP.T.astype(np.float64) @ X_NP / NOISE**2
    cov = np.linalg.inv(prec)
    return cov @ X_NP.T @ Y_NP / NOISE**2, np.sqrt(np.diag(cov))


def _genmlx_fit(
    kind: str, compiled: bool, per_call: int = 1
) -> Callable[[int, int], tuple[float, Any]]:
    def fit(n_steps: int, seed: int) -> tuple[float, Any]:
        t0 = time.perf_counter()
        if kind == "black_box_vi":
            res = black_box_vi(
                linreg,
                (XS,),
                OBS,
                meanfield_guide,
                n_steps=n_steps,
                n_samples=N_SAMPLES,
                learning_rate=LR,
                compile=compiled,
                steps_per_call=per_call,
                key=mx.random.key(seed),
            )
            mx.eval(res.params["loc"])
            loc = np.array(res.params["loc"])
        else:
            res = advi(
                linreg,
                (XS,),
                OBS,
                n_steps=n_steps,
                n_samples=N_SAMPLES,
                learning_rate=LR,
                compile=compiled,
                steps_per_call=per_call,
                key=mx.random.key(seed),
            )
            mx.eval(res.params["loc"])
            loc = np.array(res.params["loc"])
        return time.perf_counter() - t0, loc

    return fit


def _rate(fit: Callable[[int, int], tuple[float, Any]], n1: int, n2: int, reps: int) -> float:
    fit(n1, 999)  # warm-up: compiles (and caches kernels)
    best = math.inf
    for r in range(reps):
        t1, _ = fit(n1, r)
        t2, _ = fit(n2, r)
        best = min(best, (t2 - t1) / (n2 - n1))
    return 1.0 / best


def _numpyro(steps: int, reps: int) -> dict[str, Any] | None:
    try:
        import jax

        jax.config.update("jax_platform_name", "cpu")
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.optim import Adam
    except ImportError:
        return None

    def model(x: Any, y: Any) -> None:
        w = numpyro.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
        numpyro.sample("y", dist.Normal(x @ w, NOISE).to_event(1), obs=y)

    def guide(x: Any, y: Any) -> None:
        loc = numpyro.param("loc", jnp.zeros(D))
        log_scale = numpyro.param("log_scale", jnp.full(D, -1.0))
        numpyro.sample("w", dist.Normal(loc, jnp.exp(log_scale)).to_event(1))

    x, y = jnp.asarray(X_NP), jnp.asarray(Y_NP)
    svi = SVI(model, guide, Adam(LR), Trace_ELBO(num_particles=N_SAMPLES))
    update = jax.jit(svi.update)
    state = svi.init(jax.random.PRNGKey(0), x, y)
    state, loss = update(state, x, y)  # compile
    float(loss)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            state, loss = update(state, x, y)
            float(loss)  # read the loss every step, as genmlx's loop does
        best = min(best, time.perf_counter() - t0)
    loc = np.asarray(svi.get_params(state)["loc"])

    def many_steps(state: Any) -> tuple[Any, Any]:
        # the whole loop as one XLA program, collecting every step's loss
        return jax.lax.scan(lambda s, _: update(s, x, y), state, None, length=steps)

    scan_loop = jax.jit(many_steps)
    jax.block_until_ready(scan_loop(state))  # compile
    best_run = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(scan_loop(state))
        best_run = min(best_run, time.perf_counter() - t0)
    return {
        "update_steps_per_s": steps / best,
        "scan_steps_per_s": steps / best_run,
        "loc": loc.tolist(),
    }


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    """``sizes``: ``[n1, n2]``, the step counts of the two timed genmlx runs."""
    n1, n2 = sizes if sizes and len(sizes) == 2 else ((50, 250) if quick else (200, 2000))
    reps = 1 if quick else 3
    rows = []
    for kind in ("black_box_vi", "advi"):
        for mode, compiled, per_call in MODES:
            fit = _genmlx_fit(kind, compiled, per_call)
            rate = _rate(fit, n1, n2, reps)
            _, loc = fit(n2, 0)
            rows.append({"method": kind, "mode": mode, "steps_per_s": rate, "loc": loc.tolist()})
    numpyro = _numpyro(n2, reps)
    if numpyro is not None:
        for r in rows:
            r["ratio_vs_numpyro_update"] = r["steps_per_s"] / numpyro["update_steps_per_s"]
            r["ratio_vs_numpyro_scan"] = r["steps_per_s"] / numpyro["scan_steps_per_s"]
    mean, sd = _exact_posterior()
    return {
        "name": "vi_elbo",
        "description": "ELBO gradient steps/s, Bayesian linear regression (N=100, D=5)",
        "device": str(mx.default_device()),
        "settings": {
            "n": N,
            "d": D,
            "n_samples": N_SAMPLES,
            "lr": LR,
            "steps": [n1, n2],
            "reps": reps,
        },
        "rows": rows,
        "numpyro": numpyro,
        "exact_posterior_mean": mean.tolist(),
        "exact_posterior_sd": sd.tolist(),
    }


def table(result: dict[str, Any]) -> str:
    s = result["settings"]
    exact = np.array(result["exact_posterior_mean"])

    def err(loc: list[float]) -> str:
        return f"{float(np.max(np.abs(np.array(loc) - exact))):.3f}"

    lines = [
        f"Steps per second (Adam, {s['n_samples']} samples per step; genmlx rate from "
        f"{s['steps'][0]} and {s['steps'][1]} steps, best of {s['reps']}). The last column "
        f"is max |fitted loc − exact posterior mean| after {s['steps'][1]} steps.",
        "",
        "| method | mode | steps/s | vs NumPyro `jit(svi.update)` | vs NumPyro `jit(scan)` "
        "| loc error |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ru = r.get("ratio_vs_numpyro_update")
        rr = r.get("ratio_vs_numpyro_scan")
        ratios = f"**{ru:.2f}** | {rr:.2f}" if ru is not None else " | "
        lines.append(
            f"| genmlx `{r['method']}` | {r['mode']} | {r['steps_per_s']:,.0f} | {ratios} | "
            f"{err(r['loc'])} |"
        )
    n = result.get("numpyro")
    if n is None:
        lines.append("| NumPyro | not installed | | | | |")
    else:
        lines.append(
            f"| NumPyro SVI | `jit(svi.update)` loop | {n['update_steps_per_s']:,.0f} | 1.00 | "
            f"| {err(n['loc'])} |"
        )
        lines.append(
            f"| NumPyro SVI | `jit(lax.scan(svi.update))` | {n['scan_steps_per_s']:,.0f} | "
            "| 1.00 | |"
        )
    return "\n".join(lines)
