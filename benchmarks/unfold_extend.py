"""Incremental ``Unfold`` extension: the cost of ``update`` adding one step, against T.

Model: a linear-Gaussian state-space kernel, ``x_t ~ N(A·x_{t-1}, Q)``, ``y_t ~ N(x_t,
R)`` (choices ``(t, "x")``, ``(t, "y")``), run by ``Unfold(kernel)(T, x0, A)``. A trace
of length T with every ``y`` observed is made with ``generate``; then we time, for
T = 10, 100, 1000 (interpreted, no ``mx.compile``; median over repetitions, the T values
interleaved round by round):

* **incremental**: ``update(trace, {(T, "y"): y_T}, (T + 1, x0, A), NoChange argdiffs)``
  — what a particle filter does each step. It runs the kernel once (the new step) and
  adds its score to the running total; we force evaluation of what the update computed
  with ``genmlx.core.evaluate(new_trace.steps[-1], new_trace.score, weight)`` (the
  other T steps are the old, already evaluated, step traces, reused as they are).
* **incremental, whole trace evaluated**: the same, but ``evaluate(new_trace, weight)``;
  this also walks the whole trace (an O(T) Python tree flatten of T step traces that
  costs no computation) — shown to separate that walk from the update itself.
* **naive**: the same extension as a full re-run, ``generate`` of the length-(T + 1)
  model with every choice constrained, evaluated with ``evaluate(trace, weight)``.

Reported: milliseconds per extension, ``t(1000) / t(10)`` for the incremental update
(flat ≈ 1) and the speedup naive / incremental at each T.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.combinators.unfold import Unfold
from genmlx.core import ChoiceMap, NoChange, choicemap, evaluate, gen
from genmlx.dists import normal

A, Q, R = 0.9, 1.0, 0.5
X0 = mx.array(0.0)


@gen
def lg_kernel(t: int, x: Any, a: float) -> Any:
    x = normal(a * x, Q) @ "x"
    normal(x, R) @ "y"
    return x


CHAIN = Unfold(lg_kernel)
NC = (NoChange, NoChange, NoChange)


def _observations(n: int) -> mx.array:
    return mx.random.normal((n,), key=mx.random.key(123))


class _Case:
    """One T: the length-T trace, the new observation and the naive reference's choices."""

    def __init__(self, n: int) -> None:
        ys = _observations(n + 1)
        obs = choicemap({(t, "y"): ys[t] for t in range(n)})
        self.n = n
        self.trace, _ = CHAIN.generate((n, X0, A), obs, key=mx.random.key(n))
        evaluate(self.trace)
        self.new_obs = choicemap({(n, "y"): ys[n]})
        self.args = (n + 1, X0, A)
        full = CHAIN.update(self.trace, self.new_obs, self.args, NC, key=mx.random.key(7))[0]
        self.all_choices: ChoiceMap = full.get_choices()
        evaluate(self.all_choices)

    def incremental(self, r: int) -> None:
        new, w, _, _ = CHAIN.update(
            self.trace, self.new_obs, self.args, NC, key=mx.random.key(r + 10)
        )
        evaluate(new.steps[-1], new.score, w)  # type: ignore[attr-defined]

    def incremental_whole(self, r: int) -> None:
        new, w, _, _ = CHAIN.update(
            self.trace, self.new_obs, self.args, NC, key=mx.random.key(r + 10)
        )
        evaluate(new, w)

    def naive(self, r: int) -> None:
        new, w = CHAIN.generate(self.args, self.all_choices, key=mx.random.key(r + 10))
        evaluate(new, w)


def _interleaved_median_ms(cases: list[_Case], method: str, reps: int) -> dict[int, float]:
    """Median time of ``case.<method>`` per case, the cases interleaved round by round
    (so that drifts of a shared machine hit every T alike)."""
    times: dict[int, list[float]] = {c.n: [] for c in cases}
    for c in cases:
        getattr(c, method)(-1)  # warm up
    for r in range(reps):
        for c in cases:
            fn: Callable[[int], None] = getattr(c, method)
            t0 = time.perf_counter()
            fn(r)
            times[c.n].append(time.perf_counter() - t0)
    return {n: statistics.median(ts) * 1e3 for n, ts in times.items()}


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or [10, 100, 1000]
    reps, naive_reps = (21, 3) if quick else (201, 7)
    cases = [_Case(n) for n in sizes]
    inc = _interleaved_median_ms(cases, "incremental", reps)
    whole = _interleaved_median_ms(cases, "incremental_whole", max(reps // 4, 5))
    naive = _interleaved_median_ms(cases, "naive", naive_reps)
    rows = [
        {
            "T": n,
            "incremental_ms": inc[n],
            "incremental_whole_eval_ms": whole[n],
            "naive_ms": naive[n],
            "speedup": naive[n] / inc[n],
        }
        for n in sizes
    ]
    first, last = rows[0], rows[-1]
    return {
        "name": "unfold_extend",
        "device": str(mx.default_device()),
        "reps": {"incremental": reps, "naive": naive_reps},
        "rows": rows,
        "flatness": {
            "from_T": first["T"],
            "to_T": last["T"],
            "incremental_ratio": last["incremental_ms"] / first["incremental_ms"],
            "naive_ratio": last["naive_ms"] / first["naive_ms"],
        },
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| T | incremental update (ms) | + whole-trace evaluate (ms) | naive re-run (ms) "
        "| speedup |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['T']} | {r['incremental_ms']:.3f} | {r['incremental_whole_eval_ms']:.3f} "
            f"| {r['naive_ms']:.2f} | **{r['speedup']:.0f}×** |"
        )
    fl = result["flatness"]
    lines.append("")
    lines.append(
        f"t(T={fl['to_T']}) / t(T={fl['from_T']}): incremental **{fl['incremental_ratio']:.2f}**"
        f" (flat ≈ 1), naive {fl['naive_ratio']:.0f}."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    res = run()
    print(json.dumps(res, indent=2))
    print(table(res))
