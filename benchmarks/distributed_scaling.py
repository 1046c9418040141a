"""Weak and strong scaling of sharded importance sampling and SMC over processes.

Importance sampling (``importance_sampling(..., group=g)``) on the polynomial regression
of ``polyreg_is`` (3 latents, 50 observations): one call draws the particles, weighs
them and returns the global log-ML estimate (a maximum and a sum over processes). SMC
(``particle_filter(..., group=g)``) is a bootstrap filter on the linear-Gaussian
state-space model of ``smc_filter`` (``Unfold``), 20 steps with systematic resampling
before every step: global resampling (gather of the weights, particles moved only when
their ancestor lives on another process) and, for comparison, island resampling (no
particle moves). Times: IS per call, SMC per filter step (initialisation + 19 ×
(resample + step), divided by 20); each repetition starts after a barrier and counts as
long as its slowest process; the minimum over repetitions is reported.

* **strong scaling**: the total N is fixed and split over P processes; speed-up
  ``t₁ / t_P`` (ideal P);
* **weak scaling**: N per process is fixed (total ``P × N``); efficiency ``t₁ / t_P``
  (ideal 1).

``t₁`` is the one-process run of the same sharded code (a group of one process, no
communication); the unsharded call (``group=None``) is shown next to it.

    python benchmarks/run.py distributed_scaling          # launches 1 and 2 ring processes

``run`` starts the processes with ``mlx.launch`` (``--backend ring`` on the CPU). Set
``GENMLX_DIST_BACKEND=nccl`` and ``GENMLX_DIST_PROCS="1 2 4 8"`` on a multi-GPU machine
to launch one process per GPU with NCCL instead (the JSON records the device). A worker
can also be launched by hand, e.g.
``mlx.launch -n 4 --backend nccl -- python benchmarks/distributed_scaling.py --worker
--out res.json --sizes 1000000``, which writes that process count's measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx

from genmlx.combinators import Unfold
from genmlx.core import choicemap, gen
from genmlx.dists import normal
from genmlx.infer import importance_sampling, particle_filter

HERE = Path(__file__).resolve().parent

# ------------------------------------------------------------------ the models
NOISE = 0.05
XS = mx.linspace(0.0, 1.0, 50)
YS = 0.5 - 1.25 * XS + 2.0 * XS**2 + NOISE * mx.random.normal((50,), key=mx.random.key(42))
OBS = choicemap({"ys": YS})


@gen
def polyreg(xs: mx.array) -> Any:
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, NOISE) @ "ys"
    return a


@gen
def lg_kernel(t: int, x: Any) -> Any:
    x = normal(0.9 * x, 1.0) @ "x"
    normal(x, 0.5) @ "y"
    return x


LG = Unfold(lg_kernel)
X0 = mx.array(0.0)
T_STEPS = 20
LG_YS = [float(v) for v in mx.random.normal((T_STEPS,), key=mx.random.key(5)).tolist()]


# ------------------------------------------------------------------ one process's side
def _is_call(group: Any, n: int, key: mx.array) -> None:
    res = importance_sampling(polyreg, (XS,), OBS, n, key=key, group=group)
    mx.eval(res.log_ml_estimate, res.log_weights)


def _smc_call(group: Any, n: int, key: mx.array, mode: str = "global") -> None:
    keys = mx.random.split(key, 2 * T_STEPS)
    kw: dict[str, Any] = {} if group is None else {"group": group, "mode": mode}
    st = particle_filter(LG, (1, X0), {(0, "y"): LG_YS[0]}, n, key=keys[0], **kw)
    for t in range(1, T_STEPS):
        st = st.resample(key=keys[2 * t])
        st = st.step((t + 1, X0), {(t, "y"): LG_YS[t]}, key=keys[2 * t + 1])
        mx.eval(st.log_weights)
    mx.eval(st.log_ml_estimate)


def _barrier(group: Any) -> None:
    if group is not None and group.size() > 1:
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))


def _time(group: Any, fn: Callable[[], None], reps: int) -> float:
    """Seconds per call: min over repetitions of the slowest process's time."""
    fn()  # warm up
    best = math.inf
    for _ in range(reps):
        _barrier(group)
        t0 = time.perf_counter()
        fn()
        dt = mx.array([time.perf_counter() - t0])
        if group is not None and group.size() > 1:
            dt = mx.distributed.all_max(dt, group=group)
        best = min(best, float(dt.item()))
    return best


