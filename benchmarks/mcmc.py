"""MCMC throughput and NUTS efficiency: genmlx.infer on Bayesian logistic regression.

Model: ``w ~ N(0, I₅)`` (one vector choice ``"w"``), ``b ~ N(0, 1)`` (``"b"``),
``y_i ~ Bernoulli(σ(x_i·w + b))`` for ``N = 200`` rows; ``x_i ~ N(0, I₅)`` and ``y`` are
drawn with NumPy seed 0 from the fixed true weights ``W_TRUE``, ``B_TRUE``.

Two measurements, in one process:

1. **Throughput** (chain-steps per second = steps × chains / seconds) of three kernels
   on the six posterior dimensions: ``mh`` with a Gaussian random-walk proposal
   (scale 0.1 per coordinate; resimulating ``("w", "b")`` from the prior is a poor
   proposal), ``hmc`` (step 0.05, 10 leapfrog steps) and ``nuts`` (``max_depth`` 6, step
   size and diagonal mass from ``nuts_warmup``). Each is run *interpreted* (a Python
   loop of kernel calls, evaluating the trace after every step) and *compiled* (a
   ``K``-step chain wrapped in :func:`genmlx.core.compile`, one call), on 1 chain and
   on 1000 chains batched in one trace. Minimum over repetitions.
2. **NUTS efficiency** against NumPyro's NUTS (JAX on CPU, vectorised chains) on the
   same model and data: 4 chains, 500 warm-up transitions (Stan's windowed adaptation
   in both, target acceptance 0.8, diagonal mass, max tree depth 6), 1000 draws. ESS is
   :func:`genmlx.infer.ess_bulk` of the draws (minimum over the 6 parameters) for both;
   we report ESS per second of sampling and of warm-up + sampling. GenMLX calls its
   ``nuts`` kernel in a Python loop, as users do (the kernel compiles its own pieces and
   stops each tree at its U-turn; a few draws are run first so that tracing is not timed;
   an outer ``compile`` would force full trees). NumPyro runs its NUTS kernel in one
   jitted ``lax.scan`` per phase, run once first so that compilation is not timed
   (``MCMC.run`` would re-trace).
   ``nuts_models`` runs the one-call driver on four models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import Trace, choicemap, compile, gen, select
from genmlx.dists import bernoulli, normal
from genmlx.infer import ess_bulk, hmc, mh, nuts, nuts_warmup

N, D = 200, 5
W_TRUE = np.array([1.0, -0.5, 0.8, 0.0, -1.2], dtype=np.float32)
B_TRUE = 0.3
_rng = np.random.default_rng(0)
X_NP = _rng.standard_normal((N, D)).astype(np.float32)
Y_NP = _rng.uniform(size=N) < 1.0 / (1.0 + np.exp(-(X_NP @ W_TRUE + B_TRUE)))
XS = mx.array(X_NP)
OBS = choicemap({"y": mx.array(Y_NP)})
SEL = select("w", "b")
RW_SCALE = 0.1
HMC_STEP, HMC_LEAPFROG = 0.05, 10
NUTS_DEPTH = 6


@gen
def logreg(xs: mx.array) -> Any:
    w = normal(mx.zeros((D,)), 1.0) @ "w"
    b = normal(0.0, 1.0) @ "b"
    bernoulli(mx.sigmoid(xs @ w + b)) @ "y"
    return b


@gen
def random_walk(trace: Trace, scale: float) -> Any:
    """Gaussian random-walk proposal around the current ``w`` and ``b``."""
    normal(trace["w"], scale) @ "w"
    normal(trace["b"], scale) @ "b"
    return None


def _eval(tr: Trace) -> None:
    """Evaluate a trace's choices and score (``mx.eval(trace)`` does not reach them)."""
    mx.eval(tr.score, tr["w"], tr["b"])


def _init(chains: int, key: mx.array) -> Trace:
    if chains == 1:
        tr, _ = logreg.generate((XS,), OBS, key=key)
    else:
        tr, _ = logreg.vgenerate((XS,), OBS, chains, key=key)
    _eval(tr)
    return tr


def _kernels(eps: mx.array, mass: mx.array) -> dict[str, Callable[[Trace, mx.array], Trace]]:
    def k_mh(tr: Trace, key: mx.array) -> Trace:
        return mh(tr, random_walk, (RW_SCALE,), key=key)[0]

    def k_hmc(tr: Trace, key: mx.array) -> Trace:
        return hmc(tr, SEL, step_size=HMC_STEP, n_leapfrog=HMC_LEAPFROG, key=key)[0]

    def k_nuts(tr: Trace, key: mx.array) -> Trace:
        return nuts(tr, SEL, key=key, step_size=eps, max_depth=NUTS_DEPTH, mass=mass)[0]

    return {"mh": k_mh, "hmc": k_hmc, "nuts": k_nuts}


