"""GenMLX demo: a Bayesian regression through simulate, generate and vectorised
importance sampling, checked against the exact answers; then the flagship example,
regression with outliers, by importance sampling, MCMC and SMC, with a posterior plot.

Model: a, b, c ~ N(0, 1); y_i ~ N(a + b·x_i + c·x_i², 0.3) for 20 points. The prior is
Gaussian and the likelihood linear-Gaussian, so the log marginal likelihood and the
posterior mean have closed forms, printed next to the Monte Carlo estimates with their
standard errors.

Part two is the model of ``examples/outlier_regression.py`` (slope, intercept and one
outlier flag per point): importance sampling, batched MCMC chains, and a particle filter
that adds one data point per step (rejuvenating the line with MH); their posterior
summaries are printed side by side, and a plot of the SMC (particle-weighted) posterior
of slope and intercept is saved to ``outlier_posterior.png`` (or the path given as the
first argument) when genmlx-viz is installed.

Every part prints when it starts and how long it took; the MCMC part shows a progress
bar when ``tqdm`` is installed. The whole run takes well under a minute on a 2-core
CPU, MLX kernel cache cold or warm (nothing here is ``mx.compile``-d).

Run it with ``python3 -m nox -s demo`` (or ``python examples/demo.py`` where genmlx is
installed).
"""

from __future__ import annotations

import math
import time
from typing import Any

import mlx.core as mx
import numpy as np

from genmlx.core import choicemap, gen
from genmlx.dists import normal

NOISE = 0.3
XS = mx.linspace(-1.0, 1.0, 20)


@gen
def regression(xs: mx.array) -> Any:
    a = normal(0.0, 1.0) @ "a"
    b = normal(0.0, 1.0) @ "b"
    c = normal(0.0, 1.0) @ "c"
    normal(a + b * xs + c * xs**2, NOISE) @ "ys"
    return a + b * xs + c * xs**2


def exact_answers(xs: np.ndarray, ys: np.ndarray) -> tuple[float, np.ndarray]:
    """log p(ys) and E[a, b, c | ys] for the linear-Gaussian model."""
    phi = np.stack([np.ones_like(xs), xs, xs**2], axis=1)
    cov_y = phi @ phi.T + NOISE**2 * np.eye(len(xs))
    _, logdet = np.linalg.slogdet(cov_y)
    log_ml = -0.5 * (ys @ np.linalg.solve(cov_y, ys) + logdet + len(xs) * math.log(2 * math.pi))
    precision = phi.T @ phi / NOISE**2 + np.eye(3)
    post_mean = np.linalg.solve(precision, phi.T @ ys / NOISE**2)
    return float(log_ml), post_mean


class Part:
    """Print a part's title when it starts and its wall time when it ends."""

    def __init__(self, title: str) -> None:
        self.title = title

    def __enter__(self) -> Part:
        print(f"\n== {self.title}", flush=True)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            print(f"   ({time.perf_counter() - self.t0:.1f} s)", flush=True)


def main() -> None:
    key = mx.random.key(2026)
    k_data, k_sim, k_gen, k_is = mx.random.split(key, 4)

    print("== part 1: Bayesian polynomial regression, checked against exact answers", flush=True)
    # 1. simulate: a synthetic data set from the model itself
    truth = regression.simulate((XS,), key=k_data)
    ys = truth["ys"]
    print(
        "simulate: true coefficients a, b, c =",
        [round(float(truth[a].item()), 3) for a in ("a", "b", "c")],
    )
    print(f"          trace score log p(a, b, c, ys) = {float(truth.score.item()):.3f}")

    # 2. generate: one trace consistent with the observations
    observations = choicemap({"ys": ys})
    tr, w = regression.generate((XS,), observations, key=k_gen)
    print(f"generate: one prior particle, weight log p(ys | a, b, c) = {float(w.item()):.3f}")

    # 3. vectorised importance sampling: one batched run of the body for all particles
    n = 400_000
    t0 = time.perf_counter()
    traces, log_w = regression.vgenerate((XS,), observations, n, key=k_is)
    log_ml = mx.logsumexp(log_w) - math.log(n)
    probs = mx.softmax(log_w)
    coefs = mx.stack([traces["a"], traces["b"], traces["c"]], axis=1)
    post_mean = mx.sum(probs[:, None] * coefs, axis=0)
    mx.eval(log_ml, post_mean)
    elapsed = time.perf_counter() - t0

    ess = float(1.0 / mx.sum(probs**2).item())
    # standard errors: delta method for log Z; self-normalised IS for the means
    wn = np.asarray(mx.exp(log_w - mx.max(log_w)), dtype=np.float64)
    se_log_ml = float(np.std(wn) / (np.mean(wn) * math.sqrt(n)))
    p = np.asarray(probs, dtype=np.float64)
    th = np.asarray(coefs, dtype=np.float64)
    pm = np.asarray(post_mean, dtype=np.float64)
    se_mean = np.sqrt(np.sum(p[:, None] ** 2 * (th - pm) ** 2, axis=0))

    exact_log_ml, exact_mean = exact_answers(np.asarray(XS, np.float64), np.asarray(ys, np.float64))
    print(f"importance sampling: {n} particles in {elapsed * 1e3:.0f} ms, ESS = {ess:.0f}")
    print(
        f"  log marginal likelihood  estimate {float(log_ml.item()):9.4f} ± {se_log_ml:.4f}"
        f"   exact {exact_log_ml:9.4f}"
    )
    for i, name in enumerate("abc"):
        print(
            f"  posterior mean of {name}      estimate {pm[i]:9.4f} ± {se_mean[i]:.4f}"
            f"   exact {exact_mean[i]:9.4f}"
        )
    worst = max(
        abs(float(log_ml.item()) - exact_log_ml) / se_log_ml,
        *(abs(pm[i] - exact_mean[i]) / se_mean[i] for i in range(3)),
    )
    print(f"  largest error: {worst:.1f} standard errors")


