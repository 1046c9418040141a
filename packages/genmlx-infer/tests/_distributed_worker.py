"""Sharded inference against single-process runs (driven by ``test_distributed.py``).

    python _distributed_worker.py reference REF.npz
    mlx.launch -n 2 --backend ring python _distributed_worker.py compare REF.npz REPORT_DIR

``reference`` runs every case in one plain process: the unsharded functions
(``group=None``) for importance sampling, SMC and MH chains, and the sharded code on a
one-process group for the per-chain kernels and the pooled warm-up (whose single-process
run *is* the one-process group). ``compare`` runs the same cases sharded over the
launched processes, gathers what each process holds and checks it against the
reference: particles, ancestors, chains and adapted step sizes bit for bit; log-ML
estimates and ESS up to float32 rounding of the order of summation (2e-5). Island-mode
SMC is checked for unbiasedness against the Kalman filter. Every process writes
``REPORT_DIR/rank<r>.json`` and exits 1 if a check failed.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.combinators import Unfold
from genmlx.core import gen, select
from genmlx.core.edit import SelectionEdit
from genmlx.dists import bernoulli, categorical, normal
from genmlx.infer import (
    chain,
    effective_sample_size_weights,
    ess_bulk,
    hmc,
    importance_resampling,
    importance_sampling,
    mh,
    nuts,
    nuts_warmup,
    particle_filter,
    rhat,
    summary,
)
from genmlx.infer.distributed import _exchange, vgenerate

MOVES = {"exchanges": 0}
_gather_packed = _exchange.gather_packed


def _counting_gather_packed(*args: Any, **kwargs: Any) -> Any:
    MOVES["exchanges"] += 1
    return _gather_packed(*args, **kwargs)


_exchange.gather_packed = _counting_gather_packed  # count exchanges that move particles

# ---------------------------------------------------------------------- models
XS = mx.linspace(-2.0, 2.0, 12)
YS = 0.7 * XS + 0.3 + 0.4 * mx.random.normal((12,), key=mx.random.key(99))
OBS = {"ys": YS}


@gen
def regression(xs: mx.array) -> None:
    slope = normal(0.0, 1.0) @ "slope"
    b = normal(0.0, 2.0) @ "b"
    normal(slope * xs + b, 0.5) @ "ys"


@gen
def slope_proposal() -> None:
    normal(0.6, 0.4) @ "slope"


LG_A, LG_Q, LG_R = 0.9, 0.7, 0.5
LG_YS = [0.4, 0.9, 1.6, 1.2, 0.3, -0.5, -0.9, -0.2]


@gen
def lg_kernel(t: int, x: mx.array) -> mx.array:
    x = normal(LG_A * x, LG_Q) @ "x"
    normal(x, LG_R) @ "y"
    return x


LG = Unfold(lg_kernel)
X0 = mx.array(0.0)


@gen
def lg_proposal(trace: Any, t: int, y: float) -> None:
    """``p(x_t | x_{t-1}, y_t)`` (the locally optimal proposal)."""
    prec = 1.0 / LG_Q**2 + 1.0 / LG_R**2
    mean = (LG_A * trace[(t - 1, "x")] / LG_Q**2 + y / LG_R**2) / prec
    normal(mean, 1.0 / math.sqrt(prec)) @ (t, "x")


def kalman(ys: list[float]) -> float:
    """Exact ``log p(y_{0:T-1})`` (x_{-1} = 0, so x_0 ~ N(0, q²))."""
    m, v, ll = 0.0, 0.0, 0.0
    for y in ys:
        m, v = LG_A * m, LG_A**2 * v + LG_Q**2
        s = v + LG_R**2
        ll += -0.5 * (math.log(2 * math.pi * s) + (y - m) ** 2 / s)
        k = v / s
        m, v = m + k * (y - m), (1 - k) * v
    return ll


@gen
def growing(n: int) -> None:
    """A plain ``@gen`` model whose data grow with ``n`` (one more point per SMC step),
    with boolean and integer latents (particles of several dtypes move between
    processes)."""
    slope = normal(0.0, 1.0) @ "slope"
    shifted = bernoulli(0.3) @ "shifted"
    level = categorical(mx.array([0.2, 0.5, 0.3])) @ "level"
    offset = mx.where(shifted, 1.0, 0.0) + 0.2 * level.astype(mx.float32)
    for i in range(n):
        normal(slope * XS[i] + offset, 0.5) @ ("y", i)


def growing_run(group: Any, n: int) -> Any:
    keys = mx.random.split(mx.random.key(19), 3 * 6)
    kw: dict[str, Any] = {} if group is None else {"group": group}
    st = particle_filter(growing, (1,), {("y", 0): YS[0]}, n, key=keys[0], **kw)
    for t in range(1, 6):
        st = st.resample("stratified", key=keys[3 * t])
        st = st.step((t + 1,), {("y", t): YS[t]}, key=keys[3 * t + 1])
        st = st.rejuvenate(mh, select("slope"), key=keys[3 * t + 2])
    return st


N_IS, N_SMC, N_CHAINS = 101, 99, 7
SEL = select("slope", "b")


def shard(n: int, rank: int, size: int) -> slice:
    return slice((rank * n) // size, ((rank + 1) * n) // size)


# ---------------------------------------------------------------------- the cases
def smc_run(group: Any, n: int, key: mx.array, mode: str = "global") -> Any:
    """Resampling (systematic, residual, ESS-triggered), bootstrap and custom-proposal
    steps, an SMCP3 edit and MH rejuvenation."""
    keys = mx.random.split(key, 4 * len(LG_YS))
    kw: dict[str, Any] = {} if group is None else {"group": group, "mode": mode}
    st = particle_filter(LG, (1, X0), {(0, "y"): LG_YS[0]}, n, key=keys[0], **kw)
    for t in range(1, len(LG_YS)):
        k = keys[4 * t : 4 * t + 4]
        if t % 3 == 0:
            st = st.maybe_resample(n / 2, key=k[0])
        else:
            st = st.resample("residual" if t == 4 else "systematic", key=k[0])
        obs = {(t, "y"): LG_YS[t]}
        if t >= 5:
            st = st.step((t + 1, X0), obs, proposal=lg_proposal, proposal_args=(t, LG_YS[t]),
                         key=k[1])
        else:
            st = st.step((t + 1, X0), obs, key=k[1])
        if t == 3:
            st = st.edit(SelectionEdit(select((t - 1, "x"))), key=k[2])
        st = st.rejuvenate(mh, select((t, "x")), key=k[3])
    return st


def smc_arrays(st: Any) -> dict[str, np.ndarray]:
    xs = np.stack([np.asarray(st.traces[(t, "x")]) for t in range(len(LG_YS))], axis=1)
    return {
        "x": xs,
        "lw": np.asarray(st.log_weights),
        "acc": np.asarray(st.log_ml_accumulated),
        "lml": np.asarray(st.log_ml_estimate),
        "ess": np.asarray(st.ess()),
    }


def mh_kernel() -> Callable[..., Any]:
    return partial(mh, selection_or_proposal=SEL)


def hmc_kernel() -> Callable[..., Any]:
    return partial(hmc, selection=SEL, step_size=0.15, n_leapfrog=4)


def warmup(group: Any, pool: bool = True) -> Any:
    tr = vgenerate(regression, (XS,), OBS, N_CHAINS, key=mx.random.key(21), group=group)
    return nuts_warmup(
        tr, SEL, 40, key=mx.random.key(22), group=group, pool=pool, max_depth=4,
        init_buffer=8, term_buffer=8, base_window=10,
    )


def after_warmup(w: Any, group: Any) -> Any:
    k = partial(nuts, selection=SEL, step_size=w.step_size, mass=w.mass, max_depth=4)
    return chain(k, w.trace, 8, key=mx.random.key(23), addresses=["slope"], group=group)


def reference() -> dict[str, np.ndarray]:
    """Every case on one process."""
    out: dict[str, np.ndarray] = {}
    solo = mx.distributed.init()
    assert solo.size() == 1, "the reference runs in one plain process"
    res = importance_sampling(regression, (XS,), OBS, N_IS, key=mx.random.key(11))
    out["is_slope"], out["is_b"] = np.asarray(res.traces["slope"]), np.asarray(res.traces["b"])
    out["is_score"], out["is_lw"] = np.asarray(res.traces.score), np.asarray(res.log_weights)
    out["is_lml"] = np.asarray(res.log_ml_estimate)
    out["is_ess"] = np.asarray(effective_sample_size_weights(res.log_weights))
    res = importance_sampling(
        regression, (XS,), OBS, 64, slope_proposal, (), key=mx.random.key(12)
    )
    out["isq_slope"], out["isq_lw"] = np.asarray(res.traces["slope"]), np.asarray(res.log_weights)
    out["isq_lml"] = np.asarray(res.log_ml_estimate)
    one = importance_resampling(regression, (XS,), OBS, N_IS, key=mx.random.key(13))
    out["sir_one"] = np.asarray(one["slope"])
    many = importance_resampling(
        regression, (XS,), OBS, N_IS, key=mx.random.key(14), n_samples=9
    )
    out["sir_many"] = np.asarray(many["slope"])
    for name, val in smc_arrays(smc_run(None, N_SMC, mx.random.key(15))).items():
        out[f"smc_{name}"] = val
    st = growing_run(None, 40)
    for a in ("slope", "shifted", "level"):
        out[f"grow_{a}"] = np.asarray(st.traces[a])
    out["grow_lw"], out["grow_lml"] = np.asarray(st.log_weights), np.asarray(st.log_ml_estimate)
    tr, _ = regression.vgenerate((XS,), OBS, N_CHAINS, key=mx.random.key(16))
    r = chain(mh_kernel(), tr, 40, key=mx.random.key(17), addresses=["slope"])
    draws = r.samples["slope"].T  # [chains, draws]
    out["mh_slope"] = np.asarray(r.samples["slope"])
    out["mh_rhat"] = np.asarray(rhat(draws, layout="chain_draw"))
    out["mh_ess"] = np.asarray(ess_bulk(draws, layout="chain_draw"))
    out["mh_mean"] = np.asarray(summary({"slope": draws}, layout="chain_draw")["slope"]["mean"])
    r = chain(hmc_kernel(), tr, 12, key=mx.random.key(18), addresses=["slope"], group=solo)
    out["hmc_slope"] = np.asarray(r.samples["slope"])
    w = warmup(solo)
    out["nuts_eps"], out["nuts_mass"] = np.asarray(w.step_size), np.asarray(w.mass)
    out["nuts_slope"] = np.asarray(w.trace["slope"])
    out["nuts_after"] = np.asarray(after_warmup(w, solo).samples["slope"])
    return out


# ---------------------------------------------------------------------- comparison
class Checks:
    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.results: dict[str, dict[str, Any]] = {}

    def run(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            self.results[name] = {"ok": True}
        except Exception as e:
            self.results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                  "traceback": traceback.format_exc()}


def same(name: str, got: Any, want: Any) -> None:
    g, w = np.asarray(got), np.asarray(want)
    if g.shape != w.shape or not np.array_equal(g, w):
        raise AssertionError(f"{name}: not bit-for-bit equal (shapes {g.shape}, {w.shape}; "
                             f"max |diff| {np.max(np.abs(g - w)) if g.shape == w.shape else '-'})")


def close(name: str, got: Any, want: Any, tol: float = 2e-5) -> None:
    g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if g.shape != w.shape or not np.allclose(g, w, rtol=tol, atol=tol):
        raise AssertionError(f"{name}: {g} vs {w} (tolerance {tol})")


def compare(ref: dict[str, np.ndarray], report_dir: Path) -> int:
    g = mx.distributed.init(strict=True, backend="ring")
    rank, size = g.rank(), g.size()
    checks = Checks(rank)

    def is_prior() -> None:
        res = importance_sampling(regression, (XS,), OBS, N_IS, key=mx.random.key(11), group=g)
        s = shard(N_IS, rank, size)
        same("local slope", res.traces["slope"], ref["is_slope"][s])
        same("local b", res.traces["b"], ref["is_b"][s])
        same("local score", res.traces.score, ref["is_score"][s])
        close("normalised log weights", res.log_weights, ref["is_lw"][s])
        close("log ML", res.log_ml_estimate, ref["is_lml"])
        close("ESS", effective_sample_size_weights(res.log_weights, group=g), ref["is_ess"])
        full = importance_sampling(
            regression, (XS,), OBS, N_IS, key=mx.random.key(11), group=g, gather=True
        )
        same("gathered slope", full.traces["slope"], ref["is_slope"])
        same("gathered score", full.traces.score, ref["is_score"])
        close("gathered log weights", full.log_weights, ref["is_lw"])

    def is_proposal() -> None:
        res = importance_sampling(
            regression, (XS,), OBS, 64, slope_proposal, (), key=mx.random.key(12), group=g
        )
        s = shard(64, rank, size)
        same("proposed slope", res.traces["slope"], ref["isq_slope"][s])
        close("log weights", res.log_weights, ref["isq_lw"][s])
        close("log ML", res.log_ml_estimate, ref["isq_lml"])

    def sir() -> None:
        one = importance_resampling(regression, (XS,), OBS, N_IS, key=mx.random.key(13), group=g)
        same("one draw", one["slope"], ref["sir_one"])
        part = importance_resampling(
            regression, (XS,), OBS, N_IS, key=mx.random.key(14), n_samples=9, group=g
        )
        same("this process's draws", part["slope"], ref["sir_many"][shard(9, rank, size)])
        allk = importance_resampling(
            regression, (XS,), OBS, N_IS, key=mx.random.key(14), n_samples=9, group=g,
            gather=True,
        )
        same("gathered draws", allk["slope"], ref["sir_many"])

    def smc_global() -> None:
        before = MOVES["exchanges"]
        st = smc_run(g, N_SMC, mx.random.key(15))
        if MOVES["exchanges"] == before:
            raise AssertionError("no resampling moved a particle between processes")
        same("accumulated log ML", st.log_ml_accumulated, ref["smc_acc"])
        close("log ML estimate", st.log_ml_estimate, ref["smc_lml"])
        close("ESS", st.ess(), ref["smc_ess"])
        s = shard(N_SMC, rank, size)
        xs = np.stack([np.asarray(st.traces[(t, "x")]) for t in range(len(LG_YS))], axis=1)
        same("this process's particles", xs, ref["smc_x"][s])
        got = smc_arrays(st.gather())
        same("gathered particles (every step's x)", got["x"], ref["smc_x"])
        same("gathered log weights", got["lw"], ref["smc_lw"])
        same("gathered accumulated log ML", got["acc"], ref["smc_acc"])

    def smc_plain_model() -> None:
        before = MOVES["exchanges"]
        st = growing_run(g, 40)
        if MOVES["exchanges"] == before:
            raise AssertionError("no resampling moved a particle between processes")
        s = shard(40, rank, size)
        for a in ("slope", "shifted", "level"):
            same(f"this process's {a}", st.traces[a], ref[f"grow_{a}"][s])
        full = st.gather()
        for a in ("slope", "shifted", "level"):
            same(f"gathered {a}", full.traces[a], ref[f"grow_{a}"])
        same("gathered log weights", full.log_weights, ref["grow_lw"])
        close("log ML", st.log_ml_estimate, ref["grow_lml"])

    def smc_island() -> None:
        # islands never exchange particles: every particle's history starts at one of the
        # island's own initial particles
        n = 40
        st0 = particle_filter(LG, (1, X0), {(0, "y"): LG_YS[0]}, n, key=mx.random.key(30),
                              group=g, mode="island")
        own = set(np.asarray(st0.traces[(0, "x")]).tolist())
        st = st0.resample(key=mx.random.key(31))
        st = st.step((2, X0), {(1, "y"): LG_YS[1]}, key=mx.random.key(32)).resample(
            key=mx.random.key(33))
        if not set(np.asarray(st.traces[(0, "x")]).tolist()) <= own:
            raise AssertionError("island mode moved a particle between processes")
        close("gathered log ML = sharded log ML", st.gather().log_ml_estimate,
              st.log_ml_estimate)
        # unbiasedness: E[Ẑ/Z] = 1; R runs, |mean - 1| < 4 se (CLT, fixed seeds)
        exact = kalman(LG_YS)
        ratios = np.array([
            math.exp(float(smc_run(g, 24, mx.random.key(400 + k), "island")
                           .log_ml_estimate.item()) - exact)
            for k in range(40)
        ])
        se = ratios.std(ddof=1) / math.sqrt(ratios.size)
        if not abs(ratios.mean() - 1.0) < 4 * se + 1e-12:
            raise AssertionError(f"island Ẑ/Z mean {ratios.mean():.4f}, 4·se {4 * se:.4f}")

    def mcmc_mh() -> None:
        tr = vgenerate(regression, (XS,), OBS, N_CHAINS, key=mx.random.key(16), group=g)
        r = chain(mh_kernel(), tr, 40, key=mx.random.key(17), addresses=["slope"], group=g)
        s = shard(N_CHAINS, rank, size)
        same("this process's chains", r.samples["slope"], ref["mh_slope"][:, s])
        draws = r.samples["slope"].T
        same("R-hat over all chains", rhat(draws, layout="chain_draw", group=g), ref["mh_rhat"])
        same("bulk ESS over all chains (from the ChainResult)", ess_bulk(r, group=g),
             ref["mh_ess"])
        close("summary mean", summary(r, group=g)["slope"]["mean"],
              ref["mh_mean"])

    def mcmc_hmc() -> None:
        tr = vgenerate(regression, (XS,), OBS, N_CHAINS, key=mx.random.key(16), group=g)
        r = chain(hmc_kernel(), tr, 12, key=mx.random.key(18), addresses=["slope"], group=g)
        same("HMC chains", r.samples["slope"], ref["hmc_slope"][:, shard(N_CHAINS, rank, size)])

    def nuts_pooled() -> None:
        w = warmup(g)
        same("adapted step size", w.step_size, ref["nuts_eps"])
        same("adapted mass", w.mass, ref["nuts_mass"])
        s = shard(N_CHAINS, rank, size)
        same("chains after warm-up", w.trace["slope"], ref["nuts_slope"][s])
        same("NUTS draws", after_warmup(w, g).samples["slope"], ref["nuts_after"][:, s])

    def nuts_batched() -> None:
        # exact=False: batched NUTS per process (early termination), pooled adaptation
        tr = vgenerate(regression, (XS,), OBS, 2 * size, key=mx.random.key(24), group=g)
        w = nuts_warmup(tr, SEL, 30, key=mx.random.key(25), group=g, exact=False,
                        init_buffer=6, term_buffer=6, base_window=8)
        steps = np.asarray(mx.distributed.all_gather(w.step_size.reshape(1), group=g))
        if not (np.isfinite(steps).all() and (steps == steps[0]).all()):
            raise AssertionError(f"pooled step sizes differ between processes: {steps}")
        k = partial(nuts, selection=SEL, step_size=w.step_size, mass=w.mass)
        r = chain(k, w.trace, 6, key=mx.random.key(26), addresses=["slope"], group=g,
                  exact=False)
        both = np.asarray(mx.distributed.all_gather(r.samples["slope"][None], group=g))
        if not np.isfinite(both).all() or np.array_equal(both[0], both[1]):
            raise AssertionError("exact=False: the processes' chains are not independent")

    def nuts_unpooled() -> None:
        w = warmup(g, pool=False)
        steps = np.asarray(mx.distributed.all_gather(w.step_size.reshape(1), group=g))
        if not (np.isfinite(steps).all() and (steps > 0).all()):
            raise AssertionError(f"per-process step sizes {steps}")

    def errors() -> None:
        try:
            importance_sampling(regression, (XS,), OBS, 20, key=mx.random.key(rank), group=g)
        except ValueError as e:
            if "different keys" not in str(e):
                raise
        else:
            raise AssertionError("different keys on different processes were accepted")
        try:
            importance_sampling(regression, (XS,), OBS, 1, key=mx.random.key(0), group=g)
        except ValueError as e:
            if "every process needs at least one" not in str(e):
                raise
        else:
            raise AssertionError("fewer particles than processes was accepted")

    def fresh_keys() -> None:
        # key=None everywhere: draws that must agree use process 0's fresh key
        one = importance_resampling(regression, (XS,), OBS, 30, key=None, group=g)
        both = np.asarray(mx.distributed.all_gather(one["slope"].reshape(1), group=g))
        if both[0] != both[1]:
            raise AssertionError(f"key=None: the processes returned different draws {both}")
        st = particle_filter(LG, (1, X0), {(0, "y"): LG_YS[0]}, 30, key=None, group=g)
        before = set(np.asarray(st.gather().traces[(0, "x")]).tolist())
        after = np.asarray(st.resample(key=None).gather().traces[(0, "x")])
        if not set(after.tolist()) <= before:
            raise AssertionError("key=None resampling produced particles that did not exist")
        sums = np.asarray(mx.distributed.all_gather(mx.array([float(after.sum())]), group=g))
        if sums[0] != sums[1]:
            raise AssertionError("key=None resampling differs between processes")

    for name, fn in [
        ("is_prior", is_prior), ("is_proposal", is_proposal), ("sir", sir),
        ("smc_global", smc_global), ("smc_plain_model", smc_plain_model),
        ("smc_island", smc_island), ("mcmc_mh", mcmc_mh),
        ("mcmc_hmc", mcmc_hmc), ("nuts_pooled", nuts_pooled),
        ("nuts_batched", nuts_batched), ("nuts_unpooled", nuts_unpooled),
        ("errors", errors), ("fresh_keys", fresh_keys),
    ]:
        checks.run(name, fn)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"rank{rank}.json").write_text(
        json.dumps({"rank": rank, "size": size, "checks": checks.results}, indent=1)
    )
    bad = [n for n, r in checks.results.items() if not r["ok"]]
    print(f"rank {rank}/{size}: {len(checks.results) - len(bad)} checks passed"
          + (f", FAILED: {bad}" if bad else ""))
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "reference":
        np.savez(argv[1], **reference())
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        with np.load(argv[1]) as f:
            ref = {k: f[k] for k in f.files}
        return compare(ref, Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