def _k_chain(kernel: Callable[[Trace, mx.array], Trace], k: int) -> Callable[..., Trace]:
    def run_chain(tr: Trace, key: mx.array) -> Trace:
        for sub in mx.random.split(key, k):
            tr = kernel(tr, sub)
        return tr

    return run_chain


def _time_interpreted(kernel: Callable[..., Trace], tr: Trace, k: int, reps: int) -> float:
    _eval(kernel(tr, mx.random.key(999)))  # warm up
    best = math.inf
    for r in range(reps):
        keys = mx.random.split(mx.random.key(r), k)
        t = tr
        t0 = time.perf_counter()
        for i in range(k):
            t = kernel(t, keys[i])
            _eval(t)
        best = min(best, time.perf_counter() - t0)
    return best


def _time_compiled(fn: Callable[..., Trace], tr: Trace, reps: int) -> float:
    _eval(fn(tr, mx.random.key(999)))  # warm up (and compile)
    best = math.inf
    for r in range(reps):
        key = mx.random.key(r)
        t0 = time.perf_counter()
        _eval(fn(tr, key))
        best = min(best, time.perf_counter() - t0)
    return best


def throughput(ks: dict[str, int], reps: int, chain_counts: list[int]) -> list[dict[str, Any]]:
    rows = []
    for chains in chain_counts:
        tr = _init(chains, mx.random.key(1))
        warm = nuts_warmup(tr, SEL, 50, key=mx.random.key(2), max_depth=NUTS_DEPTH)
        tr = warm.trace
        _eval(tr)
        for name, kernel in _kernels(warm.step_size, warm.mass).items():
            k = ks[name]
            ti = _time_interpreted(kernel, tr, k, reps)
            tc = _time_compiled(compile(_k_chain(kernel, k)), tr, reps)
            rows.append(
                {
                    "kernel": name,
                    "chains": chains,
                    "k": k,
                    "interpreted_steps_per_s": k * chains / ti,
                    "compiled_steps_per_s": k * chains / tc,
                    "speedup": ti / tc,
                }
            )
    return rows


# ---------------------------------------------------------------------- ESS vs NumPyro
def _nuts_draws(tr: Trace, key: mx.array, n: int, eps: mx.array, mass: mx.array):
    """``n`` NUTS transitions called as users call the kernel (eagerly: it runs its own
    compiled pieces and stops every tree at its U-turn); returns the trace and the draws
    ``[chains, n, 6]``."""
    out = []
    for sub in mx.random.split(key, n):
        tr, _ = nuts(tr, SEL, key=sub, step_size=eps, max_depth=NUTS_DEPTH, mass=mass)
        d = mx.concatenate([tr["w"], tr["b"][:, None]], axis=-1)
        mx.eval(d)
        out.append(d)
    return tr, mx.stack(out, axis=1)


def _genmlx_nuts(chains: int, warmup: int, draws: int, seed: int) -> tuple[float, float, mx.array]:
    """Warm-up then ``draws`` NUTS draws; returns (warm-up s, sampling s, draws [c, n, 6])."""
    k_init, k_warm, k_run = mx.random.split(mx.random.key(seed), 3)
    tr = _init(chains, k_init)
    t0 = time.perf_counter()
    warm = nuts_warmup(tr, SEL, warmup, key=k_warm, max_depth=NUTS_DEPTH)
    _eval(warm.trace)
    mx.eval(warm.step_size, warm.mass)
    t_warm = time.perf_counter() - t0
    tr = warm.trace
    _nuts_draws(tr, mx.random.key(12345), 5, warm.step_size, warm.mass)  # trace the pieces
    t0 = time.perf_counter()
    tr, d = _nuts_draws(tr, k_run, draws, warm.step_size, warm.mass)
    _eval(tr)
    t_run = time.perf_counter() - t0
    return t_warm, t_run, d


def _numpyro_nuts(
    chains: int, warmup: int, draws: int, seed: int
) -> tuple[float, float, np.ndarray] | None:
    """NumPyro's NUTS kernel inside one jitted ``lax.scan`` per phase, each phase run once
    to compile and then timed (``MCMC.run`` re-traces its loop on every call, so timing it
    would count compilation as sampling)."""
    try:
        import jax

        jax.config.update("jax_platform_name", "cpu")
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import NUTS
    except ImportError:
        return None

    def model(x: Any, y: Any) -> None:
        w = numpyro.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    x, y = jnp.asarray(X_NP), jnp.asarray(Y_NP.astype(np.float32))
    kernel = NUTS(model, target_accept_prob=0.8, max_tree_depth=NUTS_DEPTH)
    state0 = kernel.init(
        jax.random.split(jax.random.PRNGKey(seed), chains), warmup, None, model_args=(x, y)
    )

    def phase(length: int) -> Any:
        def body(st: Any, _: Any) -> Any:
            st = kernel.sample(st, (x, y), {})
            return st, st.z

        return jax.jit(lambda st: jax.lax.scan(body, st, None, length=length))

    warm, samp = phase(warmup), phase(draws)
    for _ in range(2):  # the first pass compiles both phases; the second is timed
        t0 = time.perf_counter()
        s1, _ = warm(state0)
        jax.block_until_ready(s1)
        t_warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, zs = samp(s1)
        jax.block_until_ready(zs)
        t_run = time.perf_counter() - t0
    w = np.swapaxes(np.asarray(zs["w"]), 0, 1)  # [chains, draws, D]
    b = np.swapaxes(np.asarray(zs["b"]), 0, 1)[..., None]
    return t_warm, t_run, np.concatenate([w, b], -1)


