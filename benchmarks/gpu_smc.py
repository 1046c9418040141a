"""Bootstrap particle filter, side by side: GenMLX vs hand-written MLX, hand-written JAX
and GenJAX's SMC (the ``smc`` section of ``gpu_suite``; runs on a CPU too).

The two models of ``smc_filter``: a 3-state HMM (``z_t ~ Categorical(T[z_{t-1}])``,
``y_t ~ Categorical(E[z_t])``, ``z_0 = 0``) and the linear-Gaussian model
(``x_t ~ N(0.9 x_{t-1}, 1)``, ``y_t ~ N(x_t, 0.5)``, ``x_0 = 0``), on ``smc_filter``'s
data, ``T`` observations. Every side runs the same algorithm and returns the same
estimator: the prior proposal at ``t = 0``, then for ``t = 1..T-1`` systematic
resampling followed by one step of the prior, and
``log Ẑ = Σ_t (logsumexp(log w_t) − log N)``. Each timing is one whole filter (``T``
steps from the initial particles to the final ``log Ẑ``), best of ``reps`` runs with
different keys after a first call (reported separately as ``first_s``: compile
included); steps/s = ``T`` / time.

* **GenMLX** — ``particle_filter(model, (1, init), obs_0, N)`` then
  ``state.resample(key=...).step((t + 1, init), obs_t, key=...)`` in a Python loop and
  ``state.log_ml_estimate``, as a user writes it (the compiled step path of
  ``genmlx.infer._smc_fast``); one ``mx.eval`` at the end (MLX runs the steps
  asynchronously).
* **hand MLX** — ``smc_filter``'s minimal step (resample, propagate, weigh) compiled
  with ``compile_function``, one call per step, one ``mx.eval`` at the end.
* **hand JAX** — the whole filter as one ``jax.jit`` of a ``lax.scan`` over the steps.
* **GenJAX** — GenJAX 1.0.14's ``init`` / ``resample(method="systematic")`` /
  ``extend`` on a ``@gen`` step function whose return value is the next step's argument
  (the model form ``rejuvenation_smc`` takes), in a ``lax.scan``, ``seed``-ed and jitted.
* **GenJAX ``rejuvenation_smc``** — GenJAX's own driver (no rejuvenation kernel); it
  resamples only when the ESS falls below ``N/2`` (multinomial), so it does less work
  per step than the others: reported beside them, not as the like-for-like column. Its
  multinomial resampling draws ``N`` indices with TFP's ``Categorical``, which builds an
  ``N × N`` array (O(N²): 3 s per resampling at N = 8000 on a CPU), so it runs only up
  to ``rsmc_max_n`` particles ("n/a" beyond).

The exact ``log p(y_{0:T-1})`` (forward algorithm / Kalman filter in float64) is the
reference: each side's mean ``log Ẑ`` over its timed runs must lie within
``5 · sd / √reps + sd² / 2 + 0.02`` of it (``agree`` in the JSON; ``log Ẑ`` is biased low
by about ``Var / 2``).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import smc_filter as sf
from _cells import guard

from genmlx.core.compile import compile_function
from genmlx.infer import particle_filter

MODELS = ("hmm", "lg")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _timed(fn: Callable[[int], Any], block: Callable[[Any], float], reps: int) -> dict[str, Any]:
    """First call (compile included), then best of ``reps`` calls with keys 1..reps; the
    log ML of every timed call."""
    t0 = time.perf_counter()
    block(fn(10_000))
    first = time.perf_counter() - t0
    best, vals = math.inf, []
    for i in range(reps):
        t0 = time.perf_counter()
        v = block(fn(i + 1))
        best = min(best, time.perf_counter() - t0)
        vals.append(v)
    return {"first_s": first, "s": best, "log_ml": vals}


def _mx_val(x: Any) -> float:
    mx.eval(x)
    return float(x.item())


# ------------------------------------------------------------------ exact reference
def exact_log_ml(model: str, ys: list[Any]) -> float:
    """``log p(y_{0:T-1})`` in float64: forward algorithm (HMM) / Kalman filter (LG)."""
    if model == "hmm":
        tr = np.array(sf.TRANS.tolist(), dtype=np.float64)
        em = np.array(sf.EMIT.tolist(), dtype=np.float64)
        alpha = tr[0].copy()  # p(z_1) given z_0 = 0
        total = 0.0
        for t, y in enumerate(ys):
            if t > 0:
                alpha = alpha @ tr
            alpha = alpha * em[:, y]
            c = alpha.sum()
            total += math.log(c)
            alpha /= c
        return total
    m, p, total = 0.0, 0.0, 0.0
    for y in ys:
        m, p = sf.A * m, sf.A * sf.A * p + sf.Q**2
        s = p + sf.R**2
        total += -0.5 * ((y - m) ** 2 / s + math.log(2 * math.pi * s))
        k = p / s
        m, p = m + k * (y - m), (1 - k) * p
    return total


# ------------------------------------------------------------------ GenMLX
def _genmlx(model: str, n: int, ys: list[Any], reps: int) -> dict[str, Any]:
    m, init = (sf.HMM, sf.Z0) if model == "hmm" else (sf.LG, sf.X0)
    steps = len(ys)
    obs = [{(t, "y"): ys[t]} for t in range(steps)]

    def run(i: int) -> mx.array:
        keys = mx.random.split(mx.random.key(i), 2 * steps)
        state = particle_filter(m, (1, init), obs[0], n, key=keys[0])
        for t in range(1, steps):
            state = state.resample(key=keys[2 * t]).step((t + 1, init), obs[t], key=keys[2 * t + 1])
        return state.log_ml_estimate

    return _timed(run, _mx_val, reps)


# ------------------------------------------------------------------ hand-written MLX
def _hand_mlx(model: str, n: int, ys: list[Any], reps: int) -> dict[str, Any]:
    steps = len(ys)
    dt = mx.int32 if model == "hmm" else mx.float32
    yv = [mx.array(y, dtype=dt) for y in ys]
    step = compile_function(sf._hand_step(model, n))

    def init(key: mx.array, y: mx.array) -> tuple[mx.array, mx.array]:
        if model == "hmm":
            s = mx.random.categorical(mx.broadcast_to(sf.LOG_T[0], (n, sf.K)), key=key)
            return sf.LOG_E[s, y], s
        s = sf.Q * mx.random.normal((n,), key=key)
        return -0.5 * mx.square((y - s) / sf.R) - math.log(sf.R) - HALF_LOG_2PI, s

    cinit = compile_function(init)

    def run(i: int) -> mx.array:
        keys = mx.random.split(mx.random.key(i), 2 * steps)
        lw, s = cinit(keys[0], yv[0])
        acc = mx.array(0.0)
        for t in range(1, steps):
            lw, acc, s = step(keys[2 * t], keys[2 * t + 1], lw, acc, s, yv[t])
        return acc + mx.logsumexp(lw) - math.log(n)

    return _timed(run, _mx_val, reps)


# ------------------------------------------------------------------ JAX sides
def _jax_sides(
    model: str, n: int, ys: list[Any], reps: int, genjax_on: bool, rsmc_max_n: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {"jax": None, "genjax": None, "genjax_rsmc": None}

    def jval(x: Any) -> float:
        return float(jax.block_until_ready(x))

    log_t = jnp.asarray(np.array(sf.LOG_T.tolist(), dtype=np.float32))
    log_e = jnp.asarray(np.array(sf.LOG_E.tolist(), dtype=np.float32))
    yj = jnp.asarray(np.array(ys, dtype=np.int32 if model == "hmm" else np.float32))
    a, q, r = sf.A, sf.Q, sf.R

    def weigh(s: Any, y: Any) -> Any:
        if model == "hmm":
            return log_e[s, y]
        return -0.5 * jnp.square((y - s) / r) - math.log(r) - HALF_LOG_2PI

    def filt(key: Any, ys_: Any) -> Any:
        k0, kscan = jax.random.split(key)
        if model == "hmm":
            s = jax.random.categorical(k0, log_t[0], shape=(n,))
        else:
            s = q * jax.random.normal(k0, (n,))
        lw = weigh(s, ys_[0])

        def body(carry: Any, inp: Any) -> Any:
            lw, acc, s = carry
            k, y = inp
            kr, ks = jax.random.split(k)
            lse = jax.nn.logsumexp(lw)
            acc = acc + lse - math.log(n)
            cdf = jnp.cumsum(jnp.exp(lw - lse))
            u = (jnp.arange(n) + jax.random.uniform(kr)) / n
            s = s[jnp.minimum(jnp.searchsorted(cdf, u), n - 1)]
            if model == "hmm":
                s = jax.random.categorical(ks, log_t[s])
            else:
                s = a * s + q * jax.random.normal(ks, (n,))
            return (weigh(s, y), acc, s), None

        keys = jax.random.split(kscan, ys_.shape[0] - 1)
        (lw, acc, _), _ = jax.lax.scan(body, (lw, jnp.float32(0.0), s), (keys, ys_[1:]))
        return acc + jax.nn.logsumexp(lw) - math.log(n)

    jf = jax.jit(filt)
    out["jax"] = _timed(lambda i: jf(jax.random.PRNGKey(i), yj), jval, reps)
    if not genjax_on:
        out["genjax"] = out["genjax_rsmc"] = None
        return out
    try:
        import genjax
        from genjax import const, seed
    except ImportError:
        out["genjax"] = out["genjax_rsmc"] = None
        return out

    if model == "hmm":

        @genjax.gen
        def kernel(z: Any) -> Any:
            z = genjax.categorical(log_t[z]) @ "z"
            genjax.categorical(log_e[z]) @ "y"
            return z

        init_args: tuple[Any, ...] = (jnp.int32(0),)
    else:

        @genjax.gen
        def kernel(x: Any) -> Any:
            x = genjax.normal(a * x, q) @ "x"
            genjax.normal(x, r) @ "y"
            return x

        init_args = (jnp.float32(0.0),)

    def gj_filter(ys_: Any) -> Any:
        p = genjax.init(kernel, init_args, const(n), {"y": ys_[0]})

        def body(p: Any, y: Any) -> Any:
            p = genjax.resample(p, method="systematic")
            p = genjax.extend(p, kernel, p.traces.get_retval(), {"y": y})
            return p, None

        p, _ = jax.lax.scan(body, p, ys_[1:])
        return p.log_marginal_likelihood()

    def gj_rsmc(ys_: Any) -> Any:
        p = genjax.rejuvenation_smc(
            kernel, observations={"y": ys_}, initial_model_args=init_args, n_particles=const(n)
        )
        return p.log_marginal_likelihood()

    for name, prog in (("genjax", gj_filter), ("genjax_rsmc", gj_rsmc)):
        if name == "genjax_rsmc" and n > rsmc_max_n:
            out[name] = {"na": "n/a (O(N²) resampling)"}
            continue
        jg = jax.jit(lambda key, ys_, prog=prog: seed(prog)(key, ys_))
        try:
            out[name] = _timed(lambda i, jg=jg: jg(jax.random.PRNGKey(i), yj), jval, reps)
        except Exception as e:  # a peer that fails is reported, the others go on
            out[name] = {"error": f"{type(e).__name__}: {e}"[:400]}
    return out


# ------------------------------------------------------------------ run
def _finish(side: dict[str, Any] | None, steps: int, exact: float) -> dict[str, Any] | None:
    if not isinstance(side, dict) or "s" not in side:
        return side
    vals = np.array(side["log_ml"], dtype=np.float64)
    sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    mean = float(vals.mean())
    tol = 5 * sd / math.sqrt(len(vals)) + sd * sd / 2 + 0.02
    side.update(
        ms=side["s"] * 1e3,
        steps_per_s=steps / side["s"],
        log_ml_mean=mean,
        log_ml_sd=sd,
        log_ml_err=mean - exact,
        agree=bool(abs(mean - exact) <= tol),
    )
    return side


def run(
    sizes: list[int],
    steps: int = 30,
    reps: int = 5,
    genjax_on: bool = True,
    rsmc_max_n: int = 10_000,
    budget_s: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The table's rows, smallest ``N`` first (both models per ``N``). Cells not started
    within ``budget_s`` seconds are listed under ``skipped``; ``progress`` gets the
    partial result after every row (to save it)."""
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "steps": steps,
        "reps": reps,
        "jax_form": "one jit of a lax.scan over steps",
        "rows": [],
        "skipped": [],
    }
    data = {m: sf._obs(m, steps) for m in MODELS}
    exact = {m: exact_log_ml(m, data[m]) for m in MODELS}
    for n in sizes:
        for model in MODELS:
            if budget_s is not None and time.perf_counter() - t_start > budget_s:
                res["skipped"].append(f"{model} N={n}")
                continue
            ys = data[model]
            row: dict[str, Any] = {"model": model, "n": n, "steps": steps}
            row["exact_log_ml"] = exact[model]
            row["genmlx"] = guard(_genmlx, model, n, ys, reps)
            row["mlx"] = guard(_hand_mlx, model, n, ys, reps)
            jx = guard(_jax_sides, model, n, ys, reps, genjax_on, rsmc_max_n)
            if "error" in jx:
                jx = {"jax": jx, "genjax": jx, "genjax_rsmc": jx}
            row.update(jx)
            for k in ("genmlx", "mlx", "jax", "genjax", "genjax_rsmc"):
                row[k] = _finish(row.get(k), steps, exact[model])
            line = {
                k: (round(v["steps_per_s"]), round(v["log_ml_mean"], 3), v["agree"])
                if isinstance(v, dict) and "steps_per_s" in v
                else v
                for k, v in row.items()
            }
            print("smc", line, flush=True)
            res["rows"].append(row)
            if progress is not None:
                progress(res)
    res["rows"].sort(key=lambda r: (MODELS.index(r["model"]), r["n"]))
    return res


