"""NUTS end to end, GenMLX's ``mcmc`` against NumPyro's ``MCMC(NUTS)``, on four models.

Models (the same priors, likelihoods and data on both sides; data from NumPy seed 0):

* ``logreg`` — Bayesian logistic regression, N = 200, 5 coefficients and an intercept;
* ``eight_schools`` — the non-centred eight-schools model (``tau ~ HalfCauchy(5)``);
* ``poisson_glm`` — Poisson regression with 30 coefficients, N = 500;
* ``ar5`` — an AR(5) time series, T = 200 (intercept, 5 lags, ``sigma ~ HalfNormal(1)``).

Both samplers: ``n_chains`` chains run together (GenMLX batches them; NumPyro
``chain_method="vectorized"``), ``n_warmup`` warm-up transitions with Stan's windowed
adaptation (diagonal mass, target acceptance 0.8, max tree depth 10), ``n_samples``
draws. ESS is ``genmlx.infer.ess_bulk`` (ArviZ's definition) of both samplers' draws,
the minimum over parameters.

Fair timing: each side runs the whole thing twice in this process; the second run is
timed (warm-up and sampling separately) and the difference between the first and the
second run's total is reported as compile time (JAX's tracing and XLA compilation;
GenMLX's model analysis and ``mx.compile`` tracing, plus MLX's CPU kernel builds when
fusion is on). NumPyro runs its NUTS kernel (``NUTS.init``/``NUTS.sample``, what
``MCMC`` runs) vmapped over the chains inside one jitted ``lax.scan`` per phase, so the
timed run is its compiled program with no re-tracing (``MCMC.run`` re-traces its loop on
every call).
"""

from __future__ import annotations

import math
import time
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import choicemap, gen
from genmlx.dists import bernoulli, half_cauchy, half_normal, normal, poisson
from genmlx.infer import ess_bulk, mcmc

# ---------------------------------------------------------------------------- data
_rng = np.random.default_rng(0)
LR_X = _rng.standard_normal((200, 5)).astype(np.float32)
LR_Y = (
    _rng.uniform(size=200) < 1 / (1 + np.exp(-(LR_X @ np.array([1.0, -0.5, 0.8, 0.0, -1.2]) + 0.3)))
).astype(np.float32)
ES_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=np.float32)
ES_S = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=np.float32)
GLM_X = (_rng.standard_normal((500, 30)) / math.sqrt(30)).astype(np.float32)
GLM_B = _rng.normal(0.0, 0.5, 30).astype(np.float32)
GLM_Y = _rng.poisson(np.exp(GLM_X @ GLM_B + 1.0)).astype(np.float32)
_ar = np.zeros(205, dtype=np.float32)
for t in range(5, 205):
    _ar[t] = (
        0.2 + 0.5 * _ar[t - 1] - 0.2 * _ar[t - 2] + 0.1 * _ar[t - 3] + 0.3 * _rng.standard_normal()
    )
