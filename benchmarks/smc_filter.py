"""Particle filtering: steps per second against hand-written MLX, and the cost per step
against t.

Two state-space models, each an ``Unfold`` of a static ``@gen`` kernel:

* **HMM**: 3 hidden states, ``z_t ~ Categorical(T[z_{t-1}])``, ``y_t ~ Categorical(E[z_t])``;
* **linear-Gaussian (LG)**: ``x_t ~ N(0.9·x_{t-1}, 1)``, ``y_t ~ N(x_t, 0.5)``.

**Steps per second.** A bootstrap filter with systematic resampling before every step
(``state.resample(key=...)`` then ``state.step(...)``, then ``mx.eval`` of the log
weights and the accumulated log ML — one host synchronisation per step, as the
hand-written loop does), 30 steps at N = 1e3, 1e4, 1e5, timed from the first
resampling to the final ``log_ml_estimate`` (which, with GenMLX's default score check,
evaluates every particle's trace score once). Side by side in one process, interleaved,
minimum over repetitions:

* **GenMLX** — ``particle_filter`` as a user calls it: the compiled path (one compiled
  program per filter step, see ``genmlx.infer._smc_fast``);
* **GenMLX, interpreted** — the same with ``config.auto_compile(False)``;
* **hand-written MLX** — the filter written directly on arrays (``mx.random.categorical``
  / ``mx.random.normal`` with one key per step, the log-likelihood as a table gather or
  a closed form), eager, and the same step compiled (``compile_function``);
* **same numbers** — a hand-written compiled step that computes exactly GenMLX's numbers
  (its per-particle keys, ``genmlx.dists`` sampling and log densities, the trace
  score); the benchmark checks that its log weights equal GenMLX's bit for bit.

**Where the time goes.** Per step, compiled, at N = 1e3 and 1e5: the minimal
hand-written step, the same with GenMLX's per-particle key derivation, the "same
numbers" step, and GenMLX; plus the number of MLX primitives in each program.

**Cost per step against t.** The LG filter with N = 1000 run to T = 1000; median step
time (resample + step + eval) in 40-step windows starting at t = 10, 100, 960, for the compiled
path on the ``Unfold`` model and on a ``@gen`` model around it (``xs = chain(T, x0) @
"chain"``), and for the interpreted path on both (the ``@gen`` one re-runs every step of
the chain at every update: O(t), stopped at t = 400).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.combinators import Unfold
from genmlx.core import gen, static
from genmlx.core.compile import compile_function, fusion_enabled
from genmlx.dists import categorical, normal
from genmlx.infer import particle_filter, resample_indices

K = 3
TRANS = mx.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
EMIT = mx.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7]])
LOG_T, LOG_E = mx.log(TRANS), mx.log(EMIT)
Z0 = mx.array(0)
X0 = mx.array(0.0)
A, Q, R = 0.9, 1.0, 0.5


@gen
def hmm_kernel(t: int, z: Any) -> Any:
    z = categorical(TRANS[z]) @ "z"
    categorical(EMIT[z]) @ "y"
    return z


@gen
def lg_kernel(t: int, x: Any) -> Any:
    x = normal(A * x, Q) @ "x"
    normal(x, R) @ "y"
    return x


HMM = Unfold(hmm_kernel)
LG = Unfold(lg_kernel)


@gen
def lg_wrapped(T: int) -> Any:
    return LG(T, X0) @ "chain"


def _obs(model: str, n: int) -> list[Any]:
    if model == "hmm":
        return [int(v) for v in mx.random.randint(0, K, (n,), key=mx.random.key(9)).tolist()]
    xs = mx.cumsum(mx.random.normal((n,), key=mx.random.key(5)))
    return [float(v) for v in (xs * 0.3).tolist()]


# ------------------------------------------------------------------ GenMLX
def _genmlx(model: str, n: int, steps: int) -> tuple[float, mx.array]:
    ys = _obs(model, steps)
    init = Z0 if model == "hmm" else X0
    m = HMM if model == "hmm" else LG
    keys = mx.random.split(mx.random.key(1), 2 * steps + 2)
    obs = [{(t, "y"): ys[t]} for t in range(steps)]
    state = particle_filter(m, (1, init), obs[0], n, key=keys[0])
    mx.eval(state.log_weights)
    t0 = time.perf_counter()
    for t in range(1, steps):
        state = state.resample(key=keys[2 * t])
        state = state.step((t + 1, init), obs[t], key=keys[2 * t + 1])
        mx.eval(state.log_weights, state.log_ml_accumulated)
    mx.eval(state.log_ml_estimate)
    return time.perf_counter() - t0, state.log_weights


# ------------------------------------------------------------------ hand-written
def _hand_step(model: str, n: int) -> Callable[..., Any]:
    """The minimal filter step: resample, propagate with one key, weigh."""
    log_n = math.log(n)

    def step(key_r: mx.array, key_s: mx.array, lw: mx.array, acc: mx.array, s: mx.array,
             y: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        idx = resample_indices(lw, "systematic", key=key_r)
        acc = acc + mx.logsumexp(lw) - log_n
        s = s[idx]
        if model == "hmm":
            s = mx.random.categorical(LOG_T[s], key=key_s)
            lw = LOG_E[s, y]
        else:
            s = A * s + Q * mx.random.normal((n,), key=key_s)
            lw = -0.5 * mx.square((y - s) / R) - math.log(R) - 0.5 * math.log(2 * math.pi)
        return lw, acc, s

    return step


def _keys_step(model: str, n: int) -> Callable[..., Any]:
    """The minimal step with GenMLX's per-particle keys (split(key, N)[i], the step key,
    the kernel's site key) and per-particle draws."""
    log_n = math.log(n)

    def site_keys(key_s: mx.array, off: mx.array) -> mx.array:
        def one(k: mx.array) -> mx.array:
            sk = mx.random.split(k, 2)[0] + off
            return mx.random.split(sk, 2)[0] + mx.array([0, 1], dtype=mx.uint32)

        return mx.vmap(one)(mx.random.split(key_s, n))

    def step(key_r: mx.array, key_s: mx.array, off: mx.array, lw: mx.array, acc: mx.array,
             s: mx.array, y: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        idx = resample_indices(lw, "systematic", key=key_r)
        acc = acc + mx.logsumexp(lw) - log_n
        s = s[idx]
        ks = site_keys(key_s, off)
        if model == "hmm":
            s = mx.vmap(lambda k, l: mx.random.categorical(l, key=k))(ks, LOG_T[s])
            lw = LOG_E[s, y]
        else:
            e = mx.vmap(lambda k: mx.random.normal((), key=k))(ks)
            s = A * s + Q * e
            lw = -0.5 * mx.square((y - s) / R) - math.log(R) - 0.5 * math.log(2 * math.pi)
        return lw, acc, s

    return step


def _same_step(model: str, n: int) -> Callable[..., Any]:
    """GenMLX's numbers by hand: its keys, ``genmlx.dists`` and the trace score."""
    log_n = math.log(n)

    def one(k: mx.array, prev: mx.array, y: mx.array, off: mx.array) -> Any:
        step_key = mx.random.split(k, 2)[0] + off
        site = mx.random.split(step_key, 2)[0] + mx.array([0, 1], dtype=mx.uint32)
        if model == "hmm":
            s = categorical.sample(site, TRANS[prev])
            sx = mx.sum(categorical.log_prob(s, TRANS[prev]))
            sy = mx.sum(categorical.log_prob(y, EMIT[s]))
        else:
            s = normal.sample(site, A * prev, Q)
            sx = mx.sum(normal.log_prob(s, A * prev, Q))
            sy = mx.sum(normal.log_prob(y, s, R))
        return s, 0.0 + sy, (0.0 + sx) + sy

    def step(key_r: mx.array, key_s: mx.array, off: mx.array, lw: mx.array, acc: mx.array,
             s: mx.array, score: mx.array, y: mx.array) -> tuple[mx.array, ...]:
        idx = resample_indices(lw, "systematic", key=key_r)
        acc = acc + mx.logsumexp(lw) - log_n
        s, score = s[idx], score[idx]
        keys = mx.random.split(key_s, n)
        s, w, ds = mx.vmap(one, in_axes=(0, 0, None, None))(keys, s, y, off)
        return mx.zeros((n,), dtype=lw.dtype) + w, acc, s, score + ds

    return step


def _hand(model: str, n: int, steps: int, variant: str) -> tuple[float, mx.array]:
    """A hand-written filter: ``variant`` in eager, compiled, keys, same."""
    ys = _obs(model, steps)
    keys = mx.random.split(mx.random.key(1), 2 * steps + 2)
    dt = mx.int32 if model == "hmm" else mx.float32
    yv = [mx.array(y, dtype=dt) for y in ys]
    offs = [mx.array([0, t + 1], dtype=mx.uint32) for t in range(steps)]
    # the initial particles: GenMLX's own first generation (the same for every variant)
    init = Z0 if model == "hmm" else X0
    st = particle_filter(HMM if model == "hmm" else LG, (1, init), {(0, "y"): ys[0]}, n,
                         key=keys[0])
    lw, s, score = st.log_weights, st.traces.steps[0].retval, st.traces.score
    acc = mx.array(0.0)
    mx.eval(lw, s, score)
    if variant in ("eager", "compiled"):
        fn = _hand_step(model, n)
        fn = compile_function(fn) if variant == "compiled" else fn
    else:
        fn = compile_function((_keys_step if variant == "keys" else _same_step)(model, n))

    def args(t: int) -> tuple[Any, ...]:
        if variant in ("eager", "compiled"):
            return keys[2 * t], keys[2 * t + 1]
        return keys[2 * t], keys[2 * t + 1], offs[t]

    t0 = time.perf_counter()
    for t in range(1, steps):
        if variant == "same":
            lw, acc, s, score = fn(*args(t), lw, acc, s, score, yv[t])
        else:
            lw, acc, s = fn(*args(t), lw, acc, s, yv[t])
        mx.eval(lw, acc)
    mx.eval(acc + mx.logsumexp(lw), score)
    return time.perf_counter() - t0, lw


# ------------------------------------------------------------------ primitives
def _count(fn: Callable[..., Any], *args: Any) -> int:
    events: list[dict[str, Any]] = []
    mx.export_function(events.append, lambda *a: tuple(fn(*a)), *args)
    return sum(1 for e in events if e.get("type") == "primitive")


def _genmlx_program(model: str, n: int) -> tuple[Any, Any, tuple[Any, ...]]:
    """GenMLX's compiled step program for ``model`` (traced afresh) and its inputs."""
    from genmlx.infer import _smc_fast

    kernel = hmm_kernel if model == "hmm" else lg_kernel
    seen: dict[str, Any] = {}
    original = _smc_fast.compile_function

    def spy(fn: Callable[..., Any], **kw: Any) -> Callable[..., Any]:
        compiled = original(fn, **kw)

        def call(*a: Any) -> Any:
            seen["args"] = a
            return compiled(*a)

        return call

    saved = _smc_fast._KERNELS.pop(kernel, None)
    _smc_fast.compile_function = spy  # type: ignore[assignment]
    try:
        _genmlx(model, n, 3)
        prog = next(p for ps in _smc_fast._KERNELS[kernel].programs.values() for p in ps)
    finally:
        _smc_fast.compile_function = original  # type: ignore[assignment]
        if saved is not None:
            _smc_fast._KERNELS[kernel] = saved
    return prog.box["pure"], prog.box, seen["args"]


def _primitives(model: str, n: int) -> dict[str, int]:
    """MLX primitives per step: the hand-written programs and GenMLX's (all its outputs,
    and only what the next step and the weights need: log weights, log ML, carry)."""
    k = mx.random.key(0)
    lw, acc = mx.zeros((n,)), mx.array(0.0)
    s = mx.zeros((n,), dtype=mx.int32 if model == "hmm" else mx.float32)
    y = mx.array(1, dtype=s.dtype)
    off = mx.array([0, 2], dtype=mx.uint32)
    same = _same_step(model, n)
    out = {
        "hand": _count(_hand_step(model, n), k, k, lw, acc, s, y),
        "keys": _count(_keys_step(model, n), k, k, off, lw, acc, s, y),
        "same": _count(same, k, k, off, lw, acc, s, lw, y),
        "same_needed": _count(lambda *a: same(*a)[:3], k, k, off, lw, acc, s, lw, y),
    }
    pure, box, args = _genmlx_program(model, n)
    out["genmlx"] = _count(pure, *args)
    nh = box["n_head"]

    def needed(*a: Any) -> list[mx.array]:
        o = pure(*a)
        carry = o[nh + 2 + box["index"][-1]]
        return [o[nh], o[1] if nh else o[nh], carry]

    out["genmlx_needed"] = _count(needed, *args)
    return out


def _first_step_ms(model: str, n: int) -> dict[str, float]:
    """The first filter step (analysis, tracing and compilation of the program) against
    an interpreted step, in ms."""
    from genmlx.infer import _smc_fast

    kernel = hmm_kernel if model == "hmm" else lg_kernel
    m, init = (HMM, Z0) if model == "hmm" else (LG, X0)
    ys = _obs(model, 2)
    out = {}
    for name in ("compiled", "interpreted"):
        _smc_fast._KERNELS.pop(kernel, None)
        keys = mx.random.split(mx.random.key(3), 3)
        with static.auto_compile(name == "compiled"):
            st = particle_filter(m, (1, init), {(0, "y"): ys[0]}, n, key=keys[0])
            mx.eval(st.log_weights)
            t0 = time.perf_counter()
            st = st.resample(key=keys[1]).step((2, init), {(1, "y"): ys[1]}, key=keys[2])
            mx.eval(st.log_weights, st.log_ml_accumulated)
            out[name] = (time.perf_counter() - t0) * 1e3
    return out


# ------------------------------------------------------------------ T-scaling
def _step_times(model: Any, wrapped: bool, t_max: int, n: int) -> list[float]:
    ys = _obs("lg", t_max)
    pre = ("chain",) if wrapped else ()

    def args(t: int) -> tuple[Any, ...]:
        return (t,) if wrapped else (t, X0)

    keys = mx.random.split(mx.random.key(0), 2 * t_max + 2)
    state = particle_filter(model, args(1), {(*pre, 0, "y"): ys[0]}, n, key=keys[0])
    mx.eval(state.log_weights)
    out = [0.0]
    for t in range(1, t_max):
        t0 = time.perf_counter()
        state = state.resample(key=keys[2 * t])
        state = state.step(args(t + 1), {(*pre, t, "y"): ys[t]}, key=keys[2 * t + 1])
        mx.eval(state.log_weights, state.log_ml_accumulated)
        out.append(time.perf_counter() - t0)
    return out


WINDOW = 40


def _windows(runs: list[list[float]], starts: list[int]) -> dict[int, float]:
    """Per window, the median step time of each run, minimum over the runs (ms)."""
    return {
        s: min(statistics.median(times[s : s + WINDOW]) for times in runs) * 1e3
        for s in starts
        if all(s + WINDOW <= len(times) for times in runs)
    }


# ------------------------------------------------------------------ run
VARIANTS = ("genmlx", "interpreted", "eager", "compiled", "keys", "same")


def _time(model: str, variant: str, n: int, steps: int) -> tuple[float, mx.array]:
    if variant == "genmlx":
        return _genmlx(model, n, steps)
    if variant == "interpreted":
        with static.auto_compile(False):
            return _genmlx(model, n, steps)
    return _hand(model, n, steps, variant)


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    ns = sizes or ([1000, 10000] if quick else [1000, 10000, 100000])
    steps = 10 if quick else 30
    reps = 2 if quick else 5
    rates = []
    same_numbers = {}
    for model in ("hmm", "lg"):
        for n in ns:
            for v in VARIANTS:  # warm up (compiles)
                _time(model, v, n, 3)
            best = dict.fromkeys(VARIANTS, math.inf)
            for _ in range(reps):
                for v in VARIANTS:
                    dt, lw = _time(model, v, n, steps)
                    best[v] = min(best[v], dt)
                    if v == "genmlx":
                        lw_g = lw
                    if v == "same":
                        lw_s = lw
            same_numbers[f"{model}-{n}"] = bool(mx.array_equal(lw_g, lw_s).item())
            row: dict[str, Any] = {"model": model, "N": n}
            for v in VARIANTS:
                row[f"{v}_steps_per_s"] = (steps - 1) / best[v]
            row["ratio"] = best["genmlx"] / best["eager"]
            row["ratio_compiled"] = best["genmlx"] / best["compiled"]
            row["ratio_same"] = best["genmlx"] / best["same"]
            rates.append(row)
    prims = {}
    first = {}
    for model in ("hmm", "lg"):
        prims[model] = _primitives(model, ns[0])
        first[model] = _first_step_ms(model, ns[0])
    t_max = 200 if quick else 1000
    starts = [10, 100, t_max - WINDOW]
    scaling_cols: dict[str, dict[int, float]] = {}
    runs = 1 if quick else 3
    for name, model, wrapped in (("unfold", LG, False), ("gen", lg_wrapped, True)):
        scaling_cols[f"compiled_{name}_ms"] = _windows(
            [_step_times(model, wrapped, t_max, 1000) for _ in range(runs)], starts
        )
    with static.auto_compile(False):
        scaling_cols["interpreted_unfold_ms"] = _windows(
            [_step_times(LG, False, t_max, 1000)], starts
        )
        scaling_cols["interpreted_gen_ms"] = _windows(
            [_step_times(lg_wrapped, True, min(t_max, 400), 1000)], starts
        )
    scaling = [{"t": s, **{k: v.get(s) for k, v in scaling_cols.items()}} for s in starts]
    flat = scaling_cols["compiled_unfold_ms"]
    return {
        "name": "smc_filter",
        "device": str(mx.default_device()),
        "fusion": fusion_enabled(),
        "steps": steps,
        "reps": reps,
        "rates": rates,
        "same_numbers": same_numbers,
        "primitives": prims,
        "primitives_n": ns[0],
        "first_step_ms": first,
        "t_max": t_max,
        "scaling": scaling,
        "flatness": flat[starts[-1]] / flat[starts[0]],
    }


# ------------------------------------------------------------------ table
def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def table(result: dict[str, Any]) -> str:
    fused = "on" if result.get("fusion") else "off (GenMLX's CPU default)"
    lines = [
        f"Steps per second ({result['steps']} filter steps, systematic resampling before "
        f"every step, best of {result.get('reps', 3)}; kernel fusion {fused}). The "
        "hand-written columns: eager, compiled, compiled with GenMLX's per-particle keys, "
        "and compiled computing GenMLX's exact numbers (keys, `genmlx.dists`, trace "
        "score). **ratio** = GenMLX time / hand-written eager time (target ≤ 1.2); the "
        "last two columns divide by the compiled hand-written step and by the "
        "same-numbers step.",
        "",
        "| model | N | GenMLX | GenMLX interpreted | hand-written eager | hand-written compiled "
        "| + GenMLX's keys | same numbers | **ratio** | vs compiled | vs same numbers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"hmm": "HMM (3 states)", "lg": "linear-Gaussian"}
    for r in result["rates"]:
        lines.append(
            f"| {names[r['model']]} | {r['N']:,} | {r['genmlx_steps_per_s']:,.0f} "
            f"| {r['interpreted_steps_per_s']:,.0f} | {r['eager_steps_per_s']:,.0f} "
            f"| {r['compiled_steps_per_s']:,.0f} | {r['keys_steps_per_s']:,.0f} "
            f"| {r['same_steps_per_s']:,.0f} "
            f"| **{r['ratio']:.2f}×** | {r['ratio_compiled']:.2f}× | {r['ratio_same']:.2f}× |"
        )
    same = result["same_numbers"]
    lines += [
        "",
        "The \"same numbers\" step's log weights equal GenMLX's bit for bit: "
        + ", ".join(f"{k} {'yes' if v else '**no**'}" for k, v in same.items())
        + ".",
        "",
        f"MLX primitives per compiled step (N = {result['primitives_n']:,}; GenMLX's "
        "program also computes the trace score and the step's trace, which MLX evaluates "
        "only when read):",
        "",
        "| model | hand-written | + GenMLX's keys | same numbers (weights and state only) "
        "| GenMLX (weights and state only) |",
        "|---|---:|---:|---:|---:|",
    ]
    for m, p in result["primitives"].items():
        lines.append(
            f"| {names[m]} | {p['hand']} | {p['keys']} | {p['same']} ({p['same_needed']}) "
            f"| {p['genmlx']} ({p['genmlx_needed']}) |"
        )
    fs = result.get("first_step_ms", {})
    if fs:
        lines += [
            "",
            "First filter step (GenMLX analyses the kernel, traces and compiles the program; "
            f"N = {result['primitives_n']:,}): "
            + "; ".join(
                f"{names[m]} {v['compiled']:.0f} ms (interpreted step {v['interpreted']:.1f} ms)"
                for m, v in fs.items()
            )
            + ".",
        ]
    lines += [
        "",
        f"Cost of one filter step (resample + step + eval; median over {WINDOW} steps from "
        "t, best of 3 runs for the compiled path), linear-Gaussian, N = 1000 particles (ms):",
        "",
        "| step t | compiled, Unfold model | compiled, @gen around the Unfold "
        "| interpreted, Unfold model | interpreted, @gen around the Unfold |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in result["scaling"]:
        lines.append(
            f"| {r['t']} | {_ms(r['compiled_unfold_ms'])} | {_ms(r['compiled_gen_ms'])} "
            f"| {_ms(r['interpreted_unfold_ms'])} | {_ms(r['interpreted_gen_ms'])} |"
        )
    lines += [
        "",
        f"Compiled path: t({result['scaling'][-1]['t']}) / t({result['scaling'][0]['t']}) = "
        f"**{result['flatness']:.2f}** (flat ≈ 1). The interpreted @gen run stops at "
        "t = 400 (— beyond).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    res = run(quick=True)
    print(json.dumps(res, indent=2, default=str))
    print(table(res))