def outliers(plot_path: str) -> None:
    """The flagship example: regression with outliers by IS, MCMC and SMC."""
    import importlib.util
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import outlier_regression as ex

    from genmlx.core import select
    from genmlx.infer import mh, particle_filter

    xs, ys = ex.simulate_data()
    n = xs.shape[0]
    print(
        "\n== part 2: regression with outliers (20 points, 3 of them outliers); truth "
        f"slope {ex.TRUE_SLOPE:+.3f}, intercept {ex.TRUE_INTERCEPT:+.3f}",
        flush=True,
    )
    with Part("importance sampling, 20000 particles from the prior"):
        is_res = ex.run_importance(xs, ys, 20_000, mx.random.key(1))
        print(
            f"   slope {is_res['slope']:+.3f}  intercept {is_res['intercept']:+.3f}  "
            f"(ESS {is_res['ess']:.0f}: one particle dominates, the prior is a poor "
            "proposal for 20 points; MCMC and SMC do better)"
        )
    n_chains, n_sweeps, burn_in = 200, ex.N_SWEEPS, ex.BURN_IN
    with Part(
        f"MCMC: {n_chains} chains x {n_sweeps} sweeps (random-walk MH, Gibbs on each "
        f"outlier flag, HMC, pivot move), first {burn_in} discarded"
    ):
        has_tqdm = importlib.util.find_spec("tqdm") is not None
        mc = ex.run_mcmc(
            xs, ys, n_chains, n_sweeps, burn_in, key=mx.random.key(2), progress=has_tqdm
        )
        print(
            f"   slope {mc['slope']:+.3f} (posterior sd {mc['slope_sd']:.3f})  "
            f"intercept {mc['intercept']:+.3f} (posterior sd {mc['intercept_sd']:.3f});"
            f" Monte-Carlo errors {mc['slope_se']:.1e}, {mc['intercept_se']:.1e}"
        )
        flagged = [i for i, p in enumerate(mc["p_outlier"]) if p > 0.5]
        print(f"   points flagged as outliers (P > 0.5): {flagged}; true: {sorted(ex.OUTLIERS)}")
    with Part("SMC: 2000 particles, one data point per step, MH rejuvenation"):
        # step t adds point t (its outlier flag drawn from the prior)
        keys = mx.random.split(mx.random.key(3), 4 * n)
        state = particle_filter(ex.line_model, (xs[:1],), {("y", 0): ys[0]}, 2000, key=keys[0])
        for t in range(1, n):
            state = state.maybe_resample(1000, key=keys[4 * t])
            state = state.step((xs[: t + 1],), {("y", t): ys[t]}, key=keys[4 * t + 1])
            state = state.rejuvenate(mh, ex.line_random_walk, (0.2,), key=keys[4 * t + 2])
            state = state.rejuvenate(mh, select(("is_outlier", t)), key=keys[4 * t + 3])
            if t % 5 == 4 or t == n - 1:
                print(f"   step {t + 1}/{n}: ESS {float(state.ess()):.0f}", flush=True)
        w = state.normalized_weights()
        slope = float(mx.sum(w * state.traces["slope"]))
        intercept = float(mx.sum(w * state.traces["intercept"]))
        print(
            f"   slope {slope:+.3f}  intercept {intercept:+.3f}  "
            f"log p(ys) ≈ {float(state.log_ml_estimate):.2f}"
        )
    try:
        from genmlx.viz import plot_posterior
    except ImportError:
        print("\n(install genmlx-viz to save the posterior plot)")
        return
    with Part("plot of the SMC posterior"):
        fig = plot_posterior(
            state,
            ["slope", "intercept"],
            truths={"slope": ex.TRUE_SLOPE, "intercept": ex.TRUE_INTERCEPT},
            title="regression with outliers: SMC posterior",
        )
        fig.savefig(plot_path, dpi=100)
        print(f"   saved to {plot_path}")


if __name__ == "__main__":
    import sys

    start = time.perf_counter()
    main()
    outliers(sys.argv[1] if len(sys.argv) > 1 else "outlier_posterior.png")
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