AR_Y = _ar[5:]
AR_LAGS = np.stack([_ar[5 - k : 205 - k] for k in range(1, 6)], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------- GenMLX
@gen
def g_logreg(x):
    w = normal(mx.zeros(5), 1.0) @ "w"
    b = normal(0.0, 1.0) @ "b"
    bernoulli(mx.sigmoid(x @ w + b)) @ "y"


@gen
def g_eight_schools(sigma):
    mu = normal(0.0, 5.0) @ "mu"
    tau = half_cauchy(5.0) @ "tau"
    theta_t = normal(mx.zeros(8), 1.0) @ "theta_tilde"
    normal(mu + tau * theta_t, sigma) @ "y"


@gen
def g_poisson_glm(x):
    beta = normal(mx.zeros(30), 0.5) @ "beta"
    b0 = normal(0.0, 1.0) @ "b0"
    poisson(mx.exp(x @ beta + b0)) @ "y"


@gen
def g_ar5(lags):
    alpha = normal(0.0, 1.0) @ "alpha"
    beta = normal(mx.zeros(5), 0.5) @ "beta"
    sigma = half_normal(1.0) @ "sigma"
    normal(alpha + lags @ beta, sigma) @ "y"


GENMLX = {
    "logreg": (g_logreg, (mx.array(LR_X),), {"y": mx.array(LR_Y.astype(bool))}),
    "eight_schools": (g_eight_schools, (mx.array(ES_S),), {"y": mx.array(ES_Y)}),
    "poisson_glm": (g_poisson_glm, (mx.array(GLM_X),), {"y": mx.array(GLM_Y.astype(np.int32))}),
    "ar5": (g_ar5, (mx.array(AR_LAGS),), {"y": mx.array(AR_Y)}),
}


def _genmlx_draws(res: Any) -> np.ndarray:
    parts = []
    for v in res.samples.values():
        a = np.asarray(v, dtype=np.float64)
        parts.append(a.reshape(a.shape[0], a.shape[1], -1))
    return np.concatenate(parts, axis=-1)


def run_genmlx(name: str, chains: int, warmup: int, draws: int, seed: int) -> dict[str, Any]:
    model, args, obs = GENMLX[name]
    out: dict[str, Any] = {}
    for rep in range(2):
        t0 = time.perf_counter()
        res = mcmc(
            model,
            args,
            choicemap(obs),
            n_chains=chains,
            n_warmup=warmup,
            n_samples=draws,
            key=mx.random.key(seed + rep),
            warn=False,
        )
        total = time.perf_counter() - t0
        out[f"total_{rep}"] = total
    d = _genmlx_draws(res)
    ess = float(np.min(np.asarray(ess_bulk(mx.array(d.astype(np.float32)), layout="chain_draw"))))
    out.update(
        warmup_s=res.timing["warmup_s"],
        sampling_s=res.timing["sampling_s"],
        ess=ess,
        compile_s=max(out["total_0"] - out["total_1"], 0.0),
        mean_leapfrog=float(np.asarray(res.stats["n_leapfrog"]).mean()),
        divergences=int(np.asarray(res.stats["diverging"]).sum()),
        posterior_mean=d.reshape(-1, d.shape[-1]).mean(0).tolist(),
    )
    out["ess_per_s"] = ess / out["sampling_s"]
    return out


# ---------------------------------------------------------------------------- NumPyro
def _numpyro_models() -> dict[str, Any]:
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def logreg(x, y):
        w = numpyro.sample("w", dist.Normal(jnp.zeros(5), 1.0).to_event(1))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    def eight_schools(sigma, y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        th = numpyro.sample("theta_tilde", dist.Normal(jnp.zeros(8), 1.0).to_event(1))
        numpyro.sample("y", dist.Normal(mu + tau * th, sigma).to_event(1), obs=y)

    def poisson_glm(x, y):
        beta = numpyro.sample("beta", dist.Normal(jnp.zeros(30), 0.5).to_event(1))
        b0 = numpyro.sample("b0", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Poisson(jnp.exp(x @ beta + b0)).to_event(1), obs=y)

    def ar5(lags, y):
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
        beta = numpyro.sample("beta", dist.Normal(jnp.zeros(5), 0.5).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma).to_event(1), obs=y)

    return {
        "logreg": (logreg, (LR_X, LR_Y)),
        "eight_schools": (eight_schools, (ES_S, ES_Y)),
        "poisson_glm": (poisson_glm, (GLM_X, GLM_Y)),
        "ar5": (ar5, (AR_LAGS, AR_Y)),
    }


def run_numpyro(
    name: str, chains: int, warmup: int, draws: int, seed: int
) -> dict[str, Any] | None:
    """NumPyro's NUTS kernel (``NUTS.init`` / ``NUTS.sample``, the same code ``MCMC`` runs,
    warm-up adaptation included) vmapped over chains inside one ``jax.jit``'d
    ``lax.scan`` per phase: its best compiled program, traced and compiled once, then
    timed on a second call."""
    try:
        import jax
        from numpyro.infer import NUTS
    except ImportError:
        return None
    model, args = _numpyro_models()[name]
    kernel = NUTS(model, target_accept_prob=0.8, max_tree_depth=10)
    state0 = kernel.init(
        jax.random.split(jax.random.PRNGKey(seed), chains), warmup, None, model_args=args
    )

    def phase(length: int) -> Any:
        def body(st: Any, _: Any) -> Any:
            st = kernel.sample(st, args, {})  # vectorised over chains by NUTS.init
            return st, (st.z, st.num_steps)

        return jax.jit(lambda st: jax.lax.scan(body, st, None, length=length))

    warm, samp = phase(warmup), phase(draws)
    out: dict[str, Any] = {}
    times = {}
    for rep in range(2):
        t0 = time.perf_counter()
        s1, _ = warm(state0)
        jax.block_until_ready(s1)
        t1 = time.perf_counter()
        s2, (zs, steps) = samp(s1)
        jax.block_until_ready(zs)
        t2 = time.perf_counter()
        times[rep] = (t1 - t0, t2 - t1)
    out["warmup_s"], out["sampling_s"] = times[1]
    out["compile_s"] = max(sum(times[0]) - sum(times[1]), 0.0)
    post = jax.vmap(jax.vmap(kernel.postprocess_fn(args, {})))(zs)  # [draws, chains]
    parts = [
        np.swapaxes(np.asarray(v, dtype=np.float64), 0, 1).reshape(chains, draws, -1)
        for v in post.values()
    ]
    d = np.concatenate(parts, axis=-1)
    ess = float(np.min(np.asarray(ess_bulk(mx.array(d.astype(np.float32)), layout="chain_draw"))))
    out.update(
        ess=ess,
        mean_leapfrog=float(np.asarray(steps).mean()),
        posterior_mean=d.reshape(-1, d.shape[-1]).mean(0).tolist(),
    )
    out["ess_per_s"] = ess / out["sampling_s"]
    return out


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    """``sizes``: ``[chains]`` (default 4)."""
    chains = (sizes or [4])[0]
    warmup, draws = (100, 200) if quick else (500, 1000)
    rows = []
    for name in GENMLX:
        g = run_genmlx(name, chains, warmup, draws, seed=0)
        n = run_numpyro(name, chains, warmup, draws, seed=0)
        rows.append(
            {
                "model": name,
                "genmlx": g,
                "numpyro": n,
                "ratio_ess_per_s": (g["ess_per_s"] / n["ess_per_s"]) if n else None,
            }
        )
        print(
            name,
            f"genmlx ESS/s {g['ess_per_s']:.0f}",
            f"numpyro ESS/s {n['ess_per_s'] if n else float('nan'):.0f}",
            flush=True,
        )
    return {
        "name": "nuts_models",
        "description": "NUTS via mcmc() vs NumPyro MCMC(NUTS), compile excluded",
        "device": str(mx.default_device()),
        "settings": {"chains": chains, "warmup": warmup, "draws": draws, "max_depth": 10},
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"{s['chains']} chains, {s['warmup']} warm-up + {s['draws']} draws, max depth "
        f"{s['max_depth']}; ESS = min bulk ESS over parameters; compile = first run − second run.",
        "",
        "| model | sampler | ESS | sampling (s) | ESS/s | warm-up (s) | compile (s) "
        "| leapfrog/draw | ESS/s ratio (GenMLX / NumPyro) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        for side in ("genmlx", "numpyro"):
            m = r[side]
            if m is None:
                lines.append(f"| {r['model']} | {side} | not installed | | | | | | |")
                continue
            ratio = (
                f"**{r['ratio_ess_per_s']:.2f}**"
                if side == "genmlx" and r["ratio_ess_per_s"]
                else ""
            )
            lines.append(
                f"| {r['model']} | {side} | {m['ess']:.0f} | {m['sampling_s']:.2f} | "
                f"{m['ess_per_s']:,.0f} | {m['warmup_s']:.2f} | {m['compile_s']:.2f} | "
                f"{m['mean_leapfrog']:.1f} | {ratio} |"
            )
    return "\n".join(lines)
