"""Exact enumeration: time against model size.

Three families of models, each solved exactly by ``genmlx.infer.enumerate_posterior``
(variable elimination over tensor axes), timed end to end (structure discovery, the
broadcast check, elimination, and the marginals of every choice by one backward pass),
median of 3 after one warm-up:

* **chain** — a 3-state HMM written as a ``@gen`` loop with ``T`` addressed categorical
  choices and Gaussian observations: ``T`` enumeration axes, cost ``O(T K²)``
  (``K^T`` assignments: 3^64 ≈ 3.4e30 at T = 64). Next to it,
  ``hmm_forward_backward`` on the same model as an ``Unfold`` (one kernel, vectorised
  over the steps) and, for T ≤ 10, a brute-force pass over all ``3^T`` assignments as
  one broadcast numpy computation.
* **plate** — a 3-component mixture with ``N`` points, the assignments one vector
  choice: one enumeration axis, element by element (cost ``O(N K)``).
* **network** — ``D`` binary causes feeding one observed noisy-OR effect plus a
  private observed child each: a factor over all ``D`` causes, cost ``2^D``.
"""

from __future__ import annotations

import itertools
import statistics
import time
from functools import partial
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.combinators import Unfold
from genmlx.core import choicemap, gen
from genmlx.dists import bernoulli, categorical, normal
from genmlx.infer import enumerate_posterior, hmm_forward_backward

TR = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
MU = np.array([-1.0, 0.0, 1.5])
TRM, MUM = mx.array(TR), mx.array(MU)


def _chain_model(T: int) -> Any:
    @gen
    def chain():
        z = mx.array(0)
        for t in range(T):
            z = categorical(TRM[z]) @ (t, "z")
            normal(MUM[z], 0.7) @ (t, "y")

    return chain


@gen
def hmm_kernel(t: Any, z: Any) -> Any:
    z = categorical(TRM[z]) @ "z"
    normal(MUM[z], 0.7) @ "y"
    return z


HMM = Unfold(hmm_kernel)


def _brute(ys: np.ndarray) -> float:
    from scipy.stats import norm

    T = len(ys)
    paths = np.array(list(itertools.product(range(3), repeat=T)))
    lp = np.log(TR[0][paths[:, 0]]) + norm.logpdf(ys[0], MU[paths[:, 0]], 0.7)
    for t in range(1, T):
        lp = (
            lp + np.log(TR[paths[:, t - 1], paths[:, t]]) + norm.logpdf(ys[t], MU[paths[:, t]], 0.7)
        )
    m = lp.max()
    return float(m + np.log(np.exp(lp - m).sum()))


W = mx.array([0.3, 0.3, 0.4])
MUS = mx.array([-2.0, 0.0, 3.0])


@gen
def mixture(n: int) -> None:
    z = categorical(mx.broadcast_to(W, (n, 3))) @ "z"
    normal(MUS[z], 1.0) @ "y"


def _network(d: int) -> Any:
    @gen
    def net():
        miss = mx.array(1.0)
        for i in range(d):
            c = bernoulli(0.2) @ ("cause", i)
            miss = miss * mx.where(c, 0.6, 1.0)
            bernoulli(mx.where(c, 0.7, 0.1)) @ ("marker", i)
        bernoulli(1.0 - 0.99 * miss) @ "effect"

    return net


def _solve(model: Any, args: tuple[Any, ...], obs: Any) -> None:
    mx.eval(enumerate_posterior(model, args, obs).log_ml)


def _hmm(T: int, obs: Any) -> None:
    mx.eval(hmm_forward_backward(HMM, (T, mx.array(0)), obs).log_ml)


def _time(fn: Any, reps: int = 3) -> float:
    fn()  # warm-up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    chain = []
    for T in sizes or ([4, 8, 16] if quick else [4, 8, 10, 16, 32, 64, 128]):
        ys = rng.normal(size=T).round(2)
        obs = choicemap({(t, "y"): float(ys[t]) for t in range(T)})
        model = _chain_model(T)
        enum_s = _time(partial(_solve, model, (), obs))
        hmm_s = _time(partial(_hmm, T, obs))
        lz = float(enumerate_posterior(model, (), obs).log_ml)
        row = {"T": T, "assignments": 3.0**T, "enumerate_s": enum_s, "hmm_s": hmm_s, "log_ml": lz}
        if T <= 10:
            row["brute_s"] = _time(partial(_brute, ys), reps=1)
            row["abs_err_vs_brute"] = abs(lz - _brute(ys))
        chain.append(row)
    plate = []
    for n in [10, 1000] if quick else [10, 100, 1000, 10000, 100000]:
        ys = mx.random.normal((n,), key=mx.random.key(n)) * 2.0
        s = _time(partial(_solve, mixture, (n,), {"y": ys}))
        plate.append({"N": n, "enumerate_s": s})
    network = []
    for d in [4, 8] if quick else [4, 8, 12, 16]:
        model = _network(d)
        obs = choicemap({"effect": True, **{("marker", i): bool(i % 2) for i in range(d)}})
        s = _time(partial(_solve, model, (), obs))
        network.append({"D": d, "table": 2**d, "enumerate_s": s})
    return {
        "name": "exact_enumeration",
        "device": str(mx.default_device()),
        "chain": chain,
        "plate": plate,
        "network": network,
    }


def _t(v: float | None) -> str:
    return "—" if v is None else (f"{v * 1e3:.1f}" if v < 10 else f"{v * 1e3:.0f}")


def table(result: dict[str, Any]) -> str:
    lines = [
        "HMM chain as a `@gen` loop (3 states, `T` categorical choices), milliseconds:",
        "",
        "| T | assignments | enumerate_posterior | hmm_forward_backward (Unfold) | brute force "
        "(numpy) | abs. error vs brute force |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["chain"]:
        err = f"{r['abs_err_vs_brute']:.1e}" if "abs_err_vs_brute" in r else "—"
        lines.append(
            f"| {r['T']} | {r['assignments']:.1e} | {_t(r['enumerate_s'])} | {_t(r['hmm_s'])} | "
            f"{_t(r.get('brute_s'))} | {err} |"
        )
    lines += [
        "",
        "Mixture with `N` points (one vector choice of assignments, a plate), milliseconds:",
        "",
        "| N | enumerate_posterior |",
        "|---:|---:|",
    ]
    lines += [f"| {r['N']:,} | {_t(r['enumerate_s'])} |" for r in result["plate"]]
    lines += [
        "",
        "Noisy-OR network with `D` binary causes (one factor over all of them), milliseconds:",
        "",
        "| D | table size | enumerate_posterior |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {r['D']} | {r['table']:,} | {_t(r['enumerate_s'])} |" for r in result["network"]]
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    res = run(quick=True)
    print(json.dumps(res, indent=2))
    print(table(res))
