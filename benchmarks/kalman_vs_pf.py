"""Kalman filter against particle filters: accuracy per second.

**Linear-Gaussian.** ``x_t ~ N(0.9 x_{t−1}, 1)``, ``y_t ~ N(x_t, 0.5)``, ``T`` steps, an
``Unfold`` model. ``genmlx.infer.kalman_filter`` gives the exact log evidence, filtered
means and smoothed means (one call: structure detection, the filter and the smoother);
``genmlx.infer.particle_filter`` (bootstrap, resampling when ESS < N/2) estimates them.
For each N: the wall time of one filter, the RMS error of ``log Ẑ`` over repetitions,
and the RMS error of the filtered means — against the Kalman answer.

**Switching linear-Gaussian.** ``r_t ~ Bernoulli(0.1)``,
``x_t ~ N(0.9 x_{t−1} + 1.5 r_t, 1)``, ``y_t ~ N(x_t, 0.2)``: no exact filter, but the
Kalman step is exact given the regimes. ``rao_blackwellized_particle_filter``
(particles over ``r``, a Kalman belief over ``x`` in each) against the bootstrap filter
over ``(r, x)``; the reference evidence is the Rao-Blackwellised filter's with 20 000
particles.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.combinators import Unfold
from genmlx.core import choicemap, gen
from genmlx.dists import bernoulli, normal
from genmlx.infer import kalman_filter, particle_filter, rao_blackwellized_particle_filter


@gen
def lg(t: Any, x: Any) -> Any:
    x = normal(0.9 * x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


@gen
def switching(t: Any, x: Any) -> Any:
    r = bernoulli(0.1) @ "r"
    x = normal(0.9 * x + mx.where(r, 1.5, 0.0), 1.0) @ "x"
    normal(x, 0.2) @ "y"
    return x


LG, SW = Unfold(lg), Unfold(switching)
X0 = mx.array(0.0)


def _data(model: Any, T: int, seed: int) -> list[float]:
    tr = model.simulate((T, X0), key=mx.random.key(seed))
    return [float(tr[(t, "y")]) for t in range(T)]


def _pf(model: Any, ys: list[float], n: int, seed: int) -> tuple[float, np.ndarray, float]:
    keys = mx.random.split(mx.random.key(seed), 2 * len(ys) + 1)
    t0 = time.perf_counter()
    st = particle_filter(model, (1, X0), {(0, "y"): ys[0]}, n, key=keys[0])
    means = []
    for t in range(len(ys)):
        if t > 0:
            st = st.maybe_resample(n / 2, key=keys[2 * t - 1])
            st = st.step((t + 1, X0), {(t, "y"): ys[t]}, key=keys[2 * t])
        w = st.normalized_weights()
        means.append(mx.sum(w * st.traces[(t, "x")]))
        mx.eval(st.log_weights, means[-1])
    lml = float(st.log_ml_estimate)
    return lml, np.array([float(m) for m in means]), time.perf_counter() - t0


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    T = 30 if quick else 100
    reps = 3 if quick else 8
    ys = _data(LG, T, 1)
    obs = choicemap({(t, "y"): ys[t] for t in range(T)})
    kalman_filter(LG, (T, X0), obs)  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        kf = kalman_filter(LG, (T, X0), obs)
        mx.eval(kf.log_ml, kf.smoothed_means)
        times.append(time.perf_counter() - t0)
    k_time = statistics.median(times)
    k_lml = float(kf.log_ml)
    k_means = np.asarray(kf.filtered_means)[:, 0]
    rows = [
        {
            "method": "kalman_filter (exact)",
            "N": None,
            "seconds": k_time,
            "rmse_log_ml": 0.0,
            "rmse_filtered_mean": 0.0,
        }
    ]
    for n in sizes or ([100, 1000] if quick else [100, 1000, 10000]):
        _pf(LG, ys[:3], n, 0)  # warm-up
        out = [_pf(LG, ys, n, 100 + r) for r in range(reps)]
        rows.append(
            {
                "method": "particle_filter (bootstrap)",
                "N": n,
                "seconds": statistics.median(o[2] for o in out),
                "rmse_log_ml": math.sqrt(statistics.fmean((o[0] - k_lml) ** 2 for o in out)),
                "rmse_filtered_mean": math.sqrt(
                    statistics.fmean(float(np.mean((o[1] - k_means) ** 2)) for o in out)
                ),
            }
        )
    # switching model: RBPF vs bootstrap
    Ts = 20 if quick else 50
    ys_s = _data(SW, Ts, 2)
    obs_s = choicemap({(t, "y"): ys_s[t] for t in range(Ts)})
    ref = float(
        rao_blackwellized_particle_filter(
            SW, (Ts, X0), obs_s, 2000 if quick else 20000, key=mx.random.key(0)
        ).log_ml_estimate
    )
    sw_rows = []
    for n in [100, 1000] if quick else [100, 1000, 5000]:
        rb, pf = [], []
        for r in range(reps):
            t0 = time.perf_counter()
            v = float(
                rao_blackwellized_particle_filter(
                    SW, (Ts, X0), obs_s, n, key=mx.random.key(10 + r)
                ).log_ml_estimate
            )
            rb.append((v, time.perf_counter() - t0))
            lml, _, sec = _pf(SW, ys_s, n, 200 + r)
            pf.append((lml, sec))
        for name, res in (
            ("rao_blackwellized_particle_filter", rb),
            ("particle_filter (bootstrap)", pf),
        ):
            sw_rows.append(
                {
                    "method": name,
                    "N": n,
                    "seconds": statistics.median(s for _, s in res),
                    "rmse_log_ml": math.sqrt(statistics.fmean((v - ref) ** 2 for v, _ in res)),
                    "sd_log_ml": statistics.pstdev(v for v, _ in res),
                }
            )
    return {
        "name": "kalman_vs_pf",
        "device": str(mx.default_device()),
        "T": T,
        "reps": reps,
        "linear_gaussian": rows,
        "switching_T": Ts,
        "switching_reference": ref,
        "switching": sw_rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"Linear-Gaussian model, T = {result['T']} steps; errors against the exact Kalman answer "
        f"(RMS over {result['reps']} runs):",
        "",
        "| method | N | seconds | RMS error of log Ẑ | RMS error of filtered means |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["linear_gaussian"]:
        n = "—" if r["N"] is None else f"{r['N']:,}"
        lines.append(
            f"| {r['method']} | {n} | {r['seconds']:.3f} | {r['rmse_log_ml']:.3f} | "
            f"{r['rmse_filtered_mean']:.4f} |"
        )
    lines += [
        "",
        f"Switching linear-Gaussian model, T = {result['switching_T']}; log Ẑ against the "
        f"reference {result['switching_reference']:.2f}:",
        "",
        "| method | N | seconds | RMS error of log Ẑ | sd of log Ẑ |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["switching"]:
        lines.append(
            f"| {r['method']} | {r['N']:,} | {r['seconds']:.3f} | {r['rmse_log_ml']:.3f} | "
            f"{r['sd_log_ml']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    res = run(quick=True)
    print(json.dumps(res, indent=2))
    print(table(res))