def table(res: dict[str, Any]) -> str:
    names = {"hmm": "HMM (3 states)", "lg": "linear-Gaussian"}

    def rate(v: Any) -> str:
        if isinstance(v, dict) and "steps_per_s" in v:
            return f"{v['steps_per_s']:,.0f}"
        if isinstance(v, dict) and "error" in v:
            return "error (JSON)"
        if isinstance(v, dict) and "na" in v:
            return str(v["na"])
        return "—"

    def ratio(a: Any, b: Any) -> str:
        if all(isinstance(v, dict) and "s" in v for v in (a, b)):
            return f"**{a['s'] / b['s']:.2f}**"
        return "—"

    def ml(v: Any) -> str:
        if isinstance(v, dict) and "log_ml_mean" in v:
            ok = "" if v["agree"] else " **✗**"
            return f"{v['log_ml_err']:+.3f}±{v['log_ml_sd']:.3f}{ok}"
        return "—"

    lines = [
        f"Bootstrap particle filter, {res['steps']} steps (systematic resampling before every "
        f"step), steps per second (best of {res['reps']} whole filters, compile excluded); "
        "hand JAX is " + res["jax_form"] + ". GenJAX = `init`/`resample`/`extend` in a "
        "`lax.scan`; GenJAX `rejuvenation_smc` resamples only when ESS < N/2 (less work). "
        "Time ratios: above 1, GenMLX is slower.",
        "",
        "| model | N | GenMLX | hand MLX | hand JAX | GenJAX | GenJAX rejuvenation_smc "
        "| GenMLX / hand MLX | GenMLX / GenJAX | hand MLX / hand JAX |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {names[r['model']]} | {r['n']:.0e} | {rate(r['genmlx'])} | {rate(r['mlx'])} "
            f"| {rate(r.get('jax'))} | {rate(r.get('genjax'))} | {rate(r.get('genjax_rsmc'))} "
            f"| {ratio(r['genmlx'], r['mlx'])} | {ratio(r['genmlx'], r.get('genjax'))} "
            f"| {ratio(r['mlx'], r.get('jax'))} |"
        )
    lines += [
        "",
        "log Ẑ − exact log p(y) (mean ± sd over the timed runs; ✗: outside "
        "5·sd/√reps + sd²/2 + 0.02), and first calls in s (compile included):",
        "",
        "| model | N | exact | GenMLX | hand MLX | hand JAX | GenJAX | GenJAX rejuvenation_smc "
        "| first call GenMLX / MLX / JAX / GenJAX / rsmc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        firsts = " / ".join(
            f"{r[k]['first_s']:.2f}" if isinstance(r.get(k), dict) and "first_s" in r[k] else "—"
            for k in ("genmlx", "mlx", "jax", "genjax", "genjax_rsmc")
        )
        lines.append(
            f"| {names[r['model']]} | {r['n']:.0e} | {r['exact_log_ml']:.3f} | {ml(r['genmlx'])} "
            f"| {ml(r['mlx'])} | {ml(r.get('jax'))} | {ml(r.get('genjax'))} "
            f"| {ml(r.get('genjax_rsmc'))} | {firsts} |"
        )
    if res.get("skipped"):
        lines += ["", "Not run (section time budget spent): " + ", ".join(res["skipped"]) + "."]
    return "\n".join(lines)