def efficiency(chains: int, warmup: int, draws: int) -> dict[str, Any]:
    out: dict[str, Any] = {"chains": chains, "warmup": warmup, "draws": draws}
    tw, tr_, d = _genmlx_nuts(chains, warmup, draws, seed=0)
    ess = float(mx.min(ess_bulk(d, layout="chain_draw")).item())
    out["genmlx"] = {
        "warmup_s": tw,
        "sampling_s": tr_,
        "ess_bulk_min": ess,
        "ess_per_s": ess / tr_,
        "ess_per_s_total": ess / (tw + tr_),
        "posterior_mean": np.asarray(mx.mean(d, axis=(0, 1))).tolist(),
    }
    res = _numpyro_nuts(chains, warmup, draws, seed=0)
    if res is None:
        out["numpyro"] = None
        return out
    tw, tr_, dn = res
    ess = float(mx.min(ess_bulk(mx.array(dn), layout="chain_draw")).item())
    out["numpyro"] = {
        "warmup_s": tw,
        "sampling_s": tr_,
        "ess_bulk_min": ess,
        "ess_per_s": ess / tr_,
        "ess_per_s_total": ess / (tw + tr_),
        "posterior_mean": dn.mean(axis=(0, 1)).tolist(),
    }
    g, n = out["genmlx"], out["numpyro"]
    out["ratio_ess_per_s"] = g["ess_per_s"] / n["ess_per_s"]
    out["ratio_ess_per_s_total"] = g["ess_per_s_total"] / n["ess_per_s_total"]
    return out


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    """``sizes``: the chain counts of the throughput table (default 1 and 1000)."""
    chain_counts = sizes or [1, 1000]
    ks = {"mh": 5, "hmc": 5, "nuts": 2} if quick else {"mh": 20, "hmc": 10, "nuts": 4}
    reps = 1 if quick else 2
    warmup, draws = (100, 200) if quick else (500, 1000)
    rows = throughput(ks, reps, chain_counts)
    eff = efficiency(4, warmup, draws)
    return {
        "name": "mcmc",
        "description": "MCMC on Bayesian logistic regression (N=200, D=5 + intercept)",
        "device": str(mx.default_device()),
        "settings": {
            "rw_scale": RW_SCALE,
            "hmc_step": HMC_STEP,
            "hmc_leapfrog": HMC_LEAPFROG,
            "nuts_max_depth": NUTS_DEPTH,
            "k": ks,
            "reps": reps,
        },
        "rows": rows,
        "efficiency": eff,
    }


def table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"Chain-steps per second (best of {s['reps']}):",
        "",
        "| kernel | chains | K | interpreted (steps/s) | compiled (steps/s) | compiled speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['kernel']} | {r['chains']} | {r['k']} | {r['interpreted_steps_per_s']:,.0f} | "
            f"{r['compiled_steps_per_s']:,.0f} | {r['speedup']:.1f}× |"
        )
    e = result["efficiency"]
    lines += [
        "",
        f"NUTS, {e['chains']} chains × {e['draws']} draws after {e['warmup']} warm-up "
        "(ESS: min over parameters of bulk ESS):",
        "",
        "| sampler | warm-up (s) | sampling (s) | ESS | ESS/s (sampling) | ESS/s (total) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("genmlx", "numpyro"):
        m = e.get(name)
        if m is None:
            lines.append(f"| {name} | not installed | | | | |")
            continue
        lines.append(
            f"| {name} | {m['warmup_s']:.2f} | {m['sampling_s']:.2f} | {m['ess_bulk_min']:.0f} | "
            f"{m['ess_per_s']:,.0f} | {m['ess_per_s_total']:,.0f} |"
        )
    if e.get("numpyro"):
        lines.append(
            f"| **ratio genmlx / numpyro** | | | | **{e['ratio_ess_per_s']:.2f}** | "
            f"**{e['ratio_ess_per_s_total']:.2f}** |"
        )
    return "\n".join(lines)