def worker(sizes_is: list[int], sizes_smc: list[int], reps: int) -> dict[str, Any]:
    """Measurements of this launch (all processes; rank 0's copy is written)."""
    group = mx.distributed.init()
    p = group.size()
    rows: list[dict[str, Any]] = []
    key = mx.random.key(0)
    for scaling in ("strong", "weak"):
        for n in sizes_is:
            total = n if scaling == "strong" else n * p
            t = _time(group, lambda total=total: _is_call(group, total, key), reps)
            row = {"algo": "IS", "scaling": scaling, "n_total": total, "p": p, "ms": t * 1e3}
            if p == 1:
                row["unsharded_ms"] = 1e3 * _time(
                    None, lambda total=total: _is_call(None, total, key), reps
                )
            rows.append(row)
        for n in sizes_smc:
            total = n if scaling == "strong" else n * p
            for mode in ("global", "island"):
                if mode == "island" and p == 1:
                    continue  # one island is the global filter
                t = _time(
                    group, lambda total=total, mode=mode: _smc_call(group, total, key, mode),
                    max(2, reps // 2),
                )
                row = {
                    "algo": "SMC" if mode == "global" else "SMC, islands",
                    "scaling": scaling,
                    "n_total": total,
                    "p": p,
                    "ms": t * 1e3 / T_STEPS,
                }
                if p == 1:
                    row["unsharded_ms"] = 1e3 / T_STEPS * _time(
                        None, lambda total=total: _smc_call(None, total, key), max(2, reps // 2)
                    )
                rows.append(row)
    return {"rows": rows, "device": str(mx.default_device()), "rank": group.rank()}


# ------------------------------------------------------------------ the launcher
def _free_port(n: int) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        try:
            for i in range(n):
                with socket.socket() as t:
                    t.bind(("127.0.0.1", start + i))
            return start
        except OSError:
            continue
    raise RuntimeError("no free ports")


def _launch(p: int, backend: str, args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "res.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(out), *args]
        if p > 1:  # one process needs no launcher (a group of one)
            launcher = Path(sys.executable).parent / "mlx.launch"
            extra = ["--starting-port", str(_free_port(p))] if backend == "ring" else []
            cmd = [str(launcher), "-n", str(p), "--backend", backend, *extra, "--", *cmd]
        subprocess.run(cmd, check=True)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    backend = os.environ.get("GENMLX_DIST_BACKEND", "ring")
    procs = [int(x) for x in os.environ.get("GENMLX_DIST_PROCS", "1 2").split()]
    if sizes:
        sizes_is, sizes_smc = sizes, sizes
    elif quick:
        sizes_is, sizes_smc = [10_000, 100_000], [2_000]
    else:
        sizes_is, sizes_smc = [10_000, 100_000, 1_000_000], [10_000, 100_000]
    reps = 3 if quick else 7
    args = [
        "--sizes-is", *map(str, sizes_is), "--sizes-smc", *map(str, sizes_smc),
        "--reps", str(reps),
    ]
    rows: list[dict[str, Any]] = []
    device = "?"
    load_before = os.getloadavg()[0]
    for p in procs:
        res = _launch(p, backend, args)
        rows += res["rows"]
        device = res["device"]
    return {
        "name": "distributed_scaling",
        "backend": backend,
        "processes": procs,
        "device": device,
        "rows": rows,
        "cpus": os.cpu_count(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    base = {(r["algo"].split(",")[0], r["scaling"], r["n_total"]): r for r in rows if r["p"] == 1}
    load = result.get("load_average")
    note = (
        f" Load average {load[0]} → {load[1]} on {result.get('cpus')} CPUs (shared machine)."
        if load else ""
    )

    def order(r: dict[str, Any]) -> tuple[Any, ...]:
        per = r["n_total"] // r["p"]
        return (r["scaling"] != "strong", r["algo"].split(",")[0] != "IS",
                r["n_total"] if r["scaling"] == "strong" else per, r["p"], r["algo"])

    rows = sorted(rows, key=order)
    lines = [
        f"Backend `{result.get('backend', 'ring')}`, processes {result.get('processes')}.{note}\n",
        "| algorithm | scaling | N total | processes | N per process | time (ms) "
        "| unsharded (ms) | speed-up | efficiency |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["p"]
        per = r["n_total"] // p
        algo0 = r["algo"].split(",")[0]
        if r["scaling"] == "strong":
            ref = base.get((algo0, "strong", r["n_total"]))
        else:
            ref = base.get((algo0, "weak", per))
        t1 = ref["ms"] if ref else float("nan")
        speed = t1 / r["ms"]
        eff = speed / p if r["scaling"] == "strong" else speed
        unsharded = f"{r['unsharded_ms']:.2f}" if "unsharded_ms" in r else ""
        lines.append(
            f"| {r['algo']} | {r['scaling']} | {r['n_total']:.0e} | {p} | {per:.0e} | "
            f"{r['ms']:.2f} | {unsharded} | {speed:.2f} | **{eff:.2f}** |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help="run one launch's measurements")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes-is", type=int, nargs="*", default=[100_000])
    ap.add_argument("--sizes-smc", type=int, nargs="*", default=[10_000])
    ap.add_argument("--sizes", type=int, nargs="*", help="both IS and SMC sizes")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    sizes_is = args.sizes or args.sizes_is
    sizes_smc = args.sizes or args.sizes_smc
    res = worker(sizes_is, sizes_smc, args.reps)
    if res["rank"] == 0:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
