"""Regression with outliers: importance sampling, MH, Gibbs, HMC and an involutive move.

The Gen classic. A line ``y = slope·x + intercept`` with Gaussian noise, where each
point may instead be an outlier drawn from a broad ``N(0, 10)``::

    slope, intercept ~ N(0, 2²)
    is_outlier_i     ~ Bernoulli(0.1)
    y_i              ~ N(0, 10²)                          if is_outlier_i
                       N(slope·x_i + intercept, 0.5²)     otherwise

This script simulates 20 points (3 of them outliers), estimates the posterior means of
``(slope, intercept)`` with importance sampling and with batched MCMC chains that
cycle through four kernels, and prints them next to the truth. It is the code of the
tutorial ``docs/tutorial-inference.rst``; run it with ``python examples/outlier_regression.py``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import ChoiceMap, choicemap, gen, select
from genmlx.dists import bernoulli, normal
from genmlx.infer import chain, cycle, gibbs, involutive_mh, mh
from genmlx.infer.diagnostics import effective_sample_size_weights
from genmlx.infer.gradient_kernels import hmc
from genmlx.infer.importance import importance_sampling

NOISE = 0.5
PROB_OUTLIER = 0.1
PRIOR_SD = 2.0
TRUE_SLOPE = -1.0
TRUE_INTERCEPT = 2.0
OUTLIERS = {2: 8.0, 9: -7.0, 15: 9.0}
N_SWEEPS = 20  # MCMC sweeps per chain, of which BURN_IN are discarded
BURN_IN = 5


# ---------------------------------------------------------------- the model
@gen
def line_model(xs: mx.array) -> None:
    slope = normal(0.0, PRIOR_SD) @ "slope"
    intercept = normal(0.0, PRIOR_SD) @ "intercept"
    for i in range(xs.shape[0]):
        is_outlier = bernoulli(PROB_OUTLIER) @ ("is_outlier", i)
        mean = mx.where(is_outlier, 0.0, slope * xs[i] + intercept)
        sd = mx.where(is_outlier, 10.0, NOISE)
        normal(mean, sd) @ ("y", i)


def simulate_data(n: int = 20, seed: int = 0) -> tuple[mx.array, mx.array]:
    """``n`` points on ``[-5, 5]`` from the true line, with the ``OUTLIERS`` replaced."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(-5.0, 5.0, n)
    ys = TRUE_SLOPE * xs + TRUE_INTERCEPT + NOISE * rng.standard_normal(n)
    for i, v in OUTLIERS.items():
        ys[i] = v
    return mx.array(xs, dtype=mx.float32), mx.array(ys, dtype=mx.float32)


def observations(ys: mx.array) -> ChoiceMap:
    return choicemap({("y", i): ys[i] for i in range(ys.shape[0])})


# ---------------------------------------------------------------- proposals and moves
@gen
def line_random_walk(tr: Any, scale: float) -> None:
    """Gaussian random walk on (slope, intercept): a symmetric custom proposal."""
    normal(tr["slope"], scale) @ "slope"
    normal(tr["intercept"], scale) @ "intercept"


@gen
def pivot_aux(tr: Any, x_center: float) -> None:
    normal(0.0, 0.3) @ "u"


def pivot(t: ChoiceMap, u: ChoiceMap, args: tuple[Any, ...]) -> tuple[ChoiceMap, ChoiceMap]:
    """Rotate the line about the point above ``x_center``: an involution with ``|det J| = 1``.

    ``(slope, intercept, u) -> (slope + u, intercept - u·x_center, -u)``.
    """
    (x_center,) = args
    du = u["u"]
    new_t = choicemap({"slope": t["slope"] + du, "intercept": t["intercept"] - du * x_center})
    return new_t, choicemap({"u": -du})


def make_kernel(n_points: int, x_center: float) -> Any:
    """One sweep: random-walk MH, a Gibbs pass over the outlier flags, HMC, the pivot."""
    kernels = [partial(mh, selection_or_proposal=line_random_walk, proposal_args=(0.1,))]
    kernels += [partial(gibbs, addr=("is_outlier", i)) for i in range(n_points)]
    kernels.append(
        partial(hmc, selection=select("slope", "intercept"), step_size=0.03, n_leapfrog=10)
    )
    kernels.append(
        partial(involutive_mh, proposal=pivot_aux, proposal_args=(x_center,), involution=pivot)
    )
    return cycle(*kernels)


