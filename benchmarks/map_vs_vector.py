"""``Map`` over n elements vs the same model with one vector-valued choice vs hand MLX.

Model (a one-parameter regression): ``slope ~ N(0, 1)``; ``y_i ~ N(slope·x_i, 0.5)``
for ``x = linspace(-1, 1, n)``, data drawn with slope 1.5. Three formulations:

* **map** — ``Map(point)(xs, broadcast(slope)) @ "data"`` where the kernel
  ``point(x, s)`` draws ``normal(s·x, 0.5) @ "y"``: choices at ``("data", i, "y")``
  (the global ``slope`` is passed to the kernel as a second mapped argument, broadcast
  to ``[n]``);
* **vector** — ``normal(slope·xs, 0.5) @ "ys"``: one choice of shape ``[n]``;
* **hand** — hand-written MLX computing the same samples / log densities (no trace).

Operations, each unbatched and for P = 100 particles (``vsimulate`` / ``vgenerate`` /
batched ``assess``):

* ``simulate``;
* ``generate`` with every ``y`` constrained (the constraint map is built once, outside
  the timing; the weight is the likelihood at a prior-drawn slope);
* ``assess`` of a complete choice map (P = 100: a batched choice map with P slopes and
  the same data under every particle).

Every timed call ends with ``genmlx.core.evaluate`` of everything it returned (the
trace, weights); MLX's CPU backend, interpreted (no ``mx.compile``). Reported: median
over repetitions, the three formulations interleaved round by round; calls that take
longer than ~2 s are run fewer times (the first call is then counted). Also timed:
building the ``(i, "y")`` constraint map for Map (with ``choicemap({...})`` as a user
writes it, and with nested ``ChoiceMap`` constructors), evaluated, and
``trace.get_choices()`` on a simulated trace.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from genmlx.combinators.map import Map
from genmlx.core import ChoiceMap, choicemap, evaluate, gen
from genmlx.dists import normal

SIGMA = 0.5
TRUE_SLOPE = 1.5
P = 100
_LOG_SIGMA = math.log(SIGMA)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
SLOW_S = 2.0  # calls slower than this are repeated fewer times
BUDGET_S = 12.0  # rough time allowed per (variant, size) measurement


@gen
def point(x: mx.array, s: mx.array) -> Any:
    return normal(s * x, SIGMA) @ "y"


POINTS = Map(point)


@gen
def map_model(xs: mx.array) -> Any:
    slope = normal(0.0, 1.0) @ "slope"
    return POINTS(xs, mx.broadcast_to(slope, xs.shape)) @ "data"


@gen
def vector_model(xs: mx.array) -> Any:
    slope = normal(0.0, 1.0) @ "slope"
    return normal(slope * xs, SIGMA) @ "ys"


# ---------------------------------------------------------------- hand-written MLX
def _logpdf(x: mx.array, mu: Any, sigma: float) -> mx.array:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - _HALF_LOG_2PI


def hand_simulate(key: mx.array, xs: mx.array, p: int | None) -> Any:
    k1, k2 = mx.random.split(key)
    shape = () if p is None else (p,)
    slope = mx.random.normal(shape, key=k1)
    mean = slope[..., None] * xs
    ys = mean + SIGMA * mx.random.normal(mean.shape, key=k2)
    score = _logpdf(slope, 0.0, 1.0) + mx.sum(_logpdf(ys, mean, SIGMA), axis=-1)
    return slope, ys, score


def hand_generate(key: mx.array, xs: mx.array, ys: mx.array, p: int | None) -> Any:
    shape = () if p is None else (p,)
    slope = mx.random.normal(shape, key=key)
    w = mx.sum(_logpdf(ys, slope[..., None] * xs, SIGMA), axis=-1)
    return slope, _logpdf(slope, 0.0, 1.0) + w, w


def hand_assess(xs: mx.array, slope: mx.array, ys: mx.array) -> mx.array:
    return _logpdf(slope, 0.0, 1.0) + mx.sum(_logpdf(ys, slope[..., None] * xs, SIGMA), axis=-1)


# ---------------------------------------------------------------- choice maps
def map_constraints_choicemap(ys: mx.array) -> ChoiceMap:
    """The (i, "y") constraints as a user writes them."""
    return choicemap({("data", i, "y"): ys[i] for i in range(ys.shape[0])})


def map_constraints_direct(ys: mx.array, batch_shape: tuple[int, ...] = ()) -> ChoiceMap:
    """The same map from nested constructors (linear time; ``ys`` element axis first)."""
    b = batch_shape
    elems = {i: ChoiceMap(None, {"y": ChoiceMap(ys[i])}, b) for i in range(ys.shape[0])}
    return ChoiceMap(None, {"data": ChoiceMap(None, elems, b)}, b)


# ---------------------------------------------------------------- timing
def _interleaved(fns: dict[str, Callable[[int], Any]], reps: int) -> dict[str, float]:
    """Median seconds of each ``fn(r)``, interleaved round by round; slow ones fewer times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    want: dict[str, int] = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        fn(-1)  # warm up
        dt = time.perf_counter() - t0
        if dt > SLOW_S:  # one-off costs are negligible at this scale: count the call
            times[k].append(dt)
        want[k] = max(1, min(reps, int(BUDGET_S / max(dt, 1e-9))))
    for r in range(reps):
        for k, fn in fns.items():
            if len(times[k]) >= want[k]:
                continue
            t0 = time.perf_counter()
            fn(r)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(ts) for k, ts in times.items()}


class _Case:
    def __init__(self, n: int) -> None:
        self.n = n
        self.xs = mx.linspace(-1.0, 1.0, n)
        self.ys = TRUE_SLOPE * self.xs + SIGMA * mx.random.normal((n,), key=mx.random.key(1))
        slopes = 1.5 + 0.1 * mx.random.normal((P,), key=mx.random.key(2))
        self.slopes = slopes
        self.ys_p = mx.broadcast_to(self.ys, (P, n))
        mx.eval(self.xs, self.ys, self.slopes, self.ys_p)
        # constraint / choice maps, built once outside the timings
        self.map_obs = map_constraints_direct(self.ys)
        self.vec_obs = choicemap({"ys": self.ys})
        self.map_full = self.map_obs.set("slope", mx.array(TRUE_SLOPE))
        self.vec_full = self.vec_obs.set("slope", mx.array(TRUE_SLOPE))
        ysp_t = mx.transpose(self.ys_p)  # [n, P]: element i's P values
        self.map_full_p = map_constraints_direct(ysp_t, (P,)).set("slope", slopes)
        self.vec_full_p = choicemap({"ys": self.ys_p, "slope": slopes}, batch_shape=(P,))
        evaluate(self.map_obs, self.map_full, self.map_full_p, self.vec_full_p)

    def ops(self, op: str, p: int | None) -> dict[str, Callable[[int], Any]]:
        xs, args = self.xs, (self.xs,)

        def key(r: int) -> mx.array:
            return mx.random.key(1000 + r)

        if op == "simulate" and p is None:
            return {
                "map": lambda r: evaluate(map_model.simulate(args, key=key(r))),
                "vector": lambda r: evaluate(vector_model.simulate(args, key=key(r))),
                "hand": lambda r: mx.eval(hand_simulate(key(r), xs, None)),
            }
        if op == "simulate":
            return {
                "map": lambda r: evaluate(map_model.vsimulate(args, P, key=key(r))),
                "vector": lambda r: evaluate(vector_model.vsimulate(args, P, key=key(r))),
                "hand": lambda r: mx.eval(hand_simulate(key(r), xs, P)),
            }
        if op == "generate" and p is None:
            return {
                "map": lambda r: evaluate(map_model.generate(args, self.map_obs, key=key(r))),
                "vector": lambda r: evaluate(vector_model.generate(args, self.vec_obs, key=key(r))),
                "hand": lambda r: mx.eval(hand_generate(key(r), xs, self.ys, None)),
            }
        if op == "generate":
            return {
                "map": lambda r: evaluate(map_model.vgenerate(args, self.map_obs, P, key=key(r))),
                "vector": lambda r: evaluate(
                    vector_model.vgenerate(args, self.vec_obs, P, key=key(r))
                ),
                "hand": lambda r: mx.eval(hand_generate(key(r), xs, self.ys, P)),
            }
        if op == "assess" and p is None:
            s = mx.array(TRUE_SLOPE)
            return {
                "map": lambda r: evaluate(map_model.assess(args, self.map_full)),
                "vector": lambda r: evaluate(vector_model.assess(args, self.vec_full)),
                "hand": lambda r: mx.eval(hand_assess(xs, s, self.ys)),
            }
        return {
            "map": lambda r: evaluate(map_model.assess(args, self.map_full_p)),
            "vector": lambda r: evaluate(vector_model.assess(args, self.vec_full_p)),
            "hand": lambda r: mx.eval(hand_assess(xs, self.slopes, self.ys_p)),
        }

    def check(self) -> dict[str, float]:
        """The three formulations give the same log density (unbatched and batched)."""
        s = mx.array(TRUE_SLOPE)
        out = {
            "map": float(map_model.assess(self.args, self.map_full)[0].item()),
            "vector": float(vector_model.assess(self.args, self.vec_full)[0].item()),
            "hand": float(hand_assess(self.xs, s, self.ys).item()),
        }
        lp = [
            map_model.assess(self.args, self.map_full_p)[0],
            vector_model.assess(self.args, self.vec_full_p)[0],
            hand_assess(self.xs, self.slopes, self.ys_p),
        ]
        out["batched_max_abs_diff"] = max(
            float(mx.max(mx.abs(lp[0] - lp[2])).item()), float(mx.max(mx.abs(lp[1] - lp[2])).item())
        )
        return out

    @property
    def args(self) -> tuple[mx.array]:
        return (self.xs,)

    def extras(self, reps: int) -> dict[str, float]:
        """Building the (i, "y") constraints; ``get_choices`` of simulated traces."""
        ys = self.ys

        def gc(model: Any, p: int | None) -> Callable[[int], Any]:
            def f(r: int) -> Any:
                k = mx.random.key(r + 5)
                tr = model.simulate(self.args, key=k) if p is None else model.vsimulate(
                    self.args, P, key=k
                )
                evaluate(tr)
                t0 = time.perf_counter()
                evaluate(tr.get_choices())
                return time.perf_counter() - t0

            return f

        t = _interleaved(
            {
                "build_map_choicemap": lambda r: evaluate(map_constraints_choicemap(ys)),
                "build_map_direct": lambda r: evaluate(map_constraints_direct(ys)),
                "build_vector": lambda r: evaluate(choicemap({"ys": ys})),
            },
            reps,
        )
        out = {k: v * 1e3 for k, v in t.items()}
        # get_choices: time only the call (the simulate before it is not counted)
        for name, model in (("map", map_model), ("vector", vector_model)):
            for p in (None, P):
                ts = [gc(model, p)(r) for r in range(max(3, reps // 2))]
                out[f"get_choices_{name}_{'p' if p else '1'}"] = statistics.median(ts) * 1e3
        return out


OPS = ("simulate", "generate", "assess")


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    if sizes is None:
        sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    reps = 3 if quick else 9
    rows = []
    for n in sizes:
        case = _Case(n)
        row: dict[str, Any] = {"n": n, "check": case.check()}
        for op in OPS:
            for p in (None, P):
                t = _interleaved(case.ops(op, p), reps)
                row[f"{op}_{'p' if p else '1'}"] = {
                    "map_ms": t["map"] * 1e3,
                    "vector_ms": t["vector"] * 1e3,
                    "hand_ms": t["hand"] * 1e3,
                    "map_over_vector": t["map"] / t["vector"],
                    "vector_over_hand": t["vector"] / t["hand"],
                }
        row["extras_ms"] = case.extras(reps)
        rows.append(row)
    return {
        "name": "map_vs_vector",
        "description": "Map over n elements vs one vector-valued choice vs hand MLX, "
        "regression y_i ~ N(slope*x_i, 0.5)",
        "device": str(mx.default_device()),
        "particles": P,
        "reps": reps,
        "rows": rows,
    }


def _fmt(ms: float) -> str:
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def table(result: dict[str, Any]) -> str:
    p = result.get("particles", P)
    lines = [
        f"Median of up to {result.get('reps', '?')} runs (ms); P = {p} particles for the batched "
        "rows.",
        "",
        "| n | operation | Map (ms) | vector (ms) | hand MLX (ms) | Map / vector "
        "| vector / hand |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "simulate_1": "simulate",
        "simulate_p": f"vsimulate, P = {p}",
        "generate_1": "generate, all y constrained",
        "generate_p": f"vgenerate, P = {p}",
        "assess_1": "assess",
        "assess_p": f"assess, batched P = {p}",
    }
    for r in result["rows"]:
        for k, label in names.items():
            m = r[k]
            lines.append(
                f"| {r['n']:.0e} | {label} | {_fmt(m['map_ms'])} | {_fmt(m['vector_ms'])} | "
                f"{_fmt(m['hand_ms'])} | **{m['map_over_vector']:.1f}** | "
                f"**{m['vector_over_hand']:.1f}** |"
            )
    lines += [
        "",
        "Building the constraints (once, outside the timings above) and reading choices back "
        "(ms):",
        "",
        "| n | Map: `choicemap({(\"data\", i, \"y\"): ys[i]})` | Map: nested `ChoiceMap(...)` "
        "| vector: `choicemap({\"ys\": ys})` | Map `get_choices()` | vector `get_choices()` "
        f"| Map `get_choices()`, P = {p} | vector `get_choices()`, P = {p} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        e = r["extras_ms"]
        lines.append(
            f"| {r['n']:.0e} | {_fmt(e['build_map_choicemap'])} | {_fmt(e['build_map_direct'])} "
            f"| {_fmt(e['build_vector'])} | {_fmt(e['get_choices_map_1'])} "
            f"| {_fmt(e['get_choices_vector_1'])} | {_fmt(e['get_choices_map_p'])} "
            f"| {_fmt(e['get_choices_vector_p'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    res = run(quick=True)
    print(json.dumps(res, indent=2))
    print(table(res))