# ---------------------------------------------------------------- inference
def _scalar(x: mx.array) -> float:
    return float(x.item())  # type: ignore[arg-type]


def run_importance(xs: mx.array, ys: mx.array, n_particles: int, key: mx.array) -> dict[str, float]:
    """Self-normalised importance sampling with the prior as proposal."""
    res = importance_sampling(line_model, (xs,), observations(ys), n_particles, key=key)
    w = mx.exp(res.log_weights)
    return {
        "slope": _scalar((w * res.traces["slope"]).sum()),
        "intercept": _scalar((w * res.traces["intercept"]).sum()),
        "ess": _scalar(effective_sample_size_weights(res.log_weights)),
    }


def run_mcmc(
    xs: mx.array,
    ys: mx.array,
    n_chains: int,
    n_steps: int,
    burn_in: int,
    key: mx.array,
    progress: bool = False,
) -> dict[str, Any]:
    """``n_chains`` independent chains (one batched trace) of ``n_steps`` sweeps.

    ``progress=True`` shows a progress bar (needs ``tqdm``)."""
    k_init, k_run = mx.random.split(key, 2)
    # start every chain at the least-squares line with no point flagged as an outlier;
    # Gibbs then flags the points the line cannot explain. (Chains started from the
    # prior flag every point as an outlier at once and take long to find the line.)
    ls_slope, ls_intercept = np.polyfit(np.array(xs), np.array(ys), 1)
    start = observations(ys).set("slope", float(ls_slope)).set("intercept", float(ls_intercept))
    for i in range(xs.shape[0]):
        start = start.set(("is_outlier", i), mx.array(False))
    trace, _ = line_model.vgenerate((xs,), start, n_chains, key=k_init)
    kernel = make_kernel(xs.shape[0], _scalar(xs.mean()))
    flags = [("is_outlier", i) for i in range(xs.shape[0])]
    res = chain(
        kernel,
        trace,
        n_steps,
        key=k_run,
        burn_in=burn_in,
        addresses=["slope", "intercept", *flags],
        progress=progress,
    )
    slope = res.samples["slope"].mean(axis=0)  # per-chain posterior means
    intercept = res.samples["intercept"].mean(axis=0)
    p_outlier = mx.stack([res.samples[a].astype(mx.float32).mean() for a in flags])
    return {
        "slope": _scalar(slope.mean()),
        "slope_sd": _scalar(res.samples["slope"].std()),  # posterior standard deviation
        "slope_se": _scalar(slope.std()) / n_chains**0.5,  # Monte-Carlo standard error
        "intercept": _scalar(intercept.mean()),
        "intercept_sd": _scalar(res.samples["intercept"].std()),
        "intercept_se": _scalar(intercept.std()) / n_chains**0.5,
        "p_outlier": np.array(p_outlier),
        "acceptance": _scalar(res.acceptance_rate.mean()),
    }


def main() -> None:
    xs, ys = simulate_data()
    is_res = run_importance(xs, ys, 20_000, mx.random.key(1))
    print(f"truth:      slope {TRUE_SLOPE:+.3f}  intercept {TRUE_INTERCEPT:+.3f}")
    print(
        f"importance: slope {is_res['slope']:+.3f}  intercept {is_res['intercept']:+.3f}"
        f"  (ESS {is_res['ess']:.1f} of 20000)"
    )
    mc = run_mcmc(xs, ys, n_chains=200, n_steps=N_SWEEPS, burn_in=BURN_IN, key=mx.random.key(2))
    print(
        f"MCMC:       slope {mc['slope']:+.3f} (sd {mc['slope_sd']:.3f}, MC error "
        f"{mc['slope_se']:.1e})  intercept {mc['intercept']:+.3f} (sd {mc['intercept_sd']:.3f},"
        f" MC error {mc['intercept_se']:.1e})"
    )
    flagged = [i for i, p in enumerate(mc["p_outlier"]) if p > 0.5]
    print(f"points flagged as outliers (P > 0.5): {flagged}; true: {sorted(OUTLIERS)}")


if __name__ == "__main__":
    main()
